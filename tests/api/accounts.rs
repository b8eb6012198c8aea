//! Accounts, API keys, scopes and tenancy.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{OPERATOR_KEY, TestApp, assert_error};

#[tokio::test]
async fn accounts_need_the_operator_key() {
    let t = TestApp::spawn().await;
    let got = t
        .call(
            Method::POST,
            "/v1/accounts",
            None,
            Some(json!({ "name": "x" })),
        )
        .await;
    assert_error(&got, StatusCode::UNAUTHORIZED, "UNAUTHORIZED", None);
    let a = t.account("acme").await;
    let got = t.post("/v1/accounts", &a.key, json!({ "name": "x" })).await;
    assert_error(&got, StatusCode::UNAUTHORIZED, "UNAUTHORIZED", None);
    let got = t
        .post(
            "/v1/accounts",
            "wrong-operator-key-0123456789-0123456789",
            json!({ "name": "x" }),
        )
        .await;
    assert_error(&got, StatusCode::UNAUTHORIZED, "UNAUTHORIZED", None);
    let (status, body) = t.get(&format!("/v1/accounts/{}", a.id), OPERATOR_KEY).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["account"]["name"], "acme");
    let (status, body) = t.get("/v1/accounts", OPERATOR_KEY).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["accounts"].as_array().unwrap().len(), 1);
    let got = t
        .post("/v1/accounts", OPERATOR_KEY, json!({ "name": "" }))
        .await;
    assert_error(
        &got,
        StatusCode::BAD_REQUEST,
        "VALIDATION_ERROR",
        Some("name"),
    );
    // The operator key does not act inside accounts.
    let got = t.get(&a.path("/users"), OPERATOR_KEY).await;
    assert_error(&got, StatusCode::FORBIDDEN, "FORBIDDEN", None);
}

#[tokio::test]
async fn api_keys_are_shown_once_listed_without_secret_and_revocable() {
    let t = TestApp::spawn().await;
    let a = t.account("acme").await;
    let (status, body) = t
        .post(
            &a.path("/api-keys"),
            &a.key,
            json!({ "name": "ci", "scope": "read" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let read_key = body["data"]["api_key"].as_str().unwrap().to_owned();
    let key_id = body["data"]["key"]["id"].as_str().unwrap().to_owned();
    assert_eq!(body["data"]["key"]["scope"], "read");
    assert_eq!(body["data"]["key"]["name"], "ci");
    let (_, list) = t.get(&a.path("/api-keys"), &a.key).await;
    let text = list.to_string();
    assert!(
        !text.contains(&read_key) && !text.contains("secret"),
        "{text}"
    );
    assert_eq!(list["data"]["api_keys"].as_array().unwrap().len(), 2);
    // The apikey header works as well as Bearer.
    let res = t
        .client
        .get(format!("{}{}", t.base, a.path("/users")))
        .header("apikey", &read_key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    // A read key reads but does not write.
    let got = t
        .post(&a.path("/users"), &read_key, json!({ "name": "x" }))
        .await;
    assert_error(&got, StatusCode::FORBIDDEN, "FORBIDDEN", None);
    let got = t
        .post(&a.path("/rooms"), &read_key, json!({ "name": "x" }))
        .await;
    assert_error(&got, StatusCode::FORBIDDEN, "FORBIDDEN", None);
    let got = t
        .delete(&a.path(&format!("/api-keys/{key_id}")), &read_key)
        .await;
    assert_error(&got, StatusCode::FORBIDDEN, "FORBIDDEN", None);
    // Revocation takes effect at once.
    let (status, _) = t
        .delete(&a.path(&format!("/api-keys/{key_id}")), &a.key)
        .await;
    assert_eq!(status, StatusCode::OK);
    let got = t.get(&a.path("/users"), &read_key).await;
    assert_error(&got, StatusCode::UNAUTHORIZED, "UNAUTHORIZED", None);
    let got = t
        .delete(&a.path(&format!("/api-keys/{key_id}")), &a.key)
        .await;
    assert_error(&got, StatusCode::NOT_FOUND, "NOT_FOUND", None);
    // A tampered key is refused.
    let mut tampered = a.key.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    let got = t.get(&a.path("/users"), &tampered).await;
    assert_error(&got, StatusCode::UNAUTHORIZED, "UNAUTHORIZED", None);
    let got = t
        .post(
            &a.path("/api-keys"),
            &a.key,
            json!({ "name": "x", "scope": "admin" }),
        )
        .await;
    assert_error(
        &got,
        StatusCode::BAD_REQUEST,
        "VALIDATION_ERROR",
        Some("scope"),
    );
}

#[tokio::test]
async fn another_accounts_objects_are_not_found_on_every_route() {
    let t = TestApp::spawn().await;
    let a = t.account("a").await;
    let b = t.account("b").await;
    let room = t.room(&a, json!({ "name": "R" })).await;
    let d = t.user(&a, json!({ "name": "U" })).await;
    let user = d["user"]["id"].as_str().unwrap();
    let user_token = d["token"].as_str().unwrap();
    let (_, keys) = t.get(&a.path("/api-keys"), &a.key).await;
    let key = keys["data"]["api_keys"][0]["id"].as_str().unwrap();
    let a_routes = [
        (Method::GET, a.path("/users"), None),
        (Method::POST, a.path("/users"), Some(json!({ "name": "x" }))),
        (Method::GET, a.path(&format!("/users/{user}")), None),
        (
            Method::PATCH,
            a.path(&format!("/users/{user}")),
            Some(json!({ "name": "x" })),
        ),
        (Method::DELETE, a.path(&format!("/users/{user}")), None),
        (
            Method::POST,
            a.path(&format!("/users/{user}/deactivate")),
            None,
        ),
        (
            Method::POST,
            a.path(&format!("/users/{user}/reactivate")),
            None,
        ),
        (Method::GET, a.path("/rooms"), None),
        (Method::POST, a.path("/rooms"), Some(json!({ "name": "x" }))),
        (Method::GET, a.path(&format!("/rooms/{room}")), None),
        (
            Method::PATCH,
            a.path(&format!("/rooms/{room}")),
            Some(json!({ "name": "x" })),
        ),
        (Method::DELETE, a.path(&format!("/rooms/{room}")), None),
        (Method::GET, a.path("/api-keys"), None),
        (
            Method::POST,
            a.path("/api-keys"),
            Some(json!({ "name": "x" })),
        ),
        (Method::DELETE, a.path(&format!("/api-keys/{key}")), None),
        (Method::GET, a.path("/settings"), None),
        (
            Method::PATCH,
            a.path("/settings"),
            Some(json!({ "custom_fields": {} })),
        ),
    ];
    let b_user = t.user(&b, json!({ "name": "B" })).await;
    let b_token = b_user["token"].as_str().unwrap();
    for (method, path, body) in &a_routes {
        for cred in [b.key.as_str(), b_token] {
            let got = t.call(method.clone(), path, Some(cred), body.clone()).await;
            assert_error(&got, StatusCode::NOT_FOUND, "NOT_FOUND", None);
        }
    }
    // A's ids under B's account name nothing either.
    let b_routes = [
        (Method::GET, b.path(&format!("/users/{user}"))),
        (Method::DELETE, b.path(&format!("/users/{user}"))),
        (Method::GET, b.path(&format!("/rooms/{room}"))),
        (Method::DELETE, b.path(&format!("/rooms/{room}"))),
        (Method::DELETE, b.path(&format!("/api-keys/{key}"))),
    ];
    for (method, path) in b_routes {
        let got = t.call(method, &path, Some(&b.key), None).await;
        assert_error(&got, StatusCode::NOT_FOUND, "NOT_FOUND", None);
    }
    // Nothing of A's changed.
    let (status, u) = t.get(&a.path(&format!("/users/{user}")), user_token).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(u["data"]["user"]["name"], "U");
    assert_eq!(
        t.get(&a.path(&format!("/rooms/{room}")), &a.key).await.0,
        StatusCode::OK
    );
    assert_eq!(t.user_count(&a).await, 1);
}

#[tokio::test]
async fn requests_without_credentials_are_unauthorized() {
    let t = TestApp::spawn().await;
    let a = t.account("a").await;
    let got = t.call(Method::GET, &a.path("/users"), None, None).await;
    assert_error(&got, StatusCode::UNAUTHORIZED, "UNAUTHORIZED", None);
    let got = t.get(&a.path("/users"), "garbage").await;
    assert_error(&got, StatusCode::UNAUTHORIZED, "UNAUTHORIZED", None);
    let got = t.get(&a.path("/users"), "a.b.c").await;
    assert_error(&got, StatusCode::UNAUTHORIZED, "UNAUTHORIZED", None);
}

/// CollabKit's credential form: `Authorization: Bearer base64(accountId:apiKey)`.
#[tokio::test]
async fn collabkits_base64_account_and_key_credential_is_accepted_on_its_own_account() {
    use base64::Engine;
    let app = TestApp::spawn().await;
    let a = app.account("a").await;
    let b = app.account("b").await;
    let cred = |account: &str, key: &str| {
        base64::engine::general_purpose::STANDARD.encode(format!("{account}:{key}"))
    };
    let own = cred(&a.id, &a.key);
    let (status, res) = app
        .post(&a.path("/users"), &own, json!({ "name": "Alice" }))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{res}");
    // The pair names another account than the path: not found, and a
    // revoked or garbled key inside the pair is not valid.
    let (status, _) = app.get(&b.path("/users"), &own).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app.get(&b.path("/users"), &cred(&b.id, &a.key)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app.get(&a.path("/users"), &cred(&a.id, "rk_nothing")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(app.user_count(&a).await, 1);
}
