//! Passkey routes. The profile function: `GET /profile/passkeys`, `POST
//! /profile/passkeys/register/start`, `POST /profile/passkeys/register/finish`, `POST
//! /profile/passkeys/{id}/delete`. The sign-in function: `POST /signin/passkey/start`, `POST
//! /signin/passkey/finish`, and `GET /signin/passkey.js`, the pages' script (a file, so the content
//! security policy needs no inline script).

use axum::Router;
use axum::extract::OptionalFromRequestParts;
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::Response;
use axum::routing::{get, post};
use serde::Serialize;

use crate::config::Settings;
use crate::domain::audit::SourceAddress;
use crate::domain::contact::Contact;
use crate::domain::passkey::StoredPasskey;
use crate::domain::time::{human, rfc3339};
use crate::usecases::passkeys::{self, Registration, Started};
use crate::usecases::reauth::Reauthentication;
use crate::web::extract::{NoFields, PathParam};
use crate::web::pages::{FormErrors, PasskeyRow, PasskeysPage, ViewerSummary};
use crate::web::{AppState, ArrivedWith, Fields, Form, Page, PortalError, Rejection, Reply, Submission, Viewer};

use super::entry::signed_in_reply;

/// The profile function's passkey routes.
pub fn profile_routes() -> Router<AppState> {
    Router::new()
        .route("/profile/passkeys", get(show))
        .route("/profile/passkeys/register/start", post(start_registration))
        .route("/profile/passkeys/register/finish", post(finish_registration))
        .route("/profile/passkeys/{id}/delete", post(delete))
}

/// The sign-in function's passkey routes.
pub fn sign_in_routes() -> Router<AppState> {
    Router::new()
        .route("/signin/passkey.js", get(script))
        .route("/signin/passkey/start", post(start_sign_in))
        .route("/signin/passkey/finish", post(finish_sign_in))
}

/// The script at the address the contract names (pages link its versioned copy, see
/// `web::assets`): revalidated on every use, as its content may change under this address.
async fn script() -> Response {
    crate::web::assets::PASSKEY_SCRIPT.response("no-cache")
}

/// A passkey as the contract's JSON shows it.
#[derive(Serialize)]
struct PasskeyView<'a> {
    id: &'a str,
    name: &'a str,
    created_at: String,
    last_used_at: Option<String>,
}

impl<'a> PasskeyView<'a> {
    fn of(passkey: &'a StoredPasskey) -> Self {
        PasskeyView {
            id: &passkey.id,
            name: &passkey.name,
            created_at: rfc3339(passkey.created_at),
            last_used_at: passkey.last_used_at.map(rfc3339),
        }
    }
}

#[derive(Serialize)]
struct PasskeyList<'a> {
    passkeys: Vec<PasskeyView<'a>>,
}

fn render_passkeys(page: &Page, contact: &Contact, passkeys: &[StoredPasskey], errors: FormErrors) -> Response {
    let rows = passkeys
        .iter()
        .map(|p| PasskeyRow {
            id: p.id.clone(),
            name: p.name.clone(),
            created: human(p.created_at),
            last_used: p.last_used_at.map(human),
        })
        .collect();
    page.render(
        StatusCode::OK,
        &PasskeysPage {
            viewer: Some(ViewerSummary::of(contact)),
            csrf_token: &page.csrf_token,
            passkeys: rows,
            errors,
        },
    )
}

/// `GET /profile/passkeys`: the signed-in contact's passkeys.
async fn show(viewer: Viewer, page: Page) -> Result<Reply, PortalError> {
    let Viewer(signed_in) = viewer;
    let passkeys = passkeys::list(&page.portal, &signed_in.contact).await?;
    let view = PasskeyList { passkeys: passkeys.iter().map(PasskeyView::of).collect() };
    Ok(Reply::json(StatusCode::OK, &view)
        .or_page(move || render_passkeys(&page, &signed_in.contact, &passkeys, FormErrors::default())))
}

/// A ceremony's options as the browser's `navigator.credentials` call takes them
/// (`{"publicKey": ...}`), with the ceremony id its finish sends back.
fn options_reply(started: Started) -> Reply {
    let mut body = started.options;
    if let Some(object) = body.as_object_mut() {
        object.insert("ceremony".into(), started.ceremony.into());
    }
    Reply::json(StatusCode::OK, &body)
}

/// `POST /profile/passkeys/register/start {"current_password","second_factor_code"?}`: creation
/// options for a new passkey, after re-authentication.
async fn start_registration(
    viewer: Viewer,
    source: SourceAddress,
    mut form: Submission<ReauthForm>,
) -> Result<Reply, PortalError> {
    let given = std::mem::take(&mut form.0);
    let started = passkeys::start_registration(&form.page.portal, &source, &viewer.contact, given).await?;
    Ok(options_reply(started))
}

/// The start of a passkey's registration: re-authentication only.
struct ReauthForm(Reauthentication);

impl Form for ReauthForm {
    type Context = ();

    fn parse(fields: &mut Fields, _: &Settings) -> Result<Self, PortalError> {
        let given = fields.reauthentication();
        fields.done(|| Some(ReauthForm(given)))
    }
}

struct RegistrationForm(Option<Registration>);

impl Form for RegistrationForm {
    type Context = ();

    fn parse(fields: &mut Fields, _: &Settings) -> Result<Self, PortalError> {
        let ceremony = fields.required("ceremony");
        let name = fields.text("name");
        let credential = fields.required_object("credential");
        fields
            .done(|| Some(RegistrationForm(Some(Registration { ceremony: ceremony?, name, credential: credential? }))))
    }
}

/// `POST /profile/passkeys/register/finish {"ceremony","name"?,"credential"}`: 201 with the
/// passkey; the other sessions end and this one continues under a new cookie.
async fn finish_registration(
    viewer: Viewer,
    source: SourceAddress,
    mut form: Submission<RegistrationForm>,
) -> Result<Reply, PortalError> {
    let portal = form.page.portal.clone();
    let registration = form.0.take().ok_or_else(|| PortalError::validation("Some fields need attention."))?;
    let (passkey, entered) = passkeys::finish_registration(&portal, &source, &viewer, registration).await?;
    Ok(Reply::json(StatusCode::CREATED, &PasskeyView::of(&passkey)).with_session(&portal.settings, &entered))
}

struct DeleteForm {
    given: Reauthentication,
}

/// What the passkeys page needs to show a refused delete again: its owner and their passkeys.
type PasskeysOwner = Option<(Contact, Vec<StoredPasskey>)>;

impl Form for DeleteForm {
    type Context = PasskeysOwner;

    fn context(parts: &mut Parts, state: &AppState) -> impl Future<Output = PasskeysOwner> + Send {
        passkeys_owner(parts, state)
    }

    fn parse(fields: &mut Fields, _: &Settings) -> Result<Self, PortalError> {
        let given = fields.reauthentication();
        fields.done(|| Some(DeleteForm { given }))
    }

    fn page(page: &Page, _: &mut Fields, owner: &PasskeysOwner, errors: FormErrors) -> Option<Response> {
        let (contact, listed) = owner.as_ref()?;
        Some(render_passkeys(page, contact, listed, errors))
    }
}

async fn passkeys_owner(parts: &mut Parts, state: &AppState) -> PasskeysOwner {
    let viewer = <Viewer as OptionalFromRequestParts<AppState>>::from_request_parts(parts, state).await;
    let contact = viewer.ok().flatten()?.0.contact;
    let listed = passkeys::list(state, &contact).await.ok()?;
    Some((contact, listed))
}

/// `POST /profile/passkeys/{id}/delete {"current_password","second_factor_code"?}`: 204; the other
/// sessions end and this one continues under a new cookie. Another contact's passkey is `not_found`.
async fn delete(
    viewer: Viewer,
    source: SourceAddress,
    PathParam(id): PathParam<String>,
    mut form: Submission<DeleteForm>,
) -> Result<Reply, Rejection> {
    let portal = form.page.portal.clone();
    let given = std::mem::take(&mut form.given);
    match passkeys::remove(&portal, &source, &viewer, &id, given).await {
        Ok(entered) => {
            Ok(Reply::no_content().or_see_other("/profile/passkeys").with_session(&portal.settings, &entered))
        }
        Err(err) => {
            let owner = match err.is_client_fault() {
                true => passkeys::list(&portal, &viewer.contact).await.ok().map(|l| (viewer.0.contact.clone(), l)),
                false => None,
            };
            Err(form.reject_with(err, &owner))
        }
    }
}

/// `POST /signin/passkey/start`: request options for any passkey of this site.
async fn start_sign_in(form: Submission<NoFields>) -> Result<Reply, PortalError> {
    let started = passkeys::start_sign_in(&form.page.portal).await?;
    Ok(options_reply(started))
}

struct SignInForm {
    ceremony: String,
    credential: serde_json::Value,
    remember_me: bool,
}

impl Form for SignInForm {
    type Context = ();

    fn parse(fields: &mut Fields, _: &Settings) -> Result<Self, PortalError> {
        let ceremony = fields.required("ceremony");
        let credential = fields.required_object("credential");
        let remember_me = fields.flag("remember_me");
        fields.done(|| Some(SignInForm { ceremony: ceremony?, credential: credential?, remember_me }))
    }
}

/// `POST /signin/passkey/finish {"ceremony","credential"}`: as a password sign-in's answer (200
/// with the contact, the session and device cookies); every failure is `invalid_credentials`.
async fn finish_sign_in(
    source: SourceAddress,
    arrived: ArrivedWith,
    mut form: Submission<SignInForm>,
) -> Result<Reply, PortalError> {
    let portal = form.page.portal.clone();
    let credential = std::mem::take(&mut form.credential);
    let entered =
        passkeys::finish_sign_in(&portal, &source, &form.ceremony, credential, arrived.arrival(), form.remember_me)
            .await?;
    Ok(signed_in_reply(&portal.settings, &entered, "/"))
}
