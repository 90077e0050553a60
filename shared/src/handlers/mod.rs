//! Request handlers, one module per Lambda function, and the session helpers they share.

pub mod admin;
pub mod profile;
pub mod redeem;
pub mod register;
pub mod send_email;
pub mod sign_in;

use crate::app::Portal;
use crate::domain::contact::{Contact, Login};
use crate::domain::lockout::FailedSignIn;
use crate::domain::outbox::{MailSecret, MessageKind, OutboxMessage};
use crate::domain::password::{Password, verify_password};
use crate::domain::secret::{digest, random_token};
use crate::domain::session::Session;
use crate::domain::token::{EmailToken, TokenPurpose};
use crate::web::request::{cookie, csrf_cookie_name, session_cookie_name, source_ip};
use crate::web::response::{csrf_cookie, session_cookie, with_cookie};
use crate::web::{HttpRequest, HttpResponse, PortalError};

/// The signed-in contact and their session.
pub struct Viewer {
    pub contact: Contact,
    pub session: Session,
}

/// The contact whose valid session cookie the request carries, if any. Expired sessions count as
/// none; a session in use has its idle timer refreshed.
pub async fn current_viewer(portal: &Portal, req: &HttpRequest) -> Result<Option<Viewer>, PortalError> {
    let Some(token) = cookie(req, session_cookie_name(&portal.settings)).filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    let Some(session) = portal.sessions.get(&digest(token)).await? else {
        return Ok(None);
    };
    let now = portal.clock.now();
    if !session.is_active(now, portal.settings.session_idle_secs) {
        return Ok(None);
    }
    let Some(contact) = portal.contacts.get(&session.contact_id).await? else {
        return Ok(None);
    };
    if session.needs_touch(now) {
        portal.sessions.touch(&session.id_digest, now).await?;
    }
    Ok(Some(Viewer { contact, session }))
}

/// The signed-in viewer, or `unauthenticated`.
pub async fn require_viewer(portal: &Portal, req: &HttpRequest) -> Result<Viewer, PortalError> {
    current_viewer(portal, req).await?.ok_or(PortalError::Unauthenticated)
}

/// Starts a new session (a new token at every sign-in) and returns its `Set-Cookie` value.
pub async fn start_session(portal: &Portal, contact: &Contact) -> Result<String, PortalError> {
    let (session, token) =
        Session::start(&contact.contact_id, portal.clock.now(), portal.settings.session_absolute_secs);
    portal.sessions.create(&session).await?;
    Ok(session_cookie(&portal.settings, &token))
}

/// The anti-CSRF token for a page's forms: the one in the request's cookie, or a new one that the
/// response must set (double-submit cookie).
pub struct CsrfToken {
    pub token: String,
    set_cookie: Option<String>,
}

impl CsrfToken {
    pub fn for_page(portal: &Portal, req: &HttpRequest) -> Self {
        match cookie(req, csrf_cookie_name(&portal.settings)).filter(|t| t.len() >= 32) {
            Some(token) => CsrfToken { token: token.to_string(), set_cookie: None },
            None => {
                let token = random_token();
                let set_cookie = Some(csrf_cookie(&portal.settings, &token));
                CsrfToken { token, set_cookie }
            }
        }
    }

    /// Sets the cookie on the response when the token is new.
    pub fn apply(self, response: HttpResponse) -> HttpResponse {
        match self.set_cookie {
            Some(cookie) => with_cookie(response, cookie),
            None => response,
        }
    }
}

/// Logs an audit event with the request's source address.
pub fn audit(req: &HttpRequest, event: &'static str, contact_id: Option<&str>) {
    tracing::info!(audit = event, contact_id = contact_id.unwrap_or("-"), source_ip = %source_ip(req), "audit");
}

/// Checks a login and password. Unknown logins, wrong passwords and locked accounts all end in the
/// same `invalid_credentials`, after the same single argon2 run.
pub(crate) async fn authenticate(
    portal: &Portal,
    req: &HttpRequest,
    login: &str,
    password: Password,
) -> Result<Contact, PortalError> {
    refuse_if_throttled(portal, req, Attempt::SignIn).await?;
    let contact = match Login::parse(login) {
        Some(login) => portal.contacts.find_by_login(&login).await?,
        None => None,
    };
    let now = portal.clock.now();
    let locked = contact.as_ref().is_some_and(|c| c.lockout().is_locked(now));
    let hash = contact.as_ref().and_then(|c| c.password_hash.clone());
    let verified = verify_password(password, hash).await?;
    let Some(contact) = contact else {
        audit(req, "sign_in_failed", None);
        count_failure(portal, req, Attempt::SignIn).await?;
        return Err(PortalError::InvalidCredentials);
    };
    if verified && !locked {
        if contact.lockout().needs_reset() {
            portal.contacts.reset_lockout(&contact.contact_id).await?;
        }
        if portal.settings.require_confirmation && !contact.email_confirmed {
            audit(req, "sign_in_unconfirmed", Some(&contact.contact_id));
            return Err(PortalError::EmailNotConfirmed);
        }
        return Ok(contact);
    }
    audit(req, "sign_in_failed", Some(&contact.contact_id));
    count_failure(portal, req, Attempt::SignIn).await?;
    if contact.password_hash.is_some() {
        let outcome = portal.contacts.record_failed_sign_in(&contact.contact_id, now, &portal.settings.lockout).await?;
        if let FailedSignIn::LockedOut { until } = outcome {
            tracing::warn!(audit = "locked_out", contact_id = %contact.contact_id, locked_until = until, "audit");
        }
    }
    Err(PortalError::InvalidCredentials)
}

/// A new emailed token of `purpose` for `contact` (sent to the contact's current address) and the
/// outbox message carrying it.
pub(crate) fn token_email(portal: &Portal, contact: &Contact, purpose: TokenPurpose) -> (EmailToken, OutboxMessage) {
    let now = portal.clock.now();
    let (lifetime, kind) = match purpose {
        TokenPurpose::ConfirmEmail => (portal.settings.confirmation_token_secs, MessageKind::ConfirmEmail),
        TokenPurpose::ResetPassword => (portal.settings.reset_token_secs, MessageKind::ResetPassword),
    };
    let (token, plain) = EmailToken::issue(purpose, &contact.contact_id, &contact.email_normalized, now, lifetime);
    let mut message = OutboxMessage::new(kind, &contact.email, &contact.first_name, Some(MailSecret::new(plain)), now);
    message.valid_until = Some(token.expires_at);
    (token, message)
}

/// Whether one more email on behalf of `account` may go out now: within the hourly allowance per
/// account and per source address, so the portal cannot be used to flood an inbox. A refused
/// request still gets the same answer as an allowed one.
pub(crate) async fn email_allowed(portal: &Portal, req: &HttpRequest, account: &str) -> Result<bool, PortalError> {
    let now = portal.clock.now();
    let settings = &portal.settings;
    let by_account = portal
        .contacts
        .take_allowance(&format!("account#{account}"), settings.emails_per_account_per_hour, 3600, now)
        .await?;
    let by_address = portal
        .contacts
        .take_allowance(&format!("address#{}", source_ip(req)), settings.emails_per_address_per_hour, 3600, now)
        .await?;
    if !(by_account && by_address) {
        tracing::warn!(audit = "email_rate_limited", contact_id = account, source_ip = %source_ip(req), "audit");
    }
    Ok(by_account && by_address)
}

/// What a source address can fail at, each with its own hourly allowance.
#[derive(Clone, Copy)]
pub(crate) enum Attempt {
    SignIn,
    InvitationCode,
}

impl Attempt {
    fn key(self, req: &HttpRequest) -> String {
        let kind = match self {
            Attempt::SignIn => "sign-in",
            Attempt::InvitationCode => "invitation-code",
        };
        format!("failures#{kind}#{}", source_ip(req))
    }
}

const FAILURE_WINDOW_SECS: i64 = 3600;

/// Refuses (429, until the hour is over) a source address that used up its failures: guessing
/// passwords across accounts, or invitation codes, stops there. Account lockout covers one account.
pub(crate) async fn refuse_if_throttled(
    portal: &Portal,
    req: &HttpRequest,
    attempt: Attempt,
) -> Result<(), PortalError> {
    let now = portal.clock.now();
    let limit = portal.settings.failures_per_address_per_hour;
    if portal.contacts.allowance_left(&attempt.key(req), limit, FAILURE_WINDOW_SECS, now).await? {
        return Ok(());
    }
    tracing::warn!(audit = "throttled", source_ip = %source_ip(req), "audit");
    Err(PortalError::RateLimited {
        retry_after_secs: (FAILURE_WINDOW_SECS - now.rem_euclid(FAILURE_WINDOW_SECS)) as u64,
    })
}

/// Counts one failure of the source address.
pub(crate) async fn count_failure(portal: &Portal, req: &HttpRequest, attempt: Attempt) -> Result<(), PortalError> {
    let limit = portal.settings.failures_per_address_per_hour;
    portal.contacts.take_allowance(&attempt.key(req), limit, FAILURE_WINDOW_SECS, portal.clock.now()).await?;
    Ok(())
}
