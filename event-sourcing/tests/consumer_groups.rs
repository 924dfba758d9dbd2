//! Consumer groups over real stores: work shared by members on two
//! "processes" (two `ConsumerGroups` on one database), each stream in order,
//! redelivery after the ack timeout, parking and replay, filters, and the
//! checkpoint kept across a restart.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use event_sourcing::consumer_group::{
    ConsumerGroups, Delivery, GroupError, Join, Member, Opened, Opener, Settings, Start,
};
use event_store::testing::TempStore;
use event_store::{EventStore, ExpectedVersion, NewEvent};
use uuid::Uuid;

/// What a test member is sent: the event's stream and version.
type Seen = (String, u64);

fn opener() -> Opener<Seen> {
    Arc::new(|e| {
        // Bookkeeping that consumers never see, as services skip theirs.
        if e.stream.starts_with('$') {
            return None;
        }
        Some(Opened {
            event_type: format!("test.{}.v1", e.event_type),
            name: e.event_type.clone(),
            subject: e.stream.clone(),
            message: (e.stream.clone(), e.version),
        })
    })
}

fn settings() -> Settings {
    Settings {
        lease: Duration::from_secs(1),
        ack_timeout: Duration::from_millis(400),
        max_deliveries: 3,
        partitions: 8,
    }
}

fn join(group: &str) -> Join {
    Join {
        group: group.into(),
        types: Vec::new(),
        prefix: String::new(),
        start: Start::Beginning,
        max_in_flight: 0,
        ack_timeout: None,
        max_deliveries: None,
    }
}

async fn stores(test: &str) -> Vec<TempStore> {
    let mut stores = vec![TempStore::sqlite()];
    stores.extend(TempStore::postgres(test).await);
    stores
}

/// Appends `n` events to each of `streams` streams, from `writers` tasks.
async fn write(store: &Arc<dyn EventStore>, streams: usize, n: usize, kind: &str) {
    let mut tasks = Vec::new();
    for w in 0..4 {
        let store = store.clone();
        let kind = kind.to_owned();
        tasks.push(tokio::spawn(async move {
            for s in (w..streams).step_by(4) {
                for _ in 0..n {
                    let e = NewEvent::new(&kind, &serde_json::json!({})).unwrap();
                    store
                        .append(&format!("{kind}-{s}"), ExpectedVersion::Any, vec![e])
                        .await
                        .unwrap();
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

/// Every delivery, in the order members took them.
#[derive(Default)]
struct Log {
    deliveries: Mutex<Vec<(Uuid, Seen, u32)>>,
}

impl Log {
    fn note(&self, member: Uuid, d: &Delivery<Seen>) {
        self.deliveries
            .lock()
            .unwrap()
            .push((member, (*d.message).clone(), d.delivery));
    }

    /// Each stream's versions in the order delivered, repeats collapsed:
    /// must rise strictly.
    fn check_order(&self) {
        let mut by_stream: HashMap<String, Vec<u64>> = HashMap::new();
        for (_, (stream, version), _) in self.deliveries.lock().unwrap().iter() {
            let seen = by_stream.entry(stream.clone()).or_default();
            if seen.last() != Some(version) {
                seen.push(*version);
            }
        }
        for (stream, versions) in by_stream {
            assert!(
                versions.windows(2).all(|w| w[0] < w[1]),
                "{stream} out of order: {versions:?}"
            );
        }
    }

    fn distinct(&self) -> HashSet<Seen> {
        let log = self.deliveries.lock().unwrap();
        log.iter().map(|(_, s, _)| s.clone()).collect()
    }
}

/// Takes deliveries and acknowledges each, until dropped.
fn consume(mut member: Member<Seen>, log: Arc<Log>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(d) = member.next().await {
            log.note(member.id, &d);
            member.ack(vec![d.event_id]);
        }
    })
}

async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn members_on_two_processes_share_a_group_each_stream_in_order() {
    for temp in stores("consumer_groups_share").await {
        let store = event_store::open(temp.url()).await.unwrap();
        write(&store, 40, 5, "counted").await;
        // Two processes of one service (one store handle each).
        let other = event_store::open(temp.url()).await.unwrap();
        let here = ConsumerGroups::new(store.clone(), opener(), settings());
        let there = ConsumerGroups::new(other.clone(), opener(), settings());
        let log = Arc::new(Log::default());
        let a = consume(here.join(join("g")).await.unwrap(), log.clone());
        let b = consume(there.join(join("g")).await.unwrap(), log.clone());
        let c = consume(there.join(join("g")).await.unwrap(), log.clone());
        // Once every process has seen every member (a few ticks), more
        // while they read.
        tokio::time::sleep(Duration::from_millis(500)).await;
        write(&store, 40, 5, "counted").await;
        until("400 events", || log.distinct().len() == 400).await;
        log.check_order();
        let members: HashSet<Uuid> = log.deliveries.lock().unwrap().iter().map(|d| d.0).collect();
        assert_eq!(members.len(), 3, "work shared");
        let listed = here.list().await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].members, 3);
        for t in [a, b, c] {
            t.abort();
        }
        drop((here, there));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_event_is_sent_again_then_parked_and_replayed() {
    for temp in stores("consumer_groups_park").await {
        let store = event_store::open(temp.url()).await.unwrap();
        write(&store, 1, 2, "counted").await;
        let groups = ConsumerGroups::new(store.clone(), opener(), settings());
        let mut member = groups.join(join("slow")).await.unwrap();
        // Never acknowledged: delivered 3 times, then parked, and the
        // stream goes on to its second event.
        let mut got = Vec::new();
        let mut last = None;
        for _ in 0..4 {
            let d = tokio::time::timeout(Duration::from_secs(10), member.next())
                .await
                .expect("a delivery")
                .unwrap();
            got.push((d.message.1, d.delivery));
            last = Some(d.event_id);
        }
        assert_eq!(got, [(0, 1), (0, 2), (0, 3), (1, 1)]);
        let parked = groups.parked("slow", 0, 10).await.unwrap();
        assert_eq!(parked.len(), 1);
        assert_eq!(parked[0].deliveries, 3);
        // A refusal sends it again at once (delivery 2 of the second).
        member.nack(vec![last.unwrap()], Duration::ZERO);
        let second = tokio::time::timeout(Duration::from_millis(300), member.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!((second.message.1, second.delivery), (1, 2));
        member.ack(vec![second.event_id]);
        // Replayed: delivered again; acknowledged, it is no longer parked.
        assert_eq!(groups.replay("slow", &[]).await.unwrap(), 1);
        let d = tokio::time::timeout(Duration::from_secs(10), member.next())
            .await
            .expect("the replay")
            .unwrap();
        assert_eq!(d.message.1, 0);
        member.ack(vec![d.event_id]);
        until_async(|| async { groups.parked("slow", 0, 10).await.unwrap().is_empty() }).await;
        let stats = groups.counters();
        assert_eq!(
            stats[0].1.parked.load(std::sync::atomic::Ordering::Relaxed),
            1
        );
    }
}

async fn until_async<F, Fut>(mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !done().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_hold_and_a_group_keeps_its_filter() {
    for temp in stores("consumer_groups_filter").await {
        let store = event_store::open(temp.url()).await.unwrap();
        write(&store, 4, 3, "kept").await;
        write(&store, 4, 3, "other").await;
        let groups = ConsumerGroups::new(store.clone(), opener(), settings());
        let log = Arc::new(Log::default());
        let mut by_type = join("typed");
        by_type.types = vec!["kept".into()];
        let t = consume(groups.join(by_type.clone()).await.unwrap(), log.clone());
        let mut by_prefix = join("prefixed");
        by_prefix.prefix = "other-1".into();
        let p = consume(groups.join(by_prefix).await.unwrap(), log.clone());
        until("12 + 3 events", || log.distinct().len() == 15).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let seen = log.distinct();
        assert_eq!(seen.len(), 15, "nothing else");
        assert!(
            seen.iter()
                .all(|(s, _)| s.starts_with("kept-") || s == "other-1")
        );
        // The same group with another filter is refused.
        by_type.types = vec!["other".into()];
        assert!(matches!(
            groups.join(by_type).await,
            Err(GroupError::Conflict(_))
        ));
        // Names are checked.
        assert!(matches!(
            groups.join(join("no spaces")).await,
            Err(GroupError::Invalid(_))
        ));
        t.abort();
        p.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_checkpoint_survives_a_restart() {
    for temp in stores("consumer_groups_restart").await {
        let store = event_store::open(temp.url()).await.unwrap();
        write(&store, 10, 10, "counted").await;
        let log = Arc::new(Log::default());
        {
            let groups = ConsumerGroups::new(store.clone(), opener(), settings());
            let task = consume(groups.join(join("kept")).await.unwrap(), log.clone());
            until("100 events", || log.distinct().len() == 100).await;
            // A tick writes the checkpoint; then the member leaves, and its
            // runner gives the partitions up with their checkpoints.
            tokio::time::sleep(Duration::from_millis(300)).await;
            task.abort();
            let _ = task.await;
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        drop(store);
        let store = event_store::open(temp.url()).await.unwrap();
        write(&store, 10, 1, "counted").await;
        let groups = ConsumerGroups::new(store.clone(), opener(), settings());
        let after = Arc::new(Log::default());
        let task = consume(groups.join(join("kept")).await.unwrap(), after.clone());
        until("10 new events", || after.distinct().len() >= 10).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let versions: BTreeMap<u64, usize> =
            after
                .distinct()
                .iter()
                .fold(BTreeMap::new(), |mut m, (_, v)| {
                    *m.entry(*v).or_default() += 1;
                    m
                });
        assert_eq!(versions, BTreeMap::from([(10, 10)]), "only the new events");
        task.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_group_ends_its_members_on_every_process() {
    for temp in stores("consumer_groups_delete").await {
        let store = event_store::open(temp.url()).await.unwrap();
        let other = event_store::open(temp.url()).await.unwrap();
        let here = ConsumerGroups::new(store.clone(), opener(), settings());
        let there = ConsumerGroups::new(other, opener(), settings());
        let mut near = here.join(join("doomed")).await.unwrap();
        let mut far = there.join(join("doomed")).await.unwrap();
        assert!(here.delete("doomed").await.unwrap());
        for member in [&mut near, &mut far] {
            let ended = tokio::time::timeout(Duration::from_secs(10), member.next()).await;
            assert!(matches!(ended, Ok(None)), "the member ends");
        }
        assert!(here.list().await.unwrap().is_empty());
        assert!(!here.delete("doomed").await.unwrap());
    }
}

/// `movies copy` takes the groups along: settings, checkpoints and parked
/// events (the positions are the same in the copy), once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_of_the_store_takes_its_groups_along() {
    let Some(target) = TempStore::postgres("consumer_groups_copy").await else {
        return;
    };
    let source = TempStore::sqlite();
    let from = event_store::open(source.url()).await.unwrap();
    write(&from, 4, 5, "counted").await;
    {
        let groups = ConsumerGroups::new(from.clone(), opener(), settings());
        let log = Arc::new(Log::default());
        let task = consume(groups.join(join("kept")).await.unwrap(), log.clone());
        until("20 events", || log.distinct().len() == 20).await;
        // One delivery allowed, never answered: parked.
        let mut parking = join("parking");
        parking.max_deliveries = Some(1);
        let _silent = groups.join(parking).await.unwrap();
        until_async(|| async { !groups.parked("parking", 0, 10).await.unwrap().is_empty() }).await;
        task.abort();
        let _ = task.await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // The members are gone; their runners stop within a tick.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let to = event_store::open(target.url()).await.unwrap();
    event_store::copy::copy(
        from.clone(),
        &*to,
        &mut event_store::copy::AsIs,
        &mut |_| {},
    )
    .await
    .unwrap();
    assert_eq!(event_store::groups::copy(&*from, &*to).await.unwrap(), 2);
    let (a, b) = (from.groups().unwrap(), to.groups().unwrap());
    let exported = a.export().await.unwrap();
    assert_eq!(exported.len(), 2);
    assert!(
        exported[0].checkpoints.iter().any(|&(_, c)| c > 1),
        "{exported:?}"
    );
    assert_eq!(exported, b.export().await.unwrap());
    // Once: a group the target has is left as it is.
    assert_eq!(event_store::groups::copy(&*from, &*to).await.unwrap(), 0);
}
