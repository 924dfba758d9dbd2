//! The one read-model path: a pure fold over a store's global feed, kept in
//! memory, current from start-up on, and a bounded wait for a position.

use std::future::Future;

use std::pin::Pin;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use uuid::Uuid;

use event_store::{EventStore, Result};

use super::lease::Lease;
use super::model::{APPLY_TIMEOUT, NotApplied, READ_TIMEOUT, ReadModel, StaleRead, fold};
use super::read_index::ReadIndex;
use super::saver::{ApplyTurn, Last, Saved, Saver, SnapshotPolicy, load_snapshot, save_when_due};
use super::snapshot::{Encoder, Snapshot};

/// Where a linearizable read must be served from: the store's head when the
/// read began (on a shared store), to be applied before the read answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadPoint {
    head: Option<u64>,
    asked: tokio::time::Instant,
}

/// A read model fed by a subscription to a store's global feed, from the
/// beginning or from a snapshot. Dropping it stops the subscription.
pub struct Projection<M> {
    model: Arc<RwLock<M>>,
    applied: watch::Receiver<u64>,
    task: JoinHandle<()>,
    /// For a shared store only (see [`EventStore::shared`]).
    read_index: Option<ReadIndex>,
    /// For a shared store that keeps read leases (see [`super::lease`]):
    /// while it is valid, linearizable reads need no head query.
    lease: Option<Lease>,
    store: Arc<dyn EventStore>,
    /// Updated under the model's write lock, with each event applied.
    last: Last,
    applying: ApplyTurn,
    /// The position of the snapshot it started from, if any.
    started_from: Option<u64>,
    /// Saves snapshots, when configured.
    saver: Option<(Arc<Saver>, JoinHandle<()>)>,
}

impl<M> Drop for Projection<M> {
    fn drop(&mut self) {
        self.task.abort();
        if let Some(index) = &self.read_index {
            index.task.abort();
        }
        if let Some((_, task)) = &self.saver {
            task.abort();
        }
        if let Some(lease) = &self.lease {
            lease.release_soon();
        }
    }
}

impl<M: ReadModel> Projection<M> {
    /// Starts following `store` from position 0 into `model`, and returns once
    /// every event committed before the call is applied.
    pub async fn start(store: Arc<dyn EventStore>, model: M) -> Result<Self> {
        Self::start_at(store, model, (0, Uuid::nil())).await
    }

    /// Starts following `store` after `last` (the position and id of the
    /// last event `model` holds), and returns once every event committed
    /// before the call is applied.
    async fn start_at(store: Arc<dyn EventStore>, model: M, last: (u64, Uuid)) -> Result<Self> {
        let head = store.head_position().await?;
        let read_index = store.shared().then(|| ReadIndex::start(store.clone()));
        let model = Arc::new(RwLock::new(model));
        let (applied_tx, applied) = watch::channel(last.0);
        let last = Arc::new(Mutex::new(last));
        let applying = ApplyTurn::default();
        let task = tokio::spawn(follow(
            store.clone(),
            model.clone(),
            applied_tx,
            (last.clone(), applying.clone()),
            head,
        ));
        let mut caught_up = applied.clone();
        // Fails only if the follower task died, which it does not by itself.
        let _ = caught_up.wait_for(|&p| p >= head).await;
        let lease = match store.read_leases() {
            Some(leases) if store.shared() => {
                Some(Lease::start(leases, store.clone(), applied.clone()))
            }
            _ => None,
        };
        Ok(Self {
            model,
            applied,
            task,
            read_index,
            lease,
            store,
            last,
            applying,
            started_from: None,
            saver: None,
        })
    }

    /// Reads the model as it is here now: it holds every write this process
    /// acknowledged, but a write acknowledged by another process on a
    /// shared store may not have arrived yet (see
    /// [`Projection::read_linearizable`]). Hold the guard briefly: the
    /// follower waits for it.
    pub fn read(&self) -> RwLockReadGuard<'_, M> {
        self.model.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Reads the model once it holds every write acknowledged anywhere
    /// before this call: on a shared store, under a valid read lease (see
    /// [`super::lease`]) at once; else it asks the store's head (batched
    /// with concurrent readers) and waits until that is applied, within
    /// [`READ_TIMEOUT`] in all. On a store only this process writes, it is
    /// [`Projection::read`].
    pub async fn read_linearizable(&self) -> Result<RwLockReadGuard<'_, M>, StaleRead> {
        let point = self.read_point().await?;
        self.read_at(point).await
    }

    /// The first half of [`Projection::read_linearizable`]: where a read
    /// that begins now must be served from. Ask it as soon as the read
    /// begins (e.g. while the caller's token is being checked), then
    /// [`Projection::read_at`].
    pub async fn read_point(&self) -> Result<ReadPoint, StaleRead> {
        let asked = tokio::time::Instant::now();
        let Some(index) = &self.read_index else {
            return Ok(ReadPoint { head: None, asked });
        };
        if self.lease.as_ref().is_some_and(Lease::covers_now) {
            return Ok(ReadPoint { head: None, asked });
        }
        match tokio::time::timeout(READ_TIMEOUT, index.head()).await {
            Ok(head) => Ok(ReadPoint {
                head: Some(head?),
                asked,
            }),
            Err(_) => Err(NotApplied { position: 0 }.into()),
        }
    }

    /// The second half of [`Projection::read_linearizable`]: reads the
    /// model once `point` is applied (within [`READ_TIMEOUT`] of asking).
    pub async fn read_at(&self, point: ReadPoint) -> Result<RwLockReadGuard<'_, M>, StaleRead> {
        if let Some(head) = point.head {
            let left = READ_TIMEOUT.saturating_sub(point.asked.elapsed());
            self.wait_within(head, left).await?;
        }
        Ok(self.read())
    }

    /// Saves a snapshot now, if snapshots are configured and events were
    /// applied since the last (`Ok(None)` otherwise): what a service does
    /// as it stops, so that it starts again without a replay.
    pub async fn save_snapshot(&self) -> std::io::Result<Option<Saved>> {
        match &self.saver {
            Some((saver, _)) => saver.save().await,
            None => Ok(None),
        }
    }

    /// What a service does with its read model as it stops: gives up its
    /// read lease (writers stop waiting for it at once), logs its totals
    /// and saves its final snapshot.
    pub async fn close(&self) {
        if let Some(lease) = &self.lease {
            lease.release().await;
        }
        self.log_totals();
        self.save_final_snapshot().await;
    }

    /// [`Projection::save_snapshot`] as a service stops: a failure is
    /// logged (the next start replays more), not an error.
    pub async fn save_final_snapshot(&self) {
        if let Err(e) = self.save_snapshot().await {
            tracing::warn!(error = %e, "could not save the read-model snapshot at stop");
        }
    }

    /// The position of the snapshot this projection started from, if it
    /// started from one.
    pub fn started_from(&self) -> Option<u64> {
        self.started_from
    }

    /// The position of the last event applied.
    pub fn applied_position(&self) -> u64 {
        *self.applied.borrow()
    }

    /// This projection's gauges in the Prometheus text format, labelled
    /// `model="<model>"`: the position applied, the store's head, how far
    /// behind the head the model is (in positions), the head queries made
    /// for linearizable reads and the reads served under a read lease;
    /// then the store's own counters, labelled `store="<model>"` (see
    /// [`event_store::stats`]). The head is read now (one query).
    pub async fn metrics_text(&self, model: &str, store: &dyn EventStore) -> String {
        let applied = self.applied_position();
        let mut out = format!(
            "# TYPE projection_applied_position gauge\n\
             projection_applied_position{{model=\"{model}\"}} {applied}\n\
             # TYPE read_index_head_queries_total counter\n\
             read_index_head_queries_total{{model=\"{model}\"}} {}\n\
             # TYPE read_lease_reads_total counter\n\
             read_lease_reads_total{{model=\"{model}\"}} {}\n",
            self.head_queries(),
            self.lease_reads()
        );
        if let Some(stats) = store.stats() {
            out.push_str(&stats.render(model));
        }
        if let Ok(head) = store.head_position().await {
            out.push_str(&format!(
                "# TYPE store_head_position gauge\n\
                 store_head_position{{model=\"{model}\"}} {head}\n\
                 # TYPE projection_lag_positions gauge\n\
                 projection_lag_positions{{model=\"{model}\"}} {}\n",
                head.saturating_sub(applied)
            ));
        }
        out
    }

    /// [`Projection::metrics_text`] as a function to call for each scrape.
    pub fn metrics_source(
        self: &Arc<Self>,
        model: &'static str,
        store: Arc<dyn EventStore>,
    ) -> impl Fn() -> Pin<Box<dyn Future<Output = String> + Send>> + Send + Sync + 'static {
        let view = Arc::clone(self);
        move || {
            let (view, store) = (view.clone(), store.clone());
            Box::pin(async move { view.metrics_text(model, &*store).await })
        }
    }

    /// Logs what a service reports of its read model when it stops.
    pub fn log_totals(&self) {
        let (head_queries, lease_reads) = (self.head_queries(), self.lease_reads());
        let (lease_renewals, lease_reports) = self.lease.as_ref().map_or((0, 0), Lease::sent);
        tracing::info!(
            head_queries,
            lease_reads,
            lease_renewals,
            lease_reports,
            "store head queries made for linearizable reads, reads under a lease, and what the lease sent"
        );
    }

    /// How many linearizable reads were answered under a read lease,
    /// without a head query.
    pub fn lease_reads(&self) -> u64 {
        self.lease.as_ref().map_or(0, Lease::reads)
    }

    /// How many head queries linearizable reads have made (for benchmarks:
    /// it should stay far below the number of reads).
    pub fn head_queries(&self) -> u64 {
        self.read_index.as_ref().map_or(0, ReadIndex::queries)
    }

    /// Waits until the model holds every event committed so far, by any
    /// writer. After a conflict with another request's event (committed,
    /// maybe not yet applied), this makes it visible even on a store only
    /// this process writes, where [`Projection::read_linearizable`]
    /// promises only what this process acknowledged.
    pub async fn catch_up(&self) -> Result<(), StaleRead> {
        let head = self.store.head_position().await?;
        Ok(self.wait_for(head).await?)
    }

    /// Waits, at most [`APPLY_TIMEOUT`], until the event at `position` is applied.
    pub async fn wait_for(&self, position: u64) -> Result<(), NotApplied> {
        self.wait_within(position, APPLY_TIMEOUT).await
    }

    async fn wait_within(&self, position: u64, timeout: Duration) -> Result<(), NotApplied> {
        // Applied already (the common case once a command has waited): no
        // timer to arm.
        if *self.applied.borrow() >= position {
            return Ok(());
        }
        let mut applied = self.applied.clone();
        match tokio::time::timeout(timeout, applied.wait_for(|&p| p >= position)).await {
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

impl<M: Snapshot> Projection<M> {
    /// As [`Projection::start`], from the snapshot `policy` names when it
    /// checks out (see [`super::snapshot`]), else from position 0 into
    /// `model`; then saves snapshots in the background as `policy` says.
    /// Saving runs on a blocking thread and holds the model's read lock
    /// while it encodes the model into the file's pages, or, for a model
    /// that can [`Snapshot::freeze`], only while it freezes it (see
    /// [`Saved::locked`]): readers go on, new events wait to be applied.
    /// The checksum, flush and rename come after.
    pub async fn start_with_snapshots(
        store: Arc<dyn EventStore>,
        model: M,
        policy: Option<SnapshotPolicy>,
    ) -> Result<Self> {
        let Some(policy) = policy else {
            return Self::start(store, model).await;
        };
        let Some(key) = policy.key(&*store, M::NAME).await? else {
            return Self::start(store, model).await;
        };
        let started = Instant::now();
        let loaded = load_snapshot::<M>(&*store, &policy.path, &key).await?;
        let loaded_in = started.elapsed();
        let (model, last, from) = match loaded {
            Some((h, m)) => (m, (h.position, h.event_id), Some(h.position)),
            None => (model, (0, Uuid::nil()), None),
        };
        let mut projection = Self::start_at(store, model, last).await?;
        projection.started_from = from;
        if let Some(position) = from {
            tracing::info!(
                model = M::NAME,
                snapshot_position = position,
                applied_position = projection.applied_position(),
                snapshot_ms = loaded_in.as_secs_f64() * 1e3,
                total_ms = started.elapsed().as_secs_f64() * 1e3,
                "read model started from its snapshot and the events after it"
            );
        }
        let (model, last_applied) = (projection.model.clone(), projection.last.clone());
        let encode = move |saved: u64, out: &mut Encoder<'_>, release: &mut dyn FnMut()| {
            let model = model.read().unwrap_or_else(|p| p.into_inner());
            let (position, id) = *last_applied.lock().unwrap_or_else(|p| p.into_inner());
            if position == saved {
                return None;
            }
            match model.freeze() {
                Some(frozen) => {
                    drop(model);
                    release();
                    frozen(out);
                }
                None => model.encode(out),
            }
            Some((position, id))
        };
        let saver = Arc::new(Saver {
            path: policy.path,
            name: M::NAME,
            version: M::VERSION,
            key,
            encode: Box::new(encode),
            applying: projection.applying.clone(),
            saved: AtomicU64::new(last.0),
            turn: tokio::sync::Mutex::new(()),
        });
        let task = tokio::spawn(save_when_due(
            saver.clone(),
            projection.applied.clone(),
            policy.every,
        ));
        projection.saver = Some((saver, task));
        Ok(projection)
    }
}

/// Applies the feed after the position `applied` starts at. Events after
/// `head` (new ones, not the history replayed at start) are applied in a
/// span linked to the request that appended them, when traces are on.
async fn follow<M: ReadModel>(
    store: Arc<dyn EventStore>,
    model: Arc<RwLock<M>>,
    applied: watch::Sender<u64>,
    (last, applying): (Last, ApplyTurn),
    head: u64,
) {
    loop {
        let from = *applied.borrow() + 1;
        let mut events = store.subscribe_all(from);
        while let Some(next) = events.next().await {
            match next {
                Ok(recorded) => {
                    let _turn = applying.lock().await;
                    let _span = (recorded.position > head)
                        .then(|| event_store::trace::linked("apply", &recorded))
                        .flatten()
                        .map(tracing::Span::entered);
                    {
                        let mut model = model.write().unwrap_or_else(|p| p.into_inner());
                        fold(&mut *model, &recorded);
                        *last.lock().unwrap_or_else(|p| p.into_inner()) =
                            (recorded.position, recorded.id);
                    }
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
