//! Sessions through HTTP: login, refresh rotation and reuse, logout,
//! password change, `require_password_change`, imported bcrypt hashes,
//! cookies with their CSRF defence, and the brute-force buckets.

use std::time::{Duration, Instant};

use futures::StreamExt;
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, SET_COOKIE};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::{Account, TestApp, assert_error};

pub const PASSWORD: &str = "correct horse battery";

/// A user with a username, email, custom id and password; returns its id.
pub async fn member(t: &TestApp, a: &Account, name: &str, extra: Value) -> String {
    let mut body = json!({
        "name": name,
        "username": name,
        "email": format!("{name}@example.com"),
        "customId": format!("{name}-1"),
        "password": PASSWORD,
    });
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let d = t.user(a, body).await;
    d["user"]["id"].as_str().unwrap().to_owned()
}

pub async fn login(t: &TestApp, a: &Account, body: Value) -> (StatusCode, Value) {
    t.call(
        reqwest::Method::POST,
        &a.path("/auth/login"),
        None,
        Some(body),
    )
    .await
}

/// Logs in by username; returns (access, refresh).
pub async fn session(t: &TestApp, a: &Account, name: &str) -> (String, String) {
    let (s, b) = login(t, a, json!({ "username": name, "password": PASSWORD })).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    (
        b["data"]["access_token"].as_str().unwrap().to_owned(),
        b["data"]["refresh_token"].as_str().unwrap().to_owned(),
    )
}

async fn refresh(t: &TestApp, a: &Account, token: &str) -> (StatusCode, Value) {
    t.call(
        reqwest::Method::POST,
        &a.path("/auth/refresh"),
        None,
        Some(json!({ "refresh_token": token })),
    )
    .await
}

fn claims(token: &str) -> Value {
    use base64::Engine;
    let p = token.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(p)
            .unwrap(),
    )
    .unwrap()
}

/// Opens the realtime socket with `token`: Ok(socket) or Err(HTTP status).
pub async fn ws(
    t: &TestApp,
    token: &str,
) -> Result<
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    u16,
> {
    let url = format!(
        "{}/v1/realtime?token={token}",
        t.base.replacen("http://", "ws://", 1)
    );
    match tokio_tungstenite::connect_async(url).await {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(res)) => Err(res.status().as_u16()),
        Err(e) => panic!("{e}"),
    }
}

/// Reads until the server closes the socket; returns the close code.
pub async fn closed_with(
    ws: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
) -> u16 {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(Some(f)))) => return u16::from(f.code),
                Some(Ok(Message::Close(None))) | None => return 1005,
                Some(Err(_)) => return 1006,
                _ => continue,
            }
        }
    })
    .await
    .expect("closed within the deadline")
}

#[tokio::test]
async fn login_by_each_name_gives_an_access_token_that_works_on_routes_and_realtime() {
    let t = TestApp::spawn().await;
    let a = t.account("acme").await;
    let id = member(&t, &a, "alice", json!({})).await;
    for by in [
        json!({ "username": "ALICE" }),
        json!({ "email": "Alice@Example.com" }),
        json!({ "custom_id": "alice-1" }),
        json!({ "customId": "alice-1" }),
    ] {
        let mut body = by.clone();
        body["password"] = json!(PASSWORD);
        let (s, b) = login(&t, &a, body).await;
        assert_eq!(s, StatusCode::OK, "{by}: {b}");
        let d = &b["data"];
        assert_eq!(d["expires_in"], 900);
        assert_eq!(d["token_type"], "Bearer");
        assert_eq!(d["user"]["id"], id.as_str());
        assert!(d["user"].get("password").is_none());
        let access = d["access_token"].as_str().unwrap();
        let c = claims(access);
        assert_eq!(c["typ"], "access");
        assert_eq!(c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(), 900);
        assert!(d["refresh_token"].as_str().unwrap().starts_with("rt_"));
        let (s, me) = t.get(&a.path(&format!("/users/{id}")), access).await;
        assert_eq!(s, StatusCode::OK, "{me}");
        assert_eq!(me["data"]["user"]["email"], "alice@example.com");
    }
    let (access, _) = session(&t, &a, "alice").await;
    let mut socket = ws(&t, &access).await.expect("access token opens realtime");
    drop(socket.close(None).await);
    // Only one of the three names at a time.
    let got = login(
        &t,
        &a,
        json!({ "username": "alice", "email": "alice@example.com", "password": PASSWORD }),
    )
    .await;
    assert_error(
        &got,
        StatusCode::BAD_REQUEST,
        "VALIDATION_ERROR",
        Some("username"),
    );
    let got = login(
        &t,
        &a,
        json!({ "username": "alice", "password": PASSWORD, "extra": 1 }),
    )
    .await;
    assert_error(
        &got,
        StatusCode::BAD_REQUEST,
        "VALIDATION_ERROR",
        Some("extra"),
    );
}

#[tokio::test]
async fn unknown_wrong_deactivated_and_passwordless_logins_look_the_same() {
    let t = TestApp::spawn().await;
    let a = t.account("acme").await;
    member(&t, &a, "alice", json!({})).await;
    let bob = member(&t, &a, "bob", json!({})).await;
    t.user(&a, json!({ "name": "carol", "username": "carol" }))
        .await;
    let (s, _) = t
        .post(
            &a.path(&format!("/users/{bob}/deactivate")),
            &a.key,
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    // Warm the dummy hash so the first case does not pay for building it.
    login(
        &t,
        &a,
        json!({ "username": "nobody", "password": PASSWORD }),
    )
    .await;
    let mut answers = Vec::new();
    let mut times = Vec::new();
    for body in [
        json!({ "username": "nobody", "password": PASSWORD }),
        json!({ "username": "alice", "password": "wrong password" }),
        json!({ "username": "bob", "password": PASSWORD }),
        json!({ "username": "carol", "password": PASSWORD }),
    ] {
        let started = Instant::now();
        let got = login(&t, &a, body).await;
        times.push(started.elapsed());
        assert_error(&got, StatusCode::UNAUTHORIZED, "UNAUTHORIZED", None);
        let mut e = got.1.clone();
        e["request_id"] = Value::Null;
        answers.push(e);
    }
    assert!(answers.windows(2).all(|w| w[0] == w[1]), "{answers:?}");
    // Every one of them did a password hash's worth of work.
    let (min, max) = (times.iter().min().unwrap(), times.iter().max().unwrap());
    assert!(*min * 5 >= *max, "{times:?}");
}

#[tokio::test]
async fn refresh_rotates_and_reusing_a_spent_token_revokes_the_whole_session() {
    let t = TestApp::spawn().await;
    let a = t.account("acme").await;
    let id = member(&t, &a, "alice", json!({})).await;
    let me = a.path(&format!("/users/{id}"));
    let (a1, r1) = session(&t, &a, "alice").await;
    let (other_access, other_refresh) = session(&t, &a, "alice").await;

    let (s, b) = refresh(&t, &a, &r1).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let a2 = b["data"]["access_token"].as_str().unwrap().to_owned();
    let r2 = b["data"]["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(r1, r2);
    assert_eq!(b["data"]["user"]["id"], id.as_str());
    assert_eq!(t.get(&me, &a2).await.0, StatusCode::OK);
    let mut socket = ws(&t, &a2).await.expect("upgrade");

    // The spent token again: refused, and the family dies with it.
    let got = refresh(&t, &a, &r1).await;
    assert_error(&got, StatusCode::UNAUTHORIZED, "UNAUTHORIZED", None);
    for token in [&a1, &a2] {
        assert_error(
            &t.get(&me, token).await,
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
            None,
        );
    }
    assert_error(
        &refresh(&t, &a, &r2).await,
        StatusCode::UNAUTHORIZED,
        "UNAUTHORIZED",
        None,
    );
    assert_eq!(closed_with(&mut socket).await, 1008);
    assert_eq!(ws(&t, &a2).await.err(), Some(401));
    // The user's other session is untouched.
    assert_eq!(t.get(&me, &other_access).await.0, StatusCode::OK);
    assert_eq!(refresh(&t, &a, &other_refresh).await.0, StatusCode::OK);

    // Unknown, malformed and other-account refresh tokens.
    let b_account = t.account("other").await;
    for (acc, tok) in [
        (&a, "rt_nope"),
        (&a, ""),
        (&b_account, other_refresh.as_str()),
    ] {
        let got = refresh(&t, acc, tok).await;
        assert_error(&got, StatusCode::UNAUTHORIZED, "UNAUTHORIZED", None);
    }
    // A refresh token is not an access token.
    assert_error(
        &t.get(&me, &other_refresh).await,
        StatusCode::UNAUTHORIZED,
        "UNAUTHORIZED",
        None,
    );
}

#[tokio::test]
async fn refreshing_stops_when_the_user_is_deactivated_and_stays_stopped() {
    let t = TestApp::spawn().await;
    let a = t.account("acme").await;
    let id = member(&t, &a, "alice", json!({})).await;
    let (_, r1) = session(&t, &a, "alice").await;
    t.post(
        &a.path(&format!("/users/{id}/deactivate")),
        &a.key,
        json!({}),
    )
    .await;
    assert_eq!(refresh(&t, &a, &r1).await.0, StatusCode::UNAUTHORIZED);
    t.post(
        &a.path(&format!("/users/{id}/reactivate")),
        &a.key,
        json!({}),
    )
    .await;
    assert_eq!(refresh(&t, &a, &r1).await.0, StatusCode::UNAUTHORIZED);
    // A fresh login works again.
    session(&t, &a, "alice").await;
}

#[tokio::test]
async fn logout_ends_the_session_by_refresh_token_or_by_access_token() {
    let t = TestApp::spawn().await;
    let a = t.account("acme").await;
    let id = member(&t, &a, "alice", json!({})).await;
    let me = a.path(&format!("/users/{id}"));

    let (access, refresh_token) = session(&t, &a, "alice").await;
    let (s, b) = t
        .call(
            reqwest::Method::POST,
            &a.path("/auth/logout"),
            None,
            Some(json!({ "refresh_token": refresh_token })),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(t.get(&me, &access).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(
        refresh(&t, &a, &refresh_token).await.0,
        StatusCode::UNAUTHORIZED
    );

    let (access, refresh_token) = session(&t, &a, "alice").await;
    let (s, b) = t
        .call(
            reqwest::Method::POST,
            &a.path("/auth/logout"),
            Some(&access),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(t.get(&me, &access).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(
        refresh(&t, &a, &refresh_token).await.0,
        StatusCode::UNAUTHORIZED
    );
    // Nothing to log out of.
    let got = t
        .call(reqwest::Method::POST, &a.path("/auth/logout"), None, None)
        .await;
    assert_error(&got, StatusCode::UNAUTHORIZED, "UNAUTHORIZED", None);
}

#[tokio::test]
async fn changing_the_password_ends_the_other_sessions_unless_asked_not_to() {
    let t = TestApp::spawn().await;
    let a = t.account("acme").await;
    let id = member(&t, &a, "alice", json!({})).await;
    let me = a.path(&format!("/users/{id}"));
    let (mine, _) = session(&t, &a, "alice").await;
    let (other, other_refresh) = session(&t, &a, "alice").await;
    let path = a.path("/auth/password");

    let got = t
        .post(
            &path,
            &mine,
            json!({ "current_password": "not it at all", "new_password": "a new secret 1" }),
        )
        .await;
    assert_error(
        &got,
        StatusCode::BAD_REQUEST,
        "VALIDATION_ERROR",
        Some("current_password"),
    );
    let got = t
        .post(
            &path,
            &mine,
            json!({ "current_password": PASSWORD, "new_password": "short" }),
        )
        .await;
    assert_error(
        &got,
        StatusCode::BAD_REQUEST,
        "VALIDATION_ERROR",
        Some("new_password"),
    );
    assert_eq!(
        t.get(&me, &other).await.0,
        StatusCode::OK,
        "refusals change nothing"
    );
    let got = t
        .post(&path, &a.key, json!({ "new_password": "a new secret 1" }))
        .await;
    assert_error(&got, StatusCode::FORBIDDEN, "FORBIDDEN", None);

    let (s, b) = t
        .post(
            &path,
            &mine,
            json!({ "currentPassword": PASSWORD, "newPassword": "a new secret 1" }),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(t.get(&me, &mine).await.0, StatusCode::OK);
    assert_eq!(t.get(&me, &other).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(
        refresh(&t, &a, &other_refresh).await.0,
        StatusCode::UNAUTHORIZED
    );
    let old = login(&t, &a, json!({ "username": "alice", "password": PASSWORD })).await;
    assert_eq!(old.0, StatusCode::UNAUTHORIZED);
    let new = login(
        &t,
        &a,
        json!({ "username": "alice", "password": "a new secret 1" }),
    )
    .await;
    assert_eq!(new.0, StatusCode::OK);
    let kept = new.1["data"]["access_token"].as_str().unwrap().to_owned();

    let (s, _) = t
        .post(
            &path,
            &mine,
            json!({ "current_password": "a new secret 1", "new_password": "a newer secret 2", "revoke_other_sessions": false }),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(t.get(&me, &kept).await.0, StatusCode::OK);
}

#[tokio::test]
async fn a_user_who_must_change_their_password_may_only_do_that() {
    let t = TestApp::spawn().await;
    let a = t.account("acme").await;
    let id = member(&t, &a, "alice", json!({ "requirePasswordChange": true })).await;
    let me = a.path(&format!("/users/{id}"));
    let (access, refresh_token) = session(&t, &a, "alice").await;
    let got = t.get(&me, &access).await;
    assert_error(&got, StatusCode::FORBIDDEN, "FORBIDDEN", None);
    assert_eq!(ws(&t, &access).await.err(), Some(403));
    let (s, b) = t
        .post(
            &a.path("/auth/password"),
            &access,
            json!({ "current_password": PASSWORD, "new_password": "my own secret" }),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["data"]["user"]["require_password_change"], false);
    assert_eq!(t.get(&me, &access).await.0, StatusCode::OK);
    assert_eq!(refresh(&t, &a, &refresh_token).await.0, StatusCode::OK);
}

#[tokio::test]
async fn an_imported_bcrypt_hash_logs_in_and_is_rehashed_to_argon2id() {
    let t = TestApp::spawn().await;
    let a = t.account("acme").await;
    let id = member(&t, &a, "alice", json!({})).await;
    let account = uuid::Uuid::parse_str(&a.id).unwrap();
    let user = uuid::Uuid::parse_str(&id).unwrap();
    for prefix in ["$2b$", "$2a$", "$2y$"] {
        let hash = bcrypt::hash("imported secret", 4).unwrap();
        let hash = hash.replacen("$2b$", prefix, 1);
        t.app
            .store
            .set_password_hash(account, user, &hash, roster::domain::time::now())
            .await
            .unwrap();
        let wrong = login(
            &t,
            &a,
            json!({ "username": "alice", "password": "imported secreT" }),
        )
        .await;
        assert_eq!(wrong.0, StatusCode::UNAUTHORIZED);
        let got = login(
            &t,
            &a,
            json!({ "username": "alice", "password": "imported secret" }),
        )
        .await;
        assert_eq!(got.0, StatusCode::OK, "{prefix}: {}", got.1);
        let stored = t
            .app
            .store
            .password_hash(account, user)
            .await
            .unwrap()
            .unwrap();
        assert!(stored.starts_with("$argon2id$"), "{stored}");
        let again = login(
            &t,
            &a,
            json!({ "username": "alice", "password": "imported secret" }),
        )
        .await;
        assert_eq!(again.0, StatusCode::OK);
    }
}

fn set_cookies(h: &HeaderMap) -> Vec<String> {
    h.get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

fn cookie_value(cookies: &[String], name: &str) -> String {
    let c = cookies
        .iter()
        .find(|c| c.starts_with(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no {name} cookie in {cookies:?}"));
    c.split(';').next().unwrap()[name.len() + 1..].to_owned()
}

#[tokio::test]
async fn cookies_carry_the_session_and_writes_by_cookie_need_the_csrf_header() {
    let t = TestApp::spawn().await;
    let a = t.account("acme").await;
    let id = member(&t, &a, "alice", json!({})).await;
    let me = format!("{}{}", t.base, a.path(&format!("/users/{id}")));
    let res = t
        .client
        .post(format!("{}{}", t.base, a.path("/auth/login")))
        .json(&json!({ "username": "alice", "password": PASSWORD, "cookies": true }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let cookies = set_cookies(res.headers());
    for (name, http_only) in [
        ("roster_access", true),
        ("roster_refresh", true),
        ("roster_csrf", false),
    ] {
        let c = cookies
            .iter()
            .find(|c| c.starts_with(name))
            .unwrap_or_else(|| panic!("{cookies:?}"));
        assert!(c.contains("; Secure") && c.contains("SameSite=Lax"), "{c}");
        assert_eq!(c.contains("HttpOnly"), http_only, "{c}");
    }
    let access = cookie_value(&cookies, "roster_access");
    let csrf = cookie_value(&cookies, "roster_csrf");
    let refresh_token = cookie_value(&cookies, "roster_refresh");
    let jar = format!("roster_access={access}; roster_csrf={csrf}; roster_refresh={refresh_token}");

    // Reads by cookie need no CSRF header.
    let res = t
        .client
        .get(&me)
        .header("cookie", &jar)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    // Writes do, and must repeat the cookie exactly.
    for header in [None, Some("forged")] {
        let mut req = t
            .client
            .patch(&me)
            .header("cookie", &jar)
            .json(&json!({ "nickname": "Al" }));
        if let Some(h) = header {
            req = req.header("x-csrf-token", h);
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), StatusCode::FORBIDDEN);
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["error"]["field"], "x-csrf-token", "{body}");
    }
    let (_, user) = t.get(&a.path(&format!("/users/{id}")), &a.key).await;
    assert_eq!(
        user["data"]["user"]["nickname"],
        Value::Null,
        "refused writes change nothing"
    );
    let res = t
        .client
        .patch(&me)
        .header("cookie", &jar)
        .header("x-csrf-token", &csrf)
        .json(&json!({ "nickname": "Al" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);

    // Refresh by cookie: CSRF header required; new cookies come back.
    let refresh_url = format!("{}{}", t.base, a.path("/auth/refresh"));
    let res = t
        .client
        .post(&refresh_url)
        .header("cookie", &jar)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let res = t
        .client
        .post(&refresh_url)
        .header("cookie", &jar)
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let fresh = set_cookies(res.headers());
    assert_ne!(cookie_value(&fresh, "roster_refresh"), refresh_token);

    // A bearer credential needs no CSRF header.
    let (s, _) = t
        .patch(
            &a.path(&format!("/users/{id}")),
            &a.key,
            json!({ "nickname": "B" }),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn failed_logins_are_throttled_per_name_and_per_address() {
    let t = TestApp::spawn_with(|c| {
        c.login_failures_per_name = 3;
        c.login_failures_per_ip = 5;
        c.login_failure_window_secs = 60;
    })
    .await;
    let a = t.account("acme").await;
    member(&t, &a, "alice", json!({})).await;
    member(&t, &a, "bob", json!({})).await;
    for _ in 0..3 {
        let got = login(
            &t,
            &a,
            json!({ "username": "alice", "password": "wrong password" }),
        )
        .await;
        assert_eq!(got.0, StatusCode::UNAUTHORIZED);
    }
    // Alice's bucket is full: even the right password waits.
    let res = t
        .client
        .post(format!("{}{}", t.base, a.path("/auth/login")))
        .json(&json!({ "username": "alice", "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "RATE_LIMITED");
    // Bob is not locked out by Alice's attacker…
    session(&t, &a, "bob").await;
    // …until the address's own bucket fills; a forged X-Forwarded-For from
    // an untrusted peer does not escape it.
    for _ in 0..2 {
        let res = t
            .client
            .post(format!("{}{}", t.base, a.path("/auth/login")))
            .header("x-forwarded-for", format!("198.51.100.{}", rand_octet()))
            .json(&json!({ "username": "bob", "password": "wrong password" }))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
    let got = login(&t, &a, json!({ "username": "bob", "password": PASSWORD })).await;
    assert_error(&got, StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED", None);
}

fn rand_octet() -> u8 {
    uuid::Uuid::new_v4().as_bytes()[0] % 250 + 1
}

#[tokio::test]
async fn behind_a_trusted_proxy_each_forwarded_client_has_its_own_bucket() {
    let t = TestApp::spawn_with(|c| {
        c.login_failures_per_name = 100;
        c.login_failures_per_ip = 2;
        c.trusted_proxies = vec!["127.0.0.1".into(), "::1".into()];
    })
    .await;
    let a = t.account("acme").await;
    member(&t, &a, "alice", json!({})).await;
    let attempt = |ip: &'static str, password: &'static str| {
        let req = t
            .client
            .post(format!("{}{}", t.base, a.path("/auth/login")))
            .header("x-forwarded-for", ip)
            .json(&json!({ "username": "alice", "password": password }));
        async move { req.send().await.unwrap().status() }
    };
    assert_eq!(
        attempt("203.0.113.1", "wrong password").await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        attempt("203.0.113.1", "wrong password").await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        attempt("203.0.113.1", PASSWORD).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(attempt("203.0.113.2", PASSWORD).await, StatusCode::OK);
}

/// Measures reads during a burst of logins (argon2 work is bounded by a
/// semaphore on the blocking pool, so it must not stall other requests).
/// `cargo nextest run --test api --run-ignored only logins_burst` prints the
/// numbers recorded in docs/sessions.md.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "a measurement, run by hand"]
async fn reads_stay_fast_during_a_burst_of_fifty_concurrent_logins() {
    let t = TestApp::spawn().await;
    let a = t.account("acme").await;
    let id = member(&t, &a, "alice", json!({})).await;
    let me = a.path(&format!("/users/{id}"));
    let sample = |n: usize| {
        let (t, me, key) = (&t, me.clone(), a.key.clone());
        async move {
            let mut times = Vec::with_capacity(n);
            for _ in 0..n {
                let started = Instant::now();
                assert_eq!(t.get(&me, &key).await.0, StatusCode::OK);
                times.push(started.elapsed());
            }
            times.sort();
            times
        }
    };
    let quiet = sample(300).await;
    let mut logins = Vec::new();
    let started = Instant::now();
    for _ in 0..50 {
        let (client, url) = (
            t.client.clone(),
            format!("{}{}", t.base, a.path("/auth/login")),
        );
        logins.push(tokio::spawn(async move {
            for _ in 0..4 {
                let res = client
                    .post(&url)
                    .json(&json!({ "username": "alice", "password": PASSWORD }))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(res.status(), StatusCode::OK);
            }
        }));
    }
    let mut busy = Vec::new();
    while logins.iter().any(|l| !l.is_finished()) {
        let started = Instant::now();
        assert_eq!(t.get(&me, &a.key).await.0, StatusCode::OK);
        busy.push(started.elapsed());
    }
    let burst = started.elapsed();
    for l in logins {
        l.await.unwrap();
    }
    busy.sort();
    let p = |v: &[Duration], q: f64| v[((v.len() as f64 - 1.0) * q) as usize];
    println!(
        "quiet GET /users/{{id}}: p50 {:?} p99 {:?} (n={}); during 200 logins by 50 clients ({burst:?}, {:.0} logins/s): p50 {:?} p99 {:?} max {:?} (n={})",
        p(&quiet, 0.5),
        p(&quiet, 0.99),
        quiet.len(),
        200.0 / burst.as_secs_f64(),
        p(&busy, 0.5),
        p(&busy, 0.99),
        busy.last().unwrap(),
        busy.len()
    );
    assert!(p(&busy, 0.99) < Duration::from_millis(500));
}
