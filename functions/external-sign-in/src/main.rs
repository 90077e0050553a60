//! The `external-sign-in` Lambda function: sign-in, redemption and linking with an OpenID Connect
//! provider. Wiring only; the routes live in `portal::handlers::external`. A function of its own so
//! that the OpenID Connect client (its crypto and HTTP client) stays out of the other functions.

#[tokio::main]
async fn main() -> Result<(), portal::lambda::Error> {
    portal::lambda::serve_external(portal::handlers::external::ExternalSignIn).await
}
