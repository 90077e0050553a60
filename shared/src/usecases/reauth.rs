//! Re-authentication: what every change that could take an account over asks for first (adding
//! or removing a passkey, changing the email address or the password, every two-factor change).
//!
//! A session alone never suffices: the current password (for an account without one, a code
//! emailed to it) and, when the account has a second factor, a current code of it. One attempt of the account is taken before anything is checked,
//! as a sign-in takes one, so wrong values count towards the lockout; the failures are cleared
//! only when both are right.

use std::collections::BTreeMap;

use crate::domain::audit::{AuditEvent, SourceAddress};
use crate::domain::contact::Contact;
use crate::domain::lockout::{AttemptSubject, FailedSignIn};
use crate::domain::password::{Password, verify_password};
use crate::domain::two_factor::{SIGN_IN_CODE_TRIES, TwoFactor, normalize_digits, sign_in_code_digest};
use crate::error::PortalError;
use crate::ports::{UsesClock, UsesContacts, UsesSettings, UsesTwoFactor};

use super::audit;
use super::codes::use_code;

/// What a change that needs re-authentication was sent with.
#[derive(Clone, Default)]
pub struct Reauthentication {
    pub current_password: Option<Password>,
    /// A current TOTP code, an emailed code or an unused recovery code.
    pub second_factor_code: Option<String>,
    /// For an account without a password (made through a provider or by an emailed code): the
    /// code emailed to it (`POST /profile/reauthentication-code`) stands for the password.
    pub email_code: Option<String>,
}

impl Reauthentication {
    pub fn with_password(password: Password) -> Self {
        Reauthentication { current_password: Some(password), second_factor_code: None, email_code: None }
    }
}

const WRONG_PASSWORD: &str = "is not your current password";
const WRONG_CODE: &str = "is not a current code of your second factor";
const CODE_REQUIRED: &str = "is required: your account has two-factor authentication (a code from your app, an emailed code or a recovery code)";

/// What stands for the account's password: the password, or, for an account without one (made
/// through a provider or by an emailed code), the code emailed to it.
enum FirstFactor {
    Password(Password),
    EmailCode(String),
}

const EMAIL_CODE_REQUIRED: &str =
    "is required: your account has no password; ask for a code by email and enter it here";
const WRONG_EMAIL_CODE: &str = "is not the current code from your email";

/// Checks `given` for the signed-in `contact`: the current password (for an account without one,
/// the code emailed to it: ten minutes, five tries, one use) and, when the account has a second
/// factor, a current code of it (used up; after an emailed code never the emailed second factor:
/// that would be the same mailbox twice). Missing or wrong: 400 naming the field. Returns the
/// account's two-factor state as it stands after, for a change to build on.
pub async fn reauthenticate(
    portal: &(impl UsesContacts + UsesClock + UsesSettings + UsesTwoFactor),
    source: &SourceAddress,
    contact: &Contact,
    given: Reauthentication,
) -> Result<TwoFactor, PortalError> {
    let state = portal.two_factor().get(&contact.contact_id).await?;
    let passwordless = contact.password_hash.is_none();
    // The second step's methods: all the account's, but the email after an emailed first code.
    let second_step = TwoFactor { email: state.email && !passwordless, ..state.clone() };
    let needs_code = second_step.enabled();
    let mut missing = BTreeMap::new();
    let first = if passwordless {
        let code = given.email_code.as_deref().and_then(normalize_digits);
        if code.is_none() {
            missing.insert("email_code".to_string(), EMAIL_CODE_REQUIRED.to_string());
        }
        code.map(FirstFactor::EmailCode)
    } else {
        if given.current_password.is_none() {
            missing.insert("current_password".to_string(), "is required to make this change".to_string());
        }
        given.current_password.map(FirstFactor::Password)
    };
    let code = given.second_factor_code.filter(|c| !c.trim().is_empty());
    if needs_code && code.is_none() {
        missing.insert("second_factor_code".to_string(), CODE_REQUIRED.to_string());
    }
    let (Some(first), true) = (first, missing.is_empty()) else {
        return Err(PortalError::fields_invalid(missing));
    };
    let now = portal.clock().now();
    let policy = portal.settings().lockout;
    let subject = AttemptSubject::Account(contact.contact_id.clone());
    let reserved = portal.contacts().reserve_attempt(&subject, now, &policy).await?;
    let first_wrong = match first {
        // A refused reservation still does a hash's work (no hash to match): the same time.
        FirstFactor::Password(password) => {
            let hash = if reserved { contact.password_hash.clone() } else { None };
            (!verify_password(password, hash).await?).then_some(("current_password", WRONG_PASSWORD))
        }
        FirstFactor::EmailCode(code) => {
            let digest = sign_in_code_digest(&contact.contact_id, &code);
            let used = reserved
                && portal.contacts().use_sign_in_code(&contact.contact_id, &digest, now, SIGN_IN_CODE_TRIES).await?;
            (!used).then_some(("email_code", WRONG_EMAIL_CODE))
        }
    };
    let wrong = match (first_wrong, &code) {
        (Some(wrong), _) => Some(wrong),
        (None, Some(code)) if needs_code && !use_code(portal, contact, &second_step, code).await? => {
            Some(("second_factor_code", WRONG_CODE))
        }
        _ => None,
    };
    if let Some((field, reason)) = wrong {
        return Err(refuse(portal, source, contact, reserved, field, reason).await);
    }
    portal.contacts().reset_lockout(&contact.contact_id).await?;
    // Using the code wrote the state (a used step, a used recovery code): a change builds on that.
    match needs_code {
        true => Ok(portal.two_factor().get(&contact.contact_id).await?),
        false => Ok(state),
    }
}

/// A wrong value: the reserved attempt counted (a lockout it causes is logged), the failure
/// audited, and the answer naming `field`.
async fn refuse(
    portal: &(impl UsesContacts + UsesClock + UsesSettings),
    source: &SourceAddress,
    contact: &Contact,
    reserved: bool,
    field: &str,
    reason: &str,
) -> PortalError {
    let subject = AttemptSubject::Account(contact.contact_id.clone());
    let now = portal.clock().now();
    let policy = portal.settings().lockout;
    if reserved {
        match portal.contacts().record_failed_sign_in(&subject, now, &policy).await {
            Ok(FailedSignIn::LockedOut { until }) => {
                tracing::warn!(audit = AuditEvent::LockedOut.as_str(), contact_id = %contact.contact_id, locked_until = until.as_secs(), "audit");
            }
            Ok(_) => {}
            Err(err) => return err.into(),
        }
    }
    audit(AuditEvent::ReauthenticationFailed, Some(&contact.contact_id), source);
    PortalError::field(field, reason)
}
