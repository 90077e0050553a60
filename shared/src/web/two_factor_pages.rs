//! The pages of two-factor authentication (askama, escaped by default; the QR code is SVG made
//! here from the otpauth URI, so it is markup of ours).

use askama::Template;

use super::pages::{FormErrors, ViewerSummary};

#[derive(Template)]
#[template(path = "second_factor.html")]
pub struct SecondFactorPage<'a> {
    pub viewer: Option<ViewerSummary>,
    pub csrf_token: &'a str,
    pub totp: bool,
    pub email: bool,
    pub recovery: bool,
    /// A code was just asked for by email.
    pub sent: bool,
    pub errors: FormErrors,
}

#[derive(Template)]
#[template(path = "two_factor.html")]
pub struct TwoFactorPage<'a> {
    pub viewer: Option<ViewerSummary>,
    pub csrf_token: &'a str,
    pub totp: bool,
    pub email: bool,
    pub recovery_codes_left: usize,
    /// The contact's role requires a second factor and they have none.
    pub setup_required: bool,
    pub errors: FormErrors,
}

#[derive(Template)]
#[template(path = "totp_setup.html")]
pub struct TotpSetUpPage<'a> {
    pub viewer: Option<ViewerSummary>,
    pub csrf_token: &'a str,
    /// The new secret (base32) and its QR code; `None` when the confirm form is shown again.
    pub secret: Option<&'a str>,
    pub qr_svg: String,
    pub errors: FormErrors,
}

#[derive(Template)]
#[template(path = "recovery_codes.html")]
pub struct RecoveryCodesPage<'a> {
    pub viewer: Option<ViewerSummary>,
    pub csrf_token: &'a str,
    pub title: &'a str,
    pub codes: &'a [String],
}

/// The QR code of `text` as an SVG element (empty when the text cannot be encoded).
pub fn qr_svg(text: &str) -> String {
    match qrcode::QrCode::new(text.as_bytes()) {
        Ok(code) => code.render::<qrcode::render::svg::Color>().min_dimensions(200, 200).build(),
        Err(_) => String::new(),
    }
}
