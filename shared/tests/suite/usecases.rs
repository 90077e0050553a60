//! Use-case tests: the things people do, called as functions with typed inputs on the in-memory
//! adapters. No request, no cookie, no client kind: the use cases know nothing of HTTP.

use portal::domain::audit::SourceAddress;
use portal::domain::contact::Contact;
use portal::domain::email::Email;
use portal::domain::invitation::{InvitationCode, InvitationType};
use portal::domain::outbox::MessageKind;
use portal::domain::password::Password;
use portal::error::PortalError;
use portal::usecases::door::{Arrival, Entry, Proof, enter};
use portal::usecases::invite::{self, InvitationRequest, Invitee};
use portal::usecases::profile::{self, ProfileChange};
use portal::usecases::reauth::Reauthentication;
use portal::usecases::redeem::{self, NewCredentials, Redeem};
use portal::usecases::register::{Registered, Registration, register};
use portal::usecases::session;
use portal_testkit::*;

fn from(address: &str) -> SourceAddress {
    SourceAddress::new(Some(address.to_string()))
}

/// A password sign-in through the door from `source`.
async fn sign_in_from(
    t: &TestPortal,
    source: &SourceAddress,
    login: &str,
    password: &str,
) -> Result<Entry, PortalError> {
    let proof = Proof::Password { login, password: Password::new(password.into()), second_factor_code: None };
    enter(&t.portal, source, proof, Arrival::default(), false).await
}

fn registration(email: &str) -> Registration {
    Registration {
        email: Email::parse(email).unwrap(),
        password: Password::choose(PASSWORD.into(), 12, &[]).unwrap(),
        first_name: "Ada".into(),
        last_name: "Lovelace".into(),
        username: None,
        phone: None,
        accept_terms: false,
    }
}

async fn registered(t: &TestPortal, email: &str) -> (Contact, String) {
    match register(&t.portal, &from("198.51.100.7"), registration(email), Arrival::default()).await.unwrap() {
        Registered::Entry(entry) => {
            let entered = entered(entry);
            let token = entered.session_token().to_string();
            (entered.contact, token)
        }
        Registered::AwaitingConfirmation => panic!("confirmation is not required by default"),
    }
}

#[tokio::test]
async fn registering_creates_the_contact_its_confirmation_email_and_a_session() {
    let t = test_portal(&[]);
    let (contact, token) = registered(&t, "ada@example.com").await;
    assert_eq!(t.contacts.all(), vec![contact.clone()]);
    let queued = t.outbox.all();
    assert_eq!(
        (queued.len(), queued[0].kind, queued[0].to.as_str()),
        (1, MessageKind::ConfirmEmail, "ada@example.com")
    );
    let signed_in = session::current(&t.portal, &token).await.unwrap().expect("the new session");
    assert_eq!(signed_in.contact.contact_id, contact.contact_id);
    let mut someone_else = registration("ADA@example.com");
    someone_else.first_name = "Augusta".into();
    let again = register(&t.portal, &from("198.51.100.7"), someone_else, Arrival::default()).await;
    assert!(matches!(again, Err(PortalError::EmailTaken)), "the same address in another case is taken");
}

#[tokio::test]
async fn the_fifth_wrong_password_locks_and_the_locked_answer_is_a_wrong_passwords() {
    let t = test_portal(&[]);
    registered(&t, "ada@example.com").await;
    let source = from("198.51.100.7");
    for _ in 0..5 {
        let wrong = sign_in_from(&t, &source, "ada@example.com", "not-the-password").await;
        assert!(matches!(wrong, Err(PortalError::InvalidCredentials)));
    }
    let locked = sign_in_from(&t, &source, "ADA@example.com", PASSWORD).await;
    assert!(matches!(locked, Err(PortalError::InvalidCredentials)), "locked, with a wrong password's answer");
    t.clock.advance(301);
    sign_in_from(&t, &source, "ada@example.com", PASSWORD).await.unwrap();
    let contact = t.contacts.all().pop().unwrap();
    assert_eq!(contact.lockout().failed_sign_ins, 0, "a success after the lock clears the count");
}

#[tokio::test]
async fn guessing_invitation_codes_stops_at_the_source_addresss_allowance() {
    let t = test_portal(&[("PORTAL_FAILURES_PER_ADDRESS_PER_HOUR", "3")]);
    let guesser = from("203.0.113.9");
    for _ in 0..3 {
        let guess = redeem::open(&t.portal, &guesser, &InvitationCode::generate().display()).await;
        assert!(matches!(guess, Err(PortalError::InvitationInvalid)));
    }
    let refused = redeem::open(&t.portal, &guesser, &InvitationCode::generate().display()).await;
    assert!(matches!(refused, Err(PortalError::RateLimited { .. })));
    let other = redeem::open(&t.portal, &from("203.0.113.10"), "not a code").await;
    assert!(matches!(other, Err(PortalError::InvitationInvalid)), "another address has its own allowance");
}

#[tokio::test]
async fn an_invitation_is_redeemed_once_and_a_resend_voids_the_old_code() {
    let t = test_portal(&[]);
    let (admin, _) = registered(&t, "admin@example.com").await;
    let source = from("198.51.100.7");
    let request = InvitationRequest {
        invitee: Invitee::Email {
            email: Email::parse("grace@example.com").unwrap(),
            first_name: "Grace".into(),
            last_name: "Hopper".into(),
        },
        kind: InvitationType::Single,
        max_redemptions: 1,
        expires_in_days: None,
        roles: vec!["Customers".into()],
        account_id: None,
        redirect_path: None,
    };
    let invitation = invite::invite(&t.portal, &source, &admin, request).await.unwrap();
    let first_code = t.outbox.get(&invitation.message_id).unwrap().secret.unwrap().expose().to_string();
    let resent = invite::resend(&t.portal, &source, &admin, &invitation.invitation_id).await.unwrap();
    let code = t.outbox.get(&resent.message_id).unwrap().secret.unwrap().expose().to_string();
    assert!(matches!(redeem::open(&t.portal, &source, &first_code).await, Err(PortalError::InvitationInvalid)));

    let (_, opened) = redeem::open(&t.portal, &source, &code.to_lowercase().replace('-', " ")).await.unwrap();
    let credentials = || {
        Redeem::NewCredentials(NewCredentials {
            password: PASSWORD.into(),
            username: None,
            email: None,
            first_name: None,
            last_name: None,
            accept_terms: false,
        })
    };
    let redeemed = redeem::redeem(&t.portal, &source, &opened, credentials(), Arrival::default()).await.unwrap();
    assert!(redeemed.created);
    assert_eq!(redeemed.contact.roles, ["Customers"]);
    assert!(redeemed.contact.email_confirmed, "the code reached the address");
    // A second redemption that opened the code before the first one finished: used up, not
    // "sign in to your existing account".
    let stale = redeem::redeem(&t.portal, &source, &opened, credentials(), Arrival::default()).await;
    assert!(matches!(stale, Err(PortalError::InvitationInvalid)), "{:?}", stale.err());
    registered(&t, "other@example.com").await;
    let onto_another = Redeem::ExistingAccount {
        login: "other@example.com".into(),
        password: Password::new(PASSWORD.into()),
        second_factor_code: None,
        accept_terms: false,
    };
    let again = redeem::redeem(&t.portal, &source, &opened, onto_another, Arrival::default()).await;
    assert!(matches!(again, Err(PortalError::InvitationInvalid)), "a single invitation is used up");
}

#[tokio::test]
async fn a_profile_change_keeps_the_username_and_a_new_email_waits_for_its_link() {
    let t = test_portal(&[]);
    let (_, first) = registered(&t, "ada@example.com").await;
    let second = entered(sign_in(&t.portal, "ada@example.com", PASSWORD).await.unwrap()).session_token().to_string();
    let signed_in = session::current(&t.portal, &second).await.unwrap().unwrap();
    let source = from("198.51.100.7");

    let rename = ProfileChange { username: Some("someone.else".into()), ..ProfileChange::default() };
    let refused = profile::update_profile(&t.portal, &source, &signed_in, rename).await;
    assert!(matches!(refused, Err(PortalError::Validation { ref fields, .. }) if fields.contains_key("username")));

    let new_email = || Some(Email::parse("ada@lovelace.example").unwrap());
    let without_password = ProfileChange { email: new_email(), ..ProfileChange::default() };
    let refused = profile::update_profile(&t.portal, &source, &signed_in, without_password).await;
    assert!(
        matches!(refused, Err(PortalError::Validation { ref fields, .. }) if fields.contains_key("current_password")),
        "a borrowed session alone cannot move the account"
    );

    let change = ProfileChange {
        first_name: Some("Augusta".into()),
        email: new_email(),
        reauthentication: Reauthentication::with_password(Password::new(PASSWORD.into())),
        ..ProfileChange::default()
    };
    let updated = profile::update_profile(&t.portal, &source, &signed_in, change).await.unwrap();
    assert_eq!((updated.first_name.as_str(), updated.email.as_str()), ("Augusta", "ada@example.com"));
    assert_eq!(updated.pending_email.as_ref().map(Email::as_str), Some("ada@lovelace.example"));
    assert!(session::current(&t.portal, &first).await.unwrap().is_some(), "nothing moved yet");
    assert!(session::current(&t.portal, &second).await.unwrap().is_some());
}
