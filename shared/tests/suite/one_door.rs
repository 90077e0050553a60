//! Handler tests of the one door to a session (in-memory adapters): only the door sets the session
//! cookie, on any route of any function; a repeated registration gets what a sign-in gets; every
//! way in checks the account's state; a pending sign-in is bound to the account's epoch; a group
//! redemption honours confirmation; unknown, wrong and locked logins do the same work; security
//! notices cannot be silenced by the request allowances and are capped per account with a later
//! summary; a secret sealed before secrets were bound to their contact is bound on its next use;
//! an idempotent form with repeated fields is told apart.

use axum::Router;
use axum::http::header::SET_COOKIE;
use axum::routing::get;
use portal::domain::outbox::MessageKind;
use portal::domain::two_factor::{TOTP_STEP_SECS, TotpSecret};
use portal::handlers::admin::CreateInvitation;
use portal::handlers::external::ExternalSignIn;
use portal::handlers::profile::Profile;
use portal::handlers::redeem::RedeemInvitation;
use portal::handlers::register::Register;
use portal::handlers::sign_in::SignIn;
use portal::ports::{UsesContacts, UsesPasskeys, UsesTwoFactor};
use portal::usecases::door::Way;
use portal::web::reply::ThroughTheDoor;
use portal::web::{AppState, HttpFunction};
use portal_testkit::*;
use serde_json::json;

use portal_testkit::two_factor::{ADA, as_viewer, profile_post, register_ada as register};

/// The code of the base32 `secret`, `offset` steps from now.
fn code(t: &TestPortal, secret: &str, offset: i64) -> String {
    portal_testkit::two_factor::totp_code(t, secret, offset)
}

/// Sets up TOTP for the session's contact; returns (secret, new session token). The clock then
/// moves on a step, so the next code is a fresh one.
async fn set_up_totp(t: &TestPortal, session: &str) -> (String, String) {
    let (secret, _, session) = portal_testkit::two_factor::set_up_totp(t, session).await;
    t.clock.advance(TOTP_STEP_SECS);
    (secret, session)
}

fn sign_in_req(login: &str, password: &str) -> Req {
    Req::post("/signin").json(json!({"login": login, "password": password}))
}

/// The way in a response's session cookie came through, if it sets one.
fn door_of(response: &HttpResponse) -> Option<Way> {
    cookie_value(response, "portal_session").filter(|v| !v.is_empty())?;
    Some(response.extensions().get::<ThroughTheDoor>().expect("a session cookie without the door's mark").0)
}

/// A function's routes, with one more that sets a session cookie by hand, as a careless handler
/// would.
struct WithASecondDoor(&'static dyn HttpFunction);

impl HttpFunction for WithASecondDoor {
    fn routes(&self) -> Router<AppState> {
        let by_hand = || async { ([(SET_COOKIE, "portal_session=made-by-hand; Path=/; HttpOnly")], "signed in") };
        self.0.routes().route("/a-second-door", get(by_hand))
    }
}

const FUNCTIONS: [(&str, &dyn HttpFunction); 6] = [
    ("external-sign-in", &ExternalSignIn),
    ("sign-in", &SignIn),
    ("register", &Register),
    ("profile", &Profile),
    ("redeem-invitation", &RedeemInvitation),
    ("create-invitation", &CreateInvitation),
];

#[tokio::test]
async fn no_route_of_any_function_sets_the_session_cookie_but_through_the_door() {
    let t = test_portal(&[]);
    for (name, function) in FUNCTIONS {
        let response = t.send(&WithASecondDoor(function), Req::get("/a-second-door")).await;
        assert_eq!(response.status(), 500, "{name}: a session cookie set by hand is refused");
        assert_eq!(cookie_value(&response, "portal_session"), None, "{name}: and never reaches the browser");
    }
}

/// Every route of the local router table (the contract's paths, as the workspace's `Cargo.toml`
/// routes them to functions), with its path parameters filled in.
fn routed_paths() -> Vec<(String, &'static dyn HttpFunction)> {
    let manifest = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.toml")).unwrap();
    let table = manifest.split("[workspace.metadata.lambda.watch.router]").nth(1).expect("the router table");
    let table = table.split("\n[").next().unwrap();
    let routes: Vec<_> = table
        .lines()
        .filter_map(|line| {
            let (path, function) = line.split_once(" = ")?;
            let path = path.trim().trim_matches('"').replace("{id}", "some-id").replace("{provider}", "example");
            let function = function.trim().trim_matches('"');
            let handler = FUNCTIONS.iter().find(|(name, _)| *name == function).map(|(_, f)| *f);
            Some((path, handler.unwrap_or_else(|| panic!("{function} routes {line}"))))
        })
        .collect();
    assert!(routes.len() >= 30, "the router table was read: {}", routes.len());
    routes
}

#[tokio::test]
async fn the_routes_that_set_the_session_cookie_are_the_ways_through_the_door() {
    let t = test_portal(&[("PORTAL_EMAILS_PER_RECIPIENT_PER_HOUR", "100")]);
    let session = register(&t).await;
    let csrf = "c".repeat(43);
    // Every route, as a signed-in browser and as a program, with what a form or JSON might carry:
    // none of them begins a session outside the door.
    let mut seen: Vec<(String, Way)> = Vec::new();
    for (path, function) in routed_paths() {
        let fields = [("login", ADA), ("password", PASSWORD), ("current_password", PASSWORD), ("code", "000000")];
        let requests = [
            Req::get(&path),
            Req::post(&path).json(json!({"login": ADA, "password": PASSWORD, "current_password": PASSWORD})),
            Req::post(&path).form(&fields, &csrf),
        ];
        for req in requests {
            let response = t.send(function, as_viewer(req, &session)).await;
            if let Some(way) = door_of(&response) {
                seen.push((path.clone(), way));
            }
        }
    }
    seen.sort_by(|a, b| a.0.cmp(&b.0));
    seen.dedup();
    assert_eq!(seen, [("/signin".to_string(), Way::Password)], "only the sign-in answers these with a session");

    // The ways in, each from its route.
    let registered = t.send(&Register, Req::post("/register").json(registration("bea@example.com"))).await;
    assert_eq!(door_of(&registered), Some(Way::Registration));
    let asked = t.send(&SignIn, Req::post("/signin/email-code").json(json!({"email": ADA}))).await;
    assert_eq!(asked.status(), 202);
    let mail = t.mailbox().await;
    let text = &mail.iter().rev().find(|m| m.subject == "Your sign-in code").unwrap().text;
    let code = text.split_whitespace().find(|w| w.len() == 6 && w.chars().all(|c| c.is_ascii_digit())).unwrap();
    let by_code = Req::post("/signin/email-code/verify").json(json!({"email": ADA, "code": code}));
    assert_eq!(door_of(&t.send(&SignIn, by_code).await), Some(Way::EmailCode));
    let begun = t.send(&ExternalSignIn, Req::get("/signin/external/example")).await;
    let back =
        t.provider.sign_in(&location(&begun).unwrap(), portal_testkit::oidc::identity("ada-idp", "new@example.com"));
    let binding = cookie_value(&begun, "portal_external").unwrap();
    let external = t.send(&ExternalSignIn, Req::get(&back).cookie("portal_external", &binding)).await;
    assert_eq!(door_of(&external), Some(Way::External), "{}", body_text(&external));
    let signed_in = t.send(&SignIn, sign_in_req(ADA, PASSWORD)).await;
    assert_eq!(door_of(&signed_in), Some(Way::Password));
    let session = cookie_value(&signed_in, "portal_session").unwrap();
    let changed = profile_post(
        &t,
        &session,
        "/profile/password",
        json!({"current_password": PASSWORD, "new_password": "Another-Passphrase-2024"}),
    )
    .await;
    assert_eq!(changed.status(), 204, "{}", body_text(&changed));
    assert_eq!(door_of(&changed), Some(Way::Continued), "a change continues the session through the door");
}

#[tokio::test]
async fn a_repeated_registration_gets_what_a_sign_in_with_its_password_gets() {
    let t =
        test_portal(&[("PORTAL_EMAILS_PER_RECIPIENT_PER_HOUR", "100"), ("PORTAL_EMAILS_PER_ACCOUNT_PER_HOUR", "100")]);
    let session = register(&t).await;
    let on = json!({"current_password": PASSWORD, "enabled": true});
    assert_eq!(profile_post(&t, &session, "/profile/two-factor/email", on).await.status(), 200);
    // The same registration again, right password: the second factor is asked, as at sign-in.
    let again = t.send(&Register, Req::post("/register").json(registration(ADA))).await;
    assert_eq!(again.status(), 200, "{}", body_text(&again));
    assert_eq!(body_json(&again)["status"], "second_factor_required");
    assert_eq!(cookie_value(&again, "portal_session"), None, "no session with the password alone");
    assert!(cookie_value(&again, "portal_pending").is_some());
}

#[tokio::test]
async fn wrong_passwords_through_registration_lock_the_account() {
    let t = test_portal(&[]);
    register(&t).await;
    for _ in 0..5 {
        let mut wrong = registration(ADA);
        wrong["password"] = json!("Wrong-Passphrase-Guess-99");
        let response = t.send(&Register, Req::post("/register").json(wrong)).await;
        assert_eq!(response.status(), 409, "{}", body_text(&response));
    }
    let ada = t.contacts.all().into_iter().find(|c| c.email == ADA).unwrap();
    assert!(ada.lockout().is_locked(portal::ports::Clock::now(t.clock.as_ref())), "{:?}", ada.lockout());
    let right = t.send(&Register, Req::post("/register").json(registration(ADA))).await;
    assert_eq!(right.status(), 409, "locked: the right password too");
    assert_eq!(t.send(&SignIn, sign_in_req(ADA, PASSWORD)).await.status(), 401);
}

#[tokio::test]
async fn a_repeated_registration_of_an_administrator_gets_only_the_set_up_session() {
    let t = test_portal(&[("PORTAL_TWO_FACTOR_REQUIRED_ROLES", "Administrators")]);
    register(&t).await;
    let mut ada = t.contacts.all().pop().unwrap();
    ada.roles = vec!["Administrators".into()];
    t.contacts.put(ada);
    let again = t.send(&Register, Req::post("/register").json(registration(ADA))).await;
    assert_eq!(again.status(), 201, "{}", body_text(&again));
    let limited = cookie_value(&again, "portal_session").unwrap();
    let admin = t.send(&CreateInvitation, as_viewer(Req::get("/admin/invitations"), &limited)).await;
    assert_eq!(admin.status(), 403, "the role's second factor is still to be set up");
}

#[tokio::test]
async fn a_disabled_or_deleted_account_is_refused_by_every_way_in_and_its_sessions_end() {
    let t = test_portal(&[]);
    let session = register(&t).await;
    let mut ada = t.contacts.all().pop().unwrap();
    ada.login_disabled = true;
    t.contacts.put(ada.clone());
    assert_eq!(t.send(&SignIn, sign_in_req(ADA, PASSWORD)).await.status(), 401);
    assert_eq!(t.send(&Profile, as_viewer(Req::get("/profile"), &session)).await.status(), 401);
    let again = t.send(&Register, Req::post("/register").json(registration(ADA))).await;
    assert_eq!(again.status(), 409, "a repeated registration neither");
    ada.login_disabled = false;
    ada.deleted_at = Some(portal::ports::Clock::now(t.clock.as_ref()));
    t.contacts.put(ada);
    assert_eq!(t.send(&SignIn, sign_in_req(ADA, PASSWORD)).await.status(), 401);
}

#[tokio::test]
async fn a_pending_sign_in_ends_with_a_password_change() {
    let t = test_portal(&[]);
    let session = register(&t).await;
    let (secret, session) = set_up_totp(&t, &session).await;
    let pending = t.send(&SignIn, sign_in_req(ADA, PASSWORD)).await;
    let pending = cookie_value(&pending, "portal_pending").unwrap();
    let change = json!({
        "current_password": PASSWORD, "second_factor_code": code(&t, &secret, 0),
        "new_password": "Another-Passphrase-2024"
    });
    assert_eq!(profile_post(&t, &session, "/profile/password", change).await.status(), 204);
    t.clock.advance(TOTP_STEP_SECS);
    let step = Req::post("/signin/second-factor").json(json!({"code": code(&t, &secret, 0)}));
    let late = t.send(&SignIn, step.cookie("portal_pending", &pending)).await;
    assert_eq!(late.status(), 401, "{}", body_text(&late));
    assert_eq!(cookie_value(&late, "portal_session"), None, "the old password's sign-in never completes");
}

#[tokio::test]
async fn unknown_wrong_and_locked_logins_do_the_same_work() {
    let t = test_portal(&[("PORTAL_FAILURES_PER_ADDRESS_PER_HOUR", "1000")]);
    register(&t).await;
    t.send(&Register, Req::post("/register").json(registration("locked@example.com"))).await;
    for _ in 0..5 {
        t.send(&SignIn, sign_in_req("locked@example.com", "Wrong-Passphrase-Guess-99")).await;
    }
    let work = |login: &'static str| {
        let t = &t;
        async move {
            t.contacts.take_calls();
            let response = t.send(&SignIn, sign_in_req(login, "Wrong-Passphrase-Guess-99")).await;
            let mut calls = t.contacts.take_calls();
            calls.sort();
            (response.status().as_u16(), body_text(&response), calls)
        }
    };
    let unknown = work("nobody@example.com").await;
    let wrong = work(ADA).await;
    let locked = work("locked@example.com").await;
    assert_eq!(unknown.0, 401);
    assert_eq!(unknown, wrong, "an unknown login and a wrong password");
    assert_eq!(wrong.0, locked.0);
    assert_eq!(wrong.1, locked.1);
    let (_, _, locked_calls) = &locked;
    let reads_instead = |calls: &Vec<&str>| {
        let mut calls = calls.iter().map(|c| c.replace("lockout_of", "record_failed_sign_in")).collect::<Vec<_>>();
        calls.sort();
        calls
    };
    assert_eq!(
        reads_instead(&wrong.2),
        reads_instead(locked_calls),
        "a locked account reads where a wrong password records"
    );
    // Five wrong passwords for a login no account has lock it as an account's would.
    for _ in 0..5 {
        t.send(&SignIn, sign_in_req("ghost@example.com", "Wrong-Passphrase-Guess-99")).await;
    }
    let ghost = work("ghost@example.com").await;
    assert_eq!((ghost.0, &ghost.1), (locked.0, &locked.1));
    assert!(ghost.2.contains(&"lockout_of"), "locked like an account: {:?}", ghost.2);
}

#[tokio::test]
async fn a_security_notice_goes_out_when_every_request_allowance_is_spent() {
    let t = test_portal(&[("PORTAL_EMAILS_PER_RECIPIENT_PER_HOUR", "2"), ("PORTAL_EMAILS_PER_ADDRESS_PER_HOUR", "2")]);
    let session = register(&t).await;
    t.mailbox().await;
    let attacker = "203.0.113.9";
    for _ in 0..3 {
        let forgot = Req::post("/forgot-password").json(json!({"email": ADA})).sent_from(attacker);
        assert_eq!(t.send(&SignIn, forgot).await.status(), 202);
    }
    // With the victim's session and password, from the address whose allowance is spent too.
    let on = Req::post("/profile/two-factor/email").json(json!({"current_password": PASSWORD, "enabled": true}));
    let changed = t.send(&Profile, as_viewer(on.sent_from(attacker), &session)).await;
    assert_eq!(changed.status(), 200, "{}", body_text(&changed));
    let mail = t.mailbox().await;
    assert!(
        mail.iter().any(|m| m.to == ADA && m.subject == "Your two-factor authentication changed"),
        "the notice arrives: {:?}",
        mail.iter().map(|m| &m.subject).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn notices_over_the_hourly_cap_are_summed_up_in_one_later_notice() {
    let t = test_portal(&[]);
    let mut session = register(&t).await;
    t.mailbox().await;
    let mut password = PASSWORD.to_string();
    let mut change = |n: usize| {
        let current = password.clone();
        let next = format!("Changed-Passphrase-Number-{n}");
        password = next.clone();
        json!({"current_password": current, "new_password": next})
    };
    for n in 0..22 {
        let response = profile_post(&t, &session, "/profile/password", change(n)).await;
        assert_eq!(response.status(), 204, "change {n}: {}", body_text(&response));
        session = cookie_value(&response, "portal_session").unwrap();
    }
    let notices = |kind| t.outbox.all().into_iter().filter(|m| m.kind == kind).count();
    assert_eq!(notices(MessageKind::PasswordChangedNotice), 20, "the account's hourly notices");
    assert_eq!(notices(MessageKind::HeldNoticesSummary), 0);
    t.mailbox().await;

    // An hour later (signed in again: the session was idle meanwhile).
    t.clock.advance(3600);
    // The sign-in from a browser the account does not know is the next notice: the summary
    // goes with it.
    let signed_in = t.send(&SignIn, sign_in_req(ADA, "Changed-Passphrase-Number-21")).await;
    session = cookie_value(&signed_in, "portal_session").unwrap();
    let mail = t.mailbox().await;
    let mut subjects: Vec<_> = mail.iter().map(|m| m.subject.as_str()).collect();
    subjects.sort();
    assert_eq!(subjects, ["A new sign-in to your account", "More changes were made to your account"]);
    let summary = mail.iter().find(|m| m.subject.starts_with("More changes")).unwrap();
    assert!(summary.text.contains("2 more security changes"), "{}", summary.text);
    assert!(summary.text.contains("password changed notice"), "{}", summary.text);
    let response = profile_post(&t, &session, "/profile/password", change(22)).await;
    assert_eq!(response.status(), 204, "{}", body_text(&response));
    session = cookie_value(&response, "portal_session").unwrap();
    let mail = t.mailbox().await;
    assert_eq!(mail.iter().map(|m| m.subject.as_str()).collect::<Vec<_>>(), ["Your password was changed"]);

    let response = profile_post(&t, &session, "/profile/password", change(23)).await;
    assert_eq!(response.status(), 204);
    let mail = t.mailbox().await;
    assert_eq!(mail.len(), 1, "summed up once: {:?}", mail.iter().map(|m| &m.subject).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_reset_notice_lists_the_passkeys_that_still_sign_in() {
    let t = test_portal(&[]);
    register(&t).await;
    let ada = t.contacts.all().pop().unwrap();
    let passkey = portal::domain::passkey::StoredPasskey {
        id: "pk-1".into(),
        contact_id: ada.contact_id.clone(),
        name: "Work laptop".into(),
        created_at: portal::ports::Clock::now(t.clock.as_ref()),
        last_used_at: None,
        sign_count: 0,
        credential: "{}".into(),
    };
    let now = portal::ports::Clock::now(t.clock.as_ref());
    assert!(t.portal.passkeys().add(&passkey, "epoch-with-a-passkey", now, &[]).await.unwrap());
    t.send(&SignIn, Req::post("/forgot-password").json(json!({"email": ADA}))).await;
    let mail = t.mailbox().await;
    let reset = mail.iter().find(|m| m.subject == "Reset your password").expect("the reset link");
    let token = link_in(reset, "/reset-password");
    let body = json!({"token": token, "new_password": "Another-Passphrase-2024"});
    assert_eq!(t.send(&SignIn, Req::post("/reset-password").json(body)).await.status(), 204);
    let mail = t.mailbox().await;
    let notice = mail.iter().find(|m| m.subject == "Your password was changed").expect("the notice");
    assert!(notice.text.contains("Work laptop"), "{}", notice.text);
    assert_eq!(t.passkeys.all().len(), 1, "a reset removes no passkey");
}

#[tokio::test]
async fn a_secret_sealed_before_binding_is_bound_to_its_contact_on_its_next_use() {
    let t = test_portal(&[]);
    let session = register(&t).await;
    let (secret, _) = set_up_totp(&t, &session).await;
    let ada = t.contacts.all().pop().unwrap();
    let mut state = t.portal.two_factor().get(&ada.contact_id).await.unwrap();
    let bytes = TotpSecret::from_base32(&secret).unwrap();
    let sealer = portal::adapters::sealing::FixedKeySealer::default();
    state.totp = Some(sealer.seal_unbound(&bytes).await.unwrap());
    assert!(t.portal.two_factor().save(&state, None, &[]).await.unwrap());

    let pending = t.send(&SignIn, sign_in_req(ADA, PASSWORD)).await;
    let pending = cookie_value(&pending, "portal_pending").unwrap();
    let step = Req::post("/signin/second-factor").json(json!({"code": code(&t, &secret, 0)}));
    let done = t.send(&SignIn, step.cookie("portal_pending", &pending)).await;
    assert_eq!(done.status(), 200, "{}", body_text(&done));
    let stored = t.portal.two_factor().get(&ada.contact_id).await.unwrap();
    assert_eq!(stored.totp.unwrap().bound_to, Some(ada.contact_id), "sealed again, bound to Ada");
}

#[tokio::test]
async fn a_group_redemption_with_an_unconfirmed_address_waits_for_its_link() {
    let t = test_portal(&[("PORTAL_REQUIRE_CONFIRMATION", "true"), ("PORTAL_EMAILS_PER_RECIPIENT_PER_HOUR", "100")]);
    // An administrator whose address is confirmed.
    let hash = portal::domain::password::hash_password(portal::domain::password::Password::new(PASSWORD.into()));
    let mut admin = portal::domain::contact::Contact::new(
        portal::domain::contact::NewContact {
            email: portal::domain::email::Email::parse("admin@example.com").unwrap(),
            first_name: "Admin".into(),
            last_name: "Istrator".into(),
            username: None,
            phone: None,
            roles: vec!["Administrators".into()],
            password_hash: Some(hash.await.unwrap()),
        },
        portal::ports::Clock::now(t.clock.as_ref()),
    );
    admin.email_confirmed = true;
    t.portal.contacts().create(&admin).await.unwrap();
    let signed_in = t.send(&SignIn, sign_in_req("admin@example.com", PASSWORD)).await;
    let admin = cookie_value(&signed_in, "portal_session").expect("the administrator's session");
    let body = json!({"email": "team@example.com", "first_name": "Team", "last_name": "Lead", "type": "group", "max_redemptions": 5});
    let created = t.send(&CreateInvitation, as_viewer(Req::post("/admin/invitations").json(body), &admin)).await;
    assert_eq!(created.status(), 201, "{}", body_text(&created));
    let mail = t.mailbox().await;
    let link = mail.iter().flat_map(|m| m.text.lines()).find(|l| l.contains("/redeem?code=")).unwrap();
    let code = link.split("code=").nth(1).unwrap().trim().to_string();
    let redeem = |email: &str| {
        Req::post("/redeem").json(json!({
            "code": code, "password": PASSWORD, "email": email, "first_name": "New", "last_name": "Member"
        }))
    };

    let elsewhere = t.send(&RedeemInvitation, redeem("someone@elsewhere.example")).await;
    assert_eq!(elsewhere.status(), 201, "{}", body_text(&elsewhere));
    assert_eq!(cookie_value(&elsewhere, "portal_session"), None, "an unconfirmed address is not signed in");
    let mail = t.mailbox().await;
    assert!(
        mail.iter().any(|m| m.to == "someone@elsewhere.example" && m.subject == "Confirm your email address"),
        "its link went out with the redemption: {:?}",
        mail.iter().map(|m| (&m.to, &m.subject)).collect::<Vec<_>>()
    );
    let link = mail.iter().find(|m| m.to == "someone@elsewhere.example").unwrap();
    let confirmed =
        t.send(&Register, Req::post("/confirm-email").json(json!({"token": link_in(link, "/confirm-email")}))).await;
    assert_eq!(confirmed.status(), 200, "{}", body_text(&confirmed));
    let signed_in = t.send(&SignIn, sign_in_req("someone@elsewhere.example", PASSWORD)).await;
    assert!(cookie_value(&signed_in, "portal_session").is_some(), "confirmed: the door opens");
}

#[tokio::test]
async fn an_idempotent_form_with_other_repeated_values_is_another_request() {
    let t = test_portal(&[]);
    register(&t).await;
    let mut admin = t.contacts.all().pop().unwrap();
    admin.roles = vec!["Administrators".into()];
    t.contacts.put(admin);
    let session = cookie_value(&t.send(&SignIn, sign_in_req(ADA, PASSWORD)).await, "portal_session").unwrap();
    let mut ids = Vec::new();
    for i in 0..3 {
        let body = json!({"email": format!("member{i}@example.com"), "first_name": "Member", "last_name": "Team"});
        let created = t.send(&CreateInvitation, as_viewer(Req::post("/admin/contacts").json(body), &session)).await;
        ids.push(body_json(&created)["contact_id"].as_str().unwrap().to_string());
    }
    let csrf = "c".repeat(43);
    let send = |second: &str| {
        let form = Req::post("/admin/invitations")
            .form(&[("type", "group"), ("contact_ids", &ids[0]), ("contact_ids", second)], &csrf);
        as_viewer(form.header("idempotency-key", "group-form-1"), &session)
    };
    let first = t.send(&CreateInvitation, send(&ids[1])).await;
    assert_eq!(first.status(), 303, "{}", body_text(&first));
    let other = t.send(&CreateInvitation, send(&ids[2])).await;
    assert_eq!(other.status(), 422, "the same key with other contacts: {}", body_text(&other));
    assert_eq!(t.invitations.all().len(), 1);
}
