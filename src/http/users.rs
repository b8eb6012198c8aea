//! Users: the union of the four vendors' create-user APIs, reads, changes,
//! (de)activation and erasure.

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::envelope::{ApiResult, ok};
use super::extract::{ApiJson, ApiQuery, Caller, Ids, encode_cursor, page};
use crate::app::App;
use crate::domain::user::{CreateUserRequest, UpdateUserRequest, UserView};
use crate::service::users;

pub fn routes() -> OpenApiRouter<App> {
    OpenApiRouter::new()
        .routes(routes!(create_user, list_users))
        .routes(routes!(get_user, update_user, delete_user))
        .routes(routes!(deactivate_user))
        .routes(routes!(reactivate_user))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct UserCreated {
    user: UserView,
    /// A 90-day `user` JWT for the realtime connection.
    token: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct UserOne {
    user: UserView,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct UserList {
    users: Vec<UserView>,
    next_cursor: Option<String>,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// Page size: 1–100, default 50; outside that range the request is refused.
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u32>,
    /// `next_cursor` of the page before.
    #[param(pattern = r"^([A-Za-z0-9_-]{21}[AQgw])?$")]
    cursor: Option<String>,
    /// Members of this room.
    #[param(format = Uuid)]
    room_id: Option<String>,
    /// `online`, `away` or `offline`.
    #[param(pattern = "^(online|away|offline)$")]
    status: Option<String>,
    /// Holders of this role id.
    #[param(schema_with = crate::domain::text::display_schema::<100>)]
    role: Option<String>,
    /// Users carrying this tag.
    #[param(schema_with = crate::domain::text::display_schema::<100>)]
    tag: Option<String>,
    /// Case-insensitive substring of name, username, custom_id or email.
    #[param(schema_with = crate::domain::text::display_schema::<100>)]
    q: Option<String>,
}

/// Create a user. Needs `create-user`; `active: false` also needs
/// `edit-other-user-active-status`, roles other than `user` need `assign-roles`.
#[utoipa::path(post, path = "/v1/accounts/{accountId}/users", tag = "users",
    params(("accountId" = Uuid, Path)), request_body = CreateUserRequest,
    responses((status = 201, description = "User created", body = UserCreated)))]
async fn create_user(
    State(app): State<App>,
    caller: Caller,
    ApiJson(req): ApiJson<CreateUserRequest>,
) -> ApiResult {
    let users::Created { user, token } = users::create(&app, &caller, req).await?;
    Ok(ok(
        StatusCode::CREATED,
        "User created",
        UserCreated { user, token },
    ))
}

/// List users, filtered, oldest first. Needs `view-other-user-info`
/// (every API key holds it).
#[utoipa::path(get, path = "/v1/accounts/{accountId}/users", tag = "users",
    params(("accountId" = Uuid, Path), ListParams),
    responses((status = 200, description = "Users", body = UserList)))]
async fn list_users(
    State(app): State<App>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ListParams>,
) -> ApiResult {
    let page = page(q.limit, q.cursor.as_deref())?;
    let query = users::ListQuery {
        room_id: q.room_id,
        status: q.status,
        role: q.role,
        tag: q.tag,
        q: q.q,
    };
    let found = users::list(&app, &caller, query, page).await?;
    Ok(ok(
        StatusCode::OK,
        "Users",
        UserList {
            users: found.items,
            next_cursor: found.next.map(encode_cursor),
        },
    ))
}

/// Read a user. Anyone may read themself; others need `view-other-user-info`.
#[utoipa::path(get, path = "/v1/accounts/{accountId}/users/{userId}", tag = "users",
    params(("accountId" = Uuid, Path), ("userId" = Uuid, Path)),
    responses((status = 200, description = "User", body = UserOne)))]
async fn get_user(State(app): State<App>, caller: Caller, ids: Ids) -> ApiResult {
    let user = users::get(&app, &caller, ids.get("userId")).await?;
    Ok(ok(StatusCode::OK, "User", UserOne { user }))
}

/// Change a user. Others need `edit-other-user-info` (and, for their login
/// names, contact details and roles, every permission they hold); roles need
/// `assign-roles` and nobody changes their own. A user may change their own
/// profile, but not their custom_id, email, verification or roles.
#[utoipa::path(patch, path = "/v1/accounts/{accountId}/users/{userId}", tag = "users",
    params(("accountId" = Uuid, Path), ("userId" = Uuid, Path)), request_body = UpdateUserRequest,
    responses((status = 200, description = "User updated", body = UserOne)))]
async fn update_user(
    State(app): State<App>,
    caller: Caller,
    ids: Ids,
    ApiJson(req): ApiJson<UpdateUserRequest>,
) -> ApiResult {
    let user = users::update(&app, &caller, ids.get("userId"), req).await?;
    Ok(ok(StatusCode::OK, "User updated", UserOne { user }))
}

/// Erase a user and everything that points at them. Needs `delete-user`.
#[utoipa::path(delete, path = "/v1/accounts/{accountId}/users/{userId}", tag = "users",
    params(("accountId" = Uuid, Path), ("userId" = Uuid, Path)),
    responses((status = 200, description = "User deleted")))]
async fn delete_user(State(app): State<App>, caller: Caller, ids: Ids) -> ApiResult {
    let id = ids.get("userId");
    users::delete(&app, &caller, id).await?;
    Ok(ok(
        StatusCode::OK,
        "User deleted",
        serde_json::json!({ "id": id }),
    ))
}

/// Deactivate a user: their tokens stop working at once, for good.
/// Needs `edit-other-user-active-status`.
#[utoipa::path(post, path = "/v1/accounts/{accountId}/users/{userId}/deactivate", tag = "users",
    params(("accountId" = Uuid, Path), ("userId" = Uuid, Path)),
    responses((status = 200, description = "User deactivated", body = UserOne)))]
async fn deactivate_user(State(app): State<App>, caller: Caller, ids: Ids) -> ApiResult {
    let user = users::set_active(&app, &caller, ids.get("userId"), false).await?;
    Ok(ok(StatusCode::OK, "User deactivated", UserOne { user }))
}

/// Reactivate a user. Tokens issued before the deactivation stay dead.
/// Needs `edit-other-user-active-status`.
#[utoipa::path(post, path = "/v1/accounts/{accountId}/users/{userId}/reactivate", tag = "users",
    params(("accountId" = Uuid, Path), ("userId" = Uuid, Path)),
    responses((status = 200, description = "User reactivated", body = UserOne)))]
async fn reactivate_user(State(app): State<App>, caller: Caller, ids: Ids) -> ApiResult {
    let user = users::set_active(&app, &caller, ids.get("userId"), true).await?;
    Ok(ok(StatusCode::OK, "User reactivated", UserOne { user }))
}
