//! Extractors: JSON bodies, path ids and queries that refuse with the
//! envelope, and the callers (operator, API key, user) so that the least
//! privilege a handler needs is visible in its signature.

use std::collections::HashMap;

use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use super::envelope::{ApiError, ApiResult};
use crate::app::App;
use crate::secret::{self, ApiKeySecret};
use crate::service::actor::role_permissions;
use crate::store::{Page, TokenCheck};

/// A JSON object body, parsed into `T`; every refusal wears the envelope.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(req.headers()) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "UNSUPPORTED_MEDIA_TYPE",
                "the body must be JSON, sent with Content-Type: application/json",
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rej| {
            if rej.status() == StatusCode::PAYLOAD_TOO_LARGE {
                payload_too_large()
            } else {
                ApiError::bad_request("the body could not be read")
            }
        })?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// Whether the body is declared JSON: `application/json` or
/// `application/…+json`.
pub fn is_json(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| {
            let m = m.trim().to_ascii_lowercase();
            m == "application/json" || (m.starts_with("application/") && m.ends_with("+json"))
        })
}

pub fn payload_too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "PAYLOAD_TOO_LARGE",
        "the request body is larger than this server accepts",
    )
}

/// Parses a JSON object into `T`, naming the offending field on failure.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> ApiResult<T> {
    let trimmed = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if trimmed != Some(&b'{') {
        return Err(match serde_json::from_slice::<serde_json::Value>(bytes) {
            Ok(_) => ApiError::bad_request("the body must be a JSON object"),
            Err(_) => ApiError::bad_request("the body is not valid JSON"),
        });
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    let value =
        serde_path_to_error::deserialize::<_, T>(super::strict::Strict(&mut *de)).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            match inner.classify() {
                serde_json::error::Category::Data => {
                    let message = strip_position(&inner.to_string());
                    // A missing or unknown field is named inside the object
                    // it belongs to (`custom_fields.dept.type`).
                    let field = match quoted_field(&message) {
                        Some(name) if path == "." || path.is_empty() => name,
                        Some(name) if path == name || path.ends_with(&format!(".{name}")) => path,
                        Some(name) => format!("{path}.{name}"),
                        None => path,
                    };
                    ApiError::validation(canonical_field(&field), api_words(&message))
                }
                _ => ApiError::bad_request("the body is not valid JSON"),
            }
        })?;
    de.end()
        .map_err(|_| ApiError::bad_request("the body is not valid JSON"))?;
    Ok(value)
}

fn strip_position(m: &str) -> String {
    match m.rfind(" at line ") {
        Some(i) => m[..i].to_owned(),
        None => m.to_owned(),
    }
}

/// A deserializer's refusal in the API's words: what the field must be,
/// never a Rust type (`i64`, `struct CustomFieldDef with 4 elements`) nor
/// the value sent (it may be a secret). Messages of Roster's own
/// deserializers ("must be …") pass through.
fn api_words(message: &str) -> String {
    let expected = |rest: &str| -> String {
        let rest = rest.trim();
        let words = match rest {
            "a boolean" => "true or false",
            "a string" | "a borrowed string" | "a string or null" => "a string",
            "a sequence" => "an array",
            "a map" => "an object",
            "i8" | "i16" | "i32" | "i64" | "u8" | "u16" | "u32" | "u64" | "usize" | "isize" => {
                "a whole number"
            }
            "f32" | "f64" => "a number",
            r if r.starts_with("struct ") || r.starts_with("a map ") => "an object",
            r if r.starts_with("a tuple") || r.starts_with("an array") => "an array",
            r if r.starts_with("a ") || r.starts_with("an ") => {
                return format!("must be {}", r.replace('`', ""));
            }
            _ => "of another type",
        };
        format!("must be {words}")
    };
    let tail = |m: &str| m.split_once(", expected ").map(|(_, e)| e.to_owned());
    if let Some(rest) = message.strip_prefix("unknown variant ") {
        return match tail(rest) {
            Some(list) => {
                let list = list.trim_start_matches("one of ").replace('`', "");
                format!("must be one of: {}", list.replace(" or ", ", "))
            }
            None => "is not one of the values this field takes".to_owned(),
        };
    }
    if message.starts_with("invalid type: ")
        || message.starts_with("invalid value: ")
        || message.starts_with("invalid length ")
    {
        return match tail(message) {
            Some(e) => expected(&e),
            None => "is not a value this field takes".to_owned(),
        };
    }
    if message.starts_with("missing field ") {
        return "is required".to_owned();
    }
    if message.starts_with("duplicate field ") {
        return "is given twice".to_owned();
    }
    if let Some(rest) = message.strip_prefix("unknown field ") {
        // Name the field, not the list of those the request takes.
        let name = rest.split(", expected").next().unwrap_or(rest);
        return format!("{name} is not a field of this request");
    }
    // A query string's numbers and booleans (`str::parse` errors).
    match message {
        "invalid digit found in string"
        | "cannot parse integer from empty string"
        | "number too large to fit in target type"
        | "number too small to fit in target type" => "must be a whole number".to_owned(),
        "provided string was not `true` or `false`" => "must be true or false".to_owned(),
        "invalid float literal" => "must be a number".to_owned(),
        other => other.to_owned(),
    }
}

/// `unknown field `foo`` / `missing field `bar`` → the field's name.
fn quoted_field(message: &str) -> Option<String> {
    if !(message.starts_with("unknown field")
        || message.starts_with("missing field")
        || message.starts_with("duplicate field"))
    {
        return None;
    }
    let start = message.find('`')? + 1;
    let len = message[start..].find('`')?;
    Some(message[start..start + len].to_owned())
}

/// The canonical snake_case name of a field as sent (camelCase or an alias).
pub fn canonical_field(path: &str) -> String {
    let (head, rest) = match path.find(['.', '[']) {
        Some(i) => path.split_at(i),
        None => (path, ""),
    };
    let head = match head {
        "uid" | "customId" => "custom_id".to_owned(),
        "avatar" | "profilePicture" => "profile_picture".to_owned(),
        "statusText" | "status_text" | "statusMessage" => "status_message".to_owned(),
        other => {
            let mut out = String::with_capacity(other.len() + 4);
            for c in other.chars() {
                if c.is_ascii_uppercase() {
                    out.push('_');
                    out.push(c.to_ascii_lowercase());
                } else {
                    out.push(c);
                }
            }
            out
        }
    };
    format!("{head}{rest}")
}

/// Path ids: anything that is not a UUID names nothing, so it is 404.
pub struct Ids(pub HashMap<String, Uuid>);

impl<S: Send + Sync> FromRequestParts<S> for Ids {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(raw) = Path::<HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::not_found("resource"))?;
        let mut out = HashMap::new();
        for (k, v) in raw {
            let what = k.trim_end_matches("Id").trim_end_matches("_id");
            let id = Uuid::try_parse(&v).map_err(|_| ApiError::not_found(&id_noun(what)))?;
            out.insert(k, id);
        }
        Ok(Ids(out))
    }
}

fn id_noun(what: &str) -> String {
    match what {
        "key" => "api key".into(),
        "link" => "access link".into(),
        other => other.into(),
    }
}

impl Ids {
    pub fn get(&self, name: &str) -> Uuid {
        self.0.get(name).copied().unwrap_or_default()
    }
}

/// A query string parsed into `T` (which should deny unknown fields).
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Query::<T>::try_from_uri(&parts.uri)
            .map(|Query(v)| ApiQuery(v))
            .map_err(|rej| {
                let text = rej.body_text();
                let text = text
                    .strip_prefix("Failed to deserialize query string: ")
                    .unwrap_or(&text)
                    .to_owned();
                // serde_path_to_error style: "field: message".
                let (field, text) = match text.split_once(": ") {
                    Some((f, rest)) if !f.contains(' ') => (f.to_owned(), rest.to_owned()),
                    _ => (
                        quoted_field(&text).unwrap_or_else(|| "query".into()),
                        text.clone(),
                    ),
                };
                ApiError::validation(field, api_words(&text))
            })
    }
}

/// `limit` (1–100, default 50) and an opaque `cursor`.
/// Its refusals are the use-case layer's, so that a use case may settle who
/// may read before it refuses a bad page.
pub fn page(limit: Option<u32>, cursor: Option<&str>) -> crate::service::Result<Page> {
    use crate::service::Error;
    let limit = page_limit(limit)?;
    let after = match cursor {
        None | Some("") => None,
        Some(c) => Some(
            decode_cursor(c)
                .ok_or_else(|| Error::validation("cursor", "is not a cursor this server issued"))?,
        ),
    };
    Ok(Page { limit, after })
}

/// `limit`: 1–100, default 50.
pub fn page_limit(limit: Option<u32>) -> crate::service::Result<u32> {
    let limit = limit.unwrap_or(50);
    if !(1..=100).contains(&limit) {
        return Err(crate::service::Error::validation(
            "limit",
            "must be between 1 and 100",
        ));
    }
    Ok(limit)
}

pub fn encode_cursor(id: Uuid) -> String {
    URL_SAFE_NO_PAD.encode(id.as_bytes())
}

fn decode_cursor(c: &str) -> Option<Uuid> {
    let bytes = URL_SAFE_NO_PAD.decode(c).ok()?;
    Uuid::from_slice(&bytes).ok()
}

/// The credential presented: `Authorization: Bearer …` or the `apikey` header.
fn credential(parts: &Parts) -> Option<&str> {
    if let Some(v) = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let (scheme, rest) = v.split_once(' ')?;
        return scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim());
    }
    parts
        .headers
        .get("apikey")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

/// CollabKit's credential form, `base64(accountId:apiKey)`: the account it
/// names and the key. Anything else (a key as it is, a JWT) is `None`.
fn collabkit_key(presented: &str) -> Option<(Uuid, String)> {
    use base64::engine::general_purpose::STANDARD;
    if presented.starts_with("rk_") || presented.contains('.') || presented.len() > 512 {
        return None;
    }
    let text = String::from_utf8(STANDARD.decode(presented).ok()?).ok()?;
    let (account, key) = text.split_once(':')?;
    let account = Uuid::try_parse(account).ok()?;
    key.starts_with("rk_").then(|| (account, key.to_owned()))
}

fn missing_credential() -> ApiError {
    ApiError::unauthorized(
        "send a key or token as `Authorization: Bearer …` or the `apikey` header",
    )
}

/// The server owner, holding the operator key: the use-case layer's
/// [`Operator`].
pub use crate::service::Operator;

impl FromRequestParts<App> for Operator {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, Self::Rejection> {
        guarded(app, parts, |parts| async move {
            let presented = credential(parts).ok_or_else(missing_credential)?;
            if app.is_operator_key(presented) {
                Ok(Operator {
                    request_id: Some(super::envelope::request_id()),
                })
            } else {
                Err(ApiError::unauthorized("this route needs the operator key"))
            }
        })
        .await
    }
}

/// Whoever calls an account's open routes (login, refresh, sign-up, reset,
/// verification) with no credential yet: an anonymous [`Caller`] of the
/// account in the path.
pub struct Visitor(pub Caller);

impl<S: Send + Sync> FromRequestParts<S> for Visitor {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let ids = Ids::from_request_parts(parts, state).await?;
        Ok(Visitor(Caller::anonymous(
            ids.get("accountId"),
            Some(super::envelope::request_id()),
        )))
    }
}

/// Who is calling an account route: the use-case layer's [`Actor`].
pub use crate::service::{Actor as Caller, ActorKind as CallerKind};

impl FromRequestParts<App> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, Self::Rejection> {
        guarded(app, parts, |parts| authenticate(parts, app)).await
    }
}

/// The window of [`guarded`]'s count.
const BAD_CREDENTIAL_WINDOW: std::time::Duration = std::time::Duration::from_secs(60);

/// Runs `auth` unless the client's address has sent
/// `bad_credentials_per_ip_per_minute` refused credentials in the last
/// minute (counted for the cluster): then 429 with `Retry-After`, before
/// any key or token is looked up — a flood of bad keys costs no database
/// reads. A 401 from `auth` counts one. An address that has not failed on
/// this node in the window is not checked at all (a memory read), so the
/// guard costs nothing on the happy path; one that has is checked against
/// the cluster's count.
pub(crate) async fn guarded<'p, T, F, Fut>(
    app: &App,
    parts: &'p mut Parts,
    auth: F,
) -> Result<T, ApiError>
where
    F: FnOnce(&'p mut Parts) -> Fut,
    Fut: std::future::Future<Output = Result<T, ApiError>>,
{
    let limit = app.config.bad_credentials_per_ip_per_minute;
    if limit == 0 {
        return auth(parts).await;
    }
    // Resolved once per request, by the envelope layer.
    let ip = match parts.extensions.get::<super::client_ip::ClientIp>() {
        Some(c) => c.0,
        None => super::client_ip::resolve(
            parts
                .extensions
                .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                .map(|c| c.0.ip()),
            &parts.headers,
            &app.trusted_proxies,
        ),
    };
    let key = format!("cred:{ip}");
    if app.throttle.seen_here(&key, BAD_CREDENTIAL_WINDOW) {
        app.throttle
            .check(&key, limit, BAD_CREDENTIAL_WINDOW)
            .await?;
    }
    let result = auth(parts).await;
    if matches!(&result, Err(e) if e.status == StatusCode::UNAUTHORIZED) {
        app.throttle.record(&key, BAD_CREDENTIAL_WINDOW).await;
    }
    result
}

/// The caller an account route's credential proves.
async fn authenticate(parts: &mut Parts, app: &App) -> Result<Caller, ApiError> {
    let Path(raw) = Path::<HashMap<String, String>>::from_request_parts(parts, app)
        .await
        .map_err(|_| ApiError::not_found("account"))?;
    let account = raw
        .get("accountId")
        .and_then(|s| Uuid::try_parse(s).ok())
        .ok_or_else(|| ApiError::not_found("account"))?;
    let presented = match credential(parts) {
        Some(p) => p.to_owned(),
        None => super::auth::access_cookie(parts)?
            .ok_or_else(missing_credential)?
            .to_owned(),
    };
    authenticate_as(parts, app, account, &presented).await
}

/// The caller `presented` (an API key or a user's token) proves on
/// `account`'s routes: another account's credential is "not found".
pub(crate) async fn authenticate_as(
    parts: &Parts,
    app: &App,
    account: Uuid,
    presented: &str,
) -> Result<Caller, ApiError> {
    let collabkit = collabkit_key(presented);
    let presented = match &collabkit {
        Some((owner, _)) if *owner != account => return Err(ApiError::not_found("account")),
        Some((_, key)) => key.as_str(),
        None => presented,
    };
    if presented.starts_with("rk_") {
        let (id, hash) = ApiKeySecret::parse(presented)
            .ok_or_else(|| ApiError::unauthorized("the API key is not valid"))?;
        let key = app
            .api_key_for_auth(id)
            .await?
            .filter(|k| secret::equal_hashes(&k.secret_hash, &hash))
            .ok_or_else(|| ApiError::unauthorized("the API key is not valid or was revoked"))?;
        if key.account_id != account {
            return Err(ApiError::not_found("account"));
        }
        app.touch_api_key(key.id);
        return Ok(Caller {
            account_id: account,
            kind: CallerKind::ApiKey {
                id: key.id,
                scope: key.scope,
            },
            request_id: Some(super::envelope::request_id()),
            surface: None,
        });
    }
    if presented.split('.').count() == 3 {
        let claims = app
            .verify_account_token(presented)
            .await
            .map_err(|e| ApiError::unauthorized(e.to_string()))?;
        if claims.account_id != account {
            return Err(ApiError::not_found("account"));
        }
        return match app
            .store
            .check_user_token(
                account,
                claims.user_id,
                claims.jti,
                crate::domain::time::now(),
            )
            .await?
        {
            TokenCheck::Valid(user) => {
                super::auth::password_change_gate(&claims.typ, &user, parts)?;
                Ok(Caller {
                    account_id: account,
                    kind: CallerKind::User {
                        permissions: role_permissions(app, account, &user.roles).await?,
                        user,
                        token_id: claims.jti,
                    },
                    request_id: Some(super::envelope::request_id()),
                    surface: None,
                })
            }
            TokenCheck::Invalid => Err(ApiError::unauthorized(
                "the token was revoked, or its user is deactivated or deleted",
            )),
        };
    }
    if app.is_operator_key(presented) {
        return Err(ApiError::forbidden(
            "the operator key manages accounts; use one of the account's API keys here",
        ));
    }
    Err(ApiError::unauthorized("the key or token is not valid"))
}
