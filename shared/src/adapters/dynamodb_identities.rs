//! External identities in the contacts table:
//! - `IDENTITY#<provider>#<subject>` (`dynamodb::identity_pk`): the guard item that makes an identity belong to one account
//!   (its `contact_id`); the account's own list of identities is on its contact item;
//! - `OIDCSTATE#<digest of state>`: a browser's trip to a provider, taken once, gone at its TTL.

use aws_sdk_dynamodb::types::{AttributeValue, Delete, ReturnValue, TransactWriteItem, Update};
use serde::{Deserialize, Serialize};

use super::dynamodb::{
    DynamoContacts, GuardItem, Guards, Transaction, TransactionError, contact_pk, guard_item, identity_pk, key, number,
    put_new,
};
use super::dynamodb_pages::sdk_error;
use crate::domain::contact::Contact;
use crate::domain::identity::{ExternalState, LinkedIdentity};
use crate::domain::ids::ContactId;
use crate::ports::{LinkIdentityError, Queued};

fn state_pk(state_digest: &str) -> String {
    format!("OIDCSTATE#{state_digest}")
}

#[derive(Serialize, Deserialize)]
struct StateItem {
    pk: String,
    #[serde(flatten)]
    state: ExternalState,
    ttl: i64,
}

fn text(value: &str) -> AttributeValue {
    AttributeValue::S(value.to_string())
}

impl DynamoContacts {
    pub(crate) async fn save_state(&self, state_digest: &str, state: &ExternalState) -> anyhow::Result<()> {
        let item = serde_dynamo::to_item(StateItem {
            pk: state_pk(state_digest),
            state: state.clone(),
            ttl: state.expires_at.as_secs(),
        })?;
        let put = self.client.put_item().table_name(&self.table).set_item(Some(item));
        put.condition_expression("attribute_not_exists(pk)")
            .send()
            .await
            .map_err(|e| sdk_error("keeping a provider trip's state", e))?;
        Ok(())
    }

    /// Marks the state taken by this call and returns it: of two callbacks with one state, one
    /// gets it. Not a delete: an SDK retry of a take whose answer was lost must find the item it
    /// took (its own mark) rather than nothing; the TTL removes it.
    pub(crate) async fn take_state(&self, state_digest: &str) -> anyhow::Result<Option<ExternalState>> {
        let mark = crate::domain::secret::random_token();
        let taken = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(state_pk(state_digest))))
            .update_expression("SET taken_by = :mark")
            .condition_expression("attribute_exists(pk) AND (attribute_not_exists(taken_by) OR taken_by = :mark)")
            .expression_attribute_values(":mark", text(&mark))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match taken {
            Ok(output) => match output.attributes {
                Some(item) if !item.is_empty() => Ok(Some(serde_dynamo::from_item::<_, StateItem>(item)?.state)),
                _ => Ok(None),
            },
            Err(err) if super::dynamodb::is_conditional_failure(&err) => Ok(None),
            Err(err) => Err(sdk_error("taking a provider trip's state", err)),
        }
    }

    pub(crate) async fn owner_of_identity(&self, provider: &str, subject: &str) -> anyhow::Result<Option<ContactId>> {
        let found = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(identity_pk(provider, subject))))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error("reading an identity", e))?;
        match found.item {
            Some(item) => Ok(Some(serde_dynamo::from_item::<_, GuardItem>(item)?.contact_id)),
            None => Ok(None),
        }
    }

    pub(crate) async fn link(
        &self,
        current: &Contact,
        identity: &LinkedIdentity,
        queued: &[Queued],
    ) -> Result<Contact, LinkIdentityError> {
        let now = identity.linked_at;
        let update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key(contact_pk(&current.contact_id))))
            .update_expression(
                "SET identities = list_append(if_not_exists(identities, :none), :new), updated_at = :now",
            )
            .condition_expression(
                "attribute_exists(pk) AND attribute_not_exists(deleted_at) AND session_epoch = :epoch",
            )
            .expression_attribute_values(":none", AttributeValue::L(Vec::new()))
            .expression_attribute_values(
                ":new",
                AttributeValue::L(vec![serde_dynamo::to_attribute_value(identity).map_err(anyhow::Error::from)?]),
            )
            .expression_attribute_values(":now", number(now))
            .expression_attribute_values(":epoch", text(&current.session_epoch))
            .build()
            .map_err(anyhow::Error::from)?;
        let mut items = Transaction::default();
        items.push(TransactWriteItem::builder().update(update).build(), Guards::Record);
        let guard = guard_item(identity_pk(&identity.provider, &identity.subject), &current.contact_id)?;
        items.push(put_new(&self.table, guard)?, Guards::Identity);
        items.extend(self.queued_items(queued)?);
        match items.run(&self.client).await {
            Ok(()) => {
                let mut linked = current.clone();
                linked.identities.push(identity.clone());
                linked.updated_at = now;
                Ok(linked)
            }
            Err(TransactionError::Refused(Guards::Identity)) => Err(LinkIdentityError::Taken),
            Err(TransactionError::Refused(_) | TransactionError::Conflict) => Err(LinkIdentityError::Changed),
            Err(err) => Err(err.into_fault("linking an identity").into()),
        }
    }

    pub(crate) async fn unlink(
        &self,
        current: &Contact,
        provider: &str,
        subject: &str,
        now: crate::domain::time::Timestamp,
        queued: &[Queued],
    ) -> Result<Contact, LinkIdentityError> {
        let Some(at) = current.identities.iter().position(|i| i.is(provider, subject)) else {
            return Err(LinkIdentityError::Changed);
        };
        // The element at its index as read: a concurrent change moves it, and the write is refused.
        let update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key(contact_pk(&current.contact_id))))
            .update_expression(format!("REMOVE identities[{at}] SET updated_at = :now"))
            .condition_expression(format!(
                "attribute_not_exists(deleted_at) AND identities[{at}].provider = :provider AND identities[{at}].subject = :subject AND size(identities) = :count"
            ))
            .expression_attribute_values(":provider", text(provider))
            .expression_attribute_values(":subject", text(subject))
            .expression_attribute_values(":count", number(current.identities.len()))
            .expression_attribute_values(":now", number(now))
            .build()
            .map_err(anyhow::Error::from)?;
        let guard = Delete::builder()
            .table_name(&self.table)
            .set_key(Some(key(identity_pk(provider, subject))))
            .condition_expression("contact_id = :contact")
            .expression_attribute_values(":contact", text(&current.contact_id))
            .build()
            .map_err(anyhow::Error::from)?;
        let mut items = Transaction::default();
        items.push(TransactWriteItem::builder().update(update).build(), Guards::Record);
        items.push(TransactWriteItem::builder().delete(guard).build(), Guards::Record);
        items.extend(self.queued_items(queued)?);
        match items.run(&self.client).await {
            Ok(()) => {
                let mut unlinked = current.clone();
                unlinked.identities.remove(at);
                unlinked.updated_at = now;
                Ok(unlinked)
            }
            Err(TransactionError::Refused(_) | TransactionError::Conflict) => Err(LinkIdentityError::Changed),
            Err(err) => Err(err.into_fault("unlinking an identity").into()),
        }
    }
}
