//! The register function: `GET, POST /register` (open registration).

use async_trait::async_trait;
use lambda_http::http::Method;
use serde::Serialize;

use super::{CsrfToken, audit, start_session};
use crate::app::Portal;
use crate::domain::contact::{Contact, NewContact};
use crate::domain::email::Email;
use crate::domain::password::{Password, hash_password};
use crate::domain::text::{Username, parse_name, parse_phone};
use crate::lambda::HttpFunction;
use crate::ports::CreateContactError;
use crate::web::pages::{self, FormErrors, RegisterPage, RegisterValues};
use crate::web::response::{self, with_cookie};
use crate::web::{Client, Fields, HttpRequest, HttpResponse, PortalError, Submission};

pub struct Register;

#[async_trait]
impl HttpFunction for Register {
    async fn handle(&self, portal: &Portal, req: HttpRequest) -> HttpResponse {
        // With open registration off the page does not exist, as in Power Pages.
        if !portal.settings.open_registration {
            return response::error(&PortalError::NotFound, Client::for_read(&req));
        }
        let method = req.method().clone();
        match (method, req.uri().path()) {
            (Method::GET, "/register") => register_page(portal, &req, RegisterValues::default(), FormErrors::default(), 200),
            (Method::POST, "/register") => submit(portal, &req).await,
            _ => response::error(&PortalError::NotFound, Client::for_read(&req)),
        }
    }
}

fn register_page(portal: &Portal, req: &HttpRequest, values: RegisterValues, errors: FormErrors, status: u16) -> HttpResponse {
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
struct Registered<'a> {
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
        Ok((contact, cookie)) => {
            let reply = match client {
                Client::Api => response::json(
                    201,
                    &Registered { contact_id: &contact.contact_id, email: &contact.email, email_confirmed: contact.email_confirmed },
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

async fn register(portal: &Portal, req: &HttpRequest, fields: &mut Fields) -> Result<(Contact, String), PortalError> {
    let registration = parse_registration(fields, portal.settings.password_min_length)?;
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
    match portal.contacts.create(&contact).await {
        Ok(()) => {}
        Err(CreateContactError::EmailTaken) => return Err(PortalError::EmailTaken),
        Err(CreateContactError::UsernameTaken) => return Err(PortalError::field("username", "is already taken")),
        Err(CreateContactError::Store(err)) => return Err(err.into()),
    }
    audit(req, "registered", Some(&contact.contact_id));
    let cookie = start_session(portal, &contact).await?;
    Ok((contact, cookie))
}
