use std::sync::Arc;

use uuid::Uuid;

use crate::model::{CurrentVersion, ExpectedVersion};

/// Everything that can go wrong in an event store.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EventStoreError {
    /// The stream was not at the version the caller expected; nothing was written.
    #[error("wrong expected version for stream {stream:?}: expected {expected}, actual {actual}")]
    WrongExpectedVersion {
        /// The stream appended to.
        stream: String,
        /// What the caller expected.
        expected: ExpectedVersion,
        /// What the stream was at.
        actual: CurrentVersion,
    },
    /// An event id is already stored somewhere else than where this append
    /// would retry it (ids are unique across the whole store).
    #[error("event id {0} is already stored elsewhere")]
    DuplicateEventId(Uuid),
    /// The caller passed something no backend accepts (no events, an empty stream name...).
    #[error("invalid append: {0}")]
    InvalidAppend(&'static str),
    /// A domain event could not be encoded (a bug: see [`crate::Event`]).
    #[error("invalid event: {0}")]
    InvalidEvent(String),
    /// The store URL could not be understood.
    #[error("invalid event store URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL, with any password removed.
        url: String,
        /// Why it was refused.
        reason: String,
    },
    /// A stored event could not be decoded (the store was written by something else).
    #[error("corrupt event at position {position}: {reason}")]
    Corrupt {
        /// Its global position.
        position: u64,
        /// What was wrong.
        reason: String,
    },
    /// The events are stored at `position`, but the read replicas holding
    /// read leases could not all be confirmed to hold them in time (see
    /// [`crate::lease`]): the write stands, its visibility elsewhere is
    /// not promised yet.
    #[error("stored at position {position}, but not confirmed on every read replica")]
    Unconfirmed {
        /// The last position written.
        position: u64,
    },
    /// The backend cannot do this (see the method's documentation).
    #[error("not supported by this backend: {0}")]
    Unsupported(&'static str),
    /// Events handed to [`crate::EventStore::import`] do not follow the
    /// store's head in increasing position order; nothing was written.
    #[error("cannot import position {position}: the store's head is at {head}")]
    ImportOutOfOrder {
        /// The first position out of order.
        position: u64,
        /// The position it had to be above.
        head: u64,
    },
    /// A read lease is live on the store: some service reads it now, and an
    /// import would not be acknowledged by it (see [`crate::EventStore::import`]).
    #[error("a service holds a read lease on this store: stop it before importing")]
    InUse,
    /// The store has been shut down.
    #[error("the event store is shut down")]
    Closed,
    /// The database failed (I/O, connection, unexpected SQL error).
    #[error("{backend} error: {source}")]
    Backend {
        /// Which backend: "sqlite", "postgres".
        backend: &'static str,
        /// The cause.
        #[source]
        source: Arc<dyn std::error::Error + Send + Sync>,
    },
}

impl EventStoreError {
    pub(crate) fn backend(
        backend: &'static str,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self::Backend {
            backend,
            source: Arc::new(source),
        }
    }
}

/// `Result` with [`EventStoreError`] as the default error.
pub type Result<T, E = EventStoreError> = std::result::Result<T, E>;

/// Removes a password from a URL so it can be logged or shown in an error.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, tail) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((userinfo, host)) if userinfo.contains(':') => {
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:***@{host}{tail}")
        }
        _ => url.to_owned(),
    }
}
