//! Rooms: where users meet. A room may sit in a space, is public or private,
//! and may be a default room that new users join.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{ValidationError, text};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Visibility {
    Public,
    Private,
}

impl Visibility {
    pub fn as_str(self) -> &'static str {
        match self {
            Visibility::Public => "public",
            Visibility::Private => "private",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "public" => Some(Visibility::Public),
            "private" => Some(Visibility::Private),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Room {
    pub id: Uuid,
    pub account_id: Uuid,
    pub space_id: Option<Uuid>,
    pub name: String,
    pub visibility: Visibility,
    pub is_default: bool,
    pub created_by: Option<Uuid>,
    #[serde(with = "super::time::serde_millis")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "super::time::serde_millis")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: OffsetDateTime,
}

/// A valid new room.
#[derive(Debug, Clone)]
pub struct NewRoom {
    pub name: String,
    /// The space holding the room; it must exist in the account.
    pub space_id: Option<Uuid>,
    pub visibility: Visibility,
    pub is_default: bool,
    /// The creator; they become the room's first moderator.
    pub created_by: Option<Uuid>,
}

/// A valid change to a room; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct RoomPatch {
    pub name: Option<String>,
    pub visibility: Option<Visibility>,
    pub is_default: Option<bool>,
}

pub const MAX_ROOM_NAME: usize = 100;

pub fn room_name(s: &str) -> Result<String, ValidationError> {
    text::display_text("name", s, MAX_ROOM_NAME)
}

/// How many rooms one user may be a member of (CometChat's group limit).
pub const MAX_ROOMS_PER_USER: i64 = 2000;

// The bodies of the room routes as sent (text, parsed by the use cases).

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRoom {
    #[schema(schema_with = crate::domain::text::display_schema::<100>)]
    pub name: String,
    #[serde(alias = "spaceId")]
    #[schema(format = Uuid)]
    pub space_id: Option<String>,
    /// `public` (default) or `private`.
    #[schema(pattern = "^(public|private)$")]
    pub visibility: Option<String>,
    #[serde(alias = "isDefault")]
    pub is_default: Option<bool>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateRoom {
    #[schema(schema_with = crate::domain::text::display_or_null_schema::<100>)]
    pub name: Option<String>,
    #[schema(pattern = "^(public|private)$")]
    pub visibility: Option<String>,
    #[serde(alias = "isDefault")]
    pub is_default: Option<bool>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutMember {
    /// `role_room_user` / `role_room_moderator` (or `user` / `moderator` / `guest`).
    pub role: String,
}
