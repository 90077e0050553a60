//! Portal events: the facts the portal publishes on its event bus (EventBridge) so that systems
//! outside it can react (the Dynamics 365 "execute a workflow on redeem").
//!
//! An event is queued in the outbox in the same write as the change it reports (see
//! [`OutboxMessage::for_event`](super::outbox::OutboxMessage::for_event)): it is published if and only if that change was committed.
//! `send-email` publishes it under the outbox's lease rule, so it goes out once as far as the portal
//! can tell; consumers de-duplicate by `event_id` for the rare second delivery.
//!
//! The detail carries ids and times only: never a secret, a code, a token, a hash or an address.

use serde::{Deserialize, Serialize};

use super::email::Email;
use super::ids::{ContactId, EventId, InvitationId};
use super::time::{Timestamp, rfc3339};

/// What happened, with the ids that name it. The variant's name is the event's `DetailType`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum Fact {
    /// A contact became a portal user: registration, or an invitation redeemed with new
    /// credentials. `method`: how they will sign in (`password`; `external:<provider>` and
    /// `email_code` arrive with accounts made through a provider or a code).
    ContactRegistered {
        contact_id: ContactId,
        #[serde(default = "password_method")]
        method: String,
    },
    /// A row of a bulk import created or matched this contact.
    ContactImported {
        contact_id: ContactId,
        import_id: String,
    },
    InvitationCreated {
        invitation_id: InvitationId,
        contact_id: ContactId,
    },
    /// SES accepted the email carrying the invitation's current code.
    InvitationSent {
        invitation_id: InvitationId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        contact_id: Option<ContactId>,
    },
    /// The email carrying the invitation's current code will never go (refused by SES).
    InvitationDeliveryFailed {
        invitation_id: InvitationId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        contact_id: Option<ContactId>,
    },
    /// `created`: the redemption set up new credentials (rather than assigning an existing account).
    InvitationRedeemed {
        invitation_id: InvitationId,
        contact_id: ContactId,
        created: bool,
    },
    InvitationRevoked {
        invitation_id: InvitationId,
    },
    /// Changed while signed in, or reset with an emailed link.
    PasswordChanged {
        contact_id: ContactId,
    },
    /// A new sign-in address was confirmed.
    EmailChanged {
        contact_id: ContactId,
    },
    /// Staff acted on the account (`action`: the contract's name, `disable`, `roles`, ...);
    /// `actor_id` is null for an operator at the command line.
    AccountChanged {
        contact_id: ContactId,
        action: String,
        #[serde(default)]
        actor_id: Option<ContactId>,
    },
    /// The account was deleted (its tombstone keeps the id).
    ContactDeleted {
        contact_id: ContactId,
    },
    /// Site settings changed at run time: which (by name), by whom, and the settings' new version.
    SettingsChanged {
        names: Vec<String>,
        actor_id: ContactId,
        version: u64,
    },
}

fn password_method() -> String {
    PASSWORD_METHOD.to_string()
}

/// `ContactRegistered`'s `method` for an account made with a password.
pub const PASSWORD_METHOD: &str = "password";

impl Fact {
    /// The event reporting this fact, happening at `now`, with a new id.
    pub fn at(self, now: Timestamp) -> PortalEvent {
        PortalEvent { event_id: EventId::generate(), occurred_at: now, fact: self, smoke: false }
    }

    /// As [`Fact::at`], for a fact about the account with `address`: marked `smoke` when the address
    /// is on SES's mailbox simulator (see [`PortalEvent::smoke`]).
    pub fn at_for(self, now: Timestamp, address: &Email) -> PortalEvent {
        PortalEvent { smoke: address.is_on_the_mailbox_simulator(), ..self.at(now) }
    }

    /// The event's `DetailType`: the fact's name.
    pub fn name(&self) -> &'static str {
        match self {
            Fact::ContactRegistered { .. } => "ContactRegistered",
            Fact::ContactImported { .. } => "ContactImported",
            Fact::InvitationCreated { .. } => "InvitationCreated",
            Fact::InvitationSent { .. } => "InvitationSent",
            Fact::InvitationDeliveryFailed { .. } => "InvitationDeliveryFailed",
            Fact::InvitationRedeemed { .. } => "InvitationRedeemed",
            Fact::InvitationRevoked { .. } => "InvitationRevoked",
            Fact::PasswordChanged { .. } => "PasswordChanged",
            Fact::EmailChanged { .. } => "EmailChanged",
            Fact::AccountChanged { .. } => "AccountChanged",
            Fact::ContactDeleted { .. } => "ContactDeleted",
            Fact::SettingsChanged { .. } => "SettingsChanged",
        }
    }
}

/// The bus's `Source` of every portal event.
pub const EVENT_SOURCE: &str = "portal";

/// One fact as published: its id (for consumers' de-duplication), when it happened, and what.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortalEvent {
    pub event_id: EventId,
    pub occurred_at: Timestamp,
    pub fact: Fact,
    /// A test's event, for consumers to drop: its account's address is on SES's mailbox simulator
    /// (`@simulator.amazonses.com`, which no person reads), as `make smoke`'s throwaway account's
    /// is. Published as `"smoke": true` in the detail; absent otherwise.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub smoke: bool,
}

impl PortalEvent {
    pub fn detail_type(&self) -> &'static str {
        self.fact.name()
    }

    /// The event's `Detail`: `event_id`, `occurred_at` (RFC 3339) and the fact's ids.
    pub fn detail(&self) -> serde_json::Value {
        let mut detail = match serde_json::to_value(&self.fact) {
            Ok(serde_json::Value::Object(fields)) => fields,
            // A struct variant always serializes to an object.
            _ => serde_json::Map::new(),
        };
        detail.remove("type");
        detail.insert("event_id".into(), self.event_id.as_str().into());
        detail.insert("occurred_at".into(), rfc3339(self.occurred_at).into());
        if self.smoke {
            detail.insert("smoke".into(), true.into());
        }
        serde_json::Value::Object(detail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_detail_holds_the_event_id_the_time_and_the_ids_only() {
        let event =
            Fact::InvitationRedeemed { invitation_id: "inv-1".into(), contact_id: "contact-1".into(), created: true }
                .at(Timestamp::from_secs(1_800_000_000));
        assert_eq!(event.detail_type(), "InvitationRedeemed");
        assert_eq!(
            event.detail(),
            serde_json::json!({
                "event_id": event.event_id.as_str(),
                "occurred_at": "2027-01-15T08:00:00Z",
                "invitation_id": "inv-1",
                "contact_id": "contact-1",
                "created": true,
            })
        );
    }

    #[test]
    fn an_event_about_a_mailbox_simulator_account_says_smoke_and_no_other_does() {
        let now = Timestamp::from_secs(1_800_000_000);
        let fact = || Fact::ContactRegistered { contact_id: "c".into(), method: "password".into() };
        let smoke = Email::parse("success+smoke-1a2b@simulator.amazonses.com").unwrap();
        assert_eq!(fact().at_for(now, &smoke).detail()["smoke"], true);
        let person = Email::parse("ada@example.com").unwrap();
        assert!(fact().at_for(now, &person).detail().get("smoke").is_none());
        assert!(fact().at(now).detail().get("smoke").is_none());
        let lookalike = Email::parse("ada@simulator.amazonses.com.example.com").unwrap();
        assert!(!lookalike.is_on_the_mailbox_simulator());
    }

    #[test]
    fn every_fact_is_named_as_the_contract_names_it() {
        let facts = [
            Fact::ContactRegistered { contact_id: "c".into(), method: "password".into() },
            Fact::ContactImported { contact_id: "c".into(), import_id: "i".into() },
            Fact::InvitationCreated { invitation_id: "i".into(), contact_id: "c".into() },
            Fact::InvitationSent { invitation_id: "i".into(), contact_id: None },
            Fact::InvitationDeliveryFailed { invitation_id: "i".into(), contact_id: None },
            Fact::InvitationRedeemed { invitation_id: "i".into(), contact_id: "c".into(), created: false },
            Fact::InvitationRevoked { invitation_id: "i".into() },
            Fact::PasswordChanged { contact_id: "c".into() },
            Fact::EmailChanged { contact_id: "c".into() },
            Fact::AccountChanged { contact_id: "c".into(), action: "disable".into(), actor_id: Some("a".into()) },
        ];
        for fact in facts {
            let serialized = serde_json::to_value(&fact).unwrap();
            assert_eq!(serialized["type"], fact.name(), "the stored tag is the DetailType");
        }
    }
}
