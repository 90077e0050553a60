//! Second-factor codes: checking one (a TOTP code, the emailed code or a recovery code), and
//! emailing a fresh sign-in code. The door and re-authentication both use them.

use crate::domain::contact::Contact;
use crate::domain::ids::ContactId;
use crate::domain::outbox::{MailSecret, MessageKind, OutboxMessage};
use crate::domain::time::Timestamp;
use crate::domain::two_factor::{
    EMAIL_CODE_SECS, SIGN_IN_CODE_SECS, TwoFactor, email_code_digest, new_email_code, normalize_digits,
    recovery_digest, sign_in_code_digest,
};
use crate::error::PortalError;
use crate::ports::{Queued, UsesClock, UsesContacts, UsesTwoFactor};

/// Whether `code` is a current TOTP code, the emailed code or an unused recovery code of the
/// contact (whose state `state` was read), using it up. The TOTP secret is opened only for a code
/// that could be one; a secret sealed before secrets were bound to their contact is sealed again,
/// bound, on this use.
pub async fn use_code(
    portal: &(impl UsesClock + UsesTwoFactor),
    contact: &Contact,
    state: &TwoFactor,
    code: &str,
) -> Result<bool, PortalError> {
    let now = portal.clock().now();
    let contact_id = &contact.contact_id;
    if let Some(digits) = normalize_digits(code) {
        if let Some(sealed) = &state.totp {
            let secret = portal.sealer().open(sealed, contact_id).await?;
            if !sealed.is_bound() {
                let mut rebound = state.clone();
                rebound.totp = Some(portal.sealer().seal(&secret, contact_id).await?);
                // Changed meanwhile: the next use binds it.
                portal.two_factor().save(&rebound, None, &[]).await?;
            }
            if let Some(step) = secret.matching_step(&digits, now, state.totp_last_step)
                && portal.two_factor().use_totp_step(contact_id, step).await?
            {
                return Ok(true);
            }
        }
        if state.email && state.email_code.is_some() {
            let digest = email_code_digest(contact_id, &digits);
            if portal.two_factor().use_email_code(contact_id, &digest, now).await? {
                return Ok(true);
            }
        }
        return Ok(false);
    }
    if state.enabled() && !state.recovery_codes.is_empty() {
        return Ok(portal.two_factor().use_recovery_code(contact_id, &recovery_digest(code)).await?);
    }
    Ok(false)
}

/// A fresh emailed sign-in code (the first factor) for `contact`, stored as its digest (replacing
/// any earlier one): the code for the email, and until when it works.
pub async fn new_sign_in_code(
    portal: &(impl UsesClock + UsesContacts),
    contact: &Contact,
) -> Result<(String, Timestamp), PortalError> {
    let code = new_email_code();
    let expires_at = portal.clock().now() + SIGN_IN_CODE_SECS;
    let digest = sign_in_code_digest(&contact.contact_id, &code);
    portal.contacts().set_sign_in_code(&contact.contact_id, &digest, expires_at).await?;
    Ok((code, expires_at))
}

/// Stores a fresh emailed sign-in code for `contact` (replacing any earlier one) with its email,
/// together.
pub async fn email_a_code(portal: &(impl UsesClock + UsesTwoFactor), contact: &Contact) -> Result<(), PortalError> {
    let now = portal.clock().now();
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
    portal.two_factor().set_email_code(&contact.contact_id, &digest, expires_at, &[Queued::new(message)]).await?;
    Ok(())
}

/// Removes the account's TOTP, emailed codes and recovery codes (nothing when there are none).
pub async fn clear_second_factors(portal: &impl UsesTwoFactor, contact_id: &ContactId) -> Result<(), PortalError> {
    let state = portal.two_factor().get(contact_id).await?;
    let cleared = TwoFactor { version: state.version, ..TwoFactor::none(contact_id) };
    if state != cleared && !portal.two_factor().save(&cleared, None, &[]).await? {
        return Err(anyhow::anyhow!("the two-factor state changed while it was reset").into());
    }
    Ok(())
}
