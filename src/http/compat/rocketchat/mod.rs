//! Rocket.Chat's REST API (`/api/v1/…`) at
//! `/compat/rocketchat/{accountId}/api/v1/…`, so that a Rocket.Chat client
//! library pointed at `…/compat/rocketchat/{accountId}` works unmodified.
//! This file holds what every route shares: the `X-Auth-Token` +
//! `X-User-Id` credential, the JSON body and query readers, and the answer
//! and error shapes (`{success: true, …}`, `{success: false, error,
//! errorType}`) with Rocket.Chat's statuses. `users` and `rooms` hold the
//! routes. docs/compat.md lists every route and what differs.

use std::collections::HashMap;

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
use super::super::extract::{Caller, authenticate_as, guarded, is_json, parse_json};
use crate::app::App;

mod rooms;
mod users;

/// The OpenAPI tag of these routes.
pub const TAG: &str = "compat: Rocket.Chat";

pub fn routes() -> OpenApiRouter<App> {
    OpenApiRouter::new()
        .merge(users::routes())
        .merge(rooms::routes())
}

/// A refusal in Rocket.Chat's shape, with its status.
#[derive(Debug)]
pub struct RcError {
    status: StatusCode,
    body: Value,
    retry_after: Option<u64>,
}

impl RcError {
    /// `{success: false, error: "<reason> [<code>]", errorType: <code>}`:
    /// a Meteor error as Rocket.Chat's API answers it.
    fn new(status: StatusCode, code: &str, reason: &str) -> Self {
        Self {
            status,
            body: json!({
                "success": false,
                "error": format!("{reason} [{code}]"),
                "errorType": code,
            }),
            retry_after: None,
        }
    }

    /// 400 with `errorType: error-invalid-params`, naming the field.
    pub(super) fn invalid(field: &str, reason: &str) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "error-invalid-params", reason)
            .with_details(json!({ "field": field }))
    }

    fn with_details(mut self, details: Value) -> Self {
        self.body["details"] = details;
        self
    }

    /// The answer to a failed login: Rocket.Chat's client libraries branch
    /// on exactly this.
    fn bad_login() -> Self {
        Self {
            status: StatusCode::UNAUTHORIZED,
            body: json!({
                "success": false,
                "status": "error",
                "error": "Unauthorized",
                "message": "Unauthorized",
            }),
            retry_after: None,
        }
    }
}

impl IntoResponse for RcError {
    fn into_response(self) -> Response {
        let mut res = (self.status, axum::Json(self.body)).into_response();
        if let Some(secs) = self.retry_after {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        res
    }
}

/// Roster's refusal in Rocket.Chat's words: input is 400 (a missing object
/// too, as Rocket.Chat answers an id that matches nothing), a missing or
/// refused credential 401 "You must be logged in to do this.", a missing
/// permission 403 `error-action-not-allowed`.
impl From<ApiError> for RcError {
    fn from(e: ApiError) -> Self {
        let field = e.field.as_deref().unwrap_or("");
        let reason = match e.field.as_deref() {
            Some(f) if e.message.starts_with("must ") || e.message.starts_with("is ") => {
                format!("{f} {}", e.message)
            }
            _ => e.message.clone(),
        };
        let mut out = match (e.status, e.code) {
            (StatusCode::UNAUTHORIZED, _) => {
                let m = "You must be logged in to do this.";
                return Self {
                    status: StatusCode::UNAUTHORIZED,
                    body: json!({ "success": false, "status": "error", "error": m, "message": m }),
                    retry_after: None,
                };
            }
            (StatusCode::FORBIDDEN, _) => {
                Self::new(StatusCode::FORBIDDEN, "error-action-not-allowed", &reason)
            }
            (StatusCode::NOT_FOUND, _) => {
                let code = if e.message.starts_with("user") {
                    "error-invalid-user"
                } else if e.message.starts_with("room") {
                    "error-room-not-found"
                } else if e.message.starts_with("role") {
                    "error-role-not-found"
                } else if e.message.starts_with("account") {
                    // The account in the path: nothing there to answer for.
                    return Self {
                        status: StatusCode::NOT_FOUND,
                        body: json!({ "success": false, "error": "Resource not found" }),
                        retry_after: None,
                    };
                } else {
                    "error-not-found"
                };
                Self::new(StatusCode::BAD_REQUEST, code, &reason)
            }
            (StatusCode::CONFLICT, _) => {
                Self::new(StatusCode::BAD_REQUEST, "error-field-unavailable", &reason)
            }
            (StatusCode::TOO_MANY_REQUESTS, _) => {
                let wait = e.retry_after.unwrap_or(1);
                let mut out = Self::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "error-too-many-requests",
                    &format!(
                        "Error, too many requests. Please slow down. You must wait {wait} seconds before trying this endpoint again."
                    ),
                );
                out.retry_after = Some(wait);
                return out;
            }
            (StatusCode::BAD_REQUEST, "VALIDATION_ERROR") => {
                Self::new(StatusCode::BAD_REQUEST, "error-invalid-params", &reason)
            }
            (status, _) if status.is_server_error() => {
                return Self {
                    status,
                    body: json!({ "success": false, "error": "Internal server error" }),
                    retry_after: None,
                };
            }
            (status, code) => Self::new(
                status,
                &code.to_ascii_lowercase().replace('_', "-"),
                &reason,
            ),
        };
        if !field.is_empty() {
            out = out.with_details(json!({ "field": field }));
        }
        out
    }
}

impl From<crate::service::Error> for RcError {
    fn from(e: crate::service::Error) -> Self {
        ApiError::from(e).into()
    }
}

pub(super) type RcResult = Result<Response, RcError>;

/// `{…, success: true}` with 200.
pub(super) fn success(mut body: Value) -> Response {
    if let Some(o) = body.as_object_mut() {
        o.insert("success".into(), Value::Bool(true));
    }
    (StatusCode::OK, axum::Json(body)).into_response()
}

/// The account in the path; anything that is not an account id is 404.
fn account_of(parts: &Parts) -> Result<Uuid, RcError> {
    let raw = parts.uri.path();
    raw.strip_prefix("/compat/rocketchat/")
        .and_then(|rest| rest.split('/').next())
        .and_then(|s| Uuid::try_parse(s).ok())
        .ok_or_else(|| ApiError::not_found("account").into())
}

/// Whoever the request's `X-Auth-Token` proves, on the account of the path:
/// a login's `authToken` (or any user token of Roster's) with its user's id
/// in `X-User-Id`, or an account API key (then `X-User-Id` is not read).
/// Refused credentials count against the address, as on the native routes.
pub(super) struct RcCaller(pub Caller);

impl FromRequestParts<App> for RcCaller {
    type Rejection = RcError;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, Self::Rejection> {
        let account = account_of(parts)?;
        guarded(app, parts, |parts| async move {
            let header = |name: &str| {
                parts
                    .headers
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::trim)
                    .filter(|v| !v.is_empty())
            };
            let token = header("x-auth-token")
                .ok_or_else(|| ApiError::unauthorized("send X-Auth-Token and X-User-Id"))?;
            let user_id = header("x-user-id").map(str::to_owned);
            let caller = authenticate_as(parts, app, account, token).await?;
            match caller.user_id() {
                Some(id) if user_id.as_deref() != Some(id.to_string().as_str()) => {
                    Err(ApiError::unauthorized("X-User-Id is not the token's user"))
                }
                _ => Ok(caller),
            }
        })
        .await
        .map(|mut caller| {
            caller.surface = Some("rocketchat");
            RcCaller(caller)
        })
        .map_err(RcError::from)
    }
}

/// A JSON object body parsed into `T`, refused in Rocket.Chat's shape.
pub(super) struct RcJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for RcJson<T> {
    type Rejection = RcError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(req.headers()) {
            return Err(RcError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "error-invalid-params",
                "the body must be JSON, sent with Content-Type: application/json",
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rej| {
            RcError::from(if rej.status() == StatusCode::PAYLOAD_TOO_LARGE {
                super::super::extract::payload_too_large()
            } else {
                ApiError::bad_request("the body could not be read")
            })
        })?;
        parse_json(&bytes).map(RcJson).map_err(RcError::from)
    }
}

/// The query string as name → value (the last of a repeated name).
pub(super) struct RcQuery(pub HashMap<String, String>);

impl<S: Send + Sync> FromRequestParts<S> for RcQuery {
    type Rejection = RcError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let pairs = url::form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
        Ok(RcQuery(pairs))
    }
}

impl RcQuery {
    pub(super) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// A whole number parameter, at most `max`.
    pub(super) fn number(&self, name: &str, default: u64, max: u64) -> Result<u64, RcError> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => match v.parse::<u64>() {
                Ok(n) if n <= max => Ok(n),
                _ => Err(RcError::invalid(
                    name,
                    &format!("{name} must be a whole number from 0 to {max}"),
                )),
            },
        }
    }

    /// A JSON object parameter whose members keep the order they were sent
    /// in (`sort`: the first key orders first).
    pub(super) fn ordered(&self, name: &str) -> Result<Option<Vec<(String, Value)>>, RcError> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => serde_json::from_str::<Ordered>(v)
                .map(|o| Some(o.0))
                .map_err(|_| RcError::invalid(name, &format!("{name} must be a JSON object"))),
        }
    }

    /// A JSON object parameter (`query`, `sort`, `fields`).
    pub(super) fn object(
        &self,
        name: &str,
    ) -> Result<Option<serde_json::Map<String, Value>>, RcError> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => match serde_json::from_str::<Value>(v) {
                Ok(Value::Object(o)) => Ok(Some(o)),
                _ => Err(RcError::invalid(
                    name,
                    &format!("{name} must be a JSON object"),
                )),
            },
        }
    }
}

/// A JSON object's members in the order they were sent (serde_json's `Map`
/// sorts them).
struct Ordered(Vec<(String, Value)>);

impl<'de> serde::Deserialize<'de> for Ordered {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Members;
        impl<'de> serde::de::Visitor<'de> for Members {
            type Value = Ordered;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut m: A,
            ) -> Result<Ordered, A::Error> {
                let mut out = Vec::new();
                while let Some(member) = m.next_entry::<String, Value>()? {
                    out.push(member);
                }
                Ok(Ordered(out))
            }
        }
        d.deserialize_map(Members)
    }
}
