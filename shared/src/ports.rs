//! Ports: the small capabilities a handler needs from the outside world. Adapters implement them
//! for DynamoDB (production) and in memory (handler tests).

use crate::domain::ids::{ContactId, InvitationId, MessageId};
use crate::domain::time::Timestamp;
use async_trait::async_trait;

use crate::domain::contact::{Contact, Login};
use crate::domain::email::Email;
use crate::domain::lockout::{FailedSignIn, LockoutPolicy};
use crate::domain::session::Session;
use crate::domain::token::{EmailToken, TokenPurpose};

#[derive(Debug, thiserror::Error)]
pub enum CreateContactError {
    #[error("a contact with this email already exists")]
    EmailTaken,
    #[error("a contact with this username already exists")]
    UsernameTaken,
    #[error(transparent)]
    Store(#[from] anyhow::Error),
}

/// An emailed token with the outbox message that carries it, written together with a change.
pub type TokenEmail<'a> = (&'a EmailToken, &'a OutboxMessage);

/// The fields of their profile a contact may change (the username cannot change).
#[derive(Clone, Debug)]
pub struct ProfileUpdate {
    pub first_name: String,
    pub last_name: String,
    pub phone: Option<String>,
    /// A new email address, which stays unconfirmed until its link is followed.
    pub new_email: Option<Email>,
}

#[derive(Debug, thiserror::Error)]
pub enum UpdateProfileError {
    #[error("a contact with this email already exists")]
    EmailTaken,
    #[error("the contact changed meanwhile")]
    Conflict,
    #[error(transparent)]
    Store(#[from] anyhow::Error),
}

/// What using a token does, in the same write that uses it up.
#[derive(Debug)]
pub enum TokenUse {
    /// Confirms the address the token was sent to, if it is still the contact's.
    ConfirmEmail,
    /// Sets a new password and clears any lockout.
    ResetPassword(PasswordHashString),
}

#[async_trait]
pub trait ContactStore: Send + Sync {
    /// Creates the contact with its unique email (and username) reserved, all or nothing.
    async fn create(&self, contact: &Contact) -> Result<(), CreateContactError> {
        self.create_with_email(contact, None).await
    }
    /// Creates the contact and, in the same write, queues an email with a token.
    async fn create_with_email(
        &self,
        contact: &Contact,
        email: Option<TokenEmail<'_>>,
    ) -> Result<(), CreateContactError>;
    /// Applies a profile change to `current`; a new email moves its guard item and queues the
    /// confirmation email, all or nothing. Returns the updated contact.
    async fn update_profile(
        &self,
        current: &Contact,
        update: &ProfileUpdate,
        now: Timestamp,
        confirmation: Option<TokenEmail<'_>>,
    ) -> Result<Contact, UpdateProfileError>;
    async fn set_password(
        &self,
        contact_id: &ContactId,
        password_hash: &PasswordHashString,
        now: Timestamp,
    ) -> anyhow::Result<()>;
    /// Queues an email (with its token, if it carries one).
    async fn queue_email(&self, token: Option<&EmailToken>, message: &OutboxMessage) -> anyhow::Result<()>;
    /// Uses up a token of `purpose` and applies `effect`, all or nothing. `None` when the token is
    /// unknown, expired, used, of another purpose, or (for a confirmation) for an address the
    /// contact no longer has.
    async fn use_token(
        &self,
        digest: &str,
        purpose: TokenPurpose,
        effect: &TokenUse,
        now: Timestamp,
    ) -> anyhow::Result<Option<ContactId>>;
    /// Takes one of `limit` allowances per `window_secs` for `key`; `false` when none is left.
    async fn take_allowance(&self, key: &str, limit: u32, window_secs: i64, now: Timestamp) -> anyhow::Result<bool>;
    /// Whether `key` has any of its `limit` allowances left in this window, taking none.
    async fn allowance_left(&self, key: &str, limit: u32, window_secs: i64, now: Timestamp) -> anyhow::Result<bool>;
    async fn get(&self, contact_id: &ContactId) -> anyhow::Result<Option<Contact>>;
    async fn find_by_login(&self, login: &Login) -> anyhow::Result<Option<Contact>>;
    /// Counts a failed sign-in; locks the account at the policy's threshold. Never extends a
    /// lockout in force.
    async fn record_failed_sign_in(
        &self,
        contact_id: &ContactId,
        now: Timestamp,
        policy: &LockoutPolicy,
    ) -> anyhow::Result<FailedSignIn>;
    /// Clears the failure count and lockout after a successful sign-in.
    async fn reset_lockout(&self, contact_id: &ContactId) -> anyhow::Result<()>;
    /// Contacts matching `query` (see [`Contact::matches`]) for the administrators' list, at most
    /// `limit`, newest first. Every contact is considered before the limit applies.
    async fn search(&self, query: &str, limit: usize) -> anyhow::Result<Vec<Contact>>;
}

#[async_trait]
pub trait SessionStore: Send + Sync {
    async fn create(&self, session: &Session) -> anyhow::Result<()>;
    async fn get(&self, id_digest: &str) -> anyhow::Result<Option<Session>>;
    async fn touch(&self, id_digest: &str, now: Timestamp) -> anyhow::Result<()>;
    /// Deletes the session; returns what it was, if it existed.
    async fn delete(&self, id_digest: &str) -> anyhow::Result<Option<Session>>;
    /// Ends every session of a contact, except the one with digest `except`.
    async fn delete_all_for_contact(&self, contact_id: &ContactId, except: Option<&str>) -> anyhow::Result<()>;
}

/// What a use case may reach, one capability per port. A use case names those it uses in its
/// signature (`portal: &(impl UsesContacts + UsesClock)`) and can touch nothing else; the
/// [`crate::Portal`] of a function has them all.
pub trait UsesContacts {
    fn contacts(&self) -> &dyn ContactStore;
}

pub trait UsesSessions {
    fn sessions(&self) -> &dyn SessionStore;
}

pub trait UsesInvitations {
    fn invitations(&self) -> &dyn InvitationStore;
}

pub trait UsesClock {
    fn clock(&self) -> &dyn Clock;
}

/// The site settings (values, not a port; named like one so a use case says what it reads).
pub trait UsesSettings {
    fn settings(&self) -> &crate::config::Settings;
}

/// A shared portal (`Arc<Portal>`, as handlers hold it) has what the portal has.
macro_rules! shared_capability {
    ($capability:ident, $method:ident, $port:ty) => {
        impl<T: $capability + ?Sized> $capability for std::sync::Arc<T> {
            fn $method(&self) -> &$port {
                (**self).$method()
            }
        }
    };
}
shared_capability!(UsesContacts, contacts, dyn ContactStore);
shared_capability!(UsesSessions, sessions, dyn SessionStore);
shared_capability!(UsesInvitations, invitations, dyn InvitationStore);
shared_capability!(UsesClock, clock, dyn Clock);
shared_capability!(UsesSettings, settings, crate::config::Settings);

/// Seconds since the Unix epoch; a port so tests can move time.
pub trait Clock: Send + Sync {
    fn now(&self) -> Timestamp;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64);
        Timestamp::from_secs(secs.unwrap_or_default())
    }
}

use crate::domain::idempotency::{IdempotencyKey, IdempotentStart};
use crate::domain::invitation::{Delivery, Invitation, Redemption};
use crate::domain::outbox::{Claim, OutboxMessage};
use crate::domain::password::PasswordHashString;
use crate::domain::text::Username;

/// What redeeming an invitation does to a contact.
#[derive(Debug)]
pub enum ContactChange {
    /// The invited contact becomes a portal user: credentials, the invitation's roles and account,
    /// and a confirmed email (the code reached it).
    SetCredentials {
        contact_id: ContactId,
        password_hash: PasswordHashString,
        username: Option<Username>,
        roles: Vec<String>,
        account_id: Option<String>,
    },
    /// A new contact (a group invitation has no single contact), with its unique values reserved.
    Create(Contact),
    /// An existing account gets the invitation's roles and account.
    Assign { contact_id: ContactId, roles: Vec<String>, account_id: Option<String> },
}

impl ContactChange {
    pub fn contact_id(&self) -> &ContactId {
        match self {
            ContactChange::SetCredentials { contact_id, .. } | ContactChange::Assign { contact_id, .. } => contact_id,
            ContactChange::Create(contact) => &contact.contact_id,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RedeemError {
    /// Revoked, expired, used up, replaced by a resend, or its contact changed meanwhile.
    #[error("the invitation cannot be redeemed")]
    InvitationInvalid,
    #[error("a contact with this email already exists")]
    EmailTaken,
    #[error("a contact with this username already exists")]
    UsernameTaken,
    #[error(transparent)]
    Store(#[from] anyhow::Error),
}

#[async_trait]
pub trait InvitationStore: Send + Sync {
    /// Stores the invitation, its code lookup and the outbox message carrying the code, together.
    async fn create(&self, invitation: &Invitation, message: &OutboxMessage) -> anyhow::Result<()>;
    async fn get(&self, invitation_id: &InvitationId) -> anyhow::Result<Option<Invitation>>;
    async fn redemptions(&self, invitation_id: &InvitationId) -> anyhow::Result<Vec<Redemption>>;
    async fn find_by_code(&self, code_digest: &str) -> anyhow::Result<Option<Invitation>>;
    async fn list_for_contact(&self, contact_id: &ContactId) -> anyhow::Result<Vec<Invitation>>;
    /// Replaces the code of a not-revoked invitation (the old one stops working) and queues the
    /// email with the new one, together. `false` when the invitation is revoked or changed meanwhile.
    async fn replace_code(
        &self,
        invitation: &Invitation,
        new_digest: &str,
        message: &OutboxMessage,
    ) -> anyhow::Result<bool>;
    /// Revokes the invitation and returns it as it now stands; `None` when there is no such one.
    async fn revoke(&self, invitation_id: &InvitationId, now: Timestamp) -> anyhow::Result<Option<Invitation>>;
    /// One redemption, all or nothing: the invitation still redeemable with this code and under its
    /// maximum, the contact change, and the redemption record.
    async fn redeem(
        &self,
        invitation: &Invitation,
        change: &ContactChange,
        redemption: &Redemption,
        now: Timestamp,
    ) -> Result<(), RedeemError>;
    /// Starts a request with an idempotency key: holds the key for it when it is the first (or the
    /// one before it died), or says what the earlier one left.
    async fn begin_idempotent(&self, key: &IdempotencyKey, now: Timestamp) -> anyhow::Result<IdempotentStart>;
    /// Keeps the answer of the request holding the key, for its retries.
    async fn finish_idempotent(
        &self,
        key: &IdempotencyKey,
        status: u16,
        body: &str,
        now: Timestamp,
    ) -> anyhow::Result<()>;
    /// Lets go of a key whose request failed, so that a retry runs again.
    async fn abandon_idempotent(&self, key: &IdempotencyKey) -> anyhow::Result<()>;
    /// Records how the email with the invitation's current code went (an older message's outcome is
    /// ignored).
    async fn record_delivery(
        &self,
        invitation_id: &InvitationId,
        message_id: &MessageId,
        delivery: Delivery,
        error: Option<&str>,
        now: Timestamp,
    ) -> anyhow::Result<()>;
}

/// The sending side of the outbox. A claim is a lease (see [`Claim`]): a run that fails after
/// claiming gives it back or lets it expire, and never marks the message done.
#[async_trait]
pub trait Outbox: Send + Sync {
    /// Leases a pending message (or one whose lease ended) for sending, or says why not.
    async fn claim(&self, message_id: &MessageId, now: Timestamp) -> anyhow::Result<Claim>;
    /// Marks the message sent and removes its secret.
    async fn mark_sent(&self, message_id: &MessageId, now: Timestamp) -> anyhow::Result<()>;
    /// Marks the message failed for good and removes its secret.
    async fn mark_failed(&self, message_id: &MessageId, reason: &str, now: Timestamp) -> anyhow::Result<()>;
    /// Gives back the lease ending at `lease_until`, so that the next delivery sends at once; a
    /// lease that another run has taken over meanwhile, or a message settled meanwhile, is left.
    async fn release(&self, message_id: &MessageId, lease_until: Timestamp) -> anyhow::Result<()>;
    /// Every message still kept (sent and failed ones until their retention ends), for operators.
    async fn list(&self) -> anyhow::Result<Vec<OutboxMessage>>;
    /// Queues `copy` (a new message, so a new stream record) in place of `original`, which is
    /// marked failed and, for an invitation, no longer its current email, all together. `false`
    /// when the original was sent or changed meanwhile.
    async fn requeue(&self, original: &OutboxMessage, copy: &OutboxMessage, now: Timestamp) -> anyhow::Result<bool>;
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutgoingEmail {
    pub to: String,
    pub subject: String,
    pub text: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// Throttling or a passing fault: try again later.
    #[error("retryable: {0}")]
    Retryable(String),
    /// The message will never go (rejected, suppressed or unverified address).
    #[error("permanent: {0}")]
    Permanent(String),
}

#[async_trait]
pub trait Mailer: Send + Sync {
    async fn send(&self, email: &OutgoingEmail) -> Result<(), SendError>;
}
