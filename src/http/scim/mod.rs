//! SCIM 2.0 (RFC 7643/7644) at `/v1/accounts/{accountId}/scim/v2`, so that
//! an identity provider (Okta, Entra ID, Google, JumpCloud) provisions and
//! deprovisions an account's users and spaces. A thin adapter: Users are
//! `service::users`, Groups are `service::spaces` and their members, and
//! every change writes the events the native routes write. This file holds
//! what every route shares: the credential (an account API key as a
//! bearer; `read` keys read only), the `application/scim+json` body and
//! answers, errors in RFC 7644 §3.12's shape, list windows, ETags and
//! attribute projection. docs/scim.md has the attribute mapping.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{Map, Value, json};
use utoipa_axum::router::OpenApiRouter;
use uuid::Uuid;

use super::envelope::ApiError;
use super::extract::{Caller, CallerKind, authenticate_as, guarded, is_json};
use crate::app::App;
use crate::domain::account::Scope;

mod discovery;
pub mod filter;
mod groups;
pub mod patch;
mod schema;
mod users;

/// The OpenAPI tag of these routes.
pub const TAG: &str = "scim";
/// The media type of every answer (RFC 7644 §8.1).
pub const MEDIA_TYPE: &str = "application/scim+json";
const ERROR: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
const LIST: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
/// The most resources one list answers (`filter.maxResults`).
pub const MAX_RESULTS: u32 = 200;

pub fn routes() -> OpenApiRouter<App> {
    OpenApiRouter::new()
        .merge(discovery::routes())
        .merge(users::routes())
        .merge(groups::routes())
}

/// A path under the SCIM prefix that no route serves, or a method a route
/// does not take, in SCIM's error shape.
pub fn unknown_route(path: &str, status: StatusCode) -> Option<Response> {
    let rest = path.strip_prefix("/v1/accounts/")?;
    let (_, rest) = rest.split_once('/')?;
    (rest == "scim/v2" || rest.starts_with("scim/v2/")).then(|| {
        let detail = if status == StatusCode::METHOD_NOT_ALLOWED {
            "this endpoint does not take that method"
        } else {
            "no such endpoint"
        };
        ScimError::new(status, None, detail).into_response()
    })
}

/// The base URL of an account's SCIM service: `{public_url}/v1/accounts/{id}/scim/v2`.
pub fn base(app: &App, account: Uuid) -> String {
    format!(
        "{}/v1/accounts/{account}/scim/v2",
        crate::service::public_base(app)
    )
}

/// A refusal in RFC 7644 §3.12's shape.
#[derive(Debug)]
pub struct ScimError {
    status: StatusCode,
    scim_type: Option<&'static str>,
    detail: String,
    retry_after: Option<u64>,
}

impl ScimError {
    pub fn new(
        status: StatusCode,
        scim_type: Option<&'static str>,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            status,
            scim_type,
            detail: detail.into(),
            retry_after: None,
        }
    }

    /// 400 with a `scimType`.
    pub fn bad(scim_type: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, Some(scim_type), detail)
    }

    pub fn not_found(what: &str, id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            None,
            format!("{what} {id} not found"),
        )
    }
}

impl From<patch::PatchError> for ScimError {
    fn from(e: patch::PatchError) -> Self {
        Self::bad(e.scim_type, e.detail)
    }
}

impl IntoResponse for ScimError {
    fn into_response(self) -> Response {
        let mut body = json!({
            "schemas": [ERROR],
            "status": self.status.as_u16().to_string(),
            "detail": self.detail,
        });
        if let Some(t) = self.scim_type {
            body["scimType"] = json!(t);
        }
        let mut res = answer(self.status, &body);
        if let Some(secs) = self.retry_after {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            res.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"roster-scim\""),
            );
        }
        res
    }
}

/// SCIM's name of a Roster field in a refusal's detail.
fn scim_field(field: &str) -> String {
    let root = field.split(['.', '[']).next().unwrap_or(field);
    let name = match root {
        "username" => "userName",
        "name" => "displayName",
        "nickname" => "nickName",
        "email" => "emails",
        "phone" => "phoneNumbers",
        "profile_picture" => "photos",
        "link" => "profileUrl",
        "custom_id" => "externalId",
        "roles" => "roles",
        "custom_fields" => {
            return format!(
                "{}:{}",
                schema::ROSTER_USER,
                field.strip_prefix("custom_fields.").unwrap_or(field)
            );
        }
        "bio" => return format!("{}:{root}", schema::ROSTER_USER),
        other => other,
    };
    name.to_owned()
}

/// Roster's refusal in SCIM's words: a clash is `uniqueness` 409, bad input
/// `invalidValue` naming the SCIM attribute, a refused key 401, a `read`
/// key writing 403, another account's object 404.
impl From<ApiError> for ScimError {
    fn from(e: ApiError) -> Self {
        let detail = match e.field.as_deref() {
            Some(f) if e.status.is_client_error() => format!("{}: {}", scim_field(f), e.message),
            _ => e.message.clone(),
        };
        let mut out = match e.status {
            StatusCode::CONFLICT => Self::new(e.status, Some("uniqueness"), detail),
            StatusCode::BAD_REQUEST => Self::bad("invalidValue", detail),
            StatusCode::NOT_FOUND if e.field.is_some() => Self::bad("invalidValue", detail),
            s if s.is_server_error() => {
                Self::new(s, None, "the server could not do this; try again")
            }
            s => Self::new(s, None, detail),
        };
        out.retry_after = e.retry_after;
        out
    }
}

impl From<crate::service::Error> for ScimError {
    fn from(e: crate::service::Error) -> Self {
        ApiError::from(e).into()
    }
}

impl From<crate::store::StoreError> for ScimError {
    fn from(e: crate::store::StoreError) -> Self {
        crate::service::Error::from(e).into()
    }
}

pub type ScimResult = Result<Response, ScimError>;

/// A JSON answer with SCIM's media type.
pub fn answer(status: StatusCode, body: &Value) -> Response {
    let mut res = (status, axum::Json(body)).into_response();
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(MEDIA_TYPE));
    res
}

/// A resource answered with its `ETag` (and `Location` when created).
pub fn resource(status: StatusCode, body: &Value) -> Response {
    let mut res = answer(status, body);
    let meta = &body["meta"];
    if let Some(v) = meta["version"]
        .as_str()
        .and_then(|v| HeaderValue::from_str(v).ok())
    {
        res.headers_mut().insert(header::ETAG, v);
    }
    if status == StatusCode::CREATED
        && let Some(l) = meta["location"]
            .as_str()
            .and_then(|v| HeaderValue::from_str(v).ok())
    {
        res.headers_mut().insert(header::LOCATION, l);
    }
    res
}

/// A resource's version: a weak ETag over everything it answers but `meta`.
pub fn version_of(body: &Value) -> String {
    let mut copy = body.clone();
    if let Some(o) = copy.as_object_mut() {
        o.remove("meta");
    }
    let bytes = serde_json::to_vec(&copy).unwrap_or_default();
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &bytes);
    let hex: String = digest.as_ref()[..12]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("W/\"{hex}\"")
}

/// Sets `meta.version` from the rest of the resource.
pub fn stamp(body: &mut Value) {
    let v = version_of(body);
    body["meta"]["version"] = json!(v);
}

/// Refuses with 412 unless `If-Match` (when sent) names the current version.
pub fn check_if_match(headers: &HeaderMap, current: &Value) -> Result<(), ScimError> {
    let Some(wanted) = headers.get(header::IF_MATCH).and_then(|v| v.to_str().ok()) else {
        return Ok(());
    };
    let version = current["meta"]["version"].as_str().unwrap_or_default();
    if etag_listed(wanted, version) {
        Ok(())
    } else {
        Err(ScimError::new(
            StatusCode::PRECONDITION_FAILED,
            None,
            format!("the resource has changed: its version is {version}"),
        ))
    }
}

/// 304 when `If-None-Match` names the current version.
pub fn not_modified(headers: &HeaderMap, current: &Value) -> Option<Response> {
    let wanted = headers.get(header::IF_NONE_MATCH)?.to_str().ok()?;
    let version = current["meta"]["version"].as_str()?;
    etag_listed(wanted, version).then(|| {
        let mut res = StatusCode::NOT_MODIFIED.into_response();
        if let Ok(v) = HeaderValue::from_str(version) {
            res.headers_mut().insert(header::ETAG, v);
        }
        res
    })
}

/// Does a list of entity tags (weakly compared, `*` for any) name `version`?
fn etag_listed(list: &str, version: &str) -> bool {
    let bare = |t: &str| {
        t.trim()
            .trim_start_matches("W/")
            .trim_matches('"')
            .to_owned()
    };
    list.split(',')
        .any(|t| t.trim() == "*" || bare(t) == bare(version))
}

/// The account API key of `Authorization: Bearer`, on the account of the
/// path. A user's token is no credential here. Refused keys count against
/// the address, as on the native routes.
pub struct ScimCaller(pub Caller);

impl FromRequestParts<App> for ScimCaller {
    type Rejection = ScimError;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, Self::Rejection> {
        let account = parts
            .uri
            .path()
            .strip_prefix("/v1/accounts/")
            .and_then(|rest| rest.split('/').next())
            .and_then(|s| Uuid::try_parse(s).ok())
            .ok_or_else(|| ScimError::not_found("account", "in the path"))?;
        let presented = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, rest)| rest.trim().to_owned())
            .filter(|v| !v.is_empty());
        let Some(presented) = presented else {
            return Err(ScimError::new(
                StatusCode::UNAUTHORIZED,
                None,
                "send one of the account's API keys as Authorization: Bearer <key>",
            ));
        };
        let mut caller = guarded(app, parts, |parts| async move {
            let caller = authenticate_as(parts, app, account, &presented).await?;
            match caller.kind {
                CallerKind::ApiKey { .. } => Ok(caller),
                _ => Err(ApiError::unauthorized(
                    "SCIM takes one of the account's API keys, not a user's token",
                )),
            }
        })
        .await?;
        caller.surface = Some("scim");
        Ok(ScimCaller(caller))
    }
}

/// A [`ScimCaller`] that may write: a read-only key is refused (403)
/// before the request is looked at, so a refusal says why and not what
/// else was wrong with it.
pub struct ScimWriter(pub Caller);

impl FromRequestParts<App> for ScimWriter {
    type Rejection = ScimError;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, Self::Rejection> {
        let ScimCaller(caller) = ScimCaller::from_request_parts(parts, app).await?;
        if matches!(
            caller.kind,
            CallerKind::ApiKey {
                scope: Scope::Read,
                ..
            }
        ) {
            return Err(ScimError::new(
                StatusCode::FORBIDDEN,
                None,
                "a read-only API key reads; SCIM writes need a full key",
            ));
        }
        Ok(ScimWriter(caller))
    }
}

/// The `{id}` of the path, as sent (an id naming nothing is 404).
pub struct ScimId(pub String);

impl<S: Send + Sync> FromRequestParts<S> for ScimId {
    type Rejection = ScimError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Path(all) = axum::extract::Path::<
            std::collections::HashMap<String, String>,
        >::from_request_parts(parts, state)
        .await
        .map_err(|_| ScimError::new(StatusCode::NOT_FOUND, None, "no such resource"))?;
        Ok(ScimId(all.get("id").cloned().unwrap_or_default()))
    }
}

/// A JSON object body, sent as `application/scim+json` or `application/json`.
pub struct ScimBody(pub Map<String, Value>);

impl<S: Send + Sync> FromRequest<S> for ScimBody {
    type Rejection = ScimError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let json = is_json(req.headers());
        let bytes = Bytes::from_request(req, state).await.map_err(|rej| {
            if rej.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ScimError::from(super::extract::payload_too_large())
            } else {
                ScimError::bad("invalidSyntax", "the body could not be read")
            }
        })?;
        if !json {
            return Err(ScimError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                None,
                "send the body as application/scim+json (or application/json)",
            ));
        }
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(o)) => Ok(ScimBody(o)),
            Ok(_) => Err(ScimError::bad(
                "invalidSyntax",
                "the body must be a JSON object",
            )),
            Err(e) => Err(ScimError::bad(
                "invalidSyntax",
                format!("the body is not JSON: {e}"),
            )),
        }
    }
}

/// The query string: names compared case-insensitively, as IdPs vary.
pub struct ScimQuery(Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for ScimQuery {
    type Rejection = ScimError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(ScimQuery(
            url::form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes())
                .into_owned()
                .collect(),
        ))
    }
}

impl ScimQuery {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The list parameters of RFC 7644 §3.4.2 (and a `.search` body's).
    pub fn list(&self) -> Result<ListParams, ScimError> {
        ListParams::read(|name| self.get(name).map(|v| Value::String(v.to_owned())))
    }

    /// `attributes` / `excludedAttributes` of a single resource's answer.
    pub fn projection(&self) -> Projection {
        Projection::from_lists(self.get("attributes"), self.get("excludedAttributes"))
    }
}

/// A list request: filter, order, window (`startIndex` from 1, `count`
/// from 0 to [`MAX_RESULTS`], default [`MAX_RESULTS`]) and projection.
pub struct ListParams {
    pub filter: Option<filter::Filter>,
    pub sort_by: Option<filter::AttrPath>,
    pub descending: bool,
    pub start_index: u64,
    pub count: u32,
    pub projection: Projection,
}

impl ListParams {
    fn read(get: impl Fn(&str) -> Option<Value>) -> Result<Self, ScimError> {
        let text = |name: &str| -> Result<Option<String>, ScimError> {
            match get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
                Some(Value::String(s)) => Ok(Some(s)),
                Some(Value::Array(a)) => Ok(Some(
                    a.iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(","),
                )),
                Some(_) => Err(ScimError::bad(
                    "invalidValue",
                    format!("{name} must be text"),
                )),
            }
        };
        let number = |name: &str| -> Result<Option<i64>, ScimError> {
            match get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::Number(n)) => n.as_i64().map(Some).ok_or_else(|| {
                    ScimError::bad("invalidValue", format!("{name} must be a whole number"))
                }),
                Some(Value::String(s)) => s.trim().parse::<i64>().map(Some).map_err(|_| {
                    ScimError::bad("invalidValue", format!("{name} must be a whole number"))
                }),
                Some(_) => Err(ScimError::bad(
                    "invalidValue",
                    format!("{name} must be a whole number"),
                )),
            }
        };
        let filter = text("filter")?
            .map(|f| filter::parse(&f).map_err(|e| ScimError::bad("invalidFilter", e.0)))
            .transpose()?;
        let sort_by = text("sortBy")?
            .map(|s| match filter::parse_path(&s) {
                Ok(p) if p.filter.is_none() => Ok(p.attr),
                _ => Err(ScimError::bad(
                    "invalidValue",
                    format!("sortBy {s:?} is not an attribute path"),
                )),
            })
            .transpose()?;
        let descending = match text("sortOrder")?.as_deref() {
            None => false,
            Some(o) if o.eq_ignore_ascii_case("ascending") => false,
            Some(o) if o.eq_ignore_ascii_case("descending") => true,
            Some(o) => {
                return Err(ScimError::bad(
                    "invalidValue",
                    format!("sortOrder must be ascending or descending, not {o:?}"),
                ));
            }
        };
        // RFC 7644 §3.4.2.4: below 1 is 1; a negative count is 0; the
        // server answers at most its maximum.
        let start_index = u64::try_from(number("startIndex")?.unwrap_or(1).max(1)).unwrap_or(1);
        let count = number("count")?.map_or(i64::from(MAX_RESULTS), |c| {
            c.clamp(0, i64::from(MAX_RESULTS))
        });
        Ok(Self {
            filter,
            sort_by,
            descending,
            start_index,
            count: u32::try_from(count).unwrap_or(MAX_RESULTS),
            projection: Projection::from_lists(
                text("attributes")?.as_deref(),
                text("excludedAttributes")?.as_deref(),
            ),
        })
    }

    /// A `POST …/.search` body (RFC 7644 §3.4.3).
    pub fn from_search(body: &Map<String, Value>) -> Result<Self, ScimError> {
        if let Some(s) = body.get("schemas")
            && !s.as_array().is_some_and(|a| {
                a.iter()
                    .any(|v| v == "urn:ietf:params:scim:api:messages:2.0:SearchRequest")
            })
        {
            return Err(ScimError::bad(
                "invalidSyntax",
                "schemas must name urn:ietf:params:scim:api:messages:2.0:SearchRequest",
            ));
        }
        Self::read(|name| {
            body.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
        })
    }

    /// A ListResponse of this window.
    pub fn answer(&self, items: Vec<Value>, total: u64) -> Response {
        let resources: Vec<Value> = items
            .into_iter()
            .map(|r| self.projection.apply(r))
            .collect();
        let mut body = json!({
            "schemas": [LIST],
            "totalResults": total,
            "startIndex": self.start_index,
            "itemsPerPage": resources.len(),
        });
        body["Resources"] = Value::Array(resources);
        answer(StatusCode::OK, &body)
    }
}

/// `attributes` / `excludedAttributes` (RFC 7644 §3.9): paths such as
/// `userName`, `name.formatted` or a full URN path. `id` and `schemas` are
/// always answered.
#[derive(Debug, Default)]
pub struct Projection {
    only: Vec<String>,
    except: Vec<String>,
}

impl Projection {
    fn from_lists(only: Option<&str>, except: Option<&str>) -> Self {
        let split = |s: Option<&str>| {
            s.unwrap_or("")
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect::<Vec<_>>()
        };
        Self {
            only: split(only),
            except: split(except),
        }
    }

    /// Is `attr` (a top-level attribute) left out of the answer?
    pub fn excludes(&self, attr: &str) -> bool {
        let named = |p: &String| Self::parts(p).1.eq_ignore_ascii_case(attr);
        self.except
            .iter()
            .any(|p| named(p) && Self::parts(p).2.is_none())
            || (!self.only.is_empty() && !self.only.iter().any(named))
    }

    /// `(urn, attr, sub)` of a path, lowercased.
    fn parts(path: &str) -> (Option<String>, String, Option<String>) {
        let lower = path.to_ascii_lowercase();
        let (urn, rest) = if lower.starts_with("urn:") {
            match lower.rfind(':') {
                Some(i) => (Some(lower[..i].to_owned()), lower[i + 1..].to_owned()),
                None => (None, lower.clone()),
            }
        } else {
            (None, lower.clone())
        };
        match rest.split_once('.') {
            Some((a, s)) => (urn, a.to_owned(), Some(s.to_owned())),
            None => (urn, rest, None),
        }
    }

    pub fn apply(&self, mut resource: Value) -> Value {
        let Some(o) = resource.as_object_mut() else {
            return resource;
        };
        if !self.only.is_empty() {
            let wanted: Vec<_> = self.only.iter().map(|p| Self::parts(p)).collect();
            let keep = |scope: Option<&str>, key: &str, v: &mut Value| -> bool {
                let mut kept = false;
                let mut subs: Vec<&str> = Vec::new();
                for (urn, attr, sub) in &wanted {
                    let in_scope = match (urn.as_deref(), scope) {
                        (None, _) => true,
                        (Some(u), Some(s)) => u == s,
                        (Some(u), None) => u.ends_with(":user") || u.ends_with(":group"),
                    };
                    if in_scope && attr.eq_ignore_ascii_case(key) {
                        match sub {
                            None => return true,
                            Some(s) => {
                                kept = true;
                                subs.push(s);
                            }
                        }
                    }
                }
                if kept {
                    let trim = |item: &mut Value| {
                        if let Some(io) = item.as_object_mut() {
                            io.retain(|k, _| subs.iter().any(|s| s.eq_ignore_ascii_case(k)));
                        }
                    };
                    match v {
                        Value::Array(items) => items.iter_mut().for_each(trim),
                        other => trim(other),
                    }
                }
                kept
            };
            o.retain(|k, v| {
                if matches!(k.as_str(), "id" | "schemas") {
                    return true;
                }
                if k.starts_with("urn:") {
                    let scope = k.to_ascii_lowercase();
                    if wanted.iter().any(|(u, a, _)| u.is_none() && *a == scope)
                        || self.only.iter().any(|p| p.eq_ignore_ascii_case(k))
                    {
                        return true;
                    }
                    if let Some(ext) = v.as_object_mut() {
                        ext.retain(|ek, ev| keep(Some(&scope), ek, ev));
                        return !ext.is_empty();
                    }
                    return false;
                }
                keep(None, k, v)
            });
        }
        for path in &self.except {
            let (urn, attr, sub) = Self::parts(path);
            if matches!(attr.as_str(), "id" | "schemas") && sub.is_none() {
                continue;
            }
            let target = match &urn {
                Some(u) if !is_core(u) => {
                    let key = o.keys().find(|k| k.eq_ignore_ascii_case(u)).cloned();
                    key.and_then(|k| o.get_mut(&k))
                        .and_then(Value::as_object_mut)
                }
                _ => Some(&mut *o),
            };
            let Some(target) = target else { continue };
            let key = target
                .keys()
                .find(|k| k.eq_ignore_ascii_case(&attr))
                .cloned();
            let Some(key) = key else { continue };
            match sub {
                None => {
                    target.remove(&key);
                }
                Some(s) => {
                    let strip = |item: &mut Value| {
                        if let Some(io) = item.as_object_mut() {
                            io.retain(|k, _| !k.eq_ignore_ascii_case(&s));
                        }
                    };
                    match target.get_mut(&key) {
                        Some(Value::Array(items)) => items.iter_mut().for_each(strip),
                        Some(other) => strip(other),
                        None => {}
                    }
                }
            }
        }
        resource
    }
}

/// Whether a (lowercased) schema URN is a core one, whose attributes sit
/// at the top of a resource rather than under the URN.
fn is_core(urn: &str) -> bool {
    urn.ends_with(":core:2.0:group") || (urn.contains(":core:") && urn.ends_with(":user"))
}
