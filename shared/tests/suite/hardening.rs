//! Issue 8's hardening: HSTS behind https, cheap checks before zxcvbn and argon2, and email
//! addresses that cannot be spelt two ways.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use portal::handlers::admin::CreateInvitation;
use portal::handlers::profile::Profile;
use portal::handlers::redeem::RedeemInvitation;
use portal::handlers::register::Register;
use portal::handlers::sign_in::SignIn;
use portal::web::HttpFunction;
use portal_testkit::*;
use serde_json::json;
use tracing_subscriber::layer::{Context, SubscriberExt};

/// Answers of every kind (page, JSON, error, 404, 413) from every function.
fn every_kind_of_answer() -> Vec<(&'static dyn HttpFunction, Req)> {
    vec![
        (&SignIn, Req::get("/signin").html()),
        (&SignIn, Req::post("/signin").json(json!({"login": "nobody@example.com", "password": "x"}))),
        (&SignIn, Req::post("/signin").raw_json(&format!(r#"{{"login":"{}"}}"#, "a".repeat(20_000)))),
        (&Register, Req::post("/register").json(registration("ada@example.com"))),
        (&Profile, Req::get("/profile")),
        (&CreateInvitation, Req::get("/admin/contacts")),
        (&RedeemInvitation, Req::get("/redeem?code=nope").html()),
        (&SignIn, Req::get("/no-such-page")),
    ]
}

#[tokio::test]
async fn behind_https_every_answer_pins_browsers_to_https_for_a_year_with_subdomains() {
    let t = test_portal(&[("PORTAL_BASE_URL", "https://portal.example.com")]);
    for (function, req) in every_kind_of_answer() {
        let response = t.send(function, req).await;
        let hsts = response.headers().get("strict-transport-security").map(|v| v.to_str().unwrap().to_string());
        let status = response.status();
        let hsts = hsts.unwrap_or_else(|| panic!("no HSTS on a {status} answer"));
        let max_age: u64 = hsts
            .split(';')
            .find_map(|d| d.trim().strip_prefix("max-age="))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no max-age in {hsts:?}"));
        assert!(max_age >= 365 * 24 * 3600, "{hsts:?}");
        assert!(hsts.split(';').any(|d| d.trim().eq_ignore_ascii_case("includeSubDomains")), "{hsts:?}");
    }
}

#[tokio::test]
async fn over_plain_http_no_answer_sends_hsts() {
    let t = test_portal(&[("PORTAL_BASE_URL", "http://localhost:9000")]);
    for (function, req) in every_kind_of_answer() {
        let response = t.send(function, req).await;
        assert!(response.headers().get("strict-transport-security").is_none(), "HSTS on a {}", response.status());
    }
}

#[tokio::test]
async fn a_domain_spelt_in_unicode_or_in_punycode_or_a_local_part_composed_or_not_is_one_account() {
    let pairs = [
        ("user@bücher.example", "user@xn--bcher-kva.example"),
        ("user@xn--bcher-kva.example", "USER@BÜCHER.example"),
        ("zo\u{00EB}@example.com", "zoe\u{0308}@example.com"),
    ];
    for (first, second) in pairs {
        let t = test_portal(&[]);
        let registered = t.send(&Register, Req::post("/register").json(registration(first))).await;
        assert_eq!(registered.status(), 201, "{first:?}: {}", body_text(&registered));
        // Someone else (another name: the same registration again would be its own retry).
        let mut other = registration(second);
        other["first_name"] = json!("Eve");
        let again = t.send(&Register, Req::post("/register").json(other)).await;
        assert_eq!(again.status(), 409, "{second:?} after {first:?}: {}", body_text(&again));
        assert_eq!(body_json(&again)["error"], "email_taken");
        assert_eq!(t.contacts.all().len(), 1);
        // The other spelling signs in to the account too.
        let signed_in =
            t.send(&SignIn, Req::post("/signin").json(json!({"login": second, "password": PASSWORD}))).await;
        assert_eq!(signed_in.status(), 200, "{second:?}: {}", body_text(&signed_in));
    }
}

#[tokio::test]
async fn the_account_keeps_the_domain_in_its_ascii_form_and_the_local_part_in_nfc() {
    let t = test_portal(&[]);
    let registered = t.send(&Register, Req::post("/register").json(registration("Zoe\u{0308}@Bücher.example"))).await;
    assert_eq!(registered.status(), 201, "{}", body_text(&registered));
    assert_eq!(body_json(&registered)["email"], "Zo\u{00EB}@xn--bcher-kva.example");
    assert_eq!(t.contacts.all()[0].email.as_str(), "Zo\u{00EB}@xn--bcher-kva.example");
}

#[tokio::test]
async fn an_address_with_invisible_or_text_direction_characters_is_a_field_error_and_writes_nothing() {
    let t = test_portal(&[]);
    for invisible in ['\u{200B}', '\u{200D}', '\u{FEFF}', '\u{202E}', '\u{2066}', '\u{200F}'] {
        let email = format!("ad{invisible}a@example.com");
        let response = t.send(&Register, Req::post("/register").json(registration(&email))).await;
        assert_eq!(response.status(), 400, "{invisible:?}: {}", body_text(&response));
        let body = body_json(&response);
        assert_eq!(body["error"], "validation_failed");
        let reason = body["fields"]["email"].as_str().unwrap_or_default();
        assert!(reason.contains("invisible"), "{invisible:?}: {body}");
    }
    assert!(t.contacts.all().is_empty());
}

/// Counts the costly steps a request takes, by the spans they open: `password_strength` (zxcvbn),
/// `hash_password` and `verify_password` (argon2). The spans open on the request's own thread
/// (argon2 then runs on a blocking one), so a current-thread test sees every one.
#[derive(Clone, Default)]
struct CostlySteps(Arc<Mutex<HashMap<&'static str, usize>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for CostlySteps {
    fn on_new_span(&self, attrs: &tracing::span::Attributes<'_>, _: &tracing::span::Id, _: Context<'_, S>) {
        *self.0.lock().unwrap().entry(attrs.metadata().name()).or_default() += 1;
    }
}

impl CostlySteps {
    /// Counts the steps for as long as the returned guard lives, on this thread.
    fn watch() -> (CostlySteps, tracing::subscriber::DefaultGuard) {
        let steps = CostlySteps::default();
        let guard = tracing::subscriber::set_default(tracing_subscriber::registry().with(steps.clone()));
        (steps, guard)
    }

    /// How many times each costly step ran since the last call.
    fn take(&self) -> [(&'static str, usize); 3] {
        let mut counts = self.0.lock().unwrap();
        let taken = ["password_strength", "hash_password", "verify_password"]
            .map(|name| (name, counts.get(name).copied().unwrap_or(0)));
        counts.clear();
        taken
    }
}

const NONE_RAN: [(&str, usize); 3] = [("password_strength", 0), ("hash_password", 0), ("verify_password", 0)];

/// The reset token of the link `forgot-password` has `send-email` send to `email`.
async fn reset_token(t: &TestPortal, email: &str) -> String {
    let asked = t.send(&SignIn, Req::post("/forgot-password").json(json!({"email": email}))).await;
    assert_eq!(asked.status(), 202);
    let mail = t.mailbox().await;
    let reset = mail.iter().find(|m| m.subject == "Reset your password").expect("a reset email with its token");
    link_in(reset, "/reset-password")
}

#[tokio::test(flavor = "current_thread")]
async fn a_bad_reset_token_is_answered_before_the_password_is_scored_or_hashed() {
    let t = test_portal(&[]);
    t.send(&Register, Req::post("/register").json(registration("ada@example.com"))).await;
    let expired = reset_token(&t, "ada@example.com").await;
    t.clock.advance(3600);
    let unknown = "A".repeat(43);
    let (steps, _watching) = CostlySteps::watch();
    for token in [unknown.as_str(), expired.as_str(), "not-a-token"] {
        // A strong password and a weak one: neither is looked at.
        for new_password in ["Brand-New-Passphrase-77", "password1234"] {
            let response = t
                .send(&SignIn, Req::post("/reset-password").json(json!({"token": token, "new_password": new_password})))
                .await;
            assert_eq!(response.status(), 400, "{}", body_text(&response));
            assert_eq!(body_json(&response)["error"], "token_invalid", "{token:?} {new_password:?}");
            assert_eq!(steps.take(), NONE_RAN, "{token:?} {new_password:?}");
        }
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_good_reset_token_gets_the_password_scored_once_and_hashed_once_and_a_weak_one_keeps_the_link() {
    let t = test_portal(&[]);
    t.send(&Register, Req::post("/register").json(registration("ada@example.com"))).await;
    let token = reset_token(&t, "ada@example.com").await;
    let (steps, _watching) = CostlySteps::watch();
    let reset = |new_password: &'static str| {
        t.send(&SignIn, Req::post("/reset-password").json(json!({"token": token, "new_password": new_password})))
    };
    let weak = reset("password1234").await;
    assert_eq!(weak.status(), 400);
    assert!(body_json(&weak)["fields"]["new_password"].is_string(), "{}", body_text(&weak));
    assert_eq!(steps.take(), [("password_strength", 1), ("hash_password", 0), ("verify_password", 0)]);
    // The password is checked against the address the link went to.
    let own_address = reset("ada@example.com!").await;
    assert!(body_json(&own_address)["fields"]["new_password"].is_string(), "{}", body_text(&own_address));
    steps.take();
    // A browser gets the form again, with the link's token and the password's problem.
    let csrf = "c".repeat(43);
    let fields = [("token", token.as_str()), ("new_password", "password1234")];
    let page = t.send(&SignIn, Req::post("/reset-password").form(&fields, &csrf)).await;
    let page = body_text(&page);
    assert!(page.contains("name=\"new_password\"") && page.contains(&token), "{page}");
    assert!(page.contains("guess"), "{page}");
    steps.take();
    let strong = reset("Brand-New-Passphrase-77").await;
    assert_eq!(strong.status(), 204, "{}", body_text(&strong));
    assert_eq!(steps.take(), [("password_strength", 1), ("hash_password", 1), ("verify_password", 0)]);
}

#[tokio::test(flavor = "current_thread")]
async fn a_bad_invitation_code_is_answered_before_the_password_is_scored_or_hashed() {
    let t = test_portal(&[]);
    let (steps, _watching) = CostlySteps::watch();
    let attempts = [
        json!({"code": "ABCD-EFGH-JKLM-NPQR", "password": "Brand-New-Passphrase-77"}),
        json!({"code": "ABCD-EFGH-JKLM-NPQR", "password": "password1234", "email": "eve@example.com",
               "first_name": "Eve", "last_name": "Example"}),
        json!({"code": "nope", "existing_account": true, "login": "ada@example.com", "password": PASSWORD}),
    ];
    for attempt in attempts {
        let response = t.send(&RedeemInvitation, Req::post("/redeem").json(attempt.clone())).await;
        assert_eq!(body_json(&response)["error"], "invitation_invalid", "{attempt}");
        assert_eq!(steps.take(), NONE_RAN, "{attempt}");
    }
}

#[tokio::test(flavor = "current_thread")]
async fn an_address_out_of_failed_sign_ins_is_refused_before_any_password_is_verified() {
    let t = test_portal(&[("PORTAL_FAILURES_PER_ADDRESS_PER_HOUR", "2")]);
    let (steps, _watching) = CostlySteps::watch();
    let guess = || t.send(&SignIn, Req::post("/signin").json(json!({"login": "eve@example.com", "password": "guess"})));
    for _ in 0..2 {
        assert_eq!(guess().await.status(), 401);
    }
    assert_eq!(steps.take(), [("password_strength", 0), ("hash_password", 0), ("verify_password", 2)]);
    assert_eq!(guess().await.status(), 429);
    assert_eq!(steps.take(), NONE_RAN);
}
