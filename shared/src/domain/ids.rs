//! Identifiers: one type per kind of thing, so a contact's id can never be passed where an
//! invitation's is expected. Stored and shown as plain text (a time-ordered UUID for new ones).

use std::fmt;
use std::ops::Deref;

use serde::{Deserialize, Serialize};

macro_rules! identifier {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// A new identifier: a time-ordered UUID (version 7: the millisecond, then random
            /// bits; ids made in one process are strictly increasing), so that rows created in the
            /// same second still list newest first by their `<second>#<id>` sort key.
            pub fn generate() -> Self {
                $name(uuid::Uuid::now_v7().to_string())
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        /// Read as text wherever text is enough (keys, logs, views).
        impl Deref for $name {
            type Target = str;

            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<String> for $name {
            fn from(id: String) -> Self {
                $name(id)
            }
        }

        impl From<&str> for $name {
            fn from(id: &str) -> Self {
                $name(id.to_string())
            }
        }
    };
}

identifier!(
    /// A contact (a customer of the business, maybe a portal user).
    ContactId
);
identifier!(
    /// An invitation.
    InvitationId
);
identifier!(
    /// An outbox message (one email).
    MessageId
);
identifier!(
    /// A portal event (a fact published on the event bus); consumers de-duplicate by it.
    EventId
);

/// Identifies one bulk import (a UUID).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ImportId(pub String);

impl ImportId {
    pub fn generate() -> Self {
        ImportId(uuid::Uuid::new_v4().to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ImportId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
