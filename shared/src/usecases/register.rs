//! Open registration.

use crate::domain::audit::{AuditEvent, SourceAddress};
use crate::domain::contact::{Contact, Login, NewContact};
use crate::domain::email::Email;
use crate::domain::event::Fact;
use crate::domain::outbox::{MessageKind, OutboxMessage};
use crate::domain::password::{Password, hash_password, verify_password};
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
    let login = Login::of_email(&registration.email);
    let password = registration.password.clone();
    let password_hash = hash_password(registration.password).await?;
    let mut contact = Contact::new(
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
    let mut emails = if allowed { vec![confirmation] } else { Vec::new() };
    emails.push(Fact::ContactRegistered { contact_id: contact.contact_id.clone() }.at(contact.created_at).into());
    match portal.contacts().create_with_emails(&contact, &emails).await {
        Ok(()) => {}
        // Taken since it was read.
        Err(CreateContactError::EmailTaken) if confirmation_required => {
            return tell_the_owner(portal, source, &contact.email, allowed).await;
        }
        Err(CreateContactError::EmailTaken) => match retried_registration(portal, &login, &contact, password).await? {
            Some(first) => contact = first,
            None => return Err(PortalError::EmailTaken),
        },
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

/// How long after a registration the same registration, sent again, counts as its retry.
const RETRY_WINDOW_SECS: i64 = 600;

/// The account a retry of this very registration finds: its first try was written though its
/// answer was lost (a timeout while DynamoDB committed it). The same address, names, username,
/// phone and password,
/// created moments ago and not changed since: the retry gets the answer the first try would
/// have had, instead of `email_taken`. Anything else is someone else's account.
async fn retried_registration(
    portal: &(impl UsesContacts + UsesClock),
    login: &Login,
    contact: &Contact,
    password: Password,
) -> Result<Option<Contact>, PortalError> {
    let Some(existing) = portal.contacts().find_by_login(login).await? else { return Ok(None) };
    let fresh =
        existing.created_at + RETRY_WINDOW_SECS >= portal.clock().now() && existing.updated_at == existing.created_at;
    let username = |c: &Contact| c.username.as_ref().map(|u| u.normalized.clone());
    let same = existing.first_name == contact.first_name
        && existing.last_name == contact.last_name
        && existing.phone == contact.phone
        && username(&existing) == username(contact);
    if !(fresh && same) {
        return Ok(None);
    }
    Ok(verify_password(password, existing.password_hash.clone()).await?.then_some(existing))
}
