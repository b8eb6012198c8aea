//! The event log seen through HTTP: each user route records its event with
//! the caller as actor and the request's id. (The full matrix over every
//! mutating route comes with the rest of the use-case layer.)

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::TestApp;
use crate::sessions::{member, session};

/// The account's events after `after`, as (type, actor kind, actor id,
/// subject id, request id).
async fn events(
    t: &TestApp,
    account: &str,
    after: i64,
) -> Vec<(String, String, String, String, String)> {
    let account = uuid::Uuid::parse_str(account).unwrap();
    t.app
        .store
        .events_after(Some(account), after, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|e| {
            (
                e.kind,
                e.actor_kind,
                e.actor_id.map(|i| i.to_string()).unwrap_or_default(),
                e.subject_id,
                e.request_id.unwrap_or_default(),
            )
        })
        .collect()
}

fn rid(body: &Value) -> String {
    body["request_id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn each_user_route_records_its_event_with_the_caller_and_the_request() {
    let t = TestApp::spawn().await;
    let a = t.account("acme").await;
    let (s, keys) = t.get(&a.path("/api-keys"), &a.key).await;
    assert_eq!(s, StatusCode::OK);
    let key_id = keys["data"]["api_keys"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let admin = member(&t, &a, "root", json!({ "roles": ["admin"] })).await;
    let (admin_token, _) = session(&t, &a, "root").await;
    let before = t
        .app
        .store
        .events_after(None, 0, 1000)
        .await
        .unwrap()
        .last()
        .map_or(0, |e| e.seq);

    let (s, b) = t
        .post(
            &a.path("/users"),
            &a.key,
            json!({ "name": "Bo", "username": "bo" }),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let bo = b["data"]["user"]["id"].as_str().unwrap().to_owned();
    let mut want = vec![(
        "user.created".to_owned(),
        "api_key".to_owned(),
        key_id.clone(),
        bo.clone(),
        rid(&b),
    )];
    let user_path = a.path(&format!("/users/{bo}"));
    for (method, path, body, kinds) in [
        (
            reqwest::Method::PATCH,
            user_path.clone(),
            Some(json!({ "name": "Bob" })),
            vec!["user.updated"],
        ),
        (
            reqwest::Method::PATCH,
            user_path.clone(),
            Some(json!({ "roles": ["user", "bot"] })),
            vec!["user.updated", "user.roles_changed"],
        ),
        (
            reqwest::Method::POST,
            format!("{user_path}/deactivate"),
            None,
            vec!["user.deactivated"],
        ),
        (
            reqwest::Method::POST,
            format!("{user_path}/reactivate"),
            None,
            vec!["user.reactivated"],
        ),
        (
            reqwest::Method::DELETE,
            user_path.clone(),
            None,
            vec!["user.deleted"],
        ),
    ] {
        let (s, b) = t.call(method, &path, Some(&admin_token), body).await;
        assert_eq!(s, StatusCode::OK, "{path}: {b}");
        for kind in kinds {
            want.push((
                kind.to_owned(),
                "user".to_owned(),
                admin.clone(),
                bo.clone(),
                rid(&b),
            ));
        }
    }
    // A refused call writes nothing.
    let (s, _) = t
        .call(
            reqwest::Method::DELETE,
            &user_path,
            Some(&admin_token),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(events(&t, &a.id, before).await, want);
}
