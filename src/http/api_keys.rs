//! An account's API keys: create (the secret is shown once), list, revoke.

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::envelope::{ApiError, ApiResult, ok};
use super::extract::{ApiJson, ApiQuery, Caller, Ids, encode_cursor, page};
use crate::app::App;
use crate::domain::account::{ApiKey, Scope, key_name};
use crate::domain::permission::Permission;
use crate::secret::ApiKeySecret;
use crate::store::NewApiKey;

pub fn routes() -> OpenApiRouter<App> {
    OpenApiRouter::new()
        .routes(routes!(create_key, list_keys))
        .routes(routes!(revoke_key))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    name: String,
    /// `full` (default) or `read`.
    scope: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct KeyCreated {
    /// The secret itself, shown this once.
    api_key: String,
    key: ApiKey,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct KeyList {
    api_keys: Vec<ApiKey>,
    next_cursor: Option<String>,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    limit: Option<u32>,
    cursor: Option<String>,
}

/// Create an API key. Needs `manage-api-keys`.
#[utoipa::path(post, path = "/v1/accounts/{accountId}/api-keys", tag = "api keys",
    params(("accountId" = Uuid, Path)), request_body = CreateKey,
    responses((status = 201, description = "API key created", body = KeyCreated)))]
async fn create_key(
    State(app): State<App>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateKey>,
) -> ApiResult {
    caller.require(Permission::ManageApiKeys)?;
    let name = key_name(&body.name)?;
    let scope = match body.scope.as_deref() {
        None => Scope::Full,
        Some(s) => Scope::parse(s)
            .ok_or_else(|| ApiError::validation("scope", "must be `full` or `read`"))?,
    };
    let (secret, hash) = ApiKeySecret::generate();
    let new = NewApiKey {
        id: secret.id,
        name,
        scope,
        secret_hash: hash,
        created_at: crate::domain::time::now(),
    };
    app.store
        .create_api_key(caller.account_id, &new, &caller.change())
        .await?;
    let key = ApiKey {
        id: new.id,
        name: new.name,
        scope,
        created_at: new.created_at,
        last_used_at: None,
    };
    Ok(ok(
        StatusCode::CREATED,
        "API key created",
        KeyCreated {
            api_key: secret.full,
            key,
        },
    ))
}

/// List the account's live API keys (never their secrets). Needs `manage-api-keys`.
#[utoipa::path(get, path = "/v1/accounts/{accountId}/api-keys", tag = "api keys",
    params(("accountId" = Uuid, Path), ListParams),
    responses((status = 200, description = "API keys", body = KeyList)))]
async fn list_keys(
    State(app): State<App>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ListParams>,
) -> ApiResult {
    caller.require(Permission::ManageApiKeys)?;
    let p = app
        .store
        .list_api_keys(caller.account_id, page(q.limit, q.cursor.as_deref())?)
        .await?;
    Ok(ok(
        StatusCode::OK,
        "API keys",
        KeyList {
            api_keys: p.items,
            next_cursor: p.next.map(encode_cursor),
        },
    ))
}

/// Revoke an API key; it stops working at once. Needs `manage-api-keys`.
#[utoipa::path(delete, path = "/v1/accounts/{accountId}/api-keys/{keyId}", tag = "api keys",
    params(("accountId" = Uuid, Path), ("keyId" = Uuid, Path)),
    responses((status = 200, description = "API key revoked")))]
async fn revoke_key(State(app): State<App>, caller: Caller, ids: Ids) -> ApiResult {
    caller.require(Permission::ManageApiKeys)?;
    let key: Uuid = ids.get("keyId");
    app.store
        .revoke_api_key(caller.account_id, key, &caller.change())
        .await?;
    app.forget_api_key(key);
    Ok(ok(
        StatusCode::OK,
        "API key revoked",
        serde_json::json!({ "id": key }),
    ))
}
