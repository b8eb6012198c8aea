//! Rooms: create, list, read, change, delete; membership (LiveDigital's
//! grantRole) and joins; guest access links (generateAccess).

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::envelope::{ApiResult, ok};
use super::extract::{ApiJson, ApiQuery, Caller, Ids, encode_cursor, page};
use crate::app::App;
use crate::domain::access::{AccessLink, CreateAccess, Member};
use crate::domain::room::{CreateRoom, PutMember, Room, UpdateRoom};
use crate::domain::time;
use crate::service::{access_links, members, rooms};

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
    let room = rooms::create(&app, &caller, body).await?;
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
    let p = rooms::list(&app, &caller, page(q.limit, q.cursor.as_deref())?).await?;
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
    let room = rooms::get(&app, &caller, ids.get("roomId")).await?;
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
    let room = rooms::update(&app, &caller, ids.get("roomId"), body).await?;
    Ok(ok(StatusCode::OK, "Room updated", RoomOne { room }))
}

/// Delete a room with its memberships and links. Its moderators, or `manage-rooms`.
#[utoipa::path(delete, path = "/v1/accounts/{accountId}/rooms/{roomId}", tag = "rooms",
    params(("accountId" = Uuid, Path), ("roomId" = Uuid, Path)),
    responses((status = 200, description = "Room deleted")))]
async fn delete_room(State(app): State<App>, caller: Caller, ids: Ids) -> ApiResult {
    let id = ids.get("roomId");
    rooms::delete(&app, &caller, id).await?;
    Ok(ok(
        StatusCode::OK,
        "Room deleted",
        serde_json::json!({ "id": id }),
    ))
}

/// Join a public room as a `user` (in a private space: its members only).
/// The caller's own token.
#[utoipa::path(post, path = "/v1/accounts/{accountId}/rooms/{roomId}/join", tag = "rooms",
    params(("accountId" = Uuid, Path), ("roomId" = Uuid, Path)),
    responses((status = 200, description = "Joined", body = MemberOne)))]
async fn join_room(State(app): State<App>, caller: Caller, ids: Ids) -> ApiResult {
    let member = members::join_room(&app, &caller, ids.get("roomId")).await?;
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
    let page = page(q.limit, q.cursor.as_deref());
    let p = members::list_room(&app, &caller, ids.get("roomId"), page).await?;
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
    let (room, user) = (ids.get("roomId"), ids.get("userId"));
    let member = members::put_room(&app, &caller, room, user, &body.role).await?;
    Ok(ok(StatusCode::OK, "Member set", MemberOne { member }))
}

/// Remove a member (their live connections leave the room). The room's
/// moderators or `manage-rooms`; any member may remove themself.
#[utoipa::path(delete, path = "/v1/accounts/{accountId}/rooms/{roomId}/members/{userId}", tag = "rooms",
    params(("accountId" = Uuid, Path), ("roomId" = Uuid, Path), ("userId" = Uuid, Path)),
    responses((status = 200, description = "Member removed")))]
async fn remove_member(State(app): State<App>, caller: Caller, ids: Ids) -> ApiResult {
    let target = ids.get("userId");
    members::remove_room(&app, &caller, ids.get("roomId"), target).await?;
    Ok(ok(
        StatusCode::OK,
        "Member removed",
        serde_json::json!({ "user_id": target }),
    ))
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
    let access_links::Created {
        url,
        access_token,
        link,
    } = access_links::create(&app, &caller, ids.get("roomId"), body).await?;
    Ok(ok(
        StatusCode::CREATED,
        "Guest link created",
        AccessCreated {
            url,
            access_token,
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
    let page = page(q.limit, q.cursor.as_deref());
    let p = access_links::list(&app, &caller, ids.get("roomId"), page).await?;
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
    let id = ids.get("linkId");
    access_links::revoke(&app, &caller, ids.get("roomId"), id).await?;
    Ok(ok(
        StatusCode::OK,
        "Guest link revoked",
        serde_json::json!({ "id": id }),
    ))
}
