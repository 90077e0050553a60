//! Per-source-address allowances: attempts (sign-in, invitation codes) and the emails a request
//! may cause, so the portal can be used neither to guess nor to flood an inbox.

use crate::domain::audit::{AuditEvent, SourceAddress};
use crate::domain::ids::ContactId;
use crate::error::PortalError;
use crate::ports::{UsesClock, UsesContacts, UsesSettings};

/// What a source address can fail at, each with its own hourly allowance.
#[derive(Clone, Copy)]
pub enum Attempt {
    SignIn,
    InvitationCode,
}

impl Attempt {
    fn key(self, source: &SourceAddress) -> String {
        let kind = match self {
            Attempt::SignIn => "sign-in",
            Attempt::InvitationCode => "invitation-code",
        };
        format!("failures#{kind}#{source}")
    }
}

const HOUR: i64 = 3600;

/// Takes one attempt of the source address before anything is checked, as one conditional
/// increment: once its allowance is used up it is refused (429, until the hour is over), however
/// many requests it sends at once. Guessing passwords across accounts, or invitation codes, stops
/// there; account lockout covers one account.
pub async fn reserve_attempt(
    portal: &(impl UsesContacts + UsesClock + UsesSettings),
    source: &SourceAddress,
    attempt: Attempt,
) -> Result<(), PortalError> {
    let now = portal.clock().now();
    let limit = portal.settings().failures_per_address_per_hour;
    if portal.contacts().take_allowance(&attempt.key(source), limit, HOUR, now).await? {
        return Ok(());
    }
    super::audit(AuditEvent::Throttled, None, source);
    Err(PortalError::RateLimited { retry_after_secs: now.secs_left_in_window(HOUR) as u64 })
}

/// Gives the attempt back: it was right, so only failures use the allowance up.
pub async fn give_back_attempt(
    portal: &(impl UsesContacts + UsesClock),
    source: &SourceAddress,
    attempt: Attempt,
) -> Result<(), PortalError> {
    portal.contacts().give_back_allowance(&attempt.key(source), HOUR, portal.clock().now()).await?;
    Ok(())
}

/// Whether the emails a request would cause may go out now: one allowance is taken from the
/// source address, from the account (when the request path knows it), and from each recipient
/// address, all of them every time, so the work done does not depend on any account. A refused
/// request gets the same answer as an allowed one and sends nothing.
///
/// Forgot-password and resend-confirmation name no account (that would tell whether one exists):
/// their recipient is the account's own address, so the recipient allowance is the account's.
pub async fn emails_allowed(
    portal: &(impl UsesContacts + UsesClock + UsesSettings),
    source: &SourceAddress,
    account: Option<&ContactId>,
    recipients: &[&str],
) -> Result<bool, PortalError> {
    let now = portal.clock().now();
    let settings = portal.settings();
    let mut keys = vec![(format!("address#{source}"), settings.emails_per_address_per_hour)];
    if let Some(account) = account {
        keys.push((format!("account#{account}"), settings.emails_per_account_per_hour));
    }
    for to in recipients {
        // A digest: no allowance item holds an address (a deleted account's would outlive it).
        let recipient = crate::domain::secret::digest(&to.to_lowercase());
        keys.push((format!("recipient#{recipient}"), settings.emails_per_recipient_per_hour));
    }
    let window = settings.email_allowance_window_secs;
    let takes = keys.iter().map(|(key, limit)| portal.contacts().take_allowance(key, *limit, window, now));
    let allowed = futures::future::try_join_all(takes).await?.into_iter().all(|taken| taken);
    if !allowed {
        super::audit(AuditEvent::EmailRateLimited, account, source);
    }
    Ok(allowed)
}
