//! The operators' repair path for the outbox (`portal-admin outbox ...`): what is pending, failed
//! or stale, and re-queueing messages that did not go out. Shows no secret and no address.

use std::collections::BTreeMap;

use crate::config::Settings;
use crate::domain::ids::{InvitationId, MessageId};
use crate::domain::outbox::{MessageStatus, OutboxMessage};
use crate::domain::time::Timestamp;
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
    /// It can no longer be sent as it was: its code or link was removed when it failed.
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
