//! DynamoDB adapters. Items are (de)serialised with serde_dynamo; the table layout is defined once,
//! in `infra/template.yaml`.
//!
//! Contacts table (key `pk`):
//! - `CONTACT#<id>`: the contact.
//! - `EMAIL#<normalised email>`, `USERNAME#<normalised username>`: guard items that make those values
//!   unique; written with the contact in one transaction, each with `attribute_not_exists(pk)`.
//!
//! Sessions table (key `pk` = digest of the token, GSI `by-contact`, TTL on `ttl`).

use crate::domain::ids::ContactId;
use crate::domain::time::Timestamp;
use std::collections::HashMap;
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::SdkError;

use crate::error::Unavailable;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, Put, ReturnValue, TransactWriteItem};
use serde::{Deserialize, Serialize};

use aws_sdk_dynamodb::types::{Delete, Update};

use crate::domain::audit::{AuditEntry, AuditQuery};
use crate::domain::contact::{Contact, Login};
use crate::domain::deliverability::Undeliverable;
use crate::domain::email::Email;
use crate::domain::identity::{ExternalState, LinkedIdentity};
use crate::domain::listing::{PageRequest, Paged};
use crate::domain::lockout::ATTEMPT_HOLD_SECS;
use crate::domain::lockout::{AttemptSubject, FailedSignIn, LockoutPolicy, LockoutState};
use crate::domain::outbox::{OutboxMessage, RETENTION_SECS};
use crate::domain::password::PasswordHashString;
use crate::domain::session::Session;
use crate::domain::token::EmailToken;
use crate::ports::{
    AccountEdit, ContactStore, CreateContactError, Device, EditAccountError, HeldNotices, LinkIdentityError,
    ProfileUpdate, Queued, SessionStore, TokenUse, UpdateProfileError,
};

pub(crate) type Item = HashMap<String, AttributeValue>;

pub(crate) use super::dynamodb_pages::sdk_error;

pub(crate) fn key(pk: String) -> Item {
    HashMap::from([("pk".to_string(), AttributeValue::S(pk))])
}

pub(crate) fn number(value: impl std::fmt::Display) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

/// The guard item of an external identity (one account per provider and subject).
pub(crate) fn identity_pk(provider: &str, subject: &str) -> String {
    format!("IDENTITY#{provider}#{subject}")
}

pub(crate) fn contact_pk(contact_id: &ContactId) -> String {
    format!("CONTACT#{contact_id}")
}

pub(crate) fn email_pk(normalized: &str) -> String {
    format!("EMAIL#{normalized}")
}

pub(crate) fn username_pk(normalized: &str) -> String {
    format!("USERNAME#{normalized}")
}

#[derive(Serialize, Deserialize)]
pub(crate) struct ContactItem {
    pub pk: String,
    #[serde(flatten)]
    pub contact: Contact,
    /// The keys of the contacts list and search indexes (see `dynamodb_listing`); absent on
    /// contacts stored before them until a profile change or `portal-admin backfill-lists`.
    #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
    pub listed: Option<super::dynamodb_list_keys::ListedContact>,
}

#[derive(Serialize, Deserialize)]
pub(crate) struct GuardItem {
    pub pk: String,
    pub contact_id: ContactId,
}

#[derive(Serialize, Deserialize)]
struct SessionItem {
    pk: String,
    #[serde(flatten)]
    session: Session,
    /// DynamoDB TTL removes the item some time after the absolute expiry; reads check expiry.
    ttl: Timestamp,
}

pub struct DynamoContacts {
    pub(super) client: Client,
    pub(super) table: String,
    /// Where the emails that contact changes cause are queued (in the same transaction).
    outbox_table: String,
    /// Where the audit entries that go with a change are written (in the same transaction).
    audit_table: String,
}

#[derive(Serialize, Deserialize)]
struct TokenItem {
    pk: String,
    #[serde(flatten)]
    token: EmailToken,
    ttl: Timestamp,
}

fn token_pk(digest: &str) -> String {
    format!("TOKEN#{digest}")
}

fn token_item(token: &EmailToken) -> anyhow::Result<Item> {
    Ok(serde_dynamo::to_item(TokenItem { pk: token_pk(&token.digest), token: token.clone(), ttl: token.expires_at })?)
}

/// Where a password attempt is counted: on the contact, or for a login no account has on an item
/// of its own.
fn attempt_pk(subject: &AttemptSubject) -> String {
    match subject {
        AttemptSubject::Account(contact_id) => contact_pk(contact_id),
        AttemptSubject::UnknownLogin(digest) => format!("LOGIN#{digest}"),
    }
}

/// How long the attempts at a login that no account has are kept after the last one (TTL).
const UNKNOWN_LOGIN_KEPT_SECS: i64 = 86_400;

/// The lockout attributes of a contact or of a login that no account has.
#[derive(Deserialize)]
struct LockoutItem {
    #[serde(default)]
    failed_sign_ins: u32,
    #[serde(default)]
    lockouts: u32,
    #[serde(default)]
    locked_until: Option<Timestamp>,
    #[serde(default)]
    attempted_at: Option<Timestamp>,
}

/// An emailed sign-in code of an account (`SIGNINCODE#<contact id>`: its digest, expiry and the
/// wrong codes tried; TTL at its expiry).
fn sign_in_code_pk(contact_id: &ContactId) -> String {
    format!("SIGNINCODE#{contact_id}")
}

/// The site settings changed at run time: one item (`SETTINGS`).
const SETTINGS_PK: &str = "SETTINGS";

#[derive(Serialize, Deserialize)]
struct SettingsItem {
    pk: String,
    #[serde(flatten)]
    settings: crate::site_settings::RunTimeSettings,
}

/// Security notices held back by an account's notice allowance (`NOTICES#<contact id>`).
fn held_notices_pk(contact_id: &ContactId) -> String {
    format!("NOTICES#{contact_id}")
}

#[derive(Deserialize)]
struct HeldNoticesItem {
    #[serde(default)]
    held: u32,
    #[serde(default)]
    kinds: Vec<String>,
    since: Timestamp,
}

/// How long held notices are kept when no later notice sums them up.
const HELD_NOTICES_KEPT_SECS: i64 = 30 * 86_400;

fn device_pk(digest: &str) -> String {
    format!("DEVICE#{digest}")
}

/// A trusted device: its own failure count, and TTL removes it after it expires.
#[derive(Serialize, Deserialize)]
struct DeviceItem {
    pk: String,
    contact_id: ContactId,
    expires_at: Timestamp,
    failures: u32,
    ttl: Timestamp,
}

/// Whether a single-item write failed its condition.
pub(crate) fn is_conditional_failure<E: aws_sdk_dynamodb::error::ProvideErrorMetadata, R>(
    err: &SdkError<E, R>,
) -> bool {
    err.as_service_error().and_then(|e| e.code()) == Some("ConditionalCheckFailedException")
}

/// Runs a conditional update whose refusal means there is nothing left for it to do (the item was
/// claimed, settled, superseded or removed meanwhile, or holds a later value): refused counts as done.
pub(crate) async fn update_unless_moved_on(
    update: aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder,
    doing: &str,
) -> anyhow::Result<()> {
    match update.send().await {
        Ok(_) => Ok(()),
        Err(err) if is_conditional_failure(&err) => Ok(()),
        Err(err) => Err(sdk_error(doing, err)),
    }
}

/// Puts an item under a key made from a new random token (a session, a pending sign-in, a
/// passkey ceremony). Only this very put can have written that key: a condition failure is an
/// attempt the SDK timed out and retried after DynamoDB had committed it, so it counts as written.
pub(crate) async fn put_under_new_key(client: &Client, table: &str, item: Item, doing: &str) -> anyhow::Result<()> {
    let result = client
        .put_item()
        .table_name(table)
        .set_item(Some(item))
        .condition_expression("attribute_not_exists(pk)")
        .send()
        .await;
    match result {
        Ok(_) => Ok(()),
        Err(err) if is_conditional_failure(&err) => Ok(()),
        Err(err) => Err(sdk_error(doing, err)),
    }
}

/// Runs a conditional update (a counter, a lock, a single-use code): whether its condition held. The update also
/// writes a new `write_token`, and refuses to run where that token already is: so an attempt
/// the SDK timed out and retried after DynamoDB had committed it is found, refused, with its
/// own token, and counts as the one update it was, not twice (a double count could refuse a
/// rightful request at a limit, or give back two attempts for one).
pub(crate) async fn update_once(
    update: aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder,
    doing: &str,
) -> anyhow::Result<bool> {
    use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
    let token = crate::domain::secret::random_token();
    let expression = update.get_update_expression().clone().unwrap_or_default();
    let expression = match expression.find("SET ") {
        Some(at) => format!("{}SET write_token = :write_token, {}", &expression[..at], &expression[at + 4..]),
        None => format!("{expression} SET write_token = :write_token"),
    };
    let not_yet = "(attribute_not_exists(write_token) OR write_token <> :write_token)";
    let condition = match update.get_condition_expression() {
        Some(condition) => format!("({condition}) AND {not_yet}"),
        None => not_yet.to_string(),
    };
    let result = update
        .update_expression(expression)
        .condition_expression(condition)
        .expression_attribute_values(":write_token", AttributeValue::S(token.clone()))
        .return_values_on_condition_check_failure(aws_sdk_dynamodb::types::ReturnValuesOnConditionCheckFailure::AllOld)
        .send()
        .await;
    match result {
        Ok(_) => Ok(true),
        Err(err) if is_conditional_failure(&err) => {
            let written_by_us = err
                .as_service_error()
                .and_then(|e| match e {
                    UpdateItemError::ConditionalCheckFailedException(refused) => refused.item.as_ref(),
                    _ => None,
                })
                .and_then(|item| item.get("write_token"))
                .and_then(|t| t.as_s().ok())
                == Some(&token);
            Ok(written_by_us)
        }
        Err(err) => Err(sdk_error(doing, err)),
    }
}

/// What a conditional update taking a lease (an outbox message, an import chunk) found.
pub(crate) enum LeaseTaken {
    /// This update holds the lease: the item as it now stands.
    Leased(Item),
    /// Refused: the item as it stands, and whether the lease on it is this very update's (an
    /// attempt the SDK timed out and retried after DynamoDB had committed it).
    Refused {
        current: Item,
        ours: bool,
    },
    Missing,
}

/// Takes a lease with `update`, a conditional update whose SET writes `lease_token = :token`:
/// this adds a new token, asks for the item either way, and tells a refusal of this update's own
/// committed attempt from another run's lease.
pub(crate) async fn take_lease(
    update: aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder,
    doing: &str,
) -> anyhow::Result<LeaseTaken> {
    use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
    use aws_sdk_dynamodb::types::ReturnValuesOnConditionCheckFailure;
    let lease_token = crate::domain::secret::random_token();
    let result = update
        .expression_attribute_values(":token", AttributeValue::S(lease_token.clone()))
        .return_values(ReturnValue::AllNew)
        .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
        .send()
        .await;
    match result {
        Ok(output) => Ok(LeaseTaken::Leased(output.attributes.unwrap_or_default())),
        Err(err) if is_conditional_failure(&err) => {
            let current = err.as_service_error().and_then(|e| match e {
                UpdateItemError::ConditionalCheckFailedException(refused) => refused.item.clone(),
                _ => None,
            });
            let Some(current) = current.filter(|item| !item.is_empty()) else { return Ok(LeaseTaken::Missing) };
            let ours = current.get("lease_token").and_then(|t| t.as_s().ok()) == Some(&lease_token);
            Ok(LeaseTaken::Refused { current, ours })
        }
        Err(err) => Err(sdk_error(doing, err)),
    }
}

impl DynamoContacts {
    pub fn new(
        client: Client,
        table: impl Into<String>,
        outbox_table: impl Into<String>,
        audit_table: impl Into<String>,
    ) -> Self {
        DynamoContacts {
            client,
            table: table.into(),
            outbox_table: outbox_table.into(),
            audit_table: audit_table.into(),
        }
    }

    /// The transaction items that queue `emails`, each with the token it carries, and write the
    /// audit entries among them.
    pub(crate) fn queued_items(&self, emails: &[Queued]) -> anyhow::Result<Transaction> {
        queued_items(
            &QueueTables { contacts: &self.table, outbox: &self.outbox_table, audit: &self.audit_table },
            emails,
        )
    }

    /// Replaces the account with its tombstone (out of every contacts index: no list keys) and
    /// releases its email and username, with `queued`, all or nothing. Refused when the account is
    /// gone, deleted, or its address moved since it was read (the guard to release would be
    /// another one).
    async fn delete_account(
        &self,
        current: &Contact,
        epoch: &str,
        now: Timestamp,
        queued: &[Queued],
    ) -> Result<Contact, EditAccountError> {
        let tombstone = current.tombstone(epoch, now);
        let item: Item = serde_dynamo::to_item(ContactItem {
            pk: contact_pk(&current.contact_id),
            contact: tombstone.clone(),
            listed: None,
        })
        .map_err(anyhow::Error::from)?;
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            // An identity linked meanwhile would keep its guard: the account as read, or nothing.
            .condition_expression(
                "attribute_exists(pk) AND attribute_not_exists(deleted_at) AND email_normalized = :email \
                 AND (attribute_not_exists(identities) OR size(identities) = :identities)",
            )
            .expression_attribute_values(":email", AttributeValue::S(current.email.normalized().to_string()))
            .expression_attribute_values(":identities", number(current.identities.len()))
            .build()
            .map_err(anyhow::Error::from)?;
        let mut items = Transaction::default();
        items.push(TransactWriteItem::builder().put(put).build(), Guards::Record);
        let released = std::iter::once(email_pk(current.email.normalized()))
            .chain(current.username.as_ref().map(|u| username_pk(&u.normalized)))
            .chain([held_notices_pk(&current.contact_id), sign_in_code_pk(&current.contact_id)])
            .chain(current.identities.iter().map(|i| identity_pk(&i.provider, &i.subject)));
        for pk in released {
            let delete = Delete::builder().table_name(&self.table).set_key(Some(key(pk))).build();
            items.push(
                TransactWriteItem::builder().delete(delete.map_err(anyhow::Error::from)?).build(),
                Guards::Nothing,
            );
        }
        items.extend(self.queued_items(queued)?);
        match items.run(&self.client).await {
            Ok(()) => Ok(tombstone),
            Err(TransactionError::Refused(_)) => Err(EditAccountError::Missing),
            Err(err) => Err(err.into_fault("deleting an account").into()),
        }
    }

    pub(crate) fn contact_update(&self, contact_id: &ContactId) -> aws_sdk_dynamodb::types::builders::UpdateBuilder {
        Update::builder().table_name(&self.table).set_key(Some(key(contact_pk(contact_id))))
    }

    async fn get_item(&self, pk: String) -> anyhow::Result<Option<Item>> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(pk)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error("reading a contact item", e))?;
        Ok(output.item)
    }
}

#[derive(Serialize, Deserialize)]
pub(crate) struct OutboxItem {
    pub pk: String,
    #[serde(flatten)]
    pub message: OutboxMessage,
    /// When TTL removes the item: `RETENTION_SECS` after it was queued, and again after it was
    /// settled; none while it is held (an invitation waiting for its emails to be switched on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<Timestamp>,
}

/// The tables what rides along with a change goes to.
pub(crate) struct QueueTables<'a> {
    /// Where the tokens emails carry are kept.
    pub contacts: &'a str,
    pub outbox: &'a str,
    pub audit: &'a str,
}

/// The transaction items that write `queued` along with a change: outbox messages (and the
/// tokens emails carry) and audit entries.
pub(crate) fn queued_items(tables: &QueueTables, queued: &[Queued]) -> anyhow::Result<Transaction> {
    let mut items = Transaction::default();
    for each in queued {
        match each {
            Queued::Outbox { token, message } => {
                if let Some(token) = token {
                    items.push(put_new(tables.contacts, token_item(token)?)?, Guards::Nothing);
                }
                items.push(outbox_put(tables.outbox, message)?, Guards::Nothing);
            }
            Queued::Audit(entry) => {
                items.push(put_new(tables.audit, super::dynamodb_audit::audit_item(entry)?)?, Guards::Nothing)
            }
        }
    }
    Ok(items)
}

pub(crate) fn outbox_put(table: &str, message: &OutboxMessage) -> anyhow::Result<TransactWriteItem> {
    let item: Item = serde_dynamo::to_item(OutboxItem {
        pk: message.message_id.to_string(),
        message: message.clone(),
        ttl: Some(message.created_at + RETENTION_SECS),
    })?;
    put_new(table, item)
}

/// A transaction item that puts `item` only where no item with its key exists.
pub(crate) fn put_new(table: &str, item: Item) -> anyhow::Result<TransactWriteItem> {
    let put = Put::builder()
        .table_name(table)
        .set_item(Some(item))
        .condition_expression("attribute_not_exists(pk)")
        .build()?;
    Ok(TransactWriteItem::builder().put(put).build())
}

/// What a transaction item guards: what it means when its condition fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Guards {
    /// The record itself (it exists, or is as it was read).
    Record,
    /// The uniqueness of an email address.
    Email,
    /// The uniqueness of a username.
    Username,
    /// The uniqueness of an external identity (one account per provider and subject).
    Identity,
    /// Nothing a client could cause (a new outbox message, a new token).
    Nothing,
}

/// The items of one transaction, each with what it guards, so that a cancellation is read by
/// meaning and never by position.
#[derive(Default)]
pub(crate) struct Transaction {
    items: Vec<TransactWriteItem>,
    guards: Vec<Guards>,
}

impl Transaction {
    pub fn push(&mut self, item: TransactWriteItem, guards: Guards) {
        self.items.push(item);
        self.guards.push(guards);
    }

    pub fn extend(&mut self, other: Transaction) {
        self.items.extend(other.items);
        self.guards.extend(other.guards);
    }

    /// Runs it (see [`transact_retrying`]); a cancellation by a failed condition is reported as
    /// what the first failing item guards.
    pub async fn run(self, client: &Client) -> Result<(), TransactionError> {
        match transact_retrying(client, self.items).await {
            Ok(()) => Ok(()),
            Err(err) => match cancellation_codes(&err) {
                None => Err(TransactionError::Sdk(Box::new(err))),
                // Cancelled because DynamoDB throttled an item, not for anything about the data.
                Some(codes)
                    if codes.iter().any(|c| BUSY_REASONS.contains(&c.as_str()))
                        && !codes.iter().any(|c| c == "ConditionalCheckFailed") =>
                {
                    Err(TransactionError::Busy(codes.join(", ")))
                }
                Some(codes) => {
                    let failed = codes.iter().position(|c| c == "ConditionalCheckFailed");
                    Err(failed
                        .and_then(|i| self.guards.get(i).copied())
                        .map_or(TransactionError::Conflict, TransactionError::Refused))
                }
            },
        }
    }
}

/// Cancellation reasons that mean DynamoDB was too busy for the transaction.
const BUSY_REASONS: &[&str] = &["ThrottlingError", "ProvisionedThroughputExceeded", "RequestLimitExceeded"];

pub(crate) enum TransactionError {
    /// An item's condition failed.
    Refused(Guards),
    /// Cancelled because an item was throttled (these reasons): the service is busy, answered 503.
    Busy(String),
    /// Cancelled for a conflict with concurrent transactions, after the retries.
    Conflict,
    Sdk(Box<SdkError<TransactWriteItemsError, aws_sdk_dynamodb::config::http::HttpResponse>>),
}

impl TransactionError {
    /// Our fault or the service's, with what was being done.
    pub fn into_fault(self, doing: &str) -> anyhow::Error {
        match self {
            TransactionError::Sdk(err) => sdk_error(doing, *err),
            TransactionError::Refused(guards) => anyhow::anyhow!("{doing}: refused by a condition on {guards:?}"),
            TransactionError::Conflict => anyhow::anyhow!("{doing}: cancelled by concurrent transactions"),
            TransactionError::Busy(reasons) => {
                anyhow::Error::new(Unavailable).context(format!("{doing}: cancelled, throttled ({reasons})"))
            }
        }
    }
}

/// The transaction items that create a contact with its unique values reserved: the contact, its
/// email guard, and its username guard if it has a username.
pub(crate) fn new_contact_items(table: &str, contact: &Contact) -> anyhow::Result<Transaction> {
    let contact_item: Item = serde_dynamo::to_item(ContactItem {
        pk: contact_pk(&contact.contact_id),
        contact: contact.clone(),
        listed: Some(super::dynamodb_list_keys::ListedContact::of(contact)),
    })
    .context("serialising a contact")?;
    let mut items = Transaction::default();
    items.push(put_new(table, contact_item)?, Guards::Record);
    items.push(put_new(table, guard_item(email_pk(contact.email.normalized()), &contact.contact_id)?)?, Guards::Email);
    if let Some(username) = contact.username.as_ref().map(|u| &u.normalized) {
        items.push(put_new(table, guard_item(username_pk(username), &contact.contact_id)?)?, Guards::Username);
    }
    // A contact made by an external sign-in: its identity's guard.
    for identity in &contact.identities {
        let guard = guard_item(identity_pk(&identity.provider, &identity.subject), &contact.contact_id)?;
        items.push(put_new(table, guard)?, Guards::Identity);
    }
    Ok(items)
}

pub(crate) fn guard_item(pk: String, contact_id: &ContactId) -> anyhow::Result<Item> {
    Ok(serde_dynamo::to_item(GuardItem { pk, contact_id: contact_id.clone() })?)
}

/// The cancellation reason codes of a cancelled transaction, one per item ("None" where that item
/// was fine); `None` when the error is not a cancellation.
pub(crate) fn cancellation_codes<R>(err: &SdkError<TransactWriteItemsError, R>) -> Option<Vec<String>> {
    let TransactWriteItemsError::TransactionCanceledException(cancelled) = err.as_service_error()? else {
        return None;
    };
    Some(cancelled.cancellation_reasons().iter().map(|r| r.code().unwrap_or("None").to_string()).collect())
}

/// Runs a transaction, trying again (up to four times in all) while DynamoDB cancels it only for
/// a conflict with a concurrent transaction on the same items: DynamoDB does not queue those, and
/// the next try sees the other's outcome (a condition then fails, or it goes through).
pub(crate) async fn transact_retrying(
    client: &Client,
    items: Vec<TransactWriteItem>,
) -> Result<(), SdkError<TransactWriteItemsError, aws_sdk_dynamodb::config::http::HttpResponse>> {
    let mut attempt = 1u64;
    loop {
        let err = match client.transact_write_items().set_transact_items(Some(items.clone())).send().await {
            Ok(_) => return Ok(()),
            Err(err) => err,
        };
        let conflict_only = cancellation_codes(&err).is_some_and(|codes| {
            codes.iter().any(|c| c == "TransactionConflict") && !codes.iter().any(|c| c == "ConditionalCheckFailed")
        });
        if !conflict_only || attempt == 4 {
            return Err(err);
        }
        tokio::time::sleep(Duration::from_millis(20 * attempt)).await;
        attempt += 1;
    }
}

#[async_trait]
impl ContactStore for DynamoContacts {
    async fn create_with_emails(&self, contact: &Contact, emails: &[Queued]) -> Result<(), CreateContactError> {
        let mut items = new_contact_items(&self.table, contact)?;
        items.extend(self.queued_items(emails)?);
        match items.run(&self.client).await {
            Ok(()) => Ok(()),
            Err(TransactionError::Refused(Guards::Email)) => Err(CreateContactError::EmailTaken),
            Err(TransactionError::Refused(Guards::Username)) => Err(CreateContactError::UsernameTaken),
            Err(TransactionError::Refused(Guards::Identity)) => Err(CreateContactError::IdentityTaken),
            Err(err) => Err(err.into_fault("creating a contact").into()),
        }
    }

    async fn get(&self, contact_id: &ContactId) -> anyhow::Result<Option<Contact>> {
        let Some(item) = self.get_item(contact_pk(contact_id)).await? else {
            return Ok(None);
        };
        let stored: ContactItem = serde_dynamo::from_item(item).context("reading a stored contact")?;
        Ok(Some(stored.contact))
    }

    async fn edit_account(
        &self,
        current: &Contact,
        edit: &AccountEdit,
        now: Timestamp,
        queued: &[Queued],
    ) -> Result<Contact, EditAccountError> {
        let update = self
            .contact_update(&current.contact_id)
            .condition_expression("attribute_exists(pk) AND attribute_not_exists(deleted_at)")
            .expression_attribute_values(":now", number(now));
        let (expression, update) = match edit {
            AccountEdit::Disable { epoch } => (
                "SET login_disabled = :yes, session_epoch = :epoch, updated_at = :now",
                update
                    .expression_attribute_values(":yes", AttributeValue::Bool(true))
                    .expression_attribute_values(":epoch", AttributeValue::S(epoch.clone())),
            ),
            AccountEdit::Enable => ("SET updated_at = :now REMOVE login_disabled", update),
            AccountEdit::Unchanged => ("SET updated_at = :now", update),
            AccountEdit::AcceptTerms(accepted) => (
                "SET terms_accepted = :terms, updated_at = :now",
                update.expression_attribute_values(
                    ":terms",
                    serde_dynamo::to_attribute_value(accepted).map_err(anyhow::Error::from)?,
                ),
            ),
            AccountEdit::Unlock => (
                "SET failed_sign_ins = :zero, updated_at = :now REMOVE locked_until",
                update.expression_attribute_values(":zero", number(0)),
            ),
            AccountEdit::EndSessions { epoch } => (
                "SET session_epoch = :epoch, updated_at = :now",
                update.expression_attribute_values(":epoch", AttributeValue::S(epoch.clone())),
            ),
            AccountEdit::BlockPassword { epoch } => (
                "SET session_epoch = :epoch, updated_at = :now REMOVE password_hash",
                update.expression_attribute_values(":epoch", AttributeValue::S(epoch.clone())),
            ),
            // A tombstone replaces the whole item, with the guards it held.
            AccountEdit::Delete { epoch } => return self.delete_account(current, epoch, now, queued).await,
            AccountEdit::Roles { roles, account_id } => {
                let update = update.expression_attribute_values(
                    ":roles",
                    serde_dynamo::to_attribute_value(roles).map_err(anyhow::Error::from)?,
                );
                match account_id {
                    Some(account) => (
                        "SET #roles = :roles, account_id = :account, updated_at = :now",
                        update.expression_attribute_values(":account", AttributeValue::S(account.clone())),
                    ),
                    None => ("SET #roles = :roles, updated_at = :now REMOVE account_id", update),
                }
            }
        };
        let update = match edit {
            AccountEdit::Roles { .. } => update.expression_attribute_names("#roles", "roles"),
            _ => update,
        };
        let mut items = Transaction::default();
        items.push(
            TransactWriteItem::builder()
                .update(update.update_expression(expression).build().map_err(anyhow::Error::from)?)
                .build(),
            Guards::Record,
        );
        items.extend(self.queued_items(queued)?);
        match items.run(&self.client).await {
            Ok(()) => Ok(edit.applied_to(current, now)),
            Err(TransactionError::Refused(_)) => Err(EditAccountError::Missing),
            Err(err) => Err(err.into_fault("changing an account").into()),
        }
    }

    async fn audit_trail(&self, query: &AuditQuery, page: &PageRequest) -> anyhow::Result<Paged<AuditEntry>> {
        super::dynamodb_audit::audit_page(&self.client, &self.audit_table, query, page).await
    }

    async fn email_in_use(&self, email: &Email) -> anyhow::Result<bool> {
        Ok(self.get_item(email_pk(email.normalized())).await?.is_some())
    }

    async fn find_by_login(&self, login: &Login) -> anyhow::Result<Option<Contact>> {
        let pk = match login {
            Login::Email(email) => email_pk(email),
            Login::Username(username) => username_pk(username),
        };
        let Some(item) = self.get_item(pk.clone()).await? else {
            // A login that no account has costs the same two reads as one that an account has
            // (the second of an item that never exists): the time taken must not tell.
            self.get_item(format!("NOLOGIN#{pk}")).await?;
            return Ok(None);
        };
        let guard: GuardItem = serde_dynamo::from_item(item).context("reading a guard item")?;
        self.get(&guard.contact_id).await
    }

    async fn reserve_attempt(
        &self,
        subject: &AttemptSubject,
        now: Timestamp,
        policy: &LockoutPolicy,
    ) -> anyhow::Result<bool> {
        // The domain's `LockoutState::reserve`, as one conditional increment. An account must
        // exist; a login that no account has gets an item of its own, kept a day after its last
        // attempt.
        let (exists, expires) = match subject {
            AttemptSubject::Account(_) => ("attribute_exists(pk) AND ", ""),
            AttemptSubject::UnknownLogin(_) => ("", ", #ttl = :ttl"),
        };
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(attempt_pk(subject))))
            .update_expression(format!("ADD failed_sign_ins :one SET attempted_at = :now{expires}"))
            .condition_expression(format!(
                "{exists}(attribute_not_exists(locked_until) OR locked_until <= :now) \
                 AND (attribute_not_exists(failed_sign_ins) OR failed_sign_ins < :threshold \
                 OR attribute_not_exists(attempted_at) OR attempted_at <= :released)"
            ))
            .expression_attribute_values(":one", number(1))
            .expression_attribute_values(":now", number(now))
            .expression_attribute_values(":threshold", number(i64::from(policy.threshold)))
            .expression_attribute_values(":released", number(now - ATTEMPT_HOLD_SECS));
        if let AttemptSubject::UnknownLogin(_) = subject {
            update = update
                .expression_attribute_names("#ttl", "ttl")
                .expression_attribute_values(":ttl", number(now + policy.max_secs + UNKNOWN_LOGIN_KEPT_SECS));
        }
        update_once(update, "taking a sign-in attempt").await
    }

    async fn record_failed_sign_in(
        &self,
        subject: &AttemptSubject,
        now: Timestamp,
        policy: &LockoutPolicy,
    ) -> anyhow::Result<FailedSignIn> {
        let (locked, outcome) = self.lockout_of(subject).await?.after_failure(now, policy);
        let FailedSignIn::LockedOut { until } = outcome else { return Ok(outcome) };
        // Of concurrent failures that all reached the threshold, the condition lets only one lock,
        // so the lockout counts once.
        let update = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(attempt_pk(subject))))
            .update_expression("SET locked_until = :until, lockouts = :lockouts, failed_sign_ins = :zero")
            .condition_expression(
                "failed_sign_ins >= :threshold AND (attribute_not_exists(locked_until) OR locked_until <= :now)",
            )
            .expression_attribute_values(":until", number(until))
            .expression_attribute_values(":lockouts", number(i64::from(locked.lockouts)))
            .expression_attribute_values(":zero", number(0))
            .expression_attribute_values(":now", number(now))
            .expression_attribute_values(":threshold", number(i64::from(policy.threshold)));
        Ok(if update_once(update, "locking an account").await? { outcome } else { FailedSignIn::AlreadyLocked })
    }

    async fn lockout_of(&self, subject: &AttemptSubject) -> anyhow::Result<LockoutState> {
        let Some(item) = self.get_item(attempt_pk(subject)).await? else { return Ok(LockoutState::default()) };
        let stored: LockoutItem = serde_dynamo::from_item(item).context("reading a lockout state")?;
        Ok(LockoutState {
            failed_sign_ins: stored.failed_sign_ins,
            lockouts: stored.lockouts,
            locked_until: stored.locked_until,
            attempted_at: stored.attempted_at,
        })
    }

    async fn release_attempt(&self, contact_id: &ContactId) -> anyhow::Result<()> {
        let update = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(contact_pk(contact_id))))
            .update_expression("SET failed_sign_ins = failed_sign_ins - :one")
            .condition_expression("attribute_exists(pk) AND failed_sign_ins > :zero")
            .expression_attribute_values(":one", number(1))
            .expression_attribute_values(":zero", number(0));
        update_once(update, "releasing a sign-in attempt").await?;
        Ok(())
    }

    async fn reset_lockout(&self, contact_id: &ContactId) -> anyhow::Result<()> {
        let update = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(contact_pk(contact_id))))
            .update_expression("SET failed_sign_ins = :zero, lockouts = :zero REMOVE locked_until, attempted_at")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":zero", number(0));
        update_once(update, "resetting a lockout").await?;
        Ok(())
    }

    async fn reserve_device_attempt(
        &self,
        digest: &str,
        contact_id: &ContactId,
        now: Timestamp,
        threshold: u32,
    ) -> anyhow::Result<bool> {
        let update = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(device_pk(digest))))
            .update_expression("ADD failures :one")
            .condition_expression("contact_id = :contact AND expires_at > :now AND failures < :threshold")
            .expression_attribute_values(":one", number(1))
            .expression_attribute_values(":contact", AttributeValue::S(contact_id.to_string()))
            .expression_attribute_values(":now", number(now))
            .expression_attribute_values(":threshold", number(i64::from(threshold)));
        update_once(update, "taking a device's sign-in attempt").await
    }

    async fn remember_device(&self, device: &Device) -> anyhow::Result<()> {
        let item: Item = serde_dynamo::to_item(DeviceItem {
            pk: device_pk(&device.digest),
            contact_id: device.contact_id.clone(),
            expires_at: device.expires_at,
            failures: 0,
            ttl: device.expires_at,
        })?;
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| sdk_error("remembering a device", e))?;
        Ok(())
    }

    async fn hold_notice(&self, contact_id: &ContactId, kind: &str, now: Timestamp) -> anyhow::Result<()> {
        let update = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(held_notices_pk(contact_id))))
            .update_expression("ADD held :one, kinds :kind SET since = if_not_exists(since, :now), #ttl = :ttl")
            .expression_attribute_names("#ttl", "ttl")
            .expression_attribute_values(":one", number(1))
            .expression_attribute_values(":kind", AttributeValue::Ss(vec![kind.to_string()]))
            .expression_attribute_values(":now", number(now))
            .expression_attribute_values(":ttl", number(now + HELD_NOTICES_KEPT_SECS));
        update_once(update, "holding a notice back").await?;
        Ok(())
    }

    async fn held_notices(&self, contact_id: &ContactId) -> anyhow::Result<Option<HeldNotices>> {
        let Some(item) = self.get_item(held_notices_pk(contact_id)).await? else { return Ok(None) };
        let stored: HeldNoticesItem = serde_dynamo::from_item(item).context("reading held notices")?;
        let mut kinds = stored.kinds;
        kinds.sort();
        Ok((stored.held > 0).then_some(HeldNotices { count: stored.held, kinds, since: stored.since }))
    }

    async fn clear_held_notices(
        &self,
        contact_id: &ContactId,
        summed_up: &crate::domain::outbox::HeldSummary,
        now: Timestamp,
    ) -> anyhow::Result<()> {
        // Exactly those summed up: the item goes; more held since: only these are counted off, and
        // the rest are held from now on (so a repeat of this finds nothing to count off).
        let deleted = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key(held_notices_pk(contact_id))))
            .condition_expression("since = :since AND held <= :count")
            .expression_attribute_values(":since", number(summed_up.since))
            .expression_attribute_values(":count", number(summed_up.count))
            .send()
            .await;
        match deleted {
            Ok(_) => Ok(()),
            Err(err) if is_conditional_failure(&err) => {
                let update = self
                    .client
                    .update_item()
                    .table_name(&self.table)
                    .set_key(Some(key(held_notices_pk(contact_id))))
                    .update_expression("ADD held :minus SET since = :now")
                    .condition_expression("since = :since AND held > :count")
                    .expression_attribute_values(":minus", number(-i64::from(summed_up.count)))
                    .expression_attribute_values(":since", number(summed_up.since))
                    .expression_attribute_values(":count", number(summed_up.count))
                    .expression_attribute_values(":now", number(now));
                update_once(update, "counting off held notices").await?;
                Ok(())
            }
            Err(err) => Err(sdk_error("clearing held notices", err)),
        }
    }

    async fn update_profile(
        &self,
        current: &Contact,
        update: &ProfileUpdate,
        now: Timestamp,
        emails: &[Queued],
    ) -> Result<Contact, UpdateProfileError> {
        let mut updated = current.clone();
        updated.first_name = update.first_name.clone();
        updated.last_name = update.last_name.clone();
        updated.phone = update.phone.clone();
        updated.updated_at = now;
        let mut set = vec!["first_name = :first", "last_name = :last", "updated_at = :now"];
        // The search keys follow the names (and a contact stored before the indexes joins them).
        let listed = super::dynamodb_list_keys::ListedContact::of(&updated);
        set.extend([
            "list_pk = :list_pk",
            "list_sk = :list_sk",
            "first_name_key = :first_key",
            "last_name_key = :last_key",
        ]);
        let mut builder = self
            .contact_update(&current.contact_id)
            .set_expression_attribute_values(Some(listed.update_values()))
            .condition_expression("attribute_exists(pk) AND email_normalized = :current")
            .expression_attribute_values(":first", AttributeValue::S(update.first_name.clone()))
            .expression_attribute_values(":last", AttributeValue::S(update.last_name.clone()))
            .expression_attribute_values(":now", number(now))
            .expression_attribute_values(":current", AttributeValue::S(current.email.normalized().to_string()));
        if let Some(phone) = &update.phone {
            set.push("phone = :phone");
            builder = builder.expression_attribute_values(":phone", AttributeValue::S(phone.clone()));
        }
        if let Some(pending) = &update.pending_email {
            set.extend(["pending_email = :pending", "pending_email_normalized = :pending_normalized"]);
            builder = builder
                .expression_attribute_values(":pending", AttributeValue::S(pending.as_str().to_string()))
                .expression_attribute_values(
                    ":pending_normalized",
                    AttributeValue::S(pending.normalized().to_string()),
                );
            updated.pending_email = Some(pending.clone());
        }
        let remove = if update.phone.is_none() { " REMOVE phone" } else { "" };
        let expression = format!("SET {}{remove}", set.join(", "));
        let mut items = Transaction::default();
        items.push(
            TransactWriteItem::builder()
                .update(builder.update_expression(expression).build().map_err(anyhow::Error::from)?)
                .build(),
            Guards::Record,
        );
        items.extend(self.queued_items(emails)?);
        match items.run(&self.client).await {
            Ok(()) => Ok(updated),
            // The contact or its address changed since it was read.
            Err(TransactionError::Refused(_) | TransactionError::Conflict) => Err(UpdateProfileError::Conflict),
            Err(err) => Err(err.into_fault("updating a profile").into()),
        }
    }

    async fn change_password(
        &self,
        contact_id: &ContactId,
        password_hash: &PasswordHashString,
        epoch: &str,
        now: Timestamp,
        emails: &[Queued],
    ) -> anyhow::Result<()> {
        let update = self
            .contact_update(contact_id)
            .update_expression(
                "SET password_hash = :hash, session_epoch = :epoch, updated_at = :now REMOVE reset_nonce",
            )
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":hash", serde_dynamo::to_attribute_value(password_hash)?)
            .expression_attribute_values(":epoch", AttributeValue::S(epoch.to_string()))
            .expression_attribute_values(":now", number(now))
            .build()?;
        let mut items = Transaction::default();
        items.push(TransactWriteItem::builder().update(update).build(), Guards::Record);
        items.extend(self.queued_items(emails)?);
        items.run(&self.client).await.map_err(|e| e.into_fault("changing a password"))
    }

    async fn queue_emails(&self, emails: &[Queued]) -> anyhow::Result<()> {
        self.queued_items(emails)?.run(&self.client).await.map_err(|e| e.into_fault("queueing an email"))
    }

    async fn issue_token(&self, token: &EmailToken) -> anyhow::Result<bool> {
        let mut items = Transaction::default();
        items.push(put_new(&self.table, token_item(token)?)?, Guards::Nothing);
        if let Some(nonce) = &token.nonce {
            let update = self
                .contact_update(&token.contact_id)
                .update_expression("SET reset_nonce = :nonce")
                .condition_expression("attribute_exists(pk)")
                .expression_attribute_values(":nonce", AttributeValue::S(nonce.clone()))
                .build()?;
            items.push(TransactWriteItem::builder().update(update).build(), Guards::Record);
        }
        match items.run(&self.client).await {
            Ok(()) => Ok(true),
            Err(TransactionError::Refused(_)) => Ok(false),
            Err(err) => Err(err.into_fault("issuing a token")),
        }
    }

    async fn find_token(&self, digest: &str) -> anyhow::Result<Option<EmailToken>> {
        let Some(item) = self.get_item(token_pk(digest)).await? else { return Ok(None) };
        let stored: TokenItem = serde_dynamo::from_item(item).context("reading a token")?;
        Ok(Some(stored.token))
    }

    async fn use_token(
        &self,
        token: &EmailToken,
        contact: &Contact,
        effect: &TokenUse,
        now: Timestamp,
        emails: &[Queued],
    ) -> anyhow::Result<bool> {
        // Deleting the token is what uses it: of two concurrent uses, one finds it gone.
        let delete = Delete::builder()
            .table_name(&self.table)
            .set_key(Some(key(token_pk(&token.digest))))
            .condition_expression("attribute_exists(pk)")
            .build()?;
        let mut items = Transaction::default();
        items.push(TransactWriteItem::builder().delete(delete).build(), Guards::Record);
        let update = self.contact_update(&contact.contact_id).expression_attribute_values(":now", number(now));
        let update = match effect {
            // The contact's address as read is the token's (checked here: the token holds its
            // digest), and still is at the write (the condition).
            TokenUse::ConfirmEmail if !token.is_for(&contact.email) => return Ok(false),
            TokenUse::ConfirmEmail => {
                // A link followed from the address proves mail reaches it again.
                if contact.email_undeliverable.is_some() {
                    items.push(self.unmark_item(&contact.email)?, Guards::Nothing);
                }
                update
                    .update_expression("SET email_confirmed = :true, updated_at = :now REMOVE email_undeliverable")
                    .condition_expression("email_normalized = :email")
                    .expression_attribute_values(":true", AttributeValue::Bool(true))
                    .expression_attribute_values(":email", AttributeValue::S(contact.email.normalized().to_string()))
            }
            TokenUse::MoveEmail { epoch } => {
                let new_email = contact
                    .pending_email
                    .as_ref()
                    .filter(|p| token.is_for(p))
                    .context("the token is not for the contact's pending address")?;
                let old_guard = Delete::builder()
                    .table_name(&self.table)
                    .set_key(Some(key(email_pk(contact.email.normalized()))))
                    .condition_expression("contact_id = :id")
                    .expression_attribute_values(":id", AttributeValue::S(contact.contact_id.to_string()))
                    .build()?;
                items.push(TransactWriteItem::builder().delete(old_guard).build(), Guards::Record);
                items.push(
                    put_new(&self.table, guard_item(email_pk(new_email.normalized()), &contact.contact_id)?)?,
                    Guards::Email,
                );
                // The new address took the link: mail reaches it (whatever bounced before); the old
                // address's mark stays with that address.
                items.push(self.unmark_item(new_email)?, Guards::Nothing);
                update
                    .update_expression(
                        "SET email = :email, email_normalized = :normalized, email_confirmed = :true, \
                         session_epoch = :epoch, updated_at = :now \
                         REMOVE pending_email, pending_email_normalized, reset_nonce, email_undeliverable",
                    )
                    .condition_expression("email_normalized = :old AND pending_email_normalized = :normalized")
                    .expression_attribute_values(":email", AttributeValue::S(new_email.as_str().to_string()))
                    .expression_attribute_values(":normalized", AttributeValue::S(new_email.normalized().to_string()))
                    .expression_attribute_values(":old", AttributeValue::S(contact.email.normalized().to_string()))
                    .expression_attribute_values(":true", AttributeValue::Bool(true))
                    .expression_attribute_values(":epoch", AttributeValue::S(epoch.clone()))
            }
            TokenUse::ResetPassword { hash, epoch } => update
                .update_expression(
                    "SET password_hash = :hash, failed_sign_ins = :zero, lockouts = :zero, session_epoch = :epoch, \
                     updated_at = :now REMOVE locked_until, attempted_at, reset_nonce",
                )
                .condition_expression("reset_nonce = :nonce")
                .expression_attribute_values(":hash", serde_dynamo::to_attribute_value(hash)?)
                .expression_attribute_values(":zero", number(0))
                .expression_attribute_values(":epoch", AttributeValue::S(epoch.clone()))
                .expression_attribute_values(
                    ":nonce",
                    AttributeValue::S(token.nonce.clone().context("a reset token without its nonce")?),
                ),
        }
        .build()?;
        items.push(TransactWriteItem::builder().update(update).build(), Guards::Record);
        items.extend(self.queued_items(emails)?);
        match items.run(&self.client).await {
            Ok(()) => Ok(true),
            // Used meanwhile, or no longer fits the contact (its address moved, a newer reset link,
            // the new address taken by another account).
            Err(TransactionError::Refused(_) | TransactionError::Conflict) => Ok(false),
            Err(err) => Err(err.into_fault("using a token")),
        }
    }

    async fn save_external_state(&self, state_digest: &str, state: &ExternalState) -> anyhow::Result<()> {
        self.save_state(state_digest, state).await
    }

    async fn take_external_state(&self, state_digest: &str) -> anyhow::Result<Option<ExternalState>> {
        self.take_state(state_digest).await
    }

    async fn mark_undeliverable(
        &self,
        address: &Email,
        mark: &Undeliverable,
        contact: Option<&Contact>,
        queued: &[Queued],
    ) -> anyhow::Result<bool> {
        self.mark(address, mark, contact, queued).await
    }

    async fn is_undeliverable(&self, address: &Email) -> anyhow::Result<bool> {
        self.marked(address).await
    }

    async fn identity_owner(&self, provider: &str, subject: &str) -> anyhow::Result<Option<ContactId>> {
        self.owner_of_identity(provider, subject).await
    }

    async fn link_identity(
        &self,
        current: &Contact,
        identity: &LinkedIdentity,
        queued: &[Queued],
    ) -> Result<Contact, LinkIdentityError> {
        self.link(current, identity, queued).await
    }

    async fn unlink_identity(
        &self,
        current: &Contact,
        provider: &str,
        subject: &str,
        now: Timestamp,
        queued: &[Queued],
    ) -> Result<Contact, LinkIdentityError> {
        self.unlink(current, provider, subject, now, queued).await
    }

    async fn take_allowance(
        &self,
        key_text: &str,
        limit: u32,
        window_secs: i64,
        now: Timestamp,
    ) -> anyhow::Result<bool> {
        let window = now.window(window_secs);
        let update = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(format!("RATE#{key_text}#{window}"))))
            .update_expression("ADD hits :one SET #ttl = :ttl")
            .condition_expression("attribute_not_exists(hits) OR hits < :limit")
            .expression_attribute_names("#ttl", "ttl")
            .expression_attribute_values(":one", number(1))
            .expression_attribute_values(":limit", number(i64::from(limit)))
            .expression_attribute_values(":ttl", number((window + 1) * window_secs + 3600));
        update_once(update, "counting a rate limit").await
    }

    async fn run_time_settings(&self) -> anyhow::Result<crate::site_settings::RunTimeSettings> {
        match self.get_item(SETTINGS_PK.to_string()).await? {
            Some(item) => {
                Ok(serde_dynamo::from_item::<_, SettingsItem>(item).context("reading the site settings")?.settings)
            }
            None => Ok(Default::default()),
        }
    }

    async fn save_run_time_settings(
        &self,
        next: &crate::site_settings::RunTimeSettings,
        read: u64,
        queued: &[Queued],
    ) -> anyhow::Result<bool> {
        let item: Item = serde_dynamo::to_item(SettingsItem { pk: SETTINGS_PK.into(), settings: next.clone() })?;
        let put = Put::builder().table_name(&self.table).set_item(Some(item));
        let put = match read {
            0 => put.condition_expression("attribute_not_exists(pk)"),
            read => put.condition_expression("version = :read").expression_attribute_values(":read", number(read)),
        };
        let mut items = Transaction::default();
        items.push(TransactWriteItem::builder().put(put.build()?).build(), Guards::Record);
        items.extend(self.queued_items(queued)?);
        match items.run(&self.client).await {
            Ok(()) => Ok(true),
            Err(TransactionError::Refused(Guards::Record)) => Ok(false),
            Err(err) => Err(err.into_fault("changing the site settings")),
        }
    }

    async fn set_sign_in_code(
        &self,
        contact_id: &ContactId,
        digest: &str,
        expires_at: Timestamp,
    ) -> anyhow::Result<()> {
        self.client
            .put_item()
            .table_name(&self.table)
            .item("pk", AttributeValue::S(sign_in_code_pk(contact_id)))
            .item("code_digest", AttributeValue::S(digest.to_string()))
            .item("expires_at", number(expires_at))
            .item("wrong", number(0))
            .item("ttl", number(expires_at))
            .send()
            .await
            .map_err(|e| sdk_error("storing a sign-in code", e))?;
        Ok(())
    }

    async fn use_sign_in_code(
        &self,
        contact_id: &ContactId,
        digest: &str,
        now: Timestamp,
        tries: u32,
    ) -> anyhow::Result<bool> {
        let used = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key(sign_in_code_pk(contact_id))))
            .condition_expression("code_digest = :code AND expires_at > :now AND wrong < :tries")
            .expression_attribute_values(":code", AttributeValue::S(digest.to_string()))
            .expression_attribute_values(":now", number(now))
            .expression_attribute_values(":tries", number(tries))
            .send()
            .await;
        match used {
            Ok(_) => return Ok(true),
            Err(err) if is_conditional_failure(&err) => {}
            Err(err) => return Err(sdk_error("using a sign-in code", err)),
        }
        // A wrong (or expired, or voided) code: one more try counted, on a code that exists.
        let counted = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(sign_in_code_pk(contact_id))))
            .update_expression("ADD wrong :one")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":one", number(1))
            .send()
            .await;
        match counted {
            Ok(_) => Ok(false),
            Err(err) if is_conditional_failure(&err) => Ok(false),
            Err(err) => Err(sdk_error("counting a wrong sign-in code", err)),
        }
    }

    async fn give_back_allowance(&self, key_text: &str, window_secs: i64, now: Timestamp) -> anyhow::Result<()> {
        let update = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(format!("RATE#{key_text}#{}", now.window(window_secs)))))
            .update_expression("ADD hits :minus_one")
            .condition_expression("hits > :zero")
            .expression_attribute_values(":minus_one", number(-1))
            .expression_attribute_values(":zero", number(0));
        update_once(update, "giving back a rate-limit allowance").await?;
        Ok(())
    }

    async fn list_page(&self, prefix: &str, page: &PageRequest) -> anyhow::Result<Paged<Contact>> {
        self.list_contacts(prefix, page).await
    }
}

pub struct DynamoSessions {
    client: Client,
    table: String,
    /// Where what rides along with a new session goes: contacts, outbox and audit tables.
    queue_tables: Option<(String, String, String)>,
}

impl DynamoSessions {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoSessions { client, table: table.into(), queue_tables: None }
    }

    /// Lets a new session carry writes of its own (a sign-in's audit entry) to these tables.
    pub fn queueing_to(mut self, contacts: &str, outbox: &str, audit: &str) -> Self {
        self.queue_tables = Some((contacts.to_string(), outbox.to_string(), audit.to_string()));
        self
    }
}

#[async_trait]
impl SessionStore for DynamoSessions {
    async fn list_for_contact(&self, contact_id: &ContactId) -> anyhow::Result<Vec<Session>> {
        // The `by-contact` index holds the keys only: the sessions themselves in one batch read.
        let query = self
            .client
            .query()
            .table_name(&self.table)
            .index_name("by-contact")
            .key_condition_expression("contact_id = :contact")
            .expression_attribute_values(":contact", AttributeValue::S(contact_id.to_string()));
        let keys = super::dynamodb_pages::query_to_end(query, "listing a contact's sessions").await?;
        let items = super::dynamodb_pages::batch_get_in_order(&self.client, &self.table, &["pk"], keys).await?;
        items
            .into_iter()
            .map(|item| Ok(serde_dynamo::from_item::<_, SessionItem>(item).context("reading a session")?.session))
            .collect()
    }

    async fn create(&self, session: &Session, queued: &[Queued]) -> anyhow::Result<()> {
        let item: Item = serde_dynamo::to_item(SessionItem {
            pk: session.id_digest.clone(),
            session: session.clone(),
            ttl: session.expires_at,
        })?;
        if queued.is_empty() {
            return put_under_new_key(&self.client, &self.table, item, "storing a session").await;
        }
        let (contacts, outbox, audit) =
            self.queue_tables.as_ref().ok_or_else(|| anyhow::anyhow!("the session store queues nothing"))?;
        // One transaction: the session exists if and only if its audit entry does. (The SDK's
        // idempotency token makes its retry of a lost answer find the transaction done.)
        let mut items = Transaction::default();
        items.push(put_new(&self.table, item)?, Guards::Record);
        items.extend(queued_items(&QueueTables { contacts, outbox, audit }, queued)?);
        items.run(&self.client).await.map_err(|e| e.into_fault("storing a session"))
    }

    async fn get(&self, id_digest: &str) -> anyhow::Result<Option<Session>> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(id_digest.to_string())))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error("reading a session", e))?;
        let Some(item) = output.item else { return Ok(None) };
        let stored: SessionItem = serde_dynamo::from_item(item).context("reading a stored session")?;
        Ok(Some(stored.session))
    }

    async fn touch(&self, id_digest: &str, now: Timestamp) -> anyhow::Result<()> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(id_digest.to_string())))
            .update_expression("SET last_seen_at = :now")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":now", number(now))
            .send()
            .await;
        match result {
            // Signed out meanwhile: nothing to touch.
            Err(err) if err.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => Ok(()),
            Err(err) => Err(sdk_error("touching a session", err)),
            Ok(_) => Ok(()),
        }
    }

    async fn delete(&self, id_digest: &str) -> anyhow::Result<Option<Session>> {
        let output = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key(id_digest.to_string())))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(|e| sdk_error("deleting a session", e))?;
        let Some(item) = output.attributes.filter(|a| !a.is_empty()) else { return Ok(None) };
        let stored: SessionItem = serde_dynamo::from_item(item).context("reading a deleted session")?;
        Ok(Some(stored.session))
    }
}
