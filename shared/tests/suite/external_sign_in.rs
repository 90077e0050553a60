//! Handler tests of sign-in with an OpenID Connect provider (a fake provider, in-memory adapters):
//! a new identity registers and signs in through the door, a known one signs in to its account;
//! replayed, forged, other-browser, refused and bad-token callbacks all answer
//! `invalid_credentials` with an audit entry; closed registration and an address in use answer
//! `no_account`; `link_verified_email`, `trust_mfa` and the account's second factor are honoured;
//! linking needs re-authentication and an identity belongs to one account; the last way in cannot
//! be unlinked; a deleted account frees its identities.

use portal::domain::event::Fact;
use portal::handlers::external::ExternalSignIn;
use portal::handlers::profile::Profile;
use portal::usecases::door::Way;
use portal::web::reply::ThroughTheDoor;
use portal_testkit::oidc::identity;
use portal_testkit::two_factor::{ADA, as_viewer, profile_post, register_ada};
use portal_testkit::*;
use serde_json::{Value, json};

const BINDING: &str = "portal_external";

/// Begins a trip (its request), returns (the provider's URL, the binding cookie).
async fn begin(t: &TestPortal, req: Req) -> (String, String) {
    let response = t.send(&ExternalSignIn, req).await;
    assert_eq!(response.status(), 302, "{}", body_text(&response));
    let location = location(&response).expect("to the provider");
    assert!(location.starts_with("https://idp.example/authorize?"), "{location}");
    for param in ["code_challenge=", "code_challenge_method=S256", "nonce=", "state="] {
        assert!(location.contains(param), "{location} has {param}");
    }
    let cookie = set_cookies(&response).into_iter().find(|c| c.starts_with(BINDING)).expect("the binding cookie");
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"), "{cookie}");
    (location, cookie_value(&response, BINDING).unwrap())
}

/// Signs in at the provider as `who` and comes back with this browser's cookie.
async fn sign_in_as(t: &TestPortal, who: portal::domain::identity::ExternalIdentity) -> HttpResponse {
    let (location, browser) = begin(t, Req::get("/signin/external/example")).await;
    let back = t.provider.sign_in(&location, who);
    t.send(&ExternalSignIn, Req::get(&back).cookie(BINDING, &browser)).await
}

fn way_of(response: &HttpResponse) -> Option<Way> {
    cookie_value(response, "portal_session").filter(|v| !v.is_empty())?;
    Some(response.extensions().get::<ThroughTheDoor>().expect("the door's mark").0)
}

fn failures(t: &TestPortal) -> Vec<String> {
    let entries = t.contacts.audit_entries();
    let failed = entries.iter().filter(|e| e.kind == "external_sign_in_failed");
    failed.map(|e| e.detail["reason"].to_string()).collect()
}

#[tokio::test]
async fn a_new_identity_registers_and_signs_in_through_the_door_and_then_signs_in_to_that_account() {
    let t = test_portal(&[]);
    let first = sign_in_as(&t, identity("olive-1", "olive@example.com")).await;
    assert_eq!(first.status(), 200, "{}", body_text(&first));
    assert_eq!(way_of(&first), Some(Way::External));
    assert_eq!(body_json(&first)["email"], "olive@example.com");
    let olive = t.contacts.all().into_iter().find(|c| c.email.as_str() == "olive@example.com").unwrap();
    assert!(olive.password_hash.is_none() && olive.email_confirmed, "no password; the provider verified the address");
    assert_eq!((olive.first_name.as_str(), olive.last_name.as_str()), ("Olive", "Ida"));
    assert_eq!(olive.identities.len(), 1);
    assert_eq!((olive.identities[0].provider.as_str(), olive.identities[0].subject.as_str()), ("example", "olive-1"));
    let registered: Vec<_> = t.outbox.events().into_iter().filter(|e| e.detail_type() == "ContactRegistered").collect();
    assert_eq!(
        registered[0].fact,
        Fact::ContactRegistered { contact_id: olive.contact_id.clone(), method: "external:example".into() }
    );
    let entries = t.contacts.audit_entries();
    let signed_in = entries.iter().find(|e| e.kind == "signed_in").unwrap();
    assert_eq!(signed_in.detail["method"], "external:example");
    assert!(entries.iter().any(|e| e.kind == "identity_linked"));

    // The same identity again: the same account, and a browser goes where it asked to.
    let (location, browser) = begin(&t, Req::get("/signin/external/example?return_to=/profile/security").html()).await;
    let back = t.provider.sign_in(&location, identity("olive-1", "olive@example.com"));
    let again = t.send(&ExternalSignIn, Req::get(&back).cookie(BINDING, &browser).html()).await;
    assert_eq!(again.status(), 303, "{}", body_text(&again));
    assert_eq!(location_of(&again), "/profile/security");
    assert_eq!(t.contacts.all().len(), 1, "no second account");
    let session = cookie_value(&again, "portal_session").unwrap();
    let sessions = t.send(&Profile, as_viewer(Req::get("/profile/sessions"), &session)).await;
    assert_eq!(body_json(&sessions)["sessions"][0]["method"], "external:example");
}

fn location_of(response: &HttpResponse) -> String {
    location(response).unwrap_or_default()
}

#[tokio::test]
async fn replayed_forged_other_browser_refused_and_bad_token_callbacks_are_invalid_credentials_with_an_audit_entry() {
    let t = test_portal(&[]);
    let (location, browser) = begin(&t, Req::get("/signin/external/example")).await;
    let back = t.provider.sign_in(&location, identity("olive-1", "olive@example.com"));
    // Another browser (no binding cookie, or another's): refused, and the state is used up.
    let stolen = t.send(&ExternalSignIn, Req::get(&back).cookie(BINDING, &"x".repeat(43))).await;
    assert_eq!(stolen.status(), 401, "{}", body_text(&stolen));
    assert_eq!(body_json(&stolen)["error"], "invalid_credentials");
    let replayed = t.send(&ExternalSignIn, Req::get(&back).cookie(BINDING, &browser)).await;
    assert_eq!(replayed.status(), 401, "the state works once");
    // A forged state, none at all, a refused consent, a bad token, an unknown code.
    let forged = Req::get("/signin/external/example/callback?code=c&state=forged").cookie(BINDING, &browser);
    assert_eq!(t.send(&ExternalSignIn, forged).await.status(), 401);
    assert_eq!(t.send(&ExternalSignIn, Req::get("/signin/external/example/callback")).await.status(), 401);
    let (location, browser) = begin(&t, Req::get("/signin/external/example")).await;
    let refused = t.provider.refuse(&location);
    assert_eq!(t.send(&ExternalSignIn, Req::get(&refused).cookie(BINDING, &browser)).await.status(), 401);
    let (location, browser) = begin(&t, Req::get("/signin/external/example")).await;
    let back = t.provider.sign_in(&location, identity("olive-1", "olive@example.com"));
    t.provider.fail_next("Invalid audiences: `someone-else` is not a trusted audience");
    let bad_token = t.send(&ExternalSignIn, Req::get(&back).cookie(BINDING, &browser).html()).await;
    assert_eq!(bad_token.status(), 401);
    assert!(body_text(&bad_token).contains("<html"), "a page for a browser");
    assert!(t.contacts.all().is_empty(), "nobody was signed in or registered");
    assert!(t.sessions.all().is_empty());
    let reasons = failures(&t);
    assert_eq!(reasons.len(), 6, "{reasons:?}");
    for expected in ["another browser", "unknown, used or expired", "without its state", "access_denied", "audiences"] {
        assert!(reasons.iter().any(|r| r.contains(expected)), "{expected} in {reasons:?}");
    }
    // An expired trip: ten minutes.
    let (location, browser) = begin(&t, Req::get("/signin/external/example")).await;
    let back = t.provider.sign_in(&location, identity("olive-1", "olive@example.com"));
    t.clock.advance(601);
    assert_eq!(t.send(&ExternalSignIn, Req::get(&back).cookie(BINDING, &browser)).await.status(), 401);
    // An unknown provider is no page at all.
    assert_eq!(t.send(&ExternalSignIn, Req::get("/signin/external/nobody")).await.status(), 404);
}

#[tokio::test]
async fn without_open_registration_or_with_an_address_in_use_an_unknown_identity_has_no_account() {
    let closed = test_portal(&[("PORTAL_OPEN_REGISTRATION", "false")]);
    let refused = sign_in_as(&closed, identity("olive-1", "olive@example.com")).await;
    assert_eq!(refused.status(), 403, "{}", body_text(&refused));
    assert_eq!(body_json(&refused)["error"], "no_account");
    assert!(body_json(&refused)["message"].as_str().unwrap().contains("invitation"));
    assert!(closed.contacts.all().is_empty());

    // Ada's address, but linking by a verified email is off: no account made, none linked.
    let t = test_portal(&[]);
    register_ada(&t).await;
    let refused = sign_in_as(&t, identity("ada-at-idp", ADA)).await;
    assert_eq!(refused.status(), 403);
    assert_eq!(body_json(&refused)["error"], "no_account");
    assert!(t.contacts.all()[0].identities.is_empty());
}

fn linking_providers(trust_mfa: bool) -> String {
    json!([{"id":"example","name":"Example ID","issuer":"https://idp.example","client_id":"portal",
            "client_secret":"portal-secret","link_verified_email":true,"trust_mfa":trust_mfa}])
    .to_string()
}

#[tokio::test]
async fn a_verified_address_links_where_the_site_allows_it_and_the_accounts_second_factor_still_holds() {
    let providers = linking_providers(false);
    let t = test_portal(&[("PORTAL_OIDC_PROVIDERS", &providers)]);
    let session = register_ada(&t).await;
    // An unverified address never links.
    let mut unverified = identity("ada-at-idp", ADA);
    unverified.email_verified = false;
    assert_eq!(sign_in_as(&t, unverified).await.status(), 403);
    // Ada has TOTP: the provider is a first factor only.
    portal_testkit::two_factor::set_up_totp(&t, &session).await;
    let linked = sign_in_as(&t, identity("ada-at-idp", ADA)).await;
    assert_eq!(linked.status(), 200, "{}", body_text(&linked));
    assert_eq!(body_json(&linked)["status"], "second_factor_required");
    assert_eq!(cookie_value(&linked, "portal_session"), None, "no session before the second factor");
    let ada = t.contacts.all().into_iter().find(|c| c.email.as_str() == ADA).unwrap();
    assert_eq!(ada.identities.len(), 1, "linked by its verified address");
    // The provider's own MFA counts only where the site trusts it.
    let mut with_mfa = identity("ada-at-idp", ADA);
    with_mfa.mfa = true;
    assert_eq!(body_json(&sign_in_as(&t, with_mfa.clone()).await)["status"], "second_factor_required");
    let providers = linking_providers(true);
    let trusting = test_portal(&[("PORTAL_OIDC_PROVIDERS", &providers)]);
    let session = register_ada(&trusting).await;
    portal_testkit::two_factor::set_up_totp(&trusting, &session).await;
    let entered = sign_in_as(&trusting, with_mfa).await;
    assert_eq!(way_of(&entered), Some(Way::External), "{}", body_text(&entered));
}

/// Begins linking from Ada's session (with her password), signs in at the provider as `who`.
async fn link_as(t: &TestPortal, session: &str, who: portal::domain::identity::ExternalIdentity) -> HttpResponse {
    let req =
        as_viewer(Req::post("/profile/identities/example/link"), session).json(json!({"current_password": PASSWORD}));
    let (location, browser) = begin(t, req).await;
    let back = t.provider.sign_in(&location, who);
    t.send(&ExternalSignIn, Req::get(&back).cookie(BINDING, &browser)).await
}

#[tokio::test]
async fn linking_needs_re_authentication_an_identity_has_one_account_and_the_last_way_in_stays() {
    let t = test_portal(&[("PORTAL_EMAILS_PER_RECIPIENT_PER_HOUR", "100")]);
    let session = register_ada(&t).await;
    let without = as_viewer(Req::post("/profile/identities/example/link"), &session).json(json!({}));
    let refused = t.send(&ExternalSignIn, without).await;
    assert_eq!(refused.status(), 400, "{}", body_text(&refused));
    assert!(body_json(&refused)["fields"]["current_password"].is_string());
    let anonymous = Req::post("/profile/identities/example/link").json(json!({"current_password": PASSWORD}));
    assert_eq!(t.send(&ExternalSignIn, anonymous).await.status(), 401);

    let linked = link_as(&t, &session, identity("ada-at-idp", "ada.work@example.com")).await;
    assert_eq!(linked.status(), 200, "{}", body_text(&linked));
    assert_eq!(cookie_value(&linked, "portal_session"), None, "linking is no sign-in");
    let listed = t.send(&Profile, as_viewer(Req::get("/profile/identities"), &session)).await;
    let body = body_json(&listed);
    assert_eq!(body["identities"][0]["provider"], "example");
    assert_eq!(body["identities"][0]["subject"], "ada-at-idp");
    assert_eq!(body["identities"][0]["email"], "ada.work@example.com");
    assert_eq!(body["providers"], json!([{"id": "example", "name": "Example ID"}]));
    // The identity now signs in to Ada's account.
    let entered = sign_in_as(&t, identity("ada-at-idp", "ada.work@example.com")).await;
    assert_eq!(body_json(&entered)["email"], ADA);

    // Bea cannot link Ada's identity.
    let bea = t
        .send(&portal::handlers::register::Register, Req::post("/register").json(registration("bea@example.com")))
        .await;
    let bea = cookie_value(&bea, "portal_session").unwrap();
    let taken = link_as(&t, &bea, identity("ada-at-idp", "ada.work@example.com")).await;
    assert_eq!(taken.status(), 400, "{}", body_text(&taken));
    assert_eq!(body_json(&taken)["fields"]["identity"], "belongs to another account");

    // Unlinking: re-authentication, then 204.
    let unlink = |body| as_viewer(Req::post("/profile/identities/example/unlink"), &session).json(body);
    let no_password = t.send(&Profile, unlink(json!({"subject": "ada-at-idp"}))).await;
    assert_eq!(no_password.status(), 400);
    let wrong = t.send(&Profile, unlink(json!({"subject": "someone", "current_password": PASSWORD}))).await;
    assert_eq!(body_json(&wrong)["fields"]["subject"], "is not an identity linked to your account");
    let unlinked = t.send(&Profile, unlink(json!({"subject": "ada-at-idp", "current_password": PASSWORD}))).await;
    assert_eq!(unlinked.status(), 204, "{}", body_text(&unlinked));
    let entries = t.contacts.audit_entries();
    assert!(entries.iter().any(|e| e.kind == "identity_unlinked"));

    // An account made by its identity has no password: that identity is its last way in.
    let olive = sign_in_as(&t, identity("olive-1", "olive@example.com")).await;
    let olive = cookie_value(&olive, "portal_session").unwrap();
    let last = as_viewer(Req::post("/profile/identities/example/unlink"), &olive).json(json!({"subject": "olive-1"}));
    let refused = t.send(&Profile, last).await;
    assert_eq!(refused.status(), 400);
    assert!(body_json(&refused)["fields"]["subject"].as_str().unwrap().contains("last way to sign in"));
}

#[tokio::test]
async fn a_deleted_account_frees_its_identity() {
    let t = test_portal(&[]);
    let session = register_ada(&t).await;
    assert_eq!(link_as(&t, &session, identity("ada-at-idp", "ada.work@example.com")).await.status(), 200);
    let deleted = profile_post(&t, &session, "/profile/delete", json!({"current_password": PASSWORD})).await;
    assert_eq!(deleted.status(), 202, "{}", body_text(&deleted));
    let tombstone = t.contacts.all().into_iter().find(|c| c.deleted_at.is_some()).unwrap();
    assert!(tombstone.identities.is_empty(), "the tombstone keeps no identity");
    // The identity is free: it makes a new account (open registration), not the tombstone's.
    let fresh = sign_in_as(&t, identity("ada-at-idp", "ada.work@example.com")).await;
    assert_eq!(fresh.status(), 200, "{}", body_text(&fresh));
    assert_ne!(body_json(&fresh)["contact_id"], tombstone.contact_id.as_str());
}

/// An administrator of `t` (Ada registered and made one); the session token.
async fn administrator(t: &TestPortal) -> String {
    let session = register_ada(t).await;
    let mut ada = t.contacts.all().into_iter().find(|c| c.email.as_str() == ADA).unwrap();
    ada.roles = vec!["Administrators".into()];
    t.contacts.put(ada);
    session
}

/// Invites `body`'s contact; returns the code of the invitation email.
async fn invitation_code(t: &TestPortal, admin: &str, body: serde_json::Value) -> String {
    let created = t
        .send(&portal::handlers::admin::CreateInvitation, as_viewer(Req::post("/admin/invitations").json(body), admin))
        .await;
    assert_eq!(created.status(), 201, "{}", body_text(&created));
    let mail = t.mailbox().await;
    let email = mail.iter().rev().find(|m| m.text.contains("/redeem?code=")).expect("the invitation email");
    let link = email.text.lines().find(|l| l.contains("/redeem?code=")).unwrap();
    link.split("code=").nth(1).unwrap().trim().to_string()
}

/// Redeems `code` with the provider as `who`: the answer at the callback, and the provider's URL.
async fn redeem_as(
    t: &TestPortal,
    code: &str,
    who: portal::domain::identity::ExternalIdentity,
) -> (HttpResponse, String) {
    let (location, browser) = begin(t, Req::post("/redeem/external/example").json(json!({"code": code}))).await;
    assert!(!location.contains(code), "the code never goes to the provider");
    let back = t.provider.sign_in(&location, who);
    (t.send(&ExternalSignIn, Req::get(&back).cookie(BINDING, &browser)).await, location)
}

#[tokio::test]
async fn an_invitation_is_redeemed_with_a_provider_onto_the_invited_contact_a_new_contact_or_a_linked_account() {
    let t = test_portal(&[("PORTAL_EMAILS_PER_RECIPIENT_PER_HOUR", "100")]);
    let admin = administrator(&t).await;
    // A single invitation: the invited contact takes the identity, the roles and the account.
    let single = json!({"email": "grace@example.com", "first_name": "Grace", "last_name": "Hopper",
                        "roles": ["Partners"], "account_id": "acme"});
    let code = invitation_code(&t, &admin, single).await;
    let (redeemed, _) = redeem_as(&t, &code, identity("grace-idp", "grace.h@corp.example")).await;
    assert_eq!(redeemed.status(), 201, "{}", body_text(&redeemed));
    assert_eq!(way_of(&redeemed), Some(Way::External));
    let body = body_json(&redeemed);
    assert_eq!((body["email"].as_str(), body["roles"].clone()), (Some("grace@example.com"), json!(["Partners"])));
    let grace = t.contacts.all().into_iter().find(|c| c.email.as_str() == "grace@example.com").unwrap();
    assert_eq!(grace.account_id.as_deref(), Some("acme"));
    assert!(grace.password_hash.is_none() && grace.email_confirmed);
    assert_eq!(grace.identities[0].subject, "grace-idp");
    let registered = t.outbox.events().into_iter().filter(|e| e.detail_type() == "ContactRegistered");
    let methods: Vec<_> = registered
        .filter_map(|e| match e.fact {
            Fact::ContactRegistered { contact_id, method } if contact_id == grace.contact_id => Some(method),
            _ => None,
        })
        .collect();
    assert_eq!(methods, ["external:example"]);
    // Redeeming (or linking) answers a form with a redirect to the provider: the pages' policy lets
    // forms go on there, and nowhere else.
    let page = t.send(&portal::handlers::redeem::RedeemInvitation, Req::get("/redeem").html()).await;
    let policy = page.headers()["content-security-policy"].to_str().unwrap().to_string();
    assert!(policy.contains("form-action 'self' https://idp.example;"), "{policy}");
    // The code is used up: a second trip with it is refused before it goes to the provider.
    let again = t.send(&ExternalSignIn, Req::post("/redeem/external/example").json(json!({"code": code}))).await;
    assert_eq!(again.status(), 400, "{}", body_text(&again));
    assert_eq!(body_json(&again)["error"], "invitation_invalid");

    // A group invitation: a new contact from the identity's claims.
    let group = json!({"type": "group", "email": "team@example.com", "first_name": "Team", "last_name": "Invite",
                       "max_redemptions": 5, "roles": ["Partners"]});
    let code = invitation_code(&t, &admin, group).await;
    let (redeemed, _) = redeem_as(&t, &code, identity("olive-1", "olive@example.com")).await;
    assert_eq!(redeemed.status(), 201, "{}", body_text(&redeemed));
    let olive = t.contacts.all().into_iter().find(|c| c.email.as_str() == "olive@example.com").unwrap();
    assert_eq!((olive.roles.clone(), olive.identities.len()), (vec!["Partners".to_string()], 1));
    // The same group code with an identity linked already: onto that account (Grace's), no new one.
    let (redeemed, _) = redeem_as(&t, &code, identity("grace-idp", "grace.h@corp.example")).await;
    assert_eq!(redeemed.status(), 200, "{}", body_text(&redeemed));
    assert_eq!(body_json(&redeemed)["contact_id"], grace.contact_id.as_str());
    let names: Vec<String> = t.contacts.all().into_iter().map(|c| c.email.as_str().to_string()).collect();
    assert_eq!(names.len(), 4, "Ada, Grace, the group's contact and Olive: {names:?}");
}

#[tokio::test]
async fn a_redemption_trip_is_refused_when_its_code_changed_or_the_account_owes_a_second_factor() {
    let t = test_portal(&[("PORTAL_EMAILS_PER_RECIPIENT_PER_HOUR", "100")]);
    let admin = administrator(&t).await;
    // Resent meanwhile: the trip's code is no longer the invitation's.
    let code =
        invitation_code(&t, &admin, json!({"email": "grace@example.com", "first_name": "G", "last_name": "H"})).await;
    let (location, browser) = begin(&t, Req::post("/redeem/external/example").json(json!({"code": code}))).await;
    let invitation = t.invitations.all().into_iter().next().unwrap();
    let resent = as_viewer(
        Req::post(&format!("/admin/invitations/{}/resend", invitation.invitation_id)).json(json!({})),
        &admin,
    );
    let resent = t.send(&portal::handlers::admin::CreateInvitation, resent).await;
    assert_eq!(resent.status(), 200, "{}", body_text(&resent));
    let back = t.provider.sign_in(&location, identity("grace-idp", "grace@example.com"));
    let refused = t.send(&ExternalSignIn, Req::get(&back).cookie(BINDING, &browser)).await;
    assert_eq!(body_json(&refused)["error"], "invitation_invalid", "{}", body_text(&refused));
    let grace = t.contacts.all().into_iter().find(|c| c.email.as_str() == "grace@example.com").unwrap();
    assert!(grace.identities.is_empty() && grace.roles.is_empty(), "nothing was written");

    // Ada (TOTP) linked her identity; redeeming with it would give roles with half a sign-in.
    assert_eq!(link_as(&t, &admin, identity("ada-at-idp", "ada.work@example.com")).await.status(), 200);
    let (_, _, admin) = portal_testkit::two_factor::set_up_totp(&t, &admin).await;
    let group = json!({"type": "group", "email": "team@example.com", "first_name": "T", "last_name": "I", "max_redemptions": 3, "roles": ["Partners"]});
    let code = invitation_code(&t, &admin, group).await;
    let (refused, _) = redeem_as(&t, &code, identity("ada-at-idp", "ada.work@example.com")).await;
    assert_eq!(refused.status(), 400, "{}", body_text(&refused));
    assert!(body_json(&refused)["fields"]["second_factor_code"].is_string());
    let ada = t.contacts.all().into_iter().find(|c| c.email.as_str() == ADA).unwrap();
    assert!(!ada.roles.contains(&"Partners".to_string()));
}

#[tokio::test]
async fn an_account_without_a_password_re_authenticates_with_an_emailed_code() {
    let t = test_portal(&[]);
    let olive = sign_in_as(&t, identity("olive-1", "olive@example.com")).await;
    let session = cookie_value(&olive, "portal_session").unwrap();
    let export = |body| as_viewer(Req::post("/profile/export"), &session).json(body);
    // The page asks for a code, not a password.
    let page = t.send(&Profile, as_viewer(Req::get("/profile/export").html(), &session)).await;
    let html = body_text(&page);
    assert!(html.contains("name=\"email_code\"") && !html.contains("name=\"current_password\""), "{html}");
    let missing = t.send(&Profile, export(json!({}))).await;
    assert_eq!(missing.status(), 400);
    assert!(body_json(&missing)["fields"]["email_code"].as_str().unwrap().contains("no password"));
    let asked =
        t.send(&Profile, as_viewer(Req::post("/profile/reauthentication-code").json(json!({})), &session)).await;
    assert_eq!(asked.status(), 202, "{}", body_text(&asked));
    let mail = t.mailbox().await;
    let text = &mail
        .iter()
        .rev()
        .find(|m| m.to == "olive@example.com" && m.subject == "Your sign-in code")
        .expect("a code to Olive")
        .text;
    let code = text.split_whitespace().find(|w| w.len() == 6 && w.chars().all(|c| c.is_ascii_digit())).unwrap();
    let wrong = t.send(&Profile, export(json!({"email_code": "000000"}))).await;
    assert_eq!(body_json(&wrong)["fields"]["email_code"], "is not the current code from your email");
    let exported = t.send(&Profile, export(json!({"email_code": code}))).await;
    assert_eq!(exported.status(), 200, "{}", body_text(&exported));
    let identities = &body_json(&exported)["identities"];
    assert_eq!(identities[0]["subject"], "olive-1", "the export holds the linked identity: {identities}");
    assert_eq!(body_json(&exported)["profile"]["email_undeliverable"], Value::Null);
    let again = t.send(&Profile, export(json!({"email_code": code}))).await;
    assert_eq!(again.status(), 400, "a code works once");
}

/// Asks for a re-authentication code for the session's account (Ada) and reads it from the mail.
async fn reauthentication_code(t: &TestPortal, session: &str) -> String {
    let asked = t.send(&Profile, as_viewer(Req::post("/profile/reauthentication-code").json(json!({})), session)).await;
    assert_eq!(asked.status(), 202, "{}", body_text(&asked));
    let mail = t.mailbox().await;
    let text = &mail.iter().rev().find(|m| m.to == ADA && m.subject == "Your sign-in code").expect("a code").text;
    text.split_whitespace().find(|w| w.len() == 6 && w.chars().all(|c| c.is_ascii_digit())).unwrap().to_string()
}

#[tokio::test]
async fn after_an_emailed_code_re_authentication_takes_no_emailed_second_factor() {
    use portal::domain::two_factor::email_code_digest;
    let t = test_portal(&[("PORTAL_EMAILS_PER_RECIPIENT_PER_HOUR", "20")]);
    let session = register_ada(&t).await;
    let (secret, _, session) = portal_testkit::two_factor::set_up_totp(&t, &session).await;
    // Ada has TOTP and emailed codes as second factors and no password (as an account made
    // through a provider has none), and holds an emailed second-factor code.
    let mut ada = t.contacts.all().into_iter().find(|c| c.email.as_str() == ADA).unwrap();
    ada.password_hash = None;
    t.contacts.put(ada.clone());
    let mut state = t.portal.two_factor.get(&ada.contact_id).await.unwrap();
    state.email = true;
    state.email_code = Some(email_code_digest(&ada.contact_id, "246810"));
    state.email_code_expires_at = Some(t.portal.clock.now() + 600);
    assert!(t.portal.two_factor.save(&state, None, &[]).await.unwrap());
    let export = |body: Value| as_viewer(Req::post("/profile/export"), &session).json(body);

    // The emailed code stands for the password; a second emailed code would be the same mailbox.
    let code = reauthentication_code(&t, &session).await;
    let refused = t.send(&Profile, export(json!({"email_code": code, "second_factor_code": "246810"}))).await;
    assert_eq!(refused.status(), 400, "{}", body_text(&refused));
    assert!(body_json(&refused)["fields"]["second_factor_code"].is_string(), "{}", body_text(&refused));
    // Her app's code is the second step.
    let code = reauthentication_code(&t, &session).await;
    let totp = portal_testkit::two_factor::totp_code(&t, &secret, 1);
    let exported = t.send(&Profile, export(json!({"email_code": code, "second_factor_code": totp}))).await;
    assert_eq!(exported.status(), 200, "{}", body_text(&exported));
}
