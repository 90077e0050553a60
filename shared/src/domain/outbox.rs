//! The transactional outbox: every email is an item written in the same transaction as the change
//! that causes it; the outbox table's stream triggers `send-email`.

use super::event::PortalEvent;
use super::ids::{ContactId, ImportId, InvitationId, MessageId};
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
    /// Someone asked for a reset link for the address in `to`: `send-email` looks the account up
    /// and, if there is one with a password, issues the link. The request path does the same work
    /// whether or not the account exists.
    ResetRequest,
    /// Someone asked for a new confirmation link for `to`: sent if an unconfirmed account has it.
    ConfirmationRequest,
    /// The link confirming a new address (an email change): sent only if no other account holds
    /// the address by then; its owner is told instead ([`MessageKind::AddressInUse`]).
    ConfirmNewEmail,
    /// "Someone tried to use your address": to an account's owner, instead of a link.
    AddressInUse,
    /// To the old address: a change to the address in `detail` was asked for.
    EmailChangeNotice,
    /// To the account's address: the password was changed (signed in).
    PasswordChangedNotice,
    /// To the account's address: the password was reset with an emailed link.
    PasswordResetNotice,
    /// Not an email: a portal event (in `event`) for the event bus.
    Event,
    /// To the account's address: a passkey (named in `detail`) was added.
    PasskeyAddedNotice,
    /// To the account's address: a passkey (named in `detail`) was removed.
    PasskeyRemovedNotice,
    /// A 6-digit sign-in code (the second factor by email), valid until `valid_until`.
    SignInCode,
    /// To the account's address: two-factor authentication changed (`detail` says how).
    TwoFactorNotice,
    /// Not an email: a group invitation's code for every contact in `recipients`; `send-email`
    /// expands it into one [`MessageKind::Invitation`] per contact (see `domain::group`).
    InvitationFanout,
    /// To the account's address: the security notices its notice allowance held back (`held`
    /// says how many and since when, `detail` of which kinds).
    HeldNoticesSummary,
    /// To the account's address: a sign-in from a browser that was not a trusted device of it
    /// (`detail`: the address, a line break, the User-Agent).
    NewSignInNotice,
    /// To the address an account had: it was deleted (`detail`: "staff" when staff deleted it).
    AccountDeletedNotice,
    /// Someone asked to sign in to the account at `to` with an emailed code: `send-email` looks the
    /// account up and, if one may sign in, stores a code and sends it
    /// ([`MessageKind::EmailedSignInCode`]). The request path does the same work either way.
    SignInCodeRequest,
    /// A 6-digit code that signs in (the first factor), valid until `valid_until`.
    EmailedSignInCode,
    /// Not an email: the erasure of a deleted account's remains (`contact_id`), see
    /// `usecases::deletion`.
    Erasure,
}

impl MessageKind {
    /// The kind's name as stored (`snake_case`), e.g. in held-notice summaries.
    pub fn name(self) -> String {
        serde_json::to_value(self).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
    }
}

/// The held-back notices a summary sums up: how many, and since when (what `send-email` counts
/// off once the summary goes out).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldSummary {
    pub count: u32,
    pub since: Timestamp,
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
            MessageKind::ResetRequest => AuditEvent::ResetEmailSent,
            MessageKind::ConfirmationRequest | MessageKind::ConfirmNewEmail => AuditEvent::ConfirmationEmailSent,
            MessageKind::AddressInUse
            | MessageKind::EmailChangeNotice
            | MessageKind::PasswordChangedNotice
            | MessageKind::PasswordResetNotice
            | MessageKind::PasskeyAddedNotice
            | MessageKind::PasskeyRemovedNotice => AuditEvent::NoticeSent,
            MessageKind::Event => AuditEvent::EventPublished,
            MessageKind::TwoFactorNotice => AuditEvent::NoticeSent,
            MessageKind::SignInCode => AuditEvent::SignInCodeSent,
            MessageKind::InvitationFanout => AuditEvent::InvitationSent,
            MessageKind::HeldNoticesSummary | MessageKind::NewSignInNotice => AuditEvent::NoticeSent,
            MessageKind::AccountDeletedNotice => AuditEvent::NoticeSent,
            MessageKind::SignInCodeRequest | MessageKind::EmailedSignInCode => AuditEvent::SignInCodeSent,
            MessageKind::Erasure => AuditEvent::AccountErased,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageStatus {
    Pending,
    /// Leased by one `send-email` run until `lease_until`; after that another delivery may take it.
    Sending,
    Sent,
    Failed,
}

/// How long a claim (a lease) holds before another delivery of the record may send: twice the
/// function timeout of `send-email` (15 s; `tests/test_template.py` holds the two together), so the
/// run that holds a lease has ended (done, or stopped by Lambda) before it runs out and no two runs
/// ever send one message; and short enough that a delivery finding it held waits it out within the
/// stream's retries (see [`BUSY_WAIT_SECS`]).
pub const LEASE_SECS: i64 = 30;
/// The longest a delivery waits, once, for another run's lease to run out before it hands the
/// record back to the stream: within the function's 15 s, leaving the delivery itself 7 s. So each
/// of the stream's five retries spends at least this long, and a lease (30 s) always runs out before
/// they do (a record no longer lands in the failure queue because its lease outlived the retries).
pub const BUSY_WAIT_SECS: i64 = 8;
/// How long a sent or failed message is kept for inspection before TTL removes it.
pub const RETENTION_SECS: i64 = 30 * 86_400;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OutboxMessage {
    pub message_id: MessageId,
    pub kind: MessageKind,
    /// The recipient's address and first name: removed once the message settles (sent or failed),
    /// so that no settled message names anyone.
    #[serde(default)]
    pub to: String,
    #[serde(default)]
    pub first_name: String,
    /// The code or token the email carries; removed from the item once sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<MailSecret>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invitation_id: Option<InvitationId>,
    /// The contact the message is about, when the request knew it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact_id: Option<ContactId>,
    /// What a notice names (the new address of an email change); never a secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// When what the email offers stops working (shown in the email).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_until: Option<Timestamp>,
    pub status: MessageStatus,
    pub created_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// While `Sending`: when the lease of the run that claimed it ends. It also names that lease:
    /// only its holder may give it back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_until: Option<Timestamp>,
    /// How many times a run has claimed it (more than one: a retry). Absent until the first claim,
    /// so a new message's stream record is as it was.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub attempts: u32,
    /// A [`MessageKind::Event`]'s event: published to the bus instead of mailed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<PortalEvent>,
    /// The bulk import that queued this invitation email, whose counts its outcome adds to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub import_id: Option<ImportId>,
    /// A fan-out's recipients (see [`MessageKind::InvitationFanout`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recipients: Vec<super::group::Recipient>,
    /// The digest of the recipient's address (lower-cased, SHA-256 hex), kept once the message
    /// settles and its address goes: which messages went to an address can still be found (`make
    /// smoke` follows its throwaway address's) without the address being stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipient: Option<String>,
    /// A fan-out's progress marker: how many of its recipients' emails are queued.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub fanned_out: u32,
    /// A group invitation's per-contact email: the fan-out it came from (the invitation's current
    /// `message_id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fanout_id: Option<MessageId>,
    /// A [`MessageKind::HeldNoticesSummary`]'s count of held notices.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held: Option<HeldSummary>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// What a delivery of an outbox record gets when it tries to claim the message.
#[derive(Clone, Debug, PartialEq)]
pub enum Claim {
    /// This delivery holds the lease (the message as claimed, with its `lease_until`): it sends.
    Leased(OutboxMessage),
    /// Another delivery holds a live lease. Its run may still fail, so this record is not done:
    /// it is reported as a failure for the stream to retry after a while.
    Busy { lease_until: Timestamp },
    /// Sent or failed for good already (the message as it stands): nothing to send, but its
    /// outcome may still need recording (a run that failed after sending retries only that).
    Settled(OutboxMessage),
    /// No such message (TTL removed it after its retention).
    Missing,
}

impl OutboxMessage {
    /// A fresh copy of an unsent message to queue again (an operator's retry): a new id, so a new
    /// stream record, and the same content. `None` for a message that was sent.
    pub fn requeued(&self, now: Timestamp) -> Option<OutboxMessage> {
        if self.status == MessageStatus::Sent {
            return None;
        }
        Some(OutboxMessage {
            message_id: MessageId::generate(),
            status: MessageStatus::Pending,
            created_at: now,
            error: None,
            lease_until: None,
            attempts: 0,
            ..self.clone()
        })
    }

    /// The message as it is kept once settled: no secret, lease, recipient, name or detail (what
    /// the stored item's settling update removes).
    pub fn settle_forgetting(&mut self) {
        self.secret = None;
        self.lease_until = None;
        self.to.clear();
        self.first_name.clear();
        self.detail = None;
        self.recipients.clear();
    }

    /// What a claim at `now` gets (the rule both outbox adapters apply).
    pub fn claim_at(&self, now: Timestamp) -> Claim {
        match (self.status, self.lease_until) {
            (MessageStatus::Sent | MessageStatus::Failed, _) => Claim::Settled(self.clone()),
            (MessageStatus::Sending, Some(until)) if until > now => Claim::Busy { lease_until: until },
            _ => {
                let mut claimed = self.clone();
                claimed.status = MessageStatus::Sending;
                claimed.lease_until = Some(now + LEASE_SECS);
                claimed.attempts += 1;
                Claim::Leased(claimed)
            }
        }
    }
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
            contact_id: None,
            detail: None,
            valid_until: None,
            status: MessageStatus::Pending,
            created_at: now,
            error: None,
            lease_until: None,
            attempts: 0,
            event: None,
            import_id: None,
            recipients: Vec::new(),
            recipient: (!to.is_empty()).then(|| super::secret::digest(&to.to_lowercase())),
            fanned_out: 0,
            fanout_id: None,
            held: None,
        }
    }

    /// The outbox item that carries `event` to the bus, written in the transaction that commits
    /// the fact. Its message id is the event id: one item per event.
    pub fn for_event(event: &PortalEvent) -> Self {
        let mut message = OutboxMessage::new(MessageKind::Event, "", "", None, event.occurred_at);
        message.message_id = MessageId::from(event.event_id.as_str());
        message.event = Some(event.clone());
        message
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::event::Fact;

    #[test]
    fn an_event_rides_in_an_outbox_item_named_by_its_id_and_reads_back_whole() {
        let event = Fact::ContactImported { contact_id: "c-1".into(), import_id: "import-7".into() }
            .at(Timestamp::from_secs(1_800_000_000));
        let message = OutboxMessage::for_event(&event);
        assert_eq!(message.kind, MessageKind::Event);
        assert_eq!(message.message_id.as_str(), event.event_id.as_str());
        assert!(message.secret.is_none());
        let item: std::collections::HashMap<String, serde_dynamo::AttributeValue> =
            serde_dynamo::to_item(&message).expect("an item");
        let back: OutboxMessage = serde_dynamo::from_item(item).expect("reads back");
        assert_eq!(back.event, Some(event.clone()));
        assert_eq!(event.detail()["import_id"], "import-7");
        assert_eq!(event.detail_type(), "ContactImported");
    }
}
