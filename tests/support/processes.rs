#![allow(dead_code)] // shared by two test binaries; each uses part of it
//! The three services as separate processes, from their real binaries:
//! shared by the crash test and the end-to-end suite's multi-process variant.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// A built binary of this workspace (`cargo build --bins` first).
pub fn bin(name: &str) -> PathBuf {
    // target/<profile>/deps/<test>-… → target/<profile>/<name>
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(|d| d.parent()).unwrap();
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --bins` first",
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
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("RUST_LOG", "error")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"))
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
    /// Starts all three (not yet ready: poll `/readyz`).
    pub fn start(auth_store: &str, catalog_store: &str) -> Self {
        let [auth_addr, catalog_addr, gateway_addr] =
            [(); 3].map(|_| format!("127.0.0.1:{}", free_port()));
        let auth = Service::start(
            "auth-service",
            env(&[("AUTH_LISTEN", &auth_addr), ("AUTH_STORE_URL", auth_store)]),
        );
        let catalog = Service::start(
            "catalog-service",
            catalog_env(&catalog_addr, catalog_store, &auth_addr),
        );
        let gateway = Service::start(
            "gateway",
            env(&[
                ("GATEWAY_LISTEN", &gateway_addr),
                ("GATEWAY_AUTH_URL", &format!("http://{auth_addr}")),
                ("GATEWAY_CATALOG_URL", &format!("http://{catalog_addr}")),
                ("GATEWAY_GRPC_TIMEOUT_MS", "2000"),
            ]),
        );
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
