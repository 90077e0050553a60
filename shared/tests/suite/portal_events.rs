//! Portal events (CONTRACT.md "Events"): each fact is queued in the outbox in the write that
//! commits it (and a refused write queues none), its detail holds ids and never a secret, and
//! `send-email` publishes each event item once under the outbox's lease rule. In-memory adapters.

use portal::adapters::eventbridge;
use portal::domain::event::{Fact, PortalEvent};
use portal::domain::outbox::{MessageKind, MessageStatus, OutboxMessage};
use portal::handlers::admin::CreateInvitation;
use portal::handlers::profile::Profile;
use portal::handlers::redeem::RedeemInvitation;
use portal::handlers::register::Register;
use portal::handlers::send_email;
use portal::handlers::sign_in::SignIn;
use portal::ports::{Clock, Outbox, OutgoingEmail, SendError};
use portal_testkit::*;
use serde_json::{Value, json};

const ADMIN_EMAIL: &str = "admin@example.com";
const NEW_PASSWORD: &str = "Another-Passphrase-2024";

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

async fn invite(t: &TestPortal, admin: &str, body: Value) -> Value {
    let response = t.send(&CreateInvitation, admin_post("/admin/invitations", admin, body)).await;
    assert_eq!(response.status(), 201, "{}", body_text(&response));
    body_json(&response)
}

fn grace() -> Value {
    json!({"email": "grace@example.com", "first_name": "Grace", "last_name": "Hopper"})
}

/// A DynamoDB stream record as Lambda delivers it, for an outbox message.
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

/// Runs one stream batch through send-email; returns the sequence numbers reported for a retry.
async fn run_batch(t: &TestPortal, messages: &[OutboxMessage]) -> Vec<String> {
    let records: Vec<Value> = messages.iter().enumerate().map(|(i, m)| stream_record(m, 100 + i as u64)).collect();
    let event: aws_lambda_events::event::dynamodb::Event =
        serde_json::from_value(json!({ "Records": records })).unwrap();
    let response = send_email::handle(&t.portal, event).await;
    response.batch_item_failures.iter().map(|f| f.item_identifier.clone().unwrap()).collect()
}

/// Sends every pending invitation email through send-email; returns what the mailer got.
async fn deliver_invitations(t: &TestPortal) -> Vec<OutgoingEmail> {
    let before = t.mailer.sent().len();
    let pending: Vec<OutboxMessage> = t
        .outbox
        .all()
        .into_iter()
        .filter(|m| m.kind == MessageKind::Invitation && m.status == MessageStatus::Pending)
        .collect();
    assert!(run_batch(t, &pending).await.is_empty());
    t.mailer.sent()[before..].to_vec()
}

fn code_in(email: &OutgoingEmail) -> String {
    let link = email.text.lines().find(|l| l.contains("/redeem?code=")).expect("a redeem link");
    link.split("code=").nth(1).unwrap().trim().to_string()
}

/// The queued events of one fact's name, oldest first.
fn queued(t: &TestPortal, name: &str) -> Vec<PortalEvent> {
    t.outbox.events().into_iter().filter(|e| e.detail_type() == name).collect()
}

fn contact_id_of(t: &TestPortal, email: &str) -> String {
    t.contacts.all().into_iter().find(|c| c.email.as_str() == email).expect("the contact").contact_id.to_string()
}

#[tokio::test]
async fn a_registration_queues_contact_registered_in_its_write_and_a_refused_one_queues_nothing() {
    let t = test_portal(&[]);
    assert_eq!(t.send(&Register, Req::post("/register").json(registration("ada@example.com"))).await.status(), 201);
    let ada = contact_id_of(&t, "ada@example.com");
    let registered = queued(&t, "ContactRegistered");
    assert_eq!(registered.len(), 1);
    assert_eq!(
        registered[0].fact,
        Fact::ContactRegistered { contact_id: ada.as_str().into(), method: "password".into() }
    );
    assert_eq!(registered[0].occurred_at, t.clock.now());

    // The address is taken: the contact's write is refused, and with it the event.
    let mut again = registration("ada@example.com");
    again["password"] = json!("Some-Other-Passphrase-99");
    assert_eq!(t.send(&Register, Req::post("/register").json(again)).await.status(), 409);
    assert_eq!(queued(&t, "ContactRegistered").len(), 1, "no event for a registration that was refused");
    assert_eq!(t.outbox.events().len(), 1);
}

#[tokio::test]
async fn a_registration_awaiting_confirmation_is_registered_too_but_a_taken_address_is_not() {
    let t = test_portal(&[("PORTAL_REQUIRE_CONFIRMATION", "true")]);
    assert_eq!(t.send(&Register, Req::post("/register").json(registration("ada@example.com"))).await.status(), 202);
    let ada = contact_id_of(&t, "ada@example.com");
    assert_eq!(
        queued(&t, "ContactRegistered")[0].fact,
        Fact::ContactRegistered { contact_id: ada.into(), method: "password".into() }
    );
    // Same answer for the taken address, but nothing was registered: no event.
    assert_eq!(t.send(&Register, Req::post("/register").json(registration("ada@example.com"))).await.status(), 202);
    assert_eq!(queued(&t, "ContactRegistered").len(), 1);
}

#[tokio::test]
async fn an_invitations_life_queues_created_sent_redeemed_and_revoked_with_their_ids() {
    let (t, admin) = with_admin(&[]).await;
    let invitation = invite(&t, &admin, grace()).await;
    let invitation_id = invitation["invitation_id"].as_str().unwrap().to_string();
    let grace_id = contact_id_of(&t, "grace@example.com");
    let created = queued(&t, "InvitationCreated");
    assert_eq!(
        created.iter().map(|e| &e.fact).collect::<Vec<_>>(),
        [&Fact::InvitationCreated {
            invitation_id: invitation_id.as_str().into(),
            contact_id: grace_id.as_str().into()
        }]
    );

    let emails = deliver_invitations(&t).await;
    assert_eq!(emails.len(), 1);
    assert_eq!(
        queued(&t, "InvitationSent").iter().map(|e| &e.fact).collect::<Vec<_>>(),
        [&Fact::InvitationSent {
            invitation_id: invitation_id.as_str().into(),
            contact_id: Some(grace_id.as_str().into())
        }],
        "queued when the email was marked sent"
    );

    let code = code_in(&emails[0]);
    let redeemed = t
        .send(&RedeemInvitation, Req::post("/redeem").json(json!({"code": code, "password": "Compiler-Pioneer-1952"})))
        .await;
    assert_eq!(redeemed.status(), 201, "{}", body_text(&redeemed));
    assert_eq!(
        queued(&t, "InvitationRedeemed").iter().map(|e| &e.fact).collect::<Vec<_>>(),
        [&Fact::InvitationRedeemed {
            invitation_id: invitation_id.as_str().into(),
            contact_id: grace_id.as_str().into(),
            created: true
        }]
    );
    assert!(
        queued(&t, "ContactRegistered")
            .iter()
            .any(|e| e.fact
                == Fact::ContactRegistered { contact_id: grace_id.as_str().into(), method: "password".into() }),
        "new credentials make a registration by invitation"
    );

    // Used up: the second redemption's write is refused, and queues nothing.
    let again = t
        .send(&RedeemInvitation, Req::post("/redeem").json(json!({"code": code, "password": "Compiler-Pioneer-1952"})))
        .await;
    assert_eq!(again.status(), 400, "{}", body_text(&again));
    assert_eq!(queued(&t, "InvitationRedeemed").len(), 1);

    let revoke = format!("/admin/invitations/{invitation_id}/revoke");
    assert_eq!(t.send(&CreateInvitation, admin_post(&revoke, &admin, json!({}))).await.status(), 200);
    assert_eq!(t.send(&CreateInvitation, admin_post(&revoke, &admin, json!({}))).await.status(), 200);
    assert_eq!(
        queued(&t, "InvitationRevoked").iter().map(|e| &e.fact).collect::<Vec<_>>(),
        [&Fact::InvitationRevoked { invitation_id: invitation_id.as_str().into() }],
        "revoking a revoked invitation is no new fact"
    );
    let missing = t.send(&CreateInvitation, admin_post("/admin/invitations/nope/revoke", &admin, json!({}))).await;
    assert_eq!(missing.status(), 404);
    assert_eq!(queued(&t, "InvitationRevoked").len(), 1);
}

#[tokio::test]
async fn an_existing_account_redeeming_is_redeemed_but_not_created() {
    let (t, admin) = with_admin(&[]).await;
    assert_eq!(t.send(&Register, Req::post("/register").json(registration("ada@example.com"))).await.status(), 201);
    let ada = contact_id_of(&t, "ada@example.com");
    let invitation = invite(&t, &admin, json!({"contact_id": ada})).await;
    let code = code_in(&deliver_invitations(&t).await[0]);
    let body = json!({"code": code, "existing_account": true, "login": "ada@example.com", "password": PASSWORD});
    let redeemed = t.send(&RedeemInvitation, Req::post("/redeem").json(body)).await;
    assert_eq!(redeemed.status(), 200, "{}", body_text(&redeemed));
    let (event,) = <[PortalEvent; 1]>::try_from(queued(&t, "InvitationRedeemed")).map(|[e]| (e,)).unwrap();
    assert_eq!(
        event.fact,
        Fact::InvitationRedeemed {
            invitation_id: invitation["invitation_id"].as_str().unwrap().into(),
            contact_id: ada.as_str().into(),
            created: false
        }
    );
    assert_eq!(event.detail()["created"], false);
    assert_eq!(queued(&t, "ContactRegistered").len(), 2, "admin and Ada registered; no new registration");
}

#[tokio::test]
async fn a_refused_invitation_email_queues_delivery_failed() {
    let (t, admin) = with_admin(&[]).await;
    let invitation = invite(&t, &admin, grace()).await;
    t.mailer.fail_next(SendError::Permanent("MessageRejected: address suppressed".into()));
    assert!(deliver_invitations(&t).await.is_empty());
    let failed = queued(&t, "InvitationDeliveryFailed");
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].detail()["invitation_id"], invitation["invitation_id"]);
    assert!(queued(&t, "InvitationSent").is_empty());
}

#[tokio::test]
async fn password_changes_and_resets_queue_password_changed_and_a_wrong_password_queues_nothing() {
    let t = test_portal(&[]);
    let session = cookie_value(
        &t.send(&Register, Req::post("/register").json(registration("ada@example.com"))).await,
        "portal_session",
    )
    .unwrap();
    let ada = contact_id_of(&t, "ada@example.com");
    let change = |current: &str| {
        let body = json!({"current_password": current, "new_password": NEW_PASSWORD});
        t.send(&Profile, Req::post("/profile/password").json(body).cookie("portal_session", &session))
    };
    assert_eq!(change("Not-The-Password-At-All").await.status(), 400);
    assert!(queued(&t, "PasswordChanged").is_empty());
    let changed = change(PASSWORD).await;
    assert_eq!(changed.status(), 204, "{}", body_text(&changed));
    assert_eq!(queued(&t, "PasswordChanged").len(), 1);

    t.mailbox().await;
    t.send(&SignIn, Req::post("/forgot-password").json(json!({"email": "ada@example.com"}))).await;
    let token = link_in(&t.mailbox().await[0], "/reset-password");
    let reset = |password: &'static str| {
        t.send(&SignIn, Req::post("/reset-password").json(json!({"token": token, "new_password": password})))
    };
    assert_eq!(reset("Brand-New-Passphrase-77").await.status(), 204);
    assert_eq!(reset("Brand-New-Passphrase-78").await.status(), 400, "a used link");
    let changed = queued(&t, "PasswordChanged");
    assert_eq!(changed.len(), 2, "the change and the one reset");
    assert!(changed.iter().all(|e| e.fact == Fact::PasswordChanged { contact_id: ada.as_str().into() }));
}

#[tokio::test]
async fn a_confirmed_new_address_queues_email_changed_and_the_request_alone_does_not() {
    let t = test_portal(&[]);
    let session = cookie_value(
        &t.send(&Register, Req::post("/register").json(registration("ada@example.com"))).await,
        "portal_session",
    )
    .unwrap();
    let ada = contact_id_of(&t, "ada@example.com");
    t.mailbox().await;
    let edit = json!({"email": "ada@lovelace.example", "current_password": PASSWORD});
    assert_eq!(
        t.send(&Profile, Req::post("/profile").json(edit).cookie("portal_session", &session)).await.status(),
        200
    );
    assert!(queued(&t, "EmailChanged").is_empty(), "pending until confirmed");
    let mail = t.mailbox().await;
    let link = mail.iter().find(|m| m.to == "ada@lovelace.example").expect("the confirmation link");
    let confirmed =
        t.send(&Register, Req::post("/confirm-email").json(json!({"token": link_in(link, "/confirm-email")}))).await;
    assert_eq!(confirmed.status(), 200, "{}", body_text(&confirmed));
    let changed = queued(&t, "EmailChanged");
    assert_eq!(changed.len(), 1);
    assert_eq!(changed[0].fact, Fact::EmailChanged { contact_id: ada.into() });
}

#[tokio::test]
async fn no_detail_holds_a_code_a_token_a_password_a_hash_or_an_address() {
    let (t, admin) = with_admin(&[]).await;
    invite(&t, &admin, grace()).await;
    let code = code_in(&deliver_invitations(&t).await[0]);
    let redeemed = t
        .send(&RedeemInvitation, Req::post("/redeem").json(json!({"code": code, "password": "Compiler-Pioneer-1952"})))
        .await;
    assert_eq!(redeemed.status(), 201);
    let hash = t.contacts.all().into_iter().find_map(|c| c.password_hash).expect("a hash");
    let hash = serde_json::to_value(&hash).unwrap().as_str().unwrap().to_string();
    assert!(hash.starts_with("$argon2id$"));
    let details: Vec<String> = t.outbox.events().iter().map(|e| e.detail().to_string()).collect();
    assert!(details.len() >= 5, "{details:?}");
    let digest = t.invitations.all()[0].code_digest.clone();
    let forbidden =
        [code.as_str(), &code.replace('-', ""), "Compiler-Pioneer-1952", PASSWORD, hash.as_str(), &digest, "@"];
    for detail in &details {
        for secret in forbidden {
            assert!(!detail.contains(secret), "{detail} holds {secret:?}");
        }
    }
    // Nor does the outbox item carrying an event hold any secret of its own.
    assert!(t.outbox.event_messages().iter().all(|m| m.secret.is_none() && m.to.is_empty()));
}

#[tokio::test]
async fn send_email_publishes_each_event_once_even_when_the_batch_is_retried() {
    let (t, admin) = with_admin(&[]).await;
    invite(&t, &admin, grace()).await;
    let items = t.outbox.event_messages();
    assert_eq!(items.len(), 2, "the admin's registration and the invitation");
    assert!(run_batch(&t, &items).await.is_empty());
    let published = t.bus.published();
    assert_eq!(published, t.outbox.events(), "each event as queued, in order");
    assert!(t.outbox.event_messages().iter().all(|m| m.status == MessageStatus::Sent), "marked published");

    // Lambda delivers the same batch again (a retried batch, or a second consumer).
    assert!(run_batch(&t, &items).await.is_empty());
    t.clock.advance(3_600);
    assert!(run_batch(&t, &items).await.is_empty());
    assert_eq!(t.bus.published(), published, "published once");
}

#[tokio::test]
async fn a_bus_fault_gives_the_lease_back_and_the_retry_publishes() {
    let t = test_portal(&[]);
    t.send(&Register, Req::post("/register").json(registration("ada@example.com"))).await;
    let items = t.outbox.event_messages();
    t.bus.fail_next(1);
    assert_eq!(run_batch(&t, &items).await, ["100"], "reported for the stream's retry");
    assert!(t.bus.published().is_empty());
    let item = t.outbox.get(&items[0].message_id).unwrap();
    assert_eq!((item.status, item.lease_until), (MessageStatus::Pending, None), "the lease was given back");

    assert!(run_batch(&t, &items).await.is_empty(), "the retry publishes at once");
    assert_eq!(t.bus.published(), t.outbox.events());
    assert!(run_batch(&t, &items).await.is_empty());
    assert_eq!(t.bus.published().len(), 1, "and only once");
}

#[tokio::test]
async fn a_delivery_during_another_runs_lease_does_not_publish_and_the_lease_keeps_a_lost_mark_from_repeating() {
    let t = test_portal(&[]);
    t.send(&Register, Req::post("/register").json(registration("ada@example.com"))).await;
    let items = t.outbox.event_messages();
    let now = t.clock.now();
    // Another consumer holds the lease: this delivery neither publishes nor reports it done.
    assert!(matches!(
        t.outbox.claim(&items[0].message_id, now).await.unwrap(),
        portal::domain::outbox::Claim::Leased(_)
    ));
    assert_eq!(run_batch(&t, &items).await, ["100"]);
    assert!(t.bus.published().is_empty());

    // That consumer died; after its lease, a retry publishes.
    t.clock.advance(portal::domain::outbox::LEASE_SECS + 1);
    // The bus takes it but marking it published fails every try: the lease is kept.
    t.outbox.faults.fail_next("mark_sent", 3);
    assert_eq!(run_batch(&t, &items).await, ["100"]);
    assert_eq!(t.bus.published().len(), 1);
    assert_eq!(run_batch(&t, &items).await, ["100"], "a retry within the lease waits");
    assert_eq!(t.bus.published().len(), 1, "and publishes nothing again");
}

#[test]
fn the_put_events_entry_carries_source_portal_the_fact_name_and_the_detail() {
    let event = Fact::InvitationRedeemed { invitation_id: "inv-1".into(), contact_id: "c-1".into(), created: true }
        .at(portal::domain::time::Timestamp::from_secs(1_800_000_000));
    let entry = eventbridge::entry("portal-events", &event);
    assert_eq!(entry.event_bus_name(), Some("portal-events"));
    assert_eq!(entry.source(), Some("portal"));
    assert_eq!(entry.detail_type(), Some("InvitationRedeemed"));
    let detail: Value = serde_json::from_str(entry.detail().unwrap()).unwrap();
    assert_eq!(detail, event.detail());
    assert_eq!(detail["event_id"], event.event_id.as_str());
    assert_eq!(entry.time().map(|t| t.secs()), Some(1_800_000_000));
}

#[tokio::test]
async fn the_sample_event_record_is_published_as_its_fact() {
    let t = test_portal(&[]);
    let text = std::fs::read_to_string(events_dir().join("send-email/insert-portal-event.json")).unwrap();
    let event: aws_lambda_events::event::dynamodb::Event = serde_json::from_str(&text).unwrap();
    let message: OutboxMessage = serde_dynamo::from_item(event.records[0].change.new_image.clone()).unwrap();
    t.outbox.insert(message);
    assert!(send_email::handle(&t.portal, event).await.batch_item_failures.is_empty());
    let published = t.bus.published();
    assert_eq!(published.len(), 1);
    assert_eq!(published[0].detail_type(), "InvitationRedeemed");
    assert_eq!(published[0].detail()["created"], true);
    assert_eq!(published[0].detail()["occurred_at"], "2025-11-27T09:51:00Z");
}
