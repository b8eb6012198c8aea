//! The four vendors' create-user flows, reads, changes and erasure.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_error};

/// Verifies a JWT against the server's JWKS with ed25519-dalek, independently
/// of the JWT library the server uses, and returns its header and claims.
pub async fn verify_with_jwks(t: &TestApp, token: &str) -> (Value, Value) {
    let jwks: Value = reqwest::get(format!("{}/.well-known/jwks.json", t.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3);
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    assert_eq!(header["alg"], "EdDSA");
    let jwk = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == header["kid"])
        .expect("the token's kid is published in the JWKS");
    assert_eq!(jwk["kty"], "OKP");
    assert_eq!(jwk["crv"], "Ed25519");
    let x: [u8; 32] = URL_SAFE_NO_PAD
        .decode(jwk["x"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    let key = VerifyingKey::from_bytes(&x).unwrap();
    let sig: [u8; 64] = URL_SAFE_NO_PAD
        .decode(parts[2])
        .unwrap()
        .try_into()
        .unwrap();
    let signed = format!("{}.{}", parts[0], parts[1]);
    key.verify(signed.as_bytes(), &Signature::from_bytes(&sig))
        .expect("signature verifies against the JWKS");
    (header, claims)
}

#[tokio::test]
async fn the_collabkit_example_works_verbatim() {
    let t = TestApp::spawn().await;
    let a = t.account("acme").await;
    let room = t.room(&a, json!({ "name": "Standup" })).await;
    let res = t
        .client
        .post(format!("{}/v1/accounts/{}/users", t.base, a.id))
        .header("Authorization", format!("Bearer {}", a.key))
        .header("Content-Type", "application/json")
        .body(format!(
            r#"{{
    "name": "Alice",
    "roomId": "{room}",
    "profilePicture": "https://example.com/alice.png",
    "customId": "alice-001"
  }}"#
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["type"], "response");
    assert_eq!(body["success"], true);
    assert_eq!(body["description"], "User created");
    assert_eq!(body["error"], Value::Null);
    let user = &body["data"]["user"];
    assert_eq!(user["room_id"], room.as_str());
    assert_eq!(user["name"], "Alice");
    assert_eq!(user["profile_picture"], "https://example.com/alice.png");
    assert_eq!(user["custom_id"], "alice-001");
    assert_eq!(user["status"], "offline");
    let created = user["created_at"].as_str().unwrap();
    assert!(
        time::OffsetDateTime::parse(created, &time::format_description::well_known::Rfc3339)
            .is_ok()
            && created.ends_with('Z')
            && created.len() == "2026-05-29T10:05:00.000Z".len(),
        "{created}"
    );
    let token = body["data"]["token"].as_str().unwrap();
    let (header, claims) = verify_with_jwks(&t, token).await;
    assert!(header["kid"].is_string());
    assert_eq!(claims["accountId"], a.id.as_str());
    assert_eq!(claims["userId"], user["id"]);
    assert_eq!(claims["roomId"], room.as_str());
    assert_eq!(claims["typ"], "user");
    let exp = claims["exp"].as_i64().unwrap();
    let iat = claims["iat"].as_i64().unwrap();
    assert_eq!(exp - iat, 90 * 24 * 3600);
    assert!(claims["jti"].is_string());

    // The user reads themself with that token.
    let uid = user["id"].as_str().unwrap();
    let (status, me) = t.get(&a.path(&format!("/users/{uid}")), token).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["data"]["user"]["custom_id"], "alice-001");
    // The room now lists Alice as a member.
    let (_, listed) = t
        .get(&a.path(&format!("/users?room_id={room}")), &a.key)
        .await;
    assert_eq!(listed["data"]["users"][0]["id"], uid);
}

#[tokio::test]
async fn every_cometchat_field_round_trips() {
    let t = TestApp::spawn().await;
    let a = t.account("acme").await;
    let data = t
        .user(
            &a,
            json!({
                "uid": "cometchat-uid-6",
                "name": "Barry Allen",
                "avatar": "https://assets.cometchat.io/sampleapp/v2/groups/cometchat-guid-1.webp",
                "link": "https://cometchat.com",
                "role": "bot",
                "statusMessage": "Running",
                "metadata": { "@private": { "email": "user@email.com", "contactNumber": "0123456789" }, "gender": "Male" },
                "tags": ["Engineer", "manager"],
                "withAuthToken": true
            }),
        )
        .await;
    let u = &data["user"];
    assert_eq!(u["custom_id"], "cometchat-uid-6");
    assert_eq!(u["name"], "Barry Allen");
    assert_eq!(
        u["profile_picture"],
        "https://assets.cometchat.io/sampleapp/v2/groups/cometchat-guid-1.webp"
    );
    assert_eq!(u["link"], "https://cometchat.com");
    assert_eq!(u["roles"], json!(["bot"]));
    assert_eq!(u["status_message"], "Running");
    assert_eq!(u["metadata"]["gender"], "Male");
    assert_eq!(u["metadata"]["@private"]["contactNumber"], "0123456789");
    assert_eq!(u["tags"], json!(["Engineer", "manager"]));
    assert!(data["token"].as_str().is_some());

    // Read back: the API key sees @private, the user themself does not.
    let id = u["id"].as_str().unwrap();
    let (_, by_key) = t.get(&a.path(&format!("/users/{id}")), &a.key).await;
    assert_eq!(
        by_key["data"]["user"]["metadata"]["@private"]["email"],
        "user@email.com"
    );
    let (_, by_self) = t
        .get(
            &a.path(&format!("/users/{id}")),
            data["token"].as_str().unwrap(),
        )
        .await;
    assert_eq!(by_self["data"]["user"]["metadata"]["gender"], "Male");
    assert!(
        by_self["data"]["user"]["metadata"]
            .get("@private")
            .is_none(),
        "{by_self}"
    );
}

#[tokio::test]
async fn every_rocketchat_field_round_trips() {
    let t = TestApp::spawn().await;
    let a = t.account("acme").await;
    let (status, body) = t
        .patch(
            &a.path("/settings"),
            &a.key,
            json!({ "custom_fields": {
                "team": { "type": "string", "required": false, "max_length": 40, "private": false },
                "salary": { "type": "number", "private": true }
            }}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let lobby = t
        .room(&a, json!({ "name": "Lobby", "is_default": true }))
        .await;
    let data = t
        .user(
            &a,
            json!({
                "email": "Name@Example.com",
                "password": "correct horse battery",
                "username": "uniqueusername",
                "name": "name",
                "active": false,
                "nickname": "nick",
                "bio": "I build things",
                "joinDefaultChannels": true,
                "statusText": "away for lunch",
                "roles": ["admin", "user"],
                "requirePasswordChange": true,
                "sendWelcomeEmail": false,
                "verified": true,
                "customFields": { "team": "core", "salary": 100 }
            }),
        )
        .await;
    let u = &data["user"];
    assert_eq!(u["email"], "Name@Example.com");
    assert_eq!(u["email_verified"], true);
    assert_eq!(u["username"], "uniqueusername");
    assert_eq!(u["active"], false);
    assert!(u["deactivated_at"].is_string());
    assert_eq!(u["nickname"], "nick");
    assert_eq!(u["bio"], "I build things");
    assert_eq!(u["status_message"], "away for lunch");
    assert_eq!(u["roles"], json!(["admin", "user"]));
    assert_eq!(u["require_password_change"], true);
    assert_eq!(u["has_password"], true);
    assert_eq!(u["custom_fields"], json!({ "team": "core", "salary": 100 }));
    assert!(
        u.get("password").is_none() && u.get("password_hash").is_none(),
        "{u}"
    );
    let text = serde_json::to_string(&data).unwrap();
    assert!(
        !text.contains("correct horse") && !text.contains("argon2"),
        "{text}"
    );
    // joinDefaultChannels put the user in the default room.
    let (_, members) = t
        .get(&a.path(&format!("/users?room_id={lobby}")), &a.key)
        .await;
    assert_eq!(members["data"]["users"][0]["id"], u["id"]);

    // Rocket.Chat's default: roles ["user"], joinDefaultChannels true; and
    // setRandomPassword gives a password nobody sees.
    let other = t
        .user(
            &a,
            json!({ "username": "second", "setRandomPassword": true }),
        )
        .await;
    assert_eq!(other["user"]["roles"], json!(["user"]));
    assert_eq!(other["user"]["has_password"], true);
    assert_eq!(other["user"]["active"], true);
    let (_, members) = t
        .get(&a.path(&format!("/users?room_id={lobby}")), &a.key)
        .await;
    assert_eq!(members["data"]["users"].as_array().unwrap().len(), 2);
    let third = t
        .user(
            &a,
            json!({ "username": "third", "joinDefaultChannels": false }),
        )
        .await;
    let (_, members) = t
        .get(&a.path(&format!("/users?room_id={lobby}")), &a.key)
        .await;
    assert!(
        !members["data"]["users"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["id"] == third["user"]["id"])
    );
}

#[tokio::test]
async fn private_custom_fields_email_and_phone_are_hidden_from_other_users() {
    let t = TestApp::spawn().await;
    let a = t.account("acme").await;
    t.patch(
        &a.path("/settings"),
        &a.key,
        json!({ "customFields": { "salary": { "type": "number", "private": true }, "team": { "type": "string" } } }),
    )
    .await;
    let alice = t
        .user(&a, json!({ "username": "alice", "email": "a@example.com", "phone": "+79671234567", "customFields": { "salary": 1, "team": "x" } }))
        .await;
    let bob = t.user(&a, json!({ "username": "bob" })).await;
    let alice_id = alice["user"]["id"].as_str().unwrap();
    // Bob (a plain user) may not read Alice at all.
    let got = t
        .get(
            &a.path(&format!("/users/{alice_id}")),
            bob["token"].as_str().unwrap(),
        )
        .await;
    assert_error(&got, StatusCode::FORBIDDEN, "FORBIDDEN", None);
    // Alice sees her own email and phone but not private custom fields.
    let (_, own) = t
        .get(
            &a.path(&format!("/users/{alice_id}")),
            alice["token"].as_str().unwrap(),
        )
        .await;
    let own = &own["data"]["user"];
    assert_eq!(own["email"], "a@example.com");
    assert_eq!(own["phone"], "+79671234567");
    assert_eq!(own["custom_fields"], json!({ "team": "x" }));
}

#[tokio::test]
async fn livedigital_phone_and_captcha_token_are_accepted() {
    let t = TestApp::spawn().await;
    let a = t.account("acme").await;
    let data = t
        .user(
            &a,
            json!({ "email": "ld@example.com", "password": "gmi28abc", "username": "Some Username Here", "phone": "+79671234567", "captchaToken": "string" }),
        )
        .await;
    assert_eq!(data["user"]["phone"], "+79671234567");
    assert_eq!(data["user"]["username"], "Some Username Here");
}

#[tokio::test]
async fn snake_case_names_work_as_well_as_camel_case() {
    let t = TestApp::spawn().await;
    let a = t.account("acme").await;
    let room = t.room(&a, json!({ "name": "R" })).await;
    let data = t
        .user(
            &a,
            json!({ "name": "S", "room_id": room, "profile_picture": "https://e.com/p.png", "custom_id": "s-1", "status_message": "hi", "require_password_change": false, "join_default_channels": false }),
        )
        .await;
    assert_eq!(data["user"]["room_id"], room.as_str());
    assert_eq!(data["user"]["custom_id"], "s-1");
    // Two aliases of one field are refused, not silently merged.
    let got = t
        .post(
            &a.path("/users"),
            &a.key,
            json!({ "uid": "x1", "customId": "x2" }),
        )
        .await;
    assert_error(&got, StatusCode::BAD_REQUEST, "VALIDATION_ERROR", None);
}

#[tokio::test]
async fn uniqueness_clashes_name_the_field_and_write_nothing() {
    let t = TestApp::spawn().await;
    let a = t.account("acme").await;
    t.user(
        &a,
        json!({ "customId": "c-1", "username": "Zoë", "email": "Zoe@Example.com" }),
    )
    .await;
    let cases = [
        (json!({ "customId": "c-1", "name": "C" }), "custom_id"),
        (json!({ "username": "zoË" }), "username"),
        (json!({ "email": "zoe@example.COM" }), "email"),
    ];
    for (body, field) in cases {
        let got = t.post(&a.path("/users"), &a.key, body).await;
        assert_error(&got, StatusCode::CONFLICT, "CONFLICT", Some(field));
    }
    assert_eq!(t.user_count(&a).await, 1);
    // The same values are free in another account.
    let b = t.account("other").await;
    t.user(
        &b,
        json!({ "customId": "c-1", "username": "Zoë", "email": "Zoe@Example.com" }),
    )
    .await;
}

#[tokio::test]
async fn an_unknown_room_is_not_found_and_nothing_is_written() {
    let t = TestApp::spawn().await;
    let a = t.account("acme").await;
    for room in ["0199c0de-0000-7000-8000-000000000000", "not-a-uuid"] {
        let got = t
            .post(
                &a.path("/users"),
                &a.key,
                json!({ "name": "A", "roomId": room }),
            )
            .await;
        assert_error(&got, StatusCode::NOT_FOUND, "NOT_FOUND", Some("room_id"));
    }
    // Another account's room names nothing here either.
    let b = t.account("other").await;
    let theirs = t.room(&b, json!({ "name": "theirs" })).await;
    let got = t
        .post(
            &a.path("/users"),
            &a.key,
            json!({ "name": "A", "roomId": theirs }),
        )
        .await;
    assert_error(&got, StatusCode::NOT_FOUND, "NOT_FOUND", Some("room_id"));
    assert_eq!(t.user_count(&a).await, 0);
}

#[tokio::test]
async fn an_unknown_role_is_not_found() {
    let t = TestApp::spawn().await;
    let a = t.account("acme").await;
    let got = t
        .post(
            &a.path("/users"),
            &a.key,
            json!({ "name": "A", "roles": ["user", "wizard"] }),
        )
        .await;
    assert_error(&got, StatusCode::NOT_FOUND, "NOT_FOUND", Some("roles"));
    assert_eq!(t.user_count(&a).await, 0);
}

#[tokio::test]
async fn an_account_holds_at_most_25_bots() {
    let t = TestApp::spawn().await;
    let a = t.account("acme").await;
    for i in 0..25 {
        t.user(
            &a,
            json!({ "uid": format!("bot-{i}"), "name": "B", "role": "bot" }),
        )
        .await;
    }
    let got = t
        .post(
            &a.path("/users"),
            &a.key,
            json!({ "uid": "bot-25", "name": "B", "role": "bot" }),
        )
        .await;
    assert_error(&got, StatusCode::CONFLICT, "CONFLICT", Some("roles"));
    assert_eq!(t.user_count(&a).await, 25);
}

#[tokio::test]
async fn list_filters_and_pagination() {
    let t = TestApp::spawn().await;
    let a = t.account("acme").await;
    let room = t.room(&a, json!({ "name": "R" })).await;
    let mut ids = Vec::new();
    for i in 0..7 {
        let body = if i % 2 == 0 {
            json!({ "name": format!("Even Person {i}"), "tags": ["even"], "roomId": room })
        } else {
            json!({ "name": format!("Odd Person {i}"), "tags": ["odd"], "role": "bot" })
        };
        ids.push(
            t.user(&a, body).await["user"]["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    // Keyset pages of 3: 3 + 3 + 1, in creation order, no repeats.
    let mut seen = Vec::new();
    let mut path = a.path("/users?limit=3");
    loop {
        let (status, body) = t.get(&path, &a.key).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        for u in body["data"]["users"].as_array().unwrap() {
            seen.push(u["id"].as_str().unwrap().to_owned());
        }
        match body["data"]["next_cursor"].as_str() {
            Some(c) => path = a.path(&format!("/users?limit=3&cursor={c}")),
            None => break,
        }
    }
    assert_eq!(seen, ids);
    let count = |body: &Value| body["data"]["users"].as_array().unwrap().len();
    let (_, b) = t.get(&a.path("/users?tag=even"), &a.key).await;
    assert_eq!(count(&b), 4);
    let (_, b) = t.get(&a.path("/users?role=bot"), &a.key).await;
    assert_eq!(count(&b), 3);
    let (_, b) = t
        .get(&a.path(&format!("/users?room_id={room}&tag=even")), &a.key)
        .await;
    assert_eq!(count(&b), 4);
    let (_, b) = t.get(&a.path("/users?status=offline"), &a.key).await;
    assert_eq!(count(&b), 7);
    let (_, b) = t.get(&a.path("/users?status=online"), &a.key).await;
    assert_eq!(count(&b), 0);
    let (_, b) = t.get(&a.path("/users?q=odd%20PERSON"), &a.key).await;
    assert_eq!(count(&b), 3);
    let (_, b) = t.get(&a.path("/users?q=%25"), &a.key).await;
    assert_eq!(count(&b), 0, "LIKE wildcards in q are literal");
    // Bad parameters are refused, naming the parameter.
    for (q, field) in [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("status=busy", "status"),
        ("cursor=zz", "cursor"),
        ("sort=name", "sort"),
    ] {
        let got = t.get(&a.path(&format!("/users?{q}")), &a.key).await;
        assert_error(
            &got,
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
            Some(field),
        );
    }
}

#[tokio::test]
async fn patch_changes_clears_and_validates() {
    let t = TestApp::spawn().await;
    let a = t.account("acme").await;
    let d = t
        .user(
            &a,
            json!({ "name": "A", "bio": "old", "tags": ["x"], "username": "alpha" }),
        )
        .await;
    let id = d["user"]["id"].as_str().unwrap();
    let (status, body) = t
        .patch(&a.path(&format!("/users/{id}")), &a.key, json!({ "name": "B", "bio": null, "tags": ["y", "z"], "avatar": "https://e.com/b.png" }))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let u = &body["data"]["user"];
    assert_eq!(u["name"], "B");
    assert_eq!(u["bio"], Value::Null);
    assert_eq!(u["tags"], json!(["y", "z"]));
    assert_eq!(u["profile_picture"], "https://e.com/b.png");
    assert_ne!(u["updated_at"], d["user"]["updated_at"]);
    let (_, b) = t.get(&a.path("/users?tag=x"), &a.key).await;
    assert_eq!(b["data"]["users"].as_array().unwrap().len(), 0);
    let (_, b) = t.get(&a.path("/users?tag=z"), &a.key).await;
    assert_eq!(b["data"]["users"].as_array().unwrap().len(), 1);
    // A refused change changes nothing.
    let got = t
        .patch(
            &a.path(&format!("/users/{id}")),
            &a.key,
            json!({ "name": "C", "link": "ftp://x" }),
        )
        .await;
    assert_error(
        &got,
        StatusCode::BAD_REQUEST,
        "VALIDATION_ERROR",
        Some("link"),
    );
    t.user(&a, json!({ "username": "taken" })).await;
    let got = t
        .patch(
            &a.path(&format!("/users/{id}")),
            &a.key,
            json!({ "name": "C", "username": "TAKEN" }),
        )
        .await;
    assert_error(&got, StatusCode::CONFLICT, "CONFLICT", Some("username"));
    let (_, now) = t.get(&a.path(&format!("/users/{id}")), &a.key).await;
    assert_eq!(now["data"]["user"]["name"], "B");
    assert_eq!(now["data"]["user"]["username"], "alpha");
    // A user edits their own profile, but not their roles.
    let token = d["token"].as_str().unwrap();
    let (status, _) = t
        .patch(
            &a.path(&format!("/users/{id}")),
            token,
            json!({ "nickname": "me" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let got = t
        .patch(
            &a.path(&format!("/users/{id}")),
            token,
            json!({ "roles": ["admin"] }),
        )
        .await;
    assert_error(&got, StatusCode::FORBIDDEN, "FORBIDDEN", None);
    let (_, now) = t.get(&a.path(&format!("/users/{id}")), &a.key).await;
    assert_eq!(now["data"]["user"]["roles"], json!(["user"]));
}

#[tokio::test]
async fn deactivation_ends_tokens_for_good_and_deletion_erases() {
    let t = TestApp::spawn().await;
    let a = t.account("acme").await;
    let d = t.user(&a, json!({ "name": "A", "tags": ["t"] })).await;
    let id = d["user"]["id"].as_str().unwrap();
    let token = d["token"].as_str().unwrap();
    let me = a.path(&format!("/users/{id}"));
    assert_eq!(t.get(&me, token).await.0, StatusCode::OK);
    let (status, body) = t
        .post(
            &a.path(&format!("/users/{id}/deactivate")),
            &a.key,
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["user"]["active"], false);
    assert_error(
        &t.get(&me, token).await,
        StatusCode::UNAUTHORIZED,
        "UNAUTHORIZED",
        None,
    );
    let (status, body) = t
        .post(
            &a.path(&format!("/users/{id}/reactivate")),
            &a.key,
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["user"]["active"], true);
    assert_eq!(body["data"]["user"]["deactivated_at"], Value::Null);
    assert_error(
        &t.get(&me, token).await,
        StatusCode::UNAUTHORIZED,
        "UNAUTHORIZED",
        None,
    );

    let (status, body) = t.delete(&me, &a.key).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["success"], true);
    assert_error(
        &t.get(&me, &a.key).await,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        None,
    );
    assert_error(
        &t.delete(&me, &a.key).await,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        None,
    );
    let (_, b) = t.get(&a.path("/users?tag=t"), &a.key).await;
    assert_eq!(b["data"]["users"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn a_settings_change_applies_to_the_very_next_create() {
    let t = TestApp::spawn().await;
    let a = t.account("acme").await;
    // The first create reads (and may keep) the settings: no custom fields.
    t.user(&a, json!({ "name": "First" })).await;
    let got = t
        .post(
            &a.path("/users"),
            &a.key,
            json!({ "name": "Early", "customFields": { "team": "core" } }),
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
            json!({ "custom_fields": { "team": { "type": "string" } } }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let made = t
        .user(
            &a,
            json!({ "name": "Late", "customFields": { "team": "core" } }),
        )
        .await;
    assert_eq!(made["user"]["custom_fields"], json!({ "team": "core" }));
    // And a removal too: the field is refused again at once.
    let (status, body) = t
        .patch(
            &a.path("/settings"),
            &a.key,
            json!({ "custom_fields": { "team": null } }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let got = t
        .post(
            &a.path("/users"),
            &a.key,
            json!({ "name": "Later", "customFields": { "team": "core" } }),
        )
        .await;
    assert_error(
        &got,
        StatusCode::BAD_REQUEST,
        "VALIDATION_ERROR",
        Some("custom_fields.team"),
    );
}

/// Every vendor requires a name: a user with nothing to show is refused,
/// naming `name`, and nothing is written; a username stands in for the
/// name, an address (private) does not.
#[tokio::test]
async fn a_name_is_required_unless_a_username_or_an_email_is_given() {
    let t = TestApp::spawn().await;
    let a = t.account("acme").await;
    for body in [json!({}), json!({ "customId": "c-1", "tags": ["x"] })] {
        let got = t.post(&a.path("/users"), &a.key, body).await;
        assert_error(
            &got,
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
            Some("name"),
        );
    }
    assert_eq!(t.user_count(&a).await, 0);
    let by_username = t.user(&a, json!({ "username": "kate" })).await;
    assert_eq!(by_username["user"]["name"], "kate");
    let by_email = t.user(&a, json!({ "email": "kate@example.com" })).await;
    assert_eq!(by_email["user"]["name"], Value::Null);
    let named = t
        .user(&a, json!({ "username": "kim", "name": "Kim K" }))
        .await;
    assert_eq!(named["user"]["name"], "Kim K");
}
