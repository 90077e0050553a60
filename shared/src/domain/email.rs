//! Email addresses.

use std::fmt;

use icu_properties::CodePointMapData;
use icu_properties::props::GeneralCategory;
use unicode_normalization::UnicodeNormalization;

/// An email address in its canonical spelling, and its normalised form, which is what makes two
/// addresses the same contact.
///
/// The canonical spelling is the local part as typed (case kept) in Unicode NFC, `@`, and the
/// domain as typed if it is ASCII (`Ada@Example.com`), else in its ASCII (IDNA, punycode) form:
/// `Zoë@bücher.example` is stored, shown and emailed as `Zoë@xn--bcher-kva.example` (mail systems,
/// SES included, take domains in that form). The normalised form is the local part in lower case
/// and NFC, and the ASCII domain (lower case), so every spelling of one address (`bücher` or
/// `xn--bcher-kva`, a composed or decomposed `ë`, any case) is one account.
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
    /// Whether the address is on SES's mailbox simulator (`simulator.amazonses.com`): mail to it
    /// never reaches a person, so its account is a test's (`make smoke`'s throwaway account).
    pub fn is_on_the_mailbox_simulator(&self) -> bool {
        self.normalized.rsplit_once('@').is_some_and(|(_, domain)| domain == "simulator.amazonses.com")
    }

    /// Accepts the addresses people really use (`local@domain.tld`, internationalised ones too) and
    /// rejects what would break delivery or storage, or would let one address be spelt two ways
    /// that look alike: over 254 characters, spaces, control characters, invisible format and
    /// text-direction characters (U+200B, U+202E...), several `@`, a domain IDNA refuses.
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        const NOT_AN_ADDRESS: &str = "must be an email address like name@example.com";
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
        if value.chars().any(is_invisible_format) {
            return Err("must not contain invisible formatting or text-direction characters");
        }
        let Some((local, domain)) = value.split_once('@') else {
            return Err(NOT_AN_ADDRESS);
        };
        let local: String = local.nfc().collect();
        if local.is_empty() || local.len() > 64 || domain.contains('@') {
            return Err(NOT_AN_ADDRESS);
        }
        let ascii = ascii_domain(domain).ok_or(NOT_AN_ADDRESS)?;
        // An ASCII domain differs from its IDNA form in case at most: it is kept as typed.
        let display = format!("{local}@{}", if domain.is_ascii() { domain } else { &ascii });
        if display.len() > 254 {
            return Err("must be at most 254 characters");
        }
        // Lower-casing can leave a string that is not in NFC: compose again.
        let normalized = format!("{}@{ascii}", local.to_lowercase().nfc().collect::<String>());
        Ok(Email { display, normalized })
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

/// Unicode format characters (general category Cf): zero-width spaces and joiners, the byte-order
/// mark, soft hyphens, and every bidirectional control (U+200E/F, U+202A–U+202E, U+2066–U+2069,
/// U+061C are all Cf). Invisible, they would make addresses that look alike but differ.
fn is_invisible_format(c: char) -> bool {
    CodePointMapData::<GeneralCategory>::new().get(c) == GeneralCategory::Format
}

/// The domain in its ASCII form (UTS 46: mapped, NFC, lower case, punycode), if it is a host name
/// mail can be delivered to: at least two labels of letters, digits and hyphens, none over 63.
fn ascii_domain(domain: &str) -> Option<String> {
    let ascii = idna::domain_to_ascii(domain).ok()?;
    let label_ok =
        |label: &str| (1..=63).contains(&label.len()) && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    (ascii.contains('.') && ascii.split('.').all(label_ok)).then_some(ascii)
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
            ("ZOË@bücher.example", Some("zoë@xn--bcher-kva.example")),
            ("user@bücher.example", Some("user@xn--bcher-kva.example")),
            ("user@xn--bcher-kva.example", Some("user@xn--bcher-kva.example")),
            ("User@BÜCHER.Example", Some("user@xn--bcher-kva.example")),
            ("user@bücher\u{3002}example", Some("user@xn--bcher-kva.example")),
            ("zoe\u{0308}@example.com", Some("zo\u{00EB}@example.com")),
            ("ZOE\u{0308}@example.com", Some("zo\u{00EB}@example.com")),
            ("ada@ex_ample.com", None),
            ("ada@bücher", None),
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
    fn invisible_format_and_text_direction_characters_are_refused_anywhere() {
        let invisible = [
            ('\u{200B}', "zero-width space"),
            ('\u{200C}', "zero-width non-joiner"),
            ('\u{200D}', "zero-width joiner"),
            ('\u{2060}', "word joiner"),
            ('\u{FEFF}', "byte-order mark"),
            ('\u{00AD}', "soft hyphen"),
            ('\u{200E}', "left-to-right mark"),
            ('\u{200F}', "right-to-left mark"),
            ('\u{061C}', "Arabic letter mark"),
            ('\u{202A}', "left-to-right embedding"),
            ('\u{202B}', "right-to-left embedding"),
            ('\u{202C}', "pop directional formatting"),
            ('\u{202D}', "left-to-right override"),
            ('\u{202E}', "right-to-left override"),
            ('\u{2066}', "left-to-right isolate"),
            ('\u{2067}', "right-to-left isolate"),
            ('\u{2068}', "first strong isolate"),
            ('\u{2069}', "pop directional isolate"),
            ('\u{E0041}', "tag letter"),
        ];
        for (c, name) in invisible {
            for raw in [format!("ad{c}a@example.com"), format!("{c}ada@example.com"), format!("ada@exa{c}mple.com")] {
                let refused = Email::parse(&raw).err();
                assert_eq!(
                    refused,
                    Some("must not contain invisible formatting or text-direction characters"),
                    "{name} in {raw:?}"
                );
            }
        }
    }

    #[test]
    fn one_address_however_spelt_is_one_normalised_address() {
        let spellings: &[&[&str]] = &[
            &[
                "user@bücher.example",
                "user@xn--bcher-kva.example",
                "USER@Bücher.Example",
                "user@BU\u{0308}CHER.example",
            ],
            &["zo\u{00EB}@example.com", "zoe\u{0308}@example.com", "ZO\u{00CB}@example.com", "ZOE\u{0308}@EXAMPLE.COM"],
        ];
        for same in spellings {
            let normalized: Vec<String> =
                same.iter().map(|raw| Email::parse(raw).unwrap().normalized().into()).collect();
            assert!(normalized.windows(2).all(|pair| pair[0] == pair[1]), "{same:?} gave {normalized:?}");
        }
    }

    #[test]
    fn the_address_kept_is_the_local_part_as_typed_in_nfc_and_the_ascii_domain() {
        let cases = [
            ("Zoe\u{0308}@Bücher.example", "Zo\u{00EB}@xn--bcher-kva.example"),
            ("Ada.Lovelace@Example.COM", "Ada.Lovelace@Example.COM"),
            ("Ada@BÜCHER.Example", "Ada@xn--bcher-kva.example"),
            ("  ada@example.com ", "ada@example.com"),
        ];
        for (raw, kept) in cases {
            let email = Email::parse(raw).unwrap();
            assert_eq!(email.as_str(), kept, "{raw:?}");
            assert_eq!(email.to_string(), kept, "{raw:?}");
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
