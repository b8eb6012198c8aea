//! Self sign-up with a captcha, against a local stand-in for the captcha
//! provider that speaks the `siteverify` protocol (form-encoded `secret`,
//! `response`, `remoteip` → `{"success": bool}`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::{Form, Json, Router, routing::post};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Account, TestApp, assert_error};

const SECRET: &str = "0x-test-captcha-secret";
const SOLVED: &str = "solved-captcha-token";

type Seen = Arc<Mutex<Vec<HashMap<String, String>>>>;

/// The stand-in provider: answers success only for [`SOLVED`] with
/// [`SECRET`], and records what it was asked.
async fn captcha_provider() -> (String, Seen) {
    let seen: Seen = Arc::default();
    async fn verify(
        State(seen): State<Seen>,
        Form(form): Form<HashMap<String, String>>,
    ) -> Json<Value> {
        let ok = form.get("secret").map(String::as_str) == Some(SECRET)
            && form.get("response").map(String::as_str) == Some(SOLVED);
        seen.lock().unwrap().push(form);
        Json(
            json!({ "success": ok, "error-codes": if ok { json!([]) } else { json!(["invalid-input-response"]) } }),
        )
    }
    let app = Router::new()
        .route("/siteverify", post(verify))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/siteverify"), seen)
}

async fn spawn_with_captcha(url: &str) -> TestApp {
    let url = url.to_owned();
    TestApp::spawn_with(move |c| {
        c.captcha_verify_url = Some(url);
        c.captcha_secret = Some(SECRET.into());
    })
    .await
}

async fn enable(t: &TestApp, a: &Account, signup: Value) {
    let (s, b) = t
        .patch(&a.path("/settings"), &a.key, json!({ "signup": signup }))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(
        b["data"]["settings"]["signup"]["enabled"],
        signup["enabled"]
    );
}

async fn sign_up(t: &TestApp, a: &Account, body: Value) -> (StatusCode, Value) {
    t.call(reqwest::Method::POST, &a.path("/signup"), None, Some(body))
        .await
}

fn alice(captcha: &str) -> Value {
    json!({
        "email": "alice@example.com",
        "username": "alice",
        "password": "correct horse battery",
        "phone": "+14155552671",
        "captchaToken": captcha,
    })
}

#[tokio::test]
async fn sign_up_needs_the_account_to_enable_it_and_a_solved_captcha() {
    let (url, seen) = captcha_provider().await;
    let t = spawn_with_captcha(&url).await;
    let a = t.account("acme").await;

    let got = sign_up(&t, &a, alice(SOLVED)).await;
    assert_error(&got, StatusCode::FORBIDDEN, "FORBIDDEN", None);
    let (_, settings) = t.get(&a.path("/settings"), &a.key).await;
    assert_eq!(
        settings["data"]["settings"]["signup"],
        json!({ "enabled": false, "captcha": true })
    );
    enable(&t, &a, json!({ "enabled": true })).await;

    let got = sign_up(&t, &a, alice("a-wrong-answer")).await;
    assert_error(
        &got,
        StatusCode::BAD_REQUEST,
        "VALIDATION_ERROR",
        Some("captcha_token"),
    );
    let mut missing = alice("");
    missing.as_object_mut().unwrap().remove("captchaToken");
    let got = sign_up(&t, &a, missing).await;
    assert_error(
        &got,
        StatusCode::BAD_REQUEST,
        "VALIDATION_ERROR",
        Some("captcha_token"),
    );
    assert_eq!(t.user_count(&a).await, 0, "refusals write nothing");

    let (s, b) = sign_up(&t, &a, alice(SOLVED)).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let d = &b["data"];
    assert_eq!(d["user"]["username"], "alice");
    assert_eq!(d["user"]["name"], "alice");
    assert_eq!(d["user"]["roles"], json!(["user"]));
    assert_eq!(d["user"]["phone"], "+14155552671");
    assert_eq!(d["user"]["has_password"], true);
    let id = d["user"]["id"].as_str().unwrap();
    let me = a.path(&format!("/users/{id}"));
    for token in ["token", "access_token"] {
        assert_eq!(
            t.get(&me, d[token].as_str().unwrap()).await.0,
            StatusCode::OK
        );
    }
    // The provider was asked with our secret, the answer and the address.
    let asked = seen.lock().unwrap().last().cloned().unwrap();
    assert_eq!(asked["secret"], SECRET);
    assert_eq!(asked["response"], SOLVED);
    assert_eq!(asked["remoteip"], "127.0.0.1");
    // They can log in.
    let (s, _) = t
        .call(
            reqwest::Method::POST,
            &a.path("/auth/login"),
            None,
            Some(json!({ "email": "alice@example.com", "password": "correct horse battery" })),
        )
        .await;
    assert_eq!(s, StatusCode::OK);

    // Taken names are conflicts; nothing is written.
    let got = sign_up(&t, &a, alice(SOLVED)).await;
    assert_error(&got, StatusCode::CONFLICT, "CONFLICT", None);
    assert!(["username", "email"].contains(&got.1["error"]["field"].as_str().unwrap()));
    // Validation speaks the users route's language.
    let mut bad = alice(SOLVED);
    bad["username"] = json!("bob");
    bad["email"] = json!("not an address");
    let got = sign_up(&t, &a, bad).await;
    assert_error(
        &got,
        StatusCode::BAD_REQUEST,
        "VALIDATION_ERROR",
        Some("email"),
    );
    let mut bad = alice(SOLVED);
    bad["roles"] = json!(["admin"]);
    let got = sign_up(&t, &a, bad).await;
    assert_error(
        &got,
        StatusCode::BAD_REQUEST,
        "VALIDATION_ERROR",
        Some("roles"),
    );
    assert_eq!(t.user_count(&a).await, 1);
}

#[tokio::test]
async fn an_account_may_turn_the_captcha_off_and_sign_ups_are_throttled_per_address() {
    let t = TestApp::spawn_with(|c| c.signups_per_ip_per_hour = 2).await;
    let a = t.account("acme").await;
    enable(&t, &a, json!({ "enabled": true, "captcha": false })).await;
    for (i, expect) in [
        StatusCode::CREATED,
        StatusCode::CREATED,
        StatusCode::TOO_MANY_REQUESTS,
    ]
    .into_iter()
    .enumerate()
    {
        let (s, b) = sign_up(
            &t,
            &a,
            json!({ "email": format!("u{i}@example.com"), "username": format!("u{i}"), "password": "a long password" }),
        )
        .await;
        assert_eq!(s, expect, "{b}");
    }
    assert_eq!(t.user_count(&a).await, 2);
}

#[tokio::test]
async fn without_a_captcha_provider_a_captcha_account_cannot_take_sign_ups() {
    let t = TestApp::spawn().await;
    let a = t.account("acme").await;
    enable(&t, &a, json!({ "enabled": true })).await;
    let got = sign_up(&t, &a, alice(SOLVED)).await;
    assert_error(&got, StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE", None);
    assert_eq!(t.user_count(&a).await, 0);
    // Settings refuse what they do not know.
    let got = t
        .patch(
            &a.path("/settings"),
            &a.key,
            json!({ "signup": { "enabled": true, "nope": 1 } }),
        )
        .await;
    assert_error(&got, StatusCode::BAD_REQUEST, "VALIDATION_ERROR", None);
}
