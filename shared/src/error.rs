//! The one error type of the portal: what use cases return and what the web layer answers, mapped
//! to status and body in one place (`status`, `code`, `public_message`; `web::reply` renders it).

use std::collections::BTreeMap;

use axum::http::StatusCode;
use serde::Serialize;

use crate::ports::{CreateContactError, RedeemError, UpdateProfileError};

/// Every way a request can fail, as the contract names them. Client faults carry what the client
/// may see; `Internal` carries ours, which is logged and never shown.
#[derive(Debug, thiserror::Error)]
pub enum PortalError {
    #[error("{message}")]
    Validation { message: String, fields: BTreeMap<String, String> },
    #[error("invalid credentials")]
    InvalidCredentials,
    #[error("unauthenticated")]
    Unauthenticated,
    #[error("forbidden: {0}")]
    Forbidden(&'static str),
    /// The right password, but email confirmation is required and the address is not confirmed.
    #[error("email not confirmed")]
    EmailNotConfirmed,
    #[error("not found")]
    NotFound,
    #[error("email taken")]
    EmailTaken,
    #[error("invitation invalid")]
    InvitationInvalid,
    #[error("token invalid")]
    TokenInvalid,
    #[error("payload too large")]
    PayloadTooLarge,
    #[error("unsupported media type")]
    UnsupportedMediaType,
    #[error("rate limited")]
    RateLimited { retry_after_secs: u64 },
    /// An `Idempotency-Key` reused with a different request, or while its first request runs.
    #[error("idempotency conflict")]
    IdempotencyConflict { still_running: bool },
    /// Signed in, but the contact's web role requires a second factor and they have none yet: only
    /// the two-factor set-up is open to them (a browser is sent there).
    #[error("two-factor set-up required")]
    SecondFactorSetupRequired,
    /// Signed in, but the site's current terms of use are not accepted yet: only `/terms` is open.
    #[error("terms acceptance required")]
    TermsRequired,
    /// Registration is off at run time (`open_registration`), or needs an invitation
    /// (`invitation_required`: its page points to `/redeem`).
    #[error("registration closed")]
    RegistrationClosed { invitation_required: bool },
    /// An external identity that no account has, and none may be made for it (403 `no_account`):
    /// registration is closed, or an account has its address (`email_in_use`) and may not be
    /// linked to by it.
    #[error("no account for this identity")]
    NoAccount { email_in_use: bool },
    /// A change made against a version that another change replaced meanwhile (409, naming the
    /// field that holds the version).
    #[error("changed meanwhile")]
    ChangedMeanwhile { fields: BTreeMap<String, String> },
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// Marks an internal error as a dependency that is unavailable or too slow for now (throttled,
/// failing with 5xx, timed out, out of reach, after the SDK's retries): answered 503 rather than
/// 500, since trying again later is the right thing for the client to do.
#[derive(Debug, thiserror::Error)]
#[error("a dependency is unavailable")]
pub struct Unavailable;

#[derive(Serialize)]
pub struct ErrorBody<'a> {
    pub error: &'static str,
    pub message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fields: Option<&'a BTreeMap<String, String>>,
    /// Present (true) when the session is limited to accepting the terms of use.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub terms_required: bool,
}

impl From<CreateContactError> for PortalError {
    fn from(err: CreateContactError) -> Self {
        match err {
            CreateContactError::EmailTaken => PortalError::EmailTaken,
            CreateContactError::UsernameTaken => PortalError::field("username", "is already taken"),
            CreateContactError::IdentityTaken => PortalError::field("identity", "belongs to another account"),
            CreateContactError::Store(err) => PortalError::Internal(err),
        }
    }
}

impl From<UpdateProfileError> for PortalError {
    fn from(err: UpdateProfileError) -> Self {
        match err {
            UpdateProfileError::Conflict => {
                PortalError::validation("Your profile changed meanwhile; reload and try again.")
            }
            UpdateProfileError::Store(err) => PortalError::Internal(err),
        }
    }
}

impl From<RedeemError> for PortalError {
    fn from(err: RedeemError) -> Self {
        match err {
            RedeemError::InvitationInvalid => PortalError::InvitationInvalid,
            RedeemError::EmailTaken => PortalError::EmailTaken,
            RedeemError::UsernameTaken => PortalError::field("username", "is already taken"),
            RedeemError::IdentityTaken => PortalError::field("identity", "belongs to another account"),
            RedeemError::Store(err) => PortalError::Internal(err),
        }
    }
}

impl PortalError {
    /// A fault of the request (a person can mend it), as opposed to ours.
    pub fn is_client_fault(&self) -> bool {
        !matches!(self, PortalError::Internal(_))
    }

    pub fn validation(message: impl Into<String>) -> Self {
        PortalError::Validation { message: message.into(), fields: BTreeMap::new() }
    }

    /// A validation error naming each field's problem.
    pub fn fields_invalid(fields: BTreeMap<String, String>) -> Self {
        PortalError::Validation { message: "Some fields need attention.".into(), fields }
    }

    pub fn field(field: &str, reason: impl Into<String>) -> Self {
        PortalError::Validation {
            message: "Some fields need attention.".into(),
            fields: BTreeMap::from([(field.to_string(), reason.into())]),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            PortalError::Validation { .. } | PortalError::InvitationInvalid | PortalError::TokenInvalid => {
                StatusCode::BAD_REQUEST
            }
            PortalError::InvalidCredentials | PortalError::Unauthenticated => StatusCode::UNAUTHORIZED,
            PortalError::Forbidden(_)
            | PortalError::EmailNotConfirmed
            | PortalError::SecondFactorSetupRequired
            | PortalError::TermsRequired
            | PortalError::RegistrationClosed { .. }
            | PortalError::NoAccount { .. } => StatusCode::FORBIDDEN,
            PortalError::ChangedMeanwhile { .. } => StatusCode::CONFLICT,
            PortalError::NotFound => StatusCode::NOT_FOUND,
            PortalError::EmailTaken => StatusCode::CONFLICT,
            PortalError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            PortalError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            PortalError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            PortalError::IdempotencyConflict { still_running: true } => StatusCode::CONFLICT,
            PortalError::IdempotencyConflict { still_running: false } => StatusCode::UNPROCESSABLE_ENTITY,
            PortalError::Internal(err) if err.chain().any(|cause| cause.is::<Unavailable>()) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            PortalError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            PortalError::Validation { .. } | PortalError::ChangedMeanwhile { .. } => "validation_failed",
            PortalError::RegistrationClosed { .. } => "registration_closed",
            PortalError::NoAccount { .. } => "no_account",
            PortalError::InvalidCredentials => "invalid_credentials",
            PortalError::Unauthenticated => "unauthenticated",
            PortalError::Forbidden(_)
            | PortalError::EmailNotConfirmed
            | PortalError::SecondFactorSetupRequired
            | PortalError::TermsRequired => "forbidden",
            PortalError::NotFound => "not_found",
            PortalError::EmailTaken => "email_taken",
            PortalError::InvitationInvalid => "invitation_invalid",
            PortalError::TokenInvalid => "token_invalid",
            PortalError::PayloadTooLarge => "payload_too_large",
            PortalError::UnsupportedMediaType => "unsupported_media_type",
            PortalError::RateLimited { .. } => "rate_limited",
            PortalError::IdempotencyConflict { .. } => "idempotency_conflict",
            PortalError::Internal(_) => "internal",
        }
    }

    /// What a person is told. Never the internal error's text.
    pub fn public_message(&self) -> &str {
        match self {
            PortalError::Validation { message, .. } => message,
            PortalError::InvalidCredentials => "The sign-in name or password is incorrect.",
            PortalError::Unauthenticated => "Please sign in.",
            PortalError::Forbidden(_) => "You are not allowed to do that.",
            PortalError::EmailNotConfirmed => "Please confirm your email address first: follow the link we sent you.",
            PortalError::SecondFactorSetupRequired => {
                "Your role requires two-factor authentication: set it up first at /profile/two-factor."
            }
            PortalError::TermsRequired => "Please accept the terms of use first at /terms.",
            PortalError::RegistrationClosed { invitation_required: false } => "Registration is closed.",
            PortalError::RegistrationClosed { invitation_required: true } => {
                "Registration needs an invitation: redeem the code from your invitation email at /redeem."
            }
            PortalError::ChangedMeanwhile { .. } => "This changed meanwhile: reload it and make your change again.",
            PortalError::NoAccount { email_in_use: false } => {
                "No account uses this sign-in. To get one, ask the business for an invitation, then redeem its code at /redeem."
            }
            PortalError::NoAccount { email_in_use: true } => {
                "An account has this email address. Sign in to it as you usually do, then link this sign-in on your security page."
            }
            PortalError::NotFound => "There is nothing here.",
            PortalError::EmailTaken => "An account with this email already exists. Sign in instead.",
            PortalError::TokenInvalid => {
                "This link is not valid any more: it was already used, has expired, or is incomplete."
            }
            PortalError::InvitationInvalid => {
                "This invitation code is not valid. It may be mistyped, expired, revoked or already used."
            }
            PortalError::PayloadTooLarge => "The request is too large.",
            PortalError::UnsupportedMediaType => "Send application/json or application/x-www-form-urlencoded.",
            PortalError::RateLimited { .. } => "Too many requests. Please wait and try again.",
            PortalError::IdempotencyConflict { still_running: true } => {
                "A request with this Idempotency-Key is still being processed; try again shortly."
            }
            PortalError::IdempotencyConflict { still_running: false } => {
                "This Idempotency-Key was used with a different request."
            }
            PortalError::Internal(_) => "Something went wrong on our side. Nothing was changed; please try again.",
        }
    }

    pub fn fields(&self) -> Option<&BTreeMap<String, String>> {
        match self {
            PortalError::Validation { fields, .. } | PortalError::ChangedMeanwhile { fields } if !fields.is_empty() => {
                Some(fields)
            }
            _ => None,
        }
    }

    pub fn body(&self) -> ErrorBody<'_> {
        ErrorBody {
            error: self.code(),
            message: self.public_message(),
            fields: self.fields(),
            terms_required: matches!(self, PortalError::TermsRequired),
        }
    }

    /// Logs what the operators need: our faults in full, client faults briefly.
    pub fn log(&self) {
        match self {
            PortalError::Internal(err) => tracing::error!(error = format!("{err:#}"), "request failed"),
            PortalError::Forbidden(why) => tracing::warn!(code = self.code(), why, "request refused"),
            other => tracing::info!(code = other.code(), "request refused"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_maps_to_the_contract_code_and_status() {
        let cases: Vec<(PortalError, u16, &str)> = vec![
            (PortalError::validation("x"), 400, "validation_failed"),
            (PortalError::InvalidCredentials, 401, "invalid_credentials"),
            (PortalError::Unauthenticated, 401, "unauthenticated"),
            (PortalError::Forbidden("csrf"), 403, "forbidden"),
            (PortalError::NotFound, 404, "not_found"),
            (PortalError::TermsRequired, 403, "forbidden"),
            (PortalError::EmailTaken, 409, "email_taken"),
            (PortalError::InvitationInvalid, 400, "invitation_invalid"),
            (PortalError::TokenInvalid, 400, "token_invalid"),
            (PortalError::PayloadTooLarge, 413, "payload_too_large"),
            (PortalError::UnsupportedMediaType, 415, "unsupported_media_type"),
            (PortalError::RateLimited { retry_after_secs: 5 }, 429, "rate_limited"),
            (PortalError::IdempotencyConflict { still_running: false }, 422, "idempotency_conflict"),
            (PortalError::IdempotencyConflict { still_running: true }, 409, "idempotency_conflict"),
            (PortalError::Internal(anyhow::anyhow!("table gone")), 500, "internal"),
            (
                PortalError::Internal(anyhow::Error::new(Unavailable).context("reading").context("signing in")),
                503,
                "internal",
            ),
        ];
        for (err, status, code) in cases {
            assert_eq!((err.status().as_u16(), err.code()), (status, code));
        }
    }

    #[test]
    fn internal_details_never_reach_the_body() {
        let err = PortalError::Internal(anyhow::anyhow!("secret table name arn:aws:dynamodb"));
        let body = serde_json::to_string(&err.body()).unwrap();
        assert!(!body.contains("arn:aws"), "{body}");
    }
}
