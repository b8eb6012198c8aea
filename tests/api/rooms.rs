//! Rooms: create, list, read, change, delete.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{TestApp, assert_error};

#[tokio::test]
async fn rooms_round_trip_and_validate() {
    let t = TestApp::spawn().await;
    let a = t.account("acme").await;
    let (status, body) = t
        .post(
            &a.path("/rooms"),
            &a.key,
            json!({ "name": "Webinar 🎥", "visibility": "private", "isDefault": true }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let room = &body["data"]["room"];
    assert_eq!(room["name"], "Webinar 🎥");
    assert_eq!(room["visibility"], "private");
    assert_eq!(room["is_default"], true);
    let id = room["id"].as_str().unwrap();
    let (_, got) = t.get(&a.path(&format!("/rooms/{id}")), &a.key).await;
    assert_eq!(got["data"]["room"], *room);
    let (status, body) = t
        .patch(
            &a.path(&format!("/rooms/{id}")),
            &a.key,
            json!({ "visibility": "public", "is_default": false }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["room"]["visibility"], "public");
    assert_eq!(body["data"]["room"]["name"], "Webinar 🎥");
    for (body, field) in [
        (json!({ "name": "" }), "name"),
        (json!({ "name": "x".repeat(101) }), "name"),
        (json!({ "name": "x", "visibility": "secret" }), "visibility"),
        (json!({ "name": "x", "colour": "red" }), "colour"),
    ] {
        let got = t.post(&a.path("/rooms"), &a.key, body).await;
        assert_error(
            &got,
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
            Some(field),
        );
    }
    let got = t
        .post(
            &a.path("/rooms"),
            &a.key,
            json!({ "name": "x", "space_id": "0199c0de-0000-7000-8000-000000000000" }),
        )
        .await;
    assert_error(&got, StatusCode::NOT_FOUND, "NOT_FOUND", Some("space_id"));
    let (_, list) = t.get(&a.path("/rooms"), &a.key).await;
    assert_eq!(list["data"]["rooms"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn deleting_a_room_removes_its_memberships() {
    let t = TestApp::spawn().await;
    let a = t.account("acme").await;
    let room = t.room(&a, json!({ "name": "R" })).await;
    t.user(&a, json!({ "name": "U", "roomId": room })).await;
    let (_, members) = t
        .get(&a.path(&format!("/users?room_id={room}")), &a.key)
        .await;
    assert_eq!(members["data"]["users"].as_array().unwrap().len(), 1);
    let (status, _) = t.delete(&a.path(&format!("/rooms/{room}")), &a.key).await;
    assert_eq!(status, StatusCode::OK);
    let got = t.get(&a.path(&format!("/rooms/{room}")), &a.key).await;
    assert_error(&got, StatusCode::NOT_FOUND, "NOT_FOUND", None);
    let (_, members) = t
        .get(&a.path(&format!("/users?room_id={room}")), &a.key)
        .await;
    assert_eq!(members["data"]["users"].as_array().unwrap().len(), 0);
    assert_eq!(t.user_count(&a).await, 1);
}

#[tokio::test]
async fn plain_users_create_public_rooms_but_do_not_manage_or_see_private_ones() {
    let t = TestApp::spawn().await;
    let a = t.account("acme").await;
    let secret = t
        .room(&a, json!({ "name": "S", "visibility": "private" }))
        .await;
    let d = t.user(&a, json!({ "name": "U" })).await;
    let token = d["token"].as_str().unwrap();
    let (status, body) = t
        .post(&a.path("/rooms"), token, json!({ "name": "Mine" }))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["data"]["room"]["created_by"], d["user"]["id"]);
    let got = t
        .post(
            &a.path("/rooms"),
            token,
            json!({ "name": "D", "is_default": true }),
        )
        .await;
    assert_error(&got, StatusCode::FORBIDDEN, "FORBIDDEN", None);
    let got = t.get(&a.path(&format!("/rooms/{secret}")), token).await;
    assert_error(&got, StatusCode::NOT_FOUND, "NOT_FOUND", None);
    // A private room is invisible to outsiders: deleting it names nothing.
    let got = t.delete(&a.path(&format!("/rooms/{secret}")), token).await;
    assert_error(&got, StatusCode::NOT_FOUND, "NOT_FOUND", None);
    let (_, list) = t.get(&a.path("/rooms"), token).await;
    let rooms = list["data"]["rooms"].as_array().unwrap();
    assert_eq!(rooms.len(), 1);
    assert_eq!(rooms[0]["name"], "Mine");
}
