//! What a read model is: a pure fold over one service's events, and how
//! long readers wait for it.

use std::time::Duration;

use event_store::{Event, EventStore, EventStoreError, RecordedEvent, Result, ids};

/// A read model: a pure fold over one service's events (no I/O in `apply`).
pub trait ReadModel: Send + Sync + 'static {
    /// The events it folds.
    type Event: Event;

    /// Folds one event in. Called once per event, in global position order;
    /// `recorded` says where and when it was stored.
    fn apply(&mut self, event: Self::Event, recorded: &RecordedEvent);
}

/// How long [`super::Projection::wait_for`] waits for a position before giving up.
pub const APPLY_TIMEOUT: Duration = Duration::from_secs(5);

/// A committed position was not applied within [`APPLY_TIMEOUT`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("position {position} is committed but not yet applied to the read model")]
pub struct NotApplied {
    /// The position waited for.
    pub position: u64,
}

/// How long [`super::Projection::read_linearizable`] may take in all (asking the
/// head, waiting for it to be applied) before it gives up rather than
/// answer from a model that may be stale.
pub const READ_TIMEOUT: Duration = Duration::from_secs(2);

/// Why a linearizable read could not be served (never: a stale answer).
#[derive(Debug, Clone, thiserror::Error)]
pub enum StaleRead {
    /// The store could not say where its head is.
    #[error("cannot read the store's head: {0}")]
    Store(#[from] EventStoreError),
    /// The head was not applied within [`READ_TIMEOUT`].
    #[error(transparent)]
    NotApplied(#[from] NotApplied),
}

/// Folds one stored event into `model`: id allocations are not the model's
/// business; an event it cannot decode is logged and skipped.
pub(crate) fn fold<M: ReadModel>(model: &mut M, recorded: &RecordedEvent) {
    if ids::is_allocation(recorded) {
        return;
    }
    match M::Event::from_recorded(recorded) {
        Ok(event) => model.apply(event, recorded),
        Err(e) => tracing::warn!(error = %e, "skipping an event the read model cannot read"),
    }
}

/// Folds every stored event into `model`, reading the feed in batches;
/// returns it with the position of the last event read.
pub async fn rebuild<M: ReadModel>(store: &dyn EventStore, mut model: M) -> Result<(M, u64)> {
    let mut checkpoint = 0;
    loop {
        let batch = store.read_all(checkpoint + 1, 10_000).await?;
        let Some(last) = batch.last() else {
            return Ok((model, checkpoint));
        };
        checkpoint = last.position;
        for recorded in &batch {
            fold(&mut model, recorded);
        }
    }
}
