//! Adapters: DynamoDB for production, memory for handler tests.

pub mod dynamodb;
pub mod dynamodb_invitations;
pub mod memory;
pub mod ses;
