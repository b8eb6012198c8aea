//! The password scenarios: `create-users-password`, `login` and
//! `read-under-logins`, each beside the physical limit of that path — the
//! raw argon2 rate of this machine, measured in this process with the
//! server's own hasher (`roster::secret::PasswordHasher`: same parameters,
//! same bounded blocking pool) and as many threads as the server's pool.
//!
//! Login is throttled per client address (`auth_requests_per_ip_per_minute`,
//! 300 by default), and every bench connection comes from 127.0.0.1. The
//! server started here trusts 127.0.0.1 as a proxy, and every login names a
//! different client in `X-Forwarded-For`, as behind a real load balancer: the
//! limits stay at their defaults and are checked on every login, but no
//! single client reaches them. A `--target` server needs `trusted_proxies`
//! to include the bench's address for `login` and `read-under-logins`.

use std::net::Ipv4Addr;

use roster::secret::PasswordHasher;

use super::*;

/// The password of every bench user (8–128 characters).
const PASSWORD: &str = "bench-password-correct-horse";
/// Logins kept in flight by `read-under-logins` (issue 7).
const LOGINS_IN_FLIGHT: usize = 50;
/// How often the cheap-read probe of `read-under-logins` sends a request.
const PROBE_EVERY: Duration = Duration::from_millis(10);

/// Threads of the hashing pool of a server started here: the bench leaves
/// `password_hash_concurrency` at its default, which the server resolves
/// (0 → the cores of this machine) exactly as [`PasswordHasher::new`] does.
fn server_pool_threads() -> usize {
    match roster::config::Config::default().password_hash_concurrency {
        0 => cores(),
        n => n,
    }
}

#[derive(Clone, Copy)]
enum Argon2Op {
    /// What creating a user with a password costs.
    Hash,
    /// What a login costs.
    Verify,
}

/// The raw argon2 rate of this machine with `threads` hashes at once,
/// through the server's own hasher, bounded like any other run.
async fn argon2_rate(
    ctx: &Ctx,
    scenario: &'static str,
    threads: usize,
    op: Argon2Op,
) -> anyhow::Result<Row> {
    let hasher = PasswordHasher::new(threads);
    let phc = Arc::new(hasher.hash(PASSWORD.to_owned()).await?);
    let tickets = Arc::new(AtomicU64::new(0));
    let count = ctx.plan.count;
    let me = std::process::id();
    let bench0 = ctx.clock.cpu_seconds(me).ok();
    let machine0 = ctx.clock.machine_mark();
    let started = Instant::now();
    let deadline = started + ctx.plan.duration();
    let mut set = JoinSet::new();
    for _ in 0..threads {
        let (hasher, phc, tickets) = (hasher.clone(), phc.clone(), tickets.clone());
        set.spawn(async move {
            let mut out = Outcome::default();
            while Instant::now() < deadline {
                if let Some(count) = count
                    && tickets.fetch_add(1, Ordering::Relaxed) >= count
                {
                    break;
                }
                let t = Instant::now();
                let done = match op {
                    Argon2Op::Hash => hasher.hash(PASSWORD.to_owned()).await.map(|_| true),
                    Argon2Op::Verify => {
                        hasher
                            .verify(PASSWORD.to_owned(), phc.as_ref().clone())
                            .await
                    }
                };
                match done {
                    Ok(true) => {
                        let us = t.elapsed().as_micros();
                        out.latencies_us.push(u32::try_from(us).unwrap_or(u32::MAX));
                        out.ok += 1;
                    }
                    Ok(false) => out.error("argon2 verify refused".into(), String::new),
                    Err(e) => out.error("argon2".into(), || format!("{e:#}")),
                }
            }
            out
        });
    }
    let mut total = Outcome::default();
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok(o) => total.merge(o),
            Err(e) => total.error("worker panicked".into(), || e.to_string()),
        }
    }
    let elapsed = started.elapsed();
    let bench = delta(bench0, ctx.clock.cpu_seconds(me).ok());
    let machine = ctx.clock.machine_busy_since(machine0);
    let mut row = make_row(scenario, "argon2", threads, total, elapsed);
    row.bench_cpu_seconds = bench;
    row.machine_cpu_seconds = machine;
    row.other_cpu_seconds = remainder(machine, &[bench]);
    row.extra.insert("argon2_threads", threads as f64);
    Ok(row)
}

/// Roster's rate as a share of the raw argon2 rate (bar: ≥ 0.9).
fn against_argon2(roster: &mut Row, argon2: &Row) {
    if argon2.requests_per_second > 0.0 {
        roster.extra.insert(
            "x_argon2",
            roster.requests_per_second / argon2.requests_per_second,
        );
    }
}

/// Builds `POST /users` requests creating distinct users with a password.
fn create_with_password(ep: &Endpoint, account: &str, key: &HeaderValue) -> MakeRequest {
    let ep = ep.clone();
    let path = format!("/v1/accounts/{account}/users");
    let key = key.clone();
    Arc::new(move |w, n| {
        let body = format!(
            r#"{{"name":"Bench User {w}-{n}","customId":"p-{w}-{n}","password":"{PASSWORD}"}}"#
        );
        ep.request(Method::POST, &path, Some(&key), Some(body.into_bytes()))
    })
}

/// `create-users-password`: each request creates a distinct user with a
/// password (one argon2 hash each).
pub(super) async fn create_users_password(ctx: &Ctx) -> anyhow::Result<Vec<Row>> {
    const NAME: &str = "create-users-password";
    let pool = server_pool_threads();
    let mut rows = Vec::new();
    for &c in &ctx.concurrency {
        let fake = bearer("ceiling")?;
        let load = ctx.load(
            c,
            StatusCode::CREATED,
            create_with_password(&ctx.ceiling, &Uuid::nil().to_string(), &fake),
        );
        let ceiling = ctx.measure_ceiling(NAME, &load).await;
        let argon2 = argon2_rate(ctx, NAME, c.min(pool), Argon2Op::Hash).await?;
        let account = ctx
            .create_account(&format!("bench create-users-password c{c}"))
            .await?;
        let load = ctx.load(
            c,
            StatusCode::CREATED,
            create_with_password(&ctx.roster, &account.id, &account.key),
        );
        let mut roster = ctx.measure_roster(NAME, &load, &ceiling).await;
        against_argon2(&mut roster, &argon2);
        rows.extend([ceiling, argon2, roster]);
    }
    Ok(rows)
}

/// Creates users `l-0` … `l-{n-1}` with [`PASSWORD`], a few at a time (each
/// costs a hash).
async fn seed_password_users(ctx: &Ctx, account: &Account, n: usize) -> anyhow::Result<()> {
    let ep = ctx.roster.clone();
    let path = format!("/v1/accounts/{}/users", account.id);
    let key = account.key.clone();
    let next = Arc::new(AtomicU64::new(0));
    let load = Load {
        concurrency: server_pool_threads() * 2,
        duration: Duration::from_secs(600),
        count: Some(n as u64),
        expect: StatusCode::CREATED,
        make: Arc::new(move |_, _| {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let body =
                format!(r#"{{"name":"Login {i}","customId":"l-{i}","password":"{PASSWORD}"}}"#);
            ep.request(Method::POST, &path, Some(&key), Some(body.into_bytes()))
        }),
        pace: None,
    };
    let (out, _) = drive(&ctx.roster, &load).await;
    if out.error_count() > 0 || out.ok != n as u64 {
        let (kind, t) = out
            .errors
            .iter()
            .next()
            .map_or(("none", ""), |(k, t)| (k.as_str(), t.sample.as_str()));
        bail!(
            "creating {n} users with a password: {} created, {} errors ({kind}: {t})",
            out.ok,
            out.error_count()
        );
    }
    Ok(())
}

/// Builds login requests over `users` seeded users, each from a client
/// address never used before in this run (see the module comment).
fn logins(ctx: &Ctx, ep: &Endpoint, account: &str, users: usize) -> MakeRequest {
    let ep = ep.clone();
    let path = format!("/v1/accounts/{account}/auth/login");
    let clients = ctx.clients.clone();
    Arc::new(move |w, n| {
        let i = (w + n as usize * 7919) % users;
        let body = format!(r#"{{"customId":"l-{i}","password":"{PASSWORD}"}}"#);
        let mut req = ep.request(Method::POST, &path, None, Some(body.into_bytes()))?;
        let client = clients.fetch_add(1, Ordering::Relaxed);
        let addr = Ipv4Addr::from(0x0A00_0000 | (client & 0x00FF_FFFF));
        req.headers_mut()
            .insert("x-forwarded-for", HeaderValue::from_str(&addr.to_string())?);
        Ok(req)
    })
}

/// `login`: password logins of distinct users (one argon2 verification,
/// one new session each), beside the raw argon2 verification rate.
pub(super) async fn login(ctx: &Ctx) -> anyhow::Result<Vec<Row>> {
    const NAME: &str = "login";
    let pool = server_pool_threads();
    let top = ctx.concurrency.iter().copied().max().unwrap_or(1);
    let users = top.min(ctx.plan.users);
    let account = ctx.create_account("bench login").await?;
    seed_password_users(ctx, &account, users).await?;
    let nil = Uuid::nil().to_string();
    let mut rows = Vec::new();
    for &c in &ctx.concurrency {
        let load = ctx.load(c, StatusCode::OK, logins(ctx, &ctx.ceiling, &nil, users));
        let ceiling = ctx.measure_ceiling(NAME, &load).await;
        let argon2 = argon2_rate(ctx, NAME, c.min(pool), Argon2Op::Verify).await?;
        let load = ctx.load(
            c,
            StatusCode::OK,
            logins(ctx, &ctx.roster, &account.id, users),
        );
        let mut roster = ctx.measure_roster(NAME, &load, &ceiling).await;
        against_argon2(&mut roster, &argon2);
        rows.extend([ceiling, argon2, roster]);
    }
    Ok(rows)
}

/// `read-under-logins`: the latency of a cheap authenticated read (a user
/// reading themself with their own token, 100 a second) alone, then while
/// 50 password logins are in flight all the time (bar: p99 < 10 ms).
pub(super) async fn read_under_logins(ctx: &Ctx) -> anyhow::Result<Vec<Row>> {
    const NAME: &str = "read-under-logins";
    let account = ctx.create_account("bench read-under-logins").await?;
    let mut api = Api::new(ctx.roster.clone());
    let path = format!("/v1/accounts/{}/users", account.id);
    let reader = api
        .expect(
            StatusCode::CREATED,
            Method::POST,
            &path,
            Some(&account.key),
            Some(&json!({ "name": "Reader", "customId": "reader" })),
        )
        .await
        .context("creating the reader")?;
    let read_path = format!("{path}/{}", str_at(&reader, "/user/id")?);
    let token = bearer(str_at(&reader, "/token")?)?;
    seed_password_users(ctx, &account, LOGINS_IN_FLIGHT).await?;

    let probe = || {
        let ep = ctx.roster.clone();
        let (read_path, token) = (read_path.clone(), token.clone());
        let make: MakeRequest =
            Arc::new(move |_, _| ep.request(Method::GET, &read_path, Some(&token), None));
        Load {
            pace: Some(PROBE_EVERY),
            ..ctx.load(1, StatusCode::OK, make)
        }
    };
    let mut alone = ctx.measure_roster_against(NAME, &probe(), None).await;
    alone.extra.insert("logins_in_flight", 0.0);

    let login_load = Load {
        // Only the probe's clock bounds this run: logins never stop first.
        count: None,
        ..ctx.load(
            LOGINS_IN_FLIGHT,
            StatusCode::OK,
            logins(ctx, &ctx.roster, &account.id, LOGINS_IN_FLIGHT),
        )
    };
    let probe_load = probe();
    let (mut during, (login_out, login_elapsed)) = tokio::join!(
        ctx.measure_roster_against(NAME, &probe_load, None),
        drive(&ctx.roster, &login_load)
    );
    let logins_row = make_row(NAME, "logins", LOGINS_IN_FLIGHT, login_out, login_elapsed);
    during
        .extra
        .insert("logins_in_flight", LOGINS_IN_FLIGHT as f64);
    during
        .extra
        .insert("logins_per_second", logins_row.requests_per_second);
    Ok(vec![alone, during, logins_row])
}
