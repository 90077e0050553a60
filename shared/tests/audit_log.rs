//! The structured log: audit events are there, secrets never are.
//!
//! A test binary of its own: it captures the log with a thread-local subscriber, and tracing
//! caches each log call site's interest globally; a call site first reached by another test's
//! thread while this subscriber was being registered could be cached as "never" (a clean-clone CI
//! run saw `registered` and `signed_in` missing once). Alone in its binary, no other thread logs.

use std::io::Write;
use std::sync::{Arc, Mutex};

use portal::handlers::register::Register;
use portal::handlers::sign_in::SignIn;
use portal_testkit::*;
use serde_json::{Value, json};

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[tokio::test(flavor = "current_thread")]
async fn audit_events_are_json_lines_without_passwords_tokens_or_hashes() {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt().json().flatten_event(true).with_writer(captured.clone()).finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let t = test_portal(&[]);
    let registered = t.send(&Register, Req::post("/register").json(registration("ada@example.com"))).await;
    let token = cookie_value(&registered, "portal_session").unwrap();
    let wrong = "wrong-password-typed-here";
    for _ in 0..5 {
        t.send(&SignIn, Req::post("/signin").json(json!({"login": "ada@example.com", "password": wrong}))).await;
    }
    t.send(&SignIn, Req::post("/signin").json(json!({"login": "ada@example.com", "password": PASSWORD}))).await;
    t.clock.advance(3600);
    let signed_in =
        t.send(&SignIn, Req::post("/signin").json(json!({"login": "ada@example.com", "password": PASSWORD}))).await;
    let second_token = cookie_value(&signed_in, "portal_session").unwrap();

    let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let events: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).expect("every line is JSON")).collect();
    let audits: Vec<&str> = events.iter().filter_map(|e| e["audit"].as_str()).collect();
    for expected in ["registered", "signed_in", "sign_in_failed", "locked_out"] {
        assert!(audits.contains(&expected), "{expected} missing from {audits:?}");
    }
    assert!(events.iter().any(|e| e["source_ip"] == "198.51.100.7"));
    let hash = t.contacts.all()[0].password_hash.clone().unwrap();
    let hash_text = serde_json::to_value(&hash).unwrap().as_str().unwrap().to_string();
    for secret in [PASSWORD, wrong, &token, &second_token, &hash_text] {
        assert!(!text.contains(secret), "a secret reached the log");
    }
}
