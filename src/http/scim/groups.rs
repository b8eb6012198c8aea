//! SCIM `/Groups` over `service::spaces` and `service::members`: a Group is
//! a space, its `displayName` the space's name, its `members` the space's
//! members. Members an identity provider adds get the space role `user`
//! (one already there keeps a higher role); a Group made here is private,
//! as its membership is the identity provider's to say.

use std::collections::BTreeSet;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::filter::{CmpOp, Filter};
use super::schema::{self, GROUP};
use super::users::field;
use super::{
    ListParams, ScimBody, ScimCaller, ScimError, ScimId, ScimQuery, ScimResult, ScimWriter, TAG,
    base, check_if_match, not_modified, patch, resource, stamp,
};
use crate::app::App;
use crate::domain::access::{CreateSpace, Member, Space, UpdateSpace};
use crate::domain::time;
use crate::http::extract::Caller;
use crate::service::{members, spaces};
use crate::store::Page;

pub fn routes() -> OpenApiRouter<App> {
    OpenApiRouter::new()
        .routes(routes!(create, list))
        .routes(routes!(search))
        .routes(routes!(get, replace, modify, delete))
}

/// Every member of a space, page by page.
async fn all_members(app: &App, caller: &Caller, space: Uuid) -> Result<Vec<Member>, ScimError> {
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let page = members::list_space(app, caller, space, Ok(Page { limit: 500, after })).await?;
        out.extend(page.items);
        match page.next {
            Some(next) => after = Some(next),
            None => return Ok(out),
        }
    }
}

/// A space as SCIM answers a Group; `members` None leaves them out
/// (`excludedAttributes=members`, which IdPs send for large groups).
fn to_scim(s: &Space, members: Option<&[Member]>, base: &str) -> Value {
    let mut o = json!({
        "schemas": [GROUP],
        "id": s.id,
        "displayName": s.name,
        "externalId": s.external_id,
        "meta": {
            "resourceType": "Group",
            "created": time::format(s.created_at),
            "lastModified": time::format(s.updated_at),
            "location": format!("{base}/Groups/{}", s.id),
        },
    });
    if s.external_id.is_none()
        && let Some(o) = o.as_object_mut()
    {
        o.remove("externalId");
    }
    if let Some(m) = members
        && !m.is_empty()
    {
        o["members"] = m
            .iter()
            .map(|m| {
                json!({
                    "value": m.user_id,
                    "$ref": format!("{base}/Users/{}", m.user_id),
                    "type": "User",
                })
            })
            .collect();
    }
    stamp(&mut o);
    o
}

fn resource_schema() -> schema::Resource {
    schema::Resource {
        core_urn: GROUP,
        core: schema::group_core(),
        extensions: Vec::new(),
    }
}

/// Reads a space by the id in the path; anything else is "not found".
async fn load(app: &App, caller: &Caller, id: &str) -> Result<Space, ScimError> {
    let Ok(sid) = Uuid::try_parse(id) else {
        return Err(ScimError::not_found("Group", id));
    };
    spaces::get(app, caller, sid).await.map_err(|e| {
        let e = ScimError::from(e);
        if e.status == StatusCode::NOT_FOUND {
            ScimError::not_found("Group", id)
        } else {
            e
        }
    })
}

/// The user ids a document's `members` names. One that names no user of
/// the account is skipped (the answer shows the members kept): an identity
/// provider pushes a group's membership in batches, and one stale id must
/// not hold back every other change (scim-sanity's strict probe asks this).
/// The store skips ids of no user as it writes, in the same transaction.
fn wanted_members(doc: &Map<String, Value>) -> Result<BTreeSet<Uuid>, ScimError> {
    let items = match field(doc, "members") {
        None => return Ok(BTreeSet::new()),
        Some(Value::Array(a)) => a,
        Some(_) => {
            return Err(ScimError::bad(
                "invalidValue",
                "members must be a list of {value}",
            ));
        }
    };
    let mut out = BTreeSet::new();
    for item in items {
        let value = item
            .as_object()
            .and_then(|o| field(o, "value"))
            .and_then(Value::as_str)
            .ok_or_else(|| {
                ScimError::bad("invalidValue", "each member needs a value: a user's id")
            })?;
        if let Some(t) = item
            .as_object()
            .and_then(|o| field(o, "type"))
            .and_then(Value::as_str)
            && !t.eq_ignore_ascii_case("User")
        {
            return Err(ScimError::bad(
                "invalidValue",
                format!("members are users: type {t:?} is not served"),
            ));
        }
        if let Ok(id) = Uuid::try_parse(value) {
            out.insert(id);
        }
    }
    Ok(out)
}

fn external_id(doc: &Map<String, Value>) -> Result<Option<String>, ScimError> {
    match field(doc, "externalId") {
        None => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ScimError::bad(
            "invalidValue",
            "externalId must be a string",
        )),
    }
}

fn display_name(doc: &Map<String, Value>) -> Result<String, ScimError> {
    match field(doc, "displayName") {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        Some(Value::String(_)) | None => {
            Err(ScimError::bad("invalidValue", "displayName is required"))
        }
        Some(_) => Err(ScimError::bad(
            "invalidValue",
            "displayName must be a string",
        )),
    }
}

/// What brings the space's members to `wanted`: those to add (as `user`),
/// and those to remove — never the space's owner, who is not the identity
/// provider's to remove (ownership moves on the native routes) and stays.
fn member_changes(current: &[Member], wanted: &BTreeSet<Uuid>) -> (Vec<Uuid>, Vec<Uuid>) {
    let have: BTreeSet<Uuid> = current.iter().map(|m| m.user_id).collect();
    let add = wanted.difference(&have).copied().collect();
    let remove = current
        .iter()
        .filter(|m| !wanted.contains(&m.user_id) && m.role != "owner")
        .map(|m| m.user_id)
        .collect();
    (add, remove)
}

/// Creates a space (`create-space`) with its members. A Group made here is
/// private.
#[utoipa::path(post, path = "/v1/accounts/{accountId}/scim/v2/Groups", tag = TAG,
    params(("accountId" = Uuid, Path)), security(("bearer" = [])),
    request_body(content = Object, content_type = "application/scim+json"),
    responses((status = 201, description = "The Group, with Location and ETag"),
        (status = 400, description = "invalidValue")))]
async fn create(
    State(app): State<App>,
    ScimWriter(caller): ScimWriter,
    ScimBody(doc): ScimBody,
) -> ScimResult {
    let name = display_name(&doc)?;
    let wanted: Vec<Uuid> = wanted_members(&doc)?.into_iter().collect();
    let space = spaces::create_with_members(
        &app,
        &caller,
        CreateSpace {
            name,
            visibility: Some("private".into()),
            external_id: external_id(&doc)?,
        },
        &wanted,
    )
    .await?;
    let members = all_members(&app, &caller, space.id).await?;
    let body = to_scim(&space, Some(&members), &base(&app, caller.account_id));
    Ok(resource(StatusCode::CREATED, &body))
}

/// Reads a Group (`If-None-Match` answers 304 when unchanged).
#[utoipa::path(get, path = "/v1/accounts/{accountId}/scim/v2/Groups/{id}", tag = TAG,
    params(("accountId" = Uuid, Path), ("id" = String, Path)), security(("bearer" = [])),
    responses((status = 200, description = "The Group"), (status = 304, description = "Unchanged"),
        (status = 404, description = "No such group in this account")))]
async fn get(
    State(app): State<App>,
    ScimCaller(caller): ScimCaller,
    ScimId(id): ScimId,
    query: ScimQuery,
    headers: HeaderMap,
) -> ScimResult {
    let space = load(&app, &caller, &id).await?;
    let members = all_members(&app, &caller, space.id).await?;
    let body = to_scim(&space, Some(&members), &base(&app, caller.account_id));
    if let Some(res) = not_modified(&headers, &body) {
        return Ok(res);
    }
    Ok(resource(StatusCode::OK, &query.projection().apply(body)))
}

async fn run_list(app: &App, caller: &Caller, params: ListParams) -> ScimResult {
    let base = base(app, caller.account_id);
    let invalid = || {
        ScimError::bad(
            "invalidFilter",
            "groups are filtered on displayName eq \"…\" or id eq \"…\" only",
        )
    };
    if params.sort_by.as_ref().is_some_and(|p| {
        !(p.attr.eq_ignore_ascii_case("id") || p.attr.eq_ignore_ascii_case("meta"))
    }) {
        return Err(ScimError::bad(
            "invalidValue",
            "groups are sorted by creation only",
        ));
    }
    let (name, id) = match &params.filter {
        None => (None, None),
        Some(Filter::Cmp {
            path,
            op: CmpOp::Eq,
            value: Value::String(v),
        }) if path.sub.is_none() => {
            if path.attr.eq_ignore_ascii_case("displayName") {
                (Some(v.clone()), None)
            } else if path.attr.eq_ignore_ascii_case("id") {
                (None, Some(v.clone()))
            } else {
                return Err(invalid());
            }
        }
        Some(_) => return Err(invalid()),
    };
    let with_members = !params.projection.excludes("members");
    let (spaces_found, total) = match id {
        Some(id) => match load(app, caller, &id).await {
            Ok(s) if params.start_index == 1 && params.count > 0 => (vec![s], 1),
            Ok(_) => (Vec::new(), 1),
            Err(e) if e.status == StatusCode::NOT_FOUND => (Vec::new(), 0),
            Err(e) => return Err(e),
        },
        None => {
            let found = spaces::search(
                app,
                caller,
                name.as_deref(),
                params.start_index - 1,
                params.count,
            )
            .await?;
            (found.items, found.total)
        }
    };
    let mut items = Vec::with_capacity(spaces_found.len());
    for s in &spaces_found {
        let members = if with_members {
            // A space deleted since the search is left out of the page.
            match all_members(app, caller, s.id).await {
                Ok(m) => Some(m),
                Err(e) if e.status == StatusCode::NOT_FOUND => continue,
                Err(e) => return Err(e),
            }
        } else {
            None
        };
        items.push(to_scim(s, members.as_deref(), &base));
    }
    Ok(params.answer(items, total))
}

/// Lists Groups: `filter=displayName eq "…"` (how IdPs look one up) or
/// `id eq "…"`, `startIndex`/`count`, `excludedAttributes=members`.
#[utoipa::path(get, path = "/v1/accounts/{accountId}/scim/v2/Groups", tag = TAG,
    params(("accountId" = Uuid, Path)), security(("bearer" = [])),
    responses((status = 200, description = "A ListResponse of Groups"), (status = 400, description = "invalidFilter")))]
async fn list(
    State(app): State<App>,
    ScimCaller(caller): ScimCaller,
    query: ScimQuery,
) -> ScimResult {
    run_list(&app, &caller, query.list()?).await
}

/// The list as a `POST /Groups/.search`.
#[utoipa::path(post, path = "/v1/accounts/{accountId}/scim/v2/Groups/.search", tag = TAG,
    params(("accountId" = Uuid, Path)), security(("bearer" = [])),
    request_body(content = Object, content_type = "application/scim+json"),
    responses((status = 200, description = "A ListResponse of Groups"), (status = 400, description = "invalidFilter")))]
async fn search(
    State(app): State<App>,
    ScimCaller(caller): ScimCaller,
    ScimBody(body): ScimBody,
) -> ScimResult {
    run_list(&app, &caller, ListParams::from_search(&body)?).await
}

/// Writes what `doc` changes, the name and the members, in one transaction.
async fn write(
    app: &App,
    caller: &Caller,
    space: &Space,
    current: &[Member],
    doc: &Map<String, Value>,
) -> Result<Value, ScimError> {
    let name = display_name(doc)?;
    let external = external_id(doc)?;
    let (add, remove) = member_changes(current, &wanted_members(doc)?);
    let space = spaces::update_with_members(
        app,
        caller,
        space.id,
        UpdateSpace {
            name: (name != space.name).then_some(name),
            visibility: None,
            external_id: (external != space.external_id).then_some(external),
        },
        add,
        remove,
    )
    .await?;
    let members = all_members(app, caller, space.id).await?;
    Ok(to_scim(
        &space,
        Some(&members),
        &base(app, caller.account_id),
    ))
}

/// Replaces a Group (PUT): its name and exactly the members given.
#[utoipa::path(put, path = "/v1/accounts/{accountId}/scim/v2/Groups/{id}", tag = TAG,
    params(("accountId" = Uuid, Path), ("id" = String, Path)), security(("bearer" = [])),
    request_body(content = Object, content_type = "application/scim+json"),
    responses((status = 200, description = "The Group"), (status = 404, description = "No such group"),
        (status = 412, description = "Stale If-Match")))]
async fn replace(
    State(app): State<App>,
    ScimWriter(caller): ScimWriter,
    ScimId(id): ScimId,
    headers: HeaderMap,
    ScimBody(doc): ScimBody,
) -> ScimResult {
    let space = load(&app, &caller, &id).await?;
    let current = all_members(&app, &caller, space.id).await?;
    check_if_match(
        &headers,
        &to_scim(&space, Some(&current), &base(&app, caller.account_id)),
    )?;
    let body = write(&app, &caller, &space, &current, &doc).await?;
    Ok(resource(StatusCode::OK, &body))
}

/// Changes a Group by PATCH: rename, add or remove members (Okta's
/// `members` add/remove, Entra's `Remove` with a value list, a replace
/// with `[]` that removes everyone).
#[utoipa::path(patch, path = "/v1/accounts/{accountId}/scim/v2/Groups/{id}", tag = TAG,
    params(("accountId" = Uuid, Path), ("id" = String, Path)), security(("bearer" = [])),
    request_body(content = Object, content_type = "application/scim+json"),
    responses((status = 200, description = "The Group"), (status = 400, description = "invalidPath, noTarget, invalidValue"),
        (status = 404, description = "No such group"), (status = 412, description = "Stale If-Match")))]
async fn modify(
    State(app): State<App>,
    ScimWriter(caller): ScimWriter,
    ScimId(id): ScimId,
    headers: HeaderMap,
    ScimBody(body): ScimBody,
) -> ScimResult {
    let ops = patch::parse_request(&Value::Object(body))?;
    let space = load(&app, &caller, &id).await?;
    let current = all_members(&app, &caller, space.id).await?;
    let before = to_scim(&space, Some(&current), &base(&app, caller.account_id));
    check_if_match(&headers, &before)?;
    let mut doc = before.clone();
    patch::apply(&mut doc, &ops, &resource_schema())?;
    let Some(after) = doc.as_object() else {
        return Err(ScimError::bad("invalidValue", "the group is not an object"));
    };
    let body = write(&app, &caller, &space, &current, after).await?;
    Ok(resource(StatusCode::OK, &body))
}

/// Deletes a space with its rooms (the space's owner or `manage-rooms`;
/// full API keys).
#[utoipa::path(delete, path = "/v1/accounts/{accountId}/scim/v2/Groups/{id}", tag = TAG,
    params(("accountId" = Uuid, Path), ("id" = String, Path)), security(("bearer" = [])),
    responses((status = 204, description = "Deleted"), (status = 404, description = "No such group"),
        (status = 412, description = "Stale If-Match")))]
async fn delete(
    State(app): State<App>,
    ScimWriter(caller): ScimWriter,
    ScimId(id): ScimId,
    headers: HeaderMap,
) -> Result<Response, ScimError> {
    let space = load(&app, &caller, &id).await?;
    if headers.contains_key(axum::http::header::IF_MATCH) {
        let current = all_members(&app, &caller, space.id).await?;
        check_if_match(
            &headers,
            &to_scim(&space, Some(&current), &base(&app, caller.account_id)),
        )?;
    }
    spaces::delete(&app, &caller, space.id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
