//! Per-source-address allowances: failures (sign-in, invitation codes) and the emails a request
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

const FAILURE_WINDOW_SECS: i64 = 3600;

/// Refuses (429, until the hour is over) a source address that used up its failures: guessing
/// passwords across accounts, or invitation codes, stops there. Account lockout covers one account.
pub async fn refuse_if_throttled(
    portal: &(impl UsesContacts + UsesClock + UsesSettings),
    source: &SourceAddress,
    attempt: Attempt,
) -> Result<(), PortalError> {
    let now = portal.clock().now();
    let limit = portal.settings().failures_per_address_per_hour;
    if portal.contacts().allowance_left(&attempt.key(source), limit, FAILURE_WINDOW_SECS, now).await? {
        return Ok(());
    }
    super::audit(AuditEvent::Throttled, None, source);
    Err(PortalError::RateLimited { retry_after_secs: now.secs_left_in_window(FAILURE_WINDOW_SECS) as u64 })
}

/// Counts one failure of the source address.
pub async fn count_failure(
    portal: &(impl UsesContacts + UsesClock + UsesSettings),
    source: &SourceAddress,
    attempt: Attempt,
) -> Result<(), PortalError> {
    let limit = portal.settings().failures_per_address_per_hour;
    portal.contacts().take_allowance(&attempt.key(source), limit, FAILURE_WINDOW_SECS, portal.clock().now()).await?;
    Ok(())
}

/// Whether one more email on behalf of `account` may go out now: within the hourly allowance per
/// account and per source address. A refused request still gets the same answer as an allowed one.
pub async fn email_allowed(
    portal: &(impl UsesContacts + UsesClock + UsesSettings),
    source: &SourceAddress,
    account: &ContactId,
) -> Result<bool, PortalError> {
    let now = portal.clock().now();
    let settings = portal.settings();
    let by_account = portal
        .contacts()
        .take_allowance(&format!("account#{account}"), settings.emails_per_account_per_hour, 3600, now)
        .await?;
    let by_address = portal
        .contacts()
        .take_allowance(&format!("address#{source}"), settings.emails_per_address_per_hour, 3600, now)
        .await?;
    if !(by_account && by_address) {
        super::audit(AuditEvent::EmailRateLimited, Some(account), source);
    }
    Ok(by_account && by_address)
}
