//! The `roster` binary as an operator runs it: crash safety under `kill -9`,
//! draining on SIGTERM, and the CLI.

use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::Mutex;

use crate::helpers::{OPERATOR_KEY, fresh_database_url};

const BIN: &str = env!("CARGO_BIN_EXE_roster");

pub struct Proc {
    pub child: Child,
    pub base: String,
    /// `http://…/metrics` on `metrics_listen`, when set.
    pub metrics: Option<String>,
    /// The log lines written after "listening", as they come.
    pub log: tokio::sync::mpsc::UnboundedReceiver<String>,
}

/// Starts `roster serve` on port 0 and waits (with a deadline) for the log
/// line that names its address.
async fn start(database_url: &str) -> Proc {
    start_with(database_url, Some(OPERATOR_KEY)).await
}

async fn start_with(database_url: &str, operator_key: Option<&str>) -> Proc {
    start_env(database_url, operator_key, &[]).await
}

/// `roster serve` with extra environment (e.g. `ROSTER_REDIS_URL`).
pub async fn start_env(
    database_url: &str,
    operator_key: Option<&str>,
    env: &[(&str, &str)],
) -> Proc {
    let mut cmd = Command::new(BIN);
    cmd.envs(env.iter().copied());
    cmd.arg("serve")
        .env("ROSTER_LISTEN", "127.0.0.1:0")
        .env("ROSTER_DATABASE_URL", database_url)
        .env("ROSTER_LOG", "info");
    match operator_key {
        Some(k) => cmd.env("ROSTER_OPERATOR_KEY", k),
        None => cmd.env_remove("ROSTER_OPERATOR_KEY"),
    };
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn roster");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let (addr, metrics) = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Ok(v) = serde_json::from_str::<Value>(&line)
                && v["message"] == "roster is listening"
            {
                return (
                    v["addr"].as_str().unwrap().to_owned(),
                    v["metrics"].as_str().map(str::to_owned),
                );
            }
        }
        panic!("roster exited before listening");
    })
    .await
    .expect("roster did not start within 30 s");
    // Keep draining stderr so the child never blocks on a full pipe.
    let (tx, log) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            let _ = tx.send(line);
        }
    });
    Proc {
        child,
        base: format!("http://{addr}"),
        metrics,
        log,
    }
}

pub async fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("roster did not exit within 30 s")
        .unwrap()
}

async fn create_account(client: &reqwest::Client, base: &str) -> (String, String) {
    let res = client
        .post(format!("{base}/v1/accounts"))
        .bearer_auth(OPERATOR_KEY)
        .json(&json!({ "name": "crash" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let body: Value = res.json().await.unwrap();
    (
        body["data"]["account"]["id"].as_str().unwrap().to_owned(),
        body["data"]["api_key"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test]
async fn every_acknowledged_create_survives_kill_9() {
    let (db, _dir) = fresh_database_url().await;
    let mut server = start(&db).await;
    let client = reqwest::Client::new();
    let (account, key) = create_account(&client, &server.base).await;
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let count = Arc::new(AtomicUsize::new(0));
    let enough = Arc::new(tokio::sync::Notify::new());
    let mut workers = Vec::new();
    for w in 0..32 {
        let (client, base, account, key) = (
            client.clone(),
            server.base.clone(),
            account.clone(),
            key.clone(),
        );
        let (acked, count, enough) = (acked.clone(), count.clone(), enough.clone());
        workers.push(tokio::spawn(async move {
            for n in 0.. {
                let uid = format!("w{w}-{n}");
                let res = client
                    .post(format!("{base}/v1/accounts/{account}/users"))
                    .bearer_auth(&key)
                    .json(&json!({ "uid": uid, "name": "Crash Test" }))
                    .send()
                    .await;
                match res {
                    Ok(r) if r.status() == StatusCode::CREATED => {
                        acked.lock().await.push(uid);
                        if count.fetch_add(1, Ordering::SeqCst) + 1 == 500 {
                            enough.notify_one();
                        }
                    }
                    Ok(r) => panic!("unexpected {}", r.status()),
                    Err(_) => return,
                }
            }
        }));
    }
    // Kill once a good number of creates were acknowledged (deadline-bound).
    tokio::time::timeout(Duration::from_secs(60), enough.notified())
        .await
        .expect("500 creates were not acknowledged within 60 s");
    server.child.start_kill().unwrap(); // SIGKILL
    wait_exit(&mut server.child).await;
    for w in workers {
        w.await.unwrap();
    }
    let acked = acked.lock().await.clone();
    assert!(acked.len() >= 500);

    let server = start(&db).await;
    let mut stored = std::collections::HashSet::new();
    let mut stored_ids = std::collections::HashSet::new();
    let mut cursor = String::new();
    loop {
        let res: Value = client
            .get(format!(
                "{}/v1/accounts/{account}/users?limit=100{cursor}",
                server.base
            ))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for u in res["data"]["users"].as_array().unwrap() {
            stored.insert(u["custom_id"].as_str().unwrap().to_owned());
            stored_ids.insert(u["id"].as_str().unwrap().to_owned());
        }
        match res["data"]["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => break,
        }
    }
    let lost: Vec<_> = acked.iter().filter(|u| !stored.contains(*u)).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged creates lost, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );

    // The event log went down with the same commits: every stored user has
    // exactly one `user.created`, and none names a user that is not there.
    let config = roster::config::Config {
        database_url: db.clone(),
        ..roster::config::Config::default()
    };
    let store = roster::app::open_store(&config).await.unwrap();
    let account_id = uuid::Uuid::parse_str(&account).unwrap();
    let mut created = std::collections::HashMap::<String, usize>::new();
    let mut after = 0;
    // The log is read up to what is settled; on PostgreSQL that waits for
    // transactions of other tests running beside it, and reads nothing if
    // one outlasts its wait: read on until every stored user is seen or
    // the deadline passes.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let page = store
            .events_after(Some(account_id), after, 500)
            .await
            .unwrap();
        let Some(last) = page.last() else {
            let all = stored_ids.iter().all(|id| created.contains_key(id));
            if all || std::time::Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        after = last.seq;
        for e in page.iter().filter(|e| e.kind == "user.created") {
            *created.entry(e.subject_id.clone()).or_default() += 1;
        }
    }
    let twice: Vec<_> = created.iter().filter(|(_, n)| **n != 1).collect();
    assert!(
        twice.is_empty(),
        "users with more than one user.created: {twice:?}"
    );
    let orphans: Vec<_> = created
        .keys()
        .filter(|id| !stored_ids.contains(*id))
        .collect();
    assert!(
        orphans.is_empty(),
        "events for users that do not exist: {orphans:?}"
    );
    let silent: Vec<_> = stored_ids
        .iter()
        .filter(|id| !created.contains_key(*id))
        .collect();
    assert!(silent.is_empty(), "users without their event: {silent:?}");
}

#[tokio::test]
async fn sigterm_drains_and_exits_zero() {
    let (db, _dir) = fresh_database_url().await;
    let mut server = start(&db).await;
    let client = reqwest::Client::new();
    let (account, key) = create_account(&client, &server.base).await;
    // A realtime client, which must be told 1001 (going away).
    let user: Value = client
        .post(format!("{}/v1/accounts/{account}/users", server.base))
        .bearer_auth(&key)
        .json(&json!({ "name": "Listener" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let url = format!(
        "{}/v1/realtime?token={}",
        server.base.replacen("http://", "ws://", 1),
        user["data"]["token"].as_str().unwrap()
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    assert_eq!(crate::realtime::next_json(&mut ws).await["type"], "welcome");
    // Requests in flight when SIGTERM lands still get a whole answer.
    let mut inflight = Vec::new();
    for i in 0..16 {
        let (client, base, account, key) = (
            client.clone(),
            server.base.clone(),
            account.clone(),
            key.clone(),
        );
        inflight.push(tokio::spawn(async move {
            client
                .post(format!("{base}/v1/accounts/{account}/users"))
                .bearer_auth(&key)
                .json(
                    &json!({ "uid": format!("t{i}"), "name": "T", "password": "drain-me-please" }),
                )
                .send()
                .await
                .map(|r| r.status())
        }));
    }
    let pid = server.child.id().unwrap().to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(crate::realtime::close_code(&mut ws).await, 1001);
    let exit = wait_exit(&mut server.child).await;
    assert_eq!(exit.code(), Some(0), "roster must exit 0 after SIGTERM");
    for r in inflight {
        if let Ok(s) = r.await.unwrap() {
            assert_eq!(s, StatusCode::CREATED);
        }
    }
}

#[tokio::test]
async fn the_cli_creates_accounts_and_prints_redacted_config() {
    let (db, _dir) = fresh_database_url().await;
    let out = Command::new(BIN)
        .args(["migrate"])
        .env("ROSTER_DATABASE_URL", &db)
        .env("ROSTER_OPERATOR_KEY", OPERATOR_KEY)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(BIN)
        .args(["accounts", "create", "--name", "From CLI"])
        .env("ROSTER_DATABASE_URL", &db)
        .env("ROSTER_OPERATOR_KEY", OPERATOR_KEY)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: Value = serde_json::from_slice(&out.stdout).expect("stdout is JSON");
    assert_eq!(printed["account"]["name"], "From CLI");
    let key = printed["api_key"].as_str().unwrap();
    let account = printed["account"]["id"].as_str().unwrap();
    let server = start(&db).await;
    let res = reqwest::Client::new()
        .get(format!("{}/v1/accounts/{account}/users", server.base))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);

    let out = Command::new(BIN)
        .args(["print-config"])
        .env(
            "ROSTER_DATABASE_URL",
            "postgres://roster:s3cret@db:5432/roster",
        )
        .env("ROSTER_OPERATOR_KEY", OPERATOR_KEY)
        .env("ROSTER_LISTEN", "0.0.0.0:9000")
        .output()
        .await
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("listen = \"0.0.0.0:9000\""), "{text}");
    assert!(
        !text.contains("s3cret") && !text.contains(OPERATOR_KEY),
        "{text}"
    );
    assert!(text.contains("[redacted]"), "{text}");
}

/// Runs `roster ARGS` on `db` (with `stdin` fed in), to its end: whether
/// it succeeded, its stdout and its stderr.
async fn roster(db: &str, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    use tokio::io::AsyncWriteExt;
    let mut child = Command::new(BIN)
        .args(args)
        .env("ROSTER_DATABASE_URL", db)
        .env("ROSTER_OPERATOR_KEY", OPERATOR_KEY)
        .env("ROSTER_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).await.unwrap();
    }
    drop(input);
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("the command ends within 30 s")
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `roster ARGS` on `db`, which must succeed; its stdout as JSON.
async fn roster_json(db: &str, args: &[&str], stdin: Option<&str>) -> Value {
    let (ok, out, err) = roster(db, args, stdin).await;
    assert!(ok, "{args:?}: {err}");
    serde_json::from_str(&out).unwrap_or_else(|_| panic!("{args:?}: stdout is not JSON: {out}"))
}

/// #17 item 10: the scripting commands act as the operator through the
/// use cases the API runs: a user (with a password from stdin), a read
/// key and a token made from the CLI work against the server; a refusal is
/// the API's code and field and changes nothing; a key revoked from the
/// CLI is refused; each subcommand's help shows its own flags and an
/// example.
#[tokio::test]
async fn the_cli_scripts_users_keys_and_tokens_through_the_use_cases() {
    let (db, _dir) = fresh_database_url().await;
    let created = roster_json(&db, &["accounts", "create", "--name", "Scripted"], None).await;
    let account = created["account"]["id"].as_str().unwrap().to_owned();
    let a = account.as_str();

    let password = "correct horse battery staple";
    let created = roster_json(
        &db,
        &[
            "users",
            "create",
            "--account",
            a,
            "--name",
            "Ada",
            "--username",
            "ada",
            "--email",
            "ada@example.com",
            "--role",
            "admin",
            "--password-stdin",
        ],
        Some(&format!("{password}\n")),
    )
    .await;
    assert_eq!(created["user"]["username"], "ada");
    assert_eq!(created["user"]["roles"], json!(["admin"]));
    let user = created["user"]["id"].as_str().unwrap().to_owned();

    // Refusals: the API's words, nothing written.
    let stranger = uuid::Uuid::now_v7().to_string();
    for (args, words) in [
        (
            &[
                "users",
                "create",
                "--account",
                a,
                "--name",
                "Ada 2",
                "--username",
                "ADA",
            ][..],
            &["CONFLICT", "`username`"][..],
        ),
        (
            &[
                "users",
                "create",
                "--account",
                a,
                "--name",
                "Bob",
                "--role",
                "no-such-role",
            ],
            &["NOT_FOUND", "`roles`"],
        ),
        (&["users", "list", "--account", &stranger], &["NOT_FOUND"]),
        (
            &["users", "list", "--account", a, "--limit", "500"],
            &["VALIDATION_ERROR", "`limit`"],
        ),
    ] {
        let (ok, _, err) = roster(&db, args, None).await;
        assert!(!ok, "{args:?} was accepted");
        for w in words {
            assert!(err.contains(w), "{args:?}: {err}");
        }
    }
    let listed = roster_json(
        &db,
        &["users", "list", "--account", a, "--limit", "10"],
        None,
    )
    .await;
    assert_eq!(listed["users"].as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed["next_cursor"], Value::Null);

    let out = roster_json(
        &db,
        &[
            "api-keys",
            "create",
            "--account",
            a,
            "--name",
            "reader",
            "--scope",
            "read",
        ],
        None,
    )
    .await;
    let read_key = out["api_key"].as_str().unwrap().to_owned();
    let doomed = roster_json(
        &db,
        &["api-keys", "create", "--account", a, "--name", "doomed"],
        None,
    )
    .await;
    let issued = roster_json(
        &db,
        &["tokens", "issue", "--account", a, "--user", &user],
        None,
    )
    .await;
    let token = issued["token"].as_str().unwrap().to_owned();
    assert!(issued["token_info"]["expires_at"].is_string(), "{issued}");

    let server = start(&db).await;
    let client = reqwest::Client::new();
    let api = |path: &str| format!("{}/v1/accounts/{a}{path}", server.base);
    let res = client
        .get(api("/users"))
        .bearer_auth(&read_key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let res = client
        .post(api("/users"))
        .bearer_auth(&read_key)
        .json(&json!({ "name": "Eve" }))
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        StatusCode::FORBIDDEN,
        "a read key writes nothing"
    );
    let res = client
        .get(api(&format!("/users/{user}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        StatusCode::OK,
        "the CLI's token authenticates"
    );
    let res = client
        .post(api("/auth/login"))
        .json(&json!({ "username": "ada", "password": password }))
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        StatusCode::OK,
        "the password from stdin is hers"
    );
    // Revoked from the CLI beside the running server (never used, so not
    // in its cache): refused.
    let doomed_id = doomed["key"]["id"].as_str().unwrap();
    let (ok, _, err) = roster(
        &db,
        &["api-keys", "revoke", "--account", a, "--key", doomed_id],
        None,
    )
    .await;
    assert!(ok, "{err}");
    let res = client
        .get(api("/users"))
        .bearer_auth(doomed["api_key"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);

    // Each subcommand: its own flags, and an example.
    for (args, has, lacks) in [
        (
            &["serve", "--help"][..],
            &["--listen", "--database-url", "--config", "Example"][..],
            &["--account"][..],
        ),
        (
            &["users", "create", "--help"],
            &["--account", "--password-stdin", "Example"],
            &["--listen"],
        ),
        (
            &["print-config", "--help"],
            &["--config", "Example"],
            &["--listen", "--database-url"],
        ),
        (
            &["migrate-sqlite-to-postgres", "--help"],
            &["--from", "--to", "ROSTER_MIGRATE_TO", "Example"],
            &["--listen"],
        ),
    ] {
        let (ok, help, err) = roster(&db, args, None).await;
        assert!(ok, "{err}");
        for flag in has {
            assert!(help.contains(flag), "{args:?} lacks {flag}: {help}");
        }
        for flag in lacks {
            assert!(!help.contains(flag), "{args:?} shows {flag}: {help}");
        }
    }
}

/// #17 item 6: a generated operator key went as plain text into the JSON
/// log stream, and was generated (and lost) even when the port was taken.
/// The port is taken first; the key goes to a `0600` file whose path the
/// log names; only its hash is kept; a second start generates nothing.
#[tokio::test]
async fn a_generated_operator_key_goes_to_a_private_file_once_and_only_its_hash_is_kept() {
    use std::os::unix::fs::PermissionsExt;
    let (db, _dir) = fresh_database_url().await;
    // On PostgreSQL the key file goes to the working directory.
    let work = tempfile::tempdir().unwrap();
    let key_file = if db.starts_with("sqlite") {
        std::path::Path::new(db.trim_start_matches("sqlite://"))
            .parent()
            .unwrap()
            .join("operator-key")
    } else {
        work.path().join("operator-key")
    };
    let command = |args: &[&str]| {
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .current_dir(work.path())
            .env("ROSTER_DATABASE_URL", &db)
            .env_remove("ROSTER_OPERATOR_KEY");
        cmd
    };
    // A port in use stops the server before it generates anything.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let out = tokio::time::timeout(
        Duration::from_secs(20),
        command(&["serve"])
            .env("ROSTER_LISTEN", taken.local_addr().unwrap().to_string())
            .output(),
    )
    .await
    .expect("exits at once")
    .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot listen"));
    assert!(
        !key_file.exists(),
        "no key generated for a server that never ran"
    );

    let first = command(&["accounts", "create", "--name", "x"])
        .output()
        .await
        .unwrap();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let stderr = String::from_utf8_lossy(&first.stderr);
    assert!(!stderr.contains("rop_"), "the key is in the log: {stderr}");
    assert!(
        stderr.contains("operator-key"),
        "the log names the file: {stderr}"
    );
    let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let key = std::fs::read_to_string(&key_file)
        .unwrap()
        .trim()
        .to_owned();
    assert!(key.starts_with("rop_"), "{key}");
    std::fs::remove_file(&key_file).unwrap();

    let second = command(&["accounts", "create", "--name", "y"])
        .output()
        .await
        .unwrap();
    assert!(second.status.success());
    assert!(!key_file.exists(), "generated twice");
    // The key in the file is the operator key of a server on that database.
    let server = start_with(&db, None).await;
    let res = reqwest::Client::new()
        .get(format!("{}/v1/accounts", server.base))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["data"]["accounts"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn a_node_refuses_a_schema_newer_than_it_knows() {
    let (db, _dir) = fresh_database_url().await;
    let migrate = || {
        Command::new(BIN)
            .arg("migrate")
            .env("ROSTER_DATABASE_URL", &db)
            .output()
    };
    assert!(migrate().await.unwrap().status.success());
    // A later release applied migration 9999.
    let insert = "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
                  VALUES (9999, 'from the future', TRUE, X'00', 1)";
    if db.starts_with("sqlite") {
        use sqlx::Connection;
        let mut c = sqlx::SqliteConnection::connect(&db).await.unwrap();
        sqlx::query(insert).execute(&mut c).await.unwrap();
    } else {
        use sqlx::Connection;
        let mut c = sqlx::PgConnection::connect(&db).await.unwrap();
        sqlx::query(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
             VALUES (9999, 'from the future', TRUE, '\\x00', 1)",
        )
        .execute(&mut c)
        .await
        .unwrap();
    }
    let out = migrate().await.unwrap();
    assert!(
        !out.status.success(),
        "an older node must not serve a newer schema"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("9999"), "{err}");
    let serve = Command::new(BIN)
        .arg("serve")
        .env("ROSTER_LISTEN", "127.0.0.1:0")
        .env("ROSTER_DATABASE_URL", &db)
        .env("ROSTER_OPERATOR_KEY", OPERATOR_KEY)
        .output()
        .await
        .unwrap();
    assert!(!serve.status.success());
}

/// #17 item 1: the placeholder in `deploy/k8s/secret.yaml` passed the
/// length check, so an unedited install ran with a publicly known key.
/// Placeholders, values shipped in the repository and keys of low entropy
/// are refused at start-up, naming the key; a random key starts.
#[tokio::test]
async fn placeholder_shipped_and_low_entropy_operator_keys_are_refused() {
    let (db, _dir) = fresh_database_url().await;
    let shipped = include_str!("../../deploy/k8s/secret.yaml")
        .lines()
        .find_map(|l| l.trim().strip_prefix("ROSTER_OPERATOR_KEY: "))
        .expect("the shipped secret names an operator key")
        .trim_matches('"')
        .to_owned();
    for key in [
        shipped.as_str(),
        "please-replace-me-with-a-real-operator-key",
        &"a".repeat(40),
        &"ab".repeat(20),
        "aaaaaaaabbbbbbbbccccccccdddddddd",
        "changeme-changeme-changeme-changeme-x",
    ] {
        let serve = Command::new(BIN)
            .arg("serve")
            .env("ROSTER_LISTEN", "127.0.0.1:0")
            .env("ROSTER_DATABASE_URL", &db)
            .env("ROSTER_OPERATOR_KEY", key)
            .kill_on_drop(true)
            .output();
        // A server that accepts the key keeps running: that is the failure.
        let serve = tokio::time::timeout(Duration::from_secs(20), serve)
            .await
            .unwrap_or_else(|_| panic!("{key} was accepted"))
            .unwrap();
        assert!(!serve.status.success(), "{key} was accepted");
        let err = String::from_utf8_lossy(&serve.stderr);
        assert!(err.contains("operator_key"), "{key}: {err}");
        assert!(
            !err.contains(key),
            "the refusal must not print the key: {err}"
        );
    }
    // What the docs tell people to run (`openssl rand -base64 36`) starts.
    let mut p = start_with(
        &db,
        Some("q3J0x5c1VbXo9mJd0F2r0Lw8pQe7sTnYk6hGz4aBcD1eF2gH"),
    )
    .await;
    p.child.start_kill().unwrap();
    wait_exit(&mut p.child).await;
}

/// #17 item 2: with no `trusted_proxies`, a proxy in front makes every
/// client share its address. The server says so, once, when a request
/// arrives with `X-Forwarded-For` from an address it does not trust.
#[tokio::test]
async fn a_forwarded_request_from_an_untrusted_address_is_warned_about_once() {
    let (db, _dir) = fresh_database_url().await;
    let mut p = start(&db).await;
    let client = reqwest::Client::new();
    for _ in 0..2 {
        let res = client
            .get(format!("{}/healthz", p.base))
            .header("x-forwarded-for", "198.51.100.7")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        // A route that itself reads the client address, too.
        let res = client
            .post(format!(
                "{}/v1/accounts/{}/auth/login",
                p.base,
                uuid::Uuid::nil()
            ))
            .header("x-forwarded-for", "198.51.100.7")
            .json(&json!({ "username": "nobody", "password": "wrong password" }))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
    let warned = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(line) = p.log.recv().await {
            let v: Value = serde_json::from_str(&line).unwrap_or_default();
            if v["level"] == "WARN"
                && v["message"]
                    .as_str()
                    .unwrap_or("")
                    .contains("trusted_proxies")
            {
                return v;
            }
        }
        panic!("roster exited");
    })
    .await
    .expect("the warning within 10 s");
    assert_eq!(warned["peer"], "127.0.0.1", "{warned}");
    p.child.start_kill().unwrap();
    wait_exit(&mut p.child).await;
    let mut again = 0;
    while let Ok(line) = p.log.try_recv() {
        again += usize::from(line.contains("trusted_proxies"));
    }
    assert_eq!(again, 0, "said once");
}

/// #17 item 9: a typo in a key (`listn`) was silently ignored. Unknown keys
/// in the TOML file and unknown `ROSTER_*` variables are refused, naming
/// the key; the variables that are not configuration (`ROSTER_LOG`) pass.
#[tokio::test]
async fn unknown_configuration_keys_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("roster.toml");
    std::fs::write(&file, "listn = \"127.0.0.1:9999\"\n").unwrap();
    let run = |args: Vec<String>, env: Vec<(&'static str, &'static str)>| {
        let mut cmd = Command::new(BIN);
        cmd.args(args).envs(env).env("ROSTER_LOG", "warn");
        tokio::time::timeout(Duration::from_secs(20), cmd.output())
    };
    let file_arg = format!("--config={}", file.display());
    for (args, env, named) in [
        (
            vec!["print-config".into(), file_arg.clone()],
            vec![],
            "listn",
        ),
        (
            vec!["print-config".into()],
            vec![("ROSTER_LISTN", "127.0.0.1:1")],
            "LISTN",
        ),
        (
            vec!["serve".into()],
            vec![("ROSTER_SMTP_URLL", "smtp://x")],
            "SMTP_URLL",
        ),
        (
            vec!["check-config".into(), file_arg.clone()],
            vec![],
            "listn",
        ),
    ] {
        let out = run(args, env).await.expect("refused at once").unwrap();
        assert!(!out.status.success(), "{named} was accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(named) && err.contains("unknown"),
            "{named}: {err}"
        );
    }
    std::fs::write(&file, "listen = \"127.0.0.1:9999\"\n").unwrap();
    let out = run(vec!["print-config".into(), file_arg.clone()], vec![])
        .await
        .unwrap()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(printed.contains("listen = \"127.0.0.1:9999\""), "{printed}");
    // Every key shows: the unset ones as comments.
    for unset in ["# redis_url =", "# smtp_url =", "# metrics_listen ="] {
        assert!(printed.lines().any(|l| l == unset), "{unset}: {printed}");
    }
    // check-config: a good file passes; a bad value is named.
    let out = run(vec!["check-config".into(), file_arg.clone()], vec![])
        .await
        .unwrap()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("configuration is valid"));
    let out = run(
        vec!["check-config".into(), file_arg],
        vec![("ROSTER_SQLITE_SYNCHRONOUS", "sometimes")],
    )
    .await
    .unwrap()
    .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("sqlite_synchronous"));
}

/// #17 item 7: one JSON access log line per request at the default level:
/// method, matched route, status, latency in µs, request id, client
/// address — and never the query string, which may carry a token.
#[tokio::test]
async fn every_request_writes_one_access_log_line() {
    let (db, _dir) = fresh_database_url().await;
    let mut p = start(&db).await;
    let account = uuid::Uuid::nil();
    let res = reqwest::Client::new()
        .get(format!(
            "{}/v1/accounts/{account}/users?token=sekrit-in-the-query",
            p.base
        ))
        .bearer_auth("rk_not-a-key")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let id = res.headers()["x-request-id"].to_str().unwrap().to_owned();
    let line = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(line) = p.log.recv().await {
            let v: Value = serde_json::from_str(&line).unwrap_or_default();
            if v["target"] == "roster::access" {
                return (v, line);
            }
        }
        panic!("roster exited");
    })
    .await
    .expect("the access line within 10 s");
    let (v, raw) = line;
    assert_eq!(v["level"], "INFO", "{raw}");
    assert_eq!(v["method"], "GET", "{raw}");
    assert_eq!(v["route"], "/v1/accounts/{accountId}/users", "{raw}");
    assert_eq!(v["status"], 401, "{raw}");
    assert!(v["latency_us"].as_u64().is_some(), "{raw}");
    assert_eq!(v["request_id"], id.as_str(), "{raw}");
    assert_eq!(v["client"], "127.0.0.1", "{raw}");
    assert!(!raw.contains("sekrit") && !raw.contains("rk_not"), "{raw}");
    p.child.start_kill().unwrap();
    wait_exit(&mut p.child).await;
}

/// #17 item 11: the README's CollabKit flow, extracted from the README and
/// run by `bash` as a newcomer would paste it, against a fresh server on
/// its embedded default (the operator key it generated included).
#[tokio::test]
async fn the_readme_flow_runs_as_pasted() {
    let readme = include_str!("../../README.md");
    let flow = readme
        .split("## The CollabKit flow, end to end")
        .nth(1)
        .and_then(|rest| rest.split("```sh\n").nth(1))
        .and_then(|block| block.split("\n```").next())
        .expect("the README has the flow's shell block");
    let work = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}/roster-data/roster.db", work.path().display());
    let mut p = start_with(&db, None).await;
    let addr = p.base.trim_start_matches("http://").to_owned();
    let script = format!(
        "set -euo pipefail\n{}",
        flow.replace("localhost:8080", &addr)
    );
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        Command::new("bash")
            .arg("-c")
            .arg(&script)
            .current_dir(work.path())
            .output(),
    )
    .await
    .expect("the flow finishes within 60 s")
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Its last answer: Alice, read with her own token.
    let last: Value = serde_json::Deserializer::from_str(&stdout)
        .into_iter::<Value>()
        .last()
        .expect("the flow printed JSON")
        .unwrap();
    assert_eq!(last["success"], true, "{stdout}");
    assert_eq!(last["data"]["user"]["name"], "Alice", "{stdout}");
    assert_eq!(last["data"]["user"]["custom_id"], "alice-001", "{stdout}");
    assert!(
        stdout.contains("\"keys\""),
        "the JWKS was printed: {stdout}"
    );
    p.child.start_kill().unwrap();
    wait_exit(&mut p.child).await;
}

/// #17 item 8: request durations are Prometheus histograms (buckets add up
/// across nodes; summaries do not), beside the build, rate-limit refusals
/// by kind, and realtime joins, refusals and kicks. A process of its own,
/// so that the counts are this test's.
#[tokio::test]
async fn metrics_count_histograms_refusals_joins_and_kicks() {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let (db, _dir) = fresh_database_url().await;
    let env = [
        ("ROSTER_LOGIN_FAILURES_PER_NAME", "1"),
        ("ROSTER_REALTIME_CONNECTIONS_PER_USER", "1"),
    ];
    let p = start_env(&db, Some(OPERATOR_KEY), &env).await;
    let client = reqwest::Client::new();
    let (account, key) = create_account(&client, &p.base).await;
    let api = |path: &str| format!("{}/v1/accounts/{account}{path}", p.base);
    let room: Value = client
        .post(api("/rooms"))
        .bearer_auth(&key)
        .json(&json!({ "name": "Standup" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let room = room["data"]["room"]["id"].as_str().unwrap().to_owned();
    let user: Value = client
        .post(api("/users"))
        .bearer_auth(&key)
        .json(&json!({ "name": "Ann", "roomId": room }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let (user_id, token) = (
        user["data"]["user"]["id"].as_str().unwrap().to_owned(),
        user["data"]["token"].as_str().unwrap().to_owned(),
    );
    let ws_url = format!(
        "{}/v1/realtime?token={token}",
        p.base.replacen("http", "ws", 1)
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(&ws_url).await.unwrap();
    let join = json!({ "type": "join", "id": 1, "room_id": room }).to_string();
    ws.send(Message::Text(join.into())).await.unwrap();
    let deadline = Duration::from_secs(10);
    tokio::time::timeout(deadline, async {
        while let Some(Ok(m)) = ws.next().await {
            if m.to_text().unwrap_or("").contains("snapshot") {
                return;
            }
        }
        panic!("closed before the snapshot");
    })
    .await
    .expect("the join's snapshot");
    // A second socket of the user is refused (one allowed).
    match tokio_tungstenite::connect_async(&ws_url).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(res)) => assert_eq!(res.status(), 429),
        other => panic!("a second socket was let in: {other:?}"),
    }
    // Revoking the token kicks the socket.
    let res = client
        .delete(api(&format!("/users/{user_id}/tokens")))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "{}", res.status());
    tokio::time::timeout(deadline, async {
        while let Some(Ok(m)) = ws.next().await {
            if m.is_close() {
                return;
            }
        }
    })
    .await
    .expect("the kicked socket closes");
    // Two wrong logins for one name: the second is refused.
    for want in [401, 429] {
        let res = client
            .post(api("/auth/login"))
            .json(&json!({ "username": "nobody", "password": "not the password" }))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), want);
    }
    let text = client
        .get(format!("{}/metrics", p.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let value = |prefix: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {prefix} in\n{text}"))
    };
    assert!(
        text.lines().any(
            |l| l.starts_with("roster_http_request_duration_seconds_bucket{")
                && l.contains("le=\"0.005\"")
        ),
        "{text}"
    );
    assert!(
        !text.contains("roster_http_request_duration_seconds{quantile"),
        "{text}"
    );
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        value(&format!("roster_build_info{{version=\"{version}\"}}")),
        1.0
    );
    assert_eq!(value("roster_rate_limited_total{kind=\"login_name\"}"), 1.0);
    assert_eq!(value("roster_realtime_joins_total"), 1.0);
    assert_eq!(value("roster_realtime_refused_total{reason=\"user\"}"), 1.0);
    assert_eq!(value("roster_realtime_kicks_total"), 1.0);
}

/// #17 item 8: the store's gauges (the pool, the writes waiting, the mail
/// outbox) and the process's metrics, read at each scrape; with
/// `metrics_listen` set they are served there alone, and the main address
/// answers 404.
#[tokio::test]
async fn metrics_show_pool_queue_outbox_and_process_on_their_own_address() {
    let (db, _dir) = fresh_database_url().await;
    // Mail to an SMTP port nobody listens on stays pending (retried later).
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let smtp = format!("smtp://{}", closed.local_addr().unwrap());
    drop(closed);
    let env = [
        ("ROSTER_METRICS_LISTEN", "127.0.0.1:0"),
        ("ROSTER_SMTP_URL", smtp.as_str()),
    ];
    let p = start_env(&db, Some(OPERATOR_KEY), &env).await;
    let metrics_url = p
        .metrics
        .clone()
        .expect("the log names the metrics address");
    let client = reqwest::Client::new();
    let scrape = || async {
        let res = client.get(&metrics_url).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        res.text().await.unwrap()
    };
    let value = |text: &str, prefix: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {prefix} in\n{text}"))
    };
    let before = scrape().await;
    assert_eq!(value(&before, "roster_mail_outbox{state=\"pending\"}"), 0.0);
    let (account, key) = create_account(&client, &p.base).await;
    let res = client
        .post(format!("{}/v1/accounts/{account}/users", p.base))
        .bearer_auth(&key)
        .json(&json!({ "name": "Ann", "email": "ann@example.com", "send_welcome_email": true }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let text = scrape().await;
    assert!(
        value(&text, "roster_mail_outbox{state=\"pending\"}") >= 1.0,
        "{text}"
    );
    assert_eq!(value(&text, "roster_mail_outbox{state=\"failed\"}"), 0.0);
    let max = value(&text, "roster_db_pool_max_connections");
    let idle = value(&text, "roster_db_pool_connections{state=\"idle\"}");
    let in_use = value(&text, "roster_db_pool_connections{state=\"in_use\"}");
    assert!(max >= 1.0 && idle + in_use <= max, "{text}");
    // Present (its value races with the outbox's own writes).
    assert!(value(&text, "roster_db_writes_waiting") >= 0.0, "{text}");
    assert!(
        value(&text, "process_resident_memory_bytes") > 1e6,
        "{text}"
    );
    assert!(value(&text, "process_open_fds") >= 3.0, "{text}");
    assert!(value(&text, "process_cpu_seconds_total") > 0.0, "{text}");
    // The HTTP metrics are there too, on the metrics address alone.
    assert!(text.contains("roster_http_requests_total{"), "{text}");
    let res = client
        .get(format!("{}/metrics", p.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "NOT_FOUND", "{body}");
}
