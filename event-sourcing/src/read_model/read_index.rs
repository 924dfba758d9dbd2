//! The store's head, asked once for many readers.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use event_store::{EventStore, EventStoreError, Result};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

/// The store's head as a shared question, answered in rounds (etcd's
/// ReadIndex, batched): a reader needs the answer of a head query that
/// started after it asked, so no reader gets a head older than its
/// question; every reader waiting when a query starts shares it, so the
/// store sees at most one query in flight per projection, not one per
/// reader. Readers cost no allocation and no message: they note the round
/// under way, ring, and wait for a later round's answer.
pub(crate) struct ReadIndex {
    /// Rounds started so far; round `n`'s query starts after `n` is stored.
    started: Arc<AtomicU64>,
    /// Rung by readers who need a new round.
    wanted: Arc<Notify>,
    /// The last round answered, and its answer.
    answers: watch::Receiver<(u64, Result<u64>)>,
    pub(crate) task: JoinHandle<()>,
}

impl ReadIndex {
    pub(crate) fn start(store: Arc<dyn EventStore>) -> Self {
        let started = Arc::new(AtomicU64::new(0));
        let wanted = Arc::new(Notify::new());
        let (answer, answers) = watch::channel((0, Ok(0)));
        let (rounds, rung) = (started.clone(), wanted.clone());
        let task = tokio::spawn(async move {
            loop {
                // A ring while a query was in flight left a permit: the
                // readers who rang then are served by the next round.
                rung.notified().await;
                let round = rounds.fetch_add(1, Ordering::SeqCst) + 1;
                let head = store.head_position().await;
                if answer.send((round, head)).is_err() {
                    return;
                }
            }
        });
        Self {
            started,
            wanted,
            answers,
            task,
        }
    }

    pub(crate) async fn head(&self) -> Result<u64> {
        let asked_during = self.started.load(Ordering::SeqCst);
        self.wanted.notify_one();
        let mut answers = self.answers.clone();
        let answer = answers
            .wait_for(|(round, _)| *round > asked_during)
            .await
            .map_err(|_| EventStoreError::Closed)?;
        answer.1.clone()
    }

    pub(crate) fn queries(&self) -> u64 {
        self.started.load(Ordering::Relaxed)
    }
}
