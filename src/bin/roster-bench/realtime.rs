//! The realtime scenario: connect + join rate, idle memory per joined
//! connection, and join→presence latency across one room.

use super::*;

/// Resident memory of a process now, in KiB.
fn rss_kib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Realtime: `members` users connect (token in the query), join one room and
/// stay; then a few more join, one at a time, and every member's receipt of
/// the `presence` event is timed. Reports connections joined per second and
/// the connect+join latency, the server's memory per idle joined
/// connection, and join→presence latency across the room.
pub(super) async fn realtime(ctx: &Ctx) -> anyhow::Result<Vec<Row>> {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let members = if ctx.plan.smoke {
        50
    } else {
        ctx.plan.users.max(1000)
    };
    let joiners = if ctx.plan.smoke { 3 } else { 20 };
    let account = ctx.create_account("bench realtime").await?;
    let mut api = Api::new(ctx.roster.clone());
    let room = api
        .expect(
            StatusCode::CREATED,
            Method::POST,
            &format!("/v1/accounts/{}/rooms", account.id),
            Some(&account.key),
            Some(&json!({ "name": "Town hall" })),
        )
        .await?;
    let room = str_at(&room, "/room/id")?.to_owned();
    let mut users = Vec::with_capacity(members + joiners);
    for i in 0..members + joiners {
        let d = api
            .expect(
                StatusCode::CREATED,
                Method::POST,
                &format!("/v1/accounts/{}/users", account.id),
                Some(&account.key),
                Some(&json!({ "name": format!("M{i}"), "roomId": room })),
            )
            .await?;
        users.push((
            str_at(&d, "/user/id")?.to_owned(),
            str_at(&d, "/token")?.to_owned(),
        ));
    }
    let ws_base = format!("ws://{}/v1/realtime?token=", ctx.roster.addr);
    // Members connect to the peer node when there is one.
    let members_base = match &ctx.peer {
        Some(p) => format!("ws://{}/v1/realtime?token=", p.addr),
        None => ws_base.clone(),
    };

    // Phase 0: idle joined connections, each alone in its own room (so no
    // presence traffic pollutes the memory figure).
    let mut idle_rooms = Vec::with_capacity(members);
    for i in 0..members {
        let r = api
            .expect(
                StatusCode::CREATED,
                Method::POST,
                &format!("/v1/accounts/{}/rooms", account.id),
                Some(&account.key),
                Some(&json!({ "name": format!("Booth {i}") })),
            )
            .await?;
        idle_rooms.push(str_at(&r, "/room/id")?.to_owned());
    }
    let rss_idle_before = ctx.server_pid.and_then(rss_kib);
    let mut idle = Vec::with_capacity(members);
    for ((_, token), room) in users[..members].iter().zip(&idle_rooms) {
        let (mut ws, _) =
            tokio_tungstenite::connect_async(format!("{members_base}{token}")).await?;
        ws.send(Message::Text(
            json!({ "type": "join", "id": 1, "room_id": room })
                .to_string()
                .into(),
        ))
        .await?;
        while let Some(msg) = ws.next().await {
            if let Message::Text(t) = msg?
                && t.contains("\"ack\"")
            {
                break;
            }
        }
        idle.push(ws);
    }
    let per_idle = match (
        rss_idle_before.filter(|_| ctx.peer.is_none()),
        ctx.server_pid.and_then(rss_kib),
    ) {
        (Some(b), Some(a)) => Some((a - b) / members as f64),
        _ => None,
    };
    if let Some(per) = per_idle {
        eprintln!(
            "roster-bench: realtime       {members} idle joined connections: {per:.1} KiB of server RSS each"
        );
    }
    drop(idle);
    let rss_before = ctx.server_pid.and_then(rss_kib);

    // Phase 1: connect and join, 64 at a time.
    let (seen_tx, mut seen_rx) = tokio::sync::mpsc::unbounded_channel::<(String, Instant)>();
    let started = Instant::now();
    let mut latencies = Vec::with_capacity(members);
    let mut sockets = JoinSet::new();
    let mut errors = 0u64;
    for chunk in users[..members].chunks(64) {
        let mut set = JoinSet::new();
        for (_, token) in chunk {
            let url = format!("{members_base}{token}");
            set.spawn(async move {
                let t0 = Instant::now();
                let (mut ws, _) = tokio_tungstenite::connect_async(url).await?;
                ws.send(Message::Text(
                    json!({ "type": "join", "id": 1 }).to_string().into(),
                ))
                .await?;
                while let Some(msg) = ws.next().await {
                    if let Message::Text(t) = msg? {
                        let v: Value = serde_json::from_str(&t)?;
                        if v["type"] == "ack" {
                            return Ok::<_, anyhow::Error>((ws, t0.elapsed()));
                        }
                        if v["type"] == "error" {
                            bail!("join refused: {v}");
                        }
                    }
                }
                bail!("closed before the join was acknowledged")
            });
        }
        while let Some(r) = set.join_next().await {
            match r? {
                Ok((mut ws, took)) => {
                    latencies.push(took.as_micros().min(u128::from(u32::MAX)) as u32);
                    let seen = seen_tx.clone();
                    sockets.spawn(async move {
                        while let Some(Ok(msg)) = ws.next().await {
                            if let Message::Text(t) = msg
                                && let Ok(v) = serde_json::from_str::<Value>(&t)
                                && v["type"] == "presence"
                                && v["status"] == "online"
                                && let Some(u) = v["user_id"].as_str()
                            {
                                let _ = seen.send((u.to_owned(), Instant::now()));
                            }
                        }
                    });
                }
                Err(e) => {
                    errors += 1;
                    eprintln!("roster-bench: realtime connection failed: {e:#}");
                }
            }
        }
    }
    let elapsed = started.elapsed();
    let outcome = Outcome {
        ok: latencies.len() as u64,
        latencies_us: latencies,
        ..Default::default()
    };
    let mut join_row = make_row("realtime-join", "roster", 64, outcome, elapsed);
    join_row.errors = errors;
    // Let the join storm's presence events drain before measuring memory.
    while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(500), seen_rx.recv()).await {
    }
    join_row.extra.insert("connections", members as f64);
    if let Some(per) = per_idle {
        join_row
            .extra
            .insert("server_kib_per_idle_joined_connection", per);
    }
    if let (Some(before), Some(after)) = (rss_before, ctx.server_pid.and_then(rss_kib)) {
        join_row.extra.insert(
            "server_kib_per_connection_after_one_room_join_storm",
            (after - before) / members as f64,
        );
    }
    join_row.server_peak_rss_mib = ctx.server_pid.and_then(|p| peak_rss_mib(p).ok());

    // Phase 2: join → presence latency across the room, one joiner at a time.
    let mut deliveries = Vec::with_capacity(members * joiners);
    let mut missing = 0u64;
    let t_all = Instant::now();
    for (id, token) in &users[members..] {
        let (mut ws, _) = tokio_tungstenite::connect_async(format!("{ws_base}{token}")).await?;
        let t0 = Instant::now();
        ws.send(Message::Text(
            json!({ "type": "join", "id": 1 }).to_string().into(),
        ))
        .await?;
        let mut got = 0usize;
        let deadline = Instant::now() + Duration::from_secs(10);
        while got < members {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, seen_rx.recv()).await {
                Ok(Some((u, at))) if &u == id => {
                    got += 1;
                    deliveries
                        .push(at.duration_since(t0).as_micros().min(u128::from(u32::MAX)) as u32);
                }
                Ok(Some(_)) => {}
                _ => break,
            }
        }
        missing += (members - got) as u64;
        sockets.spawn(async move { while let Some(Ok(_)) = ws.next().await {} });
    }
    let outcome = Outcome {
        ok: deliveries.len() as u64,
        latencies_us: deliveries,
        ..Default::default()
    };
    let name = if ctx.peer.is_some() {
        "realtime-presence-across-nodes"
    } else {
        "realtime-presence"
    };
    let mut presence_row = make_row(name, "roster", members, outcome, t_all.elapsed());
    presence_row.errors = missing;
    presence_row.server_peak_rss_mib = ctx.server_pid.and_then(|p| peak_rss_mib(p).ok());
    sockets.abort_all();
    Ok(vec![join_row, presence_row])
}
