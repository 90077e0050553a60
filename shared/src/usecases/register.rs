//! Open registration.

use crate::domain::audit::{AuditEvent, SourceAddress};
use crate::domain::contact::{Contact, NewContact};
use crate::domain::email::Email;
use crate::domain::outbox::{MessageKind, OutboxMessage};
use crate::domain::password::{Password, hash_password};
use crate::domain::text::Username;
use crate::domain::token::TokenPurpose;
use crate::error::PortalError;
use crate::ports::{CreateContactError, QueuedEmail};
use crate::ports::{UsesClock, UsesContacts, UsesSessions, UsesSettings};

use super::throttle::emails_allowed;
use super::tokens::token_email;
use super::{audit, session};

/// A registration whose every field parsed (the password already met the policy).
#[derive(Clone)]
pub struct Registration {
    pub email: Email,
    pub password: Password,
    pub first_name: String,
    pub last_name: String,
    pub username: Option<Username>,
    pub phone: Option<String>,
}

pub enum Registered {
    /// The new contact and their session token.
    SignedIn(Box<Contact>, String),
    /// Email confirmation is required: the same answer whether the address was new or taken.
    AwaitingConfirmation,
}

/// Creates the contact with its confirmation email in one write. While confirmation is required,
/// a taken address gets the same answer as a new one, and its owner is told instead (the message
/// names only the address: `send-email` looks the owner up, off the request path). Either way the
/// email counts against the allowances, taken before anything is written.
pub async fn register(
    portal: &(impl UsesContacts + UsesSessions + UsesClock + UsesSettings),
    source: &SourceAddress,
    registration: Registration,
) -> Result<Registered, PortalError> {
    let password_hash = hash_password(registration.password).await?;
    let contact = Contact::new(
        NewContact {
            email: registration.email,
            first_name: registration.first_name,
            last_name: registration.last_name,
            username: registration.username,
            phone: registration.phone,
            roles: Vec::new(),
            password_hash: Some(password_hash),
        },
        portal.clock().now(),
    );
    let allowed = emails_allowed(portal, source, None, &[contact.email.normalized()]).await?;
    let confirmation_required = portal.settings().require_confirmation;
    // While confirmation is required a taken address must cost what a new one does: one read of
    // its guard item, then one write (the account with its link, or the owner's notice).
    if confirmation_required && portal.contacts().email_in_use(&contact.email).await? {
        return tell_the_owner(portal, source, &contact.email, allowed).await;
    }
    // The confirmation email goes out in the same write as the contact, whatever the setting.
    let confirmation =
        token_email(portal, &contact, &contact.email, TokenPurpose::ConfirmEmail, MessageKind::ConfirmEmail);
    let emails = if allowed { vec![confirmation] } else { Vec::new() };
    match portal.contacts().create_with_emails(&contact, &emails).await {
        Ok(()) => {}
        // Taken since it was read.
        Err(CreateContactError::EmailTaken) if confirmation_required => {
            return tell_the_owner(portal, source, &contact.email, allowed).await;
        }
        Err(err) => return Err(err.into()),
    }
    audit(AuditEvent::Registered, Some(&contact.contact_id), source);
    if confirmation_required {
        return Ok(Registered::AwaitingConfirmation);
    }
    let token = session::start(portal, &contact).await?;
    Ok(Registered::SignedIn(Box::new(contact), token))
}

/// A registration with a taken address while confirmation is required: the registrant gets the
/// answer a new address gets, and the address's owner is told (the message names only the address;
/// `send-email` looks the owner up).
async fn tell_the_owner(
    portal: &(impl UsesContacts + UsesClock),
    source: &SourceAddress,
    email: &Email,
    allowed: bool,
) -> Result<Registered, PortalError> {
    if allowed {
        let notice = OutboxMessage::new(MessageKind::AccountExists, email.as_str(), "", None, portal.clock().now());
        portal.contacts().queue_emails(&[QueuedEmail::new(notice)]).await?;
    }
    audit(AuditEvent::RegistrationForExistingEmail, None, source);
    Ok(Registered::AwaitingConfirmation)
}
