//! Handler-test steps of a signed-in person's two-factor set-up (shared by the two-factor and the
//! one-door tests).

use portal::domain::two_factor::{TOTP_STEP_SECS, TotpSecret};
use portal::handlers::profile::Profile;
use portal::handlers::register::Register;
use serde_json::{Value, json};

use crate::{HttpResponse, PASSWORD, Req, TestPortal, body_json, body_text, cookie_value, registration};

/// The address the two-factor tests register.
pub const ADA: &str = "ada@example.com";

/// Registers Ada; returns her session token.
pub async fn register_ada(t: &TestPortal) -> String {
    let response = t.send(&Register, Req::post("/register").json(registration(ADA))).await;
    assert_eq!(response.status(), 201, "{}", body_text(&response));
    cookie_value(&response, "portal_session").expect("a session")
}

pub fn as_viewer(req: Req, session: &str) -> Req {
    req.cookie("portal_session", session)
}

pub async fn profile_post(t: &TestPortal, session: &str, path: &str, body: Value) -> HttpResponse {
    t.send(&Profile, as_viewer(Req::post(path).json(body), session)).await
}

/// The code of the base32 `secret`, `offset` steps from the test clock's now.
pub fn totp_code(t: &TestPortal, secret: &str, offset: i64) -> String {
    let now = portal::ports::Clock::now(t.clock.as_ref());
    let secret = TotpSecret::from_base32(secret).expect("base32");
    secret.code_at_step(now.as_secs() / TOTP_STEP_SECS + offset)
}

/// Sets up TOTP for the session's contact; returns (secret, recovery codes, new session token).
pub async fn set_up_totp(t: &TestPortal, session: &str) -> (String, Vec<String>, String) {
    let begun = profile_post(t, session, "/profile/two-factor/totp", json!({"current_password": PASSWORD})).await;
    assert_eq!(begun.status(), 200, "{}", body_text(&begun));
    let secret = body_json(&begun)["secret"].as_str().unwrap().to_string();
    let code = totp_code(t, &secret, 0);
    let confirmed = profile_post(t, session, "/profile/two-factor/totp/confirm", json!({"code": code})).await;
    assert_eq!(confirmed.status(), 200, "{}", body_text(&confirmed));
    let codes: Vec<String> = body_json(&confirmed)["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().into())
        .collect();
    let new_session = cookie_value(&confirmed, "portal_session").expect("the browser continues under a new session");
    (secret, codes, new_session)
}
