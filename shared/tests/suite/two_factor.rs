//! Handler tests for two-factor authentication and "remember me" (in-memory adapters): TOTP set-up
//! and confirmation, the sign-in's second step (TOTP, emailed code, recovery code), its attempt
//! limit, expiry and lockout, recovery code sets, disabling, notices and the session epoch, the
//! required-roles policy, and the session cookie's lifetime.

use portal::domain::outbox::MessageKind;
use portal::domain::time::Timestamp;
use portal::domain::two_factor::TOTP_STEP_SECS;
use portal::handlers::profile::Profile;
use portal::handlers::register::Register;
use portal::handlers::sign_in::SignIn;
use portal_testkit::*;
use serde_json::{Value, json};

use portal_testkit::two_factor::{ADA, as_viewer, profile_post, register_ada as register, set_up_totp};

/// The current code of the base32 `secret`, `offset` steps from now.
fn code(t: &TestPortal, secret: &str, offset: i64) -> String {
    portal_testkit::two_factor::totp_code(t, secret, offset)
}

fn sign_in(remember: bool) -> Req {
    let mut body = json!({"login": ADA, "password": PASSWORD});
    if remember {
        body["remember_me"] = json!(true);
    }
    Req::post("/signin").json(body)
}

/// Signs in with the password: the pending sign-in's token (asserting the second step is asked).
async fn pending(t: &TestPortal, remember: bool) -> String {
    let response = t.send(&SignIn, sign_in(remember)).await;
    assert_eq!(response.status(), 200, "{}", body_text(&response));
    assert_eq!(body_json(&response)["status"], "second_factor_required");
    assert_eq!(cookie_value(&response, "portal_session"), None, "no session before the second factor");
    cookie_value(&response, "portal_pending").expect("a pending sign-in cookie")
}

async fn second_step(t: &TestPortal, pending: &str, code: &str) -> HttpResponse {
    let req = Req::post("/signin/second-factor").json(json!({"code": code})).cookie("portal_pending", pending);
    t.send(&SignIn, req).await
}

async fn status(t: &TestPortal, session: &str) -> Value {
    let response = t.send(&Profile, as_viewer(Req::get("/profile/two-factor"), session)).await;
    assert_eq!(response.status(), 200, "{}", body_text(&response));
    body_json(&response)
}

#[tokio::test]
async fn totp_is_set_up_with_the_password_and_a_first_code_then_asked_at_sign_in() {
    let t = test_portal(&[]);
    let session = register(&t).await;
    assert_eq!(status(&t, &session).await, json!({"totp": false, "email": false, "recovery_codes_left": 0}));

    let wrong = profile_post(&t, &session, "/profile/two-factor/totp", json!({"current_password": "wrong"})).await;
    assert_eq!(wrong.status(), 400);
    assert!(body_json(&wrong)["fields"]["current_password"].is_string());

    let begun = profile_post(&t, &session, "/profile/two-factor/totp", json!({"current_password": PASSWORD})).await;
    let body = body_json(&begun);
    let secret = body["secret"].as_str().unwrap().to_string();
    assert!(body["otpauth_uri"].as_str().unwrap().starts_with("otpauth://totp/"));
    assert_eq!(status(&t, &session).await["totp"], false, "not on until confirmed");

    let confirm = |code: String| profile_post(&t, &session, "/profile/two-factor/totp/confirm", json!({"code": code}));
    let refused = confirm(code(&t, &secret, 3)).await;
    assert_eq!(refused.status(), 400, "a code three steps away");
    assert!(body_json(&refused)["fields"]["code"].is_string());

    let confirmed = confirm(code(&t, &secret, 0)).await;
    assert_eq!(confirmed.status(), 200, "{}", body_text(&confirmed));
    let codes = body_json(&confirmed)["recovery_codes"].as_array().unwrap().len();
    assert_eq!(codes, 10);
    let new_session = cookie_value(&confirmed, "portal_session").unwrap();
    assert_eq!(status(&t, &new_session).await, json!({"totp": true, "email": false, "recovery_codes_left": 10}));
    let old = t.send(&Profile, as_viewer(Req::get("/profile"), &session)).await;
    assert_eq!(old.status(), 401, "the change ended the other sessions");

    // The secret is stored sealed, never in the clear.
    let stored = format!("{:?}", t.two_factor.all());
    let raw = totp_rs::Secret::Encoded(secret.clone()).to_bytes().unwrap();
    assert!(!stored.contains(&secret) && !stored.contains(&format!("{raw:?}")), "{stored}");

    let token = pending(&t, false).await;
    let response = t.send(&SignIn, sign_in(false)).await;
    assert_eq!(body_json(&response)["methods"], json!(["totp", "recovery_code"]));
    // The confirming code was used: it does not sign in again (replay).
    assert_eq!(second_step(&t, &token, &code(&t, &secret, 0)).await.status(), 401);
    t.clock.advance(TOTP_STEP_SECS);
    let done = second_step(&t, &token, &code(&t, &secret, 0)).await;
    assert_eq!(done.status(), 200, "{}", body_text(&done));
    assert_eq!(body_json(&done)["email"], ADA);
    assert!(cookie_value(&done, "portal_session").is_some());
    assert!(cookie_value(&done, "portal_device").is_some());
    assert_eq!(second_step(&t, &token, &code(&t, &secret, 1)).await.status(), 401, "the pending sign-in is used up");
}

#[tokio::test]
async fn five_wrong_codes_end_the_pending_sign_in_and_count_towards_lockout() {
    let t = test_portal(&[]);
    let session = register(&t).await;
    let (secret, _, _) = set_up_totp(&t, &session).await;
    t.clock.advance(TOTP_STEP_SECS * 3);
    let token = pending(&t, false).await;
    for attempt in 1..=5 {
        let wrong = second_step(&t, &token, "000000").await;
        assert_eq!(wrong.status(), 401, "attempt {attempt}");
        assert_eq!(body_json(&wrong)["error"], "invalid_credentials");
    }
    let after = second_step(&t, &token, &code(&t, &secret, 0)).await;
    assert_eq!(after.status(), 401, "the right code after five wrong ones");
    assert!(t.two_factor.all_pending().is_empty(), "the pending sign-in is gone");
    // Five wrong codes are five failed attempts on the account: it is locked, right password or not.
    let locked = t.send(&SignIn, sign_in(false)).await;
    assert_eq!(locked.status(), 401);
    assert_eq!(body_json(&locked)["error"], "invalid_credentials");
}

#[tokio::test]
async fn a_pending_sign_in_expires_after_five_minutes() {
    let t = test_portal(&[]);
    let session = register(&t).await;
    let (secret, _, _) = set_up_totp(&t, &session).await;
    let token = pending(&t, false).await;
    t.clock.advance(301);
    let late = second_step(&t, &token, &code(&t, &secret, 0)).await;
    assert_eq!(late.status(), 401);
    assert_eq!(body_json(&late)["error"], "unauthenticated");
    let page = t.send(&SignIn, Req::get("/signin/second-factor").html().cookie("portal_pending", &token)).await;
    assert_eq!((page.status().as_u16(), location(&page).as_deref()), (303, Some("/signin")));
}

#[tokio::test]
async fn a_recovery_code_works_once_and_a_new_set_voids_the_old() {
    let t = test_portal(&[]);
    let session = register(&t).await;
    let (_, codes, session) = set_up_totp(&t, &session).await;
    let token = pending(&t, false).await;
    let used = second_step(&t, &token, &codes[0].to_uppercase()).await;
    assert_eq!(used.status(), 200, "recovery codes are read case-insensitively: {}", body_text(&used));
    let session_after = cookie_value(&used, "portal_session").unwrap();
    assert_eq!(status(&t, &session_after).await["recovery_codes_left"], 9);
    let token = pending(&t, false).await;
    assert_eq!(second_step(&t, &token, &codes[0]).await.status(), 401, "used twice");

    let wrong = json!({"current_password": "nope", "second_factor_code": codes[2]});
    let wrong = profile_post(&t, &session_after, "/profile/two-factor/recovery-codes", wrong).await;
    assert_eq!(wrong.status(), 400);
    let renew = json!({"current_password": PASSWORD, "second_factor_code": codes[2]});
    let renewed = profile_post(&t, &session_after, "/profile/two-factor/recovery-codes", renew).await;
    assert_eq!(renewed.status(), 200, "{}", body_text(&renewed));
    let new_codes = body_json(&renewed)["recovery_codes"].as_array().unwrap().clone();
    assert_eq!(new_codes.len(), 10);
    let token = pending(&t, false).await;
    assert_eq!(second_step(&t, &token, &codes[1]).await.status(), 401, "an old code after a new set");
    assert_eq!(second_step(&t, &token, new_codes[0].as_str().unwrap()).await.status(), 200);
    let _ = session;
}

#[tokio::test]
async fn every_change_is_emailed_and_ends_the_other_sessions() {
    let t = test_portal(&[]);
    let first = register(&t).await;
    let other = cookie_value(&t.send(&SignIn, sign_in(false)).await, "portal_session").unwrap();
    t.mailbox().await;
    let (secret, _, current) = set_up_totp(&t, &first).await;
    for session in [&first, &other] {
        assert_eq!(t.send(&Profile, as_viewer(Req::get("/profile"), session)).await.status(), 401);
    }
    assert_eq!(t.send(&Profile, as_viewer(Req::get("/profile"), &current)).await.status(), 200);
    let notices: Vec<_> = t.outbox.all().into_iter().filter(|m| m.kind == MessageKind::TwoFactorNotice).collect();
    assert_eq!(notices.len(), 1);
    let mail = t.mailbox().await;
    assert!(mail.iter().any(|m| m.to == ADA && m.subject == "Your two-factor authentication changed"), "{mail:?}");

    t.clock.advance(TOTP_STEP_SECS);
    let wrong = json!({"current_password": "wrong", "second_factor_code": code(&t, &secret, 0)});
    let wrong = profile_post(&t, &current, "/profile/two-factor/disable", wrong).await;
    assert_eq!(wrong.status(), 400, "disabling needs the password");
    let password_alone =
        profile_post(&t, &current, "/profile/two-factor/disable", json!({"current_password": PASSWORD})).await;
    assert_eq!(password_alone.status(), 400, "and a current second factor");
    assert!(body_json(&password_alone)["fields"]["second_factor_code"].is_string(), "{}", body_text(&password_alone));
    assert_eq!(status(&t, &current).await["totp"], true);
    let disable = json!({"current_password": PASSWORD, "second_factor_code": code(&t, &secret, 0)});
    let disabled = profile_post(&t, &current, "/profile/two-factor/disable", disable).await;
    assert_eq!(disabled.status(), 204);
    let after = cookie_value(&disabled, "portal_session").unwrap();
    assert_eq!(t.send(&Profile, as_viewer(Req::get("/profile"), &current)).await.status(), 401);
    assert_eq!(status(&t, &after).await, json!({"totp": false, "email": false, "recovery_codes_left": 0}));
    let mail = t.mailbox().await;
    assert!(mail.iter().any(|m| m.text.contains("two-factor authentication was turned off")), "{mail:?}");
    let plain = t.send(&SignIn, sign_in(false)).await;
    assert!(cookie_value(&plain, "portal_session").is_some(), "no second step once off");
}

#[tokio::test]
async fn an_emailed_code_is_a_second_factor_used_once() {
    let t =
        test_portal(&[("PORTAL_EMAILS_PER_RECIPIENT_PER_HOUR", "100"), ("PORTAL_EMAILS_PER_ACCOUNT_PER_HOUR", "100")]);
    let session = register(&t).await;
    let on =
        profile_post(&t, &session, "/profile/two-factor/email", json!({"current_password": PASSWORD, "enabled": true}))
            .await;
    assert_eq!(on.status(), 200, "{}", body_text(&on));
    assert_eq!(body_json(&on)["recovery_codes"].as_array().map(Vec::len), Some(10), "the first recovery codes");
    t.mailbox().await;
    let token = pending(&t, false).await;
    let asked = t
        .send(&SignIn, Req::post("/signin/second-factor/email").json(json!({})).cookie("portal_pending", &token))
        .await;
    assert_eq!(asked.status(), 202);
    let mail = t.mailbox().await;
    let email = mail.iter().find(|m| m.subject == "Your sign-in code").expect("the code email");
    let code: String = email
        .text
        .lines()
        .map(str::trim)
        .find(|l| l.len() == 6 && l.chars().all(|c| c.is_ascii_digit()))
        .unwrap()
        .into();
    let stored = format!("{:?}", t.two_factor.all());
    assert!(!stored.contains(&code), "only a digest of the code is stored");
    assert_eq!(second_step(&t, &token, &code).await.status(), 200);
    let again = pending(&t, false).await;
    assert_eq!(second_step(&t, &again, &code).await.status(), 401, "an emailed code works once");

    // It expires after ten minutes.
    t.send(&SignIn, Req::post("/signin/second-factor/email").json(json!({})).cookie("portal_pending", &again)).await;
    let mail = t.mailbox().await;
    let email = mail.iter().find(|m| m.subject == "Your sign-in code").unwrap();
    let code: String = email
        .text
        .lines()
        .map(str::trim)
        .find(|l| l.len() == 6 && l.chars().all(|c| c.is_ascii_digit()))
        .unwrap()
        .into();
    t.clock.advance(240);
    let fresh = pending(&t, false).await;
    t.clock.advance(400);
    assert_eq!(second_step(&t, &fresh, &code).await.status(), 401, "an emailed code after ten minutes");
}

#[tokio::test]
async fn a_pending_sign_in_asks_for_a_few_codes_and_never_spends_the_owners_allowances() {
    let t = test_portal(&[("PORTAL_EMAILS_PER_RECIPIENT_PER_HOUR", "2")]);
    let session = register(&t).await;
    profile_post(&t, &session, "/profile/two-factor/email", json!({"current_password": PASSWORD, "enabled": true}))
        .await;
    let token = pending(&t, false).await;
    let before = t.outbox.all().iter().filter(|m| m.kind == MessageKind::SignInCode).count();
    for _ in 0..6 {
        let asked = t
            .send(&SignIn, Req::post("/signin/second-factor/email").json(json!({})).cookie("portal_pending", &token))
            .await;
        assert_eq!(asked.status(), 202, "the same answer within or over the cap");
    }
    let sent = t.outbox.all().iter().filter(|m| m.kind == MessageKind::SignInCode).count() - before;
    assert_eq!(sent, 3, "a pending sign-in's own cap");
    // Someone who has the password spent none of the owner's allowances: a reset link still goes.
    let reset = t.send(&SignIn, Req::post("/forgot-password").json(json!({"email": ADA}))).await;
    assert_eq!(reset.status(), 202);
    assert!(t.outbox.all().iter().any(|m| m.kind == MessageKind::ResetRequest), "the owner's reset link went out");
}

#[tokio::test]
async fn the_browser_pages_lead_through_the_second_step() {
    let t = test_portal(&[]);
    let session = register(&t).await;
    let (secret, _, _) = set_up_totp(&t, &session).await;
    t.clock.advance(TOTP_STEP_SECS);
    let csrf = "c".repeat(43);
    let form = Req::post("/signin").form(&[("login", ADA), ("password", PASSWORD), ("remember_me", "on")], &csrf);
    let response = t.send(&SignIn, form).await;
    assert_eq!((response.status().as_u16(), location(&response).as_deref()), (303, Some("/signin/second-factor")));
    let token = cookie_value(&response, "portal_pending").unwrap();
    let page = t.send(&SignIn, Req::get("/signin/second-factor").html().cookie("portal_pending", &token)).await;
    assert_eq!(page.status(), 200);
    assert!(body_text(&page).contains("second-factor-form"));
    let wrong = t
        .send(
            &SignIn,
            Req::post("/signin/second-factor").form(&[("code", "111111")], &csrf).cookie("portal_pending", &token),
        )
        .await;
    assert_eq!(wrong.status(), 401);
    assert!(body_text(&wrong).contains("second-factor-form"), "the form again, with the error");
    let right = Req::post("/signin/second-factor").form(&[("code", &code(&t, &secret, 0))], &csrf);
    let done = t.send(&SignIn, right.cookie("portal_pending", &token)).await;
    assert_eq!((done.status().as_u16(), location(&done).as_deref()), (303, Some("/")));
    let cookie = set_cookies(&done).into_iter().find(|c| c.starts_with("portal_session=")).unwrap();
    assert!(cookie.contains("Max-Age=2592000"), "remember me is carried through the second step: {cookie}");
}

#[tokio::test]
async fn the_set_up_page_shows_a_qr_code_and_the_key() {
    let t = test_portal(&[]);
    let session = register(&t).await;
    let csrf = "c".repeat(43);
    let req = Req::post("/profile/two-factor/totp").form(&[("current_password", PASSWORD)], &csrf);
    let page = t.send(&Profile, as_viewer(req, &session)).await;
    assert_eq!(page.status(), 200);
    let html = body_text(&page);
    assert!(html.contains("<svg") && html.contains("id=\"totp-secret\""), "{html}");
    assert!(!html.contains("<script"));
}

#[tokio::test]
async fn a_required_role_without_a_second_factor_is_sent_to_set_up_first() {
    let t = test_portal(&[("PORTAL_TWO_FACTOR_REQUIRED_ROLES", "Administrators")]);
    register(&t).await;
    let mut ada = t.contacts.all().into_iter().next().unwrap();
    ada.roles = vec!["Administrators".into()];
    t.contacts.put(ada);

    let signed_in = t.send(&SignIn, sign_in(false)).await;
    assert_eq!(signed_in.status(), 200);
    assert_eq!(body_json(&signed_in)["two_factor_setup_required"], true);
    let limited = cookie_value(&signed_in, "portal_session").unwrap();
    let profile = t.send(&Profile, as_viewer(Req::get("/profile"), &limited)).await;
    assert_eq!(profile.status(), 403);
    assert_eq!(body_json(&profile)["error"], "forbidden");
    let home = t.send(&Profile, as_viewer(Req::get("/").html(), &limited)).await;
    assert_eq!((home.status().as_u16(), location(&home).as_deref()), (303, Some("/profile/two-factor")));
    let admin =
        t.send(&portal::handlers::admin::CreateInvitation, as_viewer(Req::get("/admin/contacts"), &limited)).await;
    assert_eq!(admin.status(), 403, "staff pages too");

    let csrf = "c".repeat(43);
    let form = Req::post("/signin").form(&[("login", ADA), ("password", PASSWORD)], &csrf);
    let browser = t.send(&SignIn, form).await;
    assert_eq!(location(&browser).as_deref(), Some("/profile/two-factor"));

    let (_, _, full) = set_up_totp(&t, &limited).await;
    assert_eq!(t.send(&Profile, as_viewer(Req::get("/profile"), &full)).await.status(), 200, "set up: every page");
}

#[tokio::test]
async fn remember_me_makes_the_cookie_and_session_last_the_configured_days() {
    let t = test_portal(&[("PORTAL_REMEMBER_ME_DAYS", "10")]);
    register(&t).await;
    let plain = t.send(&SignIn, sign_in(false)).await;
    let cookie = set_cookies(&plain).into_iter().find(|c| c.starts_with("portal_session=")).unwrap();
    assert!(!cookie.contains("Max-Age") && !cookie.contains("Expires"), "a browser-session cookie: {cookie}");
    let remembered = t.send(&SignIn, sign_in(true)).await;
    let cookie = set_cookies(&remembered).into_iter().find(|c| c.starts_with("portal_session=")).unwrap();
    assert!(cookie.contains("Max-Age=864000"), "{cookie}");
    let now = Timestamp::from_secs(1_800_000_000);
    let mut lifetimes: Vec<i64> = t.sessions.all().iter().map(|s| s.expires_at - now).collect();
    lifetimes.sort();
    assert_eq!(lifetimes.last(), Some(&(10 * 86_400)), "the remembered session's absolute limit");
    assert!(lifetimes.contains(&(24 * 3600)), "the others keep the usual limit");
    // "Remember me" keeps the browser signed in for those days: no idle limit; a plain session has one.
    let token = cookie_value(&remembered, "portal_session").unwrap();
    let plain = cookie_value(&plain, "portal_session").unwrap();
    t.clock.advance(61 * 60);
    assert_eq!(t.send(&Profile, as_viewer(Req::get("/profile"), &token)).await.status(), 200, "remembered");
    assert_eq!(t.send(&Profile, as_viewer(Req::get("/profile"), &plain)).await.status(), 401, "idle");
    t.clock.advance(3 * 86_400);
    assert_eq!(t.send(&Profile, as_viewer(Req::get("/profile"), &token)).await.status(), 200, "three idle days");
    t.clock.advance(7 * 86_400);
    assert_eq!(t.send(&Profile, as_viewer(Req::get("/profile"), &token)).await.status(), 401, "the days are up");
}

#[tokio::test]
async fn a_refused_change_shows_the_settings_as_they_stand() {
    let t = test_portal(&[]);
    let session = register(&t).await;
    let (_, _, session) = set_up_totp(&t, &session).await;
    let csrf = "c".repeat(43);
    let fields = [("current_password", "not-it"), ("second_factor_code", "123456")];
    let req = Req::post("/profile/two-factor/disable").form(&fields, &csrf);
    let page = t.send(&Profile, as_viewer(req, &session)).await;
    assert_eq!(page.status(), 400);
    let html = body_text(&page);
    assert!(html.contains(r#"id="status-totp">on"#), "{html}");
    assert!(html.contains("Current password is not your current password"), "{html}");
    assert_eq!(status(&t, &session).await["totp"], true);
}

#[tokio::test]
async fn the_right_password_does_not_wipe_the_failures_of_wrong_codes() {
    let t = test_portal(&[("PORTAL_LOCKOUT_THRESHOLD", "3")]);
    let session = register(&t).await;
    set_up_totp(&t, &session).await;
    t.clock.advance(TOTP_STEP_SECS * 3);
    for _ in 0..2 {
        let token = pending(&t, false).await;
        assert_eq!(second_step(&t, &token, "000000").await.status(), 401);
    }
    let token = pending(&t, false).await;
    assert_eq!(second_step(&t, &token, "000000").await.status(), 401, "the third wrong code, across sign-ins");
    let locked = t.send(&SignIn, sign_in(false)).await;
    assert_eq!(locked.status(), 401, "three wrong codes locked the account although the password was right");
}

#[tokio::test]
async fn redeeming_onto_an_account_with_a_second_factor_needs_a_current_code_of_it() {
    let t = test_portal(&[
        ("PORTAL_EMAILS_PER_RECIPIENT_PER_HOUR", "100"),
        ("PORTAL_EMAILS_PER_ACCOUNT_PER_HOUR", "100"),
        ("PORTAL_LOCKOUT_THRESHOLD", "5"),
    ]);
    let admin = t.send(&Register, Req::post("/register").json(registration("admin@example.com"))).await;
    let admin = cookie_value(&admin, "portal_session").unwrap();
    let mut staff = t.contacts.all().into_iter().next().unwrap();
    staff.roles = vec!["Administrators".into()];
    t.contacts.put(staff);
    let session = register(&t).await;
    let (secret, _, _) = set_up_totp(&t, &session).await;
    let body = json!({"email": ADA, "first_name": "Ada", "last_name": "Lovelace", "roles": ["Partners"]});
    let created = t
        .send(&portal::handlers::admin::CreateInvitation, as_viewer(Req::post("/admin/invitations").json(body), &admin))
        .await;
    assert_eq!(created.status(), 201, "{}", body_text(&created));
    let mail = t.mailbox().await;
    let link = mail.iter().flat_map(|m| m.text.lines()).find(|l| l.contains("/redeem?code=")).expect("the invitation");
    let code_sent = link.split("code=").nth(1).unwrap().trim().to_string();
    // Two wrong codes at sign-in count against the account.
    t.clock.advance(TOTP_STEP_SECS);
    for _ in 0..2 {
        let token = pending(&t, false).await;
        assert_eq!(second_step(&t, &token, "000000").await.status(), 401);
    }
    let ada = || t.contacts.all().into_iter().find(|c| c.email == ADA).unwrap();
    let redeem = |extra: Value| {
        let mut body = json!({"code": code_sent, "existing_account": true, "login": ADA, "password": PASSWORD});
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        Req::post("/redeem").json(body)
    };
    let redeemer = portal::handlers::redeem::RedeemInvitation;

    let password_alone = t.send(&redeemer, redeem(json!({}))).await;
    assert_eq!(password_alone.status(), 400, "{}", body_text(&password_alone));
    assert!(body_json(&password_alone)["fields"]["second_factor_code"].is_string());
    assert_eq!(ada().roles, Vec::<String>::new(), "nothing redeemed with half a sign-in");
    assert_eq!(ada().failed_sign_ins, 2, "the right password wiped none of the wrong codes' failures");

    let wrong = t.send(&redeemer, redeem(json!({"second_factor_code": "000000"}))).await;
    assert_eq!(wrong.status(), 400);
    assert_eq!(ada().failed_sign_ins, 3, "a wrong code counts");
    assert_eq!(ada().roles, Vec::<String>::new());

    let right = t.send(&redeemer, redeem(json!({"second_factor_code": code(&t, &secret, 0)}))).await;
    assert_eq!(right.status(), 200, "{}", body_text(&right));
    assert_eq!(body_json(&right)["roles"], json!(["Partners"]), "the invitation is redeemed");
    let session = cookie_value(&right, "portal_session").expect("both factors: signed in through the door");
    assert_eq!(t.send(&Profile, as_viewer(Req::get("/profile"), &session)).await.status(), 200);
    assert_eq!(ada().failed_sign_ins, 0, "both factors right: the failures are cleared");
}
