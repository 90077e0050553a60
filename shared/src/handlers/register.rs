//! The register function: `GET, POST /register` (open registration) and `GET, POST /confirm-email`.

use axum::Router;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use serde::Serialize;

use crate::config::Settings;
use crate::domain::audit::SourceAddress;
use crate::domain::email::Email;
use crate::domain::password::Password;
use crate::domain::text::{Username, parse_name, parse_phone};
use crate::domain::token::parse_token;
use crate::usecases::door::Entry;
use crate::usecases::register::{Registered, Registration, register};
use crate::usecases::tokens;
use crate::web::extract::RegistrationOpen;
use crate::web::pages::{FormErrors, RegisterPage, RegisterValues, TokenPage};
use crate::web::{
    AppState, ArrivedWith, Fields, Form, HttpFunction, Page, PortalError, Rejection, Reply, Submission, Viewer,
};

use super::entry::second_factor_reply;

pub struct Register;

impl HttpFunction for Register {
    fn routes(&self) -> Router<AppState> {
        Router::new()
            .route("/register", get(register_page).post(submit))
            .route("/confirm-email", get(confirm_page).post(confirm))
    }
}

fn render_register(page: &Page, values: RegisterValues, errors: FormErrors) -> Response {
    page.render(
        StatusCode::OK,
        &RegisterPage {
            viewer: None,
            csrf_token: &page.csrf_token,
            values,
            errors,
            password_min_length: page.settings().password_min_length,
            terms_version: page.settings().terms_version.as_deref().unwrap_or(""),
            terms_url: page.settings().terms_url.as_deref().unwrap_or(""),
        },
    )
}

async fn register_page(_: RegistrationOpen, page: Page) -> Response {
    render_register(&page, RegisterValues::default(), FormErrors::default())
}

struct RegisterForm(Registration);

impl Form for RegisterForm {
    type Context = ();

    fn parse(fields: &mut Fields, settings: &Settings) -> Result<Self, PortalError> {
        let email = fields.required_parsed("email", Email::parse);
        let first_name = fields.required_parsed("first_name", parse_name);
        let last_name = fields.required_parsed("last_name", parse_name);
        let username = fields.optional_parsed("username", Username::parse);
        let phone = fields.optional_parsed("phone", parse_phone);
        let accept_terms = fields.flag("accept_terms");
        let password = fields.required("password").and_then(|raw| {
            let context: Vec<&str> = [
                email.as_ref().map(Email::as_str),
                first_name.as_deref(),
                last_name.as_deref(),
                username.as_ref().map(|u| u.display.as_str()),
            ]
            .into_iter()
            .flatten()
            .collect();
            let chosen = Password::choose(raw, settings.password_min_length, &context);
            fields.check("password", chosen)
        });
        fields.done(|| {
            Some(RegisterForm(Registration {
                email: email?,
                password: password?,
                first_name: first_name?,
                last_name: last_name?,
                username,
                phone,
                accept_terms,
            }))
        })
    }

    /// The form again with what was typed (never the password).
    fn page(page: &Page, sent: &mut Fields, _: &(), errors: FormErrors) -> Option<Response> {
        let mut text = |name: &str| sent.text(name).unwrap_or_default();
        let values = RegisterValues {
            email: text("email"),
            first_name: text("first_name"),
            last_name: text("last_name"),
            username: text("username"),
            phone: text("phone"),
        };
        Some(render_register(page, values, errors))
    }
}

#[derive(Serialize)]
struct RegisteredView<'a> {
    contact_id: &'a str,
    email: &'a str,
    email_confirmed: bool,
}

const CONFIRMATION_SENT: &str =
    "Thank you. We sent a link to your email address: follow it to confirm the address, then sign in.";

/// `POST /register`: the new contact, signed in through the door (201); while confirmation is
/// required, 202 for a new and a taken address alike. A retry of a registration whose answer was
/// lost gets what a sign-in with its password gets.
async fn submit(
    _: RegistrationOpen,
    source: SourceAddress,
    arrived: ArrivedWith,
    mut form: Submission<RegisterForm>,
) -> Result<Reply, Rejection> {
    let portal = form.page.portal.clone();
    match register(&portal, &source, form.0.clone(), arrived.arrival()).await {
        Ok(Registered::AwaitingConfirmation) => {
            Ok(Reply::json(StatusCode::ACCEPTED, &serde_json::json!({"status": "confirmation_sent"}))
                .or_message(CONFIRMATION_SENT))
        }
        Ok(Registered::Entry(Entry::Entered(entered))) => {
            let contact = &entered.contact;
            let view = RegisteredView {
                contact_id: &contact.contact_id,
                email: contact.email.as_str(),
                email_confirmed: contact.email_confirmed,
            };
            let target = super::entry::entered_target(&entered, "/");
            Ok(Reply::json(StatusCode::CREATED, &view).or_see_other(target).with_session(&portal.settings, &entered))
        }
        Ok(Registered::Entry(Entry::SecondFactorAwaited { pending_token, methods })) => {
            Ok(second_factor_reply(&portal.settings, &pending_token, &methods))
        }
        Err(err) => Err(form.reject(err)),
    }
}

/// `GET /confirm-email?token=`: a page with a button; following the link changes nothing by
/// itself (mail scanners follow links). Programs POST the token.
async fn confirm_page(page: Page) -> Reply {
    let token = page.query("token").and_then(|t| parse_token(&t)).unwrap_or_default();
    let error = PortalError::validation("POST the token to /confirm-email to confirm.");
    Reply::json(StatusCode::BAD_REQUEST, &error.body()).or_page(move || {
        page.render(
            StatusCode::OK,
            &TokenPage {
                viewer: None,
                csrf_token: &page.csrf_token,
                title: "Confirm your email address",
                action: "/confirm-email",
                token: &token,
                ask_password: false,
                password_min_length: page.settings().password_min_length,
                errors: FormErrors::default(),
            },
        )
    })
}

/// `{"token"}` confirms the address the token was sent to; `{"email"}` asks for a new link.
enum ConfirmForm {
    Confirm(Option<String>),
    Resend(Email),
}

impl Form for ConfirmForm {
    type Context = ();

    fn parse(fields: &mut Fields, _: &Settings) -> Result<Self, PortalError> {
        // A blank or malformed token is an invalid link, not a form to correct.
        if let Some(token) = fields.text("token") {
            return Ok(ConfirmForm::Confirm(parse_token(&token)));
        }
        let email = fields.required_parsed("email", Email::parse);
        fields.done(|| Some(ConfirmForm::Resend(email?)))
    }
}

/// `POST /confirm-email`: `{"token"}` confirms; `{"email"}` sends a new link (the same answer
/// whether or not the address has an account, rate limited). A link that moves the account to a
/// new address ends every other session; a browser signed in to the account continues under a new
/// session cookie.
async fn confirm(
    source: SourceAddress,
    viewer: Option<Viewer>,
    form: Submission<ConfirmForm>,
) -> Result<Reply, PortalError> {
    let portal = &form.page.portal;
    match &form.input {
        ConfirmForm::Resend(email) => {
            tokens::resend_confirmation(portal, &source, email, viewer.as_ref().map(|v| &v.0.contact)).await?;
            Ok(Reply::json(StatusCode::ACCEPTED, &serde_json::json!({"status": "email_sent"}))
                .or_message(CONFIRMATION_SENT))
        }
        ConfirmForm::Confirm(token) => {
            let token = token.as_deref().ok_or(PortalError::TokenInvalid)?;
            let signed_in_as = viewer.as_ref().map(|v| &v.0);
            let confirmed = tokens::confirm_email(portal, &source, token, signed_in_as).await?;
            let body = serde_json::json!({"email": confirmed.email.as_str(), "email_confirmed": true});
            let reply = Reply::json(StatusCode::OK, &body)
                .or_message("Your email address is confirmed. From now on you sign in with it.");
            Ok(match &confirmed.continued_session {
                Some(entered) => reply.with_session(&portal.settings, entered),
                None => reply,
            })
        }
    }
}
