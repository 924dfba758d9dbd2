//! Problem details on request (RFC 9457). A client whose `Accept` names
//! `application/problem+json` gets every error as a problem: `type`
//! (`about:blank`: the status says it all), `title` (the status's reason),
//! `status`, `detail`, and for a 400 that names fields, the DRF field
//! errors as the extension member `errors`. Everyone else keeps the DRF
//! bodies, byte for byte.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;
use serde_json::{Map, Value, json};

/// The media type of problem details.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// The largest error body turned into a problem (ours are a few hundred
/// bytes; anything larger is passed on as it is).
const MAX_ERROR_BODY: usize = 64 * 1024;

/// Whether `Accept` names problem details with a non-zero weight.
fn wants_problems(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|range| {
            let mut params = range.split(';').map(str::trim);
            let media = params.next().unwrap_or_default();
            let refused = params.any(|p| {
                p.strip_prefix("q=")
                    .and_then(|q| q.parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            media.eq_ignore_ascii_case(PROBLEM_JSON) && !refused
        })
}

/// A DRF error body as problem details for `status`.
pub fn problem(status: axum::http::StatusCode, drf: &Value) -> Value {
    let title = status.canonical_reason().unwrap_or("Error");
    let mut problem = json!({
        "type": "about:blank",
        "title": title,
        "status": status.as_u16(),
    });
    match drf.get("detail").and_then(Value::as_str) {
        Some(detail) if drf.as_object().is_some_and(|o| o.len() == 1) => {
            problem["detail"] = json!(detail);
        }
        _ => {
            problem["detail"] = json!("Invalid input.");
            problem["errors"] = drf
                .as_object()
                .cloned()
                .map_or(Value::Null, |m: Map<_, _>| m.into());
        }
    }
    problem
}

/// The middleware, around everything (404s and 405s included).
pub async fn problems(request: Request, next: Next) -> Response {
    let wanted = wants_problems(request.headers());
    let response = next.run(request).await;
    let status = response.status();
    if !wanted || !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_ERROR_BODY).await else {
        parts.headers.remove(header::CONTENT_LENGTH);
        return Response::from_parts(parts, Body::empty());
    };
    let Ok(drf) = serde_json::from_slice::<Value>(&bytes) else {
        // Not one of our JSON bodies (a bare 503 from the connection cap):
        // as it was.
        return Response::from_parts(parts, Body::from(bytes));
    };
    let body = serde_json::to_vec(&problem(status, &drf)).expect("JSON values serialize");
    parts
        .headers
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(body))
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;

    use super::*;

    fn accept(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT, HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn only_a_positive_weight_on_problem_json_asks_for_problems() {
        assert!(wants_problems(&accept("application/problem+json")));
        assert!(wants_problems(&accept(
            "application/json, application/problem+json;q=0.5"
        )));
        assert!(!wants_problems(&accept("application/problem+json;q=0")));
        assert!(!wants_problems(&accept("application/json")));
        assert!(!wants_problems(&accept("*/*")));
        assert!(!wants_problems(&HeaderMap::new()));
    }

    #[test]
    fn drf_bodies_become_problems() {
        assert_eq!(
            problem(StatusCode::NOT_FOUND, &json!({"detail": "Not found."})),
            json!({"type": "about:blank", "title": "Not Found", "status": 404, "detail": "Not found."})
        );
        assert_eq!(
            problem(
                StatusCode::BAD_REQUEST,
                &json!({"title": ["This field is required."]})
            ),
            json!({
                "type": "about:blank", "title": "Bad Request", "status": 400,
                "detail": "Invalid input.",
                "errors": {"title": ["This field is required."]}
            })
        );
    }
}
