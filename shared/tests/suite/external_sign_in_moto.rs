//! External identities on the real DynamoDB API (moto): the state of a trip to a provider is taken
//! once (of two concurrent takes, one gets it), a new identity's account is written with its guard
//! item in one transaction, an identity belongs to one account, and unlinking or deleting the
//! account frees it.

use std::sync::Arc;

use portal::domain::identity::{EXTERNAL_STATE_SECS, ExternalPurpose, ExternalState, LinkedIdentity};
use portal::domain::secret::digest;
use portal::handlers::external::ExternalSignIn;
use portal::ports::{LinkIdentityError, UsesContacts};
use portal_testkit::moto::fresh_tables;
use portal_testkit::oidc::{FakeProvider, identity};
use portal_testkit::*;

#[tokio::test(flavor = "multi_thread")]
async fn a_trips_state_is_taken_once_and_an_identity_belongs_to_one_account_until_it_is_freed() {
    let tables = fresh_tables();
    let fake = Arc::new(FakeProvider::default());
    let portal = Arc::new((*tables.portal(&[])).clone().with_identity_providers(fake.clone()));

    // Through the HTTP layer: a new identity makes its account, with its guard.
    let begun = send_to(&portal, &ExternalSignIn, Req::get("/signin/external/example")).await;
    assert_eq!(begun.status(), 302, "{}", body_text(&begun));
    let browser = cookie_value(&begun, "portal_external").unwrap();
    let back = fake.sign_in(&location(&begun).unwrap(), identity("olive-1", "olive@example.com"));
    let entered = send_to(&portal, &ExternalSignIn, Req::get(&back).cookie("portal_external", &browser)).await;
    assert_eq!(entered.status(), 200, "{}", body_text(&entered));
    let olive_id = body_json(&entered)["contact_id"].as_str().unwrap().to_string();
    let owner = portal.contacts().identity_owner("example", "olive-1").await.unwrap();
    assert_eq!(owner.as_ref().map(|id| id.as_str()), Some(olive_id.as_str()));
    let replayed = send_to(&portal, &ExternalSignIn, Req::get(&back).cookie("portal_external", &browser)).await;
    assert_eq!(replayed.status(), 401, "the state item was taken");

    // Two concurrent takes of one state: one gets it.
    let now = portal.clock.now();
    let state = ExternalState {
        provider: "example".into(),
        nonce: "n".into(),
        pkce_verifier: "v".into(),
        browser_digest: digest("browser"),
        purpose: ExternalPurpose::SignIn { return_to: "/profile".into() },
        expires_at: now + EXTERNAL_STATE_SECS,
    };
    portal.contacts().save_external_state("state-digest", &state).await.unwrap();
    let (a, b) = tokio::join!(
        portal.contacts().take_external_state("state-digest"),
        portal.contacts().take_external_state("state-digest")
    );
    let taken: Vec<_> = [a.unwrap(), b.unwrap()].into_iter().flatten().collect();
    assert_eq!(taken, vec![state], "exactly one take");

    // Bea cannot have Olive's identity; once Olive unlinks it, she can; her deletion frees it.
    registered(&portal, "bea@example.com").await;
    let find = |email: &'static str| {
        let portal = portal.clone();
        async move {
            let login = portal::domain::contact::Login::parse(email).unwrap();
            portal.contacts().find_by_login(&login).await.unwrap().unwrap()
        }
    };
    let bea = find("bea@example.com").await;
    let olives = LinkedIdentity { provider: "example".into(), subject: "olive-1".into(), email: None, linked_at: now };
    let taken = portal.contacts().link_identity(&bea, &olives, &[]).await;
    assert!(matches!(taken, Err(LinkIdentityError::Taken)), "{taken:?}");
    assert!(find("bea@example.com").await.identities.is_empty(), "nothing written");
    let olive = find("olive@example.com").await;
    let unlinked = portal.contacts().unlink_identity(&olive, "example", "olive-1", now, &[]).await.unwrap();
    assert!(unlinked.identities.is_empty());
    assert!(find("olive@example.com").await.identities.is_empty());
    let bea = portal.contacts().link_identity(&bea, &olives, &[]).await.unwrap();
    assert_eq!(portal.contacts().identity_owner("example", "olive-1").await.unwrap(), Some(bea.contact_id.clone()));
    // An unlink against a stale read is refused.
    let stale = portal.contacts().unlink_identity(&olive, "example", "olive-1", now, &[]).await;
    assert!(matches!(stale, Err(LinkIdentityError::Changed)), "{stale:?}");
    let edit = portal::ports::AccountEdit::Delete { epoch: "e".into() };
    portal.contacts().edit_account(&bea, &edit, now, &[]).await.unwrap();
    assert_eq!(portal.contacts().identity_owner("example", "olive-1").await.unwrap(), None, "freed");
}
