//! CometChat's `/roles` over `service::roles`, and the mapping between a
//! CometChat user's one `role` and Roster's role ids: CometChat's `default`
//! is Roster's `user`; any other role is held beside `user`, by its name.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::{CcCaller, CcError, CcJson, CcQuery, CcResult, TAG, alpha_dash, data, done};
use crate::app::App;
use crate::domain::access::{CreateRole, Role, UpdateRole};
use crate::domain::text;
use crate::http::extract::Caller;
use crate::service::{self, roles};

pub fn routes() -> OpenApiRouter<App> {
    OpenApiRouter::new()
        .routes(routes!(create, list))
        .routes(routes!(get, update, delete))
}

/// CometChat's default role: Roster's built-in `user`.
const DEFAULT: &str = "default";

/// Roster's role names are at most this long (CometChat's, 100).
const MAX_ROLE: usize = 64;

/// The account's roles, to translate between CometChat's names and
/// Roster's ids.
pub(super) struct RoleMap(Vec<Role>);

impl RoleMap {
    pub(super) async fn load(app: &App, caller: &Caller) -> Result<Self, CcError> {
        Ok(Self(roles::list(app, caller).await?))
    }

    /// Every role id of the account, built-in and custom.
    pub(super) fn ids(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|r| r.id.as_str())
    }

    /// CometChat's name of a Roster role id.
    fn name_of<'a>(&'a self, id: &'a str) -> &'a str {
        match self.0.iter().find(|r| r.id == id) {
            Some(r) if r.builtin && r.id == "user" => DEFAULT,
            Some(r) => &r.name,
            None => id,
        }
    }

    /// The one role CometChat shows for a user's roles: the first beside
    /// `user`, else `default`.
    pub(super) fn of_user(&self, roles: &[String]) -> String {
        roles
            .iter()
            .find(|r| r.as_str() != "user")
            .map_or(DEFAULT, |r| self.name_of(r))
            .to_owned()
    }

    /// The role named `name` (case aside), `default` being `user`.
    fn find(&self, name: &str) -> Option<&Role> {
        let id = if name.eq_ignore_ascii_case(DEFAULT) {
            "user"
        } else {
            name
        };
        self.0
            .iter()
            .find(|r| (r.builtin && r.id == id) || (!r.builtin && r.name.eq_ignore_ascii_case(id)))
    }

    /// Roster's roles for a CometChat role: `user`, and the role beside it.
    pub(super) fn roles_for(&self, name: &str) -> Result<Vec<String>, CcError> {
        let role = self.find(name).ok_or_else(|| CcError::no_role(name))?;
        Ok(if role.id == "user" {
            vec!["user".to_owned()]
        } else {
            vec!["user".to_owned(), role.id.clone()]
        })
    }
}

/// A role as CometChat answers one.
fn cc_role(r: &Role) -> Value {
    let default = r.builtin && r.id == "user";
    let key = if default { DEFAULT } else { r.name.as_str() };
    let mut o = json!({
        "role": key,
        "name": if default { "Default Role" } else { key },
    });
    if let Some(d) = &r.description {
        o["description"] = json!(d);
    }
    if let Some(at) = r.created_at {
        o["createdAt"] = json!(at.unix_timestamp());
    }
    o
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewRole {
    role: Option<String>,
    name: Option<String>,
    description: Option<String>,
    /// Accepted and not kept (docs/compat.md).
    #[allow(dead_code)]
    metadata: Option<serde_json::Map<String, Value>>,
    /// Accepted and not kept: Roster's permissions decide (docs/compat.md).
    #[allow(dead_code)]
    settings: Option<serde_json::Map<String, Value>>,
}

/// A role's `name` (CometChat's friendly name): 1–100 characters.
fn check_name(name: &str) -> Result<(), CcError> {
    text::display_text("name", name, 100)
        .map(drop)
        .map_err(|e| CcError::field("name", e.message))
}

/// Creates a role: a Roster role named by `role`, granting nothing beyond
/// `user` (which its holders keep).
#[utoipa::path(post, path = "/compat/cometchat/{accountId}/v3/roles", tag = TAG,
    params(("accountId" = Uuid, Path)), security(("cometchat" = [])),
    responses((status = 200, description = "`{data: role}`")))]
async fn create(
    State(app): State<App>,
    CcCaller(caller): CcCaller,
    CcJson(body): CcJson<NewRole>,
) -> CcResult {
    CcError::required(&[("role", body.role.is_some()), ("name", body.name.is_some())])?;
    let key = alpha_dash("role", body.role.as_deref().unwrap_or_default(), MAX_ROLE)?;
    check_name(body.name.as_deref().unwrap_or_default())?;
    let exists = || {
        CcError::new(
            StatusCode::BAD_REQUEST,
            "ERR_ROLE_ALREADY_EXISTS",
            format!(
                "The role {key} already exists. Please use another role or try after permanently deleting the role."
            ),
        )
    };
    if RoleMap::load(&app, &caller).await?.find(&key).is_some() {
        return Err(exists());
    }
    let req = CreateRole {
        name: key.clone(),
        description: body.description,
        permissions: Vec::new(),
    };
    match roles::create(&app, &caller, req).await {
        Ok(role) => Ok(data(cc_role(&role))),
        Err(service::Error::Domain(crate::domain::DomainError::Conflict { .. })) => Err(exists()),
        Err(e) => Err(e.into()),
    }
}

/// The built-in roles (`default` first) and the account's own.
#[utoipa::path(get, path = "/compat/cometchat/{accountId}/v3/roles", tag = TAG,
    params(("accountId" = Uuid, Path)), security(("cometchat" = [])),
    responses((status = 200, description = "`{data: [role], meta: {pagination}}`")))]
async fn list(State(app): State<App>, CcCaller(caller): CcCaller, query: CcQuery) -> CcResult {
    let page = query.page(100)?;
    let mut all = roles::list(&app, &caller).await?;
    all.sort_by_key(|r| !(r.builtin && r.id == "user"));
    Ok(page.window(all.iter().map(cc_role).collect()))
}

async fn role_named(app: &App, caller: &Caller, name: &str) -> Result<Role, CcError> {
    RoleMap::load(app, caller)
        .await?
        .find(name)
        .cloned()
        .ok_or_else(|| CcError::no_role(name))
}

/// A role by its CometChat name.
#[utoipa::path(get, path = "/compat/cometchat/{accountId}/v3/roles/{role}", tag = TAG,
    params(("accountId" = Uuid, Path), ("role" = String, Path)), security(("cometchat" = [])),
    responses((status = 200, description = "`{data: role}`")))]
async fn get(
    State(app): State<App>,
    CcCaller(caller): CcCaller,
    Path((_account, name)): Path<(Uuid, String)>,
) -> CcResult {
    Ok(data(cc_role(&role_named(&app, &caller, &name).await?)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RolePatch {
    name: Option<String>,
    description: Option<String>,
    #[allow(dead_code)]
    metadata: Option<serde_json::Map<String, Value>>,
    #[allow(dead_code)]
    settings: Option<serde_json::Map<String, Value>>,
    unset: Option<Vec<String>>,
}

/// Changes a role's description (`unset: ["description"]` clears it).
/// Built-in roles are fixed.
#[utoipa::path(put, path = "/compat/cometchat/{accountId}/v3/roles/{role}", tag = TAG,
    params(("accountId" = Uuid, Path), ("role" = String, Path)), security(("cometchat" = [])),
    responses((status = 200, description = "`{data: role}`")))]
async fn update(
    State(app): State<App>,
    CcCaller(caller): CcCaller,
    Path((_account, name)): Path<(Uuid, String)>,
    CcJson(body): CcJson<RolePatch>,
) -> CcResult {
    if let Some(n) = &body.name {
        check_name(n)?;
    }
    let unset = body.unset.unwrap_or_default();
    if let Some(bad) = unset
        .iter()
        .find(|u| !["settings", "description", "metadata"].contains(&u.as_str()))
    {
        return Err(CcError::field(
            "unset",
            format!("The unset field takes settings, description and metadata, not {bad}."),
        ));
    }
    roles::may_manage(&caller)?;
    let role = role_named(&app, &caller, &name).await?;
    let description = match (body.description, unset.iter().any(|u| u == "description")) {
        (Some(_), true) => {
            return Err(CcError::field(
                "description",
                "The description cannot be both set and unset.",
            ));
        }
        (Some(d), false) => Some(Some(d)),
        (None, true) => Some(None),
        (None, false) => None,
    };
    let req = UpdateRole {
        name: None,
        description,
        permissions: None,
    };
    let updated = if req.description.is_some() || role.builtin {
        roles::update(&app, &caller, &role.id, req).await?
    } else {
        // Nothing Roster keeps changes (docs/compat.md): the role as it is.
        roles::get(&app, &caller, &role.id).await?
    };
    Ok(data(cc_role(&updated)))
}

/// Deletes a role nobody holds; `default` (and every built-in role) stays.
#[utoipa::path(delete, path = "/compat/cometchat/{accountId}/v3/roles/{role}", tag = TAG,
    params(("accountId" = Uuid, Path), ("role" = String, Path)), security(("cometchat" = [])),
    responses((status = 200, description = "`{data: {success, message}}`")))]
async fn delete(
    State(app): State<App>,
    CcCaller(caller): CcCaller,
    Path((_account, name)): Path<(Uuid, String)>,
) -> CcResult {
    let role = role_named(&app, &caller, &name).await?;
    if role.builtin {
        return Err(CcError::new(
            StatusCode::BAD_REQUEST,
            "ERR_ROLE_DELETE_DENIED",
            format!("The role {name} is built in and can not be deleted."),
        ));
    }
    match roles::delete(&app, &caller, &role.id).await {
        Ok(()) => Ok(done(format!(
            "Role {} has been deleted successfully.",
            role.name
        ))),
        Err(service::Error::Store(crate::store::StoreError::Conflict { message, .. })) => Err(
            CcError::new(StatusCode::BAD_REQUEST, "ERR_ROLE_DELETE_FAILED", message),
        ),
        Err(e) => Err(e.into()),
    }
}
