//! SCIM `/Users` over `service::users`: create, read, list and search
//! (filters compiled into the user search's allow-list, never into SQL
//! text), replace, PATCH (applied to the user's SCIM document, then
//! written as a replace of what changed), deactivate (`active: false`:
//! tokens stop and connections close at once) and delete.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::filter::{AttrPath, CmpOp, Filter};
use super::schema::{self, ROSTER_USER, USER, WORK};
use super::{
    ListParams, ScimBody, ScimCaller, ScimError, ScimId, ScimQuery, ScimResult, ScimWriter, TAG,
    base, check_if_match, not_modified, patch, resource, stamp,
};
use crate::app::App;
use crate::domain::settings::Settings;
use crate::domain::user::{CreateUserRequest, Hidden, UpdateUserRequest, UserView};
use crate::domain::user_query::{Attr, Expr, Op, Sort, UserQuery, Value as Term};
use crate::http::extract::Caller;
use crate::service::{roles, users};

pub fn routes() -> OpenApiRouter<App> {
    OpenApiRouter::new()
        .routes(routes!(create, list))
        .routes(routes!(search))
        .routes(routes!(get, replace, modify, delete))
}

/// Case-insensitive key lookup (RFC 7643 §2.1: attribute names are).
pub(super) fn field<'a>(o: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    o.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
        .filter(|v| !v.is_null())
}

/// A user as SCIM answers one.
fn to_scim(u: &UserView, base: &str, settings: &Settings) -> Value {
    let mut o = Map::new();
    let mut put = |k: &str, v: Value| {
        if !v.is_null() {
            o.insert(k.to_owned(), v);
        }
    };
    put("id", json!(u.id));
    put("externalId", json!(u.custom_id));
    put("userName", json!(u.username));
    if let Some(n) = &u.name {
        put("name", json!({ "formatted": n }));
        put("displayName", json!(n));
    }
    put("nickName", json!(u.nickname));
    put("profileUrl", json!(u.link));
    if let Hidden::Shown(Some(e)) = &u.email {
        put("emails", json!([{ "value": e, "type": WORK }]));
    }
    if let Hidden::Shown(Some(p)) = &u.phone {
        put("phoneNumbers", json!([{ "value": p, "type": WORK }]));
    }
    if let Some(p) = &u.profile_picture {
        put("photos", json!([{ "value": p, "type": "photo" }]));
    }
    put("active", json!(u.active));
    let roles: Vec<Value> = u
        .roles
        .iter()
        .filter(|r| r.as_str() != "user")
        .map(|r| json!({ "value": r }))
        .collect();
    if !roles.is_empty() {
        put("roles", Value::Array(roles));
    }
    let mut ext = Map::new();
    if let Some(b) = &u.bio {
        ext.insert("bio".into(), json!(b));
    }
    for (k, v) in &u.custom_fields {
        if settings.custom_fields.contains_key(k) && !v.is_null() {
            ext.insert(k.clone(), v.clone());
        }
    }
    let mut schemas = vec![json!(USER)];
    if !ext.is_empty() {
        schemas.push(json!(ROSTER_USER));
        put(ROSTER_USER, Value::Object(ext));
    }
    put("schemas", Value::Array(schemas));
    put(
        "meta",
        json!({
            "resourceType": "User",
            "created": u.created_at,
            "lastModified": u.updated_at,
            "location": format!("{base}/Users/{}", u.id),
        }),
    );
    let mut v = Value::Object(o);
    stamp(&mut v);
    v
}

/// The user's resource schema, for PATCH paths and projections.
async fn resource_schema(app: &App, caller: &Caller) -> Result<schema::Resource, ScimError> {
    let settings = app.settings(caller.account_id).await?;
    let role_ids: Vec<String> = roles::list(app, caller)
        .await?
        .into_iter()
        .map(|r| r.id)
        .collect();
    Ok(schema::Resource {
        core_urn: USER,
        core: schema::user_core(&role_ids),
        extensions: vec![(ROSTER_USER, schema::user_roster(&settings))],
    })
}

/// A boolean as IdPs send one: `true`, or Entra's `"True"` / `"False"`.
fn boolean(name: &str, v: &Value) -> Result<bool, ScimError> {
    match v {
        Value::Bool(b) => Ok(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Ok(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Ok(false),
        _ => Err(ScimError::bad(
            "invalidValue",
            format!("{name} must be true or false"),
        )),
    }
}

fn text(name: &str, v: Option<&Value>) -> Result<Option<String>, ScimError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ScimError::bad(
            "invalidValue",
            format!("{name} must be a string"),
        )),
    }
}

/// The one value Roster keeps of a multi-valued attribute (`emails`,
/// `phoneNumbers`, `photos`): the primary one, else the first.
fn primary_value(name: &str, v: Option<&Value>) -> Result<Option<String>, ScimError> {
    let items: Vec<&Value> = match v {
        None => return Ok(None),
        Some(Value::Array(a)) => a.iter().collect(),
        Some(one @ Value::Object(_)) => vec![one],
        Some(_) => {
            return Err(ScimError::bad(
                "invalidValue",
                format!("{name} must be a list of {{value, type, primary}}"),
            ));
        }
    };
    let mut chosen = None;
    for item in &items {
        let Some(o) = item.as_object() else {
            return Err(ScimError::bad(
                "invalidValue",
                format!("each of {name} must be an object with a value"),
            ));
        };
        let primary = field(o, "primary")
            .map(|p| boolean(&format!("{name}.primary"), p))
            .transpose()?
            .unwrap_or(false);
        if chosen.is_none() || primary {
            chosen = Some(o);
            if primary {
                break;
            }
        }
    }
    chosen.map_or(Ok(None), |o| {
        text(&format!("{name}.value"), field(o, "value"))
    })
}

/// What a SCIM document asks the user to be.
#[derive(Debug, Default, PartialEq)]
struct Wanted {
    username: Option<String>,
    name: Option<String>,
    nickname: Option<String>,
    link: Option<String>,
    email: Option<String>,
    phone: Option<String>,
    picture: Option<String>,
    custom_id: Option<String>,
    active: bool,
    password: Option<String>,
    /// Roles beside `user`.
    roles: Vec<String>,
    bio: Option<String>,
    custom: Map<String, Value>,
}

/// The name a document gives: `displayName`, else `name.formatted`, else
/// the given and family names. After a PATCH (`before` is the document it
/// was applied to) whichever of them changed wins.
fn name_of(
    doc: &Map<String, Value>,
    before: Option<&Map<String, Value>>,
) -> Result<Option<String>, ScimError> {
    let read = |doc: &Map<String, Value>| -> Result<[Option<String>; 2], ScimError> {
        let display = text("displayName", field(doc, "displayName"))?;
        let formatted = match field(doc, "name") {
            None => None,
            Some(Value::Object(n)) => match text("name.formatted", field(n, "formatted"))? {
                Some(f) => Some(f),
                None => {
                    let parts: Vec<String> = ["givenName", "middleName", "familyName"]
                        .iter()
                        .map(|p| text(&format!("name.{p}"), field(n, p)))
                        .collect::<Result<Vec<_>, _>>()?
                        .into_iter()
                        .flatten()
                        .collect();
                    (!parts.is_empty()).then(|| parts.join(" "))
                }
            },
            Some(_) => {
                return Err(ScimError::bad("invalidValue", "name must be an object"));
            }
        };
        Ok([display, formatted])
    };
    let [display, formatted] = read(doc)?;
    if let Some(before) = before {
        let [was_display, was_formatted] = read(before)?;
        if display == was_display && formatted != was_formatted {
            return Ok(formatted);
        }
    }
    Ok(display.or(formatted))
}

fn wanted(
    doc: &Map<String, Value>,
    before: Option<&Map<String, Value>>,
    settings: &Settings,
) -> Result<Wanted, ScimError> {
    let ext = match field(doc, ROSTER_USER) {
        None => Map::new(),
        Some(Value::Object(o)) => o.clone(),
        Some(_) => {
            return Err(ScimError::bad(
                "invalidValue",
                format!("{ROSTER_USER} must be an object"),
            ));
        }
    };
    let roles = match field(doc, "roles") {
        None => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| match i {
                Value::String(s) => Ok(s.clone()),
                Value::Object(o) => text("roles.value", field(o, "value"))?
                    .ok_or_else(|| ScimError::bad("invalidValue", "each role needs a value")),
                _ => Err(ScimError::bad(
                    "invalidValue",
                    "roles must be a list of {value}",
                )),
            })
            .filter(|r| !matches!(r, Ok(s) if s == "user"))
            .collect::<Result<_, _>>()?,
        Some(_) => {
            return Err(ScimError::bad(
                "invalidValue",
                "roles must be a list of {value}",
            ));
        }
    };
    let mut custom = Map::new();
    for name in settings.custom_fields.keys() {
        if let Some(v) = field(&ext, name) {
            custom.insert(name.clone(), v.clone());
        }
    }
    for key in ext.keys() {
        let known = key.eq_ignore_ascii_case("bio")
            || settings
                .custom_fields
                .keys()
                .any(|k| k.eq_ignore_ascii_case(key));
        if !known {
            return Err(ScimError::bad(
                "invalidValue",
                format!("{ROSTER_USER}:{key} is not an attribute of this account"),
            ));
        }
    }
    Ok(Wanted {
        username: text("userName", field(doc, "userName"))?,
        name: name_of(doc, before)?,
        nickname: text("nickName", field(doc, "nickName"))?,
        link: text("profileUrl", field(doc, "profileUrl"))?,
        email: primary_value("emails", field(doc, "emails"))?,
        phone: primary_value("phoneNumbers", field(doc, "phoneNumbers"))?.map(|p| e164(&p)),
        picture: primary_value("photos", field(doc, "photos"))?,
        custom_id: text("externalId", field(doc, "externalId"))?,
        active: field(doc, "active")
            .map(|v| boolean("active", v))
            .transpose()?
            .unwrap_or(true),
        password: text("password", field(doc, "password"))?,
        roles,
        bio: text("bio", field(&ext, "bio"))?,
        custom,
    })
}

/// A number as IdPs send one, in E.164 where it plainly is one: `tel:`
/// and the spaces, dots, dashes and brackets of `+1 (415) 555-2671` go.
fn e164(raw: &str) -> String {
    let s = raw.trim();
    let s = s.strip_prefix("tel:").unwrap_or(s);
    if s.starts_with('+') {
        s.chars()
            .filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')'))
            .collect()
    } else {
        s.to_owned()
    }
}

fn with_user(roles: &[String]) -> Vec<String> {
    let mut all = vec!["user".to_owned()];
    all.extend(roles.iter().cloned());
    all
}

/// Reads a user by the id in the path; anything else is "not found".
async fn load(app: &App, caller: &Caller, id: &str) -> Result<UserView, ScimError> {
    let Ok(uid) = Uuid::try_parse(id) else {
        return Err(ScimError::not_found("User", id));
    };
    users::get(app, caller, uid).await.map_err(|e| {
        let e = ScimError::from(e);
        if e.status == StatusCode::NOT_FOUND {
            ScimError::not_found("User", id)
        } else {
            e
        }
    })
}

/// Creates a user (`create-user`; a `read` key is 403). A taken
/// `userName`, address or `externalId` is 409 `uniqueness`.
#[utoipa::path(post, path = "/v1/accounts/{accountId}/scim/v2/Users", tag = TAG,
    params(("accountId" = Uuid, Path)), security(("bearer" = [])),
    request_body(content = Object, content_type = "application/scim+json"),
    responses((status = 201, description = "The User, with Location and ETag"),
        (status = 400, description = "invalidValue, invalidSyntax"), (status = 409, description = "uniqueness")))]
async fn create(
    State(app): State<App>,
    ScimWriter(caller): ScimWriter,
    ScimBody(doc): ScimBody,
) -> ScimResult {
    let settings = app.settings(caller.account_id).await?;
    let w = wanted(&doc, None, &settings)?;
    if w.username.is_none() {
        return Err(ScimError::bad("invalidValue", "userName is required"));
    }
    let req = CreateUserRequest {
        username: w.username,
        name: w.name,
        nickname: w.nickname,
        link: w.link,
        email: w.email,
        phone: w.phone,
        profile_picture: w.picture,
        custom_id: w.custom_id,
        active: Some(w.active),
        password: w.password,
        roles: (!w.roles.is_empty()).then(|| with_user(&w.roles)),
        bio: w.bio,
        custom_fields: (!w.custom.is_empty()).then_some(Value::Object(w.custom)),
        ..CreateUserRequest::default()
    };
    let created = users::create(&app, &caller, req).await?;
    let body = to_scim(&created.user, &base(&app, caller.account_id), &settings);
    Ok(resource(StatusCode::CREATED, &body))
}

/// Reads a user (`If-None-Match` answers 304 when unchanged).
#[utoipa::path(get, path = "/v1/accounts/{accountId}/scim/v2/Users/{id}", tag = TAG,
    params(("accountId" = Uuid, Path), ("id" = String, Path)), security(("bearer" = [])),
    responses((status = 200, description = "The User"), (status = 304, description = "Unchanged"),
        (status = 404, description = "No such user in this account")))]
async fn get(
    State(app): State<App>,
    ScimCaller(caller): ScimCaller,
    ScimId(id): ScimId,
    query: ScimQuery,
    headers: HeaderMap,
) -> ScimResult {
    let user = load(&app, &caller, &id).await?;
    let settings = app.settings(caller.account_id).await?;
    let body = to_scim(&user, &base(&app, caller.account_id), &settings);
    if let Some(res) = not_modified(&headers, &body) {
        return Ok(res);
    }
    Ok(resource(StatusCode::OK, &query.projection().apply(body)))
}

/// A SCIM filter as the user search's: every attribute from an allow-list
/// of indexed columns, every value bound. `prefix` is the multi-valued
/// attribute a value filter (`emails[…]`) is inside.
fn compile(f: &Filter, prefix: Option<&AttrPath>) -> Result<Expr, ScimError> {
    let invalid = |m: String| ScimError::bad("invalidFilter", m);
    let attr_of = |p: &AttrPath| -> Result<(Attr, bool), ScimError> {
        let (attr, sub) = match prefix {
            Some(outer) => (outer.attr.as_str(), Some(p.attr.as_str())),
            None => (p.attr.as_str(), p.sub.as_deref()),
        };
        let core = p
            .urn
            .as_deref()
            .is_none_or(|u| u.eq_ignore_ascii_case(USER));
        let lower = attr.to_ascii_lowercase();
        let sub = sub.map(str::to_ascii_lowercase);
        // `true` marks "the value exists" terms (an address's type is work,
        // and it is the primary one, whenever there is one).
        let found = match (lower.as_str(), sub.as_deref()) {
            ("username", None) if core => (Attr::Username, false),
            ("externalid", None) if core => (Attr::CustomId, false),
            ("displayname", None) | ("name", Some("formatted")) if core => (Attr::Name, false),
            ("emails", None | Some("value")) if core => (Attr::Email, false),
            ("emails", Some("type" | "primary")) if core => (Attr::Email, true),
            ("active", None) if core => (Attr::Active, false),
            ("roles", None | Some("value")) if core => (Attr::Role, false),
            ("meta", Some("created")) if core => (Attr::Created, false),
            ("meta", Some("lastmodified")) if core => (Attr::Updated, false),
            _ => {
                return Err(invalid(format!(
                    "users are not filtered on {}{}",
                    attr,
                    sub.map(|s| format!(".{s}")).unwrap_or_default()
                )));
            }
        };
        Ok(found)
    };
    Ok(match f {
        Filter::And(a, b) => Expr::And(vec![compile(a, prefix)?, compile(b, prefix)?]),
        Filter::Or(a, b) => Expr::Or(vec![compile(a, prefix)?, compile(b, prefix)?]),
        Filter::Not(e) => Expr::Not(Box::new(compile(e, prefix)?)),
        Filter::ValuePath { path, filter } => {
            if prefix.is_some() {
                return Err(invalid("value filters do not nest".into()));
            }
            compile(filter, Some(path))?
        }
        Filter::Present(p) => {
            let (attr, _) = attr_of(p)?;
            Expr::Present(attr)
        }
        Filter::Cmp { path, op, value } => {
            if path.attr.eq_ignore_ascii_case("id") && prefix.is_none() {
                return Err(invalid(
                    "id is filtered on only as the whole filter: id eq \"…\"".into(),
                ));
            }
            let (attr, existence) = attr_of(path)?;
            if existence {
                let holds = match (path.sub.as_deref().or(Some(path.attr.as_str())), value) {
                    (Some(s), Value::String(t)) if s.eq_ignore_ascii_case("type") => {
                        t.eq_ignore_ascii_case(WORK)
                    }
                    (_, Value::Bool(b)) => *b,
                    _ => false,
                };
                let present = Expr::Present(attr);
                return Ok(match (op, holds) {
                    (CmpOp::Eq, true) | (CmpOp::Ne, false) => present,
                    (CmpOp::Eq, false) | (CmpOp::Ne, true) => Expr::Not(Box::new(present)),
                    _ => {
                        return Err(invalid(
                            "type and primary are compared with eq or ne".into(),
                        ));
                    }
                });
            }
            let term = match (attr, value) {
                (Attr::Created | Attr::Updated, Value::String(s)) => Term::Time(
                    ::time::OffsetDateTime::parse(
                        s,
                        &::time::format_description::well_known::Rfc3339,
                    )
                    .map_err(|_| invalid(format!("{s:?} is not an RFC 3339 date-time")))?,
                ),
                (Attr::Active, v) => {
                    Term::Bool(boolean("active", v).map_err(|e| invalid(e.detail))?)
                }
                (_, Value::String(s)) => Term::Text(s.clone()),
                (_, Value::Bool(b)) => Term::Bool(*b),
                (_, other) => return Err(invalid(format!("users are not compared with {other}"))),
            };
            let op = match op {
                CmpOp::Eq => Op::Eq,
                CmpOp::Ne => Op::Ne,
                CmpOp::Co => Op::Contains,
                CmpOp::Sw => Op::StartsWith,
                CmpOp::Ew => Op::EndsWith,
                CmpOp::Gt => Op::Greater,
                CmpOp::Ge => Op::GreaterOrEqual,
                CmpOp::Lt => Op::Less,
                CmpOp::Le => Op::LessOrEqual,
            };
            Expr::cmp(attr, op, term, "filter").map_err(|e| invalid(e.message))?
        }
    })
}

fn sort_attr(p: &AttrPath) -> Result<Attr, ScimError> {
    let lower = p.attr.to_ascii_lowercase();
    let sub = p.sub.as_deref().map(str::to_ascii_lowercase);
    Ok(match (lower.as_str(), sub.as_deref()) {
        ("username", None) => Attr::Username,
        ("displayname", None) | ("name", Some("formatted")) => Attr::Name,
        ("externalid", None) => Attr::CustomId,
        ("emails", None | Some("value")) => Attr::Email,
        ("id", None) | ("meta", Some("created")) => Attr::Created,
        ("meta", Some("lastmodified")) => Attr::Updated,
        _ => {
            return Err(ScimError::bad(
                "invalidValue",
                format!("users are not sorted by {}", p.attr),
            ));
        }
    })
}

async fn run_list(app: &App, caller: &Caller, params: ListParams) -> ScimResult {
    let base = base(app, caller.account_id);
    let settings = app.settings(caller.account_id).await?;
    // `id eq "…"` alone is a read.
    if let Some(Filter::Cmp {
        path,
        op: CmpOp::Eq,
        value: Value::String(id),
    }) = &params.filter
        && path.attr.eq_ignore_ascii_case("id")
        && path.sub.is_none()
    {
        let found: Vec<Value> = match load(app, caller, id).await {
            Ok(u) => vec![to_scim(&u, &base, &settings)],
            Err(e) if e.status == StatusCode::NOT_FOUND => Vec::new(),
            Err(e) => return Err(e),
        };
        let total = found.len() as u64;
        // The window holds the one match only where it starts at 1 and
        // has room (`count=0` answers the total alone).
        let window = if params.start_index > 1 || params.count == 0 {
            Vec::new()
        } else {
            found
        };
        return Ok(params.answer(window, total));
    }
    let query = UserQuery {
        filter: params
            .filter
            .as_ref()
            .map(|f| compile(f, None))
            .transpose()?,
        sort: params
            .sort_by
            .as_ref()
            .map(|p| {
                let attr = sort_attr(p)?;
                Sort::new(attr, params.descending, "sortBy")
                    .map_err(|e| ScimError::bad("invalidValue", e.message))
            })
            .transpose()?
            .into_iter()
            .collect(),
        offset: params.start_index - 1,
        count: params.count,
    };
    let found = users::search(app, caller, &query).await?;
    let items = found
        .items
        .iter()
        .map(|u| to_scim(u, &base, &settings))
        .collect();
    Ok(params.answer(items, found.total))
}

/// Lists users: `filter` (`eq ne co sw ew pr gt ge lt le`, `and or not`,
/// grouping, `emails[type eq "work"]`), `sortBy`/`sortOrder`,
/// `startIndex`/`count` (`count=0`: the total alone), `attributes`.
#[utoipa::path(get, path = "/v1/accounts/{accountId}/scim/v2/Users", tag = TAG,
    params(("accountId" = Uuid, Path)), security(("bearer" = [])),
    responses((status = 200, description = "A ListResponse of Users"), (status = 400, description = "invalidFilter")))]
async fn list(
    State(app): State<App>,
    ScimCaller(caller): ScimCaller,
    query: ScimQuery,
) -> ScimResult {
    run_list(&app, &caller, query.list()?).await
}

/// The list as a `POST /Users/.search` (RFC 7644 §3.4.3).
#[utoipa::path(post, path = "/v1/accounts/{accountId}/scim/v2/Users/.search", tag = TAG,
    params(("accountId" = Uuid, Path)), security(("bearer" = [])),
    request_body(content = Object, content_type = "application/scim+json"),
    responses((status = 200, description = "A ListResponse of Users"), (status = 400, description = "invalidFilter")))]
async fn search(
    State(app): State<App>,
    ScimCaller(caller): ScimCaller,
    ScimBody(body): ScimBody,
) -> ScimResult {
    run_list(&app, &caller, ListParams::from_search(&body)?).await
}

/// Writes what `doc` changes of `current`: the fields that differ and the
/// (de)activation if `active` changed, in one transaction.
async fn write(
    app: &App,
    caller: &Caller,
    current: &UserView,
    doc: &Map<String, Value>,
    before: Option<&Map<String, Value>>,
) -> Result<UserView, ScimError> {
    let settings = app.settings(caller.account_id).await?;
    let w = wanted(doc, before, &settings)?;
    // A user made natively without a username has none to keep; one that
    // has a userName cannot lose it.
    if w.username.is_none() && current.username.is_some() {
        return Err(ScimError::bad("invalidValue", "userName is required"));
    }
    let shown = |h: &Hidden<String>| match h {
        Hidden::Shown(v) => v.clone(),
        Hidden::Withheld => None,
    };
    let differs =
        |now: &Option<String>, wanted: &Option<String>| (now != wanted).then(|| wanted.clone());
    let roles_now: Vec<String> = current
        .roles
        .iter()
        .filter(|r| *r != "user")
        .cloned()
        .collect();
    let custom_now: Map<String, Value> = current
        .custom_fields
        .iter()
        .filter(|(k, v)| settings.custom_fields.contains_key(*k) && !v.is_null())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let req = UpdateUserRequest {
        username: (current.username != w.username).then(|| w.username.clone()),
        name: differs(&current.name, &w.name),
        nickname: differs(&current.nickname, &w.nickname),
        link: differs(&current.link, &w.link),
        email: differs(&shown(&current.email), &w.email),
        phone: differs(&shown(&current.phone), &w.phone),
        profile_picture: differs(&current.profile_picture, &w.picture),
        custom_id: differs(&current.custom_id, &w.custom_id),
        bio: differs(&current.bio, &w.bio),
        roles: (roles_now != w.roles).then(|| with_user(&w.roles)),
        custom_fields: (custom_now != w.custom).then(|| {
            let mut all = w.custom.clone();
            for k in custom_now.keys() {
                all.entry(k.clone()).or_insert(Value::Null);
            }
            Value::Object(all)
        }),
        password: w.password.clone(),
        ..UpdateUserRequest::default()
    };
    let active = (current.active != w.active).then_some(w.active);
    if !req.changes_any() && active.is_none() {
        return Ok(current.clone());
    }
    Ok(users::update_and_set_active(app, caller, current.id, req, active).await?)
}

/// Replaces a user (PUT): attributes left out are cleared; `password` is
/// set only when given. `If-Match` guards against a stale copy (412).
#[utoipa::path(put, path = "/v1/accounts/{accountId}/scim/v2/Users/{id}", tag = TAG,
    params(("accountId" = Uuid, Path), ("id" = String, Path)), security(("bearer" = [])),
    request_body(content = Object, content_type = "application/scim+json"),
    responses((status = 200, description = "The User"), (status = 404, description = "No such user"),
        (status = 409, description = "uniqueness"), (status = 412, description = "Stale If-Match")))]
async fn replace(
    State(app): State<App>,
    ScimWriter(caller): ScimWriter,
    ScimId(id): ScimId,
    headers: HeaderMap,
    ScimBody(doc): ScimBody,
) -> ScimResult {
    let current = load(&app, &caller, &id).await?;
    let settings = app.settings(caller.account_id).await?;
    let base = base(&app, caller.account_id);
    check_if_match(&headers, &to_scim(&current, &base, &settings))?;
    if let Some(given) = field(&doc, "id").and_then(Value::as_str)
        && given != current.id.to_string()
    {
        return Err(ScimError::bad("mutability", "id cannot be changed"));
    }
    let user = write(&app, &caller, &current, &doc, None).await?;
    Ok(resource(StatusCode::OK, &to_scim(&user, &base, &settings)))
}

/// Changes a user by PATCH operations (add / replace / remove, with and
/// without `path`, value filters such as `emails[type eq "work"].value`,
/// Entra's capitalised ops and `"False"`), all or nothing.
#[utoipa::path(patch, path = "/v1/accounts/{accountId}/scim/v2/Users/{id}", tag = TAG,
    params(("accountId" = Uuid, Path), ("id" = String, Path)), security(("bearer" = [])),
    request_body(content = Object, content_type = "application/scim+json"),
    responses((status = 200, description = "The User"), (status = 400, description = "invalidPath, noTarget, invalidValue, mutability"),
        (status = 404, description = "No such user"), (status = 412, description = "Stale If-Match")))]
async fn modify(
    State(app): State<App>,
    ScimWriter(caller): ScimWriter,
    ScimId(id): ScimId,
    headers: HeaderMap,
    ScimBody(body): ScimBody,
) -> ScimResult {
    let ops = patch::parse_request(&Value::Object(body))?;
    let current = load(&app, &caller, &id).await?;
    let settings = app.settings(caller.account_id).await?;
    let base = base(&app, caller.account_id);
    let before = to_scim(&current, &base, &settings);
    let ops = whole_extension(ops, &before);
    check_if_match(&headers, &before)?;
    let schema = resource_schema(&app, &caller).await?;
    let mut doc = before.clone();
    patch::apply(&mut doc, &ops, &schema)?;
    let (Some(after), Some(was)) = (doc.as_object(), before.as_object()) else {
        return Err(ScimError::bad("invalidValue", "the user is not an object"));
    };
    let user = write(&app, &caller, &current, after, Some(was)).await?;
    Ok(resource(StatusCode::OK, &to_scim(&user, &base, &settings)))
}

/// An operation whose path is the extension's URN itself acts on the whole
/// extension: add and replace become a path-less operation on
/// `{urn: value}`, remove a removal of each of its attributes.
fn whole_extension(ops: Vec<patch::Operation>, doc: &Value) -> Vec<patch::Operation> {
    let mut out = Vec::with_capacity(ops.len());
    for op in ops {
        let whole = op
            .path
            .as_deref()
            .is_some_and(|p| p.trim().eq_ignore_ascii_case(ROSTER_USER));
        if !whole {
            out.push(op);
            continue;
        }
        match op.op {
            patch::OpKind::Remove => {
                if let Some(ext) = doc[ROSTER_USER].as_object() {
                    out.extend(ext.keys().map(|k| patch::Operation {
                        op: patch::OpKind::Remove,
                        path: Some(format!("{ROSTER_USER}:{k}")),
                        value: None,
                    }));
                }
            }
            kind => out.push(patch::Operation {
                op: kind,
                path: None,
                value: op.value.map(|v| json!({ ROSTER_USER: v })),
            }),
        }
    }
    out
}

/// Deletes a user for good (`delete-user`); their connections close.
/// Identity providers that deprovision softly send `active: false` first.
#[utoipa::path(delete, path = "/v1/accounts/{accountId}/scim/v2/Users/{id}", tag = TAG,
    params(("accountId" = Uuid, Path), ("id" = String, Path)), security(("bearer" = [])),
    responses((status = 204, description = "Deleted"), (status = 404, description = "No such user"),
        (status = 412, description = "Stale If-Match")))]
async fn delete(
    State(app): State<App>,
    ScimWriter(caller): ScimWriter,
    ScimId(id): ScimId,
    headers: HeaderMap,
) -> Result<Response, ScimError> {
    let current = load(&app, &caller, &id).await?;
    if headers.contains_key(axum::http::header::IF_MATCH) {
        let settings = app.settings(caller.account_id).await?;
        check_if_match(
            &headers,
            &to_scim(&current, &base(&app, caller.account_id), &settings),
        )?;
    }
    users::delete(&app, &caller, current.id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
