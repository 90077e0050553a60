//! Staff administer accounts: `GET /admin/contacts/{id}` (the account: state, factors, latest
//! audit entries), `POST /admin/contacts/{id}/{action}` and `GET /admin/audit`. Who may see and
//! do what is `usecases::staff`'s to decide; these handlers read the request and shape the answer.

use axum::Router;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde::Serialize;
use std::collections::BTreeMap;

use super::admin_views::{ContactView, roles_field};
use crate::config::Settings;
use crate::domain::audit::{AuditEntry, SourceAddress};
use crate::domain::contact::Contact;
use crate::domain::ids::ContactId;
use crate::domain::listing::Position;
use crate::domain::text::parse_name;
use crate::domain::time::{human, rfc3339};
use crate::usecases::lists;
use crate::usecases::staff::{self, AccountOverview, Staff, StaffAction};
use crate::web::extract::PathParam;
use crate::web::pages::{ActionButton, AdminAccountPage, AdminAuditPage, AuditRow, ViewerSummary};
use crate::web::{AppState, Fields, Form, Page, PortalError, Reply, StaffMember, Submission};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/contacts/{id}", get(account))
        .route("/admin/contacts/{id}/{action}", post(act))
        .route("/admin/audit", get(audit))
}

/// An audit entry as JSON: every field present (null where it has none).
#[derive(Serialize)]
struct AuditEntryView<'a> {
    entry_id: &'a str,
    at: String,
    kind: &'a str,
    actor_id: Option<&'a str>,
    contact_id: Option<&'a str>,
    ip: &'a str,
    detail: &'a BTreeMap<String, String>,
}

impl<'a> AuditEntryView<'a> {
    fn of(entry: &'a AuditEntry) -> Self {
        AuditEntryView {
            entry_id: &entry.entry_id,
            at: rfc3339(entry.at),
            kind: &entry.kind,
            actor_id: entry.actor_id.as_ref().map(ContactId::as_str),
            contact_id: entry.contact_id.as_ref().map(ContactId::as_str),
            ip: &entry.ip,
            detail: &entry.detail,
        }
    }
}

#[derive(Serialize)]
struct TwoFactorView {
    totp: bool,
    email: bool,
    recovery_codes_left: usize,
}

/// The contact with the state of its account (and, on the account's page, its audit entries).
#[derive(Serialize)]
struct AccountView<'a> {
    #[serde(flatten)]
    contact: ContactView<'a>,
    login_enabled: bool,
    locked_until: Option<String>,
    two_factor: TwoFactorView,
    passkeys: usize,
    identities: Vec<String>,
    last_sign_in_at: Option<String>,
    deleted_at: Option<String>,
    audit: Vec<AuditEntryView<'a>>,
}

impl<'a> AccountView<'a> {
    fn of(overview: &'a AccountOverview, now: crate::domain::time::Timestamp) -> Self {
        let contact = &overview.contact;
        AccountView {
            contact: ContactView::of(contact),
            login_enabled: !contact.login_disabled,
            locked_until: contact.locked_until.filter(|until| *until > now).map(rfc3339),
            two_factor: TwoFactorView {
                totp: overview.two_factor.totp.is_some(),
                email: overview.two_factor.email,
                recovery_codes_left: overview.two_factor.recovery_codes.len(),
            },
            passkeys: overview.passkeys,
            identities: contact.identities.iter().map(|i| format!("{}:{}", i.provider, i.subject)).collect(),
            last_sign_in_at: overview.last_sign_in_at.map(rfc3339),
            deleted_at: contact.deleted_at.map(rfc3339),
            audit: overview.audit.iter().map(AuditEntryView::of).collect(),
        }
    }
}

fn audit_row(entry: &AuditEntry) -> AuditRow {
    let actor = match (&entry.actor_id, &entry.contact_id) {
        (Some(actor), Some(contact)) if actor == contact => "the person".to_string(),
        (Some(actor), _) => actor.to_string(),
        (None, _) => "nobody signed in".to_string(),
    };
    AuditRow {
        when: human(entry.at),
        kind: entry.kind.replace('_', " "),
        contact_id: entry.contact_id.as_ref().map(ContactId::to_string).unwrap_or_default(),
        actor,
        ip: entry.ip.clone(),
        detail: entry.detail.iter().map(|(k, v)| format!("{k}: {v}")).collect::<Vec<_>>().join(", "),
    }
}

/// The actions offered as buttons, as far as `staff` may take them on `contact`.
fn action_buttons(staff: &Staff, contact: &Contact) -> Vec<ActionButton> {
    let all = [
        (
            StaffAction::Disable,
            "Disable sign-in",
            "Every session ends now and no way in opens until sign-in is enabled again.",
            true,
        ),
        (StaffAction::Enable, "Enable sign-in", "The person can sign in again.", false),
        (StaffAction::Unlock, "Unlock", "The lockout and the failed attempts counted towards it are cleared.", false),
        (StaffAction::SignOutEverywhere, "Sign out everywhere", "Every session of this account ends now.", true),
        (
            StaffAction::ResetPassword { block_current_password: false },
            "Send a password reset",
            "A reset link goes to the account's address.",
            false,
        ),
        (
            StaffAction::ResetTwoFactor,
            "Reset two-factor",
            "Its second factors and passkeys are removed and every session ends; the person is told.",
            true,
        ),
        (
            StaffAction::Delete,
            "Delete the account",
            "The account is deleted for good: every session ends, its sign-in details, factors, passkeys and personal fields are erased, and its address is free again. The person is told.",
            true,
        ),
    ];
    if contact.deleted_at.is_some() {
        // A tombstone: nothing left to act on.
        return Vec::new();
    }
    all.into_iter()
        .filter(|(action, ..)| match action {
            StaffAction::Disable => !contact.login_disabled,
            StaffAction::Enable => contact.login_disabled,
            _ => true,
        })
        .filter(|(action, ..)| staff.is_administrator() || action.delegable())
        .map(|(action, label, warning, danger)| ActionButton { name: action.name(), label, warning, danger })
        .collect()
}

async fn account(
    StaffMember(viewer, staff): StaffMember,
    PathParam(id): PathParam<ContactId>,
    page: Page,
) -> Result<Reply, PortalError> {
    let portal = page.portal.clone();
    let overview = staff::overview(&portal, &staff, &id).await?;
    let now = portal.clock.now();
    let reply = Reply::json(StatusCode::OK, &AccountView::of(&overview, now));
    Ok(reply.or_page(move || {
        let contact = &overview.contact;
        let two_factor = &overview.two_factor;
        let factors: Vec<String> = [
            two_factor.totp.is_some().then(|| "authenticator app".to_string()),
            two_factor.email.then(|| "emailed codes".to_string()),
            (!two_factor.recovery_codes.is_empty())
                .then(|| format!("{} recovery codes left", two_factor.recovery_codes.len())),
        ]
        .into_iter()
        .flatten()
        .collect();
        page.render(
            StatusCode::OK,
            &AdminAccountPage {
                viewer: Some(ViewerSummary::of(&viewer.contact)),
                csrf_token: &page.csrf_token,
                contact_id: &contact.contact_id,
                name: format!("{} {}", contact.first_name, contact.last_name),
                email: contact.email.as_str(),
                email_undeliverable: contact
                    .email_undeliverable
                    .as_ref()
                    .map(|mark| format!("{} ({}; {})", mark.reason.describe(), mark.detail, human(mark.at)))
                    .unwrap_or_default(),
                login_enabled: !contact.login_disabled,
                deleted: contact.deleted_at.is_some(),
                locked_until: contact.locked_until.filter(|until| *until > now).map(human).unwrap_or_default(),
                has_password: contact.password_hash.is_some(),
                factors: factors.join(", "),
                passkeys: overview.passkeys,
                last_sign_in: overview.last_sign_in_at.map(human).unwrap_or_default(),
                roles: contact.roles.join(", "),
                account_id: contact.account_id.as_deref().unwrap_or(""),
                actions: action_buttons(&staff, contact),
                can_edit_roles: staff.is_administrator(),
                is_administrator: staff.is_administrator(),
                entries: overview.audit.iter().map(audit_row).collect(),
            },
        )
    }))
}

/// The fields any action may carry; which ones count depends on the action.
struct ActionFields {
    block_current_password: bool,
    roles: Vec<String>,
    account_id: Option<String>,
}

impl Form for ActionFields {
    type Context = ();

    fn parse(fields: &mut Fields, _: &Settings) -> Result<Self, PortalError> {
        let block_current_password = fields.flag("block_current_password");
        let roles = roles_field(fields);
        let account_id = fields.optional_parsed("account_id", parse_name);
        fields.done(|| Some(ActionFields { block_current_password, roles, account_id }))
    }
}

fn action_named(name: &str, fields: &ActionFields) -> Result<StaffAction, PortalError> {
    Ok(match name {
        "disable" => StaffAction::Disable,
        "enable" => StaffAction::Enable,
        "unlock" => StaffAction::Unlock,
        "sign-out-everywhere" => StaffAction::SignOutEverywhere,
        "reset-password" => StaffAction::ResetPassword { block_current_password: fields.block_current_password },
        "reset-two-factor" => StaffAction::ResetTwoFactor,
        "roles" => StaffAction::Roles { roles: fields.roles.clone(), account_id: fields.account_id.clone() },
        "delete" => StaffAction::Delete,
        _ => return Err(PortalError::NotFound),
    })
}

async fn act(
    StaffMember(_, staff): StaffMember,
    source: SourceAddress,
    Path((id, action)): Path<(String, String)>,
    form: Submission<ActionFields>,
) -> Result<Reply, PortalError> {
    let portal = form.page.portal.clone();
    let action = action_named(&action, &form.input)?;
    let id = ContactId::from(id);
    let name = action.name();
    staff::act(&portal, &staff, &id, action, &source).await?;
    let back = format!("/admin/contacts/{id}");
    let reply = match name {
        "sign-out-everywhere" => Reply::no_content(),
        _ => {
            let overview = staff::overview(&portal, &staff, &id).await?;
            let status = if name == "reset-password" { StatusCode::ACCEPTED } else { StatusCode::OK };
            // The contact as its page answers it (the contract's "as above"), read after the write.
            Reply::json(status, &AccountView::of(&overview, portal.clock.now()))
        }
    };
    Ok(reply.or_see_other(back))
}

#[derive(Serialize)]
struct AuditPageView<'a> {
    entries: Vec<AuditEntryView<'a>>,
    next_cursor: Option<String>,
}

async fn audit(StaffMember(viewer, staff): StaffMember, page: Page) -> Result<Reply, PortalError> {
    let portal = page.portal.clone();
    let (contact_id, actor_id, kind) = (page.query("contact_id"), page.query("actor_id"), page.query("kind"));
    let query = lists::audit_query(contact_id.as_deref(), actor_id.as_deref(), kind.as_deref())?;
    let request = lists::page_request(page.query("limit").as_deref(), page.query("cursor").as_deref())?;
    let found = staff::audit_trail(&portal, &staff, &query, &request).await?;
    let view = AuditPageView {
        entries: found.items.iter().map(AuditEntryView::of).collect(),
        next_cursor: found.next.as_ref().map(Position::encode),
    };
    let reply = Reply::json(StatusCode::OK, &view);
    Ok(reply.or_page(move || {
        let text = |id: &Option<ContactId>| id.as_ref().map(ContactId::to_string).unwrap_or_default();
        let (contact_id, actor_id) = (text(&query.contact_id), text(&query.actor_id));
        let kind = query.kind.clone().unwrap_or_default();
        let next_page = found.next.as_ref().map(|next| {
            let query = serde_urlencoded::to_string([
                ("contact_id", contact_id.as_str()),
                ("actor_id", actor_id.as_str()),
                ("kind", kind.as_str()),
                ("cursor", &next.encode()),
            ]);
            format!("/admin/audit?{}", query.unwrap_or_default())
        });
        page.render(
            StatusCode::OK,
            &AdminAuditPage {
                viewer: Some(ViewerSummary::of(&viewer.contact)),
                csrf_token: &page.csrf_token,
                contact_id: &contact_id,
                actor_id: &actor_id,
                kind: &kind,
                entries: found.items.iter().map(audit_row).collect(),
                next_page,
            },
        )
    }))
}
