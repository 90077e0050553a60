//! The emails the portal sends: subject and sender from settings, text from templates kept with
//! the code (`shared/templates/email/`), links built from the configured base URL only.

use askama::Template;

use crate::config::Settings;
use crate::domain::outbox::{MessageKind, OutboxMessage};
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

/// The email for an outbox message; `None` when the message no longer holds what it must carry.
pub fn render(settings: &Settings, message: &OutboxMessage) -> Option<OutgoingEmail> {
    match message.kind {
        MessageKind::Invitation => {
            let code = message.secret.as_ref()?.expose();
            let link = format!("{}/redeem?code={code}", settings.base_url);
            let redeem_page = format!("{}/redeem", settings.base_url);
            let expires = message.valid_until.map(format_utc).unwrap_or_else(|| "its expiry date".into());
            let text = InvitationEmail { first_name: &message.first_name, code, link: &link, redeem_page: &redeem_page, expires: &expires }
                .render()
                .ok()?;
            Some(OutgoingEmail { to: message.to.clone(), subject: settings.invitation_email_subject.clone(), text })
        }
    }
}

/// `2026-12-04 09:30 UTC` from seconds since the epoch (civil-from-days, proleptic Gregorian).
pub fn format_utc(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let minutes_of_day = secs.rem_euclid(86_400) / 60;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02} UTC", minutes_of_day / 60, minutes_of_day % 60)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::outbox::MailSecret;

    #[test]
    fn formats_utc_dates() {
        assert_eq!(format_utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(format_utc(951_782_400), "2000-02-29 00:00 UTC");
        assert_eq!(format_utc(1_800_000_000), "2027-01-15 08:00 UTC");
    }

    #[test]
    fn the_invitation_email_carries_the_code_and_a_link_from_the_base_url() {
        let settings = Settings::from_lookup(|name| match name {
            "PORTAL_BASE_URL" => Some("https://portal.example.com/".into()),
            n if n.ends_with("_TABLE") => Some("t".into()),
            _ => None,
        })
        .unwrap();
        let mut message = OutboxMessage::new(MessageKind::Invitation, "ada@example.com", "Ada", Some(MailSecret::new("ABCD-EFGH".into())), 0);
        message.valid_until = Some(1_800_000_000);
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
