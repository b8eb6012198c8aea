//! Roles: the built-in ones and the account's custom roles, each a named
//! set of permissions. A custom role's id (a UUID) differs from its name, as
//! Rocket.Chat's do; users carry role ids.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Serialize;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::envelope::{ApiResult, ok};
use super::extract::{ApiJson, Caller};
use crate::app::App;
use crate::domain::access::{CreateRole, Role, UpdateRole};
use crate::service::roles;

pub fn routes() -> OpenApiRouter<App> {
    OpenApiRouter::new()
        .routes(routes!(create_role, list_roles))
        .routes(routes!(get_role, update_role, delete_role))
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
    let role = roles::create(&app, &caller, body).await?;
    Ok(ok(StatusCode::CREATED, "Role created", RoleOne { role }))
}

/// List the built-in and custom roles. API keys, `manage-roles` or `assign-roles`.
#[utoipa::path(get, path = "/v1/accounts/{accountId}/roles", tag = "roles",
    params(("accountId" = Uuid, Path)),
    responses((status = 200, description = "Roles", body = RoleList)))]
async fn list_roles(State(app): State<App>, caller: Caller) -> ApiResult {
    let roles = roles::list(&app, &caller).await?;
    Ok(ok(
        StatusCode::OK,
        "Roles",
        RoleList {
            roles,
            next_cursor: None,
        },
    ))
}

/// Read a role, built-in or custom.
#[utoipa::path(get, path = "/v1/accounts/{accountId}/roles/{roleId}", tag = "roles",
    params(("accountId" = Uuid, Path), ("roleId" = String, Path)),
    responses((status = 200, description = "Role", body = RoleOne)))]
async fn get_role(State(app): State<App>, caller: Caller, path: Path<(Uuid, String)>) -> ApiResult {
    let id = path.0.1;
    let role = roles::get(&app, &caller, &id).await?;
    Ok(ok(StatusCode::OK, "Role", RoleOne { role }))
}

/// Change a custom role. Needs `manage-roles`; built-in roles are fixed.
#[utoipa::path(patch, path = "/v1/accounts/{accountId}/roles/{roleId}", tag = "roles",
    params(("accountId" = Uuid, Path), ("roleId" = String, Path)), request_body = UpdateRole,
    responses((status = 200, description = "Role updated", body = RoleOne)))]
async fn update_role(
    State(app): State<App>,
    caller: Caller,
    path: Path<(Uuid, String)>,
    ApiJson(body): ApiJson<UpdateRole>,
) -> ApiResult {
    let id = path.0.1;
    let role = roles::update(&app, &caller, &id, body).await?;
    Ok(ok(StatusCode::OK, "Role updated", RoleOne { role }))
}

/// Delete a custom role nobody holds. Needs `manage-roles`.
#[utoipa::path(delete, path = "/v1/accounts/{accountId}/roles/{roleId}", tag = "roles",
    params(("accountId" = Uuid, Path), ("roleId" = String, Path)),
    responses((status = 200, description = "Role deleted")))]
async fn delete_role(
    State(app): State<App>,
    caller: Caller,
    path: Path<(Uuid, String)>,
) -> ApiResult {
    let id = path.0.1;
    roles::delete(&app, &caller, &id).await?;
    Ok(ok(
        StatusCode::OK,
        "Role deleted",
        serde_json::json!({ "id": id }),
    ))
}
