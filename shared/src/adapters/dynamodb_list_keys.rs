//! The keys the administrators' list and search indexes read (see `dynamodb_listing`), as the
//! contact and invitation items carry them, and the merge of one search's reads of several
//! indexes. Written with the items by the stores, read by the listing.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use serde::{Deserialize, Serialize};

use crate::domain::contact::Contact;
use crate::domain::invitation::{Invitation, InvitationStatus};
use crate::domain::listing::{Paged, Position, StoredState, normalize_search, sort_key};
use crate::domain::time::Timestamp;

/// `list_pk` of every listed invitation (the `by-created` index's one partition).
pub(crate) const INVITATION_LIST_PK: &str = "INVITATION";
/// `list_pk` of every listed contact.
pub(crate) const CONTACT_LIST_PK: &str = "CONTACT";

/// The list-index keys of an invitation item.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct ListedInvitation {
    pub(crate) list_pk: String,
    pub(crate) list_sk: String,
    pub(crate) list_state: StoredState,
}

impl ListedInvitation {
    pub(crate) fn of(invitation: &Invitation) -> Self {
        let state = match invitation.status(invitation.created_at) {
            InvitationStatus::Revoked => StoredState::Revoked,
            InvitationStatus::Redeemed => StoredState::Redeemed,
            InvitationStatus::Active | InvitationStatus::Expired => StoredState::Open,
        };
        ListedInvitation {
            list_pk: INVITATION_LIST_PK.into(),
            list_sk: sort_key(invitation.created_at, &invitation.invitation_id),
            list_state: state,
        }
    }
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
            list_pk: CONTACT_LIST_PK.into(),
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

/// The contact's search keys that start with `prefix` (email, first name, last name).
pub fn matching_keys(contact: &Contact, prefix: &str) -> Vec<String> {
    let listed = ListedContact::of(contact);
    [contact.email.normalized().to_string(), listed.first_name_key, listed.last_name_key]
        .into_iter()
        .filter(|key| key.starts_with(prefix))
        .collect()
}

/// Merges search results read from several indexes into one page in key order, each contact once
/// (at its smallest matching key). `streams` holds each index's rows (key, contact) in key order
/// and whether that index has more after them.
pub fn merge_search(prefix: &str, streams: Vec<(Vec<(String, Contact)>, bool)>, limit: usize) -> Paged<Contact> {
    // Rows past the end of what an index with more returned could be preceded by rows not read
    // yet: only rows up to the smallest such end are certain.
    let bound =
        streams.iter().filter(|(_, more)| *more).filter_map(|(rows, _)| rows.last()).map(|(k, _)| k.clone()).min();
    let mut rows: Vec<(String, Contact)> = streams.into_iter().flat_map(|(rows, _)| rows).collect();
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    let mut items = Vec::new();
    let mut last_key: Option<String> = None;
    let mut full = false;
    for (key, contact) in rows {
        if bound.as_ref().is_some_and(|bound| key > *bound) {
            break;
        }
        // Shown where it first appears.
        if matching_keys(&contact, prefix).iter().min() != Some(&key) {
            last_key = Some(key);
            continue;
        }
        if items.len() == limit {
            full = true;
            break;
        }
        last_key = Some(key);
        items.push(contact);
    }
    let position = |key: String, items: &[Contact]| {
        let (created_at, id) =
            items.last().map_or((Timestamp::default(), "0".to_string()), |c| (c.created_at, c.contact_id.to_string()));
        Position { created_at, id, key: Some(key) }
    };
    let next = match (full, bound) {
        (true, _) => last_key.map(|k| position(k, &items)),
        // Everything up to the bound was read; the next page starts after it.
        (false, Some(bound)) => Some(position(bound, &items)),
        (false, None) => None,
    };
    Paged { items, next }
}
