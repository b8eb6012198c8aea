//! User tokens: strict verification. Every forged or altered token is 401.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signer, SigningKey};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_error};

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
}

fn parts(token: &str) -> (Value, Value) {
    let p: Vec<&str> = token.split('.').collect();
    (
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p[0]).unwrap()).unwrap(),
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p[1]).unwrap()).unwrap(),
    )
}

fn sign_with(key: &SigningKey, header: &Value, claims: &Value) -> String {
    let signed = format!("{}.{}", b64(header), b64(claims));
    let sig = key.sign(signed.as_bytes());
    format!("{signed}.{}", URL_SAFE_NO_PAD.encode(sig.to_bytes()))
}

#[tokio::test]
async fn forged_and_altered_tokens_are_refused() {
    let t = TestApp::spawn().await;
    let a = t.account("acme").await;
    let d = t.user(&a, json!({ "name": "A" })).await;
    let token = d["token"].as_str().unwrap();
    let id = d["user"]["id"].as_str().unwrap();
    let me = a.path(&format!("/users/{id}"));
    refuse_forgeries_of(&t, &me, token).await;
}

#[tokio::test]
async fn forged_and_altered_access_tokens_and_refresh_tokens_as_bearer_are_refused() {
    let t = TestApp::spawn().await;
    let a = t.account("acme").await;
    let id = crate::sessions::member(&t, &a, "alice", json!({})).await;
    let me = a.path(&format!("/users/{id}"));
    let (access, refresh) = crate::sessions::session(&t, &a, "alice").await;
    refuse_forgeries_of(&t, &me, &access).await;
    for bad in [refresh.as_str(), "rt_", "Bearer", "a.b.c"] {
        let got = t.get(&me, bad).await;
        assert_error(&got, StatusCode::UNAUTHORIZED, "UNAUTHORIZED", None);
    }
    assert_eq!(crate::sessions::ws(&t, &refresh).await.err(), Some(401));
    // The access token of another account's user names nothing here.
    let b = t.account("other").await;
    let got = t.get(&b.path(&format!("/users/{id}")), &access).await;
    assert_error(&got, StatusCode::NOT_FOUND, "NOT_FOUND", None);
}

/// Checks the forged-token catalogue against a genuine `token` that reads `me`.
async fn refuse_forgeries_of(t: &TestApp, me: &str, token: &str) {
    assert_eq!(t.get(me, token).await.0, StatusCode::OK);
    let (header, claims) = parts(token);
    let sig = token.rsplit('.').next().unwrap();
    let foreign = SigningKey::from_bytes(&[7u8; 32]);
    let with = |f: &dyn Fn(&mut Value)| {
        let mut c = claims.clone();
        f(&mut c);
        c
    };
    let mut forged = vec![
        // alg none, no signature.
        format!(
            "{}.{}.",
            b64(&json!({ "alg": "none", "typ": "JWT" })),
            b64(&claims)
        ),
        // HS256 "signed" with the public key.
        format!(
            "{}.{}.{sig}",
            b64(&json!({ "alg": "HS256", "typ": "JWT", "kid": header["kid"] })),
            b64(&claims)
        ),
        // A foreign Ed25519 key under our kid.
        sign_with(&foreign, &header, &claims),
        // Tampered claims under the original signature.
        format!(
            "{}.{}.{sig}",
            b64(&header),
            b64(&with(
                &|c| c["userId"] = json!("0199c0de-0000-7000-8000-000000000000")
            ))
        ),
        // Unknown kid.
        format!(
            "{}.{}.{sig}",
            b64(&json!({ "alg": "EdDSA", "typ": "JWT", "kid": "nope" })),
            b64(&claims)
        ),
    ];
    // Bad claims signed with the server's own key: only claim validation
    // stands between them and acceptance. (PKCS#8 v1 Ed25519: the seed is
    // the last 32 bytes.)
    let record = t.app.store.signing_keys().await.unwrap().pop().unwrap();
    assert_eq!(header["kid"], record.kid.as_str());
    let seed: [u8; 32] = record.private_der[record.private_der.len() - 32..]
        .try_into()
        .unwrap();
    let ours = SigningKey::from_bytes(&seed);
    assert_eq!(
        t.get(me, &sign_with(&ours, &header, &claims)).await.0,
        StatusCode::OK,
        "re-signing the genuine claims must work"
    );
    for bad in [
        with(&|c| c["exp"] = json!(c["exp"].to_string())),
        with(&|c| c["aud"] = json!("someone-else")),
        with(&|c| c["iss"] = json!("someone-else")),
        with(&|c| c["typ"] = json!("refresh")),
        with(&|c| c["typ"] = json!("guest")),
        with(&|c| c["sub"] = json!("someone")),
        with(&|c| {
            c.as_object_mut().unwrap().remove("typ");
        }),
        with(&|c| {
            c.as_object_mut().unwrap().remove("iat");
        }),
        with(&|c| {
            c.as_object_mut().unwrap().remove("aud");
        }),
        with(&|c| c["jti"] = json!("0199c0de-0000-7000-8000-000000000000")),
        with(&|c| {
            c.as_object_mut()
                .unwrap()
                .remove("exp")
                .map(|_| ())
                .unwrap_or(())
        }),
        with(&|c| c["exp"] = json!(1_000_000)),
        with(&|c| c["nbf"] = json!(c["iat"].as_i64().unwrap() + 3600)),
        // Issued a year from now (#18 item 9).
        with(&|c| c["iat"] = json!(c["iat"].as_i64().unwrap() + 365 * 24 * 3600)),
    ] {
        forged.push(sign_with(&ours, &header, &bad));
    }
    for f in &forged {
        let got = t.get(me, f).await;
        assert_error(&got, StatusCode::UNAUTHORIZED, "UNAUTHORIZED", None);
        assert_eq!(crate::sessions::ws(t, f).await.err(), Some(401), "{f}");
    }
    // The genuine token still works.
    assert_eq!(t.get(me, token).await.0, StatusCode::OK);
}

#[tokio::test]
async fn a_user_token_is_bound_to_its_user_and_account() {
    let t = TestApp::spawn().await;
    let a = t.account("acme").await;
    let alice = t.user(&a, json!({ "name": "A" })).await;
    let bob = t.user(&a, json!({ "name": "B" })).await;
    let bob_id = bob["user"]["id"].as_str().unwrap();
    let got = t
        .get(
            &a.path(&format!("/users/{bob_id}")),
            alice["token"].as_str().unwrap(),
        )
        .await;
    assert_error(&got, StatusCode::FORBIDDEN, "FORBIDDEN", None);
    let got = t
        .post(
            &a.path("/users"),
            alice["token"].as_str().unwrap(),
            json!({ "name": "C" }),
        )
        .await;
    assert_error(&got, StatusCode::FORBIDDEN, "FORBIDDEN", None);
    let got = t
        .get(&a.path("/users"), alice["token"].as_str().unwrap())
        .await;
    assert_error(&got, StatusCode::FORBIDDEN, "FORBIDDEN", None);
    assert_eq!(t.user_count(&a).await, 2);
    // An admin user may do what their role allows.
    let admin = t
        .user(&a, json!({ "name": "Root", "roles": ["admin"] }))
        .await;
    let (status, body) = t
        .post(
            &a.path("/users"),
            admin["token"].as_str().unwrap(),
            json!({ "name": "D" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, _) = t
        .get(
            &a.path(&format!("/users/{bob_id}")),
            admin["token"].as_str().unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
}

/// #17 item 3: two nodes starting at the same instant on an empty database
/// each created a signing key and refused the other's tokens until
/// restarted. One live key is kept by the database: the node that loses
/// the race takes the winner's, and tokens work on both.
#[tokio::test]
async fn nodes_starting_at_once_on_an_empty_database_share_one_signing_key() {
    for _ in 0..5 {
        let (url, dir) = crate::helpers::fresh_database_url().await;
        // The schema first: the race is the key's (nodes on one SQLite file
        // are not a deployment; on PostgreSQL migrations take a lock).
        let config = roster::config::Config {
            database_url: url.clone(),
            ..Default::default()
        };
        drop(roster::app::open_store(&config).await.unwrap());
        let (one, two) = tokio::join!(
            TestApp::spawn_on(url.clone(), dir, |_| {}),
            TestApp::spawn_on(url, None, |_| {})
        );
        let jwks = |t: &TestApp| {
            let url = format!("{}/.well-known/jwks.json", t.base);
            async move {
                reqwest::get(url)
                    .await
                    .unwrap()
                    .json::<Value>()
                    .await
                    .unwrap()
            }
        };
        let (k1, k2) = (jwks(&one).await, jwks(&two).await);
        assert_eq!(k1, k2, "both nodes publish the same keys");
        assert_eq!(k1["keys"].as_array().unwrap().len(), 1, "{k1}");
        let a = one.account("acme").await;
        let d = one.user(&a, json!({ "name": "Ann" })).await;
        let me = a.path(&format!("/users/{}", d["user"]["id"].as_str().unwrap()));
        let (s, b) = two.get(&me, d["token"].as_str().unwrap()).await;
        assert_eq!(
            s,
            StatusCode::OK,
            "a token of one node works on the other: {b}"
        );
    }
}
