//! The sessions part of the contract: login lookups, refresh rotation and
//! reuse, ending sessions, password changes, the per-user token cap,
//! revoking everything before a moment, and signing-key rotation.

use std::sync::Arc;

use roster::store::sessions::{LoginName, NewSession, NextTokens, Refreshed, Revoked, SessionRef};
use roster::store::{Store, TokenCheck, TokenRecord};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use crate::harness::*;

async fn valid(s: &dyn Store, account: Uuid, user: Uuid, jti: Uuid, now: OffsetDateTime) -> bool {
    matches!(
        s.check_user_token(account, user, jti, now).await.unwrap(),
        TokenCheck::Valid(_)
    )
}

fn next(user: Uuid, hash: &[u8], issued: OffsetDateTime) -> NextTokens {
    NextTokens {
        refresh_hash: hash.to_vec(),
        refresh_expires_at: issued + Duration::days(30),
        access: TokenRecord {
            id: Uuid::now_v7(),
            user_id: user,
            kind: "access",
            room_id: None,
            created_at: issued,
            expires_at: issued + Duration::minutes(15),
        },
    }
}

async fn open_session(
    s: &dyn Store,
    account: Uuid,
    user: Uuid,
    hash: &[u8],
    at: OffsetDateTime,
) -> (Uuid, NextTokens) {
    let tokens = next(user, hash, at);
    let id = Uuid::now_v7();
    s.create_session(
        account,
        &NewSession {
            id,
            user_id: user,
            created_at: at,
            tokens: tokens.clone(),
        },
        &by(at),
    )
    .await
    .unwrap();
    (id, tokens)
}

pub async fn users_are_found_by_each_login_name_within_their_account(s: Arc<dyn Store>) {
    let account = new_account(&*s).await;
    let mut u = new_user();
    u.username = Some("Ålice".into());
    u.email = Some("Alice@Example.com".into());
    u.custom_id = Some("alice-1".into());
    u.password_hash = Some("$argon2id$fake".into());
    create(&*s, account, &u).await.unwrap();
    for name in [
        LoginName::Username("åLICE".into()),
        LoginName::Email("alice@example.COM".into()),
        LoginName::CustomId("alice-1".into()),
    ] {
        let found = s.find_login(account, &name).await.unwrap().expect("found");
        assert_eq!(found.user.id, u.id);
        assert_eq!(found.password_hash.as_deref(), Some("$argon2id$fake"));
    }
    assert!(
        s.find_login(account, &LoginName::CustomId("ALICE-1".into()))
            .await
            .unwrap()
            .is_none(),
        "custom ids are case-sensitive"
    );
    let other = new_account(&*s).await;
    assert!(
        s.find_login(other, &LoginName::Username("ålice".into()))
            .await
            .unwrap()
            .is_none()
    );
    s.set_password_hash(account, u.id, "$argon2id$new", at(20))
        .await
        .unwrap();
    assert_eq!(
        s.password_hash(account, u.id).await.unwrap().as_deref(),
        Some("$argon2id$new")
    );
    assert_not_found(s.password_hash(other, u.id).await, "user");
    assert_not_found(s.set_password_hash(other, u.id, "x", at(30)).await, "user");
}

pub async fn a_refresh_token_is_spent_once_and_its_reuse_revokes_the_session(s: Arc<dyn Store>) {
    let account = new_account(&*s).await;
    let u = new_user();
    create(&*s, account, &u).await.unwrap();
    let (_, first) = open_session(&*s, account, u.id, b"r1", at(100)).await;
    let (_, other) = open_session(&*s, account, u.id, b"o1", at(100)).await;
    assert_eq!(
        s.refresh_token_owner(account, b"r1").await.unwrap(),
        Some(u.id)
    );
    assert_eq!(
        s.refresh_token_owner(new_account(&*s).await, b"r1")
            .await
            .unwrap(),
        None
    );
    assert!(valid(&*s, account, u.id, first.access.id, at(200)).await);

    let second = next(u.id, b"r2", at(1_000));
    match s
        .rotate_refresh_token(account, b"r1", &second, &by(at(1_000)))
        .await
        .unwrap()
    {
        Refreshed::Rotated(user) => assert_eq!(user.id, u.id),
        other => panic!("{other:?}"),
    }
    assert!(valid(&*s, account, u.id, second.access.id, at(1_100)).await);
    // A refresh for someone else's token, or an unknown one, changes nothing.
    let stranger = next(Uuid::now_v7(), b"x", at(1_200));
    assert!(matches!(
        s.rotate_refresh_token(account, b"r2", &stranger, &by(at(1_200)))
            .await
            .unwrap(),
        Refreshed::Invalid
    ));
    assert!(matches!(
        s.rotate_refresh_token(
            account,
            b"nope",
            &next(u.id, b"y", at(1_200)),
            &by(at(1_200))
        )
        .await
        .unwrap(),
        Refreshed::Invalid
    ));

    match s
        .rotate_refresh_token(
            account,
            b"r1",
            &next(u.id, b"r3", at(2_000)),
            &by(at(2_000)),
        )
        .await
        .unwrap()
    {
        Refreshed::Reused { user_id, revoked } => {
            assert_eq!(user_id, u.id);
            assert_eq!(
                sorted(revoked.tokens),
                sorted(vec![first.access.id, second.access.id])
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(!valid(&*s, account, u.id, first.access.id, at(2_100)).await);
    assert!(!valid(&*s, account, u.id, second.access.id, at(2_100)).await);
    assert!(matches!(
        s.rotate_refresh_token(
            account,
            b"r2",
            &next(u.id, b"r4", at(2_200)),
            &by(at(2_200))
        )
        .await
        .unwrap(),
        Refreshed::Invalid
    ));
    assert_eq!(
        s.refresh_token_owner(account, b"r3").await.unwrap(),
        None,
        "nothing new was recorded"
    );
    // The other session lives on.
    assert!(valid(&*s, account, u.id, other.access.id, at(2_100)).await);
    assert!(matches!(
        s.rotate_refresh_token(
            account,
            b"o1",
            &next(u.id, b"o2", at(2_300)),
            &by(at(2_300))
        )
        .await
        .unwrap(),
        Refreshed::Rotated(_)
    ));
}

pub async fn a_refresh_token_expires_and_dies_with_its_user_state(s: Arc<dyn Store>) {
    let account = new_account(&*s).await;
    let u = new_user();
    create(&*s, account, &u).await.unwrap();
    open_session(&*s, account, u.id, b"r1", at(100)).await;
    let end = at(100) + Duration::days(30);
    assert!(matches!(
        s.rotate_refresh_token(account, b"r1", &next(u.id, b"r2", end), &by(end))
            .await
            .unwrap(),
        Refreshed::Invalid
    ));
    open_session(&*s, account, u.id, b"d1", at(200)).await;
    s.set_user_active(account, u.id, false, &by(at(300)))
        .await
        .unwrap();
    s.set_user_active(account, u.id, true, &by(at(400)))
        .await
        .unwrap();
    assert!(matches!(
        s.rotate_refresh_token(account, b"d1", &next(u.id, b"d2", at(500)), &by(at(500)))
            .await
            .unwrap(),
        Refreshed::Invalid
    ));
    // Concurrent rotations of one token: exactly one wins, the other is reuse.
    open_session(&*s, account, u.id, b"c1", at(600)).await;
    let (na, nb) = (next(u.id, b"ca", at(700)), next(u.id, b"cb", at(700)));
    let when = by(at(700));
    let (a, b) = tokio::join!(
        s.rotate_refresh_token(account, b"c1", &na, &when),
        s.rotate_refresh_token(account, b"c1", &nb, &when),
    );
    let outcomes = [a.unwrap(), b.unwrap()];
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| matches!(o, Refreshed::Rotated(_)))
            .count(),
        1,
        "{outcomes:?}"
    );
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| matches!(o, Refreshed::Reused { .. }))
            .count(),
        1,
        "{outcomes:?}"
    );
}

pub async fn ending_a_session_revokes_its_tokens_and_nothing_else(s: Arc<dyn Store>) {
    let account = new_account(&*s).await;
    let u = new_user();
    let user_token = token_for(&u, t0());
    s.create_user(account, &u, &user_token, &by(t0()))
        .await
        .unwrap();
    let (_, one) = open_session(&*s, account, u.id, b"one", at(100)).await;
    let (_, two) = open_session(&*s, account, u.id, b"two", at(100)).await;
    let r = s
        .end_session(account, &SessionRef::Refresh(b"one".to_vec()), &by(at(200)))
        .await
        .unwrap();
    assert_eq!(
        r,
        Revoked {
            user_id: Some(u.id),
            tokens: vec![one.access.id]
        }
    );
    assert!(!valid(&*s, account, u.id, one.access.id, at(300)).await);
    assert!(valid(&*s, account, u.id, two.access.id, at(300)).await);
    s.end_session(account, &SessionRef::Token(two.access.id), &by(at(400)))
        .await
        .unwrap();
    assert!(!valid(&*s, account, u.id, two.access.id, at(500)).await);
    assert!(matches!(
        s.rotate_refresh_token(account, b"two", &next(u.id, b"t2", at(600)), &by(at(600)))
            .await
            .unwrap(),
        Refreshed::Invalid
    ));
    // A user token has no session: it is revoked alone.
    assert!(valid(&*s, account, u.id, user_token.id, at(500)).await);
    s.end_session(account, &SessionRef::Token(user_token.id), &by(at(600)))
        .await
        .unwrap();
    assert!(!valid(&*s, account, u.id, user_token.id, at(700)).await);
    let other = new_account(&*s).await;
    assert_not_found(
        s.end_session(other, &SessionRef::Refresh(b"two".to_vec()), &by(at(800)))
            .await,
        "session",
    );
}

pub async fn a_password_change_keeps_one_session_and_ends_the_others(s: Arc<dyn Store>) {
    let account = new_account(&*s).await;
    let mut u = new_user();
    u.require_password_change = true;
    u.password_hash = Some("old".into());
    let user_token = token_for(&u, t0());
    s.create_user(account, &u, &user_token, &by(t0()))
        .await
        .unwrap();
    let (_, keep) = open_session(&*s, account, u.id, b"keep", at(100)).await;
    let (_, other) = open_session(&*s, account, u.id, b"other", at(100)).await;
    let r = s
        .change_password(
            account,
            u.id,
            "new",
            true,
            Some(keep.access.id),
            &by(at(200)),
        )
        .await
        .unwrap();
    assert_eq!(r.tokens, vec![other.access.id]);
    assert!(valid(&*s, account, u.id, keep.access.id, at(300)).await);
    assert!(!valid(&*s, account, u.id, other.access.id, at(300)).await);
    assert!(valid(&*s, account, u.id, user_token.id, at(300)).await);
    let after = s.get_user(account, u.id).await.unwrap();
    assert!(!after.require_password_change);
    assert_eq!(
        s.password_hash(account, u.id).await.unwrap().as_deref(),
        Some("new")
    );
    // Keeping nothing ends every session; not revoking keeps them all.
    let (_, third) = open_session(&*s, account, u.id, b"third", at(400)).await;
    s.change_password(account, u.id, "newer", false, None, &by(at(500)))
        .await
        .unwrap();
    assert!(valid(&*s, account, u.id, third.access.id, at(600)).await);
    s.change_password(account, u.id, "newest", true, None, &by(at(700)))
        .await
        .unwrap();
    assert!(!valid(&*s, account, u.id, third.access.id, at(800)).await);
    assert!(!valid(&*s, account, u.id, keep.access.id, at(800)).await);
    // A password set through a user patch (by someone else) ends every
    // login session too, in the same transaction, and keeps the flag the
    // patch sets; `user` tokens stay.
    let (_, fourth) = open_session(&*s, account, u.id, b"fourth", at(810)).await;
    let patch = roster::domain::user::UserPatch {
        password_hash: Some("set-by-admin".into()),
        require_password_change: Some(true),
        ..Default::default()
    };
    let (patched, r) = s
        .update_user(account, u.id, &patch, &by(at(820)), None)
        .await
        .unwrap();
    assert_eq!(r.tokens, vec![fourth.access.id]);
    assert!(patched.has_password && patched.require_password_change);
    assert!(!valid(&*s, account, u.id, fourth.access.id, at(830)).await);
    assert!(valid(&*s, account, u.id, user_token.id, at(830)).await);
    assert_eq!(
        s.password_hash(account, u.id).await.unwrap().as_deref(),
        Some("set-by-admin")
    );
    assert_not_found(
        s.change_password(new_account(&*s).await, u.id, "x", true, None, &by(at(900)))
            .await,
        "user",
    );
}

pub async fn issuing_beyond_the_cap_revokes_the_oldest_live_tokens(s: Arc<dyn Store>) {
    let account = new_account(&*s).await;
    let u = new_user();
    let first = token_for(&u, at(0));
    s.create_user(account, &u, &first, &by(at(0)))
        .await
        .unwrap();
    let mut ids = vec![first.id];
    for i in 1..3 {
        let t = token_for(&u, at(i * 10));
        let r = s
            .issue_user_token(account, &t, 3, &by(at(0)))
            .await
            .unwrap();
        assert!(r.tokens.is_empty());
        ids.push(t.id);
    }
    let fourth = token_for(&u, at(100));
    let r = s
        .issue_user_token(account, &fourth, 3, &by(at(0)))
        .await
        .unwrap();
    assert_eq!(r.tokens, vec![ids[0]]);
    assert!(!valid(&*s, account, u.id, ids[0], at(200)).await);
    ids.push(fourth.id);
    let listed: Vec<Uuid> = s
        .list_user_tokens(account, u.id, at(200), first_page(10))
        .await
        .unwrap()
        .items
        .iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(listed, ids[1..].to_vec());
    // A revoked token does not count.
    let info = s
        .revoke_user_token(account, u.id, ids[1], &by(at(300)))
        .await
        .unwrap();
    assert_eq!(info.revoked_at, Some(at(300)));
    let again = s
        .revoke_user_token(account, u.id, ids[1], &by(at(400)))
        .await
        .unwrap();
    assert_eq!(
        again.revoked_at,
        Some(at(300)),
        "revoking again changes nothing"
    );
    let fifth = token_for(&u, at(500));
    assert!(
        s.issue_user_token(account, &fifth, 3, &by(at(0)))
            .await
            .unwrap()
            .tokens
            .is_empty()
    );
    // Pages.
    let p = s
        .list_user_tokens(account, u.id, at(600), first_page(2))
        .await
        .unwrap();
    assert_eq!(p.items.len(), 2);
    assert!(p.next.is_some());

    let other = new_account(&*s).await;
    assert_not_found(
        s.issue_user_token(other, &token_for(&u, at(1)), 3, &by(at(0)))
            .await,
        "user",
    );
    assert_not_found(
        s.revoke_user_token(other, u.id, ids[2], &by(at(1))).await,
        "token",
    );
    assert_not_found(
        s.list_user_tokens(other, u.id, at(1), first_page(2)).await,
        "user",
    );
}

pub async fn the_token_cap_holds_under_concurrent_issues(s: Arc<dyn Store>) {
    let account = new_account(&*s).await;
    let u = new_user();
    create(&*s, account, &u).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..20 {
        let s = s.clone();
        let t = token_for(&u, at(100 + i));
        tasks.push(tokio::spawn(async move {
            s.issue_user_token(account, &t, 5, &by(at(0)))
                .await
                .unwrap()
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let live = s
        .list_user_tokens(account, u.id, at(1_000), first_page(100))
        .await
        .unwrap();
    assert_eq!(live.items.len(), 5);
}

pub async fn revoking_everything_before_a_moment_ends_tokens_and_sessions(s: Arc<dyn Store>) {
    let account = new_account(&*s).await;
    let u = new_user();
    let user_token = token_for(&u, t0());
    s.create_user(account, &u, &user_token, &by(t0()))
        .await
        .unwrap();
    let (_, session) = open_session(&*s, account, u.id, b"r1", at(100)).await;
    s.revoke_tokens_before(account, u.id, &by(at(200)))
        .await
        .unwrap();
    assert!(!valid(&*s, account, u.id, user_token.id, at(300)).await);
    assert!(!valid(&*s, account, u.id, session.access.id, at(300)).await);
    assert!(matches!(
        s.rotate_refresh_token(account, b"r1", &next(u.id, b"r2", at(300)), &by(at(300)))
            .await
            .unwrap(),
        Refreshed::Invalid
    ));
    assert!(
        s.list_user_tokens(account, u.id, at(300), first_page(10))
            .await
            .unwrap()
            .items
            .is_empty()
    );
    let later = token_for(&u, at(400));
    s.issue_user_token(account, &later, 100, &by(at(0)))
        .await
        .unwrap();
    assert!(valid(&*s, account, u.id, later.id, at(500)).await);
    assert_not_found(
        s.revoke_tokens_before(new_account(&*s).await, u.id, &by(at(600)))
            .await,
        "user",
    );
}

pub async fn rotating_the_signing_key_retires_the_others(s: Arc<dyn Store>) {
    let first = roster::tokens::generate_key(at(0)).unwrap();
    s.insert_signing_key(&first, &by(at(0))).await.unwrap();
    let second = roster::tokens::generate_key(at(100)).unwrap();
    s.rotate_signing_key(&second, &by(at(100))).await.unwrap();
    let keys = s.signing_keys().await.unwrap();
    let by = |kid: &str| keys.iter().find(|k| k.kid == kid).unwrap().clone();
    assert_eq!(by(&first.kid).retired_at, Some(at(100)));
    assert_eq!(by(&second.kid).retired_at, None);
    assert_eq!(by(&second.kid).private_der, second.private_der);
    assert_eq!(keys.iter().filter(|k| k.retired_at.is_none()).count(), 1);
}

pub async fn signup_settings_are_replaced_and_leave_the_rest_alone(s: Arc<dyn Store>) {
    use roster::domain::settings::{CustomFieldDef, FieldType, SignupSettings};
    let account = new_account(&*s).await;
    let before = s.get_settings(account).await.unwrap();
    assert_eq!(before.signup, SignupSettings::default());
    let mut change = std::collections::BTreeMap::new();
    change.insert(
        "team".to_owned(),
        Some(CustomFieldDef {
            field_type: FieldType::String,
            required: false,
            max_length: None,
            private: false,
        }),
    );
    s.update_custom_fields(account, change, &by(at(0)))
        .await
        .unwrap();
    let on = SignupSettings {
        enabled: true,
        captcha: false,
    };
    let after = s
        .set_signup_settings(account, &on, &by(at(0)))
        .await
        .unwrap();
    assert_eq!(after.signup, on);
    assert!(after.custom_fields.contains_key("team"));
    assert_eq!(s.get_settings(account).await.unwrap(), after);
    assert_not_found(
        s.set_signup_settings(Uuid::now_v7(), &on, &by(at(0))).await,
        "account",
    );
}

fn mail(to: &str, at: OffsetDateTime) -> roster::store::sessions::OutboxMail {
    roster::store::sessions::OutboxMail {
        id: Uuid::now_v7(),
        account_id: None,
        to: to.into(),
        subject: "Hi".into(),
        body: "Hello".into(),
        created_at: at,
        attempts: 0,
    }
}

pub async fn the_outbox_is_claimed_once_retried_and_finished(s: Arc<dyn Store>) {
    let lease = Duration::minutes(2);
    let first = mail("a@example.com", at(0));
    let second = mail("b@example.com", at(10));
    s.enqueue_mail(&first).await.unwrap();
    s.enqueue_mail(&second).await.unwrap();
    assert!(
        s.claim_mail(at(-1), lease, 10).await.unwrap().is_empty(),
        "not yet due"
    );
    let claimed = s.claim_mail(at(100), lease, 1).await.unwrap();
    assert_eq!(claimed, vec![first.clone()]);
    // Claimed mail is not handed out again while its lease runs.
    let rest = s.claim_mail(at(200), lease, 10).await.unwrap();
    assert_eq!(
        rest.iter().map(|m| m.id).collect::<Vec<_>>(),
        vec![second.id]
    );
    s.finish_mail(first.id, at(300), Some(("refused", Some(at(10_000)))))
        .await
        .unwrap();
    s.finish_mail(second.id, at(300), None).await.unwrap();
    assert!(s.claim_mail(at(9_999), lease, 10).await.unwrap().is_empty());
    let retried = s.claim_mail(at(10_000), lease, 10).await.unwrap();
    assert_eq!(retried.len(), 1);
    assert_eq!((retried[0].id, retried[0].attempts), (first.id, 1));
    // Given up: never again; an expired lease hands the mail out again.
    s.finish_mail(first.id, at(10_100), Some(("refused", None)))
        .await
        .unwrap();
    assert!(
        s.claim_mail(at(10_000) + Duration::days(365), lease, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let third = mail("c@example.com", at(20_000));
    s.enqueue_mail(&third).await.unwrap();
    assert_eq!(s.claim_mail(at(20_000), lease, 10).await.unwrap().len(), 1);
    assert_eq!(
        s.claim_mail(at(20_000) + lease, lease, 10)
            .await
            .unwrap()
            .len(),
        1
    );
}

pub async fn a_reset_link_works_once_before_it_expires_and_ends_the_sessions(s: Arc<dyn Store>) {
    use roster::store::sessions::NewPasswordReset;
    let account = new_account(&*s).await;
    let mut u = new_user();
    u.password_hash = Some("old".into());
    u.require_password_change = true;
    create(&*s, account, &u).await.unwrap();
    let (_, session) = open_session(&*s, account, u.id, b"r1", at(100)).await;
    let reset = |hash: &[u8], created: OffsetDateTime| NewPasswordReset {
        hash: hash.to_vec(),
        user_id: u.id,
        created_at: created,
        expires_at: created + Duration::hours(1),
        mail: mail("u@example.com", created),
    };
    s.request_password_reset(account, &reset(b"one", at(200)), &by(at(0)))
        .await
        .unwrap();
    s.request_password_reset(account, &reset(b"two", at(200)), &by(at(0)))
        .await
        .unwrap();
    assert_eq!(
        s.claim_mail(at(300), Duration::minutes(1), 10)
            .await
            .unwrap()
            .len(),
        2
    );
    let other = new_account(&*s).await;
    assert_eq!(
        s.reset_password(other, b"one", "x", &by(at(300)))
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        s.reset_password(account, b"one", "new", &by(at(200) + Duration::hours(1)))
            .await
            .unwrap(),
        None,
        "expired"
    );
    let revoked = s
        .reset_password(account, b"one", "new", &by(at(400)))
        .await
        .unwrap()
        .expect("a live link");
    assert_eq!(revoked.tokens, vec![session.access.id]);
    assert!(!valid(&*s, account, u.id, session.access.id, at(500)).await);
    assert_eq!(
        s.password_hash(account, u.id).await.unwrap().as_deref(),
        Some("new")
    );
    assert!(
        !s.get_user(account, u.id)
            .await
            .unwrap()
            .require_password_change
    );
    assert_eq!(
        s.reset_password(account, b"one", "again", &by(at(500)))
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        s.reset_password(account, b"two", "again", &by(at(500)))
            .await
            .unwrap(),
        None,
        "a reset spends every other link of the user"
    );
}

pub async fn mail_and_verification_links_are_written_with_the_user(s: Arc<dyn Store>) {
    use roster::store::sessions::UserMail;
    let account = new_account(&*s).await;
    let mut u = new_user();
    u.email = Some("v@example.com".into());
    let with = UserMail {
        mails: vec![mail("v@example.com", at(10))],
        verification: Some((b"v1".to_vec(), at(10) + Duration::days(7))),
    };
    let created = s
        .create_user_with_mail(account, &u, &token_for(&u, at(10)), &by(at(10)), &with)
        .await
        .unwrap();
    assert_eq!(created.id, u.id);
    assert_eq!(
        s.claim_mail(at(20), Duration::minutes(1), 10)
            .await
            .unwrap()
            .len(),
        1
    );
    // A refused user writes no mail either.
    let mut clash = new_user();
    clash.email = Some("V@example.com".into());
    let other = UserMail {
        mails: vec![mail("x@example.com", at(30))],
        verification: Some((b"v2".to_vec(), at(30) + Duration::days(7))),
    };
    assert_conflict(
        s.create_user_with_mail(
            account,
            &clash,
            &token_for(&clash, at(30)),
            &by(at(30)),
            &other,
        )
        .await,
        "email",
    );
    assert!(
        s.claim_mail(at(40), Duration::minutes(1), 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        s.verify_email(account, b"v2", &by(at(40)))
            .await
            .unwrap()
            .map(|u| u.id),
        None
    );

    assert_eq!(
        s.verify_email(new_account(&*s).await, b"v1", &by(at(40)))
            .await
            .unwrap()
            .map(|u| u.id),
        None
    );
    let verified = s
        .verify_email(account, b"v1", &by(at(40)))
        .await
        .unwrap()
        .unwrap();
    assert!(verified.email_verified);
    assert!(
        s.verify_email(account, b"v1", &by(at(50)))
            .await
            .unwrap()
            .is_none(),
        "once"
    );

    // A link for an address the user no longer has verifies nothing.
    let mut w = new_user();
    w.email = Some("w@example.com".into());
    let link = UserMail {
        mails: vec![],
        verification: Some((b"w1".to_vec(), at(10) + Duration::days(7))),
    };
    s.create_user_with_mail(account, &w, &token_for(&w, at(10)), &by(at(10)), &link)
        .await
        .unwrap();
    let patch = roster::domain::user::UserPatch {
        email: Some(Some("w2@example.com".into())),
        ..Default::default()
    };
    s.update_user(account, w.id, &patch, &by(at(20)), None)
        .await
        .unwrap();
    assert!(
        s.verify_email(account, b"w1", &by(at(30)))
            .await
            .unwrap()
            .is_none()
    );
    assert!(!s.get_user(account, w.id).await.unwrap().email_verified);
}

pub async fn email_settings_are_replaced_and_leave_the_rest_alone(s: Arc<dyn Store>) {
    use roster::domain::settings::{EmailSettings, SignupSettings};
    let account = new_account(&*s).await;
    let signup = SignupSettings {
        enabled: true,
        captcha: true,
    };
    s.set_signup_settings(account, &signup, &by(at(0)))
        .await
        .unwrap();
    let after = s
        .set_email_settings(account, &EmailSettings { verify: true }, &by(at(0)))
        .await
        .unwrap();
    assert!(after.email.verify);
    assert_eq!(after.signup, signup);
    assert_eq!(s.get_settings(account).await.unwrap(), after);
}
