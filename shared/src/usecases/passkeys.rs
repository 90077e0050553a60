//! Passkeys (WebAuthn, through `webauthn-rs`): registering and removing them from the profile, and
//! signing in with one.
//!
//! Every ceremony is two requests. The start keeps the relying party's state server-side (five
//! minutes, [`CEREMONY_SECS`]) under the digest of a random id that goes out with the options; the
//! finish takes (deletes) it, so each state answers one finish. A passkey sign-in is complete in
//! itself (the authenticator verified its user): no password, no second step. Adding or removing a
//! passkey ends the contact's other sessions (a new session epoch, as a password change does) and
//! emails a notice, in the same write.

use uuid::Uuid;
use webauthn_rs::prelude::{
    DiscoverableAuthentication, Passkey, PasskeyRegistration, PublicKeyCredential, RegisterPublicKeyCredential,
    Webauthn, WebauthnBuilder,
};

use crate::config::Settings;
use crate::domain::audit::{AuditEvent, SourceAddress};
use crate::domain::contact::{Contact, new_epoch};
use crate::domain::outbox::MessageKind;
use crate::domain::passkey::{
    CEREMONY_SECS, Ceremony, CeremonyPurpose, MAX_PER_CONTACT, StoredPasskey, parse_name, passkey_id,
};
use crate::domain::secret::{digest, random_token};
use crate::error::PortalError;
use crate::ports::{UsesClock, UsesContacts, UsesPasskeys, UsesSessions, UsesSettings, UsesTwoFactor};

use super::door::{self, Arrival, Entered, Entry, PasskeyVerified, Proof};
use super::notices::security_notice;
use super::reauth::{Reauthentication, reauthenticate};
use super::session::SignedIn;
use super::throttle::{Attempt, reserve_attempt};
use super::{audit, audit_entry};

/// The relying party of the portal's base URL: its host is the RP id, its origin the only one
/// accepted (`http://localhost:PORT` locally, which WebAuthn allows).
pub fn relying_party(settings: &Settings) -> Result<Webauthn, PortalError> {
    let origin = url::Url::parse(&settings.base_origin).map_err(|e| anyhow::anyhow!("the base URL's origin: {e}"))?;
    let rp_id = origin.domain().ok_or_else(|| anyhow::anyhow!("passkeys need a base URL with a domain name"))?;
    let built = WebauthnBuilder::new(rp_id, &origin).and_then(|b| b.rp_name("Customer portal").build());
    Ok(built.map_err(|e| anyhow::anyhow!("the passkey relying party of {origin}: {e}"))?)
}

/// The WebAuthn user handle of a contact: its id when that is a UUID (every id the portal makes
/// is), otherwise one derived from it. Never an email address, which can change.
pub fn user_handle(contact_id: &str) -> Uuid {
    Uuid::parse_str(contact_id).unwrap_or_else(|_| {
        let hex = digest(contact_id);
        let bytes: Vec<u8> = (0..16).filter_map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()).collect();
        Uuid::from_slice(&bytes).unwrap_or_default()
    })
}

/// The options for the browser's `navigator.credentials` call, and the ceremony id its finish
/// sends back.
pub struct Started {
    pub ceremony: String,
    pub options: serde_json::Value,
}

async fn keep(
    portal: &(impl UsesPasskeys + UsesClock),
    purpose: CeremonyPurpose,
    state: String,
    options: serde_json::Value,
) -> Result<Started, PortalError> {
    let ceremony = random_token();
    let stored =
        Ceremony { id_digest: digest(&ceremony), purpose, state, expires_at: portal.clock().now() + CEREMONY_SECS };
    portal.passkeys().save_ceremony(&stored).await?;
    Ok(Started { ceremony, options })
}

/// Takes the ceremony a finish names: `None` when it never was, was used, or has expired.
async fn take(portal: &(impl UsesPasskeys + UsesClock), ceremony: &str) -> Result<Option<Ceremony>, PortalError> {
    let taken = portal.passkeys().take_ceremony(&digest(ceremony)).await?;
    Ok(taken.filter(|c| c.is_live(portal.clock().now())))
}

fn credential_of(passkey: &StoredPasskey) -> Result<Passkey, PortalError> {
    Ok(serde_json::from_str(&passkey.credential).map_err(|e| anyhow::anyhow!("reading stored passkey: {e}"))?)
}

fn serialized<T: serde::Serialize>(value: &T) -> Result<String, PortalError> {
    Ok(serde_json::to_string(value).map_err(|e| anyhow::anyhow!("serialising passkey state: {e}"))?)
}

/// The contact's passkeys, oldest first.
pub async fn list(portal: &impl UsesPasskeys, contact: &Contact) -> Result<Vec<StoredPasskey>, PortalError> {
    Ok(portal.passkeys().list(&contact.contact_id).await?)
}

/// Starts registering a passkey for the signed-in contact, after re-authentication (a passkey
/// signs in without the password, so a borrowed session alone must not add one): creation options
/// asking for a discoverable credential (a resident key, so that sign-in needs no name) with user
/// verification, excluding the contact's passkeys already registered.
pub async fn start_registration(
    portal: &(impl UsesPasskeys + UsesContacts + UsesClock + UsesSettings + UsesTwoFactor),
    source: &SourceAddress,
    contact: &Contact,
    given: Reauthentication,
) -> Result<Started, PortalError> {
    reauthenticate(portal, source, contact, given).await?;
    let existing = list(portal, contact).await?;
    if existing.len() >= MAX_PER_CONTACT {
        return Err(PortalError::validation(format!(
            "You have {MAX_PER_CONTACT} passkeys, the most an account may hold. Remove one first."
        )));
    }
    let exclude = existing.iter().map(|p| credential_of(p).map(|k| k.cred_id().clone())).collect::<Result<_, _>>()?;
    let display_name = format!("{} {}", contact.first_name, contact.last_name);
    let (options, state) = relying_party(portal.settings())?
        .start_passkey_registration(
            user_handle(&contact.contact_id),
            contact.email.as_str(),
            display_name.trim(),
            Some(exclude),
        )
        .map_err(|e| anyhow::anyhow!("starting a passkey registration: {e}"))?;
    let mut options = serde_json::to_value(options).map_err(|e| anyhow::anyhow!("creation options: {e}"))?;
    // webauthn-rs asks for no resident key by default; sign-in here is discoverable (no name
    // typed), which only a resident key can answer.
    if let Some(selection) = options.pointer_mut("/publicKey/authenticatorSelection").and_then(|s| s.as_object_mut()) {
        selection.insert("residentKey".into(), "required".into());
        selection.insert("requireResidentKey".into(), true.into());
    }
    let purpose = CeremonyPurpose::Registration { registrant: contact.contact_id.clone() };
    keep(portal, purpose, serialized(&state)?, options).await
}

/// What a registration's finish sends.
pub struct Registration {
    pub ceremony: String,
    pub name: Option<String>,
    pub credential: serde_json::Value,
}

const CEREMONY_GONE: &str = "This passkey request has expired or was already used. Start again.";

/// Finishes registering: the credential must answer this contact's live ceremony (which only a
/// re-authenticated start makes). The passkey is stored with the contact's new session epoch and
/// the notice; the current session continues through the door, every other one ends.
pub async fn finish_registration(
    portal: &(impl UsesPasskeys + UsesContacts + UsesSessions + UsesClock + UsesSettings + UsesTwoFactor),
    source: &SourceAddress,
    signed_in: &SignedIn,
    registration: Registration,
) -> Result<(StoredPasskey, Entered), PortalError> {
    let contact = &signed_in.contact;
    let name = parse_name(registration.name.as_deref()).map_err(|r| PortalError::field("name", r.0))?;
    let credential: RegisterPublicKeyCredential = serde_json::from_value(registration.credential)
        .map_err(|_| PortalError::field("credential", "is not a WebAuthn registration response"))?;
    let ceremony = take(portal, &registration.ceremony).await?;
    let Some(Ceremony { purpose: CeremonyPurpose::Registration { registrant }, state, .. }) = ceremony else {
        return Err(PortalError::field("ceremony", CEREMONY_GONE));
    };
    if registrant != contact.contact_id {
        return Err(PortalError::field("ceremony", CEREMONY_GONE));
    }
    let state: PasskeyRegistration =
        serde_json::from_str(&state).map_err(|e| anyhow::anyhow!("reading a registration's state: {e}"))?;
    let passkey = relying_party(portal.settings())?.finish_passkey_registration(&credential, &state).map_err(|e| {
        tracing::info!(error = %e, "passkey registration refused");
        PortalError::field("credential", "could not be verified for this site and request")
    })?;
    let now = portal.clock().now();
    let stored = StoredPasskey {
        id: passkey_id(passkey.cred_id()),
        contact_id: contact.contact_id.clone(),
        name,
        created_at: now,
        last_used_at: None,
        sign_count: 0,
        credential: serialized(&passkey)?,
    };
    let name = Some(stored.name.clone());
    let mut emails = security_notice(portal, contact, MessageKind::PasskeyAddedNotice, name).await?;
    emails.push(
        audit_entry(portal, AuditEvent::PasskeyAdded, Some(&contact.contact_id), Some(&contact.contact_id), source)
            .into(),
    );
    let epoch = new_epoch();
    if !portal.passkeys().add(&stored, &epoch, now, &emails).await? {
        return Err(PortalError::field("credential", "is registered already"));
    }
    audit(AuditEvent::PasskeyAdded, Some(&contact.contact_id), source);
    let entered = door::continue_session(portal, source, &signed_in.session, contact, &epoch, None).await?;
    Ok((stored, entered))
}

/// Removes one of the contact's passkeys after re-authentication (wrong values count towards
/// lockout). The current session continues through the door; every other one ends.
pub async fn remove(
    portal: &(impl UsesPasskeys + UsesContacts + UsesSessions + UsesClock + UsesSettings + UsesTwoFactor),
    source: &SourceAddress,
    signed_in: &SignedIn,
    id: &str,
    given: Reauthentication,
) -> Result<Entered, PortalError> {
    let contact = &signed_in.contact;
    reauthenticate(portal, source, contact, given).await?;
    let passkey = portal.passkeys().find(id).await?.filter(|p| p.contact_id == contact.contact_id);
    let Some(passkey) = passkey else { return Err(PortalError::NotFound) };
    let name = Some(passkey.name.clone());
    let mut emails = security_notice(portal, contact, MessageKind::PasskeyRemovedNotice, name).await?;
    emails.push(
        audit_entry(portal, AuditEvent::PasskeyRemoved, Some(&contact.contact_id), Some(&contact.contact_id), source)
            .into(),
    );
    let epoch = new_epoch();
    let now = portal.clock().now();
    if !portal.passkeys().remove(&contact.contact_id, &passkey.id, &epoch, now, &emails).await? {
        return Err(PortalError::NotFound);
    }
    audit(AuditEvent::PasskeyRemoved, Some(&contact.contact_id), source);
    door::continue_session(portal, source, &signed_in.session, contact, &epoch, None).await
}

/// Starts a passkey sign-in: request options for any discoverable credential of this site (an
/// empty `allowCredentials`), user verification required.
pub async fn start_sign_in(portal: &(impl UsesPasskeys + UsesClock + UsesSettings)) -> Result<Started, PortalError> {
    let (mut options, state) = relying_party(portal.settings())?
        .start_discoverable_authentication()
        .map_err(|e| anyhow::anyhow!("starting a passkey sign-in: {e}"))?;
    // The crate marks these options for conditional mediation (autofill); the portal's button asks
    // in a modal dialog, the browser's default.
    options.mediation = None;
    let options = serde_json::to_value(options).map_err(|e| anyhow::anyhow!("request options: {e}"))?;
    keep(portal, CeremonyPurpose::SignIn, serialized(&state)?, options).await
}

/// Why a passkey sign-in was refused, for the log only: the client always gets
/// `invalid_credentials`.
fn refused(source: &SourceAddress, contact: Option<&Contact>, why: &str) -> PortalError {
    tracing::info!(why, "passkey sign-in refused");
    audit(AuditEvent::PasskeySignInFailed, contact.map(|c| &c.contact_id), source);
    PortalError::InvalidCredentials
}

/// Signs in with a passkey: the assertion must answer a live sign-in ceremony, come from a passkey
/// registered here to the account its user handle names, verify (signature, origin, RP id, user
/// verification) and carry a signature counter above the stored one (unless both are 0). Then the
/// door, as for every way in (the account's state, its lockout; a passkey is a strong factor in
/// itself, so no second step). Failures count against the source address's allowance as wrong
/// passwords do.
pub async fn finish_sign_in(
    portal: &(impl UsesPasskeys + UsesContacts + UsesSessions + UsesClock + UsesSettings + UsesTwoFactor),
    source: &SourceAddress,
    ceremony: &str,
    credential: serde_json::Value,
    arrival: Arrival<'_>,
    remember_me: bool,
) -> Result<Entered, PortalError> {
    let credential: PublicKeyCredential = serde_json::from_value(credential)
        .map_err(|_| PortalError::field("credential", "is not a WebAuthn authentication response"))?;
    reserve_attempt(portal, source, Attempt::SignIn).await?;
    let Some(ceremony) = take(portal, ceremony).await? else {
        return Err(refused(source, None, "ceremony expired, used or unknown"));
    };
    let Ceremony { purpose: CeremonyPurpose::SignIn, state, .. } = ceremony else {
        return Err(refused(source, None, "not a sign-in ceremony"));
    };
    let rp = relying_party(portal.settings())?;
    let Ok((handle, credential_id)) = rp.identify_discoverable_authentication(&credential) else {
        return Err(refused(source, None, "no user handle"));
    };
    let Some(stored) = portal.passkeys().find(&passkey_id(credential_id)).await? else {
        return Err(refused(source, None, "unknown passkey"));
    };
    if user_handle(&stored.contact_id) != handle {
        return Err(refused(source, None, "user handle of another account"));
    }
    let Some(contact) = portal.contacts().get(&stored.contact_id).await? else {
        return Err(refused(source, None, "the passkey's contact is gone"));
    };
    let state: DiscoverableAuthentication =
        serde_json::from_str(&state).map_err(|e| anyhow::anyhow!("reading a sign-in's state: {e}"))?;
    let mut passkey = credential_of(&stored)?;
    let result = match rp.finish_discoverable_authentication_v2(&credential, state, &passkey) {
        Ok(result) => result,
        Err(e) => {
            tracing::info!(error = %e, "passkey assertion refused");
            return Err(refused(source, Some(&contact), "assertion not verified"));
        }
    };
    passkey.update_credential(&result);
    let now = portal.clock().now();
    if !portal.passkeys().record_use(&stored, result.counter(), &serialized(&passkey)?, now).await? {
        return Err(refused(source, Some(&contact), "the passkey was used or removed meanwhile"));
    }
    // The door gives the source address's attempt back once it admits the account.
    let proof = Proof::Passkey(Box::new(PasskeyVerified::new(contact)));
    match door::enter(portal, source, proof, arrival, remember_me).await? {
        Entry::Entered(entered) => Ok(*entered),
        Entry::SecondFactorAwaited { .. } => Err(anyhow::anyhow!("a passkey sign-in awaits no second factor").into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_uuid_contact_id_is_its_own_user_handle() {
        let id = "6f1c1f3e-8a4b-4a59-9f7e-2b1f0f0c9a11";
        assert_eq!(user_handle(id).to_string(), id);
        let other = user_handle("contact-42");
        assert_eq!(other, user_handle("contact-42"), "derived handles are stable");
        assert_ne!(other, user_handle("contact-43"));
    }
}
