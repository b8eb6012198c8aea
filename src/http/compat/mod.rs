//! Other vendors' protocols, served over the same use cases as the native
//! API: a client written against Rocket.Chat changes its base URL and
//! nothing else. Each adapter only translates — paths, credentials, request
//! fields, answer shapes and error codes — and holds no rule of its own:
//! what may be done, and how it is stored, is `service`'s.

use utoipa_axum::router::OpenApiRouter;

use crate::app::App;

pub mod cometchat;
pub mod rocketchat;

pub fn routes() -> OpenApiRouter<App> {
    OpenApiRouter::new()
        .merge(rocketchat::routes())
        .merge(cometchat::routes())
}
