//! Cookies and redirect targets.

use super::request::{csrf_cookie_name, device_cookie_name, session_cookie_name};
use crate::config::Settings;
use crate::usecases::door::Entered;

/// A path on this site: starts with one `/`, not `//` or `/\` (which browsers read as another host).
pub fn is_same_site_path(path: &str) -> bool {
    path.starts_with('/')
        && !path.starts_with("//")
        && !path.starts_with("/\\")
        && !path.chars().any(|c| c.is_control() || c == '\\')
}

fn cookie_attributes(settings: &Settings, same_site: &str) -> String {
    let secure = if settings.secure_cookies { "; Secure" } else { "" };
    format!("Path=/; HttpOnly; SameSite={same_site}{secure}")
}

/// The cookies of a session the door began: the session cookie (it ends with the browser, no
/// `Max-Age`, unless "remember me" made it last `PORTAL_REMEMBER_ME_DAYS` as the session does) and,
/// after a sign-in, the device cookie. Nothing else makes a session cookie: only the door makes
/// an [`Entered`].
pub fn entered_cookies(settings: &Settings, entered: &Entered) -> Vec<String> {
    let name = session_cookie_name(settings);
    let token = entered.session_token();
    let attributes = cookie_attributes(settings, "Lax");
    let session = match entered.options.remembered {
        true => format!("{name}={token}; Max-Age={}; {attributes}", settings.remember_me_secs),
        false => format!("{name}={token}; {attributes}"),
    };
    let device = entered.device_token().map(|token| device_cookie(settings, token));
    std::iter::once(session).chain(device).collect()
}

/// The short-lived cookie of a sign-in awaiting its second factor.
pub fn pending_sign_in_cookie(settings: &Settings, token: &str) -> String {
    format!(
        "{}={token}; Max-Age={}; {}",
        super::request::pending_sign_in_cookie_name(settings),
        crate::domain::two_factor::PENDING_SIGN_IN_SECS,
        cookie_attributes(settings, "Lax")
    )
}

pub fn clear_pending_sign_in_cookie(settings: &Settings) -> String {
    format!(
        "{}=; Max-Age=0; {}",
        super::request::pending_sign_in_cookie_name(settings),
        cookie_attributes(settings, "Lax")
    )
}

pub fn clear_session_cookie(settings: &Settings) -> String {
    format!("{}=; Max-Age=0; {}", session_cookie_name(settings), cookie_attributes(settings, "Lax"))
}

/// The device cookie: this browser signed in to the account before (see `usecases::door`).
fn device_cookie(settings: &Settings, token: &str) -> String {
    format!(
        "{}={token}; Max-Age={}; {}",
        device_cookie_name(settings),
        crate::usecases::door::DEVICE_TRUST_SECS,
        cookie_attributes(settings, "Strict")
    )
}

pub fn csrf_cookie(settings: &Settings, token: &str) -> String {
    format!("{}={token}; {}", csrf_cookie_name(settings), cookie_attributes(settings, "Strict"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirects_stay_on_this_site() {
        for (path, ok) in [
            ("/", true),
            ("/profile?x=1", true),
            ("//evil.example", false),
            ("/\\evil.example", false),
            ("https://evil.example", false),
            ("profile", false),
            ("/a\r\nSet-Cookie: x", false),
        ] {
            assert_eq!(is_same_site_path(path), ok, "{path:?}");
        }
        let response = super::super::reply::see_other("https://evil.example");
        assert_eq!(response.headers()["location"], "/");
    }
}
