//! The redeem-invitation function: `GET, POST /redeem`.
//!
//! `GET /redeem?code=X` and `POST /redeem {"code"}` only look the code up (mail scanners follow
//! links: opening the page consumes nothing). With a password the invited contact sets up
//! credentials (a group invitation creates a new contact); with `existing_account` the invitation
//! is redeemed onto an account the person signs in to.

use async_trait::async_trait;
use lambda_http::http::Method;
use serde::Serialize;

use super::{Attempt, CsrfToken, authenticate, count_failure, refuse_if_throttled, start_session};
use crate::app::Portal;
use crate::domain::contact::{Contact, NewContact};
use crate::domain::email::Email;
use crate::domain::invitation::{Invitation, InvitationCode, InvitationType, Redemption, merged_roles};
use crate::domain::password::{Password, hash_password};
use crate::domain::text::{Username, parse_name};
use crate::lambda::HttpFunction;
use crate::ports::{ContactChange, RedeemError};
use crate::web::pages::{self, FormErrors, RedeemPage};
use crate::web::request::{query_param, source_ip};
use crate::web::response::{self, with_cookie};
use crate::web::{Client, Fields, HttpRequest, HttpResponse, PortalError, Submission};

pub struct RedeemInvitation;

#[async_trait]
impl HttpFunction for RedeemInvitation {
    async fn handle(&self, portal: &Portal, req: HttpRequest) -> HttpResponse {
        // With invitations turned off the page does not exist, as in Power Pages.
        if !portal.settings.invitations_enabled || req.uri().path() != "/redeem" {
            return response::error(&PortalError::NotFound, Client::for_read(&req));
        }
        let method = req.method().clone();
        match method {
            Method::GET => show(portal, &req).await,
            Method::POST => submit(portal, &req).await,
            _ => response::error(&PortalError::NotFound, Client::for_read(&req)),
        }
    }
}

/// The invitation a code opens, or `invitation_invalid` for every kind of bad code alike.
/// Each invalid code counts against the source address, which is refused once it used up its
/// allowance: guessing codes stops there.
async fn open(portal: &Portal, req: &HttpRequest, raw_code: &str) -> Result<(InvitationCode, Invitation), PortalError> {
    refuse_if_throttled(portal, req, Attempt::InvitationCode).await?;
    let found = match InvitationCode::parse(raw_code) {
        Some(code) => portal.invitations.find_by_code(&code.digest()).await?.map(|invitation| (code, invitation)),
        None => None,
    };
    match found {
        Some((code, invitation)) if invitation.is_redeemable(portal.clock.now()) => Ok((code, invitation)),
        _ => {
            count_failure(portal, req, Attempt::InvitationCode).await?;
            Err(PortalError::InvitationInvalid)
        }
    }
}

fn page(
    portal: &Portal,
    req: &HttpRequest,
    code: &str,
    invitation: Option<&Invitation>,
    values: RedeemValues,
    errors: FormErrors,
    status: u16,
) -> HttpResponse {
    let csrf = CsrfToken::for_page(portal, req);
    let page = RedeemPage {
        viewer: None,
        csrf_token: &csrf.token,
        code,
        invited_name: invitation.map(|i| format!("{} {}", i.first_name, i.last_name)).unwrap_or_default(),
        invited_email: invitation.map(|i| i.email.clone()).unwrap_or_default(),
        found: invitation.is_some(),
        group: invitation.is_some_and(|i| i.kind == InvitationType::Group),
        existing_account: values.existing_account,
        login: values.login,
        username: values.username,
        email: values.email,
        first_name: values.first_name,
        last_name: values.last_name,
        password_min_length: portal.settings.password_min_length,
        errors,
    };
    let html = pages::render(&page);
    csrf.apply(response::html(status, html))
}

#[derive(Default)]
struct RedeemValues {
    existing_account: bool,
    login: String,
    username: String,
    email: String,
    first_name: String,
    last_name: String,
}

impl RedeemValues {
    fn shown_again(fields: &mut Fields) -> Self {
        let existing_account = fields.flag("existing_account");
        let mut text = |name: &str| fields.text(name).unwrap_or_default();
        RedeemValues {
            existing_account,
            login: text("login"),
            username: text("username"),
            email: text("email"),
            first_name: text("first_name"),
            last_name: text("last_name"),
        }
    }
}

async fn show(portal: &Portal, req: &HttpRequest) -> HttpResponse {
    let client = Client::for_read(req);
    let Some(raw) = query_param(req, "code").filter(|c| !c.trim().is_empty()) else {
        return match client {
            Client::Browser => page(portal, req, "", None, RedeemValues::default(), FormErrors::default(), 200),
            Client::Api => response::error(&PortalError::field("code", "is required"), client),
        };
    };
    match (open(portal, req, &raw).await, client) {
        (Ok((code, invitation)), Client::Browser) => {
            page(portal, req, &code.display(), Some(&invitation), RedeemValues::default(), FormErrors::default(), 200)
        }
        (Ok((_, invitation)), Client::Api) => response::json(200, &Found::of(&invitation)),
        (Err(err), Client::Browser) if !matches!(err, PortalError::Internal(_)) => {
            page(portal, req, raw.trim(), None, RedeemValues::default(), FormErrors::from_error(&err), err.status())
        }
        (Err(err), _) => response::error(&err, client),
    }
}

/// Who an invitation is for, as the redeem form shows it.
#[derive(Serialize)]
struct Found<'a> {
    invitation_id: &'a str,
    #[serde(rename = "type")]
    kind: InvitationType,
    email: &'a str,
    first_name: &'a str,
    last_name: &'a str,
}

impl<'a> Found<'a> {
    fn of(invitation: &'a Invitation) -> Self {
        Found {
            invitation_id: &invitation.invitation_id,
            kind: invitation.kind,
            email: &invitation.email,
            first_name: &invitation.first_name,
            last_name: &invitation.last_name,
        }
    }
}

#[derive(Serialize)]
struct Redeemed<'a> {
    invitation_id: &'a str,
    contact_id: &'a str,
    email: &'a str,
    roles: &'a [String],
    redirect_path: &'a str,
}

/// What a submission asks for.
enum Intent {
    LookUp,
    NewCredentials(String),
    ExistingAccount { login: String, password: String },
}

async fn submit(portal: &Portal, req: &HttpRequest) -> HttpResponse {
    let Submission { client, mut fields } = match Submission::read(req, &portal.settings) {
        Ok(submission) => submission,
        Err(err) => return response::error(&err, Client::for_read(req)),
    };
    let raw_code = fields.required("code");
    let existing_account = fields.flag("existing_account");
    let password = fields.text("password").filter(|p| !p.is_empty());
    let intent = if existing_account {
        let login = fields.required("login");
        let password = fields.required("password");
        login.zip(password).map(|(login, password)| Intent::ExistingAccount { login, password })
    } else {
        Some(password.map_or(Intent::LookUp, Intent::NewCredentials))
    };
    let outcome = match (fields.finish(), raw_code, intent) {
        (Ok(()), Some(raw_code), Some(intent)) => redeem(portal, req, &raw_code, intent, &mut fields).await,
        (Err(err), ..) => Err(err),
        _ => Err(PortalError::validation("Some fields need attention.")),
    };
    match (outcome, client) {
        (Ok(Outcome::Found(code, invitation)), Client::Browser) => {
            page(portal, req, &code.display(), Some(&*invitation), RedeemValues::default(), FormErrors::default(), 200)
        }
        (Ok(Outcome::Found(_, invitation)), Client::Api) => response::json(200, &Found::of(&invitation)),
        (Ok(Outcome::Redeemed { invitation, contact, cookie, created }), client) => {
            let target = invitation.redirect_path.clone().unwrap_or_else(|| "/profile".into());
            let reply = match client {
                Client::Api => response::json(
                    if created { 201 } else { 200 },
                    &Redeemed {
                        invitation_id: &invitation.invitation_id,
                        contact_id: &contact.contact_id,
                        email: &contact.email,
                        roles: &contact.roles,
                        redirect_path: &target,
                    },
                ),
                Client::Browser => response::see_other(&target),
            };
            with_cookie(reply, cookie)
        }
        (Err(err), Client::Browser) if !matches!(err, PortalError::Internal(_)) => {
            err.log();
            let raw = fields.text("code").unwrap_or_default();
            // Show the invitation again when the code is still good (a bad password, say).
            let invitation = match &err {
                PortalError::InvitationInvalid => None,
                _ => open(portal, req, &raw).await.ok().map(|(_, i)| i),
            };
            let values = RedeemValues::shown_again(&mut fields);
            page(portal, req, raw.trim(), invitation.as_ref(), values, FormErrors::from_error(&err), err.status())
        }
        (Err(err), client) => response::error(&err, client),
    }
}

enum Outcome {
    Found(InvitationCode, Box<Invitation>),
    Redeemed { invitation: Box<Invitation>, contact: Box<Contact>, cookie: String, created: bool },
}

async fn redeem(
    portal: &Portal,
    req: &HttpRequest,
    raw_code: &str,
    intent: Intent,
    fields: &mut Fields,
) -> Result<Outcome, PortalError> {
    let (code, invitation) = open(portal, req, raw_code).await?;
    let (change, created) = match intent {
        Intent::LookUp => return Ok(Outcome::Found(code, Box::new(invitation))),
        Intent::ExistingAccount { login, password } => {
            let account = authenticate(portal, req, &login, Password::new(password)).await?;
            let change = ContactChange::Assign {
                contact_id: account.contact_id.clone(),
                roles: merged_roles(&account.roles, &invitation.roles),
                account_id: invitation.account_id.clone(),
            };
            (change, false)
        }
        Intent::NewCredentials(password) => (credentials_change(portal, &invitation, password, fields).await?, true),
    };
    let now = portal.clock.now();
    let redemption = Redemption {
        invitation_id: invitation.invitation_id.clone(),
        contact_id: change.contact_id().to_string(),
        redeemed_at: now,
        source_ip: source_ip(req),
    };
    match portal.invitations.redeem(&invitation, &change, &redemption, now).await {
        Ok(()) => {}
        Err(RedeemError::InvitationInvalid) => return Err(PortalError::InvitationInvalid),
        Err(RedeemError::EmailTaken) => return Err(PortalError::EmailTaken),
        Err(RedeemError::UsernameTaken) => return Err(PortalError::field("username", "is already taken")),
        Err(RedeemError::Store(err)) => return Err(err.into()),
    }
    let contact =
        portal.contacts.get(change.contact_id()).await?.ok_or_else(|| anyhow::anyhow!("redeemed contact vanished"))?;
    tracing::info!(
        audit = "invitation_redeemed",
        invitation_id = %invitation.invitation_id,
        contact_id = %contact.contact_id,
        source_ip = %redemption.source_ip,
        "audit"
    );
    let cookie = start_session(portal, &contact).await?;
    Ok(Outcome::Redeemed { invitation: Box::new(invitation), contact: Box::new(contact), cookie, created })
}

/// New credentials: for a single invitation, the invited contact's; for a group invitation, a new
/// contact's, made from the submitted email and names.
async fn credentials_change(
    portal: &Portal,
    invitation: &Invitation,
    password: String,
    fields: &mut Fields,
) -> Result<ContactChange, PortalError> {
    let min_length = portal.settings.password_min_length;
    let username = fields.optional_parsed("username", Username::parse);
    match invitation.kind {
        InvitationType::Single => {
            let contact = portal.contacts.get(&invitation.contact_id).await?.ok_or(PortalError::InvitationInvalid)?;
            if contact.password_hash.is_some() {
                return Err(PortalError::field(
                    "existing_account",
                    "this invitation is for an existing account: tick \"I have an existing account\" and sign in",
                ));
            }
            let context = [contact.email.as_str(), &contact.first_name, &contact.last_name];
            let chosen = Password::choose(password, min_length, &context);
            let password = fields.check("password", chosen);
            fields.finish()?;
            let password = password.ok_or_else(|| PortalError::validation("Some fields need attention."))?;
            Ok(ContactChange::SetCredentials {
                contact_id: contact.contact_id.clone(),
                password_hash: hash_password(password).await?,
                username,
                roles: merged_roles(&contact.roles, &invitation.roles),
                account_id: invitation.account_id.clone(),
            })
        }
        InvitationType::Group => {
            let email = fields.required_parsed("email", Email::parse);
            let first_name = fields.required_parsed("first_name", parse_name);
            let last_name = fields.required_parsed("last_name", parse_name);
            let context: Vec<&str> = [email.as_ref().map(Email::as_str), first_name.as_deref(), last_name.as_deref()]
                .into_iter()
                .flatten()
                .collect();
            let chosen = Password::choose(password, min_length, &context);
            let password = fields.check("password", chosen);
            fields.finish()?;
            let (Some(email), Some(first_name), Some(last_name), Some(password)) =
                (email, first_name, last_name, password)
            else {
                return Err(PortalError::validation("Some fields need attention."));
            };
            let confirmed = email.normalized() == invitation.email.to_lowercase();
            let mut contact = Contact::new(
                NewContact {
                    email,
                    first_name,
                    last_name,
                    username,
                    phone: None,
                    roles: invitation.roles.clone(),
                    password_hash: Some(hash_password(password).await?),
                },
                portal.clock.now(),
            );
            // The code reached the invited address; another address is unproven.
            contact.email_confirmed = confirmed;
            contact.account_id = invitation.account_id.clone();
            Ok(ContactChange::Create(contact))
        }
    }
}
