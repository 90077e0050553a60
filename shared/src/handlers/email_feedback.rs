//! The email-feedback function: each SNS record is one SES notification (a bounce or a
//! complaint), handed to the deliverability use case ([`crate::usecases::deliverability`]). A
//! notification this portal cannot read is logged and dropped (retrying cannot make it readable);
//! a fault fails the invocation, so that Lambda delivers the event again (marking twice changes
//! nothing).

use aws_lambda_events::event::sns::SnsEvent;

use crate::app::Portal;
use crate::domain::deliverability::read_notification;
use crate::usecases::deliverability;

pub async fn handle(portal: &Portal, event: SnsEvent) -> anyhow::Result<()> {
    for record in &event.records {
        let message_id = record.sns.message_id.as_str();
        let feedback = match read_notification(&record.sns.message, portal.clock.now()) {
            Ok(feedback) => feedback,
            Err(reason) => {
                tracing::error!(message_id, reason, "unreadable SES notification dropped");
                continue;
            }
        };
        let taken = deliverability::take_feedback(portal, &feedback)
            .await
            .map_err(|err| anyhow::anyhow!("taking SES notification {message_id}: {err:?}"))?;
        tracing::info!(message_id, marked = taken.marked, soft_bounces = taken.soft_bounces, "SES notification taken");
    }
    Ok(())
}
