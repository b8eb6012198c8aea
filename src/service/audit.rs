//! The audit log: an account's events as its administrators read them —
//! filtered, newest first, one by one or all at once for export — with
//! private fields cut to what the reader may see; and the retention job
//! that prunes events older than `audit_retention_days`. Reading needs
//! `view-audit-log` (admins and `full` API keys hold it, `read` keys do
//! not). Nothing here writes an event or changes one: the log is
//! append-only (on PostgreSQL a trigger refuses any other change).

use std::sync::Arc;

use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{Actor, Error, Result};
use crate::app::App;
use crate::domain::event::{AuditFilter, Event};
use crate::domain::permission::Permission;
use crate::domain::user::{Visibility, redact_user_data};
use crate::store::Store;

/// `GET /audit` filters as sent (text), parsed here.
#[derive(Debug, Default)]
pub struct AuditQuery {
    /// `user.created`, or a prefix: `user.*`.
    pub kind: Option<String>,
    pub actor_id: Option<String>,
    pub subject_id: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
}

/// An event as the audit log answers it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuditEvent {
    pub id: Uuid,
    pub seq: i64,
    #[serde(rename = "type")]
    pub kind: String,
    pub actor: AuditRef,
    pub subject: AuditRef,
    /// RFC 3339.
    pub at: String,
    pub request_id: Option<String>,
    /// The front door it came through: `scim`, `rocketchat`, `cometchat`;
    /// null for the native API and the server itself.
    pub surface: Option<String>,
    /// The resource after the change, as far as the reader may see it.
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
}

/// Who acted, or what was acted on.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuditRef {
    pub kind: String,
    pub id: Option<String>,
}

/// One page: events newest first, and the `seq` to continue below.
pub struct AuditPage {
    pub events: Vec<AuditEvent>,
    pub next: Option<i64>,
}

fn parse_time(field: &str, v: Option<&str>) -> Result<Option<OffsetDateTime>> {
    v.map(|s| {
        OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).map_err(|_| {
            Error::validation(field, "must be an RFC 3339 time (2026-01-31T12:00:00Z)")
        })
    })
    .transpose()
}

impl AuditQuery {
    /// The filter it asks for, or the refusal naming the field.
    pub fn parse(self) -> Result<AuditFilter> {
        let (kind, kind_prefix) = match self.kind {
            None => (None, None),
            Some(t) => {
                let (base, prefix) = match t.strip_suffix(".*") {
                    Some(base) => (base, true),
                    None => (t.as_str(), false),
                };
                let valid = !base.is_empty()
                    && base.len() <= 100
                    && base.split('.').all(|p| {
                        !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
                    });
                if !valid {
                    return Err(Error::validation(
                        "type",
                        "must be an event type (user.created) or a prefix of one (user.*)",
                    ));
                }
                if prefix {
                    (None, Some(format!("{base}.")))
                } else {
                    (Some(base.to_owned()), None)
                }
            }
        };
        let actor_id = self
            .actor_id
            .map(|s| {
                Uuid::try_parse(&s).map_err(|_| Error::validation("actor_id", "must be an id"))
            })
            .transpose()?;
        let subject_id = match self.subject_id {
            Some(s) if s.is_empty() || s.len() > 200 => {
                return Err(Error::validation(
                    "subject_id",
                    "must be 1 to 200 characters",
                ));
            }
            other => other,
        };
        let since = parse_time("since", self.since.as_deref())?;
        let until = parse_time("until", self.until.as_deref())?;
        // `until` at or before `since` is an empty window: no events, as
        // every other filter that matches nothing (a request the OpenAPI
        // document can describe: it cannot compare two parameters).
        Ok(AuditFilter {
            kind,
            kind_prefix,
            actor_id,
            subject_id,
            since,
            until,
        })
    }
}

/// A page of the account's audit log, newest first: `limit` events with a
/// `seq` below `before` (`page`: `(before, limit)`). Needs
/// `view-audit-log`. A bad filter or page is refused only once the actor
/// may read at all.
pub async fn list(
    app: &App,
    actor: &Actor,
    query: AuditQuery,
    page: Result<(Option<i64>, u32)>,
) -> Result<AuditPage> {
    actor.require(Permission::ViewAuditLog)?;
    let (before, limit) = page?;
    let filter = query.parse()?;
    // One more than asked: whether there is a next page.
    let mut found = app
        .store
        .audit_events(actor.account_id, &filter, before, limit + 1)
        .await?;
    let next = if found.len() > limit as usize {
        found.truncate(limit as usize);
        found.last().map(|e| e.seq)
    } else {
        None
    };
    let settings = app.settings(actor.account_id).await?;
    Ok(AuditPage {
        events: found
            .into_iter()
            .map(|e| view(actor, &settings, e))
            .collect(),
        next,
    })
}

/// One event of the account. Needs `view-audit-log`.
pub async fn get(app: &App, actor: &Actor, id: Uuid) -> Result<AuditEvent> {
    actor.require(Permission::ViewAuditLog)?;
    let event = app.store.audit_event(actor.account_id, id).await?;
    let settings = app.settings(actor.account_id).await?;
    Ok(view(actor, &settings, event))
}

/// The event as `actor` may see it: a user's private fields only for those
/// who may see them on the user itself (API keys, `view-other-user-info`,
/// the user themself for their own contact details).
fn view(actor: &Actor, settings: &crate::domain::settings::Settings, e: Event) -> AuditEvent {
    let mut data = e.data;
    if e.subject_kind == "user" {
        let who = match Uuid::try_parse(&e.subject_id) {
            Ok(id) => actor.sees(id),
            Err(_) => Visibility::Public,
        };
        redact_user_data(&mut data, settings, who);
    }
    AuditEvent {
        id: e.id,
        seq: e.seq,
        kind: e.kind,
        actor: AuditRef {
            kind: e.actor_kind,
            id: e.actor_id.map(|id| id.to_string()),
        },
        subject: AuditRef {
            kind: e.subject_kind,
            id: Some(e.subject_id),
        },
        at: crate::domain::time::format(e.at),
        request_id: e.request_id,
        surface: e.surface,
        data,
    }
}

/// Events pruned per statement: bounded transactions, so that a first run
/// over years of events does not hold the writer for long.
const PRUNE_BATCH: u32 = 5_000;

/// Every hour (and once at start), deletes the events older than
/// `retention_days` (0: keeps them all), logging how many.
pub fn spawn_retention(store: Arc<dyn Store>, retention_days: u32) {
    if retention_days == 0 {
        return;
    }
    tokio::spawn(async move {
        let mut every = tokio::time::interval(std::time::Duration::from_secs(3600));
        loop {
            every.tick().await;
            let before =
                crate::domain::time::now() - time::Duration::days(i64::from(retention_days));
            match prune(store.as_ref(), before).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(
                    pruned = n,
                    retention_days,
                    "audit log: events past retention deleted"
                ),
                Err(e) => tracing::warn!(error = %e, "audit log: cannot prune old events"),
            }
        }
    });
}

/// Deletes every event older than `before`, batch by batch; how many.
pub async fn prune(store: &dyn Store, before: OffsetDateTime) -> Result<u64> {
    let mut total = 0;
    loop {
        let n = store.prune_events(before, PRUNE_BATCH).await?;
        total += n;
        if n < u64::from(PRUNE_BATCH) {
            return Ok(total);
        }
    }
}
