//! Two-factor state on DynamoDB.
//!
//! Contacts table: `TWOFACTOR#<contact id>`, one item per contact with its sealed TOTP secret, the
//! last TOTP step used, the email-code switch and current code digest, and the unused recovery
//! codes as a map keyed by digest (so using one is a conditional `REMOVE` of its key). Every write
//! adds to `version`; a change (set-up, confirm, disable, new codes) puts the whole item only over
//! the version it read, with the contact's new session epoch and the notice in one transaction.
//!
//! Sessions table: `PENDING#<digest of the cookie's token>`, a sign-in awaiting its second factor,
//! with its attempt count (a conditional increment before each check) and TTL.

use anyhow::Context;
use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeValue, Put, ReturnValue, TransactWriteItem, Update};
use serde::{Deserialize, Serialize};

use super::dynamodb::{
    Guards, Item, Transaction, TransactionError, contact_pk, is_conditional_failure, key, number, sdk_error,
};
use crate::domain::ids::ContactId;
use crate::domain::time::Timestamp;
use crate::domain::two_factor::{PENDING_SIGN_IN_ATTEMPTS, PendingSignIn, TwoFactor};
use crate::ports::{Queued, TwoFactorStore};

fn two_factor_pk(contact_id: &ContactId) -> String {
    format!("TWOFACTOR#{contact_id}")
}

fn pending_pk(digest: &str) -> String {
    format!("PENDING#{digest}")
}

#[derive(Serialize, Deserialize)]
struct TwoFactorItem {
    pk: String,
    #[serde(flatten)]
    state: TwoFactor,
}

#[derive(Serialize, Deserialize)]
struct PendingItem {
    pk: String,
    #[serde(flatten)]
    pending: PendingSignIn,
    ttl: Timestamp,
}

pub struct DynamoTwoFactor {
    client: Client,
    contacts_table: String,
    sessions_table: String,
    outbox_table: String,
    audit_table: String,
}

impl DynamoTwoFactor {
    pub fn new(
        client: Client,
        contacts_table: impl Into<String>,
        sessions_table: impl Into<String>,
        outbox_table: impl Into<String>,
        audit_table: impl Into<String>,
    ) -> Self {
        DynamoTwoFactor {
            client,
            contacts_table: contacts_table.into(),
            sessions_table: sessions_table.into(),
            outbox_table: outbox_table.into(),
            audit_table: audit_table.into(),
        }
    }

    fn outbox_items(&self, transaction: &mut Transaction, emails: &[Queued]) -> anyhow::Result<()> {
        let tables = super::dynamodb::QueueTables {
            contacts: &self.contacts_table,
            outbox: &self.outbox_table,
            audit: &self.audit_table,
        };
        transaction.extend(super::dynamodb::queued_items(&tables, emails)?);
        Ok(())
    }

    /// Adds one to a live pending sign-in's `counter` (its attempts, its emailed codes) while it is
    /// under `limit` and the pending sign-in has attempts left: the pending sign-in as counted, or
    /// `None` when it is gone, expired, out of attempts or at the limit.
    async fn count_on_pending(
        &self,
        digest: &str,
        now: Timestamp,
        counter: &str,
        limit: u32,
        doing: &str,
    ) -> anyhow::Result<Option<PendingSignIn>> {
        let result = self
            .client
            .update_item()
            .table_name(&self.sessions_table)
            .set_key(Some(key(pending_pk(digest))))
            .update_expression("ADD #counter :one")
            .condition_expression(
                "attribute_exists(pk) AND expires_at > :now AND attempts < :attempts \
                 AND (attribute_not_exists(#counter) OR #counter < :limit)",
            )
            .expression_attribute_names("#counter", counter)
            .expression_attribute_values(":one", number(1))
            .expression_attribute_values(":now", number(now))
            .expression_attribute_values(":attempts", number(PENDING_SIGN_IN_ATTEMPTS))
            .expression_attribute_values(":limit", number(limit))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match result {
            Ok(output) => {
                let Some(item) = output.attributes else { return Ok(None) };
                let stored: PendingItem = serde_dynamo::from_item(item).context("reading a pending sign-in")?;
                Ok(Some(stored.pending))
            }
            Err(err) if is_conditional_failure(&err) => Ok(None),
            Err(err) => Err(sdk_error(doing, err)),
        }
    }

    /// A conditional update of the contact's two-factor item: `false` when its condition failed.
    fn update_state(
        &self,
        contact_id: &ContactId,
    ) -> aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder {
        self.client.update_item().table_name(&self.contacts_table).set_key(Some(key(two_factor_pk(contact_id))))
    }
}

#[async_trait]
impl TwoFactorStore for DynamoTwoFactor {
    async fn get(&self, contact_id: &ContactId) -> anyhow::Result<TwoFactor> {
        let output = self
            .client
            .get_item()
            .table_name(&self.contacts_table)
            .set_key(Some(key(two_factor_pk(contact_id))))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error("reading two-factor state", e))?;
        let Some(item) = output.item else { return Ok(TwoFactor::none(contact_id)) };
        let stored: TwoFactorItem = serde_dynamo::from_item(item).context("reading two-factor state")?;
        Ok(stored.state)
    }

    async fn save(&self, state: &TwoFactor, epoch: Option<&str>, emails: &[Queued]) -> anyhow::Result<bool> {
        let mut written = state.clone();
        written.version = state.version + 1;
        let item: Item = serde_dynamo::to_item(TwoFactorItem { pk: two_factor_pk(&state.contact_id), state: written })?;
        let put = Put::builder().table_name(&self.contacts_table).set_item(Some(item));
        let put = match state.version {
            0 => put.condition_expression("attribute_not_exists(pk)"),
            read => put.condition_expression("version = :read").expression_attribute_values(":read", number(read)),
        };
        let mut transaction = Transaction::default();
        transaction.push(TransactWriteItem::builder().put(put.build()?).build(), Guards::Record);
        if let Some(epoch) = epoch {
            let update = Update::builder()
                .table_name(&self.contacts_table)
                .set_key(Some(key(contact_pk(&state.contact_id))))
                .update_expression("SET session_epoch = :epoch")
                .condition_expression("attribute_exists(pk)")
                .expression_attribute_values(":epoch", AttributeValue::S(epoch.to_string()))
                .build()?;
            transaction.push(TransactWriteItem::builder().update(update).build(), Guards::Record);
        }
        self.outbox_items(&mut transaction, emails)?;
        match transaction.run(&self.client).await {
            Ok(()) => Ok(true),
            Err(TransactionError::Refused(_) | TransactionError::Conflict) => Ok(false),
            Err(err) => Err(err.into_fault("changing two-factor authentication")),
        }
    }

    async fn use_totp_step(&self, contact_id: &ContactId, step: i64) -> anyhow::Result<bool> {
        let update = self
            .update_state(contact_id)
            .update_expression("SET totp_last_step = :step ADD version :one")
            .condition_expression("attribute_exists(totp) AND totp_last_step < :step")
            .expression_attribute_values(":step", number(step))
            .expression_attribute_values(":one", number(1));
        super::dynamodb::update_once(update, "using a TOTP code").await
    }

    async fn use_recovery_code(&self, contact_id: &ContactId, digest: &str) -> anyhow::Result<bool> {
        let update = self
            .update_state(contact_id)
            .update_expression("REMOVE recovery_codes.#code ADD version :one")
            .condition_expression("attribute_exists(recovery_codes.#code)")
            .expression_attribute_names("#code", digest)
            .expression_attribute_values(":one", number(1));
        super::dynamodb::update_once(update, "using a recovery code").await
    }

    async fn set_email_code(
        &self,
        contact_id: &ContactId,
        digest: &str,
        expires_at: Timestamp,
        emails: &[Queued],
    ) -> anyhow::Result<()> {
        let update = Update::builder()
            .table_name(&self.contacts_table)
            .set_key(Some(key(two_factor_pk(contact_id))))
            .update_expression("SET email_code = :code, email_code_expires_at = :expires ADD version :one")
            .condition_expression("email = :on")
            .expression_attribute_values(":code", AttributeValue::S(digest.to_string()))
            .expression_attribute_values(":expires", number(expires_at))
            .expression_attribute_values(":one", number(1))
            .expression_attribute_values(":on", AttributeValue::Bool(true))
            .build()?;
        let mut transaction = Transaction::default();
        transaction.push(TransactWriteItem::builder().update(update).build(), Guards::Record);
        self.outbox_items(&mut transaction, emails)?;
        match transaction.run(&self.client).await {
            // Emailed codes were turned off meanwhile: nothing to send.
            Ok(()) | Err(TransactionError::Refused(_)) => Ok(()),
            Err(err) => Err(err.into_fault("sending a sign-in code")),
        }
    }

    async fn use_email_code(&self, contact_id: &ContactId, digest: &str, now: Timestamp) -> anyhow::Result<bool> {
        let update = self
            .update_state(contact_id)
            .update_expression("REMOVE email_code, email_code_expires_at ADD version :one")
            .condition_expression("email = :on AND email_code = :code AND email_code_expires_at > :now")
            .expression_attribute_values(":code", AttributeValue::S(digest.to_string()))
            .expression_attribute_values(":now", number(now))
            .expression_attribute_values(":on", AttributeValue::Bool(true))
            .expression_attribute_values(":one", number(1));
        super::dynamodb::update_once(update, "using an emailed code").await
    }

    async fn create_pending(&self, pending: &PendingSignIn) -> anyhow::Result<()> {
        let item: Item = serde_dynamo::to_item(PendingItem {
            pk: pending_pk(&pending.id_digest),
            pending: pending.clone(),
            ttl: pending.expires_at,
        })?;
        super::dynamodb::put_under_new_key(&self.client, &self.sessions_table, item, "storing a pending sign-in").await
    }

    async fn find_pending(&self, digest: &str, now: Timestamp) -> anyhow::Result<Option<PendingSignIn>> {
        let output = self
            .client
            .get_item()
            .table_name(&self.sessions_table)
            .set_key(Some(key(pending_pk(digest))))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error("reading a pending sign-in", e))?;
        let Some(item) = output.item else { return Ok(None) };
        let stored: PendingItem = serde_dynamo::from_item(item).context("reading a pending sign-in")?;
        let pending = stored.pending;
        Ok((pending.expires_at > now && pending.attempts < PENDING_SIGN_IN_ATTEMPTS).then_some(pending))
    }

    async fn take_pending_attempt(
        &self,
        digest: &str,
        now: Timestamp,
        limit: u32,
    ) -> anyhow::Result<Option<PendingSignIn>> {
        self.count_on_pending(digest, now, "attempts", limit, "counting a second-factor attempt").await
    }

    async fn take_pending_email(
        &self,
        digest: &str,
        now: Timestamp,
        limit: u32,
    ) -> anyhow::Result<Option<PendingSignIn>> {
        self.count_on_pending(digest, now, "emails_sent", limit, "counting a pending sign-in's emailed code").await
    }

    async fn end_pending(&self, digest: &str) -> anyhow::Result<bool> {
        let output = self
            .client
            .delete_item()
            .table_name(&self.sessions_table)
            .set_key(Some(key(pending_pk(digest))))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(|e| sdk_error("ending a pending sign-in", e))?;
        Ok(output.attributes.is_some_and(|a| !a.is_empty()))
    }
}
