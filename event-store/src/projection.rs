//! In-memory read models kept current by following the global feed.

use std::sync::{Arc, RwLock, RwLockReadGuard};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::{EventStore, RecordedEvent, Result};

/// A read model: a pure fold over recorded events (no I/O in `apply`).
pub trait ReadModel: Send + Sync + 'static {
    /// Folds one event in. Called once per event, in global position order.
    fn apply(&mut self, event: &RecordedEvent);
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
        let projection = Self {
            model,
            applied,
            task,
        };
        let mut applied = projection.applied.clone();
        // Fails only if the follower task died, which it does not by itself.
        let _ = applied.wait_for(|&p| p >= head).await;
        Ok(projection)
    }

    /// Reads the model. Hold the guard briefly: the follower waits for it.
    pub fn read(&self) -> RwLockReadGuard<'_, M> {
        self.model.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The global position of the last event applied.
    pub fn applied(&self) -> u64 {
        *self.applied.borrow()
    }

    /// Waits (at most `timeout`) until the event at `position` is applied;
    /// answers whether it is.
    pub async fn wait_for(&self, position: u64, timeout: Duration) -> bool {
        let mut applied = self.applied.clone();
        matches!(
            tokio::time::timeout(timeout, applied.wait_for(|&p| p >= position)).await,
            Ok(Ok(_))
        )
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
                Ok(event) => {
                    model
                        .write()
                        .unwrap_or_else(|p| p.into_inner())
                        .apply(&event);
                    applied.send_replace(event.position);
                }
                Err(e) => {
                    tracing::warn!(error = %e, from, "projection subscription failed; retrying");
                    break;
                }
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
