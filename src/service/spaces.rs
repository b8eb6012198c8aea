//! Spaces: create (the creating user becomes the owner), list what the
//! actor may see, read, rename or change visibility, and delete with
//! everything inside.

use uuid::Uuid;

use super::access::{in_space, visibility};
use super::{Actor, Result};
use crate::app::App;
use crate::domain::access::{
    CreateSpace, Space, SpaceRole, UpdateSpace, space_external_id, space_name,
};
use crate::domain::permission::Permission;
use crate::domain::room::Visibility;
use crate::domain::time;
use crate::domain::user_query::Found;
use crate::store::{Page, Paged, SpaceEdit};

/// Creates a space; a user creating it becomes its owner. Needs `create-space`.
pub async fn create(app: &App, actor: &Actor, req: CreateSpace) -> Result<Space> {
    create_with_members(app, actor, req, &[]).await
}

/// Creates a space with `members` (ids naming no user of the account are
/// skipped) joined as `user` beside its owner, all or nothing: SCIM's Group
/// create. Needs `create-space`; the creator may add anyone, as an owner may.
pub async fn create_with_members(
    app: &App,
    actor: &Actor,
    req: CreateSpace,
    members: &[Uuid],
) -> Result<Space> {
    actor.require(Permission::CreateSpace)?;
    let now = time::now();
    let space = Space {
        id: Uuid::now_v7(),
        account_id: actor.account_id,
        name: space_name(&req.name)?,
        visibility: visibility(req.visibility.as_deref())?.unwrap_or(Visibility::Public),
        created_by: actor.user_id(),
        external_id: req
            .external_id
            .as_deref()
            .map(space_external_id)
            .transpose()?,
        created_at: now,
        updated_at: now,
    };
    Ok(app
        .store
        .create_space(actor.account_id, &space, members, &actor.change())
        .await?)
}

/// Lists spaces: public ones and the actor's own; every space for API keys
/// and `manage-rooms`.
pub async fn list(app: &App, actor: &Actor, page: Page) -> Result<Paged<Space>> {
    let viewer = if actor.is_account_wide() || actor.holds(Permission::ManageRooms) {
        None
    } else {
        actor.user_id()
    };
    Ok(app
        .store
        .list_spaces(actor.account_id, viewer, page)
        .await?)
}

/// A window of every space and how many there are, `name` keeping those
/// so named (case-insensitively): SCIM's Groups. API keys and
/// `manage-rooms` only.
pub async fn search(
    app: &App,
    actor: &Actor,
    name: Option<&str>,
    offset: u64,
    count: u32,
) -> Result<Found<Space>> {
    if !(actor.is_account_wide() || actor.holds(Permission::ManageRooms)) {
        return Err(super::Error::forbidden(
            "listing every space needs the `manage-rooms` permission",
        ));
    }
    Ok(app
        .store
        .search_spaces(actor.account_id, name, offset, count)
        .await?)
}

/// Reads a space (a private one: members only).
pub async fn get(app: &App, actor: &Actor, id: Uuid) -> Result<Space> {
    Ok(in_space(app, actor, id).await?.0)
}

/// Renames a space or changes its visibility. Its owner, or `manage-rooms`.
pub async fn update(app: &App, actor: &Actor, id: Uuid, req: UpdateSpace) -> Result<Space> {
    update_with_members(app, actor, id, req, Vec::new(), Vec::new()).await
}

/// Changes a space and its members in one transaction: `add` joins users
/// as `user` (members already, and ids naming no user, are skipped),
/// `remove` ends memberships (the owner's stays): SCIM's Group replace and
/// PATCH. The space's owner, or `manage-rooms`, as for [`update`] (an
/// owner may add and remove anyone below them).
pub async fn update_with_members(
    app: &App,
    actor: &Actor,
    id: Uuid,
    req: UpdateSpace,
    add: Vec<Uuid>,
    remove: Vec<Uuid>,
) -> Result<Space> {
    let (space, standing) = in_space(app, actor, id).await?;
    if !standing.at_least(SpaceRole::Owner) {
        return Err(standing.refuse("the space's owner"));
    }
    let edit = SpaceEdit {
        name: req.name.as_deref().map(space_name).transpose()?,
        visibility: visibility(req.visibility.as_deref())?,
        external_id: req
            .external_id
            .map(|e| e.as_deref().map(space_external_id).transpose())
            .transpose()?,
        add,
        remove,
    };
    Ok(app
        .store
        .update_space(actor.account_id, space.id, &edit, &actor.change())
        .await?)
}

/// Deletes a space with its rooms, memberships, invites and links. Its
/// owner, or `manage-rooms`.
pub async fn delete(app: &App, actor: &Actor, id: Uuid) -> Result<()> {
    let (space, standing) = in_space(app, actor, id).await?;
    if !standing.at_least(SpaceRole::Owner) {
        return Err(standing.refuse("the space's owner"));
    }
    app.store
        .delete_space(actor.account_id, space.id, &actor.change())
        .await?;
    Ok(())
}
