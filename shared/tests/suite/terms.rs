//! Handler tests for the terms of use (issue 23): a session that has not accepted the current
//! version reaches only `/terms`; accepting there (or in the registration form) lifts the limit,
//! stored with its version and time and audited.

use portal::handlers::profile::Profile;
use portal::handlers::register::Register;
use portal::handlers::sign_in::SignIn;
use portal_testkit::*;
use serde_json::json;

const ADA: &str = "ada@example.com";
const TERMS: [(&str, &str); 2] =
    [("PORTAL_TERMS_VERSION", "2026-12"), ("PORTAL_TERMS_URL", "https://example.com/terms")];

#[tokio::test]
async fn a_session_without_the_current_terms_reaches_only_the_terms_until_they_are_accepted() {
    let t = test_portal(&TERMS);
    let registered = t.send(&Register, Req::post("/register").json(registration(ADA))).await;
    assert_eq!(registered.status(), 201);
    let session = cookie_value(&registered, "portal_session").unwrap();
    let refused = t.send(&Profile, Req::get("/profile").cookie("portal_session", &session)).await;
    assert_eq!(refused.status(), 403);
    let body = body_json(&refused);
    assert_eq!((body["error"].as_str(), body["terms_required"].as_bool()), (Some("forbidden"), Some(true)));
    let page = t.send(&Profile, Req::get("/profile").html().cookie("portal_session", &session)).await;
    assert_eq!(location(&page).as_deref(), Some("/terms"), "a browser is sent to the terms");

    let shown = body_json(&t.send(&Profile, Req::get("/terms").cookie("portal_session", &session)).await);
    assert_eq!(
        shown,
        json!({"version": "2026-12", "url": "https://example.com/terms", "accepted": false, "accepted_at": null})
    );
    let unticked = t.send(&Profile, Req::post("/terms").json(json!({})).cookie("portal_session", &session)).await;
    assert_eq!(unticked.status(), 400);
    assert!(body_json(&unticked)["fields"]["accept"].is_string());

    let accepted =
        t.send(&Profile, Req::post("/terms").json(json!({"accept": true})).cookie("portal_session", &session)).await;
    assert_eq!(accepted.status(), 200, "{}", body_text(&accepted));
    assert_eq!(body_json(&accepted)["version"], "2026-12");
    let session = cookie_value(&accepted, "portal_session").expect("the session goes on, no longer limited");
    assert_eq!(t.send(&Profile, Req::get("/profile").cookie("portal_session", &session)).await.status(), 200);
    let stored = t.contacts.all().into_iter().find(|c| c.email.as_str() == ADA).unwrap();
    assert_eq!(stored.terms_accepted.as_ref().map(|a| a.version.as_str()), Some("2026-12"));
    assert!(t.contacts.audit_entries().iter().any(|e| e.kind == "terms_accepted" && e.detail["version"] == "2026-12"));

    // The next sign-in is not limited; a new version limits it again.
    let signed_in = t.send(&SignIn, Req::post("/signin").json(json!({"login": ADA, "password": PASSWORD}))).await;
    assert_eq!(body_json(&signed_in).get("terms_required"), None);
}

#[tokio::test]
async fn accepting_in_the_registration_form_stores_it_and_no_terms_means_no_limit() {
    let t = test_portal(&TERMS);
    let mut body = registration(ADA);
    body["accept_terms"] = json!(true);
    let registered = t.send(&Register, Req::post("/register").json(body)).await;
    let session = cookie_value(&registered, "portal_session").unwrap();
    assert_eq!(t.send(&Profile, Req::get("/profile").cookie("portal_session", &session)).await.status(), 200);
    let form = body_text(&t.send(&Register, Req::get("/register").html()).await);
    assert!(form.contains("accept_terms") && form.contains("https://example.com/terms"));

    let plain = test_portal(&[]);
    let registered = plain.send(&Register, Req::post("/register").json(registration(ADA))).await;
    let session = cookie_value(&registered, "portal_session").unwrap();
    assert_eq!(plain.send(&Profile, Req::get("/profile").cookie("portal_session", &session)).await.status(), 200);
    assert_eq!(plain.send(&Profile, Req::get("/terms").cookie("portal_session", &session)).await.status(), 404);
}

#[tokio::test]
async fn accepting_in_the_redemption_form_stores_it_with_the_redemption() {
    use portal::domain::outbox::MessageKind;
    use portal::handlers::admin::CreateInvitation;
    use portal::handlers::redeem::RedeemInvitation;
    let t = test_portal(&TERMS);
    let admin = t.administrator_session().await;
    let code_for = |email: &str| {
        let message = t.outbox.all().into_iter().find(|m| m.kind == MessageKind::Invitation && m.to == email).unwrap();
        message.secret.unwrap().expose().to_string()
    };
    for email in ["grace@example.com", "alan@example.com"] {
        let invite = json!({"email": email, "first_name": "Grace", "last_name": "Hopper"});
        let created = t
            .send(&CreateInvitation, Req::post("/admin/invitations").json(invite).cookie("portal_session", &admin))
            .await;
        assert_eq!(created.status(), 201, "{}", body_text(&created));
    }
    let form = body_text(
        &t.send(&RedeemInvitation, Req::get(&format!("/redeem?code={}", code_for("grace@example.com"))).html()).await,
    );
    assert!(form.contains("accept_terms") && form.contains("https://example.com/terms"), "the form offers the terms");

    let redeem = |email: &str, accept: bool| {
        Req::post("/redeem")
            .json(json!({"code": code_for(email), "password": "Compiler-Pioneer-1952", "accept_terms": accept}))
    };
    let accepted = t.send(&RedeemInvitation, redeem("grace@example.com", true)).await;
    assert_eq!(accepted.status(), 201, "{}", body_text(&accepted));
    let session = cookie_value(&accepted, "portal_session").unwrap();
    assert_eq!(t.send(&Profile, Req::get("/profile").cookie("portal_session", &session)).await.status(), 200);
    let grace = t.contacts.all().into_iter().find(|c| c.email.as_str() == "grace@example.com").unwrap();
    assert_eq!(grace.terms_accepted.map(|a| a.version), Some("2026-12".to_string()));

    let unticked = t.send(&RedeemInvitation, redeem("alan@example.com", false)).await;
    assert_eq!(unticked.status(), 201, "{}", body_text(&unticked));
    let session = cookie_value(&unticked, "portal_session").unwrap();
    let limited = t.send(&Profile, Req::get("/profile").cookie("portal_session", &session)).await;
    assert_eq!((limited.status().as_u16(), body_json(&limited)["terms_required"].as_bool()), (403, Some(true)));
}
