//! The web layer: request parsing (form or JSON on the same routes), cookies and CSRF, responses,
//! and server-rendered pages.

pub mod error;
pub mod pages;
pub mod request;
pub mod response;

pub use error::PortalError;
pub use request::{Client, Fields, Submission};

pub type HttpRequest = lambda_http::Request;
pub type HttpResponse = lambda_http::Response<lambda_http::Body>;
