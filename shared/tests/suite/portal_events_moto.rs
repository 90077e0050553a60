//! Portal events on the real DynamoDB and EventBridge APIs (moto): each store write queues its
//! events in its own transaction (and a refused one none), settling a message twice queues its
//! delivery's fact once, and the EventBridge adapter publishes to the local bus.

use std::sync::Arc;

use aws_sdk_eventbridge::config::{BehaviorVersion, Credentials, Region};
use portal::adapters::dynamodb::DynamoContacts;
use portal::adapters::dynamodb_invitations::{DynamoInvitations, DynamoOutbox};
use portal::adapters::eventbridge::EventBridgeBus;
use portal::domain::contact::{Contact, NewContact};
use portal::domain::email::Email;
use portal::domain::event::{Fact, PortalEvent};
use portal::domain::invitation::{Delivery, Invitation, InvitationCode, InvitationType, Redemption};
use portal::domain::outbox::{MailSecret, MessageKind, MessageStatus, OutboxMessage};
use portal::domain::password::PasswordHashString;
use portal::domain::time::Timestamp;
use portal::ports::{ContactChange, ContactStore, EventBus, InvitationStore, Outbox, RedeemError};
use portal_testkit::moto::{Tables, fresh_tables};

const NOW: Timestamp = Timestamp::from_secs(1_800_000_000);

struct Stores {
    _tables: Tables,
    contacts: Arc<DynamoContacts>,
    invitations: Arc<DynamoInvitations>,
    outbox: DynamoOutbox,
}

fn stores() -> Stores {
    let tables = fresh_tables();
    let contacts =
        Arc::new(DynamoContacts::new(tables.client.clone(), &tables.contacts, &tables.outbox, &tables.audit));
    let invitations =
        Arc::new(DynamoInvitations::new(tables.client.clone(), &tables.invitations, &tables.contacts, &tables.outbox));
    let outbox = DynamoOutbox::new(tables.client.clone(), &tables.outbox).with_invitations(&tables.invitations);
    Stores { _tables: tables, contacts, invitations, outbox }
}

/// The events stored in the outbox table, by fact name then id (the table has no order).
async fn stored_events(s: &Stores) -> Vec<PortalEvent> {
    let mut events: Vec<PortalEvent> = s
        .outbox
        .list()
        .await
        .unwrap()
        .into_iter()
        .filter(|m| m.kind == MessageKind::Event)
        .map(|m| {
            assert_eq!(m.status, MessageStatus::Pending);
            m.event.expect("an event item holds its event")
        })
        .collect();
    events.sort_by(|a, b| (a.detail_type(), a.event_id.as_str()).cmp(&(b.detail_type(), b.event_id.as_str())));
    events
}

async fn invited(s: &Stores) -> (Contact, Invitation) {
    let grace = Contact::new(
        NewContact {
            email: Email::parse(&format!("grace-{}@example.com", uuid::Uuid::new_v4().simple())).unwrap(),
            first_name: "Grace".into(),
            last_name: "Hopper".into(),
            username: None,
            phone: None,
            roles: vec![],
            password_hash: None,
        },
        NOW,
    );
    s.contacts.create(&grace).await.unwrap();
    let code = InvitationCode::generate();
    let invitation = Invitation {
        invitation_id: uuid::Uuid::new_v4().to_string().into(),
        code_digest: code.digest(),
        kind: InvitationType::Single,
        contact_id: grace.contact_id.clone(),
        email: grace.email.to_string(),
        first_name: grace.first_name.clone(),
        last_name: grace.last_name.clone(),
        max_redemptions: 1,
        redemptions: 0,
        expires_at: NOW + 86_400,
        revoked: false,
        roles: vec![],
        account_id: None,
        redirect_path: None,
        created_at: NOW,
        created_by: "admin".into(),
        message_id: uuid::Uuid::new_v4().to_string().into(),
        delivery: Delivery::Pending,
        delivery_error: None,
        delivered_at: None,
    };
    let mut message = OutboxMessage::new(
        MessageKind::Invitation,
        grace.email.as_str(),
        "Grace",
        Some(MailSecret::new(code.display())),
        NOW,
    );
    message.message_id = invitation.message_id.clone();
    message.invitation_id = Some(invitation.invitation_id.clone());
    let created = Fact::InvitationCreated {
        invitation_id: invitation.invitation_id.clone(),
        contact_id: grace.contact_id.clone(),
    };
    s.invitations.create_with_events(&invitation, &message, &[created.at(NOW).into()]).await.unwrap();
    (grace, invitation)
}

fn credentials(contact: &Contact) -> ContactChange {
    let hash: PasswordHashString = serde_json::from_str(
        "\"$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g\"",
    )
    .unwrap();
    ContactChange::SetCredentials {
        contact_id: contact.contact_id.clone(),
        password_hash: hash,
        username: None,
        roles: vec![],
        account_id: None,
        terms: None,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn each_write_queues_its_events_in_its_transaction_and_a_refused_one_none() {
    let s = stores();
    let (grace, invitation) = invited(&s).await;
    assert_eq!(
        stored_events(&s).await.iter().map(|e| &e.fact).collect::<Vec<_>>(),
        [&Fact::InvitationCreated {
            invitation_id: invitation.invitation_id.clone(),
            contact_id: grace.contact_id.clone()
        }]
    );

    let redemption = Redemption {
        invitation_id: invitation.invitation_id.clone(),
        contact_id: grace.contact_id.clone(),
        redeemed_at: NOW + 1,
        source_ip: "198.51.100.7".into(),
    };
    let redeemed = |created| {
        let fact = Fact::InvitationRedeemed {
            invitation_id: invitation.invitation_id.clone(),
            contact_id: grace.contact_id.clone(),
            created,
        };
        vec![portal::domain::outbox::OutboxMessage::for_event(&fact.at(NOW + 1))]
    };
    s.invitations
        .redeem_with_events(&invitation, &credentials(&grace), &redemption, NOW + 1, &redeemed(true))
        .await
        .unwrap();
    // Used up: the transaction is refused, and its event with it.
    let again = s
        .invitations
        .redeem_with_events(&invitation, &credentials(&grace), &redemption, NOW + 2, &redeemed(false))
        .await;
    assert!(matches!(again, Err(RedeemError::InvitationInvalid)), "{again:?}");
    let names: Vec<&str> = stored_events(&s).await.iter().map(|e| e.detail_type()).collect();
    assert_eq!(names, ["InvitationCreated", "InvitationRedeemed"]);

    let revoked = || -> Vec<portal::ports::Queued> {
        vec![Fact::InvitationRevoked { invitation_id: invitation.invitation_id.clone() }.at(NOW + 3).into()]
    };
    let first = s.invitations.revoke_with_events(&invitation.invitation_id, NOW + 3, &revoked()).await.unwrap();
    assert!(first.expect("the revoked invitation").revoked);
    let second = s.invitations.revoke_with_events(&invitation.invitation_id, NOW + 4, &revoked()).await.unwrap();
    assert!(second.expect("still there").revoked, "revoked before: returned as it is");
    let missing = s.invitations.revoke_with_events(&"no-such-invitation".into(), NOW + 4, &revoked()).await.unwrap();
    assert_eq!(missing, None);
    let revocations = stored_events(&s).await.into_iter().filter(|e| e.detail_type() == "InvitationRevoked").count();
    assert_eq!(revocations, 1, "one revocation, one event");

    // A registration: the contact and its event in one write; the taken address, neither.
    let mut ada = grace.clone();
    ada.contact_id = uuid::Uuid::new_v4().to_string().into();
    let registered = Fact::ContactRegistered { contact_id: ada.contact_id.clone(), method: "password".into() }.at(NOW);
    assert!(s.contacts.create_with_emails(&ada, &[registered.into()]).await.is_err(), "grace's address is taken");
    assert!(stored_events(&s).await.iter().all(|e| e.detail_type() != "ContactRegistered"));
}

#[tokio::test(flavor = "multi_thread")]
async fn settling_a_message_twice_queues_its_deliverys_fact_once() {
    let s = stores();
    let (grace, invitation) = invited(&s).await;
    let sent = || {
        vec![
            Fact::InvitationSent {
                invitation_id: invitation.invitation_id.clone(),
                contact_id: Some(grace.contact_id.clone()),
            }
            .at(NOW),
        ]
    };
    // The second write stands for a retry after a first that landed but whose answer was lost.
    s.outbox.mark_sent_with_events(&invitation.message_id, NOW, &sent()).await.unwrap();
    s.outbox.mark_sent_with_events(&invitation.message_id, NOW, &sent()).await.unwrap();
    let delivered = stored_events(&s).await.into_iter().filter(|e| e.detail_type() == "InvitationSent").count();
    assert_eq!(delivered, 1);
    let message = s.outbox.list().await.unwrap().into_iter().find(|m| m.message_id == invitation.message_id).unwrap();
    assert_eq!((message.status, message.secret), (MessageStatus::Sent, None), "sent, and its code removed");

    let (_, other) = invited(&s).await;
    let failed = || {
        vec![Fact::InvitationDeliveryFailed { invitation_id: other.invitation_id.clone(), contact_id: None }.at(NOW)]
    };
    s.outbox.mark_failed_with_events(&other.message_id, "MessageRejected", NOW, &failed()).await.unwrap();
    s.outbox.mark_failed_with_events(&other.message_id, "MessageRejected", NOW, &failed()).await.unwrap();
    let failures =
        stored_events(&s).await.into_iter().filter(|e| e.detail_type() == "InvitationDeliveryFailed").count();
    assert_eq!(failures, 1);
}

fn eventbridge(tables: &Tables) -> aws_sdk_eventbridge::Client {
    let config = aws_sdk_eventbridge::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .http_client(portal::aws::https_client())
        .endpoint_url(tables.endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "tests"))
        .build();
    aws_sdk_eventbridge::Client::from_conf(config)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_eventbridge_adapter_publishes_to_the_bus_and_reports_a_missing_one() {
    let tables = fresh_tables(); // creates the local bus, portal-events, on its server
    let event = Fact::PasswordChanged { contact_id: "c-1".into() }.at(NOW);
    EventBridgeBus::new(eventbridge(&tables), "portal-events").publish(&event).await.expect("published");
    let err = EventBridgeBus::new(eventbridge(&tables), "no-such-bus").publish(&event).await.expect_err("no such bus");
    assert!(format!("{err:#}").contains("PasswordChanged"), "{err:#}");
}
