//! The DynamoDB adapters against the real DynamoDB API (moto server, started by the harness),
//! each test on its own tables made from `infra/template.yaml`.

mod support;

use std::collections::HashSet;

use portal::adapters::dynamodb::{DynamoContacts, DynamoSessions};
use portal::domain::contact::{Contact, Login, NewContact};
use portal::domain::email::Email;
use portal::domain::lockout::{FailedSignIn, LockoutPolicy};
use portal::domain::session::Session;
use portal::domain::text::Username;
use portal::ports::{ContactStore, CreateContactError, SessionStore};
use support::moto::{Tables, fresh_tables};

const POLICY: LockoutPolicy = LockoutPolicy { threshold: 5, base_secs: 300, max_secs: 3600 };

fn contact(email: &str, username: Option<&str>) -> Contact {
    Contact::new(
        NewContact {
            email: Email::parse(email).unwrap(),
            first_name: "Ada".into(),
            last_name: "Lovelace".into(),
            username: username.map(|u| Username::parse(u).unwrap()),
            phone: Some("+44 20 7946 0018".into()),
            roles: vec!["Customers".into()],
            password_hash: None,
        },
        1_800_000_000,
    )
}

async fn all_keys(tables: &Tables, table: &str) -> HashSet<String> {
    let output = tables.client.scan().table_name(table).send().await.unwrap();
    output.items().iter().map(|item| item["pk"].as_s().unwrap().clone()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_contact_round_trips_and_is_found_by_email_or_username() {
    let tables = fresh_tables();
    let store = DynamoContacts::new(tables.client.clone(), &tables.contacts, &tables.outbox);
    let ada = contact("Ada@Example.com", Some("Ada.L"));
    store.create(&ada).await.unwrap();
    assert_eq!(store.get(&ada.contact_id).await.unwrap().as_ref(), Some(&ada));
    for login in [Login::Email("ada@example.com".into()), Login::Username("ada.l".into())] {
        assert_eq!(store.find_by_login(&login).await.unwrap().as_ref(), Some(&ada), "{login:?}");
    }
    assert_eq!(store.find_by_login(&Login::Email("eve@example.com".into())).await.unwrap(), None);
    let keys = all_keys(&tables, &tables.contacts).await;
    let expected: HashSet<String> =
        [format!("CONTACT#{}", ada.contact_id), "EMAIL#ada@example.com".into(), "USERNAME#ada.l".into()].into();
    assert_eq!(keys, expected);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_taken_email_or_username_leaves_nothing_behind() {
    let tables = fresh_tables();
    let store = DynamoContacts::new(tables.client.clone(), &tables.contacts, &tables.outbox);
    store.create(&contact("ada@example.com", Some("ada"))).await.unwrap();
    let before = all_keys(&tables, &tables.contacts).await;
    let same_email = store.create(&contact("ADA@example.com", Some("other"))).await;
    assert!(matches!(same_email, Err(CreateContactError::EmailTaken)), "{same_email:?}");
    let same_username = store.create(&contact("grace@example.com", Some("ADA"))).await;
    assert!(matches!(same_username, Err(CreateContactError::UsernameTaken)), "{same_username:?}");
    assert_eq!(all_keys(&tables, &tables.contacts).await, before, "no stray contact or guard item");
}

#[tokio::test(flavor = "multi_thread")]
async fn ten_concurrent_registrations_of_one_email_create_one_contact() {
    let tables = fresh_tables();
    let store = std::sync::Arc::new(DynamoContacts::new(tables.client.clone(), &tables.contacts, &tables.outbox));
    let attempts: Vec<_> = (0..10)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move { store.create(&contact("race@example.com", Some(&format!("racer{i}")))).await })
        })
        .collect();
    let mut created = 0;
    let mut taken = 0;
    for attempt in attempts {
        match attempt.await.unwrap() {
            Ok(()) => created += 1,
            Err(CreateContactError::EmailTaken) => taken += 1,
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((created, taken), (1, 9));
    let keys = all_keys(&tables, &tables.contacts).await;
    assert_eq!(keys.len(), 3, "one contact, one email guard, one username guard: {keys:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_sign_ins_lock_at_the_threshold_and_never_extend_a_lockout() {
    let tables = fresh_tables();
    let store = DynamoContacts::new(tables.client.clone(), &tables.contacts, &tables.outbox);
    let ada = contact("ada@example.com", None);
    store.create(&ada).await.unwrap();
    let now = 1_800_000_000;
    for _ in 0..4 {
        assert_eq!(store.record_failed_sign_in(&ada.contact_id, now, &POLICY).await.unwrap(), FailedSignIn::Counted);
    }
    assert_eq!(
        store.record_failed_sign_in(&ada.contact_id, now, &POLICY).await.unwrap(),
        FailedSignIn::LockedOut { until: now + 300 }
    );
    assert_eq!(store.record_failed_sign_in(&ada.contact_id, now + 10, &POLICY).await.unwrap(), FailedSignIn::AlreadyLocked);
    let locked = store.get(&ada.contact_id).await.unwrap().unwrap();
    assert_eq!((locked.failed_sign_ins, locked.lockouts, locked.locked_until), (0, 1, Some(now + 300)));
    // After it ends, the next lockout is twice as long.
    for _ in 0..5 {
        store.record_failed_sign_in(&ada.contact_id, now + 300, &POLICY).await.unwrap();
    }
    assert_eq!(store.get(&ada.contact_id).await.unwrap().unwrap().locked_until, Some(now + 300 + 600));
    store.reset_lockout(&ada.contact_id).await.unwrap();
    let reset = store.get(&ada.contact_id).await.unwrap().unwrap();
    assert!(!reset.lockout().needs_reset(), "{:?}", reset.lockout());
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_failures_at_the_threshold_lock_once() {
    let tables = fresh_tables();
    let store = std::sync::Arc::new(DynamoContacts::new(tables.client.clone(), &tables.contacts, &tables.outbox));
    let ada = contact("ada@example.com", None);
    store.create(&ada).await.unwrap();
    let now = 1_800_000_000;
    let failures: Vec<_> = (0..8)
        .map(|_| {
            let (store, id) = (store.clone(), ada.contact_id.clone());
            tokio::spawn(async move { store.record_failed_sign_in(&id, now, &POLICY).await.unwrap() })
        })
        .collect();
    let mut lockouts = 0;
    for failure in failures {
        if let FailedSignIn::LockedOut { .. } = failure.await.unwrap() {
            lockouts += 1;
        }
    }
    assert_eq!(lockouts, 1);
    let stored = store.get(&ada.contact_id).await.unwrap().unwrap();
    assert_eq!(stored.lockouts, 1);
    assert!(stored.lockout().is_locked(now));
}

#[tokio::test(flavor = "multi_thread")]
async fn sessions_are_stored_by_digest_with_a_ttl_and_revoked_by_delete() {
    let tables = fresh_tables();
    let store = DynamoSessions::new(tables.client.clone(), &tables.sessions);
    let (session, token) = Session::start("contact-1", 1_800_000_000, 86_400);
    store.create(&session).await.unwrap();
    assert_eq!(store.get(&session.id_digest).await.unwrap().as_ref(), Some(&session));
    let raw = tables.client.scan().table_name(&tables.sessions).send().await.unwrap();
    let item = &raw.items()[0];
    assert_eq!(item["ttl"].as_n().unwrap(), &(1_800_000_000i64 + 86_400).to_string());
    assert!(!format!("{item:?}").contains(&token), "the token itself is never stored");

    store.touch(&session.id_digest, 1_800_000_100).await.unwrap();
    assert_eq!(store.get(&session.id_digest).await.unwrap().unwrap().last_seen_at, 1_800_000_100);
    store.delete(&session.id_digest).await.unwrap();
    assert_eq!(store.get(&session.id_digest).await.unwrap(), None);
    store.touch(&session.id_digest, 1_800_000_200).await.unwrap();
    assert_eq!(store.get(&session.id_digest).await.unwrap(), None, "touch never resurrects");
}
