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

pub fn session_cookie(settings: &Settings, token: &str) -> String {
    format!(
        "{}={token}; Max-Age={}; {}",
        session_cookie_name(settings),
        settings.session_absolute_secs,
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
