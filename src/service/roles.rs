//! Roles: the built-in ones and the account's custom roles, each a named
//! set of permissions. A custom role's id (a UUID) differs from its name, as
//! Rocket.Chat's do; users carry role ids. Nobody puts into a role a
//! permission they do not hold.

use uuid::Uuid;

use super::{Actor, Error, Result};
use crate::app::App;
use crate::domain::access::{
    CreateRole, Role, UpdateRole, permissions, role_description, role_name,
};
use crate::domain::permission::{BUILTIN_ROLES, Permission};
use crate::domain::time;
use crate::store::StoreError;

/// Reading roles: API keys, `manage-roles` or `assign-roles`.
fn may_read(actor: &Actor) -> Result<()> {
    if actor.is_account_wide() || actor.holds(Permission::AssignRoles) {
        Ok(())
    } else {
        actor.require(Permission::ManageRoles)
    }
}

/// Refuses the first of `perms` the actor does not hold.
fn only_held(actor: &Actor, perms: &[Permission]) -> Result<()> {
    match perms.iter().find(|p| !actor.holds(**p)) {
        Some(p) => Err(Error::forbidden_field(
            format!(
                "you cannot give a role a permission you do not hold (`{}`)",
                p.name()
            ),
            "permissions",
        )),
        None => Ok(()),
    }
}

/// Only what you hold, for a role that exists: nobody changes or deletes a
/// role that grants more than they have (they could empty it, or rename it
/// to mislead whoever grants it).
async fn may_edit(app: &App, actor: &Actor, id: &str) -> Result<()> {
    let current = app.store.get_role(actor.account_id, id).await?;
    match current.permissions.iter().find(|p| !actor.holds(**p)) {
        Some(p) => Err(Error::forbidden(format!(
            "this role grants `{}`, which you do not hold",
            p.name()
        ))),
        None => Ok(()),
    }
}

/// A role name taken is the name's conflict.
fn name_conflict(e: StoreError) -> Error {
    match e {
        StoreError::Conflict { .. } => Error::conflict("name", "a role with this name exists"),
        other => other.into(),
    }
}

/// Who may create, change or delete roles: holders of `manage-roles` (a
/// front door may ask before it reads the request).
pub fn may_manage(actor: &Actor) -> Result<()> {
    actor.require(Permission::ManageRoles)
}

/// Creates a custom role. Needs `manage-roles`; a user may only put in it
/// permissions they hold themselves.
pub async fn create(app: &App, actor: &Actor, req: CreateRole) -> Result<Role> {
    actor.require(Permission::ManageRoles)?;
    let perms = permissions(req.permissions);
    only_held(actor, &perms)?;
    let now = time::now();
    let role = Role {
        id: Uuid::now_v7().to_string(),
        name: role_name(&req.name)?,
        description: req
            .description
            .as_deref()
            .map(role_description)
            .transpose()?,
        permissions: perms,
        builtin: false,
        created_at: Some(now),
    };
    app.store
        .create_role(actor.account_id, &role, &actor.change())
        .await
        .map_err(name_conflict)
}

/// Lists the built-in and custom roles. API keys, `manage-roles` or
/// `assign-roles`.
pub async fn list(app: &App, actor: &Actor) -> Result<Vec<Role>> {
    may_read(actor)?;
    let mut roles = Role::builtins();
    roles.extend(app.store.list_roles(actor.account_id).await?);
    Ok(roles)
}

/// Reads a role, built-in or custom. API keys, `manage-roles` or
/// `assign-roles`.
pub async fn get(app: &App, actor: &Actor, id: &str) -> Result<Role> {
    may_read(actor)?;
    if BUILTIN_ROLES.contains(&id) {
        return Ok(Role::builtins()
            .into_iter()
            .find(|r| r.id == id)
            .expect("built-in"));
    }
    Ok(app.store.get_role(actor.account_id, id).await?)
}

/// Changes a custom role. Needs `manage-roles` and every permission the role
/// grants now and is given; built-in roles are fixed.
pub async fn update(app: &App, actor: &Actor, id: &str, req: UpdateRole) -> Result<Role> {
    actor.require(Permission::ManageRoles)?;
    if BUILTIN_ROLES.contains(&id) {
        return Err(Error::forbidden("built-in roles cannot be changed"));
    }
    let name = req.name.as_deref().map(role_name).transpose()?;
    let description = match &req.description {
        None => None,
        Some(None) => Some(None),
        Some(Some(d)) => Some(Some(role_description(d)?)),
    };
    let perms = req.permissions.map(permissions);
    only_held(actor, perms.as_deref().unwrap_or_default())?;
    may_edit(app, actor, id).await?;
    app.store
        .update_role(
            actor.account_id,
            id,
            name.as_deref(),
            description.as_ref().map(|d| d.as_deref()),
            perms.as_deref(),
            &actor.change(),
        )
        .await
        .map_err(name_conflict)
}

/// Deletes a custom role nobody holds. Needs `manage-roles` and every
/// permission the role grants.
pub async fn delete(app: &App, actor: &Actor, id: &str) -> Result<()> {
    actor.require(Permission::ManageRoles)?;
    if BUILTIN_ROLES.contains(&id) {
        return Err(Error::forbidden("built-in roles cannot be deleted"));
    }
    may_edit(app, actor, id).await?;
    app.store
        .delete_role(actor.account_id, id, &actor.change())
        .await?;
    Ok(())
}
