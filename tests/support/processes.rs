#![allow(dead_code)] // shared by two test binaries; each uses part of it
//! The three services as separate processes, from their real binaries:
//! shared by the crash test and the end-to-end suite's multi-process variant.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// A built binary of this workspace (`cargo build --workspace --bins` first).
pub fn bin(name: &str) -> PathBuf {
    // target/<profile>/deps/<test>-… → target/<profile>/<name>
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(|d| d.parent()).unwrap();
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace --bins` first",
        path.display()
    );
    path
}

/// A port free at the time of asking.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A gRPC channel to `addr` (`host:port`), connected.
pub async fn channel(addr: &str) -> tonic::transport::Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {addr}: {e}"))
}

/// Environment variables from pairs.
pub fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A service process, restartable with the same settings; killed when dropped.
pub struct Service {
    name: &'static str,
    env: Vec<(String, String)>,
    child: Child,
}

impl Service {
    /// Starts `name` with `env`.
    pub fn start(name: &'static str, env: Vec<(String, String)>) -> Self {
        let child = Self::spawn(name, &env);
        Self { name, env, child }
    }

    fn spawn(name: &str, env: &[(String, String)]) -> Child {
        Command::new(bin(name))
            // Several replicas share this host: no fixed metrics ports
            // unless a test asks for them.
            .env("AUTH_METRICS_LISTEN", "off")
            .env("CATALOG_METRICS_LISTEN", "off")
            .env("GATEWAY_METRICS_LISTEN", "off")
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("RUST_LOG", "error")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"))
    }

    /// Starts `name` listening on a free port of its own: `env_for(addr)`
    /// gives its settings. A port picked free can be taken by someone else
    /// before the child binds it; the child then exits, and this tries again
    /// on another port. Returns once the port accepts connections.
    pub async fn start_listening(
        name: &'static str,
        env_for: impl Fn(&str) -> Vec<(String, String)>,
    ) -> (Self, String) {
        for _ in 0..5 {
            let addr = format!("127.0.0.1:{}", free_port());
            let mut service = Self::start(name, env_for(&addr));
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
            loop {
                if tokio::net::TcpStream::connect(&addr).await.is_ok() {
                    return (service, addr);
                }
                if service.child.try_wait().ok().flatten().is_some() {
                    eprintln!("{name} exited before listening on {addr}; trying another port");
                    break;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "{name} never listened on {addr}"
                );
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
        panic!("{name} could not start on any port");
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (`TERM`, `STOP`, `CONT`...) to the process; whether
    /// it was delivered.
    pub fn signal(&self, signal: &str) -> bool {
        Command::new("kill")
            .args([format!("-{signal}"), self.child.id().to_string()])
            .status()
            .is_ok_and(|s| s.success())
    }

    /// SIGTERM, then waits for the process to end (at most 10 s).
    pub fn stop(&mut self) {
        if self.child.try_wait().ok().flatten().is_some() {
            return; // stopped already
        }
        self.signal("TERM");
        for _ in 0..100 {
            if self.child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!("{} did not stop within 10 s of SIGTERM", self.name);
    }

    /// SIGTERM, wait for the end (a clean stop: snapshots are written),
    /// then start again on the same address and store.
    pub fn restart(&mut self) {
        self.stop();
        self.child = Self::spawn(self.name, &self.env);
    }

    /// SIGKILL, as a lost machine would end it.
    pub fn kill(&mut self) {
        self.child.kill().unwrap(); // SIGKILL on Unix
        self.child.wait().unwrap();
        eprintln!("{} killed", self.name);
    }

    /// SIGKILL, then start again on the same address and store.
    pub fn crash_and_restart(&mut self) {
        self.child.kill().unwrap(); // SIGKILL on Unix
        self.child.wait().unwrap();
        eprintln!("{} killed", self.name);
        self.child = Self::spawn(self.name, &self.env);
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// auth-service, catalog-service and gateway as three processes, each
/// service on the store it is given, configured only by environment.
pub struct Deployment {
    pub auth: Service,
    pub catalog: Service,
    pub gateway: Service,
    /// `host:port` of auth-service.
    pub auth_addr: String,
    /// `host:port` of catalog-service.
    pub catalog_addr: String,
    /// The REST API's base URL.
    pub base: String,
    catalog_store: String,
}

impl Deployment {
    /// Starts all three, each once the one it needs listens (then poll
    /// `/readyz` for the whole to be ready).
    pub async fn start(auth_store: &str, catalog_store: &str) -> Self {
        Self::start_with(auth_store, catalog_store, &[]).await
    }

    /// As [`Deployment::start`], with `extra` settings for all three.
    pub async fn start_with(auth_store: &str, catalog_store: &str, extra: &[(&str, &str)]) -> Self {
        let with_extra = |mut own: Vec<(String, String)>| {
            own.extend(env(extra));
            own
        };
        let (auth, auth_addr) = Service::start_listening("auth-service", |addr| {
            with_extra(env(&[
                ("AUTH_LISTEN", addr),
                ("AUTH_STORE_URL", auth_store),
            ]))
        })
        .await;
        let (catalog, catalog_addr) = Service::start_listening("catalog-service", |addr| {
            with_extra(catalog_env(addr, catalog_store, &auth_addr))
        })
        .await;
        let (gateway, gateway_addr) = Service::start_listening("gateway", |addr| {
            with_extra(env(&[
                ("GATEWAY_LISTEN", addr),
                ("GATEWAY_AUTH_URL", &format!("http://{auth_addr}")),
                ("GATEWAY_CATALOG_URL", &format!("http://{catalog_addr}")),
                ("GATEWAY_GRPC_TIMEOUT_MS", "2000"),
                ("GATEWAY_LIST_PAGE", "3"),
                // The tests send many logins and registrations from one
                // address; the per-client limit is not what they test.
                ("GATEWAY_AUTH_PER_MINUTE", "1000000"),
            ]))
        })
        .await;
        Self {
            auth,
            catalog,
            gateway,
            base: format!("http://{gateway_addr}"),
            catalog_store: catalog_store.to_owned(),
            auth_addr,
            catalog_addr,
        }
    }

    /// The settings of another catalog-service replica, listening on `listen`.
    pub fn catalog_env(&self, listen: &str) -> Vec<(String, String)> {
        catalog_env(listen, &self.catalog_store, &self.auth_addr)
    }
}

fn catalog_env(listen: &str, store: &str, auth_addr: &str) -> Vec<(String, String)> {
    env(&[
        ("CATALOG_LISTEN", listen),
        ("CATALOG_STORE_URL", store),
        ("CATALOG_AUTH_URL", &format!("http://{auth_addr}")),
    ])
}

/// The value of the sample `series` (name and labels exactly as exposed)
/// in a Prometheus text exposition.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// Asserts that every family of `text` is declared once (`# TYPE`), as the
/// text format requires.
pub fn assert_families_once(text: &str) {
    let mut seen = std::collections::HashSet::new();
    for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
        let name = line.split_whitespace().nth(2).unwrap();
        assert!(seen.insert(name), "{name} declared twice:\n{text}");
    }
}

/// The Prometheus text `GET http://<addr>/metrics` answers.
pub async fn scrape(http: &reqwest::Client, addr: &str) -> String {
    let url = format!("http://{addr}/metrics");
    let answer = http.get(&url).send().await.unwrap();
    answer.text().await.unwrap()
}

/// A plain `pg_dump` of the database at `url`.
pub fn pg_dump(url: &str) -> Vec<u8> {
    let out = Command::new("pg_dump")
        .arg(url)
        .output()
        .expect("pg_dump runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}
