//! CometChat's `/users` and `/users/{uid}/auth_tokens` over
//! `service::users` and `service::tokens`. A CometChat `uid` is Roster's
//! `custom_id`, lowercased on the way in as CometChat does; a user made
//! elsewhere without one answers to its Roster id. An auth token is a
//! Roster `user` token: it opens the realtime connection.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::roles::RoleMap;
use super::{CcCaller, CcError, CcJson, CcQuery, CcResult, TAG, alpha_dash, data, done, unix};
use crate::app::App;
use crate::domain::session::IssueTokenRequest;
use crate::domain::user::{CreateUserRequest, Status, UpdateUserRequest, UserView};
use crate::domain::user_query::{Attr, Expr, Op, Sort, UserQuery, Value as Term};
use crate::http::envelope::ApiError;
use crate::http::extract::Caller;
use crate::service::{tokens, users};
use crate::store::Page;
use crate::store::sessions::TokenInfo;

pub fn routes() -> OpenApiRouter<App> {
    OpenApiRouter::new()
        .routes(routes!(create, list, reactivate, deactivate))
        .routes(routes!(get, update, delete))
        .routes(routes!(token_create, token_list, token_flush))
        .routes(routes!(token_get, token_delete))
}

/// CometChat's limits of a bulk (de)activation and of a uid.
const MAX_BULK: usize = 25;
const MAX_UID: usize = 100;
/// At most this many roles or tags in a list filter.
const MAX_FILTER: usize = 25;

/// A user as CometChat answers one; fields without a value are left out,
/// as CometChat leaves them out.
fn cc_user(u: &UserView, roles: &RoleMap, with_tags: bool) -> Value {
    let mut o = Map::new();
    let mut put = |k: &str, v: Value| {
        if !v.is_null() {
            o.insert(k.to_owned(), v);
        }
    };
    put("uid", json!(uid_of(u)));
    put("name", json!(u.name));
    put("avatar", json!(u.profile_picture));
    put("link", json!(u.link));
    put("role", json!(roles.of_user(&u.roles)));
    let online = matches!(u.status, Status::Online | Status::Away);
    put("status", json!(if online { "online" } else { "offline" }));
    put("statusMessage", json!(u.status_message));
    if !u.metadata.is_empty() {
        put("metadata", json!(u.metadata));
    }
    if with_tags && !u.tags.is_empty() {
        put("tags", json!(u.tags));
    }
    put("createdAt", json!(unix(&u.created_at)));
    put("updatedAt", json!(unix(&u.updated_at)));
    if let Some(at) = &u.last_seen_at {
        put("lastActiveAt", json!(unix(at)));
    }
    if let Some(at) = &u.deactivated_at {
        put("deactivatedAt", json!(unix(at)));
    }
    Value::Object(o)
}

/// The user a `uid` names: by `custom_id` (as sent, then lowercased), else a
/// user without one by its Roster id. Deactivated users are not found unless
/// asked for, as CometChat answers for them.
async fn find(
    app: &App,
    caller: &Caller,
    uid: &str,
    deactivated_too: bool,
) -> Result<UserView, CcError> {
    let well_formed = !uid.is_empty()
        && uid.chars().count() <= MAX_UID
        && uid
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !well_formed {
        return Err(CcError::no_uid(uid));
    }
    let mut found = None;
    let lower = uid.to_lowercase();
    let candidates = if lower == uid {
        vec![uid]
    } else {
        vec![uid, lower.as_str()]
    };
    for candidate in candidates {
        match users::find(app, caller, Attr::CustomId, candidate).await {
            Ok(u) => {
                found = Some(u);
                break;
            }
            Err(e) => {
                let e = ApiError::from(e);
                if e.status != StatusCode::NOT_FOUND {
                    return Err(e.into());
                }
            }
        }
    }
    if found.is_none()
        && let Ok(id) = Uuid::try_parse(uid)
    {
        match users::get(app, caller, id).await {
            Ok(u) if u.custom_id.is_none() => found = Some(u),
            Ok(_) => {}
            Err(e) => {
                let e = ApiError::from(e);
                if e.status != StatusCode::NOT_FOUND {
                    return Err(e.into());
                }
            }
        }
    }
    match found {
        Some(u) if u.active || deactivated_too => Ok(u),
        _ => Err(CcError::no_uid(uid)),
    }
}

/// The uid a user is answered by.
fn uid_of(u: &UserView) -> String {
    u.custom_id.clone().unwrap_or_else(|| u.id.to_string())
}

/// A create or update refusal: a taken `custom_id` is CometChat's
/// `ERR_UID_ALREADY_EXISTS`.
fn refusal(e: crate::service::Error, uid: &str) -> CcError {
    let e = ApiError::from(e);
    if e.status == StatusCode::CONFLICT && e.field.as_deref() == Some("custom_id") {
        return CcError::uid_taken(uid);
    }
    e.into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct NewUser {
    uid: Option<String>,
    name: Option<String>,
    avatar: Option<String>,
    link: Option<String>,
    role: Option<String>,
    status_message: Option<String>,
    metadata: Option<Value>,
    tags: Option<Vec<String>>,
    with_auth_token: Option<bool>,
}

/// Creates a user from CometChat's fields (Roster's create-user rules,
/// permissions and events); `withAuthToken` answers its auth token.
#[utoipa::path(post, path = "/compat/cometchat/{accountId}/v3/users", tag = TAG,
    params(("accountId" = Uuid, Path)), security(("cometchat" = [])),
    responses((status = 200, description = "`{data: user}`"),
        (status = 400, description = "`ERR_BAD_REQUEST`, `ERR_UID_ALREADY_EXISTS`")))]
async fn create(
    State(app): State<App>,
    CcCaller(caller): CcCaller,
    CcJson(body): CcJson<NewUser>,
) -> CcResult {
    CcError::required(&[("uid", body.uid.is_some()), ("name", body.name.is_some())])?;
    let uid = alpha_dash("uid", body.uid.as_deref().unwrap_or_default(), MAX_UID)?;
    // A user without a uid answers to their Roster id: that id is taken.
    if let Ok(id) = Uuid::try_parse(&uid)
        && users::get(&app, &caller, id).await.is_ok()
    {
        return Err(CcError::uid_taken(&uid));
    }
    let role_map = RoleMap::load(&app, &caller).await?;
    let roles = body
        .role
        .as_deref()
        .map(|r| role_map.roles_for(r))
        .transpose()?;
    let req = CreateUserRequest {
        custom_id: Some(uid.clone()),
        name: body.name,
        profile_picture: body.avatar,
        link: body.link,
        roles,
        status_message: body.status_message,
        metadata: body.metadata,
        tags: body.tags,
        with_auth_token: body.with_auth_token,
        ..CreateUserRequest::default()
    };
    let created = users::create(&app, &caller, req)
        .await
        .map_err(|e| refusal(e, &uid))?;
    let mut user = cc_user(&created.user, &role_map, true);
    if body.with_auth_token == Some(true) {
        user["authToken"] = json!(created.token);
    }
    Ok(data(user))
}

/// Users by `page` and `perPage` (at most 1000), in name order: `searchKey`
/// (a prefix of the name or uid; `searchIn` narrows it), `status`
/// (`available` or `offline`), `role` / `roles`, `tags` (any of them),
/// `onlyDeactivated`, `withDeactivated`; `withTags` answers the tags.
#[utoipa::path(get, path = "/compat/cometchat/{accountId}/v3/users", tag = TAG,
    params(("accountId" = Uuid, Path)), security(("cometchat" = [])),
    responses((status = 200, description = "`{data: [user], meta: {pagination}}`")))]
async fn list(State(app): State<App>, CcCaller(caller): CcCaller, query: CcQuery) -> CcResult {
    let page = query.page(1000)?;
    let role_map = RoleMap::load(&app, &caller).await?;
    let mut all = Vec::new();
    let cmp = |attr, op, value: Term, field: &str| {
        Expr::cmp(attr, op, value, field).map_err(|e| CcError::field(field, e.message))
    };
    match (
        query.flag("onlyDeactivated")?,
        query.flag("withDeactivated")?,
    ) {
        (true, _) => all.push(cmp(
            Attr::Active,
            Op::Eq,
            Term::Bool(false),
            "onlyDeactivated",
        )?),
        (false, true) => {}
        (false, false) => all.push(cmp(
            Attr::Active,
            Op::Eq,
            Term::Bool(true),
            "withDeactivated",
        )?),
    }
    if let Some(key) = query.get("searchKey") {
        let within = query.list("searchIn", 2)?;
        let mut any = Vec::new();
        for (name, attr) in [("name", Attr::Name), ("uid", Attr::CustomId)] {
            if within.is_empty() || within.iter().any(|w| w == name) {
                any.push(cmp(
                    attr,
                    Op::StartsWith,
                    Term::Text(key.to_owned()),
                    "searchKey",
                )?);
            }
        }
        if any.is_empty() {
            return Err(CcError::field(
                "searchIn",
                "The searchIn field takes name and uid.",
            ));
        }
        all.push(Expr::Or(any));
    }
    match query.get("status") {
        None => {}
        Some("available" | "online") => all.push(cmp(
            Attr::Status,
            Op::Ne,
            Term::Text("offline".into()),
            "status",
        )?),
        Some("offline") => all.push(cmp(
            Attr::Status,
            Op::Eq,
            Term::Text("offline".into()),
            "status",
        )?),
        Some(_) => {
            return Err(CcError::field(
                "status",
                "The selected status is invalid: available or offline.",
            ));
        }
    }
    let mut wanted_roles = query.list("roles", MAX_FILTER)?;
    wanted_roles.extend(query.get("role").map(str::to_owned));
    if !wanted_roles.is_empty() {
        let mut any = Vec::new();
        for r in &wanted_roles {
            let ids = role_map.roles_for(r)?;
            any.push(match ids.get(1) {
                Some(id) => cmp(Attr::Role, Op::Eq, Term::Text(id.clone()), "role")?,
                // `default`: holds no role beside `user`.
                None => only_user(&role_map),
            });
        }
        all.push(Expr::Or(any));
    }
    let tags = query.list("tags", MAX_FILTER)?;
    if !tags.is_empty() {
        let any = tags
            .iter()
            .map(|t| cmp(Attr::Tag, Op::Eq, Term::Text(t.clone()), "tags"))
            .collect::<Result<_, _>>()?;
        all.push(Expr::Or(any));
    }
    let search = UserQuery {
        filter: Some(Expr::And(all)),
        sort: vec![
            Sort::new(Attr::Name, false, "sort").map_err(|e| CcError::field("sort", e.message))?,
        ],
        offset: page.offset(),
        count: u32::try_from(page.per_page).unwrap_or(u32::MAX),
    };
    let found = users::search(&app, &caller, &search).await?;
    let with_tags = query.flag("withTags")?;
    let items = found
        .items
        .iter()
        .map(|u| cc_user(u, &role_map, with_tags))
        .collect();
    Ok(page.answer(items, found.total))
}

/// `default` as a filter: holds `user` and none of the account's other roles.
fn only_user(roles: &RoleMap) -> Expr {
    let role = |id: &str| Expr::Cmp {
        attr: Attr::Role,
        op: Op::Eq,
        value: Term::Text(id.to_owned()),
    };
    let others = roles.ids().filter(|id| *id != "user").map(role).collect();
    Expr::And(vec![role("user"), Expr::Not(Box::new(Expr::Or(others)))])
}

/// A user by uid.
#[utoipa::path(get, path = "/compat/cometchat/{accountId}/v3/users/{uid}", tag = TAG,
    params(("accountId" = Uuid, Path), ("uid" = String, Path)), security(("cometchat" = [])),
    responses((status = 200, description = "`{data: user}`"),
        (status = 404, description = "`ERR_UID_NOT_FOUND`")))]
async fn get(
    State(app): State<App>,
    CcCaller(caller): CcCaller,
    Path((_account, uid)): Path<(Uuid, String)>,
) -> CcResult {
    let user = find(&app, &caller, &uid, false).await?;
    let role_map = RoleMap::load(&app, &caller).await?;
    Ok(data(cc_user(&user, &role_map, true)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct UserPatch {
    name: Option<String>,
    avatar: Option<String>,
    link: Option<String>,
    role: Option<String>,
    status_message: Option<String>,
    metadata: Option<Value>,
    tags: Option<Vec<String>>,
    unset: Option<Vec<String>>,
}

/// Changes a user: CometChat's fields, `unset` clearing `avatar`, `link` or
/// `metadata`. A `role` replaces the user's roles (CometChat's user has one).
#[utoipa::path(put, path = "/compat/cometchat/{accountId}/v3/users/{uid}", tag = TAG,
    params(("accountId" = Uuid, Path), ("uid" = String, Path)), security(("cometchat" = [])),
    responses((status = 200, description = "`{data: user}`")))]
async fn update(
    State(app): State<App>,
    CcCaller(caller): CcCaller,
    Path((_account, uid)): Path<(Uuid, String)>,
    CcJson(body): CcJson<UserPatch>,
) -> CcResult {
    let unset = body.unset.unwrap_or_default();
    if let Some(bad) = unset
        .iter()
        .find(|u| !["avatar", "link", "metadata"].contains(&u.as_str()))
    {
        return Err(CcError::field(
            "unset",
            format!("The unset field takes avatar, link and metadata, not {bad}."),
        ));
    }
    let cleared = |field: &str| unset.iter().any(|u| u == field);
    for (field, set) in [
        ("avatar", body.avatar.is_some()),
        ("link", body.link.is_some()),
        ("metadata", body.metadata.is_some()),
    ] {
        if set && cleared(field) {
            return Err(CcError::field(
                field,
                format!("The {field} cannot be both set and unset."),
            ));
        }
    }
    let user = find(&app, &caller, &uid, false).await?;
    let role_map = RoleMap::load(&app, &caller).await?;
    let roles = body
        .role
        .as_deref()
        .map(|r| role_map.roles_for(r))
        .transpose()?;
    let or_cleared = |value: Option<String>, field: &str| match value {
        Some(v) => Some(Some(v)),
        None if cleared(field) => Some(None),
        None => None,
    };
    let req = UpdateUserRequest {
        name: body.name.map(Some),
        profile_picture: or_cleared(body.avatar, "avatar"),
        link: or_cleared(body.link, "link"),
        roles,
        status_message: body.status_message.map(Some),
        metadata: body
            .metadata
            .or_else(|| cleared("metadata").then(|| json!({}))),
        tags: body.tags,
        ..UpdateUserRequest::default()
    };
    let updated = users::update(&app, &caller, user.id, req)
        .await
        .map_err(|e| refusal(e, &uid))?;
    Ok(data(cc_user(&updated, &role_map, true)))
}

/// `true`, `false`, or CometChat's examples' `"true"` / `"false"`.
#[derive(Deserialize, Default, Clone, Copy)]
#[serde(try_from = "Value")]
struct Flag(bool);

impl TryFrom<Value> for Flag {
    type Error = &'static str;

    fn try_from(v: Value) -> Result<Self, Self::Error> {
        match v {
            Value::Bool(b) => Ok(Flag(b)),
            Value::String(s) if s == "true" => Ok(Flag(true)),
            Value::String(s) if s == "false" => Ok(Flag(false)),
            _ => Err("must be true or false"),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Deletion {
    #[serde(default)]
    permanent: Flag,
}

/// Deactivates a user, as CometChat does; `permanent: true` erases them.
#[utoipa::path(delete, path = "/compat/cometchat/{accountId}/v3/users/{uid}", tag = TAG,
    params(("accountId" = Uuid, Path), ("uid" = String, Path)), security(("cometchat" = [])),
    responses((status = 200, description = "`{data: {success, message}}`")))]
async fn delete(
    State(app): State<App>,
    CcCaller(caller): CcCaller,
    Path((_account, uid)): Path<(Uuid, String)>,
    CcJson(body): CcJson<Deletion>,
) -> CcResult {
    let permanent = body.permanent.0;
    let user = find(&app, &caller, &uid, permanent).await?;
    if permanent {
        users::delete(&app, &caller, user.id).await?;
    } else {
        users::set_active(&app, &caller, user.id, false).await?;
    }
    Ok(done(format!(
        "User with {} has been deleted successfully.",
        uid_of(&user)
    )))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Reactivation {
    uids_to_activate: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Deactivation {
    uids_to_deactivate: Vec<String>,
}

/// (De)activates up to 25 users (as the native routes do, also those
/// already so). Every uid is found before any changes.
async fn set_all(
    app: &App,
    caller: &Caller,
    uids: &[String],
    field: &str,
    active: bool,
) -> Result<Vec<String>, CcError> {
    if uids.is_empty() || uids.len() > MAX_BULK {
        return Err(CcError::field(
            field,
            format!("The {field} must have between 1 and {MAX_BULK} items."),
        ));
    }
    let mut found: Vec<UserView> = Vec::new();
    for uid in uids {
        let user = find(app, caller, uid, true).await?;
        if !found.iter().any(|f| f.id == user.id) {
            found.push(user);
        }
    }
    let mut done = Vec::new();
    for user in found {
        users::set_active(app, caller, user.id, active).await?;
        done.push(uid_of(&user));
    }
    Ok(done)
}

/// Reactivates users (`uidsToActivate`, at most 25).
#[utoipa::path(put, path = "/compat/cometchat/{accountId}/v3/users", tag = TAG,
    params(("accountId" = Uuid, Path)), security(("cometchat" = [])),
    responses((status = 200, description = "`{data: {nonDeactivatedUids}}`")))]
async fn reactivate(
    State(app): State<App>,
    CcCaller(caller): CcCaller,
    CcJson(body): CcJson<Reactivation>,
) -> CcResult {
    let uids = set_all(
        &app,
        &caller,
        &body.uids_to_activate,
        "uidsToActivate",
        true,
    )
    .await?;
    Ok(data(json!({ "nonDeactivatedUids": uids })))
}

/// Deactivates users (`uidsToDeactivate`, at most 25).
#[utoipa::path(delete, path = "/compat/cometchat/{accountId}/v3/users", tag = TAG,
    params(("accountId" = Uuid, Path)), security(("cometchat" = [])),
    responses((status = 200, description = "`{data: {deactivatedUids}}`")))]
async fn deactivate(
    State(app): State<App>,
    CcCaller(caller): CcCaller,
    CcJson(body): CcJson<Deactivation>,
) -> CcResult {
    let uids = set_all(
        &app,
        &caller,
        &body.uids_to_deactivate,
        "uidsToDeactivate",
        false,
    )
    .await?;
    Ok(data(json!({ "deactivatedUids": uids })))
}

/// An auth token as listed: Roster keeps no token's value, only its id,
/// so a listing names the token by its id (docs/compat.md).
fn cc_token(uid: &str, token: &str, info: &TokenInfo) -> Value {
    json!({
        "uid": uid,
        "authToken": token,
        "createdAt": info.created_at.unix_timestamp(),
        "expiresAt": info.expires_at.unix_timestamp(),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewToken {
    /// Every token issued here is new: there is none to hand back.
    #[serde(default)]
    #[allow(dead_code)]
    force: Flag,
}

/// Issues an auth token: a 90-day Roster `user` token, which opens the
/// realtime connection. The user's 101st live token revokes their oldest.
#[utoipa::path(post, path = "/compat/cometchat/{accountId}/v3/users/{uid}/auth_tokens", tag = TAG,
    params(("accountId" = Uuid, Path), ("uid" = String, Path)), security(("cometchat" = [])),
    responses((status = 200, description = "`{data: {uid, authToken, createdAt}}`")))]
async fn token_create(
    State(app): State<App>,
    CcCaller(caller): CcCaller,
    Path((_account, uid)): Path<(Uuid, String)>,
    CcJson(_body): CcJson<NewToken>,
) -> CcResult {
    let user = find(&app, &caller, &uid, false).await?;
    let issued = tokens::issue(&app, &caller, user.id, IssueTokenRequest { room_id: None }).await?;
    Ok(data(cc_token(&uid_of(&user), &issued.token, &issued.info)))
}

/// The user's live tokens, oldest first.
async fn live_tokens(app: &App, caller: &Caller, user: Uuid) -> Result<Vec<TokenInfo>, CcError> {
    let page = Page {
        limit: u32::try_from(tokens::MAX_LIVE_USER_TOKENS).unwrap_or(100),
        after: None,
    };
    Ok(tokens::list(app, caller, user, Ok(page)).await?.items)
}

/// The user's live auth tokens, by their ids.
#[utoipa::path(get, path = "/compat/cometchat/{accountId}/v3/users/{uid}/auth_tokens", tag = TAG,
    params(("accountId" = Uuid, Path), ("uid" = String, Path)), security(("cometchat" = [])),
    responses((status = 200, description = "`{data: [token], meta: {pagination}}`")))]
async fn token_list(
    State(app): State<App>,
    CcCaller(caller): CcCaller,
    Path((_account, uid)): Path<(Uuid, String)>,
    query: CcQuery,
) -> CcResult {
    let page = query.page(100)?;
    let user = find(&app, &caller, &uid, false).await?;
    let uid = uid_of(&user);
    let all = live_tokens(&app, &caller, user.id)
        .await?
        .iter()
        .map(|t| cc_token(&uid, &t.id.to_string(), t))
        .collect();
    Ok(page.window(all))
}

/// Revokes every token and session of the user; their connections close.
#[utoipa::path(delete, path = "/compat/cometchat/{accountId}/v3/users/{uid}/auth_tokens", tag = TAG,
    params(("accountId" = Uuid, Path), ("uid" = String, Path)), security(("cometchat" = [])),
    responses((status = 200, description = "`{data: {success, message}}`")))]
async fn token_flush(
    State(app): State<App>,
    CcCaller(caller): CcCaller,
    Path((_account, uid)): Path<(Uuid, String)>,
) -> CcResult {
    let user = find(&app, &caller, &uid, false).await?;
    tokens::revoke_all(&app, &caller, user.id).await?;
    Ok(done(format!(
        "Cleared Auth Tokens successfully for uid {}.",
        uid_of(&user)
    )))
}

fn no_token() -> CcError {
    CcError::new(
        StatusCode::NOT_FOUND,
        "ERR_AUTH_TOKEN_NOT_FOUND",
        "The auth token does not exist.",
    )
}

/// The id of the token a path names — the token itself (a `user` token of
/// this user) or its id — if it is live.
async fn live_token(
    app: &App,
    caller: &Caller,
    user: Uuid,
    token: &str,
) -> Result<TokenInfo, CcError> {
    let id = if token.split('.').count() == 3 {
        match app.verify_account_token(token).await {
            Ok(c) if c.user_id == user && c.account_id == caller.account_id => c.jti,
            _ => return Err(no_token()),
        }
    } else {
        Uuid::try_parse(token).map_err(|_| no_token())?
    };
    live_tokens(app, caller, user)
        .await?
        .into_iter()
        .find(|t| t.id == id)
        .ok_or_else(no_token)
}

/// One live auth token of the user, by the token or its id.
#[utoipa::path(get, path = "/compat/cometchat/{accountId}/v3/users/{uid}/auth_tokens/{authToken}", tag = TAG,
    params(("accountId" = Uuid, Path), ("uid" = String, Path), ("authToken" = String, Path)),
    security(("cometchat" = [])),
    responses((status = 200, description = "`{data: {uid, authToken, createdAt}}`")))]
async fn token_get(
    State(app): State<App>,
    CcCaller(caller): CcCaller,
    Path((_account, uid, token)): Path<(Uuid, String, String)>,
) -> CcResult {
    let user = find(&app, &caller, &uid, false).await?;
    let info = live_token(&app, &caller, user.id, &token).await?;
    Ok(data(cc_token(&uid_of(&user), &token, &info)))
}

/// Revokes one auth token, by the token or its id; its connections close.
#[utoipa::path(delete, path = "/compat/cometchat/{accountId}/v3/users/{uid}/auth_tokens/{authToken}", tag = TAG,
    params(("accountId" = Uuid, Path), ("uid" = String, Path), ("authToken" = String, Path)),
    security(("cometchat" = [])),
    responses((status = 200, description = "`{data: {success, message}}`")))]
async fn token_delete(
    State(app): State<App>,
    CcCaller(caller): CcCaller,
    Path((_account, uid, token)): Path<(Uuid, String, String)>,
) -> CcResult {
    let user = find(&app, &caller, &uid, false).await?;
    let info = live_token(&app, &caller, user.id, &token).await?;
    tokens::revoke(&app, &caller, user.id, info.id).await?;
    Ok(done(
        "The auth token has been deleted successfully.".to_owned(),
    ))
}
