//! `roster migrate-sqlite-to-postgres`: an embedded install filled through
//! the API moves into PostgreSQL with the real binary, and a server on
//! PostgreSQL then answers exactly as the SQLite one did — users, settings,
//! keys, tokens, invites, guest links and the JWKS. Needs PostgreSQL: runs
//! when `ROSTER_TEST_POSTGRES_URL` is set or `CI=true`.

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::process::Command;

use crate::helpers::{Account, OPERATOR_KEY, TestApp, fresh_postgres};
use crate::realtime::{connect, send, wait_for};

const BIN: &str = env!("CARGO_BIN_EXE_roster");

fn postgres_available() -> bool {
    if std::env::var_os("ROSTER_TEST_POSTGRES_URL").is_none()
        && std::env::var("CI").as_deref() != Ok("true")
    {
        eprintln!(
            "skipped: set ROSTER_TEST_POSTGRES_URL (or CI=true) to test the move to PostgreSQL"
        );
        return false;
    }
    true
}

/// A new SQLite install as an operator makes one: `roster accounts create`
/// on first start generates the operator key (into a file the log names).
/// Returns the operator key and the account.
async fn first_start(database_url: &str) -> (String, Account) {
    // On PostgreSQL the key file goes to the working directory: keep it
    // out of the checkout.
    let work = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["accounts", "create", "--name", "Acme"])
        .current_dir(work.path())
        .env("ROSTER_DATABASE_URL", database_url)
        .env("ROSTER_LOG", "warn")
        .env_remove("ROSTER_OPERATOR_KEY")
        .output()
        .await
        .expect("run roster accounts create");
    assert!(out.status.success(), "{out:?}");
    let created: Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    // The log names the file the generated key went to.
    let stderr = String::from_utf8_lossy(&out.stderr);
    let path = stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find_map(|v| v["path"].as_str().map(str::to_owned))
        .unwrap_or_else(|| panic!("no generated operator key in {stderr}"));
    let operator_key = std::fs::read_to_string(work.path().join(path))
        .unwrap()
        .trim()
        .to_owned();
    let account = Account {
        id: created["account"]["id"].as_str().unwrap().to_owned(),
        key: created["api_key"].as_str().unwrap().to_owned(),
    };
    (operator_key, account)
}

/// Runs the command; its exit status, its stdout as JSON (if it is) and its stderr.
async fn migrate(from: &str, to: &str) -> (bool, Value, String) {
    let out = Command::new(BIN)
        .args(["migrate-sqlite-to-postgres", "--from", from, "--to", to])
        .env("ROSTER_LOG", "warn")
        .env_remove("ROSTER_DATABASE_URL")
        .output()
        .await
        .expect("run roster migrate-sqlite-to-postgres");
    let stdout = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (
        out.status.success(),
        stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn id(body: &Value, what: &str) -> String {
    body["data"][what]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{body}"))
        .to_owned()
}

/// `data` of a GET that must succeed.
async fn read(t: &TestApp, path: &str, auth: &str) -> Value {
    let (status, body) = t.get(path, auth).await;
    assert_eq!(status, StatusCode::OK, "GET {path}: {body}");
    body["data"].clone()
}

/// Everything an account's API key can read, for comparing two servers.
async fn everything(
    t: &TestApp,
    a: &Account,
    operator_key: &str,
    users: &[String],
    space: &str,
    rooms: &[&str],
) -> Value {
    let mut each = Vec::new();
    for u in users {
        each.push(read(t, &a.path(&format!("/users/{u}")), &a.key).await);
    }
    let mut per_room = Vec::new();
    for r in rooms {
        per_room.push(json!({
            "room": read(t, &a.path(&format!("/rooms/{r}")), &a.key).await,
            "members": read(t, &a.path(&format!("/rooms/{r}/members")), &a.key).await,
            "links": read(t, &a.path(&format!("/rooms/{r}/access")), &a.key).await,
        }));
    }
    let mut keys = read(t, &a.path("/api-keys"), &a.key).await;
    // When a key was last used is bookkeeping written off the request path.
    for k in keys["api_keys"].as_array_mut().unwrap() {
        k.as_object_mut().unwrap().remove("last_used_at");
    }
    json!({
        "account": read(t, &format!("/v1/accounts/{}", a.id), operator_key).await,
        "users": read(t, &a.path("/users?limit=100"), &a.key).await,
        "each_user": each,
        "settings": read(t, &a.path("/settings"), &a.key).await,
        "roles": read(t, &a.path("/roles"), &a.key).await,
        "rooms": read(t, &a.path("/rooms?limit=100"), &a.key).await,
        "each_room": per_room,
        "spaces": read(t, &a.path("/spaces"), &a.key).await,
        "space_members": read(t, &a.path(&format!("/spaces/{space}/members")), &a.key).await,
        "invites": read(t, &a.path(&format!("/spaces/{space}/invites")), &a.key).await,
        "api_keys": keys,
    })
}

async fn jwks(t: &TestApp) -> Value {
    let res = t
        .client
        .get(format!("{}/.well-known/jwks.json", t.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    res.json().await.unwrap()
}

#[tokio::test]
async fn an_embedded_install_moves_to_postgres_with_nothing_lost() {
    if !postgres_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sqlite = format!("sqlite://{}/roster.db", dir.path().display());
    let (operator_key, a) = first_start(&sqlite).await;
    let source_url = sqlite.clone();
    let src = TestApp::spawn_with(move |c| {
        c.database_url = source_url;
        c.operator_key = None; // the generated key's stored hash
    })
    .await;

    // --- an install with something of everything ------------------------------
    let (status, body) = src
        .patch(
            &a.path("/settings"),
            &a.key,
            json!({ "custom_fields": {
                "team": { "type": "string", "required": false, "max_length": 40, "private": false },
                "level": { "type": "number", "private": true },
                "vip": { "type": "boolean" }
            }}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, role) = src
        .post(&a.path("/roles"), &a.key, json!({ "name": "Recruiter", "description": "hires", "permissions": ["create-user", "view-other-user-info"] }))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{role}");
    let role = id(&role, "role");
    let lobby = src
        .room(&a, json!({ "name": "Lobby", "is_default": true }))
        .await;
    let stage = src
        .room(&a, json!({ "name": "Stage", "visibility": "private" }))
        .await;
    let alice = src
        .user(
            &a,
            json!({
                "name": "Алиса 🧑‍💻",
                "roomId": stage,
                "profilePicture": "https://example.com/a.png",
                "customId": "alice-001",
                "link": "https://example.com/alice",
                "statusMessage": "shipping",
                "metadata": { "plan": "pro", "score": 1.5, "nested": { "n": [1, 2, 3] }, "@private": { "note": "vip" } },
                "tags": ["early", "beta"],
                "email": "Alice@Example.com",
                "password": "correct horse battery",
                "username": "alice",
                "nickname": "al",
                "bio": "builds things",
                "phone": "+14155552671",
                "verified": true,
                "requirePasswordChange": true,
                "roles": [role, "user"],
                "customFields": { "team": "core", "level": 3, "vip": true }
            }),
        )
        .await;
    let alice_id = alice["user"]["id"].as_str().unwrap().to_owned();
    let alice_token = alice["token"].as_str().unwrap().to_owned();
    let owner = src
        .user(&a, json!({ "name": "Owner", "username": "owner" }))
        .await;
    let owner_token = owner["token"].as_str().unwrap().to_owned();
    let bob = src
        .user(&a, json!({ "name": "Bob", "joinDefaultChannels": false }))
        .await;
    let bob_id = bob["user"]["id"].as_str().unwrap().to_owned();
    let bob_token = bob["token"].as_str().unwrap().to_owned();
    let carol = src
        .user(&a, json!({ "name": "Carol", "active": false }))
        .await;
    let carol_token = carol["token"].as_str().unwrap().to_owned();
    let (status, space) = src
        .post(
            &a.path("/spaces"),
            &owner_token,
            json!({ "name": "Broadcasts", "visibility": "private" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{space}");
    let space = id(&space, "space");
    let (status, invite) = src
        .post(
            &a.path(&format!("/spaces/{space}/invites")),
            &owner_token,
            json!({ "role": "role_space_moderator" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{invite}");
    let invite = id(&invite, "invite");
    let (status, access) = src
        .post(
            &a.path(&format!("/rooms/{stage}/access")),
            &a.key,
            json!({ "username": "Guest", "role": "user", "externalUserId": "ext-1", "isPermanent": true }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{access}");
    let guest_token = access["data"]["access_token"].as_str().unwrap().to_owned();
    let (status, read_key) = src
        .post(
            &a.path("/api-keys"),
            &a.key,
            json!({ "name": "reader", "scope": "read" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{read_key}");
    let read_key = read_key["data"]["api_key"].as_str().unwrap().to_owned();
    let (status, gone_key) = src
        .post(
            &a.path("/api-keys"),
            &a.key,
            json!({ "name": "old", "scope": "full" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{gone_key}");
    let gone_id = gone_key["data"]["key"]["id"].as_str().unwrap().to_owned();
    let gone_key = gone_key["data"]["api_key"].as_str().unwrap().to_owned();
    let (status, _) = src
        .delete(&a.path(&format!("/api-keys/{gone_id}")), &a.key)
        .await;
    assert_eq!(status, StatusCode::OK);

    let users: Vec<String> = read(&src, &a.path("/users?limit=100"), &a.key).await["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(users.len(), 4);
    let before = everything(&src, &a, &operator_key, &users, &space, &[&lobby, &stage]).await;
    let jwks_before = jwks(&src).await;
    // A deactivated user's token is refused before the move (and must be after).
    let (status, _) = src
        .get(&a.path(&format!("/users/{alice_id}")), &carol_token)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    drop(src);

    // --- the move ------------------------------------------------------------------------
    let pg = fresh_postgres().await;
    let (ok, report, stderr) = migrate(&sqlite, &pg).await;
    assert!(ok, "the move failed: {stderr}");
    assert_eq!(report["tables"]["accounts"], 1, "{report}");
    assert_eq!(report["tables"]["users"], 4, "{report}");
    assert_eq!(report["tables"]["rooms"], 2, "{report}");
    assert_eq!(report["tables"]["api_keys"], 3, "{report}");
    assert_eq!(report["tables"]["spaces"], 1, "{report}");
    assert_eq!(report["tables"]["invites"], 1, "{report}");
    assert_eq!(report["tables"]["access_links"], 1, "{report}");
    assert_eq!(report["tables"]["roles"], 1, "{report}");
    assert!(
        report["tables"]["signing_keys"].as_u64() >= Some(1),
        "{report}"
    );
    assert!(report["tables"]["tokens"].as_u64() >= Some(4), "{report}");
    assert!(
        report["tables"].get("_sqlx_migrations").is_none(),
        "{report}"
    );
    let sum: u64 = report["tables"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(report["rows"], sum, "{report}");

    // --- a server on PostgreSQL answers the same ---------------------------------
    let pg_url = pg.clone();
    let dst = TestApp::spawn_with(move |c| {
        c.database_url = pg_url;
        c.operator_key = None; // the operator key's hash came along
    })
    .await;
    assert_eq!(dst.app.store.backend(), "postgres");
    let after = everything(&dst, &a, &operator_key, &users, &space, &[&lobby, &stage]).await;
    assert_eq!(before, after);
    assert_eq!(jwks_before, jwks(&dst).await);

    // The operator key still opens the operator routes (and no other key does).
    let (status, accounts) = dst.get("/v1/accounts", &operator_key).await;
    assert_eq!(status, StatusCode::OK, "{accounts}");
    assert_eq!(accounts["data"]["accounts"][0]["id"], a.id.as_str());
    assert_eq!(
        dst.get("/v1/accounts", OPERATOR_KEY).await.0,
        StatusCode::UNAUTHORIZED
    );
    // API keys keep their scopes; the revoked one stays revoked.
    let (status, _) = dst.get(&a.path("/users"), &read_key).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = dst
        .post(&a.path("/rooms"), &read_key, json!({ "name": "No" }))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = dst.get(&a.path("/users"), &gone_key).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // A token issued on SQLite authenticates on PostgreSQL; a deactivated
    // user's does not.
    let (status, me) = dst
        .get(&a.path(&format!("/users/{alice_id}")), &alice_token)
        .await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["data"]["user"]["email"], "Alice@Example.com");
    let (status, _) = dst
        .get(&a.path(&format!("/users/{alice_id}")), &carol_token)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // The invite made on SQLite activates, once.
    let (status, m) = dst
        .post(
            &a.path(&format!("/spaces/{space}/invites/{invite}/activate")),
            &bob_token,
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{m}");
    assert_eq!(m["data"]["member"]["user_id"], bob_id.as_str());
    assert_eq!(m["data"]["member"]["role"], "moderator");
    let (status, _) = dst
        .post(
            &a.path(&format!("/spaces/{space}/invites/{invite}/activate")),
            &alice_token,
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::GONE);
    // The guest link's token still opens the realtime connection to its room.
    let mut ws = connect(&dst, &guest_token).await;
    send(&mut ws, json!({ "type": "join", "id": 1 })).await;
    assert_eq!(
        wait_for(&mut ws, "ack", |_| true).await["room_id"],
        stage.as_str()
    );
    // And the moved install takes new writes.
    let new = dst.user(&a, json!({ "name": "Dave" })).await;
    assert_eq!(new["user"]["status"], "offline");
    assert_eq!(dst.user_count(&a).await, 5);

    // --- a second run finds the target filled, and refuses ---------------------------
    let (ok, _, stderr) = migrate(&sqlite, &pg).await;
    assert!(!ok, "a filled target was accepted");
    assert!(stderr.contains("not empty"), "{stderr}");
    assert_eq!(dst.user_count(&a).await, 5);
}

#[tokio::test]
async fn a_target_that_already_holds_data_is_refused_and_left_alone() {
    if !postgres_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sqlite = format!("sqlite://{}/roster.db", dir.path().display());
    first_start(&sqlite).await;
    // A PostgreSQL install that has been used: one account on it already.
    let pg = fresh_postgres().await;
    let (operator_key, existing) = first_start(&pg).await;
    let (ok, report, stderr) = migrate(&sqlite, &pg).await;
    assert!(!ok, "the copy went ahead: {report}");
    assert_eq!(report, Value::Null, "nothing is reported on stdout");
    assert!(stderr.contains("not empty"), "{stderr}");
    assert!(stderr.contains("accounts"), "{stderr}");
    // What was there is untouched, and nothing was added.
    let pg_url = pg.clone();
    let dst = TestApp::spawn_with(move |c| {
        c.database_url = pg_url;
        c.operator_key = None;
    })
    .await;
    let (status, list) = dst.get(&existing.path("/users"), &existing.key).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let (status, accounts) = dst
        .get(&format!("/v1/accounts/{}", existing.id), &operator_key)
        .await;
    assert_eq!(status, StatusCode::OK, "{accounts}");
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&pg)
        .await
        .unwrap();
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM accounts")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(n, 1);
    // A source that is not a SQLite database at all is refused by name.
    let (ok, _, stderr) = migrate(
        &format!("sqlite://{}/missing.db", dir.path().display()),
        &pg,
    )
    .await;
    assert!(!ok);
    assert!(stderr.contains("no SQLite database"), "{stderr}");
}

/// #17 item 10: a copy while `roster serve` holds the SQLite file is
/// refused before the target is touched; once the server is stopped, the
/// copy takes its source from the configuration and its target from
/// `ROSTER_MIGRATE_TO` (no URL with a password on the command line), and
/// at a terminal it draws a progress bar per table.
#[tokio::test]
async fn a_served_file_is_refused_and_the_copy_reads_its_urls_from_the_environment() {
    if !postgres_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sqlite = format!("sqlite://{}/roster.db", dir.path().display());
    let (operator_key, a) = first_start(&sqlite).await;
    let pg = fresh_postgres().await;
    let mut server = crate::process::start_env(&sqlite, Some(&operator_key), &[]).await;
    let (ok, report, stderr) = migrate(&sqlite, &pg).await;
    assert!(!ok, "copied a file being served: {report}");
    assert!(
        stderr.contains("in use by a running Roster server"),
        "{stderr}"
    );
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&pg)
        .await
        .unwrap();
    let tables: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(tables, 0, "the target was touched");
    server.child.kill().await.unwrap();

    // At a terminal (`script` gives the command a pseudo-terminal), with
    // both URLs from the environment.
    let out = Command::new("script")
        .args([
            "-qec",
            &format!("{BIN} migrate-sqlite-to-postgres"),
            "/dev/null",
        ])
        .env("ROSTER_DATABASE_URL", &sqlite)
        .env("ROSTER_MIGRATE_TO", &pg)
        .env("ROSTER_LOG", "warn")
        .env_remove("ROSTER_OPERATOR_KEY")
        .output()
        .await
        .expect("run script");
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{shown}");
    assert!(
        shown.contains("accounts") && shown.contains("1/1 rows"),
        "{shown}"
    );
    assert!(shown.contains("/s") && shown.contains("ETA"), "{shown}");
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM accounts WHERE id = $1")
        .bind(uuid::Uuid::parse_str(&a.id).unwrap())
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(n, 1);
}

/// `notes` as read back: id, `at` as text, done, doc, score, n, raw, price,
/// labels, gone.
type NoteRow = (
    uuid::Uuid,
    String,
    bool,
    Value,
    f64,
    i32,
    Vec<u8>,
    String,
    Vec<String>,
    Option<time::OffsetDateTime>,
);

#[tokio::test]
async fn tables_added_later_come_along_with_their_types() {
    if !postgres_available() {
        return;
    }
    use sqlx::Connection;
    let dir = tempfile::tempdir().unwrap();
    let sqlite = format!("sqlite://{}/roster.db", dir.path().display());
    let (_, a) = first_start(&sqlite).await;
    // A table a later migration might add, in each backend's flavour, with
    // a foreign key to a table the command already knows.
    let note = uuid::Uuid::now_v7();
    let blob = vec![0u8, 159, 146, 150, 255];
    {
        let mut lite = sqlx::SqliteConnection::connect(&sqlite).await.unwrap();
        sqlx::query(
            "CREATE TABLE notes (id BLOB PRIMARY KEY, account_id BLOB NOT NULL REFERENCES accounts(id), \
             at TEXT NOT NULL, done INTEGER NOT NULL, doc TEXT NOT NULL, score REAL, n INTEGER, \
             raw BLOB, price TEXT, labels TEXT, gone TEXT)",
        )
        .execute(&mut lite)
        .await
        .unwrap();
        sqlx::query("INSERT INTO notes VALUES (?, ?, ?, 1, ?, 2.5, 7, ?, '12.50', '{a,b}', NULL)")
            .bind(note)
            .bind(uuid::Uuid::parse_str(&a.id).unwrap())
            .bind("2026-05-29T10:05:00.123Z")
            .bind(r#"{"k":[1,2,{"x":null}],"s":"ünï"}"#)
            .bind(&blob)
            .execute(&mut lite)
            .await
            .unwrap();
    }
    let pg = fresh_postgres().await;
    let mut conn = sqlx::PgConnection::connect(&pg).await.unwrap();
    // The command migrates first; a table made beforehand stands in for the
    // later migration.
    roster::store::postgres::migrator()
        .run(&mut conn)
        .await
        .unwrap();
    sqlx::query(
        "CREATE TABLE notes (id UUID PRIMARY KEY, account_id UUID NOT NULL REFERENCES accounts(id), \
         at TIMESTAMPTZ NOT NULL, done BOOLEAN NOT NULL, doc JSONB NOT NULL, score DOUBLE PRECISION, \
         n SERIAL, raw BYTEA, price NUMERIC(10,2), labels TEXT[], gone TIMESTAMPTZ, \
         seq BIGSERIAL)",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let (ok, report, stderr) = migrate(&sqlite, &pg).await;
    assert!(ok, "{stderr}");
    assert_eq!(report["tables"]["notes"], 1, "{report}");
    let order: Vec<&str> = report["order"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let pos = |t: &str| order.iter().position(|o| *o == t).unwrap();
    assert!(pos("accounts") < pos("notes"), "{order:?}");
    let row: NoteRow = sqlx::query_as(
        "SELECT id, to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), done, doc, \
         score, n, raw, price::text, labels, gone FROM notes",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(row.0, note);
    assert_eq!(row.1, "2026-05-29T10:05:00.123Z");
    assert!(row.2);
    assert_eq!(row.3, json!({ "k": [1, 2, { "x": null }], "s": "ünï" }));
    assert_eq!(row.4, 2.5);
    assert_eq!(row.5, 7);
    assert_eq!(row.6, blob);
    assert_eq!(row.7, "12.50");
    assert_eq!(row.8, vec!["a".to_owned(), "b".to_owned()]);
    assert_eq!(row.9, None);
    // A serial column SQLite does not have is filled by PostgreSQL.
    let seq: i64 = sqlx::query_scalar("SELECT seq FROM notes")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(seq, 1);
    // A serial column that was copied continues after the copied values.
    let n: i32 = sqlx::query_scalar(
        "INSERT INTO notes (id, account_id, at, done, doc) \
         SELECT $1, account_id, now(), false, '{}' FROM notes RETURNING n",
    )
    .bind(uuid::Uuid::now_v7())
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(n, 8);
}
