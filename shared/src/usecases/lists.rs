//! The administrators' lists and the people on an invitation: every invitation filtered and paged,
//! the contacts list and search, and who created and who redeemed an invitation.

use std::collections::HashMap;

use crate::domain::contact::Contact;
use crate::domain::ids::{ContactId, InvitationId};
use crate::domain::invitation::{Delivery, Invitation, InvitationStatus, Redemption};
use crate::domain::listing::{
    DEFAULT_LIMIT, InvitationFilter, MAX_LIMIT, PageRequest, Paged, Position, normalize_search,
};
use crate::error::PortalError;
use crate::ports::{UsesClock, UsesContacts, UsesInvitations};

/// A list request's paging as the client sent it (`limit`, `cursor`), checked.
pub fn page_request(limit: Option<&str>, cursor: Option<&str>) -> Result<PageRequest, PortalError> {
    let limit = match limit.map(str::trim) {
        None | Some("") => DEFAULT_LIMIT,
        Some(text) => match text.parse::<usize>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
            _ => return Err(PortalError::field("limit", format!("must be a whole number from 1 to {MAX_LIMIT}"))),
        },
    };
    let after = match cursor.map(str::trim) {
        None | Some("") => None,
        Some(text) => Some(
            Position::decode(text)
                .ok_or_else(|| PortalError::field("cursor", "is not a cursor this list handed out"))?,
        ),
    };
    Ok(PageRequest { limit, after })
}

/// The invitations list's filters as the client sent them, checked.
pub fn invitation_filter(
    status: Option<&str>,
    delivery: Option<&str>,
    contact_id: Option<&str>,
) -> Result<InvitationFilter, PortalError> {
    let status = match status.map(str::trim) {
        None | Some("") => None,
        Some("active") => Some(InvitationStatus::Active),
        Some("redeemed") => Some(InvitationStatus::Redeemed),
        Some("expired") => Some(InvitationStatus::Expired),
        Some("revoked") => Some(InvitationStatus::Revoked),
        Some(_) => return Err(PortalError::field("status", "must be active, redeemed, expired or revoked")),
    };
    let delivery = match delivery.map(str::trim) {
        None | Some("") => None,
        Some("pending") => Some(Delivery::Pending),
        Some("sent") => Some(Delivery::Sent),
        Some("failed") => Some(Delivery::Failed),
        Some(_) => return Err(PortalError::field("delivery", "must be pending, sent or failed")),
    };
    let contact_id = contact_id_filter("contact_id", contact_id)?;
    Ok(InvitationFilter { status, delivery, contact_id })
}

/// A contact id sent as the filter `name`: ids are UUIDs, anything else is refused by name.
fn contact_id_filter(name: &str, sent: Option<&str>) -> Result<Option<ContactId>, PortalError> {
    match sent.map(str::trim) {
        None | Some("") => Ok(None),
        Some(id) if id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') => {
            Ok(Some(ContactId::from(id.to_string())))
        }
        Some(_) => Err(PortalError::field(name, "is not a contact id")),
    }
}

/// The audit trail's filters as the client sent them, checked.
pub fn audit_query(
    contact_id: Option<&str>,
    actor_id: Option<&str>,
    kind: Option<&str>,
) -> Result<crate::domain::audit::AuditQuery, PortalError> {
    let kind = match kind.map(str::trim) {
        None | Some("") => None,
        Some(kind) if kind.len() <= 64 && kind.chars().all(|c| c.is_ascii_lowercase() || c == '_') => {
            Some(kind.to_string())
        }
        Some(_) => return Err(PortalError::field("kind", "is not a kind of audit entry")),
    };
    Ok(crate::domain::audit::AuditQuery {
        contact_id: contact_id_filter("contact_id", contact_id)?,
        actor_id: contact_id_filter("actor_id", actor_id)?,
        kind,
        kinds: Vec::new(),
    })
}

/// A page of invitations, newest first.
pub async fn invitations(
    portal: &(impl UsesInvitations + UsesClock),
    filter: &InvitationFilter,
    page: &PageRequest,
) -> Result<Paged<Invitation>, PortalError> {
    if page.after.as_ref().is_some_and(|after| after.key.is_some()) {
        return Err(PortalError::field("cursor", "belongs to another list"));
    }
    Ok(portal.invitations().list(filter, page, portal.clock().now()).await?)
}

/// A page of the contacts list: everyone newest first, or those whose email, first or last name
/// starts with `query` (trimmed, case-folded).
pub async fn contacts(
    portal: &impl UsesContacts,
    query: &str,
    page: &PageRequest,
) -> Result<Paged<Contact>, PortalError> {
    let prefix = normalize_search(query);
    if prefix.chars().count() > 254 {
        return Err(PortalError::field("q", "must be at most 254 characters"));
    }
    // A search's cursor carries the key it stopped at, within the prefix; the plain list's none.
    let fits = match (&page.after, prefix.is_empty()) {
        (None, _) => true,
        (Some(after), true) => after.key.is_none(),
        (Some(after), false) => after.key.as_ref().is_some_and(|key| key.starts_with(&prefix)),
    };
    if !fits {
        return Err(PortalError::field("cursor", "belongs to another search"));
    }
    Ok(portal.contacts().list_page(&prefix, page).await?)
}

/// The contacts with these ids that exist, read at once (each id once).
pub async fn people(
    portal: &impl UsesContacts,
    ids: impl IntoIterator<Item = ContactId>,
) -> Result<HashMap<ContactId, Contact>, PortalError> {
    let mut wanted: Vec<ContactId> = ids.into_iter().collect();
    wanted.sort();
    wanted.dedup();
    let reads = wanted.iter().map(|id| portal.contacts().get(id));
    let found = futures::future::try_join_all(reads).await?;
    Ok(found.into_iter().flatten().map(|c| (c.contact_id.clone(), c)).collect())
}

/// An invitation with the people on it: who created it, and each redemption with its contact.
pub struct InvitationDetail {
    pub invitation: Invitation,
    pub redemptions: Vec<Redemption>,
    /// The inviter and the redeemers that still exist, by id.
    pub people: HashMap<ContactId, Contact>,
}

/// The invitation `id` with its redemptions and the people on it, or `not_found`.
pub async fn invitation_detail(
    portal: &(impl UsesInvitations + UsesContacts),
    id: &InvitationId,
) -> Result<InvitationDetail, PortalError> {
    let invitation = super::invite::invitation(portal, id).await?;
    let redemptions = portal.invitations().redemptions(id).await?;
    let ids = std::iter::once(invitation.created_by.clone()).chain(redemptions.iter().map(|r| r.contact_id.clone()));
    let people = people(portal, ids).await?;
    Ok(InvitationDetail { invitation, redemptions, people })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_and_cursors_are_checked() {
        assert_eq!(page_request(None, None).unwrap().limit, DEFAULT_LIMIT);
        assert_eq!(page_request(Some("200"), None).unwrap().limit, 200);
        for bad in ["0", "201", "-1", "ten", "1.5"] {
            let err = page_request(Some(bad), None).unwrap_err();
            assert!(err.fields().is_some_and(|f| f.contains_key("limit")), "{bad}");
        }
        let err = page_request(None, Some("garbage")).unwrap_err();
        assert!(err.fields().is_some_and(|f| f.contains_key("cursor")));
    }

    #[test]
    fn filters_are_checked() {
        let filter = invitation_filter(Some("expired"), Some("sent"), Some("abc-1")).unwrap();
        assert_eq!(filter.status, Some(InvitationStatus::Expired));
        assert_eq!(filter.delivery, Some(Delivery::Sent));
        for (status, delivery, contact, field) in [
            (Some("gone"), None, None, "status"),
            (None, Some("lost"), None, "delivery"),
            (None, None, Some("a#b"), "contact_id"),
        ] {
            let err = invitation_filter(status, delivery, contact).unwrap_err();
            assert!(err.fields().is_some_and(|f| f.contains_key(field)), "{field}");
        }
    }
}
