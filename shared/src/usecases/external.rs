//! Signing in with an OpenID Connect provider, and linking an identity to one's account.
//!
//! A trip to a provider begins here ([`start`]): a random `state`, `nonce` and PKCE verifier, kept
//! server-side under the digest of the state (never in the browser), and bound to the browser by
//! a cookie whose digest the state item holds. The callback ([`finish`]) takes the state item once
//! (a replayed or forged callback finds none), checks it is this browser's, for this provider and
//! in time, and only then lets the provider exchange the code and check the ID token. What the
//! identity then opens goes through the one door (`door::Proof::External`), like every way in.

use crate::domain::audit::{AuditEvent, SourceAddress};
use crate::domain::contact::{Contact, Login, NewContact};
use crate::domain::email::Email;
use crate::domain::event::Fact;
use crate::domain::identity::{
    EXTERNAL_STATE_SECS, ExternalIdentity, ExternalPurpose, ExternalState, LinkedIdentity, OidcProvider, claimed_name,
    external_method,
};
use crate::domain::ids::ContactId;
use crate::domain::invitation::Invitation;
use crate::domain::secret::{digest, random_token};
use crate::error::PortalError;
use crate::ports::{
    AuthorizationRequest, CodeExchange, CreateContactError, LinkIdentityError, Queued, UsesIdentityProviders,
    UsesInvitations, UsesPasskeys,
};

use super::door::{self, Arrival, DoorPorts, Entry, ExternalVerified, Proof};
use super::reauth::{Reauthentication, reauthenticate};
use super::redeem::{self, ExternalRedemption, Redeem, Redeemed};
use super::{audit, audit_entry, record};

/// Everything a trip to a provider reads and writes.
pub trait ExternalPorts: DoorPorts + UsesIdentityProviders {}
impl<T: DoorPorts + UsesIdentityProviders> ExternalPorts for T {}

/// A trip begun: where the browser goes, and the value of its binding cookie.
pub struct Started {
    pub location: String,
    pub browser_token: String,
}

/// What the provider sent back to the callback (its query string).
#[derive(Default)]
pub struct Callback<'a> {
    pub code: Option<&'a str>,
    pub state: Option<&'a str>,
    pub error: Option<&'a str>,
}

/// What a callback ended in.
pub enum Finished {
    /// A sign-in through the door; the browser then goes to `return_to`.
    SignedIn { entry: Entry, return_to: String },
    /// The identity is linked to the signed-in account.
    Linked(Box<Contact>),
    /// The invitation is redeemed onto the account the identity yields.
    Redeemed(Box<(Invitation, Redeemed)>),
}

/// The redirect URI of a provider: the portal's callback for it.
pub fn redirect_uri(base_url: &str, provider: &str) -> String {
    format!("{base_url}/signin/external/{provider}/callback")
}

fn provider_of<'a>(portal: &'a impl ExternalPorts, id: &str) -> Result<&'a OidcProvider, PortalError> {
    portal.settings().oidc_provider(id).ok_or(PortalError::NotFound)
}

/// Begins a trip to `provider` for `purpose`. `browser` is the binding cookie the browser already
/// has (several trips at once, in several tabs, share it), if any.
pub async fn start(
    portal: &impl ExternalPorts,
    source: &SourceAddress,
    provider_id: &str,
    purpose: ExternalPurpose,
    browser: Option<&str>,
) -> Result<Started, PortalError> {
    let provider = provider_of(portal, provider_id)?;
    let browser_token = browser.filter(|t| t.len() == 43).map_or_else(random_token, str::to_string);
    let (state, nonce, pkce_verifier) = (random_token(), random_token(), random_token());
    let redirect_uri = redirect_uri(&portal.settings().base_url, &provider.id);
    let request = AuthorizationRequest {
        redirect_uri: &redirect_uri,
        state: &state,
        nonce: &nonce,
        pkce_verifier: &pkce_verifier,
    };
    let location = match portal.identity_providers().authorization_url(provider, &request).await {
        Ok(location) => location,
        Err(failure) => return Err(failed(portal, source, provider_id, None, &failure.to_string()).await),
    };
    let kept = ExternalState {
        provider: provider.id.clone(),
        nonce,
        pkce_verifier,
        browser_digest: digest(&browser_token),
        purpose,
        expires_at: portal.clock().now() + EXTERNAL_STATE_SECS,
    };
    portal.contacts().save_external_state(&digest(&state), &kept).await?;
    Ok(Started { location, browser_token })
}

/// The provider's callback: the state taken once and checked, the code exchanged and the ID token
/// checked, then what the trip was for.
pub async fn finish(
    portal: &(impl ExternalPorts + UsesPasskeys + UsesInvitations),
    source: &SourceAddress,
    provider_id: &str,
    callback: Callback<'_>,
    browser: Option<&str>,
    arrival: Arrival<'_>,
) -> Result<Finished, PortalError> {
    let provider = provider_of(portal, provider_id)?;
    let Some(state) = callback.state.filter(|s| !s.is_empty() && s.len() <= 128) else {
        return Err(failed(portal, source, provider_id, None, "a callback without its state").await);
    };
    let Some(kept) = portal.contacts().take_external_state(&digest(state)).await? else {
        return Err(failed(portal, source, provider_id, None, "an unknown, used or expired state").await);
    };
    let linking = match &kept.purpose {
        ExternalPurpose::Link { contact_id, .. } => Some(contact_id.clone()),
        _ => None,
    };
    let now = portal.clock().now();
    if !browser.is_some_and(|b| kept.fits(provider_id, b, now)) {
        let reason = "a state of another browser, another provider, or too old";
        return Err(failed(portal, source, provider_id, linking.as_ref(), reason).await);
    }
    if let Some(error) = callback.error {
        // The error code only (`access_denied`...): the query string is anyone's to write.
        let code: String = error.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_').take(64).collect();
        let reason = format!("the provider answered {code}");
        return Err(failed(portal, source, provider_id, linking.as_ref(), &reason).await);
    }
    let Some(code) = callback.code.filter(|c| !c.is_empty() && c.len() <= 2048) else {
        return Err(failed(portal, source, provider_id, linking.as_ref(), "a callback without a code").await);
    };
    let redirect_uri = redirect_uri(&portal.settings().base_url, &provider.id);
    let exchange =
        CodeExchange { code, redirect_uri: &redirect_uri, pkce_verifier: &kept.pkce_verifier, nonce: &kept.nonce };
    let identity = match portal.identity_providers().identity(provider, &exchange).await {
        Ok(identity) => identity,
        Err(failure) => return Err(failed(portal, source, provider_id, linking.as_ref(), &failure.to_string()).await),
    };
    match kept.purpose {
        ExternalPurpose::SignIn { return_to } => {
            let entry = sign_in(portal, source, provider, &identity, arrival).await?;
            Ok(Finished::SignedIn { entry, return_to })
        }
        ExternalPurpose::Link { contact_id, epoch } => {
            let contact = link(portal, source, provider, &identity, &contact_id, &epoch).await?;
            Ok(Finished::Linked(Box::new(contact)))
        }
        ExternalPurpose::Redeem { invitation_id, code_digest, accept_terms } => {
            // The invitation as it stands now: still redeemable, and by the code that began the
            // trip (a resend replaced it; a revocation ended it).
            let invitation = portal.invitations().get(&invitation_id.as_str().into()).await?;
            let invitation = invitation
                .filter(|i| i.code_digest == code_digest && i.is_redeemable(now))
                .ok_or(PortalError::InvitationInvalid)?;
            let how = Redeem::External(Box::new(ExternalRedemption {
                provider: provider.id.clone(),
                second_factor: provider.trust_mfa && identity.mfa,
                identity,
                accept_terms,
            }));
            let redeemed = redeem::redeem(portal, source, &invitation, how, arrival).await?;
            Ok(Finished::Redeemed(Box::new((invitation, redeemed))))
        }
    }
}

/// The account an identity signs in to: the one it is linked to; else, where the site allows it,
/// the account whose address the provider verified; else, while registration is open, a new one
/// made from its claims. Then through the door.
async fn sign_in(
    portal: &impl ExternalPorts,
    source: &SourceAddress,
    provider: &OidcProvider,
    identity: &ExternalIdentity,
    arrival: Arrival<'_>,
) -> Result<Entry, PortalError> {
    let second_factor = provider.trust_mfa && identity.mfa;
    let contact = match portal.contacts().identity_owner(&provider.id, &identity.subject).await? {
        Some(owner) => match portal.contacts().get(&owner).await? {
            Some(contact) => contact,
            None => return Err(anyhow::anyhow!("an identity's guard without its account").into()),
        },
        None => account_for_new_identity(portal, source, provider, identity).await?,
    };
    let proof = Proof::External(Box::new(ExternalVerified::new(contact, &provider.id, second_factor)));
    door::enter(portal, source, proof, arrival, false).await
}

async fn account_for_new_identity(
    portal: &impl ExternalPorts,
    source: &SourceAddress,
    provider: &OidcProvider,
    identity: &ExternalIdentity,
) -> Result<Contact, PortalError> {
    let email = identity.email.as_deref().and_then(|e| Email::parse(e).ok());
    let holder = match &email {
        Some(email) => portal.contacts().find_by_login(&Login::of_email(email)).await?,
        None => None,
    };
    let now = portal.clock().now();
    let linked = LinkedIdentity {
        provider: provider.id.clone(),
        subject: identity.subject.clone(),
        email: identity.email.clone(),
        linked_at: now,
    };
    if let Some(holder) = holder {
        // An account has the address: only a verified address, and only where the site allows
        // it, links to it; otherwise the person signs in as they do and links from their page.
        let verified = identity.verified_email().is_some();
        if !(verified && provider.link_verified_email) || holder.deleted_at.is_some() {
            audit(AuditEvent::ExternalSignInFailed, Some(&holder.contact_id), source);
            return Err(PortalError::NoAccount { email_in_use: true });
        }
        let entry = linked_entry(portal, source, &holder.contact_id, &linked, "verified_email");
        return match portal.contacts().link_identity(&holder, &linked, &[entry.into()]).await {
            Ok(contact) => Ok(contact),
            Err(err) => Err(link_error(err)),
        };
    }
    let settings = portal.settings();
    let Some(email) = email.filter(|_| settings.open_registration && !settings.invitation_required) else {
        audit(AuditEvent::ExternalSignInFailed, None, source);
        return Err(PortalError::NoAccount { email_in_use: false });
    };
    let mut contact = Contact::new(
        NewContact {
            email,
            first_name: claimed_name(identity.given_name.as_deref()),
            last_name: claimed_name(identity.family_name.as_deref()),
            username: None,
            phone: None,
            roles: Vec::new(),
            password_hash: None,
        },
        now,
    );
    contact.email_confirmed = identity.email_verified;
    contact.identities = vec![linked.clone()];
    let method = external_method(&provider.id);
    let queued: Vec<Queued> = vec![
        Fact::ContactRegistered { contact_id: contact.contact_id.clone(), method }.at_for(now, &contact.email).into(),
        linked_entry(portal, source, &contact.contact_id, &linked, "registration").into(),
    ];
    match portal.contacts().create_with_emails(&contact, &queued).await {
        Ok(()) => {
            audit(AuditEvent::Registered, Some(&contact.contact_id), source);
            Ok(contact)
        }
        // Registered meanwhile (the same identity, in another tab): that account is the one.
        Err(CreateContactError::IdentityTaken) => {
            let owner = portal.contacts().identity_owner(&provider.id, &identity.subject).await?;
            let contact = match owner {
                Some(owner) => portal.contacts().get(&owner).await?,
                None => None,
            };
            contact.ok_or_else(|| anyhow::anyhow!("an identity taken by no account").into())
        }
        Err(CreateContactError::EmailTaken) => Err(PortalError::NoAccount { email_in_use: true }),
        Err(err) => Err(err.into()),
    }
}

fn linked_entry(
    portal: &impl ExternalPorts,
    source: &SourceAddress,
    contact_id: &ContactId,
    identity: &LinkedIdentity,
    how: &str,
) -> crate::domain::audit::AuditEntry {
    let id = Some(contact_id);
    audit_entry(portal, AuditEvent::IdentityLinked, id, id, source)
        .with("provider", identity.provider.clone())
        .with("how", how.to_string())
}

fn link_error(err: LinkIdentityError) -> PortalError {
    match err {
        LinkIdentityError::Taken => PortalError::field("identity", "belongs to another account"),
        LinkIdentityError::Changed => {
            PortalError::validation("Your account changed meanwhile (a password change?); sign in and try again.")
        }
        LinkIdentityError::Store(err) => err.into(),
    }
}

/// Begins redeeming an invitation with a provider: the code is checked first (and counted against
/// the source address as every code tried), and only its digest rides along; the code itself never
/// goes to the provider.
pub async fn start_redeem(
    portal: &(impl ExternalPorts + UsesInvitations),
    source: &SourceAddress,
    provider_id: &str,
    raw_code: &str,
    accept_terms: bool,
    browser: Option<&str>,
) -> Result<Started, PortalError> {
    provider_of(portal, provider_id)?;
    let (code, invitation) = redeem::open(portal, source, raw_code).await?;
    let purpose = ExternalPurpose::Redeem {
        invitation_id: invitation.invitation_id.to_string(),
        code_digest: code.digest(),
        accept_terms,
    };
    start(portal, source, provider_id, purpose, browser).await
}

/// Begins linking a provider's identity to the signed-in account: after re-authentication, as
/// every change that could take the account over.
pub async fn start_link(
    portal: &impl ExternalPorts,
    source: &SourceAddress,
    contact: &Contact,
    provider_id: &str,
    given: Reauthentication,
    browser: Option<&str>,
) -> Result<Started, PortalError> {
    provider_of(portal, provider_id)?;
    reauthenticate(portal, source, contact, given).await?;
    let purpose =
        ExternalPurpose::Link { contact_id: contact.contact_id.clone(), epoch: contact.session_epoch.clone() };
    start(portal, source, provider_id, purpose, browser).await
}

/// Links the identity to the account that began the trip, as it was then (a password change or
/// reset meanwhile voids the trip).
async fn link(
    portal: &impl ExternalPorts,
    source: &SourceAddress,
    provider: &OidcProvider,
    identity: &ExternalIdentity,
    contact_id: &ContactId,
    epoch: &str,
) -> Result<Contact, PortalError> {
    let Some(contact) = portal.contacts().get(contact_id).await?.filter(|c| c.session_epoch == epoch) else {
        return Err(link_error(LinkIdentityError::Changed));
    };
    match portal.contacts().identity_owner(&provider.id, &identity.subject).await? {
        Some(owner) if owner == contact.contact_id => return Ok(contact),
        Some(_) => return Err(link_error(LinkIdentityError::Taken)),
        None => {}
    }
    let linked = LinkedIdentity {
        provider: provider.id.clone(),
        subject: identity.subject.clone(),
        email: identity.email.clone(),
        linked_at: portal.clock().now(),
    };
    let entry = linked_entry(portal, source, &contact.contact_id, &linked, "link");
    let contact = portal.contacts().link_identity(&contact, &linked, &[entry.into()]).await.map_err(link_error)?;
    audit(AuditEvent::IdentityLinked, Some(&contact.contact_id), source);
    Ok(contact)
}

/// Unlinks an identity from the signed-in account, after re-authentication; refused when it is
/// the account's last way to sign in (no password, no passkey, no other identity).
pub async fn unlink(
    portal: &(impl ExternalPorts + UsesPasskeys),
    source: &SourceAddress,
    contact: &Contact,
    provider: &str,
    subject: &str,
    given: Reauthentication,
) -> Result<Contact, PortalError> {
    if !contact.identities.iter().any(|i| i.is(provider, subject)) {
        return Err(PortalError::field("subject", "is not an identity linked to your account"));
    }
    let others = contact.identities.iter().filter(|i| !i.is(provider, subject)).count();
    let passkeys = portal.passkeys().list(&contact.contact_id).await?;
    if contact.password_hash.is_none() && passkeys.is_empty() && others == 0 {
        return Err(PortalError::field("subject", "is your account's last way to sign in: set a password first"));
    }
    reauthenticate(portal, source, contact, given).await?;
    let id = Some(&contact.contact_id);
    let entry =
        audit_entry(portal, AuditEvent::IdentityUnlinked, id, id, source).with("provider", provider.to_string());
    let now = portal.clock().now();
    let changed = portal
        .contacts()
        .unlink_identity(contact, provider, subject, now, &[entry.into()])
        .await
        .map_err(link_error)?;
    audit(AuditEvent::IdentityUnlinked, Some(&contact.contact_id), source);
    Ok(changed)
}

/// A failed trip: its audit entry (the reason, never a token) and the answer every failure gets.
async fn failed(
    portal: &impl ExternalPorts,
    source: &SourceAddress,
    provider: &str,
    contact_id: Option<&ContactId>,
    reason: &str,
) -> PortalError {
    tracing::warn!(audit = AuditEvent::ExternalSignInFailed.as_str(), provider, reason, source_ip = %source, "audit");
    let entry = audit_entry(portal, AuditEvent::ExternalSignInFailed, None, contact_id, source)
        .with("method", external_method(provider))
        .with("result", "wrong_credentials")
        .with("reason", reason.chars().take(300).collect::<String>());
    match record(portal, entry).await {
        Ok(()) => PortalError::InvalidCredentials,
        Err(err) => err,
    }
}
