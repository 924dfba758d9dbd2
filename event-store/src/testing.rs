//! Test support shared by every crate's tests (feature `testing`): a
//! throwaway store per test, an SQLite file in a temporary directory or a
//! PostgreSQL database created fresh and dropped after.

use std::time::Duration;

use tokio_postgres::NoTls;

/// The server tests use: `DATABASE_URL`, by default the local one.
pub fn admin_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// Whether a missing server must fail the tests instead of skipping them.
pub fn postgres_required() -> bool {
    std::env::var("MOVIES_REQUIRE_POSTGRES").is_ok_and(|v| v == "1")
}

/// A database created for one test and dropped (even after a panic) when
/// this value is dropped.
pub struct TempDatabase {
    name: String,
    url: String,
}

impl TempDatabase {
    /// Creates a fresh database, or returns `None` (after printing a notice)
    /// when no server answers. Panics instead when `MOVIES_REQUIRE_POSTGRES=1`.
    pub async fn create(test: &str) -> Option<Self> {
        let admin = admin_url();
        let client = match connect(&admin).await {
            Ok(c) => c,
            Err(e) if postgres_required() => {
                panic!("MOVIES_REQUIRE_POSTGRES=1 but PostgreSQL at {admin} is unreachable: {e}")
            }
            Err(e) => {
                eprintln!("NOTICE: skipping PostgreSQL test {test}: {admin} unreachable ({e})");
                return None;
            }
        };
        let name = format!("movies_test_{}", uuid::Uuid::new_v4().simple());
        // As README's set-up does: only roles granted CONNECT may connect.
        // (Two statements: CREATE DATABASE cannot run in a transaction.)
        for sql in [
            format!("CREATE DATABASE {name}"),
            format!("REVOKE CONNECT, TEMP ON DATABASE {name} FROM PUBLIC"),
        ] {
            client
                .batch_execute(&sql)
                .await
                .unwrap_or_else(|e| panic!("cannot create test database {name}: {e:?}"));
        }
        let url = with_database(&admin, &name);
        Some(Self { name, url })
    }

    /// The URL of the fresh database.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A role of its own that may connect to this database and nothing
    /// more (no privilege on any table), connected: what an attacker with
    /// some other login to the server has. Dropped with the value.
    pub async fn outsider(&self) -> Outsider {
        let role = format!("movies_outsider_{}", uuid::Uuid::new_v4().simple());
        let admin = connect(&admin_url()).await.expect("the admin connects");
        admin
            .batch_execute(&format!(
                "CREATE ROLE {role} LOGIN; GRANT CONNECT ON DATABASE {} TO {role}",
                self.name
            ))
            .await
            .expect("an outsider role");
        let mut config: tokio_postgres::Config = self.url.parse().expect("a URL");
        config.user(&role);
        let (client, connection) = config.connect(NoTls).await.expect("the outsider connects");
        tokio::spawn(connection);
        Outsider {
            client,
            role,
            database: self.name.clone(),
        }
    }
}

/// A role with no privilege but CONNECT, connected (see
/// [`TempDatabase::outsider`]).
pub struct Outsider {
    /// Its connection.
    pub client: tokio_postgres::Client,
    role: String,
    database: String,
}

impl Drop for Outsider {
    fn drop(&mut self) {
        let sql = format!(
            "REVOKE ALL ON DATABASE {} FROM {role}; DROP ROLE IF EXISTS {role}",
            self.database,
            role = self.role
        );
        as_admin_on_drop(sql, "a test role");
    }
}

impl Drop for TempDatabase {
    fn drop(&mut self) {
        let name = std::mem::take(&mut self.name);
        let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
        as_admin_on_drop(sql, &format!("test database {name}"));
    }
}

/// Runs `sql` as the admin, from a `Drop`: that may run inside a runtime
/// (or during a panic), so on a thread and a runtime of its own. A failure
/// is printed, naming `what`.
fn as_admin_on_drop(sql: String, what: &str) {
    let what = what.to_owned();
    let done = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build();
        let Ok(rt) = rt else { return };
        rt.block_on(async {
            if let Ok(client) = connect(&admin_url()).await
                && let Err(e) = client.batch_execute(&sql).await
            {
                eprintln!("could not drop {what}: {e}");
            }
        });
    });
    let _ = done.join();
}

/// A store for one test, removed when dropped.
pub enum TempStore {
    /// An SQLite file in a temporary directory.
    Sqlite {
        /// `sqlite://…` of the file.
        url: String,
        /// Removed on drop.
        dir: tempfile::TempDir,
    },
    /// A fresh PostgreSQL database.
    Postgres(TempDatabase),
}

impl TempStore {
    /// An SQLite store in a new temporary directory.
    pub fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let url = format!("sqlite://{}", dir.path().join("events.db").display());
        Self::Sqlite { url, dir }
    }

    /// A fresh PostgreSQL database, or `None` as [`TempDatabase::create`].
    pub async fn postgres(test: &str) -> Option<Self> {
        TempDatabase::create(test).await.map(Self::Postgres)
    }

    /// The store's URL, for `event_store::open` or a service's config.
    pub fn url(&self) -> &str {
        match self {
            Self::Sqlite { url, .. } => url,
            Self::Postgres(db) => db.url(),
        }
    }
}

async fn connect(url: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let mut config: tokio_postgres::Config = url.parse()?;
    config.connect_timeout(Duration::from_secs(3));
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

/// `url` with its database name replaced by `db`.
fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let base = match base[scheme_end..].find('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    format!("{base}/{db}{query}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn database_name_is_replaced() {
        assert_eq!(
            super::with_database("postgres://u@h:5432/postgres?sslmode=disable", "x"),
            "postgres://u@h:5432/x?sslmode=disable"
        );
        assert_eq!(
            super::with_database("postgres://u@h", "x"),
            "postgres://u@h/x"
        );
    }
}
