//! The profile function: `GET /` (home page), `GET, POST /profile` and `POST /profile/password`.

use async_trait::async_trait;
use lambda_http::http::Method;
use serde::Serialize;

use super::{CsrfToken, Viewer, audit, current_viewer, require_viewer, start_session, token_email};
use crate::app::Portal;
use crate::domain::contact::Contact;
use crate::domain::email::Email;
use crate::domain::password::{Password, hash_password, verify_password};
use crate::domain::text::{parse_name, parse_phone};
use crate::domain::token::TokenPurpose;
use crate::lambda::HttpFunction;
use crate::ports::{ProfileUpdate, UpdateProfileError};
use crate::web::pages::{self, FormErrors, HomePage, ProfilePage, ViewerSummary};
use crate::web::response::{self, with_cookie};
use crate::web::{Client, Fields, HttpRequest, HttpResponse, PortalError, Submission};

pub struct Profile;

#[async_trait]
impl HttpFunction for Profile {
    async fn handle(&self, portal: &Portal, req: HttpRequest) -> HttpResponse {
        let mut client = Client::for_read(&req);
        let method = req.method().clone();
        let result = match (method, req.uri().path()) {
            (Method::GET, "/") => home(portal, &req).await,
            (Method::GET, "/profile") => profile(portal, &req, client, FormErrors::default(), 200).await,
            (Method::POST, path @ ("/profile" | "/profile/password")) => match Submission::read(&req, &portal.settings)
            {
                Ok(Submission { client: submitted_by, mut fields }) => {
                    client = submitted_by;
                    let outcome = if path == "/profile" {
                        update_profile(portal, &req, client, &mut fields).await
                    } else {
                        change_password(portal, &req, client, &mut fields).await
                    };
                    match outcome {
                        // A browser sees its form again with the problems.
                        Err(err)
                            if client == Client::Browser
                                && matches!(err, PortalError::Validation { .. } | PortalError::EmailTaken) =>
                        {
                            err.log();
                            let status = err.status();
                            profile(portal, &req, client, FormErrors::from_error(&err), status).await
                        }
                        other => other,
                    }
                }
                Err(err) => Err(err),
            },
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

async fn profile(
    portal: &Portal,
    req: &HttpRequest,
    client: Client,
    errors: FormErrors,
    status: u16,
) -> Result<HttpResponse, PortalError> {
    let Viewer { contact, .. } = require_viewer(portal, req).await?;
    Ok(match client {
        Client::Api => response::json(200, &ProfileView::of(&contact)),
        Client::Browser => {
            let csrf = CsrfToken::for_page(portal, req);
            let page = ProfilePage {
                viewer: Some(ViewerSummary::of(&contact)),
                csrf_token: &csrf.token,
                contact: &contact,
                errors,
                password_min_length: portal.settings.password_min_length,
            };
            let html = pages::render(&page);
            csrf.apply(response::html(status, html))
        }
    })
}

/// `POST /profile`: any of first name, last name, phone and email; the username cannot change. A
/// new email is unconfirmed until the link sent to it is followed, and ends the other sessions.
async fn update_profile(
    portal: &Portal,
    req: &HttpRequest,
    client: Client,
    fields: &mut Fields,
) -> Result<HttpResponse, PortalError> {
    let Viewer { contact, session } = require_viewer(portal, req).await?;
    if fields.text("username").is_some_and(|u| contact.username.as_deref() != Some(u.trim())) {
        fields.reject::<()>("username", "cannot be changed");
    }
    let first_name = fields.optional_parsed("first_name", parse_name).unwrap_or_else(|| contact.first_name.clone());
    let last_name = fields.optional_parsed("last_name", parse_name).unwrap_or_else(|| contact.last_name.clone());
    let phone = match fields.text("phone") {
        None => contact.phone.clone(),
        Some(raw) if raw.trim().is_empty() => None,
        Some(raw) => fields.check("phone", parse_phone(&raw)),
    };
    let email = fields.optional_parsed("email", Email::parse);
    fields.finish()?;
    let new_email = email.filter(|e| e.normalized() != contact.email_normalized);
    let update = ProfileUpdate { first_name, last_name, phone, new_email };
    let confirmation = update.new_email.as_ref().map(|email| {
        let mut addressed = contact.clone();
        addressed.email = email.as_str().to_string();
        addressed.email_normalized = email.normalized().to_string();
        addressed.first_name = update.first_name.clone();
        token_email(portal, &addressed, TokenPurpose::ConfirmEmail)
    });
    let now = portal.clock.now();
    let updated = match portal
        .contacts
        .update_profile(&contact, &update, now, confirmation.as_ref().map(|(t, m)| (t, m)))
        .await
    {
        Ok(updated) => updated,
        Err(UpdateProfileError::EmailTaken) => return Err(PortalError::EmailTaken),
        Err(UpdateProfileError::Conflict) => {
            return Err(PortalError::validation("Your profile changed meanwhile; reload and try again."));
        }
        Err(UpdateProfileError::Store(err)) => return Err(err.into()),
    };
    if update.new_email.is_some() {
        portal.sessions.delete_all_for_contact(&contact.contact_id, Some(&session.id_digest)).await?;
        audit(req, "email_changed", Some(&contact.contact_id));
    }
    audit(req, "profile_updated", Some(&contact.contact_id));
    Ok(match client {
        Client::Api => response::json(200, &ProfileView::of(&updated)),
        Client::Browser => response::see_other("/profile"),
    })
}

/// `POST /profile/password {"current_password","new_password"}`: every session of the contact
/// ends and this one continues under a new token. A wrong current password counts towards lockout.
async fn change_password(
    portal: &Portal,
    req: &HttpRequest,
    client: Client,
    fields: &mut Fields,
) -> Result<HttpResponse, PortalError> {
    let Viewer { contact, .. } = require_viewer(portal, req).await?;
    let current = fields.required("current_password");
    let new_password = fields.required("new_password").and_then(|raw| {
        let context = [
            contact.email.as_str(),
            &contact.first_name,
            &contact.last_name,
            contact.username.as_deref().unwrap_or(""),
        ];
        let chosen = Password::choose(raw, portal.settings.password_min_length, &context);
        fields.check("new_password", chosen)
    });
    fields.finish()?;
    let (Some(current), Some(new_password)) = (current, new_password) else {
        return Err(PortalError::validation("Some fields need attention."));
    };
    let now = portal.clock.now();
    let verified = verify_password(Password::new(current), contact.password_hash.clone()).await?;
    if !verified || contact.lockout().is_locked(now) {
        if contact.password_hash.is_some() {
            portal.contacts.record_failed_sign_in(&contact.contact_id, now, &portal.settings.lockout).await?;
        }
        audit(req, "password_change_failed", Some(&contact.contact_id));
        return Err(PortalError::field("current_password", "is not your current password"));
    }
    let hash = hash_password(new_password).await?;
    portal.contacts.set_password(&contact.contact_id, &hash, now).await?;
    portal.sessions.delete_all_for_contact(&contact.contact_id, None).await?;
    let cookie = start_session(portal, &contact).await?;
    audit(req, "password_changed", Some(&contact.contact_id));
    let reply = match client {
        Client::Api => response::no_content(),
        Client::Browser => response::see_other("/profile"),
    };
    Ok(with_cookie(reply, cookie))
}
