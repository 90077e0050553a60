//! Benchmarks for the design's performance budgets (measured here, never asserted by a timed test):
//!
//! 1. DynamoDB calls per operation, counted by an SDK interceptor against the real DynamoDB API
//!    (moto server, started as the tests start it), for each user-facing operation.
//! 2. A request's own work besides the password hash: handler time per request on in-memory
//!    adapters, for the requests that hash nothing.
//!
//! Run with `make bench` (or `cargo bench -p portal --bench operations`).

#[path = "common/calls.rs"]
mod calls;

use calls::CallCounter;

use portal::domain::time::Timestamp;
use std::sync::Arc;
use std::time::Instant;

use portal::domain::contact::{Contact, NewContact};
use portal::domain::email::Email;
use portal::handlers::admin::CreateInvitation;
use portal::handlers::profile::Profile;
use portal::handlers::redeem::RedeemInvitation;
use portal::handlers::register::Register;
use portal::handlers::send_email;
use portal::handlers::sign_in::SignIn;
use portal::web::HttpFunction;
use portal::{Edges, Portal};
use portal_testkit::memory::{ManualClock, MemoryMailer};
use portal_testkit::*;
use serde_json::json;
use tower::ServiceExt;

/// A portal on fresh moto tables whose DynamoDB calls `counter` counts, with an uncounted client
/// for the benchmark's own look-ups.
fn dynamo_portal(counter: &CallCounter) -> (Arc<Portal>, Arc<MemoryMailer>, aws_sdk_dynamodb::Client) {
    dynamo_portal_with(counter, &[])
}

/// As [`dynamo_portal`], with settings as environment variables: each request's settings are built
/// again from the environment's (and the run-time ones, `Portal::current`), so a field changed on
/// the struct would not last past the first request.
fn dynamo_portal_with(
    counter: &CallCounter,
    overrides: &[(&str, &str)],
) -> (Arc<Portal>, Arc<MemoryMailer>, aws_sdk_dynamodb::Client) {
    let tables = portal_testkit::moto::fresh_tables();
    let client = counter.client(tables.endpoint);
    let settings = tables.settings(overrides);
    let mailer = Arc::new(MemoryMailer::default());
    let uncounted = tables.client.clone();
    let edges = Edges {
        mailer: mailer.clone(),
        clock: Arc::new(ManualClock::at(Timestamp::from_secs(1_800_000_000))),
        ..portal_testkit::edges_in_memory()
    };
    let portal = Arc::new(Portal::on_dynamodb(settings, &client, edges));
    (portal, mailer, uncounted)
}

async fn call(portal: &Arc<Portal>, function: &dyn HttpFunction, req: Req) -> HttpResponse {
    let response = function.router(portal.clone()).oneshot(req.build()).await.expect("routers are infallible");
    buffered(response).await
}

async fn dynamodb_calls() {
    let counter = CallCounter::default();
    let (portal, mailer, uncounted) = dynamo_portal(&counter);
    let admin = Contact::new(
        NewContact {
            email: Email::parse("admin@example.com").unwrap(),
            first_name: "Admin".into(),
            last_name: "Istrator".into(),
            username: None,
            phone: None,
            roles: vec!["Administrators".into()],
            password_hash: Some(
                portal::domain::password::hash_password(portal::domain::password::Password::new(PASSWORD.into()))
                    .await
                    .unwrap(),
            ),
        },
        Timestamp::from_secs(1_800_000_000),
    );
    portal.contacts.create(&admin).await.unwrap();
    counter.take();
    println!("DynamoDB calls per operation (moto server, real DynamoDB API):");
    let row = |name: &str| {
        let (total, detail) = counter.take();
        println!("  {name:<44} {total:>2}  ({detail})");
    };

    let registered = call(&portal, &Register, Req::post("/register").json(registration("ada@example.com"))).await;
    assert_eq!(registered.status(), 201);
    row("register (contact, guards, token, email)");
    let signed_in =
        call(&portal, &SignIn, Req::post("/signin").json(json!({"login": "admin@example.com", "password": PASSWORD})))
            .await;
    let admin_session = cookie_value(&signed_in, "portal_session").unwrap();
    row("sign in");
    call(
        &portal,
        &SignIn,
        Req::post("/signin").json(json!({"login": "admin@example.com", "password": "wrong-password-x"})),
    )
    .await;
    row("sign in, wrong password");
    call(
        &portal,
        &SignIn,
        Req::post("/signin").json(json!({"login": "nobody@example.com", "password": "wrong-password-x"})),
    )
    .await;
    row("sign in, unknown login");
    call(&portal, &Profile, Req::get("/profile").cookie("portal_session", &admin_session)).await;
    row("GET /profile (session + contact)");
    let invited = call(
        &portal,
        &CreateInvitation,
        Req::post("/admin/invitations")
            .json(json!({"email": "grace@example.com", "first_name": "Grace", "last_name": "Hopper"}))
            .cookie("portal_session", &admin_session),
    )
    .await;
    assert_eq!(invited.status(), 201);
    row("create invitation (new contact)");

    let scan = uncounted.scan().table_name(&portal.settings.outbox_table).send().await.unwrap();
    let records: Vec<serde_json::Value> = scan
        .items()
        .iter()
        .filter(|item| item.get("kind").and_then(|k| k.as_s().ok()).map(String::as_str) == Some("invitation"))
        .map(|item| {
            let image: serde_dynamo::Item = item.clone().into();
            json!({"eventID": "1", "eventName": "INSERT", "eventVersion": "1.1", "eventSource": "aws:dynamodb", "awsRegion": "us-east-1",
                   "dynamodb": {"Keys": {}, "NewImage": image, "SequenceNumber": "1", "SizeBytes": 1, "StreamViewType": "NEW_IMAGE"}})
        })
        .collect();
    let event = serde_json::from_value(json!({"Records": records})).unwrap();
    counter.take();
    send_email::handle(&portal, event).await;
    row("send-email, one invitation message");
    let code = mailer.sent()[0].text.lines().find_map(|l| l.split("code=").nth(1)).unwrap().trim().to_string();
    call(&portal, &RedeemInvitation, Req::post("/redeem").json(json!({"code": code}))).await;
    row("redeem: look the code up");
    let redeemed = call(
        &portal,
        &RedeemInvitation,
        Req::post("/redeem").json(json!({"code": code, "password": "Compiler-Pioneer-1952"})),
    )
    .await;
    assert_eq!(redeemed.status(), 201);
    row("redeem: set up credentials (+ session)");
    call(&portal, &SignIn, Req::post("/forgot-password").json(json!({"email": "ada@example.com"}))).await;
    row("forgot password (allowances, token, email)");
    call(&portal, &SignIn, Req::post("/signout").raw_json("").cookie("portal_session", &admin_session)).await;
    row("sign out");
}

/// Mean handler time per request over `rounds`, on in-memory adapters.
async fn time_per_request(
    name: &str,
    rounds: u32,
    mut request: impl FnMut() -> Req,
    function: &dyn HttpFunction,
    t: &TestPortal,
) {
    // The router is built once per Lambda instance, as `lambda::serve` does.
    let router = function.router(t.portal.clone());
    let start = Instant::now();
    for _ in 0..rounds {
        let response = router.clone().oneshot(request().build()).await.expect("routers are infallible");
        assert!(response.status().as_u16() < 500);
    }
    let micros = start.elapsed().as_secs_f64() * 1e6 / f64::from(rounds);
    println!("  {name:<44} {micros:>8.1} µs");
}

async fn request_cpu() {
    let t = test_portal(&[]);
    let registered = t.send(&Register, Req::post("/register").json(registration("ada@example.com"))).await;
    let session = cookie_value(&registered, "portal_session").unwrap();
    let mut ada = t.contacts.all().remove(0);
    ada.roles = vec!["Administrators".into()];
    t.contacts.put(ada);
    let invited = t
        .send(
            &CreateInvitation,
            Req::post("/admin/invitations")
                .json(json!({"email": "grace@example.com", "first_name": "Grace", "last_name": "Hopper"}))
                .cookie("portal_session", &session),
        )
        .await;
    assert_eq!(invited.status(), 201);
    let code = t.outbox.all().into_iter().find_map(|m| m.secret).unwrap().expose().to_string();
    println!("Handler time per request, in memory, no password hash (release build):");
    let rounds = 2000;
    time_per_request(
        "GET /profile (JSON)",
        rounds,
        || Req::get("/profile").cookie("portal_session", &session),
        &Profile,
        &t,
    )
    .await;
    time_per_request(
        "GET / (HTML page, signed in)",
        rounds,
        || Req::get("/").html().cookie("portal_session", &session),
        &Profile,
        &t,
    )
    .await;
    time_per_request("GET /signin (HTML page)", rounds, || Req::get("/signin").html(), &SignIn, &t).await;
    time_per_request(
        "POST /redeem (look the code up)",
        rounds,
        || Req::post("/redeem").json(json!({"code": code})),
        &RedeemInvitation,
        &t,
    )
    .await;
    time_per_request(
        "POST /admin/invitations",
        rounds,
        || {
            Req::post("/admin/invitations")
                .json(json!({"email": "grace@example.com", "first_name": "Grace", "last_name": "Hopper"}))
                .cookie("portal_session", &session)
        },
        &CreateInvitation,
        &t,
    )
    .await;
    time_per_request(
        "POST /register, invalid (validation only)",
        rounds,
        || Req::post("/register").json(json!({"email": "nope"})),
        &Register,
        &t,
    )
    .await;
    let start = Instant::now();
    for _ in 0..5 {
        portal::domain::password::hash_password(portal::domain::password::Password::new(PASSWORD.into()))
            .await
            .unwrap();
    }
    println!(
        "  {:<44} {:>8.1} ms",
        "argon2id hash (m=19 MiB, t=2, p=1), for scale",
        start.elapsed().as_secs_f64() * 1e3 / 5.0
    );
}

/// Median wall time of `request` (on moto), in milliseconds.
async fn median_ms(portal: &Arc<Portal>, function: &dyn HttpFunction, request: impl Fn(u32) -> Req, i: u32) -> f64 {
    let start = Instant::now();
    let response = call(portal, function, request(i)).await;
    assert!(response.status().as_u16() < 500, "{}", body_text(&response));
    start.elapsed().as_secs_f64() * 1e3
}

fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

/// Allowances no benchmark's rounds use up.
const UNLIMITED: [(&str, &str); 4] = [
    ("PORTAL_EMAILS_PER_ADDRESS_PER_HOUR", "1000000"),
    ("PORTAL_EMAILS_PER_ACCOUNT_PER_HOUR", "1000000"),
    ("PORTAL_EMAILS_PER_RECIPIENT_PER_HOUR", "1000000"),
    ("PORTAL_FAILURES_PER_ADDRESS_PER_HOUR", "1000000"),
];

/// Times the requests that must not tell whether an account exists, for an address with an
/// account and one without, alternating so that drift hits both alike.
async fn known_vs_unknown() {
    let rounds = 41;
    let (portal, _, _) = dynamo_portal_with(
        &CallCounter::default(),
        &[("PORTAL_REQUIRE_CONFIRMATION", "true"), UNLIMITED[0], UNLIMITED[1], UNLIMITED[2], UNLIMITED[3]],
    );
    let registered = call(&portal, &Register, Req::post("/register").json(registration("known@example.com"))).await;
    assert_eq!(registered.status(), 202);
    let (open, _, _) = dynamo_portal_with(&CallCounter::default(), &UNLIMITED);
    let session = cookie_value(
        &call(&open, &Register, Req::post("/register").json(registration("mover@example.com"))).await,
        "portal_session",
    )
    .unwrap();
    call(&open, &Register, Req::post("/register").json(registration("taken@example.com"))).await;

    println!("Median time, account exists vs not (moto server; the answers are the same):");
    type Case<'a> = (&'a str, &'a Arc<Portal>, &'a dyn HttpFunction, Box<dyn Fn(bool, u32) -> Req + 'a>);
    let cases: Vec<Case> = vec![
        (
            "POST /forgot-password",
            &portal,
            &SignIn,
            Box::new(|known, _| {
                let email = if known { "known@example.com" } else { "nobody@example.com" };
                Req::post("/forgot-password").json(json!({"email": email}))
            }),
        ),
        (
            "POST /confirm-email {email} (a new link)",
            &portal,
            &Register,
            Box::new(|known, _| {
                let email = if known { "known@example.com" } else { "nobody@example.com" };
                Req::post("/confirm-email").json(json!({"email": email}))
            }),
        ),
        (
            "POST /register, confirmation required",
            &portal,
            &Register,
            Box::new(|known, i| {
                let email = if known { "known@example.com".to_string() } else { format!("new{i}@example.com") };
                Req::post("/register").json(registration(&email))
            }),
        ),
        (
            "POST /profile, a new email (taken vs free)",
            &open,
            &Profile,
            Box::new(|known, i| {
                let email = if known { "taken@example.com".to_string() } else { format!("free{i}@example.com") };
                Req::post("/profile")
                    .json(json!({"email": email, "current_password": PASSWORD}))
                    .cookie("portal_session", &session)
            }),
        ),
    ];
    for (name, portal, function, request) in cases {
        let (mut known, mut unknown) = (Vec::new(), Vec::new());
        for i in 0..rounds {
            known.push(median_ms(portal, function, |i| request(true, i), i).await);
            unknown.push(median_ms(portal, function, |i| request(false, i), i).await);
        }
        let (known, unknown) = (median(known), median(unknown));
        let difference = (known - unknown).abs() / known.min(unknown) * 100.0;
        let verdict = if difference <= 10.0 { "within 10%" } else { "OVER 10%" };
        println!("  {name:<44} {known:>7.2} ms vs {unknown:>7.2} ms  ({difference:>4.1}%, {verdict})");
    }
}

/// Times a sign-in with a wrong password for a login that no account has, for an account, and for
/// a locked account, alternating so that drift hits all three alike: the door does the same work
/// (and the same argon2 run) for each.
async fn unknown_wrong_and_locked_sign_ins() {
    let rounds = 41;
    let (portal, _, _) = dynamo_portal_with(&CallCounter::default(), &UNLIMITED);
    for email in ["known@example.com", "locked@example.com"] {
        let registered = call(&portal, &Register, Req::post("/register").json(registration(email))).await;
        assert_eq!(registered.status(), 201);
    }
    let wrong =
        |login: &str| Req::post("/signin").json(json!({"login": login, "password": "Wrong-Passphrase-Guess-99"}));
    for _ in 0..5 {
        call(&portal, &SignIn, wrong("locked@example.com")).await;
    }
    let cases = [
        ("unknown login", "nobody@example.com"),
        ("wrong password", "known@example.com"),
        ("locked account", "locked@example.com"),
    ];
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); cases.len()];
    for i in 0..rounds {
        for (n, (_, login)) in cases.iter().enumerate() {
            samples[n].push(median_ms(&portal, &SignIn, |_| wrong(login), i).await);
        }
    }
    let medians: Vec<f64> = samples.into_iter().map(median).collect();
    let (low, high) = medians.iter().fold((f64::MAX, 0.0f64), |(lo, hi), m| (lo.min(*m), hi.max(*m)));
    println!("Median sign-in time, all answered 401 invalid_credentials (moto server, argon2 included):");
    for ((name, _), median) in cases.iter().zip(&medians) {
        println!("  {name:<44} {median:>7.2} ms");
    }
    let spread = (high - low) / low * 100.0;
    let verdict = if spread <= 10.0 { "within 10%" } else { "OVER 10%" };
    println!("  {:<44} {spread:>6.1} %  ({verdict})", "largest difference");
}

/// What reading the site settings costs (issue 24): every request asks for the settings as they
/// stand ([`Portal::current`]); while the copy read at most `PORTAL_SETTINGS_REFRESH_SECS` (60 s)
/// ago is fresh that is a lock and a clone of an `Arc`, and once a minute per instance it is one read
/// of the settings item with the settings built again over the environment's.
async fn site_settings_read() {
    println!("Reading the site settings (issue 24), per request:");
    let t = test_portal(&[]);
    t.portal.current().await.unwrap();
    let rounds = 200_000;
    let started = Instant::now();
    for _ in 0..rounds {
        t.portal.current().await.unwrap();
    }
    let cached = started.elapsed().as_secs_f64() * 1e9 / f64::from(rounds);
    println!("  {:<44} {cached:>7.0} ns", "the cached copy (in memory)");
    let rounds = 5_000;
    let started = Instant::now();
    for _ in 0..rounds {
        t.clock.advance(t.portal.settings.settings_refresh_secs);
        t.portal.current().await.unwrap();
    }
    let refreshed = started.elapsed().as_secs_f64() * 1e6 / f64::from(rounds);
    println!("  {:<44} {refreshed:>7.1} µs", "a refresh (in-memory store, settings rebuilt)");
    // On the real DynamoDB API: the calls a refresh makes, and its time on the local moto server
    // (an in-region GetItem takes a few milliseconds in AWS, once a minute per instance).
    let counter = CallCounter::default();
    let (portal, _, _) = dynamo_portal(&counter);
    counter.take();
    let started = Instant::now();
    portal.current().await.unwrap();
    let elapsed = started.elapsed().as_secs_f64() * 1e3;
    let (calls, detail) = counter.take();
    println!("  {:<44} {calls:>2}  ({detail}), {elapsed:.1} ms on moto", "a refresh on DynamoDB: calls");
    portal.current().await.unwrap();
    println!("  {:<44} {:>2}", "the next request within the minute: calls", counter.take().0);
}

#[tokio::main]
async fn main() {
    site_settings_read().await;
    println!();
    dynamodb_calls().await;
    println!();
    unknown_wrong_and_locked_sign_ins().await;
    println!();
    known_vs_unknown().await;
    println!();
    request_cpu().await;
}
