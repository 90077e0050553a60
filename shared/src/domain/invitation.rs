//! Invitations (the Dynamics 365 "Send Invitation" model): staff invite a contact; the portal
//! emails a code; redeeming it gives the contact credentials, or attaches the invitation to an
//! account they already have, assigning web roles and a parent account.

use super::email::Email;
use super::ids::{ContactId, InvitationId, MessageId};
use super::time::Timestamp;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::secret::digest;

/// Crockford's base32: no I, L, O or U, so a code read aloud or typed is hard to get wrong.
const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
/// 20 random bytes: 160 bits, 32 characters.
const CODE_BYTES: usize = 20;
const CODE_CHARS: usize = CODE_BYTES * 8 / 5;

/// An invitation code in its normalised form (32 Crockford base32 characters). Only its digest is
/// stored; its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct InvitationCode(String);

impl fmt::Debug for InvitationCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("InvitationCode(..)")
    }
}

impl InvitationCode {
    /// A new code from the operating system's CSPRNG.
    pub fn generate() -> Self {
        let mut bytes = [0u8; CODE_BYTES];
        getrandom::fill(&mut bytes).expect("the operating system's random source failed");
        let mut code = String::with_capacity(CODE_CHARS);
        let (mut buffer, mut bits) = (0u32, 0u32);
        for byte in bytes {
            buffer = (buffer << 8) | u32::from(byte);
            bits += 8;
            while bits >= 5 {
                bits -= 5;
                code.push(ALPHABET[((buffer >> bits) & 31) as usize] as char);
            }
        }
        InvitationCode(code)
    }

    /// Reads a code as a person typed it: any case, spaces and hyphens ignored, and the letters
    /// Crockford's base32 reads as digits (O as 0, I and L as 1).
    pub fn parse(raw: &str) -> Option<Self> {
        if raw.len() > 128 {
            return None;
        }
        let mut code = String::with_capacity(CODE_CHARS);
        for c in raw.chars().filter(|c| !c.is_whitespace() && *c != '-') {
            let c = match c.to_ascii_uppercase() {
                'O' => '0',
                'I' | 'L' => '1',
                c if c.is_ascii() && ALPHABET.contains(&(c as u8)) => c,
                _ => return None,
            };
            code.push(c);
        }
        (code.len() == CODE_CHARS).then_some(InvitationCode(code))
    }

    /// The code as the email shows it: groups of four joined by hyphens.
    pub fn display(&self) -> String {
        self.0.as_bytes().chunks(4).map(|c| std::str::from_utf8(c).unwrap_or_default()).collect::<Vec<_>>().join("-")
    }

    /// What is stored: the SHA-256 of the normalised code.
    pub fn digest(&self) -> String {
        digest(&self.0)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InvitationType {
    Single,
    Group,
}

/// Who an invitation is for: a contact by id, or one by email (found, or created without credentials).
#[derive(Clone)]
pub enum Invitee {
    ContactId(ContactId),
    Email {
        email: Email,
        first_name: String,
        last_name: String,
    },
    /// Several contacts of a group invitation (`contact_ids`), each emailed the one code.
    Contacts(Vec<ContactId>),
}

/// An invitation request whose fields all parsed.
#[derive(Clone)]
pub struct InvitationRequest {
    pub invitee: Invitee,
    pub kind: InvitationType,
    pub max_redemptions: u32,
    pub expires_in_days: Option<u32>,
    pub roles: Vec<String>,
    pub account_id: Option<String>,
    pub redirect_path: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Delivery {
    Pending,
    Sent,
    Failed,
}

impl Delivery {
    /// As stored and filtered on (the serde name).
    pub fn as_str(self) -> &'static str {
        match self {
            Delivery::Pending => "pending",
            Delivery::Sent => "sent",
            Delivery::Failed => "failed",
        }
    }
}

/// An invitation as stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Invitation {
    pub invitation_id: InvitationId,
    pub code_digest: String,
    #[serde(rename = "type")]
    pub kind: InvitationType,
    /// The invited contact; the email goes to them. A single invitation is redeemed as them.
    pub contact_id: ContactId,
    /// The invited person's address and names: empty once their account was deleted.
    #[serde(default)]
    pub email: String,
    #[serde(default)]
    pub first_name: String,
    #[serde(default)]
    pub last_name: String,
    pub max_redemptions: u32,
    #[serde(default)]
    pub redemptions: u32,
    pub expires_at: Timestamp,
    #[serde(default)]
    pub revoked: bool,
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect_path: Option<String>,
    pub created_at: Timestamp,
    pub created_by: ContactId,
    /// The outbox message carrying the current code; a resend replaces it.
    pub message_id: MessageId,
    pub delivery: Delivery,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery_error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered_at: Option<Timestamp>,
}

/// Where an invitation stands, as the administrator sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InvitationStatus {
    Active,
    Redeemed,
    Expired,
    Revoked,
}

impl Invitation {
    /// The invited person's name as staff see it ("Deleted contact" once their account was
    /// deleted and their name erased).
    pub fn invitee_name(&self) -> String {
        let name = format!("{} {}", self.first_name, self.last_name).trim().to_string();
        if name.is_empty() { "Deleted contact".to_string() } else { name }
    }
}

impl Invitation {
    pub fn status(&self, now: Timestamp) -> InvitationStatus {
        if self.revoked {
            InvitationStatus::Revoked
        } else if self.redemptions >= self.max_redemptions {
            InvitationStatus::Redeemed
        } else if now >= self.expires_at {
            InvitationStatus::Expired
        } else {
            InvitationStatus::Active
        }
    }

    /// Whether the code may be redeemed now. Expiry is checked here, on read: TTL deletes late.
    pub fn is_redeemable(&self, now: Timestamp) -> bool {
        self.status(now) == InvitationStatus::Active
    }
}

/// One redemption of an invitation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Redemption {
    pub invitation_id: InvitationId,
    pub contact_id: ContactId,
    pub redeemed_at: Timestamp,
    /// Where it came from; empty once `PORTAL_AUDIT_RETENTION_DAYS` have passed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source_ip: String,
}

/// The roles a contact has after redeeming: theirs plus the invitation's, each once, in order.
pub fn merged_roles(current: &[String], granted: &[String]) -> Vec<String> {
    let mut roles = current.to_vec();
    for role in granted {
        if !roles.contains(role) {
            roles.push(role.clone());
        }
    }
    roles
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delivery_is_stored_and_filtered_by_its_serde_name() {
        for delivery in [Delivery::Pending, Delivery::Sent, Delivery::Failed] {
            assert_eq!(serde_json::to_value(delivery).unwrap(), delivery.as_str());
        }
    }

    #[test]
    fn codes_carry_160_bits_in_a_typeable_alphabet() {
        let code = InvitationCode::generate();
        assert_eq!(code.0.len(), 32);
        assert!(code.0.bytes().all(|b| ALPHABET.contains(&b)));
        assert_ne!(code, InvitationCode::generate());
        let shown = code.display();
        assert_eq!(shown.len(), 39);
        assert_eq!(shown.split('-').count(), 8);
    }

    #[test]
    fn codes_are_read_ignoring_case_spaces_and_hyphens() {
        let code = InvitationCode::generate();
        let shown = code.display();
        let variants = [
            shown.clone(),
            shown.to_lowercase(),
            shown.replace('-', " "),
            shown.replace('-', ""),
            format!("  {shown}  "),
        ];
        for variant in variants {
            assert_eq!(InvitationCode::parse(&variant).as_ref(), Some(&code), "{variant}");
        }
        let sample = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
        assert_eq!(InvitationCode::parse("o123456789abcdefghjkmnpqrstvwxyz").unwrap().0, sample, "O reads as 0");
        assert_eq!(
            InvitationCode::parse("0i23456789ABCDEFGHJKMNPQRSTVWXYZ").unwrap().0,
            "01".to_string() + &sample[2..]
        );
        for bad in
            ["", "ABC", &format!("{sample}0"), "U123456789ABCDEFGHJKMNPQRSTVWXYZ", "é123456789ABCDEFGHJKMNPQRSTVWXYZ"]
        {
            assert_eq!(InvitationCode::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_digest_is_of_the_normalised_code() {
        let code = InvitationCode::generate();
        let typed = InvitationCode::parse(&code.display().to_lowercase()).unwrap();
        assert_eq!(code.digest(), typed.digest());
        assert_eq!(code.digest().len(), 64);
    }

    fn invitation() -> Invitation {
        Invitation {
            invitation_id: "i".into(),
            code_digest: "d".into(),
            kind: InvitationType::Single,
            contact_id: "c".into(),
            email: "a@example.com".into(),
            first_name: "A".into(),
            last_name: "B".into(),
            max_redemptions: 1,
            redemptions: 0,
            expires_at: Timestamp::from_secs(1000),
            revoked: false,
            roles: vec![],
            account_id: None,
            redirect_path: None,
            created_at: Timestamp::from_secs(0),
            created_by: "admin".into(),
            message_id: "m".into(),
            delivery: Delivery::Pending,
            delivery_error: None,
            delivered_at: None,
        }
    }

    #[test]
    fn status_table() {
        let cases = [
            (invitation(), 999, InvitationStatus::Active),
            (invitation(), 1000, InvitationStatus::Expired),
            (Invitation { redemptions: 1, ..invitation() }, 10, InvitationStatus::Redeemed),
            (Invitation { revoked: true, redemptions: 1, ..invitation() }, 10, InvitationStatus::Revoked),
            (
                Invitation { kind: InvitationType::Group, max_redemptions: 3, redemptions: 2, ..invitation() },
                10,
                InvitationStatus::Active,
            ),
        ];
        for (invitation, now, expected) in cases {
            assert_eq!(invitation.status(Timestamp::from_secs(now)), expected);
            assert_eq!(invitation.is_redeemable(Timestamp::from_secs(now)), expected == InvitationStatus::Active);
        }
    }

    #[test]
    fn roles_merge_without_duplicates() {
        let merged = merged_roles(&["A".into(), "B".into()], &["B".into(), "C".into()]);
        assert_eq!(merged, ["A", "B", "C"]);
    }
}
