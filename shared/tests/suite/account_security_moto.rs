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

#[tokio::test(flavor = "multi_thread")]
async fn of_two_concurrent_setting_changes_against_one_version_one_wins_and_the_other_is_told() {
    use portal::error::PortalError;
    use portal::usecases::site_settings::{self, Change};
    use std::collections::BTreeMap;
    let tables = fresh_tables();
    let portal = tables.portal(&[]);
    let admin = portal_testkit::administrator();
    let source = from("198.51.100.7");
    let change = |name: &str, value: &str| Change {
        values: BTreeMap::from([(name.to_string(), Some(value.to_string()))]),
        version: Some(0),
    };
    let (first, second) = tokio::join!(
        site_settings::change(&portal, &admin, change("lockout_threshold", "9"), &source),
        site_settings::change(&portal, &admin, change("open_registration", "false"), &source),
    );
    let outcomes = [first, second];
    assert_eq!(outcomes.iter().filter(|o| o.is_ok()).count(), 1, "one wins");
    let refused = outcomes.into_iter().find_map(Result::err).unwrap();
    assert!(
        matches!(&refused, PortalError::ChangedMeanwhile { fields } if fields.contains_key("version")),
        "{refused:?}"
    );
    let (rows, version) = site_settings::list(&portal).await.unwrap();
    assert_eq!(version, 1);
    let run_time: Vec<&str> =
        rows.iter().filter(|r| r.source == portal::site_settings::Source::RunTime).map(|r| r.name).collect();
    assert_eq!(run_time.len(), 1, "only the winner's change is stored: {run_time:?}");
}
