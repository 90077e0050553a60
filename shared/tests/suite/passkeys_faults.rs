//! Faults at every AWS call of a passkey registration's finish and a passkey sign-in's finish,
//! against moto (portal-testkit's faults.rs): one faulty attempt is absorbed by the SDK's retry; a call that
//! fails every attempt gives a clean 503 `internal`, and nothing is half-written: the passkey, the
//! contact's new session epoch and the notice are there together or not at all, and a new ceremony
//! then succeeds.

use std::sync::Arc;
use std::time::Duration;

use portal::Portal;
use portal::aws::{MAX_ATTEMPTS, SdkHooks};
use portal::domain::contact::Login;
use portal::domain::email::Email;
use portal::handlers::profile::Profile;
use portal::handlers::register::Register;
use portal::handlers::sign_in::SignIn;
use portal::ports::{UsesContacts, UsesPasskeys};
use portal::usecases::passkeys::user_handle;
use portal_testkit::faults::{Fault, FaultyHttp, Injection, positions};
use portal_testkit::moto::{Tables, aws_portal, fresh_tables};
use portal_testkit::passkey::SoftPasskey;
use portal_testkit::*;
use serde_json::{Value, json};
use webauthn_rs::prelude::{CreationChallengeResponse, RequestChallengeResponse, Url};

const ORIGIN: &str = "http://localhost:9000";

async fn portal_with(tables: &Tables, faults: &FaultyHttp, case: &str) -> Arc<Portal> {
    let hooks = SdkHooks {
        http_client: Some(faults.shared()),
        initial_backoff: Some(Duration::from_millis(2)),
        retry_partition: Some(format!("passkeys-{case}")),
    };
    let generous = [
        ("PORTAL_EMAILS_PER_ADDRESS_PER_HOUR", "1000000"),
        ("PORTAL_FAILURES_PER_ADDRESS_PER_HOUR", "1000000"),
        ("PORTAL_EMAILS_PER_ACCOUNT_PER_HOUR", "1000000"),
        ("PORTAL_EMAILS_PER_RECIPIENT_PER_HOUR", "1000000"),
    ];
    Arc::new(aws_portal(tables, &hooks, &generous).await)
}

/// Creation options as the software authenticator takes them (it keeps no resident keys: see
/// tests/passkeys.rs), and its answer.
fn create(key: &mut SoftPasskey, started: &Value) -> Value {
    let mut options = started.clone();
    options.as_object_mut().unwrap().remove("ceremony");
    options["publicKey"]["authenticatorSelection"]["residentKey"] = json!("discouraged");
    options["publicKey"]["authenticatorSelection"]["requireResidentKey"] = json!(false);
    let options: CreationChallengeResponse = serde_json::from_value(options).unwrap();
    serde_json::to_value(key.do_registration(Url::parse(ORIGIN).unwrap(), options).unwrap()).unwrap()
}

/// An assertion for request options, naming the passkey and returning the user handle by hand.
fn assert_with(key: &mut SoftPasskey, started: &Value, credential_id: &str, contact_id: &str) -> Value {
    let mut options = started.clone();
    options.as_object_mut().unwrap().remove("ceremony");
    options["publicKey"]["allowCredentials"] = json!([{"type": "public-key", "id": credential_id}]);
    let options: RequestChallengeResponse = serde_json::from_value(options).unwrap();
    let mut assertion = key.do_authentication(Url::parse(ORIGIN).unwrap(), options).unwrap();
    assertion.response.user_handle = Some(user_handle(contact_id).as_bytes().to_vec());
    serde_json::to_value(assertion).unwrap()
}

async fn post(
    portal: &Arc<Portal>,
    function: &dyn portal::web::HttpFunction,
    path: &str,
    body: Value,
    session: Option<&str>,
) -> HttpResponse {
    let mut req = Req::post(path).json(body);
    if let Some(session) = session {
        req = req.cookie("portal_session", session);
    }
    send_to(portal, function, req).await
}

/// A registration's finish, prepared fault-free: the request's body.
async fn prepared_registration(portal: &Arc<Portal>, session: &str, key: &mut SoftPasskey) -> Value {
    let body = json!({"current_password": PASSWORD});
    let started = post(portal, &Profile, "/profile/passkeys/register/start", body, Some(session)).await;
    assert_eq!(started.status(), 200, "{}", body_text(&started));
    let started = body_json(&started);
    json!({"ceremony": started["ceremony"], "name": "Laptop", "credential": create(key, &started)})
}

/// The case's passkeys, the contact's epoch and its queued notices.
async fn state_of(portal: &Arc<Portal>, tables: &Tables, email: &str) -> (usize, String, usize) {
    let login = Login::of_email(&Email::parse(email).unwrap());
    let contact = portal.contacts().find_by_login(&login).await.unwrap().unwrap();
    let passkeys = portal.passkeys().list(&contact.contact_id).await.unwrap().len();
    let notices = tables
        .client
        .scan()
        .table_name(&tables.outbox)
        .send()
        .await
        .unwrap()
        .items
        .unwrap_or_default()
        .into_iter()
        .filter(|i| i.get("to").and_then(|t| t.as_s().ok()).map(String::as_str) == Some(email))
        .filter(|i| i.get("kind").and_then(|k| k.as_s().ok()).map(String::as_str) == Some("passkey_added_notice"))
        .count();
    (passkeys, contact.session_epoch, notices)
}

fn clean_503(response: &HttpResponse) {
    assert_eq!(response.status(), 503, "{}", body_text(response));
    assert_eq!(body_json(response)["error"], "internal");
}

#[tokio::test(flavor = "multi_thread")]
async fn faults_in_a_passkey_registration_leave_all_of_it_or_none() {
    let tables = fresh_tables();
    let faults = FaultyHttp::new();
    let dry = portal_with(&tables, &faults, "registration-dry").await;
    let register = |email: String| {
        let portal = dry.clone();
        async move {
            let response = send_to(&portal, &Register, Req::post("/register").json(registration(&email))).await;
            assert_eq!(response.status(), 201, "{}", body_text(&response));
            cookie_value(&response, "portal_session").unwrap()
        }
    };
    let session = register("dry@example.com".into()).await;
    let body = prepared_registration(&dry, &session, &mut SoftPasskey::new(true)).await;
    faults.forget_calls();
    let response = post(&dry, &Profile, "/profile/passkeys/register/finish", body, Some(&session)).await;
    assert_eq!(response.status(), 201, "{}", body_text(&response));
    let calls = positions(&faults.operations());
    assert!(calls.iter().any(|(op, _)| op == "TransactWriteItems"), "{calls:?}");

    let mut refused = 0;
    for (index, (operation, call)) in calls.iter().enumerate() {
        for (fault, attempts) in
            [(Fault::ServerError, 1), (Fault::ServerError, MAX_ATTEMPTS), (Fault::Timeout, MAX_ATTEMPTS)]
        {
            let case = format!("registration-{index}-{}-{attempts}", fault.name());
            let email = format!("r{index}-{attempts}-{}@example.com", fault.name().len());
            let session = register(email.clone()).await;
            let mut key = SoftPasskey::new(true);
            let body = prepared_registration(&dry, &session, &mut key).await;
            let before = state_of(&dry, &tables, &email).await;
            let faulty = portal_with(&tables, &faults, &case).await;
            faults.forget_calls();
            faults.inject(Injection { operation: operation.clone(), call: *call, fault, attempts });
            let response = post(&faulty, &Profile, "/profile/passkeys/register/finish", body, Some(&session)).await;
            faults.clear();
            let after = state_of(&dry, &tables, &email).await;
            if response.status() == 201 {
                assert_eq!((after.0, after.2), (1, 1), "{case}: the passkey and its notice");
                assert_ne!(after.1, before.1, "{case}: a new epoch");
            } else {
                clean_503(&response);
                refused += 1;
                assert!(attempts == MAX_ATTEMPTS, "{case}: one faulty attempt is absorbed");
                let whole = after.0 == 1 && after.2 == 1 && after.1 != before.1;
                assert!(after == before || whole, "{case}: all or nothing, got {after:?} from {before:?}");
                // The person starts again, with a new ceremony, and it works (or it is there).
                let session = match signed_in(&dry, &session).await {
                    true => session,
                    false => sign_in(&dry, &email).await,
                };
                if !whole {
                    let body = prepared_registration(&dry, &session, &mut key).await;
                    let again = post(&dry, &Profile, "/profile/passkeys/register/finish", body, Some(&session)).await;
                    assert_eq!(again.status(), 201, "{case}: {}", body_text(&again));
                }
            }
        }
    }
    assert_eq!(refused, 2 * calls.len(), "every call failing every attempt is a 503 ({calls:?})");
}

async fn signed_in(portal: &Arc<Portal>, session: &str) -> bool {
    send_to(portal, &Profile, Req::get("/profile").cookie("portal_session", session)).await.status() == 200
}

async fn sign_in(portal: &Arc<Portal>, email: &str) -> String {
    let response = post(portal, &SignIn, "/signin", json!({"login": email, "password": PASSWORD}), None).await;
    assert_eq!(response.status(), 200, "{}", body_text(&response));
    cookie_value(&response, "portal_session").unwrap()
}

/// A sign-in's finish, prepared fault-free: the request's body.
async fn sign_in_request(portal: &Arc<Portal>, key: &mut SoftPasskey, credential_id: &str, contact_id: &str) -> Value {
    let started = body_json(&post(portal, &SignIn, "/signin/passkey/start", json!({}), None).await);
    let credential = assert_with(key, &started, credential_id, contact_id);
    json!({"ceremony": started["ceremony"], "credential": credential})
}

#[tokio::test(flavor = "multi_thread")]
async fn faults_in_a_passkey_sign_in_give_a_clean_503_and_the_next_try_works() {
    let tables = fresh_tables();
    let faults = FaultyHttp::new();
    let dry = portal_with(&tables, &faults, "sign-in-dry").await;
    let response = send_to(&dry, &Register, Req::post("/register").json(registration("ada@example.com"))).await;
    let contact_id = body_json(&response)["contact_id"].as_str().unwrap().to_string();
    let session = cookie_value(&response, "portal_session").unwrap();
    let mut key = SoftPasskey::new(true);
    let body = prepared_registration(&dry, &session, &mut key).await;
    let credential_id = body["credential"]["id"].as_str().unwrap().to_string();
    let added = post(&dry, &Profile, "/profile/passkeys/register/finish", body, Some(&session)).await;
    assert_eq!(added.status(), 201, "{}", body_text(&added));

    let body = sign_in_request(&dry, &mut key, &credential_id, &contact_id).await;
    faults.forget_calls();
    let response = post(&dry, &SignIn, "/signin/passkey/finish", body, None).await;
    assert_eq!(response.status(), 200, "{}", body_text(&response));
    let calls = positions(&faults.operations());
    let mut refused = 0;

    for (index, (operation, call)) in calls.iter().enumerate() {
        for (fault, attempts) in
            [(Fault::ServerError, 1), (Fault::Throttling, MAX_ATTEMPTS), (Fault::Timeout, MAX_ATTEMPTS)]
        {
            let case = format!("sign-in-{index}-{}-{attempts}", fault.name());
            let body = sign_in_request(&dry, &mut key, &credential_id, &contact_id).await;
            let faulty = portal_with(&tables, &faults, &case).await;
            faults.forget_calls();
            faults.inject(Injection { operation: operation.clone(), call: *call, fault, attempts });
            let response = post(&faulty, &SignIn, "/signin/passkey/finish", body, None).await;
            faults.clear();
            match response.status().as_u16() {
                200 => assert!(cookie_value(&response, "portal_session").is_some(), "{case}"),
                _ => {
                    clean_503(&response);
                    refused += 1;
                    assert!(attempts == MAX_ATTEMPTS, "{case}: one faulty attempt is absorbed");
                }
            }
            let body = sign_in_request(&dry, &mut key, &credential_id, &contact_id).await;
            let again = post(&dry, &SignIn, "/signin/passkey/finish", body, None).await;
            assert_eq!(again.status(), 200, "{case}: the next sign-in works: {}", body_text(&again));
        }
    }
    println!("passkey sign-in: {} calls, {refused} cases answered 503", calls.len());
    assert!(refused >= calls.len(), "calls failing every attempt are 503s ({calls:?})");
}
