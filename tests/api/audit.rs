//! The audit log through HTTP: who changed what, filtered and paged newest
//! first, one event or an NDJSON export; private fields cut to the reader's
//! rights; sealed per account; read-only over HTTP and append-only in the
//! database; pruned past retention.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{Account, TestApp, assert_error};

/// Every event of the account, newest first, walking the pages of `query`.
async fn walk(t: &TestApp, a: &Account, auth: &str, query: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor = String::new();
    loop {
        let path = a.path(&format!("/audit?limit=3{query}{cursor}"));
        let (status, body) = t.get(&path, auth).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        out.extend(body["data"]["events"].as_array().unwrap().iter().cloned());
        match body["data"]["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => return out,
        }
    }
}

fn types(events: &[Value]) -> Vec<&str> {
    events.iter().map(|e| e["type"].as_str().unwrap()).collect()
}

/// An account with a user (Ann, with private fields), an admin who
/// deactivates her, and a user whose custom role holds `view-audit-log`
/// only. Returns (account, Ann's id, the admin's id, the admin's token,
/// the auditor's token).
async fn world(t: &TestApp) -> (Account, String, String, String, String) {
    let a = t.account("acme").await;
    let (status, body) = t
        .patch(
            &a.path("/settings"),
            &a.key,
            json!({ "custom_fields": { "salary": { "type": "number", "private": true },
                                        "team": { "type": "string" } } }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let ann = t
        .user(
            &a,
            json!({ "name": "Ann", "email": "ann@example.com",
                    "metadata": { "plan": "pro", "@private": { "note": "vip" } },
                    "custom_fields": { "salary": 100, "team": "red" } }),
        )
        .await;
    let ann = ann["user"]["id"].as_str().unwrap().to_owned();
    let admin = t
        .user(&a, json!({ "name": "Root", "roles": ["admin"] }))
        .await;
    let (admin_id, admin_token) = (
        admin["user"]["id"].as_str().unwrap().to_owned(),
        admin["token"].as_str().unwrap().to_owned(),
    );
    let (status, body) = t
        .post(
            &a.path(&format!("/users/{ann}/deactivate")),
            &admin_token,
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, role) = t
        .post(
            &a.path("/roles"),
            &a.key,
            json!({ "name": "Auditor", "permissions": ["view-audit-log"] }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{role}");
    let auditor = t
        .user(
            &a,
            json!({ "name": "Aud", "roles": [role["data"]["role"]["id"]] }),
        )
        .await;
    let auditor = auditor["token"].as_str().unwrap().to_owned();
    (a, ann, admin_id, admin_token, auditor)
}

#[tokio::test]
async fn the_audit_log_shows_who_changed_what_newest_first() {
    let t = TestApp::spawn().await;
    let (a, ann, admin, admin_token, _) = world(&t).await;
    let (_, keys) = t.get(&a.path("/api-keys"), &a.key).await;
    let key_id = keys["data"]["api_keys"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let all = walk(&t, &a, &a.key, "").await;
    let seqs: Vec<i64> = all.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] > w[1]),
        "newest first, no repeat: {seqs:?}"
    );
    assert_eq!(all.last().unwrap()["type"], "account.created");
    let created = all
        .iter()
        .find(|e| e["type"] == "user.created" && e["subject"]["id"] == ann.as_str())
        .expect("Ann's user.created");
    assert_eq!(created["actor"], json!({ "kind": "api_key", "id": key_id }));
    assert_eq!(created["subject"]["kind"], "user");
    assert!(created["request_id"].is_string());
    assert!(created["at"].as_str().unwrap().ends_with('Z'));
    let deactivated = all
        .iter()
        .find(|e| e["type"] == "user.deactivated")
        .expect("user.deactivated");
    assert_eq!(deactivated["actor"], json!({ "kind": "user", "id": admin }));
    assert_eq!(deactivated["subject"]["id"], ann.as_str());
    assert_eq!(deactivated["data"]["active"], false);

    // Filters.
    let users = walk(&t, &a, &a.key, "&type=user.*").await;
    assert!(!users.is_empty() && types(&users).iter().all(|t| t.starts_with("user.")));
    let exact = walk(&t, &a, &a.key, "&type=user.deactivated").await;
    assert_eq!(types(&exact), ["user.deactivated"]);
    let by_admin = walk(&t, &a, &a.key, &format!("&actor_id={admin}")).await;
    assert_eq!(types(&by_admin), ["user.deactivated"]);
    let about_ann = walk(&t, &a, &a.key, &format!("&subject_id={ann}")).await;
    assert_eq!(types(&about_ann), ["user.deactivated", "user.created"]);
    let first_at = all.last().unwrap()["at"].as_str().unwrap().to_owned();
    let before_all = walk(&t, &a, &a.key, &format!("&until={first_at}")).await;
    assert!(before_all.is_empty(), "{before_all:?}");
    let since_first = walk(&t, &a, &a.key, &format!("&since={first_at}")).await;
    assert_eq!(since_first.len(), all.len());

    // One event; another account sees none of it.
    let id = deactivated["id"].as_str().unwrap();
    let (status, one) = t.get(&a.path(&format!("/audit/{id}")), &a.key).await;
    assert_eq!(status, StatusCode::OK, "{one}");
    assert_eq!(one["data"]["event"], *deactivated);
    let b = t.account("other").await;
    assert_error(
        &t.get(&b.path(&format!("/audit/{id}")), &b.key).await,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        None,
    );
    assert_error(
        &t.get(&a.path("/audit"), &b.key).await,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        None,
    );
    let theirs = walk(&t, &b, &b.key, "").await;
    assert!(theirs.iter().all(|e| e["subject"]["id"] != ann.as_str()));

    // The admin user reads it too; the export holds every event.
    let by_user = walk(&t, &a, &admin_token, "").await;
    assert_eq!(by_user.len(), all.len());
    let res = t
        .client
        .get(format!("{}{}", t.base, a.path("/audit/export")))
        .bearer_auth(&a.key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-type"], "application/x-ndjson");
    let text = res.text().await.unwrap();
    let exported: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(exported, all);
}

#[tokio::test]
async fn private_fields_follow_the_readers_rights() {
    let t = TestApp::spawn().await;
    let (a, ann, _, _, auditor) = world(&t).await;
    let created = |events: Vec<Value>| {
        events
            .into_iter()
            .find(|e| e["type"] == "user.created" && e["subject"]["id"] == ann.as_str())
            .expect("Ann's user.created")
    };
    let full = created(walk(&t, &a, &a.key, "").await);
    assert_eq!(full["data"]["email"], "ann@example.com");
    assert_eq!(full["data"]["metadata"]["@private"]["note"], "vip");
    assert_eq!(full["data"]["custom_fields"]["salary"], 100);
    // `view-audit-log` without `view-other-user-info`: the public view.
    let narrow = created(walk(&t, &a, &auditor, "").await);
    assert!(narrow["data"].get("email").is_none(), "{narrow}");
    assert!(narrow["data"].get("phone").is_none(), "{narrow}");
    assert_eq!(narrow["data"]["metadata"], json!({ "plan": "pro" }));
    assert_eq!(narrow["data"]["custom_fields"], json!({ "team": "red" }));
    assert_eq!(narrow["data"]["name"], "Ann");
}

#[tokio::test]
async fn refusals_are_precise_and_the_log_cannot_be_changed() {
    let t = TestApp::spawn().await;
    let (a, ann, _, _, _) = world(&t).await;
    for (query, field) in [
        ("type=User%20Created", "type"),
        ("type=.*", "type"),
        ("actor_id=nobody", "actor_id"),
        ("since=yesterday", "since"),
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("cursor=garbage", "cursor"),
        ("colour=red", "colour"),
    ] {
        let got = t.get(&a.path(&format!("/audit?{query}")), &a.key).await;
        assert_error(
            &got,
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
            Some(field),
        );
    }
    // A window that ends before it starts holds no events.
    let (status, empty) = t
        .get(
            &a.path("/audit?since=2026-02-01T00:00:00Z&until=2026-01-01T00:00:00Z"),
            &a.key,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{empty}");
    assert_eq!(empty["data"]["events"], serde_json::json!([]));
    assert_error(
        &t.get(&a.path("/audit/export?limit=5"), &a.key).await,
        StatusCode::BAD_REQUEST,
        "VALIDATION_ERROR",
        Some("limit"),
    );
    let unknown = uuid::Uuid::now_v7();
    assert_error(
        &t.get(&a.path(&format!("/audit/{unknown}")), &a.key).await,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        None,
    );
    // A read key reads users, not the audit log.
    let read = t.read_key(&a).await;
    assert_error(
        &t.get(&a.path("/audit"), &read).await,
        StatusCode::FORBIDDEN,
        "FORBIDDEN",
        None,
    );
    // No route changes the log.
    let events = walk(&t, &a, &a.key, "").await;
    let id = events[0]["id"].as_str().unwrap();
    for (method, path) in [
        (Method::PATCH, a.path("/audit")),
        (Method::DELETE, a.path("/audit")),
        (Method::POST, a.path("/audit")),
        (Method::DELETE, a.path(&format!("/audit/{id}"))),
        (Method::PUT, a.path(&format!("/audit/{id}"))),
    ] {
        let (status, body) = t
            .call(method.clone(), &path, Some(&a.key), Some(json!({})))
            .await;
        assert_eq!(
            status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}: {body}"
        );
    }
    // Nor does the database let a statement change it.
    let url = t.app.config.database_url.clone();
    let refused = if url.starts_with("postgres") {
        let mut c = <sqlx::PgConnection as sqlx::Connection>::connect(&url)
            .await
            .unwrap();
        let update = sqlx::query("UPDATE events SET type = 'forged'")
            .execute(&mut c)
            .await;
        let delete = sqlx::query("DELETE FROM events").execute(&mut c).await;
        assert!(delete.is_err(), "a DELETE of events went through");
        update.err()
    } else {
        let mut c = <sqlx::SqliteConnection as sqlx::Connection>::connect(&url)
            .await
            .unwrap();
        sqlx::query("UPDATE events SET type = 'forged'")
            .execute(&mut c)
            .await
            .err()
    };
    let refused = refused.expect("an UPDATE of events went through");
    assert!(refused.to_string().contains("append-only"), "{refused}");
    let after = walk(&t, &a, &a.key, "").await;
    assert_eq!(after, events);
    assert!(after.iter().any(|e| e["subject"]["id"] == ann.as_str()));
}

/// Retention deletes exactly the events older than its cutoff, of every
/// account, through the database's append-only guard.
#[tokio::test]
async fn retention_prunes_only_what_is_older_than_the_cutoff() {
    let t = TestApp::spawn().await;
    let (a, _, _, _, _) = world(&t).await;
    let all = walk(&t, &a, &a.key, "").await;
    let at = |e: &Value| {
        time::OffsetDateTime::parse(
            e["at"].as_str().unwrap(),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap()
    };
    let cutoff = at(&all[0]);
    let older = all.iter().filter(|e| at(e) < cutoff).count();
    assert!(older > 0, "the world was made within one millisecond");
    let pruned = roster::service::audit::prune(t.app.store.as_ref(), cutoff)
        .await
        .unwrap();
    // The operator's account.created etc. of other accounts count too: at
    // least this account's older events went.
    assert!(pruned >= older as u64, "{pruned} < {older}");
    let left = walk(&t, &a, &a.key, "").await;
    assert_eq!(left.len(), all.len() - older);
    assert!(left.iter().all(|e| at(e) >= cutoff));
}
