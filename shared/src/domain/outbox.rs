//! The transactional outbox: every email is an item written in the same transaction as the change
//! that causes it; the outbox table's stream triggers `send-email`.

use super::ids::{InvitationId, MessageId};
use super::time::Timestamp;
use std::fmt;

use serde::{Deserialize, Serialize};

/// A secret that travels to the mailer (an invitation code): kept only in the outbox item until the
/// email is sent, never in a log.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MailSecret(String);

impl MailSecret {
    pub fn new(value: String) -> Self {
        MailSecret(value)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for MailSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MailSecret(..)")
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageKind {
    Invitation,
    /// A link confirming the address it is sent to.
    ConfirmEmail,
    /// A single-use link to choose a new password.
    ResetPassword,
    /// Registration with an address that already has an account, while confirmation is required:
    /// the owner is told instead of the registrant (who gets the same answer as for a new address).
    AccountExists,
}

impl MessageKind {
    /// The audit event logged when an email of this kind goes out.
    pub fn sent_event(self) -> super::audit::AuditEvent {
        use super::audit::AuditEvent;
        match self {
            MessageKind::Invitation => AuditEvent::InvitationSent,
            MessageKind::ConfirmEmail => AuditEvent::ConfirmationEmailSent,
            MessageKind::ResetPassword => AuditEvent::ResetEmailSent,
            MessageKind::AccountExists => AuditEvent::AccountExistsEmailSent,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageStatus {
    Pending,
    /// Claimed by one `send-email` run; a claim older than [`CLAIM_TIMEOUT_SECS`] may be retaken.
    Sending,
    Sent,
    Failed,
}

/// How long a claim holds before another delivery of the record may send (a crashed run).
pub const CLAIM_TIMEOUT_SECS: i64 = 300;
/// How long a sent or failed message is kept for inspection before TTL removes it.
pub const RETENTION_SECS: i64 = 30 * 86_400;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OutboxMessage {
    pub message_id: MessageId,
    pub kind: MessageKind,
    pub to: String,
    pub first_name: String,
    /// The code or token the email carries; removed from the item once sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<MailSecret>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invitation_id: Option<InvitationId>,
    /// When what the email offers stops working (shown in the email).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_until: Option<Timestamp>,
    pub status: MessageStatus,
    pub created_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl OutboxMessage {
    pub fn new(kind: MessageKind, to: &str, first_name: &str, secret: Option<MailSecret>, now: Timestamp) -> Self {
        OutboxMessage {
            message_id: MessageId::generate(),
            kind,
            to: to.to_string(),
            first_name: first_name.to_string(),
            secret,
            invitation_id: None,
            valid_until: None,
            status: MessageStatus::Pending,
            created_at: now,
            error: None,
        }
    }
}
