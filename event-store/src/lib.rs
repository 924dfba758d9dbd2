//! An append-only event store: one [`EventStore`] trait, several backends.
//!
//! Every backend gives the same guarantees, checked by one conformance suite
//! (`tests/conformance`):
//!
//! - **Optimistic concurrency.** [`EventStore::append`] takes an
//!   [`ExpectedVersion`]; a mismatch is [`EventStoreError::WrongExpectedVersion`]
//!   and nothing is written. Under any concurrency exactly one of several
//!   writers expecting the same version wins.
//! - **Atomic, durable appends.** All events of one call are written or none
//!   are; when `append` returns `Ok`, the events survive a crash.
//! - **Idempotent retries.** Appending events whose ids are already stored, at
//!   the same place in the same stream, succeeds again without duplicates.
//! - **A gap-free global order for readers.** Every event gets a global
//!   position, strictly increasing in commit order. Once a reader has seen
//!   position `p`, no event with a position `< p` can appear later, so a
//!   subscriber that remembers its checkpoint never skips an event.
//!
//! Backends are chosen by URL with [`open`]: `sqlite://path/to/file.db`
//! (embedded, the default) or `postgres://user@host/db`.

mod decide;
pub mod decider;
mod error;
#[cfg(feature = "eventstoredb")]
pub mod esdb;
mod event;
mod group;
pub mod idempotency;
pub mod ids;
pub mod lease;
mod model;
mod open;
pub mod postgres;
pub mod read_model;
pub mod snapshot;
pub mod sqlite;
pub mod stats;
mod subscription;
pub mod trace;

use async_trait::async_trait;
use futures_util::stream::BoxStream;

pub(crate) use error::redact_url;
pub use error::{EventStoreError, Result};
pub use event::Event;
pub use model::{AppendResult, CurrentVersion, ExpectedVersion, NewEvent, RecordedEvent};
pub use open::{StoreUrl, open};
pub use subscription::SUBSCRIPTION_POLL_INTERVAL;

/// A stream of recorded events, as returned by [`EventStore::subscribe_all`].
///
/// It yields events in strictly increasing global position. It ends only after
/// yielding an error; re-subscribe from the last position seen plus one.
pub type EventStream = BoxStream<'static, Result<RecordedEvent>>;

/// The storage of every service: streams of events plus one global feed.
///
/// Stream versions start at 0 (the first event of a stream has version 0);
/// global positions start at 1, so position 0 means "from the beginning".
#[async_trait]
pub trait EventStore: Send + Sync + 'static {
    /// Appends `events` to `stream` if its current version matches `expected`.
    ///
    /// The events are written atomically and durably. Returns the stream's new
    /// version and the global position of the last event written. If the
    /// same event ids are already stored at this place of the stream (a client
    /// retry), returns the original result and writes nothing.
    async fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult>;

    /// Reads the events of `stream` with version `>= from_version`, in order.
    /// A stream that does not exist reads as empty.
    async fn read_stream(&self, stream: &str, from_version: u64) -> Result<Vec<RecordedEvent>>;

    /// Reads at most `limit` events of the global feed with position
    /// `>= from_position`, in increasing position order.
    async fn read_all(&self, from_position: u64, limit: usize) -> Result<Vec<RecordedEvent>>;

    /// The global position of the last committed event (0 when empty).
    async fn head_position(&self) -> Result<u64>;

    /// Whether other processes may append to this store (true unless the
    /// backend says otherwise). A read model fed by a shared store can lag
    /// a write acknowledged elsewhere, so its linearizable reads ask the
    /// store for its head first (see `read_model::Projection`); a store only
    /// this process writes needs no such question.
    fn shared(&self) -> bool {
        true
    }

    /// The store's read leases, if the backend keeps them (see
    /// [`lease`]): a read model holding one answers linearizable reads
    /// without asking the store, and appends wait until every holder has
    /// applied them.
    fn read_leases(&self) -> Option<std::sync::Arc<dyn lease::ReadLeases>> {
        None
    }

    /// The store's counters (append latency, group commit sizes, open feed
    /// subscriptions), if the backend keeps them.
    fn stats(&self) -> Option<std::sync::Arc<stats::StoreStats>> {
        None
    }

    /// Follows the global feed from `from_position` (inclusive): first every
    /// stored event, then each new one as it commits.
    fn subscribe_all(&self, from_position: u64) -> EventStream;
}

#[cfg(feature = "testing")]
pub mod testing;
