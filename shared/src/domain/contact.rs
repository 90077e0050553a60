//! Contacts: the customers of the business, some of whom are portal users.

use super::ids::ContactId;
use super::time::Timestamp;
use serde::{Deserialize, Serialize};

use super::deliverability::Undeliverable;
use super::email::Email;
use super::identity::LinkedIdentity;
use super::lockout::LockoutState;
use super::password::PasswordHashString;
use super::text::Username;

/// A contact. `password_hash` is absent for a contact that has no portal credentials yet (for
/// example one that staff created to invite). Stored as a [`ContactRecord`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(into = "ContactRecord", from = "ContactRecord")]
pub struct Contact {
    pub contact_id: ContactId,
    pub email: Email,
    pub email_confirmed: bool,
    pub first_name: String,
    pub last_name: String,
    pub username: Option<Username>,
    pub phone: Option<String>,
    pub roles: Vec<String>,
    pub account_id: Option<String>,
    pub password_hash: Option<PasswordHashString>,
    pub failed_sign_ins: u32,
    pub lockouts: u32,
    pub locked_until: Option<Timestamp>,
    pub attempted_at: Option<Timestamp>,
    /// A new address waiting for its confirmation link to be followed; until then `email` stays
    /// the address that signs in and receives resets.
    pub pending_email: Option<Email>,
    /// The sessions' validity watermark: a session is valid only while it carries the contact's
    /// current epoch. A password change, reset or email move writes a new one in the same write,
    /// which ends every older session at once (no index query, nothing left behind).
    pub session_epoch: String,
    /// The one reset link that works: a reset token carries the nonce current when it was issued;
    /// a newer link, a password change or an email move replaces or removes it.
    pub reset_nonce: Option<String>,
    /// Staff switched sign-in off (Power Pages' "Login Enabled" unticked): every way in refuses it.
    pub login_disabled: bool,
    /// When the account was deleted: a tombstone that no way in opens.
    pub deleted_at: Option<Timestamp>,
    /// The version of the terms of use the person accepted last, and when.
    pub terms_accepted: Option<TermsAccepted>,
    /// The external identities (OpenID Connect) linked to the account: each signs in to it.
    pub identities: Vec<LinkedIdentity>,
    /// Mail to `email` bounced for good or was reported as spam: none goes to it until the person
    /// confirms it again or moves to another address (see `domain::deliverability`).
    pub email_undeliverable: Option<Undeliverable>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// An acceptance of the terms of use: which version, when.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TermsAccepted {
    pub version: String,
    pub at: Timestamp,
}

impl Contact {
    /// Whether the site's current terms (`current`, if any) still wait for this person's acceptance.
    pub fn owes_terms(&self, current: Option<&str>) -> bool {
        current.is_some_and(|version| self.terms_accepted.as_ref().is_none_or(|accepted| accepted.version != version))
    }
}

/// A change staff make to an account (see `usecases::staff`; stored by `ContactStore::edit_account`), written with its audit entry and
/// event in one conditional write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AccountEdit {
    /// Sign-in switched off; `epoch` ends every session at once.
    Disable {
        epoch: String,
    },
    Enable,
    /// The lockout and the failed attempts counted against it cleared.
    Unlock,
    /// Every session ended (a new epoch).
    EndSessions {
        epoch: String,
    },
    /// The current password stops working (removed) and every session ends.
    BlockPassword {
        epoch: String,
    },
    /// The web roles and parent account replaced.
    Roles {
        roles: Vec<String>,
        account_id: Option<String>,
    },
    /// Nothing about the account itself (what rides along is the change: a reset link).
    Unchanged,
    /// The person accepted these terms of use.
    AcceptTerms(TermsAccepted),
    /// The account deleted: what stays is its tombstone ([`Contact::tombstone`]); `epoch` ends
    /// every session at once.
    Delete {
        epoch: String,
    },
}

impl AccountEdit {
    /// `contact` as this change leaves it, at `now`.
    pub fn applied_to(&self, contact: &Contact, now: Timestamp) -> Contact {
        let mut changed = contact.clone();
        match self {
            AccountEdit::Disable { epoch } => {
                changed.login_disabled = true;
                changed.session_epoch = epoch.clone();
            }
            AccountEdit::Enable => changed.login_disabled = false,
            AccountEdit::Unlock => {
                changed.failed_sign_ins = 0;
                changed.locked_until = None;
            }
            AccountEdit::EndSessions { epoch } => changed.session_epoch = epoch.clone(),
            AccountEdit::BlockPassword { epoch } => {
                changed.password_hash = None;
                changed.session_epoch = epoch.clone();
            }
            AccountEdit::Roles { roles, account_id } => {
                changed.roles = roles.clone();
                changed.account_id = account_id.clone();
            }
            AccountEdit::Unchanged => {}
            AccountEdit::AcceptTerms(accepted) => changed.terms_accepted = Some(accepted.clone()),
            AccountEdit::Delete { epoch } => return contact.tombstone(epoch, now),
        }
        changed.updated_at = now;
        changed
    }
}

impl Contact {
    /// What stays of a deleted account: its id, parent account (the business's, for staff scope),
    /// when it was created and deleted, and a new session epoch. No address, name, phone, username,
    /// credential, role or terms: nothing that names the person. No way in opens it.
    pub fn tombstone(&self, epoch: &str, now: Timestamp) -> Contact {
        Contact {
            contact_id: self.contact_id.clone(),
            email: Email::stored(String::new(), String::new()),
            email_confirmed: false,
            first_name: String::new(),
            last_name: String::new(),
            username: None,
            phone: None,
            roles: Vec::new(),
            account_id: self.account_id.clone(),
            password_hash: None,
            failed_sign_ins: 0,
            lockouts: 0,
            locked_until: None,
            attempted_at: None,
            pending_email: None,
            session_epoch: epoch.to_string(),
            reset_nonce: None,
            login_disabled: true,
            deleted_at: Some(now),
            terms_accepted: None,
            identities: Vec::new(),
            email_undeliverable: None,
            created_at: self.created_at,
            updated_at: now,
        }
    }
}

/// How a contact is stored: the email and username in both their forms (the normalised ones are
/// what the uniqueness guards and searches use).
#[derive(Clone, Debug, Serialize, Deserialize)]
struct ContactRecord {
    contact_id: ContactId,
    // Empty only on a tombstone, which stores none of these (an empty string may not be an index
    // key, and `email_normalized` is one).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    email: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    email_normalized: String,
    #[serde(default)]
    email_confirmed: bool,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    first_name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    last_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    username_normalized: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    phone: Option<String>,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    account_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    password_hash: Option<PasswordHashString>,
    #[serde(default)]
    failed_sign_ins: u32,
    #[serde(default)]
    lockouts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    locked_until: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    attempted_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pending_email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pending_email_normalized: Option<String>,
    #[serde(default)]
    session_epoch: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reset_nonce: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    login_disabled: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    deleted_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    terms_accepted: Option<TermsAccepted>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    identities: Vec<LinkedIdentity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    email_undeliverable: Option<Undeliverable>,
    created_at: Timestamp,
    updated_at: Timestamp,
}

impl From<Contact> for ContactRecord {
    fn from(c: Contact) -> Self {
        ContactRecord {
            contact_id: c.contact_id,
            email: c.email.as_str().to_string(),
            email_normalized: c.email.normalized().to_string(),
            email_confirmed: c.email_confirmed,
            first_name: c.first_name,
            last_name: c.last_name,
            username_normalized: c.username.as_ref().map(|u| u.normalized.clone()),
            username: c.username.map(|u| u.display),
            phone: c.phone,
            roles: c.roles,
            account_id: c.account_id,
            password_hash: c.password_hash,
            failed_sign_ins: c.failed_sign_ins,
            lockouts: c.lockouts,
            locked_until: c.locked_until,
            attempted_at: c.attempted_at,
            pending_email_normalized: c.pending_email.as_ref().map(|e| e.normalized().to_string()),
            pending_email: c.pending_email.map(|e| e.as_str().to_string()),
            session_epoch: c.session_epoch,
            reset_nonce: c.reset_nonce,
            login_disabled: c.login_disabled,
            deleted_at: c.deleted_at,
            terms_accepted: c.terms_accepted,
            identities: c.identities,
            email_undeliverable: c.email_undeliverable,
            created_at: c.created_at,
            updated_at: c.updated_at,
        }
    }
}

/// What was stored was parsed when it was written: it is taken as it is.
impl From<ContactRecord> for Contact {
    fn from(r: ContactRecord) -> Self {
        let username = match (r.username, r.username_normalized) {
            (Some(display), Some(normalized)) => Some(Username { display, normalized }),
            (Some(display), None) => Some(Username { normalized: display.to_lowercase(), display }),
            _ => None,
        };
        Contact {
            contact_id: r.contact_id,
            email: Email::stored(r.email, r.email_normalized),
            email_confirmed: r.email_confirmed,
            first_name: r.first_name,
            last_name: r.last_name,
            username,
            phone: r.phone,
            roles: r.roles,
            account_id: r.account_id,
            password_hash: r.password_hash,
            failed_sign_ins: r.failed_sign_ins,
            lockouts: r.lockouts,
            locked_until: r.locked_until,
            attempted_at: r.attempted_at,
            pending_email: match (r.pending_email, r.pending_email_normalized) {
                (Some(display), Some(normalized)) => Some(Email::stored(display, normalized)),
                _ => None,
            },
            session_epoch: r.session_epoch,
            reset_nonce: r.reset_nonce,
            login_disabled: r.login_disabled,
            deleted_at: r.deleted_at,
            terms_accepted: r.terms_accepted,
            identities: r.identities,
            email_undeliverable: r.email_undeliverable,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

/// A fresh sessions' validity epoch (random, so two writers never pick the same one).
pub fn new_epoch() -> String {
    super::secret::random_token()[..16].to_string()
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
            email: details.email,
            email_confirmed: false,
            first_name: details.first_name,
            last_name: details.last_name,
            username: details.username,
            phone: details.phone,
            roles: details.roles,
            account_id: None,
            password_hash: details.password_hash,
            failed_sign_ins: 0,
            lockouts: 0,
            locked_until: None,
            attempted_at: None,
            pending_email: None,
            session_epoch: new_epoch(),
            reset_nonce: None,
            login_disabled: false,
            deleted_at: None,
            terms_accepted: None,
            identities: Vec::new(),
            email_undeliverable: None,
            created_at: now,
            updated_at: now,
        }
    }

    /// The words of the contact's own details, which a guessable password would be built from.
    pub fn password_context(&self) -> [&str; 4] {
        [
            self.email.as_str(),
            &self.first_name,
            &self.last_name,
            self.username.as_ref().map_or("", |u| u.display.as_str()),
        ]
    }

    pub fn lockout(&self) -> LockoutState {
        LockoutState {
            failed_sign_ins: self.failed_sign_ins,
            lockouts: self.lockouts,
            locked_until: self.locked_until,
            attempted_at: self.attempted_at,
        }
    }

    pub fn set_lockout(&mut self, state: LockoutState) {
        self.failed_sign_ins = state.failed_sign_ins;
        self.lockouts = state.lockouts;
        self.locked_until = state.locked_until;
        self.attempted_at = state.attempted_at;
    }

    /// Whether any way in may open this account: sign-in is enabled and it is not deleted.
    pub fn may_sign_in(&self) -> bool {
        !self.login_disabled && self.deleted_at.is_none()
    }

    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
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

    /// The login in its normalised form, kind included (`email#...`, `username#...`).
    pub fn key(&self) -> String {
        match self {
            Login::Email(email) => format!("email#{email}"),
            Login::Username(username) => format!("username#{username}"),
        }
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
        assert_eq!(contact.email.normalized(), "ada@example.com");
        assert_eq!(contact.username.as_ref().map(|u| u.normalized.as_str()), Some("ada.l"));
        assert!(!contact.lockout().needs_reset());
        assert_eq!(contact.contact_id.len(), 36);
    }
}
