//! Fresh, isolated backends for each test, and small builders for the rows
//! the contract tests write.

use std::io::Write;
use std::sync::{Arc, Once};

use roster::domain::account::{Account, Scope};
use roster::domain::event::Change;
use roster::domain::room::{NewRoom, Room, Visibility};
use roster::domain::user::{NewUser, User, UserFilter};
use roster::store::postgres::PostgresStore;
use roster::store::sqlite::SqliteStore;
use roster::store::{NewApiKey, Page, Store, TokenRecord};
use serde_json::{Map, Value};
use sqlx::Connection;
use time::{Duration, OffsetDateTime, macros::datetime};
use uuid::Uuid;

const POSTGRES_URL_VAR: &str = "ROSTER_TEST_POSTGRES_URL";

/// One backend under test. Dropping it removes what it created.
pub struct Backend {
    // Fields drop in order: the store (and its connections) first.
    store: Arc<dyn Store>,
    _dir: Option<tempfile::TempDir>,
    _database: Option<TestDatabase>,
}

impl Backend {
    pub fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }

    /// SQLite on a new file in a temporary directory.
    pub async fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let url = format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("roster.db").display()
        );
        let store = SqliteStore::open(&url, false).await.expect("open SQLite");
        Self {
            store: Arc::new(store),
            _dir: Some(dir),
            _database: None,
        }
    }

    /// PostgreSQL on a new database of the server named by
    /// `ROSTER_TEST_POSTGRES_URL`; `None` (the test is skipped) when it is
    /// unset, except in CI, where a skip would hide a backend from the suite.
    pub async fn postgres() -> Option<Self> {
        let database = TestDatabase::new().await?;
        let store = PostgresStore::open(&database.url)
            .await
            .expect("open PostgreSQL");
        Some(Self {
            store: Arc::new(store),
            _dir: None,
            _database: Some(database),
        })
    }
}

/// A database of its own for one test, dropped (best effort) with this
/// value, whether the test passed or panicked.
pub struct TestDatabase {
    server_url: String,
    name: String,
    /// The URL of this database.
    pub url: String,
}

impl TestDatabase {
    /// A new empty database on the server of `ROSTER_TEST_POSTGRES_URL`;
    /// `None` when it is unset (a failure when `CI=true`).
    pub async fn new() -> Option<Self> {
        let server_url = match std::env::var(POSTGRES_URL_VAR) {
            Ok(url) if !url.trim().is_empty() => url,
            _ => {
                if std::env::var("CI").is_ok_and(|v| v == "true") {
                    panic!(
                        "{POSTGRES_URL_VAR} is not set but CI=true: the PostgreSQL contract tests \
                         must run in CI (set it to e.g. postgres://postgres@127.0.0.1:5432/test)"
                    );
                }
                note_postgres_skipped();
                return None;
            }
        };
        let name = format!("roster_t_{}", Uuid::new_v4().simple());
        let mut url = url::Url::parse(&server_url).expect("ROSTER_TEST_POSTGRES_URL is a URL");
        url.set_path(&name);
        let mut admin = sqlx::PgConnection::connect(&server_url)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to {POSTGRES_URL_VAR}: {e}"));
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .expect("create a test database");
        let _ = admin.close().await;
        Some(Self {
            server_url,
            name,
            url: url.into(),
        })
    }
}
impl Drop for TestDatabase {
    fn drop(&mut self) {
        let (url, name) = (self.server_url.clone(), self.name.clone());
        // Drop runs inside the test's runtime, which cannot be blocked on:
        // use a thread and a runtime of our own.
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let mut admin = sqlx::PgConnection::connect(&url).await.ok()?;
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .execute(&mut admin)
                .await
                .ok()?;
                admin.close().await.ok()
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(()))) {
            eprintln!(
                "note: could not drop test database {}; drop it by hand",
                self.name
            );
        }
    }
}

/// Says once per run, past the test harness's output capture, that the
/// PostgreSQL variants did not run.
fn note_postgres_skipped() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = writeln!(
            std::io::stderr(),
            "\nnote: {POSTGRES_URL_VAR} is not set: the PostgreSQL tests (postgres::*, nodes::*) \
             were SKIPPED and pass without running.\n      Set it, e.g. \
             {POSTGRES_URL_VAR}=postgres://postgres@127.0.0.1:5432/test, to run them.\n"
        );
    });
    eprintln!("skipped: {POSTGRES_URL_VAR} is not set");
}

/// A whole-second instant, as a JWT's `iat` is.
pub fn t0() -> OffsetDateTime {
    datetime!(2030-01-02 03:04:05 UTC)
}

/// [`t0`] plus `ms` milliseconds.
pub fn at(ms: i64) -> OffsetDateTime {
    t0() + Duration::milliseconds(ms)
}

/// A change made at `at` by the server itself.
pub fn by(at: OffsetDateTime) -> Change {
    Change::system(at)
}

pub fn first_page(limit: u32) -> Page {
    Page { limit, after: None }
}

pub fn new_key(name: &str, created_at: OffsetDateTime) -> NewApiKey {
    NewApiKey {
        id: Uuid::now_v7(),
        name: name.to_owned(),
        scope: Scope::Full,
        secret_hash: Uuid::new_v4().as_bytes().to_vec(),
        created_at,
    }
}

/// A new account with one API key; its id.
pub async fn new_account(s: &dyn Store) -> Uuid {
    let account = Account {
        id: Uuid::now_v7(),
        name: "Acme".into(),
        created_at: at(1),
    };
    s.create_account(&account, &new_key("first", at(1)), &by(at(0)))
        .await
        .expect("create an account");
    account.id
}

/// A user with nothing but the defaults: role `user`, active, no rooms.
pub fn new_user() -> NewUser {
    NewUser {
        id: Uuid::now_v7(),
        room_id: None,
        custom_id: None,
        username: None,
        name: None,
        nickname: None,
        bio: None,
        email: None,
        email_verified: false,
        phone: None,
        profile_picture: None,
        link: None,
        status_message: None,
        active: true,
        roles: vec!["user".into()],
        metadata: Map::new(),
        tags: Vec::new(),
        custom_fields: Map::new(),
        require_password_change: false,
        password_hash: None,
        join_default_rooms: false,
    }
}

/// The record of a user token issued at `issued`, good for 90 days.
pub fn token_for(user: &NewUser, issued: OffsetDateTime) -> TokenRecord {
    TokenRecord {
        id: Uuid::now_v7(),
        user_id: user.id,
        kind: "user",
        room_id: user.room_id,
        created_at: issued,
        expires_at: issued + Duration::days(90),
    }
}

/// Creates `user` at [`at`]`(10)` with a fresh token.
pub async fn create(s: &dyn Store, account: Uuid, user: &NewUser) -> roster::store::Result<User> {
    s.create_user(account, user, &token_for(user, at(10)), &by(at(10)))
        .await
}

pub async fn new_room(s: &dyn Store, account: Uuid, name: &str, is_default: bool) -> Room {
    let room = NewRoom {
        name: name.to_owned(),
        visibility: Visibility::Public,
        is_default,
        space_id: None,
        created_by: None,
    };
    s.create_room(account, Uuid::now_v7(), &room, &by(at(5)))
        .await
        .expect("create a room")
}

/// Ids of every user matching `filter`, walking pages of two.
pub async fn user_ids(s: &dyn Store, account: Uuid, filter: &UserFilter) -> Vec<Uuid> {
    let mut ids = Vec::new();
    let mut after = None;
    loop {
        let page = s
            .list_users(account, filter, Page { limit: 2, after })
            .await
            .expect("list users");
        assert!(page.items.len() <= 2);
        ids.extend(page.items.iter().map(|u| u.id));
        match page.next {
            Some(next) => {
                assert_eq!(Some(&next), ids.last(), "next is the last id of the page");
                after = Some(next);
            }
            None => return ids,
        }
    }
}

/// `ids` in the order the store lists them (by id).
pub fn sorted(mut ids: Vec<Uuid>) -> Vec<Uuid> {
    ids.sort();
    ids
}

pub fn object(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        other => panic!("not a JSON object: {other}"),
    }
}

#[track_caller]
pub fn assert_not_found<T: std::fmt::Debug>(r: roster::store::Result<T>, what: &str) {
    match r {
        Err(roster::store::StoreError::NotFound(w)) => assert_eq!(w, what),
        other => panic!("expected NotFound({what:?}), got {other:?}"),
    }
}

#[track_caller]
pub fn assert_conflict<T: std::fmt::Debug>(r: roster::store::Result<T>, field: &str) {
    match r {
        Err(roster::store::StoreError::Conflict { field: f, .. }) => assert_eq!(f, field),
        other => panic!("expected Conflict on {field:?}, got {other:?}"),
    }
}
