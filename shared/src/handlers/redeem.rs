//! The redeem-invitation function: `GET, POST /redeem`.
//!
//! `GET /redeem?code=X` and `POST /redeem {"code"}` only look the code up (mail scanners follow
//! links: opening the page consumes nothing). With a password the invited contact sets up
//! credentials (a group invitation creates a new contact); with `existing_account` the invitation
//! is redeemed onto an account the person signs in to.

use axum::Router;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use serde::Serialize;

use crate::config::Settings;
use crate::domain::audit::SourceAddress;
use crate::domain::email::Email;
use crate::domain::invitation::{Invitation, InvitationType};
use crate::domain::password::Password;
use crate::domain::text::{Username, parse_name};
use crate::usecases::door::Entry;
use crate::usecases::redeem::{self, NewCredentials, Redeem};
use crate::web::extract::InvitationsEnabled;
use crate::web::pages::{FormErrors, RedeemPage};
use crate::web::{AppState, ArrivedWith, Fields, Form, HttpFunction, Page, PortalError, Rejection, Reply, Submission};

pub struct RedeemInvitation;

const CONFIRM_FIRST: &str =
    "The invitation is yours. We sent a link to your email address: follow it to confirm the address, then sign in.";

impl HttpFunction for RedeemInvitation {
    fn routes(&self) -> Router<AppState> {
        Router::new().route("/redeem", get(show).post(submit))
    }
}

/// What the redeem form shows again after a failed submission (never the password).
#[derive(Default)]
struct RedeemValues {
    existing_account: bool,
    login: String,
    username: String,
    email: String,
    first_name: String,
    last_name: String,
}

impl RedeemValues {
    fn sent(fields: &mut Fields) -> Self {
        let existing_account = fields.flag("existing_account");
        let mut text = |name: &str| fields.text(name).unwrap_or_default();
        RedeemValues {
            existing_account,
            login: text("login"),
            username: text("username"),
            email: text("email"),
            first_name: text("first_name"),
            last_name: text("last_name"),
        }
    }
}

fn render(
    page: &Page,
    code: &str,
    invitation: Option<&Invitation>,
    values: RedeemValues,
    errors: FormErrors,
) -> Response {
    page.render(
        StatusCode::OK,
        &RedeemPage {
            viewer: None,
            csrf_token: &page.csrf_token,
            code,
            invited_name: invitation.map(|i| format!("{} {}", i.first_name, i.last_name)).unwrap_or_default(),
            invited_email: invitation.map(|i| i.email.clone()).unwrap_or_default(),
            found: invitation.is_some(),
            group: invitation.is_some_and(|i| i.kind == InvitationType::Group),
            existing_account: values.existing_account,
            login: values.login,
            username: values.username,
            email: values.email,
            first_name: values.first_name,
            last_name: values.last_name,
            password_min_length: page.settings().password_min_length,
            terms_version: page.settings().terms_version.as_deref().unwrap_or(""),
            terms_url: page.settings().terms_url.as_deref().unwrap_or(""),
            providers: page.settings().provider_names(),
            errors,
        },
    )
}

/// Who an invitation is for, as the redeem form shows it.
#[derive(Serialize)]
struct Found<'a> {
    invitation_id: &'a str,
    #[serde(rename = "type")]
    kind: InvitationType,
    email: &'a str,
    first_name: &'a str,
    last_name: &'a str,
}

impl<'a> Found<'a> {
    fn of(invitation: &'a Invitation) -> Self {
        Found {
            invitation_id: &invitation.invitation_id,
            kind: invitation.kind,
            email: &invitation.email,
            first_name: &invitation.first_name,
            last_name: &invitation.last_name,
        }
    }
}

/// The invitation found, for programs as JSON and for browsers as the form to redeem it.
fn found(page: Page, code: String, invitation: Invitation) -> Reply {
    Reply::json(StatusCode::OK, &Found::of(&invitation))
        .or_page(move || render(&page, &code, Some(&invitation), RedeemValues::default(), FormErrors::default()))
}

async fn show(_: InvitationsEnabled, source: SourceAddress, page: Page) -> Result<Reply, Rejection> {
    let Some(raw) = page.query("code").filter(|c| !c.trim().is_empty()) else {
        let form = move || render(&page, "", None, RedeemValues::default(), FormErrors::default());
        return Ok(
            Reply::json(StatusCode::BAD_REQUEST, &PortalError::field("code", "is required").body()).or_page(form)
        );
    };
    match redeem::open(&page.portal, &source, &raw).await {
        Ok((code, invitation)) => Ok(found(page, code.display(), invitation)),
        Err(err) => {
            let errors = FormErrors::from_error(&err);
            Err(Rejection::with_page(err, move || render(&page, raw.trim(), None, RedeemValues::default(), errors)))
        }
    }
}

/// What a submission asks for: a look-up, new credentials, or an existing account.
struct RedeemForm {
    code: String,
    how: Option<Redeem>,
}

impl Form for RedeemForm {
    /// The invitation the code opened, shown again with the problems (a bad password, say).
    type Context = Option<Invitation>;

    fn parse(fields: &mut Fields, _: &Settings) -> Result<Self, PortalError> {
        let code = fields.required("code");
        let accept_terms = fields.flag("accept_terms");
        let how = if fields.flag("existing_account") {
            let login = fields.required("login");
            let password = fields.required("password");
            let second_factor_code = fields.text("second_factor_code").filter(|c| !c.trim().is_empty());
            login.zip(password).map(|(login, password)| {
                Some(Redeem::ExistingAccount {
                    login,
                    password: Password::new(password),
                    second_factor_code,
                    accept_terms,
                })
            })
        } else {
            let username = fields.optional_parsed("username", Username::parse);
            let email = fields.optional_parsed("email", Email::parse);
            let first_name = fields.optional_parsed("first_name", parse_name);
            let last_name = fields.optional_parsed("last_name", parse_name);
            let password = fields.text("password").filter(|p| !p.is_empty());
            Some(password.map(|password| {
                Redeem::NewCredentials(NewCredentials {
                    password,
                    username,
                    email,
                    first_name,
                    last_name,
                    accept_terms,
                })
            }))
        };
        fields.done(|| Some(RedeemForm { code: code?, how: how? }))
    }

    fn page(page: &Page, sent: &mut Fields, invitation: &Option<Invitation>, errors: FormErrors) -> Option<Response> {
        let code = sent.text("code").unwrap_or_default();
        Some(render(page, code.trim(), invitation.as_ref(), RedeemValues::sent(sent), errors))
    }
}

#[derive(Serialize)]
struct Redeemed<'a> {
    invitation_id: &'a str,
    contact_id: &'a str,
    email: &'a str,
    roles: &'a [String],
    redirect_path: &'a str,
}

async fn submit(
    _: InvitationsEnabled,
    source: SourceAddress,
    arrived: ArrivedWith,
    mut form: Submission<RedeemForm>,
) -> Result<Reply, Rejection> {
    let portal = form.page.portal.clone();
    let (code, invitation) = match redeem::open(&portal, &source, &form.code).await {
        Ok(opened) => opened,
        Err(err) => return Err(form.reject(err)),
    };
    let Some(how) = form.how.take() else {
        let Submission { page, .. } = form;
        return Ok(found(page, code.display(), invitation));
    };
    let redeemed = match redeem::redeem(&portal, &source, &invitation, how, arrived.arrival()).await {
        Ok(redeemed) => redeemed,
        // The invitation it already found is shown again, unless the code stopped working meanwhile.
        Err(PortalError::InvitationInvalid) => return Err(form.reject(PortalError::InvitationInvalid)),
        Err(err) => return Err(form.reject_with(err, &Some(invitation))),
    };
    Ok(redeemed_reply(&portal.settings, &invitation, &redeemed)?)
}

/// What a redemption answers: the contract's body, with the session the door began (a browser goes
/// to the invitation's page, or to what the session must do first), or a page that says the new
/// address is to be confirmed first.
pub fn redeemed_reply(
    settings: &Settings,
    invitation: &Invitation,
    redeemed: &redeem::Redeemed,
) -> Result<Reply, PortalError> {
    let target = invitation.redirect_path.clone().unwrap_or_else(|| "/profile".into());
    let contact = &redeemed.contact;
    let view = Redeemed {
        invitation_id: &invitation.invitation_id,
        contact_id: &contact.contact_id,
        email: contact.email.as_str(),
        roles: &contact.roles,
        redirect_path: &target,
    };
    let status = if redeemed.created { StatusCode::CREATED } else { StatusCode::OK };
    match &redeemed.entry {
        Some(Entry::Entered(entered)) => {
            let target = super::entry::entered_target(entered, &target).to_string();
            Ok(Reply::json(status, &view).or_see_other(target).with_session(settings, entered))
        }
        // Redeemed; the new address is to be confirmed first (its link is on its way).
        None => Ok(Reply::json(status, &view).or_message(CONFIRM_FIRST)),
        Some(Entry::SecondFactorAwaited { .. }) => {
            Err(PortalError::Internal(anyhow::anyhow!("a redemption awaiting a second factor")))
        }
    }
}
