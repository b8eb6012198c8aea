//! Account settings: custom user field declarations, self sign-up, mail.

use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::envelope::{ApiResult, ok};
use super::extract::{ApiJson, Caller};
use crate::app::App;
use crate::domain::settings::{Settings, UpdateSettings};
use crate::service::settings;

pub fn routes() -> OpenApiRouter<App> {
    OpenApiRouter::new().routes(routes!(get_settings, update_settings))
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
    let settings = settings::get(&app, &caller).await?;
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
    let settings = settings::update(&app, &caller, body).await?;
    Ok(ok(
        StatusCode::OK,
        "Settings updated",
        SettingsOne { settings },
    ))
}
