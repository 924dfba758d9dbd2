//! A client's view of the per-client limit on logins and registrations: a
//! developer's own test suite, all from one address, must be served whole;
//! a sustained flood from one address must still be bounded.
//!
//! - The one-command stack (`movies`) with its defaults: 600 registrations
//!   and logins sent within 10 s get no 429 and no 503; then a flood of 3,000
//!   logins over 30 s is admitted up to the advertised burst plus refill ×
//!   time, within 10 %.
//! - The three binaries with `docker-compose.yml`'s own environment, on
//!   PostgreSQL: the same burst.
//!
//! Needs the binaries built first (and PostgreSQL for the second), so both
//! are `#[ignore]`d in a plain `cargo test`; `.ci/run` runs them, one at a
//! time (they measure what 2 cores can serve).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use event_store::testing::TempDatabase;
use serde_json::json;

#[path = "support/processes.rs"]
mod support;

use support::{Service, bin, free_port};

/// Requests in the burst: half registrations, half logins of the same users.
const BURST: usize = 600;
/// The burst is sent within this time (at an even pace).
const BURST_SECS: f64 = 10.0;
/// Requests in the flood after it, and the time they are spread over.
const FLOOD: usize = 3_000;
const FLOOD_SECS: f64 = 30.0;

/// Answers by status code.
type Seen = BTreeMap<u16, usize>;

/// The policy a response advertises in `RateLimit-Policy`: (quota, window).
fn advertised(response: &reqwest::Response) -> (f64, f64) {
    let policy = response.headers()["ratelimit-policy"].to_str().unwrap();
    let param = |name: &str| -> f64 {
        policy
            .split(';')
            .find_map(|p| p.strip_prefix(name)?.strip_prefix('='))
            .unwrap_or_else(|| panic!("no {name} in {policy}"))
            .parse()
            .unwrap()
    };
    (param("q"), param("w"))
}

/// Sends `count` requests at an even pace over `secs`, each on a task of its
/// own (so a slow answer never delays the next request): request `k` is
/// `make(k)`. Returns the answers by status, and the policy the first
/// answer advertised.
async fn paced(
    http: &reqwest::Client,
    count: usize,
    secs: f64,
    make: impl Fn(&reqwest::Client, usize) -> reqwest::RequestBuilder,
) -> (Seen, (f64, f64)) {
    let start = tokio::time::Instant::now();
    let mut sent = tokio::task::JoinSet::new();
    for k in 0..count {
        tokio::time::sleep_until(start + Duration::from_secs_f64(secs * k as f64 / count as f64))
            .await;
        let request = make(http, k);
        sent.spawn(async move {
            let response = request.send().await.expect("an answer");
            let policy = response
                .headers()
                .contains_key("ratelimit-policy")
                .then(|| advertised(&response));
            (k, response.status().as_u16(), policy)
        });
    }
    let mut seen = Seen::new();
    let mut first = None;
    while let Some(answer) = sent.join_next().await {
        let (k, status, policy) = answer.unwrap();
        *seen.entry(status).or_default() += 1;
        if k == 0 {
            first = policy;
        }
    }
    (seen, first.expect("the first answer advertised its policy"))
}

fn register(http: &reqwest::Client, base: &str, user: usize) -> reqwest::RequestBuilder {
    http.post(format!("{base}/api/auth/register")).json(&json!({
        "username": format!("suite{user}"),
        "email": format!("suite{user}@example.com"),
        "password": "password123",
    }))
}

fn login(http: &reqwest::Client, base: &str, user: usize) -> reqwest::RequestBuilder {
    http.post(format!("{base}/api/auth/login"))
        .json(&json!({"username": format!("suite{user}"), "password": "password123"}))
}

/// The burst a test suite makes: `BURST / 2` registrations, then a login of
/// each user, all within `BURST_SECS`. Every one must succeed: no 429, no
/// 503, nothing else.
async fn burst(http: &reqwest::Client, base: &str) -> (f64, f64) {
    let users = BURST / 2;
    let base2 = base.to_owned();
    let started = Instant::now();
    let (seen, policy) = paced(http, BURST, BURST_SECS, move |http, k| {
        if k < users {
            register(http, &base2, k)
        } else {
            login(http, &base2, k - users)
        }
    })
    .await;
    eprintln!(
        "burst: {BURST} sent within {BURST_SECS} s, the last answered after {:.1} s: {seen:?}; \
         policy q={} w={}",
        started.elapsed().as_secs_f64(),
        policy.0,
        policy.1
    );
    assert_eq!(
        seen,
        [(200, BURST)].into(),
        "the burst was not served whole"
    );
    policy
}

/// Waits until `base` answers `/readyz` with 200.
async fn ready(http: &reqwest::Client, base: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = http.get(format!("{base}/readyz")).send().await
            && r.status().is_success()
        {
            return;
        }
        assert!(Instant::now() < deadline, "{base} never became ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// The one-command stack, killed when dropped.
struct Stack(Child);

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Stack {
    /// `movies` with its defaults in the fresh directory `dir` (its SQLite
    /// stores land in `dir/data`), but on ports of its own.
    fn start(dir: &Path) -> (Self, String) {
        let port = |name: &str| (name.to_owned(), format!("127.0.0.1:{}", free_port()));
        let ports = [
            port("GATEWAY_LISTEN"),
            port("AUTH_LISTEN"),
            port("CATALOG_LISTEN"),
            port("AUTH_METRICS_LISTEN"),
            port("CATALOG_METRICS_LISTEN"),
        ];
        let child = Command::new(bin("movies"))
            .current_dir(dir)
            .envs(ports.iter().map(|(k, v)| (k, v)))
            .env("RUST_LOG", "error")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("movies starts");
        (Self(child), format!("http://{}", ports[0].1))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the binaries (cargo build --workspace --bins); .ci/run runs it"]
async fn the_one_command_stack_serves_a_suites_burst_and_bounds_a_flood() {
    let dir = tempfile::tempdir().unwrap();
    let (_stack, base) = Stack::start(dir.path());
    let http = client();
    ready(&http, &base).await;

    let started = Instant::now();
    let (quota, window) = burst(&http, &base).await;
    assert_eq!(
        (quota, window),
        (1000.0, 200.0),
        "the documented defaults: 1000 at once, 300 a minute"
    );

    // The flood: logins of the suite's users, 100 a second for 30 s.
    let users = BURST / 2;
    let base2 = base.clone();
    let (seen, _) = paced(&http, FLOOD, FLOOD_SECS, move |http, k| {
        login(http, &base2, k % users)
    })
    .await;
    let elapsed = started.elapsed().as_secs_f64();
    assert!(
        seen.keys().all(|s| [200, 429].contains(s)),
        "the flood met more than the limit: {seen:?}"
    );
    // Every request took a token from the bucket, full at the start: what
    // was admitted is the bucket plus its refill over the whole run.
    let admitted = (BURST + seen.get(&200).copied().unwrap_or(0)) as f64;
    let expected = quota + quota / window * elapsed;
    eprintln!(
        "flood: {FLOOD} over {FLOOD_SECS} s: {seen:?}; admitted {admitted} of {} in {elapsed:.1} s, \
         burst + refill × time = {expected:.0} ({:+.1} %)",
        BURST + FLOOD,
        (admitted / expected - 1.0) * 100.0
    );
    assert!(
        (admitted - expected).abs() <= 0.1 * expected,
        "admitted {admitted}, the policy allows {expected:.0}"
    );
}

/// The `environment:` entries of `service` in a compose file, with
/// `${NAME:-default}` interpolated to its default (the tests set no
/// variables). A tiny reader for this file's shape, not a YAML parser.
fn compose_environment(compose: &str, service: &str) -> Vec<(String, String)> {
    let mut lines = compose
        .lines()
        .skip_while(|l| l.trim_end() != format!("  {service}:"))
        .skip(1)
        .take_while(|l| l.is_empty() || l.starts_with("   "));
    let mut env = vec![];
    if lines.any(|l| l.trim_end() == "    environment:") {
        for line in lines.take_while(|l| l.starts_with("      ") || l.trim().starts_with('#')) {
            let line = line.trim();
            if line.starts_with('#') || line.starts_with("<<:") {
                continue;
            }
            let (key, value) = line.split_once(':').expect("KEY: value");
            let value = value.trim().trim_matches('"');
            let value = match value.strip_prefix("${") {
                Some(var) => var
                    .split_once(":-")
                    .map_or("", |(_, default)| default.trim_end_matches('}')),
                None => value,
            };
            env.push((key.trim().to_owned(), value.to_owned()));
        }
    }
    assert!(!env.is_empty(), "no environment for {service}");
    env
}

/// `service`'s compose environment, except where it names other hosts,
/// ports or volumes (keys ending `_URL`, `_LISTEN`, `_SNAPSHOT`): `own`
/// must replace every one of those, and gives the listen address the image
/// sets. The one other difference: `RUST_LOG=error` (see `Service`), not the
/// image's `info`, so that this output is not a line per request.
fn as_in_compose(service: &str, own: &[(&str, &str)]) -> Vec<(String, String)> {
    let compose =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docker-compose.yml"))
            .unwrap();
    let mut env = compose_environment(&compose, service);
    for (key, _) in &env {
        let placed = ["_URL", "_LISTEN", "_SNAPSHOT"]
            .iter()
            .any(|s| key.ends_with(s));
        assert!(
            !placed || own.iter().any(|(k, _)| k == key),
            "{service}'s {key} names a place in the compose network: the test must give its own"
        );
    }
    env.retain(|(k, _)| !own.iter().any(|(o, _)| o == k));
    env.extend(own.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    eprintln!("{service}: {env:?}");
    env
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the binaries (cargo build --workspace --bins) and PostgreSQL; .ci/run runs it"]
async fn the_compose_stack_serves_a_suites_burst() {
    let Some(auth_db) = TempDatabase::create("burst").await else {
        return;
    };
    let Some(catalog_db) = TempDatabase::create("burst").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let snapshot = |name: &str| dir.path().join(name).to_string_lossy().into_owned();
    let (auth_snapshot, catalog_snapshot) =
        (snapshot("auth.snapshot"), snapshot("catalog.snapshot"));
    let metrics = || format!("127.0.0.1:{}", free_port());
    let (auth_metrics, catalog_metrics, gateway_metrics) = (metrics(), metrics(), metrics());
    let (_auth, auth_addr) = Service::start_listening("auth-service", |addr| {
        as_in_compose(
            "auth-service",
            &[
                ("AUTH_LISTEN", addr),
                ("AUTH_STORE_URL", auth_db.url()),
                ("AUTH_SNAPSHOT", &auth_snapshot),
                ("AUTH_METRICS_LISTEN", &auth_metrics),
            ],
        )
    })
    .await;
    let auth_url = format!("http://{auth_addr}");
    let (_catalog, catalog_addr) = Service::start_listening("catalog-service", |addr| {
        as_in_compose(
            "catalog-service",
            &[
                ("CATALOG_LISTEN", addr),
                ("CATALOG_STORE_URL", catalog_db.url()),
                ("CATALOG_AUTH_URL", &auth_url),
                ("CATALOG_SNAPSHOT", &catalog_snapshot),
                ("CATALOG_METRICS_LISTEN", &catalog_metrics),
            ],
        )
    })
    .await;
    let catalog_url = format!("http://{catalog_addr}");
    let (_gateway, gateway_addr) = Service::start_listening("gateway", |addr| {
        as_in_compose(
            "gateway",
            &[
                ("GATEWAY_LISTEN", addr),
                ("GATEWAY_AUTH_URL", &auth_url),
                ("GATEWAY_CATALOG_URL", &catalog_url),
                ("GATEWAY_METRICS_LISTEN", &gateway_metrics),
            ],
        )
    })
    .await;
    let base = format!("http://{gateway_addr}");
    let http = client();
    ready(&http, &base).await;
    let policy = burst(&http, &base).await;
    assert_eq!(policy, (1000.0, 200.0), "the documented defaults");
}

#[test]
fn the_compose_reader_reads_this_files_shape() {
    let compose = "\
services:
  a:
    <<: *service
    environment:
      <<: *otel
      # a comment
      A_URL: postgres://x:${P:?}@h/db
      A_TTL: \"36000\"
      A_KEY: ${A_KEY:-}
      A_DEF: ${A_DEF:-seven}
    volumes:
      - x:/y
  b:
    environment:
      B: b
";
    assert_eq!(
        compose_environment(compose, "a"),
        [
            ("A_URL", "postgres://x:${P:?}@h/db"),
            ("A_TTL", "36000"),
            ("A_KEY", ""),
            ("A_DEF", "seven"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
    );
    assert_eq!(
        compose_environment(compose, "b"),
        [("B".to_owned(), "b".to_owned())]
    );
}
