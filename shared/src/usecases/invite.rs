//! The administrators' work: contacts, and invitations created, resent and revoked (the Dynamics
//! 365 "Send Invitation" workflow). Each change is audited with who made it and from where.

use crate::domain::audit::{AuditEvent, SourceAddress};
use crate::domain::contact::{Contact, Login, NewContact};
use crate::domain::email::Email;
use crate::domain::event::Fact;
use crate::domain::ids::{InvitationId, MessageId};
use crate::domain::invitation::{Delivery, Invitation, InvitationCode};
use crate::domain::outbox::{MailSecret, MessageKind, OutboxMessage};
use crate::domain::time::Timestamp;
use crate::error::PortalError;
use crate::ports::CreateContactError;
use crate::ports::{UsesClock, UsesContacts, UsesInvitations, UsesSettings};

use super::audit_entry;

/// What an administrator asks for, parsed (group invitations go on in [`super::group_invite`]).
pub use crate::domain::invitation::{InvitationRequest, Invitee};

/// An administrator's audit event: what was done to which contact or invitation, by whom, from where.
fn admin_audit(event: AuditEvent, subject: &str, admin: &Contact, source: &SourceAddress) {
    tracing::info!(audit = event.as_str(), subject, by = %admin.contact_id, source_ip = %source, "audit");
}

/// A contact's details as staff enter them.
#[derive(Clone)]
pub struct ContactDetails {
    pub email: Email,
    pub first_name: String,
    pub last_name: String,
    pub phone: Option<String>,
}

/// Creates a contact without portal credentials (to invite later).
pub async fn create_contact(
    portal: &(impl UsesContacts + UsesClock + UsesSettings),
    source: &SourceAddress,
    admin: &Contact,
    details: ContactDetails,
) -> Result<Contact, PortalError> {
    let ContactDetails { email, first_name, last_name, phone } = details;
    let contact = Contact::new(
        NewContact { email, first_name, last_name, username: None, phone, roles: Vec::new(), password_hash: None },
        portal.clock().now(),
    );
    let entry =
        audit_entry(portal, AuditEvent::ContactCreated, Some(&admin.contact_id), Some(&contact.contact_id), source);
    portal.contacts().create_with_emails(&contact, &[entry.into()]).await?;
    admin_audit(AuditEvent::ContactCreated, &contact.contact_id, admin, source);
    Ok(contact)
}

async fn invited_contact(portal: &(impl UsesContacts + UsesClock), invitee: Invitee) -> Result<Contact, PortalError> {
    let (email, first_name, last_name) = match invitee {
        Invitee::ContactId(id) => {
            return portal
                .contacts()
                .get(&id)
                .await?
                .ok_or_else(|| PortalError::field("contact_id", "is not a contact"));
        }
        Invitee::Email { email, first_name, last_name } => (email, first_name, last_name),
        Invitee::Contacts(_) => return Err(PortalError::field("contact_ids", "is only for a group invitation")),
    };
    let login = Login::of_email(&email);
    if let Some(existing) = portal.contacts().find_by_login(&login).await? {
        return Ok(existing);
    }
    let contact = Contact::new(
        NewContact {
            email,
            first_name,
            last_name,
            username: None,
            phone: None,
            roles: Vec::new(),
            password_hash: None,
        },
        portal.clock().now(),
    );
    match portal.contacts().create(&contact).await {
        Ok(()) => Ok(contact),
        // Created by someone else meanwhile: invite that one.
        Err(CreateContactError::EmailTaken) => portal
            .contacts()
            .find_by_login(&login)
            .await?
            .ok_or_else(|| anyhow::anyhow!("invited contact vanished").into()),
        Err(CreateContactError::UsernameTaken | CreateContactError::IdentityTaken) => {
            Err(PortalError::field("email", "could not be used"))
        }
        Err(CreateContactError::Store(err)) => Err(err.into()),
    }
}

/// The email carrying `code` for `invitation`.
pub(crate) fn invitation_message(invitation: &Invitation, code: &InvitationCode, now: Timestamp) -> OutboxMessage {
    let mut message = OutboxMessage::new(
        MessageKind::Invitation,
        &invitation.email,
        &invitation.first_name,
        Some(MailSecret::new(code.display())),
        now,
    );
    message.message_id = invitation.message_id.clone();
    message.invitation_id = Some(invitation.invitation_id.clone());
    // Who it goes to: named in the delivery's event (InvitationSent / InvitationDeliveryFailed).
    message.contact_id = Some(invitation.contact_id.clone());
    message.valid_until = Some(invitation.expires_at);
    message
}

/// Creates an invitation; its code goes out only by email (queued in the same write).
pub async fn invite(
    portal: &(impl UsesContacts + UsesInvitations + UsesClock + UsesSettings),
    source: &SourceAddress,
    admin: &Contact,
    request: InvitationRequest,
) -> Result<Invitation, PortalError> {
    if let Invitee::Contacts(contact_ids) = &request.invitee {
        let contact_ids = contact_ids.clone();
        return super::group_invite::invite_group(portal, source, admin, &contact_ids, request).await;
    }
    let contact = invited_contact(portal, request.invitee).await?;
    let now = portal.clock().now();
    let expires_in_days = request.expires_in_days.unwrap_or(portal.settings().invitation_expiry_days);
    let code = InvitationCode::generate();
    let invitation = Invitation {
        invitation_id: InvitationId::generate(),
        code_digest: code.digest(),
        kind: request.kind,
        contact_id: contact.contact_id.clone(),
        email: contact.email.to_string(),
        first_name: contact.first_name.clone(),
        last_name: contact.last_name.clone(),
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
    let created = Fact::InvitationCreated {
        invitation_id: invitation.invitation_id.clone(),
        contact_id: invitation.contact_id.clone(),
    };
    let message = invitation_message(&invitation, &code, now);
    let entry = audit_entry(
        portal,
        AuditEvent::InvitationCreated,
        Some(&admin.contact_id),
        Some(&invitation.contact_id),
        source,
    )
    .with("invitation_id", invitation.invitation_id.as_str());
    portal.invitations().create_with_events(&invitation, &message, &[created.at(now).into(), entry.into()]).await?;
    admin_audit(AuditEvent::InvitationCreated, &invitation.invitation_id, admin, source);
    Ok(invitation)
}

/// Invitation ids are UUIDs: a longer path segment names nothing.
const MAX_INVITATION_ID: usize = 64;

/// The invitation `id`, or `not_found`.
pub async fn invitation(portal: &impl UsesInvitations, id: &InvitationId) -> Result<Invitation, PortalError> {
    if id.len() > MAX_INVITATION_ID {
        return Err(PortalError::NotFound);
    }
    portal.invitations().get(id).await?.ok_or(PortalError::NotFound)
}

/// Issues a new code for an active invitation (the old one stops working) and emails it.
pub async fn resend(
    portal: &(impl UsesInvitations + UsesClock + UsesSettings),
    source: &SourceAddress,
    admin: &Contact,
    id: &InvitationId,
) -> Result<Invitation, PortalError> {
    let invitation = invitation(portal, id).await?;
    let now = portal.clock().now();
    if !invitation.is_redeemable(now) {
        return Err(PortalError::validation("Only an active invitation can be resent; create a new one instead."));
    }
    let entry = audit_entry(
        portal,
        AuditEvent::InvitationResent,
        Some(&admin.contact_id),
        Some(&invitation.contact_id),
        source,
    )
    .with("invitation_id", id.as_str());
    if let Some(updated) = super::group_invite::resend_group(portal, &invitation, entry.clone()).await? {
        admin_audit(AuditEvent::InvitationResent, id, admin, source);
        return Ok(updated);
    }
    let code = InvitationCode::generate();
    let mut updated = invitation.clone();
    updated.message_id = MessageId::generate();
    updated.code_digest = code.digest();
    updated.delivery = Delivery::Pending;
    updated.delivery_error = None;
    updated.delivered_at = None;
    let message = invitation_message(&updated, &code, now);
    if !portal.invitations().replace_code(&invitation, &updated.code_digest, &message, &[entry.into()]).await? {
        return Err(PortalError::validation(
            "The invitation changed meanwhile (revoked or resent); reload and try again.",
        ));
    }
    admin_audit(AuditEvent::InvitationResent, id, admin, source);
    Ok(updated)
}

/// Revokes an invitation: one conditional write that returns it, no read before or after.
pub async fn revoke(
    portal: &(impl UsesInvitations + UsesClock + UsesSettings),
    source: &SourceAddress,
    admin: &Contact,
    id: &InvitationId,
) -> Result<Invitation, PortalError> {
    if id.len() > MAX_INVITATION_ID {
        return Err(PortalError::NotFound);
    }
    let now = portal.clock().now();
    let revoked = Fact::InvitationRevoked { invitation_id: id.clone() }.at(now);
    // Revoked without a read: the entry names the invitation (its contact is on the invitation).
    let entry = audit_entry(portal, AuditEvent::InvitationRevoked, Some(&admin.contact_id), None, source)
        .with("invitation_id", id.as_str());
    let queued = [revoked.into(), entry.into()];
    let invitation = portal.invitations().revoke_with_events(id, now, &queued).await?.ok_or(PortalError::NotFound)?;
    admin_audit(AuditEvent::InvitationRevoked, id, admin, source);
    Ok(invitation)
}
