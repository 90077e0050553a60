//! The audit trail's table (`PORTAL_AUDIT_TABLE`): one item per entry, put in the same
//! transaction as the change it records (see [`super::dynamodb::queued_items`]), and read newest
//! first from its indexes, each sorted by `list_sk` (creation second, then the time-ordered id):
//! `by-contact` (`audit_contact`), `by-actor` (`audit_actor`) and `by-time` (`audit_time`,
//! `AUDIT#<shard>`: spread over [`LIST_SHARDS`](super::dynamodb_list_keys::LIST_SHARDS) shards
//! as the lists are, so that no partition takes every entry). The indexes project whole entries:
//! a page is one query per partition and no second read.

use std::collections::HashMap;

use anyhow::Context;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use serde::{Deserialize, Serialize};

use super::dynamodb_list_keys::{all_shards, sharded, text};
use super::dynamodb_pages::Item;
use super::dynamodb_pages::NewestFirst;
use crate::domain::audit::{AuditEntry, AuditQuery};
use crate::domain::listing::{PageRequest, Paged, Position, sort_key};

/// The time index's partition name (before its shard).
const AUDIT_TIME: &str = "AUDIT";

#[derive(Serialize, Deserialize)]
struct AuditItem {
    pk: String,
    #[serde(flatten)]
    entry: AuditEntry,
    list_sk: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    audit_contact: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    audit_actor: Option<String>,
    audit_time: String,
}

/// The item that stores `entry`, with the keys of the indexes it belongs to.
pub(crate) fn audit_item(entry: &AuditEntry) -> anyhow::Result<Item> {
    Ok(serde_dynamo::to_item(AuditItem {
        pk: entry.entry_id.clone(),
        list_sk: sort_key(entry.at, &entry.entry_id),
        audit_contact: entry.contact_id.as_ref().map(|id| id.to_string()),
        audit_actor: entry.actor_id.as_ref().map(|id| id.to_string()),
        audit_time: sharded(AUDIT_TIME, &entry.entry_id),
        entry: entry.clone(),
    })?)
}

/// One page of the entries `query` asks for, newest first: from the contact's index when it names
/// a contact, else the actor's, else the time index; the kind (and an actor along with a
/// contact) is a filter on the same query.
pub(crate) async fn audit_page(
    client: &Client,
    table: &str,
    query: &AuditQuery,
    page: &PageRequest,
) -> anyhow::Result<Paged<AuditEntry>> {
    let (index, partition_attribute, partitions) = match (&query.contact_id, &query.actor_id) {
        (Some(contact), _) => ("by-contact", "audit_contact", vec![contact.to_string()]),
        (None, Some(actor)) => ("by-actor", "audit_actor", vec![actor.to_string()]),
        (None, None) => ("by-time", "audit_time", all_shards(AUDIT_TIME)),
    };
    let mut conditions = Vec::new();
    let mut values: HashMap<String, AttributeValue> = HashMap::new();
    if let Some(kind) = &query.kind {
        conditions.push("kind = :kind".to_string());
        values.insert(":kind".into(), text(kind));
    }
    if !query.kinds.is_empty() {
        let names: Vec<String> = (0..query.kinds.len()).map(|i| format!(":kind{i}")).collect();
        for (name, kind) in names.iter().zip(&query.kinds) {
            values.insert(name.clone(), text(kind));
        }
        conditions.push(format!("kind IN ({})", names.join(", ")));
    }
    if let (Some(_), Some(actor)) = (&query.contact_id, &query.actor_id) {
        conditions.push("audit_actor = :actor".to_string());
        values.insert(":actor".into(), text(actor.as_str()));
    }
    let reader = NewestFirst {
        client,
        table,
        index,
        partition_attribute,
        filter: (!conditions.is_empty()).then(|| conditions.join(" AND ")),
        values,
        doing: "reading the audit trail",
    };
    let after = page.after.as_ref().map(Position::sort_key);
    let (rows, next) = reader.page(&partitions, after, page.limit).await?;
    let items = rows
        .into_iter()
        .map(|(_, item)| Ok(serde_dynamo::from_item::<_, AuditItem>(item).context("reading an audit entry")?.entry))
        .collect::<anyhow::Result<_>>()?;
    Ok(Paged { items, next: next.as_deref().and_then(Position::from_sort_key) })
}
