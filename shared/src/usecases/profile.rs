//! A signed-in contact's own profile and password.

use crate::domain::audit::{AuditEvent, SourceAddress};
use crate::domain::contact::Contact;
use crate::domain::email::Email;
use crate::domain::password::{Password, hash_password, verify_password};
use crate::domain::text::Username;
use crate::domain::token::TokenPurpose;
use crate::error::PortalError;
use crate::ports::ProfileUpdate;
use crate::ports::{UsesClock, UsesContacts, UsesSessions, UsesSettings};

use super::audit;
use super::session::{self, SignedIn};
use super::tokens::token_email;

/// What a contact asked to change; `None` leaves a field as it is.
#[derive(Default)]
pub struct ProfileChange {
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    /// `Some(None)` removes the phone number.
    pub phone: Option<Option<String>>,
    pub email: Option<Email>,
    /// The username as sent: it cannot change, so only the current one is accepted.
    pub username: Option<String>,
}

/// Applies a profile change. A new email is unconfirmed until the link sent to it is followed, and
/// ends the contact's other sessions.
pub async fn update_profile(
    portal: &(impl UsesContacts + UsesSessions + UsesClock + UsesSettings),
    source: &SourceAddress,
    signed_in: &SignedIn,
    change: ProfileChange,
) -> Result<Contact, PortalError> {
    let SignedIn { contact, session } = signed_in;
    if change.username.is_some_and(|u| contact.username.as_ref().map(Username::as_str) != Some(u.trim())) {
        return Err(PortalError::field("username", "cannot be changed"));
    }
    let update = ProfileUpdate {
        first_name: change.first_name.unwrap_or_else(|| contact.first_name.clone()),
        last_name: change.last_name.unwrap_or_else(|| contact.last_name.clone()),
        phone: change.phone.unwrap_or_else(|| contact.phone.clone()),
        new_email: change.email.filter(|e| e.normalized() != contact.email.normalized()),
    };
    let confirmation = update.new_email.as_ref().map(|email| {
        let mut addressed = contact.clone();
        addressed.email = email.clone();
        addressed.first_name = update.first_name.clone();
        token_email(portal, &addressed, TokenPurpose::ConfirmEmail)
    });
    let now = portal.clock().now();
    let updated =
        portal.contacts().update_profile(contact, &update, now, confirmation.as_ref().map(|(t, m)| (t, m))).await?;
    if update.new_email.is_some() {
        portal.sessions().delete_all_for_contact(&contact.contact_id, Some(&session.id_digest)).await?;
        audit(AuditEvent::EmailChanged, Some(&contact.contact_id), source);
    }
    audit(AuditEvent::ProfileUpdated, Some(&contact.contact_id), source);
    Ok(updated)
}

/// Changes the password: every session of the contact ends and this one continues under the new
/// token returned. A wrong current password counts towards lockout.
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
    let now = portal.clock().now();
    let verified = verify_password(current, contact.password_hash.clone()).await?;
    if !verified || contact.lockout().is_locked(now) {
        if contact.password_hash.is_some() {
            portal.contacts().record_failed_sign_in(&contact.contact_id, now, &portal.settings().lockout).await?;
        }
        audit(AuditEvent::PasswordChangeFailed, Some(&contact.contact_id), source);
        return Err(PortalError::field("current_password", "is not your current password"));
    }
    let hash = hash_password(new_password).await?;
    portal.contacts().set_password(&contact.contact_id, &hash, now).await?;
    portal.sessions().delete_all_for_contact(&contact.contact_id, None).await?;
    let token = session::start(portal, contact).await?;
    audit(AuditEvent::PasswordChanged, Some(&contact.contact_id), source);
    Ok(token)
}
