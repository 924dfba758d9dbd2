//! The one read-model path: a pure fold over a store's global feed, kept in
//! memory, current from start-up on, and a bounded wait for a position.

use std::sync::{Arc, RwLock, RwLockReadGuard};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::{Event, EventStore, RecordedEvent, Result, ids};

/// A read model: a pure fold over one service's events (no I/O in `apply`).
pub trait ReadModel: Send + Sync + 'static {
    /// The events it folds.
    type Event: Event;

    /// Folds one event in. Called once per event, in global position order;
    /// `recorded` says where and when it was stored.
    fn apply(&mut self, event: Self::Event, recorded: &RecordedEvent);
}

/// How long [`Projection::wait_for`] waits for a position before giving up.
pub const APPLY_TIMEOUT: Duration = Duration::from_secs(5);

/// A committed position was not applied within [`APPLY_TIMEOUT`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("position {position} is committed but not yet applied to the read model")]
pub struct NotApplied {
    /// The position waited for.
    pub position: u64,
}

/// Folds one stored event into `model`: id allocations are not the model's
/// business; an event it cannot decode is logged and skipped.
fn fold<M: ReadModel>(model: &mut M, recorded: &RecordedEvent) {
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

/// A read model fed by a subscription to a store's global feed, from the
/// beginning. Dropping it stops the subscription.
pub struct Projection<M> {
    model: Arc<RwLock<M>>,
    applied: watch::Receiver<u64>,
    task: JoinHandle<()>,
}

impl<M> Drop for Projection<M> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl<M: ReadModel> Projection<M> {
    /// Starts following `store` from position 0 into `model`, and returns once
    /// every event committed before the call is applied.
    pub async fn start(store: Arc<dyn EventStore>, model: M) -> Result<Self> {
        let head = store.head_position().await?;
        let model = Arc::new(RwLock::new(model));
        let (applied_tx, applied) = watch::channel(0);
        let task = tokio::spawn(follow(store, model.clone(), applied_tx));
        let mut caught_up = applied.clone();
        // Fails only if the follower task died, which it does not by itself.
        let _ = caught_up.wait_for(|&p| p >= head).await;
        Ok(Self {
            model,
            applied,
            task,
        })
    }

    /// Reads the model. Hold the guard briefly: the follower waits for it.
    pub fn read(&self) -> RwLockReadGuard<'_, M> {
        self.model.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits, at most [`APPLY_TIMEOUT`], until the event at `position` is applied.
    pub async fn wait_for(&self, position: u64) -> Result<(), NotApplied> {
        let mut applied = self.applied.clone();
        match tokio::time::timeout(APPLY_TIMEOUT, applied.wait_for(|&p| p >= position)).await {
            Ok(Ok(_)) => Ok(()),
            _ => {
                tracing::error!(
                    position,
                    "the read model did not apply a committed event in time"
                );
                Err(NotApplied { position })
            }
        }
    }
}

async fn follow<M: ReadModel>(
    store: Arc<dyn EventStore>,
    model: Arc<RwLock<M>>,
    applied: watch::Sender<u64>,
) {
    loop {
        let from = *applied.borrow() + 1;
        let mut events = store.subscribe_all(from);
        while let Some(next) = events.next().await {
            match next {
                Ok(recorded) => {
                    fold(
                        &mut *model.write().unwrap_or_else(|p| p.into_inner()),
                        &recorded,
                    );
                    applied.send_replace(recorded.position);
                }
                Err(e) => {
                    tracing::warn!(error = %e, from, "read model subscription failed; retrying");
                    break;
                }
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
