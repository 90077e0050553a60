//! In-memory bulk imports and pacing, with the rules of the DynamoDB ones, for handler tests.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use super::memory::{Faults, MemoryContacts, MemoryInvitations};
use portal::domain::contact::{Contact, Login};
use portal::domain::email::Email;
use portal::domain::ids::MessageId;
use portal::domain::import::{ChunkClaim, ChunkCounts, ChunkStatus, ImportChunk, ImportId, ImportJob, RowOutcome};
use portal::domain::time::Timestamp;
use portal::ports::{
    ContactStore, CreateContactError, ImportStore, InvitationStore, Queued, RowWrite, RowWritten, SendPacer,
};

#[derive(Default)]
struct ImportsState {
    jobs: HashMap<ImportId, ImportJob>,
    chunks: HashMap<String, ImportChunk>,
    rows: HashMap<String, RowOutcome>,
    counted: HashSet<MessageId>,
}

pub struct MemoryImports {
    contacts: Arc<MemoryContacts>,
    invitations: Arc<MemoryInvitations>,
    state: Mutex<ImportsState>,
    /// Faults tests ask for, by operation (`write_row`, `finish_chunk`).
    pub faults: Faults,
}

impl MemoryImports {
    pub fn new(contacts: Arc<MemoryContacts>, invitations: Arc<MemoryInvitations>) -> Self {
        MemoryImports { contacts, invitations, state: Mutex::default(), faults: Faults::default() }
    }

    /// The chunks of an import, in order.
    pub fn chunks_of(&self, import_id: &ImportId) -> Vec<ImportChunk> {
        let state = self.state.lock().unwrap();
        let mut chunks: Vec<ImportChunk> =
            state.chunks.values().filter(|c| &c.import_id == import_id).cloned().collect();
        chunks.sort_by_key(|c| c.index);
        chunks
    }
}

#[async_trait]
impl ImportStore for MemoryImports {
    async fn create(&self, job: &ImportJob, chunks: &[ImportChunk], queued: &[Queued]) -> anyhow::Result<()> {
        self.faults.check("create_import")?;
        {
            let mut state = self.state.lock().unwrap();
            state.jobs.insert(job.import_id.clone(), job.clone());
            for chunk in chunks {
                state.chunks.insert(chunk.chunk_id.clone(), chunk.clone());
            }
        }
        self.contacts.queue_emails(queued).await
    }

    async fn get(&self, import_id: &ImportId) -> anyhow::Result<Option<ImportJob>> {
        Ok(self.state.lock().unwrap().jobs.get(import_id).cloned())
    }

    async fn claim_chunk(&self, chunk_id: &str, now: Timestamp) -> anyhow::Result<ChunkClaim> {
        let mut state = self.state.lock().unwrap();
        let Some(chunk) = state.chunks.get_mut(chunk_id) else { return Ok(ChunkClaim::Missing) };
        let claim = chunk.claim_at(now);
        if let ChunkClaim::Leased(claimed) = &claim {
            *chunk = claimed.clone();
        }
        Ok(claim)
    }

    async fn release_chunk(&self, chunk_id: &str, lease_until: Timestamp) -> anyhow::Result<()> {
        let mut state = self.state.lock().unwrap();
        if let Some(chunk) = state.chunks.get_mut(chunk_id)
            && chunk.status == ChunkStatus::Processing
            && chunk.lease_until == Some(lease_until)
        {
            chunk.status = ChunkStatus::Pending;
            chunk.lease_until = None;
        }
        Ok(())
    }

    async fn row_outcomes(&self, keys: &[String]) -> anyhow::Result<HashMap<String, RowOutcome>> {
        let state = self.state.lock().unwrap();
        Ok(keys.iter().filter_map(|k| state.rows.get(k).map(|o| (k.clone(), o.clone()))).collect())
    }

    async fn contacts_by_email(&self, emails: &[Email]) -> anyhow::Result<HashMap<String, Contact>> {
        let mut found = HashMap::new();
        for email in emails {
            if let Some(contact) = self.contacts.find_by_login(&Login::of_email(email)).await? {
                found.insert(email.normalized().to_string(), contact);
            }
        }
        Ok(found)
    }

    async fn write_row(&self, write: &RowWrite<'_>) -> anyhow::Result<RowWritten> {
        self.faults.check("write_row")?;
        if self.state.lock().unwrap().rows.contains_key(write.key) {
            return Ok(RowWritten::AlreadyDone);
        }
        if let Some(contact) = write.new_contact {
            match self.contacts.create(contact).await {
                Ok(()) => {}
                Err(CreateContactError::EmailTaken) => return Ok(RowWritten::EmailTaken),
                Err(CreateContactError::UsernameTaken | CreateContactError::IdentityTaken) => {
                    anyhow::bail!("an imported contact has no username and no identity")
                }
                Err(CreateContactError::Store(err)) => return Err(err),
            }
        }
        if let Some((invitation, message)) = write.invitation {
            self.invitations.create(invitation, message).await?;
        }
        let events: Vec<portal::ports::Queued> = write.events.iter().cloned().map(Into::into).collect();
        self.contacts.queue_emails(&events).await?;
        self.state.lock().unwrap().rows.insert(write.key.to_string(), write.outcome.clone());
        Ok(RowWritten::Written)
    }

    async fn write_rows(&self, writes: &[RowWrite<'_>]) -> anyhow::Result<bool> {
        self.faults.check("write_rows")?;
        for write in writes {
            if self.state.lock().unwrap().rows.contains_key(write.key) {
                return Ok(false);
            }
            if let Some(contact) = write.new_contact
                && self.contacts.email_in_use(&contact.email).await?
            {
                return Ok(false);
            }
        }
        for write in writes {
            if self.write_row(write).await? != RowWritten::Written {
                anyhow::bail!("a row checked free was taken meanwhile (memory adapters are not concurrent)");
            }
        }
        Ok(true)
    }

    async fn finish_chunk(&self, chunk: &ImportChunk, counts: &ChunkCounts, _now: Timestamp) -> anyhow::Result<bool> {
        self.faults.check("finish_chunk")?;
        let mut state = self.state.lock().unwrap();
        let Some(stored) = state.chunks.get_mut(&chunk.chunk_id) else { return Ok(false) };
        if stored.status != ChunkStatus::Processing || stored.lease_until != chunk.lease_until {
            return Ok(false);
        }
        stored.status = ChunkStatus::Done;
        stored.lease_until = None;
        if let Some(job) = state.jobs.get_mut(&chunk.import_id) {
            job.chunks_done += 1;
            job.rows_done += counts.rows;
            job.contacts_created += counts.contacts_created;
            job.invitations_created += counts.invitations_created;
        }
        Ok(true)
    }

    async fn count_email(&self, import_id: &ImportId, message_id: &MessageId, sent: bool) -> anyhow::Result<()> {
        let mut state = self.state.lock().unwrap();
        if !state.counted.insert(message_id.clone()) {
            return Ok(());
        }
        if let Some(job) = state.jobs.get_mut(import_id) {
            if sent {
                job.emails_sent += 1;
            } else {
                job.emails_failed += 1;
            }
        }
        Ok(())
    }
}

/// A pacer that lets every send go at once and counts the slots taken and the back-offs.
#[derive(Default)]
pub struct MemoryPacer {
    pub slots: std::sync::atomic::AtomicU32,
    pub back_offs: std::sync::atomic::AtomicU32,
    /// While set, no slot is free (as when the rate is used up for longer than a run may wait).
    pub full: std::sync::atomic::AtomicBool,
}

#[async_trait]
impl SendPacer for MemoryPacer {
    async fn wait_for_slot(&self) -> anyhow::Result<bool> {
        use std::sync::atomic::Ordering;
        if self.full.load(Ordering::SeqCst) {
            return Ok(false);
        }
        self.slots.fetch_add(1, Ordering::SeqCst);
        Ok(true)
    }

    async fn back_off(&self) -> anyhow::Result<()> {
        self.back_offs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }
}
