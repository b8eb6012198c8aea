//! Scoped rights: where a caller stands in a space or a room. Account-wide
//! permissions (an API key, `manage-rooms`) come first; then the caller's
//! membership role. A private space or room is invisible (404) to whoever
//! stands outside it.

use uuid::Uuid;

use super::envelope::{ApiError, ApiResult};
use super::extract::{Caller, CallerKind};
use crate::app::App;
use crate::domain::access::{RoomRole, Space, SpaceRole};
use crate::domain::account::Scope;
use crate::domain::permission::Permission;
use crate::domain::room::{Room, Visibility};

/// Where a caller stands in a space or room.
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

    pub fn refuse(&self, what: &str) -> ApiError {
        match self {
            Standing::Reader => ApiError::forbidden("a read-only API key cannot do this"),
            _ => ApiError::forbidden(format!("this needs {what}")),
        }
    }
}

fn account_wide<R>(caller: &Caller) -> Option<Standing<R>> {
    match &caller.kind {
        CallerKind::ApiKey {
            scope: Scope::Full, ..
        } => Some(Standing::Manager),
        CallerKind::ApiKey {
            scope: Scope::Read, ..
        } => Some(Standing::Reader),
        CallerKind::User { .. } if caller.holds(Permission::ManageRooms) => Some(Standing::Manager),
        _ => None,
    }
}

pub async fn in_space(
    app: &App,
    caller: &Caller,
    space: Uuid,
) -> ApiResult<(Space, Standing<SpaceRole>)> {
    let found = app.store.get_space(caller.account_id, space).await?;
    if let Some(s) = account_wide(caller) {
        return Ok((found, s));
    }
    let user = caller.user_id().unwrap_or_default();
    let standing = match app.store.space_role(caller.account_id, space, user).await? {
        Some(r) => Standing::Member(r),
        None if found.visibility == Visibility::Private => {
            return Err(ApiError::not_found("space"));
        }
        None => Standing::Outsider,
    };
    Ok((found, standing))
}

pub async fn in_room(
    app: &App,
    caller: &Caller,
    room: Uuid,
) -> ApiResult<(Room, Standing<RoomRole>)> {
    let found = app.store.get_room(caller.account_id, room).await?;
    if let Some(s) = account_wide(caller) {
        return Ok((found, s));
    }
    let user = caller.user_id().unwrap_or_default();
    let standing = match app.store.room_role(caller.account_id, room, user).await? {
        Some(r) => Standing::Member(r),
        None if found.visibility == Visibility::Private => return Err(ApiError::not_found("room")),
        None => Standing::Outsider,
    };
    Ok((found, standing))
}

/// The user behind a caller, for routes only a user can take (joins,
/// invite activation).
pub fn user_only(caller: &Caller, what: &str) -> ApiResult<Uuid> {
    caller.user_id().ok_or_else(|| {
        ApiError::forbidden(format!("only a user, with their own token, can {what}"))
    })
}
