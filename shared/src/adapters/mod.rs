//! Adapters: DynamoDB, SES, EventBridge and KMS. (The in-memory ones of the handler tests and
//! benchmarks are in `portal-testkit`, never compiled into a Lambda binary.)

pub mod dynamodb;
pub mod dynamodb_audit;
pub mod dynamodb_deliverability;
pub mod dynamodb_groups;
pub mod dynamodb_identities;
pub mod dynamodb_imports;
pub mod dynamodb_invitations;
pub mod dynamodb_list_keys;
pub mod dynamodb_listing;
pub mod dynamodb_pages;
pub mod dynamodb_passkeys;
pub mod dynamodb_two_factor;
pub mod eventbridge;
#[cfg(feature = "oidc")]
pub mod oidc;
pub mod outbox_only;
pub mod sealing;
pub mod ses;
