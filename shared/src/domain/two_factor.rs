//! Two-factor authentication: TOTP (RFC 6238), emailed sign-in codes, recovery codes, and the
//! pending sign-in between the password and the second factor. Pure rules; the stores and the
//! sealing of the TOTP secret are ports.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use totp_rs::{Algorithm, Secret, TOTP};

use super::ids::ContactId;
use super::secret::{digest, random_token};
use super::time::Timestamp;

/// RFC 6238 as the contract fixes it: SHA-1, 6 digits, 30-second steps, one step of drift.
pub const TOTP_DIGITS: usize = 6;
pub const TOTP_STEP_SECS: i64 = 30;
pub const TOTP_DRIFT_STEPS: i64 = 1;
/// The issuer an authenticator app shows next to the account.
pub const TOTP_ISSUER: &str = "Customer portal";
/// 160 bits, as RFC 4226 recommends for HMAC-SHA-1.
const TOTP_SECRET_BYTES: usize = 20;

pub const RECOVERY_CODE_COUNT: usize = 10;
/// How long an emailed sign-in code works.
pub const EMAIL_CODE_SECS: i64 = 600;
/// How long a pending sign-in (password right, second factor awaited) lasts.
pub const PENDING_SIGN_IN_SECS: i64 = 300;
/// Wrong codes a pending sign-in allows; the last one ends it.
pub const PENDING_SIGN_IN_ATTEMPTS: u32 = 5;
/// Emailed codes one pending sign-in may ask for: its own cap, so that someone who has the
/// password cannot spend the owner's email allowances by asking again and again.
pub const PENDING_SIGN_IN_EMAILS: u32 = 3;

/// A TOTP secret in the clear: only ever in memory, sealed before it is stored.
#[derive(Clone, PartialEq, Eq)]
pub struct TotpSecret(Vec<u8>);

impl std::fmt::Debug for TotpSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TotpSecret(..)")
    }
}

impl TotpSecret {
    pub fn generate() -> Self {
        let mut bytes = vec![0u8; TOTP_SECRET_BYTES];
        getrandom::fill(&mut bytes).expect("the operating system's random source failed");
        TotpSecret(bytes)
    }

    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        TotpSecret(bytes)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The secret of its base32 form (as an authenticator app is given it), if it is one.
    pub fn from_base32(encoded: &str) -> Option<Self> {
        Secret::Encoded(encoded.to_string()).to_bytes().ok().map(TotpSecret)
    }

    /// The base32 form people type into an authenticator app.
    pub fn base32(&self) -> String {
        Secret::Raw(self.0.clone()).to_encoded().to_string()
    }

    fn totp(&self, account: &str) -> Option<TOTP> {
        TOTP::new(
            Algorithm::SHA1,
            TOTP_DIGITS,
            TOTP_DRIFT_STEPS as u8,
            TOTP_STEP_SECS as u64,
            self.0.clone(),
            Some(TOTP_ISSUER.to_string()),
            account.replace(':', ""),
        )
        .ok()
    }

    /// The `otpauth://totp/...` URI an authenticator app reads (from the QR code).
    pub fn otpauth_uri(&self, account: &str) -> String {
        self.totp(account).map(|t| t.get_url()).unwrap_or_default()
    }

    /// The code of time step `step`.
    pub fn code_at_step(&self, step: i64) -> String {
        self.totp("").map(|t| t.generate((step.max(0) * TOTP_STEP_SECS) as u64)).unwrap_or_default()
    }

    /// The time step whose code `code` is, within one step of `now`'s and after `last_used` (a code
    /// is accepted once: a step at or before the last one used is refused). The step is what the
    /// store records, conditionally, so that two parallel uses of one code cannot both pass.
    pub fn matching_step(&self, code: &str, now: Timestamp, last_used: i64) -> Option<i64> {
        let code = normalize_digits(code)?;
        let current = now.as_secs().div_euclid(TOTP_STEP_SECS);
        (current - TOTP_DRIFT_STEPS..=current + TOTP_DRIFT_STEPS)
            .filter(|step| *step > last_used)
            .find(|step| super::secret::same_secret(&self.code_at_step(*step), &code))
    }
}

/// The digits of a typed code (spaces and hyphens ignored), if it is six of them.
pub fn normalize_digits(code: &str) -> Option<String> {
    let digits: String = code.chars().filter(|c| !c.is_whitespace() && *c != '-').collect();
    (digits.len() == TOTP_DIGITS && digits.chars().all(|c| c.is_ascii_digit())).then_some(digits)
}

/// A recovery code as it is stored: the digest of its normalised form (lower case, no spaces or
/// hyphens), so `ABCD-EFGH` and `abcdefgh` are the same code.
pub fn recovery_digest(code: &str) -> String {
    let normalized: String =
        code.chars().filter(|c| !c.is_whitespace() && *c != '-').flat_map(char::to_lowercase).collect();
    digest(&format!("recovery#{normalized}"))
}

/// A new set of recovery codes: the codes to show once, and their digests to store.
pub fn new_recovery_codes() -> (Vec<String>, Vec<String>) {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";
    let codes: Vec<String> = (0..RECOVERY_CODE_COUNT)
        .map(|_| {
            let mut bytes = [0u8; 10];
            getrandom::fill(&mut bytes).expect("the operating system's random source failed");
            let chars: String = bytes.iter().map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char).collect();
            format!("{}-{}", &chars[..5], &chars[5..])
        })
        .collect();
    let digests = codes.iter().map(|c| recovery_digest(c)).collect();
    (codes, digests)
}

/// A fresh 6-digit emailed sign-in code.
pub fn new_email_code() -> String {
    let mut bytes = [0u8; 4];
    getrandom::fill(&mut bytes).expect("the operating system's random source failed");
    format!("{:06}", u32::from_be_bytes(bytes) % 1_000_000)
}

/// How long an emailed sign-in code (the first factor of `POST /signin/email-code/verify`) works.
pub const SIGN_IN_CODE_SECS: i64 = 600;
/// How many wrong codes void an emailed sign-in code.
pub const SIGN_IN_CODE_TRIES: u32 = 5;

/// An emailed sign-in code as stored: its digest, bound to the contact and kept apart from the
/// second factor's emailed code (the one is never the other).
pub fn sign_in_code_digest(contact_id: &ContactId, code: &str) -> String {
    digest(&format!("sign-in-code#{contact_id}#{code}"))
}

/// An emailed code as stored: its digest, bound to the contact (six digits alone are guessable
/// offline, so the digest is of the code with the contact id).
pub fn email_code_digest(contact_id: &ContactId, code: &str) -> String {
    digest(&format!("email-code#{contact_id}#{code}"))
}

/// The TOTP secret sealed by envelope encryption: AES-256-GCM under a data key, and that data key
/// encrypted by the key-management service. Opened only to verify a code.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedSecret {
    /// base64 of the AES-GCM ciphertext (with its tag).
    pub ciphertext: String,
    /// base64 of the 96-bit nonce.
    pub nonce: String,
    /// base64 of the data key as the key service encrypted it.
    pub encrypted_key: String,
    /// The contact it is sealed for (bound in the cipher's additional data and the key service's
    /// encryption context); absent on secrets sealed before, which are sealed again on next use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bound_to: Option<ContactId>,
}

impl SealedSecret {
    pub fn is_bound(&self) -> bool {
        self.bound_to.is_some()
    }
}

/// A contact's two-factor state (one item per contact).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TwoFactor {
    pub contact_id: ContactId,
    /// The confirmed TOTP secret: TOTP is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub totp: Option<SealedSecret>,
    /// The last time step whose code was accepted; only a later one is accepted next.
    #[serde(default)]
    pub totp_last_step: i64,
    /// A secret being set up, until a first code confirms it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_totp: Option<SealedSecret>,
    /// Emailed codes as a second factor.
    #[serde(default)]
    pub email: bool,
    /// Unused recovery codes, by digest.
    #[serde(default)]
    pub recovery_codes: BTreeMap<String, bool>,
    /// The digest of the last emailed sign-in code, until used or expired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_code_expires_at: Option<Timestamp>,
    /// Written by every change and every use: a change writes only over the state it read.
    #[serde(default)]
    pub version: u64,
}

impl TwoFactor {
    pub fn none(contact_id: &ContactId) -> Self {
        TwoFactor {
            contact_id: contact_id.clone(),
            totp: None,
            totp_last_step: 0,
            pending_totp: None,
            email: false,
            recovery_codes: BTreeMap::new(),
            email_code: None,
            email_code_expires_at: None,
            version: 0,
        }
    }

    /// Whether a sign-in needs a second step.
    pub fn enabled(&self) -> bool {
        self.totp.is_some() || self.email
    }

    /// The methods a sign-in's second step offers, in the contract's words.
    pub fn methods(&self) -> Vec<&'static str> {
        let mut methods = Vec::new();
        if self.totp.is_some() {
            methods.push("totp");
        }
        if self.email {
            methods.push("email");
        }
        if self.enabled() && !self.recovery_codes.is_empty() {
            methods.push("recovery_code");
        }
        methods
    }

    pub fn set_recovery_codes(&mut self, digests: Vec<String>) {
        self.recovery_codes = digests.into_iter().map(|d| (d, true)).collect();
    }
}

/// Whether a contact with `roles` must have a second factor under `required_roles`.
pub fn two_factor_required(roles: &[String], required_roles: &[String]) -> bool {
    roles.iter().any(|role| required_roles.iter().any(|r| r == role))
}

/// A sign-in whose password was right, waiting for its second factor. Only the digest of the
/// cookie's token is stored (like a session's).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingSignIn {
    pub id_digest: String,
    pub contact_id: ContactId,
    pub expires_at: Timestamp,
    /// Wrong codes so far.
    #[serde(default)]
    pub attempts: u32,
    /// "Remember me" as ticked with the password.
    #[serde(default)]
    pub remember_me: bool,
    /// Whether the password came from a trusted device of the account (its lockout rule applies).
    #[serde(default)]
    pub trusted_device: bool,
    /// The account's session epoch when the password was right: a password change or reset (a
    /// new epoch) meanwhile voids the pending sign-in, as it ends the sessions.
    #[serde(default)]
    pub epoch: String,
    /// Emailed codes sent for it so far (at most [`PENDING_SIGN_IN_EMAILS`]).
    #[serde(default)]
    pub emails_sent: u32,
    /// The second steps it offers, fixed by its first factor (after an emailed code: never the
    /// email again; a passkey where the account has one). Empty for one made before they were
    /// kept: the account's methods then.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
}

impl PendingSignIn {
    /// Whether a code emailed to the account may prove this second step.
    pub fn offers_email(&self) -> bool {
        self.methods.is_empty() || self.methods.iter().any(|m| m == "email")
    }
}

/// A second-step method's name as the contract spells it (a stored one read back).
pub fn method_name(stored: &str) -> Option<&'static str> {
    ["totp", "email", "recovery_code", "passkey"].into_iter().find(|m| *m == stored)
}

impl PendingSignIn {
    /// A new pending sign-in of the account in `epoch`, and the token for its cookie.
    pub fn start(
        contact_id: &ContactId,
        epoch: &str,
        now: Timestamp,
        remember_me: bool,
        trusted_device: bool,
    ) -> (Self, String) {
        let token = random_token();
        let pending = PendingSignIn {
            id_digest: digest(&token),
            contact_id: contact_id.clone(),
            expires_at: now + PENDING_SIGN_IN_SECS,
            attempts: 0,
            remember_me,
            trusted_device,
            epoch: epoch.to_string(),
            emails_sent: 0,
            methods: Vec::new(),
        };
        (pending, token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 appendix B's SHA-1 secret ("12345678901234567890").
    fn rfc_secret() -> TotpSecret {
        TotpSecret::from_bytes(b"12345678901234567890".to_vec())
    }

    #[test]
    fn codes_are_rfc_6238_sha1_six_digits() {
        // RFC 6238 B: T = 59 s gives 94287082 (8 digits); 6 digits are its last six.
        assert_eq!(rfc_secret().code_at_step(59 / 30), "287082");
        assert_eq!(rfc_secret().code_at_step(1_111_111_109 / 30), "081804");
    }

    #[test]
    fn one_step_of_drift_either_way_is_accepted_two_are_not() {
        let secret = rfc_secret();
        let now = Timestamp::from_secs(1_800_000_015);
        let step = now.as_secs() / TOTP_STEP_SECS;
        for (offset, accepted) in [(-2, false), (-1, true), (0, true), (1, true), (2, false)] {
            let code = secret.code_at_step(step + offset);
            let found = secret.matching_step(&code, now, 0);
            assert_eq!(found.is_some(), accepted, "offset {offset}");
            if accepted {
                assert_eq!(found, Some(step + offset));
            }
        }
    }

    #[test]
    fn a_code_is_accepted_once_and_never_an_earlier_one_after_it() {
        let secret = rfc_secret();
        let now = Timestamp::from_secs(1_800_000_015);
        let step = now.as_secs() / TOTP_STEP_SECS;
        let code = secret.code_at_step(step);
        let used = secret.matching_step(&code, now, 0).expect("first use");
        assert_eq!(secret.matching_step(&code, now, used), None, "replay");
        assert_eq!(secret.matching_step(&secret.code_at_step(step - 1), now, used), None, "an older code");
        assert_eq!(secret.matching_step(&secret.code_at_step(step + 1), now, used), Some(step + 1));
    }

    #[test]
    fn typed_codes_may_have_spaces_but_must_be_six_digits() {
        assert_eq!(normalize_digits(" 123 456 ").as_deref(), Some("123456"));
        for bad in ["12345", "1234567", "12a456", ""] {
            assert_eq!(normalize_digits(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_otpauth_uri_names_the_issuer_account_and_parameters() {
        let uri = rfc_secret().otpauth_uri("ada@example.com");
        assert!(uri.starts_with("otpauth://totp/"), "{uri}");
        assert!(uri.contains(&format!("secret={}", rfc_secret().base32())), "{uri}");
        assert!(uri.contains("issuer=Customer%20portal"), "{uri}");
    }

    #[test]
    fn recovery_codes_are_ten_distinct_and_read_loosely() {
        let (codes, digests) = new_recovery_codes();
        assert_eq!(codes.len(), RECOVERY_CODE_COUNT);
        let unique: std::collections::BTreeSet<_> = digests.iter().collect();
        assert_eq!(unique.len(), RECOVERY_CODE_COUNT);
        let typed = codes[0].to_uppercase().replace('-', " ");
        assert_eq!(recovery_digest(&typed), digests[0]);
    }

    #[test]
    fn the_second_step_offers_recovery_codes_only_with_a_factor() {
        let mut state = TwoFactor::none(&"c1".into());
        state.set_recovery_codes(vec!["d".into()]);
        assert!(state.methods().is_empty());
        state.email = true;
        assert_eq!(state.methods(), ["email", "recovery_code"]);
    }

    #[test]
    fn required_roles_match_any_role_of_the_contact() {
        let required = vec!["Administrators".to_string()];
        assert!(two_factor_required(&["Customers".into(), "Administrators".into()], &required));
        assert!(!two_factor_required(&["Customers".into()], &required));
        assert!(!two_factor_required(&["Administrators".into()], &[]));
    }
}
