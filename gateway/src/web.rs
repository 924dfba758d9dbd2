//! The gateway's pages for people: the movies page at `/` (HTML, CSS and
//! JavaScript built into the binary, using only the public REST API), and
//! the browsable API: a browser asking for an API path gets the JSON
//! answer inside a readable page, with its status, the methods the path
//! allows and a form for its POST. Clients that ask for JSON (or `*/*`)
//! get exactly the answer they always had.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::Value;

/// Scripts and styles only from this origin, never inline; requests only
/// to this origin; no framing, no plugins, no `<base>`.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; connect-src 'self'; img-src 'self'; form-action 'self'; \
     base-uri 'none'; frame-ancestors 'none'";

/// The largest answer shown in a browsable page; a larger one is not read
/// whole into memory for a page (ask for JSON to get it).
const MAX_SHOWN: usize = 1024 * 1024;

/// The page's icon (also at `/favicon.ico`, which browsers ask for on
/// their own: a 404 there is a console error).
const FAVICON: &str = include_str!("../web/favicon.svg");

/// The page, its script and style, its icon, and the browsable API's script.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    let asset =
        |body: &'static str, media: &'static str| move || async move { page_headers(media, body) };
    Router::new()
        .route(
            "/",
            get(asset(
                include_str!("../web/index.html"),
                "text/html; charset=utf-8",
            )),
        )
        .route(
            "/static/app.js",
            get(asset(
                include_str!("../web/app.js"),
                "text/javascript; charset=utf-8",
            )),
        )
        .route(
            "/static/browse.js",
            get(asset(
                include_str!("../web/browse.js"),
                "text/javascript; charset=utf-8",
            )),
        )
        .route("/favicon.ico", get(asset(FAVICON, "image/svg+xml")))
        .route("/static/favicon.svg", get(asset(FAVICON, "image/svg+xml")))
        .route(
            "/static/app.css",
            get(asset(
                include_str!("../web/app.css"),
                "text/css; charset=utf-8",
            )),
        )
}

/// `body` as `media` with the headers every page and asset carries.
fn page_headers(media: &'static str, body: &'static str) -> Response {
    let mut response = body.into_response();
    set_page_headers(response.headers_mut(), media);
    response
}

fn set_page_headers(headers: &mut HeaderMap, media: &'static str) {
    let fixed = [
        (header::CONTENT_TYPE, media),
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CACHE_CONTROL, "no-cache"),
    ];
    for (name, value) in fixed {
        headers.insert(name, HeaderValue::from_static(value));
    }
}

/// The API's paths (templates such as `/api/auth/movies/{id}`), with the
/// methods each allows and the fields of its POST body, read from the
/// OpenAPI document the routes declare.
#[derive(Debug, Default)]
pub struct ApiPaths(Vec<ApiPath>);

#[derive(Debug)]
struct ApiPath {
    segments: Vec<String>,
    methods: Vec<&'static str>,
    post_fields: Vec<String>,
}

impl ApiPaths {
    /// Reads `openapi` (a whole document, `$ref`s resolved here).
    pub fn from_openapi(openapi: &Value) -> Self {
        let schemas = &openapi["components"]["schemas"];
        let mut paths = Vec::new();
        for (template, item) in openapi["paths"].as_object().into_iter().flatten() {
            let methods: Vec<&'static str> = ["get", "post", "put", "patch", "delete"]
                .into_iter()
                .filter(|m| item.get(*m).is_some())
                .map(|m| match m {
                    "get" => "GET",
                    "post" => "POST",
                    "put" => "PUT",
                    "patch" => "PATCH",
                    _ => "DELETE",
                })
                .collect();
            let body = &item["post"]["requestBody"]["content"]["application/json"]["schema"];
            let schema = match body["$ref"].as_str() {
                Some(r) => &schemas[r.rsplit('/').next().unwrap_or_default()],
                None => body,
            };
            let post_fields = schema["properties"]
                .as_object()
                .map(|p| p.keys().cloned().collect())
                .unwrap_or_default();
            paths.push(ApiPath {
                segments: template.split('/').map(str::to_owned).collect(),
                methods,
                post_fields,
            });
        }
        Self(paths)
    }

    fn find(&self, path: &str) -> Option<&ApiPath> {
        let asked: Vec<&str> = path.split('/').collect();
        self.0.iter().find(|p| {
            p.segments.len() == asked.len()
                && p.segments.iter().zip(&asked).all(|(template, given)| {
                    template == given || (template.starts_with('{') && !given.is_empty())
                })
        })
    }
}

/// Whether the first media range `Accept` names is HTML: what browsers send
/// when they navigate, and no API client does by accident.
fn prefers_html(headers: &HeaderMap) -> bool {
    let first = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .and_then(|range| range.split(';').next())
        .map(str::trim)
        .unwrap_or_default();
    first.eq_ignore_ascii_case("text/html") || first.eq_ignore_ascii_case("application/xhtml+xml")
}

/// The browsable API: an API request from a browser is answered as usual,
/// then shown as a page. Everything else passes untouched.
pub async fn browsable(
    State(paths): State<Arc<ApiPaths>>,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path().to_owned();
    if !path.starts_with("/api/") || !prefers_html(request.headers()) {
        return next.run(request).await;
    }
    let method = request.method().clone();
    let query = request.uri().query().map(str::to_owned);
    let answer = next.run(request).await;
    let (mut parts, body) = answer.into_parts();
    let shown = match axum::body::to_bytes(body, MAX_SHOWN).await {
        Ok(bytes) => match serde_json::from_slice::<Value>(&bytes) {
            Ok(json) => serde_json::to_string_pretty(&json).unwrap_or_default(),
            Err(_) => String::from_utf8_lossy(&bytes).into_owned(),
        },
        Err(_) => format!(
            "(The answer is larger than {} KiB: ask for application/json to read it.)",
            MAX_SHOWN / 1024
        ),
    };
    let api_path = paths.find(&path);
    let page = render(&Shown {
        method: &method,
        path: &path,
        query: query.as_deref(),
        status: parts.status,
        body: &shown,
        methods: api_path.map_or(&[][..], |p| &p.methods),
        post_fields: api_path.map_or(&[][..], |p| &p.post_fields),
    });
    for name in [header::ETAG, header::CONTENT_LENGTH, header::CONTENT_TYPE] {
        parts.headers.remove(name);
    }
    set_page_headers(&mut parts.headers, "text/html; charset=utf-8");
    parts
        .headers
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    parts
        .headers
        .insert(header::VARY, HeaderValue::from_static("Accept"));
    if let Some(p) = api_path
        && let Ok(allow) = HeaderValue::from_str(&p.methods.join(", "))
    {
        parts
            .headers
            .insert(HeaderName::from_static("allow"), allow);
    }
    Response::from_parts(parts, Body::from(page))
}

struct Shown<'a> {
    method: &'a Method,
    path: &'a str,
    query: Option<&'a str>,
    status: StatusCode,
    body: &'a str,
    methods: &'a [&'static str],
    post_fields: &'a [String],
}

fn render(s: &Shown) -> String {
    let target = match s.query {
        Some(q) => format!("{}?{q}", s.path),
        None => s.path.to_owned(),
    };
    let status = format!(
        "{} {}",
        s.status.as_u16(),
        s.status.canonical_reason().unwrap_or_default()
    );
    let allowed = if s.methods.is_empty() {
        "none (no such endpoint)".to_owned()
    } else {
        s.methods.join(", ")
    };
    let form = if s.methods.contains(&"POST") {
        let example: serde_json::Map<String, Value> = s
            .post_fields
            .iter()
            .map(|f| (f.clone(), Value::String(String::new())))
            .collect();
        let example = serde_json::to_string_pretty(&example).unwrap_or_default();
        format!(
            "<form id=\"post-form\" class=\"card\">\
             <label for=\"post-body\">POST body (JSON)</label>\
             <textarea id=\"post-body\" rows=\"8\" spellcheck=\"false\">{}</textarea>\
             <button type=\"submit\">POST</button></form>",
            escape(&example)
        )
    } else {
        String::new()
    };
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{method} {target} · Movies API</title>\
         <link rel=\"stylesheet\" href=\"/static/app.css\">\
         <script src=\"/static/browse.js\" defer></script></head>\
         <body><header class=\"bar\"><h1><a href=\"/\">Movies</a> API</h1>\
         <a href=\"/api/openapi.json\">OpenAPI</a></header><main>\
         <h2><span id=\"method\">{method}</span> <code>{target}</code></h2>\
         <p>Status: <strong id=\"status\">{status}</strong></p>\
         <p>Allowed methods: <code id=\"allow\">{allowed}</code></p>\
         <p>Signed in on the <a href=\"/\">movies page</a> in this tab, this page asks again with your token.</p>\
         <pre id=\"response\" tabindex=\"0\" aria-label=\"The answer\">{body}</pre>{form}</main></body></html>\n",
        method = escape(s.method.as_str()),
        target = escape(&target),
        status = escape(&status),
        allowed = escape(&allowed),
        body = escape(s.body),
    )
}

/// `text` safe inside HTML text and attribute values.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_first_html_range_is_a_browser() {
        let accept = |v: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(header::ACCEPT, HeaderValue::from_static(v));
            prefers_html(&h)
        };
        assert!(accept("text/html,application/xhtml+xml,*/*;q=0.8"));
        assert!(accept("TEXT/HTML"));
        assert!(!accept("application/json, text/html"));
        assert!(!accept("*/*"));
        assert!(!prefers_html(&HeaderMap::new()));
    }

    #[test]
    fn answers_are_escaped() {
        assert_eq!(
            escape("<script>\"x\" & 'y'</script>"),
            "&lt;script&gt;&quot;x&quot; &amp; &#39;y&#39;&lt;/script&gt;"
        );
    }
}
