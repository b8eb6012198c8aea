//! Spaces, their members and their invites (LiveDigital's createInvite /
//! activateInvite).

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::access::{Standing, in_space, user_only};
use super::envelope::{ApiError, ApiResult, ok};
use super::extract::{ApiJson, ApiQuery, Caller, Ids, encode_cursor, page};
use crate::app::App;
use crate::domain::access::{Invite, MAX_INVITE_USES, Member, Space, SpaceRole, space_name, ttl};
use crate::domain::permission::Permission;
use crate::domain::room::Visibility;
use crate::domain::time;

pub fn routes() -> OpenApiRouter<App> {
    OpenApiRouter::new()
        .routes(routes!(create_space, list_spaces))
        .routes(routes!(get_space, update_space, delete_space))
        .routes(routes!(join_space))
        .routes(routes!(list_members))
        .routes(routes!(put_member, remove_member))
        .routes(routes!(create_invite, list_invites))
        .routes(routes!(revoke_invite))
        .routes(routes!(activate_invite))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSpace {
    name: String,
    /// `public` (default) or `private`.
    visibility: Option<String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateSpace {
    name: Option<String>,
    visibility: Option<String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutMember {
    /// `role_space_moderator` / `role_space_user` (or `moderator` / `user`).
    role: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateInvite {
    /// `role_space_moderator` / `role_space_user` (or `moderator` / `user`).
    role: String,
    /// Seconds until the invite expires (1 s … 30 days); none: no expiry.
    ttl: Option<i64>,
    /// How many activations it allows (default 1).
    #[serde(alias = "maxUses")]
    max_uses: Option<i64>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct SpaceOne {
    space: Space,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct SpaceList {
    spaces: Vec<Space>,
    next_cursor: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct MemberOne {
    member: Member,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct MemberList {
    members: Vec<Member>,
    next_cursor: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct InviteOne {
    invite: Invite,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct InviteList {
    invites: Vec<Invite>,
    next_cursor: Option<String>,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    limit: Option<u32>,
    cursor: Option<String>,
}

pub fn visibility(v: Option<&str>) -> ApiResult<Option<Visibility>> {
    v.map(|s| {
        Visibility::parse(s)
            .ok_or_else(|| ApiError::validation("visibility", "must be `public` or `private`"))
    })
    .transpose()
}

/// Create a space; a user creating it becomes its owner. Needs `create-space`.
#[utoipa::path(post, path = "/v1/accounts/{accountId}/spaces", tag = "spaces",
    params(("accountId" = Uuid, Path)), request_body = CreateSpace,
    responses((status = 201, description = "Space created", body = SpaceOne)))]
async fn create_space(
    State(app): State<App>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateSpace>,
) -> ApiResult {
    caller.require(Permission::CreateSpace)?;
    let now = time::now();
    let space = Space {
        id: Uuid::now_v7(),
        account_id: caller.account_id,
        name: space_name(&body.name)?,
        visibility: visibility(body.visibility.as_deref())?.unwrap_or(Visibility::Public),
        created_by: caller.user_id(),
        created_at: now,
        updated_at: now,
    };
    let space = app
        .store
        .create_space(caller.account_id, &space, &caller.change())
        .await?;
    Ok(ok(StatusCode::CREATED, "Space created", SpaceOne { space }))
}

/// List spaces: public ones and the caller's own; every space for API keys
/// and `manage-rooms`.
#[utoipa::path(get, path = "/v1/accounts/{accountId}/spaces", tag = "spaces",
    params(("accountId" = Uuid, Path), ListParams),
    responses((status = 200, description = "Spaces", body = SpaceList)))]
async fn list_spaces(
    State(app): State<App>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ListParams>,
) -> ApiResult {
    let viewer = if caller.is_api_key() || caller.holds(Permission::ManageRooms) {
        None
    } else {
        caller.user_id()
    };
    let p = app
        .store
        .list_spaces(
            caller.account_id,
            viewer,
            page(q.limit, q.cursor.as_deref())?,
        )
        .await?;
    Ok(ok(
        StatusCode::OK,
        "Spaces",
        SpaceList {
            spaces: p.items,
            next_cursor: p.next.map(encode_cursor),
        },
    ))
}

/// Read a space (a private one: members only).
#[utoipa::path(get, path = "/v1/accounts/{accountId}/spaces/{spaceId}", tag = "spaces",
    params(("accountId" = Uuid, Path), ("spaceId" = Uuid, Path)),
    responses((status = 200, description = "Space", body = SpaceOne)))]
async fn get_space(State(app): State<App>, caller: Caller, ids: Ids) -> ApiResult {
    let (space, _) = in_space(&app, &caller, ids.get("spaceId")).await?;
    Ok(ok(StatusCode::OK, "Space", SpaceOne { space }))
}

/// Rename a space or change its visibility. Its owner, or `manage-rooms`.
#[utoipa::path(patch, path = "/v1/accounts/{accountId}/spaces/{spaceId}", tag = "spaces",
    params(("accountId" = Uuid, Path), ("spaceId" = Uuid, Path)), request_body = UpdateSpace,
    responses((status = 200, description = "Space updated", body = SpaceOne)))]
async fn update_space(
    State(app): State<App>,
    caller: Caller,
    ids: Ids,
    ApiJson(body): ApiJson<UpdateSpace>,
) -> ApiResult {
    let (space, standing) = in_space(&app, &caller, ids.get("spaceId")).await?;
    if !standing.at_least(SpaceRole::Owner) {
        return Err(standing.refuse("the space's owner"));
    }
    let name = body.name.as_deref().map(space_name).transpose()?;
    let vis = visibility(body.visibility.as_deref())?;
    let space = app
        .store
        .update_space(
            caller.account_id,
            space.id,
            name.as_deref(),
            vis,
            &caller.change(),
        )
        .await?;
    Ok(ok(StatusCode::OK, "Space updated", SpaceOne { space }))
}

/// Delete a space with its rooms, memberships, invites and links. Its owner,
/// or `manage-rooms`.
#[utoipa::path(delete, path = "/v1/accounts/{accountId}/spaces/{spaceId}", tag = "spaces",
    params(("accountId" = Uuid, Path), ("spaceId" = Uuid, Path)),
    responses((status = 200, description = "Space deleted")))]
async fn delete_space(State(app): State<App>, caller: Caller, ids: Ids) -> ApiResult {
    let (space, standing) = in_space(&app, &caller, ids.get("spaceId")).await?;
    if !standing.at_least(SpaceRole::Owner) {
        return Err(standing.refuse("the space's owner"));
    }
    app.store
        .delete_space(caller.account_id, space.id, &caller.change())
        .await?;
    Ok(ok(
        StatusCode::OK,
        "Space deleted",
        serde_json::json!({ "id": space.id }),
    ))
}

/// Join a public space as a `user`. The caller's own token; private spaces
/// need an invite.
#[utoipa::path(post, path = "/v1/accounts/{accountId}/spaces/{spaceId}/join", tag = "spaces",
    params(("accountId" = Uuid, Path), ("spaceId" = Uuid, Path)),
    responses((status = 200, description = "Joined", body = MemberOne)))]
async fn join_space(State(app): State<App>, caller: Caller, ids: Ids) -> ApiResult {
    let user = user_only(&caller, "join a space")?;
    let (space, standing) = in_space(&app, &caller, ids.get("spaceId")).await?;
    if space.visibility == Visibility::Private && !matches!(standing, Standing::Member(_)) {
        return Err(ApiError::forbidden(
            "this space is private: joining it takes an invite",
        ));
    }
    let member = app
        .store
        .put_space_member(
            caller.account_id,
            space.id,
            user,
            SpaceRole::User,
            true,
            &caller.change(),
        )
        .await?;
    Ok(ok(StatusCode::OK, "Joined", MemberOne { member }))
}

/// List a space's members. Its members, API keys, or `manage-rooms`.
#[utoipa::path(get, path = "/v1/accounts/{accountId}/spaces/{spaceId}/members", tag = "spaces",
    params(("accountId" = Uuid, Path), ("spaceId" = Uuid, Path), ListParams),
    responses((status = 200, description = "Members", body = MemberList)))]
async fn list_members(
    State(app): State<App>,
    caller: Caller,
    ids: Ids,
    ApiQuery(q): ApiQuery<ListParams>,
) -> ApiResult {
    let (space, standing) = in_space(&app, &caller, ids.get("spaceId")).await?;
    if !standing.may_read() {
        return Err(standing.refuse("membership of the space"));
    }
    let p = app
        .store
        .list_space_members(
            caller.account_id,
            space.id,
            page(q.limit, q.cursor.as_deref())?,
        )
        .await?;
    Ok(ok(
        StatusCode::OK,
        "Members",
        MemberList {
            members: p.items,
            next_cursor: p.next.map(encode_cursor),
        },
    ))
}

/// Add a member or change their role. The owner grants any role; a
/// moderator grants up to moderator to those below them; `manage-rooms` anything.
#[utoipa::path(put, path = "/v1/accounts/{accountId}/spaces/{spaceId}/members/{userId}", tag = "spaces",
    params(("accountId" = Uuid, Path), ("spaceId" = Uuid, Path), ("userId" = Uuid, Path)), request_body = PutMember,
    responses((status = 200, description = "Member set", body = MemberOne)))]
async fn put_member(
    State(app): State<App>,
    caller: Caller,
    ids: Ids,
    ApiJson(body): ApiJson<PutMember>,
) -> ApiResult {
    let (space, standing) = in_space(&app, &caller, ids.get("spaceId")).await?;
    let role = SpaceRole::parse_grantable("role", &body.role)?;
    let target = ids.get("userId");
    check_outranks(&app, &caller, &standing, space.id, target, role).await?;
    let member = app
        .store
        .put_space_member(
            caller.account_id,
            space.id,
            target,
            role,
            false,
            &caller.change(),
        )
        .await
        .map_err(|e| match e {
            crate::store::StoreError::NotFound("user") => ApiError::not_found("user"),
            other => other.into(),
        })?;
    Ok(ok(StatusCode::OK, "Member set", MemberOne { member }))
}

/// A member's role may be set by a manager, or by a member who outranks both
/// the target's current role and the role given (the owner's role is fixed).
async fn check_outranks(
    app: &App,
    caller: &Caller,
    standing: &Standing<SpaceRole>,
    space: Uuid,
    target: Uuid,
    role: SpaceRole,
) -> ApiResult<()> {
    let current = app
        .store
        .space_role(caller.account_id, space, target)
        .await?;
    if current == Some(SpaceRole::Owner) {
        return Err(ApiError::forbidden("the owner's role cannot be changed"));
    }
    match standing {
        Standing::Manager => Ok(()),
        Standing::Member(mine) if *mine >= SpaceRole::Moderator => {
            if caller.user_id() == Some(target) && Some(role) > current {
                return Err(ApiError::forbidden("nobody raises their own role"));
            }
            if role > *mine || current.is_some_and(|c| c >= *mine && *mine != SpaceRole::Owner) {
                return Err(ApiError::forbidden(
                    "you may only manage members below your own role",
                ));
            }
            Ok(())
        }
        other => Err(other.refuse("the space's owner or a moderator")),
    }
}

/// Remove a member. Managers, the owner and moderators (for those below
/// them); any member may remove themself. The owner cannot be removed.
#[utoipa::path(delete, path = "/v1/accounts/{accountId}/spaces/{spaceId}/members/{userId}", tag = "spaces",
    params(("accountId" = Uuid, Path), ("spaceId" = Uuid, Path), ("userId" = Uuid, Path)),
    responses((status = 200, description = "Member removed")))]
async fn remove_member(State(app): State<App>, caller: Caller, ids: Ids) -> ApiResult {
    let (space, standing) = in_space(&app, &caller, ids.get("spaceId")).await?;
    let target = ids.get("userId");
    let current = app
        .store
        .space_role(caller.account_id, space.id, target)
        .await?;
    let Some(current) = current else {
        if !standing.may_read() || matches!(standing, Standing::Reader) {
            return Err(standing.refuse("the space's owner or a moderator"));
        }
        return Err(ApiError::not_found("member"));
    };
    if current == SpaceRole::Owner {
        return Err(ApiError::forbidden(
            "the owner cannot be removed from their space",
        ));
    }
    let allowed = caller.user_id() == Some(target)
        || matches!(standing, Standing::Manager)
        || matches!(standing, Standing::Member(mine) if mine >= SpaceRole::Moderator && (mine == SpaceRole::Owner || current < mine));
    if !allowed {
        return Err(standing.refuse("the space's owner or a moderator"));
    }
    app.store
        .remove_space_member(caller.account_id, space.id, target, &caller.change())
        .await?;
    Ok(ok(
        StatusCode::OK,
        "Member removed",
        serde_json::json!({ "user_id": target }),
    ))
}

/// Create an invite carrying a role. The owner (any role), a moderator (up
/// to moderator), or `manage-rooms`. Nobody invites above their own role.
#[utoipa::path(post, path = "/v1/accounts/{accountId}/spaces/{spaceId}/invites", tag = "invites",
    params(("accountId" = Uuid, Path), ("spaceId" = Uuid, Path)), request_body = CreateInvite,
    responses((status = 201, description = "Invite created", body = InviteOne)))]
async fn create_invite(
    State(app): State<App>,
    caller: Caller,
    ids: Ids,
    ApiJson(body): ApiJson<CreateInvite>,
) -> ApiResult {
    let (space, standing) = in_space(&app, &caller, ids.get("spaceId")).await?;
    let role = SpaceRole::parse_grantable("role", &body.role)?;
    let max_uses = body.max_uses.unwrap_or(1);
    if !(1..=MAX_INVITE_USES).contains(&max_uses) {
        return Err(ApiError::validation(
            "max_uses",
            format!("must be between 1 and {MAX_INVITE_USES}"),
        ));
    }
    let now = time::now();
    let expires_at = body
        .ttl
        .map(|s| ttl("ttl", s))
        .transpose()?
        .map(|d| now + d);
    match standing {
        Standing::Manager => {}
        Standing::Member(mine) if mine >= SpaceRole::Moderator => {
            if role > mine {
                return Err(
                    ApiError::forbidden("nobody can invite to a role above their own")
                        .with_field("role"),
                );
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
        created_by: caller.user_id(),
        created_at: now,
    };
    let invite = app
        .store
        .create_invite(caller.account_id, &invite, &caller.change())
        .await?;
    Ok(ok(
        StatusCode::CREATED,
        "Invite created",
        InviteOne { invite },
    ))
}

/// List a space's invites. The owner, moderators, API keys, `manage-rooms`.
#[utoipa::path(get, path = "/v1/accounts/{accountId}/spaces/{spaceId}/invites", tag = "invites",
    params(("accountId" = Uuid, Path), ("spaceId" = Uuid, Path), ListParams),
    responses((status = 200, description = "Invites", body = InviteList)))]
async fn list_invites(
    State(app): State<App>,
    caller: Caller,
    ids: Ids,
    ApiQuery(q): ApiQuery<ListParams>,
) -> ApiResult {
    let (space, standing) = in_space(&app, &caller, ids.get("spaceId")).await?;
    if !(standing.at_least(SpaceRole::Moderator) || matches!(standing, Standing::Reader)) {
        return Err(standing.refuse("the space's owner or a moderator"));
    }
    let p = app
        .store
        .list_invites(
            caller.account_id,
            space.id,
            page(q.limit, q.cursor.as_deref())?,
        )
        .await?;
    Ok(ok(
        StatusCode::OK,
        "Invites",
        InviteList {
            invites: p.items,
            next_cursor: p.next.map(encode_cursor),
        },
    ))
}

/// Revoke an invite. The owner, moderators, or `manage-rooms`.
#[utoipa::path(delete, path = "/v1/accounts/{accountId}/spaces/{spaceId}/invites/{inviteId}", tag = "invites",
    params(("accountId" = Uuid, Path), ("spaceId" = Uuid, Path), ("inviteId" = Uuid, Path)),
    responses((status = 200, description = "Invite revoked")))]
async fn revoke_invite(State(app): State<App>, caller: Caller, ids: Ids) -> ApiResult {
    let (space, standing) = in_space(&app, &caller, ids.get("spaceId")).await?;
    if !standing.at_least(SpaceRole::Moderator) {
        return Err(standing.refuse("the space's owner or a moderator"));
    }
    let id = ids.get("inviteId");
    app.store
        .revoke_invite(caller.account_id, space.id, id, &caller.change())
        .await?;
    Ok(ok(
        StatusCode::OK,
        "Invite revoked",
        serde_json::json!({ "id": id }),
    ))
}

/// Activate an invite with the invitee's own token: they become a member
/// with the invite's role. Used up, expired or revoked: 410.
#[utoipa::path(post, path = "/v1/accounts/{accountId}/spaces/{spaceId}/invites/{inviteId}/activate", tag = "invites",
    params(("accountId" = Uuid, Path), ("spaceId" = Uuid, Path), ("inviteId" = Uuid, Path)),
    responses((status = 200, description = "Invite activated", body = MemberOne), (status = 410, description = "Used up, expired or revoked")))]
async fn activate_invite(State(app): State<App>, caller: Caller, ids: Ids) -> ApiResult {
    let user = user_only(&caller, "activate an invite")?;
    let member = app
        .store
        .activate_invite(
            caller.account_id,
            ids.get("spaceId"),
            ids.get("inviteId"),
            user,
            &caller.change(),
        )
        .await?;
    Ok(ok(StatusCode::OK, "Invite activated", MemberOne { member }))
}
