//! How long a bulk import of 10,000 rows takes on moto, and how many DynamoDB calls it costs: the
//! request (checking the file, storing the import and its chunks) and the chunks' processing as
//! `send-email` does it (stream batches of 10 chunks, processed concurrently), then the same file
//! again (every row found done). Without invitations: their emails go out at the SES rate (the tests' moto:
//! 14 a second, SES's default), which is not the import's cost. Counted by an SDK interceptor.
//!
//! Run with `make bench` (or `cargo bench -p portal --bench imports`).

#[path = "common/calls.rs"]
mod calls;

use calls::CallCounter;

use std::sync::Arc;
use std::time::Instant;

use portal::Portal;
use portal::domain::import::{ImportChunk, ImportJob, ImportOptions};
use portal::usecases::import;

/// The rows of the file (`PORTAL_BENCH_IMPORT_ROWS` for a quicker look; at most 10,000).
fn rows() -> usize {
    std::env::var("PORTAL_BENCH_IMPORT_ROWS").ok().and_then(|n| n.parse().ok()).unwrap_or(10_000)
}
/// The stream's batch size (infra/template.yaml): send-email processes a batch's records at once.
const BATCH: usize = 10;

fn counted_portal(counter: &CallCounter) -> Arc<Portal> {
    let tables = portal_testkit::moto::fresh_tables();
    let client = counter.client(tables.endpoint);
    Arc::new(Portal::on_dynamodb(tables.settings(&[]), &client, portal_testkit::edges_in_memory()))
}

/// Imports the file and processes its chunks; prints the time and calls of each phase.
async fn run(portal: &Arc<Portal>, counter: &CallCounter, csv: &str, label: &str) -> ImportJob {
    let options = ImportOptions { invite: false, expires_in_days: None };
    let started = Instant::now();
    let job = import::start(
        portal,
        &portal_testkit::from("198.51.100.7"),
        &portal_testkit::administrator(),
        csv.as_bytes(),
        options,
    )
    .await
    .expect("the import is accepted")
    .job;
    let request = started.elapsed();
    let (request_calls, request_detail) = counter.take();
    println!("{label}: {} rows in {} chunks", job.accepted, job.chunks);
    println!(
        "  request (check, store import and chunks): {:>7.2} s  {request_calls:>6} calls ({request_detail})",
        request.as_secs_f64()
    );
    let started = Instant::now();
    let ids: Vec<String> = (0..job.chunks).map(|i| ImportChunk::id_of(&job.import_id, i)).collect();
    for batch in ids.chunks(BATCH) {
        let runs = batch.iter().map(|id| import::process_chunk(portal, id));
        for outcome in futures::future::join_all(runs).await {
            outcome.expect("a chunk is processed");
        }
    }
    let processing = started.elapsed();
    let (processing_calls, processing_detail) = counter.take();
    let done = portal.imports.get(&job.import_id).await.unwrap().unwrap();
    counter.take();
    println!("  {} rows imported, {} contacts created", done.rows_done, done.contacts_created);
    println!(
        "  chunks (as send-email):                   {:>7.2} s  {processing_calls:>6} calls ({processing_detail})",
        processing.as_secs_f64()
    );
    println!(
        "  per row: {:.2} ms, {:.3} DynamoDB calls",
        processing.as_secs_f64() * 1000.0 / rows() as f64,
        f64::from(processing_calls) / rows() as f64
    );
    done
}

#[tokio::main]
async fn main() {
    let mut csv = String::from("email,first_name,last_name,phone,roles\n");
    for i in 1..=rows() {
        csv.push_str(&format!("bench.person{i}@example.com,Bench,Person {i},+44 20 7946 {i:04},Customers\n"));
    }
    println!("bulk import of {} rows ({} bytes) on moto, without invitations:", rows(), csv.len());
    let counter = CallCounter::default();
    let portal = counted_portal(&counter);
    run(&portal, &counter, &csv, "first import").await;
    run(&portal, &counter, &csv, "the same file again").await;
}
