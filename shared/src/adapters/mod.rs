//! Adapters: DynamoDB for production, memory for handler tests.

pub mod dynamodb;
pub mod memory;
