use std::path::PathBuf;
use std::sync::Arc;

use crate::error::{EventStoreError, Result, redact_url};
use crate::postgres::PostgresStore;
use crate::sqlite::SqliteStore;
use crate::store::EventStore;

/// A parsed event store URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUrl {
    /// `sqlite://relative/path.db` or `sqlite:///absolute/path.db`.
    Sqlite(PathBuf),
    /// `postgres://...` or `postgresql://...`, handed to tokio-postgres as is.
    Postgres(String),
    /// `esdb://host:2113?tls=false` (or `esdb+discover://`): EventStoreDB,
    /// when built with the `eventstoredb` feature.
    EventStoreDb(String),
}

impl StoreUrl {
    /// Parses `url`; an unknown scheme or an empty path is an
    /// [`EventStoreError::InvalidUrl`].
    pub fn parse(url: &str) -> Result<Self> {
        let invalid = |reason: &str| EventStoreError::InvalidUrl {
            url: redact_url(url),
            reason: reason.to_owned(),
        };
        if let Some(path) = url.strip_prefix("sqlite://") {
            let path = path.split('?').next().unwrap_or_default();
            if path.is_empty() {
                return Err(invalid("expected sqlite://path/to/file.db"));
            }
            Ok(Self::Sqlite(PathBuf::from(path)))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Self::Postgres(url.to_owned()))
        } else if url.starts_with("esdb://") || url.starts_with("esdb+discover://") {
            Ok(Self::EventStoreDb(url.to_owned()))
        } else {
            Err(invalid(
                "unknown scheme; expected sqlite://path/to/file.db, postgres://user@host/db or esdb://host:2113",
            ))
        }
    }
}

/// Opens the store `url` names, creating its schema (or file) if needed.
///
/// A bad URL or an unreachable database is an error here, at start-up.
pub async fn open(url: &str) -> Result<Arc<dyn EventStore>> {
    Ok(match StoreUrl::parse(url)? {
        StoreUrl::Sqlite(path) => Arc::new(SqliteStore::open(path).await?),
        StoreUrl::Postgres(url) => Arc::new(PostgresStore::connect(&url).await?),
        #[cfg(feature = "eventstoredb")]
        StoreUrl::EventStoreDb(url) => Arc::new(crate::esdb::EsdbStore::connect(&url).await?),
        #[cfg(not(feature = "eventstoredb"))]
        StoreUrl::EventStoreDb(url) => {
            return Err(EventStoreError::InvalidUrl {
                url: redact_url(&url),
                reason: "this build has no EventStoreDB backend (cargo feature event-store/eventstoredb)"
                    .into(),
            });
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_by_scheme() {
        assert_eq!(
            StoreUrl::parse("sqlite://data/auth.db").unwrap(),
            StoreUrl::Sqlite("data/auth.db".into())
        );
        assert_eq!(
            StoreUrl::parse("sqlite:///tmp/x.db").unwrap(),
            StoreUrl::Sqlite("/tmp/x.db".into())
        );
        assert!(matches!(
            StoreUrl::parse("postgres://u@h/db").unwrap(),
            StoreUrl::Postgres(_)
        ));
        assert!(StoreUrl::parse("sqlite://").is_err());
        assert!(StoreUrl::parse("mysql://x").is_err());
        assert!(StoreUrl::parse("").is_err());
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact_url("postgres://h/db"), "postgres://h/db");
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
    }
}
