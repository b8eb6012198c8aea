//! Webhooks through the real stack: endpoints made over HTTP, the event log
//! delivered to a real HTTP receiver (a Python process) that verifies every
//! delivery with the PyPI `standardwebhooks` package, retries on a
//! receiver's 500s, the delivery log, and the refusals.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::helpers::{Account, TestApp, assert_error};
use crate::realtime::{connect, send, wait_for};

/// The receiver process, the file its secret is read from, and its lines.
struct Receiver {
    _child: tokio::process::Child,
    url: String,
    secret_file: std::path::PathBuf,
    _dir: tempfile::TempDir,
    lines: tokio::sync::mpsc::UnboundedReceiver<Value>,
}

impl Receiver {
    async fn start(fail_first: u32) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let secret_file = dir.path().join("secret");
        std::fs::write(&secret_file, "whsec_AAAA").unwrap();
        Self::start_on(0, fail_first, dir, secret_file).await
    }

    /// A receiver that holds every request until [`Receiver::release`].
    async fn holding() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let secret_file = dir.path().join("secret");
        std::fs::write(&secret_file, "whsec_AAAA").unwrap();
        let hold = dir.path().join("release");
        Self::spawn(0, 0, dir, secret_file, Some(hold), false).await
    }

    /// [`Receiver::holding`], with a line `{"arrived": id}` as each request
    /// comes in.
    async fn holding_announced() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let secret_file = dir.path().join("secret");
        std::fs::write(&secret_file, "whsec_AAAA").unwrap();
        let hold = dir.path().join("release");
        Self::spawn(0, 0, dir, secret_file, Some(hold), true).await
    }

    /// Lets a [`Receiver::holding`] answer.
    fn release(&self) {
        std::fs::write(self._dir.path().join("release"), "").unwrap();
    }

    /// A receiver on `port` (0: any), reading its secret from `secret_file`.
    async fn start_on(
        port: u16,
        fail_first: u32,
        dir: tempfile::TempDir,
        secret_file: std::path::PathBuf,
    ) -> Self {
        Self::spawn(port, fail_first, dir, secret_file, None, false).await
    }

    async fn spawn(
        port: u16,
        fail_first: u32,
        dir: tempfile::TempDir,
        secret_file: std::path::PathBuf,
        hold: Option<std::path::PathBuf>,
        announce: bool,
    ) -> Self {
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/support/webhook_receiver.py"
        );
        let mut command = tokio::process::Command::new("python3");
        if let Some(hold) = hold {
            command.env("HOLD_FILE", hold);
        }
        if announce {
            command.env("ANNOUNCE_HELD", "1");
        }
        let mut child = command
            .arg(script)
            .env("WEBHOOK_SECRET_FILE", &secret_file)
            .env("FAIL_FIRST", fail_first.to_string())
            .env("PORT", port.to_string())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("python3 with standardwebhooks (pip install standardwebhooks)");
        let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = tokio::time::timeout(Duration::from_secs(20), out.next_line())
            .await
            .expect("the receiver starts")
            .unwrap()
            .expect("the receiver prints its port");
        let port = first.strip_prefix("listening ").expect("listening PORT");
        let (tx, lines) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok(Some(line)) = out.next_line().await {
                let _ = tx.send(serde_json::from_str(&line).unwrap());
            }
        });
        Self {
            _child: child,
            url: format!("http://127.0.0.1:{port}/hook"),
            secret_file,
            _dir: dir,
            lines,
        }
    }

    /// The next request the receiver saw, within 20 s.
    async fn next(&mut self) -> Value {
        self.next_within(Duration::from_secs(20)).await
    }

    async fn next_within(&mut self, deadline: Duration) -> Value {
        tokio::time::timeout(deadline, self.lines.recv())
            .await
            .expect("a delivery within the deadline")
            .expect("the receiver is running")
    }
}

async fn spawn(schedule: &'static str) -> TestApp {
    TestApp::spawn_with(move |c| {
        c.webhook_allow_private_targets = true;
        c.webhook_retry_schedule = schedule.into();
    })
    .await
}

/// Creates an endpoint for `events`; tells the receiver its secret.
async fn endpoint(t: &TestApp, a: &Account, r: &Receiver, events: Value) -> Value {
    let (status, body) = t
        .post(
            &a.path("/webhooks"),
            &a.key,
            json!({ "url": r.url, "events": events }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let secret = body["data"]["secret"].as_str().unwrap();
    assert!(secret.starts_with("whsec_"), "{secret}");
    std::fs::write(&r.secret_file, secret).unwrap();
    body["data"]["webhook"].clone()
}

#[tokio::test]
async fn deliveries_are_signed_as_standard_webhooks_verify_them() {
    let mut r = Receiver::start(0).await;
    let t = spawn("1s").await;
    let a = t.account("acme").await;
    let hook = endpoint(&t, &a, &r, json!(["user.*"])).await;
    // Not subscribed: a room. Subscribed: the user.
    t.room(&a, json!({ "name": "Lobby" })).await;
    let made = t.user(&a, json!({ "name": "Ann" })).await;
    let got = r.next().await;
    assert_eq!(got["type"], "user.created", "{got}");
    assert_eq!(got["verified"], true, "{got}");
    assert_eq!(
        got["forged_verified"], false,
        "a forged body verified: {got}"
    );
    // `webhook-id` is the event's id, as the audit log shows it.
    let (_, audit) = t.get(&a.path("/audit?type=user.created"), &a.key).await;
    assert_eq!(got["id"], audit["data"]["events"][0]["id"], "{audit}");
    assert_eq!(
        audit["data"]["events"][0]["subject"]["id"],
        made["user"]["id"]
    );
    // The delivery log says so.
    let id = hook["id"].as_str().unwrap();
    let deliveries = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let (_, body) = t
                .get(&a.path(&format!("/webhooks/{id}/deliveries")), &a.key)
                .await;
            let d = body["data"]["deliveries"].clone();
            if d[0]["state"] == "delivered" {
                return d;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the delivery is recorded");
    assert_eq!(deliveries.as_array().unwrap().len(), 1, "{deliveries}");
    assert_eq!(deliveries[0]["type"], "user.created");
    assert_eq!(deliveries[0]["log"][0]["status_code"], 200);
    assert_eq!(deliveries[0]["log"][0]["response"], "ok");
    // A disabled endpoint gets nothing more; the next event after it is
    // enabled again does.
    let (status, _) = t
        .patch(
            &a.path(&format!("/webhooks/{id}")),
            &a.key,
            json!({ "enabled": false }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    t.user(&a, json!({ "name": "Not sent" })).await;
    let (status, _) = t
        .patch(
            &a.path(&format!("/webhooks/{id}")),
            &a.key,
            json!({ "enabled": true, "events": ["room.*"] }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    t.room(&a, json!({ "name": "Stage" })).await;
    let next = r.next().await;
    assert_eq!(
        next["type"], "room.created",
        "the disabled time's user came through: {next}"
    );
    assert_eq!(next["verified"], true);
}

#[tokio::test]
async fn a_receiver_failing_three_times_gets_the_event_on_the_fourth_attempt() {
    let mut r = Receiver::start(3).await;
    let t = spawn("100ms,100ms,100ms,100ms").await;
    let a = t.account("acme").await;
    let hook = endpoint(&t, &a, &r, json!(["user.created"])).await;
    t.user(&a, json!({ "name": "Ann" })).await;
    let mut seen = Vec::new();
    for _ in 0..4 {
        let got = r.next().await;
        assert_eq!(got["verified"], true, "{got}");
        seen.push((got["id"].clone(), got["status"].as_u64().unwrap()));
    }
    assert_eq!(
        seen.iter().map(|(_, s)| *s).collect::<Vec<_>>(),
        [500, 500, 500, 200]
    );
    assert!(
        seen.iter().all(|(id, _)| *id == seen[0].0),
        "one event, one webhook-id: {seen:?}"
    );
    let id = hook["id"].as_str().unwrap();
    let log = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let (_, body) = t
                .get(&a.path(&format!("/webhooks/{id}/deliveries")), &a.key)
                .await;
            let d = body["data"]["deliveries"][0].clone();
            if d["state"] == "delivered" {
                return d;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("delivered on the fourth attempt");
    assert_eq!(log["attempts"], 4, "{log}");
    let codes: Vec<&Value> = log["log"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| &a["status_code"])
        .collect();
    assert_eq!(codes, [&json!(500), &json!(500), &json!(500), &json!(200)]);
    assert_eq!(log["log"][0]["response"], "try again later");
}

#[tokio::test]
async fn endpoints_are_validated_sealed_and_need_manage_settings() {
    // Private targets refused by default (after DNS: `localhost` too).
    let t = TestApp::spawn().await;
    let a = t.account("acme").await;
    for url in [
        "http://127.0.0.1:9/hook",
        "http://localhost:9/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]:9/",
        "http://10.1.2.3/",
    ] {
        let got = t
            .post(
                &a.path("/webhooks"),
                &a.key,
                json!({ "url": url, "events": ["*"] }),
            )
            .await;
        assert_error(
            &got,
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
            Some("url"),
        );
    }
    let t = spawn("1s").await;
    let a = t.account("acme").await;
    for (body, field) in [
        (
            json!({ "url": "ftp://example.com/", "events": ["*"] }),
            "url",
        ),
        (
            json!({ "url": "http://127.0.0.1:9/", "events": [] }),
            "events",
        ),
        (
            json!({ "url": "http://127.0.0.1:9/", "events": ["User.*"] }),
            "events[0]",
        ),
        (
            json!({ "url": "http://127.0.0.1:9/", "events": ["*"], "secret": "mine" }),
            "secret",
        ),
    ] {
        let got = t.post(&a.path("/webhooks"), &a.key, body).await;
        assert_error(
            &got,
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
            Some(field),
        );
    }
    let (status, _) = t.get(&a.path("/webhooks"), &a.key).await;
    assert_eq!(status, StatusCode::OK);
    let (status, made) = t
        .post(
            &a.path("/webhooks"),
            &a.key,
            json!({ "url": "http://127.0.0.1:9/", "events": ["*"] }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    let id = made["data"]["webhook"]["id"].as_str().unwrap();
    // The secret shows once: never in a read.
    let (_, one) = t.get(&a.path(&format!("/webhooks/{id}")), &a.key).await;
    assert!(one["data"]["webhook"].get("secret").is_none(), "{one}");
    assert!(!one.to_string().contains("whsec_"), "{one}");
    let (_, list) = t.get(&a.path("/webhooks"), &a.key).await;
    assert!(!list.to_string().contains("whsec_"), "{list}");
    // Another account: 404; a read key: 403.
    let b = t.account("other").await;
    assert_error(
        &t.get(&b.path(&format!("/webhooks/{id}")), &b.key).await,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        None,
    );
    let read = t.read_key(&a).await;
    assert_error(
        &t.get(&a.path("/webhooks"), &read).await,
        StatusCode::FORBIDDEN,
        "FORBIDDEN",
        None,
    );
    let (status, _) = t.delete(&a.path(&format!("/webhooks/{id}")), &a.key).await;
    assert_eq!(status, StatusCode::OK);
    assert_error(
        &t.get(&a.path(&format!("/webhooks/{id}")), &a.key).await,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        None,
    );
}

/// A receiver that is down while Roster is `kill -9`ed and restarted still
/// gets every acknowledged event, each verified, none twice.
#[tokio::test]
async fn a_receiver_down_across_a_kill_9_still_gets_every_acknowledged_event() {
    let (db, _dir) = crate::helpers::fresh_database_url().await;
    // A port nobody listens on yet.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let env = [
        ("ROSTER_WEBHOOK_ALLOW_PRIVATE_TARGETS", "true"),
        (
            "ROSTER_WEBHOOK_RETRY_SCHEDULE",
            "300ms,300ms,300ms,300ms,300ms,300ms,300ms,300ms,300ms,300ms,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s",
        ),
    ];
    let key = crate::helpers::OPERATOR_KEY;
    let mut server = crate::process::start_env(&db, Some(key), &env).await;
    let client = reqwest::Client::new();
    let api = |base: &str, path: &str| format!("{base}{path}");
    let a = process_account(&client, &server.base, key).await;
    let hook: Value = client
        .post(api(&server.base, &a.path("/webhooks")))
        .bearer_auth(&a.key)
        .json(
            &json!({ "url": format!("http://127.0.0.1:{port}/hook"), "events": ["user.created"] }),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let secret = hook["data"]["secret"]
        .as_str()
        .expect("a secret")
        .to_owned();
    let mut acked = std::collections::BTreeSet::new();
    for i in 0..10 {
        let res = client
            .post(api(&server.base, &a.path("/users")))
            .bearer_auth(&a.key)
            .json(&json!({ "name": format!("u{i}") }))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::CREATED);
        let body: Value = res.json().await.unwrap();
        acked.insert(body["data"]["user"]["id"].as_str().unwrap().to_owned());
    }
    server.child.kill().await.unwrap(); // SIGKILL
    let _server = crate::process::start_env(&db, Some(key), &env).await;
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("secret");
    std::fs::write(&secret_file, &secret).unwrap();
    let mut r = Receiver::start_on(port, 0, dir, secret_file).await;
    let mut ids = std::collections::BTreeSet::new();
    while ids.len() < acked.len() {
        // A delivery the killed node had in hand waits out its 60 s lease.
        let got = r.next_within(Duration::from_secs(90)).await;
        assert_eq!(got["type"], "user.created", "{got}");
        assert_eq!(got["verified"], true, "{got}");
        assert!(
            ids.insert(got["id"].as_str().unwrap().to_owned()),
            "delivered twice: {got}"
        );
    }
    assert_eq!(ids.len(), acked.len());
}

/// Two nodes, each running the worker, on one database: every event is
/// delivered once (counted by `webhook-id`), whichever node made it.
#[tokio::test]
async fn two_nodes_deliver_each_event_once() {
    if !crate::cluster::cluster_enabled() {
        return;
    }
    let mut r = Receiver::start(0).await;
    let (n1, n2) =
        crate::cluster::two_nodes_tuned(|c| c.webhook_allow_private_targets = true).await;
    let a = n1.account("acme").await;
    endpoint(&n1, &a, &r, json!(["user.created"])).await;
    for i in 0..20 {
        let n = if i % 2 == 0 { &n1 } else { &n2 };
        n.user(&a, json!({ "name": format!("u{i}") })).await;
    }
    let mut ids = std::collections::BTreeSet::new();
    for _ in 0..20 {
        let got = r.next().await;
        assert_eq!(got["verified"], true, "{got}");
        assert!(
            ids.insert(got["id"].as_str().unwrap().to_owned()),
            "delivered twice: {got}"
        );
    }
    // Nothing more comes: one more event, and it is the next line.
    n2.user(&a, json!({ "name": "last" })).await;
    let last = r.next().await;
    assert!(
        ids.insert(last["id"].as_str().unwrap().to_owned()),
        "a repeat after all: {last}"
    );
}

/// A rotated secret: deliveries carry a signature under the new secret and,
/// for 24 h, one under the old, so a receiver holding either verifies them.
/// `POST …/test` sends a `webhook.test`; a replay sends past events again
/// (the same `webhook-id`); a retry sends one delivery again.
#[tokio::test]
async fn rotation_test_events_replays_and_retries_go_through_the_receiver() {
    let mut r = Receiver::start(0).await;
    let t = spawn("1s").await;
    let a = t.account("acme").await;
    let hook = endpoint(&t, &a, &r, json!(["user.created"])).await;
    let id = hook["id"].as_str().unwrap().to_owned();
    let old_secret = std::fs::read_to_string(&r.secret_file).unwrap();
    t.user(&a, json!({ "name": "Ann" })).await;
    let first = r.next().await;
    assert_eq!(first["verified"], true, "{first}");

    let (status, rotated) = t
        .post(
            &a.path(&format!("/webhooks/{id}/rotate-secret")),
            &a.key,
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    let new_secret = rotated["data"]["secret"].as_str().unwrap().to_owned();
    assert_ne!(new_secret, old_secret);
    // The receiver still holds the old secret: it verifies.
    t.user(&a, json!({ "name": "Bob" })).await;
    let by_old = r.next().await;
    assert_eq!(
        by_old["verified"], true,
        "the old secret no longer verifies: {by_old}"
    );
    // And with the new one.
    std::fs::write(&r.secret_file, &new_secret).unwrap();
    let (status, sent) = t
        .post(&a.path(&format!("/webhooks/{id}/test")), &a.key, json!({}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{sent}");
    let test = r.next().await;
    assert_eq!(test["type"], "webhook.test", "{test}");
    assert_eq!(test["verified"], true, "{test}");
    assert_eq!(test["id"], sent["data"]["event_id"]);
    // A secret nobody was given verifies nothing.
    std::fs::write(&r.secret_file, "whsec_bm90IHRoZSBzZWNyZXQgYXQgYWxs").unwrap();
    t.user(&a, json!({ "name": "Cy" })).await;
    let foreign = r.next().await;
    assert_eq!(foreign["verified"], false, "{foreign}");
    std::fs::write(&r.secret_file, &new_secret).unwrap();

    // Replay from the start: Ann's, Bob's and Cy's user.created again.
    let (status, replayed) = t
        .post(
            &a.path(&format!("/webhooks/{id}/replay")),
            &a.key,
            json!({ "since_seq": 0 }),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{replayed}");
    assert_eq!(replayed["data"]["queued"], 3, "{replayed}");
    let mut again = Vec::new();
    for _ in 0..3 {
        let got = r.next().await;
        assert_eq!(got["verified"], true, "{got}");
        again.push(got["id"].clone());
    }
    assert!(again.contains(&first["id"]), "{again:?}");
    // Retry one delivery.
    let (_, list) = t
        .get(&a.path(&format!("/webhooks/{id}/deliveries")), &a.key)
        .await;
    let delivery = list["data"]["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["event_id"] == first["id"])
        .expect("Ann's delivery")
        .clone();
    let (status, body) = t
        .post(
            &a.path(&format!(
                "/webhooks/{id}/deliveries/{}/retry",
                delivery["id"].as_str().unwrap()
            )),
            &a.key,
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let retried = r.next().await;
    assert_eq!(retried["id"], first["id"]);
    // Refusals name their field; another account's delivery is 404.
    for (body, field) in [
        (json!({}), "since_seq"),
        (json!({ "since_seq": -1 }), "since_seq"),
        (json!({ "since": "yesterday" }), "since"),
        (
            json!({ "since_seq": 1, "since": "2026-01-01T00:00:00Z" }),
            "since_seq",
        ),
    ] {
        let got = t
            .post(&a.path(&format!("/webhooks/{id}/replay")), &a.key, body)
            .await;
        assert_error(
            &got,
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
            Some(field),
        );
    }
    let b = t.account("other").await;
    let got = t
        .post(
            &b.path(&format!(
                "/webhooks/{id}/deliveries/{}/retry",
                delivery["id"].as_str().unwrap()
            )),
            &b.key,
            json!({}),
        )
        .await;
    assert_error(&got, StatusCode::NOT_FOUND, "NOT_FOUND", None);
}

#[tokio::test]
async fn an_endpoint_failing_for_webhook_disable_after_is_disabled_by_the_system() {
    let mut r = Receiver::start(u32::MAX).await;
    let t = TestApp::spawn_with(|c| {
        c.webhook_allow_private_targets = true;
        c.webhook_retry_schedule = "200ms,200ms,200ms,200ms,200ms,200ms,200ms,200ms".into();
        c.webhook_disable_after = "1s".into();
    })
    .await;
    let a = t.account("acme").await;
    let hook = endpoint(&t, &a, &r, json!(["user.created"])).await;
    let id = hook["id"].as_str().unwrap().to_owned();
    t.user(&a, json!({ "name": "Ann" })).await;
    assert_eq!(r.next().await["status"], 500);
    let disabled = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let (_, body) = t.get(&a.path(&format!("/webhooks/{id}")), &a.key).await;
            if body["data"]["webhook"]["enabled"] == false {
                return body["data"]["webhook"].clone();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let Ok(disabled) = disabled else {
        let (_, hook) = t.get(&a.path(&format!("/webhooks/{id}")), &a.key).await;
        let (_, log) = t
            .get(&a.path(&format!("/webhooks/{id}/deliveries")), &a.key)
            .await;
        panic!("not disabled after failing for 1 s: {hook} {log}");
    };
    assert!(disabled["failing_since"].is_string(), "{disabled}");
    let (status, audit) = t.get(&a.path("/audit?type=webhook.disabled"), &a.key).await;
    assert_eq!(status, StatusCode::OK, "{audit}");
    let events = audit["data"]["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{audit}");
    assert_eq!(events[0]["actor"]["kind"], "system", "{audit}");
    assert_eq!(events[0]["subject"]["id"], id.as_str(), "{audit}");
    // Disabled: the pending retry waits, nothing more is attempted.
    let attempts = |body: &Value| body["data"]["deliveries"][0]["attempts"].clone();
    let (_, before) = t
        .get(&a.path(&format!("/webhooks/{id}/deliveries")), &a.key)
        .await;
    while r.lines.try_recv().is_ok() {}
    assert!(
        tokio::time::timeout(Duration::from_millis(1500), r.lines.recv())
            .await
            .is_err(),
        "no attempt to a disabled endpoint"
    );
    let (_, after) = t
        .get(&a.path(&format!("/webhooks/{id}/deliveries")), &a.key)
        .await;
    assert_eq!(attempts(&before), attempts(&after), "{after}");
    // Enabled again, its failures so far no longer count.
    let (status, enabled) = t
        .patch(
            &a.path(&format!("/webhooks/{id}")),
            &a.key,
            json!({ "enabled": true }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{enabled}");
    assert_eq!(
        enabled["data"]["webhook"]["failing_since"],
        Value::Null,
        "{enabled}"
    );
    assert_eq!(
        r.next().await["status"],
        500,
        "the waiting retry goes out again"
    );
}

#[tokio::test]
async fn presence_is_sent_to_endpoints_that_name_it_and_to_no_others() {
    let mut r = Receiver::start(0).await;
    let mut all = Receiver::start(0).await;
    let t = TestApp::spawn_with(|c| {
        c.webhook_allow_private_targets = true;
        c.presence_grace_ms = 100;
    })
    .await;
    let a = t.account("acme").await;
    let room = t.room(&a, json!({ "name": "Standup" })).await;
    endpoint(&t, &a, &r, json!(["participant.*"])).await;
    let everything = endpoint(&t, &a, &all, json!(["*"])).await;
    let ann = t.user(&a, json!({ "name": "Ann", "roomId": room })).await;
    let ann_id = ann["user"]["id"].as_str().unwrap().to_owned();

    let mut ws = connect(&t, ann["token"].as_str().unwrap()).await;
    send(&mut ws, json!({ "type": "join", "id": 1 })).await;
    wait_for(&mut ws, "ack", |_| true).await;
    let joined = r.next().await;
    assert_eq!(joined["type"], "participant.joined", "{joined}");
    assert_eq!(joined["verified"], true, "{joined}");
    let data = &joined["body"]["data"];
    assert_eq!(data["room_id"], room.as_str(), "{joined}");
    assert_eq!(data["user_id"], ann_id.as_str(), "{joined}");
    assert!(data["at"].is_string(), "{joined}");
    assert_eq!(joined["body"]["actor"]["id"], ann_id.as_str(), "{joined}");

    // A second connection of the same user into the room is no new arrival.
    let mut again = connect(&t, ann["token"].as_str().unwrap()).await;
    send(&mut again, json!({ "type": "join", "id": 1 })).await;
    wait_for(&mut again, "ack", |_| true).await;
    again.close(None).await.unwrap();
    send(
        &mut ws,
        json!({ "type": "leave", "id": 2, "room_id": room }),
    )
    .await;
    let left = r.next().await;
    assert_eq!(left["type"], "participant.left", "{left}");
    assert_eq!(left["body"]["data"]["user_id"], ann_id.as_str(), "{left}");
    assert_ne!(
        left["id"], joined["id"],
        "each change has its own webhook-id"
    );

    // Both changes were stored for every endpoint at once: the `*` endpoint
    // has the log's events and no presence.
    all.next().await;
    let id = everything["id"].as_str().unwrap();
    let (_, log) = t
        .get(&a.path(&format!("/webhooks/{id}/deliveries")), &a.key)
        .await;
    let types: Vec<&str> = log["data"]["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["type"].as_str().unwrap())
        .collect();
    assert!(types.contains(&"user.created"), "{log}");
    assert!(
        !types.iter().any(|t| t.starts_with("participant.")),
        "{log}"
    );
}

#[tokio::test]
async fn a_slow_endpoint_holds_its_own_slots_and_the_others_go_on() {
    let slow = Receiver::holding().await;
    let mut fast = Receiver::start(0).await;
    let mut slow = slow;
    let t = TestApp::spawn_with(|c| {
        c.webhook_allow_private_targets = true;
        c.webhook_endpoint_concurrency = 2;
    })
    .await;
    let a = t.account("acme").await;
    endpoint(&t, &a, &slow, json!(["user.created"])).await;
    endpoint(&t, &a, &fast, json!(["user.created"])).await;
    for i in 0..10 {
        t.user(&a, json!({ "name": format!("User {i}") })).await;
    }
    // The slow receiver answers nothing yet; the fast one gets every event.
    let mut ids = std::collections::HashSet::new();
    while ids.len() < 10 {
        let line = fast.next().await;
        assert_eq!(line["type"], "user.created", "{line}");
        ids.insert(line["id"].as_str().unwrap().to_owned());
    }
    assert!(
        slow.lines.try_recv().is_err(),
        "the slow receiver held them"
    );
    slow.release();
    let mut got = std::collections::HashSet::new();
    let mut most = 0;
    while got.len() < 10 {
        let line = slow.next().await;
        most = most.max(line["max_in_flight"].as_u64().unwrap());
        got.insert(line["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(got, ids, "the same events");
    assert_eq!(most, 2, "webhook_endpoint_concurrency = 2 in hand at once");
}

/// An account made with the operator key on a `roster serve` child.
async fn process_account(client: &reqwest::Client, base: &str, operator_key: &str) -> Account {
    let made: Value = client
        .post(format!("{base}/v1/accounts"))
        .bearer_auth(operator_key)
        .json(&json!({ "name": "acme" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    Account {
        id: made["data"]["account"]["id"].as_str().unwrap().to_owned(),
        key: made["data"]["api_key"].as_str().unwrap().to_owned(),
    }
}

#[tokio::test]
async fn a_graceful_stop_records_the_attempt_in_flight() {
    let (db, _dir) = crate::helpers::fresh_database_url().await;
    let mut r = Receiver::holding_announced().await;
    let env = [("ROSTER_WEBHOOK_ALLOW_PRIVATE_TARGETS", "true")];
    let key = crate::helpers::OPERATOR_KEY;
    let mut server = crate::process::start_env(&db, Some(key), &env).await;
    let client = reqwest::Client::new();
    let a = process_account(&client, &server.base, key).await;
    let hook: Value = client
        .post(format!("{}{}", server.base, a.path("/webhooks")))
        .bearer_auth(&a.key)
        .json(&json!({ "url": r.url, "events": ["user.created"] }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    std::fs::write(&r.secret_file, hook["data"]["secret"].as_str().unwrap()).unwrap();
    let hook_id = hook["data"]["webhook"]["id"].as_str().unwrap().to_owned();
    let res = client
        .post(format!("{}{}", server.base, a.path("/users")))
        .bearer_auth(&a.key)
        .json(&json!({ "name": "Ann" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    drop(client);
    let arrived = r.next().await;
    let id = arrived["arrived"].as_str().expect("an arrival").to_owned();

    // SIGTERM while the receiver holds the attempt; it answers only once
    // the node has stopped serving HTTP, so the answer must be recorded by
    // a worker that outlives the listener.
    let pid = server.child.id().unwrap().to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(status.success());
    let addr = server.base.trim_start_matches("http://").to_owned();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(&addr).await.is_ok() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the node still accepts connections 20 s after SIGTERM"
        );
        tokio::task::yield_now().await;
    }
    r.release();
    let answered = r.next().await;
    assert_eq!(answered["id"], id.as_str(), "{answered}");
    assert_eq!(answered["verified"], true, "{answered}");
    let exit = crate::process::wait_exit(&mut server.child).await;
    assert_eq!(exit.code(), Some(0));

    // After a restart the delivery is on record as delivered, once: not
    // in hand, waiting out a lease to be sent again.
    let server = crate::process::start_env(&db, Some(key), &env).await;
    let log: Value = reqwest::Client::new()
        .get(format!(
            "{}{}",
            server.base,
            a.path(&format!("/webhooks/{hook_id}/deliveries"))
        ))
        .bearer_auth(&a.key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let deliveries = log["data"]["deliveries"].as_array().unwrap();
    assert_eq!(deliveries.len(), 1, "{log}");
    assert_eq!(deliveries[0]["state"], "delivered", "{log}");
    assert_eq!(deliveries[0]["attempts"], 1, "{log}");
    assert!(
        r.lines.try_recv().is_err(),
        "nothing was sent again after the restart"
    );
}
