//! Handler tests: the functions' handlers on in-memory adapters, driven by API Gateway events
//! (the files in `events/` and built ones).

use portal::domain::time::Timestamp;
use portal::handlers::profile::Profile;
use portal::handlers::register::Register;
use portal::handlers::sign_in::SignIn;
use portal::ports::InvitationStore;
use portal::web::HttpFunction;
use portal_testkit::*;
use serde_json::{Value, json};

fn function(name: &str) -> &'static dyn HttpFunction {
    match name {
        "sign-in" => &SignIn,
        "register" => &Register,
        "profile" => &Profile,
        "create-invitation" => &portal::handlers::admin::CreateInvitation,
        "redeem-invitation" => &portal::handlers::redeem::RedeemInvitation,
        other => panic!("unknown function {other}"),
    }
}

fn invitation_for(
    invitation_id: &portal::domain::ids::InvitationId,
    message: &portal::domain::outbox::OutboxMessage,
) -> portal::domain::invitation::Invitation {
    use portal::domain::invitation::{Delivery, Invitation, InvitationType};
    Invitation {
        invitation_id: invitation_id.clone(),
        code_digest: "digest".into(),
        kind: InvitationType::Single,
        contact_id: "contact".into(),
        email: message.to.clone(),
        first_name: message.first_name.clone(),
        last_name: "Invitee".into(),
        max_redemptions: 1,
        redemptions: 0,
        expires_at: message.valid_until.unwrap_or(Timestamp::from_secs(i64::MAX)),
        revoked: false,
        roles: vec![],
        account_id: None,
        redirect_path: None,
        created_at: message.created_at,
        created_by: "admin".into(),
        message_id: message.message_id.clone(),
        delivery: Delivery::Pending,
        delivery_error: None,
        delivered_at: None,
    }
}

#[tokio::test]
async fn every_event_file_gets_the_answer_the_manifest_expects() {
    let manifest: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(events_dir().join("manifest.json")).unwrap()).unwrap();
    let t = test_portal(&[]);
    let mut seen = std::collections::HashSet::new();
    for entry in &manifest {
        let file = entry["file"].as_str().unwrap().trim_start_matches("events/");
        seen.insert(file.to_string());
        if entry["function"] == "send-email" {
            // A stream batch: its messages are in the outbox, as the stream's table items are.
            let text = std::fs::read_to_string(events_dir().join(file)).unwrap();
            let event: aws_lambda_events::event::dynamodb::Event = serde_json::from_str(&text).unwrap();
            for record in event.records.iter().filter(|r| r.event_name == "INSERT") {
                let message: portal::domain::outbox::OutboxMessage =
                    serde_dynamo::from_item(record.change.new_image.clone()).unwrap();
                if t.outbox.get(&message.message_id).is_none() {
                    // The invitation whose current email this is, as the outbox item's writer left it.
                    if let Some(invitation_id) = &message.invitation_id {
                        t.invitations.create(&invitation_for(invitation_id, &message), &message).await.unwrap();
                    }
                    t.outbox.insert(message);
                }
            }
            let response = portal::handlers::send_email::handle(&t.portal, event).await;
            assert_eq!(serde_json::to_value(&response).unwrap(), entry["expect"], "{file}");
            continue;
        }
        if entry["function"] == "email-feedback" {
            // An SNS delivery of an SES notification: it answers nothing (an error is a retry).
            let text = std::fs::read_to_string(events_dir().join(file)).unwrap();
            let event: aws_lambda_events::event::sns::SnsEvent = serde_json::from_str(&text).unwrap();
            portal::handlers::email_feedback::handle(&t.portal, event).await.unwrap();
            assert_eq!(entry["expect"], Value::Null, "{file}");
            continue;
        }
        let response = t.call(function(entry["function"].as_str().unwrap()), event(file)).await;
        assert_eq!(
            response.status().as_u16() as u64,
            entry["status"].as_u64().unwrap(),
            "{file}: {}",
            body_text(&response)
        );
    }
    // The INSERT, its duplicate delivery and the MODIFY sent exactly one email.
    if manifest.iter().any(|e| e["function"] == "send-email") {
        assert_eq!(t.mailer.sent().len(), 1);
    }
    // Every event file is in the manifest, so `make test` invokes each one.
    for dir in std::fs::read_dir(events_dir()).unwrap().flatten().filter(|d| d.path().is_dir()) {
        for file in std::fs::read_dir(dir.path()).unwrap().flatten() {
            let relative = format!("{}/{}", dir.file_name().to_string_lossy(), file.file_name().to_string_lossy());
            assert!(seen.contains(&relative), "{relative} is not in events/manifest.json");
        }
    }
}

#[tokio::test]
async fn registration_answers_201_with_a_session_cookie_and_stores_a_hash() {
    let t = test_portal(&[]);
    let response = t
        .send(
            &Register,
            Req::post("/register").json(json!({
                "email": "Ada@Example.com", "password": PASSWORD, "first_name": "Ada", "last_name": "Lovelace",
                "username": "ada", "phone": "+44 20 7946 0018"
            })),
        )
        .await;
    assert_eq!(response.status(), 201, "{}", body_text(&response));
    let body = body_json(&response);
    assert_eq!(body["email"], "Ada@Example.com");
    assert_eq!(body["email_confirmed"], false);
    let contacts = t.contacts.all();
    assert_eq!(contacts.len(), 1);
    assert_eq!(body["contact_id"], contacts[0].contact_id.as_str());
    assert!(contacts[0].roles.is_empty());
    let session = cookie_value(&response, "portal_session").expect("a session cookie");
    assert!(session.len() >= 22, "at least 128 bits");
    assert_eq!(t.sessions.all().len(), 1);
    assert_ne!(t.sessions.all()[0].id_digest, session, "only the digest is stored");

    let profile = t.send(&Profile, Req::get("/profile").cookie("portal_session", &session)).await;
    assert_eq!(profile.status(), 200);
    let profile = body_json(&profile);
    for field in ["contact_id", "email", "first_name", "last_name", "username", "roles", "email_confirmed"] {
        assert!(profile.get(field).is_some(), "{field} missing from {profile}");
    }
    assert_eq!(profile["username"], "ada");
}

#[tokio::test]
async fn cookies_are_http_only_lax_and_host_prefixed_behind_https() {
    let t = test_portal(&[]);
    let response = t.send(&Register, Req::post("/register").json(registration("ada@example.com"))).await;
    let cookie = set_cookies(&response).into_iter().find(|c| c.starts_with("portal_session=")).unwrap();
    for attribute in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    assert!(!cookie.contains("Secure"), "plain http cannot set Secure cookies: {cookie}");

    let https = test_portal(&[("PORTAL_BASE_URL", "https://portal.example.com")]);
    let response = https.send(&Register, Req::post("/register").json(registration("ada@example.com"))).await;
    let cookie =
        set_cookies(&response).into_iter().find(|c| c.starts_with("__Host-portal_session=")).expect("__Host- cookie");
    for attribute in ["HttpOnly", "SameSite=Lax", "Path=/", "Secure"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    assert!(!cookie.contains("Domain"), "{cookie}");
}

#[tokio::test]
async fn a_taken_email_is_409_whatever_its_case_and_writes_nothing() {
    let t = test_portal(&[]);
    assert_eq!(t.send(&Register, Req::post("/register").json(registration("ada@example.com"))).await.status(), 201);
    let mut again = registration("ADA@example.COM");
    again["username"] = json!("someone");
    let response = t.send(&Register, Req::post("/register").json(again)).await;
    assert_eq!(response.status(), 409);
    assert_eq!(body_json(&response)["error"], "email_taken");
    assert_eq!(t.contacts.all().len(), 1);
    assert_eq!(t.sessions.all().len(), 1);
}

#[tokio::test]
async fn a_taken_username_is_a_field_error() {
    let t = test_portal(&[]);
    let mut first = registration("ada@example.com");
    first["username"] = json!("Ada");
    assert_eq!(t.send(&Register, Req::post("/register").json(first)).await.status(), 201);
    let mut second = registration("grace@example.com");
    second["username"] = json!("ADA");
    let response = t.send(&Register, Req::post("/register").json(second)).await;
    assert_eq!(response.status(), 400);
    assert_eq!(body_json(&response)["fields"]["username"], "is already taken");
}

#[tokio::test]
async fn ten_concurrent_registrations_of_one_email_give_one_201_and_nine_409s() {
    let t = test_portal(&[]);
    let requests = (0..10).map(|i| {
        let mut body = registration("race@example.com");
        body["username"] = json!(format!("racer{i}"));
        t.send(&Register, Req::post("/register").json(body))
    });
    let mut statuses: Vec<u16> =
        futures::future::join_all(requests).await.iter().map(|r| r.status().as_u16()).collect();
    statuses.sort();
    assert_eq!(statuses, [201, 409, 409, 409, 409, 409, 409, 409, 409, 409]);
    assert_eq!(t.contacts.all().len(), 1);
}

#[tokio::test]
async fn bad_input_gets_a_clear_4xx_and_writes_nothing() {
    let t = test_portal(&[]);
    let long_email = format!("{}@{}.com", "a".repeat(64), "b.".repeat(95));
    let cases: Vec<(Req, u16, &str, Option<&str>)> = vec![
        (Req::post("/register").raw_json("{\"email\": "), 400, "validation_failed", None),
        (Req::post("/register").raw_json("[]"), 400, "validation_failed", None),
        (
            Req::post("/register").json(json!({"email": 5, "password": PASSWORD, "first_name": "A", "last_name": "B"})),
            400,
            "validation_failed",
            Some("email"),
        ),
        (
            Req::post("/register").json(json!({"password": PASSWORD, "first_name": "A", "last_name": "B"})),
            400,
            "validation_failed",
            Some("email"),
        ),
        (
            Req::post("/register")
                .json(json!({"email": long_email, "password": PASSWORD, "first_name": "A", "last_name": "B"})),
            400,
            "validation_failed",
            Some("email"),
        ),
        (
            Req::post("/register").json(
                json!({"email": "a@example.com", "password": PASSWORD, "first_name": "Eve\u{202E}", "last_name": "B"}),
            ),
            400,
            "validation_failed",
            Some("first_name"),
        ),
        (
            Req::post("/register").json(
                json!({"email": "a@example.com", "password": PASSWORD, "first_name": "A\u{0}", "last_name": "B"}),
            ),
            400,
            "validation_failed",
            Some("first_name"),
        ),
        (
            Req::post("/register")
                .json(json!({"email": "a@example.com", "password": "short", "first_name": "A", "last_name": "B"})),
            400,
            "validation_failed",
            Some("password"),
        ),
        (
            Req::post("/register").json(
                json!({"email": "a@example.com", "password": "password1234", "first_name": "A", "last_name": "B"}),
            ),
            400,
            "validation_failed",
            Some("password"),
        ),
        (
            Req::post("/register")
                .json(json!({"email": "a@example.com", "password": true, "first_name": "A", "last_name": "B"})),
            400,
            "validation_failed",
            Some("password"),
        ),
        (
            Req::post("/register")
                .header("content-type", "text/plain")
                .json(registration("a@example.com"))
                .header("content-type", "text/plain"),
            415,
            "unsupported_media_type",
            None,
        ),
        (Req::post("/register"), 415, "unsupported_media_type", None),
        (
            Req::post("/register").raw_json(&format!("{{\"email\": \"{}\"}}", "x".repeat(20_000))),
            413,
            "payload_too_large",
            None,
        ),
    ];
    let signin_cases: Vec<(Req, u16, &str, Option<&str>)> = vec![
        (Req::post("/signin").json(json!({"login": ["a"], "password": "x"})), 400, "validation_failed", Some("login")),
        (Req::post("/signin").json(json!({"login": "a@example.com"})), 400, "validation_failed", Some("password")),
        (Req::post("/signin").raw_json("nope"), 400, "validation_failed", None),
    ];
    let all = cases
        .into_iter()
        .map(|c| (&Register as &dyn HttpFunction, c))
        .chain(signin_cases.into_iter().map(|c| (&SignIn as &dyn HttpFunction, c)));
    for (function, (req, status, code, field)) in all {
        let response = t.send(function, req).await;
        assert_eq!(response.status().as_u16(), status, "{}", body_text(&response));
        let body = body_json(&response);
        assert_eq!(body["error"], code);
        assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
        if let Some(field) = field {
            assert!(body["fields"][field].is_string(), "{field} not blamed in {body}");
        }
    }
    assert!(t.contacts.all().is_empty());
    assert!(t.sessions.all().is_empty());
}

#[tokio::test]
async fn a_64_character_password_is_accepted() {
    let t = test_portal(&[]);
    let mut body = registration("long@example.com");
    body["password"] = json!("horse staple battery correct; kettle violin meadow 1843 lantern!");
    assert_eq!(body["password"].as_str().unwrap().chars().count(), 64);
    let response = t.send(&Register, Req::post("/register").json(body)).await;
    assert_eq!(response.status(), 201, "{}", body_text(&response));
}

#[tokio::test]
async fn closed_registration_answers_registration_closed() {
    let t = test_portal(&[("PORTAL_OPEN_REGISTRATION", "false")]);
    assert_eq!(t.send(&Register, Req::get("/register").html()).await.status(), 403);
    let refused = t.send(&Register, Req::post("/register").json(registration("a@example.com"))).await;
    assert_eq!(refused.status(), 403);
    assert_eq!(body_json(&refused)["error"], "registration_closed");
    let home = t.send(&Profile, Req::get("/").html()).await;
    assert!(!body_text(&home).contains("href=\"/register\""));
}

async fn registered(t: &TestPortal, email: &str, username: Option<&str>) -> String {
    let mut body = registration(email);
    if let Some(username) = username {
        body["username"] = json!(username);
    }
    let response = t.send(&Register, Req::post("/register").json(body)).await;
    assert_eq!(response.status(), 201, "{}", body_text(&response));
    cookie_value(&response, "portal_session").unwrap()
}

async fn sign_in(t: &TestPortal, login: &str, password: &str) -> lambda_http::Response<lambda_http::Body> {
    t.send(&SignIn, Req::post("/signin").json(json!({"login": login, "password": password}))).await
}

#[tokio::test]
async fn sign_in_by_email_or_username_case_insensitively_with_a_new_token_each_time() {
    let t = test_portal(&[]);
    let first = registered(&t, "ada@example.com", Some("Ada.L")).await;
    let mut tokens = vec![first];
    for login in ["ada@example.com", "ADA@EXAMPLE.COM", "ada.l", "ADA.L"] {
        let response = sign_in(&t, login, PASSWORD).await;
        assert_eq!(response.status(), 200, "{login}: {}", body_text(&response));
        let body = body_json(&response);
        assert_eq!(body["email"], "ada@example.com");
        assert!(body["roles"].is_array());
        tokens.push(cookie_value(&response, "portal_session").unwrap());
    }
    let unique: std::collections::HashSet<_> = tokens.iter().collect();
    assert_eq!(unique.len(), tokens.len(), "a new token at every sign-in");
}

#[tokio::test]
async fn wrong_password_unknown_login_and_locked_account_get_one_answer() {
    let t = test_portal(&[]);
    registered(&t, "ada@example.com", None).await;
    let wrong = sign_in(&t, "ada@example.com", "not-the-password-at-all").await;
    let unknown = sign_in(&t, "nobody@example.com", PASSWORD).await;
    let nonsense = sign_in(&t, "x", PASSWORD).await;
    for _ in 0..4 {
        sign_in(&t, "ada@example.com", "not-the-password-at-all").await;
    }
    let locked = sign_in(&t, "ada@example.com", PASSWORD).await;
    for response in [&wrong, &unknown, &nonsense, &locked] {
        assert_eq!(response.status(), 401);
        assert_eq!(body_text(response), body_text(&wrong));
        assert!(cookie_value(response, "portal_session").is_none());
    }
    assert_eq!(body_json(&wrong)["error"], "invalid_credentials");
}

#[tokio::test]
async fn five_failures_lock_the_account_for_a_growing_capped_time() {
    let t = test_portal(&[("PORTAL_LOCKOUT_SECONDS", "300"), ("PORTAL_LOCKOUT_MAX_SECONDS", "500")]);
    registered(&t, "ada@example.com", None).await;
    for _ in 0..5 {
        assert_eq!(sign_in(&t, "ada@example.com", "wrong-password-here").await.status(), 401);
    }
    assert_eq!(sign_in(&t, "ada@example.com", PASSWORD).await.status(), 401, "locked");
    // Failures while locked do not extend the lockout.
    t.clock.advance(299);
    assert_eq!(sign_in(&t, "ada@example.com", "wrong-password-here").await.status(), 401);
    t.clock.advance(1);
    // A second lockout lasts longer (600 s, capped at 500).
    for _ in 0..5 {
        sign_in(&t, "ada@example.com", "wrong-password-here").await;
    }
    t.clock.advance(499);
    assert_eq!(sign_in(&t, "ada@example.com", PASSWORD).await.status(), 401, "second lockout still on");
    t.clock.advance(1);
    assert_eq!(sign_in(&t, "ada@example.com", PASSWORD).await.status(), 200, "cap reached, lockout over");
    assert!(!t.contacts.all()[0].lockout().needs_reset(), "success resets");
}

#[tokio::test]
async fn a_success_resets_the_failure_count() {
    let t = test_portal(&[]);
    registered(&t, "ada@example.com", None).await;
    for _ in 0..4 {
        sign_in(&t, "ada@example.com", "wrong-password-here").await;
    }
    assert_eq!(sign_in(&t, "ada@example.com", PASSWORD).await.status(), 200);
    for _ in 0..4 {
        sign_in(&t, "ada@example.com", "wrong-password-here").await;
    }
    assert_eq!(sign_in(&t, "ada@example.com", PASSWORD).await.status(), 200);
}

#[tokio::test]
async fn sign_out_revokes_the_session_server_side() {
    let t = test_portal(&[]);
    let token = registered(&t, "ada@example.com", None).await;
    let out = t.send(&SignIn, Req::post("/signout").raw_json("").cookie("portal_session", &token)).await;
    assert_eq!(out.status(), 204);
    assert!(set_cookies(&out).iter().any(|c| c.starts_with("portal_session=;") && c.contains("Max-Age=0")));
    assert!(t.sessions.all().is_empty());
    let profile = t.send(&Profile, Req::get("/profile").cookie("portal_session", &token)).await;
    assert_eq!(profile.status(), 401);
    assert_eq!(body_json(&profile)["error"], "unauthenticated");
    let page = t.send(&Profile, Req::get("/profile").html().cookie("portal_session", &token)).await;
    assert_eq!(page.status(), 303);
    assert_eq!(location(&page).as_deref(), Some("/signin"));
}

#[tokio::test]
async fn sessions_end_after_the_idle_time_and_the_absolute_time() {
    let t = test_portal(&[("PORTAL_SESSION_IDLE_MINUTES", "30"), ("PORTAL_SESSION_ABSOLUTE_HOURS", "1")]);
    let token = registered(&t, "ada@example.com", None).await;
    let profile = || t.send(&Profile, Req::get("/profile").cookie("portal_session", &token));
    t.clock.advance(29 * 60);
    assert_eq!(profile().await.status(), 200, "used within the idle time");
    t.clock.advance(29 * 60);
    assert_eq!(profile().await.status(), 200, "the last use refreshed the idle timer");
    t.clock.advance(3 * 60);
    assert_eq!(profile().await.status(), 401, "past the absolute limit");

    let idle = registered(&t, "grace@example.com", None).await;
    t.clock.advance(31 * 60);
    let response = t.send(&Profile, Req::get("/profile").cookie("portal_session", &idle)).await;
    assert_eq!(response.status(), 401, "idle too long");
}

#[tokio::test]
async fn browser_forms_register_sign_out_and_sign_in_with_csrf_tokens() {
    let t = test_portal(&[]);
    let page = t.send(&Register, Req::get("/register").html()).await;
    assert_eq!(page.status(), 200);
    let csrf = cookie_value(&page, "portal_csrf").expect("the form page sets the CSRF cookie");
    assert!(body_text(&page).contains(&format!("name=\"csrf_token\" value=\"{csrf}\"")));

    let fields = [
        ("email", "ada@example.com"),
        ("password", PASSWORD),
        ("first_name", "Ada"),
        ("last_name", "Lovelace"),
        ("username", ""),
        ("phone", ""),
    ];
    let registered = t.send(&Register, Req::post("/register").form(&fields, &csrf)).await;
    assert_eq!(registered.status(), 303, "{}", body_text(&registered));
    assert_eq!(location(&registered).as_deref(), Some("/"));
    let session = cookie_value(&registered, "portal_session").unwrap();

    let home =
        t.send(&Profile, Req::get("/").html().cookie("portal_session", &session).cookie("portal_csrf", &csrf)).await;
    let html = body_text(&home);
    assert!(html.contains("id=\"greeting\"") && html.contains("Ada"), "{html}");
    assert!(html.contains("id=\"signout-form\""));

    let out = t.send(&SignIn, Req::post("/signout").form(&[], &csrf).cookie("portal_session", &session)).await;
    assert_eq!(out.status(), 303);
    let home = t.send(&Profile, Req::get("/").html().cookie("portal_session", &session)).await;
    let html = body_text(&home);
    assert!(!html.contains("id=\"greeting\""));
    for link in ["href=\"/signin\"", "href=\"/register\"", "href=\"/redeem\""] {
        assert!(html.contains(link), "{link} missing");
    }

    let signin_page = t.send(&SignIn, Req::get("/signin").html()).await;
    let html = body_text(&signin_page);
    assert!(html.contains("href=\"/register\"") && html.contains("href=\"/redeem\""));
    let back = t
        .send(&SignIn, Req::post("/signin").form(&[("login", "ADA@example.com"), ("password", PASSWORD)], &csrf))
        .await;
    assert_eq!(back.status(), 303);
    assert!(cookie_value(&back, "portal_session").is_some());

    let wrong = t
        .send(
            &SignIn,
            Req::post("/signin").form(&[("login", "ada@example.com"), ("password", "nope-nope-nope")], &csrf),
        )
        .await;
    assert_eq!(wrong.status(), 401);
    assert!(body_text(&wrong).contains("id=\"form-error\""));
}

#[tokio::test]
async fn a_form_without_the_matching_csrf_token_or_from_another_origin_is_forbidden() {
    let t = test_portal(&[]);
    let fields =
        [("email", "ada@example.com"), ("password", PASSWORD), ("first_name", "Ada"), ("last_name", "Lovelace")];
    let cases = vec![
        Req::post("/register").header("content-type", "application/x-www-form-urlencoded").html(),
        Req::post("/register").form_fields(&fields),
        Req::post("/register")
            .form_fields(&[fields.as_slice(), &[("csrf_token", &"a".repeat(43))]].concat())
            .cookie("portal_csrf", &"b".repeat(43)),
        Req::post("/register").json(registration("ada@example.com")).header("origin", "https://evil.example"),
        Req::post("/register").json(registration("ada@example.com")).header("sec-fetch-site", "cross-site"),
    ];
    for req in cases {
        let response = t.send(&Register, req).await;
        assert_eq!(response.status(), 403, "{}", body_text(&response));
    }
    let same_origin =
        t.send(&Register, Req::post("/register").json(registration("ada@example.com")).header("origin", BASE)).await;
    assert_eq!(same_origin.status(), 201);
    assert_eq!(t.contacts.all().len(), 1);
}

#[tokio::test]
async fn no_state_changes_on_get() {
    let t = test_portal(&[]);
    for (function, path) in [(&SignIn as &dyn HttpFunction, "/signout"), (&Register, "/register?email=a@example.com")] {
        t.send(function, Req::get(path).html()).await;
    }
    assert!(t.contacts.all().is_empty());
}

#[tokio::test]
async fn an_address_that_used_up_its_failed_sign_ins_is_refused_until_the_hour_is_over() {
    let t = test_portal(&[("PORTAL_FAILURES_PER_ADDRESS_PER_HOUR", "3")]);
    registered(&t, "ada@example.com", None).await;
    let attempt = |login: &str, password: &str, ip: &'static str| {
        t.send(&SignIn, Req::post("/signin").json(json!({"login": login, "password": password})).sent_from(ip))
    };
    // Failures across accounts (a spray) count per address, not per account.
    for login in ["ada@example.com", "nobody@example.com", "x@example.com"] {
        assert_eq!(attempt(login, "wrong-password-here", "203.0.113.9").await.status(), 401);
    }
    let refused = attempt("ada@example.com", PASSWORD, "203.0.113.9").await;
    assert_eq!(refused.status(), 429, "even the right password waits");
    assert_eq!(body_json(&refused)["error"], "rate_limited");
    let retry_after: i64 = refused.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=3600).contains(&retry_after));
    assert_eq!(
        attempt("ada@example.com", PASSWORD, "198.51.100.20").await.status(),
        200,
        "another address is not affected"
    );
    t.clock.advance(retry_after);
    assert_eq!(attempt("ada@example.com", PASSWORD, "203.0.113.9").await.status(), 200, "a new hour");
}

#[tokio::test]
async fn a_registration_sent_again_after_its_answer_was_lost_succeeds_as_the_first_would_have() {
    let t = test_portal(&[]);
    let first = t.send(&Register, Req::post("/register").json(registration("ada@example.com"))).await;
    assert_eq!(first.status(), 201);
    // The first answer never reached the client (a timeout while the write went through): the
    // very same registration, sent again, signs in to the account it made.
    let again = t.send(&Register, Req::post("/register").json(registration("ada@example.com"))).await;
    assert_eq!(again.status(), 201, "{}", body_text(&again));
    assert_eq!(body_json(&again)["contact_id"], body_json(&first)["contact_id"]);
    assert_eq!(t.contacts.all().len(), 1);
    // Another password is someone else: the address is taken.
    let mut other = registration("ada@example.com");
    other["password"] = json!("Completely-Different-Words-42");
    assert_eq!(t.send(&Register, Req::post("/register").json(other)).await.status(), 409);
    // Later than a few minutes, it is no longer a retry.
    t.clock.advance(601);
    assert_eq!(t.send(&Register, Req::post("/register").json(registration("ada@example.com"))).await.status(), 409);
}
