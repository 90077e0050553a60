//! The send-email function: triggered by the outbox table's stream, it hands each new record to
//! the delivery use case ([`crate::usecases::delivery`]) and reports the records that are not done
//! as batch item failures, so that the stream delivers them again. Each batch ends with one
//! CloudWatch embedded-metric line (see [`BatchMetrics`]).

use aws_lambda_events::event::dynamodb::{Event, EventRecord};
use aws_lambda_events::event::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use serde::Deserialize;

use crate::app::Portal;
use crate::domain::import::CHUNK_KIND;
use crate::domain::outbox::OutboxMessage;
use crate::metrics::BatchMetrics;
use crate::usecases::delivery::{self, Outcome};

/// Handles one stream batch; records are delivered concurrently (a batch is at most a few
/// records, within SES's sending rate).
pub async fn handle(portal: &Portal, event: Event) -> DynamoDbEventResponse {
    let outcomes = futures::future::join_all(event.records.iter().map(|record| handle_record(portal, record))).await;
    let mut response = DynamoDbEventResponse::default();
    let mut metrics = BatchMetrics::default();
    for (record, (outcome, age)) in event.records.iter().zip(outcomes) {
        metrics.saw_message_aged(age);
        match outcome {
            Ok(Outcome::Sent) => metrics.sent += 1,
            Ok(Outcome::Published) => metrics.published += 1,
            Ok(Outcome::Failed) => metrics.failed += 1,
            Ok(Outcome::Skipped) => {}
            Err(()) => {
                metrics.retried += 1;
                let mut failure = DynamoDbBatchItemFailure::default();
                failure.item_identifier = record.change.sequence_number.clone();
                response.batch_item_failures.push(failure);
            }
        }
    }
    metrics.emit(&portal.settings.metrics_stack);
    response
}

/// The record's outcome (Err: report it for a retry, already logged) and the age of its message.
async fn handle_record(portal: &Portal, record: &EventRecord) -> (Result<Outcome, ()>, Option<i64>) {
    if record.event_name != "INSERT" {
        return (Ok(Outcome::Skipped), None);
    }
    if let Some(chunk_id) = chunk_id(record) {
        let outcome = delivery::import_chunk(portal, &chunk_id).await.map_err(|err| {
            tracing::error!(chunk_id, error = format!("{err:#}"), "import chunk not done; the stream will retry");
        });
        return (outcome, None);
    }
    let message: OutboxMessage = match serde_dynamo::from_item(record.change.new_image.clone()) {
        Ok(message) => message,
        Err(err) => {
            // Retrying cannot make it readable; blocking the stream on it would stop all email.
            tracing::error!(error = %err, event_id = %record.event_id, "unreadable outbox record skipped");
            return (Ok(Outcome::Skipped), None);
        }
    };
    let age = Some(portal.clock.now() - message.created_at);
    let outcome = delivery::deliver(portal, &message).await.map_err(|err| {
        tracing::error!(message_id = %message.message_id, error = format!("{err:#}"), "not done; the stream will retry");
    });
    (outcome, age)
}

#[derive(Deserialize)]
struct Kind {
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    pk: Option<String>,
}

/// The bulk import chunk a new outbox record is, if it is one (`kind` = `import_chunk`).
fn chunk_id(record: &EventRecord) -> Option<String> {
    let probe: Kind = serde_dynamo::from_item(record.change.new_image.clone()).ok()?;
    if probe.kind.as_deref() != Some(CHUNK_KIND) {
        return None;
    }
    probe.pk
}
