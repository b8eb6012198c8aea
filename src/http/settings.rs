//! Account settings: custom user field declarations.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::envelope::{ApiResult, ok};
use super::extract::{ApiJson, Caller};
use crate::app::App;
use crate::domain::permission::Permission;
use crate::domain::settings::{CustomFieldDef, EmailSettings, Settings, SignupSettings};

pub fn routes() -> OpenApiRouter<App> {
    OpenApiRouter::new().routes(routes!(get_settings, update_settings))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateSettings {
    /// Each named field is declared (or redeclared); `null` removes it.
    #[serde(alias = "customFields")]
    #[schema(value_type = Object)]
    custom_fields: Option<BTreeMap<String, Option<CustomFieldDef>>>,
    /// Self sign-up: `{"enabled": true, "captcha": true}`.
    #[serde(alias = "selfSignup", alias = "self_signup")]
    signup: Option<SignupSettings>,
    /// Mail to users: `{"verify": true}` mails new users a link confirming
    /// their address.
    email: Option<EmailSettings>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct SettingsOne {
    settings: Settings,
}

/// Read the account's settings. API keys, or `manage-settings`.
#[utoipa::path(get, path = "/v1/accounts/{accountId}/settings", tag = "settings",
    params(("accountId" = Uuid, Path)),
    responses((status = 200, description = "Settings", body = SettingsOne)))]
async fn get_settings(State(app): State<App>, caller: Caller) -> ApiResult {
    if !caller.is_api_key() {
        caller.require(Permission::ManageSettings)?;
    }
    let settings = app.store.get_settings(caller.account_id).await?;
    Ok(ok(StatusCode::OK, "Settings", SettingsOne { settings }))
}

/// Change the account's settings. Needs `manage-settings`.
#[utoipa::path(patch, path = "/v1/accounts/{accountId}/settings", tag = "settings",
    params(("accountId" = Uuid, Path)), request_body = UpdateSettings,
    responses((status = 200, description = "Settings updated", body = SettingsOne)))]
async fn update_settings(
    State(app): State<App>,
    caller: Caller,
    ApiJson(body): ApiJson<UpdateSettings>,
) -> ApiResult {
    caller.require(Permission::ManageSettings)?;
    // Whatever part of the change was written, this node's cache forgets
    // the old settings.
    let written: ApiResult<Settings> = async {
        let settings = match body.custom_fields {
            Some(change) => {
                app.store
                    .update_custom_fields(caller.account_id, change, &caller.change())
                    .await?
            }
            None => app.store.get_settings(caller.account_id).await?,
        };
        let settings = match body.signup {
            Some(signup) => {
                app.store
                    .set_signup_settings(caller.account_id, &signup, &caller.change())
                    .await?
            }
            None => settings,
        };
        let settings = match body.email {
            Some(email) => {
                app.store
                    .set_email_settings(caller.account_id, &email, &caller.change())
                    .await?
            }
            None => settings,
        };
        Ok(settings)
    }
    .await;
    app.forget_settings(caller.account_id);
    let settings = written?;
    Ok(ok(
        StatusCode::OK,
        "Settings updated",
        SettingsOne { settings },
    ))
}
