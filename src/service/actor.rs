//! Who is acting: on an account, one of its API keys (with its scope), one
//! of its users (with the permissions their roles grant), a guest holding
//! one of its access links, or someone not yet known on its open routes
//! (login, sign-up, reset); above the accounts, the [`Operator`]. The
//! permission rules that follow from that are held once here for every
//! front door.

use uuid::Uuid;

use super::{Error, Result};
use crate::app::App;
use crate::domain::account::Scope;
use crate::domain::event::{ActorRef, Change};
use crate::domain::permission::{Permission, builtin_role_permissions};
use crate::domain::user::{User, Visibility};
use crate::store::StoreError;

/// The one acting on an account, as a front door authenticated them.
pub struct Actor {
    pub account_id: Uuid,
    pub kind: ActorKind,
    /// The request that acts, recorded with the events it causes.
    pub request_id: Option<String>,
    /// The front door acting (`scim`, `rocketchat`, `cometchat`), recorded
    /// with the events; None for the native API.
    pub surface: Option<&'static str>,
}

pub enum ActorKind {
    ApiKey {
        id: Uuid,
        scope: Scope,
    },
    User {
        user: Box<User>,
        token_id: Uuid,
        /// Everything the user's roles (built-in and custom) grant.
        permissions: Vec<Permission>,
    },
    /// The holder of a guest access link (its token verified): no account
    /// permission, one room.
    Guest {
        link_id: Uuid,
        room_id: Uuid,
    },
    /// Nobody proven yet, on the account's open routes (login, refresh,
    /// sign-up, password reset, address verification): what they present
    /// is the credential the use case checks. Holds no permission.
    Anonymous,
    /// The server's owner acting inside one account (the CLI's `users`,
    /// `api-keys` and `tokens` commands): holds every permission, as a
    /// `full` API key does, and is recorded as the operator.
    Operator,
}

/// The server's owner (the operator key, or the CLI on the server's own
/// database): manages accounts and signing keys, above every account, and
/// holds no permission inside one.
pub struct Operator {
    /// The request that acts, recorded with the events it causes.
    pub request_id: Option<String>,
}

impl Operator {
    /// The operator acting inside `account`, with every permission.
    pub fn on(&self, account: Uuid) -> Actor {
        Actor {
            account_id: account,
            kind: ActorKind::Operator,
            request_id: self.request_id.clone(),
            surface: None,
        }
    }

    /// The context storage records a change by the operator with.
    pub fn change(&self) -> Change {
        Change {
            at: crate::domain::time::now(),
            actor: ActorRef::OPERATOR,
            request_id: self.request_id.clone(),
            surface: None,
        }
    }
}

impl Actor {
    pub fn holds(&self, p: Permission) -> bool {
        match &self.kind {
            ActorKind::ApiKey {
                scope: Scope::Full, ..
            } => true,
            ActorKind::ApiKey {
                scope: Scope::Read, ..
            } => p.is_read_only(),
            ActorKind::Operator => true,
            ActorKind::User { permissions, .. } => permissions.contains(&p),
            ActorKind::Guest { .. } | ActorKind::Anonymous => false,
        }
    }

    /// Refuses with 403 unless the actor holds `p`.
    pub fn require(&self, p: Permission) -> Result<()> {
        if self.holds(p) {
            Ok(())
        } else {
            let name = p.name();
            Err(Error::forbidden(match &self.kind {
                ActorKind::ApiKey { .. } => {
                    format!("a read-only API key cannot do this (needs `{name}`)")
                }
                _ => format!("this needs the `{name}` permission"),
            }))
        }
    }

    pub fn user_id(&self) -> Option<Uuid> {
        match &self.kind {
            ActorKind::User { user, .. } => Some(user.id),
            _ => None,
        }
    }

    /// An API key or the operator: acting for the account as a whole, not
    /// as one of its people.
    pub fn is_account_wide(&self) -> bool {
        matches!(self.kind, ActorKind::ApiKey { .. } | ActorKind::Operator)
    }

    /// The actor as an event records it.
    pub fn as_ref(&self) -> ActorRef {
        match &self.kind {
            ActorKind::ApiKey { id, .. } => ActorRef {
                kind: "api_key",
                id: Some(*id),
            },
            ActorKind::User { user, .. } => ActorRef {
                kind: "user",
                id: Some(user.id),
            },
            ActorKind::Guest { link_id, .. } => ActorRef {
                kind: "guest",
                id: Some(*link_id),
            },
            ActorKind::Anonymous => ActorRef {
                kind: "anonymous",
                id: None,
            },
            ActorKind::Operator => ActorRef::OPERATOR,
        }
    }

    /// Someone not yet proven, on `account`'s open routes.
    pub fn anonymous(account: Uuid, request_id: Option<String>) -> Self {
        Self {
            account_id: account,
            kind: ActorKind::Anonymous,
            request_id,
            surface: None,
        }
    }

    /// The context storage records a change by this actor with.
    pub fn change(&self) -> Change {
        Change {
            at: crate::domain::time::now(),
            actor: self.as_ref(),
            request_id: self.request_id.clone(),
            surface: self.surface,
        }
    }

    /// A change recorded as made by `user` acting on their own behalf, in
    /// this actor's request: a visitor who just proved to be (or became)
    /// that user, as a sign-up does.
    pub fn change_as_user(&self, user: Uuid, at: ::time::OffsetDateTime) -> Change {
        Change {
            at,
            actor: ActorRef {
                kind: "user",
                id: Some(user),
            },
            request_id: self.request_id.clone(),
            surface: self.surface,
        }
    }

    /// How much of `user` this actor may see.
    pub fn sees(&self, user: Uuid) -> Visibility {
        if self.is_account_wide() || self.holds(Permission::ViewOtherUserInfo) {
            Visibility::Full
        } else if self.user_id() == Some(user) {
            Visibility::Own
        } else {
            Visibility::Public
        }
    }

    /// Refuses unless a user actor holds every permission `roles` grant:
    /// nobody hands out more than they have. API keys (`full`) and the
    /// operator may.
    pub async fn may_grant_roles(&self, app: &App, roles: &[String]) -> Result<()> {
        let permissions = match &self.kind {
            ActorKind::ApiKey { .. } | ActorKind::Operator => return Ok(()),
            ActorKind::User { permissions, .. } => permissions,
            ActorKind::Guest { .. } | ActorKind::Anonymous => {
                return Err(Error::forbidden("this needs a user or an API key"));
            }
        };
        let wanted = role_permissions(app, self.account_id, roles).await?;
        if wanted.iter().all(|p| permissions.contains(p)) {
            Ok(())
        } else {
            Err(Error::forbidden_field(
                "a role may only be given by someone who holds all its permissions",
                "roles",
            ))
        }
    }

    /// Refuses unless the actor holds every permission `target` holds —
    /// "only what you hold", applied to the person acted on: nobody changes
    /// the login names, contact details or roles of someone more powerful.
    /// API keys (`full`) and the operator may; `field` is the one named in
    /// the refusal.
    pub async fn may_act_on(&self, app: &App, target: &User, field: &str) -> Result<()> {
        let permissions = match &self.kind {
            ActorKind::ApiKey { .. } | ActorKind::Operator => return Ok(()),
            ActorKind::User { permissions, .. } => permissions,
            ActorKind::Guest { .. } | ActorKind::Anonymous => {
                return Err(Error::forbidden("this needs a user or an API key"));
            }
        };
        let theirs = role_permissions(app, self.account_id, &target.roles).await?;
        if theirs.iter().all(|p| permissions.contains(p)) {
            Ok(())
        } else {
            Err(Error::forbidden_field(
                format!(
                    "only someone who holds every permission this user holds may change their {field}"
                ),
                field,
            ))
        }
    }
}

/// The permissions a set of role ids grants (built-in roles from the
/// catalogue, custom ones from storage; ids naming nothing grant nothing).
pub async fn role_permissions(
    app: &App,
    account: Uuid,
    roles: &[String],
) -> Result<Vec<Permission>, StoreError> {
    let mut out: Vec<Permission> = Vec::new();
    for r in roles {
        let granted = match builtin_role_permissions(r) {
            Some(p) => p.to_vec(),
            None => match app.store.get_role(account, r).await {
                Ok(role) => role.permissions,
                Err(StoreError::NotFound(_)) => Vec::new(),
                Err(e) => return Err(e),
            },
        };
        for p in granted {
            if !out.contains(&p) {
                out.push(p);
            }
        }
    }
    Ok(out)
}
