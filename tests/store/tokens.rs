//! User tokens: what makes one stop working, and that nothing revives it.

use std::sync::Arc;

use roster::store::{Store, TokenCheck};
use time::Duration;
use uuid::Uuid;

use crate::harness::*;

async fn valid(
    s: &dyn Store,
    account: Uuid,
    user: Uuid,
    jti: Uuid,
    now: time::OffsetDateTime,
) -> bool {
    match s.check_user_token(account, user, jti, now).await.unwrap() {
        TokenCheck::Valid(u) => {
            assert_eq!((u.id, u.account_id), (user, account));
            true
        }
        TokenCheck::Invalid => false,
    }
}

pub async fn deactivation_ends_tokens_and_reactivation_does_not_revive_them(s: Arc<dyn Store>) {
    let account = new_account(&*s).await;
    let u = new_user();
    // Issued at a whole second, as a JWT's `iat` says.
    let token = token_for(&u, t0());
    s.create_user(account, &u, &token, &by(t0())).await.unwrap();
    assert!(valid(&*s, account, u.id, token.id, at(100)).await);

    // Deactivated 300 ms later, within the same second.
    let off = s
        .set_user_active(account, u.id, false, &by(at(300)))
        .await
        .unwrap();
    assert_eq!(
        (off.active, off.deactivated_at, off.updated_at),
        (false, Some(at(300)), at(300))
    );
    assert!(!valid(&*s, account, u.id, token.id, at(400)).await);
    // Deactivating again keeps the first moment.
    let again = s
        .set_user_active(account, u.id, false, &by(at(500)))
        .await
        .unwrap();
    assert_eq!(again.deactivated_at, Some(at(300)));

    let on = s
        .set_user_active(account, u.id, true, &by(at(2_000)))
        .await
        .unwrap();
    assert_eq!(
        (on.active, on.deactivated_at, on.updated_at),
        (true, None, at(2_000))
    );
    assert_eq!(
        format!("{on:?}"),
        format!("{:?}", s.get_user(account, u.id).await.unwrap())
    );
    assert!(!valid(&*s, account, u.id, token.id, at(3_000)).await);

    assert_not_found(
        s.set_user_active(account, Uuid::now_v7(), false, &by(at(1)))
            .await,
        "user",
    );
}

pub async fn a_token_is_good_only_until_it_expires_and_only_for_its_user(s: Arc<dyn Store>) {
    let account = new_account(&*s).await;
    let u = new_user();
    let mut token = token_for(&u, t0());
    token.expires_at = t0() + Duration::days(1);
    s.create_user(account, &u, &token, &by(t0())).await.unwrap();
    let end = token.expires_at;

    assert!(
        valid(
            &*s,
            account,
            u.id,
            token.id,
            end - Duration::milliseconds(1)
        )
        .await
    );
    assert!(!valid(&*s, account, u.id, token.id, end).await);
    assert!(
        !valid(
            &*s,
            account,
            u.id,
            token.id,
            end + Duration::milliseconds(500)
        )
        .await
    );
    assert!(!valid(&*s, account, u.id, token.id, end + Duration::days(1)).await);

    let now = at(1_000);
    let other_user = new_user();
    create(&*s, account, &other_user).await.unwrap();
    assert!(!valid(&*s, account, other_user.id, token.id, now).await);
    assert!(!valid(&*s, account, u.id, Uuid::now_v7(), now).await);
    let other_account = new_account(&*s).await;
    assert!(!valid(&*s, other_account, u.id, token.id, now).await);
    assert!(valid(&*s, account, u.id, token.id, now).await);
}
