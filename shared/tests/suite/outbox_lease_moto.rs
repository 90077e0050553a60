//! Retries within a lease (issue 19, item 7) against the real DynamoDB API (moto) and the system
//! clock: a delivery that finds another run's lease about to run out waits it out (in real time)
//! and sends, reporting nothing to the stream for a retry; a duplicate delivery afterwards finds
//! the message sent.

use std::sync::Arc;

use portal::Edges;
use portal::domain::outbox::{LEASE_SECS, MessageKind, MessageStatus, OutboxMessage};
use portal::handlers::send_email;
use portal::ports::Queued;
use portal_testkit::memory::MemoryMailer;
use portal_testkit::moto::fresh_tables;
use serde_json::json;

fn stream_event(message: &OutboxMessage) -> aws_lambda_events::event::dynamodb::Event {
    let item: serde_dynamo::Item = serde_dynamo::to_item(message).unwrap();
    serde_json::from_value(json!({"Records": [{
        "eventID": "event-1",
        "eventName": "INSERT",
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "eventSourceARN": "arn:aws:dynamodb:us-east-1:123456789012:table/portal-outbox/stream/2026-12-07T00:00:00.000",
        "dynamodb": {
            "ApproximateCreationDateTime": 1_800_000_000.0,
            "Keys": {"pk": {"S": message.message_id}},
            "NewImage": item,
            "SequenceNumber": "1",
            "SizeBytes": 256,
            "StreamViewType": "NEW_IMAGE"
        }
    }]}))
    .unwrap()
}

#[tokio::test]
async fn a_delivery_waits_out_a_lease_about_to_end_and_sends_without_a_retry() {
    let tables = fresh_tables();
    let mailer = Arc::new(MemoryMailer::default());
    let portal = tables.portal_with(&[], Edges { mailer: mailer.clone(), ..portal_testkit::edges_in_memory() });
    let now = portal.clock.now();
    let mut notice = OutboxMessage::new(MessageKind::PasswordChangedNotice, "ada@example.com", "Ada", None, now);
    notice.detail = None;
    portal.contacts.queue_emails(&[Queued::new(notice.clone())]).await.unwrap();
    // Another run claimed it 28 s ago and died: 2 s of its lease are left.
    let taken = portal.outbox.claim(&notice.message_id, now - (LEASE_SECS - 2)).await.unwrap();
    assert!(matches!(taken, portal::domain::outbox::Claim::Leased(_)), "{taken:?}");

    let started = std::time::Instant::now();
    let answer = send_email::handle(&portal, stream_event(&notice)).await;
    assert!(answer.batch_item_failures.is_empty(), "no retry spent: {answer:?}");
    let waited = started.elapsed().as_secs_f64();
    assert!((1.0..8.0).contains(&waited), "it waited for the lease, not longer: {waited:.1} s");
    assert_eq!(mailer.sent().len(), 1);
    let stored = portal.outbox.claim(&notice.message_id, portal.clock.now()).await.unwrap();
    assert!(
        matches!(&stored, portal::domain::outbox::Claim::Settled(m) if m.status == MessageStatus::Sent),
        "{stored:?}"
    );

    // The stream delivers the record again: it is done with, at once.
    let again = send_email::handle(&portal, stream_event(&notice)).await;
    assert!(again.batch_item_failures.is_empty());
    assert_eq!(mailer.sent().len(), 1, "one email");
}
