//! The profile function: `GET /` (home page) and `GET /profile`.

use async_trait::async_trait;
use lambda_http::http::Method;
use serde::Serialize;

use super::{CsrfToken, Viewer, current_viewer, require_viewer};
use crate::app::Portal;
use crate::domain::contact::Contact;
use crate::lambda::HttpFunction;
use crate::web::pages::{self, HomePage, ProfilePage, ViewerSummary};
use crate::web::response;
use crate::web::{Client, HttpRequest, HttpResponse, PortalError};

pub struct Profile;

#[async_trait]
impl HttpFunction for Profile {
    async fn handle(&self, portal: &Portal, req: HttpRequest) -> HttpResponse {
        let client = Client::for_read(&req);
        let method = req.method().clone();
        let result = match (method, req.uri().path()) {
            (Method::GET, "/") => home(portal, &req).await,
            (Method::GET, "/profile") => profile(portal, &req, client).await,
            _ => Err(PortalError::NotFound),
        };
        result.unwrap_or_else(|err| response::error(&err, client))
    }
}

async fn home(portal: &Portal, req: &HttpRequest) -> Result<HttpResponse, PortalError> {
    let viewer = current_viewer(portal, req).await?;
    let csrf = CsrfToken::for_page(portal, req);
    let page = HomePage {
        viewer: viewer.as_ref().map(|v| ViewerSummary::of(&v.contact)),
        csrf_token: &csrf.token,
        open_registration: portal.settings.open_registration,
        invitations_enabled: portal.settings.invitations_enabled,
    };
    let html = pages::render(&page);
    Ok(csrf.apply(response::html(200, html)))
}

/// The profile as the contract's JSON shows it.
#[derive(Serialize)]
pub struct ProfileView<'a> {
    contact_id: &'a str,
    email: &'a str,
    first_name: &'a str,
    last_name: &'a str,
    username: Option<&'a str>,
    phone: Option<&'a str>,
    roles: &'a [String],
    email_confirmed: bool,
}

impl<'a> ProfileView<'a> {
    pub fn of(contact: &'a Contact) -> Self {
        ProfileView {
            contact_id: &contact.contact_id,
            email: &contact.email,
            first_name: &contact.first_name,
            last_name: &contact.last_name,
            username: contact.username.as_deref(),
            phone: contact.phone.as_deref(),
            roles: &contact.roles,
            email_confirmed: contact.email_confirmed,
        }
    }
}

async fn profile(portal: &Portal, req: &HttpRequest, client: Client) -> Result<HttpResponse, PortalError> {
    let Viewer { contact, .. } = require_viewer(portal, req).await?;
    Ok(match client {
        Client::Api => response::json(200, &ProfileView::of(&contact)),
        Client::Browser => {
            let csrf = CsrfToken::for_page(portal, req);
            let page = ProfilePage { viewer: Some(ViewerSummary::of(&contact)), csrf_token: &csrf.token, contact: &contact };
            let html = pages::render(&page);
            csrf.apply(response::html(200, html))
        }
    })
}
