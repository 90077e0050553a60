//! The DynamoDB adapters against the real DynamoDB API (moto server, started by the harness),
//! each test on its own tables made from `infra/template.yaml`.

use portal::domain::time::Timestamp;
use std::collections::HashSet;

use portal::adapters::dynamodb::{DynamoContacts, DynamoSessions};
use portal::domain::contact::{Contact, Login, NewContact};
use portal::domain::email::Email;
use portal::domain::lockout::AttemptSubject;
use portal::domain::lockout::{FailedSignIn, LockoutPolicy};
use portal::domain::session::Session;
use portal::domain::text::Username;
use portal::ports::{ContactStore, CreateContactError, Device, SessionStore};
use portal_testkit::moto::{Tables, fresh_tables};

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
    let store = DynamoContacts::new(tables.client.clone(), &tables.contacts, &tables.outbox, &tables.audit);
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
    let store = DynamoContacts::new(tables.client.clone(), &tables.contacts, &tables.outbox, &tables.audit);
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
    let store = std::sync::Arc::new(DynamoContacts::new(
        tables.client.clone(),
        &tables.contacts,
        &tables.outbox,
        &tables.audit,
    ));
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

/// One reserved attempt whose password check failed, as a sign-in does.
async fn fail_once(store: &DynamoContacts, contact: &Contact, now: Timestamp) -> FailedSignIn {
    if !store.reserve_attempt(&AttemptSubject::Account(contact.contact_id.clone()), now, &POLICY).await.unwrap() {
        return FailedSignIn::AlreadyLocked;
    }
    store.record_failed_sign_in(&AttemptSubject::Account(contact.contact_id.clone()), now, &POLICY).await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_sign_ins_lock_at_the_threshold_and_never_extend_a_lockout() {
    let tables = fresh_tables();
    let store = DynamoContacts::new(tables.client.clone(), &tables.contacts, &tables.outbox, &tables.audit);
    let ada = contact("ada@example.com", None);
    store.create(&ada).await.unwrap();
    let now = Timestamp::from_secs(1_800_000_000);
    for _ in 0..4 {
        assert_eq!(fail_once(&store, &ada, now).await, FailedSignIn::Counted);
    }
    assert_eq!(fail_once(&store, &ada, now).await, FailedSignIn::LockedOut { until: now + 300 });
    assert!(
        !store.reserve_attempt(&AttemptSubject::Account(ada.contact_id.clone()), now + 10, &POLICY).await.unwrap(),
        "no attempt while locked"
    );
    let locked = store.get(&ada.contact_id).await.unwrap().unwrap();
    assert_eq!((locked.failed_sign_ins, locked.lockouts, locked.locked_until), (0, 1, Some(now + 300)));
    // After it ends, the next lockout is twice as long.
    for _ in 0..5 {
        fail_once(&store, &ada, now + 300).await;
    }
    assert_eq!(store.get(&ada.contact_id).await.unwrap().unwrap().locked_until, Some(now + 300 + 600));
    store.reset_lockout(&ada.contact_id).await.unwrap();
    let reset = store.get(&ada.contact_id).await.unwrap().unwrap();
    assert!(!reset.lockout().needs_reset(), "{:?}", reset.lockout());
}

#[tokio::test(flavor = "multi_thread")]
async fn fifty_parallel_attempts_get_at_most_the_threshold_and_lock_once() {
    let tables = fresh_tables();
    let store = std::sync::Arc::new(DynamoContacts::new(
        tables.client.clone(),
        &tables.contacts,
        &tables.outbox,
        &tables.audit,
    ));
    let ada = contact("ada@example.com", None);
    store.create(&ada).await.unwrap();
    let now = Timestamp::from_secs(1_800_000_000);
    let attempts: Vec<_> = (0..50)
        .map(|_| {
            let (store, id) = (store.clone(), ada.contact_id.clone());
            tokio::spawn(async move {
                store.reserve_attempt(&AttemptSubject::Account(id.clone()), now, &POLICY).await.unwrap()
            })
        })
        .collect();
    let mut granted = Vec::new();
    for attempt in attempts {
        if attempt.await.unwrap() {
            granted.push(());
        }
    }
    assert_eq!(granted.len(), 5, "the threshold, however many arrive at once");
    let failures: Vec<_> = granted
        .iter()
        .map(|_| {
            let (store, id) = (store.clone(), ada.contact_id.clone());
            tokio::spawn(async move {
                store.record_failed_sign_in(&AttemptSubject::Account(id.clone()), now, &POLICY).await.unwrap()
            })
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
async fn a_reservation_whose_check_never_ended_lets_go_after_its_hold() {
    let tables = fresh_tables();
    let store = DynamoContacts::new(tables.client.clone(), &tables.contacts, &tables.outbox, &tables.audit);
    let ada = contact("ada@example.com", None);
    store.create(&ada).await.unwrap();
    let now = Timestamp::from_secs(1_800_000_000);
    for _ in 0..5 {
        assert!(store.reserve_attempt(&AttemptSubject::Account(ada.contact_id.clone()), now, &POLICY).await.unwrap());
    }
    assert!(
        !store.reserve_attempt(&AttemptSubject::Account(ada.contact_id.clone()), now + 1, &POLICY).await.unwrap(),
        "five in flight"
    );
    let later = now + portal::domain::lockout::ATTEMPT_HOLD_SECS;
    assert!(
        store.reserve_attempt(&AttemptSubject::Account(ada.contact_id.clone()), later, &POLICY).await.unwrap(),
        "the five died with their function"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_trusted_device_has_its_own_failures_and_only_for_its_account() {
    let tables = fresh_tables();
    let store = DynamoContacts::new(tables.client.clone(), &tables.contacts, &tables.outbox, &tables.audit);
    let now = Timestamp::from_secs(1_800_000_000);
    let device = Device { digest: "d1".into(), contact_id: "ada".into(), expires_at: now + 3600 };
    store.remember_device(&device).await.unwrap();
    assert!(!store.reserve_device_attempt("d1", &"grace".into(), now, 3).await.unwrap(), "another account's");
    assert!(!store.reserve_device_attempt("unknown", &"ada".into(), now, 3).await.unwrap());
    for _ in 0..3 {
        assert!(store.reserve_device_attempt("d1", &"ada".into(), now, 3).await.unwrap());
    }
    assert!(!store.reserve_device_attempt("d1", &"ada".into(), now, 3).await.unwrap(), "used up its failures");
    store.remember_device(&device).await.unwrap();
    assert!(store.reserve_device_attempt("d1", &"ada".into(), now, 3).await.unwrap(), "a success trusts it again");
    assert!(!store.reserve_device_attempt("d1", &"ada".into(), now + 3600, 3).await.unwrap(), "expired");
}

#[tokio::test(flavor = "multi_thread")]
async fn sessions_are_stored_by_digest_with_a_ttl_and_revoked_by_delete() {
    let tables = fresh_tables();
    let store = DynamoSessions::new(tables.client.clone(), &tables.sessions);
    let (session, token) = Session::start(&"contact-1".into(), "epoch-1", Timestamp::from_secs(1_800_000_000), 86_400);
    store.create(&session, &[]).await.unwrap();
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
    use portal::domain::contact::new_epoch;
    use portal::domain::outbox::{MailSecret, MessageKind, OutboxMessage};
    use portal::domain::password::PasswordHashString;
    use portal::domain::token::{EmailToken, TokenPurpose};
    use portal::ports::{ProfileUpdate, Queued, TokenUse, UpdateProfileError};

    fn token_for(contact: &Contact, to: &str, purpose: TokenPurpose) -> Queued {
        let (token, plain) = EmailToken::issue(
            purpose,
            &contact.contact_id,
            &portal::domain::email::Email::parse(to).expect("a test address"),
            Timestamp::from_secs(1_800_000_000),
            3600,
        );
        let message = OutboxMessage::new(
            MessageKind::ConfirmEmail,
            to,
            "Ada",
            Some(MailSecret::new(plain)),
            Timestamp::from_secs(1_800_000_000),
        );
        Queued::with_token(token, message)
    }

    fn a_hash() -> PasswordHashString {
        serde_json::from_str(
            "\"$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g\"",
        )
        .unwrap()
    }

    async fn outbox_count(tables: &Tables) -> usize {
        tables.client.scan().table_name(&tables.outbox).send().await.unwrap().items().len()
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_registration_and_its_confirmation_email_are_written_together() {
        let tables = fresh_tables();
        let store = DynamoContacts::new(tables.client.clone(), &tables.contacts, &tables.outbox, &tables.audit);
        let ada = contact("ada@example.com", None);
        let queued = token_for(&ada, "ada@example.com", TokenPurpose::ConfirmEmail);
        store.create_with_emails(&ada, std::slice::from_ref(&queued)).await.unwrap();
        assert_eq!(outbox_count(&tables).await, 1);
        let again = contact("ada@example.com", None);
        let emails = [token_for(&again, "ada@example.com", TokenPurpose::ConfirmEmail)];
        assert!(matches!(store.create_with_emails(&again, &emails).await, Err(CreateContactError::EmailTaken)));
        assert_eq!(outbox_count(&tables).await, 1, "a refused registration queues no email");
        let refused_token = emails[0].token().unwrap();
        assert_eq!(store.find_token(&refused_token.digest).await.unwrap(), None, "nor its token");

        let token = queued.token().cloned().unwrap();
        assert_eq!(store.find_token(&token.digest).await.unwrap().as_ref(), Some(&token));
        let now = Timestamp::from_secs(1_800_000_001);
        assert!(store.use_token(&token, &ada, &TokenUse::ConfirmEmail, now, &[]).await.unwrap());
        assert!(store.get(&ada.contact_id).await.unwrap().unwrap().email_confirmed);
        assert!(!store.use_token(&token, &ada, &TokenUse::ConfirmEmail, now, &[]).await.unwrap(), "single use");
        assert_eq!(store.find_token(&token.digest).await.unwrap(), None);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn concurrent_uses_of_one_reset_token_succeed_once() {
        let tables = fresh_tables();
        let store = std::sync::Arc::new(DynamoContacts::new(
            tables.client.clone(),
            &tables.contacts,
            &tables.outbox,
            &tables.audit,
        ));
        let ada = contact("ada@example.com", None);
        store.create(&ada).await.unwrap();
        let token = token_for(&ada, "ada@example.com", TokenPurpose::ResetPassword).token().cloned().unwrap();
        assert!(store.issue_token(&token).await.unwrap());
        let ada = store.get(&ada.contact_id).await.unwrap().unwrap();
        let uses: Vec<_> = (0..6)
            .map(|_| {
                let (store, token, ada) = (store.clone(), token.clone(), ada.clone());
                tokio::spawn(async move {
                    let effect = TokenUse::ResetPassword { hash: a_hash(), epoch: new_epoch() };
                    store.use_token(&token, &ada, &effect, Timestamp::from_secs(1_800_000_001), &[]).await.unwrap()
                })
            })
            .collect();
        let mut successes = 0;
        for used in uses {
            successes += usize::from(used.await.unwrap());
        }
        assert_eq!(successes, 1);
        assert!(store.get(&ada.contact_id).await.unwrap().unwrap().password_hash.is_some());
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn only_the_newest_reset_link_works_and_a_password_change_voids_it() {
        let tables = fresh_tables();
        let store = DynamoContacts::new(tables.client.clone(), &tables.contacts, &tables.outbox, &tables.audit);
        let ada = contact("ada@example.com", None);
        store.create(&ada).await.unwrap();
        let now = Timestamp::from_secs(1_800_000_001);
        let reset = || TokenUse::ResetPassword { hash: a_hash(), epoch: new_epoch() };
        let first = token_for(&ada, "ada@example.com", TokenPurpose::ResetPassword).token().cloned().unwrap();
        let second = token_for(&ada, "ada@example.com", TokenPurpose::ResetPassword).token().cloned().unwrap();
        assert!(store.issue_token(&first).await.unwrap());
        assert!(store.issue_token(&second).await.unwrap());
        let current = store.get(&ada.contact_id).await.unwrap().unwrap();
        assert!(!store.use_token(&first, &current, &reset(), now, &[]).await.unwrap(), "an older link is void");

        store.change_password(&ada.contact_id, &a_hash(), &new_epoch(), now, &[]).await.unwrap();
        let changed = store.get(&ada.contact_id).await.unwrap().unwrap();
        assert_eq!(changed.reset_nonce, None);
        assert!(!store.use_token(&second, &changed, &reset(), now, &[]).await.unwrap(), "the change voided it");
        let third = token_for(&ada, "ada@example.com", TokenPurpose::ResetPassword).token().cloned().unwrap();
        assert!(store.issue_token(&third).await.unwrap());
        assert!(store.use_token(&third, &changed, &reset(), now, &[]).await.unwrap());
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_password_change_writes_the_new_session_epoch_and_its_notice_together() {
        let tables = fresh_tables();
        let store = DynamoContacts::new(tables.client.clone(), &tables.contacts, &tables.outbox, &tables.audit);
        let ada = contact("ada@example.com", None);
        store.create(&ada).await.unwrap();
        let notice = Queued::new(OutboxMessage::new(
            MessageKind::PasswordChangedNotice,
            "ada@example.com",
            "Ada",
            None,
            Timestamp::from_secs(1_800_000_000),
        ));
        store
            .change_password(&ada.contact_id, &a_hash(), "epoch-2", Timestamp::from_secs(1_800_000_001), &[notice])
            .await
            .unwrap();
        let changed = store.get(&ada.contact_id).await.unwrap().unwrap();
        assert_eq!((changed.session_epoch.as_str(), changed.password_hash.is_some()), ("epoch-2", true));
        assert_ne!(ada.session_epoch, "epoch-2");
        assert_eq!(outbox_count(&tables).await, 1);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn an_email_change_waits_then_its_link_moves_the_guard_item_atomically() {
        let tables = fresh_tables();
        let store = DynamoContacts::new(tables.client.clone(), &tables.contacts, &tables.outbox, &tables.audit);
        let ada = contact("ada@example.com", Some("ada"));
        store.create(&ada).await.unwrap();
        let update = |email: &str| ProfileUpdate {
            first_name: "Augusta".into(),
            last_name: "King".into(),
            phone: None,
            pending_email: Some(Email::parse(email).unwrap()),
        };
        let link = token_for(&ada, "ada@lovelace.example", TokenPurpose::ConfirmEmail);
        let now = Timestamp::from_secs(1_800_000_100);
        let updated = store
            .update_profile(&ada, &update("ada@lovelace.example"), now, std::slice::from_ref(&link))
            .await
            .unwrap();
        assert_eq!(
            (updated.email.as_str(), updated.pending_email.as_ref().map(Email::as_str), updated.phone.as_deref()),
            ("ada@example.com", Some("ada@lovelace.example"), None)
        );
        assert_eq!(store.get(&ada.contact_id).await.unwrap().unwrap(), updated);
        let keys = all_keys(&tables, &tables.contacts).await;
        assert!(keys.contains("EMAIL#ada@example.com") && !keys.contains("EMAIL#ada@lovelace.example"), "{keys:?}");
        assert_eq!(outbox_count(&tables).await, 1);

        // Meanwhile another account takes the address: the link moves nothing.
        let grace = contact("ADA@lovelace.example", None);
        store.create(&grace).await.unwrap();
        let token = link.token().cloned().unwrap();
        let moved = TokenUse::MoveEmail { epoch: "epoch-2".into() };
        assert!(!store.use_token(&token, &updated, &moved, now, &[]).await.unwrap());
        assert_eq!(store.get(&ada.contact_id).await.unwrap().unwrap().email.as_str(), "ada@example.com");

        // Once it is free again, the link moves the guard item, confirms and ends the sessions.
        tables
            .client
            .delete_item()
            .table_name(&tables.contacts)
            .key("pk", aws_sdk_dynamodb::types::AttributeValue::S("EMAIL#ada@lovelace.example".into()))
            .send()
            .await
            .unwrap();
        assert!(store.use_token(&token, &updated, &moved, now, &[]).await.unwrap());
        let moved = store.get(&ada.contact_id).await.unwrap().unwrap();
        assert_eq!(
            (moved.email.as_str(), moved.email_confirmed, moved.pending_email.is_none(), moved.session_epoch.as_str()),
            ("ada@lovelace.example", true, true, "epoch-2")
        );
        let keys = all_keys(&tables, &tables.contacts).await;
        assert!(keys.contains("EMAIL#ada@lovelace.example") && !keys.contains("EMAIL#ada@example.com"), "{keys:?}");
        assert!(keys.contains("USERNAME#ada"));
        let stale = store.update_profile(&ada, &update("ada@third.example"), now, &[]).await;
        assert!(matches!(stale, Err(UpdateProfileError::Conflict)), "a stale copy cannot overwrite: {stale:?}");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn allowances_run_out_within_their_window_and_can_be_given_back() {
        let tables = fresh_tables();
        let store = DynamoContacts::new(tables.client.clone(), &tables.contacts, &tables.outbox, &tables.audit);
        let now = Timestamp::from_secs(1_800_000_000);
        let mut granted = Vec::new();
        for _ in 0..4 {
            granted.push(store.take_allowance("account#a", 3, 3600, now).await.unwrap());
        }
        assert_eq!(granted, [true, true, true, false]);
        store.give_back_allowance("account#a", 3600, now).await.unwrap();
        assert!(store.take_allowance("account#a", 3, 3600, now).await.unwrap(), "one was given back");
        assert!(store.take_allowance("account#b", 3, 3600, now).await.unwrap(), "per key");
        assert!(store.take_allowance("account#a", 3, 3600, now + 3600).await.unwrap(), "next window");
        store.give_back_allowance("account#never", 3600, now).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_login_no_account_has_is_reserved_and_locked_as_an_account_is() {
    let tables = fresh_tables();
    let store = DynamoContacts::new(tables.client.clone(), &tables.contacts, &tables.outbox, &tables.audit);
    let ghost = AttemptSubject::unknown_login("email#ghost@example.com");
    let now = Timestamp::from_secs(1_800_000_000);
    for _ in 0..4 {
        assert!(store.reserve_attempt(&ghost, now, &POLICY).await.unwrap());
        assert_eq!(store.record_failed_sign_in(&ghost, now, &POLICY).await.unwrap(), FailedSignIn::Counted);
    }
    assert!(store.reserve_attempt(&ghost, now, &POLICY).await.unwrap());
    assert_eq!(
        store.record_failed_sign_in(&ghost, now, &POLICY).await.unwrap(),
        FailedSignIn::LockedOut { until: now + 300 }
    );
    assert!(!store.reserve_attempt(&ghost, now + 10, &POLICY).await.unwrap(), "locked like an account");
    let state = store.lockout_of(&ghost).await.unwrap();
    assert_eq!((state.lockouts, state.locked_until), (1, Some(now + 300)));
    // Its item expires on its own, and no contact was made for it.
    let AttemptSubject::UnknownLogin(digest) = &ghost else { unreachable!() };
    let item = tables
        .client
        .get_item()
        .table_name(&tables.contacts)
        .key("pk", aws_sdk_dynamodb::types::AttributeValue::S(format!("LOGIN#{digest}")))
        .send()
        .await
        .unwrap()
        .item
        .expect("the login's item");
    assert!(item.contains_key("ttl"));
    assert!(!all_keys(&tables, &tables.contacts).await.iter().any(|k| k.starts_with("CONTACT#")));
    // An account that is gone takes no attempt (and gets no item).
    let gone = AttemptSubject::Account("gone".into());
    assert!(!store.reserve_attempt(&gone, now, &POLICY).await.unwrap());
}

#[tokio::test(flavor = "multi_thread")]
async fn held_notices_are_counted_and_counted_off_once() {
    use portal::domain::outbox::HeldSummary;
    let tables = fresh_tables();
    let store = DynamoContacts::new(tables.client.clone(), &tables.contacts, &tables.outbox, &tables.audit);
    let ada = contact("ada@example.com", None);
    store.create(&ada).await.unwrap();
    let now = Timestamp::from_secs(1_800_000_000);
    assert_eq!(store.held_notices(&ada.contact_id).await.unwrap(), None);
    for kind in ["password_changed_notice", "passkey_added_notice", "password_changed_notice"] {
        store.hold_notice(&ada.contact_id, kind, now).await.unwrap();
    }
    let held = store.held_notices(&ada.contact_id).await.unwrap().unwrap();
    assert_eq!((held.count, held.since), (3, now));
    assert_eq!(held.kinds, ["passkey_added_notice", "password_changed_notice"]);
    let summed_up = HeldSummary { count: 2, since: now };
    // Two summed up while a third was held: that one stays, held from then on; repeated, nothing more.
    store.clear_held_notices(&ada.contact_id, &summed_up, now + 60).await.unwrap();
    store.clear_held_notices(&ada.contact_id, &summed_up, now + 61).await.unwrap();
    let left = store.held_notices(&ada.contact_id).await.unwrap().unwrap();
    assert_eq!((left.count, left.since), (1, now + 60));
    store.clear_held_notices(&ada.contact_id, &HeldSummary { count: 1, since: now + 60 }, now + 90).await.unwrap();
    assert_eq!(store.held_notices(&ada.contact_id).await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_contacts_sessions_are_listed_from_the_index_and_a_sign_in_writes_its_entry_with_its_session() {
    use portal::domain::audit::{AuditEntry, AuditEvent, AuditQuery, SourceAddress};
    use portal::domain::listing::PageRequest;
    let tables = fresh_tables();
    let store = DynamoSessions::new(tables.client.clone(), &tables.sessions).queueing_to(
        &tables.contacts,
        &tables.outbox,
        &tables.audit,
    );
    let now = Timestamp::from_secs(1_800_000_000);
    let (first, _) = Session::start(&"ada".into(), "e1", now, 3600);
    let (second, _) = Session::start(&"ada".into(), "e1", now, 3600);
    let (other, _) = Session::start(&"grace".into(), "e1", now, 3600);
    let source = SourceAddress::new(Some("198.51.100.7".into()));
    let entry = AuditEntry::new(AuditEvent::SignedIn, Some(&"ada".into()), Some(&"ada".into()), &source, now, 86_400);
    store.create(&first, &[]).await.unwrap();
    store.create(&second, &[entry.clone().into()]).await.unwrap();
    store.create(&other, &[]).await.unwrap();
    let mut listed: Vec<String> =
        store.list_for_contact(&"ada".into()).await.unwrap().into_iter().map(|s| s.id_digest).collect();
    listed.sort();
    let mut expected = vec![first.id_digest.clone(), second.id_digest.clone()];
    expected.sort();
    assert_eq!(listed, expected);

    let contacts = DynamoContacts::new(tables.client.clone(), &tables.contacts, &tables.outbox, &tables.audit);
    let query = AuditQuery { contact_id: Some("ada".into()), ..AuditQuery::default() };
    let trail = contacts.audit_trail(&query, &PageRequest::first(10)).await.unwrap();
    assert_eq!(trail.items, std::slice::from_ref(&entry), "the entry, read back from the contact index");

    // The session and its entry are one write: a second put of the same entry refuses both.
    let (third, _) = Session::start(&"ada".into(), "e1", now, 3600);
    assert!(store.create(&third, &[entry.into()]).await.is_err());
    assert!(store.get(&third.id_digest).await.unwrap().is_none(), "no session without its entry");
}
