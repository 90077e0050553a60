//! Rules for free text people type: names, usernames, phone numbers.

use unicode_normalization::UnicodeNormalization;

/// Characters that are invisible or reorder text: fine in a document, a spoofing tool in a name.
fn is_invisible_or_reordering(c: char) -> bool {
    matches!(c,
        '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{206F}' | '\u{FEFF}'
        | '\u{FFF9}'..='\u{FFFB}')
}

/// A web role's name: a name (see [`parse_name`]) of at most 64 characters.
pub fn parse_role(raw: &str) -> Result<String, super::Refusal> {
    let role = parse_name(raw).map_err(|e| super::Refusal(format!("role {raw:?} {e}")))?;
    if role.chars().count() > 64 {
        return Err(super::Refusal(format!("role {raw:?} must be at most 64 characters")));
    }
    Ok(role)
}

/// A person's name (first or last): trimmed, NFC-normalised, 1 to 100 characters, no control,
/// invisible or bidirectional-override characters.
pub fn parse_name(raw: &str) -> Result<String, &'static str> {
    let value: String = raw.trim().nfc().collect();
    if value.is_empty() {
        return Err("is required");
    }
    if value.chars().count() > 100 {
        return Err("must be at most 100 characters");
    }
    if value.chars().any(|c| c.is_control() || is_invisible_or_reordering(c)) {
        return Err("contains characters that are not allowed");
    }
    Ok(value)
}

/// A username: 3 to 64 of `A-Z a-z 0-9 . _ -`, compared case-insensitively. It never contains `@`,
/// so a login with `@` is always an email.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Username {
    pub display: String,
    pub normalized: String,
}

/// The username as chosen.
impl std::fmt::Display for Username {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.display)
    }
}

impl Username {
    pub fn as_str(&self) -> &str {
        &self.display
    }

    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        let value = raw.trim();
        let length = value.chars().count();
        if length < 3 {
            return Err("must be at least 3 characters");
        }
        if length > 64 {
            return Err("must be at most 64 characters");
        }
        if !value.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')) {
            return Err("may contain only letters, digits, '.', '_' and '-'");
        }
        Ok(Username { display: value.to_string(), normalized: value.to_ascii_lowercase() })
    }
}

/// A phone number as people write it: digits with optional `+`, spaces, dots, dashes, parentheses.
pub fn parse_phone(raw: &str) -> Result<String, &'static str> {
    let value = raw.trim();
    if value.chars().count() > 32 {
        return Err("must be at most 32 characters");
    }
    let digits = value.chars().filter(char::is_ascii_digit).count();
    let allowed = value.chars().all(|c| c.is_ascii_digit() || matches!(c, '+' | ' ' | '.' | '-' | '(' | ')'));
    if !allowed || digits < 4 {
        return Err("must be a phone number (digits, spaces, + - . ( ))");
    }
    Ok(value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_normalised_and_limited() {
        let cases: &[(&str, Result<&str, &str>)] = &[
            ("  Ada ", Ok("Ada")),
            ("Zoe\u{0301}", Ok("Zoé")),
            ("Ωmega", Ok("Ωmega")),
            ("", Err("is required")),
            ("   ", Err("is required")),
            ("Eve\u{202E}gnp.exe", Err("contains characters that are not allowed")),
            ("Nul\u{0}", Err("contains characters that are not allowed")),
            ("Zero\u{200B}Width", Err("contains characters that are not allowed")),
        ];
        for (raw, expected) in cases {
            assert_eq!(parse_name(raw).as_deref(), expected.as_ref().map(|s| *s), "{raw:?}");
        }
        assert!(parse_name(&"a".repeat(100)).is_ok());
        assert!(parse_name(&"a".repeat(101)).is_err());
    }

    #[test]
    fn usernames_are_case_insensitive_and_never_contain_at() {
        let name = Username::parse(" Ada.Lovelace ").unwrap();
        assert_eq!(name.display, "Ada.Lovelace");
        assert_eq!(name.normalized, "ada.lovelace");
        for bad in ["ab", "ada@example", "ada lovelace", "ädä", &"a".repeat(65)] {
            assert!(Username::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn phones_accept_common_notations() {
        for good in ["+44 20 7946 0958", "(555) 010-9999", "555.0100"] {
            assert!(parse_phone(good).is_ok(), "{good}");
        }
        for bad in ["call me", "12", "+1 555 0100 ext 5", &"1".repeat(33)] {
            assert!(parse_phone(bad).is_err(), "{bad}");
        }
    }
}
