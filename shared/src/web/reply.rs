//! Answers that render themselves for the client that asked ([`Client::current`]): a [`Reply`] on
//! success, a [`PortalError`] or a [`Rejection`] (the error with its form shown again) on failure.
//! This is the one place where the client kind is matched.

use axum::http::header::{HeaderValue, LOCATION, RETRY_AFTER, SET_COOKIE};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use serde::Serialize;

use super::client::Client;
use super::pages;
use super::response::{entered_cookies, is_same_site_path};
use crate::config::Settings;
use crate::error::PortalError;
use crate::usecases::door::{Entered, Way};

/// What a browser gets instead of the JSON.
enum ForBrowser {
    /// The JSON as is (nothing better to show).
    Same,
    SeeOther(String),
    /// A page that only says something.
    Message(StatusCode, &'static str),
    /// A page, rendered only when a browser asked.
    Page(Box<dyn FnOnce() -> Response + Send>),
}

/// A successful answer: JSON for programs and, for browsers, a redirect or a page.
pub struct Reply {
    status: StatusCode,
    json: Option<String>,
    browser: ForBrowser,
    cookies: Vec<String>,
    /// The way through the door of the session whose cookie this reply sets.
    entered: Option<Way>,
}

/// Marks a response that sets the session cookie of a session the door began (its way in). The
/// guard layer (`web::app`) refuses a session cookie on any response without it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ThroughTheDoor(pub Way);

impl Reply {
    /// `status` with `body` as JSON.
    pub fn json(status: StatusCode, body: &impl Serialize) -> Reply {
        // Serialising plain structs of strings and numbers cannot fail; should it, say so honestly.
        let json = serde_json::to_string(body)
            .unwrap_or_else(|_| r#"{"error":"internal","message":"Something went wrong on our side."}"#.into());
        Reply { status, json: Some(json), browser: ForBrowser::Same, cookies: Vec::new(), entered: None }
    }

    /// 204 with no body.
    pub fn no_content() -> Reply {
        Reply {
            status: StatusCode::NO_CONTENT,
            json: None,
            browser: ForBrowser::Same,
            cookies: Vec::new(),
            entered: None,
        }
    }

    /// Browsers are sent on to `path` (303).
    pub fn or_see_other(mut self, path: impl Into<String>) -> Reply {
        self.browser = ForBrowser::SeeOther(path.into());
        self
    }

    /// Browsers see a page that says `text`.
    pub fn or_message(mut self, text: &'static str) -> Reply {
        self.browser = ForBrowser::Message(self.status, text);
        self
    }

    /// Browsers see a page that says `text`, with `status` (when the JSON's, 204 say, has no body).
    pub fn or_message_at(mut self, status: StatusCode, text: &'static str) -> Reply {
        self.browser = ForBrowser::Message(status, text);
        self
    }

    /// Browsers see the page `render` makes (called only for them).
    pub fn or_page(mut self, render: impl FnOnce() -> Response + Send + 'static) -> Reply {
        self.browser = ForBrowser::Page(Box::new(render));
        self
    }

    /// Adds a `Set-Cookie` for either client.
    pub fn with_cookie(mut self, cookie: String) -> Reply {
        self.cookies.push(cookie);
        self
    }

    /// Sets the cookies of the session the door began (see [`entered_cookies`]).
    pub fn with_session(mut self, settings: &Settings, entered: &Entered) -> Reply {
        self.cookies.extend(entered_cookies(settings, entered));
        self.entered = Some(entered.way);
        self
    }
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        let mut response = match (Client::current(), self.browser, self.json) {
            (Client::Browser, ForBrowser::SeeOther(path), _) => see_other(&path),
            (Client::Browser, ForBrowser::Message(status, text), _) => {
                (status, Html(pages::message(status, text))).into_response()
            }
            (Client::Browser, ForBrowser::Page(render), _) => render(),
            (_, _, Some(json)) => (self.status, [(header::CONTENT_TYPE, "application/json")], json).into_response(),
            (_, _, None) => self.status.into_response(),
        };
        for cookie in self.cookies {
            if let Ok(value) = HeaderValue::from_str(&cookie) {
                response.headers_mut().append(SET_COOKIE, value);
            }
        }
        if let Some(way) = self.entered {
            response.extensions_mut().insert(ThroughTheDoor(way));
        }
        response
    }
}

/// A 303 to a path of this site (never a full URL, so never an open redirect).
pub fn see_other(path: &str) -> Response {
    let safe = if is_same_site_path(path) { path } else { "/" };
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(safe) {
        response.headers_mut().insert(LOCATION, value);
    }
    response
}

/// JSON for programs; for browsers a redirect to the sign-in page when a session is needed, or a
/// page that says what went wrong.
impl IntoResponse for PortalError {
    fn into_response(self) -> Response {
        self.log();
        let status = self.status();
        let mut response = match (Client::current(), &self) {
            (Client::Browser, PortalError::Unauthenticated) => return see_other("/signin"),
            (Client::Browser, PortalError::SecondFactorSetupRequired) => return see_other("/profile/two-factor"),
            (Client::Browser, PortalError::TermsRequired) => return see_other("/terms"),
            (Client::Browser, _) => (status, Html(pages::message(status, self.public_message()))).into_response(),
            (Client::Api, _) => (status, axum::Json(self.body())).into_response(),
        };
        if let PortalError::RateLimited { retry_after_secs } = self
            && let Ok(value) = HeaderValue::from_str(&retry_after_secs.to_string())
        {
            response.headers_mut().insert(RETRY_AFTER, value);
        }
        response
    }
}

/// A failed submission: the error, and for a browser whose form can be shown again, that page
/// (with the values sent and the problems next to the fields). Our own faults never re-render.
pub struct Rejection {
    error: PortalError,
    form: Option<Box<dyn FnOnce() -> Response + Send>>,
}

impl Rejection {
    /// `error`, with the form already rendered (for a browser) or none.
    pub fn with_form(error: PortalError, form: Option<Response>) -> Rejection {
        Rejection { error, form: form.map(|form| Box::new(move || form) as Box<dyn FnOnce() -> Response + Send>) }
    }

    /// `error`, with the page `render` makes for a browser (called only for one).
    pub fn with_page(error: PortalError, render: impl FnOnce() -> Response + Send + 'static) -> Rejection {
        Rejection { error, form: Some(Box::new(render)) }
    }
}

impl From<PortalError> for Rejection {
    fn from(error: PortalError) -> Self {
        Rejection { error, form: None }
    }
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        match self.form {
            Some(render) if self.error.is_client_fault() && Client::current() == Client::Browser => {
                self.error.log();
                let mut form = render();
                *form.status_mut() = self.error.status();
                form
            }
            _ => self.error.into_response(),
        }
    }
}
