//! The `send-email` Lambda function, triggered by the outbox table's DynamoDB stream: wiring only;
//! the behaviour lives in `portal::handlers::send_email`.

#[tokio::main]
async fn main() -> Result<(), portal::lambda::Error> {
    portal::lambda::run_stream(
        |portal, event| async move { portal::handlers::send_email::handle(&portal, event).await },
    )
    .await
}
