//! Tenancy: one account's ids name nothing in another.

use std::sync::Arc;

use roster::domain::room::RoomPatch;
use roster::domain::user::{UserFilter, UserPatch};
use roster::store::{Store, TokenCheck};

use crate::harness::*;

pub async fn another_accounts_ids_are_not_found_everywhere(s: Arc<dyn Store>) {
    let mine = new_account(&*s).await;
    let theirs = new_account(&*s).await;
    let room = new_room(&*s, mine, "Mine", true).await;
    let mut u = new_user();
    u.room_id = Some(room.id);
    u.custom_id = Some("shared".into());
    u.username = Some("shared".into());
    u.email = Some("shared@example.com".into());
    let token = token_for(&u, t0());
    s.create_user(mine, &u, &token, &by(at(10))).await.unwrap();
    let key = new_key("mine", at(1));
    s.create_api_key(mine, &key, &by(at(0))).await.unwrap();

    let patch = RoomPatch {
        name: Some("Taken".into()),
        ..Default::default()
    };
    assert_not_found(s.get_room(theirs, room.id).await, "room");
    assert_not_found(
        s.update_room(theirs, room.id, &patch, &by(at(20))).await,
        "room",
    );
    assert_not_found(s.delete_room(theirs, room.id, &by(at(0))).await, "room");
    let user_patch = UserPatch {
        name: Some(Some("Taken".into())),
        ..Default::default()
    };
    assert_not_found(s.get_user(theirs, u.id).await, "user");
    assert_not_found(
        s.update_user(theirs, u.id, &user_patch, &by(at(20)), None)
            .await,
        "user",
    );
    assert_not_found(
        s.set_user_active(theirs, u.id, false, &by(at(20))).await,
        "user",
    );
    assert_not_found(s.delete_user(theirs, u.id, &by(t0())).await, "user");
    assert_not_found(
        s.revoke_api_key(theirs, key.id, &by(at(20))).await,
        "api key",
    );
    let mut intruder = new_user();
    intruder.room_id = Some(room.id);
    assert_not_found(create(&*s, theirs, &intruder).await, "room");
    assert!(matches!(
        s.check_user_token(theirs, u.id, token.id, at(20))
            .await
            .unwrap(),
        TokenCheck::Invalid
    ));
    assert!(
        user_ids(&*s, theirs, &UserFilter::default())
            .await
            .is_empty()
    );
    let in_room = UserFilter {
        room_id: Some(room.id),
        ..Default::default()
    };
    assert!(user_ids(&*s, theirs, &in_room).await.is_empty());
    assert!(
        s.list_rooms(theirs, None, first_page(10))
            .await
            .unwrap()
            .items
            .is_empty()
    );
    assert_eq!(
        s.list_api_keys(theirs, first_page(10))
            .await
            .unwrap()
            .items
            .len(),
        1
    );

    // Default rooms of one account are not joined by another's users, and
    // names are unique per account only.
    let mut twin = new_user();
    twin.custom_id = Some("shared".into());
    twin.username = Some("SHARED".into());
    twin.email = Some("Shared@example.com".into());
    twin.join_default_rooms = true;
    create(&*s, theirs, &twin).await.unwrap();
    assert_eq!(user_ids(&*s, mine, &in_room).await, vec![u.id]);

    // Nothing of mine changed.
    let r = s.get_room(mine, room.id).await.unwrap();
    assert_eq!((r.name.as_str(), r.updated_at), ("Mine", at(5)));
    let me = s.get_user(mine, u.id).await.unwrap();
    assert_eq!((me.active, me.name, me.updated_at), (true, None, at(10)));
    assert!(s.api_key_for_auth(key.id).await.unwrap().is_some());
    assert!(matches!(
        s.check_user_token(mine, u.id, token.id, at(20))
            .await
            .unwrap(),
        TokenCheck::Valid(_)
    ));
}
