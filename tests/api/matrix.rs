//! The authorization matrix: every route × every kind of caller, with the
//! status each must get. The routes come from `/openapi.json`, so a new
//! route without a row here fails the test.
//!
//! Callers, in column order: O operator key, F full API key, R read API key,
//! A admin user, C user with a custom role (create-user,
//! view-other-user-info), SO space owner, SM space moderator, RM room
//! moderator, M plain member (of the space and the room), N non-member, G
//! guest-link token, XK another account's key, XU another account's user.
//! Codes: 2 = 2xx, 0 = 400, 1 = 401, 3 = 403, 4 = 404, 9 = 409, G = 410,
//! N = 501.
//!
//! The world: a public space (owner SO, moderator SM, member M), a private
//! room in it (moderator RM, member M, made by the API key), an invite, a
//! guest link, a spare API key, an unheld custom role and a target user.
//! Every cell that writes gets a fresh world.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use futures::StreamExt;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{Account, OPERATOR_KEY, TestApp};

const CALLERS: [&str; 13] = [
    "O", "F", "R", "A", "C", "SO", "SM", "RM", "M", "N", "G", "XK", "XU",
];

/// (method, path as in openapi.json, body, expected, which user `{userId}` is)
type Row = (
    &'static str,
    &'static str,
    Option<fn() -> Value>,
    &'static str,
    &'static str,
);

fn rows() -> Vec<Row> {
    fn name() -> Value {
        json!({ "name": "x" })
    }
    fn empty() -> Value {
        json!({})
    }
    fn user_role() -> Value {
        json!({ "role": "user" })
    }
    fn room_role() -> Value {
        json!({ "role": "role_room_user" })
    }
    fn role() -> Value {
        json!({ "name": format!("r{}", uuid::Uuid::new_v4().simple()), "permissions": [] })
    }
    fn access() -> Value {
        json!({ "username": "Guest", "role": "user" })
    }
    fn settings() -> Value {
        json!({ "custom_fields": {} })
    }
    fn replay() -> Value {
        json!({ "since_seq": 0 })
    }
    fn webhook() -> Value {
        // TEST-NET-1: public to the SSRF guard, never answered.
        json!({ "url": "http://192.0.2.1/hook", "events": ["user.*"] })
    }
    // Rocket.Chat's routes: a body (or, for a GET, the query) names the
    // world's ids as `{target}`, `{roomId}`, … Missing objects are its
    // 400s, as Rocket.Chat answers; a request without a user's id is 400.
    fn rc_target() -> Value {
        json!({ "userId": "{target}" })
    }
    fn rc_member() -> Value {
        json!({ "roomId": "{roomId}", "userId": "{M}" })
    }
    fn rc_invite() -> Value {
        json!({ "roomId": "{roomId}", "userId": "{target}" })
    }
    fn rc_room() -> Value {
        json!({ "roomId": "{roomId}" })
    }
    fn rc_user() -> Value {
        json!({ "username": format!("u{}", uuid::Uuid::new_v4().simple()), "name": "x" })
    }
    fn rc_update() -> Value {
        json!({ "userId": "{target}", "data": { "name": "y" } })
    }
    fn rc_active() -> Value {
        json!({ "userId": "{target}", "activeStatus": false })
    }
    fn rc_status() -> Value {
        json!({ "userId": "{target}", "message": "hi" })
    }
    fn rc_role() -> Value {
        json!({ "name": format!("r{}", uuid::Uuid::new_v4().simple()) })
    }
    fn rc_grant() -> Value {
        json!({ "roleId": "{roleId}", "userId": "{target}" })
    }
    fn rc_channel() -> Value {
        json!({ "name": format!("c{}", uuid::Uuid::new_v4().simple()) })
    }
    const RC: &str = "/compat/rocketchat/{accountId}/api/v1/";
    let rc = |method: &'static str,
              route: &str,
              body: Option<fn() -> Value>,
              expected: &'static str|
     -> Row {
        let path: &'static str = Box::leak(format!("{RC}{route}").into_boxed_str());
        (method, path, body, expected, "")
    };
    let mut rows = vec![
        rc("GET", "me", None, "3002222222144"),
        rc("GET", "users.info", Some(rc_target), "3222233333144"),
        rc("GET", "users.list", None, "3222233333144"),
        rc("GET", "users.getPresence", Some(rc_target), "3222233333144"),
        rc("GET", "roles.list", None, "3222333333144"),
        rc("GET", "permissions.listAll", None, "3222333333144"),
        // The world's room is private: not a channel, for anyone.
        rc("GET", "channels.info", Some(rc_room), "3000000000144"),
        rc("GET", "groups.info", Some(rc_room), "3222000220144"),
        rc("GET", "channels.list", None, "3222222222144"),
        rc("GET", "groups.list", None, "3222222222144"),
        rc("POST", "logout", None, "3002222222144"),
        rc("POST", "users.create", Some(rc_user), "3232233333144"),
        rc("POST", "users.update", Some(rc_update), "3232333333144"),
        rc("POST", "users.delete", Some(rc_target), "3232333333144"),
        rc(
            "POST",
            "users.setActiveStatus",
            Some(rc_active),
            "3232333333144",
        ),
        rc(
            "POST",
            "users.createToken",
            Some(rc_target),
            "3232333333144",
        ),
        rc("POST", "users.setStatus", Some(rc_status), "3232333333144"),
        rc(
            "POST",
            "users.resetAvatar",
            Some(rc_target),
            "3232333333144",
        ),
        rc("POST", "roles.create", Some(rc_role), "3232333333144"),
        rc(
            "POST",
            "roles.addUserToRole",
            Some(rc_grant),
            "3232333333144",
        ),
        // The target does not hold the role: 400 for whoever may take it away.
        rc(
            "POST",
            "roles.removeUserFromRole",
            Some(rc_grant),
            "3030333333144",
        ),
        rc("POST", "channels.create", Some(rc_channel), "3232322222144"),
        rc("POST", "groups.create", Some(rc_channel), "3232322222144"),
        rc("POST", "channels.invite", Some(rc_invite), "3000000000144"),
        rc("POST", "channels.kick", Some(rc_member), "3000000000144"),
        rc("POST", "groups.invite", Some(rc_invite), "3232000230144"),
        rc("POST", "groups.kick", Some(rc_member), "3232000220144"),
    ];
    // CometChat's routes take an account API key alone (`apikey`): a
    // user's token is no key there (401), the operator key is refused (403).
    fn cc_user() -> Value {
        json!({ "uid": format!("u{}", uuid::Uuid::new_v4().simple()), "name": "x" })
    }
    fn cc_activate() -> Value {
        json!({ "uidsToActivate": ["{target}"] })
    }
    fn cc_deactivate() -> Value {
        json!({ "uidsToDeactivate": ["{target}"] })
    }
    fn cc_role() -> Value {
        json!({ "role": format!("r{}", uuid::Uuid::new_v4().simple()), "name": "x" })
    }
    fn cc_describe() -> Value {
        json!({ "description": "d" })
    }
    const CC: &str = "/compat/cometchat/{accountId}/v3/";
    let cc = |method: &'static str,
              route: &str,
              body: Option<fn() -> Value>,
              expected: &'static str|
     -> Row {
        let path: &'static str = Box::leak(format!("{CC}{route}").into_boxed_str());
        (method, path, body, expected, "")
    };
    rows.extend([
        cc("GET", "users", None, "3221111111144"),
        cc("POST", "users", Some(cc_user), "3231111111144"),
        cc("PUT", "users", Some(cc_activate), "3231111111144"),
        cc("DELETE", "users", Some(cc_deactivate), "3231111111144"),
        cc("GET", "users/{uid}", None, "3221111111144"),
        cc("PUT", "users/{uid}", Some(name), "3231111111144"),
        cc("DELETE", "users/{uid}", None, "3231111111144"),
        cc("POST", "users/{uid}/auth_tokens", None, "3231111111144"),
        cc("GET", "users/{uid}/auth_tokens", None, "3231111111144"),
        cc("DELETE", "users/{uid}/auth_tokens", None, "3231111111144"),
        cc(
            "GET",
            "users/{uid}/auth_tokens/{authToken}",
            None,
            "3231111111144",
        ),
        cc(
            "DELETE",
            "users/{uid}/auth_tokens/{authToken}",
            None,
            "3231111111144",
        ),
        cc("GET", "roles", None, "3221111111144"),
        cc("POST", "roles", Some(cc_role), "3231111111144"),
        cc("GET", "roles/{role}", None, "3221111111144"),
        cc("PUT", "roles/{role}", Some(cc_describe), "3231111111144"),
        cc("DELETE", "roles/{role}", None, "3231111111144"),
    ]);
    // SCIM's routes take an account API key alone, as a bearer token: a
    // user's token is no key there (401; another account's user: 404), the
    // operator key is refused (403); a read key reads. `{id}` is the target user, the world's space (a Group), a
    // schema's URN or a resource type's name.
    fn scim_user() -> Value {
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": format!("u{}", uuid::Uuid::new_v4().simple()),
        })
    }
    fn scim_group() -> Value {
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
            "displayName": format!("g{}", uuid::Uuid::new_v4().simple()),
        })
    }
    fn scim_patch() -> Value {
        json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{ "op": "replace", "path": "displayName", "value": "y" }],
        })
    }
    fn scim_search() -> Value {
        json!({ "schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"] })
    }
    const SCIM: &str = "/v1/accounts/{accountId}/scim/v2/";
    let scim = |method: &'static str,
                route: &str,
                body: Option<fn() -> Value>,
                expected: &'static str|
     -> Row {
        let path: &'static str = Box::leak(format!("{SCIM}{route}").into_boxed_str());
        (method, path, body, expected, "")
    };
    rows.extend([
        scim("GET", "ServiceProviderConfig", None, "3221111111144"),
        scim("GET", "ResourceTypes", None, "3221111111144"),
        scim("GET", "ResourceTypes/{id}", None, "3221111111144"),
        scim("GET", "Schemas", None, "3221111111144"),
        scim("GET", "Schemas/{id}", None, "3221111111144"),
        // Searching across resource types is not served (501).
        scim("POST", ".search", Some(scim_search), "3NN1111111144"),
        scim("GET", "Users", None, "3221111111144"),
        scim("POST", "Users", Some(scim_user), "3231111111144"),
        scim("POST", "Users/.search", Some(scim_search), "3221111111144"),
        scim("GET", "Users/{id}", None, "3221111111144"),
        scim("PUT", "Users/{id}", Some(scim_user), "3231111111144"),
        scim("PATCH", "Users/{id}", Some(scim_patch), "3231111111144"),
        scim("DELETE", "Users/{id}", None, "3231111111144"),
        scim("GET", "Groups", None, "3221111111144"),
        scim("POST", "Groups", Some(scim_group), "3231111111144"),
        scim("POST", "Groups/.search", Some(scim_search), "3221111111144"),
        scim("GET", "Groups/{id}", None, "3221111111144"),
        scim("PUT", "Groups/{id}", Some(scim_group), "3231111111144"),
        scim("PATCH", "Groups/{id}", Some(scim_patch), "3231111111144"),
        scim("DELETE", "Groups/{id}", None, "3231111111144"),
    ]);
    let native: Vec<Row> = vec![
        // Webhooks: `manage-settings` (admins, full keys; not read keys).
        (
            "POST",
            "/v1/accounts/{accountId}/webhooks",
            Some(webhook),
            "3232333333144",
            "",
        ),
        (
            "GET",
            "/v1/accounts/{accountId}/webhooks",
            None,
            "3232333333144",
            "",
        ),
        (
            "GET",
            "/v1/accounts/{accountId}/webhooks/{webhookId}",
            None,
            "3232333333144",
            "",
        ),
        (
            "PATCH",
            "/v1/accounts/{accountId}/webhooks/{webhookId}",
            Some(empty),
            "3232333333144",
            "",
        ),
        (
            "DELETE",
            "/v1/accounts/{accountId}/webhooks/{webhookId}",
            None,
            "3232333333144",
            "",
        ),
        (
            "GET",
            "/v1/accounts/{accountId}/webhooks/{webhookId}/deliveries",
            None,
            "3232333333144",
            "",
        ),
        (
            "POST",
            "/v1/accounts/{accountId}/webhooks/{webhookId}/rotate-secret",
            None,
            "3232333333144",
            "",
        ),
        (
            "POST",
            "/v1/accounts/{accountId}/webhooks/{webhookId}/test",
            None,
            "3232333333144",
            "",
        ),
        (
            "POST",
            "/v1/accounts/{accountId}/webhooks/{webhookId}/replay",
            Some(replay),
            "3232333333144",
            "",
        ),
        (
            "POST",
            "/v1/accounts/{accountId}/webhooks/{webhookId}/deliveries/{deliveryId}/retry",
            None,
            "3232333333144",
            "",
        ),
        // The audit log: `view-audit-log` (admins, full keys; not read keys).
        (
            "GET",
            "/v1/accounts/{accountId}/audit",
            None,
            "3232333333144",
            "",
        ),
        (
            "GET",
            "/v1/accounts/{accountId}/audit/export",
            None,
            "3232333333144",
            "",
        ),
        (
            "GET",
            "/v1/accounts/{accountId}/audit/{eventId}",
            None,
            "3232333333144",
            "",
        ),
        ("POST", "/v1/accounts", Some(name), "2111111111111", ""),
        ("GET", "/v1/accounts", None, "2111111111111", ""),
        ("GET", "/v1/accounts/{accountId}", None, "2111111111111", ""),
        (
            "POST",
            "/v1/accounts/{accountId}/api-keys",
            Some(name),
            "3232333333144",
            "",
        ),
        (
            "GET",
            "/v1/accounts/{accountId}/api-keys",
            None,
            "3232333333144",
            "",
        ),
        (
            "DELETE",
            "/v1/accounts/{accountId}/api-keys/{keyId}",
            None,
            "3232333333144",
            "",
        ),
        (
            "POST",
            "/v1/accounts/{accountId}/users",
            Some(name),
            "3232233333144",
            "",
        ),
        (
            "GET",
            "/v1/accounts/{accountId}/users",
            None,
            "3222233333144",
            "",
        ),
        (
            "GET",
            "/v1/accounts/{accountId}/users/{userId}",
            None,
            "3222233333144",
            "target",
        ),
        (
            "PATCH",
            "/v1/accounts/{accountId}/users/{userId}",
            Some(name),
            "3232333333144",
            "target",
        ),
        (
            "DELETE",
            "/v1/accounts/{accountId}/users/{userId}",
            None,
            "3232333333144",
            "target",
        ),
        (
            "POST",
            "/v1/accounts/{accountId}/users/{userId}/deactivate",
            Some(empty),
            "3232333333144",
            "target",
        ),
        (
            "POST",
            "/v1/accounts/{accountId}/users/{userId}/reactivate",
            Some(empty),
            "3232333333144",
            "target",
        ),
        (
            "POST",
            "/v1/accounts/{accountId}/rooms",
            Some(name),
            "3232322222144",
            "",
        ),
        (
            "GET",
            "/v1/accounts/{accountId}/rooms",
            None,
            "3222222222144",
            "",
        ),
        (
            "GET",
            "/v1/accounts/{accountId}/rooms/{roomId}",
            None,
            "3222444224144",
            "",
        ),
        (
            "PATCH",
            "/v1/accounts/{accountId}/rooms/{roomId}",
            Some(name),
            "3232444234144",
            "",
        ),
        (
            "DELETE",
            "/v1/accounts/{accountId}/rooms/{roomId}",
            None,
            "3232444234144",
            "",
        ),
        (
            "POST",
            "/v1/accounts/{accountId}/rooms/{roomId}/join",
            Some(empty),
            "3333444224144",
            "",
        ),
        (
            "GET",
            "/v1/accounts/{accountId}/rooms/{roomId}/members",
            None,
            "3222444224144",
            "",
        ),
        (
            "PUT",
            "/v1/accounts/{accountId}/rooms/{roomId}/members/{userId}",
            Some(room_role),
            "3232444234144",
            "target",
        ),
        (
            "DELETE",
            "/v1/accounts/{accountId}/rooms/{roomId}/members/{userId}",
            None,
            "3232444224144",
            "member",
        ),
        (
            "POST",
            "/v1/accounts/{accountId}/rooms/{roomId}/access",
            Some(access),
            "3233444234144",
            "",
        ),
        (
            "GET",
            "/v1/accounts/{accountId}/rooms/{roomId}/access",
            None,
            "3223444234144",
            "",
        ),
        (
            "DELETE",
            "/v1/accounts/{accountId}/rooms/{roomId}/access/{linkId}",
            None,
            "3233444234144",
            "",
        ),
        (
            "POST",
            "/v1/accounts/{accountId}/spaces",
            Some(name),
            "3232322222144",
            "",
        ),
        (
            "GET",
            "/v1/accounts/{accountId}/spaces",
            None,
            "3222222222144",
            "",
        ),
        (
            "GET",
            "/v1/accounts/{accountId}/spaces/{spaceId}",
            None,
            "3222222222144",
            "",
        ),
        (
            "PATCH",
            "/v1/accounts/{accountId}/spaces/{spaceId}",
            Some(name),
            "3232323333144",
            "",
        ),
        (
            "DELETE",
            "/v1/accounts/{accountId}/spaces/{spaceId}",
            None,
            "3232323333144",
            "",
        ),
        (
            "POST",
            "/v1/accounts/{accountId}/spaces/{spaceId}/join",
            Some(empty),
            "3332222222144",
            "",
        ),
        (
            "GET",
            "/v1/accounts/{accountId}/spaces/{spaceId}/members",
            None,
            "3222322323144",
            "",
        ),
        (
            "PUT",
            "/v1/accounts/{accountId}/spaces/{spaceId}/members/{userId}",
            Some(user_role),
            "3232322333144",
            "target",
        ),
        (
            "DELETE",
            "/v1/accounts/{accountId}/spaces/{spaceId}/members/{userId}",
            None,
            "3232322323144",
            "member",
        ),
        (
            "POST",
            "/v1/accounts/{accountId}/spaces/{spaceId}/invites",
            Some(user_role),
            "3232322333144",
            "",
        ),
        (
            "GET",
            "/v1/accounts/{accountId}/spaces/{spaceId}/invites",
            None,
            "3222322333144",
            "",
        ),
        (
            "DELETE",
            "/v1/accounts/{accountId}/spaces/{spaceId}/invites/{inviteId}",
            None,
            "3232322333144",
            "",
        ),
        (
            "POST",
            "/v1/accounts/{accountId}/spaces/{spaceId}/invites/{inviteId}/activate",
            Some(empty),
            "3332222222144",
            "",
        ),
        (
            "POST",
            "/v1/accounts/{accountId}/roles",
            Some(role),
            "3232333333144",
            "",
        ),
        (
            "GET",
            "/v1/accounts/{accountId}/roles",
            None,
            "3222333333144",
            "",
        ),
        (
            "GET",
            "/v1/accounts/{accountId}/roles/{roleId}",
            None,
            "3222333333144",
            "",
        ),
        (
            "PATCH",
            "/v1/accounts/{accountId}/roles/{roleId}",
            Some(role),
            "3232333333144",
            "",
        ),
        (
            "DELETE",
            "/v1/accounts/{accountId}/roles/{roleId}",
            None,
            "3232333333144",
            "",
        ),
        (
            "POST",
            "/v1/accounts/{accountId}/users/{userId}/tokens",
            Some(empty),
            "3232333333144",
            "target",
        ),
        (
            "GET",
            "/v1/accounts/{accountId}/users/{userId}/tokens",
            None,
            "3232333333144",
            "target",
        ),
        (
            "DELETE",
            "/v1/accounts/{accountId}/users/{userId}/tokens",
            None,
            "3232333333144",
            "target",
        ),
        (
            "DELETE",
            "/v1/accounts/{accountId}/users/{userId}/tokens/{tokenId}",
            None,
            "3232333333144",
            "target",
        ),
        ("POST", "/v1/keys/rotate", Some(empty), "2111111111111", ""),
        (
            "GET",
            "/v1/accounts/{accountId}/settings",
            None,
            "3222333333144",
            "",
        ),
        (
            "PATCH",
            "/v1/accounts/{accountId}/settings",
            Some(settings),
            "3232333333144",
            "",
        ),
    ];
    rows.extend(native);
    rows
}

/// Account routes that authenticate by what the body carries (a password, a
/// refresh token, a reset token, a captcha) or act only on the caller's own
/// session: no caller kind grants more than another. Their refusals are
/// tested in sessions.rs, signup.rs and mail.rs.
const SELF_SERVICE: [&str; 10] = [
    "/compat/rocketchat/{accountId}/api/v1/login",
    "/compat/rocketchat/{accountId}/api/v1/users.register",
    "/v1/accounts/{accountId}/auth/login",
    "/v1/accounts/{accountId}/auth/refresh",
    "/v1/accounts/{accountId}/auth/logout",
    "/v1/accounts/{accountId}/auth/password",
    "/v1/accounts/{accountId}/auth/password-reset",
    "/v1/accounts/{accountId}/auth/password-reset/confirm",
    "/v1/accounts/{accountId}/auth/verify-email",
    "/v1/accounts/{accountId}/signup",
];

/// Routes every caller may take, or that are not JSON routes.
pub(crate) const OPEN: [&str; 6] = [
    "/healthz",
    "/readyz",
    "/metrics",
    "/.well-known/jwks.json",
    "/v1/realtime",
    "/openapi.json",
];

/// The (METHOD, path) pairs `/openapi.json` documents that `keep` keeps.
pub(crate) async fn documented_routes(
    t: &TestApp,
    keep: impl Fn(&str, &str) -> bool,
) -> BTreeSet<(String, String)> {
    let doc: Value = reqwest::get(format!("{}/openapi.json", t.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut routes = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            let method = method.to_uppercase();
            if keep(&method, path) {
                routes.insert((method, path.clone()));
            }
        }
    }
    routes
}

pub(crate) struct World {
    pub(crate) creds: HashMap<&'static str, String>,
    pub(crate) ids: HashMap<&'static str, String>,
}

pub(crate) async fn world(t: &TestApp, a: &Account, b: &(Account, String)) -> World {
    let mut creds = HashMap::new();
    let mut ids = HashMap::new();
    let k = &a.key;
    let mk = |body: Value| async move {
        let d = t.user(a, body).await;
        (
            d["user"]["id"].as_str().unwrap().to_owned(),
            d["token"].as_str().unwrap().to_owned(),
        )
    };
    let (_, role) = t
        .post(&a.path("/roles"), k, json!({ "name": format!("c{}", uuid::Uuid::new_v4().simple()), "permissions": ["create-user", "view-other-user-info"] }))
        .await;
    let custom = role["data"]["role"]["id"].as_str().unwrap().to_owned();
    let (_, spare_role) = t
        .post(
            &a.path("/roles"),
            k,
            json!({ "name": format!("s{}", uuid::Uuid::new_v4().simple()), "permissions": [] }),
        )
        .await;
    ids.insert(
        "roleId",
        spare_role["data"]["role"]["id"]
            .as_str()
            .unwrap()
            .to_owned(),
    );
    for (c, body) in [
        ("A", json!({ "name": "admin", "roles": ["admin"] })),
        ("C", json!({ "name": "custom", "roles": [custom] })),
        ("SO", json!({ "name": "owner" })),
        ("SM", json!({ "name": "space mod" })),
        ("RM", json!({ "name": "room mod" })),
        ("M", json!({ "name": "member" })),
        ("N", json!({ "name": "outsider" })),
    ] {
        let (id, token) = mk(body).await;
        ids.insert(c, id);
        creds.insert(c, token);
    }
    let (target, _) = mk(json!({ "name": "target" })).await;
    ids.insert("target", target);
    let (_, space) = t
        .post(&a.path("/spaces"), &creds["SO"], json!({ "name": "space" }))
        .await;
    let space = space["data"]["space"]["id"].as_str().unwrap().to_owned();
    t.call(
        Method::PUT,
        &a.path(&format!("/spaces/{space}/members/{}", ids["SM"])),
        Some(k),
        Some(json!({ "role": "moderator" })),
    )
    .await;
    t.call(
        Method::PUT,
        &a.path(&format!("/spaces/{space}/members/{}", ids["M"])),
        Some(k),
        Some(json!({ "role": "user" })),
    )
    .await;
    let (_, room) = t
        .post(
            &a.path("/rooms"),
            k,
            json!({ "name": "room", "space_id": space, "visibility": "private" }),
        )
        .await;
    let room = room["data"]["room"]["id"].as_str().unwrap().to_owned();
    t.call(
        Method::PUT,
        &a.path(&format!("/rooms/{room}/members/{}", ids["RM"])),
        Some(k),
        Some(json!({ "role": "moderator" })),
    )
    .await;
    t.call(
        Method::PUT,
        &a.path(&format!("/rooms/{room}/members/{}", ids["M"])),
        Some(k),
        Some(json!({ "role": "user" })),
    )
    .await;
    let (_, invite) = t
        .post(
            &a.path(&format!("/spaces/{space}/invites")),
            k,
            json!({ "role": "user", "max_uses": 100 }),
        )
        .await;
    let (_, link) = t
        .post(
            &a.path(&format!("/rooms/{room}/access")),
            k,
            json!({ "username": "G", "role": "user", "isPermanent": true }),
        )
        .await;
    let (_, key) = t
        .post(&a.path("/api-keys"), k, json!({ "name": "spare" }))
        .await;
    let (_, token) = t
        .post(
            &a.path(&format!("/users/{}/tokens", ids["target"])),
            k,
            json!({}),
        )
        .await;
    ids.insert(
        "tokenId",
        token["data"]["token_info"]["id"]
            .as_str()
            .unwrap_or_else(|| panic!("{token}"))
            .to_owned(),
    );
    // CometChat's names of the target, its token and the spare role.
    ids.insert("uid", ids["target"].clone());
    ids.insert("authToken", ids["tokenId"].clone());
    ids.insert(
        "role",
        spare_role["data"]["role"]["name"]
            .as_str()
            .unwrap()
            .to_owned(),
    );
    ids.insert("spaceId", space);
    ids.insert("roomId", room);
    ids.insert(
        "inviteId",
        invite["data"]["invite"]["id"].as_str().unwrap().to_owned(),
    );
    ids.insert(
        "linkId",
        link["data"]["link"]["id"].as_str().unwrap().to_owned(),
    );
    ids.insert(
        "keyId",
        key["data"]["key"]["id"].as_str().unwrap().to_owned(),
    );
    let (_, hook) = t
        .post(
            &a.path("/webhooks"),
            k,
            json!({ "url": "http://192.0.2.1/hook", "events": ["user.*"] }),
        )
        .await;
    ids.insert(
        "webhookId",
        hook["data"]["webhook"]["id"]
            .as_str()
            .unwrap_or_else(|| panic!("{hook}"))
            .to_owned(),
    );
    let hook_id = ids["webhookId"].clone();
    let (status, sent) = t
        .post(&a.path(&format!("/webhooks/{hook_id}/test")), k, json!({}))
        .await;
    assert!(status.is_success(), "{sent}");
    let (_, deliveries) = t
        .get(&a.path(&format!("/webhooks/{hook_id}/deliveries")), k)
        .await;
    ids.insert(
        "deliveryId",
        deliveries["data"]["deliveries"][0]["id"]
            .as_str()
            .unwrap_or_else(|| panic!("{deliveries}"))
            .to_owned(),
    );
    let (_, events) = t.get(&a.path("/audit?limit=1"), k).await;
    ids.insert(
        "eventId",
        events["data"]["events"][0]["id"]
            .as_str()
            .unwrap_or_else(|| panic!("{events}"))
            .to_owned(),
    );
    creds.insert(
        "G",
        link["data"]["access_token"].as_str().unwrap().to_owned(),
    );
    creds.insert("O", OPERATOR_KEY.to_owned());
    creds.insert("F", a.key.clone());
    creds.insert("XK", b.0.key.clone());
    creds.insert("XU", b.1.clone());
    World { creds, ids }
}

/// A Rocket.Chat request: the credential as `X-Auth-Token`, the caller's
/// user id as `X-User-Id`, a GET's "body" as its query.
/// Answers (status, body, the `x-request-id` it was given).
pub(crate) async fn rc_call(
    t: &TestApp,
    method: Method,
    path: &str,
    cred: &str,
    user: &str,
    body: Option<Value>,
) -> (reqwest::StatusCode, Value, Option<String>) {
    let mut url = url::Url::parse(&format!("{}{path}", t.base)).unwrap();
    let get = method == Method::GET;
    if let (Some(Value::Object(q)), true) = (&body, get) {
        for (k, v) in q {
            url.query_pairs_mut()
                .append_pair(k, v.as_str().unwrap_or_default());
        }
    }
    let mut req = t
        .client
        .request(method, url)
        .header("X-Auth-Token", cred)
        .header("X-User-Id", user);
    if !get {
        req = req.json(&body.unwrap_or_else(|| json!({})));
    }
    let res = req.send().await.expect("request");
    let status = res.status();
    let id = res
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    (status, res.json().await.unwrap_or(Value::Null), id)
}

/// A CometChat request: the credential in the `apikey` header, a body (if
/// any) as JSON. Answers (status, body, the `x-request-id` it was given).
pub(crate) async fn cc_call(
    t: &TestApp,
    method: Method,
    path: &str,
    cred: &str,
    body: Option<Value>,
) -> (reqwest::StatusCode, Value, Option<String>) {
    let mut req = t
        .client
        .request(method, format!("{}{path}", t.base))
        .header("apikey", cred);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let res = req.send().await.expect("request");
    let status = res.status();
    let id = res
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    (status, res.json().await.unwrap_or(Value::Null), id)
}

/// `text` with the world's ids for `{name}`.
pub(crate) fn fill(text: &str, w: &World) -> String {
    let mut text = text.to_owned();
    for (k, v) in &w.ids {
        text = text.replace(&format!("{{{k}}}"), v);
    }
    text
}

fn code(status: reqwest::StatusCode) -> char {
    match status.as_u16() {
        200..=299 => '2',
        400 => '0',
        401 => '1',
        403 => '3',
        404 => '4',
        409 => '9',
        410 => 'G',
        501 => 'N',
        other => panic!("unexpected status {other}"),
    }
}

#[tokio::test]
async fn every_route_answers_every_kind_of_caller_as_specified() {
    // Authorization, not flood control: the matrix's many 401s from one
    // address would trip `bad_credentials_per_ip_per_minute`.
    let t = Arc::new(TestApp::spawn_with(|c| c.bad_credentials_per_ip_per_minute = 0).await);
    let a = t.account("a").await;
    let read_key = t.read_key(&a).await;
    let b = t.account("b").await;
    let b_user = t.user(&b, json!({ "name": "stranger" })).await["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let b = Arc::new((b, b_user));

    // Exhaustiveness: every documented route has a row (or is open).
    let documented = documented_routes(&t, |_, path| {
        !OPEN.contains(&path) && !SELF_SERVICE.contains(&path)
    })
    .await;
    let table = rows();
    let covered: BTreeSet<(String, String)> = table
        .iter()
        .map(|r| (r.0.to_owned(), r.1.to_owned()))
        .collect();
    let missing: Vec<_> = documented.difference(&covered).collect();
    assert!(
        missing.is_empty(),
        "routes without a row in the matrix: {missing:?}"
    );
    let stale: Vec<_> = covered.difference(&documented).collect();
    assert!(
        stale.is_empty(),
        "matrix rows for routes that do not exist: {stale:?}"
    );

    let shared = Arc::new(world(&t, &a, &b).await);
    let mut cells = Vec::new();
    for row in table {
        for (i, caller) in CALLERS.iter().enumerate() {
            cells.push((row, i, *caller));
        }
    }
    let a = Arc::new(a);
    let read_key = Arc::new(read_key);
    let results: Vec<Option<String>> = futures::stream::iter(cells)
        .map(|((method, path, body, expected, user), i, caller)| {
            let (t, a, b, shared, read_key) = (
                t.clone(),
                a.clone(),
                b.clone(),
                shared.clone(),
                read_key.clone(),
            );
            async move {
                let want = expected.chars().nth(i).unwrap();
                // A refusal changes nothing (which the other cells would
                // notice), so only a write that should succeed needs a
                // world of its own.
                let fresh;
                let w: &World = if method == "GET" || want != '2' {
                    &shared
                } else {
                    fresh = world(&t, &a, &b).await;
                    &fresh
                };
                let mut p = path.replace("{accountId}", &a.id);
                for (k, v) in &w.ids {
                    p = p.replace(&format!("{{{k}}}"), v);
                }
                let who = match user {
                    "member" => &w.ids["M"],
                    _ => &w.ids["target"],
                };
                p = p.replace("{userId}", who);
                let scim_id = if path.contains("/scim/v2/Users/") {
                    w.ids["target"].clone()
                } else if path.contains("/scim/v2/Groups/") {
                    w.ids["spaceId"].clone()
                } else if path.contains("/scim/v2/Schemas/") {
                    "urn:ietf:params:scim:schemas:core:2.0:User".to_owned()
                } else {
                    "User".to_owned()
                };
                p = p.replace("{id}", &scim_id);
                let cred = if caller == "R" {
                    read_key.as_str()
                } else {
                    w.creds[caller].as_str()
                };
                let m = Method::from_bytes(method.as_bytes()).unwrap();
                let body = body
                    .map(|f| serde_json::from_str::<Value>(&fill(&f().to_string(), w)).unwrap());
                let compat = path.starts_with("/compat/rocketchat/");
                let cometchat = path.starts_with("/compat/cometchat/");
                let scim = path.contains("/scim/v2/");
                let (status, answer) = if compat {
                    let user = w.ids.get(caller).map_or("", String::as_str);
                    let (status, answer, _) = rc_call(&t, m, &p, cred, user, body).await;
                    (status, answer)
                } else if cometchat {
                    let (status, answer, _) = cc_call(&t, m, &p, cred, body).await;
                    (status, answer)
                } else {
                    t.call(m, &p, Some(cred), body).await
                };
                let got = code(status);
                // An export's 2xx is NDJSON (one event per line); its
                // refusals are envelopes like every other.
                let ndjson = path.ends_with("/audit/export") && got == '2';
                if ndjson {
                    let text = answer.as_str().unwrap_or_default();
                    assert!(
                        text.lines()
                            .all(|l| serde_json::from_str::<Value>(l).is_ok()),
                        "{path} as {caller}: not NDJSON: {text}"
                    );
                } else if compat {
                    assert!(
                        answer["success"].is_boolean(),
                        "{method} {path} as {caller}: not Rocket.Chat's shape: {answer}"
                    );
                } else if cometchat {
                    assert!(
                        answer.get("data").is_some() || answer["error"]["code"].is_string(),
                        "{method} {path} as {caller}: not CometChat's shape: {answer}"
                    );
                } else if scim {
                    // A resource, a list or an error, each naming its schemas;
                    // a delete's 204 has no body.
                    assert!(
                        answer["schemas"].is_array() || (method == "DELETE" && got == '2'),
                        "{method} {path} as {caller}: not SCIM's shape: {answer}"
                    );
                } else {
                    assert_eq!(
                        answer["type"], "response",
                        "{method} {path} as {caller}: not an envelope: {answer}"
                    );
                }
                (got != want).then(|| {
                    let why = if compat {
                        &answer["error"]
                    } else if scim {
                        &answer["detail"]
                    } else {
                        &answer["error"]["message"]
                    };
                    format!("{method} {path} as {caller}: want {want}, got {got}: {why}")
                })
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    let wrong: Vec<String> = results.into_iter().flatten().collect();
    assert!(
        wrong.is_empty(),
        "{} cells differ:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}
