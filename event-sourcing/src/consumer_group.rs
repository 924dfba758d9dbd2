//! Consumer groups: durable, shared subscriptions to a store's feed.
//!
//! A consumer *joins* a named group and receives the group's events; it
//! acknowledges each. The group's progress is kept in the store's database
//! ([`event_store::groups`]), shared by every process serving it, so it
//! survives restarts of the service and of its consumers.
//!
//! How the work is shared, on one process or many:
//!
//! - The streams are split into the group's partitions by a stable hash of
//!   their names. Each live member (on any process) is listed in the
//!   database; partition `k` belongs to the `k mod n`-th of the `n` live
//!   members, in id order. The process serving that member takes the
//!   partition's lease and delivers its events, so the events of one
//!   stream come from one process, to one member.
//! - Within a stream, one event is in flight at a time: the next is sent
//!   only once the previous is acknowledged (or parked). Different streams
//!   go in parallel, up to the member's `max_in_flight`.
//! - An event not acknowledged within the group's ack timeout is sent
//!   again (to the partition's member then); the delivery number says
//!   which attempt it is. After `max_deliveries` it is *parked*: listed,
//!   counted, replayable, and its stream goes on.
//! - Each partition's checkpoint (every event below it done) is written
//!   with the lease's renewal, every tick. A crash loses at most a tick of
//!   acknowledgements: those events are delivered again. Delivery is at
//!   least once; each carries the event's id.
//! - When members come or go, partitions move: the process that loses one
//!   stops sending it, waits for its deliveries in flight to be answered
//!   (or to time out), writes its checkpoint and gives it up; the new owner
//!   starts there. A process that dies holds its partitions until their
//!   leases end.
//!
//! One runner task per group per process holds all of this in memory; it
//! ends when its last local member leaves, giving its partitions up.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use event_store::groups::{GroupInfo, GroupSpec, Groups, Parked, partition_of};
use event_store::{EventStore, EventStoreError, RecordedEvent};
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio::time::Instant;
use uuid::Uuid;

/// Events held in memory per group and process, waiting or in flight:
/// past it, reading the feed pauses until some are acknowledged.
pub const MAX_PENDING: usize = 10_000;

/// The most events one member may have in flight.
pub const MAX_IN_FLIGHT: u32 = 1_000;

/// Events the shared tail keeps for runners that are behind it: past it,
/// a runner reads the store itself until it catches up again.
const TAIL_BUFFER: usize = 4096;

/// The longest group name.
pub const MAX_NAME: usize = 200;

/// The most type names in a filter.
pub const MAX_TYPES: usize = 100;

/// Why a join, or an operator's call, failed.
#[derive(Debug, thiserror::Error)]
pub enum GroupError {
    /// The group exists with another filter.
    #[error("group {0:?} exists with another filter; delete it to change it")]
    Conflict(String),
    /// The request is not valid.
    #[error("{0}")]
    Invalid(String),
    /// The store keeps no groups (EventStoreDB).
    #[error("this store keeps no consumer groups")]
    Unsupported,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] EventStoreError),
}

/// Where a new group starts. Ignored when the group exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// The first event.
    Beginning,
    /// After the last event stored when the group is made.
    End,
    /// At this position (inclusive).
    Position(u64),
}

/// A consumer's request to join a group.
#[derive(Debug, Clone)]
pub struct Join {
    /// The group's name.
    pub group: String,
    /// Event types delivered, by full type or by name (empty: all).
    pub types: Vec<String>,
    /// Only subjects starting with it (empty: all).
    pub prefix: String,
    /// Where a new group starts.
    pub start: Start,
    /// The most deliveries this member has unacknowledged at once (0: 100).
    pub max_in_flight: u32,
    /// A new group's ack timeout (`None`: the process's default).
    pub ack_timeout: Option<Duration>,
    /// A new group's deliveries before parking (`None`: the default).
    pub max_deliveries: Option<u32>,
}

/// How a process runs its groups.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// How long a partition's lease, and a member's listing, lasts without
    /// renewal: how long a dead process's partitions wait.
    pub lease: Duration,
    /// A new group's ack timeout, unless the first joiner says.
    pub ack_timeout: Duration,
    /// A new group's deliveries before an event is parked.
    pub max_deliveries: u32,
    /// Partitions of a new group.
    pub partitions: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            lease: Duration::from_secs(10),
            ack_timeout: Duration::from_secs(30),
            max_deliveries: 5,
            partitions: 32,
        }
    }
}

impl Settings {
    /// How often leases are renewed and checkpoints written.
    fn tick(&self) -> Duration {
        (self.lease / 10).max(Duration::from_millis(50))
    }
}

/// A stored event as consumers see it, or `None` for events that are not
/// theirs (internal bookkeeping).
pub struct Opened<T> {
    /// Its full type (what a filter matches, as does `name`).
    pub event_type: String,
    /// Its type's bare name.
    pub name: String,
    /// What the prefix filter matches.
    pub subject: String,
    /// What is sent.
    pub message: T,
}

/// Turns stored events into what consumers are sent.
pub type Opener<T> = Arc<dyn Fn(&RecordedEvent) -> Option<Opened<T>> + Send + Sync>;

/// One delivery to a member.
#[derive(Debug, Clone)]
pub struct Delivery<T> {
    /// The event's global position.
    pub position: u64,
    /// The event's id: what the member acknowledges, and deduplicates by.
    pub event_id: Uuid,
    /// 1 for the first delivery, then 2, 3…
    pub delivery: u32,
    /// What the opener made of the event.
    pub message: Arc<T>,
}

enum Command<T> {
    Add {
        id: Uuid,
        sender: mpsc::Sender<Delivery<T>>,
        max_in_flight: usize,
    },
    Ack(Vec<Uuid>),
    /// Send again after the delay (counts as a failed delivery).
    Nack(Vec<Uuid>, Duration),
    Leave(Uuid),
    /// The group was deleted: end every member.
    Stop,
}

/// A member of a group: its deliveries, and where its answers go. Leaves
/// the group when dropped.
pub struct Member<T> {
    /// Its id, listed in the store.
    pub id: Uuid,
    /// The group's name.
    pub group: String,
    /// The group's settings.
    pub spec: GroupSpec,
    deliveries: mpsc::Receiver<Delivery<T>>,
    commands: mpsc::UnboundedSender<Command<T>>,
}

impl<T> Member<T> {
    /// The next delivery; `None` once the group's runner stopped.
    pub async fn next(&mut self) -> Option<Delivery<T>> {
        self.deliveries.recv().await
    }

    /// Acknowledges events by id (unknown ids are ignored: an event
    /// already acknowledged, or moved to another process).
    pub fn ack(&self, ids: Vec<Uuid>) {
        let _ = self.commands.send(Command::Ack(ids));
    }

    /// Refuses events by id: each is sent again after `delay`, counted as a
    /// delivery (parked after the group's limit).
    pub fn nack(&self, ids: Vec<Uuid>, delay: Duration) {
        let _ = self.commands.send(Command::Nack(ids, delay));
    }

    /// A handle for answering from other tasks.
    pub fn answers(&self) -> Answers<T> {
        Answers {
            commands: self.commands.clone(),
        }
    }
}

/// Where a member's answers go, for tasks other than the one taking its
/// deliveries.
pub struct Answers<T> {
    commands: mpsc::UnboundedSender<Command<T>>,
}

impl<T> Clone for Answers<T> {
    fn clone(&self) -> Self {
        Self {
            commands: self.commands.clone(),
        }
    }
}

impl<T> Answers<T> {
    /// As [`Member::ack`].
    pub fn ack(&self, ids: Vec<Uuid>) {
        let _ = self.commands.send(Command::Ack(ids));
    }

    /// As [`Member::nack`].
    pub fn nack(&self, ids: Vec<Uuid>, delay: Duration) {
        let _ = self.commands.send(Command::Nack(ids, delay));
    }
}

impl<T> Drop for Member<T> {
    fn drop(&mut self) {
        let _ = self.commands.send(Command::Leave(self.id));
    }
}

/// Counters of one group on this process.
#[derive(Debug, Default)]
pub struct GroupCounters {
    /// First deliveries.
    pub delivered: AtomicU64,
    /// Deliveries after the first.
    pub redelivered: AtomicU64,
    /// Acknowledgements.
    pub acked: AtomicU64,
    /// Events parked.
    pub parked: AtomicU64,
    /// Members here.
    pub members: AtomicU64,
    /// The lowest checkpoint of the partitions held here (0: none held).
    pub checkpoint: AtomicU64,
}

/// The consumer groups of one store, on this process.
pub struct ConsumerGroups<T> {
    store: Arc<dyn EventStore>,
    groups: Option<Arc<dyn Groups>>,
    opener: Opener<T>,
    settings: Settings,
    runners: Arc<Mutex<HashMap<String, Runner<T>>>>,
    counters: Arc<Mutex<BTreeMap<String, Arc<GroupCounters>>>>,
    /// Started with the first group here.
    tail: Mutex<Option<Arc<Tail<T>>>>,
}

struct Runner<T> {
    commands: mpsc::UnboundedSender<Command<T>>,
    /// The runner's lease owner id.
    owner: Uuid,
}

impl<T: Send + Sync + 'static> ConsumerGroups<T> {
    /// The groups of `store`, whose events `opener` turns into messages.
    pub fn new(store: Arc<dyn EventStore>, opener: Opener<T>, settings: Settings) -> Self {
        Self {
            groups: store.groups(),
            store,
            opener,
            settings,
            runners: Arc::default(),
            counters: Arc::default(),
            tail: Mutex::new(None),
        }
    }

    fn tail(&self) -> Arc<Tail<T>> {
        self.tail
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert_with(|| Arc::new(Tail::start(self.store.clone(), self.opener.clone())))
            .clone()
    }

    fn tables(&self) -> Result<&Arc<dyn Groups>, GroupError> {
        self.groups.as_ref().ok_or(GroupError::Unsupported)
    }

    /// Joins `join.group` (making it, if new): the member's deliveries
    /// start once its process holds partitions for it.
    pub async fn join(&self, join: Join) -> Result<Member<T>, GroupError> {
        check_name(&join.group)?;
        if join.types.len() > MAX_TYPES || join.types.iter().any(|t| t.is_empty() || t.len() > 200)
        {
            return Err(GroupError::Invalid(format!(
                "at most {MAX_TYPES} types, each of 1 to 200 characters"
            )));
        }
        if join.prefix.len() > 1000 {
            return Err(GroupError::Invalid("a prefix of at most 1000 bytes".into()));
        }
        if join.max_in_flight > MAX_IN_FLIGHT {
            return Err(GroupError::Invalid(format!(
                "max_in_flight is at most {MAX_IN_FLIGHT}"
            )));
        }
        let ack_timeout = join.ack_timeout.unwrap_or(self.settings.ack_timeout);
        if !(Duration::from_millis(100)..=Duration::from_secs(3600)).contains(&ack_timeout) {
            return Err(GroupError::Invalid(
                "an ack timeout of 100 ms to one hour".into(),
            ));
        }
        let max_deliveries = join.max_deliveries.unwrap_or(self.settings.max_deliveries);
        if !(1..=100).contains(&max_deliveries) {
            return Err(GroupError::Invalid("max_deliveries of 1 to 100".into()));
        }
        let tables = self.tables()?.clone();
        let start = match join.start {
            Start::Beginning => 1,
            Start::End => self.store.head_position().await? + 1,
            Start::Position(p) => p.max(1),
        };
        let mut types = join.types.clone();
        types.sort();
        types.dedup();
        let wanted = GroupSpec {
            types,
            prefix: join.prefix.clone(),
            start,
            partitions: self.settings.partitions.max(1),
            ack_timeout_ms: ack_timeout.as_millis() as u64,
            max_deliveries,
        };
        let spec = tables.open_group(&join.group, &wanted).await?;
        if spec.types != wanted.types || spec.prefix != wanted.prefix {
            return Err(GroupError::Conflict(join.group));
        }
        let id = Uuid::new_v4();
        let max_in_flight = match join.max_in_flight {
            0 => 100,
            n => n as usize,
        };
        let (sender, deliveries) = mpsc::channel(max_in_flight);
        let commands = {
            let mut runners = self.runners.lock().unwrap_or_else(|p| p.into_inner());
            let add = Command::Add {
                id,
                sender,
                max_in_flight,
            };
            let add = match runners.get(&join.group) {
                Some(r) => match r.commands.send(add) {
                    Ok(()) => None,
                    Err(mpsc::error::SendError(add)) => Some(add),
                },
                None => Some(add),
            };
            match add {
                None => runners[&join.group].commands.clone(),
                Some(add) => {
                    let (commands, receiver) = mpsc::unbounded_channel();
                    let _ = commands.send(add);
                    let counters = self.counters_of(&join.group);
                    let state = State::new(
                        join.group.clone(),
                        spec.clone(),
                        Context {
                            store: self.store.clone(),
                            tail: self.tail(),
                            tables,
                            opener: self.opener.clone(),
                            settings: self.settings,
                            counters,
                        },
                    );
                    let owner = state.owner;
                    tokio::spawn(run(state, receiver, self.runners.clone()));
                    runners.insert(
                        join.group.clone(),
                        Runner {
                            commands: commands.clone(),
                            owner,
                        },
                    );
                    commands
                }
            }
        };
        Ok(Member {
            id,
            group: join.group,
            spec,
            deliveries,
            commands,
        })
    }

    fn counters_of(&self, group: &str) -> Arc<GroupCounters> {
        self.counters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(group.to_owned())
            .or_default()
            .clone()
    }

    /// Every group, on every process.
    pub async fn list(&self) -> Result<Vec<GroupInfo>, GroupError> {
        Ok(self.tables()?.list().await?)
    }

    /// The parked events of `group`, after position `after`.
    pub async fn parked(
        &self,
        group: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Parked>, GroupError> {
        check_name(group)?;
        Ok(self.tables()?.parked(group, after, limit).await?)
    }

    /// Asks for the parked events at `positions` (all if empty) to be
    /// delivered again; returns how many.
    pub async fn replay(&self, group: &str, positions: &[u64]) -> Result<u64, GroupError> {
        check_name(group)?;
        Ok(self.tables()?.replay(group, positions).await?)
    }

    /// Deletes `group`; its members here are ended.
    pub async fn delete(&self, group: &str) -> Result<bool, GroupError> {
        check_name(group)?;
        let deleted = self.tables()?.delete(group).await?;
        let runner = self
            .runners
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(group);
        if let Some(r) = runner {
            let _ = r.commands.send(Command::Stop);
        }
        Ok(deleted)
    }

    /// This process's counters, by group.
    pub fn counters(&self) -> Vec<(String, Arc<GroupCounters>)> {
        self.counters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// The head of the store (for lag).
    pub async fn head(&self) -> Result<u64, GroupError> {
        Ok(self.store.head_position().await?)
    }
}

fn check_name(name: &str) -> Result<(), GroupError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(GroupError::Invalid(format!(
            "a group name is 1 to {MAX_NAME} of A-Z a-z 0-9 - _ . :"
        )))
    }
}

/// Whether a filter lets an opened event through.
fn admits(spec: &GroupSpec, event_type: &str, name: &str, subject: &str) -> bool {
    (spec.types.is_empty() || spec.types.iter().any(|t| t == event_type || t == name))
        && subject.starts_with(&spec.prefix)
}

/// A stored event and what the opener made of it, made once and shared by
/// every group that reads it from the tail.
struct Seen<T> {
    event: RecordedEvent,
    opened: Option<Shared<T>>,
}

/// [`Opened`], its message shared.
struct Shared<T> {
    event_type: String,
    name: String,
    subject: String,
    message: Arc<T>,
}

impl<T> Seen<T> {
    fn open(event: RecordedEvent, opener: &Opener<T>) -> Self {
        let opened = opener(&event).map(|o| Shared {
            event_type: o.event_type,
            name: o.name,
            subject: o.subject,
            message: Arc::new(o.message),
        });
        Self { event, opened }
    }
}

/// One reader of the log's new events for every group of a process: a
/// runner that has caught up takes them from here instead of asking the
/// store, so ten live groups cost one read (and one opening) per event,
/// not ten.
struct Tail<T> {
    events: tokio::sync::broadcast::Sender<Arc<Seen<T>>>,
    task: tokio::task::JoinHandle<()>,
}

impl<T> Drop for Tail<T> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl<T: Send + Sync + 'static> Tail<T> {
    fn start(store: Arc<dyn EventStore>, opener: Opener<T>) -> Self {
        let (events, _) = tokio::sync::broadcast::channel(TAIL_BUFFER);
        let sender = events.clone();
        let task = tokio::spawn(async move {
            let mut next = match store.head_position().await {
                Ok(head) => head + 1,
                Err(_) => 1,
            };
            loop {
                let mut feed = store.subscribe_all(next);
                while let Some(event) = feed.next().await {
                    match event {
                        Ok(e) => {
                            next = e.position + 1;
                            // Opened only for someone to read it; with no
                            // receiver yet, runners catch up themselves.
                            if sender.receiver_count() > 0 {
                                let _ = sender.send(Arc::new(Seen::open(e, &opener)));
                            }
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "the consumer groups' tail failed; reading again");
                            break;
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        });
        Self { events, task }
    }
}

/// Where a runner reads the log: the store, until it has caught up, then
/// the shared tail (subscribed before catching up, so nothing falls
/// between the two).
enum Source<T> {
    CatchUp(tokio::sync::broadcast::Receiver<Arc<Seen<T>>>),
    Live(tokio::sync::broadcast::Receiver<Arc<Seen<T>>>),
}

/// Events read per query while catching up.
const CATCH_UP_BATCH: usize = 1024;

impl<T: Send + Sync + 'static> Source<T> {
    /// The next events at or after `cursor`.
    async fn next(
        &mut self,
        store: &dyn EventStore,
        tail: &Tail<T>,
        opener: &Opener<T>,
        cursor: u64,
    ) -> Result<Vec<Arc<Seen<T>>>, EventStoreError> {
        loop {
            match self {
                Self::CatchUp(live) => {
                    let batch = store.read_all(cursor.max(1), CATCH_UP_BATCH).await?;
                    if batch.is_empty() {
                        let live = std::mem::replace(live, tail.events.subscribe());
                        *self = Self::Live(live);
                        continue;
                    }
                    return Ok(batch
                        .into_iter()
                        .map(|e| Arc::new(Seen::open(e, opener)))
                        .collect());
                }
                Self::Live(live) => match live.recv().await {
                    Ok(e) if e.event.position < cursor => continue,
                    Ok(e) => {
                        // With what else is there already: one pass of the
                        // runner's loop for a burst, not one per event.
                        let mut events = vec![e];
                        while events.len() < CATCH_UP_BATCH {
                            match live.try_recv() {
                                Ok(e) => events.push(e),
                                Err(_) => break,
                            }
                        }
                        return Ok(events);
                    }
                    Err(_) => {
                        // Lagged past the buffer (or the tail is gone):
                        // read the store again.
                        *self = Self::CatchUp(tail.events.subscribe());
                    }
                },
            }
        }
    }
}

struct Context<T> {
    store: Arc<dyn EventStore>,
    tail: Arc<Tail<T>>,
    tables: Arc<dyn Groups>,
    opener: Opener<T>,
    settings: Settings,
    counters: Arc<GroupCounters>,
}

/// A member served here.
struct Local<T> {
    sender: mpsc::Sender<Delivery<T>>,
    in_flight: usize,
    max_in_flight: usize,
    /// Streams whose next event may be sent to this member now.
    ready: VecDeque<Arc<str>>,
}

/// A partition held here.
struct Part {
    /// The member its events go to.
    member: Uuid,
    /// Every event of the partition below it was read (or skipped).
    scanned: u64,
    /// Positions of its events waiting or in flight.
    pending: BTreeSet<u64>,
    /// No longer ours to send: waiting for what is in flight.
    draining: bool,
}

/// An event waiting or in flight.
struct Entry<T> {
    part: u32,
    stream: Arc<str>,
    event_id: Uuid,
    message: Arc<T>,
    deliveries: u32,
    /// In flight to this member until this time.
    out: Option<(Uuid, Instant)>,
    /// Not to be sent before this time (after a refusal).
    not_before: Option<Instant>,
    /// A replay of a parked event.
    replay: bool,
}

/// One stream's events here: at most one in flight.
#[derive(Default)]
struct StreamQueue {
    busy: Option<u64>,
    waiting: VecDeque<u64>,
}

struct State<T> {
    name: String,
    spec: GroupSpec,
    /// Who holds the leases: this runner.
    owner: Uuid,
    cx: Context<T>,
    members: BTreeMap<Uuid, Local<T>>,
    parts: BTreeMap<u32, Part>,
    entries: BTreeMap<u64, Entry<T>>,
    by_id: HashMap<Uuid, u64>,
    streams: HashMap<Arc<str>, StreamQueue>,
    /// The feed's next position to read.
    cursor: u64,
    /// Where the feed is read from; `None` until there is something to read.
    source: Option<Source<T>>,
}

impl<T: Send + Sync + 'static> State<T> {
    fn new(name: String, spec: GroupSpec, cx: Context<T>) -> Self {
        Self {
            name,
            spec,
            owner: Uuid::new_v4(),
            cx,
            members: BTreeMap::new(),
            parts: BTreeMap::new(),
            entries: BTreeMap::new(),
            by_id: HashMap::new(),
            streams: HashMap::new(),
            cursor: 0,
            source: None,
        }
    }

    fn ack_timeout(&self) -> Duration {
        Duration::from_millis(self.spec.ack_timeout_ms)
    }

    /// Partition `part`'s checkpoint: its first pending event, else as far
    /// as it was read.
    fn checkpoint(&self, part: u32) -> u64 {
        let p = &self.parts[&part];
        match p.pending.first() {
            Some(&first) => first,
            None if p.draining => p.scanned,
            None => p.scanned.max(self.cursor),
        }
    }

    fn checkpoints(&self) -> Vec<(u32, u64)> {
        self.parts
            .keys()
            .map(|&k| (k, self.checkpoint(k)))
            .collect()
    }

    fn publish(&self) {
        let c = &self.cx.counters;
        c.members
            .store(self.members.len() as u64, Ordering::Relaxed);
        let low = self.parts.keys().map(|&k| self.checkpoint(k)).min();
        c.checkpoint.store(low.unwrap_or(0), Ordering::Relaxed);
    }

    /// Whether the feed should be read now.
    fn wants_events(&self) -> bool {
        self.parts.values().any(|p| !p.draining) && self.entries.len() < MAX_PENDING
    }

    /// Takes one event off the feed.
    fn read(&mut self, seen: &Seen<T>) {
        let event = &seen.event;
        self.cursor = event.position + 1;
        let part = partition_of(&event.stream, self.spec.partitions);
        let Some(p) = self.parts.get_mut(&part) else {
            return;
        };
        if p.draining || event.position < p.scanned {
            return;
        }
        p.scanned = event.position + 1;
        let Some(opened) = &seen.opened else {
            return;
        };
        if !admits(
            &self.spec,
            &opened.event_type,
            &opened.name,
            &opened.subject,
        ) {
            return;
        }
        self.enqueue(part, event, opened.message.clone(), false);
    }

    fn enqueue(&mut self, part: u32, event: &RecordedEvent, message: Arc<T>, replay: bool) {
        if self.entries.contains_key(&event.position) {
            return;
        }
        let stream: Arc<str> = match self.streams.get_key_value(event.stream.as_str()) {
            Some((k, _)) => k.clone(),
            None => Arc::from(event.stream.as_str()),
        };
        self.entries.insert(
            event.position,
            Entry {
                part,
                stream: stream.clone(),
                event_id: event.id,
                message,
                deliveries: 0,
                out: None,
                not_before: None,
                replay,
            },
        );
        self.by_id.insert(event.id, event.position);
        if let Some(p) = self.parts.get_mut(&part) {
            p.pending.insert(event.position);
        }
        let queue = self.streams.entry(stream.clone()).or_default();
        let at = queue.waiting.partition_point(|&w| w < event.position);
        queue.waiting.insert(at, event.position);
        if queue.busy.is_none() && at == 0 {
            self.make_ready(&stream);
        }
    }

    /// Puts `stream` in its member's ready queue, if its partition is
    /// being sent.
    fn make_ready(&mut self, stream: &Arc<str>) {
        let part = partition_of(stream, self.spec.partitions);
        if let Some(p) = self.parts.get(&part).filter(|p| !p.draining)
            && let Some(m) = self.members.get_mut(&p.member)
        {
            m.ready.push_back(stream.clone());
        }
    }

    /// Sends what may be sent, to every member.
    fn dispatch(&mut self) {
        let now = Instant::now();
        let ids: Vec<Uuid> = self.members.keys().copied().collect();
        let mut gone = Vec::new();
        for id in ids {
            let mut later = Vec::new();
            while let Some(m) = self.members.get_mut(&id) {
                if m.in_flight >= m.max_in_flight {
                    break;
                }
                let Some(stream) = m.ready.pop_front() else {
                    break;
                };
                let Some(queue) = self.streams.get_mut(&stream) else {
                    continue;
                };
                if queue.busy.is_some() {
                    continue;
                }
                let Some(&position) = queue.waiting.front() else {
                    continue;
                };
                let Some(entry) = self.entries.get_mut(&position) else {
                    queue.waiting.pop_front();
                    continue;
                };
                if entry.not_before.is_some_and(|t| t > now) {
                    later.push(stream);
                    continue;
                }
                let part_ok = self
                    .parts
                    .get(&entry.part)
                    .is_some_and(|p| !p.draining && p.member == id);
                if !part_ok {
                    continue;
                }
                queue.waiting.pop_front();
                queue.busy = Some(position);
                entry.deliveries += 1;
                entry.not_before = None;
                entry.out = Some((id, now + Duration::from_millis(self.spec.ack_timeout_ms)));
                let delivery = Delivery {
                    position,
                    event_id: entry.event_id,
                    delivery: entry.deliveries,
                    message: entry.message.clone(),
                };
                let counter = if entry.deliveries == 1 {
                    &self.cx.counters.delivered
                } else {
                    &self.cx.counters.redelivered
                };
                match m.sender.try_send(delivery) {
                    Ok(()) => {
                        counter.fetch_add(1, Ordering::Relaxed);
                        m.in_flight += 1;
                    }
                    Err(_) => {
                        // The member is gone (or not reading): take it back.
                        entry.deliveries -= 1;
                        entry.out = None;
                        queue.busy = None;
                        queue.waiting.push_front(position);
                        m.ready.push_front(stream);
                        gone.push(id);
                        break;
                    }
                }
            }
            if let Some(m) = self.members.get_mut(&id) {
                m.ready.extend(later);
            }
        }
        for id in gone {
            if self.members.get(&id).is_some_and(|m| m.sender.is_closed()) {
                self.remove_member(id);
            }
        }
    }

    /// An event is done (acknowledged or parked): its stream goes on.
    fn finish(&mut self, position: u64) -> Option<Entry<T>> {
        let entry = self.entries.remove(&position)?;
        self.by_id.remove(&entry.event_id);
        if let Some(p) = self.parts.get_mut(&entry.part) {
            p.pending.remove(&position);
        }
        if let Some((member, _)) = entry.out
            && let Some(m) = self.members.get_mut(&member)
        {
            m.in_flight = m.in_flight.saturating_sub(1);
        }
        if let Some(queue) = self.streams.get_mut(&entry.stream) {
            if queue.busy == Some(position) {
                queue.busy = None;
            }
            queue.waiting.retain(|&w| w != position);
            if queue.busy.is_none() {
                if queue.waiting.is_empty() {
                    self.streams.remove(&entry.stream);
                } else {
                    let stream = entry.stream.clone();
                    self.make_ready(&stream);
                }
            }
        }
        Some(entry)
    }

    async fn ack(&mut self, ids: &[Uuid]) {
        for id in ids {
            let Some(&position) = self.by_id.get(id) else {
                continue;
            };
            // Only what was sent can be acknowledged.
            if self.entries.get(&position).is_some_and(|e| e.out.is_none()) {
                continue;
            }
            if let Some(entry) = self.finish(position) {
                self.cx.counters.acked.fetch_add(1, Ordering::Relaxed);
                if entry.replay
                    && let Err(e) = self.cx.tables.unpark(&self.name, position).await
                {
                    tracing::warn!(group = %self.name, position, error = %e, "cannot unpark a replayed event");
                }
            }
        }
    }

    /// Takes an event back from its member: sent again after `delay`, or
    /// parked if it has had its deliveries.
    async fn take_back(&mut self, position: u64, delay: Duration) {
        let Some(entry) = self.entries.get_mut(&position) else {
            return;
        };
        let Some((member, _)) = entry.out.take() else {
            return;
        };
        if let Some(m) = self.members.get_mut(&member) {
            m.in_flight = m.in_flight.saturating_sub(1);
        }
        if entry.deliveries >= self.spec.max_deliveries {
            let parked = Parked {
                position,
                event_id: entry.event_id,
                partition: entry.part,
                deliveries: entry.deliveries,
                parked_at: chrono::Utc::now(),
                replay: false,
            };
            match self.cx.tables.park(&self.name, &parked).await {
                Ok(()) => {
                    tracing::warn!(group = %self.name, position, deliveries = parked.deliveries, "parked an event");
                    self.cx.counters.parked.fetch_add(1, Ordering::Relaxed);
                    // Taken as sent to nobody, then finished.
                    self.finish(position);
                    return;
                }
                Err(e) => {
                    tracing::warn!(group = %self.name, position, error = %e, "cannot park an event; it will be sent again");
                }
            }
        }
        let Some(entry) = self.entries.get_mut(&position) else {
            return;
        };
        entry.not_before = (!delay.is_zero()).then(|| Instant::now() + delay);
        let stream = entry.stream.clone();
        if let Some(queue) = self.streams.get_mut(&stream) {
            queue.busy = None;
            queue.waiting.push_front(position);
        }
        self.make_ready(&stream);
    }

    async fn expire(&mut self) {
        let now = Instant::now();
        let due: Vec<u64> = self
            .entries
            .iter()
            .filter(|(_, e)| e.out.is_some_and(|(_, until)| until <= now))
            .map(|(&p, _)| p)
            .collect();
        for position in due {
            self.take_back(position, Duration::ZERO).await;
        }
    }

    fn remove_member(&mut self, id: Uuid) {
        if self.members.remove(&id).is_none() {
            return;
        }
        // What it held is sent again (to whoever gets its partitions).
        let held: Vec<u64> = self
            .entries
            .iter()
            .filter(|(_, e)| e.out.is_some_and(|(m, _)| m == id))
            .map(|(&p, _)| p)
            .collect();
        for position in held {
            if let Some(entry) = self.entries.get_mut(&position) {
                entry.out = None;
                let stream = entry.stream.clone();
                if let Some(queue) = self.streams.get_mut(&stream) {
                    queue.busy = None;
                    queue.waiting.push_front(position);
                }
            }
        }
        let cursor = self.cursor;
        for p in self.parts.values_mut() {
            if p.member == id && !p.draining {
                p.draining = true;
                p.scanned = p.scanned.max(cursor);
            }
        }
        self.publish();
    }

    /// Reads the feed again from `to`, if it is behind the cursor; the
    /// partitions read past it skip what they have.
    fn rewind(&mut self, to: u64) {
        if to >= self.cursor {
            return;
        }
        let cursor = self.cursor;
        for p in self.parts.values_mut() {
            if !p.draining {
                p.scanned = p.scanned.max(cursor);
            }
        }
        self.cursor = to;
        self.source = None;
    }

    /// Rebuilds every member's ready queue from the streams.
    fn rebuild_ready(&mut self) {
        for m in self.members.values_mut() {
            m.ready.clear();
        }
        let ready: Vec<Arc<str>> = self
            .streams
            .iter()
            .filter(|(_, q)| q.busy.is_none() && !q.waiting.is_empty())
            .map(|(s, _)| s.clone())
            .collect();
        for s in ready {
            self.make_ready(&s);
        }
    }

    /// Drops a partition's events held here.
    fn forget(&mut self, part: u32) {
        let Some(p) = self.parts.remove(&part) else {
            return;
        };
        for position in p.pending {
            if let Some(entry) = self.entries.remove(&position) {
                self.by_id.remove(&entry.event_id);
                if let Some((member, _)) = entry.out
                    && let Some(m) = self.members.get_mut(&member)
                {
                    m.in_flight = m.in_flight.saturating_sub(1);
                }
                self.streams.remove(&entry.stream);
            }
        }
    }

    /// Renews membership and leases, moves partitions, and writes the
    /// checkpoints.
    async fn tick(&mut self) -> Result<(), EventStoreError> {
        let lease = self.cx.settings.lease;
        let locals: Vec<Uuid> = self.members.keys().copied().collect();
        let live = if locals.is_empty() {
            Vec::new()
        } else {
            match self.cx.tables.heartbeat(&self.name, &locals, lease).await? {
                Some(live) => live,
                None => {
                    // Deleted (through another process): its members end.
                    tracing::info!(group = %self.name, "the group was deleted; ending its members here");
                    self.members.clear();
                    let keys: Vec<u32> = self.parts.keys().copied().collect();
                    for k in keys {
                        self.forget(k);
                    }
                    return Ok(());
                }
            }
        };
        // Who each partition belongs to now.
        let target =
            |k: u32| -> Option<Uuid> { (!live.is_empty()).then(|| live[k as usize % live.len()]) };
        // Partitions whose member changed stop being sent; once nothing
        // of theirs is in flight, they pass to the new member here, or are
        // given up.
        let mut release = Vec::new();
        let mut changed = false;
        let keys: Vec<u32> = self.parts.keys().copied().collect();
        let busy: BTreeSet<u32> = self
            .entries
            .values()
            .filter(|e| e.out.is_some())
            .map(|e| e.part)
            .collect();
        for k in keys {
            let want = target(k).filter(|m| self.members.contains_key(m));
            let cursor = self.cursor;
            let in_flight = busy.contains(&k);
            let Some(p) = self.parts.get_mut(&k) else {
                continue;
            };
            if want != Some(p.member) && !p.draining {
                p.draining = true;
                p.scanned = p.scanned.max(cursor);
                changed = true;
            }
            if p.draining && !in_flight {
                match want {
                    Some(m) => {
                        // Events it skipped while draining are read again
                        // (rewound while it is still draining, so that it
                        // keeps where it stopped).
                        let from = p.scanned;
                        self.rewind(from);
                        if let Some(p) = self.parts.get_mut(&k) {
                            p.member = m;
                            p.draining = false;
                        }
                        changed = true;
                    }
                    None => release.push(k),
                }
            }
        }
        if !release.is_empty() {
            let checkpoints: Vec<(u32, u64)> =
                release.iter().map(|&k| (k, self.checkpoint(k))).collect();
            self.cx
                .tables
                .release(&self.name, self.owner, &checkpoints)
                .await?;
            for k in release {
                self.forget(k);
            }
        }
        // Partitions that belong to members here and are not held yet.
        let wanted: Vec<u32> = (0..self.spec.partitions)
            .filter(|&k| {
                target(k).is_some_and(|m| self.members.contains_key(&m))
                    && !self.parts.contains_key(&k)
            })
            .collect();
        if !wanted.is_empty() {
            let taken = self
                .cx
                .tables
                .claim(&self.name, self.owner, &wanted, lease)
                .await?;
            if let Some(low) = taken.iter().map(|&(_, c)| c).min() {
                if self.parts.is_empty() {
                    self.cursor = low;
                    self.source = None;
                }
                self.rewind(low);
                for &(k, checkpoint) in &taken {
                    let Some(member) = target(k) else {
                        continue;
                    };
                    self.parts.insert(
                        k,
                        Part {
                            member,
                            scanned: checkpoint,
                            pending: BTreeSet::new(),
                            draining: false,
                        },
                    );
                }
                changed = true;
            }
        }
        if changed {
            self.rebuild_ready();
        }
        // Checkpoints and renewals; partitions taken over are dropped.
        if !self.parts.is_empty() {
            let checkpoints = self.checkpoints();
            let kept: BTreeSet<u32> = self
                .cx
                .tables
                .keep(&self.name, self.owner, &checkpoints, lease)
                .await?
                .into_iter()
                .collect();
            let lost: Vec<u32> = self
                .parts
                .keys()
                .filter(|k| !kept.contains(k))
                .copied()
                .collect();
            for k in lost {
                tracing::warn!(group = %self.name, partition = k, "a partition's lease was taken over");
                self.forget(k);
            }
            self.replays().await?;
        }
        self.publish();
        Ok(())
    }

    /// Takes the replays asked for in the partitions held here.
    async fn replays(&mut self) -> Result<(), EventStoreError> {
        let parts: Vec<u32> = self
            .parts
            .iter()
            .filter(|(_, p)| !p.draining)
            .map(|(&k, _)| k)
            .collect();
        if parts.is_empty() {
            return Ok(());
        }
        let taken = self.cx.tables.take_replays(&self.name, &parts, 100).await?;
        if taken.is_empty() {
            return Ok(());
        }
        let positions: Vec<u64> = taken.iter().map(|p| p.position).collect();
        for event in self.cx.store.read_positions(&positions).await? {
            let part = partition_of(&event.stream, self.spec.partitions);
            if let Some(opened) = (self.cx.opener)(&event) {
                self.enqueue(part, &event, Arc::new(opened.message), true);
            }
        }
        Ok(())
    }

    /// Gives every partition up (the last member left).
    async fn release_all(&mut self) {
        if self.parts.is_empty() {
            return;
        }
        let checkpoints = self.checkpoints();
        if let Err(e) = self
            .cx
            .tables
            .release(&self.name, self.owner, &checkpoints)
            .await
        {
            tracing::warn!(group = %self.name, error = %e, "cannot give a group's partitions up; their leases will end");
        }
        let keys: Vec<u32> = self.parts.keys().copied().collect();
        for k in keys {
            self.forget(k);
        }
        self.source = None;
    }
}

/// A group's runner on this process.
async fn run<T: Send + Sync + 'static>(
    mut st: State<T>,
    mut commands: mpsc::UnboundedReceiver<Command<T>>,
    runners: Arc<Mutex<HashMap<String, Runner<T>>>>,
) {
    let tick_every = st.cx.settings.tick();
    let mut ticker = tokio::time::interval(tick_every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let check_every = (st.ack_timeout() / 4).clamp(Duration::from_millis(10), tick_every);
    let mut checker = tokio::time::interval(check_every);
    checker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failures = 0u32;
    // When the leases were last renewed.
    let mut renewed = Instant::now();
    loop {
        let mut tick_now = false;
        if st.source.is_none() && st.wants_events() {
            st.source = Some(Source::CatchUp(st.cx.tail.events.subscribe()));
        }
        let (store, tail, cursor) = (st.cx.store.clone(), st.cx.tail.clone(), st.cursor);
        let opener = st.cx.opener.clone();
        let source = if st.wants_events() {
            st.source.as_mut()
        } else {
            None
        };
        let next_events = async move {
            match source {
                Some(s) => s.next(&*store, &tail, &opener, cursor).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            command = commands.recv() => match command {
                None => break,
                Some(Command::Add { id, sender, max_in_flight }) => {
                    st.members.insert(id, Local { sender, in_flight: 0, max_in_flight, ready: VecDeque::new() });
                    tick_now = true;
                }
                Some(Command::Ack(ids)) => st.ack(&ids).await,
                Some(Command::Nack(ids, delay)) => {
                    for id in ids {
                        if let Some(&position) = st.by_id.get(&id) {
                            st.take_back(position, delay).await;
                        }
                    }
                }
                Some(Command::Stop) => {
                    st.members.clear();
                    st.parts.clear();
                    break;
                }
                Some(Command::Leave(id)) => {
                    st.remove_member(id);
                    if let Err(e) = st.cx.tables.leave(&st.name, id).await {
                        tracing::warn!(group = %st.name, error = %e, "cannot list a member as gone; its listing will end");
                    }
                    tick_now = true;
                }
            },
            events = next_events => match events {
                Ok(events) => {
                    for event in &events {
                        st.read(event);
                    }
                }
                Err(e) => {
                    tracing::warn!(group = %st.name, error = %e, "a group's feed failed; reading again");
                    st.source = None;
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            },
            _ = ticker.tick() => tick_now = true,
            _ = checker.tick() => st.expire().await,
        }
        if tick_now {
            let started = Instant::now();
            match st.tick().await {
                Ok(()) => {
                    failures = 0;
                    renewed = started;
                }
                Err(e) => {
                    failures += 1;
                    if failures == 1 || failures % 100 == 0 {
                        tracing::warn!(group = %st.name, error = %e, failures, "a consumer group's tick failed");
                    }
                    // Cut off from the database past the lease: another
                    // process may hold these partitions now. Stop sending
                    // them; they are claimed again once the store answers.
                    if renewed.elapsed() > st.cx.settings.lease && !st.parts.is_empty() {
                        tracing::warn!(group = %st.name, "leases not renewed in time; giving the partitions up here");
                        let keys: Vec<u32> = st.parts.keys().copied().collect();
                        for k in keys {
                            st.forget(k);
                        }
                        st.source = None;
                    }
                }
            }
        }
        st.dispatch();
        if st.members.is_empty() {
            st.release_all().await;
            let mut map = runners.lock().unwrap_or_else(|p| p.into_inner());
            if commands.is_empty() {
                if map.get(&st.name).is_some_and(|r| r.owner == st.owner) {
                    map.remove(&st.name);
                }
                break;
            }
        }
    }
    st.publish();
}
