//! CometChat's REST API v3 at `/compat/cometchat/{accountId}/v3`: the
//! published docs' own request and response examples, every limit at its
//! edge and one past it, duplicate and missing uids, bad keys, tenancy, and
//! users read back identically through the native API and the other way.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{Account, TestApp};
use crate::realtime;

/// A CometChat call: the key in the `apikey` header, a body as JSON.
async fn cc(
    t: &TestApp,
    method: Method,
    a: &Account,
    key: &str,
    rest: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let url = format!("{}/compat/cometchat/{}/v3{rest}", t.base, a.id);
    let mut req = t.client.request(method, url).header("apikey", key);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let res = req.send().await.expect("request");
    let status = res.status();
    (status, res.json().await.unwrap_or(Value::Null))
}

/// A CometChat refusal: the status, `error.code`, `source`, and (for
/// input) the field in `details`.
fn refused(got: &(StatusCode, Value), status: StatusCode, code: &str, field: Option<&str>) {
    let (s, body) = got;
    assert_eq!(*s, status, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert_eq!(body["error"]["source"], "chat-api", "{body}");
    assert!(body["error"]["message"].is_string(), "{body}");
    assert!(body["error"]["devMessage"].is_string(), "{body}");
    if let Some(f) = field {
        let details = body["error"]["details"].as_object().expect("details");
        assert!(
            details.keys().any(|k| k.starts_with(f)),
            "details name no {f}: {body}"
        );
    }
}

/// The docs' create-role example (https://www.cometchat.com/docs/rest-api/roles/create).
fn manager_role() -> Value {
    json!({
        "role": "manager",
        "name": "manager",
        "description": "This role gives an update access",
        "metadata": { "email": "managers@gmail.com" },
        "settings": { "listUsers": "all", "sendMessagesTo": "friendsOnly" }
    })
}

/// The docs' create-user request with the values of its response example
/// (https://www.cometchat.com/docs/rest-api/users/create).
fn barry() -> Value {
    json!({
        "uid": "CometChat-UID-6",
        "name": "Barry Allen",
        "avatar": "https://assets.cometchat.io/sampleapp/v2/groups/cometchat-guid-1.webp",
        "link": "https://cometchat.com",
        "role": "manager",
        "statusMessage": "Fastest man alive",
        "metadata": {
            "@private": { "email": "user@email.com", "contactNumber": "0123456789" }
        },
        "tags": ["Engineer", "manager"],
        "withAuthToken": true
    })
}

#[tokio::test]
async fn the_docs_examples_work_and_a_user_reads_back_the_same_natively() {
    let t = TestApp::spawn().await;
    let a = t.account("acme").await;
    let (status, role) = cc(&t, Method::POST, &a, &a.key, "/roles", Some(manager_role())).await;
    assert_eq!(status, StatusCode::OK, "{role}");
    assert_eq!(role["data"]["role"], "manager");
    assert_eq!(
        role["data"]["description"],
        "This role gives an update access"
    );
    assert!(role["data"]["createdAt"].is_i64(), "{role}");

    let (status, created) = cc(&t, Method::POST, &a, &a.key, "/users", Some(barry())).await;
    assert_eq!(status, StatusCode::OK, "{created}");
    let u = &created["data"];
    // The response example's fields, as CometChat answers them: the uid
    // lowercased, unix seconds, no null fields.
    assert_eq!(u["uid"], "cometchat-uid-6");
    assert_eq!(u["name"], "Barry Allen");
    assert_eq!(u["link"], "https://cometchat.com");
    assert_eq!(
        u["avatar"],
        "https://assets.cometchat.io/sampleapp/v2/groups/cometchat-guid-1.webp"
    );
    assert_eq!(u["status"], "offline");
    assert_eq!(u["role"], "manager");
    assert_eq!(u["statusMessage"], "Fastest man alive");
    assert_eq!(u["tags"], json!(["Engineer", "manager"]));
    assert_eq!(u["metadata"]["@private"]["contactNumber"], "0123456789");
    assert!(u["createdAt"].as_i64().unwrap() > 1_600_000_000, "{u}");
    assert!(u.as_object().unwrap().values().all(|v| !v.is_null()), "{u}");
    let token = u["authToken"].as_str().expect("withAuthToken answers it");

    // The same user natively: custom_id, the role beside `user`.
    let (_, listed) = t.get(&a.path("/users?q=cometchat-uid-6"), &a.key).await;
    let native = &listed["data"]["users"][0];
    assert_eq!(native["custom_id"], "cometchat-uid-6");
    assert_eq!(native["name"], "Barry Allen");
    assert_eq!(native["status_message"], "Fastest man alive");
    assert_eq!(native["roles"].as_array().unwrap().len(), 2, "{native}");
    assert!(native["roles"].as_array().unwrap().contains(&json!("user")));
    // And back: GET /users/{uid} answers what the create answered.
    let (status, got) = cc(&t, Method::GET, &a, &a.key, "/users/cometchat-uid-6", None).await;
    assert_eq!(status, StatusCode::OK, "{got}");
    let mut answered = u.clone();
    answered.as_object_mut().unwrap().remove("authToken");
    assert_eq!(got["data"], answered);
    // CometChat's uids are case-blind on the way in.
    let (status, _) = cc(&t, Method::GET, &a, &a.key, "/users/CometChat-UID-6", None).await;
    assert_eq!(status, StatusCode::OK);

    // A user made natively is a CometChat user: by its custom_id, or by its
    // Roster id when it has none.
    t.user(
        &a,
        json!({ "customId": "native-1", "name": "Nat", "tags": ["t"] }),
    )
    .await;
    let (_, n) = cc(&t, Method::GET, &a, &a.key, "/users/native-1", None).await;
    assert_eq!(n["data"]["name"], "Nat");
    assert_eq!(n["data"]["role"], "default");
    assert_eq!(n["data"]["tags"], json!(["t"]));
    let plain = t.user(&a, json!({ "name": "No Uid" })).await;
    let id = plain["user"]["id"].as_str().unwrap();
    let (_, p) = cc(&t, Method::GET, &a, &a.key, &format!("/users/{id}"), None).await;
    assert_eq!(p["data"]["uid"], id);
    assert_eq!(p["data"]["name"], "No Uid");

    // The auth token opens Roster's realtime connection.
    let mut ws = realtime::connect(&t, token).await;
    drop(ws.close(None).await);
}

#[tokio::test]
async fn every_limit_holds_at_its_edge_and_refuses_one_past_it() {
    let t = TestApp::spawn().await;
    let a = t.account("acme").await;
    let long = |n: usize| "a".repeat(n);
    let url = |n: usize| format!("https://e.com/{}", "p".repeat(n - 14));
    let cases = [
        ("uid", json!(long(100)), json!(long(101))),
        (
            "uid",
            json!("with_dash-and_underscore"),
            json!("with space"),
        ),
        ("name", json!(long(100)), json!(long(101))),
        ("avatar", json!(url(3000)), json!(url(3001))),
        ("link", json!(url(3000)), json!(url(3001))),
        (
            "tags",
            json!((0..25).map(|i| format!("t{i}")).collect::<Vec<_>>()),
            json!((0..26).map(|i| format!("t{i}")).collect::<Vec<_>>()),
        ),
        ("tags", json!([long(100)]), json!([long(101)])),
        (
            "metadata",
            json!({ "k": "x".repeat(5 * 1024 - 8) }),
            json!({ "k": "x".repeat(5 * 1024 - 7) }),
        ),
    ];
    for (i, (field, ok, bad)) in cases.into_iter().enumerate() {
        let body = |v: Value, n: &str| {
            let mut b = json!({ "uid": format!("u{i}-{n}"), "name": "N" });
            b[field] = v;
            b
        };
        let (status, res) = cc(&t, Method::POST, &a, &a.key, "/users", Some(body(ok, "ok"))).await;
        assert_eq!(status, StatusCode::OK, "{field} at its edge: {res}");
        let before = t.user_count(&a).await;
        let got = cc(
            &t,
            Method::POST,
            &a,
            &a.key,
            "/users",
            Some(body(bad, "bad")),
        )
        .await;
        refused(
            &got,
            StatusCode::BAD_REQUEST,
            "ERR_BAD_REQUEST",
            Some(field),
        );
        assert_eq!(t.user_count(&a).await, before, "{field}: a refusal wrote");
    }
}

#[tokio::test]
async fn missing_duplicate_and_unknown_uids_are_cometchats_errors() {
    let t = TestApp::spawn().await;
    let a = t.account("acme").await;
    let got = cc(&t, Method::POST, &a, &a.key, "/users", Some(json!({}))).await;
    refused(
        &got,
        StatusCode::BAD_REQUEST,
        "ERR_BAD_REQUEST",
        Some("uid"),
    );
    assert_eq!(
        got.1["error"]["details"]["uid"][0],
        "The uid field is required."
    );
    assert_eq!(
        got.1["error"]["details"]["name"][0],
        "The name field is required."
    );
    let ok = json!({ "uid": "alice", "name": "Alice" });
    assert_eq!(
        cc(&t, Method::POST, &a, &a.key, "/users", Some(ok)).await.0,
        StatusCode::OK
    );
    // The same uid in other case is the same uid.
    let dup = json!({ "uid": "ALICE", "name": "Alice 2" });
    let got = cc(&t, Method::POST, &a, &a.key, "/users", Some(dup)).await;
    refused(
        &got,
        StatusCode::BAD_REQUEST,
        "ERR_UID_ALREADY_EXISTS",
        None,
    );
    assert_eq!(t.user_count(&a).await, 1);
    let got = cc(&t, Method::GET, &a, &a.key, "/users/nobody", None).await;
    refused(&got, StatusCode::NOT_FOUND, "ERR_UID_NOT_FOUND", None);
    assert_eq!(
        got.1["error"]["message"],
        "The UID nobody does not exist, please make sure you have created a user with UID nobody."
    );
    let unknown_role = json!({ "uid": "bob", "name": "Bob", "role": "pilot" });
    let got = cc(&t, Method::POST, &a, &a.key, "/users", Some(unknown_role)).await;
    refused(&got, StatusCode::NOT_FOUND, "ERR_ROLE_NOT_FOUND", None);
    let unknown_field = json!({ "uid": "bob", "name": "Bob", "colour": "red" });
    let got = cc(&t, Method::POST, &a, &a.key, "/users", Some(unknown_field)).await;
    refused(&got, StatusCode::BAD_REQUEST, "ERR_BAD_REQUEST", None);
    assert_eq!(t.user_count(&a).await, 1);
}

#[tokio::test]
async fn only_the_accounts_own_full_key_writes_and_tenants_are_sealed() {
    let t = TestApp::spawn().await;
    let a = t.account("a").await;
    let b = t.account("b").await;
    let body = || Some(json!({ "uid": "x", "name": "X" }));
    let got = cc(&t, Method::POST, &a, "", "/users", body()).await;
    refused(
        &got,
        StatusCode::UNAUTHORIZED,
        "AUTH_ERR_EMPTY_APIKEY",
        None,
    );
    let got = cc(&t, Method::POST, &a, "rk_not-a-key", "/users", body()).await;
    refused(
        &got,
        StatusCode::UNAUTHORIZED,
        "AUTH_ERR_APIKEY_NOT_FOUND",
        None,
    );
    // A user's token is not an API key.
    let token = t.user(&a, json!({ "name": "U", "role": "admin" })).await["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let got = cc(&t, Method::POST, &a, &token, "/users", body()).await;
    refused(
        &got,
        StatusCode::UNAUTHORIZED,
        "AUTH_ERR_APIKEY_NOT_FOUND",
        None,
    );
    let read = t.read_key(&a).await;
    let got = cc(&t, Method::POST, &a, &read, "/users", body()).await;
    refused(&got, StatusCode::FORBIDDEN, "AUTH_ERR_NO_ACCESS", None);
    assert_eq!(
        cc(&t, Method::GET, &a, &read, "/users", None).await.0,
        StatusCode::OK
    );
    // Another account's key on this account is 404, and its users are not
    // found from there.
    let got = cc(&t, Method::POST, &a, &b.key, "/users", body()).await;
    assert_eq!(got.0, StatusCode::NOT_FOUND, "{}", got.1);
    assert_eq!(t.user_count(&a).await, 1);
    assert_eq!(
        cc(&t, Method::POST, &a, &a.key, "/users", body()).await.0,
        StatusCode::OK
    );
    let got = cc(&t, Method::GET, &b, &b.key, "/users/x", None).await;
    refused(&got, StatusCode::NOT_FOUND, "ERR_UID_NOT_FOUND", None);
    let (_, listed) = cc(&t, Method::GET, &b, &b.key, "/users", None).await;
    assert_eq!(listed["data"], json!([]));
}

#[tokio::test]
async fn the_list_filters_pages_and_counts() {
    let t = TestApp::spawn().await;
    let a = t.account("acme").await;
    cc(&t, Method::POST, &a, &a.key, "/roles", Some(manager_role())).await;
    for (uid, name, role, tags) in [
        ("ann", "Ann", "default", json!(["red"])),
        ("anna", "Anna", "manager", json!(["blue"])),
        ("bob", "Bob", "manager", json!([])),
        ("cid", "Andy", "default", json!(["red", "blue"])),
        ("dan", "Dan", "default", json!([])),
    ] {
        let body = json!({ "uid": uid, "name": name, "role": role, "tags": tags });
        let (s, r) = cc(&t, Method::POST, &a, &a.key, "/users", Some(body)).await;
        assert_eq!(s, StatusCode::OK, "{r}");
    }
    let uids = |v: &Value| -> Vec<String> {
        v["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["uid"].as_str().unwrap().to_owned())
            .collect()
    };
    let list = |q: &'static str| {
        let (t, a) = (&t, &a);
        async move {
            let (s, v) = cc(t, Method::GET, a, &a.key, &format!("/users{q}"), None).await;
            assert_eq!(s, StatusCode::OK, "{q}: {v}");
            v
        }
    };
    // Name order; `searchKey` is a prefix of the name or the uid.
    let all = list("").await;
    assert_eq!(uids(&all), ["cid", "ann", "anna", "bob", "dan"]);
    assert_eq!(
        all["meta"]["pagination"],
        json!({ "total": 5, "count": 5, "per_page": 100, "current_page": 1, "total_pages": 1 })
    );
    assert!(all["data"][0].get("tags").is_none(), "tags only withTags");
    assert_eq!(uids(&list("?searchKey=an").await), ["cid", "ann", "anna"]);
    assert_eq!(
        uids(&list("?searchKey=an&searchIn=uid").await),
        ["ann", "anna"]
    );
    assert_eq!(uids(&list("?role=manager").await), ["anna", "bob"]);
    assert_eq!(uids(&list("?role=default").await), ["cid", "ann", "dan"]);
    assert_eq!(uids(&list("?tags=blue").await), ["cid", "anna"]);
    let tagged = list("?tags=red&withTags=true").await;
    assert_eq!(tagged["data"][0]["tags"], json!(["red", "blue"]));
    assert_eq!(uids(&list("?status=offline").await).len(), 5);
    assert!(uids(&list("?status=available").await).is_empty());
    let page = list("?perPage=2&page=2").await;
    assert_eq!(uids(&page), ["anna", "bob"]);
    assert_eq!(
        page["meta"]["pagination"],
        json!({ "total": 5, "count": 2, "per_page": 2, "current_page": 2, "total_pages": 3 })
    );
    // Deactivated users are left out unless asked for.
    cc(&t, Method::DELETE, &a, &a.key, "/users/dan", None).await;
    assert_eq!(uids(&list("").await).len(), 4);
    let gone = list("?onlyDeactivated=true").await;
    assert_eq!(uids(&gone), ["dan"]);
    assert!(gone["data"][0]["deactivatedAt"].is_i64(), "{gone}");
    assert_eq!(uids(&list("?withDeactivated=true").await).len(), 5);
    for bad in [
        "?perPage=1001",
        "?perPage=0",
        "?page=0",
        "?status=busy",
        "?withTags=yes",
    ] {
        let url = format!("/users{bad}");
        let got = cc(&t, Method::GET, &a, &a.key, &url, None).await;
        refused(&got, StatusCode::BAD_REQUEST, "ERR_BAD_REQUEST", None);
    }
}

#[tokio::test]
async fn update_unset_deactivate_reactivate_and_erase() {
    let t = TestApp::spawn().await;
    let a = t.account("acme").await;
    cc(&t, Method::POST, &a, &a.key, "/roles", Some(manager_role())).await;
    let (_, _) = cc(&t, Method::POST, &a, &a.key, "/users", Some(barry())).await;
    let path = "/users/cometchat-uid-6";
    let patch = json!({ "name": "The Flash", "role": "default", "unset": ["avatar", "metadata"] });
    let (s, u) = cc(&t, Method::PUT, &a, &a.key, path, Some(patch)).await;
    assert_eq!(s, StatusCode::OK, "{u}");
    assert_eq!(u["data"]["name"], "The Flash");
    assert_eq!(u["data"]["role"], "default");
    assert!(
        u["data"].get("avatar").is_none() && u["data"].get("metadata").is_none(),
        "{u}"
    );
    assert_eq!(u["data"]["link"], "https://cometchat.com");
    for bad in [
        json!({ "unset": ["name"] }),
        json!({ "link": "https://x.com", "unset": ["link"] }),
        json!({ "name": "x".repeat(101) }),
        json!({ "uid": "other" }),
    ] {
        let got = cc(&t, Method::PUT, &a, &a.key, path, Some(bad)).await;
        refused(&got, StatusCode::BAD_REQUEST, "ERR_BAD_REQUEST", None);
    }
    let (_, same) = cc(&t, Method::GET, &a, &a.key, path, None).await;
    assert_eq!(same["data"]["name"], "The Flash");

    // DELETE deactivates, as CometChat does: the user is then not found,
    // natively still there (inactive).
    let (s, d) = cc(&t, Method::DELETE, &a, &a.key, path, None).await;
    assert_eq!(s, StatusCode::OK, "{d}");
    assert_eq!(
        d["data"],
        json!({ "success": true, "message": "User with cometchat-uid-6 has been deleted successfully." })
    );
    let got = cc(&t, Method::GET, &a, &a.key, path, None).await;
    refused(&got, StatusCode::NOT_FOUND, "ERR_UID_NOT_FOUND", None);
    let (_, n) = t.get(&a.path("/users?q=cometchat-uid-6"), &a.key).await;
    assert_eq!(n["data"]["users"][0]["active"], false);

    // Bulk: an unknown uid changes nothing; more than 25 is refused.
    let bulk = json!({ "uidsToActivate": ["cometchat-uid-6", "nobody"] });
    let got = cc(&t, Method::PUT, &a, &a.key, "/users", Some(bulk)).await;
    refused(&got, StatusCode::NOT_FOUND, "ERR_UID_NOT_FOUND", None);
    let got = cc(&t, Method::GET, &a, &a.key, path, None).await;
    refused(&got, StatusCode::NOT_FOUND, "ERR_UID_NOT_FOUND", None);
    let many: Vec<String> = (0..26).map(|i| format!("u{i}")).collect();
    let got = cc(
        &t,
        Method::PUT,
        &a,
        &a.key,
        "/users",
        Some(json!({ "uidsToActivate": many })),
    )
    .await;
    refused(
        &got,
        StatusCode::BAD_REQUEST,
        "ERR_BAD_REQUEST",
        Some("uidsToActivate"),
    );
    let bulk = json!({ "uidsToActivate": ["CometChat-UID-6"] });
    let (s, r) = cc(&t, Method::PUT, &a, &a.key, "/users", Some(bulk)).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["data"]["nonDeactivatedUids"], json!(["cometchat-uid-6"]));
    assert_eq!(
        cc(&t, Method::GET, &a, &a.key, path, None).await.0,
        StatusCode::OK
    );
    let bulk = json!({ "uidsToDeactivate": ["cometchat-uid-6"] });
    let (_, r) = cc(&t, Method::DELETE, &a, &a.key, "/users", Some(bulk)).await;
    assert_eq!(r["data"]["deactivatedUids"], json!(["cometchat-uid-6"]));

    // `permanent: "true"` (as the docs' example sends it) erases.
    let erase = json!({ "permanent": "true" });
    let (s, _) = cc(&t, Method::DELETE, &a, &a.key, path, Some(erase)).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(t.user_count(&a).await, 0);
    let again = json!({ "uid": "cometchat-uid-6", "name": "Barry" });
    assert_eq!(
        cc(&t, Method::POST, &a, &a.key, "/users", Some(again))
            .await
            .0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn auth_tokens_are_issued_listed_read_and_revoked() {
    let t = TestApp::spawn().await;
    let a = t.account("acme").await;
    cc(
        &t,
        Method::POST,
        &a,
        &a.key,
        "/users",
        Some(json!({ "uid": "kim", "name": "Kim" })),
    )
    .await;
    let (s, issued) = cc(
        &t,
        Method::POST,
        &a,
        &a.key,
        "/users/kim/auth_tokens",
        Some(json!({ "force": true })),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{issued}");
    assert_eq!(issued["data"]["uid"], "kim");
    let token = issued["data"]["authToken"].as_str().unwrap().to_owned();
    assert!(issued["data"]["createdAt"].is_i64());
    let mut ws = realtime::connect(&t, &token).await;
    drop(ws.close(None).await);

    // The create-user token and this one; listed by their ids.
    let (_, listed) = cc(&t, Method::GET, &a, &a.key, "/users/kim/auth_tokens", None).await;
    assert_eq!(listed["meta"]["pagination"]["total"], 2, "{listed}");
    let ids: Vec<&str> = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["authToken"].as_str().unwrap())
        .collect();
    let by_token = format!("/users/kim/auth_tokens/{token}");
    let (s, one) = cc(&t, Method::GET, &a, &a.key, &by_token, None).await;
    assert_eq!(s, StatusCode::OK, "{one}");
    assert_eq!(one["data"]["authToken"], token);
    let (s, _) = cc(
        &t,
        Method::GET,
        &a,
        &a.key,
        &format!("/users/kim/auth_tokens/{}", ids[0]),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let got = cc(
        &t,
        Method::GET,
        &a,
        &a.key,
        "/users/kim/auth_tokens/not-a-token",
        None,
    )
    .await;
    refused(
        &got,
        StatusCode::NOT_FOUND,
        "ERR_AUTH_TOKEN_NOT_FOUND",
        None,
    );
    // Another user's token is not this user's.
    cc(
        &t,
        Method::POST,
        &a,
        &a.key,
        "/users",
        Some(json!({ "uid": "lee", "name": "Lee" })),
    )
    .await;
    let got = cc(
        &t,
        Method::GET,
        &a,
        &a.key,
        &format!("/users/lee/auth_tokens/{token}"),
        None,
    )
    .await;
    refused(
        &got,
        StatusCode::NOT_FOUND,
        "ERR_AUTH_TOKEN_NOT_FOUND",
        None,
    );

    // Revoked: not found again, and the realtime connection is refused.
    let (s, d) = cc(&t, Method::DELETE, &a, &a.key, &by_token, None).await;
    assert_eq!(s, StatusCode::OK, "{d}");
    assert_eq!(d["data"]["success"], true);
    let got = cc(&t, Method::GET, &a, &a.key, &by_token, None).await;
    refused(
        &got,
        StatusCode::NOT_FOUND,
        "ERR_AUTH_TOKEN_NOT_FOUND",
        None,
    );
    assert_eq!(realtime::refused(&t, Some(&token), None).await, 401);
    let (s, f) = cc(
        &t,
        Method::DELETE,
        &a,
        &a.key,
        "/users/kim/auth_tokens",
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        f["data"]["message"],
        "Cleared Auth Tokens successfully for uid kim."
    );
    let (_, listed) = cc(&t, Method::GET, &a, &a.key, "/users/kim/auth_tokens", None).await;
    assert_eq!(listed["data"], json!([]));
    let got = cc(
        &t,
        Method::POST,
        &a,
        &a.key,
        "/users/nobody/auth_tokens",
        None,
    )
    .await;
    refused(&got, StatusCode::NOT_FOUND, "ERR_UID_NOT_FOUND", None);
}

#[tokio::test]
async fn roles_are_created_listed_changed_and_deleted() {
    let t = TestApp::spawn().await;
    let a = t.account("acme").await;
    let (s, r) = cc(&t, Method::POST, &a, &a.key, "/roles", Some(manager_role())).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    for dup in [
        manager_role(),
        json!({ "role": "Default", "name": "D" }),
        json!({ "role": "admin", "name": "A" }),
    ] {
        let got = cc(&t, Method::POST, &a, &a.key, "/roles", Some(dup)).await;
        refused(
            &got,
            StatusCode::BAD_REQUEST,
            "ERR_ROLE_ALREADY_EXISTS",
            None,
        );
    }
    for (bad, field) in [
        (json!({ "name": "x" }), "role"),
        (json!({ "role": "has space", "name": "x" }), "role"),
        (json!({ "role": "a".repeat(65), "name": "x" }), "role"),
        (json!({ "role": "ok", "name": "n".repeat(101) }), "name"),
    ] {
        let got = cc(&t, Method::POST, &a, &a.key, "/roles", Some(bad)).await;
        refused(
            &got,
            StatusCode::BAD_REQUEST,
            "ERR_BAD_REQUEST",
            Some(field),
        );
    }
    let (_, listed) = cc(&t, Method::GET, &a, &a.key, "/roles", None).await;
    assert_eq!(listed["data"][0]["role"], "default");
    assert_eq!(listed["data"][0]["name"], "Default Role");
    let keys: Vec<&str> = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["role"].as_str().unwrap())
        .collect();
    assert!(keys.contains(&"manager") && keys.len() == 5, "{listed}");
    let (s, got) = cc(&t, Method::GET, &a, &a.key, "/roles/manager", None).await;
    assert_eq!(
        (s, &got["data"]["role"]),
        (StatusCode::OK, &json!("manager"))
    );
    let (_, changed) = cc(
        &t,
        Method::PUT,
        &a,
        &a.key,
        "/roles/manager",
        Some(json!({ "description": "Managers" })),
    )
    .await;
    assert_eq!(changed["data"]["description"], "Managers");
    let (_, cleared) = cc(
        &t,
        Method::PUT,
        &a,
        &a.key,
        "/roles/manager",
        Some(json!({ "unset": ["description"] })),
    )
    .await;
    assert!(cleared["data"].get("description").is_none(), "{cleared}");

    // Held, it stays; built in, it stays; else it goes.
    cc(
        &t,
        Method::POST,
        &a,
        &a.key,
        "/users",
        Some(json!({ "uid": "m", "name": "M", "role": "manager" })),
    )
    .await;
    let got = cc(&t, Method::DELETE, &a, &a.key, "/roles/manager", None).await;
    refused(
        &got,
        StatusCode::BAD_REQUEST,
        "ERR_ROLE_DELETE_FAILED",
        None,
    );
    let got = cc(&t, Method::DELETE, &a, &a.key, "/roles/default", None).await;
    refused(
        &got,
        StatusCode::BAD_REQUEST,
        "ERR_ROLE_DELETE_DENIED",
        None,
    );
    cc(
        &t,
        Method::PUT,
        &a,
        &a.key,
        "/users/m",
        Some(json!({ "role": "default" })),
    )
    .await;
    let (s, d) = cc(&t, Method::DELETE, &a, &a.key, "/roles/manager", None).await;
    assert_eq!(s, StatusCode::OK, "{d}");
    assert_eq!(
        d["data"]["message"],
        "Role manager has been deleted successfully."
    );
    let got = cc(&t, Method::GET, &a, &a.key, "/roles/manager", None).await;
    refused(&got, StatusCode::NOT_FOUND, "ERR_ROLE_NOT_FOUND", None);
    // Natively, `default` is no role name: it would be CometChat's `user`.
    let native = json!({ "name": "Default", "permissions": [] });
    let got = t.post(&a.path("/roles"), &a.key, native).await;
    crate::helpers::assert_error(&got, StatusCode::CONFLICT, "CONFLICT", Some("name"));
}

/// `/openapi.json` lists every CometChat route under its own tag, with the
/// `apikey` security scheme.
#[tokio::test]
async fn openapi_lists_the_routes_under_their_tag() {
    let t = TestApp::spawn().await;
    let doc: Value = t
        .client
        .get(format!("{}/openapi.json", t.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut operations = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        if !path.starts_with("/compat/cometchat/") {
            continue;
        }
        for (method, op) in item.as_object().unwrap() {
            operations += 1;
            assert_eq!(op["tags"], json!(["compat: CometChat"]), "{method} {path}");
            assert_eq!(
                op["security"],
                json!([{ "cometchat": [] }]),
                "{method} {path}"
            );
        }
    }
    assert_eq!(operations, 17);
    assert_eq!(
        doc["components"]["securitySchemes"]["cometchat"]["name"],
        "apikey"
    );
}

/// What a review found: a uid that is another user's Roster id, list
/// filters sent repeated or indexed, a flag that is neither true nor false,
/// and a read key changing a role in a way Roster would not keep.
#[tokio::test]
async fn edge_cases_of_uids_lists_flags_and_scopes() {
    let t = TestApp::spawn().await;
    let a = t.account("acme").await;
    let plain = t.user(&a, json!({ "name": "No Uid" })).await;
    let id = plain["user"]["id"].as_str().unwrap().to_owned();
    let squat = json!({ "uid": id, "name": "Squatter" });
    let got = cc(&t, Method::POST, &a, &a.key, "/users", Some(squat)).await;
    refused(
        &got,
        StatusCode::BAD_REQUEST,
        "ERR_UID_ALREADY_EXISTS",
        None,
    );
    let (_, still) = cc(&t, Method::GET, &a, &a.key, &format!("/users/{id}"), None).await;
    assert_eq!(still["data"]["name"], "No Uid");

    for (uid, tag) in [("r", "red"), ("b", "blue"), ("g", "green")] {
        let body = json!({ "uid": uid, "name": uid, "tags": [tag] });
        cc(&t, Method::POST, &a, &a.key, "/users", Some(body)).await;
    }
    for q in [
        "?tags[]=red&tags[]=blue",
        "?tags[0]=red&tags[1]=blue",
        "?tags=red&tags=blue,red",
    ] {
        let (_, v) = cc(&t, Method::GET, &a, &a.key, &format!("/users{q}"), None).await;
        assert_eq!(v["meta"]["pagination"]["total"], 2, "{q}: {v}");
    }
    let many = (0..26)
        .map(|i| format!("t{i}"))
        .collect::<Vec<_>>()
        .join(",");
    let got = cc(
        &t,
        Method::GET,
        &a,
        &a.key,
        &format!("/users?tags={many}"),
        None,
    )
    .await;
    refused(
        &got,
        StatusCode::BAD_REQUEST,
        "ERR_BAD_REQUEST",
        Some("tags"),
    );

    let got = cc(
        &t,
        Method::DELETE,
        &a,
        &a.key,
        "/users/r",
        Some(json!({ "permanent": 1 })),
    )
    .await;
    refused(
        &got,
        StatusCode::BAD_REQUEST,
        "ERR_BAD_REQUEST",
        Some("permanent"),
    );
    assert!(!got.1.to_string().contains("enum"), "{}", got.1);
    assert_eq!(
        cc(&t, Method::GET, &a, &a.key, "/users/r", None).await.0,
        StatusCode::OK
    );
    let bulk = json!({ "uidsToDeactivate": ["r", "R"] });
    let (_, d) = cc(&t, Method::DELETE, &a, &a.key, "/users", Some(bulk)).await;
    assert_eq!(d["data"]["deactivatedUids"], json!(["r"]));

    cc(&t, Method::POST, &a, &a.key, "/roles", Some(manager_role())).await;
    let read = t.read_key(&a).await;
    let got = cc(
        &t,
        Method::PUT,
        &a,
        &read,
        "/roles/manager",
        Some(json!({})),
    )
    .await;
    refused(&got, StatusCode::FORBIDDEN, "AUTH_ERR_NO_ACCESS", None);
    // Field names in `details` are CometChat's (camelCase).
    let bad = json!({ "uid": "w", "name": "W", "withAuthToken": "yes" });
    let got = cc(&t, Method::POST, &a, &a.key, "/users", Some(bad)).await;
    refused(
        &got,
        StatusCode::BAD_REQUEST,
        "ERR_BAD_REQUEST",
        Some("withAuthToken"),
    );
}

/// Endpoints CometChat has and Roster does not, and methods a route does
/// not take, answer in CometChat's shape (and Rocket.Chat's under its own
/// prefix); elsewhere the native envelope.
#[tokio::test]
async fn unknown_endpoints_answer_in_the_vendors_shape() {
    let t = TestApp::spawn().await;
    let a = t.account("acme").await;
    let got = cc(&t, Method::GET, &a, &a.key, "/groups", None).await;
    refused(&got, StatusCode::NOT_FOUND, "ERR_API_NOT_FOUND", None);
    let got = cc(&t, Method::PATCH, &a, &a.key, "/users", Some(json!({}))).await;
    refused(
        &got,
        StatusCode::METHOD_NOT_ALLOWED,
        "ERR_API_NOT_FOUND",
        None,
    );
    let rc = format!("/compat/rocketchat/{}/api/v1/chat.postMessage", a.id);
    let (s, body) = t.post(&rc, &a.key, json!({})).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(
        body,
        json!({ "success": false, "error": "Resource not found" })
    );
    let (s, body) = t.get("/v1/nowhere", &a.key).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "NOT_FOUND");
}
