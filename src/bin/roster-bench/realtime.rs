//! The realtime scenario: connect + join rate (many rooms and one room),
//! idle joined connections held and the server's memory per connection, and
//! join→presence latency across one room.

use std::net::{IpAddr, Ipv4Addr};

use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use super::*;

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

/// How many idle joined connections to hold:
/// `ROSTER_BENCH_IDLE_CONNECTIONS`, else 50 with `--smoke`, else as many as
/// the open-files limit leaves room for (the bench and the server each need
/// one descriptor per connection, plus a few hundred of their own).
const IDLE_ENV: &str = "ROSTER_BENCH_IDLE_CONNECTIONS";
/// Descriptors kept free for everything else in each process.
const FD_MARGIN: usize = 1000;
/// Connections opened at once while connecting and joining.
const JOIN_CONCURRENCY: usize = 64;
/// Connections per source address: the server caps connections per IP
/// (`realtime_connections_per_ip`, 2000 by default), so the bench spreads
/// its sockets over 127.0.0.2, 127.0.0.3, … (all loopback on Linux).
const PER_SOURCE_IP: usize = 1000;

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

/// The soft open-files limit of this process (the server inherits it).
fn open_files_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    limits
        .lines()
        .find(|l| l.starts_with("Max open files"))?
        .split_whitespace()
        .nth(3)?
        .parse()
        .ok()
}

fn idle_target(smoke: bool) -> anyhow::Result<usize> {
    if let Ok(v) = std::env::var(IDLE_ENV) {
        return v
            .parse::<usize>()
            .ok()
            .filter(|n| *n > 0)
            .with_context(|| format!("{IDLE_ENV} must be a positive number, not {v:?}"));
    }
    if smoke {
        return Ok(50);
    }
    Ok(open_files_limit()
        .map_or(1000, |l| l.saturating_sub(FD_MARGIN))
        .clamp(100, 100_000))
}

/// Creates `n` things with `make(i)` as the body of `POST path`, 32 at a
/// time; returns the string at `pointer` of each answer, in order.
async fn create_many(
    ctx: &Ctx,
    account: &Account,
    path: &str,
    n: usize,
    pointers: &'static [&'static str],
    make: impl Fn(usize) -> Value,
) -> anyhow::Result<Vec<Vec<String>>> {
    let bodies: Vec<Value> = (0..n).map(make).collect();
    let results = futures::stream::iter(bodies.into_iter().enumerate())
        .chunks(n.div_ceil(32).max(1))
        .map(|chunk| {
            let mut api = Api::new(ctx.roster.clone());
            let key = account.key.clone();
            let path = path.to_owned();
            async move {
                let mut out = Vec::with_capacity(chunk.len());
                for (i, body) in chunk {
                    let d = api
                        .expect(
                            StatusCode::CREATED,
                            Method::POST,
                            &path,
                            Some(&key),
                            Some(&body),
                        )
                        .await?;
                    let fields = pointers
                        .iter()
                        .map(|p| str_at(&d, p).map(str::to_owned))
                        .collect::<anyhow::Result<Vec<_>>>()?;
                    out.push((i, fields));
                }
                Ok::<_, anyhow::Error>(out)
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
    let mut all = Vec::with_capacity(n);
    for r in results {
        all.extend(r?);
    }
    all.sort_by_key(|(i, _)| *i);
    Ok(all.into_iter().map(|(_, f)| f).collect())
}

/// Opens a WebSocket to `addr` from source address `source` (when given).
async fn open(addr: SocketAddr, source: Option<IpAddr>, url: &str) -> anyhow::Result<Ws> {
    let stream = match source {
        Some(ip) => {
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket.bind(SocketAddr::new(ip, 0))?;
            socket.connect(addr).await?
        }
        None => TcpStream::connect(addr).await?,
    };
    stream.set_nodelay(true)?;
    let (ws, _) =
        tokio_tungstenite::client_async(url, tokio_tungstenite::MaybeTlsStream::Plain(stream))
            .await?;
    Ok(ws)
}

/// Connects, joins `room` and waits for the `ack`.
async fn connect_and_join(
    addr: SocketAddr,
    source: Option<IpAddr>,
    url: String,
    room: String,
) -> anyhow::Result<(Ws, Duration)> {
    let t0 = Instant::now();
    let mut ws = open(addr, source, &url).await?;
    ws.send(Message::Text(
        json!({ "type": "join", "id": 1, "room_id": room })
            .to_string()
            .into(),
    ))
    .await?;
    while let Some(msg) = ws.next().await {
        if let Message::Text(t) = msg? {
            let v: Value = serde_json::from_str(&t)?;
            if v["type"] == "ack" {
                return Ok((ws, t0.elapsed()));
            }
            if v["type"] == "error" {
                bail!("join refused: {v}");
            }
        }
    }
    bail!("closed before the join was acknowledged")
}

/// Source address of connection `i`: 127.0.0.2 upwards, `PER_SOURCE_IP`
/// each, when the server is on loopback.
fn source_of(addr: SocketAddr, i: usize) -> Option<IpAddr> {
    if !addr.ip().is_loopback() || !addr.is_ipv4() {
        return None;
    }
    let n = 2 + i / PER_SOURCE_IP;
    let ip = Ipv4Addr::new(127, (n >> 16) as u8, (n >> 8) as u8, n as u8);
    Some(IpAddr::V4(ip))
}

/// Connects and joins every (token, room), `JOIN_CONCURRENCY` at a time;
/// returns the open sockets, the connect+join latencies and the errors.
async fn join_all(
    addr: SocketAddr,
    base: &str,
    pairs: Vec<(String, String)>,
) -> (Vec<Ws>, Vec<u32>, u64, Duration) {
    let started = Instant::now();
    let results: Vec<anyhow::Result<(Ws, Duration)>> =
        futures::stream::iter(pairs.into_iter().enumerate())
            .map(|(i, (token, room))| {
                connect_and_join(addr, source_of(addr, i), format!("{base}{token}"), room)
            })
            .buffer_unordered(JOIN_CONCURRENCY)
            .collect()
            .await;
    let elapsed = started.elapsed();
    let mut sockets = Vec::with_capacity(results.len());
    let mut latencies = Vec::with_capacity(results.len());
    let mut errors = 0u64;
    for r in results {
        match r {
            Ok((ws, took)) => {
                sockets.push(ws);
                latencies.push(took.as_micros().min(u128::from(u32::MAX)) as u32);
            }
            Err(e) => {
                if errors < 5 {
                    eprintln!("roster-bench: realtime connection failed: {e:#}");
                }
                errors += 1;
            }
        }
    }
    (sockets, latencies, errors, elapsed)
}

/// Waits until the server is quiet (under 2 % of a core over 250 ms, at most
/// `limit`): the background work of the previous phase (grace periods,
/// presence records) must not be measured in the next.
async fn settle(ctx: &Ctx, limit: Duration) {
    let Some(pid) = ctx.server_pid else {
        tokio::time::sleep(Duration::from_secs(1)).await;
        return;
    };
    let deadline = Instant::now() + limit;
    let mut last = ctx.clock.cpu_seconds(pid).unwrap_or(0.0);
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = ctx.clock.cpu_seconds(pid).unwrap_or(0.0);
        if now - last < 0.005 {
            return;
        }
        last = now;
    }
}

fn with_server_cpu(mut row: Row, ctx: &Ctx, cpu_before: Option<f64>) -> Row {
    let pid = ctx.server_pid;
    if let (Some(b), Some(a)) = (cpu_before, pid.and_then(|p| ctx.clock.cpu_seconds(p).ok())) {
        row.server_cpu_seconds = Some(a - b);
    }
    row.server_peak_rss_mib = pid.and_then(|p| peak_rss_mib(p).ok());
    row
}

/// Realtime, in three phases:
/// 0. `idle` users (default: as many as the open-files limit allows) connect
///    and join, each a room of their own, 64 at a time — the many-rooms
///    connect+join rate, without fan-out — and stay idle: the server's RSS
///    per idle joined connection, with the count actually held.
/// 1. `members` users (1,000) connect and join one room, 64 at a time: every
///    join is announced to everyone already there (fan-out, n²).
/// 2. a few more join that room one at a time; every member's receipt of
///    their `presence` is timed.
pub(super) async fn realtime(ctx: &Ctx) -> anyhow::Result<Vec<Row>> {
    let members = if ctx.plan.smoke {
        50
    } else {
        ctx.plan.users.max(1000)
    };
    let joiners = if ctx.plan.smoke { 3 } else { 20 };
    let idle_n = idle_target(ctx.plan.smoke)?;
    let account = ctx.create_account("bench realtime").await?;
    let accounts = format!("/v1/accounts/{}", account.id);
    let mut api = Api::new(ctx.roster.clone());
    let room = api
        .expect(
            StatusCode::CREATED,
            Method::POST,
            &format!("{accounts}/rooms"),
            Some(&account.key),
            Some(&json!({ "name": "Town hall", "visibility": "public" })),
        )
        .await?;
    let room = str_at(&room, "/room/id")?.to_owned();
    let n_users = idle_n.max(members + joiners);
    let t_setup = Instant::now();
    let users: Vec<(String, String)> = create_many(
        ctx,
        &account,
        &format!("{accounts}/users"),
        n_users,
        &["/user/id", "/token"],
        |i| json!({ "name": format!("M{i}") }),
    )
    .await?
    .into_iter()
    .map(|f| (f[0].clone(), f[1].clone()))
    .collect();
    let booths: Vec<String> = create_many(
        ctx,
        &account,
        &format!("{accounts}/rooms"),
        idle_n,
        &["/room/id"],
        |i| json!({ "name": format!("Booth {i}"), "visibility": "public" }),
    )
    .await?
    .into_iter()
    .map(|mut f| f.remove(0))
    .collect();
    eprintln!(
        "roster-bench: realtime       set up {n_users} users and {idle_n} rooms in {:.1} s",
        t_setup.elapsed().as_secs_f64()
    );
    let ws_base = format!("ws://{}/v1/realtime?token=", ctx.roster.addr);
    // Members connect to the peer node when there is one.
    let (members_addr, members_base) = match &ctx.peer {
        Some(p) => (p.addr, format!("ws://{}/v1/realtime?token=", p.addr)),
        None => (ctx.roster.addr, ws_base.clone()),
    };
    let mut rows = Vec::new();

    // Phase 0: many rooms, then idle.
    settle(ctx, Duration::from_secs(10)).await;
    let rss_before = ctx.server_pid.and_then(rss_kib);
    let cpu_before = ctx.server_pid.and_then(|p| ctx.clock.cpu_seconds(p).ok());
    let pairs = users[..idle_n]
        .iter()
        .zip(&booths)
        .map(|((_, token), booth)| (token.clone(), booth.clone()))
        .collect();
    let (idle, latencies, errors, elapsed) = join_all(members_addr, &members_base, pairs).await;
    let held = idle.len();
    let outcome = Outcome {
        ok: held as u64,
        latencies_us: latencies,
        ..Default::default()
    };
    let mut row = with_server_cpu(
        make_row(
            "realtime-join-many-rooms",
            "roster",
            JOIN_CONCURRENCY,
            outcome,
            elapsed,
        ),
        ctx,
        cpu_before,
    );
    row.errors = errors;
    // Idle: wait until the joins' background work is done, then read RSS.
    settle(ctx, Duration::from_secs(20)).await;
    let rss_after = ctx.server_pid.and_then(rss_kib);
    row.extra.insert("idle_connections_asked", idle_n as f64);
    row.extra.insert("idle_connections_held", held as f64);
    if let (Some(b), Some(a), true) = (rss_before, rss_after, ctx.peer.is_none() && held > 0) {
        let per = (a - b) / held as f64;
        row.extra
            .insert("server_kib_per_idle_joined_connection", per);
        row.extra.insert("server_rss_mib_idle", a / 1024.0);
        eprintln!(
            "roster-bench: realtime       {held} of {idle_n} idle joined connections held: {per:.2} KiB of server RSS each ({:.1} MiB in all)",
            (a - b) / 1024.0
        );
    }
    if let Some(pid) = ctx.server_pid
        && let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd"))
    {
        row.extra.insert("server_open_fds", fds.count() as f64);
    }
    rows.push(row);
    drop(idle);
    // Their departures (after the grace period) and records go by first.
    tokio::time::sleep(Duration::from_secs(4)).await;
    settle(ctx, Duration::from_secs(30)).await;

    // Phase 1: connect and join one room, 64 at a time.
    let cpu_before = ctx.server_pid.and_then(|p| ctx.clock.cpu_seconds(p).ok());
    let rss_before = ctx.server_pid.and_then(rss_kib);
    let pairs = users[..members]
        .iter()
        .map(|(_, token)| (token.clone(), room.clone()))
        .collect();
    let (joined, latencies, errors, elapsed) = join_all(members_addr, &members_base, pairs).await;
    let (seen_tx, mut seen_rx) = tokio::sync::mpsc::unbounded_channel::<(String, Instant)>();
    let mut sockets = JoinSet::new();
    for mut ws in joined {
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
    let outcome = Outcome {
        ok: latencies.len() as u64,
        latencies_us: latencies,
        ..Default::default()
    };
    let mut join_row = with_server_cpu(
        make_row(
            "realtime-join-one-room",
            "roster",
            JOIN_CONCURRENCY,
            outcome,
            elapsed,
        ),
        ctx,
        cpu_before,
    );
    join_row.errors = errors;
    // Let the join storm's presence events drain.
    while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(500), seen_rx.recv()).await {
    }
    join_row.extra.insert("connections", members as f64);
    if let (Some(before), Some(after)) = (rss_before, ctx.server_pid.and_then(rss_kib)) {
        join_row.extra.insert(
            "server_kib_per_connection_after_one_room_join_storm",
            (after - before) / members as f64,
        );
    }
    rows.push(join_row);

    // Phase 2: join → presence latency across the room, one joiner at a time.
    let mut deliveries = Vec::with_capacity(members * joiners);
    let mut missing = 0u64;
    let t_all = Instant::now();
    for (id, token) in &users[members..members + joiners] {
        let mut ws = open(ctx.roster.addr, None, &format!("{ws_base}{token}")).await?;
        let t0 = Instant::now();
        ws.send(Message::Text(
            json!({ "type": "join", "id": 1, "room_id": room })
                .to_string()
                .into(),
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
    rows.push(presence_row);
    Ok(rows)
}
