//! The route an address verification link leads to (the mail itself is
//! made by [`crate::service::mail`]).

use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::envelope::{ApiError, ApiResult, ok};
use super::extract::{ApiQuery, Ids};
use crate::app::App;
use crate::domain::event::{ActorRef, Change};
use crate::domain::time;
use crate::domain::user::Visibility;
use crate::secret;

pub fn routes() -> OpenApiRouter<App> {
    OpenApiRouter::new().routes(routes!(verify_email))
}

#[derive(Deserialize, utoipa::IntoParams)]
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
    ids: Ids,
    ApiQuery(q): ApiQuery<VerifyParams>,
) -> ApiResult {
    let account = ids.get("accountId");
    let user = app
        .store
        .verify_email(
            account,
            &secret::sha256(q.token.as_bytes()),
            &Change::new(
                time::now(),
                ActorRef::ANONYMOUS,
                Some(super::envelope::request_id()),
            ),
        )
        .await?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::GONE,
                "GONE",
                "this verification link was already used, has expired or is unknown",
            )
            .with_field("token")
        })?;
    let settings = app.settings(account).await?;
    Ok(ok(
        StatusCode::OK,
        "Email address verified",
        serde_json::json!({ "user": user.view(&settings, Visibility::Own) }),
    ))
}
