//! Undeliverable addresses in the contacts table (see `domain::deliverability`):
//! - `UNDELIVERABLE#<SHA-256 of the normalised address>`: the mark `send-email` reads before each
//!   email (one read by key; the digest, not the address, so the item names no one);
//! - `email_undeliverable` on the contact whose address it is, what staff and the person see.
//!
//! Both go in one transaction with the audit entry; confirming the address again, or moving to
//! another, removes them (`dynamodb::use_token`).

use aws_sdk_dynamodb::types::{AttributeValue, Delete, Put, TransactWriteItem};
use serde::{Deserialize, Serialize};

use super::dynamodb::{DynamoContacts, Guards, Item, Transaction, TransactionError, key};
use super::dynamodb_pages::sdk_error;
use crate::domain::contact::Contact;
use crate::domain::deliverability::Undeliverable;
use crate::domain::email::Email;
use crate::domain::ids::ContactId;
use crate::domain::secret::digest;
use crate::ports::Queued;

pub(crate) fn undeliverable_pk(address: &Email) -> String {
    format!("UNDELIVERABLE#{}", digest(address.normalized()))
}

#[derive(Serialize, Deserialize)]
struct UndeliverableItem {
    pk: String,
    #[serde(flatten)]
    mark: Undeliverable,
    /// The account the address was the address of when it was marked, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    contact_id: Option<ContactId>,
}

impl DynamoContacts {
    /// The transaction item that removes `address`'s mark (nothing when it has none).
    pub(crate) fn unmark_item(&self, address: &Email) -> anyhow::Result<TransactWriteItem> {
        let delete = Delete::builder().table_name(&self.table).set_key(Some(key(undeliverable_pk(address)))).build()?;
        Ok(TransactWriteItem::builder().delete(delete).build())
    }

    pub(crate) async fn mark(
        &self,
        address: &Email,
        mark: &Undeliverable,
        contact: Option<&Contact>,
        queued: &[Queued],
    ) -> anyhow::Result<bool> {
        let item: Item = serde_dynamo::to_item(UndeliverableItem {
            pk: undeliverable_pk(address),
            mark: mark.clone(),
            contact_id: contact.map(|c| c.contact_id.clone()),
        })?;
        let mut items = Transaction::default();
        // A later notification replaces an earlier mark: the latest reason is the one shown.
        let put = Put::builder().table_name(&self.table).set_item(Some(item)).build()?;
        items.push(TransactWriteItem::builder().put(put).build(), Guards::Nothing);
        if let Some(contact) = contact {
            // Only while the address is still the contact's (it may have moved since it was read).
            let update = self
                .contact_update(&contact.contact_id)
                .update_expression("SET email_undeliverable = :mark")
                .condition_expression("email_normalized = :address")
                .expression_attribute_values(":mark", serde_dynamo::to_attribute_value(mark)?)
                .expression_attribute_values(":address", AttributeValue::S(address.normalized().to_string()))
                .build()?;
            items.push(TransactWriteItem::builder().update(update).build(), Guards::Record);
        }
        items.extend(self.queued_items(queued)?);
        match items.run(&self.client).await {
            Ok(()) => Ok(true),
            Err(TransactionError::Refused(Guards::Record)) => Ok(false),
            Err(err) => Err(err.into_fault("marking an address undeliverable")),
        }
    }

    pub(crate) async fn marked(&self, address: &Email) -> anyhow::Result<bool> {
        // An eventually consistent read: a mark written a moment ago may let one more email
        // through, which bounces again; half the read's cost on every email sent.
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(undeliverable_pk(address))))
            .projection_expression("pk")
            .send()
            .await
            .map_err(|e| sdk_error("reading an address's undeliverable mark", e))?;
        Ok(output.item.is_some())
    }
}
