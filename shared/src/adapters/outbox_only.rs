//! The edges of a function that never sends: the HTTP functions queue emails and events in the
//! outbox (in the transaction of what causes them), and only `send-email` sends and publishes
//! them. Wiring these into the HTTP functions instead of SES, EventBridge and the pacer keeps
//! those clients and their code out of five of the six bootstraps (README "Binary size").
//!
//! Nothing in an HTTP function calls them (only `usecases::delivery`, which `send-email` runs,
//! does); were one called, it would fail loudly instead of sending from the wrong place.

use async_trait::async_trait;

use crate::domain::event::PortalEvent;
use crate::ports::{EventBus, Mailer, OutgoingEmail, SendError, SendPacer};

const WHY: &str = "an HTTP function queues email and events in the outbox: send-email sends them";

/// The mailer, event bus and pacer of a function that only queues.
pub struct QueuesOnly;

#[async_trait]
impl Mailer for QueuesOnly {
    async fn send(&self, _email: &OutgoingEmail) -> Result<(), SendError> {
        Err(SendError::Permanent(WHY.into()))
    }
}

#[async_trait]
impl EventBus for QueuesOnly {
    async fn publish(&self, _event: &PortalEvent) -> anyhow::Result<()> {
        anyhow::bail!(WHY)
    }
}

#[async_trait]
impl SendPacer for QueuesOnly {
    async fn wait_for_slot(&self) -> anyhow::Result<bool> {
        anyhow::bail!(WHY)
    }

    async fn back_off(&self) -> anyhow::Result<()> {
        anyhow::bail!(WHY)
    }
}
