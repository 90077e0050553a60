//! Account security on the real DynamoDB API (moto): the use cases over the DynamoDB adapters.
//! Sessions end with the change that ends them (see also `lockout_burst.rs`).

use portal::domain::password::Password;
use portal::usecases::sign_in::{Arrival, sign_in};
use portal::usecases::{profile, session};
use portal_testkit::moto::fresh_tables;
use portal_testkit::{PASSWORD, from, registered};

#[tokio::test(flavor = "multi_thread")]
async fn a_password_change_ends_every_other_session_at_once_even_one_started_from_a_stale_read() {
    let tables = fresh_tables();
    let portal = tables.portal(&[]);
    registered(&portal, "ada@example.com").await;
    let source = from("198.51.100.7");
    let sign =
        || sign_in(&portal, &source, "ada@example.com", Password::new(PASSWORD.into()), Arrival::default(), false);
    let laptop = sign().await.unwrap().completed().unwrap().session_token;
    let phone = sign().await.unwrap().completed().unwrap();
    // A sign-in that read the contact just before the change and writes its session just after.
    let stale = phone.contact.clone();

    let signed_in = session::current(&portal, &phone.session_token).await.unwrap().unwrap();
    let renewed = profile::change_password(
        &portal,
        &source,
        &signed_in.contact,
        Password::new(PASSWORD.into()),
        "Brand-New-Passphrase-77".into(),
    )
    .await
    .unwrap();
    let late = session::start(&portal, &stale).await.unwrap();
    for (name, token) in [("laptop", &laptop), ("phone", &phone.session_token), ("late", &late)] {
        assert!(session::current(&portal, token).await.unwrap().is_none(), "{name}'s session ended");
    }
    assert!(session::current(&portal, &renewed).await.unwrap().is_some(), "this one goes on");
}
