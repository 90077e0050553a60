//! What the audit log records: who did what, from where. Every event has its own name, so a log
//! query for one kind of email or one kind of failure finds exactly that.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::ids::ContactId;
use super::time::{Timestamp, rfc3339};

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
    /// Staff switched the account's sign-in off (its sessions ended with it).
    AccountDisabled,
    /// Staff switched the account's sign-in back on.
    AccountEnabled,
    /// Staff lifted the account's lockout.
    AccountUnlocked,
    /// Staff ended every session of the account.
    SignedOutEverywhere,
    /// Staff sent the account a reset link (and maybe blocked its current password).
    PasswordResetByStaff,
    /// Staff removed the account's second factors and passkeys.
    TwoFactorReset,
    /// Staff replaced the account's web roles and parent account.
    RolesChanged,
    /// The person accepted a version of the terms of use.
    TermsAccepted,
    /// The person downloaded everything stored about them.
    DataExported,
    /// The account was deleted (by the person, or by staff): a tombstone stays.
    AccountDeleted,
    /// What a deleted account left (sessions, factors, passkeys, invitations) was erased.
    AccountErased,
    /// An administrator changed site settings at run time.
    SettingsChanged,
    /// An external identity (OpenID Connect) was linked to the account.
    IdentityLinked,
    /// An external identity was unlinked from the account.
    IdentityUnlinked,
    /// A sign-in, link or redemption through a provider failed (at the provider, or in the
    /// callback's checks).
    ExternalSignInFailed,
    /// Mail to the account's address bounced for good or was reported as spam: none goes to it
    /// until the person confirms it again or changes it.
    EmailUndeliverable,
    /// A soft bounce (a full mailbox, a server that is down): nothing was marked.
    EmailSoftBounced,
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
            AuditEvent::IdentityLinked => "identity_linked",
            AuditEvent::IdentityUnlinked => "identity_unlinked",
            AuditEvent::ExternalSignInFailed => "external_sign_in_failed",
            AuditEvent::PasskeyAdded => "passkey_added",
            AuditEvent::PasskeyRemoved => "passkey_removed",
            AuditEvent::PasskeySignInFailed => "passkey_sign_in_failed",
            AuditEvent::SecondFactorRequired => "second_factor_required",
            AuditEvent::SecondFactorFailed => "second_factor_failed",
            AuditEvent::TwoFactorChanged => "two_factor_changed",
            AuditEvent::SignInCodeSent => "sign_in_code_sent",
            AuditEvent::AccountDisabled => "account_disabled",
            AuditEvent::AccountEnabled => "account_enabled",
            AuditEvent::AccountUnlocked => "account_unlocked",
            AuditEvent::SignedOutEverywhere => "signed_out_everywhere",
            AuditEvent::PasswordResetByStaff => "password_reset_by_staff",
            AuditEvent::TwoFactorReset => "two_factor_reset",
            AuditEvent::RolesChanged => "roles_changed",
            AuditEvent::TermsAccepted => "terms_accepted",
            AuditEvent::DataExported => "data_exported",
            AuditEvent::AccountDeleted => "account_deleted",
            AuditEvent::AccountErased => "account_erased",
            AuditEvent::SettingsChanged => "settings_changed",
            AuditEvent::EmailUndeliverable => "email_undeliverable",
            AuditEvent::EmailSoftBounced => "email_soft_bounced",
        }
    }
}

impl fmt::Display for AuditEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One entry of the audit trail: who (`actor_id`; none for someone not signed in) did what
/// (`kind`) to which account (`contact_id`), when and from where. Written in the same write as
/// the change it records. `detail` holds ids and flags the portal chose, never text a person
/// typed (a login that matches no account is not kept) and never a secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// A UUID v7: entries sort by it in the order they were written, to the millisecond.
    pub entry_id: String,
    pub at: Timestamp,
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor_id: Option<ContactId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact_id: Option<ContactId>,
    pub ip: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub detail: BTreeMap<String, String>,
    /// When the retention rule removes it (DynamoDB's TTL).
    #[serde(rename = "ttl")]
    pub expires_at: Timestamp,
}

impl AuditEntry {
    pub fn new(
        kind: AuditEvent,
        actor_id: Option<&ContactId>,
        contact_id: Option<&ContactId>,
        source: &SourceAddress,
        at: Timestamp,
        kept_secs: i64,
    ) -> Self {
        AuditEntry {
            entry_id: uuid::Uuid::now_v7().to_string(),
            at,
            kind: kind.as_str().to_string(),
            actor_id: actor_id.cloned(),
            contact_id: contact_id.cloned(),
            ip: source.as_str().to_string(),
            detail: BTreeMap::new(),
            expires_at: at + kept_secs,
        }
    }

    /// Adds `key: value` to the detail (ids, flags and names the portal chose only).
    pub fn with(mut self, key: &str, value: impl Into<String>) -> Self {
        self.detail.insert(key.to_string(), value.into());
        self
    }

    /// The UTC day it was written on (`2026-12-07`): the time index's partition, so that a day's
    /// entries share one partition and no partition takes every entry ever written.
    pub fn day(&self) -> String {
        day_of(self.at)
    }
}

/// The UTC day of `at`, as the audit trail's time index names it.
pub fn day_of(at: Timestamp) -> String {
    rfc3339(at)[..10].to_string()
}

/// What to read of the audit trail: by contact, else by actor (each has its own index), else by
/// time; optionally one kind, or any of several kinds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditQuery {
    pub contact_id: Option<ContactId>,
    pub actor_id: Option<ContactId>,
    pub kind: Option<String>,
    /// Any of these kinds (none: every kind).
    pub kinds: Vec<String>,
}

impl AuditQuery {
    /// Whether `entry` is one this query asks for.
    pub fn matches(&self, entry: &AuditEntry) -> bool {
        self.contact_id.as_ref().is_none_or(|id| entry.contact_id.as_ref() == Some(id))
            && self.actor_id.as_ref().is_none_or(|id| entry.actor_id.as_ref() == Some(id))
            && self.kind.as_ref().is_none_or(|kind| &entry.kind == kind)
            && (self.kinds.is_empty() || self.kinds.contains(&entry.kind))
    }
}
