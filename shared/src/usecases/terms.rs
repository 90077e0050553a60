//! The site's terms of use (Power Pages' `TermsAgreementEnabled`, with a history of versions):
//! while `PORTAL_TERMS_VERSION` is set, a person who has not accepted that version gets a session
//! that reaches `/terms` only (the door sets it); accepting stores the version and time with its
//! audit entry, and the session goes on, no longer limited.

use crate::domain::audit::{AuditEvent, SourceAddress};
use crate::domain::contact::{AccountEdit, TermsAccepted};
use crate::error::PortalError;
use crate::ports::UsesPasskeys;
use crate::ports::{EditAccountError, UsesClock, UsesContacts, UsesSessions, UsesSettings, UsesTwoFactor};

use super::door::{self, Entered};
use super::session::SignedIn;
use super::{audit, audit_entry};

/// The person accepts the current terms: stored (with the audit entry) in one write; this browser
/// goes on under a new session without the limit. `not_found` when the site has no terms.
pub async fn accept(
    portal: &(impl UsesContacts + UsesSessions + UsesClock + UsesSettings + UsesTwoFactor + UsesPasskeys),
    source: &SourceAddress,
    signed_in: &SignedIn,
) -> Result<Entered, PortalError> {
    let Some(version) = portal.settings().terms_version.clone() else { return Err(PortalError::NotFound) };
    let contact = &signed_in.contact;
    let now = portal.clock().now();
    let id = Some(&contact.contact_id);
    let entry = audit_entry(portal, AuditEvent::TermsAccepted, id, id, source).with("version", version.clone());
    let edit = AccountEdit::AcceptTerms(TermsAccepted { version, at: now });
    let changed = match portal.contacts().edit_account(contact, &edit, now, &[entry.into()]).await {
        Ok(changed) => changed,
        Err(EditAccountError::Missing) => return Err(PortalError::Unauthenticated),
        Err(EditAccountError::Store(err)) => return Err(err.into()),
    };
    audit(AuditEvent::TermsAccepted, id, source);
    let epoch = changed.session_epoch.clone();
    door::continue_session(portal, source, &signed_in.session, &changed, &epoch, None).await
}
