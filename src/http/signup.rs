//! Self sign-up (LiveDigital): `POST /signup` when the account enables it,
//! with a captcha verified server-side (see [`crate::service::sessions`]).

use std::net::SocketAddr;

use axum::Extension;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use serde::Serialize;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::auth::client_ip;
use super::envelope::{ApiResult, ok};
use super::extract::{ApiJson, Visitor};
use crate::app::App;
use crate::domain::session::SignupRequest;
use crate::domain::user::UserView;
use crate::service::sessions;
use crate::tokens::ACCESS_TOKEN_TTL;

pub fn routes() -> OpenApiRouter<App> {
    OpenApiRouter::new().routes(routes!(signup))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct SignedUp {
    user: UserView,
    /// A 90-day `user` token for the realtime connection.
    token: String,
    access_token: String,
    refresh_token: String,
    token_type: &'static str,
    expires_in: i64,
}

/// Sign oneself up (no credential). The account must enable it
/// (`PATCH /settings {"signup": {"enabled": true}}`); unless it turns the
/// captcha off, `captcha_token` is checked with the captcha provider. The new
/// user gets the `user` role, a user token and a login session.
#[utoipa::path(post, path = "/v1/accounts/{accountId}/signup", tag = "sessions",
    params(("accountId" = Uuid, Path)), request_body = SignupRequest, security(()),
    responses((status = 201, description = "Signed up", body = SignedUp),
        (status = 403, description = "Self sign-up is not enabled"),
        (status = 409, description = "Username or email taken"),
        (status = 429, description = "Too many sign-ups from this address")))]
async fn signup(
    State(app): State<App>,
    Visitor(visitor): Visitor,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<SignupRequest>,
) -> ApiResult {
    let ip = client_ip(&app, &headers, peer);
    let s = sessions::signup(&app, &visitor, ip, req).await?;
    Ok(ok(
        StatusCode::CREATED,
        "Signed up",
        SignedUp {
            user: s.user,
            token: s.token,
            access_token: s.access_token,
            refresh_token: s.refresh_token,
            token_type: "Bearer",
            expires_in: ACCESS_TOKEN_TTL.whole_seconds(),
        },
    ))
}
