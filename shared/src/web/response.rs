//! Cookies and redirect targets.

use super::request::{csrf_cookie_name, device_cookie_name, session_cookie_name};
use crate::config::Settings;

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

/// The session cookie: it ends with the browser (no `Max-Age`); the server's idle and absolute
/// limits end the session itself.
pub fn session_cookie(settings: &Settings, token: &str) -> String {
    format!("{}={token}; {}", session_cookie_name(settings), cookie_attributes(settings, "Lax"))
}

/// The session cookie of a "remember me" sign-in: it lasts `PORTAL_REMEMBER_ME_DAYS`, as the
/// session does; without it, a browser-session cookie ([`session_cookie`]).
pub fn session_cookie_for(settings: &Settings, token: &str, remembered: bool) -> String {
    if !remembered {
        return session_cookie(settings, token);
    }
    format!(
        "{}={token}; Max-Age={}; {}",
        session_cookie_name(settings),
        settings.remember_me_secs,
        cookie_attributes(settings, "Lax")
    )
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

/// The device cookie: this browser signed in to the account before (see `usecases::sign_in`).
pub fn device_cookie(settings: &Settings, token: &str) -> String {
    format!(
        "{}={token}; Max-Age={}; {}",
        device_cookie_name(settings),
        crate::usecases::sign_in::DEVICE_TRUST_SECS,
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
