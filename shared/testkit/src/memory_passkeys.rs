//! Passkeys in memory, with the DynamoDB adapter's rules (see `dynamodb_passkeys`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use super::memory::{Faults, MemoryContacts};
use portal::domain::ids::ContactId;
use portal::domain::passkey::{Ceremony, StoredPasskey};
use portal::domain::time::Timestamp;
use portal::ports::{PasskeyStore, Queued};

pub struct MemoryPasskeys {
    contacts: Arc<MemoryContacts>,
    state: Mutex<PasskeysState>,
    /// Faults tests ask for, by operation name ("add", "remove", "record_use", "take_ceremony").
    pub faults: Faults,
}

#[derive(Default)]
struct PasskeysState {
    passkeys: HashMap<String, StoredPasskey>,
    ceremonies: HashMap<String, Ceremony>,
}

impl MemoryPasskeys {
    /// Passkeys of `contacts`' contacts (whose epoch their changes advance).
    pub fn new(contacts: Arc<MemoryContacts>) -> Self {
        MemoryPasskeys { contacts, state: Mutex::default(), faults: Faults::default() }
    }

    /// Every stored passkey, for assertions.
    pub fn all(&self) -> Vec<StoredPasskey> {
        self.state.lock().unwrap().passkeys.values().cloned().collect()
    }

    /// Every ceremony still kept, for assertions.
    pub fn ceremonies(&self) -> Vec<Ceremony> {
        self.state.lock().unwrap().ceremonies.values().cloned().collect()
    }
}

#[async_trait]
impl PasskeyStore for MemoryPasskeys {
    async fn save_ceremony(&self, ceremony: &Ceremony) -> anyhow::Result<()> {
        self.faults.check("save_ceremony")?;
        self.state.lock().unwrap().ceremonies.insert(ceremony.id_digest.clone(), ceremony.clone());
        Ok(())
    }

    async fn take_ceremony(&self, id_digest: &str) -> anyhow::Result<Option<Ceremony>> {
        self.faults.check("take_ceremony")?;
        Ok(self.state.lock().unwrap().ceremonies.remove(id_digest))
    }

    async fn list(&self, contact_id: &ContactId) -> anyhow::Result<Vec<StoredPasskey>> {
        let mut found: Vec<StoredPasskey> =
            self.state.lock().unwrap().passkeys.values().filter(|p| &p.contact_id == contact_id).cloned().collect();
        found.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(found)
    }

    async fn find(&self, id: &str) -> anyhow::Result<Option<StoredPasskey>> {
        Ok(self.state.lock().unwrap().passkeys.get(id).cloned())
    }

    async fn add(
        &self,
        passkey: &StoredPasskey,
        epoch: &str,
        now: Timestamp,
        emails: &[Queued],
    ) -> anyhow::Result<bool> {
        self.faults.check("add")?;
        let mut state = self.state.lock().unwrap();
        if state.passkeys.contains_key(&passkey.id) {
            return Ok(false);
        }
        if !self.contacts.advance_epoch(&passkey.contact_id, epoch, now, emails) {
            anyhow::bail!("adding a passkey: no such contact");
        }
        state.passkeys.insert(passkey.id.clone(), passkey.clone());
        Ok(true)
    }

    async fn remove(
        &self,
        contact_id: &ContactId,
        id: &str,
        epoch: &str,
        now: Timestamp,
        emails: &[Queued],
    ) -> anyhow::Result<bool> {
        self.faults.check("remove")?;
        let mut state = self.state.lock().unwrap();
        if state.passkeys.get(id).is_none_or(|p| &p.contact_id != contact_id) {
            return Ok(false);
        }
        if !self.contacts.advance_epoch(contact_id, epoch, now, emails) {
            anyhow::bail!("removing a passkey: no such contact");
        }
        state.passkeys.remove(id);
        Ok(true)
    }

    async fn record_use(
        &self,
        passkey: &StoredPasskey,
        sign_count: u32,
        credential: &str,
        now: Timestamp,
    ) -> anyhow::Result<bool> {
        self.faults.check("record_use")?;
        let mut state = self.state.lock().unwrap();
        match state.passkeys.get_mut(&passkey.id) {
            Some(stored) if stored.sign_count == passkey.sign_count => {
                stored.sign_count = sign_count;
                stored.credential = credential.to_string();
                stored.last_used_at = Some(now);
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}
