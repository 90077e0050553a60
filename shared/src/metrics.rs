//! CloudWatch metrics of `send-email`, as embedded-metric-format (EMF) log lines: Lambda's logs
//! carry them to CloudWatch, which extracts the metrics; no API call, no extra permission.
//!
//! Namespace `Portal`, one dimension, `Stack` (the stack's name: two stacks in one account keep
//! their metrics and alarms apart):
//! - `EmailsSent` (Count): messages sent in a batch;
//! - `EmailsFailed` (Count): messages that failed for good (refused by SES, superseded);
//! - `EmailsRetried` (Count): records reported back to the stream to be retried (a passing fault,
//!   or another delivery's live lease);
//! - `EventsPublished` (Count): portal events the batch published on the event bus;
//! - `OldestMessageAgeSeconds` (Seconds): the age of the oldest message a batch saw, since it was
//!   queued. Rising means email is stuck behind retries.

use serde_json::json;

pub const NAMESPACE: &str = "Portal";
pub const DIMENSION: &str = "Stack";

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BatchMetrics {
    pub sent: u64,
    pub failed: u64,
    pub retried: u64,
    pub published: u64,
    pub oldest_message_age_secs: Option<i64>,
}

impl BatchMetrics {
    pub fn saw_message_aged(&mut self, age_secs: Option<i64>) {
        if let Some(age) = age_secs {
            self.oldest_message_age_secs = Some(self.oldest_message_age_secs.map_or(age, |oldest| oldest.max(age)));
        }
    }

    /// The EMF document (one JSON object) for a batch of the stack `stack` ending at
    /// `unix_millis`.
    pub fn to_emf(&self, stack: &str, unix_millis: u128) -> serde_json::Value {
        json!({
            "_aws": {
                "Timestamp": unix_millis as u64,
                "CloudWatchMetrics": [{
                    "Namespace": NAMESPACE,
                    "Dimensions": [[DIMENSION]],
                    "Metrics": [
                        {"Name": "EmailsSent", "Unit": "Count"},
                        {"Name": "EmailsFailed", "Unit": "Count"},
                        {"Name": "EmailsRetried", "Unit": "Count"},
                        {"Name": "EventsPublished", "Unit": "Count"},
                        {"Name": "OldestMessageAgeSeconds", "Unit": "Seconds"},
                    ],
                }],
            },
            DIMENSION: stack,
            "EmailsSent": self.sent,
            "EmailsFailed": self.failed,
            "EmailsRetried": self.retried,
            "EventsPublished": self.published,
            "OldestMessageAgeSeconds": self.oldest_message_age_secs.unwrap_or(0).max(0),
        })
    }

    /// Writes the line to standard output, where CloudWatch Logs reads EMF (a line of its own,
    /// outside the tracing logs' JSON).
    pub fn emit(&self, stack: &str) {
        let millis = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or_default();
        println!("{}", self.to_emf(stack, millis));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_emf_line_declares_every_metric_it_carries() {
        let mut metrics = BatchMetrics { sent: 2, failed: 1, retried: 3, published: 4, oldest_message_age_secs: None };
        metrics.saw_message_aged(Some(40));
        metrics.saw_message_aged(Some(7));
        metrics.saw_message_aged(None);
        let emf = metrics.to_emf("portal-prod", 1_800_000_000_000);
        let declared = &emf["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(declared["Namespace"], "Portal");
        assert_eq!(declared["Dimensions"], json!([["Stack"]]), "every metric carries the stack");
        assert_eq!(emf["Stack"], "portal-prod");
        for metric in declared["Metrics"].as_array().unwrap() {
            let name = metric["Name"].as_str().unwrap();
            assert!(emf[name].is_number(), "{name} is declared but not set");
        }
        assert_eq!(
            (&emf["EmailsSent"], &emf["EmailsFailed"], &emf["EmailsRetried"], &emf["OldestMessageAgeSeconds"]),
            (&json!(2), &json!(1), &json!(3), &json!(40))
        );
        assert_eq!(emf["_aws"]["Timestamp"], 1_800_000_000_000u64);
    }
}
