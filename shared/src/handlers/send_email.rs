//! The send-email function: triggered by the outbox table's stream, it sends each new message
//! through SES v2 and records the delivery.
//!
//! A record delivered twice sends one email (the claim is a conditional update). Throttling and
//! other passing SES faults are reported as partial batch failures, so only from that record on is
//! the batch retried; permanent refusals mark the message and the invitation failed and never block
//! the stream.

use crate::domain::ids::MessageId;
use aws_lambda_events::event::dynamodb::{Event, EventRecord};
use aws_lambda_events::event::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};

use crate::app::Portal;
use crate::domain::audit::AuditEvent;
use crate::domain::invitation::Delivery;
use crate::domain::outbox::{MessageKind, OutboxMessage};
use crate::email;
use crate::ports::SendError;
use crate::usecases::mail::{self, Prepared};

/// Handles one stream batch; records are sent concurrently (a batch is at most a few records,
/// within SES's sending rate).
pub async fn handle(portal: &Portal, event: Event) -> DynamoDbEventResponse {
    let outcomes = futures::future::join_all(event.records.iter().map(|record| handle_record(portal, record))).await;
    let mut response = DynamoDbEventResponse::default();
    for (record, outcome) in event.records.iter().zip(outcomes) {
        if outcome.is_err() {
            let mut failure = DynamoDbBatchItemFailure::default();
            failure.item_identifier = record.change.sequence_number.clone();
            response.batch_item_failures.push(failure);
        }
    }
    response
}

/// Ok when the record is done with (sent, failed for good, or nothing to do); Err to retry it.
async fn handle_record(portal: &Portal, record: &EventRecord) -> anyhow::Result<()> {
    if record.event_name != "INSERT" {
        return Ok(());
    }
    let message: OutboxMessage = match serde_dynamo::from_item(record.change.new_image.clone()) {
        Ok(message) => message,
        Err(err) => {
            // Retrying cannot make it readable; blocking the stream on it would stop all email.
            tracing::error!(error = %err, event_id = %record.event_id, "unreadable outbox record skipped");
            return Ok(());
        }
    };
    if message.kind == MessageKind::Invitation && !portal.settings.send_invitation_emails {
        tracing::info!(message_id = %message.message_id, "invitation emails are turned off; the message stays pending");
        return Ok(());
    }
    send(portal, &message.message_id).await.inspect_err(|err| {
        tracing::error!(message_id = %message.message_id, error = format!("{err:#}"), "sending failed; will retry");
    })
}

async fn send(portal: &Portal, message_id: &MessageId) -> anyhow::Result<()> {
    let now = portal.clock.now();
    let Some(message) = portal.outbox.claim(message_id, now).await? else {
        tracing::info!(message_id = %message_id, "message already sent or being sent; duplicate delivery skipped");
        return Ok(());
    };
    if let Some(invitation_id) = &message.invitation_id {
        let invitation = portal.invitations.get(invitation_id).await?;
        let current = invitation.is_some_and(|i| i.message_id == message.message_id && !i.revoked);
        if !current {
            // Its code no longer works: a resend replaced it, or the invitation was revoked.
            return fail(
                portal,
                &message,
                "superseded: the invitation was resent or revoked before this email went out",
            )
            .await;
        }
    }
    // A request that names only an address is resolved here, off the request path.
    let message = match mail::prepare(portal, &message).await {
        Ok(Prepared::Send(email)) => *email,
        Ok(Prepared::Nothing(reason)) => {
            portal.outbox.mark_sent(message_id, portal.clock.now()).await?;
            tracing::info!(audit = AuditEvent::EmailRequestUnanswered.as_str(), message_id = %message_id, reason, "audit");
            return Ok(());
        }
        Err(err) => {
            portal.outbox.release(message_id).await?;
            return Err(anyhow::anyhow!("preparing the email: {err:?}"));
        }
    };
    let Some(outgoing) = email::render(&portal.settings, &message) else {
        return fail(portal, &message, "the message holds nothing to send").await;
    };
    match portal.mailer.send(&outgoing).await {
        Ok(()) => {
            portal.outbox.mark_sent(message_id, portal.clock.now()).await?;
            if let Some(invitation_id) = &message.invitation_id {
                portal
                    .invitations
                    .record_delivery(invitation_id, message_id, Delivery::Sent, None, portal.clock.now())
                    .await?;
            }
            tracing::info!(
                audit = message.kind.sent_event().as_str(),
                message_id = %message_id,
                invitation_id = message.invitation_id.as_deref().unwrap_or("-"),
                "audit"
            );
            Ok(())
        }
        Err(SendError::Permanent(reason)) => fail(portal, &message, &reason).await,
        Err(SendError::Retryable(reason)) => {
            portal.outbox.release(message_id).await?;
            Err(anyhow::anyhow!("retryable send failure: {reason}"))
        }
    }
}

async fn fail(portal: &Portal, message: &OutboxMessage, reason: &str) -> anyhow::Result<()> {
    let now = portal.clock.now();
    portal.outbox.mark_failed(&message.message_id, reason, now).await?;
    if let Some(invitation_id) = &message.invitation_id {
        portal
            .invitations
            .record_delivery(invitation_id, &message.message_id, Delivery::Failed, Some(reason), now)
            .await?;
    }
    tracing::warn!(audit = AuditEvent::EmailFailed.as_str(), message_id = %message.message_id, reason, "audit");
    Ok(())
}
