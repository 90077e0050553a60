//! Deleting an account (GDPR erasure), by the person after re-authentication or by staff (the
//! `delete` action): the same consequences either way.
//!
//! One transaction replaces the contact with its tombstone (id, parent account, when: nothing that
//! names the person), releases its email and username, and writes the audit entry, the
//! `ContactDeleted` event, the notice to the address it had, and an erasure job. Every session
//! ends with it (the tombstone's new epoch) and no way in opens a tombstone, so nothing after it
//! is urgent. The job (an outbox item, leased and retried by `send-email` like any message, and
//! idempotent) then removes what lives in other items: passkeys, second factors, sessions, and the
//! invited person's name and address on their invitations (revoking those still open, with their
//! unsent email). A settled outbox message keeps no address or name (see the outbox adapter), so
//! once the notice is sent nothing in any table names the person.

use crate::domain::audit::{AuditEntry, AuditEvent, SourceAddress};
use crate::domain::contact::{AccountEdit, Contact, new_epoch};
use crate::domain::event::Fact;
use crate::domain::ids::ContactId;
use crate::domain::outbox::{Claim, MessageKind, OutboxMessage};
use crate::domain::time::Timestamp;
use crate::error::PortalError;
use crate::ports::{
    EditAccountError, Queued, UsesClock, UsesContacts, UsesInvitations, UsesOutbox, UsesPasskeys, UsesSessions,
    UsesSettings, UsesTwoFactor,
};

use super::reauth::Reauthentication;
use super::session::SignedIn;

/// Who deleted the account: the person, or staff (an operator has no id).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeletedBy {
    Themselves,
    Staff(Option<ContactId>),
}

/// `POST /profile/delete`: after re-authentication (a wrong value counts towards the lockout),
/// the person's account is deleted; their session ends with it.
pub async fn delete_own(
    portal: &(impl UsesContacts + UsesClock + UsesSettings + UsesTwoFactor),
    source: &SourceAddress,
    signed_in: &SignedIn,
    given: Reauthentication,
) -> Result<Contact, PortalError> {
    super::reauth::reauthenticate(portal, source, &signed_in.contact, given).await?;
    let id = Some(&signed_in.contact.contact_id);
    let entry = super::audit_entry(portal, AuditEvent::AccountDeleted, id, id, source);
    delete(portal, &signed_in.contact, DeletedBy::Themselves, vec![entry.into()], source).await
}

/// Deletes `contact` (as read) with `queued` (the caller's audit entry, and staff's event) and the
/// deletion's own consequences, in one write: the tombstone as it now stands. `not_found` when it
/// is gone or deleted meanwhile.
pub async fn delete(
    portal: &(impl UsesContacts + UsesClock + UsesSettings),
    contact: &Contact,
    by: DeletedBy,
    mut queued: Vec<Queued>,
    source: &SourceAddress,
) -> Result<Contact, PortalError> {
    let now = portal.clock().now();
    queued.extend(consequences(contact, &by, now));
    let edit = AccountEdit::Delete { epoch: new_epoch() };
    match portal.contacts().edit_account(contact, &edit, now, &queued).await {
        Ok(tombstone) => {
            super::audit(AuditEvent::AccountDeleted, Some(&contact.contact_id), source);
            Ok(tombstone)
        }
        Err(EditAccountError::Missing) => Err(PortalError::NotFound),
        Err(EditAccountError::Store(err)) => Err(err.into()),
    }
}

/// What rides along with every deletion: the event, the notice (not held back by the notice
/// allowance: it is the account's last), and the erasure job.
fn consequences(contact: &Contact, by: &DeletedBy, now: Timestamp) -> Vec<Queued> {
    let mut notice =
        OutboxMessage::new(MessageKind::AccountDeletedNotice, contact.email.as_str(), &contact.first_name, None, now);
    notice.contact_id = Some(contact.contact_id.clone());
    if let DeletedBy::Staff(_) = by {
        notice.detail = Some("staff".into());
    }
    vec![
        Fact::ContactDeleted { contact_id: contact.contact_id.clone() }.at(now).into(),
        Queued::new(notice),
        Queued::new(erasure_job(&contact.contact_id, now)),
    ]
}

/// The outbox item that has `send-email` erase what the deleted account left in other items.
pub fn erasure_job(contact_id: &ContactId, now: Timestamp) -> OutboxMessage {
    let mut job = OutboxMessage::new(MessageKind::Erasure, "", "", None, now);
    job.contact_id = Some(contact_id.clone());
    job
}

/// What one run of the erasure job removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Erased {
    pub passkeys: usize,
    pub sessions: usize,
    pub invitations: usize,
}

/// The erasure job (run by `send-email` under the job's lease): removes the deleted account's
/// passkeys, second factors and sessions, and the invited person's name and address from their
/// invitations, revoking those still open with their unsent email. Each step is idempotent, so a
/// retry after a fault finds less to do and finishes. An account that is not deleted (the job
/// cannot be queued for one) is left alone.
pub async fn erase_remains(
    portal: &(
         impl UsesContacts
         + UsesClock
         + UsesSettings
         + UsesSessions
         + UsesInvitations
         + UsesPasskeys
         + UsesTwoFactor
         + UsesOutbox
     ),
    contact_id: &ContactId,
    source: &SourceAddress,
) -> Result<Erased, PortalError> {
    let Some(tombstone) = portal.contacts().get(contact_id).await?.filter(|c| c.deleted_at.is_some()) else {
        tracing::warn!(contact_id = %contact_id, "erasure job for an account that is not deleted; left alone");
        return Ok(Erased::default());
    };
    let now = portal.clock().now();
    let mut erased = Erased::default();
    for passkey in portal.passkeys().list(contact_id).await? {
        portal.passkeys().remove(contact_id, &passkey.id, &tombstone.session_epoch, now, &[]).await?;
        erased.passkeys += 1;
    }
    super::codes::clear_second_factors(portal, contact_id).await?;
    for session in portal.sessions().list_for_contact(contact_id).await? {
        portal.sessions().delete(&session.id_digest).await?;
        erased.sessions += 1;
    }
    for invitation in portal.invitations().list_for_contact(contact_id).await? {
        if invitation.is_redeemable(now) {
            portal.invitations().revoke(&invitation.invitation_id, now).await?;
            withdraw(portal, &invitation.message_id, now).await?;
        }
        portal.invitations().erase_invitee(&invitation.invitation_id).await?;
        erased.invitations += 1;
    }
    let entry = AuditEntry::new(
        AuditEvent::AccountErased,
        None,
        Some(contact_id),
        source,
        now,
        portal.settings().audit_retention_secs,
    )
    .with("passkeys", erased.passkeys.to_string())
    .with("sessions", erased.sessions.to_string())
    .with("invitations", erased.invitations.to_string());
    super::record(portal, entry).await?;
    Ok(erased)
}

/// An invitation email not sent yet (held while sending is off, or waiting) fails as superseded
/// now, which removes its address; one being sent fails so when its run finds the invitation
/// revoked.
async fn withdraw(
    portal: &impl UsesOutbox,
    message_id: &crate::domain::ids::MessageId,
    now: Timestamp,
) -> Result<(), PortalError> {
    if let Claim::Leased(_) = portal.outbox().claim(message_id, now).await? {
        let reason = "superseded: the invited contact's account was deleted";
        portal.outbox().mark_failed(message_id, reason, now).await?;
    }
    Ok(())
}
