//! Ports: the small capabilities a handler needs from the outside world. Adapters implement them
//! for DynamoDB (production) and in memory (handler tests).

use async_trait::async_trait;

use crate::domain::contact::{Contact, Login};
use crate::domain::lockout::{FailedSignIn, LockoutPolicy};
use crate::domain::session::Session;

#[derive(Debug, thiserror::Error)]
pub enum CreateContactError {
    #[error("a contact with this email already exists")]
    EmailTaken,
    #[error("a contact with this username already exists")]
    UsernameTaken,
    #[error(transparent)]
    Store(#[from] anyhow::Error),
}

#[async_trait]
pub trait ContactStore: Send + Sync {
    /// Creates the contact with its unique email (and username) reserved, all or nothing.
    async fn create(&self, contact: &Contact) -> Result<(), CreateContactError>;
    async fn get(&self, contact_id: &str) -> anyhow::Result<Option<Contact>>;
    async fn find_by_login(&self, login: &Login) -> anyhow::Result<Option<Contact>>;
    /// Counts a failed sign-in; locks the account at the policy's threshold. Never extends a
    /// lockout in force.
    async fn record_failed_sign_in(
        &self,
        contact_id: &str,
        now: i64,
        policy: &LockoutPolicy,
    ) -> anyhow::Result<FailedSignIn>;
    /// Clears the failure count and lockout after a successful sign-in.
    async fn reset_lockout(&self, contact_id: &str) -> anyhow::Result<()>;
}

#[async_trait]
pub trait SessionStore: Send + Sync {
    async fn create(&self, session: &Session) -> anyhow::Result<()>;
    async fn get(&self, id_digest: &str) -> anyhow::Result<Option<Session>>;
    async fn touch(&self, id_digest: &str, now: i64) -> anyhow::Result<()>;
    async fn delete(&self, id_digest: &str) -> anyhow::Result<()>;
}

/// Seconds since the Unix epoch; a port so tests can move time.
pub trait Clock: Send + Sync {
    fn now(&self) -> i64;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or_default()
    }
}
