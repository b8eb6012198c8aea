//! Webhooks: an account's endpoints (create — the signing secret is shown
//! this once —, list, read, change, delete; all need `manage-settings`),
//! their delivery log, and the worker that delivers the event log to them.
//!
//! Delivery is durable and at least once. The worker reads the event log
//! forward from a cursor kept in the database (`webhooks.fanout_seq`), and
//! stores one delivery row per matching endpoint *in the same transaction
//! that moves the cursor* (compare-and-set: of nodes racing, one wins); so
//! nothing is taken from memory and nothing is lost across `kill -9` or a
//! receiver that is down for hours. Due deliveries are leased (PostgreSQL
//! `FOR UPDATE SKIP LOCKED`), so each is attempted by one node at a time,
//! and a node that dies mid-delivery hands it on when its lease lapses.
//! Each attempt is a Standard Webhooks `POST` (`webhook-id` = the event id,
//! `webhook-timestamp`, `webhook-signature: v1,…`), with no redirects
//! followed, refused (after DNS) to private addresses unless
//! `webhook_allow_private_targets`, answered within 10 s; anything but a
//! 2xx is retried on `webhook_retry_schedule`, with ±10 % jitter.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use uuid::Uuid;

use super::{Actor, Error, Result};
use crate::app::App;
use crate::domain::event::Event;
use crate::domain::permission::Permission;
use crate::domain::webhook::{
    self, Attempt, CreateWebhook, Delivery, UpdateWebhook, Webhook, event_patterns, webhook_url,
};
use crate::store::{DueDelivery, NewDelivery, Page, Paged};

/// A new endpoint and its secret, shown this once.
pub struct Created {
    pub webhook: Webhook,
    pub secret: String,
}

/// Refuses an URL whose host is, or resolves to, an address a webhook may
/// not reach (see [`webhook::is_private`]), unless the operator allows them.
async fn check_target(app: &App, url: &url::Url) -> std::result::Result<(), String> {
    if app.config.webhook_allow_private_targets {
        return Ok(());
    }
    let host = url.host_str().unwrap_or_default();
    let port = url.port_or_known_default().unwrap_or(443);
    let addrs: Vec<IpAddr> = match host.trim_matches(['[', ']']).parse::<IpAddr>() {
        Ok(ip) => vec![ip],
        Err(_) => tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| format!("{host} does not resolve: {e}"))?
            .map(|a| a.ip())
            .collect(),
    };
    match addrs.iter().find(|ip| webhook::is_private(**ip)) {
        Some(ip) => Err(format!(
            "{host} is a private address ({ip}); set webhook_allow_private_targets to allow it"
        )),
        None => Ok(()),
    }
}

async fn valid_url(app: &App, s: &str) -> Result<String> {
    let url = webhook_url(s)?;
    check_target(app, &url)
        .await
        .map_err(|e| Error::validation("url", e))?;
    Ok(s.to_owned())
}

fn description(d: Option<String>) -> Result<Option<String>> {
    Ok(
        d.map(|d| crate::domain::text::free_text("description", &d, 500))
            .transpose()?,
    )
}

/// Creates an endpoint. Needs `manage-settings`.
pub async fn create(app: &App, actor: &Actor, req: CreateWebhook) -> Result<Created> {
    actor.require(Permission::ManageSettings)?;
    let url = valid_url(app, &req.url).await?;
    let events = event_patterns(&req.events)?;
    let now = crate::domain::time::now();
    let hook = Webhook {
        id: Uuid::now_v7(),
        url,
        events,
        description: description(req.description)?,
        enabled: req.enabled.unwrap_or(true),
        created_at: now,
        updated_at: now,
    };
    let secret = webhook::new_secret();
    app.store
        .create_webhook(actor.account_id, &hook, &secret, &actor.change())
        .await?;
    Ok(Created {
        webhook: hook,
        secret,
    })
}

pub async fn list(app: &App, actor: &Actor, page: Result<Page>) -> Result<Paged<Webhook>> {
    actor.require(Permission::ManageSettings)?;
    Ok(app.store.list_webhooks(actor.account_id, page?).await?)
}

pub async fn get(app: &App, actor: &Actor, id: Uuid) -> Result<Webhook> {
    actor.require(Permission::ManageSettings)?;
    Ok(app.store.get_webhook(actor.account_id, id).await?)
}

/// Changes what is given of an endpoint. Needs `manage-settings`.
pub async fn update(app: &App, actor: &Actor, id: Uuid, req: UpdateWebhook) -> Result<Webhook> {
    actor.require(Permission::ManageSettings)?;
    let mut hook = app.store.get_webhook(actor.account_id, id).await?;
    if let Some(url) = req.url {
        hook.url = valid_url(app, &url).await?;
    }
    if let Some(events) = req.events {
        hook.events = event_patterns(&events)?;
    }
    if req.description.is_some() {
        hook.description = description(req.description)?;
    }
    if let Some(enabled) = req.enabled {
        hook.enabled = enabled;
    }
    hook.updated_at = crate::domain::time::now();
    app.store
        .update_webhook(actor.account_id, &hook, &actor.change())
        .await?;
    Ok(hook)
}

pub async fn delete(app: &App, actor: &Actor, id: Uuid) -> Result<()> {
    actor.require(Permission::ManageSettings)?;
    Ok(app
        .store
        .delete_webhook(actor.account_id, id, &actor.change())
        .await?)
}

/// An endpoint's deliveries, oldest first, each with its attempts.
pub async fn deliveries(
    app: &App,
    actor: &Actor,
    id: Uuid,
    page: Result<Page>,
) -> Result<Paged<Delivery>> {
    actor.require(Permission::ManageSettings)?;
    let page = page?;
    app.store.get_webhook(actor.account_id, id).await?;
    Ok(app
        .store
        .list_deliveries(actor.account_id, id, page)
        .await?)
}

// --- the worker -----------------------------------------------------------------

/// Events read per fan-out step, and deliveries attempted at once.
const FANOUT_BATCH: u32 = 500;
const CLAIM_BATCH: i64 = 32;
/// How long a claimed delivery is this node's: longer than an attempt.
const LEASE: time::Duration = time::Duration::seconds(60);
/// At most this much of a receiver's answer is kept.
const EXCERPT: usize = 1024;

/// Runs the fan-out and the deliveries, every quarter second.
pub fn spawn_worker(app: App) {
    let schedule = webhook::parse_schedule(&app.config.webhook_retry_schedule).unwrap_or_default();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = fan_out(&app).await {
                tracing::warn!(error = %e, "webhooks: the fan-out failed; retrying");
            }
            match app
                .store
                .claim_deliveries(crate::domain::time::now(), LEASE, CLAIM_BATCH)
                .await
            {
                Ok(due) => {
                    let attempts = due.into_iter().map(|d| deliver(&app, d, &schedule));
                    futures::future::join_all(attempts).await;
                }
                Err(e) => tracing::warn!(error = %e, "webhooks: cannot claim deliveries"),
            }
        }
    });
}

/// One step of the fan-out: the next settled events, matched to the
/// endpoints of their accounts, stored as deliveries with the cursor moved
/// past them.
async fn fan_out(app: &App) -> Result<()> {
    let from: i64 = app
        .store
        .get_state("webhooks.fanout_seq")
        .await?
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let events = app.store.events_after(None, from, FANOUT_BATCH).await?;
    let Some(last) = events.last().map(|e| e.seq) else {
        return Ok(());
    };
    let mut accounts: Vec<Uuid> = events.iter().filter_map(|e| e.account_id).collect();
    accounts.sort_unstable();
    accounts.dedup();
    let targets = app.store.webhook_targets(&accounts).await?;
    let mut deliveries = Vec::new();
    for e in &events {
        let Some(account) = e.account_id else {
            continue;
        };
        for t in targets.iter().filter(|t| t.account_id == account) {
            if e.at >= t.created_at && webhook::matches(&t.events, &e.kind) {
                deliveries.push(NewDelivery {
                    id: Uuid::now_v7(),
                    account_id: account,
                    webhook_id: t.id,
                    event_id: e.id,
                    event_seq: e.seq,
                    kind: e.kind.clone(),
                    payload: payload(e),
                    created_at: crate::domain::time::now(),
                });
            }
        }
    }
    app.store
        .enqueue_deliveries(from, last, &deliveries)
        .await?;
    Ok(())
}

/// The body Standard Webhooks names: `{type, timestamp, data}`, with who
/// acted and on what beside.
fn payload(e: &Event) -> String {
    serde_json::json!({
        "type": e.kind,
        "timestamp": crate::domain::time::format(e.at),
        "data": e.data,
        "actor": { "kind": e.actor_kind, "id": e.actor_id },
        "subject": { "kind": e.subject_kind, "id": e.subject_id },
    })
    .to_string()
}

/// One attempt of `d`, recorded with its outcome.
async fn deliver(app: &App, d: DueDelivery, schedule: &[Duration]) {
    let started = Instant::now();
    let outcome = attempt(app, &d).await;
    let at = crate::domain::time::now();
    let latency_ms = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
    let (delivered, status_code, response, error) = match outcome {
        Ok((status, body)) => (
            (200..300).contains(&status),
            Some(i32::from(status)),
            Some(body),
            None,
        ),
        Err(e) => (false, None, None, Some(e)),
    };
    let next = if delivered {
        None
    } else {
        usize::try_from(d.attempts)
            .ok()
            .and_then(|n| schedule.get(n))
            .map(|wait| at + jitter(*wait))
    };
    let record = Attempt {
        at,
        status_code,
        latency_ms,
        response,
        error,
    };
    if !delivered {
        tracing::info!(delivery = %d.id, webhook = %d.webhook_id, status = ?status_code,
            attempts = d.attempts + 1, gave_up = next.is_none(), "webhook delivery failed");
    }
    if let Err(e) = app
        .store
        .finish_delivery(d.id, &record, delivered, next)
        .await
    {
        tracing::warn!(error = %e, delivery = %d.id, "webhooks: cannot record an attempt (it is tried again when its lease lapses)");
    }
}

/// `wait` ± 10 %.
fn jitter(wait: Duration) -> time::Duration {
    let spread = wait.as_millis() as f64 * 0.1;
    let r = f64::from(crate::secret::random_bytes::<2>()[0]) / 255.0 * 2.0 - 1.0;
    let ms = (wait.as_millis() as f64 + spread * r).max(0.0);
    time::Duration::milliseconds(ms as i64)
}

/// Sends `d`: the receiver's status and the start of its answer, or why it
/// could not be reached.
async fn attempt(app: &App, d: &DueDelivery) -> std::result::Result<(u16, String), String> {
    let url = url::Url::parse(&d.url).map_err(|e| e.to_string())?;
    check_target(app, &url).await?;
    let timestamp = crate::domain::time::now().unix_timestamp();
    let id = d.event_id.to_string();
    let signature = webhook::sign(&d.secret, &id, timestamp, d.payload.as_bytes());
    let mut res = app
        .http
        .post(url)
        .header("content-type", "application/json")
        .header("webhook-id", &id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(d.payload.clone())
        .send()
        .await
        .map_err(|e| format!("{e}"))?;
    let status = res.status().as_u16();
    let mut body = Vec::new();
    while body.len() < EXCERPT {
        match res.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            _ => break,
        }
    }
    body.truncate(EXCERPT);
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}
