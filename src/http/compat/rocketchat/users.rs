//! Rocket.Chat's login, `me` and `users.*` routes over `service::sessions`,
//! `service::users` and `service::tokens`; the user in Rocket.Chat's shape;
//! `users.list`'s JSON `query`, `sort` and `fields` compiled to a
//! [`UserQuery`] (a bounded allow-list, never text in SQL).

use axum::Extension;
use axum::extract::State;
use axum::http::request::Parts;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::{RcCaller, RcError, RcJson, RcQuery, RcResult, TAG, account_of, success};
use crate::app::App;
use crate::domain::session::{LoginRequest, SignupRequest};
use crate::domain::user::{CreateUserRequest, Hidden, UpdateUserRequest, UserView};
use crate::domain::user_query::{Attr, Expr, Op, Sort, UserQuery, Value as Term};
use crate::http::client_ip::ClientIp;
use crate::http::extract::{Caller, CallerKind, authenticate_as, guarded};
use crate::service::{self, sessions, tokens, users};

pub fn routes() -> OpenApiRouter<App> {
    OpenApiRouter::new()
        .routes(routes!(login))
        .routes(routes!(logout))
        .routes(routes!(me))
        .routes(routes!(users_create))
        .routes(routes!(users_info))
        .routes(routes!(users_list))
        .routes(routes!(users_update))
        .routes(routes!(users_delete))
        .routes(routes!(users_set_active_status))
        .routes(routes!(users_create_token))
        .routes(routes!(users_get_presence))
        .routes(routes!(users_set_status))
        .routes(routes!(users_register))
        .routes(routes!(users_reset_avatar))
}

/// How long a Rocket.Chat login lasts: its `authToken` is kept, never
/// refreshed (Rocket.Chat's own default login expiration is 90 days).
const LOGIN_LIFETIME: ::time::Duration = crate::tokens::USER_TOKEN_TTL;

/// A user as Rocket.Chat answers one: `emails` only when the caller may
/// see the address.
pub(super) fn rc_user(u: &UserView) -> Value {
    let mut o = json!({
        "_id": u.id,
        "createdAt": u.created_at,
        "username": u.username,
        "type": if u.roles.iter().any(|r| r == "bot") { "bot" } else { "user" },
        "status": u.status.as_str(),
        "active": u.active,
        "name": u.name,
        "nickname": u.nickname,
        "bio": u.bio,
        "statusText": u.status_message,
        "roles": u.roles,
        "customFields": u.custom_fields,
        "requirePasswordChange": u.require_password_change,
        "_updatedAt": u.updated_at,
    });
    if let Hidden::Shown(Some(address)) = &u.email {
        o["emails"] = json!([{ "address": address, "verified": u.email_verified }]);
    }
    if let Some(at) = &u.last_seen_at {
        o["lastLogin"] = json!(at);
    }
    o
}

/// `me`: the user's own fields, with the primary address as `email`.
fn rc_me(u: &UserView) -> Value {
    let mut o = rc_user(u);
    if let Hidden::Shown(Some(address)) = &u.email {
        o["email"] = json!(address);
    }
    o
}

/// `userId` or `username` of a request: the user's id.
pub(super) async fn target(
    app: &App,
    caller: &Caller,
    user_id: Option<&str>,
    username: Option<&str>,
) -> Result<Uuid, RcError> {
    match (user_id, username) {
        (Some(id), _) => Uuid::try_parse(id)
            .map_err(|_| RcError::from(service::Error::not_found_field("user", "userId"))),
        (None, Some(name)) => Ok(users::find(app, caller, Attr::Username, name)
            .await
            .map_err(|e| e.naming("username"))?
            .id),
        (None, None) => Err(RcError::invalid(
            "userId",
            "The required \"userId\" or \"username\" param was not provided",
        )),
    }
}

/// [`target`], or the caller themself when a user names nobody.
async fn target_or_self(
    app: &App,
    caller: &Caller,
    user_id: Option<&str>,
    username: Option<&str>,
) -> Result<Uuid, RcError> {
    match (user_id, username, caller.user_id()) {
        (None, None, Some(own)) => Ok(own),
        _ => target(app, caller, user_id, username).await,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginBody {
    /// A username, or an address when it holds `@`.
    user: Option<String>,
    username: Option<String>,
    email: Option<String>,
    password: Option<String>,
    /// A token a login answered: the same session, resumed.
    resume: Option<String>,
    /// A two-factor code: Roster has no second factor, so it is not read.
    #[allow(dead_code)]
    code: Option<String>,
}

/// Logs in with a username or address and a password (or resumes with a
/// token a login answered): a Roster session whose access token is the
/// `authToken`. Every failed login is the same 401.
#[utoipa::path(post, path = "/compat/rocketchat/{accountId}/api/v1/login", tag = TAG,
    params(("accountId" = Uuid, Path)), security(()),
    responses((status = 200, description = "`{status: \"success\", data: {userId, authToken, me}}`"),
        (status = 401, description = "`{status: \"error\", error: \"Unauthorized\"}`")))]
async fn login(
    State(app): State<App>,
    Extension(ClientIp(ip)): Extension<ClientIp>,
    mut parts: Parts,
    RcJson(body): RcJson<LoginBody>,
) -> RcResult {
    let account = account_of(&parts)?;
    let mut visitor = Caller::anonymous(account, Some(crate::http::envelope::request_id()));
    visitor.surface = Some("rocketchat");
    if let Some(token) = body.resume {
        sessions::admit(&app, ip).await?;
        // A login's token is a JWT: nothing else is looked up. A refused
        // one counts against the address, as every refused credential.
        if token.split('.').count() != 3 {
            return Err(RcError::bad_login());
        }
        let caller = guarded(&app, &mut parts, |parts| {
            authenticate_as(parts, &app, account, &token)
        })
        .await
        .map_err(|e| match e.status {
            axum::http::StatusCode::TOO_MANY_REQUESTS => RcError::from(e),
            _ => RcError::bad_login(),
        })?;
        let CallerKind::User { user, .. } = &caller.kind else {
            return Err(RcError::bad_login());
        };
        let me = users::get(&app, &caller, user.id).await?;
        return Ok(logged_in(&me, token));
    }
    let (username, email) = match (body.user, body.username, body.email) {
        (Some(u), None, None) if u.contains('@') => (None, Some(u)),
        (Some(u), None, None) | (None, Some(u), None) => (Some(u), None),
        (None, None, Some(e)) => (None, Some(e)),
        _ => {
            return Err(RcError::invalid(
                "user",
                "give one of user, username or email, with password",
            ));
        }
    };
    let req = LoginRequest {
        username,
        email,
        custom_id: None,
        password: body.password.unwrap_or_default(),
        cookies: false,
    };
    match sessions::login_lasting(&app, &visitor, ip, req, LOGIN_LIFETIME).await {
        Ok(session) => Ok(logged_in(&session.user, session.access_token)),
        Err(service::Error::Unauthorized(_)) => Err(RcError::bad_login()),
        Err(e) => Err(e.into()),
    }
}

fn logged_in(me: &UserView, token: String) -> Response {
    success(json!({
        "status": "success",
        "data": { "userId": me.id, "authToken": token, "me": rc_me(me) },
    }))
}

/// Ends the session of the `authToken` presented; its connections close.
#[utoipa::path(post, path = "/compat/rocketchat/{accountId}/api/v1/logout", tag = TAG,
    params(("accountId" = Uuid, Path)), security(("rocketchat" = [])),
    responses((status = 200, description = "`{status: \"success\", data: {message}}`")))]
async fn logout(State(app): State<App>, RcCaller(caller): RcCaller) -> RcResult {
    sessions::logout(&app, &caller, None).await?;
    Ok(success(json!({
        "status": "success",
        "data": { "message": "You've been logged out!" },
    })))
}

/// The caller's own user, its fields at the top level.
#[utoipa::path(get, path = "/compat/rocketchat/{accountId}/api/v1/me", tag = TAG,
    params(("accountId" = Uuid, Path)), security(("rocketchat" = [])),
    responses((status = 200, description = "The user's fields and `success: true`")))]
async fn me(State(app): State<App>, RcCaller(caller): RcCaller) -> RcResult {
    let Some(id) = caller.user_id() else {
        return Err(RcError::invalid(
            "X-Auth-Token",
            "an API key is not a user: `me` needs a user's authToken",
        ));
    };
    Ok(success(rc_me(&users::get(&app, &caller, id).await?)))
}

/// Creates a user from `users.create`'s fields (Roster's create-user rules,
/// permissions and events).
#[utoipa::path(post, path = "/compat/rocketchat/{accountId}/api/v1/users.create", tag = TAG,
    params(("accountId" = Uuid, Path)), security(("rocketchat" = [])),
    responses((status = 200, description = "`{user, success}`")))]
async fn users_create(
    State(app): State<App>,
    RcCaller(caller): RcCaller,
    RcJson(req): RcJson<CreateUserRequest>,
) -> RcResult {
    let created = users::create(&app, &caller, req).await?;
    Ok(success(json!({ "user": rc_user(&created.user) })))
}

/// A user by `userId` or `username`.
#[utoipa::path(get, path = "/compat/rocketchat/{accountId}/api/v1/users.info", tag = TAG,
    params(("accountId" = Uuid, Path)), security(("rocketchat" = [])),
    responses((status = 200, description = "`{user, success}`")))]
async fn users_info(
    State(app): State<App>,
    RcCaller(caller): RcCaller,
    query: RcQuery,
) -> RcResult {
    let id = target(&app, &caller, query.get("userId"), query.get("username")).await?;
    let user = users::get(&app, &caller, id)
        .await
        .map_err(|e| e.naming("userId"))?;
    Ok(success(json!({ "user": rc_user(&user) })))
}

/// `count` at most this (Rocket.Chat's `API_Upper_Count_Limit` default).
const MAX_COUNT: u64 = 100;

/// Users, `count` from `offset`, with the `total`: `query` filters by
/// `username`, `name`, `emails.address`, `active`, `roles`; `sort` orders by
/// `username`, `name`, `emails.address`, `createdAt`; `fields` keeps or
/// drops answer fields.
#[utoipa::path(get, path = "/compat/rocketchat/{accountId}/api/v1/users.list", tag = TAG,
    params(("accountId" = Uuid, Path)), security(("rocketchat" = [])),
    responses((status = 200, description = "`{users, count, offset, total, success}`")))]
async fn users_list(
    State(app): State<App>,
    RcCaller(caller): RcCaller,
    query: RcQuery,
) -> RcResult {
    let count = query.number("count", 50, MAX_COUNT)?;
    let offset = query.number("offset", 0, u64::from(u32::MAX))?;
    let filter = query
        .object("query")?
        .map(|q| compile_query(&q, 0))
        .transpose()?;
    let sort = match query.ordered("sort")? {
        None => Vec::new(),
        Some(s) => compile_sort(&s)?,
    };
    let fields = query.object("fields")?;
    let search = UserQuery {
        filter,
        sort,
        offset,
        count: u32::try_from(count).unwrap_or(u32::MAX),
    };
    let found = users::search(&app, &caller, &search).await?;
    let list: Vec<Value> = found
        .items
        .iter()
        .map(|u| project(rc_user(u), fields.as_ref()))
        .collect::<Result<_, _>>()?;
    Ok(success(json!({
        "count": list.len(),
        "offset": offset,
        "total": found.total,
        "users": list,
    })))
}

/// The attribute a Rocket.Chat user field is searched by.
fn attr(field: &str) -> Option<Attr> {
    Some(match field {
        "username" => Attr::Username,
        "name" => Attr::Name,
        "emails.address" => Attr::Email,
        "active" => Attr::Active,
        "roles" => Attr::Role,
        _ => return None,
    })
}

/// A Mongo-style query, as Rocket.Chat's `query` parameter sends it: fields
/// compared with a literal, `$eq`, `$ne`, `$in`, `$nin`, `$exists` or a
/// literal `$regex` (`^…` / `…$` anchor it; otherwise it is a substring),
/// combined with `$and`, `$or` and `$nor`.
fn compile_query(q: &Map<String, Value>, depth: usize) -> Result<Expr, RcError> {
    let bad = |why: String| RcError::invalid("query", &why);
    if depth > crate::domain::user_query::MAX_DEPTH {
        return Err(bad("query is nested too deeply".into()));
    }
    let mut all = Vec::new();
    for (key, value) in q {
        let list = |v: &Value| -> Result<Vec<Expr>, RcError> {
            match v {
                Value::Array(items) if !items.is_empty() => items
                    .iter()
                    .map(|i| match i {
                        Value::Object(o) => compile_query(o, depth + 1),
                        _ => Err(bad(format!("{key} takes an array of objects"))),
                    })
                    .collect(),
                _ => Err(bad(format!("{key} takes a non-empty array of objects"))),
            }
        };
        all.push(match key.as_str() {
            "$and" => Expr::And(list(value)?),
            "$or" => Expr::Or(list(value)?),
            "$nor" => Expr::Not(Box::new(Expr::Or(list(value)?))),
            field => {
                let a = attr(field).ok_or_else(|| {
                    bad(format!(
                        "query filters on username, name, emails.address, active and roles, not {field}"
                    ))
                })?;
                compile_field(a, field, value)?
            }
        });
    }
    Ok(match all.len() {
        1 => all.remove(0),
        _ => Expr::And(all),
    })
}

fn compile_field(a: Attr, field: &str, value: &Value) -> Result<Expr, RcError> {
    let bad = |why: String| RcError::invalid("query", &why);
    let term = |v: &Value| -> Result<Term, RcError> {
        match v {
            Value::String(s) => Ok(Term::Text(s.clone())),
            Value::Bool(b) => Ok(Term::Bool(*b)),
            _ => Err(bad(format!(
                "{field} is compared with a string or a boolean"
            ))),
        }
    };
    let cmp = |op: Op, v: &Value| -> Result<Expr, RcError> {
        Expr::cmp(a, op, term(v)?, "query")
            .map_err(|e| RcError::invalid("query", &format!("{field}: {}", e.message)))
    };
    let Value::Object(ops) = value else {
        return cmp(Op::Eq, value);
    };
    let mut all = Vec::new();
    let options = ops.get("$options").and_then(Value::as_str).unwrap_or("");
    if options.chars().any(|c| c != 'i') {
        return Err(bad(
            "$options takes only `i` (every comparison here ignores case)".into(),
        ));
    }
    for (op, v) in ops {
        all.push(match op.as_str() {
            "$eq" => cmp(Op::Eq, v)?,
            "$ne" => cmp(Op::Ne, v)?,
            "$in" | "$nin" => {
                let Value::Array(items) = v else {
                    return Err(bad(format!("{op} takes an array")));
                };
                let any = Expr::Or(
                    items
                        .iter()
                        .map(|i| cmp(Op::Eq, i))
                        .collect::<Result<_, _>>()?,
                );
                if op == "$in" {
                    any
                } else {
                    Expr::Not(Box::new(any))
                }
            }
            "$exists" => match v {
                Value::Bool(true) => Expr::Present(a),
                Value::Bool(false) => Expr::Not(Box::new(Expr::Present(a))),
                _ => return Err(bad("$exists takes true or false".into())),
            },
            "$regex" => {
                let Value::String(pattern) = v else {
                    return Err(bad("$regex takes a string".into()));
                };
                let (op, literal) = literal_regex(pattern).ok_or_else(|| {
                    bad("$regex takes a literal text, optionally anchored with ^ or $".into())
                })?;
                cmp(op, &Value::String(literal))?
            }
            "$options" => continue,
            other => return Err(bad(format!("{other} is not an operator this server takes"))),
        });
    }
    Ok(match all.len() {
        1 => all.remove(0),
        _ => Expr::And(all),
    })
}

/// A regular expression that is a literal text (escapes allowed), with
/// its anchors: the comparison it means.
fn literal_regex(pattern: &str) -> Option<(Op, String)> {
    let (start, rest) = match pattern.strip_prefix('^') {
        Some(r) => (true, r),
        None => (false, pattern),
    };
    let (end, body) = match rest.strip_suffix('$') {
        Some(b) if !b.ends_with('\\') => (true, b),
        _ => (false, rest),
    };
    let mut text = String::new();
    let mut chars = body.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => text.push(chars.next().filter(|n| !n.is_alphanumeric())?),
            '.' | '*' | '+' | '?' | '(' | ')' | '[' | ']' | '{' | '}' | '|' | '^' | '$' => {
                return None;
            }
            c => text.push(c),
        }
    }
    let op = match (start, end) {
        (true, true) => Op::Eq,
        (true, false) => Op::StartsWith,
        (false, true) => Op::EndsWith,
        (false, false) => Op::Contains,
    };
    Some((op, text))
}

/// `sort`: `{field: 1 | -1, …}`, in the order given.
fn compile_sort(s: &[(String, Value)]) -> Result<Vec<Sort>, RcError> {
    s.iter()
        .map(|(field, dir)| {
            let a = match field.as_str() {
                "createdAt" => Attr::Created,
                f => attr(f).filter(|a| *a != Attr::Role).ok_or_else(|| {
                    RcError::invalid(
                        "sort",
                        &format!("sort orders by username, name, emails.address, active and createdAt, not {f}"),
                    )
                })?,
            };
            let descending = match dir.as_i64() {
                Some(1) => false,
                Some(-1) => true,
                _ => return Err(RcError::invalid("sort", "sort directions are 1 or -1")),
            };
            Sort::new(a, descending, "sort").map_err(|e| RcError::invalid("sort", &e.message))
        })
        .collect()
}

/// `fields`: `{name: 1, …}` keeps those (and `_id`), `{name: 0, …}` drops
/// them; the two are not mixed.
fn project(user: Value, fields: Option<&Map<String, Value>>) -> Result<Value, RcError> {
    let Some(fields) = fields.filter(|f| !f.is_empty()) else {
        return Ok(user);
    };
    let flag = |v: &Value| match v {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => n.as_i64().map(|n| n != 0),
        _ => None,
    };
    let mut keep = None;
    for v in fields.values() {
        let f = flag(v).ok_or_else(|| RcError::invalid("fields", "fields take 1 or 0"))?;
        if keep.is_some_and(|k| k != f) {
            return Err(RcError::invalid(
                "fields",
                "fields either keep (1) or drop (0), not both",
            ));
        }
        keep = Some(f);
    }
    let Value::Object(mut o) = user else {
        return Ok(user);
    };
    if keep == Some(true) {
        o.retain(|k, _| k == "_id" || fields.contains_key(k));
    } else {
        o.retain(|k, _| !fields.contains_key(k));
    }
    Ok(Value::Object(o))
}

/// `users.update`'s `data`: Rocket.Chat's editable fields.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct UpdateData {
    email: Option<String>,
    name: Option<String>,
    password: Option<String>,
    username: Option<String>,
    active: Option<bool>,
    bio: Option<String>,
    nickname: Option<String>,
    status_text: Option<String>,
    roles: Option<Vec<String>>,
    require_password_change: Option<bool>,
    verified: Option<bool>,
    custom_fields: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct UpdateBody {
    user_id: String,
    data: UpdateData,
    #[allow(dead_code)]
    confirm_relinquish: Option<bool>,
}

/// Changes a user: `data`'s fields as `PATCH /users/{id}` changes them,
/// then `active` as `setActiveStatus` does.
#[utoipa::path(post, path = "/compat/rocketchat/{accountId}/api/v1/users.update", tag = TAG,
    params(("accountId" = Uuid, Path)), security(("rocketchat" = [])),
    responses((status = 200, description = "`{user, success}`")))]
async fn users_update(
    State(app): State<App>,
    RcCaller(caller): RcCaller,
    RcJson(body): RcJson<UpdateBody>,
) -> RcResult {
    let id = target(&app, &caller, Some(&body.user_id), None).await?;
    let d = body.data;
    let profile = d.email.is_some()
        || d.name.is_some()
        || d.password.is_some()
        || d.username.is_some()
        || d.bio.is_some()
        || d.nickname.is_some()
        || d.status_text.is_some()
        || d.roles.is_some()
        || d.require_password_change.is_some()
        || d.verified.is_some()
        || d.custom_fields.is_some();
    if let (false, Some(active)) = (profile, d.active) {
        // `active` alone: what setActiveStatus does, with its permission.
        let user = users::set_active(&app, &caller, id, active)
            .await
            .map_err(|e| e.naming("userId"))?;
        return Ok(success(json!({ "user": rc_user(&user) })));
    }
    let req = UpdateUserRequest {
        name: d.name.map(Some),
        email: d.email.map(Some),
        username: d.username.map(Some),
        bio: d.bio.map(Some),
        nickname: d.nickname.map(Some),
        status_message: d.status_text.map(Some),
        roles: d.roles,
        require_password_change: d.require_password_change,
        verified: d.verified,
        custom_fields: d.custom_fields,
        password: d.password,
        ..UpdateUserRequest::default()
    };
    let mut user = users::update(&app, &caller, id, req)
        .await
        .map_err(|e| e.naming("userId"))?;
    if let Some(active) = d.active.filter(|a| *a != user.active) {
        user = users::set_active(&app, &caller, id, active).await?;
    }
    Ok(success(json!({ "user": rc_user(&user) })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct UserRef {
    user_id: Option<String>,
    username: Option<String>,
    #[allow(dead_code)]
    confirm_relinquish: Option<bool>,
    /// `users.createToken`'s `CREATE_TOKENS_FOR_USERS_SECRET`: here the
    /// `issue-user-tokens` permission decides, so it is not read.
    #[allow(dead_code)]
    secret: Option<String>,
}

/// Erases a user (Roster's delete: their tokens and connections end).
#[utoipa::path(post, path = "/compat/rocketchat/{accountId}/api/v1/users.delete", tag = TAG,
    params(("accountId" = Uuid, Path)), security(("rocketchat" = [])),
    responses((status = 200, description = "`{success: true}`")))]
async fn users_delete(
    State(app): State<App>,
    RcCaller(caller): RcCaller,
    RcJson(body): RcJson<UserRef>,
) -> RcResult {
    let id = target(
        &app,
        &caller,
        body.user_id.as_deref(),
        body.username.as_deref(),
    )
    .await?;
    users::delete(&app, &caller, id)
        .await
        .map_err(|e| e.naming("userId"))?;
    Ok(success(json!({})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ActiveBody {
    user_id: String,
    active_status: bool,
    #[allow(dead_code)]
    confirm_relinquish: Option<bool>,
}

/// Deactivates (tokens stop, connections close) or reactivates a user.
#[utoipa::path(post, path = "/compat/rocketchat/{accountId}/api/v1/users.setActiveStatus", tag = TAG,
    params(("accountId" = Uuid, Path)), security(("rocketchat" = [])),
    responses((status = 200, description = "`{user: {_id, active}, success}`")))]
async fn users_set_active_status(
    State(app): State<App>,
    RcCaller(caller): RcCaller,
    RcJson(body): RcJson<ActiveBody>,
) -> RcResult {
    let id = target(&app, &caller, Some(&body.user_id), None).await?;
    let user = users::set_active(&app, &caller, id, body.active_status)
        .await
        .map_err(|e| e.naming("userId"))?;
    Ok(success(
        json!({ "user": { "_id": user.id, "active": user.active } }),
    ))
}

/// A 90-day user token for `userId` or `username` (`issue-user-tokens`):
/// it authenticates as `X-Auth-Token` and opens the realtime connection.
#[utoipa::path(post, path = "/compat/rocketchat/{accountId}/api/v1/users.createToken", tag = TAG,
    params(("accountId" = Uuid, Path)), security(("rocketchat" = [])),
    responses((status = 200, description = "`{data: {userId, authToken}, success}`")))]
async fn users_create_token(
    State(app): State<App>,
    RcCaller(caller): RcCaller,
    RcJson(body): RcJson<UserRef>,
) -> RcResult {
    tokens::may_issue(&caller)?;
    let id = target(
        &app,
        &caller,
        body.user_id.as_deref(),
        body.username.as_deref(),
    )
    .await?;
    let issued = tokens::issue(&app, &caller, id, Default::default())
        .await
        .map_err(|e| e.naming("userId"))?;
    Ok(success(
        json!({ "data": { "userId": id, "authToken": issued.token } }),
    ))
}

/// A user's presence (`online` once their client joined a room).
#[utoipa::path(get, path = "/compat/rocketchat/{accountId}/api/v1/users.getPresence", tag = TAG,
    params(("accountId" = Uuid, Path)), security(("rocketchat" = [])),
    responses((status = 200, description = "`{presence, success}`")))]
async fn users_get_presence(
    State(app): State<App>,
    RcCaller(caller): RcCaller,
    query: RcQuery,
) -> RcResult {
    let id = target_or_self(&app, &caller, query.get("userId"), query.get("username")).await?;
    let user = users::get(&app, &caller, id)
        .await
        .map_err(|e| e.naming("userId"))?;
    let mut out = json!({ "presence": user.status.as_str() });
    if caller.user_id() == Some(id) {
        out["connectionStatus"] = json!(user.status.as_str());
        if let Some(at) = &user.last_seen_at {
            out["lastLogin"] = json!(at);
        }
    }
    Ok(success(out))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct StatusBody {
    message: Option<String>,
    status: Option<String>,
    user_id: Option<String>,
    username: Option<String>,
}

/// Sets a status message (own, or another's with `edit-other-user-info`).
/// Presence itself follows the realtime connection: `status` is refused.
#[utoipa::path(post, path = "/compat/rocketchat/{accountId}/api/v1/users.setStatus", tag = TAG,
    params(("accountId" = Uuid, Path)), security(("rocketchat" = [])),
    responses((status = 200, description = "`{success: true}`")))]
async fn users_set_status(
    State(app): State<App>,
    RcCaller(caller): RcCaller,
    RcJson(body): RcJson<StatusBody>,
) -> RcResult {
    if body.status.is_some() {
        return Err(RcError::invalid(
            "status",
            "presence follows the realtime connection here; only the status message is set",
        ));
    }
    let Some(message) = body.message else {
        return Err(RcError::invalid("message", "message is required"));
    };
    let id = target_or_self(
        &app,
        &caller,
        body.user_id.as_deref(),
        body.username.as_deref(),
    )
    .await?;
    let req = UpdateUserRequest {
        status_message: Some(Some(message).filter(|m| !m.is_empty())),
        ..UpdateUserRequest::default()
    };
    users::update(&app, &caller, id, req)
        .await
        .map_err(|e| e.naming("userId"))?;
    Ok(success(json!({})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RegisterBody {
    username: String,
    email: String,
    pass: String,
    name: Option<String>,
    /// Rocket.Chat's registration secret: sign-up here is the account's
    /// setting, so it is not read.
    #[allow(dead_code)]
    secret: Option<String>,
    #[allow(dead_code)]
    reason: Option<String>,
}

/// Self sign-up, when the account enables it (Roster's sign-up rules, its
/// captcha included).
#[utoipa::path(post, path = "/compat/rocketchat/{accountId}/api/v1/users.register", tag = TAG,
    params(("accountId" = Uuid, Path)), security(()),
    responses((status = 200, description = "`{user, success}`")))]
async fn users_register(
    State(app): State<App>,
    Extension(ClientIp(ip)): Extension<ClientIp>,
    parts: Parts,
    RcJson(body): RcJson<RegisterBody>,
) -> RcResult {
    let account = account_of(&parts)?;
    let mut visitor = Caller::anonymous(account, Some(crate::http::envelope::request_id()));
    visitor.surface = Some("rocketchat");
    let req = SignupRequest {
        email: body.email,
        username: body.username,
        password: body.pass,
        phone: None,
        name: body.name,
        captcha_token: None,
    };
    let signed = sessions::signup(&app, &visitor, ip, req).await?;
    Ok(success(json!({ "user": rc_user(&signed.user) })))
}

/// Clears a user's avatar (Roster's `profile_picture`).
#[utoipa::path(post, path = "/compat/rocketchat/{accountId}/api/v1/users.resetAvatar", tag = TAG,
    params(("accountId" = Uuid, Path)), security(("rocketchat" = [])),
    responses((status = 200, description = "`{success: true}`")))]
async fn users_reset_avatar(
    State(app): State<App>,
    RcCaller(caller): RcCaller,
    RcJson(body): RcJson<UserRef>,
) -> RcResult {
    let id = target_or_self(
        &app,
        &caller,
        body.user_id.as_deref(),
        body.username.as_deref(),
    )
    .await?;
    let req = UpdateUserRequest {
        profile_picture: Some(None),
        ..UpdateUserRequest::default()
    };
    users::update(&app, &caller, id, req)
        .await
        .map_err(|e| e.naming("userId"))?;
    Ok(success(json!({})))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_regexes_become_comparisons() {
        assert_eq!(literal_regex("^ali"), Some((Op::StartsWith, "ali".into())));
        assert_eq!(literal_regex("ce$"), Some((Op::EndsWith, "ce".into())));
        assert_eq!(literal_regex("^alice$"), Some((Op::Eq, "alice".into())));
        assert_eq!(literal_regex("a\\.b"), Some((Op::Contains, "a.b".into())));
        for real in ["a.*b", "a|b", "[ab]", "a+", "\\d"] {
            assert_eq!(literal_regex(real), None, "{real}");
        }
    }

    #[test]
    fn queries_compile_to_the_allow_list() {
        let q = |s: &str| {
            compile_query(
                serde_json::from_str::<Value>(s)
                    .unwrap()
                    .as_object()
                    .unwrap(),
                0,
            )
        };
        assert!(matches!(
            q(r#"{"active": true}"#),
            Ok(Expr::Cmp {
                attr: Attr::Active,
                ..
            })
        ));
        assert!(matches!(
            q(r#"{"$or": [{"username": {"$regex": "^al", "$options": "i"}}, {"roles": "admin"}]}"#),
            Ok(Expr::Or(v)) if v.len() == 2
        ));
        assert!(q(r#"{"password": "x"}"#).is_err());
        assert!(q(r#"{"username": {"$where": "1"}}"#).is_err());
        assert!(q(r#"{"active": "yes"}"#).is_err());
        assert!(q(r#"{"$or": []}"#).is_err());
    }

    #[test]
    fn sort_keys_order_as_sent() {
        let q = RcQuery(
            [(
                "sort".to_owned(),
                r#"{"username": 1, "createdAt": -1}"#.to_owned(),
            )]
            .into(),
        );
        let sort = compile_sort(&q.ordered("sort").unwrap().unwrap()).unwrap();
        assert_eq!(sort[0].attr, Attr::Username);
        assert_eq!((sort[1].attr, sort[1].descending), (Attr::Created, true));
        assert!(compile_sort(&[("roles".into(), json!(1))]).is_err());
        assert!(compile_sort(&[("name".into(), json!(2))]).is_err());
    }

    #[test]
    fn fields_keep_or_drop() {
        let u = json!({"_id": "1", "name": "A", "emails": []});
        let keep = json!({"name": 1});
        assert_eq!(
            project(u.clone(), keep.as_object()).unwrap(),
            json!({"_id": "1", "name": "A"})
        );
        let drop = json!({"emails": 0});
        assert_eq!(
            project(u.clone(), drop.as_object()).unwrap(),
            json!({"_id": "1", "name": "A"})
        );
        let mixed = json!({"emails": 0, "name": 1});
        assert!(project(u, mixed.as_object()).is_err());
    }
}
