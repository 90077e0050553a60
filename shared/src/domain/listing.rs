//! Paged lists for the administrators: where a page ends (an opaque cursor for the client), how
//! many rows a page holds, and the filters of the invitations list. Stores read pages from
//! indexes in the order these sort keys give: newest first.

use super::ids::ContactId;
use super::invitation::{Delivery, InvitationStatus};
use super::time::Timestamp;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

/// Rows per page unless the client asks for another number.
pub const DEFAULT_LIMIT: usize = 50;
/// The most rows a page holds.
pub const MAX_LIMIT: usize = 200;
/// Ids are UUIDs; a longer one names nothing (and cannot be a key a store could be asked for).
const MAX_ID: usize = 64;
/// A search key is a prefix of a normalised email or name (emails are at most 254 characters).
const MAX_KEY: usize = 512;

/// The last row a page showed; the next page starts after it. Stores build their own start key
/// from it, so a client never hands a store a key of its choosing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Position {
    /// When the row was created (the list's order: newest first).
    #[serde(rename = "c")]
    pub created_at: Timestamp,
    /// The row's id (invitation or contact), which orders rows created in the same second.
    #[serde(rename = "i")]
    pub id: String,
    /// For a search, the index key of the row (searches are ordered by it instead).
    #[serde(rename = "k", default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

impl Position {
    pub fn new(created_at: Timestamp, id: &str) -> Self {
        Position { created_at, id: id.to_string(), key: None }
    }

    /// The opaque text a client sends back as `cursor`.
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(self).unwrap_or_default())
    }

    /// The position a cursor names; `None` for anything this portal did not hand out.
    pub fn decode(cursor: &str) -> Option<Self> {
        if cursor.len() > 2048 {
            return None;
        }
        let bytes = URL_SAFE_NO_PAD.decode(cursor.trim()).ok()?;
        let position: Position = serde_json::from_slice(&bytes).ok()?;
        let id_ok = !position.id.is_empty()
            && position.id.len() <= MAX_ID
            && position.id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        let key_ok = position.key.as_ref().is_none_or(|k| !k.is_empty() && k.len() <= MAX_KEY);
        (id_ok && key_ok && position.created_at.as_secs() >= 0).then_some(position)
    }

    /// The sort key of a row in a newest-first list: the creation time (fixed width, so the text
    /// orders as the number) and the id.
    pub fn sort_key(&self) -> String {
        sort_key(self.created_at, &self.id)
    }

    /// The position of a row from its sort key (as [`sort_key`] wrote it).
    pub fn from_sort_key(key: &str) -> Option<Self> {
        let (time, id) = key.split_once('#')?;
        Some(Position::new(Timestamp::from_secs(time.parse().ok()?), id))
    }
}

/// The sort key of a row created at `created_at` with this id; see [`Position::sort_key`].
pub fn sort_key(created_at: Timestamp, id: &str) -> String {
    format!("{:012}#{id}", created_at.as_secs())
}

/// What page of a list to read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageRequest {
    pub limit: usize,
    /// Start after this row; the first page when absent.
    pub after: Option<Position>,
}

impl PageRequest {
    pub fn first(limit: usize) -> Self {
        PageRequest { limit, after: None }
    }
}

/// A page of rows and where the next one starts (`None` at the end).
#[derive(Clone, Debug, PartialEq)]
pub struct Paged<T> {
    pub items: Vec<T>,
    pub next: Option<Position>,
}

/// The invitations list's filters; all given ones apply.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InvitationFilter {
    pub status: Option<InvitationStatus>,
    pub delivery: Option<Delivery>,
    pub contact_id: Option<ContactId>,
}

/// Where an invitation stands without the clock: what an index can be keyed on. Expired is an
/// open invitation whose time passed (read against the clock when listing).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoredState {
    Open,
    Redeemed,
    Revoked,
}

impl StoredState {
    pub fn as_str(self) -> &'static str {
        match self {
            StoredState::Open => "open",
            StoredState::Redeemed => "redeemed",
            StoredState::Revoked => "revoked",
        }
    }

    /// The stored state a status is read from (active and expired are both open).
    pub fn of_status(status: InvitationStatus) -> Self {
        match status {
            InvitationStatus::Active | InvitationStatus::Expired => StoredState::Open,
            InvitationStatus::Redeemed => StoredState::Redeemed,
            InvitationStatus::Revoked => StoredState::Revoked,
        }
    }
}

/// How a search text is compared with emails and names: trimmed and case-folded.
pub fn normalize_search(text: &str) -> String {
    text.trim().to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_strangers_are_refused() {
        let position = Position::new(Timestamp::from_secs(1_700_000_000), "8c1f-ab");
        assert_eq!(Position::decode(&position.encode()), Some(position.clone()));
        let searching = Position { key: Some("ada@example.com".into()), ..position };
        assert_eq!(Position::decode(&searching.encode()), Some(searching));
        let forged = |json: &str| URL_SAFE_NO_PAD.encode(json);
        for bad in [
            "".to_string(),
            "not base64!".to_string(),
            forged("{}"),
            forged(r#"{"c":1,"i":"x","pk":"CONTACT#x"}"#),
            forged(r#"{"c":1,"i":"a#b"}"#),
            forged(r#"{"c":-1,"i":"a"}"#),
            forged(r#"{"c":1,"i":""}"#),
            forged(&format!(r#"{{"c":1,"i":"{}"}}"#, "a".repeat(65))),
            "a".repeat(3000),
        ] {
            assert_eq!(Position::decode(&bad), None, "{bad}");
        }
    }

    #[test]
    fn sort_keys_order_as_time_then_id() {
        let older = sort_key(Timestamp::from_secs(99), "b");
        let newer = sort_key(Timestamp::from_secs(100), "a");
        assert!(older < newer);
        assert_eq!(Position::from_sort_key(&newer), Some(Position::new(Timestamp::from_secs(100), "a")));
    }

    #[test]
    fn active_and_expired_are_both_open() {
        assert_eq!(StoredState::of_status(InvitationStatus::Expired), StoredState::Open);
        assert_eq!(StoredState::of_status(InvitationStatus::Active), StoredState::Open);
        assert_eq!(StoredState::of_status(InvitationStatus::Redeemed).as_str(), "redeemed");
    }
}
