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

/// Runs an HTTP function on the Lambda runtime. A bad setting stops the function here, with a
/// message naming the variable.
pub async fn run_http(function: impl HttpFunction) -> Result<(), Error> {
    crate::telemetry::init();
    let portal = match Portal::from_environment().await {
        Ok(portal) => portal,
        Err(err) => {
            tracing::error!(error = format!("{err:#}"), "start-up failed");
            return Err(err.into());
        }
    };
    let (portal, function) = (&portal, &function);
    lambda_http::run(service_fn(move |req: HttpRequest| async move {
        Ok::<_, Infallible>(function.handle(portal, req).await)
    }))
    .await
}
