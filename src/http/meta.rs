//! Operational routes: health, readiness, metrics and the JWKS.

use std::sync::OnceLock;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::envelope::{ApiError, ApiResult, ok};
use crate::app::App;

pub fn routes() -> OpenApiRouter<App> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics))
        .routes(routes!(jwks))
}

/// The process-wide Prometheus recorder (the `metrics` facade has exactly
/// one per process, so it is installed once and shared).
pub fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        // Fails only if another recorder was installed first; then ours
        // still renders (empty) rather than taking the process down.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "Alive")))]
async fn healthz() -> Response {
    ok(
        StatusCode::OK,
        "Alive",
        serde_json::json!({ "status": "ok" }),
    )
}

/// Readiness: the database answers.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, description = "Ready"), (status = 503, description = "Not ready")))]
async fn readyz(State(app): State<App>) -> ApiResult {
    let backend = app.store.backend();
    app.store.ping().await.map_err(|e| {
        tracing::warn!(error = %e, "readiness check failed");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "UNAVAILABLE",
            format!("the {backend} database does not answer"),
        )
    })?;
    // Redis down does not make a node unready: REST, revocation (checked in
    // the database) and per-node presence go on; the answer says so.
    let redis = match &app.redis {
        None => serde_json::Value::Null,
        Some(r) => match r.ping().await {
            Ok(()) => "up".into(),
            Err(_) => "down".into(),
        },
    };
    Ok(ok(
        StatusCode::OK,
        "Ready",
        serde_json::json!({
            "status": "ready",
            "database": backend,
            "bus": app.bus.kind(),
            "presence": app.hub.presence_mode(),
            "redis": redis,
            "node": app.node,
        }),
    ))
}

/// Prometheus metrics, in the Prometheus text format.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
async fn metrics() -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        prometheus().render(),
    )
        .into_response()
}

/// The public keys that verify Roster's tokens, as an RFC 7517 JWK Set.
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "operations",
    responses((status = 200, description = "JWK Set", content_type = "application/json")))]
async fn jwks(State(app): State<App>) -> Response {
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        app.keys.jwks().to_string(),
    )
        .into_response()
}
