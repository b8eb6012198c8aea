//! Space invites (LiveDigital's createInvite / activateInvite): create one
//! carrying a role (nobody invites above their own), list, revoke, and
//! activate with the invitee's own token.

use uuid::Uuid;

use super::access::{Standing, in_space, user_only};
use super::{Actor, Error, Result};
use crate::app::App;
use crate::domain::access::{CreateInvite, Invite, MAX_INVITE_USES, Member, SpaceRole, ttl};
use crate::domain::time;
use crate::store::{Page, Paged};

/// Creates an invite carrying a role. The owner (any role), a moderator (up
/// to moderator), or `manage-rooms`. Nobody invites above their own role.
pub async fn create(app: &App, actor: &Actor, space: Uuid, req: CreateInvite) -> Result<Invite> {
    let (space, standing) = in_space(app, actor, space).await?;
    let role = SpaceRole::parse_grantable("role", &req.role)?;
    let max_uses = req.max_uses.unwrap_or(1);
    if !(1..=MAX_INVITE_USES).contains(&max_uses) {
        return Err(Error::validation(
            "max_uses",
            format!("must be between 1 and {MAX_INVITE_USES}"),
        ));
    }
    let now = time::now();
    let expires_at = req.ttl.map(|s| ttl("ttl", s)).transpose()?.map(|d| now + d);
    match standing {
        Standing::Manager => {}
        Standing::Member(mine) if mine >= SpaceRole::Moderator => {
            if role > mine {
                return Err(Error::forbidden_field(
                    "nobody can invite to a role above their own",
                    "role",
                ));
            }
        }
        other => return Err(other.refuse("the space's owner or a moderator")),
    }
    let invite = Invite {
        id: Uuid::now_v7(),
        space_id: space.id,
        role,
        max_uses,
        uses: 0,
        expires_at,
        revoked_at: None,
        created_by: actor.user_id(),
        created_at: now,
    };
    Ok(app
        .store
        .create_invite(actor.account_id, &invite, &actor.change())
        .await?)
}

/// Lists a space's invites. The owner, moderators, API keys, `manage-rooms`.
/// A bad `page` is refused only once the actor may read at all.
pub async fn list(
    app: &App,
    actor: &Actor,
    space: Uuid,
    page: Result<Page>,
) -> Result<Paged<Invite>> {
    let (space, standing) = in_space(app, actor, space).await?;
    if !(standing.at_least(SpaceRole::Moderator) || matches!(standing, Standing::Reader)) {
        return Err(standing.refuse("the space's owner or a moderator"));
    }
    Ok(app
        .store
        .list_invites(actor.account_id, space.id, page?)
        .await?)
}

/// Revokes an invite. The owner, moderators, or `manage-rooms`.
pub async fn revoke(app: &App, actor: &Actor, space: Uuid, invite: Uuid) -> Result<()> {
    let (space, standing) = in_space(app, actor, space).await?;
    if !standing.at_least(SpaceRole::Moderator) {
        return Err(standing.refuse("the space's owner or a moderator"));
    }
    app.store
        .revoke_invite(actor.account_id, space.id, invite, &actor.change())
        .await?;
    Ok(())
}

/// Activates an invite with the invitee's own token: they become a member
/// with the invite's role. Used up, expired or revoked: gone.
pub async fn activate(app: &App, actor: &Actor, space: Uuid, invite: Uuid) -> Result<Member> {
    let user = user_only(actor, "activate an invite")?;
    Ok(app
        .store
        .activate_invite(actor.account_id, space, invite, user, &actor.change())
        .await?)
}
