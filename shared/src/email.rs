//! The emails the portal sends: subject and sender from settings, text from templates kept with
//! the code (`shared/templates/email/`), links built from the configured base URL only.

use askama::Template;

use crate::config::Settings;
use crate::domain::outbox::{MessageKind, OutboxMessage};
use crate::domain::time::human;
use crate::ports::OutgoingEmail;

#[derive(Template)]
#[template(path = "email/invitation.txt", escape = "none")]
struct InvitationEmail<'a> {
    first_name: &'a str,
    code: &'a str,
    link: &'a str,
    redeem_page: &'a str,
    expires: &'a str,
}

#[derive(Template)]
#[template(path = "email/confirm_email.txt", escape = "none")]
struct ConfirmEmail<'a> {
    first_name: &'a str,
    link: &'a str,
    expires: &'a str,
}

#[derive(Template)]
#[template(path = "email/reset_password.txt", escape = "none")]
struct ResetPasswordEmail<'a> {
    first_name: &'a str,
    link: &'a str,
    expires: &'a str,
}

#[derive(Template)]
#[template(path = "email/account_exists.txt", escape = "none")]
struct AccountExistsEmail<'a> {
    first_name: &'a str,
    signin: &'a str,
    forgot: &'a str,
}

#[derive(Template)]
#[template(path = "email/address_in_use.txt", escape = "none")]
struct AddressInUseEmail<'a> {
    first_name: &'a str,
    profile: &'a str,
}

#[derive(Template)]
#[template(path = "email/email_change_notice.txt", escape = "none")]
struct EmailChangeNotice<'a> {
    first_name: &'a str,
    new_email: &'a str,
    profile: &'a str,
    forgot: &'a str,
}

#[derive(Template)]
#[template(path = "email/password_notice.txt", escape = "none")]
struct PasswordNotice<'a> {
    first_name: &'a str,
    what: &'a str,
    when: &'a str,
    forgot: &'a str,
    /// The passkeys that still sign in after a reset (a reset removes none), comma-separated.
    passkeys: &'a str,
    passkeys_page: &'a str,
}

#[derive(Template)]
#[template(path = "email/held_notices.txt", escape = "none")]
struct HeldNoticesEmail<'a> {
    first_name: &'a str,
    count: u32,
    kinds: &'a str,
    since: &'a str,
    security: &'a str,
    forgot: &'a str,
}

#[derive(Template)]
#[template(path = "email/passkey_notice.txt", escape = "none")]
struct PasskeyNotice<'a> {
    first_name: &'a str,
    name: &'a str,
    what: &'a str,
    when: &'a str,
    profile: &'a str,
    forgot: &'a str,
}

#[derive(Template)]
#[template(path = "email/sign_in_code.txt", escape = "none")]
struct SignInCodeEmail<'a> {
    first_name: &'a str,
    code: &'a str,
    expires: &'a str,
}

#[derive(Template)]
#[template(path = "email/new_sign_in_notice.txt", escape = "none")]
struct NewSignInNotice<'a> {
    first_name: &'a str,
    when: &'a str,
    browser: &'a str,
    ip: &'a str,
    security: &'a str,
    forgot: &'a str,
}

#[derive(Template)]
#[template(path = "email/emailed_sign_in_code.txt", escape = "none")]
struct EmailedSignInCode<'a> {
    first_name: &'a str,
    code: &'a str,
    expires: &'a str,
}

#[derive(Template)]
#[template(path = "email/account_deleted_notice.txt", escape = "none")]
struct AccountDeletedNotice<'a> {
    first_name: &'a str,
    when: &'a str,
    by: &'a str,
    register: &'a str,
}

#[derive(Template)]
#[template(path = "email/two_factor_notice.txt", escape = "none")]
struct TwoFactorNotice<'a> {
    first_name: &'a str,
    what: &'a str,
    when: &'a str,
    security: &'a str,
    forgot: &'a str,
}

/// The email for an outbox message; `None` when the message no longer holds what it must carry
/// (or is a request `send-email` resolves first: see `usecases::mail`).
pub fn render(settings: &Settings, message: &OutboxMessage) -> Option<OutgoingEmail> {
    if message.to.is_empty() {
        // Settled: its address was removed with it.
        return None;
    }
    let page = |path: &str| format!("{}{path}", settings.base_url);
    let email = |subject: &str, text: String| OutgoingEmail { to: message.to.clone(), subject: subject.into(), text };
    match message.kind {
        MessageKind::Invitation => {
            let code = message.secret.as_ref()?.expose();
            let link = format!("{}/redeem?code={code}", settings.base_url);
            let redeem_page = format!("{}/redeem", settings.base_url);
            let expires = message.valid_until.map(human).unwrap_or_else(|| "its expiry date".into());
            let text = InvitationEmail {
                first_name: &message.first_name,
                code,
                link: &link,
                redeem_page: &redeem_page,
                expires: &expires,
            }
            .render()
            .ok()?;
            Some(OutgoingEmail { to: message.to.clone(), subject: settings.invitation_email_subject.clone(), text })
        }
        MessageKind::ConfirmEmail => {
            let link = format!("{}/confirm-email?token={}", settings.base_url, message.secret.as_ref()?.expose());
            let expires = message.valid_until.map(human).unwrap_or_default();
            let text =
                ConfirmEmail { first_name: &message.first_name, link: &link, expires: &expires }.render().ok()?;
            Some(OutgoingEmail { to: message.to.clone(), subject: "Confirm your email address".into(), text })
        }
        MessageKind::ResetPassword => {
            let link = format!("{}/reset-password?token={}", settings.base_url, message.secret.as_ref()?.expose());
            let expires = message.valid_until.map(human).unwrap_or_default();
            let text =
                ResetPasswordEmail { first_name: &message.first_name, link: &link, expires: &expires }.render().ok()?;
            Some(OutgoingEmail { to: message.to.clone(), subject: "Reset your password".into(), text })
        }
        MessageKind::AccountExists => {
            let signin = format!("{}/signin", settings.base_url);
            let forgot = format!("{}/forgot-password", settings.base_url);
            let text = AccountExistsEmail { first_name: &message.first_name, signin: &signin, forgot: &forgot }
                .render()
                .ok()?;
            Some(OutgoingEmail { to: message.to.clone(), subject: "You already have an account".into(), text })
        }
        MessageKind::ConfirmNewEmail => {
            let link = format!("{}/confirm-email?token={}", settings.base_url, message.secret.as_ref()?.expose());
            let expires = message.valid_until.map(human).unwrap_or_default();
            let text =
                ConfirmEmail { first_name: &message.first_name, link: &link, expires: &expires }.render().ok()?;
            Some(email("Confirm your new email address", text))
        }
        MessageKind::AddressInUse => {
            let text =
                AddressInUseEmail { first_name: &message.first_name, profile: &page("/profile") }.render().ok()?;
            Some(email("Someone tried to use your email address", text))
        }
        MessageKind::EmailChangeNotice => {
            let text = EmailChangeNotice {
                first_name: &message.first_name,
                new_email: message.detail.as_deref()?,
                profile: &page("/profile"),
                forgot: &page("/forgot-password"),
            }
            .render()
            .ok()?;
            Some(email("A change of your email address was requested", text))
        }
        MessageKind::PasswordChangedNotice | MessageKind::PasswordResetNotice => {
            let what = if message.kind == MessageKind::PasswordChangedNotice {
                "changed"
            } else {
                "reset with an emailed link"
            };
            let text = PasswordNotice {
                first_name: &message.first_name,
                what,
                when: &human(message.created_at),
                forgot: &page("/forgot-password"),
                passkeys: message.detail.as_deref().unwrap_or_default(),
                passkeys_page: &page("/profile/passkeys"),
            }
            .render()
            .ok()?;
            Some(email("Your password was changed", text))
        }
        MessageKind::PasskeyAddedNotice | MessageKind::PasskeyRemovedNotice => {
            let added = message.kind == MessageKind::PasskeyAddedNotice;
            let text = PasskeyNotice {
                first_name: &message.first_name,
                name: message.detail.as_deref().unwrap_or("Passkey"),
                what: if added { "added to" } else { "removed from" },
                when: &human(message.created_at),
                profile: &page("/profile/passkeys"),
                forgot: &page("/forgot-password"),
            }
            .render()
            .ok()?;
            Some(email(
                if added { "A passkey was added to your account" } else { "A passkey was removed from your account" },
                text,
            ))
        }
        MessageKind::SignInCode => {
            let code = message.secret.as_ref()?.expose();
            let expires = message.valid_until.map(human).unwrap_or_default();
            let text = SignInCodeEmail { first_name: &message.first_name, code, expires: &expires }.render().ok()?;
            Some(email("Your sign-in code", text))
        }
        MessageKind::NewSignInNotice => {
            let (ip, user_agent) = message.detail.as_deref()?.split_once('\n').unwrap_or(("unknown", ""));
            let browser = crate::domain::browser::describe(Some(user_agent).filter(|ua| !ua.is_empty()));
            let text = NewSignInNotice {
                first_name: &message.first_name,
                when: &human(message.created_at),
                browser: &browser,
                ip,
                security: &page("/profile/security"),
                forgot: &page("/forgot-password"),
            }
            .render()
            .ok()?;
            Some(email("A new sign-in to your account", text))
        }
        MessageKind::TwoFactorNotice => {
            let text = TwoFactorNotice {
                first_name: &message.first_name,
                what: message.detail.as_deref()?,
                when: &human(message.created_at),
                security: &page("/profile/two-factor"),
                forgot: &page("/forgot-password"),
            }
            .render()
            .ok()?;
            Some(email("Your two-factor authentication changed", text))
        }
        MessageKind::HeldNoticesSummary => {
            let held = message.held?;
            let text = HeldNoticesEmail {
                first_name: &message.first_name,
                count: held.count,
                kinds: message.detail.as_deref().unwrap_or_default(),
                since: &human(held.since),
                security: &page("/profile/two-factor"),
                forgot: &page("/forgot-password"),
            }
            .render()
            .ok()?;
            Some(email("More changes were made to your account", text))
        }
        MessageKind::AccountDeletedNotice => {
            let by = if message.detail.as_deref() == Some("staff") { " by the portal's staff" } else { "" };
            let text = AccountDeletedNotice {
                first_name: &message.first_name,
                when: &human(message.created_at),
                by,
                register: &page("/register"),
            }
            .render()
            .ok()?;
            Some(email("Your account was deleted", text))
        }
        MessageKind::EmailedSignInCode => {
            let code = message.secret.as_ref()?.expose();
            let expires = message.valid_until.map(human).unwrap_or_else(|| "ten minutes from now".into());
            let text = EmailedSignInCode { first_name: &message.first_name, code, expires: &expires }.render().ok()?;
            Some(email("Your sign-in code", text))
        }
        MessageKind::ResetRequest | MessageKind::ConfirmationRequest | MessageKind::SignInCodeRequest => None,
        // A job for `send-email`, never mailed.
        MessageKind::Erasure => None,
        // Published on the event bus, never mailed.
        MessageKind::Event => None,
        // Expanded into per-contact invitation emails, never mailed itself.
        MessageKind::InvitationFanout => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::outbox::MailSecret;
    use crate::domain::time::Timestamp;

    #[test]
    fn the_invitation_email_carries_the_code_and_a_link_from_the_base_url() {
        let settings = Settings::from_lookup(|name| match name {
            "PORTAL_BASE_URL" => Some("https://portal.example.com/".into()),
            n if n.ends_with("_TABLE") => Some("t".into()),
            _ => None,
        })
        .unwrap();
        let mut message = OutboxMessage::new(
            MessageKind::Invitation,
            "ada@example.com",
            "Ada",
            Some(MailSecret::new("ABCD-EFGH".into())),
            Timestamp::from_secs(0),
        );
        message.valid_until = Some(Timestamp::from_secs(1_800_000_000));
        let email = render(&settings, &message).unwrap();
        assert_eq!(email.to, "ada@example.com");
        assert_eq!(email.subject, "You're invited to the customer portal");
        assert!(email.text.contains("Hello Ada,"));
        assert!(email.text.contains("https://portal.example.com/redeem?code=ABCD-EFGH"), "{}", email.text);
        assert!(email.text.contains("2027-01-15 08:00 UTC"));
        message.secret = None;
        assert_eq!(render(&settings, &message), None, "a sent message no longer holds its code");
    }
}
