//! Presence on the user record, and room membership lookups.

use std::sync::Arc;

use roster::domain::user::Status;
use roster::store::Store;
use uuid::Uuid;

use crate::harness::*;

pub async fn presence_transitions_are_recorded_and_reset(s: Arc<dyn Store>) {
    let account = new_account(&*s).await;
    let u = create(&*s, account, &new_user()).await.unwrap();
    let v = create(&*s, account, &new_user()).await.unwrap();
    s.set_presence(account, u.id, Status::Online, at(100))
        .await
        .unwrap();
    s.set_presence(account, v.id, Status::Away, at(200))
        .await
        .unwrap();
    let got = s.get_user(account, u.id).await.unwrap();
    assert_eq!(
        (got.status, got.last_seen_at),
        (Status::Online, Some(at(100)))
    );
    // Another account's id changes nothing.
    let other = new_account(&*s).await;
    s.set_presence(other, u.id, Status::Offline, at(300))
        .await
        .unwrap();
    assert_eq!(
        s.get_user(account, u.id).await.unwrap().status,
        Status::Online
    );
    // On start nobody stays online.
    assert_eq!(s.reset_presence(at(400)).await.unwrap(), 2);
    for id in [u.id, v.id] {
        let got = s.get_user(account, id).await.unwrap();
        assert_eq!(
            (got.status, got.last_seen_at),
            (Status::Offline, Some(at(400)))
        );
    }
    assert_eq!(s.reset_presence(at(500)).await.unwrap(), 0);
}

pub async fn membership_is_looked_up_within_the_account(s: Arc<dyn Store>) {
    let account = new_account(&*s).await;
    let room = new_room(&*s, account, "r", false).await;
    let mut member = new_user();
    member.room_id = Some(room.id);
    let member = create(&*s, account, &member).await.unwrap();
    let outsider = create(&*s, account, &new_user()).await.unwrap();
    assert!(s.is_room_member(account, room.id, member.id).await.unwrap());
    assert!(
        !s.is_room_member(account, room.id, outsider.id)
            .await
            .unwrap()
    );
    assert!(
        !s.is_room_member(account, Uuid::now_v7(), member.id)
            .await
            .unwrap()
    );
    let other = new_account(&*s).await;
    assert!(!s.is_room_member(other, room.id, member.id).await.unwrap());
}
