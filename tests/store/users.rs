//! Users: creation with everything that comes with it, uniqueness, limits,
//! listing, patching and erasure.

use std::sync::Arc;

use roster::domain::user::{MAX_BOTS, Status, UserFilter, UserPatch};
use roster::store::{Store, StoreError};
use serde_json::json;
use uuid::Uuid;

use crate::harness::*;

pub async fn a_user_round_trips_every_field(s: Arc<dyn Store>) {
    let account = new_account(&*s).await;
    let room = new_room(&*s, account, "Lobby", false).await;
    let mut u = new_user();
    u.room_id = Some(room.id);
    u.custom_id = Some("Cust-01_x".into());
    u.username = Some("Ännchen".into());
    u.name = Some("Anna Müller".into());
    u.nickname = Some("Anni".into());
    u.bio = Some("Line one\nline \"two\" 🎉".into());
    u.email = Some("Anna.Mueller@Example.com".into());
    u.email_verified = true;
    u.phone = Some("+79671234567".into());
    u.profile_picture = Some("https://example.com/a.png".into());
    u.link = Some("https://example.com/anna".into());
    u.status_message = Some("In a meeting".into());
    u.roles = vec!["user".into(), "admin".into()];
    u.metadata = object(
        json!({"plan": "pro", "n": 1.5, "list": [1, "two", null], "@private": {"note": "vip"}}),
    );
    u.tags = vec!["red".into(), "blue".into()];
    u.custom_fields = object(json!({"team": "core", "level": 3, "remote": true}));
    u.require_password_change = true;
    u.password_hash = Some("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into());

    let created = s
        .create_user(account, &u, &token_for(&u, at(10)), &by(at(10)))
        .await
        .unwrap();
    let got = s.get_user(account, u.id).await.unwrap();
    assert_eq!(
        format!("{created:?}"),
        format!("{got:?}"),
        "what create answers is what is stored"
    );
    assert_eq!(
        (
            got.id,
            got.account_id,
            got.room_id,
            got.custom_id.as_deref(),
            got.username.as_deref()
        ),
        (
            u.id,
            account,
            Some(room.id),
            Some("Cust-01_x"),
            Some("Ännchen")
        )
    );
    assert_eq!(
        (
            got.name.as_deref(),
            got.nickname.as_deref(),
            got.bio.as_deref(),
            got.email.as_deref()
        ),
        (
            Some("Anna Müller"),
            Some("Anni"),
            u.bio.as_deref(),
            Some("Anna.Mueller@Example.com")
        )
    );
    assert_eq!(
        (
            got.email_verified,
            got.phone.as_deref(),
            got.profile_picture.as_deref(),
            got.link.as_deref()
        ),
        (
            true,
            Some("+79671234567"),
            Some("https://example.com/a.png"),
            Some("https://example.com/anna")
        )
    );
    assert_eq!(
        (got.status, got.status_message.as_deref(), got.active),
        (Status::Offline, Some("In a meeting"), true)
    );
    assert_eq!(got.roles, vec!["user", "admin"]);
    assert_eq!(got.tags, vec!["red", "blue"]);
    assert_eq!(got.metadata, u.metadata);
    assert_eq!(got.custom_fields, u.custom_fields);
    assert_eq!(
        (got.require_password_change, got.has_password),
        (true, true)
    );
    assert_eq!(
        (
            got.created_at,
            got.updated_at,
            got.last_seen_at,
            got.deactivated_at
        ),
        (at(10), at(10), None, None)
    );

    // A bare user: every optional field empty, and created inactive.
    let mut bare = new_user();
    bare.active = false;
    let created = create(&*s, account, &bare).await.unwrap();
    let got = s.get_user(account, bare.id).await.unwrap();
    assert_eq!(format!("{created:?}"), format!("{got:?}"));
    assert_eq!(
        (got.active, got.deactivated_at, got.has_password),
        (false, Some(at(10)), false)
    );
    assert!(
        got.custom_id.is_none()
            && got.username.is_none()
            && got.email.is_none()
            && got.room_id.is_none()
    );
    assert!(got.metadata.is_empty() && got.tags.is_empty() && got.custom_fields.is_empty());

    assert_not_found(s.get_user(account, Uuid::now_v7()).await, "user");
}

pub async fn unique_clashes_name_the_field_and_write_nothing(s: Arc<dyn Store>) {
    let account = new_account(&*s).await;
    let room = new_room(&*s, account, "Lobby", false).await;
    let mut first = new_user();
    first.custom_id = Some("alice".into());
    first.username = Some("Alice".into());
    first.email = Some("Alice@Example.com".into());
    first.room_id = Some(room.id);
    create(&*s, account, &first).await.unwrap();

    let attempt = |f: &dyn Fn(&mut roster::domain::user::NewUser)| {
        let mut u = new_user();
        u.room_id = Some(room.id);
        u.tags = vec!["late".into()];
        f(&mut u);
        u
    };
    let clashes = [
        (
            attempt(&|u| u.custom_id = Some("alice".into())),
            "custom_id",
        ),
        (attempt(&|u| u.username = Some("aLICE".into())), "username"),
        (
            attempt(&|u| u.email = Some("alice@EXAMPLE.COM".into())),
            "email",
        ),
    ];
    for (u, field) in &clashes {
        let token = token_for(u, at(10));
        assert_conflict(s.create_user(account, u, &token, &by(at(10))).await, field);
        assert_not_found(s.get_user(account, u.id).await, "user");
        assert!(matches!(
            s.check_user_token(account, u.id, token.id, at(20))
                .await
                .unwrap(),
            roster::store::TokenCheck::Invalid
        ));
    }
    assert_eq!(
        user_ids(&*s, account, &UserFilter::default()).await,
        vec![first.id]
    );
    let late = UserFilter {
        tag: Some("late".into()),
        ..Default::default()
    };
    assert!(user_ids(&*s, account, &late).await.is_empty());
    let in_room = UserFilter {
        room_id: Some(room.id),
        ..Default::default()
    };
    assert_eq!(user_ids(&*s, account, &in_room).await, vec![first.id]);

    // A patch that clashes is refused the same way and changes nothing.
    let second = new_user();
    create(&*s, account, &second).await.unwrap();
    for (patch, field) in [
        (
            UserPatch {
                custom_id: Some(Some("alice".into())),
                name: Some(Some("X".into())),
                ..Default::default()
            },
            "custom_id",
        ),
        (
            UserPatch {
                username: Some(Some("ALICE".into())),
                name: Some(Some("X".into())),
                ..Default::default()
            },
            "username",
        ),
        (
            UserPatch {
                email: Some(Some("ALICE@example.com".into())),
                name: Some(Some("X".into())),
                ..Default::default()
            },
            "email",
        ),
    ] {
        assert_conflict(
            s.update_user(account, second.id, &patch, &by(at(30)), None)
                .await,
            field,
        );
    }
    let unchanged = s.get_user(account, second.id).await.unwrap();
    assert_eq!(
        (unchanged.name, unchanged.custom_id, unchanged.updated_at),
        (None, None, at(10))
    );
}

pub async fn an_unknown_room_is_not_found_and_nothing_is_written(s: Arc<dyn Store>) {
    let account = new_account(&*s).await;
    let mut u = new_user();
    u.room_id = Some(Uuid::now_v7());
    u.custom_id = Some("bob".into());
    u.tags = vec!["t".into()];
    assert_not_found(create(&*s, account, &u).await, "room");
    assert_not_found(s.get_user(account, u.id).await, "user");
    assert!(
        user_ids(&*s, account, &UserFilter::default())
            .await
            .is_empty()
    );
    // Its custom_id is still free.
    u.room_id = None;
    create(&*s, account, &u).await.unwrap();
}

fn bot() -> roster::domain::user::NewUser {
    let mut u = new_user();
    u.roles = vec!["bot".into()];
    u
}

pub async fn the_twenty_sixth_bot_is_refused(s: Arc<dyn Store>) {
    let account = new_account(&*s).await;
    let other = new_account(&*s).await;
    let mut bots = Vec::new();
    for _ in 0..MAX_BOTS {
        let b = bot();
        create(&*s, account, &b).await.unwrap();
        bots.push(b.id);
    }
    let mut extra = bot();
    extra.custom_id = Some("bot-26".into());
    assert_conflict(create(&*s, account, &extra).await, "roles");
    assert_not_found(s.get_user(account, extra.id).await, "user");
    let bot_role = UserFilter {
        role: Some("bot".into()),
        ..Default::default()
    };
    assert_eq!(user_ids(&*s, account, &bot_role).await.len(), 25);

    // Nor can a user become one, though a bot may keep being one.
    let human = new_user();
    create(&*s, account, &human).await.unwrap();
    let to_bot = UserPatch {
        roles: Some(vec!["user".into(), "bot".into()]),
        ..Default::default()
    };
    assert_conflict(
        s.update_user(account, human.id, &to_bot, &by(at(20)), None)
            .await,
        "roles",
    );
    assert_eq!(
        s.get_user(account, human.id).await.unwrap().roles,
        vec!["user"]
    );
    let (still, _) = s
        .update_user(account, bots[0], &to_bot, &by(at(20)), None)
        .await
        .unwrap();
    assert_eq!(still.roles, vec!["user", "bot"]);

    // The cap is per account, and a freed place can be taken.
    create(&*s, other, &bot()).await.unwrap();
    s.delete_user(account, bots[1], &by(t0())).await.unwrap();
    create(&*s, account, &extra).await.unwrap();
    assert_conflict(
        s.update_user(account, human.id, &to_bot, &by(at(30)), None)
            .await,
        "roles",
    );
}

pub async fn the_bot_cap_holds_under_concurrent_writes(s: Arc<dyn Store>) {
    let account = new_account(&*s).await;
    let humans: Vec<_> = (0..5).map(|_| new_user()).collect();
    for h in &humans {
        create(&*s, account, h).await.unwrap();
    }
    let to_bot = UserPatch {
        roles: Some(vec!["bot".into()]),
        ..Default::default()
    };
    let creates = (0..30).map(|_| {
        let s = s.clone();
        tokio::spawn(async move { create(&*s, account, &bot()).await.map(|_| ()) })
    });
    let patches = humans.iter().map(|h| {
        let (s, id, patch) = (s.clone(), h.id, to_bot.clone());
        tokio::spawn(async move {
            s.update_user(account, id, &patch, &by(at(20)), None)
                .await
                .map(|_| ())
        })
    });
    let results = futures::future::join_all(creates.chain(patches).collect::<Vec<_>>()).await;
    let mut ok = 0;
    for r in results {
        match r.unwrap() {
            Ok(()) => ok += 1,
            Err(StoreError::Conflict { field, .. }) => assert_eq!(field, "roles"),
            Err(e) => panic!("unexpected error: {e:?}"),
        }
    }
    assert_eq!(ok, 25);
    let bot_role = UserFilter {
        role: Some("bot".into()),
        ..Default::default()
    };
    assert_eq!(user_ids(&*s, account, &bot_role).await.len(), 25);
}

pub async fn users_are_filtered_and_paged_by_id(s: Arc<dyn Store>) {
    let account = new_account(&*s).await;
    let other = new_account(&*s).await;
    let r1 = new_room(&*s, account, "R1", false).await;
    let r2 = new_room(&*s, account, "R2", false).await;

    let mut ann = new_user();
    ann.name = Some("Ann Lee".into());
    ann.tags = vec!["red".into(), "green".into()];
    ann.room_id = Some(r1.id);
    let mut annie = new_user();
    annie.username = Some("ANNIE".into());
    annie.roles = vec!["admin".into()];
    annie.tags = vec!["blue".into()];
    let mut zed = new_user();
    zed.email = Some("Zed@ANNEX.io".into());
    zed.room_id = Some(r2.id);
    let mut joanna = new_user();
    joanna.custom_id = Some("joANNa".into());
    joanna.room_id = Some(r1.id);
    joanna.tags = vec!["red".into()];
    let mut sale = new_user();
    sale.name = Some("50%_off".into());
    let mut plain = new_user();
    plain.name = Some("Bob".into());
    plain.roles = vec!["user".into(), "admin".into()];
    let everyone = [&ann, &annie, &zed, &joanna, &sale, &plain];
    for u in everyone {
        create(&*s, account, u).await.unwrap();
    }
    // Someone elsewhere who matches every filter.
    let mut elsewhere = new_user();
    elsewhere.name = Some("Ann".into());
    elsewhere.tags = vec!["red".into()];
    elsewhere.roles = vec!["admin".into()];
    create(&*s, other, &elsewhere).await.unwrap();

    let all = sorted(everyone.iter().map(|u| u.id).collect());
    assert_eq!(user_ids(&*s, account, &UserFilter::default()).await, all);

    let cases: Vec<(UserFilter, Vec<Uuid>)> = vec![
        (
            UserFilter {
                room_id: Some(r1.id),
                ..Default::default()
            },
            vec![ann.id, joanna.id],
        ),
        (
            UserFilter {
                room_id: Some(r2.id),
                ..Default::default()
            },
            vec![zed.id],
        ),
        (
            UserFilter {
                status: Some(Status::Offline),
                ..Default::default()
            },
            all.clone(),
        ),
        (
            UserFilter {
                status: Some(Status::Online),
                ..Default::default()
            },
            vec![],
        ),
        (
            UserFilter {
                role: Some("admin".into()),
                ..Default::default()
            },
            vec![annie.id, plain.id],
        ),
        (
            UserFilter {
                role: Some("user".into()),
                ..Default::default()
            },
            vec![ann.id, zed.id, joanna.id, sale.id, plain.id],
        ),
        (
            UserFilter {
                tag: Some("red".into()),
                ..Default::default()
            },
            vec![ann.id, joanna.id],
        ),
        (
            UserFilter {
                tag: Some("Red".into()),
                ..Default::default()
            },
            vec![],
        ),
        (
            UserFilter {
                q: Some("aNn".into()),
                ..Default::default()
            },
            vec![ann.id, annie.id, zed.id, joanna.id],
        ),
        (
            UserFilter {
                q: Some("%".into()),
                ..Default::default()
            },
            vec![sale.id],
        ),
        (
            UserFilter {
                q: Some("_".into()),
                ..Default::default()
            },
            vec![sale.id],
        ),
        (
            UserFilter {
                q: Some("0%_o".into()),
                ..Default::default()
            },
            vec![sale.id],
        ),
        (
            UserFilter {
                q: Some("nobody".into()),
                ..Default::default()
            },
            vec![],
        ),
        (
            UserFilter {
                room_id: Some(r1.id),
                tag: Some("green".into()),
                ..Default::default()
            },
            vec![ann.id],
        ),
        (
            UserFilter {
                q: Some("ann".into()),
                role: Some("admin".into()),
                ..Default::default()
            },
            vec![annie.id],
        ),
    ];
    for (filter, expected) in cases {
        assert_eq!(
            user_ids(&*s, account, &filter).await,
            sorted(expected),
            "filter {filter:?}"
        );
    }
}

pub async fn a_patch_sets_clears_replaces_and_merges(s: Arc<dyn Store>) {
    let account = new_account(&*s).await;
    let mut u = new_user();
    u.custom_id = Some("c1".into());
    u.username = Some("Carol".into());
    u.name = Some("Carol".into());
    u.nickname = Some("Caz".into());
    u.email = Some("carol@example.com".into());
    u.phone = Some("+79671234567".into());
    u.tags = vec!["a".into(), "b".into()];
    u.metadata = object(json!({"x": 1}));
    u.custom_fields = object(json!({"team": "red", "n": 1}));
    create(&*s, account, &u).await.unwrap();

    let patch = UserPatch {
        name: Some(Some("Caroline".into())),
        nickname: Some(None),
        username: Some(None),
        email: Some(None),
        phone: Some(None),
        email_verified: Some(true),
        link: Some(Some("https://example.com/c".into())),
        roles: Some(vec!["admin".into()]),
        tags: Some(vec!["c".into()]),
        metadata: Some(object(json!({"y": {"z": [1, 2]}}))),
        custom_fields: Some(object(json!({"n": 2, "remote": false}))),
        require_password_change: Some(true),
        ..Default::default()
    };
    let (patched, _) = s
        .update_user(account, u.id, &patch, &by(at(50)), None)
        .await
        .unwrap();
    let got = s.get_user(account, u.id).await.unwrap();
    assert_eq!(format!("{patched:?}"), format!("{got:?}"));
    assert_eq!(
        (
            got.name.as_deref(),
            got.nickname,
            got.username,
            got.email,
            got.phone
        ),
        (Some("Caroline"), None, None, None, None)
    );
    assert_eq!(
        (
            got.custom_id.as_deref(),
            got.link.as_deref(),
            got.email_verified
        ),
        (Some("c1"), Some("https://example.com/c"), true)
    );
    assert_eq!(
        (got.roles, got.tags),
        (vec!["admin".to_owned()], vec!["c".to_owned()])
    );
    assert_eq!(got.metadata, object(json!({"y": {"z": [1, 2]}})));
    assert_eq!(
        got.custom_fields,
        object(json!({"team": "red", "n": 2, "remote": false}))
    );
    assert_eq!(
        (got.require_password_change, got.created_at, got.updated_at),
        (true, at(10), at(50))
    );

    // Tags and roles were replaced where the filters look too.
    for (filter, expected) in [
        (
            UserFilter {
                tag: Some("a".into()),
                ..Default::default()
            },
            vec![],
        ),
        (
            UserFilter {
                tag: Some("c".into()),
                ..Default::default()
            },
            vec![u.id],
        ),
        (
            UserFilter {
                role: Some("user".into()),
                ..Default::default()
            },
            vec![],
        ),
        (
            UserFilter {
                role: Some("admin".into()),
                ..Default::default()
            },
            vec![u.id],
        ),
        (
            UserFilter {
                q: Some("carol@".into()),
                ..Default::default()
            },
            vec![],
        ),
    ] {
        assert_eq!(
            user_ids(&*s, account, &filter).await,
            expected,
            "filter {filter:?}"
        );
    }
    // The cleared username and email are free for someone else.
    let mut next = new_user();
    next.username = Some("carol".into());
    next.email = Some("CAROL@example.com".into());
    create(&*s, account, &next).await.unwrap();

    // An empty patch only touches updated_at.
    let (touched, _) = s
        .update_user(account, u.id, &UserPatch::default(), &by(at(60)), None)
        .await
        .unwrap();
    assert_eq!(
        (touched.name.as_deref(), touched.updated_at),
        (Some("Caroline"), at(60))
    );
    assert_eq!(
        touched.custom_fields,
        object(json!({"team": "red", "n": 2, "remote": false}))
    );

    assert_not_found(
        s.update_user(account, Uuid::now_v7(), &patch, &by(at(70)), None)
            .await,
        "user",
    );
}

pub async fn deleting_a_user_erases_everything_of_theirs(s: Arc<dyn Store>) {
    let account = new_account(&*s).await;
    let room = new_room(&*s, account, "Lobby", false).await;
    let mut u = new_user();
    u.room_id = Some(room.id);
    u.custom_id = Some("dora".into());
    u.username = Some("dora".into());
    u.email = Some("dora@example.com".into());
    u.tags = vec!["t".into()];
    u.roles = vec!["bot".into()];
    let token = token_for(&u, t0());
    s.create_user(account, &u, &token, &by(at(10)))
        .await
        .unwrap();
    let keep = new_user();
    create(&*s, account, &keep).await.unwrap();

    s.delete_user(account, u.id, &by(t0())).await.unwrap();
    assert_not_found(s.get_user(account, u.id).await, "user");
    assert_not_found(s.delete_user(account, u.id, &by(t0())).await, "user");
    assert!(matches!(
        s.check_user_token(account, u.id, token.id, at(20))
            .await
            .unwrap(),
        roster::store::TokenCheck::Invalid
    ));
    for filter in [
        UserFilter {
            room_id: Some(room.id),
            ..Default::default()
        },
        UserFilter {
            tag: Some("t".into()),
            ..Default::default()
        },
        UserFilter {
            role: Some("bot".into()),
            ..Default::default()
        },
    ] {
        assert!(
            user_ids(&*s, account, &filter).await.is_empty(),
            "filter {filter:?}"
        );
    }
    assert_eq!(
        user_ids(&*s, account, &UserFilter::default()).await,
        vec![keep.id]
    );
    assert_eq!(s.get_room(account, room.id).await.unwrap().id, room.id);

    // Their names are free again; and the same id may even come back clean.
    let again = u.clone();
    let back = create(&*s, account, &again).await.unwrap();
    assert_eq!(back.custom_id.as_deref(), Some("dora"));
}

pub async fn concurrent_creates_with_one_custom_id_let_exactly_one_through(s: Arc<dyn Store>) {
    let account = new_account(&*s).await;
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move {
                let mut u = new_user();
                u.custom_id = Some("same".into());
                u.tags = vec![format!("t{i}")];
                create(&*s, account, &u).await.map(|u| u.id)
            })
        })
        .collect();
    let mut winners = Vec::new();
    for r in futures::future::join_all(tasks).await {
        match r.unwrap() {
            Ok(id) => winners.push(id),
            Err(StoreError::Conflict { field, .. }) => assert_eq!(field, "custom_id"),
            Err(e) => panic!("unexpected error: {e:?}"),
        }
    }
    assert_eq!(winners.len(), 1);
    assert_eq!(
        user_ids(&*s, account, &UserFilter::default()).await,
        winners
    );
}
