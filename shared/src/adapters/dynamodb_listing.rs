//! The administrators' lists, read from global secondary indexes (never a scan).
//!
//! Invitations table: the invitation item carries `list_pk` (the constant `INVITATION`), `list_sk`
//! (creation time, fixed width, and id: newest first when read backwards) and `list_state`
//! (`open`, `redeemed`, `revoked`: the status without the clock). Indexes, each sorted by
//! `list_sk`, projecting the whole invitation (a row shows most of it and it holds no secret):
//! - `by-created` on `list_pk`: every invitation;
//! - `by-state` on `list_state`: `status=redeemed|revoked` directly; `active` and `expired` are
//!   the open ones with `expires_at` after or not after now, a filter on the same query (the list
//!   stays newest first, which an expiry-sorted key would not give);
//! - `by-delivery` on `delivery` (the attribute the outbox consumer already keeps up to date);
//! - `by-contact-created` on `contact_id`.
//!
//! The keys themselves, as the items carry them: `dynamodb_list_keys`.
//!
//! One query per page on the most selective index the filters name (contact, then delivery, then
//! state); the other filters apply to the same query as a filter expression. A page's start key is
//! built from the cursor's position, never taken from the client.
//!
//! Contacts table: the contact item carries `list_pk` (`CONTACT`), `list_sk`, and the search keys
//! `first_name_key` and `last_name_key` (`<case-folded name>#<time counted down>#<id>`: unique, and
//! the same name newest first). Indexes on
//! `list_pk`: `contacts-by-created` (`list_sk`), `contacts-by-email` (`email_normalized`),
//! `contacts-by-first-name` and `contacts-by-last-name`. A search reads the three search indexes
//! from the cursor's key with `BETWEEN <prefix> AND <prefix>U+10FFFF` and merges them in key order;
//! a contact found by two keys is shown once, at its smallest matching key.

use std::collections::HashMap;

use anyhow::Context;
use aws_sdk_dynamodb::types::AttributeValue;

use super::dynamodb::{ContactItem, DynamoContacts, Item, contact_pk, sdk_error};
use super::dynamodb_invitations::{DynamoInvitations, InvitationItem};
use super::dynamodb_list_keys::{
    CONTACT_LIST_PK, INVITATION_LIST_PK, ListedContact, ListedInvitation, merge_search, text,
};
use crate::domain::contact::Contact;
use crate::domain::ids::ContactId;
use crate::domain::invitation::{Invitation, InvitationStatus};
use crate::domain::listing::{InvitationFilter, PageRequest, Paged, Position, StoredState};
use crate::domain::time::Timestamp;

/// Queries one page may take when filters drop rows (each reads at most a page of the index).
const MAX_QUERIES_PER_PAGE: usize = 8;
/// Above every character: `<prefix><this>` ends the range of keys starting with the prefix.
const HIGHEST: char = '\u{10FFFF}';

/// Which index a filter reads, and its partition.
struct IndexChoice {
    index: &'static str,
    partition_attribute: &'static str,
    partition: String,
}

fn invitation_index(filter: &InvitationFilter) -> IndexChoice {
    if let Some(contact_id) = &filter.contact_id {
        IndexChoice {
            index: "by-contact-created",
            partition_attribute: "contact_id",
            partition: contact_id.to_string(),
        }
    } else if let Some(delivery) = filter.delivery {
        let partition = serde_json::to_value(delivery).ok().and_then(|v| v.as_str().map(str::to_string));
        IndexChoice { index: "by-delivery", partition_attribute: "delivery", partition: partition.unwrap_or_default() }
    } else if let Some(status) = filter.status {
        IndexChoice {
            index: "by-state",
            partition_attribute: "list_state",
            partition: StoredState::of_status(status).as_str().into(),
        }
    } else {
        IndexChoice { index: "by-created", partition_attribute: "list_pk", partition: INVITATION_LIST_PK.into() }
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
        // The filters the index does not answer, on the same query.
        let mut conditions = Vec::new();
        let mut values: HashMap<String, AttributeValue> =
            HashMap::from([(":partition".to_string(), text(&choice.partition))]);
        if let (Some(delivery), false) = (filter.delivery, choice.partition_attribute == "delivery") {
            conditions.push("delivery = :delivery");
            values.insert(":delivery".into(), serde_dynamo::to_attribute_value(delivery)?);
        }
        if let Some(status) = filter.status {
            if choice.partition_attribute != "list_state" {
                conditions.push("list_state = :state");
                values.insert(":state".into(), text(StoredState::of_status(status).as_str()));
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
        let mut start = page.after.as_ref().map(|after| {
            HashMap::from([
                ("pk".to_string(), text(&format!("INVITATION#{}", after.id))),
                ("sk".to_string(), text("INVITATION")),
                ("list_sk".to_string(), text(&after.sort_key())),
                (choice.partition_attribute.to_string(), text(&choice.partition)),
            ])
        });
        let mut found = Vec::new();
        for _ in 0..MAX_QUERIES_PER_PAGE {
            // One more than needed tells whether another page follows.
            let wanted = page.limit + 1 - found.len();
            let mut query = self
                .client
                .query()
                .table_name(&self.invitations_table)
                .index_name(choice.index)
                .key_condition_expression(format!("{} = :partition", choice.partition_attribute))
                .set_expression_attribute_values(Some(values.clone()))
                .scan_index_forward(false)
                .limit(wanted.try_into().unwrap_or(i32::MAX))
                .set_exclusive_start_key(start.take());
            if !conditions.is_empty() {
                query = query.filter_expression(conditions.join(" AND "));
            }
            let output = query.send().await.map_err(|e| sdk_error("listing invitations", e))?;
            for item in output.items.unwrap_or_default() {
                let stored: InvitationItem = serde_dynamo::from_item(item).context("reading a listed invitation")?;
                found.push(stored.invitation);
            }
            start = output.last_evaluated_key;
            if found.len() > page.limit || start.is_none() {
                break;
            }
        }
        let next = if found.len() > page.limit {
            found.truncate(page.limit);
            found.last().map(|i| Position::new(i.created_at, &i.invitation_id))
        } else {
            // Stopped early (filters dropped many rows): resume after the last row read.
            start
                .as_ref()
                .and_then(|key| key.get("list_sk"))
                .and_then(|v| v.as_s().ok())
                .and_then(|k| Position::from_sort_key(k))
        };
        Ok(Paged { items: found, next })
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
        let reads = SEARCH_INDEXES.iter().map(|search| self.search_index(search, &from, &to, page.limit + 1));
        let streams = futures::future::try_join_all(reads).await?;
        // The cursor's own row was shown already.
        let streams = streams
            .into_iter()
            .map(|(rows, more)| {
                (rows.into_iter().filter(|(key, _)| page.after.is_none() || *key != from).collect(), more)
            })
            .collect();
        Ok(merge_search(prefix, streams, page.limit))
    }

    async fn search_index(
        &self,
        search: &SearchIndex,
        from: &str,
        to: &str,
        limit: usize,
    ) -> anyhow::Result<(Vec<(String, Contact)>, bool)> {
        let output = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(search.index)
            .key_condition_expression("list_pk = :contacts AND #key BETWEEN :from AND :to")
            .expression_attribute_names("#key", search.key_attribute)
            .expression_attribute_values(":contacts", text(CONTACT_LIST_PK))
            .expression_attribute_values(":from", text(from))
            .expression_attribute_values(":to", text(to))
            .limit(limit.try_into().unwrap_or(i32::MAX))
            .send()
            .await
            .map_err(|e| sdk_error("searching contacts", e))?;
        let mut rows = Vec::new();
        for item in output.items.unwrap_or_default() {
            let key = item.get(search.key_attribute).and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
            let stored: ContactItem = serde_dynamo::from_item(item).context("reading a found contact")?;
            rows.push((key, stored.contact));
        }
        Ok((rows, output.last_evaluated_key.is_some()))
    }

    async fn list_newest(&self, page: &PageRequest) -> anyhow::Result<Paged<Contact>> {
        let start: Option<Item> = page.after.as_ref().map(|after| {
            HashMap::from([
                ("pk".to_string(), text(&contact_pk(&ContactId::from(after.id.clone())))),
                ("list_pk".to_string(), text(CONTACT_LIST_PK)),
                ("list_sk".to_string(), text(&after.sort_key())),
            ])
        });
        let output = self
            .client
            .query()
            .table_name(&self.table)
            .index_name("contacts-by-created")
            .key_condition_expression("list_pk = :contacts")
            .expression_attribute_values(":contacts", text(CONTACT_LIST_PK))
            .scan_index_forward(false)
            .limit((page.limit + 1).try_into().unwrap_or(i32::MAX))
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(|e| sdk_error("listing contacts", e))?;
        let mut items = Vec::new();
        for item in output.items.unwrap_or_default() {
            let stored: ContactItem = serde_dynamo::from_item(item).context("reading a listed contact")?;
            items.push(stored.contact);
        }
        let next = if items.len() > page.limit {
            items.truncate(page.limit);
            items.last().map(|c| Position::new(c.created_at, &c.contact_id))
        } else {
            None
        };
        Ok(Paged { items, next })
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

/// Gives contacts and invitations stored before the list indexes existed their list keys, so that
/// the lists show them. An operator's one-off (`portal-admin backfill-lists`): it scans both
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
        "begins_with(pk, :prefix) AND attribute_not_exists(list_sk)",
        HashMap::from([(":prefix".to_string(), text("CONTACT#"))]),
    )
    .await?;
    for item in contacts {
        let stored: ContactItem = serde_dynamo::from_item(item).context("reading a contact to backfill")?;
        let listed = ListedContact::of(&stored.contact);
        let mut values = listed.update_values();
        values.insert(":first".into(), text(&stored.contact.first_name));
        values.insert(":last".into(), text(&stored.contact.last_name));
        let result = client
            .update_item()
            .table_name(contacts_table)
            .key("pk", text(&stored.pk))
            .update_expression(
                "SET list_pk = :list_pk, list_sk = :list_sk, first_name_key = :first_key, last_name_key = :last_key",
            )
            .condition_expression(
                "attribute_exists(pk) AND attribute_not_exists(list_sk) AND first_name = :first AND last_name = :last",
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
        "sk = :invitation AND attribute_not_exists(list_sk)",
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
            .update_expression("SET list_pk = :list_pk, list_sk = :list_sk, list_state = :state")
            .condition_expression("attribute_not_exists(list_sk) AND redemptions = :redemptions AND revoked = :revoked")
            .expression_attribute_values(":list_pk", text(&listed.list_pk))
            .expression_attribute_values(":list_sk", text(&listed.list_sk))
            .expression_attribute_values(":state", text(listed.list_state.as_str()))
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
