//! Delivering the outbox (the use case of the `send-email` function, which hands it each new
//! record of the outbox table's stream): an email is claimed, sent through the mailer and marked,
//! its delivery recorded; a portal event is published on the bus; a group invitation's fan-out is
//! expanded into one email per contact; a bulk import's chunk is imported.
//!
//! A claim on a message is a lease ([`Claim`]), and a message is done only when it is settled
//! (sent, or failed for good):
//! - a fault before the email went out gives the lease back and is an error, so that the stream
//!   delivers the record again and the retry sends;
//! - a message delivered again while another run's lease is live is also an error, never done:
//!   that run may still fail, and only a later retry can tell;
//! - a fault after SES accepted the email (marking it sent, recording the delivery) keeps the
//!   lease, so no retry sends it again while it lasts; the retry then finds it settled and records
//!   what is left.
//!
//! Permanent refusals mark the message (and the invitation) failed and never block the stream.
//!
//! An outbox item of kind `event` is a portal event, not an email: it is published on the event
//! bus under the same lease ([`publish`]). The delivery of an invitation's current email is itself
//! a fact: `InvitationSent` / `InvitationDeliveryFailed` are queued in the write that settles it.

use std::time::Duration;

use crate::app::Portal;
use crate::domain::audit::AuditEvent;
use crate::domain::email::Email;
use crate::domain::event::{Fact, PortalEvent};
use crate::domain::group::FANOUT_BATCH;
use crate::domain::ids::MessageId;
use crate::domain::invitation::Delivery;
use crate::domain::outbox::{BUSY_WAIT_SECS, Claim, MessageKind, MessageStatus, OutboxMessage};
use crate::domain::pacing;
use crate::domain::time::Timestamp;
use crate::email;
use crate::ports::SendError;

use super::group_invite::contact_message;
use super::import::{self, ChunkOutcome};
use super::mail::{self, Prepared};

/// What became of one outbox record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Sent,
    /// A portal event went to the bus.
    Published,
    /// Failed for good (refused by SES, superseded, nothing to send).
    Failed,
    /// Nothing to do: turned off, settled before, gone, or not an email (a fan-out, a chunk).
    Skipped,
}

/// Delivers a new outbox message (an email, an event, a fan-out). Err: not done; the record is to
/// be delivered again.
pub async fn deliver(portal: &Portal, message: &OutboxMessage) -> anyhow::Result<Outcome> {
    if message.kind == MessageKind::Invitation && !portal.settings.send_invitation_emails {
        // Held, never dropped: no expiry until it is queued again once sending is switched on
        // (`portal-admin outbox requeue`), where a revoked invitation's email fails as superseded.
        portal.outbox.hold(&message.message_id, portal.clock.now()).await?;
        tracing::info!(message_id = %message.message_id, "invitation emails are turned off; the message is held, pending");
        return Ok(Outcome::Skipped);
    }
    claim_and_deliver(portal, &message.message_id).await
}

/// Imports the rows of a bulk import's chunk (an outbox item of kind `import_chunk`, see
/// [`crate::usecases::import`]). Err: not done; the record is to be delivered again.
pub async fn import_chunk(portal: &Portal, chunk_id: &str) -> anyhow::Result<Outcome> {
    if let ChunkOutcome::Processed(counts) = import::process_chunk(portal, chunk_id).await? {
        tracing::info!(
            chunk_id,
            rows = counts.rows,
            contacts_created = counts.contacts_created,
            invitations_created = counts.invitations_created,
            "import chunk processed"
        );
    }
    Ok(Outcome::Skipped)
}

async fn claim_and_deliver(portal: &Portal, message_id: &MessageId) -> anyhow::Result<Outcome> {
    let mut waited = false;
    let (message, now) = loop {
        let now = portal.clock.now();
        match portal.outbox.claim(message_id, now).await? {
            Claim::Leased(message) => break (message, now),
            // The run that holds it has ended by `lease_until` or will have soon (a crash, a
            // timeout): waiting it out here, once, keeps the stream's retries from running out
            // inside one lease.
            Claim::Busy { lease_until } if !waited => {
                waited = true;
                portal.clock.wait((lease_until - now).clamp(1, BUSY_WAIT_SECS) as u64).await;
                continue;
            }
            Claim::Busy { lease_until } => {
                anyhow::bail!("another delivery holds the lease until {}; retry later", lease_until.as_secs())
            }
            Claim::Settled(message) => {
                // A run that failed after settling it left only the delivery record to write.
                record_delivery(portal, &message).await?;
                tracing::info!(message_id = %message_id, "message already settled; duplicate delivery skipped");
                return Ok(Outcome::Skipped);
            }
            Claim::Missing => {
                tracing::warn!(message_id = %message_id, "no such outbox message (past its retention?); skipped");
                return Ok(Outcome::Skipped);
            }
        }
    };
    let lease_until = message.lease_until.unwrap_or(now);
    match deliver_leased(portal, &message).await {
        Ok(outcome) => Ok(outcome),
        Err(Fault::BeforeSending(err)) => {
            // Give the lease back so that the stream's retry sends at once; if that fails too, the
            // lease simply runs out and a later retry sends.
            if let Err(release) = portal.outbox.release(message_id, lease_until).await {
                tracing::warn!(message_id = %message_id, error = format!("{release:#}"), "lease not given back; it will expire");
            }
            Err(err)
        }
        Err(Fault::AfterSending(err)) => Err(err),
    }
}

/// Where a run failed: before the email went out (the lease goes back), or after SES accepted it
/// (the lease stays, so that no retry sends a second email while it lasts).
enum Fault {
    BeforeSending(anyhow::Error),
    AfterSending(anyhow::Error),
}

async fn deliver_leased(portal: &Portal, message: &OutboxMessage) -> Result<Outcome, Fault> {
    if message.kind == MessageKind::Event {
        return publish(portal, message).await;
    }
    if let Some(invitation_id) = &message.invitation_id {
        let invitation = portal.invitations.get(invitation_id).await.map_err(Fault::BeforeSending)?;
        // A group invitation's per-contact email is current while its fan-out is.
        let current_id = message.fanout_id.as_ref().unwrap_or(&message.message_id);
        let current = invitation.is_some_and(|i| i.message_id == *current_id && !i.revoked);
        if !current {
            // Its code no longer works: a resend replaced it, or the invitation was revoked.
            let reason = "superseded: the invitation was resent or revoked before this email went out";
            return fail(portal, message, reason, &[]).await.map_err(Fault::BeforeSending);
        }
    }
    if message.kind == MessageKind::InvitationFanout {
        return fan_out(portal, message).await;
    }
    if message.kind == MessageKind::Erasure {
        return erase(portal, message).await;
    }
    // A request that names only an address is resolved here, off the request path (a link's token
    // is issued now; a retry issues a new one, which voids this one).
    let prepared = match mail::prepare(portal, message).await {
        Ok(Prepared::Send(email)) => *email,
        Ok(Prepared::Nothing(reason)) => {
            mark_sent(portal, &message.message_id, &[]).await.map_err(Fault::BeforeSending)?;
            tracing::info!(audit = AuditEvent::EmailRequestUnanswered.as_str(), message_id = %message.message_id, reason, "audit");
            return Ok(Outcome::Skipped);
        }
        Err(err) => return Err(Fault::BeforeSending(anyhow::anyhow!("preparing the email: {err:?}"))),
    };
    // Mail to an address that bounced for good or was reported as spam stops here. The links that
    // prove an address are the exception: `mail::prepare` issues a confirmation link for a marked
    // address only when its owner asked for it, signed in (following it lifts the mark), and an
    // email change's link goes to the address the owner chose, re-authenticated.
    let proves_the_address = matches!(prepared.kind, MessageKind::ConfirmEmail | MessageKind::ConfirmNewEmail);
    if !proves_the_address && undeliverable(portal, &prepared.to).await.map_err(Fault::BeforeSending)? {
        let failed = delivery_facts(message, Delivery::Failed, portal.clock.now());
        return fail(portal, message, UNDELIVERABLE, &failed).await.map_err(Fault::BeforeSending);
    }
    let Some(outgoing) = email::render(&portal.settings, &prepared) else {
        let failed = delivery_facts(message, Delivery::Failed, portal.clock.now());
        return fail(portal, message, "the message holds nothing to send", &failed).await.map_err(Fault::BeforeSending);
    };
    // Invitation emails go out no faster than the account's sending rate, across every run (bulk
    // imports queue thousands); a message with no slot free soon enough goes back to the stream.
    let paced = message.kind == MessageKind::Invitation;
    if paced && !portal.pacer.wait_for_slot().await.map_err(Fault::BeforeSending)? {
        return Err(Fault::BeforeSending(anyhow::anyhow!("no sending slot free within the wait; retry later")));
    }
    match portal.mailer.send(&outgoing).await {
        Ok(()) => {
            let sent_facts = delivery_facts(message, Delivery::Sent, portal.clock.now());
            mark_sent(portal, &message.message_id, &sent_facts).await.map_err(Fault::AfterSending)?;
            let mut sent = message.clone();
            sent.status = MessageStatus::Sent;
            record_delivery(portal, &sent).await.map_err(Fault::AfterSending)?;
            tracing::info!(
                audit = message.kind.sent_event().as_str(),
                message_id = %message.message_id,
                invitation_id = message.invitation_id.as_deref().unwrap_or("-"),
                "audit"
            );
            Ok(Outcome::Sent)
        }
        Err(SendError::Permanent(reason)) => {
            let failed = delivery_facts(message, Delivery::Failed, portal.clock.now());
            fail(portal, message, &reason, &failed).await.map_err(Fault::BeforeSending)
        }
        Err(SendError::Retryable(reason)) => {
            if paced
                && pacing::is_throttling(&reason)
                && let Err(err) = portal.pacer.back_off().await
            {
                tracing::warn!(error = format!("{err:#}"), "backing off the sending rate failed");
            }
            Err(Fault::BeforeSending(anyhow::anyhow!("retryable send failure: {reason}")))
        }
    }
}

/// Why an email to a marked address failed (see `domain::deliverability`).
pub const UNDELIVERABLE: &str = "undeliverable: mail to this address bounced for good or was reported as spam; it is not sent until the person confirms the address again or changes it";

/// Whether mail to `to` is stopped (an address that does not parse is for SES to refuse).
async fn undeliverable(portal: &Portal, to: &str) -> anyhow::Result<bool> {
    match Email::parse(to) {
        Ok(address) => portal.contacts.is_undeliverable(&address).await,
        Err(_) => Ok(false),
    }
}

/// Runs a deleted account's erasure job (see `usecases::deletion`) and settles it. A fault leaves
/// it to the stream's retry, which finds less to erase.
async fn erase(portal: &Portal, message: &OutboxMessage) -> Result<Outcome, Fault> {
    let Some(contact_id) = &message.contact_id else {
        return fail(portal, message, "an erasure job names no account", &[]).await.map_err(Fault::BeforeSending);
    };
    let source = crate::domain::audit::SourceAddress::new(None);
    let erased = super::deletion::erase_remains(portal, contact_id, &source)
        .await
        .map_err(|err| Fault::BeforeSending(anyhow::anyhow!("erasing a deleted account's remains: {err:?}")))?;
    mark_sent(portal, &message.message_id, &[]).await.map_err(Fault::BeforeSending)?;
    tracing::info!(
        audit = AuditEvent::AccountErased.as_str(),
        contact_id = %contact_id,
        passkeys = erased.passkeys,
        sessions = erased.sessions,
        invitations = erased.invitations,
        "audit"
    );
    Ok(Outcome::Skipped)
}

/// Marks a message SES accepted as sent. Tried again (as new calls, after the SDK's own retries)
/// because this is the one write whose loss could cost a second email: were it lost, the message
/// would be sent again once its lease ran out.
async fn mark_sent(portal: &Portal, message_id: &MessageId, events: &[PortalEvent]) -> anyhow::Result<()> {
    const TRIES: u32 = 3;
    let mut tried = 1;
    loop {
        match portal.outbox.mark_sent_with_events(message_id, portal.clock.now(), events).await {
            Ok(()) => return Ok(()),
            Err(err) if tried == TRIES => return Err(err.context("SES accepted the email but marking it sent failed")),
            Err(err) => {
                tracing::warn!(message_id = %message_id, error = format!("{err:#}"), "marking a sent message failed; trying again");
                tokio::time::sleep(Duration::from_millis(200 * u64::from(tried))).await;
                tried += 1;
            }
        }
    }
}

/// Records a settled message's outcome on its invitation, if it has one (idempotent: a retry
/// writes the same).
async fn record_delivery(portal: &Portal, message: &OutboxMessage) -> anyhow::Result<()> {
    let Some(invitation_id) = &message.invitation_id else { return Ok(()) };
    let (delivery, error) = match message.status {
        MessageStatus::Sent => (Delivery::Sent, None),
        MessageStatus::Failed => (Delivery::Failed, message.error.as_deref()),
        MessageStatus::Pending | MessageStatus::Sending => return Ok(()),
    };
    let now: Timestamp = portal.clock.now();
    match (&message.fanout_id, &message.contact_id) {
        (Some(fanout_id), Some(contact_id)) => {
            portal
                .invitations
                .record_contact_delivery(invitation_id, fanout_id, contact_id, delivery, error, now)
                .await?
        }
        _ => portal.invitations.record_delivery(invitation_id, &message.message_id, delivery, error, now).await?,
    }
    if let Some(import_id) = &message.import_id {
        portal.imports.count_email(import_id, &message.message_id, delivery == Delivery::Sent).await?;
    }
    Ok(())
}

/// Marks the message failed for good, with `events` (its delivery's facts) in the same write.
async fn fail(
    portal: &Portal,
    message: &OutboxMessage,
    reason: &str,
    events: &[PortalEvent],
) -> anyhow::Result<Outcome> {
    portal.outbox.mark_failed_with_events(&message.message_id, reason, portal.clock.now(), events).await?;
    let mut failed = message.clone();
    failed.status = MessageStatus::Failed;
    failed.error = Some(reason.to_string());
    record_delivery(portal, &failed).await?;
    tracing::warn!(audit = AuditEvent::EmailFailed.as_str(), message_id = %message.message_id, reason, "audit");
    Ok(Outcome::Failed)
}

/// The facts of an invitation email's delivery: `InvitationSent` or `InvitationDeliveryFailed` for
/// an invitation's (current) email, nothing for other emails.
fn delivery_facts(message: &OutboxMessage, delivery: Delivery, now: Timestamp) -> Vec<PortalEvent> {
    let Some(invitation_id) = message.invitation_id.clone() else { return Vec::new() };
    let contact_id = message.contact_id.clone();
    let fact = match delivery {
        Delivery::Sent => Fact::InvitationSent { invitation_id, contact_id },
        Delivery::Failed => Fact::InvitationDeliveryFailed { invitation_id, contact_id },
        _ => return Vec::new(),
    };
    vec![fact.at(now)]
}

/// Publishes a leased event item and marks it published (`sent`). A bus fault (the call failed,
/// or the entry was refused) gives the lease back for the stream's retry: nothing is lost. A fault
/// after the bus took it keeps the lease, so no retry publishes it again while it lasts; should the
/// mark be lost for good, the retry after the lease publishes again under the same `event_id`,
/// which consumers de-duplicate.
async fn publish(portal: &Portal, message: &OutboxMessage) -> Result<Outcome, Fault> {
    let Some(event) = &message.event else {
        let reason = "an event item without its event";
        return fail(portal, message, reason, &[]).await.map_err(Fault::BeforeSending);
    };
    portal.events.publish(event).await.map_err(Fault::BeforeSending)?;
    mark_sent(portal, &message.message_id, &[]).await.map_err(Fault::AfterSending)?;
    tracing::info!(
        audit = AuditEvent::EventPublished.as_str(),
        message_id = %message.message_id,
        event_id = %event.event_id,
        detail_type = event.detail_type(),
        "audit"
    );
    Ok(Outcome::Published)
}

/// Expands a leased group invitation fan-out into one invitation email per recipient, at most
/// [`FANOUT_BATCH`](crate::domain::group::FANOUT_BATCH) per transaction, each moving the fan-out's
/// progress marker conditionally: a repeated or concurrent expansion never queues a contact's
/// email twice. A run that finds the marker moved gives the lease back; the retry resumes from
/// the marker. Then the fan-out is marked sent (its code leaves the item).
async fn fan_out(portal: &Portal, message: &OutboxMessage) -> Result<Outcome, Fault> {
    let now = portal.clock.now();
    let total = message.recipients.len();
    let mut done = message.fanned_out as usize;
    while done < total {
        let end = (done + FANOUT_BATCH).min(total);
        let batch: Vec<OutboxMessage> = (done..end).filter_map(|index| contact_message(message, index, now)).collect();
        if !portal.outbox.fan_out(&message.message_id, done as u32, &batch).await.map_err(Fault::BeforeSending)? {
            return Err(Fault::BeforeSending(anyhow::anyhow!("the fan-out's progress moved meanwhile; retry")));
        }
        done = end;
    }
    mark_sent(portal, &message.message_id, &[]).await.map_err(Fault::AfterSending)?;
    tracing::info!(
        message_id = %message.message_id,
        invitation_id = message.invitation_id.as_deref().unwrap_or("-"),
        recipients = total,
        "group invitation fanned out"
    );
    Ok(Outcome::Skipped)
}
