//! The operators' repair path for the outbox (`portal-admin outbox ...`): what is pending, failed
//! or stale, and re-queueing messages that did not go out. Shows no secret and no address.

use std::collections::BTreeMap;

use crate::config::Settings;
use crate::domain::ids::{InvitationId, MessageId};
use crate::domain::outbox::{MessageStatus, OutboxMessage};
use crate::domain::time::{Timestamp, parse_rfc3339};
use crate::email;
use crate::ports::Outbox;

/// One unsent message, as an operator sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct UnsentMessage {
    pub message_id: MessageId,
    pub kind: String,
    pub status: String,
    pub age_secs: i64,
    pub attempts: u32,
    pub invitation_id: Option<InvitationId>,
    pub error: Option<String>,
    /// Older than the stale threshold and not sent (pending, an expired lease, or failed).
    pub stale: bool,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct OutboxStatus {
    /// Messages by status and kind.
    pub counts: BTreeMap<(String, String), usize>,
    /// Every message not sent, oldest first.
    pub unsent: Vec<UnsentMessage>,
}

fn name<T: serde::Serialize>(value: T) -> String {
    serde_json::to_value(value).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
}

/// The outbox as it stands at `now`; a message unsent for `stale_after_secs` is stale.
pub fn status(messages: &[OutboxMessage], now: Timestamp, stale_after_secs: i64) -> OutboxStatus {
    let mut report = OutboxStatus::default();
    for message in messages {
        *report.counts.entry((name(message.status), name(message.kind))).or_default() += 1;
        if message.status == MessageStatus::Sent {
            continue;
        }
        let age_secs = now - message.created_at;
        report.unsent.push(UnsentMessage {
            message_id: message.message_id.clone(),
            kind: name(message.kind),
            status: name(message.status),
            age_secs,
            attempts: message.attempts,
            invitation_id: message.invitation_id.clone(),
            error: message.error.clone(),
            stale: age_secs >= stale_after_secs,
        });
    }
    report.unsent.sort_by_key(|m| std::cmp::Reverse(m.age_secs));
    report
}

/// Which messages to retry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selection {
    Id(MessageId),
    OlderThan { secs: i64 },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RetryOutcome {
    /// Queued again as this new message.
    Requeued(MessageId),
    AlreadySent,
    /// A run holds its lease right now: it is being sent.
    BeingSent,
    /// It can no longer be sent as it was: its code or link, and its address, were removed when it
    /// failed.
    SecretGone,
    /// It changed while this ran (sent, or re-queued by another operator).
    ChangedMeanwhile,
}

/// Re-queues the selected unsent messages (as new messages, so that the stream delivers them).
pub async fn retry(
    outbox: &dyn Outbox,
    settings: &Settings,
    selection: &Selection,
    now: Timestamp,
) -> anyhow::Result<Vec<(MessageId, RetryOutcome)>> {
    let messages = outbox.list().await?;
    let chosen = messages.iter().filter(|m| match selection {
        Selection::Id(id) => m.message_id == *id,
        Selection::OlderThan { secs } => m.status != MessageStatus::Sent && now - m.created_at >= *secs,
    });
    let mut outcomes = Vec::new();
    for message in chosen {
        let outcome = match message.requeued(now) {
            None => RetryOutcome::AlreadySent,
            Some(_) if message.status == MessageStatus::Sending && message.lease_until.is_some_and(|l| l > now) => {
                RetryOutcome::BeingSent
            }
            Some(copy) if email::render(settings, &copy).is_none() => RetryOutcome::SecretGone,
            Some(copy) => match outbox.requeue(message, &copy, now).await? {
                true => RetryOutcome::Requeued(copy.message_id),
                false => RetryOutcome::ChangedMeanwhile,
            },
        };
        outcomes.push((message.message_id.clone(), outcome));
    }
    Ok(outcomes)
}

/// A batch the stream's event source mapping gave up on, from its failure queue (the `OnFailure`
/// destination's invocation record, `DDBStreamBatchInfo`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FailedBatch {
    pub shard_id: String,
    pub start_sequence_number: String,
    pub end_sequence_number: String,
    pub batch_size: u64,
    pub first_arrival: Timestamp,
    pub last_arrival: Timestamp,
}

/// The failed batches in `input`: failure-queue message bodies, one JSON document each, or the
/// output of `aws sqs receive-message` (`{"Messages": [{"Body": ...}]}`).
pub fn failed_batches(input: &str) -> anyhow::Result<Vec<FailedBatch>> {
    let mut bodies: Vec<serde_json::Value> = Vec::new();
    for document in serde_json::Deserializer::from_str(input).into_iter::<serde_json::Value>() {
        let document = document.map_err(|e| anyhow::anyhow!("the input is not JSON: {e}"))?;
        match document.get("Messages").and_then(|m| m.as_array()) {
            Some(messages) => {
                for message in messages {
                    let body = message.get("Body").and_then(|b| b.as_str()).unwrap_or_default();
                    bodies.push(
                        serde_json::from_str(body).map_err(|e| anyhow::anyhow!("a message body is not JSON: {e}"))?,
                    );
                }
            }
            None => bodies.push(document),
        }
    }
    bodies
        .iter()
        .map(|body| {
            let info =
                body.get("DDBStreamBatchInfo").ok_or_else(|| anyhow::anyhow!("no DDBStreamBatchInfo in {body}"))?;
            let text = |name: &str| {
                info.get(name).and_then(|v| v.as_str()).map(str::to_string).ok_or_else(|| anyhow::anyhow!("no {name}"))
            };
            let time = |name: &str| {
                text(name).and_then(|t| parse_rfc3339(&t).ok_or_else(|| anyhow::anyhow!("{name} is not a time")))
            };
            Ok(FailedBatch {
                shard_id: text("shardId")?,
                start_sequence_number: text("startSequenceNumber")?,
                end_sequence_number: text("endSequenceNumber")?,
                batch_size: info.get("batchSize").and_then(|v| v.as_u64()).unwrap_or(0),
                first_arrival: time("approximateArrivalOfFirstRecord")?,
                last_arrival: time("approximateArrivalOfLastRecord")?,
            })
        })
        .collect()
}

/// The unsent messages a failed batch held: those queued while its records arrived on the stream
/// (a record arrives when its item is written; a second either way for the clocks' rounding).
/// Resolved by time rather than by sequence number, which would need the Streams API.
pub fn messages_of<'a>(batch: &FailedBatch, messages: &'a [OutboxMessage]) -> Vec<&'a OutboxMessage> {
    let (from, to) = (batch.first_arrival - 1, batch.last_arrival + 1);
    let mut found: Vec<&OutboxMessage> = messages
        .iter()
        .filter(|m| m.status != MessageStatus::Sent && m.created_at >= from && m.created_at <= to)
        .collect();
    found.sort_by_key(|m| m.created_at);
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::outbox::MessageKind;

    /// An `OnFailure` record as Lambda (and the local relay) sends it to the failure queue.
    fn failure_record(first: &str, last: &str) -> String {
        serde_json::json!({
            "requestContext": {"requestId": "r", "condition": "RetryAttemptsExhausted", "approximateInvokeCount": 6},
            "version": "1.0", "timestamp": last,
            "DDBStreamBatchInfo": {"shardId": "shardId-1", "startSequenceNumber": "100", "endSequenceNumber": "200",
                "batchSize": 2, "approximateArrivalOfFirstRecord": first, "approximateArrivalOfLastRecord": last,
                "streamArn": "arn:aws:dynamodb:us-east-1:123456789012:table/t/stream/x"}
        })
        .to_string()
    }

    #[test]
    fn failure_queue_records_resolve_to_the_unsent_messages_queued_while_they_arrived() {
        let body = failure_record("2027-01-15T08:00:00.000Z", "2027-01-15T08:00:05.500Z");
        let received = serde_json::json!({"Messages": [{"MessageId": "m", "Body": body}]}).to_string();
        for input in [body.clone(), received, format!("{body}\n{body}")] {
            let batches = failed_batches(&input).unwrap();
            assert!(!batches.is_empty());
            assert_eq!(batches[0].shard_id, "shardId-1");
            assert_eq!(
                (batches[0].start_sequence_number.as_str(), batches[0].end_sequence_number.as_str()),
                ("100", "200")
            );
            assert_eq!(batches[0].first_arrival, Timestamp::from_secs(1_800_000_000));
        }
        let at = |secs: i64, status: MessageStatus| {
            let mut m =
                OutboxMessage::new(MessageKind::ConfirmEmail, "a@example.com", "A", None, Timestamp::from_secs(secs));
            m.status = status;
            m
        };
        let messages = [
            at(1_800_000_000 - 5, MessageStatus::Pending),
            at(1_800_000_000, MessageStatus::Pending),
            at(1_800_000_003, MessageStatus::Sent),
            at(1_800_000_005, MessageStatus::Sending),
            at(1_800_000_060, MessageStatus::Pending),
        ];
        let batch = &failed_batches(&body).unwrap()[0];
        let found: Vec<i64> = messages_of(batch, &messages).iter().map(|m| m.created_at.as_secs()).collect();
        assert_eq!(found, [1_800_000_000, 1_800_000_005], "unsent, within the arrival window");
        assert!(failed_batches("{\"no\": 1}").is_err());
        assert!(failed_batches("not json").is_err());
    }
}
