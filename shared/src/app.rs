//! The portal's dependencies, built once per Lambda instance.

use std::sync::Arc;

use crate::adapters::dynamodb::{DynamoContacts, DynamoSessions};
use crate::adapters::dynamodb_invitations::{DynamoInvitations, DynamoOutbox};
use crate::adapters::ses::SesMailer;
use crate::aws::{self, AwsClients, SdkHooks};
use crate::config::Settings;
use crate::ports::{
    Clock, ContactStore, InvitationStore, Mailer, Outbox, SessionStore, SystemClock, UsesClock, UsesContacts,
    UsesInvitations, UsesSessions, UsesSettings,
};

/// Settings and the ports handlers use; production wires DynamoDB, tests wire memory.
pub struct Portal {
    pub settings: Settings,
    pub contacts: Arc<dyn ContactStore>,
    pub sessions: Arc<dyn SessionStore>,
    pub invitations: Arc<dyn InvitationStore>,
    pub outbox: Arc<dyn Outbox>,
    pub mailer: Arc<dyn Mailer>,
    pub clock: Arc<dyn Clock>,
}

impl Portal {
    /// Reads the settings and builds the AWS clients from the standard AWS environment
    /// (`AWS_ENDPOINT_URL`, `AWS_REGION`, credentials) with the timeouts and retries of
    /// [`crate::aws`]: the same code path locally and on AWS.
    pub async fn from_environment() -> anyhow::Result<Self> {
        let settings = Settings::from_env()?;
        let hooks = SdkHooks::default();
        let sdk = aws::config_loader(&hooks).load().await;
        Ok(Portal::on_aws(settings, &AwsClients::new(&sdk, &hooks)))
    }

    /// The portal on DynamoDB and SES through these clients (tests pass clients built by
    /// [`crate::aws`] against the local endpoint).
    pub fn on_aws(settings: Settings, clients: &AwsClients) -> Self {
        let dynamodb = clients.dynamodb.clone();
        Portal {
            contacts: Arc::new(DynamoContacts::new(dynamodb.clone(), &settings.contacts_table, &settings.outbox_table)),
            sessions: Arc::new(DynamoSessions::new(dynamodb.clone(), &settings.sessions_table)),
            invitations: Arc::new(DynamoInvitations::new(
                dynamodb.clone(),
                &settings.invitations_table,
                &settings.contacts_table,
                &settings.outbox_table,
            )),
            outbox: Arc::new(
                DynamoOutbox::new(dynamodb, &settings.outbox_table).with_invitations(&settings.invitations_table),
            ),
            mailer: Arc::new(SesMailer::new(clients.ses.clone(), &settings.email_sender)),
            clock: Arc::new(SystemClock),
            settings,
        }
    }
}

impl UsesContacts for Portal {
    fn contacts(&self) -> &dyn ContactStore {
        self.contacts.as_ref()
    }
}

impl UsesSessions for Portal {
    fn sessions(&self) -> &dyn SessionStore {
        self.sessions.as_ref()
    }
}

impl UsesInvitations for Portal {
    fn invitations(&self) -> &dyn InvitationStore {
        self.invitations.as_ref()
    }
}

impl UsesClock for Portal {
    fn clock(&self) -> &dyn Clock {
        self.clock.as_ref()
    }
}

impl UsesSettings for Portal {
    fn settings(&self) -> &Settings {
        &self.settings
    }
}
