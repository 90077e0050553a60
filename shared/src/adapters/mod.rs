//! Adapters: DynamoDB and SES for production; in memory for handler tests and benchmarks only
//! (the `memory` feature), never compiled into a Lambda binary.

pub mod dynamodb;
pub mod dynamodb_groups;
pub mod dynamodb_imports;
pub mod dynamodb_invitations;
pub mod dynamodb_list_keys;
pub mod dynamodb_listing;
pub mod dynamodb_passkeys;
pub mod dynamodb_two_factor;
pub mod eventbridge;
#[cfg(any(test, feature = "memory"))]
pub mod memory;
#[cfg(any(test, feature = "memory"))]
pub mod memory_imports;
#[cfg(any(test, feature = "memory"))]
pub mod memory_passkeys;
#[cfg(any(test, feature = "memory"))]
pub mod memory_two_factor;
pub mod sealing;
pub mod ses;
