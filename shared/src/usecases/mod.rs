//! Use cases: one function per thing a person does, free of HTTP. Each takes typed inputs (parsed
//! values, the [`SourceAddress`]) and the portal's ports, holds the policy (throttles, lockout,
//! which emails go out), and returns a domain result or a [`PortalError`].

pub mod codes;
pub mod delivery;
pub mod door;
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
pub mod session;
pub mod throttle;
pub mod tokens;
pub mod two_factor;

use crate::domain::audit::{AuditEvent, SourceAddress};
use crate::domain::ids::ContactId;

pub use crate::error::PortalError;

/// Logs an audit event with the contact it concerns (if known) and the source address.
pub fn audit(event: AuditEvent, contact_id: Option<&ContactId>, source: &SourceAddress) {
    let contact_id = contact_id.map_or("-", ContactId::as_str);
    tracing::info!(audit = event.as_str(), contact_id, source_ip = %source, "audit");
}
pub mod group_invite;
