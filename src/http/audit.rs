//! The audit log's routes: `GET /audit` (filtered pages, newest first),
//! `GET /audit/{eventId}`, `GET /audit/export` (every matching event as
//! NDJSON, streamed). Read-only: any other method answers 405.

use axum::body::Body;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::envelope::{ApiError, ApiResult, ok};
use super::extract::{ApiQuery, Caller, Ids, page_limit};
use crate::app::App;
use crate::service::audit::{self, AuditEvent, AuditQuery};
use crate::service::{Actor, Error};

pub fn routes() -> OpenApiRouter<App> {
    OpenApiRouter::new()
        .routes(routes!(list_events))
        .routes(routes!(export_events))
        .routes(routes!(get_event))
}

/// The filters of `GET /audit` and `GET /audit/export`.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditParams {
    /// An event type (`user.created`) or a prefix of one (`user.*`).
    #[serde(rename = "type")]
    #[param(
        rename = "type",
        max_length = 102,
        pattern = r"^[a-z_]+(\.[a-z_]+)*(\.\*)?$"
    )]
    kind: Option<String>,
    /// Events by this actor (a user's or an API key's id).
    #[param(format = Uuid)]
    actor_id: Option<String>,
    /// Events about this subject (its id).
    #[param(min_length = 1, max_length = 200)]
    subject_id: Option<String>,
    /// At or after this time (RFC 3339).
    #[param(format = DateTime)]
    since: Option<String>,
    /// Before this time (RFC 3339).
    #[param(format = DateTime)]
    until: Option<String>,
    /// Page size (`GET /audit` only): 1–100, default 50; outside that range refused.
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u32>,
    /// `next_cursor` of the page before (`GET /audit` only).
    #[param(pattern = r"^([A-Za-f][A-Za-z0-9_-]{9}[AEIMQUYcgkosw048])?$")]
    cursor: Option<String>,
}

impl AuditParams {
    fn query(&self) -> AuditQuery {
        AuditQuery {
            kind: self.kind.clone(),
            actor_id: self.actor_id.clone(),
            subject_id: self.subject_id.clone(),
            since: self.since.clone(),
            until: self.until.clone(),
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct AuditList {
    events: Vec<AuditEvent>,
    next_cursor: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct AuditOne {
    event: AuditEvent,
}

fn encode_seq(seq: i64) -> String {
    URL_SAFE_NO_PAD.encode(seq.to_be_bytes())
}

fn decode_seq(cursor: &str) -> Option<i64> {
    let bytes: [u8; 8] = URL_SAFE_NO_PAD.decode(cursor).ok()?.try_into().ok()?;
    Some(i64::from_be_bytes(bytes)).filter(|s| *s > 0)
}

/// `limit` (1–100, default 50) and the cursor, as the audit log pages.
fn audit_page(limit: Option<u32>, cursor: Option<&str>) -> Result<(Option<i64>, u32), Error> {
    let limit = page_limit(limit)?;
    let before = match cursor {
        None | Some("") => None,
        Some(c) => Some(
            decode_seq(c)
                .ok_or_else(|| Error::validation("cursor", "is not a cursor this server issued"))?,
        ),
    };
    Ok((before, limit))
}

/// The account's audit log, newest first. Needs `view-audit-log`.
#[utoipa::path(get, path = "/v1/accounts/{accountId}/audit", tag = "audit",
    params(("accountId" = Uuid, Path), AuditParams),
    responses((status = 200, description = "Events", body = AuditList)))]
async fn list_events(
    State(app): State<App>,
    caller: Caller,
    ApiQuery(q): ApiQuery<AuditParams>,
) -> ApiResult {
    let page = audit_page(q.limit, q.cursor.as_deref());
    let page = audit::list(&app, &caller, q.query(), page).await?;
    Ok(ok(
        StatusCode::OK,
        "Events",
        AuditList {
            events: page.events,
            next_cursor: page.next.map(encode_seq),
        },
    ))
}

/// One event of the account. Needs `view-audit-log`.
#[utoipa::path(get, path = "/v1/accounts/{accountId}/audit/{eventId}", tag = "audit",
    params(("accountId" = Uuid, Path), ("eventId" = Uuid, Path)),
    responses((status = 200, description = "Event", body = AuditOne)))]
async fn get_event(State(app): State<App>, caller: Caller, ids: Ids) -> ApiResult {
    let event = audit::get(&app, &caller, ids.get("eventId")).await?;
    Ok(ok(StatusCode::OK, "Event", AuditOne { event }))
}

/// Events per page of an export.
const EXPORT_PAGE: u32 = 500;

/// Every matching event, newest first, one JSON object per line
/// (`application/x-ndjson`), streamed page by page. Needs `view-audit-log`.
#[utoipa::path(get, path = "/v1/accounts/{accountId}/audit/export", tag = "audit",
    params(("accountId" = Uuid, Path),
        ("type" = Option<String>, Query, description = "An event type (`user.created`) or a prefix of one (`user.*`)",
            max_length = 102, pattern = r"^[a-z_]+(\.[a-z_]+)*(\.\*)?$"),
        ("actor_id" = Option<String>, Query, format = Uuid, description = "Events by this actor (a user's or an API key's id)"),
        ("subject_id" = Option<String>, Query, min_length = 1, max_length = 200, description = "Events about this subject (its id)"),
        ("since" = Option<String>, Query, format = DateTime, description = "At or after this time (RFC 3339)"),
        ("until" = Option<String>, Query, format = DateTime, description = "Before this time (RFC 3339)")),
    responses((status = 200, description = "Events as NDJSON", content_type = "application/x-ndjson")))]
async fn export_events(
    State(app): State<App>,
    caller: Caller,
    ApiQuery(q): ApiQuery<AuditParams>,
) -> Result<Response, ApiError> {
    let page = if q.limit.is_some() || q.cursor.is_some() {
        Err(Error::validation(
            if q.limit.is_some() { "limit" } else { "cursor" },
            "an export has no pages: leave out limit and cursor",
        ))
    } else {
        Ok((None, EXPORT_PAGE))
    };
    // The first page before the answer starts: a refusal is an envelope.
    let first = audit::list(&app, &caller, q.query(), page).await?;
    let state = Some((app, caller, q, first));
    let stream = futures::stream::unfold(state, |state| async move {
        let (app, caller, q, page) = state?;
        let mut chunk = Vec::new();
        for e in &page.events {
            if serde_json::to_writer(&mut chunk, e).is_err() {
                return Some((
                    Err(std::io::Error::other("an event did not serialize")),
                    None,
                ));
            }
            chunk.push(b'\n');
        }
        let next = match page.next {
            None => None,
            Some(before) => match next_page(&app, &caller, &q, before).await {
                Ok(p) => Some((app, caller, q, p)),
                Err(e) => {
                    tracing::warn!(error = ?e, "audit export: a page could not be read");
                    return Some((Err(std::io::Error::other("the export was cut short")), None));
                }
            },
        };
        Some((Ok::<_, std::io::Error>(bytes::Bytes::from(chunk)), next))
    });
    Ok((
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(stream),
    )
        .into_response())
}

async fn next_page(
    app: &App,
    caller: &Actor,
    q: &AuditParams,
    before: i64,
) -> Result<audit::AuditPage, Error> {
    audit::list(app, caller, q.query(), Ok((Some(before), EXPORT_PAGE))).await
}
