//! The portal's domain: values that parse and never hold an invalid state, and pure rules.
//! Nothing here talks to AWS.

pub mod audit;
pub mod browser;
pub mod contact;
pub mod deliverability;
pub mod email;
pub mod event;
pub mod idempotency;
pub mod identity;
pub mod ids;
pub mod import;
pub mod invitation;
pub mod listing;
pub mod lockout;
pub mod outbox;
pub mod pacing;
pub mod passkey;
pub mod password;
pub mod secret;
pub mod session;
pub mod text;
pub mod time;
pub mod token;
pub mod two_factor;

/// Why a value someone typed was refused, in words for that person ("must be at least 12
/// characters").
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refusal(pub String);

impl From<&str> for Refusal {
    fn from(reason: &str) -> Self {
        Refusal(reason.to_string())
    }
}

/// The web role that may administer contacts and invitations (Power Pages' "Administrators").
pub const ADMINISTRATORS_ROLE: &str = "Administrators";
pub mod group;
