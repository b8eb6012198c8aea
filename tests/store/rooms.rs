//! Rooms and the memberships that hang off them.

use std::sync::Arc;

use futures::StreamExt;
use roster::domain::room::{MAX_ROOMS_PER_USER, NewRoom, RoomPatch, Visibility};
use roster::domain::user::UserFilter;
use roster::store::{Page, Store};
use uuid::Uuid;

use crate::harness::*;

pub async fn rooms_are_created_read_listed_patched_and_deleted(s: Arc<dyn Store>) {
    let account = new_account(&*s).await;
    let creator = Uuid::now_v7();
    let new = NewRoom {
        name: "Lobby".into(),
        visibility: Visibility::Private,
        is_default: true,
        space_id: None,
        created_by: Some(creator),
    };
    let id = Uuid::now_v7();
    let created = s.create_room(account, id, &new, &by(at(20))).await.unwrap();
    let got = s.get_room(account, id).await.unwrap();
    for r in [&created, &got] {
        assert_eq!(
            (
                r.id,
                r.account_id,
                r.space_id,
                r.name.as_str(),
                r.visibility,
                r.is_default,
                r.created_by,
                r.created_at,
                r.updated_at
            ),
            (
                id,
                account,
                None,
                "Lobby",
                Visibility::Private,
                true,
                Some(creator),
                at(20),
                at(20)
            )
        );
    }
    assert_conflict(s.create_room(account, id, &new, &by(at(21))).await, "id");

    let b = new_room(&*s, account, "B", false).await;
    let c = new_room(&*s, account, "C", false).await;
    let all = sorted(vec![id, b.id, c.id]);
    let first = s.list_rooms(account, None, first_page(2)).await.unwrap();
    assert_eq!(
        first.items.iter().map(|r| r.id).collect::<Vec<_>>(),
        all[..2]
    );
    assert_eq!(first.next, Some(all[1]));
    let rest = s
        .list_rooms(
            account,
            None,
            Page {
                limit: 2,
                after: first.next,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        rest.items.iter().map(|r| r.id).collect::<Vec<_>>(),
        all[2..]
    );
    assert!(rest.next.is_none());
    let private = s
        .list_rooms(account, Some(Visibility::Private), first_page(10))
        .await
        .unwrap();
    assert_eq!(
        private.items.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![id]
    );
    let public = s
        .list_rooms(account, Some(Visibility::Public), first_page(10))
        .await
        .unwrap();
    assert_eq!(
        public.items.iter().map(|r| r.id).collect::<Vec<_>>(),
        sorted(vec![b.id, c.id])
    );

    // A patch changes what it names and nothing else.
    let renamed = s
        .update_room(
            account,
            id,
            &RoomPatch {
                name: Some("Hall".into()),
                ..Default::default()
            },
            &by(at(30)),
        )
        .await
        .unwrap();
    assert_eq!(
        (
            renamed.name.as_str(),
            renamed.visibility,
            renamed.is_default,
            renamed.created_at,
            renamed.updated_at
        ),
        ("Hall", Visibility::Private, true, at(20), at(30))
    );
    let patch = RoomPatch {
        name: None,
        visibility: Some(Visibility::Public),
        is_default: Some(false),
    };
    let opened = s
        .update_room(account, id, &patch, &by(at(40)))
        .await
        .unwrap();
    assert_eq!(
        (
            opened.name.as_str(),
            opened.visibility,
            opened.is_default,
            opened.updated_at
        ),
        ("Hall", Visibility::Public, false, at(40))
    );
    let got = s.get_room(account, id).await.unwrap();
    assert_eq!(
        (
            got.name.as_str(),
            got.visibility,
            got.is_default,
            got.updated_at
        ),
        ("Hall", Visibility::Public, false, at(40))
    );
    assert_not_found(
        s.update_room(account, Uuid::now_v7(), &patch, &by(at(40)))
            .await,
        "room",
    );

    s.delete_room(account, id, &by(at(0))).await.unwrap();
    assert_not_found(s.get_room(account, id).await, "room");
    assert_not_found(s.delete_room(account, id, &by(at(0))).await, "room");
    let left = s.list_rooms(account, None, first_page(10)).await.unwrap();
    assert_eq!(
        left.items.iter().map(|r| r.id).collect::<Vec<_>>(),
        sorted(vec![b.id, c.id])
    );
}

pub async fn deleting_a_room_removes_its_memberships(s: Arc<dyn Store>) {
    let account = new_account(&*s).await;
    let room = new_room(&*s, account, "Lobby", false).await;
    let mut u = new_user();
    u.room_id = Some(room.id);
    create(&*s, account, &u).await.unwrap();
    let in_room = UserFilter {
        room_id: Some(room.id),
        ..Default::default()
    };
    assert_eq!(user_ids(&*s, account, &in_room).await, vec![u.id]);

    s.delete_room(account, room.id, &by(at(0))).await.unwrap();
    assert!(user_ids(&*s, account, &in_room).await.is_empty());
    // The user stays.
    assert_eq!(s.get_user(account, u.id).await.unwrap().id, u.id);
}

pub async fn new_users_join_the_default_rooms_when_asked(s: Arc<dyn Store>) {
    let account = new_account(&*s).await;
    let d1 = new_room(&*s, account, "General", true).await;
    let d2 = new_room(&*s, account, "Random", true).await;
    let plain = new_room(&*s, account, "Quiet", false).await;

    let mut joiner = new_user();
    joiner.join_default_rooms = true;
    // Naming a default room as well does not join it twice.
    joiner.room_id = Some(d1.id);
    create(&*s, account, &joiner).await.unwrap();
    let stayer = new_user();
    create(&*s, account, &stayer).await.unwrap();

    for (room, expected) in [
        (d1.id, vec![joiner.id]),
        (d2.id, vec![joiner.id]),
        (plain.id, vec![]),
    ] {
        let filter = UserFilter {
            room_id: Some(room),
            ..Default::default()
        };
        assert_eq!(user_ids(&*s, account, &filter).await, expected);
    }
}

pub async fn joining_more_default_rooms_than_allowed_is_refused(s: Arc<dyn Store>) {
    let account = new_account(&*s).await;
    let cap = usize::try_from(MAX_ROOMS_PER_USER).unwrap();
    let rooms: Vec<Uuid> = futures::stream::iter(0..=cap)
        .map(|i| {
            let s = s.clone();
            async move { new_room(&*s, account, &format!("room {i}"), true).await.id }
        })
        .buffer_unordered(32)
        .collect()
        .await;

    let mut too_many = new_user();
    too_many.join_default_rooms = true;
    too_many.tags = vec!["t".into()];
    assert_conflict(
        create(&*s, account, &too_many).await,
        "join_default_channels",
    );
    assert_not_found(s.get_user(account, too_many.id).await, "user");
    let in_first = UserFilter {
        room_id: Some(rooms[0]),
        ..Default::default()
    };
    assert!(user_ids(&*s, account, &in_first).await.is_empty());

    // At the cap exactly, it fits.
    s.delete_room(account, rooms[cap], &by(at(0)))
        .await
        .unwrap();
    let mut at_cap = new_user();
    at_cap.join_default_rooms = true;
    create(&*s, account, &at_cap).await.unwrap();
    for room in [rooms[0], rooms[cap - 1]] {
        let filter = UserFilter {
            room_id: Some(room),
            ..Default::default()
        };
        assert_eq!(user_ids(&*s, account, &filter).await, vec![at_cap.id]);
    }
}
