//! Sessions: login, refresh (rotating, with reuse detection), logout and
//! password change; the session cookies and their CSRF defence; the
//! operator's signing-key rotation. The rules are in
//! [`crate::service::sessions`]; this file is the HTTP side: cookies, CSRF,
//! client addresses.
//!
//! Cookies, when asked for: `roster_access` (the access token, `HttpOnly`,
//! scoped to the account's routes), `roster_refresh` (`HttpOnly`, scoped to
//! its `/auth` routes) and `roster_csrf` (readable by the page's script). A
//! request authenticated by cookie that changes anything must repeat
//! `roster_csrf` in the `X-CSRF-Token` header (double submit): a cross-site
//! form can make the browser send the cookies, but cannot read one to copy
//! it into a header. Bearer credentials need no such header.

use std::net::SocketAddr;

use axum::Extension;
use axum::extract::{ConnectInfo, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::envelope::{ApiError, ApiResult, ok};
use super::extract::{ApiJson, Caller, Operator, Visitor, parse_json};
use crate::app::App;
use crate::domain::session::{ChangePasswordRequest, LoginRequest, RefreshRequest};
use crate::domain::user::{User, UserView};
use crate::secret;
use crate::service::{self, sessions, signing_keys};
use crate::tokens::{ACCESS_TOKEN_TTL, REFRESH_TOKEN_TTL};

pub const ACCESS_COOKIE: &str = "roster_access";
pub const REFRESH_COOKIE: &str = "roster_refresh";
pub const CSRF_COOKIE: &str = "roster_csrf";
pub const CSRF_HEADER: &str = "x-csrf-token";

pub fn routes() -> OpenApiRouter<App> {
    OpenApiRouter::new()
        .routes(routes!(login))
        .routes(routes!(refresh))
        .routes(routes!(logout))
        .routes(routes!(change_password))
}

pub fn operator_routes() -> OpenApiRouter<App> {
    OpenApiRouter::new().routes(routes!(rotate_keys))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct SessionTokens {
    /// A 15-minute `access` JWT.
    access_token: String,
    /// Opaque, 30 days, single use: each refresh returns a new one.
    refresh_token: String,
    token_type: &'static str,
    /// Seconds until the access token expires.
    expires_in: i64,
    user: UserView,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct KeyRotated {
    /// The `kid` new tokens are signed under.
    kid: String,
}

/// The client's address: the peer, or what a trusted proxy says it is.
pub(crate) fn client_ip(
    app: &App,
    headers: &HeaderMap,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
) -> std::net::IpAddr {
    super::client_ip::resolve(
        peer.map(|Extension(ConnectInfo(p))| p.ip()),
        headers,
        &app.trusted_proxies,
    )
}

/// Log in with a username, email or custom id and a password. The same
/// answer, after the same work, whether the user is unknown, the password
/// wrong, the user deactivated or without a password.
#[utoipa::path(post, path = "/v1/accounts/{accountId}/auth/login", tag = "sessions",
    params(("accountId" = Uuid, Path)), request_body = LoginRequest, security(()),
    responses((status = 200, description = "Logged in", body = SessionTokens),
        (status = 401, description = "Wrong login name or password"),
        (status = 429, description = "Too many attempts; see Retry-After")))]
async fn login(
    State(app): State<App>,
    Visitor(visitor): Visitor,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<LoginRequest>,
) -> ApiResult {
    let ip = client_ip(&app, &headers, peer);
    let cookies = req.cookies || app.config.session_cookies;
    let session = sessions::login(&app, &visitor, ip, req).await?;
    answer(visitor.account_id, session, cookies, "Logged in")
}

/// Trade a refresh token (body, or the `roster_refresh` cookie with
/// `X-CSRF-Token`) for a new access token and a new refresh token. The old
/// one is spent: presenting it again revokes the whole session.
#[utoipa::path(post, path = "/v1/accounts/{accountId}/auth/refresh", tag = "sessions",
    params(("accountId" = Uuid, Path)), request_body = RefreshRequest, security(()),
    responses((status = 200, description = "Refreshed", body = SessionTokens),
        (status = 401, description = "Unknown, expired, spent or revoked refresh token"),
        (status = 429, description = "Too many attempts; see Retry-After")))]
async fn refresh(
    State(app): State<App>,
    Visitor(visitor): Visitor,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let ip = client_ip(&app, &headers, peer);
    sessions::admit(&app, ip).await?;
    let req: RefreshRequest = optional_json(&headers, &body)?;
    let by_cookie = req.refresh_token.is_none();
    let presented = match req.refresh_token {
        Some(t) => Ok(t),
        None => cookie(&headers, REFRESH_COOKIE)
            .ok_or_else(|| {
                // No refresh credential at all: unauthenticated, as a
                // request without its bearer token.
                service::Error::unauthorized("send refresh_token, or the refresh cookie")
            })
            .and_then(|t| check_csrf(&Method::POST, &headers).map(|()| t.to_owned())),
    };
    let session = sessions::refresh(&app, &visitor, ip, presented).await?;
    let cookies = by_cookie || req.cookies || app.config.session_cookies;
    answer(visitor.account_id, session, cookies, "Refreshed")
}

/// End a session: the one of the refresh token given (body or cookie), or
/// else the one of the access token presented (a `user` token is revoked
/// alone). Clears the session cookies.
#[utoipa::path(post, path = "/v1/accounts/{accountId}/auth/logout", tag = "sessions",
    params(("accountId" = Uuid, Path)), request_body = RefreshRequest,
    responses((status = 200, description = "Logged out"),
        (status = 401, description = "Nothing to log out of")))]
async fn logout(
    State(app): State<App>,
    Visitor(visitor): Visitor,
    headers: HeaderMap,
    caller: Result<Caller, ApiError>,
    body: Bytes,
) -> ApiResult {
    let account = visitor.account_id;
    let req: RefreshRequest = optional_json(&headers, &body)?;
    let (actor, refresh) = match (req.refresh_token, caller, cookie(&headers, REFRESH_COOKIE)) {
        (Some(t), c, _) => (c.unwrap_or(visitor), Some(t)),
        (None, Ok(c), _) => (c, None),
        (None, Err(_), Some(t)) => {
            check_csrf(&Method::POST, &headers)?;
            (visitor, Some(t.to_owned()))
        }
        (None, Err(e), None) => return Err(e),
    };
    sessions::logout(&app, &actor, refresh.as_deref()).await?;
    let mut res = ok(StatusCode::OK, "Logged out", serde_json::json!({}));
    for c in [ACCESS_COOKIE, REFRESH_COOKIE, CSRF_COOKIE] {
        let path = cookie_path(c, account);
        let v = format!("{c}=; Path={path}; Max-Age=0; HttpOnly; Secure; SameSite=Lax");
        if let Ok(v) = HeaderValue::from_str(&v) {
            res.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    Ok(res)
}

/// Change one's own password (the only route a `require_password_change`
/// session may call). Needs the current password when there is one; ends
/// the user's other sessions unless `revoke_other_sessions` is false.
#[utoipa::path(post, path = "/v1/accounts/{accountId}/auth/password", tag = "sessions",
    params(("accountId" = Uuid, Path)), request_body = ChangePasswordRequest,
    responses((status = 200, description = "Password changed"),
        (status = 403, description = "Not a user's own token")))]
async fn change_password(
    State(app): State<App>,
    caller: Caller,
    ApiJson(req): ApiJson<ChangePasswordRequest>,
) -> ApiResult {
    let user = sessions::change_password(&app, &caller, req).await?;
    Ok(ok(
        StatusCode::OK,
        "Password changed",
        serde_json::json!({ "user": user }),
    ))
}

/// Rotate the signing key (operator key). New tokens carry the new `kid`;
/// the old key keeps verifying, and stays in the JWKS, for 90 days.
#[utoipa::path(post, path = "/v1/keys/rotate", tag = "operator",
    security(("operator_key" = [])),
    responses((status = 200, description = "Key rotated", body = KeyRotated)))]
async fn rotate_keys(State(app): State<App>, op: Operator) -> ApiResult {
    let kid = signing_keys::rotate(&app, &op).await?;
    Ok(ok(
        StatusCode::OK,
        "Signing key rotated",
        KeyRotated { kid },
    ))
}

/// A session's answer, with its cookies when asked for.
fn answer(account: Uuid, s: sessions::Session, cookies: bool, what: &str) -> ApiResult {
    let mut set = Vec::new();
    if cookies {
        let csrf = cookie_value(&secret::random_bytes::<24>());
        set = vec![
            (
                ACCESS_COOKIE,
                s.access_token.clone(),
                ACCESS_TOKEN_TTL,
                true,
            ),
            (
                REFRESH_COOKIE,
                s.refresh_token.clone(),
                REFRESH_TOKEN_TTL,
                true,
            ),
            (CSRF_COOKIE, csrf, REFRESH_TOKEN_TTL, false),
        ];
    }
    let mut res: Response = ok(
        StatusCode::OK,
        what,
        SessionTokens {
            access_token: s.access_token,
            refresh_token: s.refresh_token,
            token_type: "Bearer",
            expires_in: ACCESS_TOKEN_TTL.whole_seconds(),
            user: s.user,
        },
    );
    for (name, value, ttl, http_only) in set {
        let path = cookie_path(name, account);
        let v = format!(
            "{name}={value}; Path={path}; Max-Age={}; {}Secure; SameSite=Lax",
            ttl.whole_seconds(),
            if http_only { "HttpOnly; " } else { "" }
        );
        res.headers_mut().append(
            header::SET_COOKIE,
            HeaderValue::from_str(&v).map_err(|e| ApiError::internal(e.into()))?,
        );
    }
    Ok(res)
}

fn cookie_value(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn cookie_path(name: &str, account: Uuid) -> String {
    match name {
        ACCESS_COOKIE => format!("/v1/accounts/{account}"),
        REFRESH_COOKIE => format!("/v1/accounts/{account}/auth"),
        _ => "/".into(),
    }
}

/// The value of cookie `name`, if the request carries it.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

/// Double-submit CSRF check for a cookie-authenticated request: a method
/// that changes something must repeat the `roster_csrf` cookie in
/// `X-CSRF-Token`.
pub fn check_csrf(method: &Method, headers: &HeaderMap) -> service::Result<()> {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return Ok(());
    }
    let sent = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
    match (cookie(headers, CSRF_COOKIE), sent) {
        (Some(c), Some(h)) if secret::equal_hashes(c.as_bytes(), h.as_bytes()) => Ok(()),
        _ => Err(service::Error::forbidden_field(
            "a request authenticated by cookie must repeat the roster_csrf cookie in X-CSRF-Token",
            CSRF_HEADER,
        )),
    }
}

/// The access token of the session cookie, CSRF-checked, when the request
/// carries no other credential.
pub fn access_cookie(parts: &Parts) -> ApiResult<Option<&str>> {
    match cookie(&parts.headers, ACCESS_COOKIE) {
        None => Ok(None),
        Some(t) => {
            check_csrf(&parts.method, &parts.headers)?;
            Ok(Some(t))
        }
    }
}

/// A session opened for a user who must change their password may only do
/// that (`POST …/auth/password`).
pub fn password_change_gate(typ: &str, user: &User, parts: &Parts) -> ApiResult<()> {
    if typ == "access"
        && user.require_password_change
        && !(parts.method == Method::POST && parts.uri.path().ends_with("/auth/password"))
    {
        return Err(ApiError::forbidden(
            "this user must change their password first: POST /auth/password",
        ));
    }
    Ok(())
}

/// An optional JSON object body: empty is `T::default()`.
pub fn optional_json<T: DeserializeOwned + Default>(
    headers: &HeaderMap,
    body: &[u8],
) -> ApiResult<T> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    if !super::extract::is_json(headers) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UNSUPPORTED_MEDIA_TYPE",
            "the body must be JSON, sent with Content-Type: application/json",
        ));
    }
    parse_json(body)
}
