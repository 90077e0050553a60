//! Security notices to an account's own address (password, email, factors, passkeys): nobody can
//! silence them.
//!
//! They are never held back by the request allowances (which anyone can spend on an address with
//! a few forgot-password requests): they have their own allowance, per account, of
//! [`NOTICES_PER_ACCOUNT_PER_HOUR`]. A notice over it is held, and the held ones are summed up
//! in one later notice: the next one the allowance lets through carries a summary with it, and
//! `send-email` counts them off when it goes out (so a change that does not commit loses none).

use crate::domain::contact::Contact;
use crate::domain::outbox::{HeldSummary, MessageKind, OutboxMessage};
use crate::error::PortalError;
use crate::ports::{Queued, UsesClock, UsesContacts};

/// Security notices one account gets in an hour; more are summed up later.
pub const NOTICES_PER_ACCOUNT_PER_HOUR: u32 = 20;

const HOUR: i64 = 3600;

/// The notice of `kind` (with `detail`) to the account's own address, to queue in the same write
/// as the change it tells of: with the summary of any notices held back before, or nothing when
/// this one is held back itself.
pub async fn security_notice(
    portal: &(impl UsesContacts + UsesClock),
    contact: &Contact,
    kind: MessageKind,
    detail: Option<String>,
) -> Result<Vec<Queued>, PortalError> {
    let now = portal.clock().now();
    let key = format!("notices#{}", contact.contact_id);
    let contacts = portal.contacts();
    let (allowed, held) = tokio::join!(
        contacts.take_allowance(&key, NOTICES_PER_ACCOUNT_PER_HOUR, HOUR, now),
        contacts.held_notices(&contact.contact_id)
    );
    if !allowed? {
        contacts.hold_notice(&contact.contact_id, &kind.name(), now).await?;
        tracing::warn!(contact_id = %contact.contact_id, kind = %kind.name(), "security notice held back: over the account's hourly notices");
        return Ok(Vec::new());
    }
    let mut notice = to_owner(contact, kind, now);
    notice.detail = detail;
    let mut emails = vec![Queued::new(notice)];
    if let Some(held) = held? {
        let mut summary = to_owner(contact, MessageKind::HeldNoticesSummary, now);
        summary.detail = Some(held.kinds.iter().map(|k| k.replace('_', " ")).collect::<Vec<_>>().join(", "));
        summary.held = Some(HeldSummary { count: held.count, since: held.since });
        emails.push(Queued::new(summary));
    }
    Ok(emails)
}

fn to_owner(contact: &Contact, kind: MessageKind, now: crate::domain::time::Timestamp) -> OutboxMessage {
    let mut message = OutboxMessage::new(kind, contact.email.as_str(), &contact.first_name, None, now);
    message.contact_id = Some(contact.contact_id.clone());
    message
}
