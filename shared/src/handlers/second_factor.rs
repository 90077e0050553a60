//! The sign-in's second step (sign-in function): `GET, POST /signin/second-factor` and
//! `POST /signin/second-factor/email`. The pending sign-in is named by its own short-lived cookie.

use std::future::Future;

use axum::Router;
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};

use crate::config::Settings;
use crate::domain::audit::SourceAddress;
use crate::usecases::door::{self, Entry, Proof};
use crate::usecases::two_factor;
use crate::web::extract::NoFields;
use crate::web::pages::FormErrors;
use crate::web::request::{cookie, pending_sign_in_cookie_name};
use crate::web::response::clear_pending_sign_in_cookie;
use crate::web::two_factor_pages::SecondFactorPage;
use crate::web::{AppState, ArrivedWith, Fields, Form, Page, PortalError, Rejection, Reply, Submission, Viewer};

use super::entry::entry_reply;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/signin/second-factor", get(second_factor_page).post(submit_code))
        .route("/signin/second-factor/email", post(email_code))
}

/// The pending sign-in's token from its cookie.
fn pending_token(headers: &HeaderMap, settings: &Settings) -> Option<String> {
    cookie(headers, pending_sign_in_cookie_name(settings)).filter(|t| !t.is_empty()).map(str::to_string)
}

fn render(page: &Page, methods: &[&str], sent: bool, errors: FormErrors) -> Response {
    page.render(
        StatusCode::OK,
        &SecondFactorPage {
            viewer: None,
            csrf_token: &page.csrf_token,
            totp: methods.contains(&"totp"),
            email: methods.contains(&"email"),
            recovery: methods.contains(&"recovery_code"),
            passkey: methods.contains(&"passkey"),
            sent,
            errors,
        },
    )
}

/// `GET /signin/second-factor`: the code form, for a pending sign-in (otherwise back to sign-in).
async fn second_factor_page(headers: HeaderMap, page: Page) -> Result<Response, PortalError> {
    let token = pending_token(&headers, page.settings()).ok_or(PortalError::Unauthenticated)?;
    let methods = two_factor::pending_methods(&page.portal, &token).await?;
    let sent = page.query("sent").is_some();
    Ok(render(&page, &methods, sent, FormErrors::default()))
}

struct CodeForm {
    code: String,
}

impl Form for CodeForm {
    /// The methods of the pending sign-in, to show the form again.
    type Context = Vec<&'static str>;

    fn context(parts: &mut Parts, state: &AppState) -> impl Future<Output = Vec<&'static str>> + Send {
        let token = pending_token(&parts.headers, &state.settings);
        let state = state.clone();
        async move {
            match token {
                Some(token) => two_factor::pending_methods(&state, &token).await.unwrap_or_default(),
                None => Vec::new(),
            }
        }
    }

    fn parse(fields: &mut Fields, _: &Settings) -> Result<Self, PortalError> {
        let code = fields.required("code");
        fields.done(|| Some(CodeForm { code: code?.trim().to_string() }))
    }

    fn page(page: &Page, _: &mut Fields, methods: &Vec<&'static str>, errors: FormErrors) -> Option<Response> {
        Some(render(page, methods, false, errors))
    }
}

/// `POST /signin/second-factor {"code"}`: a TOTP code, the emailed code or a recovery code completes
/// the sign-in (the same answer as `POST /signin` without a second factor); a wrong one is 401
/// `invalid_credentials`, and the fifth ends the pending sign-in.
async fn submit_code(
    source: SourceAddress,
    arrived: ArrivedWith,
    headers: HeaderMap,
    mut form: Submission<CodeForm>,
) -> Result<Reply, Rejection> {
    let portal = form.page.portal.clone();
    let Some(token) = pending_token(&headers, &portal.settings) else {
        return Err(PortalError::Unauthenticated.into());
    };
    let code = form.code.clone();
    let proof = Proof::SecondFactor { pending_token: &token, code: &code };
    match door::enter(&portal, &source, proof, arrived.arrival(), false).await {
        Ok(entry @ Entry::Entered(_)) => {
            Ok(entry_reply(&portal.settings, &entry, "/").with_cookie(clear_pending_sign_in_cookie(&portal.settings)))
        }
        Ok(Entry::SecondFactorAwaited { .. }) => {
            Err(PortalError::Internal(anyhow::anyhow!("a second step awaiting a second factor")).into())
        }
        Err(err) => {
            let methods = two_factor::pending_methods(&portal, &token).await.unwrap_or_default();
            if methods.is_empty() && matches!(err, PortalError::InvalidCredentials) {
                // The last attempt ended the pending sign-in: a browser starts again.
                return Err(Rejection::with_page(err, || crate::web::reply::see_other("/signin")));
            }
            Err(form.reject_with(err, &methods))
        }
    }
}

/// `POST /signin/second-factor/email`: emails a fresh code (202). For a pending sign-in, its code
/// for the second step (at most a few per pending sign-in); for a signed-in person without one,
/// a code to re-authenticate a change with (`second_factor_code`).
async fn email_code(
    source: SourceAddress,
    headers: HeaderMap,
    viewer: Option<Viewer>,
    form: Submission<NoFields>,
) -> Result<Reply, PortalError> {
    let portal = &form.page.portal;
    let sent = Reply::json(StatusCode::ACCEPTED, &serde_json::json!({"status": "email_sent"}));
    if let Some(token) = pending_token(&headers, &portal.settings) {
        two_factor::send_email_code(portal, &source, &token).await?;
        return Ok(sent.or_see_other("/signin/second-factor?sent=1"));
    }
    let Viewer(signed_in) = viewer.ok_or(PortalError::Unauthenticated)?;
    two_factor::send_reauthentication_code(portal, &source, &signed_in.contact).await?;
    Ok(sent.or_message("We emailed you a code. Enter it where the change asks for a second-factor code."))
}
