//! `roster-bench`: load scenarios against a Roster server, each measured
//! beside a *ceiling* — a bare axum handler in this process, with no storage,
//! driven by the same client at the same concurrency — so that every Roster
//! figure also says how much of this machine's HTTP capacity it keeps.
//!
//! By default it starts `roster serve` itself (the binary next to this one) on
//! a fresh database and a free loopback port, and reads the server's CPU time
//! and peak RSS from `/proc`; `--target URL --operator-key K` measures a
//! running server instead (then those figures are n/a). Each scenario is a
//! plain async function named in [`Scenario`]; it returns rows for the table
//! printed on stdout and for the JSON file. Any answer other than the expected
//! status is an error, never dropped, and any error makes the exit status
//! non-zero.
//!
//! The client is hyper's HTTP/1.1 connection API: every worker owns one
//! keep-alive connection and sends one request at a time on it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use axum::body::Body;
use axum::http::{HeaderValue, Method, Request, StatusCode, Uri, header};
use clap::{Parser, ValueEnum};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use uuid::Uuid;

mod list;
mod passwords;
mod realtime;
mod users;
mod webhooks;

use list::list_users;
use passwords::{create_users_password, login, read_under_logins};
use realtime::realtime;
use users::{create_users, get_user};
use webhooks::webhooks;

/// Answers larger than this are an error (Roster's answers are a few KiB).
const MAX_ANSWER_BYTES: usize = 1 << 20;
/// How long `roster serve` may take to answer /readyz.
const READY_DEADLINE: Duration = Duration::from_secs(30);
/// How long a SIGTERM'd server may take to drain and exit.
const STOP_DEADLINE: Duration = Duration::from_secs(15);

#[derive(Parser)]
#[command(
    name = "roster-bench",
    about = "Load scenarios against Roster, each beside an in-process HTTP ceiling"
)]
struct Cli {
    /// The scenario to run, or `all`.
    scenario: Choice,
    /// Concurrency levels to run, comma-separated; one connection per worker.
    #[arg(long, value_delimiter = ',', default_value = "1,64")]
    concurrency: Vec<usize>,
    /// Length of each measured run, in seconds [default: 10; 0.5 with --smoke].
    #[arg(long)]
    seconds: Option<f64>,
    /// Requests per measured run; a run stops at whichever of --seconds and
    /// --count comes first [default: unbounded; 5000 with --smoke].
    #[arg(long)]
    count: Option<u64>,
    /// Users created before `get-user`, and users with a password logging
    /// in for `login` (at most this many) [default: 200; 20 with --smoke].
    #[arg(long)]
    users: Option<usize>,
    /// `list-users`: account sizes at which the list is measured, ascending;
    /// the account is grown from one to the next over HTTP
    /// [default: 10000,100000,1000000; 1000,5000 with --smoke].
    #[arg(long, value_delimiter = ',')]
    list_sizes: Option<Vec<usize>>,
    /// Database of the server started here: a fresh SQLite file by default;
    /// `postgres://…` creates a fresh database `roster_bench_<uuid>` on that
    /// server (dropped at the end).
    #[arg(long, conflicts_with = "target")]
    database_url: Option<String>,
    /// SQLite durability of the server started here.
    #[arg(long, value_enum, default_value_t = Synchronous::Normal, conflicts_with = "target")]
    sqlite_synchronous: Synchronous,
    /// Measure an already running server at this base URL instead of starting one.
    #[arg(long, requires = "operator_key")]
    target: Option<String>,
    /// The operator key of the --target server.
    #[arg(long, requires = "target")]
    operator_key: Option<String>,
    /// `realtime` only: a second node (base URL, same database and Redis)
    /// where the room's members connect, while joiners use the first: the
    /// presence latency is then measured across nodes.
    #[arg(long)]
    peer: Option<String>,
    /// The `roster` binary to start [default: `roster` beside this executable].
    #[arg(long, conflicts_with = "target")]
    roster_bin: Option<PathBuf>,
    /// Leave the server's database behind (SQLite directory, PostgreSQL
    /// database) to inspect it afterwards, e.g. for query plans.
    #[arg(long, conflicts_with = "target")]
    keep_database: bool,
    /// Where to write the results as JSON.
    #[arg(long, default_value = "target/roster-bench.json")]
    json: PathBuf,
    /// Shorten everything (about 2 s per scenario, small counts), for CI.
    #[arg(long)]
    smoke: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Choice {
    All,
    CreateUsers,
    GetUser,
    CreateUsersPassword,
    Login,
    ReadUnderLogins,
    Realtime,
    ListUsers,
    Webhooks,
}

/// The scenarios, in the order `all` runs them. Adding one: a variant here, a
/// name, and an arm in [`run_scenario`].
#[derive(Clone, Copy, PartialEq, Eq)]
enum Scenario {
    CreateUsers,
    GetUser,
    CreateUsersPassword,
    Login,
    ReadUnderLogins,
    Realtime,
    ListUsers,
    Webhooks,
}

impl Scenario {
    /// Cheap scenarios first; `realtime` before the password scenarios,
    /// whose freed argon2 memory the server keeps (glibc arenas) and would
    /// then lend to new connections, hiding their cost per connection;
    /// `list-users`, which grows one account to the largest size, last.
    const ALL: [Scenario; 8] = [
        Scenario::CreateUsers,
        Scenario::GetUser,
        Scenario::Realtime,
        Scenario::CreateUsersPassword,
        Scenario::Login,
        Scenario::ReadUnderLogins,
        Scenario::Webhooks,
        Scenario::ListUsers,
    ];

    fn name(self) -> &'static str {
        match self {
            Scenario::CreateUsers => "create-users",
            Scenario::GetUser => "get-user",
            Scenario::CreateUsersPassword => "create-users-password",
            Scenario::Login => "login",
            Scenario::ReadUnderLogins => "read-under-logins",
            Scenario::Realtime => "realtime",
            Scenario::ListUsers => "list-users",
            Scenario::Webhooks => "webhooks",
        }
    }

    fn selected(choice: Choice) -> Vec<Scenario> {
        match choice {
            Choice::All => Self::ALL.to_vec(),
            Choice::CreateUsers => vec![Scenario::CreateUsers],
            Choice::GetUser => vec![Scenario::GetUser],
            Choice::CreateUsersPassword => vec![Scenario::CreateUsersPassword],
            Choice::Login => vec![Scenario::Login],
            Choice::ReadUnderLogins => vec![Scenario::ReadUnderLogins],
            Choice::Realtime => vec![Scenario::Realtime],
            Choice::ListUsers => vec![Scenario::ListUsers],
            Choice::Webhooks => vec![Scenario::Webhooks],
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
enum Synchronous {
    Normal,
    Full,
}

impl Synchronous {
    fn as_str(self) -> &'static str {
        match self {
            Synchronous::Normal => "normal",
            Synchronous::Full => "full",
        }
    }
}

/// How long and how much each measured run goes on.
#[derive(Clone, Serialize)]
struct Plan {
    seconds: f64,
    count: Option<u64>,
    users: usize,
    list_sizes: Vec<usize>,
    smoke: bool,
}

impl Plan {
    fn from_cli(cli: &Cli) -> anyhow::Result<Self> {
        let seconds = cli.seconds.unwrap_or(if cli.smoke { 0.5 } else { 10.0 });
        if !(seconds > 0.0 && seconds <= 3600.0) {
            bail!("--seconds must be in (0, 3600]");
        }
        let count = cli.count.or(cli.smoke.then_some(5000));
        if count == Some(0) {
            bail!("--count must be at least 1");
        }
        let users = cli.users.unwrap_or(if cli.smoke { 20 } else { 200 });
        if users == 0 {
            bail!("--users must be at least 1");
        }
        let list_sizes = cli.list_sizes.clone().unwrap_or_else(|| {
            if cli.smoke {
                vec![1000, 5000]
            } else {
                vec![10_000, 100_000, 1_000_000]
            }
        });
        if list_sizes.is_empty()
            || list_sizes.windows(2).any(|w| w[0] >= w[1])
            || list_sizes[0] == 0
            || list_sizes[list_sizes.len() - 1] > 10_000_000
        {
            bail!("--list-sizes takes ascending sizes between 1 and 10000000");
        }
        Ok(Self {
            seconds,
            count,
            users,
            list_sizes,
            smoke: cli.smoke,
        })
    }

    fn duration(&self) -> Duration {
        Duration::from_secs_f64(self.seconds)
    }
}

// ---------------------------------------------------------------------------
// HTTP client: one keep-alive HTTP/1.1 connection per worker.

/// Where requests go: a socket address and the `Host` header to send.
#[derive(Clone)]
struct Endpoint {
    addr: SocketAddr,
    host: HeaderValue,
}

impl Endpoint {
    fn local(addr: SocketAddr) -> anyhow::Result<Self> {
        Ok(Self {
            addr,
            host: HeaderValue::from_str(&addr.to_string())?,
        })
    }

    /// Resolves a base URL such as `http://127.0.0.1:8080`.
    async fn from_url(url: &str) -> anyhow::Result<Self> {
        let u = url::Url::parse(url).with_context(|| format!("--target {url}"))?;
        if u.scheme() != "http" {
            bail!("--target must be an http:// URL (the bench speaks plain HTTP/1.1)");
        }
        if u.path() != "/" && !u.path().is_empty() {
            bail!("--target must be a base URL without a path");
        }
        let host = u.host_str().context("--target has no host")?;
        let port = u.port_or_known_default().unwrap_or(80);
        let addr = tokio::net::lookup_host((host, port))
            .await?
            .next()
            .with_context(|| format!("{host} does not resolve"))?;
        let authority = match u.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.to_owned(),
        };
        Ok(Self {
            addr,
            host: HeaderValue::from_str(&authority)?,
        })
    }

    fn request(
        &self,
        method: Method,
        path: &str,
        bearer: Option<&HeaderValue>,
        body: Option<Vec<u8>>,
    ) -> anyhow::Result<Request<Body>> {
        let len = body.as_ref().map(Vec::len);
        let mut req = Request::new(body.map_or_else(Body::empty, Body::from));
        *req.method_mut() = method;
        *req.uri_mut() = Uri::try_from(path)?;
        let h = req.headers_mut();
        h.insert(header::HOST, self.host.clone());
        if let Some(b) = bearer {
            h.insert(header::AUTHORIZATION, b.clone());
        }
        if let Some(len) = len {
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        }
        Ok(req)
    }
}

fn bearer(secret: &str) -> anyhow::Result<HeaderValue> {
    let mut v = HeaderValue::from_str(&format!("Bearer {secret}"))?;
    v.set_sensitive(true);
    Ok(v)
}

async fn connect(ep: &Endpoint) -> anyhow::Result<SendRequest<Body>> {
    let stream = TcpStream::connect(ep.addr).await?;
    stream.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        // The connection ends when its sender is dropped or the peer closes;
        // a failure shows up on the next request instead.
        let _ = conn.await;
    });
    Ok(sender)
}

/// Sends one request and reads the whole answer.
async fn exchange(
    sender: &mut SendRequest<Body>,
    req: Request<Body>,
) -> anyhow::Result<(StatusCode, bytes::Bytes)> {
    sender.ready().await?;
    let resp = sender.send_request(req).await?;
    let status = resp.status();
    let body = axum::body::to_bytes(Body::new(resp.into_body()), MAX_ANSWER_BYTES).await?;
    Ok((status, body))
}

/// A client for setup calls (accounts, users to read later), with JSON answers.
struct Api {
    ep: Endpoint,
    conn: Option<SendRequest<Body>>,
}

impl Api {
    fn new(ep: Endpoint) -> Self {
        Self { ep, conn: None }
    }

    async fn call(
        &mut self,
        method: Method,
        path: &str,
        bearer: Option<&HeaderValue>,
        body: Option<&Value>,
    ) -> anyhow::Result<(StatusCode, Value)> {
        let body = body.map(serde_json::to_vec).transpose()?;
        let req = self.ep.request(method.clone(), path, bearer, body)?;
        let sender = match &mut self.conn {
            Some(s) if !s.is_closed() => s,
            slot => slot.insert(connect(&self.ep).await?),
        };
        let answer = exchange(sender, req).await;
        let (status, bytes) = answer.inspect_err(|_| self.conn = None)?;
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).with_context(|| {
                format!(
                    "{method} {path}: answer {status} is not JSON: {}",
                    snippet(&bytes)
                )
            })?
        };
        Ok((status, value))
    }

    /// Calls and insists on `expect`, returning the envelope's `data`.
    async fn expect(
        &mut self,
        expect: StatusCode,
        method: Method,
        path: &str,
        bearer: Option<&HeaderValue>,
        body: Option<&Value>,
    ) -> anyhow::Result<Value> {
        let (status, value) = self.call(method.clone(), path, bearer, body).await?;
        if status != expect {
            bail!("{method} {path}: expected {expect}, got {status}: {value}");
        }
        Ok(value.get("data").cloned().unwrap_or(Value::Null))
    }
}

fn snippet(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(bytes);
    s.chars().take(200).collect()
}

fn str_at<'v>(v: &'v Value, pointer: &str) -> anyhow::Result<&'v str> {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .with_context(|| format!("answer has no string at {pointer}: {v}"))
}

// ---------------------------------------------------------------------------
// Load engine.

/// Builds request `n` of worker `w`.
type MakeRequest = Arc<dyn Fn(usize, u64) -> anyhow::Result<Request<Body>> + Send + Sync>;

struct Load {
    concurrency: usize,
    duration: Duration,
    count: Option<u64>,
    expect: StatusCode,
    make: MakeRequest,
    /// Each worker starts a request at most this often (a probe that
    /// should not itself load the server); None: back to back.
    pace: Option<Duration>,
}

#[derive(Default, Serialize, Clone)]
struct ErrorTally {
    count: u64,
    /// The first answer (or failure) of this kind, shortened.
    sample: String,
}

#[derive(Default)]
struct Outcome {
    ok: u64,
    errors: BTreeMap<String, ErrorTally>,
    /// Latency of each successful request, in microseconds.
    latencies_us: Vec<u32>,
    reconnects: u64,
}

impl Outcome {
    fn error(&mut self, kind: String, sample: impl FnOnce() -> String) {
        let tally = self.errors.entry(kind).or_default();
        if tally.count == 0 {
            tally.sample = sample();
        }
        tally.count += 1;
    }

    fn merge(&mut self, other: Outcome) {
        self.ok += other.ok;
        self.reconnects += other.reconnects;
        self.latencies_us.extend(other.latencies_us);
        for (kind, t) in other.errors {
            let mine = self.errors.entry(kind).or_default();
            if mine.count == 0 {
                mine.sample = t.sample;
            }
            mine.count += t.count;
        }
    }

    fn error_count(&self) -> u64 {
        self.errors.values().map(|t| t.count).sum()
    }
}

/// Runs `load` against `ep` and returns what happened and how long it took.
async fn drive(ep: &Endpoint, load: &Load) -> (Outcome, Duration) {
    let tickets = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + load.duration;
    let mut set = JoinSet::new();
    for w in 0..load.concurrency {
        let ep = ep.clone();
        let tickets = tickets.clone();
        let make = load.make.clone();
        let (expect, count, pace) = (load.expect, load.count, load.pace);
        set.spawn(async move { worker(ep, w, make, expect, tickets, count, pace, deadline).await });
    }
    let mut total = Outcome::default();
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok(o) => total.merge(o),
            Err(e) => total.error("worker panicked".into(), || e.to_string()),
        }
    }
    (total, started.elapsed())
}

#[allow(clippy::too_many_arguments)]
async fn worker(
    ep: Endpoint,
    w: usize,
    make: MakeRequest,
    expect: StatusCode,
    tickets: Arc<AtomicU64>,
    count: Option<u64>,
    pace: Option<Duration>,
    deadline: Instant,
) -> Outcome {
    let mut out = Outcome::default();
    let mut conn: Option<SendRequest<Body>> = None;
    let mut n = 0u64;
    let mut next_start = Instant::now();
    while Instant::now() < deadline {
        if let Some(p) = pace {
            tokio::time::sleep_until(next_start.into()).await;
            next_start += p;
            if Instant::now() >= deadline {
                break;
            }
        }
        if let Some(count) = count
            && tickets.fetch_add(1, Ordering::Relaxed) >= count
        {
            break;
        }
        let req = match make(w, n) {
            Ok(r) => r,
            Err(e) => {
                out.error("request could not be built".into(), || format!("{e:#}"));
                break;
            }
        };
        n += 1;
        let sender = match &mut conn {
            Some(s) if !s.is_closed() => s,
            slot => {
                if slot.is_some() {
                    out.reconnects += 1;
                }
                match connect(&ep).await {
                    Ok(s) => slot.insert(s),
                    Err(e) => {
                        out.error("connect failed".into(), || format!("{e:#}"));
                        *slot = None;
                        // Do not spin on a refused port until the deadline.
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                }
            }
        };
        let t = Instant::now();
        match exchange(sender, req).await {
            Ok((status, _)) if status == expect => {
                let us = t.elapsed().as_micros();
                out.latencies_us.push(u32::try_from(us).unwrap_or(u32::MAX));
                out.ok += 1;
            }
            Ok((status, body)) => {
                out.error(format!("HTTP {}", status.as_u16()), || snippet(&body));
            }
            Err(e) => {
                out.error("transport".into(), || format!("{e:#}"));
                conn = None;
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------
// /proc readings (Linux), for the server child and for this process.

struct ProcClock {
    ticks_per_second: f64,
}

impl ProcClock {
    fn new() -> Self {
        let ticks = Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse::<f64>().ok())
            .filter(|t| *t > 0.0)
            .unwrap_or(100.0);
        Self {
            ticks_per_second: ticks,
        }
    }

    /// utime + stime of a process, in seconds.
    fn cpu_seconds(&self, pid: u32) -> anyhow::Result<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
        // Fields after the command name, which is in parentheses and may hold spaces.
        let rest = stat
            .rsplit_once(')')
            .map(|(_, r)| r)
            .context("odd /proc/PID/stat")?;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // rest starts at field 3 (state); utime and stime are fields 14 and 15.
        let utime: f64 = fields.get(11).context("no utime")?.parse()?;
        let stime: f64 = fields.get(12).context("no stime")?.parse()?;
        Ok((utime + stime) / self.ticks_per_second)
    }

    /// Now, and the idle time of the whole machine so far (all cores).
    fn machine_mark(&self) -> Option<(Instant, f64)> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let mut fields = stat.lines().next()?.split_whitespace().skip(1);
        // user nice system idle iowait …: idle and iowait are measured
        // precisely on a tickless kernel, busy time only by tick sampling,
        // so busy = wall time × cores − idle.
        let idle: f64 = fields.nth(3)?.parse().ok()?;
        let iowait: f64 = fields.next()?.parse().ok()?;
        Some((Instant::now(), (idle + iowait) / self.ticks_per_second))
    }

    /// Busy CPU seconds of the whole machine since `mark`.
    fn machine_busy_since(&self, mark: Option<(Instant, f64)>) -> Option<f64> {
        let (t0, idle0) = mark?;
        let (t1, idle1) = self.machine_mark()?;
        let wall = t1.duration_since(t0).as_secs_f64() * cores() as f64;
        Some((wall - (idle1 - idle0)).max(0.0))
    }
}

/// The peak resident set size (VmHWM) of a process, in MiB.
fn peak_rss_mib(pid: u32) -> anyhow::Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .context("no VmHWM")?;
    let kib: f64 = line
        .split_whitespace()
        .nth(1)
        .context("odd VmHWM")?
        .parse()?;
    Ok(kib / 1024.0)
}

/// Resets VmHWM to the current RSS so that the next reading is the peak of
/// the next run alone. Returns false if the kernel would not.
fn reset_peak_rss(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

// ---------------------------------------------------------------------------
// Results.

#[derive(Serialize, Clone)]
struct Row {
    scenario: &'static str,
    /// `roster` or `ceiling`.
    target: &'static str,
    concurrency: usize,
    ok: u64,
    errors: u64,
    error_kinds: BTreeMap<String, ErrorTally>,
    seconds: f64,
    requests_per_second: f64,
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
    max_ms: Option<f64>,
    /// Roster's requests/s over the ceiling's, same scenario and concurrency.
    ratio_to_ceiling: Option<f64>,
    /// CPU seconds of the server process over the run (n/a for the
    /// in-process ceiling and for --target).
    server_cpu_seconds: Option<f64>,
    /// Peak RSS of the server process: of this run alone if
    /// `server_peak_rss_per_run`, else since it started.
    server_peak_rss_mib: Option<f64>,
    server_peak_rss_per_run: bool,
    /// CPU seconds of this bench process (for the ceiling: client + handler).
    bench_cpu_seconds: Option<f64>,
    /// Busy CPU seconds of the whole machine over the run.
    machine_cpu_seconds: Option<f64>,
    /// Busy CPU seconds of everything else (machine − server − bench): how
    /// much other work on the machine disturbed the run.
    other_cpu_seconds: Option<f64>,
    reconnects: u64,
    /// Figures particular to a scenario (realtime: server KiB per connection).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    extra: BTreeMap<&'static str, f64>,
}

impl Row {
    fn fmt_opt(v: Option<f64>, decimals: usize) -> String {
        v.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.decimals$}"))
    }
}

/// Integers as integers, fractions with three decimals.
fn fmt_extra(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        format!("{v:.3}")
    }
}

fn percentile(sorted: &[u32], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(f64::from(sorted[rank - 1]) / 1000.0)
}

fn table(rows: &[Row], cores: usize) -> String {
    let mut s = String::new();
    s.push_str(
        "| scenario | target | c | ok | errors | req/s | × ceiling | p50 ms | p99 ms | max ms | server CPU s | server peak RSS MiB | bench CPU s | other CPU s | machine CPU % | notes |\n",
    );
    s.push_str("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|\n");
    for r in rows {
        let machine_pct = r
            .machine_cpu_seconds
            .map(|m| 100.0 * m / (r.seconds * cores as f64));
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            r.scenario,
            r.target,
            r.concurrency,
            r.ok,
            r.errors,
            r.requests_per_second,
            r.ratio_to_ceiling
                .map_or_else(|| "—".to_owned(), |x| format!("{x:.3}")),
            Row::fmt_opt(r.p50_ms, 2),
            Row::fmt_opt(r.p99_ms, 2),
            Row::fmt_opt(r.max_ms, 2),
            Row::fmt_opt(r.server_cpu_seconds, 2),
            Row::fmt_opt(r.server_peak_rss_mib, 1),
            Row::fmt_opt(r.bench_cpu_seconds, 2),
            Row::fmt_opt(r.other_cpu_seconds, 2),
            Row::fmt_opt(machine_pct, 0),
            r.extra
                .iter()
                .map(|(k, v)| format!("{k} {}", fmt_extra(*v)))
                .collect::<Vec<_>>()
                .join(", "),
        ));
    }
    s
}

#[derive(Serialize)]
struct Machine {
    cores: usize,
    cpu_model: String,
    kernel: String,
    memory_total_gib: Option<f64>,
}

impl Machine {
    fn read() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map_or_else(|| "unknown".to_owned(), |(_, m)| m.trim().to_owned());
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map_or_else(|_| "unknown".to_owned(), |k| k.trim().to_owned());
        let memory_total_gib = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                m.lines()
                    .find(|l| l.starts_with("MemTotal:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|k| k.parse::<f64>().ok())
            })
            .map(|kib| kib / 1024.0 / 1024.0);
        Self {
            cores: cores(),
            cpu_model,
            kernel,
            memory_total_gib,
        }
    }
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[derive(Serialize)]
struct Report<'a> {
    tool: &'static str,
    date: String,
    machine: Machine,
    target: &'a str,
    database: &'a str,
    sqlite_synchronous: Option<&'static str>,
    concurrency: &'a [usize],
    plan: Plan,
    rows: &'a [Row],
    failures: &'a [String],
    ok: bool,
}

// ---------------------------------------------------------------------------
// The ceiling: a bare axum server on its own runtime, no storage.

fn start_ceiling() -> anyhow::Result<Endpoint> {
    use axum::Json;
    use axum::extract::{Path as UrlPath, Query};
    use axum::routing::{get, post};

    async fn create(
        UrlPath(_account): UrlPath<String>,
        Json(body): Json<Value>,
    ) -> (StatusCode, Json<Value>) {
        let name = body.get("name").and_then(Value::as_str).unwrap_or_default();
        (
            StatusCode::CREATED,
            Json(json!({ "data": { "user": { "id": Uuid::now_v7(), "name": name } } })),
        )
    }
    async fn read(UrlPath((_account, user)): UrlPath<(String, String)>) -> Json<Value> {
        Json(json!({ "data": { "user": { "id": user } } }))
    }
    async fn login(UrlPath(_account): UrlPath<String>, Json(body): Json<Value>) -> Json<Value> {
        let name = body
            .get("customId")
            .and_then(Value::as_str)
            .unwrap_or_default();
        Json(json!({ "data": { "access_token": name, "user": { "id": Uuid::now_v7() } } }))
    }
    /// A page of `limit` made-up users, as large as Roster's answer.
    async fn list(
        UrlPath(_account): UrlPath<String>,
        Query(q): Query<BTreeMap<String, String>>,
    ) -> Json<Value> {
        let limit = q.get("limit").and_then(|l| l.parse().ok()).unwrap_or(50);
        let users: Vec<Value> = (0..limit.min(100))
            .map(|i: usize| {
                json!({ "id": Uuid::now_v7(), "name": format!("Member {i:07}"),
                        "customId": format!("m-{i:07}"), "status": "offline",
                        "roles": ["user"], "tags": ["t1"], "metadata": {} })
            })
            .collect();
        Json(json!({ "data": { "users": users, "next_cursor": null } }))
    }

    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cores())
        .thread_name("ceiling")
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("ceiling".into())
        .spawn(move || {
            runtime.block_on(async move {
                let router = axum::Router::new()
                    .route("/v1/accounts/{account}/users", post(create).get(list))
                    .route("/v1/accounts/{account}/auth/login", post(login))
                    .route("/v1/accounts/{account}/users/{user}", get(read));
                match tokio::net::TcpListener::from_std(listener) {
                    Ok(l) => {
                        if let Err(e) = axum::serve(l, router).await {
                            eprintln!("roster-bench: ceiling server stopped: {e}");
                        }
                    }
                    Err(e) => eprintln!("roster-bench: ceiling server cannot listen: {e}"),
                }
            });
        })?;
    Endpoint::local(addr)
}

// ---------------------------------------------------------------------------
// The Roster server under test.

/// A `roster serve` child on a fresh database. Dropping it kills the child.
struct ServerProcess {
    child: Option<Child>,
    dir: PathBuf,
    log: PathBuf,
    /// (server URL, database name) of a PostgreSQL database made for this run.
    pg: Option<(String, String)>,
    /// Leave the database (and the SQLite directory) behind, for inspection.
    keep: bool,
}

impl ServerProcess {
    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    async fn start(
        bin: &Path,
        database_url: Option<&str>,
        sync: Synchronous,
        operator_key: &str,
    ) -> anyhow::Result<(Self, Endpoint, String)> {
        if !bin.exists() {
            bail!(
                "{} not found: build it with `cargo build --release --bins`",
                bin.display()
            );
        }
        let dir = std::env::temp_dir().join(format!("roster-bench-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir)?;
        let log = dir.join("roster.log");
        let mut me = Self {
            child: None,
            dir: dir.clone(),
            log: log.clone(),
            pg: None,
            keep: false,
        };
        let (url, shown) = match database_url {
            None => {
                let url = format!("sqlite://{}", dir.join("roster.db").display());
                (url.clone(), url)
            }
            Some(u) if u.starts_with("postgres://") || u.starts_with("postgresql://") => {
                let (url, name) = create_pg_database(u).await?;
                me.pg = Some((u.to_owned(), name));
                let shown = roster::config::redact_url(&url);
                (url, shown)
            }
            Some(u) => (u.to_owned(), roster::config::redact_url(u)),
        };
        let port = free_port()?;
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let mut cmd = Command::new(bin);
        // A hermetic child: nothing of the caller's Roster configuration leaks in.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("ROSTER_") {
                cmd.env_remove(k);
            }
        }
        cmd.arg("serve")
            .current_dir(&dir)
            .env("ROSTER_LISTEN", addr.to_string())
            .env("ROSTER_DATABASE_URL", &url)
            .env("ROSTER_OPERATOR_KEY", operator_key)
            .env("ROSTER_SQLITE_SYNCHRONOUS", sync.as_str())
            .env("ROSTER_LOG", "warn")
            // The bench is the clients' proxy: logins carry a distinct
            // client address each in X-Forwarded-For (see passwords.rs),
            // so the per-address login limits apply as to real clients.
            .env("ROSTER_TRUSTED_PROXIES", r#"["127.0.0.1"]"#)
            // The webhooks scenario's receiver listens on loopback.
            .env("ROSTER_WEBHOOK_ALLOW_PRIVATE_TARGETS", "true")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log)?)
            .stderr(std::fs::File::create(dir.join("roster.stderr.log"))?);
        me.child = Some(
            cmd.spawn()
                .with_context(|| format!("starting {}", bin.display()))?,
        );
        let ep = Endpoint::local(addr)?;
        me.wait_ready(&ep).await?;
        Ok((me, ep, shown))
    }

    async fn wait_ready(&mut self, ep: &Endpoint) -> anyhow::Result<()> {
        let deadline = Instant::now() + READY_DEADLINE;
        loop {
            if let Some(child) = &mut self.child
                && let Some(status) = child.try_wait()?
            {
                bail!(
                    "roster exited before it was ready ({status}):\n{}",
                    self.log_tail()
                );
            }
            let mut api = Api::new(ep.clone());
            let last = match api.call(Method::GET, "/readyz", None, None).await {
                Ok((StatusCode::OK, _)) => return Ok(()),
                Ok((status, v)) => format!("{status}: {v}"),
                Err(e) => format!("{e:#}"),
            };
            if Instant::now() >= deadline {
                bail!(
                    "roster was not ready within {READY_DEADLINE:?} (last: {last}):\n{}",
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn log_tail(&self) -> String {
        let mut text = String::new();
        for f in [&self.log, &self.dir.join("roster.stderr.log")] {
            if let Ok(t) = std::fs::read_to_string(f) {
                let lines: Vec<&str> = t.lines().collect();
                let from = lines.len().saturating_sub(20);
                text.push_str(&lines[from..].join("\n"));
            }
        }
        text
    }

    /// SIGTERM, then wait for the drain; SIGKILL past the deadline (an error).
    async fn stop(mut self) -> anyhow::Result<()> {
        let mut result = Ok(());
        if let Some(mut child) = self.child.take() {
            let pid = child.id().to_string();
            let sent = Command::new("kill").args(["-TERM", &pid]).status();
            if !matches!(sent, Ok(s) if s.success()) {
                result = Err(anyhow!("could not send SIGTERM to roster ({pid})"));
            }
            let deadline = Instant::now() + STOP_DEADLINE;
            loop {
                if let Some(status) = child.try_wait()? {
                    if !status.success() && result.is_ok() {
                        result = Err(anyhow!("roster exited with {status}:\n{}", self.log_tail()));
                    }
                    break;
                }
                if Instant::now() >= deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    result = Err(anyhow!(
                        "roster did not exit within {STOP_DEADLINE:?} of SIGTERM; killed"
                    ));
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        if let Some((server, name)) = self.pg.take() {
            if self.keep {
                eprintln!("roster-bench: kept database {name}");
            } else if let Err(e) = drop_pg_database(&server, &name).await {
                eprintln!("roster-bench: could not drop database {name}: {e:#}");
            }
        }
        result
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if self.keep {
            eprintln!("roster-bench: kept {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

async fn create_pg_database(server_url: &str) -> anyhow::Result<(String, String)> {
    use sqlx::Connection;
    let name = format!("roster_bench_{}", Uuid::new_v4().simple());
    let mut conn = sqlx::PgConnection::connect(server_url)
        .await
        .with_context(|| format!("connecting to {}", roster::config::redact_url(server_url)))?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .with_context(|| format!("creating database {name}"))?;
    conn.close().await?;
    let mut url = url::Url::parse(server_url)?;
    url.set_path(&format!("/{name}"));
    Ok((url.to_string(), name))
}

async fn drop_pg_database(server_url: &str, name: &str) -> anyhow::Result<()> {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(server_url).await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name}"
    )))
    .execute(&mut conn)
    .await?;
    conn.close().await?;
    Ok(())
}

// ---------------------------------------------------------------------------
// Scenarios.

/// What every scenario may use.
struct Ctx {
    roster: Endpoint,
    ceiling: Endpoint,
    operator_key: HeaderValue,
    server_pid: Option<u32>,
    clock: ProcClock,
    plan: Plan,
    concurrency: Vec<usize>,
    /// A second node for the cross-node realtime measurement.
    peer: Option<Endpoint>,
    /// The next made-up client address of a login (see passwords.rs).
    clients: Arc<std::sync::atomic::AtomicU32>,
}

/// A fresh account for one run, so runs never collide on unique fields.
struct Account {
    id: String,
    key: HeaderValue,
}

impl Ctx {
    async fn create_account(&self, name: &str) -> anyhow::Result<Account> {
        let mut api = Api::new(self.roster.clone());
        let data = api
            .expect(
                StatusCode::CREATED,
                Method::POST,
                "/v1/accounts",
                Some(&self.operator_key),
                Some(&json!({ "name": name })),
            )
            .await
            .context("creating an account with the operator key")?;
        Ok(Account {
            id: str_at(&data, "/account/id")?.to_owned(),
            key: bearer(str_at(&data, "/api_key")?)?,
        })
    }

    fn load(&self, concurrency: usize, expect: StatusCode, make: MakeRequest) -> Load {
        Load {
            concurrency,
            duration: self.plan.duration(),
            count: self.plan.count,
            expect,
            make,
            pace: None,
        }
    }

    /// One measured run against the in-process ceiling.
    async fn measure_ceiling(&self, scenario: &'static str, load: &Load) -> Row {
        let me = std::process::id();
        let bench0 = self.clock.cpu_seconds(me).ok();
        let machine0 = self.clock.machine_mark();
        let (outcome, elapsed) = drive(&self.ceiling, load).await;
        let bench = delta(bench0, self.clock.cpu_seconds(me).ok());
        let machine = self.clock.machine_busy_since(machine0);
        let row = make_row(scenario, "ceiling", load.concurrency, outcome, elapsed);
        Row {
            bench_cpu_seconds: bench,
            machine_cpu_seconds: machine,
            other_cpu_seconds: remainder(machine, &[bench]),
            ..row
        }
    }

    /// One measured run against Roster, compared with `ceiling`.
    async fn measure_roster(&self, scenario: &'static str, load: &Load, ceiling: &Row) -> Row {
        self.measure_roster_against(scenario, load, Some(ceiling))
            .await
    }

    /// One measured run against Roster, with or without a ceiling to compare.
    async fn measure_roster_against(
        &self,
        scenario: &'static str,
        load: &Load,
        ceiling: Option<&Row>,
    ) -> Row {
        self.measure_roster_as(scenario, "roster", load, ceiling)
            .await
    }

    /// [`Ctx::measure_roster_against`], its row's target named `target`
    /// (e.g. `roster+webhook`: Roster with something switched on).
    async fn measure_roster_as(
        &self,
        scenario: &'static str,
        target: &'static str,
        load: &Load,
        ceiling: Option<&Row>,
    ) -> Row {
        let me = std::process::id();
        let per_run = self.server_pid.is_some_and(reset_peak_rss);
        let server0 = self.server_pid.and_then(|p| self.clock.cpu_seconds(p).ok());
        let bench0 = self.clock.cpu_seconds(me).ok();
        let machine0 = self.clock.machine_mark();
        let (outcome, elapsed) = drive(&self.roster, load).await;
        let server = delta(
            server0,
            self.server_pid.and_then(|p| self.clock.cpu_seconds(p).ok()),
        );
        let bench = delta(bench0, self.clock.cpu_seconds(me).ok());
        let machine = self.clock.machine_busy_since(machine0);
        let rss = self.server_pid.and_then(|p| peak_rss_mib(p).ok());
        let row = make_row(scenario, target, load.concurrency, outcome, elapsed);
        let ratio = ceiling
            .filter(|c| c.requests_per_second > 0.0)
            .map(|c| row.requests_per_second / c.requests_per_second);
        Row {
            ratio_to_ceiling: ratio,
            server_cpu_seconds: server,
            server_peak_rss_mib: rss,
            server_peak_rss_per_run: per_run,
            bench_cpu_seconds: bench,
            machine_cpu_seconds: machine,
            other_cpu_seconds: remainder(machine, &[bench, server]),
            ..row
        }
    }
}

fn delta(before: Option<f64>, after: Option<f64>) -> Option<f64> {
    Some(after? - before?)
}

/// `total` minus every part, if all are known.
fn remainder(total: Option<f64>, parts: &[Option<f64>]) -> Option<f64> {
    parts.iter().try_fold(total?, |left, p| Some(left - (*p)?))
}

fn make_row(
    scenario: &'static str,
    target: &'static str,
    concurrency: usize,
    mut outcome: Outcome,
    elapsed: Duration,
) -> Row {
    outcome.latencies_us.sort_unstable();
    let seconds = elapsed.as_secs_f64();
    let l = &outcome.latencies_us;
    let row = Row {
        scenario,
        target,
        concurrency,
        ok: outcome.ok,
        errors: outcome.error_count(),
        error_kinds: outcome.errors.clone(),
        seconds,
        requests_per_second: outcome.ok as f64 / seconds,
        p50_ms: percentile(l, 0.50),
        p99_ms: percentile(l, 0.99),
        max_ms: l.last().map(|m| f64::from(*m) / 1000.0),
        ratio_to_ceiling: None,
        server_cpu_seconds: None,
        server_peak_rss_mib: None,
        server_peak_rss_per_run: false,
        bench_cpu_seconds: None,
        machine_cpu_seconds: None,
        other_cpu_seconds: None,
        reconnects: outcome.reconnects,
        extra: BTreeMap::new(),
    };
    eprintln!(
        "roster-bench: {scenario:<13} {target:<14} c={concurrency:<3} {:>8} ok {:>4} errors {:>9.0} req/s  p50 {} ms  p99 {} ms",
        row.ok,
        row.errors,
        row.requests_per_second,
        Row::fmt_opt(row.p50_ms, 2),
        Row::fmt_opt(row.p99_ms, 2),
    );
    for (kind, t) in &row.error_kinds {
        eprintln!("roster-bench:   {} × {kind}, e.g. {}", t.count, t.sample);
    }
    row
}

async fn run_scenario(ctx: &Ctx, scenario: Scenario) -> anyhow::Result<Vec<Row>> {
    match scenario {
        Scenario::CreateUsers => create_users(ctx).await,
        Scenario::GetUser => get_user(ctx).await,
        Scenario::CreateUsersPassword => create_users_password(ctx).await,
        Scenario::Login => login(ctx).await,
        Scenario::ReadUnderLogins => read_under_logins(ctx).await,
        Scenario::Realtime => realtime(ctx).await,
        Scenario::ListUsers => list_users(ctx).await,
        Scenario::Webhooks => webhooks(ctx).await,
    }
}

// ---------------------------------------------------------------------------

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("roster-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the chosen scenarios; Ok(false) when one failed or saw errors.
async fn run() -> anyhow::Result<bool> {
    let cli = Cli::parse();
    let plan = Plan::from_cli(&cli)?;
    if cli.concurrency.is_empty() || cli.concurrency.iter().any(|c| *c == 0 || *c > 4096) {
        bail!("--concurrency takes levels between 1 and 4096");
    }
    let ceiling = start_ceiling()?;

    let (server, roster_ep, operator_key, target_label, database, sync) = match &cli.target {
        Some(url) => {
            let key = cli
                .operator_key
                .clone()
                .context("--target needs --operator-key")?;
            let ep = Endpoint::from_url(url).await?;
            (
                None,
                ep,
                key,
                url.clone(),
                "unknown (--target)".to_owned(),
                None,
            )
        }
        None => {
            let bin = match &cli.roster_bin {
                Some(b) => b.clone(),
                None => std::env::current_exe()?.with_file_name("roster"),
            };
            let key = format!("bench-{}", Uuid::new_v4().simple());
            let (mut server, ep, shown) = ServerProcess::start(
                &bin,
                cli.database_url.as_deref(),
                cli.sqlite_synchronous,
                &key,
            )
            .await?;
            server.keep = cli.keep_database;
            let sync = shown
                .starts_with("sqlite:")
                .then(|| cli.sqlite_synchronous.as_str());
            let label = format!(
                "{} at http://{} (pid {})",
                bin.display(),
                ep.addr,
                server.pid().unwrap_or(0)
            );
            (Some(server), ep, key, label, shown, sync)
        }
    };
    eprintln!(
        "roster-bench: target {target_label}, database {database}{}, ceiling at {}",
        sync.map(|s| format!(" (synchronous={s})"))
            .unwrap_or_default(),
        ceiling.addr
    );

    let ctx = Ctx {
        roster: roster_ep,
        ceiling,
        operator_key: bearer(&operator_key)?,
        server_pid: server.as_ref().and_then(ServerProcess::pid),
        clock: ProcClock::new(),
        plan: plan.clone(),
        concurrency: cli.concurrency.clone(),
        peer: match &cli.peer {
            Some(url) => Some(Endpoint::from_url(url).await?),
            None => None,
        },
        clients: Arc::default(),
    };
    let mut rows = Vec::new();
    let mut failures = Vec::new();
    for scenario in Scenario::selected(cli.scenario) {
        match run_scenario(&ctx, scenario).await {
            Ok(r) => rows.extend(r),
            Err(e) => failures.push(format!("{} could not run: {e:#}", scenario.name())),
        }
    }
    if let Some(server) = server
        && let Err(e) = server.stop().await
    {
        failures.push(format!("stopping roster: {e:#}"));
    }
    for r in rows.iter().filter(|r| r.errors > 0) {
        failures.push(format!(
            "{} {} c={}: {} errors",
            r.scenario, r.target, r.concurrency, r.errors
        ));
    }

    let cores = cores();
    print!("{}", table(&rows, cores));
    let date = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let report = Report {
        tool: "roster-bench",
        date,
        machine: Machine::read(),
        target: &target_label,
        database: &database,
        sqlite_synchronous: sync,
        concurrency: &cli.concurrency,
        plan,
        rows: &rows,
        failures: &failures,
        ok: failures.is_empty(),
    };
    if let Some(dir) = cli.json.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&cli.json, serde_json::to_vec_pretty(&report)?)
        .with_context(|| format!("writing {}", cli.json.display()))?;
    eprintln!("roster-bench: results written to {}", cli.json.display());
    for f in &failures {
        eprintln!("roster-bench: FAILED: {f}");
    }
    Ok(failures.is_empty())
}
