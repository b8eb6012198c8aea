//! SCIM discovery (RFC 7644 §4): `/ServiceProviderConfig`, `/ResourceTypes`
//! and `/Schemas`, each telling what this server serves and nothing more:
//! PATCH, filters (at most [`MAX_RESULTS`](super::MAX_RESULTS)), sorting and
//! ETags yes; bulk and password change no.

use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::schema::{self, GROUP, ROSTER_USER, USER};
use super::{MAX_RESULTS, ScimCaller, ScimError, ScimId, ScimResult, TAG, answer, base};
use crate::app::App;
use crate::http::extract::Caller;
use crate::service::roles;

pub fn routes() -> OpenApiRouter<App> {
    OpenApiRouter::new()
        .routes(routes!(service_provider_config))
        .routes(routes!(resource_types))
        .routes(routes!(resource_type))
        .routes(routes!(schemas))
        .routes(routes!(schema_get))
        .routes(routes!(search_all))
}

/// What the service supports (RFC 7643 §5).
#[utoipa::path(get, path = "/v1/accounts/{accountId}/scim/v2/ServiceProviderConfig", tag = TAG,
    params(("accountId" = Uuid, Path)), security(("bearer" = [])),
    responses((status = 200, description = "The ServiceProviderConfig resource")))]
async fn service_provider_config(
    State(app): State<App>,
    ScimCaller(caller): ScimCaller,
) -> ScimResult {
    let location = format!("{}/ServiceProviderConfig", base(&app, caller.account_id));
    Ok(answer(
        StatusCode::OK,
        &json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
            "patch": { "supported": true },
            "bulk": { "supported": false, "maxOperations": 0, "maxPayloadSize": 0 },
            "filter": { "supported": true, "maxResults": MAX_RESULTS },
            "changePassword": { "supported": true },
            "sort": { "supported": true },
            "etag": { "supported": true },
            "authenticationSchemes": [{
                "type": "oauthbearertoken",
                "name": "API key",
                "description": "One of the account's API keys, as Authorization: Bearer <key>; a read key reads only.",
                "specUri": "https://www.rfc-editor.org/rfc/rfc6750",
                "primary": true,
            }],
            "meta": { "resourceType": "ServiceProviderConfig", "location": location },
        }),
    ))
}

fn user_type(base: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
        "id": "User",
        "name": "User",
        "endpoint": "/Users",
        "description": "A Roster user",
        "schema": USER,
        "schemaExtensions": [{ "schema": ROSTER_USER, "required": false }],
        "meta": { "resourceType": "ResourceType", "location": format!("{base}/ResourceTypes/User") },
    })
}

fn group_type(base: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
        "id": "Group",
        "name": "Group",
        "endpoint": "/Groups",
        "description": "A Roster space and its members",
        "schema": GROUP,
        "schemaExtensions": [],
        "meta": { "resourceType": "ResourceType", "location": format!("{base}/ResourceTypes/Group") },
    })
}

fn list(items: Vec<Value>) -> axum::response::Response {
    answer(
        StatusCode::OK,
        &json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
            "totalResults": items.len(),
            "startIndex": 1,
            "itemsPerPage": items.len(),
            "Resources": items,
        }),
    )
}

/// The resource types served: User and Group.
#[utoipa::path(get, path = "/v1/accounts/{accountId}/scim/v2/ResourceTypes", tag = TAG,
    params(("accountId" = Uuid, Path)), security(("bearer" = [])),
    responses((status = 200, description = "A ListResponse of ResourceType resources")))]
async fn resource_types(State(app): State<App>, ScimCaller(caller): ScimCaller) -> ScimResult {
    let base = base(&app, caller.account_id);
    Ok(list(vec![user_type(&base), group_type(&base)]))
}

/// One resource type.
#[utoipa::path(get, path = "/v1/accounts/{accountId}/scim/v2/ResourceTypes/{id}", tag = TAG,
    params(("accountId" = Uuid, Path), ("id" = String, Path)), security(("bearer" = [])),
    responses((status = 200, description = "The ResourceType"), (status = 404, description = "No such type")))]
async fn resource_type(
    State(app): State<App>,
    ScimCaller(caller): ScimCaller,
    ScimId(id): ScimId,
) -> ScimResult {
    let base = base(&app, caller.account_id);
    match id.as_str() {
        "User" => Ok(answer(StatusCode::OK, &user_type(&base))),
        "Group" => Ok(answer(StatusCode::OK, &group_type(&base))),
        _ => Err(ScimError::not_found("resource type", &id)),
    }
}

/// The three schemas of this account (its roles and custom fields in them).
async fn all_schemas(app: &App, caller: &Caller) -> Result<Vec<Value>, ScimError> {
    let base = base(app, caller.account_id);
    let roles: Vec<String> = roles::list(app, caller)
        .await?
        .into_iter()
        .map(|r| r.id)
        .filter(|id| id != "user")
        .collect();
    let settings = app.settings(caller.account_id).await?;
    Ok(vec![
        schema::describe(
            USER,
            "User",
            "User Account",
            &schema::user_core(&roles),
            &format!("{base}/Schemas/{USER}"),
        ),
        schema::describe(
            ROSTER_USER,
            "RosterUser",
            "Roster's user attributes: tags, bio and the account's custom fields",
            &schema::user_roster(&settings),
            &format!("{base}/Schemas/{ROSTER_USER}"),
        ),
        schema::describe(
            GROUP,
            "Group",
            "Group (a Roster space)",
            &schema::group_core(),
            &format!("{base}/Schemas/{GROUP}"),
        ),
    ])
}

/// The schemas served.
#[utoipa::path(get, path = "/v1/accounts/{accountId}/scim/v2/Schemas", tag = TAG,
    params(("accountId" = Uuid, Path)), security(("bearer" = [])),
    responses((status = 200, description = "A ListResponse of Schema resources")))]
async fn schemas(State(app): State<App>, ScimCaller(caller): ScimCaller) -> ScimResult {
    Ok(list(all_schemas(&app, &caller).await?))
}

/// One schema, by its URN.
#[utoipa::path(get, path = "/v1/accounts/{accountId}/scim/v2/Schemas/{id}", tag = TAG,
    params(("accountId" = Uuid, Path), ("id" = String, Path)), security(("bearer" = [])),
    responses((status = 200, description = "The Schema"), (status = 404, description = "No such schema")))]
async fn schema_get(
    State(app): State<App>,
    ScimCaller(caller): ScimCaller,
    ScimId(id): ScimId,
) -> ScimResult {
    all_schemas(&app, &caller)
        .await?
        .into_iter()
        .find(|s| s["id"] == id.as_str())
        .map(|s| answer(StatusCode::OK, &s))
        .ok_or_else(|| ScimError::not_found("schema", &id))
}

/// `POST /.search` across every resource type (RFC 7644 §3.4.3) is not
/// served: 501, as RFC 7644 §3.12 answers an operation a server does not
/// support. Each type's own `/.search` is.
#[utoipa::path(post, path = "/v1/accounts/{accountId}/scim/v2/.search", tag = TAG,
    params(("accountId" = Uuid, Path)), security(("bearer" = [])),
    responses((status = 501, description = "Not served: search /Users/.search or /Groups/.search")))]
async fn search_all(caller: ScimCaller) -> ScimResult {
    let _ = caller;
    Err(ScimError::new(
        StatusCode::NOT_IMPLEMENTED,
        None,
        "searching several resource types at once is not served: POST /Users/.search or /Groups/.search",
    ))
}
