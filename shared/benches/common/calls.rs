//! What both benches count: the DynamoDB requests a portal sends, by operation name, through an
//! SDK interceptor on a client of the tests' moto server.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_dynamodb::config::{BehaviorVersion, ConfigBag, Credentials, Intercept, Region, RuntimeComponents};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::orchestrator::Metadata;

/// Counts requests sent to DynamoDB, by operation name.
#[derive(Debug, Default, Clone)]
pub struct CallCounter(Arc<Mutex<BTreeMap<String, u32>>>);

impl Intercept for CallCounter {
    fn name(&self) -> &'static str {
        "CallCounter"
    }

    fn read_before_transmit(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let name = cfg.load::<Metadata>().map(|m| m.name().to_string()).unwrap_or_else(|| "?".into());
        *self.0.lock().unwrap().entry(name).or_default() += 1;
        Ok(())
    }
}

impl CallCounter {
    /// The calls counted since the last take: their total and "Operation n, ..." (then zero).
    pub fn take(&self) -> (u32, String) {
        let counts = std::mem::take(&mut *self.0.lock().unwrap());
        let total: u32 = counts.values().sum();
        let detail: Vec<String> = counts.iter().map(|(op, n)| format!("{op} {n}")).collect();
        (total, detail.join(", "))
    }

    /// A DynamoDB client of the moto server whose every request this counts.
    pub fn client(&self, endpoint: &str) -> aws_sdk_dynamodb::Client {
        let config = aws_sdk_dynamodb::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .http_client(portal::aws::https_client())
            .endpoint_url(endpoint)
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("test", "test", None, None, "bench"))
            .interceptor(self.clone())
            .build();
        aws_sdk_dynamodb::Client::from_conf(config)
    }
}
