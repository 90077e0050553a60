//! The Lambda glue every function's `main` calls: logs, settings and clients once, then serve.

use std::future::Future;
use std::sync::Arc;

use aws_lambda_events::event::dynamodb::Event;
use aws_lambda_events::event::sns::SnsEvent;
use aws_lambda_events::event::streams::DynamoDbEventResponse;

use crate::app::Portal;
use crate::web::HttpFunction;

pub use lambda_http::Error;

/// Logs, settings and clients, once per instance. A bad setting stops the function here, with a
/// message naming the variable.
async fn start<F: Future<Output = anyhow::Result<Portal>>>(portal: F) -> Result<Arc<Portal>, Error> {
    crate::telemetry::init();
    let portal = portal.await.map_err(|err| {
        tracing::error!(error = format!("{err:#}"), "start-up failed");
        err
    })?;
    Ok(Arc::new(portal))
}

/// Serves an HTTP function's router on the Lambda runtime (every event shape lambda_http knows).
/// It only queues email and events; `send-email` sends them.
pub async fn serve(function: impl HttpFunction) -> Result<(), Error> {
    let portal = start(Portal::from_environment_queueing()).await?;
    lambda_http::run(function.router(portal)).await
}

/// Serves an HTTP function that talks to OpenID Connect providers (external-sign-in): as
/// [`serve`], with the provider client (discovery and keys cached per instance, secrets read once).
#[cfg(feature = "oidc")]
pub async fn serve_external(function: impl HttpFunction) -> Result<(), Error> {
    let portal = start(async {
        let sdk = crate::app::sdk_config(&crate::aws::SdkHooks::default()).await;
        let providers = crate::adapters::oidc::OpenIdConnect::new(aws_sdk_secretsmanager::Client::new(&sdk))?;
        Ok(Portal::from_environment_queueing().await?.with_identity_providers(Arc::new(providers)))
    })
    .await?;
    lambda_http::run(function.router(portal)).await
}

/// Runs a DynamoDB stream consumer (`send-email`) on the Lambda runtime.
pub async fn run_stream<F, Fut>(handler: F) -> Result<(), Error>
where
    F: Fn(Arc<Portal>, Event) -> Fut,
    Fut: Future<Output = DynamoDbEventResponse>,
{
    let portal = start(Portal::from_environment()).await?;
    let handler = &handler;
    lambda_runtime::run(lambda_runtime::service_fn(|event: lambda_runtime::LambdaEvent<Event>| {
        let portal = portal.clone();
        async move {
            // The site settings as they stand (read at most once a minute); should that read fail,
            // the environment's serve this batch.
            let current = portal.current().await.unwrap_or_else(|err| {
                tracing::warn!(error = format!("{err:?}"), "site settings not read; the environment's serve");
                portal.clone()
            });
            Ok::<_, Error>(handler(current, event.payload).await)
        }
    }))
    .await
}

/// Runs an SNS subscriber (`email-feedback`) on the Lambda runtime. It writes to the tables only
/// (no email, no bus). An error fails the invocation: Lambda invokes it again (an SNS delivery is
/// asynchronous), then hands the event to the function's failure queue.
pub async fn run_notifications<F, Fut>(handler: F) -> Result<(), Error>
where
    F: Fn(Arc<Portal>, SnsEvent) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let portal = start(Portal::from_environment_queueing()).await?;
    let handler = &handler;
    lambda_runtime::run(lambda_runtime::service_fn(|event: lambda_runtime::LambdaEvent<SnsEvent>| {
        let portal = portal.clone();
        async move { handler(portal, event.payload).await.map_err(Error::from) }
    }))
    .await
}
