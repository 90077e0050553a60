//! Handler tests for account self-service: email confirmation, password reset, profile and
//! password changes, rate limits, on in-memory adapters. Emails are read as `send-email` renders
//! them.

use portal::handlers::profile::Profile;
use portal::handlers::register::Register;
use portal::handlers::sign_in::SignIn;
use portal_testkit::*;
use serde_json::{Value, json};

async fn register(t: &TestPortal, email: &str) -> lambda_http::Response<lambda_http::Body> {
    t.send(&Register, Req::post("/register").json(registration(email))).await
}

async fn sign_in(t: &TestPortal, login: &str, password: &str) -> u16 {
    t.send(&SignIn, Req::post("/signin").json(json!({"login": login, "password": password}))).await.status().as_u16()
}

async fn confirm(t: &TestPortal, token: &str) -> lambda_http::Response<lambda_http::Body> {
    t.send(&Register, Req::post("/confirm-email").json(json!({"token": token}))).await
}

fn profile_of(t: &TestPortal, email: &str) -> portal::domain::contact::Contact {
    t.contacts.all().into_iter().find(|c| c.email == email).unwrap()
}

#[tokio::test]
async fn registration_signs_in_at_once_and_still_sends_a_confirmation_link() {
    let t = test_portal(&[]);
    let registered = register(&t, "ada@example.com").await;
    assert_eq!(registered.status(), 201);
    assert!(cookie_value(&registered, "portal_session").is_some());
    let mail = t.mailbox().await;
    assert_eq!(mail.len(), 1);
    assert_eq!((mail[0].to.as_str(), mail[0].subject.as_str()), ("ada@example.com", "Confirm your email address"));
    let token = link_in(&mail[0], "/confirm-email");
    assert!(token.len() >= 22, "at least 128 bits");
    assert!(!format!("{:?}", t.outbox.all()).contains(&token), "the outbox's Debug never shows it");

    // Following the link shows a button; it confirms nothing by itself.
    let page = t.send(&Register, Req::get(&format!("/confirm-email?token={token}")).html()).await;
    assert_eq!(page.status(), 200);
    assert!(body_text(&page).contains("id=\"token-form\""));
    assert!(!profile_of(&t, "ada@example.com").email_confirmed);

    let confirmed = confirm(&t, &token).await;
    assert_eq!(confirmed.status(), 200, "{}", body_text(&confirmed));
    assert!(profile_of(&t, "ada@example.com").email_confirmed);
    let reused = confirm(&t, &token).await;
    assert_eq!(reused.status(), 400);
    assert_eq!(body_json(&reused)["error"], "token_invalid");
}

#[tokio::test]
async fn confirmation_links_expire() {
    let t = test_portal(&[("PORTAL_CONFIRMATION_TOKEN_HOURS", "24")]);
    register(&t, "ada@example.com").await;
    let token = link_in(&t.mailbox().await[0], "/confirm-email");
    t.clock.advance(24 * 3600);
    assert_eq!(body_json(&confirm(&t, &token).await)["error"], "token_invalid");
    for bad in ["", "short", &"x".repeat(43)] {
        assert_eq!(body_json(&confirm(&t, bad).await)["error"], "token_invalid", "{bad}");
    }
}

#[tokio::test]
async fn with_confirmation_required_new_and_taken_emails_get_the_same_202() {
    let t = test_portal(&[("PORTAL_REQUIRE_CONFIRMATION", "true")]);
    let new = register(&t, "ada@example.com").await;
    assert_eq!(new.status(), 202);
    assert_eq!(body_json(&new), json!({"status": "confirmation_sent"}));
    assert!(cookie_value(&new, "portal_session").is_none(), "no session until the link is followed");
    let taken = register(&t, "ADA@example.com").await;
    assert_eq!((taken.status(), body_text(&taken)), (new.status(), body_text(&new)));
    assert!(cookie_value(&taken, "portal_session").is_none());
    assert_eq!(t.contacts.all().len(), 1);

    let mut mail = t.mailbox().await;
    mail.sort_by(|a, b| a.subject.cmp(&b.subject));
    let subjects: Vec<&str> = mail.iter().map(|m| m.subject.as_str()).collect();
    assert_eq!(subjects, ["Confirm your email address", "You already have an account"]);
    assert!(mail.iter().all(|m| m.to == "ada@example.com"), "the owner is told, not the registrant");
    assert!(mail[1].text.contains("http://localhost:9000/forgot-password"));

    let response =
        t.send(&SignIn, Req::post("/signin").json(json!({"login": "ada@example.com", "password": PASSWORD}))).await;
    assert_eq!(response.status(), 403, "the account signs in only after confirming");
    assert_eq!(sign_in(&t, "ada@example.com", "wrong-password-entirely").await, 401);
    assert_eq!(confirm(&t, &link_in(&mail[0], "/confirm-email")).await.status(), 200);
    assert_eq!(sign_in(&t, "ada@example.com", PASSWORD).await, 200);
}

#[tokio::test]
async fn forgot_password_answers_the_same_for_known_and_unknown_emails() {
    let t = test_portal(&[]);
    register(&t, "ada@example.com").await;
    t.mailbox().await;
    let known = t.send(&SignIn, Req::post("/forgot-password").json(json!({"email": "ada@example.com"}))).await;
    let unknown = t.send(&SignIn, Req::post("/forgot-password").json(json!({"email": "nobody@example.com"}))).await;
    assert_eq!(known.status(), 202);
    assert_eq!(body_json(&known), json!({"status": "email_sent"}));
    assert_eq!((known.status(), body_text(&known)), (unknown.status(), body_text(&unknown)));
    let mail = t.mailbox().await;
    assert_eq!(mail.len(), 1, "only the account's owner gets an email");
    assert_eq!((mail[0].to.as_str(), mail[0].subject.as_str()), ("ada@example.com", "Reset your password"));
    let bad = t.send(&SignIn, Req::post("/forgot-password").json(json!({"email": 7}))).await;
    assert_eq!(bad.status(), 400);
}

#[tokio::test]
async fn a_reset_link_sets_a_new_password_once_ends_every_session_and_does_not_sign_in() {
    let t = test_portal(&[]);
    let session = cookie_value(&register(&t, "ada@example.com").await, "portal_session").unwrap();
    t.mailbox().await;
    t.send(&SignIn, Req::post("/forgot-password").json(json!({"email": "ada@example.com"}))).await;
    let token = link_in(&t.mailbox().await[0], "/reset-password");

    let page = t.send(&SignIn, Req::get(&format!("/reset-password?token={token}")).html()).await;
    assert!(body_text(&page).contains("name=\"new_password\""));
    let weak = t
        .send(&SignIn, Req::post("/reset-password").json(json!({"token": token, "new_password": "password1234"})))
        .await;
    assert_eq!(weak.status(), 400);
    assert!(body_json(&weak)["fields"]["new_password"].is_string());

    let reset = t
        .send(
            &SignIn,
            Req::post("/reset-password").json(json!({"token": token, "new_password": "Brand-New-Passphrase-77"})),
        )
        .await;
    assert_eq!(reset.status(), 204, "{}", body_text(&reset));
    assert!(cookie_value(&reset, "portal_session").is_none(), "a reset does not sign in by itself");
    assert_eq!(
        t.send(&Profile, Req::get("/profile").cookie("portal_session", &session)).await.status(),
        401,
        "every session ended"
    );
    assert_eq!(sign_in(&t, "ada@example.com", PASSWORD).await, 401);
    assert_eq!(sign_in(&t, "ada@example.com", "Brand-New-Passphrase-77").await, 200);
    let reused = t
        .send(
            &SignIn,
            Req::post("/reset-password").json(json!({"token": token, "new_password": "Another-Passphrase-88"})),
        )
        .await;
    assert_eq!(body_json(&reused)["error"], "token_invalid");
}

#[tokio::test]
async fn reset_links_expire_after_an_hour() {
    let t = test_portal(&[]);
    register(&t, "ada@example.com").await;
    t.send(&SignIn, Req::post("/forgot-password").json(json!({"email": "ada@example.com"}))).await;
    let token = t
        .mailbox()
        .await
        .into_iter()
        .find(|m| m.subject == "Reset your password")
        .map(|m| link_in(&m, "/reset-password"))
        .unwrap();
    t.clock.advance(3600);
    let late = t
        .send(
            &SignIn,
            Req::post("/reset-password").json(json!({"token": token, "new_password": "Brand-New-Passphrase-77"})),
        )
        .await;
    assert_eq!(body_json(&late)["error"], "token_invalid");
    assert_eq!(sign_in(&t, "ada@example.com", PASSWORD).await, 200, "the password did not change");
}

#[tokio::test]
async fn reset_emails_are_rate_limited_per_account_and_per_address_with_the_same_answer() {
    let t = test_portal(&[("PORTAL_EMAILS_PER_RECIPIENT_PER_HOUR", "3"), ("PORTAL_EMAILS_PER_ADDRESS_PER_HOUR", "5")]);
    register(&t, "ada@example.com").await;
    t.mailbox().await;
    t.clock.advance(3600);
    let mut answers = Vec::new();
    for _ in 0..5 {
        let response = t.send(&SignIn, Req::post("/forgot-password").json(json!({"email": "ada@example.com"}))).await;
        answers.push((response.status().as_u16(), body_text(&response)));
    }
    assert!(answers.windows(2).all(|w| w[0] == w[1]), "a limited request gets the same answer");
    assert_eq!(t.mailbox().await.len(), 3, "three per recipient (the account's address) per hour");
    t.clock.advance(3600);
    t.send(&SignIn, Req::post("/forgot-password").json(json!({"email": "ada@example.com"}))).await;
    assert_eq!(t.mailbox().await.len(), 1, "a new hour, a new allowance");

    // One address asking for many accounts is limited too.
    for i in 0..6 {
        register(&t, &format!("user{i}@example.com")).await;
    }
    t.mailbox().await;
    t.clock.advance(3600);
    for i in 0..6 {
        t.send(&SignIn, Req::post("/forgot-password").json(json!({"email": format!("user{i}@example.com")}))).await;
    }
    assert_eq!(t.mailbox().await.len(), 5, "five per source address per hour");
}

#[tokio::test]
async fn the_profile_is_edited_and_a_new_email_waits_for_its_confirmation() {
    let t = test_portal(&[]);
    let mut body = registration("ada@example.com");
    body["username"] = json!("ada");
    let current = cookie_value(&t.send(&Register, Req::post("/register").json(body)).await, "portal_session").unwrap();
    let other = cookie_value(
        &t.send(&SignIn, Req::post("/signin").json(json!({"login": "ada", "password": PASSWORD}))).await,
        "portal_session",
    )
    .unwrap();
    t.mailbox().await;
    let edit = |body: Value| t.send(&Profile, Req::post("/profile").json(body).cookie("portal_session", &current));
    let profile = |session: &str| t.send(&Profile, Req::get("/profile").cookie("portal_session", session));

    let named = edit(json!({"first_name": "Augusta Ada", "phone": "+44 20 7946 0018"})).await;
    assert_eq!(named.status(), 200, "{}", body_text(&named));
    let named = body_json(&named);
    assert_eq!((named["first_name"].as_str(), named["last_name"].as_str()), (Some("Augusta Ada"), Some("Lovelace")));
    assert_eq!(named["pending_email"], Value::Null);
    assert_eq!(profile(&other).await.status(), 200, "a name change keeps sessions");

    let renamed = edit(json!({"username": "someone-else"})).await;
    assert_eq!(renamed.status(), 400);
    assert!(body_json(&renamed)["fields"]["username"].is_string());

    // A borrowed session alone cannot move the account.
    for without in [
        json!({"email": "eve@example.com"}),
        json!({"email": "eve@example.com", "current_password": "wrong-password-entirely"}),
    ] {
        let refused = edit(without).await;
        assert_eq!(refused.status(), 400);
        assert!(body_json(&refused)["fields"]["current_password"].is_string());
    }
    assert!(t.mailbox().await.is_empty(), "a refused change sends nothing");

    register(&t, "grace@example.com").await;
    t.mailbox().await;
    let taken = edit(json!({"email": "Grace@example.com", "current_password": PASSWORD})).await;
    let free = edit(json!({"email": "ada@lovelace.example", "current_password": PASSWORD})).await;
    assert_eq!(
        (taken.status().as_u16(), free.status().as_u16()),
        (200, 200),
        "no route but registration answers email_taken"
    );
    let (taken, free) = (body_json(&taken), body_json(&free));
    assert_eq!(taken["pending_email"], "Grace@example.com");
    assert_eq!(free["pending_email"], "ada@lovelace.example");
    assert_eq!((free["email"].as_str(), free["email_confirmed"].as_bool()), (Some("ada@example.com"), Some(false)));

    let mut mail = t.mailbox().await;
    mail.sort_by(|a, b| (a.to.as_str(), a.subject.as_str()).cmp(&(b.to.as_str(), b.subject.as_str())));
    let sent: Vec<(&str, &str)> = mail.iter().map(|m| (m.to.as_str(), m.subject.as_str())).collect();
    assert_eq!(
        sent,
        [
            ("ada@example.com", "A change of your email address was requested"),
            ("ada@example.com", "A change of your email address was requested"),
            ("ada@lovelace.example", "Confirm your new email address"),
            ("grace@example.com", "Someone tried to use your email address"),
        ],
        "the taken address's owner is told instead of sent a link; the old address is told of each"
    );
    let notices = format!("{}{}", mail[0].text, mail[1].text);
    assert!(
        notices.contains("Grace@example.com") && notices.contains("ada@lovelace.example"),
        "each names its address"
    );
    assert_eq!(sign_in(&t, "ada@example.com", PASSWORD).await, 200, "until confirmed, the old address signs in");
    assert_eq!(sign_in(&t, "ada@lovelace.example", PASSWORD).await, 401);
    assert_eq!(profile(&other).await.status(), 200, "nothing ended yet");

    let confirmed = t
        .send(
            &Register,
            Req::post("/confirm-email")
                .json(json!({"token": link_in(&mail[2], "/confirm-email")}))
                .cookie("portal_session", &current),
        )
        .await;
    assert_eq!(confirmed.status(), 200, "{}", body_text(&confirmed));
    assert_eq!(body_json(&confirmed), json!({"email": "ada@lovelace.example", "email_confirmed": true}));
    let continued = cookie_value(&confirmed, "portal_session").expect("the confirming browser goes on");
    assert_eq!(profile(&other).await.status(), 401, "every other session ended");
    assert_eq!(profile(&current).await.status(), 401);
    let after = body_json(&profile(&continued).await);
    assert_eq!(
        (after["email"].as_str(), after["email_confirmed"].as_bool()),
        (Some("ada@lovelace.example"), Some(true))
    );
    assert_eq!(after["pending_email"], Value::Null);
    assert_eq!(sign_in(&t, "ada@example.com", PASSWORD).await, 401, "the old address no longer signs in");
    assert_eq!(sign_in(&t, "ada@lovelace.example", PASSWORD).await, 200);
    assert_eq!(register(&t, "ada@example.com").await.status(), 201, "the old address is free again");
}

#[tokio::test]
async fn a_confirmation_for_an_address_the_contact_left_confirms_nothing() {
    let t = test_portal(&[]);
    let session = cookie_value(&register(&t, "ada@example.com").await, "portal_session").unwrap();
    let first = link_in(&t.mailbox().await[0], "/confirm-email");
    let moved = t
        .send(
            &Profile,
            Req::post("/profile")
                .json(json!({"email": "ada@lovelace.example", "current_password": PASSWORD}))
                .cookie("portal_session", &session),
        )
        .await;
    assert_eq!(moved.status(), 200);
    let link = t.mailbox().await.into_iter().find(|m| m.to == "ada@lovelace.example").unwrap();
    assert_eq!(confirm(&t, &link_in(&link, "/confirm-email")).await.status(), 200);
    assert_eq!(body_json(&confirm(&t, &first).await)["error"], "token_invalid");
}

#[tokio::test]
async fn changing_the_password_needs_the_current_one_and_renews_the_session() {
    let t = test_portal(&[]);
    let current = cookie_value(&register(&t, "ada@example.com").await, "portal_session").unwrap();
    let other = cookie_value(
        &t.send(&SignIn, Req::post("/signin").json(json!({"login": "ada@example.com", "password": PASSWORD}))).await,
        "portal_session",
    )
    .unwrap();
    let change = |current_password: &str, new_password: &str| {
        t.send(
            &Profile,
            Req::post("/profile/password")
                .json(json!({"current_password": current_password, "new_password": new_password}))
                .cookie("portal_session", &current),
        )
    };
    let wrong = change("not-my-password-at-all", "Brand-New-Passphrase-77").await;
    assert_eq!(wrong.status(), 400);
    assert!(body_json(&wrong)["fields"]["current_password"].is_string());
    let weak = change(PASSWORD, "password1234").await;
    assert!(body_json(&weak)["fields"]["new_password"].is_string());

    let changed = change(PASSWORD, "Brand-New-Passphrase-77").await;
    assert_eq!(changed.status(), 204, "{}", body_text(&changed));
    let renewed = cookie_value(&changed, "portal_session").expect("a new token for this session");
    assert_ne!(renewed, current);
    for old in [&current, &other] {
        assert_eq!(t.send(&Profile, Req::get("/profile").cookie("portal_session", old)).await.status(), 401);
    }
    assert_eq!(t.send(&Profile, Req::get("/profile").cookie("portal_session", &renewed)).await.status(), 200);
    assert_eq!(sign_in(&t, "ada@example.com", "Brand-New-Passphrase-77").await, 200);
}

#[tokio::test]
async fn wrong_current_passwords_count_towards_lockout() {
    let t = test_portal(&[]);
    let session = cookie_value(&register(&t, "ada@example.com").await, "portal_session").unwrap();
    for _ in 0..5 {
        t.send(
            &Profile,
            Req::post("/profile/password")
                .json(json!({"current_password": "guess-guess-guess", "new_password": "Brand-New-Passphrase-77"}))
                .cookie("portal_session", &session),
        )
        .await;
    }
    assert_eq!(sign_in(&t, "ada@example.com", PASSWORD).await, 401, "locked");
}

#[tokio::test]
async fn the_home_page_shows_name_roles_and_the_administrators_link() {
    let t = test_portal(&[]);
    let session = cookie_value(&register(&t, "ada@example.com").await, "portal_session").unwrap();
    let home = body_text(&t.send(&Profile, Req::get("/").html().cookie("portal_session", &session)).await);
    assert!(home.contains("Welcome, Ada!") && home.contains("href=\"/profile\""));
    assert!(!home.contains("/admin/contacts"));
    let mut ada = profile_of(&t, "ada@example.com");
    ada.roles = vec!["Administrators".into(), "Partners".into()];
    t.contacts.put(ada);
    let home = body_text(&t.send(&Profile, Req::get("/").html().cookie("portal_session", &session)).await);
    assert!(home.contains("href=\"/admin/contacts\""));
    assert!(home.contains("Administrators, Partners"));
}

#[tokio::test]
async fn browser_forms_change_the_profile_and_the_password() {
    let t = test_portal(&[]);
    let session = cookie_value(&register(&t, "ada@example.com").await, "portal_session").unwrap();
    let page = t.send(&Profile, Req::get("/profile").html().cookie("portal_session", &session)).await;
    let csrf = cookie_value(&page, "portal_csrf").unwrap();
    let html = body_text(&page);
    assert!(
        html.contains("id=\"profile-form\"")
            && html.contains("id=\"password-form\"")
            && html.contains("id=\"email-unconfirmed\"")
    );
    let saved = t
        .send(
            &Profile,
            Req::post("/profile")
                .form(
                    &[("first_name", "Augusta"), ("last_name", "King"), ("phone", ""), ("email", "ada@example.com")],
                    &csrf,
                )
                .cookie("portal_session", &session),
        )
        .await;
    assert_eq!((saved.status().as_u16(), location(&saved).as_deref()), (303, Some("/profile")));
    assert_eq!(profile_of(&t, "ada@example.com").last_name, "King");
    let bad = t
        .send(
            &Profile,
            Req::post("/profile/password")
                .form(&[("current_password", "nope-nope-nope"), ("new_password", "Brand-New-Passphrase-77")], &csrf)
                .cookie("portal_session", &session),
        )
        .await;
    assert_eq!(bad.status(), 400);
    assert!(body_text(&bad).contains("Current password is not your current password"));
}
