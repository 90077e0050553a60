//! The `register` Lambda function: wiring only; the routes live in `portal::handlers`.

#[tokio::main]
async fn main() -> Result<(), portal::lambda::Error> {
    portal::lambda::serve(portal::handlers::register::Register).await
}
