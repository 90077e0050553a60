//! Sessions: who a session token belongs to, starting one at sign-in, ending it at sign-out.

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
    if session.epoch != contact.session_epoch {
        return Ok(None);
    }
    if session.needs_touch(now) {
        portal.sessions().touch(&session.id_digest, now).await?;
    }
    Ok(Some(SignedIn { contact, session }))
}

/// A new session for `contact` (a new token at every sign-in), of the contact's session epoch as
/// read; returns the token for the cookie.
pub async fn start(
    portal: &(impl UsesSessions + UsesClock + UsesSettings),
    contact: &Contact,
) -> Result<String, PortalError> {
    start_in_epoch(portal, contact, &contact.session_epoch).await
}

/// A new session of `epoch`: the one a change that ends the other sessions has just written.
pub async fn start_in_epoch(
    portal: &(impl UsesSessions + UsesClock + UsesSettings),
    contact: &Contact,
    epoch: &str,
) -> Result<String, PortalError> {
    let (session, token) =
        Session::start(&contact.contact_id, epoch, portal.clock().now(), portal.settings().session_absolute_secs);
    portal.sessions().create(&session).await?;
    Ok(token)
}

/// What kind of session a sign-in starts.
#[derive(Clone, Copy, Debug, Default)]
pub struct SessionOptions {
    /// "Remember me": the session lasts `PORTAL_REMEMBER_ME_DAYS` (its cookie too).
    pub remembered: bool,
    /// Only the two-factor set-up is open (the contact's role requires a second factor).
    pub setup_only: bool,
}

/// A new session of `epoch` with `options`; returns the token for the cookie.
pub async fn start_with(
    portal: &(impl UsesSessions + UsesClock + UsesSettings),
    contact: &Contact,
    epoch: &str,
    options: SessionOptions,
) -> Result<String, PortalError> {
    let settings = portal.settings();
    let absolute = if options.remembered { settings.remember_me_secs } else { settings.session_absolute_secs };
    let (mut session, token) = Session::start(&contact.contact_id, epoch, portal.clock().now(), absolute);
    session.remembered = options.remembered;
    session.setup_only = options.setup_only;
    portal.sessions().create(&session).await?;
    Ok(token)
}

/// Ends the session a request arrived with, if any, before another begins: a sign-in or a
/// redemption never leaves the browser's previous session (perhaps someone else's) alive.
pub async fn replace(portal: &impl UsesSessions, arrived_with: Option<&str>) -> Result<(), PortalError> {
    if let Some(token) = arrived_with.filter(|t| !t.is_empty()) {
        portal.sessions().delete(&digest(token)).await?;
    }
    Ok(())
}

/// Ends the session `token` server-side (nothing to do for an unknown one).
pub async fn end(portal: &impl UsesSessions, token: &str, source: &SourceAddress) -> Result<(), PortalError> {
    if let Some(session) = portal.sessions().delete(&digest(token)).await? {
        super::audit(AuditEvent::SignedOut, Some(&session.contact_id), source);
    }
    Ok(())
}
