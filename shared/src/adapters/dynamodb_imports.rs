//! DynamoDB adapters for bulk imports and for pacing email to the SES sending rate.
//!
//! Invitations table (keys `pk`, `sk`):
//! - `IMPORT#<id>` / `IMPORT`: the import, its rejected rows and its counts (TTL 30 days).
//! - `IMPORTROW#<row key>` / `IMPORTROW`: one row of a file done, with its outcome (TTL 90 days);
//!   written with what the row creates, in one transaction, only if absent.
//!
//! Outbox table (key `pk`): `IMPORT#<id>#<nnn>`, an import's chunk (`kind` = `import_chunk`), whose
//! INSERT record triggers `send-email`; it carries the chunk's rows and its lease.
//!
//! Contacts table (key `pk`): `PACE#email`, the next free sending slot (`next_ms`) shared by every
//! `send-email` run (see [`crate::domain::pacing`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{
    AttributeValue, KeysAndAttributes, ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update,
};
use serde::{Deserialize, Serialize};

use super::dynamodb::{
    ContactItem, GuardItem, Guards, Item, LeaseTaken, QueueTables, Transaction, TransactionError, contact_pk, email_pk,
    is_conditional_failure, key, new_contact_items, number, put_new, queued_items, sdk_error, take_lease,
    update_unless_moved_on,
};
use super::dynamodb_invitations::{event_items, new_invitation_items};
use crate::domain::contact::Contact;
use crate::domain::email::Email;
use crate::domain::ids::MessageId;
use crate::domain::import::{
    CHUNK_KIND, ChunkClaim, ChunkCounts, ChunkStatus, ImportChunk, ImportId, ImportJob, RowOutcome,
};
use crate::domain::outbox::{LEASE_SECS, RETENTION_SECS};
use crate::domain::pacing::{self, Slot, Spacing};
use crate::domain::time::Timestamp;
use crate::ports::{ImportStore, Queued, RowWrite, RowWritten, SendPacer};

/// An import's progress stays readable this long.
const IMPORT_KEEP_SECS: i64 = 30 * 86_400;
/// A file's rows are known as done this long: the same file imported again within it creates
/// nothing (its contacts would be reused by email after it anyway).
const ROW_KEEP_SECS: i64 = 90 * 86_400;
const IMPORT_SK: &str = "IMPORT";
const ROW_SK: &str = "IMPORTROW";
/// BatchGetItem reads at most 100 keys a call.
const BATCH_GET_MAX: usize = 100;

fn import_pk(import_id: &ImportId) -> String {
    format!("IMPORT#{import_id}")
}

fn row_pk(row_key: &str) -> String {
    format!("IMPORTROW#{row_key}")
}

fn text(value: &str) -> AttributeValue {
    AttributeValue::S(value.to_string())
}

fn key2(pk: String, sk: &str) -> Item {
    HashMap::from([("pk".to_string(), AttributeValue::S(pk)), ("sk".to_string(), text(sk))])
}

#[derive(Serialize, Deserialize)]
struct ImportItem {
    pk: String,
    sk: String,
    #[serde(flatten)]
    job: ImportJob,
    ttl: Timestamp,
}

#[derive(Serialize, Deserialize)]
struct RowItem {
    pk: String,
    sk: String,
    row_key: String,
    #[serde(flatten)]
    outcome: RowOutcome,
    ttl: Timestamp,
}

#[derive(Serialize, Deserialize)]
struct ChunkItem {
    pk: String,
    kind: String,
    #[serde(flatten)]
    chunk: ImportChunk,
    ttl: Timestamp,
}

pub struct DynamoImports {
    client: Client,
    invitations_table: String,
    contacts_table: String,
    outbox_table: String,
    /// Where an import's audit entry goes (in the same transaction).
    audit_table: String,
}

impl DynamoImports {
    pub fn new(client: Client, invitations_table: &str, contacts_table: &str, outbox_table: &str) -> Self {
        DynamoImports {
            client,
            invitations_table: invitations_table.into(),
            contacts_table: contacts_table.into(),
            outbox_table: outbox_table.into(),
            audit_table: String::new(),
        }
    }

    /// Writes the audit entry of an import to `audit_table`.
    pub fn auditing_to(self, audit_table: &str) -> Self {
        DynamoImports { audit_table: audit_table.into(), ..self }
    }

    /// Every item of `keys` in `table`, read consistently, 100 keys a call, unprocessed keys again.
    async fn batch_get(&self, table: &str, keys: Vec<Item>) -> anyhow::Result<Vec<Item>> {
        let mut found = Vec::new();
        for group in keys.chunks(BATCH_GET_MAX) {
            let mut pending =
                Some(KeysAndAttributes::builder().set_keys(Some(group.to_vec())).consistent_read(true).build()?);
            let mut rounds = 0;
            while let Some(request) = pending.take() {
                rounds += 1;
                if rounds > 8 {
                    anyhow::bail!("reading {table}: keys left unprocessed after 8 rounds");
                }
                let output = self
                    .client
                    .batch_get_item()
                    .request_items(table, request)
                    .send()
                    .await
                    .map_err(|e| sdk_error("reading import items", e))?;
                found.extend(output.responses.unwrap_or_default().remove(table).unwrap_or_default());
                pending = output.unprocessed_keys.unwrap_or_default().remove(table).filter(|k| !k.keys().is_empty());
                if pending.is_some() {
                    tokio::time::sleep(Duration::from_millis(50 * rounds)).await;
                }
            }
        }
        Ok(found)
    }

    /// The transaction items of one row: its key item (only if absent), and what it creates.
    fn row_items(&self, write: &RowWrite<'_>) -> anyhow::Result<Transaction> {
        let row: Item = serde_dynamo::to_item(RowItem {
            pk: row_pk(write.key),
            sk: ROW_SK.into(),
            row_key: write.key.to_string(),
            outcome: write.outcome.clone(),
            ttl: Timestamp::from_secs(now_secs()) + ROW_KEEP_SECS,
        })?;
        let mut items = Transaction::default();
        items.push(put_new(&self.invitations_table, row)?, Guards::Record);
        if let Some(contact) = write.new_contact {
            items.extend(imported_contact_items(&self.contacts_table, contact)?);
        }
        if let Some((invitation, message)) = write.invitation {
            items.extend(new_invitation_items(&self.invitations_table, &self.outbox_table, invitation, message)?);
        }
        items.extend(event_items(&self.outbox_table, write.events)?);
        Ok(items)
    }

    fn chunk_update(
        &self,
        chunk_id: &str,
    ) -> aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder {
        self.client
            .update_item()
            .table_name(&self.outbox_table)
            .key("pk", text(chunk_id))
            .expression_attribute_names("#s", "status")
    }
}

/// The transaction items that create an imported contact (the contact and its email guard); its
/// `ContactImported` event is among the row's events, in the same transaction.
fn imported_contact_items(contacts_table: &str, contact: &Contact) -> anyhow::Result<Transaction> {
    new_contact_items(contacts_table, contact)
}

#[async_trait]
impl ImportStore for DynamoImports {
    async fn create(&self, job: &ImportJob, chunks: &[ImportChunk], queued: &[Queued]) -> anyhow::Result<()> {
        let mut items = Transaction::default();
        let job_item: Item = serde_dynamo::to_item(ImportItem {
            pk: import_pk(&job.import_id),
            sk: IMPORT_SK.into(),
            job: job.clone(),
            ttl: job.created_at + IMPORT_KEEP_SECS,
        })?;
        items.push(put_new(&self.invitations_table, job_item)?, Guards::Nothing);
        for chunk in chunks {
            let item: Item = serde_dynamo::to_item(ChunkItem {
                pk: chunk.chunk_id.clone(),
                kind: CHUNK_KIND.into(),
                chunk: chunk.clone(),
                ttl: chunk.created_at + RETENTION_SECS,
            })?;
            items.push(put_new(&self.outbox_table, item)?, Guards::Nothing);
        }
        if self.audit_table.is_empty() && !queued.is_empty() {
            anyhow::bail!("the import store has no audit table");
        }
        let tables =
            QueueTables { contacts: &self.contacts_table, outbox: &self.outbox_table, audit: &self.audit_table };
        items.extend(queued_items(&tables, queued)?);
        items.run(&self.client).await.map_err(|e| e.into_fault("storing an import"))
    }

    async fn get(&self, import_id: &ImportId) -> anyhow::Result<Option<ImportJob>> {
        let output = self
            .client
            .get_item()
            .table_name(&self.invitations_table)
            .set_key(Some(key2(import_pk(import_id), IMPORT_SK)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error("reading an import", e))?;
        let Some(item) = output.item else { return Ok(None) };
        let stored: ImportItem = serde_dynamo::from_item(item).context("reading an import")?;
        Ok(Some(stored.job))
    }

    async fn claim_chunk(&self, chunk_id: &str, now: Timestamp) -> anyhow::Result<ChunkClaim> {
        let update = self
            .chunk_update(chunk_id)
            .update_expression("SET #s = :processing, lease_until = :until, lease_token = :token ADD attempts :one")
            .condition_expression(
                "#s = :pending OR (#s = :processing AND (attribute_not_exists(lease_until) OR lease_until <= :now))",
            )
            .expression_attribute_values(":processing", text("processing"))
            .expression_attribute_values(":pending", text("pending"))
            .expression_attribute_values(":now", number(now))
            .expression_attribute_values(":until", number(now + LEASE_SECS))
            .expression_attribute_values(":one", number(1));
        match take_lease(update, "claiming an import chunk").await? {
            LeaseTaken::Leased(item) => {
                let stored: ChunkItem = serde_dynamo::from_item(item).context("reading a claimed chunk")?;
                Ok(ChunkClaim::Leased(stored.chunk))
            }
            LeaseTaken::Missing => Ok(ChunkClaim::Missing),
            LeaseTaken::Refused { current, ours } => {
                let stored: ChunkItem = serde_dynamo::from_item(current).context("reading a refused chunk claim")?;
                if ours && stored.chunk.status == ChunkStatus::Processing {
                    // This very claim, committed by an attempt whose answer was lost.
                    return Ok(ChunkClaim::Leased(stored.chunk));
                }
                Ok(match stored.chunk.claim_at(now) {
                    ChunkClaim::Leased(_) => ChunkClaim::Busy { lease_until: stored.chunk.lease_until.unwrap_or(now) },
                    other => other,
                })
            }
        }
    }

    async fn release_chunk(&self, chunk_id: &str, lease_until: Timestamp) -> anyhow::Result<()> {
        let update = self
            .chunk_update(chunk_id)
            .update_expression("SET #s = :pending REMOVE lease_until")
            .condition_expression("#s = :processing AND lease_until = :mine")
            .expression_attribute_values(":pending", text("pending"))
            .expression_attribute_values(":processing", text("processing"))
            .expression_attribute_values(":mine", number(lease_until));
        update_unless_moved_on(update, "releasing an import chunk").await
    }

    async fn row_outcomes(&self, keys: &[String]) -> anyhow::Result<HashMap<String, RowOutcome>> {
        let keys = keys.iter().map(|k| key2(row_pk(k), ROW_SK)).collect();
        let mut outcomes = HashMap::new();
        for item in self.batch_get(&self.invitations_table, keys).await? {
            let stored: RowItem = serde_dynamo::from_item(item).context("reading an imported row")?;
            outcomes.insert(stored.row_key, stored.outcome);
        }
        Ok(outcomes)
    }

    async fn contacts_by_email(&self, emails: &[Email]) -> anyhow::Result<HashMap<String, Contact>> {
        let guards = emails.iter().map(|e| key(email_pk(e.normalized()))).collect();
        let guards = self.batch_get(&self.contacts_table, guards).await?;
        let mut ids = Vec::new();
        for item in guards {
            let guard: GuardItem = serde_dynamo::from_item(item).context("reading an email guard")?;
            ids.push(key(contact_pk(&guard.contact_id)));
        }
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let mut contacts = HashMap::new();
        for item in self.batch_get(&self.contacts_table, ids).await? {
            let stored: ContactItem = serde_dynamo::from_item(item).context("reading a contact")?;
            contacts.insert(stored.contact.email.normalized().to_string(), stored.contact);
        }
        Ok(contacts)
    }

    async fn write_row(&self, write: &RowWrite<'_>) -> anyhow::Result<RowWritten> {
        let items = self.row_items(write)?;
        match items.run(&self.client).await {
            Ok(()) => Ok(RowWritten::Written),
            Err(TransactionError::Refused(Guards::Email)) => Ok(RowWritten::EmailTaken),
            Err(TransactionError::Refused(Guards::Record)) => Ok(RowWritten::AlreadyDone),
            Err(err) => Err(err.into_fault("importing a row")),
        }
    }

    async fn write_rows(&self, writes: &[RowWrite<'_>]) -> anyhow::Result<bool> {
        let mut items = Transaction::default();
        for write in writes {
            items.extend(self.row_items(write)?);
        }
        match items.run(&self.client).await {
            Ok(()) => Ok(true),
            Err(TransactionError::Refused(_) | TransactionError::Conflict) => Ok(false),
            Err(err) => Err(err.into_fault("importing rows")),
        }
    }

    async fn finish_chunk(&self, chunk: &ImportChunk, counts: &ChunkCounts, now: Timestamp) -> anyhow::Result<bool> {
        let done = Update::builder()
            .table_name(&self.outbox_table)
            .key("pk", text(&chunk.chunk_id))
            .update_expression("SET #s = :done, done_at = :now REMOVE lease_until")
            .condition_expression("#s = :processing AND lease_until = :mine")
            .expression_attribute_names("#s", "status")
            .expression_attribute_values(":done", text("done"))
            .expression_attribute_values(":processing", text("processing"))
            .expression_attribute_values(":now", number(now))
            .expression_attribute_values(":mine", number(chunk.lease_until.unwrap_or(now)))
            .build()?;
        let count = Update::builder()
            .table_name(&self.invitations_table)
            .set_key(Some(key2(import_pk(&chunk.import_id), IMPORT_SK)))
            .update_expression(
                "ADD chunks_done :one, rows_done :rows, contacts_created :contacts, invitations_created :invitations",
            )
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":one", number(1))
            .expression_attribute_values(":rows", number(counts.rows))
            .expression_attribute_values(":contacts", number(counts.contacts_created))
            .expression_attribute_values(":invitations", number(counts.invitations_created))
            .build()?;
        let mut items = Transaction::default();
        items.push(TransactWriteItem::builder().update(done).build(), Guards::Record);
        items.push(TransactWriteItem::builder().update(count).build(), Guards::Nothing);
        match items.run(&self.client).await {
            Ok(()) => Ok(true),
            Err(TransactionError::Refused(Guards::Record)) => Ok(false),
            Err(err) => Err(err.into_fault("finishing an import chunk")),
        }
    }

    async fn count_email(&self, import_id: &ImportId, message_id: &MessageId, sent: bool) -> anyhow::Result<()> {
        let mark = Update::builder()
            .table_name(&self.outbox_table)
            .key("pk", text(message_id))
            .update_expression("SET import_counted = :true")
            .condition_expression("attribute_exists(pk) AND attribute_not_exists(import_counted)")
            .expression_attribute_values(":true", AttributeValue::Bool(true))
            .build()?;
        let counter = if sent { "emails_sent" } else { "emails_failed" };
        let count = Update::builder()
            .table_name(&self.invitations_table)
            .set_key(Some(key2(import_pk(import_id), IMPORT_SK)))
            .update_expression(format!("ADD {counter} :one"))
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":one", number(1))
            .build()?;
        let mut items = Transaction::default();
        items.push(TransactWriteItem::builder().update(mark).build(), Guards::Record);
        items.push(TransactWriteItem::builder().update(count).build(), Guards::Nothing);
        match items.run(&self.client).await {
            // Refused: counted before (a retry), or the import is past its retention.
            Ok(()) | Err(TransactionError::Refused(_)) => Ok(()),
            Err(err) => Err(err.into_fault("counting an imported invitation's email")),
        }
    }
}

fn now_secs() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or_default()
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or_default()
}

/// The longest a run waits for its sending slot: well inside `send-email`'s 15 s timeout, with
/// room for the send and the writes after it.
pub const MAX_SLOT_WAIT_MS: i64 = 8_000;
const PACE_PK: &str = "PACE#email";

/// Paces email to the SES account's sending rate (SES v1 `GetSendQuota`, read once per instance;
/// the same call works on moto and on AWS), with the next free slot kept in the contacts table.
pub struct DynamoPacer {
    client: Client,
    table: String,
    ses: aws_sdk_ses::Client,
    spacing: tokio::sync::OnceCell<Spacing>,
    max_wait_ms: i64,
    /// How long the last reservation write took, to reserve far enough ahead.
    last_write_ms: AtomicI64,
}

/// Reservations one wait may try: each failed one means another run took a slot meanwhile, or
/// this run's write came back too late for its slot.
const SLOT_TRIES: usize = 12;

impl DynamoPacer {
    pub fn new(client: Client, contacts_table: &str, ses: aws_sdk_ses::Client) -> Self {
        DynamoPacer {
            client,
            table: contacts_table.into(),
            ses,
            spacing: tokio::sync::OnceCell::new(),
            max_wait_ms: MAX_SLOT_WAIT_MS,
            last_write_ms: AtomicI64::new(0),
        }
    }

    /// The spacing of sends at the account's rate.
    pub async fn spacing(&self) -> anyhow::Result<Spacing> {
        let spacing = self
            .spacing
            .get_or_try_init(|| async {
                let quota = self.ses.get_send_quota().send().await.map_err(|e| {
                    anyhow::anyhow!("reading the SES sending rate: {}", aws_sdk_ses::error::DisplayErrorContext(&e))
                })?;
                let rate = quota.max_send_rate();
                tracing::info!(max_send_rate = rate, "SES sending rate");
                Ok::<Spacing, anyhow::Error>(Spacing::for_rate(rate))
            })
            .await?;
        Ok(*spacing)
    }

    /// The stored next free slot, from a refused write's old item.
    fn next_of(
        err: &aws_sdk_dynamodb::error::SdkError<UpdateItemError, aws_sdk_dynamodb::config::http::HttpResponse>,
    ) -> Option<i64> {
        let item = err.as_service_error().and_then(|e| match e {
            UpdateItemError::ConditionalCheckFailedException(refused) => refused.item.clone(),
            _ => None,
        })?;
        item.get("next_ms")?.as_n().ok()?.parse().ok()
    }
}

#[async_trait]
impl SendPacer for DynamoPacer {
    async fn wait_for_slot(&self) -> anyhow::Result<bool> {
        let spacing = self.spacing().await?;
        let began = now_ms();
        let mut stored = None;
        for _ in 0..SLOT_TRIES {
            let now = now_ms();
            let lead = pacing::lead_ms(self.last_write_ms.load(Ordering::Relaxed));
            let waited = now - began;
            let (at, next) = match pacing::reserve(stored, now, lead, spacing, self.max_wait_ms - waited) {
                Slot::TooFar { .. } => return Ok(false),
                Slot::At { at, next } => (at, next),
            };
            // The slot at `at` is free if no one holds one later than `at - interval`.
            let result = self
                .client
                .update_item()
                .table_name(&self.table)
                .key("pk", text(PACE_PK))
                .update_expression("SET next_ms = :next")
                .condition_expression("attribute_not_exists(next_ms) OR next_ms <= :at")
                .expression_attribute_values(":next", number(next))
                .expression_attribute_values(":at", number(at))
                .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
                .send()
                .await;
            let back = now_ms();
            self.last_write_ms.store(back - now, Ordering::Relaxed);
            match result {
                Ok(_) => stored = Some(next),
                Err(err) if is_conditional_failure(&err) => {
                    stored = Self::next_of(&err);
                    continue;
                }
                Err(err) => return Err(sdk_error("taking a sending slot", err)),
            }
            tokio::time::sleep(Duration::from_millis((at - back).max(0) as u64)).await;
            if spacing.in_slot(at, now_ms()) {
                return Ok(true);
            }
            // Too late for the slot (a slow write or an overloaded run): it goes unused.
            tracing::debug!(late_ms = now_ms() - at, "sending slot missed; taking another");
        }
        Ok(false)
    }

    async fn back_off(&self) -> anyhow::Result<()> {
        let spacing = self.spacing().await?;
        let now = now_ms();
        let later = pacing::backed_off(None, now, (2 * spacing.interval_ms).max(1_000));
        // Refused: a later back-off is there already.
        let update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", text(PACE_PK))
            .update_expression("SET next_ms = :later")
            .condition_expression("attribute_not_exists(next_ms) OR next_ms < :later")
            .expression_attribute_values(":later", number(later));
        update_unless_moved_on(update, "backing off the sending rate").await
    }
}
