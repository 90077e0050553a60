//! Two-factor authentication: setting it up and changing it from the profile, and the sign-in's
//! second step.
//!
//! Every change needs the current password (confirming a new TOTP secret needs its first code
//! instead), is one write with the contact's new session epoch and the emailed notice (every other
//! session ends; this browser continues under a new session), and is refused when the state changed
//! meanwhile. Every code is used up by one conditional write, so it passes once however many
//! requests carry it at the same time.

use crate::domain::audit::{AuditEvent, SourceAddress};
use crate::domain::contact::{Contact, new_epoch};
use crate::domain::outbox::{MailSecret, MessageKind, OutboxMessage};
use crate::domain::password::Password;
use crate::domain::secret::digest;
use crate::domain::two_factor::{
    EMAIL_CODE_SECS, PENDING_SIGN_IN_ATTEMPTS, TotpSecret, TwoFactor, email_code_digest, new_email_code,
    new_recovery_codes, normalize_digits, recovery_digest, two_factor_required,
};
use crate::error::PortalError;
use crate::ports::{QueuedEmail, UsesClock, UsesContacts, UsesSessions, UsesSettings, UsesTwoFactor};

use super::audit;
use super::profile::check_current_password;
use super::session::{SessionOptions, SignedIn as Viewer, start_with};
use super::sign_in::{Arrival, SignedIn, complete};
use super::throttle::{Attempt, emails_allowed, give_back_attempt, reserve_attempt};
use super::tokens::notice;

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
    password: Password,
) -> Result<TotpSetUp, PortalError> {
    check_current_password(portal, source, contact, password).await?;
    let mut state = portal.two_factor().get(&contact.contact_id).await?;
    let secret = TotpSecret::generate();
    state.pending_totp = Some(portal.sealer().seal(&secret).await?);
    if !portal.two_factor().save(&state, None, &[]).await? {
        return Err(PortalError::validation(CHANGED_MEANWHILE));
    }
    Ok(TotpSetUp { secret: secret.base32(), otpauth_uri: secret.otpauth_uri(contact.email.as_str()) })
}

/// A change made: the recovery codes to show once (when new ones were made), and the token of the
/// browser's new session.
pub struct Changed {
    pub recovery_codes: Vec<String>,
    pub session_token: String,
    pub remembered: bool,
}

/// Writes a changed state with a new session epoch and the notice saying `what`, then starts this
/// browser's new session (limited to the set-up when the role requires a factor the state lacks).
async fn apply(
    portal: &(impl UsesContacts + UsesSessions + UsesClock + UsesSettings + UsesTwoFactor),
    source: &SourceAddress,
    viewer: &Viewer,
    state: &TwoFactor,
    what: &str,
    recovery_codes: Vec<String>,
) -> Result<Changed, PortalError> {
    let contact = &viewer.contact;
    let mut emails: Vec<QueuedEmail> = Vec::new();
    if emails_allowed(portal, source, Some(&contact.contact_id), &[contact.email.normalized()]).await? {
        let mut told = notice(portal, contact, MessageKind::TwoFactorNotice);
        told.message.detail = Some(what.to_string());
        emails.push(told);
    }
    let epoch = new_epoch();
    if !portal.two_factor().save(state, Some(&epoch), &emails).await? {
        return Err(PortalError::validation(CHANGED_MEANWHILE));
    }
    let mut enabled = state.clone();
    enabled.pending_totp = None;
    let setup_only =
        !enabled.enabled() && two_factor_required(&contact.roles, &portal.settings().two_factor_required_roles);
    let remembered = viewer.session.remembered;
    let options = SessionOptions { remembered, setup_only };
    let session_token = start_with(portal, contact, &epoch, options).await?;
    audit(AuditEvent::TwoFactorChanged, Some(&contact.contact_id), source);
    Ok(Changed { recovery_codes, session_token, remembered })
}

/// Confirms the pending TOTP secret with a first code: TOTP is on, and a new set of recovery codes
/// (shown this once) replaces any earlier one.
pub async fn confirm_totp(
    portal: &(impl UsesContacts + UsesSessions + UsesClock + UsesSettings + UsesTwoFactor),
    source: &SourceAddress,
    viewer: &Viewer,
    code: &str,
) -> Result<Changed, PortalError> {
    let contact = &viewer.contact;
    let mut state = portal.two_factor().get(&contact.contact_id).await?;
    let Some(pending) = state.pending_totp.clone() else {
        return Err(PortalError::field("code", "start the set-up first: there is no new secret to confirm"));
    };
    let secret = portal.sealer().open(&pending).await?;
    let Some(step) = secret.matching_step(code, portal.clock().now(), 0) else {
        return Err(PortalError::field("code", "is not the current code of the new secret"));
    };
    state.totp = Some(pending);
    state.pending_totp = None;
    state.totp_last_step = step;
    let (codes, digests) = new_recovery_codes();
    state.set_recovery_codes(digests);
    apply(portal, source, viewer, &state, "an authenticator app was set up and new recovery codes were made", codes)
        .await
}

/// Turns emailed sign-in codes on or off.
pub async fn set_email(
    portal: &(impl UsesContacts + UsesSessions + UsesClock + UsesSettings + UsesTwoFactor),
    source: &SourceAddress,
    viewer: &Viewer,
    password: Password,
    enabled: bool,
) -> Result<Changed, PortalError> {
    check_current_password(portal, source, &viewer.contact, password).await?;
    let mut state = portal.two_factor().get(&viewer.contact.contact_id).await?;
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
    portal: &(impl UsesContacts + UsesSessions + UsesClock + UsesSettings + UsesTwoFactor),
    source: &SourceAddress,
    viewer: &Viewer,
    password: Password,
) -> Result<Changed, PortalError> {
    check_current_password(portal, source, &viewer.contact, password).await?;
    let mut state = portal.two_factor().get(&viewer.contact.contact_id).await?;
    if !state.enabled() {
        return Err(PortalError::validation("Two-factor authentication is off: there are no recovery codes to renew."));
    }
    let (codes, digests) = new_recovery_codes();
    state.set_recovery_codes(digests);
    apply(portal, source, viewer, &state, "new recovery codes were made; the old ones no longer work", codes).await
}

/// Turns two-factor authentication off: no secret, no emailed codes, no recovery codes.
pub async fn disable(
    portal: &(impl UsesContacts + UsesSessions + UsesClock + UsesSettings + UsesTwoFactor),
    source: &SourceAddress,
    viewer: &Viewer,
    password: Password,
) -> Result<Changed, PortalError> {
    check_current_password(portal, source, &viewer.contact, password).await?;
    let read = portal.two_factor().get(&viewer.contact.contact_id).await?;
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
    Ok(portal.two_factor().get(&pending.contact_id).await?.methods())
}

/// Emails a fresh sign-in code for the pending sign-in (within the email allowances; a refused
/// request gets the same answer and sends nothing). The new code replaces any earlier one.
pub async fn send_email_code(
    portal: &(impl UsesContacts + UsesClock + UsesSettings + UsesTwoFactor),
    source: &SourceAddress,
    pending_token: &str,
) -> Result<(), PortalError> {
    let now = portal.clock().now();
    let pending =
        portal.two_factor().find_pending(&digest(pending_token), now).await?.ok_or(PortalError::Unauthenticated)?;
    let state = portal.two_factor().get(&pending.contact_id).await?;
    if !state.email {
        return Err(PortalError::validation("Sign-in codes by email are not on for this account."));
    }
    let Some(contact) = portal.contacts().get(&pending.contact_id).await? else {
        return Err(PortalError::Unauthenticated);
    };
    if emails_allowed(portal, source, Some(&contact.contact_id), &[contact.email.normalized()]).await? {
        let code = new_email_code();
        let expires_at = now + EMAIL_CODE_SECS;
        let mut message = OutboxMessage::new(
            MessageKind::SignInCode,
            contact.email.as_str(),
            &contact.first_name,
            Some(MailSecret::new(code.clone())),
            now,
        );
        message.valid_until = Some(expires_at);
        message.contact_id = Some(contact.contact_id.clone());
        let digest = email_code_digest(&contact.contact_id, &code);
        portal
            .two_factor()
            .set_email_code(&contact.contact_id, &digest, expires_at, &[QueuedEmail::new(message)])
            .await?;
    }
    Ok(())
}

/// Whether `code` is a current TOTP code, the emailed code or an unused recovery code of the
/// contact, using it up. The TOTP secret is opened only for a code that could be one.
async fn use_code(
    portal: &(impl UsesClock + UsesTwoFactor),
    contact: &Contact,
    code: &str,
) -> Result<bool, PortalError> {
    let now = portal.clock().now();
    let state = portal.two_factor().get(&contact.contact_id).await?;
    if let Some(digits) = normalize_digits(code) {
        if let Some(sealed) = &state.totp {
            let secret = portal.sealer().open(sealed).await?;
            if let Some(step) = secret.matching_step(&digits, now, state.totp_last_step)
                && portal.two_factor().use_totp_step(&contact.contact_id, step).await?
            {
                return Ok(true);
            }
        }
        if state.email && state.email_code.is_some() {
            let digest = email_code_digest(&contact.contact_id, &digits);
            if portal.two_factor().use_email_code(&contact.contact_id, &digest, now).await? {
                return Ok(true);
            }
        }
        return Ok(false);
    }
    if state.enabled() && !state.recovery_codes.is_empty() {
        return Ok(portal.two_factor().use_recovery_code(&contact.contact_id, &recovery_digest(code)).await?);
    }
    Ok(false)
}

/// The sign-in's second step: a code for the pending sign-in of the cookie's token. Each attempt is
/// taken before the code is checked, from the pending sign-in (5, then it ends), from the source
/// address and from the account's lockout (or the trusted device's), as a password attempt is. The
/// right code completes the sign-in as a password alone does for an account without a second factor.
pub async fn second_step(
    portal: &(impl UsesContacts + UsesSessions + UsesClock + UsesSettings + UsesTwoFactor),
    source: &SourceAddress,
    pending_token: &str,
    code: &str,
    arrival: Arrival<'_>,
) -> Result<SignedIn, PortalError> {
    let now = portal.clock().now();
    let pending_digest = digest(pending_token);
    let pending = portal
        .two_factor()
        .take_pending_attempt(&pending_digest, now, PENDING_SIGN_IN_ATTEMPTS)
        .await?
        .ok_or(PortalError::Unauthenticated)?;
    reserve_attempt(portal, source, Attempt::SignIn).await?;
    let Some(contact) = portal.contacts().get(&pending.contact_id).await? else {
        return Err(PortalError::Unauthenticated);
    };
    let policy = portal.settings().lockout;
    let device = arrival.device.filter(|_| pending.trusted_device);
    let reserved = match device {
        Some(device) => {
            portal
                .contacts()
                .reserve_device_attempt(&digest(device), &contact.contact_id, now, policy.threshold)
                .await?
        }
        None => portal.contacts().reserve_attempt(&contact.contact_id, now, &policy).await?,
    };
    let passed = reserved && use_code(portal, &contact, code).await?;
    if !passed {
        audit(AuditEvent::SecondFactorFailed, Some(&contact.contact_id), source);
        if reserved && device.is_none() {
            portal.contacts().record_failed_sign_in(&contact.contact_id, now, &policy).await?;
        }
        if pending.attempts >= PENDING_SIGN_IN_ATTEMPTS {
            portal.two_factor().end_pending(&pending_digest).await?;
        }
        return Err(PortalError::InvalidCredentials);
    }
    portal.two_factor().end_pending(&pending_digest).await?;
    give_back_attempt(portal, source, Attempt::SignIn).await?;
    if device.is_none() {
        portal.contacts().reset_lockout(&contact.contact_id).await?;
    }
    let options = SessionOptions { remembered: pending.remember_me, setup_only: false };
    complete(portal, source, contact, pending.trusted_device && device.is_some(), arrival, options).await
}
