//! The DynamoDB adapters against the real DynamoDB API (moto server, started by the harness),
//! each test on its own tables made from `infra/template.yaml`.

mod support;

use portal::domain::time::Timestamp;
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
        Timestamp::from_secs(1_800_000_000),
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
    let now = Timestamp::from_secs(1_800_000_000);
    for _ in 0..4 {
        assert_eq!(store.record_failed_sign_in(&ada.contact_id, now, &POLICY).await.unwrap(), FailedSignIn::Counted);
    }
    assert_eq!(
        store.record_failed_sign_in(&ada.contact_id, now, &POLICY).await.unwrap(),
        FailedSignIn::LockedOut { until: now + 300 }
    );
    assert_eq!(
        store.record_failed_sign_in(&ada.contact_id, now + 10, &POLICY).await.unwrap(),
        FailedSignIn::AlreadyLocked
    );
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
    let now = Timestamp::from_secs(1_800_000_000);
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
    let (session, token) = Session::start(&"contact-1".into(), Timestamp::from_secs(1_800_000_000), 86_400);
    store.create(&session).await.unwrap();
    assert_eq!(store.get(&session.id_digest).await.unwrap().as_ref(), Some(&session));
    let raw = tables.client.scan().table_name(&tables.sessions).send().await.unwrap();
    let item = &raw.items()[0];
    assert_eq!(item["ttl"].as_n().unwrap(), &(1_800_000_000i64 + 86_400).to_string());
    assert!(!format!("{item:?}").contains(&token), "the token itself is never stored");

    store.touch(&session.id_digest, Timestamp::from_secs(1_800_000_100)).await.unwrap();
    assert_eq!(store.get(&session.id_digest).await.unwrap().unwrap().last_seen_at, Timestamp::from_secs(1_800_000_100));
    let deleted = store.delete(&session.id_digest).await.unwrap().expect("the deleted session");
    assert_eq!(deleted.contact_id.as_str(), "contact-1");
    assert_eq!(store.get(&session.id_digest).await.unwrap(), None);
    assert_eq!(store.delete(&session.id_digest).await.unwrap(), None, "deleting twice finds nothing");
    store.touch(&session.id_digest, Timestamp::from_secs(1_800_000_200)).await.unwrap();
    assert_eq!(store.get(&session.id_digest).await.unwrap(), None, "touch never resurrects");
}

mod self_service {
    use super::*;
    use portal::domain::outbox::{MailSecret, MessageKind, OutboxMessage};
    use portal::domain::token::{EmailToken, TokenPurpose};
    use portal::ports::{ProfileUpdate, TokenUse, UpdateProfileError};

    fn token_for(contact: &Contact, purpose: TokenPurpose) -> (EmailToken, OutboxMessage) {
        let (token, plain) = EmailToken::issue(
            purpose,
            &contact.contact_id,
            contact.email.normalized(),
            Timestamp::from_secs(1_800_000_000),
            3600,
        );
        let message = OutboxMessage::new(
            MessageKind::ConfirmEmail,
            contact.email.as_str(),
            "Ada",
            Some(MailSecret::new(plain)),
            Timestamp::from_secs(1_800_000_000),
        );
        (token, message)
    }

    async fn outbox_count(tables: &Tables) -> usize {
        tables.client.scan().table_name(&tables.outbox).send().await.unwrap().items().len()
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_registration_and_its_confirmation_email_are_written_together() {
        let tables = fresh_tables();
        let store = DynamoContacts::new(tables.client.clone(), &tables.contacts, &tables.outbox);
        let ada = contact("ada@example.com", None);
        let (token, message) = token_for(&ada, TokenPurpose::ConfirmEmail);
        store.create_with_email(&ada, Some((&token, &message))).await.unwrap();
        assert_eq!(outbox_count(&tables).await, 1);
        let again = contact("ada@example.com", None);
        let (token2, message2) = token_for(&again, TokenPurpose::ConfirmEmail);
        assert!(matches!(
            store.create_with_email(&again, Some((&token2, &message2))).await,
            Err(CreateContactError::EmailTaken)
        ));
        assert_eq!(outbox_count(&tables).await, 1, "a refused registration queues no email");
        assert_eq!(store.find_token(&token.digest).await.unwrap(), Some(token.clone()), "found, not used");
        assert_eq!(store.find_token(&token2.digest).await.unwrap(), None);

        assert_eq!(
            store
                .use_token(
                    &token.digest,
                    TokenPurpose::ResetPassword,
                    &TokenUse::ConfirmEmail,
                    Timestamp::from_secs(1_800_000_001)
                )
                .await
                .unwrap(),
            None,
            "wrong purpose"
        );
        assert_eq!(
            store
                .use_token(
                    &token.digest,
                    TokenPurpose::ConfirmEmail,
                    &TokenUse::ConfirmEmail,
                    Timestamp::from_secs(1_800_003_600)
                )
                .await
                .unwrap(),
            None,
            "expired"
        );
        let used = store
            .use_token(
                &token.digest,
                TokenPurpose::ConfirmEmail,
                &TokenUse::ConfirmEmail,
                Timestamp::from_secs(1_800_000_001),
            )
            .await
            .unwrap();
        assert_eq!(used.as_deref(), Some(ada.contact_id.as_str()));
        assert_eq!(store.find_token(&token.digest).await.unwrap(), None, "a used token is gone");
        assert!(store.get(&ada.contact_id).await.unwrap().unwrap().email_confirmed);
        assert_eq!(
            store
                .use_token(
                    &token.digest,
                    TokenPurpose::ConfirmEmail,
                    &TokenUse::ConfirmEmail,
                    Timestamp::from_secs(1_800_000_002)
                )
                .await
                .unwrap(),
            None,
            "single use"
        );
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn concurrent_uses_of_one_reset_token_succeed_once() {
        let tables = fresh_tables();
        let store = std::sync::Arc::new(DynamoContacts::new(tables.client.clone(), &tables.contacts, &tables.outbox));
        let ada = contact("ada@example.com", None);
        store.create(&ada).await.unwrap();
        let (token, message) = token_for(&ada, TokenPurpose::ResetPassword);
        store.queue_email(Some(&token), &message).await.unwrap();
        let hash: portal::domain::password::PasswordHashString = serde_json::from_str(
            "\"$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g\"",
        )
        .unwrap();
        let uses: Vec<_> = (0..6)
            .map(|_| {
                let (store, digest, hash) = (store.clone(), token.digest.clone(), hash.clone());
                tokio::spawn(async move {
                    store
                        .use_token(
                            &digest,
                            TokenPurpose::ResetPassword,
                            &TokenUse::ResetPassword(hash),
                            Timestamp::from_secs(1_800_000_001),
                        )
                        .await
                        .unwrap()
                })
            })
            .collect();
        let mut successes = 0;
        for used in uses {
            successes += usize::from(used.await.unwrap().is_some());
        }
        assert_eq!(successes, 1);
        assert!(store.get(&ada.contact_id).await.unwrap().unwrap().password_hash.is_some());
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn an_email_change_moves_the_guard_item_and_queues_the_confirmation() {
        let tables = fresh_tables();
        let store = DynamoContacts::new(tables.client.clone(), &tables.contacts, &tables.outbox);
        let ada = contact("ada@example.com", Some("ada"));
        store.create(&ada).await.unwrap();
        store.create(&contact("grace@example.com", None)).await.unwrap();
        let update = |email: &str| ProfileUpdate {
            first_name: "Augusta".into(),
            last_name: "King".into(),
            phone: None,
            new_email: Some(Email::parse(email).unwrap()),
        };
        let taken =
            store.update_profile(&ada, &update("GRACE@example.com"), Timestamp::from_secs(1_800_000_100), None).await;
        assert!(matches!(taken, Err(UpdateProfileError::EmailTaken)), "{taken:?}");
        let mut moved_to = ada.clone();
        moved_to.email = Email::parse("ada@lovelace.example").unwrap();
        let (token, message) = token_for(&moved_to, TokenPurpose::ConfirmEmail);
        let updated = store
            .update_profile(
                &ada,
                &update("ada@lovelace.example"),
                Timestamp::from_secs(1_800_000_100),
                Some((&token, &message)),
            )
            .await
            .unwrap();
        assert_eq!(
            (updated.email.as_str(), updated.email_confirmed, updated.phone.as_deref()),
            ("ada@lovelace.example", false, None)
        );
        assert_eq!(store.get(&ada.contact_id).await.unwrap().unwrap(), updated);
        let keys = all_keys(&tables, &tables.contacts).await;
        assert!(keys.contains("EMAIL#ada@lovelace.example") && !keys.contains("EMAIL#ada@example.com"), "{keys:?}");
        assert!(keys.contains("USERNAME#ada"));
        assert_eq!(outbox_count(&tables).await, 1);
        let stale =
            store.update_profile(&ada, &update("ada@third.example"), Timestamp::from_secs(1_800_000_200), None).await;
        assert!(matches!(stale, Err(UpdateProfileError::Conflict)), "a stale copy cannot overwrite: {stale:?}");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn allowances_run_out_within_their_window() {
        let tables = fresh_tables();
        let store = DynamoContacts::new(tables.client.clone(), &tables.contacts, &tables.outbox);
        let mut granted = Vec::new();
        let mut left = Vec::new();
        for _ in 0..4 {
            left.push(store.allowance_left("account#a", 3, 3600, Timestamp::from_secs(1_800_000_000)).await.unwrap());
            granted
                .push(store.take_allowance("account#a", 3, 3600, Timestamp::from_secs(1_800_000_000)).await.unwrap());
        }
        assert_eq!(granted, [true, true, true, false]);
        assert_eq!(left, [true, true, true, false], "looking takes nothing");
        assert!(
            store.take_allowance("account#b", 3, 3600, Timestamp::from_secs(1_800_000_000)).await.unwrap(),
            "per key"
        );
        assert!(
            store.take_allowance("account#a", 3, 3600, Timestamp::from_secs(1_800_003_600)).await.unwrap(),
            "next window"
        );
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn all_of_a_contacts_sessions_end_but_the_one_kept() {
        let tables = fresh_tables();
        let store = DynamoSessions::new(tables.client.clone(), &tables.sessions);
        let sessions: Vec<Session> =
            (0..3).map(|_| Session::start(&"ada".into(), Timestamp::from_secs(1_800_000_000), 3600).0).collect();
        let grace = Session::start(&"grace".into(), Timestamp::from_secs(1_800_000_000), 3600).0;
        for session in sessions.iter().chain([&grace]) {
            store.create(session).await.unwrap();
        }
        store.delete_all_for_contact(&"ada".into(), Some(&sessions[0].id_digest)).await.unwrap();
        assert!(store.get(&sessions[0].id_digest).await.unwrap().is_some());
        assert!(store.get(&sessions[1].id_digest).await.unwrap().is_none());
        assert!(store.get(&sessions[2].id_digest).await.unwrap().is_none());
        assert!(store.get(&grace.id_digest).await.unwrap().is_some(), "another contact's session stays");
        store.delete_all_for_contact(&"ada".into(), None).await.unwrap();
        assert!(store.get(&sessions[0].id_digest).await.unwrap().is_none());
    }
}
