//! Passkeys on DynamoDB.
//!
//! Contacts table: `PASSKEY#<passkey id>` (the digest of its credential id) holds one passkey, with
//! `passkey_owner` = its contact's id, the hash key of the sparse GSI `by-passkey-owner` (only
//! passkey items carry it), which lists a contact's passkeys without a scan. Adding or removing one
//! writes the contact's new session epoch and the notice in the same transaction.
//!
//! Sessions table: `CEREMONY#<digest of the ceremony id>` holds a registration's or sign-in's
//! state for five minutes (TTL removes it late; reads check `expires_at`). Finishing deletes it
//! with a condition, so only one finish can use it.

use anyhow::Context;
use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeValue, Delete, ReturnValue, TransactWriteItem};
use serde::{Deserialize, Serialize};

use super::dynamodb::{
    DynamoContacts, Guards, Item, Transaction, TransactionError, is_conditional_failure, key, number, put_new,
    sdk_error,
};
use crate::domain::ids::ContactId;
use crate::domain::passkey::{Ceremony, StoredPasskey};
use crate::domain::time::Timestamp;
use crate::ports::{PasskeyStore, Queued};

/// The contacts table's index of passkeys by contact.
pub const BY_OWNER_INDEX: &str = "by-passkey-owner";

fn passkey_pk(id: &str) -> String {
    format!("PASSKEY#{id}")
}

fn ceremony_pk(id_digest: &str) -> String {
    format!("CEREMONY#{id_digest}")
}

#[derive(Serialize, Deserialize)]
struct PasskeyItem {
    pk: String,
    passkey_owner: ContactId,
    #[serde(flatten)]
    passkey: StoredPasskey,
}

#[derive(Serialize, Deserialize)]
struct CeremonyItem {
    pk: String,
    #[serde(flatten)]
    ceremony: Ceremony,
    ttl: Timestamp,
}

pub struct DynamoPasskeys {
    client: Client,
    contacts_table: String,
    sessions_table: String,
    /// The contact updates and outbox items that go with a change.
    contacts: DynamoContacts,
}

impl DynamoPasskeys {
    pub fn new(
        client: Client,
        contacts_table: impl Into<String>,
        sessions_table: impl Into<String>,
        outbox_table: impl Into<String>,
        audit_table: impl Into<String>,
    ) -> Self {
        let contacts_table = contacts_table.into();
        DynamoPasskeys {
            contacts: DynamoContacts::new(client.clone(), contacts_table.clone(), outbox_table, audit_table),
            client,
            contacts_table,
            sessions_table: sessions_table.into(),
        }
    }

    /// The contact's new session epoch and the notices: the rest of a change's transaction.
    fn epoch_and_emails(
        &self,
        contact_id: &ContactId,
        epoch: &str,
        now: Timestamp,
        emails: &[Queued],
    ) -> anyhow::Result<Transaction> {
        let update = self
            .contacts
            .contact_update(contact_id)
            .update_expression("SET session_epoch = :epoch, updated_at = :now")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":epoch", AttributeValue::S(epoch.to_string()))
            .expression_attribute_values(":now", number(now))
            .build()?;
        let mut items = Transaction::default();
        // A contact gone meanwhile is nothing a client can cause (contacts are not deleted).
        items.push(TransactWriteItem::builder().update(update).build(), Guards::Nothing);
        items.extend(self.contacts.queued_items(emails)?);
        Ok(items)
    }
}

fn read_passkey(item: Item) -> anyhow::Result<StoredPasskey> {
    let stored: PasskeyItem = serde_dynamo::from_item(item).context("reading a stored passkey")?;
    Ok(stored.passkey)
}

#[async_trait]
impl PasskeyStore for DynamoPasskeys {
    async fn save_ceremony(&self, ceremony: &Ceremony) -> anyhow::Result<()> {
        let item: Item = serde_dynamo::to_item(CeremonyItem {
            pk: ceremony_pk(&ceremony.id_digest),
            ceremony: ceremony.clone(),
            ttl: ceremony.expires_at,
        })?;
        super::dynamodb::put_under_new_key(&self.client, &self.sessions_table, item, "storing a passkey ceremony").await
    }

    async fn take_ceremony(&self, id_digest: &str) -> anyhow::Result<Option<Ceremony>> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.sessions_table)
            .set_key(Some(key(ceremony_pk(id_digest))))
            .condition_expression("attribute_exists(pk)")
            .return_values(ReturnValue::AllOld)
            .send()
            .await;
        let output = match result {
            Ok(output) => output,
            // Never started, or another finish took it first.
            Err(err) if is_conditional_failure(&err) => return Ok(None),
            Err(err) => return Err(sdk_error("taking a passkey ceremony", err)),
        };
        let Some(item) = output.attributes.filter(|a| !a.is_empty()) else { return Ok(None) };
        let stored: CeremonyItem = serde_dynamo::from_item(item).context("reading a passkey ceremony")?;
        Ok(Some(stored.ceremony))
    }

    async fn list(&self, contact_id: &ContactId) -> anyhow::Result<Vec<StoredPasskey>> {
        let mut found = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let output = self
                .client
                .query()
                .table_name(&self.contacts_table)
                .index_name(BY_OWNER_INDEX)
                .key_condition_expression("passkey_owner = :owner")
                .expression_attribute_values(":owner", AttributeValue::S(contact_id.to_string()))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| sdk_error("listing passkeys", e))?;
            for item in output.items.unwrap_or_default() {
                found.push(read_passkey(item)?);
            }
            match output.last_evaluated_key {
                Some(next) if !next.is_empty() => start = Some(next),
                _ => break,
            }
        }
        found.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(found)
    }

    async fn find(&self, id: &str) -> anyhow::Result<Option<StoredPasskey>> {
        let output = self
            .client
            .get_item()
            .table_name(&self.contacts_table)
            .set_key(Some(key(passkey_pk(id))))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error("reading a passkey", e))?;
        output.item.map(read_passkey).transpose()
    }

    async fn add(
        &self,
        passkey: &StoredPasskey,
        epoch: &str,
        now: Timestamp,
        emails: &[Queued],
    ) -> anyhow::Result<bool> {
        let item: Item = serde_dynamo::to_item(PasskeyItem {
            pk: passkey_pk(&passkey.id),
            passkey_owner: passkey.contact_id.clone(),
            passkey: passkey.clone(),
        })?;
        let mut items = Transaction::default();
        items.push(put_new(&self.contacts_table, item)?, Guards::Record);
        items.extend(self.epoch_and_emails(&passkey.contact_id, epoch, now, emails)?);
        match items.run(&self.client).await {
            Ok(()) => Ok(true),
            Err(TransactionError::Refused(Guards::Record)) => Ok(false),
            Err(err) => Err(err.into_fault("adding a passkey")),
        }
    }

    async fn remove(
        &self,
        contact_id: &ContactId,
        id: &str,
        epoch: &str,
        now: Timestamp,
        emails: &[Queued],
    ) -> anyhow::Result<bool> {
        let delete = Delete::builder()
            .table_name(&self.contacts_table)
            .set_key(Some(key(passkey_pk(id))))
            .condition_expression("passkey_owner = :owner")
            .expression_attribute_values(":owner", AttributeValue::S(contact_id.to_string()))
            .build()?;
        let mut items = Transaction::default();
        items.push(TransactWriteItem::builder().delete(delete).build(), Guards::Record);
        items.extend(self.epoch_and_emails(contact_id, epoch, now, emails)?);
        match items.run(&self.client).await {
            Ok(()) => Ok(true),
            Err(TransactionError::Refused(Guards::Record)) => Ok(false),
            Err(err) => Err(err.into_fault("removing a passkey")),
        }
    }

    async fn record_use(
        &self,
        passkey: &StoredPasskey,
        sign_count: u32,
        credential: &str,
        now: Timestamp,
    ) -> anyhow::Result<bool> {
        let update = self
            .client
            .update_item()
            .table_name(&self.contacts_table)
            .set_key(Some(key(passkey_pk(&passkey.id))))
            .update_expression("SET sign_count = :count, credential = :credential, last_used_at = :now")
            .condition_expression("attribute_exists(pk) AND sign_count = :read")
            .expression_attribute_values(":count", number(sign_count))
            .expression_attribute_values(":credential", AttributeValue::S(credential.to_string()))
            .expression_attribute_values(":now", number(now))
            .expression_attribute_values(":read", number(passkey.sign_count));
        super::dynamodb::update_once(update, "recording a passkey's use").await
    }
}
