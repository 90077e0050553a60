//! A signed-in contact's own profile and password.

use crate::domain::audit::{AuditEvent, SourceAddress};
use crate::domain::contact::{Contact, new_epoch};
use crate::domain::email::Email;
use crate::domain::event::Fact;
use crate::domain::lockout::FailedSignIn;
use crate::domain::outbox::MessageKind;
use crate::domain::password::{Password, hash_password, verify_password};
use crate::domain::text::Username;
use crate::domain::token::TokenPurpose;
use crate::error::PortalError;
use crate::ports::{ProfileUpdate, QueuedEmail};
use crate::ports::{UsesClock, UsesContacts, UsesSessions, UsesSettings};

use super::audit;
use super::session::{self, SignedIn};
use super::throttle::emails_allowed;
use super::tokens::{notice, token_email};

/// What a contact asked to change; `None` leaves a field as it is.
#[derive(Default)]
pub struct ProfileChange {
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    /// `Some(None)` removes the phone number.
    pub phone: Option<Option<String>>,
    pub email: Option<Email>,
    /// Required with a new email: a borrowed session alone cannot move the account.
    pub current_password: Option<Password>,
    /// The username as sent: it cannot change, so only the current one is accepted.
    pub username: Option<String>,
}

const WRONG_PASSWORD: &str = "is not your current password";

/// Checks the signed-in contact's current password, as a sign-in does: the attempt is taken before
/// the check and counts towards lockout. A wrong one (or a locked account) is a field error.
pub async fn check_current_password(
    portal: &(impl UsesContacts + UsesClock + UsesSettings),
    source: &SourceAddress,
    contact: &Contact,
    password: Password,
) -> Result<(), PortalError> {
    let now = portal.clock().now();
    let policy = portal.settings().lockout;
    let reserved =
        contact.password_hash.is_some() && portal.contacts().reserve_attempt(&contact.contact_id, now, &policy).await?;
    let hash = if reserved { contact.password_hash.clone() } else { None };
    if verify_password(password, hash).await? {
        portal.contacts().reset_lockout(&contact.contact_id).await?;
        return Ok(());
    }
    if reserved
        && let FailedSignIn::LockedOut { until } =
            portal.contacts().record_failed_sign_in(&contact.contact_id, now, &policy).await?
    {
        tracing::warn!(audit = AuditEvent::LockedOut.as_str(), contact_id = %contact.contact_id, locked_until = until.as_secs(), "audit");
    }
    audit(AuditEvent::PasswordChangeFailed, Some(&contact.contact_id), source);
    Err(PortalError::field("current_password", WRONG_PASSWORD))
}

/// Applies a profile change. A new email needs the current password and becomes the pending
/// address: the link goes to it, the old address is told, and nothing moves until the link is
/// followed. The answer is the same whether or not another account has the new address (its owner
/// is told instead of sent a link: see [`super::mail`]).
pub async fn update_profile(
    portal: &(impl UsesContacts + UsesClock + UsesSettings),
    source: &SourceAddress,
    signed_in: &SignedIn,
    change: ProfileChange,
) -> Result<Contact, PortalError> {
    let contact = &signed_in.contact;
    if change.username.is_some_and(|u| contact.username.as_ref().map(Username::as_str) != Some(u.trim())) {
        return Err(PortalError::field("username", "cannot be changed"));
    }
    let new_email = change.email.filter(|e| e.normalized() != contact.email.normalized());
    if new_email.is_some() {
        let password = change
            .current_password
            .ok_or_else(|| PortalError::field("current_password", "is required to change your email address"))?;
        check_current_password(portal, source, contact, password).await?;
    }
    let update = ProfileUpdate {
        first_name: change.first_name.unwrap_or_else(|| contact.first_name.clone()),
        last_name: change.last_name.unwrap_or_else(|| contact.last_name.clone()),
        phone: change.phone.unwrap_or_else(|| contact.phone.clone()),
        pending_email: new_email.clone(),
    };
    let mut emails = Vec::new();
    if let Some(new_email) = &new_email {
        let recipients = [new_email.normalized(), contact.email.normalized()];
        if emails_allowed(portal, source, Some(&contact.contact_id), &recipients).await? {
            let mut addressed = contact.clone();
            addressed.first_name = update.first_name.clone();
            let mut link =
                token_email(portal, &addressed, new_email, TokenPurpose::ConfirmEmail, MessageKind::ConfirmNewEmail);
            link.message.contact_id = Some(contact.contact_id.clone());
            let mut told = notice(portal, &addressed, MessageKind::EmailChangeNotice);
            told.message.detail = Some(new_email.as_str().to_string());
            emails.extend([link, told]);
        }
    }
    let updated = portal.contacts().update_profile(contact, &update, portal.clock().now(), &emails).await?;
    if new_email.is_some() {
        audit(AuditEvent::EmailChangeRequested, Some(&contact.contact_id), source);
    }
    audit(AuditEvent::ProfileUpdated, Some(&contact.contact_id), source);
    Ok(updated)
}

/// Changes the password: a new session epoch is written with it, so every session of the contact
/// ends at once, and this one continues under the new token returned. Every reset link stops
/// working, and the account's address is told. A wrong current password counts towards lockout.
pub async fn change_password(
    portal: &(impl UsesContacts + UsesSessions + UsesClock + UsesSettings),
    source: &SourceAddress,
    contact: &Contact,
    current: Password,
    new_password: String,
) -> Result<String, PortalError> {
    let new_password =
        Password::choose(new_password, portal.settings().password_min_length, &contact.password_context())
            .map_err(|reason| PortalError::field("new_password", reason.0))?;
    check_current_password(portal, source, contact, current).await?;
    let hash = hash_password(new_password).await?;
    let mut emails: Vec<QueuedEmail> = Vec::new();
    if emails_allowed(portal, source, Some(&contact.contact_id), &[contact.email.normalized()]).await? {
        emails.push(notice(portal, contact, MessageKind::PasswordChangedNotice));
    }
    let now = portal.clock().now();
    emails.push(Fact::PasswordChanged { contact_id: contact.contact_id.clone() }.at(now).into());
    let epoch = new_epoch();
    portal.contacts().change_password(&contact.contact_id, &hash, &epoch, now, &emails).await?;
    let token = session::start_in_epoch(portal, contact, &epoch).await?;
    audit(AuditEvent::PasswordChanged, Some(&contact.contact_id), source);
    Ok(token)
}
