//! The route an address verification link leads to (the mail itself is
//! made by [`crate::service::mail`], the check by
//! [`crate::service::sessions::verify_email`]).

use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::envelope::{ApiResult, ok};
use super::extract::{ApiQuery, Visitor};
use crate::app::App;
use crate::service::sessions;

pub fn routes() -> OpenApiRouter<App> {
    OpenApiRouter::new().routes(routes!(verify_email))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct VerifyParams {
    /// The `token` of the mailed link.
    token: String,
}

/// Confirm an email address by following the mailed link (no credential:
/// the link is one). Works once, for 7 days, and only while the address is
/// still the user's.
#[utoipa::path(get, path = "/v1/accounts/{accountId}/auth/verify-email", tag = "sessions",
    params(("accountId" = Uuid, Path), VerifyParams), security(()),
    responses((status = 200, description = "Address verified"),
        (status = 410, description = "The link was used, expired or is unknown")))]
async fn verify_email(
    State(app): State<App>,
    Visitor(visitor): Visitor,
    ApiQuery(q): ApiQuery<VerifyParams>,
) -> ApiResult {
    let user = sessions::verify_email(&app, &visitor, &q.token).await?;
    Ok(ok(
        StatusCode::OK,
        "Email address verified",
        serde_json::json!({ "user": user }),
    ))
}
