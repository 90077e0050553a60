//! Handler tests for the site settings changed at run time (issue 24), on in-memory adapters: the
//! list with each value's source, a change of several settings with its audit entry and event,
//! every function seeing it within a minute (the injected clock), and each refusal.

use portal::handlers::admin::CreateInvitation;
use portal::handlers::register::Register;
use portal_testkit::*;
use serde_json::{Value, json};

async fn admin(t: &TestPortal) -> String {
    t.administrator_session().await
}

async fn post(t: &TestPortal, token: &str, body: Value) -> HttpResponse {
    t.send(&CreateInvitation, Req::post("/admin/settings").json(body).cookie("portal_session", token)).await
}

fn row<'a>(body: &'a Value, name: &str) -> &'a Value {
    body["settings"].as_array().unwrap().iter().find(|s| s["name"] == name).unwrap()
}

#[tokio::test]
async fn an_administrator_changes_settings_and_every_function_sees_them_within_a_minute() {
    let t = test_portal(&[("PORTAL_LOCKOUT_THRESHOLD", "7")]);
    let token = admin(&t).await;
    let listed = t.send(&CreateInvitation, Req::get("/admin/settings").cookie("portal_session", &token)).await;
    assert_eq!(listed.status(), 200, "{}", body_text(&listed));
    let listed = body_json(&listed);
    assert_eq!(listed["version"], 0);
    assert_eq!(
        row(&listed, "open_registration"),
        &json!({"name": "open_registration", "value": "true", "default": "true", "source": "default",
                "description": row(&listed, "open_registration")["description"], "group": "Registration"})
    );
    assert_eq!(
        (row(&listed, "lockout_threshold")["value"].as_str(), row(&listed, "lockout_threshold")["source"].as_str()),
        (Some("7"), Some("environment"))
    );

    let changed = post(&t, &token, json!({"open_registration": false, "lockout_threshold": 9, "version": 0})).await;
    assert_eq!(changed.status(), 200, "{}", body_text(&changed));
    let changed = body_json(&changed);
    assert_eq!(changed["version"], 1);
    assert_eq!(
        (row(&changed, "open_registration")["value"].as_str(), row(&changed, "open_registration")["source"].as_str()),
        (Some("false"), Some("run_time"))
    );
    assert_eq!(row(&changed, "lockout_threshold")["value"], "9");
    let entry = t.contacts.audit_entries().into_iter().find(|e| e.kind == "settings_changed").unwrap();
    assert_eq!(entry.detail["settings"], "lockout_threshold,open_registration");
    let facts: Vec<String> = t.outbox.events().iter().map(|e| e.detail_type().to_string()).collect();
    assert!(facts.contains(&"SettingsChanged".to_string()), "{facts:?}");

    // Each instance reads the settings at most once a minute: until then the old ones hold.
    let held = t.send(&Register, Req::post("/register").json(registration("cal@example.com"))).await;
    assert_eq!(held.status(), 201, "read less than a minute ago: still open");
    let register = || Req::post("/register").json(registration("bea@example.com"));
    t.clock.advance(61);
    let closed = t.send(&Register, register()).await;
    assert_eq!(closed.status(), 403, "{}", body_text(&closed));
    assert_eq!(body_json(&closed)["error"], "registration_closed");

    // A blank value goes back to the environment's (or the default).
    let reset = body_json(&post(&t, &token, json!({"open_registration": ""})).await);
    assert_eq!(
        (row(&reset, "open_registration")["source"].as_str(), reset["version"].as_u64()),
        (Some("default"), Some(2))
    );
    t.clock.advance(61);
    assert_eq!(t.send(&Register, register()).await.status(), 201);
}

#[tokio::test]
async fn bad_changes_are_refused_naming_the_setting_and_change_nothing() {
    let t = test_portal(&[]);
    let token = admin(&t).await;
    let cases = [
        (json!({"no_such_setting": "1"}), 400, "no_such_setting"),
        (json!({"password_min_length": 3}), 400, "password_min_length"),
        (json!({"open_registration": "maybe", "lockout_threshold": 9}), 400, "open_registration"),
        (json!({"lockout_threshold": 9, "version": 4}), 409, "version"),
    ];
    for (body, status, field) in cases {
        let refused = post(&t, &token, body.clone()).await;
        assert_eq!(refused.status().as_u16(), status, "{body}: {}", body_text(&refused));
        let answer = body_json(&refused);
        assert_eq!(answer["error"], "validation_failed");
        assert!(answer["fields"][field].is_string(), "{body}: {answer}");
    }
    let listed =
        body_json(&t.send(&CreateInvitation, Req::get("/admin/settings").cookie("portal_session", &token)).await);
    assert_eq!(listed["version"], 0, "nothing was changed");

    // Only administrators.
    let other = cookie_value(
        &t.send(&Register, Req::post("/register").json(registration("bea@example.com"))).await,
        "portal_session",
    )
    .unwrap();
    assert_eq!(post(&t, &other, json!({"open_registration": false})).await.status(), 403);
    assert_eq!(
        t.send(&CreateInvitation, Req::get("/admin/settings").cookie("portal_session", &other)).await.status(),
        403
    );
}

#[tokio::test]
async fn invitation_required_points_registration_to_redeem_and_the_page_edits_the_settings() {
    let t = test_portal(&[]);
    let token = admin(&t).await;
    let page = t.send(&CreateInvitation, Req::get("/admin/settings").html().cookie("portal_session", &token)).await;
    let html = body_text(&page);
    assert!(html.contains("settings-form") && html.contains("Registration") && html.contains("invitation_required"));
    let saved = t
        .send(
            &CreateInvitation,
            Req::post("/admin/settings")
                .form(&[("invitation_required", "true"), ("version", "0")], "csrf-token-1")
                .cookie("portal_session", &token),
        )
        .await;
    assert_eq!(saved.status(), 200, "{}", body_text(&saved));
    assert!(body_text(&saved).contains("settings-saved"));
    t.clock.advance(61);
    let form = t.send(&Register, Req::get("/register").html()).await;
    assert_eq!(form.status(), 403);
    assert!(body_text(&form).contains("/redeem"), "the register page points to /redeem");
}
