//! Per-user auth tokens (CometChat): issue, list, revoke one, revoke all.
//! At most [`MAX_LIVE_USER_TOKENS`] live per user: issuing one more revokes
//! the oldest, in the same transaction.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::auth::{kick_tokens, optional_json};
use super::envelope::{ApiError, ApiResult, ok};
use super::extract::{ApiQuery, Caller, Ids, encode_cursor, page};
use crate::app::App;
use crate::domain::permission::Permission;
use crate::domain::time;
use crate::realtime::bus::BusEvent;
use crate::store::sessions::TokenInfo;
use crate::store::{StoreError, TokenRecord};

/// CometChat's cap on active auth tokens per user.
pub const MAX_LIVE_USER_TOKENS: i64 = 100;

pub fn routes() -> OpenApiRouter<App> {
    OpenApiRouter::new()
        .routes(routes!(issue_token, list_tokens, revoke_all_tokens))
        .routes(routes!(revoke_token))
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IssueTokenRequest {
    /// Carried in the token as `roomId` (the room CollabKit's `join()` joins).
    #[serde(alias = "roomId")]
    room_id: Option<Uuid>,
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
#[serde(deny_unknown_fields)]
pub struct ListParams {
    limit: Option<u32>,
    cursor: Option<String>,
}

/// Anyone may manage their own tokens; others need `issue-user-tokens`.
fn own_or_permitted(caller: &Caller, user: Uuid) -> ApiResult<()> {
    if caller.user_id() == Some(user) {
        return Ok(());
    }
    Ok(caller.require(Permission::IssueUserTokens)?)
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
    caller.require(Permission::IssueUserTokens)?;
    let user = ids.get("userId");
    let req: IssueTokenRequest = optional_json(&headers, &body)?;
    if let Some(room) = req.room_id {
        app.store
            .get_room(caller.account_id, room)
            .await
            .map_err(|e| match e {
                StoreError::NotFound(_) => ApiError::not_found("room").with_field("room_id"),
                other => other.into(),
            })?;
    }
    let now = time::now();
    let jti = Uuid::now_v7();
    let (token, expires_at) =
        app.keys
            .issue_user_token(caller.account_id, user, req.room_id, jti, now)?;
    let record = TokenRecord {
        id: jti,
        user_id: user,
        kind: "user",
        room_id: req.room_id,
        created_at: now,
        expires_at,
    };
    let revoked = app
        .store
        .issue_user_token(
            caller.account_id,
            &record,
            MAX_LIVE_USER_TOKENS,
            &caller.change(),
        )
        .await?;
    kick_tokens(
        &app,
        caller.account_id,
        &revoked,
        "token cap: oldest revoked",
    );
    let info = TokenInfo {
        id: jti,
        room_id: req.room_id,
        created_at: now,
        expires_at,
        revoked_at: None,
    };
    Ok(ok(
        StatusCode::CREATED,
        "Token issued",
        TokenIssued {
            token,
            token_info: (&info).into(),
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
    let user = ids.get("userId");
    own_or_permitted(&caller, user)?;
    let p = app
        .store
        .list_user_tokens(
            caller.account_id,
            user,
            time::now(),
            page(q.limit, q.cursor.as_deref())?,
        )
        .await?;
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
    let user = ids.get("userId");
    own_or_permitted(&caller, user)?;
    let info = app
        .store
        .revoke_user_token(
            caller.account_id,
            user,
            ids.get("tokenId"),
            &caller.change(),
        )
        .await?;
    app.bus.publish(BusEvent::KickToken {
        account_id: caller.account_id,
        user_id: user,
        token_id: info.id,
        reason: "token revoked".into(),
    });
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
    own_or_permitted(&caller, user)?;
    let now = time::now();
    app.store
        .revoke_tokens_before(caller.account_id, user, &caller.change())
        .await?;
    app.bus.publish(BusEvent::Kick {
        account_id: caller.account_id,
        user_id: user,
        reason: "all tokens revoked".into(),
    });
    Ok(ok(
        StatusCode::OK,
        "Tokens revoked",
        serde_json::json!({ "user_id": user, "revoked_before": time::format(now) }),
    ))
}
