//! The Decider pattern, and the one command path every service takes.
//!
//! An aggregate's rules are pure functions ([`Decider`]): `decide` turns a
//! command and the current state into new events (or a rejection), `evolve`
//! folds an event into the state, and the command itself says where the
//! decision reads and writes (`stream`, `reads`), as fmodel's
//! `fetch_events(&command)` does. [`execute`] is all the I/O around them:
//! load those streams, decide, append at the version the decision was made
//! on and, on a conflict, load again and decide again (bounded).

use std::fmt::Debug;

use event_store::{CurrentVersion, Event, EventStore, EventStoreError, ExpectedVersion, Result};

use crate::idempotency::Idempotent;

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

    /// The stream `command`'s events are appended to: the one whose version
    /// the decision is checked against.
    fn stream(command: &Self::Command) -> String;

    /// Other streams the decision reads, folded into the state before
    /// [`Decider::stream`]. They must hold facts that never change once
    /// recorded (a movie exists; who added it): the append is not checked
    /// against them. By default, none.
    fn reads(command: &Self::Command) -> Vec<String> {
        let _ = command;
        Vec::new()
    }

    /// Whether `command` starts its stream (a fresh id, a claim): then the
    /// stream is assumed empty, not read, and the append expects no stream;
    /// if it exists after all, the append conflicts and it is read then. By
    /// default, no.
    fn starts_stream(command: &Self::Command) -> bool {
        let _ = command;
        false
    }

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

/// An aggregate's state and the version of its stream it was folded up to.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded<S> {
    /// The state.
    pub state: S,
    /// The version of the last event of the command's stream folded in.
    pub version: CurrentVersion,
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

/// Folds `stream` into `state`; the version of its last event.
async fn fold<D: Decider>(
    store: &dyn EventStore,
    stream: &str,
    state: &mut D::State,
) -> Result<CurrentVersion> {
    let mut version = CurrentVersion::NoStream;
    for recorded in store.read_stream(stream, 0).await? {
        *state = D::evolve(std::mem::take(state), &D::Event::from_recorded(&recorded)?);
        version = CurrentVersion::At(recorded.version);
    }
    Ok(version)
}

/// Reads what `command`'s decision reads before its first attempt, and
/// folds it into `D`'s state: the streams it reads, and its own stream
/// unless the command starts it (see [`Decider::starts_stream`]).
pub async fn load<D: Decider>(
    store: &dyn EventStore,
    command: &D::Command,
) -> Result<Loaded<D::State>> {
    load_from::<D>(store, command, !D::starts_stream(command)).await
}

async fn load_from<D: Decider>(
    store: &dyn EventStore,
    command: &D::Command,
    own_stream: bool,
) -> Result<Loaded<D::State>> {
    let mut state = D::State::default();
    for other in D::reads(command) {
        fold::<D>(store, &other, &mut state).await?;
    }
    let version = if own_stream {
        fold::<D>(store, &D::stream(command), &mut state).await?
    } else {
        CurrentVersion::NoStream
    };
    Ok(Loaded { state, version })
}

/// Runs `command`: loads what its decision reads (not its own stream, if
/// it starts one), decides, and appends the events expecting the version
/// they were decided on; if another writer got there first, loads again and
/// decides again (at most [`MAX_ATTEMPTS`] decisions).
///
/// With an idempotency `key`, the first event takes the key's event id and
/// the request's fingerprint (see [`crate::idempotency`]): if that id is
/// stored already (the same request done before, or being done now
/// elsewhere), the append fails with [`EventStoreError::DuplicateEventId`]
/// and nothing is stored twice. [`crate::idempotency::once`] turns that into
/// the first answer.
pub async fn execute<D: Decider>(
    store: &dyn EventStore,
    command: &D::Command,
    key: Option<&Idempotent>,
) -> Result<Executed<D::Event>, CommandError<D::Rejection>> {
    let loaded = load::<D>(store, command).await?;
    execute_loaded::<D>(store, command, loaded, key).await
}

/// As [`execute`], from a state the caller loaded already with [`load`]
/// (a login checks the password against it first).
pub async fn execute_loaded<D: Decider>(
    store: &dyn EventStore,
    command: &D::Command,
    mut loaded: Loaded<D::State>,
    key: Option<&Idempotent>,
) -> Result<Executed<D::Event>, CommandError<D::Rejection>> {
    let stream = D::stream(command);
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
        if let (Some(key), Some(first)) = (key, new.first_mut()) {
            first.id = key.event_id;
            first.metadata = key.stamp(&first.metadata);
        }
        let expected = if D::commutes(command) && loaded.version != CurrentVersion::NoStream {
            ExpectedVersion::Any
        } else {
            loaded.version.expected()
        };
        match store.append(&stream, expected, new).await {
            Ok(done) => {
                return Ok(Executed {
                    events,
                    position: done.position,
                });
            }
            Err(EventStoreError::WrongExpectedVersion { .. }) if attempt < MAX_ATTEMPTS => {
                attempt += 1;
                // Its own stream too, now that it is known to exist.
                loaded = load_from::<D>(store, command, true).await?;
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

        fn stream(_: &u64) -> String {
            "tally".into()
        }

        fn starts_stream(_: &u64) -> bool {
            true // not so: a stale assumption, corrected by the conflict
        }

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
            execute::<Tally>(&*store, &10, None).await.unwrap();
        }
        // Tally assumes its stream new, so `load` reads nothing of it...
        let assumed = load::<Tally>(&*store, &10).await.unwrap();
        assert_eq!(
            (assumed.state, assumed.version),
            (0, CurrentVersion::NoStream)
        );
        // ...and the conflict made the second decision read it.
        let counted: Vec<_> = store
            .read_stream("tally", 0)
            .await
            .unwrap()
            .iter()
            .map(|e| Counted::from_recorded(e).unwrap())
            .collect();
        assert_eq!(
            counted,
            [Counted::Counted { n: 1 }, Counted::Counted { n: 2 }],
            "the second decision saw the first event"
        );
        // A rejection on the reloaded state writes nothing.
        let full = execute::<Tally>(&*store, &1, None).await;
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

        fn stream(_: &()) -> String {
            "log".into()
        }

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
        execute::<Log>(&*store, &(), None).await.unwrap();
        let stale = load::<Log>(&*store, &()).await.unwrap();
        let racers = 4 * MAX_ATTEMPTS;
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..racers {
            let (store, stale) = (store.clone(), stale.clone());
            tasks.spawn(async move { execute_loaded::<Log>(&*store, &(), stale, None).await });
        }
        for done in tasks.join_all().await {
            done.unwrap();
        }
        assert_eq!(store.read_stream("log", 0).await.unwrap().len(), racers + 1);
    }
}
