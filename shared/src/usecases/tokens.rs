//! Emailed single-use links: email confirmation and password reset.

use crate::domain::audit::{AuditEvent, SourceAddress};
use crate::domain::contact::{Contact, Login};
use crate::domain::email::Email;
use crate::domain::outbox::{MailSecret, MessageKind, OutboxMessage};
use crate::domain::password::{Password, hash_password};
use crate::domain::secret::digest;
use crate::domain::token::{EmailToken, TokenPurpose};
use crate::error::PortalError;
use crate::ports::TokenUse;
use crate::ports::{UsesClock, UsesContacts, UsesSessions, UsesSettings};

use super::audit;
use super::throttle::email_allowed;

/// A new emailed token of `purpose` for `contact` (sent to the contact's current address) and the
/// outbox message carrying it.
pub fn token_email(
    portal: &(impl UsesClock + UsesSettings),
    contact: &Contact,
    purpose: TokenPurpose,
) -> (EmailToken, OutboxMessage) {
    let now = portal.clock().now();
    let (lifetime, kind) = match purpose {
        TokenPurpose::ConfirmEmail => (portal.settings().confirmation_token_secs, MessageKind::ConfirmEmail),
        TokenPurpose::ResetPassword => (portal.settings().reset_token_secs, MessageKind::ResetPassword),
    };
    let (token, plain) = EmailToken::issue(purpose, &contact.contact_id, contact.email.normalized(), now, lifetime);
    let mut message =
        OutboxMessage::new(kind, contact.email.as_str(), &contact.first_name, Some(MailSecret::new(plain)), now);
    message.valid_until = Some(token.expires_at);
    (token, message)
}

/// Sends a password-reset link to the account with `email`, if there is one, within the email
/// allowances. The caller answers alike whether or not it exists.
pub async fn request_reset(
    portal: &(impl UsesContacts + UsesClock + UsesSettings),
    source: &SourceAddress,
    email: &Email,
) -> Result<(), PortalError> {
    let contact = portal.contacts().find_by_login(&Login::of_email(email)).await?;
    let Some(contact) = contact.filter(|c| c.password_hash.is_some()) else {
        audit(AuditEvent::PasswordResetRequestedUnknown, None, source);
        return Ok(());
    };
    if email_allowed(portal, source, &contact.contact_id).await? {
        let (token, message) = token_email(portal, &contact, TokenPurpose::ResetPassword);
        portal.contacts().queue_email(Some(&token), &message).await?;
        audit(AuditEvent::PasswordResetRequested, Some(&contact.contact_id), source);
    }
    Ok(())
}

/// Sets a new password with a reset token and ends every session of the contact. Does not sign in.
/// `new_password` is as typed: the token is looked up before the password is checked against the
/// policy or hashed, so a bad link costs one read.
pub async fn reset_password(
    portal: &(impl UsesContacts + UsesSessions + UsesClock + UsesSettings),
    source: &SourceAddress,
    token: &str,
    new_password: String,
) -> Result<(), PortalError> {
    let found = portal.contacts().find_token(&digest(token)).await?;
    let token_usable = |t: &EmailToken| t.is_usable(TokenPurpose::ResetPassword, portal.clock().now());
    let Some(found) = found.filter(token_usable) else { return Err(PortalError::TokenInvalid) };
    let min_length = portal.settings().password_min_length;
    let new_password = Password::choose(new_password, min_length, &[&found.email_normalized])
        .map_err(|reason| PortalError::field("new_password", reason.0))?;
    let hash = hash_password(new_password).await?;
    let effect = TokenUse::ResetPassword(hash);
    let used =
        portal.contacts().use_token(&digest(token), TokenPurpose::ResetPassword, &effect, portal.clock().now()).await?;
    let contact_id = used.ok_or(PortalError::TokenInvalid)?;
    portal.sessions().delete_all_for_contact(&contact_id, None).await?;
    audit(AuditEvent::PasswordReset, Some(&contact_id), source);
    Ok(())
}

/// Confirms the address a confirmation token was sent to.
pub async fn confirm_email(
    portal: &(impl UsesContacts + UsesClock),
    source: &SourceAddress,
    token: &str,
) -> Result<(), PortalError> {
    let now = portal.clock().now();
    let used =
        portal.contacts().use_token(&digest(token), TokenPurpose::ConfirmEmail, &TokenUse::ConfirmEmail, now).await?;
    let contact_id = used.ok_or(PortalError::TokenInvalid)?;
    audit(AuditEvent::EmailConfirmed, Some(&contact_id), source);
    Ok(())
}

/// Sends a new confirmation link to an unconfirmed account with `email`, within the allowances.
/// The caller answers alike whether or not there is one.
pub async fn resend_confirmation(
    portal: &(impl UsesContacts + UsesClock + UsesSettings),
    source: &SourceAddress,
    email: &Email,
) -> Result<(), PortalError> {
    let contact = portal.contacts().find_by_login(&Login::of_email(email)).await?;
    if let Some(contact) = contact.filter(|c| !c.email_confirmed)
        && email_allowed(portal, source, &contact.contact_id).await?
    {
        let (token, message) = token_email(portal, &contact, TokenPurpose::ConfirmEmail);
        portal.contacts().queue_email(Some(&token), &message).await?;
    }
    Ok(())
}
