//! Membership of rooms and spaces: joining a public one, listing members,
//! granting a role (LiveDigital's grantRole) and removing a member — with
//! the rank rules of who may set whose role, and the closing of a removed
//! member's live room connections.
//!
//! The lists take their `page` as the front door read it (or why it could
//! not): a bad one is refused only once the actor may read at all.

use uuid::Uuid;

use super::access::{Standing, in_room, in_space, user_only};
use super::{Actor, Error, Result};
use crate::app::App;
use crate::domain::access::{Member, RoomRole, SpaceRole};
use crate::domain::room::Visibility;
use crate::realtime::bus::BusEvent;
use crate::store::{Page, Paged};

/// Joins a public room as a `user` (in a private space: its members only).
/// A user, with their own token.
pub async fn join_room(app: &App, actor: &Actor, room: Uuid) -> Result<Member> {
    let user = user_only(actor, "join a room")?;
    let (room, standing) = in_room(app, actor, room).await?;
    if room.visibility == Visibility::Private && !standing.is_member() {
        return Err(Error::forbidden(
            "this room is private: a moderator must add you",
        ));
    }
    Ok(app
        .store
        .put_room_member(
            actor.account_id,
            room.id,
            user,
            RoomRole::User,
            true,
            &actor.change(),
        )
        .await?)
}

/// Lists a room's members. Its members, API keys, or `manage-rooms`.
pub async fn list_room(
    app: &App,
    actor: &Actor,
    room: Uuid,
    page: Result<Page>,
) -> Result<Paged<Member>> {
    let (room, standing) = in_room(app, actor, room).await?;
    if !standing.may_read() {
        return Err(standing.refuse("membership of the room"));
    }
    Ok(app
        .store
        .list_room_members(actor.account_id, room.id, page?)
        .await?)
}

/// grantRole: adds a member or sets their role. The room's moderators (its
/// creator is one) or `manage-rooms` — not the space owner as such. A user
/// is in at most 2000 rooms.
pub async fn put_room(
    app: &App,
    actor: &Actor,
    room: Uuid,
    target: Uuid,
    role: &str,
) -> Result<Member> {
    grant_room(app, actor, room, target, role, false).await
}

/// Adds a member with `role` unless they are one already (then their
/// membership is kept as it is): an invitation, as Rocket.Chat's
/// `channels.invite` is. Who may: as [`put_room`].
pub async fn add_room(
    app: &App,
    actor: &Actor,
    room: Uuid,
    target: Uuid,
    role: &str,
) -> Result<Member> {
    grant_room(app, actor, room, target, role, true).await
}

async fn grant_room(
    app: &App,
    actor: &Actor,
    room: Uuid,
    target: Uuid,
    role: &str,
    only_if_absent: bool,
) -> Result<Member> {
    let (room, standing) = in_room(app, actor, room).await?;
    let role = RoomRole::parse(role).ok_or_else(|| {
        Error::validation(
            "role",
            "must be role_room_user or role_room_moderator (or user / moderator / guest)",
        )
    })?;
    if !standing.at_least(RoomRole::Moderator) {
        return Err(standing.refuse("a moderator of the room"));
    }
    Ok(app
        .store
        .put_room_member(
            actor.account_id,
            room.id,
            target,
            role,
            only_if_absent,
            &actor.change(),
        )
        .await?)
}

/// Removes a member; their live connections leave the room. The room's
/// moderators or `manage-rooms`; any member may remove themself.
pub async fn remove_room(app: &App, actor: &Actor, room: Uuid, target: Uuid) -> Result<()> {
    let (room, standing) = in_room(app, actor, room).await?;
    if actor.user_id() != Some(target) && !standing.at_least(RoomRole::Moderator) {
        return Err(standing.refuse("a moderator of the room"));
    }
    app.store
        .remove_room_member(actor.account_id, room.id, target, &actor.change())
        .await?;
    app.bus.publish(BusEvent::RoomClosed {
        account_id: actor.account_id,
        room_id: room.id,
        user_id: Some(target),
    });
    Ok(())
}

/// Joins a public space as a `user`. A user, with their own token; private
/// spaces need an invite.
pub async fn join_space(app: &App, actor: &Actor, space: Uuid) -> Result<Member> {
    let user = user_only(actor, "join a space")?;
    let (space, standing) = in_space(app, actor, space).await?;
    if space.visibility == Visibility::Private && !standing.is_member() {
        return Err(Error::forbidden(
            "this space is private: joining it takes an invite",
        ));
    }
    Ok(app
        .store
        .put_space_member(
            actor.account_id,
            space.id,
            user,
            SpaceRole::User,
            true,
            &actor.change(),
        )
        .await?)
}

/// Lists a space's members. Its members, API keys, or `manage-rooms`.
pub async fn list_space(
    app: &App,
    actor: &Actor,
    space: Uuid,
    page: Result<Page>,
) -> Result<Paged<Member>> {
    let (space, standing) = in_space(app, actor, space).await?;
    if !standing.may_read() {
        return Err(standing.refuse("membership of the space"));
    }
    Ok(app
        .store
        .list_space_members(actor.account_id, space.id, page?)
        .await?)
}

/// Adds a member or changes their role. The owner grants any role; a
/// moderator grants up to moderator to those below them; `manage-rooms`
/// anything.
pub async fn put_space(
    app: &App,
    actor: &Actor,
    space: Uuid,
    target: Uuid,
    role: &str,
) -> Result<Member> {
    let (space, standing) = in_space(app, actor, space).await?;
    let role = SpaceRole::parse_grantable("role", role)?;
    check_outranks(app, actor, &standing, space.id, target, role).await?;
    Ok(app
        .store
        .put_space_member(
            actor.account_id,
            space.id,
            target,
            role,
            false,
            &actor.change(),
        )
        .await?)
}

/// A member's role may be set by a manager, or by a member who outranks both
/// the target's current role and the role given (the owner's role is fixed).
async fn check_outranks(
    app: &App,
    actor: &Actor,
    standing: &Standing<SpaceRole>,
    space: Uuid,
    target: Uuid,
    role: SpaceRole,
) -> Result<()> {
    let current = app
        .store
        .space_role(actor.account_id, space, target)
        .await?;
    if current == Some(SpaceRole::Owner) {
        return Err(Error::forbidden("the owner's role cannot be changed"));
    }
    match standing {
        Standing::Manager => Ok(()),
        Standing::Member(mine) if *mine >= SpaceRole::Moderator => {
            if actor.user_id() == Some(target) && Some(role) > current {
                return Err(Error::forbidden("nobody raises their own role"));
            }
            if role > *mine || current.is_some_and(|c| c >= *mine && *mine != SpaceRole::Owner) {
                return Err(Error::forbidden(
                    "you may only manage members below your own role",
                ));
            }
            Ok(())
        }
        other => Err(other.refuse("the space's owner or a moderator")),
    }
}

/// Removes a member. Managers, the owner and moderators (for those below
/// them); any member may remove themself. The owner cannot be removed.
pub async fn remove_space(app: &App, actor: &Actor, space: Uuid, target: Uuid) -> Result<()> {
    let (space, standing) = in_space(app, actor, space).await?;
    let current = app
        .store
        .space_role(actor.account_id, space.id, target)
        .await?;
    let Some(current) = current else {
        if !standing.may_read() || matches!(standing, Standing::Reader) {
            return Err(standing.refuse("the space's owner or a moderator"));
        }
        return Err(crate::domain::DomainError::not_found("member").into());
    };
    if current == SpaceRole::Owner {
        return Err(Error::forbidden(
            "the owner cannot be removed from their space",
        ));
    }
    let allowed = actor.user_id() == Some(target)
        || matches!(standing, Standing::Manager)
        || matches!(standing, Standing::Member(mine) if mine >= SpaceRole::Moderator && (mine == SpaceRole::Owner || current < mine));
    if !allowed {
        return Err(standing.refuse("the space's owner or a moderator"));
    }
    app.store
        .remove_space_member(actor.account_id, space.id, target, &actor.change())
        .await?;
    Ok(())
}
