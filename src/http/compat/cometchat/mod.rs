//! CometChat's REST API v3 at `/compat/cometchat/{accountId}/v3/…`, so that
//! a server written against CometChat changes its base URL and nothing
//! else. This file holds what every route shares: the `apikey` credential
//! (an account API key; nothing else opens these routes), the JSON body and
//! query readers, page numbers, and the answer and error shapes (`{data}`,
//! `{error: {message, devMessage, source, code, details?}}`) with
//! CometChat's codes. `users` and `roles` hold the routes; docs/compat.md
//! lists every route and what differs.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use utoipa_axum::router::OpenApiRouter;
use uuid::Uuid;

use super::super::envelope::ApiError;
use super::super::extract::{Caller, CallerKind, authenticate_as, guarded, is_json, parse_json};
use crate::app::App;

mod roles;
mod users;

/// The OpenAPI tag of these routes.
pub const TAG: &str = "compat: CometChat";

pub fn routes() -> OpenApiRouter<App> {
    OpenApiRouter::new()
        .merge(users::routes())
        .merge(roles::routes())
}

/// `ERR_API_NOT_FOUND`: no such endpoint, or not with this method.
pub fn unknown_route(status: StatusCode) -> Response {
    CcError::new(
        status,
        "ERR_API_NOT_FOUND",
        "The API endpoint does not exist, or does not take this HTTP method.",
    )
    .into_response()
}

/// A refusal in CometChat's shape, with its status.
#[derive(Debug)]
pub struct CcError {
    status: StatusCode,
    code: &'static str,
    message: String,
    dev_message: Option<String>,
    details: Option<Value>,
    retry_after: Option<u64>,
}

impl CcError {
    pub(super) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            dev_message: None,
            details: None,
            retry_after: None,
        }
    }

    fn dev(mut self, dev_message: impl Into<String>) -> Self {
        self.dev_message = Some(dev_message.into());
        self
    }

    /// 400 `ERR_BAD_REQUEST`: "Failed to validate the data sent with the
    /// request.", each field's reasons in `details`.
    pub(super) fn invalid(fields: Vec<(String, String)>) -> Self {
        let mut details = serde_json::Map::new();
        for (field, why) in fields {
            let entry = details.entry(field).or_insert_with(|| json!([]));
            if let Some(list) = entry.as_array_mut() {
                list.push(Value::String(why));
            }
        }
        let mut e = Self::new(
            StatusCode::BAD_REQUEST,
            "ERR_BAD_REQUEST",
            "Failed to validate the data sent with the request.",
        );
        e.details = Some(Value::Object(details));
        e
    }

    /// `ERR_BAD_REQUEST` naming every field of `fields` not given.
    pub(super) fn required(fields: &[(&str, bool)]) -> Result<(), Self> {
        let missing: Vec<(String, String)> = fields
            .iter()
            .filter(|(_, given)| !given)
            .map(|(f, _)| ((*f).to_owned(), format!("The {f} field is required.")))
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(Self::invalid(missing))
        }
    }

    /// One field's reason, as [`invalid`](Self::invalid).
    pub(super) fn field(field: &str, why: impl Into<String>) -> Self {
        Self::invalid(vec![(field.to_owned(), why.into())])
    }

    /// 404 `ERR_UID_NOT_FOUND` in CometChat's words.
    pub(super) fn no_uid(uid: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "ERR_UID_NOT_FOUND",
            format!(
                "The UID {uid} does not exist, please make sure you have created a user with UID {uid}."
            ),
        )
        .dev(format!(
            "The UID {uid} does not exist, so please make sure you have created a user with UID {uid}."
        ))
    }

    /// 400 `ERR_UID_ALREADY_EXISTS`.
    pub(super) fn uid_taken(uid: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "ERR_UID_ALREADY_EXISTS",
            format!(
                "The uid {uid} already exists. Please use another uid or try after permanently deleting the user."
            ),
        )
    }

    /// 404 `ERR_ROLE_NOT_FOUND`.
    pub(super) fn no_role(role: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "ERR_ROLE_NOT_FOUND",
            format!(
                "The role {role} does not exist. Please use correct role or use create role API."
            ),
        )
    }
}

impl IntoResponse for CcError {
    fn into_response(self) -> Response {
        let mut error = json!({
            "message": self.message,
            "devMessage": self.dev_message.unwrap_or_else(|| self.message.clone()),
            "source": "chat-api",
        });
        if let Some(d) = self.details {
            error["details"] = d;
        }
        error["code"] = json!(self.code);
        let mut res = (self.status, axum::Json(json!({ "error": error }))).into_response();
        if let Some(secs) = self.retry_after {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        res
    }
}

/// CometChat's name of a Roster field, in `details`: its own names for
/// the fields it calls otherwise, camelCase for the rest.
fn cc_field(field: &str) -> String {
    let (root, rest) = match field.find(['.', '[']) {
        Some(i) => field.split_at(i),
        None => (field, ""),
    };
    let root = match root {
        "custom_id" => "uid".to_owned(),
        "profile_picture" => "avatar".to_owned(),
        "roles" => "role".to_owned(),
        other => {
            let mut out = String::with_capacity(other.len());
            let mut upper = false;
            for c in other.chars() {
                match c {
                    '_' => upper = true,
                    c if upper => {
                        out.extend(c.to_uppercase());
                        upper = false;
                    }
                    c => out.push(c),
                }
            }
            out
        }
    };
    format!("{root}{rest}")
}

/// Roster's refusal in CometChat's words: input is `ERR_BAD_REQUEST` with
/// the field's reason, a refused key `AUTH_ERR_APIKEY_NOT_FOUND`, a missing
/// permission (a `read` key writing) `AUTH_ERR_NO_ACCESS`, another account
/// `AUTH_ERR_INVALID_APPID` 404.
impl From<ApiError> for CcError {
    fn from(e: ApiError) -> Self {
        let (status, code) = match (e.status, e.code) {
            (StatusCode::UNAUTHORIZED, _) => (e.status, "AUTH_ERR_APIKEY_NOT_FOUND"),
            (StatusCode::FORBIDDEN, _) => (e.status, "AUTH_ERR_NO_ACCESS"),
            (StatusCode::NOT_FOUND, _) if e.message.starts_with("account") => {
                (e.status, "AUTH_ERR_INVALID_APPID")
            }
            (StatusCode::NOT_FOUND, _) if e.message.starts_with("role") => {
                (e.status, "ERR_ROLE_NOT_FOUND")
            }
            (StatusCode::NOT_FOUND, _) if e.message.starts_with("token") => {
                (e.status, "ERR_AUTH_TOKEN_NOT_FOUND")
            }
            (StatusCode::NOT_FOUND, _) if e.message.starts_with("user") => {
                (e.status, "ERR_UID_NOT_FOUND")
            }
            (StatusCode::TOO_MANY_REQUESTS, _) => (e.status, "ERR_TOO_MANY_REQUESTS"),
            (StatusCode::PAYLOAD_TOO_LARGE, _) => (e.status, "ERR_BAD_REQUEST"),
            (StatusCode::BAD_REQUEST | StatusCode::CONFLICT, _) => {
                if let Some(f) = e.field.as_deref() {
                    let mut out = Self::field(&cc_field(f), e.message.clone());
                    if e.status == StatusCode::CONFLICT {
                        out.message = e.message;
                    }
                    return out;
                }
                (StatusCode::BAD_REQUEST, "ERR_BAD_REQUEST")
            }
            (s, _) if s.is_server_error() => {
                return Self::new(
                    s,
                    "ERR_OPERATION_FAILED",
                    "An error occurred while performing this operation. Please try again.",
                );
            }
            (s, _) => (s, "ERR_BAD_REQUEST"),
        };
        let mut out = Self::new(status, code, e.message);
        out.retry_after = e.retry_after;
        out
    }
}

impl From<crate::service::Error> for CcError {
    fn from(e: crate::service::Error) -> Self {
        ApiError::from(e).into()
    }
}

pub(super) type CcResult = Result<Response, CcError>;

/// `{data}` with 200.
pub(super) fn data(body: Value) -> Response {
    (StatusCode::OK, axum::Json(json!({ "data": body }))).into_response()
}

/// `{data: {success: true, message}}`.
pub(super) fn done(message: String) -> Response {
    data(json!({ "success": true, "message": message }))
}

/// The account in the path; anything that is not an account id is 404.
fn account_of(parts: &Parts) -> Result<Uuid, CcError> {
    parts
        .uri
        .path()
        .strip_prefix("/compat/cometchat/")
        .and_then(|rest| rest.split('/').next())
        .and_then(|s| Uuid::try_parse(s).ok())
        .ok_or_else(|| ApiError::not_found("account").into())
}

/// The account API key of the `apikey` header, on the account of the path.
/// A user's token is no key here (CometChat's REST API is for servers).
/// Refused keys count against the address, as on the native routes.
pub(super) struct CcCaller(pub Caller);

impl FromRequestParts<App> for CcCaller {
    type Rejection = CcError;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, Self::Rejection> {
        let account = account_of(parts)?;
        let key = parts
            .headers
            .get("apikey")
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned);
        let Some(key) = key else {
            return Err(CcError::new(
                StatusCode::UNAUTHORIZED,
                "AUTH_ERR_EMPTY_APIKEY",
                "The apikey header is empty: send one of the app's API keys.",
            ));
        };
        let mut caller = guarded(app, parts, |parts| async move {
            let caller = authenticate_as(parts, app, account, &key).await?;
            match caller.kind {
                CallerKind::ApiKey { .. } => Ok(caller),
                _ => Err(ApiError::unauthorized(
                    "the apikey header takes one of the app's API keys, not a user's token",
                )),
            }
        })
        .await?;
        caller.surface = Some("cometchat");
        Ok(CcCaller(caller))
    }
}

/// A JSON object body parsed into `T` (an empty body is `{}`), refused in
/// CometChat's shape.
pub(super) struct CcJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for CcJson<T> {
    type Rejection = CcError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let json = is_json(req.headers());
        let bytes = Bytes::from_request(req, state).await.map_err(|rej| {
            CcError::from(if rej.status() == StatusCode::PAYLOAD_TOO_LARGE {
                super::super::extract::payload_too_large()
            } else {
                ApiError::bad_request("the body could not be read")
            })
        })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return parse_json(b"{}").map(CcJson).map_err(CcError::from);
        }
        if !json {
            return Err(CcError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "ERR_BAD_REQUEST",
                "the body must be JSON, sent with Content-Type: application/json",
            ));
        }
        parse_json(&bytes).map(CcJson).map_err(CcError::from)
    }
}

/// The query string: every name with every value it was sent with.
pub(super) struct CcQuery(Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for CcQuery {
    type Rejection = CcError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let pairs = url::form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
        Ok(CcQuery(pairs))
    }
}

impl CcQuery {
    /// A parameter's value (the last, if it is repeated).
    pub(super) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, v)| k == name && !v.is_empty())
            .map(|(_, v)| v.as_str())
    }

    /// A `true`/`false` (or `1`/`0`) parameter.
    pub(super) fn flag(&self, name: &str) -> Result<bool, CcError> {
        match self.get(name) {
            None | Some("false" | "0") => Ok(false),
            Some("true" | "1") => Ok(true),
            Some(_) => Err(CcError::field(
                name,
                format!("The {name} field must be true or false."),
            )),
        }
    }

    /// A list: comma-separated (`tags=a,b`), repeated (`tags=a&tags=b`),
    /// or as `tags[]=a` / `tags[0]=a`; each value once, at most `max`.
    pub(super) fn list(&self, name: &str, max: usize) -> Result<Vec<String>, CcError> {
        let mut out: Vec<String> = Vec::new();
        for (k, v) in &self.0 {
            let ours = k == name
                || k.strip_prefix(name)
                    .and_then(|r| r.strip_prefix('['))
                    .and_then(|r| r.strip_suffix(']'))
                    .is_some_and(|i| i.chars().all(|c| c.is_ascii_digit()));
            if !ours {
                continue;
            }
            for item in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                if !out.iter().any(|o| o == item) {
                    out.push(item.to_owned());
                }
            }
        }
        if out.len() > max {
            return Err(CcError::field(
                name,
                format!("The {name} may not have more than {max} items."),
            ));
        }
        Ok(out)
    }

    /// `page` (from 1) and `perPage` (1 to `max`, default 100).
    pub(super) fn page(&self, max: u64) -> Result<PageNo, CcError> {
        let number = |name: &str, default: u64, max: u64| match self.get(name) {
            None => Ok(default),
            Some(v) => match v.parse::<u64>() {
                Ok(n) if (1..=max).contains(&n) => Ok(n),
                _ => Err(CcError::field(
                    name,
                    format!("The {name} must be a whole number from 1 to {max}."),
                )),
            },
        };
        Ok(PageNo {
            per_page: number("perPage", 100, max)?,
            page: number("page", 1, u64::from(u32::MAX))?,
        })
    }
}

/// A page of a list by number, as CometChat asks for one.
#[derive(Debug, Clone, Copy)]
pub(super) struct PageNo {
    pub per_page: u64,
    pub page: u64,
}

impl PageNo {
    pub(super) fn offset(self) -> u64 {
        self.page.saturating_sub(1).saturating_mul(self.per_page)
    }

    /// `{data, meta: {pagination: {total, count, per_page, current_page,
    /// total_pages}}}`.
    pub(super) fn answer(self, items: Vec<Value>, total: u64) -> Response {
        let pages = total.div_ceil(self.per_page).max(1);
        let count = items.len();
        (
            StatusCode::OK,
            axum::Json(json!({
                "data": items,
                "meta": { "pagination": {
                    "total": total,
                    "count": count,
                    "per_page": self.per_page,
                    "current_page": self.page,
                    "total_pages": pages,
                }},
            })),
        )
            .into_response()
    }

    /// This page of a list held whole.
    pub(super) fn window(self, all: Vec<Value>) -> Response {
        let total = all.len() as u64;
        let items = all
            .into_iter()
            .skip(usize::try_from(self.offset()).unwrap_or(usize::MAX))
            .take(usize::try_from(self.per_page).unwrap_or(usize::MAX))
            .collect();
        self.answer(items, total)
    }
}

/// A timestamp as CometChat answers one: whole seconds since 1970.
pub(super) fn unix(at: &str) -> Option<i64> {
    ::time::OffsetDateTime::parse(at, &::time::format_description::well_known::Rfc3339)
        .ok()
        .map(|t| t.unix_timestamp())
}

/// `[a-z0-9_-]`, at most `max`: CometChat's uid and role alphabet, after
/// lowercasing (as CometChat lowercases them).
pub(super) fn alpha_dash(field: &str, raw: &str, max: usize) -> Result<String, CcError> {
    let value = raw.to_lowercase();
    if value.is_empty() {
        return Err(CcError::field(
            field,
            format!("The {field} field is required."),
        ));
    }
    if value.chars().count() > max {
        return Err(CcError::field(
            field,
            format!("The {field} may not be greater than {max} characters."),
        ));
    }
    if !value
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
    {
        return Err(CcError::field(
            field,
            format!("The {field} may only contain letters, numbers, dashes and underscores."),
        ));
    }
    Ok(value)
}
