//! Handler tests for bounces and complaints (issue 19, item 5), on in-memory adapters: SES's
//! notification (an SNS event, as the `email-feedback` function gets it) marks the account's
//! address; staff and the person see it; send-email sends nothing more to it; a confirmation link
//! the person asks for, signed in, is the one email that goes, and following it lifts the mark; so
//! does moving to another address. A soft bounce marks nothing.

use aws_lambda_events::event::sns::SnsEvent;
use portal::domain::outbox::MessageStatus;
use portal::handlers::admin::CreateInvitation;
use portal::handlers::email_feedback;
use portal::handlers::profile::Profile;
use portal::handlers::register::Register;
use portal::handlers::sign_in::SignIn;
use portal::usecases::delivery::{self, UNDELIVERABLE};
use portal_testkit::*;
use serde_json::{Value, json};

const ADA: &str = "ada@example.com";

/// The SNS event of `events/email-feedback/` with this SES notification in it.
fn notification(ses: Value) -> SnsEvent {
    let text =
        std::fs::read_to_string(events_dir().join("email-feedback/permanent-bounce-unknown-address.json")).unwrap();
    let mut event: Value = serde_json::from_str(&text).unwrap();
    event["Records"][0]["Sns"]["Message"] = Value::String(ses.to_string());
    serde_json::from_value(event).unwrap()
}

fn bounce(kind: &str, address: &str) -> SnsEvent {
    notification(json!({
        "eventType": "Bounce",
        "bounce": {"bounceType": kind, "bounceSubType": "General",
                   "bouncedRecipients": [{"emailAddress": address, "status": "5.1.1"}]},
        "mail": {"messageId": "m-1", "destination": [address]}
    }))
}

fn complaint(address: &str) -> SnsEvent {
    notification(json!({
        "notificationType": "Complaint",
        "complaint": {"complainedRecipients": [{"emailAddress": address}], "complaintFeedbackType": "abuse"},
        "mail": {"messageId": "m-2"}
    }))
}

/// Delivers every pending outbox message as send-email does; the messages' final states.
async fn deliver_pending(t: &TestPortal) {
    for _ in 0..3 {
        let pending: Vec<_> = t.outbox.all().into_iter().filter(|m| m.status == MessageStatus::Pending).collect();
        for message in pending {
            delivery::deliver(&t.portal, &message).await.unwrap();
        }
    }
}

fn sent_to(t: &TestPortal, address: &str) -> Vec<String> {
    t.mailer.sent().into_iter().filter(|m| m.to == address).map(|m| m.subject).collect()
}

/// Ada, registered and signed in (her session), her welcome mail sent.
async fn ada(t: &TestPortal) -> String {
    let registered = t.send(&Register, Req::post("/register").json(registration(ADA))).await;
    assert_eq!(registered.status(), 201, "{}", body_text(&registered));
    deliver_pending(t).await;
    cookie_value(&registered, "portal_session").unwrap()
}

async fn profile(t: &TestPortal, session: &str) -> Value {
    body_json(&t.send(&Profile, Req::get("/profile").cookie("portal_session", session)).await)
}

async fn forgot_password(t: &TestPortal) {
    let asked = t.send(&SignIn, Req::post("/forgot-password").json(json!({"email": ADA}))).await;
    assert_eq!(asked.status(), 202);
    deliver_pending(t).await;
}

#[tokio::test]
async fn a_hard_bounce_stops_mail_until_the_person_confirms_the_address_again() {
    let t = test_portal(&[("PORTAL_EMAILS_PER_RECIPIENT_PER_HOUR", "20")]);
    let admin = t.administrator_session().await;
    let session = ada(&t).await;
    let ada_id = t.contacts.all().into_iter().find(|c| c.email == ADA).unwrap().contact_id;

    email_feedback::handle(&t.portal, bounce("Permanent", "Ada <ADA@Example.com>")).await.unwrap();
    let mark = &profile(&t, &session).await["email_undeliverable"];
    assert_eq!(mark["reason"], "bounce", "{mark}");
    assert_eq!(mark["detail"], "Permanent bounce (General), status 5.1.1");
    let staff_view = t
        .send(&CreateInvitation, Req::get(&format!("/admin/contacts/{ada_id}")).cookie("portal_session", &admin))
        .await;
    assert_eq!(body_json(&staff_view)["email_undeliverable"]["reason"], "bounce");
    let page = t
        .send(&CreateInvitation, Req::get(&format!("/admin/contacts/{ada_id}")).html().cookie("portal_session", &admin))
        .await;
    assert!(body_text(&page).contains("id=\"email-undeliverable\""), "staff see it on the account's page");
    let entries = t.contacts.audit_entries();
    let entry = entries.iter().find(|e| e.kind == "email_undeliverable").expect("an audit entry");
    assert_eq!(entry.contact_id.as_ref(), Some(&ada_id));
    assert!(!format!("{entry:?}").to_lowercase().contains("ada@example.com"), "the entry names no address");
    // The same notification again (SNS delivers at least once) changes nothing.
    email_feedback::handle(&t.portal, bounce("Permanent", ADA)).await.unwrap();
    assert_eq!(t.contacts.audit_entries().iter().filter(|e| e.kind == "email_undeliverable").count(), 1);

    // Mail to her stops: a reset link is not sent, and its message fails saying why.
    let before = t.mailer.sent().len();
    forgot_password(&t).await;
    assert_eq!(t.mailer.sent().len(), before, "nothing sent to a marked address");
    assert!(t.outbox.all().iter().any(|m| m.error.as_deref() == Some(UNDELIVERABLE)));
    // Someone else asking a confirmation link for her address gets nothing sent either.
    let stranger = t.send(&Register, Req::post("/confirm-email").json(json!({"email": ADA}))).await;
    assert_eq!(stranger.status(), 202);
    deliver_pending(&t).await;
    assert_eq!(t.mailer.sent().len(), before);

    // She asks, signed in: the link goes, and following it lets mail through again.
    let asked = t
        .send(&Register, Req::post("/confirm-email").json(json!({"email": ADA})).cookie("portal_session", &session))
        .await;
    assert_eq!(asked.status(), 202);
    deliver_pending(&t).await;
    let link = t.mailer.sent().into_iter().rev().find(|m| m.to == ADA).expect("the confirmation link went out");
    let token = link_in(&link, "/confirm-email");
    let confirmed = t.send(&Register, Req::post("/confirm-email").json(json!({"token": token}))).await;
    assert_eq!(confirmed.status(), 200, "{}", body_text(&confirmed));
    assert_eq!(profile(&t, &session).await["email_undeliverable"], Value::Null);
    let sent = t.mailer.sent().len();
    forgot_password(&t).await;
    assert_eq!(t.mailer.sent().len(), sent + 1, "mail reaches her again: {:?}", sent_to(&t, ADA));
}

#[tokio::test]
async fn a_complaint_marks_the_address_and_moving_to_another_address_lifts_it() {
    let t = test_portal(&[("PORTAL_EMAILS_PER_RECIPIENT_PER_HOUR", "20")]);
    let session = ada(&t).await;
    email_feedback::handle(&t.portal, complaint(ADA)).await.unwrap();
    let mark = &profile(&t, &session).await["email_undeliverable"];
    assert_eq!((mark["reason"].as_str(), mark["detail"].as_str()), (Some("complaint"), Some("complaint (abuse)")));
    let page = t.send(&Profile, Req::get("/profile").html().cookie("portal_session", &session)).await;
    assert!(body_text(&page).contains("id=\"reconfirm-form\""), "the person is offered a confirmation link");

    // She moves to a new address, one that bounced once before (someone else's typo, say): the
    // change's link goes all the same, and following it moves the account and lifts both marks.
    email_feedback::handle(&t.portal, bounce("Permanent", "ada.new@example.com")).await.unwrap();
    let change = json!({"email": "ada.new@example.com", "first_name": "Ada", "last_name": "Lovelace", "current_password": PASSWORD});
    let changed = t.send(&Profile, Req::post("/profile").json(change).cookie("portal_session", &session)).await;
    assert_eq!(changed.status(), 200, "{}", body_text(&changed));
    deliver_pending(&t).await;
    let link =
        t.mailer.sent().into_iter().rev().find(|m| m.to == "ada.new@example.com").expect("the new address's link");
    let moved =
        t.send(&Register, Req::post("/confirm-email").json(json!({"token": link_in(&link, "/confirm-email")}))).await;
    assert_eq!(moved.status(), 200, "{}", body_text(&moved));
    let contact = t.contacts.all().into_iter().find(|c| c.email == "ada.new@example.com").expect("moved");
    assert_eq!(contact.email_undeliverable, None);
    let new_address = portal::domain::email::Email::parse("ada.new@example.com").unwrap();
    assert!(!t.portal.contacts.is_undeliverable(&new_address).await.unwrap(), "the link proved the new address");
}

#[tokio::test]
async fn a_soft_bounce_marks_nothing_and_an_unreadable_notification_is_dropped() {
    let t = test_portal(&[]);
    let session = ada(&t).await;
    email_feedback::handle(&t.portal, bounce("Transient", ADA)).await.unwrap();
    email_feedback::handle(&t.portal, notification(json!({"eventType": "Delivery", "mail": {}}))).await.unwrap();
    let mut garbage = notification(json!({}));
    garbage.records[0].sns.message = "not an SES notification".into();
    email_feedback::handle(&t.portal, garbage).await.unwrap();
    assert_eq!(profile(&t, &session).await["email_undeliverable"], Value::Null);
    assert!(!t.contacts.audit_entries().iter().any(|e| e.kind == "email_undeliverable"));
    // A bounce for an address no account has is kept for send-email all the same.
    email_feedback::handle(&t.portal, bounce("Permanent", "nobody-here@example.com")).await.unwrap();
    let nobody = portal::domain::email::Email::parse("nobody-here@example.com").unwrap();
    assert!(t.portal.contacts.is_undeliverable(&nobody).await.unwrap());
}
