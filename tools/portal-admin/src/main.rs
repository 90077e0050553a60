//! Operator commands for a portal deployment, run against whatever AWS endpoint and tables the
//! environment names (the same settings the functions read).
//!
//! `portal-admin create-admin --email <email> [--first-name N] [--last-name N] [--stack NAME]`,
//! password on stdin: creates a contact with the `Administrators` web role, the first
//! administrator of a deployment. `--stack` reads the table names from that CloudFormation stack's
//! outputs (DescribeStacks) instead of the `PORTAL_*_TABLE` variables.
//!
//! `portal-admin outbox status [--stale-after 10m]`: the outbox by status and kind, and every
//! unsent message (pending, leased, failed) with its age, attempts and error; no secret, no address.
//! `portal-admin outbox retry (--id <message id> | --older-than 10m)`: queues those unsent messages
//! again (as new messages, which the stream delivers to `send-email`).
//! `portal-admin outbox dlq [--retry] < messages.json`: resolves the failure queue's records (the
//! output of `aws sqs receive-message`) to the unsent outbox messages their batches held, and with
//! `--retry` queues them again.
//! `portal-admin account <action> --contact <contact id or email>`: the staff actions of the
//! contact's page (`disable`, `enable`, `unlock`, `sign-out-everywhere`, `reset-password
//! [--block-current-password]`, `reset-two-factor`, `delete`, `roles --roles <a,b> [--account-id <id>]`), through
//! the same use case, audited with an operator as the actor.
//! `portal-admin audit [--contact <id>] [--actor <id>] [--kind <kind>] [--limit <n>]`: the audit
//! trail, newest first, one entry a line.
//! `portal-admin backfill-lists`: gives contacts and invitations stored before the administrators'
//! list indexes their list keys (a one-off after upgrading; it scans both tables).

use std::collections::HashMap;
use std::io::BufRead;
use std::process::ExitCode;

use anyhow::{Context, anyhow};

use aws_sdk_cloudformation::types::Output;
use portal::Portal;
use portal::app::sdk_config;
use portal::aws::{AwsClients, SdkHooks};
use portal::config::Settings;
use portal::domain::ADMINISTRATORS_ROLE;
use portal::domain::audit::{AuditQuery, SourceAddress};
use portal::domain::contact::Login;
use portal::domain::contact::{Contact, NewContact};
use portal::domain::email::Email;
use portal::domain::ids::{ContactId, MessageId};
use portal::domain::listing::PageRequest;
use portal::domain::password::{Password, hash_password};
use portal::domain::text::parse_name;
use portal::domain::time::rfc3339;
use portal::ports::CreateContactError;
use portal::usecases::outbox_repair::{self, RetryOutcome, Selection};
use portal::usecases::staff::{self, Staff, StaffAction};

const USAGE: &str =
    "usage: portal-admin create-admin --email <email> [--first-name <name>] [--last-name <name>] [--stack <name>]
         The password is read from standard input (one line). --stack: the deployed stack whose
         tables to use (its outputs name them); without it, PORTAL_CONTACTS_TABLE and the others.
       portal-admin outbox status [--stale-after <age, e.g. 10m>]
       portal-admin outbox retry (--id <message id> | --older-than <age, e.g. 10m>)
       portal-admin outbox dlq [--retry] < failure-queue-messages.json
       portal-admin account (disable | enable | unlock | sign-out-everywhere | reset-two-factor | delete) --contact <id or email>
       portal-admin account reset-password [--block-current-password] --contact <id or email>
       portal-admin account roles --roles <role,role> [--account-id <id>] --contact <id or email>
       portal-admin audit [--contact <id>] [--actor <id>] [--kind <kind>] [--limit <n>]
       portal-admin backfill-lists";

enum Command {
    CreateAdmin(CreateAdmin),
    OutboxStatus { stale_after_secs: i64 },
    OutboxRetry(Selection),
    OutboxDlq { retry: bool },
    BackfillLists,
    Account { contact: String, action: StaffAction },
    Audit { query: AuditQuery, limit: usize },
}

/// `account <action> [options]`: the action and the contact it names (an id or an email).
fn parse_account(options: &[String]) -> Result<Command, Usage> {
    let Some((action, rest)) = options.split_first() else { return Err(Usage(USAGE.into())) };
    let mut contact = None;
    let (mut block, mut roles, mut account_id) = (false, None, None);
    let mut rest = rest.iter();
    while let Some(option) = rest.next() {
        if option == "--block-current-password" {
            block = true;
            continue;
        }
        let value = rest.next().ok_or_else(|| Usage(format!("{option} needs a value\n{USAGE}")))?.clone();
        match option.as_str() {
            "--contact" => contact = Some(value),
            "--roles" => roles = Some(value),
            "--account-id" => account_id = Some(value),
            other => return Err(Usage(format!("unknown option {other:?}\n{USAGE}"))),
        }
    }
    let contact = contact.ok_or_else(|| Usage(format!("--contact is required\n{USAGE}")))?;
    let action = match action.as_str() {
        "disable" => StaffAction::Disable,
        "enable" => StaffAction::Enable,
        "unlock" => StaffAction::Unlock,
        "sign-out-everywhere" => StaffAction::SignOutEverywhere,
        "reset-password" => StaffAction::ResetPassword { block_current_password: block },
        "reset-two-factor" => StaffAction::ResetTwoFactor,
        "delete" => StaffAction::Delete,
        "roles" => {
            let roles = roles.ok_or_else(|| Usage(format!("roles needs --roles (empty for none)\n{USAGE}")))?;
            let roles = roles
                .split(',')
                .map(str::trim)
                .filter(|r| !r.is_empty())
                .map(|r| parse_name(r).map_err(|e| Usage(format!("role {r:?} {e}"))));
            StaffAction::Roles { roles: roles.collect::<Result<_, _>>()?, account_id }
        }
        other => return Err(Usage(format!("unknown account action {other:?}\n{USAGE}"))),
    };
    Ok(Command::Account { contact, action })
}

/// `audit [--contact <id>] [--actor <id>] [--kind <kind>] [--limit <n>]`.
fn parse_audit(options: &[String]) -> Result<Command, Usage> {
    let mut query = AuditQuery::default();
    let mut limit = 50;
    let mut rest = options.iter();
    while let Some(option) = rest.next() {
        let value = rest.next().ok_or_else(|| Usage(format!("{option} needs a value\n{USAGE}")))?.clone();
        match option.as_str() {
            "--contact" => query.contact_id = Some(ContactId::from(value)),
            "--actor" => query.actor_id = Some(ContactId::from(value)),
            "--kind" => query.kind = Some(value),
            "--limit" => {
                limit =
                    value.parse().ok().filter(|n| (1..=portal::domain::listing::MAX_LIMIT).contains(n)).ok_or_else(
                        || Usage(format!("--limit must be from 1 to {}", portal::domain::listing::MAX_LIMIT)),
                    )?
            }
            other => return Err(Usage(format!("unknown option {other:?}\n{USAGE}"))),
        }
    }
    Ok(Command::Audit { query, limit })
}

/// An age such as `90s`, `10m`, `2h` or `1d`, in seconds.
fn parse_age(text: &str) -> Result<i64, Usage> {
    let unit = text.chars().last().filter(|c| c.is_ascii_alphabetic());
    let digits = if unit.is_some() { &text[..text.len() - 1] } else { text };
    let scale = match unit {
        None | Some('s') => 1,
        Some('m') => 60,
        Some('h') => 3600,
        Some('d') => 86_400,
        Some(_) => return Err(Usage(format!("{text:?} is not an age like 90s, 10m, 2h or 1d"))),
    };
    digits
        .parse::<i64>()
        .ok()
        .filter(|n| *n >= 0)
        .map(|n| n * scale)
        .ok_or_else(|| Usage(format!("{text:?} is not an age like 90s, 10m, 2h or 1d")))
}

fn parse_outbox(options: &[String]) -> Result<Command, Usage> {
    let Some((action, rest)) = options.split_first() else { return Err(Usage(USAGE.into())) };
    if action == "dlq" {
        return match rest {
            [] => Ok(Command::OutboxDlq { retry: false }),
            [flag] if flag == "--retry" => Ok(Command::OutboxDlq { retry: true }),
            _ => Err(Usage(format!("outbox dlq takes only --retry\n{USAGE}"))),
        };
    }
    let pairs: Vec<(&str, &str)> = rest
        .chunks(2)
        .map(|pair| match pair {
            [option, value] => Ok((option.as_str(), value.as_str())),
            [option] => Err(Usage(format!("{option} needs a value\n{USAGE}"))),
            _ => unreachable!("chunks of two"),
        })
        .collect::<Result<_, _>>()?;
    match (action.as_str(), pairs.as_slice()) {
        ("status", []) => Ok(Command::OutboxStatus { stale_after_secs: 600 }),
        ("status", [("--stale-after", age)]) => Ok(Command::OutboxStatus { stale_after_secs: parse_age(age)? }),
        ("retry", [("--id", id)]) => Ok(Command::OutboxRetry(Selection::Id(MessageId::from(*id)))),
        ("retry", [("--older-than", age)]) => Ok(Command::OutboxRetry(Selection::OlderThan { secs: parse_age(age)? })),
        ("retry", _) => Err(Usage(format!("outbox retry takes --id <message id> or --older-than <age>\n{USAGE}"))),
        _ => Err(Usage(format!("unknown outbox command {:?}\n{USAGE}", options.join(" ")))),
    }
}

/// The stack outputs (infra/template.yaml) that name the tables, and the setting each one gives.
const TABLE_OUTPUTS: [(&str, &str); 5] = [
    ("ContactsTableName", "PORTAL_CONTACTS_TABLE"),
    ("SessionsTableName", "PORTAL_SESSIONS_TABLE"),
    ("InvitationsTableName", "PORTAL_INVITATIONS_TABLE"),
    ("OutboxTableName", "PORTAL_OUTBOX_TABLE"),
    ("AuditTableName", "PORTAL_AUDIT_TABLE"),
];

struct CreateAdmin {
    email: String,
    first_name: String,
    last_name: String,
    stack: Option<String>,
}

/// A command line that cannot be run, with what to tell the operator.
struct Usage(String);

fn parse_args(args: &[String]) -> Result<Command, Usage> {
    let Some((command, options)) = args.split_first() else { return Err(Usage(USAGE.into())) };
    if command == "outbox" {
        return parse_outbox(options);
    }
    if command == "account" {
        return parse_account(options);
    }
    if command == "audit" {
        return parse_audit(options);
    }
    if command == "backfill-lists" {
        return match options {
            [] => Ok(Command::BackfillLists),
            _ => Err(Usage(format!("backfill-lists takes no options\n{USAGE}"))),
        };
    }
    if command != "create-admin" {
        return Err(Usage(format!("unknown command {command:?}\n{USAGE}")));
    }
    let mut parsed = CreateAdmin {
        email: String::new(),
        first_name: "Portal".into(),
        last_name: "Administrator".into(),
        stack: None,
    };
    let mut rest = options.iter();
    while let Some(option) = rest.next() {
        let value = rest.next().ok_or_else(|| Usage(format!("{option} needs a value\n{USAGE}")))?.clone();
        match option.as_str() {
            "--email" => parsed.email = value,
            "--first-name" => parsed.first_name = value,
            "--last-name" => parsed.last_name = value,
            "--stack" => parsed.stack = Some(value),
            other => return Err(Usage(format!("unknown option {other:?}\n{USAGE}"))),
        }
    }
    if parsed.email.is_empty() {
        return Err(Usage(format!("--email is required\n{USAGE}")));
    }
    Ok(Command::CreateAdmin(parsed))
}

async fn outbox_status(stale_after_secs: i64) -> anyhow::Result<()> {
    let portal = Portal::from_environment().await?;
    let messages = portal.outbox.list().await?;
    let report = outbox_repair::status(&messages, portal.clock.now(), stale_after_secs);
    println!("{:<10} {:<16} {:>6}", "status", "kind", "count");
    for ((status, kind), count) in &report.counts {
        println!("{status:<10} {kind:<16} {count:>6}");
    }
    let stale = report.unsent.iter().filter(|m| m.stale).count();
    println!("\n{} unsent, {stale} stale (unsent for {stale_after_secs} s or more):", report.unsent.len());
    for m in &report.unsent {
        println!(
            "{} {:<14} {:<8} age {:>7} s  attempts {}  invitation {}{}{}",
            m.message_id,
            m.kind,
            m.status,
            m.age_secs,
            m.attempts,
            m.invitation_id.as_deref().unwrap_or("-"),
            if m.stale { "  STALE" } else { "" },
            m.error.as_deref().map(|e| format!("  error: {e}")).unwrap_or_default()
        );
    }
    Ok(())
}

/// The failure queue's records (on stdin, as `aws sqs receive-message` prints them or one body per
/// document) resolved to the outbox messages their batches held; with `retry`, those queued again.
async fn outbox_dlq(retry: bool) -> anyhow::Result<()> {
    let mut input = String::new();
    std::io::Read::read_to_string(&mut std::io::stdin().lock(), &mut input).context("reading stdin")?;
    let batches = outbox_repair::failed_batches(&input)?;
    let portal = Portal::from_environment().await?;
    let messages = portal.outbox.list().await?;
    for batch in &batches {
        let held = outbox_repair::messages_of(batch, &messages);
        println!(
            "{} sequence numbers {}..{} ({} records): {} unsent message(s)",
            batch.shard_id,
            batch.start_sequence_number,
            batch.end_sequence_number,
            batch.batch_size,
            held.len()
        );
        for message in held {
            println!("  {} {:?} {:?} attempts {}", message.message_id, message.kind, message.status, message.attempts);
            if retry {
                outbox_retry(Selection::Id(message.message_id.clone())).await?;
            }
        }
    }
    if !retry && !batches.is_empty() {
        println!("run again with --retry to queue them again");
    }
    Ok(())
}

async fn backfill_lists() -> anyhow::Result<()> {
    let settings = Settings::from_env()?;
    let hooks = SdkHooks::default();
    let sdk = sdk_config(&hooks).await;
    let clients = AwsClients::new(&sdk, &hooks);
    let done = portal::adapters::dynamodb_listing::backfill_list_keys(
        &clients.dynamodb,
        &settings.contacts_table,
        &settings.invitations_table,
    )
    .await?;
    println!(
        "list keys given to {} contact(s) and {} invitation(s); {} changed meanwhile (run again for those)",
        done.contacts, done.invitations, done.changed_meanwhile
    );
    Ok(())
}

/// Takes a staff action on the contact `named` (an id, or the email of one) as an operator.
async fn account(named: &str, action: StaffAction) -> anyhow::Result<()> {
    let portal = Portal::from_environment().await?;
    let contact = match Email::parse(named) {
        Ok(email) => portal.contacts.find_by_login(&Login::of_email(&email)).await?,
        Err(_) => portal.contacts.get(&ContactId::from(named)).await?,
    }
    .ok_or_else(|| anyhow!("no contact {named:?}"))?;
    let source = SourceAddress::new(Some("portal-admin".into()));
    let name = action.name();
    let changed = staff::act(&portal, &Staff::operator(), &contact.contact_id, action, &source)
        .await
        .map_err(|e| anyhow!("{name}: {e}"))?;
    println!(
        "{name}: done for {} ({}); sign-in {}, roles [{}], account {}",
        changed.contact_id,
        changed.email,
        if changed.login_disabled { "disabled" } else { "enabled" },
        changed.roles.join(", "),
        changed.account_id.as_deref().unwrap_or("none")
    );
    Ok(())
}

/// Prints the audit trail's latest `limit` entries matching `query`, newest first.
async fn audit(query: AuditQuery, limit: usize) -> anyhow::Result<()> {
    let portal = Portal::from_environment().await?;
    let page = staff::audit_trail(&portal, &Staff::operator(), &query, &PageRequest::first(limit))
        .await
        .map_err(|e| anyhow!("reading the audit trail: {e}"))?;
    for entry in page.items {
        let detail: Vec<String> = entry.detail.iter().map(|(k, v)| format!("{k}={v}")).collect();
        println!(
            "{}  {:<26} contact={} actor={} ip={} {}",
            rfc3339(entry.at),
            entry.kind,
            entry.contact_id.as_ref().map_or("-", |id| id.as_str()),
            entry.actor_id.as_ref().map_or("-", |id| id.as_str()),
            entry.ip,
            detail.join(" ")
        );
    }
    Ok(())
}

async fn outbox_retry(selection: Selection) -> anyhow::Result<()> {
    let portal = Portal::from_environment().await?;
    let outcomes =
        outbox_repair::retry(portal.outbox.as_ref(), &portal.settings, &selection, portal.clock.now()).await?;
    if outcomes.is_empty() {
        println!("nothing to retry");
    }
    for (message_id, outcome) in outcomes {
        let said = match outcome {
            RetryOutcome::Requeued(copy) => format!("queued again as {copy}"),
            RetryOutcome::AlreadySent => "already sent".into(),
            RetryOutcome::BeingSent => "being sent right now (a live lease); left alone".into(),
            RetryOutcome::SecretGone => {
                "its code, link and address are gone (removed when it failed): resend the invitation, or ask for a new link".into()
            }
            RetryOutcome::ChangedMeanwhile => "changed meanwhile; left alone".into(),
        };
        println!("{message_id}: {said}");
    }
    Ok(())
}

async fn create_admin(command: CreateAdmin) -> anyhow::Result<ContactId> {
    let email = Email::parse(&command.email).map_err(|e| anyhow!("email {e}"))?;
    let first_name = parse_name(&command.first_name).map_err(|e| anyhow!("first name {e}"))?;
    let last_name = parse_name(&command.last_name).map_err(|e| anyhow!("last name {e}"))?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).context("reading the password from stdin")?;
    let raw = line.trim_end_matches(['\r', '\n']).to_string();
    let hooks = SdkHooks::default();
    let sdk = sdk_config(&hooks).await;
    let tables = match &command.stack {
        Some(stack) => tables_of_stack(&sdk, stack).await?,
        None => HashMap::new(),
    };
    // The stack's table names, else the environment (the same variables as the functions).
    let settings = Settings::from_lookup(|name| tables.get(name).cloned().or_else(|| std::env::var(name).ok()))?;
    let portal = Portal::on_aws(settings, &AwsClients::new(&sdk, &hooks));
    let password =
        Password::choose(raw, portal.settings.password_min_length, &[email.as_str(), &first_name, &last_name])
            .map_err(|reason| anyhow!("password {reason}"))?;
    let password_hash = hash_password(password).await?;
    let mut contact = Contact::new(
        NewContact {
            email,
            first_name,
            last_name,
            username: None,
            phone: None,
            roles: vec![ADMINISTRATORS_ROLE.to_string()],
            password_hash: Some(password_hash),
        },
        portal.clock.now(),
    );
    // The operator vouches for this address.
    contact.email_confirmed = true;
    match portal.contacts.create(&contact).await {
        Ok(()) => Ok(contact.contact_id),
        Err(CreateContactError::EmailTaken) => {
            Err(anyhow!("a contact with the email {} already exists", contact.email))
        }
        Err(err) => Err(err.into()),
    }
}

/// The table settings of a deployed stack, from its outputs.
async fn tables_of_stack(sdk: &aws_config::SdkConfig, stack: &str) -> anyhow::Result<HashMap<String, String>> {
    let described = aws_sdk_cloudformation::Client::new(sdk)
        .describe_stacks()
        .stack_name(stack)
        .send()
        .await
        .with_context(|| format!("reading the outputs of the stack {stack:?} (CloudFormation DescribeStacks)"))?;
    let found = described.stacks().first().ok_or_else(|| anyhow!("no stack named {stack:?}"))?;
    table_settings(found.outputs()).with_context(|| format!("the stack {stack:?}"))
}

/// `PORTAL_*_TABLE` settings from a stack's outputs; every table output must be there.
fn table_settings(outputs: &[Output]) -> anyhow::Result<HashMap<String, String>> {
    let by_key: HashMap<&str, &str> =
        outputs.iter().filter_map(|o| Some((o.output_key()?, o.output_value()?))).collect();
    TABLE_OUTPUTS
        .iter()
        .map(|(output, variable)| match by_key.get(output) {
            Some(value) if !value.is_empty() => Ok((variable.to_string(), value.to_string())),
            _ => Err(anyhow!("has no output {output} (is it a portal stack, deployed from infra/template.yaml?)")),
        })
        .collect()
}

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let command = match parse_args(&args) {
        Ok(command) => command,
        Err(Usage(message)) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    let done = match command {
        Command::CreateAdmin(command) => {
            create_admin(command).await.map(|contact_id| println!("created administrator {contact_id}"))
        }
        Command::OutboxStatus { stale_after_secs } => outbox_status(stale_after_secs).await,
        Command::OutboxRetry(selection) => outbox_retry(selection).await,
        Command::OutboxDlq { retry } => outbox_dlq(retry).await,
        Command::BackfillLists => backfill_lists().await,
        Command::Account { contact, action } => account(&contact, action).await,
        Command::Audit { query, limit } => audit(query, limit).await,
    };
    match done {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("portal-admin: {err:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_string).collect()
    }

    fn output(key: &str, value: &str) -> Output {
        Output::builder().output_key(key).output_value(value).build()
    }

    #[test]
    fn the_stack_outputs_name_every_table() {
        let outputs = [
            output("ApiUrl", "https://x.execute-api.eu-west-1.amazonaws.com/"),
            output("ContactsTableName", "p-contacts"),
            output("SessionsTableName", "p-sessions"),
            output("InvitationsTableName", "p-invitations"),
            output("OutboxTableName", "p-outbox"),
            output("AuditTableName", "p-audit"),
        ];
        let settings = table_settings(&outputs).expect("all five tables");
        assert_eq!(settings["PORTAL_CONTACTS_TABLE"], "p-contacts");
        assert_eq!(settings["PORTAL_OUTBOX_TABLE"], "p-outbox");
        assert_eq!(settings["PORTAL_AUDIT_TABLE"], "p-audit");
        assert_eq!(settings.len(), 5);
    }

    #[test]
    fn a_stack_without_the_table_outputs_is_refused_by_name() {
        let err = table_settings(&[output("ContactsTableName", "p-contacts")]).unwrap_err();
        assert!(err.to_string().contains("SessionsTableName"), "{err}");
    }

    #[test]
    fn stack_is_an_option_of_create_admin() {
        let Ok(Command::CreateAdmin(parsed)) = parse_args(&args("create-admin --email a@example.com --stack portal"))
        else {
            panic!("refused")
        };
        assert_eq!(parsed.stack.as_deref(), Some("portal"));
    }

    #[test]
    fn outbox_commands_parse_ages_and_selections() {
        assert!(matches!(parse_args(&args("outbox status")), Ok(Command::OutboxStatus { stale_after_secs: 600 })));
        assert!(matches!(
            parse_args(&args("outbox status --stale-after 2h")),
            Ok(Command::OutboxStatus { stale_after_secs: 7200 })
        ));
        assert!(matches!(
            parse_args(&args("outbox retry --older-than 10m")),
            Ok(Command::OutboxRetry(Selection::OlderThan { secs: 600 }))
        ));
        assert!(
            matches!(parse_args(&args("outbox retry --id m-1")), Ok(Command::OutboxRetry(Selection::Id(id))) if id.as_str() == "m-1")
        );
        for bad in
            ["outbox", "outbox retry", "outbox retry --older-than", "outbox retry --older-than ten", "outbox purge"]
        {
            assert!(parse_args(&args(bad)).is_err(), "{bad}");
        }
        assert_eq!(parse_age("90s").ok(), Some(90));
        assert_eq!(parse_age("1d").ok(), Some(86_400));
        assert!(parse_age("-5m").is_err());
    }
}
