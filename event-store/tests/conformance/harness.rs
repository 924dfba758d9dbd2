use std::path::PathBuf;
use std::sync::Arc;

use event_store::EventStore;
use event_store::postgres::PostgresStore;
use event_store::sqlite::SqliteStore;
use event_store::testing::TempDatabase;

enum Location {
    Sqlite(#[allow(dead_code)] tempfile::TempDir, PathBuf),
    Postgres(TempDatabase),
}

/// A store on a fresh location, which can be opened again.
pub struct Harness {
    location: Location,
    pub store: Arc<dyn EventStore>,
}

impl Harness {
    pub async fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("nested/dir/events.db");
        let store = Arc::new(SqliteStore::open(path.clone()).await.expect("open sqlite"));
        Self {
            location: Location::Sqlite(dir, path),
            store,
        }
    }

    pub async fn postgres(test: &str) -> Option<Self> {
        let db = TempDatabase::create(test).await?;
        let store = Arc::new(
            PostgresStore::connect(db.url())
                .await
                .expect("connect postgres"),
        );
        Some(Self {
            location: Location::Postgres(db),
            store,
        })
    }

    /// A second, independent store on the same file or database.
    pub async fn reopen(&self) -> Arc<dyn EventStore> {
        match &self.location {
            Location::Sqlite(_, path) => Arc::new(SqliteStore::open(path.clone()).await.unwrap()),
            Location::Postgres(db) => Arc::new(PostgresStore::connect(db.url()).await.unwrap()),
        }
    }
}
