//! Emailed single-use links: email confirmation and password reset.
//!
//! Asking for a link (forgot-password, a new confirmation link) does the same work whether or not
//! an account has the address: the allowances and one outbox message. `send-email` then looks the
//! account up and issues the link, if there is one to issue (see [`super::mail`]).

use crate::domain::audit::{AuditEvent, SourceAddress};
use crate::domain::contact::{Contact, new_epoch};
use crate::domain::email::Email;
use crate::domain::event::Fact;
use crate::domain::ids::ContactId;
use crate::domain::outbox::{MailSecret, MessageKind, OutboxMessage};
use crate::domain::password::{Password, hash_password};
use crate::domain::secret::digest;
use crate::domain::token::{EmailToken, TokenPurpose};
use crate::error::PortalError;
use crate::ports::{Queued, TokenUse};
use crate::ports::{UsesClock, UsesContacts, UsesPasskeys, UsesSessions, UsesSettings, UsesTwoFactor};

use super::door::{self, Entered};
use super::notices::security_notice;
use super::session::SignedIn;
use super::throttle::emails_allowed;
use super::{audit, audit_entry};

/// A new emailed token and the outbox message carrying it.
#[derive(Clone, Debug)]
pub struct TokenEmail {
    pub token: EmailToken,
    pub message: OutboxMessage,
}

impl From<TokenEmail> for Queued {
    fn from(email: TokenEmail) -> Self {
        Queued::with_token(email.token, email.message)
    }
}

/// A new emailed token of `purpose` for `contact`, sent to `to`, and the outbox message of `kind`
/// carrying it.
pub fn token_email(
    portal: &(impl UsesClock + UsesSettings),
    contact: &Contact,
    to: &Email,
    purpose: TokenPurpose,
    kind: MessageKind,
) -> TokenEmail {
    let now = portal.clock().now();
    let lifetime = match purpose {
        TokenPurpose::ConfirmEmail => portal.settings().confirmation_token_secs,
        TokenPurpose::ResetPassword => portal.settings().reset_token_secs,
    };
    let (token, plain) = EmailToken::issue(purpose, &contact.contact_id, to, now, lifetime);
    let mut message = OutboxMessage::new(kind, to.as_str(), &contact.first_name, Some(MailSecret::new(plain)), now);
    message.valid_until = Some(token.expires_at);
    TokenEmail { token, message }
}

/// Asks for a link of `kind` for whatever account has `email`: the same work and the same answer
/// whether or not there is one, within the allowances.
async fn request_link(
    portal: &(impl UsesContacts + UsesClock + UsesSettings),
    source: &SourceAddress,
    email: &Email,
    kind: MessageKind,
) -> Result<(), PortalError> {
    request_link_by(portal, source, email, kind, None).await
}

/// As [`request_link`]; `owner`: the account, signed in, asking for a link to its own address.
async fn request_link_by(
    portal: &(impl UsesContacts + UsesClock + UsesSettings),
    source: &SourceAddress,
    email: &Email,
    kind: MessageKind,
    owner: Option<&ContactId>,
) -> Result<(), PortalError> {
    if emails_allowed(portal, source, None, &[email.normalized()]).await? {
        let mut message = OutboxMessage::new(kind, email.as_str(), "", None, portal.clock().now());
        message.contact_id = owner.cloned();
        portal.contacts().queue_emails(&[Queued::new(message)]).await?;
    }
    Ok(())
}

/// Forgot password: a reset link for the account with `email`, if there is one.
pub async fn request_reset(
    portal: &(impl UsesContacts + UsesClock + UsesSettings),
    source: &SourceAddress,
    email: &Email,
) -> Result<(), PortalError> {
    request_link(portal, source, email, MessageKind::ResetRequest).await?;
    audit(AuditEvent::PasswordResetRequested, None, source);
    Ok(())
}

/// An emailed sign-in code for the account with `email`, if one may sign in (`send-email` looks it
/// up and stores the code): the same work and answer either way.
pub async fn request_sign_in_code(
    portal: &(impl UsesContacts + UsesClock + UsesSettings),
    source: &SourceAddress,
    email: &Email,
) -> Result<(), PortalError> {
    request_link(portal, source, email, MessageKind::SignInCodeRequest).await
}

/// A new confirmation link for an unconfirmed account with `email`, if there is one. Asked by the
/// account itself, signed in (`signed_in_as`, its own address), it is also how an address marked
/// undeliverable (see `usecases::deliverability`) comes back: the link is the one email that goes
/// to it, and following it lifts the mark.
pub async fn resend_confirmation(
    portal: &(impl UsesContacts + UsesClock + UsesSettings),
    source: &SourceAddress,
    email: &Email,
    signed_in_as: Option<&Contact>,
) -> Result<(), PortalError> {
    let owner = signed_in_as.filter(|c| c.email.normalized() == email.normalized()).map(|c| &c.contact_id);
    request_link_by(portal, source, email, MessageKind::ConfirmationRequest, owner).await
}

/// The usable token of `purpose` with this plain value, and its contact. The cheap checks come
/// first: nothing is hashed for an unknown, used, expired or superseded token.
async fn usable_token(
    portal: &(impl UsesContacts + UsesClock),
    plain: &str,
    purpose: TokenPurpose,
) -> Result<(EmailToken, Contact), PortalError> {
    let token = portal.contacts().find_token(&digest(plain)).await?;
    let token = token.filter(|t| t.is_usable(purpose, portal.clock().now())).ok_or(PortalError::TokenInvalid)?;
    let contact = portal.contacts().get(&token.contact_id).await?.ok_or(PortalError::TokenInvalid)?;
    if purpose == TokenPurpose::ResetPassword && token.nonce != contact.reset_nonce {
        return Err(PortalError::TokenInvalid);
    }
    Ok((token, contact))
}

/// Sets a new password with a reset token: every session of the contact ends, every other reset
/// link stops working, and the account's address is told (with the passkeys that still sign in: a
/// reset removes none). Does not sign in.
pub async fn reset_password(
    portal: &(impl UsesContacts + UsesClock + UsesSettings + UsesPasskeys),
    source: &SourceAddress,
    plain_token: &str,
    new_password: String,
) -> Result<(), PortalError> {
    let (token, contact) = usable_token(portal, plain_token, TokenPurpose::ResetPassword).await?;
    let password = Password::choose(new_password, portal.settings().password_min_length, &contact.password_context())
        .map_err(|reason| PortalError::field("new_password", reason.0))?;
    let hash = hash_password(password).await?;
    let passkeys = portal.passkeys().list(&contact.contact_id).await?;
    let remaining = passkeys.iter().map(|p| p.name.as_str()).collect::<Vec<_>>().join(", ");
    let detail = (!remaining.is_empty()).then_some(remaining);
    let mut emails = security_notice(portal, &contact, MessageKind::PasswordResetNotice, detail).await?;
    let now = portal.clock().now();
    emails.push(Fact::PasswordChanged { contact_id: contact.contact_id.clone() }.at(now).into());
    // The person, proven by the link sent to their address.
    let id = Some(&contact.contact_id);
    emails.push(audit_entry(portal, AuditEvent::PasswordReset, id, id, source).into());
    let effect = TokenUse::ResetPassword { hash, epoch: new_epoch() };
    if !portal.contacts().use_token(&token, &contact, &effect, now, &emails).await? {
        return Err(PortalError::TokenInvalid);
    }
    audit(AuditEvent::PasswordReset, Some(&contact.contact_id), source);
    Ok(())
}

/// What following a confirmation link did.
pub struct Confirmed {
    pub email: Email,
    /// The browser's continued session when the link moved the account to a new address from a
    /// browser signed in to it: every other session ended, this one continues.
    pub continued_session: Option<Entered>,
}

/// Confirms the address a confirmation token was sent to: the contact's own (a registration), or
/// the pending new one (an email change), which then becomes the sign-in address; that ends every
/// other session.
pub async fn confirm_email(
    portal: &(impl UsesContacts + UsesSessions + UsesClock + UsesSettings + UsesTwoFactor + UsesPasskeys),
    source: &SourceAddress,
    plain_token: &str,
    signed_in_as: Option<&SignedIn>,
) -> Result<Confirmed, PortalError> {
    let (token, contact) = usable_token(portal, plain_token, TokenPurpose::ConfirmEmail).await?;
    let now = portal.clock().now();
    if token.is_for(&contact.email) {
        if !portal.contacts().use_token(&token, &contact, &TokenUse::ConfirmEmail, now, &[]).await? {
            return Err(PortalError::TokenInvalid);
        }
        audit(AuditEvent::EmailConfirmed, Some(&contact.contact_id), source);
        return Ok(Confirmed { email: contact.email, continued_session: None });
    }
    let Some(new_email) = contact.pending_email.clone().filter(|p| token.is_for(p)) else {
        return Err(PortalError::TokenInvalid);
    };
    let epoch = new_epoch();
    let effect = TokenUse::MoveEmail { epoch: epoch.clone() };
    let changed = Fact::EmailChanged { contact_id: contact.contact_id.clone() }.at(now);
    let id = Some(&contact.contact_id);
    let entry = audit_entry(portal, AuditEvent::EmailChanged, id, id, source);
    if !portal.contacts().use_token(&token, &contact, &effect, now, &[changed.into(), entry.into()]).await? {
        return Err(PortalError::TokenInvalid);
    }
    audit(AuditEvent::EmailChanged, Some(&contact.contact_id), source);
    let continued_session = match signed_in_as {
        Some(viewer) if viewer.contact.contact_id == contact.contact_id => {
            Some(door::continue_session(portal, source, &viewer.session, &contact, &epoch, None).await?)
        }
        _ => None,
    };
    Ok(Confirmed { email: new_email, continued_session })
}
