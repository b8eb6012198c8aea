//! Password reset by mail: ask for a link (the answer never says whether the
//! address belongs to anyone), then spend the single-use link to set a new
//! password, which also ends every session of the user. The rules are in
//! [`crate::service::sessions`].

use std::net::SocketAddr;

use axum::Extension;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::auth::client_ip;
use super::envelope::{ApiResult, ok};
use super::extract::{ApiJson, Visitor};
use crate::app::App;
use crate::domain::session::{ResetConfirm, ResetRequest};
use crate::service::sessions;

pub fn routes() -> OpenApiRouter<App> {
    OpenApiRouter::new()
        .routes(routes!(request_reset))
        .routes(routes!(confirm_reset))
}

/// Ask for a password reset link by mail. The answer is the same, and as
/// quick, whether or not the address belongs to a user.
#[utoipa::path(post, path = "/v1/accounts/{accountId}/auth/password-reset", tag = "sessions",
    params(("accountId" = Uuid, Path)), request_body = ResetRequest, security(()),
    responses((status = 200, description = "If the address is known, a link is on its way"),
        (status = 429, description = "Too many requests; see Retry-After")))]
async fn request_reset(
    State(app): State<App>,
    Visitor(visitor): Visitor,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<ResetRequest>,
) -> ApiResult {
    let ip = client_ip(&app, &headers, peer);
    sessions::request_reset(&app, &visitor, ip, req).await?;
    Ok(ok(
        StatusCode::OK,
        "If this address belongs to a user, a link to reset the password is on its way",
        serde_json::json!({}),
    ))
}

/// Set a new password with a mailed reset link. The link works once; every
/// session of the user ends.
#[utoipa::path(post, path = "/v1/accounts/{accountId}/auth/password-reset/confirm", tag = "sessions",
    params(("accountId" = Uuid, Path)), request_body = ResetConfirm, security(()),
    responses((status = 200, description = "Password changed"),
        (status = 410, description = "The link was used, expired or is unknown")))]
async fn confirm_reset(
    State(app): State<App>,
    Visitor(visitor): Visitor,
    ApiJson(req): ApiJson<ResetConfirm>,
) -> ApiResult {
    sessions::confirm_reset(&app, &visitor, req).await?;
    Ok(ok(
        StatusCode::OK,
        "Password changed",
        serde_json::json!({}),
    ))
}
