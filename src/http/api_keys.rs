//! An account's API keys: create (the secret is shown once), list, revoke.

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::envelope::{ApiResult, ok};
use super::extract::{ApiJson, ApiQuery, Caller, Ids, encode_cursor, page};
use crate::app::App;
use crate::domain::account::{ApiKey, CreateKey};
use crate::service::api_keys;

pub fn routes() -> OpenApiRouter<App> {
    OpenApiRouter::new()
        .routes(routes!(create_key, list_keys))
        .routes(routes!(revoke_key))
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
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// Page size: 1–100, default 50; outside that range the request is refused.
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
    /// `next_cursor` of the page before.
    #[param(pattern = r"^([A-Za-z0-9_-]{21}[AQgw])?$")]
    pub cursor: Option<String>,
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
    let api_keys::Created { secret, key } = api_keys::create(&app, &caller, body).await?;
    Ok(ok(
        StatusCode::CREATED,
        "API key created",
        KeyCreated {
            api_key: secret,
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
    let p = api_keys::list(&app, &caller, page(q.limit, q.cursor.as_deref())).await?;
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
    let key = ids.get("keyId");
    api_keys::revoke(&app, &caller, key).await?;
    Ok(ok(
        StatusCode::OK,
        "API key revoked",
        serde_json::json!({ "id": key }),
    ))
}
