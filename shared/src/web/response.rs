//! Building responses: JSON, HTML pages, redirects, cookies, and the error mapping per client.

use lambda_http::Body;
use lambda_http::http::header::{HeaderValue, SET_COOKIE};
use serde::Serialize;

use super::error::PortalError;
use super::request::{Client, csrf_cookie_name, session_cookie_name};
use super::{HttpResponse, pages};
use crate::config::Settings;

const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

fn build(status: u16, content_type: Option<&str>, body: Body) -> HttpResponse {
    let mut builder = lambda_http::Response::builder()
        .status(status)
        .header("cache-control", "no-store")
        .header("x-content-type-options", "nosniff")
        .header("referrer-policy", "same-origin")
        .header("x-frame-options", "DENY");
    if let Some(content_type) = content_type {
        builder = builder.header("content-type", content_type);
    }
    if content_type.is_some_and(|c| c.starts_with("text/html")) {
        builder = builder.header("content-security-policy", CONTENT_SECURITY_POLICY);
    }
    builder.body(body).unwrap_or_else(|_| lambda_http::Response::new(Body::Empty))
}

pub fn json(status: u16, value: &impl Serialize) -> HttpResponse {
    match serde_json::to_string(value) {
        Ok(text) => build(status, Some("application/json"), Body::Text(text)),
        Err(_) => build(
            500,
            Some("application/json"),
            Body::Text(r#"{"error":"internal","message":"Something went wrong on our side."}"#.into()),
        ),
    }
}

pub fn html(status: u16, page: String) -> HttpResponse {
    build(status, Some("text/html; charset=utf-8"), Body::Text(page))
}

/// A 303 to a path of this site (never a full URL, so never an open redirect).
pub fn see_other(path: &str) -> HttpResponse {
    let safe = if is_same_site_path(path) { path } else { "/" };
    let mut response = build(303, None, Body::Empty);
    if let Ok(value) = HeaderValue::from_str(safe) {
        response.headers_mut().insert("location", value);
    }
    response
}

pub fn no_content() -> HttpResponse {
    build(204, None, Body::Empty)
}

/// A path on this site: starts with one `/`, not `//` or `/\` (which browsers read as another host).
pub fn is_same_site_path(path: &str) -> bool {
    path.starts_with('/')
        && !path.starts_with("//")
        && !path.starts_with("/\\")
        && !path.chars().any(|c| c.is_control() || c == '\\')
}

pub fn with_cookie(mut response: HttpResponse, cookie: String) -> HttpResponse {
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(SET_COOKIE, value);
    }
    response
}

fn cookie_attributes(settings: &Settings, same_site: &str) -> String {
    let secure = if settings.secure_cookies { "; Secure" } else { "" };
    format!("Path=/; HttpOnly; SameSite={same_site}{secure}")
}

pub fn session_cookie(settings: &Settings, token: &str) -> String {
    format!(
        "{}={token}; Max-Age={}; {}",
        session_cookie_name(settings),
        settings.session_absolute_secs,
        cookie_attributes(settings, "Lax")
    )
}

pub fn clear_session_cookie(settings: &Settings) -> String {
    format!("{}=; Max-Age=0; {}", session_cookie_name(settings), cookie_attributes(settings, "Lax"))
}

pub fn csrf_cookie(settings: &Settings, token: &str) -> String {
    format!("{}={token}; {}", csrf_cookie_name(settings), cookie_attributes(settings, "Strict"))
}

/// The response for a failed request: JSON for programs; for browsers a redirect to the sign-in
/// page when a session is needed, or a page that says what went wrong.
pub fn error(err: &PortalError, client: Client) -> HttpResponse {
    err.log();
    let mut response = match (client, err) {
        (Client::Browser, PortalError::Unauthenticated) => return see_other("/signin"),
        (Client::Browser, _) => html(err.status(), pages::message(err.status(), err.public_message())),
        (Client::Api, _) => json(err.status(), &err.body()),
    };
    if let PortalError::RateLimited { retry_after_secs } = err
        && let Ok(value) = HeaderValue::from_str(&retry_after_secs.to_string())
    {
        response.headers_mut().insert("retry-after", value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirects_stay_on_this_site() {
        for (path, ok) in [
            ("/", true),
            ("/profile?x=1", true),
            ("//evil.example", false),
            ("/\\evil.example", false),
            ("https://evil.example", false),
            ("profile", false),
            ("/a\r\nSet-Cookie: x", false),
        ] {
            assert_eq!(is_same_site_path(path), ok, "{path:?}");
        }
        let response = see_other("https://evil.example");
        assert_eq!(response.headers()["location"], "/");
    }
}
