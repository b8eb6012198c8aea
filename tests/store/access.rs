//! The access model in storage: invite lifetimes, the room cap under
//! concurrent joins, links.

use std::sync::Arc;

use roster::domain::access::{AccessLink, Gone, Invite, RoomRole, Space, SpaceRole};
use roster::domain::room::Visibility;
use roster::store::{Store, StoreError};
use time::Duration;
use uuid::Uuid;

use crate::harness::*;

async fn space(s: &dyn Store, account: Uuid) -> Space {
    let sp = Space {
        id: Uuid::now_v7(),
        account_id: account,
        name: "S".into(),
        visibility: Visibility::Private,
        created_by: None,
        external_id: None,
        created_at: at(1),
        updated_at: at(1),
    };
    s.create_space(account, &sp, &[], &by(at(0))).await.unwrap()
}

fn gone<T: std::fmt::Debug>(r: roster::store::Result<T>) -> Gone {
    match r {
        Err(StoreError::Gone(why, _)) => why,
        other => panic!("expected Gone, got {other:?}"),
    }
}

pub async fn invites_expire_are_used_up_and_revoked(s: Arc<dyn Store>) {
    let account = new_account(&*s).await;
    let sp = space(&*s, account).await;
    let users: Vec<_> = {
        let mut v = Vec::new();
        for _ in 0..3 {
            v.push(create(&*s, account, &new_user()).await.unwrap().id);
        }
        v
    };
    let invite = Invite {
        id: Uuid::now_v7(),
        space_id: sp.id,
        role: SpaceRole::Moderator,
        max_uses: 2,
        uses: 0,
        expires_at: Some(at(1_000)),
        revoked_at: None,
        created_by: None,
        created_at: at(1),
    };
    s.create_invite(account, &invite, &by(at(0))).await.unwrap();
    // Expired at its instant, on every backend.
    assert_eq!(
        gone(
            s.activate_invite(account, sp.id, invite.id, users[0], &by(at(1_000)))
                .await
        ),
        Gone::Expired
    );
    let m = s
        .activate_invite(account, sp.id, invite.id, users[0], &by(at(999)))
        .await
        .unwrap();
    assert_eq!(m.role, "moderator");
    s.activate_invite(account, sp.id, invite.id, users[1], &by(at(999)))
        .await
        .unwrap();
    assert_eq!(
        gone(
            s.activate_invite(account, sp.id, invite.id, users[2], &by(at(999)))
                .await
        ),
        Gone::UsedUp
    );
    assert_eq!(s.space_role(account, sp.id, users[2]).await.unwrap(), None);
    // A revoked invite is gone; another account cannot even see it.
    let other = Invite {
        id: Uuid::now_v7(),
        max_uses: 5,
        expires_at: None,
        ..invite.clone()
    };
    s.create_invite(account, &other, &by(at(0))).await.unwrap();
    let stranger = new_account(&*s).await;
    assert_not_found(
        s.revoke_invite(stranger, sp.id, other.id, &by(at(5))).await,
        "invite",
    );
    s.revoke_invite(account, sp.id, other.id, &by(at(5)))
        .await
        .unwrap();
    assert_eq!(
        gone(
            s.activate_invite(account, sp.id, other.id, users[2], &by(at(6)))
                .await
        ),
        Gone::Revoked
    );
    // Activation never lowers a higher role.
    let third = Invite {
        id: Uuid::now_v7(),
        role: SpaceRole::User,
        max_uses: 1,
        expires_at: None,
        ..invite
    };
    s.create_invite(account, &third, &by(at(0))).await.unwrap();
    let m = s
        .activate_invite(account, sp.id, third.id, users[0], &by(at(7)))
        .await
        .unwrap();
    assert_eq!(m.role, "moderator");
}

pub async fn the_room_cap_holds_under_concurrent_joins(s: Arc<dyn Store>) {
    let account = new_account(&*s).await;
    // 1999 default rooms: a new user starts one room short of the cap.
    for i in 0..1999 {
        new_room(&*s, account, &format!("d{i}"), true).await;
    }
    let mut u = new_user();
    u.join_default_rooms = true;
    let u = create(&*s, account, &u).await.unwrap();
    let mut rooms = Vec::new();
    for i in 0..10 {
        rooms.push(new_room(&*s, account, &format!("r{i}"), false).await.id);
    }
    let joins: Vec<_> = rooms
        .iter()
        .map(|r| {
            let (s, r) = (s.clone(), *r);
            tokio::spawn(async move {
                s.put_room_member(account, r, u.id, RoomRole::User, true, &by(at(50)))
                    .await
            })
        })
        .collect();
    let mut admitted = 0;
    for j in joins {
        match j.await.unwrap() {
            Ok(_) => admitted += 1,
            Err(e) => assert_conflict::<()>(Err(e), "room_id"),
        }
    }
    assert_eq!(admitted, 1);
}

pub async fn one_time_links_work_once_and_permanent_ones_until_they_expire(s: Arc<dyn Store>) {
    let account = new_account(&*s).await;
    let room = new_room(&*s, account, "r", false).await;
    let once = AccessLink {
        id: Uuid::now_v7(),
        room_id: room.id,
        username: "G".into(),
        role: RoomRole::User,
        external_user_id: Some("ext-1".into()),
        is_permanent: false,
        expires_at: at(0) + Duration::seconds(10),
        used_at: None,
        revoked_at: None,
        created_by: None,
        created_at: at(0),
    };
    s.create_link(account, &once, &by(at(0))).await.unwrap();
    s.use_link(account, once.id, &by(at(100))).await.unwrap();
    assert_eq!(
        gone(s.use_link(account, once.id, &by(at(200))).await),
        Gone::UsedUp
    );
    let forever = AccessLink {
        id: Uuid::now_v7(),
        is_permanent: true,
        ..once.clone()
    };
    s.create_link(account, &forever, &by(at(0))).await.unwrap();
    for t in [100, 200, 300] {
        s.use_link(account, forever.id, &by(at(t))).await.unwrap();
    }
    assert_eq!(
        gone(s.use_link(account, forever.id, &by(at(10_000))).await),
        Gone::Expired
    );
    let other = new_account(&*s).await;
    assert_not_found(
        s.use_link(other, forever.id, &by(at(1))).await,
        "access link",
    );
    let listed = s
        .list_links(account, room.id, first_page(10))
        .await
        .unwrap();
    assert_eq!(listed.items.len(), 2);
    assert!(listed.items[0].used_at.is_some());
}
