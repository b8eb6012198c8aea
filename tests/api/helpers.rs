//! `TestApp`: a real Roster server on port 0, on a fresh SQLite file or (with
//! `ROSTER_TEST_BACKEND=postgres`) a fresh PostgreSQL database, plus typed
//! helpers to drive it over HTTP.

use reqwest::{Method, StatusCode};
use roster::app::App;
use roster::config::Config;
use roster::server::Server;
use serde_json::{Value, json};
use tokio::sync::oneshot;

pub const OPERATOR_KEY: &str = "test-operator-key-0123456789-abcdefghij";

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub app: App,
    _dir: Option<tempfile::TempDir>,
    _stop: oneshot::Sender<()>,
}

/// A fresh, empty database URL for the backend the environment selects.
pub async fn fresh_database_url() -> (String, Option<tempfile::TempDir>) {
    match std::env::var("ROSTER_TEST_BACKEND").as_deref() {
        Ok("postgres") => (fresh_postgres().await, None),
        _ => {
            let dir = tempfile::tempdir().expect("temp dir");
            let url = format!("sqlite://{}/roster.db", dir.path().display());
            (url, Some(dir))
        }
    }
}

/// Creates a new PostgreSQL database beside `ROSTER_TEST_POSTGRES_URL`.
pub async fn fresh_postgres() -> String {
    use sqlx::Connection;
    let base = std::env::var("ROSTER_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let name = format!("roster_t_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::PgConnection::connect(&base)
        .await
        .expect("connect to PostgreSQL");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .expect("create test database");
    let mut url = url::Url::parse(&base).expect("postgres url");
    url.set_path(&name);
    url.to_string()
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    pub async fn spawn_with(tune: impl FnOnce(&mut Config)) -> Self {
        let (database_url, dir) = fresh_database_url().await;
        Self::spawn_on(database_url, dir, tune).await
    }

    /// A server on a given database (several may share one: nodes).
    pub async fn spawn_on(
        database_url: String,
        dir: Option<tempfile::TempDir>,
        tune: impl FnOnce(&mut Config),
    ) -> Self {
        let mut config = Config {
            listen: "127.0.0.1:0".into(),
            database_url,
            operator_key: Some(OPERATOR_KEY.into()),
            ..Config::default()
        };
        tune(&mut config);
        let (app, _) = App::open(config).await.expect("open app");
        let server = Server::bind(app.clone()).await.expect("bind");
        let base = format!("http://{}", server.local_addr());
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(server.run(async move {
            let _ = stopped.await;
        }));
        Self {
            base,
            client: reqwest::Client::new(),
            app,
            _dir: dir,
            _stop: stop,
        }
    }

    /// Sends `body` (JSON) with `auth` as a bearer credential.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        auth: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .client
            .request(method, format!("{}{}", self.base, path));
        if let Some(a) = auth {
            req = req.bearer_auth(a);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.expect("request");
        let status = res.status();
        let text = res.text().await.expect("body");
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, value)
    }

    pub async fn get(&self, path: &str, auth: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, Some(auth), None).await
    }

    pub async fn post(&self, path: &str, auth: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, Some(auth), Some(body)).await
    }

    pub async fn patch(&self, path: &str, auth: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::PATCH, path, Some(auth), Some(body)).await
    }

    pub async fn delete(&self, path: &str, auth: &str) -> (StatusCode, Value) {
        self.call(Method::DELETE, path, Some(auth), None).await
    }

    /// A new account and its full API key.
    pub async fn account(&self, name: &str) -> Account {
        let (status, body) = self
            .post("/v1/accounts", OPERATOR_KEY, json!({ "name": name }))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        Account {
            id: body["data"]["account"]["id"].as_str().unwrap().to_owned(),
            key: body["data"]["api_key"].as_str().unwrap().to_owned(),
        }
    }

    /// A new `read` API key of the account (its secret).
    pub async fn read_key(&self, account: &Account) -> String {
        let (status, res) = self
            .post(
                &account.path("/api-keys"),
                &account.key,
                json!({ "name": "read", "scope": "read" }),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{res}");
        res["data"]["api_key"].as_str().unwrap().to_owned()
    }

    pub async fn room(&self, account: &Account, body: Value) -> String {
        let (status, res) = self.post(&account.path("/rooms"), &account.key, body).await;
        assert_eq!(status, StatusCode::CREATED, "{res}");
        res["data"]["room"]["id"].as_str().unwrap().to_owned()
    }

    /// Creates a user; returns the whole `data` (`user`, `token`).
    pub async fn user(&self, account: &Account, body: Value) -> Value {
        let (status, res) = self.post(&account.path("/users"), &account.key, body).await;
        assert_eq!(status, StatusCode::CREATED, "{res}");
        res["data"].clone()
    }

    /// How many users the account has (walking every page).
    pub async fn user_count(&self, account: &Account) -> usize {
        let mut n = 0;
        let mut cursor: Option<String> = None;
        loop {
            let path = match &cursor {
                Some(c) => account.path(&format!("/users?limit=100&cursor={c}")),
                None => account.path("/users?limit=100"),
            };
            let (status, body) = self.get(&path, &account.key).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            n += body["data"]["users"].as_array().unwrap().len();
            match body["data"]["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => return n,
            }
        }
    }
}

#[derive(Clone, Debug)]
pub struct Account {
    pub id: String,
    pub key: String,
}

impl Account {
    pub fn path(&self, rest: &str) -> String {
        format!("/v1/accounts/{}{}", self.id, rest)
    }
}

/// Asserts the error envelope: status, code and (if given) field.
#[track_caller]
pub fn assert_error(
    got: &(StatusCode, Value),
    status: StatusCode,
    code: &str,
    field: Option<&str>,
) {
    let (s, body) = got;
    assert_eq!(*s, status, "{body}");
    assert_eq!(body["type"], "response", "{body}");
    assert_eq!(body["success"], false, "{body}");
    assert_eq!(body["data"], Value::Null, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(
        body["request_id"].as_str().is_some_and(|s| !s.is_empty()),
        "{body}"
    );
    if let Some(f) = field {
        assert_eq!(body["error"]["field"], f, "{body}");
    }
}
