//! Handler tests for account security (in-memory adapters): no enumeration by answer or by work,
//! email allowances per recipient, the trusted-device cookie against a held lockout, sessions
//! replaced at sign-in, only the newest reset link, and the notices.

use portal::domain::outbox::MessageKind;
use portal::handlers::profile::Profile;
use portal::handlers::register::Register;
use portal::handlers::sign_in::SignIn;
use portal_testkit::*;
use serde_json::json;

async fn register(t: &TestPortal, email: &str) -> HttpResponse {
    t.send(&Register, Req::post("/register").json(registration(email))).await
}

/// Changes the password of the session's account from `PASSWORD` to another.
async fn change_password(t: &TestPortal, session: &str) -> HttpResponse {
    let body = json!({"current_password": PASSWORD, "new_password": "Another-Passphrase-2024"});
    t.send(&Profile, Req::post("/profile/password").json(body).cookie("portal_session", session)).await
}

fn sign_in_req(login: &str, password: &str) -> Req {
    Req::post("/signin").json(json!({"login": login, "password": password}))
}

/// What a request did: its answer, the store calls it made and the kinds of email it queued.
async fn work_of(
    t: &TestPortal,
    function: &dyn portal::web::HttpFunction,
    req: Req,
) -> (u16, String, Vec<&'static str>) {
    t.contacts.take_calls();
    let queued_before = t.outbox.all().len();
    let response = t.send(function, req).await;
    let mut calls = t.contacts.take_calls();
    calls.sort();
    assert_eq!(t.outbox.all().len(), queued_before + 1, "one outbox message either way");
    (response.status().as_u16(), body_text(&response), calls)
}

#[tokio::test]
async fn link_requests_answer_and_work_alike_whether_or_not_the_account_exists() {
    let t = test_portal(&[("PORTAL_REQUIRE_CONFIRMATION", "true"), ("PORTAL_EMAILS_PER_RECIPIENT_PER_HOUR", "100")]);
    register(&t, "ada@example.com").await;
    t.mailbox().await;
    let forgot = |email: &str| Req::post("/forgot-password").json(json!({"email": email}));
    assert_eq!(
        work_of(&t, &SignIn, forgot("ada@example.com")).await,
        work_of(&t, &SignIn, forgot("nobody@example.com")).await,
        "forgot-password"
    );
    let resend = |email: &str| Req::post("/confirm-email").json(json!({"email": email}));
    assert_eq!(
        work_of(&t, &Register, resend("ada@example.com")).await,
        work_of(&t, &Register, resend("nobody@example.com")).await,
        "a new confirmation link"
    );
    // A registration: one read of the address's guard, then one write either way (the new account
    // with its link, or the owner's notice).
    let (new_status, new_body, new_calls) =
        work_of(&t, &Register, Req::post("/register").json(registration("new@example.com"))).await;
    let (taken_status, taken_body, taken_calls) =
        work_of(&t, &Register, Req::post("/register").json(registration("ada@example.com"))).await;
    assert_eq!((new_status, new_body), (taken_status, taken_body), "registration");
    assert_eq!(new_calls, ["create_with_emails", "email_in_use", "take_allowance", "take_allowance"]);
    assert_eq!(taken_calls, ["email_in_use", "queue_emails", "take_allowance", "take_allowance"]);
    t.outbox.all().into_iter().filter(|m| m.to == "new@example.com").for_each(|m| {
        let mut done = m;
        done.status = portal::domain::outbox::MessageStatus::Sent;
        t.outbox.insert(done);
    });

    let mail = t.mailbox().await;
    let mut sent: Vec<(&str, &str)> = mail.iter().map(|m| (m.to.as_str(), m.subject.as_str())).collect();
    sent.sort();
    assert_eq!(
        sent,
        [
            ("ada@example.com", "Confirm your email address"),
            ("ada@example.com", "Reset your password"),
            ("ada@example.com", "You already have an account")
        ],
        "only the account's owner gets mail"
    );
}

#[tokio::test]
async fn an_email_change_answers_and_works_alike_whether_or_not_another_account_has_the_address() {
    let t = test_portal(&[]);
    let session = cookie_value(&register(&t, "ada@example.com").await, "portal_session").unwrap();
    register(&t, "grace@example.com").await;
    t.mailbox().await;
    let change = |email: &str| {
        Req::post("/profile")
            .json(json!({"email": email, "current_password": PASSWORD}))
            .cookie("portal_session", &session)
    };
    let work = |email: &'static str| {
        let t = &t;
        let req = change(email);
        async move {
            t.contacts.take_calls();
            let before = t.outbox.all().len();
            let response = t.send(&Profile, req).await;
            let mut calls = t.contacts.take_calls();
            calls.sort();
            let mut body = body_json(&response);
            body["pending_email"] = json!("(the address asked for)");
            (response.status().as_u16(), body, calls, t.outbox.all().len() - before)
        }
    };
    assert_eq!(work("grace@example.com").await, work("ada@lovelace.example").await);
}

#[tokio::test]
async fn no_recipient_gets_more_than_its_hourly_allowance_whoever_asks() {
    let t =
        test_portal(&[("PORTAL_EMAILS_PER_RECIPIENT_PER_HOUR", "3"), ("PORTAL_EMAILS_PER_ADDRESS_PER_HOUR", "1000")]);
    // Four accounts in a row move to one victim's address, with a greeting the asker chose.
    let mut answers = Vec::new();
    for i in 0..4 {
        let session = cookie_value(&register(&t, &format!("asker{i}@example.com")).await, "portal_session").unwrap();
        let response = t
            .send(
                &Profile,
                Req::post("/profile")
                    .json(json!({"first_name": "Click here", "email": "victim@example.com", "current_password": PASSWORD}))
                    .cookie("portal_session", &session),
            )
            .await;
        answers.push(response.status().as_u16());
    }
    assert_eq!(answers, [200; 4], "a request over the allowance gets the same answer");
    let to_victim = t.mailbox().await.into_iter().filter(|m| m.to == "victim@example.com").count();
    assert_eq!(to_victim, 3, "three per recipient per hour");

    // Registrations (while confirmation is required) and forgot-password count too, from any address.
    let t = test_portal(&[("PORTAL_REQUIRE_CONFIRMATION", "true"), ("PORTAL_EMAILS_PER_ADDRESS_PER_HOUR", "1000")]);
    register(&t, "victim@example.com").await;
    for i in 0..3 {
        let ip: &'static str = ["198.51.100.1", "198.51.100.2", "198.51.100.3"][i];
        t.send(&Register, Req::post("/register").json(registration("victim@example.com")).sent_from(ip)).await;
        t.send(&SignIn, Req::post("/forgot-password").json(json!({"email": "victim@example.com"})).sent_from(ip)).await;
    }
    assert_eq!(t.mailbox().await.len(), 3, "the default: three per recipient per hour");
}

#[tokio::test]
async fn a_trusted_device_signs_in_through_a_lockout_that_others_caused() {
    let t = test_portal(&[]);
    register(&t, "ada@example.com").await;
    let first = t.send(&SignIn, sign_in_req("ada@example.com", PASSWORD)).await;
    assert_eq!(first.status(), 200);
    let device = cookie_value(&first, "portal_device").expect("a device cookie after a successful sign-in");
    let cookie = set_cookies(&first).into_iter().find(|c| c.starts_with("portal_device=")).unwrap();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict") && cookie.contains("Max-Age="),
        "{cookie}"
    );

    // Someone else locks the account.
    for _ in 0..5 {
        let guess =
            t.send(&SignIn, sign_in_req("ada@example.com", "not-the-password-at-all").sent_from("203.0.113.9")).await;
        assert_eq!(guess.status(), 401);
    }
    let elsewhere = t.send(&SignIn, sign_in_req("ada@example.com", PASSWORD)).await;
    assert_eq!(elsewhere.status(), 401, "without the device cookie the lockout holds");
    let owner = t.send(&SignIn, sign_in_req("ada@example.com", PASSWORD).cookie("portal_device", &device)).await;
    assert_eq!(owner.status(), 200, "the owner's browser is not kept out: {}", body_text(&owner));
    assert_eq!(cookie_value(&owner, "portal_device").as_deref(), Some(device.as_str()), "the device stays trusted");

    // The device keeps its own failure count: used up, it is trusted no more.
    for _ in 0..5 {
        let wrong = t
            .send(&SignIn, sign_in_req("ada@example.com", "not-the-password-at-all").cookie("portal_device", &device))
            .await;
        assert_eq!(wrong.status(), 401);
    }
    let used_up = t.send(&SignIn, sign_in_req("ada@example.com", PASSWORD).cookie("portal_device", &device)).await;
    assert_eq!(used_up.status(), 401, "a device that failed five times falls back to the account's lockout");

    // Another account's device cookie is no use here.
    register(&t, "grace@example.com").await;
    let grace =
        cookie_value(&t.send(&SignIn, sign_in_req("grace@example.com", PASSWORD)).await, "portal_device").unwrap();
    let borrowed = t.send(&SignIn, sign_in_req("ada@example.com", PASSWORD).cookie("portal_device", &grace)).await;
    assert_eq!(borrowed.status(), 401);
}

#[tokio::test]
async fn lockouts_never_exceed_the_configured_maximum() {
    let t = test_portal(&[("PORTAL_LOCKOUT_SECONDS", "300"), ("PORTAL_LOCKOUT_MAX_SECONDS", "600")]);
    register(&t, "ada@example.com").await;
    for _ in 0..4 {
        for _ in 0..5 {
            t.send(&SignIn, sign_in_req("ada@example.com", "not-the-password-at-all")).await;
        }
        t.clock.advance(600);
    }
    let contact = t.contacts.all().pop().unwrap();
    assert!(contact.lockouts >= 3, "{:?}", contact.lockout());
    assert_eq!(t.send(&SignIn, sign_in_req("ada@example.com", PASSWORD)).await.status(), 200, "600 s at most");
}

#[tokio::test]
async fn a_sign_in_ends_the_session_the_browser_arrived_with() {
    let t = test_portal(&[]);
    let ada = cookie_value(&register(&t, "ada@example.com").await, "portal_session").unwrap();
    register(&t, "grace@example.com").await;
    let grace = t.send(&SignIn, sign_in_req("grace@example.com", PASSWORD).cookie("portal_session", &ada)).await;
    assert_eq!(grace.status(), 200);
    let profile = t.send(&Profile, Req::get("/profile").cookie("portal_session", &ada)).await;
    assert_eq!(profile.status(), 401, "the session it arrived with ended");
}

#[tokio::test]
async fn only_the_newest_reset_link_works_and_a_password_change_voids_it() {
    let t = test_portal(&[]);
    let session = cookie_value(&register(&t, "ada@example.com").await, "portal_session").unwrap();
    t.mailbox().await;
    let forgot = || t.send(&SignIn, Req::post("/forgot-password").json(json!({"email": "ada@example.com"})));
    forgot().await;
    forgot().await;
    let links: Vec<String> = t.mailbox().await.iter().map(|m| link_in(m, "/reset-password")).collect();
    let reset = |token: &str, password: &str| {
        t.send(&SignIn, Req::post("/reset-password").json(json!({"token": token, "new_password": password})))
    };
    assert_eq!(body_json(&reset(&links[0], "Brand-New-Passphrase-77").await)["error"], "token_invalid");

    let changed = change_password(&t, &session).await;
    assert_eq!(changed.status(), 204);
    assert_eq!(
        body_json(&reset(&links[1], "Brand-New-Passphrase-77").await)["error"],
        "token_invalid",
        "the change voided it"
    );
}

#[tokio::test]
async fn a_bad_reset_token_is_refused_before_the_new_password_is_judged() {
    let t = test_portal(&[]);
    let weak_and_bad = t
        .send(&SignIn, Req::post("/reset-password").json(json!({"token": "A".repeat(43), "new_password": "short"})))
        .await;
    assert_eq!(body_json(&weak_and_bad)["error"], "token_invalid", "the token is looked at first");
}

#[tokio::test]
async fn a_password_change_and_a_reset_each_send_a_notice_to_the_accounts_address() {
    let t = test_portal(&[("PORTAL_EMAILS_PER_RECIPIENT_PER_HOUR", "100")]);
    let session = cookie_value(&register(&t, "ada@example.com").await, "portal_session").unwrap();
    t.mailbox().await;
    let changed = change_password(&t, &session).await;
    assert_eq!(changed.status(), 204);
    t.send(&SignIn, Req::post("/forgot-password").json(json!({"email": "ada@example.com"}))).await;
    let mail = t.mailbox().await;
    let notice = mail.iter().find(|m| m.subject == "Your password was changed").expect("the notice");
    assert!(notice.text.contains("was changed on") && notice.to == "ada@example.com", "{}", notice.text);
    let token = link_in(mail.iter().find(|m| m.subject == "Reset your password").unwrap(), "/reset-password");
    let reset = t
        .send(
            &SignIn,
            Req::post("/reset-password").json(json!({"token": token, "new_password": "Brand-New-Passphrase-77"})),
        )
        .await;
    assert_eq!(reset.status(), 204);
    let notices = t.mailbox().await;
    assert_eq!(notices.len(), 1);
    assert_eq!(notices[0].to, "ada@example.com");
    assert!(notices[0].text.contains("reset with an emailed link"), "{}", notices[0].text);
    let kinds: Vec<MessageKind> = t.outbox.all().iter().map(|m| m.kind).collect();
    assert!(kinds.contains(&MessageKind::PasswordChangedNotice) && kinds.contains(&MessageKind::PasswordResetNotice));
}
