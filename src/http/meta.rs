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
        // Request durations as histograms (buckets aggregate across nodes;
        // summaries do not), from 1 ms to 10 s.
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                metrics_exporter_prometheus::Matcher::Full(
                    "roster_http_request_duration_seconds".into(),
                ),
                &[
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                ],
            )
            .expect("buckets are given")
            .set_buckets_for_metric(
                metrics_exporter_prometheus::Matcher::Full("roster_sqlite_group_size".into()),
                &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0],
            )
            .expect("buckets are given")
            .build_recorder();
        let handle = recorder.handle();
        // Fails only if another recorder was installed first; then ours
        // still renders (empty) rather than taking the process down.
        let _ = metrics::set_global_recorder(recorder);
        metrics::gauge!("roster_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
        handle
    })
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "operations", security(()),
    responses((status = 200, description = "Alive")))]
async fn healthz() -> Response {
    ok(
        StatusCode::OK,
        "Alive",
        serde_json::json!({ "status": "ok" }),
    )
}

/// Readiness: the database answers.
#[utoipa::path(get, path = "/readyz", tag = "operations", security(()),
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
#[utoipa::path(get, path = "/metrics", tag = "operations", security(()),
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain"),
        (status = 404, description = "Served on the `metrics_listen` address instead")))]
async fn metrics(State(app): State<App>) -> Response {
    if app.config.metrics_listen.is_some() {
        return ApiError::new(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "metrics are served on the metrics_listen address only",
        )
        .into_response();
    }
    render_metrics(State(app)).await
}

/// `/metrics` alone, for the `metrics_listen` address.
pub fn metrics_router(app: App) -> axum::Router {
    axum::Router::new()
        .route("/metrics", axum::routing::get(render_metrics))
        .with_state(app)
}

/// The gauges read at a scrape (the store's pools, queues and outbox, the
/// process), then every metric in the Prometheus text format.
async fn render_metrics(State(app): State<App>) -> Response {
    static PROCESS: OnceLock<metrics_process::Collector> = OnceLock::new();
    let handle = prometheus();
    PROCESS
        .get_or_init(|| {
            let c = metrics_process::Collector::default();
            c.describe();
            c
        })
        .collect();
    match app.store.gauges().await {
        Ok(g) => {
            metrics::gauge!("roster_db_pool_connections", "state" => "idle").set(g.pool_idle);
            metrics::gauge!("roster_db_pool_connections", "state" => "in_use")
                .set(g.pool_open.saturating_sub(g.pool_idle));
            metrics::gauge!("roster_db_pool_max_connections").set(g.pool_max);
            metrics::gauge!("roster_db_writes_waiting").set(g.writes_waiting as f64);
            metrics::gauge!("roster_mail_outbox", "state" => "pending").set(g.mail_pending as f64);
            metrics::gauge!("roster_mail_outbox", "state" => "failed").set(g.mail_failed as f64);
        }
        // The database down: the gauges keep their last values, and
        // `/readyz` says why.
        Err(e) => tracing::warn!(error = %e, "metrics: cannot read the store's gauges"),
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        handle.render(),
    )
        .into_response()
}

/// The public keys that verify Roster's tokens, as an RFC 7517 JWK Set.
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "operations", security(()),
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
