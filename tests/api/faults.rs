//! Fault scenarios on loopback, each bounded in time: a PostgreSQL link
//! that turns slow, then breaks, then heals (through a TCP proxy in the
//! test). Needs PostgreSQL: runs when `ROSTER_TEST_POSTGRES_URL` is set.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::helpers::{TestApp, fresh_postgres};

/// What the proxy does to the bytes between Roster and PostgreSQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    Normal,
    /// Every chunk, either way, waits this long.
    Slow(Duration),
    /// Every connection is cut, and new ones are closed at once.
    Broken,
}

struct Proxy {
    port: u16,
    link: watch::Sender<Link>,
    /// Connections open now, and the most ever open at once.
    open: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
}

impl Proxy {
    async fn start(target: std::net::SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (link, watching) = watch::channel(Link::Normal);
        let open = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let (o, p) = (open.clone(), peak.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let link = watching.clone();
                if *link.borrow() == Link::Broken {
                    continue; // dropped: closed at once
                }
                let (open, peak) = (o.clone(), p.clone());
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(target).await else {
                        return;
                    };
                    let now = open.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    tokio::select! {
                        () = pipe(cr, sw, link.clone()) => {}
                        () = pipe(sr, cw, link) => {}
                    }
                    open.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        Self {
            port,
            link,
            open,
            peak,
        }
    }

    fn set(&self, link: Link) {
        self.link.send_replace(link);
    }
}

/// Copies `from` to `to` as the link allows (a slow link delays each chunk,
/// as latency would, without holding back the next read), until either
/// side closes or the link breaks; then both halves drop: the connection
/// is cut.
async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    link: watch::Receiver<Link>,
) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(tokio::time::Instant, Vec<u8>)>();
    let reading = {
        let link = link.clone();
        async move {
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                match from.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        let delay = match *link.borrow() {
                            Link::Slow(d) => d,
                            _ => Duration::ZERO,
                        };
                        let due = tokio::time::Instant::now() + delay;
                        if tx.send((due, buf[..n].to_vec())).is_err() {
                            return;
                        }
                    }
                }
            }
        }
    };
    let writing = async move {
        while let Some((due, bytes)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            if to.write_all(&bytes).await.is_err() {
                return;
            }
        }
    };
    let mut broken = link;
    tokio::select! {
        () = reading => {}
        () = writing => {}
        _ = broken.wait_for(|l| *l == Link::Broken) => {}
    }
}

/// Every answer is 503 `UNAVAILABLE`, and none names the database's
/// internals.
fn all_unavailable(answers: &[(StatusCode, serde_json::Value)]) {
    for (status, body) in answers {
        assert_eq!(*status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert_eq!(body["error"]["code"], "UNAVAILABLE", "{body}");
        let text = body.to_string().to_lowercase();
        assert!(!text.contains("sqlx") && !text.contains("select"), "{body}");
    }
}

/// A slow link: requests fail at the configured deadline (2 s here) with
/// 503, not after the link's 8 s, and the connections to the database stay
/// within the pool's bound. A broken link: 503 as fast. Healed: answers
/// within 10 s, without a restart.
#[tokio::test]
async fn a_slow_then_broken_postgres_link_fails_at_the_deadline_and_heals() {
    if std::env::var_os("ROSTER_TEST_POSTGRES_URL").is_none() {
        eprintln!("skipped: set ROSTER_TEST_POSTGRES_URL to run the PostgreSQL link faults");
        return;
    }
    let direct = url::Url::parse(&fresh_postgres().await).unwrap();
    let target = tokio::net::lookup_host((
        direct.host_str().unwrap().to_owned(),
        direct.port().unwrap_or(5432),
    ))
    .await
    .unwrap()
    .next()
    .unwrap();
    let proxy = Proxy::start(target).await;
    let mut via = direct.clone();
    via.set_host(Some("127.0.0.1")).unwrap();
    via.set_port(Some(proxy.port)).unwrap();
    let deadline = Duration::from_secs(2);
    let t = Arc::new(
        TestApp::spawn_on(via.to_string(), None, |c| {
            c.request_timeout_secs = deadline.as_secs();
        })
        .await,
    );
    let a = t.account("acme").await;
    t.user(&a, json!({ "name": "Ann" })).await;
    let users = a.path("/users");
    let burst = |n: usize| {
        let (t, users, key) = (t.clone(), users.clone(), a.key.clone());
        async move {
            let calls = (0..n).map(|_| {
                let (t, users, key) = (t.clone(), users.clone(), key.clone());
                async move { t.get(&users, &key).await }
            });
            futures::future::join_all(calls).await
        }
    };

    proxy.set(Link::Slow(Duration::from_secs(8)));
    let started = Instant::now();
    let answers = burst(40).await;
    let took = started.elapsed();
    all_unavailable(&answers);
    // Cut by the deadline, well before the link's 8 s (the margin is for
    // a loaded machine).
    assert!(
        took < deadline + Duration::from_secs(4),
        "answered after {took:?}, not at the {deadline:?} deadline"
    );
    // 40 requests at once never opened more than the pool's 32 connections.
    assert!(
        proxy.peak.load(Ordering::SeqCst) <= 32,
        "{} connections at once",
        proxy.peak.load(Ordering::SeqCst)
    );

    proxy.set(Link::Broken);
    let started = Instant::now();
    let answers = burst(10).await;
    all_unavailable(&answers);
    assert!(started.elapsed() < deadline + Duration::from_secs(4));
    assert_eq!(proxy.open.load(Ordering::SeqCst), 0, "every link was cut");

    proxy.set(Link::Normal);
    let healed = Instant::now();
    let back = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let (status, _) = t.get(&users, &a.key).await;
            if status == StatusCode::OK {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(back.is_ok(), "no answer within 10 s of the link healing");
    let (status, body) = t.post(&users, &a.key, json!({ "name": "Bob" })).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    eprintln!("recovered in {:?}", healed.elapsed());
}

/// `kill -9` of `roster migrate` at moments spread over its run, on a new
/// database each time: every migration is one transaction, so the restart
/// finds each either applied whole or not at all, completes the schema, and
/// the database is sound.
#[tokio::test]
async fn a_migration_killed_at_any_moment_leaves_all_or_nothing() {
    let postgres = std::env::var_os("ROSTER_TEST_POSTGRES_URL").is_some();
    let dir = tempfile::tempdir().unwrap();
    let migrate = |url: String| {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_roster"));
        cmd.arg("migrate")
            .env("ROSTER_DATABASE_URL", url)
            .env("ROSTER_LOG", "warn")
            .env("ROSTER_OPERATOR_KEY", crate::helpers::OPERATOR_KEY)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        cmd
    };
    let mut partial = 0;
    for round in 0..12u64 {
        let url = if postgres && round % 2 == 1 {
            fresh_postgres().await
        } else {
            format!("sqlite://{}/r{round}.db", dir.path().display())
        };
        let mut child = migrate(url.clone()).spawn().unwrap();
        // The fault, not a wait: the kill lands somewhere in the run.
        tokio::time::sleep(Duration::from_millis(3 * round)).await;
        child.start_kill().unwrap();
        let _ = child.wait().await;
        let (applied, total) = applied_migrations(&url).await;
        if applied > 0 && applied < total {
            partial += 1;
        }
        let out = migrate(url.clone()).output().await.unwrap();
        assert!(
            out.status.success(),
            "round {round}: the restart refused: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            applied_migrations(&url).await,
            (total, total),
            "round {round}"
        );
        if url.starts_with("sqlite:") {
            let mut c = <sqlx::SqliteConnection as sqlx::Connection>::connect(&url)
                .await
                .unwrap();
            let check: String = sqlx::query_scalar("PRAGMA integrity_check")
                .fetch_one(&mut c)
                .await
                .unwrap();
            assert_eq!(check, "ok", "round {round}");
        }
    }
    eprintln!("{partial} of 12 kills landed between two migrations");
}

/// How many migrations the database records as applied (all successful,
/// or the test fails), and how many this build has.
async fn applied_migrations(url: &str) -> (usize, usize) {
    let query = "SELECT version, success FROM _sqlx_migrations ORDER BY version";
    let (rows, total): (Result<Vec<(i64, bool)>, sqlx::Error>, usize) =
        if url.starts_with("sqlite:") {
            let Ok(mut c) = <sqlx::SqliteConnection as sqlx::Connection>::connect(url).await else {
                return (0, roster::store::sqlite::migrator().iter().count());
            };
            (
                sqlx::query_as(query).fetch_all(&mut c).await,
                roster::store::sqlite::migrator().iter().count(),
            )
        } else {
            let mut c = <sqlx::PgConnection as sqlx::Connection>::connect(url)
                .await
                .unwrap();
            (
                sqlx::query_as(query).fetch_all(&mut c).await,
                roster::store::postgres::migrator().iter().count(),
            )
        };
    let rows = rows.unwrap_or_default(); // no table yet: nothing applied
    assert!(
        rows.iter().all(|(_, ok)| *ok),
        "a migration recorded half-done: {rows:?}"
    );
    (rows.len(), total)
}

/// A small tmpfs, mounted for one test and unmounted when dropped; `None`
/// where mounting is not allowed (not root).
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(Self { dir })
    }

    fn path(&self) -> &std::path::Path {
        self.dir.path()
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// SQLite on a disk that fills up: writes answer 503 `UNAVAILABLE` (not
/// 500) and leave nothing half-written, reads keep answering, and once
/// space is freed writes succeed again without a restart; the database
/// passes its integrity check and holds exactly the acknowledged users.
#[tokio::test]
async fn a_full_disk_refuses_writes_with_503_and_recovers_without_a_restart() {
    let Some(disk) = SmallDisk::mount("6m") else {
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    };
    let url = format!("sqlite://{}/roster.db", disk.path().display());
    let t = TestApp::spawn_on(url.clone(), None, |_| {}).await;
    let a = t.account("acme").await;
    let users = a.path("/users");
    let mut acked = vec![t.user(&a, json!({ "name": "before" })).await];
    // Fill what is left of the disk.
    let filler = disk.path().join("filler");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&filler).unwrap();
        let block = vec![0u8; 64 * 1024];
        while f.write_all(&block).is_ok() {}
        let small = [0u8; 512];
        while f.write_all(&small).is_ok() {}
        let _ = f.sync_all();
    }
    let mut refused = 0;
    for i in 0..200 {
        let body = json!({ "name": format!("user {i}"), "metadata": { "pad": "x".repeat(2000) } });
        let (status, answer) = t.post(&users, &a.key, body).await;
        match status {
            StatusCode::CREATED => acked.push(answer["data"].clone()),
            StatusCode::SERVICE_UNAVAILABLE => {
                assert_eq!(answer["error"]["code"], "UNAVAILABLE", "{answer}");
                refused += 1;
                if refused == 5 {
                    break;
                }
            }
            other => panic!("a full disk answered {other}: {answer}"),
        }
    }
    assert_eq!(refused, 5, "the disk never filled");
    let (status, _) = t.get(&users, &a.key).await;
    assert_eq!(status, StatusCode::OK, "reads go on");
    // Space again: writes go through, no restart.
    std::fs::remove_file(&filler).unwrap();
    let after = t.user(&a, json!({ "name": "after" })).await;
    acked.push(after);
    assert_eq!(t.user_count(&a).await, acked.len());
    let mut c = <sqlx::SqliteConnection as sqlx::Connection>::connect(&url)
        .await
        .unwrap();
    let check: String = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(&mut c)
        .await
        .unwrap();
    assert_eq!(check, "ok");
}
