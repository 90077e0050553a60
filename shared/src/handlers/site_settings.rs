//! `GET, POST /admin/settings` (the create-invitation function, administrators only): the site
//! settings changed at run time, as JSON or as the settings page.

use std::collections::BTreeMap;

use axum::Router;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use serde::Serialize;

use crate::config::Settings;
use crate::domain::audit::SourceAddress;
use crate::site_settings::{EDITABLE, SettingRow};
use crate::usecases::site_settings::{self, Change};
use crate::web::extract::Admin;
use crate::web::pages::{FormErrors, SettingsGroup, SettingsPage, ViewerSummary};
use crate::web::{AppState, Fields, Form, Page, PortalError, Rejection, Reply, Submission};

pub fn routes() -> Router<AppState> {
    Router::new().route("/admin/settings", get(show).post(save))
}

#[derive(Serialize)]
struct SettingsView {
    settings: Vec<SettingRow>,
    version: u64,
}

fn render(
    page: &Page,
    viewer: Option<&Admin>,
    rows: Vec<SettingRow>,
    version: u64,
    saved: bool,
    errors: FormErrors,
) -> Response {
    let mut groups: Vec<SettingsGroup> = Vec::new();
    for row in rows {
        match groups.iter_mut().find(|g| g.name == row.group) {
            Some(group) => group.settings.push(row),
            None => groups.push(SettingsGroup { name: row.group, settings: vec![row] }),
        }
    }
    let viewer = viewer.map(|admin| ViewerSummary::of(&admin.contact));
    page.render(StatusCode::OK, &SettingsPage { viewer, csrf_token: &page.csrf_token, version, groups, saved, errors })
}

/// `GET /admin/settings`: every setting staff may change, with its value, default and source.
async fn show(admin: Admin, page: Page) -> Result<Reply, PortalError> {
    let (settings, version) = site_settings::list(&page.portal).await?;
    let view = SettingsView { settings: settings.clone(), version };
    Ok(Reply::json(StatusCode::OK, &view)
        .or_page(move || render(&page, Some(&admin), settings, version, false, FormErrors::default())))
}

/// The settings sent, by name (a blank one goes back to the environment's value), and the version
/// they were read at.
struct SettingsForm {
    values: BTreeMap<String, Option<String>>,
    version: Option<u64>,
}

impl Form for SettingsForm {
    /// The settings as stored, to show the form again with the problems.
    type Context = (Vec<SettingRow>, u64);

    fn context(_: &mut axum::http::request::Parts, state: &AppState) -> impl Future<Output = Self::Context> + Send {
        let portal = state.clone();
        async move { site_settings::list(&portal).await.unwrap_or_default() }
    }

    fn parse(fields: &mut Fields, _: &Settings) -> Result<Self, PortalError> {
        let version = fields.optional_integer("version", 0..=i64::MAX).map(|v| v as u64);
        let mut values = BTreeMap::new();
        for name in fields.names() {
            if name == "version" {
                continue;
            }
            if !EDITABLE.iter().any(|e| e.name == name) {
                fields.reject::<()>(&name, "is not a setting that can be changed here");
                continue;
            }
            if let Some(value) = fields.setting(&name) {
                values.insert(name, value);
            }
        }
        fields.done(|| Some(SettingsForm { values, version }))
    }

    fn page(page: &Page, _: &mut Fields, (rows, version): &Self::Context, errors: FormErrors) -> Option<Response> {
        Some(render(page, None, rows.clone(), *version, false, errors))
    }
}

/// `POST /admin/settings {"<name>": value, ..., "version"?}`: the changes in one conditional write;
/// 200 the settings as they now stand.
async fn save(admin: Admin, source: SourceAddress, mut form: Submission<SettingsForm>) -> Result<Reply, Rejection> {
    let portal = form.page.portal.clone();
    let change = Change { values: form.values.clone(), version: form.version };
    let (settings, version) = match site_settings::change(&portal, &admin.contact, change, &source).await {
        Ok(saved) => saved,
        Err(err) => {
            let stored = site_settings::list(&portal).await.unwrap_or_default();
            return Err(form.reject_with(err, &stored));
        }
    };
    let view = SettingsView { settings: settings.clone(), version };
    let page = form.page;
    Ok(Reply::json(StatusCode::OK, &view)
        .or_page(move || render(&page, Some(&admin), settings, version, true, FormErrors::default())))
}
