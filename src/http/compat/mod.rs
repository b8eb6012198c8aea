//! Other vendors' protocols, served over the same use cases as the native
//! API: a client written against Rocket.Chat changes its base URL and
//! nothing else. Each adapter only translates — paths, credentials, request
//! fields, answer shapes and error codes — and holds no rule of its own:
//! what may be done, and how it is stored, is `service`'s.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use utoipa_axum::router::OpenApiRouter;

use crate::app::App;

pub mod cometchat;
pub mod rocketchat;

/// A path under a vendor's prefix that no route serves (`404`), or a route
/// that does not take the method (`405`), answered in the vendor's shape;
/// `None` outside the compat prefixes.
pub fn unknown_route(path: &str, status: StatusCode) -> Option<Response> {
    if path.starts_with("/compat/cometchat/") {
        return Some(cometchat::unknown_route(status));
    }
    path.starts_with("/compat/rocketchat/").then(|| {
        let body = serde_json::json!({ "success": false, "error": "Resource not found" });
        (status, axum::Json(body)).into_response()
    })
}

pub fn routes() -> OpenApiRouter<App> {
    OpenApiRouter::new()
        .merge(rocketchat::routes())
        .merge(cometchat::routes())
}
