//! The customer portal's shared crate: the domain in the middle, AWS at the edge.
//!
//! - [`domain`]: values that parse and never hold an invalid state, and the pure rules.
//! - [`usecases`]: one function per thing a person does; no HTTP.
//! - [`ports`]: what use cases need from outside; [`adapters`]: DynamoDB, SES, EventBridge, KMS
//!   (in memory for tests: the `portal-testkit` crate).
//! - [`web`]: extractors, replies, pages and the layers every route gets; [`handlers`]: one
//!   router per Lambda function; [`lambda`]: the runtime glue for `main`.
//! - [`error`]: the one error type; [`config`]: the typed settings, read once.

pub mod adapters;
pub mod app;
pub mod aws;
pub mod config;
pub mod domain;
pub mod email;
pub mod error;
pub mod handlers;
pub mod lambda;
pub mod metrics;
pub mod ports;
pub mod site_settings;
pub mod telemetry;
pub mod usecases;
pub mod web;

pub use app::{Edges, Portal};
