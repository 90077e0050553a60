//! The register function: `GET, POST /register` (open registration).

use async_trait::async_trait;
use lambda_http::http::Method;
use serde::Serialize;

use super::{CsrfToken, audit, email_allowed, start_session, token_email};
use crate::app::Portal;
use crate::domain::contact::{Contact, Login, NewContact};
use crate::domain::email::Email;
use crate::domain::outbox::{MessageKind, OutboxMessage};
use crate::domain::password::{Password, hash_password};
use crate::domain::secret::digest;
use crate::domain::text::{Username, parse_name, parse_phone};
use crate::domain::token::{TokenPurpose, parse_token};
use crate::lambda::HttpFunction;
use crate::ports::{CreateContactError, TokenUse};
use crate::web::pages::{self, FormErrors, RegisterPage, RegisterValues, TokenPage};
use crate::web::request::query_param;
use crate::web::response::{self, with_cookie};
use crate::web::{Client, Fields, HttpRequest, HttpResponse, PortalError, Submission};

pub struct Register;

#[async_trait]
impl HttpFunction for Register {
    async fn handle(&self, portal: &Portal, req: HttpRequest) -> HttpResponse {
        // With open registration off the page does not exist, as in Power Pages (confirming an
        // address still works: invited and existing contacts have addresses too).
        if !portal.settings.open_registration && req.uri().path() == "/register" {
            return response::error(&PortalError::NotFound, Client::for_read(&req));
        }
        let method = req.method().clone();
        match (method, req.uri().path()) {
            (Method::GET, "/register") => {
                register_page(portal, &req, RegisterValues::default(), FormErrors::default(), 200)
            }
            (Method::POST, "/register") => submit(portal, &req).await,
            (Method::GET, "/confirm-email") => confirm_page(portal, &req),
            (Method::POST, "/confirm-email") => confirm(portal, &req).await,
            _ => response::error(&PortalError::NotFound, Client::for_read(&req)),
        }
    }
}

fn register_page(
    portal: &Portal,
    req: &HttpRequest,
    values: RegisterValues,
    errors: FormErrors,
    status: u16,
) -> HttpResponse {
    let csrf = CsrfToken::for_page(portal, req);
    let page = RegisterPage {
        viewer: None,
        csrf_token: &csrf.token,
        values,
        errors,
        password_min_length: portal.settings.password_min_length,
    };
    let html = pages::render(&page);
    csrf.apply(response::html(status, html))
}

#[derive(Serialize)]
struct RegisteredView<'a> {
    contact_id: &'a str,
    email: &'a str,
    email_confirmed: bool,
}

/// A registration whose every field parsed.
struct Registration {
    email: Email,
    password: Password,
    first_name: String,
    last_name: String,
    username: Option<Username>,
    phone: Option<String>,
}

fn parse_registration(fields: &mut Fields, min_length: usize) -> Result<Registration, PortalError> {
    let email = fields.required_parsed("email", Email::parse);
    let first_name = fields.required_parsed("first_name", parse_name);
    let last_name = fields.required_parsed("last_name", parse_name);
    let username = fields.optional_parsed("username", Username::parse);
    let phone = fields.optional_parsed("phone", parse_phone);
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
        let chosen = Password::choose(raw, min_length, &context);
        fields.check("password", chosen)
    });
    fields.finish()?;
    match (email, password, first_name, last_name) {
        (Some(email), Some(password), Some(first_name), Some(last_name)) => {
            Ok(Registration { email, password, first_name, last_name, username, phone })
        }
        _ => Err(PortalError::validation("Some fields need attention.")),
    }
}

fn values_shown_again(fields: &mut Fields) -> RegisterValues {
    let mut text = |name: &str| fields.text(name).unwrap_or_default();
    RegisterValues {
        email: text("email"),
        first_name: text("first_name"),
        last_name: text("last_name"),
        username: text("username"),
        phone: text("phone"),
    }
}

async fn submit(portal: &Portal, req: &HttpRequest) -> HttpResponse {
    let Submission { client, mut fields } = match Submission::read(req, &portal.settings) {
        Ok(submission) => submission,
        Err(err) => return response::error(&err, Client::for_read(req)),
    };
    match register(portal, req, &mut fields).await {
        Ok(Registered::AwaitingConfirmation) => match client {
            Client::Api => response::json(202, &serde_json::json!({"status": "confirmation_sent"})),
            Client::Browser => response::html(202, pages::message(202, CONFIRMATION_SENT)),
        },
        Ok(Registered::SignedIn(contact, cookie)) => {
            let reply = match client {
                Client::Api => response::json(
                    201,
                    &RegisteredView {
                        contact_id: &contact.contact_id,
                        email: &contact.email,
                        email_confirmed: contact.email_confirmed,
                    },
                ),
                Client::Browser => response::see_other("/"),
            };
            with_cookie(reply, cookie)
        }
        Err(err) if client == Client::Browser && !matches!(err, PortalError::Internal(_)) => {
            err.log();
            let values = values_shown_again(&mut fields);
            register_page(portal, req, values, FormErrors::from_error(&err), err.status())
        }
        Err(err) => response::error(&err, client),
    }
}

const CONFIRMATION_SENT: &str =
    "Thank you. We sent a link to your email address: follow it to confirm the address, then sign in.";

enum Registered {
    SignedIn(Box<Contact>, String),
    /// Email confirmation is required: the same answer whether the address was new or taken.
    AwaitingConfirmation,
}

async fn register(portal: &Portal, req: &HttpRequest, fields: &mut Fields) -> Result<Registered, PortalError> {
    let registration = parse_registration(fields, portal.settings.password_min_length)?;
    let login = Login::Email(registration.email.normalized().to_string());
    let password_hash = hash_password(registration.password).await?;
    let contact = Contact::new(
        NewContact {
            email: registration.email,
            first_name: registration.first_name,
            last_name: registration.last_name,
            username: registration.username,
            phone: registration.phone,
            roles: Vec::new(),
            password_hash: Some(password_hash),
        },
        portal.clock.now(),
    );
    // The confirmation email goes out in the same write as the contact, whatever the setting.
    let (token, message) = token_email(portal, &contact, TokenPurpose::ConfirmEmail);
    let confirmation_required = portal.settings.require_confirmation;
    match portal.contacts.create_with_email(&contact, Some((&token, &message))).await {
        Ok(()) => {}
        Err(CreateContactError::EmailTaken) if confirmation_required => {
            // Tell the owner, not the registrant, that the address has an account.
            if let Some(owner) = portal.contacts.find_by_login(&login).await?
                && email_allowed(portal, req, &owner.contact_id).await?
            {
                let notice = OutboxMessage::new(
                    MessageKind::AccountExists,
                    &owner.email,
                    &owner.first_name,
                    None,
                    portal.clock.now(),
                );
                portal.contacts.queue_email(None, &notice).await?;
            }
            audit(req, "registration_for_existing_email", None);
            return Ok(Registered::AwaitingConfirmation);
        }
        Err(CreateContactError::EmailTaken) => return Err(PortalError::EmailTaken),
        Err(CreateContactError::UsernameTaken) => return Err(PortalError::field("username", "is already taken")),
        Err(CreateContactError::Store(err)) => return Err(err.into()),
    }
    audit(req, "registered", Some(&contact.contact_id));
    if confirmation_required {
        return Ok(Registered::AwaitingConfirmation);
    }
    let cookie = start_session(portal, &contact).await?;
    Ok(Registered::SignedIn(Box::new(contact), cookie))
}

/// `GET /confirm-email?token=`: a page with a button; following the link changes nothing by
/// itself (mail scanners follow links).
fn confirm_page(portal: &Portal, req: &HttpRequest) -> HttpResponse {
    let client = Client::for_read(req);
    let token = query_param(req, "token").and_then(|t| parse_token(&t));
    match (client, token) {
        (Client::Browser, token) => {
            let csrf = CsrfToken::for_page(portal, req);
            let page = TokenPage {
                viewer: None,
                csrf_token: &csrf.token,
                title: "Confirm your email address",
                action: "/confirm-email",
                token: token.as_deref().unwrap_or(""),
                ask_password: false,
                password_min_length: portal.settings.password_min_length,
                errors: FormErrors::default(),
            };
            let html = pages::render(&page);
            csrf.apply(response::html(200, html))
        }
        (Client::Api, _) => {
            response::error(&PortalError::validation("POST the token to /confirm-email to confirm."), client)
        }
    }
}

/// `POST /confirm-email`: `{"token"}` confirms the address the token was sent to; `{"email"}`
/// sends a new link (same answer whether or not the address has an account, rate limited).
async fn confirm(portal: &Portal, req: &HttpRequest) -> HttpResponse {
    let Submission { client, mut fields } = match Submission::read(req, &portal.settings) {
        Ok(submission) => submission,
        Err(err) => return response::error(&err, Client::for_read(req)),
    };
    if fields.text("token").is_none() {
        return match resend_confirmation(portal, req, &mut fields).await {
            Ok(()) => match client {
                Client::Api => response::json(202, &serde_json::json!({"status": "email_sent"})),
                Client::Browser => response::html(202, pages::message(202, CONFIRMATION_SENT)),
            },
            Err(err) => response::error(&err, client),
        };
    }
    let token = fields.required("token").and_then(|t| parse_token(&t));
    let now = portal.clock.now();
    let result = match token {
        Some(token) => {
            portal.contacts.use_token(&digest(&token), TokenPurpose::ConfirmEmail, &TokenUse::ConfirmEmail, now).await
        }
        None => Ok(None),
    };
    match result {
        Ok(Some(contact_id)) => {
            audit(req, "email_confirmed", Some(&contact_id));
            match client {
                Client::Api => response::json(200, &serde_json::json!({"status": "email_confirmed"})),
                Client::Browser => {
                    response::html(200, pages::message(200, "Your email address is confirmed. You can sign in now."))
                }
            }
        }
        Ok(None) => response::error(&PortalError::TokenInvalid, client),
        Err(err) => response::error(&err.into(), client),
    }
}

async fn resend_confirmation(portal: &Portal, req: &HttpRequest, fields: &mut Fields) -> Result<(), PortalError> {
    let email = fields.required_parsed("email", Email::parse);
    fields.finish()?;
    let Some(email) = email else { return Err(PortalError::validation("Some fields need attention.")) };
    let contact = portal.contacts.find_by_login(&Login::Email(email.normalized().to_string())).await?;
    if let Some(contact) = contact.filter(|c| !c.email_confirmed)
        && email_allowed(portal, req, &contact.contact_id).await?
    {
        let (token, message) = token_email(portal, &contact, TokenPurpose::ConfirmEmail);
        portal.contacts.queue_email(Some(&token), &message).await?;
    }
    Ok(())
}
