//! Handler tests for invitations: the administrators' routes, send-email on stream batches, and
//! redemption, on in-memory adapters.

use portal::domain::email::Email;

use portal::domain::contact::Contact;
use portal::domain::invitation::Delivery;
use portal::domain::outbox::{MessageKind, MessageStatus, OutboxMessage};
use portal::domain::time::Timestamp;
use portal::handlers::admin::CreateInvitation;
use portal::handlers::profile::Profile;
use portal::handlers::redeem::RedeemInvitation;
use portal::handlers::register::Register;
use portal::handlers::send_email;
use portal::ports::{Clock, InvitationStore, OutgoingEmail, SendError};
use portal_testkit::*;
use serde_json::{Value, json};

const ADMIN_EMAIL: &str = "admin@example.com";

/// A portal with a signed-in administrator; returns it with the administrator's session token.
async fn with_admin(overrides: &[(&str, &str)]) -> (TestPortal, String) {
    let t = test_portal(overrides);
    let response = t.send(&Register, Req::post("/register").json(registration(ADMIN_EMAIL))).await;
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

async fn invite(t: &TestPortal, token: &str, body: Value) -> Value {
    let response = t.send(&CreateInvitation, admin_post("/admin/invitations", token, body)).await;
    assert_eq!(response.status(), 201, "{}", body_text(&response));
    body_json(&response)
}

/// A DynamoDB stream record as Lambda delivers it, for an outbox message.
fn stream_record(event_name: &str, message: &OutboxMessage, sequence: u64) -> Value {
    let item: serde_dynamo::Item = serde_dynamo::to_item(message).unwrap();
    json!({
        "eventID": format!("event-{sequence}"),
        "eventName": event_name,
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

async fn run_batch(t: &TestPortal, records: Vec<Value>) -> Vec<String> {
    let event: aws_lambda_events::event::dynamodb::Event =
        serde_json::from_value(json!({ "Records": records })).unwrap();
    let response = send_email::handle(&t.portal, event).await;
    response.batch_item_failures.iter().map(|f| f.item_identifier.clone().unwrap()).collect()
}

/// The invitation emails in the outbox (registrations queue confirmation emails too).
fn invitation_messages(t: &TestPortal) -> Vec<OutboxMessage> {
    t.outbox.all().into_iter().filter(|m| m.kind == MessageKind::Invitation).collect()
}

/// Delivers every pending invitation message as one stream batch; returns the emails sent by it.
async fn deliver(t: &TestPortal) -> Vec<OutgoingEmail> {
    let before = t.mailer.sent().len();
    let pending: Vec<OutboxMessage> =
        invitation_messages(t).into_iter().filter(|m| m.status == MessageStatus::Pending).collect();
    let records = pending.iter().enumerate().map(|(i, m)| stream_record("INSERT", m, 100 + i as u64)).collect();
    assert!(run_batch(t, records).await.is_empty());
    t.mailer.sent()[before..].to_vec()
}

/// The code in an invitation email, read from its link.
fn code_in(email: &OutgoingEmail) -> String {
    let link = email.text.lines().find(|l| l.contains("/redeem?code=")).expect("a redeem link");
    assert!(link.trim().starts_with("http://localhost:9000/redeem?code="), "{link}");
    link.split("code=").nth(1).unwrap().trim().to_string()
}

async fn invite_and_deliver(t: &TestPortal, token: &str, body: Value) -> (Value, String) {
    let invitation = invite(t, token, body).await;
    let emails = deliver(t).await;
    assert_eq!(emails.len(), 1);
    (invitation, code_in(&emails[0]))
}

fn grace() -> Value {
    json!({"email": "grace@example.com", "first_name": "Grace", "last_name": "Hopper"})
}

#[tokio::test]
async fn admin_routes_need_a_session_and_the_administrators_role() {
    let t = test_portal(&[]);
    let anonymous = t.send(&CreateInvitation, Req::get("/admin/contacts")).await;
    assert_eq!(anonymous.status(), 401);
    let page = t.send(&CreateInvitation, Req::get("/admin/contacts").html()).await;
    assert_eq!((page.status().as_u16(), location(&page).as_deref()), (303, Some("/signin")));
    let customer = cookie_value(
        &t.send(&Register, Req::post("/register").json(registration("ada@example.com"))).await,
        "portal_session",
    )
    .unwrap();
    for req in [
        Req::get("/admin/contacts").cookie("portal_session", &customer),
        admin_post("/admin/invitations", &customer, grace()),
        admin_post("/admin/contacts", &customer, grace()),
    ] {
        let response = t.send(&CreateInvitation, req).await;
        assert_eq!(response.status(), 403, "{}", body_text(&response));
        assert_eq!(body_json(&response)["error"], "forbidden");
    }
    assert!(t.invitations.all().is_empty());
    assert_eq!(t.contacts.all().len(), 1);
}

#[tokio::test]
async fn administrators_create_contacts_and_list_them() {
    let (t, admin) = with_admin(&[]).await;
    let created = t.send(&CreateInvitation, admin_post("/admin/contacts", &admin, grace())).await;
    assert_eq!(created.status(), 201, "{}", body_text(&created));
    let contact = body_json(&created);
    assert_eq!(contact["portal_user"], false);
    let again = t.send(&CreateInvitation, admin_post("/admin/contacts", &admin, grace())).await;
    assert_eq!(again.status(), 409);
    let listing = body_json(
        &t.send(&CreateInvitation, Req::get("/admin/contacts?q=hopper").cookie("portal_session", &admin)).await,
    );
    let emails: Vec<&str> =
        listing["contacts"].as_array().unwrap().iter().map(|c| c["email"].as_str().unwrap()).collect();
    assert_eq!(emails, ["grace@example.com"]);
    let page = t
        .send(
            &CreateInvitation,
            Req::get(&format!("/admin/contacts?contact_id={}", contact["contact_id"].as_str().unwrap()))
                .html()
                .cookie("portal_session", &admin),
        )
        .await;
    let html = body_text(&page);
    assert!(html.contains("id=\"invitation-form\"") && html.contains("Grace Hopper"), "{html}");
}

#[tokio::test]
async fn a_refused_form_on_the_contacts_page_shows_that_page_again() {
    let (t, admin) = with_admin(&[]).await;
    let csrf = "c".repeat(43);
    let post =
        |path: &str, fields: &[(&str, &str)]| Req::post(path).form(fields, &csrf).cookie("portal_session", &admin);
    // Refused while parsing (a bad email), and refused by the use case (the address is taken).
    let bad = t.send(&CreateInvitation, post("/admin/contacts", &[("email", "nope"), ("first_name", "G")])).await;
    let taken = [("email", ADMIN_EMAIL), ("first_name", "A"), ("last_name", "B")];
    let duplicate = t.send(&CreateInvitation, post("/admin/contacts", &taken)).await;
    let bad_invitation =
        t.send(&CreateInvitation, post("/admin/invitations", &[("contact_id", "no-such-contact")])).await;
    for (response, status, problem) in [
        (bad, 400, "last_name: is required"),
        (duplicate, 409, "already exists"),
        (bad_invitation, 400, "contact_id: is not a contact"),
    ] {
        assert_eq!(response.status().as_u16(), status);
        let page = body_text(&response);
        assert!(page.contains("id=\"form-error\"") && page.contains(ADMIN_EMAIL), "the contacts page: {page}");
        assert!(page.contains(problem), "{problem} shown: {page}");
    }
}

#[tokio::test]
async fn an_invitation_is_created_without_showing_its_code_and_queues_its_email() {
    let (t, admin) = with_admin(&[]).await;
    let body = invite(
        &t,
        &admin,
        json!({
            "email": "grace@example.com", "first_name": "Grace", "last_name": "Hopper",
            "roles": ["Customers", "Partners"], "account_id": "Contoso", "redirect_path": "/profile?welcome=1"
        }),
    )
    .await;
    for field in
        ["invitation_id", "contact_id", "type", "status", "expires_at", "max_redemptions", "redemptions", "delivery"]
    {
        assert!(body.get(field).is_some(), "{field} missing in {body}");
    }
    assert_eq!(
        (body["type"].as_str(), body["status"].as_str(), body["delivery"].as_str()),
        (Some("single"), Some("active"), Some("pending"))
    );
    assert_eq!((body["max_redemptions"].as_u64(), body["redemptions"].as_u64()), (Some(1), Some(0)));
    assert_eq!(body["expires_at"], "2027-01-22T08:00:00Z", "7 days by default");
    let messages = invitation_messages(&t);
    assert_eq!(messages.len(), 1);
    let code = messages[0].secret.as_ref().unwrap().expose().to_string();
    assert!(!body.to_string().contains(&code), "the response never holds the code");
    let stored = &t.invitations.all()[0];
    assert!(!format!("{stored:?}").contains(&code), "only the digest is stored");
    assert_eq!(stored.roles, ["Customers", "Partners"]);
    assert!(
        t.contacts.all().iter().any(|c| c.email == "grace@example.com" && c.password_hash.is_none()),
        "the contact was created"
    );
}

#[tokio::test]
async fn invitation_requests_are_validated() {
    let (t, admin) = with_admin(&[]).await;
    let cases = [
        (json!({"contact_id": "nope"}), "contact_id"),
        (json!({"email": "grace@example.com", "first_name": "Grace"}), "last_name"),
        (json!({"type": "party", "email": "g@example.com", "first_name": "G", "last_name": "H"}), "type"),
        (
            json!({"type": "single", "max_redemptions": 3, "email": "g@example.com", "first_name": "G", "last_name": "H"}),
            "max_redemptions",
        ),
        (
            json!({"type": "group", "max_redemptions": 0, "email": "g@example.com", "first_name": "G", "last_name": "H"}),
            "max_redemptions",
        ),
        (
            json!({"expires_in_days": 1000, "email": "g@example.com", "first_name": "G", "last_name": "H"}),
            "expires_in_days",
        ),
        (
            json!({"redirect_path": "https://evil.example/", "email": "g@example.com", "first_name": "G", "last_name": "H"}),
            "redirect_path",
        ),
        (
            json!({"redirect_path": "//evil.example", "email": "g@example.com", "first_name": "G", "last_name": "H"}),
            "redirect_path",
        ),
        (
            json!({"roles": "Customers", "email": "g@example.com", "first_name": "G", "last_name": "H", "max_redemptions": "x"}),
            "max_redemptions",
        ),
        (json!({"roles": [1], "email": "g@example.com", "first_name": "G", "last_name": "H"}), "roles"),
    ];
    for (body, field) in cases {
        let response = t.send(&CreateInvitation, admin_post("/admin/invitations", &admin, body.clone())).await;
        assert_eq!(response.status(), 400, "{body}: {}", body_text(&response));
        assert!(
            body_json(&response)["fields"][field].is_string(),
            "{field} not blamed for {body}: {}",
            body_text(&response)
        );
    }
    assert!(t.invitations.all().is_empty());
    assert!(invitation_messages(&t).is_empty());
}

#[tokio::test]
async fn send_email_sends_once_removes_the_code_and_records_delivery() {
    let (t, admin) = with_admin(&[]).await;
    let invitation = invite(&t, &admin, grace()).await;
    let message = invitation_messages(&t).remove(0);
    let record = stream_record("INSERT", &message, 7);
    assert!(run_batch(&t, vec![record.clone(), record.clone()]).await.is_empty(), "duplicate in one batch");
    assert!(run_batch(&t, vec![record]).await.is_empty(), "redelivered later");
    let sent = t.mailer.sent();
    assert_eq!(sent.len(), 1, "a record delivered twice sends one email");
    assert_eq!(sent[0].to, "grace@example.com");
    assert_eq!(sent[0].subject, "You're invited to the customer portal");
    assert!(sent[0].text.contains("Hello Grace,"));
    let stored = t.outbox.get(&message.message_id).unwrap();
    assert_eq!(stored.status, MessageStatus::Sent);
    assert!(stored.secret.is_none(), "the plain code is removed once sent");
    let shown = body_json(
        &t.send(
            &CreateInvitation,
            Req::get(&format!("/admin/invitations/{}", invitation["invitation_id"].as_str().unwrap()))
                .cookie("portal_session", &admin),
        )
        .await,
    );
    assert_eq!(shown["delivery"], "sent");
}

#[tokio::test]
async fn modify_and_remove_records_are_skipped() {
    let (t, admin) = with_admin(&[]).await;
    invite(&t, &admin, grace()).await;
    let message = invitation_messages(&t).remove(0);
    assert!(
        run_batch(&t, vec![stream_record("MODIFY", &message, 1), stream_record("REMOVE", &message, 2)])
            .await
            .is_empty()
    );
    assert!(t.mailer.sent().is_empty());
    assert_eq!(t.outbox.get(&message.message_id).unwrap().status, MessageStatus::Pending);
}

#[tokio::test]
async fn a_throttled_send_is_a_partial_batch_failure_and_succeeds_on_retry() {
    let (t, admin) = with_admin(&[]).await;
    for email in ["a1@example.com", "a2@example.com", "a3@example.com"] {
        invite(&t, &admin, json!({"email": email, "first_name": "A", "last_name": "B"})).await;
    }
    let mut messages = invitation_messages(&t);
    messages.sort_by(|a, b| a.to.cmp(&b.to));
    let records: Vec<Value> =
        messages.iter().enumerate().map(|(i, m)| stream_record("INSERT", m, 10 + i as u64)).collect();
    // The first send is throttled; the batch runs concurrently, so which record gets it is the
    // first to reach the mailer: exactly one record fails, the others go.
    t.mailer.fail_next(SendError::Retryable("TooManyRequestsException: Maximum sending rate exceeded".into()));
    let failures = run_batch(&t, records.clone()).await;
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(t.mailer.sent().len(), 2);
    let failed_sequence: u64 = failures[0].parse().unwrap();
    let failed = &messages[(failed_sequence - 10) as usize];
    assert_eq!(t.outbox.get(&failed.message_id).unwrap().status, MessageStatus::Pending, "released for the retry");
    // Lambda retries from the failed record on: the ones already sent are not sent again.
    let retry: Vec<Value> = records.into_iter().skip((failed_sequence - 10) as usize).collect();
    assert!(run_batch(&t, retry).await.is_empty());
    let mut recipients: Vec<String> = t.mailer.sent().into_iter().map(|e| e.to).collect();
    recipients.sort();
    assert_eq!(recipients, ["a1@example.com", "a2@example.com", "a3@example.com"]);
}

#[tokio::test]
async fn a_permanent_failure_marks_the_delivery_failed_without_blocking_the_stream() {
    let (t, admin) = with_admin(&[]).await;
    let invitation = invite(&t, &admin, grace()).await;
    let message = invitation_messages(&t).remove(0);
    t.mailer.fail_next(SendError::Permanent("MessageRejected: Email address is not verified".into()));
    assert!(run_batch(&t, vec![stream_record("INSERT", &message, 1)]).await.is_empty(), "never retried");
    let stored = t.outbox.get(&message.message_id).unwrap();
    assert_eq!(stored.status, MessageStatus::Failed);
    assert!(stored.secret.is_none());
    let shown = body_json(
        &t.send(
            &CreateInvitation,
            Req::get(&format!("/admin/invitations/{}", invitation["invitation_id"].as_str().unwrap()))
                .cookie("portal_session", &admin),
        )
        .await,
    );
    assert_eq!(shown["delivery"], "failed");
    assert!(shown["delivery_error"].as_str().unwrap().contains("not verified"));
}

#[tokio::test]
async fn an_unreadable_record_among_good_ones_is_skipped() {
    let (t, admin) = with_admin(&[]).await;
    invite(&t, &admin, grace()).await;
    let message = invitation_messages(&t).remove(0);
    let mut bad = stream_record("INSERT", &message, 1);
    bad["dynamodb"]["NewImage"] = json!({"pk": {"S": "x"}});
    let failures = run_batch(&t, vec![bad, stream_record("INSERT", &message, 2)]).await;
    assert!(failures.is_empty());
    assert_eq!(t.mailer.sent().len(), 1);
}

#[tokio::test]
async fn with_sending_turned_off_messages_stay_pending_and_held() {
    let (t, admin) = with_admin(&[("PORTAL_SEND_INVITATION_EMAILS", "false")]).await;
    invite(&t, &admin, grace()).await;
    let message = invitation_messages(&t).remove(0);
    assert!(run_batch(&t, vec![stream_record("INSERT", &message, 1)]).await.is_empty());
    assert!(t.mailer.sent().is_empty());
    assert_eq!(t.outbox.get(&message.message_id).unwrap().status, MessageStatus::Pending);
    assert!(t.outbox.held.lock().unwrap().contains(&message.message_id), "held: it never expires unsent");
    assert_eq!(t.invitations.all()[0].delivery, Delivery::Pending);
}

fn grace_contact(t: &TestPortal) -> Contact {
    t.contacts.all().into_iter().find(|c| c.email == "grace@example.com").unwrap()
}

#[tokio::test]
async fn the_invited_contact_redeems_the_code_and_becomes_a_signed_in_portal_user() {
    let (t, admin) = with_admin(&[]).await;
    let body = json!({"email": "grace@example.com", "first_name": "Grace", "last_name": "Hopper", "roles": ["Customers"], "account_id": "Contoso", "redirect_path": "/profile?welcome=1"});
    let (invitation, code) = invite_and_deliver(&t, &admin, body).await;

    // Opening the link consumes nothing, however often (mail scanners follow links).
    for _ in 0..3 {
        let page = t.send(&RedeemInvitation, Req::get(&format!("/redeem?code={code}")).html()).await;
        assert_eq!(page.status(), 200);
        assert!(body_text(&page).contains("Grace Hopper"));
    }
    let looked_up = t
        .send(&RedeemInvitation, Req::post("/redeem").json(json!({"code": code.to_lowercase().replace('-', " ")})))
        .await;
    assert_eq!(looked_up.status(), 200);
    assert_eq!(body_json(&looked_up)["email"], "grace@example.com");
    assert_eq!(body_json(&looked_up)["invitation_id"], invitation["invitation_id"]);
    assert_eq!(t.invitations.all()[0].redemptions, 0);

    let redeemed = t
        .send(
            &RedeemInvitation,
            Req::post("/redeem").json(json!({"code": code, "password": "Compiler-Pioneer-1952", "username": "grace"})),
        )
        .await;
    assert_eq!(redeemed.status(), 201, "{}", body_text(&redeemed));
    let body = body_json(&redeemed);
    assert_eq!(body["redirect_path"], "/profile?welcome=1");
    let session = cookie_value(&redeemed, "portal_session").expect("signed in");
    let profile = body_json(&t.send(&Profile, Req::get("/profile").cookie("portal_session", &session)).await);
    assert_eq!(profile["email"], "grace@example.com");
    assert_eq!(profile["roles"], json!(["Customers"]));
    assert_eq!(profile["email_confirmed"], true);
    assert_eq!(grace_contact(&t).account_id.as_deref(), Some("Contoso"));

    let again = t
        .send(&RedeemInvitation, Req::post("/redeem").json(json!({"code": code, "password": "Compiler-Pioneer-1952"})))
        .await;
    assert_eq!(again.status(), 400);
    assert_eq!(body_json(&again)["error"], "invitation_invalid");
    let shown = body_json(
        &t.send(
            &CreateInvitation,
            Req::get(&format!("/admin/invitations/{}", invitation["invitation_id"].as_str().unwrap()))
                .cookie("portal_session", &admin),
        )
        .await,
    );
    assert_eq!(shown["status"], "redeemed");
    assert_eq!(shown["redeemed_by"][0]["source_ip"], "198.51.100.7");
}

#[tokio::test]
async fn a_browser_redeems_through_the_form_and_lands_on_the_invitation_path() {
    let (t, admin) = with_admin(&[]).await;
    let (_, code) = invite_and_deliver(&t, &admin, grace()).await;
    let page = t.send(&RedeemInvitation, Req::get(&format!("/redeem?code={code}")).html()).await;
    let csrf = cookie_value(&page, "portal_csrf").unwrap();
    let done = t
        .send(
            &RedeemInvitation,
            Req::post("/redeem").form(&[("code", &code), ("password", "Compiler-Pioneer-1952")], &csrf),
        )
        .await;
    assert_eq!(done.status(), 303, "{}", body_text(&done));
    assert_eq!(location(&done).as_deref(), Some("/profile"));
    assert!(cookie_value(&done, "portal_session").is_some());
}

#[tokio::test]
async fn a_refused_redeem_form_shows_the_invitation_it_found_again() {
    let (t, admin) = with_admin(&[]).await;
    let (_, code) = invite_and_deliver(&t, &admin, grace()).await;
    let csrf = "c".repeat(43);
    let refused =
        t.send(&RedeemInvitation, Req::post("/redeem").form(&[("code", &code), ("password", "short")], &csrf)).await;
    assert_eq!(refused.status(), 400);
    let page = body_text(&refused);
    assert!(page.contains("Grace Hopper"), "the invitation is shown again: {page}");
    assert!(page.contains(&code), "with its code");
    let bad_code =
        t.send(&RedeemInvitation, Req::post("/redeem").form(&[("code", "WRONG"), ("password", "short")], &csrf)).await;
    assert_eq!(bad_code.status(), 400);
    assert!(!body_text(&bad_code).contains("Grace Hopper"), "a bad code shows no invitation");
}

#[tokio::test]
async fn unknown_expired_revoked_used_up_and_resent_codes_all_get_one_answer() {
    let (t, admin) = with_admin(&[]).await;
    let answer = |code: String| {
        let t = &t;
        async move {
            let response = t
                .send(
                    &RedeemInvitation,
                    Req::post("/redeem").json(json!({"code": code, "password": "Compiler-Pioneer-1952"})),
                )
                .await;
            (response.status().as_u16(), body_text(&response))
        }
    };
    let unknown = answer("0000-0000-0000-0000-0000-0000-0000-0000".into()).await;
    let malformed = answer("not a code".into()).await;

    let (revoked, revoked_code) =
        invite_and_deliver(&t, &admin, json!({"email": "r@example.com", "first_name": "R", "last_name": "V"})).await;
    let revoke = t
        .send(
            &CreateInvitation,
            admin_post(
                &format!("/admin/invitations/{}/revoke", revoked["invitation_id"].as_str().unwrap()),
                &admin,
                json!({}),
            ),
        )
        .await;
    assert_eq!(revoke.status(), 200);
    assert_eq!(body_json(&revoke)["status"], "revoked");
    let revoked_answer = answer(revoked_code).await;

    let (resent, old_code) =
        invite_and_deliver(&t, &admin, json!({"email": "s@example.com", "first_name": "S", "last_name": "R"})).await;
    let resend = t
        .send(
            &CreateInvitation,
            admin_post(
                &format!("/admin/invitations/{}/resend", resent["invitation_id"].as_str().unwrap()),
                &admin,
                json!({}),
            ),
        )
        .await;
    assert_eq!(resend.status(), 200, "{}", body_text(&resend));
    let new_code = code_in(&deliver(&t).await[0]);
    assert_ne!(new_code, old_code);
    let resent_answer = answer(old_code).await;
    assert_eq!(
        t.send(&RedeemInvitation, Req::post("/redeem").json(json!({"code": new_code}))).await.status(),
        200,
        "the new code works"
    );

    let (_, expiring_code) = invite_and_deliver(
        &t,
        &admin,
        json!({"email": "e@example.com", "first_name": "E", "last_name": "X", "expires_in_days": 1}),
    )
    .await;
    t.clock.advance(86_400);
    let expired_answer = answer(expiring_code).await;

    for other in [&malformed, &revoked_answer, &resent_answer, &expired_answer] {
        assert_eq!(other, &unknown);
    }
    assert_eq!(unknown.0, 400);
    assert!(unknown.1.contains("invitation_invalid"));
}

#[tokio::test]
async fn an_existing_account_takes_the_invitation_roles_and_account() {
    let (t, admin) = with_admin(&[]).await;
    let ada = t.send(&Register, Req::post("/register").json(registration("ada@example.com"))).await;
    assert_eq!(ada.status(), 201);
    let (_, code) = invite_and_deliver(&t, &admin, json!({"email": "ada@example.com", "first_name": "Ada", "last_name": "Lovelace", "roles": ["Partners"], "account_id": "Fabrikam"})).await;
    let wrong = t.send(&RedeemInvitation, Req::post("/redeem").json(json!({"code": code, "existing_account": true, "login": "ada@example.com", "password": "wrong-password-entirely"}))).await;
    assert_eq!(wrong.status(), 401);
    let new_credentials = t
        .send(&RedeemInvitation, Req::post("/redeem").json(json!({"code": code, "password": "Another-Password-2026"})))
        .await;
    assert_eq!(new_credentials.status(), 400, "a portal user redeems with their account");
    assert!(body_json(&new_credentials)["fields"]["existing_account"].is_string());
    let redeemed = t
        .send(
            &RedeemInvitation,
            Req::post("/redeem").json(
                json!({"code": code, "existing_account": true, "login": "ADA@example.com", "password": PASSWORD}),
            ),
        )
        .await;
    assert_eq!(redeemed.status(), 200, "{}", body_text(&redeemed));
    assert_eq!(body_json(&redeemed)["roles"], json!(["Partners"]));
    let ada = t.contacts.all().into_iter().find(|c| c.email == "ada@example.com").unwrap();
    assert_eq!(ada.account_id.as_deref(), Some("Fabrikam"));
}

#[tokio::test]
async fn a_group_invitation_creates_contacts_up_to_its_maximum() {
    let (t, admin) = with_admin(&[]).await;
    let (invitation, code) = invite_and_deliver(&t, &admin, json!({"email": "team@example.com", "first_name": "Team", "last_name": "Lead", "type": "group", "max_redemptions": 2, "roles": ["Members"]})).await;
    assert_eq!(invitation["max_redemptions"], 2);
    let missing = t
        .send(&RedeemInvitation, Req::post("/redeem").json(json!({"code": code, "password": "Compiler-Pioneer-1952"})))
        .await;
    assert_eq!(missing.status(), 400);
    assert!(body_json(&missing)["fields"]["email"].is_string());
    for (i, email) in ["m1@example.com", "m2@example.com", "m3@example.com"].iter().enumerate() {
        let response = t.send(&RedeemInvitation, Req::post("/redeem").json(json!({"code": code, "password": "Compiler-Pioneer-1952", "email": email, "first_name": "M", "last_name": format!("Member{i}")}))).await;
        let expected = if i < 2 { 201 } else { 400 };
        assert_eq!(response.status(), expected, "{email}: {}", body_text(&response));
    }
    let members: Vec<Contact> = t.contacts.all().into_iter().filter(|c| c.roles == ["Members"]).collect();
    assert_eq!(members.len(), 2);
}

#[tokio::test]
async fn ten_parallel_redemptions_of_a_single_code_give_one_success() {
    let (t, admin) = with_admin(&[]).await;
    let (_, code) = invite_and_deliver(&t, &admin, grace()).await;
    let attempts = (0..10).map(|_| {
        t.send(&RedeemInvitation, Req::post("/redeem").json(json!({"code": code, "password": "Compiler-Pioneer-1952"})))
    });
    let mut statuses: Vec<u16> =
        futures::future::join_all(attempts).await.iter().map(|r| r.status().as_u16()).collect();
    statuses.sort();
    assert_eq!(statuses, [201, 400, 400, 400, 400, 400, 400, 400, 400, 400]);
}

#[tokio::test]
async fn with_invitations_turned_off_redeem_is_a_404() {
    let t = test_portal(&[("PORTAL_INVITATIONS_ENABLED", "false")]);
    assert_eq!(t.send(&RedeemInvitation, Req::get("/redeem").html()).await.status(), 404);
    assert_eq!(t.send(&RedeemInvitation, Req::post("/redeem").json(json!({"code": "x"}))).await.status(), 404);
    let home = body_text(&t.send(&Profile, Req::get("/").html()).await);
    assert!(!home.contains("href=\"/redeem\""));
}

#[tokio::test]
async fn an_email_whose_code_was_replaced_or_revoked_before_sending_is_not_sent() {
    let (t, admin) = with_admin(&[]).await;
    let first = invite(&t, &admin, grace()).await;
    let id = first["invitation_id"].as_str().unwrap();
    let resent =
        t.send(&CreateInvitation, admin_post(&format!("/admin/invitations/{id}/resend"), &admin, json!({}))).await;
    assert_eq!(resent.status(), 200);
    let revoked = invite(&t, &admin, json!({"email": "r@example.com", "first_name": "R", "last_name": "V"})).await;
    let revoke = t
        .send(
            &CreateInvitation,
            admin_post(
                &format!("/admin/invitations/{}/revoke", revoked["invitation_id"].as_str().unwrap()),
                &admin,
                json!({}),
            ),
        )
        .await;
    assert_eq!(revoke.status(), 200);
    let sent = deliver(&t).await;
    assert_eq!(sent.len(), 1, "only the resent code goes out");
    assert_eq!(sent[0].to, "grace@example.com");
    let stored = t.invitations.get(&id.into()).await.unwrap().unwrap();
    assert_eq!(stored.delivery, Delivery::Sent);
    let failed: Vec<_> = invitation_messages(&t).into_iter().filter(|m| m.status == MessageStatus::Failed).collect();
    assert_eq!(failed.len(), 2);
    assert!(failed.iter().all(|m| m.secret.is_none() && m.error.as_deref().is_some_and(|e| e.contains("superseded"))));
}

#[tokio::test]
async fn the_contact_search_finds_contacts_beyond_the_listed_ones() {
    let (t, admin) = with_admin(&[]).await;
    let template = grace_like(&t, &admin).await;
    for i in 0..505 {
        let mut contact = template.clone();
        contact.contact_id = format!("contact-{i}").into();
        contact.email = Email::parse(&format!("person{i}@example.com")).unwrap();
        contact.created_at = Timestamp::from_secs(1_800_000_000) + i;
        t.contacts.put(contact);
    }
    let listed = |query: &str| {
        let t = &t;
        let admin = admin.clone();
        let path = format!("/admin/contacts{query}");
        async move {
            body_json(&t.send(&CreateInvitation, Req::get(&path).cookie("portal_session", &admin)).await)["contacts"]
                .as_array()
                .unwrap()
                .clone()
        }
    };
    let all = listed("?limit=200").await;
    assert_eq!(all.len(), 200, "a page holds at most the limit");
    assert_eq!(all[0]["email"], "person504@example.com", "newest first");
    let oldest = listed("?q=person0@").await;
    assert_eq!(oldest.len(), 1, "the search looks at every contact");
}

async fn grace_like(t: &TestPortal, admin: &str) -> Contact {
    let created = t.send(&CreateInvitation, admin_post("/admin/contacts", admin, grace())).await;
    assert_eq!(created.status(), 201);
    grace_contact(t)
}

#[tokio::test]
async fn guessing_codes_from_one_address_is_refused_after_its_allowance() {
    let (t, admin) = with_admin(&[("PORTAL_FAILURES_PER_ADDRESS_PER_HOUR", "3")]).await;
    let (_, code) = invite_and_deliver(&t, &admin, grace()).await;
    let look_up = |code: String, ip: &'static str| {
        t.send(&RedeemInvitation, Req::post("/redeem").json(json!({"code": code})).sent_from(ip))
    };
    for guess in 0..3 {
        let response = look_up(format!("{guess:0>32}"), "203.0.113.9").await;
        assert_eq!(body_json(&response)["error"], "invitation_invalid");
    }
    let refused = look_up(code.clone(), "203.0.113.9").await;
    assert_eq!(refused.status(), 429, "even a good code waits");
    assert!(refused.headers().contains_key("retry-after"));
    assert_eq!(look_up(code, "198.51.100.20").await.status(), 200, "another address is not affected");
}

/// Every kind of outbox message that goes to an account's address as it is, as a message that can
/// be sent (a secret, an expiry), with the account at that address (an `AccountExists` message is
/// addressed to its owner).
async fn one_message_of_each_kind(t: &TestPortal) -> Vec<OutboxMessage> {
    use portal::domain::contact::{Contact, NewContact};
    use portal::ports::ContactStore;
    let owner = NewContact {
        email: portal::domain::email::Email::parse("kind@example.com").unwrap(),
        first_name: "Kim".into(),
        last_name: "Lee".into(),
        username: None,
        phone: None,
        roles: vec![],
        password_hash: None,
    };
    t.contacts.create(&Contact::new(owner, t.clock.now())).await.unwrap();
    let kinds = [
        MessageKind::Invitation,
        MessageKind::ConfirmEmail,
        MessageKind::ResetPassword,
        MessageKind::AccountExists,
        MessageKind::PasswordChangedNotice,
        MessageKind::PasswordResetNotice,
    ];
    kinds
        .into_iter()
        .map(|kind| {
            let secret = Some(portal::domain::outbox::MailSecret::new("SECRET-1234".into()));
            let mut message = OutboxMessage::new(kind, "kind@example.com", "Kim", secret, t.clock.now());
            message.valid_until = Some(t.clock.now() + 3600);
            t.outbox.insert(message.clone());
            message
        })
        .collect()
}

#[tokio::test]
async fn a_delivery_during_another_runs_live_lease_is_retried_not_reported_done_for_every_kind() {
    use portal::ports::Outbox;
    let t = test_portal(&[]);
    for (i, message) in one_message_of_each_kind(&t).await.into_iter().enumerate() {
        let record = stream_record("INSERT", &message, 500 + i as u64);
        // Another run took the lease and has not finished (it may yet fail).
        let claim = t.outbox.claim(&message.message_id, t.clock.now()).await.unwrap();
        assert!(matches!(claim, portal::domain::outbox::Claim::Leased(_)), "{:?}", message.kind);
        assert_eq!(run_batch(&t, vec![record.clone()]).await, [(500 + i).to_string()], "{:?}", message.kind);
        assert_eq!(t.mailer.sent().len(), i, "nothing sent while the lease is live ({:?})", message.kind);
        // That run died; once its lease has run out, the stream's retry sends.
        t.clock.advance(portal::domain::outbox::LEASE_SECS);
        assert!(run_batch(&t, vec![record.clone()]).await.is_empty(), "{:?}", message.kind);
        assert!(run_batch(&t, vec![record]).await.is_empty(), "a later duplicate is done with");
        assert_eq!(t.mailer.sent().len(), i + 1, "exactly one email ({:?})", message.kind);
        assert_eq!(t.outbox.get(&message.message_id).unwrap().status, MessageStatus::Sent);
    }
}

#[tokio::test]
async fn a_lease_that_runs_out_soon_is_waited_out_and_the_stream_retries_outlast_any_lease() {
    use portal::domain::outbox::{BUSY_WAIT_SECS, LEASE_SECS};
    use portal::ports::Outbox;
    let (t, admin) = with_admin(&[]).await;
    invite(&t, &admin, grace()).await;
    let message = invitation_messages(&t).remove(0);
    let record = stream_record("INSERT", &message, 11);
    // Another run took the lease and died (a timeout) with 5 s of it left: this delivery waits
    // them out and sends, reporting nothing for a retry.
    t.outbox.claim(&message.message_id, t.clock.now() - (LEASE_SECS - 5)).await.unwrap();
    let before = t.clock.now();
    assert!(run_batch(&t, vec![record.clone()]).await.is_empty(), "sent after waiting, no retry spent");
    assert_eq!(t.clock.now() - before, 5, "it waited exactly what was left of the lease");
    assert_eq!(t.mailer.sent().len(), 1);

    // A whole lease left: each delivery waits at most BUSY_WAIT_SECS and then hands the record back;
    // the lease still runs out before the stream's five retries do (the template's
    // MaximumRetryAttempts), so the email goes out instead of landing in the failure queue.
    invite(&t, &admin, json!({"email": "ada@example.com", "first_name": "Ada", "last_name": "Lovelace"})).await;
    let ada = invitation_messages(&t).into_iter().find(|m| m.to == "ada@example.com").unwrap();
    let record = stream_record("INSERT", &ada, 12);
    t.outbox.claim(&ada.message_id, t.clock.now()).await.unwrap();
    let mut deliveries = 0;
    while !run_batch(&t, vec![record.clone()]).await.is_empty() {
        deliveries += 1;
        assert!(deliveries <= 5, "the record outlived the stream's retries");
    }
    assert!(deliveries >= 1 && (deliveries as i64) * BUSY_WAIT_SECS < LEASE_SECS + BUSY_WAIT_SECS);
    assert_eq!(t.mailer.sent().iter().filter(|m| m.to == "ada@example.com").count(), 1);
}

#[tokio::test]
async fn a_store_fault_after_claiming_gives_the_lease_back_and_the_retry_sends() {
    let (t, admin) = with_admin(&[]).await;
    invite(&t, &admin, grace()).await;
    let message = invitation_messages(&t).remove(0);
    let record = stream_record("INSERT", &message, 9);
    // The read of the invitation fails after the claim (in AWS: a missing IAM grant, a timeout).
    t.invitations.faults.fail_next("get", 1);
    assert_eq!(run_batch(&t, vec![record.clone()]).await, ["9"], "reported for a retry, never as done");
    let stored = t.outbox.get(&message.message_id).unwrap();
    assert_eq!((stored.status, stored.lease_until), (MessageStatus::Pending, None), "the lease was given back");
    assert!(t.mailer.sent().is_empty());
    assert!(run_batch(&t, vec![record]).await.is_empty());
    assert_eq!(t.mailer.sent().len(), 1);
}

#[tokio::test]
async fn a_fault_that_cannot_give_the_lease_back_leaves_it_to_expire_and_then_sends() {
    let (t, admin) = with_admin(&[]).await;
    invite(&t, &admin, grace()).await;
    let message = invitation_messages(&t).remove(0);
    let record = stream_record("INSERT", &message, 9);
    t.invitations.faults.fail_next("get", 1);
    t.outbox.faults.fail_next("release", 1);
    assert_eq!(run_batch(&t, vec![record.clone()]).await, ["9"]);
    assert_eq!(run_batch(&t, vec![record.clone()]).await, ["9"], "the lease is live: retried, not done");
    t.clock.advance(portal::domain::outbox::LEASE_SECS);
    assert!(run_batch(&t, vec![record]).await.is_empty());
    assert_eq!(t.mailer.sent().len(), 1);
    assert_eq!(t.outbox.get(&message.message_id).unwrap().attempts, 2);
}

#[tokio::test]
async fn after_ses_accepted_a_lost_write_never_sends_a_second_email() {
    let (t, admin) = with_admin(&[]).await;
    let invitation = invite(&t, &admin, grace()).await;
    let message = invitation_messages(&t).remove(0);
    let record = stream_record("INSERT", &message, 9);
    // Marking it sent fails once (tried again at once) and recording the delivery fails once.
    t.outbox.faults.fail_next("mark_sent", 1);
    t.invitations.faults.fail_next("record_delivery", 1);
    assert_eq!(run_batch(&t, vec![record.clone()]).await, ["9"], "the delivery record is missing: retry");
    assert_eq!(t.outbox.get(&message.message_id).unwrap().status, MessageStatus::Sent);
    assert!(run_batch(&t, vec![record.clone()]).await.is_empty(), "the retry records the delivery");
    assert_eq!(t.mailer.sent().len(), 1, "one email");
    let id = invitation["invitation_id"].as_str().unwrap();
    let stored = t.invitations.get(&id.into()).await.unwrap().unwrap();
    assert_eq!(stored.delivery, Delivery::Sent);

    // Marking it sent fails for good: the lease stays, so no retry sends again while it lasts.
    let (t, admin) = with_admin(&[]).await;
    invite(&t, &admin, grace()).await;
    let message = invitation_messages(&t).remove(0);
    let record = stream_record("INSERT", &message, 9);
    t.outbox.faults.fail_next("mark_sent", 3);
    assert_eq!(run_batch(&t, vec![record.clone()]).await, ["9"]);
    // A retry late in the lease waits (at most BUSY_WAIT_SECS) and finds it still held.
    use portal::domain::outbox::{BUSY_WAIT_SECS, LEASE_SECS};
    t.clock.advance(LEASE_SECS - BUSY_WAIT_SECS - 1);
    assert_eq!(run_batch(&t, vec![record]).await, ["9"]);
    assert_eq!(t.mailer.sent().len(), 1);
}

fn keyed(token: &str, key: &str, body: Value) -> Req {
    admin_post("/admin/invitations", token, body).header("idempotency-key", key)
}

#[tokio::test]
async fn a_retry_with_the_same_idempotency_key_and_body_gets_the_first_answer_and_creates_nothing() {
    let (t, admin) = with_admin(&[]).await;
    let first = t.send(&CreateInvitation, keyed(&admin, "retry-1", grace())).await;
    assert_eq!(first.status(), 201, "{}", body_text(&first));
    // The same fields in another order are the same request.
    let reordered = json!({"last_name": "Hopper", "first_name": "Grace", "email": "grace@example.com"});
    let again = t.send(&CreateInvitation, keyed(&admin, "retry-1", reordered)).await;
    assert_eq!(again.status(), 201);
    assert_eq!(body_json(&again), body_json(&first), "the first answer again");
    assert_eq!(t.invitations.all().len(), 1, "nothing new created");
    assert_eq!(invitation_messages(&t).len(), 1, "no second email queued");
    // Another key is another request.
    assert_eq!(t.send(&CreateInvitation, keyed(&admin, "retry-2", grace())).await.status(), 201);
    assert_eq!(t.invitations.all().len(), 2);
}

#[tokio::test]
async fn an_idempotency_key_reused_with_another_body_or_while_running_is_a_conflict() {
    use portal::domain::idempotency::{IdempotencyKey, KEY_SECS};
    let (t, admin) = with_admin(&[]).await;
    assert_eq!(t.send(&CreateInvitation, keyed(&admin, "k", grace())).await.status(), 201);
    let other = json!({"email": "ada@example.com", "first_name": "Ada", "last_name": "Lovelace"});
    let conflict = t.send(&CreateInvitation, keyed(&admin, "k", other.clone())).await;
    assert_eq!(conflict.status(), 422);
    assert_eq!(body_json(&conflict)["error"], "idempotency_conflict");
    assert_eq!(t.invitations.all().len(), 1);

    // A first request with key "busy" is still running (it holds the key, no answer yet).
    let admin_id = t.contacts.all().into_iter().find(|c| c.email.as_str() == ADMIN_EMAIL).unwrap().contact_id;
    let digest = portal::web::Fields::from_json(&other.to_string()).unwrap().digest();
    let held = IdempotencyKey::new("POST /admin/invitations", &admin_id, "busy", digest).unwrap();
    t.invitations.begin_idempotent(&held, t.clock.now()).await.unwrap();
    let running = t.send(&CreateInvitation, keyed(&admin, "busy", other.clone())).await;
    assert_eq!(running.status(), 409);
    assert_eq!(body_json(&running)["error"], "idempotency_conflict");

    // Keys live 24 hours: after that, the key is a new one, whatever it was used for.
    let later = IdempotencyKey { request_digest: "another request".into(), ..held };
    let start = t.invitations.begin_idempotent(&later, t.clock.now() + KEY_SECS).await.unwrap();
    assert_eq!(start, portal::domain::idempotency::IdempotentStart::First);
}

#[tokio::test]
async fn a_refused_request_lets_go_of_its_key_and_a_bad_key_is_a_clear_400() {
    let (t, admin) = with_admin(&[]).await;
    let refused = t.send(&CreateInvitation, keyed(&admin, "k", json!({"email": "not-an-email"}))).await;
    assert_eq!(refused.status(), 400);
    let fixed = t.send(&CreateInvitation, keyed(&admin, "k", grace())).await;
    assert_eq!(fixed.status(), 201, "the refused request did not keep the key: {}", body_text(&fixed));
    let too_long = t.send(&CreateInvitation, keyed(&admin, &"x".repeat(256), grace())).await;
    assert_eq!(too_long.status(), 400);
    assert_eq!(body_json(&too_long)["error"], "validation_failed");
}
