//! A snapshot being saved never holds up readers: the follower waits for
//! it without queueing on the model's lock, and applies what came in
//! meanwhile once the snapshot is encoded. A model that can freeze holds
//! up nothing: events are applied while its frozen state is encoded.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use event_sourcing::read_model::snapshot::{Damaged, Decoder, Encoder, Frozen, Snapshot};
use event_sourcing::read_model::{Projection, ReadModel, Saved, SnapshotPolicy};
use event_store::RecordedEvent;
use event_store::testing::TempStore;

mod support;
use support::{Counted, tick};

/// Holds encoding until opened, and tells when encoding began.
#[derive(Default)]
struct Gate {
    encoding: AtomicBool,
    open: Mutex<bool>,
    opened: Condvar,
}

impl Gate {
    fn open(&self) {
        *self.open.lock().unwrap() = true;
        self.opened.notify_all();
    }

    /// Says encoding began, waits until opened, then writes `last`.
    fn encode(&self, last: u64, out: &mut Encoder<'_>) {
        self.encoding.store(true, Ordering::SeqCst);
        let open = self.open.lock().unwrap();
        let _open = self.opened.wait_while(open, |open| !*open).unwrap();
        out.u64(last);
    }

    /// Whether encoding began within 5 s.
    async fn encoding_began(&self) -> bool {
        for _ in 0..500 {
            if self.encoding.load(Ordering::SeqCst) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    }
}

/// The last tick, and a gate its snapshot encoding waits at; with
/// `freezes`, the encoding of its frozen state waits there instead.
struct Gated {
    last: u64,
    gate: Arc<Gate>,
    freezes: bool,
}

impl ReadModel for Gated {
    type Event = Counted;

    fn apply(&mut self, event: Counted, _: &RecordedEvent) {
        let Counted::Ticked { n } = event;
        self.last = n;
    }
}

impl Snapshot for Gated {
    const NAME: &'static str = "gated";
    const VERSION: u32 = 1;

    fn encode(&self, out: &mut Encoder<'_>) {
        self.gate.encode(self.last, out);
    }

    fn freeze(&self) -> Option<Frozen> {
        let (last, gate) = (self.last, self.gate.clone());
        self.freezes
            .then(|| Box::new(move |out: &mut Encoder<'_>| gate.encode(last, out)) as Frozen)
    }

    fn decode(_: &mut Decoder<'_>) -> Result<Self, Damaged> {
        Err(Damaged("this test never loads"))
    }
}

/// A projection of a [`Gated`] model that applied tick 1 and is saving a
/// snapshot, held at the gate.
struct Saving {
    store: Arc<dyn event_store::EventStore>,
    projection: Arc<Projection<Gated>>,
    gate: Arc<Gate>,
    saving: tokio::task::JoinHandle<std::io::Result<Option<Saved>>>,
    _temp: (TempStore, tempfile::TempDir),
}

impl Saving {
    async fn start(freezes: bool) -> Self {
        let temp = TempStore::sqlite();
        let store = event_store::open(temp.url()).await.expect("open");
        let dir = tempfile::tempdir().unwrap();
        let gate = Arc::new(Gate::default());
        let model = Gated {
            last: 0,
            gate: gate.clone(),
            freezes,
        };
        let policy = SnapshotPolicy {
            path: dir.path().join("gated.snapshot"),
            every: u64::MAX,
            key: None,
        };
        let projection = Arc::new(
            Projection::start_with_snapshots(store.clone(), model, Some(policy))
                .await
                .expect("starts"),
        );
        tick(&*store, 1).await;
        projection.catch_up().await.expect("applied");
        let saving = tokio::spawn({
            let projection = projection.clone();
            async move { projection.save_snapshot().await }
        });
        assert!(gate.encoding_began().await, "encoding began");
        Self {
            store,
            projection,
            gate,
            saving,
            _temp: (temp, dir),
        }
    }

    /// What the save saved, once the gate is open.
    async fn saved(self) -> Saved {
        self.saving
            .await
            .unwrap()
            .expect("saved")
            .expect("something new")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readers_go_on_while_a_snapshot_is_encoded() {
    let s = Saving::start(false).await;
    let (projection, gate) = (s.projection.clone(), s.gate.clone());
    // An event arrives while the snapshot is being encoded; the follower
    // has time to try to apply it.
    tick(&*s.store, 2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let reader = projection.clone();
    let read = tokio::task::spawn_blocking(move || reader.read().last);
    let seen = tokio::time::timeout(Duration::from_secs(2), read).await;
    gate.open();
    let seen = seen.expect("a read went on while the snapshot was encoded");
    assert_eq!(seen.unwrap(), 1, "the new event waits for the snapshot");

    assert_eq!(s.saved().await.position, 1);
    projection
        .catch_up()
        .await
        .expect("applied after the snapshot");
    assert_eq!(projection.read().last, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn events_are_applied_while_a_frozen_model_is_encoded() {
    let s = Saving::start(true).await;
    // An event arrives while the frozen state is being encoded: it is
    // applied at once.
    tick(&*s.store, 2).await;
    let applied = tokio::time::timeout(Duration::from_secs(5), s.projection.catch_up()).await;
    let last = s.projection.read().last;
    s.gate.open();
    applied
        .expect("applied while the snapshot was encoded")
        .expect("applied");
    assert_eq!(last, 2);

    // The snapshot is of the model as it was frozen.
    assert_eq!(s.saved().await.position, 1);
}
