//! Staff administer accounts (Cognito's `AdminDisableUser`, `AdminUserGlobalSignOut`,
//! `AdminResetUserPassword`; Power Pages' "Login Enabled"): each action is one conditional write
//! of the account together with its audit entry, its `AccountChanged` event and any email to the
//! person, and takes effect at once (a new session epoch ends every session; the door refuses a
//! disabled account).
//!
//! Who may do what is decided here, once, from [`Staff`]: administrators act on every account;
//! an account administrator (`PORTAL_ACCOUNT_ADMIN_ROLE` with an `account_id`) sees only the
//! contacts of their own account, never staff, and only the actions [`StaffAction::delegable`]
//! names. A contact outside someone's reach does not exist for them (404).

use crate::domain::ADMINISTRATORS_ROLE;
use crate::domain::audit::{AuditEntry, AuditEvent, AuditQuery, SourceAddress};
use crate::domain::contact::{AccountEdit, Contact, new_epoch};
use crate::domain::event::Fact;
use crate::domain::ids::{ContactId, InvitationId};
use crate::domain::invitation::Invitation;
use crate::domain::listing::{PageRequest, Paged};
use crate::domain::outbox::{MessageKind, OutboxMessage};
use crate::domain::time::Timestamp;
use crate::domain::two_factor::TwoFactor;
use crate::error::PortalError;
use crate::ports::{
    EditAccountError, Queued, UsesClock, UsesContacts, UsesInvitations, UsesPasskeys, UsesSettings, UsesTwoFactor,
};

use super::invite::{InvitationRequest, Invitee};
use super::notices::security_notice;

/// How many audit entries the account's page shows.
pub const ACCOUNT_AUDIT_ENTRIES: usize = 50;

/// Whose accounts someone may administer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StaffScope {
    /// Every account (the `Administrators` web role, or an operator at the command line).
    Everyone,
    /// The contacts of this account only, with at most these roles to give in invitations.
    Account { account_id: String, roles: Vec<String> },
}

/// Someone acting as staff: who (none for an operator at the command line) and their reach.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Staff {
    pub actor_id: Option<ContactId>,
    pub scope: StaffScope,
}

impl Staff {
    /// An operator running `portal-admin`: every account, recorded with no actor.
    pub fn operator() -> Self {
        Staff { actor_id: None, scope: StaffScope::Everyone }
    }

    /// What `contact` may administer, if anything: an administrator everything, an account
    /// administrator with an account that account.
    pub fn of(contact: &Contact, account_admin_role: &str) -> Option<Self> {
        let actor_id = Some(contact.contact_id.clone());
        if contact.has_role(ADMINISTRATORS_ROLE) {
            return Some(Staff { actor_id, scope: StaffScope::Everyone });
        }
        match &contact.account_id {
            Some(account_id) if contact.has_role(account_admin_role) => Some(Staff {
                actor_id,
                scope: StaffScope::Account { account_id: account_id.clone(), roles: contact.roles.clone() },
            }),
            _ => None,
        }
    }

    pub fn is_administrator(&self) -> bool {
        self.scope == StaffScope::Everyone
    }

    /// Whether `contact` is within reach: everyone for administrators; for an account
    /// administrator, the non-staff contacts of their account.
    pub fn reaches(&self, contact: &Contact) -> bool {
        match &self.scope {
            StaffScope::Everyone => true,
            StaffScope::Account { account_id, .. } => {
                contact.account_id.as_deref() == Some(account_id) && !contact.has_role(ADMINISTRATORS_ROLE)
            }
        }
    }

    /// Whether an invitation is within reach: every one for administrators; for an account
    /// administrator, those that give their own account.
    pub fn reaches_invitation(&self, invitation: &Invitation) -> bool {
        match &self.scope {
            StaffScope::Everyone => true,
            StaffScope::Account { account_id, .. } => invitation.account_id.as_deref() == Some(account_id),
        }
    }

    /// Whether an invitation may give `account_id` and `roles`: anything for administrators; for
    /// an account administrator, their own account (or none) and roles they hold themselves.
    pub fn may_assign(&self, account_id: Option<&str>, roles: &[String]) -> bool {
        match &self.scope {
            StaffScope::Everyone => true,
            StaffScope::Account { account_id: own, roles: held } => {
                account_id.is_none_or(|id| id == own) && roles.iter().all(|role| held.contains(role))
            }
        }
    }
}

/// What staff can do to an account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StaffAction {
    Disable,
    Enable,
    Unlock,
    SignOutEverywhere,
    /// Emails a reset link; `block_current_password` also stops the current password at once.
    ResetPassword {
        block_current_password: bool,
    },
    /// Removes the second factors and passkeys.
    ResetTwoFactor,
    /// Replaces the web roles and parent account.
    Roles {
        roles: Vec<String>,
        account_id: Option<String>,
    },
    /// Deletes the account, as the person can themselves (`usecases::deletion`).
    Delete,
}

impl StaffAction {
    /// The action's name in the route and the `AccountChanged` event.
    pub fn name(&self) -> &'static str {
        match self {
            StaffAction::Disable => "disable",
            StaffAction::Enable => "enable",
            StaffAction::Unlock => "unlock",
            StaffAction::SignOutEverywhere => "sign-out-everywhere",
            StaffAction::ResetPassword { .. } => "reset-password",
            StaffAction::ResetTwoFactor => "reset-two-factor",
            StaffAction::Roles { .. } => "roles",
            StaffAction::Delete => "delete",
        }
    }

    fn audit_event(&self) -> AuditEvent {
        match self {
            StaffAction::Disable => AuditEvent::AccountDisabled,
            StaffAction::Enable => AuditEvent::AccountEnabled,
            StaffAction::Unlock => AuditEvent::AccountUnlocked,
            StaffAction::SignOutEverywhere => AuditEvent::SignedOutEverywhere,
            StaffAction::ResetPassword { .. } => AuditEvent::PasswordResetByStaff,
            StaffAction::ResetTwoFactor => AuditEvent::TwoFactorReset,
            StaffAction::Roles { .. } => AuditEvent::RolesChanged,
            StaffAction::Delete => AuditEvent::AccountDeleted,
        }
    }

    /// The actions an account administrator may take (the contract's subset).
    pub fn delegable(&self) -> bool {
        matches!(
            self,
            StaffAction::Disable
                | StaffAction::Enable
                | StaffAction::SignOutEverywhere
                | StaffAction::ResetPassword { .. }
        )
    }

    /// Whether, taken on one's own account, it could shut the actor out of their own access.
    fn removes_own_access(&self) -> bool {
        matches!(
            self,
            StaffAction::Disable
                | StaffAction::Roles { .. }
                | StaffAction::ResetPassword { block_current_password: true }
                | StaffAction::Delete
        )
    }
}

/// An account as staff see it: the contact and the state of its ways in.
#[derive(Clone, Debug)]
pub struct AccountOverview {
    pub contact: Contact,
    pub two_factor: TwoFactor,
    pub passkeys: usize,
    pub last_sign_in_at: Option<Timestamp>,
    /// The latest audit entries about it, newest first.
    pub audit: Vec<AuditEntry>,
}

/// The contact with this id, if `staff` reach it (otherwise, as if it did not exist).
pub async fn reachable(
    portal: &impl UsesContacts,
    staff: &Staff,
    contact_id: &ContactId,
) -> Result<Contact, PortalError> {
    match portal.contacts().get(contact_id).await? {
        Some(contact) if staff.reaches(&contact) => Ok(contact),
        _ => Err(PortalError::NotFound),
    }
}

/// The invitation with this id, if `staff` reach it (otherwise, as if it did not exist).
pub async fn reachable_invitation(
    portal: &impl UsesInvitations,
    staff: &Staff,
    id: &InvitationId,
) -> Result<Invitation, PortalError> {
    let invitation = super::invite::invitation(portal, id).await?;
    if staff.reaches_invitation(&invitation) { Ok(invitation) } else { Err(PortalError::NotFound) }
}

/// The account's page: its state, factors, passkeys and latest audit entries.
pub async fn overview(
    portal: &(impl UsesContacts + UsesTwoFactor + UsesPasskeys),
    staff: &Staff,
    contact_id: &ContactId,
) -> Result<AccountOverview, PortalError> {
    let contact = reachable(portal, staff, contact_id).await?;
    let about = AuditQuery { contact_id: Some(contact.contact_id.clone()), ..AuditQuery::default() };
    let signed_in = AuditQuery { kind: Some(AuditEvent::SignedIn.as_str().into()), ..about.clone() };
    let (latest, one) = (PageRequest::first(ACCOUNT_AUDIT_ENTRIES), PageRequest::first(1));
    let (two_factor, passkeys, audit, last) = tokio::join!(
        portal.two_factor().get(&contact.contact_id),
        portal.passkeys().list(&contact.contact_id),
        portal.contacts().audit_trail(&about, &latest),
        portal.contacts().audit_trail(&signed_in, &one),
    );
    Ok(AccountOverview {
        two_factor: two_factor?,
        passkeys: passkeys?.len(),
        last_sign_in_at: last?.items.first().map(|entry| entry.at),
        audit: audit?.items,
        contact,
    })
}

/// Takes `action` on the account `contact_id` as `staff`, from `source`: the account as it now
/// stands.
pub async fn act(
    portal: &(impl UsesContacts + UsesClock + UsesSettings + UsesTwoFactor + UsesPasskeys),
    staff: &Staff,
    contact_id: &ContactId,
    action: StaffAction,
    source: &SourceAddress,
) -> Result<Contact, PortalError> {
    let contact = reachable(portal, staff, contact_id).await?;
    if !staff.is_administrator() && !action.delegable() {
        return Err(PortalError::Forbidden("not an action for account administrators"));
    }
    if staff.actor_id.as_ref() == Some(&contact.contact_id) && action.removes_own_access() {
        return Err(PortalError::Forbidden("this would remove your own access"));
    }
    if let StaffAction::Roles { roles, account_id } = &action
        && !staff.may_assign(account_id.as_deref(), roles)
    {
        return Err(PortalError::Forbidden("not an account or role you may assign"));
    }
    let now = portal.clock().now();
    let mut queued: Vec<Queued> = vec![
        operator_marked(
            staff,
            AuditEntry::new(
                action.audit_event(),
                staff.actor_id.as_ref(),
                Some(&contact.contact_id),
                source,
                now,
                portal.settings().audit_retention_secs,
            ),
        )
        .into(),
        Fact::AccountChanged {
            contact_id: contact.contact_id.clone(),
            action: action.name().to_string(),
            actor_id: staff.actor_id.clone(),
        }
        .at(now)
        .into(),
    ];
    let edit = match &action {
        StaffAction::Delete => {
            let by = super::deletion::DeletedBy::Staff(staff.actor_id.clone());
            return super::deletion::delete(portal, &contact, by, queued, source).await;
        }
        StaffAction::Disable => AccountEdit::Disable { epoch: new_epoch() },
        StaffAction::Enable => AccountEdit::Enable,
        StaffAction::Unlock => AccountEdit::Unlock,
        StaffAction::SignOutEverywhere => AccountEdit::EndSessions { epoch: new_epoch() },
        StaffAction::ResetPassword { block_current_password } => {
            queued.push(reset_request(&contact, now));
            if *block_current_password {
                AccountEdit::BlockPassword { epoch: new_epoch() }
            } else {
                AccountEdit::Unchanged
            }
        }
        StaffAction::ResetTwoFactor => {
            remove_factors(portal, &contact).await?;
            queued.extend(
                security_notice(portal, &contact, MessageKind::TwoFactorNotice, Some("reset by staff".into())).await?,
            );
            AccountEdit::EndSessions { epoch: new_epoch() }
        }
        StaffAction::Roles { roles, account_id } => {
            AccountEdit::Roles { roles: roles.clone(), account_id: account_id.clone() }
        }
    };
    match portal.contacts().edit_account(&contact, &edit, now, &queued).await {
        Ok(changed) => Ok(changed),
        Err(EditAccountError::Missing) => Err(PortalError::NotFound),
        Err(EditAccountError::Store(err)) => Err(err.into()),
    }
}

/// An operator at the command line has no contact id: the entry says an operator acted.
fn operator_marked(staff: &Staff, entry: AuditEntry) -> AuditEntry {
    match staff.actor_id {
        None => entry.with("by", "operator"),
        Some(_) => entry,
    }
}

/// A reset link for the account, issued by `send-email` as for forgot-password; naming the
/// contact lets it go to an account whose password staff just blocked.
fn reset_request(contact: &Contact, now: Timestamp) -> Queued {
    let mut message =
        OutboxMessage::new(MessageKind::ResetRequest, contact.email.as_str(), &contact.first_name, None, now);
    message.contact_id = Some(contact.contact_id.clone());
    Queued::new(message)
}

/// Removes the account's second factors and passkeys, each removal its own write: a retry of an
/// interrupted reset finds less to remove and finishes it (the audit entry, the notice and the
/// new epoch go in the account's write after them).
async fn remove_factors(
    portal: &(impl UsesContacts + UsesClock + UsesTwoFactor + UsesPasskeys),
    contact: &Contact,
) -> Result<(), PortalError> {
    let now = portal.clock().now();
    for passkey in portal.passkeys().list(&contact.contact_id).await? {
        portal.passkeys().remove(&contact.contact_id, &passkey.id, &contact.session_epoch, now, &[]).await?;
    }
    super::codes::clear_second_factors(portal, &contact.contact_id).await
}

/// One page of the audit trail (administrators only).
pub async fn audit_trail(
    portal: &impl UsesContacts,
    staff: &Staff,
    query: &AuditQuery,
    page: &PageRequest,
) -> Result<Paged<AuditEntry>, PortalError> {
    if !staff.is_administrator() {
        return Err(PortalError::Forbidden("the audit trail is for administrators"));
    }
    Ok(portal.contacts().audit_trail(query, page).await?)
}

/// Holds an invitation that `staff` create to their reach: an account administrator's invites
/// contacts of their own account (or a new address), gives their own account (the default) and
/// only roles they hold; anything else is refused (a contact out of reach as not found).
pub async fn scope_invitation(
    portal: &impl UsesContacts,
    staff: &Staff,
    request: &mut InvitationRequest,
) -> Result<(), PortalError> {
    let StaffScope::Account { account_id: own, .. } = &staff.scope else { return Ok(()) };
    if request.account_id.is_none() {
        request.account_id = Some(own.clone());
    }
    if !staff.may_assign(request.account_id.as_deref(), &request.roles) {
        return Err(PortalError::Forbidden("not an account or role you may assign"));
    }
    let named: Vec<ContactId> = match &request.invitee {
        Invitee::ContactId(id) => vec![id.clone()],
        Invitee::Contacts(ids) => ids.clone(),
        Invitee::Email { .. } => Vec::new(),
    };
    for id in &named {
        reachable(portal, staff, id).await?;
    }
    Ok(())
}
