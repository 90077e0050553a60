//! DynamoDB adapters for invitations and the outbox.
//!
//! Invitations table (keys `pk`, `sk`; GSI `by-contact` on `contact_id`; TTL on `ttl`):
//! - `INVITATION#<id>` / `INVITATION`: the invitation.
//! - `INVITATION#<id>` / `REDEMPTION#<time>#<contact id>`: its redemptions (one query reads all);
//!   each one's source address apart, under `REDEMPTION_IP#<time>#<contact id>` with a TTL of
//!   `PORTAL_AUDIT_RETENTION_DAYS`, so that the address goes and the redemption stays.
//! - `CODE#<sha-256 of the code>` / `CODE`: finds the invitation by its code.
//! - `IDEMPOTENCY#<sha-256 of route, caller, key>` / `IDEMPOTENCY`: an `Idempotency-Key` and the
//!   first answer (24 hours).
//!
//! Outbox table (key `pk` = message id; stream NEW_IMAGE; TTL on `ttl`).

use crate::domain::ids::{ContactId, InvitationId, MessageId};
use crate::domain::time::Timestamp;
use std::collections::HashMap;

use anyhow::Context;
use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::{
    AttributeValue, Delete, Put, ReturnValue, ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update,
};
use serde::{Deserialize, Serialize};

use super::dynamodb::{
    Guards, Item, LeaseTaken, OutboxItem, QueueTables, Transaction, TransactionError, contact_pk, guard_item,
    identity_pk, is_conditional_failure, new_contact_items, number, outbox_put, put_new, queued_items, sdk_error,
    take_lease, update_unless_moved_on, username_pk,
};
use super::dynamodb_list_keys::{delivery_partition, state_partition};
use super::dynamodb_pages::{batch_get_in_order, query_to_end};
use crate::domain::event::PortalEvent;
use crate::domain::idempotency::{self, IdempotencyKey, IdempotentStart};
use crate::domain::invitation::{Delivery, Invitation, Redemption};
use crate::domain::listing::{InvitationFilter, PageRequest, Paged, StoredState};
use crate::domain::outbox::{Claim, LEASE_SECS, OutboxMessage, RETENTION_SECS};
use crate::ports::Queued;
use crate::ports::{ContactChange, InvitationStore, Outbox, RedeemError};

/// Invitations stay visible to administrators this long after they expire, then TTL removes them.
pub(super) const KEEP_AFTER_EXPIRY_SECS: i64 = 90 * 86_400;
pub(super) const INVITATION_SK: &str = "INVITATION";
pub(super) const CODE_SK: &str = "CODE";

pub(super) fn invitation_pk(invitation_id: &InvitationId) -> String {
    format!("INVITATION#{invitation_id}")
}

/// An idempotency key of a request to this table's routes (`POST /admin/invitations`), with the
/// request's digest and, once answered, the answer; TTL removes it after 24 hours.
fn idempotency_pk(key_digest: &str) -> String {
    format!("IDEMPOTENCY#{key_digest}")
}
const IDEMPOTENCY_SK: &str = "IDEMPOTENCY";

/// A redemption's sort key: when, and by whom.
fn redemption_sk(redemption: &Redemption) -> String {
    format!("{REDEMPTION}{}", redemption_suffix(redemption))
}

const REDEMPTION: &str = "REDEMPTION#";
const REDEMPTION_IP: &str = "REDEMPTION_IP#";

fn redemption_suffix(redemption: &Redemption) -> String {
    format!("{:012}#{}", redemption.redeemed_at, redemption.contact_id)
}

pub(super) fn code_pk(digest: &str) -> String {
    format!("CODE#{digest}")
}

pub(super) fn key2(pk: String, sk: &str) -> Item {
    HashMap::from([("pk".to_string(), AttributeValue::S(pk)), ("sk".to_string(), AttributeValue::S(sk.to_string()))])
}

pub(super) fn text(value: &str) -> AttributeValue {
    AttributeValue::S(value.to_string())
}

fn list(values: &[String]) -> AttributeValue {
    AttributeValue::L(values.iter().map(|v| text(v)).collect())
}

#[derive(Serialize, Deserialize)]
pub(super) struct InvitationItem {
    pub(super) pk: String,
    pub(super) sk: String,
    #[serde(flatten)]
    pub(super) invitation: Invitation,
    pub(super) ttl: Timestamp,
    /// The keys of the list indexes (see `dynamodb_listing`); absent on invitations stored before
    /// the list existed, which the indexes therefore leave out.
    #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
    pub(super) listed: Option<super::dynamodb_list_keys::ListedInvitation>,
}

#[derive(Serialize, Deserialize)]
struct CodeItem {
    pk: String,
    sk: String,
    invitation_id: InvitationId,
    ttl: Timestamp,
}

#[derive(Serialize, Deserialize)]
struct RedemptionItem {
    pk: String,
    sk: String,
    #[serde(flatten)]
    redemption: Redemption,
}

/// A redemption's source address, kept until its TTL (the redemption item holds none; one written
/// before the split holds its own, read as it is).
#[derive(Serialize, Deserialize)]
struct SourceAddressItem {
    pk: String,
    sk: String,
    source_ip: String,
    ttl: Timestamp,
}

pub(super) fn code_item(digest: &str, invitation: &Invitation) -> anyhow::Result<Item> {
    Ok(serde_dynamo::to_item(CodeItem {
        pk: code_pk(digest),
        sk: CODE_SK.into(),
        invitation_id: invitation.invitation_id.clone(),
        ttl: invitation.expires_at,
    })?)
}

/// The transaction items that create an invitation: the invitation, its code lookup and the outbox
/// message carrying the code (also used by bulk imports, so every invitation is stored alike).
pub(crate) fn new_invitation_items(
    invitations_table: &str,
    outbox_table: &str,
    invitation: &Invitation,
    message: &OutboxMessage,
) -> anyhow::Result<Transaction> {
    let item: Item = serde_dynamo::to_item(InvitationItem {
        pk: invitation_pk(&invitation.invitation_id),
        sk: INVITATION_SK.into(),
        invitation: invitation.clone(),
        ttl: invitation.expires_at + KEEP_AFTER_EXPIRY_SECS,
        listed: Some(super::dynamodb_list_keys::ListedInvitation::of(invitation)),
    })?;
    let mut items = Transaction::default();
    items.push(put_new(invitations_table, item)?, Guards::Nothing);
    items.push(put_new(invitations_table, code_item(&invitation.code_digest, invitation)?)?, Guards::Nothing);
    items.push(outbox_put(outbox_table, message)?, Guards::Nothing);
    Ok(items)
}

pub struct DynamoInvitations {
    pub(super) client: Client,
    pub(super) invitations_table: String,
    contacts_table: String,
    pub(super) outbox_table: String,
    /// Where the audit entries of staff's changes go (in the same transaction).
    audit_table: String,
    /// How long a redemption's source address is kept (`PORTAL_AUDIT_RETENTION_DAYS`).
    source_address_secs: i64,
}

impl DynamoInvitations {
    pub fn new(client: Client, invitations_table: &str, contacts_table: &str, outbox_table: &str) -> Self {
        DynamoInvitations {
            client,
            invitations_table: invitations_table.into(),
            contacts_table: contacts_table.into(),
            outbox_table: outbox_table.into(),
            audit_table: String::new(),
            source_address_secs: crate::config::DEFAULT_AUDIT_RETENTION_DAYS * 86_400,
        }
    }

    /// Writes the audit entries that go with a change to `audit_table`.
    pub fn auditing_to(self, audit_table: &str) -> Self {
        DynamoInvitations { audit_table: audit_table.into(), ..self }
    }

    /// The items that write `queued` along with a change.
    pub(super) fn queued(&self, queued: &[Queued]) -> anyhow::Result<Transaction> {
        if self.audit_table.is_empty() && queued.iter().any(|q| matches!(q, Queued::Audit(_))) {
            anyhow::bail!("the invitation store has no audit table");
        }
        let tables =
            QueueTables { contacts: &self.contacts_table, outbox: &self.outbox_table, audit: &self.audit_table };
        queued_items(&tables, queued)
    }

    /// Redemptions' source addresses expire `secs` after the redemption.
    pub fn keeping_source_addresses_for(self, secs: i64) -> Self {
        DynamoInvitations { source_address_secs: secs, ..self }
    }

    async fn get_item(&self, pk: String, sk: &str) -> anyhow::Result<Option<Item>> {
        let output = self
            .client
            .get_item()
            .table_name(&self.invitations_table)
            .set_key(Some(key2(pk, sk)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error("reading an invitation item", e))?;
        Ok(output.item)
    }

    /// The transaction items that apply `change` to the contacts table, each with what a failed
    /// condition on it means.
    fn contact_change_items(&self, change: &ContactChange, now: Timestamp) -> anyhow::Result<Transaction> {
        let table = &self.contacts_table;
        let update = |expression: String,
                      condition: &str,
                      values: Vec<(&str, AttributeValue)>,
                      contact_id: &ContactId|
         -> anyhow::Result<TransactWriteItem> {
            let mut builder = Update::builder()
                .table_name(table)
                .set_key(Some(HashMap::from([("pk".to_string(), text(&contact_pk(contact_id)))])))
                .update_expression(expression)
                .condition_expression(condition)
                .expression_attribute_names("#roles", "roles");
            for (name, value) in values {
                builder = builder.expression_attribute_values(name, value);
            }
            Ok(TransactWriteItem::builder().update(builder.build()?).build())
        };
        Ok(match change {
            ContactChange::SetCredentials { contact_id, password_hash, username, roles, account_id, terms } => {
                let mut expression =
                    "SET password_hash = :hash, #roles = :roles, email_confirmed = :true, updated_at = :now"
                        .to_string();
                let mut values = vec![
                    (":hash", serde_dynamo::to_attribute_value(password_hash)?),
                    (":roles", list(roles)),
                    (":true", AttributeValue::Bool(true)),
                    (":now", number(now)),
                ];
                if let Some(username) = username {
                    expression.push_str(", username = :username, username_normalized = :username_normalized");
                    values.push((":username", text(&username.display)));
                    values.push((":username_normalized", text(&username.normalized)));
                }
                if let Some(account_id) = account_id {
                    expression.push_str(", account_id = :account");
                    values.push((":account", text(account_id)));
                }
                if let Some(terms) = terms {
                    expression.push_str(", terms_accepted = :terms");
                    values.push((":terms", serde_dynamo::to_attribute_value(terms)?));
                }
                let item = update(
                    expression,
                    // A deleted account (a tombstone) is never given credentials or roles again.
                    "attribute_exists(pk) AND attribute_not_exists(password_hash) AND attribute_not_exists(deleted_at)",
                    values,
                    contact_id,
                )?;
                let mut items = Transaction::default();
                items.push(item, Guards::Record);
                if let Some(username) = username {
                    items.push(
                        put_new(table, guard_item(username_pk(&username.normalized), contact_id)?)?,
                        Guards::Username,
                    );
                }
                items
            }
            ContactChange::Create(contact) => new_contact_items(table, contact)?,
            ContactChange::Assign { contact_id, roles, account_id, terms } => {
                let mut expression = "SET #roles = :roles, updated_at = :now".to_string();
                let mut values = vec![(":roles", list(roles)), (":now", number(now))];
                if let Some(account_id) = account_id {
                    expression.push_str(", account_id = :account");
                    values.push((":account", text(account_id)));
                }
                if let Some(terms) = terms {
                    expression.push_str(", terms_accepted = :terms");
                    values.push((":terms", serde_dynamo::to_attribute_value(terms)?));
                }
                let mut items = Transaction::default();
                items.push(
                    update(
                        expression,
                        "attribute_exists(pk) AND attribute_not_exists(deleted_at)",
                        values,
                        contact_id,
                    )?,
                    Guards::Record,
                );
                items
            }
            ContactChange::LinkIdentity { contact_id, identity, roles, account_id, terms } => {
                let mut expression = "SET identities = list_append(if_not_exists(identities, :none), :new), \
                                      #roles = :roles, email_confirmed = :true, updated_at = :now"
                    .to_string();
                let mut values = vec![
                    (":none", AttributeValue::L(Vec::new())),
                    (":new", AttributeValue::L(vec![serde_dynamo::to_attribute_value(identity)?])),
                    (":roles", list(roles)),
                    (":true", AttributeValue::Bool(true)),
                    (":now", number(now)),
                ];
                if let Some(account_id) = account_id {
                    expression.push_str(", account_id = :account");
                    values.push((":account", text(account_id)));
                }
                if let Some(terms) = terms {
                    expression.push_str(", terms_accepted = :terms");
                    values.push((":terms", serde_dynamo::to_attribute_value(terms)?));
                }
                let mut items = Transaction::default();
                // As new credentials: only a contact that has none, and never a tombstone.
                let condition =
                    "attribute_exists(pk) AND attribute_not_exists(password_hash) AND attribute_not_exists(deleted_at)";
                items.push(update(expression, condition, values, contact_id)?, Guards::Record);
                let guard = guard_item(identity_pk(&identity.provider, &identity.subject), contact_id)?;
                items.push(put_new(table, guard)?, Guards::Identity);
                items
            }
        })
    }
}

#[async_trait]
impl InvitationStore for DynamoInvitations {
    async fn erase_invitee(&self, invitation_id: &InvitationId) -> anyhow::Result<()> {
        let erase = self
            .client
            .update_item()
            .table_name(&self.invitations_table)
            .set_key(Some(key2(invitation_pk(invitation_id), INVITATION_SK)))
            .update_expression("REMOVE email, first_name, last_name")
            .condition_expression("attribute_exists(pk)")
            .send()
            .await;
        match erase {
            Ok(_) => Ok(()),
            Err(err) if is_conditional_failure(&err) => Ok(()),
            Err(err) => Err(sdk_error("erasing an invitee", err)),
        }
    }

    async fn create_with_events(
        &self,
        invitation: &Invitation,
        message: &OutboxMessage,
        queued: &[Queued],
    ) -> anyhow::Result<()> {
        let mut items = new_invitation_items(&self.invitations_table, &self.outbox_table, invitation, message)?;
        items.extend(self.queued(queued)?);
        // A retry of an attempt DynamoDB committed is answered as the first: the SDK sends each
        // transaction's retries under one ClientRequestToken.
        items.run(&self.client).await.map_err(|e| e.into_fault("creating an invitation"))
    }

    async fn get(&self, invitation_id: &InvitationId) -> anyhow::Result<Option<Invitation>> {
        let Some(item) = self.get_item(invitation_pk(invitation_id), INVITATION_SK).await? else { return Ok(None) };
        let stored: InvitationItem = serde_dynamo::from_item(item).context("reading an invitation")?;
        Ok(Some(stored.invitation))
    }

    async fn redemptions(&self, invitation_id: &InvitationId) -> anyhow::Result<Vec<Redemption>> {
        // A group invitation may have 10,000 redemptions: far more than one 1 MB page.
        let query = self
            .client
            .query()
            .table_name(&self.invitations_table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :redemption)")
            .expression_attribute_values(":pk", text(&invitation_pk(invitation_id)))
            // Both the redemptions and their source addresses (REDEMPTION# and REDEMPTION_IP#).
            .expression_attribute_values(":redemption", text("REDEMPTION"))
            .consistent_read(true);
        let mut redemptions = Vec::new();
        let mut addresses = std::collections::HashMap::new();
        for item in query_to_end(query, "reading redemptions").await? {
            let sk = item.get("sk").and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
            if let Some(suffix) = sk.strip_prefix(REDEMPTION_IP) {
                let address: SourceAddressItem = serde_dynamo::from_item(item)?;
                addresses.insert(suffix.to_string(), address.source_ip);
            } else {
                redemptions.push(serde_dynamo::from_item::<_, RedemptionItem>(item)?.redemption);
            }
        }
        for redemption in &mut redemptions {
            if let Some(address) = addresses.remove(&redemption_suffix(redemption)) {
                redemption.source_ip = address;
            }
        }
        Ok(redemptions)
    }

    async fn find_by_code(&self, code_digest: &str) -> anyhow::Result<Option<Invitation>> {
        let Some(item) = self.get_item(code_pk(code_digest), CODE_SK).await? else { return Ok(None) };
        let code: CodeItem = serde_dynamo::from_item(item).context("reading a code item")?;
        let invitation = self.get(&code.invitation_id).await?;
        // A resend replaces the code: only the current one finds the invitation.
        Ok(invitation.filter(|i| i.code_digest == code_digest))
    }

    async fn list_for_contact(&self, contact_id: &ContactId) -> anyhow::Result<Vec<Invitation>> {
        // Only invitation items carry `list_sk`: the index holds a contact's invitations alone,
        // newest first when read backwards, every page of them.
        let query = self
            .client
            .query()
            .table_name(&self.invitations_table)
            .index_name("by-contact-created")
            .key_condition_expression("contact_id = :contact")
            .expression_attribute_values(":contact", text(contact_id))
            .scan_index_forward(false);
        let keys = query_to_end(query, "listing a contact's invitations").await?;
        let items = batch_get_in_order(&self.client, &self.invitations_table, &["pk", "sk"], keys).await?;
        items.into_iter().map(|item| Ok(serde_dynamo::from_item::<_, InvitationItem>(item)?.invitation)).collect()
    }

    async fn replace_code(
        &self,
        invitation: &Invitation,
        new_digest: &str,
        message: &OutboxMessage,
        queued: &[Queued],
    ) -> anyhow::Result<bool> {
        let update = Update::builder()
            .table_name(&self.invitations_table)
            .set_key(Some(key2(invitation_pk(&invitation.invitation_id), INVITATION_SK)))
            .update_expression(
                "SET code_digest = :new, message_id = :message, delivery = :pending, list_delivery = :list_delivery \
                 REMOVE delivery_error, delivered_at",
            )
            .condition_expression("revoked = :false AND code_digest = :old")
            .expression_attribute_values(
                ":list_delivery",
                delivery_partition(Delivery::Pending, &invitation.invitation_id),
            )
            .expression_attribute_values(":new", text(new_digest))
            .expression_attribute_values(":old", text(&invitation.code_digest))
            .expression_attribute_values(":message", text(&message.message_id))
            .expression_attribute_values(":pending", serde_dynamo::to_attribute_value(Delivery::Pending)?)
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
        items.push(outbox_put(&self.outbox_table, message)?, Guards::Nothing);
        items.extend(self.queued(queued)?);
        match items.run(&self.client).await {
            Ok(()) => Ok(true),
            // Revoked, or resent by someone else meanwhile.
            Err(TransactionError::Refused(Guards::Record)) => Ok(false),
            Err(err) => Err(err.into_fault("replacing an invitation code")),
        }
    }

    async fn revoke_with_events(
        &self,
        invitation_id: &InvitationId,
        now: Timestamp,
        queued: &[Queued],
    ) -> anyhow::Result<Option<Invitation>> {
        if !queued.is_empty() {
            return self.revoke_reporting(invitation_id, now, queued).await;
        }
        let result = self
            .client
            .update_item()
            .table_name(&self.invitations_table)
            .set_key(Some(key2(invitation_pk(invitation_id), INVITATION_SK)))
            .update_expression("SET revoked = :true, revoked_at = :now, list_state = :revoked")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":true", AttributeValue::Bool(true))
            .expression_attribute_values(":revoked", state_partition(StoredState::Revoked, invitation_id))
            .expression_attribute_values(":now", number(now))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match result {
            Ok(output) => {
                let stored: InvitationItem = serde_dynamo::from_item(output.attributes.unwrap_or_default())
                    .context("reading a revoked invitation")?;
                Ok(Some(stored.invitation))
            }
            Err(err) if is_conditional_failure(&err) => Ok(None),
            Err(err) => Err(sdk_error("revoking an invitation", err)),
        }
    }

    async fn redeem_with_events(
        &self,
        invitation: &Invitation,
        change: &ContactChange,
        redemption: &Redemption,
        now: Timestamp,
        queued: &[OutboxMessage],
    ) -> Result<(), RedeemError> {
        // The list's state index must say "redeemed" once the last redemption is in. This write
        // knows it is the last when the count it read was one short of the maximum (the count only
        // grows, so the condition below then admits no other); otherwise it requires that it is
        // not the last, and a redemption that became the last meanwhile is refused like any
        // concurrent one (the redeemer tries again and then writes the state).
        let last = invitation.redemptions.saturating_add(1) >= invitation.max_redemptions;
        let (expression, not_last) = match last {
            true => ("SET redemptions = redemptions + :one, list_state = :redeemed", ""),
            false => ("SET redemptions = redemptions + :one", " AND redemptions < :before_last"),
        };
        let count = Update::builder()
            .table_name(&self.invitations_table)
            .set_key(Some(key2(invitation_pk(&invitation.invitation_id), INVITATION_SK)))
            .update_expression(expression)
            .condition_expression(format!(
                "revoked = :false AND expires_at > :now AND redemptions < max_redemptions AND code_digest = :code{not_last}"
            ))
            .set_expression_attribute_values(Some(match last {
                true => HashMap::from([(
                    ":redeemed".to_string(),
                    state_partition(StoredState::Redeemed, &invitation.invitation_id),
                )]),
                false => HashMap::from([(
                    ":before_last".to_string(),
                    number(invitation.max_redemptions.saturating_sub(1)),
                )]),
            }))
            .expression_attribute_values(":one", number(1))
            .expression_attribute_values(":false", AttributeValue::Bool(false))
            .expression_attribute_values(":now", number(now))
            .expression_attribute_values(":code", text(&invitation.code_digest))
            .build()
            .map_err(anyhow::Error::from)?;
        let mut items = Transaction::default();
        items.push(TransactWriteItem::builder().update(count).build(), Guards::Record);
        items.extend(self.contact_change_items(change, now)?);
        // The redemption without its source address, and the address apart until its TTL.
        let record: Item = serde_dynamo::to_item(RedemptionItem {
            pk: invitation_pk(&invitation.invitation_id),
            sk: redemption_sk(redemption),
            redemption: Redemption { source_ip: String::new(), ..redemption.clone() },
        })
        .map_err(anyhow::Error::from)?;
        let address: Item = serde_dynamo::to_item(SourceAddressItem {
            pk: invitation_pk(&invitation.invitation_id),
            sk: format!("{REDEMPTION_IP}{}", redemption_suffix(redemption)),
            source_ip: redemption.source_ip.clone(),
            ttl: redemption.redeemed_at + self.source_address_secs,
        })
        .map_err(anyhow::Error::from)?;
        for item in [record, address] {
            let put = Put::builder()
                .table_name(&self.invitations_table)
                .set_item(Some(item))
                .build()
                .map_err(anyhow::Error::from)?;
            items.push(TransactWriteItem::builder().put(put).build(), Guards::Record);
        }
        for message in queued {
            items.push(outbox_put(&self.outbox_table, message)?, Guards::Nothing);
        }
        // Concurrent redemptions of one code conflict; a retry sees the winner's count.
        match items.run(&self.client).await {
            Ok(()) => Ok(()),
            Err(TransactionError::Refused(Guards::Email)) => Err(RedeemError::EmailTaken),
            Err(TransactionError::Refused(Guards::Username)) => Err(RedeemError::UsernameTaken),
            Err(TransactionError::Refused(Guards::Identity)) => Err(RedeemError::IdentityTaken),
            // Others redeemed meanwhile, which may have made this one the last: again with the
            // count as it now stands (each round sees a higher count, so this ends).
            Err(TransactionError::Refused(Guards::Record)) if !last => {
                // This very redemption may have landed with its answer lost (a retried request):
                // then it is done, and must not be made twice.
                if self.get_item(invitation_pk(&invitation.invitation_id), &redemption_sk(redemption)).await?.is_some()
                {
                    return Ok(());
                }
                let moved = self.get(&invitation.invitation_id).await?.filter(|fresh| {
                    fresh.redemptions > invitation.redemptions && fresh.code_digest == invitation.code_digest
                });
                match moved {
                    Some(fresh) => Box::pin(self.redeem_with_events(&fresh, change, redemption, now, queued)).await,
                    None => Err(RedeemError::InvitationInvalid),
                }
            }
            // The invitation is used up, revoked, expired or resent, or the contact changed.
            Err(TransactionError::Refused(_)) => Err(RedeemError::InvitationInvalid),
            Err(err) => Err(err.into_fault("redeeming an invitation").into()),
        }
    }

    async fn begin_idempotent(&self, key: &IdempotencyKey, now: Timestamp) -> anyhow::Result<IdempotentStart> {
        // Held by one conditional put: a new key, one past its 24 hours, or one whose request died
        // while running. Refused, the item as it stands tells what the earlier request left.
        // Who holds it: an attempt the SDK timed out and retried after DynamoDB had committed it
        // finds the key held under its own token, and holds it.
        let holder = crate::domain::secret::random_token();
        let item = HashMap::from([
            ("pk".to_string(), text(&idempotency_pk(&key.key_digest))),
            ("sk".to_string(), text(IDEMPOTENCY_SK)),
            ("request_digest".to_string(), text(&key.request_digest)),
            ("started_at".to_string(), number(now)),
            ("ttl".to_string(), number(now + idempotency::KEY_SECS)),
            ("holder".to_string(), text(&holder)),
        ]);
        let result = self
            .client
            .put_item()
            .table_name(&self.invitations_table)
            .set_item(Some(item))
            .condition_expression(
                "attribute_not_exists(pk) OR #ttl <= :now \
                 OR (attribute_not_exists(answer_status) AND started_at <= :dead AND request_digest = :request)",
            )
            .expression_attribute_names("#ttl", "ttl")
            .expression_attribute_values(":now", number(now))
            .expression_attribute_values(":dead", number(now - idempotency::RUNNING_SECS))
            .expression_attribute_values(":request", text(&key.request_digest))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        let refused = match result {
            Ok(_) => return Ok(IdempotentStart::First),
            Err(err) if is_conditional_failure(&err) => err,
            Err(err) => return Err(sdk_error("holding an idempotency key", err)),
        };
        let held = refused
            .as_service_error()
            .and_then(|e| match e {
                PutItemError::ConditionalCheckFailedException(refused) => refused.item.clone(),
                _ => None,
            })
            .unwrap_or_default();
        let field = |name: &str| held.get(name).and_then(|v| v.as_s().ok()).cloned();
        if field("holder").as_deref() == Some(holder.as_str()) {
            return Ok(IdempotentStart::First);
        }
        if field("request_digest").as_deref() != Some(key.request_digest.as_str()) {
            return Ok(IdempotentStart::Mismatch);
        }
        let status = held.get("answer_status").and_then(|v| v.as_n().ok()).and_then(|n| n.parse().ok());
        Ok(match (status, field("answer_body")) {
            (Some(status), Some(body)) => IdempotentStart::Answered { status, body },
            _ => IdempotentStart::Running,
        })
    }

    async fn finish_idempotent(
        &self,
        key: &IdempotencyKey,
        status: u16,
        body: &str,
        now: Timestamp,
    ) -> anyhow::Result<()> {
        self.client
            .update_item()
            .table_name(&self.invitations_table)
            .set_key(Some(key2(idempotency_pk(&key.key_digest), IDEMPOTENCY_SK)))
            .update_expression("SET answer_status = :status, answer_body = :body, answered_at = :now")
            .condition_expression("request_digest = :request")
            .expression_attribute_values(":status", number(status))
            .expression_attribute_values(":body", text(body))
            .expression_attribute_values(":now", number(now))
            .expression_attribute_values(":request", text(&key.request_digest))
            .send()
            .await
            .map_err(|e| sdk_error("keeping an idempotent answer", e))?;
        Ok(())
    }

    async fn abandon_idempotent(&self, key: &IdempotencyKey) -> anyhow::Result<()> {
        self.client
            .delete_item()
            .table_name(&self.invitations_table)
            .set_key(Some(key2(idempotency_pk(&key.key_digest), IDEMPOTENCY_SK)))
            .condition_expression("attribute_not_exists(answer_status)")
            .send()
            .await
            .map(|_| ())
            .or_else(|err| {
                if is_conditional_failure(&err) {
                    Ok(())
                } else {
                    Err(sdk_error("letting go of an idempotency key", err))
                }
            })
    }

    async fn list(
        &self,
        filter: &InvitationFilter,
        page: &PageRequest,
        now: Timestamp,
    ) -> anyhow::Result<Paged<Invitation>> {
        self.list_page(filter, page, now).await
    }

    async fn record_delivery(
        &self,
        invitation_id: &InvitationId,
        message_id: &MessageId,
        delivery: Delivery,
        error: Option<&str>,
        now: Timestamp,
    ) -> anyhow::Result<()> {
        let mut builder = self
            .client
            .update_item()
            .table_name(&self.invitations_table)
            .set_key(Some(key2(invitation_pk(invitation_id), INVITATION_SK)))
            .condition_expression("message_id = :message")
            .expression_attribute_values(":message", text(message_id))
            .expression_attribute_values(":delivery", serde_dynamo::to_attribute_value(delivery)?)
            .expression_attribute_values(":list_delivery", delivery_partition(delivery, invitation_id))
            .expression_attribute_values(":now", number(now));
        builder = match error {
            Some(error) => builder
                .update_expression(
                    "SET delivery = :delivery, list_delivery = :list_delivery, delivered_at = :now, \
                     delivery_error = :error",
                )
                .expression_attribute_values(":error", text(error)),
            None => builder.update_expression(
                "SET delivery = :delivery, list_delivery = :list_delivery, delivered_at = :now REMOVE delivery_error",
            ),
        };
        // Refused: a resend replaced this message, whose outcome no longer describes the invitation.
        update_unless_moved_on(builder, "recording a delivery").await
    }

    async fn create_group_with_events(
        &self,
        invitation: &Invitation,
        fanout: &OutboxMessage,
        queued: &[Queued],
    ) -> anyhow::Result<()> {
        self.create_group(invitation, fanout, queued).await
    }

    async fn replace_group_code(
        &self,
        invitation: &Invitation,
        new_digest: &str,
        fanout: &OutboxMessage,
        queued: &[Queued],
    ) -> anyhow::Result<bool> {
        self.replace_group_code_item(invitation, new_digest, fanout, queued).await
    }

    async fn deliveries(&self, invitation_id: &InvitationId) -> anyhow::Result<crate::domain::group::Deliveries> {
        self.read_deliveries(invitation_id).await
    }

    async fn record_contact_delivery(
        &self,
        invitation_id: &InvitationId,
        fanout_id: &MessageId,
        contact_id: &ContactId,
        delivery: Delivery,
        error: Option<&str>,
        now: Timestamp,
    ) -> anyhow::Result<()> {
        self.record_one_delivery(invitation_id, fanout_id, contact_id, delivery, error, now).await
    }
}

pub struct DynamoOutbox {
    pub(super) client: Client,
    pub(super) table: String,
    /// Where an invitation's current email is recorded (for an operator's re-queue).
    invitations_table: Option<String>,
}

impl DynamoOutbox {
    pub fn new(client: Client, table: &str) -> Self {
        DynamoOutbox { client, table: table.into(), invitations_table: None }
    }

    /// The outbox of these invitations: a re-queued invitation email becomes the current one.
    pub fn with_invitations(self, invitations_table: &str) -> Self {
        DynamoOutbox { invitations_table: Some(invitations_table.into()), ..self }
    }

    fn update(
        &self,
        message_id: &MessageId,
    ) -> aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder {
        self.client
            .update_item()
            .table_name(&self.table)
            .key("pk", text(message_id))
            .expression_attribute_names("#s", "status")
    }
}

fn status(value: &str) -> AttributeValue {
    text(value)
}

/// The transaction items that queue `events` in the outbox (one item each, named by its id).
pub(crate) fn event_items(outbox_table: &str, events: &[PortalEvent]) -> anyhow::Result<Transaction> {
    let mut items = Transaction::default();
    for event in events {
        items.push(outbox_put(outbox_table, &OutboxMessage::for_event(event))?, Guards::Nothing);
    }
    Ok(items)
}

impl DynamoOutbox {
    /// An update settling the message as `to` (`sent` or `failed`), refused when it already is:
    /// a retried write that had landed must not queue its events twice.
    fn settle(&self, message_id: &MessageId, to: &str) -> aws_sdk_dynamodb::types::builders::UpdateBuilder {
        Update::builder()
            .table_name(&self.table)
            .key("pk", text(message_id))
            .condition_expression("attribute_exists(pk) AND #s <> :settled")
            .expression_attribute_names("#s", "status")
            .expression_attribute_values(":settled", status(to))
    }

    /// Settles a message with its events in one transaction; settled before, nothing is written.
    async fn settle_reporting(&self, settle: Update, events: &[PortalEvent], doing: &str) -> anyhow::Result<()> {
        let mut items = Transaction::default();
        items.push(TransactWriteItem::builder().update(settle).build(), Guards::Record);
        items.extend(event_items(&self.table, events)?);
        match items.run(&self.client).await {
            Ok(()) | Err(TransactionError::Refused(Guards::Record)) => Ok(()),
            Err(err) => Err(err.into_fault(doing)),
        }
    }
}

impl DynamoInvitations {
    /// Revokes a not yet revoked invitation with `events`, in one transaction, then reads it back
    /// (a transaction returns nothing). Revoked before: returned as it is, with no events.
    async fn revoke_reporting(
        &self,
        invitation_id: &InvitationId,
        now: Timestamp,
        queued: &[Queued],
    ) -> anyhow::Result<Option<Invitation>> {
        let revoke = Update::builder()
            .table_name(&self.invitations_table)
            .set_key(Some(key2(invitation_pk(invitation_id), INVITATION_SK)))
            .update_expression("SET revoked = :true, revoked_at = :now, list_state = :revoked")
            .condition_expression("attribute_exists(pk) AND revoked = :false")
            .expression_attribute_values(":true", AttributeValue::Bool(true))
            .expression_attribute_values(":false", AttributeValue::Bool(false))
            .expression_attribute_values(":revoked", state_partition(StoredState::Revoked, invitation_id))
            .expression_attribute_values(":now", number(now))
            .build()?;
        let mut items = Transaction::default();
        items.push(TransactWriteItem::builder().update(revoke).build(), Guards::Record);
        items.extend(self.queued(queued)?);
        match items.run(&self.client).await {
            // Missing (then `get` says so) or revoked before.
            Ok(()) | Err(TransactionError::Refused(Guards::Record)) => self.get(invitation_id).await,
            Err(err) => Err(err.into_fault("revoking an invitation")),
        }
    }
}

/// Settling a message: its secret and lease go, and so do the recipient's address and name (and a
/// fan-out's recipients): a settled message names nobody, so a deleted account leaves nothing in
/// the outbox once its notice is sent. Its retention (TTL) starts from now (a held message has
/// none until then). `OutboxMessage::settle_forgetting` is the same rule in memory.
const MARK_SENT: &str = "SET #s = :sent, sent_at = :now, #ttl = :ttl \
                         REMOVE secret, lease_until, #to, first_name, detail, recipients";
const MARK_FAILED: &str = "SET #s = :failed, #e = :reason, failed_at = :now, #ttl = :ttl \
                           REMOVE secret, lease_until, #to, first_name, detail, recipients";

#[async_trait]
impl Outbox for DynamoOutbox {
    async fn claim(&self, message_id: &MessageId, now: Timestamp) -> anyhow::Result<Claim> {
        // One conditional write takes the lease; when it is refused, the item as it stands says
        // why (a live lease, or settled), without a second read.
        let update = self
            .update(message_id)
            .update_expression(
                "SET #s = :sending, lease_until = :until, claimed_at = :now, lease_token = :token ADD attempts :one",
            )
            .condition_expression(
                "#s = :pending OR (#s = :sending AND (attribute_not_exists(lease_until) OR lease_until <= :now))",
            )
            .expression_attribute_values(":sending", status("sending"))
            .expression_attribute_values(":pending", status("pending"))
            .expression_attribute_values(":now", number(now))
            .expression_attribute_values(":until", number(now + LEASE_SECS))
            .expression_attribute_values(":one", number(1));
        match take_lease(update, "claiming an outbox message").await? {
            LeaseTaken::Leased(item) => {
                let stored: OutboxItem = serde_dynamo::from_item(item).context("reading a claimed message")?;
                Ok(Claim::Leased(stored.message))
            }
            LeaseTaken::Missing => Ok(Claim::Missing),
            LeaseTaken::Refused { current, ours } => {
                let stored: OutboxItem = serde_dynamo::from_item(current).context("reading a refused claim")?;
                if ours && stored.message.status == crate::domain::outbox::MessageStatus::Sending {
                    // This very claim, committed by an attempt whose answer was lost.
                    return Ok(Claim::Leased(stored.message));
                }
                Ok(match stored.message.claim_at(now) {
                    // Refused, yet claimable by the rule: another run changed it between the two.
                    Claim::Leased(_) => Claim::Busy { lease_until: stored.message.lease_until.unwrap_or(now) },
                    other => other,
                })
            }
        }
    }

    async fn mark_sent_with_events(
        &self,
        message_id: &MessageId,
        now: Timestamp,
        events: &[PortalEvent],
    ) -> anyhow::Result<()> {
        if !events.is_empty() {
            let settle = self
                .settle(message_id, "sent")
                .update_expression(MARK_SENT)
                .expression_attribute_names("#ttl", "ttl")
                .expression_attribute_names("#to", "to")
                .expression_attribute_values(":sent", status("sent"))
                .expression_attribute_values(":now", number(now))
                .expression_attribute_values(":ttl", number(now + RETENTION_SECS))
                .build()?;
            return self.settle_reporting(settle, events, "marking a message sent").await;
        }
        self.update(message_id)
            .update_expression(MARK_SENT)
            .expression_attribute_names("#ttl", "ttl")
            .expression_attribute_names("#to", "to")
            .expression_attribute_values(":sent", status("sent"))
            .expression_attribute_values(":now", number(now))
            .expression_attribute_values(":ttl", number(now + RETENTION_SECS))
            .send()
            .await
            .map_err(|e| sdk_error("marking a message sent", e))?;
        Ok(())
    }

    async fn mark_failed_with_events(
        &self,
        message_id: &MessageId,
        reason: &str,
        now: Timestamp,
        events: &[PortalEvent],
    ) -> anyhow::Result<()> {
        if !events.is_empty() {
            let settle = self
                .settle(message_id, "failed")
                .update_expression(MARK_FAILED)
                .expression_attribute_names("#e", "error")
                .expression_attribute_names("#ttl", "ttl")
                .expression_attribute_names("#to", "to")
                .expression_attribute_values(":failed", status("failed"))
                .expression_attribute_values(":reason", text(reason))
                .expression_attribute_values(":now", number(now))
                .expression_attribute_values(":ttl", number(now + RETENTION_SECS))
                .build()?;
            return self.settle_reporting(settle, events, "marking a message failed").await;
        }
        self.update(message_id)
            .update_expression(MARK_FAILED)
            .expression_attribute_names("#e", "error")
            .expression_attribute_names("#ttl", "ttl")
            .expression_attribute_names("#to", "to")
            .expression_attribute_values(":failed", status("failed"))
            .expression_attribute_values(":reason", text(reason))
            .expression_attribute_values(":now", number(now))
            .expression_attribute_values(":ttl", number(now + RETENTION_SECS))
            .send()
            .await
            .map_err(|e| sdk_error("marking a message failed", e))?;
        Ok(())
    }

    async fn hold(&self, message_id: &MessageId, now: Timestamp) -> anyhow::Result<()> {
        // Refused: gone, claimed or settled meanwhile, nothing to hold.
        let update = self
            .update(message_id)
            .update_expression("SET held_since = if_not_exists(held_since, :now) REMOVE #ttl")
            .condition_expression("#s = :pending")
            .expression_attribute_names("#ttl", "ttl")
            .expression_attribute_values(":pending", status("pending"))
            .expression_attribute_values(":now", number(now));
        update_unless_moved_on(update, "holding a message").await
    }

    async fn release(&self, message_id: &MessageId, lease_until: Timestamp) -> anyhow::Result<()> {
        let update = self
            .update(message_id)
            .update_expression("SET #s = :pending REMOVE claimed_at, lease_until")
            .condition_expression("#s = :sending AND lease_until = :mine")
            .expression_attribute_values(":pending", status("pending"))
            .expression_attribute_values(":sending", status("sending"))
            .expression_attribute_values(":mine", number(lease_until));
        update_unless_moved_on(update, "releasing a message").await
    }

    async fn list(&self) -> anyhow::Result<Vec<OutboxMessage>> {
        let mut found = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let page = self
                .client
                .scan()
                .table_name(&self.table)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| sdk_error("listing the outbox", e))?;
            for item in page.items.unwrap_or_default() {
                // A bulk import's chunk shares the table; it is not an email.
                if item.get("kind").and_then(|v| v.as_s().ok()).map(String::as_str)
                    == Some(crate::domain::import::CHUNK_KIND)
                {
                    continue;
                }
                let stored: OutboxItem = serde_dynamo::from_item(item).context("reading an outbox item")?;
                found.push(stored.message);
            }
            match page.last_evaluated_key {
                Some(key) => start = Some(key),
                None => return Ok(found),
            }
        }
    }

    async fn requeue(&self, original: &OutboxMessage, copy: &OutboxMessage, now: Timestamp) -> anyhow::Result<bool> {
        let mut items = Transaction::default();
        items.push(outbox_put(&self.table, copy)?, Guards::Nothing);
        let retire = Update::builder()
            .table_name(&self.table)
            .key("pk", text(&original.message_id))
            .update_expression("SET #s = :failed, #e = :reason, failed_at = :now REMOVE secret, lease_until")
            .condition_expression("#s = :was")
            .expression_attribute_names("#s", "status")
            .expression_attribute_names("#e", "error")
            .expression_attribute_values(":failed", status("failed"))
            .expression_attribute_values(":was", serde_dynamo::to_attribute_value(original.status)?)
            .expression_attribute_values(":reason", text(&format!("re-queued as {}", copy.message_id)))
            .expression_attribute_values(":now", number(now))
            .build()?;
        items.push(TransactWriteItem::builder().update(retire).build(), Guards::Record);
        if let Some(invitation_id) = &original.invitation_id {
            let table = self.invitations_table.as_deref().context("re-queueing an invitation email needs its table")?;
            let current = Update::builder()
                .table_name(table)
                .set_key(Some(key2(invitation_pk(invitation_id), INVITATION_SK)))
                .update_expression(
                    "SET message_id = :copy, delivery = :pending, list_delivery = :list_delivery REMOVE delivery_error",
                )
                .condition_expression("message_id = :original")
                .expression_attribute_values(":list_delivery", delivery_partition(Delivery::Pending, invitation_id))
                .expression_attribute_values(":copy", text(&copy.message_id))
                .expression_attribute_values(":original", text(&original.message_id))
                .expression_attribute_values(":pending", serde_dynamo::to_attribute_value(Delivery::Pending)?)
                .build()?;
            items.push(TransactWriteItem::builder().update(current).build(), Guards::Record);
        }
        match items.run(&self.client).await {
            Ok(()) => Ok(true),
            Err(TransactionError::Refused(_) | TransactionError::Conflict) => Ok(false),
            Err(err) => Err(err.into_fault("re-queueing an outbox message")),
        }
    }

    async fn fan_out(&self, fanout_id: &MessageId, done: u32, batch: &[OutboxMessage]) -> anyhow::Result<bool> {
        self.fan_out_batch(fanout_id, done, batch).await
    }
}
