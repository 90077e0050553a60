//! The profile function: `GET /` (home page), `GET, POST /profile` and `POST /profile/password`.

use super::admin_views::UndeliverableView;
use crate::domain::text::Username;
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
use crate::domain::email::Email;
use crate::domain::text::{parse_name, parse_phone};
use crate::usecases::profile::{self, ProfileChange};
use crate::usecases::reauth::Reauthentication;
use crate::web::pages::{FormErrors, HomePage, ProfilePage, ViewerSummary};
use crate::web::{AppState, Fields, Form, HttpFunction, Page, PortalError, Rejection, Reply, Submission, Viewer};

pub struct Profile;

impl HttpFunction for Profile {
    fn routes(&self) -> Router<AppState> {
        Router::new()
            .route("/", get(home))
            .route("/profile", get(show).post(update))
            .route("/profile/password", post(change_password))
            .merge(super::passkeys::profile_routes())
            .merge(super::two_factor::routes())
            .merge(super::security::routes())
            .merge(super::terms::routes())
            .merge(super::external::profile_routes())
    }
}

async fn home(viewer: Option<Viewer>, page: Page) -> Response {
    let settings = page.settings();
    page.render(
        StatusCode::OK,
        &HomePage {
            viewer: viewer.as_ref().map(|v| ViewerSummary::of(&v.contact)),
            csrf_token: &page.csrf_token,
            open_registration: settings.open_registration,
            invitations_enabled: settings.invitations_enabled,
        },
    )
}

/// The profile as the contract's JSON shows it.
#[derive(Serialize)]
pub struct ProfileView<'a> {
    contact_id: &'a str,
    email: &'a str,
    first_name: &'a str,
    last_name: &'a str,
    username: Option<&'a str>,
    phone: Option<&'a str>,
    roles: &'a [String],
    email_confirmed: bool,
    /// A new address waiting for its link to be followed.
    pending_email: Option<&'a str>,
    /// Null while mail reaches the address; else why it stopped and when.
    email_undeliverable: Option<UndeliverableView<'a>>,
}

impl<'a> ProfileView<'a> {
    pub fn of(contact: &'a Contact) -> Self {
        ProfileView {
            contact_id: &contact.contact_id,
            email: contact.email.as_str(),
            first_name: &contact.first_name,
            last_name: &contact.last_name,
            username: contact.username.as_ref().map(Username::as_str),
            phone: contact.phone.as_deref(),
            roles: &contact.roles,
            email_confirmed: contact.email_confirmed,
            pending_email: contact.pending_email.as_ref().map(Email::as_str),
            email_undeliverable: contact.email_undeliverable.as_ref().map(UndeliverableView::of),
        }
    }
}

fn render_profile(page: &Page, contact: &Contact, errors: FormErrors) -> Response {
    page.render(
        StatusCode::OK,
        &ProfilePage {
            viewer: Some(ViewerSummary::of(contact)),
            csrf_token: &page.csrf_token,
            contact,
            errors,
            password_min_length: page.settings().password_min_length,
        },
    )
}

async fn show(viewer: Viewer, page: Page) -> Reply {
    let Viewer(signed_in) = viewer;
    Reply::json(StatusCode::OK, &ProfileView::of(&signed_in.contact))
        .or_page(move || render_profile(&page, &signed_in.contact, FormErrors::default()))
}

/// The signed-in contact, for showing a refused profile form again.
async fn form_owner(parts: &mut Parts, state: &AppState) -> Option<Contact> {
    let viewer = <Viewer as OptionalFromRequestParts<AppState>>::from_request_parts(parts, state).await;
    viewer.ok().flatten().map(|Viewer(signed_in)| signed_in.contact)
}

/// Both profile forms show the profile page again.
fn reshow_profile(page: &Page, owner: &Option<Contact>, errors: FormErrors) -> Option<Response> {
    owner.as_ref().map(|contact| render_profile(page, contact, errors))
}

struct ProfileForm(ProfileChange);

impl Form for ProfileForm {
    type Context = Option<Contact>;

    fn context(parts: &mut Parts, state: &AppState) -> impl Future<Output = Option<Contact>> + Send {
        form_owner(parts, state)
    }

    fn parse(fields: &mut Fields, _: &Settings) -> Result<Self, PortalError> {
        let username = fields.text("username");
        let first_name = fields.optional_parsed("first_name", parse_name);
        let last_name = fields.optional_parsed("last_name", parse_name);
        let phone = match fields.text("phone") {
            None => None,
            Some(raw) if raw.trim().is_empty() => Some(None),
            Some(raw) => fields.check("phone", parse_phone(&raw)).map(Some),
        };
        let email = fields.optional_parsed("email", Email::parse);
        let reauthentication = fields.reauthentication();
        fields.done(|| {
            Some(ProfileForm(ProfileChange { first_name, last_name, phone, email, reauthentication, username }))
        })
    }

    fn page(page: &Page, _: &mut Fields, owner: &Option<Contact>, errors: FormErrors) -> Option<Response> {
        reshow_profile(page, owner, errors)
    }
}

/// `POST /profile`: any of first name, last name, phone and email (with the current password);
/// the username cannot change. A new email waits, as `pending_email`, for its link.
async fn update(viewer: Viewer, source: SourceAddress, mut form: Submission<ProfileForm>) -> Result<Reply, Rejection> {
    let portal = form.page.portal.clone();
    let change = std::mem::take(&mut form.0);
    match profile::update_profile(&portal, &source, &viewer, change).await {
        Ok(updated) => Ok(Reply::json(StatusCode::OK, &ProfileView::of(&updated)).or_see_other("/profile")),
        Err(err) => Err(form.reject_with(err, &Some(viewer.0.contact))),
    }
}

struct PasswordForm {
    given: Reauthentication,
    new_password: String,
}

impl Form for PasswordForm {
    type Context = Option<Contact>;

    fn context(parts: &mut Parts, state: &AppState) -> impl Future<Output = Option<Contact>> + Send {
        form_owner(parts, state)
    }

    fn parse(fields: &mut Fields, _: &Settings) -> Result<Self, PortalError> {
        let given = fields.reauthentication();
        let new_password = fields.required("new_password");
        fields.done(|| Some(PasswordForm { given, new_password: new_password? }))
    }

    fn page(page: &Page, _: &mut Fields, owner: &Option<Contact>, errors: FormErrors) -> Option<Response> {
        reshow_profile(page, owner, errors)
    }
}

/// `POST /profile/password {"current_password","second_factor_code"?,"new_password"}`: every
/// session of the contact ends and this one continues under a new cookie.
async fn change_password(
    viewer: Viewer,
    source: SourceAddress,
    mut form: Submission<PasswordForm>,
) -> Result<Reply, Rejection> {
    let portal = form.page.portal.clone();
    let (given, new_password) = (form.given.clone(), form.new_password.clone());
    match profile::change_password(&portal, &source, &viewer, given, new_password).await {
        Ok(entered) => Ok(Reply::no_content().or_see_other("/profile").with_session(&portal.settings, &entered)),
        Err(err) => Err(form.reject_with(err, &Some(viewer.0.contact))),
    }
}
