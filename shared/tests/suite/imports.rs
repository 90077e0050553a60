//! Handler tests for bulk imports (`POST /admin/imports`, `GET /admin/imports/{id}`) and their
//! processing by `send-email`, on in-memory adapters.

use std::sync::atomic::Ordering;

use portal::domain::import::ImportId;
use portal::domain::outbox::{MessageKind, MessageStatus, OutboxMessage};
use portal::handlers::admin::CreateInvitation;
use portal::handlers::register::Register;
use portal::handlers::send_email;
use portal::ports::SendError;
use portal::usecases::import::{ChunkOutcome, process_chunk};
use portal_testkit::*;
use serde_json::{Value, json};

async fn with_admin(overrides: &[(&str, &str)]) -> (TestPortal, String) {
    let t = test_portal(overrides);
    let response = t.send(&Register, Req::post("/register").json(registration("admin@example.com"))).await;
    assert_eq!(response.status(), 201);
    let token = cookie_value(&response, "portal_session").unwrap();
    let mut admin = t.contacts.all().into_iter().next().unwrap();
    admin.roles = vec!["Administrators".into()];
    t.contacts.put(admin);
    (t, token)
}

fn csv_post(path: &str, token: &str, csv: &str) -> Req {
    Req::post(path).raw("text/csv", csv).cookie("portal_session", token)
}

async fn import(t: &TestPortal, token: &str, path: &str, csv: &str) -> Value {
    let response = t.send(&CreateInvitation, csv_post(path, token, csv)).await;
    assert_eq!(response.status(), 202, "{}", body_text(&response));
    body_json(&response)
}

fn people(n: usize) -> String {
    let mut csv = String::from("email,first_name,last_name\n");
    for i in 1..=n {
        csv.push_str(&format!("person{i}@example.com,Person,{i}\n"));
    }
    csv
}

/// A stream record of an outbox item (a chunk's or a message's) as Lambda delivers it.
fn record(image: Value, sequence: u64) -> Value {
    json!({
        "eventID": format!("event-{sequence}"), "eventName": "INSERT", "eventVersion": "1.1",
        "eventSource": "aws:dynamodb", "awsRegion": "us-east-1",
        "eventSourceARN": "arn:aws:dynamodb:us-east-1:123456789012:table/portal-outbox/stream/2026-11-27T00:00:00.000",
        "dynamodb": {"ApproximateCreationDateTime": 1_800_000_000.0, "Keys": {"pk": image["pk"].clone()},
                     "NewImage": image, "SequenceNumber": sequence.to_string(), "SizeBytes": 256,
                     "StreamViewType": "NEW_IMAGE"}
    })
}

fn chunk_record(chunk_id: &str, sequence: u64) -> Value {
    record(json!({"pk": {"S": chunk_id}, "kind": {"S": "import_chunk"}}), sequence)
}

fn message_record(message: &OutboxMessage, sequence: u64) -> Value {
    let item: serde_dynamo::Item = serde_dynamo::to_item(message).unwrap();
    let mut image = serde_json::to_value(item).unwrap();
    image["pk"] = json!({"S": message.message_id});
    record(image, sequence)
}

async fn run_batch(t: &TestPortal, records: Vec<Value>) -> Vec<String> {
    let event: aws_lambda_events::event::dynamodb::Event =
        serde_json::from_value(json!({ "Records": records })).unwrap();
    let response = send_email::handle(&t.portal, event).await;
    response.batch_item_failures.iter().map(|f| f.item_identifier.clone().unwrap()).collect()
}

/// Delivers every chunk of the import as one stream batch.
async fn process_all(t: &TestPortal, import_id: &str) {
    let chunks = t.imports.chunks_of(&ImportId(import_id.into()));
    let records = chunks.iter().enumerate().map(|(i, c)| chunk_record(&c.chunk_id, i as u64)).collect();
    assert!(run_batch(t, records).await.is_empty());
}

async fn progress(t: &TestPortal, token: &str, import_id: &str) -> Value {
    let response = t
        .send(&CreateInvitation, Req::get(&format!("/admin/imports/{import_id}")).cookie("portal_session", token))
        .await;
    assert_eq!(response.status(), 200, "{}", body_text(&response));
    body_json(&response)
}

fn invitation_messages(t: &TestPortal) -> Vec<OutboxMessage> {
    t.outbox.all().into_iter().filter(|m| m.kind == MessageKind::Invitation).collect()
}

#[tokio::test]
async fn a_csv_import_is_accepted_with_its_bad_rows_reported_by_number() {
    let (t, token) = with_admin(&[]).await;
    let csv = "email,first_name,last_name,phone,roles\n\
               ada@example.com,Ada,Lovelace,,Customers;Partners\n\
               not an email,Bob,Builder,,\n\
               grace@example.com,Grace,Hopper,12,\n\
               ADA@EXAMPLE.COM,Ada,Again,,\n\
               linus@example.com,Linus,Torvalds,+1 555 0100,\n";
    let answer = import(&t, &token, "/admin/imports", csv).await;
    assert_eq!(answer["rows"], 5);
    assert_eq!(answer["accepted"], 2);
    let rejected: Vec<u64> =
        answer["rejected"].as_array().unwrap().iter().map(|r| r["row"].as_u64().unwrap()).collect();
    assert_eq!(rejected, [2, 3, 4]);
    assert!(answer["rejected"][0]["reason"].as_str().unwrap().starts_with("email"));
    assert!(answer["rejected"][1]["reason"].as_str().unwrap().starts_with("phone"));
    assert_eq!(answer["rejected"][2]["reason"], "email repeats row 1's address");
    let id = answer["import_id"].as_str().unwrap();
    let before = progress(&t, &token, id).await;
    assert_eq!(before["status"], "running");
    process_all(&t, id).await;
    let after = progress(&t, &token, id).await;
    assert_eq!(after["status"], "done");
    assert_eq!(after["contacts_created"], 2);
    assert_eq!(after["invitations_created"], 0);
    let emails: Vec<String> = t.contacts.all().iter().map(|c| c.email.to_string()).collect();
    assert!(emails.contains(&"ada@example.com".to_string()) && emails.contains(&"linus@example.com".to_string()));
    let ada = t.contacts.all().into_iter().find(|c| c.email.as_str() == "ada@example.com").unwrap();
    assert_eq!(ada.roles, ["Customers", "Partners"]);
    assert!(ada.password_hash.is_none(), "imported contacts are not portal users yet");
}

#[tokio::test]
async fn whole_files_are_refused_with_clear_answers() {
    let (t, token) = with_admin(&[]).await;
    let refuse = |csv: String, status: u16, code: &'static str| {
        let t = &t;
        let token = token.clone();
        async move {
            let response = t.send(&CreateInvitation, csv_post("/admin/imports", &token, &csv)).await;
            assert_eq!(response.status(), status, "{}", body_text(&response));
            assert_eq!(body_json(&response)["error"], code);
            body_json(&response)
        }
    };
    let missing = refuse("first_name,last_name\nAda,Lovelace\n".into(), 400, "validation_failed").await;
    assert!(missing["fields"]["file"].as_str().unwrap().contains("no \"email\" column"), "{missing}");
    let unknown = refuse("email,shoe_size\na@example.com,9\n".into(), 400, "validation_failed").await;
    assert!(unknown["fields"]["file"].as_str().unwrap().contains("unknown column"), "{unknown}");
    refuse(String::new(), 400, "validation_failed").await;
    refuse(people(10_001), 413, "payload_too_large").await;
    let big = format!("email,first_name\n{}", "a@example.com,xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n".repeat(60_000));
    assert!(big.len() > 2 * 1024 * 1024);
    refuse(big, 413, "payload_too_large").await;
    let huge = "x".repeat(3 * 1024 * 1024);
    refuse(huge, 413, "payload_too_large").await;
    assert!(t.imports.chunks_of(&ImportId("-".into())).is_empty());
    // Other content types: 415 (a form post, XML, or nothing said).
    for content_type in ["application/xml", "application/x-www-form-urlencoded", "text/plain"] {
        let req =
            Req::post("/admin/imports").raw(content_type, "email\na@example.com\n").cookie("portal_session", &token);
        let response = t.send(&CreateInvitation, req).await;
        assert_eq!(response.status(), 415, "{content_type}");
    }
    let bad_option = t.send(&CreateInvitation, csv_post("/admin/imports?expires_in_days=0", &token, &people(1))).await;
    assert_eq!(bad_option.status(), 400);
    assert!(body_json(&bad_option)["fields"]["expires_in_days"].is_string());
}

#[tokio::test]
async fn only_administrators_import_and_a_foreign_origin_is_refused() {
    let (t, token) = with_admin(&[]).await;
    let anonymous = t.send(&CreateInvitation, Req::post("/admin/imports").raw("text/csv", &people(1))).await;
    assert_eq!(anonymous.status(), 401);
    let customer = t.send(&Register, Req::post("/register").json(registration("eve@example.com"))).await;
    let eve = cookie_value(&customer, "portal_session").unwrap();
    let refused = t.send(&CreateInvitation, csv_post("/admin/imports", &eve, &people(1))).await;
    assert_eq!(refused.status(), 403);
    let foreign = t
        .send(
            &CreateInvitation,
            csv_post("/admin/imports", &token, &people(1)).header("origin", "https://evil.example"),
        )
        .await;
    assert_eq!(foreign.status(), 403);
}

#[tokio::test]
async fn an_idempotency_key_gives_the_first_answer_again_and_refuses_another_file() {
    let (t, token) = with_admin(&[]).await;
    let post = |csv: String, key: &'static str| {
        csv_post("/admin/imports?invite=false", &token, &csv).header("idempotency-key", key)
    };
    let first = t.send(&CreateInvitation, post(people(3), "import-1")).await;
    assert_eq!(first.status(), 202);
    let again = t.send(&CreateInvitation, post(people(3), "import-1")).await;
    assert_eq!(again.status(), 202);
    assert_eq!(body_json(&again), body_json(&first));
    let other = t.send(&CreateInvitation, post(people(4), "import-1")).await;
    assert_eq!(other.status(), 422);
    assert_eq!(body_json(&other)["error"], "idempotency_conflict");
    let id = body_json(&first)["import_id"].as_str().unwrap().to_string();
    assert_eq!(t.imports.chunks_of(&ImportId(id)).len(), 1, "the retry stored nothing new");
}

#[tokio::test]
async fn the_same_file_imported_twice_creates_nothing_new() {
    let (t, token) = with_admin(&[]).await;
    let csv = people(5);
    let first = import(&t, &token, "/admin/imports?invite=true", &csv).await;
    process_all(&t, first["import_id"].as_str().unwrap()).await;
    let contacts = t.contacts.all().len();
    let messages = invitation_messages(&t).len();
    assert_eq!(messages, 5);
    let second = import(&t, &token, "/admin/imports?invite=true", &csv).await;
    let id = second["import_id"].as_str().unwrap();
    process_all(&t, id).await;
    assert_eq!(t.contacts.all().len(), contacts);
    assert_eq!(invitation_messages(&t).len(), messages, "no second invitation for a row of the same file");
    let report = progress(&t, &token, id).await;
    assert_eq!((report["contacts_created"].as_u64(), report["invitations_created"].as_u64()), (Some(0), Some(0)));
    assert_eq!(report["status"], "done");
}

#[tokio::test]
async fn existing_contacts_are_reused_and_invited() {
    let (t, token) = with_admin(&[]).await;
    let created = t
        .send(
            &CreateInvitation,
            Req::post("/admin/contacts")
                .json(json!({"email": "person2@example.com", "first_name": "Existing", "last_name": "One"}))
                .cookie("portal_session", &token),
        )
        .await;
    assert_eq!(created.status(), 201);
    let before = t.contacts.all().len();
    let answer = import(&t, &token, "/admin/imports?invite=true&expires_in_days=3", &people(3)).await;
    let id = answer["import_id"].as_str().unwrap();
    process_all(&t, id).await;
    assert_eq!(t.contacts.all().len(), before + 2);
    let report = progress(&t, &token, id).await;
    assert_eq!(report["contacts_created"], 2);
    assert_eq!(report["invitations_created"], 3);
    let existing = t.invitations.all().into_iter().find(|i| i.email == "person2@example.com").unwrap();
    assert_eq!(existing.first_name, "Existing", "the existing contact is invited as it is");
    assert_eq!(existing.expires_at.as_secs() - existing.created_at.as_secs(), 3 * 86_400);
    let admin = t.contacts.all().into_iter().find(|c| c.email.as_str() == "admin@example.com").unwrap();
    assert_eq!(existing.created_by, admin.contact_id);
    assert_eq!(report["status"], "running", "done only once the invitation emails went out");
}

#[tokio::test]
async fn a_chunk_processed_twice_or_retried_after_a_fault_creates_nothing_twice() {
    let (t, token) = with_admin(&[]).await;
    let answer = import(&t, &token, "/admin/imports?invite=true", &people(250)).await;
    let id = ImportId(answer["import_id"].as_str().unwrap().into());
    let chunks = t.imports.chunks_of(&id);
    assert_eq!(chunks.iter().map(|c| c.rows.len()).collect::<Vec<_>>(), [100, 100, 50]);
    // The first chunk's run writes its rows, then fails before it is marked done; the stream retries.
    let first = &chunks[0].chunk_id;
    let portal = t.portal.clone();
    let created_before = t.contacts.all().len();
    t.imports.faults.fail_next("finish_chunk", 1);
    assert!(process_chunk(&portal, first).await.is_err(), "a fault before the chunk is done is reported");
    assert_eq!(t.contacts.all().len(), created_before + 100, "its rows were written");
    let retried = process_chunk(&portal, first).await.unwrap();
    let ChunkOutcome::Processed(counts) = retried else { panic!("{retried:?}") };
    assert_eq!((counts.rows, counts.contacts_created, counts.invitations_created), (100, 100, 100));
    assert_eq!(t.contacts.all().len(), created_before + 100, "the retry created nothing again");
    assert_eq!(process_chunk(&portal, first).await.unwrap(), ChunkOutcome::Skipped, "a duplicate delivery");
    // The stream delivers every chunk, the first one again among them.
    let records = chunks.iter().enumerate().map(|(i, c)| chunk_record(&c.chunk_id, i as u64)).collect();
    assert!(run_batch(&t, records).await.is_empty());
    assert_eq!(t.contacts.all().len(), created_before + 250);
    assert_eq!(invitation_messages(&t).len(), 250);
    let report = progress(&t, &token, id.as_str()).await;
    assert_eq!((report["contacts_created"].as_u64(), report["invitations_created"].as_u64()), (Some(250), Some(250)));
    assert_eq!(report["rows_done"], 250);
}

#[tokio::test]
async fn invitation_emails_are_paced_counted_once_and_kept_when_no_slot_is_free() {
    let (t, token) = with_admin(&[]).await;
    let answer = import(&t, &token, "/admin/imports?invite=true", &people(3)).await;
    let id = answer["import_id"].as_str().unwrap();
    process_all(&t, id).await;
    let messages = invitation_messages(&t);
    assert!(messages.iter().all(|m| m.import_id.as_ref().map(|i| i.as_str()) == Some(id)));
    // No slot free: every message goes back to the stream, nothing is sent or lost.
    t.pacer.full.store(true, Ordering::SeqCst);
    let records: Vec<Value> = messages.iter().enumerate().map(|(i, m)| message_record(m, 10 + i as u64)).collect();
    assert_eq!(run_batch(&t, records.clone()).await.len(), 3);
    assert!(t.mailer.sent().is_empty());
    assert!(invitation_messages(&t).iter().all(|m| m.status == MessageStatus::Pending));
    // Throttled by SES: backed off, retried.
    t.pacer.full.store(false, Ordering::SeqCst);
    t.mailer.fail_next(SendError::Retryable("TooManyRequestsException: Maximum sending rate exceeded.".into()));
    let failed = run_batch(&t, records.clone()).await;
    assert_eq!(failed.len(), 1);
    assert_eq!(t.pacer.back_offs.load(Ordering::SeqCst), 1);
    assert_eq!(t.mailer.sent().len(), 2);
    // The retry sends the last one; a duplicate delivery counts nothing twice.
    assert!(run_batch(&t, records.clone()).await.is_empty());
    assert!(run_batch(&t, records).await.is_empty());
    assert_eq!(t.mailer.sent().len(), 3);
    assert_eq!(t.pacer.slots.load(Ordering::SeqCst), 3 + 1, "one slot per send tried");
    let report = progress(&t, &token, id).await;
    assert_eq!((report["emails_sent"].as_u64(), report["emails_failed"].as_u64()), (Some(3), Some(0)));
    assert_eq!(report["status"], "done");
}

#[tokio::test]
async fn the_upload_page_posts_a_file_with_its_csrf_token_and_shows_progress() {
    let (t, token) = with_admin(&[]).await;
    let page = t.send(&CreateInvitation, Req::get("/admin/imports").html().cookie("portal_session", &token)).await;
    assert_eq!(page.status(), 200);
    let html = body_text(&page);
    assert!(html.contains("enctype=\"multipart/form-data\"") && html.contains("name=\"file\""), "{html}");
    let multipart = |csrf_field: &str| {
        format!(
            "--XyZ\r\nContent-Disposition: form-data; name=\"csrf_token\"\r\n\r\n{csrf_field}\r\n\
             --XyZ\r\nContent-Disposition: form-data; name=\"invite\"\r\n\r\ntrue\r\n\
             --XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"people.csv\"\r\nContent-Type: text/csv\r\n\r\n{}\r\n\
             --XyZ--\r\n",
            people(2)
        )
    };
    let csrf = "c".repeat(43);
    let upload = |body: String| {
        Req::post("/admin/imports")
            .raw("multipart/form-data; boundary=XyZ", &body)
            .html()
            .cookie("portal_session", &token)
            .cookie("portal_csrf", &csrf)
    };
    let forged = t.send(&CreateInvitation, upload(multipart("wrong"))).await;
    assert_eq!(forged.status(), 403);
    let posted = t.send(&CreateInvitation, upload(multipart(&csrf))).await;
    assert_eq!(posted.status(), 303, "{}", body_text(&posted));
    let progress_path = location(&posted).unwrap();
    assert!(progress_path.starts_with("/admin/imports/"));
    let shown = t.send(&CreateInvitation, Req::get(&progress_path).html().cookie("portal_session", &token)).await;
    let html = body_text(&shown);
    assert!(html.contains("<progress") && !html.contains("http-equiv=\"refresh\""), "{html}");
    assert!(html.contains("id=\"refresh-import\"") && html.contains(&format!("href=\"{progress_path}\"")), "{html}");
    assert!(html.contains("id=\"import-status\">running"));
    let id = progress_path.trim_start_matches("/admin/imports/");
    process_all(&t, id).await;
    assert_eq!(invitation_messages(&t).len(), 2, "the page's invite box was ticked");
    let contacts_page =
        t.send(&CreateInvitation, Req::get("/admin/contacts").html().cookie("portal_session", &token)).await;
    assert!(body_text(&contacts_page).contains("href=\"/admin/imports\""));
    let unknown = t.send(&CreateInvitation, Req::get("/admin/imports/nope").cookie("portal_session", &token)).await;
    assert_eq!(unknown.status(), 404);
}
