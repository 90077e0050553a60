//! Server-rendered pages, compiled from `shared/templates/` by askama (escaped by default).

use crate::domain::ids::{ContactId, InvitationId};
use std::collections::BTreeMap;

use askama::Template;
use axum::http::StatusCode;

use crate::domain::contact::Contact;

/// What a signed-in visitor's pages show about them.
pub struct ViewerSummary {
    pub first_name: String,
    pub last_name: String,
    pub email: String,
    pub roles: Vec<String>,
    pub is_admin: bool,
    /// The account has a password (else it re-authenticates with an emailed code).
    pub has_password: bool,
}

/// Whether a page's re-authentication asks for the password: for a viewer without one, an emailed
/// code instead (a form shown again after an error, which has no viewer, asks for the password).
pub fn asks_password(viewer: &Option<ViewerSummary>) -> bool {
    viewer.as_ref().is_none_or(|v| v.has_password)
}

impl ViewerSummary {
    pub fn of(contact: &Contact) -> Self {
        ViewerSummary {
            first_name: contact.first_name.clone(),
            last_name: contact.last_name.clone(),
            email: contact.email.to_string(),
            roles: contact.roles.clone(),
            is_admin: contact.has_role(crate::domain::ADMINISTRATORS_ROLE),
            has_password: contact.password_hash.is_some(),
        }
    }
}

/// The problems a form submission had, shown next to the fields.
#[derive(Default)]
pub struct FormErrors {
    pub message: Option<String>,
    pub fields: BTreeMap<String, String>,
}

impl FormErrors {
    pub fn from_error(err: &super::PortalError) -> Self {
        FormErrors {
            message: Some(err.public_message().to_string()),
            fields: err.fields().cloned().unwrap_or_default(),
        }
    }

    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }
}

#[derive(Template)]
#[template(path = "home.html")]
pub struct HomePage<'a> {
    pub viewer: Option<ViewerSummary>,
    pub csrf_token: &'a str,
    pub open_registration: bool,
    pub invitations_enabled: bool,
}

#[derive(Template)]
#[template(path = "signin.html")]
pub struct SignInPage<'a> {
    pub viewer: Option<ViewerSummary>,
    pub csrf_token: &'a str,
    pub login: &'a str,
    pub errors: FormErrors,
    pub open_registration: bool,
    pub invitations_enabled: bool,
    pub email_code_sign_in: bool,
    /// The OpenID Connect providers: (id, display name).
    pub providers: Vec<(String, String)>,
}

/// What the registration form shows again after a failed submission (never the password).
#[derive(Default)]
pub struct RegisterValues {
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub username: String,
    pub phone: String,
}

#[derive(Template)]
#[template(path = "register.html")]
pub struct RegisterPage<'a> {
    pub viewer: Option<ViewerSummary>,
    pub csrf_token: &'a str,
    pub values: RegisterValues,
    pub errors: FormErrors,
    pub password_min_length: usize,
    /// The site's terms of use, version and address, when it has them (empty: none to accept).
    pub terms_version: &'a str,
    pub terms_url: &'a str,
}

#[derive(Template)]
#[template(path = "profile.html")]
pub struct ProfilePage<'a> {
    pub viewer: Option<ViewerSummary>,
    pub csrf_token: &'a str,
    pub contact: &'a Contact,
    pub errors: FormErrors,
    pub password_min_length: usize,
}

#[derive(Template)]
#[template(path = "message.html")]
struct MessagePage<'a> {
    viewer: Option<ViewerSummary>,
    csrf_token: &'a str,
    title: &'a str,
    message: &'a str,
}

/// Renders a page; a template fault (which tests rule out) degrades to a plain message.
pub fn render(page: &impl Template) -> String {
    page.render().unwrap_or_else(|e| {
        tracing::error!(error = %e, "template rendering failed");
        "<!doctype html><title>Error</title><p>Something went wrong on our side.</p>".into()
    })
}

/// A page that only says something, such as an error.
pub fn message(status: StatusCode, message: &str) -> String {
    let title = match status.as_u16() {
        400 => "Please check your request",
        401 => "Please sign in",
        403 => "Not allowed",
        404 => "Not found",
        409 => "Already exists",
        413 => "Too large",
        429 => "Too many requests",
        500..=599 => "Something went wrong",
        _ => "Customer portal",
    };
    render(&MessagePage { viewer: None, csrf_token: "", title, message })
}

/// A contact as the administrators' list shows it.
pub struct ContactRow {
    pub contact_id: ContactId,
    pub name: String,
    pub email: String,
    pub roles: String,
    pub portal_user: bool,
    /// The parent account's id ("" when none).
    pub account: String,
    /// The day it was created (`2026-12-07`, UTC).
    pub created: String,
}

impl ContactRow {
    pub fn of(contact: &Contact) -> Self {
        ContactRow {
            contact_id: contact.contact_id.clone(),
            name: format!("{} {}", contact.first_name, contact.last_name),
            email: contact.email.to_string(),
            roles: contact.roles.join(", "),
            portal_user: contact.password_hash.is_some(),
            account: contact.account_id.clone().unwrap_or_default(),
            created: crate::domain::time::day(contact.created_at),
        }
    }
}

/// An invitation as the administrators' pages show it.
pub struct InvitationRow {
    pub invitation_id: InvitationId,
    pub kind: String,
    pub status: String,
    pub delivery: String,
    pub delivery_error: Option<String>,
    pub redemptions: String,
    pub expires: String,
    pub roles: String,
}

#[derive(Template)]
#[template(path = "admin_contacts.html")]
pub struct AdminContactsPage<'a> {
    pub viewer: Option<ViewerSummary>,
    pub csrf_token: &'a str,
    pub query: &'a str,
    pub contacts: Vec<ContactRow>,
    pub selected: Option<ContactRow>,
    pub invitations: Vec<InvitationRow>,
    pub invitations_enabled: bool,
    pub default_expiry_days: u32,
    pub errors: FormErrors,
    /// The link to the next page of contacts (with the same search), if there is one.
    pub next_page: Option<String>,
}

#[derive(Template)]
#[template(path = "admin_invitation.html")]
pub struct AdminInvitationPage<'a> {
    pub viewer: Option<ViewerSummary>,
    pub csrf_token: &'a str,
    pub invitation: InvitationRow,
    pub contact_id: &'a str,
    pub recipient: String,
    pub account_id: &'a str,
    pub redirect_path: &'a str,
    pub redemptions: Vec<RedemptionRow>,
    pub can_resend: bool,
    pub can_revoke: bool,
    pub created: String,
    pub created_by_id: String,
    /// The inviter's email ("unknown" once that contact is gone).
    pub created_by_email: String,
    /// A group invitation's per-contact deliveries (empty for others).
    pub deliveries: Vec<DeliveryRow>,
}

/// How the email to one contact of a group invitation went (the page and the JSON alike).
#[derive(Clone, Debug, serde::Serialize)]
pub struct DeliveryRow {
    pub contact_id: String,
    pub email: String,
    pub status: String,
}

/// A redemption as the invitation page shows it: who (linked to their contact), when, from where.
pub struct RedemptionRow {
    pub contact_id: String,
    pub name: String,
    pub email: String,
    pub when: String,
    pub source_ip: String,
}

/// A row of the invitations list: the invitation and the names of its people.
pub struct InvitationListRow {
    pub invitation: InvitationRow,
    pub contact_id: String,
    pub invitee_name: String,
    pub invitee_email: String,
    pub inviter_email: String,
}

#[derive(Template)]
#[template(path = "admin_invitations.html")]
pub struct AdminInvitationsPage<'a> {
    pub viewer: Option<ViewerSummary>,
    pub csrf_token: &'a str,
    pub rows: Vec<InvitationListRow>,
    pub status_options: Vec<FilterOption>,
    pub delivery_options: Vec<FilterOption>,
    pub contact_id: &'a str,
    /// The link to the next page (with the same filters), if there is one.
    pub next_page: Option<String>,
}

#[derive(Template)]
#[template(path = "redeem.html")]
pub struct RedeemPage<'a> {
    pub viewer: Option<ViewerSummary>,
    pub csrf_token: &'a str,
    pub code: &'a str,
    pub found: bool,
    pub group: bool,
    pub invited_name: String,
    pub invited_email: String,
    pub existing_account: bool,
    pub login: String,
    pub username: String,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub password_min_length: usize,
    /// The site's terms of use (empty: none), accepted with the redemption.
    pub terms_version: &'a str,
    pub terms_url: &'a str,
    /// The OpenID Connect providers the invitation may be redeemed with: (id, display name).
    pub providers: Vec<(String, String)>,
    pub errors: FormErrors,
}

/// A page that takes an emailed token (confirmation, password reset), with a button so that
/// following the link alone changes nothing.
#[derive(Template)]
#[template(path = "token.html")]
pub struct TokenPage<'a> {
    pub viewer: Option<ViewerSummary>,
    pub csrf_token: &'a str,
    pub title: &'a str,
    pub action: &'a str,
    pub token: &'a str,
    pub ask_password: bool,
    pub password_min_length: usize,
    pub errors: FormErrors,
}

/// The emailed-code sign-in: the address form, or (with the address it was sent to) the code form.
#[derive(Template)]
#[template(path = "signin_email_code.html")]
pub struct EmailCodePage<'a> {
    pub viewer: Option<ViewerSummary>,
    pub csrf_token: &'a str,
    pub email: &'a str,
    pub errors: FormErrors,
}

#[derive(Template)]
#[template(path = "forgot_password.html")]
pub struct ForgotPasswordPage<'a> {
    pub viewer: Option<ViewerSummary>,
    pub csrf_token: &'a str,
    pub errors: FormErrors,
}

/// A choice in a list's filter (an empty value means any).
pub struct FilterOption {
    pub value: &'static str,
    pub selected: bool,
}

impl FilterOption {
    /// The choices `values` (after "any"), with `current` selected.
    pub fn all(values: &[&'static str], current: &str) -> Vec<FilterOption> {
        std::iter::once("")
            .chain(values.iter().copied())
            .map(|value| FilterOption { value, selected: value == current })
            .collect()
    }
}

/// A passkey as its owner's page lists it.
pub struct PasskeyRow {
    pub id: String,
    pub name: String,
    pub created: String,
    pub last_used: Option<String>,
}

#[derive(Template)]
#[template(path = "passkeys.html")]
pub struct PasskeysPage<'a> {
    pub viewer: Option<ViewerSummary>,
    pub csrf_token: &'a str,
    pub passkeys: Vec<PasskeyRow>,
    pub errors: FormErrors,
}

/// An audit entry as the staff pages show it.
pub struct AuditRow {
    pub when: String,
    pub kind: String,
    pub contact_id: String,
    /// Who acted: their contact id, "the person" when it is the account itself, or "nobody".
    pub actor: String,
    pub ip: String,
    pub detail: String,
}

/// A staff action as a button behind a confirmation.
pub struct ActionButton {
    pub name: &'static str,
    pub label: &'static str,
    pub warning: &'static str,
    pub danger: bool,
}

#[derive(Template)]
#[template(path = "admin_account.html")]
pub struct AdminAccountPage<'a> {
    pub viewer: Option<ViewerSummary>,
    pub csrf_token: &'a str,
    pub contact_id: &'a str,
    pub name: String,
    pub email: &'a str,
    /// Why mail no longer goes to the address, and since when; empty while it does.
    pub email_undeliverable: String,
    pub login_enabled: bool,
    pub deleted: bool,
    pub locked_until: String,
    pub has_password: bool,
    pub factors: String,
    pub passkeys: usize,
    pub last_sign_in: String,
    pub roles: String,
    pub account_id: &'a str,
    pub actions: Vec<ActionButton>,
    pub can_edit_roles: bool,
    pub is_administrator: bool,
    pub entries: Vec<AuditRow>,
}

#[derive(Template)]
#[template(path = "admin_audit.html")]
pub struct AdminAuditPage<'a> {
    pub viewer: Option<ViewerSummary>,
    pub csrf_token: &'a str,
    pub contact_id: &'a str,
    pub actor_id: &'a str,
    pub kind: &'a str,
    pub entries: Vec<AuditRow>,
    pub next_page: Option<String>,
}

/// One of the person's sessions on their security page.
pub struct SecuritySessionRow {
    pub id: String,
    pub current: bool,
    pub browser: String,
    pub ip: String,
    pub method: String,
    pub started: String,
    pub last_used: String,
}

/// One sign-in of the person's history on their security page.
pub struct SecuritySignInRow {
    pub when: String,
    pub method: String,
    pub result: String,
    pub succeeded: bool,
    pub browser: String,
    pub ip: String,
}

#[derive(Template)]
#[template(path = "security.html")]
pub struct SecurityPage<'a> {
    pub viewer: Option<ViewerSummary>,
    pub csrf_token: &'a str,
    pub sessions: Vec<SecuritySessionRow>,
    pub sign_ins: Vec<SecuritySignInRow>,
    /// The second factors on, in words ("totp, email"), or empty.
    pub factors: String,
    pub passkeys: usize,
}

/// A group of the settings page (Power Pages' site-setting groups).
pub struct SettingsGroup {
    pub name: &'static str,
    pub settings: Vec<crate::site_settings::SettingRow>,
}

#[derive(Template)]
#[template(path = "admin_settings.html")]
pub struct SettingsPage<'a> {
    pub viewer: Option<ViewerSummary>,
    pub csrf_token: &'a str,
    pub version: u64,
    pub groups: Vec<SettingsGroup>,
    pub saved: bool,
    pub errors: FormErrors,
}

#[derive(Template)]
#[template(path = "terms.html")]
pub struct TermsPage<'a> {
    pub viewer: Option<ViewerSummary>,
    pub csrf_token: &'a str,
    pub version: &'a str,
    pub url: &'a str,
    /// When the person accepted this version (empty: not yet).
    pub accepted_at: String,
}

#[derive(Template)]
#[template(path = "delete_account.html")]
pub struct DeleteAccountPage<'a> {
    pub viewer: Option<ViewerSummary>,
    pub csrf_token: &'a str,
    pub errors: FormErrors,
}

/// An external identity as the identities page lists it.
pub struct IdentityRow {
    pub provider: String,
    pub provider_name: String,
    pub subject: String,
    pub email: String,
    pub linked_at: String,
}

#[derive(Template)]
#[template(path = "identities.html")]
pub struct IdentitiesPage<'a> {
    pub viewer: Option<ViewerSummary>,
    pub csrf_token: &'a str,
    pub identities: Vec<IdentityRow>,
    /// Every provider of the site: (id, display name).
    pub providers: Vec<(String, String)>,
}

/// Linking or unlinking an identity: the form that re-authenticates the person first.
#[derive(Template)]
#[template(path = "identity_change.html")]
pub struct IdentityChangePage<'a> {
    pub viewer: Option<ViewerSummary>,
    pub csrf_token: &'a str,
    pub heading: String,
    pub explanation: &'a str,
    pub action: String,
    pub subject: &'a str,
    pub button: String,
    pub errors: FormErrors,
}

#[derive(Template)]
#[template(path = "export.html")]
pub struct ExportPage<'a> {
    pub viewer: Option<ViewerSummary>,
    pub csrf_token: &'a str,
    pub errors: FormErrors,
}
