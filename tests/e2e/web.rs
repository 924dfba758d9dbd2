//! The pages for people: the movies page at `/`, and the browsable API
//! (HTML to a browser, today's JSON to everyone else).

use reqwest::StatusCode;
use reqwest::header::{ACCEPT, CONTENT_TYPE};

use crate::helpers::TestApp;

crate::on_every_backend!(
    the_page_is_served_with_a_strict_policy,
    a_browser_gets_a_page_and_everyone_else_the_same_json,
);

const BROWSER: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";

async fn fetch(
    app: &TestApp,
    path: &str,
    token: Option<&str>,
    accept: Option<&str>,
) -> reqwest::Response {
    let mut r = app.http.get(format!("{}{path}", app.base));
    if let Some(t) = token {
        r = r.header("authorization", format!("Token {t}"));
    }
    if let Some(a) = accept {
        r = r.header(ACCEPT, a);
    }
    r.send().await.expect("the gateway answers")
}

async fn the_page_is_served_with_a_strict_policy(app: TestApp) {
    let page = fetch(&app, "/", None, Some(BROWSER)).await;
    assert_eq!(page.status(), StatusCode::OK);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert!(
        page.headers()[CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let html = page.text().await.unwrap();
    assert!(html.contains("<script src=\"/static/app.js\" defer></script>"));
    assert!(!html.contains("<script>"), "no inline script");
    for asset in ["/static/app.js", "/static/app.css", "/static/browse.js"] {
        let a = fetch(&app, asset, None, None).await;
        assert_eq!(a.status(), StatusCode::OK, "{asset}");
        assert_eq!(a.headers()["x-content-type-options"], "nosniff");
    }
    let js = fetch(&app, "/static/app.js", None, None)
        .await
        .text()
        .await
        .unwrap();
    assert!(
        js.contains("sessionStorage")
            && !js.contains("localStorage.setItem")
            && !js.contains("document.cookie")
    );
}

async fn a_browser_gets_a_page_and_everyone_else_the_same_json(app: TestApp) {
    let (token, _) = app.user("browser").await;
    let m = app.movie(&token, "<script>alert(1)</script>").await;
    for path in [
        "/api/auth/movies".to_owned(),
        format!("/api/auth/movies/{m}"),
        "/api/auth/rating?limit=1".to_owned(),
        "/api/auth/me/activity".to_owned(),
    ] {
        let json = fetch(&app, &path, Some(&token), None).await;
        assert_eq!(json.status(), StatusCode::OK, "{path}");
        let (json_type, json_tag) = (
            json.headers()[CONTENT_TYPE].clone(),
            json.headers().get("etag").cloned(),
        );
        let json = json.text().await.unwrap();
        for accept in ["application/json", "*/*", "application/json, text/html"] {
            let other = fetch(&app, &path, Some(&token), Some(accept)).await;
            assert_eq!(other.headers()[CONTENT_TYPE], json_type, "{path} {accept}");
            assert_eq!(
                other.headers().get("etag").cloned(),
                json_tag,
                "{path} {accept}"
            );
            assert_eq!(other.text().await.unwrap(), json, "{path} as {accept}");
        }

        let page = fetch(&app, &path, Some(&token), Some(BROWSER)).await;
        assert_eq!(page.status(), StatusCode::OK, "{path}");
        assert!(
            page.headers()[CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
        assert!(
            page.headers().get("etag").is_none(),
            "the JSON's tag is not the page's"
        );
        assert_eq!(page.headers()["vary"], "Accept");
        let html = page.text().await.unwrap();
        assert!(
            html.contains("<strong id=\"status\">200 OK</strong>"),
            "{path}: {html}"
        );
        let pretty = serde_json::to_string_pretty(
            &serde_json::from_str::<serde_json::Value>(&json).unwrap(),
        )
        .unwrap();
        let escaped = pretty
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
            .replace('\'', "&#39;");
        assert!(
            html.contains(&escaped),
            "{path}: the pretty JSON is not on the page"
        );
        assert!(
            !html.contains("<script>alert"),
            "{path}: an answer's text became markup"
        );
    }

    let list = fetch(&app, "/api/auth/movies", None, Some(BROWSER)).await;
    assert_eq!(
        list.status(),
        StatusCode::UNAUTHORIZED,
        "a browser without a token sees the same status"
    );
    assert_eq!(list.headers()["allow"], "GET, POST");
    let html = list.text().await.unwrap();
    assert!(html.contains("<strong id=\"status\">401 Unauthorized</strong>"));
    assert!(html.contains("Allowed methods: <code id=\"allow\">GET, POST</code>"));
    assert!(
        html.contains("<form id=\"post-form\""),
        "a form for the POST"
    );
    assert!(
        html.contains("&quot;director&quot;") && html.contains("&quot;title&quot;"),
        "{html}"
    );
    let item = fetch(&app, &format!("/api/auth/movies/{m}"), None, Some(BROWSER)).await;
    let html = item.text().await.unwrap();
    assert!(!html.contains("post-form"), "no POST on an item");
}
