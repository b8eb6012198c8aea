//! Every answer wears the envelope, including the ones axum would make.

use axum::routing::get;
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{TestApp, assert_error};

#[tokio::test]
async fn malformed_json_is_bad_request_and_writes_nothing() {
    let t = TestApp::spawn().await;
    let a = t.account("acme").await;
    let res = t
        .client
        .post(format!("{}{}", t.base, a.path("/users")))
        .bearer_auth(&a.key)
        .header("content-type", "application/json")
        .body("{\"name\": \"Alice\",")
        .send()
        .await
        .unwrap();
    let got = (res.status(), res.json().await.unwrap());
    assert_error(&got, StatusCode::BAD_REQUEST, "BAD_REQUEST", None);
    for body in ["[1,2]", "\"text\"", "42", "null"] {
        let res = t
            .client
            .post(format!("{}{}", t.base, a.path("/users")))
            .bearer_auth(&a.key)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let got = (res.status(), res.json().await.unwrap());
        assert_error(&got, StatusCode::BAD_REQUEST, "BAD_REQUEST", None);
    }
    assert_eq!(t.user_count(&a).await, 0);
}

#[tokio::test]
async fn a_wrong_content_type_is_415() {
    let t = TestApp::spawn().await;
    let a = t.account("acme").await;
    let res = t
        .client
        .post(format!("{}{}", t.base, a.path("/users")))
        .bearer_auth(&a.key)
        .header("content-type", "text/plain")
        .body("{\"name\":\"Alice\"}")
        .send()
        .await
        .unwrap();
    let got = (res.status(), res.json().await.unwrap());
    assert_error(
        &got,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "UNSUPPORTED_MEDIA_TYPE",
        None,
    );
    assert_eq!(t.user_count(&a).await, 0);
}

#[tokio::test]
async fn an_oversized_body_is_413_before_it_is_parsed() {
    let t = TestApp::spawn().await;
    let a = t.account("acme").await;
    let big = format!("{{\"name\":\"{}\"}}", "a".repeat(70 * 1024));
    let res = t
        .client
        .post(format!("{}{}", t.base, a.path("/users")))
        .bearer_auth(&a.key)
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    let got = (res.status(), res.json().await.unwrap());
    assert_error(
        &got,
        StatusCode::PAYLOAD_TOO_LARGE,
        "PAYLOAD_TOO_LARGE",
        None,
    );
    assert_eq!(t.user_count(&a).await, 0);
}

#[tokio::test]
async fn the_body_limit_is_configurable() {
    let t = TestApp::spawn_with(|c| c.max_body_bytes = 2048).await;
    let a = t.account("acme").await;
    let (status, body) = t
        .post(
            &a.path("/users"),
            &a.key,
            json!({ "name": "A", "bio": "b".repeat(2100) }),
        )
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
}

#[tokio::test]
async fn unknown_routes_and_methods_wear_the_envelope() {
    let t = TestApp::spawn().await;
    let (status, body) = t
        .call(reqwest::Method::GET, "/v1/nothing-here", None, None)
        .await;
    assert_error(&(status, body), StatusCode::NOT_FOUND, "NOT_FOUND", None);
    let (status, body) = t
        .call(reqwest::Method::PUT, "/v1/accounts", None, None)
        .await;
    assert_error(
        &(status, body),
        StatusCode::METHOD_NOT_ALLOWED,
        "METHOD_NOT_ALLOWED",
        None,
    );
}

#[tokio::test]
async fn a_panic_is_a_500_that_leaks_nothing() {
    let t = TestApp::spawn().await;
    let routes = axum::Router::new().route(
        "/boom",
        get(|| async {
            let secret = std::hint::black_box("db password is hunter2");
            if !secret.is_empty() {
                panic!("{secret}");
            }
            "unreachable"
        }),
    );
    let router = roster::http::with_layers(routes, t.app.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    let res = reqwest::get(format!("http://{addr}/boom")).await.unwrap();
    let status = res.status();
    let text = res.text().await.unwrap();
    assert!(!text.contains("hunter2"), "{text}");
    let body: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_error(
        &(status, body),
        StatusCode::INTERNAL_SERVER_ERROR,
        "INTERNAL_ERROR",
        None,
    );
}

#[tokio::test]
async fn request_ids_are_echoed_in_header_and_envelope() {
    let t = TestApp::spawn().await;
    let res = t
        .client
        .get(format!("{}/healthz", t.base))
        .header("x-request-id", "req-abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["x-request-id"], "req-abc-123");
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["request_id"], "req-abc-123");
    assert_eq!(body["success"], true);
}

#[tokio::test]
async fn health_readiness_metrics_and_docs_answer() {
    let t = TestApp::spawn().await;
    let (status, body) = t.call(reqwest::Method::GET, "/readyz", None, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["data"]["database"].is_string());
    let _ = t.call(reqwest::Method::GET, "/healthz", None, None).await;
    let metrics = reqwest::get(format!("{}/metrics", t.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("roster_http_requests_total"), "{metrics}");
    assert!(metrics.contains("route=\"/healthz\""), "{metrics}");
    let docs = reqwest::get(format!("{}/docs/", t.base)).await.unwrap();
    assert_eq!(docs.status(), StatusCode::OK);
    assert!(docs.text().await.unwrap().contains("swagger"));
}

#[tokio::test]
async fn the_openapi_document_describes_every_route() {
    let t = TestApp::spawn().await;
    let doc: serde_json::Value = reqwest::get(format!("{}/openapi.json", t.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let paths = doc["paths"].as_object().unwrap();
    let expected = [
        ("/v1/accounts", vec!["post", "get"]),
        ("/v1/accounts/{accountId}", vec!["get"]),
        ("/v1/accounts/{accountId}/api-keys", vec!["post", "get"]),
        ("/v1/accounts/{accountId}/api-keys/{keyId}", vec!["delete"]),
        ("/v1/accounts/{accountId}/users", vec!["post", "get"]),
        (
            "/v1/accounts/{accountId}/users/{userId}",
            vec!["get", "patch", "delete"],
        ),
        (
            "/v1/accounts/{accountId}/users/{userId}/deactivate",
            vec!["post"],
        ),
        (
            "/v1/accounts/{accountId}/users/{userId}/reactivate",
            vec!["post"],
        ),
        ("/v1/accounts/{accountId}/rooms", vec!["post", "get"]),
        (
            "/v1/accounts/{accountId}/rooms/{roomId}",
            vec!["get", "patch", "delete"],
        ),
        ("/v1/accounts/{accountId}/settings", vec!["get", "patch"]),
        ("/.well-known/jwks.json", vec!["get"]),
        ("/healthz", vec!["get"]),
        ("/readyz", vec!["get"]),
        ("/metrics", vec!["get"]),
    ];
    for (path, methods) in expected {
        let item = paths
            .get(path)
            .unwrap_or_else(|| panic!("{path} missing from openapi.json"));
        for m in methods {
            assert!(
                item.get(m).is_some(),
                "{m} {path} missing from openapi.json"
            );
        }
    }
    let create = &paths["/v1/accounts/{accountId}/users"]["post"];
    assert!(create["requestBody"].is_object());
}

#[tokio::test]
async fn a_client_trickling_its_headers_is_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let t = TestApp::spawn_with(|c| c.header_read_timeout_secs = 1).await;
    let addr = t.base.trim_start_matches("http://").to_owned();
    let mut slow = tokio::net::TcpStream::connect(&addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // Never finishes its headers: the server closes the connection.
    let mut buf = [0u8; 512];
    let closed = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        loop {
            match slow.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the server kept a half-sent request open");
    // Everyone else is served as usual.
    let (status, _) = t.call(reqwest::Method::GET, "/healthz", None, None).await;
    assert_eq!(status, StatusCode::OK);
}
