//! Operator commands for a portal deployment, run against whatever AWS endpoint and tables the
//! environment names (the same settings the functions read).
//!
//! `portal-admin create-admin --email <email> [--first-name N] [--last-name N] [--stack NAME]`,
//! password on stdin: creates a contact with the `Administrators` web role, the first
//! administrator of a deployment. `--stack` reads the table names from that CloudFormation stack's
//! outputs (DescribeStacks) instead of the `PORTAL_*_TABLE` variables.

use std::collections::HashMap;
use std::io::BufRead;
use std::process::ExitCode;

use anyhow::{Context, anyhow};

use aws_sdk_cloudformation::types::Output;
use portal::Portal;
use portal::app::sdk_config;
use portal::config::Settings;
use portal::domain::ADMINISTRATORS_ROLE;
use portal::domain::contact::{Contact, NewContact};
use portal::domain::email::Email;
use portal::domain::ids::ContactId;
use portal::domain::password::{Password, hash_password};
use portal::domain::text::parse_name;
use portal::ports::CreateContactError;

const USAGE: &str =
    "usage: portal-admin create-admin --email <email> [--first-name <name>] [--last-name <name>] [--stack <name>]
  The password is read from standard input (one line). --stack: the deployed stack whose tables to
  use (its outputs name them); without it, PORTAL_CONTACTS_TABLE and the other table variables.";

/// The stack outputs (infra/template.yaml) that name the tables, and the setting each one gives.
const TABLE_OUTPUTS: [(&str, &str); 4] = [
    ("ContactsTableName", "PORTAL_CONTACTS_TABLE"),
    ("SessionsTableName", "PORTAL_SESSIONS_TABLE"),
    ("InvitationsTableName", "PORTAL_INVITATIONS_TABLE"),
    ("OutboxTableName", "PORTAL_OUTBOX_TABLE"),
];

struct CreateAdmin {
    email: String,
    first_name: String,
    last_name: String,
    stack: Option<String>,
}

/// A command line that cannot be run, with what to tell the operator.
struct Usage(String);

fn parse_args(args: &[String]) -> Result<CreateAdmin, Usage> {
    let Some((command, options)) = args.split_first() else { return Err(Usage(USAGE.into())) };
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
    Ok(parsed)
}

async fn create_admin(command: CreateAdmin) -> anyhow::Result<ContactId> {
    let email = Email::parse(&command.email).map_err(|e| anyhow!("email {e}"))?;
    let first_name = parse_name(&command.first_name).map_err(|e| anyhow!("first name {e}"))?;
    let last_name = parse_name(&command.last_name).map_err(|e| anyhow!("last name {e}"))?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).context("reading the password from stdin")?;
    let raw = line.trim_end_matches(['\r', '\n']).to_string();
    let sdk = sdk_config().await;
    let tables = match &command.stack {
        Some(stack) => tables_of_stack(&sdk, stack).await?,
        None => HashMap::new(),
    };
    // The stack's table names, else the environment (the same variables as the functions).
    let settings = Settings::from_lookup(|name| tables.get(name).cloned().or_else(|| std::env::var(name).ok()))?;
    let portal = Portal::new(settings, &sdk);
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
    match create_admin(command).await {
        Ok(contact_id) => {
            println!("created administrator {contact_id}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("portal-admin: {err:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        ];
        let settings = table_settings(&outputs).expect("all four tables");
        assert_eq!(settings["PORTAL_CONTACTS_TABLE"], "p-contacts");
        assert_eq!(settings["PORTAL_OUTBOX_TABLE"], "p-outbox");
        assert_eq!(settings.len(), 4);
    }

    #[test]
    fn a_stack_without_the_table_outputs_is_refused_by_name() {
        let err = table_settings(&[output("ContactsTableName", "p-contacts")]).unwrap_err();
        assert!(err.to_string().contains("SessionsTableName"), "{err}");
    }

    #[test]
    fn stack_is_an_option_of_create_admin() {
        let args: Vec<String> =
            ["create-admin", "--email", "a@example.com", "--stack", "portal"].map(String::from).into();
        let Ok(parsed) = parse_args(&args) else { panic!("refused") };
        assert_eq!(parsed.stack.as_deref(), Some("portal"));
    }
}
