//! The AWS SDK clients, built in this one place with deliberate timeouts and retries.
//!
//! Budget: API Gateway gives up at 30 s and the functions time out at 15 s; a person should get a
//! clean answer (503 `internal`) well inside 10 s when a dependency hangs. Each SDK call is bounded:
//! - connect: [`CONNECT_TIMEOUT`] (a regional endpoint connects in milliseconds; a hung connect
//!   is a fault, not slowness);
//! - each attempt: [`ATTEMPT_TIMEOUT`] (single-item DynamoDB calls and SES `SendEmail` answer in
//!   tens to hundreds of milliseconds; a transaction of a few items well under a second);
//! - the whole operation, retries and backoff included: [`OPERATION_TIMEOUT`];
//! - retries: the SDK's standard mode, [`MAX_ATTEMPTS`] attempts in all (throttling, 5xx,
//!   timeouts and dropped connections are retried with jittered exponential backoff).
//!
//! A request stops at its first failed call, so a hung dependency costs it at most one operation
//! timeout, 5 s, plus the work done before (a password hash: under 0.1 s in release builds).
//!
//! Tests reach the SDK only through [`config_loader`] too: [`SdkHooks`] lets them put a
//! fault-injecting HTTP client under the same configuration and shorten the retry backoff.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, ConfigLoader, SdkConfig};
use aws_sdk_dynamodb::config::SharedHttpClient;
use aws_sdk_dynamodb::config::retry::RetryPartition;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};

pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(5);
pub const MAX_ATTEMPTS: u32 = 3;

/// What tests may change under the one configuration; production uses the default (nothing).
#[derive(Clone, Debug, Default)]
pub struct SdkHooks {
    /// The HTTP client under the SDK (a fault injector wrapping a real client).
    pub http_client: Option<SharedHttpClient>,
    /// A shorter first retry backoff than the standard mode's, to keep fault tests quick.
    pub initial_backoff: Option<Duration>,
    /// A retry partition of their own, so that one test's faults do not drain the retry quota
    /// (the standard mode's token bucket) that other tests in the process share.
    pub retry_partition: Option<String>,
}

pub fn timeouts() -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .operation_attempt_timeout(ATTEMPT_TIMEOUT)
        .operation_timeout(OPERATION_TIMEOUT)
        .build()
}

pub fn retries(hooks: &SdkHooks) -> RetryConfig {
    let standard = RetryConfig::standard().with_max_attempts(MAX_ATTEMPTS);
    match hooks.initial_backoff {
        Some(backoff) => standard.with_initial_backoff(backoff),
        None => standard,
    }
}

/// The SDK configuration every client comes from: the standard AWS environment (`AWS_ENDPOINT_URL`,
/// `AWS_REGION`, credentials) with the portal's timeouts and retries. Tests add an endpoint,
/// region and credentials to the loader they get.
pub fn config_loader(hooks: &SdkHooks) -> ConfigLoader {
    let loader =
        aws_config::defaults(BehaviorVersion::latest()).timeout_config(timeouts()).retry_config(retries(hooks));
    let client = hooks.http_client.clone().unwrap_or_else(https_client);
    loader.http_client(client)
}

/// The HTTPS client under every SDK call: the SDK's own hyper client, with rustls on ring as its TLS
/// (the SDK's default, aws-lc-rs, is a large C library to build and to ship; see Cargo.toml).
pub fn https_client() -> SharedHttpClient {
    use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
    aws_smithy_http_client::Builder::new().tls_provider(Provider::Rustls(CryptoMode::Ring)).build_https()
}

/// The clients the portal uses. Building them makes no network call.
#[derive(Clone, Debug)]
pub struct AwsClients {
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub ses: aws_sdk_sesv2::Client,
    pub eventbridge: aws_sdk_eventbridge::Client,
    /// SES v1, for the account's sending rate only (`GetSendQuota`).
    pub ses_quota: aws_sdk_ses::Client,
    pub kms: aws_sdk_kms::Client,
}

impl AwsClients {
    pub fn new(sdk: &SdkConfig, hooks: &SdkHooks) -> Self {
        let mut dynamodb = aws_sdk_dynamodb::config::Builder::from(sdk);
        let mut ses = aws_sdk_sesv2::config::Builder::from(sdk);
        let mut eventbridge = aws_sdk_eventbridge::config::Builder::from(sdk);
        let mut ses_quota = aws_sdk_ses::config::Builder::from(sdk);
        let mut kms = aws_sdk_kms::config::Builder::from(sdk);
        if let Some(partition) = &hooks.retry_partition {
            dynamodb = dynamodb.retry_partition(RetryPartition::new(format!("{partition}-dynamodb")));
            ses = ses.retry_partition(RetryPartition::new(format!("{partition}-ses")));
            eventbridge = eventbridge.retry_partition(RetryPartition::new(format!("{partition}-eventbridge")));
            ses_quota = ses_quota.retry_partition(RetryPartition::new(format!("{partition}-ses-quota")));
            kms = kms.retry_partition(aws_sdk_kms::config::retry::RetryPartition::new(format!("{partition}-kms")));
        }
        AwsClients {
            dynamodb: aws_sdk_dynamodb::Client::from_conf(dynamodb.build()),
            ses: aws_sdk_sesv2::Client::from_conf(ses.build()),
            eventbridge: aws_sdk_eventbridge::Client::from_conf(eventbridge.build()),
            ses_quota: aws_sdk_ses::Client::from_conf(ses_quota.build()),
            kms: aws_sdk_kms::Client::from_conf(kms.build()),
        }
    }
}

/// Throttling and capacity error codes of DynamoDB and SES: the service is there but busy.
const BUSY_CODES: &[&str] = &[
    "ThrottlingException",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "TooManyRequestsException",
    "LimitExceededException",
    "InternalServerError",
    "ServiceUnavailable",
];

/// Whether an SDK error (after the SDK's own retries) means the dependency is unavailable or too
/// slow for now, as opposed to a fault of ours (a bad request, a missing table or grant).
pub fn is_unavailable<E: ProvideErrorMetadata>(
    err: &SdkError<E, aws_sdk_dynamodb::config::http::HttpResponse>,
) -> bool {
    match err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => true,
        SdkError::ServiceError(service) => {
            service.raw().status().is_server_error()
                || service.err().code().is_some_and(|code| BUSY_CODES.contains(&code))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hung_call_is_bounded_well_inside_ten_seconds() {
        let timeouts = timeouts();
        assert_eq!(timeouts.connect_timeout(), Some(CONNECT_TIMEOUT));
        assert_eq!(timeouts.operation_attempt_timeout(), Some(ATTEMPT_TIMEOUT));
        assert_eq!(timeouts.operation_timeout(), Some(OPERATION_TIMEOUT));
        assert!(OPERATION_TIMEOUT <= Duration::from_secs(5) && ATTEMPT_TIMEOUT < OPERATION_TIMEOUT);
        assert_eq!(retries(&SdkHooks::default()).max_attempts(), MAX_ATTEMPTS);
    }
}
