//! Roles: the built-in ones and the account's custom roles, each a named
//! set of permissions. A custom role's id (a UUID) differs from its name, as
//! Rocket.Chat's do; users carry role ids.

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Deserializer, Serialize};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::envelope::{ApiError, ApiResult, ok};
use super::extract::{ApiJson, Caller};
use crate::app::App;
use crate::domain::access::{Role, permissions, role_description, role_name};
use crate::domain::permission::{BUILTIN_ROLES, Permission};
use crate::domain::time;

pub fn routes() -> OpenApiRouter<App> {
    OpenApiRouter::new()
        .routes(routes!(create_role, list_roles))
        .routes(routes!(get_role, update_role, delete_role))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRole {
    name: String,
    description: Option<String>,
    /// Names from the permission catalogue (docs/access.md).
    permissions: Vec<Permission>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateRole {
    name: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    description: Option<Option<String>>,
    permissions: Option<Vec<Permission>>,
}

fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Ok(Some(Option::deserialize(d)?))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct RoleOne {
    role: Role,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct RoleList {
    roles: Vec<Role>,
    next_cursor: Option<String>,
}

fn may_read(caller: &Caller) -> ApiResult<()> {
    if caller.is_api_key() || caller.holds(Permission::AssignRoles) {
        Ok(())
    } else {
        Ok(caller.require(Permission::ManageRoles)?)
    }
}

/// Create a custom role. Needs `manage-roles`; a user may only put in it
/// permissions they hold themselves.
#[utoipa::path(post, path = "/v1/accounts/{accountId}/roles", tag = "roles",
    params(("accountId" = Uuid, Path)), request_body = CreateRole,
    responses((status = 201, description = "Role created", body = RoleOne)))]
async fn create_role(
    State(app): State<App>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateRole>,
) -> ApiResult {
    caller.require(Permission::ManageRoles)?;
    let perms = permissions(body.permissions);
    if let Some(p) = perms.iter().find(|p| !caller.holds(**p)) {
        return Err(ApiError::forbidden(format!(
            "you cannot give a role a permission you do not hold ({p:?})"
        ))
        .with_field("permissions"));
    }
    let now = time::now();
    let role = Role {
        id: Uuid::now_v7().to_string(),
        name: role_name(&body.name)?,
        description: body
            .description
            .as_deref()
            .map(role_description)
            .transpose()?,
        permissions: perms,
        builtin: false,
        created_at: Some(now),
    };
    let role = app
        .store
        .create_role(caller.account_id, &role, &caller.change())
        .await
        .map_err(|e| match e {
            crate::store::StoreError::Conflict { .. } => {
                ApiError::conflict("name", "a role with this name exists")
            }
            other => other.into(),
        })?;
    Ok(ok(StatusCode::CREATED, "Role created", RoleOne { role }))
}

/// List the built-in and custom roles. API keys, `manage-roles` or `assign-roles`.
#[utoipa::path(get, path = "/v1/accounts/{accountId}/roles", tag = "roles",
    params(("accountId" = Uuid, Path)),
    responses((status = 200, description = "Roles", body = RoleList)))]
async fn list_roles(State(app): State<App>, caller: Caller) -> ApiResult {
    may_read(&caller)?;
    let mut roles = Role::builtins();
    roles.extend(app.store.list_roles(caller.account_id).await?);
    Ok(ok(
        StatusCode::OK,
        "Roles",
        RoleList {
            roles,
            next_cursor: None,
        },
    ))
}

async fn find(app: &App, caller: &Caller, id: &str) -> ApiResult<Role> {
    if BUILTIN_ROLES.contains(&id) {
        return Ok(Role::builtins()
            .into_iter()
            .find(|r| r.id == id)
            .expect("built-in"));
    }
    Ok(app.store.get_role(caller.account_id, id).await?)
}

/// Read a role, built-in or custom.
#[utoipa::path(get, path = "/v1/accounts/{accountId}/roles/{roleId}", tag = "roles",
    params(("accountId" = Uuid, Path), ("roleId" = String, Path)),
    responses((status = 200, description = "Role", body = RoleOne)))]
async fn get_role(
    State(app): State<App>,
    caller: Caller,
    path: axum::extract::Path<(Uuid, String)>,
) -> ApiResult {
    let id = path.0.1;
    may_read(&caller)?;
    let role = find(&app, &caller, &id).await?;
    Ok(ok(StatusCode::OK, "Role", RoleOne { role }))
}

/// Change a custom role. Needs `manage-roles`; built-in roles are fixed.
#[utoipa::path(patch, path = "/v1/accounts/{accountId}/roles/{roleId}", tag = "roles",
    params(("accountId" = Uuid, Path), ("roleId" = String, Path)), request_body = UpdateRole,
    responses((status = 200, description = "Role updated", body = RoleOne)))]
async fn update_role(
    State(app): State<App>,
    caller: Caller,
    path: axum::extract::Path<(Uuid, String)>,
    ApiJson(body): ApiJson<UpdateRole>,
) -> ApiResult {
    let id = path.0.1;
    caller.require(Permission::ManageRoles)?;
    if BUILTIN_ROLES.contains(&id.as_str()) {
        return Err(ApiError::forbidden("built-in roles cannot be changed"));
    }
    let name = body.name.as_deref().map(role_name).transpose()?;
    let description = match &body.description {
        None => None,
        Some(None) => Some(None),
        Some(Some(d)) => Some(Some(role_description(d)?)),
    };
    let perms = body.permissions.map(permissions);
    if let Some(p) = perms.iter().flatten().find(|p| !caller.holds(**p)) {
        return Err(ApiError::forbidden(format!(
            "you cannot give a role a permission you do not hold ({p:?})"
        ))
        .with_field("permissions"));
    }
    let role = app
        .store
        .update_role(
            caller.account_id,
            &id,
            name.as_deref(),
            description.as_ref().map(|d| d.as_deref()),
            perms.as_deref(),
            &caller.change(),
        )
        .await
        .map_err(|e| match e {
            crate::store::StoreError::Conflict { .. } => {
                ApiError::conflict("name", "a role with this name exists")
            }
            other => other.into(),
        })?;
    Ok(ok(StatusCode::OK, "Role updated", RoleOne { role }))
}

/// Delete a custom role nobody holds. Needs `manage-roles`.
#[utoipa::path(delete, path = "/v1/accounts/{accountId}/roles/{roleId}", tag = "roles",
    params(("accountId" = Uuid, Path), ("roleId" = String, Path)),
    responses((status = 200, description = "Role deleted")))]
async fn delete_role(
    State(app): State<App>,
    caller: Caller,
    path: axum::extract::Path<(Uuid, String)>,
) -> ApiResult {
    let id = path.0.1;
    caller.require(Permission::ManageRoles)?;
    if BUILTIN_ROLES.contains(&id.as_str()) {
        return Err(ApiError::forbidden("built-in roles cannot be deleted"));
    }
    app.store
        .delete_role(caller.account_id, &id, &caller.change())
        .await?;
    Ok(ok(
        StatusCode::OK,
        "Role deleted",
        serde_json::json!({ "id": id }),
    ))
}
