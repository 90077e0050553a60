//! Two-factor authentication: setting it up and changing it from the profile, and the emailed
//! codes of the sign-in's second step (the step itself is a way through the door).
//!
//! Every change re-authenticates first (the current password and, when the account has a second
//! factor, a current code of it: see [`super::reauth`]; confirming a new TOTP secret needs its first
//! code instead, its set-up having re-authenticated), is one write with the contact's new session
//! epoch and the notice (every other session ends; this browser continues under a new session),
//! and is refused when the state changed meanwhile. Every code is used up by one conditional
//! write, so it passes once however many requests carry it at the same time.

use crate::domain::audit::{AuditEvent, SourceAddress};
use crate::domain::contact::{Contact, new_epoch};
use crate::domain::outbox::MessageKind;
use crate::domain::secret::digest;
use crate::domain::two_factor::{PENDING_SIGN_IN_EMAILS, TotpSecret, TwoFactor, new_recovery_codes};
use crate::error::PortalError;
use crate::ports::UsesPasskeys;
use crate::ports::{UsesClock, UsesContacts, UsesSessions, UsesSettings, UsesTwoFactor};

use super::codes::email_a_code;
use super::door::{self, Entered};
use super::notices::security_notice;
use super::reauth::{Reauthentication, reauthenticate};
use super::session::SignedIn as Viewer;
use super::throttle::emails_allowed;
use super::{audit, audit_entry};

/// What the profile shows of a contact's two-factor state.
pub struct Status {
    pub totp: bool,
    pub email: bool,
    pub recovery_codes_left: usize,
}

pub async fn status(portal: &impl UsesTwoFactor, contact: &Contact) -> Result<Status, PortalError> {
    let state = portal.two_factor().get(&contact.contact_id).await?;
    Ok(Status { totp: state.totp.is_some(), email: state.email, recovery_codes_left: state.recovery_codes.len() })
}

/// A TOTP secret being set up: what the authenticator app needs.
pub struct TotpSetUp {
    /// Base32, for typing in.
    pub secret: String,
    /// `otpauth://totp/...`, for the QR code.
    pub otpauth_uri: String,
}

const CHANGED_MEANWHILE: &str = "Your two-factor settings changed meanwhile; reload and try again.";

/// Starts setting up TOTP: a new secret, held sealed as pending until a first code confirms it
/// (an earlier pending one is replaced; a confirmed one keeps working until then).
pub async fn begin_totp(
    portal: &(impl UsesContacts + UsesClock + UsesSettings + UsesTwoFactor),
    source: &SourceAddress,
    contact: &Contact,
    given: Reauthentication,
) -> Result<TotpSetUp, PortalError> {
    let mut state = reauthenticate(portal, source, contact, given).await?;
    let secret = TotpSecret::generate();
    state.pending_totp = Some(portal.sealer().seal(&secret, &contact.contact_id).await?);
    if !portal.two_factor().save(&state, None, &[]).await? {
        return Err(PortalError::validation(CHANGED_MEANWHILE));
    }
    Ok(TotpSetUp { secret: secret.base32(), otpauth_uri: secret.otpauth_uri(contact.email.as_str()) })
}

/// A change made: the recovery codes to show once (when new ones were made), and the browser's
/// session, continued through the door.
pub struct Changed {
    pub recovery_codes: Vec<String>,
    pub entered: Entered,
}

/// Writes a changed state with a new session epoch and the notice saying `what`, then continues
/// this browser's session (limited to the set-up when the role requires a factor the state lacks).
async fn apply(
    portal: &(impl UsesContacts + UsesSessions + UsesClock + UsesSettings + UsesTwoFactor + UsesPasskeys),
    source: &SourceAddress,
    viewer: &Viewer,
    state: &TwoFactor,
    what: &str,
    recovery_codes: Vec<String>,
) -> Result<Changed, PortalError> {
    let contact = &viewer.contact;
    let mut emails = security_notice(portal, contact, MessageKind::TwoFactorNotice, Some(what.to_string())).await?;
    let id = Some(&contact.contact_id);
    emails.push(audit_entry(portal, AuditEvent::TwoFactorChanged, id, id, source).with("change", what).into());
    let epoch = new_epoch();
    if !portal.two_factor().save(state, Some(&epoch), &emails).await? {
        return Err(PortalError::validation(CHANGED_MEANWHILE));
    }
    audit(AuditEvent::TwoFactorChanged, Some(&contact.contact_id), source);
    let has_factor = state.enabled();
    let entered = door::continue_session(portal, source, &viewer.session, contact, &epoch, Some(has_factor)).await?;
    Ok(Changed { recovery_codes, entered })
}

/// Confirms the pending TOTP secret with a first code: TOTP is on, and a new set of recovery codes
/// (shown this once) replaces any earlier one.
pub async fn confirm_totp(
    portal: &(impl UsesContacts + UsesSessions + UsesClock + UsesSettings + UsesTwoFactor + UsesPasskeys),
    source: &SourceAddress,
    viewer: &Viewer,
    code: &str,
) -> Result<Changed, PortalError> {
    let contact = &viewer.contact;
    let mut state = portal.two_factor().get(&contact.contact_id).await?;
    let Some(pending) = state.pending_totp.clone() else {
        return Err(PortalError::field("code", "start the set-up first: there is no new secret to confirm"));
    };
    let secret = portal.sealer().open(&pending, &contact.contact_id).await?;
    let Some(step) = secret.matching_step(code, portal.clock().now(), 0) else {
        return Err(PortalError::field("code", "is not the current code of the new secret"));
    };
    state.totp = Some(match pending.is_bound() {
        true => pending,
        false => portal.sealer().seal(&secret, &contact.contact_id).await?,
    });
    state.pending_totp = None;
    state.totp_last_step = step;
    let (codes, digests) = new_recovery_codes();
    state.set_recovery_codes(digests);
    apply(portal, source, viewer, &state, "an authenticator app was set up and new recovery codes were made", codes)
        .await
}

/// Turns emailed sign-in codes on or off.
pub async fn set_email(
    portal: &(impl UsesContacts + UsesSessions + UsesClock + UsesSettings + UsesTwoFactor + UsesPasskeys),
    source: &SourceAddress,
    viewer: &Viewer,
    given: Reauthentication,
    enabled: bool,
) -> Result<Changed, PortalError> {
    let mut state = reauthenticate(portal, source, &viewer.contact, given).await?;
    state.email = enabled;
    state.email_code = None;
    state.email_code_expires_at = None;
    let mut codes = Vec::new();
    if enabled && state.recovery_codes.is_empty() {
        let (new_codes, digests) = new_recovery_codes();
        state.set_recovery_codes(digests);
        codes = new_codes;
    }
    let what = if enabled { "sign-in codes by email were turned on" } else { "sign-in codes by email were turned off" };
    apply(portal, source, viewer, &state, what, codes).await
}

/// A new set of recovery codes; the old ones stop working.
pub async fn renew_recovery_codes(
    portal: &(impl UsesContacts + UsesSessions + UsesClock + UsesSettings + UsesTwoFactor + UsesPasskeys),
    source: &SourceAddress,
    viewer: &Viewer,
    given: Reauthentication,
) -> Result<Changed, PortalError> {
    let mut state = reauthenticate(portal, source, &viewer.contact, given).await?;
    if !state.enabled() {
        return Err(PortalError::validation("Two-factor authentication is off: there are no recovery codes to renew."));
    }
    let (codes, digests) = new_recovery_codes();
    state.set_recovery_codes(digests);
    apply(portal, source, viewer, &state, "new recovery codes were made; the old ones no longer work", codes).await
}

/// Turns two-factor authentication off: no secret, no emailed codes, no recovery codes.
pub async fn disable(
    portal: &(impl UsesContacts + UsesSessions + UsesClock + UsesSettings + UsesTwoFactor + UsesPasskeys),
    source: &SourceAddress,
    viewer: &Viewer,
    given: Reauthentication,
) -> Result<Changed, PortalError> {
    let read = reauthenticate(portal, source, &viewer.contact, given).await?;
    let state = TwoFactor { version: read.version, ..TwoFactor::none(&viewer.contact.contact_id) };
    apply(portal, source, viewer, &state, "two-factor authentication was turned off", Vec::new()).await
}

/// The pending sign-in of the cookie's token, for the second-factor page: the methods it offers.
pub async fn pending_methods(
    portal: &(impl UsesClock + UsesTwoFactor),
    pending_token: &str,
) -> Result<Vec<&'static str>, PortalError> {
    let now = portal.clock().now();
    let pending =
        portal.two_factor().find_pending(&digest(pending_token), now).await?.ok_or(PortalError::Unauthenticated)?;
    if !pending.methods.is_empty() {
        return Ok(pending.methods.iter().filter_map(|m| crate::domain::two_factor::method_name(m)).collect());
    }
    Ok(portal.two_factor().get(&pending.contact_id).await?.methods())
}

/// Emails a fresh sign-in code for the pending sign-in: at most [`PENDING_SIGN_IN_EMAILS`] for one
/// pending sign-in, and within the source address's allowance (a refused request gets the same
/// answer and sends nothing). It never spends the account's own allowances, so someone who has
/// the password cannot use them up. The new code replaces any earlier one.
pub async fn send_email_code(
    portal: &(impl UsesContacts + UsesClock + UsesSettings + UsesTwoFactor),
    source: &SourceAddress,
    pending_token: &str,
) -> Result<(), PortalError> {
    let now = portal.clock().now();
    let pending_digest = digest(pending_token);
    let Some(pending) = portal.two_factor().find_pending(&pending_digest, now).await? else {
        return Err(PortalError::Unauthenticated);
    };
    let state = portal.two_factor().get(&pending.contact_id).await?;
    if !state.email || !pending.offers_email() {
        return Err(PortalError::validation("Sign-in codes by email are not a second step of this sign-in."));
    }
    let Some(contact) = portal.contacts().get(&pending.contact_id).await? else {
        return Err(PortalError::Unauthenticated);
    };
    let capped = portal.two_factor().take_pending_email(&pending_digest, now, PENDING_SIGN_IN_EMAILS).await?;
    if capped.is_some() && emails_allowed(portal, source, None, &[]).await? {
        email_a_code(portal, &contact).await?;
    }
    Ok(())
}

/// Emails a fresh code to a signed-in person for re-authentication (their account has emailed
/// codes on), within the source address's and the account's own allowances.
pub async fn send_reauthentication_code(
    portal: &(impl UsesContacts + UsesClock + UsesSettings + UsesTwoFactor),
    source: &SourceAddress,
    contact: &Contact,
) -> Result<(), PortalError> {
    let state = portal.two_factor().get(&contact.contact_id).await?;
    if !state.email {
        return Err(PortalError::validation("Sign-in codes by email are not on for this account."));
    }
    if emails_allowed(portal, source, Some(&contact.contact_id), &[]).await? {
        email_a_code(portal, contact).await?;
    }
    Ok(())
}
