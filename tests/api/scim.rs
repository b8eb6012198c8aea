//! SCIM 2.0: two independent conformance tools from PyPI against the real
//! server (tests/support/scim_conformance.py), the mapping both ways
//! between SCIM and the native API, tenancy, the identity providers'
//! quirks, filters, ETags, the errors of RFC 7644 §3.12, and the events a
//! SCIM change writes.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{Account, TestApp};

/// A server whose public URL is its own address, as `ROSTER_PUBLIC_URL`
/// would be in production: locations and `$ref`s point back at it.
async fn spawn_public() -> TestApp {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    TestApp::spawn_with(|c| {
        c.listen = format!("127.0.0.1:{port}");
        c.public_url = Some(format!("http://127.0.0.1:{port}"));
    })
    .await
}

fn base(t: &TestApp, a: &Account) -> String {
    format!("{}/v1/accounts/{}/scim/v2", t.base, a.id)
}

/// A SCIM request with the key as a bearer, as `application/scim+json`.
async fn scim(
    t: &TestApp,
    a: &Account,
    key: &str,
    method: Method,
    route: &str,
    body: Option<Value>,
    headers: &[(&str, &str)],
) -> (StatusCode, Value, reqwest::header::HeaderMap) {
    let mut req = t
        .client
        .request(method, format!("{}{route}", base(t, a)))
        .bearer_auth(key);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if let Some(b) = body {
        req = req
            .header("content-type", "application/scim+json")
            .body(b.to_string());
    }
    let res = req.send().await.expect("request");
    let status = res.status();
    let headers = res.headers().clone();
    let text = res.text().await.unwrap_or_default();
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    (status, body, headers)
}

async fn get(t: &TestApp, a: &Account, route: &str) -> (StatusCode, Value) {
    let (s, b, _) = scim(t, a, &a.key, Method::GET, route, None, &[]).await;
    (s, b)
}

async fn post(t: &TestApp, a: &Account, route: &str, body: Value) -> (StatusCode, Value) {
    let (s, b, _) = scim(t, a, &a.key, Method::POST, route, Some(body), &[]).await;
    (s, b)
}

async fn put(t: &TestApp, a: &Account, route: &str, body: Value) -> (StatusCode, Value) {
    let (s, b, _) = scim(t, a, &a.key, Method::PUT, route, Some(body), &[]).await;
    (s, b)
}

async fn patch(t: &TestApp, a: &Account, route: &str, ops: Value) -> (StatusCode, Value) {
    let body = json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": ops,
    });
    let (s, b, _) = scim(t, a, &a.key, Method::PATCH, route, Some(body), &[]).await;
    (s, b)
}

fn user(name: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": format!("{name}@contoso.com"),
        "externalId": format!("ext-{name}"),
        "name": { "givenName": "Given", "familyName": name },
        "displayName": format!("Display {name}"),
        "emails": [{ "value": format!("{name}@contoso.com"), "type": "work", "primary": true }],
        "active": true,
    })
}

/// Asserts an RFC 7644 §3.12 error with this status and scimType.
fn assert_scim_error(got: &(StatusCode, Value), status: StatusCode, scim_type: Option<&str>) {
    let (s, b) = got;
    assert_eq!(*s, status, "{b}");
    assert_eq!(
        b["schemas"][0], "urn:ietf:params:scim:api:messages:2.0:Error",
        "{b}"
    );
    assert_eq!(b["status"], status.as_u16().to_string(), "{b}");
    assert!(b["detail"].as_str().is_some_and(|d| !d.is_empty()), "{b}");
    match scim_type {
        Some(t) => assert_eq!(b["scimType"], t, "{b}"),
        None => assert!(b.get("scimType").is_none(), "{b}"),
    }
}

#[tokio::test]
async fn two_independent_conformance_tools_pass() {
    let t = spawn_public().await;
    let a = t.account("scim-conformance").await;
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/support/scim_conformance.py"
    );
    let out = tokio::process::Command::new("python3")
        .arg(script)
        .arg(base(&t, &a))
        .arg(&a.key)
        .output()
        .await
        .expect("python3 with scim2-tester[httpx2] and scim-sanity (pip install)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    // The tools' summary lines, in the test's output.
    println!("{stdout}");
    assert!(
        out.status.success(),
        "the SCIM conformance tools found failures:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("scim2-tester: "), "{stdout}");
    assert!(stdout.contains("scim-sanity probe --strict: "), "{stdout}");
}

#[tokio::test]
async fn a_scim_user_reads_natively_and_a_native_user_reads_in_scim() {
    let t = TestApp::spawn().await;
    let a = t.account("scim-map").await;
    let (s, created) = post(&t, &a, "/Users", user("ann")).await;
    assert_eq!(s, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["meta"]["resourceType"], "User");
    assert!(
        created["meta"]["version"]
            .as_str()
            .unwrap()
            .starts_with("W/\"")
    );
    let (_, native) = t.get(&a.path(&format!("/users/{id}")), &a.key).await;
    let u = &native["data"]["user"];
    assert_eq!(u["username"], "ann@contoso.com", "{native}");
    assert_eq!(u["name"], "Display ann");
    assert_eq!(u["email"], "ann@contoso.com");
    assert_eq!(u["custom_id"], "ext-ann");
    assert_eq!(u["active"], true);

    // Native → SCIM: every mapped field.
    let made = t
        .user(
            &a,
            json!({"username": "bob", "name": "Bob B", "email": "bob@x.io", "phone": "+14155552671",
                   "custom_id": "bob-1", "nickname": "bobby", "link": "https://x.io/bob",
                   "profile_picture": "https://x.io/bob.png", "bio": "hi", "roles": ["user", "admin"]}),
        )
        .await;
    let bob = made["user"]["id"].as_str().unwrap();
    let (s, sc) = get(&t, &a, &format!("/Users/{bob}")).await;
    assert_eq!(s, StatusCode::OK, "{sc}");
    assert_eq!(sc["userName"], "bob");
    assert_eq!(sc["externalId"], "bob-1");
    assert_eq!(sc["displayName"], "Bob B");
    assert_eq!(sc["name"]["formatted"], "Bob B");
    assert_eq!(sc["nickName"], "bobby");
    assert_eq!(sc["profileUrl"], "https://x.io/bob");
    assert_eq!(sc["emails"], json!([{"value": "bob@x.io", "type": "work"}]));
    assert_eq!(
        sc["phoneNumbers"],
        json!([{"value": "+14155552671", "type": "work"}])
    );
    assert_eq!(
        sc["photos"],
        json!([{"value": "https://x.io/bob.png", "type": "photo"}])
    );
    assert_eq!(
        sc["roles"],
        json!([{"value": "admin"}]),
        "user is not shown"
    );
    assert_eq!(
        sc["urn:ietf:params:scim:schemas:extension:roster:2.0:User"]["bio"],
        "hi"
    );
    assert!(sc.get("password").is_none());

    // An IdP's phone in its own format is kept in E.164; a name from its parts.
    let (s, c) = post(
        &t,
        &a,
        "/Users",
        json!({"userName": "cy", "name": {"givenName": "Cy", "familyName": "Young"},
               "phoneNumbers": [{"value": "tel:+1-415-555-2672", "type": "mobile"}]}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{c}");
    assert_eq!(c["phoneNumbers"][0]["value"], "+14155552672");
    assert_eq!(c["displayName"], "Cy Young");
}

#[tokio::test]
async fn another_accounts_key_sees_nothing_and_user_tokens_are_no_credential() {
    let t = TestApp::spawn().await;
    let a = t.account("scim-a").await;
    let b = t.account("scim-b").await;
    let (_, u) = post(&t, &a, "/Users", user("dee")).await;
    let id = u["id"].as_str().unwrap();
    // B's key on A's base: the account is not found, nothing is listed.
    let got = scim(&t, &a, &b.key, Method::GET, "/Users", None, &[]).await;
    assert_scim_error(&(got.0, got.1), StatusCode::NOT_FOUND, None);
    // B's base, A's user id: not found.
    assert_scim_error(
        &get(&t, &b, &format!("/Users/{id}")).await,
        StatusCode::NOT_FOUND,
        None,
    );
    let (_, list) = get(&t, &b, "/Users").await;
    assert_eq!(list["totalResults"], 0, "{list}");
    // No credential, a bad key, a user's token: 401 with a challenge.
    let got = t
        .client
        .get(format!("{}/Users", base(&t, &a)))
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), StatusCode::UNAUTHORIZED);
    assert!(got.headers().contains_key("www-authenticate"));
    let bad = scim(&t, &a, "rk_nope", Method::GET, "/Users", None, &[]).await;
    assert_eq!(bad.0, StatusCode::UNAUTHORIZED, "{}", bad.1);
    let native = t.user(&a, json!({"username": "tok", "name": "T"})).await;
    let token = native["token"].as_str().unwrap();
    let got = scim(&t, &a, token, Method::GET, "/Users", None, &[]).await;
    assert_scim_error(&(got.0, got.1), StatusCode::UNAUTHORIZED, None);
    // A read key reads, and writing is 403 that writes nothing.
    let read = t.read_key(&a).await;
    let r = scim(
        &t,
        &a,
        &read,
        Method::GET,
        &format!("/Users/{id}"),
        None,
        &[],
    )
    .await;
    assert_eq!(r.0, StatusCode::OK);
    let before = t.user_count(&a).await;
    let w = scim(
        &t,
        &a,
        &read,
        Method::POST,
        "/Users",
        Some(user("eve")),
        &[],
    )
    .await;
    assert_scim_error(&(w.0, w.1), StatusCode::FORBIDDEN, None);
    assert_eq!(t.user_count(&a).await, before);
}

#[tokio::test]
async fn identity_providers_quirks_are_accepted() {
    let t = TestApp::spawn().await;
    let a = t.account("scim-idp").await;
    let (_, u) = post(&t, &a, "/Users", user("fay")).await;
    let id = u["id"].as_str().unwrap().to_owned();
    let path = format!("/Users/{id}");

    // Entra: capitalised ops, a string boolean, its email path.
    let (s, p) = patch(
        &t,
        &a,
        &path,
        json!([
            {"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "fay@fabrikam.com"},
            {"op": "Add", "path": "displayName", "value": "Fay F"},
        ]),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{p}");
    assert_eq!(p["emails"][0]["value"], "fay@fabrikam.com");
    assert_eq!(p["displayName"], "Fay F");
    // A token issued before deactivation stops at once.
    let (s, tok) = t
        .post(&a.path(&format!("/users/{id}/tokens")), &a.key, json!({}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{tok}");
    let token = tok["data"]["token"].as_str().unwrap().to_owned();
    let me = &a.path(&format!("/users/{id}"));
    assert_eq!(t.get(me, &token).await.0, StatusCode::OK);
    let (s, p) = patch(
        &t,
        &a,
        &path,
        json!([{"op": "Replace", "path": "active", "value": "False"}]),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{p}");
    assert_eq!(p["active"], false);
    assert_eq!(t.get(me, &token).await.0, StatusCode::UNAUTHORIZED);
    // Okta: `active` without a path.
    let (s, p) = patch(
        &t,
        &a,
        &path,
        json!([{"op": "replace", "value": {"active": true}}]),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{p}");
    assert_eq!(p["active"], true);
    // Entra's add of an address to a user without one builds the value.
    let (_, g) = post(&t, &a, "/Users", json!({"userName": "gus"})).await;
    let gus = format!("/Users/{}", g["id"].as_str().unwrap());
    let (s, p) = patch(
        &t,
        &a,
        &gus,
        json!([{"op": "Add", "path": "emails[type eq \"work\"].value", "value": "gus@x.io"}]),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{p}");
    assert_eq!(p["emails"], json!([{"value": "gus@x.io", "type": "work"}]));
    // Entra's default mappings: attributes Roster does not store (title,
    // preferredLanguage, name parts, addresses, the enterprise extension)
    // are accepted and change nothing, by path and without one; an
    // attribute no schema has is still refused.
    let ent = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
    let (s, p) = patch(
        &t,
        &a,
        &gus,
        json!([
            {"op": "Add", "path": "title", "value": "Engineer"},
            {"op": "Add", "path": "preferredLanguage", "value": "en-US"},
            {"op": "Add", "path": "name.givenName", "value": "Gus"},
            {"op": "Add", "path": "addresses[type eq \"work\"].locality", "value": "Oslo"},
            {"op": "Add", "path": format!("{ent}:department"), "value": "R&D"},
            {"op": "Add", "path": format!("{ent}:manager"), "value": {"value": "x"}},
            {"op": "Add", "value": {"title": "Lead", ent: {"employeeNumber": "7"}}},
            {"op": "Replace", "path": "displayName", "value": "Gus G"},
        ]),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{p}");
    assert_eq!(p["displayName"], "Gus G");
    for unstored in ["title", "preferredLanguage", "addresses", ent] {
        assert!(p.get(unstored).is_none(), "{unstored}: {p}");
    }
    assert!(p["name"].get("givenName").is_none(), "{p}");
    let (s, e) = patch(
        &t,
        &a,
        &gus,
        json!([{"op": "Add", "path": "shoeSize", "value": "44"}]),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{e}");
    assert_eq!(e["scimType"], "invalidPath", "{e}");

    // Groups: Okta's add, Entra's remove with a value list, remove all.
    let (_, h) = post(&t, &a, "/Users", json!({"userName": "hal"})).await;
    let hal = h["id"].as_str().unwrap().to_owned();
    let (s, grp) = post(
        &t,
        &a,
        "/Groups",
        json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "Eng",
               "externalId": "okta-g1", "members": [{"value": id}]}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{grp}");
    let gid = grp["id"].as_str().unwrap().to_owned();
    let gpath = format!("/Groups/{gid}");
    let (_, space) = t.get(&a.path(&format!("/spaces/{gid}")), &a.key).await;
    assert_eq!(space["data"]["space"]["name"], "Eng", "{space}");
    assert_eq!(space["data"]["space"]["external_id"], "okta-g1");
    let (s, p) = patch(
        &t,
        &a,
        &gpath,
        json!([{"op": "add", "path": "members", "value": [{"value": hal}]}]),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{p}");
    assert_eq!(p["members"].as_array().unwrap().len(), 2, "{p}");
    let (_, members) = t
        .get(&a.path(&format!("/spaces/{gid}/members")), &a.key)
        .await;
    assert_eq!(
        members["data"]["members"].as_array().unwrap().len(),
        2,
        "{members}"
    );
    let (s, p) = patch(
        &t,
        &a,
        &gpath,
        json!([{"op": "Remove", "path": "members", "value": [{"value": id}]}]),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{p}");
    assert_eq!(p["members"].as_array().unwrap().len(), 1, "{p}");
    assert_eq!(p["members"][0]["value"], hal.as_str());
    assert_eq!(p["members"][0]["type"], "User");
    assert!(
        p["members"][0]["$ref"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/scim/v2/Users/{hal}"))
    );
    let (s, p) = patch(
        &t,
        &a,
        &gpath,
        json!([{"op": "replace", "path": "members", "value": []}]),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{p}");
    assert!(p.get("members").is_none(), "{p}");
    let (_, members) = t
        .get(&a.path(&format!("/spaces/{gid}/members")), &a.key)
        .await;
    assert_eq!(members["data"]["members"], json!([]), "{members}");
    // Looked up the way IdPs do, case-insensitively.
    let (_, found) = get(
        &t,
        &a,
        "/Groups?filter=displayName%20eq%20%22eng%22&excludedAttributes=members",
    )
    .await;
    assert_eq!(found["totalResults"], 1, "{found}");

    // Soft delete, then hard delete.
    let (s, _) = patch(
        &t,
        &a,
        &path,
        json!([{"op": "replace", "path": "active", "value": false}]),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let del = scim(&t, &a, &a.key, Method::DELETE, &path, None, &[]).await;
    assert_eq!(del.0, StatusCode::NO_CONTENT);
    assert_scim_error(&get(&t, &a, &path).await, StatusCode::NOT_FOUND, None);
    assert_eq!(
        t.get(&a.path(&format!("/users/{id}")), &a.key).await.0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn oktas_group_push_and_primary_and_display_sub_attributes_are_accepted() {
    let t = TestApp::spawn().await;
    let a = t.account("scim-okta").await;
    let mut ids = Vec::new();
    for name in ["ann", "bob", "cy"] {
        let (s, u) = post(&t, &a, "/Users", user(name)).await;
        assert_eq!(s, StatusCode::CREATED, "{u}");
        ids.push(u["id"].as_str().unwrap().to_owned());
    }
    let [ann, bob, cy] = [&ids[0], &ids[1], &ids[2]];
    let names = |g: &Value| -> Vec<String> {
        let mut v: Vec<String> = g["members"]
            .as_array()
            .map(|m| {
                m.iter()
                    .map(|m| m["value"].as_str().unwrap().to_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    };
    let sorted = |mut v: Vec<&String>| {
        v.sort();
        v.into_iter().cloned().collect::<Vec<_>>()
    };
    // Group Push creates the group with its members' display names.
    let (s, g) = post(
        &t,
        &a,
        "/Groups",
        json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "Sales",
               "members": [{"value": ann, "display": "Display ann"}]}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{g}");
    assert_eq!(names(&g), sorted(vec![ann]));
    let gpath = format!("/Groups/{}", g["id"].as_str().unwrap());
    // Its PATCHes: members added with `display`, a rename that echoes the
    // id, a removal by value filter, and `display` by path.
    let (s, p) = patch(
        &t,
        &a,
        &gpath,
        json!([{"op": "add", "path": "members",
                "value": [{"value": bob, "display": "Display bob"}, {"value": cy, "display": "Display cy"}]}]),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{p}");
    assert_eq!(names(&p), sorted(vec![ann, bob, cy]));
    assert!(p["members"][0].get("display").is_none(), "{p}");
    let (s, p) = patch(
        &t,
        &a,
        &gpath,
        json!([
            {"op": "replace", "value": {"id": g["id"], "displayName": "Sales EMEA"}},
            {"op": "remove", "path": format!("members[value eq \"{bob}\"]")},
            {"op": "replace", "path": format!("members[value eq \"{cy}\"].display"), "value": "C"},
        ]),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{p}");
    assert_eq!(p["displayName"], "Sales EMEA");
    assert_eq!(names(&p), sorted(vec![ann, cy]));
    // A PUT with `display` on each member sets exactly those members.
    let (s, p) = put(
        &t,
        &a,
        &gpath,
        json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
               "displayName": "Sales EMEA", "members": [{"value": bob, "display": "B"}]}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{p}");
    assert_eq!(names(&p), sorted(vec![bob]));
    let (_, members) = t
        .get(
            &a.path(&format!("/spaces/{}/members", g["id"].as_str().unwrap())),
            &a.key,
        )
        .await;
    let native: Vec<&Value> = members["data"]["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| &m["user_id"])
        .collect();
    assert_eq!(native, [&json!(bob)], "{members}");

    // Users: `primary` chooses the one value kept and `display` is
    // dropped, in values and by path; neither is answered.
    let upath = format!("/Users/{ann}");
    let (s, p) = patch(
        &t,
        &a,
        &upath,
        json!([
            {"op": "replace", "path": "emails[type eq \"work\"].primary", "value": true},
            {"op": "replace", "path": "emails[type eq \"work\"].display", "value": "Work"},
            {"op": "add", "path": "photos",
             "value": [{"value": "https://img.example.com/a.png", "type": "photo", "primary": true, "display": "A"}]},
        ]),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{p}");
    assert_eq!(
        p["emails"],
        json!([{"value": "ann@contoso.com", "type": "work"}])
    );
    assert_eq!(p["photos"][0]["value"], "https://img.example.com/a.png");
    assert!(p["photos"][0].get("primary").is_none(), "{p}");
    // Of several addresses the primary one is kept, whatever its place.
    let (s, p) = patch(
        &t,
        &a,
        &upath,
        json!([{"op": "replace", "path": "emails", "value": [
            {"value": "old@contoso.com", "type": "work", "display": "old"},
            {"value": "new@contoso.com", "type": "work", "primary": true, "display": "new"},
        ]}]),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{p}");
    assert_eq!(p["emails"][0]["value"], "new@contoso.com", "{p}");
    let (_, native) = t.get(&a.path(&format!("/users/{ann}")), &a.key).await;
    assert_eq!(
        native["data"]["user"]["email"], "new@contoso.com",
        "{native}"
    );
    // `/Schemas` declares neither: nothing of them is kept to answer.
    let (_, schema) = get(
        &t,
        &a,
        "/Schemas/urn:ietf:params:scim:schemas:core:2.0:User",
    )
    .await;
    let emails = schema["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "emails")
        .unwrap();
    let subs: Vec<&str> = emails["subAttributes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(subs, ["value", "type"], "{emails}");
}

#[tokio::test]
async fn a_users_fields_and_active_change_together_or_not_at_all() {
    let t = TestApp::spawn().await;
    let a = t.account("scim-atomic").await;
    let (_, u) = post(&t, &a, "/Users", user("dee")).await;
    let id = u["id"].as_str().unwrap().to_owned();
    post(&t, &a, "/Users", user("eve")).await;
    let upath = format!("/Users/{id}");
    // A clash on userName refuses the whole PUT: the user stays active.
    let mut doc = user("dee");
    doc["userName"] = json!("eve@contoso.com");
    doc["active"] = json!(false);
    doc["displayName"] = json!("Dee D");
    assert_scim_error(
        &put(&t, &a, &upath, doc).await,
        StatusCode::CONFLICT,
        Some("uniqueness"),
    );
    let (_, now) = get(&t, &a, &upath).await;
    assert_eq!(
        (now["active"].clone(), now["displayName"].clone()),
        (json!(true), json!("Display dee"))
    );
    // One that changes the name and deactivates does both, in one request.
    let mut doc = user("dee");
    doc["active"] = json!(false);
    doc["displayName"] = json!("Dee D");
    let (s, p) = put(&t, &a, &upath, doc).await;
    assert_eq!(s, StatusCode::OK, "{p}");
    assert_eq!(
        (p["active"].clone(), p["displayName"].clone()),
        (json!(false), json!("Dee D"))
    );
    let (_, audit) = t
        .get(&a.path(&format!("/audit?subject_id={id}")), &a.key)
        .await;
    let events = audit["data"]["events"].as_array().unwrap();
    let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        ["user.deactivated", "user.updated", "user.created"],
        "{audit}"
    );
    assert_eq!(events[0]["request_id"], events[1]["request_id"], "{audit}");
    // A Group write that only moves members writes no space.updated.
    let (_, g) = post(
        &t,
        &a,
        "/Groups",
        json!({"displayName": "Ops", "members": [{"value": id}]}),
    )
    .await;
    let gid = g["id"].as_str().unwrap().to_owned();
    let (s, p) = patch(
        &t,
        &a,
        &format!("/Groups/{gid}"),
        json!([{"op": "remove", "path": "members"}]),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{p}");
    let (_, audit) = t
        .get(
            &a.path(&format!("/audit?type=space.*&subject_id={gid}")),
            &a.key,
        )
        .await;
    let kinds: Vec<&str> = audit["data"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["space.created"], "{audit}");
}

#[tokio::test]
async fn filters_sort_and_windows_answer_what_they_ask() {
    let t = TestApp::spawn().await;
    let a = t.account("scim-filter").await;
    for n in ["ivy", "ian", "jo"] {
        let (s, b) = post(&t, &a, "/Users", user(n)).await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
    }
    let total = |q: &str| {
        let (t, a) = (&t, &a);
        let q = q.to_owned();
        async move {
            let (s, b) = get(t, a, &format!("/Users?filter={}", urlencode(&q))).await;
            assert_eq!(s, StatusCode::OK, "{q}: {b}");
            b["totalResults"].as_u64().unwrap()
        }
    };
    assert_eq!(total("userName eq \"IVY@contoso.com\"").await, 1);
    assert_eq!(total("userName sw \"i\"").await, 2);
    assert_eq!(
        total("userName sw \"i\" and not (externalId eq \"ext-ian\")").await,
        1
    );
    assert_eq!(
        total("externalId eq \"ext-jo\" or displayName co \"ivy\"").await,
        2
    );
    assert_eq!(
        total("emails[type eq \"work\" and value ew \"@contoso.com\"]").await,
        3
    );
    assert_eq!(total("emails.value pr").await, 3);
    assert_eq!(total("meta.created gt \"2000-01-01T00:00:00Z\"").await, 3);
    assert_eq!(
        total("meta.lastModified lt \"2000-01-01T00:00:00Z\"").await,
        0
    );
    assert_eq!(total("active eq true").await, 3);
    let (_, page) = get(
        &t,
        &a,
        "/Users?sortBy=userName&sortOrder=descending&startIndex=2&count=1",
    )
    .await;
    assert_eq!(page["totalResults"], 3);
    assert_eq!(page["startIndex"], 2);
    assert_eq!(page["itemsPerPage"], 1);
    assert_eq!(
        page["Resources"][0]["userName"], "ivy@contoso.com",
        "{page}"
    );
    let (_, none) = get(&t, &a, "/Users?count=0").await;
    assert_eq!(none["totalResults"], 3);
    assert_eq!(none["Resources"], json!([]));
    // `id eq` (a read underneath) windows as any filter does.
    let first = page["Resources"][0]["id"].as_str().unwrap().to_owned();
    let by_id = format!("/Users?filter={}", urlencode(&format!("id eq \"{first}\"")));
    for (window, total, items) in [("", 1, 1), ("&count=0", 1, 0), ("&startIndex=2", 1, 0)] {
        let (_, one) = get(&t, &a, &format!("{by_id}{window}")).await;
        assert_eq!(one["totalResults"], total, "{window}: {one}");
        assert_eq!(
            one["Resources"].as_array().map_or(0, Vec::len),
            items,
            "{window}: {one}"
        );
    }
    let (_, only) = get(&t, &a, "/Users?attributes=userName&count=1").await;
    let r = &only["Resources"][0];
    assert!(r.get("userName").is_some() && r.get("id").is_some(), "{r}");
    assert!(r.get("emails").is_none() && r.get("meta").is_none(), "{r}");
    let (s, searched) = post(
        &t,
        &a,
        "/Users/.search",
        json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
               "filter": "userName eq \"jo@contoso.com\"", "excludedAttributes": ["emails"]}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{searched}");
    assert_eq!(searched["totalResults"], 1);
    assert!(searched["Resources"][0].get("emails").is_none());
    for bad in [
        "userName eq",
        "userName xx \"a\"",
        "((userName eq \"a\")",
        "nickName eq \"a\"",
        "meta.created gt \"yesterday\"",
    ] {
        let got = get(&t, &a, &format!("/Users?filter={}", urlencode(bad))).await;
        assert_scim_error(&got, StatusCode::BAD_REQUEST, Some("invalidFilter"));
    }
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[tokio::test]
async fn etags_guard_writes_and_refusals_change_nothing() {
    let t = TestApp::spawn().await;
    let a = t.account("scim-etag").await;
    let (_, u) = post(&t, &a, "/Users", user("kim")).await;
    let path = format!("/Users/{}", u["id"].as_str().unwrap());
    let (s, _, h) = scim(&t, &a, &a.key, Method::GET, &path, None, &[]).await;
    assert_eq!(s, StatusCode::OK);
    let etag = h["etag"].to_str().unwrap().to_owned();
    assert_eq!(etag, u["meta"]["version"].as_str().unwrap());
    let (s, _, _) = scim(
        &t,
        &a,
        &a.key,
        Method::GET,
        &path,
        None,
        &[("if-none-match", &etag)],
    )
    .await;
    assert_eq!(s, StatusCode::NOT_MODIFIED);
    let ops = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                     "Operations": [{"op": "replace", "path": "nickName", "value": "k"}]});
    let (s, changed, _) = scim(
        &t,
        &a,
        &a.key,
        Method::PATCH,
        &path,
        Some(ops.clone()),
        &[("if-match", &etag)],
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{changed}");
    assert_ne!(changed["meta"]["version"], etag.as_str());
    // The old version is stale now: 412, and nothing changes.
    let stale = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                       "Operations": [{"op": "replace", "path": "nickName", "value": "stale"}]});
    let (s, b, _) = scim(
        &t,
        &a,
        &a.key,
        Method::PATCH,
        &path,
        Some(stale),
        &[("if-match", &etag)],
    )
    .await;
    assert_scim_error(&(s, b), StatusCode::PRECONDITION_FAILED, None);
    assert_eq!(get(&t, &a, &path).await.1["nickName"], "k");

    // RFC 7644 §3.12's refusals, each leaving the user as it was.
    let (_, other) = post(&t, &a, "/Users", user("lee")).await;
    let _ = other;
    let before = get(&t, &a, &path).await.1;
    assert_scim_error(
        &post(&t, &a, "/Users", user("kim")).await,
        StatusCode::CONFLICT,
        Some("uniqueness"),
    );
    assert_scim_error(
        &patch(
            &t,
            &a,
            &path,
            json!([{"op": "replace", "path": "userName", "value": "lee@contoso.com"}]),
        )
        .await,
        StatusCode::CONFLICT,
        Some("uniqueness"),
    );
    assert_scim_error(
        &patch(&t, &a, &path, json!([{"op": "replace", "path": "emails[type eq \"work\"].value", "value": "not an address"}])).await,
        StatusCode::BAD_REQUEST,
        Some("invalidValue"),
    );
    assert_scim_error(
        &patch(
            &t,
            &a,
            &path,
            json!([{"op": "replace", "path": "id", "value": "x"}]),
        )
        .await,
        StatusCode::BAD_REQUEST,
        Some("mutability"),
    );
    assert_scim_error(
        &patch(&t, &a, &path, json!([{"op": "remove"}])).await,
        StatusCode::BAD_REQUEST,
        Some("noTarget"),
    );
    assert_scim_error(
        &patch(
            &t,
            &a,
            &path,
            json!([{"op": "add", "path": "nosuch", "value": 1}]),
        )
        .await,
        StatusCode::BAD_REQUEST,
        Some("invalidPath"),
    );
    // All or nothing: the good first operation is not kept either.
    assert_scim_error(
        &patch(&t, &a, &path, json!([{"op": "replace", "path": "nickName", "value": "half"},
                                     {"op": "replace", "path": "emails[type eq \"work\"].value", "value": "bad"}])).await,
        StatusCode::BAD_REQUEST,
        Some("invalidValue"),
    );
    assert_scim_error(
        &post(&t, &a, "/Users", json!({"displayName": "no name"})).await,
        StatusCode::BAD_REQUEST,
        Some("invalidValue"),
    );
    assert_eq!(
        get(&t, &a, &path).await.1,
        before,
        "a refusal changed the user"
    );
    // A body that is not SCIM JSON, an unknown route, a method a route lacks.
    let res = t
        .client
        .post(format!("{}/Users", base(&t, &a)))
        .bearer_auth(&a.key)
        .header("content-type", "text/plain")
        .body("userName=x")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(res.headers()["content-type"], "application/scim+json");
    assert_scim_error(&get(&t, &a, "/Nope").await, StatusCode::NOT_FOUND, None);
    let (s, b, _) = scim(&t, &a, &a.key, Method::DELETE, "/Users", None, &[]).await;
    assert_scim_error(&(s, b), StatusCode::METHOD_NOT_ALLOWED, None);
}

#[tokio::test]
async fn scim_changes_write_the_native_events_with_their_surface() {
    let t = TestApp::spawn().await;
    let a = t.account("scim-events").await;
    let (_, u) = post(&t, &a, "/Users", user("max")).await;
    let id = u["id"].as_str().unwrap().to_owned();
    let (s, _) = patch(
        &t,
        &a,
        &format!("/Users/{id}"),
        json!([{"op": "replace", "path": "active", "value": false}]),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (_, audit) = t
        .get(&a.path(&format!("/audit?subject_id={id}")), &a.key)
        .await;
    let events = audit["data"]["events"].as_array().unwrap();
    let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["user.deactivated", "user.created"], "{audit}");
    for e in events {
        assert_eq!(e["actor"]["kind"], "api_key", "{e}");
        assert_eq!(e["surface"], "scim", "{e}");
    }
    // The native route's events carry no surface.
    t.user(&a, json!({"username": "nat", "name": "N"})).await;
    let (_, audit) = t.get(&a.path("/audit?type=user.created"), &a.key).await;
    let native = audit["data"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["data"]["username"] == "nat")
        .cloned()
        .unwrap();
    assert!(native["surface"].is_null(), "{native}");
}
