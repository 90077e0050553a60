//! Use cases: one function per thing a person does, free of HTTP. Each takes typed inputs (parsed
//! values, the [`SourceAddress`]) and the portal's ports, holds the policy (throttles, lockout,
//! which emails go out), and returns a domain result or a [`PortalError`].

pub mod invite;
pub mod profile;
pub mod redeem;
pub mod register;
pub mod session;
pub mod sign_in;
pub mod throttle;
pub mod tokens;

use crate::domain::audit::{AuditEvent, SourceAddress};
use crate::domain::contact::Contact;
use crate::domain::ids::ContactId;

pub use crate::error::PortalError;

/// Logs an audit event with the contact it concerns and the source address.
pub fn audit(event: AuditEvent, contact: Option<&Contact>, source: &SourceAddress) {
    let contact_id = contact.map_or("-", |c| c.contact_id.as_str());
    tracing::info!(audit = event.as_str(), contact_id, source_ip = %source, "audit");
}

/// Logs an audit event for a contact known only by id.
pub fn audit_id(event: AuditEvent, contact_id: &ContactId, source: &SourceAddress) {
    tracing::info!(audit = event.as_str(), contact_id = %contact_id, source_ip = %source, "audit");
}
