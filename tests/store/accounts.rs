//! Accounts, API keys, settings and server state.

use std::collections::BTreeMap;
use std::sync::Arc;

use roster::domain::account::{Account, Scope};
use roster::domain::settings::{CustomFieldDef, FieldType};
use roster::store::{Page, SigningKeyRecord, Store, StoreError};
use uuid::Uuid;

use crate::harness::*;

pub async fn an_account_and_its_first_key_round_trip(s: Arc<dyn Store>) {
    let account = Account {
        id: Uuid::now_v7(),
        name: "Acme Ltd".into(),
        created_at: at(123),
    };
    let key = new_key("first key", at(123));
    s.create_account(&account, &key, &by(at(0))).await.unwrap();

    let got = s.get_account(account.id).await.unwrap();
    assert_eq!(
        (got.id, got.name.as_str(), got.created_at),
        (account.id, "Acme Ltd", at(123))
    );
    assert!(
        s.get_settings(account.id)
            .await
            .unwrap()
            .custom_fields
            .is_empty()
    );

    let keys = s.list_api_keys(account.id, first_page(10)).await.unwrap();
    assert_eq!(keys.items.len(), 1);
    assert!(keys.next.is_none());
    let k = &keys.items[0];
    assert_eq!(
        (k.id, k.name.as_str(), k.scope, k.created_at, k.last_used_at),
        (key.id, "first key", Scope::Full, at(123), None)
    );

    let auth = s
        .api_key_for_auth(key.id)
        .await
        .unwrap()
        .expect("the key authenticates");
    assert_eq!(
        (auth.id, auth.account_id, auth.scope),
        (key.id, account.id, Scope::Full)
    );
    assert_eq!(auth.secret_hash, key.secret_hash);

    // The same id again is a clash, and its key is not written either.
    let again = new_key("second key", at(200));
    assert_conflict(s.create_account(&account, &again, &by(at(0))).await, "id");
    assert!(s.api_key_for_auth(again.id).await.unwrap().is_none());

    assert_not_found(s.get_account(Uuid::now_v7()).await, "account");
    assert_not_found(s.get_settings(Uuid::now_v7()).await, "account");
}

pub async fn accounts_are_listed_by_id_in_pages(s: Arc<dyn Store>) {
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(new_account(&*s).await);
    }
    let first = s.list_accounts(first_page(2)).await.unwrap();
    assert_eq!(
        first.items.iter().map(|a| a.id).collect::<Vec<_>>(),
        sorted(ids.clone())[..2]
    );
    let rest = s
        .list_accounts(Page {
            limit: 2,
            after: first.next,
        })
        .await
        .unwrap();
    assert_eq!(
        rest.items.iter().map(|a| a.id).collect::<Vec<_>>(),
        sorted(ids)[2..]
    );
    assert!(rest.next.is_none());
}

pub async fn api_keys_are_listed_revoked_and_looked_up(s: Arc<dyn Store>) {
    let account = new_account(&*s).await;
    let other = new_account(&*s).await;
    let mut read_key = new_key("reader", at(50));
    read_key.scope = Scope::Read;
    let spare = new_key("spare", at(60));
    s.create_api_key(account, &read_key, &by(at(0)))
        .await
        .unwrap();
    s.create_api_key(account, &spare, &by(at(0))).await.unwrap();

    let first = s.list_api_keys(account, first_page(2)).await.unwrap();
    assert_eq!(first.items.len(), 2);
    let rest = s
        .list_api_keys(
            account,
            Page {
                limit: 2,
                after: first.next,
            },
        )
        .await
        .unwrap();
    assert_eq!(rest.items.len(), 1);
    assert!(rest.next.is_none());
    let all: Vec<Uuid> = first
        .items
        .iter()
        .chain(&rest.items)
        .map(|k| k.id)
        .collect();
    assert!(all.windows(2).all(|w| w[0] < w[1]), "keys are listed by id");
    assert!(all.contains(&read_key.id) && all.contains(&spare.id));
    let listed = first
        .items
        .iter()
        .chain(&rest.items)
        .find(|k| k.id == read_key.id)
        .unwrap();
    assert_eq!(
        (listed.name.as_str(), listed.scope),
        ("reader", Scope::Read)
    );

    s.touch_api_key(read_key.id, at(70)).await.unwrap();
    let listed = s.list_api_keys(account, first_page(10)).await.unwrap();
    let touched = listed.items.iter().find(|k| k.id == read_key.id).unwrap();
    assert_eq!(touched.last_used_at, Some(at(70)));
    let auth = s.api_key_for_auth(read_key.id).await.unwrap().unwrap();
    assert_eq!((auth.account_id, auth.scope), (account, Scope::Read));

    // Another account cannot revoke it.
    assert_not_found(
        s.revoke_api_key(other, spare.id, &by(at(80))).await,
        "api key",
    );
    assert!(s.api_key_for_auth(spare.id).await.unwrap().is_some());

    s.revoke_api_key(account, spare.id, &by(at(80)))
        .await
        .unwrap();
    assert!(s.api_key_for_auth(spare.id).await.unwrap().is_none());
    let listed = s.list_api_keys(account, first_page(10)).await.unwrap();
    assert_eq!(listed.items.len(), 2);
    assert!(listed.items.iter().all(|k| k.id != spare.id));
    assert_not_found(
        s.revoke_api_key(account, spare.id, &by(at(90))).await,
        "api key",
    );
    assert_not_found(
        s.revoke_api_key(account, Uuid::now_v7(), &by(at(90))).await,
        "api key",
    );
    assert!(s.api_key_for_auth(Uuid::now_v7()).await.unwrap().is_none());
}

pub async fn custom_field_declarations_are_changed_atomically(s: Arc<dyn Store>) {
    let account = new_account(&*s).await;
    let team = CustomFieldDef {
        field_type: FieldType::String,
        required: false,
        max_length: Some(40),
        private: true,
    };
    let level = CustomFieldDef {
        field_type: FieldType::Number,
        required: true,
        max_length: None,
        private: false,
    };
    let change = BTreeMap::from([
        ("team".to_owned(), Some(team.clone())),
        ("level".to_owned(), Some(level.clone())),
    ]);
    let settings = s
        .update_custom_fields(account, change, &by(at(0)))
        .await
        .unwrap();
    assert_eq!(
        settings.custom_fields,
        BTreeMap::from([
            ("team".to_owned(), team.clone()),
            ("level".to_owned(), level)
        ])
    );
    assert_eq!(s.get_settings(account).await.unwrap(), settings);

    let settings = s
        .update_custom_fields(
            account,
            BTreeMap::from([("level".to_owned(), None)]),
            &by(at(0)),
        )
        .await
        .unwrap();
    assert_eq!(
        settings.custom_fields,
        BTreeMap::from([("team".to_owned(), team.clone())])
    );

    // A refused change leaves the declarations as they were.
    let bad = BTreeMap::from([
        ("ok".to_owned(), Some(team.clone())),
        ("not ok!".to_owned(), Some(team)),
    ]);
    assert!(matches!(
        s.update_custom_fields(account, bad, &by(at(0))).await,
        Err(StoreError::Invalid(_))
    ));
    assert_eq!(s.get_settings(account).await.unwrap(), settings);

    assert_not_found(
        s.update_custom_fields(Uuid::now_v7(), BTreeMap::new(), &by(at(0)))
            .await,
        "account",
    );
}

pub async fn server_state_and_signing_keys_are_kept(s: Arc<dyn Store>) {
    assert_eq!(s.get_state("node").await.unwrap(), None);
    assert!(s.put_state_if_absent("node", "first").await.unwrap());
    assert!(!s.put_state_if_absent("node", "second").await.unwrap());
    assert_eq!(s.get_state("node").await.unwrap().as_deref(), Some("first"));

    let older = SigningKeyRecord {
        kid: "k1".into(),
        private_der: vec![0, 1, 2, 255],
        public_x: "x1".into(),
        // A whole second sorts before a later instant of the same second.
        created_at: t0(),
        retired_at: Some(at(999)),
    };
    let newer = SigningKeyRecord {
        kid: "k2".into(),
        private_der: vec![9; 48],
        public_x: "x2".into(),
        created_at: at(500),
        retired_at: None,
    };
    s.insert_signing_key(&newer, &by(at(0))).await.unwrap();
    s.insert_signing_key(&older, &by(at(0))).await.unwrap();
    let keys = s.signing_keys().await.unwrap();
    let got: Vec<_> = keys
        .iter()
        .map(|k| {
            (
                k.kid.as_str(),
                k.private_der.clone(),
                k.public_x.as_str(),
                k.created_at,
                k.retired_at,
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("k1", older.private_der.clone(), "x1", t0(), Some(at(999))),
            ("k2", newer.private_der.clone(), "x2", at(500), None),
        ]
    );
    assert_conflict(s.insert_signing_key(&older, &by(at(0))).await, "id");
    s.ping().await.unwrap();
}
