//! The person's security centre: where they are signed in (and ending those sessions), and their
//! sign-in history, read from the audit trail.

use crate::domain::audit::{AuditEntry, AuditEvent, AuditQuery, SourceAddress};
use crate::domain::listing::{PageRequest, Paged};
use crate::domain::session::Session;
use crate::domain::time::Timestamp;
use crate::error::PortalError;
use crate::ports::{UsesClock, UsesContacts, UsesSessions, UsesSettings};

use super::audit;
use super::session::SignedIn;

/// How far back the sign-in history reaches.
pub const SIGN_IN_HISTORY_SECS: i64 = 90 * 86_400;

/// One of the person's sessions, and whether it is the one asking.
#[derive(Clone, Debug)]
pub struct SessionRow {
    pub session: Session,
    pub current: bool,
}

/// The person's live sessions (of the account's current epoch, not expired nor idle), newest
/// first, from the sessions' contact index.
pub async fn sessions(
    portal: &(impl UsesSessions + UsesClock + UsesSettings),
    signed_in: &SignedIn,
) -> Result<Vec<SessionRow>, PortalError> {
    let now = portal.clock().now();
    let idle = portal.settings().session_idle_secs;
    let mut live: Vec<SessionRow> = portal
        .sessions()
        .list_for_contact(&signed_in.contact.contact_id)
        .await?
        .into_iter()
        .filter(|s| s.is_valid_for(&signed_in.contact.session_epoch, now, idle))
        .map(|session| SessionRow { current: session.id_digest == signed_in.session.id_digest, session })
        .collect();
    live.sort_by(|a, b| b.session.created_at.cmp(&a.session.created_at).then(b.current.cmp(&a.current)));
    Ok(live)
}

/// Ends the person's session whose public id is `id` (this one too, if named): `not_found` for
/// an id that names none of theirs.
pub async fn revoke(
    portal: &(impl UsesSessions + UsesClock + UsesSettings),
    signed_in: &SignedIn,
    id: &str,
    source: &SourceAddress,
) -> Result<(), PortalError> {
    let found = sessions(portal, signed_in).await?.into_iter().find(|row| row.session.public_id() == id);
    let Some(row) = found else { return Err(PortalError::NotFound) };
    portal.sessions().delete(&row.session.id_digest).await?;
    audit(AuditEvent::SignedOut, Some(&signed_in.contact.contact_id), source);
    Ok(())
}

/// Ends every session of the person but this one.
pub async fn revoke_others(
    portal: &(impl UsesSessions + UsesClock + UsesSettings),
    signed_in: &SignedIn,
    source: &SourceAddress,
) -> Result<usize, PortalError> {
    let others: Vec<SessionRow> = sessions(portal, signed_in).await?.into_iter().filter(|row| !row.current).collect();
    let ends = others.iter().map(|row| portal.sessions().delete(&row.session.id_digest));
    futures::future::try_join_all(ends).await?;
    if !others.is_empty() {
        audit(AuditEvent::SignedOut, Some(&signed_in.contact.contact_id), source);
    }
    Ok(others.len())
}

/// One sign-in as the person's history shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignInRow {
    pub at: Timestamp,
    /// `password`, `passkey`, `second_factor`, `registration`, `redemption`, ...
    pub method: String,
    /// `success`, `wrong_credentials`, `locked` or `second_factor_required`.
    pub result: String,
    pub ip: String,
    pub user_agent: Option<String>,
}

impl SignInRow {
    /// The row of a sign-in's audit entry.
    pub fn of(entry: &AuditEntry) -> Self {
        let detail = |key: &str| entry.detail.get(key).cloned();
        let result = match entry.kind.as_str() {
            "signed_in" => "success".to_string(),
            "second_factor_required" => "second_factor_required".to_string(),
            // A disabled account answers as a locked one does.
            _ => match detail("result").as_deref() {
                Some("locked" | "disabled") => "locked".to_string(),
                _ => "wrong_credentials".to_string(),
            },
        };
        let method = detail("method").unwrap_or_else(|| match entry.kind.as_str() {
            "second_factor_failed" => "second_factor".into(),
            _ => "password".into(),
        });
        SignInRow { at: entry.at, method, result, ip: entry.ip.clone(), user_agent: detail("user_agent") }
    }
}

/// A page of the person's sign-ins of the last 90 days, newest first: successes and failures
/// that named their account (a login that matched no account is recorded against nobody).
pub async fn sign_ins(
    portal: &(impl UsesContacts + UsesClock),
    signed_in: &SignedIn,
    page: &PageRequest,
) -> Result<Paged<SignInRow>, PortalError> {
    let kinds = [
        AuditEvent::SignedIn,
        AuditEvent::SignInFailed,
        AuditEvent::SecondFactorFailed,
        AuditEvent::SecondFactorRequired,
    ];
    let query = AuditQuery {
        contact_id: Some(signed_in.contact.contact_id.clone()),
        kinds: kinds.iter().map(|k| k.as_str().to_string()).collect(),
        ..AuditQuery::default()
    };
    let found = portal.contacts().audit_trail(&query, page).await?;
    let oldest = portal.clock().now() - SIGN_IN_HISTORY_SECS;
    let kept: Vec<SignInRow> = found.items.iter().filter(|e| e.at >= oldest).map(SignInRow::of).collect();
    // Newest first: once one is older than the history, so is every later page.
    let next = if kept.len() == found.items.len() { found.next } else { None };
    Ok(Paged { items: kept, next })
}

/// Everything stored about the person, for `POST /profile/export` (GDPR access and portability):
/// gathered after re-authentication, with no secret (no password hash, second-factor secret,
/// recovery code, token or session token).
#[derive(Clone, Debug)]
pub struct Export {
    pub contact: crate::domain::contact::Contact,
    pub sessions: Vec<SessionRow>,
    pub two_factor: crate::domain::two_factor::TwoFactor,
    pub passkeys: Vec<crate::domain::passkey::StoredPasskey>,
    pub invitations: Vec<crate::domain::invitation::Invitation>,
    /// Every audit entry about the person (their sign-ins among them), newest first.
    pub audit: Vec<AuditEntry>,
}

/// The most audit entries an export reads (pages of [`crate::domain::listing::MAX_LIMIT`]).
const EXPORT_MAX_AUDIT_PAGES: usize = 50;

/// Gathers the export after re-authentication (a wrong value counts towards the lockout).
pub async fn export(
    portal: &(
         impl UsesContacts
         + UsesSessions
         + UsesClock
         + UsesSettings
         + crate::ports::UsesTwoFactor
         + crate::ports::UsesPasskeys
         + crate::ports::UsesInvitations
     ),
    source: &SourceAddress,
    signed_in: &SignedIn,
    given: super::reauth::Reauthentication,
) -> Result<Export, PortalError> {
    let contact = &signed_in.contact;
    let two_factor = super::reauth::reauthenticate(portal, source, contact, given).await?;
    let (sessions, passkeys, invitations, audit) = tokio::join!(
        sessions(portal, signed_in),
        portal.passkeys().list(&contact.contact_id),
        portal.invitations().list_for_contact(&contact.contact_id),
        every_entry_about(portal, &contact.contact_id),
    );
    let id = Some(&contact.contact_id);
    super::record(portal, super::audit_entry(portal, AuditEvent::DataExported, id, id, source)).await?;
    super::audit(AuditEvent::DataExported, id, source);
    Ok(Export {
        contact: contact.clone(),
        sessions: sessions?,
        two_factor,
        passkeys: passkeys?,
        invitations: invitations?,
        audit: audit?,
    })
}

async fn every_entry_about(
    portal: &impl UsesContacts,
    contact_id: &crate::domain::ids::ContactId,
) -> Result<Vec<AuditEntry>, PortalError> {
    let query = AuditQuery { contact_id: Some(contact_id.clone()), ..AuditQuery::default() };
    let mut entries = Vec::new();
    let mut page = PageRequest::first(crate::domain::listing::MAX_LIMIT);
    for _ in 0..EXPORT_MAX_AUDIT_PAGES {
        let found = portal.contacts().audit_trail(&query, &page).await?;
        entries.extend(found.items);
        match found.next {
            Some(next) => page.after = Some(next),
            None => break,
        }
    }
    Ok(entries)
}
