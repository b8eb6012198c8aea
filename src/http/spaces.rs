//! Spaces, their members and their invites (LiveDigital's createInvite /
//! activateInvite).

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::envelope::{ApiResult, ok};
use super::extract::{ApiJson, ApiQuery, Caller, Ids, encode_cursor, page};
use crate::app::App;
use crate::domain::access::{
    CreateInvite, CreateSpace, Invite, Member, PutMember, Space, UpdateSpace,
};
use crate::service::{invites, members, spaces};

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
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// Page size: 1–100, default 50; outside that range the request is refused.
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u32>,
    /// `next_cursor` of the page before.
    #[param(pattern = r"^([A-Za-z0-9_-]{21}[AQgw])?$")]
    cursor: Option<String>,
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
    let space = spaces::create(&app, &caller, body).await?;
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
    let p = spaces::list(&app, &caller, page(q.limit, q.cursor.as_deref())?).await?;
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
    let space = spaces::get(&app, &caller, ids.get("spaceId")).await?;
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
    let space = spaces::update(&app, &caller, ids.get("spaceId"), body).await?;
    Ok(ok(StatusCode::OK, "Space updated", SpaceOne { space }))
}

/// Delete a space with its rooms, memberships, invites and links. Its owner,
/// or `manage-rooms`.
#[utoipa::path(delete, path = "/v1/accounts/{accountId}/spaces/{spaceId}", tag = "spaces",
    params(("accountId" = Uuid, Path), ("spaceId" = Uuid, Path)),
    responses((status = 200, description = "Space deleted")))]
async fn delete_space(State(app): State<App>, caller: Caller, ids: Ids) -> ApiResult {
    let id = ids.get("spaceId");
    spaces::delete(&app, &caller, id).await?;
    Ok(ok(
        StatusCode::OK,
        "Space deleted",
        serde_json::json!({ "id": id }),
    ))
}

/// Join a public space as a `user`. The caller's own token; private spaces
/// need an invite.
#[utoipa::path(post, path = "/v1/accounts/{accountId}/spaces/{spaceId}/join", tag = "spaces",
    params(("accountId" = Uuid, Path), ("spaceId" = Uuid, Path)),
    responses((status = 200, description = "Joined", body = MemberOne)))]
async fn join_space(State(app): State<App>, caller: Caller, ids: Ids) -> ApiResult {
    let member = members::join_space(&app, &caller, ids.get("spaceId")).await?;
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
    let page = page(q.limit, q.cursor.as_deref());
    let p = members::list_space(&app, &caller, ids.get("spaceId"), page).await?;
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
    let (space, user) = (ids.get("spaceId"), ids.get("userId"));
    let member = members::put_space(&app, &caller, space, user, &body.role).await?;
    Ok(ok(StatusCode::OK, "Member set", MemberOne { member }))
}

/// Remove a member. Managers, the owner and moderators (for those below
/// them); any member may remove themself. The owner cannot be removed.
#[utoipa::path(delete, path = "/v1/accounts/{accountId}/spaces/{spaceId}/members/{userId}", tag = "spaces",
    params(("accountId" = Uuid, Path), ("spaceId" = Uuid, Path), ("userId" = Uuid, Path)),
    responses((status = 200, description = "Member removed")))]
async fn remove_member(State(app): State<App>, caller: Caller, ids: Ids) -> ApiResult {
    let target = ids.get("userId");
    members::remove_space(&app, &caller, ids.get("spaceId"), target).await?;
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
    let invite = invites::create(&app, &caller, ids.get("spaceId"), body).await?;
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
    let page = page(q.limit, q.cursor.as_deref());
    let p = invites::list(&app, &caller, ids.get("spaceId"), page).await?;
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
    let id = ids.get("inviteId");
    invites::revoke(&app, &caller, ids.get("spaceId"), id).await?;
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
    let (space, invite) = (ids.get("spaceId"), ids.get("inviteId"));
    let member = invites::activate(&app, &caller, space, invite).await?;
    Ok(ok(StatusCode::OK, "Invite activated", MemberOne { member }))
}
