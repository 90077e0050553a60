//! Bulk import of contacts (the Dynamics "bulk workflow"): a CSV file is checked at once, and its
//! accepted rows are imported afterwards, chunk by chunk, by `send-email` (each chunk is an outbox
//! item whose stream record triggers one run). Existing contacts are reused by normalised email;
//! with `invite`, each row gets a single invitation whose email goes out paced to the SES rate.
//!
//! Every row is written once per file (see [`crate::domain::import`]): a retried or duplicated chunk,
//! or the same file imported again, creates nothing twice.

use std::collections::HashMap;

use crate::domain::audit::{AuditEvent, SourceAddress};
use crate::domain::contact::{Contact, NewContact};
use crate::domain::email::Email;
use crate::domain::event::{Fact, PortalEvent};
use crate::domain::ids::{ContactId, InvitationId, MessageId};
use crate::domain::import::{
    ChunkClaim, ChunkCounts, FileRefusal, ImportChunk, ImportId, ImportJob, ImportOptions, ImportRow,
    MAX_KEPT_REJECTIONS, RejectedRow, RowOutcome, chunks_of, file_identity, parse_file, row_key,
};
use crate::domain::invitation::{Delivery, Invitation, InvitationCode, InvitationType};
use crate::domain::outbox::BUSY_WAIT_SECS;
use crate::error::PortalError;
use crate::ports::{RowWrite, RowWritten, UsesClock, UsesImports, UsesSettings};

use super::invite::invitation_message;

/// An import as accepted: the stored job, and every refused row (the job keeps the first ones).
pub struct Started {
    pub job: ImportJob,
    pub rejected: Vec<RejectedRow>,
}

/// Checks the file and stores the import with its chunks; the rows are imported afterwards.
pub async fn start(
    portal: &(impl UsesImports + UsesClock + UsesSettings),
    source: &SourceAddress,
    admin: &Contact,
    file: &[u8],
    options: ImportOptions,
) -> Result<Started, PortalError> {
    let parsed = parse_file(file).map_err(|refusal| match refusal {
        FileRefusal::TooLarge | FileRefusal::TooManyRows => PortalError::PayloadTooLarge,
        FileRefusal::Malformed(reason) => PortalError::field("file", reason),
    })?;
    let now = portal.clock().now();
    let import_id = ImportId::generate();
    let identity = file_identity(file, &options);
    let chunks = chunks_of(&import_id, &identity, options, &admin.contact_id, &parsed.accepted, now);
    let job = ImportJob {
        import_id,
        identity,
        options,
        created_by: admin.contact_id.to_string(),
        created_at: now,
        rows: parsed.rows,
        accepted: parsed.accepted.len() as u32,
        rejected: parsed.rejected.iter().take(MAX_KEPT_REJECTIONS).cloned().collect(),
        rejected_count: parsed.rejected.len() as u32,
        chunks: chunks.len() as u32,
        chunks_done: 0,
        rows_done: 0,
        contacts_created: 0,
        invitations_created: 0,
        emails_sent: 0,
        emails_failed: 0,
    };
    let entry = super::audit_entry(portal, AuditEvent::ImportStarted, Some(&admin.contact_id), None, source)
        .with("import_id", job.import_id.to_string())
        .with("rows", job.accepted.to_string());
    portal.imports().create(&job, &chunks, &[entry.into()]).await?;
    tracing::info!(
        audit = AuditEvent::ImportStarted.as_str(),
        import_id = %job.import_id,
        rows = job.rows,
        accepted = job.accepted,
        by = %admin.contact_id,
        source_ip = %source,
        "audit"
    );
    Ok(Started { job, rejected: parsed.rejected })
}

/// Ids are UUIDs: a longer path segment names nothing.
const MAX_IMPORT_ID: usize = 64;

/// The import `id` as it stands, or `not_found`.
pub async fn progress(portal: &impl UsesImports, id: &str) -> Result<ImportJob, PortalError> {
    if id.len() > MAX_IMPORT_ID {
        return Err(PortalError::NotFound);
    }
    portal.imports().get(&ImportId(id.to_string())).await?.ok_or(PortalError::NotFound)
}

/// What a delivery of a chunk's record did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChunkOutcome {
    /// Processed now: its counts are added to the import.
    Processed(ChunkCounts),
    /// Processed before (a duplicate delivery), or no longer kept.
    Skipped,
}

/// Processes one chunk under a lease: a run that fails gives the lease back and is reported for a
/// retry, which finds the rows already written and only counts them.
pub async fn process_chunk(
    portal: &(impl UsesImports + UsesClock + UsesSettings),
    chunk_id: &str,
) -> anyhow::Result<ChunkOutcome> {
    let mut waited = false;
    let (chunk, now) = loop {
        let now = portal.clock().now();
        match portal.imports().claim_chunk(chunk_id, now).await? {
            ChunkClaim::Leased(chunk) => break (chunk, now),
            // As an email's lease (`usecases::delivery`): waited out once, within the run.
            ChunkClaim::Busy { lease_until } if !waited => {
                waited = true;
                portal.clock().wait((lease_until - now).clamp(1, BUSY_WAIT_SECS) as u64).await;
            }
            ChunkClaim::Busy { lease_until } => {
                anyhow::bail!("another run holds the chunk until {}; retry later", lease_until.as_secs())
            }
            ChunkClaim::Done | ChunkClaim::Missing => return Ok(ChunkOutcome::Skipped),
        }
    };
    let lease_until = chunk.lease_until.unwrap_or(now);
    let finished = match import_rows(portal, &chunk).await {
        Ok(counts) => {
            portal.imports().finish_chunk(&chunk, &counts, portal.clock().now()).await.map(|done| (counts, done))
        }
        Err(err) => Err(err),
    };
    match finished {
        Ok((counts, true)) => Ok(ChunkOutcome::Processed(counts)),
        Ok((_, false)) => {
            tracing::warn!(chunk_id, "the chunk's lease ended before it was done; another run counts it");
            Ok(ChunkOutcome::Skipped)
        }
        Err(err) => {
            if let Err(release) = portal.imports().release_chunk(chunk_id, lease_until).await {
                tracing::warn!(chunk_id, error = format!("{release:#}"), "chunk lease not given back; it will expire");
            }
            Err(err)
        }
    }
}

/// Writes each row not written before and counts what this import did.
async fn import_rows(
    portal: &(impl UsesImports + UsesClock + UsesSettings),
    chunk: &ImportChunk,
) -> anyhow::Result<ChunkCounts> {
    let keys: Vec<String> = chunk.rows.iter().map(|row| row_key(&chunk.identity, row.row)).collect();
    let done = portal.imports().row_outcomes(&keys).await?;
    let emails: Vec<Email> = chunk
        .rows
        .iter()
        .zip(&keys)
        .filter(|(_, key)| !done.contains_key(*key))
        .filter_map(|(row, _)| Email::parse(&row.email).ok())
        .collect();
    let mut existing = match emails.is_empty() {
        true => HashMap::new(),
        false => portal.imports().contacts_by_email(&emails).await?,
    };
    let mut counts = ChunkCounts::default();
    let mut pending = Vec::new();
    for (row, key) in chunk.rows.iter().zip(&keys) {
        match done.get(key) {
            Some(outcome) => counts.count(outcome, &chunk.import_id),
            None => pending.push((row, key)),
        }
    }
    // Rows go in groups, one transaction each (at most 100 items: a row is its key, a new
    // contact and its email guard, its ContactImported event, and an invitation with its code,
    // email and InvitationCreated event); a group refused for one row goes row by row.
    let items_per_row = 4 + if chunk.options.invite { 4 } else { 0 };
    for group in pending.chunks(100 / items_per_row) {
        let now = portal.clock().now();
        let mut planned = Vec::with_capacity(group.len());
        for (row, _) in group {
            let email =
                Email::parse(&row.email).map_err(|e| anyhow::anyhow!("row {} no longer parses: {e}", row.row))?;
            planned.push(plan_row(portal, chunk, row, &email, &existing, now));
        }
        let writes: Vec<RowWrite<'_>> = planned.iter().zip(group).map(|(plan, (_, key))| plan.write(key)).collect();
        if portal.imports().write_rows(&writes).await? {
            for plan in &planned {
                plan.audit(chunk);
                counts.count(&plan.outcome, &chunk.import_id);
            }
            continue;
        }
        for (row, key) in group {
            let outcome = import_row(portal, chunk, row, key, &mut existing).await?;
            counts.count(&outcome, &chunk.import_id);
        }
    }
    Ok(counts)
}

/// What a row will write: its contact (reused, or new) and, if asked, its invitation.
struct PlannedRow {
    contact: Contact,
    created: bool,
    invitation: Option<(Invitation, crate::domain::outbox::OutboxMessage)>,
    outcome: RowOutcome,
    /// The portal events the row's write commits: `ContactImported`, and `InvitationCreated`.
    events: Vec<PortalEvent>,
}

impl PlannedRow {
    fn write<'a>(&'a self, key: &'a str) -> RowWrite<'a> {
        RowWrite {
            key,
            outcome: &self.outcome,
            new_contact: self.created.then_some(&self.contact),
            invitation: self.invitation.as_ref().map(|(invitation, message)| (invitation, message)),
            events: &self.events,
        }
    }

    fn audit(&self, chunk: &ImportChunk) {
        if self.created {
            tracing::info!(audit = AuditEvent::ContactImported.as_str(), contact_id = %self.contact.contact_id, import_id = %chunk.import_id, "audit");
        }
    }
}

fn plan_row(
    portal: &impl UsesSettings,
    chunk: &ImportChunk,
    row: &ImportRow,
    email: &Email,
    existing: &HashMap<String, Contact>,
    now: crate::domain::time::Timestamp,
) -> PlannedRow {
    let (contact, created) = match existing.get(email.normalized()) {
        Some(contact) => (contact.clone(), false),
        None => (new_contact(row, email, now), true),
    };
    let invitation = chunk.options.invite.then(|| invitation_for(portal, chunk, row, &contact, now));
    let outcome = RowOutcome {
        import_id: chunk.import_id.clone(),
        contact_id: contact.contact_id.to_string(),
        contact_created: created,
        invitation_id: invitation.as_ref().map(|(invitation, _)| invitation.invitation_id.clone()),
    };
    let mut events = vec![
        Fact::ContactImported { contact_id: contact.contact_id.clone(), import_id: chunk.import_id.to_string() }
            .at(now),
    ];
    if let Some((invitation, _)) = &invitation {
        events.push(
            Fact::InvitationCreated {
                invitation_id: invitation.invitation_id.clone(),
                contact_id: contact.contact_id.clone(),
            }
            .at(now),
        );
    }
    PlannedRow { contact, created, invitation, outcome, events }
}

/// Imports one row: its contact (reused or created) and, if asked, its invitation, written with
/// the row's key in one transaction.
async fn import_row(
    portal: &(impl UsesImports + UsesClock + UsesSettings),
    chunk: &ImportChunk,
    row: &ImportRow,
    key: &str,
    existing: &mut HashMap<String, Contact>,
) -> anyhow::Result<RowOutcome> {
    let email = Email::parse(&row.email).map_err(|e| anyhow::anyhow!("row {} no longer parses: {e}", row.row))?;
    // Twice at most: a contact created by someone else meanwhile is reused on the second try.
    for _ in 0..2 {
        let plan = plan_row(portal, chunk, row, &email, existing, portal.clock().now());
        match portal.imports().write_row(&plan.write(key)).await? {
            RowWritten::Written => {
                plan.audit(chunk);
                return Ok(plan.outcome);
            }
            RowWritten::AlreadyDone => {
                let stored = portal.imports().row_outcomes(&[key.to_string()]).await?;
                return stored.get(key).cloned().ok_or_else(|| anyhow::anyhow!("row {}'s key vanished", row.row));
            }
            RowWritten::EmailTaken => {
                existing.extend(portal.imports().contacts_by_email(std::slice::from_ref(&email)).await?);
            }
        }
    }
    anyhow::bail!("row {}: its address was taken and released meanwhile; retry", row.row)
}

fn new_contact(row: &ImportRow, email: &Email, now: crate::domain::time::Timestamp) -> Contact {
    let mut contact = Contact::new(
        NewContact {
            email: email.clone(),
            first_name: row.first_name.clone(),
            last_name: row.last_name.clone(),
            username: None,
            phone: row.phone.clone(),
            // Without an invitation the row's roles are the contact's (with one, the invitation
            // gives them on redemption, as for any invitation).
            roles: if row.roles.is_empty() { Vec::new() } else { row.roles.clone() },
            password_hash: None,
        },
        now,
    );
    contact.account_id = row.account_id.clone();
    contact
}

/// A single invitation for the row's contact, with the email carrying its code.
fn invitation_for(
    portal: &impl UsesSettings,
    chunk: &ImportChunk,
    row: &ImportRow,
    contact: &Contact,
    now: crate::domain::time::Timestamp,
) -> (Invitation, crate::domain::outbox::OutboxMessage) {
    let days = chunk.options.expires_in_days.unwrap_or(portal.settings().invitation_expiry_days);
    let code = InvitationCode::generate();
    let invitation = Invitation {
        invitation_id: InvitationId::generate(),
        code_digest: code.digest(),
        kind: InvitationType::Single,
        contact_id: contact.contact_id.clone(),
        email: contact.email.to_string(),
        first_name: contact.first_name.clone(),
        last_name: contact.last_name.clone(),
        max_redemptions: 1,
        redemptions: 0,
        expires_at: now + i64::from(days) * 86_400,
        revoked: false,
        roles: row.roles.clone(),
        account_id: row.account_id.clone(),
        redirect_path: None,
        created_at: now,
        created_by: ContactId::from(chunk.created_by.as_str()),
        message_id: MessageId::generate(),
        delivery: Delivery::Pending,
        delivery_error: None,
        delivered_at: None,
    };
    let mut message = invitation_message(&invitation, &code, now);
    message.import_id = Some(chunk.import_id.clone());
    (invitation, message)
}
