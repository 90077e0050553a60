//! Use cases: one function per thing a person does, free of HTTP. Each takes typed inputs (parsed
//! values, the [`SourceAddress`]) and the portal's ports, holds the policy (throttles, lockout,
//! which emails go out), and returns a domain result or a [`PortalError`].

pub mod codes;
pub mod deletion;
pub mod deliverability;
pub mod delivery;
pub mod door;
pub mod external;
pub mod import;
pub mod invite;
pub mod lists;
pub mod mail;
pub mod notices;
pub mod outbox_repair;
pub mod passkeys;
pub mod profile;
pub mod reauth;
pub mod redeem;
pub mod register;
pub mod security;
pub mod session;
pub mod site_settings;
pub mod staff;
pub mod terms;
pub mod throttle;
pub mod tokens;
pub mod two_factor;

use crate::domain::audit::{AuditEntry, AuditEvent, SourceAddress};
use crate::domain::ids::ContactId;
use crate::ports::{UsesClock, UsesContacts, UsesSettings};

pub use crate::error::PortalError;

/// Logs an audit event with the contact it concerns (if known) and the source address.
pub fn audit(event: AuditEvent, contact_id: Option<&ContactId>, source: &SourceAddress) {
    let contact_id = contact_id.map_or("-", ContactId::as_str);
    tracing::info!(audit = event.as_str(), contact_id, source_ip = %source, "audit");
}
pub mod group_invite;

/// An audit entry of `event` by `actor` about `contact`, now, kept for the audit retention.
pub fn audit_entry(
    portal: &(impl UsesClock + UsesSettings),
    event: AuditEvent,
    actor: Option<&ContactId>,
    contact: Option<&ContactId>,
    source: &SourceAddress,
) -> AuditEntry {
    AuditEntry::new(event, actor, contact, source, portal.clock().now(), portal.settings().audit_retention_secs)
}

/// Writes an audit entry of its own, for what is not one write of the portal's own (a sign-in's
/// outcome spans the session, the attempt counters and the device): issued alongside those
/// writes, in the same round trip.
pub async fn record(portal: &impl UsesContacts, entry: AuditEntry) -> Result<(), PortalError> {
    Ok(portal.contacts().queue_emails(&[entry.into()]).await?)
}
