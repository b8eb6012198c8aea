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
//! 2xx is retried on `webhook_retry_schedule`, with ±10 % jitter. On a
//! graceful stop the worker claims no more, lets the attempts in flight
//! finish (each is bounded by its 10 s timeout) and records them, so that a
//! restart neither waits out their leases nor sends them again.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Notify, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use uuid::Uuid;

use super::{Actor, Error, Result};
use crate::app::App;
use crate::domain::event::Event;
use crate::domain::permission::Permission;
use crate::domain::webhook::{
    self, Attempt, CreateWebhook, Delivery, UpdateWebhook, Webhook, event_patterns, webhook_url,
};
use crate::realtime::hub::Participant;
use crate::store::{DueDelivery, FinishedDelivery, NewDelivery, Page, Paged, WebhookTarget};

/// A new endpoint and its secret, shown this once.
pub struct Created {
    pub webhook: Webhook,
    pub secret: String,
}

/// The address an URL names literally (`http://10.0.0.1/`, `http://[::1]/`).
fn literal_ip(url: &url::Url) -> Option<IpAddr> {
    match url.host()? {
        url::Host::Ipv4(ip) => Some(IpAddr::V4(ip)),
        url::Host::Ipv6(ip) => Some(IpAddr::V6(ip)),
        url::Host::Domain(_) => None,
    }
}

/// Refuses an URL whose host is, or resolves to, an address a webhook may
/// not reach (see [`webhook::is_private`]), unless the operator allows them.
/// (Each attempt checks again, as it connects: [`PublicOnly`].)
async fn check_target(app: &App, url: &url::Url) -> std::result::Result<(), String> {
    if app.config.webhook_allow_private_targets {
        return Ok(());
    }
    let host = url.host_str().unwrap_or_default();
    let port = url.port_or_known_default().unwrap_or(443);
    let addrs: Vec<IpAddr> = match literal_ip(url) {
        Some(ip) => vec![ip],
        None => tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| format!("{host} does not resolve: {e}"))?
            .map(|a| a.ip())
            .collect(),
    };
    match addrs.iter().find(|ip| webhook::is_private(**ip)) {
        Some(ip) => Err(private_refusal(host, *ip)),
        None => Ok(()),
    }
}

/// Why a webhook may not go to `host`, one of whose addresses is `ip`.
fn private_refusal(host: &str, ip: IpAddr) -> String {
    if host == ip.to_string() || host.trim_matches(['[', ']']) == ip.to_string() {
        format!("{ip} is a private address; set webhook_allow_private_targets to allow it")
    } else {
        format!(
            "{host} resolves to a private address ({ip}); set webhook_allow_private_targets to allow it"
        )
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
        failing_since: None,
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
        // Enabled again: its failures so far no longer count.
        if enabled && !hook.enabled {
            hook.failing_since = None;
        }
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

/// How long a rotated-out secret keeps signing beside the new one.
pub const SECRET_OVERLAP: time::Duration = time::Duration::hours(24);
/// At most this many events per replay.
pub const MAX_REPLAY: usize = 10_000;

/// A new signing secret for the endpoint, shown this once; the old one
/// signs beside it for 24 h. Needs `manage-settings`.
pub async fn rotate_secret(app: &App, actor: &Actor, id: Uuid) -> Result<Created> {
    actor.require(Permission::ManageSettings)?;
    let secret = webhook::new_secret();
    let until = crate::domain::time::now() + SECRET_OVERLAP;
    let hook = app
        .store
        .rotate_webhook_secret(actor.account_id, id, &secret, until, &actor.change())
        .await?;
    Ok(Created {
        webhook: hook,
        secret,
    })
}

/// Makes one delivery due now again. Needs `manage-settings`.
pub async fn retry(app: &App, actor: &Actor, hook: Uuid, delivery: Uuid) -> Result<Delivery> {
    actor.require(Permission::ManageSettings)?;
    Ok(app
        .store
        .retry_delivery(actor.account_id, hook, delivery, crate::domain::time::now())
        .await?)
}

/// `POST /webhooks/{id}/replay` as sent: one of the two.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Replay {
    /// Events after this `seq` (as the audit log shows it).
    #[serde(default, deserialize_with = "crate::domain::whole::option")]
    #[schema(minimum = 0)]
    pub since_seq: Option<i64>,
    /// Events at or after this RFC 3339 time.
    #[schema(format = DateTime)]
    pub since: Option<String>,
}

/// How a replay went: events queued again, and whether the cap cut it.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Replayed {
    pub queued: u64,
    /// More events matched than one replay sends ([`MAX_REPLAY`]): replay
    /// again from the last one's `seq`.
    pub truncated: bool,
    pub last_seq: Option<i64>,
}

/// Sends the endpoint's matching events again from a point (the oldest
/// first, at most 10,000), as new attempts of their deliveries. Needs
/// `manage-settings`.
pub async fn replay(app: &App, actor: &Actor, id: Uuid, req: Replay) -> Result<Replayed> {
    actor.require(Permission::ManageSettings)?;
    let hook = app.store.get_webhook(actor.account_id, id).await?;
    let account = actor.account_id;
    let events: Vec<Event> = match (req.since_seq, req.since) {
        (Some(seq), None) if seq >= 0 => {
            let mut out = Vec::new();
            let mut after = seq;
            while out.len() <= MAX_REPLAY {
                let page = app.store.events_after(Some(account), after, 1000).await?;
                let Some(last) = page.last().map(|e| e.seq) else {
                    break;
                };
                after = last;
                out.extend(page);
            }
            out
        }
        (None, Some(since)) => {
            let query = super::audit::AuditQuery {
                since: Some(since),
                ..Default::default()
            };
            // A bad time is refused naming `since`.
            let filter = query.parse()?;
            let mut out = Vec::new();
            let mut before = None;
            while out.len() <= MAX_REPLAY {
                let page = app
                    .store
                    .audit_events(account, &filter, before, 1000)
                    .await?;
                let Some(last) = page.last().map(|e| e.seq) else {
                    break;
                };
                before = Some(last);
                out.extend(page);
            }
            out.reverse();
            out
        }
        (Some(_), None) => return Err(Error::validation("since_seq", "must be 0 or more")),
        _ => {
            return Err(Error::validation(
                "since_seq",
                "send one of since_seq and since",
            ));
        }
    };
    let now = crate::domain::time::now();
    let mut matching: Vec<&Event> = events
        .iter()
        .filter(|e| webhook::matches(&hook.events, &e.kind))
        .collect();
    let truncated = matching.len() > MAX_REPLAY;
    matching.truncate(MAX_REPLAY);
    let deliveries: Vec<NewDelivery> = matching
        .iter()
        .map(|e| NewDelivery {
            id: Uuid::now_v7(),
            account_id: account,
            webhook_id: hook.id,
            event_id: e.id,
            event_seq: e.seq,
            kind: e.kind.clone(),
            payload: payload(e),
            created_at: now,
        })
        .collect();
    let queued = app.store.requeue_deliveries(&deliveries).await?;
    Ok(Replayed {
        queued,
        truncated,
        last_seq: matching.last().map(|e| e.seq),
    })
}

/// Sends the endpoint a `webhook.test` event (whatever it subscribes to),
/// through the same delivery path. Needs `manage-settings`.
pub async fn test(app: &App, actor: &Actor, id: Uuid) -> Result<Uuid> {
    actor.require(Permission::ManageSettings)?;
    let hook = app.store.get_webhook(actor.account_id, id).await?;
    let now = crate::domain::time::now();
    let event_id = Uuid::now_v7();
    let body = serde_json::json!({
        "type": "webhook.test",
        "timestamp": crate::domain::time::format(now),
        "data": { "webhook_id": hook.id, "url": hook.url },
    });
    let delivery = NewDelivery {
        id: Uuid::now_v7(),
        account_id: actor.account_id,
        webhook_id: hook.id,
        event_id,
        event_seq: 0,
        kind: "webhook.test".into(),
        payload: body.to_string(),
        created_at: now,
    };
    app.store.requeue_deliveries(&[delivery]).await?;
    Ok(event_id)
}

// --- the worker -----------------------------------------------------------------

/// Events read per fan-out step.
const FANOUT_BATCH: u32 = 500;
/// How long a claimed delivery is this node's: longer than an attempt.
const LEASE: time::Duration = time::Duration::seconds(60);
/// At most this much of a receiver's answer is kept.
const EXCERPT: usize = 1024;
/// The idle polls: the fan-out (new events) and the deliveries (retries
/// come due); both are woken sooner when there is work.
const FANOUT_POLL: Duration = Duration::from_millis(100);
const DELIVERY_POLL: Duration = Duration::from_millis(250);

/// Participant changes waiting to be stored as deliveries, at most.
const PARTICIPANT_QUEUE: usize = 65_536;
/// How long an account's endpoints are known to the presence side without
/// being read again (an endpoint made or changed takes this long to get
/// presence deliveries or stop getting them).
const TARGETS_TTL: Duration = Duration::from_secs(2);

/// What the delivery side needs, read once from the configuration.
struct Worker {
    app: App,
    client: reqwest::Client,
    schedule: Vec<Duration>,
    disable_after: time::Duration,
    per_endpoint: i64,
    /// The node's deliveries in flight.
    slots: Arc<Semaphore>,
    /// Rung when deliveries were stored or finished: claim again now.
    wake: Notify,
    /// Cancelled on a graceful stop: claim no more.
    stop: CancellationToken,
}

/// The running worker, to stop it gracefully ([`Running::stop`]).
pub struct Running {
    stop: CancellationToken,
    recorder: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Claims no more deliveries, and waits (at most `within`) until the
    /// attempts in flight have finished and their outcomes are recorded.
    pub async fn stop(self, within: Duration) {
        self.stop.cancel();
        if tokio::time::timeout(within, self.recorder).await.is_err() {
            tracing::warn!(
                "webhooks: attempts in flight were not recorded within {within:?}; \
                 they are tried again when their lease lapses"
            );
        }
    }
}

/// The HTTP client of the attempts: 10 s for the whole exchange, no
/// redirects followed, and (unless private targets are allowed) a resolver
/// that answers only public addresses, so the address checked is the one
/// connected to (no DNS rebinding between a check and the connect).
fn client(allow_private: bool) -> anyhow::Result<reqwest::Client> {
    let builder = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .connect_timeout(Duration::from_secs(5))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("Roster-Webhooks/", env!("CARGO_PKG_VERSION")));
    let builder = if allow_private {
        builder
    } else {
        builder.dns_resolver(Arc::new(PublicOnly))
    };
    Ok(builder.build()?)
}

/// Resolves a host name and refuses it if any of its addresses is one a
/// webhook may not reach ([`webhook::is_private`]).
struct PublicOnly;

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if let Some(private) = addrs.iter().find(|a| webhook::is_private(a.ip())) {
                return Err(private_refusal(&host, private.ip()).into());
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Starts the webhook worker: the fan-out (event log → deliveries), the
/// deliveries (claimed within the per-endpoint and per-node bounds, each
/// attempted on its own task) and the recorder of their outcomes.
pub fn spawn_worker(app: App) -> anyhow::Result<Running> {
    let config = &app.config;
    let worker = Arc::new(Worker {
        client: client(config.webhook_allow_private_targets)?,
        schedule: webhook::parse_schedule(&config.webhook_retry_schedule)
            .map_err(anyhow::Error::msg)?,
        disable_after: webhook::parse_disable_after(&config.webhook_disable_after)
            .map_err(anyhow::Error::msg)?
            .try_into()?,
        per_endpoint: i64::from(config.webhook_endpoint_concurrency),
        slots: Arc::new(Semaphore::new(config.webhook_max_in_flight as usize)),
        wake: Notify::new(),
        stop: CancellationToken::new(),
        app,
    });
    let stop = worker.stop.clone();
    let (done, finished) = mpsc::unbounded_channel();
    if let Some(participants) = worker.app.hub.participants(PARTICIPANT_QUEUE) {
        tokio::spawn(presence_loop(worker.clone(), participants));
    }
    tokio::spawn(fan_out_loop(worker.clone()));
    let recorder = tokio::spawn(record_loop(worker.clone(), finished));
    // The recorder ends once this loop and every attempt it started have
    // dropped their senders: after a stop, when the last one is recorded.
    tokio::spawn(delivery_loop(worker, done));
    Ok(Running { stop, recorder })
}

/// Moves the fan-out forward: at once again while it finds full batches,
/// else every [`FANOUT_POLL`].
async fn fan_out_loop(w: Arc<Worker>) {
    loop {
        match fan_out(&w.app).await {
            Ok(Step { events, deliveries }) => {
                if deliveries > 0 {
                    w.wake.notify_one();
                }
                if events == FANOUT_BATCH as usize {
                    continue;
                }
            }
            Err(e) => tracing::warn!(error = %e, "webhooks: the fan-out failed; retrying"),
        }
        tokio::select! {
            () = w.stop.cancelled() => return,
            () = tokio::time::sleep(FANOUT_POLL) => {}
        }
    }
}

/// Claims as many due deliveries as the node has free slots (the store
/// keeps each endpoint within its bound) and attempts each on its own
/// task, which sends its outcome to the recorder.
async fn delivery_loop(w: Arc<Worker>, done: mpsc::UnboundedSender<FinishedDelivery>) {
    loop {
        let first = tokio::select! {
            biased;
            () = w.stop.cancelled() => return,
            slot = w.slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => return,
            },
        };
        let free = w.slots.available_permits() + 1;
        let asked = i64::try_from(free).unwrap_or(i64::MAX);
        let due = match w
            .app
            .store
            .claim_deliveries(crate::domain::time::now(), LEASE, asked, w.per_endpoint)
            .await
        {
            Ok(due) => due,
            Err(e) => {
                tracing::warn!(error = %e, "webhooks: cannot claim deliveries");
                Vec::new()
            }
        };
        let full = due.len() == free;
        let mut first = Some(first);
        for d in due {
            let slot = match first.take() {
                Some(slot) => slot,
                // Claimed no more than were free, and only this loop takes.
                None => match w.slots.clone().try_acquire_owned() {
                    Ok(slot) => slot,
                    Err(_) => break,
                },
            };
            let (w, done) = (w.clone(), done.clone());
            tokio::spawn(async move {
                let finished = deliver(&w, d).await;
                drop(slot);
                let _ = done.send(finished);
            });
        }
        drop(first);
        if !full {
            tokio::select! {
                () = w.stop.cancelled() => return,
                () = w.wake.notified() => {}
                () = tokio::time::sleep(DELIVERY_POLL) => {}
            }
        }
    }
}

/// Records finished attempts, as many at once as have come in; an endpoint
/// failing for `webhook_disable_after` is disabled here.
async fn record_loop(w: Arc<Worker>, mut finished: mpsc::UnboundedReceiver<FinishedDelivery>) {
    let mut batch = Vec::with_capacity(256);
    while finished.recv_many(&mut batch, 256).await > 0 {
        let disable_before = crate::domain::time::now() - w.disable_after;
        match w.app.store.finish_deliveries(&batch, disable_before).await {
            Ok(disabled) => {
                for hook in disabled {
                    tracing::warn!(webhook = %hook.id, url = %hook.url,
                        "webhooks: an endpoint failing since {} is disabled",
                        hook.failing_since.map(crate::domain::time::format).unwrap_or_default());
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, attempts = batch.len(),
                    "webhooks: cannot record attempts (they are tried again when their lease lapses)");
            }
        }
        batch.clear();
        // Endpoints have room again.
        w.wake.notify_one();
    }
}

/// Stores the node's participant changes (see [`crate::realtime::hub::Participant`])
/// as deliveries to the endpoints that name `participant.joined|left`, as
/// many at once as have come in. They are not events of the log: once
/// stored they are delivered and retried like the others, but a change not
/// yet stored when the node dies is not sent, and they cannot be replayed.
async fn presence_loop(w: Arc<Worker>, mut rx: mpsc::Receiver<Participant>) {
    let mut known: HashMap<Uuid, (Instant, Vec<WebhookTarget>)> = HashMap::new();
    let mut batch = Vec::with_capacity(512);
    while rx.recv_many(&mut batch, 512).await > 0 {
        let mut stale: Vec<Uuid> = batch
            .iter()
            .map(|p| p.account)
            .filter(|a| {
                known
                    .get(a)
                    .is_none_or(|(at, _)| at.elapsed() > TARGETS_TTL)
            })
            .collect();
        stale.sort_unstable();
        stale.dedup();
        if !stale.is_empty() {
            match w.app.store.webhook_targets(&stale).await {
                Ok(targets) => {
                    let now = Instant::now();
                    for a in &stale {
                        known.insert(*a, (now, Vec::new()));
                    }
                    for t in targets {
                        if let Some((_, ts)) = known.get_mut(&t.account_id) {
                            ts.push(t);
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "webhooks: cannot read the endpoints for presence")
                }
            }
        }
        let deliveries: Vec<NewDelivery> = batch
            .drain(..)
            .flat_map(|p| {
                let targets = known
                    .get(&p.account)
                    .map(|(_, t)| t.as_slice())
                    .unwrap_or_default();
                participant_deliveries(p, targets)
            })
            .collect();
        if deliveries.is_empty() {
            continue;
        }
        match w.app.store.requeue_deliveries(&deliveries).await {
            Ok(_) => w.wake.notify_one(),
            Err(e) => tracing::warn!(error = %e, dropped = deliveries.len(),
                "webhooks: cannot store presence deliveries"),
        }
    }
}

/// The deliveries of one participant change: one per endpoint that names
/// its type, each with an event id of its own (the receiver's idempotency
/// key) and `seq` 0 (it is not of the log).
fn participant_deliveries(p: Participant, targets: &[WebhookTarget]) -> Vec<NewDelivery> {
    let kind = if p.joined {
        webhook::PARTICIPANT_JOINED
    } else {
        webhook::PARTICIPANT_LEFT
    };
    let wanted: Vec<&WebhookTarget> = targets
        .iter()
        .filter(|t| p.at >= t.created_at && webhook::wants_presence(&t.events, kind))
        .collect();
    if wanted.is_empty() {
        return Vec::new();
    }
    let at = crate::domain::time::format(p.at);
    let payload = serde_json::json!({
        "type": kind,
        "timestamp": at,
        "data": { "room_id": p.room, "user_id": p.user, "at": at },
        "actor": { "kind": "user", "id": p.user },
        "subject": { "kind": "room", "id": p.room },
    })
    .to_string();
    let event_id = Uuid::now_v7();
    wanted
        .into_iter()
        .map(|t| NewDelivery {
            id: Uuid::now_v7(),
            account_id: p.account,
            webhook_id: t.id,
            event_id,
            event_seq: 0,
            kind: kind.to_owned(),
            payload: payload.clone(),
            created_at: crate::domain::time::now(),
        })
        .collect()
}

/// What one fan-out step read and stored.
struct Step {
    events: usize,
    deliveries: usize,
}

/// One step of the fan-out: the next settled events, matched to the
/// endpoints of their accounts, stored as deliveries with the cursor moved
/// past them.
async fn fan_out(app: &App) -> Result<Step> {
    let from: i64 = app
        .store
        .get_state("webhooks.fanout_seq")
        .await?
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let events = app.store.events_after(None, from, FANOUT_BATCH).await?;
    let Some(last) = events.last().map(|e| e.seq) else {
        return Ok(Step {
            events: 0,
            deliveries: 0,
        });
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
    Ok(Step {
        events: events.len(),
        deliveries: deliveries.len(),
    })
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

/// One attempt of `d`, with its outcome and what comes next.
async fn deliver(w: &Worker, d: DueDelivery) -> FinishedDelivery {
    let started = Instant::now();
    let outcome = attempt(w, &d).await;
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
            .and_then(|n| w.schedule.get(n))
            .map(|wait| at + jitter(*wait))
    };
    if !delivered {
        tracing::info!(delivery = %d.id, webhook = %d.webhook_id, status = ?status_code,
            attempts = d.attempts + 1, gave_up = next.is_none(), "webhook delivery failed");
    }
    FinishedDelivery {
        id: d.id,
        webhook_id: d.webhook_id,
        attempt: Attempt {
            at,
            status_code,
            latency_ms,
            response,
            error,
        },
        delivered,
        next,
    }
}

/// `wait` ± 10 %.
fn jitter(wait: Duration) -> time::Duration {
    let spread = wait.as_millis() as f64 * 0.1;
    let r = f64::from(crate::secret::random_bytes::<2>()[0]) / 255.0 * 2.0 - 1.0;
    let ms = (wait.as_millis() as f64 + spread * r).max(0.0);
    time::Duration::milliseconds(ms as i64)
}

/// An error with its causes: `error sending request …: … refused`.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
}

/// Sends `d`: the receiver's status and the start of its answer, or why it
/// could not be reached.
async fn attempt(w: &Worker, d: &DueDelivery) -> std::result::Result<(u16, String), String> {
    let url = url::Url::parse(&d.url).map_err(|e| e.to_string())?;
    // A host name's addresses are checked by the resolver as it connects;
    // an address written in the URL here.
    if !w.app.config.webhook_allow_private_targets
        && let Some(ip) = literal_ip(&url)
        && webhook::is_private(ip)
    {
        return Err(private_refusal(&ip.to_string(), ip));
    }
    let timestamp = crate::domain::time::now().unix_timestamp();
    let id = d.event_id.to_string();
    // One signature per live secret, space-separated, as the spec allows.
    let signature = d
        .secrets
        .iter()
        .map(|secret| webhook::sign(secret, &id, timestamp, d.payload.as_bytes()))
        .collect::<Vec<_>>()
        .join(" ");
    let mut res = w
        .client
        .post(url)
        .header("content-type", "application/json")
        .header("webhook-id", &id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(d.payload.clone())
        .send()
        .await
        .map_err(|e| chain(&e))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_attempt_client_refuses_a_host_that_resolves_to_a_private_address() {
        // Whatever listens there (or not): the resolver refuses first.
        let err = client(false)
            .unwrap()
            .post("http://localhost:9/hook")
            .send()
            .await
            .unwrap_err();
        let text = chain(&err);
        assert!(
            text.contains("localhost resolves to a private address"),
            "{text}"
        );
        // Allowed, the same request gets as far as the connect.
        let err = client(true)
            .unwrap()
            .post("http://localhost:9/hook")
            .send()
            .await
            .unwrap_err();
        assert!(!chain(&err).contains("private"), "{}", chain(&err));
    }

    #[test]
    fn refusals_name_the_host_and_the_address() {
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        assert_eq!(
            private_refusal("10.0.0.1", ip),
            "10.0.0.1 is a private address; set webhook_allow_private_targets to allow it"
        );
        assert!(
            private_refusal("intranet.example", ip).starts_with("intranet.example resolves to")
        );
    }
}
