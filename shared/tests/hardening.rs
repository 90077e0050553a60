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
