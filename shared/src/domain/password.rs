//! Passwords: the acceptance policy and argon2id hashing.
//!
//! Policy (NIST SP 800-63B / OWASP): a minimum length, long passphrases allowed, no composition
//! rules, and a rejection of common or guessable passwords by zxcvbn, a maintained estimator that
//! ships its dictionaries (common passwords, names, words, keyboard patterns) with the code.

use std::fmt;

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use serde::{Deserialize, Serialize};

use super::Refusal;

/// The longest password the policy accepts; long enough for passphrases and password managers,
/// short enough that hashing cannot be used to burn CPU.
pub const PASSWORD_MAX_LENGTH: usize = 256;

/// How many characters of a password zxcvbn scores. Its matching grows faster than the length;
/// the first 100 characters of a password that is not guessable are not guessable either, and a
/// password whose first 100 are guessable is refused (the rest cannot be checked cheaply).
/// zxcvbn 3 cuts its input at 100 characters itself; the policy says so here, whatever the version.
pub const STRENGTH_SCORED_LENGTH: usize = 100;

/// A password someone typed. Its `Debug` never shows the value.
#[derive(Clone)]
pub struct Password(String);

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(..)")
    }
}

impl Password {
    /// Wraps a password for verification: the exact string, no trimming, no normalisation.
    pub fn new(raw: String) -> Self {
        Password(raw)
    }

    /// Wraps a new password after checking it against the policy. `context` holds what the user
    /// told us about themselves (email, names, username): a password built from those is guessable.
    pub fn choose(raw: String, min_length: usize, context: &[&str]) -> Result<Self, Refusal> {
        let length = raw.chars().count();
        if length < min_length {
            return Err(Refusal(format!("must be at least {min_length} characters")));
        }
        if length > PASSWORD_MAX_LENGTH {
            return Err(Refusal(format!("must be at most {PASSWORD_MAX_LENGTH} characters")));
        }
        if raw.chars().any(|c| c.is_control()) {
            return Err("must not contain control characters".into());
        }
        let estimate = strength(&raw, context);
        if u8::from(estimate.score()) < 3 {
            let warning = estimate.feedback().and_then(|f| f.warning()).map(|w| w.to_string());
            return Err(Refusal(match warning {
                Some(warning) => format!("is too easy to guess: {}", warning.trim_end_matches('.')),
                None => "is too common or easy to guess; a few unrelated words make a strong one".into(),
            }));
        }
        Ok(Password(raw))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// zxcvbn's estimate for the first [`STRENGTH_SCORED_LENGTH`] characters of `password`.
fn strength(password: &str, context: &[&str]) -> zxcvbn::Entropy {
    let _span = tracing::info_span!("password_strength").entered();
    let scored = match password.char_indices().nth(STRENGTH_SCORED_LENGTH) {
        Some((cut, _)) => &password[..cut],
        None => password,
    };
    zxcvbn::zxcvbn(scored, context)
}

/// An argon2id hash in PHC string form. Its `Debug` never shows the value.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PasswordHashString(String);

impl fmt::Debug for PasswordHashString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PasswordHashString(..)")
    }
}

/// A hash of a random password with the same parameters as real ones: unknown logins are verified
/// against it so that their answer takes as long as a wrong password's.
const DECOY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$Zmx1c3RlcmVkLWRlY295$RCzT7ZqDcnvpVUu0ZhbjqN+lvvw0F0rgVAl4xv29Tf8";

/// Hashes with argon2id, m=19 MiB, t=2, p=1 (OWASP), on a blocking thread so the async runtime keeps
/// serving other requests.
pub async fn hash_password(password: Password) -> anyhow::Result<PasswordHashString> {
    let span = tracing::info_span!("hash_password");
    tokio::task::spawn_blocking(move || {
        let _entered = span.enter();
        let hash = Argon2::default()
            .hash_password(password.expose().as_bytes())
            .map_err(|e| anyhow::anyhow!("argon2 hashing failed: {e}"))?;
        Ok(PasswordHashString(hash.to_string()))
    })
    .await?
}

/// Verifies `password` against `hash`, or against the decoy when there is no hash (unknown login,
/// or a contact without credentials) so that every path costs one argon2 run. Returns true only for
/// a real hash that matches.
pub async fn verify_password(password: Password, hash: Option<PasswordHashString>) -> anyhow::Result<bool> {
    // Whether the check is against an account (not the decoy) is in the span, never the password.
    let span = tracing::info_span!("verify_password", against_account = hash.is_some());
    tokio::task::spawn_blocking(move || {
        let _entered = span.enter();
        let (phc, real) = match &hash {
            Some(h) => (h.0.as_str(), true),
            None => (DECOY_HASH, false),
        };
        let parsed = PasswordHash::new(phc).map_err(|e| anyhow::anyhow!("stored hash unreadable: {e}"))?;
        let matches = Argon2::default().verify_password(password.expose().as_bytes(), &parsed).is_ok();
        Ok(real && matches)
    })
    .await?
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic string of varied printable characters (no pattern zxcvbn would spot).
    fn scrambled(length: usize) -> String {
        let alphabet: Vec<char> = ('!'..='~').collect();
        let mut state: u64 = 0x2545_F491_4F6C_DD1D;
        (0..length)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                alphabet[(state % alphabet.len() as u64) as usize]
            })
            .collect()
    }

    fn choose(raw: &str) -> Result<Password, Refusal> {
        Password::choose(raw.to_string(), 12, &["ada@example.com", "Ada", "Lovelace"])
    }

    #[test]
    fn policy_table() {
        let accepted = [
            "violet-harbor-lantern-42",
            "correct horse battery staple",
            "ein sehr langes Passwort für Grüße",
            &scrambled(64),
        ];
        for p in accepted {
            assert!(choose(p).is_ok(), "{p:?} should be accepted: {:?}", choose(p).err());
        }
        let rejected: &[(&str, &str)] = &[
            ("short-pw-1", "at least 12"),
            ("password1234", "guess"),
            ("qwertyuiopasdf", "guess"),
            ("111111111111111", "guess"),
            ("lovelacelovelace", "guess"),
            ("ada@example.com1", "guess"),
            ("abc\u{0}defghijklmnop", "control"),
        ];
        for (p, reason) in rejected {
            let err = choose(p).err().map(|r| r.0).unwrap_or_default();
            assert!(err.contains(reason), "{p:?}: {err:?} should mention {reason:?}");
        }
    }

    #[test]
    fn length_limits_count_characters() {
        assert!(choose(&"ü".repeat(11)).is_err());
        let long = scrambled(256);
        assert_eq!(long.len(), 256);
        assert!(choose(&long).is_ok());
        assert!(choose(&format!("{long}x")).unwrap_err().0.contains("at most 256"));
    }

    #[test]
    fn only_the_first_100_characters_are_scored() {
        // Guessable for 100 characters, then random: refused, as only the guessable part is scored.
        let guessable_start = format!("{}{}", "a".repeat(STRENGTH_SCORED_LENGTH), scrambled(40));
        let refused = choose(&guessable_start).err().map(|r| r.0).unwrap_or_default();
        assert!(refused.contains("guess"), "{refused:?}");
        // Random for 100 characters, then anything (within the maximum): accepted.
        let strong_start = format!("{}{}", scrambled(STRENGTH_SCORED_LENGTH), "a".repeat(150));
        assert!(choose(&strong_start).is_ok());
        // Multi-byte characters are cut at a character boundary.
        assert!(choose(&format!("{}{}", scrambled(99), "ü".repeat(157))).is_ok());
    }

    #[tokio::test]
    async fn hashes_verify_the_exact_string_only() {
        let hash = hash_password(Password::new("violet-harbor-lantern-42".into())).await.unwrap();
        assert!(format!("{:?}", hash).contains(".."));
        assert!(verify_password(Password::new("violet-harbor-lantern-42".into()), Some(hash.clone())).await.unwrap());
        for wrong in ["violet-harbor-lantern-4", "violet-harbor-lantern-42 ", "Violet-harbor-lantern-42", ""] {
            assert!(!verify_password(Password::new(wrong.into()), Some(hash.clone())).await.unwrap(), "{wrong:?}");
        }
    }

    #[tokio::test]
    async fn hashes_are_argon2id_with_owasp_parameters() {
        let hash = hash_password(Password::new("violet-harbor-lantern-42".into())).await.unwrap();
        assert!(hash.0.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{}", hash.0);
        assert!(DECOY_HASH.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
    }

    #[tokio::test]
    async fn no_hash_never_verifies_even_with_the_decoy_password() {
        assert!(!verify_password(Password::new("anything".into()), None).await.unwrap());
    }
}
