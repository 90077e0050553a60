//! Idempotent client retries (`Idempotency-Key`): a creation request that a client may retry
//! carries a key; the first answer is kept for [`KEY_SECS`] and given again to a retry with the
//! same key and body, which changes nothing.

use super::secret::digest;

/// How long a key and its answer are kept (the contract: 24 hours; TTL removes them later).
pub const KEY_SECS: i64 = 86_400;
/// A request holding its key this long without answering has died (the functions time out at
/// 15 s): a retry may run in its place.
pub const RUNNING_SECS: i64 = 60;
/// The longest key a client may send.
pub const MAX_KEY_LEN: usize = 255;

/// What a request with a key finds when it starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IdempotentStart {
    /// The first with this key: it runs, holding the key.
    First,
    /// The first request with this key is still running (409).
    Running,
    /// The key was used with another request (422).
    Mismatch,
    /// Answered before: the stored answer, to give again.
    Answered { status: u16, body: String },
}

/// A client's key, scoped to the route and the caller so that two callers' keys never meet, and
/// the digest of the request it came with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdempotencyKey {
    pub key_digest: String,
    pub request_digest: String,
}

impl IdempotencyKey {
    /// `None` for a key that is empty or longer than [`MAX_KEY_LEN`] (a client's mistake).
    pub fn new(route: &str, caller: &str, key: &str, request_digest: String) -> Option<Self> {
        if key.is_empty() || key.len() > MAX_KEY_LEN {
            return None;
        }
        Some(IdempotencyKey { key_digest: digest(&format!("{route}\n{caller}\n{key}")), request_digest })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_scoped_to_route_and_caller_and_bounded() {
        let key = |route, caller, key: &str| IdempotencyKey::new(route, caller, key, "r".into());
        assert_ne!(key("POST /a", "ada", "k"), key("POST /a", "bob", "k"));
        assert_ne!(key("POST /a", "ada", "k"), key("POST /b", "ada", "k"));
        assert_eq!(key("POST /a", "ada", "k"), key("POST /a", "ada", "k"));
        assert!(key("POST /a", "ada", "").is_none());
        assert!(key("POST /a", "ada", &"x".repeat(256)).is_none());
        assert!(key("POST /a", "ada", &"x".repeat(255)).is_some());
    }
}
