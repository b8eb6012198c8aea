//! Self sign-up (LiveDigital): `POST /signup` when the account enables it,
//! with a captcha verified server-side in the `siteverify` protocol that
//! hCaptcha, Cloudflare Turnstile and reCAPTCHA share (form-encoded `secret`,
//! `response`, `remoteip`; a JSON answer with `success`).

use std::net::SocketAddr;
use std::time::Duration;

use axum::Extension;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::envelope::{ApiError, ApiResult, ok};
use super::extract::{ApiJson, Ids};
use crate::app::App;
use crate::domain::event::{ActorRef, Change};
use crate::domain::time;
use crate::domain::user::{CreateUserRequest, PasswordSource, UserView, Visibility};
use crate::secret;
use crate::store::sessions::{NewSession, NextTokens};
use crate::store::{StoreError, TokenRecord};
use crate::tokens::{ACCESS_TOKEN_TTL, REFRESH_TOKEN_TTL};

pub fn routes() -> OpenApiRouter<App> {
    OpenApiRouter::new().routes(routes!(signup))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignupRequest {
    email: String,
    username: String,
    password: String,
    phone: Option<String>,
    name: Option<String>,
    /// The captcha widget's answer; required when the account asks for one.
    #[serde(alias = "captchaToken")]
    captcha_token: Option<String>,
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
    ids: Ids,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<SignupRequest>,
) -> ApiResult {
    let account = ids.get("accountId");
    let ip = super::client_ip::resolve(
        peer.map(|Extension(ConnectInfo(p))| p.ip()),
        &headers,
        &app.trusted_proxies,
    );
    app.throttle
        .hit(
            &format!("signup:{ip}"),
            app.config.signups_per_ip_per_hour,
            Duration::from_secs(3600),
        )
        .await?;
    let settings = app.settings(account).await?;
    if !settings.signup.enabled {
        return Err(ApiError::forbidden(
            "self sign-up is not enabled for this account",
        ));
    }
    let create: CreateUserRequest = serde_json::from_value(serde_json::json!({
        "email": req.email,
        "username": req.username,
        "password": req.password,
        "phone": req.phone,
        "name": req.name.clone().unwrap_or_else(|| req.username.clone()),
    }))
    .map_err(|e| ApiError::internal(e.into()))?;
    let mut parsed = create.parse(&settings)?;
    let name_key = format!(
        "signup-name:{account}:{}",
        parsed.user.username.as_deref().unwrap_or("")
    );
    let window = Duration::from_secs(app.config.login_failure_window_secs);
    app.throttle
        .check(&name_key, app.config.login_failures_per_name, window)
        .await?;
    if settings.signup.captcha {
        let token = req
            .captcha_token
            .filter(|t| !t.is_empty())
            .ok_or_else(|| ApiError::validation("captcha_token", "solve the captcha first"))?;
        if !verify_captcha(&app, &token, ip).await? {
            app.throttle.record(&name_key, window).await;
            return Err(ApiError::validation(
                "captcha_token",
                "the captcha was not solved",
            ));
        }
    }
    let PasswordSource::Given(password) = parsed.password else {
        return Err(ApiError::validation("password", "is required"));
    };
    parsed.user.password_hash = Some(app.passwords.hash(password.expose().to_owned()).await?);
    let now = time::now();
    let user_id = parsed.user.id;
    let jti = Uuid::now_v7();
    let (token, expires_at) = app
        .keys
        .issue_user_token(account, user_id, None, jti, now)?;
    let record = TokenRecord {
        id: jti,
        user_id,
        kind: "user",
        room_id: None,
        created_at: now,
        expires_at,
    };
    let mail =
        crate::service::mail::for_new_user(&app, account, &settings, &parsed.user, false, None);
    // Signing up is the new user acting on their own behalf.
    let change = crate::domain::event::Change {
        at: now,
        actor: crate::domain::event::ActorRef {
            kind: "user",
            id: Some(user_id),
        },
        request_id: Some(super::envelope::request_id()),
    };
    let created = crate::service::users::store_new(
        &app,
        account,
        &parsed.user,
        &record,
        &change,
        mail.as_ref(),
    )
    .await;
    if let Err(StoreError::Conflict { .. }) = &created {
        app.throttle.record(&name_key, window).await;
    }
    let user = created?;
    let access_jti = Uuid::now_v7();
    let (access_token, access_expires) = app
        .keys
        .issue_access_token(account, user_id, access_jti, now)?;
    let (refresh_token, refresh_hash) = secret::generate_refresh_token();
    app.store
        .create_session(
            account,
            &NewSession {
                id: Uuid::now_v7(),
                user_id,
                created_at: now,
                tokens: NextTokens {
                    refresh_hash,
                    refresh_expires_at: now + REFRESH_TOKEN_TTL,
                    access: TokenRecord {
                        id: access_jti,
                        user_id,
                        kind: "access",
                        room_id: None,
                        created_at: now,
                        expires_at: access_expires,
                    },
                },
            },
            &Change::new(
                now,
                ActorRef::user(user_id),
                Some(super::envelope::request_id()),
            ),
        )
        .await?;
    Ok(ok(
        StatusCode::CREATED,
        "Signed up",
        SignedUp {
            user: user.view(&settings, Visibility::Own),
            token,
            access_token,
            refresh_token,
            token_type: "Bearer",
            expires_in: ACCESS_TOKEN_TTL.whole_seconds(),
        },
    ))
}

#[derive(Deserialize)]
struct SiteVerify {
    success: bool,
}

/// Asks the captcha provider whether `token` was solved.
async fn verify_captcha(app: &App, token: &str, ip: std::net::IpAddr) -> ApiResult<bool> {
    let (Some(url), Some(secret)) = (&app.config.captcha_verify_url, &app.config.captcha_secret)
    else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "UNAVAILABLE",
            "this server has no captcha provider configured; ask its operator",
        ));
    };
    let form = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("secret", secret)
        .append_pair("response", token)
        .append_pair("remoteip", &ip.to_string())
        .finish();
    let answer = app
        .http
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .and_then(|r| r.error_for_status());
    let answer = match answer {
        Ok(r) => r.json::<SiteVerify>().await,
        Err(e) => Err(e),
    };
    match answer {
        Ok(v) => Ok(v.success),
        Err(e) => {
            tracing::warn!(error = %e, "captcha provider did not answer");
            Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "UNAVAILABLE",
                "the captcha could not be checked; retry shortly",
            ))
        }
    }
}
