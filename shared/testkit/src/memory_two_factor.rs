//! Two-factor state in memory, with the DynamoDB adapter's conditions (handler tests).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use super::memory::MemoryContacts;
use portal::domain::ids::ContactId;
use portal::domain::time::Timestamp;
use portal::domain::two_factor::{PENDING_SIGN_IN_ATTEMPTS, PendingSignIn, TwoFactor};
use portal::ports::{ContactStore, Queued, TwoFactorStore};

pub struct MemoryTwoFactor {
    states: Mutex<HashMap<ContactId, TwoFactor>>,
    pending: Mutex<HashMap<String, PendingSignIn>>,
    /// Where a change's new session epoch and notices go.
    contacts: Arc<MemoryContacts>,
}

impl MemoryTwoFactor {
    pub fn new(contacts: Arc<MemoryContacts>) -> Self {
        MemoryTwoFactor { states: Mutex::default(), pending: Mutex::default(), contacts }
    }

    /// Every stored state, for assertions (nothing in it may be a secret in the clear).
    pub fn all(&self) -> Vec<TwoFactor> {
        self.states.lock().unwrap().values().cloned().collect()
    }

    /// Every pending sign-in, for assertions.
    pub fn all_pending(&self) -> Vec<PendingSignIn> {
        self.pending.lock().unwrap().values().cloned().collect()
    }

    /// Applies `change` to the stored state if `allowed` says so; `false` otherwise.
    fn update(
        &self,
        contact_id: &ContactId,
        allowed: impl FnOnce(&TwoFactor) -> bool,
        change: impl FnOnce(&mut TwoFactor),
    ) -> bool {
        let mut states = self.states.lock().unwrap();
        let Some(state) = states.get_mut(contact_id) else { return false };
        if !allowed(state) {
            return false;
        }
        change(state);
        state.version += 1;
        true
    }
}

#[async_trait]
impl TwoFactorStore for MemoryTwoFactor {
    async fn get(&self, contact_id: &ContactId) -> anyhow::Result<TwoFactor> {
        let states = self.states.lock().unwrap();
        Ok(states.get(contact_id).cloned().unwrap_or_else(|| TwoFactor::none(contact_id)))
    }

    async fn save(&self, state: &TwoFactor, epoch: Option<&str>, emails: &[Queued]) -> anyhow::Result<bool> {
        {
            let mut states = self.states.lock().unwrap();
            let current = states.get(&state.contact_id).map_or(0, |s| s.version);
            if current != state.version {
                return Ok(false);
            }
            let mut written = state.clone();
            written.version += 1;
            states.insert(state.contact_id.clone(), written);
        }
        if let Some(epoch) = epoch
            && let Some(mut contact) = self.contacts.get(&state.contact_id).await?
        {
            contact.session_epoch = epoch.to_string();
            self.contacts.put(contact);
        }
        self.contacts.queue_emails(emails).await?;
        Ok(true)
    }

    async fn use_totp_step(&self, contact_id: &ContactId, step: i64) -> anyhow::Result<bool> {
        Ok(self.update(contact_id, |s| s.totp.is_some() && s.totp_last_step < step, |s| s.totp_last_step = step))
    }

    async fn use_recovery_code(&self, contact_id: &ContactId, digest: &str) -> anyhow::Result<bool> {
        Ok(self.update(
            contact_id,
            |s| s.recovery_codes.contains_key(digest),
            |s| {
                s.recovery_codes.remove(digest);
            },
        ))
    }

    async fn set_email_code(
        &self,
        contact_id: &ContactId,
        digest: &str,
        expires_at: Timestamp,
        emails: &[Queued],
    ) -> anyhow::Result<()> {
        let set = self.update(
            contact_id,
            |s| s.email,
            |s| {
                s.email_code = Some(digest.to_string());
                s.email_code_expires_at = Some(expires_at);
            },
        );
        if set {
            self.contacts.queue_emails(emails).await?;
        }
        Ok(())
    }

    async fn use_email_code(&self, contact_id: &ContactId, digest: &str, now: Timestamp) -> anyhow::Result<bool> {
        Ok(self.update(
            contact_id,
            |s| s.email && s.email_code.as_deref() == Some(digest) && s.email_code_expires_at.is_some_and(|e| e > now),
            |s| {
                s.email_code = None;
                s.email_code_expires_at = None;
            },
        ))
    }

    async fn create_pending(&self, pending: &PendingSignIn) -> anyhow::Result<()> {
        self.pending.lock().unwrap().insert(pending.id_digest.clone(), pending.clone());
        Ok(())
    }

    async fn find_pending(&self, digest: &str, now: Timestamp) -> anyhow::Result<Option<PendingSignIn>> {
        let pending = self.pending.lock().unwrap();
        Ok(pending.get(digest).filter(|p| p.expires_at > now && p.attempts < PENDING_SIGN_IN_ATTEMPTS).cloned())
    }

    async fn take_pending_attempt(
        &self,
        digest: &str,
        now: Timestamp,
        limit: u32,
    ) -> anyhow::Result<Option<PendingSignIn>> {
        let mut pending = self.pending.lock().unwrap();
        match pending.get_mut(digest) {
            Some(p) if p.expires_at > now && p.attempts < limit => {
                p.attempts += 1;
                Ok(Some(p.clone()))
            }
            _ => Ok(None),
        }
    }

    async fn take_pending_email(
        &self,
        digest: &str,
        now: Timestamp,
        limit: u32,
    ) -> anyhow::Result<Option<PendingSignIn>> {
        let mut pending = self.pending.lock().unwrap();
        match pending.get_mut(digest) {
            Some(p) if p.expires_at > now && p.attempts < PENDING_SIGN_IN_ATTEMPTS && p.emails_sent < limit => {
                p.emails_sent += 1;
                Ok(Some(p.clone()))
            }
            _ => Ok(None),
        }
    }

    async fn end_pending(&self, digest: &str) -> anyhow::Result<bool> {
        Ok(self.pending.lock().unwrap().remove(digest).is_some())
    }
}
