//! External identities (OpenID Connect): the providers a site trusts, an identity a provider
//! vouched for, the identities linked to an account, and the server-side state of a sign-in that
//! went to a provider and has not come back yet.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::ids::ContactId;
use super::secret::digest;
use super::time::Timestamp;

/// How long a browser has to come back from its provider: a state item older than this is refused.
pub const EXTERNAL_STATE_SECS: i64 = 600;

/// An OpenID Connect provider the site trusts (`PORTAL_OIDC_PROVIDERS`, a JSON array of these).
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct OidcProvider {
    /// The provider's id in the portal's paths (`[a-z0-9-]+`).
    pub id: String,
    /// What the pages call it ("Sign in with <name>").
    pub name: String,
    /// The issuer URL; discovery is `<issuer>/.well-known/openid-configuration`.
    pub issuer: String,
    pub client_id: String,
    /// The client secret itself: local configurations only (the template refuses to carry it).
    #[serde(default)]
    pub client_secret: Option<String>,
    /// In AWS: the Secrets Manager secret whose value is the client secret (read once per
    /// instance).
    #[serde(default)]
    pub client_secret_arn: Option<String>,
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    /// An unknown identity whose verified email is an account's address is linked to it.
    #[serde(default)]
    pub link_verified_email: bool,
    /// The provider's `amr` claim `mfa` counts as the account's second factor.
    #[serde(default)]
    pub trust_mfa: bool,
}

impl fmt::Debug for OidcProvider {
    // The client secret is never logged.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OidcProvider")
            .field("id", &self.id)
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("client_secret_arn", &self.client_secret_arn)
            .finish_non_exhaustive()
    }
}

fn default_scopes() -> Vec<String> {
    ["openid", "email", "profile"].map(String::from).to_vec()
}

/// Reads `PORTAL_OIDC_PROVIDERS`: every provider well formed, ids unique.
pub fn parse_providers(json: &str) -> Result<Vec<OidcProvider>, String> {
    let providers: Vec<OidcProvider> =
        serde_json::from_str(json).map_err(|e| format!("not a JSON list of providers ({e})"))?;
    let mut seen = std::collections::BTreeSet::new();
    for provider in &providers {
        let id = &provider.id;
        if id.is_empty()
            || id.len() > 40
            || !id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(format!("provider id {id:?} must be 1 to 40 of a-z, 0-9 and -"));
        }
        if !seen.insert(id.clone()) {
            return Err(format!("provider id {id:?} is listed twice"));
        }
        let issuer = url::Url::parse(&provider.issuer).map_err(|e| format!("{id}: issuer is not a URL ({e})"))?;
        if !matches!(issuer.scheme(), "https" | "http") || issuer.host_str().is_none() {
            return Err(format!("{id}: issuer must be an https URL"));
        }
        if provider.name.trim().is_empty() || provider.client_id.trim().is_empty() {
            return Err(format!("{id}: name and client_id are required"));
        }
        if provider.client_secret.is_some() == provider.client_secret_arn.is_some() {
            return Err(format!("{id}: give one of client_secret and client_secret_arn"));
        }
        if !provider.scopes.iter().any(|s| s == "openid") {
            return Err(format!("{id}: scopes must include openid"));
        }
    }
    Ok(providers)
}

/// An identity a provider vouched for: an ID token whose issuer, audience, signature, expiry and
/// nonce were checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExternalIdentity {
    /// The provider's `sub`: with the provider, what identifies the person.
    pub subject: String,
    /// `email` as the token gave it, and whether the provider verified it (`email_verified`).
    pub email: Option<String>,
    pub email_verified: bool,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    /// The provider's `amr` holds `mfa`.
    pub mfa: bool,
}

impl ExternalIdentity {
    /// The email, only where the provider verified it.
    pub fn verified_email(&self) -> Option<&str> {
        self.email.as_deref().filter(|_| self.email_verified)
    }
}

/// An identity linked to an account (stored on the contact; a guard item makes it unique).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkedIdentity {
    pub provider: String,
    pub subject: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    pub linked_at: Timestamp,
}

impl LinkedIdentity {
    pub fn is(&self, provider: &str, subject: &str) -> bool {
        self.provider == provider && self.subject == subject
    }
}

/// What the browser went to its provider for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "purpose", rename_all = "snake_case")]
pub enum ExternalPurpose {
    /// A sign-in; the browser then goes to `return_to` (a local path).
    SignIn { return_to: String },
    /// Linking the identity to the signed-in account, as it was in `epoch` (a password change
    /// meanwhile voids it).
    Link { contact_id: ContactId, epoch: String },
    /// Redeeming the invitation with this code (only its digest is kept here; the code never goes
    /// to the provider).
    Redeem { invitation_id: String, code_digest: String, accept_terms: bool },
}

/// A trip to a provider, kept server-side under the digest of its `state` and taken once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExternalState {
    pub provider: String,
    /// The ID token must echo it.
    pub nonce: String,
    /// The PKCE verifier (its S256 challenge went to the provider).
    pub pkce_verifier: String,
    /// The digest of the browser's binding cookie: a callback from another browser is refused.
    pub browser_digest: String,
    #[serde(flatten)]
    pub purpose: ExternalPurpose,
    pub expires_at: Timestamp,
}

impl ExternalState {
    /// Whether this callback may use the state: the same provider, the same browser, in time.
    pub fn fits(&self, provider: &str, browser_token: &str, now: Timestamp) -> bool {
        self.provider == provider
            && super::secret::same_secret(&self.browser_digest, &digest(browser_token))
            && now < self.expires_at
    }
}

/// The PKCE S256 challenge of a verifier (RFC 7636: BASE64URL(SHA256(verifier)), no padding).
pub fn pkce_challenge(verifier: &str) -> String {
    use base64::Engine;
    use sha2::Digest;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()))
}

/// A `return_to` that stays on this site: a local absolute path (not `//host`, no backslash).
pub fn local_return_to(requested: Option<&str>) -> String {
    match requested {
        Some(path) if path.starts_with('/') && !path.starts_with("//") && !path.contains('\\') && path.len() <= 512 => {
            path.to_string()
        }
        _ => "/profile".to_string(),
    }
}

/// A name as a provider gave it: without control characters, at most 100 characters, trimmed.
pub fn claimed_name(name: Option<&str>) -> String {
    name.unwrap_or_default().chars().filter(|c| !c.is_control()).take(100).collect::<String>().trim().to_string()
}

/// The method string of a sign-in through `provider` (sessions, sign-in history, events).
pub fn external_method(provider: &str) -> String {
    format!("external:{provider}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"[{"id":"example","name":"Example ID","issuer":"http://localhost:9400","client_id":"portal","client_secret":"s"}]"#;

    #[test]
    fn providers_are_read_with_their_defaults() {
        let providers = parse_providers(EXAMPLE).unwrap();
        assert_eq!(providers[0].scopes, ["openid", "email", "profile"]);
        assert!(!providers[0].link_verified_email && !providers[0].trust_mfa);
        assert!(!format!("{:?}", providers[0]).contains("\"s\""), "the secret is not in its Debug");
    }

    #[test]
    fn bad_provider_lists_are_refused_with_a_reason() {
        for (json, reason) in [
            (r#"[{"id":"Ex","name":"n","issuer":"https://a","client_id":"c","client_secret":"s"}]"#, "a-z"),
            (r#"[{"id":"e","name":"n","issuer":"ftp://a","client_id":"c","client_secret":"s"}]"#, "https"),
            (r#"[{"id":"e","name":"n","issuer":"https://a","client_id":"c"}]"#, "one of"),
            (
                r#"[{"id":"e","name":"n","issuer":"https://a","client_id":"c","client_secret":"s","scopes":["email"]}]"#,
                "openid",
            ),
            (
                r#"[{"id":"e","name":"n","issuer":"https://a","client_id":"c","client_secret":"s","extra":1}]"#,
                "unknown field",
            ),
        ] {
            let err = parse_providers(json).unwrap_err();
            assert!(err.contains(reason), "{json}: {err}");
        }
        let twice = format!("[{0},{0}]", &EXAMPLE[1..EXAMPLE.len() - 1]);
        assert!(parse_providers(&twice).unwrap_err().contains("twice"));
    }

    #[test]
    fn the_pkce_challenge_is_rfc_7636s() {
        // RFC 7636, appendix B.
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn return_to_stays_on_the_site() {
        assert_eq!(local_return_to(Some("/profile/security")), "/profile/security");
        for away in ["//evil.example/x", "https://evil.example", "/\\evil.example", "profile"] {
            assert_eq!(local_return_to(Some(away)), "/profile", "{away}");
        }
        assert_eq!(local_return_to(None), "/profile");
    }

    #[test]
    fn a_state_fits_its_provider_its_browser_and_its_time() {
        let state = ExternalState {
            provider: "example".into(),
            nonce: "n".into(),
            pkce_verifier: "v".into(),
            browser_digest: digest("browser"),
            purpose: ExternalPurpose::SignIn { return_to: "/profile".into() },
            expires_at: Timestamp::from_secs(100),
        };
        assert!(state.fits("example", "browser", Timestamp::from_secs(99)));
        assert!(!state.fits("other", "browser", Timestamp::from_secs(99)));
        assert!(!state.fits("example", "another browser", Timestamp::from_secs(99)));
        assert!(!state.fits("example", "browser", Timestamp::from_secs(100)));
    }
}
