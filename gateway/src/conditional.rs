//! Conditional GETs (RFC 9110 §8.8.3, §13.1.2). Every successful GET of the
//! API carries a strong `ETag` made from the exact bytes of its answer: any
//! replica over the same data gives the same tag, and the tag changes
//! exactly when the answer does (a new rating moves the movie's average, so
//! the movie's tag; the movie list, which shows no averages, keeps its
//! tag). A GET whose `If-None-Match` names the current tag (or `*`) is
//! answered `304 Not Modified` with the tag and no body.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

/// The strong tag of `body`: 128 bits of its SHA-256, in hex, quoted.
pub fn etag_of(body: &[u8]) -> HeaderValue {
    let digest = Sha256::digest(body);
    HeaderValue::from_str(&format!("\"{}\"", hex::encode(&digest[..16])))
        .expect("hex digits are a valid header value")
}

/// Whether `If-None-Match` (every value of it) names `tag`. The comparison
/// is weak, as RFC 9110 says for this header: `W/"x"` matches `"x"`.
fn none_match_fails(headers: &HeaderMap, tag: &HeaderValue) -> bool {
    let tag = tag.as_bytes();
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|candidate| candidate == "*" || candidate.trim_start_matches("W/").as_bytes() == tag)
}

/// The middleware, on the API's routes.
pub async fn conditional(request: Request, next: Next) -> Response {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return next.run(request).await;
    }
    let asked = if_none_match(request.headers());
    let response = next.run(request).await;
    if response.status() != StatusCode::OK {
        return response;
    }
    if let Some(tag) = response.headers().get(header::ETAG).cloned() {
        // The handler knows its answer's tag already (a kept list, or the
        // streamed rating list, whose body must not be collected here).
        return match none_match_fails(&asked, &tag) {
            true => not_modified(response.into_parts().0),
            false => response,
        };
    }
    let (mut parts, body) = response.into_parts();
    // The API's answers are built whole in memory before they are sent, so
    // collecting them again costs a copy of pointers, not of the bytes.
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let tag = etag_of(&bytes);
    parts.headers.insert(header::ETAG, tag.clone());
    if none_match_fails(&asked, &tag) {
        return not_modified(parts);
    }
    Response::from_parts(parts, Body::from(bytes))
}

/// The `If-None-Match` values of a request (usually none).
fn if_none_match(headers: &HeaderMap) -> HeaderMap {
    let mut kept = HeaderMap::new();
    for v in headers.get_all(header::IF_NONE_MATCH) {
        kept.append(header::IF_NONE_MATCH, v.clone());
    }
    kept
}

/// A 304 with the headers of the 200 it stands for, without the body.
fn not_modified(mut parts: axum::http::response::Parts) -> Response {
    parts.status = StatusCode::NOT_MODIFIED;
    parts.headers.remove(header::CONTENT_TYPE);
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asked(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(header::IF_NONE_MATCH, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn if_none_match_is_compared_weakly_across_lists_and_headers() {
        let tag = etag_of(b"[]");
        let t = tag.to_str().unwrap();
        assert!(none_match_fails(&asked(&[t]), &tag));
        assert!(none_match_fails(&asked(&[&format!("W/{t}")]), &tag));
        assert!(none_match_fails(
            &asked(&[&format!("\"other\", {t}")]),
            &tag
        ));
        assert!(none_match_fails(&asked(&["\"other\"", t]), &tag));
        assert!(none_match_fails(&asked(&["*"]), &tag));
        assert!(!none_match_fails(&asked(&["\"other\""]), &tag));
        assert!(!none_match_fails(&asked(&[]), &tag));
        assert_ne!(etag_of(b"[]"), etag_of(b"[1]"));
    }
}
