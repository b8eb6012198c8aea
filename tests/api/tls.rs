//! PostgreSQL over TLS, as managed databases require it: a PostgreSQL of
//! its own, started with a certificate from a test CA and accepting only
//! TLS connections, and Roster connecting with `sslmode=verify-full`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::json;
use tokio::process::{Child, Command};

use crate::helpers::TestApp;

/// Runs a command, failing the test with its output when it fails.
fn run(cmd: &mut std::process::Command) {
    let out = cmd.output().expect("run");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA, and a server certificate it signed for `localhost` / 127.0.0.1.
fn certificates(dir: &Path, name: &str) -> (PathBuf, PathBuf, PathBuf) {
    let p = |f: &str| dir.join(format!("{name}-{f}"));
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    run(std::process::Command::new("openssl")
        .args(["req", "-x509", "-days", "2", "-subj", "/CN=roster test CA"])
        .args(ec)
        .arg("-keyout")
        .arg(p("ca.key"))
        .arg("-out")
        .arg(p("ca.pem")));
    run(std::process::Command::new("openssl")
        .args(["req", "-subj", "/CN=localhost"])
        .args(ec)
        .arg("-keyout")
        .arg(p("server.key"))
        .arg("-out")
        .arg(p("server.csr")));
    std::fs::write(p("ext"), "subjectAltName=DNS:localhost,IP:127.0.0.1\n").unwrap();
    run(std::process::Command::new("openssl")
        .args(["x509", "-req", "-days", "2", "-CAcreateserial"])
        .arg("-in")
        .arg(p("server.csr"))
        .arg("-CA")
        .arg(p("ca.pem"))
        .arg("-CAkey")
        .arg(p("ca.key"))
        .arg("-extfile")
        .arg(p("ext"))
        .arg("-out")
        .arg(p("server.pem")));
    (p("ca.pem"), p("server.pem"), p("server.key"))
}

fn pg_bin(name: &str) -> PathBuf {
    let mut versions: Vec<_> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL's binaries under /usr/lib/postgresql")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    versions.sort();
    versions
        .pop()
        .expect("a PostgreSQL version")
        .join("bin")
        .join(name)
}

/// A port nothing listens on (yet).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The spawned server once it accepts connections on `port` (deadline 30 s).
async fn listening(child: Child, port: u16, what: &str) -> (Child, u16) {
    tokio::time::timeout(Duration::from_secs(30), async {
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{what} listens within 30 s"));
    (child, port)
}

/// A PostgreSQL that accepts TLS connections only (`hostssl`), run as the
/// `postgres` user (it refuses root) in `dir`, which holds `cert` and `key`.
async fn tls_only_postgres(dir: &Path, cert: &Path, key: &Path) -> (Child, u16) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let data = dir.join("pg");
    std::fs::create_dir(&data).unwrap();
    run(std::process::Command::new("chown")
        .args(["-R", "postgres:postgres"])
        .arg(dir));
    run(std::process::Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .arg(pg_bin("initdb"))
        .args(["-U", "postgres", "--auth=trust", "-D"])
        .arg(&data));
    std::fs::write(
        data.join("pg_hba.conf"),
        "local all all trust\nhostssl all all 127.0.0.1/32 trust\nhostssl all all ::1/128 trust\n",
    )
    .unwrap();
    // The certificate and key stay where they are, in `dir`, which the
    // `postgres` user owns; the key must be private to it.
    std::fs::set_permissions(key, std::fs::Permissions::from_mode(0o600)).unwrap();
    run(std::process::Command::new("chown")
        .args(["-R", "postgres:postgres"])
        .arg(dir));
    let port = free_port();
    let child = Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .arg(pg_bin("postgres"))
        .arg("-D")
        .arg(&data)
        .args([
            "-p",
            &port.to_string(),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "ssl=on",
        ])
        .arg("-c")
        .arg(format!("ssl_cert_file={}", cert.display()))
        .arg("-c")
        .arg(format!("ssl_key_file={}", key.display()))
        .arg("-c")
        .arg(format!("unix_socket_directories={}", dir.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start postgres");
    listening(child, port, "postgres").await
}

/// #17 item 4: managed PostgreSQL asks for TLS. Roster connects with
/// `sslmode=verify-full` and the CA in `sslrootcert`; without TLS the
/// server refuses it, and a certificate from another CA is refused by
/// Roster.
#[tokio::test]
async fn postgres_over_verified_tls() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = certificates(dir.path(), "good");
    let (other_ca, _, _) = certificates(dir.path(), "other");
    let (_pg, port) = tls_only_postgres(dir.path(), &cert, &key).await;
    let url = |mode: &str, ca: &Path| {
        format!(
            "postgres://postgres@localhost:{port}/postgres?sslmode={mode}&sslrootcert={}",
            ca.display()
        )
    };
    let open = |u: String| async move {
        let config = roster::config::Config {
            database_url: u,
            ..Default::default()
        };
        roster::app::open_store(&config).await.map(drop)
    };
    let refused = open(url("disable", &ca)).await.unwrap_err();
    assert!(
        format!("{refused:#}").contains("no pg_hba.conf entry"),
        "{refused:#}"
    );
    let refused = open(url("verify-full", &other_ca)).await.unwrap_err();
    assert!(
        format!("{refused:#}")
            .to_lowercase()
            .contains("certificate"),
        "{refused:#}"
    );

    let t = TestApp::spawn_on(url("verify-full", &ca), None, |_| {}).await;
    let a = t.account("acme").await;
    let d = t.user(&a, json!({ "name": "Ann" })).await;
    let (s, _) = t
        .get(
            &a.path(&format!("/users/{}", d["user"]["id"].as_str().unwrap())),
            &a.key,
        )
        .await;
    assert_eq!(s, reqwest::StatusCode::OK);
}

/// A `redis-server` that speaks TLS only (`--port 0 --tls-port …`).
async fn tls_only_redis(cert: &Path, key: &Path, ca: &Path) -> (Child, u16) {
    let port = free_port();
    let child = Command::new("redis-server")
        .args([
            "--port",
            "0",
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .args(["--tls-port", &port.to_string(), "--tls-auth-clients", "no"])
        .arg("--tls-cert-file")
        .arg(cert)
        .arg("--tls-key-file")
        .arg(key)
        .arg("--tls-ca-cert-file")
        .arg(ca)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start redis-server");
    listening(child, port, "redis-server").await
}

/// #17 item 4: `rediss://`, verified against `redis_tls_ca_file`; a plain
/// connection to the TLS port and a certificate from another CA fail, and
/// a whole server writes its node registry to Redis over TLS.
#[tokio::test]
async fn redis_over_verified_tls() {
    use roster::realtime::redis::Redis;
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = certificates(dir.path(), "good");
    let (other_ca, _, _) = certificates(dir.path(), "other");
    let (_redis, port) = tls_only_redis(&cert, &key, &ca).await;
    let tls = format!("rediss://localhost:{port}");
    let ping = |url: String, ca: Option<PathBuf>| async move {
        let r = Redis::open(&url, "tls-test", ca.as_deref().and_then(Path::to_str))?;
        let mut c = r.conn().await?;
        let pong: String = redis::cmd("PING").query_async(&mut c).await?;
        anyhow::Ok(pong)
    };
    assert_eq!(ping(tls.clone(), Some(ca.clone())).await.unwrap(), "PONG");
    assert!(
        ping(format!("redis://localhost:{port}"), None)
            .await
            .is_err()
    );
    assert!(ping(tls.clone(), Some(other_ca)).await.is_err());
    assert!(
        ping(tls.clone(), None).await.is_err(),
        "the test CA is in no trust store"
    );

    // A whole server on it: a node's presence reaches Redis over TLS.
    let ca_file = ca.to_str().unwrap().to_owned();
    let t = TestApp::spawn_with(|c| {
        c.redis_url = Some(tls.clone());
        c.redis_tls_ca_file = Some(ca_file);
        c.redis_prefix = "tls-test".into();
    })
    .await;
    let a = t.account("acme").await;
    assert!(!a.key.is_empty());
    let r = Redis::open(&tls, "tls-test", ca.to_str()).unwrap();
    let mut c = r.conn().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("tls-test:*")
        .query_async(&mut c)
        .await
        .unwrap();
    assert!(
        !keys.is_empty(),
        "the node writes its registry to Redis over TLS"
    );
}
