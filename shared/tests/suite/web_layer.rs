//! What every route gets from the layers, whichever function answers: security headers, the
//! contract's 404 for unknown routes and methods, errors rendered for the client that asked, and
//! forms shown again with what was sent.

use portal::handlers::admin::CreateInvitation;
use portal::handlers::profile::Profile;
use portal::handlers::redeem::RedeemInvitation;
use portal::handlers::register::Register;
use portal::handlers::sign_in::SignIn;
use portal::web::HttpFunction;
use portal_testkit::*;
use serde_json::json;

const FUNCTIONS: [&dyn HttpFunction; 5] = [&SignIn, &Register, &Profile, &CreateInvitation, &RedeemInvitation];

fn assert_security_headers(response: &HttpResponse, what: &str) {
    let header = |name: &str| response.headers().get(name).map(|v| v.to_str().unwrap().to_string());
    assert_eq!(header("cache-control").as_deref(), Some("no-store"), "{what}");
    assert_eq!(header("x-content-type-options").as_deref(), Some("nosniff"), "{what}");
    assert_eq!(header("referrer-policy").as_deref(), Some("same-origin"), "{what}");
    assert_eq!(header("x-frame-options").as_deref(), Some("DENY"), "{what}");
    let is_html = header("content-type").is_some_and(|c| c.starts_with("text/html"));
    let policy = header("content-security-policy");
    assert_eq!(policy.is_some(), is_html, "{what}: a content security policy exactly on HTML");
    if let Some(policy) = policy {
        assert!(policy.contains("default-src 'none'") && policy.contains("frame-ancestors 'none'"), "{what}");
    }
}

#[tokio::test]
async fn every_answer_carries_the_security_headers() {
    let t = test_portal(&[]);
    let cases: Vec<(&dyn HttpFunction, Req, u16)> = vec![
        (&SignIn, Req::get("/signin").html(), 200),
        (&SignIn, Req::post("/signin").json(json!({"login": "nobody@example.com", "password": "x"})), 401),
        (&Register, Req::post("/register").json(registration("ada@example.com")), 201),
        (&Profile, Req::get("/profile").html(), 303),
        (&Profile, Req::get("/profile"), 401),
        (&CreateInvitation, Req::get("/admin/contacts"), 401),
        (&RedeemInvitation, Req::get("/redeem?code=nope").html(), 400),
        (&SignIn, Req::get("/no-such-page"), 404),
    ];
    for (function, req, status) in cases {
        let response = t.send(function, req).await;
        assert_eq!(response.status().as_u16(), status, "{}", body_text(&response));
        assert_security_headers(&response, &format!("status {status}"));
    }
}

#[tokio::test]
async fn unknown_routes_and_methods_get_the_contracts_404_in_the_clients_form() {
    let t = test_portal(&[]);
    for function in FUNCTIONS {
        for req in [Req::get("/nowhere"), Req::post("/nowhere").json(json!({}))] {
            let response = t.send(function, req).await;
            assert_eq!(response.status(), 404);
            assert_eq!(body_json(&response)["error"], "not_found");
        }
        let page = t.send(function, Req::get("/nowhere").html()).await;
        assert_eq!(page.status(), 404);
        assert!(body_text(&page).contains("<html") || body_text(&page).contains("<!doctype"), "a page for a browser");
    }
    let wrong_method = t.send(&SignIn, Req::post("/signout/extra").json(json!({}))).await;
    assert_eq!(wrong_method.status(), 404);
    let not_a_get = t.send(&Profile, Req::post("/").json(json!({}))).await;
    assert_eq!((not_a_get.status().as_u16(), body_json(&not_a_get)["error"].as_str()), (404, Some("not_found")));
}

#[tokio::test]
async fn a_body_over_the_limit_is_refused_by_the_layer_in_the_contracts_shape() {
    let t = test_portal(&[]);
    // A signed-in administrator: the caller is checked before the body is read.
    let registered = t.send(&Register, Req::post("/register").json(registration("admin@example.com"))).await;
    let session = cookie_value(&registered, "portal_session").unwrap();
    let mut admin = t.contacts.all().remove(0);
    admin.roles = vec!["Administrators".into()];
    t.contacts.put(admin);
    let big = format!("{{\"login\": \"{}\", \"password\": \"x\"}}", "a".repeat(20_000));
    let posts: [(&dyn HttpFunction, &str); 5] = [
        (&SignIn, "/signin"),
        (&Register, "/register"),
        (&Profile, "/profile"),
        (&CreateInvitation, "/admin/contacts"),
        (&RedeemInvitation, "/redeem"),
    ];
    for (function, path) in posts {
        let response = t.send(function, Req::post(path).raw_json(&big).cookie("portal_session", &session)).await;
        assert_eq!(response.status(), 413, "{path}");
        assert_eq!(body_json(&response)["error"], "payload_too_large", "{path}");
    }
}

#[tokio::test]
async fn a_browsers_refused_form_comes_back_with_what_was_sent_and_never_the_password() {
    let t = test_portal(&[]);
    let csrf = "c".repeat(43);
    let sent = [("email", "ada@example.com"), ("first_name", "Ada"), ("last_name", ""), ("password", "short")];
    let response = t.send(&Register, Req::post("/register").form(&sent, &csrf)).await;
    assert_eq!(response.status(), 400);
    let page = body_text(&response);
    assert!(page.contains("value=\"ada@example.com\""), "the email is shown again");
    assert!(page.contains("data-field=\"last_name\""), "the blank name is blamed");
    assert!(page.contains("data-field=\"password\""), "the short password is blamed");
    assert!(!page.contains("value=\"short\""), "the password is never shown again");
}

/// A failed sign-in from the front end `shape` (an event file of `events/` with its client's
/// address and forwarded-for header replaced).
fn failed_sign_in(shape_file: &str, address: &str, forwarded_for: &str) -> lambda_http::Request {
    let path = events_dir().join(shape_file);
    let mut event: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    if let Some(identity) = event.pointer_mut("/requestContext/identity") {
        identity["sourceIp"] = json!(address);
    }
    event["headers"]["x-forwarded-for"] = json!(forwarded_for);
    event["httpMethod"] = json!("POST");
    event["path"] = json!("/signin");
    event["headers"]["content-type"] = json!("application/json");
    event["headers"]["accept"] = json!("application/json");
    event["body"] = json!(r#"{"login":"nobody@example.com","password":"Analytical-Engine-1843-Notes"}"#);
    event["multiValueHeaders"] = serde_json::Value::Null;
    lambda_http::request::from_str(&event.to_string()).expect("an event lambda_http reads")
}

#[tokio::test]
async fn each_front_end_gives_the_clients_own_address() {
    let t = test_portal(&[("PORTAL_FAILURES_PER_ADDRESS_PER_HOUR", "1")]);
    let status = |response: HttpResponse| response.status().as_u16();
    // REST API: the request context's source address, whatever the client put in X-Forwarded-For.
    let rest = "sign-in/post-json-unknown-login-rest-api.json";
    assert_eq!(status(t.call(&SignIn, failed_sign_in(rest, "198.51.100.61", "10.0.0.1")).await), 401);
    assert_eq!(status(t.call(&SignIn, failed_sign_in(rest, "198.51.100.61", "10.0.0.2")).await), 429);
    assert_eq!(status(t.call(&SignIn, failed_sign_in(rest, "198.51.100.62", "198.51.100.61")).await), 401);
    // ALB: the last X-Forwarded-For entry (the one the load balancer added), not a claimed first one.
    let alb = "profile/get-profile-json-no-session-alb.json";
    let forwarded = |claimed: &str, real: &str| format!("{claimed}, {real}");
    let first = t.call(&SignIn, failed_sign_in(alb, "", &forwarded("203.0.113.1", "198.51.100.71"))).await;
    assert_eq!(status(first), 401);
    let spoofed = t.call(&SignIn, failed_sign_in(alb, "", &forwarded("203.0.113.2", "198.51.100.71"))).await;
    assert_eq!(status(spoofed), 429, "a different claimed address is still the same client");
    let other = t.call(&SignIn, failed_sign_in(alb, "", &forwarded("198.51.100.71", "198.51.100.72"))).await;
    assert_eq!(status(other), 401);
}

#[tokio::test]
async fn a_rest_api_stage_is_not_part_of_the_route() {
    let t = test_portal(&[]);
    let page = t.call(&SignIn, event("sign-in/get-signin-rest-api.json")).await;
    assert_eq!(page.status(), 200, "GET /signin under the Prod stage");
    let form_action = body_text(&page).contains("action=\"/signin\"");
    assert!(form_action, "links and forms stay at the root of the domain");
}

#[tokio::test]
async fn a_path_parameter_that_cannot_be_read_names_nothing() {
    let t = test_portal(&[]);
    let registered = t.send(&Register, Req::post("/register").json(registration("admin@example.com"))).await;
    let session = cookie_value(&registered, "portal_session").unwrap();
    let mut admin = t.contacts.all().remove(0);
    admin.roles = vec!["Administrators".into()];
    t.contacts.put(admin);
    for path in ["/admin/invitations/%FF%FE", "/admin/invitations/%FF/resend", "/admin/invitations/%C0/revoke"] {
        let req = if path.ends_with("invitations/%FF%FE") { Req::get(path) } else { Req::post(path).json(json!({})) };
        let response = t.send(&CreateInvitation, req.cookie("portal_session", &session)).await;
        assert_eq!(response.status(), 404, "{path}: {}", body_text(&response));
        assert_eq!(
            body_json(&response)["error"],
            "not_found",
            "{path}: the contract's JSON, not a plain-text rejection"
        );
    }
}

#[tokio::test]
async fn pages_take_their_style_and_script_from_versioned_cacheable_files_and_nothing_inline() {
    use portal::web::assets::{PASSKEY_SCRIPT, STYLESHEET};
    let t = test_portal(&[]);
    let page = t.send(&SignIn, Req::get("/signin").html()).await;
    let html = body_text(&page);
    let (css, js) = (STYLESHEET.href(), PASSKEY_SCRIPT.href());
    for (href, extension) in [(&css, ".css"), (&js, ".js")] {
        let name = href.strip_prefix("/assets/").unwrap();
        let parts: Vec<&str> = name.split('.').collect();
        assert!(parts.len() == 3 && parts[1].len() == 16 && href.ends_with(extension), "{href}");
    }
    assert!(html.contains(&format!("<link rel=\"stylesheet\" href=\"{css}\">")), "{html}");
    assert!(html.contains(&format!("<script src=\"{js}\" defer></script>")), "{html}");
    assert!(!html.contains("<style") && !html.contains(" style="), "no inline style: {html}");
    let policy = page.headers()["content-security-policy"].to_str().unwrap();
    assert!(policy.contains("style-src 'self'") && !policy.contains("unsafe-inline"), "{policy}");

    for (href, content_type, holds) in [
        (&css, "text/css; charset=utf-8", "main.workspace"),
        (&js, "text/javascript; charset=utf-8", "navigator.credentials"),
    ] {
        let file = t.send(&SignIn, Req::get(href)).await;
        assert_eq!(file.status(), 200, "{href}");
        assert_eq!(file.headers()["content-type"], content_type);
        assert_eq!(file.headers()["cache-control"], "public, max-age=31536000, immutable");
        assert!(body_text(&file).contains(holds), "{href}");
    }
    // An address of no current file (an old version, a guess) is the contract's 404.
    for gone in ["/assets/portal.0000000000000000.css", "/assets/passwd", "/assets/..%2Fportal.css"] {
        let response = t.send(&SignIn, Req::get(gone)).await;
        assert_eq!(response.status(), 404, "{gone}");
    }
    // The script at the contract's own address is revalidated (its content changes under it).
    let script = t.send(&SignIn, Req::get("/signin/passkey.js")).await;
    assert_eq!(script.status(), 200);
    assert_eq!(script.headers()["cache-control"], "no-cache");
}

/// A program that posts a form and asks for JSON gets JSON, its errors included, on every route
/// a form reaches (a seeded run of hostile requests once found HTML errors on these seven).
#[tokio::test]
async fn a_form_that_asks_for_json_gets_its_answer_in_json_on_every_form_route() {
    let t = test_portal(&[]);
    let routes: [(&dyn HttpFunction, &str); 7] = [
        (&SignIn, "/signin"),
        (&RedeemInvitation, "/redeem"),
        (&SignIn, "/signout"),
        (&Register, "/register"),
        (&Register, "/confirm-email"),
        (&SignIn, "/reset-password"),
        (&SignIn, "/forgot-password"),
    ];
    for (function, path) in routes {
        // No anti-CSRF token (403), then a token but fields that cannot be right (4xx).
        let without_token = Req::post(path).form_fields(&[("login", "x")]).header("accept", "application/json");
        let with_token = Req::post(path)
            .form(&[("login", ""), ("password", ""), ("code", "%%%"), ("token", "")], &"c".repeat(43))
            .header("accept", "application/json");
        for (case, req) in [("no token", without_token), ("bad fields", with_token)] {
            let response = t.send(function, req).await;
            let status = response.status().as_u16();
            if path == "/signout" && case == "bad fields" {
                assert_eq!(status, 204, "signing out without a session is done, with no body");
                continue;
            }
            assert!((400..500).contains(&status), "{path} {case}: {status}");
            let content_type = response.headers()["content-type"].to_str().unwrap().to_string();
            assert!(content_type.starts_with("application/json"), "{path} {case}: {content_type}");
            let body = body_json(&response);
            assert!(body["error"].is_string() && body["message"].is_string(), "{path} {case}: {body}");
        }
    }
    // A browser's form (it accepts HTML) still gets its page.
    let page = t.send(&SignIn, Req::post("/signin").form_fields(&[("login", "x")])).await;
    assert!(page.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
}
