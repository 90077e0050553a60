//! Site settings changed at run time by administrators (`GET, POST /admin/settings`): the list with
//! each value's source, and a change of several settings in one conditional write against the
//! version that was read, with its audit entry and `SettingsChanged` event.

use std::collections::BTreeMap;

use crate::domain::audit::{AuditEvent, SourceAddress};
use crate::domain::contact::Contact;
use crate::domain::event::Fact;
use crate::error::PortalError;
use crate::ports::{Queued, UsesClock, UsesContacts, UsesSettings};
use crate::site_settings::{RunTimeSettings, SettingRow, editable};

/// The settings as they stand now (read from the store, not the minute's cache) and their version.
pub async fn list(portal: &(impl UsesContacts + UsesSettings)) -> Result<(Vec<SettingRow>, u64), PortalError> {
    let run_time = portal.contacts().run_time_settings().await?;
    let effective = applied(portal, &run_time.values)?;
    Ok((effective.rows(&run_time), run_time.version))
}

/// One change: a value by setting name (`None` goes back to the environment's or the default),
/// against `version` when the caller read one (else the version read here).
pub struct Change {
    pub values: BTreeMap<String, Option<String>>,
    pub version: Option<u64>,
}

/// Applies `change` as `admin`: unknown names and bad values are refused naming them (nothing is
/// changed); a change against a version another change replaced is refused naming `version`.
/// Every function sees it within a minute.
pub async fn change(
    portal: &(impl UsesContacts + UsesSettings + UsesClock),
    admin: &Contact,
    change: Change,
    source: &SourceAddress,
) -> Result<(Vec<SettingRow>, u64), PortalError> {
    let unknown: BTreeMap<String, String> = change
        .values
        .keys()
        .filter(|name| editable(name).is_none())
        .map(|name| (name.clone(), "is not a setting that can be changed here".to_string()))
        .collect();
    if !unknown.is_empty() {
        return Err(PortalError::fields_invalid(unknown));
    }
    let current = portal.contacts().run_time_settings().await?;
    let read = change.version.unwrap_or(current.version);
    if read != current.version {
        return Err(changed_meanwhile());
    }
    let mut values = current.values.clone();
    for (name, value) in &change.values {
        match value {
            Some(value) => values.insert(name.clone(), value.trim().to_string()),
            None => values.remove(name),
        };
    }
    applied(portal, &values)?;
    let now = portal.clock().now();
    let next = RunTimeSettings {
        version: current.version + 1,
        values,
        updated_at: Some(now),
        updated_by: Some(admin.contact_id.clone()),
    };
    let names: Vec<String> = change.values.keys().cloned().collect();
    let id = Some(&admin.contact_id);
    let entry = super::audit_entry(portal, AuditEvent::SettingsChanged, id, None, source)
        .with("settings", names.join(","))
        .with("version", next.version.to_string());
    let event = Fact::SettingsChanged { names, actor_id: admin.contact_id.clone(), version: next.version }.at(now);
    let queued: Vec<Queued> = vec![entry.into(), event.into()];
    if !portal.contacts().save_run_time_settings(&next, current.version, &queued).await? {
        return Err(changed_meanwhile());
    }
    super::audit(AuditEvent::SettingsChanged, None, source);
    let effective = applied(portal, &next.values)?;
    Ok((effective.rows(&next), next.version))
}

/// The settings with these run-time `values`: a value they refuse is named.
fn applied(
    portal: &impl UsesSettings,
    values: &BTreeMap<String, String>,
) -> Result<crate::config::Settings, PortalError> {
    portal.settings().with_run_time(values).map_err(|refused| PortalError::field(&refused.name, refused.reason))
}

fn changed_meanwhile() -> PortalError {
    PortalError::ChangedMeanwhile {
        fields: BTreeMap::from([(
            "version".to_string(),
            "another change was saved since these settings were read".to_string(),
        )]),
    }
}
