//! Sessions: opaque random tokens handed to the browser; only their digest is stored.

use super::ids::ContactId;
use super::time::Timestamp;
use serde::{Deserialize, Serialize};

use super::secret::{digest, random_token};

/// A stored session. `id_digest` is the SHA-256 of the token in the cookie.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Session {
    pub id_digest: String,
    pub contact_id: ContactId,
    pub created_at: Timestamp,
    pub last_seen_at: Timestamp,
    /// Absolute expiry: the session ends then whatever its use.
    pub expires_at: Timestamp,
    /// The contact's session epoch when the session began; it ends when the contact's changes.
    #[serde(default)]
    pub epoch: String,
    /// Signed in with "remember me": the cookie persists and the absolute limit is the longer one.
    #[serde(default)]
    pub remembered: bool,
    /// Limited to setting up a second factor, which the contact's web role requires.
    #[serde(default)]
    pub setup_only: bool,
    /// Limited to accepting the site's current terms of use (`/terms`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub terms_only: bool,
    /// How its sign-in was proven (`password`, `passkey`, ...; a continued session keeps it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// The address it signed in from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// The browser's User-Agent as sent, cut to [`MAX_USER_AGENT`] characters (shown as a short
    /// description: see [`super::browser`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
}

/// The most characters of a User-Agent a session keeps.
pub const MAX_USER_AGENT: usize = 256;

/// `user_agent` cut to [`MAX_USER_AGENT`] characters, control characters left out.
pub fn kept_user_agent(user_agent: &str) -> String {
    user_agent.chars().filter(|c| !c.is_control()).take(MAX_USER_AGENT).collect()
}

/// How often a session's `last_seen_at` is written: more often would cost a write per request.
pub const TOUCH_INTERVAL_SECS: i64 = 60;

impl Session {
    /// Starts a session; returns it with the token for the cookie (never stored).
    pub fn start(contact_id: &ContactId, epoch: &str, now: Timestamp, absolute_secs: i64) -> (Session, String) {
        let token = random_token();
        let session = Session {
            id_digest: digest(&token),
            contact_id: contact_id.clone(),
            created_at: now,
            last_seen_at: now,
            expires_at: now + absolute_secs,
            epoch: epoch.to_string(),
            remembered: false,
            setup_only: false,
            terms_only: false,
            method: None,
            ip: None,
            user_agent: None,
        };
        (session, token)
    }

    /// The session's id as the person sees it (to end it): the start of its digest, which names
    /// it among the account's sessions and tells nothing of the token.
    pub fn public_id(&self) -> &str {
        &self.id_digest[..self.id_digest.len().min(16)]
    }

    /// Active until its absolute expiry, and while used at least once per idle period. A
    /// "remember me" session has no idle limit: the person asked to stay signed in on this
    /// browser, for the remember-me days.
    pub fn is_active(&self, now: Timestamp, idle_secs: i64) -> bool {
        now < self.expires_at && (self.remembered || now < self.last_seen_at + idle_secs)
    }

    /// Whether it still lets its contact in: active, and of the contact's current epoch (a
    /// password change, reset, email move or staff action writes a new one, ending older sessions).
    pub fn is_valid_for(&self, epoch: &str, now: Timestamp, idle_secs: i64) -> bool {
        self.epoch == epoch && self.is_active(now, idle_secs)
    }

    pub fn needs_touch(&self, now: Timestamp) -> bool {
        now - self.last_seen_at >= TOUCH_INTERVAL_SECS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_ends_at_its_idle_or_absolute_limit() {
        let (session, token) = Session::start(&"c1".into(), "e1", Timestamp::from_secs(1000), 3600);
        assert_eq!(session.id_digest, digest(&token));
        let idle = 600;
        let cases = [(1000, true), (1599, true), (1600, false)];
        for (now, active) in cases {
            assert_eq!(session.is_active(Timestamp::from_secs(now), idle), active, "now {now}");
        }
        let used = Session { last_seen_at: Timestamp::from_secs(4500), ..session.clone() };
        assert!(used.is_active(Timestamp::from_secs(4599), idle));
        assert!(!used.is_active(Timestamp::from_secs(4600), idle), "absolute expiry wins over recent use");
    }

    #[test]
    fn a_remembered_session_ends_at_its_absolute_limit_not_when_idle() {
        let (mut session, _) = Session::start(&"c1".into(), "e1", Timestamp::from_secs(1000), 30 * 86_400);
        session.remembered = true;
        let idle = 3600;
        assert!(session.is_active(Timestamp::from_secs(1000 + 2 * 86_400), idle), "two idle days");
        assert!(!session.is_active(Timestamp::from_secs(1000 + 30 * 86_400), idle), "the remember-me days are up");
    }

    #[test]
    fn touches_at_most_once_a_minute() {
        let (session, _) = Session::start(&"c1".into(), "e1", Timestamp::from_secs(1000), 3600);
        assert!(!session.needs_touch(Timestamp::from_secs(1059)));
        assert!(session.needs_touch(Timestamp::from_secs(1060)));
    }
}
