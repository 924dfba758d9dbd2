//! The one keyed command path (`idempotency::once`) over a real store and
//! projection: a first call records, a retry replays without running, the
//! same key for another request is refused, and a refusal the first copy
//! explains answers with that copy's record.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use event_sourcing::decider::{self, CommandError, Decider};
use event_sourcing::idempotency::{
    self, Idempotent, KeyReused, KeyedError, KeyedIndex, KeyedModel, Outcome, Ran,
};
use event_sourcing::read_model::{NotApplied, Projection, ReadModel, StaleRead};
use event_store::{Event, EventStore, EventStoreError, RecordedEvent};
use serde::{Deserialize, Serialize};

/// A name claimed once: `Claimed` names what was created.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
enum Named {
    Claimed { name: String, n: u64 },
}
impl Event for Named {}

struct Claim;

impl Decider for Claim {
    type Command = (String, u64);
    type Event = Named;
    type State = bool;
    type Rejection = ();

    fn stream((name, _): &(String, u64)) -> String {
        format!("name-{name}")
    }

    fn starts_stream(_: &(String, u64)) -> bool {
        true
    }

    fn decide((name, n): &(String, u64), taken: &bool) -> Result<Vec<Named>, ()> {
        if *taken {
            return Err(());
        }
        Ok(vec![Named::Claimed {
            name: name.clone(),
            n: *n,
        }])
    }

    fn evolve(_: bool, _: &Named) -> bool {
        true
    }
}

#[derive(Default)]
struct Names {
    keyed: KeyedIndex<u64>,
}

impl ReadModel for Names {
    type Event = Named;

    fn apply(&mut self, Named::Claimed { n, .. }: Named, recorded: &RecordedEvent) {
        self.keyed.note(recorded, |_| n);
    }
}

impl KeyedModel for Names {
    type Created = u64;

    fn keyed(&self) -> &KeyedIndex<u64> {
        &self.keyed
    }
}

#[derive(Debug)]
enum Error {
    Taken,
    KeyReused,
    Store(EventStoreError),
    /// Shown when a test fails.
    #[allow(dead_code)]
    Other(String),
}

impl From<CommandError<()>> for Error {
    fn from(e: CommandError<()>) -> Self {
        match e {
            CommandError::Rejected(()) => Self::Taken,
            CommandError::Store(e) => Self::Store(e),
        }
    }
}
impl From<KeyReused> for Error {
    fn from(_: KeyReused) -> Self {
        Self::KeyReused
    }
}
impl From<StaleRead> for Error {
    fn from(e: StaleRead) -> Self {
        Self::Other(e.to_string())
    }
}
impl From<NotApplied> for Error {
    fn from(e: NotApplied) -> Self {
        Self::Other(e.to_string())
    }
}
impl KeyedError for Error {
    fn may_be_replay(&self) -> bool {
        matches!(
            self,
            Self::Taken | Self::Store(EventStoreError::DuplicateEventId(_))
        )
    }
    fn not_indexed() -> Self {
        Self::Other("not indexed".into())
    }
}

struct Fixture {
    store: Arc<dyn EventStore>,
    view: Projection<Names>,
    runs: AtomicUsize,
    _dir: tempfile::TempDir,
}

impl Fixture {
    async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("k.db").display());
        let store = event_store::open(&url).await.unwrap();
        let view = Projection::start(store.clone(), Names::default())
            .await
            .unwrap();
        Self {
            store,
            view,
            runs: AtomicUsize::new(0),
            _dir: dir,
        }
    }

    /// Claims `name` as number `n`, with `key` if any (the request's
    /// fields: the name).
    async fn claim(&self, name: &str, n: u64, key: Option<&str>) -> Result<Outcome<u64>, Error> {
        let key = key.map(|k| Idempotent::new("names", k, &[name]));
        let command = (name.to_owned(), n);
        let run = async {
            self.runs.fetch_add(1, Ordering::SeqCst);
            let done = decider::execute::<Claim>(&*self.store, &command, key.as_ref()).await?;
            Ok::<_, Error>(Ran {
                position: done.position,
                created: n,
                answer: n,
            })
        };
        idempotency::once(&self.view, key.as_ref(), run, async |stored| Ok(stored)).await
    }
}

#[tokio::test]
async fn without_a_key_the_command_records_and_the_view_has_it() {
    let f = Fixture::new().await;
    let outcome = f.claim("ann", 1, None).await.unwrap();
    assert_eq!(outcome, Outcome::Recorded(1));
    assert!(matches!(f.claim("ann", 2, None).await, Err(Error::Taken)));
}

#[tokio::test]
async fn a_keyed_retry_replays_the_first_answer_without_running() {
    let f = Fixture::new().await;
    assert_eq!(
        f.claim("ann", 1, Some("k")).await.unwrap(),
        Outcome::Recorded(1)
    );
    assert_eq!(f.runs.load(Ordering::SeqCst), 1);
    // The same request again, with another attempt's own value: the
    // stored one answers, and nothing runs (no id taken, no hash).
    assert_eq!(
        f.claim("ann", 2, Some("k")).await.unwrap(),
        Outcome::Replayed(1)
    );
    assert_eq!(f.runs.load(Ordering::SeqCst), 1);
    // The key for another request: refused, nothing runs.
    assert!(matches!(
        f.claim("bob", 3, Some("k")).await,
        Err(Error::KeyReused)
    ));
    assert_eq!(f.runs.load(Ordering::SeqCst), 1);
    assert_eq!(f.store.read_stream("name-ann", 0).await.unwrap().len(), 1);
    assert!(f.store.read_stream("name-bob", 0).await.unwrap().is_empty());
}

#[tokio::test]
async fn copies_racing_with_one_key_all_answer_what_the_winner_stored() {
    let f = Arc::new(Fixture::new().await);
    let mut copies = tokio::task::JoinSet::new();
    for n in 1..=8 {
        let f = f.clone();
        copies.spawn(async move { f.claim("ann", n, Some("k")).await.unwrap().into_inner() });
    }
    let answers = copies.join_all().await;
    let stored = f.store.read_stream("name-ann", 0).await.unwrap();
    assert_eq!(stored.len(), 1, "one copy stored");
    let Named::Claimed { n, .. } = Named::from_recorded(&stored[0]).unwrap();
    assert!(answers.iter().all(|a| *a == n), "{answers:?} vs {n}");
}

#[tokio::test]
async fn a_refusal_that_is_not_the_same_request_stands() {
    let f = Fixture::new().await;
    f.claim("ann", 1, Some("k1")).await.unwrap();
    // Another key, the same name: taken, and no record of k2 explains it.
    assert!(matches!(
        f.claim("ann", 2, Some("k2")).await,
        Err(Error::Taken)
    ));
}
