//! Sign-in with an OpenID Connect provider (the external-sign-in function): `GET
//! /signin/external/{provider}` (→ the provider), `GET /signin/external/{provider}/callback`, and
//! linking (`GET, POST /profile/identities/{provider}/link`); and, in the profile function, the
//! identities of the account (`GET /profile/identities`, `GET, POST
//! /profile/identities/{provider}/unlink`).

use axum::Router;
use axum::http::header::{LOCATION, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;

use crate::config::Settings;
use crate::domain::audit::SourceAddress;
use crate::domain::contact::Contact;
use crate::domain::identity::{ExternalPurpose, local_return_to};
use crate::domain::time::{human, rfc3339};
use crate::usecases::external::{self, Callback, Finished, Started};
use crate::usecases::reauth::Reauthentication;
use crate::web::extract::PathParam;
use crate::web::pages::{FormErrors, IdentitiesPage, IdentityChangePage, IdentityRow, ViewerSummary};
use crate::web::request::cookie;
use crate::web::{
    AppState, ArrivedWith, Fields, Form, HttpFunction, Page, PortalError, Rejection, Reply, Submission, Viewer,
};

use super::entry::entry_reply;

pub struct ExternalSignIn;

impl HttpFunction for ExternalSignIn {
    fn routes(&self) -> Router<AppState> {
        Router::new()
            .route("/signin/external/{provider}", get(start_sign_in))
            .route("/signin/external/{provider}/callback", get(callback))
            .route("/profile/identities/{provider}/link", get(link_page).post(link))
            .route("/redeem/external/{provider}", axum::routing::post(start_redeem))
    }
}

/// The profile function's routes of the account's identities.
pub fn profile_routes() -> Router<AppState> {
    Router::new()
        .route("/profile/identities", get(list))
        .route("/profile/identities/{provider}/unlink", get(unlink_page).post(unlink))
}

fn binding_cookie_name(settings: &Settings) -> &'static str {
    if settings.secure_cookies { "__Host-portal_external" } else { "portal_external" }
}

/// The cookie that binds a trip to its browser: `Lax`, so the provider's redirect back (a
/// top-level navigation from another site) carries it.
fn binding_cookie(settings: &Settings, token: &str) -> String {
    let secure = if settings.secure_cookies { "; Secure" } else { "" };
    format!(
        "{}={token}; Max-Age={}; Path=/; HttpOnly; SameSite=Lax{secure}",
        binding_cookie_name(settings),
        crate::domain::identity::EXTERNAL_STATE_SECS
    )
}

fn binding<'a>(settings: &Settings, headers: &'a HeaderMap) -> Option<&'a str> {
    cookie(headers, binding_cookie_name(settings)).filter(|t| !t.is_empty())
}

/// To the provider: a 302 (for programs as for browsers: the contract's answer), with the cookie.
fn to_provider(settings: &Settings, started: &Started) -> Response {
    let mut response = StatusCode::FOUND.into_response();
    if let Ok(location) = HeaderValue::from_str(&started.location) {
        response.headers_mut().insert(LOCATION, location);
    }
    if let Ok(cookie) = HeaderValue::from_str(&binding_cookie(settings, &started.browser_token)) {
        response.headers_mut().append(SET_COOKIE, cookie);
    }
    response
}

/// `GET /signin/external/{provider}` (optional `?return_to=<local path>`): to the provider.
async fn start_sign_in(
    PathParam(provider): PathParam<String>,
    source: SourceAddress,
    headers: HeaderMap,
    page: Page,
) -> Result<Response, PortalError> {
    let portal = &page.portal;
    let return_to = local_return_to(page.query("return_to").as_deref());
    let browser = binding(&portal.settings, &headers);
    let started = external::start(portal, &source, &provider, ExternalPurpose::SignIn { return_to }, browser).await?;
    Ok(to_provider(&portal.settings, &started))
}

/// `GET /signin/external/{provider}/callback`: the provider's answer, through the door (or the
/// identity linked); every failure is `invalid_credentials` (a page for browsers).
async fn callback(
    PathParam(provider): PathParam<String>,
    source: SourceAddress,
    arrived: ArrivedWith,
    headers: HeaderMap,
    page: Page,
) -> Result<Reply, PortalError> {
    let portal = page.portal.clone();
    let (code, state, error) = (page.query("code"), page.query("state"), page.query("error"));
    let answer = Callback { code: code.as_deref(), state: state.as_deref(), error: error.as_deref() };
    let browser = binding(&portal.settings, &headers);
    match external::finish(&portal, &source, &provider, answer, browser, arrived.arrival()).await? {
        Finished::SignedIn { entry, return_to } => Ok(entry_reply(&portal.settings, &entry, &return_to)),
        Finished::Linked(contact) => {
            Ok(identities_reply(&portal.settings, &contact).or_see_other("/profile/identities"))
        }
        Finished::Redeemed(redeemed) => {
            let (invitation, redeemed) = *redeemed;
            super::redeem::redeemed_reply(&portal.settings, &invitation, &redeemed)
        }
    }
}

/// The redeem page's "Redeem with <provider>": the code (checked before the trip), the terms.
struct RedeemWithForm {
    code: String,
    accept_terms: bool,
}

impl Form for RedeemWithForm {
    type Context = ();

    fn parse(fields: &mut Fields, _: &Settings) -> Result<Self, PortalError> {
        let code = fields.required("code");
        let accept_terms = fields.flag("accept_terms");
        fields.done(|| Some(RedeemWithForm { code: code?, accept_terms }))
    }

    fn page(_: &Page, _: &mut Fields, _: &(), _: FormErrors) -> Option<Response> {
        None
    }
}

/// `POST /redeem/external/{provider} {"code"}` (optional `"accept_terms"`): the code checked,
/// then to the provider; back at the callback, the invitation is redeemed onto the account the
/// identity yields.
async fn start_redeem(
    _: crate::web::extract::InvitationsEnabled,
    PathParam(provider): PathParam<String>,
    source: SourceAddress,
    headers: HeaderMap,
    mut form: Submission<RedeemWithForm>,
) -> Result<Response, Rejection> {
    let portal = form.page.portal.clone();
    let browser = binding(&portal.settings, &headers);
    let (code, accept_terms) = (form.code.clone(), form.accept_terms);
    match external::start_redeem(&portal, &source, &provider, &code, accept_terms, browser).await {
        Ok(started) => Ok(to_provider(&portal.settings, &started)),
        Err(err) => Err(form.reject(err)),
    }
}

/// The form of a change to an identity: re-authentication, and the subject (unlink only).
struct IdentityForm {
    given: Reauthentication,
    subject: Option<String>,
}

impl Form for IdentityForm {
    /// The provider of the path.
    type Context = String;

    fn parse(fields: &mut Fields, _: &Settings) -> Result<Self, PortalError> {
        let given = fields.reauthentication();
        let subject = fields.text("subject").filter(|s| !s.is_empty());
        fields.done(|| Some(IdentityForm { given, subject }))
    }

    fn page(page: &Page, sent: &mut Fields, provider: &String, errors: FormErrors) -> Option<Response> {
        let subject = sent.text("subject").unwrap_or_default();
        Some(render_change(page, None, provider, (!subject.is_empty()).then_some(subject.as_str()), errors))
    }
}

/// The form that links (`subject` none) or unlinks an identity of `provider`.
fn render_change(
    page: &Page,
    viewer: Option<&Contact>,
    provider: &str,
    subject: Option<&str>,
    errors: FormErrors,
) -> Response {
    let name = page.settings().oidc_provider(provider).map_or_else(|| provider.to_string(), |p| p.name.clone());
    let (heading, explanation, action, button) = match subject {
        None => (
            format!("Link {name}"),
            "Confirm it is you; then sign in at the provider, and its account will sign in to this one too.",
            format!("/profile/identities/{provider}/link"),
            format!("Continue to {name}"),
        ),
        Some(_) => (
            format!("Unlink {name}"),
            "Confirm it is you; that account will no longer sign in to this one.",
            format!("/profile/identities/{provider}/unlink"),
            format!("Unlink {name}"),
        ),
    };
    page.render(
        StatusCode::OK,
        &IdentityChangePage {
            viewer: viewer.map(ViewerSummary::of),
            csrf_token: &page.csrf_token,
            heading,
            explanation,
            action,
            subject: subject.unwrap_or_default(),
            button,
            errors,
        },
    )
}

/// `GET /profile/identities/{provider}/link`: the form.
async fn link_page(
    Viewer(signed_in): Viewer,
    PathParam(provider): PathParam<String>,
    page: Page,
) -> Result<Response, PortalError> {
    page.settings().oidc_provider(&provider).ok_or(PortalError::NotFound)?;
    Ok(render_change(&page, Some(&signed_in.contact), &provider, None, FormErrors::default()))
}

/// `POST /profile/identities/{provider}/link` (re-authentication): to the provider; back at the
/// callback, the identity is linked.
async fn link(
    Viewer(signed_in): Viewer,
    PathParam(provider): PathParam<String>,
    source: SourceAddress,
    headers: HeaderMap,
    mut form: Submission<IdentityForm>,
) -> Result<Response, Rejection> {
    let portal = form.page.portal.clone();
    let browser = binding(&portal.settings, &headers);
    let given = form.given.clone();
    match external::start_link(&portal, &source, &signed_in.contact, &provider, given, browser).await {
        Ok(started) => Ok(to_provider(&portal.settings, &started)),
        Err(err) => Err(form.reject_with(err, &provider)),
    }
}

#[derive(Serialize)]
struct IdentityView<'a> {
    provider: &'a str,
    subject: &'a str,
    email: Option<&'a str>,
    linked_at: String,
}

#[derive(Serialize)]
struct ProviderView<'a> {
    id: &'a str,
    name: &'a str,
}

#[derive(Serialize)]
struct IdentitiesView<'a> {
    identities: Vec<IdentityView<'a>>,
    providers: Vec<ProviderView<'a>>,
}

fn identities_reply(settings: &Settings, contact: &Contact) -> Reply {
    let view = IdentitiesView {
        identities: contact
            .identities
            .iter()
            .map(|i| IdentityView {
                provider: &i.provider,
                subject: &i.subject,
                email: i.email.as_deref(),
                linked_at: rfc3339(i.linked_at),
            })
            .collect(),
        providers: settings.oidc_providers.iter().map(|p| ProviderView { id: &p.id, name: &p.name }).collect(),
    };
    Reply::json(StatusCode::OK, &view)
}

/// `GET /profile/identities`: the identities linked to the account, and the site's providers.
async fn list(Viewer(signed_in): Viewer, page: Page) -> Reply {
    let contact = signed_in.contact.clone();
    let settings = page.settings().clone();
    identities_reply(&settings, &contact).or_page(move || {
        let name_of = |id: &str| settings.oidc_provider(id).map_or_else(|| id.to_string(), |p| p.name.clone());
        let identities = contact
            .identities
            .iter()
            .map(|i| IdentityRow {
                provider: i.provider.clone(),
                provider_name: name_of(&i.provider),
                subject: i.subject.clone(),
                email: i.email.clone().unwrap_or_default(),
                linked_at: human(i.linked_at),
            })
            .collect();
        page.render(
            StatusCode::OK,
            &IdentitiesPage {
                viewer: Some(ViewerSummary::of(&contact)),
                csrf_token: &page.csrf_token,
                identities,
                providers: settings.provider_names(),
            },
        )
    })
}

/// `GET /profile/identities/{provider}/unlink?subject=`: the form.
async fn unlink_page(
    Viewer(signed_in): Viewer,
    PathParam(provider): PathParam<String>,
    page: Page,
) -> Result<Response, PortalError> {
    let subject = page.query("subject").unwrap_or_default();
    if !signed_in.contact.identities.iter().any(|i| i.is(&provider, &subject)) {
        return Err(PortalError::NotFound);
    }
    Ok(render_change(&page, Some(&signed_in.contact), &provider, Some(&subject), FormErrors::default()))
}

/// `POST /profile/identities/{provider}/unlink {"subject"}` (re-authentication): 204.
async fn unlink(
    Viewer(signed_in): Viewer,
    PathParam(provider): PathParam<String>,
    source: SourceAddress,
    mut form: Submission<IdentityForm>,
) -> Result<Reply, Rejection> {
    let portal = form.page.portal.clone();
    let Some(subject) = form.subject.clone() else {
        return Err(form.reject_with(PortalError::field("subject", "is required"), &provider));
    };
    let given = form.given.clone();
    match external::unlink(&portal, &source, &signed_in.contact, &provider, &subject, given).await {
        Ok(_) => Ok(Reply::no_content().or_see_other("/profile/identities")),
        Err(err) => Err(form.reject_with(err, &provider)),
    }
}
