//! The one trait every backend implements.

use async_trait::async_trait;
use futures_util::stream::BoxStream;

use crate::error::Result;
use crate::lease::ReadLeases;
use crate::model::{AppendResult, ExpectedVersion, NewEvent, RecordedEvent};
use crate::stats::StoreStats;

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

    /// The events at `positions`, in position order, each once; a position
    /// that holds no event is left out. For reads of a few scattered
    /// events that a read model points at (a user's security log): one
    /// query where the backend allows. The default reads them one by one.
    async fn read_positions(&self, positions: &[u64]) -> Result<Vec<RecordedEvent>> {
        let mut wanted = positions.to_vec();
        wanted.sort_unstable();
        wanted.dedup();
        let mut found = Vec::with_capacity(wanted.len());
        for position in wanted {
            let mut events = self.read_all(position, 1).await?;
            if let Some(event) = events.pop().filter(|e| e.position == position) {
                found.push(event);
            }
        }
        Ok(found)
    }

    /// Writes `events` exactly as another store recorded them (positions,
    /// stream versions, ids, types, data, metadata and times), all or none,
    /// in one transaction; returns the new head. This is how `copy` fills a
    /// new store: it is not an append (no expected version is checked and
    /// no read lease waits for it), so it refuses a store with a live read
    /// lease ([`EventStoreError::InUse`]) and positions that are not
    /// strictly increasing above the head
    /// ([`EventStoreError::ImportOutOfOrder`]). Unique ids and
    /// `(stream, version)` pairs are still enforced by the database.
    ///
    /// [`EventStoreError::InUse`]: crate::EventStoreError::InUse
    /// [`EventStoreError::ImportOutOfOrder`]: crate::EventStoreError::ImportOutOfOrder
    async fn import(&self, events: Vec<RecordedEvent>) -> Result<u64> {
        let _ = events;
        Err(crate::EventStoreError::Unsupported(
            "importing events at given positions and times",
        ))
    }

    /// The global position of the last committed event (0 when empty).
    async fn head_position(&self) -> Result<u64>;

    /// The 32-byte secret named `name` this store's database keeps beside
    /// the events (table `es_secrets`), made at random on first use: for
    /// what must be kept where the files a service writes are not (the
    /// key its snapshots are tagged under). Not in the log, so neither a
    /// copy nor a subscription carries it.
    async fn secret(&self, name: &str) -> Result<[u8; 32]> {
        let _ = name;
        Err(crate::EventStoreError::Unsupported(
            "keeping secrets beside the events",
        ))
    }

    /// Whether other processes may append to this store (true unless the
    /// backend says otherwise). A read model fed by a shared store can lag
    /// a write acknowledged elsewhere, so its linearizable reads ask the
    /// store for its head first (see `read_model::Projection`); a store only
    /// this process writes needs no such question.
    fn shared(&self) -> bool {
        true
    }

    /// The store's read leases, if the backend keeps them (see
    /// [`crate::lease`]): a read model holding one answers linearizable reads
    /// without asking the store, and appends wait until every holder has
    /// applied them.
    fn read_leases(&self) -> Option<std::sync::Arc<dyn ReadLeases>> {
        None
    }

    /// The store's counters (append latency, group commit sizes, open feed
    /// subscriptions), if the backend keeps them.
    fn stats(&self) -> Option<std::sync::Arc<StoreStats>> {
        None
    }

    /// The store's consumer-group tables, if the backend keeps them (see
    /// [`crate::groups`]).
    fn groups(&self) -> Option<std::sync::Arc<dyn crate::groups::Groups>> {
        None
    }

    /// Follows the global feed from `from_position` (inclusive): first every
    /// stored event, then each new one as it commits.
    fn subscribe_all(&self, from_position: u64) -> EventStream;
}

/// 32 random bytes, for [`EventStore::secret`].
pub(crate) fn fresh_secret() -> crate::Result<[u8; 32]> {
    let mut bytes = [0; 32];
    getrandom::fill(&mut bytes).map_err(|e| {
        crate::EventStoreError::backend("random", std::io::Error::other(e.to_string()))
    })?;
    Ok(bytes)
}

/// A secret as the database keeps it: exactly 32 bytes, or damage.
pub(crate) fn secret_of(value: &[u8]) -> crate::Result<[u8; 32]> {
    value
        .try_into()
        .map_err(|_| crate::EventStoreError::Corrupt {
            position: 0,
            reason: format!("a secret of {} bytes, not 32", value.len()),
        })
}
