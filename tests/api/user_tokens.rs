//! Per-user auth tokens (CometChat) and revocation through HTTP: issue,
//! list, revoke one, revoke all, the 100-token cap, live sockets closing,
//! and signing-key rotation.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{OPERATOR_KEY, TestApp, assert_error};
use crate::sessions::{PASSWORD, closed_with, member, session, ws};

fn kid(token: &str) -> String {
    use base64::Engine;
    let h = token.split('.').next().unwrap();
    let v: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(h)
            .unwrap(),
    )
    .unwrap();
    v["kid"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn tokens_are_issued_listed_and_revoked_one_or_all() {
    let t = TestApp::spawn().await;
    let a = t.account("acme").await;
    let room = t.room(&a, json!({ "name": "Standup" })).await;
    let created = t
        .user(&a, json!({ "name": "A", "withAuthToken": true }))
        .await;
    let id = created["user"]["id"].as_str().unwrap();
    let first = created["token"].as_str().unwrap();
    let tokens = a.path(&format!("/users/{id}/tokens"));
    let me = a.path(&format!("/users/{id}"));

    let (s, b) = t.post(&tokens, &a.key, json!({ "roomId": room })).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let second = b["data"]["token"].as_str().unwrap().to_owned();
    let info = &b["data"]["token_info"];
    let second_id = info["id"].as_str().unwrap().to_owned();
    assert!(info["created_at"].as_str().unwrap().ends_with('Z'));
    assert!(info["expires_at"].as_str().is_some());
    assert_eq!(info["revoked_at"], Value::Null);
    assert_eq!(t.get(&me, &second).await.0, StatusCode::OK);
    // Without a body, too.
    let (s, b) = t
        .call(reqwest::Method::POST, &tokens, Some(&a.key), None)
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let third = b["data"]["token"].as_str().unwrap().to_owned();

    let (s, b) = t.get(&tokens, &a.key).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let listed: Vec<&str> = b["data"]["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(listed.len(), 3);
    assert_eq!(listed[1], second_id);
    // The user lists their own tokens.
    assert_eq!(t.get(&tokens, first).await.0, StatusCode::OK);

    let mut socket = ws(&t, &second).await.expect("upgrade");
    let mut bystander = ws(&t, &third).await.expect("upgrade");
    let (s, b) = t.delete(&format!("{tokens}/{second_id}"), &a.key).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert!(b["data"]["token_info"]["revoked_at"].as_str().is_some());
    assert_eq!(closed_with(&mut socket).await, 1008);
    assert_error(
        &t.get(&me, &second).await,
        StatusCode::UNAUTHORIZED,
        "UNAUTHORIZED",
        None,
    );
    assert_eq!(ws(&t, &second).await.err(), Some(401));
    assert_eq!(t.get(&me, &third).await.0, StatusCode::OK);
    let (_, b) = t.get(&tokens, &a.key).await;
    assert_eq!(b["data"]["tokens"].as_array().unwrap().len(), 2);

    // Unknown ids are 404.
    let got = t
        .delete(
            &format!("{tokens}/0199c0de-0000-7000-8000-000000000000"),
            &a.key,
        )
        .await;
    assert_error(&got, StatusCode::NOT_FOUND, "NOT_FOUND", None);
    let got = t
        .post(
            &a.path("/users/0199c0de-0000-7000-8000-000000000000/tokens"),
            &a.key,
            json!({}),
        )
        .await;
    assert_error(&got, StatusCode::NOT_FOUND, "NOT_FOUND", None);
    let got = t
        .post(
            &tokens,
            &a.key,
            json!({ "room_id": "0199c0de-0000-7000-8000-000000000000" }),
        )
        .await;
    assert_error(&got, StatusCode::NOT_FOUND, "NOT_FOUND", Some("room_id"));

    // Everything issued until now, sessions included.
    member(&t, &a, "bob", json!({})).await;
    let (_, bob) = t.get(&a.path("/users?q=bob"), &a.key).await;
    let bob_id = bob["data"]["users"][0]["id"].as_str().unwrap().to_owned();
    let (bob_access, _) = session(&t, &a, "bob").await;
    let (s, _) = t
        .delete(&a.path(&format!("/users/{bob_id}/tokens")), &a.key)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        t.get(&a.path(&format!("/users/{bob_id}")), &bob_access)
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    let (s, b) = t.delete(&tokens, &a.key).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(closed_with(&mut bystander).await, 1008);
    for tok in [first, third.as_str()] {
        assert_eq!(t.get(&me, tok).await.0, StatusCode::UNAUTHORIZED);
    }
    let (_, b) = t.get(&tokens, &a.key).await;
    assert_eq!(b["data"]["tokens"], json!([]));
    // New tokens work again, and a new login too.
    let (s, b) = t.post(&tokens, &a.key, json!({})).await;
    assert_eq!(s, StatusCode::CREATED);
    assert_eq!(
        t.get(&me, b["data"]["token"].as_str().unwrap()).await.0,
        StatusCode::OK
    );
    session(&t, &a, "bob").await;
}

#[tokio::test]
async fn the_hundred_and_first_token_revokes_the_oldest() {
    let t = TestApp::spawn().await;
    let a = t.account("acme").await;
    let created = t.user(&a, json!({ "name": "A" })).await;
    let id = created["user"]["id"].as_str().unwrap();
    let first = created["token"].as_str().unwrap();
    let me = a.path(&format!("/users/{id}"));
    let tokens = a.path(&format!("/users/{id}/tokens"));
    let mut issued = Vec::new();
    for _ in 0..99 {
        let (s, b) = t.post(&tokens, &a.key, json!({})).await;
        assert_eq!(s, StatusCode::CREATED);
        issued.push(b["data"]["token"].as_str().unwrap().to_owned());
    }
    assert_eq!(t.get(&me, first).await.0, StatusCode::OK, "100 live tokens");
    let (_, b) = t.get(&format!("{tokens}?limit=100"), &a.key).await;
    assert_eq!(b["data"]["tokens"].as_array().unwrap().len(), 100);
    assert_eq!(b["data"]["next_cursor"], Value::Null);

    let (s, _) = t.post(&tokens, &a.key, json!({})).await;
    assert_eq!(s, StatusCode::CREATED);
    assert_error(
        &t.get(&me, first).await,
        StatusCode::UNAUTHORIZED,
        "UNAUTHORIZED",
        None,
    );
    assert_eq!(t.get(&me, &issued[0]).await.0, StatusCode::OK);
    let (s, _) = t.post(&tokens, &a.key, json!({})).await;
    assert_eq!(s, StatusCode::CREATED);
    assert_eq!(t.get(&me, &issued[0]).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(t.get(&me, &issued[1]).await.0, StatusCode::OK);
    let (_, b) = t.get(&format!("{tokens}?limit=100"), &a.key).await;
    assert_eq!(b["data"]["tokens"].as_array().unwrap().len(), 100);
}

#[tokio::test]
async fn issuing_needs_the_permission_and_reading_others_tokens_too() {
    let t = TestApp::spawn().await;
    let a = t.account("acme").await;
    let alice = t.user(&a, json!({ "name": "A" })).await;
    let bob = t.user(&a, json!({ "name": "B" })).await;
    let admin = t.user(&a, json!({ "name": "R", "roles": ["admin"] })).await;
    let alice_token = alice["token"].as_str().unwrap();
    let alice_id = alice["user"]["id"].as_str().unwrap();
    let bob_id = bob["user"]["id"].as_str().unwrap();
    let bob_tokens = a.path(&format!("/users/{bob_id}/tokens"));
    for got in [
        t.post(
            &a.path(&format!("/users/{alice_id}/tokens")),
            alice_token,
            json!({}),
        )
        .await,
        t.post(&bob_tokens, alice_token, json!({})).await,
        t.get(&bob_tokens, alice_token).await,
        t.delete(&bob_tokens, alice_token).await,
    ] {
        assert_error(&got, StatusCode::FORBIDDEN, "FORBIDDEN", None);
    }
    assert_eq!(
        t.get(
            &a.path(&format!("/users/{bob_id}")),
            bob["token"].as_str().unwrap()
        )
        .await
        .0,
        StatusCode::OK,
        "refusals revoke nothing"
    );
    let (_, read_key) = {
        let (s, b) = t
            .post(
                &a.path("/api-keys"),
                &a.key,
                json!({ "name": "ro", "scope": "read" }),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
        (s, b["data"]["api_key"].as_str().unwrap().to_owned())
    };
    let got = t.post(&bob_tokens, &read_key, json!({})).await;
    assert_error(&got, StatusCode::FORBIDDEN, "FORBIDDEN", None);
    let (s, _) = t
        .post(&bob_tokens, admin["token"].as_str().unwrap(), json!({}))
        .await;
    assert_eq!(s, StatusCode::CREATED);
    // Another account's user is not found.
    let other = t.account("other").await;
    let got = t
        .post(
            &other.path(&format!("/users/{bob_id}/tokens")),
            &other.key,
            json!({}),
        )
        .await;
    assert_error(&got, StatusCode::NOT_FOUND, "NOT_FOUND", None);
}

#[tokio::test]
async fn after_a_key_rotation_old_tokens_verify_and_new_ones_carry_the_new_kid() {
    let t = TestApp::spawn().await;
    let a = t.account("acme").await;
    let id = member(&t, &a, "alice", json!({})).await;
    let me = a.path(&format!("/users/{id}"));
    let (old_access, refresh_token) = session(&t, &a, "alice").await;
    let old_user = t
        .post(&a.path(&format!("/users/{id}/tokens")), &a.key, json!({}))
        .await
        .1["data"]["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let old_kid = kid(&old_access);

    let got = t.post("/v1/keys/rotate", &a.key, json!({})).await;
    assert_error(&got, StatusCode::UNAUTHORIZED, "UNAUTHORIZED", None);
    let (s, b) = t
        .call(
            reqwest::Method::POST,
            "/v1/keys/rotate",
            Some(OPERATOR_KEY),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let new_kid = b["data"]["kid"].as_str().unwrap().to_owned();
    assert_ne!(new_kid, old_kid);

    let (_, jwks) = t
        .call(reqwest::Method::GET, "/.well-known/jwks.json", None, None)
        .await;
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert!(
        kids.contains(&old_kid.as_str()) && kids.contains(&new_kid.as_str()),
        "{jwks}"
    );
    assert!(
        jwks.to_string().find("\"d\"").is_none(),
        "no private part is published"
    );

    for tok in [&old_access, &old_user] {
        assert_eq!(t.get(&me, tok).await.0, StatusCode::OK);
    }
    let (s, b) = t
        .call(
            reqwest::Method::POST,
            &a.path("/auth/refresh"),
            None,
            Some(json!({ "refresh_token": refresh_token })),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(kid(b["data"]["access_token"].as_str().unwrap()), new_kid);
    let created = t.user(&a, json!({ "name": "B" })).await;
    assert_eq!(kid(created["token"].as_str().unwrap()), new_kid);
    let (access, _) = session(&t, &a, "alice").await;
    assert_eq!(kid(&access), new_kid);
    assert_eq!(t.get(&me, &access).await.0, StatusCode::OK);
    let _ = PASSWORD;
}

#[tokio::test]
async fn with_a_master_key_private_keys_are_stored_encrypted() {
    let t = TestApp::spawn_with(|c| {
        c.signing_key_master_key = Some("a master key of thirty-two chars or more".into());
    })
    .await;
    let a = t.account("acme").await;
    let d = t.user(&a, json!({ "name": "A" })).await;
    let me = a.path(&format!("/users/{}", d["user"]["id"].as_str().unwrap()));
    assert_eq!(
        t.get(&me, d["token"].as_str().unwrap()).await.0,
        StatusCode::OK
    );
    t.call(
        reqwest::Method::POST,
        "/v1/keys/rotate",
        Some(OPERATOR_KEY),
        None,
    )
    .await;
    let stored = t.app.store.signing_keys().await.unwrap();
    assert_eq!(stored.len(), 2);
    for k in stored {
        assert!(k.private_der.starts_with(b"roster-sealed-v1:"), "{}", k.kid);
        assert!(k.private_der.len() > 48 + 17);
    }
    assert_eq!(
        t.get(&me, d["token"].as_str().unwrap()).await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_rotation_made_elsewhere_is_picked_up_by_a_running_server() {
    let t = TestApp::spawn().await;
    let a = t.account("acme").await;
    let d = t.user(&a, json!({ "name": "A" })).await;
    let old = d["token"].as_str().unwrap();
    let me = a.path(&format!("/users/{}", d["user"]["id"].as_str().unwrap()));
    // What `roster keys rotate` runs, in process: the binary in a target
    // directory shared with other branches may be another branch's build.
    let new_kid = roster::app::rotate_signing_key(&t.app.config)
        .await
        .unwrap();
    let new_kid = new_kid.as_str();
    assert_ne!(new_kid, kid(old));
    // The server re-reads its keys every minute; a test does not wait.
    t.app.keys.reload(t.app.store.as_ref()).await.unwrap();
    assert_eq!(t.app.keys.active_kid(), new_kid);
    assert_eq!(t.get(&me, old).await.0, StatusCode::OK);
    let fresh = t.user(&a, json!({ "name": "B" })).await;
    assert_eq!(kid(fresh["token"].as_str().unwrap()), new_kid);
}
