//! The site settings staff change at run time (`GET, POST /admin/settings`), as Power Pages' site
//! settings: which ones, in which group, with what description; how their stored values are
//! applied on top of the environment's (defaults, then the environment, then the run-time item),
//! and where each value came from.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config::{Settings, SettingsError};
use crate::domain::ids::ContactId;
use crate::domain::time::Timestamp;

/// The run-time values as stored (one item): by setting name, each as its environment variable
/// would hold it; `version` counts the changes (0: never changed), for optimistic concurrency.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunTimeSettings {
    pub version: u64,
    #[serde(default)]
    pub values: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_by: Option<ContactId>,
}

/// A setting staff may change: its name (its environment variable's without `PORTAL_`,
/// lower-cased), the group the settings page shows it in, what it does, and how its current value
/// is written.
pub struct Editable {
    pub name: &'static str,
    pub variable: &'static str,
    pub group: &'static str,
    pub description: &'static str,
    pub show: fn(&Settings) -> String,
}

fn flag(value: bool) -> String {
    value.to_string()
}

/// Every setting staff may change, in the page's order.
pub const EDITABLE: &[Editable] = &[
    Editable {
        name: "open_registration",
        variable: "PORTAL_OPEN_REGISTRATION",
        group: "Registration",
        description: "Anyone may register (off: registration answers registration_closed).",
        show: |s| flag(s.open_registration),
    },
    Editable {
        name: "invitation_required",
        variable: "PORTAL_INVITATION_REQUIRED",
        group: "Registration",
        description: "Registering needs an invitation: the register page points to /redeem.",
        show: |s| flag(s.invitation_required),
    },
    Editable {
        name: "require_confirmation",
        variable: "PORTAL_REQUIRE_CONFIRMATION",
        group: "Registration",
        description: "A new account signs in only after following its confirmation link.",
        show: |s| flag(s.require_confirmation),
    },
    Editable {
        name: "email_code_sign_in",
        variable: "PORTAL_EMAIL_CODE_SIGN_IN",
        group: "Authentication",
        description: "People may sign in with a code emailed to their account's address.",
        show: |s| flag(s.email_code_sign_in),
    },
    Editable {
        name: "remember_me_days",
        variable: "PORTAL_REMEMBER_ME_DAYS",
        group: "Authentication",
        description: "How long a \"remember me\" sign-in lasts, in days.",
        show: |s| (s.remember_me_secs / 86_400).to_string(),
    },
    Editable {
        name: "lockout_threshold",
        variable: "PORTAL_LOCKOUT_THRESHOLD",
        group: "Lockout",
        description: "Failed sign-ins that lock an account.",
        show: |s| s.lockout.threshold.to_string(),
    },
    Editable {
        name: "lockout_seconds",
        variable: "PORTAL_LOCKOUT_SECONDS",
        group: "Lockout",
        description: "How long a first lockout lasts, in seconds (each next one doubles it).",
        show: |s| s.lockout.base_secs.to_string(),
    },
    Editable {
        name: "two_factor_required_roles",
        variable: "PORTAL_TWO_FACTOR_REQUIRED_ROLES",
        group: "Two-factor authentication",
        description: "Web roles whose members must set up a second factor (comma-separated).",
        show: |s| s.two_factor_required_roles.join(","),
    },
    Editable {
        name: "password_min_length",
        variable: "PORTAL_PASSWORD_MIN_LENGTH",
        group: "Passwords",
        description: "The shortest password accepted (8 to 64 characters).",
        show: |s| s.password_min_length.to_string(),
    },
    Editable {
        name: "emails_per_account_per_hour",
        variable: "PORTAL_EMAILS_PER_ACCOUNT_PER_HOUR",
        group: "Email allowances",
        description: "Requested emails (links, codes) one account may be sent in an hour.",
        show: |s| s.emails_per_account_per_hour.to_string(),
    },
    Editable {
        name: "emails_per_address_per_hour",
        variable: "PORTAL_EMAILS_PER_ADDRESS_PER_HOUR",
        group: "Email allowances",
        description: "Requested emails one source address may cause in an hour.",
        show: |s| s.emails_per_address_per_hour.to_string(),
    },
    Editable {
        name: "emails_per_recipient_per_hour",
        variable: "PORTAL_EMAILS_PER_RECIPIENT_PER_HOUR",
        group: "Email allowances",
        description: "Requested emails one recipient address may be sent in an hour.",
        show: |s| s.emails_per_recipient_per_hour.to_string(),
    },
    Editable {
        name: "terms_version",
        variable: "PORTAL_TERMS_VERSION",
        group: "Terms of use",
        description: "The version of the terms everyone must accept (empty: no terms).",
        show: |s| s.terms_version.clone().unwrap_or_default(),
    },
    Editable {
        name: "terms_url",
        variable: "PORTAL_TERMS_URL",
        group: "Terms of use",
        description: "Where that version of the terms is published.",
        show: |s| s.terms_url.clone().unwrap_or_default(),
    },
];

/// The editable setting of this name, if there is one.
pub fn editable(name: &str) -> Option<&'static Editable> {
    EDITABLE.iter().find(|e| e.name == name)
}

/// Where a setting's value comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    Default,
    Environment,
    RunTime,
}

/// One setting as the settings page and API show it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SettingRow {
    pub name: &'static str,
    pub value: String,
    pub default: String,
    pub source: Source,
    pub description: &'static str,
    pub group: &'static str,
}

/// A run-time value that would not parse: the setting's name and why.
#[derive(Debug, PartialEq, Eq)]
pub struct Refused {
    pub name: String,
    pub reason: String,
}

impl Settings {
    /// These settings with the run-time `values` (by setting name) applied on top of the
    /// environment they were read from: the same parsing and checks as at start-up, so a bad value
    /// is refused naming its setting.
    pub fn with_run_time(&self, values: &BTreeMap<String, String>) -> Result<Settings, Refused> {
        let environment = self.environment.clone();
        let lookup = |variable: &str| {
            let run_time = EDITABLE.iter().find(|e| e.variable == variable).and_then(|e| values.get(e.name));
            run_time.or_else(|| environment.get(variable)).cloned()
        };
        let mut applied = Settings::from_lookup(lookup).map_err(|SettingsError { variable, reason }| {
            let name = EDITABLE.iter().find(|e| e.variable == variable).map_or(variable, |e| e.name);
            Refused { name: name.to_string(), reason }
        })?;
        applied.environment = environment;
        Ok(applied)
    }

    /// Every editable setting: its value here, its default (without the environment's value nor a
    /// run-time one) and where its value came from.
    pub fn rows(&self, run_time: &RunTimeSettings) -> Vec<SettingRow> {
        let editable_variables: Vec<&str> = EDITABLE.iter().map(|e| e.variable).collect();
        let environment = self.environment.clone();
        let defaults = Settings::from_lookup(|variable| {
            environment.get(variable).filter(|_| !editable_variables.contains(&variable)).cloned()
        })
        .unwrap_or_else(|_| self.clone());
        EDITABLE
            .iter()
            .map(|e| SettingRow {
                name: e.name,
                value: (e.show)(self),
                default: (e.show)(&defaults),
                source: if run_time.values.contains_key(e.name) {
                    Source::RunTime
                } else if self.environment.contains_key(e.variable) {
                    Source::Environment
                } else {
                    Source::Default
                },
                description: e.description,
                group: e.group,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn environment(pairs: &[(&str, &str)]) -> Settings {
        let mut map: BTreeMap<String, String> = ["CONTACTS", "SESSIONS", "INVITATIONS", "OUTBOX", "AUDIT"]
            .iter()
            .map(|t| (format!("PORTAL_{t}_TABLE"), t.to_lowercase()))
            .collect();
        for (k, v) in pairs {
            map.insert(k.to_string(), v.to_string());
        }
        Settings::from_lookup(|name| map.get(name).cloned()).unwrap()
    }

    #[test]
    fn run_time_values_win_over_the_environment_which_wins_over_the_defaults() {
        let base = environment(&[("PORTAL_LOCKOUT_THRESHOLD", "7"), ("PORTAL_OPEN_REGISTRATION", "false")]);
        let run_time = RunTimeSettings {
            version: 3,
            values: BTreeMap::from([("open_registration".to_string(), "true".to_string())]),
            ..RunTimeSettings::default()
        };
        let applied = base.with_run_time(&run_time.values).unwrap();
        assert!(applied.open_registration, "run time over the environment");
        assert_eq!(applied.lockout.threshold, 7, "the environment over the default");
        assert_eq!(applied.password_min_length, 12, "the default");
        let rows = applied.rows(&run_time);
        let row = |name: &str| rows.iter().find(|r| r.name == name).unwrap().clone();
        assert_eq!(
            (row("open_registration").source, row("open_registration").value.as_str()),
            (Source::RunTime, "true")
        );
        assert_eq!(
            (
                row("lockout_threshold").source,
                row("lockout_threshold").value.as_str(),
                row("lockout_threshold").default.as_str()
            ),
            (Source::Environment, "7", "5")
        );
        assert_eq!(row("password_min_length").source, Source::Default);
        assert_eq!(rows.len(), EDITABLE.len());
        // Taking a run-time value away goes back to the environment's.
        assert!(!applied.with_run_time(&BTreeMap::new()).unwrap().open_registration);
    }

    #[test]
    fn a_bad_run_time_value_is_refused_naming_its_setting() {
        let base = environment(&[]);
        for (name, value) in [("password_min_length", "3"), ("lockout_threshold", "0"), ("open_registration", "maybe")]
        {
            let refused = base.with_run_time(&BTreeMap::from([(name.to_string(), value.to_string())])).unwrap_err();
            assert_eq!(refused.name, name, "{refused:?}");
        }
    }

    #[test]
    fn every_editable_setting_is_read_back_from_its_variable() {
        let base = environment(&[]);
        for e in EDITABLE {
            assert_eq!(e.name, e.variable.trim_start_matches("PORTAL_").to_lowercase());
            let default = (e.show)(&base);
            let other = match default.as_str() {
                "true" => "false".to_string(),
                "false" => "true".to_string(),
                number if number.parse::<u64>().is_ok() => (number.parse::<u64>().unwrap() + 1).to_string(),
                _ => "Partners".to_string(),
            };
            let applied = base.with_run_time(&BTreeMap::from([(e.name.to_string(), other.clone())])).unwrap();
            assert_eq!((e.show)(&applied), other, "{} is read from {}", e.name, e.variable);
        }
    }
}
