//! The one read-model path: a pure fold over a store's global feed, kept in
//! memory, current from start-up on, and a bounded wait for a position.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::lease::Lease;
use crate::snapshot::{self, Encoder, Header, Rejected, Snapshot};
use crate::{Event, EventStore, EventStoreError, RecordedEvent, Result, StoreUrl, ids};

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

/// How long [`Projection::read_linearizable`] may take in all (asking the
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

/// The store's head as a shared question, answered in rounds (etcd's
/// ReadIndex, batched): a reader needs the answer of a head query that
/// started after it asked, so no reader gets a head older than its
/// question; every reader waiting when a query starts shares it, so the
/// store sees at most one query in flight per projection, not one per
/// reader. Readers cost no allocation and no message: they note the round
/// under way, ring, and wait for a later round's answer.
struct ReadIndex {
    /// Rounds started so far; round `n`'s query starts after `n` is stored.
    started: Arc<AtomicU64>,
    /// Rung by readers who need a new round.
    wanted: Arc<Notify>,
    /// The last round answered, and its answer.
    answers: watch::Receiver<(u64, Result<u64>)>,
    task: JoinHandle<()>,
}

impl ReadIndex {
    fn start(store: Arc<dyn EventStore>) -> Self {
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

    async fn head(&self) -> Result<u64> {
        let asked_during = self.started.load(Ordering::SeqCst);
        self.wanted.notify_one();
        let mut answers = self.answers.clone();
        let answer = answers
            .wait_for(|(round, _)| *round > asked_during)
            .await
            .map_err(|_| EventStoreError::Closed)?;
        answer.1.clone()
    }

    fn queries(&self) -> u64 {
        self.started.load(Ordering::Relaxed)
    }
}

/// Where a linearizable read must be served from: the store's head when the
/// read began (on a shared store), to be applied before the read answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadPoint {
    head: Option<u64>,
    asked: tokio::time::Instant,
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

/// The position and id of the last event a projection applied (skipped
/// ones included): what a snapshot of it covers.
type Last = Arc<Mutex<(u64, Uuid)>>;

/// Held by the follower while it applies an event, and by a snapshot while
/// it encodes the model: a follower that must wait for a snapshot waits
/// here, not queued on the model's lock, where it would hold up every
/// reader behind it (a waiting writer blocks new readers).
type ApplyTurn = Arc<tokio::sync::Mutex<()>>;

/// A read model fed by a subscription to a store's global feed, from the
/// beginning or from a snapshot. Dropping it stops the subscription.
pub struct Projection<M> {
    model: Arc<RwLock<M>>,
    applied: watch::Receiver<u64>,
    task: JoinHandle<()>,
    /// For a shared store only (see [`EventStore::shared`]).
    read_index: Option<ReadIndex>,
    /// For a shared store that keeps read leases (see [`crate::lease`]):
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
    /// [`crate::lease`]) at once; else it asks the store's head (batched
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
    /// [`crate::stats`]). The head is read now (one query).
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

/// Where a projection keeps its snapshot, and how often it saves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotPolicy {
    /// The snapshot file.
    pub path: PathBuf,
    /// Save once this many feed positions were applied since the last
    /// save (looked at every [`SAVE_CHECK_EVERY`]), and when the service
    /// stops.
    pub every: u64,
}

impl SnapshotPolicy {
    /// The policy a service's setting names: `off`, none; `auto`, beside a
    /// SQLite store's file (`<file>.<model>.snapshot`) and none on other
    /// stores; anything else, that path.
    pub fn from_setting(setting: &str, store_url: &str, model: &str, every: u64) -> Option<Self> {
        let path = match setting {
            "off" | "" => return None,
            "auto" => match StoreUrl::parse(store_url).ok()? {
                StoreUrl::Sqlite(db) => {
                    let mut name = db.into_os_string();
                    name.push(format!(".{model}.snapshot"));
                    PathBuf::from(name)
                }
                _ => return None,
            },
            path => PathBuf::from(path),
        };
        Some(Self {
            path,
            every: every.max(1),
        })
    }
}

/// How often the background saver looks whether a snapshot is due.
pub const SAVE_CHECK_EVERY: Duration = Duration::from_secs(5);

/// How long the saver waits after a failed save before it tries again.
const SAVE_RETRY_AFTER: Duration = Duration::from_secs(60);

/// What saving a snapshot did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Saved {
    /// The feed position it covers.
    pub position: u64,
    /// The payload's size.
    pub bytes: usize,
    /// How long the model's read lock was held to encode it into the file
    /// (new events wait that long to be applied; readers do not wait).
    pub locked: Duration,
}

/// Encodes a model under its read lock, unless it is still at the given
/// position; returns the position and id of its last event.
type EncodeFn = dyn Fn(u64, &mut Encoder<'_>) -> Option<(u64, Uuid)> + Send + Sync;

/// Saves one projection's snapshots, one save at a time.
struct Saver {
    path: PathBuf,
    name: &'static str,
    version: u32,
    encode: Box<EncodeFn>,
    applying: ApplyTurn,
    /// The position of the last snapshot saved (or started from).
    saved: AtomicU64,
    turn: tokio::sync::Mutex<()>,
}

impl Saver {
    /// Encodes the model straight into a new file (on a blocking thread:
    /// the lock is held all along), then flushes and renames it, unless
    /// nothing was applied since the last save.
    async fn save(self: &Arc<Self>) -> std::io::Result<Option<Saved>> {
        let _turn = self.turn.lock().await;
        let started = Instant::now();
        let saver = self.clone();
        let applying = self.applying.clone().lock_owned().await;
        let written = tokio::task::spawn_blocking(move || {
            let saved = saver.saved.load(Ordering::SeqCst);
            let mut locked = Duration::ZERO;
            let written = snapshot::write_file(&saver.path, saver.name, saver.version, |out| {
                let locking = Instant::now();
                let covered = (saver.encode)(saved, out);
                drop(applying);
                locked = locking.elapsed();
                covered
            })?;
            Ok::<_, std::io::Error>(written.map(|(header, bytes)| Saved {
                position: header.position,
                bytes: bytes as usize,
                locked,
            }))
        })
        .await
        .map_err(std::io::Error::other)??;
        let Some(Saved {
            position,
            bytes,
            locked,
        }) = written
        else {
            return Ok(None);
        };
        self.saved.store(position, Ordering::SeqCst);
        tracing::info!(
            model = self.name,
            position,
            bytes,
            locked_ms = locked.as_secs_f64() * 1e3,
            total_ms = started.elapsed().as_secs_f64() * 1e3,
            path = %self.path.display(),
            "read-model snapshot saved"
        );
        Ok(Some(Saved {
            position,
            bytes,
            locked,
        }))
    }
}

/// Saves a snapshot whenever `every` positions were applied since the last.
async fn save_when_due(saver: Arc<Saver>, applied: watch::Receiver<u64>, every: u64) {
    loop {
        tokio::time::sleep(SAVE_CHECK_EVERY).await;
        let since = applied
            .borrow()
            .saturating_sub(saver.saved.load(Ordering::SeqCst));
        if since < every {
            continue;
        }
        if let Err(e) = saver.save().await {
            tracing::warn!(
                model = saver.name,
                error = %e,
                path = %saver.path.display(),
                "could not save the read-model snapshot; trying again later"
            );
            tokio::time::sleep(SAVE_RETRY_AFTER).await;
        }
    }
}

/// The snapshot at `path`, if there is one and it checks out against
/// `store`; anything else is logged and `None` (replay everything).
async fn load_snapshot<M: Snapshot>(
    store: &dyn EventStore,
    path: &Path,
) -> Result<Option<(Header, M)>> {
    let file = path.to_owned();
    let read = tokio::task::spawn_blocking(move || snapshot::load::<M>(&file))
        .await
        .unwrap_or_else(|e| Err(Rejected::Io(std::io::Error::other(e))));
    let rejected = match read {
        Ok(None) => {
            tracing::info!(model = M::NAME, path = %path.display(), "no read-model snapshot: replaying every event");
            return Ok(None);
        }
        Ok(Some((header, model))) => {
            let position = header.position;
            let there = position == 0
                || store
                    .read_all(position, 1)
                    .await?
                    .first()
                    .is_some_and(|e| e.position == position && e.id == header.event_id);
            if there {
                return Ok(Some((header, model)));
            }
            Rejected::OtherStore { position }
        }
        Err(rejected) => rejected,
    };
    tracing::warn!(
        model = M::NAME,
        path = %path.display(),
        reason = %rejected,
        "read-model snapshot ignored: replaying every event"
    );
    Ok(None)
}

impl<M: Snapshot> Projection<M> {
    /// As [`Projection::start`], from the snapshot `policy` names when it
    /// checks out (see [`crate::snapshot`]), else from position 0 into
    /// `model`; then saves snapshots in the background as `policy` says.
    /// Saving runs on a blocking thread and holds the model's read lock
    /// while it encodes the model into the file's pages (see
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
        let started = Instant::now();
        let loaded = load_snapshot::<M>(&*store, &policy.path).await?;
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
        let encode = move |saved: u64, out: &mut Encoder<'_>| {
            let model = model.read().unwrap_or_else(|p| p.into_inner());
            let (position, id) = *last_applied.lock().unwrap_or_else(|p| p.into_inner());
            if position == saved {
                return None;
            }
            model.encode(out);
            Some((position, id))
        };
        let saver = Arc::new(Saver {
            path: policy.path,
            name: M::NAME,
            version: M::VERSION,
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
                        .then(|| crate::trace::linked("apply", &recorded))
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
