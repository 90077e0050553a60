//! Handler tests for the administrators' lists on in-memory adapters: the invitations list (filters,
//! paging, bounds, the inviter), the invitation's people, and the contacts list and search.

use portal::domain::contact::Contact;
use portal::domain::email::Email;
use portal::domain::invitation::{Delivery, InvitationStatus, Redemption};
use portal::domain::listing::{InvitationFilter, PageRequest};
use portal::domain::time::Timestamp;
use portal::handlers::admin::CreateInvitation;
use portal::handlers::register::Register;
use portal::ports::{Clock, ContactChange, InvitationStore};
use portal_testkit::*;
use serde_json::{Value, json};

const ADMIN_EMAIL: &str = "admin@example.com";

async fn with_admin() -> (TestPortal, String) {
    let t = test_portal(&[]);
    let response = t.send(&Register, Req::post("/register").json(registration(ADMIN_EMAIL))).await;
    assert_eq!(response.status(), 201);
    let token = cookie_value(&response, "portal_session").unwrap();
    let mut admin = t.contacts.all().into_iter().next().unwrap();
    admin.roles = vec!["Administrators".into()];
    t.contacts.put(admin);
    (t, token)
}

async fn get(t: &TestPortal, admin: &str, path: &str) -> HttpResponse {
    t.send(&CreateInvitation, Req::get(path).cookie("portal_session", admin)).await
}

async fn get_json(t: &TestPortal, admin: &str, path: &str) -> Value {
    let response = get(t, admin, path).await;
    assert_eq!(response.status(), 200, "{path}: {}", body_text(&response));
    body_json(&response)
}

/// Invites `n` people (one a second, so each is newer than the last); returns their ids, oldest first.
async fn invite_people(t: &TestPortal, admin: &str, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        let body =
            json!({"email": format!("person{i}@example.com"), "first_name": "Person", "last_name": format!("N{i}")});
        let response =
            t.send(&CreateInvitation, Req::post("/admin/invitations").json(body).cookie("portal_session", admin)).await;
        assert_eq!(response.status(), 201, "{}", body_text(&response));
        ids.push(body_json(&response)["invitation_id"].as_str().unwrap().to_string());
        t.clock.advance(1);
    }
    ids
}

fn ids_of(page: &Value) -> Vec<String> {
    page["invitations"].as_array().unwrap().iter().map(|i| i["invitation_id"].as_str().unwrap().to_string()).collect()
}

/// Follows the cursors of a list from `path` to its end; returns every page's ids.
async fn all_pages(t: &TestPortal, admin: &str, path: &str) -> Vec<Vec<String>> {
    let mut pages = Vec::new();
    let mut next = path.to_string();
    loop {
        let page = get_json(t, admin, &next).await;
        pages.push(ids_of(&page));
        match page["next_cursor"].as_str() {
            Some(cursor) => next = format!("{path}&cursor={cursor}"),
            None => return pages,
        }
    }
}

#[tokio::test]
async fn the_invitations_list_pages_newest_first_with_its_cursor() {
    let (t, admin) = with_admin().await;
    let mut ids = invite_people(&t, &admin, 7).await;
    ids.reverse();
    let pages = all_pages(&t, &admin, "/admin/invitations?limit=3").await;
    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [3, 3, 1]);
    assert_eq!(pages.concat(), ids, "every invitation once, newest first");
    let first = get_json(&t, &admin, "/admin/invitations").await;
    assert_eq!(ids_of(&first), ids, "50 by default: one page");
    assert_eq!(first["next_cursor"], Value::Null);
    let row = &first["invitations"][0];
    assert_eq!(row["created_by"]["email"], ADMIN_EMAIL);
    assert_eq!((row["email"].as_str(), row["type"].as_str()), (Some("person6@example.com"), Some("single")));
    assert_eq!((row["redemptions"].as_u64(), row["max_redemptions"].as_u64()), (Some(0), Some(1)));
}

#[tokio::test]
async fn bad_limits_cursors_and_filters_are_a_400_naming_the_field() {
    let (t, admin) = with_admin().await;
    invite_people(&t, &admin, 1).await;
    for (path, field) in [
        ("/admin/invitations?limit=0", "limit"),
        ("/admin/invitations?limit=201", "limit"),
        ("/admin/invitations?limit=many", "limit"),
        ("/admin/invitations?cursor=not-a-cursor", "cursor"),
        ("/admin/invitations?cursor=eyJwayI6IklOVklUQVRJT04jeCJ9", "cursor"),
        ("/admin/invitations?status=lost", "status"),
        ("/admin/invitations?delivery=maybe", "delivery"),
        ("/admin/invitations?contact_id=a%23b", "contact_id"),
        ("/admin/contacts?limit=500", "limit"),
        ("/admin/contacts?cursor=%%%", "cursor"),
    ] {
        let response = get(&t, &admin, path).await;
        assert_eq!(response.status(), 400, "{path}");
        let body = body_json(&response);
        assert_eq!(body["error"], "validation_failed", "{path}");
        assert!(body["fields"][field].is_string(), "{path}: {body}");
    }
    assert_eq!(ids_of(&get_json(&t, &admin, "/admin/invitations?limit=200").await).len(), 1);
    assert_eq!(ids_of(&get_json(&t, &admin, "/admin/invitations?limit=1").await).len(), 1);
}

#[tokio::test]
async fn filters_by_status_delivery_and_contact() {
    let (t, admin) = with_admin().await;
    let ids = invite_people(&t, &admin, 4).await;
    // ids[0] revoked, ids[1] redeemed, ids[2] sent, ids[3] expires soon.
    let revoke =
        Req::post(&format!("/admin/invitations/{}/revoke", ids[0])).json(json!({})).cookie("portal_session", &admin);
    assert_eq!(t.send(&CreateInvitation, revoke).await.status(), 200);
    let redeemed = t.invitations.get(&ids[1].clone().into()).await.unwrap().unwrap();
    let now = t.clock.now();
    t.invitations
        .redeem(
            &redeemed,
            &ContactChange::Assign {
                contact_id: redeemed.contact_id.clone(),
                roles: vec![],
                account_id: None,
                terms: None,
            },
            &Redemption {
                invitation_id: redeemed.invitation_id.clone(),
                contact_id: redeemed.contact_id.clone(),
                redeemed_at: now,
                source_ip: "192.0.2.1".into(),
            },
            now,
        )
        .await
        .unwrap();
    let sent = t.invitations.get(&ids[2].clone().into()).await.unwrap().unwrap();
    t.invitations.record_delivery(&sent.invitation_id, &sent.message_id, Delivery::Sent, None, now).await.unwrap();
    let expiring = t.invitations.get(&ids[3].clone().into()).await.unwrap().unwrap();
    let listed = |query: &'static str| {
        let (t, admin) = (&t, admin.clone());
        async move { ids_of(&get_json(t, &admin, &format!("/admin/invitations?{query}")).await) }
    };
    assert_eq!(listed("status=revoked").await, [ids[0].clone()]);
    assert_eq!(listed("status=redeemed").await, [ids[1].clone()]);
    assert_eq!(listed("status=active").await, [ids[3].clone(), ids[2].clone()]);
    assert_eq!(listed("status=expired").await, Vec::<String>::new());
    assert_eq!(listed("delivery=sent").await, [ids[2].clone()]);
    assert_eq!(listed("delivery=pending").await.len(), 3);
    assert_eq!(listed("delivery=sent&status=active").await, [ids[2].clone()]);
    let path = format!("/admin/invitations?contact_id={}", expiring.contact_id);
    assert_eq!(ids_of(&get_json(&t, &admin, &path).await), [ids[3].clone()]);
    // Time passes (past the session too: the store is asked directly): the open ones expire, the
    // revoked and redeemed keep their status.
    t.clock.advance(8 * 86_400);
    let stored = |status| {
        let filter = InvitationFilter { status: Some(status), ..InvitationFilter::default() };
        let t = &t;
        async move {
            let page = t.invitations.list(&filter, &PageRequest::first(50), t.clock.now()).await.unwrap();
            page.items.into_iter().map(|i| i.invitation_id.to_string()).collect::<Vec<_>>()
        }
    };
    assert_eq!(stored(InvitationStatus::Expired).await, [ids[3].clone(), ids[2].clone()]);
    assert_eq!(stored(InvitationStatus::Active).await, Vec::<String>::new());
    assert_eq!(stored(InvitationStatus::Revoked).await, [ids[0].clone()]);
}

#[tokio::test]
async fn the_list_page_shows_each_invitation_with_its_people_and_links() {
    let (t, admin) = with_admin().await;
    let ids = invite_people(&t, &admin, 2).await;
    let page =
        t.send(&CreateInvitation, Req::get("/admin/invitations?limit=1").html().cookie("portal_session", &admin)).await;
    assert_eq!(page.status(), 200);
    let html = body_text(&page);
    assert!(html.contains(&format!("href=\"/admin/invitations/{}\"", ids[1])), "{html}");
    assert!(!html.contains(&ids[0]), "one row on a page of one");
    for shown in [
        "person1@example.com",
        "Person N1",
        ADMIN_EMAIL,
        "0 of 1",
        "pending",
        "single",
        "id=\"next-page\"",
        "href=\"/admin/contacts\"",
    ] {
        assert!(html.contains(shown), "{shown}: {html}");
    }
    // Status and delivery as badges: the word itself, the colour a second cue (issue 25).
    for badge in
        ["<span class=\"badge badge-active\">active</span>", "<span class=\"badge badge-pending\">pending</span>"]
    {
        assert!(html.contains(badge), "{badge}: {html}");
    }
    assert!(html.contains("<thead>") && html.contains("class=\"table-scroll\""), "{html}");
    let contacts = t.send(&CreateInvitation, Req::get("/admin/contacts").html().cookie("portal_session", &admin)).await;
    let contacts = body_text(&contacts);
    assert!(contacts.contains("href=\"/admin/invitations\""));
    // Its columns: name, email, portal user, roles, account, created (the day).
    for column in ["Name", "Email", "Portal user", "Web roles", "Account", "Created"] {
        assert!(contacts.contains(&format!("<th scope=\"col\">{column}</th>")), "{column}: {contacts}");
    }
    let day = portal::domain::time::day(t.clock.now());
    assert!(contacts.contains(&format!("<td>{day}</td>")), "the created day {day}: {contacts}");
}

#[tokio::test]
async fn the_invitation_shows_who_created_it_and_who_redeemed_it() {
    let (t, admin) = with_admin().await;
    let ids = invite_people(&t, &admin, 1).await;
    let invitation = t.invitations.get(&ids[0].clone().into()).await.unwrap().unwrap();
    let now = t.clock.now();
    let redemption = Redemption {
        invitation_id: invitation.invitation_id.clone(),
        contact_id: invitation.contact_id.clone(),
        redeemed_at: now,
        source_ip: "192.0.2.7".into(),
    };
    let change = ContactChange::Assign {
        contact_id: invitation.contact_id.clone(),
        roles: vec![],
        account_id: None,
        terms: None,
    };
    t.invitations.redeem(&invitation, &change, &redemption, now).await.unwrap();
    let detail = get_json(&t, &admin, &format!("/admin/invitations/{}", ids[0])).await;
    let admin_id = t.contacts.all().into_iter().find(|c| c.email.as_str() == ADMIN_EMAIL).unwrap().contact_id;
    assert_eq!(detail["created_by"], json!({"contact_id": admin_id.as_str(), "email": ADMIN_EMAIL}));
    assert!(detail["created_at"].as_str().is_some_and(|t| t.ends_with('Z')));
    let redeemer = &detail["redeemed_by"][0];
    assert_eq!(redeemer["contact_id"], invitation.contact_id.as_str());
    assert_eq!(
        (redeemer["email"].as_str(), redeemer["first_name"].as_str()),
        (Some("person0@example.com"), Some("Person"))
    );
    assert_eq!(redeemer["last_name"], "N0");
    assert!(redeemer["redeemed_at"].is_string());
    let page = t
        .send(
            &CreateInvitation,
            Req::get(&format!("/admin/invitations/{}", ids[0])).html().cookie("portal_session", &admin),
        )
        .await;
    let html = body_text(&page);
    assert!(html.contains(ADMIN_EMAIL) && html.contains("Person N0"), "{html}");
    assert!(html.contains(&format!("href=\"/admin/contacts?contact_id={}\"", invitation.contact_id)));
    assert!(html.contains(&format!("href=\"/admin/contacts?contact_id={admin_id}\"")));
}

fn person(i: i64, email: &str, first: &str, last: &str) -> Contact {
    let mut contact = Contact::new(
        portal::domain::contact::NewContact {
            email: Email::parse(email).unwrap(),
            first_name: first.into(),
            last_name: last.into(),
            username: None,
            phone: None,
            roles: vec![],
            password_hash: None,
        },
        Timestamp::from_secs(1_900_000_000 + i),
    );
    contact.contact_id = format!("contact-{i}").into();
    contact
}

fn emails(page: &Value) -> Vec<String> {
    page["contacts"].as_array().unwrap().iter().map(|c| c["email"].as_str().unwrap().to_string()).collect()
}

#[tokio::test]
async fn the_contacts_list_pages_newest_first_and_searches_prefixes_once_each() {
    let (t, admin) = with_admin().await;
    t.contacts.put(person(1, "grace@navy.example", "Grace", "Hopper"));
    t.contacts.put(person(2, "ada@example.com", "Ada", "Lovelace"));
    t.contacts.put(person(3, "hopper.fan@example.com", "Gracey", "Smith"));
    t.contacts.put(person(4, "alan@example.com", "Alan", "Turing"));
    let mut seen = Vec::new();
    let mut path = "/admin/contacts?limit=2".to_string();
    loop {
        let page = get_json(&t, &admin, &path).await;
        seen.extend(emails(&page));
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/admin/contacts?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen[..4], ["alan@example.com", "hopper.fan@example.com", "ada@example.com", "grace@navy.example"]);
    assert_eq!(seen.len(), 5, "and the administrator");
    // "grace" is Grace's email and first name and Gracey's first name: each contact once.
    let found = emails(&get_json(&t, &admin, "/admin/contacts?q=%20GRACE%20").await);
    assert_eq!(found.len(), 2);
    assert!(found.contains(&"grace@navy.example".to_string()) && found.contains(&"hopper.fan@example.com".to_string()));
    assert_eq!(emails(&get_json(&t, &admin, "/admin/contacts?q=hopper").await).len(), 2, "last name or email");
    assert_eq!(emails(&get_json(&t, &admin, "/admin/contacts?q=turing").await), ["alan@example.com"]);
    assert!(emails(&get_json(&t, &admin, "/admin/contacts?q=uring").await).is_empty(), "prefixes only");
    // A search pages through its matches too, each once.
    let first = get_json(&t, &admin, "/admin/contacts?q=grace&limit=1").await;
    let cursor = first["next_cursor"].as_str().unwrap().to_string();
    let second = get_json(&t, &admin, &format!("/admin/contacts?q=grace&limit=1&cursor={cursor}")).await;
    let mut both = [emails(&first), emails(&second)].concat();
    both.sort();
    assert_eq!(both, ["grace@navy.example", "hopper.fan@example.com"]);
    // A search's cursor does not fit another search, nor the plain list.
    for path in [format!("/admin/contacts?q=ada&cursor={cursor}"), format!("/admin/contacts?cursor={cursor}")] {
        let response = get(&t, &admin, &path).await;
        assert_eq!(response.status(), 400, "{path}");
        assert!(body_json(&response)["fields"]["cursor"].is_string());
    }
}
