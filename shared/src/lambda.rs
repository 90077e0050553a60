//! The Lambda glue every function's `main` calls: logs, settings and clients once, then serve.

use std::convert::Infallible;

use async_trait::async_trait;
use lambda_http::service_fn;

use crate::app::Portal;
use crate::web::{HttpRequest, HttpResponse};

pub use lambda_http::Error;

/// An HTTP-triggered function: answers every request (errors become responses, never panics).
#[async_trait]
pub trait HttpFunction: Send + Sync {
    async fn handle(&self, portal: &Portal, req: HttpRequest) -> HttpResponse;
}

/// Logs, settings and clients, once per instance. A bad setting stops the function here, with a
/// message naming the variable.
async fn start() -> Result<Portal, Error> {
    crate::telemetry::init();
    Portal::from_environment().await.map_err(|err| {
        tracing::error!(error = format!("{err:#}"), "start-up failed");
        err.into()
    })
}

/// Runs an HTTP function on the Lambda runtime.
pub async fn run_http(function: impl HttpFunction) -> Result<(), Error> {
    let portal = start().await?;
    let (portal, function) = (&portal, &function);
    lambda_http::run(service_fn(move |req: HttpRequest| async move {
        Ok::<_, Infallible>(function.handle(portal, req).await)
    }))
    .await
}

/// Runs the outbox stream's consumer (`send-email`) on the Lambda runtime.
pub async fn run_send_email() -> Result<(), Error> {
    let portal = start().await?;
    let portal = &portal;
    lambda_runtime::run(lambda_runtime::service_fn(
        move |event: lambda_runtime::LambdaEvent<aws_lambda_events::event::dynamodb::Event>| async move {
            Ok::<_, Error>(crate::handlers::send_email::handle(portal, event.payload).await)
        },
    ))
    .await
}
