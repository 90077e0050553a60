//! What an outbox message becomes when `send-email` sends it. Requests that must not tell whether
//! an account exists (forgot-password, a new confirmation link, registration with a taken address,
//! an email change to a taken address) queue a message naming only an address; the account is
//! looked up here, off the request path, and the link issued only if there is one to issue.

use crate::domain::contact::{Contact, Login};
use crate::domain::email::Email;
use crate::domain::outbox::{MessageKind, OutboxMessage};
use crate::domain::token::TokenPurpose;
use crate::error::PortalError;
use crate::ports::{UsesClock, UsesContacts, UsesSettings};

use super::tokens::token_email;

/// The email to send for a message, or why there is none.
#[derive(Debug)]
pub enum Prepared {
    Send(Box<OutboxMessage>),
    Nothing(&'static str),
}

/// Resolves `message` into the email to send (with a freshly issued token where it asks for one).
pub async fn prepare(
    portal: &(impl UsesContacts + UsesClock + UsesSettings),
    message: &OutboxMessage,
) -> Result<Prepared, PortalError> {
    let prepared = match message.kind {
        MessageKind::ResetRequest => match account_at(portal, &message.to).await? {
            // Staff's reset names its contact: it goes even when they blocked the password.
            Some(contact)
                if contact.password_hash.is_some() || message.contact_id.as_ref() == Some(&contact.contact_id) =>
            {
                issue_link(portal, message, &contact, TokenPurpose::ResetPassword, MessageKind::ResetPassword).await?
            }
            _ => Prepared::Nothing("no account with a password has this address"),
        },
        MessageKind::ConfirmationRequest => match account_at(portal, &message.to).await? {
            // An address marked undeliverable gets a link only when its owner asked, signed in
            // (the request names them): a link is the one email that goes to a marked address.
            Some(contact) if contact.email_undeliverable.is_some() => {
                if message.contact_id.as_ref() == Some(&contact.contact_id) {
                    issue_link(portal, message, &contact, TokenPurpose::ConfirmEmail, MessageKind::ConfirmEmail).await?
                } else {
                    Prepared::Nothing("the address is undeliverable and its owner did not ask")
                }
            }
            Some(contact) if !contact.email_confirmed => {
                issue_link(portal, message, &contact, TokenPurpose::ConfirmEmail, MessageKind::ConfirmEmail).await?
            }
            _ => Prepared::Nothing("no unconfirmed account has this address"),
        },
        MessageKind::ConfirmNewEmail => match account_at(portal, &message.to).await? {
            None => Prepared::Send(Box::new(message.clone())),
            Some(owner) if Some(&owner.contact_id) == message.contact_id.as_ref() => {
                Prepared::Nothing("the address is already this account's")
            }
            // Another account has the address: its owner is told, and the link never goes out (it
            // could not move the account anyway: the address's guard item is taken).
            Some(owner) => Prepared::Send(Box::new(addressed_to(message, &owner, MessageKind::AddressInUse))),
        },
        // The held notices it sums up are counted off as it goes out; a retry counts off nothing
        // more (the count is tied to when they were first held).
        MessageKind::HeldNoticesSummary => {
            if let (Some(contact_id), Some(held)) = (&message.contact_id, &message.held) {
                portal.contacts().clear_held_notices(contact_id, held, portal.clock().now()).await?;
            }
            Prepared::Send(Box::new(message.clone()))
        }
        MessageKind::SignInCodeRequest => match account_at(portal, &message.to).await? {
            Some(contact) if contact.may_sign_in() => {
                let (code, expires_at) = super::codes::new_sign_in_code(portal, &contact).await?;
                let mut email = addressed_to(message, &contact, MessageKind::EmailedSignInCode);
                email.secret = Some(crate::domain::outbox::MailSecret::new(code));
                email.valid_until = Some(expires_at);
                Prepared::Send(Box::new(email))
            }
            _ => Prepared::Nothing("no account that may sign in has this address"),
        },
        MessageKind::AccountExists => match account_at(portal, &message.to).await? {
            Some(owner) => Prepared::Send(Box::new(addressed_to(message, &owner, MessageKind::AccountExists))),
            None => Prepared::Nothing("no account has this address any more"),
        },
        _ => Prepared::Send(Box::new(message.clone())),
    };
    Ok(prepared)
}

async fn account_at(portal: &impl UsesContacts, address: &str) -> Result<Option<Contact>, PortalError> {
    let Ok(email) = Email::parse(address) else { return Ok(None) };
    Ok(portal.contacts().find_by_login(&Login::of_email(&email)).await?)
}

/// Issues a new token for `contact` and returns the email carrying it, under `message`'s id.
async fn issue_link(
    portal: &(impl UsesContacts + UsesClock + UsesSettings),
    message: &OutboxMessage,
    contact: &Contact,
    purpose: TokenPurpose,
    kind: MessageKind,
) -> Result<Prepared, PortalError> {
    let issued = token_email(portal, contact, &contact.email, purpose, kind);
    if !portal.contacts().issue_token(&issued.token).await? {
        return Ok(Prepared::Nothing("the account is gone"));
    }
    let mut email = issued.message;
    email.message_id = message.message_id.clone();
    email.contact_id = Some(contact.contact_id.clone());
    Ok(Prepared::Send(Box::new(email)))
}

/// `message` as a message of `kind` to `owner`'s own address, greeting them by name.
fn addressed_to(message: &OutboxMessage, owner: &Contact, kind: MessageKind) -> OutboxMessage {
    let mut email = message.clone();
    email.kind = kind;
    email.to = owner.email.as_str().to_string();
    email.first_name = owner.first_name.clone();
    email.secret = None;
    email.contact_id = Some(owner.contact_id.clone());
    email
}
