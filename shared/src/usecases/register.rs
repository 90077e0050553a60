//! Open registration.

use crate::domain::audit::{AuditEvent, SourceAddress};
use crate::domain::contact::{Contact, Login, NewContact};
use crate::domain::email::Email;
use crate::domain::outbox::{MessageKind, OutboxMessage};
use crate::domain::password::{Password, hash_password, verify_password};
use crate::domain::text::Username;
use crate::domain::token::TokenPurpose;
use crate::error::PortalError;
use crate::ports::CreateContactError;
use crate::ports::{UsesClock, UsesContacts, UsesSessions, UsesSettings};

use super::throttle::email_allowed;
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
/// a taken address gets the same answer as a new one and its owner is told instead.
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
    // The confirmation email goes out in the same write as the contact, whatever the setting.
    let (token, message) = token_email(portal, &contact, TokenPurpose::ConfirmEmail);
    let confirmation_required = portal.settings().require_confirmation;
    match portal.contacts().create_with_email(&contact, Some((&token, &message))).await {
        Ok(()) => {}
        Err(CreateContactError::EmailTaken) if confirmation_required => {
            // Tell the owner, not the registrant, that the address has an account.
            if let Some(owner) = portal.contacts().find_by_login(&login).await?
                && email_allowed(portal, source, &owner.contact_id).await?
            {
                let notice = OutboxMessage::new(
                    MessageKind::AccountExists,
                    owner.email.as_str(),
                    &owner.first_name,
                    None,
                    portal.clock().now(),
                );
                portal.contacts().queue_email(None, &notice).await?;
            }
            audit(AuditEvent::RegistrationForExistingEmail, None, source);
            return Ok(Registered::AwaitingConfirmation);
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
