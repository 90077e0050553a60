//! The answers of the door (`usecases::door`) for every route that signs in: the session the door
//! began (its cookies, and the contract's sign-in body), or the second factor it awaits.

use axum::http::StatusCode;
use serde::Serialize;

use crate::config::Settings;
use crate::usecases::door::{Entered, Entry};
use crate::web::Reply;
use crate::web::response::pending_sign_in_cookie;

#[derive(Serialize)]
struct SignedIn<'a> {
    contact_id: &'a str,
    email: &'a str,
    roles: &'a [String],
    /// Present (true) when the contact's role requires a second factor they have not set up: the
    /// session is limited to `/profile/two-factor` until they do.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    two_factor_setup_required: bool,
    /// Present (true) when the session reaches only `/terms` until the terms of use are accepted.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    terms_required: bool,
}

/// Where a browser goes after entering: the terms first, then the two-factor set-up, else `target`.
pub fn entered_target<'a>(entered: &Entered, target: &'a str) -> &'a str {
    if entered.options.terms_only {
        "/terms"
    } else if entered.options.setup_only {
        "/profile/two-factor"
    } else {
        target
    }
}

/// A completed sign-in (password, second step, passkey): the contract's 200 body with the session
/// and device cookies. A browser goes to `target`, or to the two-factor set-up when its role
/// requires one.
pub fn signed_in_reply(settings: &Settings, entered: &Entered, target: &str) -> Reply {
    let contact = &entered.contact;
    let setup_only = entered.options.setup_only;
    let view = SignedIn {
        contact_id: &contact.contact_id,
        email: contact.email.as_str(),
        roles: &contact.roles,
        two_factor_setup_required: setup_only,
        terms_required: entered.options.terms_only,
    };
    Reply::json(StatusCode::OK, &view).or_see_other(entered_target(entered, target)).with_session(settings, entered)
}

/// The right password of an account with a second factor: no session yet, only the pending
/// sign-in's cookie, and the methods it offers (a browser goes to the second step).
pub fn second_factor_reply(settings: &Settings, pending_token: &str, methods: &[&str]) -> Reply {
    let body = serde_json::json!({"status": "second_factor_required", "methods": methods});
    Reply::json(StatusCode::OK, &body)
        .or_see_other("/signin/second-factor")
        .with_cookie(pending_sign_in_cookie(settings, pending_token))
}

/// What a sign-in through the door answers, whichever it opened to.
pub fn entry_reply(settings: &Settings, entry: &Entry, target: &str) -> Reply {
    match entry {
        Entry::Entered(entered) => signed_in_reply(settings, entered, target),
        Entry::SecondFactorAwaited { pending_token, methods } => second_factor_reply(settings, pending_token, methods),
    }
}
