//! Rocket.Chat's `roles.*`, `permissions.listAll`, `channels.*` (Roster's
//! public rooms) and `groups.*` (its private rooms) over `service::roles`,
//! `service::users`, `service::rooms` and `service::members`.

use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::users::target;
use super::{RcCaller, RcError, RcJson, RcQuery, RcResult, TAG, success};
use crate::app::App;
use crate::domain::access::{CreateRole, Role};
use crate::domain::permission::Permission;
use crate::domain::room::{CreateRoom, Room, Visibility};
use crate::domain::user::UpdateUserRequest;
use crate::http::extract::Caller;
use crate::service::{self, members, roles, rooms, users};
use crate::store::Page;

pub fn routes() -> OpenApiRouter<App> {
    OpenApiRouter::new()
        .routes(routes!(roles_list))
        .routes(routes!(roles_create))
        .routes(routes!(roles_add_user_to_role))
        .routes(routes!(roles_remove_user_from_role))
        .routes(routes!(permissions_list_all))
        .routes(routes!(channels_create))
        .routes(routes!(channels_info))
        .routes(routes!(channels_list))
        .routes(routes!(channels_invite))
        .routes(routes!(channels_kick))
        .routes(routes!(groups_create))
        .routes(routes!(groups_info))
        .routes(routes!(groups_list))
        .routes(routes!(groups_invite))
        .routes(routes!(groups_kick))
}

fn rc_role(r: &Role) -> Value {
    json!({
        "_id": r.id,
        "name": r.name,
        "description": r.description.clone().unwrap_or_default(),
        "protected": r.builtin,
        "scope": "Users",
        "mandatory2fa": false,
    })
}

/// The built-in and the account's custom roles.
#[utoipa::path(get, path = "/compat/rocketchat/{accountId}/api/v1/roles.list", tag = TAG,
    params(("accountId" = Uuid, Path)), security(("rocketchat" = [])),
    responses((status = 200, description = "`{roles, success}`")))]
async fn roles_list(State(app): State<App>, RcCaller(caller): RcCaller) -> RcResult {
    let all = roles::list(&app, &caller).await?;
    Ok(success(
        json!({ "roles": all.iter().map(rc_role).collect::<Vec<_>>() }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RoleBody {
    name: String,
    description: Option<String>,
    scope: Option<String>,
    mandatory2fa: Option<bool>,
}

/// A custom role without permissions (Roster's `PATCH /roles/{id}` gives it
/// some); `scope` is `Users` only, as room roles are memberships here.
#[utoipa::path(post, path = "/compat/rocketchat/{accountId}/api/v1/roles.create", tag = TAG,
    params(("accountId" = Uuid, Path)), security(("rocketchat" = [])),
    responses((status = 200, description = "`{role, success}`")))]
async fn roles_create(
    State(app): State<App>,
    RcCaller(caller): RcCaller,
    RcJson(body): RcJson<RoleBody>,
) -> RcResult {
    if body.scope.as_deref().is_some_and(|s| s != "Users") {
        return Err(RcError::invalid(
            "scope",
            "scope is Users only: a room's roles are its memberships (channels.invite)",
        ));
    }
    if body.mandatory2fa == Some(true) {
        return Err(RcError::invalid(
            "mandatory2fa",
            "this server has no second factor",
        ));
    }
    let req = CreateRole {
        name: body.name,
        description: body.description,
        permissions: Vec::new(),
    };
    let role = roles::create(&app, &caller, req).await?;
    Ok(success(json!({ "role": rc_role(&role) })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct UserRoleBody {
    role_id: Option<String>,
    role_name: Option<String>,
    username: Option<String>,
    user_id: Option<String>,
    room_id: Option<String>,
    scope: Option<String>,
}

/// The role `roleId` (or `roleName`, Rocket.Chat 6's form) names.
async fn find_role(app: &App, caller: &Caller, body: &UserRoleBody) -> Result<Role, RcError> {
    if body.room_id.is_some() || body.scope.is_some() {
        return Err(RcError::invalid(
            "roomId",
            "a room's roles are its memberships here: use channels.invite / groups.invite",
        ));
    }
    let all = roles::list(app, caller).await?;
    let found = match (&body.role_id, &body.role_name) {
        (Some(id), _) => all.into_iter().find(|r| &r.id == id),
        (None, Some(name)) => all.into_iter().find(|r| &r.name == name),
        (None, None) => {
            return Err(RcError::invalid("roleId", "roleId is required"));
        }
    };
    found.ok_or_else(|| service::Error::not_found_field("role", "roleId").into())
}

/// Gives a user a role, or takes it away: their roles changed as
/// `PATCH /users/{id}` changes them (`assign-roles`, only what you hold).
async fn change_roles(app: &App, caller: &Caller, body: UserRoleBody, add: bool) -> RcResult {
    users::may_assign_roles(caller)?;
    let role = find_role(app, caller, &body).await?;
    let id = target(
        app,
        caller,
        body.user_id.as_deref(),
        body.username.as_deref(),
    )
    .await?;
    let user = users::get(app, caller, id)
        .await
        .map_err(|e| e.naming("username"))?;
    let holds = user.roles.contains(&role.id);
    let roles = match (add, holds) {
        (true, true) => {
            return Err(RcError::invalid("roleId", "User already in role"));
        }
        (false, false) => {
            return Err(RcError::invalid("roleId", "User is not in this role"));
        }
        (true, false) => user
            .roles
            .iter()
            .cloned()
            .chain([role.id.clone()])
            .collect(),
        (false, true) => user
            .roles
            .iter()
            .filter(|r| **r != role.id)
            .cloned()
            .collect(),
    };
    let req = UpdateUserRequest {
        roles: Some(roles),
        ..UpdateUserRequest::default()
    };
    users::update(app, caller, id, req).await?;
    Ok(success(json!({ "role": rc_role(&role) })))
}

#[utoipa::path(post, path = "/compat/rocketchat/{accountId}/api/v1/roles.addUserToRole", tag = TAG,
    params(("accountId" = Uuid, Path)), security(("rocketchat" = [])),
    responses((status = 200, description = "`{role, success}`")))]
async fn roles_add_user_to_role(
    State(app): State<App>,
    RcCaller(caller): RcCaller,
    RcJson(body): RcJson<UserRoleBody>,
) -> RcResult {
    change_roles(&app, &caller, body, true).await
}

#[utoipa::path(post, path = "/compat/rocketchat/{accountId}/api/v1/roles.removeUserFromRole", tag = TAG,
    params(("accountId" = Uuid, Path)), security(("rocketchat" = [])),
    responses((status = 200, description = "`{role, success}`")))]
async fn roles_remove_user_from_role(
    State(app): State<App>,
    RcCaller(caller): RcCaller,
    RcJson(body): RcJson<UserRoleBody>,
) -> RcResult {
    change_roles(&app, &caller, body, false).await
}

/// Every permission with the roles that grant it.
#[utoipa::path(get, path = "/compat/rocketchat/{accountId}/api/v1/permissions.listAll", tag = TAG,
    params(("accountId" = Uuid, Path)), security(("rocketchat" = [])),
    responses((status = 200, description = "`{update, remove, success}`")))]
async fn permissions_list_all(State(app): State<App>, RcCaller(caller): RcCaller) -> RcResult {
    let all = roles::list(&app, &caller).await?;
    let update: Vec<Value> = Permission::ALL
        .iter()
        .map(|p| {
            let granted: Vec<&str> = all
                .iter()
                .filter(|r| r.permissions.contains(p))
                .map(|r| r.id.as_str())
                .collect();
            json!({ "_id": p.name(), "roles": granted })
        })
        .collect();
    Ok(success(json!({ "update": update, "remove": [] })))
}

/// A room as Rocket.Chat answers one: `t` is `c` (public) or `p` (private).
fn rc_room(r: &Room) -> Value {
    json!({
        "_id": r.id,
        "name": r.name,
        "fname": r.name,
        "t": if r.visibility == Visibility::Public { "c" } else { "p" },
        "msgs": 0,
        "u": { "_id": r.created_by },
        "ts": crate::domain::time::format(r.created_at),
        "ro": false,
        "sysMes": true,
        "default": r.is_default,
        "_updatedAt": crate::domain::time::format(r.updated_at),
    })
}

/// Channels (public rooms) or groups (private ones): which this route is.
#[derive(Clone, Copy)]
enum Kind {
    Channel,
    Group,
}

impl Kind {
    fn visibility(self) -> Visibility {
        match self {
            Kind::Channel => Visibility::Public,
            Kind::Group => Visibility::Private,
        }
    }

    /// The answer's key for one room.
    fn key(self) -> &'static str {
        match self {
            Kind::Channel => "channel",
            Kind::Group => "group",
        }
    }

    fn not_found(self) -> RcError {
        RcError::from(service::Error::not_found_field(
            match self {
                Kind::Channel => "room (channel)",
                Kind::Group => "room (group)",
            },
            "roomId",
        ))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct CreateBody {
    name: String,
    /// Usernames to add as members.
    #[serde(default)]
    members: Vec<String>,
    read_only: Option<bool>,
    #[allow(dead_code)]
    exclude_self: Option<bool>,
}

/// Creates the room (its creator, a user, its first moderator), then adds
/// `members`, every one of whom must exist first.
async fn create(app: &App, caller: &Caller, body: CreateBody, kind: Kind) -> RcResult {
    if body.read_only == Some(true) {
        return Err(RcError::invalid(
            "readOnly",
            "Roster's rooms carry no messages to make read-only",
        ));
    }
    if body.members.len() > 100 {
        return Err(RcError::invalid(
            "members",
            "at most 100 members at creation",
        ));
    }
    let mut ids = Vec::with_capacity(body.members.len());
    for name in &body.members {
        ids.push(target(app, caller, None, Some(name)).await?);
    }
    let req = CreateRoom {
        name: body.name,
        space_id: None,
        visibility: Some(kind.visibility().as_str().to_owned()),
        is_default: None,
    };
    let room = rooms::create(app, caller, req).await?;
    for id in ids {
        if caller.user_id() != Some(id) {
            members::add_room(app, caller, room.id, id, "user").await?;
        }
    }
    Ok(success(json!({ kind.key(): rc_room(&room) })))
}

/// The room of `roomId` (or `roomName`), if it is of this kind and the
/// caller may see it.
async fn find(
    app: &App,
    caller: &Caller,
    room_id: Option<&str>,
    room_name: Option<&str>,
    kind: Kind,
) -> Result<Room, RcError> {
    let room = match (room_id, room_name) {
        (Some(id), _) => {
            let id = Uuid::try_parse(id).map_err(|_| kind.not_found())?;
            rooms::get(app, caller, id)
                .await
                .map_err(|e| e.naming("roomId"))?
        }
        (None, Some(name)) => visible(app, caller, kind)
            .await?
            .into_iter()
            .find(|r| r.name == name)
            .ok_or_else(|| kind.not_found())?,
        (None, None) => {
            return Err(RcError::invalid(
                "roomId",
                "The parameter \"roomId\" or \"roomName\" is required",
            ));
        }
    };
    if room.visibility != kind.visibility() {
        return Err(kind.not_found());
    }
    Ok(room)
}

/// Most rooms `channels.list` and a name lookup read.
const MAX_SCANNED: usize = 10_000;

/// The rooms of this kind the caller may see, oldest first.
async fn visible(app: &App, caller: &Caller, kind: Kind) -> Result<Vec<Room>, RcError> {
    let mut out = Vec::new();
    let mut after = None;
    let mut scanned = 0;
    loop {
        let page = rooms::list(app, caller, Page { limit: 100, after }).await?;
        scanned += page.items.len();
        out.extend(
            page.items
                .into_iter()
                .filter(|r| r.visibility == kind.visibility()),
        );
        match page.next {
            Some(next) if scanned < MAX_SCANNED => after = Some(next),
            _ => return Ok(out),
        }
    }
}

async fn list(app: &App, caller: &Caller, query: &RcQuery, kind: Kind) -> RcResult {
    let count = query.number("count", 50, 100)?;
    let offset = query.number("offset", 0, MAX_SCANNED as u64)?;
    let all = visible(app, caller, kind).await?;
    let total = all.len();
    let window: Vec<Value> = all
        .iter()
        .skip(usize::try_from(offset).unwrap_or(usize::MAX))
        .take(usize::try_from(count).unwrap_or(usize::MAX))
        .map(rc_room)
        .collect();
    let key = match kind {
        Kind::Channel => "channels",
        Kind::Group => "groups",
    };
    Ok(success(json!({
        key: window,
        "count": window.len(),
        "offset": offset,
        "total": total,
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct MemberBody {
    room_id: Option<String>,
    room_name: Option<String>,
    user_id: Option<String>,
    username: Option<String>,
}

/// Adds a member (as `user`) or removes one: the room's moderators or
/// `manage-rooms`, as Roster's member routes.
async fn membership(
    app: &App,
    caller: &Caller,
    body: MemberBody,
    kind: Kind,
    add: bool,
) -> RcResult {
    let room = find(
        app,
        caller,
        body.room_id.as_deref(),
        body.room_name.as_deref(),
        kind,
    )
    .await?;
    let user = target(
        app,
        caller,
        body.user_id.as_deref(),
        body.username.as_deref(),
    )
    .await?;
    if add {
        members::add_room(app, caller, room.id, user, "user")
            .await
            .map_err(|e| e.naming("userId"))?;
    } else {
        members::remove_room(app, caller, room.id, user)
            .await
            .map_err(|e| e.naming("userId"))?;
    }
    Ok(success(json!({ kind.key(): rc_room(&room) })))
}

async fn info(app: &App, caller: &Caller, q: &RcQuery, kind: Kind) -> RcResult {
    let room = find(app, caller, q.get("roomId"), q.get("roomName"), kind).await?;
    Ok(success(json!({ kind.key(): rc_room(&room) })))
}

/// A public room.
#[utoipa::path(post, path = "/compat/rocketchat/{accountId}/api/v1/channels.create", tag = TAG,
    params(("accountId" = Uuid, Path)), security(("rocketchat" = [])),
    responses((status = 200, description = "`{channel, success}`")))]
async fn channels_create(
    State(app): State<App>,
    RcCaller(caller): RcCaller,
    RcJson(body): RcJson<CreateBody>,
) -> RcResult {
    create(&app, &caller, body, Kind::Channel).await
}

#[utoipa::path(get, path = "/compat/rocketchat/{accountId}/api/v1/channels.info", tag = TAG,
    params(("accountId" = Uuid, Path)), security(("rocketchat" = [])),
    responses((status = 200, description = "`{channel, success}`")))]
async fn channels_info(State(app): State<App>, RcCaller(caller): RcCaller, q: RcQuery) -> RcResult {
    info(&app, &caller, &q, Kind::Channel).await
}

#[utoipa::path(get, path = "/compat/rocketchat/{accountId}/api/v1/channels.list", tag = TAG,
    params(("accountId" = Uuid, Path)), security(("rocketchat" = [])),
    responses((status = 200, description = "`{channels, count, offset, total, success}`")))]
async fn channels_list(State(app): State<App>, RcCaller(caller): RcCaller, q: RcQuery) -> RcResult {
    list(&app, &caller, &q, Kind::Channel).await
}

#[utoipa::path(post, path = "/compat/rocketchat/{accountId}/api/v1/channels.invite", tag = TAG,
    params(("accountId" = Uuid, Path)), security(("rocketchat" = [])),
    responses((status = 200, description = "`{channel, success}`")))]
async fn channels_invite(
    State(app): State<App>,
    RcCaller(caller): RcCaller,
    RcJson(body): RcJson<MemberBody>,
) -> RcResult {
    membership(&app, &caller, body, Kind::Channel, true).await
}

#[utoipa::path(post, path = "/compat/rocketchat/{accountId}/api/v1/channels.kick", tag = TAG,
    params(("accountId" = Uuid, Path)), security(("rocketchat" = [])),
    responses((status = 200, description = "`{channel, success}`")))]
async fn channels_kick(
    State(app): State<App>,
    RcCaller(caller): RcCaller,
    RcJson(body): RcJson<MemberBody>,
) -> RcResult {
    membership(&app, &caller, body, Kind::Channel, false).await
}

/// A private room.
#[utoipa::path(post, path = "/compat/rocketchat/{accountId}/api/v1/groups.create", tag = TAG,
    params(("accountId" = Uuid, Path)), security(("rocketchat" = [])),
    responses((status = 200, description = "`{group, success}`")))]
async fn groups_create(
    State(app): State<App>,
    RcCaller(caller): RcCaller,
    RcJson(body): RcJson<CreateBody>,
) -> RcResult {
    create(&app, &caller, body, Kind::Group).await
}

#[utoipa::path(get, path = "/compat/rocketchat/{accountId}/api/v1/groups.info", tag = TAG,
    params(("accountId" = Uuid, Path)), security(("rocketchat" = [])),
    responses((status = 200, description = "`{group, success}`")))]
async fn groups_info(State(app): State<App>, RcCaller(caller): RcCaller, q: RcQuery) -> RcResult {
    info(&app, &caller, &q, Kind::Group).await
}

#[utoipa::path(get, path = "/compat/rocketchat/{accountId}/api/v1/groups.list", tag = TAG,
    params(("accountId" = Uuid, Path)), security(("rocketchat" = [])),
    responses((status = 200, description = "`{groups, count, offset, total, success}`")))]
async fn groups_list(State(app): State<App>, RcCaller(caller): RcCaller, q: RcQuery) -> RcResult {
    list(&app, &caller, &q, Kind::Group).await
}

#[utoipa::path(post, path = "/compat/rocketchat/{accountId}/api/v1/groups.invite", tag = TAG,
    params(("accountId" = Uuid, Path)), security(("rocketchat" = [])),
    responses((status = 200, description = "`{group, success}`")))]
async fn groups_invite(
    State(app): State<App>,
    RcCaller(caller): RcCaller,
    RcJson(body): RcJson<MemberBody>,
) -> RcResult {
    membership(&app, &caller, body, Kind::Group, true).await
}

#[utoipa::path(post, path = "/compat/rocketchat/{accountId}/api/v1/groups.kick", tag = TAG,
    params(("accountId" = Uuid, Path)), security(("rocketchat" = [])),
    responses((status = 200, description = "`{group, success}`")))]
async fn groups_kick(
    State(app): State<App>,
    RcCaller(caller): RcCaller,
    RcJson(body): RcJson<MemberBody>,
) -> RcResult {
    membership(&app, &caller, body, Kind::Group, false).await
}
