//! Bulk imports on the real DynamoDB API (moto): chunks in the outbox table, rows written once per
//! file, duplicated chunk deliveries, and invitation emails paced to the SES sending rate (SES v1
//! `GetSendQuota` on the tests' moto: 14 emails a second, SES's production default).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use portal::Portal;
use portal::domain::contact::Contact;
use portal::domain::email::Email;
use portal::domain::ids::{ContactId, MessageId};
use portal::domain::import::{ChunkClaim, ChunkCounts, ImportChunk, ImportId, ImportJob, ImportOptions, RowOutcome};
use portal::domain::outbox::{MessageKind, OutboxMessage};
use portal::domain::time::Timestamp;
use portal::handlers::send_email;
use portal::ports::{ImportStore, Mailer, OutgoingEmail, RowWrite, RowWritten, SendError};
use portal::usecases::import::{self, ChunkOutcome};
use portal_testkit::from;
use portal_testkit::moto::{Tables, aws_portal, fresh_tables};
use serde_json::json;

fn people(n: usize) -> String {
    let mut csv = String::from("email,first_name,last_name\n");
    for i in 1..=n {
        csv.push_str(&format!("person{i}@example.com,Person,{i}\n"));
    }
    csv
}

async fn start(portal: &Portal, csv: &str, invite: bool) -> ImportJob {
    let options = ImportOptions { invite, expires_in_days: None };
    import::start(portal, &from("198.51.100.7"), &portal_testkit::administrator(), csv.as_bytes(), options)
        .await
        .unwrap()
        .job
}

async fn process_all(portal: &Portal, job: &ImportJob) {
    for index in 0..job.chunks {
        let outcome = import::process_chunk(portal, &ImportChunk::id_of(&job.import_id, index)).await.unwrap();
        assert!(matches!(outcome, ChunkOutcome::Processed(_)), "{outcome:?}");
    }
}

/// Items of `table` whose `pk` starts with `prefix`.
async fn count(tables: &Tables, table: &str, prefix: &str) -> usize {
    let mut found = 0;
    let mut start = None;
    loop {
        let page = tables.client.scan().table_name(table).set_exclusive_start_key(start.take()).send().await.unwrap();
        found += page
            .items()
            .iter()
            .filter(|item| item.get("pk").and_then(|v| v.as_s().ok()).is_some_and(|pk| pk.starts_with(prefix)))
            .count();
        match page.last_evaluated_key {
            Some(key) => start = Some(key),
            None => return found,
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_same_file_imported_twice_creates_nothing_new() {
    let tables = fresh_tables();
    let portal = tables.portal(&[]);
    let csv = people(30);
    let first = start(&portal, &csv, true).await;
    process_all(&portal, &first).await;
    let done = portal.imports.get(&first.import_id).await.unwrap().unwrap();
    assert_eq!((done.contacts_created, done.invitations_created, done.rows_done), (30, 30, 30));
    let contacts = count(&tables, &tables.contacts, "CONTACT#").await;
    let invitations = count(&tables, &tables.invitations, "INVITATION#").await;
    let emails = portal.outbox.list().await.unwrap().iter().filter(|m| m.kind == MessageKind::Invitation).count();
    assert_eq!((contacts, invitations, emails), (30, 30, 30));

    let second = start(&portal, &csv, true).await;
    process_all(&portal, &second).await;
    let again = portal.imports.get(&second.import_id).await.unwrap().unwrap();
    assert_eq!((again.contacts_created, again.invitations_created, again.rows_done), (0, 0, 30));
    assert_eq!(count(&tables, &tables.contacts, "CONTACT#").await, contacts);
    assert_eq!(count(&tables, &tables.invitations, "INVITATION#").await, invitations);
    let emails_now = portal.outbox.list().await.unwrap().iter().filter(|m| m.kind == MessageKind::Invitation).count();
    assert_eq!(emails_now, emails, "no second invitation email for a row of the same file");

    // The same file without invitations is another file's identity: its contacts are reused.
    let plain = start(&portal, &csv, false).await;
    process_all(&portal, &plain).await;
    assert_eq!(count(&tables, &tables.contacts, "CONTACT#").await, contacts);
    assert_eq!(portal.imports.get(&plain.import_id).await.unwrap().unwrap().contacts_created, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_250_row_import_is_three_chunks_and_a_duplicated_chunk_creates_nothing_twice() {
    let tables = fresh_tables();
    let portal = tables.portal(&[]);
    let job = start(&portal, &people(250), false).await;
    assert_eq!(job.chunks, 3);
    assert_eq!(count(&tables, &tables.outbox, &format!("IMPORT#{}#", job.import_id)).await, 3);
    assert!(portal.outbox.list().await.unwrap().is_empty(), "operators' outbox list shows emails only");

    // Two deliveries of the first chunk's record at once: one processes it, the other is told
    // to retry later (the lease), and a later duplicate finds it done.
    let first = ImportChunk::id_of(&job.import_id, 0);
    let (a, b) = tokio::join!(import::process_chunk(&portal, &first), import::process_chunk(&portal, &first));
    let processed = [&a, &b].iter().filter(|r| matches!(r, Ok(ChunkOutcome::Processed(_)))).count();
    assert_eq!(processed, 1, "{a:?} {b:?}");
    assert_eq!(import::process_chunk(&portal, &first).await.unwrap(), ChunkOutcome::Skipped);
    for index in 1..3 {
        import::process_chunk(&portal, &ImportChunk::id_of(&job.import_id, index)).await.unwrap();
        import::process_chunk(&portal, &ImportChunk::id_of(&job.import_id, index)).await.unwrap();
    }
    assert_eq!(count(&tables, &tables.contacts, "CONTACT#").await, 250);
    assert_eq!(count(&tables, &tables.contacts, "EMAIL#").await, 250);
    let done = portal.imports.get(&job.import_id).await.unwrap().unwrap();
    assert_eq!((done.chunks_done, done.rows_done, done.contacts_created), (3, 250, 250));
    assert_eq!(done.status(true), portal::domain::import::ImportStatus::Done);
}

/// Records when each email was handed over.
#[derive(Default)]
struct TimedMailer(Mutex<Vec<(Instant, String)>>);

#[async_trait]
impl Mailer for TimedMailer {
    async fn send(&self, email: &OutgoingEmail) -> Result<(), SendError> {
        self.0.lock().unwrap().push((Instant::now(), email.to.clone()));
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn invitation_emails_never_go_faster_than_the_accounts_sending_rate() {
    let tables = fresh_tables();
    let mut portal = aws_portal(&tables, &portal::aws::SdkHooks::default(), &[]).await;
    let mailer = Arc::new(TimedMailer::default());
    portal.mailer = mailer.clone();
    let portal = Arc::new(portal);
    let job = start(&portal, &people(4), true).await;
    process_all(&portal, &job).await;
    let messages: Vec<OutboxMessage> =
        portal.outbox.list().await.unwrap().into_iter().filter(|m| m.kind == MessageKind::Invitation).collect();
    assert_eq!(messages.len(), 4);
    // One stream batch of the four, sent concurrently as send-email does.
    let records: Vec<serde_json::Value> = messages
        .iter()
        .enumerate()
        .map(|(i, message)| {
            let item: serde_dynamo::Item = serde_dynamo::to_item(message).unwrap();
            let mut image = serde_json::to_value(item).unwrap();
            image["pk"] = json!({"S": message.message_id});
            json!({"eventID": format!("e{i}"), "eventName": "INSERT", "eventVersion": "1.1",
                   "eventSource": "aws:dynamodb", "awsRegion": "us-east-1",
                   "eventSourceARN": "arn:aws:dynamodb:us-east-1:123456789012:table/o/stream/x",
                   "dynamodb": {"Keys": {"pk": {"S": message.message_id}}, "NewImage": image,
                                "SequenceNumber": format!("{i}"), "SizeBytes": 256, "StreamViewType": "NEW_IMAGE"}})
        })
        .collect();
    let event: aws_lambda_events::event::dynamodb::Event =
        serde_json::from_value(json!({ "Records": records })).unwrap();
    let response = send_email::handle(&portal, event).await;
    assert!(response.batch_item_failures.is_empty());
    let mut sends: Vec<Instant> = mailer.0.lock().unwrap().iter().map(|(at, _)| *at).collect();
    sends.sort();
    assert_eq!(sends.len(), 4);
    // The tests' moto reports SES's production rate (MaxSendRate 14): never two sends closer than
    // a fourteenth of a second.
    let interval = Duration::from_secs_f64(1.0 / f64::from(portal_testkit::moto::SES_MAX_SEND_RATE));
    for pair in sends.windows(2) {
        assert!(
            pair[1] - pair[0] >= interval,
            "sent {:?} apart (the rate's interval: {interval:?})",
            pair[1] - pair[0]
        );
    }
    let counted = portal.imports.get(&job.import_id).await.unwrap().unwrap();
    assert_eq!(counted.emails_sent, 4);
    assert_eq!(counted.status(true), portal::domain::import::ImportStatus::Done);
}

/// The import store, except that before the first group write an address of that group is taken
/// by a contact created elsewhere (after the chunk looked its rows' addresses up).
struct TakenMeanwhile {
    inner: Arc<dyn ImportStore>,
    contacts: Arc<dyn portal::ports::ContactStore>,
    taken: Mutex<bool>,
}

#[async_trait]
impl ImportStore for TakenMeanwhile {
    async fn create(
        &self,
        job: &ImportJob,
        chunks: &[ImportChunk],
        queued: &[portal::ports::Queued],
    ) -> anyhow::Result<()> {
        self.inner.create(job, chunks, queued).await
    }
    async fn get(&self, import_id: &ImportId) -> anyhow::Result<Option<ImportJob>> {
        self.inner.get(import_id).await
    }
    async fn claim_chunk(&self, chunk_id: &str, now: Timestamp) -> anyhow::Result<ChunkClaim> {
        self.inner.claim_chunk(chunk_id, now).await
    }
    async fn release_chunk(&self, chunk_id: &str, lease_until: Timestamp) -> anyhow::Result<()> {
        self.inner.release_chunk(chunk_id, lease_until).await
    }
    async fn row_outcomes(&self, keys: &[String]) -> anyhow::Result<HashMap<String, RowOutcome>> {
        self.inner.row_outcomes(keys).await
    }
    async fn contacts_by_email(&self, emails: &[Email]) -> anyhow::Result<HashMap<String, Contact>> {
        self.inner.contacts_by_email(emails).await
    }
    async fn write_row(&self, write: &RowWrite<'_>) -> anyhow::Result<RowWritten> {
        self.inner.write_row(write).await
    }
    async fn write_rows(&self, writes: &[RowWrite<'_>]) -> anyhow::Result<bool> {
        let first_time = !std::mem::replace(&mut *self.taken.lock().unwrap(), true);
        if first_time && let Some(taken) = writes.get(1).and_then(|w| w.new_contact) {
            let mut elsewhere = taken.clone();
            elsewhere.contact_id = ContactId::generate();
            elsewhere.first_name = "Registered".into();
            self.contacts.create(&elsewhere).await?;
        }
        self.inner.write_rows(writes).await
    }
    async fn finish_chunk(&self, chunk: &ImportChunk, counts: &ChunkCounts, now: Timestamp) -> anyhow::Result<bool> {
        self.inner.finish_chunk(chunk, counts, now).await
    }
    async fn count_email(&self, import_id: &ImportId, message_id: &MessageId, sent: bool) -> anyhow::Result<()> {
        self.inner.count_email(import_id, message_id, sent).await
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_group_refused_for_an_address_taken_meanwhile_is_written_row_by_row_reusing_that_contact() {
    let tables = fresh_tables();
    let base = Arc::try_unwrap(tables.portal(&[])).ok().expect("the only handle");
    let store = Arc::new(TakenMeanwhile {
        inner: base.imports.clone(),
        contacts: base.contacts.clone(),
        taken: Mutex::new(false),
    });
    let portal = Portal { imports: store, ..base };
    let job = start(&portal, &people(5), true).await;
    process_all(&portal, &job).await;

    let done = portal.imports.get(&job.import_id).await.unwrap().unwrap();
    assert_eq!(
        (done.rows_done, done.contacts_created, done.invitations_created),
        (5, 4, 5),
        "every row imported once, the taken address's contact reused"
    );
    // Five contacts in all: none twice, and the one created elsewhere kept its name.
    assert_eq!(count(&tables, &tables.contacts, "CONTACT#").await, 5);
    let login = portal::domain::contact::Login::of_email(&Email::parse("person2@example.com").unwrap());
    let reused = portal.contacts.find_by_login(&login).await.unwrap().unwrap();
    assert_eq!(reused.first_name, "Registered");
    let invited: Vec<String> = portal
        .outbox
        .list()
        .await
        .unwrap()
        .into_iter()
        .filter(|m| m.kind == MessageKind::Invitation)
        .map(|m| m.to.to_string())
        .collect();
    assert_eq!(invited.len(), 5, "{invited:?}");
    assert!(invited.iter().any(|to| to == "person2@example.com"));
    // Processing the chunk again finds every row done.
    let again = import::process_chunk(&portal, &ImportChunk::id_of(&job.import_id, 0)).await.unwrap();
    assert!(matches!(again, ChunkOutcome::Skipped), "{again:?}");
    assert_eq!(count(&tables, &tables.contacts, "CONTACT#").await, 5);
}
