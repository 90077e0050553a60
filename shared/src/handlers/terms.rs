//! `GET, POST /terms` (the profile function): the site's current terms of use, and accepting
//! them. The only route a session limited to the terms reaches.

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use serde::Serialize;

use crate::config::Settings;
use crate::domain::audit::SourceAddress;
use crate::domain::time::{human, rfc3339};
use crate::usecases::terms;
use crate::web::pages::{TermsPage, ViewerSummary};
use crate::web::{AppState, Fields, Form, Page, PortalError, Reply, Submission, Viewer};

pub fn routes() -> Router<AppState> {
    Router::new().route("/terms", get(show).post(accept))
}

#[derive(Serialize)]
struct TermsView<'a> {
    version: &'a str,
    url: Option<&'a str>,
    accepted: bool,
    accepted_at: Option<String>,
}

async fn show(Viewer(signed_in): Viewer, page: Page) -> Result<Reply, PortalError> {
    let settings = page.settings();
    let Some(version) = settings.terms_version.clone() else { return Err(PortalError::NotFound) };
    let url = settings.terms_url.clone();
    let accepted = signed_in.contact.terms_accepted.clone().filter(|a| a.version == version);
    let view = TermsView {
        version: &version,
        url: url.as_deref(),
        accepted: accepted.is_some(),
        accepted_at: accepted.as_ref().map(|a| rfc3339(a.at)),
    };
    let reply = Reply::json(StatusCode::OK, &view);
    Ok(reply.or_page(move || {
        page.render(
            StatusCode::OK,
            &TermsPage {
                viewer: Some(ViewerSummary::of(&signed_in.contact)),
                csrf_token: &page.csrf_token,
                version: &version,
                url: url.as_deref().unwrap_or(""),
                accepted_at: accepted.map(|a| human(a.at)).unwrap_or_default(),
            },
        )
    }))
}

/// `{"accept": true}`: anything else is refused by name.
struct AcceptForm;

impl Form for AcceptForm {
    type Context = ();

    fn parse(fields: &mut Fields, _: &Settings) -> Result<Self, PortalError> {
        if !fields.flag("accept") {
            fields.reject::<()>("accept", "must be ticked to accept the terms");
        }
        fields.done(|| Some(AcceptForm))
    }
}

async fn accept(
    Viewer(signed_in): Viewer,
    source: SourceAddress,
    form: Submission<AcceptForm>,
) -> Result<Reply, PortalError> {
    let portal = form.page.portal.clone();
    let entered = terms::accept(&portal, &source, &signed_in).await?;
    let accepted = entered.contact.terms_accepted.clone();
    let body = serde_json::json!({
        "version": accepted.as_ref().map(|a| a.version.clone()),
        "accepted_at": accepted.map(|a| rfc3339(a.at)),
    });
    let target = super::entry::entered_target(&entered, "/");
    Ok(Reply::json(StatusCode::OK, &body).or_see_other(target).with_session(&portal.settings, &entered))
}
