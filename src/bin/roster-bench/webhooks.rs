//! The `webhooks` scenario: what delivering `user.created` costs the
//! creates, how long after its change each delivery arrives, and how fast a
//! backlog drains.
//!
//! A receiver runs in this process (an axum handler answering 204 at once;
//! the server is started with `ROSTER_WEBHOOK_ALLOW_PRIVATE_TARGETS=true` so
//! that it may post to loopback). At each concurrency level the bench runs
//! the `create-users` load three times: against the ceiling, on an account
//! with no endpoint, and on one whose endpoint takes `user.created`. It then
//! waits (with a deadline) until every user created on the second account
//! has been delivered, and reads the lag of each delivery: the time it
//! arrived minus the event's `timestamp` (taken when the change is made, in
//! the transaction that commits it). Last, `POST …/replay {since_seq: 0}`
//! queues the same events again, and the time until all of them have
//! arrived gives the drain rate of a backlog.
//!
//! A delivery that does not arrive is an error; one that arrives twice is
//! counted (`duplicates`: allowed by at-least-once, but none are expected
//! from a receiver that never fails).

use std::collections::HashSet;
use std::sync::Mutex;

use tokio::sync::watch;

use super::*;

/// How long every expected delivery may take to arrive, at least; more is
/// allowed for large runs (see [`deadline_for`]).
const MIN_DELIVERY_WAIT: Duration = Duration::from_secs(60);

/// What the receiver has seen since it was last [`Receiver::take`]n.
#[derive(Default)]
struct Tally {
    ids: HashSet<String>,
    duplicates: u64,
    /// Commit → arrival, in microseconds, of each first arrival.
    lags_us: Vec<u32>,
    last: Option<Instant>,
    malformed: u64,
}

/// The in-process receiver of the deliveries.
struct Receiver {
    tally: Mutex<Tally>,
    /// Distinct deliveries received so far (for waiting without polling).
    received: watch::Sender<u64>,
}

impl Receiver {
    fn record(&self, id: Option<&str>, body: &[u8]) {
        let arrived = time::OffsetDateTime::now_utc();
        let lag = serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|v| v.get("timestamp")?.as_str().map(str::to_owned))
            .and_then(|t| {
                time::OffsetDateTime::parse(&t, &time::format_description::well_known::Rfc3339).ok()
            })
            .map(|at| (arrived - at).whole_microseconds().max(0));
        let mut t = self.tally.lock().unwrap_or_else(|p| p.into_inner());
        let (Some(id), Some(lag)) = (id, lag) else {
            t.malformed += 1;
            return;
        };
        if !t.ids.insert(id.to_owned()) {
            t.duplicates += 1;
            return;
        }
        t.lags_us.push(u32::try_from(lag).unwrap_or(u32::MAX));
        t.last = Some(Instant::now());
        let n = t.ids.len() as u64;
        drop(t);
        self.received.send_replace(n);
    }

    /// Waits until `n` distinct deliveries have arrived or `deadline` passes.
    async fn wait_for(&self, n: u64, deadline: Instant) {
        let mut rx = self.received.subscribe();
        let _ = tokio::time::timeout_at(deadline.into(), rx.wait_for(|got| *got >= n)).await;
    }

    /// What has arrived so far; the receiver starts counting afresh.
    fn take(&self) -> Tally {
        let mut t = self.tally.lock().unwrap_or_else(|p| p.into_inner());
        let taken = std::mem::take(&mut *t);
        drop(t);
        self.received.send_replace(0);
        taken
    }
}

/// Starts the receiver on this process's runtime; returns it and its base URL.
async fn start_receiver() -> anyhow::Result<(Arc<Receiver>, String)> {
    use axum::extract::State;
    use axum::http::HeaderMap;
    use axum::routing::post;

    async fn hook(
        State(r): State<Arc<Receiver>>,
        headers: HeaderMap,
        body: bytes::Bytes,
    ) -> StatusCode {
        let id = headers.get("webhook-id").and_then(|v| v.to_str().ok());
        r.record(id, &body);
        StatusCode::NO_CONTENT
    }

    let receiver = Arc::new(Receiver {
        tally: Mutex::default(),
        received: watch::Sender::new(0),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let router = axum::Router::new()
        .route("/hook/{run}", post(hook))
        .with_state(receiver.clone());
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            eprintln!("roster-bench: webhook receiver stopped: {e}");
        }
    });
    Ok((receiver, format!("http://{addr}")))
}

/// Generous for any machine: a minute, or 5 ms per delivery if longer.
fn deadline_for(n: u64) -> Instant {
    Instant::now() + MIN_DELIVERY_WAIT.max(Duration::from_millis(5) * n as u32)
}

/// A row of deliveries: `ok` arrived of `expected`, the rate over `elapsed`,
/// and the percentiles of `latencies` (the lag, or none for the replay).
fn delivery_row(
    target: &'static str,
    concurrency: usize,
    expected: u64,
    tally: Tally,
    elapsed: Duration,
    with_lag: bool,
) -> Row {
    let got = tally.ids.len() as u64;
    let mut outcome = Outcome {
        ok: got,
        latencies_us: if with_lag { tally.lags_us } else { Vec::new() },
        ..Outcome::default()
    };
    if got < expected {
        outcome.errors.insert(
            "not delivered before the deadline".into(),
            ErrorTally {
                count: expected - got,
                sample: format!("{} of {expected} deliveries missing", expected - got),
            },
        );
    }
    if tally.malformed > 0 {
        outcome.errors.insert(
            "malformed delivery".into(),
            ErrorTally {
                count: tally.malformed,
                sample: "no webhook-id header or no RFC 3339 timestamp in the body".into(),
            },
        );
    }
    let mut row = make_row(NAME, target, concurrency, outcome, elapsed);
    row.extra.insert("expected", expected as f64);
    row.extra.insert("duplicates", tally.duplicates as f64);
    row
}

const NAME: &str = "webhooks";

/// `webhooks`: see the module documentation.
pub(super) async fn webhooks(ctx: &Ctx) -> anyhow::Result<Vec<Row>> {
    let (receiver, base) = start_receiver().await?;
    let mut rows = Vec::new();
    for &c in &ctx.concurrency {
        let fake = bearer("ceiling")?;
        let load = ctx.load(
            c,
            StatusCode::CREATED,
            users::create_user_requests(&ctx.ceiling, &Uuid::nil().to_string(), &fake),
        );
        let ceiling = ctx.measure_ceiling(NAME, &load).await;

        let plain = ctx.create_account(&format!("bench webhooks c{c}")).await?;
        let load = ctx.load(
            c,
            StatusCode::CREATED,
            users::create_user_requests(&ctx.roster, &plain.id, &plain.key),
        );
        let without = ctx.measure_roster(NAME, &load, &ceiling).await;

        let hooked = ctx
            .create_account(&format!("bench webhooks c{c} hooked"))
            .await?;
        let mut api = Api::new(ctx.roster.clone());
        let created = api
            .expect(
                StatusCode::CREATED,
                Method::POST,
                &format!("/v1/accounts/{}/webhooks", hooked.id),
                Some(&hooked.key),
                Some(&json!({ "url": format!("{base}/hook/c{c}"), "events": ["user.created"] })),
            )
            .await
            .context("creating the endpoint (is webhook_allow_private_targets on?)")?;
        let hook = str_at(&created, "/webhook/id")?.to_owned();
        receiver.take();
        let load = ctx.load(
            c,
            StatusCode::CREATED,
            users::create_user_requests(&ctx.roster, &hooked.id, &hooked.key),
        );
        let started = Instant::now();
        let with = ctx
            .measure_roster_as(NAME, "roster+webhook", &load, Some(&ceiling))
            .await;
        let expected = with.ok;
        receiver.wait_for(expected, deadline_for(expected)).await;
        let live = receiver.take();
        let elapsed = live.last.map_or(started.elapsed(), |l| l - started);
        let lag = delivery_row("delivery", c, expected, live, elapsed, true);

        let started = Instant::now();
        let replayed = api
            .expect(
                StatusCode::ACCEPTED,
                Method::POST,
                &format!("/v1/accounts/{}/webhooks/{hook}/replay", hooked.id),
                Some(&hooked.key),
                Some(&json!({ "since_seq": 0 })),
            )
            .await
            .context("replaying the endpoint's events")?;
        let queued = replayed
            .get("queued")
            .and_then(Value::as_u64)
            .with_context(|| format!("replay answered no `queued`: {replayed}"))?;
        receiver.wait_for(queued, deadline_for(queued)).await;
        let backlog = receiver.take();
        let elapsed = backlog.last.map_or(started.elapsed(), |l| l - started);
        let drain = delivery_row("replay", c, queued, backlog, elapsed, false);

        rows.extend([ceiling, without, with, lag, drain]);
    }
    Ok(rows)
}
