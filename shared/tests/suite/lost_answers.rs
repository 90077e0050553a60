//! A write DynamoDB committed whose answer was lost (the attempt timed out after the commit), so
//! that the SDK retried a conditional write whose effect was already there. Each such write must
//! recognise its own effect: a lease taken by the lost attempt is held by the retry, not reported
//! as another run's for the whole lease; a session put under its new key is written, not a 500.

use std::sync::Arc;
use std::time::Duration;

use portal::Portal;
use portal::aws::SdkHooks;
use portal::domain::idempotency::{IdempotencyKey, IdempotentStart};
use portal::domain::ids::ContactId;
use portal::domain::import::{ChunkClaim, ImportChunk, ImportOptions};
use portal::domain::outbox::{Claim, MessageKind};
use portal::domain::session::Session;
use portal::domain::two_factor::{TwoFactor, new_recovery_codes};
use portal::usecases::import;
use portal_testkit::faults::{Fault, FaultyHttp, Injection};
use portal_testkit::from;
use portal_testkit::moto::{Tables, aws_portal, fresh_tables};

async fn portal_losing_answers(tables: &Tables, faults: &FaultyHttp, case: &str) -> Arc<Portal> {
    let hooks = SdkHooks {
        http_client: Some(faults.shared()),
        initial_backoff: Some(Duration::from_millis(2)),
        retry_partition: Some(format!("lost-{case}")),
    };
    Arc::new(aws_portal(tables, &hooks, &[]).await)
}

/// The next call of `operation` commits, and its first attempt's answer is lost.
fn lose_the_next_answer(faults: &FaultyHttp, operation: &str) {
    faults.forget_calls();
    faults.inject(Injection { operation: operation.into(), call: 1, fault: Fault::AnswerLost, attempts: 1 });
}

/// An import of one row with an invitation, started but not processed: its chunk's id.
async fn one_row_import(portal: &Portal) -> String {
    let csv = "email,first_name,last_name\nlost@example.com,Lost,Answer\n";
    let options = ImportOptions { invite: true, expires_in_days: None };
    let started =
        import::start(portal, &from("198.51.100.7"), &portal_testkit::administrator(), csv.as_bytes(), options)
            .await
            .unwrap();
    ImportChunk::id_of(&started.job.import_id, 0)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_import_chunk_claim_whose_answer_was_lost_still_holds_its_lease() {
    let tables = fresh_tables();
    let faults = FaultyHttp::new();
    let portal = portal_losing_answers(&tables, &faults, "chunk").await;
    let chunk_id = one_row_import(&portal).await;

    lose_the_next_answer(&faults, "UpdateItem");
    let claim = portal.imports.claim_chunk(&chunk_id, portal.clock.now()).await.unwrap();
    assert_eq!(faults.injected(), 1, "the claim's first attempt lost its answer");
    assert!(matches!(claim, ChunkClaim::Leased(_)), "the retry holds the lease it took: {claim:?}");

    // Another run still finds the lease taken.
    faults.clear();
    let other = portal.imports.claim_chunk(&chunk_id, portal.clock.now()).await.unwrap();
    assert!(matches!(other, ChunkClaim::Busy { .. }), "{other:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_outbox_claim_whose_answer_was_lost_still_holds_its_lease() {
    let tables = fresh_tables();
    let faults = FaultyHttp::new();
    let portal = portal_losing_answers(&tables, &faults, "outbox").await;
    let chunk_id = one_row_import(&portal).await;
    import::process_chunk(portal.as_ref(), &chunk_id).await.unwrap();
    let messages = portal.outbox.list().await.unwrap();
    let invitation = messages.iter().find(|m| m.kind == MessageKind::Invitation).expect("the row's invitation email");

    lose_the_next_answer(&faults, "UpdateItem");
    let claim = portal.outbox.claim(&invitation.message_id, portal.clock.now()).await.unwrap();
    assert_eq!(faults.injected(), 1, "the claim's first attempt lost its answer");
    assert!(matches!(claim, Claim::Leased(_)), "the retry holds the lease it took: {claim:?}");

    faults.clear();
    let other = portal.outbox.claim(&invitation.message_id, portal.clock.now()).await.unwrap();
    assert!(matches!(other, Claim::Busy { .. }), "{other:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_session_put_whose_answer_was_lost_is_written() {
    let tables = fresh_tables();
    let faults = FaultyHttp::new();
    let portal = portal_losing_answers(&tables, &faults, "session").await;
    let (session, _cookie) = Session::start(&ContactId::generate(), "epoch", portal.clock.now(), 3_600);

    lose_the_next_answer(&faults, "PutItem");
    portal.sessions.create(&session, &[]).await.expect("the retry finds the session it wrote");
    assert_eq!(faults.injected(), 1, "the put's first attempt lost its answer");
    let stored = portal.sessions.get(&session.id_digest).await.unwrap();
    assert_eq!(stored.map(|s| s.contact_id), Some(session.contact_id));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idempotency_key_taken_by_a_put_whose_answer_was_lost_is_held_by_its_request() {
    let tables = fresh_tables();
    let faults = FaultyHttp::new();
    let portal = portal_losing_answers(&tables, &faults, "idempotency").await;
    let key = IdempotencyKey::new("POST /admin/invitations", "admin", "key-1", "digest-of-the-fields".into()).unwrap();

    lose_the_next_answer(&faults, "PutItem");
    let start = portal.invitations.begin_idempotent(&key, portal.clock.now()).await.unwrap();
    assert_eq!(faults.injected(), 1, "the put's first attempt lost its answer");
    assert_eq!(start, IdempotentStart::First, "the request holds the key it took, not 409 running");

    // Another request with the key meanwhile finds it held.
    faults.clear();
    let other = portal.invitations.begin_idempotent(&key, portal.clock.now()).await.unwrap();
    assert_eq!(other, IdempotentStart::Running);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_recovery_code_used_by_an_update_whose_answer_was_lost_is_used_not_refused() {
    let tables = fresh_tables();
    let faults = FaultyHttp::new();
    let portal = portal_losing_answers(&tables, &faults, "recovery").await;
    let contact_id = ContactId::generate();
    let mut state = TwoFactor::none(&contact_id);
    let (_codes, digests) = new_recovery_codes();
    state.set_recovery_codes(digests.clone());
    assert!(portal.two_factor.save(&state, None, &[]).await.unwrap());

    lose_the_next_answer(&faults, "UpdateItem");
    let used = portal.two_factor.use_recovery_code(&contact_id, &digests[0]).await.unwrap();
    assert_eq!(faults.injected(), 1, "the update's first attempt lost its answer");
    assert!(used, "the code was used by this very request: it signs in");

    faults.clear();
    assert!(!portal.two_factor.use_recovery_code(&contact_id, &digests[0]).await.unwrap(), "and only once");
    let left = portal.two_factor.get(&contact_id).await.unwrap().recovery_codes.len();
    assert_eq!(left, digests.len() - 1);
}
