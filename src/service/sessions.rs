//! Sessions and the open routes around them: login, refresh (rotating, with
//! reuse detection), logout, password change, self sign-up (with its
//! captcha), password reset by mail and address verification — with the
//! brute-force buckets that slow guessing down, the same answer after the
//! same work for every failed login, and the closing of the live
//! connections a session's end causes. Cookies and CSRF are the HTTP front
//! door's business; the tokens are made here.
//!
//! The captcha is verified server-side in the `siteverify` protocol that
//! hCaptcha, Cloudflare Turnstile and reCAPTCHA share (form-encoded `secret`,
//! `response`, `remoteip`; a JSON answer with `success`).

use std::net::IpAddr;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use uuid::Uuid;

use super::tokens::kick_tokens;
use super::{Actor, ActorKind, Error, Result};
use crate::app::App;
use crate::domain::session::{
    ChangePasswordRequest, LoginRequest, ResetConfirm, ResetRequest, SignupRequest,
};
use crate::domain::time;
use crate::domain::user::{
    CreateUserRequest, Password, PasswordSource, User, UserView, Visibility,
};
use crate::secret::{self, Verified};
use crate::store::sessions::{
    LoginName, NewPasswordReset, NewSession, NextTokens, OutboxMail, Refreshed, SessionRef,
};
use crate::store::{StoreError, TokenRecord};
use crate::tokens::{ACCESS_TOKEN_TTL, REFRESH_TOKEN_TTL};

/// A session's tokens, and its user as they see themself.
pub struct Session {
    /// A 15-minute `access` JWT.
    pub access_token: String,
    /// Opaque, 30 days, single use.
    pub refresh_token: String,
    pub user: UserView,
}

/// A signed-up user, their 90-day `user` token and their first session.
pub struct SignedUp {
    pub user: UserView,
    pub token: String,
    pub access_token: String,
    pub refresh_token: String,
}

fn bad_login() -> Error {
    Error::unauthorized("the login name or the password is wrong")
}

fn bad_refresh() -> Error {
    Error::unauthorized("the refresh token is not valid, expired or revoked")
}

fn failure_window(app: &App) -> Duration {
    Duration::from_secs(app.config.login_failure_window_secs)
}

/// The per-address request rate every open session route (login, refresh,
/// reset) passes first.
pub async fn admit(app: &App, ip: IpAddr) -> Result<()> {
    app.throttle
        .hit(
            &format!("req:{ip}"),
            app.config.auth_requests_per_ip_per_minute,
            Duration::from_secs(60),
        )
        .await
}

/// Logs in with a username, email or custom id and a password. The same
/// answer, after the same work, whether the user is unknown, the password
/// wrong, the user deactivated or without a password. Failures count per
/// user (every login name of theirs) and per address, reserved before the
/// password work.
pub async fn login(app: &App, actor: &Actor, ip: IpAddr, req: LoginRequest) -> Result<Session> {
    login_lasting(app, actor, ip, req, ACCESS_TOKEN_TTL).await
}

/// [`login`] whose access token lives `access_ttl`: a compatibility front
/// door's login (Rocket.Chat's `authToken` is kept, never refreshed). It is
/// a session like any other: revoked by logout, a password change or
/// deactivation.
pub async fn login_lasting(
    app: &App,
    actor: &Actor,
    ip: IpAddr,
    req: LoginRequest,
    access_ttl: ::time::Duration,
) -> Result<Session> {
    let account = actor.account_id;
    admit(app, ip).await?;
    let name = match (req.username, req.email, req.custom_id) {
        (Some(u), None, None) => LoginName::Username(u),
        (None, Some(e), None) => LoginName::Email(e),
        (None, None, Some(c)) => LoginName::CustomId(c),
        _ => {
            return Err(Error::validation(
                "username",
                "give exactly one of username, email or custom_id",
            ));
        }
    };
    if req.password.is_empty() || req.password.chars().count() > 128 {
        return Err(Error::validation("password", "must be 1 to 128 characters"));
    }
    let window = failure_window(app);
    let found = app.store.find_login(account, &name).await?;
    // Failures count per user (their username, email and custom_id share
    // one bucket), per login string for a name nobody has, and per address.
    // Each attempt takes its entries before the password work and gives
    // them back only if it succeeds, so a burst of concurrent guesses cannot
    // all pass the check before any failure is counted.
    let name_key = match &found {
        Some(c) => format!("user:{account}:{}", c.user.id),
        None => format!("name:{account}:{}", name.column_and_value().1),
    };
    let ip_key = format!("fail:{ip}");
    let by_name = app
        .throttle
        .reserve(&name_key, app.config.login_failures_per_name, window)
        .await?;
    let by_ip = match app
        .throttle
        .reserve(&ip_key, app.config.login_failures_per_ip, window)
        .await
    {
        Ok(r) => r,
        Err(e) => {
            app.throttle.release(by_name).await;
            return Err(e);
        }
    };
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
        // The reserved entries stay: they are this failure's.
        return Err(bad_login());
    };
    app.throttle.release(by_name).await;
    app.throttle.release(by_ip).await;
    let now = time::now();
    let (access, refresh, tokens) = next_tokens(app, account, user.id, now, access_ttl)?;
    app.store
        .create_session(
            account,
            &NewSession {
                id: Uuid::now_v7(),
                user_id: user.id,
                created_at: now,
                tokens,
            },
            &actor.change_as_user(user.id, now),
        )
        .await?;
    session(app, account, &user, access, refresh).await
}

/// Trades a refresh token for a new access token and a new refresh token.
/// The old one is spent: presenting it again revokes the whole session (and
/// closes its connections). `presented` is the token as the front door
/// found it, or why it found none: the address's failure bucket answers
/// before that. The front door [admits](admit) the address first, before it
/// reads the request.
pub async fn refresh(
    app: &App,
    actor: &Actor,
    ip: IpAddr,
    presented: Result<String>,
) -> Result<Session> {
    let account = actor.account_id;
    let window = failure_window(app);
    let ip_key = format!("fail:{ip}");
    app.throttle
        .check(&ip_key, app.config.login_failures_per_ip, window)
        .await?;
    let presented = presented?;
    let hash = secret::sha256(presented.as_bytes());
    let Some(user_id) = app.store.refresh_token_owner(account, &hash).await? else {
        app.throttle.record(&ip_key, window).await;
        return Err(bad_refresh());
    };
    let now = time::now();
    let (access, refresh, next) = next_tokens(app, account, user_id, now, ACCESS_TOKEN_TTL)?;
    match app
        .store
        .rotate_refresh_token(account, &hash, &next, &actor.change_as_user(user_id, now))
        .await?
    {
        Refreshed::Rotated(user) => session(app, account, &user, access, refresh).await,
        Refreshed::Reused { revoked, .. } => {
            kick_tokens(app, account, &revoked, "refresh token reused");
            tracing::warn!(user_id = %user_id, "a spent refresh token was presented; its session is revoked");
            app.throttle.record(&ip_key, window).await;
            Err(Error::unauthorized(
                "this refresh token was already used; its whole session is now revoked",
            ))
        }
        Refreshed::Invalid => {
            app.throttle.record(&ip_key, window).await;
            Err(bad_refresh())
        }
    }
}

/// Ends a session: the one of the refresh token given, or else the one of
/// the token the actor (a user) presented — a `user` token is revoked
/// alone. Its live connections close.
pub async fn logout(app: &App, actor: &Actor, refresh_token: Option<&str>) -> Result<()> {
    let account = actor.account_id;
    let by = match (refresh_token, &actor.kind) {
        (Some(t), _) => SessionRef::Refresh(secret::sha256(t.as_bytes())),
        (None, ActorKind::User { token_id, .. }) => SessionRef::Token(*token_id),
        (None, ActorKind::ApiKey { .. } | ActorKind::Operator) => {
            return Err(Error::validation(
                "refresh_token",
                "an API key has no session; send the refresh_token to end",
            ));
        }
        (None, _) => return Err(bad_refresh()),
    };
    let revoked = app
        .store
        .end_session(account, &by, &actor.change())
        .await
        .map_err(|e| match e {
            StoreError::NotFound(_) => bad_refresh(),
            other => other.into(),
        })?;
    kick_tokens(app, account, &revoked, "logged out");
    Ok(())
}

/// Changes a user's own password (the only thing a `require_password_change`
/// session may do). Needs the current password when there is one (guesses
/// count per user); ends the user's other sessions unless
/// `revoke_other_sessions` is false.
pub async fn change_password(
    app: &App,
    actor: &Actor,
    req: ChangePasswordRequest,
) -> Result<UserView> {
    let ActorKind::User { user, token_id, .. } = &actor.kind else {
        return Err(Error::forbidden(
            "a user changes their own password here, with their own token",
        ));
    };
    let account = actor.account_id;
    let new = Password::parse("new_password", req.new_password)?;
    if let Some(stored) = app.store.password_hash(account, user.id).await? {
        let window = failure_window(app);
        let key = format!("pw:{}", user.id);
        app.throttle
            .check(&key, app.config.login_failures_per_name, window)
            .await?;
        let current = req.current_password.ok_or_else(|| {
            Error::validation("current_password", "is required to change the password")
        })?;
        if app.passwords.verify_any(current, stored).await? == Verified::No {
            app.throttle.record(&key, window).await;
            return Err(Error::validation(
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
            &actor.change(),
        )
        .await?;
    kick_tokens(app, account, &revoked, "password changed");
    let fresh = app.store.get_user(account, user.id).await?;
    let settings = app.settings(account).await?;
    Ok(fresh.view(&settings, Visibility::Own))
}

/// Self sign-up (LiveDigital), when the account enables it; unless it turns
/// the captcha off, `captcha_token` is checked with the captcha provider.
/// The new user gets the `user` role, a user token and a login session.
/// Sign-ups count per address, failures per account+username.
pub async fn signup(app: &App, actor: &Actor, ip: IpAddr, req: SignupRequest) -> Result<SignedUp> {
    let account = actor.account_id;
    app.throttle
        .hit(
            &format!("signup:{ip}"),
            app.config.signups_per_ip_per_hour,
            Duration::from_secs(3600),
        )
        .await?;
    let settings = app.settings(account).await?;
    if !settings.signup.enabled {
        return Err(Error::forbidden(
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
    .map_err(|e| Error::Internal(e.into()))?;
    let mut parsed = create.parse(&settings)?;
    let name_key = format!(
        "signup-name:{account}:{}",
        parsed.user.username.as_deref().unwrap_or("")
    );
    let window = failure_window(app);
    app.throttle
        .check(&name_key, app.config.login_failures_per_name, window)
        .await?;
    if settings.signup.captcha {
        let token = req
            .captcha_token
            .filter(|t| !t.is_empty())
            .ok_or_else(|| Error::validation("captcha_token", "solve the captcha first"))?;
        if !verify_captcha(app, &token, ip).await? {
            app.throttle.record(&name_key, window).await;
            return Err(Error::validation(
                "captcha_token",
                "the captcha was not solved",
            ));
        }
    }
    let PasswordSource::Given(password) = parsed.password else {
        return Err(Error::validation("password", "is required"));
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
    let mail = super::mail::for_new_user(app, account, &settings, &parsed.user, false, None);
    // Signing up is the new user acting on their own behalf.
    let change = actor.change_as_user(user_id, now);
    let created =
        super::users::store_new(app, account, &parsed.user, &record, &change, mail.as_ref()).await;
    if let Err(StoreError::Conflict { .. }) = &created {
        app.throttle.record(&name_key, window).await;
    }
    let user = created?;
    let (access_token, refresh_token, tokens) =
        next_tokens(app, account, user_id, now, ACCESS_TOKEN_TTL)?;
    app.store
        .create_session(
            account,
            &NewSession {
                id: Uuid::now_v7(),
                user_id,
                created_at: now,
                tokens,
            },
            &actor.change_as_user(user_id, now),
        )
        .await?;
    Ok(SignedUp {
        user: user.view(&settings, Visibility::Own),
        token,
        access_token,
        refresh_token,
    })
}

#[derive(Deserialize)]
struct SiteVerify {
    success: bool,
}

/// Asks the captcha provider whether `token` was solved.
async fn verify_captcha(app: &App, token: &str, ip: IpAddr) -> Result<bool> {
    let (Some(url), Some(secret)) = (&app.config.captcha_verify_url, &app.config.captcha_secret)
    else {
        return Err(Error::Unavailable(
            "this server has no captcha provider configured; ask its operator".into(),
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
            Err(Error::Unavailable(
                "the captcha could not be checked; retry shortly".into(),
            ))
        }
    }
}

/// Asks for a password reset link by mail. The answer is the same, and as
/// quick, whether or not the address belongs to a user: the lookup and the
/// queueing happen after it. A few links per address per window, so a
/// mailbox cannot be flooded.
pub async fn request_reset(app: &App, actor: &Actor, ip: IpAddr, req: ResetRequest) -> Result<()> {
    let account = actor.account_id;
    admit(app, ip).await?;
    let email = crate::domain::user::email(&req.email)?;
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
    let worker = app.clone();
    let actor = Actor::anonymous(account, actor.request_id.clone());
    tokio::spawn(async move {
        if let Err(e) = queue_reset_link(&worker, &actor, email).await {
            tracing::warn!(error = %e, "could not queue a password reset mail");
        }
    });
    Ok(())
}

async fn queue_reset_link(app: &App, actor: &Actor, email: String) -> anyhow::Result<()> {
    let account = actor.account_id;
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
        format!(
            "{}/reset-password?account_id={{account_id}}&token={{token}}",
            super::public_base(app)
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
            &actor.change(),
        )
        .await?;
    app.outbox.notify_one();
    Ok(())
}

/// Sets a new password with a mailed reset link. The link works once; every
/// session of the user ends and their connections close.
pub async fn confirm_reset(app: &App, actor: &Actor, req: ResetConfirm) -> Result<()> {
    let account = actor.account_id;
    let new = Password::parse("new_password", req.new_password)?;
    let phc = app.passwords.hash(new.expose().to_owned()).await?;
    let revoked = app
        .store
        .reset_password(
            account,
            &secret::sha256(req.token.as_bytes()),
            &phc,
            &actor.change(),
        )
        .await?
        .ok_or_else(|| {
            Error::gone_field(
                "this reset link was already used, has expired or is unknown",
                "token",
            )
        })?;
    kick_tokens(app, account, &revoked, "password reset");
    Ok(())
}

/// Confirms an email address with the mailed link's token. Works once, for
/// 7 days, and only while the address is still the user's.
pub async fn verify_email(app: &App, actor: &Actor, token: &str) -> Result<UserView> {
    let account = actor.account_id;
    let user = app
        .store
        .verify_email(account, &secret::sha256(token.as_bytes()), &actor.change())
        .await?
        .ok_or_else(|| {
            Error::gone_field(
                "this verification link was already used, has expired or is unknown",
                "token",
            )
        })?;
    let settings = app.settings(account).await?;
    Ok(user.view(&settings, Visibility::Own))
}

/// A new access token and refresh token for `user`, and their records.
fn next_tokens(
    app: &App,
    account: Uuid,
    user: Uuid,
    now: ::time::OffsetDateTime,
    access_ttl: ::time::Duration,
) -> Result<(String, String, NextTokens)> {
    let jti = Uuid::now_v7();
    let (access, expires_at) = app
        .keys
        .issue_access_token(account, user, jti, now, access_ttl)?;
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

async fn session(
    app: &App,
    account: Uuid,
    user: &User,
    access_token: String,
    refresh_token: String,
) -> Result<Session> {
    let settings = app.settings(account).await?;
    Ok(Session {
        access_token,
        refresh_token,
        user: user.view(&settings, Visibility::Own),
    })
}
