//! A moto server for the test binary, started by the harness itself (reporting SES's production
//! sending rate, [`SES_MAX_SEND_RATE`]), and fresh tables per test created from
//! `infra/template.yaml` (the one definition of every table).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;

use super::root;
use std::process::{ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};

struct Moto {
    endpoint: String,
    /// Held until the test process exits: moto stops when this pipe closes.
    _stdin: Mutex<ChildStdin>,
}

/// How many moto servers a test binary spreads its tables over. One moto server answers one
/// request at a time (Python's lock), and the fault matrix kept one busy at 80% of a core while
/// the test process waited on it; a second lets both cores work.
const SERVERS: usize = 2;

static MOTOS: [OnceLock<Moto>; SERVERS] = [const { OnceLock::new() }; SERVERS];
static NEXT_SERVER: AtomicUsize = AtomicUsize::new(0);

fn python() -> PathBuf {
    if let Ok(python) = std::env::var("PORTAL_PYTHON") {
        return PathBuf::from(python);
    }
    let venv = root().join(".venv/bin/python");
    assert!(venv.exists(), "{} is missing: run `make setup` (or `scripts/setup.sh`) first", venv.display());
    venv
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The SES sending rate (emails a second) this moto reports: SES's production default.
pub const SES_MAX_SEND_RATE: u32 = 14;

fn start_moto() -> Moto {
    let port = free_port();
    // Never waited for: it lives as long as the test process and ends when its stdin closes.
    #[allow(clippy::zombie_processes)]
    let mut child = Command::new(python())
        .arg(root().join("scripts/local_aws.py"))
        .args(["serve", "--port", &port.to_string(), "--exit-on-stdin-eof"])
        // SES's production default (moto's own is 1 a second): paced invitation emails go
        // out at the rate a new account has, not 14 times slower.
        .args(["--ses-max-send-rate", &SES_MAX_SEND_RATE.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("starting moto server");
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready", "moto server did not start");
    Moto { endpoint: format!("http://127.0.0.1:{port}"), _stdin: Mutex::new(child.stdin.take().unwrap()) }
}

fn server(index: usize) -> &'static str {
    &MOTOS[index % SERVERS].get_or_init(start_moto).endpoint
}

/// The endpoint of this test binary's first moto server, started on first use: for what a test
/// keeps apart from its tables (a KMS key, the event bus). Tables name their own server.
pub fn endpoint() -> &'static str {
    server(0)
}

/// Names of this test's own tables.
pub struct Tables {
    /// The moto server that holds them.
    pub endpoint: &'static str,
    pub client: Client,
    pub contacts: String,
    pub sessions: String,
    pub invitations: String,
    pub outbox: String,
    pub audit: String,
}

/// Creates a fresh set of the template's tables under a unique stack name.
pub fn fresh_tables() -> Tables {
    // The servers take turns, so that tests running side by side use different ones.
    let endpoint = server(NEXT_SERVER.fetch_add(1, Ordering::Relaxed));
    let stack = format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let status = Command::new(python())
        .arg(root().join("scripts/local_aws.py"))
        .args(["create-tables", "--endpoint-url", endpoint, "--stack-name", &stack])
        .stdout(Stdio::null())
        .status()
        .expect("running create-tables");
    assert!(status.success(), "create-tables failed");
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .http_client(portal::aws::https_client())
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "tests"))
        .build();
    Tables {
        endpoint,
        client: Client::from_conf(config),
        contacts: format!("{stack}-contacts"),
        sessions: format!("{stack}-sessions"),
        invitations: format!("{stack}-invitations"),
        outbox: format!("{stack}-outbox"),
        audit: format!("{stack}-audit"),
    }
}

impl Tables {
    /// A portal whose stores are these tables (the edges stay in memory).
    pub fn portal(&self, overrides: &[(&str, &str)]) -> std::sync::Arc<portal::Portal> {
        self.portal_with(overrides, super::edges_in_memory())
    }

    /// A portal whose stores are these tables, with these edges.
    pub fn portal_with(&self, overrides: &[(&str, &str)], edges: portal::Edges) -> std::sync::Arc<portal::Portal> {
        std::sync::Arc::new(portal::Portal::on_dynamodb(self.settings(overrides), &self.client, edges))
    }

    /// Test settings naming these tables.
    pub fn settings(&self, overrides: &[(&str, &str)]) -> portal::config::Settings {
        let mut settings = super::settings(overrides);
        settings.contacts_table = self.contacts.clone();
        settings.sessions_table = self.sessions.clone();
        settings.invitations_table = self.invitations.clone();
        settings.outbox_table = self.outbox.clone();
        settings.audit_table = self.audit.clone();
        settings
    }
}

/// The portal on this test's tables through the AWS clients of `portal::aws` (the production
/// configuration: timeouts, retries), against moto, with the hooks a test puts under it.
pub async fn aws_portal(tables: &Tables, hooks: &portal::aws::SdkHooks, overrides: &[(&str, &str)]) -> portal::Portal {
    let sdk = portal::aws::config_loader(hooks)
        .endpoint_url(tables.endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "tests"))
        .load()
        .await;
    let clients = portal::aws::AwsClients::new(&sdk, hooks);
    let settings = tables.settings(overrides);
    ensure_sender_identity(&clients.ses, tables.endpoint, &settings.email_sender).await;
    portal::Portal::on_aws(settings, &clients)
}

/// SES refuses mail from an address without an email identity; moto keeps identities for the
/// life of the server, so a second creation's error is expected.
async fn ensure_sender_identity(ses: &aws_sdk_sesv2::Client, endpoint: &'static str, sender: &str) {
    static CREATED: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());
    if !CREATED.lock().unwrap().contains(&endpoint) {
        let _ = ses.create_email_identity().email_identity(sender).send().await;
        CREATED.lock().unwrap().push(endpoint);
    }
}
