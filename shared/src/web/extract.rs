//! Extractors: the checks every route needs, done once. A handler names what it needs in its
//! arguments (a [`Submission`] of its form, the signed-in [`Viewer`] or [`Admin`], the
//! [`SourceAddress`], a [`Page`] to render) and gets it already checked.

use std::ops::{Deref, DerefMut};

use askama::Template;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, OptionalFromRequestParts, Path, Request};
use axum::http::header::{HeaderValue, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{Html, IntoResponse, Response};
use lambda_http::request::RequestContext;
use std::future::Future;

use super::AppState;
use super::client::{Client, media_type};
use super::pages::{self, FormErrors};
use super::reply::Rejection;
use super::request::{
    Fields, check_origin, cookie, csrf_cookie_name, device_cookie_name, query_param, session_cookie_name,
};
use super::response::csrf_cookie;
use crate::Portal;
use crate::config::Settings;
use crate::domain::audit::SourceAddress;
use crate::domain::secret::{random_token, same_secret};
use crate::error::PortalError;
use crate::usecases::session::{self, SignedIn};

/// The caller's address as CloudFront saw it, for a request that came through the edge (put in
/// the request by `web::app`'s edge check, which has checked CloudFront's secret header first).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ViewerAddress(pub String);

impl ViewerAddress {
    /// From `CloudFront-Viewer-Address`, `ip:port` (IPv6 without brackets: `2001:db8::1:443`).
    pub fn parse(header: &str) -> Option<Self> {
        let (ip, port) = header.trim().rsplit_once(':')?;
        port.parse::<u16>().ok()?;
        ip.parse::<std::net::IpAddr>().ok().map(|ip| ViewerAddress(ip.to_string()))
    }
}

/// The caller's address as the front end saw it: through the edge, CloudFront's viewer address
/// ([`ViewerAddress`]); else API Gateway (HTTP and REST APIs, and function URLs) says so in the
/// request context; an ALB appends it to `X-Forwarded-For`, so there it is the last entry (the
/// earlier ones are whatever the client claimed).
impl<S: Send + Sync> FromRequestParts<S> for SourceAddress {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        if let Some(ViewerAddress(viewer)) = parts.extensions.get::<ViewerAddress>() {
            return Ok(SourceAddress::new(Some(viewer.clone())));
        }
        let address = match parts.extensions.get::<RequestContext>() {
            Some(RequestContext::ApiGatewayV2(ctx)) => ctx.http.source_ip.clone(),
            Some(RequestContext::ApiGatewayV1(ctx)) => ctx.identity.source_ip.clone(),
            Some(RequestContext::Alb(_)) => parts
                .headers
                .get_all("x-forwarded-for")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .next_back()
                .map(|a| a.trim().to_string()),
            _ => None,
        };
        Ok(SourceAddress::new(address))
    }
}

/// What rendering a page needs: the portal's settings, and the anti-CSRF token of its forms (the
/// request's cookie, or a new one that the page's response sets: a double-submit cookie).
pub struct Page {
    pub portal: AppState,
    pub csrf_token: String,
    new_csrf_cookie: bool,
    /// The query string, read through [`Page::query`].
    query: Option<String>,
}

impl Page {
    fn new(portal: AppState, headers: &HeaderMap, uri: &Uri) -> Page {
        let existing = cookie(headers, csrf_cookie_name(&portal.settings)).filter(|t| t.len() >= 32);
        let (csrf_token, new_csrf_cookie) = match existing {
            Some(token) => (token.to_string(), false),
            None => (random_token(), true),
        };
        Page { portal, csrf_token, new_csrf_cookie, query: uri.query().map(str::to_string) }
    }

    pub fn settings(&self) -> &Settings {
        &self.portal.settings
    }

    /// Query parameter `name`, if given.
    pub fn query(&self, name: &str) -> Option<String> {
        query_param(self.query.as_deref(), name)
    }

    /// The page as an HTML response, setting the anti-CSRF cookie when it is new.
    pub fn render(&self, status: StatusCode, page: &impl Template) -> Response {
        let mut response = (status, Html(pages::render(page))).into_response();
        if self.new_csrf_cookie
            && let Ok(value) = HeaderValue::from_str(&csrf_cookie(&self.portal.settings, &self.csrf_token))
        {
            response.headers_mut().append(SET_COOKIE, value);
        }
        response
    }
}

/// The portal with the site settings as they stand for this request ([`crate::Portal::current`],
/// put in the request by `web::app`'s layer), or the function's own where no layer ran.
#[derive(Clone)]
pub struct Current(pub AppState);

fn current(extensions: &axum::http::Extensions, state: &AppState) -> AppState {
    extensions.get::<Current>().map_or_else(|| state.clone(), |c| c.0.clone())
}

impl FromRequestParts<AppState> for Page {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        Ok(Page::new(current(&parts.extensions, state), &parts.headers, &parts.uri))
    }
}

/// A route's form input: parsed from the submitted fields, form or JSON alike.
pub trait Form: Sized + Send {
    /// What showing the form again needs besides the values sent (the invitation a redeem form
    /// is for, say).
    type Context: Default + Send;

    /// What the page needs, found from the request, when the submission itself is refused (the
    /// signed-in contact whose profile form it is, say).
    fn context(_parts: &mut Parts, _state: &AppState) -> impl Future<Output = Self::Context> + Send {
        async { Self::Context::default() }
    }

    /// Reads the input; each field's problem is recorded in `fields` (see [`Fields::done`]).
    fn parse(fields: &mut Fields, settings: &Settings) -> Result<Self, PortalError>;

    /// The page that shows the form again with the values sent (`sent`) and the problems, or
    /// `None` when a failure shows the error page instead.
    fn page(_page: &Page, _sent: &mut Fields, _context: &Self::Context, _errors: FormErrors) -> Option<Response> {
        None
    }
}

/// A form with no fields (sign-out, revoke, resend): the submission checks still apply.
pub struct NoFields;

impl Form for NoFields {
    type Context = ();

    fn parse(_: &mut Fields, _: &Settings) -> Result<Self, PortalError> {
        Ok(NoFields)
    }
}

/// A state-changing request, checked and parsed: the body within the limit (413), a form or JSON
/// (415), well-formed (400), from this site's origin and, for a form, carrying the anti-CSRF token
/// of its cookie (403); then its fields parsed into `T`, each problem named in `fields` (400).
pub struct Submission<T: Form> {
    pub input: T,
    /// The fields as sent, to show them again.
    pub sent: Fields,
    pub page: Page,
}

impl<T: Form> Submission<T> {
    /// The failure `error`, with the form shown again to a browser when it can mend it.
    pub fn reject(&mut self, error: PortalError) -> Rejection {
        self.reject_with(error, &T::Context::default())
    }

    /// As [`Submission::reject`], with what the form's page needs besides the values sent.
    pub fn reject_with(&mut self, error: PortalError, context: &T::Context) -> Rejection {
        let form = reshow::<T>(&error, &self.page, &mut self.sent, context);
        Rejection::with_form(error, form)
    }
}

/// The form's page again, for a browser and a fault it can mend.
fn reshow<T: Form>(error: &PortalError, page: &Page, sent: &mut Fields, context: &T::Context) -> Option<Response> {
    if !error.is_client_fault() || Client::current() != Client::Browser {
        return None;
    }
    T::page(page, sent, context, FormErrors::from_error(error))
}

impl<T: Form> Deref for Submission<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.input
    }
}

impl<T: Form> DerefMut for Submission<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.input
    }
}

impl<T: Form> FromRequest<AppState> for Submission<T> {
    type Rejection = Rejection;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Rejection> {
        let portal = current(req.extensions(), state);
        let settings = &portal.settings;
        let media_type = media_type(&req);
        let (mut parts, body) = req.into_parts();
        let page = Page::new(portal.clone(), &parts.headers, &parts.uri);
        let body = Bytes::from_request(Request::from_parts(parts.clone(), body), state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                PortalError::PayloadTooLarge
            } else {
                PortalError::validation("The body could not be read.")
            }
        })?;
        let is_form = match media_type.as_deref() {
            Some("application/json") => false,
            Some("application/x-www-form-urlencoded") => true,
            _ => return Err(PortalError::UnsupportedMediaType.into()),
        };
        check_origin(&parts.headers, settings)?;
        let text = std::str::from_utf8(&body).map_err(|_| PortalError::validation("The body is not valid UTF-8."))?;
        let mut sent = if is_form { Fields::from_form(text)? } else { Fields::from_json(text)? };
        if is_form {
            let expected = cookie(&parts.headers, csrf_cookie_name(settings));
            match (expected, sent.csrf_token()) {
                (Some(expected), Some(given)) if same_secret(expected, given) => {}
                _ => return Err(PortalError::Forbidden("csrf token missing or wrong").into()),
            }
        }
        match T::parse(&mut sent, settings) {
            Ok(input) => Ok(Submission { input, sent, page }),
            Err(error) => {
                let form = match error.is_client_fault() && Client::current() == Client::Browser {
                    true => reshow::<T>(&error, &page, &mut sent, &T::context(&mut parts, &portal).await),
                    false => None,
                };
                Err(Rejection::with_form(error, form))
            }
        }
    }
}

/// The signed-in contact and their session: `unauthenticated` without a valid session cookie (a
/// browser is sent to the sign-in page).
pub struct Viewer(pub SignedIn);

impl Deref for Viewer {
    type Target = SignedIn;

    fn deref(&self) -> &SignedIn {
        &self.0
    }
}

/// The routes a session limited to the two-factor set-up may use.
const SET_UP_ROUTES: &str = "/profile/two-factor";
/// The one route a session limited to accepting the terms of use may use.
const TERMS_ROUTE: &str = "/terms";

async fn signed_in(parts: &Parts, portal: &Portal) -> Result<Option<SignedIn>, PortalError> {
    let signed_in = match cookie(&parts.headers, session_cookie_name(&portal.settings)).filter(|t| !t.is_empty()) {
        Some(token) => session::current(portal, token).await?,
        None => None,
    };
    if signed_in.as_ref().is_some_and(|s| s.session.terms_only) && parts.uri.path() != TERMS_ROUTE {
        return Err(PortalError::TermsRequired);
    }
    if signed_in.as_ref().is_some_and(|s| s.session.setup_only) && !parts.uri.path().starts_with(SET_UP_ROUTES) {
        return Err(PortalError::SecondFactorSetupRequired);
    }
    Ok(signed_in)
}

impl FromRequestParts<AppState> for Viewer {
    type Rejection = PortalError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, PortalError> {
        signed_in(parts, &current(&parts.extensions, state)).await?.map(Viewer).ok_or(PortalError::Unauthenticated)
    }
}

impl OptionalFromRequestParts<AppState> for Viewer {
    type Rejection = PortalError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Option<Self>, PortalError> {
        Ok(signed_in(parts, &current(&parts.extensions, state)).await?.map(Viewer))
    }
}

/// A signed-in contact with the `Administrators` web role; `forbidden` for anyone else signed in.
/// The cookies a request arrived with that a sign-in or redemption replaces: the session (ended)
/// and the device cookie (a trusted device of the account signing in keeps it).
pub struct ArrivedWith {
    pub session: Option<String>,
    pub device: Option<String>,
    /// The User-Agent header, as far as a session keeps it.
    pub user_agent: Option<String>,
}

impl ArrivedWith {
    pub fn arrival(&self) -> crate::usecases::door::Arrival<'_> {
        crate::usecases::door::Arrival {
            session: self.session.as_deref(),
            device: self.device.as_deref(),
            user_agent: self.user_agent.as_deref(),
            continues: None,
        }
    }
}

impl FromRequestParts<AppState> for ArrivedWith {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let portal = current(&parts.extensions, state);
        let settings = &portal.settings;
        let read = |name| cookie(&parts.headers, name).filter(|t| !t.is_empty()).map(str::to_string);
        let user_agent = parts
            .headers
            .get(axum::http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(crate::domain::session::kept_user_agent)
            .filter(|ua| !ua.is_empty());
        Ok(ArrivedWith {
            session: read(session_cookie_name(settings)),
            device: read(device_cookie_name(settings)),
            user_agent,
        })
    }
}

pub struct Admin(pub SignedIn);

impl Deref for Admin {
    type Target = SignedIn;

    fn deref(&self) -> &SignedIn {
        &self.0
    }
}

impl FromRequestParts<AppState> for Admin {
    type Rejection = PortalError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, PortalError> {
        let Viewer(viewer) = <Viewer as FromRequestParts<AppState>>::from_request_parts(parts, state).await?;
        if !viewer.contact.has_role(crate::domain::ADMINISTRATORS_ROLE) {
            return Err(PortalError::Forbidden("not an administrator"));
        }
        Ok(Admin(viewer))
    }
}

/// Someone signed in who may administer accounts: an administrator (every account), or an
/// account administrator (`PORTAL_ACCOUNT_ADMIN_ROLE` with an `account_id`: that account's
/// contacts only). What each may reach is [`Staff`]'s to say, in one place.
pub struct StaffMember(pub SignedIn, pub crate::usecases::staff::Staff);

impl FromRequestParts<AppState> for StaffMember {
    type Rejection = PortalError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, PortalError> {
        let Viewer(viewer) = <Viewer as FromRequestParts<AppState>>::from_request_parts(parts, state).await?;
        match crate::usecases::staff::Staff::of(
            &viewer.contact,
            &current(&parts.extensions, state).settings.account_admin_role,
        ) {
            Some(staff) => Ok(StaffMember(viewer, staff)),
            None => Err(PortalError::Forbidden("not staff")),
        }
    }
}

/// Open registration is on and needs no invitation (both run-time settings); otherwise
/// registration answers `registration_closed` (403), pointing to `/redeem` when an invitation is
/// what it needs.
pub struct RegistrationOpen;

impl FromRequestParts<AppState> for RegistrationOpen {
    type Rejection = PortalError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, PortalError> {
        let settings = &current(&parts.extensions, state).settings;
        match (settings.open_registration, settings.invitation_required) {
            (true, false) => Ok(RegistrationOpen),
            (_, invitation_required) => Err(PortalError::RegistrationClosed { invitation_required }),
        }
    }
}

/// Invitations are on; otherwise their routes do not exist (404), as in Power Pages.
pub struct InvitationsEnabled;

impl FromRequestParts<AppState> for InvitationsEnabled {
    type Rejection = PortalError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, PortalError> {
        let settings = &current(&parts.extensions, state).settings;
        if settings.invitations_enabled { Ok(InvitationsEnabled) } else { Err(PortalError::NotFound) }
    }
}

/// A path parameter naming a resource (`/admin/invitations/{id}`). One that cannot be read (bad
/// percent-encoding, say) names nothing: the contract's 404, not axum's plain-text rejection.
pub struct PathParam<T>(pub T);

impl<T: serde::de::DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for PathParam<T> {
    type Rejection = PortalError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, PortalError> {
        let path = <Path<T> as FromRequestParts<S>>::from_request_parts(parts, state).await;
        let Path(value) = path.map_err(|_| PortalError::NotFound)?;
        Ok(PathParam(value))
    }
}
