//! Handler tests for passkeys (in-memory adapters), driven by a software authenticator
//! (`portal_testkit::passkey::SoftPasskey`: ES256, packed self-attestation): registration from
//! the profile, listing, deletion after the password, discoverable sign-in; the ceremony's state
//! expiring and single-use, a wrong origin, an unknown or removed passkey, the signature counter,
//! the notices and the session epoch.
//!
//! The software authenticator keeps no resident keys, so two things a browser's platform
//! authenticator does are done here by hand, each marked where it happens: its options ask for a
//! non-resident key, and a sign-in's assertion gets the user handle that a resident key returns.

use portal::domain::outbox::MessageKind;
use portal::domain::passkey::CEREMONY_SECS;
use portal::handlers::profile::Profile;
use portal::handlers::register::Register;
use portal::handlers::sign_in::SignIn;
use portal::ports::Clock;
use portal::usecases::passkeys::user_handle;
use portal_testkit::passkey::SoftPasskey;
use portal_testkit::*;
use serde_json::{Value, json};
use webauthn_rs::prelude::{CreationChallengeResponse, RequestChallengeResponse, Url};

const ORIGIN: &str = "http://localhost:9000";

/// Registers Ada over HTTP; returns her session token and contact id.
async fn signed_up(t: &TestPortal) -> (String, String) {
    let response = t.send(&Register, Req::post("/register").json(registration("ada@example.com"))).await;
    assert_eq!(response.status(), 201, "{}", body_text(&response));
    let contact_id = body_json(&response)["contact_id"].as_str().unwrap().to_string();
    (cookie_value(&response, "portal_session").unwrap(), contact_id)
}

fn authenticator() -> SoftPasskey {
    // `true`: it reports user verification (a platform authenticator's screen lock) as done.
    SoftPasskey::new(true)
}

/// Starts a registration, re-authenticated with the password.
async fn start_registration(t: &TestPortal, session: &str) -> Value {
    let body = json!({"current_password": PASSWORD});
    let response = t
        .send(&Profile, Req::post("/profile/passkeys/register/start").json(body).cookie("portal_session", session))
        .await;
    assert_eq!(response.status(), 200, "{}", body_text(&response));
    body_json(&response)
}

#[tokio::test]
async fn adding_a_passkey_needs_the_password_not_the_session_alone() {
    let t = test_portal(&[]);
    let (session, _) = signed_up(&t).await;
    let start =
        |body: Value| Req::post("/profile/passkeys/register/start").json(body).cookie("portal_session", &session);
    let borrowed = t.send(&Profile, start(json!({}))).await;
    assert_eq!(borrowed.status(), 400, "{}", body_text(&borrowed));
    assert!(body_json(&borrowed)["fields"]["current_password"].is_string());
    let wrong = t.send(&Profile, start(json!({"current_password": "not-the-password"}))).await;
    assert_eq!(wrong.status(), 400);
    assert!(body_json(&wrong)["fields"]["current_password"].is_string());
    let contact = t.contacts.all().pop().unwrap();
    assert_eq!(contact.failed_sign_ins, 1, "a wrong password counts towards the lockout");
    let right = t.send(&Profile, start(json!({"current_password": PASSWORD}))).await;
    assert_eq!(right.status(), 200, "{}", body_text(&right));
    assert!(right_has_options(&body_json(&right)));
    assert_eq!(t.contacts.all().pop().unwrap().failed_sign_ins, 0, "both right: the failures are cleared");
}

fn right_has_options(body: &Value) -> bool {
    body["publicKey"]["challenge"].is_string() && body["ceremony"].is_string()
}

/// The authenticator's answer to creation options, at `origin`.
fn create(key: &mut SoftPasskey, started: &Value, origin: &str) -> Value {
    let mut options = started.clone();
    options.as_object_mut().unwrap().remove("ceremony");
    let selection = &mut options["publicKey"]["authenticatorSelection"];
    assert_eq!(selection["residentKey"], "required", "the portal asks for a discoverable credential");
    // By hand: the software authenticator refuses resident keys (see the module's comment).
    selection["residentKey"] = json!("discouraged");
    selection["requireResidentKey"] = json!(false);
    let options: CreationChallengeResponse = serde_json::from_value(options).unwrap();
    let credential = key.do_registration(Url::parse(origin).unwrap(), options).expect("the authenticator registers");
    serde_json::to_value(credential).unwrap()
}

async fn finish_registration(t: &TestPortal, session: &str, body: Value) -> HttpResponse {
    t.send(&Profile, Req::post("/profile/passkeys/register/finish").json(body).cookie("portal_session", session)).await
}

/// Registers a passkey named `name` with `key`; returns the new session token and the passkey id.
async fn add_passkey(t: &TestPortal, session: &str, key: &mut SoftPasskey, name: &str) -> (String, String) {
    let started = start_registration(t, session).await;
    let credential = create(key, &started, ORIGIN);
    let body = json!({"ceremony": started["ceremony"], "name": name, "credential": credential});
    let response = finish_registration(t, session, body).await;
    assert_eq!(response.status(), 201, "{}", body_text(&response));
    let id = body_json(&response)["id"].as_str().unwrap().to_string();
    (cookie_value(&response, "portal_session").expect("the session continues under a new cookie"), id)
}

async fn start_sign_in(t: &TestPortal) -> Value {
    let response = t.send(&SignIn, Req::post("/signin/passkey/start").json(json!({}))).await;
    assert_eq!(response.status(), 200, "{}", body_text(&response));
    body_json(&response)
}

/// The authenticator's assertion for request options, with `credential_id` (base64url) as the
/// passkey it picks and `handle` as the user handle it returns.
fn assert_with(key: &mut SoftPasskey, started: &Value, credential_id: &str, handle: &[u8]) -> Value {
    let mut options = started.clone();
    options.as_object_mut().unwrap().remove("ceremony");
    assert_eq!(options["publicKey"]["allowCredentials"], json!([]), "discoverable: no credential named");
    assert_eq!(options["publicKey"]["userVerification"], "required");
    // By hand: a resident key finds itself; the software one is told which to use.
    options["publicKey"]["allowCredentials"] = json!([{"type": "public-key", "id": credential_id}]);
    let options: RequestChallengeResponse = serde_json::from_value(options).unwrap();
    let mut assertion = key.do_authentication(Url::parse(ORIGIN).unwrap(), options).expect("the authenticator signs");
    // By hand: the user handle a resident key returns with its assertion.
    assertion.response.user_handle = Some(handle.to_vec());
    serde_json::to_value(assertion).unwrap()
}

async fn finish_sign_in(t: &TestPortal, ceremony: &Value, credential: Value) -> HttpResponse {
    let body = json!({"ceremony": ceremony, "credential": credential});
    t.send(&SignIn, Req::post("/signin/passkey/finish").json(body)).await
}

/// Ada with one passkey: her session, contact id, the authenticator and its credential id.
struct WithPasskey {
    session: String,
    contact_id: String,
    key: SoftPasskey,
    credential_id: String,
    passkey_id: String,
}

async fn with_passkey(t: &TestPortal) -> WithPasskey {
    let (session, contact_id) = signed_up(t).await;
    let mut key = authenticator();
    let started = start_registration(t, &session).await;
    let credential = create(&mut key, &started, ORIGIN);
    let credential_id = credential["id"].as_str().unwrap().to_string();
    let body = json!({"ceremony": started["ceremony"], "name": "Laptop", "credential": credential});
    let response = finish_registration(t, &session, body).await;
    assert_eq!(response.status(), 201, "{}", body_text(&response));
    let passkey_id = body_json(&response)["id"].as_str().unwrap().to_string();
    let session = cookie_value(&response, "portal_session").unwrap();
    WithPasskey { session, contact_id, key, credential_id, passkey_id }
}

fn handle_of(contact_id: &str) -> Vec<u8> {
    user_handle(contact_id).as_bytes().to_vec()
}

async fn signed_in_with(t: &TestPortal, session: &str) -> u16 {
    t.send(&Profile, Req::get("/profile").cookie("portal_session", session)).await.status().as_u16()
}

#[tokio::test]
async fn a_registered_passkey_is_listed_and_signs_in_without_a_password() {
    let t = test_portal(&[]);
    let mut ada = with_passkey(&t).await;
    let listed = t.send(&Profile, Req::get("/profile/passkeys").cookie("portal_session", &ada.session)).await;
    assert_eq!(listed.status(), 200);
    let passkeys = body_json(&listed)["passkeys"].clone();
    assert_eq!(passkeys.as_array().unwrap().len(), 1, "{passkeys}");
    assert_eq!(passkeys[0]["id"], ada.passkey_id.as_str());
    assert_eq!(passkeys[0]["name"], "Laptop");
    assert_eq!(passkeys[0]["created_at"], "2027-01-15T08:00:00Z");
    assert_eq!(passkeys[0]["last_used_at"], Value::Null);

    let started = start_sign_in(&t).await;
    let assertion = assert_with(&mut ada.key, &started, &ada.credential_id, &handle_of(&ada.contact_id));
    let response = finish_sign_in(&t, &started["ceremony"], assertion).await;
    assert_eq!(response.status(), 200, "{}", body_text(&response));
    assert_eq!(
        body_json(&response),
        json!({"contact_id": ada.contact_id, "email": "ada@example.com", "roles": []}),
        "the same answer as a password sign-in"
    );
    let session = cookie_value(&response, "portal_session").expect("a session cookie");
    assert!(cookie_value(&response, "portal_device").is_some(), "the browser becomes a trusted device");
    assert_eq!(signed_in_with(&t, &session).await, 200, "complete in itself: no second step");

    let stored = &t.passkeys.all()[0];
    assert_eq!(stored.last_used_at, Some(t.clock.now()));
    assert_eq!(stored.sign_count, 1, "the signature counter is stored");
    let listed = t.send(&Profile, Req::get("/profile/passkeys").cookie("portal_session", &session)).await;
    assert_eq!(body_json(&listed)["passkeys"][0]["last_used_at"], "2027-01-15T08:00:00Z");
}

#[tokio::test]
async fn a_ceremony_answers_once_and_only_within_five_minutes() {
    let t = test_portal(&[]);
    let mut ada = with_passkey(&t).await;
    let handle = handle_of(&ada.contact_id);

    let started = start_sign_in(&t).await;
    let assertion = assert_with(&mut ada.key, &started, &ada.credential_id, &handle);
    assert_eq!(finish_sign_in(&t, &started["ceremony"], assertion.clone()).await.status(), 200);
    let reused = finish_sign_in(&t, &started["ceremony"], assertion).await;
    assert_eq!(reused.status(), 401, "the state was taken by the first finish");
    assert_eq!(body_json(&reused)["error"], "invalid_credentials");

    let started = start_sign_in(&t).await;
    let assertion = assert_with(&mut ada.key, &started, &ada.credential_id, &handle);
    t.clock.advance(CEREMONY_SECS);
    let late = finish_sign_in(&t, &started["ceremony"], assertion).await;
    assert_eq!(late.status(), 401, "expired after five minutes");
    assert!(t.passkeys.ceremonies().is_empty(), "an expired ceremony is taken all the same");

    let unknown = finish_sign_in(&t, &json!("no-such-ceremony"), json!({"id": "x"})).await;
    assert_eq!(unknown.status(), 400, "a malformed credential is a validation error");

    // Registration: the same rules, as a field error.
    let started = start_registration(&t, &ada.session).await;
    let credential = create(&mut authenticator(), &started, ORIGIN);
    let body = json!({"ceremony": started["ceremony"], "credential": credential});
    t.clock.advance(CEREMONY_SECS);
    let late = finish_registration(&t, &ada.session, body).await;
    assert_eq!(late.status(), 400, "{}", body_text(&late));
    assert!(body_json(&late)["fields"]["ceremony"].as_str().unwrap().contains("expired"));
    assert_eq!(t.passkeys.all().len(), 1, "nothing registered");
}

#[tokio::test]
async fn a_registration_ceremony_is_its_contacts_alone_and_single_use() {
    let t = test_portal(&[]);
    let (ada, _) = signed_up(&t).await;
    let bob = t.send(&Register, Req::post("/register").json(registration("bob@example.com"))).await;
    let bob = cookie_value(&bob, "portal_session").unwrap();
    let started = start_registration(&t, &ada).await;
    let credential = create(&mut authenticator(), &started, ORIGIN);
    let body = json!({"ceremony": started["ceremony"], "credential": credential});
    let stolen = finish_registration(&t, &bob, body.clone()).await;
    assert_eq!(stolen.status(), 400, "another contact's ceremony");
    let after = finish_registration(&t, &ada, body).await;
    assert_eq!(after.status(), 400, "taken by the attempt, so never used twice");
    assert!(t.passkeys.all().is_empty());

    let unsigned = t.send(&Profile, Req::post("/profile/passkeys/register/start").json(json!({}))).await;
    assert_eq!(unsigned.status(), 401, "registration needs a session");
    let listed = t.send(&Profile, Req::get("/profile/passkeys")).await;
    assert_eq!(listed.status(), 401);
}

#[tokio::test]
async fn a_credential_made_for_another_origin_is_refused() {
    let t = test_portal(&[]);
    let (session, _) = signed_up(&t).await;
    let started = start_registration(&t, &session).await;
    // Same RP id (localhost), another origin: a page on another port asked the authenticator.
    let credential = create(&mut authenticator(), &started, "http://localhost:9999");
    let body = json!({"ceremony": started["ceremony"], "credential": credential});
    let response = finish_registration(&t, &session, body).await;
    assert_eq!(response.status(), 400, "{}", body_text(&response));
    assert!(body_json(&response)["fields"]["credential"].is_string());
    assert!(t.passkeys.all().is_empty());
    assert!(t.outbox.all().iter().all(|m| m.kind != MessageKind::PasskeyAddedNotice), "no notice");

    // A sign-in assertion made at another origin, by a passkey registered here.
    let t = test_portal(&[]);
    let mut ada = with_passkey(&t).await;
    let started = start_sign_in(&t).await;
    let mut options = started.clone();
    options.as_object_mut().unwrap().remove("ceremony");
    options["publicKey"]["allowCredentials"] = json!([{"type": "public-key", "id": ada.credential_id}]);
    let options: RequestChallengeResponse = serde_json::from_value(options).unwrap();
    let mut assertion = ada.key.do_authentication(Url::parse("http://localhost:9999").unwrap(), options).unwrap();
    assertion.response.user_handle = Some(handle_of(&ada.contact_id));
    let response = finish_sign_in(&t, &started["ceremony"], serde_json::to_value(assertion).unwrap()).await;
    assert_eq!(response.status(), 401);
    assert_eq!(t.passkeys.all()[0].last_used_at, None, "not counted as a use");
}

#[tokio::test]
async fn unknown_passkeys_other_accounts_handles_and_cloned_counters_are_invalid_credentials() {
    let t = test_portal(&[]);
    let mut ada = with_passkey(&t).await;

    // A passkey never registered here (its authenticator made it for another portal's ceremony).
    let mut stranger = authenticator();
    let other = test_portal(&[]);
    let (other_session, _) = signed_up(&other).await;
    let other_started = start_registration(&other, &other_session).await;
    let other_id = create(&mut stranger, &other_started, ORIGIN)["id"].as_str().unwrap().to_string();
    let started = start_sign_in(&t).await;
    let assertion = assert_with(&mut stranger, &started, &other_id, &handle_of(&ada.contact_id));
    let response = finish_sign_in(&t, &started["ceremony"], assertion).await;
    assert_eq!(response.status(), 401);
    assert_eq!(body_json(&response)["error"], "invalid_credentials");

    // Ada's passkey with another account's user handle.
    let started = start_sign_in(&t).await;
    let assertion = assert_with(&mut ada.key, &started, &ada.credential_id, &handle_of("someone-else"));
    assert_eq!(finish_sign_in(&t, &started["ceremony"], assertion).await.status(), 401);

    // Two assertions signed in order (counters 2 and 3 after the refused ones above), finished
    // in the other order: the older counter shows a clone and is refused.
    let first = start_sign_in(&t).await;
    let second = start_sign_in(&t).await;
    let older = assert_with(&mut ada.key, &first, &ada.credential_id, &handle_of(&ada.contact_id));
    let newer = assert_with(&mut ada.key, &second, &ada.credential_id, &handle_of(&ada.contact_id));
    assert_eq!(finish_sign_in(&t, &second["ceremony"], newer).await.status(), 200);
    let cloned = finish_sign_in(&t, &first["ceremony"], older).await;
    assert_eq!(cloned.status(), 401, "a counter not above the stored one");
}

#[tokio::test]
async fn failed_passkey_sign_ins_use_up_the_source_addresses_allowance() {
    let t = test_portal(&[("PORTAL_FAILURES_PER_ADDRESS_PER_HOUR", "2")]);
    for _ in 0..2 {
        let started = start_sign_in(&t).await;
        let bogus = json!({"id": "AAAA", "rawId": "AAAA", "type": "public-key", "extensions": {}, "response": {
            "authenticatorData": "AAAA", "clientDataJSON": "AAAA", "signature": "AAAA", "userHandle": "AAAA"}});
        assert_eq!(finish_sign_in(&t, &started["ceremony"], bogus).await.status(), 401);
    }
    let started = start_sign_in(&t).await;
    let response = finish_sign_in(
        &t,
        &started["ceremony"],
        json!({"id": "AAAA", "rawId": "AAAA", "type": "public-key", "extensions": {}, "response": {
        "authenticatorData": "AAAA", "clientDataJSON": "AAAA", "signature": "AAAA", "userHandle": "AAAA"}}),
    )
    .await;
    assert_eq!(response.status(), 429);
}

#[tokio::test]
async fn adding_a_passkey_emails_a_notice_and_ends_the_other_sessions() {
    let t = test_portal(&[]);
    let (session, _) = signed_up(&t).await;
    let other =
        t.send(&SignIn, Req::post("/signin").json(json!({"login": "ada@example.com", "password": PASSWORD}))).await;
    let other = cookie_value(&other, "portal_session").unwrap();
    t.mailbox().await;

    let (continued, _) = add_passkey(&t, &session, &mut authenticator(), "Phone").await;
    assert_eq!(signed_in_with(&t, &continued).await, 200, "this session continues");
    assert_eq!(signed_in_with(&t, &other).await, 401, "every other session ended");
    let mail = t.mailbox().await;
    assert_eq!(mail.len(), 1);
    assert_eq!(mail[0].subject, "A passkey was added to your account");
    assert!(mail[0].text.contains("\"Phone\""), "{}", mail[0].text);
    assert!(mail[0].text.contains("http://localhost:9000/profile/passkeys"), "{}", mail[0].text);
}

#[tokio::test]
async fn deleting_a_passkey_needs_the_password_and_ends_the_other_sessions() {
    let t = test_portal(&[]);
    let mut ada = with_passkey(&t).await;
    let started = start_sign_in(&t).await;
    let assertion = assert_with(&mut ada.key, &started, &ada.credential_id, &handle_of(&ada.contact_id));
    let elsewhere = finish_sign_in(&t, &started["ceremony"], assertion).await;
    let elsewhere = cookie_value(&elsewhere, "portal_session").unwrap();
    t.mailbox().await;
    let delete = |session: &str, body: Value| {
        Req::post(&format!("/profile/passkeys/{}/delete", ada.passkey_id)).json(body).cookie("portal_session", session)
    };

    let missing = t.send(&Profile, delete(&ada.session, json!({}))).await;
    assert_eq!(missing.status(), 400);
    assert!(body_json(&missing)["fields"]["current_password"].is_string());
    let wrong = t.send(&Profile, delete(&ada.session, json!({"current_password": "not-the-password"}))).await;
    assert_eq!(wrong.status(), 400);
    assert_eq!(t.passkeys.all().len(), 1, "still there");

    let response = t.send(&Profile, delete(&ada.session, json!({"current_password": PASSWORD}))).await;
    assert_eq!(response.status(), 204, "{}", body_text(&response));
    let continued = cookie_value(&response, "portal_session").unwrap();
    assert!(t.passkeys.all().is_empty());
    assert_eq!(signed_in_with(&t, &continued).await, 200);
    assert_eq!(signed_in_with(&t, &elsewhere).await, 401, "the passkey's session ended");
    let mail = t.mailbox().await;
    assert_eq!(
        mail.iter().map(|m| m.subject.as_str()).collect::<Vec<_>>(),
        ["A passkey was removed from your account"]
    );

    let again = t.send(&Profile, delete(&continued, json!({"current_password": PASSWORD}))).await;
    assert_eq!(again.status(), 404, "gone");

    // The removed passkey no longer signs in.
    let started = start_sign_in(&t).await;
    let assertion = assert_with(&mut ada.key, &started, &ada.credential_id, &handle_of(&ada.contact_id));
    assert_eq!(finish_sign_in(&t, &started["ceremony"], assertion).await.status(), 401);
}

#[tokio::test]
async fn another_contacts_passkey_cannot_be_deleted() {
    let t = test_portal(&[]);
    let ada = with_passkey(&t).await;
    let bob = t.send(&Register, Req::post("/register").json(registration("bob@example.com"))).await;
    let bob = cookie_value(&bob, "portal_session").unwrap();
    let path = format!("/profile/passkeys/{}/delete", ada.passkey_id);
    let body = json!({"current_password": PASSWORD});
    let response = t.send(&Profile, Req::post(&path).json(body).cookie("portal_session", &bob)).await;
    assert_eq!(response.status(), 404);
    assert_eq!(t.passkeys.all().len(), 1);
}

#[tokio::test]
async fn the_pages_offer_passkeys_under_a_policy_that_allows_only_the_portals_script() {
    let t = test_portal(&[]);
    let ada = with_passkey(&t).await;
    let page = t.send(&Profile, Req::get("/profile/passkeys").html().cookie("portal_session", &ada.session)).await;
    assert_eq!(page.status(), 200);
    let html = body_text(&page);
    assert!(html.contains("Laptop") && html.contains("passkey-register-button"), "{html}");
    assert!(html.contains(&format!("/profile/passkeys/{}/delete", ada.passkey_id)));
    let policy = page.headers()["content-security-policy"].to_str().unwrap().to_string();
    assert!(policy.contains("script-src 'self'") && policy.contains("connect-src 'self'"), "{policy}");
    assert!(!policy.contains("unsafe-inline'; script") && !policy.contains("script-src 'unsafe-inline'"));
    assert!(!html.contains("<script>"), "no inline script");

    let profile =
        body_text(&t.send(&Profile, Req::get("/profile").html().cookie("portal_session", &ada.session)).await);
    assert!(profile.contains("href=\"/profile/passkeys\""), "the profile links its passkeys");
    let signin = body_text(&t.send(&SignIn, Req::get("/signin").html()).await);
    let script_href = portal::web::assets::PASSKEY_SCRIPT.href();
    assert!(signin.contains("Sign in with a passkey") && signin.contains(&format!("src=\"{script_href}\"")));
    let script = t.send(&SignIn, Req::get("/signin/passkey.js")).await;
    assert_eq!(script.status(), 200);
    assert!(script.headers()["content-type"].to_str().unwrap().starts_with("text/javascript"));
    assert!(body_text(&script).contains("navigator.credentials.get"));

    // A browser's delete with a wrong password shows the page again with the error.
    let path = format!("/profile/passkeys/{}/delete", ada.passkey_id);
    let response = t
        .send(
            &Profile,
            Req::post(&path)
                .form(&[("current_password", "wrong")], "c".repeat(43).as_str())
                .cookie("portal_session", &ada.session),
        )
        .await;
    assert_eq!(response.status(), 400);
    let html = body_text(&response);
    assert!(html.contains("is not your current password") && html.contains("Laptop"), "{html}");
}

#[tokio::test]
async fn a_passkey_name_is_checked_and_a_store_fault_loses_nothing() {
    let t = test_portal(&[]);
    let (session, _) = signed_up(&t).await;
    let started = start_registration(&t, &session).await;
    let credential = create(&mut authenticator(), &started, ORIGIN);
    let long = "x".repeat(65);
    let response = finish_registration(
        &t,
        &session,
        json!({"ceremony": started["ceremony"], "name": long, "credential": credential.clone()}),
    )
    .await;
    assert_eq!(response.status(), 400);
    assert!(body_json(&response)["fields"]["name"].is_string());
    let not_object =
        finish_registration(&t, &session, json!({"ceremony": started["ceremony"], "credential": "text"})).await;
    assert_eq!(not_object.status(), 400);
    assert!(body_json(&not_object)["fields"]["credential"].is_string());

    t.passkeys.faults.fail_next("add", 1);
    let response =
        finish_registration(&t, &session, json!({"ceremony": started["ceremony"], "credential": credential})).await;
    assert_eq!(response.status(), 500);
    assert!(t.passkeys.all().is_empty());
    assert!(t.outbox.all().iter().all(|m| m.kind != MessageKind::PasskeyAddedNotice), "no notice of a failed add");
    assert_eq!(signed_in_with(&t, &session).await, 200, "the session stays");
}

/// The session cookie a response sets (its whole Set-Cookie line).
fn session_cookie_line(response: &HttpResponse) -> String {
    set_cookies(response).into_iter().find(|c| c.starts_with("portal_session=")).expect("a session cookie")
}

#[tokio::test]
async fn a_passkey_sign_in_remembers_the_browser_only_when_asked() {
    let t = test_portal(&[]);
    let mut ada = with_passkey(&t).await;
    let handle = handle_of(&ada.contact_id);

    let started = start_sign_in(&t).await;
    let assertion = assert_with(&mut ada.key, &started, &ada.credential_id, &handle);
    let response = finish_sign_in(&t, &started["ceremony"], assertion).await;
    assert_eq!(response.status(), 200, "{}", body_text(&response));
    let cookie = session_cookie_line(&response);
    assert!(!cookie.contains("Max-Age") && !cookie.contains("Expires"), "a browser-session cookie: {cookie}");

    let started = start_sign_in(&t).await;
    let assertion = assert_with(&mut ada.key, &started, &ada.credential_id, &handle);
    let body = json!({"ceremony": started["ceremony"], "credential": assertion, "remember_me": true});
    let response = t.send(&SignIn, Req::post("/signin/passkey/finish").json(body)).await;
    assert_eq!(response.status(), 200, "{}", body_text(&response));
    let cookie = session_cookie_line(&response);
    assert!(cookie.contains("Max-Age=2592000"), "remembered for PORTAL_REMEMBER_ME_DAYS (30): {cookie}");
}

/// An emailed code proves the mailbox only: an account with a passkey finishes with the passkey
/// (the second step offers it, and never the email again), and the passkey then signs in.
#[tokio::test]
async fn after_an_emailed_code_an_account_with_a_passkey_finishes_with_it() {
    let t = test_portal(&[("PORTAL_EMAILS_PER_RECIPIENT_PER_HOUR", "100")]);
    let mut ada = with_passkey(&t).await;
    t.mailbox().await;
    let asked = t.send(&SignIn, Req::post("/signin/email-code").json(json!({"email": "ada@example.com"}))).await;
    assert_eq!(asked.status(), 202);
    let mail = t.mailbox().await;
    let text = &mail.iter().rev().find(|m| m.subject == "Your sign-in code").unwrap().text;
    let code = text.split_whitespace().find(|w| w.len() == 6 && w.chars().all(|c| c.is_ascii_digit())).unwrap();
    let verify = Req::post("/signin/email-code/verify").json(json!({"email": "ada@example.com", "code": code}));
    let answer = t.send(&SignIn, verify).await;
    assert_eq!(body_json(&answer), json!({"status": "second_factor_required", "methods": ["passkey"]}));
    assert_eq!(cookie_value(&answer, "portal_session"), None, "no session with the mailbox alone");
    let pending = cookie_value(&answer, "portal_pending").unwrap();
    let page = t.send(&SignIn, Req::get("/signin/second-factor").cookie("portal_pending", &pending).html()).await;
    let html = body_text(&page);
    assert!(html.contains("passkey-signin-button") && !html.contains("second-factor-form"), "{html}");
    let by_email = Req::post("/signin/second-factor/email").json(json!({})).cookie("portal_pending", &pending);
    assert_eq!(t.send(&SignIn, by_email).await.status(), 400, "the email is not this sign-in's second step");

    let started = start_sign_in(&t).await;
    let assertion = assert_with(&mut ada.key, &started, &ada.credential_id, &handle_of(&ada.contact_id));
    let finished = finish_sign_in(&t, &started["ceremony"], assertion).await;
    assert_eq!(finished.status(), 200, "{}", body_text(&finished));
    assert!(cookie_value(&finished, "portal_session").is_some());
}
