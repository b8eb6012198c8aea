//! The access model through HTTP: LiveDigital's flow end to end, invites and
//! their races, grantRole, guest links, custom roles and their limits.

use std::sync::Arc;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Account, TestApp, assert_error};
use crate::realtime::{close_code, connect, refused, send, wait_for};

struct U {
    id: String,
    token: String,
}

async fn user(t: &TestApp, a: &Account, body: Value) -> U {
    let d = t.user(a, body).await;
    U {
        id: d["user"]["id"].as_str().unwrap().to_owned(),
        token: d["token"].as_str().unwrap().to_owned(),
    }
}

fn id(body: &Value, what: &str) -> String {
    body["data"][what]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{body}"))
        .to_owned()
}

#[tokio::test]
async fn the_livedigital_flow_works_as_its_docs_tell_it() {
    let t = TestApp::spawn().await;
    let a = t.account("acme").await;
    // createUser (the server's API key), twice.
    let owner = user(
        &t,
        &a,
        json!({ "email": "o@example.com", "password": "gmi28abc", "username": "Owner" }),
    )
    .await;
    let invitee = user(&t, &a, json!({ "email": "i@example.com", "password": "gmi28abc", "username": "Some Username Here", "phone": "+79671234567" })).await;
    // The owner makes a space with their own token: they own it.
    let (status, space) = t
        .post(
            &a.path("/spaces"),
            &owner.token,
            json!({ "name": "Broadcasts", "visibility": "private" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{space}");
    let space = id(&space, "space");
    let (_, members) = t
        .get(&a.path(&format!("/spaces/{space}/members")), &owner.token)
        .await;
    assert_eq!(members["data"]["members"][0]["role"], "owner");
    // createInvite with role_space_moderator; activateInvite with the invitee's token.
    let (status, invite) = t
        .post(
            &a.path(&format!("/spaces/{space}/invites")),
            &owner.token,
            json!({ "role": "role_space_moderator" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{invite}");
    assert_eq!(invite["data"]["invite"]["max_uses"], 1);
    let invite = id(&invite, "invite");
    // Before activation the private space is invisible to the invitee.
    assert_error(
        &t.get(&a.path(&format!("/spaces/{space}")), &invitee.token)
            .await,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        None,
    );
    let (status, m) = t
        .post(
            &a.path(&format!("/spaces/{space}/invites/{invite}/activate")),
            &invitee.token,
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{m}");
    assert_eq!(m["data"]["member"]["role"], "moderator");
    assert_eq!(
        t.get(&a.path(&format!("/spaces/{space}")), &invitee.token)
            .await
            .0,
        StatusCode::OK
    );
    // One use only: a second activation is gone and changes nothing.
    let third = user(&t, &a, json!({ "name": "Third" })).await;
    let got = t
        .post(
            &a.path(&format!("/spaces/{space}/invites/{invite}/activate")),
            &third.token,
            json!({}),
        )
        .await;
    assert_error(&got, StatusCode::GONE, "GONE", None);
    let (_, members) = t
        .get(&a.path(&format!("/spaces/{space}/members")), &owner.token)
        .await;
    assert_eq!(members["data"]["members"].as_array().unwrap().len(), 2);

    // The moderator makes a room in the space; grantRole to the third user.
    let (status, room) = t
        .post(
            &a.path("/rooms"),
            &invitee.token,
            json!({ "name": "Stage", "spaceId": space }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{room}");
    let room = id(&room, "room");
    let (status, m) = t
        .call(
            reqwest::Method::PUT,
            &a.path(&format!("/rooms/{room}/members/{}", third.id)),
            Some(&invitee.token),
            Some(json!({ "role": "role_room_user" })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{m}");
    assert_eq!(m["data"]["member"]["role"], "user");
    // The space owner, as such, may not make guest links for it.
    let got = t
        .post(
            &a.path(&format!("/rooms/{room}/access")),
            &owner.token,
            json!({ "username": "JohnSmith", "role": "user" }),
        )
        .await;
    assert_error(&got, StatusCode::FORBIDDEN, "FORBIDDEN", None);
    // The room's creator may: generateAccess.
    let (status, access) = t
        .post(&a.path(&format!("/rooms/{room}/access")), &invitee.token, json!({ "username": "JohnSmith", "role": "user", "externalUserId": "string", "ttl": 86400, "isPermanent": false }))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{access}");
    let url = access["data"]["url"].as_str().unwrap();
    let token = access["data"]["access_token"].as_str().unwrap();
    let parsed = url::Url::parse(url).unwrap();
    let q: std::collections::HashMap<_, _> = parsed.query_pairs().into_owned().collect();
    assert_eq!(q["participantName"], "JohnSmith");
    assert_eq!(q["accessToken"], token);
    assert!(parsed.path().ends_with(&room));
    assert!(access["data"]["expires_at"].is_string());
    // The guest opens the realtime connection for that room only…
    let mut ws = connect(&t, token).await;
    send(&mut ws, json!({ "type": "join", "id": 1 })).await;
    assert_eq!(
        wait_for(&mut ws, "ack", |_| true).await["room_id"],
        room.as_str()
    );
    let (_, other) = t
        .post(&a.path("/rooms"), &a.key, json!({ "name": "Elsewhere" }))
        .await;
    send(
        &mut ws,
        json!({ "type": "join", "id": 2, "room_id": id(&other, "room") }),
    )
    .await;
    assert_eq!(
        wait_for(&mut ws, "error", |_| true).await["code"],
        "FORBIDDEN"
    );
    // …and a one-time link opens it once.
    assert_eq!(refused(&t, Some(token), None).await, 401);
    // A guest token is no key to the REST API.
    assert_error(
        &t.get(&a.path("/rooms"), token).await,
        StatusCode::UNAUTHORIZED,
        "UNAUTHORIZED",
        None,
    );
}

#[tokio::test]
async fn permanent_links_are_reusable_and_revocable() {
    let t = TestApp::spawn().await;
    let a = t.account("acme").await;
    let room = t
        .room(&a, json!({ "name": "R", "visibility": "private" }))
        .await;
    let (status, access) = t
        .post(
            &a.path(&format!("/rooms/{room}/access")),
            &a.key,
            json!({ "username": "Guest", "role": "moderator", "isPermanent": true }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{access}");
    let token = access["data"]["access_token"].as_str().unwrap().to_owned();
    let link = access["data"]["link"]["id"].as_str().unwrap().to_owned();
    // A private room: the guest is admitted all the same.
    for _ in 0..2 {
        let mut ws = connect(&t, &token).await;
        send(&mut ws, json!({ "type": "join", "id": 1 })).await;
        wait_for(&mut ws, "ack", |_| true).await;
    }
    let mut live = connect(&t, &token).await;
    let (_, list) = t
        .get(&a.path(&format!("/rooms/{room}/access")), &a.key)
        .await;
    assert_eq!(list["data"]["links"].as_array().unwrap().len(), 1);
    assert!(!list.to_string().contains(&token));
    let (status, _) = t
        .delete(&a.path(&format!("/rooms/{room}/access/{link}")), &a.key)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(close_code(&mut live).await, 1008);
    assert_eq!(refused(&t, Some(&token), None).await, 401);
    // Bounds and names.
    for (body, field) in [
        (json!({ "username": "G", "role": "admin" }), "role"),
        (json!({ "username": "G", "role": "user", "ttl": 0 }), "ttl"),
        (
            json!({ "username": "G", "role": "user", "ttl": 2_592_001 }),
            "ttl",
        ),
        (json!({ "username": "", "role": "user" }), "username"),
        (
            json!({ "username": "G", "role": "user", "externalUserId": "no spaces" }),
            "external_user_id",
        ),
    ] {
        let got = t
            .post(&a.path(&format!("/rooms/{room}/access")), &a.key, body)
            .await;
        assert_error(
            &got,
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
            Some(field),
        );
    }
    let (status, _) = t
        .post(
            &a.path(&format!("/rooms/{room}/access")),
            &a.key,
            json!({ "username": "G", "role": "user", "ttl": 2_592_000 }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
}

#[tokio::test]
async fn fifty_concurrent_activations_of_a_one_use_invite_admit_exactly_one() {
    let t = Arc::new(TestApp::spawn().await);
    let a = t.account("acme").await;
    let (_, space) = t
        .post(
            &a.path("/spaces"),
            &a.key,
            json!({ "name": "S", "visibility": "private" }),
        )
        .await;
    let space = id(&space, "space");
    let (_, invite) = t
        .post(
            &a.path(&format!("/spaces/{space}/invites")),
            &a.key,
            json!({ "role": "user" }),
        )
        .await;
    let invite = id(&invite, "invite");
    let mut users = Vec::new();
    for i in 0..50 {
        users.push(user(&t, &a, json!({ "uid": format!("u{i}"), "name": "U" })).await);
    }
    let path = a.path(&format!("/spaces/{space}/invites/{invite}/activate"));
    let tasks: Vec<_> = users
        .into_iter()
        .map(|u| {
            let (t, path) = (t.clone(), path.clone());
            tokio::spawn(async move { t.post(&path, &u.token, json!({})).await.0 })
        })
        .collect();
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.unwrap());
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == StatusCode::OK).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == StatusCode::GONE).count(),
        49,
        "{statuses:?}"
    );
    let (_, members) = t
        .get(&a.path(&format!("/spaces/{space}/members")), &a.key)
        .await;
    assert_eq!(members["data"]["members"].as_array().unwrap().len(), 1);
    let (_, invites) = t
        .get(&a.path(&format!("/spaces/{space}/invites")), &a.key)
        .await;
    assert_eq!(invites["data"]["invites"][0]["uses"], 1);
}

#[tokio::test]
async fn invites_are_bounded_revocable_and_never_above_their_maker() {
    let t = TestApp::spawn().await;
    let a = t.account("acme").await;
    let owner = user(&t, &a, json!({ "name": "O" })).await;
    let (_, space) = t
        .post(&a.path("/spaces"), &owner.token, json!({ "name": "S" }))
        .await;
    let space = id(&space, "space");
    let plain = user(&t, &a, json!({ "name": "P" })).await;
    // A plain member cannot invite; nor can an outsider.
    let (status, _) = t
        .post(
            &a.path(&format!("/spaces/{space}/join")),
            &plain.token,
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let got = t
        .post(
            &a.path(&format!("/spaces/{space}/invites")),
            &plain.token,
            json!({ "role": "user" }),
        )
        .await;
    assert_error(&got, StatusCode::FORBIDDEN, "FORBIDDEN", None);
    // A moderator invites users and moderators, never owners.
    let (status, _) = t
        .call(
            reqwest::Method::PUT,
            &a.path(&format!("/spaces/{space}/members/{}", plain.id)),
            Some(&owner.token),
            Some(json!({ "role": "role_space_moderator" })),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let got = t
        .post(
            &a.path(&format!("/spaces/{space}/invites")),
            &plain.token,
            json!({ "role": "owner" }),
        )
        .await;
    assert_error(
        &got,
        StatusCode::BAD_REQUEST,
        "VALIDATION_ERROR",
        Some("role"),
    );
    for (body, field) in [
        (json!({ "role": "user", "ttl": 0 }), "ttl"),
        (json!({ "role": "user", "max_uses": 0 }), "max_uses"),
        (json!({ "role": "user", "maxUses": 10_001 }), "max_uses"),
        (json!({ "role": "admin" }), "role"),
    ] {
        let got = t
            .post(
                &a.path(&format!("/spaces/{space}/invites")),
                &plain.token,
                body,
            )
            .await;
        assert_error(
            &got,
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
            Some(field),
        );
    }
    let (status, inv) = t
        .post(
            &a.path(&format!("/spaces/{space}/invites")),
            &plain.token,
            json!({ "role": "moderator", "ttl": 3600, "max_uses": 2 }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{inv}");
    let inv = id(&inv, "invite");
    let x = user(&t, &a, json!({ "name": "X" })).await;
    let (status, _) = t
        .delete(
            &a.path(&format!("/spaces/{space}/invites/{inv}")),
            &owner.token,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let got = t
        .post(
            &a.path(&format!("/spaces/{space}/invites/{inv}/activate")),
            &x.token,
            json!({}),
        )
        .await;
    assert_error(&got, StatusCode::GONE, "GONE", None);
    let (_, members) = t
        .get(&a.path(&format!("/spaces/{space}/members")), &owner.token)
        .await;
    assert!(
        !members.to_string().contains(&x.id),
        "a refused activation made a member"
    );
    // An API key cannot activate: activation is the invitee's own act.
    let got = t
        .post(
            &a.path(&format!("/spaces/{space}/invites/{inv}/activate")),
            &a.key,
            json!({}),
        )
        .await;
    assert_error(&got, StatusCode::FORBIDDEN, "FORBIDDEN", None);
    // Nobody raises their own role; the owner's role is fixed.
    let got = t
        .call(
            reqwest::Method::PUT,
            &a.path(&format!("/spaces/{space}/members/{}", owner.id)),
            Some(&plain.token),
            Some(json!({ "role": "user" })),
        )
        .await;
    assert_error(&got, StatusCode::FORBIDDEN, "FORBIDDEN", None);
}

#[tokio::test]
async fn a_private_room_shuts_out_even_the_space_owner() {
    let t = TestApp::spawn().await;
    let a = t.account("acme").await;
    let owner = user(&t, &a, json!({ "name": "O" })).await;
    let (_, space) = t
        .post(&a.path("/spaces"), &owner.token, json!({ "name": "S" }))
        .await;
    let space = id(&space, "space");
    let moderator = user(&t, &a, json!({ "name": "M" })).await;
    t.call(
        reqwest::Method::PUT,
        &a.path(&format!("/spaces/{space}/members/{}", moderator.id)),
        Some(&owner.token),
        Some(json!({ "role": "moderator" })),
    )
    .await;
    let (status, room) = t
        .post(
            &a.path("/rooms"),
            &moderator.token,
            json!({ "name": "Backstage", "space_id": space, "visibility": "private" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{room}");
    let room = id(&room, "room");
    assert_error(
        &t.get(&a.path(&format!("/rooms/{room}")), &owner.token)
            .await,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        None,
    );
    let got = t
        .post(
            &a.path(&format!("/rooms/{room}/join")),
            &owner.token,
            json!({}),
        )
        .await;
    assert_error(&got, StatusCode::NOT_FOUND, "NOT_FOUND", None);
    let mut ws = connect(&t, &owner.token).await;
    send(&mut ws, json!({ "type": "join", "id": 1, "room_id": room })).await;
    assert_eq!(
        wait_for(&mut ws, "error", |_| true).await["code"],
        "FORBIDDEN"
    );
    let (_, list) = t.get(&a.path("/rooms"), &owner.token).await;
    assert!(list["data"]["rooms"].as_array().unwrap().is_empty());
    // The room's moderator lets them in.
    let (status, _) = t
        .call(
            reqwest::Method::PUT,
            &a.path(&format!("/rooms/{room}/members/{}", owner.id)),
            Some(&moderator.token),
            Some(json!({ "role": "role_room_user" })),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        t.get(&a.path(&format!("/rooms/{room}")), &owner.token)
            .await
            .0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn removing_a_member_takes_their_live_connections_out_of_the_room() {
    let t = TestApp::spawn().await;
    let a = t.account("acme").await;
    let room = t.room(&a, json!({ "name": "R" })).await;
    let u = user(&t, &a, json!({ "name": "U", "roomId": room })).await;
    let watcher = user(&t, &a, json!({ "name": "W", "roomId": room })).await;
    let mut ws_w = connect(&t, &watcher.token).await;
    send(&mut ws_w, json!({ "type": "join", "id": 1 })).await;
    wait_for(&mut ws_w, "ack", |_| true).await;
    let mut ws = connect(&t, &u.token).await;
    send(&mut ws, json!({ "type": "join", "id": 1 })).await;
    wait_for(&mut ws, "ack", |_| true).await;
    wait_for(&mut ws_w, "presence", |v| {
        v["user_id"] == u.id.as_str() && v["status"] == "online"
    })
    .await;
    let (status, _) = t
        .delete(&a.path(&format!("/rooms/{room}/members/{}", u.id)), &a.key)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        wait_for(&mut ws, "removed", |_| true).await["room_id"],
        room.as_str()
    );
    wait_for(&mut ws_w, "presence", |v| {
        v["user_id"] == u.id.as_str() && v["status"] == "offline"
    })
    .await;
    // Public rooms can be joined again through the API.
    let (status, m) = t
        .post(&a.path(&format!("/rooms/{room}/join")), &u.token, json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{m}");
    assert_eq!(m["data"]["member"]["role"], "user");
}

#[tokio::test]
async fn custom_roles_grant_their_permissions_and_no_more() {
    let t = TestApp::spawn().await;
    let a = t.account("acme").await;
    let (status, role) = t
        .post(&a.path("/roles"), &a.key, json!({ "name": "Recruiter", "description": "creates users", "permissions": ["create-user", "assign-roles"] }))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{role}");
    let role_id = role["data"]["role"]["id"].as_str().unwrap().to_owned();
    assert_ne!(role_id, "Recruiter");
    let r = user(&t, &a, json!({ "name": "R", "roles": [role_id] })).await;
    // Rocket.Chat: create-user lets them create users…
    let (status, body) = t
        .post(&a.path("/users"), &r.token, json!({ "name": "New" }))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    // …but active:false needs edit-other-user-active-status.
    let got = t
        .post(
            &a.path("/users"),
            &r.token,
            json!({ "name": "Off", "active": false }),
        )
        .await;
    assert_error(&got, StatusCode::FORBIDDEN, "FORBIDDEN", None);
    // They may give their own role, not admin (more than they hold).
    let got = t
        .post(
            &a.path("/users"),
            &r.token,
            json!({ "name": "Boss", "roles": ["admin"] }),
        )
        .await;
    assert_error(&got, StatusCode::FORBIDDEN, "FORBIDDEN", Some("roles"));
    let (status, _) = t
        .post(
            &a.path("/users"),
            &r.token,
            json!({ "name": "Peer", "roles": [role_id] }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    // Adding the permission to the role takes effect at once.
    let (status, _) = t
        .patch(&a.path(&format!("/roles/{role_id}")), &a.key, json!({ "permissions": ["create-user", "assign-roles", "edit-other-user-active-status"] }))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = t
        .post(
            &a.path("/users"),
            &r.token,
            json!({ "name": "Off", "active": false }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    // Lists, names, and refusals.
    let (_, roles) = t.get(&a.path("/roles"), &a.key).await;
    let names: Vec<_> = roles["data"]["roles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["admin", "user", "bot", "guest", "Recruiter"]);
    let got = t
        .post(
            &a.path("/roles"),
            &a.key,
            json!({ "name": "recruiter", "permissions": [] }),
        )
        .await;
    assert_error(&got, StatusCode::CONFLICT, "CONFLICT", Some("name"));
    let got = t
        .post(
            &a.path("/roles"),
            &a.key,
            json!({ "name": "Admin", "permissions": [] }),
        )
        .await;
    // A built-in role's name is taken, as a custom role's is.
    assert_error(&got, StatusCode::CONFLICT, "CONFLICT", Some("name"));
    let got = t
        .post(
            &a.path("/roles"),
            &a.key,
            json!({ "name": "X", "permissions": ["fly"] }),
        )
        .await;
    assert_error(&got, StatusCode::BAD_REQUEST, "VALIDATION_ERROR", None);
    let got = t
        .post(
            &a.path("/roles"),
            &r.token,
            json!({ "name": "X", "permissions": [] }),
        )
        .await;
    assert_error(&got, StatusCode::FORBIDDEN, "FORBIDDEN", None);
    let got = t
        .delete(&a.path(&format!("/roles/{role_id}")), &a.key)
        .await;
    assert_error(&got, StatusCode::CONFLICT, "CONFLICT", None);
    let got = t.delete(&a.path("/roles/admin"), &a.key).await;
    assert_error(&got, StatusCode::FORBIDDEN, "FORBIDDEN", None);
    let got = t
        .post(
            &a.path("/users"),
            &a.key,
            json!({ "name": "Z", "roles": ["0199c0de-0000-7000-8000-000000000000"] }),
        )
        .await;
    assert_error(&got, StatusCode::NOT_FOUND, "NOT_FOUND", Some("roles"));
    let (status, admin_role) = t.get(&a.path("/roles/admin"), &a.key).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(admin_role["data"]["role"]["builtin"], true);
}

#[tokio::test]
async fn deleting_a_space_removes_its_rooms_memberships_and_invites() {
    let t = TestApp::spawn().await;
    let a = t.account("acme").await;
    let owner = user(&t, &a, json!({ "name": "O" })).await;
    let (_, space) = t
        .post(&a.path("/spaces"), &owner.token, json!({ "name": "S" }))
        .await;
    let space = id(&space, "space");
    let (_, room) = t
        .post(
            &a.path("/rooms"),
            &owner.token,
            json!({ "name": "R", "space_id": space }),
        )
        .await;
    let room = id(&room, "room");
    t.post(
        &a.path(&format!("/spaces/{space}/invites")),
        &owner.token,
        json!({ "role": "user" }),
    )
    .await;
    let (status, _) = t
        .delete(&a.path(&format!("/spaces/{space}")), &owner.token)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_error(
        &t.get(&a.path(&format!("/rooms/{room}")), &a.key).await,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        None,
    );
    assert_error(
        &t.get(&a.path(&format!("/spaces/{space}/invites")), &a.key)
            .await,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        None,
    );
    let (_, members) = t
        .get(&a.path(&format!("/users?room_id={room}")), &a.key)
        .await;
    assert!(members["data"]["users"].as_array().unwrap().is_empty());
}
