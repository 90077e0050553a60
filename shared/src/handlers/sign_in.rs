//! The sign-in function: `GET, POST /signin`, `POST /signout`, `GET, POST /forgot-password`,
//! `GET, POST /reset-password`, and the emailed-code sign-in (`GET, POST /signin/email-code`, `POST
//! /signin/email-code/verify`).

use axum::Router;
use axum::http::HeaderMap;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};

use crate::config::Settings;
use crate::domain::audit::SourceAddress;
use crate::domain::email::Email;
use crate::domain::password::Password;
use crate::domain::token::parse_token;
use crate::usecases::door::{self, Proof};
use crate::usecases::{session, tokens};
use crate::web::extract::NoFields;
use crate::web::pages::{EmailCodePage, ForgotPasswordPage, FormErrors, SignInPage, TokenPage};
use crate::web::request::{cookie, session_cookie_name};
use crate::web::response::clear_session_cookie;
use crate::web::{AppState, ArrivedWith, Fields, Form, HttpFunction, Page, PortalError, Rejection, Reply, Submission};

use super::entry::entry_reply;

pub struct SignIn;

impl HttpFunction for SignIn {
    fn routes(&self) -> Router<AppState> {
        Router::new()
            .route("/signin", get(sign_in_page).post(submit_sign_in))
            .route("/signout", post(sign_out))
            .route("/forgot-password", get(forgot_page).post(forgot))
            .route("/reset-password", get(reset_page).post(reset))
            .route("/signin/email-code", get(email_code_page).post(request_email_code))
            .route("/signin/email-code/verify", post(verify_email_code))
            .merge(super::passkeys::sign_in_routes())
            .merge(crate::web::assets::routes())
            .merge(super::second_factor::routes())
    }
}

struct SignInForm {
    login: String,
    password: Password,
    remember_me: bool,
}

impl Form for SignInForm {
    type Context = ();

    fn parse(fields: &mut Fields, _: &Settings) -> Result<Self, PortalError> {
        let login = fields.required("login");
        let password = fields.required("password");
        let remember_me = fields.flag("remember_me");
        fields.done(|| Some(SignInForm { login: login?, password: Password::new(password?), remember_me }))
    }

    fn page(page: &Page, sent: &mut Fields, _: &(), errors: FormErrors) -> Option<Response> {
        Some(render_sign_in(page, &sent.text("login").unwrap_or_default(), errors))
    }
}

fn render_sign_in(page: &Page, login: &str, errors: FormErrors) -> Response {
    let settings = page.settings();
    page.render(
        StatusCode::OK,
        &SignInPage {
            viewer: None,
            csrf_token: &page.csrf_token,
            login,
            errors,
            open_registration: settings.open_registration,
            invitations_enabled: settings.invitations_enabled,
            email_code_sign_in: settings.email_code_sign_in,
            providers: settings.provider_names(),
        },
    )
}

async fn sign_in_page(page: Page) -> Response {
    render_sign_in(&page, "", FormErrors::default())
}

/// `POST /signin`: through the door with the password: either the session (the one the browser
/// arrived with ends; the browser becomes or stays a trusted device of the account), or for an
/// account with a second factor only a pending sign-in and its cookie, and the methods it offers.
async fn submit_sign_in(
    source: SourceAddress,
    arrived: ArrivedWith,
    mut form: Submission<SignInForm>,
) -> Result<Reply, Rejection> {
    let portal = form.page.portal.clone();
    let proof = Proof::Password { login: &form.login, password: form.password.clone(), second_factor_code: None };
    match door::enter(&portal, &source, proof, arrived.arrival(), form.remember_me).await {
        Ok(entry) => Ok(entry_reply(&portal.settings, &entry, "/")),
        Err(err) => Err(form.reject(err)),
    }
}

async fn sign_out(source: SourceAddress, headers: HeaderMap, form: Submission<NoFields>) -> Result<Reply, PortalError> {
    let settings = &form.page.portal.settings;
    if let Some(token) = cookie(&headers, session_cookie_name(settings)).filter(|t| !t.is_empty()) {
        session::end(&form.page.portal, token, &source).await?;
    }
    Ok(Reply::no_content().or_see_other("/").with_cookie(clear_session_cookie(settings)))
}

fn render_email_code(page: &Page, email: &str, errors: FormErrors) -> Response {
    page.render(StatusCode::OK, &EmailCodePage { viewer: None, csrf_token: &page.csrf_token, email, errors })
}

/// The emailed-code sign-in is a setting (`PORTAL_EMAIL_CODE_SIGN_IN`): off, its routes are not there.
fn email_code_sign_in_on(settings: &Settings) -> Result<(), PortalError> {
    if settings.email_code_sign_in { Ok(()) } else { Err(PortalError::NotFound) }
}

/// `GET /signin/email-code`: the address form.
async fn email_code_page(page: Page) -> Result<Response, PortalError> {
    email_code_sign_in_on(page.settings())?;
    Ok(render_email_code(&page, "", FormErrors::default()))
}

struct EmailCodeRequestForm {
    email: Email,
}

impl Form for EmailCodeRequestForm {
    type Context = ();

    fn parse(fields: &mut Fields, _: &Settings) -> Result<Self, PortalError> {
        let email = fields.required_parsed("email", Email::parse);
        fields.done(|| Some(EmailCodeRequestForm { email: email? }))
    }

    fn page(page: &Page, _: &mut Fields, _: &(), errors: FormErrors) -> Option<Response> {
        Some(render_email_code(page, "", errors))
    }
}

/// `POST /signin/email-code {"email"}`: the same answer whether or not an account has the address
/// (202); its code goes out only within the allowances forgot-password has. Browsers get the code
/// form.
async fn request_email_code(
    source: SourceAddress,
    form: Submission<EmailCodeRequestForm>,
) -> Result<Reply, PortalError> {
    email_code_sign_in_on(&form.page.portal.settings)?;
    tokens::request_sign_in_code(&form.page.portal, &source, &form.input.email).await?;
    let Submission { input, page, .. } = form;
    let email = input.email.as_str().to_string();
    Ok(Reply::json(StatusCode::ACCEPTED, &serde_json::json!({"status": "email_sent"}))
        .or_page(move || render_email_code(&page, &email, FormErrors::default())))
}

struct EmailCodeForm {
    email: String,
    code: String,
    remember_me: bool,
}

impl Form for EmailCodeForm {
    type Context = ();

    fn parse(fields: &mut Fields, _: &Settings) -> Result<Self, PortalError> {
        let email = fields.required("email");
        let code = fields.required("code");
        let remember_me = fields.flag("remember_me");
        fields.done(|| Some(EmailCodeForm { email: email?, code: code?, remember_me }))
    }

    fn page(page: &Page, sent: &mut Fields, _: &(), errors: FormErrors) -> Option<Response> {
        Some(render_email_code(page, &sent.text("email").unwrap_or_default(), errors))
    }
}

/// `POST /signin/email-code/verify {"email","code"}`: through the door with the emailed code, the
/// answers of `POST /signin` (a session, or the second step of an account with TOTP).
async fn verify_email_code(
    source: SourceAddress,
    arrived: ArrivedWith,
    mut form: Submission<EmailCodeForm>,
) -> Result<Reply, Rejection> {
    let portal = form.page.portal.clone();
    if let Err(err) = email_code_sign_in_on(&portal.settings) {
        return Err(form.reject(err));
    }
    let proof = Proof::EmailCode { email: &form.email, code: &form.code };
    match door::enter(&portal, &source, proof, arrived.arrival(), form.remember_me).await {
        Ok(entry) => Ok(entry_reply(&portal.settings, &entry, "/")),
        Err(err) => Err(form.reject(err)),
    }
}

struct ForgotForm {
    email: Email,
}

impl Form for ForgotForm {
    type Context = ();

    fn parse(fields: &mut Fields, _: &Settings) -> Result<Self, PortalError> {
        let email = fields.required_parsed("email", Email::parse);
        fields.done(|| Some(ForgotForm { email: email? }))
    }

    fn page(page: &Page, _: &mut Fields, _: &(), errors: FormErrors) -> Option<Response> {
        Some(render_forgot(page, errors))
    }
}

fn render_forgot(page: &Page, errors: FormErrors) -> Response {
    page.render(StatusCode::OK, &ForgotPasswordPage { viewer: None, csrf_token: &page.csrf_token, errors })
}

async fn forgot_page(page: Page) -> Response {
    render_forgot(&page, FormErrors::default())
}

const RESET_SENT: &str = "If an account uses that address, we sent it a link to choose a new password. The link works \
     once, for a limited time.";

/// `POST /forgot-password {"email"}`: the same answer whether or not the account exists; the email
/// goes out only within the per-account and per-address allowances.
async fn forgot(source: SourceAddress, form: Submission<ForgotForm>) -> Result<Reply, PortalError> {
    tokens::request_reset(&form.page.portal, &source, &form.email).await?;
    Ok(Reply::json(StatusCode::ACCEPTED, &serde_json::json!({"status": "email_sent"})).or_message(RESET_SENT))
}

fn render_reset(page: &Page, token: Option<&str>, errors: FormErrors) -> Response {
    let token = token.and_then(parse_token).unwrap_or_default();
    page.render(
        StatusCode::OK,
        &TokenPage {
            viewer: None,
            csrf_token: &page.csrf_token,
            title: "Choose a new password",
            action: "/reset-password",
            token: &token,
            ask_password: true,
            password_min_length: page.settings().password_min_length,
            errors,
        },
    )
}

async fn reset_page(page: Page) -> Response {
    render_reset(&page, page.query("token").as_deref(), FormErrors::default())
}

struct ResetForm {
    token: String,
    /// As typed: the use case checks it against the policy once the token proved good.
    new_password: Password,
}

impl Form for ResetForm {
    type Context = ();

    /// Only the form's shape is checked here: the token is looked up before the new password is
    /// judged (zxcvbn) or hashed (argon2), so a bad token costs neither.
    fn parse(fields: &mut Fields, _: &Settings) -> Result<Self, PortalError> {
        let raw_token = fields.text("token");
        let new_password = fields.required("new_password");
        fields.finish()?;
        let token = raw_token.as_deref().and_then(parse_token).ok_or(PortalError::TokenInvalid)?;
        fields.done(|| Some(ResetForm { token, new_password: Password::new(new_password?) }))
    }

    fn page(page: &Page, sent: &mut Fields, _: &(), errors: FormErrors) -> Option<Response> {
        Some(render_reset(page, sent.text("token").as_deref(), errors))
    }
}

const PASSWORD_RESET: &str =
    "Your password is changed and every session of yours has ended. Sign in with the new password.";

/// `POST /reset-password {"token","new_password"}`: sets the password, ends every session, and
/// does not sign in by itself.
async fn reset(source: SourceAddress, mut form: Submission<ResetForm>) -> Result<Reply, Rejection> {
    let portal = form.page.portal.clone();
    let (token, password) = (form.token.clone(), form.new_password.expose().to_owned());
    match tokens::reset_password(&portal, &source, &token, password).await {
        Ok(()) => Ok(Reply::no_content().or_message_at(StatusCode::OK, PASSWORD_RESET)),
        Err(err) => Err(form.reject(err)),
    }
}
