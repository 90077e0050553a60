//! The sign-in function: `GET, POST /signin`, `POST /signout`.

use async_trait::async_trait;
use lambda_http::http::Method;
use serde::Serialize;

use super::{CsrfToken, audit, authenticate, start_session};
use crate::app::Portal;
use crate::domain::password::Password;
use crate::domain::secret::digest;
use crate::lambda::HttpFunction;
use crate::web::pages::{self, FormErrors, SignInPage};
use crate::web::request::{cookie, session_cookie_name};
use crate::web::response::{self, clear_session_cookie, with_cookie};
use crate::web::{Client, HttpRequest, HttpResponse, PortalError, Submission};

pub struct SignIn;

#[async_trait]
impl HttpFunction for SignIn {
    async fn handle(&self, portal: &Portal, req: HttpRequest) -> HttpResponse {
        let method = req.method().clone();
        match (method, req.uri().path()) {
            (Method::GET, "/signin") => sign_in_page(portal, &req, "", FormErrors::default(), 200),
            (Method::POST, "/signin") => submit_sign_in(portal, &req).await,
            (Method::POST, "/signout") => sign_out(portal, &req).await,
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
            return sign_in_page(portal, req, login.as_deref().unwrap_or_default(), FormErrors::from_error(&err), err.status());
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
        let id_digest = digest(token);
        let revoked = match portal.sessions.get(&id_digest).await {
            Ok(Some(session)) => portal.sessions.delete(&id_digest).await.map(|()| Some(session)),
            Ok(None) => Ok(None),
            Err(err) => Err(err),
        };
        match revoked {
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

