//! Sessions: login, refresh (rotating, with reuse detection), logout and
//! password change; the session cookies and their CSRF defence; the
//! operator's signing-key rotation.
//!
//! Cookies, when asked for: `roster_access` (the access token, `HttpOnly`,
//! scoped to the account's routes), `roster_refresh` (`HttpOnly`, scoped to
//! its `/auth` routes) and `roster_csrf` (readable by the page's script). A
//! request authenticated by cookie that changes anything must repeat
//! `roster_csrf` in the `X-CSRF-Token` header (double submit): a cross-site
//! form can make the browser send the cookies, but cannot read one to copy
//! it into a header. Bearer credentials need no such header.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Extension;
use axum::extract::{ConnectInfo, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::envelope::{ApiError, ApiResult, ok};
use super::extract::{ApiJson, Caller, CallerKind, Ids, Operator, parse_json};
use crate::app::App;
use crate::domain::event::{ActorRef, Change};
use crate::domain::time;
use crate::domain::user::{Password, User, UserView, Visibility};
use crate::realtime::bus::BusEvent;
use crate::secret::{self, Verified};
use crate::store::sessions::{LoginName, NewSession, NextTokens, Refreshed, Revoked, SessionRef};
use crate::store::{StoreError, TokenRecord};
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

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    username: Option<String>,
    email: Option<String>,
    #[serde(alias = "customId", alias = "uid")]
    custom_id: Option<String>,
    password: String,
    /// Also set the session cookies (always, when the server is so configured).
    #[serde(default)]
    cookies: bool,
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    /// Omitted: the `roster_refresh` cookie (with `X-CSRF-Token`).
    #[serde(alias = "refreshToken")]
    refresh_token: Option<String>,
    #[serde(default)]
    cookies: bool,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangePasswordRequest {
    /// Required when the user has a password.
    #[serde(alias = "currentPassword")]
    current_password: Option<String>,
    #[serde(alias = "newPassword")]
    new_password: String,
    /// Default true: every other session of the user ends.
    #[serde(alias = "revokeOtherSessions")]
    revoke_other_sessions: Option<bool>,
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

fn bad_login() -> ApiError {
    ApiError::unauthorized("the login name or the password is wrong")
}

fn bad_refresh() -> ApiError {
    ApiError::unauthorized("the refresh token is not valid, expired or revoked")
}

fn client_ip(app: &App, headers: &HeaderMap, peer: Option<SocketAddr>) -> std::net::IpAddr {
    super::client_ip::resolve(peer.map(|p| p.ip()), headers, &app.trusted_proxies)
}

/// Per-address request rate on the session routes.
async fn rate(app: &App, ip: std::net::IpAddr) -> ApiResult<()> {
    app.throttle
        .hit(
            &format!("req:{ip}"),
            app.config.auth_requests_per_ip_per_minute,
            Duration::from_secs(60),
        )
        .await
}

fn failure_window(app: &App) -> Duration {
    Duration::from_secs(app.config.login_failure_window_secs)
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
    ids: Ids,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<LoginRequest>,
) -> ApiResult {
    let account = ids.get("accountId");
    let ip = client_ip(&app, &headers, peer.map(|Extension(ConnectInfo(p))| p));
    rate(&app, ip).await?;
    let name = match (req.username, req.email, req.custom_id) {
        (Some(u), None, None) => LoginName::Username(u),
        (None, Some(e), None) => LoginName::Email(e),
        (None, None, Some(c)) => LoginName::CustomId(c),
        _ => {
            return Err(ApiError::validation(
                "username",
                "give exactly one of username, email or custom_id",
            ));
        }
    };
    if req.password.is_empty() || req.password.chars().count() > 128 {
        return Err(ApiError::validation(
            "password",
            "must be 1 to 128 characters",
        ));
    }
    let window = failure_window(&app);
    let name_key = format!("name:{account}:{}", name.column_and_value().1);
    let ip_key = format!("fail:{ip}");
    app.throttle
        .check(&name_key, app.config.login_failures_per_name, window)
        .await?;
    app.throttle
        .check(&ip_key, app.config.login_failures_per_ip, window)
        .await?;
    let found = app.store.find_login(account, &name).await?;
    let password = req.password;
    let user = match found {
        Some(c) if c.user.active && c.password_hash.is_some() => {
            let stored = c.password_hash.unwrap_or_default();
            match app.passwords.verify_any(password.clone(), stored).await? {
                Verified::Yes => Some(c.user),
                Verified::YesRehash => {
                    let phc = app.passwords.hash(password).await?;
                    app.store
                        .set_password_hash(account, c.user.id, &phc, time::now())
                        .await?;
                    Some(c.user)
                }
                Verified::No => None,
            }
        }
        _ => {
            app.passwords.verify_dummy(password).await?;
            None
        }
    };
    let Some(user) = user else {
        app.throttle.record(&name_key, window).await;
        app.throttle.record(&ip_key, window).await;
        return Err(bad_login());
    };
    let now = time::now();
    let (access, refresh, tokens) = next_tokens(&app, account, user.id, now)?;
    app.store
        .create_session(
            account,
            &NewSession {
                id: Uuid::now_v7(),
                user_id: user.id,
                created_at: now,
                tokens,
            },
            &Change::new(
                now,
                ActorRef::user(user.id),
                Some(super::envelope::request_id()),
            ),
        )
        .await?;
    let cookies = req.cookies || app.config.session_cookies;
    answer(&app, account, &user, access, refresh, cookies, "Logged in").await
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
    ids: Ids,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let account = ids.get("accountId");
    let ip = client_ip(&app, &headers, peer.map(|Extension(ConnectInfo(p))| p));
    rate(&app, ip).await?;
    let req: RefreshRequest = optional_json(&headers, &body)?;
    let window = failure_window(&app);
    let ip_key = format!("fail:{ip}");
    app.throttle
        .check(&ip_key, app.config.login_failures_per_ip, window)
        .await?;
    let (presented, by_cookie) = match req.refresh_token {
        Some(t) => (t, false),
        None => {
            let t = cookie(&headers, REFRESH_COOKIE).ok_or_else(|| {
                ApiError::validation("refresh_token", "send refresh_token, or the refresh cookie")
            })?;
            check_csrf(&Method::POST, &headers)?;
            (t.to_owned(), true)
        }
    };
    let hash = secret::sha256(presented.as_bytes());
    let Some(user_id) = app.store.refresh_token_owner(account, &hash).await? else {
        app.throttle.record(&ip_key, window).await;
        return Err(bad_refresh());
    };
    let now = time::now();
    let (access, refresh, next) = next_tokens(&app, account, user_id, now)?;
    match app
        .store
        .rotate_refresh_token(
            account,
            &hash,
            &next,
            &Change::new(
                now,
                ActorRef::user(user_id),
                Some(super::envelope::request_id()),
            ),
        )
        .await?
    {
        Refreshed::Rotated(user) => {
            let cookies = by_cookie || req.cookies || app.config.session_cookies;
            answer(&app, account, &user, access, refresh, cookies, "Refreshed").await
        }
        Refreshed::Reused { revoked, .. } => {
            kick_tokens(&app, account, &revoked, "refresh token reused");
            tracing::warn!(user_id = %user_id, "a spent refresh token was presented; its session is revoked");
            app.throttle.record(&ip_key, window).await;
            Err(ApiError::unauthorized(
                "this refresh token was already used; its whole session is now revoked",
            ))
        }
        Refreshed::Invalid => {
            app.throttle.record(&ip_key, window).await;
            Err(bad_refresh())
        }
    }
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
    ids: Ids,
    headers: HeaderMap,
    caller: Result<Caller, ApiError>,
    body: Bytes,
) -> ApiResult {
    let account = ids.get("accountId");
    let req: RefreshRequest = optional_json(&headers, &body)?;
    let actor = match &caller {
        Ok(c) => c.change().actor,
        Err(_) => ActorRef::ANONYMOUS,
    };
    let change = Change::new(time::now(), actor, Some(super::envelope::request_id()));
    let by = match (req.refresh_token, caller, cookie(&headers, REFRESH_COOKIE)) {
        (Some(t), _, _) => SessionRef::Refresh(secret::sha256(t.as_bytes())),
        (None, Ok(c), _) => match c.kind {
            CallerKind::User { token_id, .. } => SessionRef::Token(token_id),
            CallerKind::ApiKey { .. } => {
                return Err(ApiError::validation(
                    "refresh_token",
                    "an API key has no session; send the refresh_token to end",
                ));
            }
        },
        (None, Err(_), Some(t)) => {
            check_csrf(&Method::POST, &headers)?;
            SessionRef::Refresh(secret::sha256(t.as_bytes()))
        }
        (None, Err(e), None) => return Err(e),
    };
    let revoked = app
        .store
        .end_session(account, &by, &change)
        .await
        .map_err(|e| match e {
            StoreError::NotFound(_) => bad_refresh(),
            other => other.into(),
        })?;
    kick_tokens(&app, account, &revoked, "logged out");
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
    let CallerKind::User { user, token_id, .. } = &caller.kind else {
        return Err(ApiError::forbidden(
            "a user changes their own password here, with their own token",
        ));
    };
    let account = caller.account_id;
    let new = Password::parse("new_password", req.new_password)?;
    if let Some(stored) = app.store.password_hash(account, user.id).await? {
        let window = failure_window(&app);
        let key = format!("pw:{}", user.id);
        app.throttle
            .check(&key, app.config.login_failures_per_name, window)
            .await?;
        let current = req.current_password.ok_or_else(|| {
            ApiError::validation("current_password", "is required to change the password")
        })?;
        if app.passwords.verify_any(current, stored).await? == Verified::No {
            app.throttle.record(&key, window).await;
            return Err(ApiError::validation(
                "current_password",
                "is not the current password",
            ));
        }
    }
    let phc = app.passwords.hash(new.expose().to_owned()).await?;
    let revoked = app
        .store
        .change_password(
            account,
            user.id,
            &phc,
            req.revoke_other_sessions.unwrap_or(true),
            Some(*token_id),
            &caller.change(),
        )
        .await?;
    kick_tokens(&app, account, &revoked, "password changed");
    let fresh = app.store.get_user(account, user.id).await?;
    let settings = app.settings(account).await?;
    Ok(ok(
        StatusCode::OK,
        "Password changed",
        serde_json::json!({ "user": fresh.view(&settings, Visibility::Own) }),
    ))
}

/// Rotate the signing key (operator key). New tokens carry the new `kid`;
/// the old key keeps verifying, and stays in the JWKS, for 90 days.
#[utoipa::path(post, path = "/v1/keys/rotate", tag = "operator",
    security(("operator_key" = [])),
    responses((status = 200, description = "Key rotated", body = KeyRotated)))]
async fn rotate_keys(State(app): State<App>, _op: Operator) -> ApiResult {
    let kid = app
        .keys
        .rotate(
            app.store.as_ref(),
            ActorRef::OPERATOR,
            Some(super::envelope::request_id()),
        )
        .await?;
    tracing::info!(kid = %kid, "signing key rotated");
    Ok(ok(
        StatusCode::OK,
        "Signing key rotated",
        KeyRotated { kid },
    ))
}

/// A new access token and refresh token for `user`, and their records.
fn next_tokens(
    app: &App,
    account: Uuid,
    user: Uuid,
    now: ::time::OffsetDateTime,
) -> ApiResult<(String, String, NextTokens)> {
    let jti = Uuid::now_v7();
    let (access, expires_at) = app.keys.issue_access_token(account, user, jti, now)?;
    let (refresh, refresh_hash) = secret::generate_refresh_token();
    Ok((
        access,
        refresh,
        NextTokens {
            refresh_hash,
            refresh_expires_at: now + REFRESH_TOKEN_TTL,
            access: TokenRecord {
                id: jti,
                user_id: user,
                kind: "access",
                room_id: None,
                created_at: now,
                expires_at,
            },
        },
    ))
}

async fn answer(
    app: &App,
    account: Uuid,
    user: &User,
    access: String,
    refresh: String,
    cookies: bool,
    what: &str,
) -> ApiResult {
    let settings = app.settings(account).await?;
    let mut set = Vec::new();
    if cookies {
        let csrf = cookie_value(&secret::random_bytes::<24>());
        set = vec![
            (ACCESS_COOKIE, access.clone(), ACCESS_TOKEN_TTL, true),
            (REFRESH_COOKIE, refresh.clone(), REFRESH_TOKEN_TTL, true),
            (CSRF_COOKIE, csrf, REFRESH_TOKEN_TTL, false),
        ];
    }
    let mut res = ok(
        StatusCode::OK,
        what,
        SessionTokens {
            access_token: access,
            refresh_token: refresh,
            token_type: "Bearer",
            expires_in: ACCESS_TOKEN_TTL.whole_seconds(),
            user: user.view(&settings, Visibility::Own),
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

/// Closes the live connections of the tokens a revocation ended.
pub fn kick_tokens(app: &App, account: Uuid, revoked: &Revoked, reason: &str) {
    let Some(user) = revoked.user_id else { return };
    for t in &revoked.tokens {
        app.bus.publish(BusEvent::KickToken {
            account_id: account,
            user_id: user,
            token_id: *t,
            reason: reason.to_owned(),
        });
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
pub fn check_csrf(method: &Method, headers: &HeaderMap) -> ApiResult<()> {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return Ok(());
    }
    let sent = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
    match (cookie(headers, CSRF_COOKIE), sent) {
        (Some(c), Some(h)) if secret::equal_hashes(c.as_bytes(), h.as_bytes()) => Ok(()),
        _ => Err(ApiError::forbidden(
            "a request authenticated by cookie must repeat the roster_csrf cookie in X-CSRF-Token",
        )
        .with_field(CSRF_HEADER)),
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
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| {
            let m = m.trim().to_ascii_lowercase();
            m == "application/json" || (m.starts_with("application/") && m.ends_with("+json"))
        });
    if !json {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UNSUPPORTED_MEDIA_TYPE",
            "the body must be JSON, sent with Content-Type: application/json",
        ));
    }
    parse_json(body)
}
