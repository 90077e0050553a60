//! Publishing the portal's events on an EventBridge bus (`PutEvents`, one entry per event).

use async_trait::async_trait;
use aws_sdk_eventbridge::Client;
use aws_sdk_eventbridge::error::DisplayErrorContext;
use aws_sdk_eventbridge::primitives::DateTime;
use aws_sdk_eventbridge::types::PutEventsRequestEntry;

use crate::domain::event::{EVENT_SOURCE, PortalEvent};
use crate::ports::EventBus;

pub struct EventBridgeBus {
    client: Client,
    bus_name: String,
}

impl EventBridgeBus {
    /// The bus named `bus_name` (`PORTAL_EVENT_BUS`): a name or an ARN.
    pub fn new(client: Client, bus_name: &str) -> Self {
        EventBridgeBus { client, bus_name: bus_name.into() }
    }
}

/// The `PutEvents` entry of an event: `Source` `portal`, the fact's name as `DetailType`, the
/// detail JSON, and the time it happened.
pub fn entry(bus_name: &str, event: &PortalEvent) -> PutEventsRequestEntry {
    PutEventsRequestEntry::builder()
        .event_bus_name(bus_name)
        .source(EVENT_SOURCE)
        .detail_type(event.detail_type())
        .detail(event.detail().to_string())
        .time(DateTime::from_secs(event.occurred_at.as_secs()))
        .build()
}

#[async_trait]
impl EventBus for EventBridgeBus {
    async fn publish(&self, event: &PortalEvent) -> anyhow::Result<()> {
        let output = self
            .client
            .put_events()
            .entries(entry(&self.bus_name, event))
            .send()
            .await
            .map_err(|err| anyhow::anyhow!("publishing {}: {}", event.detail_type(), DisplayErrorContext(&err)))?;
        // PutEvents answers 200 even when an entry was refused: its count and the entry say so.
        if output.failed_entry_count() > 0 {
            let failed = output.entries().iter().find(|e| e.error_code().is_some());
            anyhow::bail!(
                "publishing {}: the bus refused the entry ({}: {})",
                event.detail_type(),
                failed.and_then(|e| e.error_code()).unwrap_or("unknown"),
                failed.and_then(|e| e.error_message()).unwrap_or("no message"),
            );
        }
        Ok(())
    }
}
