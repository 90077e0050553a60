//! Faults injected at every AWS call of every write path, against moto (see portal-testkit's faults.rs).
//!
//! For each path, a fault-free run first records the AWS calls of the request (its positions)
//! and what it leaves in the tables. Then, for each position and each fault kind, once for one
//! attempt (the SDK's retry should absorb it) and once for every attempt (the portal must handle
//! it), a fresh case runs the same request with that fault and asserts:
//! - the answer is the fault-free one, or a clean 503 `internal` JSON;
//! - the case's items in the tables are as after the fault-free run, or as before it (besides the
//!   parts a path declares as separate writes, e.g. the session after a registration);
//! - once the fault clears and the stream delivers every queued message twice, each message is
//!   settled and SES was called once per message sent: no email lost, none doubled.
//!
//! Each path writes its rows to `$CARGO_TARGET_TMPDIR/fault-matrix/<path>.tsv`;
//! `scripts/fault_matrix.py` turns them into the README's table.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use futures::StreamExt;
use portal::Portal;
use portal::aws::{MAX_ATTEMPTS, SdkHooks};
use portal::handlers::admin::CreateInvitation;
use portal::handlers::external::ExternalSignIn;
use portal::handlers::profile::Profile;
use portal::handlers::redeem::RedeemInvitation;
use portal::handlers::register::Register;
use portal::handlers::send_email;
use portal::handlers::sign_in::SignIn;
use portal::web::HttpFunction;
use portal_testkit::faults::{Fault, FaultyHttp, Injection, SENDING_SLOT, positions};
use portal_testkit::moto::{Tables, aws_portal, fresh_tables};
use portal_testkit::oidc::FakeProvider;
use portal_testkit::*;
use serde_json::{Value, json};

type Item = std::collections::HashMap<String, AttributeValue>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Path {
    Register,
    FailedSignIn,
    CreateInvitation,
    Resend,
    Revoke,
    RedeemNewCredentials,
    RedeemExistingAccount,
    Profile,
    PasswordChange,
    PasswordReset,
    SendEmail,
    StaffDisable,
    DeleteAccount,
    ExternalSignIn,
}

impl Path {
    fn name(self) -> &'static str {
        match self {
            Path::Register => "register",
            Path::FailedSignIn => "failed sign-in (counting)",
            Path::CreateInvitation => "create invitation",
            Path::Resend => "resend invitation",
            Path::Revoke => "revoke invitation",
            Path::RedeemNewCredentials => "redeem: new credentials",
            Path::RedeemExistingAccount => "redeem: existing account",
            Path::Profile => "profile update",
            Path::PasswordChange => "password change",
            Path::PasswordReset => "password reset",
            Path::SendEmail => "send-email",
            Path::StaffDisable => "staff: disable an account",
            Path::DeleteAccount => "delete an account (then its erasure job)",
            Path::ExternalSignIn => "sign in with a new external identity",
        }
    }

    /// The separately committed steps of the request, as the tables each writes, in order: a
    /// fault between two steps leaves the earlier ones whole and the later ones undone (one step:
    /// whole or nothing). Each step is one atomic write (a transaction or a single-item write);
    /// `-table` deletes the case's items of that table; `table:part`, where a table is written by
    /// several steps, stands for its items whose key prefix or `kind` is `part` only. A step that
    /// begins with [`ALONGSIDE`] is written side by side with the step before it: either may be
    /// done without the other.
    fn steps(self) -> &'static [&'static [&'static str]] {
        match self {
            // The account (contact, guards, token, confirmation email) in one transaction; then the
            // session that signs it in, with its audit entry: without them, the person signs in.
            Path::Register => &[&["contacts", "outbox"], &["sessions", "audit"]],
            // The redemption in one transaction; then the session with its audit entry.
            Path::RedeemNewCredentials | Path::RedeemExistingAccount => {
                &[&["contacts", "invitations", "outbox"], &["sessions", "audit"]]
            }
            // The failure counted; then its audit entry.
            Path::FailedSignIn => &[&["contacts"], &["audit"]],
            // A new invitee becomes a contact first; a retry finds and reuses it.
            Path::CreateInvitation => &[&["contacts"], &["invitations", "outbox", "audit"]],
            // The new password with the new session epoch (which ends every other session), the
            // notice and the audit entry, in one transaction; then this browser's new session.
            Path::PasswordChange => &[&["contacts", "outbox", "audit"], &["sessions"]],
            // The trip's state taken (marked by the take, so that a retried take finds its own); then the
            // account (contact, email and identity guards, its event and `identity_linked` entry)
            // in one transaction; then the session with its `signed_in` entry and the new-sign-in
            // notice, and beside it the browser remembered as a device of the account.
            Path::ExternalSignIn => &[
                &["contacts:OIDCSTATE"],
                &["contacts:CONTACT", "contacts:EMAIL", "contacts:IDENTITY", "outbox:event", "audit:identity_linked"],
                &["sessions", "audit:signed_in", "outbox:new_sign_in_notice"],
                &[ALONGSIDE, "contacts:DEVICE"],
            ],
            _ => &[&["contacts", "sessions", "invitations", "outbox", "audit"]],
        }
    }
}

impl Path {
    /// Whether the request checks a password before its change: the attempt is counted first (one
    /// conditional write, so that parallel guesses cannot pass together) and settled after the
    /// check, so a fault in between leaves one attempt counted. That count is the lockout's
    /// bookkeeping, not part of the change, and the shapes leave its value out. The door counts an
    /// external identity's sign-in the same way (on the account the callback has just made).
    fn takes_an_attempt_first(self) -> bool {
        matches!(self, Path::PasswordChange | Path::RedeemExistingAccount | Path::Profile | Path::ExternalSignIn)
    }
}

/// The first entry of a step written side by side with the step before it (see [`Path::steps`]).
const ALONGSIDE: &str = "&";

/// The shapes a request may leave after a fault: none of its steps, the first, the first two...
/// (and, for a step written alongside the one before, that step without the one before).
fn allowed_after_fault(path: Path, before: &[String], whole: &[String]) -> Vec<Vec<String>> {
    // `table`, or `table:part`: the case's items of the table (those of that key prefix or kind).
    let of_table = |line: &String, entry: &str| {
        let (table, part) = entry.split_once(':').map_or((entry, None), |(t, p)| (t, Some(p)));
        line.starts_with(&format!("{table} "))
            && part.is_none_or(|part| {
                let kind = format!("\"kind\": {:?}", format!("{:?}", AttributeValue::S(part.into())));
                line.starts_with(&format!("{table} {:?}/", Some(part))) || line.contains(&kind)
            })
    };
    let apply = |state: &mut Vec<String>, step: &[&str]| {
        for entry in step {
            match entry.strip_prefix('-') {
                // The table's items of the case are deleted.
                Some(table) => state.retain(|l| !of_table(l, table)),
                // The table's items of the case are as after the whole change.
                None => {
                    state.retain(|l| !of_table(l, entry));
                    state.extend(whole.iter().filter(|l| of_table(l, entry)).cloned());
                }
            }
        }
        state.sort();
    };
    let mut state = before.to_vec();
    let mut allowed = vec![state.clone()];
    // The state before the step before this one.
    let mut earlier = state.clone();
    for step in path.steps() {
        if let Some((&ALONGSIDE, alongside)) = step.split_first() {
            let mut without_the_one_before = earlier.clone();
            apply(&mut without_the_one_before, alongside);
            allowed.push(without_the_one_before);
            earlier = state.clone();
            apply(&mut state, alongside);
        } else {
            earlier = state.clone();
            apply(&mut state, step);
        }
        allowed.push(state.clone());
    }
    allowed
}

/// What one case sends: a request to a function, or a stream batch to send-email.
enum Action {
    Http(Box<dyn HttpFunction + Send + Sync>, Req),
    Stream,
}

struct Setup {
    /// Strings that only this case's items contain (its email, contact and invitation ids).
    markers: Vec<String>,
    /// The key of a guard item the request may create, whose contact (the account it makes, with
    /// its id unknown before) joins the markers once it exists: its sessions, events and entries
    /// name it by its id only.
    follows: Option<String>,
    action: Action,
}

const ADMIN: &str = "fault-admin@example.com";

/// The path's shared state: its tables, an administrator's session, and the OpenID Connect
/// provider `example` of the test settings (`portal_testkit::oidc::PROVIDERS`), faked in memory.
struct World {
    path: Path,
    tables: Tables,
    admin_session: String,
    provider: Arc<FakeProvider>,
}

async fn portal_with(world: &World, faults: &FaultyHttp, case: usize) -> Arc<Portal> {
    let hooks = SdkHooks {
        http_client: Some(faults.shared()),
        initial_backoff: Some(Duration::from_millis(2)),
        retry_partition: Some(format!("{:?}-{case}", world.path)),
    };
    // Every case comes from the same address: its allowances must not be what stops a case.
    let generous = [
        ("PORTAL_EMAILS_PER_ADDRESS_PER_HOUR", "1000000"),
        ("PORTAL_FAILURES_PER_ADDRESS_PER_HOUR", "1000000"),
        ("PORTAL_EMAILS_PER_ACCOUNT_PER_HOUR", "1000"),
    ];
    let portal = aws_portal(&world.tables, &hooks, &generous).await;
    Arc::new(portal.with_identity_providers(world.provider.clone()))
}

async fn registered(portal: &Arc<Portal>, email: &str) -> (String, String) {
    let response = send_to(portal, &Register, Req::post("/register").json(registration(email))).await;
    assert_eq!(response.status(), 201, "{}", body_text(&response));
    let contact_id = body_json(&response)["contact_id"].as_str().unwrap().to_string();
    (contact_id, cookie_value(&response, "portal_session").unwrap())
}

async fn new_world(path: Path) -> World {
    let tables = fresh_tables();
    let faults = FaultyHttp::new();
    let provider = Arc::new(FakeProvider::default());
    let world = World { path, tables, admin_session: String::new(), provider };
    let portal = portal_with(&world, &faults, 0).await;
    let (admin_id, admin_session) = registered(&portal, ADMIN).await;
    world
        .tables
        .client
        .update_item()
        .table_name(&world.tables.contacts)
        .key("pk", AttributeValue::S(format!("CONTACT#{admin_id}")))
        .update_expression("SET #r = :roles")
        .expression_attribute_names("#r", "roles")
        .expression_attribute_values(":roles", AttributeValue::L(vec![AttributeValue::S("Administrators".into())]))
        .send()
        .await
        .unwrap();
    World { admin_session, ..world }
}

/// Marks the administrator's session as just used, so that no request of a case refreshes it
/// (a refresh is an extra call, once a minute, that would shift the positions).
async fn keep_admin_session_fresh(world: &World) {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    world
        .tables
        .client
        .update_item()
        .table_name(&world.tables.sessions)
        .key("pk", AttributeValue::S(portal::domain::secret::digest(&world.admin_session)))
        .update_expression("SET last_seen_at = :now")
        .expression_attribute_values(":now", AttributeValue::N(now.to_string()))
        .send()
        .await
        .unwrap();
}

fn admin_post(world: &World, path: &str, body: Value) -> Req {
    Req::post(path).json(body).cookie("portal_session", &world.admin_session)
}

async fn invite(world: &World, portal: &Arc<Portal>, body: Value) -> String {
    let response = send_to(portal, &CreateInvitation, admin_post(world, "/admin/invitations", body)).await;
    assert_eq!(response.status(), 201, "{}", body_text(&response));
    body_json(&response)["invitation_id"].as_str().unwrap().to_string()
}

/// The secret (code or token) of the case's pending message of `kind`, read from the outbox as
/// the email would carry it.
async fn pending_secret(world: &World, markers: &[String], kind: &str) -> String {
    let items = footprint(&world.tables, markers).await;
    items
        .iter()
        .filter(|(table, item)| {
            table == "outbox" && item.get("kind").and_then(|k| k.as_s().ok()).is_some_and(|k| k == kind)
        })
        .find_map(|(_, item)| item.get("secret").and_then(|s| s.as_s().ok()).cloned())
        .expect("a pending message with its secret")
}

/// The token of the reset link `send-email` would issue for the case's pending reset request. The
/// request is then settled as failed (its email never goes out: the case uses the link directly),
/// so that the count of emails sent stays one per message sent.
async fn reset_link_token(world: &World, portal: &Arc<Portal>, markers: &[String]) -> String {
    use portal::domain::outbox::{Claim, OutboxMessage};
    use portal::usecases::mail::{self, Prepared};
    let items = footprint(&world.tables, markers).await;
    let (_, item) = items
        .iter()
        .find(|(table, item)| {
            table == "outbox" && item.get("kind").and_then(|k| k.as_s().ok()).is_some_and(|k| k == "reset_request")
        })
        .expect("the pending reset request");
    let request: OutboxMessage = serde_dynamo::from_item(item.clone()).unwrap();
    let now = portal.clock.now();
    assert!(matches!(portal.outbox.claim(&request.message_id, now).await.unwrap(), Claim::Leased(_)));
    let Prepared::Send(link) = mail::prepare(portal, &request).await.unwrap() else { panic!("a link for the account") };
    portal.outbox.mark_failed(&request.message_id, "the test uses its link directly", now).await.unwrap();
    link.secret.expect("the link's token").expose().to_string()
}

async fn setup(world: &World, portal: &Arc<Portal>, case: usize) -> Setup {
    let email = format!("case{case}-{}@example.com", world.path.name().len());
    let names = json!({"email": email, "first_name": "Grace", "last_name": "Hopper"});
    let mut markers = vec![email.clone()];
    let mut follows = None;
    let action = match world.path {
        Path::Register => Action::Http(Box::new(Register), Req::post("/register").json(registration(&email))),
        Path::FailedSignIn => {
            markers.push(registered(portal, &email).await.0);
            let wrong = json!({"login": email, "password": "not-the-password-at-all"});
            Action::Http(Box::new(SignIn), Req::post("/signin").json(wrong))
        }
        Path::CreateInvitation => {
            Action::Http(Box::new(CreateInvitation), admin_post(world, "/admin/invitations", names))
        }
        Path::Resend | Path::Revoke => {
            let id = invite(world, portal, names).await;
            markers.push(id.clone());
            let verb = if world.path == Path::Resend { "resend" } else { "revoke" };
            Action::Http(
                Box::new(CreateInvitation),
                admin_post(world, &format!("/admin/invitations/{id}/{verb}"), json!({})),
            )
        }
        Path::RedeemNewCredentials => {
            markers.push(invite(world, portal, names).await);
            let code = pending_secret(world, &markers, "invitation").await;
            let body = json!({"code": code, "password": PASSWORD});
            Action::Http(Box::new(RedeemInvitation), Req::post("/redeem").json(body))
        }
        Path::RedeemExistingAccount => {
            let (contact_id, _) = registered(portal, &email).await;
            markers.push(contact_id.clone());
            markers.push(invite(world, portal, json!({"contact_id": contact_id})).await);
            let code = pending_secret(world, &markers, "invitation").await;
            let body = json!({"code": code, "existing_account": true, "login": email, "password": PASSWORD});
            Action::Http(Box::new(RedeemInvitation), Req::post("/redeem").json(body))
        }
        Path::Profile => {
            let (contact_id, session) = registered(portal, &email).await;
            markers.push(contact_id);
            let body = json!({"first_name": "Amazing", "last_name": "Grace", "phone": "+1 555 0100"});
            Action::Http(Box::new(Profile), Req::post("/profile").json(body).cookie("portal_session", &session))
        }
        Path::PasswordChange => {
            let (contact_id, session) = registered(portal, &email).await;
            markers.push(contact_id);
            let body = json!({"current_password": PASSWORD, "new_password": "Difference-Engine-1822-Plans"});
            Action::Http(
                Box::new(Profile),
                Req::post("/profile/password").json(body).cookie("portal_session", &session),
            )
        }
        Path::PasswordReset => {
            let (contact_id, _) = registered(portal, &email).await;
            markers.push(contact_id);
            let forgot = send_to(portal, &SignIn, Req::post("/forgot-password").json(json!({"email": email}))).await;
            assert_eq!(forgot.status(), 202);
            let token = reset_link_token(world, portal, &markers).await;
            let body = json!({"token": token, "new_password": "Difference-Engine-1822-Plans"});
            Action::Http(Box::new(SignIn), Req::post("/reset-password").json(body))
        }
        Path::SendEmail => {
            markers.push(invite(world, portal, names).await);
            Action::Stream
        }
        // A staff action on a registered account. Deleting it writes the tombstone, the guards
        // released, the audit entry, the event, the notice and the erasure job in one transaction;
        // the job (delivered below, once the fault is gone) then erases the rest, its sessions
        // among them.
        Path::StaffDisable | Path::DeleteAccount => {
            let (contact_id, _) = registered(portal, &email).await;
            markers.push(contact_id.clone());
            let action = if world.path == Path::StaffDisable { "disable" } else { "delete" };
            Action::Http(
                Box::new(CreateInvitation),
                admin_post(world, &format!("/admin/contacts/{contact_id}/{action}"), json!({})),
            )
        }
        // A browser back from the provider with an identity no account has (open registration):
        // its trip begun here, fault-free (the state item the callback takes once; the provider's
        // code works once too: every case makes its own trip); the callback is the request.
        Path::ExternalSignIn => {
            let subject = format!("subject-{case}-{}", world.path.name().len());
            let started = send_to(portal, &ExternalSignIn, Req::get("/signin/external/example")).await;
            assert_eq!(started.status(), 302, "{}", body_text(&started));
            let binding = cookie_value(&started, "portal_external").expect("the binding cookie");
            // The state item names the browser by the digest of its binding only.
            markers.push(portal::domain::secret::digest(&binding));
            markers.push(subject.clone());
            follows = Some(format!("IDENTITY#example#{subject}"));
            let location = location(&started).expect("to the provider");
            let back = world.provider.sign_in(&location, portal_testkit::oidc::identity(&subject, &email));
            let req = Req::get(&back).cookie("portal_external", &binding).header("accept", "application/json");
            Action::Http(Box::new(ExternalSignIn), req)
        }
    };
    Setup { markers, follows, action }
}

/// The case's items in every table (those holding one of its markers), rate counters aside.
async fn footprint(tables: &Tables, markers: &[String]) -> Vec<(String, Item)> {
    marked_items(tables, markers, Scope::Case).await
}

/// The id of the contact that holds the guard item `follows` (see [`Setup::follows`]), if any.
async fn followed_contact(tables: &Tables, follows: Option<&str>) -> Option<String> {
    let pk = follows?;
    let found = tables
        .client
        .get_item()
        .table_name(&tables.contacts)
        .key("pk", AttributeValue::S(pk.to_string()))
        .consistent_read(true)
        .send()
        .await
        .unwrap();
    found.item?.get("contact_id").and_then(|id| id.as_s().ok()).cloned()
}

/// Which of a case's items [`marked_items`] reads.
#[derive(Clone, Copy, PartialEq)]
enum Scope {
    /// Every table, rate counters aside.
    Case,
    /// The outbox only (the messages a delivery round sends).
    Outbox,
    /// Every table with the rate counters (for deleting them: left behind, every later case's
    /// scans would read them again).
    CaseAndCounters,
}

/// The items holding one of the markers, in the tables of `scope`.
async fn marked_items(tables: &Tables, markers: &[String], scope: Scope) -> Vec<(String, Item)> {
    let mut found = Vec::new();
    for (name, table) in [
        ("contacts", &tables.contacts),
        ("sessions", &tables.sessions),
        ("invitations", &tables.invitations),
        ("outbox", &tables.outbox),
        ("audit", &tables.audit),
    ] {
        if scope == Scope::Outbox && name != "outbox" {
            continue;
        }
        let mut start = None;
        loop {
            let page = tables
                .client
                .scan()
                .table_name(table)
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .unwrap();
            for item in page.items.unwrap_or_default() {
                let text = format!("{item:?}").to_lowercase();
                let pk = item.get("pk").and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
                let counted_apart = pk.starts_with("RATE#") && scope != Scope::CaseAndCounters;
                if !counted_apart && markers.iter().any(|m| text.contains(&m.to_lowercase())) {
                    found.push((name.to_string(), item));
                }
            }
            match page.last_evaluated_key {
                Some(key) => start = Some(key),
                None => break,
            }
        }
    }
    found
}

/// Attributes whose values describe a change (the rest: ids, times, digests, differ per case).
const STATE: &[&str] = &[
    "status",
    "delivery",
    "failed_sign_ins",
    "lockouts",
    "email_confirmed",
    "revoked",
    "redemptions",
    "roles",
    "first_name",
    "last_name",
    "phone",
    "kind",
];
/// Attributes of the sending machinery and of retried writes' bookkeeping, not of the change.
const MACHINERY: &[&str] = &[
    "claimed_at",
    "lease_until",
    "lease_token",
    "write_token",
    "attempts",
    "updated_at",
    "last_seen_at",
    "delivered_at",
    "attempted_at",
];

/// The items as a comparable shape: per item its table, key prefixes, attribute names and state.
fn shape(items: &[(String, Item)], leaving_out: &[&str], path: Path) -> Vec<String> {
    let mut shapes: Vec<String> = items
        .iter()
        .filter(|(table, _)| !leaving_out.contains(&table.as_str()))
        .map(|(table, item)| {
            let prefix = |key: &str| {
                item.get(key).and_then(|v| v.as_s().ok()).map(|s| s.split('#').next().unwrap_or("").to_string())
            };
            let pk =
                if ["outbox", "sessions", "audit"].contains(&table.as_str()) { Some("*".into()) } else { prefix("pk") };
            let attributes: BTreeMap<&str, String> = item
                .iter()
                .filter(|(name, _)| !MACHINERY.contains(&name.as_str()))
                .map(|(name, value)| {
                    let counted_apart = name == "failed_sign_ins" && path.takes_an_attempt_first();
                    let shown = if STATE.contains(&name.as_str()) && !counted_apart {
                        format!("{value:?}")
                    } else {
                        String::new()
                    };
                    (name.as_str(), shown)
                })
                .collect();
            format!("{table} {pk:?}/{:?} {attributes:?}", prefix("sk"))
        })
        .collect();
    shapes.sort();
    shapes
}

/// A DynamoDB stream INSERT record for an outbox item, as Lambda delivers it.
fn insert_record(item: &Item, sequence: usize) -> Value {
    let image: serde_dynamo::Item = item.clone().into();
    json!({
        "eventID": format!("event-{sequence}"), "eventName": "INSERT", "eventVersion": "1.1",
        "eventSource": "aws:dynamodb", "awsRegion": "us-east-1",
        "eventSourceARN": "arn:aws:dynamodb:us-east-1:123456789012:table/portal-outbox/stream/2026-11-27T00:00:00.000",
        "dynamodb": {"ApproximateCreationDateTime": 1_800_000_000.0, "Keys": {"pk": item["pk"].clone().as_s().map(|s| json!({"S": s})).unwrap()},
            "NewImage": serde_json::to_value(&image).unwrap(), "SequenceNumber": sequence.to_string(), "SizeBytes": 256, "StreamViewType": "NEW_IMAGE"}
    })
}

async fn deliver(portal: &Portal, records: &[Value]) -> usize {
    let event: aws_lambda_events::event::dynamodb::Event =
        serde_json::from_value(json!({ "Records": records })).unwrap();
    send_email::handle(portal, event).await.batch_item_failures.len()
}

/// The outcome of one case: the answer (`ok`: the fault-free one; `503`) and the emails.
#[derive(Debug)]
struct Outcome {
    answer: &'static str,
    messages: usize,
    emails: u32,
}

/// Runs one case (`injection` None: the fault-free run) and checks it; returns its outcome, the
/// positions of the measured action, and the shape after the action.
async fn run_case(
    world: &World,
    case: usize,
    injection: Option<Injection>,
    reference: Option<&Reference>,
) -> (Outcome, Vec<(String, usize)>, Vec<String>) {
    let faults = FaultyHttp::new();
    let portal = portal_with(world, &faults, case).await;
    let setup = setup(world, &portal, case).await;
    keep_admin_session_fresh(world).await;
    faults.forget_calls();
    let emails_before = faults.emails_sent();
    let what = format!("{} case {case} {injection:?}", world.path.name());
    if let Some(injection) = injection.clone() {
        faults.inject(injection);
    }
    let mut answer = "ok";
    match setup.action {
        Action::Http(function, req) => {
            let response = send_to(&portal, function.as_ref(), req).await;
            let status = response.status().as_u16();
            if let Some(reference) = reference.filter(|r| r.status != status) {
                assert_eq!(status, 503, "{what}: neither the fault-free answer {} nor 503", reference.status);
                assert_eq!(body_json(&response)["error"], "internal", "{what}");
                answer = "503";
            }
            if reference.is_none() {
                // The fault-free answer, recorded.
                answer = Box::leak(status.to_string().into_boxed_str());
            }
        }
        Action::Stream => {
            let items = footprint(&world.tables, &setup.markers).await;
            let records: Vec<Value> = items
                .iter()
                .filter(|(t, _)| t == "outbox")
                .enumerate()
                .map(|(i, (_, it))| insert_record(it, i + 1))
                .collect();
            if deliver(&portal, &records).await > 0 {
                answer = "retry";
            }
        }
    }
    let positions = positions(&faults.operations());
    if let Some(injection) = &injection {
        assert!(faults.injected() > 0, "{what}: the fault was never injected");
        assert!(injection.attempts > 0);
    }
    faults.clear();
    let mut case_markers = setup.markers.clone();
    case_markers.extend(followed_contact(&world.tables, setup.follows.as_deref()).await);
    let after = footprint(&world.tables, &case_markers).await;
    let after_shape = shape(&after, &[], world.path);
    if let Some(reference) = reference
        && world.path != Path::SendEmail
    {
        let whole = after_shape == reference.after;
        let allowed = allowed_after_fault(world.path, &reference.before, &reference.after);
        assert!(
            whole || (answer == "503" && allowed.contains(&after_shape)),
            "{what}: half a change ({answer})\nafter: {after_shape:#?}\nwhole: {:#?}\nbefore: {:#?}",
            reference.after,
            reference.before
        );
    }
    // The fault is gone; the stream delivers every message of the case, then again. Settling an
    // invitation's email queues its delivery's event (a new item: a new stream record), delivered
    // in a second round.
    let mut outbox_items: Vec<(String, Item)> = after.clone();
    // A message names its recipient only until it settles (then its address goes): it is followed
    // by its id from here on.
    let mut markers = case_markers;
    for round in 0..2 {
        markers.extend(outbox_items.iter().filter(|(t, _)| t == "outbox").filter_map(|(_, i)| pk_of(i)));
        let outbox: Vec<&Item> = outbox_items.iter().filter(|(t, _)| t == "outbox").map(|(_, i)| i).collect();
        let records: Vec<Value> =
            outbox.iter().enumerate().map(|(i, it)| insert_record(it, 100 * (round + 1) + i)).collect();
        let mut left = deliver(&portal, &records).await;
        for _ in 0..3 {
            if left == 0 {
                break;
            }
            left = deliver(&portal, &records).await;
        }
        assert_eq!(left, 0, "{what}: records still failing once the fault cleared");
        assert_eq!(deliver(&portal, &records).await, 0, "{what}: a redelivery");
        // The next round needs the messages only; the last round's items are those the case
        // leaves, in every table, its rate counters too, to delete.
        let scope = if round == 0 { Scope::Outbox } else { Scope::CaseAndCounters };
        outbox_items = marked_items(&world.tables, &markers, scope).await;
    }
    let settled = outbox_items;
    let status_of = |i: &Item| i.get("status").and_then(|s| s.as_s().ok()).cloned().unwrap_or_default();
    let statuses: Vec<String> = settled.iter().filter(|(t, _)| t == "outbox").map(|(_, i)| status_of(i)).collect();
    assert!(statuses.iter().all(|s| s == "sent" || s == "failed"), "{what}: unsettled messages {statuses:?}");
    // Emails only: an event item is marked sent once published on the bus, an erasure job once done.
    let is_event = |i: &Item| i.get("kind").and_then(|k| k.as_s().ok()).is_some_and(|k| k == "event" || k == "erasure");
    let sent = settled.iter().filter(|(t, i)| t == "outbox" && !is_event(i) && status_of(i) == "sent").count() as u32;
    let emails = faults.emails_sent() - emails_before;
    assert_eq!(
        emails, sent,
        "{what}: SES calls that sent vs messages sent: one email per message, none lost or doubled"
    );
    let messages = statuses.len();
    // The case's items go, so that the tables stay small for the scans of the next cases.
    for (table, item) in settled {
        let name = match table.as_str() {
            "contacts" => &world.tables.contacts,
            "sessions" => &world.tables.sessions,
            "invitations" => &world.tables.invitations,
            _ => &world.tables.outbox,
        };
        let key = item.into_iter().filter(|(k, _)| k == "pk" || k == "sk").collect();
        world.tables.client.delete_item().table_name(name).set_key(Some(key)).send().await.unwrap();
    }
    (Outcome { answer, messages, emails }, positions, after_shape)
}

fn pk_of(item: &Item) -> Option<String> {
    item.get("pk").and_then(|pk| pk.as_s().ok()).cloned()
}

struct Reference {
    status: u16,
    before: Vec<String>,
    after: Vec<String>,
}

/// The DynamoDB operations that write: each may commit and lose its answer.
const WRITES: [&str; 4] = ["PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems"];

async fn matrix(path: Path) {
    let world = new_world(path).await;
    // The fault-free run: its positions, answer and shapes.
    let faults = FaultyHttp::new();
    let portal = portal_with(&world, &faults, 0).await;
    let dry = setup(&world, &portal, 0).await;
    let before = shape(&footprint(&world.tables, &dry.markers).await, &[], world.path);
    drop(portal);
    let (outcome, positions, after) = run_case(&world, 1, None, None).await;
    let reference = Reference { status: outcome.answer.parse().unwrap_or(0), before: before.clone(), after };
    // The before shape of case 1 is the same as case 0's (same setup).
    let mut cases = Vec::new();
    for (operation, call) in &positions {
        // Only a send's first try for a sending slot happens in every run; the further tries
        // depend on timing.
        if operation == SENDING_SLOT && *call > 1 {
            continue;
        }
        let mut kinds = if operation == "SendEmail" { Fault::SES.to_vec() } else { Fault::DYNAMODB.to_vec() };
        if operation == "TransactWriteItems" {
            kinds.push(Fault::TransactionThrottled);
        }
        if WRITES.contains(&operation.as_str()) || operation == SENDING_SLOT {
            kinds.push(Fault::AnswerLost);
        }
        for fault in kinds {
            // Every kind for every attempt (what the portal must handle); for one attempt (what the
            // SDK's retry absorbs, the same way for each retryable kind) throttling, and SES's
            // refusal, which is not retried.
            let once = matches!(fault, Fault::Throttling | Fault::SesThrottling | Fault::SesMessageRejected);
            // Not retried by the SDK: one attempt is every attempt. A lost answer is retried by
            // the SDK, and its retry must find the write done: one attempt is the case.
            if matches!(fault, Fault::TransactionThrottled | Fault::AnswerLost) {
                cases.push(Injection { operation: operation.clone(), call: *call, fault, attempts: 1 });
                continue;
            }
            for attempts in [1, MAX_ATTEMPTS] {
                if attempts == MAX_ATTEMPTS || once {
                    cases.push(Injection { operation: operation.clone(), call: *call, fault, attempts });
                }
            }
        }
    }
    // FAULT_MATRIX_ONLY=<fault name> runs that kind alone (a quick look at one kind).
    if let Ok(only) = std::env::var("FAULT_MATRIX_ONLY") {
        cases.retain(|case| case.fault.name() == only);
    }
    let world = &world;
    let reference = &reference;
    let results: Vec<(Injection, Outcome)> = futures::stream::iter(cases.into_iter().enumerate())
        .map(|(i, injection)| async move {
            let (outcome, _, _) = run_case(world, 10 + i, Some(injection.clone()), Some(reference)).await;
            (injection, outcome)
        })
        // Cases wait on moto much of the time: six at once keep both cores of the machine busy.
        .buffer_unordered(6)
        .collect()
        .await;
    // One row per case, for the README's table.
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("fault-matrix");
    std::fs::create_dir_all(&dir).unwrap();
    let mut rows = format!("# {}\tfault-free: {} ({} messages)\n", path.name(), reference.status, outcome.messages);
    for (injection, outcome) in &results {
        rows += &format!(
            "{}\t{}#{}\t{}\t{}\t{}\t{}\t{}\n",
            path.name(),
            injection.operation,
            injection.call,
            injection.fault.name(),
            if injection.attempts == 1 { "one attempt" } else { "every attempt" },
            outcome.answer,
            outcome.messages,
            outcome.emails
        );
    }
    std::fs::write(dir.join(format!("{path:?}.tsv")), rows).unwrap();
    assert!(!results.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn faults_in_register() {
    matrix(Path::Register).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn faults_in_failed_sign_in_counting() {
    matrix(Path::FailedSignIn).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn faults_in_create_invitation() {
    matrix(Path::CreateInvitation).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn faults_in_resend() {
    matrix(Path::Resend).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn faults_in_revoke() {
    matrix(Path::Revoke).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn faults_in_redeem_with_new_credentials() {
    matrix(Path::RedeemNewCredentials).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn faults_in_redeem_onto_an_existing_account() {
    matrix(Path::RedeemExistingAccount).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn faults_in_profile_update() {
    matrix(Path::Profile).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn faults_in_password_change() {
    matrix(Path::PasswordChange).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn faults_in_password_reset() {
    matrix(Path::PasswordReset).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn faults_in_send_email() {
    matrix(Path::SendEmail).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn faults_in_a_staff_action() {
    matrix(Path::StaffDisable).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn faults_in_deleting_an_account() {
    matrix(Path::DeleteAccount).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn faults_in_signing_in_with_a_new_external_identity() {
    matrix(Path::ExternalSignIn).await;
}
