//! The web layer: one `axum::Router` per Lambda function, with what every route needs applied once
//! as tower layers ([`app`]), extractors that do the checks once ([`extract`]), and replies that
//! choose HTML or JSON by themselves ([`reply`]).
//!
//! A route reads: extractors (submission, caller, source address) → use case → [`Reply`], or a
//! [`PortalError`] / [`Rejection`] that renders itself for the kind of client that asked.

pub mod app;
pub mod assets;
pub mod client;
pub mod extract;
pub mod pages;
pub mod reply;
pub mod request;
pub mod response;
pub mod two_factor_pages;

use std::sync::Arc;

pub use crate::error::PortalError;
pub use app::{HttpFunction, finish};
pub use client::Client;
pub use extract::{Admin, ArrivedWith, Form, Page, StaffMember, Submission, Viewer};
pub use reply::{Rejection, Reply};
pub use request::Fields;

/// What every route's handler receives as state: the settings and ports.
pub type AppState = Arc<crate::Portal>;
