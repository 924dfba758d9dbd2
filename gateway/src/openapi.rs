//! The OpenAPI document, exactly true. The routes declare their operations
//! (utoipa); this module adds what every operation shares, by rule, and the
//! limits of each field the API accepts:
//!
//! - every status an operation can answer: 400 as field errors *or*
//!   `detail` (malformed JSON), 401 where a token is needed, 405, 413 and
//!   415 where there is a body, 429 where the per-client limit applies,
//!   503 and 504 (a service down or late), 304 for conditional GETs;
//! - response headers: `ETag` on GETs, `Retry-After` on 429 and 503,
//!   `RateLimit`/`RateLimit-Policy` where the limit applies;
//! - each request field as the gateway reads it (DRF's coercions: a
//!   `CharField` takes a number, an `IntegerField` a string of digits) with
//!   the service's limits (length, pattern, range);
//! - `limit`/`offset` as any text: DRF's pagination ignores a value that is
//!   not a positive integer rather than refuse it; `movie` (the ratings
//!   filter) as an integer or nothing.
//!
//! A rule naming a field or operation that is not declared panics when the
//! document is built, so the tests catch a rename.

use serde_json::{Value, json};

use crate::routes::RoutePolicies;

/// Characters a title or director may not hold after trimming: control
/// characters (Unicode Cc) and the invisible ones that disguise text (see
/// catalog-service's `Text`).
const REFUSED_IN_TEXT: &str =
    r"\x00-\x1f\x7f-\x9f\u061c\u200b\u200e\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff";

/// A DRF `CharField`: a string, or a number (taken as its text).
fn char_field(string: Value) -> Value {
    json!({"oneOf": [string, {"type": "number"}]})
}

/// A title or director: 1–200 characters once surrounding white space is
/// trimmed, none of them refused.
fn text() -> Value {
    let d = REFUSED_IN_TEXT;
    char_field(json!({
        "type": "string",
        "pattern": format!(r"^\s*[^\s{d}](?:[^{d}]{{0,198}}[^\s{d}])?\s*$"),
        "examples": ["Transformer"],
    }))
}

/// A DRF `IntegerField` of `minimum..=maximum` (a string of such an
/// integer is accepted too).
fn integer(pattern: &str, range: Option<(i64, i64)>, example: i64) -> Value {
    let mut number = json!({"type": "integer", "examples": [example]});
    if let Some((min, max)) = range {
        number["minimum"] = json!(min);
        number["maximum"] = json!(max);
    }
    json!({"oneOf": [number, {"type": "string", "pattern": pattern}]})
}

/// The limits of each request field, by schema and property.
fn fields() -> Vec<(&'static str, &'static str, Value)> {
    // Letters and numbers of any script (Python's `\w` without `_`).
    let alnum = r"[^\W_]";
    let label = format!(r"{alnum}(?:(?:{alnum}|-){{0,61}}{alnum})?");
    let atom = r"[\w!#$%&'*+/=?^`{|}~-]+";
    let email = format!(r"^(?=.{{1,254}}$){atom}(?:\.{atom})*@(?:{label}\.)+(?![0-9]+$){label}$");
    vec![
        (
            "RegisterIn",
            "username",
            char_field(json!({
                "type": "string",
                "pattern": r"^[\w.@+-]{1,150}$",
                "examples": ["hp1"],
            })),
        ),
        (
            "RegisterIn",
            "email",
            json!({"type": "string", "pattern": email, "examples": ["rit@gmail.com"]}),
        ),
        (
            "RegisterIn",
            "password",
            char_field(json!({
                "type": "string", "minLength": 8, "maxLength": 1024,
                "examples": ["s3cret-pass"],
            })),
        ),
        (
            "LoginIn",
            "username",
            char_field(json!({
                "type": "string", "minLength": 1, "maxLength": 150, "examples": ["hp1"],
            })),
        ),
        (
            "LoginIn",
            "password",
            char_field(json!({
                "type": "string", "minLength": 1, "maxLength": 1024,
                "examples": ["s3cret-pass"],
            })),
        ),
        ("MovieIn", "title", text()),
        ("MovieIn", "director", text()),
        (
            "RatingIn",
            "movie",
            integer(r"^\s*[+-]?[0-9_]*[0-9][0-9_]*(\.0*)?\s*$", None, 1),
        ),
        (
            "RatingIn",
            "rating",
            integer(r"^\s*\+?[0_]*[1-5]_*(\.0*)?\s*$", Some((1, 5)), 4),
        ),
    ]
}

fn detail_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Detail"}}},
    })
}

fn header(description: &str) -> Value {
    json!({"description": description, "schema": {"type": "string"}})
}

/// Adds the shared statuses, headers and field limits to `doc` (the
/// document utoipa made from the routes, their policies taken out).
pub fn complete(doc: &mut Value, policies: &RoutePolicies) {
    let schemas = &mut doc["components"]["schemas"];
    for (schema, property, rule) in fields() {
        let field = &mut schemas[schema]["properties"][property];
        assert!(field.is_object(), "{schema}.{property} is not declared");
        let description = field["description"].clone();
        *field = rule;
        field["description"] = description;
    }
    schemas["BadRequest"] = json!({
        "description": "A 400: field errors, or `detail` when the body is not JSON at all.",
        "oneOf": [
            {"$ref": "#/components/schemas/FieldErrors"},
            {"$ref": "#/components/schemas/Detail"},
        ],
    });

    let paths = doc["paths"]
        .as_object_mut()
        .expect("the document has paths");
    for (path, item) in paths.iter_mut() {
        let item = item.as_object_mut().expect("a path item is an object");
        for (method, op) in item.iter_mut() {
            let secured = op.get("security").is_some();
            let has_body = op.get("requestBody").is_some();
            let policy = policies.get(
                &axum::http::Method::from_bytes(method.to_ascii_uppercase().as_bytes())
                    .expect("an OpenAPI method is an HTTP method"),
                path,
            );
            let responses = op["responses"].as_object_mut().expect("responses");
            if has_body || responses.contains_key("400") {
                let description = responses
                    .get("400")
                    .and_then(|r| r["description"].as_str())
                    .unwrap_or("Invalid request")
                    .to_owned();
                responses.insert(
                    "400".into(),
                    json!({
                        "description": description,
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/BadRequest"}}},
                    }),
                );
            }
            let mut add = |status: &str, response: Value| {
                responses.entry(status.to_owned()).or_insert(response);
            };
            if secured {
                add(
                    "401",
                    detail_response("Missing or invalid token (`WWW-Authenticate: Token`)"),
                );
            }
            add("405", detail_response("Method not allowed (see `Allow`)"));
            if has_body {
                add("413", detail_response("Body over 64 KiB"));
                add("415", detail_response("Body not sent as JSON"));
            }
            let mut unavailable = detail_response("A service is down or overloaded");
            unavailable["headers"] = json!({"Retry-After": header("Seconds to wait")});
            add("503", unavailable);
            add("504", detail_response("A service did not answer in time"));
            if policy.limited {
                let mut throttled = detail_response("Too many requests; see Retry-After");
                throttled["headers"] = json!({"Retry-After": header("Seconds to wait")});
                add("429", throttled);
                for r in responses.values_mut() {
                    r["headers"]["RateLimit-Policy"] = header(
                        "The per-client limit, a token bucket: q requests at once, filled from empty in w seconds",
                    );
                    r["headers"]["RateLimit"] = header(
                        "r: requests that may be sent now; t: seconds until the bucket is full again",
                    );
                }
            }
            if policy.quota {
                let mut throttled = detail_response(
                    "The caller's write quota is used up (CATALOG_WRITE_QUOTA per window); see Retry-After",
                );
                throttled["headers"] = json!({"Retry-After": header("Seconds to wait")});
                responses.entry("429").or_insert(throttled);
                if let Some(created) = responses.get_mut("201") {
                    created["headers"]["RateLimit-Policy"] = header(
                        "The per-user write quota: q writes in any w seconds (all replicas together)",
                    );
                    created["headers"]["RateLimit"] =
                        header("r: writes left in the window; t: seconds until one more is free");
                }
            }
            if policy.keyed {
                responses.insert(
                    "422".into(),
                    detail_response("The Idempotency-Key was used before with a different request"),
                );
                let key = json!({
                    "name": "Idempotency-Key", "in": "header", "required": false,
                    "description": "Makes a retry of this request give the first answer again \
                        (same status and body) instead of creating twice; scoped to the user \
                        (to the username for a registration). A registration's retry is \
                        answered as a login with its password (the same user, a new token; \
                        under the login throttle), for 24 hours by default",
                    "schema": {
                        "type": "string",
                        // 1–255 visible ASCII characters, optionally quoted.
                        "pattern": r#"^"?[!-~]{1,255}"?$"#,
                        "examples": ["\"8e03978e-40d5-43e8-bc93-6894a57f9324\""],
                    },
                });
                match op.get_mut("parameters").and_then(Value::as_array_mut) {
                    Some(p) => p.push(key),
                    None => op["parameters"] = json!([key]),
                }
                continue;
            }
            if method == "get" {
                if let Some(ok) = responses.get_mut("200") {
                    ok["headers"]["ETag"] = header("Strong tag of this answer");
                }
                responses.insert(
                    "304".into(),
                    json!({
                        "description": "Not modified: `If-None-Match` names the current tag",
                        "headers": {"ETag": header("The current tag")},
                    }),
                );
                let params = op.get_mut("parameters").and_then(Value::as_array_mut);
                let if_none_match = json!({
                    "name": "If-None-Match", "in": "header", "required": false,
                    "description": "Tags of answers the client keeps",
                    "schema": {"type": "string"},
                });
                match params {
                    Some(p) => p.push(if_none_match),
                    None => op["parameters"] = json!([if_none_match]),
                }
            }
            if let Some(params) = op.get_mut("parameters").and_then(Value::as_array_mut) {
                for p in params.iter_mut() {
                    if p["in"] == "query" && p["name"] == "movie" {
                        // django-filter: an empty value filters nothing.
                        p["schema"] = json!({
                            "type": "string",
                            "pattern": r"^\s*([+-]?[0-9]+)?\s*$",
                            "examples": ["1"],
                        });
                        p["description"] =
                            json!("Only this movie's ratings (an integer; empty: all)");
                    }
                    if p["in"] == "query" && (p["name"] == "limit" || p["name"] == "offset") {
                        p["schema"] = json!({"type": "string", "examples": ["10"]});
                        let what = p["description"].as_str().unwrap_or_default().to_owned();
                        p["description"] = json!(format!(
                            "{what}: a positive integer; any other value is ignored (as DRF does)"
                        ));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn document() -> Value {
        let (_, doc) = crate::api();
        let mut doc = serde_json::to_value(&doc).unwrap();
        let policies = RoutePolicies::take(&mut doc);
        complete(&mut doc, &policies);
        doc
    }

    /// Each route declares its policy once, on the route: the limit and the
    /// keyed requests follow it, and the served document does not carry it.
    #[test]
    fn route_policies_are_declared_on_the_routes() {
        let (_, doc) = crate::api();
        let mut doc = serde_json::to_value(&doc).unwrap();
        let policies = RoutePolicies::take(&mut doc);
        let post = axum::http::Method::POST;
        let of = |path: &str| policies.get(&post, path);
        assert!(of("/api/auth/login").limited && !of("/api/auth/login").keyed);
        assert!(of("/api/auth/register").limited && of("/api/auth/register").keyed);
        for keyed in ["/api/auth/movies", "/api/auth/rating"] {
            assert!(of(keyed).keyed && !of(keyed).limited, "{keyed}");
        }
        let get = policies.get(&axum::http::Method::GET, "/api/auth/movies");
        assert_eq!(get, crate::routes::RoutePolicy::default());
        assert!(!doc.to_string().contains(crate::routes::POLICY_EXTENSION));
    }

    #[test]
    fn every_operation_declares_the_shared_statuses_and_every_field_its_limits() {
        let doc = document();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let r = &op["responses"];
                for status in ["405", "503", "504"] {
                    assert!(r[status].is_object(), "{method} {path}: no {status}");
                }
                if op.get("requestBody").is_some() {
                    for status in ["400", "413", "415"] {
                        assert!(r[status].is_object(), "{method} {path}: no {status}");
                    }
                    let bad = &r["400"]["content"]["application/json"]["schema"]["$ref"];
                    assert_eq!(bad, "#/components/schemas/BadRequest", "{method} {path}");
                }
                if op.get("security").is_some() {
                    assert!(r["401"].is_object(), "{method} {path}: no 401");
                }
                if method == "get" {
                    assert!(r["304"].is_object(), "{method} {path}: no 304");
                    assert!(r["200"]["headers"]["ETag"].is_object());
                }
            }
        }
        let schemas = &doc["components"]["schemas"];
        assert_eq!(
            schemas["MovieIn"]["properties"]["title"]["description"],
            "1–200 characters."
        );
        assert_eq!(
            schemas["RatingIn"]["properties"]["rating"]["oneOf"][0]["maximum"],
            5
        );
        assert!(doc["paths"]["/api/auth/login"]["post"]["responses"]["429"].is_object());
    }
}
