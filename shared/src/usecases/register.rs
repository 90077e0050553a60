//! Open registration.

use crate::domain::audit::{AuditEvent, SourceAddress};
use crate::domain::contact::{Contact, Login, NewContact, TermsAccepted};
use crate::domain::email::Email;
use crate::domain::event::{Fact, PASSWORD_METHOD};
use crate::domain::outbox::{MessageKind, OutboxMessage};
use crate::domain::password::{Password, hash_password};
use crate::domain::text::Username;
use crate::domain::token::TokenPurpose;
use crate::error::PortalError;
use crate::ports::UsesPasskeys;
use crate::ports::{CreateContactError, Queued};
use crate::ports::{UsesClock, UsesContacts, UsesSessions, UsesSettings, UsesTwoFactor};

use super::audit;
use super::door::{self, Arrival, Entry, Proof, Way};
use super::throttle::emails_allowed;
use super::tokens::token_email;

/// A registration whose every field parsed (the password already met the policy).
#[derive(Clone)]
pub struct Registration {
    pub email: Email,
    pub password: Password,
    pub first_name: String,
    pub last_name: String,
    pub username: Option<Username>,
    pub phone: Option<String>,
    /// Ticked "I accept the terms of use" (of the site's current version) in the same form.
    pub accept_terms: bool,
}

pub enum Registered {
    /// Through the door: the new contact's session (or, for a retry of a registration whose
    /// answer was lost, whatever a sign-in with that password gets).
    Entry(Entry),
    /// Email confirmation is required: the same answer whether the address was new or taken.
    AwaitingConfirmation,
}

/// Creates the contact with its confirmation email in one write. While confirmation is required,
/// a taken address gets the same answer as a new one, and its owner is told instead (the message
/// names only the address: `send-email` looks the owner up, off the request path). Either way the
/// email counts against the allowances, taken before anything is written.
pub async fn register(
    portal: &(impl UsesContacts + UsesSessions + UsesClock + UsesSettings + UsesTwoFactor + UsesPasskeys),
    source: &SourceAddress,
    registration: Registration,
    arrival: Arrival<'_>,
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
    // Accepted in the registration form: stored with the account (else the door limits the first
    // session to `/terms`).
    if let (true, Some(version)) = (registration.accept_terms, &portal.settings().terms_version) {
        contact.terms_accepted = Some(TermsAccepted { version: version.clone(), at: contact.created_at });
    }
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
    let mut emails: Vec<Queued> = if allowed { vec![confirmation.into()] } else { Vec::new() };
    let registered = Fact::ContactRegistered { contact_id: contact.contact_id.clone(), method: PASSWORD_METHOD.into() };
    emails.push(registered.at_for(contact.created_at, &contact.email).into());
    match portal.contacts().create_with_emails(&contact, &emails).await {
        Ok(()) => {}
        // Taken since it was read.
        Err(CreateContactError::EmailTaken) if confirmation_required => {
            return tell_the_owner(portal, source, &contact.email, allowed).await;
        }
        Err(CreateContactError::EmailTaken) => {
            return retried_registration(portal, source, &login, &contact, password, arrival).await;
        }
        Err(err) => return Err(err.into()),
    }
    audit(AuditEvent::Registered, Some(&contact.contact_id), source);
    if confirmation_required {
        return Ok(Registered::AwaitingConfirmation);
    }
    let proof = Proof::NewCredentials { contact: Box::new(contact), way: Way::Registration };
    Ok(Registered::Entry(door::enter(portal, source, proof, arrival, false).await?))
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
        portal.contacts().queue_emails(&[Queued::new(notice)]).await?;
    }
    audit(AuditEvent::RegistrationForExistingEmail, None, source);
    Ok(Registered::AwaitingConfirmation)
}

/// How long after a registration the same registration, sent again, counts as its retry.
const RETRY_WINDOW_SECS: i64 = 600;

/// A registration whose address is taken, while confirmation is not required: when it is very
/// likely a retry of this same registration (its first try was written though its answer was
/// lost: a timeout while DynamoDB committed it), it gets what a sign-in with this password gets,
/// through the door (its attempt reservation, lockout and second factor included); otherwise, and
/// whenever that sign-in fails, `email_taken`. The same address, names, username and phone, created
/// moments ago and not changed since; anything else is someone else's account, and no password is
/// tried against it.
async fn retried_registration(
    portal: &(impl UsesContacts + UsesSessions + UsesClock + UsesSettings + UsesTwoFactor + UsesPasskeys),
    source: &SourceAddress,
    login: &Login,
    contact: &Contact,
    password: Password,
    arrival: Arrival<'_>,
) -> Result<Registered, PortalError> {
    let Some(existing) = portal.contacts().find_by_login(login).await? else { return Err(PortalError::EmailTaken) };
    let fresh =
        existing.created_at + RETRY_WINDOW_SECS >= portal.clock().now() && existing.updated_at == existing.created_at;
    let username = |c: &Contact| c.username.as_ref().map(|u| u.normalized.clone());
    let same = existing.first_name == contact.first_name
        && existing.last_name == contact.last_name
        && existing.phone == contact.phone
        && username(&existing) == username(contact);
    if !(fresh && same) {
        return Err(PortalError::EmailTaken);
    }
    let proof = Proof::Password { login: existing.email.as_str(), password, second_factor_code: None };
    match door::enter(portal, source, proof, arrival, false).await {
        Ok(entry) => Ok(Registered::Entry(entry)),
        Err(PortalError::InvalidCredentials) => Err(PortalError::EmailTaken),
        Err(err) => Err(err),
    }
}
