//! Account settings: custom user field declarations, self sign-up and its
//! captcha, mail to users — read and changed with `manage-settings`.

use super::{Actor, Result};
use crate::app::App;
use crate::domain::permission::Permission;
use crate::domain::settings::{Settings, UpdateSettings};

/// Reads the account's settings. API keys, or `manage-settings`.
pub async fn get(app: &App, actor: &Actor) -> Result<Settings> {
    if !actor.is_account_wide() {
        actor.require(Permission::ManageSettings)?;
    }
    Ok(app.store.get_settings(actor.account_id).await?)
}

/// Changes the account's settings, part by part. Needs `manage-settings`.
pub async fn update(app: &App, actor: &Actor, req: UpdateSettings) -> Result<Settings> {
    actor.require(Permission::ManageSettings)?;
    let account = actor.account_id;
    // Whatever part of the change was written, this node's cache forgets
    // the old settings.
    let written: Result<Settings> = async {
        let settings = match req.custom_fields {
            Some(change) => {
                app.store
                    .update_custom_fields(account, change, &actor.change())
                    .await?
            }
            None => app.store.get_settings(account).await?,
        };
        let settings = match req.signup {
            Some(signup) => {
                app.store
                    .set_signup_settings(account, &signup, &actor.change())
                    .await?
            }
            None => settings,
        };
        let settings = match req.email {
            Some(email) => {
                app.store
                    .set_email_settings(account, &email, &actor.change())
                    .await?
            }
            None => settings,
        };
        Ok(settings)
    }
    .await;
    app.forget_settings(account);
    written
}
