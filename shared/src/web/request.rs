//! Reading requests: cookies, the origin check, and the fields of a submission (form or JSON, with
//! the same field names).

use std::collections::{BTreeMap, HashMap};

use axum::http::HeaderMap;

use crate::config::Settings;
use crate::error::PortalError;

/// The value of cookie `name`, if the request carries it.
pub fn cookie<'r>(headers: &'r HeaderMap, name: &str) -> Option<&'r str> {
    headers
        .get_all("cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// The first value of parameter `name` in a query string.
pub fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    let query = query?;
    serde_urlencoded::from_str::<Vec<(String, String)>>(query)
        .ok()?
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

/// A browser sends `Origin` on every cross-site POST: one that is not ours is refused, and so is a
/// request the browser marks cross-site.
pub fn check_origin(headers: &HeaderMap, settings: &Settings) -> Result<(), PortalError> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(origin) = header("origin")
        && origin != settings.base_origin
    {
        return Err(PortalError::Forbidden("foreign origin"));
    }
    if header("sec-fetch-site") == Some("cross-site") {
        return Err(PortalError::Forbidden("cross-site request"));
    }
    Ok(())
}

pub fn session_cookie_name(settings: &Settings) -> &'static str {
    if settings.secure_cookies { "__Host-portal_session" } else { "portal_session" }
}

pub fn device_cookie_name(settings: &Settings) -> &'static str {
    if settings.secure_cookies { "__Host-portal_device" } else { "portal_device" }
}

pub fn pending_sign_in_cookie_name(settings: &Settings) -> &'static str {
    if settings.secure_cookies { "__Host-portal_pending" } else { "portal_pending" }
}

pub fn csrf_cookie_name(settings: &Settings) -> &'static str {
    if settings.secure_cookies { "__Host-portal_csrf" } else { "portal_csrf" }
}

#[derive(Debug, Clone)]
enum Value {
    Text(String),
    Bool(bool),
    Integer(i64),
    List(Vec<String>),
    Other(&'static str),
}

impl Value {
    fn as_text(&self) -> Option<&str> {
        match self {
            Value::Text(t) => Some(t),
            _ => None,
        }
    }
}

/// The fields of a submission, form or JSON alike, with the problems found so far per field.
#[derive(Debug, Default)]
pub struct Fields {
    values: HashMap<String, Value>,
    errors: BTreeMap<String, String>,
    /// The JSON objects sent (a WebAuthn credential), whole: see [`Fields::object`].
    objects: HashMap<String, serde_json::Value>,
    /// Every value of a form field sent more than once (a multi-select, checkboxes), in order:
    /// see [`Fields::values_of`].
    repeated: HashMap<String, Vec<String>>,
}

impl Fields {
    pub fn from_json(text: &str) -> Result<Fields, PortalError> {
        if text.trim().is_empty() {
            return Ok(Fields::default());
        }
        let parsed: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| PortalError::validation(format!("The body is not valid JSON ({e}).")))?;
        let serde_json::Value::Object(object) = parsed else {
            return Err(PortalError::validation("The body must be a JSON object."));
        };
        let objects =
            object.iter().filter(|(_, value)| value.is_object()).map(|(k, v)| (k.clone(), v.clone())).collect();
        let values = object
            .into_iter()
            .filter_map(|(name, value)| {
                let value = match value {
                    serde_json::Value::Null => return None,
                    serde_json::Value::String(s) => Value::Text(s),
                    serde_json::Value::Bool(b) => Value::Bool(b),
                    serde_json::Value::Number(n) => {
                        n.as_i64().map(Value::Integer).unwrap_or(Value::Other("a fraction"))
                    }
                    serde_json::Value::Array(items) => items
                        .into_iter()
                        .map(|item| match item {
                            serde_json::Value::String(s) => Some(s),
                            _ => None,
                        })
                        .collect::<Option<Vec<_>>>()
                        .map(Value::List)
                        .unwrap_or(Value::Other("a list of non-text values")),
                    serde_json::Value::Object(_) => Value::Other("an object"),
                };
                Some((name, value))
            })
            .collect();
        Ok(Fields { values, errors: BTreeMap::new(), objects, repeated: HashMap::new() })
    }

    pub fn from_form(text: &str) -> Result<Fields, PortalError> {
        let pairs: Vec<(String, String)> =
            serde_urlencoded::from_str(text).map_err(|_| PortalError::validation("The form data is malformed."))?;
        let mut values = HashMap::new();
        let mut all: HashMap<String, Vec<String>> = HashMap::new();
        for (name, value) in pairs {
            all.entry(name.clone()).or_default().push(value.clone());
            values.entry(name).or_insert(Value::Text(value));
        }
        let repeated = all.into_iter().filter(|(_, sent)| sent.len() > 1).collect();
        Ok(Fields { values, errors: BTreeMap::new(), objects: HashMap::new(), repeated })
    }

    /// A digest of the fields as sent, names and values in name order (the CSRF token aside), every
    /// value of a repeated form field included: the same request sent again has the same digest,
    /// whatever its key order or whitespace, and a form that repeats a field with other values
    /// (another set of `contact_ids`) has another.
    pub fn digest(&self) -> String {
        let sent: BTreeMap<&String, &Value> = self.values.iter().filter(|(name, _)| *name != "csrf_token").collect();
        let repeated: BTreeMap<&String, &Vec<String>> = self.repeated.iter().collect();
        crate::domain::secret::digest(&format!("{sent:?}{repeated:?}"))
    }

    /// The fields that re-authenticate a change: `current_password` and `second_factor_code`
    /// (either may be missing: the use case names what the account needs).
    pub fn reauthentication(&mut self) -> crate::usecases::reauth::Reauthentication {
        let current_password =
            self.text("current_password").filter(|p| !p.is_empty()).map(crate::domain::password::Password::new);
        let second_factor_code = self.text("second_factor_code").filter(|c| !c.trim().is_empty());
        let email_code = self.text("email_code").filter(|c| !c.trim().is_empty());
        crate::usecases::reauth::Reauthentication { current_password, second_factor_code, email_code }
    }

    /// A text field as sent (absent or null is `None`); another type is a problem of that field.
    pub fn text(&mut self, name: &str) -> Option<String> {
        match self.values.get(name)? {
            Value::Text(text) => Some(text.clone()),
            Value::Bool(_) => self.reject(name, "must be text, not true/false"),
            Value::Integer(_) => self.reject(name, "must be text, not a number"),
            Value::List(_) => self.reject(name, "must be text, not a list"),
            Value::Other(kind) => self.reject(name, format!("must be text, not {kind}")),
        }
    }

    /// The names of the fields sent (the CSRF token aside).
    pub fn names(&self) -> Vec<String> {
        self.values.keys().filter(|name| *name != "csrf_token").cloned().collect()
    }

    /// A setting's value as sent, written as its environment variable would hold it: text as it
    /// is, true/false, a whole number, a list joined by commas. `Some(None)` for a blank value (back
    /// to the environment's or the default); `None` when it was not sent.
    pub fn setting(&mut self, name: &str) -> Option<Option<String>> {
        let value = match self.values.get(name)? {
            Value::Text(text) => text.trim().to_string(),
            Value::Bool(flag) => flag.to_string(),
            Value::Integer(n) => n.to_string(),
            Value::List(items) => items.join(","),
            Value::Other(kind) => {
                return self.reject(name, format!("must be text, true/false or a number, not {kind}"));
            }
        };
        Some((!value.is_empty()).then_some(value))
    }

    /// An optional whole number within `range`: a JSON integer, or digits in a form.
    pub fn optional_integer(&mut self, name: &str, range: std::ops::RangeInclusive<i64>) -> Option<i64> {
        let value = match self.values.get(name)? {
            Value::Integer(n) => Some(*n),
            Value::Text(t) if t.trim().is_empty() => return None,
            Value::Text(t) => t.trim().parse().ok(),
            _ => None,
        };
        match value {
            Some(n) if range.contains(&n) => Some(n),
            _ => self.reject(name, format!("must be a whole number from {} to {}", range.start(), range.end())),
        }
    }

    /// An optional list of text: a JSON list of strings, or comma-separated text in a form.
    pub fn optional_list(&mut self, name: &str) -> Vec<String> {
        let items = match self.values.get(name) {
            None => return Vec::new(),
            Some(Value::List(items)) => items.clone(),
            Some(Value::Text(text)) => text.split(',').map(str::to_string).collect(),
            Some(_) => {
                self.reject::<()>(name, "must be a list of text");
                return Vec::new();
            }
        };
        items.into_iter().map(|i| i.trim().to_string()).filter(|i| !i.is_empty()).collect()
    }

    /// Every value of a field that may repeat: a JSON list of strings, or a form field sent once
    /// or more (each value as sent, trimmed, blanks left out). `None` when it was not sent.
    pub fn values_of(&mut self, name: &str) -> Option<Vec<String>> {
        let sent = match (self.repeated.get(name), self.values.get(name)?) {
            (Some(all), _) => all.clone(),
            (None, Value::List(items)) => items.clone(),
            (None, Value::Text(text)) => vec![text.clone()],
            (None, _) => return self.reject(name, "must be a list of text"),
        };
        Some(sent.into_iter().map(|v| v.trim().to_string()).filter(|v| !v.is_empty()).collect())
    }

    /// A JSON object field that must be present (only JSON bodies carry objects), as sent.
    pub fn required_object(&mut self, name: &str) -> Option<serde_json::Value> {
        if let Some(object) = self.objects.get(name) {
            return Some(object.clone());
        }
        match self.values.get(name) {
            None => self.reject(name, "is required"),
            Some(_) => self.reject(name, "must be a JSON object"),
        }
    }

    /// A text field that must be present and not blank.
    pub fn required(&mut self, name: &str) -> Option<String> {
        let text = self.text(name);
        if self.errors.contains_key(name) {
            return None;
        }
        match text {
            Some(text) if !text.trim().is_empty() => Some(text),
            _ => self.reject(name, "is required"),
        }
    }

    /// A required field parsed by `parse`, whose error becomes the field's problem.
    pub fn required_parsed<T, E: ToString>(
        &mut self,
        name: &str,
        parse: impl FnOnce(&str) -> Result<T, E>,
    ) -> Option<T> {
        let raw = self.required(name)?;
        self.check(name, parse(&raw))
    }

    /// An optional field (absent or blank means `None`) parsed by `parse`.
    pub fn optional_parsed<T, E: ToString>(
        &mut self,
        name: &str,
        parse: impl FnOnce(&str) -> Result<T, E>,
    ) -> Option<T> {
        let raw = self.text(name).filter(|t| !t.trim().is_empty())?;
        self.check(name, parse(&raw))
    }

    /// A yes/no field: JSON `true`, or a ticked checkbox (`on`, `true`, `1`).
    pub fn flag(&mut self, name: &str) -> bool {
        match self.values.get(name) {
            None => false,
            Some(Value::Bool(b)) => *b,
            Some(Value::Text(t)) => matches!(t.as_str(), "on" | "true" | "1" | "yes"),
            Some(_) => {
                self.reject::<()>(name, "must be true or false");
                false
            }
        }
    }

    pub fn check<T, E: ToString>(&mut self, name: &str, result: Result<T, E>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(reason) => self.reject(name, reason.to_string()),
        }
    }

    /// Records a problem with a field (the first one found stays).
    pub fn reject<T>(&mut self, name: &str, reason: impl Into<String>) -> Option<T> {
        self.errors.entry(name.to_string()).or_insert_with(|| reason.into());
        None
    }

    /// The submitted text of the anti-CSRF field, if any.
    pub fn csrf_token(&self) -> Option<&str> {
        self.values.get("csrf_token").and_then(Value::as_text)
    }

    /// The parsed input once every field read was fine: `build` assembles it from the parts
    /// (each `None` part has recorded its problem), else the validation error naming each field.
    pub fn done<T>(&self, build: impl FnOnce() -> Option<T>) -> Result<T, PortalError> {
        self.finish()?;
        build().ok_or_else(|| PortalError::validation("Some fields need attention."))
    }

    /// `Ok` when every field read so far was fine, else the validation error naming each field.
    pub fn finish(&self) -> Result<(), PortalError> {
        if self.errors.is_empty() {
            return Ok(());
        }
        Err(PortalError::Validation { message: "Some fields need attention.".into(), fields: self.errors.clone() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_fields_report_wrong_types_per_field() {
        let mut fields =
            Fields::from_json(r#"{"email": 5, "first_name": ["a"], "ok": "yes", "gone": null, "flag": true}"#).unwrap();
        assert_eq!(fields.required("email"), None);
        assert_eq!(fields.text("first_name"), None);
        assert_eq!(fields.required("gone"), None);
        assert_eq!(fields.text("ok").as_deref(), Some("yes"));
        assert!(fields.flag("flag"));
        let PortalError::Validation { fields: errors, .. } = fields.finish().unwrap_err() else { panic!() };
        assert_eq!(errors["email"], "must be text, not a number");
        assert_eq!(errors["first_name"], "must be text, not a list");
        assert_eq!(errors["gone"], "is required");
    }

    #[test]
    fn integers_and_lists_read_from_json_or_forms() {
        let mut json =
            Fields::from_json(r#"{"n": 3, "big": 99999, "frac": 1.5, "roles": ["A", " B "], "bad": [1]}"#).unwrap();
        assert_eq!(json.optional_integer("n", 1..=10), Some(3));
        assert_eq!(json.optional_integer("big", 1..=10), None);
        assert_eq!(json.optional_integer("frac", 1..=10), None);
        assert_eq!(json.optional_integer("absent", 1..=10), None);
        assert_eq!(json.optional_list("roles"), ["A", "B"]);
        assert!(json.optional_list("bad").is_empty());
        let PortalError::Validation { fields: errors, .. } = json.finish().unwrap_err() else { panic!() };
        assert_eq!(errors.keys().collect::<Vec<_>>(), ["bad", "big", "frac"]);
        let mut form = Fields::from_form("n=4&roles=Customers%2C+Partners&empty=").unwrap();
        assert_eq!(form.optional_integer("n", 1..=10), Some(4));
        assert_eq!(form.optional_integer("empty", 1..=10), None);
        assert_eq!(form.optional_list("roles"), ["Customers", "Partners"]);
        assert!(form.finish().is_ok());
    }

    #[test]
    fn malformed_or_non_object_json_is_a_validation_error() {
        for body in ["{", "[1,2]", "\"text\"", "{\"a\":1,}"] {
            let err = Fields::from_json(body).unwrap_err();
            assert_eq!(err.code(), "validation_failed", "{body}");
        }
    }

    #[test]
    fn form_fields_are_text_and_the_first_value_wins() {
        let mut fields = Fields::from_form("email=ada%40example.com&email=eve%40example.com&remember=on").unwrap();
        assert_eq!(fields.text("email").as_deref(), Some("ada@example.com"));
        assert!(fields.flag("remember"));
        assert!(!fields.flag("absent"));
    }
}
