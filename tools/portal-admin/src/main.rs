//! Operator commands for a portal deployment, run against whatever AWS endpoint and tables the
//! environment names (the same settings the functions read).
//!
//! `portal-admin create-admin --email <email> [--first-name N] [--last-name N]`, password on stdin:
//! creates a contact with the `Administrators` web role, the first administrator of a deployment.

use std::io::BufRead;
use std::process::ExitCode;

use anyhow::{Context, anyhow};

use portal::Portal;
use portal::domain::ADMINISTRATORS_ROLE;
use portal::domain::contact::{Contact, NewContact};
use portal::domain::email::Email;
use portal::domain::ids::ContactId;
use portal::domain::password::{Password, hash_password};
use portal::domain::text::parse_name;
use portal::ports::CreateContactError;

const USAGE: &str = "usage: portal-admin create-admin --email <email> [--first-name <name>] [--last-name <name>]
  The password is read from standard input (one line).";

struct CreateAdmin {
    email: String,
    first_name: String,
    last_name: String,
}

/// A command line that cannot be run, with what to tell the operator.
struct Usage(String);

fn parse_args(args: &[String]) -> Result<CreateAdmin, Usage> {
    let Some((command, options)) = args.split_first() else { return Err(Usage(USAGE.into())) };
    if command != "create-admin" {
        return Err(Usage(format!("unknown command {command:?}\n{USAGE}")));
    }
    let mut parsed =
        CreateAdmin { email: String::new(), first_name: "Portal".into(), last_name: "Administrator".into() };
    let mut rest = options.iter();
    while let Some(option) = rest.next() {
        let value = rest.next().ok_or_else(|| Usage(format!("{option} needs a value\n{USAGE}")))?.clone();
        match option.as_str() {
            "--email" => parsed.email = value,
            "--first-name" => parsed.first_name = value,
            "--last-name" => parsed.last_name = value,
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
    let portal = Portal::from_environment().await?;
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
