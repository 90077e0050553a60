//! Bulk import of contacts (part of the create-invitation function): `GET /admin/imports` (the
//! upload page), `POST /admin/imports` (CSV as `text/csv` from programs, or the page's
//! `multipart/form-data` upload) and `GET /admin/imports/{id}` (progress, JSON or a page with a
//! progress bar that refreshes itself while the import runs).

use askama::Template;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Multipart, Request};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use serde::Serialize;

use crate::domain::audit::SourceAddress;
use crate::domain::idempotency::{IdempotencyKey, IdempotentStart};
use crate::domain::import::{ImportJob, ImportOptions, ImportStatus, MAX_BYTES, RejectedRow};
use crate::domain::secret::{digest, same_secret};
use crate::usecases::import;
use crate::web::client::media_type;
use crate::web::extract::PathParam;
use crate::web::pages::ViewerSummary;
use crate::web::request::{check_origin, cookie, csrf_cookie_name, query_param};
use crate::web::{Admin, AppState, Page, PortalError, Reply};

/// What the request may hold besides the file itself (the multipart framing and form fields).
const FORM_OVERHEAD: usize = 64 * 1024;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/admin/imports",
            get(upload_page).post(create_import).layer(DefaultBodyLimit::max(MAX_BYTES + FORM_OVERHEAD)),
        )
        .route("/admin/imports/{id}", get(show_import))
}

#[derive(Template)]
#[template(path = "admin_import.html")]
struct UploadPage<'a> {
    viewer: Option<ViewerSummary>,
    csrf_token: &'a str,
    default_expiry_days: u32,
}

#[derive(Template)]
#[template(path = "admin_import_progress.html")]
struct ProgressPage<'a> {
    viewer: Option<ViewerSummary>,
    csrf_token: &'a str,
    job: &'a ImportJob,
    running: bool,
    done: u32,
    of: u32,
}

async fn upload_page(Admin(admin): Admin, page: Page) -> Reply {
    let days = page.settings().invitation_expiry_days;
    Reply::json(StatusCode::OK, &serde_json::json!({ "columns": crate::domain::import::COLUMNS })).or_page(move || {
        page.render(
            StatusCode::OK,
            &UploadPage {
                viewer: Some(ViewerSummary::of(&admin.contact)),
                csrf_token: &page.csrf_token,
                default_expiry_days: days,
            },
        )
    })
}

/// The 202 answer (and the one a retry with the same `Idempotency-Key` gets again).
#[derive(Serialize)]
struct Accepted<'a> {
    import_id: &'a str,
    rows: u32,
    accepted: u32,
    rejected: &'a [RejectedRow],
}

/// An upload as sent: the file and the options.
struct Upload {
    file: Bytes,
    invite: Option<String>,
    expires_in_days: Option<String>,
}

/// Reads the upload: `text/csv` (options in the query) from a program, `multipart/form-data` from
/// the page (checked like every form: origin and anti-CSRF token). Anything else is 415.
async fn read_upload(req: Request, state: &AppState) -> Result<Upload, PortalError> {
    let settings = &state.settings;
    let media = media_type(&req);
    let query = req.uri().query().map(str::to_string);
    let from_query = |name| query_param(query.as_deref(), name);
    match media.as_deref() {
        Some("text/csv") => {
            check_origin(req.headers(), settings)?;
            let file = Bytes::from_request(req, state).await.map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    PortalError::PayloadTooLarge
                } else {
                    PortalError::validation("The body could not be read.")
                }
            })?;
            Ok(Upload { file, invite: from_query("invite"), expires_in_days: from_query("expires_in_days") })
        }
        Some("multipart/form-data") => {
            check_origin(req.headers(), settings)?;
            let expected = cookie(req.headers(), csrf_cookie_name(settings)).map(str::to_string);
            let mut multipart = Multipart::from_request(req, state)
                .await
                .map_err(|_| PortalError::validation("The form data is malformed."))?;
            let mut upload = Upload {
                file: Bytes::new(),
                invite: from_query("invite"),
                expires_in_days: from_query("expires_in_days"),
            };
            let mut csrf_token = None;
            loop {
                let field = match multipart.next_field().await {
                    Ok(Some(field)) => field,
                    Ok(None) => break,
                    Err(err) if err.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                        return Err(PortalError::PayloadTooLarge);
                    }
                    Err(_) => return Err(PortalError::validation("The form data is malformed.")),
                };
                let name = field.name().unwrap_or_default().to_string();
                let bytes = field.bytes().await.map_err(|err| match err.status() {
                    StatusCode::PAYLOAD_TOO_LARGE => PortalError::PayloadTooLarge,
                    _ => PortalError::validation("The form data is malformed."),
                })?;
                let text = || String::from_utf8_lossy(&bytes).into_owned();
                match name.as_str() {
                    "file" => upload.file = bytes.clone(),
                    "csrf_token" => csrf_token = Some(text()),
                    "invite" => upload.invite = Some(text()),
                    "expires_in_days" => upload.expires_in_days = Some(text()),
                    _ => {}
                }
            }
            match (expected, csrf_token) {
                (Some(expected), Some(given)) if same_secret(&expected, &given) => Ok(upload),
                _ => Err(PortalError::Forbidden("csrf token missing or wrong")),
            }
        }
        _ => Err(PortalError::UnsupportedMediaType),
    }
}

fn options_of(upload: &Upload, invitations_enabled: bool) -> Result<ImportOptions, PortalError> {
    let invite = match upload.invite.as_deref().map(str::trim) {
        None | Some("") | Some("false") | Some("0") | Some("off") | Some("no") => false,
        Some("true") | Some("1") | Some("on") | Some("yes") => true,
        Some(_) => return Err(PortalError::field("invite", "must be true or false")),
    };
    if invite && !invitations_enabled {
        return Err(PortalError::field("invite", "invitations are turned off on this portal"));
    }
    let expires_in_days = match upload.expires_in_days.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(raw) => match raw.parse::<u32>() {
            Ok(days) if (1..=365).contains(&days) => Some(days),
            _ => return Err(PortalError::field("expires_in_days", "must be a whole number from 1 to 365")),
        },
    };
    Ok(ImportOptions { invite, expires_in_days })
}

async fn create_import(
    Admin(admin): Admin,
    source: SourceAddress,
    headers: HeaderMap,
    page: Page,
    req: Request,
) -> Result<Reply, PortalError> {
    let portal = page.portal.clone();
    let upload = read_upload(req, &portal).await?;
    if upload.file.is_empty() {
        return Err(PortalError::field("file", "is required: a CSV file with a header row"));
    }
    let options = options_of(&upload, portal.settings.invitations_enabled)?;
    let key = match headers.get("idempotency-key") {
        None => None,
        Some(value) => {
            let request_digest = digest(&format!("{options:?}\n{}", digest_bytes(&upload.file)));
            let key = value.to_str().ok().and_then(|key| {
                IdempotencyKey::new("POST /admin/imports", &admin.contact.contact_id, key, request_digest)
            });
            Some(key.ok_or_else(|| {
                PortalError::validation("The Idempotency-Key header must be 1 to 255 visible ASCII characters.")
            })?)
        }
    };
    if let Some(key) = &key {
        match portal.invitations.begin_idempotent(key, portal.clock.now()).await? {
            IdempotentStart::First => {}
            IdempotentStart::Answered { status, body } => return Ok(replay(status, &body)),
            IdempotentStart::Running => return Err(PortalError::IdempotencyConflict { still_running: true }),
            IdempotentStart::Mismatch => return Err(PortalError::IdempotencyConflict { still_running: false }),
        }
    }
    let started = match import::start(&portal, &source, &admin.contact, &upload.file, options).await {
        Ok(started) => started,
        Err(err) => {
            if let Some(key) = &key
                && let Err(abandon) = portal.invitations.abandon_idempotent(key).await
            {
                tracing::warn!(error = format!("{abandon:#}"), "letting go of an idempotency key failed");
            }
            return Err(err);
        }
    };
    let job = &started.job;
    let view = Accepted {
        import_id: job.import_id.as_str(),
        rows: job.rows,
        accepted: job.accepted,
        rejected: &started.rejected,
    };
    if let Some(key) = &key {
        let body = serde_json::to_string(&view).unwrap_or_default();
        if let Err(err) =
            portal.invitations.finish_idempotent(key, StatusCode::ACCEPTED.as_u16(), &body, portal.clock.now()).await
        {
            // The import runs; its retries get 409 until the key's request counts as dead.
            tracing::error!(error = format!("{err:#}"), "keeping the idempotent answer failed");
        }
    }
    Ok(Reply::json(StatusCode::ACCEPTED, &view).or_see_other(format!("/admin/imports/{}", job.import_id)))
}

fn digest_bytes(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// The first answer to a request with the same key and body, given again.
fn replay(status: u16, body: &str) -> Reply {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    let body: serde_json::Value = serde_json::from_str(body).unwrap_or(serde_json::Value::Null);
    let location = body.get("import_id").and_then(|id| id.as_str()).map(|id| format!("/admin/imports/{id}"));
    let reply = Reply::json(status, &body);
    match location {
        Some(location) => reply.or_see_other(location),
        None => reply,
    }
}

#[derive(Serialize)]
struct ProgressView<'a> {
    import_id: &'a str,
    status: ImportStatus,
    rows: u32,
    accepted: u32,
    rows_done: u32,
    contacts_created: u32,
    invitations_created: u32,
    emails_sent: u32,
    emails_failed: u32,
    rejected_count: u32,
    rejected: &'a [RejectedRow],
}

async fn show_import(Admin(admin): Admin, PathParam(id): PathParam<String>, page: Page) -> Result<Reply, PortalError> {
    let portal = page.portal.clone();
    let job = import::progress(&portal, &id).await?;
    let emails_on = portal.settings.send_invitation_emails;
    let status = job.status(emails_on);
    let view = ProgressView {
        import_id: job.import_id.as_str(),
        status,
        rows: job.rows,
        accepted: job.accepted,
        rows_done: job.rows_done,
        contacts_created: job.contacts_created,
        invitations_created: job.invitations_created,
        emails_sent: job.emails_sent,
        emails_failed: job.emails_failed,
        rejected_count: job.rejected_count,
        rejected: &job.rejected,
    };
    let reply = Reply::json(StatusCode::OK, &view);
    Ok(reply.or_page(move || {
        let (done, of) = job.progress(emails_on);
        page.render(
            StatusCode::OK,
            &ProgressPage {
                viewer: Some(ViewerSummary::of(&admin.contact)),
                csrf_token: &page.csrf_token,
                job: &job,
                running: status == ImportStatus::Running,
                done,
                of,
            },
        )
    }))
}
