//! Per-user auth tokens (CometChat): issue, list, revoke one, revoke all.
//! The rules, and the cap on live tokens, are in [`crate::service::tokens`].

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::auth::optional_json;
use super::envelope::{ApiResult, ok};
use super::extract::{ApiQuery, Caller, Ids, encode_cursor, page};
use crate::app::App;
use crate::domain::session::IssueTokenRequest;
use crate::domain::time;
use crate::service::tokens;
use crate::store::sessions::TokenInfo;

pub fn routes() -> OpenApiRouter<App> {
    OpenApiRouter::new()
        .routes(routes!(issue_token, list_tokens, revoke_all_tokens))
        .routes(routes!(revoke_token))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct TokenInfoView {
    id: Uuid,
    #[schema(value_type = String)]
    created_at: String,
    #[schema(value_type = String)]
    expires_at: String,
    #[schema(value_type = Option<String>)]
    revoked_at: Option<String>,
}

impl From<&TokenInfo> for TokenInfoView {
    fn from(t: &TokenInfo) -> Self {
        Self {
            id: t.id,
            created_at: time::format(t.created_at),
            expires_at: time::format(t.expires_at),
            revoked_at: t.revoked_at.map(time::format),
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct TokenIssued {
    /// A 90-day `user` JWT.
    token: String,
    token_info: TokenInfoView,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct TokenList {
    tokens: Vec<TokenInfoView>,
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
}

/// Issue a `user` token. Needs `issue-user-tokens`. The user's 101st live
/// token revokes their oldest.
#[utoipa::path(post, path = "/v1/accounts/{accountId}/users/{userId}/tokens", tag = "tokens",
    params(("accountId" = Uuid, Path), ("userId" = Uuid, Path)), request_body = IssueTokenRequest,
    responses((status = 201, description = "Token issued", body = TokenIssued)))]
async fn issue_token(
    State(app): State<App>,
    caller: Caller,
    ids: Ids,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    // Refused before the body is read.
    tokens::may_issue(&caller)?;
    let req: IssueTokenRequest = optional_json(&headers, &body)?;
    let issued = tokens::issue(&app, &caller, ids.get("userId"), req).await?;
    Ok(ok(
        StatusCode::CREATED,
        "Token issued",
        TokenIssued {
            token: issued.token,
            token_info: (&issued.info).into(),
        },
    ))
}

/// List a user's live `user` tokens, oldest first. One's own, or
/// `issue-user-tokens`.
#[utoipa::path(get, path = "/v1/accounts/{accountId}/users/{userId}/tokens", tag = "tokens",
    params(("accountId" = Uuid, Path), ("userId" = Uuid, Path), ListParams),
    responses((status = 200, description = "Tokens", body = TokenList)))]
async fn list_tokens(
    State(app): State<App>,
    caller: Caller,
    ids: Ids,
    ApiQuery(q): ApiQuery<ListParams>,
) -> ApiResult {
    let page = page(q.limit, q.cursor.as_deref());
    let p = tokens::list(&app, &caller, ids.get("userId"), page).await?;
    Ok(ok(
        StatusCode::OK,
        "Tokens",
        TokenList {
            tokens: p.items.iter().map(Into::into).collect(),
            next_cursor: p.next.map(encode_cursor),
        },
    ))
}

/// Revoke one `user` token; its live connections close. One's own, or
/// `issue-user-tokens`.
#[utoipa::path(delete, path = "/v1/accounts/{accountId}/users/{userId}/tokens/{tokenId}", tag = "tokens",
    params(("accountId" = Uuid, Path), ("userId" = Uuid, Path), ("tokenId" = Uuid, Path)),
    responses((status = 200, description = "Token revoked", body = TokenInfoView)))]
async fn revoke_token(State(app): State<App>, caller: Caller, ids: Ids) -> ApiResult {
    let (user, token) = (ids.get("userId"), ids.get("tokenId"));
    let info = tokens::revoke(&app, &caller, user, token).await?;
    Ok(ok(
        StatusCode::OK,
        "Token revoked",
        serde_json::json!({ "token_info": TokenInfoView::from(&info) }),
    ))
}

/// Revoke every token and session of the user issued until now; their live
/// connections close. One's own, or `issue-user-tokens`.
#[utoipa::path(delete, path = "/v1/accounts/{accountId}/users/{userId}/tokens", tag = "tokens",
    params(("accountId" = Uuid, Path), ("userId" = Uuid, Path)),
    responses((status = 200, description = "Tokens revoked")))]
async fn revoke_all_tokens(State(app): State<App>, caller: Caller, ids: Ids) -> ApiResult {
    let user = ids.get("userId");
    let before = tokens::revoke_all(&app, &caller, user).await?;
    Ok(ok(
        StatusCode::OK,
        "Tokens revoked",
        serde_json::json!({ "user_id": user, "revoked_before": time::format(before) }),
    ))
}
