//! Handler tests for group invitations to several contacts: validation of `contact_ids`, the
//! fan-out into one email per contact (the same code), per-contact delivery states and their
//! aggregate, a fan-out processed twice, and a resend, on in-memory adapters.

use portal::domain::outbox::{MessageKind, MessageStatus, OutboxMessage};
use portal::handlers::admin::CreateInvitation;
use portal::handlers::redeem::RedeemInvitation;
use portal::handlers::register::Register;
use portal::handlers::send_email;
use portal::ports::{OutgoingEmail, SendError};
use portal_testkit::*;
use serde_json::{Value, json};

async fn with_admin() -> (TestPortal, String) {
    let t = test_portal(&[]);
    let response = t.send(&Register, Req::post("/register").json(registration("admin@example.com"))).await;
    assert_eq!(response.status(), 201);
    let token = cookie_value(&response, "portal_session").unwrap();
    let mut admin = t.contacts.all().into_iter().next().unwrap();
    admin.roles = vec!["Administrators".into()];
    t.contacts.put(admin);
    (t, token)
}

fn admin_post(path: &str, token: &str, body: Value) -> Req {
    Req::post(path).json(body).cookie("portal_session", token)
}

/// Creates `n` contacts; returns their ids.
async fn contacts(t: &TestPortal, token: &str, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        let body =
            json!({"email": format!("member{i}@example.com"), "first_name": format!("Member{i}"), "last_name": "Team"});
        let response = t.send(&CreateInvitation, admin_post("/admin/contacts", token, body)).await;
        assert_eq!(response.status(), 201, "{}", body_text(&response));
        ids.push(body_json(&response)["contact_id"].as_str().unwrap().to_string());
    }
    ids
}

fn stream_record(message: &OutboxMessage, sequence: u64) -> Value {
    let item: serde_dynamo::Item = serde_dynamo::to_item(message).unwrap();
    json!({
        "eventID": format!("event-{sequence}"),
        "eventName": "INSERT",
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "eventSourceARN": "arn:aws:dynamodb:us-east-1:123456789012:table/portal-outbox/stream/2026-11-27T00:00:00.000",
        "dynamodb": {
            "ApproximateCreationDateTime": 1_800_000_000.0,
            "Keys": {"pk": {"S": message.message_id}},
            "NewImage": item,
            "SequenceNumber": sequence.to_string(),
            "SizeBytes": 256,
            "StreamViewType": "NEW_IMAGE"
        }
    })
}

async fn run_batch(t: &TestPortal, messages: &[OutboxMessage]) -> Vec<String> {
    let records: Vec<Value> = messages.iter().enumerate().map(|(i, m)| stream_record(m, 100 + i as u64)).collect();
    let event: aws_lambda_events::event::dynamodb::Event =
        serde_json::from_value(json!({ "Records": records })).unwrap();
    let response = send_email::handle(&t.portal, event).await;
    response.batch_item_failures.iter().map(|f| f.item_identifier.clone().unwrap()).collect()
}

fn pending(t: &TestPortal, kind: MessageKind) -> Vec<OutboxMessage> {
    let mut found: Vec<OutboxMessage> =
        t.outbox.all().into_iter().filter(|m| m.kind == kind && m.status == MessageStatus::Pending).collect();
    found.sort_by(|a, b| a.message_id.cmp(&b.message_id));
    found
}

/// Runs the pending fan-outs, then the per-contact emails they queued; returns the emails sent.
async fn deliver(t: &TestPortal) -> Vec<OutgoingEmail> {
    let before = t.mailer.sent().len();
    assert!(run_batch(t, &pending(t, MessageKind::InvitationFanout)).await.is_empty());
    assert!(run_batch(t, &pending(t, MessageKind::Invitation)).await.is_empty());
    t.mailer.sent()[before..].to_vec()
}

fn code_in(email: &OutgoingEmail) -> String {
    let link = email.text.lines().find(|l| l.contains("/redeem?code=")).expect("a redeem link");
    link.split("code=").nth(1).unwrap().trim().to_string()
}

async fn detail(t: &TestPortal, token: &str, id: &str) -> Value {
    let response =
        t.send(&CreateInvitation, Req::get(&format!("/admin/invitations/{id}")).cookie("portal_session", token)).await;
    assert_eq!(response.status(), 200);
    body_json(&response)
}

fn statuses(shown: &Value) -> Vec<String> {
    let mut found: Vec<String> =
        shown["deliveries"].as_array().unwrap().iter().map(|d| d["status"].as_str().unwrap().to_string()).collect();
    found.sort();
    found
}

#[tokio::test]
async fn contact_ids_are_validated() {
    let (t, admin) = with_admin().await;
    let ids = contacts(&t, &admin, 2).await;
    let too_many: Vec<String> = (0..101).map(|i| format!("00000000-0000-0000-0000-{i:012}")).collect();
    let cases = [
        json!({"type": "group", "contact_ids": []}),
        json!({"type": "group", "contact_ids": too_many}),
        json!({"type": "group", "contact_ids": [ids[0], ids[0]]}),
        json!({"type": "group", "contact_ids": ["not a contact id!"]}),
        json!({"type": "group", "contact_ids": [ids[0], "00000000-0000-0000-0000-000000000000"]}),
        json!({"type": "group", "contact_ids": [ids[0]], "contact_id": ids[1]}),
        json!({"type": "group", "contact_ids": [ids[0]], "email": "x@example.com", "first_name": "X", "last_name": "Y"}),
        json!({"type": "single", "contact_ids": [ids[0]]}),
        json!({"contact_ids": [ids[0]]}),
        json!({"type": "group", "contact_ids": [1, 2]}),
    ];
    for body in cases {
        let response = t.send(&CreateInvitation, admin_post("/admin/invitations", &admin, body.clone())).await;
        assert_eq!(response.status(), 400, "{body}: {}", body_text(&response));
        let answer = body_json(&response);
        assert_eq!(answer["error"], "validation_failed", "{body}");
        assert!(answer["fields"]["contact_ids"].is_string(), "{body}: {answer}");
    }
    assert!(t.invitations.all().is_empty());
}

#[tokio::test]
async fn three_contacts_get_the_same_code_and_their_deliveries_are_tracked() {
    let (t, admin) = with_admin().await;
    let ids = contacts(&t, &admin, 3).await;
    let response = t
        .send(&CreateInvitation, admin_post("/admin/invitations", &admin, json!({"type": "group", "contact_ids": ids})))
        .await;
    assert_eq!(response.status(), 201, "{}", body_text(&response));
    let invitation = body_json(&response);
    assert_eq!(invitation["type"], "group");
    assert!(invitation["max_redemptions"].as_u64().unwrap() >= 3);
    let id = invitation["invitation_id"].as_str().unwrap().to_string();
    assert_eq!(statuses(&detail(&t, &admin, &id).await), ["pending", "pending", "pending"]);
    assert_eq!(pending(&t, MessageKind::InvitationFanout).len(), 1, "one fan-out item");

    let emails = deliver(&t).await;
    assert_eq!(emails.len(), 3);
    let mut to: Vec<&str> = emails.iter().map(|e| e.to.as_str()).collect();
    to.sort();
    assert_eq!(to, ["member0@example.com", "member1@example.com", "member2@example.com"]);
    let code = code_in(&emails[0]);
    assert!(emails.iter().all(|e| code_in(e) == code), "one code for all");

    let shown = detail(&t, &admin, &id).await;
    assert_eq!(statuses(&shown), ["sent", "sent", "sent"]);
    assert_eq!(shown["delivery"], "sent");
    let listed: Vec<&str> =
        shown["deliveries"].as_array().unwrap().iter().map(|d| d["contact_id"].as_str().unwrap()).collect();
    assert!(ids.iter().all(|id| listed.contains(&id.as_str())));
    assert!(shown["deliveries"][0]["email"].as_str().unwrap().ends_with("@example.com"));
    let fanout = t.outbox.all().into_iter().find(|m| m.kind == MessageKind::InvitationFanout).unwrap();
    assert_eq!((fanout.status, fanout.secret.is_none()), (MessageStatus::Sent, true), "the code left the fan-out");

    // A listed contact redeems with the code.
    let redeemed = t
        .send(
            &RedeemInvitation,
            Req::post("/redeem").json(json!({"code": code, "password": "Compiler-Pioneer-1952", "email": "newcomer@example.com", "first_name": "New", "last_name": "Comer"})),
        )
        .await;
    assert_eq!(redeemed.status(), 201, "{}", body_text(&redeemed));
}

#[tokio::test]
async fn one_failed_delivery_makes_the_invitation_failed() {
    let (t, admin) = with_admin().await;
    let ids = contacts(&t, &admin, 3).await;
    let response = t
        .send(&CreateInvitation, admin_post("/admin/invitations", &admin, json!({"type": "group", "contact_ids": ids})))
        .await;
    let id = body_json(&response)["invitation_id"].as_str().unwrap().to_string();
    assert!(run_batch(&t, &pending(&t, MessageKind::InvitationFanout)).await.is_empty());
    let per_contact = pending(&t, MessageKind::Invitation);
    assert_eq!(per_contact.len(), 3);
    t.mailer.fail_next(SendError::Permanent("MessageRejected: Email address is not verified".into()));
    assert!(run_batch(&t, &per_contact[..1]).await.is_empty());
    let shown = detail(&t, &admin, &id).await;
    assert_eq!(statuses(&shown), ["failed", "pending", "pending"]);
    assert_eq!(shown["delivery"], "failed");
    assert!(run_batch(&t, &per_contact[1..]).await.is_empty());
    let shown = detail(&t, &admin, &id).await;
    assert_eq!(statuses(&shown), ["failed", "sent", "sent"]);
    assert_eq!(shown["delivery"], "failed");
    assert_eq!(t.mailer.sent().iter().filter(|e| e.to.starts_with("member")).count(), 2);
}

#[tokio::test]
async fn a_fan_out_processed_twice_still_emails_each_contact_once() {
    let (t, admin) = with_admin().await;
    let ids = contacts(&t, &admin, 3).await;
    let response = t
        .send(&CreateInvitation, admin_post("/admin/invitations", &admin, json!({"type": "group", "contact_ids": ids})))
        .await;
    assert_eq!(response.status(), 201);
    let fanout = pending(&t, MessageKind::InvitationFanout);
    // The same stream record twice in one batch, then again in a later batch.
    assert!(run_batch(&t, &[fanout[0].clone(), fanout[0].clone()]).await.len() <= 1);
    let _ = run_batch(&t, &fanout).await;
    let per_contact: Vec<OutboxMessage> =
        t.outbox.all().into_iter().filter(|m| m.kind == MessageKind::Invitation).collect();
    assert_eq!(per_contact.len(), 3, "one email per contact queued");
    assert!(run_batch(&t, &per_contact).await.is_empty());
    assert!(run_batch(&t, &per_contact).await.is_empty(), "a duplicated per-contact record sends nothing");
    assert_eq!(t.mailer.sent().iter().filter(|e| e.to.starts_with("member")).count(), 3);
}

#[tokio::test]
async fn a_resend_re_emails_every_listed_contact_with_a_new_code() {
    let (t, admin) = with_admin().await;
    let ids = contacts(&t, &admin, 3).await;
    let response = t
        .send(&CreateInvitation, admin_post("/admin/invitations", &admin, json!({"type": "group", "contact_ids": ids})))
        .await;
    let id = body_json(&response)["invitation_id"].as_str().unwrap().to_string();
    let first = deliver(&t).await;
    let old_code = code_in(&first[0]);
    let resent =
        t.send(&CreateInvitation, admin_post(&format!("/admin/invitations/{id}/resend"), &admin, json!({}))).await;
    assert_eq!(resent.status(), 200, "{}", body_text(&resent));
    assert_eq!(statuses(&detail(&t, &admin, &id).await), ["pending", "pending", "pending"]);
    let second = deliver(&t).await;
    assert_eq!(second.len(), 3);
    let new_code = code_in(&second[0]);
    assert_ne!(new_code, old_code);
    assert!(second.iter().all(|e| code_in(e) == new_code));
    assert_eq!(statuses(&detail(&t, &admin, &id).await), ["sent", "sent", "sent"]);
    let old = t
        .send(&RedeemInvitation, Req::post("/redeem").json(json!({"code": old_code, "password": "Compiler-Pioneer-1952", "email": "x@example.com", "first_name": "X", "last_name": "Y"})))
        .await;
    assert_eq!(old.status(), 400, "the old code stopped working");
}

#[tokio::test]
async fn a_form_post_with_repeated_contact_ids_creates_a_group_invitation() {
    let (t, admin) = with_admin().await;
    let ids = contacts(&t, &admin, 2).await;
    let page = t.send(&CreateInvitation, Req::get("/admin/contacts").html().cookie("portal_session", &admin)).await;
    let html = body_text(&page);
    assert!(html.contains("id=\"group-invitation-form\""), "the contacts page offers a group invitation");
    for id in &ids {
        assert!(html.contains(&format!("name=\"contact_ids\" value=\"{id}\"")), "a checkbox for {id}");
    }
    let csrf = cookie_value(&page, "portal_csrf").unwrap();
    let response = t
        .send(
            &CreateInvitation,
            Req::post("/admin/invitations")
                .form(&[("type", "group"), ("contact_ids", &ids[0]), ("contact_ids", &ids[1])], &csrf)
                .cookie("portal_session", &admin),
        )
        .await;
    assert_eq!(response.status(), 303, "{}", body_text(&response));
    assert_eq!(deliver(&t).await.len(), 2);
}
