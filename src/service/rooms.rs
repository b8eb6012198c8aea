//! Rooms: create (in a space or not, public or private, default or not),
//! list what the actor may see, read, change and delete — each with who may
//! do it, and the closing of live connections a deletion causes.

use uuid::Uuid;

use super::access::{in_room, in_space, visibility};
use super::{Actor, Error, Result};
use crate::app::App;
use crate::domain::access::{RoomRole, SpaceRole};
use crate::domain::permission::Permission;
use crate::domain::room::{
    CreateRoom, NewRoom, Room, RoomPatch, UpdateRoom, Visibility, room_name,
};
use crate::realtime::bus::BusEvent;
use crate::store::{Page, Paged};

/// Creates a room. Needs `create-room`; in a space, also its owner or a
/// moderator; a default room `manage-rooms`. A user creating it becomes its
/// first moderator.
pub async fn create(app: &App, actor: &Actor, req: CreateRoom) -> Result<Room> {
    actor.require(Permission::CreateRoom)?;
    let name = room_name(&req.name)?;
    let visibility = visibility(req.visibility.as_deref())?.unwrap_or(Visibility::Public);
    let is_default = req.is_default.unwrap_or(false);
    if is_default {
        actor.require(Permission::ManageRooms)?;
    }
    let space_id = match req.space_id.as_deref() {
        None => None,
        Some(s) => {
            let id = Uuid::try_parse(s).map_err(|_| Error::not_found_field("space", "space_id"))?;
            let (_, standing) = in_space(app, actor, id)
                .await
                .map_err(|e| e.naming("space_id"))?;
            if !standing.at_least(SpaceRole::Moderator) {
                return Err(standing.refuse("the space's owner or a moderator"));
            }
            Some(id)
        }
    };
    let new = NewRoom {
        name,
        space_id,
        visibility,
        is_default,
        created_by: actor.user_id(),
    };
    Ok(app
        .store
        .create_room(actor.account_id, Uuid::now_v7(), &new, &actor.change())
        .await?)
}

/// Lists rooms: public ones and the actor's own; every room for API keys
/// and `manage-rooms`.
pub async fn list(app: &App, actor: &Actor, page: Page) -> Result<Paged<Room>> {
    Ok(match actor.user_id() {
        Some(user) if !actor.holds(Permission::ManageRooms) => {
            app.store
                .list_rooms_visible_to(actor.account_id, user, page)
                .await?
        }
        _ => app.store.list_rooms(actor.account_id, None, page).await?,
    })
}

/// Reads a room (a private one: members only — the space owner included).
pub async fn get(app: &App, actor: &Actor, id: Uuid) -> Result<Room> {
    Ok(in_room(app, actor, id).await?.0)
}

/// Changes a room. Its moderators, or `manage-rooms`; `is_default` needs
/// `manage-rooms`.
pub async fn update(app: &App, actor: &Actor, id: Uuid, req: UpdateRoom) -> Result<Room> {
    let (room, standing) = in_room(app, actor, id).await?;
    if !standing.at_least(RoomRole::Moderator) {
        return Err(standing.refuse("a moderator of the room"));
    }
    if req.is_default.is_some() {
        actor.require(Permission::ManageRooms)?;
    }
    let patch = RoomPatch {
        name: req.name.as_deref().map(room_name).transpose()?,
        visibility: visibility(req.visibility.as_deref())?,
        is_default: req.is_default,
    };
    Ok(app
        .store
        .update_room(actor.account_id, room.id, &patch, &actor.change())
        .await?)
}

/// Deletes a room with its memberships and links; whoever is connected to
/// it leaves it. Its moderators, or `manage-rooms`.
pub async fn delete(app: &App, actor: &Actor, id: Uuid) -> Result<()> {
    let (room, standing) = in_room(app, actor, id).await?;
    if !standing.at_least(RoomRole::Moderator) {
        return Err(standing.refuse("a moderator of the room"));
    }
    app.store
        .delete_room(actor.account_id, room.id, &actor.change())
        .await?;
    app.bus.publish(BusEvent::RoomClosed {
        account_id: actor.account_id,
        room_id: room.id,
        user_id: None,
    });
    Ok(())
}
