//! Edge protection (issue 19, item 4), on in-memory adapters: with `PORTAL_EDGE_SECRET` set (the
//! template sets it when CloudFront and AWS WAF stand in front of the API), a request without
//! CloudFront's `X-Portal-Edge` secret is refused on every route, and one with it is served with the
//! caller's address taken from `CloudFront-Viewer-Address` (what the allowances and the audit trail
//! key on); without the setting, neither header means anything.

use portal::handlers::register::Register;
use portal::handlers::sign_in::SignIn;
use portal_testkit::*;
use serde_json::json;

const SECRET: &str = "3f2b8c1e-5d4a-4e7b-9c1f-2a6d8e0b4c7f";

fn edge(req: Req) -> Req {
    req.header("x-portal-edge", SECRET)
}

#[tokio::test]
async fn only_requests_through_the_edge_are_served() {
    let t = test_portal(&[("PORTAL_EDGE_SECRET", SECRET)]);
    for req in [Req::get("/signin"), Req::get("/register").html(), Req::post("/signin").json(json!({}))] {
        let refused = t.send(&SignIn, req).await;
        assert_eq!(refused.status(), 403, "{}", body_text(&refused));
    }
    let json = t.send(&SignIn, Req::post("/signin").json(json!({"login": "a", "password": "b"}))).await;
    assert_eq!(body_json(&json)["error"], "forbidden");
    let wrong =
        t.send(&SignIn, Req::get("/signin").header("x-portal-edge", "3f2b8c1e-5d4a-4e7b-9c1f-2a6d8e0b4c7e")).await;
    assert_eq!(wrong.status(), 403, "a near miss is a miss");
    assert_eq!(t.send(&SignIn, edge(Req::get("/signin"))).await.status(), 200);
    assert_eq!(t.send(&Register, edge(Req::get("/register"))).await.status(), 200);
}

#[tokio::test]
async fn through_the_edge_the_caller_is_the_viewer_cloudfront_saw() {
    let t = test_portal(&[("PORTAL_EDGE_SECRET", SECRET)]);
    // API Gateway sees CloudFront's address; CloudFront says whose request it is.
    let viewer =
        |req: Req, address: &str| edge(req.sent_from("130.176.0.1")).header("cloudfront-viewer-address", address);
    let registered = t
        .send(&Register, viewer(Req::post("/register").json(registration("ada@example.com")), "203.0.113.9:51234"))
        .await;
    assert_eq!(registered.status(), 201, "{}", body_text(&registered));
    let signed_in = t
        .send(
            &SignIn,
            viewer(
                Req::post("/signin").json(json!({"login": "ada@example.com", "password": PASSWORD})),
                "2001:db8::7:443",
            ),
        )
        .await;
    assert_eq!(signed_in.status(), 200, "{}", body_text(&signed_in));
    let ips: Vec<String> = t.contacts.audit_entries().iter().map(|e| e.ip.clone()).collect();
    assert!(ips.contains(&"203.0.113.9".to_string()) && ips.contains(&"2001:db8::7".to_string()), "{ips:?}");
    assert!(!ips.contains(&"130.176.0.1".to_string()), "never CloudFront's own address: {ips:?}");
}

#[tokio::test]
async fn without_edge_protection_the_edge_headers_mean_nothing() {
    let t = test_portal(&[]);
    let registered = t
        .send(
            &Register,
            Req::post("/register")
                .json(registration("ada@example.com"))
                .header("cloudfront-viewer-address", "203.0.113.9:51234"),
        )
        .await;
    assert_eq!(registered.status(), 201);
    let ips: Vec<String> = t.contacts.audit_entries().iter().map(|e| e.ip.clone()).collect();
    assert!(ips.iter().all(|ip| ip == "198.51.100.7"), "a client cannot choose its address: {ips:?}");
}
