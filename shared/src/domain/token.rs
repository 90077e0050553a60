//! Emailed single-use tokens: email confirmation and password reset. At least 128 bits (256 here),
//! stored only as a SHA-256 digest, used at most once, expiring.

use super::ids::ContactId;
use super::time::Timestamp;
use serde::{Deserialize, Serialize};

use super::secret::{digest, random_token};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenPurpose {
    ConfirmEmail,
    ResetPassword,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmailToken {
    pub digest: String,
    pub purpose: TokenPurpose,
    pub contact_id: ContactId,
    /// The digest of the (normalised) address the token was sent to: a confirmation confirms
    /// this address only. A digest, so that a deleted account's address is in no token it left
    /// (tokens expire on their own; none is listed by account). A token stored before holds none,
    /// and fits no address.
    #[serde(default)]
    pub email_digest: String,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    /// A reset token works only while the contact's reset nonce is still this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
}

impl EmailToken {
    /// A new token; returns it with the plain value for the email (never stored).
    pub fn issue(
        purpose: TokenPurpose,
        contact_id: &ContactId,
        email: &super::email::Email,
        now: Timestamp,
        lifetime_secs: i64,
    ) -> (EmailToken, String) {
        let plain = random_token();
        let token = EmailToken {
            digest: digest(&plain),
            purpose,
            contact_id: contact_id.clone(),
            email_digest: digest(email.normalized()),
            created_at: now,
            expires_at: now + lifetime_secs,
            nonce: (purpose == TokenPurpose::ResetPassword).then(|| random_token()[..16].to_string()),
        };
        (token, plain)
    }

    /// Whether the token was sent to `email`.
    pub fn is_for(&self, email: &super::email::Email) -> bool {
        !self.email_digest.is_empty() && self.email_digest == digest(email.normalized())
    }

    pub fn is_usable(&self, purpose: TokenPurpose, now: Timestamp) -> bool {
        self.purpose == purpose && now < self.expires_at
    }
}

/// A token as someone pasted it: 43 URL-safe base64 characters, or nothing usable.
pub fn parse_token(raw: &str) -> Option<String> {
    let value = raw.trim();
    (value.len() == 43 && value.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'))
        .then(|| value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_single_purpose_and_expire() {
        let (token, plain) = EmailToken::issue(
            TokenPurpose::ResetPassword,
            &"c1".into(),
            &super::super::email::Email::parse("Ada@Example.com").unwrap(),
            Timestamp::from_secs(1000),
            3600,
        );
        assert_eq!(token.digest, digest(&plain));
        // The address is held as a digest only, and the token fits it however it is written.
        assert!(!serde_json::to_string(&token).unwrap().to_lowercase().contains("ada@example.com"));
        assert!(token.is_for(&super::super::email::Email::parse("ada@example.com").unwrap()));
        assert!(!token.is_for(&super::super::email::Email::parse("bob@example.com").unwrap()));
        assert_eq!(parse_token(&format!(" {plain} ")), Some(plain.clone()));
        let cases = [
            (TokenPurpose::ResetPassword, 1000, true),
            (TokenPurpose::ResetPassword, 4599, true),
            (TokenPurpose::ResetPassword, 4600, false),
            (TokenPurpose::ConfirmEmail, 1000, false),
        ];
        for (purpose, now, usable) in cases {
            assert_eq!(token.is_usable(purpose, Timestamp::from_secs(now)), usable, "{purpose:?} at {now}");
        }
    }

    #[test]
    fn only_well_formed_tokens_parse() {
        for bad in ["", "short", &"a".repeat(44), &format!("{}!", "a".repeat(42))] {
            assert_eq!(parse_token(bad), None, "{bad}");
        }
    }
}
