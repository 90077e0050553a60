//! What the administrators' routes show of contacts and invitations: the JSON views (with the
//! people an invitation names) and the rows of their pages. Used by `admin` and `admin_lists`.

use std::collections::HashMap;

use serde::Serialize;

use crate::domain::contact::Contact;
use crate::domain::deliverability::{Undeliverable, UndeliverableReason};
use crate::domain::ids::ContactId;
use crate::domain::invitation::{Delivery, Invitation, InvitationStatus, InvitationType, Redemption};
use crate::domain::text::Username;
use crate::domain::time::{Timestamp, human, rfc3339};
use crate::web::pages::InvitationRow;

#[derive(Serialize)]
pub(super) struct ContactView<'a> {
    contact_id: &'a str,
    email: &'a str,
    first_name: &'a str,
    last_name: &'a str,
    username: Option<&'a str>,
    roles: &'a [String],
    account_id: Option<&'a str>,
    email_confirmed: bool,
    portal_user: bool,
    /// Null while mail reaches the address; else why it stopped (a bounce, a complaint) and when.
    email_undeliverable: Option<UndeliverableView<'a>>,
}

/// An address's undeliverable mark, as staff see it.
#[derive(Serialize)]
pub(crate) struct UndeliverableView<'a> {
    reason: UndeliverableReason,
    at: String,
    detail: &'a str,
}

impl<'a> UndeliverableView<'a> {
    pub(crate) fn of(mark: &'a Undeliverable) -> Self {
        UndeliverableView { reason: mark.reason, at: rfc3339(mark.at), detail: &mark.detail }
    }
}

impl<'a> ContactView<'a> {
    pub(super) fn of(contact: &'a Contact) -> Self {
        ContactView {
            contact_id: &contact.contact_id,
            email: contact.email.as_str(),
            first_name: &contact.first_name,
            last_name: &contact.last_name,
            username: contact.username.as_ref().map(Username::as_str),
            roles: &contact.roles,
            account_id: contact.account_id.as_deref(),
            email_confirmed: contact.email_confirmed,
            portal_user: contact.password_hash.is_some(),
            email_undeliverable: contact.email_undeliverable.as_ref().map(UndeliverableView::of),
        }
    }
}

/// A redemption with the contact who redeemed (their details are null once that contact is gone).
#[derive(Serialize)]
struct RedemptionView<'a> {
    contact_id: &'a str,
    email: Option<&'a str>,
    first_name: Option<&'a str>,
    last_name: Option<&'a str>,
    redeemed_at: String,
    source_ip: &'a str,
}

/// Who created an invitation (the email is null once that contact is gone).
#[derive(Serialize)]
struct CreatorView<'a> {
    contact_id: &'a str,
    email: Option<&'a str>,
}

#[derive(Serialize)]
pub(super) struct InvitationView<'a> {
    invitation_id: &'a str,
    contact_id: &'a str,
    email: &'a str,
    first_name: &'a str,
    last_name: &'a str,
    #[serde(rename = "type")]
    kind: InvitationType,
    status: InvitationStatus,
    expires_at: String,
    max_redemptions: u32,
    redemptions: u32,
    roles: &'a [String],
    account_id: Option<&'a str>,
    redirect_path: Option<&'a str>,
    delivery: Delivery,
    delivery_error: Option<&'a str>,
    created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    created_by: Option<CreatorView<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    redeemed_by: Option<Vec<RedemptionView<'a>>>,
    /// A group invitation's per-contact deliveries.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) deliveries: Option<Vec<crate::web::pages::DeliveryRow>>,
}

impl<'a> InvitationView<'a> {
    /// The invitation with its creator, whose contact (if known) is among `people`.
    pub(super) fn with_creator(
        invitation: &'a Invitation,
        now: Timestamp,
        people: &'a HashMap<ContactId, Contact>,
    ) -> Self {
        let creator = people.get(&invitation.created_by);
        InvitationView {
            created_by: Some(CreatorView {
                contact_id: &invitation.created_by,
                email: creator.map(|c| c.email.as_str()),
            }),
            ..InvitationView::of(invitation, now, None)
        }
    }

    /// The invitation with its creator and its redeemers (among `people` when still known).
    pub(super) fn with_people(
        invitation: &'a Invitation,
        now: Timestamp,
        redemptions: &'a [Redemption],
        people: &'a HashMap<ContactId, Contact>,
    ) -> Self {
        InvitationView {
            redeemed_by: Some(
                redemptions
                    .iter()
                    .map(|r| {
                        let person = people.get(&r.contact_id);
                        RedemptionView {
                            contact_id: &r.contact_id,
                            email: person.map(|p| p.email.as_str()),
                            first_name: person.map(|p| p.first_name.as_str()),
                            last_name: person.map(|p| p.last_name.as_str()),
                            redeemed_at: rfc3339(r.redeemed_at),
                            source_ip: &r.source_ip,
                        }
                    })
                    .collect(),
            ),
            ..InvitationView::with_creator(invitation, now, people)
        }
    }

    pub(super) fn of(invitation: &'a Invitation, now: Timestamp, redemptions: Option<&'a [Redemption]>) -> Self {
        InvitationView {
            invitation_id: &invitation.invitation_id,
            contact_id: &invitation.contact_id,
            email: &invitation.email,
            first_name: &invitation.first_name,
            last_name: &invitation.last_name,
            kind: invitation.kind,
            status: invitation.status(now),
            expires_at: rfc3339(invitation.expires_at),
            max_redemptions: invitation.max_redemptions,
            redemptions: invitation.redemptions,
            roles: &invitation.roles,
            account_id: invitation.account_id.as_deref(),
            redirect_path: invitation.redirect_path.as_deref(),
            delivery: invitation.delivery,
            delivery_error: invitation.delivery_error.as_deref(),
            created_at: rfc3339(invitation.created_at),
            created_by: None,
            deliveries: None,
            redeemed_by: redemptions.map(|all| {
                all.iter()
                    .map(|r| RedemptionView {
                        contact_id: &r.contact_id,
                        email: None,
                        first_name: None,
                        last_name: None,
                        redeemed_at: rfc3339(r.redeemed_at),
                        source_ip: &r.source_ip,
                    })
                    .collect()
            }),
        }
    }
}

pub(super) fn invitation_row(invitation: &Invitation, now: Timestamp) -> InvitationRow {
    InvitationRow {
        invitation_id: invitation.invitation_id.clone(),
        kind: format!("{:?}", invitation.kind).to_lowercase(),
        status: format!("{:?}", invitation.status(now)).to_lowercase(),
        delivery: format!("{:?}", invitation.delivery).to_lowercase(),
        delivery_error: invitation.delivery_error.clone(),
        redemptions: format!("{} of {}", invitation.redemptions, invitation.max_redemptions),
        expires: human(invitation.expires_at),
        roles: invitation.roles.join(", "),
    }
}

/// The `roles` field (a JSON list, or comma-separated in a form): each a role name, once.
pub(super) fn roles_field(fields: &mut crate::web::Fields) -> Vec<String> {
    let mut roles: Vec<String> = Vec::new();
    for raw in fields.optional_list("roles") {
        if let Some(role) = fields.check("roles", crate::domain::text::parse_role(&raw))
            && !roles.contains(&role)
        {
            roles.push(role);
        }
    }
    roles
}
