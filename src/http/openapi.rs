//! Makes the generated OpenAPI document describe the wire, not the Rust
//! types: every answer of the native API is the envelope around the
//! documented `data`, and every native operation declares the error answers
//! it can give, each an envelope with its `error` object. The compat routes
//! (Rocket.Chat, CometChat) and SCIM answer in their own shapes and keep the
//! schemas their modules declare.
//!
//! The `#[utoipa::path]` annotations describe `data` (what a handler passes
//! to `envelope::ok`); this pass wraps it once for all of them, so that no
//! annotation can forget the envelope.

use serde_json::{Map, Value, json};
use utoipa::openapi::OpenApi;

/// An error every authenticated native operation can answer.
const AUTHENTICATED: &[(&str, &str)] = &[
    (
        "400",
        "The request is malformed or a field is invalid (`BAD_REQUEST`, `VALIDATION_ERROR` with `field`)",
    ),
    (
        "401",
        "No credential, or one that is unknown, expired or revoked (`UNAUTHORIZED`)",
    ),
    (
        "403",
        "The credential lacks a permission or scope this needs (`FORBIDDEN`)",
    ),
    (
        "404",
        "No such object in this account, or another account's (`NOT_FOUND`)",
    ),
    (
        "429",
        "Too many requests or failed authentications from this address (`RATE_LIMITED`, with `Retry-After`)",
    ),
    (
        "503",
        "Storage is unavailable or the request ran past its deadline (`UNAVAILABLE`); retry",
    ),
];

/// An error every native operation without a credential can answer.
const PUBLIC: &[(&str, &str)] = &[
    (
        "400",
        "The request is malformed or a field is invalid (`BAD_REQUEST`, `VALIDATION_ERROR` with `field`)",
    ),
    ("404", "No such account or object (`NOT_FOUND`)"),
    (
        "429",
        "Too many attempts from this address (`RATE_LIMITED`, with `Retry-After`)",
    ),
    (
        "503",
        "Storage is unavailable or the request ran past its deadline (`UNAVAILABLE`); retry",
    ),
];

/// An error every native operation with a request body can answer.
const WITH_BODY: &[(&str, &str)] = &[
    (
        "413",
        "The body is larger than the configured limit (`PAYLOAD_TOO_LARGE`)",
    ),
    (
        "415",
        "The body is not `application/json` (`UNSUPPORTED_MEDIA_TYPE`)",
    ),
];

const CONFLICT: (&str, &str) = (
    "409",
    "The change conflicts with the current state: a unique field taken, or an object in the wrong state (`CONFLICT` with `field`)",
);

/// Whether `path` answers with Roster's envelope.
fn native(path: &str) -> bool {
    (path.starts_with("/v1/") && !path.contains("/scim/v2") && path != "/v1/realtime")
        || path == "/healthz"
        || path == "/readyz"
}

/// The envelope and error schemas every wrapped answer refers to.
fn components() -> Vec<(&'static str, Value)> {
    vec![
        (
            "Envelope",
            json!({
                "type": "object",
                "description": "Every answer of the native API, success or error.",
                "required": ["type", "success", "description", "data", "error", "request_id"],
                "properties": {
                    "type": {"type": "string", "enum": ["response"]},
                    "success": {"type": "boolean"},
                    "description": {"type": "string"},
                    "data": {},
                    "error": {"oneOf": [{"type": "null"}, {"$ref": "#/components/schemas/ErrorBody"}]},
                    "request_id": {"type": "string", "description": "The request's id, also in the X-Request-Id header"}
                }
            }),
        ),
        (
            "ErrorBody",
            json!({
                "type": "object",
                "required": ["code", "message"],
                "properties": {
                    "code": {"type": "string", "description": "A stable code: BAD_REQUEST, VALIDATION_ERROR, UNAUTHORIZED, FORBIDDEN, NOT_FOUND, CONFLICT, GONE, PAYLOAD_TOO_LARGE, UNSUPPORTED_MEDIA_TYPE, RATE_LIMITED, UNAVAILABLE, …"},
                    "message": {"type": "string"},
                    "field": {"type": "string", "description": "The field at fault, where there is one"},
                    "details": {}
                }
            }),
        ),
        (
            "ErrorEnvelope",
            json!({
                "allOf": [
                    {"$ref": "#/components/schemas/Envelope"},
                    {
                        "type": "object",
                        "properties": {
                            "success": {"type": "boolean", "enum": [false]},
                            "data": {"type": "null"},
                            "error": {"$ref": "#/components/schemas/ErrorBody"}
                        }
                    }
                ]
            }),
        ),
    ]
}

/// Exactly one of `fields` is a non-null value.
fn exactly_one_of(fields: &[&str], ty: &str) -> Value {
    let branches: Vec<Value> = fields
        .iter()
        .map(|f| json!({"required": [f], "properties": {*f: {"type": ty}}}))
        .collect();
    json!({ "oneOf": branches })
}

/// What the request types' derives cannot say, merged into their schemas:
/// rules across fields, and maps whose keys are constrained.
fn refinements() -> Vec<(&'static str, Value)> {
    let field =
        json!({"oneOf": [{"$ref": "#/components/schemas/CustomFieldDef"}, {"type": "null"}]});
    vec![
        (
            "UpdateSettings",
            json!({
                "required": [],
                "properties": {"custom_fields": {
                    "type": ["object", "null"],
                    "description": "Each named field is declared (or redeclared); `null` removes it. At most 50 are declared in all.",
                    "propertyNames": {"pattern": "^[A-Za-z0-9_-]{1,64}$"},
                    "maxProperties": crate::domain::settings::MAX_CUSTOM_FIELDS,
                    "additionalProperties": field
                }}
            }),
        ),
        (
            "CustomFieldDef",
            json!({
                "properties": {"max_length": {"minimum": 1, "maximum": crate::domain::settings::MAX_CUSTOM_STRING}},
                "if": {"required": ["max_length"], "properties": {"max_length": {"type": "integer"}}},
                "then": {"properties": {"type": {"const": "string"}}}
            }),
        ),
        (
            "LoginRequest",
            exactly_one_of(&["username", "email", "custom_id"], "string"),
        ),
        ("Replay", {
            let mut one = exactly_one_of(&["since_seq", "since"], "string");
            one["oneOf"][0]["properties"]["since_seq"]["type"] = json!("integer");
            one
        }),
    ]
}

/// Merges `extra` into `base`: objects key by key, anything else replaced.
fn merge(base: &mut Value, extra: Value) {
    match (base, extra) {
        (Value::Object(b), Value::Object(e)) => {
            for (k, v) in e {
                merge(b.entry(k).or_insert(Value::Null), v);
            }
        }
        (b, e) => *b = e,
    }
}

/// The success envelope around `data`.
fn success(data: Value) -> Value {
    json!({
        "allOf": [
            {"$ref": "#/components/schemas/Envelope"},
            {
                "type": "object",
                "properties": {
                    "success": {"type": "boolean", "enum": [true]},
                    "data": data,
                    "error": {"type": "null"}
                }
            }
        ]
    })
}

fn error_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorEnvelope"}}}
    })
}

/// Wraps one operation's answers and adds its error answers.
fn wrap_operation(op: &mut Map<String, Value>, method: &str) {
    let public = op
        .get("security")
        .and_then(Value::as_array)
        .is_some_and(|s| s.iter().all(|r| r.as_object().is_some_and(Map::is_empty)));
    let has_body = op.contains_key("requestBody");
    let responses = op
        .entry("responses")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .expect("responses is an object");
    for (code, response) in responses.iter_mut() {
        let Some(response) = response.as_object_mut() else {
            continue;
        };
        if code.starts_with('2') {
            let content = response
                .entry("content")
                .or_insert_with(|| json!({"application/json": {}}));
            if let Some(json) = content
                .get_mut("application/json")
                .and_then(Value::as_object_mut)
            {
                let data = json.remove("schema").unwrap_or_else(|| json!({}));
                json.insert("schema".into(), success(data));
            }
        } else if !response.contains_key("content") {
            response.insert(
                "content".into(),
                json!({"application/json": {"schema": {"$ref": "#/components/schemas/ErrorEnvelope"}}}),
            );
        }
    }
    let mut errors: Vec<(&str, &str)> = if public { PUBLIC } else { AUTHENTICATED }.to_vec();
    if has_body {
        errors.extend_from_slice(WITH_BODY);
    }
    if matches!(method, "post" | "put" | "patch" | "delete") {
        errors.push(CONFLICT);
    }
    for (code, description) in errors {
        responses
            .entry(code)
            .or_insert_with(|| error_response(description));
    }
}

/// The document with the envelope and the error answers made explicit, as
/// JSON: utoipa's types cannot hold the open (`{}`) and `null` schemas the
/// envelope needs, so the document is served as this value.
pub fn truthful(doc: OpenApi) -> Value {
    let mut value = serde_json::to_value(&doc).expect("the document serialises");
    if let Some(paths) = value.get_mut("paths").and_then(Value::as_object_mut) {
        for (path, item) in paths.iter_mut() {
            if !native(path) {
                continue;
            }
            let Some(item) = item.as_object_mut() else {
                continue;
            };
            for (method, op) in item.iter_mut() {
                if let Some(op) = op.as_object_mut() {
                    wrap_operation(op, method);
                }
            }
        }
    }
    let schemas = value
        .as_object_mut()
        .expect("the document is an object")
        .entry("components")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .expect("components is an object")
        .entry("schemas")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .expect("schemas is an object");
    for (name, extra) in refinements() {
        if let Some(schema) = schemas.get_mut(name) {
            merge(schema, extra);
        }
    }
    for (name, schema) in components() {
        schemas.insert(name.into(), schema);
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_native_success_is_the_envelope_and_every_operation_declares_its_errors() {
        let doc = crate::http::openapi();
        let mut checked = 0;
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let Some(responses) = op.get("responses").and_then(Value::as_object) else {
                    continue;
                };
                if !native(path) {
                    continue;
                }
                checked += 1;
                for (code, r) in responses {
                    let schema = &r["content"]["application/json"]["schema"];
                    if code.starts_with('2') {
                        // A stream (NDJSON) or a text answer is not wrapped.
                        if r["content"].get("application/json").is_none() {
                            continue;
                        }
                        assert_eq!(
                            schema["allOf"][0]["$ref"], "#/components/schemas/Envelope",
                            "{method} {path} {code}"
                        );
                    } else {
                        assert!(!schema.is_null(), "{method} {path} {code} has no schema");
                    }
                }
                for code in ["400", "404", "503"] {
                    assert!(responses.contains_key(code), "{method} {path} lacks {code}");
                }
            }
        }
        assert!(checked > 60, "only {checked} native operations");
    }
}
