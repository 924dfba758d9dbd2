//! README, "From the one-command stack to PostgreSQL", step by step, with
//! the release binaries: the one-command stack runs on SQLite under
//! `./data/` and is written to over REST (`tests/fixtures/generate.py`),
//! then stopped; `movies copy` moves both stores to PostgreSQL; the three
//! processes start on it; the same users, tokens and data answer. And a
//! copy killed with SIGKILL halfway goes on, run again, with every event
//! exactly once.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Stores, TestApp};
use crate::releases::{RegisterKeys, answers_as_recorded, expected};
use crate::support::bin;

fn fixtures() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// `movies copy` as README step 2 runs it, in `dir` (where the stack ran).
fn copy_command(dir: &Path, stores: &Stores, extra: &[&str]) -> Command {
    let mut copy = Command::new(bin("movies"));
    copy.current_dir(dir)
        .args(["copy", "--to-auth-store-url", stores.auth.url()])
        .args(["--to-catalog-store-url", stores.catalog.url()])
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null());
    copy
}

fn copied(output: Output) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "movies copy failed: {}\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    // Both read models rebuilt from the target equal the source's.
    assert_eq!(stdout.matches("(equal)").count(), 2, "{stdout}");
    stdout
}

/// Steps 3 and 4: the three processes on the copied stores answer as the
/// one-command stack did; and the stores go on from where they were.
async fn served_from_postgres(dir: &Path, stores: &Stores) {
    // Keys on register answer retries still (each as a login), however
    // long ago the fixture was made.
    let forever = [("AUTH_REGISTRATION_KEY_TTL_SECS", "18446744073709551615")];
    let app = TestApp::processes_with(stores, &forever).await;
    let expected = expected(dir);
    answers_as_recorded(&expected, &app, RegisterKeys::AnswerAsLogins).await;

    // Ids go on after the copied ones (the sequence's reserve leaves a
    // gap, as after any restart); one rating per user and movie holds.
    let log_in = |user: &Value| {
        let login = json!({"username": user["username"], "password": user["password"]});
        let app = &app;
        async move {
            let a = app.post("/api/auth/login", None, login).await;
            a.body["token"].as_str().unwrap().to_owned()
        }
    };
    let token = log_in(&expected["users"][0]).await;
    let rater = log_in(&expected["users"][1]).await;
    let listed = app.get("/api/auth/movies?limit=1000", Some(&token)).await;
    let items = listed.body["results"].as_array().unwrap();
    let last_id = items.iter().filter_map(|m| m["id"].as_i64()).max().unwrap();
    let added = app
        .post(
            "/api/auth/movies",
            Some(&token),
            json!({"title": "After the move", "director": "D"}),
        )
        .await;
    assert_eq!(added.status, StatusCode::CREATED, "{}", added.text);
    let id = added.body["id"].as_i64().unwrap();
    assert!(id > last_id, "{id} after {last_id}");
    let first = app.rate(&rater, id, 4).await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.text);
    let again = app.rate(&rater, id, 5).await;
    assert_eq!(
        again.status,
        StatusCode::FORBIDDEN,
        "rated twice: {}",
        again.text
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs the binaries (cargo build --workspace --bins), python3 and PostgreSQL; .ci/run runs it"]
async fn the_one_command_stack_moves_to_postgres_and_answers_the_same() {
    let Some(stores) = Stores::postgres("moving").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // Step 0 and 1: the one-command stack, written to over REST, stopped.
    let generated = Command::new("python3")
        .arg(fixtures().join("generate.py"))
        .arg(bin("movies"))
        .arg(dir.path())
        .arg("today")
        .status()
        .expect("python3 runs");
    assert!(generated.success(), "generate.py: {generated}");
    // Step 2. The key table goes along: the pepper the stack generated,
    // and each user's data key (without which their data is noise).
    let report = copied(copy_command(dir.path(), &stores, &[]).output().unwrap());
    let users = expected(dir.path())["users"].as_array().unwrap().len();
    let rows = format!("auth: key table: {} rows copied", users + 1);
    assert!(report.contains(&rows), "{rows}: {report}");
    // Steps 3 and 4.
    served_from_postgres(dir.path(), &stores).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs the binaries (cargo build --workspace --bins) and PostgreSQL; .ci/run runs it"]
async fn release_3c5e5a3s_data_moves_to_postgres_upcast_and_answers_the_same() {
    let Some(stores) = Stores::postgres("moving_old").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let fixture = fixtures().join("release-3c5e5a3");
    std::fs::create_dir(dir.path().join("data")).unwrap();
    for file in std::fs::read_dir(fixture.join("data")).unwrap() {
        let file = file.unwrap();
        let to = dir.path().join("data").join(file.file_name());
        std::fs::copy(file.path(), to).unwrap();
    }
    std::fs::copy(
        fixture.join("expected.json"),
        dir.path().join("expected.json"),
    )
    .unwrap();
    copied(
        copy_command(dir.path(), &stores, &["--upcast"])
            .output()
            .unwrap(),
    );
    // The target holds the current versions only: no reader upcasts.
    let target = event_store::open(stores.auth.url()).await.unwrap();
    let types: Vec<String> = target
        .read_all(0, 1_000)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event_type)
        .collect();
    assert!(types.iter().any(|t| t == "UserRegistered.v2"), "{types:?}");
    let upcasts = <auth_service::domain::AuthEvent as event_store::Event>::upcasts();
    assert!(
        !types
            .iter()
            .any(|t| event_store::upcast::needed(upcasts, t)),
        "{types:?}"
    );
    served_from_postgres(dir.path(), &stores).await;
}

/// The head of the store at `url` (0 while it cannot be read).
async fn head_of(url: &str) -> u64 {
    match event_store::open(url).await {
        Ok(store) => store.head_position().await.unwrap_or(0),
        Err(_) => 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs the binaries (cargo build --workspace --bins) and PostgreSQL; .ci/run runs it"]
async fn a_copy_killed_halfway_goes_on_and_holds_every_event_once() {
    let Some(stores) = Stores::postgres("copy_killed").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let ratings = 200_000;
    let filled = Command::new(bin("fill-store"))
        .current_dir(dir.path())
        .args(["--catalog-store-url", "sqlite://data/catalog.db"])
        .args(["--auth-store-url", "sqlite://data/auth.db"])
        .args(["--ratings", &ratings.to_string(), "--movies", "500"])
        .output()
        .unwrap();
    assert!(filled.status.success(), "{filled:?}");
    let total = 500 + ratings;

    let mut running = copy_command(dir.path(), &stores, &[])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Killed once the catalog's copy has written something, not all.
    let deadline = Instant::now() + Duration::from_secs(120);
    let at_kill = loop {
        let head = head_of(stores.catalog.url()).await;
        if head >= 10_000 {
            running.kill().unwrap(); // SIGKILL
            running.wait().unwrap();
            break head_of(stores.catalog.url()).await;
        }
        assert!(Instant::now() < deadline, "the copy never started");
        assert!(
            running.try_wait().unwrap().is_none(),
            "the copy ended before it could be killed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert!(
        at_kill < total,
        "killed too late to show anything: {at_kill}"
    );

    let stdout = copied(copy_command(dir.path(), &stores, &[]).output().unwrap());
    assert!(
        stdout.contains(&format!("(resumed after position {at_kill})")),
        "{stdout}"
    );
    // Every position from 1 to the end once, every id once.
    let target = event_store::open(stores.catalog.url()).await.unwrap();
    let (mut next, mut ids) = (1, std::collections::HashSet::new());
    loop {
        let batch = target.read_all(next, 10_000).await.unwrap();
        let Some(last) = batch.last() else { break };
        next = last.position + 1;
        for (i, e) in batch.iter().enumerate() {
            assert_eq!(e.position, batch[0].position + i as u64, "no gap");
            assert!(ids.insert(e.id), "{} twice", e.id);
        }
    }
    assert_eq!(
        (next - 1, ids.len() as u64),
        (total, total),
        "every event exactly once"
    );
}
