//! The portal's dependencies, built once per Lambda instance.

use std::sync::Arc;

use crate::adapters::dynamodb::{DynamoContacts, DynamoSessions};
use crate::config::Settings;
use crate::ports::{Clock, ContactStore, SessionStore, SystemClock};

/// Settings and the ports handlers use; production wires DynamoDB, tests wire memory.
pub struct Portal {
    pub settings: Settings,
    pub contacts: Arc<dyn ContactStore>,
    pub sessions: Arc<dyn SessionStore>,
    pub clock: Arc<dyn Clock>,
}

impl Portal {
    /// Reads the settings and builds the AWS clients from the standard AWS environment
    /// (`AWS_ENDPOINT_URL`, `AWS_REGION`, credentials): the same code path locally and on AWS.
    pub async fn from_environment() -> anyhow::Result<Self> {
        let settings = Settings::from_env()?;
        let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest()).load().await;
        let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
        Ok(Portal {
            contacts: Arc::new(DynamoContacts::new(dynamodb.clone(), &settings.contacts_table)),
            sessions: Arc::new(DynamoSessions::new(dynamodb, &settings.sessions_table)),
            clock: Arc::new(SystemClock),
            settings,
        })
    }
}
