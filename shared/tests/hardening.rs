//! Issue 8's hardening: HSTS behind https, cheap checks before zxcvbn and argon2, and email
//! addresses that cannot be spelt two ways.

mod support;

use portal::handlers::admin::CreateInvitation;
use portal::handlers::profile::Profile;
use portal::handlers::redeem::RedeemInvitation;
use portal::handlers::register::Register;
use portal::handlers::sign_in::SignIn;
use portal::web::HttpFunction;
use serde_json::json;
use support::*;

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
        let again = t.send(&Register, Req::post("/register").json(registration(second))).await;
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
