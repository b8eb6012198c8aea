//! Rooms: create, list, read, change, delete.

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::envelope::{ApiError, ApiResult, ok};
use super::extract::{ApiJson, ApiQuery, Caller, Ids, encode_cursor, page};
use crate::app::App;
use crate::domain::permission::Permission;
use crate::domain::room::{NewRoom, Room, RoomPatch, Visibility, room_name};

pub fn routes() -> OpenApiRouter<App> {
    OpenApiRouter::new()
        .routes(routes!(create_room, list_rooms))
        .routes(routes!(get_room, update_room, delete_room))
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

#[derive(Serialize, utoipa::ToSchema)]
pub struct RoomOne {
    room: Room,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct RoomList {
    rooms: Vec<Room>,
    next_cursor: Option<String>,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    limit: Option<u32>,
    cursor: Option<String>,
}

fn visibility(v: Option<&str>) -> ApiResult<Option<Visibility>> {
    v.map(|s| {
        Visibility::parse(s)
            .ok_or_else(|| ApiError::validation("visibility", "must be `public` or `private`"))
    })
    .transpose()
}

/// Whether the caller may see private rooms (API keys, `manage-rooms`).
fn sees_private(caller: &Caller) -> bool {
    caller.is_api_key() || caller.holds(Permission::ManageRooms)
}

/// Create a room. Needs `create-room`; a default room also `manage-rooms`.
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
    if body.space_id.is_some() {
        // Spaces do not exist yet, so any space id names nothing.
        return Err(ApiError::not_found("space").with_field("space_id"));
    }
    let new = NewRoom {
        name,
        visibility,
        is_default,
        created_by: caller.user_id(),
    };
    let room = app
        .store
        .create_room(
            caller.account_id,
            Uuid::now_v7(),
            &new,
            crate::domain::time::now(),
        )
        .await?;
    Ok(ok(StatusCode::CREATED, "Room created", RoomOne { room }))
}

/// List rooms. Any caller of the account; private rooms only for API keys
/// and holders of `manage-rooms`.
#[utoipa::path(get, path = "/v1/accounts/{accountId}/rooms", tag = "rooms",
    params(("accountId" = Uuid, Path), ListParams),
    responses((status = 200, description = "Rooms", body = RoomList)))]
async fn list_rooms(
    State(app): State<App>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ListParams>,
) -> ApiResult {
    let only = (!sees_private(&caller)).then_some(Visibility::Public);
    let p = app
        .store
        .list_rooms(caller.account_id, only, page(q.limit, q.cursor.as_deref())?)
        .await?;
    Ok(ok(
        StatusCode::OK,
        "Rooms",
        RoomList {
            rooms: p.items,
            next_cursor: p.next.map(encode_cursor),
        },
    ))
}

/// Read a room. Private rooms as for the list.
#[utoipa::path(get, path = "/v1/accounts/{accountId}/rooms/{roomId}", tag = "rooms",
    params(("accountId" = Uuid, Path), ("roomId" = Uuid, Path)),
    responses((status = 200, description = "Room", body = RoomOne)))]
async fn get_room(State(app): State<App>, caller: Caller, ids: Ids) -> ApiResult {
    let room = app
        .store
        .get_room(caller.account_id, ids.get("roomId"))
        .await?;
    if room.visibility == Visibility::Private && !sees_private(&caller) {
        return Err(ApiError::not_found("room"));
    }
    Ok(ok(StatusCode::OK, "Room", RoomOne { room }))
}

/// Change a room's name, visibility or default flag. Needs `manage-rooms`.
#[utoipa::path(patch, path = "/v1/accounts/{accountId}/rooms/{roomId}", tag = "rooms",
    params(("accountId" = Uuid, Path), ("roomId" = Uuid, Path)), request_body = UpdateRoom,
    responses((status = 200, description = "Room updated", body = RoomOne)))]
async fn update_room(
    State(app): State<App>,
    caller: Caller,
    ids: Ids,
    ApiJson(body): ApiJson<UpdateRoom>,
) -> ApiResult {
    caller.require(Permission::ManageRooms)?;
    let patch = RoomPatch {
        name: body.name.as_deref().map(room_name).transpose()?,
        visibility: visibility(body.visibility.as_deref())?,
        is_default: body.is_default,
    };
    let room = app
        .store
        .update_room(
            caller.account_id,
            ids.get("roomId"),
            &patch,
            crate::domain::time::now(),
        )
        .await?;
    Ok(ok(StatusCode::OK, "Room updated", RoomOne { room }))
}

/// Delete a room and its memberships. Needs `manage-rooms`.
#[utoipa::path(delete, path = "/v1/accounts/{accountId}/rooms/{roomId}", tag = "rooms",
    params(("accountId" = Uuid, Path), ("roomId" = Uuid, Path)),
    responses((status = 200, description = "Room deleted")))]
async fn delete_room(State(app): State<App>, caller: Caller, ids: Ids) -> ApiResult {
    caller.require(Permission::ManageRooms)?;
    let id = ids.get("roomId");
    app.store.delete_room(caller.account_id, id).await?;
    Ok(ok(
        StatusCode::OK,
        "Room deleted",
        serde_json::json!({ "id": id }),
    ))
}
