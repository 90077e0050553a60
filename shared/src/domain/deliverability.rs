//! Whether mail reaches an address: SES's bounce and complaint notifications, and the mark a hard
//! bounce or a complaint leaves on an address.
//!
//! SES publishes a configuration set's `bounce` and `complaint` events to an SNS topic (the
//! template's `EmailFeedbackTopic`), one JSON notification per event ("event publishing",
//! `eventType`; an identity's own feedback notifications say `notificationType` instead, and are
//! read the same). A permanent bounce (the mailbox does not exist, the address is on SES's
//! suppression list) or a complaint (the person reported the mail as spam) marks the address
//! [`Undeliverable`]: no more mail goes to it until the person confirms it again or changes it.
//! A transient bounce (a full mailbox, a greylisting server) is not a mark: SES itself kept trying
//! for the configuration set's delivery window before it reported it, and the next email tries
//! again.

use serde::{Deserialize, Serialize};

use super::email::Email;
use super::time::Timestamp;

/// Why mail to an address stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UndeliverableReason {
    /// A permanent bounce: the receiving side said the address does not take mail.
    Bounce,
    /// The person reported an email as spam.
    Complaint,
}

impl UndeliverableReason {
    pub fn as_str(self) -> &'static str {
        match self {
            UndeliverableReason::Bounce => "bounce",
            UndeliverableReason::Complaint => "complaint",
        }
    }

    /// In words, for the person and for staff.
    pub fn describe(self) -> &'static str {
        match self {
            UndeliverableReason::Bounce => "our emails to this address bounced: the receiving mail server refused them",
            UndeliverableReason::Complaint => "an email to this address was reported as spam",
        }
    }
}

/// The mark an address carries once mail to it bounced for good or was reported as spam (on the
/// contact as `email_undeliverable`, and by the address's digest for `send-email`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Undeliverable {
    pub reason: UndeliverableReason,
    pub at: Timestamp,
    /// What the receiving side said, without the address (the bounce's type and status, the
    /// complaint's feedback type), for staff.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

/// What one SES notification says about its recipients.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Feedback {
    /// These addresses are undeliverable (a permanent bounce, or a complaint).
    Undeliverable { mark: Undeliverable, recipients: Vec<Email> },
    /// A transient or undetermined bounce: recorded, nothing marked (see the module).
    SoftBounce { detail: String, recipients: Vec<Email> },
    /// Another event type (a delivery, a send): nothing to do.
    Other(String),
}

/// SES's notification, the parts read here (the rest is ignored).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Notification {
    #[serde(default)]
    event_type: Option<String>,
    #[serde(default)]
    notification_type: Option<String>,
    #[serde(default)]
    bounce: Option<Bounce>,
    #[serde(default)]
    complaint: Option<Complaint>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Bounce {
    bounce_type: String,
    #[serde(default)]
    bounce_sub_type: String,
    bounced_recipients: Vec<Recipient>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Complaint {
    complained_recipients: Vec<Recipient>,
    #[serde(default)]
    complaint_feedback_type: Option<String>,
    #[serde(default)]
    complaint_sub_type: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Recipient {
    email_address: String,
    /// The enhanced status code (`5.1.1`), when the bounce gave one.
    #[serde(default)]
    status: Option<String>,
}

/// Reads one SES notification (an SNS message's text). Err: not an SES notification this portal
/// can read (retrying would not help). Recipients that do not parse as addresses are left out.
pub fn read_notification(text: &str, now: Timestamp) -> Result<Feedback, String> {
    let notification: Notification =
        serde_json::from_str(text).map_err(|err| format!("not an SES notification: {err}"))?;
    let kind = notification
        .event_type
        .or(notification.notification_type)
        .ok_or_else(|| "an SES notification without eventType or notificationType".to_string())?;
    match kind.as_str() {
        "Bounce" => {
            let bounce = notification.bounce.ok_or("a Bounce notification without its bounce")?;
            let statuses: Vec<&str> = bounce.bounced_recipients.iter().filter_map(|r| r.status.as_deref()).collect();
            let mut detail = format!("{} bounce ({})", bounce.bounce_type, bounce.bounce_sub_type);
            if !statuses.is_empty() {
                detail += &format!(", status {}", statuses.join(", "));
            }
            let recipients = addresses(&bounce.bounced_recipients);
            Ok(if bounce.bounce_type == "Permanent" {
                Feedback::Undeliverable {
                    mark: Undeliverable { reason: UndeliverableReason::Bounce, at: now, detail },
                    recipients,
                }
            } else {
                Feedback::SoftBounce { detail, recipients }
            })
        }
        "Complaint" => {
            let complaint = notification.complaint.ok_or("a Complaint notification without its complaint")?;
            // SES's own complaint about an address already on its suppression list has a sub-type;
            // a person's report has a feedback type (`abuse`), or none.
            let detail = complaint
                .complaint_feedback_type
                .or(complaint.complaint_sub_type)
                .map(|kind| format!("complaint ({kind})"))
                .unwrap_or_else(|| "complaint".to_string());
            let recipients = addresses(&complaint.complained_recipients);
            Ok(Feedback::Undeliverable {
                mark: Undeliverable { reason: UndeliverableReason::Complaint, at: now, detail },
                recipients,
            })
        }
        other => Ok(Feedback::Other(other.to_string())),
    }
}

/// The recipients as addresses. SES gives them as sent (`Ada <ada@example.com>` stays possible in
/// an identity notification): the part in angle brackets is the address.
fn addresses(recipients: &[Recipient]) -> Vec<Email> {
    recipients
        .iter()
        .filter_map(|recipient| {
            let raw = recipient.email_address.as_str();
            let address = match (raw.rfind('<'), raw.rfind('>')) {
                (Some(open), Some(close)) if open < close => &raw[open + 1..close],
                _ => raw,
            };
            Email::parse(address).ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Timestamp = Timestamp::from_secs(1_800_000_000);

    /// SES's documented example of a bounce event (event publishing), shortened.
    const PERMANENT_BOUNCE: &str = r#"{"eventType":"Bounce","bounce":{"bounceType":"Permanent",
        "bounceSubType":"General","bouncedRecipients":[{"emailAddress":"Recipient@Example.com",
        "action":"failed","status":"5.1.1","diagnosticCode":"smtp; 550 5.1.1 user unknown"}],
        "timestamp":"2017-08-05T00:41:02.669Z","feedbackId":"0100015db2fb0fa5-...",
        "reportingMTA":"dsn; mta.example.com"},"mail":{"timestamp":"2017-08-05T00:40:02.012Z",
        "source":"Sender Name <sender@example.com>","messageId":"EXAMPLE7c191be45-...",
        "destination":["recipient@example.com"],"tags":{"ses:configuration-set":["portal"]}}}"#;

    #[test]
    fn a_permanent_bounce_marks_its_recipients_undeliverable() {
        let Feedback::Undeliverable { mark, recipients } = read_notification(PERMANENT_BOUNCE, NOW).unwrap() else {
            panic!("not a mark")
        };
        assert_eq!(mark.reason, UndeliverableReason::Bounce);
        assert_eq!(mark.at, NOW);
        assert_eq!(mark.detail, "Permanent bounce (General), status 5.1.1");
        assert!(!mark.detail.to_lowercase().contains("recipient@"), "no address in the detail");
        assert_eq!(recipients.len(), 1);
        assert_eq!(recipients[0].normalized(), "recipient@example.com");
    }

    #[test]
    fn a_transient_or_undetermined_bounce_marks_nothing() {
        for kind in ["Transient", "Undetermined"] {
            let text = PERMANENT_BOUNCE.replace("\"Permanent\"", &format!("\"{kind}\""));
            let feedback = read_notification(&text, NOW).unwrap();
            assert!(matches!(&feedback, Feedback::SoftBounce { recipients, .. } if recipients.len() == 1), "{kind}");
        }
    }

    #[test]
    fn a_complaint_marks_its_recipients_and_an_identity_notification_reads_the_same() {
        let text = r#"{"notificationType":"Complaint","complaint":{"complainedRecipients":[
            {"emailAddress":"Ada Lovelace <ada@example.com>"},{"emailAddress":"not an address"}],
            "complaintFeedbackType":"abuse","timestamp":"2017-08-05T00:41:02.669Z"},"mail":{}}"#;
        let Feedback::Undeliverable { mark, recipients } = read_notification(text, NOW).unwrap() else {
            panic!("not a mark")
        };
        assert_eq!(mark.reason, UndeliverableReason::Complaint);
        assert_eq!(mark.detail, "complaint (abuse)");
        assert_eq!(recipients.iter().map(Email::normalized).collect::<Vec<_>>(), ["ada@example.com"]);
    }

    #[test]
    fn other_events_are_nothing_and_garbage_is_refused() {
        assert_eq!(
            read_notification(r#"{"eventType":"Delivery","mail":{}}"#, NOW).unwrap(),
            Feedback::Other("Delivery".into())
        );
        assert!(read_notification("not json", NOW).is_err());
        assert!(read_notification(r#"{"mail":{}}"#, NOW).is_err());
        assert!(read_notification(r#"{"eventType":"Bounce"}"#, NOW).is_err());
    }
}
