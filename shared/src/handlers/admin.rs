//! The create-invitation function: the administrators' routes. `GET, POST /admin/contacts`,
//! `POST /admin/invitations`, `GET /admin/invitations/{id}`, `POST /admin/invitations/{id}/resend`
//! and `.../revoke`. Only contacts with the `Administrators` web role get past [`require_admin`].

use async_trait::async_trait;
use lambda_http::http::Method;
use serde::Serialize;

use super::{CsrfToken, Viewer, require_viewer};
use crate::app::Portal;
use crate::domain::ADMINISTRATORS_ROLE;
use crate::domain::contact::{Contact, Login, NewContact};
use crate::domain::email::Email;
use crate::domain::invitation::{Delivery, Invitation, InvitationCode, InvitationStatus, InvitationType, Redemption};
use crate::domain::outbox::{MailSecret, MessageKind, OutboxMessage};
use crate::domain::text::{parse_name, parse_phone};
use crate::domain::time::{human, rfc3339};
use crate::lambda::HttpFunction;
use crate::ports::CreateContactError;
use crate::web::pages::{
    self, AdminContactsPage, AdminInvitationPage, ContactRow, FormErrors, InvitationRow, ViewerSummary,
};
use crate::web::request::{query_param, source_ip};
use crate::web::response::{self, is_same_site_path};
use crate::web::{Client, Fields, HttpRequest, HttpResponse, PortalError, Submission};

pub struct CreateInvitation;

#[async_trait]
impl HttpFunction for CreateInvitation {
    async fn handle(&self, portal: &Portal, req: HttpRequest) -> HttpResponse {
        let path = req.uri().path().trim_matches('/').to_string();
        let segments: Vec<&str> = path.split('/').collect();
        let method = req.method().clone();
        if method == Method::GET {
            let client = Client::for_read(&req);
            let result = match segments.as_slice() {
                ["admin", "contacts"] => contacts_page(portal, &req, client, FormErrors::default(), 200).await,
                ["admin", "invitations", id] if portal.settings.invitations_enabled => {
                    show_invitation(portal, &req, client, id).await
                }
                _ => Err(PortalError::NotFound),
            };
            return result.unwrap_or_else(|err| response::error(&err, client));
        }
        if method != Method::POST {
            return response::error(&PortalError::NotFound, Client::for_read(&req));
        }
        let Submission { client, mut fields } = match Submission::read(&req, &portal.settings) {
            Ok(submission) => submission,
            Err(err) => return response::error(&err, Client::for_read(&req)),
        };
        let invitations = portal.settings.invitations_enabled;
        let result = match segments.as_slice() {
            ["admin", "contacts"] => create_contact(portal, &req, client, &mut fields).await,
            ["admin", "invitations"] if invitations => create_invitation(portal, &req, client, &mut fields).await,
            ["admin", "invitations", id, "resend"] if invitations => resend(portal, &req, client, id).await,
            ["admin", "invitations", id, "revoke"] if invitations => revoke(portal, &req, client, id).await,
            _ => Err(PortalError::NotFound),
        };
        match result {
            Ok(response) => response,
            // A browser's failed form on the contacts page shows the page again with the problems.
            Err(err)
                if client == Client::Browser
                    && matches!(err, PortalError::Validation { .. } | PortalError::EmailTaken) =>
            {
                err.log();
                let status = err.status();
                contacts_page(portal, &req, client, FormErrors::from_error(&err), status)
                    .await
                    .unwrap_or_else(|err| response::error(&err, client))
            }
            Err(err) => response::error(&err, client),
        }
    }
}

/// The signed-in administrator, `unauthenticated` without a session, `forbidden` without the role.
async fn require_admin(portal: &Portal, req: &HttpRequest) -> Result<Viewer, PortalError> {
    let viewer = require_viewer(portal, req).await?;
    if !viewer.contact.has_role(ADMINISTRATORS_ROLE) {
        return Err(PortalError::Forbidden("not an administrator"));
    }
    Ok(viewer)
}

/// An administrator's audit event: what was done to which contact or invitation, by whom, from where.
fn admin_audit(req: &HttpRequest, event: &'static str, subject: &str, admin: &Viewer) {
    tracing::info!(audit = event, subject, by = %admin.contact.contact_id, source_ip = %source_ip(req), "audit");
}

#[derive(Serialize)]
struct ContactView<'a> {
    contact_id: &'a str,
    email: &'a str,
    first_name: &'a str,
    last_name: &'a str,
    username: Option<&'a str>,
    roles: &'a [String],
    account_id: Option<&'a str>,
    email_confirmed: bool,
    portal_user: bool,
}

impl<'a> ContactView<'a> {
    fn of(contact: &'a Contact) -> Self {
        ContactView {
            contact_id: &contact.contact_id,
            email: &contact.email,
            first_name: &contact.first_name,
            last_name: &contact.last_name,
            username: contact.username.as_deref(),
            roles: &contact.roles,
            account_id: contact.account_id.as_deref(),
            email_confirmed: contact.email_confirmed,
            portal_user: contact.password_hash.is_some(),
        }
    }
}

#[derive(Serialize)]
struct RedemptionView<'a> {
    contact_id: &'a str,
    redeemed_at: String,
    source_ip: &'a str,
}

#[derive(Serialize)]
struct InvitationView<'a> {
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
    redeemed_by: Option<Vec<RedemptionView<'a>>>,
}

impl<'a> InvitationView<'a> {
    fn of(invitation: &'a Invitation, now: i64, redemptions: Option<&'a [Redemption]>) -> Self {
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
            redeemed_by: redemptions.map(|all| {
                all.iter()
                    .map(|r| RedemptionView {
                        contact_id: &r.contact_id,
                        redeemed_at: rfc3339(r.redeemed_at),
                        source_ip: &r.source_ip,
                    })
                    .collect()
            }),
        }
    }
}

fn invitation_row(invitation: &Invitation, now: i64) -> InvitationRow {
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

/// How many contacts the list shows at most, newest first (a search finds older ones).
const CONTACT_LIST_LIMIT: usize = 500;

async fn contacts_page(
    portal: &Portal,
    req: &HttpRequest,
    client: Client,
    errors: FormErrors,
    status: u16,
) -> Result<HttpResponse, PortalError> {
    let admin = require_admin(portal, req).await?;
    let query = query_param(req, "q").unwrap_or_default();
    let contacts = portal.contacts.search(&query, CONTACT_LIST_LIMIT).await?;
    let selected = match query_param(req, "contact_id") {
        Some(id) => portal.contacts.get(&id).await?,
        None => None,
    };
    let invitations = match &selected {
        Some(contact) if portal.settings.invitations_enabled => {
            portal.invitations.list_for_contact(&contact.contact_id).await?
        }
        _ => Vec::new(),
    };
    if client == Client::Api {
        #[derive(Serialize)]
        struct Listing<'a> {
            contacts: Vec<ContactView<'a>>,
            #[serde(skip_serializing_if = "Option::is_none")]
            invitations: Option<Vec<InvitationView<'a>>>,
        }
        let now = portal.clock.now();
        let listing = Listing {
            contacts: contacts.iter().map(ContactView::of).collect(),
            invitations: selected
                .as_ref()
                .map(|_| invitations.iter().map(|i| InvitationView::of(i, now, None)).collect()),
        };
        return Ok(response::json(200, &listing));
    }
    let now = portal.clock.now();
    let csrf = CsrfToken::for_page(portal, req);
    let page = AdminContactsPage {
        viewer: Some(ViewerSummary::of(&admin.contact)),
        csrf_token: &csrf.token,
        query: &query,
        contacts: contacts.iter().map(ContactRow::of).collect(),
        selected: selected.as_ref().map(ContactRow::of),
        invitations: invitations.iter().map(|i| invitation_row(i, now)).collect(),
        invitations_enabled: portal.settings.invitations_enabled,
        default_expiry_days: portal.settings.invitation_expiry_days,
        errors,
    };
    let html = pages::render(&page);
    Ok(csrf.apply(response::html(status, html)))
}

async fn create_contact(
    portal: &Portal,
    req: &HttpRequest,
    client: Client,
    fields: &mut Fields,
) -> Result<HttpResponse, PortalError> {
    let admin = require_admin(portal, req).await?;
    let email = fields.required_parsed("email", Email::parse);
    let first_name = fields.required_parsed("first_name", parse_name);
    let last_name = fields.required_parsed("last_name", parse_name);
    let phone = fields.optional_parsed("phone", parse_phone);
    fields.finish()?;
    let (Some(email), Some(first_name), Some(last_name)) = (email, first_name, last_name) else {
        return Err(PortalError::validation("Some fields need attention."));
    };
    let contact = Contact::new(
        NewContact { email, first_name, last_name, username: None, phone, roles: Vec::new(), password_hash: None },
        portal.clock.now(),
    );
    match portal.contacts.create(&contact).await {
        Ok(()) => {}
        Err(CreateContactError::EmailTaken) => return Err(PortalError::EmailTaken),
        Err(CreateContactError::UsernameTaken) => return Err(PortalError::field("username", "is already taken")),
        Err(CreateContactError::Store(err)) => return Err(err.into()),
    }
    admin_audit(req, "contact_created", &contact.contact_id, &admin);
    Ok(match client {
        Client::Api => response::json(201, &ContactView::of(&contact)),
        Client::Browser => response::see_other(&format!("/admin/contacts?contact_id={}", contact.contact_id)),
    })
}

/// An invitation request whose fields all parsed.
struct InvitationRequest {
    contact: Contact,
    kind: InvitationType,
    max_redemptions: u32,
    expires_in_days: u32,
    roles: Vec<String>,
    account_id: Option<String>,
    redirect_path: Option<String>,
}

fn parse_role(raw: &str) -> Result<String, String> {
    let role = parse_name(raw).map_err(|e| format!("role {raw:?} {e}"))?;
    if role.chars().count() > 64 {
        return Err(format!("role {raw:?} must be at most 64 characters"));
    }
    Ok(role)
}

fn parse_redirect(raw: &str) -> Result<String, &'static str> {
    let path = raw.trim();
    if path.len() > 512 || !is_same_site_path(path) {
        return Err("must be a path on this site, starting with /");
    }
    Ok(path.to_string())
}

/// The contact the invitation is for: by id, or by email (found, or created without credentials).
async fn invited_contact(portal: &Portal, fields: &mut Fields) -> Result<Option<Contact>, PortalError> {
    if let Some(contact_id) = fields.text("contact_id").filter(|t| !t.trim().is_empty()) {
        let found = portal.contacts.get(contact_id.trim()).await?;
        if found.is_none() {
            fields.reject::<()>("contact_id", "is not a contact");
        }
        return Ok(found);
    }
    let email = fields.required_parsed("email", Email::parse);
    let first_name = fields.required_parsed("first_name", parse_name);
    let last_name = fields.required_parsed("last_name", parse_name);
    let (Some(email), Some(first_name), Some(last_name)) = (email, first_name, last_name) else { return Ok(None) };
    let login = Login::Email(email.normalized().to_string());
    if let Some(existing) = portal.contacts.find_by_login(&login).await? {
        return Ok(Some(existing));
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
        portal.clock.now(),
    );
    match portal.contacts.create(&contact).await {
        Ok(()) => Ok(Some(contact)),
        // Created by someone else meanwhile: invite that one.
        Err(CreateContactError::EmailTaken) => Ok(portal.contacts.find_by_login(&login).await?),
        Err(CreateContactError::UsernameTaken) => Err(PortalError::field("email", "could not be used")),
        Err(CreateContactError::Store(err)) => Err(err.into()),
    }
}

async fn parse_invitation_request(portal: &Portal, fields: &mut Fields) -> Result<InvitationRequest, PortalError> {
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
        (Some(InvitationType::Group), n) => Some(n.unwrap_or(10) as u32),
        (None, _) => None,
    };
    let expires_in_days = fields
        .optional_integer("expires_in_days", 1..=365)
        .map(|d| d as u32)
        .unwrap_or(portal.settings.invitation_expiry_days);
    let roles: Vec<String> = fields
        .optional_list("roles")
        .iter()
        .filter_map(|raw| {
            let parsed = parse_role(raw);
            fields.check("roles", parsed)
        })
        .collect();
    let account_id = fields.optional_parsed("account_id", parse_name);
    let redirect_path = fields.optional_parsed("redirect_path", parse_redirect);
    let contact = invited_contact(portal, fields).await?;
    fields.finish()?;
    let (Some(contact), Some(kind), Some(max_redemptions)) = (contact, kind, max_redemptions) else {
        return Err(PortalError::validation("Some fields need attention."));
    };
    let mut unique_roles: Vec<String> = Vec::new();
    for role in roles {
        if !unique_roles.contains(&role) {
            unique_roles.push(role);
        }
    }
    Ok(InvitationRequest {
        contact,
        kind,
        max_redemptions,
        expires_in_days,
        roles: unique_roles,
        account_id,
        redirect_path,
    })
}

/// The email carrying `code` for `invitation`.
fn invitation_message(invitation: &Invitation, code: &InvitationCode, now: i64) -> OutboxMessage {
    let mut message = OutboxMessage::new(
        MessageKind::Invitation,
        &invitation.email,
        &invitation.first_name,
        Some(MailSecret::new(code.display())),
        now,
    );
    message.message_id = invitation.message_id.clone();
    message.invitation_id = Some(invitation.invitation_id.clone());
    message.valid_until = Some(invitation.expires_at);
    message
}

async fn create_invitation(
    portal: &Portal,
    req: &HttpRequest,
    client: Client,
    fields: &mut Fields,
) -> Result<HttpResponse, PortalError> {
    let admin = require_admin(portal, req).await?;
    let request = parse_invitation_request(portal, fields).await?;
    let now = portal.clock.now();
    let code = InvitationCode::generate();
    let invitation = Invitation {
        invitation_id: uuid::Uuid::new_v4().to_string(),
        code_digest: code.digest(),
        kind: request.kind,
        contact_id: request.contact.contact_id.clone(),
        email: request.contact.email.clone(),
        first_name: request.contact.first_name.clone(),
        last_name: request.contact.last_name.clone(),
        max_redemptions: request.max_redemptions,
        redemptions: 0,
        expires_at: now + i64::from(request.expires_in_days) * 86_400,
        revoked: false,
        roles: request.roles,
        account_id: request.account_id,
        redirect_path: request.redirect_path,
        created_at: now,
        created_by: admin.contact.contact_id.clone(),
        message_id: uuid::Uuid::new_v4().to_string(),
        delivery: Delivery::Pending,
        delivery_error: None,
        delivered_at: None,
    };
    portal.invitations.create(&invitation, &invitation_message(&invitation, &code, now)).await?;
    admin_audit(req, "invitation_created", &invitation.invitation_id, &admin);
    Ok(match client {
        Client::Api => response::json(201, &InvitationView::of(&invitation, now, None)),
        Client::Browser => response::see_other(&format!("/admin/invitations/{}", invitation.invitation_id)),
    })
}

/// Invitation ids are UUIDs: a longer path segment names nothing.
const MAX_INVITATION_ID: usize = 64;

async fn load_invitation(portal: &Portal, id: &str) -> Result<Invitation, PortalError> {
    if id.len() > MAX_INVITATION_ID {
        return Err(PortalError::NotFound);
    }
    portal.invitations.get(id).await?.ok_or(PortalError::NotFound)
}

async fn show_invitation(
    portal: &Portal,
    req: &HttpRequest,
    client: Client,
    id: &str,
) -> Result<HttpResponse, PortalError> {
    let admin = require_admin(portal, req).await?;
    let invitation = load_invitation(portal, id).await?;
    let redemptions = portal.invitations.redemptions(id).await?;
    let now = portal.clock.now();
    if client == Client::Api {
        return Ok(response::json(200, &InvitationView::of(&invitation, now, Some(&redemptions))));
    }
    let csrf = CsrfToken::for_page(portal, req);
    let page = AdminInvitationPage {
        viewer: Some(ViewerSummary::of(&admin.contact)),
        csrf_token: &csrf.token,
        invitation: invitation_row(&invitation, now),
        contact_id: &invitation.contact_id,
        recipient: format!("{} {} <{}>", invitation.first_name, invitation.last_name, invitation.email),
        account_id: invitation.account_id.as_deref().unwrap_or(""),
        redirect_path: invitation.redirect_path.as_deref().unwrap_or(""),
        redemptions: redemptions
            .iter()
            .map(|r| (r.contact_id.clone(), human(r.redeemed_at), r.source_ip.clone()))
            .collect(),
        can_resend: invitation.is_redeemable(now),
        can_revoke: !invitation.revoked,
    };
    let html = pages::render(&page);
    Ok(csrf.apply(response::html(200, html)))
}

async fn resend(portal: &Portal, req: &HttpRequest, client: Client, id: &str) -> Result<HttpResponse, PortalError> {
    let admin = require_admin(portal, req).await?;
    let invitation = load_invitation(portal, id).await?;
    let now = portal.clock.now();
    if !invitation.is_redeemable(now) {
        return Err(PortalError::validation("Only an active invitation can be resent; create a new one instead."));
    }
    let code = InvitationCode::generate();
    let mut updated = invitation.clone();
    updated.message_id = uuid::Uuid::new_v4().to_string();
    updated.code_digest = code.digest();
    updated.delivery = Delivery::Pending;
    updated.delivery_error = None;
    updated.delivered_at = None;
    let replaced = portal
        .invitations
        .replace_code(&invitation, &updated.code_digest, &invitation_message(&updated, &code, now))
        .await?;
    if !replaced {
        return Err(PortalError::validation(
            "The invitation changed meanwhile (revoked or resent); reload and try again.",
        ));
    }
    admin_audit(req, "invitation_resent", id, &admin);
    Ok(match client {
        Client::Api => response::json(200, &InvitationView::of(&updated, now, None)),
        Client::Browser => response::see_other(&format!("/admin/invitations/{id}")),
    })
}

async fn revoke(portal: &Portal, req: &HttpRequest, client: Client, id: &str) -> Result<HttpResponse, PortalError> {
    let admin = require_admin(portal, req).await?;
    if id.len() > MAX_INVITATION_ID {
        return Err(PortalError::NotFound);
    }
    let now = portal.clock.now();
    // One conditional write that returns the revoked invitation: no read before or after.
    let invitation = portal.invitations.revoke(id, now).await?.ok_or(PortalError::NotFound)?;
    admin_audit(req, "invitation_revoked", id, &admin);
    Ok(match client {
        Client::Api => response::json(200, &InvitationView::of(&invitation, now, None)),
        Client::Browser => response::see_other(&format!("/admin/invitations/{id}")),
    })
}
