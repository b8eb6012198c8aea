//! The Rocket.Chat front door: the unmodified PyPI client `rocketchat-api`
//! against the real server (tests/support/rocketchat_client.py), the same
//! users through both surfaces, its error shapes, and tenancy.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Account, TestApp};

/// `…/compat/rocketchat/{accountId}`: what a Rocket.Chat client is given
/// as its server URL.
fn rc_url(app: &TestApp, account: &Account) -> String {
    format!("{}/compat/rocketchat/{}", app.base, account.id)
}

/// Sends a Rocket.Chat request with `X-Auth-Token` / `X-User-Id`.
async fn rc(
    app: &TestApp,
    account: &Account,
    method: reqwest::Method,
    route: &str,
    auth: Option<(&str, &str)>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let url = format!("{}/api/v1/{route}", rc_url(app, account));
    let mut req = app.client.request(method, url);
    if let Some((token, user)) = auth {
        req = req.header("X-Auth-Token", token).header("X-User-Id", user);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let res = req.send().await.expect("request");
    let status = res.status();
    (status, res.json().await.unwrap_or(Value::Null))
}

async fn people(app: &TestApp, account: &Account) {
    app.user(
        account,
        json!({"username": "root", "name": "Root", "password": "root-password-1", "roles": ["admin"]}),
    )
    .await;
    app.user(
        account,
        json!({"username": "pat", "name": "Pat", "password": "pat-password-1"}),
    )
    .await;
}

#[tokio::test]
async fn the_pypi_client_works_unmodified() {
    let app = TestApp::spawn().await;
    let account = app.account("rc").await;
    people(&app, &account).await;
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/support/rocketchat_client.py"
    );
    let run = tokio::process::Command::new("python3")
        .arg(script)
        .env("RC_URL", rc_url(&app, &account))
        .env("ADMIN_USER", "root")
        .env("ADMIN_PASS", "root-password-1")
        .env("PLAIN_USER", "pat")
        .env("PLAIN_PASS", "pat-password-1")
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("the client finishes")
        .expect("python3 with rocketchat-api (pip install rocketchat-api)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let made: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();

    // Nothing was written by the refused create: root, pat and ada remain
    // (grace was deleted).
    assert_eq!(app.user_count(&account).await, 3);
    let (_, mallory) = app
        .get(&account.path("/users?q=mallory"), &account.key)
        .await;
    assert_eq!(mallory["data"]["users"], json!([]), "{mallory}");

    // The user made through Rocket.Chat, read natively, is the same user.
    let kept = &made["kept"];
    let id = kept["_id"].as_str().unwrap();
    let (status, native) = app
        .get(&account.path(&format!("/users/{id}")), &account.key)
        .await;
    assert_eq!(status, StatusCode::OK, "{native}");
    let u = &native["data"]["user"];
    assert_eq!(u["username"], "ada");
    assert_eq!(u["name"], "Ada Lovelace");
    assert_eq!(u["email"], "ada@example.com");
    assert_eq!(u["nickname"], "ada");
    assert_eq!(u["bio"], "notes");
    assert_eq!(u["status_message"], "computing");
    assert_eq!(u["has_password"], true);
    assert_eq!(u["created_at"], kept["createdAt"]);
    assert_eq!(u["updated_at"], kept["_updatedAt"]);
    // The group made there is a private room, with its creator in it.
    let group = made["group"].as_str().unwrap();
    let (status, room) = app
        .get(&account.path(&format!("/rooms/{group}")), &account.key)
        .await;
    assert_eq!(status, StatusCode::OK, "{room}");
    assert_eq!(room["data"]["room"]["visibility"], "private");
}

/// Logs in through Rocket.Chat's route: (authToken, userId).
async fn rc_login(
    app: &TestApp,
    account: &Account,
    user: &str,
    password: &str,
) -> (String, String) {
    let (status, body) = rc(
        app,
        account,
        reqwest::Method::POST,
        "login",
        None,
        Some(json!({"user": user, "password": password})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "success", "{body}");
    (
        body["data"]["authToken"].as_str().unwrap().to_owned(),
        body["data"]["userId"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test]
async fn a_native_user_is_the_same_rocket_chat_user_and_logins_are_sessions() {
    let app = TestApp::spawn().await;
    let account = app.account("rc").await;
    let made = app
        .user(
            &account,
            json!({"username": "lin", "name": "Lin", "email": "lin@example.com",
                   "password": "lin-password-1", "custom_fields": {}, "bio": "hi"}),
        )
        .await;
    let id = made["user"]["id"].as_str().unwrap();
    // By email too, and the resume form gives back the same session.
    let (token, user_id) = rc_login(&app, &account, "LIN@example.com", "lin-password-1").await;
    assert_eq!(user_id, id);
    let (status, me) = rc(
        &app,
        &account,
        reqwest::Method::GET,
        "me",
        Some((&token, id)),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["success"], true);
    assert_eq!(me["_id"], id);
    assert_eq!(me["username"], "lin");
    assert_eq!(me["bio"], "hi");
    assert_eq!(
        me["emails"],
        json!([{"address": "lin@example.com", "verified": false}])
    );
    assert_eq!(me["createdAt"], made["user"]["created_at"]);
    let (status, resumed) = rc(
        &app,
        &account,
        reqwest::Method::POST,
        "login",
        None,
        Some(json!({"resume": token})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{resumed}");
    assert_eq!(resumed["data"]["userId"], id);

    // The authToken is a Roster session's access token: it works on the
    // native API too, until logout ends the session.
    let (status, _) = app
        .get(&account.path(&format!("/users/{id}")), &token)
        .await;
    assert_eq!(status, StatusCode::OK);
    // Another user's id beside it is refused.
    let (status, wrong) = rc(
        &app,
        &account,
        reqwest::Method::GET,
        "me",
        Some((&token, "0190b7c4-0000-7000-8000-000000000000")),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{wrong}");
    let (status, out) = rc(
        &app,
        &account,
        reqwest::Method::POST,
        "logout",
        Some((&token, id)),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    let (status, after) = rc(
        &app,
        &account,
        reqwest::Method::GET,
        "me",
        Some((&token, id)),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{after}");
    assert_eq!(after["status"], "error");
    assert_eq!(after["message"], "You must be logged in to do this.");
    let (status, _) = app
        .get(&account.path(&format!("/users/{id}")), &token)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn refusals_wear_rocket_chat_shapes_and_change_nothing() {
    let app = TestApp::spawn().await;
    let account = app.account("rc").await;
    people(&app, &account).await;
    let key = account.key.clone();
    let as_key = Some((key.as_str(), ""));
    let post = |route: &'static str, body: Value| {
        let app = &app;
        let account = &account;
        async move {
            rc(
                app,
                account,
                reqwest::Method::POST,
                route,
                as_key,
                Some(body),
            )
            .await
        }
    };
    // Every failed login is the one 401 the client libraries look for.
    for body in [
        json!({"username": "root", "password": "wrong-password"}),
        json!({"username": "nobody", "password": "whatever-it-is"}),
        json!({"resume": "not-a-token"}),
    ] {
        let (status, res) = rc(
            &app,
            &account,
            reqwest::Method::POST,
            "login",
            None,
            Some(body),
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{res}");
        assert_eq!(
            res,
            json!({"success": false, "status": "error", "error": "Unauthorized", "message": "Unauthorized"})
        );
    }
    // No credential.
    let (status, res) = rc(
        &app,
        &account,
        reqwest::Method::GET,
        "users.list",
        None,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(res["message"], "You must be logged in to do this.", "{res}");
    // A limit broken: 400, the field named, nothing stored.
    let before = app.user_count(&account).await;
    let (status, res) = post(
        "users.create",
        json!({"username": "x".repeat(200), "name": "X", "email": "x@example.com", "password": "x-password-1"}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{res}");
    assert_eq!(res["success"], false);
    assert_eq!(res["errorType"], "error-invalid-params", "{res}");
    assert_eq!(res["details"]["field"], "username", "{res}");
    let (status, res) = post("users.create", json!({"username": "y", "bogus": 1})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{res}");
    assert_eq!(res["details"]["field"], "bogus", "{res}");
    assert_eq!(app.user_count(&account).await, before);
    // Unknown users and rooms, and a query outside the allow-list.
    let (status, res) = post(
        "users.setActiveStatus",
        json!({"userId": "nope", "activeStatus": false}),
    )
    .await;
    assert_eq!(
        (status, res["errorType"].as_str()),
        (StatusCode::BAD_REQUEST, Some("error-invalid-user")),
        "{res}"
    );
    let (status, res) = rc(
        &app,
        &account,
        reqwest::Method::GET,
        "users.list?query=%7B%22password_hash%22%3A%22x%22%7D",
        as_key,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{res}");
    assert_eq!(res["details"]["field"], "query", "{res}");
    let (status, res) = rc(
        &app,
        &account,
        reqwest::Method::GET,
        "users.list?count=101",
        as_key,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{res}");
    let (status, res) = rc(
        &app,
        &account,
        reqwest::Method::GET,
        "channels.info?roomId=0190b7c4-0000-7000-8000-000000000000",
        as_key,
        None,
    )
    .await;
    assert_eq!(
        (status, res["errorType"].as_str()),
        (StatusCode::BAD_REQUEST, Some("error-room-not-found")),
        "{res}"
    );
    // A read-only key is refused writes with 403.
    let read = app.read_key(&account).await;
    let (status, res) = rc(
        &app,
        &account,
        reqwest::Method::POST,
        "users.create",
        Some((&read, "")),
        Some(json!({"username": "z", "name": "Z"})),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{res}");
    assert_eq!(res["errorType"], "error-action-not-allowed", "{res}");
    assert_eq!(app.user_count(&account).await, before);
}

#[tokio::test]
async fn accounts_stay_sealed_through_the_rocket_chat_door() {
    let app = TestApp::spawn().await;
    let a = app.account("a").await;
    let b = app.account("b").await;
    people(&app, &a).await;
    let (token, id) = rc_login(&app, &a, "root", "root-password-1").await;
    // A's user token and A's key on B's path: nothing of B is reached.
    for (cred, user) in [(token.as_str(), id.as_str()), (a.key.as_str(), "")] {
        let (status, res) = rc(
            &app,
            &b,
            reqwest::Method::GET,
            "users.list",
            Some((cred, user)),
            None,
        )
        .await;
        assert!(
            status == StatusCode::NOT_FOUND || status == StatusCode::UNAUTHORIZED,
            "{status} {res}"
        );
        assert_eq!(res["success"], false, "{res}");
    }
    // A's user, looked up through B's key, is not there.
    let (status, res) = rc(
        &app,
        &b,
        reqwest::Method::GET,
        &format!("users.info?userId={id}"),
        Some((&b.key, "")),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{res}");
    assert_eq!(res["errorType"], "error-invalid-user", "{res}");
    // A's login name does not log in on B.
    let (status, _) = rc(
        &app,
        &b,
        reqwest::Method::POST,
        "login",
        None,
        Some(json!({"username": "root", "password": "root-password-1"})),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn an_update_of_active_alone_and_an_invite_of_a_member_change_only_that() {
    let app = TestApp::spawn().await;
    let account = app.account("rc").await;
    people(&app, &account).await;
    let key = account.key.clone();
    let as_key = Some((key.as_str(), ""));
    let mod_ = app.user(&account, json!({"name": "Mo"})).await;
    let mo = mod_["user"]["id"].as_str().unwrap().to_owned();
    // users.update with `data: {active}` alone is setActiveStatus.
    let (status, res) = rc(
        &app,
        &account,
        reqwest::Method::POST,
        "users.update",
        as_key,
        Some(json!({"userId": mo, "data": {"active": false}})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{res}");
    assert_eq!(res["user"]["active"], false, "{res}");
    let (_, native) = app.get(&account.path(&format!("/users/{mo}")), &key).await;
    assert_eq!(native["data"]["user"]["active"], false, "{native}");
    app.post(
        &account.path(&format!("/users/{mo}/reactivate")),
        &key,
        json!({}),
    )
    .await;
    // Inviting a room's moderator into it leaves them its moderator.
    let room = app
        .room(&account, json!({"name": "staff", "visibility": "private"}))
        .await;
    let (status, res) = app
        .call(
            reqwest::Method::PUT,
            &account.path(&format!("/rooms/{room}/members/{mo}")),
            Some(&key),
            Some(json!({"role": "role_room_moderator"})),
        )
        .await;
    assert!(status.is_success(), "{res}");
    let (status, res) = rc(
        &app,
        &account,
        reqwest::Method::POST,
        "groups.invite",
        as_key,
        Some(json!({"roomId": room, "userId": mo})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{res}");
    let (_, members) = app
        .get(&account.path(&format!("/rooms/{room}/members")), &key)
        .await;
    let roles: Vec<&str> = members["data"]["members"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["user_id"] == mo.as_str())
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles.len(), 1, "{members}");
    assert!(roles[0].contains("moderator"), "{members}");
}
