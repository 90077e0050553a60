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
    /// A POST says who it is by its content type (a form is a browser's, JSON a program's); any
    /// other request by whether it accepts HTML.
    pub fn of(req: &Request) -> Client {
        let headers = req.headers();
        if req.method() == Method::POST {
            match media_type(req).as_deref() {
                Some("application/json") => return Client::Api,
                Some("application/x-www-form-urlencoded") => return Client::Browser,
                _ => {}
            }
        }
        let accepts_html =
            headers.get_all(header::ACCEPT).iter().filter_map(|v| v.to_str().ok()).any(|v| v.contains("text/html"));
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
