//! Group invitations to several contacts (the Dynamics 365 "invite contacts" of a group
//! invitation): one invitation and one code, emailed to each listed contact. The create writes
//! one fan-out outbox item with the recipients; `send-email` expands it into one invitation email
//! per contact, in transactions under DynamoDB's 100-item limit, each behind a progress marker.

use super::ids::{ContactId, MessageId};
use super::invitation::Delivery;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// At most this many contacts per group invitation.
pub const MAX_GROUP_CONTACTS: usize = 100;
/// Per-contact emails queued per fan-out transaction: with the progress marker on the fan-out
/// item, 99 items, under DynamoDB's 100 per transaction.
pub const FANOUT_BATCH: usize = 98;

/// One contact a group invitation's code goes to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recipient {
    pub contact_id: ContactId,
    pub email: String,
    pub first_name: String,
}

/// How the email to one listed contact went, as stored on the invitation (`deliveries`, keyed by
/// contact id).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactDelivery {
    pub email: String,
    /// For the greeting of a resent email.
    #[serde(default)]
    pub first_name: String,
    pub status: Delivery,
}

/// The per-contact deliveries of a group invitation, by contact id.
pub type Deliveries = BTreeMap<ContactId, ContactDelivery>;

/// Every recipient pending (a new group invitation, or a resend).
pub fn pending_deliveries(recipients: &[Recipient]) -> Deliveries {
    recipients
        .iter()
        .map(|r| {
            let delivery =
                ContactDelivery { email: r.email.clone(), first_name: r.first_name.clone(), status: Delivery::Pending };
            (r.contact_id.clone(), delivery)
        })
        .collect()
}

/// The recipients a resend emails again: every listed contact.
pub fn recipients_of(deliveries: &Deliveries) -> Vec<Recipient> {
    deliveries
        .iter()
        .map(|(contact_id, d)| Recipient {
            contact_id: contact_id.clone(),
            email: d.email.clone(),
            first_name: d.first_name.clone(),
        })
        .collect()
}

/// The invitation's `delivery`: failed if any contact's failed, sent when all were sent, else
/// pending.
pub fn aggregate<'a>(statuses: impl IntoIterator<Item = &'a Delivery>) -> Delivery {
    let mut all_sent = true;
    for status in statuses {
        match status {
            Delivery::Failed => return Delivery::Failed,
            Delivery::Pending => all_sent = false,
            Delivery::Sent => {}
        }
    }
    if all_sent { Delivery::Sent } else { Delivery::Pending }
}

/// The id of the per-contact email number `index` of a fan-out: derived, so that a repeated
/// expansion names the same items (and their conditional puts refuse a second copy).
pub fn fanned_message_id(fanout_id: &MessageId, index: usize) -> MessageId {
    MessageId::from(format!("{fanout_id}-{index:03}").as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_aggregate_is_failed_if_any_failed_and_sent_only_when_all_were() {
        use Delivery::*;
        assert_eq!(aggregate(&[Sent, Sent]), Sent);
        assert_eq!(aggregate(&[Sent, Pending]), Pending);
        assert_eq!(aggregate(&[Sent, Failed, Pending]), Failed);
        assert_eq!(aggregate(&[]), Sent);
    }

    #[test]
    fn fanned_ids_are_stable_and_distinct() {
        let id = MessageId::from("m");
        assert_eq!(fanned_message_id(&id, 7), fanned_message_id(&id, 7));
        assert_ne!(fanned_message_id(&id, 7), fanned_message_id(&id, 8));
    }
}
