//! Two-factor authentication on the real DynamoDB and KMS APIs (moto): every code is used once
//! however many requests carry it at the same time, a pending sign-in's attempts are counted before
//! each check, a change writes only over the state it read, and the TOTP secret is sealed with a
//! data key from KMS.

use std::sync::Arc;

use aws_sdk_kms::config::{BehaviorVersion, Credentials, Region};
use portal::adapters::sealing::KmsSealer;
use portal::domain::contact::Contact;
use portal::domain::ids::ContactId;
use portal::domain::two_factor::{
    PENDING_SIGN_IN_ATTEMPTS, PendingSignIn, TOTP_STEP_SECS, TotpSecret, TwoFactor, new_recovery_codes,
};
use portal::ports::{SecretSealer, UsesContacts, UsesTwoFactor};
use portal::usecases::door::Entry;
use portal_testkit::moto::{endpoint, fresh_tables};
use portal_testkit::{PASSWORD, registered, second_step, sign_in};

fn kms_client() -> aws_sdk_kms::Client {
    let config = aws_sdk_kms::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .http_client(portal::aws::https_client())
        .endpoint_url(endpoint())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "tests"))
        .build();
    aws_sdk_kms::Client::from_conf(config)
}

/// A new KMS key on moto, named by an alias as the functions name theirs.
async fn new_kms_key(client: &aws_sdk_kms::Client) -> String {
    let created = client.create_key().send().await.expect("creating a KMS key on moto");
    let key_id = created.key_metadata().expect("key metadata").key_id().to_string();
    let alias = format!("alias/t{}-totp", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    client.create_alias().alias_name(&alias).target_key_id(key_id).send().await.expect("an alias");
    alias
}

async fn ada(portal: &Arc<portal::Portal>) -> Contact {
    registered(portal, "ada@example.com").await;
    let login = portal::domain::contact::Login::Email("ada@example.com".into());
    portal.contacts().find_by_login(&login).await.unwrap().unwrap()
}

/// Turns TOTP on for `contact` with `secret`, and ten recovery codes; returns the codes.
async fn with_totp(portal: &Arc<portal::Portal>, contact: &Contact, secret: &TotpSecret) -> Vec<String> {
    let mut state = TwoFactor::none(&contact.contact_id);
    state.totp = Some(portal.sealer().seal(secret, &contact.contact_id).await.unwrap());
    let (codes, digests) = new_recovery_codes();
    state.set_recovery_codes(digests);
    assert!(portal.two_factor().save(&state, Some("epoch-2"), &[]).await.unwrap());
    codes
}

/// Signs in with the password `n` times: the pending sign-ins' tokens.
async fn pending_sign_ins(portal: &Arc<portal::Portal>, n: usize) -> Vec<String> {
    let mut tokens = Vec::new();
    for _ in 0..n {
        let outcome = sign_in(portal, "ada@example.com", PASSWORD).await.unwrap();
        let Entry::SecondFactorAwaited { pending_token, .. } = outcome else { panic!("a second step is due") };
        tokens.push(pending_token);
    }
    tokens
}

/// Runs the second step of every pending sign-in with `code` at once: how many signed in.
async fn parallel_second_steps(portal: &Arc<portal::Portal>, tokens: &[String], code: &str) -> usize {
    let attempts = tokens.iter().map(|token| second_step(portal, token, code));
    futures::future::join_all(attempts).await.into_iter().filter(|r| r.is_ok()).count()
}

#[tokio::test(flavor = "multi_thread")]
async fn one_recovery_code_used_by_parallel_sign_ins_signs_in_exactly_once() {
    let portal = fresh_tables().portal(&[]);
    let contact = ada(&portal).await;
    let codes = with_totp(&portal, &contact, &TotpSecret::generate()).await;
    let tokens = pending_sign_ins(&portal, 4).await;
    assert_eq!(parallel_second_steps(&portal, &tokens, &codes[0]).await, 1);
    let state = portal.two_factor().get(&contact.contact_id).await.unwrap();
    assert_eq!(state.recovery_codes.len(), 9);
}

#[tokio::test(flavor = "multi_thread")]
async fn one_totp_code_used_by_parallel_sign_ins_signs_in_exactly_once() {
    let portal = fresh_tables().portal(&[]);
    let contact = ada(&portal).await;
    let secret = TotpSecret::generate();
    with_totp(&portal, &contact, &secret).await;
    let tokens = pending_sign_ins(&portal, 4).await;
    let step = portal.clock.now().as_secs() / TOTP_STEP_SECS;
    let code = secret.code_at_step(step);
    assert_eq!(parallel_second_steps(&portal, &tokens, &code).await, 1);
    let state = portal.two_factor().get(&contact.contact_id).await.unwrap();
    // The step the code was made for (read once: the clock may pass into the next step meanwhile).
    assert_eq!(state.totp_last_step, step);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_store_lets_each_code_pass_once_under_a_burst() {
    let portal = fresh_tables().portal(&[]);
    let contact = ada(&portal).await;
    with_totp(&portal, &contact, &TotpSecret::generate()).await;
    let store = portal.two_factor.clone();
    let id = contact.contact_id.clone();
    let uses = (0..8).map(|_| store.use_totp_step(&id, 100));
    let passed = futures::future::join_all(uses).await.into_iter().filter(|r| *r.as_ref().unwrap()).count();
    assert_eq!(passed, 1, "one step, once");
    assert!(!store.use_totp_step(&id, 99).await.unwrap(), "an earlier step after a later one");

    let now = portal.clock.now();
    let (pending, token) = PendingSignIn::start(&id, &contact.session_epoch, now, false, false);
    store.create_pending(&pending).await.unwrap();
    let digest = portal::domain::secret::digest(&token);
    let takes = (0..12).map(|_| store.take_pending_attempt(&digest, now, PENDING_SIGN_IN_ATTEMPTS));
    let taken = futures::future::join_all(takes).await.into_iter().filter(|r| r.as_ref().unwrap().is_some()).count();
    assert_eq!(taken, PENDING_SIGN_IN_ATTEMPTS as usize, "a burst of guesses gets the limit and no more");
    assert!(store.find_pending(&digest, now).await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_change_writes_only_over_the_state_it_read_with_the_new_epoch() {
    let portal = fresh_tables().portal(&[]);
    let contact = ada(&portal).await;
    let store = portal.two_factor.clone();
    let read = store.get(&contact.contact_id).await.unwrap();
    let mut on = read.clone();
    on.email = true;
    assert!(store.save(&on, Some("new-epoch"), &[]).await.unwrap());
    let mut stale = read.clone();
    stale.email = false;
    assert!(!store.save(&stale, Some("stale-epoch"), &[]).await.unwrap(), "written over a newer state");
    let stored = portal.contacts().get(&contact.contact_id).await.unwrap().unwrap();
    assert_eq!(stored.session_epoch, "new-epoch");
    assert!(store.get(&contact.contact_id).await.unwrap().email);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_totp_secret_is_sealed_with_a_kms_data_key() {
    let client = kms_client();
    let key = new_kms_key(&client).await;
    let sealer = KmsSealer::new(client.clone(), &key);
    let secret = TotpSecret::generate();
    let (ada, eve): (ContactId, ContactId) = ("ada".into(), "eve".into());
    let sealed = sealer.seal(&secret, &ada).await.unwrap();
    assert_eq!(sealer.open(&sealed, &ada).await.unwrap(), secret);
    use base64::Engine;
    let raw = base64::engine::general_purpose::STANDARD.encode(secret.as_bytes());
    assert!(!format!("{sealed:?}").contains(&raw), "no secret in the clear");
    // Bound to its contact: copied to another contact's item, with or without its label
    // rewritten, it does not open (KMS's encryption context names the contact).
    assert!(sealer.open(&sealed, &eve).await.is_err(), "another contact's secret");
    let relabelled = portal::domain::two_factor::SealedSecret { bound_to: Some(eve.clone()), ..sealed.clone() };
    assert!(sealer.open(&relabelled, &eve).await.is_err(), "its binding rewritten");
    // The data key is KMS's to decrypt: under another key it does not open.
    let other = KmsSealer::new(client.clone(), new_kms_key(&client).await);
    assert!(other.open(&sealed, &ada).await.is_err());
    assert!(KmsSealer::new(client, "").seal(&secret, &ada).await.is_err(), "no key configured: refused");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pending_sign_in_asks_for_at_most_its_emailed_codes_under_a_burst() {
    use portal::domain::two_factor::PENDING_SIGN_IN_EMAILS;
    let portal = fresh_tables().portal(&[]);
    let contact = ada(&portal).await;
    let now = portal.clock.now();
    let (pending, token) = PendingSignIn::start(&contact.contact_id, &contact.session_epoch, now, false, false);
    portal.two_factor.create_pending(&pending).await.unwrap();
    let digest = portal::domain::secret::digest(&token);
    let store = portal.two_factor.clone();
    let asks = (0..8).map(|_| store.take_pending_email(&digest, now, PENDING_SIGN_IN_EMAILS));
    let granted = futures::future::join_all(asks).await.into_iter().filter(|r| r.as_ref().unwrap().is_some()).count();
    assert_eq!(granted, PENDING_SIGN_IN_EMAILS as usize);
    let later = portal::domain::time::Timestamp::from_secs(now.as_secs() + 3600);
    assert!(store.take_pending_email(&digest, later, 10).await.unwrap().is_none(), "an expired pending sign-in");
}
