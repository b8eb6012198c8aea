//! The event matrix: every mutating route of `/openapi.json` has a row
//! saying which events it writes, in order; each row is called through HTTP
//! on a fresh world (see `matrix.rs`) and the event log must then hold
//! exactly those events, each naming the caller as its actor, the request's
//! id, and the row's subject. A route without a row fails the test.

use std::collections::BTreeSet;
use std::sync::Arc;

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{Account, TestApp};
use crate::mail::{Smtp, ask, token_in};
use crate::matrix::{OPEN, documented_routes, world};
use crate::sessions::{PASSWORD, login, member};

/// (method, path as in openapi.json, caller, body, event types, subject kind
/// of every event but those listed after it with their own kind)
struct Row {
    method: &'static str,
    path: &'static str,
    /// A caller of the matrix world (`F` full key, `O` operator, `A` admin,
    /// `N` non-member), or `self` for the self-service routes, which sign
    /// in as the target user first.
    caller: &'static str,
    body: fn() -> Value,
    /// Which user `{userId}` is: the target, or the plain member `M`.
    user: &'static str,
    events: &'static [(&'static str, &'static str)],
}

const fn row(
    method: &'static str,
    path: &'static str,
    caller: &'static str,
    body: fn() -> Value,
    events: &'static [(&'static str, &'static str)],
) -> Row {
    Row {
        method,
        path,
        caller,
        body,
        user: "target",
        events,
    }
}

fn none() -> Value {
    json!({})
}
fn name() -> Value {
    json!({ "name": "x" })
}
fn role() -> Value {
    json!({ "name": format!("r{}", uuid::Uuid::new_v4().simple()), "permissions": [] })
}

const P: &str = "/v1/accounts/{accountId}";

fn rows() -> Vec<Row> {
    let p = |rest: &str| -> &'static str { Box::leak(format!("{P}{rest}").into_boxed_str()) };
    let rc = |route: &str| -> &'static str {
        Box::leak(format!("/compat/rocketchat/{{accountId}}/api/v1/{route}").into_boxed_str())
    };
    let cc = |route: &str| -> &'static str {
        Box::leak(format!("/compat/cometchat/{{accountId}}/v3/{route}").into_boxed_str())
    };
    let scim = |route: &str| -> &'static str {
        Box::leak(format!("{P}/scim/v2/{route}").into_boxed_str())
    };
    let scim_user = || {
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": format!("u{}", uuid::Uuid::new_v4().simple()),
        })
    };
    let search = || json!({ "schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"] });
    vec![
        row(
            "POST",
            scim("Users"),
            "F",
            scim_user,
            &[("user.created", "user")],
        ),
        // Searches write nothing.
        row("POST", scim("Users/.search"), "F", search, &[]),
        row("POST", scim("Groups/.search"), "F", search, &[]),
        row(
            "PUT",
            scim("Users/{id}"),
            "F",
            scim_user,
            &[("user.updated", "user")],
        ),
        // One PATCH that changes a field and deactivates: the update, then
        // the deactivation, as the native routes write them.
        row(
            "PATCH",
            scim("Users/{id}"),
            "F",
            || {
                json!({
                    "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                    "Operations": [
                        { "op": "replace", "path": "displayName", "value": "y" },
                        { "op": "replace", "path": "active", "value": false },
                    ],
                })
            },
            &[("user.updated", "user"), ("user.deactivated", "user")],
        ),
        row(
            "DELETE",
            scim("Users/{id}"),
            "F",
            none,
            &[("user.deleted", "user")],
        ),
        row(
            "POST",
            scim("Groups"),
            "F",
            || {
                json!({
                    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                    "displayName": "g",
                    "members": [{ "value": "{target}" }],
                })
            },
            &[("space.created", "space"), ("member.added", "space_member")],
        ),
        // The world's space holds its owner SO, moderator SM and member M:
        // a PUT naming M alone removes SM and keeps the owner.
        row(
            "PUT",
            scim("Groups/{id}"),
            "F",
            || {
                json!({
                    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                    "displayName": "renamed",
                    "members": [{ "value": "{M}" }],
                })
            },
            &[
                ("space.updated", "space"),
                ("member.removed", "space_member"),
            ],
        ),
        row(
            "PATCH",
            scim("Groups/{id}"),
            "F",
            || {
                json!({
                    "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                    "Operations": [{ "op": "add", "path": "members", "value": [{ "value": "{target}" }] }],
                })
            },
            &[("member.added", "space_member")],
        ),
        row(
            "DELETE",
            scim("Groups/{id}"),
            "F",
            none,
            &[("room.deleted", "room"), ("space.deleted", "space")],
        ),
        row(
            "POST",
            "/v1/accounts",
            "O",
            name,
            &[
                ("account.created", "account"),
                ("api_key.created", "api_key"),
            ],
        ),
        row(
            "POST",
            "/v1/keys/rotate",
            "O",
            none,
            &[("signing_key.rotated", "signing_key")],
        ),
        row(
            "POST",
            p("/api-keys"),
            "F",
            name,
            &[("api_key.created", "api_key")],
        ),
        row(
            "POST",
            p("/webhooks"),
            "F",
            || json!({ "url": "http://192.0.2.1/hook", "events": ["*"] }),
            &[("webhook.created", "webhook")],
        ),
        row(
            "PATCH",
            p("/webhooks/{webhookId}"),
            "F",
            || json!({ "enabled": false }),
            &[("webhook.updated", "webhook")],
        ),
        row(
            "DELETE",
            p("/webhooks/{webhookId}"),
            "F",
            none,
            &[("webhook.deleted", "webhook")],
        ),
        row(
            "POST",
            p("/webhooks/{webhookId}/rotate-secret"),
            "F",
            none,
            &[("webhook.secret_rotated", "webhook")],
        ),
        // The delivery queue's commands change no resource: no event.
        row("POST", p("/webhooks/{webhookId}/test"), "F", none, &[]),
        row(
            "POST",
            p("/webhooks/{webhookId}/replay"),
            "F",
            || json!({ "since_seq": 0 }),
            &[],
        ),
        row(
            "POST",
            p("/webhooks/{webhookId}/deliveries/{deliveryId}/retry"),
            "F",
            none,
            &[],
        ),
        row(
            "DELETE",
            p("/api-keys/{keyId}"),
            "F",
            none,
            &[("api_key.revoked", "api_key")],
        ),
        row(
            "PATCH",
            p("/settings"),
            "F",
            || json!({ "custom_fields": {} }),
            &[("settings.updated", "settings")],
        ),
        row("POST", p("/users"), "F", name, &[("user.created", "user")]),
        row(
            "PATCH",
            p("/users/{userId}"),
            "F",
            name,
            &[("user.updated", "user")],
        ),
        row(
            "DELETE",
            p("/users/{userId}"),
            "F",
            none,
            &[("user.deleted", "user")],
        ),
        row(
            "POST",
            p("/users/{userId}/deactivate"),
            "F",
            none,
            &[("user.deactivated", "user")],
        ),
        row(
            "POST",
            p("/users/{userId}/reactivate"),
            "F",
            none,
            &[("user.reactivated", "user")],
        ),
        row(
            "POST",
            p("/users/{userId}/tokens"),
            "F",
            none,
            &[("token.issued", "token")],
        ),
        // The target's two live tokens: the one they were created with and
        // the world's.
        row(
            "DELETE",
            p("/users/{userId}/tokens"),
            "F",
            none,
            &[("token.revoked", "token"), ("token.revoked", "token")],
        ),
        row(
            "DELETE",
            p("/users/{userId}/tokens/{tokenId}"),
            "F",
            none,
            &[("token.revoked", "token")],
        ),
        row("POST", p("/rooms"), "F", name, &[("room.created", "room")]),
        row(
            "PATCH",
            p("/rooms/{roomId}"),
            "F",
            name,
            &[("room.updated", "room")],
        ),
        row(
            "DELETE",
            p("/rooms/{roomId}"),
            "F",
            none,
            &[("room.deleted", "room")],
        ),
        // Into a public room of the space (the world's room is private).
        row(
            "POST",
            p("/rooms/{roomId}/join"),
            "M",
            none,
            &[("member.added", "room_member")],
        ),
        row(
            "PUT",
            p("/rooms/{roomId}/members/{userId}"),
            "F",
            || json!({ "role": "role_room_user" }),
            &[("member.added", "room_member")],
        ),
        Row {
            user: "M",
            ..row(
                "DELETE",
                p("/rooms/{roomId}/members/{userId}"),
                "F",
                none,
                &[("member.removed", "room_member")],
            )
        },
        row(
            "POST",
            p("/rooms/{roomId}/access"),
            "F",
            || json!({ "username": "Guest", "role": "user" }),
            &[("access_link.created", "access_link")],
        ),
        row(
            "DELETE",
            p("/rooms/{roomId}/access/{linkId}"),
            "F",
            none,
            &[("access_link.revoked", "access_link")],
        ),
        row(
            "POST",
            p("/spaces"),
            "F",
            name,
            &[("space.created", "space")],
        ),
        row(
            "PATCH",
            p("/spaces/{spaceId}"),
            "F",
            name,
            &[("space.updated", "space")],
        ),
        row(
            "DELETE",
            p("/spaces/{spaceId}"),
            "F",
            none,
            &[("room.deleted", "room"), ("space.deleted", "space")],
        ),
        row(
            "POST",
            p("/spaces/{spaceId}/join"),
            "N",
            none,
            &[("member.added", "space_member")],
        ),
        row(
            "PUT",
            p("/spaces/{spaceId}/members/{userId}"),
            "F",
            || json!({ "role": "user" }),
            &[("member.added", "space_member")],
        ),
        Row {
            user: "M",
            ..row(
                "DELETE",
                p("/spaces/{spaceId}/members/{userId}"),
                "F",
                none,
                &[("member.removed", "space_member")],
            )
        },
        row(
            "POST",
            p("/spaces/{spaceId}/invites"),
            "F",
            || json!({ "role": "user" }),
            &[("invite.created", "invite")],
        ),
        row(
            "DELETE",
            p("/spaces/{spaceId}/invites/{inviteId}"),
            "F",
            none,
            &[("invite.revoked", "invite")],
        ),
        row(
            "POST",
            p("/spaces/{spaceId}/invites/{inviteId}/activate"),
            "N",
            none,
            &[
                ("invite.activated", "invite"),
                ("member.added", "space_member"),
            ],
        ),
        row("POST", p("/roles"), "F", role, &[("role.created", "role")]),
        row(
            "PATCH",
            p("/roles/{roleId}"),
            "F",
            name,
            &[("role.updated", "role")],
        ),
        row(
            "DELETE",
            p("/roles/{roleId}"),
            "F",
            none,
            &[("role.deleted", "role")],
        ),
        row(
            "POST",
            p("/auth/login"),
            "self",
            none,
            &[("session.created", "session")],
        ),
        row(
            "POST",
            p("/auth/refresh"),
            "self",
            none,
            &[("session.refreshed", "session")],
        ),
        row(
            "POST",
            p("/auth/logout"),
            "self",
            none,
            &[("session.revoked", "session")],
        ),
        row(
            "POST",
            p("/auth/password"),
            "self",
            || json!({ "current_password": PASSWORD, "new_password": "another long passphrase" }),
            &[("user.password_changed", "user")],
        ),
        // Rocket.Chat's routes write what the native ones do.
        row(
            "POST",
            rc("login"),
            "self",
            none,
            &[("session.created", "session")],
        ),
        row(
            "POST",
            rc("logout"),
            "self",
            none,
            &[("session.revoked", "session")],
        ),
        row(
            "POST",
            cc("users"),
            "F",
            || json!({ "uid": format!("u{}", uuid::Uuid::new_v4().simple()), "name": "x" }),
            &[("user.created", "user")],
        ),
        // The target is deactivated first (below).
        row(
            "PUT",
            cc("users"),
            "F",
            || json!({ "uidsToActivate": ["{target}"] }),
            &[("user.reactivated", "user")],
        ),
        row(
            "DELETE",
            cc("users"),
            "F",
            || json!({ "uidsToDeactivate": ["{target}"] }),
            &[("user.deactivated", "user")],
        ),
        row(
            "PUT",
            cc("users/{uid}"),
            "F",
            name,
            &[("user.updated", "user")],
        ),
        row(
            "DELETE",
            cc("users/{uid}"),
            "F",
            none,
            &[("user.deactivated", "user")],
        ),
        row(
            "POST",
            cc("users/{uid}/auth_tokens"),
            "F",
            none,
            &[("token.issued", "token")],
        ),
        // The target's two live tokens, as natively.
        row(
            "DELETE",
            cc("users/{uid}/auth_tokens"),
            "F",
            none,
            &[("token.revoked", "token"), ("token.revoked", "token")],
        ),
        row(
            "DELETE",
            cc("users/{uid}/auth_tokens/{authToken}"),
            "F",
            none,
            &[("token.revoked", "token")],
        ),
        row(
            "POST",
            cc("roles"),
            "F",
            || json!({ "role": format!("r{}", uuid::Uuid::new_v4().simple()), "name": "x" }),
            &[("role.created", "role")],
        ),
        row(
            "PUT",
            cc("roles/{role}"),
            "F",
            || json!({ "description": "d" }),
            &[("role.updated", "role")],
        ),
        row(
            "DELETE",
            cc("roles/{role}"),
            "F",
            none,
            &[("role.deleted", "role")],
        ),
        row(
            "POST",
            rc("users.create"),
            "F",
            || json!({ "username": format!("u{}", uuid::Uuid::new_v4().simple()), "name": "x" }),
            &[("user.created", "user")],
        ),
        row(
            "POST",
            rc("users.update"),
            "F",
            || json!({ "userId": "{target}", "data": { "name": "y" } }),
            &[("user.updated", "user")],
        ),
        row(
            "POST",
            rc("users.delete"),
            "F",
            || json!({ "userId": "{target}" }),
            &[("user.deleted", "user")],
        ),
        row(
            "POST",
            rc("users.setActiveStatus"),
            "F",
            || json!({ "userId": "{target}", "activeStatus": false }),
            &[("user.deactivated", "user")],
        ),
        row(
            "POST",
            rc("users.createToken"),
            "F",
            || json!({ "userId": "{target}" }),
            &[("token.issued", "token")],
        ),
        row(
            "POST",
            rc("users.setStatus"),
            "F",
            || json!({ "userId": "{target}", "message": "hi" }),
            &[("user.updated", "user")],
        ),
        row(
            "POST",
            rc("users.resetAvatar"),
            "F",
            || json!({ "userId": "{target}" }),
            &[("user.updated", "user")],
        ),
        row(
            "POST",
            rc("roles.create"),
            "F",
            || json!({ "name": format!("r{}", uuid::Uuid::new_v4().simple()) }),
            &[("role.created", "role")],
        ),
        row(
            "POST",
            rc("roles.addUserToRole"),
            "F",
            || json!({ "roleId": "{roleId}", "userId": "{target}" }),
            &[("user.updated", "user"), ("user.roles_changed", "user")],
        ),
        // The target is given the role first (below).
        row(
            "POST",
            rc("roles.removeUserFromRole"),
            "F",
            || json!({ "roleId": "{roleId}", "userId": "{target}" }),
            &[("user.updated", "user"), ("user.roles_changed", "user")],
        ),
        row(
            "POST",
            rc("channels.create"),
            "F",
            name,
            &[("room.created", "room")],
        ),
        row(
            "POST",
            rc("groups.create"),
            "A",
            || json!({ "name": "g", "members": [] }),
            &[("room.created", "room"), ("member.added", "room_member")],
        ),
        // The world's room is private: a group.
        row(
            "POST",
            rc("groups.invite"),
            "F",
            || json!({ "roomId": "{roomId}", "userId": "{target}" }),
            &[("member.added", "room_member")],
        ),
        row(
            "POST",
            rc("groups.kick"),
            "F",
            || json!({ "roomId": "{roomId}", "userId": "{M}" }),
            &[("member.removed", "room_member")],
        ),
        // Channels: a public room is made first (below).
        row(
            "POST",
            rc("channels.invite"),
            "F",
            || json!({ "roomId": "{roomId}", "userId": "{target}" }),
            &[("member.added", "room_member")],
        ),
        row(
            "POST",
            rc("channels.kick"),
            "F",
            || json!({ "roomId": "{roomId}", "userId": "{M}" }),
            &[("member.removed", "room_member")],
        ),
    ]
}

/// Routes whose events need a mail round trip or sign-up settings first:
/// their rows are [`the_mailed_routes_write_their_events`]. (Verifying an
/// address is a `GET` of the mailed link, and changes the user.)
const MAILED: [&str; 5] = [
    "/v1/accounts/{accountId}/signup",
    "/v1/accounts/{accountId}/auth/verify-email",
    "/v1/accounts/{accountId}/auth/password-reset",
    "/v1/accounts/{accountId}/auth/password-reset/confirm",
    "/compat/rocketchat/{accountId}/api/v1/users.register",
];

/// A new user with a password, signed in: (id, username, access, refresh).
async fn signed_in(t: &TestApp, a: &Account) -> (String, String, String, String) {
    let name = format!("self{}", uuid::Uuid::new_v4().simple());
    let id = member(t, a, &name, json!({})).await;
    let (s, b) = login(t, a, json!({ "username": name, "password": PASSWORD })).await;
    assert!(s.is_success(), "{b}");
    let token = |k: &str| b["data"][k].as_str().unwrap().to_owned();
    (id, name, token("access_token"), token("refresh_token"))
}

fn last_seq(events: &[roster::domain::event::Event]) -> i64 {
    events.last().map_or(0, |e| e.seq)
}

#[tokio::test]
async fn every_mutating_route_writes_its_events_with_its_caller() {
    let t = Arc::new(TestApp::spawn().await);
    let a = t.account("a").await;
    let b = t.account("b").await;
    let b_user = t.user(&b, json!({ "name": "stranger" })).await["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let b = (b, b_user);

    // SCIM's root /.search is not served (501, for every caller: the
    // authorization matrix holds it) and writes nothing.
    let mutating = documented_routes(&t, |method, path| {
        method != "GET"
            && !OPEN.contains(&path)
            && !MAILED.contains(&path)
            && !path.ends_with("/scim/v2/.search")
    })
    .await;
    let table = rows();
    let covered: BTreeSet<(String, String)> = table
        .iter()
        .map(|r| (r.method.to_owned(), r.path.to_owned()))
        .collect();
    let missing: Vec<_> = mutating.difference(&covered).collect();
    assert!(
        missing.is_empty(),
        "mutating routes without a row: {missing:?}"
    );
    let stale: Vec<_> = covered.difference(&mutating).collect();
    assert!(
        stale.is_empty(),
        "rows for routes that do not exist: {stale:?}"
    );

    let mut failures = Vec::new();
    for r in &table {
        let w = world(&t, &a, &b).await;
        let mut w = w;
        if r.path.ends_with("/rooms/{roomId}/join")
            || r.path.ends_with("/channels.invite")
            || r.path.ends_with("/channels.kick")
        {
            let space = &w.ids["spaceId"];
            let body = json!({ "name": "open", "space_id": space, "visibility": "public" });
            let (_, room) = t.post(&a.path("/rooms"), &a.key, body).await;
            let room = room["data"]["room"]["id"].as_str().unwrap().to_owned();
            w.ids.insert("roomId", room);
        }
        if r.path.ends_with("/channels.kick") {
            let room = &w.ids["roomId"];
            let m = &w.ids["M"];
            let body = json!({ "role": "role_room_user" });
            let (s, b) = t
                .call(
                    Method::PUT,
                    &a.path(&format!("/rooms/{room}/members/{m}")),
                    Some(&a.key),
                    Some(body),
                )
                .await;
            assert!(s.is_success(), "{b}");
        }
        if r.path.ends_with("/v3/users") && r.method == "PUT" {
            let target = &w.ids["target"];
            let (s, b) = t
                .post(
                    &a.path(&format!("/users/{target}/deactivate")),
                    &a.key,
                    json!({}),
                )
                .await;
            assert!(s.is_success(), "{b}");
        }
        if r.path.ends_with("/roles.removeUserFromRole") {
            let target = &w.ids["target"];
            let body = json!({ "roles": ["user", w.ids["roleId"]] });
            let (s, b) = t
                .patch(&a.path(&format!("/users/{target}")), &a.key, body)
                .await;
            assert!(s.is_success(), "{b}");
        }
        let mut path = r.path.replace("{accountId}", &a.id);
        for (k, v) in &w.ids {
            path = path.replace(&format!("{{{k}}}"), v);
        }
        let who = if r.user == "M" {
            &w.ids["M"]
        } else {
            &w.ids["target"]
        };
        path = path.replace("{userId}", who);
        let scim_id = if r.path.contains("/scim/v2/Groups/") {
            &w.ids["spaceId"]
        } else {
            &w.ids["target"]
        };
        path = path.replace("{id}", scim_id);
        let mut body: Value =
            serde_json::from_str(&crate::matrix::fill(&(r.body)().to_string(), &w)).unwrap();
        let (cred, actor): (Option<String>, (&str, Option<String>)) = match r.caller {
            "self" => {
                let (id, name, access, refresh) = signed_in(&t, &a).await;
                if r.path.ends_with("/login") {
                    body = json!({ "username": name, "password": PASSWORD });
                }
                if r.path.ends_with("/refresh") || r.path.ends_with("/logout") {
                    body = json!({ "refresh_token": refresh });
                }
                let auth = (!r.path.ends_with("/login") && !r.path.ends_with("/refresh"))
                    .then_some(access);
                (auth, ("user", Some(id)))
            }
            "O" => (Some(w.creds["O"].clone()), ("operator", None)),
            "F" => (Some(a.key.clone()), ("api_key", None)),
            c => (Some(w.creds[c].clone()), ("user", Some(w.ids[c].clone()))),
        };
        let before = last_seq(&t.app.store.events_after(None, 0, 100_000).await.unwrap());
        let m = Method::from_bytes(r.method.as_bytes()).unwrap();
        let surface = if r.path.contains("/scim/v2/") {
            Some("scim")
        } else if r.path.starts_with("/compat/cometchat/") {
            Some("cometchat")
        } else if r.path.starts_with("/compat/rocketchat/") {
            Some("rocketchat")
        } else {
            None
        };
        let (status, mut answer) = if r.path.contains("/scim/v2/") {
            // SCIM's answers carry no request id: the header does.
            let res = t
                .client
                .request(m, format!("{}{path}", t.base))
                .bearer_auth(cred.as_deref().unwrap_or_default())
                .json(&body)
                .send()
                .await
                .expect("request");
            let status = res.status();
            let id = res
                .headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let mut answer = res.json().await.unwrap_or(json!({}));
            answer["request_id"] = json!(id);
            (status, answer)
        } else if r.path.starts_with("/compat/cometchat/") {
            let cred = cred.as_deref().unwrap_or_default();
            let (status, mut answer, id) =
                crate::matrix::cc_call(&t, m, &path, cred, Some(body)).await;
            answer["request_id"] = json!(id);
            (status, answer)
        } else if r.path.starts_with("/compat/") {
            let user = actor.1.clone().unwrap_or_default();
            let cred = cred.as_deref().unwrap_or_default();
            let (status, mut answer, id) =
                crate::matrix::rc_call(&t, m, &path, cred, &user, Some(body)).await;
            answer["request_id"] = json!(id);
            (status, answer)
        } else {
            t.call(m, &path, cred.as_deref(), Some(body)).await
        };
        let _ = &mut answer;
        let here = format!("{} {} as {}", r.method, r.path, r.caller);
        if !status.is_success() {
            failures.push(format!("{here}: {status} {answer}"));
            continue;
        }
        let got = t.app.store.events_after(None, before, 100).await.unwrap();
        let kinds: Vec<(&str, &str)> = got
            .iter()
            .map(|e| (e.kind.as_str(), e.subject_kind.as_str()))
            .collect();
        if kinds != r.events {
            failures.push(format!("{here}: wrote {kinds:?}, want {:?}", r.events));
            continue;
        }
        for e in &got {
            let by = (e.actor_kind.as_str(), e.actor_id.map(|i| i.to_string()));
            let (kind, id) = (actor.0, actor.1.clone());
            let is_caller = by.0 == kind
                && match &id {
                    Some(id) => by.1.as_ref() == Some(id),
                    None => kind == "operator" || by.1.is_some(),
                };
            if !is_caller {
                failures.push(format!(
                    "{here}: {} names {by:?}, want {kind} {id:?}",
                    e.kind
                ));
            }
            if e.surface.as_deref() != surface {
                failures.push(format!("{here}: {} has surface {:?}", e.kind, e.surface));
            }
            if e.request_id.as_deref() != answer["request_id"].as_str() {
                failures.push(format!(
                    "{here}: {} has request id {:?}",
                    e.kind, e.request_id
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} rows failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The events since `before`: (type, actor kind, actor id, subject kind, request id).
async fn since(
    t: &TestApp,
    before: i64,
) -> Vec<(String, String, Option<String>, String, Option<String>)> {
    let events = t.app.store.events_after(None, before, 100).await.unwrap();
    events
        .into_iter()
        .map(|e| {
            (
                e.kind,
                e.actor_kind,
                e.actor_id.map(|i| i.to_string()),
                e.subject_kind,
                e.request_id,
            )
        })
        .collect()
}

async fn high(t: &TestApp) -> i64 {
    last_seq(&t.app.store.events_after(None, 0, 100_000).await.unwrap())
}

/// The rows of [`MAILED`], in the order a user meets them: sign up, verify
/// the address from the mail, ask for a reset, set the new password.
#[tokio::test]
async fn the_mailed_routes_write_their_events() {
    let (smtp, t) = Smtp::with_app().await;
    let a = t.account("acme").await;
    let settings =
        json!({ "signup": { "enabled": true, "captcha": false }, "email": { "verify": true } });
    let (s, b) = t.patch(&a.path("/settings"), &a.key, settings).await;
    assert!(s.is_success(), "{b}");
    let rid = |b: &Value| b["request_id"].as_str().map(str::to_owned);
    let mut covered = Vec::new();

    // POST /signup: the new user, and the session they are signed in with.
    let before = high(&t).await;
    let body = json!({ "email": "fay@example.com", "username": "fay", "password": PASSWORD });
    let (s, b) = t
        .call(Method::POST, &a.path("/signup"), None, Some(body))
        .await;
    assert!(s.is_success(), "{b}");
    let fay = b["data"]["user"]["id"].as_str().unwrap().to_owned();
    let me = ("user".to_owned(), Some(fay.clone()));
    let got = since(&t, before).await;
    let kinds: Vec<(&str, &str)> = got.iter().map(|e| (e.0.as_str(), e.3.as_str())).collect();
    assert_eq!(
        kinds,
        [("user.created", "user"), ("session.created", "session")]
    );
    assert!(
        got.iter()
            .all(|e| (e.1.clone(), e.2.clone()) == me && e.4 == rid(&b)),
        "{got:?}"
    );
    covered.push("/v1/accounts/{accountId}/signup");

    // GET /auth/verify-email: nobody signed in follows the mailed link.
    let token = token_in(&smtp.next_message(0).await);
    let before = high(&t).await;
    let link = format!("{}?token={token}", a.path("/auth/verify-email"));
    let (s, b) = t.call(Method::GET, &link, None, None).await;
    assert!(s.is_success(), "{b}");
    let got = since(&t, before).await;
    assert_eq!(
        got,
        [(
            "user.updated".into(),
            "anonymous".into(),
            None,
            "user".into(),
            rid(&b)
        )]
    );
    covered.push("/v1/accounts/{accountId}/auth/verify-email");

    // POST /auth/password-reset: the link is recorded (and mailed) after
    // the answer, so wait for the mail.
    let before = high(&t).await;
    let (s, b) = ask(&t, &a, "fay@example.com").await;
    assert!(s.is_success(), "{b}");
    let token = token_in(&smtp.next_message(1).await);
    let got = since(&t, before).await;
    assert_eq!(
        got,
        [(
            "user.password_reset_requested".into(),
            "anonymous".into(),
            None,
            "user".into(),
            rid(&b)
        )]
    );
    covered.push("/v1/accounts/{accountId}/auth/password-reset");

    // POST /auth/password-reset/confirm: the password, and the end of the
    // sign-up's session.
    let before = high(&t).await;
    let body = json!({ "token": token, "new_password": "a brand new secret" });
    let path = a.path("/auth/password-reset/confirm");
    let (s, b) = t.call(Method::POST, &path, None, Some(body)).await;
    assert!(s.is_success(), "{b}");
    let got = since(&t, before).await;
    let kinds: Vec<(&str, &str)> = got.iter().map(|e| (e.0.as_str(), e.3.as_str())).collect();
    assert_eq!(
        kinds,
        [
            ("user.password_changed", "user"),
            ("session.revoked", "session")
        ]
    );
    assert!(
        got.iter().all(|e| e.1 == "anonymous" && e.4 == rid(&b)),
        "{got:?}"
    );
    covered.push("/v1/accounts/{accountId}/auth/password-reset/confirm");

    // Rocket.Chat's users.register is the same sign-up.
    let before = high(&t).await;
    let body = json!({ "email": "gus@example.com", "username": "gus", "pass": PASSWORD });
    let url = format!("/compat/rocketchat/{}/api/v1/users.register", a.id);
    let (s, b, id) = crate::matrix::rc_call(&t, Method::POST, &url, "", "", Some(body)).await;
    assert!(s.is_success(), "{b}");
    let gus = b["user"]["_id"].as_str().unwrap().to_owned();
    let got = since(&t, before).await;
    let kinds: Vec<(&str, &str)> = got.iter().map(|e| (e.0.as_str(), e.3.as_str())).collect();
    assert_eq!(
        kinds,
        [("user.created", "user"), ("session.created", "session")]
    );
    let me = ("user".to_owned(), Some(gus));
    assert!(
        got.iter()
            .all(|e| (e.1.clone(), e.2.clone()) == me && e.4 == id),
        "{got:?}"
    );
    let surfaces = t.app.store.events_after(None, before, 100).await.unwrap();
    assert!(
        surfaces
            .iter()
            .all(|e| e.surface.as_deref() == Some("rocketchat")),
        "{surfaces:?}"
    );
    covered.push("/compat/rocketchat/{accountId}/api/v1/users.register");

    assert_eq!(covered, MAILED, "every mailed route has its row here");
}
