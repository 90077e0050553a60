//! The `email-feedback` Lambda function, subscribed to the SNS topic SES publishes bounces and
//! complaints to: wiring only; the behaviour lives in `portal::handlers::email_feedback`.

#[tokio::main]
async fn main() -> Result<(), portal::lambda::Error> {
    portal::lambda::run_notifications(|portal, event| async move {
        portal::handlers::email_feedback::handle(&portal, event).await
    })
    .await
}
