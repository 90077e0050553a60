//! Bulk import of contacts from CSV: the file's rules (columns, limits, each row's checks), how the
//! accepted rows are cut into chunks, and the import's progress. No AWS, no HTTP.
//!
//! Idempotence: every accepted row has a key, the digest of the file's identity (its bytes and
//! whether it invites) and the row's number. The first import to write a row's key creates what
//! the row asks for (a contact, an invitation) in the same transaction; any later import of the
//! same file, or a retried chunk, finds the key and creates nothing again.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::email::Email;
pub use super::ids::ImportId;
use super::ids::InvitationId;
use super::outbox::LEASE_SECS;
use super::secret::digest;
use super::text::{parse_name, parse_phone};
use super::time::Timestamp;

/// The most data rows one import takes.
pub const MAX_ROWS: usize = 10_000;
/// The largest CSV one import takes (2 MiB).
pub const MAX_BYTES: usize = 2 * 1024 * 1024;
/// Rows per chunk (at least): one chunk is one outbox item, processed by one `send-email` run.
pub const CHUNK_ROWS: usize = 100;
/// At most this many chunks, so that the import, all its chunks and its audit entry fit one
/// transaction (100 items).
pub const MAX_CHUNKS: usize = 98;
/// The most web roles one row may name.
pub const MAX_ROLES: usize = 20;
/// The most refused rows an import keeps for its progress page (a DynamoDB item holds 400 KB); the
/// 202 answer lists every one.
pub const MAX_KEPT_REJECTIONS: usize = 1_000;
/// The columns an import may have; `email` is required.
pub const COLUMNS: &[&str] = &["email", "first_name", "last_name", "phone", "roles", "account_id"];

/// One accepted row, as checked (the email in its display form; it parses again).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportRow {
    /// The row's number in the file: 1 is the first data row (the header is row 0).
    pub row: u32,
    pub email: String,
    #[serde(default)]
    pub first_name: String,
    #[serde(default)]
    pub last_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
}

/// A refused row and why, in words for the administrator.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectedRow {
    pub row: u32,
    pub reason: String,
}

/// Why a whole file was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FileRefusal {
    #[error("the file is larger than 2 MiB")]
    TooLarge,
    #[error("the file has more than 10,000 rows")]
    TooManyRows,
    #[error("{0}")]
    Malformed(String),
}

/// A file whose header was fine: the rows to import and those refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsedFile {
    /// Data rows in the file (accepted and refused).
    pub rows: u32,
    pub accepted: Vec<ImportRow>,
    pub rejected: Vec<RejectedRow>,
}

/// What an import of a file is asked to do besides creating contacts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportOptions {
    pub invite: bool,
    /// Days until each invitation expires (the portal's default when `None`).
    pub expires_in_days: Option<u32>,
}

/// The identity of a file's import, which the rows' keys derive from: the file's bytes and whether
/// it invites. The same file imported again finds its rows done; imported again *with*
/// invitations after an import without, it invites (its contacts are reused).
pub fn file_identity(bytes: &[u8], options: &ImportOptions) -> String {
    use sha2::{Digest, Sha256};
    let mut hash = Sha256::new();
    hash.update(bytes);
    hash.update(if options.invite { b"\ninvite" as &[u8] } else { b"\ncontacts" });
    hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// The key of one row of one file (see the module's note).
pub fn row_key(identity: &str, row: u32) -> String {
    digest(&format!("{identity}#{row}"))
}

/// Reads and checks a CSV file: the header names columns among [`COLUMNS`] (email required, each
/// once; case and surrounding spaces do not matter); every data row is checked and refused with
/// its number and reason, or accepted. A repeated email (normalised) is refused naming the row
/// that had it first. A blank line is skipped.
pub fn parse_file(bytes: &[u8]) -> Result<ParsedFile, FileRefusal> {
    if bytes.len() > MAX_BYTES {
        return Err(FileRefusal::TooLarge);
    }
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let mut reader = csv::ReaderBuilder::new().has_headers(true).flexible(true).from_reader(bytes);
    let header = reader
        .headers()
        .map_err(|e| FileRefusal::Malformed(format!("the header row could not be read ({e})")))?
        .clone();
    let columns = columns_of(&header)?;
    let mut parsed = ParsedFile { rows: 0, accepted: Vec::new(), rejected: Vec::new() };
    let mut first_row_of: HashMap<String, u32> = HashMap::new();
    for record in reader.records() {
        let row = parsed.rows + 1;
        if row as usize > MAX_ROWS {
            return Err(FileRefusal::TooManyRows);
        }
        parsed.rows = row;
        let record = match record {
            Ok(record) => record,
            Err(e) => {
                parsed.rejected.push(RejectedRow { row, reason: format!("cannot be read as CSV ({e})") });
                continue;
            }
        };
        match check_row(row, &record, &columns) {
            Ok(accepted) => {
                let normalized = Email::parse(&accepted.email).map(|e| e.normalized().to_string()).unwrap_or_default();
                match first_row_of.get(&normalized) {
                    Some(first) => parsed
                        .rejected
                        .push(RejectedRow { row, reason: format!("email repeats row {first}'s address") }),
                    None => {
                        first_row_of.insert(normalized, row);
                        parsed.accepted.push(accepted);
                    }
                }
            }
            Err(reason) => parsed.rejected.push(RejectedRow { row, reason }),
        }
    }
    Ok(parsed)
}

/// Each known column's position in the header.
fn columns_of(header: &csv::StringRecord) -> Result<HashMap<&'static str, usize>, FileRefusal> {
    let mut columns = HashMap::new();
    for (position, name) in header.iter().enumerate() {
        let name = name.trim().to_ascii_lowercase();
        let Some(known) = COLUMNS.iter().find(|c| **c == name) else {
            return Err(FileRefusal::Malformed(format!(
                "unknown column {name:?} in the header row (columns: {})",
                COLUMNS.join(", ")
            )));
        };
        if columns.insert(*known, position).is_some() {
            return Err(FileRefusal::Malformed(format!("column {known:?} appears twice in the header row")));
        }
    }
    if !columns.contains_key("email") {
        return Err(FileRefusal::Malformed("the header row has no \"email\" column".into()));
    }
    Ok(columns)
}

fn check_row(
    row: u32,
    record: &csv::StringRecord,
    columns: &HashMap<&'static str, usize>,
) -> Result<ImportRow, String> {
    let values: HashMap<&str, &str> =
        columns.iter().map(|(name, i)| (*name, record.get(*i).map(str::trim).unwrap_or(""))).collect();
    check_fields(row, &values).map_err(|reason| shortened(reason, 200))
}

/// A reason cut to `max` characters (it may quote a long value).
fn shortened(reason: String, max: usize) -> String {
    match reason.char_indices().nth(max) {
        Some((end, _)) => format!("{}…", &reason[..end]),
        None => reason,
    }
}

fn check_fields(row: u32, values: &HashMap<&str, &str>) -> Result<ImportRow, String> {
    let value = |name: &str| values.get(name).copied().unwrap_or("");
    let email = Email::parse(value("email")).map_err(|e| format!("email {e}"))?;
    let optional_name = |name: &str| -> Result<String, String> {
        match value(name) {
            "" => Ok(String::new()),
            raw => parse_name(raw).map_err(|e| format!("{name} {e}")),
        }
    };
    let first_name = optional_name("first_name")?;
    let last_name = optional_name("last_name")?;
    let phone = match value("phone") {
        "" => None,
        raw => Some(parse_phone(raw).map_err(|e| format!("phone {e}"))?),
    };
    let mut roles: Vec<String> = Vec::new();
    for raw in value("roles").split(';').map(str::trim).filter(|r| !r.is_empty()) {
        let role = parse_name(raw).map_err(|e| format!("role {raw:?} {e}"))?;
        if role.chars().count() > 64 {
            return Err(format!("role {raw:?} must be at most 64 characters"));
        }
        if !roles.contains(&role) {
            roles.push(role);
        }
    }
    if roles.len() > MAX_ROLES {
        return Err(format!("roles must name at most {MAX_ROLES} roles"));
    }
    let account_id = match value("account_id") {
        "" => None,
        raw => Some(parse_name(raw).map_err(|e| format!("account_id {e}"))?),
    };
    Ok(ImportRow { row, email: email.as_str().to_string(), first_name, last_name, phone, roles, account_id })
}

/// How many rows each chunk gets: [`CHUNK_ROWS`], or more when that would make over [`MAX_CHUNKS`].
pub fn rows_per_chunk(accepted: usize) -> usize {
    CHUNK_ROWS.max(accepted.div_ceil(MAX_CHUNKS))
}

/// The state of a chunk's processing, with the outbox's lease rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChunkStatus {
    Pending,
    /// Leased by one run until `lease_until`; after that another delivery may take it.
    Processing,
    Done,
}

/// The item kind of a chunk in the outbox table (beside the emails' items), which `send-email`
/// tells apart by it.
pub const CHUNK_KIND: &str = "import_chunk";

/// A part of an import's rows, processed by one run of `send-email` (an outbox item of its own, so
/// its stream record triggers that run).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ImportChunk {
    pub chunk_id: String,
    pub import_id: ImportId,
    pub index: u32,
    /// The file's identity (see [`file_identity`]), which the rows' keys derive from.
    pub identity: String,
    pub options: ImportOptions,
    /// Who asked for the import (the invitations' `created_by`).
    pub created_by: String,
    pub rows: Vec<ImportRow>,
    pub status: ChunkStatus,
    pub created_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_until: Option<Timestamp>,
    #[serde(default)]
    pub attempts: u32,
}

/// What a delivery of a chunk's record gets when it tries to claim the chunk (the outbox's rule).
#[derive(Clone, Debug, PartialEq)]
pub enum ChunkClaim {
    /// This run holds the lease (the chunk as claimed, with its `lease_until`).
    Leased(ImportChunk),
    /// Another run holds a live lease: not done, the stream retries later.
    Busy {
        lease_until: Timestamp,
    },
    /// Processed before: nothing to do.
    Done,
    Missing,
}

impl ImportChunk {
    /// The chunk id of chunk `index` of an import: fixed, so a retried request writes the same ids.
    pub fn id_of(import_id: &ImportId, index: u32) -> String {
        format!("IMPORT#{import_id}#{index:03}")
    }

    /// What a claim at `now` gets (the rule the adapters apply).
    pub fn claim_at(&self, now: Timestamp) -> ChunkClaim {
        match (self.status, self.lease_until) {
            (ChunkStatus::Done, _) => ChunkClaim::Done,
            (ChunkStatus::Processing, Some(until)) if until > now => ChunkClaim::Busy { lease_until: until },
            _ => {
                let mut claimed = self.clone();
                claimed.status = ChunkStatus::Processing;
                claimed.lease_until = Some(now + LEASE_SECS);
                claimed.attempts += 1;
                ChunkClaim::Leased(claimed)
            }
        }
    }
}

/// The chunks of an import's accepted rows.
pub fn chunks_of(
    import_id: &ImportId,
    identity: &str,
    options: ImportOptions,
    created_by: &str,
    accepted: &[ImportRow],
    now: Timestamp,
) -> Vec<ImportChunk> {
    let size = rows_per_chunk(accepted.len());
    accepted
        .chunks(size)
        .enumerate()
        .map(|(index, rows)| ImportChunk {
            chunk_id: ImportChunk::id_of(import_id, index as u32),
            import_id: import_id.clone(),
            index: index as u32,
            identity: identity.to_string(),
            options,
            created_by: created_by.to_string(),
            rows: rows.to_vec(),
            status: ChunkStatus::Pending,
            created_at: now,
            lease_until: None,
            attempts: 0,
        })
        .collect()
}

/// What one row's processing did, kept on the row's key so that a retry of its chunk counts it the
/// same and a later import of the same file knows it was done.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowOutcome {
    /// The import that processed the row.
    pub import_id: ImportId,
    pub contact_id: String,
    pub contact_created: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invitation_id: Option<InvitationId>,
}

/// What a chunk adds to its import's counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChunkCounts {
    pub rows: u32,
    pub contacts_created: u32,
    pub invitations_created: u32,
}

impl ChunkCounts {
    /// Counts a row's outcome for `import_id`: what another import (of the same file) did is not
    /// this import's work.
    pub fn count(&mut self, outcome: &RowOutcome, import_id: &ImportId) {
        self.rows += 1;
        if &outcome.import_id == import_id {
            self.contacts_created += u32::from(outcome.contact_created);
            self.invitations_created += u32::from(outcome.invitation_id.is_some());
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImportStatus {
    Running,
    Done,
}

/// An import and its progress.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ImportJob {
    pub import_id: ImportId,
    pub identity: String,
    pub options: ImportOptions,
    pub created_by: String,
    pub created_at: Timestamp,
    pub rows: u32,
    pub accepted: u32,
    /// The first [`MAX_KEPT_REJECTIONS`] refused rows.
    pub rejected: Vec<RejectedRow>,
    /// How many rows were refused in all.
    #[serde(default)]
    pub rejected_count: u32,
    pub chunks: u32,
    #[serde(default)]
    pub chunks_done: u32,
    #[serde(default)]
    pub rows_done: u32,
    #[serde(default)]
    pub contacts_created: u32,
    #[serde(default)]
    pub invitations_created: u32,
    #[serde(default)]
    pub emails_sent: u32,
    #[serde(default)]
    pub emails_failed: u32,
}

impl ImportJob {
    /// Done once every chunk is processed and, while invitation emails are being sent
    /// (`emails_on`), every invitation's email has gone out or failed.
    pub fn status(&self, emails_on: bool) -> ImportStatus {
        let rows_done = self.chunks_done >= self.chunks;
        let emails_done = !emails_on || self.emails_sent + self.emails_failed >= self.invitations_created;
        if rows_done && emails_done { ImportStatus::Done } else { ImportStatus::Running }
    }

    /// Progress as (done, of) steps: each accepted row, and each invitation's email.
    pub fn progress(&self, emails_on: bool) -> (u32, u32) {
        let mut done = self.rows_done;
        let mut of = self.accepted;
        if self.options.invite && emails_on {
            done += (self.emails_sent + self.emails_failed).min(self.invitations_created);
            of += self.invitations_created.max(if self.chunks_done >= self.chunks { 0 } else { self.accepted });
        }
        (done.min(of), of)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> ParsedFile {
        parse_file(text.as_bytes()).expect("a readable file")
    }

    #[test]
    fn rows_are_checked_and_refused_with_their_numbers() {
        let parsed = parse(
            "Email,First_Name,last_name,phone,roles,account_id\n\
             ada@example.com,Ada,Lovelace,+44 20 7946 0000,Customers; Partners,acme\n\
             not-an-email,Bob,B,,,\n\
             \"grace@example.com\",\"Grace, RDML\",Hopper,,,\n\
             eve@example.com,Eve,E,12,,\n\
             ADA@example.com,Ada,Again,,,\n",
        );
        assert_eq!(parsed.rows, 5);
        assert_eq!(parsed.accepted.len(), 2);
        assert_eq!(parsed.accepted[0].roles, ["Customers", "Partners"]);
        assert_eq!(parsed.accepted[0].account_id.as_deref(), Some("acme"));
        assert_eq!(parsed.accepted[1].first_name, "Grace, RDML");
        let rejected: Vec<(u32, &str)> = parsed.rejected.iter().map(|r| (r.row, r.reason.as_str())).collect();
        assert_eq!(rejected[0].0, 2);
        assert!(rejected[0].1.starts_with("email"), "{rejected:?}");
        assert_eq!(rejected[1].0, 4);
        assert!(rejected[1].1.starts_with("phone"), "{rejected:?}");
        assert_eq!(rejected[2], (5, "email repeats row 1's address"));
    }

    #[test]
    fn a_header_without_email_or_with_unknown_columns_refuses_the_file() {
        for text in ["first_name,last_name\nAda,L\n", "email,shoe_size\na@example.com,9\n", "email,email\n", ""] {
            assert!(matches!(parse_file(text.as_bytes()), Err(FileRefusal::Malformed(_))), "{text:?}");
        }
    }

    #[test]
    fn limits_of_rows_and_bytes() {
        let mut text = String::from("email\n");
        for i in 0..MAX_ROWS {
            text.push_str(&format!("p{i}@example.com\n"));
        }
        assert_eq!(parse(&text).accepted.len(), MAX_ROWS);
        text.push_str("one.more@example.com\n");
        assert_eq!(parse_file(text.as_bytes()), Err(FileRefusal::TooManyRows));
        let big = format!("email,first_name\n{}", "a@example.com,x\n".repeat(MAX_BYTES / 16 + 1));
        assert_eq!(parse_file(big.as_bytes()), Err(FileRefusal::TooLarge));
    }

    #[test]
    fn chunks_hold_100_rows_and_never_more_than_98_chunks() {
        assert_eq!(rows_per_chunk(250), 100);
        assert_eq!(rows_per_chunk(9_800), 100);
        assert_eq!(rows_per_chunk(10_000), 103);
        assert_eq!(10_000usize.div_ceil(rows_per_chunk(10_000)), 98);
        let rows: Vec<ImportRow> = (1..=250)
            .map(|row| ImportRow {
                row,
                email: format!("p{row}@example.com"),
                first_name: String::new(),
                last_name: String::new(),
                phone: None,
                roles: vec![],
                account_id: None,
            })
            .collect();
        let id = ImportId("i".into());
        let options = ImportOptions { invite: false, expires_in_days: None };
        let chunks = chunks_of(&id, "f", options, "admin", &rows, Timestamp::from_secs(0));
        assert_eq!(chunks.iter().map(|c| c.rows.len()).collect::<Vec<_>>(), [100, 100, 50]);
        assert_eq!(chunks[2].chunk_id, "IMPORT#i#002");
    }

    #[test]
    fn the_same_file_has_the_same_row_keys_unless_it_now_invites() {
        let plain = ImportOptions { invite: false, expires_in_days: None };
        let inviting = ImportOptions { invite: true, expires_in_days: Some(3) };
        assert_eq!(file_identity(b"email\na@b.c\n", &plain), file_identity(b"email\na@b.c\n", &plain));
        assert_ne!(file_identity(b"email\na@b.c\n", &plain), file_identity(b"email\na@b.c\n", &inviting));
        assert_ne!(row_key("f", 1), row_key("f", 2));
    }

    #[test]
    fn only_this_imports_own_work_is_counted() {
        let mine = ImportId("mine".into());
        let mut counts = ChunkCounts::default();
        let outcome = |import: &str| RowOutcome {
            import_id: ImportId(import.into()),
            contact_id: "c".into(),
            contact_created: true,
            invitation_id: Some("i".into()),
        };
        counts.count(&outcome("mine"), &mine);
        counts.count(&outcome("earlier"), &mine);
        assert_eq!(counts, ChunkCounts { rows: 2, contacts_created: 1, invitations_created: 1 });
    }
}
