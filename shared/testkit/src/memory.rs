//! In-memory adapters with the same rules as the DynamoDB ones, for fast handler tests.

use portal::domain::ids::{ContactId, InvitationId, MessageId};
use portal::domain::time::Timestamp;
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};

use async_trait::async_trait;

use std::collections::VecDeque;
use std::sync::Arc;

use portal::adapters::dynamodb_list_keys::{matching_keys, merge_search};
use portal::domain::audit::{AuditEntry, AuditQuery};
use portal::domain::contact::{Contact, Login};
use portal::domain::deliverability::Undeliverable;
use portal::domain::email::Email;
use portal::domain::event::PortalEvent;
use portal::domain::idempotency::{self, IdempotencyKey, IdempotentStart};
use portal::domain::identity::{ExternalState, LinkedIdentity};
use portal::domain::invitation::{Delivery, Invitation, Redemption};
use portal::domain::listing::{InvitationFilter, PageRequest, Paged, Position, sort_key};
use portal::domain::lockout::{AttemptSubject, FailedSignIn, LockoutPolicy, LockoutState};
use portal::domain::outbox::{Claim, MessageKind, MessageStatus, OutboxMessage};
use portal::domain::password::PasswordHashString;
use portal::domain::session::Session;
use portal::domain::token::EmailToken;
use portal::ports::{
    AccountEdit, Clock, ContactChange, ContactStore, CreateContactError, Device, EditAccountError, HeldNotices,
    InvitationStore, LinkIdentityError, Mailer, Outbox, OutgoingEmail, ProfileUpdate, Queued, RedeemError, SendError,
    SessionStore, TokenUse, UpdateProfileError,
};

/// Store faults tests ask for: each named operation fails that many more times.
#[derive(Default)]
pub struct Faults(Mutex<HashMap<&'static str, u32>>);

impl Faults {
    /// The next `times` calls of `operation` fail.
    pub fn fail_next(&self, operation: &'static str, times: u32) {
        *self.0.lock().unwrap().entry(operation).or_default() += times;
    }

    pub(crate) fn check(&self, operation: &'static str) -> anyhow::Result<()> {
        let mut faults = self.0.lock().unwrap();
        match faults.get_mut(operation) {
            Some(left) if *left > 0 => {
                *left -= 1;
                anyhow::bail!("injected fault: {operation}")
            }
            _ => Ok(()),
        }
    }
}

#[derive(Default)]
pub struct MemoryContacts {
    state: Mutex<ContactsState>,
    outbox: Arc<MemoryOutbox>,
    /// Every call made, by operation, so tests can compare the work two requests did.
    calls: Mutex<Vec<&'static str>>,
}

#[derive(Default)]
struct ContactsState {
    contacts: HashMap<ContactId, Contact>,
    by_email: HashMap<String, ContactId>,
    by_username: HashMap<String, ContactId>,
    tokens: HashMap<String, EmailToken>,
    allowances: HashMap<String, u32>,
    /// Trusted devices by digest, with their failure counts.
    devices: HashMap<String, (Device, u32)>,
    /// The attempts at logins that no account has, by digest.
    unknown_logins: HashMap<String, LockoutState>,
    held_notices: HashMap<ContactId, HeldNotices>,
    /// The site settings changed at run time.
    run_time_settings: portal::site_settings::RunTimeSettings,
    /// Emailed sign-in codes by contact: digest, expiry, wrong codes tried.
    sign_in_codes: HashMap<ContactId, (String, Timestamp, u32)>,
    /// The audit trail, in the order it was written.
    audit: Vec<AuditEntry>,
    /// External identities' guards: (provider, subject) → account.
    identities: HashMap<(String, String), ContactId>,
    /// Trips to a provider, by the digest of their state.
    external_states: HashMap<String, ExternalState>,
    /// Undeliverable addresses (normalised) and their marks.
    undeliverable: HashMap<String, Undeliverable>,
}

impl ContactsState {
    /// Whether any of the contact's identities belongs to an account already.
    fn identity_taken(&self, contact: &Contact) -> bool {
        contact.identities.iter().any(|i| self.identities.contains_key(&(i.provider.clone(), i.subject.clone())))
    }

    fn guard_identities(&mut self, contact: &Contact) {
        for identity in &contact.identities {
            self.identities.insert((identity.provider.clone(), identity.subject.clone()), contact.contact_id.clone());
        }
    }
}

impl ContactsState {
    fn lockout_of(&self, subject: &AttemptSubject) -> LockoutState {
        match subject {
            AttemptSubject::Account(id) => self.contacts.get(id).map(Contact::lockout).unwrap_or_default(),
            AttemptSubject::UnknownLogin(digest) => self.unknown_logins.get(digest).copied().unwrap_or_default(),
        }
    }

    /// Stores `next` for the subject (an account that is gone keeps nothing).
    fn set_lockout(&mut self, subject: &AttemptSubject, next: LockoutState) {
        match subject {
            AttemptSubject::Account(id) => {
                if let Some(contact) = self.contacts.get_mut(id) {
                    contact.set_lockout(next);
                }
            }
            AttemptSubject::UnknownLogin(digest) => {
                self.unknown_logins.insert(digest.clone(), next);
            }
        }
    }
}

impl MemoryContacts {
    /// Contacts whose emails go to `outbox`.
    pub fn with_outbox(outbox: Arc<MemoryOutbox>) -> Self {
        MemoryContacts { state: Mutex::default(), outbox, calls: Mutex::default() }
    }

    fn record(&self, operation: &'static str) {
        self.calls.lock().unwrap().push(operation);
    }

    /// The calls made so far, and forgets them.
    pub fn take_calls(&self) -> Vec<&'static str> {
        std::mem::take(&mut self.calls.lock().unwrap())
    }

    /// Every contact, for assertions.
    pub fn all(&self) -> Vec<Contact> {
        self.state.lock().unwrap().contacts.values().cloned().collect()
    }

    /// The audit trail as written, oldest first, for assertions.
    pub fn audit_entries(&self) -> Vec<AuditEntry> {
        self.state.lock().unwrap().audit.clone()
    }

    /// Replaces a stored contact (tests arrange roles and such with it).
    pub fn put(&self, contact: Contact) {
        self.state.lock().unwrap().contacts.insert(contact.contact_id.clone(), contact);
    }

    /// Applies a redemption's change to a contact, all or nothing, with the DynamoDB conditions.
    fn apply(&self, change: &ContactChange, now: Timestamp) -> Result<(), RedeemError> {
        let mut state = self.state.lock().unwrap();
        match change {
            ContactChange::SetCredentials { contact_id, username, .. } => {
                if let Some(username) = username
                    && state.by_username.contains_key(&username.normalized)
                {
                    return Err(RedeemError::UsernameTaken);
                }
                let stored = state.contacts.get(contact_id).ok_or(RedeemError::InvitationInvalid)?;
                if stored.password_hash.is_some() || stored.deleted_at.is_some() {
                    return Err(RedeemError::InvitationInvalid);
                }
                let updated = change.applied_to(Some(stored), now).ok_or(RedeemError::InvitationInvalid)?;
                state.contacts.insert(contact_id.clone(), updated);
                if let Some(username) = username {
                    state.by_username.insert(username.normalized.clone(), contact_id.clone());
                }
                Ok(())
            }
            ContactChange::Create(contact) => {
                if state.by_email.contains_key(contact.email.normalized()) {
                    return Err(RedeemError::EmailTaken);
                }
                if state.identity_taken(contact) {
                    return Err(RedeemError::IdentityTaken);
                }
                state.guard_identities(contact);
                if let Some(username) = contact.username.as_ref().map(|u| &u.normalized) {
                    if state.by_username.contains_key(username) {
                        return Err(RedeemError::UsernameTaken);
                    }
                    state.by_username.insert(username.clone(), contact.contact_id.clone());
                }
                state.by_email.insert(contact.email.normalized().to_string(), contact.contact_id.clone());
                state.contacts.insert(contact.contact_id.clone(), (**contact).clone());
                Ok(())
            }
            ContactChange::LinkIdentity { contact_id, identity, .. } => {
                let key = (identity.provider.clone(), identity.subject.clone());
                if state.identities.contains_key(&key) {
                    return Err(RedeemError::IdentityTaken);
                }
                let stored = state.contacts.get(contact_id).ok_or(RedeemError::InvitationInvalid)?;
                if stored.password_hash.is_some() || stored.deleted_at.is_some() {
                    return Err(RedeemError::InvitationInvalid);
                }
                let updated = change.applied_to(Some(stored), now).ok_or(RedeemError::InvitationInvalid)?;
                state.contacts.insert(contact_id.clone(), updated);
                state.identities.insert(key, contact_id.clone());
                Ok(())
            }
            ContactChange::Assign { contact_id, .. } => {
                let stored = state.contacts.get(contact_id).filter(|c| c.deleted_at.is_none());
                let stored = stored.ok_or(RedeemError::InvitationInvalid)?;
                let updated = change.applied_to(Some(stored), now).ok_or(RedeemError::InvitationInvalid)?;
                state.contacts.insert(contact_id.clone(), updated);
                Ok(())
            }
        }
    }
}

impl MemoryContacts {
    fn queue(&self, state: &mut ContactsState, emails: &[Queued]) {
        for each in emails {
            match each {
                Queued::Outbox { token, message } => {
                    if let Some(token) = token {
                        state.tokens.insert(token.digest.clone(), token.clone());
                    }
                    self.outbox.insert(message.clone());
                }
                Queued::Audit(entry) => state.audit.push(entry.clone()),
            }
        }
    }

    fn contact_mut<'a>(state: &'a mut ContactsState, contact_id: &ContactId) -> anyhow::Result<&'a mut Contact> {
        state.contacts.get_mut(contact_id).ok_or_else(|| anyhow::anyhow!("no such contact"))
    }

    /// Writes a new session epoch for the contact and queues `emails`, together; `false` when the
    /// contact is gone (nothing written). The passkeys' changes use it (see `memory_passkeys`).
    pub(crate) fn advance_epoch(&self, contact_id: &ContactId, epoch: &str, now: Timestamp, emails: &[Queued]) -> bool {
        let mut state = self.state.lock().unwrap();
        let Ok(contact) = Self::contact_mut(&mut state, contact_id) else { return false };
        contact.session_epoch = epoch.to_string();
        contact.updated_at = now;
        self.queue(&mut state, emails);
        true
    }
}

#[async_trait]
impl ContactStore for MemoryContacts {
    async fn create_with_emails(&self, contact: &Contact, emails: &[Queued]) -> Result<(), CreateContactError> {
        self.record("create_with_emails");
        let mut state = self.state.lock().unwrap();
        if state.by_email.contains_key(contact.email.normalized()) {
            return Err(CreateContactError::EmailTaken);
        }
        if state.identity_taken(contact) {
            return Err(CreateContactError::IdentityTaken);
        }
        if let Some(username) = contact.username.as_ref().map(|u| &u.normalized) {
            if state.by_username.contains_key(username) {
                return Err(CreateContactError::UsernameTaken);
            }
            state.by_username.insert(username.clone(), contact.contact_id.clone());
        }
        state.guard_identities(contact);
        state.by_email.insert(contact.email.normalized().to_string(), contact.contact_id.clone());
        state.contacts.insert(contact.contact_id.clone(), contact.clone());
        self.queue(&mut state, emails);
        Ok(())
    }

    async fn update_profile(
        &self,
        current: &Contact,
        update: &ProfileUpdate,
        now: Timestamp,
        emails: &[Queued],
    ) -> Result<Contact, UpdateProfileError> {
        self.record("update_profile");
        let mut state = self.state.lock().unwrap();
        let stored = state.contacts.get(&current.contact_id).ok_or(UpdateProfileError::Conflict)?;
        if stored.email.normalized() != current.email.normalized() {
            return Err(UpdateProfileError::Conflict);
        }
        let mut updated = stored.clone();
        updated.first_name = update.first_name.clone();
        updated.last_name = update.last_name.clone();
        updated.phone = update.phone.clone();
        updated.updated_at = now;
        if let Some(pending) = &update.pending_email {
            updated.pending_email = Some(pending.clone());
        }
        self.queue(&mut state, emails);
        state.contacts.insert(updated.contact_id.clone(), updated.clone());
        Ok(updated)
    }

    async fn change_password(
        &self,
        contact_id: &ContactId,
        password_hash: &PasswordHashString,
        epoch: &str,
        now: Timestamp,
        emails: &[Queued],
    ) -> anyhow::Result<()> {
        self.record("change_password");
        let mut state = self.state.lock().unwrap();
        let contact = Self::contact_mut(&mut state, contact_id)?;
        contact.password_hash = Some(password_hash.clone());
        contact.session_epoch = epoch.to_string();
        contact.reset_nonce = None;
        contact.updated_at = now;
        self.queue(&mut state, emails);
        Ok(())
    }

    async fn queue_emails(&self, emails: &[Queued]) -> anyhow::Result<()> {
        self.record("queue_emails");
        self.queue(&mut self.state.lock().unwrap(), emails);
        Ok(())
    }

    async fn issue_token(&self, token: &EmailToken) -> anyhow::Result<bool> {
        self.record("issue_token");
        let mut state = self.state.lock().unwrap();
        let Some(contact) = state.contacts.get_mut(&token.contact_id) else { return Ok(false) };
        if token.nonce.is_some() {
            contact.reset_nonce = token.nonce.clone();
        }
        state.tokens.insert(token.digest.clone(), token.clone());
        Ok(true)
    }

    async fn find_token(&self, digest: &str) -> anyhow::Result<Option<EmailToken>> {
        self.record("find_token");
        Ok(self.state.lock().unwrap().tokens.get(digest).cloned())
    }

    async fn use_token(
        &self,
        token: &EmailToken,
        contact: &Contact,
        effect: &TokenUse,
        now: Timestamp,
        emails: &[Queued],
    ) -> anyhow::Result<bool> {
        self.record("use_token");
        let mut state = self.state.lock().unwrap();
        if !state.tokens.contains_key(&token.digest) {
            return Ok(false);
        }
        let Some(stored) = state.contacts.get(&contact.contact_id).cloned() else { return Ok(false) };
        let mut updated = stored.clone();
        match effect {
            TokenUse::ConfirmEmail => {
                if !token.is_for(&stored.email) {
                    return Ok(false);
                }
                updated.email_confirmed = true;
                if updated.email_undeliverable.take().is_some() {
                    state.undeliverable.remove(stored.email.normalized());
                }
            }
            TokenUse::MoveEmail { epoch } => {
                let Some(new_email) = stored.pending_email.clone().filter(|p| token.is_for(p)) else {
                    return Ok(false);
                };
                if stored.email.normalized() != contact.email.normalized()
                    || state.by_email.contains_key(new_email.normalized())
                {
                    return Ok(false);
                }
                state.by_email.remove(stored.email.normalized());
                state.by_email.insert(new_email.normalized().to_string(), stored.contact_id.clone());
                state.undeliverable.remove(new_email.normalized());
                updated.email = new_email;
                updated.email_undeliverable = None;
                updated.email_confirmed = true;
                updated.pending_email = None;
                updated.session_epoch = epoch.clone();
                updated.reset_nonce = None;
            }
            TokenUse::ResetPassword { hash, epoch } => {
                if stored.reset_nonce.is_none() || stored.reset_nonce != token.nonce {
                    return Ok(false);
                }
                updated.password_hash = Some(hash.clone());
                updated.set_lockout(Default::default());
                updated.session_epoch = epoch.clone();
                updated.reset_nonce = None;
            }
        }
        updated.updated_at = now;
        state.contacts.insert(updated.contact_id.clone(), updated);
        state.tokens.remove(&token.digest);
        self.queue(&mut state, emails);
        Ok(true)
    }

    async fn take_allowance(&self, key: &str, limit: u32, window_secs: i64, now: Timestamp) -> anyhow::Result<bool> {
        self.record("take_allowance");
        let mut state = self.state.lock().unwrap();
        let hits = state.allowances.entry(format!("{key}#{}", now.window(window_secs))).or_default();
        if *hits >= limit {
            return Ok(false);
        }
        *hits += 1;
        Ok(true)
    }

    // Not recorded among the calls: a function reads it once a minute, not per request.
    async fn run_time_settings(&self) -> anyhow::Result<portal::site_settings::RunTimeSettings> {
        Ok(self.state.lock().unwrap().run_time_settings.clone())
    }

    async fn save_run_time_settings(
        &self,
        next: &portal::site_settings::RunTimeSettings,
        read: u64,
        queued: &[Queued],
    ) -> anyhow::Result<bool> {
        self.record("save_run_time_settings");
        let mut state = self.state.lock().unwrap();
        if state.run_time_settings.version != read {
            return Ok(false);
        }
        state.run_time_settings = next.clone();
        self.queue(&mut state, queued);
        Ok(true)
    }

    async fn set_sign_in_code(
        &self,
        contact_id: &ContactId,
        digest: &str,
        expires_at: Timestamp,
    ) -> anyhow::Result<()> {
        self.record("set_sign_in_code");
        let mut state = self.state.lock().unwrap();
        state.sign_in_codes.insert(contact_id.clone(), (digest.to_string(), expires_at, 0));
        Ok(())
    }

    async fn use_sign_in_code(
        &self,
        contact_id: &ContactId,
        digest: &str,
        now: Timestamp,
        tries: u32,
    ) -> anyhow::Result<bool> {
        self.record("use_sign_in_code");
        let mut state = self.state.lock().unwrap();
        let Some((stored, expires_at, wrong)) = state.sign_in_codes.get_mut(contact_id) else { return Ok(false) };
        if stored == digest && *expires_at > now && *wrong < tries {
            state.sign_in_codes.remove(contact_id);
            return Ok(true);
        }
        *wrong += 1;
        Ok(false)
    }

    async fn save_external_state(&self, state_digest: &str, external: &ExternalState) -> anyhow::Result<()> {
        self.record("save_external_state");
        self.state.lock().unwrap().external_states.insert(state_digest.to_string(), external.clone());
        Ok(())
    }

    async fn take_external_state(&self, state_digest: &str) -> anyhow::Result<Option<ExternalState>> {
        self.record("take_external_state");
        Ok(self.state.lock().unwrap().external_states.remove(state_digest))
    }

    async fn mark_undeliverable(
        &self,
        address: &Email,
        mark: &Undeliverable,
        contact: Option<&Contact>,
        queued: &[Queued],
    ) -> anyhow::Result<bool> {
        self.record("mark_undeliverable");
        let mut state = self.state.lock().unwrap();
        if let Some(contact) = contact {
            match state.contacts.get_mut(&contact.contact_id) {
                Some(stored) if stored.email.normalized() == address.normalized() => {
                    stored.email_undeliverable = Some(mark.clone())
                }
                _ => return Ok(false),
            }
        }
        state.undeliverable.insert(address.normalized().to_string(), mark.clone());
        self.queue(&mut state, queued);
        Ok(true)
    }

    async fn is_undeliverable(&self, address: &Email) -> anyhow::Result<bool> {
        self.record("is_undeliverable");
        Ok(self.state.lock().unwrap().undeliverable.contains_key(address.normalized()))
    }

    async fn identity_owner(&self, provider: &str, subject: &str) -> anyhow::Result<Option<ContactId>> {
        self.record("identity_owner");
        Ok(self.state.lock().unwrap().identities.get(&(provider.to_string(), subject.to_string())).cloned())
    }

    async fn link_identity(
        &self,
        current: &Contact,
        identity: &LinkedIdentity,
        queued: &[Queued],
    ) -> Result<Contact, LinkIdentityError> {
        self.record("link_identity");
        let mut state = self.state.lock().unwrap();
        let Some(stored) = state.contacts.get(&current.contact_id) else { return Err(LinkIdentityError::Changed) };
        if stored.deleted_at.is_some() || stored.session_epoch != current.session_epoch {
            return Err(LinkIdentityError::Changed);
        }
        let key = (identity.provider.clone(), identity.subject.clone());
        if state.identities.contains_key(&key) {
            return Err(LinkIdentityError::Taken);
        }
        let mut linked = stored.clone();
        linked.identities.push(identity.clone());
        linked.updated_at = identity.linked_at;
        state.identities.insert(key, current.contact_id.clone());
        state.contacts.insert(linked.contact_id.clone(), linked.clone());
        self.queue(&mut state, queued);
        Ok(linked)
    }

    async fn unlink_identity(
        &self,
        current: &Contact,
        provider: &str,
        subject: &str,
        now: Timestamp,
        queued: &[Queued],
    ) -> Result<Contact, LinkIdentityError> {
        self.record("unlink_identity");
        let mut state = self.state.lock().unwrap();
        let Some(stored) = state.contacts.get(&current.contact_id) else { return Err(LinkIdentityError::Changed) };
        if stored.deleted_at.is_some() || stored.identities != current.identities {
            return Err(LinkIdentityError::Changed);
        }
        let mut unlinked = stored.clone();
        unlinked.identities.retain(|i| !i.is(provider, subject));
        unlinked.updated_at = now;
        state.identities.remove(&(provider.to_string(), subject.to_string()));
        state.contacts.insert(unlinked.contact_id.clone(), unlinked.clone());
        self.queue(&mut state, queued);
        Ok(unlinked)
    }

    async fn give_back_allowance(&self, key: &str, window_secs: i64, now: Timestamp) -> anyhow::Result<()> {
        self.record("give_back_allowance");
        let mut state = self.state.lock().unwrap();
        if let Some(hits) = state.allowances.get_mut(&format!("{key}#{}", now.window(window_secs))) {
            *hits = hits.saturating_sub(1);
        }
        Ok(())
    }

    async fn get(&self, contact_id: &ContactId) -> anyhow::Result<Option<Contact>> {
        self.record("get");
        Ok(self.state.lock().unwrap().contacts.get(contact_id).cloned())
    }

    async fn edit_account(
        &self,
        current: &Contact,
        edit: &AccountEdit,
        now: Timestamp,
        queued: &[Queued],
    ) -> Result<Contact, EditAccountError> {
        self.record("edit_account");
        let mut state = self.state.lock().unwrap();
        let Some(stored) = state.contacts.get(&current.contact_id).filter(|c| c.deleted_at.is_none()) else {
            return Err(EditAccountError::Missing);
        };
        if let AccountEdit::Delete { .. } = edit
            && stored.email.normalized() != current.email.normalized()
        {
            // Its address moved since it was read: the guard to release would be another one.
            return Err(EditAccountError::Missing);
        }
        let changed = edit.applied_to(stored, now);
        let stored = stored.clone();
        if let AccountEdit::Delete { .. } = edit {
            state.by_email.remove(current.email.normalized());
            if let Some(username) = &current.username {
                state.by_username.remove(&username.normalized);
            }
            state.held_notices.remove(&current.contact_id);
            state.sign_in_codes.remove(&current.contact_id);
            for identity in &stored.identities.clone() {
                state.identities.remove(&(identity.provider.clone(), identity.subject.clone()));
            }
        }
        state.contacts.insert(changed.contact_id.clone(), changed.clone());
        self.queue(&mut state, queued);
        Ok(changed)
    }

    async fn audit_trail(&self, query: &AuditQuery, page: &PageRequest) -> anyhow::Result<Paged<AuditEntry>> {
        self.record("audit_trail");
        let state = self.state.lock().unwrap();
        let after = page.after.as_ref().map(Position::sort_key);
        let mut rows: Vec<(String, AuditEntry)> = state
            .audit
            .iter()
            .filter(|e| query.matches(e))
            .map(|e| (sort_key(e.at, &e.entry_id), e.clone()))
            .filter(|(key, _)| after.as_ref().is_none_or(|after| key < after))
            .collect();
        rows.sort_by(|a, b| b.0.cmp(&a.0));
        let next = (rows.len() > page.limit)
            .then(|| Position::new(rows[page.limit - 1].1.at, &rows[page.limit - 1].1.entry_id));
        rows.truncate(page.limit);
        Ok(Paged { items: rows.into_iter().map(|(_, e)| e).collect(), next })
    }

    async fn email_in_use(&self, email: &Email) -> anyhow::Result<bool> {
        self.record("email_in_use");
        Ok(self.state.lock().unwrap().by_email.contains_key(email.normalized()))
    }

    async fn find_by_login(&self, login: &Login) -> anyhow::Result<Option<Contact>> {
        self.record("find_by_login");
        let state = self.state.lock().unwrap();
        let id = match login {
            Login::Email(email) => state.by_email.get(email),
            Login::Username(username) => state.by_username.get(username),
        };
        Ok(id.and_then(|id| state.contacts.get(id)).cloned())
    }

    async fn reserve_attempt(
        &self,
        subject: &AttemptSubject,
        now: Timestamp,
        policy: &LockoutPolicy,
    ) -> anyhow::Result<bool> {
        self.record("reserve_attempt");
        let mut state = self.state.lock().unwrap();
        // As DynamoDB's condition: an account that is gone takes no attempt.
        if let AttemptSubject::Account(id) = subject
            && !state.contacts.contains_key(id)
        {
            return Ok(false);
        }
        let Some(next) = state.lockout_of(subject).reserve(now, policy) else { return Ok(false) };
        state.set_lockout(subject, next);
        Ok(true)
    }

    async fn record_failed_sign_in(
        &self,
        subject: &AttemptSubject,
        now: Timestamp,
        policy: &LockoutPolicy,
    ) -> anyhow::Result<FailedSignIn> {
        self.record("record_failed_sign_in");
        let mut state = self.state.lock().unwrap();
        let (next, outcome) = state.lockout_of(subject).after_failure(now, policy);
        if next != state.lockout_of(subject) {
            state.set_lockout(subject, next);
        }
        Ok(outcome)
    }

    async fn lockout_of(&self, subject: &AttemptSubject) -> anyhow::Result<LockoutState> {
        self.record("lockout_of");
        Ok(self.state.lock().unwrap().lockout_of(subject))
    }

    async fn release_attempt(&self, contact_id: &ContactId) -> anyhow::Result<()> {
        self.record("release_attempt");
        let mut state = self.state.lock().unwrap();
        if let Some(contact) = state.contacts.get_mut(contact_id) {
            contact.failed_sign_ins = contact.failed_sign_ins.saturating_sub(1);
        }
        Ok(())
    }

    async fn reset_lockout(&self, contact_id: &ContactId) -> anyhow::Result<()> {
        self.record("reset_lockout");
        let mut state = self.state.lock().unwrap();
        if let Some(contact) = state.contacts.get_mut(contact_id) {
            contact.set_lockout(Default::default());
        }
        Ok(())
    }

    async fn reserve_device_attempt(
        &self,
        digest: &str,
        contact_id: &ContactId,
        now: Timestamp,
        threshold: u32,
    ) -> anyhow::Result<bool> {
        self.record("reserve_device_attempt");
        let mut state = self.state.lock().unwrap();
        let Some((device, failures)) = state.devices.get_mut(digest) else { return Ok(false) };
        if device.contact_id != *contact_id || device.expires_at <= now || *failures >= threshold {
            return Ok(false);
        }
        *failures += 1;
        Ok(true)
    }

    async fn remember_device(&self, device: &Device) -> anyhow::Result<()> {
        self.record("remember_device");
        self.state.lock().unwrap().devices.insert(device.digest.clone(), (device.clone(), 0));
        Ok(())
    }

    async fn hold_notice(&self, contact_id: &ContactId, kind: &str, now: Timestamp) -> anyhow::Result<()> {
        self.record("hold_notice");
        let mut state = self.state.lock().unwrap();
        let held = state
            .held_notices
            .entry(contact_id.clone())
            .or_insert_with(|| HeldNotices { since: now, ..Default::default() });
        held.count += 1;
        if !held.kinds.iter().any(|k| k == kind) {
            held.kinds.push(kind.to_string());
            held.kinds.sort();
        }
        Ok(())
    }

    async fn held_notices(&self, contact_id: &ContactId) -> anyhow::Result<Option<HeldNotices>> {
        self.record("held_notices");
        Ok(self.state.lock().unwrap().held_notices.get(contact_id).filter(|h| h.count > 0).cloned())
    }

    async fn clear_held_notices(
        &self,
        contact_id: &ContactId,
        summed_up: &portal::domain::outbox::HeldSummary,
        now: Timestamp,
    ) -> anyhow::Result<()> {
        self.record("clear_held_notices");
        let mut state = self.state.lock().unwrap();
        let Some(held) = state.held_notices.get_mut(contact_id).filter(|h| h.since == summed_up.since) else {
            return Ok(());
        };
        if held.count <= summed_up.count {
            state.held_notices.remove(contact_id);
        } else {
            held.count -= summed_up.count;
            held.since = now;
        }
        Ok(())
    }

    async fn list_page(&self, prefix: &str, page: &PageRequest) -> anyhow::Result<Paged<Contact>> {
        self.record("list_page");
        if prefix.is_empty() {
            let mut all = self.all();
            all.sort_by_key(|c| std::cmp::Reverse(sort_key(c.created_at, &c.contact_id)));
            let rows = all.into_iter().map(|c| (sort_key(c.created_at, &c.contact_id), c));
            return Ok(newest_first_page(rows, page));
        }
        // The same merge as DynamoDB's, over everything (one stream with nothing more).
        let from = page.after.as_ref().and_then(|a| a.key.clone());
        let mut rows: Vec<(String, Contact)> = Vec::new();
        for contact in self.all() {
            for key in matching_keys(&contact, prefix) {
                if from.as_ref().is_none_or(|from| key > *from) {
                    rows.push((key, contact.clone()));
                }
            }
        }
        rows.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(merge_search(prefix, vec![(rows, false)], page.limit))
    }
}

#[derive(Default)]
pub struct MemorySessions {
    sessions: Mutex<HashMap<String, Session>>,
    /// Where what rides along with a new session goes (its audit entry), as the contacts store
    /// queues it.
    queue: Option<Arc<MemoryContacts>>,
}

impl MemorySessions {
    /// Sessions whose sign-ins queue their audit entries with `contacts`.
    pub fn queueing_to(contacts: Arc<MemoryContacts>) -> Self {
        MemorySessions { sessions: Mutex::default(), queue: Some(contacts) }
    }

    pub fn all(&self) -> Vec<Session> {
        self.sessions.lock().unwrap().values().cloned().collect()
    }
}

#[async_trait]
impl SessionStore for MemorySessions {
    async fn create(&self, session: &Session, queued: &[Queued]) -> anyhow::Result<()> {
        if !queued.is_empty() {
            let queue = self.queue.as_ref().ok_or_else(|| anyhow::anyhow!("the session store queues nothing"))?;
            queue.queue_emails(queued).await?;
        }
        self.sessions.lock().unwrap().insert(session.id_digest.clone(), session.clone());
        Ok(())
    }

    async fn get(&self, id_digest: &str) -> anyhow::Result<Option<Session>> {
        Ok(self.sessions.lock().unwrap().get(id_digest).cloned())
    }

    async fn list_for_contact(&self, contact_id: &ContactId) -> anyhow::Result<Vec<Session>> {
        Ok(self.sessions.lock().unwrap().values().filter(|s| &s.contact_id == contact_id).cloned().collect())
    }

    async fn touch(&self, id_digest: &str, now: Timestamp) -> anyhow::Result<()> {
        if let Some(session) = self.sessions.lock().unwrap().get_mut(id_digest) {
            session.last_seen_at = now;
        }
        Ok(())
    }

    async fn delete(&self, id_digest: &str) -> anyhow::Result<Option<Session>> {
        Ok(self.sessions.lock().unwrap().remove(id_digest))
    }
}

/// A clock that stands still until a test moves it.
pub struct ManualClock(AtomicI64);

impl ManualClock {
    pub fn at(now: Timestamp) -> Self {
        ManualClock(AtomicI64::new(now.as_secs()))
    }

    pub fn advance(&self, secs: i64) {
        self.0.fetch_add(secs, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_secs(self.0.load(Ordering::SeqCst))
    }

    /// Moves on by `secs` at once: a test never waits in real time.
    fn wait(&self, secs: u64) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>> {
        self.0.fetch_add(secs as i64, Ordering::SeqCst);
        Box::pin(std::future::ready(()))
    }
}

/// Invitations in memory, writing their emails to a [`MemoryOutbox`] and redemptions' changes to a
/// [`MemoryContacts`], with the same conditions as DynamoDB.
pub struct MemoryInvitations {
    contacts: Arc<MemoryContacts>,
    outbox: Arc<MemoryOutbox>,
    state: Mutex<InvitationsState>,
    /// `get` and `record_delivery` fail on request.
    pub faults: Faults,
}

/// An idempotency key: the request digest, when it started, and its answer once given.
type HeldKey = (String, Timestamp, Option<(u16, String)>);

#[derive(Default)]
struct InvitationsState {
    /// Idempotency keys by digest.
    keys: HashMap<String, HeldKey>,
    invitations: HashMap<InvitationId, Invitation>,
    codes: HashMap<String, InvitationId>,
    redemptions: Vec<Redemption>,
    /// Group invitations' per-contact deliveries.
    deliveries: HashMap<InvitationId, portal::domain::group::Deliveries>,
}

impl MemoryInvitations {
    pub fn new(contacts: Arc<MemoryContacts>, outbox: Arc<MemoryOutbox>) -> Self {
        MemoryInvitations { contacts, outbox, state: Mutex::default(), faults: Faults::default() }
    }

    pub fn all(&self) -> Vec<Invitation> {
        self.state.lock().unwrap().invitations.values().cloned().collect()
    }
}

impl MemoryInvitations {
    /// Replaces a not-revoked invitation's code, as read, and queues its email: `false` when it
    /// changed meanwhile.
    fn replace_code_only(&self, invitation: &Invitation, new_digest: &str, message: &OutboxMessage) -> bool {
        let mut state = self.state.lock().unwrap();
        let Some(stored) = state.invitations.get_mut(&invitation.invitation_id) else { return false };
        if stored.revoked || stored.code_digest != invitation.code_digest {
            return false;
        }
        stored.code_digest = new_digest.to_string();
        stored.message_id = message.message_id.clone();
        stored.delivery = Delivery::Pending;
        stored.delivery_error = None;
        stored.delivered_at = None;
        state.codes.remove(&invitation.code_digest);
        state.codes.insert(new_digest.to_string(), invitation.invitation_id.clone());
        self.outbox.insert(message.clone());
        true
    }
}

#[async_trait]
impl InvitationStore for MemoryInvitations {
    async fn erase_invitee(&self, invitation_id: &InvitationId) -> anyhow::Result<()> {
        if let Some(invitation) = self.state.lock().unwrap().invitations.get_mut(invitation_id) {
            invitation.email.clear();
            invitation.first_name.clear();
            invitation.last_name.clear();
        }
        Ok(())
    }

    async fn create_with_events(
        &self,
        invitation: &Invitation,
        message: &OutboxMessage,
        queued: &[Queued],
    ) -> anyhow::Result<()> {
        {
            let mut state = self.state.lock().unwrap();
            state.codes.insert(invitation.code_digest.clone(), invitation.invitation_id.clone());
            state.invitations.insert(invitation.invitation_id.clone(), invitation.clone());
            self.outbox.insert(message.clone());
        }
        self.contacts.queue_emails(queued).await
    }

    async fn get(&self, invitation_id: &InvitationId) -> anyhow::Result<Option<Invitation>> {
        self.faults.check("get")?;
        Ok(self.state.lock().unwrap().invitations.get(invitation_id).cloned())
    }

    async fn redemptions(&self, invitation_id: &InvitationId) -> anyhow::Result<Vec<Redemption>> {
        let state = self.state.lock().unwrap();
        Ok(state.redemptions.iter().filter(|r| r.invitation_id == *invitation_id).cloned().collect())
    }

    async fn find_by_code(&self, code_digest: &str) -> anyhow::Result<Option<Invitation>> {
        let state = self.state.lock().unwrap();
        Ok(state.codes.get(code_digest).and_then(|id| state.invitations.get(id)).cloned())
    }

    async fn list_for_contact(&self, contact_id: &ContactId) -> anyhow::Result<Vec<Invitation>> {
        let state = self.state.lock().unwrap();
        let mut found: Vec<Invitation> =
            state.invitations.values().filter(|i| i.contact_id == *contact_id).cloned().collect();
        found.sort_by_key(|i| std::cmp::Reverse(i.created_at));
        Ok(found)
    }

    async fn replace_code(
        &self,
        invitation: &Invitation,
        new_digest: &str,
        message: &OutboxMessage,
        queued: &[Queued],
    ) -> anyhow::Result<bool> {
        if !self.replace_code_only(invitation, new_digest, message) {
            return Ok(false);
        }
        self.contacts.queue_emails(queued).await?;
        Ok(true)
    }

    async fn revoke_with_events(
        &self,
        invitation_id: &InvitationId,
        _now: Timestamp,
        queued: &[Queued],
    ) -> anyhow::Result<Option<Invitation>> {
        self.faults.check("revoke")?;
        let (revoked_now, found) = {
            let mut state = self.state.lock().unwrap();
            match state.invitations.get_mut(invitation_id) {
                None => (false, None),
                Some(i) => {
                    let revoked_now = !i.revoked;
                    i.revoked = true;
                    (revoked_now, Some(i.clone()))
                }
            }
        };
        if revoked_now {
            self.contacts.queue_emails(queued).await?;
        }
        Ok(found)
    }
    async fn redeem_with_events(
        &self,
        invitation: &Invitation,
        change: &ContactChange,
        redemption: &Redemption,
        now: Timestamp,
        queued: &[OutboxMessage],
    ) -> Result<(), RedeemError> {
        let mut state = self.state.lock().unwrap();
        let stored = state.invitations.get(&invitation.invitation_id).ok_or(RedeemError::InvitationInvalid)?;
        if !stored.is_redeemable(now) || stored.code_digest != invitation.code_digest {
            return Err(RedeemError::InvitationInvalid);
        }
        self.contacts.apply(change, now)?;
        if let Some(stored) = state.invitations.get_mut(&invitation.invitation_id) {
            stored.redemptions += 1;
        }
        state.redemptions.push(redemption.clone());
        queued.iter().for_each(|message| self.outbox.insert(message.clone()));
        Ok(())
    }

    async fn begin_idempotent(&self, key: &IdempotencyKey, now: Timestamp) -> anyhow::Result<IdempotentStart> {
        let mut state = self.state.lock().unwrap();
        if let Some((request, started_at, answer)) = state.keys.get(&key.key_digest) {
            let live = *started_at + idempotency::KEY_SECS > now;
            if live {
                if *request != key.request_digest {
                    return Ok(IdempotentStart::Mismatch);
                }
                if let Some((status, body)) = answer {
                    return Ok(IdempotentStart::Answered { status: *status, body: body.clone() });
                }
                if *started_at + idempotency::RUNNING_SECS > now {
                    return Ok(IdempotentStart::Running);
                }
            }
        }
        state.keys.insert(key.key_digest.clone(), (key.request_digest.clone(), now, None));
        Ok(IdempotentStart::First)
    }

    async fn finish_idempotent(
        &self,
        key: &IdempotencyKey,
        status: u16,
        body: &str,
        _now: Timestamp,
    ) -> anyhow::Result<()> {
        if let Some(entry) = self.state.lock().unwrap().keys.get_mut(&key.key_digest) {
            entry.2 = Some((status, body.to_string()));
        }
        Ok(())
    }

    async fn abandon_idempotent(&self, key: &IdempotencyKey) -> anyhow::Result<()> {
        self.state.lock().unwrap().keys.remove(&key.key_digest);
        Ok(())
    }

    async fn list(
        &self,
        filter: &InvitationFilter,
        page: &PageRequest,
        now: Timestamp,
    ) -> anyhow::Result<Paged<Invitation>> {
        let state = self.state.lock().unwrap();
        let mut rows: Vec<(String, Invitation)> = state
            .invitations
            .values()
            .filter(|i| filter.status.is_none_or(|status| i.status(now) == status))
            .filter(|i| filter.delivery.is_none_or(|delivery| i.delivery == delivery))
            .filter(|i| filter.contact_id.as_ref().is_none_or(|contact| i.contact_id == *contact))
            .map(|i| (sort_key(i.created_at, &i.invitation_id), i.clone()))
            .collect();
        rows.sort_by(|a, b| b.0.cmp(&a.0));
        Ok(newest_first_page(rows.into_iter(), page))
    }

    async fn record_delivery(
        &self,
        invitation_id: &InvitationId,
        message_id: &MessageId,
        delivery: Delivery,
        error: Option<&str>,
        now: Timestamp,
    ) -> anyhow::Result<()> {
        self.faults.check("record_delivery")?;
        let mut state = self.state.lock().unwrap();
        if let Some(stored) = state.invitations.get_mut(invitation_id).filter(|i| i.message_id == *message_id) {
            stored.delivery = delivery;
            stored.delivery_error = error.map(str::to_string);
            stored.delivered_at = Some(now);
        }
        Ok(())
    }

    async fn create_group_with_events(
        &self,
        invitation: &Invitation,
        fanout: &OutboxMessage,
        queued: &[Queued],
    ) -> anyhow::Result<()> {
        let pending = portal::domain::group::pending_deliveries(&fanout.recipients);
        self.state.lock().unwrap().deliveries.insert(invitation.invitation_id.clone(), pending);
        self.create_with_events(invitation, fanout, queued).await
    }

    async fn replace_group_code(
        &self,
        invitation: &Invitation,
        new_digest: &str,
        fanout: &OutboxMessage,
        queued: &[Queued],
    ) -> anyhow::Result<bool> {
        if !self.replace_code(invitation, new_digest, fanout, queued).await? {
            return Ok(false);
        }
        let mut state = self.state.lock().unwrap();
        state
            .deliveries
            .insert(invitation.invitation_id.clone(), portal::domain::group::pending_deliveries(&fanout.recipients));
        Ok(true)
    }

    async fn deliveries(&self, invitation_id: &InvitationId) -> anyhow::Result<portal::domain::group::Deliveries> {
        Ok(self.state.lock().unwrap().deliveries.get(invitation_id).cloned().unwrap_or_default())
    }

    async fn record_contact_delivery(
        &self,
        invitation_id: &InvitationId,
        fanout_id: &MessageId,
        contact_id: &ContactId,
        delivery: Delivery,
        error: Option<&str>,
        now: Timestamp,
    ) -> anyhow::Result<()> {
        self.faults.check("record_delivery")?;
        let mut state = self.state.lock().unwrap();
        let current = state.invitations.get(invitation_id).is_some_and(|i| i.message_id == *fanout_id);
        let Some(deliveries) = state.deliveries.get_mut(invitation_id).filter(|_| current) else { return Ok(()) };
        let Some(entry) = deliveries.get_mut(contact_id) else { return Ok(()) };
        entry.status = delivery;
        let overall = portal::domain::group::aggregate(deliveries.values().map(|d| &d.status));
        if let Some(stored) = state.invitations.get_mut(invitation_id) {
            stored.delivery = overall;
            if let Some(error) = error {
                stored.delivery_error = Some(format!("{contact_id}: {error}"));
            }
            stored.delivered_at = Some(now);
        }
        Ok(())
    }
}

/// Outbox messages in memory, with the lease rules of the DynamoDB outbox.
#[derive(Default)]
pub struct MemoryOutbox {
    messages: Mutex<HashMap<MessageId, OutboxMessage>>,
    /// The messages held without expiry (`hold`).
    pub held: Mutex<std::collections::HashSet<MessageId>>,
    /// `claim`, `mark_sent`, `mark_failed`, `hold` and `release` fail on request.
    pub faults: Faults,
}

impl MemoryOutbox {
    pub fn insert(&self, message: OutboxMessage) {
        self.messages.lock().unwrap().insert(message.message_id.clone(), message);
    }

    /// Every email queued (events are not emails: see [`MemoryOutbox::events`]).
    pub fn all(&self) -> Vec<OutboxMessage> {
        self.messages.lock().unwrap().values().filter(|m| m.kind != MessageKind::Event).cloned().collect()
    }

    /// The outbox items carrying events, oldest first.
    pub fn event_messages(&self) -> Vec<OutboxMessage> {
        let mut found: Vec<OutboxMessage> =
            self.messages.lock().unwrap().values().filter(|m| m.kind == MessageKind::Event).cloned().collect();
        found.sort_by_key(|m| m.created_at);
        found
    }

    /// The events queued, oldest first.
    pub fn events(&self) -> Vec<PortalEvent> {
        self.event_messages().into_iter().filter_map(|m| m.event).collect()
    }

    pub fn insert_events(&self, events: &[PortalEvent]) {
        for event in events {
            self.insert(OutboxMessage::for_event(event));
        }
    }

    pub fn get(&self, message_id: &MessageId) -> Option<OutboxMessage> {
        self.messages.lock().unwrap().get(message_id).cloned()
    }
}

#[async_trait]
impl Outbox for MemoryOutbox {
    async fn claim(&self, message_id: &MessageId, now: Timestamp) -> anyhow::Result<Claim> {
        self.faults.check("claim")?;
        let mut messages = self.messages.lock().unwrap();
        let Some(message) = messages.get_mut(message_id) else { return Ok(Claim::Missing) };
        let claim = message.claim_at(now);
        if let Claim::Leased(claimed) = &claim {
            *message = claimed.clone();
        }
        Ok(claim)
    }

    async fn mark_sent_with_events(
        &self,
        message_id: &MessageId,
        _now: Timestamp,
        events: &[PortalEvent],
    ) -> anyhow::Result<()> {
        self.faults.check("mark_sent")?;
        let mut messages = self.messages.lock().unwrap();
        if let Some(message) = messages.get_mut(message_id)
            && message.status != MessageStatus::Sent
        {
            message.status = MessageStatus::Sent;
            message.settle_forgetting();
            for event in events {
                messages.insert(MessageId::from(event.event_id.as_str()), OutboxMessage::for_event(event));
            }
        }
        Ok(())
    }

    async fn mark_failed_with_events(
        &self,
        message_id: &MessageId,
        reason: &str,
        _now: Timestamp,
        events: &[PortalEvent],
    ) -> anyhow::Result<()> {
        self.faults.check("mark_failed")?;
        let mut messages = self.messages.lock().unwrap();
        if let Some(message) = messages.get_mut(message_id)
            && message.status != MessageStatus::Failed
        {
            message.status = MessageStatus::Failed;
            message.error = Some(reason.to_string());
            message.settle_forgetting();
            for event in events {
                messages.insert(MessageId::from(event.event_id.as_str()), OutboxMessage::for_event(event));
            }
        }
        Ok(())
    }

    async fn hold(&self, message_id: &MessageId, _now: Timestamp) -> anyhow::Result<()> {
        self.faults.check("hold")?;
        let pending = self.messages.lock().unwrap().get(message_id).is_some_and(|m| m.status == MessageStatus::Pending);
        if pending {
            self.held.lock().unwrap().insert(message_id.clone());
        }
        Ok(())
    }

    async fn release(&self, message_id: &MessageId, lease_until: Timestamp) -> anyhow::Result<()> {
        self.faults.check("release")?;
        if let Some(message) = self.messages.lock().unwrap().get_mut(message_id)
            && message.status == MessageStatus::Sending
            && message.lease_until == Some(lease_until)
        {
            message.status = MessageStatus::Pending;
            message.lease_until = None;
        }
        Ok(())
    }

    async fn list(&self) -> anyhow::Result<Vec<OutboxMessage>> {
        Ok(self.all())
    }

    async fn requeue(&self, original: &OutboxMessage, copy: &OutboxMessage, _now: Timestamp) -> anyhow::Result<bool> {
        let mut messages = self.messages.lock().unwrap();
        let Some(stored) = messages.get_mut(&original.message_id) else { return Ok(false) };
        if stored.status == MessageStatus::Sent || stored.status != original.status {
            return Ok(false);
        }
        stored.status = MessageStatus::Failed;
        stored.error = Some(format!("re-queued as {}", copy.message_id));
        stored.secret = None;
        messages.insert(copy.message_id.clone(), copy.clone());
        Ok(true)
    }

    async fn fan_out(&self, fanout_id: &MessageId, done: u32, batch: &[OutboxMessage]) -> anyhow::Result<bool> {
        self.faults.check("fan_out")?;
        let mut messages = self.messages.lock().unwrap();
        let Some(fanout) = messages.get_mut(fanout_id).filter(|m| m.fanned_out == done) else { return Ok(false) };
        fanout.fanned_out = done + batch.len() as u32;
        for message in batch {
            // A conditional put, as in DynamoDB: a queued email is never replaced.
            messages.entry(message.message_id.clone()).or_insert_with(|| message.clone());
        }
        Ok(true)
    }
}

/// A mailer that records what it sends; tests queue failures for the next sends.
#[derive(Default)]
pub struct MemoryMailer {
    sent: Mutex<Vec<OutgoingEmail>>,
    failures: Mutex<VecDeque<SendError>>,
}

impl MemoryMailer {
    pub fn sent(&self) -> Vec<OutgoingEmail> {
        self.sent.lock().unwrap().clone()
    }

    /// The next send fails with `error`.
    pub fn fail_next(&self, error: SendError) {
        self.failures.lock().unwrap().push_back(error);
    }
}

#[async_trait]
impl Mailer for MemoryMailer {
    async fn send(&self, email: &OutgoingEmail) -> Result<(), SendError> {
        if let Some(error) = self.failures.lock().unwrap().pop_front() {
            return Err(error);
        }
        self.sent.lock().unwrap().push(email.clone());
        Ok(())
    }
}

/// A page of rows (sort key, row) given newest first: those after the page's position, and where
/// the next page starts.
fn newest_first_page<T>(rows: impl Iterator<Item = (String, T)>, page: &PageRequest) -> Paged<T> {
    let after = page.after.as_ref().map(Position::sort_key);
    let mut rows: Vec<(String, T)> =
        rows.filter(|(key, _)| after.as_ref().is_none_or(|after| key < after)).take(page.limit + 1).collect();
    let next = if rows.len() > page.limit {
        rows.truncate(page.limit);
        rows.last().and_then(|(key, _)| Position::from_sort_key(key))
    } else {
        None
    };
    Paged { items: rows.into_iter().map(|(_, row)| row).collect(), next }
}

/// An event bus that records what it is given; tests make the next publishes fail.
#[derive(Default)]
pub struct MemoryEventBus {
    published: Mutex<Vec<PortalEvent>>,
    failures: Mutex<u32>,
}

impl MemoryEventBus {
    /// Every event published, in order (a second publish of one event shows twice).
    pub fn published(&self) -> Vec<PortalEvent> {
        self.published.lock().unwrap().clone()
    }

    /// The next `times` publishes fail, as a PutEvents fault or a failed entry would.
    pub fn fail_next(&self, times: u32) {
        *self.failures.lock().unwrap() += times;
    }
}

#[async_trait]
impl portal::ports::EventBus for MemoryEventBus {
    async fn publish(&self, event: &PortalEvent) -> anyhow::Result<()> {
        {
            let mut failures = self.failures.lock().unwrap();
            if *failures > 0 {
                *failures -= 1;
                anyhow::bail!("injected event bus fault (FailedEntryCount 1)");
            }
        }
        self.published.lock().unwrap().push(event.clone());
        Ok(())
    }
}
