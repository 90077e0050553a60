//! `GET /admin/invitations`: every invitation, newest first, filtered by status, delivery and
//! contact, paged with an opaque cursor (JSON and the administrators' page).

use axum::http::StatusCode;
use serde::Serialize;

use super::admin_views::{InvitationView, invitation_row};
use crate::domain::listing::Position;
use crate::usecases::lists;
use crate::web::extract::InvitationsEnabled;
use crate::web::pages::{AdminInvitationsPage, FilterOption, InvitationListRow, ViewerSummary};
use crate::web::{Page, PortalError, Reply, StaffMember};

#[derive(Serialize)]
struct InvitationsView<'a> {
    invitations: Vec<InvitationView<'a>>,
    next_cursor: Option<String>,
}

pub(super) async fn list_invitations(
    _: InvitationsEnabled,
    StaffMember(admin, staff): StaffMember,
    page: Page,
) -> Result<Reply, PortalError> {
    let (status, delivery, contact_id) = (page.query("status"), page.query("delivery"), page.query("contact_id"));
    let filter = lists::invitation_filter(status.as_deref(), delivery.as_deref(), contact_id.as_deref())?;
    let request = lists::page_request(page.query("limit").as_deref(), page.query("cursor").as_deref())?;
    let portal = page.portal.clone();
    let mut found = lists::invitations(&portal, &filter, &request).await?;
    // An account administrator's page keeps their account's invitations (and its cursor).
    found.items.retain(|invitation| staff.reaches_invitation(invitation));
    let people = lists::people(&portal, found.items.iter().map(|i| i.created_by.clone())).await?;
    let now = portal.clock.now();
    let view = InvitationsView {
        invitations: found.items.iter().map(|i| InvitationView::with_creator(i, now, &people)).collect(),
        next_cursor: found.next.as_ref().map(Position::encode),
    };
    let reply = Reply::json(StatusCode::OK, &view);
    Ok(reply.or_page(move || {
        let (status, delivery, contact_id) =
            (status.unwrap_or_default(), delivery.unwrap_or_default(), contact_id.unwrap_or_default());
        let next_page = found.next.as_ref().map(|next| {
            let cursor = next.encode();
            let query =
                [("status", &status), ("delivery", &delivery), ("contact_id", &contact_id), ("cursor", &cursor)];
            let query: Vec<_> = query.into_iter().filter(|(_, value)| !value.is_empty()).collect();
            format!("/admin/invitations?{}", serde_urlencoded::to_string(query).unwrap_or_default())
        });
        let rows = found
            .items
            .iter()
            .map(|i| InvitationListRow {
                invitation: invitation_row(i, now),
                contact_id: i.contact_id.to_string(),
                invitee_name: i.invitee_name(),
                invitee_email: i.email.clone(),
                inviter_email: people.get(&i.created_by).map_or_else(|| "unknown".into(), |c| c.email.to_string()),
            })
            .collect();
        page.render(
            StatusCode::OK,
            &AdminInvitationsPage {
                viewer: Some(ViewerSummary::of(&admin.contact)),
                csrf_token: &page.csrf_token,
                rows,
                status_options: FilterOption::all(&["active", "redeemed", "expired", "revoked"], &status),
                delivery_options: FilterOption::all(&["pending", "sent", "failed"], &delivery),
                contact_id: &contact_id,
                next_page,
            },
        )
    }))
}
