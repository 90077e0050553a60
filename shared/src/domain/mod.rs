//! The portal's domain: values that parse and never hold an invalid state, and pure rules.
//! Nothing here talks to AWS.

pub mod audit;
pub mod contact;
pub mod email;
pub mod ids;
pub mod invitation;
pub mod lockout;
pub mod outbox;
pub mod password;
pub mod secret;
pub mod session;
pub mod text;
pub mod time;
pub mod token;

/// The web role that may administer contacts and invitations (Power Pages' "Administrators").
pub const ADMINISTRATORS_ROLE: &str = "Administrators";
