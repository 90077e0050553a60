//! A browser's short description ("Firefox 133 on Linux") from its User-Agent, for the sessions
//! list and the new-sign-in notice. Woothee (a kept parser of Project Woothee's dataset) reads it;
//! what it cannot read is shown as "an unknown browser".

use std::sync::OnceLock;

/// "Firefox 133 on Linux", "Chrome on Android", or "an unknown browser".
pub fn describe(user_agent: Option<&str>) -> String {
    static PARSER: OnceLock<woothee::parser::Parser> = OnceLock::new();
    let parsed = user_agent.and_then(|ua| PARSER.get_or_init(woothee::parser::Parser::new).parse(ua));
    let Some(found) = parsed.filter(|r| r.name != "UNKNOWN") else { return "an unknown browser".into() };
    let major = found.version.split('.').next().filter(|v| !v.is_empty() && *v != "UNKNOWN");
    let name = match major {
        Some(version) => format!("{} {version}", found.name),
        None => found.name.to_string(),
    };
    match found.os {
        os if os.is_empty() || os == "UNKNOWN" => name,
        os => format!("{name} on {os}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_browser_is_named_with_its_major_version_and_system() {
        let firefox = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0";
        assert_eq!(describe(Some(firefox)), "Firefox 133 on Linux");
        let chrome = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";
        assert_eq!(describe(Some(chrome)), "Chrome 131 on Windows 10");
        assert_eq!(describe(Some("python-requests/2.32")), "an unknown browser");
        assert_eq!(describe(None), "an unknown browser");
    }
}
