//! The portal's test support, for its integration tests and benches (never a Lambda binary):
//!
//! - a portal on in-memory adapters with the DynamoDB adapters' rules ([`memory`],
//!   [`memory_imports`], [`memory_passkeys`], [`memory_two_factor`]; [`test_portal`]), and requests
//!   shaped like API Gateway's ([`Req`]);
//! - a moto server per test process and fresh tables per test ([`moto`]);
//! - faults injected under the AWS SDK ([`faults`]);
//! - a software passkey authenticator ([`passkey`]).

pub mod faults;
pub mod memory;
pub mod memory_imports;
pub mod memory_passkeys;
pub mod memory_two_factor;
pub mod moto;
pub mod oidc;
pub mod passkey;
pub mod two_factor;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use lambda_http::{Body, Request};
use memory::{
    ManualClock, MemoryContacts, MemoryEventBus, MemoryInvitations, MemoryMailer, MemoryOutbox, MemorySessions,
};
use memory_imports::{MemoryImports, MemoryPacer};
use memory_passkeys::MemoryPasskeys;
use memory_two_factor::MemoryTwoFactor;
use portal::adapters::sealing::FixedKeySealer;
use portal::config::Settings;
use portal::domain::time::Timestamp;
use portal::ports::SystemClock;
use portal::web::HttpFunction;
use portal::{Edges, Portal};
use serde_json::{Value, json};
use tower::ServiceExt;

pub const BASE: &str = "http://localhost:9000";

/// What tests read of a response: the status, headers and the whole body.
pub type HttpResponse = lambda_http::Response<Body>;

pub struct TestPortal {
    pub portal: Arc<Portal>,
    pub contacts: Arc<MemoryContacts>,
    pub sessions: Arc<MemorySessions>,
    pub invitations: Arc<MemoryInvitations>,
    pub outbox: Arc<MemoryOutbox>,
    pub mailer: Arc<MemoryMailer>,
    pub bus: Arc<MemoryEventBus>,
    pub clock: Arc<ManualClock>,
    pub imports: Arc<MemoryImports>,
    pub pacer: Arc<MemoryPacer>,
    pub passkeys: Arc<MemoryPasskeys>,
    pub two_factor: Arc<MemoryTwoFactor>,
    /// The OpenID Connect provider `example` ([`oidc::PROVIDERS`]).
    pub provider: Arc<oidc::FakeProvider>,
}

pub fn settings(overrides: &[(&str, &str)]) -> Settings {
    let mut map: HashMap<String, String> = HashMap::from([
        ("PORTAL_CONTACTS_TABLE".into(), "contacts".into()),
        ("PORTAL_SESSIONS_TABLE".into(), "sessions".into()),
        ("PORTAL_INVITATIONS_TABLE".into(), "invitations".into()),
        ("PORTAL_OUTBOX_TABLE".into(), "outbox".into()),
        ("PORTAL_AUDIT_TABLE".into(), "audit".into()),
        ("PORTAL_BASE_URL".into(), BASE.into()),
        ("PORTAL_OIDC_PROVIDERS".into(), oidc::PROVIDERS.into()),
    ]);
    for (k, v) in overrides {
        map.insert(k.to_string(), v.to_string());
    }
    Settings::from_lookup(|name| map.get(name).cloned()).expect("test settings")
}

pub fn test_portal(overrides: &[(&str, &str)]) -> TestPortal {
    let outbox = Arc::new(MemoryOutbox::default());
    let contacts = Arc::new(MemoryContacts::with_outbox(outbox.clone()));
    let sessions = Arc::new(MemorySessions::queueing_to(contacts.clone()));
    let clock = Arc::new(ManualClock::at(Timestamp::from_secs(1_800_000_000)));
    let invitations = Arc::new(MemoryInvitations::new(contacts.clone(), outbox.clone()));
    let mailer = Arc::new(MemoryMailer::default());
    let bus = Arc::new(MemoryEventBus::default());
    let imports = Arc::new(MemoryImports::new(contacts.clone(), invitations.clone()));
    let pacer = Arc::new(MemoryPacer::default());
    let passkeys = Arc::new(MemoryPasskeys::new(contacts.clone()));
    let two_factor = Arc::new(MemoryTwoFactor::new(contacts.clone()));
    let provider = Arc::new(oidc::FakeProvider::default());
    let portal = Arc::new(Portal {
        settings: settings(overrides),
        contacts: contacts.clone(),
        sessions: sessions.clone(),
        invitations: invitations.clone(),
        outbox: outbox.clone(),
        mailer: mailer.clone(),
        events: bus.clone(),
        clock: clock.clone(),
        imports: imports.clone(),
        pacer: pacer.clone(),
        passkeys: passkeys.clone(),
        two_factor: two_factor.clone(),
        sealer: Arc::new(FixedKeySealer::default()),
        identity_providers: provider.clone(),
        live: Arc::default(),
    });
    TestPortal {
        portal,
        contacts,
        sessions,
        invitations,
        outbox,
        mailer,
        bus,
        clock,
        imports,
        pacer,
        passkeys,
        two_factor,
        provider,
    }
}

/// The edges of a portal in memory, for tests and benches: mail and events are kept, every send
/// goes at once, the system clock, and a fixed sealing key.
pub fn edges_in_memory() -> Edges {
    Edges {
        mailer: Arc::new(MemoryMailer::default()),
        events: Arc::new(MemoryEventBus::default()),
        clock: Arc::new(SystemClock),
        pacer: Arc::new(MemoryPacer::default()),
        sealer: Arc::new(FixedKeySealer::default()),
    }
}

/// The repository's root (the tests read `events/`, `infra/` and `scripts/` from it).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn events_dir() -> PathBuf {
    root().join("events")
}

/// An event file from `events/` as the Lambda runtime would hand it to the function.
pub fn event(relative: &str) -> Request {
    let path = events_dir().join(relative);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    lambda_http::request::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// An API Gateway HTTP API (2.0) request.
pub struct Req {
    source_ip: &'static str,
    method: &'static str,
    path: String,
    headers: serde_json::Map<String, Value>,
    cookies: Vec<String>,
    body: Option<String>,
}

impl Req {
    pub fn get(path: &str) -> Req {
        Req {
            source_ip: "198.51.100.7",
            method: "GET",
            path: path.into(),
            headers: Default::default(),
            cookies: vec![],
            body: None,
        }
    }

    pub fn post(path: &str) -> Req {
        Req { method: "POST", ..Req::get(path) }
    }

    /// The caller's address as API Gateway reports it (198.51.100.7 unless set).
    pub fn sent_from(mut self, ip: &'static str) -> Req {
        self.source_ip = ip;
        self
    }

    pub fn header(mut self, name: &str, value: &str) -> Req {
        self.headers.insert(name.to_ascii_lowercase(), json!(value));
        self
    }

    pub fn cookie(mut self, name: &str, value: &str) -> Req {
        self.cookies.push(format!("{name}={value}"));
        self
    }

    pub fn html(self) -> Req {
        self.header("accept", "text/html,application/xhtml+xml")
    }

    pub fn json(self, body: Value) -> Req {
        self.raw_json(&body.to_string())
    }

    /// A body of any content type, as sent.
    pub fn raw(mut self, content_type: &str, body: &str) -> Req {
        self.body = Some(body.into());
        self.header("content-type", content_type)
    }

    pub fn raw_json(mut self, body: &str) -> Req {
        self.body = Some(body.into());
        self.header("content-type", "application/json")
    }

    /// A browser form post carrying `csrf` both as cookie and field.
    pub fn form(self, pairs: &[(&str, &str)], csrf: &str) -> Req {
        let mut all: Vec<(&str, &str)> = pairs.to_vec();
        all.push(("csrf_token", csrf));
        self.form_fields(&all).cookie("portal_csrf", csrf)
    }

    /// A form post with exactly these fields and no CSRF cookie.
    pub fn form_fields(mut self, pairs: &[(&str, &str)]) -> Req {
        self.body = Some(serde_urlencoded::to_string(pairs).unwrap());
        self.header("content-type", "application/x-www-form-urlencoded").html()
    }

    pub fn build(self) -> Request {
        let (path, query) = self
            .path
            .split_once('?')
            .map(|(p, q)| (p.to_string(), q.to_string()))
            .unwrap_or((self.path.clone(), String::new()));
        let mut event = json!({
            "version": "2.0",
            "routeKey": "$default",
            "rawPath": path,
            "rawQueryString": query,
            "headers": Value::Object(self.headers),
            "requestContext": {
                "accountId": "123456789012", "apiId": "api", "domainName": "localhost", "domainPrefix": "localhost",
                "http": {"method": self.method, "path": path, "protocol": "HTTP/1.1", "sourceIp": self.source_ip, "userAgent": "test"},
                "requestId": "id", "routeKey": "$default", "stage": "$default", "time": "27/Nov/2026:09:00:00 +0000", "timeEpoch": 1_800_000_000_000i64
            },
            "isBase64Encoded": false
        });
        if !self.cookies.is_empty() {
            event["cookies"] = json!(self.cookies);
        }
        if let Some(body) = self.body {
            event["body"] = json!(body);
        }
        lambda_http::request::from_str(&event.to_string()).expect("a valid API Gateway event")
    }
}

impl TestPortal {
    pub async fn send(&self, function: &dyn HttpFunction, req: Req) -> HttpResponse {
        self.call(function, req.build()).await
    }

    /// Hands a request to the function's router, as `lambda_http::run` does, and reads the whole
    /// answer.
    pub async fn call(&self, function: &dyn HttpFunction, req: Request) -> HttpResponse {
        let response = function.router(self.portal.clone()).oneshot(req).await.expect("routers are infallible");
        buffered(response).await
    }
}

/// The response with its body read into memory.
pub async fn buffered(response: axum::response::Response) -> HttpResponse {
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX).await.expect("a readable body");
    let body = match String::from_utf8(bytes.to_vec()) {
        Ok(text) if text.is_empty() => Body::Empty,
        Ok(text) => Body::Text(text),
        Err(err) => Body::Binary(err.into_bytes()),
    };
    lambda_http::Response::from_parts(parts, body)
}

pub fn body_text(response: &HttpResponse) -> String {
    match response.body() {
        Body::Text(t) => t.clone(),
        Body::Binary(b) => String::from_utf8_lossy(b).into_owned(),
        Body::Empty => String::new(),
        _ => String::new(),
    }
}

pub fn body_json(response: &HttpResponse) -> Value {
    serde_json::from_str(&body_text(response)).unwrap_or_else(|e| panic!("not JSON ({e}): {}", body_text(response)))
}

pub fn set_cookies(response: &HttpResponse) -> Vec<String> {
    response.headers().get_all("set-cookie").iter().map(|v| v.to_str().unwrap().to_string()).collect()
}

/// The value a `Set-Cookie` of the response gives cookie `name`.
pub fn cookie_value(response: &HttpResponse, name: &str) -> Option<String> {
    set_cookies(response)
        .iter()
        .find_map(|c| c.split(';').next()?.strip_prefix(&format!("{name}=")).map(str::to_string))
}

pub fn location(response: &HttpResponse) -> Option<String> {
    response.headers().get("location").map(|v| v.to_str().unwrap().to_string())
}

pub const PASSWORD: &str = "Analytical-Engine-1843-Notes";

pub fn registration(email: &str) -> Value {
    json!({"email": email, "password": PASSWORD, "first_name": "Ada", "last_name": "Lovelace"})
}

impl TestPortal {
    /// Registers `admin@example.com` (accepting the terms, where the site has them) and makes it an
    /// administrator; returns its session token.
    pub async fn administrator_session(&self) -> String {
        let mut body = registration("admin@example.com");
        body["accept_terms"] = json!(true);
        let registered = self.send(&portal::handlers::register::Register, Req::post("/register").json(body)).await;
        assert_eq!(registered.status(), 201, "{}", body_text(&registered));
        let mut admin = self.contacts.all().into_iter().find(|c| c.email.as_str() == "admin@example.com").unwrap();
        admin.roles = vec![portal::domain::ADMINISTRATORS_ROLE.into()];
        self.contacts.put(admin);
        cookie_value(&registered, "portal_session").unwrap()
    }

    /// Prepares and renders every pending email as `send-email` would (requests that name only an
    /// address are resolved then), marking each sent; returns the emails, oldest first.
    pub async fn mailbox(&self) -> Vec<portal::ports::OutgoingEmail> {
        use portal::domain::outbox::MessageStatus;
        use portal::usecases::mail::{self, Prepared};
        let mut sent = Vec::new();
        let mut pending: Vec<_> =
            self.outbox.all().into_iter().filter(|m| m.status == MessageStatus::Pending).collect();
        pending.sort_by_key(|m| m.created_at);
        for message in pending {
            if let Prepared::Send(prepared) = mail::prepare(&self.portal, &message).await.unwrap()
                && let Some(rendered) = portal::email::render(&self.portal.settings, &prepared)
            {
                sent.push(rendered);
            }
            let mut done = message.clone();
            done.status = MessageStatus::Sent;
            self.outbox.insert(done);
        }
        sent
    }
}

/// The token of the `path` link (`/confirm-email`, `/reset-password`) in an email.
pub fn link_in(email: &portal::ports::OutgoingEmail, path: &str) -> String {
    let prefix = format!("{BASE}{path}?token=");
    let line = email
        .text
        .lines()
        .find(|l| l.trim().starts_with(&prefix))
        .unwrap_or_else(|| panic!("no {path} link in {}", email.text));
    line.trim().trim_start_matches(&prefix).to_string()
}

/// Hands a request to a function's router over any portal (the moto-backed ones of the fault
/// tests), as `lambda_http::run` does, and reads the whole answer.
pub async fn send_to(portal: &Arc<Portal>, function: &dyn HttpFunction, req: Req) -> HttpResponse {
    let response = function.router(portal.clone()).oneshot(req.build()).await.expect("routers are infallible");
    buffered(response).await
}

/// A request's source address.
pub fn from(address: &str) -> portal::domain::audit::SourceAddress {
    portal::domain::audit::SourceAddress::new(Some(address.to_string()))
}

/// Registers Ada at `email` through the use case (no HTTP), signed in at once.
pub async fn registered(portal: &Portal, email: &str) {
    use portal::usecases::register::{Registered, Registration, register};
    let registration = Registration {
        email: portal::domain::email::Email::parse(email).unwrap(),
        password: portal::domain::password::Password::choose(PASSWORD.into(), 12, &[]).unwrap(),
        first_name: "Ada".into(),
        last_name: "Lovelace".into(),
        username: None,
        phone: None,
        accept_terms: false,
    };
    let arrival = portal::usecases::door::Arrival::default();
    let outcome = register(portal, &from("198.51.100.7"), registration, arrival).await.unwrap();
    assert!(matches!(outcome, Registered::Entry(portal::usecases::door::Entry::Entered(_))));
}

/// A password sign-in through the door (no HTTP), from the test address.
pub async fn sign_in(
    portal: &impl portal::usecases::door::DoorPorts,
    login: &str,
    password: &str,
) -> Result<portal::usecases::door::Entry, portal::error::PortalError> {
    use portal::usecases::door::{Arrival, Proof, enter};
    let password = portal::domain::password::Password::new(password.into());
    let proof = Proof::Password { login, password, second_factor_code: None };
    enter(portal, &from("198.51.100.7"), proof, Arrival::default(), false).await
}

/// The session an entry began (panics when it awaits a second factor).
pub fn entered(entry: portal::usecases::door::Entry) -> portal::usecases::door::Entered {
    match entry {
        portal::usecases::door::Entry::Entered(entered) => *entered,
        portal::usecases::door::Entry::SecondFactorAwaited { .. } => panic!("a second factor is awaited"),
    }
}

/// The second step of the pending sign-in `pending_token` with `code`, through the door.
pub async fn second_step(
    portal: &impl portal::usecases::door::DoorPorts,
    pending_token: &str,
    code: &str,
) -> Result<portal::usecases::door::Entry, portal::error::PortalError> {
    use portal::usecases::door::{Arrival, Proof, enter};
    let proof = Proof::SecondFactor { pending_token, code };
    enter(portal, &from("198.51.100.7"), proof, Arrival::default(), false).await
}

/// The administrator who imports and invites in the store-level tests.
pub fn administrator() -> portal::domain::contact::Contact {
    use portal::domain::contact::{Contact, NewContact};
    Contact::new(
        NewContact {
            email: portal::domain::email::Email::parse("admin@example.com").unwrap(),
            first_name: "Admin".into(),
            last_name: "Istrator".into(),
            username: None,
            phone: None,
            roles: vec!["Administrators".into()],
            password_hash: None,
        },
        portal::domain::time::Timestamp::from_secs(1_800_000_000),
    )
}
