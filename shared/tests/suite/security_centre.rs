//! Handler tests for the person's security centre (issue 23), on in-memory adapters: the
//! sessions list and ending sessions, the sign-in history from the audit trail, and the notice
//! of a sign-in from a browser the account does not know.

use portal::handlers::profile::Profile;
use portal::handlers::register::Register;
use portal::handlers::sign_in::SignIn;
use portal_testkit::*;
use serde_json::{Value, json};

const ADA: &str = "ada@example.com";
const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0";

fn sign_in_req(password: &str) -> Req {
    Req::post("/signin").json(json!({"login": ADA, "password": password})).header("user-agent", FIREFOX)
}

async fn signed_in(t: &TestPortal) -> String {
    let response = t.send(&SignIn, sign_in_req(PASSWORD)).await;
    assert_eq!(response.status(), 200, "{}", body_text(&response));
    cookie_value(&response, "portal_session").unwrap()
}

async fn get(t: &TestPortal, session: &str, path: &str) -> HttpResponse {
    t.send(&Profile, Req::get(path).cookie("portal_session", session)).await
}

async fn post(t: &TestPortal, session: &str, path: &str) -> HttpResponse {
    t.send(&Profile, Req::post(path).json(json!({})).cookie("portal_session", session)).await
}

fn sessions(body: &Value) -> Vec<Value> {
    body["sessions"].as_array().unwrap().clone()
}

#[tokio::test]
async fn the_person_sees_their_sessions_and_ends_one_or_all_others_at_once() {
    let t = test_portal(&[]);
    let registered = t.send(&Register, Req::post("/register").json(registration(ADA))).await;
    let first = cookie_value(&registered, "portal_session").unwrap();
    let second = signed_in(&t).await;
    let third = signed_in(&t).await;

    let listed = body_json(&get(&t, &second, "/profile/sessions").await);
    let rows = sessions(&listed);
    assert_eq!(rows.len(), 3, "{listed}");
    let current: Vec<&Value> = rows.iter().filter(|s| s["current"] == true).collect();
    assert_eq!(current.len(), 1);
    let mine = current[0];
    assert_eq!(
        (mine["method"].as_str(), mine["user_agent"].as_str()),
        (Some("password"), Some("Firefox 133 on Linux"))
    );
    assert!(mine["ip"].is_string() && mine["expires_at"].is_string() && mine["remember_me"] == false);
    for row in &rows {
        let id = row["session_id"].as_str().unwrap();
        assert!(id.len() == 16 && !first.contains(id) && !second.contains(id), "an id, never the token");
    }

    // One of the others ends at once.
    let registration_session = rows.iter().find(|s| s["method"] == "registration").unwrap();
    let id = registration_session["session_id"].as_str().unwrap();
    assert_eq!(post(&t, &second, &format!("/profile/sessions/{id}/revoke")).await.status(), 204);
    assert_eq!(get(&t, &first, "/profile").await.status(), 401);
    assert_eq!(post(&t, &second, &format!("/profile/sessions/{id}/revoke")).await.status(), 404, "ended already");
    assert_eq!(post(&t, &second, "/profile/sessions/not-a-session/revoke").await.status(), 404);

    // All the others.
    assert_eq!(post(&t, &second, "/profile/sessions/revoke-others").await.status(), 204);
    assert_eq!(get(&t, &third, "/profile").await.status(), 401);
    assert_eq!(get(&t, &second, "/profile").await.status(), 200, "this one goes on");
    assert_eq!(sessions(&body_json(&get(&t, &second, "/profile/sessions").await)).len(), 1);
}

#[tokio::test]
async fn someone_elses_session_cannot_be_ended_and_the_routes_need_a_session() {
    let t = test_portal(&[]);
    let ada = cookie_value(&t.send(&Register, Req::post("/register").json(registration(ADA))).await, "portal_session")
        .unwrap();
    let grace = cookie_value(
        &t.send(&Register, Req::post("/register").json(registration("grace@example.com"))).await,
        "portal_session",
    )
    .unwrap();
    let ada_sessions = sessions(&body_json(&get(&t, &ada, "/profile/sessions").await));
    let id = ada_sessions[0]["session_id"].as_str().unwrap();
    assert_eq!(post(&t, &grace, &format!("/profile/sessions/{id}/revoke")).await.status(), 404);
    assert_eq!(get(&t, &ada, "/profile").await.status(), 200);
    for path in ["/profile/sessions", "/profile/sign-ins", "/profile/security"] {
        assert_eq!(t.send(&Profile, Req::get(path)).await.status(), 401, "{path}");
    }
}

#[tokio::test]
async fn the_sign_in_history_shows_successes_and_failures_of_this_account_only() {
    let t = test_portal(&[("PORTAL_FAILURES_PER_ADDRESS_PER_HOUR", "1000")]);
    t.send(&Register, Req::post("/register").json(registration(ADA))).await;
    t.send(&SignIn, sign_in_req("Wrong-Passphrase-Guess-99")).await;
    let session = signed_in(&t).await;
    let unknown = Req::post("/signin").json(json!({"login": "nobody@example.com", "password": PASSWORD}));
    t.send(&SignIn, unknown).await;

    let body = body_json(&get(&t, &session, "/profile/sign-ins").await);
    let rows = body["sign_ins"].as_array().unwrap();
    let seen: Vec<(&str, &str)> =
        rows.iter().map(|r| (r["method"].as_str().unwrap(), r["result"].as_str().unwrap())).collect();
    assert_eq!(seen, [("password", "success"), ("password", "wrong_credentials"), ("registration", "success")]);
    assert_eq!(rows[0]["user_agent"], "Firefox 133 on Linux");
    assert!(!body.to_string().contains("nobody@example.com"));

    // 90 days on, the history is empty (the audit trail keeps them longer).
    t.clock.advance(91 * 86_400);
    let session = signed_in(&t).await;
    let later = body_json(&get(&t, &session, "/profile/sign-ins").await);
    assert_eq!(later["sign_ins"].as_array().unwrap().len(), 1, "{later}");
    assert_eq!(later["next_cursor"], Value::Null);
}

#[tokio::test]
async fn a_sign_in_from_an_unknown_browser_tells_the_owner_and_a_trusted_one_does_not() {
    let t = test_portal(&[]);
    t.send(&Register, Req::post("/register").json(registration(ADA))).await;
    t.mailbox().await;
    let response = t.send(&SignIn, sign_in_req(PASSWORD)).await;
    let device = cookie_value(&response, "portal_device").expect("the browser is trusted from now on");
    let mail = t.mailbox().await;
    let notice = mail.iter().find(|m| m.subject == "A new sign-in to your account").expect("the owner is told");
    assert!(
        notice.text.contains("Firefox 133 on Linux") && notice.text.contains("/profile/security"),
        "{}",
        notice.text
    );

    let again = t.send(&SignIn, sign_in_req(PASSWORD).cookie("portal_device", &device)).await;
    assert_eq!(again.status(), 200);
    assert!(t.mailbox().await.is_empty(), "no notice for a trusted browser");
}

#[tokio::test]
async fn the_security_page_shows_the_sessions_and_the_history() {
    let t = test_portal(&[]);
    t.send(&Register, Req::post("/register").json(registration(ADA))).await;
    let session = signed_in(&t).await;
    let page = t.send(&Profile, Req::get("/profile/security").html().cookie("portal_session", &session)).await;
    assert_eq!(page.status(), 200);
    let html = body_text(&page);
    assert!(html.contains("this browser") && html.contains("Firefox 133 on Linux"), "{html}");
    assert!(html.contains("Sign out this session") && html.contains("Recent sign-ins"));
}

/// Ada, signed in twice, with a phone, a username, terms accepted (where the site has them), TOTP,
/// a passkey and an invitation from an administrator.
struct Ada {
    contact: portal::domain::contact::Contact,
    /// Her registration's session.
    first: String,
    /// Her latest session (after setting TOTP up).
    session: String,
    /// Her TOTP secret.
    secret: String,
}

async fn ada_with_every_kind_of_item(t: &TestPortal) -> Ada {
    use portal::domain::passkey::StoredPasskey;
    use portal::handlers::admin::CreateInvitation;
    use portal::ports::{Clock, PasskeyStore};
    let admin = t.administrator_session().await;
    let mut body = registration(ADA);
    body["accept_terms"] = json!(true);
    body["phone"] = json!("+44 20 7946 0000");
    body["username"] = json!("ada-l");
    let first = cookie_value(&t.send(&Register, Req::post("/register").json(body)).await, "portal_session").unwrap();
    let contact = t.contacts.all().into_iter().find(|c| c.email.as_str() == ADA).unwrap();
    let session = signed_in(t).await;
    let (secret, _, session) = portal_testkit::two_factor::set_up_totp(t, &session).await;
    let now = t.clock.now();
    let passkey = StoredPasskey {
        id: "passkey-1".into(),
        contact_id: contact.contact_id.clone(),
        name: "Laptop".into(),
        created_at: now,
        last_used_at: None,
        sign_count: 0,
        credential: "{\"cred\":\"secret-credential-material\"}".into(),
    };
    let epoch = t.contacts.all().into_iter().find(|c| c.email.as_str() == ADA).unwrap().session_epoch;
    assert!(t.passkeys.add(&passkey, &epoch, now, &[]).await.unwrap());
    let invite = Req::post("/admin/invitations").json(json!({"contact_id": contact.contact_id.as_str()}));
    assert_eq!(t.send(&CreateInvitation, invite.cookie("portal_session", &admin)).await.status(), 201);
    Ada { contact, first, session, secret }
}

#[tokio::test]
async fn the_export_holds_every_kind_of_item_about_the_person_and_no_secret() {
    let t = test_portal(&[("PORTAL_TERMS_VERSION", "2026-12"), ("PORTAL_FAILURES_PER_ADDRESS_PER_HOUR", "1000")]);
    let Ada { secret, session, .. } = ada_with_every_kind_of_item(&t).await;
    t.send(&SignIn, sign_in_req("Wrong-Passphrase-Guess-99")).await;

    let refused = t
        .send(
            &Profile,
            Req::post("/profile/export").json(json!({"current_password": PASSWORD})).cookie("portal_session", &session),
        )
        .await;
    assert_eq!(refused.status(), 400, "the second factor too");
    t.clock.advance(30);
    let code = portal_testkit::two_factor::totp_code(&t, &secret, 0);
    let exported = t
        .send(
            &Profile,
            Req::post("/profile/export")
                .json(json!({"current_password": PASSWORD, "second_factor_code": code}))
                .cookie("portal_session", &session),
        )
        .await;
    assert_eq!(exported.status(), 200, "{}", body_text(&exported));
    let disposition = exported.headers()["content-disposition"].to_str().unwrap().to_string();
    assert!(disposition.starts_with("attachment"), "{disposition}");
    let text = body_text(&exported);
    let export: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(export["profile"]["email"], ADA);
    assert_eq!(export["profile"]["phone"], "+44 20 7946 0000");
    assert_eq!(export["terms_accepted"]["version"], "2026-12");
    assert!(!sessions(&export).is_empty());
    let results: Vec<&str> =
        export["sign_ins"].as_array().unwrap().iter().map(|s| s["result"].as_str().unwrap()).collect();
    assert!(results.contains(&"success") && results.contains(&"wrong_credentials"), "{results:?}");
    assert_eq!(export["two_factor"]["totp"], true);
    assert_eq!(export["passkeys"][0]["name"], "Laptop");
    assert_eq!(export["invitations"].as_array().unwrap().len(), 1);
    let kinds: Vec<&str> = export["audit"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
    for kind in ["signed_in", "sign_in_failed", "two_factor_changed", "invitation_created"] {
        assert!(kinds.contains(&kind), "{kind} in {kinds:?}");
    }
    let stored = t.contacts.all().into_iter().find(|c| c.email.as_str() == ADA).unwrap();
    let hash = format!("{:?}", stored.password_hash.unwrap());
    for secret_text in [secret.as_str(), "secret-credential-material", &session, "argon2", &hash[..20]] {
        assert!(!text.contains(secret_text), "no secret in the export: {secret_text}");
    }
    assert!(t.contacts.audit_entries().iter().any(|e| e.kind == "data_exported"));
}

/// Delivers every pending outbox message as `send-email` does (the erasure job among them),
/// until none is left.
async fn deliver_everything(t: &TestPortal) {
    use portal::domain::outbox::MessageStatus;
    for _ in 0..5 {
        let pending: Vec<_> = t.outbox.all().into_iter().filter(|m| m.status == MessageStatus::Pending).collect();
        if pending.is_empty() {
            return;
        }
        for message in pending {
            portal::usecases::delivery::deliver(&t.portal, &message).await.unwrap();
        }
    }
}

#[tokio::test]
async fn deleting_the_account_needs_reauthentication_ends_every_session_and_erases_every_trace() {
    use portal::ports::{PasskeyStore, SessionStore, TwoFactorStore};
    let t = test_portal(&[("PORTAL_FAILURES_PER_ADDRESS_PER_HOUR", "1000")]);
    let Ada { contact: ada, first, session, secret } = ada_with_every_kind_of_item(&t).await;
    deliver_everything(&t).await;
    let delete = |body: Value| Req::post("/profile/delete").json(body).cookie("portal_session", &session);

    // Re-authentication: the password and, with a factor, a code.
    let refused = t.send(&Profile, delete(json!({"current_password": PASSWORD}))).await;
    assert_eq!(refused.status(), 400, "the second factor too");
    assert!(t.contacts.all().iter().all(|c| c.deleted_at.is_none()));
    t.clock.advance(30);
    let code = portal_testkit::two_factor::totp_code(&t, &secret, 0);
    let deleted = t.send(&Profile, delete(json!({"current_password": PASSWORD, "second_factor_code": code}))).await;
    assert_eq!(deleted.status(), 202, "{}", body_text(&deleted));
    assert_eq!(body_json(&deleted)["contact_id"], ada.contact_id.as_str());
    assert_eq!(cookie_value(&deleted, "portal_session").as_deref(), Some(""), "this browser's cookie goes");

    // At once: every session ends, no way in opens, the address and username are free.
    for token in [&first, &session] {
        assert_eq!(get(&t, token, "/profile").await.status(), 401);
    }
    assert_eq!(t.send(&SignIn, sign_in_req(PASSWORD)).await.status(), 401);
    let by_username = Req::post("/signin").json(json!({"login": "ada-l", "password": PASSWORD}));
    assert_eq!(t.send(&SignIn, by_username).await.status(), 401);
    let tombstone = t.contacts.all().into_iter().find(|c| c.contact_id == ada.contact_id).unwrap();
    assert!(tombstone.deleted_at.is_some() && !tombstone.may_sign_in());
    let kept = format!("{tombstone:?}");
    for personal in [ADA, "Lovelace", "+44 20 7946 0000", "ada-l", "argon2"] {
        assert!(!kept.contains(personal), "the tombstone keeps no {personal}: {kept}");
    }
    let facts: Vec<String> = t.outbox.events().iter().map(|e| e.detail_type().to_string()).collect();
    assert!(facts.contains(&"ContactDeleted".to_string()), "{facts:?}");
    assert!(t.contacts.audit_entries().iter().any(|e| e.kind == "account_deleted"));

    // The erasure job (send-email) removes the rest; the notice goes to the address it had.
    deliver_everything(&t).await;
    assert!(t.passkeys.list(&ada.contact_id).await.unwrap().is_empty());
    assert!(!t.two_factor.get(&ada.contact_id).await.unwrap().enabled());
    assert!(t.sessions.list_for_contact(&ada.contact_id).await.unwrap().is_empty());
    let invitation = t.invitations.all().into_iter().find(|i| i.contact_id == ada.contact_id).unwrap();
    assert!(invitation.revoked && invitation.email.is_empty() && invitation.last_name.is_empty());
    let notice = t.mailer.sent().into_iter().find(|m| m.subject == "Your account was deleted").unwrap();
    assert_eq!(notice.to, ADA);
    assert!(t.contacts.audit_entries().iter().any(|e| e.kind == "account_erased"));
    let outbox = format!("{:?}", t.outbox.all());
    for personal in [ADA, "Lovelace"] {
        assert!(!outbox.contains(personal), "no settled message names {personal}");
    }

    // The address registers again, as a new account.
    let again = t.send(&Register, Req::post("/register").json(registration(ADA))).await;
    assert_eq!(again.status(), 201, "{}", body_text(&again));
    assert_ne!(body_json(&again)["contact_id"], ada.contact_id.as_str());
}
