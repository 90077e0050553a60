//! Sessions: who a session token belongs to, and ending one at sign-out. Only the door
//! ([`super::door`]) starts one.

use crate::domain::audit::{AuditEvent, SourceAddress};
use crate::domain::contact::Contact;
use crate::domain::secret::digest;
use crate::domain::session::Session;
use crate::error::PortalError;
use crate::ports::{UsesClock, UsesContacts, UsesSessions, UsesSettings};

/// The signed-in contact and their session.
pub struct SignedIn {
    pub contact: Contact,
    pub session: Session,
}

/// The contact whose session `token` is, if it is still valid: not expired, and of the contact's
/// current session epoch (a password change, reset or email move ends every older session). A
/// session in use has its idle timer refreshed.
pub async fn current(
    portal: &(impl UsesContacts + UsesSessions + UsesClock + UsesSettings),
    token: &str,
) -> Result<Option<SignedIn>, PortalError> {
    let Some(session) = portal.sessions().get(&digest(token)).await? else {
        return Ok(None);
    };
    let now = portal.clock().now();
    if !session.is_active(now, portal.settings().session_idle_secs) {
        return Ok(None);
    }
    let Some(contact) = portal.contacts().get(&session.contact_id).await? else {
        return Ok(None);
    };
    if session.epoch != contact.session_epoch || !contact.may_sign_in() {
        return Ok(None);
    }
    if session.needs_touch(now) {
        portal.sessions().touch(&session.id_digest, now).await?;
    }
    Ok(Some(SignedIn { contact, session }))
}

/// Ends the session `token` server-side (nothing to do for an unknown one).
pub async fn end(portal: &impl UsesSessions, token: &str, source: &SourceAddress) -> Result<(), PortalError> {
    if let Some(session) = portal.sessions().delete(&digest(token)).await? {
        super::audit(AuditEvent::SignedOut, Some(&session.contact_id), source);
    }
    Ok(())
}
