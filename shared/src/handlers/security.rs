//! The person's security centre (the profile function): `GET /profile/security` (the page),
//! `GET /profile/sessions`, `POST /profile/sessions/{id}/revoke`, `POST
//! /profile/sessions/revoke-others`, `GET /profile/sign-ins`, `GET, POST /profile/export` and `GET,
//! POST /profile/delete`.

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;
use serde_json::json;

use crate::config::Settings;
use crate::domain::audit::SourceAddress;
use crate::domain::browser;
use crate::domain::contact::Contact;
use crate::domain::listing::{PageRequest, Position};
use crate::domain::time::{human, rfc3339};
use crate::usecases::deletion;
use crate::usecases::lists;
use crate::usecases::reauth::Reauthentication;
use crate::usecases::security::{self, SessionRow, SignInRow};
use crate::web::extract::{NoFields, PathParam};
use crate::web::pages::{
    DeleteAccountPage, ExportPage, FormErrors, SecurityPage, SecuritySessionRow, SecuritySignInRow, ViewerSummary,
};
use crate::web::response::clear_session_cookie;
use crate::web::{AppState, Fields, Form, Page, PortalError, Rejection, Reply, Submission, Viewer};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/profile/export", get(export_page).post(export))
        .route("/profile/delete", get(delete_page).post(delete))
        .route("/profile/security", get(show))
        .route("/profile/sessions", get(list_sessions))
        .route("/profile/sessions/revoke-others", post(revoke_others))
        .route("/profile/sessions/{id}/revoke", post(revoke))
        .route("/profile/sign-ins", get(list_sign_ins))
        .route("/profile/reauthentication-code", post(reauthentication_code))
}

/// `POST /profile/reauthentication-code`: a code to the signed-in person's address, which stands
/// for the password of an account without one (202 `{"status":"email_sent"}`, the allowances of
/// every emailed code); a browser goes back to the page whose form asked for it.
async fn reauthentication_code(
    Viewer(signed_in): Viewer,
    source: SourceAddress,
    headers: axum::http::HeaderMap,
    form: Submission<NoFields>,
) -> Result<Reply, PortalError> {
    let portal = &form.page.portal;
    crate::usecases::tokens::request_sign_in_code(portal, &source, &signed_in.contact.email).await?;
    let back = headers
        .get(header::REFERER)
        .and_then(|v| v.to_str().ok())
        .and_then(|referer| referer.strip_prefix(&portal.settings.base_url))
        .filter(|path| path.starts_with("/profile"));
    let back = crate::domain::identity::local_return_to(back);
    Ok(Reply::json(StatusCode::ACCEPTED, &json!({"status": "email_sent"})).or_see_other(back))
}

/// A session as the contract's JSON shows it (`session_id` is an id, never the token).
#[derive(Serialize)]
struct SessionView<'a> {
    session_id: &'a str,
    current: bool,
    created_at: String,
    last_used_at: String,
    expires_at: String,
    remember_me: bool,
    ip: Option<&'a str>,
    user_agent: String,
    method: Option<&'a str>,
}

impl<'a> SessionView<'a> {
    fn of(row: &'a SessionRow) -> Self {
        let session = &row.session;
        SessionView {
            session_id: session.public_id(),
            current: row.current,
            created_at: rfc3339(session.created_at),
            last_used_at: rfc3339(session.last_seen_at),
            expires_at: rfc3339(session.expires_at),
            remember_me: session.remembered,
            ip: session.ip.as_deref(),
            user_agent: browser::describe(session.user_agent.as_deref()),
            method: session.method.as_deref(),
        }
    }
}

#[derive(Serialize)]
struct SessionList<'a> {
    sessions: Vec<SessionView<'a>>,
}

#[derive(Serialize)]
struct SignInView<'a> {
    at: String,
    method: &'a str,
    result: &'a str,
    ip: &'a str,
    user_agent: String,
}

impl<'a> SignInView<'a> {
    fn of(row: &'a SignInRow) -> Self {
        SignInView {
            at: rfc3339(row.at),
            method: &row.method,
            result: &row.result,
            ip: &row.ip,
            user_agent: browser::describe(row.user_agent.as_deref()),
        }
    }
}

#[derive(Serialize)]
struct SignInList<'a> {
    sign_ins: Vec<SignInView<'a>>,
    next_cursor: Option<String>,
}

async fn list_sessions(Viewer(signed_in): Viewer, page: Page) -> Result<Reply, PortalError> {
    let rows = security::sessions(&page.portal, &signed_in).await?;
    Ok(Reply::json(StatusCode::OK, &SessionList { sessions: rows.iter().map(SessionView::of).collect() })
        .or_see_other("/profile/security"))
}

async fn list_sign_ins(Viewer(signed_in): Viewer, page: Page) -> Result<Reply, PortalError> {
    let request = lists::page_request(page.query("limit").as_deref(), page.query("cursor").as_deref())?;
    let found = security::sign_ins(&page.portal, &signed_in, &request).await?;
    let view = SignInList {
        sign_ins: found.items.iter().map(SignInView::of).collect(),
        next_cursor: found.next.as_ref().map(Position::encode),
    };
    Ok(Reply::json(StatusCode::OK, &view).or_see_other("/profile/security"))
}

async fn revoke(
    Viewer(signed_in): Viewer,
    source: SourceAddress,
    PathParam(id): PathParam<String>,
    form: Submission<NoFields>,
) -> Result<Reply, PortalError> {
    security::revoke(&form.page.portal, &signed_in, &id, &source).await?;
    Ok(Reply::no_content().or_see_other("/profile/security"))
}

async fn revoke_others(
    Viewer(signed_in): Viewer,
    source: SourceAddress,
    form: Submission<NoFields>,
) -> Result<Reply, PortalError> {
    security::revoke_others(&form.page.portal, &signed_in, &source).await?;
    Ok(Reply::no_content().or_see_other("/profile/security"))
}

/// The security centre: sessions, recent sign-ins, and links to the factors and passkeys.
async fn show(Viewer(signed_in): Viewer, page: Page) -> Result<Reply, PortalError> {
    let portal = page.portal.clone();
    let recent = PageRequest::first(20);
    let (rows, history, factors, passkeys) = tokio::join!(
        security::sessions(&portal, &signed_in),
        security::sign_ins(&portal, &signed_in, &recent),
        portal.two_factor.get(&signed_in.contact.contact_id),
        portal.passkeys.list(&signed_in.contact.contact_id),
    );
    let (rows, history, factors, passkeys) = (rows?, history?, factors?, passkeys?);
    let view = SessionList { sessions: rows.iter().map(SessionView::of).collect() };
    let body = serde_json::to_value(&view).unwrap_or_default();
    Ok(Reply::json(StatusCode::OK, &body).or_page(move || {
        page.render(
            StatusCode::OK,
            &SecurityPage {
                viewer: Some(ViewerSummary::of(&signed_in.contact)),
                csrf_token: &page.csrf_token,
                sessions: rows
                    .iter()
                    .map(|row| SecuritySessionRow {
                        id: row.session.public_id().to_string(),
                        current: row.current,
                        browser: browser::describe(row.session.user_agent.as_deref()),
                        ip: row.session.ip.clone().unwrap_or_default(),
                        method: row.session.method.clone().unwrap_or_default(),
                        started: human(row.session.created_at),
                        last_used: human(row.session.last_seen_at),
                    })
                    .collect(),
                sign_ins: history
                    .items
                    .iter()
                    .map(|row| SecuritySignInRow {
                        when: human(row.at),
                        method: row.method.replace('_', " "),
                        result: row.result.replace('_', " "),
                        succeeded: row.result == "success",
                        browser: browser::describe(row.user_agent.as_deref()),
                        ip: row.ip.clone(),
                    })
                    .collect(),
                factors: factors.methods().join(", ").replace('_', " "),
                passkeys: passkeys.len(),
            },
        )
    }))
}

/// The export form: re-authentication.
struct ExportForm {
    given: Reauthentication,
}

impl Form for ExportForm {
    type Context = ();

    fn parse(fields: &mut Fields, _: &Settings) -> Result<Self, PortalError> {
        let given = fields.reauthentication();
        fields.done(|| Some(ExportForm { given }))
    }

    fn page(page: &Page, _: &mut Fields, _: &(), errors: FormErrors) -> Option<Response> {
        Some(render_export_page(page, None, errors))
    }
}

fn render_export_page(page: &Page, viewer: Option<&Contact>, errors: FormErrors) -> Response {
    page.render(
        StatusCode::OK,
        &ExportPage { viewer: viewer.map(ViewerSummary::of), csrf_token: &page.csrf_token, errors },
    )
}

/// `GET /profile/export`: the page with the export form.
async fn export_page(Viewer(signed_in): Viewer, page: Page) -> Response {
    render_export_page(&page, Some(&signed_in.contact), FormErrors::default())
}

/// `POST /profile/export`: everything stored about the person, as a JSON attachment.
async fn export(
    Viewer(signed_in): Viewer,
    source: SourceAddress,
    mut form: Submission<ExportForm>,
) -> Result<Response, Rejection> {
    let portal = form.page.portal.clone();
    let given = form.given.clone();
    let gathered = match security::export(&portal, &source, &signed_in, given).await {
        Ok(gathered) => gathered,
        Err(err) => return Err(form.reject(err)),
    };
    let body = export_json(&gathered, portal.clock.now());
    let text = serde_json::to_string_pretty(&body).unwrap_or_default();
    Ok((
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CONTENT_DISPOSITION, "attachment; filename=\"portal-export.json\""),
            (header::CACHE_CONTROL, "no-store"),
        ],
        text,
    )
        .into_response())
}

/// The deletion form: re-authentication, as the export's.
struct DeleteForm {
    given: Reauthentication,
}

impl Form for DeleteForm {
    type Context = ();

    fn parse(fields: &mut Fields, _: &Settings) -> Result<Self, PortalError> {
        let given = fields.reauthentication();
        fields.done(|| Some(DeleteForm { given }))
    }

    fn page(page: &Page, _: &mut Fields, _: &(), errors: FormErrors) -> Option<Response> {
        Some(render_delete_page(page, None, errors))
    }
}

fn render_delete_page(page: &Page, viewer: Option<&Contact>, errors: FormErrors) -> Response {
    page.render(
        StatusCode::OK,
        &DeleteAccountPage { viewer: viewer.map(ViewerSummary::of), csrf_token: &page.csrf_token, errors },
    )
}

/// `GET /profile/delete`: the page with the deletion form.
async fn delete_page(Viewer(signed_in): Viewer, page: Page) -> Response {
    render_delete_page(&page, Some(&signed_in.contact), FormErrors::default())
}

/// `POST /profile/delete`: the account is deleted (202); this browser's session cookie goes with it.
async fn delete(
    Viewer(signed_in): Viewer,
    source: SourceAddress,
    mut form: Submission<DeleteForm>,
) -> Result<Reply, Rejection> {
    let portal = form.page.portal.clone();
    let given = form.given.clone();
    let tombstone = match deletion::delete_own(&portal, &source, &signed_in, given).await {
        Ok(tombstone) => tombstone,
        Err(err) => return Err(form.reject(err)),
    };
    let deleted_at = tombstone.deleted_at.map(rfc3339);
    let body = json!({ "contact_id": tombstone.contact_id, "deleted_at": deleted_at });
    Ok(Reply::json(StatusCode::ACCEPTED, &body)
        .or_message_at(
            StatusCode::OK,
            "Your account was deleted. You are signed out, and an email confirms it to the address it had.",
        )
        .with_cookie(clear_session_cookie(&portal.settings)))
}

/// The export's JSON: the contract's parts, each from its store, without a secret.
fn export_json(export: &security::Export, now: crate::domain::time::Timestamp) -> serde_json::Value {
    let contact = &export.contact;
    let sign_in_kinds = ["signed_in", "sign_in_failed", "second_factor_failed", "second_factor_required"];
    json!({
        "exported_at": rfc3339(now),
        "profile": {
            "contact_id": contact.contact_id.as_str(),
            "email": contact.email.as_str(),
            "email_confirmed": contact.email_confirmed,
            "pending_email": contact.pending_email.as_ref().map(|e| e.as_str()),
            "first_name": contact.first_name,
            "last_name": contact.last_name,
            "username": contact.username.as_ref().map(|u| u.as_str()),
            "phone": contact.phone,
            "created_at": rfc3339(contact.created_at),
            "updated_at": rfc3339(contact.updated_at),
            "email_undeliverable": contact.email_undeliverable.as_ref().map(|m| json!({
                "reason": m.reason, "at": rfc3339(m.at), "detail": m.detail,
            })),
        },
        "roles": contact.roles,
        "account_id": contact.account_id,
        "terms_accepted": contact.terms_accepted.as_ref().map(|a| json!({"version": a.version, "accepted_at": rfc3339(a.at)})),
        "sessions": export.sessions.iter().map(SessionView::of).collect::<Vec<_>>(),
        "sign_ins": export
            .audit
            .iter()
            .filter(|e| sign_in_kinds.contains(&e.kind.as_str()))
            .map(|e| {
                let row = security::SignInRow::of(e);
                json!({"at": rfc3339(row.at), "method": row.method, "result": row.result, "ip": row.ip,
                       "user_agent": browser::describe(row.user_agent.as_deref())})
            })
            .collect::<Vec<_>>(),
        "two_factor": {
            "totp": export.two_factor.totp.is_some(),
            "email": export.two_factor.email,
            "recovery_codes_left": export.two_factor.recovery_codes.len(),
        },
        "passkeys": export.passkeys.iter().map(|p| json!({
            "name": p.name, "created_at": rfc3339(p.created_at), "last_used_at": p.last_used_at.map(rfc3339),
        })).collect::<Vec<_>>(),
        "identities": contact.identities.iter().map(|i| json!({
            "provider": i.provider, "subject": i.subject, "email": i.email, "linked_at": rfc3339(i.linked_at),
        })).collect::<Vec<_>>(),
        "invitations": export.invitations.iter().map(|i| json!({
            "invitation_id": i.invitation_id.as_str(),
            "created_at": rfc3339(i.created_at),
            "status": i.status(now),
            "redemptions": i.redemptions,
            "roles": i.roles,
            "account_id": i.account_id,
        })).collect::<Vec<_>>(),
        "audit": export.audit.iter().map(|e| json!({
            "entry_id": e.entry_id, "at": rfc3339(e.at), "kind": e.kind,
            "actor_id": e.actor_id.as_ref().map(|id| id.as_str()),
            "contact_id": e.contact_id.as_ref().map(|id| id.as_str()),
            "ip": e.ip, "detail": e.detail,
        })).collect::<Vec<_>>(),
    })
}
