//! Two-factor settings (profile function): `GET /profile/two-factor` and its forms. Each change
//! answers with the browser's new session cookie: the change ended every other session.

use axum::Router;
use axum::extract::OptionalFromRequestParts;
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::Response;
use axum::routing::{get, post};
use serde::Serialize;

use crate::config::Settings;
use crate::domain::audit::SourceAddress;
use crate::domain::contact::Contact;
use crate::domain::two_factor::two_factor_required;
use crate::usecases::reauth::Reauthentication;
use crate::usecases::two_factor::{self, Changed, Status};
use crate::web::pages::{FormErrors, ViewerSummary};
use crate::web::two_factor_pages::{RecoveryCodesPage, TotpSetUpPage, TwoFactorPage, qr_svg};
use crate::web::{AppState, Fields, Form, Page, PortalError, Rejection, Reply, Submission, Viewer};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/profile/two-factor", get(show))
        .route("/profile/two-factor/totp", post(begin_totp))
        .route("/profile/two-factor/totp/confirm", post(confirm_totp))
        .route("/profile/two-factor/email", post(set_email))
        .route("/profile/two-factor/disable", post(disable))
        .route("/profile/two-factor/recovery-codes", post(renew_recovery_codes))
}

#[derive(Serialize)]
struct StatusView {
    totp: bool,
    email: bool,
    recovery_codes_left: usize,
}

fn render_status(page: &Page, contact: &Contact, status: &Status, errors: FormErrors) -> Response {
    let setup_required = !(status.totp || status.email)
        && two_factor_required(&contact.roles, &page.settings().two_factor_required_roles);
    page.render(
        StatusCode::OK,
        &TwoFactorPage {
            viewer: Some(ViewerSummary::of(contact)),
            csrf_token: &page.csrf_token,
            totp: status.totp,
            email: status.email,
            recovery_codes_left: status.recovery_codes_left,
            setup_required,
            errors,
        },
    )
}

/// `GET /profile/two-factor` → `{"totp","email","recovery_codes_left"}`, or the settings page.
async fn show(viewer: Viewer, page: Page) -> Result<Reply, PortalError> {
    let Viewer(signed_in) = viewer;
    let status = two_factor::status(&page.portal, &signed_in.contact).await?;
    let view = StatusView { totp: status.totp, email: status.email, recovery_codes_left: status.recovery_codes_left };
    Ok(Reply::json(StatusCode::OK, &view)
        .or_page(move || render_status(&page, &signed_in.contact, &status, FormErrors::default())))
}

/// The signed-in contact, to show the settings page again after a refused form.
async fn form_owner(parts: &mut Parts, state: &AppState) -> Option<Contact> {
    let viewer = <Viewer as OptionalFromRequestParts<AppState>>::from_request_parts(parts, state).await;
    viewer.ok().flatten().map(|Viewer(signed_in)| signed_in.contact)
}

/// The signed-in contact and their two-factor state, to show the settings page again.
type Owner = Option<(Contact, Status)>;

async fn owner_with_status(parts: &mut Parts, state: &AppState) -> Owner {
    let contact = form_owner(parts, state).await?;
    let status = two_factor::status(state, &contact).await.ok()?;
    Some((contact, status))
}

/// A refused change: the settings page again (with the state as it stands) for a browser.
async fn refuse(
    portal: &AppState,
    form: &mut Submission<PasswordForm>,
    err: PortalError,
    contact: Contact,
) -> Rejection {
    let status = two_factor::status(portal, &contact).await.ok();
    form.reject_with(err, &status.map(|status| (contact, status)))
}

fn reshow_status(page: &Page, owner: &Owner, errors: FormErrors) -> Option<Response> {
    let (contact, status) = owner.as_ref()?;
    Some(render_status(page, contact, status, errors))
}

/// A change that re-authenticates (`current_password`, `second_factor_code`), and the switch of
/// the emailed codes' form.
struct PasswordForm {
    given: Reauthentication,
    enabled: bool,
}

impl Form for PasswordForm {
    type Context = Owner;

    fn context(parts: &mut Parts, state: &AppState) -> impl Future<Output = Owner> + Send {
        owner_with_status(parts, state)
    }

    fn parse(fields: &mut Fields, _: &Settings) -> Result<Self, PortalError> {
        let given = fields.reauthentication();
        let enabled = fields.flag("enabled");
        fields.done(|| Some(PasswordForm { given, enabled }))
    }

    fn page(page: &Page, _: &mut Fields, owner: &Owner, errors: FormErrors) -> Option<Response> {
        reshow_status(page, owner, errors)
    }
}

#[derive(Serialize)]
struct TotpView<'a> {
    secret: &'a str,
    otpauth_uri: &'a str,
}

/// `POST /profile/two-factor/totp {"current_password"}` → `{"secret","otpauth_uri"}`; the page
/// shows the QR code and the key, and the form for the first code.
async fn begin_totp(
    viewer: Viewer,
    source: SourceAddress,
    mut form: Submission<PasswordForm>,
) -> Result<Reply, Rejection> {
    let portal = form.page.portal.clone();
    let given = form.given.clone();
    let set_up = match two_factor::begin_totp(&portal, &source, &viewer.contact, given).await {
        Ok(set_up) => set_up,
        Err(err) => return Err(refuse(&portal, &mut form, err, viewer.0.contact).await),
    };
    let view = TotpView { secret: &set_up.secret, otpauth_uri: &set_up.otpauth_uri };
    let reply = Reply::json(StatusCode::OK, &view);
    let page = form.page;
    let contact = viewer.0.contact;
    Ok(reply.or_page(move || {
        page.render(
            StatusCode::OK,
            &TotpSetUpPage {
                viewer: Some(ViewerSummary::of(&contact)),
                csrf_token: &page.csrf_token,
                secret: Some(&set_up.secret),
                qr_svg: qr_svg(&set_up.otpauth_uri),
                errors: FormErrors::default(),
            },
        )
    }))
}

struct ConfirmForm {
    code: String,
}

impl Form for ConfirmForm {
    type Context = Option<Contact>;

    fn context(parts: &mut Parts, state: &AppState) -> impl Future<Output = Option<Contact>> + Send {
        form_owner(parts, state)
    }

    fn parse(fields: &mut Fields, _: &Settings) -> Result<Self, PortalError> {
        let code = fields.required("code");
        fields.done(|| Some(ConfirmForm { code: code? }))
    }

    fn page(page: &Page, _: &mut Fields, owner: &Option<Contact>, errors: FormErrors) -> Option<Response> {
        let contact = owner.as_ref()?;
        Some(page.render(
            StatusCode::OK,
            &TotpSetUpPage {
                viewer: Some(ViewerSummary::of(contact)),
                csrf_token: &page.csrf_token,
                secret: None,
                qr_svg: String::new(),
                errors,
            },
        ))
    }
}

#[derive(Serialize)]
struct RecoveryCodesView<'a> {
    recovery_codes: &'a [String],
}

/// The answer of a change: the new session's cookie, and for new recovery codes a page showing
/// them once (`title`); otherwise the browser goes back to the settings.
fn changed_reply(page: Page, contact: Contact, changed: Changed, status: StatusCode, title: &'static str) -> Reply {
    let settings = page.settings().clone();
    let entered = changed.entered;
    let reply = match status {
        StatusCode::NO_CONTENT => Reply::no_content().or_see_other("/profile/two-factor"),
        _ if changed.recovery_codes.is_empty() => {
            let status_view = serde_json::json!({"status": "changed"});
            Reply::json(status, &status_view).or_see_other("/profile/two-factor")
        }
        _ => {
            let codes = changed.recovery_codes;
            Reply::json(status, &RecoveryCodesView { recovery_codes: &codes }).or_page(move || {
                page.render(
                    StatusCode::OK,
                    &RecoveryCodesPage {
                        viewer: Some(ViewerSummary::of(&contact)),
                        csrf_token: &page.csrf_token,
                        title,
                        codes: &codes,
                    },
                )
            })
        }
    };
    reply.with_session(&settings, &entered)
}

/// `POST /profile/two-factor/totp/confirm {"code"}` → `{"recovery_codes":[...]}` (shown once).
async fn confirm_totp(
    viewer: Viewer,
    source: SourceAddress,
    mut form: Submission<ConfirmForm>,
) -> Result<Reply, Rejection> {
    let portal = form.page.portal.clone();
    let code = form.code.clone();
    match two_factor::confirm_totp(&portal, &source, &viewer, &code).await {
        Ok(changed) => Ok(changed_reply(form.page, viewer.0.contact, changed, StatusCode::OK, "Your recovery codes")),
        Err(err) => Err(form.reject_with(err, &Some(viewer.0.contact))),
    }
}

/// `POST /profile/two-factor/email {"current_password","enabled"}` → 200 (with recovery codes
/// when turning it on made the first ones).
async fn set_email(
    viewer: Viewer,
    source: SourceAddress,
    mut form: Submission<PasswordForm>,
) -> Result<Reply, Rejection> {
    let portal = form.page.portal.clone();
    let (given, enabled) = (form.given.clone(), form.enabled);
    match two_factor::set_email(&portal, &source, &viewer, given, enabled).await {
        Ok(changed) => Ok(changed_reply(form.page, viewer.0.contact, changed, StatusCode::OK, "Your recovery codes")),
        Err(err) => Err(refuse(&portal, &mut form, err, viewer.0.contact).await),
    }
}

/// `POST /profile/two-factor/recovery-codes {"current_password"}` → a new set; the old ones end.
async fn renew_recovery_codes(
    viewer: Viewer,
    source: SourceAddress,
    mut form: Submission<PasswordForm>,
) -> Result<Reply, Rejection> {
    let portal = form.page.portal.clone();
    let given = form.given.clone();
    match two_factor::renew_recovery_codes(&portal, &source, &viewer, given).await {
        Ok(changed) => {
            Ok(changed_reply(form.page, viewer.0.contact, changed, StatusCode::OK, "Your new recovery codes"))
        }
        Err(err) => Err(refuse(&portal, &mut form, err, viewer.0.contact).await),
    }
}

/// `POST /profile/two-factor/disable {"current_password"}` → 204.
async fn disable(
    viewer: Viewer,
    source: SourceAddress,
    mut form: Submission<PasswordForm>,
) -> Result<Reply, Rejection> {
    let portal = form.page.portal.clone();
    let given = form.given.clone();
    match two_factor::disable(&portal, &source, &viewer, given).await {
        Ok(changed) => Ok(changed_reply(form.page, viewer.0.contact, changed, StatusCode::NO_CONTENT, "")),
        Err(err) => Err(refuse(&portal, &mut form, err, viewer.0.contact).await),
    }
}
