//! Request bodies and fields read the way Django REST Framework reads them:
//! the same acceptance rules and the same messages.

use std::collections::BTreeMap;

use axum::body::Body;
use axum::extract::{FromRequest, Request};
use axum::http::{StatusCode, header};
use serde_json::{Map, Value};

use crate::error::ApiError;

/// The largest request body accepted.
pub const BODY_LIMIT: usize = 64 * 1024;

/// A JSON object body. An empty body reads as `{}` (as DRF does); a body in
/// another media type is 415, over [`BODY_LIMIT`] 413, not JSON 400.
pub struct JsonObject(pub Map<String, Value>);

impl<S: Send + Sync> FromRequest<S> for JsonObject {
    type Rejection = ApiError;

    async fn from_request(req: Request, _: &S) -> Result<Self, ApiError> {
        let too_large = || {
            ApiError::detail(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("Request body too large: the limit is {BODY_LIMIT} bytes."),
            )
        };
        let media_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        let Some(bytes) = read_limited(req.into_body()).await else {
            return Err(too_large());
        };
        // DRF parses nothing when there is no body or no media type.
        let Some(media_type) = media_type.filter(|_| !bytes.is_empty()) else {
            return Ok(Self(Map::new()));
        };
        if !is_json(&media_type) {
            return Err(ApiError::detail(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("Unsupported media type \"{media_type}\" in request."),
            ));
        }
        let value: Value = serde_json::from_slice(&bytes).map_err(|e| {
            ApiError::detail(StatusCode::BAD_REQUEST, format!("JSON parse error - {e}"))
        })?;
        match value {
            Value::Object(map) => Ok(Self(map)),
            Value::Null => Err(ApiError::field("non_field_errors", "No data provided")),
            other => Err(ApiError::field(
                "non_field_errors",
                format!(
                    "Invalid data. Expected a dictionary, but got {}.",
                    python_type(&other)
                ),
            )),
        }
    }
}

/// Most of an oversized body read (and dropped) before answering 413, so a
/// client still sending it reads the answer instead of a reset connection.
const DRAIN_LIMIT: usize = 8 * 1024 * 1024;

/// The body if it is at most [`BODY_LIMIT`] bytes; `None` (after draining up
/// to [`DRAIN_LIMIT`]) if it is larger.
async fn read_limited(body: Body) -> Option<axum::body::Bytes> {
    use futures_util::StreamExt;
    let mut stream = body.into_data_stream();
    let mut buf = Vec::new();
    let mut seen = 0usize;
    while let Some(Ok(chunk)) = stream.next().await {
        seen += chunk.len();
        if seen > DRAIN_LIMIT {
            return None;
        }
        if seen <= BODY_LIMIT {
            buf.extend_from_slice(&chunk);
        }
    }
    (seen <= BODY_LIMIT).then(|| buf.into())
}

fn is_json(media_type: &str) -> bool {
    let essence = media_type.split(';').next().unwrap_or_default().trim();
    let essence = essence.to_ascii_lowercase();
    essence == "application/json" || (essence.len() > 5 && essence.ends_with("+json"))
}

/// The name Python gives a JSON value's type, as DRF's messages show it.
fn python_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "NoneType",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float",
        Value::Number(_) => "int",
        Value::String(_) => "str",
        Value::Array(_) => "list",
        Value::Object(_) => "dict",
    }
}

/// Reads fields of a JSON object, collecting every error before answering.
pub struct Fields<'a> {
    map: &'a Map<String, Value>,
    errors: BTreeMap<String, Vec<String>>,
}

impl<'a> Fields<'a> {
    /// Reads `map`.
    pub fn new(map: &'a Map<String, Value>) -> Self {
        Self {
            map,
            errors: BTreeMap::new(),
        }
    }

    fn fail<T>(&mut self, name: &str, message: impl Into<String>) -> Option<T> {
        self.errors
            .entry(name.to_owned())
            .or_default()
            .push(message.into());
        None
    }

    fn present(&mut self, name: &str) -> Option<&'a Value> {
        match self.map.get(name) {
            None => self.fail(name, "This field is required."),
            Some(Value::Null) => self.fail(name, "This field may not be null."),
            Some(v) => Some(v),
        }
    }

    /// A required `CharField`: strings, and numbers as their text.
    /// (Blankness and length are the service's to judge.)
    pub fn string(&mut self, name: &str) -> Option<String> {
        match self.present(name)? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => self.fail(name, "Not a valid string."),
        }
    }

    /// An optional `CharField`: absent or `null` is `Some(None)`; `None`
    /// when it is there but not a string (the error is recorded).
    pub fn optional_string(&mut self, name: &str) -> Option<Option<String>> {
        match self.map.get(name) {
            None | Some(Value::Null) => Some(None),
            Some(Value::String(s)) => Some(Some(s.clone())),
            Some(Value::Number(n)) => Some(Some(n.to_string())),
            Some(_) => self.fail(name, "Not a valid string."),
        }
    }

    /// A required `IntegerField`: integers, integral floats, and strings of them.
    pub fn integer(&mut self, name: &str) -> Option<i64> {
        let value = self.present(name)?;
        let parsed = match value {
            Value::Number(n) => integral(n),
            Value::String(s) if s.len() > 1000 => {
                return self.fail(name, "String value too large.");
            }
            Value::String(s) => parse_integer_text(s),
            _ => None,
        };
        match parsed {
            Some(i) => Some(i),
            None => self.fail(name, "A valid integer is required."),
        }
    }

    /// A required `PrimaryKeyRelatedField`: an integer id, or a string of one.
    pub fn primary_key(&mut self, name: &str) -> Option<i64> {
        let value = self.present(name)?;
        let parsed = match value {
            Value::Number(n) => integral(n),
            Value::String(s) => parse_integer_text(s),
            _ => None,
        };
        match (parsed, value) {
            (Some(id), _) => Some(id),
            // A number out of range names no object.
            (None, Value::Number(n)) if n.as_f64().is_some_and(|f| f.fract() == 0.0) => {
                self.fail(name, format!("Invalid pk \"{n}\" - object does not exist."))
            }
            (None, v) => self.fail(
                name,
                format!(
                    "Incorrect type. Expected pk value, received {}.",
                    python_type(v)
                ),
            ),
        }
    }

    /// Every value read, or every error found.
    pub fn finish<T>(self, values: Option<T>) -> Result<T, ApiError> {
        match values {
            Some(v) if self.errors.is_empty() => Ok(v),
            _ => Err(ApiError::Fields(self.errors)),
        }
    }
}

/// A JSON number that is a whole `i64` (`5` or `5.0`).
fn integral(n: &serde_json::Number) -> Option<i64> {
    n.as_i64().or_else(|| {
        n.as_f64()
            .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
            .map(|f| f as i64)
    })
}

/// Python's `int()` on text, after DRF strips a trailing `.0`.
fn parse_integer_text(s: &str) -> Option<i64> {
    let t = s.trim();
    let t = match t.split_once('.') {
        Some((int, frac)) if frac.chars().all(|c| c == '0') => int,
        Some(_) => return None,
        None => t,
    };
    t.replace('_', "")
        .parse()
        .ok()
        .filter(|_| !t.starts_with('_') && !t.ends_with('_'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn read(v: Value) -> Fields<'static> {
        let Value::Object(m) = v else { panic!() };
        Fields::new(Box::leak(Box::new(m)))
    }

    #[test]
    fn integers_read_like_drf() {
        let mut f = read(
            json!({"a": 5, "b": "7", "c": 5.0, "d": "abc", "e": 5.5, "f": true, "g": null, "h": " 3 ", "i": "4.00"}),
        );
        assert_eq!(f.integer("a"), Some(5));
        assert_eq!(f.integer("b"), Some(7));
        assert_eq!(f.integer("c"), Some(5));
        assert_eq!(f.integer("d"), None);
        assert_eq!(f.integer("e"), None);
        assert_eq!(f.integer("f"), None);
        assert_eq!(f.integer("g"), None);
        assert_eq!(f.integer("h"), Some(3));
        assert_eq!(f.integer("i"), Some(4));
        assert_eq!(f.integer("missing"), None);
        assert_eq!(f.errors["d"], ["A valid integer is required."]);
        assert_eq!(f.errors["g"], ["This field may not be null."]);
        assert_eq!(f.errors["missing"], ["This field is required."]);
    }

    #[test]
    fn primary_keys_name_the_received_type() {
        let v = r#"{"s": "abc", "b": false, "l": [], "ok": "6", "big": 99999999999999999999}"#;
        let mut f = read(serde_json::from_str(v).unwrap());
        assert_eq!(f.primary_key("ok"), Some(6));
        assert_eq!(f.primary_key("s"), None);
        assert_eq!(f.primary_key("b"), None);
        assert_eq!(f.primary_key("l"), None);
        assert_eq!(f.primary_key("big"), None);
        assert_eq!(
            f.errors["s"],
            ["Incorrect type. Expected pk value, received str."]
        );
        assert_eq!(
            f.errors["b"],
            ["Incorrect type. Expected pk value, received bool."]
        );
        assert_eq!(
            f.errors["l"],
            ["Incorrect type. Expected pk value, received list."]
        );
        assert!(f.errors["big"][0].starts_with("Invalid pk"));
    }

    #[test]
    fn strings_accept_numbers_but_not_structures() {
        let mut f = read(json!({"a": "x", "n": 12, "o": {}, "t": true}));
        assert_eq!(f.string("a").as_deref(), Some("x"));
        assert_eq!(f.string("n").as_deref(), Some("12"));
        assert_eq!(f.string("o"), None);
        assert_eq!(f.string("t"), None);
        assert_eq!(f.errors["o"], ["Not a valid string."]);
    }

    #[test]
    fn json_media_types() {
        assert!(is_json("application/json"));
        assert!(is_json("Application/JSON; charset=utf-8"));
        assert!(is_json("application/vnd.api+json"));
        assert!(!is_json("text/plain"));
        assert!(!is_json("json"));
        // Not ASCII (a header may carry obs-text): no panic, just not JSON.
        assert!(!is_json("application/\u{fffd}\u{fffd}son"));
        assert!(!is_json("\u{e9}\u{e9}\u{e9}"));
    }
}
