//! Accounts (tenants), managed by the [`Operator`]: create (with the first
//! API key, whose secret is returned this once), list, read.

use uuid::Uuid;

use super::{Operator, Result};
use crate::app::App;
use crate::domain::account::{Account, Scope, account_name};
use crate::secret::ApiKeySecret;
use crate::store::{NewApiKey, Page, Paged};

/// A new account and the secret of its first API key (scope `full`).
pub struct Created {
    pub account: Account,
    pub api_key: String,
}

/// Creates an account and its first API key.
pub async fn create(app: &App, operator: &Operator, name: &str) -> Result<Created> {
    let account = Account {
        id: Uuid::now_v7(),
        name: account_name(name)?,
        created_at: crate::domain::time::now(),
    };
    let (secret, hash) = ApiKeySecret::generate();
    let key = NewApiKey {
        id: secret.id,
        name: "default".into(),
        scope: Scope::Full,
        secret_hash: hash,
        created_at: account.created_at,
    };
    app.store
        .create_account(&account, &key, &operator.change())
        .await?;
    Ok(Created {
        account,
        api_key: secret.full,
    })
}

/// Lists accounts, oldest first.
pub async fn list(app: &App, _operator: &Operator, page: Page) -> Result<Paged<Account>> {
    Ok(app.store.list_accounts(page).await?)
}

/// Reads one account.
pub async fn get(app: &App, _operator: &Operator, id: Uuid) -> Result<Account> {
    Ok(app.store.get_account(id).await?)
}
