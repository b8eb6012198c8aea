//! Every limit of DESIGN.md at its edge (accepted) and one past it
//! (refused, naming the field, nothing written).

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Account, TestApp, assert_error};

/// A create body with a `name` (which a user needs unless a username or
/// an email stands in), unless it names one already.
fn named(mut body: Value) -> Value {
    let o = body.as_object_mut().expect("an object");
    if !["name", "username", "email"]
        .iter()
        .any(|k| o.contains_key(*k))
    {
        o.insert("name".into(), json!("N"));
    }
    body
}

/// `ok` is accepted; `bad` is refused with VALIDATION_ERROR on `field` and
/// leaves the user count as it was.
async fn edge(t: &TestApp, a: &Account, field: &str, ok: Value, bad: Value) {
    let (ok, bad) = (named(ok), named(bad));
    let (status, body) = t.post(&a.path("/users"), &a.key, ok.clone()).await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "{field}: edge value refused: {body}"
    );
    let before = t.user_count(a).await;
    let got = t.post(&a.path("/users"), &a.key, bad.clone()).await;
    assert_error(
        &got,
        StatusCode::BAD_REQUEST,
        "VALIDATION_ERROR",
        Some(field),
    );
    assert_eq!(
        t.user_count(a).await,
        before,
        "{field}: a refused create wrote something"
    );
}

fn n(s: &str, count: usize) -> String {
    s.repeat(count)
}

#[tokio::test]
async fn limits_at_the_edge() {
    let t = TestApp::spawn().await;
    let a = t.account("acme").await;
    edge(
        &t,
        &a,
        "custom_id",
        json!({ "uid": n("u", 100) }),
        json!({ "uid": n("v", 101) }),
    )
    .await;
    edge(
        &t,
        &a,
        "custom_id",
        json!({ "uid": "ok_id-1" }),
        json!({ "uid": "has space" }),
    )
    .await;
    edge(
        &t,
        &a,
        "name",
        json!({ "name": n("名", 100) }),
        json!({ "name": n("名", 101) }),
    )
    .await;
    edge(
        &t,
        &a,
        "name",
        json!({ "name": "👩‍👩‍👧‍👦" }),
        json!({ "name": "   " }),
    )
    .await;
    let url = |len: usize| {
        format!(
            "https://example.com/{}",
            n("a", len - "https://example.com/".len())
        )
    };
    edge(
        &t,
        &a,
        "profile_picture",
        json!({ "avatar": url(3000) }),
        json!({ "avatar": url(3001) }),
    )
    .await;
    edge(
        &t,
        &a,
        "link",
        json!({ "link": url(3000) }),
        json!({ "link": url(3001) }),
    )
    .await;
    edge(
        &t,
        &a,
        "link",
        json!({ "link": "http://example.com" }),
        json!({ "link": "javascript:alert(1)" }),
    )
    .await;
    // 5 KB of metadata: {"k":"xxx…"} is 8 bytes of framing.
    edge(
        &t,
        &a,
        "metadata",
        json!({ "metadata": { "k": n("x", 5 * 1024 - 8) } }),
        json!({ "metadata": { "k": n("x", 5 * 1024 - 7) } }),
    )
    .await;
    edge(
        &t,
        &a,
        "metadata",
        json!({ "metadata": {} }),
        json!({ "metadata": [1, 2] }),
    )
    .await;
    let tags = |count: usize| (0..count).map(|i| format!("t{i}")).collect::<Vec<_>>();
    edge(
        &t,
        &a,
        "tags",
        json!({ "tags": tags(25) }),
        json!({ "tags": tags(26) }),
    )
    .await;
    edge(
        &t,
        &a,
        "tags[1]",
        json!({ "tags": ["a", n("t", 100)] }),
        json!({ "tags": ["a", n("t", 101)] }),
    )
    .await;
    edge(
        &t,
        &a,
        "password",
        json!({ "password": "12345678" }),
        json!({ "password": "1234567" }),
    )
    .await;
    edge(
        &t,
        &a,
        "password",
        json!({ "password": n("ü", 128) }),
        json!({ "password": n("ü", 129) }),
    )
    .await;
    edge(
        &t,
        &a,
        "password",
        json!({ "password": "pass word" }),
        json!({ "password": n(" ", 12) }),
    )
    .await;
    edge(
        &t,
        &a,
        "email",
        json!({ "email": "a.b+c@example.co.uk" }),
        json!({ "email": "not-an-email" }),
    )
    .await;
    edge(
        &t,
        &a,
        "phone",
        json!({ "phone": "+14155552671" }),
        json!({ "phone": "4155552671" }),
    )
    .await;
    edge(
        &t,
        &a,
        "phone",
        json!({ "phone": "+442071838750" }),
        json!({ "phone": "+1234567890123456" }),
    )
    .await;
    edge(
        &t,
        &a,
        "status_message",
        json!({ "statusMessage": n("s", 140) }),
        json!({ "statusMessage": n("s", 141) }),
    )
    .await;
    edge(
        &t,
        &a,
        "nickname",
        json!({ "nickname": n("n", 100) }),
        json!({ "nickname": n("n", 101) }),
    )
    .await;
    edge(
        &t,
        &a,
        "bio",
        json!({ "bio": n("b", 1000) }),
        json!({ "bio": n("b", 1001) }),
    )
    .await;
    edge(
        &t,
        &a,
        "username",
        json!({ "username": n("ü", 100) }),
        json!({ "username": n("x", 101) }),
    )
    .await;
    edge(
        &t,
        &a,
        "username",
        json!({ "username": "alice@contoso.com" }),
        json!({ "username": "a b " }),
    )
    .await;
}

#[tokio::test]
async fn control_characters_and_bidi_overrides_are_refused_everywhere() {
    let t = TestApp::spawn().await;
    let a = t.account("acme").await;
    for bad in [
        "a\u{0}b",
        "line\nbreak",
        "bell\u{7}",
        "evil\u{202E}txt",
        "iso\u{2066}late",
    ] {
        for field in ["name", "nickname", "bio", "statusMessage", "username"] {
            let got = t
                .post(&a.path("/users"), &a.key, named(json!({ field: bad })))
                .await;
            let canonical = if field == "statusMessage" {
                "status_message"
            } else {
                field
            };
            assert_error(
                &got,
                StatusCode::BAD_REQUEST,
                "VALIDATION_ERROR",
                Some(canonical),
            );
        }
        let got = t
            .post(&a.path("/users"), &a.key, named(json!({ "tags": [bad] })))
            .await;
        assert_error(
            &got,
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
            Some("tags[0]"),
        );
    }
    let got = t
        .post(
            &a.path("/users"),
            &a.key,
            named(json!({ "metadata": { "k": "nul\u{0}" } })),
        )
        .await;
    assert_error(
        &got,
        StatusCode::BAD_REQUEST,
        "VALIDATION_ERROR",
        Some("metadata"),
    );
    assert_eq!(t.user_count(&a).await, 0);
    // Every script and emoji is welcome.
    for name in ["Алиса", "李小龙", "عائشة", "Zoë 👩🏽‍💻", "हिन्दी", "ᏣᎳᎩ"]
    {
        let d = t.user(&a, json!({ "name": name })).await;
        assert_eq!(d["user"]["name"], name);
    }
}

#[tokio::test]
async fn wrong_types_and_unknown_fields_are_refused_by_name() {
    let t = TestApp::spawn().await;
    let a = t.account("acme").await;
    let cases = [
        (json!({ "name": 5 }), "name"),
        (json!({ "active": "yes" }), "active"),
        (json!({ "tags": "a,b" }), "tags"),
        (json!({ "roomId": 7 }), "room_id"),
        (json!({ "withAuthToken": "true" }), "with_auth_token"),
        (json!({ "nmae": "typo" }), "nmae"),
        (
            json!({ "password": "12345678", "setRandomPassword": true }),
            "set_random_password",
        ),
        (json!({ "role": "user", "roles": ["user"] }), "role"),
    ];
    for (body, field) in cases {
        let got = t.post(&a.path("/users"), &a.key, body).await;
        assert_error(
            &got,
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
            Some(field),
        );
    }
    assert_eq!(t.user_count(&a).await, 0);
}

#[tokio::test]
async fn custom_fields_must_be_declared_and_typed() {
    let t = TestApp::spawn().await;
    let a = t.account("acme").await;
    let got = t
        .post(
            &a.path("/users"),
            &a.key,
            json!({ "name": "N", "customFields": { "team": "x" } }),
        )
        .await;
    assert_error(
        &got,
        StatusCode::BAD_REQUEST,
        "VALIDATION_ERROR",
        Some("custom_fields.team"),
    );
    let (status, body) = t
        .patch(
            &a.path("/settings"),
            &a.key,
            json!({ "custom_fields": { "team": { "type": "string", "required": true, "max_length": 4 }, "age": { "type": "number" } } }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["data"]["settings"]["custom_fields"]["team"]["max_length"],
        4
    );
    let cases = [
        (
            json!({ "customFields": { "age": 3 } }),
            "custom_fields.team",
        ),
        (
            json!({ "customFields": { "team": "toolong" } }),
            "custom_fields.team",
        ),
        (
            json!({ "customFields": { "team": "ok", "age": "3" } }),
            "custom_fields.age",
        ),
        (
            json!({ "customFields": { "team": "ok", "other": 1 } }),
            "custom_fields.other",
        ),
    ];
    for (body, field) in cases {
        let got = t.post(&a.path("/users"), &a.key, named(body)).await;
        assert_error(
            &got,
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
            Some(field),
        );
    }
    assert_eq!(t.user_count(&a).await, 0);
    t.user(
        &a,
        named(json!({ "customFields": { "team": "core", "age": 3 } })),
    )
    .await;
    // Declarations themselves are validated; a bad PATCH changes nothing.
    let got = t
        .patch(
            &a.path("/settings"),
            &a.key,
            json!({ "custom_fields": { "bad name": { "type": "string" } } }),
        )
        .await;
    assert_error(
        &got,
        StatusCode::BAD_REQUEST,
        "VALIDATION_ERROR",
        Some("custom_fields.bad name"),
    );
    let got = t
        .patch(
            &a.path("/settings"),
            &a.key,
            json!({ "custom_fields": { "x": { "type": "date" } } }),
        )
        .await;
    assert_error(&got, StatusCode::BAD_REQUEST, "VALIDATION_ERROR", None);
    let (_, s) = t.get(&a.path("/settings"), &a.key).await;
    assert_eq!(
        s["data"]["settings"]["custom_fields"]
            .as_object()
            .unwrap()
            .len(),
        2
    );
    // null removes a declaration.
    let (_, s) = t
        .patch(
            &a.path("/settings"),
            &a.key,
            json!({ "custom_fields": { "age": null } }),
        )
        .await;
    assert!(s["data"]["settings"]["custom_fields"].get("age").is_none());
}
