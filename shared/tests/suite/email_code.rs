//! Handler tests for the emailed-code sign-in (issue 21), on in-memory adapters: the request
//! answers alike for any address, the code signs in once through the door, five wrong codes void
//! it, an account with TOTP still takes its second step, and the setting switches it off.

use portal::handlers::profile::Profile;
use portal::handlers::register::Register;
use portal::handlers::sign_in::SignIn;
use portal_testkit::*;
use serde_json::{Value, json};

const ADA: &str = "ada@example.com";
const SUBJECT: &str = "Your sign-in code";

async fn request(t: &TestPortal, email: &str) -> HttpResponse {
    t.send(&SignIn, Req::post("/signin/email-code").json(json!({"email": email}))).await
}

async fn verify(t: &TestPortal, code: &str) -> HttpResponse {
    t.send(&SignIn, Req::post("/signin/email-code/verify").json(json!({"email": ADA, "code": code}))).await
}

/// The code in the newest sign-in code email to Ada among `mail`.
fn code_in(mail: &[portal::ports::OutgoingEmail]) -> String {
    let email = mail.iter().rev().find(|m| m.subject == SUBJECT && m.to == ADA).expect("a sign-in code email");
    email.text.split_whitespace().find(|w| w.len() == 6 && w.chars().all(|c| c.is_ascii_digit())).unwrap().to_string()
}

/// The code of the newest sign-in code email to Ada (the outbox delivered first, as send-email does).
async fn emailed_code(t: &TestPortal) -> String {
    code_in(&t.mailbox().await)
}

async fn ada(overrides: &[(&str, &str)]) -> TestPortal {
    let t = test_portal(overrides);
    let registered = t.send(&Register, Req::post("/register").json(registration(ADA))).await;
    assert_eq!(registered.status(), 201);
    t.mailbox().await;
    t
}

#[tokio::test]
async fn an_emailed_code_signs_in_once_and_the_request_answers_alike_for_any_address() {
    let t = ada(&[]).await;
    let known = request(&t, ADA).await;
    let unknown = request(&t, "nobody@example.com").await;
    assert_eq!((known.status().as_u16(), unknown.status().as_u16()), (202, 202));
    assert_eq!(body_json(&known), json!({"status": "email_sent"}));
    assert_eq!(body_json(&known), body_json(&unknown), "the same answer for an address no account has");
    let mail = t.mailbox().await;
    let code = code_in(&mail);
    assert_eq!(mail.iter().filter(|m| m.subject == SUBJECT).count(), 1, "one code, and none for nobody@example.com");
    assert!(!format!("{:?}", t.outbox.all()).contains(&code), "the code is not stored as it is");

    let wrong = verify(&t, if code == "000000" { "111111" } else { "000000" }).await;
    assert_eq!(wrong.status(), 401);
    assert_eq!(body_json(&wrong)["error"], "invalid_credentials");
    let signed_in = verify(&t, &code).await;
    assert_eq!(signed_in.status(), 200, "{}", body_text(&signed_in));
    let session = cookie_value(&signed_in, "portal_session").expect("a session");
    let sessions = t.send(&Profile, Req::get("/profile/sessions").cookie("portal_session", &session)).await;
    let rows: Vec<Value> = body_json(&sessions)["sessions"].as_array().unwrap().clone();
    assert!(rows.iter().any(|s| s["current"] == true && s["method"] == "email_code"), "{rows:?}");
    assert!(t.contacts.audit_entries().iter().any(|e| e.kind == "signed_in" && e.detail["method"] == "email_code"));
    assert_eq!(verify(&t, &code).await.status(), 401, "a code works once");
}

#[tokio::test]
async fn five_wrong_codes_void_the_code_and_each_counts_towards_the_lockout() {
    let t = ada(&[
        ("PORTAL_LOCKOUT_THRESHOLD", "20"),
        ("PORTAL_FAILURES_PER_ADDRESS_PER_HOUR", "1000"),
        ("PORTAL_EMAILS_PER_RECIPIENT_PER_HOUR", "10"),
    ])
    .await;
    request(&t, ADA).await;
    let code = emailed_code(&t).await;
    let wrong = if code == "000000" { "111111" } else { "000000" };
    for _ in 0..5 {
        assert_eq!(verify(&t, wrong).await.status(), 401);
    }
    assert_eq!(verify(&t, &code).await.status(), 401, "void after five wrong codes");
    let stored = t.contacts.all().into_iter().find(|c| c.email.as_str() == ADA).unwrap();
    assert!(stored.failed_sign_ins >= 6, "each counted: {}", stored.failed_sign_ins);

    // A new code works; a code expires after ten minutes.
    request(&t, ADA).await;
    let fresh = emailed_code(&t).await;
    assert_eq!(verify(&t, &fresh).await.status(), 200);
    request(&t, ADA).await;
    let late = emailed_code(&t).await;
    t.clock.advance(601);
    assert_eq!(verify(&t, &late).await.status(), 401);
}

#[tokio::test]
async fn an_account_with_totp_takes_its_second_step_after_the_code() {
    let t = test_portal(&[]);
    let session = portal_testkit::two_factor::register_ada(&t).await;
    portal_testkit::two_factor::set_up_totp(&t, &session).await;
    t.mailbox().await;
    request(&t, ADA).await;
    let code = emailed_code(&t).await;
    let answer = verify(&t, &code).await;
    assert_eq!(answer.status(), 200, "{}", body_text(&answer));
    let body = body_json(&answer);
    assert_eq!(body["status"], "second_factor_required");
    assert!(!body["methods"].as_array().unwrap().contains(&json!("email")), "not the same mailbox twice: {body}");
    assert_eq!(cookie_value(&answer, "portal_session"), None);
    assert!(cookie_value(&answer, "portal_pending").is_some());
}

#[tokio::test]
async fn the_pages_offer_it_and_the_setting_switches_it_off() {
    let t = ada(&[]).await;
    let signin = body_text(&t.send(&SignIn, Req::get("/signin").html()).await);
    assert!(signin.contains("/signin/email-code"));
    let form = t.send(&SignIn, Req::get("/signin/email-code").html()).await;
    assert_eq!(form.status(), 200);
    let sent = t.send(&SignIn, Req::post("/signin/email-code").form(&[("email", ADA)], "csrf-token-1")).await;
    assert_eq!(sent.status(), 200, "{}", body_text(&sent));
    assert!(body_text(&sent).contains("email-code-verify-form"), "the code form follows");

    let off = ada(&[("PORTAL_EMAIL_CODE_SIGN_IN", "false")]).await;
    assert_eq!(request(&off, ADA).await.status(), 404);
    assert_eq!(off.send(&SignIn, Req::get("/signin/email-code").html()).await.status(), 404);
    assert!(!body_text(&off.send(&SignIn, Req::get("/signin").html()).await).contains("/signin/email-code"));
}
