//! Signing in: checking a login and password against lockout and throttling.

use crate::domain::audit::{AuditEvent, SourceAddress};
use crate::domain::contact::{Contact, Login};
use crate::domain::lockout::FailedSignIn;
use crate::domain::password::{Password, verify_password};
use crate::error::PortalError;
use crate::ports::{UsesClock, UsesContacts, UsesSessions, UsesSettings};

use super::throttle::{Attempt, count_failure, refuse_if_throttled};
use super::{audit, session};

/// Checks a login and password. Unknown logins, wrong passwords and locked accounts all end in the
/// same `invalid_credentials`, after the same single argon2 run.
pub async fn authenticate(
    portal: &(impl UsesContacts + UsesClock + UsesSettings),
    source: &SourceAddress,
    login: &str,
    password: Password,
) -> Result<Contact, PortalError> {
    refuse_if_throttled(portal, source, Attempt::SignIn).await?;
    let contact = match Login::parse(login) {
        Some(login) => portal.contacts().find_by_login(&login).await?,
        None => None,
    };
    let now = portal.clock().now();
    let locked = contact.as_ref().is_some_and(|c| c.lockout().is_locked(now));
    let hash = contact.as_ref().and_then(|c| c.password_hash.clone());
    let verified = verify_password(password, hash).await?;
    let Some(contact) = contact else {
        audit(AuditEvent::SignInFailed, None, source);
        count_failure(portal, source, Attempt::SignIn).await?;
        return Err(PortalError::InvalidCredentials);
    };
    if verified && !locked {
        if contact.lockout().needs_reset() {
            portal.contacts().reset_lockout(&contact.contact_id).await?;
        }
        if portal.settings().require_confirmation && !contact.email_confirmed {
            audit(AuditEvent::SignInUnconfirmed, Some(&contact.contact_id), source);
            return Err(PortalError::EmailNotConfirmed);
        }
        return Ok(contact);
    }
    audit(AuditEvent::SignInFailed, Some(&contact.contact_id), source);
    count_failure(portal, source, Attempt::SignIn).await?;
    if contact.password_hash.is_some() {
        let outcome =
            portal.contacts().record_failed_sign_in(&contact.contact_id, now, &portal.settings().lockout).await?;
        if let FailedSignIn::LockedOut { until } = outcome {
            tracing::warn!(audit = AuditEvent::LockedOut.as_str(), contact_id = %contact.contact_id, locked_until = until.as_secs(), "audit");
        }
    }
    Err(PortalError::InvalidCredentials)
}

/// Signs in with a login and password: the contact and a new session token.
pub async fn sign_in(
    portal: &(impl UsesContacts + UsesSessions + UsesClock + UsesSettings),
    source: &SourceAddress,
    login: &str,
    password: Password,
) -> Result<(Contact, String), PortalError> {
    let contact = authenticate(portal, source, login, password).await?;
    let token = session::start(portal, &contact).await?;
    audit(AuditEvent::SignedIn, Some(&contact.contact_id), source);
    Ok((contact, token))
}
