//! What the audit log records: who did what, from where. Every event has its own name, so a log
//! query for one kind of email or one kind of failure finds exactly that.

use std::fmt;

/// The caller's address as the front door (API Gateway) saw it; `unknown` when it did not say.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SourceAddress(String);

impl SourceAddress {
    pub fn new(address: Option<String>) -> Self {
        SourceAddress(address.filter(|a| !a.is_empty()).unwrap_or_else(|| "unknown".into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SourceAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuditEvent {
    Registered,
    RegistrationForExistingEmail,
    EmailConfirmed,
    SignedIn,
    SignInFailed,
    SignInUnconfirmed,
    LockedOut,
    SignedOut,
    Throttled,
    EmailRateLimited,
    PasswordResetRequested,
    PasswordReset,
    PasswordChanged,
    PasswordChangeFailed,
    /// A change that could take an account over was refused: a wrong current password or
    /// second-factor code.
    ReauthenticationFailed,
    ProfileUpdated,
    EmailChanged,
    ContactCreated,
    InvitationCreated,
    InvitationResent,
    InvitationRevoked,
    InvitationRedeemed,
    InvitationSent,
    ConfirmationEmailSent,
    ResetEmailSent,
    AccountExistsEmailSent,
    /// A security notice (password changed or reset, email change asked for, address in use).
    NoticeSent,
    /// An email change was asked for; the account moves when the new address confirms.
    EmailChangeRequested,
    /// A request for a link (reset, confirmation) that no account could answer: nothing was sent.
    EmailRequestUnanswered,
    EmailFailed,
    /// A portal event went to the event bus.
    EventPublished,
    /// A bulk import of contacts was accepted (its rows are imported afterwards).
    ImportStarted,
    /// A contact was created by a bulk import.
    ContactImported,
    PasskeyAdded,
    PasskeyRemoved,
    /// A passkey sign-in was refused (unknown or removed passkey, bad signature, expired ceremony).
    PasskeySignInFailed,
    /// The right password for an account with a second factor: a pending sign-in awaits it.
    SecondFactorRequired,
    /// A wrong or used second-factor code.
    SecondFactorFailed,
    /// Two-factor authentication was set up, changed or turned off.
    TwoFactorChanged,
    /// An emailed sign-in code went out.
    SignInCodeSent,
}

impl AuditEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditEvent::Registered => "registered",
            AuditEvent::RegistrationForExistingEmail => "registration_for_existing_email",
            AuditEvent::EmailConfirmed => "email_confirmed",
            AuditEvent::SignedIn => "signed_in",
            AuditEvent::SignInFailed => "sign_in_failed",
            AuditEvent::SignInUnconfirmed => "sign_in_unconfirmed",
            AuditEvent::LockedOut => "locked_out",
            AuditEvent::SignedOut => "signed_out",
            AuditEvent::Throttled => "throttled",
            AuditEvent::EmailRateLimited => "email_rate_limited",
            AuditEvent::PasswordResetRequested => "password_reset_requested",
            AuditEvent::PasswordReset => "password_reset",
            AuditEvent::PasswordChanged => "password_changed",
            AuditEvent::PasswordChangeFailed => "password_change_failed",
            AuditEvent::ReauthenticationFailed => "reauthentication_failed",
            AuditEvent::ProfileUpdated => "profile_updated",
            AuditEvent::EmailChanged => "email_changed",
            AuditEvent::ContactCreated => "contact_created",
            AuditEvent::InvitationCreated => "invitation_created",
            AuditEvent::InvitationResent => "invitation_resent",
            AuditEvent::InvitationRevoked => "invitation_revoked",
            AuditEvent::InvitationRedeemed => "invitation_redeemed",
            AuditEvent::InvitationSent => "invitation_sent",
            AuditEvent::ConfirmationEmailSent => "confirmation_email_sent",
            AuditEvent::ResetEmailSent => "reset_email_sent",
            AuditEvent::AccountExistsEmailSent => "account_exists_email_sent",
            AuditEvent::NoticeSent => "notice_sent",
            AuditEvent::EmailChangeRequested => "email_change_requested",
            AuditEvent::EmailRequestUnanswered => "email_request_unanswered",
            AuditEvent::EmailFailed => "email_failed",
            AuditEvent::EventPublished => "event_published",
            AuditEvent::ImportStarted => "import_started",
            AuditEvent::ContactImported => "contact_imported",
            AuditEvent::PasskeyAdded => "passkey_added",
            AuditEvent::PasskeyRemoved => "passkey_removed",
            AuditEvent::PasskeySignInFailed => "passkey_sign_in_failed",
            AuditEvent::SecondFactorRequired => "second_factor_required",
            AuditEvent::SecondFactorFailed => "second_factor_failed",
            AuditEvent::TwoFactorChanged => "two_factor_changed",
            AuditEvent::SignInCodeSent => "sign_in_code_sent",
        }
    }
}

impl fmt::Display for AuditEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
