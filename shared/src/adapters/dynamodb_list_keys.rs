//! The keys the administrators' list and search indexes read (see `dynamodb_listing`), as the
//! contact and invitation items carry them, and the merges of a page's reads of several index
//! partitions (the shards of one index, or the three search indexes). Written with the items by
//! the stores, read by the listing.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use serde::{Deserialize, Serialize};

use crate::domain::contact::Contact;
use crate::domain::invitation::{Delivery, Invitation, InvitationStatus};
use crate::domain::listing::{Paged, Position, StoredState, normalize_search, sort_key};
use crate::domain::time::Timestamp;

/// How many partitions each list index is spread over. An index partition takes about 1,000
/// writes a second, and a throttled index write throttles the table: with one constant partition
/// a bulk import could stall every write to contacts. A page reads every shard and merges them
/// (`merge_newest`, `merge_search`), so a shard more costs each page one small query more.
pub const LIST_SHARDS: u32 = 8;

/// The shard of a listed item: a stable hash of its id (FNV-1a; the standard library's hasher may
/// change between Rust releases, and these values are stored).
pub fn shard_of(id: &str) -> u32 {
    let hash = id.bytes().fold(0x811c_9dc5_u32, |hash, byte| (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193));
    hash % LIST_SHARDS
}

/// `<name>#<shard>`: a list index's partition value for an item with this id.
pub fn sharded(name: &str, id: &str) -> String {
    format!("{name}#{}", shard_of(id))
}

/// Every partition value of `<name>#<shard>`, one per shard.
pub fn all_shards(name: &str) -> Vec<String> {
    (0..LIST_SHARDS).map(|shard| format!("{name}#{shard}")).collect()
}

/// The invitations' `by-created` index: `list_pk` is `INVITATION#<shard>`.
pub(crate) const INVITATION_LIST_PK: &str = "INVITATION";
/// The contacts' indexes: `list_pk` is `CONTACT#<shard>`.
pub(crate) const CONTACT_LIST_PK: &str = "CONTACT";

/// The list-index keys of an invitation item: `list_pk`, `list_state` (`open#<shard>`...) and
/// `list_delivery` (`sent#<shard>`...) are the partitions of `by-created`, `by-state` and
/// `by-delivery`, each sorted by `list_sk`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct ListedInvitation {
    pub(crate) list_pk: String,
    pub(crate) list_sk: String,
    pub(crate) list_state: String,
    /// Absent on invitations stored before it (until `backfill-lists`).
    #[serde(default)]
    pub(crate) list_delivery: String,
}

impl ListedInvitation {
    pub(crate) fn of(invitation: &Invitation) -> Self {
        let state = match invitation.status(invitation.created_at) {
            InvitationStatus::Revoked => StoredState::Revoked,
            InvitationStatus::Redeemed => StoredState::Redeemed,
            InvitationStatus::Active | InvitationStatus::Expired => StoredState::Open,
        };
        let id = &invitation.invitation_id;
        ListedInvitation {
            list_pk: sharded(INVITATION_LIST_PK, id),
            list_sk: sort_key(invitation.created_at, id),
            list_state: sharded(state.as_str(), id),
            list_delivery: sharded(invitation.delivery.as_str(), id),
        }
    }
}

/// `list_state` of an invitation in this state.
pub(crate) fn state_partition(state: StoredState, invitation_id: &str) -> AttributeValue {
    text(&sharded(state.as_str(), invitation_id))
}

/// `list_delivery` of an invitation whose email stands so: every write of `delivery` writes it too.
pub(crate) fn delivery_partition(delivery: Delivery, invitation_id: &str) -> AttributeValue {
    text(&sharded(delivery.as_str(), invitation_id))
}

/// The list and search keys of a contact item.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct ListedContact {
    list_pk: String,
    list_sk: String,
    first_name_key: String,
    last_name_key: String,
}

impl ListedContact {
    pub(crate) fn of(contact: &Contact) -> Self {
        ListedContact {
            list_pk: sharded(CONTACT_LIST_PK, &contact.contact_id),
            list_sk: sort_key(contact.created_at, &contact.contact_id),
            first_name_key: name_key(&contact.first_name, contact.created_at, &contact.contact_id),
            last_name_key: name_key(&contact.last_name, contact.created_at, &contact.contact_id),
        }
    }
}

impl ListedContact {
    /// The values an update expression sets them with (`:list_pk`, `:list_sk`, `:first_key`,
    /// `:last_key`).
    pub(crate) fn update_values(&self) -> HashMap<String, AttributeValue> {
        HashMap::from([
            (":list_pk".to_string(), text(&self.list_pk)),
            (":list_sk".to_string(), text(&self.list_sk)),
            (":first_key".to_string(), text(&self.first_name_key)),
            (":last_key".to_string(), text(&self.last_name_key)),
        ])
    }
}

/// A name's search key: case-folded, then the time counted down and the id, so that each key is
/// unique and contacts of the same name come newest first.
pub(crate) fn name_key(name: &str, created_at: Timestamp, id: &str) -> String {
    format!("{}#{:012}#{id}", normalize_search(name), 999_999_999_999 - created_at.as_secs())
}

pub(crate) fn text(value: &str) -> AttributeValue {
    AttributeValue::S(value.to_string())
}

/// What a search merge reads of a row: its three search keys and its place in the newest-first
/// list. Contacts have them (the in-memory store merges contacts); so does a search index's row
/// ([`SearchHit`]), so that a search merges index rows and reads only the contacts it shows.
pub trait Searchable {
    /// Email (normalised), first-name key, last-name key.
    fn search_keys(&self) -> [String; 3];
    fn list_position(&self) -> Position;
}

impl Searchable for Contact {
    fn search_keys(&self) -> [String; 3] {
        let listed = ListedContact::of(self);
        [self.email.normalized().to_string(), listed.first_name_key, listed.last_name_key]
    }

    fn list_position(&self) -> Position {
        Position::new(self.created_at, &self.contact_id)
    }
}

/// A row of a contacts search index: the contact's key and what the index projects (all three
/// search keys and the list key), enough to merge and de-duplicate without the contact.
#[derive(Clone, Debug, Deserialize)]
pub(crate) struct SearchHit {
    pub(crate) pk: String,
    email_normalized: String,
    first_name_key: String,
    last_name_key: String,
    list_sk: String,
}

impl Searchable for SearchHit {
    fn search_keys(&self) -> [String; 3] {
        [self.email_normalized.clone(), self.first_name_key.clone(), self.last_name_key.clone()]
    }

    fn list_position(&self) -> Position {
        Position::from_sort_key(&self.list_sk).unwrap_or_else(|| Position::new(Timestamp::default(), "0"))
    }
}

/// The row's search keys that start with `prefix` (email, first name, last name).
pub fn matching_keys(row: &impl Searchable, prefix: &str) -> Vec<String> {
    row.search_keys().into_iter().filter(|key| key.starts_with(prefix)).collect()
}

/// Merges search results read from several index partitions (three indexes, each in
/// [`LIST_SHARDS`] shards) into one page in key order, each contact once (at its smallest matching
/// key). `streams` holds each partition's rows (key, row) in key order and whether that partition
/// has more after them.
pub fn merge_search<T: Searchable>(prefix: &str, streams: Vec<(Vec<(String, T)>, bool)>, limit: usize) -> Paged<T> {
    // Rows past the end of what an index with more returned could be preceded by rows not read
    // yet: only rows up to the smallest such end are certain.
    let bound =
        streams.iter().filter(|(_, more)| *more).filter_map(|(rows, _)| rows.last()).map(|(k, _)| k.clone()).min();
    let mut rows: Vec<(String, T)> = streams.into_iter().flat_map(|(rows, _)| rows).collect();
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    let mut items = Vec::new();
    let mut last_key: Option<String> = None;
    let mut full = false;
    for (key, row) in rows {
        if bound.as_ref().is_some_and(|bound| key > *bound) {
            break;
        }
        // Shown where it first appears.
        if matching_keys(&row, prefix).iter().min() != Some(&key) {
            last_key = Some(key);
            continue;
        }
        if items.len() == limit {
            full = true;
            break;
        }
        last_key = Some(key);
        items.push(row);
    }
    let position = |key: String, items: &[T]| {
        let at = items.last().map_or_else(|| Position::new(Timestamp::default(), "0"), Searchable::list_position);
        Position { key: Some(key), ..at }
    };
    let next = match (full, bound) {
        (true, _) => last_key.map(|k| position(k, &items)),
        // Everything up to the bound was read; the next page starts after it.
        (false, Some(bound)) => Some(position(bound, &items)),
        (false, None) => None,
    };
    Paged { items, next }
}

/// One shard's answer to a newest-first query (`ScanIndexForward=false`, `list_sk` below the
/// cursor's): its rows (sort key, row) in descending key order, and, when it has more, the last
/// key it evaluated (DynamoDB's `LastEvaluatedKey`, whose row a filter may have dropped).
pub struct ShardRows<T> {
    pub rows: Vec<(String, T)>,
    pub last_evaluated: Option<String>,
}

/// Merges the shards of a newest-first list into one page of at most `limit` rows and the sort
/// key the next page starts below (`None` at the end).
///
/// A shard with more has told nothing about its rows below its last evaluated key, so only rows
/// at or above the highest such key are certain; the page ends there (or at `limit`), and the next
/// page asks every shard again from that key down. No row is shown twice or skipped, whatever
/// the shards returned and however filters thinned them.
pub fn merge_newest<T>(shards: Vec<ShardRows<T>>, limit: usize) -> (Vec<(String, T)>, Option<String>) {
    let bound = shards.iter().filter_map(|shard| shard.last_evaluated.clone()).max();
    let mut rows: Vec<(String, T)> = shards.into_iter().flat_map(|shard| shard.rows).collect();
    rows.sort_by(|a, b| b.0.cmp(&a.0));
    if let Some(bound) = &bound {
        rows.retain(|(key, _)| key >= bound);
    }
    if rows.len() > limit {
        rows.truncate(limit);
        let next = rows.last().map(|(key, _)| key.clone());
        return (rows, next);
    }
    (rows, bound)
}

/// Rounds of reads (each: every shard once) one page may take when filters drop rows; a page cut
/// short by them still hands out a cursor.
pub const MAX_ROUNDS_PER_PAGE: usize = 4;

/// One page of a sharded newest-first list: `read(shard, after, limit)` reads one shard below
/// `after` (at most `limit` rows evaluated); each round reads every shard at once and merges
/// ([`merge_newest`]); rounds repeat while filters leave the page short. Returns the rows and the
/// sort key the next page starts below.
pub async fn page_newest<T, F, Fut>(
    shards: usize,
    after: Option<String>,
    limit: usize,
    read: F,
) -> anyhow::Result<(Vec<(String, T)>, Option<String>)>
where
    F: Fn(usize, Option<String>, usize) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<ShardRows<T>>>,
{
    let mut rows = Vec::new();
    let mut after = after;
    for _ in 0..MAX_ROUNDS_PER_PAGE {
        let wanted = limit - rows.len();
        // One more than wanted: a full page then also tells whether another follows.
        let reads = (0..shards).map(|shard| read(shard, after.clone(), wanted + 1));
        let (found, next) = merge_newest(futures::future::try_join_all(reads).await?, wanted);
        rows.extend(found);
        after = next;
        if rows.len() == limit || after.is_none() {
            break;
        }
    }
    Ok((rows, after))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A shard (rows newest first) as DynamoDB answers a newest-first query of it: at most `limit`
    /// rows evaluated below `after`, those the filter keeps returned, and the last evaluated key
    /// whenever `limit` rows were evaluated (DynamoDB gives one then even if nothing follows).
    fn query(shard: &[(String, u32)], after: Option<&str>, limit: usize, keep: fn(u32) -> bool) -> ShardRows<u32> {
        let start = after.map_or(0, |after| shard.partition_point(|(key, _)| key.as_str() >= after));
        let evaluated = &shard[start..(start + limit).min(shard.len())];
        ShardRows {
            rows: evaluated.iter().filter(|(_, value)| keep(*value)).cloned().collect(),
            last_evaluated: (evaluated.len() == limit).then(|| evaluated[limit - 1].0.clone()),
        }
    }

    /// Pages through `rows` stored in their shards, `limit` at a time, as the listing does.
    fn every_page(rows: &[(String, u32)], limit: usize, keep: fn(u32) -> bool) -> Vec<Vec<(String, u32)>> {
        let mut shards = vec![Vec::new(); LIST_SHARDS as usize];
        for (key, value) in rows {
            let id = key.split_once('#').map_or(key.as_str(), |(_, id)| id);
            shards[shard_of(id) as usize].push((key.clone(), *value));
        }
        for shard in &mut shards {
            shard.sort_by(|a, b| b.0.cmp(&a.0));
        }
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let mut pages = Vec::new();
        let mut after = None;
        loop {
            let read = |shard: usize, after: Option<String>, limit: usize| {
                let answer = query(&shards[shard], after.as_deref(), limit, keep);
                async move { Ok(answer) }
            };
            let (page, next) = runtime.block_on(page_newest(shards.len(), after, limit, read)).unwrap();
            assert!(page.len() <= limit);
            pages.push(page);
            match next {
                Some(next) => after = Some(next),
                None => return pages,
            }
        }
    }

    fn ten_thousand() -> Vec<(String, u32)> {
        // Ten to a second, with time-ordered ids as `ContactId::generate` makes them.
        (0..10_000u32).map(|i| (format!("{:012}#{:08x}-id", 1_800_000_000 + i / 10, i), i)).collect()
    }

    #[test]
    fn ten_thousand_rows_over_the_shards_page_newest_first_with_no_duplicate_and_no_gap() {
        let rows = ten_thousand();
        let mut newest_first = rows.clone();
        newest_first.sort_by(|a, b| b.0.cmp(&a.0));
        for limit in [1, 7, 50, 200] {
            let pages = every_page(&rows, limit, |_| true);
            // Without a filter every page but the last is full.
            assert!(pages[..pages.len() - 1].iter().all(|page| page.len() == limit), "pages of {limit}");
            assert_eq!(pages.concat(), newest_first, "pages of {limit}");
        }
    }

    #[test]
    fn filtered_pages_may_be_short_but_never_skip_or_repeat_a_row() {
        let rows = ten_thousand();
        let keep: fn(u32) -> bool = |value| value % 97 == 0 || (4_000..4_050).contains(&value);
        let mut expected: Vec<(String, u32)> = rows.iter().filter(|(_, v)| keep(*v)).cloned().collect();
        expected.sort_by(|a, b| b.0.cmp(&a.0));
        for limit in [1, 5, 50] {
            assert_eq!(every_page(&rows, limit, keep).concat(), expected, "pages of {limit}");
        }
        assert!(every_page(&rows, 50, |_| false).concat().is_empty());
    }

    #[test]
    fn shards_are_stable_and_spread() {
        // Stored values (FNV-1a, computed by hand): a change of hash would leave every stored
        // item in the wrong shard.
        assert_eq!((shard_of(""), shard_of("a"), shard_of("contact-1")), (5, 4, 1));
        let mut counts = [0u32; LIST_SHARDS as usize];
        for _ in 0..8_000 {
            counts[shard_of(&uuid::Uuid::now_v7().to_string()) as usize] += 1;
        }
        assert!(counts.iter().all(|&n| (800..1_200).contains(&n)), "{counts:?}");
        assert_eq!(sharded("CONTACT", ""), "CONTACT#5");
        assert_eq!(all_shards("open").len(), LIST_SHARDS as usize);
    }
}
