//! Redeeming an invitation: looking a code up (which consumes nothing), setting up credentials, or
//! attaching the invitation to an existing account.

use crate::domain::event::Fact;
use std::collections::BTreeMap;

use crate::domain::audit::{AuditEvent, SourceAddress};
use crate::domain::contact::{Contact, NewContact};
use crate::domain::email::Email;
use crate::domain::invitation::{Invitation, InvitationCode, InvitationType, Redemption, merged_roles};
use crate::domain::password::{Password, hash_password};
use crate::domain::text::Username;
use crate::domain::two_factor::two_factor_required;
use crate::error::PortalError;
use crate::ports::ContactChange;
use crate::ports::{UsesClock, UsesContacts, UsesInvitations, UsesSessions, UsesSettings, UsesTwoFactor};

use super::session;
use super::sign_in::authenticate;
use super::throttle::{Attempt, give_back_attempt, reserve_attempt};

/// The invitation a code opens, or `invitation_invalid` for every kind of bad code alike. Each
/// code tried takes an attempt of the source address first (given back when the code is good), so
/// an address that used up its allowance is refused, however many it sends at once: guessing
/// codes stops there.
pub async fn open(
    portal: &(impl UsesContacts + UsesInvitations + UsesClock + UsesSettings),
    source: &SourceAddress,
    raw_code: &str,
) -> Result<(InvitationCode, Invitation), PortalError> {
    reserve_attempt(portal, source, Attempt::InvitationCode).await?;
    let found = match InvitationCode::parse(raw_code) {
        Some(code) => portal.invitations().find_by_code(&code.digest()).await?.map(|invitation| (code, invitation)),
        None => None,
    };
    match found {
        Some((code, invitation)) if invitation.is_redeemable(portal.clock().now()) => {
            give_back_attempt(portal, source, Attempt::InvitationCode).await?;
            Ok((code, invitation))
        }
        _ => Err(PortalError::InvitationInvalid),
    }
}

/// New credentials as submitted: a group invitation also needs the new contact's email and names.
pub struct NewCredentials {
    pub password: String,
    pub username: Option<Username>,
    pub email: Option<Email>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
}

/// How the invitation is redeemed.
pub enum Redeem {
    NewCredentials(NewCredentials),
    ExistingAccount { login: String, password: Password },
}

pub struct Redeemed {
    pub contact: Contact,
    /// The new session's token; `None` for an existing account with a second factor, which a
    /// password alone never signs in (the contact signs in with both afterwards).
    pub session_token: Option<String>,
    /// Whether new credentials were set up (as opposed to an existing account).
    pub created: bool,
}

/// Redeems an opened invitation, all or nothing, and signs the contact in; the session the browser
/// arrived with (`arrived_with`) ends.
pub async fn redeem(
    portal: &(impl UsesContacts + UsesSessions + UsesInvitations + UsesClock + UsesSettings + UsesTwoFactor),
    source: &SourceAddress,
    invitation: &Invitation,
    how: Redeem,
    arrived_with: Option<&str>,
) -> Result<Redeemed, PortalError> {
    // An existing account may have a second factor (new credentials never do): its password alone
    // signs nothing in. Read before the redemption commits, so a fault here changes nothing.
    let (change, before, created, second_factor) = match how {
        Redeem::ExistingAccount { login, password } => {
            let account = authenticate(portal, source, &login, password, None).await?.contact;
            let second_factor = portal.two_factor().get(&account.contact_id).await?.enabled();
            let change = ContactChange::Assign {
                contact_id: account.contact_id.clone(),
                roles: merged_roles(&account.roles, &invitation.roles),
                account_id: invitation.account_id.clone(),
            };
            (change, Some(account), false, second_factor)
        }
        Redeem::NewCredentials(credentials) => {
            let (change, before) = credentials_change(portal, invitation, credentials).await?;
            (change, before, true, false)
        }
    };
    let now = portal.clock().now();
    let redemption = Redemption {
        invitation_id: invitation.invitation_id.clone(),
        contact_id: change.contact_id().clone(),
        redeemed_at: now,
        source_ip: source.to_string(),
    };
    let contact_id = change.contact_id().clone();
    let mut events = vec![
        Fact::InvitationRedeemed {
            invitation_id: invitation.invitation_id.clone(),
            contact_id: contact_id.clone(),
            created,
        }
        .at(now),
    ];
    if created {
        // New credentials make the contact a portal user: a registration by invitation.
        events.push(Fact::ContactRegistered { contact_id }.at(now));
    }
    portal.invitations().redeem_with_events(invitation, &change, &redemption, now, &events).await?;
    // The redemption's conditions held, so the contact is as read with the change applied.
    let contact =
        change.applied_to(before.as_ref(), now).ok_or_else(|| anyhow::anyhow!("a change without its contact"))?;
    tracing::info!(
        audit = AuditEvent::InvitationRedeemed.as_str(),
        invitation_id = %invitation.invitation_id,
        contact_id = %contact.contact_id,
        source_ip = %source,
        "audit"
    );
    // With a second factor the password alone signs nothing in; a role that requires one limits
    // the session to setting it up.
    session::replace(portal, arrived_with).await?;
    if second_factor {
        return Ok(Redeemed { contact, session_token: None, created });
    }
    let setup_only = two_factor_required(&contact.roles, &portal.settings().two_factor_required_roles);
    let options = session::SessionOptions { remembered: false, setup_only };
    let session_token = session::start_with(portal, &contact, &contact.session_epoch, options).await?;
    Ok(Redeemed { contact, session_token: Some(session_token), created })
}

/// New credentials: for a single invitation, the invited contact's (returned as read); for a group
/// invitation, a new contact's, made from the submitted email and names.
async fn credentials_change(
    portal: &(impl UsesContacts + UsesInvitations + UsesClock + UsesSettings),
    invitation: &Invitation,
    credentials: NewCredentials,
) -> Result<(ContactChange, Option<Contact>), PortalError> {
    let min_length = portal.settings().password_min_length;
    let NewCredentials { password, username, email, first_name, last_name } = credentials;
    match invitation.kind {
        InvitationType::Single => {
            let contact = portal.contacts().get(&invitation.contact_id).await?.ok_or(PortalError::InvitationInvalid)?;
            if contact.password_hash.is_some() {
                // Credentials set since the code was opened: a concurrent redemption used it up.
                // The answer is then the used-up code's, not advice to sign in.
                let current = portal.invitations().get(&invitation.invitation_id).await?;
                if !current.is_some_and(|i| i.is_redeemable(portal.clock().now())) {
                    return Err(PortalError::InvitationInvalid);
                }
                return Err(PortalError::field(
                    "existing_account",
                    "this invitation is for an existing account: tick \"I have an existing account\" and sign in",
                ));
            }
            let context = [contact.email.as_str(), &contact.first_name, &contact.last_name];
            let password = Password::choose(password, min_length, &context)
                .map_err(|reason| PortalError::field("password", reason.0))?;
            let change = ContactChange::SetCredentials {
                contact_id: contact.contact_id.clone(),
                password_hash: hash_password(password).await?,
                username,
                roles: merged_roles(&contact.roles, &invitation.roles),
                account_id: invitation.account_id.clone(),
            };
            Ok((change, Some(contact)))
        }
        InvitationType::Group => {
            let mut problems = BTreeMap::new();
            for (name, missing) in
                [("email", email.is_none()), ("first_name", first_name.is_none()), ("last_name", last_name.is_none())]
            {
                if missing {
                    problems.insert(name.to_string(), "is required".to_string());
                }
            }
            let context: Vec<&str> = [email.as_ref().map(Email::as_str), first_name.as_deref(), last_name.as_deref()]
                .into_iter()
                .flatten()
                .collect();
            let chosen = Password::choose(password, min_length, &context);
            if let Err(reason) = &chosen {
                problems.insert("password".into(), reason.to_string());
            }
            let (Some(email), Some(first_name), Some(last_name), Ok(password)) = (email, first_name, last_name, chosen)
            else {
                return Err(PortalError::fields_invalid(problems));
            };
            let confirmed = email.normalized() == invitation.email.to_lowercase();
            let mut contact = Contact::new(
                NewContact {
                    email,
                    first_name,
                    last_name,
                    username,
                    phone: None,
                    roles: invitation.roles.clone(),
                    password_hash: Some(hash_password(password).await?),
                },
                portal.clock().now(),
            );
            // The code reached the invited address; another address is unproven.
            contact.email_confirmed = confirmed;
            contact.account_id = invitation.account_id.clone();
            Ok((ContactChange::Create(Box::new(contact)), None))
        }
    }
}
