//! The customer portal's shared crate: the domain in the middle, AWS at the edge.
//!
//! - [`domain`]: values that parse and never hold an invalid state, and the pure rules.
//! - [`ports`]: what handlers need from outside; [`adapters`]: DynamoDB and in-memory versions.
//! - [`web`]: request parsing, the error type, cookies, CSRF, pages.
//! - [`handlers`]: one module per Lambda function; [`lambda`]: the runtime glue for `main`.
//! - [`config`]: the typed settings, read once.

pub mod adapters;
pub mod app;
pub mod config;
pub mod domain;
pub mod email;
pub mod handlers;
pub mod lambda;
pub mod ports;
pub mod telemetry;
pub mod web;

pub use app::Portal;
