//! #15 fault scenario: one node's clock skewed, on loopback and bounded in
//! time. Node A runs on the true clock; node B is `roster serve` under
//! libfaketime (`FAKETIME=+2h`, `-2h`, or seconds within the 30 s leeway),
//! both on one database. On PostgreSQL they run at once; SQLite has one
//! writing process, so there the two take turns on the file (the other is
//! stopped first): the same two clocks meeting the same rows.
//!
//! The time source (docs/reliability.md): a token is checked against the
//! clock of the node that checks it, with 30 s of leeway; an invite's or a
//! guest link's end is fixed by the clock of the node that makes it and
//! compared with the clock of the node that checks it. Revocation is a row
//! in the database, whoever's clock is wrong.

use std::time::{Duration, Instant};

use base64::Engine;
use futures::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{OPERATOR_KEY, fresh_database_url};
use crate::process::{Proc, start_env, wait_exit};

const LIBFAKETIME: &[&str] = &[
    "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/faketime/libfaketime.so.1",
    "/usr/local/lib/faketime/libfaketime.so.1",
];

const PASSWORD: &str = "correct horse battery";

/// libfaketime, or `None` (saying so) where it is not installed; CI
/// installs it (`.ci/run`), so there a missing one fails.
fn libfaketime() -> Option<&'static str> {
    let found = LIBFAKETIME
        .iter()
        .copied()
        .find(|p| std::path::Path::new(p).exists());
    if found.is_none() {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "libfaketime is missing: .ci/run installs the faketime package"
        );
        eprintln!(
            "skipped: install faketime (apt-get install faketime) to run the clock-skew tests"
        );
    }
    found
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Node {
    /// The true clock.
    A,
    /// The skewed one.
    B,
}

/// Two nodes on one fresh database; B's clock shifted by `skew`.
struct Nodes {
    db: String,
    lib: &'static str,
    skew: &'static str,
    /// Both may run at once (PostgreSQL), or they take turns (SQLite).
    together: bool,
    a: Option<Proc>,
    b: Option<Proc>,
    http: reqwest::Client,
    _dir: Option<tempfile::TempDir>,
}

impl Nodes {
    async fn new(skew: &'static str) -> Option<Self> {
        let lib = libfaketime()?;
        let (db, dir) = fresh_database_url().await;
        Some(Self {
            together: !db.starts_with("sqlite:"),
            db,
            lib,
            skew,
            a: None,
            b: None,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(20))
                .build()
                .unwrap(),
            _dir: dir,
        })
    }

    /// The base URL of `node`, starting it (and, on SQLite, stopping the
    /// other one first) when it is not running.
    async fn base(&mut self, node: Node) -> String {
        let (mine, other) = match node {
            Node::A => (&mut self.a, &mut self.b),
            Node::B => (&mut self.b, &mut self.a),
        };
        if mine.is_none() {
            if !self.together
                && let Some(mut p) = other.take()
            {
                p.child.start_kill().unwrap();
                wait_exit(&mut p.child).await;
            }
            let env: &[(&str, &str)] = match node {
                Node::A => &[],
                Node::B => &[
                    ("LD_PRELOAD", self.lib),
                    ("FAKETIME", self.skew),
                    // tokio's timers keep the true monotonic clock.
                    ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
                ],
            };
            *mine = Some(start_env(&self.db, Some(OPERATOR_KEY), env).await);
        }
        mine.as_ref().unwrap().base.clone()
    }

    async fn call(
        &mut self,
        node: Node,
        method: Method,
        path: &str,
        auth: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let base = self.base(node).await;
        let mut req = self.http.request(method, format!("{base}{path}"));
        if let Some(a) = auth {
            req = req.bearer_auth(a);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.expect("request");
        let status = res.status();
        let text = res.text().await.expect("body");
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn get(&mut self, node: Node, path: &str, auth: &str) -> StatusCode {
        self.call(node, Method::GET, path, Some(auth), None).await.0
    }

    async fn post(&mut self, node: Node, path: &str, auth: &str, body: Value) -> Value {
        let (status, b) = self
            .call(node, Method::POST, path, Some(auth), Some(body))
            .await;
        assert!(status.is_success(), "{node:?} {path}: {status} {b}");
        b["data"].clone()
    }

    /// A new account (its id and API key).
    async fn account(&mut self, node: Node) -> (String, String) {
        let d = self
            .post(
                node,
                "/v1/accounts",
                OPERATOR_KEY,
                json!({ "name": "acme" }),
            )
            .await;
        (
            d["account"]["id"].as_str().unwrap().to_owned(),
            d["api_key"].as_str().unwrap().to_owned(),
        )
    }

    /// Whether `node` accepts the realtime upgrade (and its welcome) for `token`.
    async fn upgrades(&mut self, node: Node, token: &str) -> bool {
        let ws = self.base(node).await.replacen("http://", "ws://", 1);
        let url = format!("{ws}/v1/realtime?token={token}");
        let attempt = async {
            let Ok((mut ws, _)) = tokio_tungstenite::connect_async(url).await else {
                return false;
            };
            while let Some(Ok(m)) = ws.next().await {
                if let Ok(text) = m.to_text()
                    && let Ok(v) = serde_json::from_str::<Value>(text)
                {
                    return v["type"] == "welcome";
                }
            }
            false
        };
        tokio::time::timeout(Duration::from_secs(20), attempt)
            .await
            .expect("the upgrade answered within 20 s")
    }
}

/// One account's paths and a user in it who can log in.
struct Tenant {
    id: String,
    key: String,
    user: String,
}

impl Tenant {
    async fn new(n: &mut Nodes, on: Node) -> Self {
        let (id, key) = n.account(on).await;
        let mut t = Self {
            id,
            key,
            user: String::new(),
        };
        let d = n
            .post(
                on,
                &t.path("/users"),
                &t.key,
                json!({ "name": "Alice", "username": "alice", "password": PASSWORD }),
            )
            .await;
        t.user = d["user"]["id"].as_str().unwrap().to_owned();
        t
    }

    fn path(&self, rest: &str) -> String {
        format!("/v1/accounts/{}{rest}", self.id)
    }

    fn me(&self) -> String {
        self.path(&format!("/users/{}", self.user))
    }

    /// A 90-day `user` token issued by `on`.
    async fn user_token(&self, n: &mut Nodes, on: Node) -> String {
        let d = n
            .post(on, &format!("{}/tokens", self.me()), &self.key, json!({}))
            .await;
        d["token"].as_str().unwrap().to_owned()
    }

    /// A 15-minute `access` token from a login on `on`.
    async fn access_token(&self, n: &mut Nodes, on: Node) -> String {
        let (status, b) = n
            .call(
                on,
                Method::POST,
                &self.path("/auth/login"),
                None,
                Some(json!({ "username": "alice", "password": PASSWORD })),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{b}");
        b["data"]["access_token"].as_str().unwrap().to_owned()
    }

    /// Whether `on` lets `token` read the user.
    async fn works(&self, n: &mut Nodes, on: Node, token: &str) -> bool {
        let status = n.get(on, &self.me(), token).await;
        assert!(
            matches!(status, StatusCode::OK | StatusCode::UNAUTHORIZED),
            "{status}"
        );
        status == StatusCode::OK
    }

    async fn revoke(&self, n: &mut Nodes, on: Node, token: &str) {
        let path = format!("{}/tokens/{}", self.me(), jti(token));
        let (status, b) = n
            .call(on, Method::DELETE, &path, Some(&self.key), None)
            .await;
        assert_eq!(status, StatusCode::OK, "{b}");
    }

    /// A space's invite living `ttl` seconds, made on `on`; (space, invite).
    async fn invite(&self, n: &mut Nodes, on: Node, ttl: i64) -> (String, String) {
        let d = n
            .post(
                on,
                &self.path("/spaces"),
                &self.key,
                json!({ "name": "S", "visibility": "private" }),
            )
            .await;
        let space = d["space"]["id"].as_str().unwrap().to_owned();
        let d = n
            .post(
                on,
                &self.path(&format!("/spaces/{space}/invites")),
                &self.key,
                json!({ "role": "user", "ttl": ttl }),
            )
            .await;
        (space, d["invite"]["id"].as_str().unwrap().to_owned())
    }

    /// Activates the invite on `on` with a fresh invitee's own token from
    /// `on`: `OK`, or `GONE` when it has ended.
    async fn activate(
        &self,
        n: &mut Nodes,
        on: Node,
        (space, invite): &(String, String),
    ) -> StatusCode {
        let d = n
            .post(
                on,
                &self.path("/users"),
                &self.key,
                json!({ "name": "Invitee" }),
            )
            .await;
        let token = d["token"].as_str().unwrap().to_owned();
        let path = self.path(&format!("/spaces/{space}/invites/{invite}/activate"));
        let (status, b) = n
            .call(on, Method::POST, &path, Some(&token), Some(json!({})))
            .await;
        assert!(
            matches!(status, StatusCode::OK | StatusCode::GONE),
            "{status} {b}"
        );
        status
    }

    /// A reusable guest link to a new room living `ttl` seconds, made on
    /// `on`; its guest token.
    async fn guest_link(&self, n: &mut Nodes, on: Node, ttl: i64) -> String {
        let d = n
            .post(on, &self.path("/rooms"), &self.key, json!({ "name": "R" }))
            .await;
        let room = d["room"]["id"].as_str().unwrap().to_owned();
        let d = n
            .post(
                on,
                &self.path(&format!("/rooms/{room}/access")),
                &self.key,
                json!({ "username": "Guest", "role": "user", "ttl": ttl, "isPermanent": true }),
            )
            .await;
        d["access_token"].as_str().unwrap().to_owned()
    }
}

/// The `jti` of a JWT (its record's id).
fn jti(token: &str) -> String {
    let payload = token.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    let claims: Value = serde_json::from_slice(&bytes).unwrap();
    claims["jti"].as_str().unwrap().to_owned()
}

/// Within the 30 s leeway (B 20 s ahead, then 20 s behind) every kind of
/// credential made on one node works on the other: user and access tokens
/// both ways, an invite, a guest link.
#[tokio::test]
async fn within_the_leeway_everything_works_across_nodes() {
    for skew in ["+20", "-20"] {
        let started = Instant::now();
        let Some(mut n) = Nodes::new(skew).await else {
            return;
        };
        let t = Tenant::new(&mut n, Node::A).await;
        let user_a = t.user_token(&mut n, Node::A).await;
        let access_a = t.access_token(&mut n, Node::A).await;
        let invite_a = t.invite(&mut n, Node::A, 3600).await;
        let guest_a = t.guest_link(&mut n, Node::A, 3600).await;
        let user_b = t.user_token(&mut n, Node::B).await;
        let access_b = t.access_token(&mut n, Node::B).await;
        let invite_b = t.invite(&mut n, Node::B, 3600).await;
        let guest_b = t.guest_link(&mut n, Node::B, 3600).await;
        assert!(
            t.works(&mut n, Node::B, &user_a).await,
            "{skew}: A's user token on B"
        );
        assert!(
            t.works(&mut n, Node::B, &access_a).await,
            "{skew}: A's access token on B"
        );
        assert_eq!(
            t.activate(&mut n, Node::B, &invite_a).await,
            StatusCode::OK,
            "{skew}"
        );
        assert!(
            n.upgrades(Node::B, &guest_a).await,
            "{skew}: A's guest link on B"
        );
        assert!(
            t.works(&mut n, Node::A, &user_b).await,
            "{skew}: B's user token on A"
        );
        assert!(
            t.works(&mut n, Node::A, &access_b).await,
            "{skew}: B's access token on A"
        );
        assert_eq!(
            t.activate(&mut n, Node::A, &invite_b).await,
            StatusCode::OK,
            "{skew}"
        );
        assert!(
            n.upgrades(Node::A, &guest_b).await,
            "{skew}: B's guest link on A"
        );
        eprintln!(
            "skew {skew}: all worked across nodes in {:?}",
            started.elapsed()
        );
    }
}

/// Two hours of skew, either way. A token is accepted only where the
/// checking node's clock falls within `iat` − 30 s … `exp` + 30 s: a node
/// ahead ends short-lived tokens early and its own tokens are "from the
/// future" elsewhere; a node behind finds the others' tokens not yet
/// valid. Guest links (whose token lives as long as the link) do not cross
/// at all; an invite ends early where the clock is ahead. Everything that
/// crosses fails closed, and a revocation on either node holds on both.
#[tokio::test]
async fn two_hours_of_skew_fail_closed_and_revocation_holds() {
    for skew in ["+2h", "-2h"] {
        let ahead = skew.starts_with('+');
        let Some(mut n) = Nodes::new(skew).await else {
            return;
        };
        let t = Tenant::new(&mut n, Node::A).await;
        let user_a = t.user_token(&mut n, Node::A).await;
        let user_a2 = t.user_token(&mut n, Node::A).await;
        let access_a = t.access_token(&mut n, Node::A).await;
        let invite_a = t.invite(&mut n, Node::A, 3600).await;
        let guest_a = t.guest_link(&mut n, Node::A, 3600).await;
        assert!(
            n.upgrades(Node::A, &guest_a).await,
            "{skew}: A's guest link on A"
        );
        let user_b = t.user_token(&mut n, Node::B).await;
        let user_b2 = t.user_token(&mut n, Node::B).await;
        let access_b = t.access_token(&mut n, Node::B).await;
        let invite_b = t.invite(&mut n, Node::B, 3600).await;
        let guest_b = t.guest_link(&mut n, Node::B, 3600).await;
        assert!(
            n.upgrades(Node::B, &guest_b).await,
            "{skew}: B's guest link on B"
        );

        // A's credentials on B.
        assert_eq!(
            t.works(&mut n, Node::B, &user_a).await,
            ahead,
            "{skew}: A's user token on B"
        );
        assert!(
            !t.works(&mut n, Node::B, &access_a).await,
            "{skew}: A's access token on B"
        );
        let expect = if ahead {
            StatusCode::GONE
        } else {
            StatusCode::OK
        };
        assert_eq!(
            t.activate(&mut n, Node::B, &invite_a).await,
            expect,
            "{skew}: A's invite on B"
        );
        assert!(
            !n.upgrades(Node::B, &guest_a).await,
            "{skew}: A's guest link on B"
        );
        // B's on A.
        assert_eq!(
            t.works(&mut n, Node::A, &user_b).await,
            !ahead,
            "{skew}: B's user token on A"
        );
        assert!(
            !t.works(&mut n, Node::A, &access_b).await,
            "{skew}: B's access token on A"
        );
        let expect = if ahead {
            StatusCode::OK
        } else {
            StatusCode::GONE
        };
        assert_eq!(
            t.activate(&mut n, Node::A, &invite_b).await,
            expect,
            "{skew}: B's invite on A"
        );
        assert!(
            !n.upgrades(Node::A, &guest_b).await,
            "{skew}: B's guest link on A"
        );

        // Revocation: the user tokens both nodes accept, revoked on one
        // node, are refused on both.
        let (both, both2, home) = if ahead {
            (&user_a, &user_a2, Node::A)
        } else {
            (&user_b, &user_b2, Node::B)
        };
        assert!(t.works(&mut n, Node::A, both2).await, "{skew}");
        assert!(t.works(&mut n, Node::B, both2).await, "{skew}");
        t.revoke(&mut n, Node::A, both).await;
        t.revoke(&mut n, Node::B, both2).await;
        for node in [Node::A, Node::B] {
            for token in [both, both2] {
                assert!(
                    !t.works(&mut n, node, token).await,
                    "{skew}: revoked, yet works on {node:?}"
                );
            }
        }
        // Each node's own tokens still work at home.
        let other = if home == Node::A { &user_b2 } else { &user_a2 };
        let other_home = if home == Node::A { Node::B } else { Node::A };
        assert!(t.works(&mut n, other_home, other).await, "{skew}");
    }
}

/// A deactivation and reactivation ends every token issued before it, and
/// no token issued after it, whichever node's clock made which. Today the
/// cut-off (`users.tokens_valid_after`) is the reactivating node's clock,
/// compared with each token's `created_at` from the issuing node's clock:
/// a node behind brings back tokens issued before the deactivation (even
/// 20 s behind, within the leeway), a node ahead refuses tokens issued
/// after the reactivation elsewhere until the true clock catches up.
#[tokio::test]
#[ignore = "defect (#15 clock skew): tokens_valid_after from one node's clock is compared with created_at from another's; an old token comes back after a reactivation on a node behind, a new one is refused after a reactivation on a node ahead"]
async fn a_reactivation_ends_exactly_the_tokens_issued_before_it_whatever_the_clocks() {
    let mut wrong = Vec::new();
    for skew in ["-20", "+20", "-2h", "+2h"] {
        let Some(mut n) = Nodes::new(skew).await else {
            return;
        };
        let t = Tenant::new(&mut n, Node::A).await;
        let me = t.me();
        for (issuer, reactivator) in [(Node::A, Node::B), (Node::B, Node::A)] {
            let old = t.user_token(&mut n, issuer).await;
            assert!(t.works(&mut n, issuer, &old).await, "{skew}");
            for step in ["deactivate", "reactivate"] {
                n.post(reactivator, &format!("{me}/{step}"), &t.key, json!({}))
                    .await;
            }
            if t.works(&mut n, issuer, &old).await {
                wrong.push(format!(
                    "{skew}: issued on {issuer:?} before a reactivation on {reactivator:?}, it works again"
                ));
            }
            let fresh = t.user_token(&mut n, issuer).await;
            if !t.works(&mut n, issuer, &fresh).await {
                wrong.push(format!(
                    "{skew}: issued on {issuer:?} after a reactivation on {reactivator:?}, it is refused"
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

/// An invite made on a node two hours ahead with a one-second life must be
/// gone everywhere a moment later; today it is accepted on the true-clock
/// node for two hours more (its end is the maker's clock + ttl).
#[tokio::test]
#[ignore = "defect (#15 clock skew): an invite's end is the making node's clock + ttl, so one made on a node 2 h ahead lives 2 h longer on the others"]
async fn an_invite_from_a_node_ahead_ends_by_its_ttl_everywhere() {
    let Some(mut n) = Nodes::new("+2h").await else {
        return;
    };
    let t = Tenant::new(&mut n, Node::A).await;
    let invite = t.invite(&mut n, Node::B, 1).await;
    let made = Instant::now();
    n.base(Node::A).await;
    // Waiting for the invite's one second of life to pass.
    tokio::time::sleep(Duration::from_secs(2).saturating_sub(made.elapsed())).await;
    assert_eq!(t.activate(&mut n, Node::A, &invite).await, StatusCode::GONE);
}
