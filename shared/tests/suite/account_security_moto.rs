//! Account security on the real DynamoDB API (moto): the use cases over the DynamoDB adapters.
//! Sessions end with the change that ends them (see also `lockout_burst.rs`).

use portal::domain::password::Password;
use portal::usecases::door::{self, Arrival, Proof, Way};
use portal::usecases::reauth::Reauthentication;
use portal::usecases::{profile, session};
use portal_testkit::moto::fresh_tables;
use portal_testkit::{PASSWORD, entered, from, registered, sign_in};

#[tokio::test(flavor = "multi_thread")]
async fn a_password_change_ends_every_other_session_at_once_even_one_started_from_a_stale_read() {
    let tables = fresh_tables();
    let portal = tables.portal(&[]);
    registered(&portal, "ada@example.com").await;
    let source = from("198.51.100.7");
    let sign = || sign_in(&portal, "ada@example.com", PASSWORD);
    let laptop = entered(sign().await.unwrap()).session_token().to_string();
    let phone = entered(sign().await.unwrap());
    // A way in that proved the account just before the change and admits it just after.
    let stale = phone.contact.clone();

    let signed_in = session::current(&portal, phone.session_token()).await.unwrap().unwrap();
    let renewed = profile::change_password(
        &portal,
        &source,
        &signed_in,
        Reauthentication::with_password(Password::new(PASSWORD.into())),
        "Brand-New-Passphrase-77".into(),
    )
    .await
    .unwrap();
    let proof = Proof::NewCredentials { contact: Box::new(stale), way: Way::Registration };
    let late = entered(door::enter(&portal, &source, proof, Arrival::default(), false).await.unwrap());
    let phone_token = phone.session_token().to_string();
    let late_token = late.session_token().to_string();
    for (name, token) in [("laptop", &laptop), ("phone", &phone_token), ("late", &late_token)] {
        assert!(session::current(&portal, token).await.unwrap().is_none(), "{name}'s session ended");
    }
    assert!(session::current(&portal, renewed.session_token()).await.unwrap().is_some(), "this one goes on");
}
