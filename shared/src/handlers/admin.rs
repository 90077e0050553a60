//! The create-invitation function: the administrators' routes. `GET, POST /admin/contacts`,
//! `POST /admin/invitations`, `GET /admin/invitations/{id}`, `POST /admin/invitations/{id}/resend`
//! and `.../revoke`. Only contacts with the `Administrators` web role get past [`Admin`].

use axum::Router;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use serde::Serialize;

use super::admin_views::{ContactView, InvitationView, invitation_row, roles_field};
use crate::Portal;
use crate::config::Settings;
use crate::domain::audit::SourceAddress;
use crate::domain::contact::Contact;
use crate::domain::email::Email;
use crate::domain::idempotency::{IdempotencyKey, IdempotentStart};
use crate::domain::ids::{ContactId, InvitationId};
use crate::domain::invitation::{Invitation, InvitationType};
use crate::domain::listing::{Paged, Position};
use crate::domain::text::{parse_name, parse_phone};
use crate::domain::time::human;
use crate::usecases::invite::{self, ContactDetails, InvitationRequest, Invitee};
use crate::usecases::lists::{self, InvitationDetail};
use crate::usecases::staff::{self, Staff};
use crate::web::extract::{InvitationsEnabled, NoFields, PathParam};
use crate::web::pages::{AdminContactsPage, AdminInvitationPage, ContactRow, FormErrors, RedemptionRow, ViewerSummary};
use crate::web::response::is_same_site_path;
use crate::web::{
    Admin, AppState, Fields, Form, HttpFunction, Page, PortalError, Rejection, Reply, StaffMember, Submission,
};
use std::collections::HashMap;

pub struct CreateInvitation;

impl HttpFunction for CreateInvitation {
    fn routes(&self) -> Router<AppState> {
        Router::new()
            .route("/admin/contacts", get(contacts).post(create_contact))
            .route("/admin/invitations", get(super::admin_lists::list_invitations).post(create_invitation))
            .route("/admin/invitations/{id}", get(show_invitation))
            .route("/admin/invitations/{id}/resend", post(resend))
            .route("/admin/invitations/{id}/revoke", post(revoke))
            .merge(super::imports::routes())
            .merge(super::staff::routes())
            .merge(super::site_settings::routes())
    }
}

/// The contacts page's data: the contacts matching the search, and the selected one's invitations.
struct Listing {
    admin: Contact,
    query: String,
    contacts: Vec<Contact>,
    /// Where the next page of contacts starts.
    next: Option<Position>,
    selected: Option<Contact>,
    invitations: Vec<Invitation>,
}

impl Listing {
    /// The page as `staff` see it: an account administrator only the contacts of their account
    /// (a page the filter thinned keeps its cursor).
    async fn load(portal: &Portal, admin: Contact, staff: &Staff, page: &Page) -> Result<Listing, PortalError> {
        let query = page.query("q").unwrap_or_default();
        let request = lists::page_request(page.query("limit").as_deref(), page.query("cursor").as_deref())?;
        let Paged { items: mut contacts, next } = lists::contacts(portal, &query, &request).await?;
        contacts.retain(|contact| staff.reaches(contact));
        let selected = match page.query("contact_id") {
            Some(id) => portal.contacts.get(&ContactId::from(id)).await?.filter(|contact| staff.reaches(contact)),
            None => None,
        };
        let invitations = match &selected {
            Some(contact) if portal.settings.invitations_enabled => {
                portal.invitations.list_for_contact(&contact.contact_id).await?
            }
            _ => Vec::new(),
        };
        Ok(Listing { admin, query, contacts, next, selected, invitations })
    }

    fn render(&self, page: &Page, errors: FormErrors) -> Response {
        let now = page.portal.clock.now();
        let settings = page.settings();
        page.render(
            StatusCode::OK,
            &AdminContactsPage {
                viewer: Some(ViewerSummary::of(&self.admin)),
                csrf_token: &page.csrf_token,
                query: &self.query,
                contacts: self.contacts.iter().map(ContactRow::of).collect(),
                selected: self.selected.as_ref().map(ContactRow::of),
                invitations: self.invitations.iter().map(|i| invitation_row(i, now)).collect(),
                invitations_enabled: settings.invitations_enabled,
                default_expiry_days: settings.invitation_expiry_days,
                errors,
                next_page: self.next.as_ref().map(|next| {
                    let query = serde_urlencoded::to_string([("q", self.query.as_str()), ("cursor", &next.encode())]);
                    format!("/admin/contacts?{}", query.unwrap_or_default())
                }),
            },
        )
    }

    /// The page's data for showing a refused form again (none without an administrator).
    async fn for_form(parts: &mut Parts, state: &AppState) -> Option<Listing> {
        let StaffMember(viewer, staff) = StaffMember::from_request_parts(parts, state).await.ok()?;
        let page = Page::from_request_parts(parts, state).await.ok()?;
        Listing::load(state, viewer.contact, &staff, &page).await.ok()
    }
}

#[derive(Serialize)]
struct ListingView<'a> {
    contacts: Vec<ContactView<'a>>,
    next_cursor: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    invitations: Option<Vec<InvitationView<'a>>>,
}

async fn contacts(StaffMember(viewer, staff): StaffMember, page: Page) -> Result<Reply, PortalError> {
    let listing = Listing::load(&page.portal, viewer.contact, &staff, &page).await?;
    let now = page.portal.clock.now();
    let view = ListingView {
        contacts: listing.contacts.iter().map(ContactView::of).collect(),
        next_cursor: listing.next.as_ref().map(Position::encode),
        invitations: listing
            .selected
            .as_ref()
            .map(|_| listing.invitations.iter().map(|i| InvitationView::of(i, now, None)).collect()),
    };
    let reply = Reply::json(StatusCode::OK, &view);
    Ok(reply.or_page(move || listing.render(&page, FormErrors::default())))
}

/// Loads the contacts page's data before a rejection that shows it again.
async fn reject_on_contacts_page<T: Form<Context = Option<Listing>>>(
    form: &mut Submission<T>,
    admin: Contact,
    staff: &Staff,
    error: PortalError,
) -> Rejection {
    let listing = match error.is_client_fault() {
        true => Listing::load(&form.page.portal, admin, staff, &form.page).await.ok(),
        false => None,
    };
    form.reject_with(error, &listing)
}

/// The input of a form on the contacts page.
trait ContactsPageInput: Sized + Send {
    fn parse(fields: &mut Fields) -> Result<Self, PortalError>;
}

/// A form on the contacts page: refused, it shows that page again with the problems.
struct OnContactsPage<T>(T);

impl<T: ContactsPageInput> Form for OnContactsPage<T> {
    type Context = Option<Listing>;

    fn context(parts: &mut Parts, state: &AppState) -> impl Future<Output = Option<Listing>> + Send {
        Listing::for_form(parts, state)
    }

    fn parse(fields: &mut Fields, _: &Settings) -> Result<Self, PortalError> {
        T::parse(fields).map(OnContactsPage)
    }

    fn page(page: &Page, _: &mut Fields, listing: &Option<Listing>, errors: FormErrors) -> Option<Response> {
        listing.as_ref().map(|listing| listing.render(page, errors))
    }
}

impl ContactsPageInput for ContactDetails {
    fn parse(fields: &mut Fields) -> Result<Self, PortalError> {
        let email = fields.required_parsed("email", Email::parse);
        let first_name = fields.required_parsed("first_name", parse_name);
        let last_name = fields.required_parsed("last_name", parse_name);
        let phone = fields.optional_parsed("phone", parse_phone);
        fields.done(|| Some(ContactDetails { email: email?, first_name: first_name?, last_name: last_name?, phone }))
    }
}

async fn create_contact(
    Admin(admin): Admin,
    source: SourceAddress,
    mut form: Submission<OnContactsPage<ContactDetails>>,
) -> Result<Reply, Rejection> {
    let portal = form.page.portal.clone();
    match invite::create_contact(&portal, &source, &admin.contact, form.0.clone()).await {
        Ok(contact) => Ok(Reply::json(StatusCode::CREATED, &ContactView::of(&contact))
            .or_see_other(format!("/admin/contacts?contact_id={}", contact.contact_id))),
        Err(err) => Err(reject_on_contacts_page(&mut form, admin.contact, &Staff::operator(), err).await),
    }
}

fn parse_redirect(raw: &str) -> Result<String, &'static str> {
    let path = raw.trim();
    if path.len() > 512 || !is_same_site_path(path) {
        return Err("must be a path on this site, starting with /");
    }
    Ok(path.to_string())
}

impl ContactsPageInput for InvitationRequest {
    fn parse(fields: &mut Fields) -> Result<Self, PortalError> {
        let kind = match fields.text("type").as_deref().map(str::trim) {
            None | Some("") | Some("single") => Some(InvitationType::Single),
            Some("group") => Some(InvitationType::Group),
            Some(_) => fields.reject("type", "must be \"single\" or \"group\""),
        };
        let max_redemptions = fields.optional_integer("max_redemptions", 1..=10_000);
        let max_redemptions = match (kind, max_redemptions) {
            (Some(InvitationType::Single), Some(n)) if n != 1 => {
                fields.reject("max_redemptions", "must be 1 for a single invitation")
            }
            (Some(InvitationType::Single), _) => Some(1),
            // A group invitation to listed contacts lets each of them redeem by default.
            (Some(InvitationType::Group), n) => {
                let listed = fields.values_of("contact_ids").map_or(0, |ids| ids.len());
                Some(n.map_or_else(|| listed.max(10) as u32, |n| n as u32))
            }
            (None, _) => None,
        };
        let expires_in_days = fields.optional_integer("expires_in_days", 1..=365).map(|d| d as u32);
        let roles = roles_field(fields);
        let account_id = fields.optional_parsed("account_id", parse_name);
        let redirect_path = fields.optional_parsed("redirect_path", parse_redirect);
        let contacts_sent = fields.values_of("contact_ids").is_some();
        let group_contacts = parse_contact_ids(fields, kind);
        let invitee = match fields.text("contact_id").filter(|t| !t.trim().is_empty()) {
            _ if contacts_sent => group_contacts,
            Some(id) => Some(Invitee::ContactId(id.trim().into())),
            None => {
                let email = fields.required_parsed("email", Email::parse);
                let first_name = fields.required_parsed("first_name", parse_name);
                let last_name = fields.required_parsed("last_name", parse_name);
                (|| Some(Invitee::Email { email: email?, first_name: first_name?, last_name: last_name? }))()
            }
        };
        fields.done(|| {
            Some(InvitationRequest {
                invitee: invitee?,
                kind: kind?,
                max_redemptions: max_redemptions?,
                expires_in_days,
                roles,
                account_id,
                redirect_path,
            })
        })
    }
}

/// `contact_ids` of a group invitation (`None` when not sent, or not usable: the problem is
/// recorded on `contact_ids`): 1 to 100 distinct contact ids, with neither `contact_id` nor
/// `email`, and only with type `group`.
fn parse_contact_ids(fields: &mut Fields, kind: Option<InvitationType>) -> Option<Invitee> {
    use crate::domain::group::MAX_GROUP_CONTACTS;
    let ids = fields.values_of("contact_ids")?;
    let named_one =
        ["contact_id", "email"].iter().any(|name| fields.text(name).is_some_and(|sent| !sent.trim().is_empty()));
    if named_one {
        return fields.reject("contact_ids", "cannot be used with contact_id or email");
    }
    if kind == Some(InvitationType::Single) {
        return fields.reject("contact_ids", "is only for a group invitation (type \"group\")");
    }
    if ids.is_empty() || ids.len() > MAX_GROUP_CONTACTS {
        return fields.reject("contact_ids", format!("must list from 1 to {MAX_GROUP_CONTACTS} contacts"));
    }
    let mut distinct: Vec<ContactId> = Vec::with_capacity(ids.len());
    for id in ids {
        // Contact ids are UUIDs; anything else names no contact.
        if id.len() > 64 || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return fields.reject("contact_ids", format!("{id:?} is not a contact id"));
        }
        let id = ContactId::from(id.as_str());
        if distinct.contains(&id) {
            return fields.reject("contact_ids", format!("lists {id} twice"));
        }
        distinct.push(id);
    }
    Some(Invitee::Contacts(distinct))
}

/// A group invitation's per-contact deliveries as shown.
fn delivery_rows(deliveries: &crate::domain::group::Deliveries) -> Vec<crate::web::pages::DeliveryRow> {
    deliveries
        .iter()
        .map(|(contact_id, d)| crate::web::pages::DeliveryRow {
            contact_id: contact_id.to_string(),
            email: d.email.clone(),
            status: format!("{:?}", d.status).to_lowercase(),
        })
        .collect()
}

async fn create_invitation(
    _: InvitationsEnabled,
    StaffMember(admin, staff): StaffMember,
    source: SourceAddress,
    headers: HeaderMap,
    mut form: Submission<OnContactsPage<InvitationRequest>>,
) -> Result<Reply, Rejection> {
    let portal = form.page.portal.clone();
    let key = match idempotency_key(&headers, "POST /admin/invitations", &admin.contact, &form.sent) {
        Ok(key) => key,
        Err(err) => return Err(form.reject(err)),
    };
    if let Some(key) = &key {
        match portal.invitations.begin_idempotent(key, portal.clock.now()).await {
            Ok(IdempotentStart::First) => {}
            Ok(IdempotentStart::Answered { status, body }) => return Ok(replay(status, &body)),
            Ok(IdempotentStart::Running) => {
                return Err(form.reject(PortalError::IdempotencyConflict { still_running: true }));
            }
            Ok(IdempotentStart::Mismatch) => {
                return Err(form.reject(PortalError::IdempotencyConflict { still_running: false }));
            }
            Err(err) => return Err(form.reject(err.into())),
        }
    }
    let mut request = form.0.clone();
    let invited = match staff::scope_invitation(&portal, &staff, &mut request).await {
        Ok(()) => invite::invite(&portal, &source, &admin.contact, request).await,
        Err(err) => Err(err),
    };
    match invited {
        Ok(invitation) => {
            let now = portal.clock.now();
            let creator = HashMap::from([(admin.contact.contact_id.clone(), admin.contact.clone())]);
            let view = InvitationView::with_creator(&invitation, now, &creator);
            if let Some(key) = &key {
                let body = serde_json::to_string(&view).unwrap_or_default();
                if let Err(err) =
                    portal.invitations.finish_idempotent(key, StatusCode::CREATED.as_u16(), &body, now).await
                {
                    // The invitation exists; its retries get 409 until the key's request counts
                    // as dead (a minute), then run again. Logged for the operators.
                    tracing::error!(error = format!("{err:#}"), "keeping the idempotent answer failed");
                }
            }
            Ok(Reply::json(StatusCode::CREATED, &view)
                .or_see_other(format!("/admin/invitations/{}", invitation.invitation_id)))
        }
        Err(err) => {
            if let Some(key) = &key
                && let Err(abandon) = portal.invitations.abandon_idempotent(key).await
            {
                tracing::warn!(error = format!("{abandon:#}"), "letting go of an idempotency key failed");
            }
            Err(reject_on_contacts_page(&mut form, admin.contact, &staff, err).await)
        }
    }
}

/// The request's `Idempotency-Key`, if it sent one, scoped to the route and the caller, with the
/// digest of the fields it sent.
fn idempotency_key(
    headers: &HeaderMap,
    route: &str,
    caller: &Contact,
    sent: &Fields,
) -> Result<Option<IdempotencyKey>, PortalError> {
    let Some(value) = headers.get("idempotency-key") else { return Ok(None) };
    let key = value.to_str().ok().and_then(|key| IdempotencyKey::new(route, &caller.contact_id, key, sent.digest()));
    match key {
        Some(key) => Ok(Some(key)),
        None => Err(PortalError::validation("The Idempotency-Key header must be 1 to 255 visible ASCII characters.")),
    }
}

/// The first answer to a request with the same key and body, given again.
fn replay(status: u16, body: &str) -> Reply {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    let body: serde_json::Value = serde_json::from_str(body).unwrap_or(serde_json::Value::Null);
    Reply::json(status, &body)
}

async fn show_invitation(
    _: InvitationsEnabled,
    StaffMember(admin, staff): StaffMember,
    PathParam(id): PathParam<InvitationId>,
    page: Page,
) -> Result<Reply, PortalError> {
    let portal = page.portal.clone();
    staff::reachable_invitation(&portal, &staff, &id).await?;
    let InvitationDetail { invitation, redemptions, people } = lists::invitation_detail(&portal, &id).await?;
    let now = portal.clock.now();
    let deliveries = delivery_rows(&portal.invitations.deliveries(&id).await?);
    let mut view = InvitationView::with_people(&invitation, now, &redemptions, &people);
    if !deliveries.is_empty() {
        view.deliveries = Some(deliveries.clone());
    }
    let reply = Reply::json(StatusCode::OK, &view);
    Ok(reply.or_page(move || {
        let creator = people.get(&invitation.created_by);
        page.render(
            StatusCode::OK,
            &AdminInvitationPage {
                viewer: Some(ViewerSummary::of(&admin.contact)),
                csrf_token: &page.csrf_token,
                invitation: invitation_row(&invitation, now),
                contact_id: &invitation.contact_id,
                recipient: format!("{} <{}>", invitation.invitee_name(), invitation.email),
                account_id: invitation.account_id.as_deref().unwrap_or(""),
                redirect_path: invitation.redirect_path.as_deref().unwrap_or(""),
                redemptions: redemptions
                    .iter()
                    .map(|r| {
                        let person = people.get(&r.contact_id);
                        RedemptionRow {
                            contact_id: r.contact_id.to_string(),
                            name: person.map_or_else(
                                || r.contact_id.to_string(),
                                |p| format!("{} {}", p.first_name, p.last_name),
                            ),
                            email: person.map_or_else(String::new, |p| p.email.to_string()),
                            when: human(r.redeemed_at),
                            source_ip: r.source_ip.clone(),
                        }
                    })
                    .collect(),
                deliveries,
                can_resend: invitation.is_redeemable(now),
                can_revoke: !invitation.revoked,
                created: human(invitation.created_at),
                created_by_id: invitation.created_by.to_string(),
                created_by_email: creator.map_or_else(|| "unknown".to_string(), |c| c.email.to_string()),
            },
        )
    }))
}

/// The invitation as it now stands; browsers go back to its page.
fn changed(portal: &Portal, invitation: &Invitation) -> Reply {
    let now = portal.clock.now();
    Reply::json(StatusCode::OK, &InvitationView::of(invitation, now, None))
        .or_see_other(format!("/admin/invitations/{}", invitation.invitation_id))
}

async fn resend(
    _: InvitationsEnabled,
    StaffMember(admin, staff): StaffMember,
    source: SourceAddress,
    PathParam(id): PathParam<InvitationId>,
    form: Submission<NoFields>,
) -> Result<Reply, PortalError> {
    let portal = &form.page.portal;
    staff::reachable_invitation(portal, &staff, &id).await?;
    let invitation = invite::resend(portal, &source, &admin.contact, &id).await?;
    Ok(changed(portal, &invitation))
}

async fn revoke(
    _: InvitationsEnabled,
    StaffMember(admin, staff): StaffMember,
    source: SourceAddress,
    PathParam(id): PathParam<InvitationId>,
    form: Submission<NoFields>,
) -> Result<Reply, PortalError> {
    let portal = &form.page.portal;
    staff::reachable_invitation(portal, &staff, &id).await?;
    let invitation = invite::revoke(portal, &source, &admin.contact, &id).await?;
    Ok(changed(portal, &invitation))
}
