//! Group invitations to several contacts: one invitation, one code, one fan-out outbox item that
//! `send-email` expands into an invitation email per contact (see `domain::group`).

use crate::domain::audit::{AuditEntry, AuditEvent, SourceAddress};
use crate::domain::contact::Contact;
use crate::domain::event::Fact;
use crate::domain::group::{self, Recipient};
use crate::domain::ids::{ContactId, InvitationId, MessageId};
use crate::domain::invitation::{Delivery, Invitation, InvitationCode, InvitationRequest, InvitationType};
use crate::domain::outbox::{MailSecret, MessageKind, OutboxMessage};
use crate::domain::time::Timestamp;
use crate::error::PortalError;
use crate::ports::{UsesClock, UsesContacts, UsesInvitations, UsesSettings};

/// The one outbox item carrying `code` for every recipient of a group invitation.
pub(crate) fn fanout_message(
    invitation: &Invitation,
    code: &InvitationCode,
    recipients: Vec<Recipient>,
    now: Timestamp,
) -> OutboxMessage {
    let mut message = OutboxMessage::new(
        MessageKind::InvitationFanout,
        &invitation.email,
        &invitation.first_name,
        Some(MailSecret::new(code.display())),
        now,
    );
    message.message_id = invitation.message_id.clone();
    message.invitation_id = Some(invitation.invitation_id.clone());
    message.valid_until = Some(invitation.expires_at);
    message.recipients = recipients;
    message
}

/// The per-contact invitation email number `index` of `fanout` (which holds the code).
pub(crate) fn contact_message(fanout: &OutboxMessage, index: usize, now: Timestamp) -> Option<OutboxMessage> {
    let recipient = fanout.recipients.get(index)?;
    let mut message = OutboxMessage::new(
        MessageKind::Invitation,
        &recipient.email,
        &recipient.first_name,
        fanout.secret.clone(),
        now,
    );
    message.message_id = group::fanned_message_id(&fanout.message_id, index);
    message.invitation_id = fanout.invitation_id.clone();
    message.contact_id = Some(recipient.contact_id.clone());
    message.valid_until = fanout.valid_until;
    message.fanout_id = Some(fanout.message_id.clone());
    Some(message)
}

/// Reads every listed contact (at once); an unknown one is a problem of `contact_ids`.
async fn listed_contacts(portal: &impl UsesContacts, ids: &[ContactId]) -> Result<Vec<Contact>, PortalError> {
    let found = futures::future::join_all(ids.iter().map(|id| portal.contacts().get(id))).await;
    let mut contacts = Vec::with_capacity(ids.len());
    for (id, contact) in ids.iter().zip(found) {
        match contact? {
            Some(contact) => contacts.push(contact),
            None => return Err(PortalError::field("contact_ids", format!("{id:?} is not a contact"))),
        }
    }
    Ok(contacts)
}

/// Creates a group invitation whose code is emailed to each of `contact_ids` (1 to 100, distinct,
/// checked by the caller's parsing), all in one write: the invitation with every delivery pending,
/// its code, the fan-out item and the `InvitationCreated` event.
pub async fn invite_group(
    portal: &(impl UsesContacts + UsesInvitations + UsesClock + UsesSettings),
    source: &SourceAddress,
    admin: &Contact,
    contact_ids: &[ContactId],
    request: InvitationRequest,
) -> Result<Invitation, PortalError> {
    if request.kind != InvitationType::Group {
        return Err(PortalError::field("contact_ids", "is only for a group invitation (type \"group\")"));
    }
    let contacts = listed_contacts(portal, contact_ids).await?;
    let first = contacts.first().ok_or_else(|| PortalError::field("contact_ids", "must list at least one contact"))?;
    let now = portal.clock().now();
    let expires_in_days = request.expires_in_days.unwrap_or(portal.settings().invitation_expiry_days);
    let code = InvitationCode::generate();
    let invitation = Invitation {
        invitation_id: InvitationId::generate(),
        code_digest: code.digest(),
        kind: InvitationType::Group,
        // The first listed contact stands for the group in lists; every one is emailed.
        contact_id: first.contact_id.clone(),
        email: first.email.to_string(),
        first_name: first.first_name.clone(),
        last_name: first.last_name.clone(),
        max_redemptions: request.max_redemptions,
        redemptions: 0,
        expires_at: now + i64::from(expires_in_days) * 86_400,
        revoked: false,
        roles: request.roles,
        account_id: request.account_id,
        redirect_path: request.redirect_path,
        created_at: now,
        created_by: admin.contact_id.clone(),
        message_id: MessageId::generate(),
        delivery: Delivery::Pending,
        delivery_error: None,
        delivered_at: None,
    };
    let recipients = contacts
        .iter()
        .map(|c| Recipient {
            contact_id: c.contact_id.clone(),
            email: c.email.to_string(),
            first_name: c.first_name.clone(),
        })
        .collect();
    let fanout = fanout_message(&invitation, &code, recipients, now);
    let created = Fact::InvitationCreated {
        invitation_id: invitation.invitation_id.clone(),
        contact_id: invitation.contact_id.clone(),
    };
    let entry = super::audit_entry(portal, AuditEvent::InvitationCreated, Some(&admin.contact_id), None, source)
        .with("invitation_id", invitation.invitation_id.as_str())
        .with("contacts", contact_ids.len().to_string());
    portal
        .invitations()
        .create_group_with_events(&invitation, &fanout, &[created.at(now).into(), entry.into()])
        .await?;
    tracing::info!(
        audit = AuditEvent::InvitationCreated.as_str(),
        subject = %invitation.invitation_id,
        by = %admin.contact_id,
        source_ip = %source,
        contacts = contact_ids.len(),
        "audit"
    );
    Ok(invitation)
}

/// A resend of a group invitation with contacts: a new code, emailed again to every listed
/// contact (a new fan-out); `None` when the invitation lists no contacts (the single-email resend
/// applies).
pub(crate) async fn resend_group(
    portal: &(impl UsesInvitations + UsesClock + UsesSettings),
    invitation: &Invitation,
    entry: AuditEntry,
) -> Result<Option<Invitation>, PortalError> {
    if invitation.kind != InvitationType::Group {
        return Ok(None);
    }
    let deliveries = portal.invitations().deliveries(&invitation.invitation_id).await?;
    if deliveries.is_empty() {
        return Ok(None);
    }
    let now = portal.clock().now();
    let code = InvitationCode::generate();
    let mut updated = invitation.clone();
    updated.message_id = MessageId::generate();
    updated.code_digest = code.digest();
    updated.delivery = Delivery::Pending;
    updated.delivery_error = None;
    updated.delivered_at = None;
    let fanout = fanout_message(&updated, &code, group::recipients_of(&deliveries), now);
    if !portal.invitations().replace_group_code(invitation, &updated.code_digest, &fanout, &[entry.into()]).await? {
        return Err(PortalError::validation(
            "The invitation changed meanwhile (revoked or resent); reload and try again.",
        ));
    }
    Ok(Some(updated))
}
