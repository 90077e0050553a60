//! The pages' static files: the one stylesheet and the passkey pages' one script. Files rather
//! than `<style>` and `<script>` elements, so that the content security policy allows
//! `style-src 'self'` and `script-src 'self'` and nothing inline.
//!
//! Each is served by sign-in at `/assets/<name>.<hash of its content>.<extension>`: a changed file
//! has a new address, so browsers (and a CDN) may keep each one for a year. The pages link them by
//! [`Asset::href`]; an address of no current file is the contract's 404.

use axum::Router;
use axum::extract::Path;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::AppState;
use crate::error::PortalError;

/// A static file, its content fixed when the crate is compiled.
pub struct Asset {
    name: &'static str,
    extension: &'static str,
    content_type: &'static str,
    pub body: &'static str,
    /// FNV-1a (64 bits) of the body.
    version: u64,
}

impl Asset {
    const fn new(name: &'static str, extension: &'static str, content_type: &'static str, body: &'static str) -> Self {
        let bytes = body.as_bytes();
        let mut version = 0xcbf2_9ce4_8422_2325_u64;
        let mut i = 0;
        while i < bytes.len() {
            version = (version ^ bytes[i] as u64).wrapping_mul(0x0100_0000_01b3);
            i += 1;
        }
        Asset { name, extension, content_type, body, version }
    }

    /// `portal.1a2b3c4d5e6f7a8b.css`: the file's name, which changes whenever its content does.
    pub fn file_name(&self) -> String {
        format!("{}.{:016x}.{}", self.name, self.version, self.extension)
    }

    /// The address pages link the file by.
    pub fn href(&self) -> String {
        format!("/assets/{}", self.file_name())
    }

    /// The file as served: its type, and cacheable for a year (its address names its content).
    pub fn response(&self, cache_control: &'static str) -> Response {
        ([(header::CONTENT_TYPE, self.content_type), (header::CACHE_CONTROL, cache_control)], self.body).into_response()
    }
}

pub const STYLESHEET: Asset =
    Asset::new("portal", "css", "text/css; charset=utf-8", include_str!("../../static/portal.css"));
pub const PASSKEY_SCRIPT: Asset =
    Asset::new("passkey", "js", "text/javascript; charset=utf-8", include_str!("../../static/passkeys.js"));
const ASSETS: [&Asset; 2] = [&STYLESHEET, &PASSKEY_SCRIPT];

/// What a versioned address may be kept for: a year, never revalidated.
pub const IMMUTABLE: &str = "public, max-age=31536000, immutable";

pub fn routes() -> Router<AppState> {
    Router::new().route("/assets/{file}", get(asset))
}

async fn asset(Path(file): Path<String>) -> Result<Response, PortalError> {
    let found = ASSETS.iter().find(|asset| asset.file_name() == file).ok_or(PortalError::NotFound)?;
    Ok(found.response(IMMUTABLE))
}
