//! The HTTP layer: routing, middleware (request ids, the envelope, limits,
//! metrics, panics), the OpenAPI document and Swagger UI. One file per
//! resource; handlers stay short: extract → one `service` call → answer.

use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::trace::TraceLayer;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_swagger_ui::SwaggerUi;

use crate::app::App;

pub mod accounts;
pub mod api_keys;
pub mod audit;
pub mod auth;
pub mod client_ip;
pub mod compat;
pub mod envelope;
pub mod extract;
pub mod meta;
pub mod openapi;
pub mod password_reset;
pub mod roles;
pub mod rooms;
pub mod scim;
pub mod settings;
pub mod signup;
pub mod spaces;
mod strict;
pub mod tokens;
pub mod user_mail;
pub mod users;
pub mod webhooks;

use envelope::{ApiError, REQUEST_ID};

#[derive(OpenApi)]
#[openapi(
    info(title = "Roster", description = "Users, rooms, roles, invites, tokens and presence for real-time apps. Every JSON answer is the envelope `{type, success, description, data, error, request_id}`; each operation's answers are that envelope, its `data` as described, its `error` on every refusal."),
    modifiers(&Security),
    security(("bearer" = []), ("apikey" = [])),
)]
struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let c = openapi.components.get_or_insert_with(Default::default);
        c.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("An account API key, or a user's own token"))
                    .build(),
            ),
        );
        c.add_security_scheme(
            "apikey",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("apikey"))),
        );
        c.add_security_scheme(
            "rocketchat",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-Auth-Token",
                "A Rocket.Chat login's authToken (with X-User-Id), or an account API key",
            ))),
        );
        c.add_security_scheme(
            "cometchat",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "apikey",
                "An account API key, as CometChat's REST API takes its key",
            ))),
        );
        c.add_security_scheme(
            "operator_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("The operator key"))
                    .build(),
            ),
        );
    }
}

/// Every route with its OpenAPI description.
fn api() -> (Router<App>, serde_json::Value) {
    let account = OpenApiRouter::new()
        .merge(api_keys::routes())
        .merge(audit::routes())
        .merge(users::routes())
        .merge(rooms::routes())
        .merge(spaces::routes())
        .merge(roles::routes())
        .merge(settings::routes())
        .merge(auth::routes())
        .merge(tokens::routes())
        .merge(signup::routes())
        .merge(password_reset::routes())
        .merge(user_mail::routes())
        .merge(webhooks::routes());
    let (routes, doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(accounts::routes())
        .merge(account)
        .merge(meta::routes())
        .merge(auth::operator_routes())
        .merge(compat::routes())
        .merge(scim::routes())
        .routes(utoipa_axum::routes!(crate::realtime::gateway::realtime))
        .split_for_parts();
    (routes, openapi::truthful(doc))
}

/// The OpenAPI document, as served at `/openapi.json`.
pub fn openapi() -> serde_json::Value {
    api().1
}

/// The whole HTTP application.
pub fn router(app: App) -> Router {
    let (routes, doc) = api();
    let routes = routes.merge(SwaggerUi::new("/docs").external_url_unchecked("/openapi.json", doc));
    with_layers(routes, app)
}

/// Wraps `routes` in Roster's middleware. Public so tests can mount extra
/// routes (a panicking one, say) behind exactly the same stack.
pub fn with_layers(routes: Router<App>, app: App) -> Router {
    let request_id = HeaderName::from_static("x-request-id");
    let limit = app.config.max_body_bytes;
    meta::prometheus();
    routes
        .fallback(fallback)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(limit))
        .layer(CatchPanicLayer::custom(|_| {
            ApiError::internal(anyhow::anyhow!("a handler panicked")).into_response()
        }))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
            let route = req
                .extensions()
                .get::<MatchedPath>()
                .map(|p| p.as_str().to_owned())
                .unwrap_or_default();
            let id = req
                .headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            tracing::info_span!("request", method = %req.method(), route, request_id = id)
        }))
        .layer(middleware::from_fn_with_state(app.clone(), envelope_scope))
        .layer(SetSensitiveRequestHeadersLayer::new([
            axum::http::header::AUTHORIZATION,
            axum::http::header::COOKIE,
            HeaderName::from_static("apikey"),
            HeaderName::from_static("x-auth-token"),
        ]))
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
        .layer(cors(&app.config.cors_allowed_origins))
        .with_state(app)
}

/// CORS for the listed origins only (`cors_allowed_origins`, exact, checked
/// at start-up): their preflights are answered and their pages may read
/// answers, with cookies and the CSRF header. Any other origin gets no CORS
/// header, so its browser keeps the answer from its script. No wildcard:
/// credentials and `*` do not go together.
fn cors(
    origins: &[String],
) -> tower::util::Either<tower_http::cors::CorsLayer, tower::layer::util::Identity> {
    use axum::http::{Method, header};
    use tower_http::cors::{AllowOrigin, CorsLayer};
    let origins: Vec<HeaderValue> = origins.iter().filter_map(|o| o.parse().ok()).collect();
    if origins.is_empty() {
        return tower::util::Either::Right(tower::layer::util::Identity::new());
    }
    tower::util::Either::Left(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            .allow_credentials(true)
            .allow_methods([
                Method::GET,
                Method::POST,
                Method::PUT,
                Method::PATCH,
                Method::DELETE,
            ])
            .allow_headers([
                header::CONTENT_TYPE,
                header::AUTHORIZATION,
                HeaderName::from_static(auth::CSRF_HEADER),
                HeaderName::from_static("apikey"),
                HeaderName::from_static("x-auth-token"),
                HeaderName::from_static("x-user-id"),
                HeaderName::from_static("x-request-id"),
            ])
            .expose_headers([HeaderName::from_static("x-request-id"), header::RETRY_AFTER])
            .max_age(Duration::from_secs(600)),
    )
}

/// Makes the request id available to every envelope, bounds the request's
/// time, records metrics labelled by the matched route, and writes the
/// access log line (target `roster::access`, at `info`): method, matched
/// route, status, latency in µs, request id and client address — never the
/// query string or a header, which may carry credentials.
async fn envelope_scope(State(app): State<App>, mut req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let method = method_label(req.method());
    let client = client_ip::resolve(
        req.extensions()
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|c| c.0.ip()),
        req.headers(),
        &app.trusted_proxies,
    );
    req.extensions_mut().insert(client_ip::ClientIp(client));
    let logged_id = id.clone();
    let started = Instant::now();
    let timeout = Duration::from_secs(app.config.request_timeout_secs);
    let res = REQUEST_ID
        .scope(id, async move {
            match tokio::time::timeout(timeout, next.run(req)).await {
                Ok(res) => res,
                Err(_) => ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "UNAVAILABLE",
                    "the request took too long",
                )
                .into_response(),
            }
        })
        .await;
    let elapsed = started.elapsed();
    let status = res.status().as_u16();
    tracing::info!(
        target: "roster::access",
        method,
        route = route.as_str(),
        status,
        latency_us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
        request_id = logged_id.as_str(),
        client = %client,
        "request"
    );
    metrics::counter!("roster_http_requests_total", "route" => route.clone(), "method" => method, "status" => status.to_string())
        .increment(1);
    metrics::histogram!("roster_http_request_duration_seconds", "route" => route, "method" => method)
        .record(elapsed.as_secs_f64());
    res
}

/// The method as a metric label: the standard ones by name, any other as
/// `other`, so that invented methods add no series (the route label is the
/// matched route or `unmatched`, for the same reason).
fn method_label(m: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// No such route: in the vendor's shape under its compat prefix.
async fn fallback(uri: axum::http::Uri) -> Response {
    compat::unknown_route(uri.path(), StatusCode::NOT_FOUND)
        .or_else(|| scim::unknown_route(uri.path(), StatusCode::NOT_FOUND))
        .unwrap_or_else(|| {
            ApiError::new(StatusCode::NOT_FOUND, "NOT_FOUND", "no such route").into_response()
        })
}

async fn method_not_allowed(uri: axum::http::Uri) -> Response {
    compat::unknown_route(uri.path(), StatusCode::METHOD_NOT_ALLOWED)
        .or_else(|| scim::unknown_route(uri.path(), StatusCode::METHOD_NOT_ALLOWED))
        .unwrap_or_else(|| {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "METHOD_NOT_ALLOWED",
                "this route does not take that method",
            )
            .into_response()
        })
}
