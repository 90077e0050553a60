//! What SES's bounce and complaint notifications do (the use case of the `email-feedback`
//! function): a hard bounce or a complaint marks the address undeliverable, on the account whose
//! address it is and for `send-email`, with an audit entry; a soft bounce is only recorded (see
//! `domain::deliverability`). The mark goes when the person confirms the address again (a link
//! they ask for while signed in) or moves to another (`usecases::tokens`).

use crate::domain::audit::{AuditEvent, SourceAddress};
use crate::domain::contact::Login;
use crate::domain::deliverability::{Feedback, Undeliverable};
use crate::domain::email::Email;
use crate::ports::{UsesClock, UsesContacts, UsesSettings};

use super::{PortalError, audit_entry};

/// What one notification changed: addresses marked now (an address marked before counts once).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Taken {
    pub marked: usize,
    pub soft_bounces: usize,
}

/// Acts on one SES notification. Err: a fault (nothing half-written; the notification is to be
/// delivered again, and marking twice changes nothing).
pub async fn take_feedback(
    portal: &(impl UsesContacts + UsesClock + UsesSettings),
    feedback: &Feedback,
) -> Result<Taken, PortalError> {
    let mut taken = Taken::default();
    match feedback {
        Feedback::Undeliverable { mark, recipients } => {
            for address in recipients {
                if mark_address(portal, address, mark).await? {
                    taken.marked += 1;
                }
            }
        }
        Feedback::SoftBounce { detail, recipients } => {
            for address in recipients {
                let contact = portal.contacts().find_by_login(&Login::of_email(address)).await?;
                let contact_id = contact.as_ref().map_or("-", |c| c.contact_id.as_str());
                tracing::info!(audit = AuditEvent::EmailSoftBounced.as_str(), contact_id, detail, "audit");
                taken.soft_bounces += 1;
            }
        }
        Feedback::Other(kind) => tracing::info!(kind, "an SES notification that is neither a bounce nor a complaint"),
    }
    Ok(taken)
}

/// Marks one address; `false` when the account whose address it is was marked already.
async fn mark_address(
    portal: &(impl UsesContacts + UsesClock + UsesSettings),
    address: &Email,
    mark: &Undeliverable,
) -> Result<bool, PortalError> {
    // Twice at most: an account whose address moved between the read and the write is read again
    // (the write's condition refused it).
    for _ in 0..2 {
        let contact = portal.contacts().find_by_login(&Login::of_email(address)).await?;
        let contact = contact.filter(|c| c.deleted_at.is_none());
        if contact.as_ref().is_some_and(|c| c.email_undeliverable.as_ref().is_some_and(|m| m.reason == mark.reason)) {
            return Ok(false);
        }
        let contact_id = contact.as_ref().map(|c| &c.contact_id);
        let entry = audit_entry(portal, AuditEvent::EmailUndeliverable, None, contact_id, &SourceAddress::new(None))
            .with("reason", mark.reason.as_str())
            .with("detail", mark.detail.clone());
        if portal.contacts().mark_undeliverable(address, mark, contact.as_ref(), &[entry.into()]).await? {
            tracing::info!(
                audit = AuditEvent::EmailUndeliverable.as_str(),
                contact_id = contact_id.map_or("-", |id| id.as_str()),
                reason = mark.reason.as_str(),
                "audit"
            );
            return Ok(true);
        }
    }
    Err(anyhow::anyhow!("the address's account changed twice while it was being marked undeliverable").into())
}
