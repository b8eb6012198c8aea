//! Scoped rights: where an actor stands in a space or a room. Account-wide
//! permissions (an API key, `manage-rooms`) come first; then the actor's
//! membership role. A private space or room is invisible (404) to whoever
//! stands outside it. Every space, room, member, invite and access-link use
//! case asks here first.

use uuid::Uuid;

use super::{Actor, ActorKind, Error, Result};
use crate::app::App;
use crate::domain::DomainError;
use crate::domain::access::{RoomRole, Space, SpaceRole};
use crate::domain::account::Scope;
use crate::domain::permission::Permission;
use crate::domain::room::{Room, Visibility};

/// Where an actor stands in a space or room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing<R> {
    /// A `full` API key or a holder of `manage-rooms`: may do everything.
    Manager,
    /// A `read` API key: may read everything, change nothing.
    Reader,
    Member(R),
    Outsider,
}

impl<R: Copy + Ord> Standing<R> {
    /// Managers, and members at `min` or above.
    pub fn at_least(&self, min: R) -> bool {
        match self {
            Standing::Manager => true,
            Standing::Member(r) => *r >= min,
            _ => false,
        }
    }

    pub fn may_read(&self) -> bool {
        !matches!(self, Standing::Outsider)
    }

    pub fn is_member(&self) -> bool {
        matches!(self, Standing::Member(_))
    }

    /// The refusal for an actor who stands here but needs `what`.
    pub fn refuse(&self, what: &str) -> Error {
        match self {
            Standing::Reader => Error::forbidden("a read-only API key cannot do this"),
            _ => Error::forbidden(format!("this needs {what}")),
        }
    }
}

fn account_wide<R>(actor: &Actor) -> Option<Standing<R>> {
    match &actor.kind {
        ActorKind::ApiKey {
            scope: Scope::Full, ..
        }
        | ActorKind::Operator => Some(Standing::Manager),
        ActorKind::ApiKey {
            scope: Scope::Read, ..
        } => Some(Standing::Reader),
        _ if actor.holds(Permission::ManageRooms) => Some(Standing::Manager),
        _ => None,
    }
}

/// The space, and where `actor` stands in it.
pub async fn in_space(
    app: &App,
    actor: &Actor,
    space: Uuid,
) -> Result<(Space, Standing<SpaceRole>)> {
    let found = app.store.get_space(actor.account_id, space).await?;
    if let Some(s) = account_wide(actor) {
        return Ok((found, s));
    }
    let user = actor.user_id().unwrap_or_default();
    let standing = match app.store.space_role(actor.account_id, space, user).await? {
        Some(r) => Standing::Member(r),
        None if found.visibility == Visibility::Private => {
            return Err(DomainError::not_found("space").into());
        }
        None => Standing::Outsider,
    };
    Ok((found, standing))
}

/// The room, and where `actor` stands in it.
pub async fn in_room(app: &App, actor: &Actor, room: Uuid) -> Result<(Room, Standing<RoomRole>)> {
    let found = app.store.get_room(actor.account_id, room).await?;
    if let Some(s) = account_wide(actor) {
        return Ok((found, s));
    }
    let user = actor.user_id().unwrap_or_default();
    let standing = match app.store.room_role(actor.account_id, room, user).await? {
        Some(r) => Standing::Member(r),
        // A private room, or a public one in a private space the user is
        // not in, is not there for them (store::ROOM_VISIBLE decides).
        None if found.visibility == Visibility::Private => {
            return Err(DomainError::not_found("room").into());
        }
        None if found.space_id.is_some()
            && !app
                .store
                .room_visible_to(actor.account_id, room, user)
                .await? =>
        {
            return Err(DomainError::not_found("room").into());
        }
        None => Standing::Outsider,
    };
    Ok((found, standing))
}

/// The user behind an actor, for what only a user can do (joins, invite
/// activation).
pub fn user_only(actor: &Actor, what: &str) -> Result<Uuid> {
    actor
        .user_id()
        .ok_or_else(|| Error::forbidden(format!("only a user, with their own token, can {what}")))
}

/// `public` or `private`, as sent.
pub fn visibility(v: Option<&str>) -> Result<Option<Visibility>> {
    v.map(|s| {
        Visibility::parse(s)
            .ok_or_else(|| Error::validation("visibility", "must be `public` or `private`"))
    })
    .transpose()
}
