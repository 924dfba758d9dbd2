//! The Decider pattern, and the one command path every service takes.
//!
//! An aggregate's rules are two pure functions ([`Decider`]): `decide` turns
//! a command and the current state into new events (or a rejection), and
//! `evolve` folds an event into the state. [`execute`] is all the I/O around
//! them: load the stream, decide, append at the version the decision was
//! made on, and on a conflict load again and decide again (bounded).

use std::fmt::Debug;

use event_store::{CurrentVersion, Event, EventStore, EventStoreError, ExpectedVersion, Result};

/// One aggregate's rules: pure, synchronous, no store.
pub trait Decider {
    /// What may be asked of the aggregate.
    type Command;
    /// What it records.
    type Event: Event;
    /// What its decisions depend on, folded from its events.
    type State: Default + Send;
    /// Why a command is refused.
    type Rejection;

    /// The events `command` causes in `state`, or why it is refused.
    fn decide(
        command: &Self::Command,
        state: &Self::State,
    ) -> Result<Vec<Self::Event>, Self::Rejection>;

    /// `state` after `event`.
    fn evolve(state: Self::State, event: &Self::Event) -> Self::State;

    /// Whether `command`'s events, once decided, stay right whatever else is
    /// appended to the stream meanwhile (they only add, and what the decision
    /// read never changes: a registered user stays registered). Such events
    /// are appended expecting any version, so concurrent commands of this
    /// kind never conflict. By default, none: decisions are checked against
    /// the version they were made on.
    fn commutes(command: &Self::Command) -> bool {
        let _ = command;
        false
    }
}

/// An aggregate's state and the stream version it was folded up to.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded<S> {
    /// The state.
    pub state: S,
    /// The version of the last event folded in.
    pub version: CurrentVersion,
}

impl<S: Default> Loaded<S> {
    /// The state of a stream assumed not to exist yet, without reading it:
    /// if it does exist, the append conflicts and [`execute`] loads it then.
    pub fn assume_new() -> Self {
        Self {
            state: S::default(),
            version: CurrentVersion::NoStream,
        }
    }
}

/// Why a command did not take effect.
#[derive(Debug, thiserror::Error)]
pub enum CommandError<R> {
    /// The rules refused it.
    #[error("command rejected")]
    Rejected(R),
    /// The store failed, or the stream kept changing under every attempt.
    #[error(transparent)]
    Store(#[from] EventStoreError),
}

/// What a command recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct Executed<E> {
    /// The events appended (none if the command changed nothing).
    pub events: Vec<E>,
    /// The global position of the last one (0 if none).
    pub position: u64,
}

/// How many times [`execute`] decides before giving up on a stream that
/// changes under it every time.
pub const MAX_ATTEMPTS: usize = 8;

/// Reads `stream` and folds it into `D`'s state.
pub async fn load<D: Decider>(store: &dyn EventStore, stream: &str) -> Result<Loaded<D::State>> {
    let mut loaded = Loaded::assume_new();
    for recorded in store.read_stream(stream, 0).await? {
        loaded.state = D::evolve(loaded.state, &D::Event::from_recorded(&recorded)?);
        loaded.version = CurrentVersion::At(recorded.version);
    }
    Ok(loaded)
}

/// Decides `command` on `loaded` and appends the events expecting the version
/// they were decided on; if another writer got there first, loads `stream`
/// again and decides again (at most [`MAX_ATTEMPTS`] decisions).
pub async fn execute<D: Decider>(
    store: &dyn EventStore,
    stream: &str,
    loaded: Loaded<D::State>,
    command: &D::Command,
) -> Result<Executed<D::Event>, CommandError<D::Rejection>> {
    execute_idempotent::<D>(store, stream, loaded, command, None).await
}

/// As [`execute`], for a command sent with an idempotency key: its first
/// event takes the key's event id and the request's fingerprint (see
/// [`crate::idempotency`]). If that id is stored already (the same request
/// done before, or being done now elsewhere), the append fails with
/// [`EventStoreError::DuplicateEventId`] and nothing is stored twice.
pub async fn execute_idempotent<D: Decider>(
    store: &dyn EventStore,
    stream: &str,
    mut loaded: Loaded<D::State>,
    command: &D::Command,
    idempotent: Option<&crate::idempotency::Idempotent>,
) -> Result<Executed<D::Event>, CommandError<D::Rejection>> {
    let mut attempt = 1;
    loop {
        let events = D::decide(command, &loaded.state).map_err(CommandError::Rejected)?;
        if events.is_empty() {
            return Ok(Executed {
                events,
                position: 0,
            });
        }
        let mut new = events
            .iter()
            .map(Event::to_new_event)
            .collect::<Result<Vec<_>>>()?;
        if let (Some(key), Some(first)) = (idempotent, new.first_mut()) {
            first.id = key.event_id;
            first.metadata = key.stamp(&first.metadata);
        }
        let expected = if D::commutes(command) && loaded.version != CurrentVersion::NoStream {
            ExpectedVersion::Any
        } else {
            loaded.version.expected()
        };
        match store.append(stream, expected, new).await {
            Ok(done) => {
                return Ok(Executed {
                    events,
                    position: done.position,
                });
            }
            Err(EventStoreError::WrongExpectedVersion { .. }) if attempt < MAX_ATTEMPTS => {
                attempt += 1;
                loaded = load::<D>(store, stream).await?;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Given/when/then for deciders, with no store and no runtime:
/// `given::<D>(events).when(command).then(events)` or `.then_rejects(why)`.
pub mod spec {
    use super::*;

    /// The state after `events`.
    pub fn given<D: Decider>(events: impl IntoIterator<Item = D::Event>) -> Given<D> {
        let state = events
            .into_iter()
            .fold(D::State::default(), |s, e| D::evolve(s, &e));
        Given { state }
    }

    /// A state to decide on.
    pub struct Given<D: Decider> {
        state: D::State,
    }

    impl<D: Decider> Given<D> {
        /// Decides `command`.
        pub fn when(self, command: D::Command) -> Then<D> {
            Then {
                outcome: D::decide(&command, &self.state),
            }
        }
    }

    /// A decision to check.
    pub struct Then<D: Decider> {
        outcome: Result<Vec<D::Event>, D::Rejection>,
    }

    impl<D: Decider> Then<D>
    where
        D::Event: PartialEq + Debug,
        D::Rejection: PartialEq + Debug,
    {
        /// The command records exactly `events`.
        #[track_caller]
        pub fn then(self, events: impl IntoIterator<Item = D::Event>) {
            assert_eq!(self.outcome, Ok(events.into_iter().collect()));
        }

        /// The command is refused for `rejection`.
        #[track_caller]
        pub fn then_rejects(self, rejection: D::Rejection) {
            assert_eq!(self.outcome, Err(rejection));
        }
    }
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    use super::spec::given;
    use super::*;

    /// A tally: each `Count` records the next number, so a decision made on
    /// a stale state would record a number twice.
    struct Tally;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    #[serde(tag = "type")]
    enum Counted {
        Counted { n: u64 },
    }
    impl Event for Counted {}

    impl Decider for Tally {
        type Command = u64;
        type Event = Counted;
        type State = u64;
        type Rejection = &'static str;

        fn decide(limit: &u64, n: &u64) -> Result<Vec<Counted>, &'static str> {
            if n >= limit {
                return Err("full");
            }
            Ok(vec![Counted::Counted { n: n + 1 }])
        }

        fn evolve(_: u64, Counted::Counted { n }: &Counted) -> u64 {
            *n
        }
    }

    #[test]
    fn the_spec_reads_given_when_then() {
        given::<Tally>([]).when(2).then([Counted::Counted { n: 1 }]);
        given::<Tally>([Counted::Counted { n: 1 }, Counted::Counted { n: 2 }])
            .when(2)
            .then_rejects("full");
    }

    #[tokio::test]
    async fn a_stale_decision_is_taken_again_on_the_current_state() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let store = event_store::open(&url).await.unwrap();
        // Both commands start from a state read before either appended.
        for _ in 0..2 {
            execute::<Tally>(&*store, "tally", Loaded::assume_new(), &10)
                .await
                .unwrap();
        }
        let loaded = load::<Tally>(&*store, "tally").await.unwrap();
        assert_eq!(loaded.state, 2, "the second decision saw the first event");
        assert_eq!(loaded.version, CurrentVersion::At(1));
        // A rejection on the reloaded state writes nothing.
        let full = execute::<Tally>(&*store, "tally", Loaded::assume_new(), &1).await;
        assert!(matches!(full, Err(CommandError::Rejected("full"))));
        assert_eq!(store.read_stream("tally", 0).await.unwrap().len(), 2);
    }

    /// A log: any number of lines, each independent of the others.
    struct Log;

    impl Decider for Log {
        type Command = ();
        type Event = Counted;
        type State = u64;
        type Rejection = &'static str;

        fn decide(_: &(), n: &u64) -> Result<Vec<Counted>, &'static str> {
            Ok(vec![Counted::Counted { n: n + 1 }])
        }

        fn evolve(n: u64, _: &Counted) -> u64 {
            n + 1
        }

        fn commutes(_: &()) -> bool {
            true
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn commuting_commands_never_conflict_however_many_race() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let store = event_store::open(&url).await.unwrap();
        execute::<Log>(&*store, "log", Loaded::assume_new(), &())
            .await
            .unwrap();
        let stale = load::<Log>(&*store, "log").await.unwrap();
        let racers = 4 * MAX_ATTEMPTS;
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..racers {
            let (store, stale) = (store.clone(), stale.clone());
            tasks.spawn(async move { execute::<Log>(&*store, "log", stale, &()).await });
        }
        for done in tasks.join_all().await {
            done.unwrap();
        }
        assert_eq!(store.read_stream("log", 0).await.unwrap().len(), racers + 1);
    }
}
