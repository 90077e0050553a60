//! Who is asking: a browser (forms, HTML pages, redirects) or a program (JSON). Decided once per
//! request by the [`negotiate`] middleware; replies and errors read it to render themselves.

use axum::extract::Request;
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::Response;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Client {
    Browser,
    Api,
}

tokio::task_local! {
    static CURRENT: Client;
}

impl Client {
    /// An `Accept` header that asks for JSON and not HTML is a program's, whatever its body (a
    /// form posted by a program gets its answer and its errors in JSON). Otherwise a POST says who
    /// it is by its content type (a form is a browser's, JSON a program's), and any other request
    /// by whether it accepts HTML. (Which body needs the anti-CSRF token is the content type's
    /// business alone: see `extract::Submission`.)
    pub fn of(req: &Request) -> Client {
        let accepts = |media: &str| {
            req.headers().get_all(header::ACCEPT).iter().filter_map(|v| v.to_str().ok()).any(|v| v.contains(media))
        };
        let accepts_html = accepts("text/html");
        if accepts("application/json") && !accepts_html {
            return Client::Api;
        }
        if req.method() == Method::POST {
            match media_type(req).as_deref() {
                Some("application/json") => return Client::Api,
                Some("application/x-www-form-urlencoded") => return Client::Browser,
                _ => {}
            }
        }
        if accepts_html { Client::Browser } else { Client::Api }
    }

    /// The client of the request being answered (a program's, outside a request).
    pub fn current() -> Client {
        CURRENT.try_with(|client| *client).unwrap_or(Client::Api)
    }
}

/// The request's media type, lower case, without parameters.
pub fn media_type(req: &Request) -> Option<String> {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or_default().trim().to_ascii_lowercase())
}

/// Middleware: decides the client once and answers the request in its scope.
pub async fn negotiate(req: Request, next: Next) -> Response {
    let client = Client::of(&req);
    CURRENT.scope(client, next.run(req)).await
}
