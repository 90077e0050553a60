//! Passkeys (WebAuthn credentials) as the portal keeps them, and the state of a ceremony (the two
//! requests of a registration or a sign-in) held server-side between its start and its finish.

use serde::{Deserialize, Serialize};

use super::ids::ContactId;
use super::secret::digest;
use super::time::Timestamp;

/// How long a ceremony's state is kept: its options' challenge must be answered within it.
pub const CEREMONY_SECS: i64 = 300;
/// The longest name a contact may give a passkey.
pub const NAME_MAX_CHARS: usize = 64;
/// A contact may hold at most this many passkeys (each is listed and excluded at registration).
pub const MAX_PER_CONTACT: usize = 20;

/// A registered passkey. `id` is the digest of its credential id: what the routes name and the
/// store is keyed by. `credential` is the relying-party crate's serialized passkey (public key,
/// algorithm, signature counter): no secret, but only the server reads it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredPasskey {
    pub id: String,
    pub contact_id: ContactId,
    pub name: String,
    pub created_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used_at: Option<Timestamp>,
    /// The authenticator's signature counter as last accepted (0 for authenticators without one).
    pub sign_count: u32,
    pub credential: String,
}

/// The digest naming a credential id (the raw bytes an authenticator returns).
pub fn passkey_id(credential_id: &[u8]) -> String {
    let hex: String = credential_id.iter().map(|b| format!("{b:02x}")).collect();
    digest(&hex)
}

/// A passkey's name as the contact typed it: trimmed, not blank, at most [`NAME_MAX_CHARS`]; none
/// given is "Passkey".
pub fn parse_name(raw: Option<&str>) -> Result<String, super::Refusal> {
    let name = raw.map(str::trim).unwrap_or_default();
    if name.is_empty() {
        return Ok("Passkey".to_string());
    }
    if name.chars().count() > NAME_MAX_CHARS {
        return Err(super::Refusal(format!("must be at most {NAME_MAX_CHARS} characters")));
    }
    if name.chars().any(char::is_control) {
        return Err("must not contain control characters".into());
    }
    Ok(name.to_string())
}

/// What a ceremony is for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "purpose", rename_all = "snake_case")]
pub enum CeremonyPurpose {
    /// Registering a passkey for this signed-in contact.
    Registration { registrant: ContactId },
    /// Signing in with any discoverable passkey.
    SignIn,
}

/// A ceremony's state, keyed by the digest of the random id handed to the client with the options.
/// Taken (deleted) by the finish that uses it: single-use.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ceremony {
    pub id_digest: String,
    #[serde(flatten)]
    pub purpose: CeremonyPurpose,
    /// The relying-party crate's serialized state (the challenge and what the finish checks).
    pub state: String,
    pub expires_at: Timestamp,
}

impl Ceremony {
    pub fn is_live(&self, now: Timestamp) -> bool {
        now < self.expires_at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_bounded_and_default_to_passkey() {
        assert_eq!(parse_name(None).unwrap(), "Passkey");
        assert_eq!(parse_name(Some("  ")).unwrap(), "Passkey");
        assert_eq!(parse_name(Some(" Laptop ")).unwrap(), "Laptop");
        assert!(parse_name(Some(&"x".repeat(NAME_MAX_CHARS + 1))).is_err());
        assert!(parse_name(Some("a\u{7}b")).is_err());
    }

    #[test]
    fn a_ceremony_lives_until_its_expiry() {
        let ceremony = Ceremony {
            id_digest: "d".into(),
            purpose: CeremonyPurpose::SignIn,
            state: "{}".into(),
            expires_at: Timestamp::from_secs(1300),
        };
        assert!(ceremony.is_live(Timestamp::from_secs(1299)));
        assert!(!ceremony.is_live(Timestamp::from_secs(1300)));
    }

    #[test]
    fn passkey_ids_are_digests_of_the_credential_id() {
        assert_eq!(passkey_id(&[0xab, 0x01]), digest("ab01"));
        assert_eq!(passkey_id(&[1]).len(), 64);
    }
}
