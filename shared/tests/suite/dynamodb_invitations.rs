//! The invitation and outbox adapters against the real DynamoDB API (moto), each test on its own
//! tables made from `infra/template.yaml`: transactions, conditions and the redemption races.

use portal::domain::ids::MessageId;
use portal::domain::time::Timestamp;
use std::sync::Arc;

use portal::adapters::dynamodb::DynamoContacts;
use portal::adapters::dynamodb_invitations::{DynamoInvitations, DynamoOutbox};
use portal::domain::contact::{Contact, NewContact};
use portal::domain::email::Email;
use portal::domain::invitation::{Delivery, Invitation, InvitationCode, InvitationType, Redemption};
use portal::domain::outbox::{
    Claim, LEASE_SECS, MailSecret, MessageKind, MessageStatus, OutboxMessage, RETENTION_SECS,
};
use portal::domain::password::PasswordHashString;
use portal::ports::{ContactChange, ContactStore, InvitationStore, Outbox, RedeemError};
use portal_testkit::moto::{Tables, fresh_tables};

const NOW: Timestamp = Timestamp::from_secs(1_800_000_000);

struct Stores {
    tables: Tables,
    contacts: Arc<DynamoContacts>,
    invitations: Arc<DynamoInvitations>,
    outbox: DynamoOutbox,
}

fn stores() -> Stores {
    let tables = fresh_tables();
    let contacts =
        Arc::new(DynamoContacts::new(tables.client.clone(), &tables.contacts, &tables.outbox, &tables.audit));
    let invitations =
        Arc::new(DynamoInvitations::new(tables.client.clone(), &tables.invitations, &tables.contacts, &tables.outbox));
    let outbox = DynamoOutbox::new(tables.client.clone(), &tables.outbox).with_invitations(&tables.invitations);
    Stores { tables, contacts, invitations, outbox }
}

fn contact(email: &str) -> Contact {
    Contact::new(
        NewContact {
            email: Email::parse(email).unwrap(),
            first_name: "Grace".into(),
            last_name: "Hopper".into(),
            username: None,
            phone: None,
            roles: vec![],
            password_hash: None,
        },
        NOW,
    )
}

fn invitation(contact: &Contact, code: &InvitationCode, kind: InvitationType, max: u32) -> (Invitation, OutboxMessage) {
    let invitation = Invitation {
        invitation_id: uuid::Uuid::new_v4().to_string().into(),
        code_digest: code.digest(),
        kind,
        contact_id: contact.contact_id.clone(),
        email: contact.email.to_string(),
        first_name: contact.first_name.clone(),
        last_name: contact.last_name.clone(),
        max_redemptions: max,
        redemptions: 0,
        expires_at: NOW + 86_400,
        revoked: false,
        roles: vec!["Customers".into()],
        account_id: Some("Contoso".into()),
        redirect_path: None,
        created_at: NOW,
        created_by: "admin".into(),
        message_id: uuid::Uuid::new_v4().to_string().into(),
        delivery: Delivery::Pending,
        delivery_error: None,
        delivered_at: None,
    };
    let mut message = OutboxMessage::new(
        MessageKind::Invitation,
        contact.email.as_str(),
        &contact.first_name,
        Some(MailSecret::new(code.display())),
        NOW,
    );
    message.message_id = invitation.message_id.clone();
    message.invitation_id = Some(invitation.invitation_id.clone());
    (invitation, message)
}

fn hash() -> PasswordHashString {
    serde_json::from_str("\"$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g\"")
        .unwrap()
}

fn credentials(contact: &Contact) -> ContactChange {
    ContactChange::SetCredentials {
        contact_id: contact.contact_id.clone(),
        password_hash: hash(),
        username: None,
        roles: vec!["Customers".into()],
        account_id: Some("Contoso".into()),
        terms: None,
    }
}

fn redemption(invitation: &Invitation, contact_id: &str) -> Redemption {
    Redemption {
        invitation_id: invitation.invitation_id.clone(),
        contact_id: contact_id.into(),
        redeemed_at: NOW + 1,
        source_ip: "198.51.100.7".into(),
    }
}

async fn invited(s: &Stores, kind: InvitationType, max: u32) -> (Contact, Invitation, InvitationCode) {
    let grace = contact(&format!("grace-{}@example.com", uuid::Uuid::new_v4().simple()));
    s.contacts.create(&grace).await.unwrap();
    let code = InvitationCode::generate();
    let (invitation, message) = invitation(&grace, &code, kind, max);
    s.invitations.create(&invitation, &message).await.unwrap();
    (grace, invitation, code)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_invitation_is_found_by_its_code_with_its_email_queued_in_the_same_write() {
    let s = stores();
    let (grace, invitation, code) = invited(&s, InvitationType::Single, 1).await;
    assert_eq!(s.invitations.find_by_code(&code.digest()).await.unwrap().as_ref(), Some(&invitation));
    assert_eq!(s.invitations.find_by_code(&InvitationCode::generate().digest()).await.unwrap(), None);
    assert_eq!(s.invitations.list_for_contact(&grace.contact_id).await.unwrap(), std::slice::from_ref(&invitation));
    let scan = s.tables.client.scan().table_name(&s.tables.invitations).send().await.unwrap();
    assert!(!format!("{:?}", scan.items()).contains(&code.display()), "no plain code in the invitations table");
    let Claim::Leased(claimed) = s.outbox.claim(&invitation.message_id, NOW).await.unwrap() else {
        panic!("the queued email is claimable")
    };
    assert_eq!(claimed.secret.unwrap().expose(), code.display());
}

#[tokio::test(flavor = "multi_thread")]
async fn ten_parallel_redemptions_of_a_single_code_give_exactly_one_success() {
    let s = stores();
    let (grace, invitation, _) = invited(&s, InvitationType::Single, 1).await;
    let attempts: Vec<_> = (0..10)
        .map(|_| {
            let (store, invitation, grace) = (s.invitations.clone(), invitation.clone(), grace.clone());
            tokio::spawn(async move {
                store.redeem(&invitation, &credentials(&grace), &redemption(&invitation, &grace.contact_id), NOW).await
            })
        })
        .collect();
    let mut outcomes = (0, 0);
    for attempt in attempts {
        match attempt.await.unwrap() {
            Ok(()) => outcomes.0 += 1,
            Err(RedeemError::InvitationInvalid) => outcomes.1 += 1,
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(outcomes, (1, 9));
    assert_eq!(s.invitations.get(&invitation.invitation_id).await.unwrap().unwrap().redemptions, 1);
    let redeemed = s.contacts.get(&grace.contact_id).await.unwrap().unwrap();
    assert!(redeemed.password_hash.is_some() && redeemed.email_confirmed);
    assert_eq!(redeemed.roles, ["Customers"]);
    assert_eq!(redeemed.account_id.as_deref(), Some("Contoso"));
    assert_eq!(s.invitations.redemptions(&invitation.invitation_id).await.unwrap().len(), 1);
}

/// A redemption's source address is kept apart with a TTL of the audit retention: when DynamoDB
/// removes it, the redemption stays, without the address.
#[tokio::test(flavor = "multi_thread")]
async fn a_redemptions_source_address_expires_and_the_redemption_stays() {
    let mut s = stores();
    s.invitations = Arc::new(
        DynamoInvitations::new(s.tables.client.clone(), &s.tables.invitations, &s.tables.contacts, &s.tables.outbox)
            .keeping_source_addresses_for(90 * 86_400),
    );
    let (grace, invitation, _) = invited(&s, InvitationType::Single, 1).await;
    let done = redemption(&invitation, &grace.contact_id);
    s.invitations.redeem(&invitation, &credentials(&grace), &done, NOW).await.unwrap();
    assert_eq!(s.invitations.redemptions(&invitation.invitation_id).await.unwrap(), vec![done.clone()]);

    let items = s.tables.client.scan().table_name(&s.tables.invitations).send().await.unwrap();
    let of = |prefix: &str| {
        items.items().iter().filter(|i| i["sk"].as_s().unwrap().starts_with(prefix)).cloned().collect::<Vec<_>>()
    };
    let (records, addresses) = (of("REDEMPTION#"), of("REDEMPTION_IP#"));
    assert_eq!((records.len(), addresses.len()), (1, 1));
    assert!(!records[0].contains_key("source_ip"), "the redemption itself holds no address");
    assert_eq!(addresses[0]["source_ip"].as_s().unwrap(), "198.51.100.7");
    assert_eq!(addresses[0]["ttl"].as_n().unwrap(), &(done.redeemed_at + 90 * 86_400).to_string());

    // TTL removes the address (here by hand): the redemption is still listed, without it.
    type Item = std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>;
    let key = |item: &Item| {
        item.iter().filter(|(k, _)| ["pk", "sk"].contains(&k.as_str())).map(|(k, v)| (k.clone(), v.clone())).collect()
    };
    s.tables
        .client
        .delete_item()
        .table_name(&s.tables.invitations)
        .set_key(Some(key(&addresses[0])))
        .send()
        .await
        .unwrap();
    let kept = s.invitations.redemptions(&invitation.invitation_id).await.unwrap();
    assert_eq!(kept, vec![Redemption { source_ip: String::new(), ..done }]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_group_invitation_stops_at_its_maximum_under_a_race() {
    let s = stores();
    let (_, invitation, _) = invited(&s, InvitationType::Group, 3).await;
    let attempts: Vec<_> = (0..10)
        .map(|i| {
            let (store, invitation) = (s.invitations.clone(), invitation.clone());
            tokio::spawn(async move {
                let mut member = contact(&format!("member{i}@example.com"));
                member.password_hash = Some(hash());
                let redemption = redemption(&invitation, &member.contact_id);
                store.redeem(&invitation, &ContactChange::Create(Box::new(member)), &redemption, NOW).await
            })
        })
        .collect();
    let mut created = 0;
    for attempt in attempts {
        match attempt.await.unwrap() {
            Ok(()) => created += 1,
            Err(RedeemError::InvitationInvalid) => {}
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(created, 3);
    assert_eq!(s.invitations.get(&invitation.invitation_id).await.unwrap().unwrap().redemptions, 3);
    let page = portal::domain::listing::PageRequest::first(100);
    let members = s.contacts.list_page("member", &page).await.unwrap().items.len();
    assert_eq!(members, 3, "a failed redemption leaves no contact behind");
}

#[tokio::test(flavor = "multi_thread")]
async fn expired_revoked_and_replaced_codes_cannot_be_redeemed() {
    let s = stores();
    let (grace, invitation, code) = invited(&s, InvitationType::Single, 1).await;
    let expired = s
        .invitations
        .redeem(&invitation, &credentials(&grace), &redemption(&invitation, &grace.contact_id), invitation.expires_at)
        .await;
    assert!(matches!(expired, Err(RedeemError::InvitationInvalid)), "{expired:?}");

    let new_code = InvitationCode::generate();
    let mut message = OutboxMessage::new(
        MessageKind::Invitation,
        grace.email.as_str(),
        "Grace",
        Some(MailSecret::new(new_code.display())),
        NOW,
    );
    message.invitation_id = Some(invitation.invitation_id.clone());
    assert!(s.invitations.replace_code(&invitation, &new_code.digest(), &message, &[]).await.unwrap());
    assert_eq!(s.invitations.find_by_code(&code.digest()).await.unwrap(), None, "the old code stops working");
    let current = s.invitations.find_by_code(&new_code.digest()).await.unwrap().unwrap();
    assert_eq!(current.message_id, message.message_id);
    let stale =
        s.invitations.redeem(&invitation, &credentials(&grace), &redemption(&invitation, &grace.contact_id), NOW).await;
    assert!(matches!(stale, Err(RedeemError::InvitationInvalid)), "a redemption with the old code's invitation fails");
    assert!(
        !s.invitations.replace_code(&invitation, &InvitationCode::generate().digest(), &message, &[]).await.unwrap(),
        "a second resend from the stale copy"
    );

    let revoked_now =
        s.invitations.revoke(&invitation.invitation_id, NOW).await.unwrap().expect("the revoked invitation");
    assert!(revoked_now.revoked);
    assert_eq!(revoked_now.code_digest, current.code_digest, "returned as it now stands");
    let revoked =
        s.invitations.redeem(&current, &credentials(&grace), &redemption(&current, &grace.contact_id), NOW).await;
    assert!(matches!(revoked, Err(RedeemError::InvitationInvalid)));
    assert_eq!(s.invitations.revoke(&"no-such-invitation".into(), NOW).await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_outbox_claims_once_and_removes_the_secret_when_sent() {
    let s = stores();
    let (_, invitation, _) = invited(&s, InvitationType::Single, 1).await;
    let id = &invitation.message_id;
    let leased = |claim: Claim| match claim {
        Claim::Leased(message) => message.lease_until.expect("a lease has an end"),
        other => panic!("expected a lease, got {other:?}"),
    };
    let first = leased(s.outbox.claim(id, NOW).await.unwrap());
    assert_eq!(first, NOW + LEASE_SECS);
    assert_eq!(
        s.outbox.claim(id, NOW + 1).await.unwrap(),
        Claim::Busy { lease_until: first },
        "a second delivery during the lease is told to come back, not that it is done"
    );
    s.outbox.release(id, first + 1).await.unwrap();
    assert!(
        matches!(s.outbox.claim(id, NOW + 1).await.unwrap(), Claim::Busy { .. }),
        "only its holder gives a lease back"
    );
    s.outbox.release(id, first).await.unwrap();
    let second = leased(s.outbox.claim(id, NOW + 2).await.unwrap());
    let third = s.outbox.claim(id, second).await.unwrap();
    assert!(matches!(&third, Claim::Leased(m) if m.attempts == 3), "an expired lease may be retaken: {third:?}");
    s.outbox.release(id, second).await.unwrap();
    assert!(
        matches!(s.outbox.claim(id, second + 1).await.unwrap(), Claim::Busy { .. }),
        "the old holder cannot release the new lease"
    );
    s.outbox.mark_sent(id, NOW + 400).await.unwrap();
    assert!(
        matches!(s.outbox.claim(id, NOW + 10_000).await.unwrap(), Claim::Settled(m) if m.status == MessageStatus::Sent),
        "never sent twice"
    );
    assert_eq!(s.outbox.claim(&"no-such-message".into(), NOW).await.unwrap(), Claim::Missing);
    let item = s
        .tables
        .client
        .get_item()
        .table_name(&s.tables.outbox)
        .key("pk", aws_sdk_dynamodb::types::AttributeValue::S(id.to_string()))
        .send()
        .await
        .unwrap()
        .item
        .unwrap();
    assert!(!item.contains_key("secret"), "the plain code is gone");
    assert_eq!(item["status"].as_s().unwrap(), "sent");

    s.invitations
        .record_delivery(&invitation.invitation_id, &"an-older-message".into(), Delivery::Failed, Some("old"), NOW)
        .await
        .unwrap();
    assert_eq!(
        s.invitations.get(&invitation.invitation_id).await.unwrap().unwrap().delivery,
        Delivery::Pending,
        "an older message's outcome is ignored"
    );
    s.invitations.record_delivery(&invitation.invitation_id, id, Delivery::Sent, None, NOW).await.unwrap();
    assert_eq!(s.invitations.get(&invitation.invitation_id).await.unwrap().unwrap().delivery, Delivery::Sent);
}

/// An invitation whose emails are switched off is held: no TTL, so DynamoDB never deletes it
/// unsent; it can still be claimed and sent later, and settling it starts its retention then.
#[tokio::test(flavor = "multi_thread")]
async fn a_held_message_never_expires_unsent_and_its_retention_starts_when_settled() {
    let s = stores();
    let (_, invitation, _) = invited(&s, InvitationType::Single, 1).await;
    let id = &invitation.message_id;
    let item = |s: &Stores| {
        let (client, table, key) = (s.tables.client.clone(), s.tables.outbox.clone(), id.to_string());
        async move {
            client
                .get_item()
                .table_name(table)
                .key("pk", aws_sdk_dynamodb::types::AttributeValue::S(key))
                .send()
                .await
                .unwrap()
                .item
                .unwrap()
        }
    };
    let queued = item(&s).await;
    assert!(queued.contains_key("ttl"), "a queued message expires in time, as before");

    s.outbox.hold(id, NOW + 5).await.unwrap();
    s.outbox.hold(id, NOW + 9).await.unwrap();
    let held = item(&s).await;
    assert!(!held.contains_key("ttl"), "held: nothing deletes it unsent");
    assert_eq!(held["held_since"].as_n().unwrap(), &(NOW + 5).to_string(), "held since the first time");
    assert_eq!(held["status"].as_s().unwrap(), "pending");

    // Switched on and queued again: it is claimed and sent like any other, and kept from then on.
    assert!(matches!(s.outbox.claim(id, NOW + 100).await.unwrap(), Claim::Leased(_)));
    s.outbox.mark_sent(id, NOW + 101).await.unwrap();
    let sent = item(&s).await;
    assert_eq!(sent["ttl"].as_n().unwrap(), &(NOW + 101 + RETENTION_SECS).to_string());
    s.outbox.hold(id, NOW + 200).await.unwrap();
    assert!(item(&s).await.contains_key("ttl"), "a settled message is not held");
}

#[tokio::test(flavor = "multi_thread")]
async fn idempotency_keys_hold_answer_conflict_and_expire_in_dynamodb() {
    use portal::domain::idempotency::{IdempotencyKey, IdempotentStart, KEY_SECS, RUNNING_SECS};
    let s = stores();
    let key = IdempotencyKey::new("POST /admin/invitations", "admin", "k", "request-a".into()).unwrap();
    let other_body = IdempotencyKey { request_digest: "request-b".into(), ..key.clone() };
    assert_eq!(s.invitations.begin_idempotent(&key, NOW).await.unwrap(), IdempotentStart::First);
    assert_eq!(s.invitations.begin_idempotent(&key, NOW + 1).await.unwrap(), IdempotentStart::Running);
    assert_eq!(s.invitations.begin_idempotent(&other_body, NOW + 1).await.unwrap(), IdempotentStart::Mismatch);
    s.invitations.finish_idempotent(&key, 201, r#"{"invitation_id":"i-1"}"#, NOW + 2).await.unwrap();
    assert_eq!(
        s.invitations.begin_idempotent(&key, NOW + 3).await.unwrap(),
        IdempotentStart::Answered { status: 201, body: r#"{"invitation_id":"i-1"}"#.into() }
    );
    s.invitations.abandon_idempotent(&key).await.unwrap();
    assert!(
        matches!(s.invitations.begin_idempotent(&key, NOW + 4).await.unwrap(), IdempotentStart::Answered { .. }),
        "an answered key stays"
    );
    assert_eq!(
        s.invitations.begin_idempotent(&other_body, NOW + KEY_SECS).await.unwrap(),
        IdempotentStart::First,
        "24 hours later it is a new key"
    );

    // A request that died holding its key: after a minute a retry runs in its place.
    let died = IdempotencyKey::new("POST /admin/invitations", "admin", "died", "request-a".into()).unwrap();
    assert_eq!(s.invitations.begin_idempotent(&died, NOW).await.unwrap(), IdempotentStart::First);
    assert_eq!(s.invitations.begin_idempotent(&died, NOW + RUNNING_SECS).await.unwrap(), IdempotentStart::First);
    // A refused request lets go of its key.
    s.invitations.abandon_idempotent(&died).await.unwrap();
    let again = IdempotencyKey { request_digest: "request-c".into(), ..died };
    assert_eq!(s.invitations.begin_idempotent(&again, NOW + RUNNING_SECS + 1).await.unwrap(), IdempotentStart::First);
}

#[tokio::test(flavor = "multi_thread")]
async fn operators_see_unsent_messages_and_requeue_them_as_new_stream_records() {
    use portal::usecases::outbox_repair::{self, RetryOutcome, Selection};
    let s = stores();
    let settings = portal_testkit::settings(&[]);
    let (_, stuck, _) = invited(&s, InvitationType::Single, 1).await;
    let (_, sent, _) = invited(&s, InvitationType::Single, 1).await;
    let Claim::Leased(_) = s.outbox.claim(&sent.message_id, NOW).await.unwrap() else { panic!("claimable") };
    s.outbox.mark_sent(&sent.message_id, NOW).await.unwrap();

    let later = NOW + 3600;
    let report = outbox_repair::status(&s.outbox.list().await.unwrap(), later, 600);
    assert_eq!(report.unsent.len(), 1);
    assert_eq!((report.unsent[0].message_id.clone(), report.unsent[0].stale), (stuck.message_id.clone(), true));
    assert_eq!(report.counts.get(&("sent".into(), "invitation".into())), Some(&1));
    let shown = format!("{report:?}");
    assert!(!shown.contains("example.com") && !shown.contains("secret"), "no address, no secret: {shown}");

    let outcomes =
        outbox_repair::retry(&s.outbox, &settings, &Selection::OlderThan { secs: 600 }, later).await.unwrap();
    let [(original, RetryOutcome::Requeued(copy))] = outcomes.as_slice() else { panic!("{outcomes:?}") };
    assert_eq!(original, &stuck.message_id);
    // The copy is a new item (an INSERT for the stream), with the code; the invitation points to it.
    let Claim::Leased(queued) = s.outbox.claim(copy, later).await.unwrap() else { panic!("the copy is pending") };
    assert!(queued.secret.is_some() && queued.invitation_id.as_ref() == Some(&stuck.invitation_id));
    let invitation = s.invitations.get(&stuck.invitation_id).await.unwrap().unwrap();
    assert_eq!(&invitation.message_id, copy);
    assert!(matches!(s.outbox.claim(&stuck.message_id, later).await.unwrap(), Claim::Settled(m) if m.secret.is_none()));

    // A sent message, and one whose code went with its failure, are not queued again.
    let by_id = |id: &MessageId| Selection::Id(id.clone());
    let sent_again = outbox_repair::retry(&s.outbox, &settings, &by_id(&sent.message_id), later).await.unwrap();
    assert_eq!(sent_again, [(sent.message_id.clone(), RetryOutcome::AlreadySent)]);
    let gone = outbox_repair::retry(&s.outbox, &settings, &by_id(&stuck.message_id), later).await.unwrap();
    assert_eq!(gone, [(stuck.message_id.clone(), RetryOutcome::SecretGone)]);
}
