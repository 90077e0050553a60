//! The sign-in function: `GET, POST /signin`, `POST /signout`.

use async_trait::async_trait;
use lambda_http::http::Method;
use serde::Serialize;

use super::{CsrfToken, audit, authenticate, email_allowed, start_session, token_email};
use crate::app::Portal;
use crate::domain::contact::Login;
use crate::domain::email::Email;
use crate::domain::password::{Password, hash_password};
use crate::domain::secret::digest;
use crate::domain::token::{TokenPurpose, parse_token};
use crate::lambda::HttpFunction;
use crate::ports::TokenUse;
use crate::web::pages::{self, ForgotPasswordPage, FormErrors, SignInPage, TokenPage};
use crate::web::request::{cookie, query_param, session_cookie_name};
use crate::web::response::{self, clear_session_cookie, with_cookie};
use crate::web::{Client, Fields, HttpRequest, HttpResponse, PortalError, Submission};

pub struct SignIn;

#[async_trait]
impl HttpFunction for SignIn {
    async fn handle(&self, portal: &Portal, req: HttpRequest) -> HttpResponse {
        let method = req.method().clone();
        match (method, req.uri().path()) {
            (Method::GET, "/signin") => sign_in_page(portal, &req, "", FormErrors::default(), 200),
            (Method::POST, "/signin") => submit_sign_in(portal, &req).await,
            (Method::POST, "/signout") => sign_out(portal, &req).await,
            (Method::GET, "/forgot-password") => forgot_page(portal, &req, FormErrors::default(), 200),
            (Method::POST, "/forgot-password") => forgot(portal, &req).await,
            (Method::GET, "/reset-password") => {
                reset_page(portal, &req, query_param(&req, "token").as_deref(), FormErrors::default(), 200)
            }
            (Method::POST, "/reset-password") => reset(portal, &req).await,
            _ => response::error(&PortalError::NotFound, Client::for_read(&req)),
        }
    }
}

fn sign_in_page(portal: &Portal, req: &HttpRequest, login: &str, errors: FormErrors, status: u16) -> HttpResponse {
    let csrf = CsrfToken::for_page(portal, req);
    let page = SignInPage {
        viewer: None,
        csrf_token: &csrf.token,
        login,
        errors,
        open_registration: portal.settings.open_registration,
        invitations_enabled: portal.settings.invitations_enabled,
    };
    let html = pages::render(&page);
    csrf.apply(response::html(status, html))
}

#[derive(Serialize)]
struct SignedIn<'a> {
    contact_id: &'a str,
    email: &'a str,
    roles: &'a [String],
}

async fn submit_sign_in(portal: &Portal, req: &HttpRequest) -> HttpResponse {
    let Submission { client, mut fields } = match Submission::read(req, &portal.settings) {
        Ok(submission) => submission,
        Err(err) => return response::error(&err, Client::for_read(req)),
    };
    let login = fields.required("login");
    let password = fields.required("password");
    let result = match (fields.finish(), login.as_deref(), password) {
        (Ok(()), Some(login), Some(password)) => authenticate(portal, req, login, Password::new(password)).await,
        (Err(err), ..) => Err(err),
        _ => Err(PortalError::validation("login and password are required")),
    };
    let contact = match result {
        Ok(contact) => contact,
        Err(err) if client == Client::Browser && !matches!(err, PortalError::Internal(_)) => {
            err.log();
            return sign_in_page(
                portal,
                req,
                login.as_deref().unwrap_or_default(),
                FormErrors::from_error(&err),
                err.status(),
            );
        }
        Err(err) => return response::error(&err, client),
    };
    let cookie = match start_session(portal, &contact).await {
        Ok(cookie) => cookie,
        Err(err) => return response::error(&err, client),
    };
    audit(req, "signed_in", Some(&contact.contact_id));
    let reply = match client {
        Client::Api => response::json(
            200,
            &SignedIn { contact_id: &contact.contact_id, email: &contact.email, roles: &contact.roles },
        ),
        Client::Browser => response::see_other("/"),
    };
    with_cookie(reply, cookie)
}

async fn sign_out(portal: &Portal, req: &HttpRequest) -> HttpResponse {
    let client = match Submission::read(req, &portal.settings) {
        Ok(submission) => submission.client,
        Err(err) => return response::error(&err, Client::for_read(req)),
    };
    if let Some(token) = cookie(req, session_cookie_name(&portal.settings)).filter(|t| !t.is_empty()) {
        match portal.sessions.delete(&digest(token)).await {
            Ok(Some(session)) => audit(req, "signed_out", Some(&session.contact_id)),
            Ok(None) => {}
            Err(err) => return response::error(&err.into(), client),
        }
    }
    let reply = match client {
        Client::Api => response::no_content(),
        Client::Browser => response::see_other("/"),
    };
    with_cookie(reply, clear_session_cookie(&portal.settings))
}

fn forgot_page(portal: &Portal, req: &HttpRequest, errors: FormErrors, status: u16) -> HttpResponse {
    let csrf = CsrfToken::for_page(portal, req);
    let page = ForgotPasswordPage { viewer: None, csrf_token: &csrf.token, errors };
    let html = pages::render(&page);
    csrf.apply(response::html(status, html))
}

const RESET_SENT: &str = "If an account uses that address, we sent it a link to choose a new password. The link works once, for a limited time.";

/// `POST /forgot-password {"email"}`: the same answer whether or not the account exists; the email
/// goes out only within the per-account and per-address allowances.
async fn forgot(portal: &Portal, req: &HttpRequest) -> HttpResponse {
    let Submission { client, mut fields } = match Submission::read(req, &portal.settings) {
        Ok(submission) => submission,
        Err(err) => return response::error(&err, Client::for_read(req)),
    };
    let email = fields.required_parsed("email", Email::parse);
    let result = match (fields.finish(), email) {
        (Ok(()), Some(email)) => send_reset(portal, req, &email).await,
        (Err(err), _) => Err(err),
        _ => Err(PortalError::validation("Some fields need attention.")),
    };
    match (result, client) {
        (Ok(()), Client::Api) => response::json(202, &serde_json::json!({"status": "email_sent"})),
        (Ok(()), Client::Browser) => response::html(202, pages::message(202, RESET_SENT)),
        (Err(err), Client::Browser) if matches!(err, PortalError::Validation { .. }) => {
            err.log();
            forgot_page(portal, req, FormErrors::from_error(&err), err.status())
        }
        (Err(err), client) => response::error(&err, client),
    }
}

async fn send_reset(portal: &Portal, req: &HttpRequest, email: &Email) -> Result<(), PortalError> {
    let contact = portal.contacts.find_by_login(&Login::Email(email.normalized().to_string())).await?;
    let Some(contact) = contact.filter(|c| c.password_hash.is_some()) else {
        audit(req, "password_reset_requested_unknown", None);
        return Ok(());
    };
    if email_allowed(portal, req, &contact.contact_id).await? {
        let (token, message) = token_email(portal, &contact, TokenPurpose::ResetPassword);
        portal.contacts.queue_email(Some(&token), &message).await?;
        audit(req, "password_reset_requested", Some(&contact.contact_id));
    }
    Ok(())
}

fn reset_page(
    portal: &Portal,
    req: &HttpRequest,
    token: Option<&str>,
    errors: FormErrors,
    status: u16,
) -> HttpResponse {
    let csrf = CsrfToken::for_page(portal, req);
    let token = token.and_then(parse_token).unwrap_or_default();
    let page = TokenPage {
        viewer: None,
        csrf_token: &csrf.token,
        title: "Choose a new password",
        action: "/reset-password",
        token: &token,
        ask_password: true,
        password_min_length: portal.settings.password_min_length,
        errors,
    };
    let html = pages::render(&page);
    csrf.apply(response::html(status, html))
}

/// `POST /reset-password {"token","new_password"}`: sets the password, ends every session, and
/// does not sign in by itself.
async fn reset(portal: &Portal, req: &HttpRequest) -> HttpResponse {
    let Submission { client, mut fields } = match Submission::read(req, &portal.settings) {
        Ok(submission) => submission,
        Err(err) => return response::error(&err, Client::for_read(req)),
    };
    let raw_token = fields.text("token");
    let result = reset_password(portal, req, raw_token.as_deref(), &mut fields).await;
    match (result, client) {
        (Ok(()), Client::Api) => response::no_content(),
        (Ok(()), Client::Browser) => response::html(
            200,
            pages::message(
                200,
                "Your password is changed and every session of yours has ended. Sign in with the new password.",
            ),
        ),
        (Err(err), Client::Browser) if !matches!(err, PortalError::Internal(_)) => {
            err.log();
            reset_page(portal, req, raw_token.as_deref(), FormErrors::from_error(&err), err.status())
        }
        (Err(err), client) => response::error(&err, client),
    }
}

async fn reset_password(
    portal: &Portal,
    req: &HttpRequest,
    raw_token: Option<&str>,
    fields: &mut Fields,
) -> Result<(), PortalError> {
    let new_password = fields.required("new_password").and_then(|raw| {
        let chosen = Password::choose(raw, portal.settings.password_min_length, &[]);
        fields.check("new_password", chosen)
    });
    fields.finish()?;
    let token = raw_token.and_then(parse_token).ok_or(PortalError::TokenInvalid)?;
    let new_password = new_password.ok_or_else(|| PortalError::validation("Some fields need attention."))?;
    let hash = hash_password(new_password).await?;
    let used = portal
        .contacts
        .use_token(&digest(&token), TokenPurpose::ResetPassword, &TokenUse::ResetPassword(hash), portal.clock.now())
        .await?;
    let contact_id = used.ok_or(PortalError::TokenInvalid)?;
    portal.sessions.delete_all_for_contact(&contact_id, None).await?;
    audit(req, "password_reset", Some(&contact_id));
    Ok(())
}
