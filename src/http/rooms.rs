//! Rooms: create, list, read, change, delete; membership (LiveDigital's
//! grantRole) and joins; guest access links (generateAccess).

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::access::{Standing, in_room, in_space, user_only};
use super::envelope::{ApiError, ApiResult, ok};
use super::extract::{ApiJson, ApiQuery, Caller, Ids, encode_cursor, page};
use super::spaces::visibility;
use crate::app::App;
use crate::domain::access::{
    AccessLink, DEFAULT_LINK_TTL_SECONDS, Member, RoomRole, SpaceRole, external_user_id, ttl,
};
use crate::domain::permission::Permission;
use crate::domain::room::{NewRoom, Room, RoomPatch, Visibility, room_name};
use crate::domain::{text, time};
use crate::realtime::bus::BusEvent;

pub fn routes() -> OpenApiRouter<App> {
    OpenApiRouter::new()
        .routes(routes!(create_room, list_rooms))
        .routes(routes!(get_room, update_room, delete_room))
        .routes(routes!(join_room))
        .routes(routes!(list_members))
        .routes(routes!(put_member, remove_member))
        .routes(routes!(create_access, list_access))
        .routes(routes!(revoke_access))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRoom {
    name: String,
    #[serde(alias = "spaceId")]
    space_id: Option<String>,
    /// `public` (default) or `private`.
    visibility: Option<String>,
    #[serde(alias = "isDefault")]
    is_default: Option<bool>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateRoom {
    name: Option<String>,
    visibility: Option<String>,
    #[serde(alias = "isDefault")]
    is_default: Option<bool>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutMember {
    /// `role_room_user` / `role_room_moderator` (or `user` / `moderator` / `guest`).
    role: String,
}

/// LiveDigital's generateAccess.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAccess {
    /// The guest's display name (`participantName` in the URL).
    username: String,
    /// `user` or `moderator`.
    role: String,
    #[serde(alias = "externalUserId")]
    external_user_id: Option<String>,
    /// Seconds the link lives: 1 … 2592000 (30 days), default 86400.
    ttl: Option<i64>,
    /// Reusable within its ttl; otherwise it works once.
    #[serde(alias = "isPermanent")]
    is_permanent: Option<bool>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct RoomOne {
    room: Room,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct RoomList {
    rooms: Vec<Room>,
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
pub struct AccessCreated {
    /// `ROSTER_PUBLIC_URL/rooms/{roomId}?participantName=…&accessToken=…`
    url: String,
    access_token: String,
    #[schema(value_type = String, format = DateTime)]
    expires_at: String,
    link: AccessLink,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct AccessList {
    links: Vec<AccessLink>,
    next_cursor: Option<String>,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    limit: Option<u32>,
    cursor: Option<String>,
}

/// Create a room. Needs `create-room`; in a space, also its owner or a
/// moderator; a default room `manage-rooms`. A user creating it becomes its
/// first moderator.
#[utoipa::path(post, path = "/v1/accounts/{accountId}/rooms", tag = "rooms",
    params(("accountId" = Uuid, Path)), request_body = CreateRoom,
    responses((status = 201, description = "Room created", body = RoomOne)))]
async fn create_room(
    State(app): State<App>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateRoom>,
) -> ApiResult {
    caller.require(Permission::CreateRoom)?;
    let name = room_name(&body.name)?;
    let visibility = visibility(body.visibility.as_deref())?.unwrap_or(Visibility::Public);
    let is_default = body.is_default.unwrap_or(false);
    if is_default {
        caller.require(Permission::ManageRooms)?;
    }
    let space_id = match body.space_id.as_deref() {
        None => None,
        Some(s) => {
            let id = Uuid::try_parse(s)
                .map_err(|_| ApiError::not_found("space").with_field("space_id"))?;
            let (_, standing) = in_space(&app, &caller, id).await.map_err(|e| {
                if e.status == StatusCode::NOT_FOUND {
                    e.with_field("space_id")
                } else {
                    e
                }
            })?;
            if !standing.at_least(SpaceRole::Moderator) {
                return Err(standing.refuse("the space's owner or a moderator"));
            }
            Some(id)
        }
    };
    let new = NewRoom {
        name,
        space_id,
        visibility,
        is_default,
        created_by: caller.user_id(),
    };
    let room = app
        .store
        .create_room(caller.account_id, Uuid::now_v7(), &new, &caller.change())
        .await?;
    Ok(ok(StatusCode::CREATED, "Room created", RoomOne { room }))
}

/// List rooms: public ones and the caller's own; every room for API keys
/// and `manage-rooms`.
#[utoipa::path(get, path = "/v1/accounts/{accountId}/rooms", tag = "rooms",
    params(("accountId" = Uuid, Path), ListParams),
    responses((status = 200, description = "Rooms", body = RoomList)))]
async fn list_rooms(
    State(app): State<App>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ListParams>,
) -> ApiResult {
    let page = page(q.limit, q.cursor.as_deref())?;
    let p = match caller.user_id() {
        Some(user) if !caller.holds(Permission::ManageRooms) => {
            app.store
                .list_rooms_visible_to(caller.account_id, user, page)
                .await?
        }
        _ => app.store.list_rooms(caller.account_id, None, page).await?,
    };
    Ok(ok(
        StatusCode::OK,
        "Rooms",
        RoomList {
            rooms: p.items,
            next_cursor: p.next.map(encode_cursor),
        },
    ))
}

/// Read a room (a private one: members only — the space owner included).
#[utoipa::path(get, path = "/v1/accounts/{accountId}/rooms/{roomId}", tag = "rooms",
    params(("accountId" = Uuid, Path), ("roomId" = Uuid, Path)),
    responses((status = 200, description = "Room", body = RoomOne)))]
async fn get_room(State(app): State<App>, caller: Caller, ids: Ids) -> ApiResult {
    let (room, _) = in_room(&app, &caller, ids.get("roomId")).await?;
    Ok(ok(StatusCode::OK, "Room", RoomOne { room }))
}

/// Change a room. Its moderators, or `manage-rooms`; `is_default` needs
/// `manage-rooms`.
#[utoipa::path(patch, path = "/v1/accounts/{accountId}/rooms/{roomId}", tag = "rooms",
    params(("accountId" = Uuid, Path), ("roomId" = Uuid, Path)), request_body = UpdateRoom,
    responses((status = 200, description = "Room updated", body = RoomOne)))]
async fn update_room(
    State(app): State<App>,
    caller: Caller,
    ids: Ids,
    ApiJson(body): ApiJson<UpdateRoom>,
) -> ApiResult {
    let (room, standing) = in_room(&app, &caller, ids.get("roomId")).await?;
    if !standing.at_least(RoomRole::Moderator) {
        return Err(standing.refuse("a moderator of the room"));
    }
    if body.is_default.is_some() {
        caller.require(Permission::ManageRooms)?;
    }
    let patch = RoomPatch {
        name: body.name.as_deref().map(room_name).transpose()?,
        visibility: visibility(body.visibility.as_deref())?,
        is_default: body.is_default,
    };
    let room = app
        .store
        .update_room(caller.account_id, room.id, &patch, &caller.change())
        .await?;
    Ok(ok(StatusCode::OK, "Room updated", RoomOne { room }))
}

/// Delete a room with its memberships and links. Its moderators, or `manage-rooms`.
#[utoipa::path(delete, path = "/v1/accounts/{accountId}/rooms/{roomId}", tag = "rooms",
    params(("accountId" = Uuid, Path), ("roomId" = Uuid, Path)),
    responses((status = 200, description = "Room deleted")))]
async fn delete_room(State(app): State<App>, caller: Caller, ids: Ids) -> ApiResult {
    let (room, standing) = in_room(&app, &caller, ids.get("roomId")).await?;
    if !standing.at_least(RoomRole::Moderator) {
        return Err(standing.refuse("a moderator of the room"));
    }
    app.store
        .delete_room(caller.account_id, room.id, &caller.change())
        .await?;
    app.bus.publish(BusEvent::RoomClosed {
        account_id: caller.account_id,
        room_id: room.id,
        user_id: None,
    });
    Ok(ok(
        StatusCode::OK,
        "Room deleted",
        serde_json::json!({ "id": room.id }),
    ))
}

/// Join a public room as a `user` (in a private space: its members only).
/// The caller's own token.
#[utoipa::path(post, path = "/v1/accounts/{accountId}/rooms/{roomId}/join", tag = "rooms",
    params(("accountId" = Uuid, Path), ("roomId" = Uuid, Path)),
    responses((status = 200, description = "Joined", body = MemberOne)))]
async fn join_room(State(app): State<App>, caller: Caller, ids: Ids) -> ApiResult {
    let user = user_only(&caller, "join a room")?;
    let (room, standing) = in_room(&app, &caller, ids.get("roomId")).await?;
    if room.visibility == Visibility::Private && !matches!(standing, Standing::Member(_)) {
        return Err(ApiError::forbidden(
            "this room is private: a moderator must add you",
        ));
    }
    if let Some(space) = room.space_id
        && !matches!(standing, Standing::Member(_))
    {
        // A private space hides its rooms from outsiders.
        in_space(&app, &caller, space).await.map_err(|_| {
            ApiError::forbidden("this room's space is private: join the space first")
        })?;
    }
    let member = app
        .store
        .put_room_member(
            caller.account_id,
            room.id,
            user,
            RoomRole::User,
            true,
            &caller.change(),
        )
        .await?;
    Ok(ok(StatusCode::OK, "Joined", MemberOne { member }))
}

/// List a room's members. Its members, API keys, or `manage-rooms`.
#[utoipa::path(get, path = "/v1/accounts/{accountId}/rooms/{roomId}/members", tag = "rooms",
    params(("accountId" = Uuid, Path), ("roomId" = Uuid, Path), ListParams),
    responses((status = 200, description = "Members", body = MemberList)))]
async fn list_members(
    State(app): State<App>,
    caller: Caller,
    ids: Ids,
    ApiQuery(q): ApiQuery<ListParams>,
) -> ApiResult {
    let (room, standing) = in_room(&app, &caller, ids.get("roomId")).await?;
    if !standing.may_read() {
        return Err(standing.refuse("membership of the room"));
    }
    let p = app
        .store
        .list_room_members(
            caller.account_id,
            room.id,
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

/// grantRole: add a member or set their role. The room's moderators (its
/// creator is one) or `manage-rooms` — not the space owner as such. A user
/// is in at most 2000 rooms.
#[utoipa::path(put, path = "/v1/accounts/{accountId}/rooms/{roomId}/members/{userId}", tag = "rooms",
    params(("accountId" = Uuid, Path), ("roomId" = Uuid, Path), ("userId" = Uuid, Path)), request_body = PutMember,
    responses((status = 200, description = "Member set", body = MemberOne)))]
async fn put_member(
    State(app): State<App>,
    caller: Caller,
    ids: Ids,
    ApiJson(body): ApiJson<PutMember>,
) -> ApiResult {
    let (room, standing) = in_room(&app, &caller, ids.get("roomId")).await?;
    let role = RoomRole::parse(&body.role).ok_or_else(|| {
        ApiError::validation(
            "role",
            "must be role_room_user or role_room_moderator (or user / moderator / guest)",
        )
    })?;
    if !standing.at_least(RoomRole::Moderator) {
        return Err(standing.refuse("a moderator of the room"));
    }
    let target = ids.get("userId");
    let member = app
        .store
        .put_room_member(
            caller.account_id,
            room.id,
            target,
            role,
            false,
            &caller.change(),
        )
        .await?;
    Ok(ok(StatusCode::OK, "Member set", MemberOne { member }))
}

/// Remove a member (their live connections leave the room). The room's
/// moderators or `manage-rooms`; any member may remove themself.
#[utoipa::path(delete, path = "/v1/accounts/{accountId}/rooms/{roomId}/members/{userId}", tag = "rooms",
    params(("accountId" = Uuid, Path), ("roomId" = Uuid, Path), ("userId" = Uuid, Path)),
    responses((status = 200, description = "Member removed")))]
async fn remove_member(State(app): State<App>, caller: Caller, ids: Ids) -> ApiResult {
    let (room, standing) = in_room(&app, &caller, ids.get("roomId")).await?;
    let target = ids.get("userId");
    if caller.user_id() != Some(target) && !standing.at_least(RoomRole::Moderator) {
        return Err(standing.refuse("a moderator of the room"));
    }
    app.store
        .remove_room_member(caller.account_id, room.id, target, &caller.change())
        .await?;
    app.bus.publish(BusEvent::RoomClosed {
        account_id: caller.account_id,
        room_id: room.id,
        user_id: Some(target),
    });
    Ok(ok(
        StatusCode::OK,
        "Member removed",
        serde_json::json!({ "user_id": target }),
    ))
}

/// Who may make, list and revoke guest links: the room's creator, its
/// moderators, or a `full` API key — not a space owner as such.
fn may_manage_links(caller: &Caller, room: &Room, standing: &Standing<RoomRole>) -> ApiResult<()> {
    let creator = caller.user_id().is_some_and(|u| room.created_by == Some(u));
    let moderator = matches!(standing, Standing::Member(RoomRole::Moderator));
    let full_key = caller.is_api_key() && caller.holds(Permission::ManageRooms);
    if creator || moderator || full_key {
        Ok(())
    } else {
        Err(ApiError::forbidden(
            "only the room's creator or one of its moderators can manage guest links",
        ))
    }
}

/// generateAccess: a guest link for someone without an account.
#[utoipa::path(post, path = "/v1/accounts/{accountId}/rooms/{roomId}/access", tag = "guest access",
    params(("accountId" = Uuid, Path), ("roomId" = Uuid, Path)), request_body = CreateAccess,
    responses((status = 201, description = "Guest link created", body = AccessCreated)))]
async fn create_access(
    State(app): State<App>,
    caller: Caller,
    ids: Ids,
    ApiJson(body): ApiJson<CreateAccess>,
) -> ApiResult {
    let (room, standing) = in_room(&app, &caller, ids.get("roomId")).await?;
    let username = text::display_text("username", &body.username, 100)?;
    let role = match body.role.as_str() {
        "user" => RoomRole::User,
        "moderator" => RoomRole::Moderator,
        _ => {
            return Err(ApiError::validation(
                "role",
                "must be `user` or `moderator`",
            ));
        }
    };
    let external = body
        .external_user_id
        .as_deref()
        .map(external_user_id)
        .transpose()?;
    let life = ttl("ttl", body.ttl.unwrap_or(DEFAULT_LINK_TTL_SECONDS))?;
    may_manage_links(&caller, &room, &standing)?;
    let now = time::now();
    let link = AccessLink {
        id: Uuid::now_v7(),
        room_id: room.id,
        username,
        role,
        external_user_id: external,
        is_permanent: body.is_permanent.unwrap_or(false),
        expires_at: now + life,
        used_at: None,
        revoked_at: None,
        created_by: caller.user_id(),
        created_at: now,
    };
    let token = app.keys.issue_guest_token(caller.account_id, &link, now)?;
    let link = app
        .store
        .create_link(caller.account_id, &link, &caller.change())
        .await?;
    let base = app
        .config
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{}", app.config.listen));
    let mut url = url::Url::parse(&format!("{}/rooms/{}", base.trim_end_matches('/'), room.id))
        .map_err(|e| anyhow::anyhow!("public_url is not a URL: {e}"))?;
    url.query_pairs_mut()
        .append_pair("participantName", &link.username)
        .append_pair("accessToken", &token);
    Ok(ok(
        StatusCode::CREATED,
        "Guest link created",
        AccessCreated {
            url: url.to_string(),
            access_token: token,
            expires_at: time::format(link.expires_at),
            link,
        },
    ))
}

/// List a room's guest links (never their tokens).
#[utoipa::path(get, path = "/v1/accounts/{accountId}/rooms/{roomId}/access", tag = "guest access",
    params(("accountId" = Uuid, Path), ("roomId" = Uuid, Path), ListParams),
    responses((status = 200, description = "Guest links", body = AccessList)))]
async fn list_access(
    State(app): State<App>,
    caller: Caller,
    ids: Ids,
    ApiQuery(q): ApiQuery<ListParams>,
) -> ApiResult {
    let (room, standing) = in_room(&app, &caller, ids.get("roomId")).await?;
    if !matches!(standing, Standing::Reader) {
        may_manage_links(&caller, &room, &standing)?;
    }
    let p = app
        .store
        .list_links(
            caller.account_id,
            room.id,
            page(q.limit, q.cursor.as_deref())?,
        )
        .await?;
    Ok(ok(
        StatusCode::OK,
        "Guest links",
        AccessList {
            links: p.items,
            next_cursor: p.next.map(encode_cursor),
        },
    ))
}

/// Revoke a guest link; it stops opening connections at once.
#[utoipa::path(delete, path = "/v1/accounts/{accountId}/rooms/{roomId}/access/{linkId}", tag = "guest access",
    params(("accountId" = Uuid, Path), ("roomId" = Uuid, Path), ("linkId" = Uuid, Path)),
    responses((status = 200, description = "Guest link revoked")))]
async fn revoke_access(State(app): State<App>, caller: Caller, ids: Ids) -> ApiResult {
    let (room, standing) = in_room(&app, &caller, ids.get("roomId")).await?;
    may_manage_links(&caller, &room, &standing)?;
    let id = ids.get("linkId");
    app.store
        .revoke_link(caller.account_id, room.id, id, &caller.change())
        .await?;
    app.bus.publish(BusEvent::Kick {
        account_id: caller.account_id,
        user_id: id,
        reason: "guest link revoked".into(),
    });
    Ok(ok(
        StatusCode::OK,
        "Guest link revoked",
        serde_json::json!({ "id": id }),
    ))
}
