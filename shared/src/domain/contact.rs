//! Contacts: the customers of the business, some of whom are portal users.

use super::ids::ContactId;
use super::time::Timestamp;
use serde::{Deserialize, Serialize};

use super::email::Email;
use super::lockout::LockoutState;
use super::password::PasswordHashString;
use super::text::Username;

/// A contact as stored. `password_hash` is absent for a contact that has no portal credentials yet
/// (for example one that staff created to invite).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Contact {
    pub contact_id: ContactId,
    pub email: String,
    pub email_normalized: String,
    #[serde(default)]
    pub email_confirmed: bool,
    pub first_name: String,
    pub last_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username_normalized: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_hash: Option<PasswordHashString>,
    #[serde(default)]
    pub failed_sign_ins: u32,
    #[serde(default)]
    pub lockouts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locked_until: Option<Timestamp>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// What a new contact is made of, once every field has been parsed.
pub struct NewContact {
    pub email: Email,
    pub first_name: String,
    pub last_name: String,
    pub username: Option<Username>,
    pub phone: Option<String>,
    pub roles: Vec<String>,
    pub password_hash: Option<PasswordHashString>,
}

impl Contact {
    pub fn new(details: NewContact, now: Timestamp) -> Self {
        Contact {
            contact_id: ContactId::generate(),
            email: details.email.as_str().to_string(),
            email_normalized: details.email.normalized().to_string(),
            email_confirmed: false,
            first_name: details.first_name,
            last_name: details.last_name,
            username_normalized: details.username.as_ref().map(|u| u.normalized.clone()),
            username: details.username.map(|u| u.display),
            phone: details.phone,
            roles: details.roles,
            account_id: None,
            password_hash: details.password_hash,
            failed_sign_ins: 0,
            lockouts: 0,
            locked_until: None,
            created_at: now,
            updated_at: now,
        }
    }

    /// Gives the contact `email` (both its forms).
    pub fn set_email(&mut self, email: &Email) {
        self.email = email.as_str().to_string();
        self.email_normalized = email.normalized().to_string();
    }

    /// The words of the contact's own details, which a guessable password would be built from.
    pub fn password_context(&self) -> [&str; 4] {
        [&self.email, &self.first_name, &self.last_name, self.username.as_deref().unwrap_or("")]
    }

    pub fn lockout(&self) -> LockoutState {
        LockoutState { failed_sign_ins: self.failed_sign_ins, lockouts: self.lockouts, locked_until: self.locked_until }
    }

    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }

    /// Whether the administrators' search `query` finds this contact: a case-insensitive part of
    /// the email, the full name or the username; an empty query finds everyone.
    pub fn matches(&self, query: &str) -> bool {
        let needle = query.trim().to_lowercase();
        needle.is_empty()
            || self.email_normalized.contains(&needle)
            || format!("{} {}", self.first_name, self.last_name).to_lowercase().contains(&needle)
            || self.username_normalized.as_deref().is_some_and(|u| u.contains(&needle))
    }

    /// Newest first, for the administrators' list.
    pub fn sort_newest_first(contacts: &mut [Contact]) {
        contacts.sort_by(|a, b| (b.created_at, &a.email_normalized).cmp(&(a.created_at, &b.email_normalized)));
    }
}

/// What someone types to sign in: an email (it has an `@`) or a username, both case-insensitive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Login {
    Email(String),
    Username(String),
}

impl Login {
    /// The login that is this email address.
    pub fn of_email(email: &Email) -> Self {
        Login::Email(email.normalized().to_string())
    }

    /// `None` when the text cannot be any contact's login; the caller answers as for an unknown
    /// login so that the answer does not tell the difference.
    pub fn parse(raw: &str) -> Option<Self> {
        if raw.contains('@') {
            Email::parse(raw).ok().map(|e| Login::Email(e.normalized().to_string()))
        } else {
            Username::parse(raw).ok().map(|u| Login::Username(u.normalized))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logins_are_emails_or_usernames_case_insensitively() {
        let cases: &[(&str, Option<Login>)] = &[
            ("Ada@Example.com", Some(Login::Email("ada@example.com".into()))),
            (" ADA.L ", Some(Login::Username("ada.l".into()))),
            ("not an email@", None),
            ("x", None),
        ];
        for (raw, expected) in cases {
            assert_eq!(&Login::parse(raw), expected, "{raw:?}");
        }
    }

    #[test]
    fn the_administrators_search_matches_email_name_or_username() {
        let mut contact = Contact::new(
            NewContact {
                email: Email::parse("Grace@Navy.example").unwrap(),
                first_name: "Grace".into(),
                last_name: "Hopper".into(),
                username: Some(Username::parse("amazing_grace").unwrap()),
                phone: None,
                roles: vec![],
                password_hash: None,
            },
            Timestamp::from_secs(1),
        );
        for (query, found) in [("", true), ("navy", true), ("GRACE HOP", true), ("amazing", true), ("ada", false)] {
            assert_eq!(contact.matches(query), found, "{query:?}");
        }
        contact.username_normalized = None;
        assert!(!contact.matches("amazing"));
    }

    #[test]
    fn new_contacts_have_no_lockout_and_keep_both_email_forms() {
        let contact = Contact::new(
            NewContact {
                email: Email::parse("Ada@Example.com").unwrap(),
                first_name: "Ada".into(),
                last_name: "Lovelace".into(),
                username: Some(Username::parse("Ada.L").unwrap()),
                phone: None,
                roles: vec![],
                password_hash: None,
            },
            Timestamp::from_secs(42),
        );
        assert_eq!(contact.email, "Ada@Example.com");
        assert_eq!(contact.email_normalized, "ada@example.com");
        assert_eq!(contact.username_normalized.as_deref(), Some("ada.l"));
        assert!(!contact.lockout().needs_reset());
        assert_eq!(contact.contact_id.len(), 36);
    }
}
