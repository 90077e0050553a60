//! The one door to a session.
//!
//! Every way into an account ends here, and nothing else makes a session: [`enter`] takes how the
//! person proved who they are ([`Proof`]) and applies, in this order and in this one place,
//! 1. the account's state: sign-in enabled, not deleted, its address confirmed where the site
//!    requires it;
//! 2. the attempt reservation and the lockout: the source address's allowance, then one attempt
//!    of the account (or of a trusted device of it) taken before any secret is checked;
//! 3. the second factor: awaited (a pending sign-in, no session yet), proven, or, where a web role
//!    requires one that the account lacks, a session limited to setting it up;
//! 4. the account's session epoch: the session begins in the epoch the account has now, so a
//!    password change or reset made meanwhile (a new epoch) is never undone by an older proof.
//!
//! A password sign-in does the same work, and the same argon2 run, for a login that no account
//! has, a wrong password and a locked account: the attempt is reserved under the login itself when
//! no account has it, and the failure recorded (or, when refused, read) the same way.
//!
//! A new way in is a new [`Proof`], never a second place that writes a session. The web layer can
//! only make the session cookie from what the door returns ([`Entered`]), and its guard layer
//! refuses any other (see `web::app`).

use crate::domain::audit::{AuditEvent, SourceAddress};
use crate::domain::contact::{Contact, Login};
use crate::domain::identity::external_method;
use crate::domain::ids::ContactId;
use crate::domain::lockout::{AttemptSubject, FailedSignIn};
use crate::domain::outbox::MessageKind;
use crate::domain::password::{Password, verify_password};
use crate::domain::secret::{digest, random_token};
use crate::domain::session::{Session, kept_user_agent};
use crate::domain::time::{Timestamp, rfc3339};
use crate::domain::two_factor::{PENDING_SIGN_IN_ATTEMPTS, PendingSignIn, two_factor_required};
use crate::error::PortalError;
use crate::ports::{Device, Queued, UsesClock, UsesContacts, UsesPasskeys, UsesSessions, UsesSettings, UsesTwoFactor};

use super::codes::use_code;
use super::notices::security_notice;
use super::throttle::{Attempt, give_back_attempt, reserve_attempt};
use super::{audit, audit_entry, record};

/// How long a browser stays a trusted device of an account after it last signed in.
pub const DEVICE_TRUST_SECS: i64 = 180 * 86_400;

/// What a browser brought along with its proof (cookies).
#[derive(Clone, Copy, Default)]
pub struct Arrival<'a> {
    /// The session cookie it still had: a new session ends it.
    pub session: Option<&'a str>,
    /// Its device cookie, if it has one.
    pub device: Option<&'a str>,
    /// Its User-Agent header, as sent.
    pub user_agent: Option<&'a str>,
    /// The session a continued session goes on from: the new one keeps its sign-in method and
    /// browser.
    pub continues: Option<&'a Session>,
}

/// How the person proved who they are.
pub enum Proof<'a> {
    /// A login (email or username) and password. With `second_factor_code`, an account with a
    /// second factor proves it in the same request (redeeming an invitation onto an existing
    /// account); without one, its sign-in awaits the second step.
    Password { login: &'a str, password: Password, second_factor_code: Option<&'a str> },
    /// The second step of a pending sign-in (the token of its cookie) with a code.
    SecondFactor { pending_token: &'a str, code: &'a str },
    /// A passkey assertion that verified against a passkey of the account.
    Passkey(Box<PasskeyVerified>),
    /// An address and the code emailed to it (`POST /signin/email-code`): a first factor only, so
    /// an account with TOTP still takes its second step.
    EmailCode { email: &'a str, code: &'a str },
    /// An identity an OpenID Connect provider vouched for, linked to the account: a first factor
    /// (unless the provider is trusted for it and reported `mfa`).
    External(Box<ExternalVerified>),
    /// Credentials set up in this very request and committed: a registration or an invitation
    /// redeemed with new credentials (`way` says which).
    NewCredentials { contact: Box<Contact>, way: Way },
    /// The signed-in person made a change that ended every session (password, email, factors,
    /// passkeys): their own `session` continues in the account's new `epoch`.
    /// `has_second_factor` is the account's factor state after the change, when it changed.
    Continued { session: &'a Session, contact: Box<Contact>, epoch: String, has_second_factor: Option<bool> },
}

/// A passkey assertion that verified: only the passkeys use case makes one.
pub struct PasskeyVerified {
    contact: Contact,
}

impl PasskeyVerified {
    pub(super) fn new(contact: Contact) -> Self {
        PasskeyVerified { contact }
    }
}

/// An identity a provider vouched for, linked to `contact`: only the external sign-in use case
/// makes one.
pub struct ExternalVerified {
    contact: Contact,
    provider: String,
    /// The provider is trusted for the second factor (`trust_mfa`) and its `amr` held `mfa`.
    second_factor: bool,
}

impl ExternalVerified {
    pub(super) fn new(contact: Contact, provider: &str, second_factor: bool) -> Self {
        ExternalVerified { contact, provider: provider.to_string(), second_factor }
    }
}

/// The way a session began (its audit entry, and what the web layer marks the cookie with).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Way {
    Password,
    SecondFactor,
    Passkey,
    Registration,
    Redemption,
    Continued,
    EmailCode,
    /// An OpenID Connect provider (the session's method names it: `external:<provider>`).
    External,
}

impl Way {
    pub fn as_str(self) -> &'static str {
        match self {
            Way::Password => "password",
            Way::SecondFactor => "second_factor",
            Way::Passkey => "passkey",
            Way::Registration => "registration",
            Way::Redemption => "redemption",
            Way::Continued => "continued",
            Way::EmailCode => "email_code",
            Way::External => "external",
        }
    }
}

/// What kind of session a way in starts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SessionOptions {
    /// "Remember me": the session lasts `PORTAL_REMEMBER_ME_DAYS` (its cookie too).
    pub remembered: bool,
    /// Only the two-factor set-up is open (the contact's role requires a second factor).
    pub setup_only: bool,
    /// Only `/terms` is open: the site's current terms of use wait for the person's acceptance.
    pub terms_only: bool,
}

/// The second factor as a proof leaves it.
#[derive(Clone, Debug)]
enum Factor {
    /// Proven (a code, or a passkey, a strong factor in itself).
    Proven,
    /// The account has one and it is still to come: a pending sign-in awaits it.
    Awaited(Vec<&'static str>),
    /// The account has none.
    Absent,
    /// A continued session keeps its own limit (no factor changed).
    Kept { setup_only: bool },
}

/// An identity proven by [`prove`], not yet admitted: only this module makes one, so only the
/// door's own checks lead to [`admit`].
pub struct Proven {
    contact: Contact,
    way: Way,
    trusted_device: bool,
    factor: Factor,
    /// "Remember me" as the proof fixed it (a pending sign-in's, a continued session's).
    remembered: Option<bool>,
    epoch: String,
    /// The provider of an external sign-in (its method is `external:<provider>`).
    provider: Option<String>,
}

impl Proven {
    pub fn contact(&self) -> &Contact {
        &self.contact
    }

    /// Whether the account's second factor is still to come (no session can begin without it).
    pub fn awaits_second_factor(&self) -> bool {
        matches!(self.factor, Factor::Awaited(_))
    }

    /// The same account as a redemption committed after the proof left it (an invitation's roles
    /// and account added): the proof stands for the account, not for what it was read as. The
    /// session it then begins is a redemption's (the browser is not made a trusted device: the
    /// redemption is committed, and nothing after it may fail for so little).
    pub fn redeemed_onto(mut self, contact: Contact) -> Result<Self, PortalError> {
        if contact.contact_id != self.contact.contact_id || contact.session_epoch != self.contact.session_epoch {
            return Err(anyhow::anyhow!("a proof applied to another account or epoch").into());
        }
        self.contact = contact;
        self.way = Way::Redemption;
        Ok(self)
    }
}

/// A session begun: the contact, and the tokens of the cookies (only the web layer reads them).
pub struct Entered {
    pub contact: Contact,
    pub way: Way,
    pub options: SessionOptions,
    session_token: String,
    device_token: Option<String>,
}

impl Entered {
    pub fn session_token(&self) -> &str {
        &self.session_token
    }

    /// The device cookie's value: the browser is (still) a trusted device of the account.
    pub fn device_token(&self) -> Option<&str> {
        self.device_token.as_deref()
    }
}

/// What the door opened to.
pub enum Entry {
    Entered(Box<Entered>),
    /// The right password of an account with a second factor: a pending sign-in (the token for
    /// its cookie) awaits one of `methods`, and no session is started yet.
    SecondFactorAwaited {
        pending_token: String,
        methods: Vec<&'static str>,
    },
}

/// Everything the door reads and writes.
pub trait DoorPorts: UsesContacts + UsesSessions + UsesClock + UsesSettings + UsesTwoFactor + UsesPasskeys {}
impl<T: UsesContacts + UsesSessions + UsesClock + UsesSettings + UsesTwoFactor + UsesPasskeys> DoorPorts for T {}

/// The one way to a session: [`prove`], then [`admit`].
pub async fn enter(
    portal: &impl DoorPorts,
    source: &SourceAddress,
    proof: Proof<'_>,
    arrival: Arrival<'_>,
    remember_me: bool,
) -> Result<Entry, PortalError> {
    let proven = prove(portal, source, proof, arrival).await?;
    admit(portal, source, proven, arrival, remember_me).await
}

/// Continues the signed-in person's session after a change of theirs that wrote the account's new
/// `epoch` (every other session ended): this browser goes on under a new session cookie.
pub async fn continue_session(
    portal: &impl DoorPorts,
    source: &SourceAddress,
    session: &Session,
    contact: &Contact,
    epoch: &str,
    has_second_factor: Option<bool>,
) -> Result<Entered, PortalError> {
    let proof =
        Proof::Continued { session, contact: Box::new(contact.clone()), epoch: epoch.to_string(), has_second_factor };
    let arrival = Arrival { user_agent: session.user_agent.as_deref(), continues: Some(session), ..Arrival::default() };
    match enter(portal, source, proof, arrival, session.remembered).await? {
        Entry::Entered(entered) => Ok(*entered),
        Entry::SecondFactorAwaited { .. } => Err(anyhow::anyhow!("a continued session awaits no factor").into()),
    }
}

/// Checks a proof: the account's state, the attempts and lockout, the secret itself and (when it
/// came with one) the second factor. Nothing here starts a session.
pub async fn prove(
    portal: &impl DoorPorts,
    source: &SourceAddress,
    proof: Proof<'_>,
    arrival: Arrival<'_>,
) -> Result<Proven, PortalError> {
    match proof {
        Proof::Password { login, password, second_factor_code } => {
            prove_password(portal, source, login, password, second_factor_code, arrival.device).await
        }
        Proof::SecondFactor { pending_token, code } => {
            prove_second_factor(portal, source, pending_token, code, arrival.device).await
        }
        Proof::Passkey(verified) => prove_passkey(portal, source, verified.contact, arrival.device).await,
        Proof::EmailCode { email, code } => prove_email_code(portal, source, email, code, arrival.device).await,
        Proof::External(verified) => prove_external(portal, source, *verified, arrival.device).await,
        Proof::NewCredentials { contact, way } => {
            let epoch = contact.session_epoch.clone();
            Ok(Proven {
                contact: *contact,
                way,
                trusted_device: false,
                factor: Factor::Absent,
                remembered: None,
                epoch,
                provider: None,
            })
        }
        Proof::Continued { session, contact, epoch, has_second_factor } => {
            if session.contact_id != contact.contact_id {
                return Err(anyhow::anyhow!("a session continued for another account").into());
            }
            let factor = match has_second_factor {
                Some(true) => Factor::Proven,
                Some(false) => Factor::Absent,
                None => Factor::Kept { setup_only: session.setup_only },
            };
            let remembered = Some(session.remembered);
            Ok(Proven {
                contact: *contact,
                way: Way::Continued,
                trusted_device: false,
                factor,
                remembered,
                epoch,
                provider: None,
            })
        }
    }
}

/// Admits a proven identity: the account's state once more (a change may have come between), the
/// second factor awaited or the set-up limit, then the session in the proof's epoch. For every way
/// in but a continued session, the session the browser arrived with ends; a sign-in (re)trusts the
/// browser as a device of the account.
pub async fn admit(
    portal: &impl DoorPorts,
    source: &SourceAddress,
    proven: Proven,
    arrival: Arrival<'_>,
    remember_me: bool,
) -> Result<Entry, PortalError> {
    let Proven { contact, way, trusted_device, factor, remembered, epoch, provider } = proven;
    // What the session, its audit entries and the sign-in history call the way in.
    let method = provider.as_deref().map_or_else(|| way.as_str().to_string(), external_method);
    let settings = portal.settings();
    // 1. The account's state.
    if !contact.may_sign_in() {
        return Err(refuse_disabled(portal, source, &contact, way).await);
    }
    // A continued session was admitted before: the site's confirmation rule was applied then.
    if way != Way::Continued && settings.require_confirmation && !contact.email_confirmed {
        audit(AuditEvent::SignInUnconfirmed, Some(&contact.contact_id), source);
        return Err(PortalError::EmailNotConfirmed);
    }
    // 2. The attempt reservation and the lockout were settled by `prove` (a proof that needs none,
    // new credentials or a continued session, comes from a change that was itself checked).
    let remembered = remembered.unwrap_or(remember_me);
    let now = portal.clock().now();
    // 3. The second factor.
    let setup_only = match factor {
        Factor::Awaited(methods) => {
            let (mut pending, pending_token) =
                PendingSignIn::start(&contact.contact_id, &epoch, now, remembered, trusted_device);
            pending.methods = methods.iter().map(|m| m.to_string()).collect();
            let entry = audit_entry(portal, AuditEvent::SecondFactorRequired, None, Some(&contact.contact_id), source)
                .with("method", method.clone())
                .with("result", "second_factor_required");
            let (created, recorded) = tokio::join!(portal.two_factor().create_pending(&pending), record(portal, entry));
            created?;
            recorded?;
            audit(AuditEvent::SecondFactorRequired, Some(&contact.contact_id), source);
            return Ok(Entry::SecondFactorAwaited { pending_token, methods });
        }
        Factor::Proven => false,
        Factor::Absent => two_factor_required(&contact.roles, &settings.two_factor_required_roles),
        Factor::Kept { setup_only } => setup_only,
    };
    // 4. The session, in the epoch the proof was made in.
    // 5. The terms of use: until the current ones are accepted, the session reaches `/terms` only.
    let terms_only = contact.owes_terms(settings.terms_version.as_deref());
    let options = SessionOptions { remembered, setup_only, terms_only };
    let lifetime = if remembered { settings.remember_me_secs } else { settings.session_absolute_secs };
    let (mut session, session_token) = Session::start(&contact.contact_id, &epoch, now, lifetime);
    session.remembered = options.remembered;
    session.setup_only = options.setup_only;
    session.terms_only = options.terms_only;
    session.method = match (way, arrival.continues) {
        (Way::Continued, Some(continued)) => continued.method.clone(),
        _ => Some(method.clone()),
    };
    session.ip = Some(source.as_str().to_string());
    session.user_agent = arrival.user_agent.map(kept_user_agent);
    let signs_in = matches!(way, Way::Password | Way::SecondFactor | Way::Passkey | Way::EmailCode | Way::External);
    let device_token = signs_in.then(|| match arrival.device {
        Some(device) if trusted_device => device.to_string(),
        _ => random_token(),
    });
    let ends_arrival = way != Way::Continued;
    let remember_device = async {
        let Some(token) = &device_token else { return Ok(()) };
        let device = Device {
            digest: digest(token),
            contact_id: contact.contact_id.clone(),
            expires_at: now + DEVICE_TRUST_SECS,
        };
        portal.contacts().remember_device(&device).await
    };
    let end_arrival = async {
        match arrival.session.filter(|t| ends_arrival && !t.is_empty()) {
            Some(token) => portal.sessions().delete(&digest(token)).await.map(drop),
            None => Ok(()),
        }
    };
    // A continued session is no sign-in: the person was in already (a change of theirs renewed it).
    let mut queued: Vec<Queued> = Vec::new();
    if way != Way::Continued {
        let id = Some(&contact.contact_id);
        let mut entry = audit_entry(portal, AuditEvent::SignedIn, id, id, source).with("method", method.clone());
        if let Some(user_agent) = &session.user_agent {
            entry = entry.with("user_agent", user_agent.clone());
        }
        queued.push(entry.into());
    }
    // A sign-in from a browser that is not a trusted device of the account: the owner is told
    // (within the account's notice allowance), in the same write as the session.
    if signs_in && !trusted_device {
        let detail = new_sign_in_detail(source, session.user_agent.as_deref());
        queued.extend(security_notice(portal, &contact, MessageKind::NewSignInNotice, Some(detail)).await?);
    }
    let (created, remembered_device, ended) =
        tokio::join!(portal.sessions().create(&session, &queued), remember_device, end_arrival);
    created?;
    remembered_device?;
    ended?;
    tracing::info!(
        audit = AuditEvent::SignedIn.as_str(),
        way = %method,
        contact_id = %contact.contact_id,
        source_ip = %source,
        "audit"
    );
    Ok(Entry::Entered(Box::new(Entered { contact, way, options, session_token, device_token })))
}

/// The second-factor state of a login that no account has: read as an account's would be, so the
/// work does not tell (no such item ever exists).
fn nobody(subject: &AttemptSubject) -> ContactId {
    match subject {
        AttemptSubject::Account(contact_id) => contact_id.clone(),
        AttemptSubject::UnknownLogin(digest) => ContactId::from(format!("nobody-{digest}")),
    }
}

async fn prove_password(
    portal: &impl DoorPorts,
    source: &SourceAddress,
    raw_login: &str,
    password: Password,
    second_factor_code: Option<&str>,
    device: Option<&str>,
) -> Result<Proven, PortalError> {
    let login = Login::parse(raw_login);
    // The source address's attempt and the account's look-up go out together (one round trip).
    let find = async {
        match &login {
            Some(login) => portal.contacts().find_by_login(login).await,
            None => Ok(None),
        }
    };
    let (allowed, found) = tokio::join!(reserve_attempt(portal, source, Attempt::SignIn), find);
    allowed?;
    let found = found?.filter(|c| c.password_hash.is_some());
    let subject = match &found {
        Some(contact) => AttemptSubject::Account(contact.contact_id.clone()),
        None => {
            AttemptSubject::unknown_login(&login.as_ref().map_or_else(|| raw_login.trim().to_lowercase(), Login::key))
        }
    };
    // The attempt (on a trusted device of the account, its own) and the factor state together.
    let Reservation { reserved, trusted_device, state } = reserve(portal, found.as_ref(), &subject, device).await?;
    let hash = found.as_ref().filter(|_| reserved).and_then(|c| c.password_hash.clone());
    if !verify_password(password, hash).await? {
        let failure =
            Failure { contact_id: found.as_ref().map(|c| &c.contact_id), subject: &subject, way: Way::Password };
        return Err(refuse(portal, source, failure, reserved, trusted_device).await);
    }
    let contact = found.ok_or_else(|| anyhow::anyhow!("a right password without its account"))?;
    if !contact.may_sign_in() {
        return Err(refuse_disabled(portal, source, &contact, Way::Password).await);
    }
    let factor = match (state.enabled(), second_factor_code) {
        (false, _) => Factor::Absent,
        (true, None) => {
            return second_factor_awaited(portal, source, contact, Way::Password, trusted_device, state.methods())
                .await;
        }
        (true, Some(code)) => {
            if !use_code(portal, &contact, &state, code).await? {
                audit(AuditEvent::SecondFactorFailed, Some(&contact.contact_id), source);
                let locked = count_failure(portal, &subject, true, trusted_device).await?;
                record_lockout(portal, &subject, locked, source).await?;
                return Err(PortalError::field("second_factor_code", "is not a current code of this account"));
            }
            Factor::Proven
        }
    };
    succeeded(portal, source, &contact, trusted_device).await?;
    let epoch = contact.session_epoch.clone();
    Ok(Proven { contact, way: Way::Password, trusted_device, factor, remembered: None, epoch, provider: None })
}

/// An emailed sign-in code: the same work for an address no account has (its attempt is reserved
/// under the address, and a code looked for that never exists), the same lockout as a password,
/// and a code that works once, for ten minutes, and dies after five wrong tries. Proving control
/// of the mailbox, it stands for the password, not for a second factor: an account with TOTP
/// takes its second step (not by email: that would be the same mailbox twice).
async fn prove_email_code(
    portal: &impl DoorPorts,
    source: &SourceAddress,
    raw_email: &str,
    code: &str,
    device: Option<&str>,
) -> Result<Proven, PortalError> {
    let email = crate::domain::email::Email::parse(raw_email).ok();
    let find = async {
        match &email {
            Some(email) => portal.contacts().find_by_login(&Login::of_email(email)).await,
            None => Ok(None),
        }
    };
    let (allowed, found) = tokio::join!(reserve_attempt(portal, source, Attempt::SignIn), find);
    allowed?;
    let found = found?;
    let subject = match (&found, &email) {
        (Some(contact), _) => AttemptSubject::Account(contact.contact_id.clone()),
        (None, Some(email)) => AttemptSubject::unknown_login(email.normalized()),
        (None, None) => AttemptSubject::unknown_login(&raw_email.trim().to_lowercase()),
    };
    // The attempt (on a trusted device of the account, its own) and the factor state together.
    let Reservation { reserved, trusted_device, state } = reserve(portal, found.as_ref(), &subject, device).await?;
    // For a login no account has, a code is looked for all the same (under nobody: never there).
    let owner = nobody(&subject);
    let now = portal.clock().now();
    let digits = crate::domain::two_factor::normalize_digits(code);
    let passed = match (reserved, digits) {
        (true, Some(digits)) => {
            let digest = crate::domain::two_factor::sign_in_code_digest(&owner, &digits);
            let tries = crate::domain::two_factor::SIGN_IN_CODE_TRIES;
            portal.contacts().use_sign_in_code(&owner, &digest, now, tries).await?
        }
        _ => false,
    };
    let contact = match (passed, found) {
        (true, Some(contact)) => contact,
        (_, found) => {
            let failure =
                Failure { contact_id: found.as_ref().map(|c| &c.contact_id), subject: &subject, way: Way::EmailCode };
            return Err(refuse(portal, source, failure, reserved, trusted_device).await);
        }
    };
    if !contact.may_sign_in() {
        return Err(refuse_disabled(portal, source, &contact, Way::EmailCode).await);
    }
    // A passkey is a second step too (it proves the device, not the mailbox); the email is not.
    let has_passkey = !portal.passkeys().list(&contact.contact_id).await?.is_empty();
    if state.totp.is_some() || has_passkey {
        let mut methods: Vec<&'static str> = state.methods().into_iter().filter(|m| *m != "email").collect();
        if state.totp.is_none() {
            methods.retain(|m| *m != "recovery_code");
        }
        if has_passkey {
            methods.push("passkey");
        }
        return second_factor_awaited(portal, source, contact, Way::EmailCode, trusted_device, methods).await;
    }
    succeeded(portal, source, &contact, trusted_device).await?;
    let epoch = contact.session_epoch.clone();
    Ok(Proven {
        contact,
        way: Way::EmailCode,
        trusted_device,
        factor: Factor::Absent,
        remembered: None,
        epoch,
        provider: None,
    })
}

/// What a first factor's reservation found: whether its attempt was taken (and on a trusted
/// device of the account), and the second-factor state of its subject.
struct Reservation {
    reserved: bool,
    trusted_device: bool,
    state: crate::domain::two_factor::TwoFactor,
}

/// Takes the attempt of a first factor (on a trusted device of the account, its own) and reads the
/// factor state, together: for a login no account has, both as an account's would be.
async fn reserve(
    portal: &impl DoorPorts,
    found: Option<&Contact>,
    subject: &AttemptSubject,
    device: Option<&str>,
) -> Result<Reservation, PortalError> {
    let now = portal.clock().now();
    let policy = portal.settings().lockout;
    let take = async {
        if let (Some(contact), Some(device)) = (found, device)
            && portal
                .contacts()
                .reserve_device_attempt(&digest(device), &contact.contact_id, now, policy.threshold)
                .await?
        {
            return Ok::<_, anyhow::Error>((true, true));
        }
        Ok((portal.contacts().reserve_attempt(subject, now, &policy).await?, false))
    };
    let owner = nobody(subject);
    let (taken, state) = tokio::join!(take, portal.two_factor().get(&owner));
    let (reserved, trusted_device) = taken?;
    Ok(Reservation { reserved, trusted_device, state: state? })
}

/// A failed first factor: whose account (none for a login no account has), its attempt subject,
/// and the way.
struct Failure<'a> {
    contact_id: Option<&'a ContactId>,
    subject: &'a AttemptSubject,
    way: Way,
}

/// Records a failed first factor and answers it: the count first, then its entry (a fault in the
/// count leaves no entry of a failure that was not counted), then any lockout it caused. Never the
/// login that was typed: for a login no account has, the entry names nobody.
async fn refuse(
    portal: &impl DoorPorts,
    source: &SourceAddress,
    failure: Failure<'_>,
    reserved: bool,
    trusted_device: bool,
) -> PortalError {
    let recorded = async {
        audit(AuditEvent::SignInFailed, failure.contact_id, source);
        let entry = audit_entry(portal, AuditEvent::SignInFailed, None, failure.contact_id, source)
            .with("method", failure.way.as_str())
            .with("result", if reserved { "wrong_credentials" } else { "locked" });
        let locked = count_failure(portal, failure.subject, reserved, trusted_device).await?;
        record(portal, entry).await?;
        record_lockout(portal, failure.subject, locked, source).await
    };
    match recorded.await {
        Ok(()) => PortalError::InvalidCredentials,
        Err(err) => err,
    }
}

/// The right secret of an account whose sign-in is off or that was deleted: the answer a wrong one
/// gets, and its entry.
async fn refuse_disabled(portal: &impl DoorPorts, source: &SourceAddress, contact: &Contact, way: Way) -> PortalError {
    audit(AuditEvent::SignInFailed, Some(&contact.contact_id), source);
    let entry = audit_entry(portal, AuditEvent::SignInFailed, None, Some(&contact.contact_id), source)
        .with("method", way.as_str())
        .with("result", "disabled");
    match record(portal, entry).await {
        Ok(()) => PortalError::InvalidCredentials,
        Err(err) => err,
    }
}

/// A right first factor of an account with a second factor: only this attempt was right, so the
/// account's other failures (second-factor guesses among them) stay counted until the second
/// factor is proven too; the source address's attempt is given back.
async fn second_factor_awaited(
    portal: &impl DoorPorts,
    source: &SourceAddress,
    contact: Contact,
    way: Way,
    trusted_device: bool,
    methods: Vec<&'static str>,
) -> Result<Proven, PortalError> {
    let release = async {
        match trusted_device {
            true => Ok(()),
            false => portal.contacts().release_attempt(&contact.contact_id).await,
        }
    };
    let (released, given_back) = tokio::join!(release, give_back_attempt(portal, source, Attempt::SignIn));
    released?;
    given_back?;
    let epoch = contact.session_epoch.clone();
    Ok(Proven {
        contact,
        way,
        trusted_device,
        factor: Factor::Awaited(methods),
        remembered: None,
        epoch,
        provider: None,
    })
}

async fn prove_second_factor(
    portal: &impl DoorPorts,
    source: &SourceAddress,
    pending_token: &str,
    code: &str,
    device: Option<&str>,
) -> Result<Proven, PortalError> {
    let now = portal.clock().now();
    let pending_digest = digest(pending_token);
    let pending = portal
        .two_factor()
        .take_pending_attempt(&pending_digest, now, PENDING_SIGN_IN_ATTEMPTS)
        .await?
        .ok_or(PortalError::Unauthenticated)?;
    reserve_attempt(portal, source, Attempt::SignIn).await?;
    let Some(contact) = portal.contacts().get(&pending.contact_id).await? else {
        return Err(PortalError::Unauthenticated);
    };
    // A password change or reset since the password was right voids the pending sign-in, as it
    // ends the sessions.
    if pending.epoch != contact.session_epoch || !contact.may_sign_in() {
        portal.two_factor().end_pending(&pending_digest).await?;
        audit(AuditEvent::SecondFactorFailed, Some(&contact.contact_id), source);
        return Err(PortalError::Unauthenticated);
    }
    let policy = portal.settings().lockout;
    let subject = AttemptSubject::Account(contact.contact_id.clone());
    let device = device.filter(|_| pending.trusted_device);
    let reserved = match device {
        Some(device) => {
            portal
                .contacts()
                .reserve_device_attempt(&digest(device), &contact.contact_id, now, policy.threshold)
                .await?
        }
        None => portal.contacts().reserve_attempt(&subject, now, &policy).await?,
    };
    let mut state = portal.two_factor().get(&contact.contact_id).await?;
    // After an emailed code, the mailbox is proven already: its second step is something else.
    state.email &= pending.offers_email();
    let passed = reserved && use_code(portal, &contact, &state, code).await?;
    if !passed {
        audit(AuditEvent::SecondFactorFailed, Some(&contact.contact_id), source);
        let entry = audit_entry(portal, AuditEvent::SecondFactorFailed, None, Some(&contact.contact_id), source)
            .with("method", Way::SecondFactor.as_str())
            .with("result", if reserved { "wrong_credentials" } else { "locked" });
        record(portal, entry).await?;
        if reserved && device.is_none() {
            portal.contacts().record_failed_sign_in(&subject, now, &policy).await?;
        }
        if pending.attempts >= PENDING_SIGN_IN_ATTEMPTS {
            portal.two_factor().end_pending(&pending_digest).await?;
        }
        return Err(PortalError::InvalidCredentials);
    }
    portal.two_factor().end_pending(&pending_digest).await?;
    let trusted_device = device.is_some();
    succeeded(portal, source, &contact, trusted_device).await?;
    let epoch = pending.epoch.clone();
    let remembered = Some(pending.remember_me);
    Ok(Proven {
        contact,
        way: Way::SecondFactor,
        trusted_device,
        factor: Factor::Proven,
        remembered,
        epoch,
        provider: None,
    })
}

/// A passkey sign-in: the assertion verified; the account's lockout (or its trusted device's
/// allowance) still holds, as for every way in.
async fn prove_passkey(
    portal: &impl DoorPorts,
    source: &SourceAddress,
    contact: Contact,
    device: Option<&str>,
) -> Result<Proven, PortalError> {
    let now = portal.clock().now();
    let policy = portal.settings().lockout;
    let trusted_device = match device {
        Some(device) => {
            portal
                .contacts()
                .reserve_device_attempt(&digest(device), &contact.contact_id, now, policy.threshold)
                .await?
        }
        None => false,
    };
    let subject = AttemptSubject::Account(contact.contact_id.clone());
    if !trusted_device && !portal.contacts().reserve_attempt(&subject, now, &policy).await? {
        audit(AuditEvent::PasskeySignInFailed, Some(&contact.contact_id), source);
        return Err(PortalError::InvalidCredentials);
    }
    succeeded(portal, source, &contact, trusted_device).await?;
    let epoch = contact.session_epoch.clone();
    Ok(Proven {
        contact,
        way: Way::Passkey,
        trusted_device,
        factor: Factor::Proven,
        remembered: None,
        epoch,
        provider: None,
    })
}

/// An external sign-in: the provider checked the person; the account's state, its lockout (or its
/// trusted device's allowance) and its second factor still hold, as for every way in. The
/// provider's own second factor counts only where the site trusts it (`trust_mfa`).
async fn prove_external(
    portal: &impl DoorPorts,
    source: &SourceAddress,
    verified: ExternalVerified,
    device: Option<&str>,
) -> Result<Proven, PortalError> {
    let ExternalVerified { contact, provider, second_factor } = verified;
    reserve_attempt(portal, source, Attempt::SignIn).await?;
    let subject = AttemptSubject::Account(contact.contact_id.clone());
    let Reservation { reserved, trusted_device, state } = reserve(portal, Some(&contact), &subject, device).await?;
    if !reserved {
        let failure = Failure { contact_id: Some(&contact.contact_id), subject: &subject, way: Way::External };
        return Err(refuse(portal, source, failure, reserved, trusted_device).await);
    }
    if !contact.may_sign_in() {
        return Err(refuse_disabled(portal, source, &contact, Way::External).await);
    }
    let factor = match (second_factor, state.enabled()) {
        (true, _) => Factor::Proven,
        (false, false) => Factor::Absent,
        (false, true) => {
            let mut awaited =
                second_factor_awaited(portal, source, contact, Way::External, trusted_device, state.methods()).await?;
            awaited.provider = Some(provider);
            return Ok(awaited);
        }
    };
    succeeded(portal, source, &contact, trusted_device).await?;
    let epoch = contact.session_epoch.clone();
    Ok(Proven {
        contact,
        way: Way::External,
        trusted_device,
        factor,
        remembered: None,
        epoch,
        provider: Some(provider),
    })
}

/// Everything proven: the source address's attempt is given back and the account's failures
/// cleared (a trusted device's attempt was its own).
async fn succeeded(
    portal: &impl DoorPorts,
    source: &SourceAddress,
    contact: &Contact,
    trusted_device: bool,
) -> Result<(), PortalError> {
    let reset = async {
        match trusted_device {
            true => Ok(()),
            false => portal.contacts().reset_lockout(&contact.contact_id).await,
        }
    };
    let (given_back, reset) = tokio::join!(give_back_attempt(portal, source, Attempt::SignIn), reset);
    given_back?;
    reset?;
    Ok(())
}

/// A failed check: the reserved attempt stays counted and locks the subject at the threshold; an
/// attempt its reservation refused (a locked subject) reads the subject's state instead, the same
/// work, so a locked account answers in the time a wrong password does. A trusted device counted
/// its failure when it reserved it.
async fn count_failure(
    portal: &impl DoorPorts,
    subject: &AttemptSubject,
    reserved: bool,
    trusted_device: bool,
) -> Result<Option<Timestamp>, PortalError> {
    if trusted_device {
        return Ok(None);
    }
    let now = portal.clock().now();
    let policy = portal.settings().lockout;
    if !reserved {
        portal.contacts().lockout_of(subject).await?;
        return Ok(None);
    }
    match portal.contacts().record_failed_sign_in(subject, now, &policy).await? {
        FailedSignIn::LockedOut { until } => Ok(Some(until)),
        _ => Ok(None),
    }
}

/// When a failure just locked an account (`locked_until`): its audit entry. A login no account
/// has is locked too, and recorded nowhere.
async fn record_lockout(
    portal: &impl DoorPorts,
    subject: &AttemptSubject,
    locked_until: Option<Timestamp>,
    source: &SourceAddress,
) -> Result<(), PortalError> {
    let (Some(until), AttemptSubject::Account(contact_id)) = (locked_until, subject) else { return Ok(()) };
    tracing::warn!(audit = AuditEvent::LockedOut.as_str(), contact_id = %contact_id, locked_until = until.as_secs(), "audit");
    let entry =
        audit_entry(portal, AuditEvent::LockedOut, None, Some(contact_id), source).with("until", rfc3339(until));
    record(portal, entry).await
}

/// A new sign-in notice's detail: the address, then the User-Agent (the email describes it).
fn new_sign_in_detail(source: &SourceAddress, user_agent: Option<&str>) -> String {
    format!("{}\n{}", source.as_str(), user_agent.unwrap_or_default())
}
