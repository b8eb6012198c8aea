//! The access model: spaces, scoped roles in spaces and rooms, custom
//! account roles, invites and guest access links.
//!
//! Scoped roles are declared in rank order so that "at most my own role" is
//! a comparison (`derive(Ord)`), and stored as text.

use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use super::permission::{BUILTIN_ROLES, Permission};
use super::room::Visibility;
use super::{DomainError, ValidationError, text};

/// A role inside a space, lowest first.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum SpaceRole {
    User,
    Moderator,
    Owner,
}

impl SpaceRole {
    pub fn as_str(self) -> &'static str {
        match self {
            SpaceRole::User => "user",
            SpaceRole::Moderator => "moderator",
            SpaceRole::Owner => "owner",
        }
    }

    /// Stored names, and what clients may send: LiveDigital's
    /// `role_space_moderator`/`role_space_user`, or plain `moderator`/`user`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "user" | "role_space_user" => Some(SpaceRole::User),
            "moderator" | "role_space_moderator" => Some(SpaceRole::Moderator),
            "owner" => Some(SpaceRole::Owner),
            _ => None,
        }
    }

    /// A role that may be granted through a request (owner is the creator's).
    pub fn parse_grantable(field: &str, s: &str) -> Result<Self, ValidationError> {
        match Self::parse(s) {
            Some(r) if r != SpaceRole::Owner => Ok(r),
            _ => Err(ValidationError::new(
                field,
                "must be role_space_moderator or role_space_user (or moderator / user)",
            )),
        }
    }
}

/// A role inside a room, lowest first.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum RoomRole {
    Guest,
    User,
    Moderator,
}

impl RoomRole {
    pub fn as_str(self) -> &'static str {
        match self {
            RoomRole::Guest => "guest",
            RoomRole::User => "user",
            RoomRole::Moderator => "moderator",
        }
    }

    /// `role_room_user`/`role_room_moderator` (LiveDigital's grantRole), or
    /// plain `user`/`moderator`/`guest`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "guest" | "role_room_guest" => Some(RoomRole::Guest),
            "user" | "role_room_user" => Some(RoomRole::User),
            "moderator" | "role_room_moderator" => Some(RoomRole::Moderator),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Space {
    pub id: Uuid,
    pub account_id: Uuid,
    pub name: String,
    pub visibility: Visibility,
    pub created_by: Option<Uuid>,
    /// The id an identity provider knows the space by (SCIM's Group
    /// `externalId`): 1–255 characters, or none.
    pub external_id: Option<String>,
    #[serde(with = "super::time::serde_millis")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "super::time::serde_millis")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: OffsetDateTime,
}

/// A member of a space or a room, as answered.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Member {
    pub user_id: Uuid,
    pub role: String,
    #[serde(with = "super::time::serde_millis")]
    #[schema(value_type = String, format = DateTime)]
    pub joined_at: OffsetDateTime,
}

pub fn space_name(s: &str) -> Result<String, ValidationError> {
    text::display_text("name", s, 100)
}

/// A custom role: an id distinct from its name, a set of permissions.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Role {
    pub id: String,
    pub name: String,
    pub description: Option<String>,
    pub permissions: Vec<Permission>,
    pub builtin: bool,
    #[serde(with = "super::time::serde_millis::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub created_at: Option<OffsetDateTime>,
}

impl Role {
    /// The built-in roles as answered by `GET /roles`.
    pub fn builtins() -> Vec<Role> {
        BUILTIN_ROLES
            .iter()
            .map(|r| Role {
                id: (*r).to_owned(),
                name: (*r).to_owned(),
                description: None,
                permissions: super::permission::builtin_role_permissions(r)
                    .unwrap_or(&[])
                    .to_vec(),
                builtin: true,
                created_at: None,
            })
            .collect()
    }
}

/// A custom role's name. A built-in role's name (or CometChat's `default`,
/// its name of the built-in `user` role) is taken: `CONFLICT`, as a custom
/// role's name already in use is.
pub fn role_name(s: &str) -> Result<String, DomainError> {
    let name = text::display_text("name", s, 64)?;
    let taken = |message: &str| {
        Err(DomainError::Conflict {
            field: "name".into(),
            message: message.into(),
        })
    };
    if BUILTIN_ROLES
        .iter()
        .any(|b| b.eq_ignore_ascii_case(name.trim()))
    {
        return taken("is the name of a built-in role");
    }
    // CometChat's name of the built-in `user` role (docs/compat.md).
    if name.trim().eq_ignore_ascii_case("default") {
        return taken("is reserved: CometChat's name of the built-in user role");
    }
    Ok(name)
}

pub fn role_description(s: &str) -> Result<String, ValidationError> {
    text::free_text("description", s, 500)
}

pub fn permissions(v: Vec<Permission>) -> Vec<Permission> {
    let mut out: Vec<Permission> = Vec::with_capacity(v.len());
    for p in v {
        if !out.contains(&p) {
            out.push(p);
        }
    }
    out
}

/// Longest lifetime of an invite or a guest link: 30 days.
pub const MAX_TTL_SECONDS: i64 = 30 * 24 * 3600;
/// LiveDigital's default guest-link lifetime.
pub const DEFAULT_LINK_TTL_SECONDS: i64 = 86_400;
pub const MAX_INVITE_USES: i64 = 10_000;

pub fn ttl(field: &str, seconds: i64) -> Result<Duration, ValidationError> {
    if !(1..=MAX_TTL_SECONDS).contains(&seconds) {
        return Err(ValidationError::new(
            field,
            format!("must be between 1 and {MAX_TTL_SECONDS} seconds (30 days)"),
        ));
    }
    Ok(Duration::seconds(seconds))
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Invite {
    pub id: Uuid,
    pub space_id: Uuid,
    pub role: SpaceRole,
    pub max_uses: i64,
    pub uses: i64,
    #[serde(with = "super::time::serde_millis::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<OffsetDateTime>,
    #[serde(with = "super::time::serde_millis::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub revoked_at: Option<OffsetDateTime>,
    pub created_by: Option<Uuid>,
    #[serde(with = "super::time::serde_millis")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
}

/// Why an invite or link cannot be used (all answered 410 GONE).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gone {
    UsedUp,
    Expired,
    Revoked,
}

impl Gone {
    pub fn message(self, what: &str) -> String {
        match self {
            Gone::UsedUp => format!("this {what} has been used up"),
            Gone::Expired => format!("this {what} has expired"),
            Gone::Revoked => format!("this {what} was revoked"),
        }
    }
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AccessLink {
    pub id: Uuid,
    pub room_id: Uuid,
    pub username: String,
    pub role: RoomRole,
    pub external_user_id: Option<String>,
    pub is_permanent: bool,
    #[serde(with = "super::time::serde_millis")]
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: OffsetDateTime,
    #[serde(with = "super::time::serde_millis::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub used_at: Option<OffsetDateTime>,
    #[serde(with = "super::time::serde_millis::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub revoked_at: Option<OffsetDateTime>,
    pub created_by: Option<Uuid>,
    #[serde(with = "super::time::serde_millis")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
}

/// LiveDigital's `externalUserId`: "any alphanumeric identifier".
pub fn external_user_id(s: &str) -> Result<String, ValidationError> {
    let field = "external_user_id";
    if s.is_empty() || s.chars().count() > 100 {
        return Err(ValidationError::new(field, "must be 1 to 100 characters"));
    }
    if !s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(ValidationError::new(
            field,
            "may contain only letters, digits, '_' and '-'",
        ));
    }
    Ok(s.to_owned())
}

// The bodies of the space, invite, guest-link and role routes as sent
// (text, parsed by the use cases).

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSpace {
    #[schema(schema_with = crate::domain::text::display_schema::<100>)]
    pub name: String,
    /// `public` (default) or `private`.
    #[schema(pattern = "^(public|private)$")]
    pub visibility: Option<String>,
    /// SCIM's Group `externalId`: 1–255 characters.
    #[serde(default)]
    #[schema(schema_with = crate::domain::text::display_or_null_schema::<255>)]
    pub external_id: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateSpace {
    #[schema(schema_with = crate::domain::text::display_or_null_schema::<100>)]
    pub name: Option<String>,
    #[schema(pattern = "^(public|private)$")]
    pub visibility: Option<String>,
    /// 1–255 characters; `null` clears it.
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = crate::domain::text::display_or_null_schema::<255>)]
    pub external_id: Option<Option<String>>,
}

/// A space's `external_id`: 1–255 characters of display text.
pub fn space_external_id(s: &str) -> Result<String, ValidationError> {
    super::text::display_text("external_id", s, 255)
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutMember {
    /// `role_space_moderator` / `role_space_user` (or `moderator` / `user`).
    #[schema(pattern = "^(role_space_moderator|role_space_user|moderator|user)$")]
    pub role: String,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateInvite {
    /// `role_space_moderator` / `role_space_user` (or `moderator` / `user`).
    #[schema(pattern = "^(role_space_moderator|role_space_user|moderator|user)$")]
    pub role: String,
    /// Seconds until the invite expires (1 s … 30 days); none: no expiry.
    #[serde(default, deserialize_with = "super::whole::option")]
    #[schema(minimum = 1, maximum = 2592000)]
    pub ttl: Option<i64>,
    /// How many activations it allows (default 1).
    #[serde(alias = "maxUses", default, deserialize_with = "super::whole::option")]
    #[schema(minimum = 1, maximum = 10000)]
    pub max_uses: Option<i64>,
}

/// LiveDigital's generateAccess.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAccess {
    /// The guest's display name (`participantName` in the URL).
    #[schema(schema_with = crate::domain::text::display_schema::<100>)]
    pub username: String,
    /// `user` or `moderator`.
    #[schema(pattern = "^(user|moderator)$")]
    pub role: String,
    #[serde(alias = "externalUserId")]
    #[schema(min_length = 1, max_length = 100, pattern = "^[A-Za-z0-9_-]+$")]
    pub external_user_id: Option<String>,
    /// Seconds the link lives: 1 … 2592000 (30 days), default 86400.
    #[serde(default, deserialize_with = "super::whole::option")]
    #[schema(minimum = 1, maximum = 2592000)]
    pub ttl: Option<i64>,
    /// Reusable within its ttl; otherwise it works once.
    #[serde(alias = "isPermanent")]
    pub is_permanent: Option<bool>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRole {
    #[schema(schema_with = crate::domain::text::display_schema::<64>)]
    pub name: String,
    #[schema(schema_with = crate::domain::text::free_or_null_schema::<500>)]
    pub description: Option<String>,
    /// Names from the permission catalogue (docs/access.md).
    pub permissions: Vec<Permission>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateRole {
    #[schema(schema_with = crate::domain::text::display_or_null_schema::<64>)]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = crate::domain::text::free_or_null_schema::<500>)]
    pub description: Option<Option<String>>,
    pub permissions: Option<Vec<Permission>>,
}

/// A field that is present, even as `null`, is `Some`.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Ok(Some(Option::deserialize(d)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scoped_roles_rank_in_order() {
        assert!(SpaceRole::Owner > SpaceRole::Moderator && SpaceRole::Moderator > SpaceRole::User);
        assert!(RoomRole::Moderator > RoomRole::User && RoomRole::User > RoomRole::Guest);
        assert_eq!(
            SpaceRole::parse("role_space_moderator"),
            Some(SpaceRole::Moderator)
        );
        assert_eq!(RoomRole::parse("role_room_user"), Some(RoomRole::User));
        assert!(SpaceRole::parse_grantable("role", "owner").is_err());
    }

    #[test]
    fn ttls_are_bounded() {
        assert!(ttl("ttl", 0).is_err());
        assert!(ttl("ttl", 1).is_ok());
        assert!(ttl("ttl", MAX_TTL_SECONDS).is_ok());
        assert!(ttl("ttl", MAX_TTL_SECONDS + 1).is_err());
    }

    #[test]
    fn custom_roles_cannot_take_builtin_names() {
        assert!(role_name("Admin").is_err());
        assert!(role_name("moderators of EU").is_ok());
    }
}
