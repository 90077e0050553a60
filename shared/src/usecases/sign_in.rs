//! Signing in: checking a login and password against lockout and throttling.
//!
//! Every attempt is taken before the password is checked (one conditional increment each, on the
//! source address and on the account), so parallel guesses cannot all pass a check made before any
//! of them was counted. A browser that signed in to the account before carries a device cookie
//! (OWASP's "device cookie"): its attempts count against the device alone, so a lockout that
//! others caused does not keep the owner out.

use crate::domain::audit::{AuditEvent, SourceAddress};
use crate::domain::contact::{Contact, Login};
use crate::domain::lockout::FailedSignIn;
use crate::domain::password::{Password, verify_password};
use crate::domain::secret::{digest, random_token};
use crate::domain::two_factor::{PendingSignIn, two_factor_required};
use crate::error::PortalError;
use crate::ports::{Device, UsesClock, UsesContacts, UsesSessions, UsesSettings, UsesTwoFactor};

use super::session::SessionOptions;

use super::throttle::{Attempt, give_back_attempt, reserve_attempt};
use super::{audit, session};

/// How long a browser stays a trusted device of an account after it last signed in.
pub const DEVICE_TRUST_SECS: i64 = 180 * 86_400;

/// What a browser brought along with its credentials (cookies).
#[derive(Clone, Copy, Default)]
pub struct Arrival<'a> {
    /// The session cookie it still had, ended by the sign-in.
    pub session: Option<&'a str>,
    /// Its device cookie, if it has one.
    pub device: Option<&'a str>,
}

/// An authenticated contact, and whether the attempt was a trusted device's.
pub struct Authenticated {
    pub contact: Contact,
    pub trusted_device: bool,
}

/// Checks a login and password. Unknown logins, wrong passwords and locked accounts all end in the
/// same `invalid_credentials`, after the same single argon2 run.
pub async fn authenticate(
    portal: &(impl UsesContacts + UsesClock + UsesSettings),
    source: &SourceAddress,
    login: &str,
    password: Password,
    device: Option<&str>,
) -> Result<Authenticated, PortalError> {
    check_password(portal, source, login, password, device, ClearLockout::OnSuccess).await
}

/// Whether a right password clears the account's failure count and lockout.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ClearLockout {
    OnSuccess,
    /// Not yet: a second factor may still be due, and its failures count on the same account (a
    /// right password must not wipe them, or lockouts would never grow for someone who has it).
    /// The caller clears it, or gives back only the password's own attempt, once it knows which.
    Later,
}

async fn check_password(
    portal: &(impl UsesContacts + UsesClock + UsesSettings),
    source: &SourceAddress,
    login: &str,
    password: Password,
    device: Option<&str>,
    clear: ClearLockout,
) -> Result<Authenticated, PortalError> {
    // The source address's attempt and the account's look-up go out together (one round trip).
    let find = async {
        match Login::parse(login) {
            Some(login) => portal.contacts().find_by_login(&login).await,
            None => Ok(None),
        }
    };
    let (reserved, contact) = tokio::join!(reserve_attempt(portal, source, Attempt::SignIn), find);
    reserved?;
    let contact = contact?;
    let Some(contact) = contact.filter(|c| c.password_hash.is_some()) else {
        verify_password(password, None).await?;
        audit(AuditEvent::SignInFailed, None, source);
        return Err(PortalError::InvalidCredentials);
    };
    let now = portal.clock().now();
    let policy = portal.settings().lockout;
    let trusted_device = match device {
        Some(device) => {
            portal
                .contacts()
                .reserve_device_attempt(&digest(device), &contact.contact_id, now, policy.threshold)
                .await?
        }
        None => false,
    };
    let reserved = trusted_device || portal.contacts().reserve_attempt(&contact.contact_id, now, &policy).await?;
    let hash = if reserved { contact.password_hash.clone() } else { None };
    if !verify_password(password, hash).await? {
        audit(AuditEvent::SignInFailed, Some(&contact.contact_id), source);
        if reserved
            && !trusted_device
            && let FailedSignIn::LockedOut { until } =
                portal.contacts().record_failed_sign_in(&contact.contact_id, now, &policy).await?
        {
            tracing::warn!(audit = AuditEvent::LockedOut.as_str(), contact_id = %contact.contact_id, locked_until = until.as_secs(), "audit");
        }
        return Err(PortalError::InvalidCredentials);
    }
    let reset = async {
        match (trusted_device, clear) {
            (true, _) => Ok(()),
            (false, ClearLockout::OnSuccess) => portal.contacts().reset_lockout(&contact.contact_id).await,
            (false, ClearLockout::Later) => Ok(()),
        }
    };
    let (given_back, reset) = tokio::join!(give_back_attempt(portal, source, Attempt::SignIn), reset);
    given_back?;
    reset?;
    if portal.settings().require_confirmation && !contact.email_confirmed {
        audit(AuditEvent::SignInUnconfirmed, Some(&contact.contact_id), source);
        return Err(PortalError::EmailNotConfirmed);
    }
    Ok(Authenticated { contact, trusted_device })
}

/// A signed-in contact with the tokens for its cookies.
pub struct SignedIn {
    pub contact: Contact,
    pub session_token: String,
    /// The device cookie's value: this browser is now a trusted device of the account.
    pub device_token: String,
    /// The kind of session started ("remember me", limited to the two-factor set-up).
    pub options: SessionOptions,
}

/// Where a sign-in with the right password stands.
pub enum SignInOutcome {
    /// Signed in: the session is started.
    Complete(Box<SignedIn>),
    /// The account has two-factor authentication: a pending sign-in (the token for its cookie)
    /// awaits one of `methods`, and no session is started yet.
    SecondFactor { pending_token: String, methods: Vec<&'static str> },
}

impl SignInOutcome {
    /// The completed sign-in, if no second factor is awaited.
    pub fn completed(self) -> Option<SignedIn> {
        match self {
            SignInOutcome::Complete(signed_in) => Some(*signed_in),
            SignInOutcome::SecondFactor { .. } => None,
        }
    }
}

/// Signs in with a login and password. For an account with a second factor the session waits for
/// it (see [`super::two_factor::second_step`]); otherwise the session the browser arrived with
/// ends, a new one starts, and the browser is (re)trusted as a device of the account.
pub async fn sign_in(
    portal: &(impl UsesContacts + UsesSessions + UsesClock + UsesSettings + UsesTwoFactor),
    source: &SourceAddress,
    login: &str,
    password: Password,
    arrival: Arrival<'_>,
    remember_me: bool,
) -> Result<SignInOutcome, PortalError> {
    let Authenticated { contact, trusted_device } =
        check_password(portal, source, login, password, arrival.device, ClearLockout::Later).await?;
    let state = portal.two_factor().get(&contact.contact_id).await?;
    if !trusted_device {
        match state.enabled() {
            true => portal.contacts().release_attempt(&contact.contact_id).await?,
            false => portal.contacts().reset_lockout(&contact.contact_id).await?,
        }
    }
    if state.enabled() {
        let now = portal.clock().now();
        let (pending, pending_token) = PendingSignIn::start(&contact.contact_id, now, remember_me, trusted_device);
        portal.two_factor().create_pending(&pending).await?;
        audit(AuditEvent::SecondFactorRequired, Some(&contact.contact_id), source);
        return Ok(SignInOutcome::SecondFactor { pending_token, methods: state.methods() });
    }
    let setup_only = two_factor_required(&contact.roles, &portal.settings().two_factor_required_roles);
    let options = SessionOptions { remembered: remember_me, setup_only };
    Ok(SignInOutcome::Complete(Box::new(complete(portal, source, contact, trusted_device, arrival, options).await?)))
}

/// Completes a sign-in whose credentials are proven: ends the session the browser arrived with,
/// starts a new one of `options`, and (re)trusts the browser as a device of the account.
pub async fn complete(
    portal: &(impl UsesContacts + UsesSessions + UsesClock + UsesSettings),
    source: &SourceAddress,
    contact: Contact,
    trusted_device: bool,
    arrival: Arrival<'_>,
    options: SessionOptions,
) -> Result<SignedIn, PortalError> {
    let device_token = match arrival.device {
        Some(device) if trusted_device => device.to_string(),
        _ => random_token(),
    };
    let device = Device {
        digest: digest(&device_token),
        contact_id: contact.contact_id.clone(),
        expires_at: portal.clock().now() + DEVICE_TRUST_SECS,
    };
    let (ended, session_token, remembered) = tokio::join!(
        session::replace(portal, arrival.session),
        session::start_with(portal, &contact, &contact.session_epoch, options),
        portal.contacts().remember_device(&device),
    );
    ended?;
    remembered?;
    let session_token = session_token?;
    audit(AuditEvent::SignedIn, Some(&contact.contact_id), source);
    Ok(SignedIn { contact, session_token, device_token, options })
}
