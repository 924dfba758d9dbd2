use std::path::PathBuf;
use std::sync::Arc;

use event_store::EventStore;
#[cfg(feature = "eventstoredb")]
use event_store::esdb::EsdbStore;
use event_store::postgres::PostgresStore;
use event_store::sqlite::SqliteStore;
use event_store::testing::TempDatabase;

enum Location {
    Sqlite(#[allow(dead_code)] tempfile::TempDir, PathBuf),
    Postgres(TempDatabase),
    #[cfg(feature = "eventstoredb")]
    Esdb(String),
}

/// A store on a fresh location (or, on a shared server, a fresh corner of
/// it), which can be opened again.
pub struct Harness {
    location: Location,
    pub store: Arc<dyn EventStore>,
    /// The first global position this test can see as its own.
    pub origin: u64,
    /// Prepended to every stream name (empty where the store is fresh).
    prefix: String,
    #[allow(dead_code)]
    exclusive: Option<tokio::sync::MutexGuard<'static, ()>>,
}

impl Harness {
    pub async fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("nested/dir/events.db");
        let store = Arc::new(SqliteStore::open(path.clone()).await.expect("open sqlite"));
        Self::fresh(Location::Sqlite(dir, path), store)
    }

    pub async fn postgres(test: &str) -> Option<Self> {
        let db = TempDatabase::create(test).await?;
        let store = Arc::new(
            PostgresStore::connect(db.url())
                .await
                .expect("connect postgres"),
        );
        Some(Self::fresh(Location::Postgres(db), store))
    }

    fn fresh(location: Location, store: Arc<dyn EventStore>) -> Self {
        Self {
            location,
            store,
            origin: 1,
            prefix: String::new(),
            exclusive: None,
        }
    }

    /// The stream this test calls `name`.
    pub fn s(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// EventStoreDB at `EVENTSTORE_URL`, or `None` (with a notice) without
    /// one. The server is shared: each test gets its own stream prefix, and
    /// the tests take turns so that each sees only its own global feed.
    #[cfg(feature = "eventstoredb")]
    pub async fn esdb(test: &str) -> Option<Self> {
        static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
        let Ok(url) = std::env::var("EVENTSTORE_URL") else {
            eprintln!(
                "NOTICE: EventStoreDB test {test} NOT RUN: set EVENTSTORE_URL (e.g. esdb://127.0.0.1:2113?tls=false)"
            );
            return None;
        };
        let exclusive = TURN.lock().await;
        let store = Arc::new(
            EsdbStore::connect(&url)
                .await
                .expect("connect eventstoredb"),
        );
        let origin = store.head_position().await.unwrap() + 1;
        Some(Self {
            location: Location::Esdb(url),
            store,
            origin,
            prefix: format!("t{}-", uuid::Uuid::new_v4().simple()),
            exclusive: Some(exclusive),
        })
    }

    /// A second, independent store on the same file or database.
    pub async fn reopen(&self) -> Arc<dyn EventStore> {
        match &self.location {
            Location::Sqlite(_, path) => Arc::new(SqliteStore::open(path.clone()).await.unwrap()),
            Location::Postgres(db) => Arc::new(PostgresStore::connect(db.url()).await.unwrap()),
            #[cfg(feature = "eventstoredb")]
            Location::Esdb(url) => Arc::new(EsdbStore::connect(url).await.unwrap()),
        }
    }
}
