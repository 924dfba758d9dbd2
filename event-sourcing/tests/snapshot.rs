//! A snapshot being saved never holds up readers: the follower waits for
//! it without queueing on the model's lock, and applies what came in
//! meanwhile once the snapshot is encoded.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use event_sourcing::read_model::snapshot::{Damaged, Decoder, Encoder, Snapshot};
use event_sourcing::read_model::{Projection, ReadModel, SnapshotPolicy};
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
}

/// The last tick, and a gate its snapshot encoding waits at.
struct Gated {
    last: u64,
    gate: Arc<Gate>,
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
        self.gate.encoding.store(true, Ordering::SeqCst);
        let open = self.gate.open.lock().unwrap();
        let _open = self.gate.opened.wait_while(open, |open| !*open).unwrap();
        out.u64(self.last);
    }

    fn decode(_: &mut Decoder<'_>) -> Result<Self, Damaged> {
        Err(Damaged("this test never loads"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readers_go_on_while_a_snapshot_is_encoded() {
    let temp = TempStore::sqlite();
    let store = event_store::open(temp.url()).await.expect("open");
    let dir = tempfile::tempdir().unwrap();
    let gate = Arc::new(Gate::default());
    let model = Gated {
        last: 0,
        gate: gate.clone(),
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
    for _ in 0..500 {
        if gate.encoding.load(Ordering::SeqCst) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(gate.encoding.load(Ordering::SeqCst), "encoding began");
    // An event arrives while the snapshot is being encoded; the follower
    // has time to try to apply it.
    tick(&*store, 2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let reader = projection.clone();
    let read = tokio::task::spawn_blocking(move || reader.read().last);
    let seen = tokio::time::timeout(Duration::from_secs(2), read).await;
    gate.open();
    let seen = seen.expect("a read went on while the snapshot was encoded");
    assert_eq!(seen.unwrap(), 1, "the new event waits for the snapshot");

    let saved = saving
        .await
        .unwrap()
        .expect("saved")
        .expect("something new");
    assert_eq!(saved.position, 1);
    projection
        .catch_up()
        .await
        .expect("applied after the snapshot");
    assert_eq!(projection.read().last, 2);
}
