//! Regression tests for the security findings of the outside probe: each
//! walks the attack through HTTP and shows where it now stops.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{Account, TestApp, assert_error};
use crate::mail::{Smtp, ask, token_in};
use crate::sessions::{PASSWORD, login, member, session};

async fn editor_role(t: &TestApp, a: &Account) -> String {
    let (s, b) = t
        .post(
            &a.path("/roles"),
            &a.key,
            json!({ "name": "Editor", "permissions": ["edit-other-user-info"] }),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    b["data"]["role"]["id"].as_str().unwrap().to_owned()
}

async fn user_of(t: &TestApp, a: &Account, id: &str) -> Value {
    let (s, b) = t.get(&a.path(&format!("/users/{id}")), &a.key).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    b["data"]["user"].clone()
}

fn headed(mails: &[String], to: &str, subject: &str) -> bool {
    mails
        .iter()
        .any(|m| m.contains(&format!("To: {to}")) && m.contains(&format!("Subject: {subject}")))
}

/// The reported takeover: a user whose role holds only
/// `edit-other-user-info` points an admin's email at their own mailbox,
/// resets the password through it and logs in as the admin. Every step of
/// that path is now closed, while the same editor still edits peers.
#[tokio::test]
async fn an_editor_cannot_take_over_an_admin_through_their_email() {
    let (smtp, t) = Smtp::with_app().await;
    let a = t.account("acme").await;
    let editor = editor_role(&t, &a).await;
    let boss = member(
        &t,
        &a,
        "boss",
        json!({ "roles": ["admin"], "verified": true }),
    )
    .await;
    member(&t, &a, "eve", json!({ "roles": ["user", editor] })).await;
    let (eve, _) = session(&t, &a, "eve").await;
    let boss_path = a.path(&format!("/users/{boss}"));

    // The takeover's first step and every other identity field of the admin.
    for (field, value, named) in [
        ("email", json!("eve+boss@example.com"), "email"),
        ("username", json!("boss2"), "username"),
        ("phone", json!("+14155552671"), "phone"),
        ("customId", json!("boss-2"), "custom_id"),
        ("verified", json!(false), "verified"),
        ("roles", json!(["user"]), "roles"),
    ] {
        let got = t.patch(&boss_path, &eve, json!({ field: value })).await;
        assert_error(&got, StatusCode::FORBIDDEN, "FORBIDDEN", Some(named));
    }
    let after = user_of(&t, &a, &boss).await;
    assert_eq!(after["email"], "boss@example.com");
    assert_eq!(after["username"], "boss");
    assert_eq!(after["custom_id"], "boss-1");
    assert_eq!(after["email_verified"], true);
    assert_eq!(after["roles"], json!(["admin"]));

    // The rest of the path finds nothing to use.
    assert_eq!(ask(&t, &a, "eve+boss@example.com").await.0, StatusCode::OK);
    let (s, _) = login(
        &t,
        &a,
        json!({ "email": "eve+boss@example.com", "password": PASSWORD }),
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);

    // What edit-other-user-info is for still works on the admin…
    let (s, b) = t
        .patch(&boss_path, &eve, json!({ "bio": "runs things" }))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    // …and on a peer the editor out-holds, identity fields included.
    let carl = member(&t, &a, "carl", json!({ "verified": true })).await;
    let (s, b) = t
        .patch(
            &a.path(&format!("/users/{carl}")),
            &eve,
            json!({ "email": "carl@new.example.com" }),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["data"]["user"]["email_verified"], false, "{b}");
    // The old address hears of it at once; no mail so far went to the
    // admin's or the attacker's address.
    let mails = smtp.messages(1).await;
    assert_eq!(mails.len(), 1, "{mails:?}");
    assert!(
        headed(&mails, "carl@example.com", "Your email address was changed"),
        "{mails:?}"
    );
    let flat = mails[0].replace("=\r\n", "").replace("=\n", "");
    assert!(flat.contains("carl@new.example.com"), "{flat}");
}

/// A changed address is unverified again, is sent a verification link when
/// the account verifies addresses, and gets no password reset for an hour;
/// other users' resets go out as before.
#[tokio::test]
async fn a_changed_address_is_verified_again_and_gets_no_reset_for_an_hour() {
    let (smtp, t) = Smtp::with_app().await;
    let a = t.account("acme").await;
    let (s, _) = t
        .patch(
            &a.path("/settings"),
            &a.key,
            json!({ "email": { "verify": true } }),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let dan = member(&t, &a, "dan", json!({ "verified": true })).await;
    member(&t, &a, "zed", json!({ "verified": true })).await;
    let dan_path = a.path(&format!("/users/{dan}"));

    let (s, b) = t
        .patch(&dan_path, &a.key, json!({ "email": "dan@new.example.com" }))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["data"]["user"]["email_verified"], false);
    let mails = smtp.messages(2).await;
    assert!(
        headed(&mails, "dan@example.com", "Your email address was changed"),
        "{mails:?}"
    );
    assert!(
        headed(&mails, "dan@new.example.com", "Confirm your email address"),
        "{mails:?}"
    );

    // A reset for the new address is held back; one for zed, asked after
    // it, arrives — and is the only reset that does.
    assert_eq!(ask(&t, &a, "dan@new.example.com").await.0, StatusCode::OK);
    assert_eq!(ask(&t, &a, "zed@example.com").await.0, StatusCode::OK);
    let mails = smtp.messages(3).await;
    assert!(
        headed(&mails, "zed@example.com", "Reset your password"),
        "{mails:?}"
    );
    assert!(
        !headed(&mails, "dan@new.example.com", "Reset your password"),
        "{mails:?}"
    );
    assert_eq!(smtp.count(), 3);

    // The link sent to the new address verifies it.
    let verify = mails
        .iter()
        .find(|m| m.contains("To: dan@new.example.com"))
        .unwrap();
    let link = format!(
        "{}?token={}",
        a.path("/auth/verify-email"),
        token_in(verify)
    );
    let (s, b) = t.call(Method::GET, &link, None, None).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(user_of(&t, &a, &dan).await["email_verified"], true);

    // Setting the same address again is no change: no mail, still verified.
    let (s, b) = t
        .patch(&dan_path, &a.key, json!({ "email": "DAN@new.example.com" }))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["data"]["user"]["email_verified"], true, "{b}");
    // A refused change leaves storage alone: the guard runs before the write.
    let got = t
        .patch(&dan_path, &a.key, json!({ "email": "not an address" }))
        .await;
    assert_error(
        &got,
        StatusCode::BAD_REQUEST,
        "VALIDATION_ERROR",
        Some("email"),
    );
    assert_eq!(user_of(&t, &a, &dan).await["email"], "DAN@new.example.com");
}

/// #18 item 2: a public room inside a private space was readable, listed
/// and joinable (snapshot, live presence) by a user outside the space.
#[tokio::test]
async fn a_private_space_hides_its_public_rooms_on_every_path() {
    use crate::realtime::{connect, send, wait_for};
    let t = TestApp::spawn().await;
    let a = t.account("acme").await;
    let (s, b) = t
        .post(
            &a.path("/spaces"),
            &a.key,
            json!({ "name": "Board", "visibility": "private" }),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let space = b["data"]["space"]["id"].as_str().unwrap().to_owned();
    let room = t
        .room(
            &a,
            json!({ "name": "Lobby", "space_id": space, "visibility": "public" }),
        )
        .await;
    let insider = t.user(&a, json!({ "name": "In" })).await;
    let outsider = t.user(&a, json!({ "name": "Out" })).await;
    let insider_id = insider["user"]["id"].as_str().unwrap();
    let (s, b) = t
        .call(
            Method::PUT,
            &a.path(&format!("/spaces/{space}/members/{insider_id}")),
            Some(&a.key),
            Some(json!({ "role": "user" })),
        )
        .await;
    assert!(s.is_success(), "{b}");
    let inside = insider["token"].as_str().unwrap();
    let outside = outsider["token"].as_str().unwrap();
    let room_path = a.path(&format!("/rooms/{room}"));
    let listed = |body: &Value| {
        body["data"]["rooms"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["id"] == room.as_str())
    };

    // The space's member sees, lists and joins it.
    assert_eq!(t.get(&room_path, inside).await.0, StatusCode::OK);
    assert!(listed(&t.get(&a.path("/rooms"), inside).await.1));
    let mut ws = connect(&t, inside).await;
    send(&mut ws, json!({ "type": "join", "id": 1, "room_id": room })).await;
    let snap = wait_for(&mut ws, "snapshot", |_| true).await;
    assert_eq!(snap["room_id"], room.as_str());

    // For anyone else it is not there: read, list, REST join, realtime join.
    let got = t.get(&room_path, outside).await;
    assert_error(&got, StatusCode::NOT_FOUND, "NOT_FOUND", None);
    assert!(!listed(&t.get(&a.path("/rooms"), outside).await.1));
    let got = t
        .call(
            Method::POST,
            &format!("{room_path}/join"),
            Some(outside),
            None,
        )
        .await;
    assert_error(&got, StatusCode::NOT_FOUND, "NOT_FOUND", None);
    let (_, members) = t.get(&format!("{room_path}/members"), &a.key).await;
    assert_eq!(
        members["data"]["members"],
        json!([]),
        "the refused join wrote nothing"
    );
    let mut ws = connect(&t, outside).await;
    send(&mut ws, json!({ "type": "join", "id": 2, "room_id": room })).await;
    let e = wait_for(&mut ws, "error", |_| true).await;
    assert_eq!(
        (e["id"].clone(), e["code"].clone()),
        (json!(2), json!("NOT_FOUND"))
    );
}

/// #18 item 5: with their own token a user set or wiped
/// `metadata["@private"]`, the part only servers may see.
#[tokio::test]
async fn a_user_neither_sets_nor_wipes_their_private_metadata() {
    let t = TestApp::spawn().await;
    let a = t.account("acme").await;
    let d = t
        .user(
            &a,
            json!({ "name": "Ann", "metadata": { "@private": { "tier": "gold" }, "theme": "dark" } }),
        )
        .await;
    let id = d["user"]["id"].as_str().unwrap();
    let own = d["token"].as_str().unwrap();
    let me = a.path(&format!("/users/{id}"));

    let got = t
        .patch(
            &me,
            own,
            json!({ "metadata": { "@private": { "tier": "platinum" } } }),
        )
        .await;
    assert_error(
        &got,
        StatusCode::FORBIDDEN,
        "FORBIDDEN",
        Some("metadata.@private"),
    );
    assert_eq!(
        user_of(&t, &a, id).await["metadata"]["@private"]["tier"],
        "gold"
    );

    // Replacing the rest keeps the servers' part.
    let (s, b) = t
        .patch(&me, own, json!({ "metadata": { "theme": "light" } }))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert!(
        b["data"]["user"]["metadata"].get("@private").is_none(),
        "{b}"
    );
    assert_eq!(
        user_of(&t, &a, id).await["metadata"],
        json!({ "@private": { "tier": "gold" }, "theme": "light" })
    );
    // A server still sets it.
    let (s, b) = t
        .patch(
            &me,
            &a.key,
            json!({ "metadata": { "@private": { "tier": "silver" } } }),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(
        user_of(&t, &a, id).await["metadata"]["@private"]["tier"],
        "silver"
    );
}

/// #18 item 6: a token issued to a deactivated user (or with a user created
/// inactive) came alive when the user was reactivated.
#[tokio::test]
async fn no_token_issued_while_a_user_is_deactivated_works_after_reactivation() {
    let t = TestApp::spawn().await;
    let a = t.account("acme").await;
    let d = t.user(&a, json!({ "name": "Ina", "active": false })).await;
    let id = d["user"]["id"].as_str().unwrap();
    let created_with = d["token"].as_str().unwrap().to_owned();
    let me = a.path(&format!("/users/{id}"));

    let got = t.post(&format!("{me}/tokens"), &a.key, json!({})).await;
    assert_error(&got, StatusCode::CONFLICT, "CONFLICT", Some("active"));
    let (_, tokens) = t.get(&format!("{me}/tokens"), &a.key).await;
    assert_eq!(
        tokens["data"]["tokens"].as_array().unwrap().len(),
        1,
        "only the token the user was created with: the refusal wrote nothing"
    );

    let (s, b) = t.post(&format!("{me}/reactivate"), &a.key, json!({})).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(t.get(&me, &created_with).await.0, StatusCode::UNAUTHORIZED);
    // Tokens issued once the user is active work, and reactivating an
    // active user again ends nothing.
    let (s, b) = t.post(&format!("{me}/tokens"), &a.key, json!({})).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let fresh = b["data"]["token"].as_str().unwrap().to_owned();
    assert_eq!(t.get(&me, &fresh).await.0, StatusCode::OK);
    let (s, _) = t.post(&format!("{me}/reactivate"), &a.key, json!({})).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(t.get(&me, &fresh).await.0, StatusCode::OK);
}

/// #18 item 4: the `method` label was the raw request method, so invented
/// methods grew `/metrics` (and memory) without bound, unauthenticated.
#[tokio::test]
async fn invented_methods_and_paths_add_no_metric_series() {
    let t = TestApp::spawn().await;
    let metrics = || async {
        reqwest::get(format!("{}/metrics", t.base))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    let series = |text: &str| {
        text.lines()
            .filter(|l| l.starts_with("roster_http_requests_total"))
            .count()
    };
    let client = reqwest::Client::new();
    // Warm the labels every request below can produce.
    for m in ["BREW", "GET"] {
        let m = Method::from_bytes(m.as_bytes()).unwrap();
        client
            .request(m, format!("{}/warm", t.base))
            .send()
            .await
            .unwrap();
    }
    metrics().await;
    let before = metrics().await;
    for i in 0..200 {
        let m = Method::from_bytes(format!("INVENTED{i}").as_bytes()).unwrap();
        let url = format!("{}/probe-{i}", t.base);
        client.request(m, &url).send().await.unwrap();
        client.get(&url).send().await.unwrap();
    }
    let after = metrics().await;
    assert!(!after.contains("INVENTED"), "a raw method became a label");
    assert!(!after.contains("probe-"), "a raw path became a label");
    assert_eq!(series(&after), series(&before), "{after}");
}

/// #18 item 8: a one-time guest link was spent by a request that never
/// became a connection (a plain GET without an upgrade, a 429).
#[tokio::test]
async fn a_one_time_guest_link_is_spent_only_by_a_connection() {
    use crate::realtime::{connect, refused};
    let t = TestApp::spawn().await;
    let a = t.account("acme").await;
    let room = t.room(&a, json!({ "name": "Call" })).await;
    let (s, b) = t
        .post(
            &a.path(&format!("/rooms/{room}/access")),
            &a.key,
            json!({ "username": "Guest", "role": "user" }),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let token = b["data"]["access_token"].as_str().unwrap().to_owned();

    let got = t
        .call(
            Method::GET,
            &format!("/v1/realtime?token={token}"),
            None,
            None,
        )
        .await;
    assert_error(&got, StatusCode::BAD_REQUEST, "BAD_REQUEST", None);
    // Still unspent: the connection opens, and spends it.
    let _ws = connect(&t, &token).await;
    assert_eq!(refused(&t, Some(&token), None).await, 401);
}

/// #18 item 3: 32 concurrent wrong logins against a limit of 10 all got 401
/// (the bucket was checked before the password work and the failure counted
/// after it), a right password inside the burst got in, and a user's
/// username, email and custom_id each had a bucket of their own.
#[tokio::test]
async fn a_burst_of_guesses_is_cut_at_the_limit_and_a_user_has_one_bucket() {
    let t = TestApp::spawn_with(|c| {
        c.login_failures_per_name = 10;
        c.login_failures_per_ip = 1_000;
        c.login_failure_window_secs = 600;
    })
    .await;
    let a = t.account("acme").await;
    member(&t, &a, "alice", json!({})).await;
    let guesses = (0..32).map(|i| {
        login(
            &t,
            &a,
            json!({ "username": "alice", "password": format!("guess number {i}") }),
        )
    });
    let answers = futures::future::join_all(guesses).await;
    let count = |code: StatusCode| answers.iter().filter(|(s, _)| *s == code).count();
    assert_eq!(
        (
            count(StatusCode::UNAUTHORIZED),
            count(StatusCode::TOO_MANY_REQUESTS)
        ),
        (10, 22),
        "{answers:?}"
    );
    let (s, _) = login(&t, &a, json!({ "username": "alice", "password": PASSWORD })).await;
    assert_eq!(
        s,
        StatusCode::TOO_MANY_REQUESTS,
        "the right password waits too"
    );

    // Bob's three names share one bucket (limit 10: 4 + 3 + 3 guesses).
    member(&t, &a, "bob", json!({})).await;
    for (field, value, n) in [
        ("username", "bob", 4),
        ("email", "bob@example.com", 3),
        ("custom_id", "bob-1", 3),
    ] {
        for _ in 0..n {
            let (s, b) = login(&t, &a, json!({ field: value, "password": "not bob's" })).await;
            assert_eq!(s, StatusCode::UNAUTHORIZED, "{b}");
        }
    }
    let (s, _) = login(
        &t,
        &a,
        json!({ "email": "bob@example.com", "password": PASSWORD }),
    )
    .await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
    // A success gives its entry back: Carol logs in more often than the limit.
    member(&t, &a, "carol", json!({})).await;
    for _ in 0..12 {
        let (s, b) = login(&t, &a, json!({ "username": "carol", "password": PASSWORD })).await;
        assert_eq!(s, StatusCode::OK, "{b}");
    }
}

/// #18 item 9: a user with only `manage-roles` emptied (or could delete) a
/// more powerful role they do not hold.
#[tokio::test]
async fn nobody_edits_or_deletes_a_role_that_grants_more_than_they_hold() {
    let t = TestApp::spawn().await;
    let a = t.account("acme").await;
    let role = |name: &str, perms: Value| {
        let body = json!({ "name": name, "permissions": perms });
        let (t, path, key) = (&t, a.path("/roles"), a.key.clone());
        async move {
            let (s, b) = t.post(&path, &key, body).await;
            assert_eq!(s, StatusCode::CREATED, "{b}");
            b["data"]["role"]["id"].as_str().unwrap().to_owned()
        }
    };
    let manager = role("Role manager", json!(["manage-roles"])).await;
    let power = role("Power", json!(["manage-roles", "delete-user"])).await;
    let small = role("Small", json!([])).await;
    let d = t
        .user(&a, json!({ "name": "Rm", "roles": [manager] }))
        .await;
    let token = d["token"].as_str().unwrap();
    let power_path = a.path(&format!("/roles/{power}"));

    let got = t
        .patch(&power_path, token, json!({ "permissions": [] }))
        .await;
    assert_error(&got, StatusCode::FORBIDDEN, "FORBIDDEN", None);
    assert!(
        got.1["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`delete-user`"),
        "{}",
        got.1
    );
    let got = t
        .patch(&power_path, token, json!({ "name": "Harmless" }))
        .await;
    assert_error(&got, StatusCode::FORBIDDEN, "FORBIDDEN", None);
    let got = t.delete(&power_path, token).await;
    assert_error(&got, StatusCode::FORBIDDEN, "FORBIDDEN", None);
    let (_, b) = t.get(&power_path, &a.key).await;
    assert_eq!(b["data"]["role"]["name"], "Power");
    assert_eq!(
        b["data"]["role"]["permissions"],
        json!(["manage-roles", "delete-user"])
    );

    // A role within what they hold is theirs to change.
    let small_path = a.path(&format!("/roles/{small}"));
    let (s, b) = t
        .patch(
            &small_path,
            token,
            json!({ "permissions": ["manage-roles"] }),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(t.delete(&small_path, token).await.0, StatusCode::OK);
}

/// #18 item 9: the SQLite file (with its -wal and -shm) was created 0644,
/// readable by every local user, and holds the signing keys unsealed when
/// no master key is set.
#[cfg(unix)]
#[tokio::test]
async fn the_sqlite_files_are_private_to_their_owner() {
    use std::os::unix::fs::PermissionsExt;
    if std::env::var("ROSTER_TEST_BACKEND").as_deref() == Ok("postgres") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("data/roster.db");
    let url = format!("sqlite://{}", db.display());
    let t = TestApp::spawn_on(url, None, |_| {}).await;
    let a = t.account("acme").await;
    t.user(&a, json!({ "name": "Wal" })).await;
    for suffix in ["", "-wal", "-shm"] {
        let path = format!("{}{suffix}", db.display());
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{path} is {mode:o}");
    }
}

/// #18 item 9: refusals named Rust types (`expected struct CustomFieldDef
/// with 4 elements`, `expected i64`), and a whole number sent as `1432.0`
/// was refused where an integer is asked.
#[tokio::test]
async fn refusals_say_what_is_expected_and_whole_floats_are_integers() {
    let t = TestApp::spawn().await;
    let a = t.account("acme").await;
    let (s, b) = t
        .post(&a.path("/spaces"), &a.key, json!({ "name": "Team" }))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let space = b["data"]["space"]["id"].as_str().unwrap().to_owned();
    let room = t.room(&a, json!({ "name": "Lobby" })).await;
    let invites = a.path(&format!("/spaces/{space}/invites"));
    let access = a.path(&format!("/rooms/{room}/access"));

    // Whole numbers written as floats are integers…
    let (s, b) = t
        .post(
            &invites,
            &a.key,
            json!({ "role": "user", "ttl": 1432.0, "max_uses": 3.0 }),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert_eq!(b["data"]["invite"]["max_uses"], 3, "{b}");
    let (s, b) = t
        .post(
            &access,
            &a.key,
            json!({ "username": "Guest", "role": "user", "ttl": 36e2 }),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let (s, b) = t
        .patch(
            &a.path("/settings"),
            &a.key,
            json!({ "custom_fields": { "dept": { "type": "string", "max_length": 20.0 } } }),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(
        b["data"]["settings"]["custom_fields"]["dept"]["max_length"],
        20
    );

    // …and every refusal says what is expected in the API's words.
    let rust_words = [
        "i64",
        "u32",
        "u64",
        "struct",
        "CustomFieldDef",
        "sequence",
        "a map",
        "floating point",
        "variant",
        "invalid type",
        "invalid value",
        "invalid length",
        "invalid digit",
        "target type",
    ];
    let refused = [
        (
            Method::POST,
            invites.clone(),
            json!({ "role": "user", "ttl": 1432.5 }),
            "ttl",
        ),
        (
            Method::POST,
            invites.clone(),
            json!({ "role": "user", "ttl": "60" }),
            "ttl",
        ),
        (
            Method::POST,
            invites.clone(),
            json!({ "role": "user", "max_uses": 1e30 }),
            "max_uses",
        ),
        (
            Method::POST,
            access.clone(),
            json!({ "username": "G", "role": "user", "ttl": -1.5 }),
            "ttl",
        ),
        (
            Method::PATCH,
            a.path("/settings"),
            json!({ "custom_fields": { "dept": 1 } }),
            "custom_fields.dept",
        ),
        (
            Method::PATCH,
            a.path("/settings"),
            json!({ "custom_fields": { "dept": [] } }),
            "custom_fields.dept",
        ),
        (
            Method::PATCH,
            a.path("/settings"),
            json!({ "custom_fields": [] }),
            "custom_fields",
        ),
        (
            Method::PATCH,
            a.path("/settings"),
            json!({ "custom_fields": { "dept": { "type": "text" } } }),
            "custom_fields.dept.type",
        ),
        (
            Method::PATCH,
            a.path("/settings"),
            json!({ "custom_fields": { "dept": { "type": "string", "max_length": -3 } } }),
            "custom_fields.dept.max_length",
        ),
        (
            Method::POST,
            a.path("/users"),
            json!({ "username": 7 }),
            "username",
        ),
        (
            Method::POST,
            a.path("/users"),
            json!({ "username": "bo", "active": "yes" }),
            "active",
        ),
        (
            Method::POST,
            a.path("/users"),
            json!({ "username": "bo", "roles": "admin" }),
            "roles",
        ),
    ];
    for (method, path, body, field) in refused {
        let got = t
            .call(method, &path, Some(&a.key), Some(body.clone()))
            .await;
        assert_error(
            &got,
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
            Some(field),
        );
        let message = got.1["error"]["message"].as_str().unwrap().to_owned();
        for word in rust_words {
            assert!(
                !message.contains(word),
                "{body} → {message:?} says {word:?}"
            );
        }
    }
    let (_, b) = t.get(&a.path("/users?limit=ten"), &a.key).await;
    let message = b["error"]["message"].as_str().unwrap();
    assert_eq!(b["error"]["field"], "limit", "{b}");
    for word in rust_words {
        assert!(!message.contains(word), "limit=ten → {message:?}");
    }
    // Nothing refused was written: the one invite and the one setting stand.
    let (_, b) = t.get(&invites, &a.key).await;
    assert_eq!(b["data"]["invites"].as_array().unwrap().len(), 1, "{b}");
}

/// #18 item 9: `edit-other-user-password` existed but no route used it. It
/// now sets another user's password (`PATCH /users/{id} {password}`), under
/// "only what you hold", and the password set ends the user's sessions.
#[tokio::test]
async fn edit_other_user_password_sets_a_password_and_ends_the_sessions() {
    let t = TestApp::spawn().await;
    let a = t.account("acme").await;
    let (s, b) = t
        .post(
            &a.path("/roles"),
            &a.key,
            json!({ "name": "Helpdesk", "permissions": ["edit-other-user-password"] }),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let helpdesk = b["data"]["role"]["id"].as_str().unwrap().to_owned();
    let editor = editor_role(&t, &a).await;
    let bob = member(&t, &a, "bob", json!({})).await;
    let boss = member(&t, &a, "boss", json!({ "roles": ["admin"] })).await;
    let bob_path = a.path(&format!("/users/{bob}"));
    let boss_path = a.path(&format!("/users/{boss}"));
    member(&t, &a, "hal", json!({ "roles": ["user", helpdesk] })).await;
    member(&t, &a, "eve", json!({ "roles": ["user", editor] })).await;
    let (hal, _) = session(&t, &a, "hal").await;
    let (eve, _) = session(&t, &a, "eve").await;
    let (bob_access, bob_refresh) = session(&t, &a, "bob").await;
    let new = json!({ "password": "a brand new secret" });

    // `edit-other-user-info` alone does not set passwords, nor does anyone
    // set the password of someone who holds more, nor their own here.
    let got = t.patch(&bob_path, &eve, new.clone()).await;
    assert_error(&got, StatusCode::FORBIDDEN, "FORBIDDEN", Some("password"));
    assert!(
        got.1["error"]["message"]
            .as_str()
            .unwrap()
            .contains("edit-other-user-password"),
        "{}",
        got.1
    );
    let got = t.patch(&boss_path, &hal, new.clone()).await;
    assert_error(&got, StatusCode::FORBIDDEN, "FORBIDDEN", Some("password"));
    let got = t.patch(&bob_path, &bob_access, new.clone()).await;
    assert_error(&got, StatusCode::FORBIDDEN, "FORBIDDEN", Some("password"));
    // The helpdesk sets no other field with it, and no weak password.
    let got = t
        .patch(
            &bob_path,
            &hal,
            json!({ "password": "a brand new secret", "name": "B" }),
        )
        .await;
    assert_error(&got, StatusCode::FORBIDDEN, "FORBIDDEN", None);
    let got = t
        .patch(&bob_path, &hal, json!({ "password": "short" }))
        .await;
    assert_error(
        &got,
        StatusCode::BAD_REQUEST,
        "VALIDATION_ERROR",
        Some("password"),
    );
    // Nothing refused changed anything: bob's password and session stand.
    assert_eq!(t.get(&bob_path, &bob_access).await.0, StatusCode::OK);
    let (s, _) = login(&t, &a, json!({ "username": "boss", "password": PASSWORD })).await;
    assert_eq!(s, StatusCode::OK);

    let (s, b) = t.patch(&bob_path, &hal, new.clone()).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert!(b["data"]["user"].get("password").is_none(), "{b}");
    assert_eq!(b["data"]["user"]["has_password"], true, "{b}");
    let (s, _) = login(&t, &a, json!({ "username": "bob", "password": PASSWORD })).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "the old password is gone");
    let (s, b) = login(
        &t,
        &a,
        json!({ "username": "bob", "password": "a brand new secret" }),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    // Every session bob had before is over: its access token and its refresh.
    assert_eq!(
        t.get(&bob_path, &bob_access).await.0,
        StatusCode::UNAUTHORIZED
    );
    let (s, _) = t
        .call(
            Method::POST,
            &a.path("/auth/refresh"),
            None,
            Some(json!({ "refresh_token": bob_refresh })),
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    // A backend's key sets it too, with `require_password_change`.
    let (s, b) = t
        .patch(
            &bob_path,
            &a.key,
            json!({ "password": "one more secret", "requirePasswordChange": true }),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["data"]["user"]["require_password_change"], true, "{b}");
    let (s, _) = login(
        &t,
        &a,
        json!({ "username": "bob", "password": "one more secret" }),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
}

/// #18 item 7: beside `alice`, look-alikes (fullwidth, Cyrillic, a
/// zero-width space, a soft hyphen, mathematical bold, a decomposed accent)
/// were accepted as other people, and invisible characters in names.
#[tokio::test]
async fn look_alike_and_invisible_usernames_are_refused() {
    let t = TestApp::spawn().await;
    let a = t.account("acme").await;
    let alice = member(&t, &a, "alice", json!({})).await;
    let jose = t
        .user(&a, json!({ "name": "José", "username": "jos\u{e9}" }))
        .await;
    assert_eq!(jose["user"]["username"], "jos\u{e9}");
    let before = t.user_count(&a).await;

    for (username, code, why) in [
        ("ALICE", "CONFLICT", "case"),
        (
            "\u{ff41}\u{ff4c}\u{ff49}\u{ff43}\u{ff45}",
            "CONFLICT",
            "fullwidth",
        ),
        (
            "\u{430}lice",
            "CONFLICT",
            "Cyrillic а (a mixed-script confusable)",
        ),
        ("jose\u{301}", "CONFLICT", "a combining accent (NFC)"),
        ("al\u{200b}ice", "VALIDATION_ERROR", "zero-width space"),
        ("al\u{ad}ice", "VALIDATION_ERROR", "soft hyphen"),
        (
            "\u{1d41a}\u{1d425}\u{1d422}\u{1d41c}\u{1d41e}",
            "VALIDATION_ERROR",
            "mathematical bold",
        ),
        ("alice\u{200e}", "VALIDATION_ERROR", "left-to-right mark"),
        ("al\u{3164}ice", "VALIDATION_ERROR", "Hangul filler"),
    ] {
        let got = t
            .post(
                &a.path("/users"),
                &a.key,
                json!({ "name": "X", "username": username }),
            )
            .await;
        let status = if code == "CONFLICT" {
            StatusCode::CONFLICT
        } else {
            StatusCode::BAD_REQUEST
        };
        assert_error(&got, status, code, Some("username"));
        assert!(
            !got.1["error"]["message"].as_str().unwrap().is_empty(),
            "{why}"
        );
    }
    // Renaming someone into a look-alike is refused the same way.
    let bob = member(&t, &a, "bob", json!({})).await;
    let got = t
        .patch(
            &a.path(&format!("/users/{bob}")),
            &a.key,
            json!({ "username": "\u{430}lice" }),
        )
        .await;
    assert_error(&got, StatusCode::CONFLICT, "CONFLICT", Some("username"));
    assert_eq!(user_of(&t, &a, &bob).await["username"], "bob");

    // Invisible and separator characters are refused in every text field.
    for (field, value) in [
        ("name", "Eve\u{200e}"),
        ("name", "Eve\u{2028}Admin"),
        ("name", "E\u{200b}ve"),
        ("bio", "hi\u{2060}there"),
        ("nickname", "\u{feff}eve"),
        ("statusMessage", "away\u{2029}"),
    ] {
        let got = t
            .post(
                &a.path("/users"),
                &a.key,
                json!({ "name": "Eve", field: value }),
            )
            .await;
        let named = if field == "statusMessage" {
            "status_message"
        } else {
            field
        };
        assert_error(
            &got,
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
            Some(named),
        );
    }
    assert_eq!(t.user_count(&a).await, before + 1, "only bob was written");

    // What people write stays welcome: emoji sequences (ZWJ, variation
    // selectors, tag flags), the joiners Persian and Indic scripts need,
    // and usernames in any script, stored width-mapped and in NFC.
    for (name, username) in [
        ("\u{1f469}\u{200d}\u{1f4bb} Ada \u{2764}\u{fe0f}", "ada"),
        (
            "\u{1f3f4}\u{e0067}\u{e0062}\u{e0073}\u{e0063}\u{e0074}\u{e007f} Scot",
            "scot",
        ),
        (
            "\u{645}\u{6cc}\u{200c}\u{62e}\u{648}\u{627}\u{647}\u{645}",
            "persian",
        ),
        ("\u{915}\u{94d}\u{200d}\u{937}", "hindi"),
        ("Zoë", "Zo\u{eb} Smith"),
    ] {
        let (s, b) = t
            .post(
                &a.path("/users"),
                &a.key,
                json!({ "name": name, "username": username }),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{name}: {b}");
        assert_eq!(b["data"]["user"]["name"], name);
    }
    let d = t
        .user(&a, json!({ "name": "Ｋａｔｅ", "username": "\u{ff2b}ate" }))
        .await;
    assert_eq!(d["user"]["username"], "Kate", "width-mapped, case kept");
    // A login name is matched the same way: fullwidth, any case.
    let (s, b) = login(
        &t,
        &a,
        json!({ "username": "\u{ff21}\u{ff2c}\u{ff29}\u{ff23}\u{ff25}", "password": PASSWORD }),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["data"]["user"]["id"], alice.as_str());
}

/// Usernames written before skeletons were kept get theirs when the server
/// starts, so a look-alike of an older username is refused too.
#[tokio::test]
async fn usernames_stored_before_skeletons_get_them_at_start_up() {
    use sqlx::Connection;
    let (url, dir) = crate::helpers::fresh_database_url().await;
    let old = TestApp::spawn_on(url.clone(), dir, |_| {}).await;
    let a = old.account("acme").await;
    member(&old, &a, "alice", json!({})).await;
    // As a version before the skeleton column left the row.
    let forget = "UPDATE users SET username_skeleton = NULL";
    if url.starts_with("sqlite") {
        let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
        sqlx::query(forget).execute(&mut c).await.unwrap();
    } else {
        let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
        sqlx::query(forget).execute(&mut c).await.unwrap();
    }
    let new = TestApp::spawn_on(url, None, |_| {}).await;
    let got = new
        .post(
            &a.path("/users"),
            &a.key,
            json!({ "name": "X", "username": "\u{430}lice" }),
        )
        .await;
    assert_error(&got, StatusCode::CONFLICT, "CONFLICT", Some("username"));
}

/// #17 item 5: a preflight from another origin got 405, so a web app could
/// not log in from its own domain. Listed origins (exact, with
/// credentials) get their preflight answered and their responses readable;
/// any other origin gets no CORS header at all.
#[tokio::test]
async fn listed_origins_pass_cors_and_others_do_not() {
    let app_origin = "https://app.example";
    let t = TestApp::spawn_with(|c| c.cors_allowed_origins = vec![app_origin.into()]).await;
    let a = t.account("acme").await;
    let login = format!("{}{}", t.base, a.path("/auth/login"));
    let preflight = |origin: &'static str| {
        t.client
            .request(Method::OPTIONS, &login)
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "content-type,x-csrf-token",
            )
            .send()
    };
    let res = preflight(app_origin).await.unwrap();
    assert!(res.status().is_success(), "{}", res.status());
    let h = res.headers();
    assert_eq!(h["access-control-allow-origin"], app_origin);
    assert_eq!(h["access-control-allow-credentials"], "true");
    let allowed = h["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_lowercase();
    assert!(
        allowed.contains("x-csrf-token") && allowed.contains("content-type"),
        "{allowed}"
    );
    assert!(
        h["access-control-allow-methods"]
            .to_str()
            .unwrap()
            .contains("POST")
    );
    assert!(
        h.get_all("vary")
            .iter()
            .any(|v| v.to_str().unwrap().contains("origin"))
    );

    let res = preflight("https://evil.example").await.unwrap();
    assert!(res.headers().get("access-control-allow-origin").is_none());
    // The answer itself carries the origin for a listed one only.
    for (origin, readable) in [(app_origin, true), ("https://evil.example", false)] {
        let res = t
            .client
            .post(&login)
            .header("origin", origin)
            .json(&json!({ "username": "nobody", "password": "wrong password" }))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        let got = res
            .headers()
            .get("access-control-allow-origin")
            .map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(got.is_some(), readable, "{origin}");
        if readable {
            let exposed = res.headers()["access-control-expose-headers"]
                .to_str()
                .unwrap()
                .to_lowercase();
            assert!(
                exposed.contains("x-request-id") && exposed.contains("retry-after"),
                "{exposed}"
            );
        }
    }
}

/// #15 defect 4: 200 wrong API keys in a row from one address were all
/// plain 401s, each a database read. After `bad_credentials_per_ip_per_minute`
/// refusals, the address gets 429 (with `Retry-After`) for any credential,
/// before it is looked up; another address is not affected; a good key from
/// a fresh address still works.
#[tokio::test]
async fn a_flood_of_bad_credentials_from_one_address_is_cut_with_429() {
    let t = TestApp::spawn_with(|c| {
        c.bad_credentials_per_ip_per_minute = 5;
        c.trusted_proxies = vec!["127.0.0.1".into()];
    })
    .await;
    let a = t.account("acme").await;
    let from = |ip: &str, key: &str| {
        t.client
            .get(format!("{}{}", t.base, a.path("/users")))
            .header("x-forwarded-for", ip)
            .bearer_auth(key)
            .send()
    };
    // The right id with a wrong secret: a lookup, then a refusal.
    let bad_key = format!("{}{}", &a.key[..a.key.len() - 43], "x".repeat(43));
    assert_ne!(bad_key, a.key);
    for (i, bad) in [
        bad_key.as_str(),
        "rk_nonsense",
        "a.b.c",
        "not-a-key",
        &bad_key,
    ]
    .into_iter()
    .enumerate()
    {
        let res = from("198.51.100.1", bad).await.unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "attempt {i}");
    }
    // The sixth, even with the right key, is refused before it is read.
    let res = from("198.51.100.1", &a.key).await.unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(res.headers().contains_key("retry-after"));
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "RATE_LIMITED", "{body}");
    // The operator routes count the same address.
    let res = t
        .client
        .get(format!("{}/v1/accounts", t.base))
        .header("x-forwarded-for", "198.51.100.1")
        .bearer_auth(crate::helpers::OPERATOR_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    // Another address is untouched.
    let res = from("198.51.100.2", &a.key).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let metrics = t
        .client
        .get(format!("{}/metrics", t.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("roster_rate_limited_total{kind=\"bad_credentials\"}")),
        "{metrics}"
    );
}
