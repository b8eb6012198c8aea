//! Users: the union of the four vendors' create-user APIs, reads, changes,
//! (de)activation and erasure.

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::envelope::{ApiError, ApiResult, ok};
use super::extract::{ApiJson, ApiQuery, Caller, Ids, encode_cursor, page};
use crate::app::App;
use crate::domain::permission::Permission;
use crate::domain::user::{
    CreateUserRequest, PasswordSource, Status, UpdateUserRequest, UserFilter, UserView,
};
use crate::domain::{text, time};
use crate::secret;
use crate::store::TokenRecord;
use crate::tokens::USER_TOKEN_TTL;

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
#[serde(deny_unknown_fields)]
pub struct ListParams {
    limit: Option<u32>,
    cursor: Option<String>,
    /// Members of this room.
    room_id: Option<String>,
    /// `online`, `away` or `offline`.
    status: Option<String>,
    /// Holders of this role id.
    role: Option<String>,
    /// Users carrying this tag.
    tag: Option<String>,
    /// Case-insensitive substring of name, username, custom_id or email.
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
    caller.require(Permission::CreateUser)?;
    if req.active == Some(false) {
        caller.require(Permission::EditOtherUserActiveStatus)?;
    }
    let settings = app.settings(caller.account_id).await?;
    let mut parsed = req.parse(&settings)?;
    if parsed.user.roles != ["user"] {
        caller.require(Permission::AssignRoles)?;
        caller.may_grant_roles(&app, &parsed.user.roles).await?;
    }
    let mut random = None;
    parsed.user.password_hash = match parsed.password {
        PasswordSource::None => None,
        PasswordSource::Given(p) => Some(app.passwords.hash(p.expose().to_owned()).await?),
        PasswordSource::Random => {
            let p = random.insert(secret::random_password()).clone();
            Some(app.passwords.hash(p).await?)
        }
    };
    let mail = super::user_mail::for_new_user(
        &app,
        caller.account_id,
        &settings,
        &parsed.user,
        parsed.send_welcome_email,
        random.as_deref(),
    );
    let now = time::now();
    let jti = Uuid::now_v7();
    let (token, expires_at) = app.keys.issue_user_token(
        caller.account_id,
        parsed.user.id,
        parsed.user.room_id,
        jti,
        now,
    )?;
    let record = TokenRecord {
        id: jti,
        user_id: parsed.user.id,
        kind: "user",
        room_id: parsed.user.room_id,
        created_at: now,
        expires_at,
    };
    debug_assert_eq!(expires_at, now + USER_TOKEN_TTL);
    let created = match &mail {
        Some(m) => {
            app.store
                .create_user_with_mail(caller.account_id, &parsed.user, &record, now, m)
                .await
        }
        None => {
            app.store
                .create_user(caller.account_id, &parsed.user, &record, now)
                .await
        }
    };
    if mail.is_some() && created.is_ok() {
        app.outbox.notify_one();
    }
    let user = created.map_err(body_ids)?;
    let view = user.view(&settings, caller.sees(user.id));
    Ok(ok(
        StatusCode::CREATED,
        "User created",
        UserCreated { user: view, token },
    ))
}

/// List users, filtered, newest last. Needs `view-other-user-info`
/// (every API key holds it).
#[utoipa::path(get, path = "/v1/accounts/{accountId}/users", tag = "users",
    params(("accountId" = Uuid, Path), ListParams),
    responses((status = 200, description = "Users", body = UserList)))]
async fn list_users(
    State(app): State<App>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ListParams>,
) -> ApiResult {
    caller.require(Permission::ViewOtherUserInfo)?;
    let filter = UserFilter {
        room_id: q
            .room_id
            .as_deref()
            .map(|s| {
                Uuid::try_parse(s).map_err(|_| ApiError::validation("room_id", "must be a room id"))
            })
            .transpose()?,
        status: q
            .status
            .as_deref()
            .map(|s| {
                Status::parse(s).ok_or_else(|| {
                    ApiError::validation("status", "must be online, away or offline")
                })
            })
            .transpose()?,
        role: q
            .role
            .map(|r| text::display_text("role", &r, 100))
            .transpose()?,
        tag: q
            .tag
            .map(|t| text::display_text("tag", &t, 100))
            .transpose()?,
        q: q.q.map(|s| text::display_text("q", &s, 100)).transpose()?,
    };
    let p = app
        .store
        .list_users(
            caller.account_id,
            &filter,
            page(q.limit, q.cursor.as_deref())?,
        )
        .await?;
    let settings = app.settings(caller.account_id).await?;
    Ok(ok(
        StatusCode::OK,
        "Users",
        UserList {
            users: p
                .items
                .iter()
                .map(|u| u.view(&settings, caller.sees(u.id)))
                .collect(),
            next_cursor: p.next.map(encode_cursor),
        },
    ))
}

/// Read a user. Anyone may read themself; others need `view-other-user-info`.
#[utoipa::path(get, path = "/v1/accounts/{accountId}/users/{userId}", tag = "users",
    params(("accountId" = Uuid, Path), ("userId" = Uuid, Path)),
    responses((status = 200, description = "User", body = UserOne)))]
async fn get_user(State(app): State<App>, caller: Caller, ids: Ids) -> ApiResult {
    let id = ids.get("userId");
    if caller.user_id() != Some(id) {
        caller.require(Permission::ViewOtherUserInfo)?;
    }
    let user = app.store.get_user(caller.account_id, id).await?;
    let settings = app.settings(caller.account_id).await?;
    Ok(ok(
        StatusCode::OK,
        "User",
        UserOne {
            user: user.view(&settings, caller.sees(id)),
        },
    ))
}

/// Change a user. Others need `edit-other-user-info`; roles need
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
    let id = ids.get("userId");
    let own = caller.user_id() == Some(id);
    if !own {
        caller.require(Permission::EditOtherUserInfo)?;
    }
    let settings = app.settings(caller.account_id).await?;
    let mut patch = req.parse(&settings)?;
    let current = app.store.get_user(caller.account_id, id).await?;
    if !own && let Some(field) = patch.identity_field() {
        caller.may_act_on(&app, &current, field).await?;
    }
    if patch.roles.is_some() {
        if own {
            return Err(ApiError::forbidden("nobody changes their own roles"));
        }
        caller.require(Permission::AssignRoles)?;
        caller
            .may_grant_roles(&app, patch.roles.as_deref().unwrap_or_default())
            .await?;
    }
    if own && !caller.holds(Permission::EditOtherUserInfo) {
        for (field, set) in [
            ("custom_id", patch.custom_id.is_some()),
            ("email", patch.email.is_some()),
            ("verified", patch.email_verified.is_some()),
            (
                "require_password_change",
                patch.require_password_change.is_some(),
            ),
        ] {
            if set {
                return Err(
                    ApiError::forbidden(format!("a user cannot change their own {field}"))
                        .with_field(field),
                );
            }
        }
    }
    if patch.is_empty() {
        return Err(ApiError::validation(
            "body",
            "name at least one field to change",
        ));
    }
    let mail = if patch.settle_email(&current) {
        super::user_mail::for_changed_email(
            &app,
            caller.account_id,
            &settings,
            &current,
            patch.email.as_ref().and_then(|e| e.as_deref()),
            patch.email_verified == Some(true),
        )
    } else {
        None
    };
    let user = app
        .store
        .update_user(caller.account_id, id, &patch, time::now(), mail.as_ref())
        .await
        .map_err(body_ids)?;
    if mail.is_some() {
        app.outbox.notify_one();
    }
    Ok(ok(
        StatusCode::OK,
        "User updated",
        UserOne {
            user: user.view(&settings, caller.sees(id)),
        },
    ))
}

/// Erase a user and everything that points at them. Needs `delete-user`.
#[utoipa::path(delete, path = "/v1/accounts/{accountId}/users/{userId}", tag = "users",
    params(("accountId" = Uuid, Path), ("userId" = Uuid, Path)),
    responses((status = 200, description = "User deleted")))]
async fn delete_user(State(app): State<App>, caller: Caller, ids: Ids) -> ApiResult {
    caller.require(Permission::DeleteUser)?;
    let id = ids.get("userId");
    app.store.delete_user(caller.account_id, id).await?;
    kick(&app, caller.account_id, id, "user deleted");
    Ok(ok(
        StatusCode::OK,
        "User deleted",
        serde_json::json!({ "id": id }),
    ))
}

async fn set_active(app: &App, caller: &Caller, id: Uuid, active: bool) -> ApiResult {
    caller.require(Permission::EditOtherUserActiveStatus)?;
    let user = app
        .store
        .set_user_active(caller.account_id, id, active, time::now())
        .await?;
    if !active {
        kick(app, caller.account_id, id, "user deactivated");
    }
    let settings = app.settings(caller.account_id).await?;
    let what = if active {
        "User reactivated"
    } else {
        "User deactivated"
    };
    Ok(ok(
        StatusCode::OK,
        what,
        UserOne {
            user: user.view(&settings, caller.sees(id)),
        },
    ))
}

/// Deactivate a user: their tokens stop working at once, for good.
/// Needs `edit-other-user-active-status`.
#[utoipa::path(post, path = "/v1/accounts/{accountId}/users/{userId}/deactivate", tag = "users",
    params(("accountId" = Uuid, Path), ("userId" = Uuid, Path)),
    responses((status = 200, description = "User deactivated", body = UserOne)))]
async fn deactivate_user(State(app): State<App>, caller: Caller, ids: Ids) -> ApiResult {
    set_active(&app, &caller, ids.get("userId"), false).await
}

/// Reactivate a user. Tokens issued before the deactivation stay dead.
/// Needs `edit-other-user-active-status`.
#[utoipa::path(post, path = "/v1/accounts/{accountId}/users/{userId}/reactivate", tag = "users",
    params(("accountId" = Uuid, Path), ("userId" = Uuid, Path)),
    responses((status = 200, description = "User reactivated", body = UserOne)))]
async fn reactivate_user(State(app): State<App>, caller: Caller, ids: Ids) -> ApiResult {
    set_active(&app, &caller, ids.get("userId"), true).await
}

/// Closes the user's live realtime connections, on every node.
fn kick(app: &App, account: Uuid, user: Uuid, reason: &str) {
    app.bus.publish(crate::realtime::bus::BusEvent::Kick {
        account_id: account,
        user_id: user,
        reason: reason.to_owned(),
    });
}

/// Ids in a request body that name nothing are `NOT_FOUND`, naming the field.
fn body_ids(e: crate::store::StoreError) -> ApiError {
    match e {
        crate::store::StoreError::NotFound("room") => {
            ApiError::not_found("room").with_field("room_id")
        }
        crate::store::StoreError::NotFound("role") => {
            ApiError::not_found("role").with_field("roles")
        }
        other => other.into(),
    }
}
