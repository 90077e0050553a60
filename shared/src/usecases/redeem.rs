//! Redeeming an invitation: looking a code up (which consumes nothing), setting up credentials, or
//! attaching the invitation to an existing account.

use std::collections::BTreeMap;

use crate::domain::audit::{AuditEvent, SourceAddress};
use crate::domain::contact::{Contact, NewContact, TermsAccepted};
use crate::domain::email::Email;
use crate::domain::event::{Fact, PASSWORD_METHOD};
use crate::domain::identity::{ExternalIdentity, LinkedIdentity, claimed_name, external_method};
use crate::domain::invitation::{Invitation, InvitationCode, InvitationType, Redemption, merged_roles};
use crate::domain::outbox::{MessageKind, OutboxMessage};
use crate::domain::password::{Password, hash_password};
use crate::domain::text::Username;
use crate::error::PortalError;
use crate::ports::ContactChange;
use crate::ports::UsesPasskeys;
use crate::ports::{UsesClock, UsesContacts, UsesInvitations, UsesSessions, UsesSettings, UsesTwoFactor};

use super::door::{self, Arrival, Entry, Proof, Way};
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
    /// The person ticked "I accept the terms of use" (the site's current version).
    pub accept_terms: bool,
}

/// An identity a provider vouched for, to redeem with (see `usecases::external`).
pub struct ExternalRedemption {
    pub provider: String,
    /// The provider is trusted for the second factor and its `amr` held `mfa`.
    pub second_factor: bool,
    pub identity: crate::domain::identity::ExternalIdentity,
    pub accept_terms: bool,
}

/// How the invitation is redeemed.
pub enum Redeem {
    /// With an external identity: onto the account it is linked to, else the invited contact (a
    /// single invitation) or a new contact made from its claims (a group invitation).
    External(Box<ExternalRedemption>),
    NewCredentials(NewCredentials),
    /// Onto an account the person proves is theirs: its password and, when it has a second
    /// factor, a current code of it (an invitation's roles must not be had with half a sign-in).
    ExistingAccount {
        login: String,
        password: Password,
        second_factor_code: Option<String>,
        accept_terms: bool,
    },
}

pub struct Redeemed {
    pub contact: Contact,
    /// What the door opened to; `None` when the new contact's address is still to be confirmed
    /// (a group invitation redeemed with another address while the site requires confirmation:
    /// its link is on its way).
    pub entry: Option<Entry>,
    /// Whether new credentials were set up (as opposed to an existing account).
    pub created: bool,
}

const CODE_REQUIRED: &str = "is required: the account has two-factor authentication";
const EXTERNAL_CODE_REQUIRED: &str = "is required: the account this sign-in belongs to has two-factor \
    authentication; redeem with its password and a code instead";

/// Redeems an opened invitation, all or nothing, and signs the contact in through the door (the
/// session the browser arrived with ends). Onto an existing account, the door's proof (password,
/// lockout, second factor) is made before the redemption commits, so a refusal changes nothing.
pub async fn redeem(
    portal: &(impl UsesContacts + UsesSessions + UsesInvitations + UsesClock + UsesSettings + UsesTwoFactor + UsesPasskeys),
    source: &SourceAddress,
    invitation: &Invitation,
    how: Redeem,
    arrival: Arrival<'_>,
) -> Result<Redeemed, PortalError> {
    // A contact that becomes a portal user through an external identity: its provider (the method
    // of its registration and of the door's proof) and whether the provider's MFA counts.
    let mut external_way: Option<(String, bool)> = None;
    let (change, before, created, proven) = match how {
        Redeem::ExistingAccount { login, password, second_factor_code, accept_terms } => {
            let proof = Proof::Password { login: &login, password, second_factor_code: second_factor_code.as_deref() };
            let proven = door::prove(portal, source, proof, arrival).await?;
            if proven.awaits_second_factor() {
                return Err(PortalError::field("second_factor_code", CODE_REQUIRED));
            }
            let account = proven.contact().clone();
            let change = ContactChange::Assign {
                contact_id: account.contact_id.clone(),
                roles: merged_roles(&account.roles, &invitation.roles),
                account_id: invitation.account_id.clone(),
                terms: accepted_terms(portal, accept_terms),
            };
            (change, Some(account), false, Some(proven))
        }
        Redeem::NewCredentials(credentials) => {
            let (change, before) = credentials_change(portal, invitation, credentials).await?;
            (change, before, true, None)
        }
        Redeem::External(external) => {
            let ExternalRedemption { provider, second_factor, identity, accept_terms } = *external;
            let terms = accepted_terms(portal, accept_terms);
            match portal.contacts().identity_owner(&provider, &identity.subject).await? {
                Some(owner) => {
                    let account = portal.contacts().get(&owner).await?.ok_or(PortalError::InvitationInvalid)?;
                    let verified = door::ExternalVerified::new(account, &provider, second_factor);
                    let proven = door::prove(portal, source, Proof::External(Box::new(verified)), arrival).await?;
                    if proven.awaits_second_factor() {
                        return Err(PortalError::field("second_factor_code", EXTERNAL_CODE_REQUIRED));
                    }
                    let account = proven.contact().clone();
                    let change = ContactChange::Assign {
                        contact_id: account.contact_id.clone(),
                        roles: merged_roles(&account.roles, &invitation.roles),
                        account_id: invitation.account_id.clone(),
                        terms,
                    };
                    (change, Some(account), false, Some(proven))
                }
                None => {
                    let (change, before) = identity_change(portal, invitation, &provider, &identity, terms).await?;
                    external_way = Some((provider, second_factor));
                    (change, before, true, None)
                }
            }
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
        let method = external_way.as_ref().map_or_else(|| PASSWORD_METHOD.to_string(), |(p, _)| external_method(p));
        let registered = Fact::ContactRegistered { contact_id, method };
        let address = match (&change, &before) {
            (ContactChange::Create(contact), _) => Some(&contact.email),
            (_, Some(contact)) => Some(&contact.email),
            _ => None,
        };
        events.push(match address {
            Some(address) => registered.at_for(now, address),
            None => registered.at(now),
        });
    }
    let mut queued: Vec<OutboxMessage> = events.iter().map(OutboxMessage::for_event).collect();
    // A new contact whose address the code did not reach, while the site requires confirmation:
    // its link goes out with the redemption (`send-email` issues it), and no session begins.
    let unconfirmed =
        matches!(&change, ContactChange::Create(new) if !new.email_confirmed) && portal.settings().require_confirmation;
    if let (true, ContactChange::Create(new)) = (unconfirmed, &change) {
        let request = OutboxMessage::new(MessageKind::ConfirmationRequest, new.email.as_str(), "", None, now);
        queued.push(request);
    }
    portal.invitations().redeem_with_events(invitation, &change, &redemption, now, &queued).await?;
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
    if unconfirmed {
        return Ok(Redeemed { contact, entry: None, created });
    }
    let entry = match proven {
        Some(proven) => door::admit(portal, source, proven.redeemed_onto(contact.clone())?, arrival, false).await?,
        None => match external_way {
            // Through the door as the identity's sign-in (the account's lockout and state apply).
            Some((provider, second_factor)) => {
                let verified = door::ExternalVerified::new(contact.clone(), &provider, second_factor);
                door::enter(portal, source, Proof::External(Box::new(verified)), arrival, false).await?
            }
            None => {
                let proof = Proof::NewCredentials { contact: Box::new(contact.clone()), way: Way::Redemption };
                door::enter(portal, source, proof, arrival, false).await?
            }
        },
    };
    Ok(Redeemed { contact, entry: Some(entry), created })
}

/// An identity no account has: the invited contact takes it (a single invitation; it must not have
/// credentials yet), or a new contact is made from its claims (a group invitation).
async fn identity_change(
    portal: &(impl UsesContacts + UsesInvitations + UsesClock + UsesSettings),
    invitation: &Invitation,
    provider: &str,
    identity: &ExternalIdentity,
    terms: Option<TermsAccepted>,
) -> Result<(ContactChange, Option<Contact>), PortalError> {
    let now = portal.clock().now();
    let linked = LinkedIdentity {
        provider: provider.to_string(),
        subject: identity.subject.clone(),
        email: identity.email.clone(),
        linked_at: now,
    };
    match invitation.kind {
        InvitationType::Single => {
            let invited = portal.contacts().get(&invitation.contact_id).await?;
            let contact = invited.filter(|c| c.deleted_at.is_none()).ok_or(PortalError::InvitationInvalid)?;
            if contact.password_hash.is_some() || !contact.identities.is_empty() {
                return Err(PortalError::field(
                    "existing_account",
                    "this invitation is for an existing account: sign in to it and redeem with its password",
                ));
            }
            let change = ContactChange::LinkIdentity {
                contact_id: contact.contact_id.clone(),
                identity: linked,
                roles: merged_roles(&contact.roles, &invitation.roles),
                account_id: invitation.account_id.clone(),
                terms,
            };
            Ok((change, Some(contact)))
        }
        InvitationType::Group => {
            let Some(email) = identity.email.as_deref().and_then(|e| Email::parse(e).ok()) else {
                return Err(PortalError::field(
                    "email",
                    "is not given by the provider: redeem with a password instead",
                ));
            };
            let confirmed = identity.email_verified || email.normalized() == invitation.email.to_lowercase();
            let mut contact = Contact::new(
                NewContact {
                    email,
                    first_name: claimed_name(identity.given_name.as_deref()),
                    last_name: claimed_name(identity.family_name.as_deref()),
                    username: None,
                    phone: None,
                    roles: invitation.roles.clone(),
                    password_hash: None,
                },
                now,
            );
            contact.email_confirmed = confirmed;
            contact.account_id = invitation.account_id.clone();
            contact.terms_accepted = terms;
            contact.identities = vec![linked];
            Ok((ContactChange::Create(Box::new(contact)), None))
        }
    }
}

/// The acceptance of the site's current terms, when the person ticked it and the site has terms
/// (stored with the redemption, so the session the door then opens is not limited to `/terms`).
fn accepted_terms(portal: &(impl UsesSettings + UsesClock), accept: bool) -> Option<TermsAccepted> {
    let version = portal.settings().terms_version.clone().filter(|_| accept)?;
    Some(TermsAccepted { version, at: portal.clock().now() })
}

/// New credentials: for a single invitation, the invited contact's (returned as read); for a group
/// invitation, a new contact's, made from the submitted email and names.
async fn credentials_change(
    portal: &(impl UsesContacts + UsesInvitations + UsesClock + UsesSettings),
    invitation: &Invitation,
    credentials: NewCredentials,
) -> Result<(ContactChange, Option<Contact>), PortalError> {
    let min_length = portal.settings().password_min_length;
    let NewCredentials { password, username, email, first_name, last_name, accept_terms } = credentials;
    let terms = accepted_terms(portal, accept_terms);
    match invitation.kind {
        InvitationType::Single => {
            let invited = portal.contacts().get(&invitation.contact_id).await?;
            // A deleted contact's invitations went with it (its erasure revokes them).
            let contact = invited.filter(|c| c.deleted_at.is_none()).ok_or(PortalError::InvitationInvalid)?;
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
                terms,
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
            contact.terms_accepted = terms;
            Ok((ContactChange::Create(Box::new(contact)), None))
        }
    }
}
