//! A signed-in contact's own profile and password.

use crate::domain::audit::{AuditEvent, SourceAddress};
use crate::domain::contact::{Contact, new_epoch};
use crate::domain::email::Email;
use crate::domain::event::Fact;
use crate::domain::outbox::MessageKind;
use crate::domain::password::{Password, hash_password};
use crate::domain::text::Username;
use crate::domain::token::TokenPurpose;
use crate::error::PortalError;
use crate::ports::ProfileUpdate;
use crate::ports::UsesPasskeys;
use crate::ports::{UsesClock, UsesContacts, UsesSessions, UsesSettings, UsesTwoFactor};

use super::door::{self, Entered};
use super::notices::security_notice;
use super::reauth::{Reauthentication, reauthenticate};
use super::session::SignedIn;
use super::throttle::emails_allowed;
use super::tokens::token_email;
use super::{audit, audit_entry};

/// What a contact asked to change; `None` leaves a field as it is.
#[derive(Default)]
pub struct ProfileChange {
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    /// `Some(None)` removes the phone number.
    pub phone: Option<Option<String>>,
    pub email: Option<Email>,
    /// Required with a new email: a borrowed session alone cannot move the account.
    pub reauthentication: Reauthentication,
    /// The username as sent: it cannot change, so only the current one is accepted.
    pub username: Option<String>,
}

/// Applies a profile change. A new email needs re-authentication and becomes the pending
/// address: the link goes to it, the old address is told, and nothing moves until the link is
/// followed. The answer is the same whether or not another account has the new address (its owner
/// is told instead of sent a link: see [`super::mail`]).
pub async fn update_profile(
    portal: &(impl UsesContacts + UsesClock + UsesSettings + UsesTwoFactor),
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
        reauthenticate(portal, source, contact, change.reauthentication).await?;
    }
    let update = ProfileUpdate {
        first_name: change.first_name.unwrap_or_else(|| contact.first_name.clone()),
        last_name: change.last_name.unwrap_or_else(|| contact.last_name.clone()),
        phone: change.phone.unwrap_or_else(|| contact.phone.clone()),
        pending_email: new_email.clone(),
    };
    let mut emails = Vec::new();
    if let Some(new_email) = &new_email {
        let mut addressed = contact.clone();
        addressed.first_name = update.first_name.clone();
        // The link to the new address is a request's email (anyone may type any address); the
        // notice to the account's own address is a security notice, never held back by those.
        if emails_allowed(portal, source, Some(&contact.contact_id), &[new_email.normalized()]).await? {
            let mut link =
                token_email(portal, &addressed, new_email, TokenPurpose::ConfirmEmail, MessageKind::ConfirmNewEmail);
            link.message.contact_id = Some(contact.contact_id.clone());
            emails.push(link.into());
        }
        let detail = Some(new_email.as_str().to_string());
        emails.extend(security_notice(portal, &addressed, MessageKind::EmailChangeNotice, detail).await?);
    }
    let updated = portal.contacts().update_profile(contact, &update, portal.clock().now(), &emails).await?;
    if new_email.is_some() {
        audit(AuditEvent::EmailChangeRequested, Some(&contact.contact_id), source);
    }
    audit(AuditEvent::ProfileUpdated, Some(&contact.contact_id), source);
    Ok(updated)
}

/// Changes the password after re-authentication: a new session epoch is written with it, so every
/// session of the contact ends at once, and this one continues through the door. Every reset link
/// stops working, and the account's address is told.
pub async fn change_password(
    portal: &(impl UsesContacts + UsesSessions + UsesClock + UsesSettings + UsesTwoFactor + UsesPasskeys),
    source: &SourceAddress,
    signed_in: &SignedIn,
    given: Reauthentication,
    new_password: String,
) -> Result<Entered, PortalError> {
    let contact = &signed_in.contact;
    let new_password =
        Password::choose(new_password, portal.settings().password_min_length, &contact.password_context())
            .map_err(|reason| PortalError::field("new_password", reason.0))?;
    reauthenticate(portal, source, contact, given).await?;
    let hash = hash_password(new_password).await?;
    let mut emails = security_notice(portal, contact, MessageKind::PasswordChangedNotice, None).await?;
    let now = portal.clock().now();
    emails.push(Fact::PasswordChanged { contact_id: contact.contact_id.clone() }.at(now).into());
    let id = Some(&contact.contact_id);
    emails.push(audit_entry(portal, AuditEvent::PasswordChanged, id, id, source).into());
    let epoch = new_epoch();
    portal.contacts().change_password(&contact.contact_id, &hash, &epoch, now, &emails).await?;
    audit(AuditEvent::PasswordChanged, Some(&contact.contact_id), source);
    door::continue_session(portal, source, &signed_in.session, contact, &epoch, None).await
}
