//! DynamoDB side of group invitations (see `domain::group`).
//!
//! The invitation item of a group invitation with contacts carries `deliveries`, a map from
//! contact id to `{email, status}`, and `delivery_version`, a counter each per-contact record
//! adds to: the aggregate `delivery` is written only by the latest of them, so two deliveries
//! recorded at once never leave a stale aggregate. The fan-out outbox item carries `recipients`
//! and its progress marker `fanned_out`.

use std::collections::HashMap;

use anyhow::Context;
use aws_sdk_dynamodb::types::{AttributeValue, Delete, ReturnValue, TransactWriteItem, Update};

use super::dynamodb::{
    Guards, Item, Transaction, TransactionError, is_conditional_failure, number, outbox_put, put_new, sdk_error,
    update_unless_moved_on,
};
use super::dynamodb_invitations::{
    CODE_SK, DynamoInvitations, DynamoOutbox, INVITATION_SK, InvitationItem, KEEP_AFTER_EXPIRY_SECS, code_item,
    code_pk, invitation_pk, key2, text,
};
use super::dynamodb_list_keys::delivery_partition;
use crate::domain::group::{self, Deliveries};
use crate::domain::ids::{ContactId, InvitationId, MessageId};
use crate::domain::invitation::{Delivery, Invitation};
use crate::domain::outbox::OutboxMessage;
use crate::domain::time::Timestamp;
use crate::ports::Queued;

const DELIVERIES: &str = "deliveries";

impl DynamoInvitations {
    pub(super) async fn create_group(
        &self,
        invitation: &Invitation,
        fanout: &OutboxMessage,
        queued: &[Queued],
    ) -> anyhow::Result<()> {
        let mut item: Item = serde_dynamo::to_item(InvitationItem {
            pk: invitation_pk(&invitation.invitation_id),
            sk: INVITATION_SK.into(),
            invitation: invitation.clone(),
            ttl: invitation.expires_at + KEEP_AFTER_EXPIRY_SECS,
            listed: Some(super::dynamodb_list_keys::ListedInvitation::of(invitation)),
        })?;
        item.insert(
            DELIVERIES.into(),
            serde_dynamo::to_attribute_value(group::pending_deliveries(&fanout.recipients))?,
        );
        let mut items = Transaction::default();
        items.push(put_new(&self.invitations_table, item)?, Guards::Nothing);
        items.push(put_new(&self.invitations_table, code_item(&invitation.code_digest, invitation)?)?, Guards::Nothing);
        items.push(outbox_put(&self.outbox_table, fanout)?, Guards::Nothing);
        items.extend(self.queued(queued)?);
        items.run(&self.client).await.map_err(|e| e.into_fault("creating a group invitation"))
    }

    pub(super) async fn replace_group_code_item(
        &self,
        invitation: &Invitation,
        new_digest: &str,
        fanout: &OutboxMessage,
        queued: &[Queued],
    ) -> anyhow::Result<bool> {
        let update = Update::builder()
            .table_name(&self.invitations_table)
            .set_key(Some(key2(invitation_pk(&invitation.invitation_id), INVITATION_SK)))
            .update_expression(
                "SET code_digest = :new, message_id = :message, delivery = :pending, list_delivery = :list_delivery, \
                 deliveries = :deliveries REMOVE delivery_error, delivered_at",
            )
            .expression_attribute_values(
                ":list_delivery",
                delivery_partition(Delivery::Pending, &invitation.invitation_id),
            )
            .condition_expression("revoked = :false AND code_digest = :old")
            .expression_attribute_values(":new", text(new_digest))
            .expression_attribute_values(":old", text(&invitation.code_digest))
            .expression_attribute_values(":message", text(&fanout.message_id))
            .expression_attribute_values(":pending", serde_dynamo::to_attribute_value(Delivery::Pending)?)
            .expression_attribute_values(
                ":deliveries",
                serde_dynamo::to_attribute_value(group::pending_deliveries(&fanout.recipients))?,
            )
            .expression_attribute_values(":false", AttributeValue::Bool(false))
            .build()?;
        let delete_old = Delete::builder()
            .table_name(&self.invitations_table)
            .set_key(Some(key2(code_pk(&invitation.code_digest), CODE_SK)))
            .build()?;
        let mut items = Transaction::default();
        items.push(TransactWriteItem::builder().update(update).build(), Guards::Record);
        items.push(TransactWriteItem::builder().delete(delete_old).build(), Guards::Nothing);
        items.push(put_new(&self.invitations_table, code_item(new_digest, invitation)?)?, Guards::Nothing);
        items.push(outbox_put(&self.outbox_table, fanout)?, Guards::Nothing);
        items.extend(self.queued(queued)?);
        match items.run(&self.client).await {
            Ok(()) => Ok(true),
            Err(TransactionError::Refused(Guards::Record)) => Ok(false),
            Err(err) => Err(err.into_fault("replacing a group invitation's code")),
        }
    }

    pub(super) async fn read_deliveries(&self, invitation_id: &InvitationId) -> anyhow::Result<Deliveries> {
        let output = self
            .client
            .get_item()
            .table_name(&self.invitations_table)
            .set_key(Some(key2(invitation_pk(invitation_id), INVITATION_SK)))
            .projection_expression(DELIVERIES)
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error("reading an invitation's deliveries", e))?;
        deliveries_of(output.item.as_ref())
    }

    pub(super) async fn record_one_delivery(
        &self,
        invitation_id: &InvitationId,
        fanout_id: &MessageId,
        contact_id: &ContactId,
        delivery: Delivery,
        error: Option<&str>,
        now: Timestamp,
    ) -> anyhow::Result<()> {
        let key = key2(invitation_pk(invitation_id), INVITATION_SK);
        let recorded = self
            .client
            .update_item()
            .table_name(&self.invitations_table)
            .set_key(Some(key.clone()))
            .update_expression("SET deliveries.#c.#st = :status ADD delivery_version :one")
            .condition_expression("message_id = :fanout AND attribute_exists(deliveries.#c)")
            .expression_attribute_names("#c", contact_id.as_str())
            .expression_attribute_names("#st", "status")
            .expression_attribute_values(":status", serde_dynamo::to_attribute_value(delivery)?)
            .expression_attribute_values(":one", number(1))
            .expression_attribute_values(":fanout", text(fanout_id))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        let item = match recorded {
            Ok(output) => output.attributes.unwrap_or_default(),
            // A resend replaced this fan-out (or the contact is not listed): nothing to record.
            Err(err) if is_conditional_failure(&err) => return Ok(()),
            Err(err) => return Err(sdk_error("recording a contact's delivery", err)),
        };
        let deliveries = deliveries_of(Some(&item))?;
        let version = item.get("delivery_version").cloned().context("the delivery version is missing")?;
        let overall = group::aggregate(deliveries.values().map(|d| &d.status));
        let mut builder = self
            .client
            .update_item()
            .table_name(&self.invitations_table)
            .set_key(Some(key))
            .condition_expression("message_id = :fanout AND delivery_version = :version")
            .expression_attribute_values(":fanout", text(fanout_id))
            .expression_attribute_values(":version", version)
            .expression_attribute_values(":delivery", serde_dynamo::to_attribute_value(overall)?)
            .expression_attribute_values(":list_delivery", delivery_partition(overall, invitation_id))
            .expression_attribute_values(":now", number(now));
        builder = match error {
            Some(error) => builder
                .update_expression(
                    "SET delivery = :delivery, list_delivery = :list_delivery, delivered_at = :now, \
                     delivery_error = :error",
                )
                .expression_attribute_values(":error", text(&format!("{contact_id}: {error}"))),
            None => builder
                .update_expression("SET delivery = :delivery, list_delivery = :list_delivery, delivered_at = :now"),
        };
        // Refused: a later record (which saw this one) writes the aggregate, or a resend came between.
        update_unless_moved_on(builder, "recording a group invitation's delivery").await
    }
}

fn deliveries_of(item: Option<&Item>) -> anyhow::Result<Deliveries> {
    match item.and_then(|item| item.get(DELIVERIES)) {
        None => Ok(Deliveries::new()),
        Some(value) => serde_dynamo::from_attribute_value(value.clone()).context("reading deliveries"),
    }
}

impl DynamoOutbox {
    pub(super) async fn fan_out_batch(
        &self,
        fanout_id: &MessageId,
        done: u32,
        batch: &[OutboxMessage],
    ) -> anyhow::Result<bool> {
        let condition =
            if done == 0 { "attribute_not_exists(fanned_out) OR fanned_out = :done" } else { "fanned_out = :done" };
        let marker = Update::builder()
            .table_name(&self.table)
            .set_key(Some(HashMap::from([("pk".to_string(), text(fanout_id))])))
            .update_expression("SET fanned_out = :after")
            .condition_expression(format!("attribute_exists(pk) AND ({condition})"))
            .expression_attribute_values(":done", number(done))
            .expression_attribute_values(":after", number(done as usize + batch.len()))
            .build()?;
        let mut items = Transaction::default();
        items.push(TransactWriteItem::builder().update(marker).build(), Guards::Record);
        for message in batch {
            items.push(outbox_put(&self.table, message)?, Guards::Nothing);
        }
        match items.run(&self.client).await {
            Ok(()) => Ok(true),
            // Another run moved the marker: its emails are queued; nothing is written twice.
            Err(TransactionError::Refused(_)) => Ok(false),
            Err(err) => Err(err.into_fault("fanning out a group invitation")),
        }
    }
}
