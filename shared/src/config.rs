//! Typed settings, read once from the environment at start-up; the site settings staff may change
//! at run time are applied on top of them (see `site_settings`).
//!
//! These are the portal's "site settings" (Power Pages exposes the same knobs). A bad value stops the
//! function with a message naming the variable, instead of surfacing later as a confusing fault.

use std::fmt;

use crate::domain::lockout::LockoutPolicy;

/// `PORTAL_AUDIT_RETENTION_DAYS` unless set: how long audit data (a redemption's address) is kept.
pub const DEFAULT_AUDIT_RETENTION_DAYS: i64 = 365;

#[derive(Clone, Debug)]
pub struct Settings {
    /// Public base URL without a trailing slash, e.g. `https://portal.example.com`.
    pub base_url: String,
    /// The base URL's origin (`scheme://host[:port]`), compared with a request's `Origin` header.
    pub base_origin: String,
    /// Whether cookies get `Secure` and the `__Host-` prefix (true whenever the base URL is https).
    pub secure_cookies: bool,
    pub open_registration: bool,
    /// `PORTAL_INVITATION_REQUIRED`: registering needs an invitation (the register page points to
    /// `/redeem`; Power Pages' `Authentication/Registration/RequiresInvitation`).
    pub invitation_required: bool,
    /// `PORTAL_EDGE_SECRET`: with edge protection (CloudFront and AWS WAF in front of the API), the
    /// secret CloudFront sends as `X-Portal-Edge`; a request without it did not come through the
    /// edge and is refused. None: the API is the front door.
    pub edge_secret: Option<crate::domain::secret::SharedSecret>,
    /// `PORTAL_OIDC_PROVIDERS`: the OpenID Connect providers people may sign in with.
    pub oidc_providers: std::sync::Arc<Vec<crate::domain::identity::OidcProvider>>,
    /// `PORTAL_EMAIL_CODE_SIGN_IN`: signing in with a code emailed to the account's address.
    pub email_code_sign_in: bool,
    pub invitations_enabled: bool,
    pub require_confirmation: bool,
    pub password_min_length: usize,
    pub lockout: LockoutPolicy,
    pub session_idle_secs: i64,
    pub session_absolute_secs: i64,
    pub invitation_expiry_days: u32,
    pub email_sender: String,
    pub max_body_bytes: usize,
    pub contacts_table: String,
    pub sessions_table: String,
    pub invitations_table: String,
    pub outbox_table: String,
    /// The audit trail's table.
    pub audit_table: String,
    pub invitation_email_subject: String,
    /// Whether `send-email` sends invitation emails (the Dynamics 365 "Send Invitation" workflow,
    /// which administrators deactivate and reactivate). While off, messages stay pending.
    pub send_invitation_emails: bool,
    pub reset_token_secs: i64,
    pub confirmation_token_secs: i64,
    /// Emails (password resets, confirmation resends) one account may be sent per hour.
    pub emails_per_account_per_hour: u32,
    /// Such emails one source address may cause per hour.
    pub emails_per_address_per_hour: u32,
    /// Emails any requests may cause to one recipient address per hour (whoever asks, from
    /// wherever): no inbox can be flooded through the portal.
    pub emails_per_recipient_per_hour: u32,
    /// The window the three email allowances above count in, in seconds: an hour. Not a template
    /// parameter; the pytest stacks lengthen it, so that no window ends while a test counts.
    pub email_allowance_window_secs: i64,
    /// Failed sign-ins, and invalid invitation codes, one source address may make per hour before
    /// its attempts are refused (429) until the hour is over.
    pub failures_per_address_per_hour: u32,
    /// The EventBridge bus (name or ARN) `send-email` publishes the portal's events on; the
    /// template passes its own bus, the local stack `portal-events`.
    pub event_bus: String,
    /// The value of the `Stack` dimension of `send-email`'s metrics (`PORTAL_METRICS_STACK`: the
    /// template passes its stack's name, so that two stacks in one account keep their metrics, and
    /// their alarms, apart).
    pub metrics_stack: String,
    /// How long the audit trail and a redemption's source address are kept
    /// (`PORTAL_AUDIT_RETENTION_DAYS`, 365): then DynamoDB's TTL removes them.
    pub audit_retention_secs: i64,
    /// The web role of a customer's account administrators (`PORTAL_ACCOUNT_ADMIN_ROLE`): staff
    /// for the contacts of their own `account_id` only.
    pub account_admin_role: String,
    /// The version of the terms of use people must accept (`PORTAL_TERMS_VERSION`); none: no terms.
    pub terms_version: Option<String>,
    /// Where the terms of that version are published (`PORTAL_TERMS_URL`).
    pub terms_url: Option<String>,
    /// Web roles whose members must have a second factor (`PORTAL_TWO_FACTOR_REQUIRED_ROLES`,
    /// comma-separated; empty: nobody must).
    pub two_factor_required_roles: Vec<String>,
    /// How long a "remember me" sign-in's cookie and session last (`PORTAL_REMEMBER_ME_DAYS`).
    pub remember_me_secs: i64,
    /// The KMS key that encrypts the data keys of TOTP secrets (`PORTAL_TOTP_KMS_KEY_ID`, a key id,
    /// ARN or alias); without it TOTP cannot be set up or checked.
    pub totp_kms_key_id: Option<String>,
    /// How often an instance reads the site settings changed at run time, at most
    /// (`PORTAL_SETTINGS_REFRESH_SECS`, 60). Not a template parameter: the pytest stacks shorten it,
    /// so that a test sees a change at once.
    pub settings_refresh_secs: i64,
    /// What the environment (or a test's map) gave, by variable: run-time values are applied on
    /// top of it, and a setting's source is told from it.
    pub environment: std::sync::Arc<std::collections::BTreeMap<String, String>>,
}

#[derive(Debug, PartialEq, Eq)]
pub struct SettingsError {
    pub variable: &'static str,
    pub reason: String,
}

impl fmt::Display for SettingsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "setting {}: {}", self.variable, self.reason)
    }
}

impl std::error::Error for SettingsError {}

pub use crate::domain::password::PASSWORD_MAX_LENGTH;

impl Settings {
    /// The provider with this id, if the site lists it.
    pub fn oidc_provider(&self, id: &str) -> Option<&crate::domain::identity::OidcProvider> {
        self.oidc_providers.iter().find(|p| p.id == id)
    }

    /// The providers the sign-in and redeem pages offer: id and display name, in the site's order.
    pub fn provider_names(&self) -> Vec<(String, String)> {
        self.oidc_providers.iter().map(|p| (p.id.clone(), p.name.clone())).collect()
    }

    /// Reads every setting from the process environment.
    pub fn from_env() -> Result<Self, SettingsError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads every setting through `lookup` (the environment in production, a map in tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, SettingsError> {
        let given = std::cell::RefCell::new(std::collections::BTreeMap::new());
        let recording = |variable: &str| {
            let value = lookup(variable);
            if let Some(value) = &value {
                given.borrow_mut().insert(variable.to_string(), value.clone());
            }
            value
        };
        let mut settings = Self::read(&Reader { lookup: &recording })?;
        settings.environment = std::sync::Arc::new(given.into_inner());
        Ok(settings)
    }

    fn read(reader: &Reader<'_>) -> Result<Self, SettingsError> {
        let base_url = reader.text("PORTAL_BASE_URL", Some("http://localhost:9000"))?;
        let parsed = url::Url::parse(&base_url)
            .map_err(|e| SettingsError { variable: "PORTAL_BASE_URL", reason: format!("not a URL ({e})") })?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            return Err(SettingsError {
                variable: "PORTAL_BASE_URL",
                reason: "must be an http or https URL with a host".into(),
            });
        }
        let password_min_length = reader.number("PORTAL_PASSWORD_MIN_LENGTH", 12)?;
        if !(8..=64).contains(&password_min_length) {
            return Err(SettingsError {
                variable: "PORTAL_PASSWORD_MIN_LENGTH",
                reason: "must be between 8 and 64".into(),
            });
        }
        let lockout = LockoutPolicy {
            threshold: reader.positive("PORTAL_LOCKOUT_THRESHOLD", 5)?,
            base_secs: reader.positive("PORTAL_LOCKOUT_SECONDS", 300)?,
            max_secs: reader.positive("PORTAL_LOCKOUT_MAX_SECONDS", 3600)?,
        };
        Ok(Settings {
            base_url: base_url.trim_end_matches('/').to_string(),
            base_origin: parsed.origin().ascii_serialization(),
            secure_cookies: parsed.scheme() == "https",
            open_registration: reader.flag("PORTAL_OPEN_REGISTRATION", true)?,
            invitation_required: reader.flag("PORTAL_INVITATION_REQUIRED", false)?,
            email_code_sign_in: reader.flag("PORTAL_EMAIL_CODE_SIGN_IN", true)?,
            edge_secret: match reader.raw("PORTAL_EDGE_SECRET") {
                // Guessable would be as good as none: CloudFront's is the stack's id (a UUID).
                Some(secret) if secret.len() < 16 => {
                    return Err(SettingsError {
                        variable: "PORTAL_EDGE_SECRET",
                        reason: "must be at least 16 characters".into(),
                    });
                }
                secret => secret.map(crate::domain::secret::SharedSecret::new),
            },
            oidc_providers: std::sync::Arc::new(
                crate::domain::identity::parse_providers(&reader.raw("PORTAL_OIDC_PROVIDERS").unwrap_or("[]".into()))
                    .map_err(|reason| SettingsError { variable: "PORTAL_OIDC_PROVIDERS", reason })?,
            ),
            invitations_enabled: reader.flag("PORTAL_INVITATIONS_ENABLED", true)?,
            require_confirmation: reader.flag("PORTAL_REQUIRE_CONFIRMATION", false)?,
            password_min_length,
            lockout,
            session_idle_secs: reader.positive::<i64>("PORTAL_SESSION_IDLE_MINUTES", 60)? * 60,
            session_absolute_secs: reader.positive::<i64>("PORTAL_SESSION_ABSOLUTE_HOURS", 24)? * 3600,
            invitation_expiry_days: reader.positive("PORTAL_INVITATION_EXPIRY_DAYS", 7)?,
            email_sender: reader.text("PORTAL_EMAIL_SENDER", Some("no-reply@example.com"))?,
            max_body_bytes: reader.positive("PORTAL_MAX_BODY_BYTES", 16 * 1024)?,
            contacts_table: reader.text("PORTAL_CONTACTS_TABLE", None)?,
            sessions_table: reader.text("PORTAL_SESSIONS_TABLE", None)?,
            invitations_table: reader.text("PORTAL_INVITATIONS_TABLE", None)?,
            outbox_table: reader.text("PORTAL_OUTBOX_TABLE", None)?,
            audit_table: reader.text("PORTAL_AUDIT_TABLE", None)?,
            invitation_email_subject: reader
                .text("PORTAL_INVITATION_EMAIL_SUBJECT", Some("You're invited to the customer portal"))?,
            send_invitation_emails: reader.flag("PORTAL_SEND_INVITATION_EMAILS", true)?,
            reset_token_secs: reader.positive::<i64>("PORTAL_RESET_TOKEN_MINUTES", 60)? * 60,
            confirmation_token_secs: reader.positive::<i64>("PORTAL_CONFIRMATION_TOKEN_HOURS", 24)? * 3600,
            emails_per_account_per_hour: reader.positive("PORTAL_EMAILS_PER_ACCOUNT_PER_HOUR", 3)?,
            emails_per_address_per_hour: reader.positive("PORTAL_EMAILS_PER_ADDRESS_PER_HOUR", 10)?,
            emails_per_recipient_per_hour: reader.positive("PORTAL_EMAILS_PER_RECIPIENT_PER_HOUR", 3)?,
            email_allowance_window_secs: reader.positive::<i64>("PORTAL_EMAIL_ALLOWANCE_WINDOW_SECS", 3600)?,
            failures_per_address_per_hour: reader.positive("PORTAL_FAILURES_PER_ADDRESS_PER_HOUR", 100)?,
            event_bus: reader.text("PORTAL_EVENT_BUS", Some("portal-events"))?,
            metrics_stack: reader.text("PORTAL_METRICS_STACK", Some("portal-local"))?,
            audit_retention_secs: reader
                .positive::<i64>("PORTAL_AUDIT_RETENTION_DAYS", DEFAULT_AUDIT_RETENTION_DAYS)?
                * 86_400,
            account_admin_role: reader.text("PORTAL_ACCOUNT_ADMIN_ROLE", Some("Account Administrators"))?,
            terms_version: reader.raw("PORTAL_TERMS_VERSION").map(|v| v.trim().to_string()).filter(|v| !v.is_empty()),
            terms_url: reader.raw("PORTAL_TERMS_URL").map(|v| v.trim().to_string()).filter(|v| !v.is_empty()),
            two_factor_required_roles: reader
                .raw("PORTAL_TWO_FACTOR_REQUIRED_ROLES")
                .map(|v| v.split(',').map(|r| r.trim().to_string()).filter(|r| !r.is_empty()).collect())
                .unwrap_or_default(),
            remember_me_secs: reader.positive::<i64>("PORTAL_REMEMBER_ME_DAYS", 30)? * 86_400,
            totp_kms_key_id: reader.raw("PORTAL_TOTP_KMS_KEY_ID"),
            settings_refresh_secs: reader.positive::<i64>("PORTAL_SETTINGS_REFRESH_SECS", 60)?,
            environment: Default::default(),
        })
    }
}

struct Reader<'a> {
    lookup: &'a dyn Fn(&str) -> Option<String>,
}

impl Reader<'_> {
    fn raw(&self, variable: &str) -> Option<String> {
        (self.lookup)(variable).map(|v| v.trim().to_string()).filter(|v| !v.is_empty())
    }

    fn text(&self, variable: &'static str, default: Option<&str>) -> Result<String, SettingsError> {
        self.raw(variable)
            .or_else(|| default.map(str::to_string))
            .ok_or(SettingsError { variable, reason: "is required".into() })
    }

    fn flag(&self, variable: &'static str, default: bool) -> Result<bool, SettingsError> {
        match self.raw(variable).map(|v| v.to_ascii_lowercase()) {
            None => Ok(default),
            Some(v) if matches!(v.as_str(), "true" | "1" | "yes" | "on") => Ok(true),
            Some(v) if matches!(v.as_str(), "false" | "0" | "no" | "off") => Ok(false),
            Some(v) => Err(SettingsError { variable, reason: format!("must be true or false (got {v:?})") }),
        }
    }

    fn number<T: std::str::FromStr>(&self, variable: &'static str, default: T) -> Result<T, SettingsError> {
        match self.raw(variable) {
            None => Ok(default),
            Some(v) => {
                v.parse().map_err(|_| SettingsError { variable, reason: format!("must be a whole number (got {v:?})") })
            }
        }
    }

    fn positive<T: std::str::FromStr + PartialOrd + Default>(
        &self,
        variable: &'static str,
        default: T,
    ) -> Result<T, SettingsError> {
        let value = self.number(variable, default)?;
        if value <= T::default() {
            return Err(SettingsError { variable, reason: "must be greater than zero".into() });
        }
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(pairs: &[(&str, &str)]) -> Result<Settings, SettingsError> {
        let mut map: HashMap<String, String> = HashMap::from([
            ("PORTAL_CONTACTS_TABLE".to_string(), "c".to_string()),
            ("PORTAL_SESSIONS_TABLE".to_string(), "s".to_string()),
            ("PORTAL_INVITATIONS_TABLE".to_string(), "i".to_string()),
            ("PORTAL_OUTBOX_TABLE".to_string(), "o".to_string()),
            ("PORTAL_AUDIT_TABLE".to_string(), "a".to_string()),
        ]);
        for (k, v) in pairs {
            map.insert(k.to_string(), v.to_string());
        }
        Settings::from_lookup(|name| map.get(name).cloned())
    }

    #[test]
    fn defaults_match_power_pages_style_site_settings() {
        let s = settings(&[]).unwrap();
        assert_eq!(s.password_min_length, 12);
        assert_eq!(s.lockout.threshold, 5);
        assert!(s.open_registration && s.invitations_enabled && !s.require_confirmation);
        assert!(!s.secure_cookies);
        assert_eq!(s.base_origin, "http://localhost:9000");
    }

    #[test]
    fn https_base_url_turns_on_secure_cookies_and_strips_the_trailing_slash() {
        let s = settings(&[("PORTAL_BASE_URL", "https://portal.example.com/")]).unwrap();
        assert!(s.secure_cookies);
        assert_eq!(s.base_url, "https://portal.example.com");
        assert_eq!(s.base_origin, "https://portal.example.com");
    }

    #[test]
    fn a_bad_value_names_its_variable() {
        let cases = [
            ("PORTAL_LOCKOUT_THRESHOLD", "five"),
            ("PORTAL_LOCKOUT_THRESHOLD", "0"),
            ("PORTAL_OPEN_REGISTRATION", "maybe"),
            ("PORTAL_PASSWORD_MIN_LENGTH", "4"),
            ("PORTAL_BASE_URL", "not a url"),
            ("PORTAL_MAX_BODY_BYTES", "-1"),
            ("PORTAL_EDGE_SECRET", "short"),
        ];
        for (variable, value) in cases {
            let err = settings(&[(variable, value)]).unwrap_err();
            assert_eq!(err.variable, variable, "{value}");
        }
    }

    #[test]
    fn two_factor_roles_are_a_comma_separated_list_and_remember_me_is_in_days() {
        let s = settings(&[]).unwrap();
        assert!(s.two_factor_required_roles.is_empty());
        assert_eq!(s.remember_me_secs, 30 * 86_400);
        let s = settings(&[
            ("PORTAL_TWO_FACTOR_REQUIRED_ROLES", " Administrators, Partners ,"),
            ("PORTAL_REMEMBER_ME_DAYS", "7"),
        ])
        .unwrap();
        assert_eq!(s.two_factor_required_roles, ["Administrators", "Partners"]);
        assert_eq!(s.remember_me_secs, 7 * 86_400);
        assert_eq!(settings(&[("PORTAL_REMEMBER_ME_DAYS", "0")]).unwrap_err().variable, "PORTAL_REMEMBER_ME_DAYS");
    }

    #[test]
    fn email_allowances_count_per_hour_unless_the_window_is_lengthened() {
        assert_eq!(settings(&[]).unwrap().email_allowance_window_secs, 3600);
        let s = settings(&[("PORTAL_EMAIL_ALLOWANCE_WINDOW_SECS", "86400")]).unwrap();
        assert_eq!(s.email_allowance_window_secs, 86_400);
    }

    #[test]
    fn table_names_are_required() {
        let err = Settings::from_lookup(|_| None).unwrap_err();
        assert_eq!(err.variable, "PORTAL_CONTACTS_TABLE");
    }
}
