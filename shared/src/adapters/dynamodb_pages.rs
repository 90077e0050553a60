//! Reading more than one page: a query followed to its end, and the items an index's keys name,
//! fetched in batches in the keys' order.
//!
//! The list indexes project keys (and the few attributes their filters read) rather than whole
//! items: an item is written to an index only when what the index holds changes, and each index
//! entry is a fraction of a write unit instead of the whole item's. A list page therefore reads
//! the keys from the index and the rows themselves with `BatchGetItem`.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes};

use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

use super::dynamodb_list_keys::{ShardRows, page_newest, text};
use crate::error::Unavailable;

pub(crate) type Item = HashMap<String, AttributeValue>;

/// The most keys one `BatchGetItem` takes.
const BATCH_GET_MAX: usize = 100;
/// Rounds of `UnprocessedKeys` retried before giving up (DynamoDB returns them when a batch
/// exceeds 16 MB or the table is throttled; the SDK's own retries do not cover them).
const UNPROCESSED_ROUNDS: u32 = 5;

/// Every item a query finds, page after page (each page at most 1 MB), in the query's order: the
/// SDK's own paginator, which follows `LastEvaluatedKey` to the end.
pub(crate) async fn query_to_end(query: QueryFluentBuilder, doing: &str) -> anyhow::Result<Vec<Item>> {
    query.into_paginator().items().send().try_collect().await.map_err(|e| sdk_error(doing, e))
}

/// The table's items that `keys` name (each holding at least the table's key attributes
/// `key_names`; index attributes besides are ignored), in the order of `keys`. An item deleted
/// since its key was read is left out. Eventually consistent, as the index the keys came from.
pub(crate) async fn batch_get_in_order(
    client: &Client,
    table: &str,
    key_names: &[&str],
    keys: Vec<Item>,
) -> anyhow::Result<Vec<Item>> {
    let keys: Vec<Item> = keys
        .into_iter()
        .map(|item| item.into_iter().filter(|(name, _)| key_names.contains(&name.as_str())).collect())
        .collect();
    let chunks = keys.chunks(BATCH_GET_MAX).map(|chunk| batch_get(client, table, chunk.to_vec()));
    let found: Vec<Item> = futures::future::try_join_all(chunks).await?.into_iter().flatten().collect();
    // The portal's table keys are all strings.
    let identity = |item: &Item| -> Vec<Option<String>> {
        key_names.iter().map(|name| item.get(*name).and_then(|v| v.as_s().ok()).cloned()).collect()
    };
    let mut by_key: HashMap<Vec<Option<String>>, Item> =
        found.into_iter().map(|item| (identity(&item), item)).collect();
    Ok(keys.iter().filter_map(|key| by_key.remove(&identity(key))).collect())
}

/// One `BatchGetItem` of at most 100 keys, its unprocessed keys asked for again.
async fn batch_get(client: &Client, table: &str, mut keys: Vec<Item>) -> anyhow::Result<Vec<Item>> {
    let mut found = Vec::new();
    for round in 0..UNPROCESSED_ROUNDS {
        if keys.is_empty() {
            break;
        }
        if round > 0 {
            tokio::time::sleep(Duration::from_millis(20 << round)).await;
        }
        let request = KeysAndAttributes::builder().set_keys(Some(std::mem::take(&mut keys))).build()?;
        let output = client
            .batch_get_item()
            .request_items(table, request)
            .send()
            .await
            .map_err(|e| sdk_error("reading listed items", e))?;
        found.extend(output.responses.and_then(|mut r| r.remove(table)).unwrap_or_default());
        keys = output.unprocessed_keys.and_then(|mut u| u.remove(table)).map(|k| k.keys).unwrap_or_default();
    }
    anyhow::ensure!(
        keys.is_empty(),
        "DynamoDB left {} listed items unread after {UNPROCESSED_ROUNDS} rounds",
        keys.len()
    );
    Ok(found)
}

/// An SDK error with its whole chain (the SDK's `Display` alone says only "service error"), marked
/// [`Unavailable`] when the service was busy, failing or out of reach (answered 503, worth a retry).
pub(crate) fn sdk_error<E>(what: &str, err: SdkError<E, aws_sdk_dynamodb::config::http::HttpResponse>) -> anyhow::Error
where
    E: std::error::Error + ProvideErrorMetadata + Send + Sync + 'static,
{
    let detail = format!("{what}: {}", DisplayErrorContext(&err));
    if crate::aws::is_unavailable(&err) {
        anyhow::Error::new(Unavailable).context(detail)
    } else {
        anyhow::anyhow!(detail)
    }
}

/// A newest-first query of one partition of a list index, below `after` (a sort key).
pub(super) struct NewestFirst<'a> {
    pub(super) client: &'a aws_sdk_dynamodb::Client,
    pub(super) table: &'a str,
    pub(super) index: &'a str,
    pub(super) partition_attribute: &'a str,
    pub(super) filter: Option<String>,
    pub(super) values: HashMap<String, AttributeValue>,
    pub(super) doing: &'static str,
}

impl NewestFirst<'_> {
    /// One page of every partition, merged: the index rows (sort key, keys) and where the next
    /// page starts.
    pub(super) async fn page(
        &self,
        partitions: &[String],
        after: Option<String>,
        limit: usize,
    ) -> anyhow::Result<(Vec<(String, Item)>, Option<String>)> {
        page_newest(partitions.len(), after, limit, |shard, after, limit| async move {
            self.shard(&partitions[shard], after.as_deref(), limit).await
        })
        .await
    }

    async fn shard(&self, partition: &str, after: Option<&str>, limit: usize) -> anyhow::Result<ShardRows<Item>> {
        let mut values = self.values.clone();
        values.insert(":partition".into(), text(partition));
        let mut condition = format!("{} = :partition", self.partition_attribute);
        if let Some(after) = after {
            condition.push_str(" AND list_sk < :after");
            values.insert(":after".into(), text(after));
        }
        let output = self
            .client
            .query()
            .table_name(self.table)
            .index_name(self.index)
            .key_condition_expression(condition)
            .set_filter_expression(self.filter.clone())
            .set_expression_attribute_values(Some(values))
            .scan_index_forward(false)
            .limit(limit.try_into().unwrap_or(i32::MAX))
            .send()
            .await
            .map_err(|e| sdk_error(self.doing, e))?;
        let sort_key = |item: &Item| item.get("list_sk").and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
        let rows = output.items.unwrap_or_default().into_iter().map(|item| (sort_key(&item), item)).collect();
        Ok(ShardRows { rows, last_evaluated: output.last_evaluated_key.as_ref().map(sort_key) })
    }
}
