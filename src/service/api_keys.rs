//! An account's API keys: create (the secret is returned this once; only
//! its hash is kept), list, revoke — all needing `manage-api-keys`.

use uuid::Uuid;

use super::{Actor, Error, Result};
use crate::app::App;
use crate::domain::account::{ApiKey, CreateKey, Scope, key_name};
use crate::domain::permission::Permission;
use crate::secret::ApiKeySecret;
use crate::store::{NewApiKey, Page, Paged};

/// A new key and its secret, shown this once.
pub struct Created {
    pub secret: String,
    pub key: ApiKey,
}

/// Creates an API key (scope `full` unless `read` is asked for). Needs
/// `manage-api-keys`.
pub async fn create(app: &App, actor: &Actor, req: CreateKey) -> Result<Created> {
    actor.require(Permission::ManageApiKeys)?;
    let name = key_name(&req.name)?;
    let scope = match req.scope.as_deref() {
        None => Scope::Full,
        Some(s) => {
            Scope::parse(s).ok_or_else(|| Error::validation("scope", "must be `full` or `read`"))?
        }
    };
    let (secret, hash) = ApiKeySecret::generate();
    let new = NewApiKey {
        id: secret.id,
        name,
        scope,
        secret_hash: hash,
        created_at: crate::domain::time::now(),
    };
    app.store
        .create_api_key(actor.account_id, &new, &actor.change())
        .await?;
    Ok(Created {
        secret: secret.full,
        key: ApiKey {
            id: new.id,
            name: new.name,
            scope,
            created_at: new.created_at,
            last_used_at: None,
        },
    })
}

/// Lists the account's live API keys (never their secrets). Needs
/// `manage-api-keys`. A bad `page` is refused only once the actor may read
/// at all.
pub async fn list(app: &App, actor: &Actor, page: Result<Page>) -> Result<Paged<ApiKey>> {
    actor.require(Permission::ManageApiKeys)?;
    Ok(app.store.list_api_keys(actor.account_id, page?).await?)
}

/// Revokes an API key; it stops working at once (on this node's cache
/// too). Needs `manage-api-keys`.
pub async fn revoke(app: &App, actor: &Actor, key: Uuid) -> Result<()> {
    actor.require(Permission::ManageApiKeys)?;
    app.store
        .revoke_api_key(actor.account_id, key, &actor.change())
        .await?;
    app.forget_api_key(key);
    Ok(())
}
