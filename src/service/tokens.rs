//! A user's `user` tokens (CometChat's auth tokens): issue, list, revoke one,
//! revoke all — and the closing of the live connections a revocation ends.
//! At most [`MAX_LIVE_USER_TOKENS`] live per user: issuing one more revokes
//! the oldest, in the same transaction.

use uuid::Uuid;

use super::{Actor, Result};
use crate::app::App;
use crate::domain::permission::Permission;
use crate::domain::session::IssueTokenRequest;
use crate::domain::time;
use crate::realtime::bus::BusEvent;
use crate::store::sessions::{Revoked, TokenInfo};
use crate::store::{Page, Paged, TokenRecord};

/// CometChat's cap on active auth tokens per user.
pub const MAX_LIVE_USER_TOKENS: i64 = 100;

/// A new `user` token and what its listing shows.
pub struct Issued {
    pub token: String,
    pub info: TokenInfo,
}

/// Anyone may manage their own tokens; others need `issue-user-tokens`.
fn own_or_permitted(actor: &Actor, user: Uuid) -> Result<()> {
    if actor.user_id() == Some(user) {
        return Ok(());
    }
    actor.require(Permission::IssueUserTokens)
}

/// Who may issue `user` tokens: holders of `issue-user-tokens` (a front
/// door may ask before it reads the request).
pub fn may_issue(actor: &Actor) -> Result<()> {
    actor.require(Permission::IssueUserTokens)
}

/// Issues a 90-day `user` token. Needs `issue-user-tokens`. The user's 101st
/// live token revokes their oldest.
pub async fn issue(app: &App, actor: &Actor, user: Uuid, req: IssueTokenRequest) -> Result<Issued> {
    may_issue(actor)?;
    if let Some(room) = req.room_id {
        app.store
            .get_room(actor.account_id, room)
            .await
            .map_err(|e| super::Error::from(e).naming("room_id"))?;
    }
    let now = time::now();
    let jti = Uuid::now_v7();
    let (token, expires_at) =
        app.keys
            .issue_user_token(actor.account_id, user, req.room_id, jti, now)?;
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
            actor.account_id,
            &record,
            MAX_LIVE_USER_TOKENS,
            &actor.change(),
        )
        .await?;
    kick_tokens(app, actor.account_id, &revoked, "token cap: oldest revoked");
    Ok(Issued {
        token,
        info: TokenInfo {
            id: jti,
            room_id: req.room_id,
            created_at: now,
            expires_at,
            revoked_at: None,
        },
    })
}

/// Lists a user's live `user` tokens, oldest first. One's own, or
/// `issue-user-tokens`. A bad `page` is refused only once the actor may
/// read at all.
pub async fn list(
    app: &App,
    actor: &Actor,
    user: Uuid,
    page: Result<Page>,
) -> Result<Paged<TokenInfo>> {
    own_or_permitted(actor, user)?;
    Ok(app
        .store
        .list_user_tokens(actor.account_id, user, time::now(), page?)
        .await?)
}

/// Revokes one `user` token; its live connections close. One's own, or
/// `issue-user-tokens`.
pub async fn revoke(app: &App, actor: &Actor, user: Uuid, token: Uuid) -> Result<TokenInfo> {
    own_or_permitted(actor, user)?;
    let info = app
        .store
        .revoke_user_token(actor.account_id, user, token, &actor.change())
        .await?;
    app.bus.publish(BusEvent::KickToken {
        account_id: actor.account_id,
        user_id: user,
        token_id: info.id,
        reason: "token revoked".into(),
    });
    Ok(info)
}

/// Revokes every token and session of the user issued until now (the
/// moment returned); their live connections close. One's own, or
/// `issue-user-tokens`.
pub async fn revoke_all(app: &App, actor: &Actor, user: Uuid) -> Result<::time::OffsetDateTime> {
    own_or_permitted(actor, user)?;
    let now = time::now();
    app.store
        .revoke_tokens_before(actor.account_id, user, &actor.change())
        .await?;
    super::users::kick(app, actor.account_id, user, "all tokens revoked");
    Ok(now)
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
