//! Handler tests for staff administering accounts (issue 22), on in-memory adapters: every action
//! and what it does to the account, its audit entry and its `AccountChanged` event, and every
//! refusal, for administrators and for account administrators scoped to their own account.

use portal::domain::contact::Contact;
use portal::handlers::admin::CreateInvitation;
use portal::handlers::profile::Profile;
use portal::handlers::register::Register;
use portal::handlers::sign_in::SignIn;
use portal::ports::TwoFactorStore;
use portal_testkit::*;
use serde_json::{Value, json};

const ADMIN: &str = "admin@example.com";
const ADA: &str = "ada@example.com";

/// Registers `email` (signed in); returns the session token and the contact.
async fn register(t: &TestPortal, email: &str) -> (String, Contact) {
    let response = t.send(&Register, Req::post("/register").json(registration(email))).await;
    assert_eq!(response.status(), 201, "{}", body_text(&response));
    let token = cookie_value(&response, "portal_session").unwrap();
    let contact = t.contacts.all().into_iter().find(|c| c.email.as_str() == email).unwrap();
    (token, contact)
}

/// Gives `contact` these roles and account, as stored.
fn arrange(t: &TestPortal, contact: &Contact, roles: &[&str], account_id: Option<&str>) -> Contact {
    let mut changed = t.contacts.all().into_iter().find(|c| c.contact_id == contact.contact_id).unwrap();
    changed.roles = roles.iter().map(|r| r.to_string()).collect();
    changed.account_id = account_id.map(str::to_string);
    t.contacts.put(changed.clone());
    changed
}

/// A portal with an administrator and Ada, both signed in: (portal, admin's token, Ada's token, Ada).
async fn with_admin_and_ada() -> (TestPortal, String, String, Contact) {
    let t = test_portal(&[("PORTAL_FAILURES_PER_ADDRESS_PER_HOUR", "1000")]);
    let (admin_token, admin) = register(&t, ADMIN).await;
    arrange(&t, &admin, &["Administrators"], None);
    let (ada_token, ada) = register(&t, ADA).await;
    (t, admin_token, ada_token, ada)
}

async fn act(t: &TestPortal, token: &str, contact: &Contact, action: &str, body: Value) -> HttpResponse {
    let path = format!("/admin/contacts/{}/{action}", contact.contact_id);
    t.send(&CreateInvitation, Req::post(&path).json(body).cookie("portal_session", token)).await
}

async fn get(t: &TestPortal, token: &str, path: &str) -> HttpResponse {
    t.send(&CreateInvitation, Req::get(path).cookie("portal_session", token)).await
}

async fn profile_status(t: &TestPortal, token: &str) -> u16 {
    t.send(&Profile, Req::get("/profile").cookie("portal_session", token)).await.status().as_u16()
}

async fn sign_in_status(t: &TestPortal, email: &str) -> u16 {
    let req = Req::post("/signin").json(json!({"login": email, "password": PASSWORD}));
    t.send(&SignIn, req).await.status().as_u16()
}

fn stored(t: &TestPortal, contact: &Contact) -> Contact {
    t.contacts.all().into_iter().find(|c| c.contact_id == contact.contact_id).unwrap()
}

/// The kinds of the audit entries about `contact`, oldest first.
fn audited(t: &TestPortal, contact: &Contact) -> Vec<String> {
    t.contacts
        .audit_entries()
        .into_iter()
        .filter(|e| e.contact_id.as_ref() == Some(&contact.contact_id))
        .map(|e| e.kind)
        .collect()
}

/// The actions of the `AccountChanged` events queued about `contact`, sorted by name (each as
/// often as it was queued).
fn account_changes(t: &TestPortal, contact: &Contact) -> Vec<String> {
    let mut actions: Vec<String> = t
        .outbox
        .events()
        .into_iter()
        .filter(|e| e.detail_type() == "AccountChanged" && e.detail()["contact_id"] == contact.contact_id.as_str())
        .map(|e| e.detail()["action"].as_str().unwrap().to_string())
        .collect::<Vec<_>>();
    actions.sort();
    actions
}

#[tokio::test]
async fn disabling_ends_the_sessions_and_shuts_every_way_in_until_enabled() {
    let (t, admin, ada_session, ada) = with_admin_and_ada().await;
    let disabled = act(&t, &admin, &ada, "disable", json!({})).await;
    assert_eq!(disabled.status(), 200, "{}", body_text(&disabled));
    assert_eq!(body_json(&disabled)["login_enabled"], false);
    assert_eq!(profile_status(&t, &ada_session).await, 401, "her session ended at once");
    assert_eq!(sign_in_status(&t, ADA).await, 401, "the right password opens nothing");
    let enabled = act(&t, &admin, &ada, "enable", json!({})).await;
    assert_eq!(body_json(&enabled)["login_enabled"], true);
    assert_eq!(sign_in_status(&t, ADA).await, 200);
    let kinds = audited(&t, &ada);
    assert!(kinds.ends_with(&["sign_in_failed".into(), "account_enabled".into(), "signed_in".into()]), "{kinds:?}");
    assert!(kinds.contains(&"account_disabled".to_string()));
    assert_eq!(account_changes(&t, &ada), ["disable", "enable"]);
    let entry = t.contacts.audit_entries().into_iter().find(|e| e.kind == "account_disabled").unwrap();
    let admin_id = t.contacts.all().into_iter().find(|c| c.email.as_str() == ADMIN).unwrap().contact_id;
    assert_eq!(entry.actor_id, Some(admin_id), "the administrator acted");
}

#[tokio::test]
async fn signing_out_everywhere_unlocking_and_roles_take_effect_at_once() {
    let (t, admin, ada_session, ada) = with_admin_and_ada().await;
    let out = act(&t, &admin, &ada, "sign-out-everywhere", json!({})).await;
    assert_eq!(out.status(), 204);
    assert_eq!(profile_status(&t, &ada_session).await, 401);

    for _ in 0..5 {
        let req = Req::post("/signin").json(json!({"login": ADA, "password": "Wrong-Guess-Walrus-Orbit-1"}));
        t.send(&SignIn, req).await;
    }
    assert_eq!(sign_in_status(&t, ADA).await, 401, "locked");
    assert!(audited(&t, &ada).contains(&"locked_out".to_string()));
    let unlocked = act(&t, &admin, &ada, "unlock", json!({})).await;
    assert_eq!(body_json(&unlocked)["locked_until"], Value::Null);
    assert_eq!(sign_in_status(&t, ADA).await, 200);

    let roles =
        act(&t, &admin, &ada, "roles", json!({"roles": ["Customers", "Partners"], "account_id": "acct-1"})).await;
    assert_eq!(roles.status(), 200, "{}", body_text(&roles));
    assert_eq!(
        (body_json(&roles)["roles"].clone(), body_json(&roles)["account_id"].clone()),
        (json!(["Customers", "Partners"]), json!("acct-1"))
    );
    assert_eq!(stored(&t, &ada).roles, ["Customers", "Partners"]);
    let bad = act(&t, &admin, &ada, "roles", json!({"roles": ["r".repeat(65)]})).await;
    assert_eq!(bad.status(), 400);
    assert!(body_json(&bad)["fields"]["roles"].is_string());
    assert_eq!(account_changes(&t, &ada), ["roles", "sign-out-everywhere", "unlock"]);
}

#[tokio::test]
async fn a_staff_reset_sends_a_link_and_can_block_the_current_password() {
    let (t, admin, _, ada) = with_admin_and_ada().await;
    t.mailbox().await;
    let sent = act(&t, &admin, &ada, "reset-password", json!({"block_current_password": true})).await;
    assert_eq!(sent.status(), 202, "{}", body_text(&sent));
    assert!(stored(&t, &ada).password_hash.is_none(), "the current password stopped working");
    assert_eq!(sign_in_status(&t, ADA).await, 401);
    let mail = t.mailbox().await;
    assert!(mail.iter().any(|m| m.to == ADA && m.text.contains("/reset-password")), "a reset link went out: {mail:?}");
    assert!(audited(&t, &ada).contains(&"password_reset_by_staff".to_string()));
}

#[tokio::test]
async fn a_two_factor_reset_removes_the_factors_and_tells_the_person() {
    let (t, admin, ada_session, ada) = with_admin_and_ada().await;
    portal_testkit::two_factor::set_up_totp(&t, &ada_session).await;
    assert!(t.two_factor.get(&ada.contact_id).await.unwrap().totp.is_some());
    t.mailbox().await;
    let reset = act(&t, &admin, &ada, "reset-two-factor", json!({})).await;
    assert_eq!(reset.status(), 200, "{}", body_text(&reset));
    let view = body_json(&reset);
    assert_eq!(view["two_factor"], json!({"totp": false, "email": false, "recovery_codes_left": 0}));
    assert_eq!(sign_in_status(&t, ADA).await, 200, "no second step any more");
    let mail = t.mailbox().await;
    let told = mail
        .iter()
        .any(|m| m.to == ADA && m.text.contains("two-factor authentication") && m.text.contains("reset by staff"));
    assert!(told, "she was told: {mail:?}");
}

#[tokio::test]
async fn the_account_page_shows_its_state_and_latest_entries_newest_first() {
    let (t, admin, _, ada) = with_admin_and_ada().await;
    act(&t, &admin, &ada, "disable", json!({})).await;
    let view = get(&t, &admin, &format!("/admin/contacts/{}", ada.contact_id)).await;
    assert_eq!(view.status(), 200);
    let body = body_json(&view);
    assert_eq!(body["email"], ADA);
    assert_eq!(body["login_enabled"], false);
    assert_eq!(body["passkeys"], 0);
    assert!(body["last_sign_in_at"].is_string(), "registration signed her in");
    let kinds: Vec<&str> = body["audit"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds.first(), Some(&"account_disabled"), "{kinds:?}");
    let page = t
        .send(
            &CreateInvitation,
            Req::get(&format!("/admin/contacts/{}", ada.contact_id)).html().cookie("portal_session", &admin),
        )
        .await;
    assert_eq!(page.status(), 200);
    let html = body_text(&page);
    assert!(html.contains("Enable sign-in") && !html.contains("Disable sign-in"), "the actions that apply");
    assert!(html.contains("account disabled"));
}

#[tokio::test]
async fn the_audit_trail_filters_and_pages_and_refuses_what_it_cannot_read() {
    let (t, admin, _, ada) = with_admin_and_ada().await;
    for action in ["disable", "enable", "unlock"] {
        act(&t, &admin, &ada, action, json!({})).await;
    }
    let page = |query: String| {
        let t = &t;
        let admin = admin.clone();
        async move { get(t, &admin, &format!("/admin/audit?{query}")).await }
    };
    let first = body_json(&page(format!("contact_id={}&limit=2", ada.contact_id)).await);
    let kinds: Vec<&str> = first["entries"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["account_unlocked", "account_enabled"]);
    let cursor = first["next_cursor"].as_str().unwrap().to_string();
    let second = body_json(&page(format!("contact_id={}&limit=2&cursor={cursor}", ada.contact_id)).await);
    assert_eq!(second["entries"][0]["kind"], "account_disabled");
    let only = body_json(&page("kind=account_enabled".into()).await);
    assert_eq!(only["entries"].as_array().unwrap().len(), 1);
    for bad in ["kind=DROP%20TABLE", "contact_id=%3Cx%3E", "cursor=nonsense", "limit=0"] {
        assert_eq!(page(bad.into()).await.status(), 400, "{bad}");
    }
}

#[tokio::test]
async fn people_who_are_not_staff_reach_nothing_and_unknown_things_are_not_found() {
    let (t, admin, ada_session, ada) = with_admin_and_ada().await;
    assert_eq!(get(&t, &ada_session, &format!("/admin/contacts/{}", ada.contact_id)).await.status(), 403);
    assert_eq!(act(&t, &ada_session, &ada, "disable", json!({})).await.status(), 403);
    assert_eq!(get(&t, &ada_session, "/admin/audit").await.status(), 403);
    assert!(!stored(&t, &ada).login_disabled);
    assert_eq!(act(&t, &admin, &ada, "frobnicate", json!({})).await.status(), 404);
    assert_eq!(get(&t, &admin, "/admin/contacts/no-such-contact").await.status(), 404);
    let admin_contact = t.contacts.all().into_iter().find(|c| c.email.as_str() == ADMIN).unwrap();
    let own = act(&t, &admin, &admin_contact, "disable", json!({})).await;
    assert_eq!(own.status(), 403, "nobody shuts themselves out");
    assert!(t.contacts.audit_entries().iter().all(|e| !e.kind.starts_with("account_")));
}

#[tokio::test]
async fn account_administrators_act_only_on_their_own_accounts_people() {
    let (t, admin, _, ada) = with_admin_and_ada().await;
    let (boss_session, boss) = register(&t, "boss@example.com").await;
    arrange(&t, &boss, &["Account Administrators", "Customers"], Some("acct-x"));
    let ada = arrange(&t, &ada, &["Customers"], Some("acct-x"));
    let (_, other) = register(&t, "other@example.com").await;
    let other = arrange(&t, &other, &[], Some("acct-y"));
    let admin_contact = t.contacts.all().into_iter().find(|c| c.email.as_str() == ADMIN).unwrap();
    arrange(&t, &admin_contact, &["Administrators"], Some("acct-x"));

    assert_eq!(get(&t, &boss_session, &format!("/admin/contacts/{}", ada.contact_id)).await.status(), 200);
    assert_eq!(get(&t, &boss_session, &format!("/admin/contacts/{}", other.contact_id)).await.status(), 404);
    assert_eq!(
        get(&t, &boss_session, &format!("/admin/contacts/{}", admin_contact.contact_id)).await.status(),
        404,
        "never staff"
    );
    let listed = body_json(&get(&t, &boss_session, "/admin/contacts").await);
    let emails: Vec<&str> =
        listed["contacts"].as_array().unwrap().iter().map(|c| c["email"].as_str().unwrap()).collect();
    assert!(emails.contains(&ADA) && !emails.contains(&"other@example.com") && !emails.contains(&ADMIN), "{emails:?}");

    assert_eq!(act(&t, &boss_session, &ada, "disable", json!({})).await.status(), 200);
    assert_eq!(act(&t, &boss_session, &other, "disable", json!({})).await.status(), 404);
    assert_eq!(act(&t, &boss_session, &ada, "roles", json!({"roles": []})).await.status(), 403);
    assert_eq!(act(&t, &boss_session, &ada, "reset-two-factor", json!({})).await.status(), 403);
    assert_eq!(get(&t, &boss_session, "/admin/audit").await.status(), 403);
    assert!(!stored(&t, &other).login_disabled);

    let invite = |body: Value| {
        let t = &t;
        let token = boss_session.clone();
        async move {
            t.send(&CreateInvitation, Req::post("/admin/invitations").json(body).cookie("portal_session", &token)).await
        }
    };
    let person = json!({"email": "new@example.com", "first_name": "New", "last_name": "Person"});
    let mut elsewhere = person.clone();
    elsewhere["account_id"] = json!("acct-y");
    assert_eq!(invite(elsewhere).await.status(), 403);
    let mut promoted = person.clone();
    promoted["roles"] = json!(["Administrators"]);
    assert_eq!(invite(promoted).await.status(), 403);
    assert_eq!(invite(json!({"contact_id": other.contact_id.as_str()})).await.status(), 404);
    let mut held = person.clone();
    held["roles"] = json!(["Customers"]);
    let created = invite(held).await;
    assert_eq!(created.status(), 201, "{}", body_text(&created));
    assert_eq!(body_json(&created)["account_id"], "acct-x", "their own account by default");
    assert_eq!(get(&t, &admin, "/admin/audit").await.status(), 200);

    // Their account's invitations, and no other's.
    let theirs = body_json(&created)["invitation_id"].as_str().unwrap().to_string();
    let req = Req::post("/admin/invitations")
        .json(json!({"contact_id": other.contact_id.as_str(), "account_id": "acct-y"}))
        .cookie("portal_session", &admin);
    let foreign = body_json(&t.send(&CreateInvitation, req).await)["invitation_id"].as_str().unwrap().to_string();
    assert_eq!(get(&t, &boss_session, &format!("/admin/invitations/{theirs}")).await.status(), 200);
    assert_eq!(get(&t, &boss_session, &format!("/admin/invitations/{foreign}")).await.status(), 404);
    let revoke = Req::post(&format!("/admin/invitations/{foreign}/revoke")).json(json!({}));
    assert_eq!(t.send(&CreateInvitation, revoke.cookie("portal_session", &boss_session)).await.status(), 404);
    let listed = body_json(&get(&t, &boss_session, "/admin/invitations").await);
    let ids: Vec<&str> =
        listed["invitations"].as_array().unwrap().iter().map(|i| i["invitation_id"].as_str().unwrap()).collect();
    assert_eq!(ids, [theirs.as_str()]);
}

#[tokio::test]
async fn staff_changes_to_contacts_and_invitations_are_in_the_audit_trail() {
    let (t, admin, _, ada) = with_admin_and_ada().await;
    let post = |path: &str, body: Value| Req::post(path).json(body).cookie("portal_session", &admin);
    let created = t
        .send(
            &CreateInvitation,
            post("/admin/contacts", json!({"email": "new@example.com", "first_name": "N", "last_name": "P"})),
        )
        .await;
    assert_eq!(created.status(), 201);
    let invited =
        t.send(&CreateInvitation, post("/admin/invitations", json!({"contact_id": ada.contact_id.as_str()}))).await;
    let id = body_json(&invited)["invitation_id"].as_str().unwrap().to_string();
    assert_eq!(
        t.send(&CreateInvitation, post(&format!("/admin/invitations/{id}/resend"), json!({}))).await.status(),
        200
    );
    assert_eq!(
        t.send(&CreateInvitation, post(&format!("/admin/invitations/{id}/revoke"), json!({}))).await.status(),
        200
    );
    let group = json!({"type": "group", "contact_ids": [ada.contact_id.as_str()]});
    assert_eq!(t.send(&CreateInvitation, post("/admin/invitations", group)).await.status(), 201);
    let csv = Req::post("/admin/imports").raw("text/csv", "email\nrow@example.com\n").cookie("portal_session", &admin);
    assert_eq!(t.send(&CreateInvitation, csv).await.status(), 202);

    let admin_id = t.contacts.all().into_iter().find(|c| c.email.as_str() == ADMIN).unwrap().contact_id;
    let by_admin: Vec<String> = t
        .contacts
        .audit_entries()
        .into_iter()
        .filter(|e| e.actor_id.as_ref() == Some(&admin_id) && e.kind != "signed_in")
        .map(|e| e.kind)
        .collect();
    assert_eq!(
        by_admin,
        [
            "contact_created",
            "invitation_created",
            "invitation_resent",
            "invitation_revoked",
            "invitation_created",
            "import_started"
        ]
    );
    let about_ada = audited(&t, &ada);
    assert!(about_ada.contains(&"invitation_resent".to_string()), "{about_ada:?}");
}

#[tokio::test]
async fn staff_delete_an_account_as_the_person_can_but_never_their_own_nor_as_account_administrators() {
    let (t, admin_token, ada_token, ada) = with_admin_and_ada().await;
    let admin = t.contacts.all().into_iter().find(|c| c.email.as_str() == ADMIN).unwrap();
    assert_eq!(act(&t, &admin_token, &admin, "delete", json!({})).await.status(), 403, "not oneself");
    let (grace_token, grace) = register(&t, "grace@example.com").await;
    arrange(&t, &grace, &["Account Administrators"], Some("acct-1"));
    arrange(&t, &ada, &[], Some("acct-1"));
    assert_eq!(act(&t, &grace_token, &ada, "delete", json!({})).await.status(), 403, "not delegated");

    let deleted = act(&t, &admin_token, &ada, "delete", json!({})).await;
    assert_eq!(deleted.status(), 200, "{}", body_text(&deleted));
    let view = body_json(&deleted);
    assert!(view["deleted_at"].is_string() && view["email"] == "" && view["login_enabled"] == false, "{view}");
    assert_eq!(profile_status(&t, &ada_token).await, 401);
    assert_eq!(sign_in_status(&t, ADA).await, 401);
    assert!(stored(&t, &ada).deleted_at.is_some());
    assert_eq!(audited(&t, &ada).last().map(String::as_str), Some("account_deleted"));
    assert_eq!(account_changes(&t, &ada), ["delete"]);
    let facts: Vec<&str> = t.outbox.events().iter().map(|e| e.detail_type()).collect();
    assert!(facts.contains(&"ContactDeleted"), "{facts:?}");
    let notice = t.mailbox().await.into_iter().find(|m| m.subject == "Your account was deleted").unwrap();
    assert!(notice.text.contains("by the portal's staff"), "{}", notice.text);

    // A tombstone is shown, and nothing more can be done to it.
    let page = get(&t, &admin_token, &format!("/admin/contacts/{}", ada.contact_id)).await;
    assert_eq!(page.status(), 200);
    assert_eq!(act(&t, &admin_token, &ada, "delete", json!({})).await.status(), 404);
    assert_eq!(act(&t, &admin_token, &ada, "enable", json!({})).await.status(), 404);
    assert_eq!(register(&t, ADA).await.1.email.as_str(), ADA, "the address is free again");
}
