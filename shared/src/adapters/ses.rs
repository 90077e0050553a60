//! Sending email through SES v2.

use async_trait::async_trait;
use aws_sdk_sesv2::Client;
use aws_sdk_sesv2::error::{DisplayErrorContext, SdkError};
use aws_sdk_sesv2::operation::send_email::SendEmailError;
use aws_sdk_sesv2::types::{Body, Content, Destination, EmailContent, Message};

use crate::ports::{Mailer, OutgoingEmail, SendError};

pub struct SesMailer {
    client: Client,
    sender: String,
}

impl SesMailer {
    pub fn new(client: Client, sender: &str) -> Self {
        SesMailer { client, sender: sender.into() }
    }
}

fn content(text: &str) -> Result<Content, SendError> {
    Content::builder().data(text).charset("UTF-8").build().map_err(|e| SendError::Permanent(e.to_string()))
}

/// Which SES failures will never succeed (the message or address is refused) and which may
/// (throttling, quotas, transport faults).
fn classify<R: std::fmt::Debug>(err: SdkError<SendEmailError, R>) -> SendError {
    let detail = DisplayErrorContext(&err).to_string();
    match &err {
        SdkError::ServiceError(service) => match service.err() {
            SendEmailError::MessageRejected(_)
            | SendEmailError::MailFromDomainNotVerifiedException(_)
            | SendEmailError::AccountSuspendedException(_)
            | SendEmailError::BadRequestException(_)
            | SendEmailError::NotFoundException(_) => SendError::Permanent(detail),
            _ => SendError::Retryable(detail),
        },
        _ => SendError::Retryable(detail),
    }
}

#[async_trait]
impl Mailer for SesMailer {
    async fn send(&self, email: &OutgoingEmail) -> Result<(), SendError> {
        let message = Message::builder()
            .subject(content(&email.subject)?)
            .body(Body::builder().text(content(&email.text)?).build())
            .build();
        self.client
            .send_email()
            .from_email_address(&self.sender)
            .destination(Destination::builder().to_addresses(&email.to).build())
            .content(EmailContent::builder().simple(message).build())
            .send()
            .await
            .map_err(classify)?;
        Ok(())
    }
}
