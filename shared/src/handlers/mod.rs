//! One module per Lambda function: its routes (an `axum::Router` of extract → use case → reply),
//! and the outbox stream's consumer.

pub mod admin;
mod admin_lists;
mod admin_views;
pub mod email_feedback;
pub mod entry;
pub mod external;
pub mod imports;
pub mod passkeys;
pub mod profile;
pub mod redeem;
pub mod register;
pub mod second_factor;
mod security;
pub mod send_email;
pub mod sign_in;
mod site_settings;
mod staff;
mod terms;
pub mod two_factor;
