//! The portal's dependencies, built once per Lambda instance.

use std::sync::Arc;

use crate::adapters::dynamodb::{DynamoContacts, DynamoSessions};
use crate::adapters::dynamodb_imports::{DynamoImports, DynamoPacer};
use crate::adapters::dynamodb_invitations::{DynamoInvitations, DynamoOutbox};
use crate::adapters::dynamodb_passkeys::DynamoPasskeys;
use crate::adapters::dynamodb_two_factor::DynamoTwoFactor;
use crate::adapters::eventbridge::EventBridgeBus;
use crate::adapters::outbox_only::QueuesOnly;
use crate::adapters::sealing::KmsSealer;
use crate::adapters::ses::SesMailer;
use crate::aws::{self, AwsClients, SdkHooks};
use crate::config::Settings;
use crate::ports::{
    Clock, ContactStore, EventBus, ImportStore, InvitationStore, Mailer, Outbox, SendPacer, SessionStore, SystemClock,
    UsesClock, UsesContacts, UsesImports, UsesInvitations, UsesSessions, UsesSettings,
};
use crate::ports::{IdentityProviders, NoIdentityProviders, PasskeyStore, UsesPasskeys};
use crate::ports::{SecretSealer, TwoFactorStore, UsesTwoFactor};

/// Settings and the ports handlers use; production wires DynamoDB (tests also wire memory:
/// `portal-testkit`).
#[derive(Clone)]
pub struct Portal {
    pub settings: Settings,
    /// The portal with the run-time site settings applied, as last read (see [`Portal::current`]);
    /// shared by the portals made from this one.
    pub live: Arc<LiveSettings>,
    pub contacts: Arc<dyn ContactStore>,
    pub sessions: Arc<dyn SessionStore>,
    pub invitations: Arc<dyn InvitationStore>,
    pub outbox: Arc<dyn Outbox>,
    pub mailer: Arc<dyn Mailer>,
    /// Where `send-email` publishes the portal's events.
    pub events: Arc<dyn EventBus>,
    pub clock: Arc<dyn Clock>,
    /// Bulk imports of contacts.
    pub imports: Arc<dyn ImportStore>,
    /// Paces email to the SES account's sending rate.
    pub pacer: Arc<dyn SendPacer>,
    pub passkeys: Arc<dyn PasskeyStore>,
    pub two_factor: Arc<dyn TwoFactorStore>,
    pub sealer: Arc<dyn SecretSealer>,
    /// OpenID Connect providers over the network: only external-sign-in has a client
    /// ([`Portal::with_identity_providers`]).
    pub identity_providers: Arc<dyn IdentityProviders>,
}

impl Portal {
    /// Reads the settings and builds the AWS clients from the standard AWS environment
    /// (`AWS_ENDPOINT_URL`, `AWS_REGION`, credentials) with the timeouts and retries of
    /// [`crate::aws`]: the same code path locally and on AWS.
    pub async fn from_environment() -> anyhow::Result<Self> {
        let (settings, sdk) = environment().await?;
        Ok(Portal::on_aws(settings, &AwsClients::new(&sdk, &SdkHooks::default())))
    }

    /// An HTTP function's portal: like [`Portal::from_environment`], but it only queues email and
    /// events (the outbox), so it has no SES or EventBridge client, and none of their code is
    /// linked into the function ([`QueuesOnly`]); DynamoDB and KMS (second-factor secrets) only.
    pub async fn from_environment_queueing() -> anyhow::Result<Self> {
        let (settings, sdk) = environment().await?;
        let edges = Edges {
            mailer: Arc::new(QueuesOnly),
            events: Arc::new(QueuesOnly),
            clock: Arc::new(SystemClock),
            pacer: Arc::new(QueuesOnly),
            sealer: kms_sealer(aws_sdk_kms::Client::new(&sdk), &settings),
        };
        Ok(Portal::on_dynamodb(settings, &aws_sdk_dynamodb::Client::new(&sdk), edges))
    }

    /// The portal on DynamoDB, SES, EventBridge and KMS through these clients (tests pass
    /// clients built by [`crate::aws`] against the local endpoint).
    pub fn on_aws(settings: Settings, clients: &AwsClients) -> Self {
        let edges = Edges {
            mailer: Arc::new(SesMailer::new(clients.ses.clone(), &settings.email_sender)),
            events: Arc::new(EventBridgeBus::new(clients.eventbridge.clone(), &settings.event_bus)),
            clock: Arc::new(SystemClock),
            pacer: Arc::new(DynamoPacer::new(
                clients.dynamodb.clone(),
                &settings.contacts_table,
                clients.ses_quota.clone(),
            )),
            sealer: kms_sealer(clients.kms.clone(), &settings),
        };
        Portal::on_dynamodb(settings, &clients.dynamodb, edges)
    }

    /// Every store on the DynamoDB tables the settings name, through `dynamodb`, with these
    /// edges: the one place that wires the stores, for the functions, the tests and the benches.
    pub fn on_dynamodb(settings: Settings, dynamodb: &aws_sdk_dynamodb::Client, edges: Edges) -> Self {
        let (contacts, sessions, invitations, outbox, audit) = (
            &settings.contacts_table,
            &settings.sessions_table,
            &settings.invitations_table,
            &settings.outbox_table,
            &settings.audit_table,
        );
        Portal {
            contacts: Arc::new(DynamoContacts::new(dynamodb.clone(), contacts, outbox, audit)),
            sessions: Arc::new(DynamoSessions::new(dynamodb.clone(), sessions).queueing_to(contacts, outbox, audit)),
            invitations: Arc::new(
                DynamoInvitations::new(dynamodb.clone(), invitations, contacts, outbox)
                    .auditing_to(audit)
                    .keeping_source_addresses_for(settings.audit_retention_secs),
            ),
            outbox: Arc::new(DynamoOutbox::new(dynamodb.clone(), outbox).with_invitations(invitations)),
            imports: Arc::new(DynamoImports::new(dynamodb.clone(), invitations, contacts, outbox).auditing_to(audit)),
            passkeys: Arc::new(DynamoPasskeys::new(dynamodb.clone(), contacts, sessions, outbox, audit)),
            two_factor: Arc::new(DynamoTwoFactor::new(dynamodb.clone(), contacts, sessions, outbox, audit)),
            mailer: edges.mailer,
            events: edges.events,
            clock: edges.clock,
            pacer: edges.pacer,
            sealer: edges.sealer,
            identity_providers: Arc::new(NoIdentityProviders),
            settings,
            live: Arc::default(),
        }
    }

    /// This portal with the site settings as they stand: the run-time values (`GET, POST
    /// /admin/settings`) applied on top of the environment's, read at most once a minute per
    /// instance (`PORTAL_SETTINGS_REFRESH_SECS`: one `GetItem` a minute, never one per request).
    /// Should the read fail, the last values read stay in force; with none yet, the request gets a
    /// 503. A stored value the settings refuse (the environment changed under it) is left out,
    /// logged.
    pub async fn current(self: &Arc<Self>) -> Result<Arc<Portal>, crate::error::PortalError> {
        let now = self.clock.now();
        let mut cached = self.live.cached.lock().await;
        if let Some((read_at, portal)) = cached.as_ref()
            && now - *read_at < self.settings.settings_refresh_secs
        {
            return Ok(portal.clone());
        }
        // With settings already read, a slow or failing store must not hold the request up: the
        // read gets a second, then the last settings stay in force for another interval.
        let read = self.contacts.run_time_settings();
        let outcome = match cached.as_ref() {
            Some(_) => tokio::time::timeout(STALE_READ_BOUND, read)
                .await
                .unwrap_or_else(|_| Err(anyhow::anyhow!("reading the site settings took over a second"))),
            None => read.await,
        };
        let run_time = match outcome {
            Ok(run_time) => run_time,
            Err(err) => {
                return match cached.as_mut() {
                    Some((read_at, stale)) => {
                        tracing::warn!(error = format!("{err:#}"), "site settings not read; the last ones stay");
                        *read_at = now;
                        Ok(stale.clone())
                    }
                    None => Err(err.into()),
                };
            }
        };
        let settings = self.settings.with_run_time(&run_time.values).unwrap_or_else(|refused| {
            tracing::warn!(setting = refused.name, reason = refused.reason, "a run-time setting was left out");
            self.settings.clone()
        });
        let fresh = Arc::new(Portal { settings, ..(**self).clone() });
        *cached = Some((now, fresh.clone()));
        Ok(fresh)
    }
}

/// How long a refresh of settings already read may take before the last ones are used.
const STALE_READ_BOUND: std::time::Duration = std::time::Duration::from_secs(1);

/// The last reading of the run-time site settings: when, and the portal it made.
#[derive(Default)]
pub struct LiveSettings {
    cached: tokio::sync::Mutex<Option<(crate::domain::time::Timestamp, Arc<Portal>)>>,
}

/// What a portal reaches besides its tables: email, the event bus, the clock, the email pacer and
/// the sealer of second-factor secrets.
pub struct Edges {
    pub mailer: Arc<dyn Mailer>,
    pub events: Arc<dyn EventBus>,
    pub clock: Arc<dyn Clock>,
    pub pacer: Arc<dyn SendPacer>,
    pub sealer: Arc<dyn SecretSealer>,
}

/// The settings and the SDK configuration of the standard AWS environment, read once per instance.
async fn environment() -> anyhow::Result<(Settings, aws_config::SdkConfig)> {
    let settings = Settings::from_env()?;
    Ok((settings, sdk_config(&SdkHooks::default()).await))
}

/// The sealer of second-factor secrets under the settings' KMS key.
fn kms_sealer(kms: aws_sdk_kms::Client, settings: &Settings) -> Arc<dyn SecretSealer> {
    Arc::new(KmsSealer::new(kms, settings.totp_kms_key_id.clone().unwrap_or_default()))
}

/// The AWS SDK configuration of [`aws::config_loader`] (timeouts, retries), with the function's
/// name as the app id of its calls (see `app_name_of_function`).
pub async fn sdk_config(hooks: &SdkHooks) -> aws_config::SdkConfig {
    let mut loader = aws::config_loader(hooks);
    if std::env::var_os("AWS_SDK_UA_APP_ID").is_none()
        && let Some(app_name) = app_name_of_function(std::env::var("AWS_LAMBDA_FUNCTION_NAME").ok().as_deref())
    {
        loader = loader.app_name(app_name);
    }
    loader.load().await
}

/// The SDK app id of a Lambda function's AWS calls: its function name, sent as `app/<name>` in
/// the User-Agent of every request, so CloudTrail (its `userAgent`) and the local IAM coverage
/// check (scripts/aws_recorder.py) can tell which function made a call. `AWS_SDK_UA_APP_ID`, when
/// set, wins (the SDK reads it itself). The SDK recommends at most 50 characters and warns above;
/// CloudFormation-made names can be 64, whose first 50 still name the stack and the function.
pub fn app_name_of_function(function_name: Option<&str>) -> Option<aws_config::AppName> {
    let name = function_name?.trim();
    let name = name.get(..50).unwrap_or(name);
    aws_config::AppName::new(name.to_string()).ok()
}

impl Portal {
    /// The portal with this OpenID Connect client.
    pub fn with_identity_providers(mut self, providers: Arc<dyn IdentityProviders>) -> Self {
        self.identity_providers = providers;
        self
    }
}

impl crate::ports::UsesIdentityProviders for Portal {
    fn identity_providers(&self) -> &dyn IdentityProviders {
        self.identity_providers.as_ref()
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

impl UsesImports for Portal {
    fn imports(&self) -> &dyn ImportStore {
        self.imports.as_ref()
    }
}

impl UsesTwoFactor for Portal {
    fn two_factor(&self) -> &dyn TwoFactorStore {
        self.two_factor.as_ref()
    }

    fn sealer(&self) -> &dyn SecretSealer {
        self.sealer.as_ref()
    }
}

impl UsesSettings for Portal {
    fn settings(&self) -> &Settings {
        &self.settings
    }
}

impl UsesPasskeys for Portal {
    fn passkeys(&self) -> &dyn PasskeyStore {
        self.passkeys.as_ref()
    }
}

impl crate::ports::UsesOutbox for Portal {
    fn outbox(&self) -> &dyn crate::ports::Outbox {
        self.outbox.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::app_name_of_function;

    #[test]
    fn a_functions_aws_calls_carry_its_name() {
        let name = app_name_of_function(Some("sign-in")).expect("a valid app name");
        assert_eq!(name.to_string(), "sign-in");
    }

    #[test]
    fn outside_lambda_or_with_an_unusable_name_there_is_no_app_name() {
        assert!(app_name_of_function(None).is_none());
        assert!(app_name_of_function(Some("")).is_none());
        assert!(app_name_of_function(Some("not a name")).is_none());
    }

    #[test]
    fn a_long_cloudformation_name_keeps_its_first_50_characters() {
        let long = "portal-production-RedeemInvitationFunction-AbCdEfGhIjKl";
        assert!(long.len() > 50);
        let name = app_name_of_function(Some(long)).expect("a valid app name");
        assert_eq!(name.to_string(), &long[..50]);
    }
}
