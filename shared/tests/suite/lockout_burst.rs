//! The lockout under a burst, on the real DynamoDB API (moto): fifty parallel wrong passwords get
//! no more password checks than the lockout threshold. (A test binary of its own: it counts the
//! checks of the whole process.)

use portal::domain::audit::SourceAddress;
use portal::domain::password::Password;
use portal::error::PortalError;
use portal::usecases::door::{Arrival, DoorPorts, Entry, Proof, enter};
use portal_testkit::moto::fresh_tables;
use portal_testkit::{PASSWORD, from, registered};

/// A password sign-in through the door from `source`.
async fn sign_in(portal: &impl DoorPorts, source: &SourceAddress, password: Password) -> Result<Entry, PortalError> {
    let proof = Proof::Password { login: "ada@example.com", password, second_factor_code: None };
    enter(portal, source, proof, Arrival::default(), false).await
}

/// Counts the password checks made against an account (not against the decoy that unknown logins
/// and refused attempts are checked against, which takes the same time).
mod checks {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tracing::field::{Field, Visit};
    use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

    pub static AGAINST_ACCOUNT: AtomicUsize = AtomicUsize::new(0);

    struct Counter;

    struct AgainstAccount(bool);

    impl Visit for AgainstAccount {
        fn record_bool(&mut self, field: &Field, value: bool) {
            if field.name() == "against_account" {
                self.0 = value;
            }
        }
        fn record_debug(&mut self, _: &Field, _: &dyn std::fmt::Debug) {}
    }

    impl<S: tracing::Subscriber> Layer<S> for Counter {
        fn on_new_span(&self, attrs: &tracing::span::Attributes<'_>, _: &tracing::span::Id, _: Context<'_, S>) {
            if attrs.metadata().name() == "verify_password" {
                let mut visitor = AgainstAccount(false);
                attrs.record(&mut visitor);
                if visitor.0 {
                    AGAINST_ACCOUNT.fetch_add(1, Ordering::SeqCst);
                }
            }
        }
    }

    pub fn count() {
        let subscriber = tracing_subscriber::registry().with(Counter);
        tracing::subscriber::set_global_default(subscriber).expect("the only subscriber of this test binary");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn fifty_parallel_wrong_passwords_get_at_most_the_threshold_of_checks() {
    checks::count();
    let tables = fresh_tables();
    let portal = tables.portal(&[]);
    registered(&portal, "ada@example.com").await;
    let guesses: Vec<_> = (0..50)
        .map(|i| {
            let portal = portal.clone();
            tokio::spawn(async move {
                let guess = Password::new(format!("wrong-guess-number-{i}"));
                sign_in(&portal, &from("203.0.113.9"), guess).await.map(drop)
            })
        })
        .collect();
    for guess in guesses {
        assert!(matches!(guess.await.unwrap(), Err(PortalError::InvalidCredentials)));
    }
    let checked = checks::AGAINST_ACCOUNT.load(std::sync::atomic::Ordering::SeqCst);
    assert!((1..=5).contains(&checked), "{checked} of 50 parallel guesses were checked against the account");
    let login = portal::domain::contact::Login::Email("ada@example.com".into());
    let contact = portal.contacts.find_by_login(&login).await.unwrap().unwrap();
    assert_eq!(contact.lockouts, 1, "five checks failed, one lockout: {:?}", contact.lockout());
    let owner = from("198.51.100.7");
    let right = sign_in(&portal, &owner, Password::new(PASSWORD.into())).await.map(drop);
    assert!(matches!(right, Err(PortalError::InvalidCredentials)), "locked: even the right password waits");
}
