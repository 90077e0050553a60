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
    /// A passkey of the account finishes the sign-in (after an emailed code).
    pub passkey: bool,
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

/// Modules of white around a QR code (its "quiet zone", 4 in the standard).
const QUIET_ZONE: usize = 4;

/// The QR code of `text` as an SVG element (empty when the text cannot be encoded): one path
/// drawing each row's runs of dark modules as strokes, a few kilobytes where a rectangle per
/// module (the `qrcode` crate's own SVG) takes about twenty.
pub fn qr_svg(text: &str) -> String {
    let Ok(code) = qrcode::QrCode::new(text.as_bytes()) else { return String::new() };
    let width = code.width();
    let colors = code.to_colors();
    let size = width + 2 * QUIET_ZONE;
    let mut path = String::new();
    for (y, row) in colors.chunks(width).enumerate() {
        let mut x = 0;
        // Each row starts at its left edge; every run is a relative move and a horizontal line.
        path.push_str(&format!("M{} {}.5", QUIET_ZONE, y + QUIET_ZONE));
        let mut pen = 0;
        while x < width {
            if row[x] == qrcode::Color::Dark {
                let start = x;
                while x < width && row[x] == qrcode::Color::Dark {
                    x += 1;
                }
                path.push_str(&format!("m{} 0h{}", start - pen, x - start));
                pen = x;
            } else {
                x += 1;
            }
        }
    }
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"200\" height=\"200\" viewBox=\"0 0 {size} {size}\" \
         shape-rendering=\"crispEdges\" role=\"img\" aria-label=\"QR code of the authenticator key\">\
         <rect width=\"{size}\" height=\"{size}\" fill=\"#fff\"/><path stroke=\"#000\" d=\"{path}\"/></svg>"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_qr_code_draws_every_dark_module_and_stays_small() {
        let text = "otpauth://totp/Customer%20portal:ada%40example.com?secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP&issuer=Customer%20portal";
        let svg = qr_svg(text);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"), "{svg}");
        assert!(svg.len() < 8_000, "{} bytes", svg.len());
        // Redraw the path's strokes and compare with the code's modules.
        let code = qrcode::QrCode::new(text.as_bytes()).unwrap();
        let width = code.width();
        let mut drawn = vec![false; width * width];
        let d = svg.split(" d=\"").nth(1).unwrap().split('"').next().unwrap();
        for row in d.split('M').filter(|r| !r.is_empty()) {
            let mut parts = row.split('m');
            let start = parts.next().unwrap();
            let y: f64 = start.split(' ').nth(1).unwrap().parse().unwrap();
            let y = y as usize - QUIET_ZONE;
            let mut pen = 0;
            for run in parts {
                let (gap, len) = run.split_once(" 0h").unwrap();
                let (gap, len): (usize, usize) = (gap.parse().unwrap(), len.parse().unwrap());
                (pen + gap..pen + gap + len).for_each(|x| drawn[y * width + x] = true);
                pen += gap + len;
            }
        }
        let dark: Vec<bool> = code.to_colors().iter().map(|c| *c == qrcode::Color::Dark).collect();
        assert_eq!(drawn, dark);
    }
}
