//! The pages' one stylesheet, `GET /portal.css` (served by sign-in, whose pages every visitor sees
//! first). A file rather than a `<style>` element, so that the content security policy allows
//! `style-src 'self'` and no inline style. Pages link it as `/portal.css?v=<hash of its content>`:
//! a changed stylesheet has a new address, so browsers may keep each one for a year.

use axum::Router;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::AppState;

pub const PATH: &str = "/portal.css";

const STYLESHEET: &str = include_str!("../../static/portal.css");

/// FNV-1a (64 bits) of the stylesheet, computed when the crate is compiled.
const VERSION: u64 = {
    let bytes = STYLESHEET.as_bytes();
    let mut hash = 0xcbf2_9ce4_8422_2325_u64;
    let mut i = 0;
    while i < bytes.len() {
        hash = (hash ^ bytes[i] as u64).wrapping_mul(0x0100_0000_01b3);
        i += 1;
    }
    hash
};

/// The address pages link the stylesheet by: it changes whenever the stylesheet does.
pub fn href() -> String {
    format!("{PATH}?v={VERSION:016x}")
}

pub fn routes() -> Router<AppState> {
    Router::new().route(PATH, get(stylesheet))
}

async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            // Every version has its own address (see `href`): what a browser keeps never goes stale.
            (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
        ],
        STYLESHEET,
    )
        .into_response()
}
