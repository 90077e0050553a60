//! The administrators' lists against the real DynamoDB API (moto), on tables made from
//! `infra/template.yaml` with its indexes: several pages newest first, each filter, cursors that
//! round-trip through their text, the redeemed state kept by concurrent redemptions, the contacts
//! search, and only `Query` calls (never a `Scan`), counted under the SDK.

use std::sync::Arc;
use std::time::Duration;

use portal::Portal;
use portal::aws::SdkHooks;
use portal::domain::contact::{Contact, NewContact};
use portal::domain::email::Email;
use portal::domain::ids::{ContactId, InvitationId, MessageId};
use portal::domain::invitation::{Delivery, Invitation, InvitationCode, InvitationStatus, InvitationType, Redemption};
use portal::domain::listing::{InvitationFilter, PageRequest, Paged, Position};
use portal::domain::outbox::{MailSecret, MessageKind, OutboxMessage};
use portal::domain::time::Timestamp;
use portal::ports::{ContactChange, ProfileUpdate};
use portal_testkit::faults::FaultyHttp;
use portal_testkit::moto::{aws_portal, fresh_tables};

const NOW: Timestamp = Timestamp::from_secs(1_800_000_000);
/// What a list may call: index queries, and the rows they name read in batches. Never a scan.
const READS: [&str; 2] = ["Query", "BatchGetItem"];

async fn portal_on_moto(faults: &FaultyHttp, name: &str) -> Arc<Portal> {
    let hooks = SdkHooks {
        http_client: Some(faults.shared()),
        initial_backoff: Some(Duration::from_millis(2)),
        retry_partition: Some(name.to_string()),
    };
    Arc::new(aws_portal(&fresh_tables(), &hooks, &[]).await)
}

fn contact(i: i64, email: &str, first: &str, last: &str) -> Contact {
    Contact::new(
        NewContact {
            email: Email::parse(email).unwrap(),
            first_name: first.into(),
            last_name: last.into(),
            username: None,
            phone: None,
            roles: vec![],
            password_hash: None,
        },
        NOW + i,
    )
}

/// Stores an invitation for `contact` created `i` seconds after NOW.
async fn stored_invitation(portal: &Portal, contact: &Contact, i: i64, max: u32) -> Invitation {
    let code = InvitationCode::generate();
    let invitation = Invitation {
        invitation_id: InvitationId::generate(),
        code_digest: code.digest(),
        kind: if max > 1 { InvitationType::Group } else { InvitationType::Single },
        contact_id: contact.contact_id.clone(),
        email: contact.email.to_string(),
        first_name: contact.first_name.clone(),
        last_name: contact.last_name.clone(),
        max_redemptions: max,
        redemptions: 0,
        expires_at: NOW + 86_400 + i,
        revoked: false,
        roles: vec![],
        account_id: None,
        redirect_path: None,
        created_at: NOW + i,
        created_by: "admin".into(),
        message_id: MessageId::generate(),
        delivery: Delivery::Pending,
        delivery_error: None,
        delivered_at: None,
    };
    let mut message = OutboxMessage::new(
        MessageKind::Invitation,
        &invitation.email,
        "Grace",
        Some(MailSecret::new(code.display())),
        NOW,
    );
    message.message_id = invitation.message_id.clone();
    message.invitation_id = Some(invitation.invitation_id.clone());
    portal.invitations.create(&invitation, &message).await.unwrap();
    invitation
}

fn ids(page: &Paged<Invitation>) -> Vec<String> {
    page.items.iter().map(|i| i.invitation_id.to_string()).collect()
}

/// Every page of the filter's list, `limit` at a time, each cursor sent as its text.
async fn every_page(portal: &Portal, filter: &InvitationFilter, limit: usize, now: Timestamp) -> Vec<Vec<String>> {
    let mut pages = Vec::new();
    let mut request = PageRequest::first(limit);
    loop {
        let page = portal.invitations.list(filter, &request, now).await.unwrap();
        pages.push(ids(&page));
        match page.next {
            Some(next) => request.after = Some(Position::decode(&next.encode()).expect("its own cursor")),
            None => return pages,
        }
    }
}

/// The ids of a contact's invitations as `list_for_contact` reads them (newest first).
async fn invitations_of(portal: &Portal, contact: &Contact) -> Vec<String> {
    let listed = portal.invitations.list_for_contact(&contact.contact_id).await.unwrap();
    listed.iter().map(|i| i.invitation_id.to_string()).collect()
}

fn filter(
    status: Option<InvitationStatus>,
    delivery: Option<Delivery>,
    contact: Option<&ContactId>,
) -> InvitationFilter {
    InvitationFilter { status, delivery, contact_id: contact.cloned() }
}

#[tokio::test]
async fn invitations_are_listed_from_indexes_newest_first_in_pages_and_filtered() {
    let faults = FaultyHttp::new();
    let portal = portal_on_moto(&faults, "invitation-list").await;
    let grace = contact(0, "grace@example.com", "Grace", "Hopper");
    let ada = contact(1, "ada@example.com", "Ada", "Lovelace");
    portal.contacts.create(&grace).await.unwrap();
    portal.contacts.create(&ada).await.unwrap();
    let mut all = Vec::new();
    for i in 0..7 {
        let invitee = if i % 2 == 0 { &grace } else { &ada };
        all.push(stored_invitation(&portal, invitee, i, 1).await);
    }
    let newest_first: Vec<String> = all.iter().rev().map(|i| i.invitation_id.to_string()).collect();
    // [6] revoked, [5] redeemed, [4] sent, [3] failed; later, everything open expires.
    portal.invitations.revoke(&all[6].invitation_id, NOW).await.unwrap();
    let redemption = Redemption {
        invitation_id: all[5].invitation_id.clone(),
        contact_id: ada.contact_id.clone(),
        redeemed_at: NOW + 10,
        source_ip: "192.0.2.1".into(),
    };
    let change =
        ContactChange::Assign { contact_id: ada.contact_id.clone(), roles: vec![], account_id: None, terms: None };
    portal.invitations.redeem(&all[5], &change, &redemption, NOW + 10).await.unwrap();
    let store = &portal.invitations;
    store.record_delivery(&all[4].invitation_id, &all[4].message_id, Delivery::Sent, None, NOW).await.unwrap();
    store
        .record_delivery(&all[3].invitation_id, &all[3].message_id, Delivery::Failed, Some("bounced"), NOW)
        .await
        .unwrap();

    faults.forget_calls();
    let now = NOW + 20;
    let pages = every_page(&portal, &InvitationFilter::default(), 3, now).await;
    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [3, 3, 1]);
    assert_eq!(pages.concat(), newest_first);
    let one = |i: usize| vec![all[i].invitation_id.to_string()];
    let listed = |f: InvitationFilter, at: Timestamp| {
        let portal = portal.clone();
        async move { every_page(&portal, &f, 2, at).await.concat() }
    };
    assert_eq!(listed(filter(Some(InvitationStatus::Revoked), None, None), now).await, one(6));
    assert_eq!(listed(filter(Some(InvitationStatus::Redeemed), None, None), now).await, one(5));
    let active: Vec<String> = newest_first[2..].to_vec();
    assert_eq!(listed(filter(Some(InvitationStatus::Active), None, None), now).await, active);
    assert!(listed(filter(Some(InvitationStatus::Expired), None, None), now).await.is_empty());
    assert_eq!(listed(filter(None, Some(Delivery::Sent), None), now).await, one(4));
    assert_eq!(listed(filter(None, Some(Delivery::Failed), None), now).await, one(3));
    assert_eq!(listed(filter(None, Some(Delivery::Pending), None), now).await.len(), 5);
    let graces: Vec<String> = [6, 4, 2, 0].iter().flat_map(|&i| one(i)).collect();
    assert_eq!(listed(filter(None, None, Some(&grace.contact_id)), now).await, graces);
    assert_eq!(
        listed(filter(Some(InvitationStatus::Active), Some(Delivery::Pending), Some(&grace.contact_id)), now).await,
        [one(2), one(0)].concat()
    );
    // A day later the open ones have expired; the revoked and the redeemed have not.
    let later = NOW + 86_400 + 100;
    assert_eq!(listed(filter(Some(InvitationStatus::Expired), None, None), later).await, active);
    assert!(listed(filter(Some(InvitationStatus::Active), None, None), later).await.is_empty());
    assert_eq!(listed(filter(Some(InvitationStatus::Redeemed), None, None), later).await, one(5));
    let calls = faults.operations();
    assert!(!calls.is_empty() && calls.iter().all(|op| READS.contains(&op.as_str())), "never a scan: {calls:?}");
    // A resend sets the delivery back to pending: the index follows.
    let replaced = portal.invitations.get(&all[4].invitation_id).await.unwrap().unwrap();
    let message = OutboxMessage::new(MessageKind::Invitation, &replaced.email, "Grace", None, NOW);
    assert!(store.replace_code(&replaced, &InvitationCode::generate().digest(), &message, &[]).await.unwrap());
    assert!(listed(filter(None, Some(Delivery::Sent), None), now).await.is_empty());
}

#[tokio::test]
async fn the_last_redemption_of_a_group_invitation_marks_it_redeemed_even_from_a_stale_read() {
    let faults = FaultyHttp::new();
    let portal = portal_on_moto(&faults, "group-last").await;
    let members: Vec<Contact> =
        (0..3).map(|i| contact(i, &format!("member{i}@example.com"), "Member", &format!("N{i}"))).collect();
    for member in &members {
        portal.contacts.create(member).await.unwrap();
    }
    let group = stored_invitation(&portal, &members[0], 0, 2).await;
    let redeem = |who: &Contact, read: &Invitation| {
        let (portal, read, who) = (portal.clone(), read.clone(), who.clone());
        async move {
            let redemption = Redemption {
                invitation_id: read.invitation_id.clone(),
                contact_id: who.contact_id.clone(),
                redeemed_at: NOW + 5,
                source_ip: "192.0.2.1".into(),
            };
            let change = ContactChange::Assign {
                contact_id: who.contact_id.clone(),
                roles: vec![],
                account_id: None,
                terms: None,
            };
            portal.invitations.redeem(&read, &change, &redemption, NOW + 5).await
        }
    };
    let redeemed = filter(Some(InvitationStatus::Redeemed), None, None);
    redeem(&members[1], &group).await.unwrap();
    assert!(every_page(&portal, &redeemed, 10, NOW + 6).await.concat().is_empty(), "one of two");
    // Read before the first redemption, this one is nonetheless the last: the state follows.
    redeem(&members[2], &group).await.unwrap();
    assert_eq!(every_page(&portal, &redeemed, 10, NOW + 6).await.concat(), [group.invitation_id.to_string()]);
    assert!(redeem(&members[0], &group).await.is_err(), "used up");
    let stored = portal.invitations.get(&group.invitation_id).await.unwrap().unwrap();
    assert_eq!(stored.redemptions, 2);
}

fn emails(page: &Paged<Contact>) -> Vec<String> {
    page.items.iter().map(|c| c.email.to_string()).collect()
}

async fn search_all(portal: &Portal, prefix: &str, limit: usize) -> Vec<String> {
    let mut found = Vec::new();
    let mut request = PageRequest::first(limit);
    loop {
        let page = portal.contacts.list_page(prefix, &request).await.unwrap();
        assert!(page.items.len() <= limit);
        found.extend(emails(&page));
        match page.next {
            Some(next) => request.after = Some(Position::decode(&next.encode()).unwrap()),
            None => return found,
        }
    }
}

#[tokio::test]
async fn contacts_are_listed_and_searched_by_prefix_from_indexes() {
    let faults = FaultyHttp::new();
    let portal = portal_on_moto(&faults, "contact-list").await;
    let people = [
        contact(1, "Grace@Navy.example", "Grace", "Hopper"),
        contact(2, "ada@example.com", "Ada", "Lovelace"),
        contact(3, "hopper.fan@example.com", "Gracey", "Smith"),
        contact(4, "alan@example.com", "Alan", "Turing"),
        contact(5, "grace.b@example.com", "Bea", "Graceful"),
    ];
    for person in &people {
        portal.contacts.create(person).await.unwrap();
    }
    faults.forget_calls();
    let newest: Vec<String> = people.iter().rev().map(|c| c.email.to_string()).collect();
    assert_eq!(search_all(&portal, "", 2).await, newest);
    let mut grace = search_all(&portal, "grace", 1).await;
    grace.sort();
    assert_eq!(grace, ["Grace@Navy.example", "grace.b@example.com", "hopper.fan@example.com"], "each once");
    assert_eq!(search_all(&portal, "grace", 50).await.len(), 3);
    let mut hopper = search_all(&portal, "hopper", 1).await;
    hopper.sort();
    assert_eq!(hopper, ["Grace@Navy.example", "hopper.fan@example.com"]);
    assert_eq!(search_all(&portal, "lovelace", 5).await, ["ada@example.com"]);
    assert!(search_all(&portal, "ovelace", 5).await.is_empty());
    assert!(faults.operations().iter().all(|op| READS.contains(&op.as_str())), "{:?}", faults.operations());
    // A renamed contact is found by the new name only.
    let update =
        ProfileUpdate { first_name: "Augusta".into(), last_name: "King".into(), phone: None, pending_email: None };
    portal.contacts.update_profile(&people[1], &update, NOW + 50, &[]).await.unwrap();
    assert_eq!(search_all(&portal, "king", 5).await, ["ada@example.com"]);
    assert!(search_all(&portal, "lovelace", 5).await.is_empty());
    assert_eq!(search_all(&portal, "", 50).await, newest, "the list order is the creation's");
}

#[tokio::test]
async fn items_stored_before_the_indexes_join_the_lists_after_the_backfill() {
    let tables = fresh_tables();
    let portal = tables.portal(&[]);
    let old = contact(7, "old.timer@example.com", "Old", "Timer");
    // As an older version stored them: no list keys.
    let mut contact_item: serde_dynamo::Item = serde_dynamo::to_item(&old).unwrap();
    contact_item.insert("pk".into(), serde_dynamo::AttributeValue::S(format!("CONTACT#{}", old.contact_id)));
    tables.client.put_item().table_name(&tables.contacts).set_item(Some(contact_item.into())).send().await.unwrap();
    // As the version before the shards stored one: every contact in the one partition CONTACT.
    let unsharded = contact(8, "one.partition@example.com", "One", "Partition");
    let mut unsharded_item: serde_dynamo::Item = serde_dynamo::to_item(&unsharded).unwrap();
    for (name, value) in [
        ("pk", format!("CONTACT#{}", unsharded.contact_id)),
        ("list_pk", "CONTACT".to_string()),
        ("list_sk", format!("{:012}#{}", unsharded.created_at.as_secs(), unsharded.contact_id)),
        ("first_name_key", "one#x".to_string()),
        ("last_name_key", "partition#x".to_string()),
    ] {
        unsharded_item.insert(name.into(), serde_dynamo::AttributeValue::S(value));
    }
    tables.client.put_item().table_name(&tables.contacts).set_item(Some(unsharded_item.into())).send().await.unwrap();
    let invitation = stored_invitation(&portal, &old, 0, 1).await;
    tables
        .client
        .update_item()
        .table_name(&tables.invitations)
        .key("pk", aws_sdk_dynamodb::types::AttributeValue::S(format!("INVITATION#{}", invitation.invitation_id)))
        .key("sk", aws_sdk_dynamodb::types::AttributeValue::S("INVITATION".into()))
        .update_expression("REMOVE list_pk, list_sk, list_state, list_delivery")
        .send()
        .await
        .unwrap();
    let everything = InvitationFilter::default();
    assert!(portal.invitations.list(&everything, &PageRequest::first(10), NOW).await.unwrap().items.is_empty());
    assert!(portal.contacts.list_page("old", &PageRequest::first(10)).await.unwrap().items.is_empty());
    assert!(portal.contacts.list_page("", &PageRequest::first(10)).await.unwrap().items.is_empty());

    let done =
        portal::adapters::dynamodb_listing::backfill_list_keys(&tables.client, &tables.contacts, &tables.invitations)
            .await
            .unwrap();
    assert_eq!((done.contacts, done.invitations, done.changed_meanwhile), (2, 1, 0));
    assert_eq!(
        emails(&portal.contacts.list_page("", &PageRequest::first(10)).await.unwrap()),
        ["one.partition@example.com", "old.timer@example.com"]
    );
    let listed = portal.invitations.list(&everything, &PageRequest::first(10), NOW).await.unwrap();
    assert_eq!(ids(&listed), [invitation.invitation_id.to_string()]);
    let active = filter(Some(InvitationStatus::Active), None, None);
    assert_eq!(portal.invitations.list(&active, &PageRequest::first(10), NOW).await.unwrap().items.len(), 1);
    assert_eq!(
        emails(&portal.contacts.list_page("timer", &PageRequest::first(10)).await.unwrap()),
        ["old.timer@example.com"]
    );
    let again =
        portal::adapters::dynamodb_listing::backfill_list_keys(&tables.client, &tables.contacts, &tables.invitations)
            .await
            .unwrap();
    assert_eq!(again, Default::default(), "nothing left to do");
}

#[tokio::test]
async fn a_group_invitation_redeemed_by_a_parallel_burst_ends_in_the_redeemed_list() {
    let faults = FaultyHttp::new();
    let portal = portal_on_moto(&faults, "group-burst").await;
    let members: Vec<Contact> =
        (0..6).map(|i| contact(i, &format!("burst{i}@example.com"), "Burst", &format!("N{i}"))).collect();
    for member in &members {
        portal.contacts.create(member).await.unwrap();
    }
    let group = stored_invitation(&portal, &members[0], 0, 3).await;
    // Every redeemer read the invitation before any redemption.
    let attempts = members.iter().map(|who| {
        let (portal, group, who) = (portal.clone(), group.clone(), who.clone());
        async move {
            let redemption = Redemption {
                invitation_id: group.invitation_id.clone(),
                contact_id: who.contact_id.clone(),
                redeemed_at: NOW + 5,
                source_ip: "192.0.2.1".into(),
            };
            let change = ContactChange::Assign {
                contact_id: who.contact_id.clone(),
                roles: vec![],
                account_id: None,
                terms: None,
            };
            portal.invitations.redeem(&group, &change, &redemption, NOW + 5).await.is_ok()
        }
    });
    let wins = futures::future::join_all(attempts).await.into_iter().filter(|won| *won).count();
    assert!((1..=3).contains(&wins), "{wins}");
    let stored = portal.invitations.get(&group.invitation_id).await.unwrap().unwrap();
    assert_eq!(stored.redemptions as usize, wins, "one count per success");
    let redeemed =
        every_page(&portal, &filter(Some(InvitationStatus::Redeemed), None, None), 10, NOW + 6).await.concat();
    let open = every_page(&portal, &filter(Some(InvitationStatus::Active), None, None), 10, NOW + 6).await.concat();
    let id = group.invitation_id.to_string();
    match stored.redemptions {
        3 => assert_eq!((redeemed, open), (vec![id], vec![])),
        _ => assert_eq!((redeemed, open), (vec![], vec![id])),
    }
}

#[tokio::test]
async fn invitations_made_in_the_same_second_list_newest_first_exactly() {
    // Sort keys are `<second>#<id>`; ids are time-ordered, so the second does not decide alone.
    let portal = portal_on_moto(&FaultyHttp::new(), "same-second").await;
    let grace = contact(0, "grace@example.com", "Grace", "Hopper");
    portal.contacts.create(&grace).await.unwrap();
    let mut made = Vec::new();
    for _ in 0..5 {
        made.push(stored_invitation(&portal, &grace, 0, 1).await.invitation_id.to_string());
    }
    made.reverse();
    assert_eq!(every_page(&portal, &InvitationFilter::default(), 2, NOW).await.concat(), made);
    assert_eq!(every_page(&portal, &filter(None, None, Some(&grace.contact_id)), 2, NOW).await.concat(), made);
    assert_eq!(invitations_of(&portal, &grace).await, made);
}

#[tokio::test]
async fn a_list_spread_over_its_shards_pages_to_the_end_with_no_duplicate_and_no_gap() {
    let portal = portal_on_moto(&FaultyHttp::new(), "shards").await;
    // 40 contacts, 10 to a second (ids time-ordered within it).
    let mut people = Vec::new();
    for i in 0..40 {
        let person = contact(i / 10, &format!("p{i:02}@example.com"), "Pat", &format!("Shard{i:02}"));
        portal.contacts.create(&person).await.unwrap();
        people.push(person);
    }
    let shards: std::collections::HashSet<u32> =
        people.iter().map(|p| portal::adapters::dynamodb_list_keys::shard_of(&p.contact_id)).collect();
    assert!(shards.len() > 4, "spread over the shards: {shards:?}");
    let newest: Vec<String> = people.iter().rev().map(|c| c.email.to_string()).collect();
    for limit in [1, 7, 40, 200] {
        assert_eq!(search_all(&portal, "", limit).await, newest, "pages of {limit}");
    }
    let mut found = search_all(&portal, "shard", 3).await;
    assert_eq!(found.len(), 40, "each once");
    found.sort();
    let mut all: Vec<String> = people.iter().map(|c| c.email.to_string()).collect();
    all.sort();
    assert_eq!(found, all);
}

#[tokio::test]
async fn redemptions_and_a_contacts_invitations_are_read_past_one_page() {
    let tables = fresh_tables();
    let portal = tables.portal(&[]);
    let grace = contact(0, "grace@example.com", "Grace", "Hopper");
    portal.contacts.create(&grace).await.unwrap();
    let group = stored_invitation(&portal, &grace, 0, 100).await;
    // 30 redemptions of 40 KB each (padded as a later version might store them): 1.2 MB, more
    // than the 1 MB one query returns.
    let mut written = Vec::new();
    for i in 0..30 {
        let redemption = Redemption {
            invitation_id: group.invitation_id.clone(),
            contact_id: ContactId::generate(),
            redeemed_at: NOW + i,
            source_ip: "192.0.2.1".into(),
        };
        let mut item: serde_dynamo::Item = serde_dynamo::to_item(&redemption).unwrap();
        let keys = [
            ("pk", format!("INVITATION#{}", group.invitation_id)),
            ("sk", format!("REDEMPTION#{:012}#{}", redemption.redeemed_at.as_secs(), redemption.contact_id)),
            ("padding", "x".repeat(40_000)),
        ];
        for (name, value) in keys {
            item.insert(name.into(), serde_dynamo::AttributeValue::S(value));
        }
        tables.client.put_item().table_name(&tables.invitations).set_item(Some(item.into())).send().await.unwrap();
        written.push(redemption.contact_id.to_string());
    }
    let read: Vec<String> = portal
        .invitations
        .redemptions(&group.invitation_id)
        .await
        .unwrap()
        .iter()
        .map(|r| r.contact_id.to_string())
        .collect();
    assert_eq!(read, written, "every redemption, in order");
    // 110 invitations of one contact: more than one BatchGetItem (100 keys) reads them.
    let mut made = vec![group.invitation_id.to_string()];
    for i in 1..110 {
        made.push(stored_invitation(&portal, &grace, i, 1).await.invitation_id.to_string());
    }
    made.reverse();
    assert_eq!(invitations_of(&portal, &grace).await, made);
}
