//! Ports: the small capabilities a handler needs from the outside world. Adapters implement them
//! for DynamoDB (production) and in memory (handler tests).

use crate::domain::ids::{ContactId, InvitationId, MessageId};
use crate::domain::time::Timestamp;
use async_trait::async_trait;

use crate::domain::audit::AuditEntry;
use crate::domain::contact::{Contact, Login, TermsAccepted};
use crate::domain::deliverability::Undeliverable;
use crate::domain::email::Email;
use crate::domain::event::PortalEvent;
use crate::domain::identity::{ExternalIdentity, ExternalState, LinkedIdentity, OidcProvider};
use crate::domain::lockout::{AttemptSubject, FailedSignIn, LockoutPolicy, LockoutState};
use crate::domain::session::Session;
use crate::domain::token::EmailToken;

#[derive(Debug, thiserror::Error)]
pub enum CreateContactError {
    #[error("a contact with this email already exists")]
    EmailTaken,
    #[error("a contact with this username already exists")]
    UsernameTaken,
    #[error("an account has this external identity already")]
    IdentityTaken,
    #[error(transparent)]
    Store(#[from] anyhow::Error),
}

/// Why an identity could not be linked or unlinked.
#[derive(Debug, thiserror::Error)]
pub enum LinkIdentityError {
    /// Another account has the identity.
    #[error("another account has this identity")]
    Taken,
    /// The account changed (or was deleted) since it was read.
    #[error("the account changed meanwhile")]
    Changed,
    #[error(transparent)]
    Store(#[from] anyhow::Error),
}

/// What rides along in the same write as the change that causes it: an email (with the token it
/// carries) or an event for the outbox, or an entry of the audit trail.
#[derive(Clone, Debug)]
// Queued values are few and short-lived (a handful per request): boxing the outbox message to
// even out the variants would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum Queued {
    Outbox { token: Option<EmailToken>, message: OutboxMessage },
    Audit(AuditEntry),
}

impl Queued {
    pub fn new(message: OutboxMessage) -> Self {
        Queued::Outbox { token: None, message }
    }

    pub fn with_token(token: EmailToken, message: OutboxMessage) -> Self {
        Queued::Outbox { token: Some(token), message }
    }

    /// The token an email carries, if any.
    pub fn token(&self) -> Option<&EmailToken> {
        match self {
            Queued::Outbox { token, .. } => token.as_ref(),
            Queued::Audit(_) => None,
        }
    }
}

/// An event rides the outbox like an email: `emails.push(Fact::X { .. }.at(now).into())` puts it
/// in the same write as the change it reports.
impl From<PortalEvent> for Queued {
    fn from(event: PortalEvent) -> Self {
        Queued::new(OutboxMessage::for_event(&event))
    }
}

/// An audit entry rides along the same way: `emails.push(entry.into())`.
impl From<AuditEntry> for Queued {
    fn from(entry: AuditEntry) -> Self {
        Queued::Audit(entry)
    }
}

/// The fields of their profile a contact may change (the username cannot change).
#[derive(Clone, Debug)]
pub struct ProfileUpdate {
    pub first_name: String,
    pub last_name: String,
    pub phone: Option<String>,
    /// A new address to confirm: it becomes `pending_email`; nothing moves until its link is used.
    pub pending_email: Option<Email>,
}

#[derive(Debug, thiserror::Error)]
pub enum UpdateProfileError {
    #[error("the contact changed meanwhile")]
    Conflict,
    #[error(transparent)]
    Store(#[from] anyhow::Error),
}

/// What using a token does, in the same write that uses it up.
#[derive(Debug)]
pub enum TokenUse {
    /// Confirms the contact's current address (the one the token was sent to).
    ConfirmEmail,
    /// Makes the pending address the token was sent to the sign-in address: its guard item moves,
    /// it is confirmed, and every session ends (the new epoch).
    MoveEmail { epoch: String },
    /// Sets a new password, clears any lockout, voids every reset link and ends every session.
    ResetPassword { hash: PasswordHashString, epoch: String },
}

/// Security notices that the account's notice allowance held back: how many, of which kinds, and
/// since when.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HeldNotices {
    pub count: u32,
    pub kinds: Vec<String>,
    pub since: Timestamp,
}

/// A trusted device (OWASP's device cookie): a browser that signed in to this account before. Its
/// own failures count, so a lockout that others caused does not block it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Device {
    pub digest: String,
    pub contact_id: ContactId,
    pub expires_at: Timestamp,
}

pub use crate::domain::contact::AccountEdit;

#[derive(Debug, thiserror::Error)]
pub enum EditAccountError {
    /// The account is gone or deleted.
    #[error("no such account")]
    Missing,
    #[error(transparent)]
    Store(#[from] anyhow::Error),
}

#[async_trait]
pub trait ContactStore: Send + Sync {
    /// Creates the contact with its unique email (and username) reserved, all or nothing.
    async fn create(&self, contact: &Contact) -> Result<(), CreateContactError> {
        self.create_with_emails(contact, &[]).await
    }
    /// Creates the contact and, in the same write, queues `emails`.
    async fn create_with_emails(&self, contact: &Contact, emails: &[Queued]) -> Result<(), CreateContactError>;
    /// Applies a profile change to `current` (as read: a concurrent change is a conflict) and queues
    /// `emails`, all or nothing. Returns the updated contact.
    async fn update_profile(
        &self,
        current: &Contact,
        update: &ProfileUpdate,
        now: Timestamp,
        emails: &[Queued],
    ) -> Result<Contact, UpdateProfileError>;
    /// Sets a new password with a new session epoch (every older session ends), voids the reset
    /// links and queues `emails`, all or nothing.
    async fn change_password(
        &self,
        contact_id: &ContactId,
        password_hash: &PasswordHashString,
        epoch: &str,
        now: Timestamp,
        emails: &[Queued],
    ) -> anyhow::Result<()>;
    /// Queues emails (with their tokens), all or nothing.
    async fn queue_emails(&self, emails: &[Queued]) -> anyhow::Result<()>;
    /// Stores a token issued after the request that asked for it (by `send-email`). A reset token
    /// becomes the contact's only working one: its nonce replaces the contact's. `false` when the
    /// contact is gone.
    async fn issue_token(&self, token: &EmailToken) -> anyhow::Result<bool>;
    /// The token with this digest, if one is stored (usable or not).
    async fn find_token(&self, digest: &str) -> anyhow::Result<Option<EmailToken>>;
    /// Uses up `token` on `contact` (as read) and applies `effect`, with `emails`, all or nothing.
    /// `false` when it was used meanwhile, or no longer fits the contact (another address, a newer
    /// reset link, an address another account took).
    async fn use_token(
        &self,
        token: &EmailToken,
        contact: &Contact,
        effect: &TokenUse,
        now: Timestamp,
        emails: &[Queued],
    ) -> anyhow::Result<bool>;
    /// Stores an emailed sign-in code (its digest) for the contact until `expires_at`, replacing
    /// any earlier one.
    async fn set_sign_in_code(&self, contact_id: &ContactId, digest: &str, expires_at: Timestamp)
    -> anyhow::Result<()>;
    /// Uses up the contact's emailed sign-in code when `digest` is its digest, it has not expired
    /// and fewer than `tries` wrong codes were tried; a wrong code counts one try. `false` unless
    /// it was used up by this call.
    async fn use_sign_in_code(
        &self,
        contact_id: &ContactId,
        digest: &str,
        now: Timestamp,
        tries: u32,
    ) -> anyhow::Result<bool>;
    /// The site settings changed at run time, as stored (version 0 and no values when never).
    async fn run_time_settings(&self) -> anyhow::Result<crate::site_settings::RunTimeSettings>;
    /// Stores `next` (its version one above `read`'s) with `queued` (its audit entry and event), all
    /// or nothing; `false` when another change was stored since the version `read` was read.
    async fn save_run_time_settings(
        &self,
        next: &crate::site_settings::RunTimeSettings,
        read: u64,
        queued: &[Queued],
    ) -> anyhow::Result<bool>;
    /// Keeps the state of a trip to an identity provider under the digest of its `state` until it
    /// expires (`EXTERNAL_STATE_SECS`).
    async fn save_external_state(&self, state_digest: &str, state: &ExternalState) -> anyhow::Result<()>;
    /// Takes the state kept under `state_digest`: read and removed in one call, so a callback
    /// replayed finds nothing.
    async fn take_external_state(&self, state_digest: &str) -> anyhow::Result<Option<ExternalState>>;
    /// The account an external identity is linked to (one read of its guard item).
    async fn identity_owner(&self, provider: &str, subject: &str) -> anyhow::Result<Option<ContactId>>;
    /// Links `identity` to `current` (as read: not deleted, its identities unchanged since) with
    /// `queued` (its audit entry), all or nothing. Returns the account as changed.
    async fn link_identity(
        &self,
        current: &Contact,
        identity: &LinkedIdentity,
        queued: &[Queued],
    ) -> Result<Contact, LinkIdentityError>;
    /// Unlinks the identity `provider`/`subject` from `current` (as read) and frees it, with
    /// `queued`, all or nothing. Returns the account as changed.
    async fn unlink_identity(
        &self,
        current: &Contact,
        provider: &str,
        subject: &str,
        now: Timestamp,
        queued: &[Queued],
    ) -> Result<Contact, LinkIdentityError>;
    /// Marks `address` undeliverable (a hard bounce or a complaint): the mark `send-email` reads
    /// and, when `contact` (as read) is the account whose address it still is, on the contact, with
    /// `queued` (its audit entry), all or nothing. `false` when the contact's address changed since
    /// it was read (nothing written).
    async fn mark_undeliverable(
        &self,
        address: &Email,
        mark: &Undeliverable,
        contact: Option<&Contact>,
        queued: &[Queued],
    ) -> anyhow::Result<bool>;
    /// Whether mail to `address` is stopped (marked, and not confirmed again since).
    async fn is_undeliverable(&self, address: &Email) -> anyhow::Result<bool>;
    /// Takes one of `limit` allowances per `window_secs` for `key`; `false` when none is left.
    async fn take_allowance(&self, key: &str, limit: u32, window_secs: i64, now: Timestamp) -> anyhow::Result<bool>;
    /// Gives back one allowance taken in this window (an attempt that turned out right).
    async fn give_back_allowance(&self, key: &str, window_secs: i64, now: Timestamp) -> anyhow::Result<()>;
    async fn get(&self, contact_id: &ContactId) -> anyhow::Result<Option<Contact>>;
    /// Applies a staff change to the account (which must exist and not be deleted) and writes
    /// `queued` (its audit entry, event and notices), all or nothing. Returns the account as
    /// changed.
    async fn edit_account(
        &self,
        current: &Contact,
        edit: &AccountEdit,
        now: Timestamp,
        queued: &[Queued],
    ) -> Result<Contact, EditAccountError>;
    /// One page of the audit trail, newest first.
    async fn audit_trail(
        &self,
        query: &crate::domain::audit::AuditQuery,
        page: &crate::domain::listing::PageRequest,
    ) -> anyhow::Result<crate::domain::listing::Paged<crate::domain::audit::AuditEntry>>;
    /// Whether an account holds this address (one read of its guard item).
    async fn email_in_use(&self, email: &Email) -> anyhow::Result<bool>;
    async fn find_by_login(&self, login: &Login) -> anyhow::Result<Option<Contact>>;
    /// Takes one attempt at a password before it is checked, atomically: refused (`false`) while
    /// the subject (an account, or a login no account has) is locked or `threshold` attempts are
    /// already counted. So a burst of parallel guesses gets at most `threshold` checks.
    async fn reserve_attempt(
        &self,
        subject: &AttemptSubject,
        now: Timestamp,
        policy: &LockoutPolicy,
    ) -> anyhow::Result<bool>;
    /// After a reserved attempt failed: locks the subject once the count reached the threshold.
    /// Never extends a lockout in force.
    async fn record_failed_sign_in(
        &self,
        subject: &AttemptSubject,
        now: Timestamp,
        policy: &LockoutPolicy,
    ) -> anyhow::Result<FailedSignIn>;
    /// The subject's lockout state as stored (one read, the same a recorded failure makes): what
    /// an attempt refused by its reservation reads, so that it does the work a wrong password does.
    async fn lockout_of(&self, subject: &AttemptSubject) -> anyhow::Result<LockoutState>;
    /// Clears the attempt count and lockout after a successful sign-in.
    async fn reset_lockout(&self, contact_id: &ContactId) -> anyhow::Result<()>;
    /// Gives back one reserved attempt that turned out right, keeping the other failures and any
    /// lockout (a right password before a second factor: the sign-in is not done yet).
    async fn release_attempt(&self, contact_id: &ContactId) -> anyhow::Result<()>;
    /// Takes one attempt on a trusted device of `contact_id`: `false` when the device is not this
    /// account's, expired, or used up its own failures (it is then no longer trusted).
    async fn reserve_device_attempt(
        &self,
        digest: &str,
        contact_id: &ContactId,
        now: Timestamp,
        threshold: u32,
    ) -> anyhow::Result<bool>;
    /// Trusts a device for the account (again), with no failures counted.
    async fn remember_device(&self, device: &Device) -> anyhow::Result<()>;
    /// Notes a security notice that the account's own notice allowance held back (`kind` is its
    /// message kind's name), to be summed up in a later notice.
    async fn hold_notice(&self, contact_id: &ContactId, kind: &str, now: Timestamp) -> anyhow::Result<()>;
    /// The notices held back for the account and not yet summed up, if any.
    async fn held_notices(&self, contact_id: &ContactId) -> anyhow::Result<Option<HeldNotices>>;
    /// Counts off the held notices a summary went out for (`held`: as many, held since then);
    /// those held since stay. Done once however often it is repeated: the count is taken off only
    /// while the held notices are still those since `held.since`.
    async fn clear_held_notices(
        &self,
        contact_id: &ContactId,
        held: &crate::domain::outbox::HeldSummary,
        now: Timestamp,
    ) -> anyhow::Result<()>;
    /// A page of the administrators' contacts list from indexes: every contact newest first, or
    /// with a `prefix` (normalised) those whose email, first or last name starts with it, in the
    /// order of the matched text.
    async fn list_page(&self, prefix: &str, page: &PageRequest) -> anyhow::Result<Paged<Contact>>;
}

#[async_trait]
pub trait SessionStore: Send + Sync {
    /// Stores a new session and, in the same write, `queued` (the sign-in's audit entry).
    async fn create(&self, session: &Session, queued: &[Queued]) -> anyhow::Result<()>;
    async fn get(&self, id_digest: &str) -> anyhow::Result<Option<Session>>;
    async fn touch(&self, id_digest: &str, now: Timestamp) -> anyhow::Result<()>;
    /// Deletes the session; returns what it was, if it existed.
    async fn delete(&self, id_digest: &str) -> anyhow::Result<Option<Session>>;
    /// The contact's stored sessions (ended ones too, until their TTL), from an index: no scan.
    async fn list_for_contact(&self, contact_id: &ContactId) -> anyhow::Result<Vec<Session>>;
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

/// A browser's trip to an OpenID Connect provider: where it goes.
pub struct AuthorizationRequest<'a> {
    pub redirect_uri: &'a str,
    pub state: &'a str,
    pub nonce: &'a str,
    /// The PKCE verifier kept server-side: its S256 challenge goes to the provider.
    pub pkce_verifier: &'a str,
}

/// The provider's answer at the callback, to exchange for a verified identity.
pub struct CodeExchange<'a> {
    pub code: &'a str,
    pub redirect_uri: &'a str,
    pub pkce_verifier: &'a str,
    pub nonce: &'a str,
}

/// Why a provider gave no identity: said in the audit entry and the log, never to the browser
/// beyond `invalid_credentials`.
#[derive(Debug, thiserror::Error)]
pub enum ExternalFailure {
    /// The provider could not be reached or answered badly (discovery, JWKS, the token endpoint).
    #[error("the provider failed: {0}")]
    Provider(String),
    /// The ID token failed a check (issuer, audience, signature, expiry, nonce).
    #[error("the ID token was refused: {0}")]
    Token(String),
}

/// OpenID Connect providers over the network: discovery, the authorization URL, the code exchange
/// and the ID token's checks (`adapters::oidc` with the `oidc` feature; tests use a fake).
#[async_trait]
pub trait IdentityProviders: Send + Sync {
    /// The provider's authorization URL for this trip.
    async fn authorization_url(
        &self,
        provider: &OidcProvider,
        request: &AuthorizationRequest<'_>,
    ) -> Result<String, ExternalFailure>;
    /// Exchanges the code (with the PKCE verifier) and checks the ID token: the identity it holds.
    async fn identity(
        &self,
        provider: &OidcProvider,
        exchange: &CodeExchange<'_>,
    ) -> Result<ExternalIdentity, ExternalFailure>;
}

/// A portal without a provider client (every function but external-sign-in).
pub struct NoIdentityProviders;

#[async_trait]
impl IdentityProviders for NoIdentityProviders {
    async fn authorization_url(
        &self,
        _: &OidcProvider,
        _: &AuthorizationRequest<'_>,
    ) -> Result<String, ExternalFailure> {
        Err(ExternalFailure::Provider("this function has no OpenID Connect client".into()))
    }

    async fn identity(&self, _: &OidcProvider, _: &CodeExchange<'_>) -> Result<ExternalIdentity, ExternalFailure> {
        Err(ExternalFailure::Provider("this function has no OpenID Connect client".into()))
    }
}

pub trait UsesIdentityProviders {
    fn identity_providers(&self) -> &dyn IdentityProviders;
}
shared_capability!(UsesIdentityProviders, identity_providers, dyn IdentityProviders);

/// Seconds since the Unix epoch; a port so tests can move time.
pub trait Clock: Send + Sync {
    fn now(&self) -> Timestamp;
    /// Waits `secs` seconds: a real wait (a test's manual clock moves on by as much at once).
    fn wait(&self, secs: u64) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>> {
        Box::pin(tokio::time::sleep(std::time::Duration::from_secs(secs)))
    }
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
use crate::domain::listing::{InvitationFilter, PageRequest, Paged};
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
        /// The terms of use accepted with the redemption, if any.
        terms: Option<TermsAccepted>,
    },
    /// A new contact (a group invitation has no single contact), with its unique values reserved.
    Create(Box<Contact>),
    /// An existing account gets the invitation's roles and account.
    Assign { contact_id: ContactId, roles: Vec<String>, account_id: Option<String>, terms: Option<TermsAccepted> },
    /// The invited contact becomes a portal user through an external identity (no password): the
    /// identity linked (its guard reserved), the invitation's roles and account, a confirmed email.
    LinkIdentity {
        contact_id: ContactId,
        identity: LinkedIdentity,
        roles: Vec<String>,
        account_id: Option<String>,
        terms: Option<TermsAccepted>,
    },
}

impl ContactChange {
    /// The contact as this change leaves it, from the contact as it was read (`before`; a new
    /// contact needs none): what the store writes, so nothing need be read back.
    pub fn applied_to(&self, before: Option<&Contact>, now: Timestamp) -> Option<Contact> {
        match self {
            ContactChange::Create(contact) => Some((**contact).clone()),
            ContactChange::SetCredentials { password_hash, username, roles, account_id, terms, .. } => {
                let mut contact = before?.clone();
                if terms.is_some() {
                    contact.terms_accepted = terms.clone();
                }
                contact.password_hash = Some(password_hash.clone());
                contact.email_confirmed = true;
                contact.roles = roles.clone();
                if account_id.is_some() {
                    contact.account_id = account_id.clone();
                }
                if username.is_some() {
                    contact.username = username.clone();
                }
                contact.updated_at = now;
                Some(contact)
            }
            ContactChange::LinkIdentity { identity, roles, account_id, terms, .. } => {
                let mut contact = before?.clone();
                if terms.is_some() {
                    contact.terms_accepted = terms.clone();
                }
                contact.identities.push(identity.clone());
                contact.email_confirmed = true;
                contact.roles = roles.clone();
                if account_id.is_some() {
                    contact.account_id = account_id.clone();
                }
                contact.updated_at = now;
                Some(contact)
            }
            ContactChange::Assign { roles, account_id, terms, .. } => {
                let mut contact = before?.clone();
                if terms.is_some() {
                    contact.terms_accepted = terms.clone();
                }
                contact.roles = roles.clone();
                if account_id.is_some() {
                    contact.account_id = account_id.clone();
                }
                contact.updated_at = now;
                Some(contact)
            }
        }
    }

    pub fn contact_id(&self) -> &ContactId {
        match self {
            ContactChange::SetCredentials { contact_id, .. }
            | ContactChange::Assign { contact_id, .. }
            | ContactChange::LinkIdentity { contact_id, .. } => contact_id,
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
    #[error("an account has this external identity already")]
    IdentityTaken,
    #[error(transparent)]
    Store(#[from] anyhow::Error),
}

#[async_trait]
pub trait InvitationStore: Send + Sync {
    /// Stores the invitation, its code lookup and the outbox message carrying the code, together.
    async fn create(&self, invitation: &Invitation, message: &OutboxMessage) -> anyhow::Result<()> {
        self.create_with_events(invitation, message, &[]).await
    }
    /// [`InvitationStore::create`] with `queued` (its events and audit entry) in the same write.
    async fn create_with_events(
        &self,
        invitation: &Invitation,
        message: &OutboxMessage,
        queued: &[Queued],
    ) -> anyhow::Result<()>;
    async fn get(&self, invitation_id: &InvitationId) -> anyhow::Result<Option<Invitation>>;
    async fn redemptions(&self, invitation_id: &InvitationId) -> anyhow::Result<Vec<Redemption>>;
    async fn find_by_code(&self, code_digest: &str) -> anyhow::Result<Option<Invitation>>;
    async fn list_for_contact(&self, contact_id: &ContactId) -> anyhow::Result<Vec<Invitation>>;
    /// Replaces the code of a not-revoked invitation (the old one stops working) and queues the
    /// email with the new one and `queued` (its audit entry), together. `false` when the
    /// invitation is revoked or changed meanwhile.
    async fn replace_code(
        &self,
        invitation: &Invitation,
        new_digest: &str,
        message: &OutboxMessage,
        queued: &[Queued],
    ) -> anyhow::Result<bool>;
    /// Removes the invited person's address and names from the invitation (their account was
    /// deleted); nothing when there is no such invitation.
    async fn erase_invitee(&self, invitation_id: &InvitationId) -> anyhow::Result<()>;
    /// Revokes the invitation and returns it as it now stands; `None` when there is no such one.
    async fn revoke(&self, invitation_id: &InvitationId, now: Timestamp) -> anyhow::Result<Option<Invitation>> {
        self.revoke_with_events(invitation_id, now, &[]).await
    }
    /// [`InvitationStore::revoke`] that writes `queued` (its events and audit entry) in the same
    /// write when it revokes it (an invitation revoked before is returned as it is, with none).
    async fn revoke_with_events(
        &self,
        invitation_id: &InvitationId,
        now: Timestamp,
        queued: &[Queued],
    ) -> anyhow::Result<Option<Invitation>>;
    /// One redemption, all or nothing: the invitation still redeemable with this code and under its
    /// maximum, the contact change, and the redemption record.
    async fn redeem(
        &self,
        invitation: &Invitation,
        change: &ContactChange,
        redemption: &Redemption,
        now: Timestamp,
    ) -> Result<(), RedeemError> {
        self.redeem_with_events(invitation, change, redemption, now, &[]).await
    }
    /// [`InvitationStore::redeem`] with `queued` (its events, and any email without a token, as
    /// outbox messages) queued in the same write.
    async fn redeem_with_events(
        &self,
        invitation: &Invitation,
        change: &ContactChange,
        redemption: &Redemption,
        now: Timestamp,
        queued: &[OutboxMessage],
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
    /// A page of the invitations matching `filter` (expiry read against `now`), newest first, read
    /// from indexes (never a scan).
    async fn list(
        &self,
        filter: &InvitationFilter,
        page: &PageRequest,
        now: Timestamp,
    ) -> anyhow::Result<Paged<Invitation>>;
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
    /// Stores a group invitation with every recipient of `fanout` (its one outbox message) pending
    /// in its `deliveries`, its code lookup and `queued` (its events and audit entry), together.
    async fn create_group_with_events(
        &self,
        invitation: &Invitation,
        fanout: &OutboxMessage,
        queued: &[Queued],
    ) -> anyhow::Result<()>;
    /// [`InvitationStore::replace_code`] for a group invitation: every recipient of the new
    /// `fanout` pending again, with `queued`. `false` when the invitation is revoked or changed
    /// meanwhile.
    async fn replace_group_code(
        &self,
        invitation: &Invitation,
        new_digest: &str,
        fanout: &OutboxMessage,
        queued: &[Queued],
    ) -> anyhow::Result<bool>;
    /// A group invitation's per-contact deliveries (empty for any other invitation).
    async fn deliveries(&self, invitation_id: &InvitationId) -> anyhow::Result<crate::domain::group::Deliveries>;
    /// Records how the email of fan-out `fanout_id` (the invitation's current one) to `contact_id`
    /// went, and the invitation's aggregated `delivery`; an older fan-out's outcome is ignored.
    async fn record_contact_delivery(
        &self,
        invitation_id: &InvitationId,
        fanout_id: &MessageId,
        contact_id: &ContactId,
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
    async fn mark_sent(&self, message_id: &MessageId, now: Timestamp) -> anyhow::Result<()> {
        self.mark_sent_with_events(message_id, now, &[]).await
    }
    /// Marks the message sent with `events` (its delivery's facts) in the same write; when it was
    /// marked sent before (a retried write that had landed), nothing is written again.
    async fn mark_sent_with_events(
        &self,
        message_id: &MessageId,
        now: Timestamp,
        events: &[PortalEvent],
    ) -> anyhow::Result<()>;
    /// Marks the message failed for good and removes its secret.
    async fn mark_failed(&self, message_id: &MessageId, reason: &str, now: Timestamp) -> anyhow::Result<()> {
        self.mark_failed_with_events(message_id, reason, now, &[]).await
    }
    /// Marks the message failed with `events` in the same write; when it was marked failed before,
    /// nothing is written again.
    async fn mark_failed_with_events(
        &self,
        message_id: &MessageId,
        reason: &str,
        now: Timestamp,
        events: &[PortalEvent],
    ) -> anyhow::Result<()>;
    /// Holds a pending message without expiry (its TTL removed): an invitation whose emails are
    /// switched off waits, visible to staff, until it is queued again or superseded. A message no
    /// longer pending is left as it is.
    async fn hold(&self, message_id: &MessageId, now: Timestamp) -> anyhow::Result<()>;
    /// Gives back the lease ending at `lease_until`, so that the next delivery sends at once; a
    /// lease that another run has taken over meanwhile, or a message settled meanwhile, is left.
    async fn release(&self, message_id: &MessageId, lease_until: Timestamp) -> anyhow::Result<()>;
    /// Every message still kept (sent and failed ones until their retention ends), for operators.
    async fn list(&self) -> anyhow::Result<Vec<OutboxMessage>>;
    /// Queues `copy` (a new message, so a new stream record) in place of `original`, which is
    /// marked failed and, for an invitation, no longer its current email, all together. `false`
    /// when the original was sent or changed meanwhile.
    async fn requeue(&self, original: &OutboxMessage, copy: &OutboxMessage, now: Timestamp) -> anyhow::Result<bool>;
    /// Queues `batch` (per-contact emails of the fan-out `fanout_id`) and moves its progress marker
    /// from `done` to `done + batch.len()`, together. `false` when the marker is no longer at
    /// `done` (another run queued them): nothing is written.
    async fn fan_out(&self, fanout_id: &MessageId, done: u32, batch: &[OutboxMessage]) -> anyhow::Result<bool>;
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

/// The bus the portal's events are published on (EventBridge in production).
#[async_trait]
pub trait EventBus: Send + Sync {
    /// Publishes one event; any error means it was not (or may not have been) accepted, and the
    /// outbox's retry publishes it again (consumers de-duplicate by its `event_id`).
    async fn publish(&self, event: &PortalEvent) -> anyhow::Result<()>;
}

use crate::domain::import::{ChunkClaim, ChunkCounts, ImportChunk, ImportId, ImportJob, RowOutcome};

/// One imported row's write: its key and outcome, with what it creates, all in one transaction.
pub struct RowWrite<'a> {
    /// The row's key ([`crate::domain::import::row_key`]): written only if absent.
    pub key: &'a str,
    pub outcome: &'a RowOutcome,
    /// A contact to create (with its email guard), or `None` to reuse the existing one.
    pub new_contact: Option<&'a Contact>,
    /// An invitation to create, with the email carrying its code.
    pub invitation: Option<(&'a Invitation, &'a OutboxMessage)>,
    /// The portal events the row commits (written to the outbox in the same transaction).
    pub events: &'a [PortalEvent],
}

/// What became of a row's write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RowWritten {
    Written,
    /// The row's key was written meanwhile (by a concurrent run): nothing was created.
    AlreadyDone,
    /// Another request created a contact with this email meanwhile: nothing was written.
    EmailTaken,
}

/// Bulk imports: the import and its chunks (outbox items whose stream records trigger their
/// processing), each row's key and outcome, and the counts.
#[async_trait]
pub trait ImportStore: Send + Sync {
    /// Stores the import, every chunk and `queued` (its audit entry), all or nothing.
    async fn create(&self, job: &ImportJob, chunks: &[ImportChunk], queued: &[Queued]) -> anyhow::Result<()>;
    async fn get(&self, import_id: &ImportId) -> anyhow::Result<Option<ImportJob>>;
    /// Leases a chunk for processing (the outbox's lease rule), or says why not.
    async fn claim_chunk(&self, chunk_id: &str, now: Timestamp) -> anyhow::Result<ChunkClaim>;
    /// Gives back the lease ending at `lease_until` (a run that failed), so a retry runs at once.
    async fn release_chunk(&self, chunk_id: &str, lease_until: Timestamp) -> anyhow::Result<()>;
    /// The outcomes stored under these row keys (rows done before), by key.
    async fn row_outcomes(&self, keys: &[String]) -> anyhow::Result<HashMap<String, RowOutcome>>;
    /// The contacts holding these addresses, by normalised email.
    async fn contacts_by_email(&self, emails: &[Email]) -> anyhow::Result<HashMap<String, Contact>>;
    /// Writes one row: its key and outcome, and what it creates, all or nothing.
    async fn write_row(&self, write: &RowWrite<'_>) -> anyhow::Result<RowWritten>;
    /// Writes several rows in one transaction (at most 100 items in all), all or nothing: `false`
    /// when any of them was refused (a key written or an address taken meanwhile), and then
    /// nothing was written; the rows are then written one by one.
    async fn write_rows(&self, writes: &[RowWrite<'_>]) -> anyhow::Result<bool>;
    /// Marks a leased chunk done and adds `counts` to its import, together and once: `false` when
    /// the lease was lost meanwhile (another run's counts stand).
    async fn finish_chunk(&self, chunk: &ImportChunk, counts: &ChunkCounts, now: Timestamp) -> anyhow::Result<bool>;
    /// Counts an imported invitation's email as sent or failed on its import, once per message.
    async fn count_email(&self, import_id: &ImportId, message_id: &MessageId, sent: bool) -> anyhow::Result<()>;
}

/// Paces sending to the email account's rate, across every concurrent sender.
#[async_trait]
pub trait SendPacer: Send + Sync {
    /// Takes the next sending slot and waits for it: `false` when none is free within the wait a
    /// run can afford (the message is tried again later).
    async fn wait_for_slot(&self) -> anyhow::Result<bool>;
    /// After the email service refused for sending too fast: no one sends for a while.
    async fn back_off(&self) -> anyhow::Result<()>;
}

pub trait UsesImports {
    fn imports(&self) -> &dyn ImportStore;
}
shared_capability!(UsesImports, imports, dyn ImportStore);

use std::collections::HashMap;

use crate::domain::passkey::{Ceremony, StoredPasskey};

/// Passkeys on the contacts table and their ceremonies' state on the sessions table.
#[async_trait]
pub trait PasskeyStore: Send + Sync {
    /// Keeps a ceremony's state until its expiry.
    async fn save_ceremony(&self, ceremony: &Ceremony) -> anyhow::Result<()>;
    /// Takes (deletes) the ceremony with this digest, as it was: of two finishes, one gets it.
    async fn take_ceremony(&self, id_digest: &str) -> anyhow::Result<Option<Ceremony>>;
    /// The contact's passkeys, oldest first.
    async fn list(&self, contact_id: &ContactId) -> anyhow::Result<Vec<StoredPasskey>>;
    async fn find(&self, id: &str) -> anyhow::Result<Option<StoredPasskey>>;
    /// Adds the passkey, writes the contact's new session epoch (every other session ends) and
    /// queues `emails`, all or nothing. `false` when its credential is registered already.
    async fn add(
        &self,
        passkey: &StoredPasskey,
        epoch: &str,
        now: Timestamp,
        emails: &[Queued],
    ) -> anyhow::Result<bool>;
    /// Removes the contact's passkey `id` with the new epoch and `emails`, all or nothing. `false`
    /// when the contact has no such passkey (any more).
    async fn remove(
        &self,
        contact_id: &ContactId,
        id: &str,
        epoch: &str,
        now: Timestamp,
        emails: &[Queued],
    ) -> anyhow::Result<bool>;
    /// Records a sign-in with `passkey` (as read): its new counter and credential. `false` when its
    /// counter changed meanwhile (another sign-in with it came first) or it was removed.
    async fn record_use(
        &self,
        passkey: &StoredPasskey,
        sign_count: u32,
        credential: &str,
        now: Timestamp,
    ) -> anyhow::Result<bool>;
}

pub trait UsesPasskeys {
    fn passkeys(&self) -> &dyn PasskeyStore;
}

pub trait UsesOutbox {
    fn outbox(&self) -> &dyn Outbox;
}

shared_capability!(UsesOutbox, outbox, dyn Outbox);

shared_capability!(UsesPasskeys, passkeys, dyn PasskeyStore);

use crate::domain::two_factor::{PendingSignIn, SealedSecret, TotpSecret, TwoFactor};

/// Seals TOTP secrets by envelope encryption (a fresh data key from the key service per secret,
/// AES-256-GCM under it) and opens them, only to verify a code. A sealed secret is bound to its
/// contact (the cipher's additional data and the key service's encryption context): moved to
/// another contact's item, it does not open.
#[async_trait]
pub trait SecretSealer: Send + Sync {
    async fn seal(&self, secret: &TotpSecret, contact_id: &ContactId) -> anyhow::Result<SealedSecret>;
    /// Opens a secret sealed for `contact_id` (or, sealed before secrets were bound, for no one:
    /// [`SealedSecret::is_bound`] tells, and the caller seals it again, bound).
    async fn open(&self, sealed: &SealedSecret, contact_id: &ContactId) -> anyhow::Result<TotpSecret>;
}

/// A contact's two-factor state and the pending sign-ins awaiting a second factor. Every use of a
/// code is one conditional write, so two parallel uses of one code cannot both pass.
#[async_trait]
pub trait TwoFactorStore: Send + Sync {
    /// The contact's state ([`TwoFactor::none`] when they never set anything up).
    async fn get(&self, contact_id: &ContactId) -> anyhow::Result<TwoFactor>;
    /// Writes `state` over the version it was read at (`state.version`; stored one higher) and,
    /// in the same write, sets the contact's session epoch (when given: every other session ends)
    /// and queues `emails`. `false` when the state changed meanwhile.
    async fn save(&self, state: &TwoFactor, epoch: Option<&str>, emails: &[Queued]) -> anyhow::Result<bool>;
    /// Records TOTP step `step` as used, only if it is later than the last one used.
    async fn use_totp_step(&self, contact_id: &ContactId, step: i64) -> anyhow::Result<bool>;
    /// Uses up the recovery code with this digest, if it is still unused.
    async fn use_recovery_code(&self, contact_id: &ContactId, digest: &str) -> anyhow::Result<bool>;
    /// Stores a new emailed code (its digest, replacing any earlier one) and queues its email.
    async fn set_email_code(
        &self,
        contact_id: &ContactId,
        digest: &str,
        expires_at: Timestamp,
        emails: &[Queued],
    ) -> anyhow::Result<()>;
    /// Uses up the emailed code with this digest, if it is the current one and not expired.
    async fn use_email_code(&self, contact_id: &ContactId, digest: &str, now: Timestamp) -> anyhow::Result<bool>;
    async fn create_pending(&self, pending: &PendingSignIn) -> anyhow::Result<()>;
    /// The pending sign-in, if it exists, is unexpired and has attempts left.
    async fn find_pending(&self, digest: &str, now: Timestamp) -> anyhow::Result<Option<PendingSignIn>>;
    /// Takes one attempt of the pending sign-in before its code is checked (so a parallel burst
    /// gets at most the limit): the pending sign-in as counted, or `None` when it is gone, expired
    /// or out of attempts.
    async fn take_pending_attempt(
        &self,
        digest: &str,
        now: Timestamp,
        limit: u32,
    ) -> anyhow::Result<Option<PendingSignIn>>;
    /// Takes one of the `limit` emailed codes a pending sign-in may ask for: the pending sign-in as
    /// counted, or `None` when it is gone, expired or has asked for its last one.
    async fn take_pending_email(
        &self,
        digest: &str,
        now: Timestamp,
        limit: u32,
    ) -> anyhow::Result<Option<PendingSignIn>>;
    /// Ends the pending sign-in; `false` when it was already gone.
    async fn end_pending(&self, digest: &str) -> anyhow::Result<bool>;
}

pub trait UsesTwoFactor {
    fn two_factor(&self) -> &dyn TwoFactorStore;
    fn sealer(&self) -> &dyn SecretSealer;
}

impl<T: UsesTwoFactor + ?Sized> UsesTwoFactor for std::sync::Arc<T> {
    fn two_factor(&self) -> &dyn TwoFactorStore {
        (**self).two_factor()
    }

    fn sealer(&self) -> &dyn SecretSealer {
        (**self).sealer()
    }
}
