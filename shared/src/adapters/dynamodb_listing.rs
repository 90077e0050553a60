//! The administrators' lists, read from global secondary indexes (never a scan).
//!
//! No list index has a constant partition: each is spread over [`LIST_SHARDS`](super::dynamodb_list_keys::LIST_SHARDS) shards
//! (`<value>#<shard>`, the shard a hash of the item's id; see `dynamodb_list_keys`), and a page
//! queries every shard and merges them newest first (`merge_newest`). The indexes project the keys
//! and the few attributes their filters read, not the items: a page reads the rows themselves
//! with `BatchGetItem`, and an update that changes nothing an index holds writes no index.
//!
//! Invitations table: the invitation item carries `list_pk` (`INVITATION#<shard>`), `list_sk`
//! (creation second, fixed width, and the time-ordered id: newest first when read backwards),
//! `list_state` (`open#<shard>`, `redeemed#...`, `revoked#...`: the status without the clock) and
//! `list_delivery` (`pending#<shard>`...). Indexes, each sorted by `list_sk`, projecting
//! `list_state`, `delivery` and `expires_at`:
//! - `by-created` on `list_pk`: every invitation;
//! - `by-state` on `list_state`: `status=redeemed|revoked` directly; `active` and `expired` are
//!   the open ones with `expires_at` after or not after now, a filter on the same query (the list
//!   stays newest first, which an expiry-sorted key would not give);
//! - `by-delivery` on `list_delivery` (written with every write of `delivery`);
//! - `by-contact-created` on `contact_id` (one partition per contact: not sharded).
//!
//! One read of every shard per page on the most selective index the filters name (contact, then
//! delivery, then state); the other filters apply to the same queries as a filter expression. A
//! page's bound is built from the cursor's position, never taken from the client.
//!
//! Contacts table: the contact item carries `list_pk` (`CONTACT#<shard>`), `list_sk`, and the
//! search keys `first_name_key` and `last_name_key` (`<case-folded name>#<time counted down>#<id>`:
//! unique, and the same name newest first). Indexes on `list_pk`: `contacts-by-created`
//! (`list_sk`, keys only), `contacts-by-email` (`email_normalized`), `contacts-by-first-name` and
//! `contacts-by-last-name`, the three search indexes projecting all three search keys and
//! `list_sk`. A search reads each shard of the three search indexes from the cursor's key with
//! `BETWEEN <prefix> AND <prefix>U+10FFFF` and merges them in key order; a contact found by two
//! keys is shown once, at its smallest matching key, and only the contacts shown are read.

use std::collections::HashMap;

use anyhow::Context;
use aws_sdk_dynamodb::types::AttributeValue;

use super::dynamodb::{ContactItem, DynamoContacts, Item, sdk_error};
use super::dynamodb_invitations::{DynamoInvitations, InvitationItem};
use super::dynamodb_list_keys::{
    CONTACT_LIST_PK, INVITATION_LIST_PK, ListedContact, ListedInvitation, SearchHit, all_shards, merge_search, text,
};
use super::dynamodb_pages::{NewestFirst, batch_get_in_order};
use crate::domain::contact::Contact;
use crate::domain::invitation::{Invitation, InvitationStatus};
use crate::domain::listing::{InvitationFilter, PageRequest, Paged, Position, StoredState};
use crate::domain::time::Timestamp;

/// Above every character: `<prefix><this>` ends the range of keys starting with the prefix.
const HIGHEST: char = '\u{10FFFF}';
/// The invitations table's key attributes (a list reads keys from an index, then the items).
const INVITATION_KEYS: [&str; 2] = ["pk", "sk"];
/// The contacts table's key attribute.
const CONTACT_KEYS: [&str; 1] = ["pk"];

/// Which index a filter reads, and its partitions (the shards of one value, or one contact's).
struct IndexChoice {
    index: &'static str,
    partition_attribute: &'static str,
    partitions: Vec<String>,
}

fn invitation_index(filter: &InvitationFilter) -> IndexChoice {
    if let Some(contact_id) = &filter.contact_id {
        IndexChoice {
            index: "by-contact-created",
            partition_attribute: "contact_id",
            partitions: vec![contact_id.to_string()],
        }
    } else if let Some(delivery) = filter.delivery {
        IndexChoice {
            index: "by-delivery",
            partition_attribute: "list_delivery",
            partitions: all_shards(delivery.as_str()),
        }
    } else if let Some(status) = filter.status {
        IndexChoice {
            index: "by-state",
            partition_attribute: "list_state",
            partitions: all_shards(StoredState::of_status(status).as_str()),
        }
    } else {
        IndexChoice { index: "by-created", partition_attribute: "list_pk", partitions: all_shards(INVITATION_LIST_PK) }
    }
}

impl DynamoInvitations {
    pub(super) async fn list_page(
        &self,
        filter: &InvitationFilter,
        page: &PageRequest,
        now: Timestamp,
    ) -> anyhow::Result<Paged<Invitation>> {
        let choice = invitation_index(filter);
        // The filters the index does not answer, on the same query (each index projects
        // `list_state`, `delivery` and `expires_at` for them).
        let mut conditions = Vec::new();
        let mut values: HashMap<String, AttributeValue> = HashMap::new();
        if let (Some(delivery), false) = (filter.delivery, choice.partition_attribute == "list_delivery") {
            conditions.push("delivery = :delivery");
            values.insert(":delivery".into(), text(delivery.as_str()));
        }
        if let Some(status) = filter.status {
            if choice.partition_attribute != "list_state" {
                conditions.push("begins_with(list_state, :state)");
                values.insert(":state".into(), text(&format!("{}#", StoredState::of_status(status).as_str())));
            }
            match status {
                InvitationStatus::Active => conditions.push("expires_at > :now"),
                InvitationStatus::Expired => conditions.push("expires_at <= :now"),
                InvitationStatus::Redeemed | InvitationStatus::Revoked => {}
            }
            if matches!(status, InvitationStatus::Active | InvitationStatus::Expired) {
                values.insert(":now".into(), super::dynamodb::number(now));
            }
        }
        let query = NewestFirst {
            client: &self.client,
            table: &self.invitations_table,
            index: choice.index,
            partition_attribute: choice.partition_attribute,
            filter: (!conditions.is_empty()).then(|| conditions.join(" AND ")),
            values,
            doing: "listing invitations",
        };
        let after = page.after.as_ref().map(Position::sort_key);
        let (rows, next) = query.page(&choice.partitions, after, page.limit).await?;
        let keys = rows.into_iter().map(|(_, keys)| keys).collect();
        let items = batch_get_in_order(&self.client, &self.invitations_table, &INVITATION_KEYS, keys).await?;
        let invitations = items
            .into_iter()
            .map(|item| {
                Ok(serde_dynamo::from_item::<_, InvitationItem>(item)
                    .context("reading a listed invitation")?
                    .invitation)
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Paged { items: invitations, next: next.as_deref().and_then(Position::from_sort_key) })
    }
}

/// One of the contacts' search indexes: its name and the attribute it is sorted by.
struct SearchIndex {
    index: &'static str,
    key_attribute: &'static str,
}

const SEARCH_INDEXES: [SearchIndex; 3] = [
    SearchIndex { index: "contacts-by-email", key_attribute: "email_normalized" },
    SearchIndex { index: "contacts-by-first-name", key_attribute: "first_name_key" },
    SearchIndex { index: "contacts-by-last-name", key_attribute: "last_name_key" },
];

impl DynamoContacts {
    pub(super) async fn list_contacts(&self, prefix: &str, page: &PageRequest) -> anyhow::Result<Paged<Contact>> {
        if prefix.is_empty() {
            return self.list_newest(page).await;
        }
        let from = page.after.as_ref().and_then(|a| a.key.clone()).unwrap_or_else(|| prefix.to_string());
        let to = format!("{prefix}{HIGHEST}");
        if from > to {
            return Ok(Paged { items: Vec::new(), next: None });
        }
        let shards = all_shards(CONTACT_LIST_PK);
        let range = (from.as_str(), to.as_str());
        let reads = SEARCH_INDEXES
            .iter()
            .flat_map(|search| shards.iter().map(move |shard| self.search_index(search, shard, range, page.limit + 1)));
        let streams = futures::future::try_join_all(reads).await?;
        // The cursor's own row was shown already.
        let streams = streams
            .into_iter()
            .map(|(rows, more)| {
                (rows.into_iter().filter(|(key, _)| page.after.is_none() || *key != from).collect(), more)
            })
            .collect();
        let hits: Paged<SearchHit> = merge_search(prefix, streams, page.limit);
        let keys = hits.items.iter().map(|hit| HashMap::from([("pk".to_string(), text(&hit.pk))])).collect();
        let contacts = self.read_listed(keys).await?;
        Ok(Paged { items: contacts, next: hits.next })
    }

    async fn search_index(
        &self,
        search: &SearchIndex,
        shard: &str,
        (from, to): (&str, &str),
        limit: usize,
    ) -> anyhow::Result<(Vec<(String, SearchHit)>, bool)> {
        let output = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(search.index)
            .key_condition_expression("list_pk = :shard AND #key BETWEEN :from AND :to")
            .expression_attribute_names("#key", search.key_attribute)
            .expression_attribute_values(":shard", text(shard))
            .expression_attribute_values(":from", text(from))
            .expression_attribute_values(":to", text(to))
            .limit(limit.try_into().unwrap_or(i32::MAX))
            .send()
            .await
            .map_err(|e| sdk_error("searching contacts", e))?;
        let mut rows = Vec::new();
        for item in output.items.unwrap_or_default() {
            let key = item.get(search.key_attribute).and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
            let hit: SearchHit = serde_dynamo::from_item(item).context("reading a search index row")?;
            rows.push((key, hit));
        }
        Ok((rows, output.last_evaluated_key.is_some()))
    }

    async fn list_newest(&self, page: &PageRequest) -> anyhow::Result<Paged<Contact>> {
        let query = NewestFirst {
            client: &self.client,
            table: &self.table,
            index: "contacts-by-created",
            partition_attribute: "list_pk",
            filter: None,
            values: HashMap::new(),
            doing: "listing contacts",
        };
        let after = page.after.as_ref().map(Position::sort_key);
        let (rows, next) = query.page(&all_shards(CONTACT_LIST_PK), after, page.limit).await?;
        let contacts = self.read_listed(rows.into_iter().map(|(_, keys)| keys).collect()).await?;
        Ok(Paged { items: contacts, next: next.as_deref().and_then(Position::from_sort_key) })
    }

    /// The contacts an index's rows name, in their order.
    async fn read_listed(&self, keys: Vec<Item>) -> anyhow::Result<Vec<Contact>> {
        let items = batch_get_in_order(&self.client, &self.table, &CONTACT_KEYS, keys).await?;
        items
            .into_iter()
            .map(|item| {
                Ok(serde_dynamo::from_item::<_, ContactItem>(item).context("reading a listed contact")?.contact)
            })
            .collect()
    }
}

/// What a backfill did: items given their list keys, and items that changed meanwhile (left to a
/// second run; a rename or redemption writes the keys itself).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Backfilled {
    pub contacts: usize,
    pub invitations: usize,
    pub changed_meanwhile: usize,
}

/// Gives contacts and invitations stored before the list indexes existed (or before they were
/// sharded) their list keys, so that the lists show them. An operator's one-off (`portal-admin backfill-lists`): it scans both
/// tables, which no function does; each item is updated only if it still has no keys and is as
/// read.
pub async fn backfill_list_keys(
    client: &aws_sdk_dynamodb::Client,
    contacts_table: &str,
    invitations_table: &str,
) -> anyhow::Result<Backfilled> {
    let mut done = Backfilled::default();
    let contacts = scan_all(
        client,
        contacts_table,
        "begins_with(pk, :prefix) AND (attribute_not_exists(list_sk) OR list_pk = :unsharded)",
        HashMap::from([(":prefix".to_string(), text("CONTACT#")), (":unsharded".to_string(), text(CONTACT_LIST_PK))]),
    )
    .await?;
    for item in contacts {
        let stored: ContactItem = serde_dynamo::from_item(item).context("reading a contact to backfill")?;
        let listed = ListedContact::of(&stored.contact);
        let mut values = listed.update_values();
        values.insert(":first".into(), text(&stored.contact.first_name));
        values.insert(":last".into(), text(&stored.contact.last_name));
        values.insert(":unsharded".into(), text(CONTACT_LIST_PK));
        let result = client
            .update_item()
            .table_name(contacts_table)
            .key("pk", text(&stored.pk))
            .update_expression(
                "SET list_pk = :list_pk, list_sk = :list_sk, first_name_key = :first_key, last_name_key = :last_key",
            )
            .condition_expression(
                "attribute_exists(pk) AND (attribute_not_exists(list_sk) OR list_pk = :unsharded) \
                 AND first_name = :first AND last_name = :last",
            )
            .set_expression_attribute_values(Some(values))
            .send()
            .await;
        match result {
            Ok(_) => done.contacts += 1,
            Err(err) if super::dynamodb::is_conditional_failure(&err) => done.changed_meanwhile += 1,
            Err(err) => return Err(sdk_error("backfilling a contact's list keys", err)),
        }
    }
    let invitations = scan_all(
        client,
        invitations_table,
        "sk = :invitation AND (attribute_not_exists(list_sk) OR attribute_not_exists(list_delivery))",
        HashMap::from([(":invitation".to_string(), text("INVITATION"))]),
    )
    .await?;
    for item in invitations {
        let pk = item.get("pk").and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
        let stored: InvitationItem = serde_dynamo::from_item(item).context("reading an invitation to backfill")?;
        let listed = ListedInvitation::of(&stored.invitation);
        let result = client
            .update_item()
            .table_name(invitations_table)
            .key("pk", text(&pk))
            .key("sk", text("INVITATION"))
            .update_expression(
                "SET list_pk = :list_pk, list_sk = :list_sk, list_state = :state, list_delivery = :list_delivery",
            )
            .condition_expression(
                "(attribute_not_exists(list_sk) OR attribute_not_exists(list_delivery)) \
                 AND redemptions = :redemptions AND revoked = :revoked AND delivery = :delivery",
            )
            .expression_attribute_values(":list_pk", text(&listed.list_pk))
            .expression_attribute_values(":list_sk", text(&listed.list_sk))
            .expression_attribute_values(":state", text(&listed.list_state))
            .expression_attribute_values(":list_delivery", text(&listed.list_delivery))
            .expression_attribute_values(":delivery", text(stored.invitation.delivery.as_str()))
            .expression_attribute_values(":redemptions", super::dynamodb::number(stored.invitation.redemptions))
            .expression_attribute_values(":revoked", AttributeValue::Bool(stored.invitation.revoked))
            .send()
            .await;
        match result {
            Ok(_) => done.invitations += 1,
            Err(err) if super::dynamodb::is_conditional_failure(&err) => done.changed_meanwhile += 1,
            Err(err) => return Err(sdk_error("backfilling an invitation's list keys", err)),
        }
    }
    Ok(done)
}

async fn scan_all(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    filter: &str,
    values: HashMap<String, AttributeValue>,
) -> anyhow::Result<Vec<Item>> {
    let mut found = Vec::new();
    let mut start: Option<Item> = None;
    loop {
        let page = client
            .scan()
            .table_name(table)
            .filter_expression(filter)
            .set_expression_attribute_values(Some(values.clone()))
            .set_exclusive_start_key(start.take())
            .send()
            .await
            .map_err(|e| sdk_error("scanning for items without list keys", e))?;
        found.extend(page.items.unwrap_or_default());
        match page.last_evaluated_key {
            Some(key) => start = Some(key),
            None => return Ok(found),
        }
    }
}
