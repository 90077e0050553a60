//! In-memory adapters with the same rules as the DynamoDB ones, for fast handler tests.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};

use async_trait::async_trait;

use crate::domain::contact::{Contact, Login};
use crate::domain::lockout::{FailedSignIn, LockoutPolicy};
use crate::domain::session::Session;
use crate::ports::{Clock, ContactStore, CreateContactError, SessionStore};

#[derive(Default)]
pub struct MemoryContacts {
    state: Mutex<ContactsState>,
}

#[derive(Default)]
struct ContactsState {
    contacts: HashMap<String, Contact>,
    by_email: HashMap<String, String>,
    by_username: HashMap<String, String>,
}

impl MemoryContacts {
    /// Every contact, for assertions.
    pub fn all(&self) -> Vec<Contact> {
        self.state.lock().unwrap().contacts.values().cloned().collect()
    }
}

#[async_trait]
impl ContactStore for MemoryContacts {
    async fn create(&self, contact: &Contact) -> Result<(), CreateContactError> {
        let mut state = self.state.lock().unwrap();
        if state.by_email.contains_key(&contact.email_normalized) {
            return Err(CreateContactError::EmailTaken);
        }
        if let Some(username) = &contact.username_normalized {
            if state.by_username.contains_key(username) {
                return Err(CreateContactError::UsernameTaken);
            }
            state.by_username.insert(username.clone(), contact.contact_id.clone());
        }
        state.by_email.insert(contact.email_normalized.clone(), contact.contact_id.clone());
        state.contacts.insert(contact.contact_id.clone(), contact.clone());
        Ok(())
    }

    async fn get(&self, contact_id: &str) -> anyhow::Result<Option<Contact>> {
        Ok(self.state.lock().unwrap().contacts.get(contact_id).cloned())
    }

    async fn find_by_login(&self, login: &Login) -> anyhow::Result<Option<Contact>> {
        let state = self.state.lock().unwrap();
        let id = match login {
            Login::Email(email) => state.by_email.get(email),
            Login::Username(username) => state.by_username.get(username),
        };
        Ok(id.and_then(|id| state.contacts.get(id)).cloned())
    }

    async fn record_failed_sign_in(
        &self,
        contact_id: &str,
        now: i64,
        policy: &LockoutPolicy,
    ) -> anyhow::Result<FailedSignIn> {
        let mut state = self.state.lock().unwrap();
        let contact = state.contacts.get_mut(contact_id).ok_or_else(|| anyhow::anyhow!("no such contact"))?;
        let (next, outcome) = contact.lockout().after_failure(now, policy);
        contact.failed_sign_ins = next.failed_sign_ins;
        contact.lockouts = next.lockouts;
        contact.locked_until = next.locked_until;
        Ok(outcome)
    }

    async fn reset_lockout(&self, contact_id: &str) -> anyhow::Result<()> {
        let mut state = self.state.lock().unwrap();
        if let Some(contact) = state.contacts.get_mut(contact_id) {
            contact.failed_sign_ins = 0;
            contact.lockouts = 0;
            contact.locked_until = None;
        }
        Ok(())
    }
}

#[derive(Default)]
pub struct MemorySessions {
    sessions: Mutex<HashMap<String, Session>>,
}

impl MemorySessions {
    pub fn all(&self) -> Vec<Session> {
        self.sessions.lock().unwrap().values().cloned().collect()
    }
}

#[async_trait]
impl SessionStore for MemorySessions {
    async fn create(&self, session: &Session) -> anyhow::Result<()> {
        self.sessions.lock().unwrap().insert(session.id_digest.clone(), session.clone());
        Ok(())
    }

    async fn get(&self, id_digest: &str) -> anyhow::Result<Option<Session>> {
        Ok(self.sessions.lock().unwrap().get(id_digest).cloned())
    }

    async fn touch(&self, id_digest: &str, now: i64) -> anyhow::Result<()> {
        if let Some(session) = self.sessions.lock().unwrap().get_mut(id_digest) {
            session.last_seen_at = now;
        }
        Ok(())
    }

    async fn delete(&self, id_digest: &str) -> anyhow::Result<()> {
        self.sessions.lock().unwrap().remove(id_digest);
        Ok(())
    }
}

/// A clock that stands still until a test moves it.
pub struct ManualClock(AtomicI64);

impl ManualClock {
    pub fn at(now: i64) -> Self {
        ManualClock(AtomicI64::new(now))
    }

    pub fn advance(&self, secs: i64) {
        self.0.fetch_add(secs, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}
