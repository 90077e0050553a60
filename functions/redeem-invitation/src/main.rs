//! The `redeem-invitation` Lambda function: wiring only; the behaviour lives in `portal::handlers`.

#[tokio::main]
async fn main() -> Result<(), portal::lambda::Error> {
    portal::lambda::run_http(portal::handlers::redeem::RedeemInvitation).await
}
