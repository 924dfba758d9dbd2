//! Data written by earlier releases keeps working. Each fixture in
//! `tests/fixtures/release-<commit>/` holds a data directory that release
//! wrote over REST (its `generate.py` says how) and the answers it gave
//! (`expected.json`). The current stack, started on a copy, must give the
//! same answers, accept the same live tokens, refuse the same revoked ones,
//! log every user in with their password, and answer every keyed retry with
//! the first answer (a registration's retry is answered as a login). A
//! release that changes an event adds its own fixture
//! (`tests/fixtures/generate.py` writes one).

use std::path::Path;

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{TestApp, config_on, post_keyed};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn data_written_by_release_3c5e5a3_is_served_as_it_was() {
    served_as_it_was("release-3c5e5a3").await;
}

/// The release that sealed personal data (issue 29): its keyed
/// registrations' stamps hold a sealed first token, and its snapshots are
/// of the unkeyed container format, which today's stack refuses and
/// replaces.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn data_written_by_release_a108fba_is_served_as_it_was() {
    served_as_it_was("release-a108fba").await;
}

async fn served_as_it_was(fixture: &str) {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(fixture);
    let expected = expected(&fixture);
    // A copy: the stack writes (snapshots, throttle rows, keyed retries).
    let dir = tempfile::tempdir().unwrap();
    for file in std::fs::read_dir(fixture.join("data")).unwrap() {
        let file = file.unwrap();
        std::fs::copy(file.path(), dir.path().join(file.file_name())).unwrap();
    }
    let url = |db: &str| format!("sqlite://{}", dir.path().join(db).display());
    let mut config = config_on(&url("auth.db"), &url("catalog.db"));
    // Its keys on register answer retries still (each as a login), however
    // long ago the fixture was made.
    config.auth.auth_registration_key_ttl_secs = u64::MAX;
    let stack = movies::Stack::build(&config, movies::Wiring::InProcess)
        .await
        .expect("the stack starts on the old data");
    let app = TestApp::serve(stack).await;
    answers_as_recorded(&expected, &app, RegisterKeys::AnswerAsLogins).await;
    app.stop().await;
}

/// The answers a fixture's `expected.json` in `dir` recorded.
pub fn expected(dir: &Path) -> Value {
    let expected = std::fs::read_to_string(dir.join("expected.json")).unwrap();
    serde_json::from_str(&expected).unwrap()
}

/// What became of a fixture's keys on register.
pub enum RegisterKeys {
    /// They answer retries, each as a login: the same user, a new token.
    AnswerAsLogins,
    /// They were dropped (a sealing copy) or expired: the name is taken.
    Forgotten,
}

/// `body` without what later releases added to an answer that `recorded`
/// (the same answer, as recorded) lacks, and only that: since the
/// sessions release, a login or logout entry of `/api/auth/me/activity`
/// names its token's id (32 hex digits, as `/api/auth/tokens` lists it).
/// Data of earlier releases holds no client, so no address or agent is
/// added; an answer recorded by this release keeps them all.
fn without_later_additions(path: &str, mut body: Value, recorded: &Value) -> Value {
    if path != "/api/auth/me/activity" {
        return body;
    }
    let entries = body.as_array_mut().into_iter().flatten();
    let before = recorded.as_array().into_iter().flatten();
    for (entry, before) in entries.zip(before) {
        let entry = entry.as_object_mut().expect("an activity entry");
        if before.get("token").is_some() {
            continue;
        }
        if let Some(id) = entry.remove("token") {
            let kind = entry["kind"].as_str().unwrap_or_default();
            assert!(
                ["logged_in", "logged_out"].contains(&kind),
                "a token id on {entry:?}"
            );
            let id = id.as_str().unwrap_or_default();
            assert!(
                id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()),
                "{id}"
            );
        }
    }
    body
}

/// Checks `app` against what `expected` recorded: every read, every token
/// (live accepted, revoked refused), every password, every keyed retry.
pub async fn answers_as_recorded(expected: &Value, app: &TestApp, register_keys: RegisterKeys) {
    // Links in the old answers name the old stack's address.
    let old_base = expected["base"].as_str().unwrap();
    let rebased = |v: &Value| -> Value {
        serde_json::from_str(&v.to_string().replace(old_base, &app.base)).unwrap()
    };

    for read in expected["reads"].as_array().unwrap() {
        let path = read["path"].as_str().unwrap();
        let a = app.get(path, read["token"].as_str()).await;
        assert_eq!(
            u64::from(a.status.as_u16()),
            read["status"],
            "{path}: {}",
            a.text
        );
        let recorded = rebased(&read["body"]);
        let body = without_later_additions(path, a.body, &recorded);
        assert_eq!(body, recorded, "{path}");
    }
    for user in expected["users"].as_array().unwrap() {
        let name = user["username"].as_str().unwrap();
        for (tokens, status) in [
            ("live", StatusCode::OK),
            ("revoked", StatusCode::UNAUTHORIZED),
        ] {
            for token in user[tokens].as_array().unwrap() {
                let a = app.get("/api/auth/movies", token.as_str()).await;
                assert_eq!(a.status, status, "{name}'s {tokens} token: {}", a.text);
            }
        }
        let login = serde_json::json!({"username": name, "password": user["password"]});
        let a = app.post("/api/auth/login", None, login).await;
        assert_eq!(a.status, StatusCode::OK, "{name} logs in: {}", a.text);
    }
    for keyed in expected["keyed"].as_array().unwrap() {
        let path = keyed["path"].as_str().unwrap();
        let key = keyed["key"].as_str().unwrap();
        let (status, answer) = post_keyed(
            app,
            path,
            keyed["token"].as_str(),
            key,
            keyed["body"].clone(),
        )
        .await;
        if path == "/api/auth/register" {
            // README, "Idempotency keys on register".
            match register_keys {
                RegisterKeys::AnswerAsLogins => {
                    assert_eq!(status, StatusCode::OK, "{key}: {answer}");
                    assert_eq!(answer["user"], keyed["answer"]["user"], "{key}");
                    assert_ne!(answer["token"], keyed["answer"]["token"], "{key}");
                }
                RegisterKeys::Forgotten => {
                    assert_eq!(status, StatusCode::BAD_REQUEST, "{key}: {answer}");
                }
            }
            continue;
        }
        assert!(status.is_success(), "{path} {key}: {status} {answer}");
        assert_eq!(answer, rebased(&keyed["answer"]), "{path} {key}");
    }
}
