//! Group invitations against the real DynamoDB API (moto): a group invitation to 100 contacts is
//! fanned out in transactions under DynamoDB's 100-item limit, each contact is emailed once even
//! when the fan-out's stream record is delivered twice, and the per-contact deliveries add up to
//! the invitation's `delivery`.

use std::collections::HashSet;
use std::sync::Arc;

use portal::domain::contact::{Contact, NewContact};
use portal::domain::email::Email;
use portal::domain::ids::ContactId;
use portal::domain::invitation::{Delivery, InvitationType};
use portal::domain::outbox::{MessageKind, MessageStatus, OutboxMessage};
use portal::domain::time::Timestamp;
use portal::handlers::send_email;
use portal::usecases::invite::{self, InvitationRequest, Invitee};
use portal::{Edges, Portal};
use portal_testkit::memory::MemoryMailer;
use portal_testkit::moto::fresh_tables;
use serde_json::{Value, json};

fn contact(i: usize) -> Contact {
    Contact::new(
        NewContact {
            email: Email::parse(&format!("member{i}@example.com")).unwrap(),
            first_name: format!("Member{i}"),
            last_name: "Team".into(),
            username: None,
            phone: None,
            roles: vec![],
            password_hash: None,
        },
        Timestamp::from_secs(1_800_000_000),
    )
}

fn stream_record(message: &OutboxMessage, sequence: usize) -> Value {
    let item: serde_dynamo::Item = serde_dynamo::to_item(message).unwrap();
    json!({
        "eventID": format!("event-{sequence}"),
        "eventName": "INSERT",
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "eventSourceARN": "arn:aws:dynamodb:us-east-1:123456789012:table/portal-outbox/stream/2026-11-27T00:00:00.000",
        "dynamodb": {
            "ApproximateCreationDateTime": 1_800_000_000.0,
            "Keys": {"pk": {"S": message.message_id}},
            "NewImage": item,
            "SequenceNumber": sequence.to_string(),
            "SizeBytes": 256,
            "StreamViewType": "NEW_IMAGE"
        }
    })
}

async fn run_batch(portal: &Portal, messages: &[OutboxMessage]) -> usize {
    let records: Vec<Value> = messages.iter().enumerate().map(|(i, m)| stream_record(m, 100 + i)).collect();
    let event: aws_lambda_events::event::dynamodb::Event =
        serde_json::from_value(json!({ "Records": records })).unwrap();
    send_email::handle(portal, event).await.batch_item_failures.len()
}

#[tokio::test]
async fn a_group_invitation_to_100_contacts_emails_each_once_even_when_its_fan_out_runs_twice() {
    let tables = fresh_tables();
    let mailer = Arc::new(MemoryMailer::default());
    let portal = tables.portal_with(&[], Edges { mailer: mailer.clone(), ..portal_testkit::edges_in_memory() });
    let admin = contact(1000);
    let mut ids: Vec<ContactId> = Vec::new();
    for i in 0..100 {
        let member = contact(i);
        portal.contacts.create(&member).await.unwrap();
        ids.push(member.contact_id.clone());
    }
    let request = InvitationRequest {
        invitee: Invitee::Contacts(ids.clone()),
        kind: InvitationType::Group,
        max_redemptions: 100,
        expires_in_days: None,
        roles: vec![],
        account_id: None,
        redirect_path: None,
    };
    let invitation = invite::invite(&portal, &portal_testkit::from("192.0.2.1"), &admin, request).await.unwrap();
    let deliveries = portal.invitations.deliveries(&invitation.invitation_id).await.unwrap();
    assert_eq!(deliveries.len(), 100);
    assert!(deliveries.values().all(|d| d.status == Delivery::Pending));

    let fanout: Vec<OutboxMessage> =
        portal.outbox.list().await.unwrap().into_iter().filter(|m| m.kind == MessageKind::InvitationFanout).collect();
    assert_eq!(fanout.len(), 1);
    // The fan-out's record delivered twice: once, then again after it finished.
    assert_eq!(run_batch(&portal, &fanout).await, 0);
    assert_eq!(run_batch(&portal, &fanout).await, 0);
    // A late expansion from the start is refused by the progress marker: nothing written.
    let stale = portal.outbox.fan_out(&fanout[0].message_id, 0, &[]).await.unwrap();
    assert!(!stale, "the marker moved past 0");

    let outbox = portal.outbox.list().await.unwrap();
    let settled = outbox.iter().find(|m| m.message_id == fanout[0].message_id).unwrap();
    assert_eq!((settled.status, settled.fanned_out, settled.secret.is_none()), (MessageStatus::Sent, 100, true));
    let per_contact: Vec<OutboxMessage> = outbox.into_iter().filter(|m| m.kind == MessageKind::Invitation).collect();
    assert_eq!(per_contact.len(), 100, "one email per contact queued");
    let addresses: HashSet<&str> = per_contact.iter().map(|m| m.to.as_str()).collect();
    assert_eq!(addresses.len(), 100);

    for chunk in per_contact.chunks(25) {
        assert_eq!(run_batch(&portal, chunk).await, 0);
    }
    // Every per-contact record delivered again: nothing more is sent.
    for chunk in per_contact.chunks(25) {
        assert_eq!(run_batch(&portal, chunk).await, 0);
    }
    let sent = mailer.sent();
    assert_eq!(sent.len(), 100, "each contact emailed once");
    let codes: HashSet<String> =
        sent.iter().map(|e| e.text.split("code=").nth(1).unwrap().lines().next().unwrap().to_string()).collect();
    assert_eq!(codes.len(), 1, "the one group code");

    let deliveries = portal.invitations.deliveries(&invitation.invitation_id).await.unwrap();
    assert!(deliveries.values().all(|d| d.status == Delivery::Sent));
    let stored = portal.invitations.get(&invitation.invitation_id).await.unwrap().unwrap();
    assert_eq!(stored.delivery, Delivery::Sent);
}

#[tokio::test]
async fn a_failed_contact_delivery_makes_the_aggregate_failed_on_dynamodb() {
    let tables = fresh_tables();
    let portal = tables.portal(&[]);
    let admin = contact(1000);
    let mut ids = Vec::new();
    for i in 0..3 {
        let member = contact(i);
        portal.contacts.create(&member).await.unwrap();
        ids.push(member.contact_id.clone());
    }
    let request = InvitationRequest {
        invitee: Invitee::Contacts(ids.clone()),
        kind: InvitationType::Group,
        max_redemptions: 3,
        expires_in_days: None,
        roles: vec![],
        account_id: None,
        redirect_path: None,
    };
    let invitation = invite::invite(&portal, &portal_testkit::from("192.0.2.1"), &admin, request).await.unwrap();
    let store = &portal.invitations;
    let (id, fanout, now) = (&invitation.invitation_id, &invitation.message_id, Timestamp::from_secs(1_800_000_100));
    store.record_contact_delivery(id, fanout, &ids[0], Delivery::Sent, None, now).await.unwrap();
    assert_eq!(store.get(id).await.unwrap().unwrap().delivery, Delivery::Pending);
    store.record_contact_delivery(id, fanout, &ids[1], Delivery::Failed, Some("MessageRejected"), now).await.unwrap();
    store.record_contact_delivery(id, fanout, &ids[2], Delivery::Sent, None, now).await.unwrap();
    let stored = store.get(id).await.unwrap().unwrap();
    assert_eq!(stored.delivery, Delivery::Failed);
    assert!(stored.delivery_error.unwrap().contains("MessageRejected"));
    // An older fan-out's outcome is ignored.
    store.record_contact_delivery(id, &"old".into(), &ids[1], Delivery::Sent, None, now).await.unwrap();
    assert_eq!(store.deliveries(id).await.unwrap()[&ids[1]].status, Delivery::Failed);
}
