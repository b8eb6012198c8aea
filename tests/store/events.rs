//! The event log: each change of a user writes its event in the change's
//! own transaction, a refused change writes none, and readers page by `seq`
//! within an account or across all of them.

use std::sync::Arc;

use roster::domain::event::{ActorRef, Change, Event};
use roster::domain::user::UserPatch;
use roster::store::Store;
use uuid::Uuid;

use crate::harness::*;

async fn all_events(s: &dyn Store, account: Option<Uuid>) -> Vec<Event> {
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        let page = s.events_after(account, after, 2).await.unwrap();
        let Some(last) = page.last() else {
            return out;
        };
        after = last.seq;
        out.extend(page);
    }
}

pub async fn every_user_change_writes_its_event_with_its_change(s: Arc<dyn Store>) {
    let account = new_account(&*s).await;
    let other = new_account(&*s).await;
    let key = Uuid::now_v7();
    let by_key = Change {
        at: at(10),
        actor: ActorRef {
            kind: "api_key",
            id: Some(key),
        },
        request_id: Some("req-1".into()),
        surface: Some("scim"),
    };
    let mut u = new_user();
    u.username = Some("ann".into());
    s.create_user(account, &u, &token_for(&u, at(10)), &by_key)
        .await
        .unwrap();
    let theirs = new_user();
    create(&*s, other, &theirs).await.unwrap();

    // Refused: a clash writes no user and no event.
    let mut clash = new_user();
    clash.username = Some("ANN".into());
    assert!(create(&*s, account, &clash).await.is_err());

    let patch = UserPatch {
        name: Some(Some("Ann B".into())),
        roles: Some(vec!["user".into(), "bot".into()]),
        ..UserPatch::default()
    };
    s.update_user(account, u.id, &patch, &by(at(20)), None)
        .await
        .unwrap();
    s.set_user_active(account, u.id, false, &by(at(30)))
        .await
        .unwrap();
    s.set_user_active(account, u.id, true, &by(at(40)))
        .await
        .unwrap();
    s.delete_user(account, u.id, &by(at(50))).await.unwrap();
    // Refused: the user is gone; nothing more is written.
    assert!(s.delete_user(account, u.id, &by(at(60))).await.is_err());

    let mut events = all_events(&*s, Some(account)).await;
    // The account's own creation comes first.
    let first: Vec<&str> = events.iter().take(2).map(|e| e.kind.as_str()).collect();
    assert_eq!(first, ["account.created", "api_key.created"]);
    events.drain(..2);
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "user.created",
            "user.updated",
            "user.roles_changed",
            "user.deactivated",
            "user.reactivated",
            "user.deleted"
        ]
    );
    assert!(events.windows(2).all(|w| w[0].seq < w[1].seq), "seq grows");
    let ids: std::collections::HashSet<Uuid> = events.iter().map(|e| e.id).collect();
    assert_eq!(ids.len(), events.len(), "each event has its own id");
    for e in &events {
        assert_eq!(e.account_id, Some(account));
        assert_eq!(
            (e.subject_kind.as_str(), e.subject_id.clone()),
            ("user", u.id.to_string())
        );
        assert_eq!(e.data["id"], u.id.to_string(), "{e:?}");
    }
    let created = &events[0];
    assert_eq!(
        (
            created.actor_kind.as_str(),
            created.actor_id,
            created.request_id.as_deref(),
            created.surface.as_deref()
        ),
        ("api_key", Some(key), Some("req-1"), Some("scim"))
    );
    assert_eq!(created.at, at(10));
    assert_eq!(created.data["username"], "ann");
    assert_eq!(
        events[1].data["name"], "Ann B",
        "data is the user after the change"
    );
    assert_eq!(events[1].actor_kind, "system");
    assert_eq!(events[3].data["active"], false);
    assert_eq!(events[4].data["active"], true);
    assert_eq!(
        events[5].data["name"], "Ann B",
        "a deleted user's event carries them as they were"
    );

    // Another account's events stay its own; all accounts read together.
    let mine_then_theirs = all_events(&*s, None).await;
    let others = all_events(&*s, Some(other)).await;
    assert_eq!(mine_then_theirs.len(), 2 + events.len() + others.len());
    let kinds: Vec<&str> = others.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(
        kinds,
        ["account.created", "api_key.created", "user.created"]
    );
    assert_eq!(others[2].subject_id, theirs.id.to_string());
    // A cursor past the end reads nothing.
    let last = mine_then_theirs.last().unwrap().seq;
    assert!(s.events_after(None, last, 10).await.unwrap().is_empty());
}
