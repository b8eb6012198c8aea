//! Password reset by mail: ask for a link (the answer never says whether the
//! address belongs to anyone), then spend the single-use link to set a new
//! password, which also ends every session of the user.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Extension;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::auth::kick_tokens;
use super::envelope::{ApiError, ApiResult, ok};
use super::extract::{ApiJson, Ids};
use crate::app::App;
use crate::domain::event::{ActorRef, Change};
use crate::domain::time;
use crate::domain::user::Password;
use crate::secret;
use crate::store::sessions::{LoginName, NewPasswordReset, OutboxMail};

pub fn routes() -> OpenApiRouter<App> {
    OpenApiRouter::new()
        .routes(routes!(request_reset))
        .routes(routes!(confirm_reset))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetRequest {
    email: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetConfirm {
    /// The `token` of the mailed link.
    token: String,
    #[serde(alias = "newPassword")]
    new_password: String,
}

/// Ask for a password reset link by mail. The answer is the same, and as
/// quick, whether or not the address belongs to a user.
#[utoipa::path(post, path = "/v1/accounts/{accountId}/auth/password-reset", tag = "sessions",
    params(("accountId" = Uuid, Path)), request_body = ResetRequest, security(()),
    responses((status = 200, description = "If the address is known, a link is on its way"),
        (status = 429, description = "Too many requests; see Retry-After")))]
async fn request_reset(
    State(app): State<App>,
    ids: Ids,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<ResetRequest>,
) -> ApiResult {
    let account = ids.get("accountId");
    let ip = super::client_ip::resolve(
        peer.map(|Extension(ConnectInfo(p))| p.ip()),
        &headers,
        &app.trusted_proxies,
    );
    app.throttle
        .hit(
            &format!("req:{ip}"),
            app.config.auth_requests_per_ip_per_minute,
            Duration::from_secs(60),
        )
        .await?;
    let email = crate::domain::user::email(&req.email)?;
    // A few links per address per window, so a mailbox cannot be flooded.
    app.throttle
        .hit(
            &format!(
                "reset:{account}:{}",
                crate::domain::user::normalize_email(&email)
            ),
            5,
            Duration::from_secs(app.config.login_failure_window_secs),
        )
        .await?;
    // The lookup and the queueing happen after the answer: its timing says
    // nothing about the address.
    let worker = app.clone();
    tokio::spawn(async move {
        if let Err(e) = queue_link(&worker, account, email).await {
            tracing::warn!(error = %e, "could not queue a password reset mail");
        }
    });
    Ok(ok(
        StatusCode::OK,
        "If this address belongs to a user, a link to reset the password is on its way",
        serde_json::json!({}),
    ))
}

async fn queue_link(app: &App, account: Uuid, email: String) -> anyhow::Result<()> {
    let Some(found) = app
        .store
        .find_login(account, &LoginName::Email(email))
        .await?
    else {
        return Ok(());
    };
    let user = found.user;
    let Some(to) = user.email.clone().filter(|_| user.active) else {
        return Ok(());
    };
    if !crate::domain::user::reset_may_mail(user.email_changed_at, time::now()) {
        tracing::warn!(
            user_id = %user.id,
            "password reset not mailed: the address changed within the last hour"
        );
        return Ok(());
    }
    let token = format!(
        "pr_{}",
        URL_SAFE_NO_PAD.encode(secret::random_bytes::<32>())
    );
    let template = app.config.password_reset_url.clone().unwrap_or_else(|| {
        let base = app
            .config
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", app.config.listen));
        format!(
            "{}/reset-password?account_id={{account_id}}&token={{token}}",
            base.trim_end_matches('/')
        )
    });
    let link = template
        .replace("{account_id}", &account.to_string())
        .replace("{token}", &token);
    let ttl = app.config.password_reset_ttl_secs;
    let name = user
        .name
        .clone()
        .or(user.username.clone())
        .unwrap_or_default();
    let (subject, body) = app.mailer.render(
        "password_reset",
        &[
            ("name", &name),
            ("link", &link),
            ("minutes", &(ttl / 60).max(1).to_string()),
        ],
    );
    let now = time::now();
    app.store
        .request_password_reset(
            account,
            &NewPasswordReset {
                hash: secret::sha256(token.as_bytes()),
                user_id: user.id,
                created_at: now,
                expires_at: now + ::time::Duration::seconds(ttl as i64),
                mail: OutboxMail {
                    id: Uuid::now_v7(),
                    account_id: Some(account),
                    to,
                    subject,
                    body,
                    created_at: now,
                    attempts: 0,
                },
            },
            &Change::new(
                now,
                ActorRef::ANONYMOUS,
                Some(super::envelope::request_id()),
            ),
        )
        .await?;
    app.outbox.notify_one();
    Ok(())
}

/// Set a new password with a mailed reset link. The link works once; every
/// session of the user ends.
#[utoipa::path(post, path = "/v1/accounts/{accountId}/auth/password-reset/confirm", tag = "sessions",
    params(("accountId" = Uuid, Path)), request_body = ResetConfirm, security(()),
    responses((status = 200, description = "Password changed"),
        (status = 410, description = "The link was used, expired or is unknown")))]
async fn confirm_reset(
    State(app): State<App>,
    ids: Ids,
    ApiJson(req): ApiJson<ResetConfirm>,
) -> ApiResult {
    let account = ids.get("accountId");
    let new = Password::parse("new_password", req.new_password)?;
    let phc = app.passwords.hash(new.expose().to_owned()).await?;
    let revoked = app
        .store
        .reset_password(
            account,
            &secret::sha256(req.token.as_bytes()),
            &phc,
            &Change::new(
                time::now(),
                ActorRef::ANONYMOUS,
                Some(super::envelope::request_id()),
            ),
        )
        .await?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::GONE,
                "GONE",
                "this reset link was already used, has expired or is unknown",
            )
            .with_field("token")
        })?;
    kick_tokens(&app, account, &revoked, "password reset");
    Ok(ok(
        StatusCode::OK,
        "Password changed",
        serde_json::json!({}),
    ))
}
