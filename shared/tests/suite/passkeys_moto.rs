//! Passkeys on the real DynamoDB API (moto): a ceremony's state answers one finish however many
//! race for it, a contact's passkeys are listed through the sparse index, adding and removing write
//! the new session epoch and the notice in the same transaction, and of two sign-ins racing with one
//! passkey's counter, one records its use.

use futures::future::join_all;
use portal::domain::contact::Login;
use portal::domain::email::Email;
use portal::domain::outbox::{MessageKind, OutboxMessage};
use portal::domain::passkey::{Ceremony, CeremonyPurpose, StoredPasskey};
use portal::domain::time::Timestamp;
use portal::ports::{Queued, UsesContacts, UsesPasskeys};
use portal_testkit::moto::fresh_tables;
use portal_testkit::registered;

fn passkey(id: &str, contact_id: &portal::domain::ids::ContactId, at: i64) -> StoredPasskey {
    StoredPasskey {
        id: id.into(),
        contact_id: contact_id.clone(),
        name: format!("key {id}"),
        created_at: Timestamp::from_secs(at),
        last_used_at: None,
        sign_count: 0,
        credential: "{\"cred\":{}}".into(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn of_parallel_finishes_one_takes_the_ceremony() {
    let tables = fresh_tables();
    let portal = tables.portal(&[]);
    let ceremony = Ceremony {
        id_digest: "d1".into(),
        purpose: CeremonyPurpose::SignIn,
        state: "{\"state\":1}".into(),
        expires_at: Timestamp::from_secs(1_800_000_300),
    };
    portal.passkeys().save_ceremony(&ceremony).await.unwrap();
    let takes = join_all((0..8).map(|_| portal.passkeys().take_ceremony("d1"))).await;
    let taken: Vec<Ceremony> = takes.into_iter().filter_map(Result::unwrap).collect();
    assert_eq!(taken, vec![ceremony], "exactly one finish gets the state, as stored");
    assert_eq!(portal.passkeys().take_ceremony("never").await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread")]
async fn adding_and_removing_passkeys_write_the_epoch_and_the_notice_together() {
    let tables = fresh_tables();
    let portal = tables.portal(&[]);
    registered(&portal, "ada@example.com").await;
    registered(&portal, "bob@example.com").await;
    let find = |email: &str| {
        let login = Login::of_email(&Email::parse(email).unwrap());
        let portal = portal.clone();
        async move { portal.contacts().find_by_login(&login).await.unwrap().unwrap() }
    };
    let ada = find("ada@example.com").await;
    let bob = find("bob@example.com").await;
    let now = Timestamp::from_secs(1_800_000_000);
    let notice =
        || vec![Queued::new(OutboxMessage::new(MessageKind::PasskeyAddedNotice, "ada@example.com", "Ada", None, now))];

    assert!(portal.passkeys().add(&passkey("p2", &ada.contact_id, 20), "epoch-1", now, &notice()).await.unwrap());
    assert!(portal.passkeys().add(&passkey("p1", &ada.contact_id, 10), "epoch-2", now, &notice()).await.unwrap());
    assert!(portal.passkeys().add(&passkey("p3", &bob.contact_id, 5), "epoch-b", now, &[]).await.unwrap());
    assert!(
        !portal.passkeys().add(&passkey("p1", &bob.contact_id, 30), "epoch-x", now, &notice()).await.unwrap(),
        "a credential registered already is refused, and nothing else is written"
    );
    assert_eq!(find("bob@example.com").await.session_epoch, "epoch-b");
    assert_eq!(find("ada@example.com").await.session_epoch, "epoch-2");
    let ids: Vec<String> = portal.passkeys().list(&ada.contact_id).await.unwrap().into_iter().map(|p| p.id).collect();
    assert_eq!(ids, ["p1", "p2"], "the contact's own, oldest first");
    assert_eq!(portal.passkeys().find("p3").await.unwrap().unwrap().contact_id, bob.contact_id);
    let queued = tables
        .client
        .scan()
        .table_name(&tables.outbox)
        .send()
        .await
        .unwrap()
        .items
        .unwrap_or_default()
        .into_iter()
        .filter(|item| item.get("kind").and_then(|k| k.as_s().ok()).map(String::as_str) == Some("passkey_added_notice"))
        .count();
    assert_eq!(queued, 2, "one notice per add that happened");

    assert!(
        !portal.passkeys().remove(&bob.contact_id, "p1", "epoch-y", now, &[]).await.unwrap(),
        "not bob's to remove"
    );
    assert_eq!(find("bob@example.com").await.session_epoch, "epoch-b", "and his epoch stays");
    assert!(portal.passkeys().remove(&ada.contact_id, "p1", "epoch-3", now, &[]).await.unwrap());
    assert_eq!(find("ada@example.com").await.session_epoch, "epoch-3");
    assert!(portal.passkeys().find("p1").await.unwrap().is_none());
    assert!(!portal.passkeys().remove(&ada.contact_id, "p1", "epoch-4", now, &[]).await.unwrap(), "gone");
}

#[tokio::test(flavor = "multi_thread")]
async fn of_two_sign_ins_racing_with_one_counter_one_records_its_use() {
    let tables = fresh_tables();
    let portal = tables.portal(&[]);
    registered(&portal, "ada@example.com").await;
    let login = Login::of_email(&Email::parse("ada@example.com").unwrap());
    let ada = portal.contacts().find_by_login(&login).await.unwrap().unwrap();
    let now = Timestamp::from_secs(1_800_000_000);
    portal.passkeys().add(&passkey("p1", &ada.contact_id, 10), "e", now, &[]).await.unwrap();
    let read = portal.passkeys().find("p1").await.unwrap().unwrap();
    let (a, b) = tokio::join!(
        portal.passkeys().record_use(&read, 5, "{\"v\":5}", now + 1),
        portal.passkeys().record_use(&read, 6, "{\"v\":6}", now + 2),
    );
    assert_eq!([a.unwrap(), b.unwrap()].iter().filter(|won| **won).count(), 1);
    let stored = portal.passkeys().find("p1").await.unwrap().unwrap();
    assert!(stored.sign_count == 5 || stored.sign_count == 6);
    assert!(stored.last_used_at.is_some());
    assert!(!portal.passkeys().record_use(&read, 7, "{}", now + 3).await.unwrap(), "a stale read loses");
}
