//! The realtime gateway over real WebSockets: the refusal catalogue at the
//! upgrade, presence, limits and live closing.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::helpers::{Account, TestApp};

pub type Ws = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

const DEADLINE: Duration = Duration::from_secs(10);

pub fn ws_url(t: &TestApp) -> String {
    t.base.replacen("http://", "ws://", 1) + "/v1/realtime"
}

/// Connects with the token in the query string and reads the welcome.
pub async fn connect(t: &TestApp, token: &str) -> Ws {
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("{}?token={token}", ws_url(t)))
        .await
        .expect("upgrade");
    let welcome = next_json(&mut ws).await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    ws
}

/// The HTTP status of a refused upgrade.
pub async fn refused(t: &TestApp, token: Option<&str>, origin: Option<&str>) -> u16 {
    let mut req = ws_url(t).into_client_request().unwrap();
    if let Some(tok) = token {
        req.headers_mut()
            .insert("authorization", format!("Bearer {tok}").parse().unwrap());
    }
    if let Some(o) = origin {
        req.headers_mut().insert("origin", o.parse().unwrap());
    }
    match tokio_tungstenite::connect_async(req).await {
        Err(WsError::Http(res)) => res.status().as_u16(),
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("the upgrade was accepted"),
    }
}

pub async fn next_json(ws: &mut Ws) -> Value {
    loop {
        let msg = tokio::time::timeout(DEADLINE, ws.next())
            .await
            .expect("a frame within the deadline")
            .expect("stream open")
            .expect("frame");
        match msg {
            Message::Text(t) => return serde_json::from_str(&t).unwrap(),
            Message::Close(c) => panic!("closed: {c:?}"),
            _ => continue,
        }
    }
}

/// Reads until a frame of `kind` matching `pred` arrives.
pub async fn wait_for(ws: &mut Ws, kind: &str, pred: impl Fn(&Value) -> bool) -> Value {
    tokio::time::timeout(DEADLINE, async {
        loop {
            let v = next_json(ws).await;
            if v["type"] == kind && pred(&v) {
                return v;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {kind} frame within the deadline"))
}

/// Reads until the server closes; returns the close code.
pub async fn close_code(ws: &mut Ws) -> u16 {
    tokio::time::timeout(DEADLINE, async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(Some(f)))) => return u16::from(f.code),
                Some(Ok(Message::Close(None))) | None => return 1005,
                Some(Err(_)) => return 1006,
                _ => continue,
            }
        }
    })
    .await
    .expect("the server closed within the deadline")
}

pub async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::Text(v.to_string().into())).await.unwrap();
}

async fn setup(t: &TestApp) -> (Account, String) {
    let a = t.account("acme").await;
    let room = t.room(&a, json!({ "name": "Standup" })).await;
    (a, room)
}

/// The user record once its `status` reads `want` (the record follows
/// presence transitions through the writer, a moment after the event).
async fn user_with_status(t: &TestApp, a: &Account, id: &str, want: &str) -> Value {
    tokio::time::timeout(DEADLINE, async {
        loop {
            let (_, body) = t.get(&a.path(&format!("/users/{id}")), &a.key).await;
            if body["data"]["user"]["status"] == want {
                return body["data"]["user"].clone();
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("user {id} never became {want}"))
}

#[tokio::test]
async fn the_upgrade_refuses_everything_but_a_live_user_token() {
    let t =
        TestApp::spawn_with(|c| c.realtime_allowed_origins = vec!["https://app.example".into()])
            .await;
    let (a, room) = setup(&t).await;
    let d = t.user(&a, json!({ "name": "A", "roomId": room })).await;
    let token = d["token"].as_str().unwrap();
    assert_eq!(refused(&t, None, None).await, 401);
    assert_eq!(refused(&t, Some("garbage"), None).await, 401);
    assert_eq!(refused(&t, Some(&a.key), None).await, 401);
    let mut forged = token.to_owned();
    forged.pop();
    forged.push(if token.ends_with('A') { 'B' } else { 'A' });
    assert_eq!(refused(&t, Some(&forged), None).await, 401);
    assert_eq!(
        refused(&t, Some(token), Some("https://evil.example")).await,
        403
    );
    // The allowed origin and no origin (non-browser clients) both pass.
    let mut req = ws_url(&t).into_client_request().unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    req.headers_mut()
        .insert("origin", "https://app.example".parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    assert_eq!(next_json(&mut ws).await["type"], "welcome");
    // A deactivated user's token is refused.
    let id = d["user"]["id"].as_str().unwrap();
    t.post(
        &a.path(&format!("/users/{id}/deactivate")),
        &a.key,
        json!({}),
    )
    .await;
    assert_eq!(refused(&t, Some(token), None).await, 401);
}

#[tokio::test]
async fn join_makes_the_user_online_for_the_room_and_the_record() {
    let t = TestApp::spawn_with(|c| c.presence_grace_ms = 200).await;
    let (a, room) = setup(&t).await;
    let alice = t.user(&a, json!({ "name": "Alice", "roomId": room })).await;
    let bob = t.user(&a, json!({ "name": "Bob", "roomId": room })).await;
    let alice_id = alice["user"]["id"].as_str().unwrap().to_owned();
    let bob_id = bob["user"]["id"].as_str().unwrap().to_owned();

    // CollabKit: join() without an argument joins the token's room.
    let mut ws_a = connect(&t, alice["token"].as_str().unwrap()).await;
    send(&mut ws_a, json!({ "type": "join", "id": 1 })).await;
    let snap = wait_for(&mut ws_a, "snapshot", |_| true).await;
    assert_eq!(snap["room_id"], room.as_str());
    assert_eq!(snap["id"], 1);
    assert_eq!(snap["members"][0]["user_id"], alice_id.as_str());
    let ack = wait_for(&mut ws_a, "ack", |_| true).await;
    assert_eq!(
        (ack["id"].clone(), ack["of"].clone()),
        (json!(1), json!("join"))
    );
    user_with_status(&t, &a, &alice_id, "online").await;

    let mut ws_b = connect(&t, bob["token"].as_str().unwrap()).await;
    send(
        &mut ws_b,
        json!({ "type": "join", "id": "j", "room_id": room }),
    )
    .await;
    let snap = wait_for(&mut ws_b, "snapshot", |_| true).await;
    assert_eq!(snap["members"].as_array().unwrap().len(), 2);
    let p = wait_for(&mut ws_a, "presence", |v| v["user_id"] == bob_id.as_str()).await;
    assert_eq!(p["status"], "online");
    assert_eq!(p["room_id"], room.as_str());

    send(
        &mut ws_b,
        json!({ "type": "set_status", "id": 2, "status": "away" }),
    )
    .await;
    let p = wait_for(&mut ws_a, "presence", |v| v["user_id"] == bob_id.as_str()).await;
    assert_eq!(p["status"], "away");

    // Bob drops: after the grace period Alice sees him offline.
    ws_b.close(None).await.unwrap();
    let p = wait_for(&mut ws_a, "presence", |v| v["user_id"] == bob_id.as_str()).await;
    assert_eq!(p["status"], "offline");
    let u = user_with_status(&t, &a, &bob_id, "offline").await;
    assert!(u["last_seen_at"].is_string());

    send(&mut ws_a, json!({ "type": "ping", "id": 9 })).await;
    assert_eq!(
        wait_for(&mut ws_a, "ack", |v| v["id"] == 9).await["of"],
        "ping"
    );
}

#[tokio::test]
async fn a_reload_within_the_grace_period_does_not_flicker() {
    let t = TestApp::spawn_with(|c| c.presence_grace_ms = 2_000).await;
    let (a, room) = setup(&t).await;
    let alice = t.user(&a, json!({ "name": "Alice", "roomId": room })).await;
    let bob = t.user(&a, json!({ "name": "Bob", "roomId": room })).await;
    let bob_id = bob["user"]["id"].as_str().unwrap().to_owned();
    let mut ws_a = connect(&t, alice["token"].as_str().unwrap()).await;
    send(&mut ws_a, json!({ "type": "join", "id": 1 })).await;
    wait_for(&mut ws_a, "ack", |_| true).await;
    let mut ws_b = connect(&t, bob["token"].as_str().unwrap()).await;
    send(&mut ws_b, json!({ "type": "join", "id": 1 })).await;
    wait_for(&mut ws_a, "presence", |v| v["user_id"] == bob_id.as_str()).await;
    ws_b.close(None).await.unwrap();
    let mut ws_b = connect(&t, bob["token"].as_str().unwrap()).await;
    send(&mut ws_b, json!({ "type": "join", "id": 1 })).await;
    wait_for(&mut ws_b, "ack", |_| true).await;
    // Alice's next frame is the answer to her ping, not an offline flicker.
    send(&mut ws_a, json!({ "type": "ping", "id": 2 })).await;
    let next = next_json(&mut ws_a).await;
    assert_eq!(next["type"], "ack", "{next}");
    // An explicit leave is announced at once.
    send(
        &mut ws_b,
        json!({ "type": "leave", "id": 3, "room_id": room }),
    )
    .await;
    let p = wait_for(&mut ws_a, "presence", |v| v["user_id"] == bob_id.as_str()).await;
    assert_eq!(p["status"], "offline");
}

#[tokio::test]
async fn private_rooms_admit_members_only() {
    let t = TestApp::spawn().await;
    let a = t.account("acme").await;
    let secret = t
        .room(&a, json!({ "name": "S", "visibility": "private" }))
        .await;
    let member = t.user(&a, json!({ "name": "M", "roomId": secret })).await;
    let outsider = t.user(&a, json!({ "name": "O" })).await;
    let mut ws = connect(&t, outsider["token"].as_str().unwrap()).await;
    send(
        &mut ws,
        json!({ "type": "join", "id": 1, "room_id": secret }),
    )
    .await;
    let e = wait_for(&mut ws, "error", |_| true).await;
    assert_eq!(
        (e["id"].clone(), e["code"].clone()),
        (json!(1), json!("FORBIDDEN"))
    );
    send(
        &mut ws,
        json!({ "type": "join", "id": 2, "room_id": "0199c0de-0000-7000-8000-000000000000" }),
    )
    .await;
    assert_eq!(
        wait_for(&mut ws, "error", |_| true).await["code"],
        "NOT_FOUND"
    );
    send(&mut ws, json!({ "type": "join", "id": 3 })).await;
    assert_eq!(
        wait_for(&mut ws, "error", |_| true).await["code"],
        "VALIDATION_ERROR"
    );
    send(&mut ws, json!({ "type": "dance", "id": 4 })).await;
    assert_eq!(
        wait_for(&mut ws, "error", |_| true).await["code"],
        "BAD_REQUEST"
    );
    ws.send(Message::Text("not json".into())).await.unwrap();
    assert_eq!(
        wait_for(&mut ws, "error", |_| true).await["code"],
        "BAD_REQUEST"
    );
    let mut ws = connect(&t, member["token"].as_str().unwrap()).await;
    send(&mut ws, json!({ "type": "join", "id": 1 })).await;
    assert_eq!(
        wait_for(&mut ws, "ack", |_| true).await["room_id"],
        secret.as_str()
    );
}

#[tokio::test]
async fn deactivating_or_deleting_a_user_closes_their_connections_with_1008() {
    let t = TestApp::spawn().await;
    let (a, room) = setup(&t).await;
    for action in ["deactivate", "delete"] {
        let d = t.user(&a, json!({ "name": "A", "roomId": room })).await;
        let id = d["user"]["id"].as_str().unwrap();
        let mut ws1 = connect(&t, d["token"].as_str().unwrap()).await;
        let mut ws2 = connect(&t, d["token"].as_str().unwrap()).await;
        send(&mut ws1, json!({ "type": "join", "id": 1 })).await;
        wait_for(&mut ws1, "ack", |_| true).await;
        let (status, _) = if action == "delete" {
            t.delete(&a.path(&format!("/users/{id}")), &a.key).await
        } else {
            t.post(
                &a.path(&format!("/users/{id}/deactivate")),
                &a.key,
                json!({}),
            )
            .await
        };
        assert_eq!(status, StatusCode::OK);
        assert_eq!(close_code(&mut ws1).await, 1008, "{action}");
        assert_eq!(close_code(&mut ws2).await, 1008, "{action}");
    }
}

#[tokio::test]
async fn limits_are_enforced_with_clear_errors() {
    let t = TestApp::spawn_with(|c| {
        c.realtime_rooms_per_connection = 2;
        c.realtime_connections_per_user = 2;
        c.realtime_frames_per_second = 5;
        c.realtime_max_frame_bytes = 4096;
    })
    .await;
    let a = t.account("acme").await;
    let rooms = [
        t.room(&a, json!({ "name": "1" })).await,
        t.room(&a, json!({ "name": "2" })).await,
        t.room(&a, json!({ "name": "3" })).await,
    ];
    let d = t.user(&a, json!({ "name": "A" })).await;
    let token = d["token"].as_str().unwrap();
    let mut ws = connect(&t, token).await;
    for (i, r) in rooms.iter().enumerate() {
        send(&mut ws, json!({ "type": "join", "id": i, "room_id": r })).await;
    }
    wait_for(&mut ws, "ack", |v| v["id"] == 1).await;
    let e = wait_for(&mut ws, "error", |v| v["id"] == 2).await;
    assert_eq!(e["code"], "LIMIT");
    // Connections per user.
    let _second = connect(&t, token).await;
    assert_eq!(refused(&t, Some(token), None).await, 429);
    // Frames per second: a burst beyond the bucket is refused, then the
    // connection is closed if it keeps going.
    for i in 0..40 {
        send(&mut ws, json!({ "type": "ping", "id": 100 + i })).await;
    }
    wait_for(&mut ws, "error", |v| v["code"] == "RATE_LIMITED").await;
    assert_eq!(close_code(&mut ws).await, 4008);
    // Frame size.
    drop(ws);
    let other = t.user(&a, json!({ "name": "B" })).await;
    let mut ws = connect(&t, other["token"].as_str().unwrap()).await;
    send(&mut ws, json!({ "type": "ping", "pad": "x".repeat(5000) })).await;
    assert_eq!(close_code(&mut ws).await, 1009);
}

#[tokio::test]
async fn a_silent_client_is_dropped_by_the_heartbeat() {
    let t = TestApp::spawn_with(|c| {
        c.heartbeat_ms = 50;
        c.heartbeat_timeout_ms = 300;
    })
    .await;
    let (a, _) = setup(&t).await;
    let d = t.user(&a, json!({ "name": "A" })).await;
    let ws = connect(&t, d["token"].as_str().unwrap()).await;
    // Not reading means not answering pings; the server gives up. Wait for
    // the connection count to fall (deadline-bound), then read the close.
    let hub = t.app.hub.clone();
    tokio::time::timeout(DEADLINE, async {
        while hub.connection_count() > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the server dropped the silent connection");
    let mut ws = ws;
    assert_eq!(close_code(&mut ws).await, 4000);
}

#[tokio::test]
async fn shutdown_closes_every_connection_with_1001() {
    let t = TestApp::spawn().await;
    let (a, _) = setup(&t).await;
    let d = t.user(&a, json!({ "name": "A" })).await;
    let mut ws = connect(&t, d["token"].as_str().unwrap()).await;
    t.app.realtime_shutdown.cancel();
    assert_eq!(close_code(&mut ws).await, u16::from(CloseCode::Away));
}

#[tokio::test]
async fn a_client_that_does_not_read_is_dropped_without_slowing_the_others() {
    let t = TestApp::spawn_with(|c| c.realtime_frames_per_second = 1_000_000).await;
    let (a, room) = setup(&t).await;
    let slow = t.user(&a, json!({ "name": "Slow", "roomId": room })).await;
    let fast = t.user(&a, json!({ "name": "Fast", "roomId": room })).await;
    let talker = t
        .user(&a, json!({ "name": "Talker", "roomId": room }))
        .await;
    let talker_id = talker["user"]["id"].as_str().unwrap().to_owned();
    let mut ws_slow = connect(&t, slow["token"].as_str().unwrap()).await;
    send(&mut ws_slow, json!({ "type": "join", "id": 1 })).await;
    wait_for(&mut ws_slow, "ack", |_| true).await;
    let mut ws_fast = connect(&t, fast["token"].as_str().unwrap()).await;
    send(&mut ws_fast, json!({ "type": "join", "id": 1 })).await;
    wait_for(&mut ws_fast, "ack", |_| true).await;
    let mut ws_talk = connect(&t, talker["token"].as_str().unwrap()).await;
    send(&mut ws_talk, json!({ "type": "join", "id": 1 })).await;
    wait_for(&mut ws_talk, "ack", |_| true).await;
    // From here the slow client never reads. The talker floods the room
    // with status changes; the fast client reads every one of them.
    let n = 20_000;
    // Every toggle is one event, after the talker's own arrival: n + 1.
    let fast_reader = tokio::spawn(async move {
        let mut statuses = Vec::new();
        while statuses.len() < n + 1 {
            let v = next_json(&mut ws_fast).await;
            if v["type"] == "presence" && v["user_id"] == talker_id.as_str() {
                statuses.push(v["status"].as_str().unwrap().to_owned());
            }
        }
        statuses
    });
    let talk = tokio::spawn(async move {
        for i in 0..n {
            let status = if i % 2 == 0 { "away" } else { "online" };
            ws_talk
                .send(Message::Text(
                    json!({ "type": "set_status", "status": status })
                        .to_string()
                        .into(),
                ))
                .await
                .unwrap();
        }
        // Drain the acks so the talker is not the slow one.
        let mut acks = 0;
        while acks < n {
            if next_json(&mut ws_talk).await["type"] == "ack" {
                acks += 1;
            }
        }
    });
    // The slow connection is dropped (its send queue filled).
    let hub = t.app.hub.clone();
    tokio::time::timeout(Duration::from_secs(60), async {
        while hub.connection_count() > 2 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the slow client was dropped");
    talk.await.unwrap();
    let statuses = tokio::time::timeout(Duration::from_secs(60), fast_reader)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(statuses[0], "online");
    assert!(
        statuses[1..]
            .iter()
            .enumerate()
            .all(|(i, s)| s == if i % 2 == 0 { "away" } else { "online" }),
        "the fast client missed or reordered events"
    );
    drop(ws_slow);
}

/// #17 item 2: behind a trusted proxy the per-address connection cap
/// counts each client (by `X-Forwarded-For`), not the proxy; from anyone
/// else the header is ignored.
#[tokio::test]
async fn the_per_address_cap_counts_clients_behind_a_trusted_proxy() {
    for trusted in [true, false] {
        let t = TestApp::spawn_with(|c| {
            c.realtime_connections_per_ip = 1;
            if trusted {
                c.trusted_proxies = vec!["127.0.0.1".into()];
            }
        })
        .await;
        let a = t.account("acme").await;
        let d = t.user(&a, json!({ "name": "Ann" })).await;
        let token = d["token"].as_str().unwrap();
        // The sockets stay open until the test ends: the cap counts live ones.
        let mut open = Vec::new();
        let mut connect = async |client: &str| {
            let url = format!(
                "{}/v1/realtime?token={token}",
                t.base.replacen("http://", "ws://", 1)
            );
            let mut req = url.into_client_request().unwrap();
            req.headers_mut()
                .insert("x-forwarded-for", client.parse().unwrap());
            match tokio_tungstenite::connect_async(req).await {
                Ok((ws, res)) => {
                    open.push(ws);
                    res.status().as_u16()
                }
                Err(WsError::Http(res)) => res.status().as_u16(),
                Err(e) => panic!("{e}"),
            }
        };
        assert_eq!(connect("198.51.100.1").await, 101);
        let other = connect("198.51.100.2").await;
        let again = connect("198.51.100.1").await;
        if trusted {
            assert_eq!((other, again), (101, 429), "one socket per client address");
        } else {
            assert_eq!(other, 429, "an untrusted peer's header names nobody");
        }
    }
}
