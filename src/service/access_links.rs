//! Guest access links (LiveDigital's generateAccess): a pass to one room for
//! someone without an account — made, listed and revoked by the room's
//! creator, its moderators or a `full` API key; opened (and, when it is
//! single-use, spent) by the guest's realtime connection.

use uuid::Uuid;

use super::access::{Standing, in_room};
use super::{Actor, ActorKind, Error, Result};
use crate::app::App;
use crate::domain::access::{
    AccessLink, CreateAccess, DEFAULT_LINK_TTL_SECONDS, RoomRole, external_user_id, ttl,
};
use crate::domain::permission::Permission;
use crate::domain::room::Room;
use crate::domain::{text, time};
use crate::realtime::bus::BusEvent;
use crate::store::{Page, Paged, StoreError};

/// A new guest link, its token, and the URL that carries both.
pub struct Created {
    /// `ROSTER_PUBLIC_URL/rooms/{roomId}?participantName=…&accessToken=…`
    pub url: String,
    pub access_token: String,
    pub link: AccessLink,
}

/// Who may make, list and revoke guest links: the room's creator, its
/// moderators, or a `full` API key — not a space owner as such.
fn may_manage(actor: &Actor, room: &Room, standing: &Standing<RoomRole>) -> Result<()> {
    let creator = actor.user_id().is_some_and(|u| room.created_by == Some(u));
    let moderator = matches!(standing, Standing::Member(RoomRole::Moderator));
    let full_key = actor.is_account_wide() && actor.holds(Permission::ManageRooms);
    if creator || moderator || full_key {
        Ok(())
    } else {
        Err(Error::forbidden(
            "only the room's creator or one of its moderators can manage guest links",
        ))
    }
}

/// generateAccess: a guest link for someone without an account, and the
/// guest token that opens it.
pub async fn create(app: &App, actor: &Actor, room: Uuid, req: CreateAccess) -> Result<Created> {
    let (room, standing) = in_room(app, actor, room).await?;
    let username = text::display_text("username", &req.username, 100)?;
    let role = match req.role.as_str() {
        "user" => RoomRole::User,
        "moderator" => RoomRole::Moderator,
        _ => return Err(Error::validation("role", "must be `user` or `moderator`")),
    };
    let external = req
        .external_user_id
        .as_deref()
        .map(external_user_id)
        .transpose()?;
    let life = ttl("ttl", req.ttl.unwrap_or(DEFAULT_LINK_TTL_SECONDS))?;
    may_manage(actor, &room, &standing)?;
    let now = time::now();
    let link = AccessLink {
        id: Uuid::now_v7(),
        room_id: room.id,
        username,
        role,
        external_user_id: external,
        is_permanent: req.is_permanent.unwrap_or(false),
        expires_at: now + life,
        used_at: None,
        revoked_at: None,
        created_by: actor.user_id(),
        created_at: now,
    };
    let token = app.keys.issue_guest_token(actor.account_id, &link, now)?;
    let link = app
        .store
        .create_link(actor.account_id, &link, &actor.change())
        .await?;
    let base = super::public_base(app);
    let mut url = url::Url::parse(&format!("{base}/rooms/{}", room.id))
        .map_err(|e| anyhow::anyhow!("public_url is not a URL: {e}"))?;
    url.query_pairs_mut()
        .append_pair("participantName", &link.username)
        .append_pair("accessToken", &token);
    Ok(Created {
        url: url.to_string(),
        access_token: token,
        link,
    })
}

/// Lists a room's guest links (never their tokens). Who manages them, and
/// `read` API keys.
/// A bad `page` is refused only once the actor may read at all.
pub async fn list(
    app: &App,
    actor: &Actor,
    room: Uuid,
    page: Result<Page>,
) -> Result<Paged<AccessLink>> {
    let (room, standing) = in_room(app, actor, room).await?;
    if !matches!(standing, Standing::Reader) {
        may_manage(actor, &room, &standing)?;
    }
    Ok(app
        .store
        .list_links(actor.account_id, room.id, page?)
        .await?)
}

/// Revokes a guest link; it stops opening connections at once, and those
/// it opened close.
pub async fn revoke(app: &App, actor: &Actor, room: Uuid, link: Uuid) -> Result<()> {
    let (room, standing) = in_room(app, actor, room).await?;
    may_manage(actor, &room, &standing)?;
    app.store
        .revoke_link(actor.account_id, room.id, link, &actor.change())
        .await?;
    app.bus.publish(BusEvent::Kick {
        account_id: actor.account_id,
        user_id: link,
        reason: "guest link revoked".into(),
    });
    Ok(())
}

/// A guest opens their link (a realtime connection): it must still be live
/// and for the room its token names; a one-time link is spent now.
pub async fn open(app: &App, actor: &Actor) -> Result<AccessLink> {
    let ActorKind::Guest { link_id, room_id } = actor.kind else {
        return Err(Error::forbidden("only a guest link's holder opens it"));
    };
    match app
        .store
        .use_link(actor.account_id, link_id, &actor.change())
        .await
    {
        Ok(link) if link.room_id == room_id => Ok(link),
        Ok(_) | Err(StoreError::NotFound(_)) | Err(StoreError::Gone(..)) => Err(
            Error::unauthorized("this guest link was used, has expired or was revoked"),
        ),
        Err(e) => Err(e.into()),
    }
}
