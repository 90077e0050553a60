//! Email addresses.

use std::fmt;

/// An email address as given (trimmed) and its normalised form (lower case), which is what makes
/// two addresses the same contact.
#[derive(Clone, PartialEq, Eq)]
pub struct Email {
    display: String,
    normalized: String,
}

impl fmt::Debug for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Email({})", self.display)
    }
}

/// Compares the address as given (tests and views compare text).
impl PartialEq<&str> for Email {
    fn eq(&self, other: &&str) -> bool {
        self.display == *other
    }
}

impl PartialEq<str> for Email {
    fn eq(&self, other: &str) -> bool {
        self.display == other
    }
}

/// The address as given.
impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.display)
    }
}

impl Email {
    /// Accepts the addresses people really use (`local@domain.tld`) and rejects what would break
    /// delivery or storage: over 254 characters, spaces, control characters, several `@`.
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        let value = raw.trim();
        if value.is_empty() {
            return Err("is required");
        }
        if value.len() > 254 {
            return Err("must be at most 254 characters");
        }
        if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("must not contain spaces or control characters");
        }
        let Some((local, domain)) = value.split_once('@') else {
            return Err("must be an email address like name@example.com");
        };
        let domain_ok = !domain.is_empty()
            && !domain.contains('@')
            && domain.contains('.')
            && domain.split('.').all(|label| !label.is_empty() && label.len() <= 63)
            && domain.chars().all(|c| c.is_alphanumeric() || c == '-' || c == '.');
        if local.is_empty() || local.len() > 64 || !domain_ok {
            return Err("must be an email address like name@example.com");
        }
        Ok(Email { display: value.to_string(), normalized: value.to_lowercase() })
    }

    /// An address as it was stored after being parsed: taken as it is.
    pub fn stored(display: String, normalized: String) -> Self {
        Email { display, normalized }
    }

    pub fn as_str(&self) -> &str {
        &self.display
    }

    pub fn normalized(&self) -> &str {
        &self.normalized
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_normalises_addresses() {
        let cases: &[(&str, Option<&str>)] = &[
            ("ada@example.com", Some("ada@example.com")),
            ("  Ada.Lovelace@Example.COM ", Some("ada.lovelace@example.com")),
            ("o'brien+tag@sub.example.co.uk", Some("o'brien+tag@sub.example.co.uk")),
            ("ZOË@bücher.example", Some("zoë@bücher.example")),
            ("", None),
            ("ada", None),
            ("ada@localhost", None),
            ("ada@@example.com", None),
            ("a@b@example.com", None),
            ("ada @example.com", None),
            ("ada@example..com", None),
            ("@example.com", None),
            ("ada@exa\u{0}mple.com", None),
        ];
        for (raw, expected) in cases {
            let parsed = Email::parse(raw).ok();
            assert_eq!(parsed.as_ref().map(Email::normalized), *expected, "{raw:?}");
        }
    }

    #[test]
    fn rejects_addresses_over_254_characters() {
        let long = format!("{}@{}.com", "a".repeat(64), "b".repeat(185));
        assert_eq!(long.len(), 254);
        assert!(Email::parse(&long).is_err(), "label over 63 characters");
        let long_ok = format!("{}@{}.{}.{}.com", "a".repeat(64), "b".repeat(60), "c".repeat(60), "d".repeat(60));
        assert!(long_ok.len() <= 254);
        assert!(Email::parse(&long_ok).is_ok());
        let too_long = format!(
            "{}@{}.{}.{}.{}.com",
            "a".repeat(64),
            "b".repeat(60),
            "c".repeat(60),
            "d".repeat(60),
            "e".repeat(10)
        );
        assert!(too_long.len() > 254);
        assert_eq!(Email::parse(&too_long).unwrap_err(), "must be at most 254 characters");
    }
}
