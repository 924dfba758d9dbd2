//! Linearizable reads on a shared store: two handles on one PostgreSQL
//! database stand for two replicas. A write acknowledged through one is
//! seen by the very next linearizable read through the other, under a read
//! lease (no head query) and without one (concurrent readers share head
//! queries); writes wait for lease holders, but not for ever.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use event_sourcing::read_model::{Projection, ReadModel};
use event_store::lease::{ACK_WAIT, LEASE_TTL, RENEW_EVERY};
use event_store::postgres::PostgresStore;
use event_store::testing::TempDatabase;
use event_store::{
    AppendResult, EventStore, EventStream, ExpectedVersion, NewEvent, RecordedEvent, Result,
};
use futures_util::StreamExt;
use uuid::Uuid;

mod support;
use support::{Counted, tick};

/// The last tick seen.
#[derive(Default)]
struct Last(u64);

impl ReadModel for Last {
    type Event = Counted;

    fn apply(&mut self, event: Counted, _: &RecordedEvent) {
        let Counted::Ticked { n } = event;
        self.0 = n;
    }
}

/// A store that keeps no read leases: what the head-query path is tested on.
struct NoLeases(Arc<dyn EventStore>);

#[async_trait]
impl EventStore for NoLeases {
    async fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult> {
        self.0.append(stream, expected, events).await
    }
    async fn read_stream(&self, stream: &str, from_version: u64) -> Result<Vec<RecordedEvent>> {
        self.0.read_stream(stream, from_version).await
    }
    async fn read_all(&self, from_position: u64, limit: usize) -> Result<Vec<RecordedEvent>> {
        self.0.read_all(from_position, limit).await
    }
    async fn head_position(&self) -> Result<u64> {
        self.0.head_position().await
    }
    fn subscribe_all(&self, from_position: u64) -> EventStream {
        self.0.subscribe_all(from_position)
    }
}

async fn replicas() -> Option<(TempDatabase, Arc<dyn EventStore>, Arc<dyn EventStore>)> {
    let db = TempDatabase::create("read_index").await?;
    let writer = PostgresStore::connect(db.url()).await.expect("connect");
    let reader = PostgresStore::connect(db.url()).await.expect("connect");
    Some((db, Arc::new(writer), Arc::new(reader)))
}

/// Each write through `writer` is read by the very next linearizable read
/// of `view` (fed by another store handle), 200 times.
async fn writes_are_read_at_once(writer: &dyn EventStore, view: &Projection<Last>) {
    for n in 1..=200 {
        tick(writer, n).await;
        let seen = view.read_linearizable().await.expect("read").0;
        assert_eq!(seen, n, "round {n}: the other replica read a stale model");
        // A plain read may lag: that is what the linearizable one is for.
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_through_one_replica_is_read_at_once_through_the_other() {
    let Some((_db, writer, reader)) = replicas().await else {
        return;
    };
    let view = Projection::start(Arc::new(NoLeases(reader)), Last::default())
        .await
        .expect("start");
    writes_are_read_at_once(&*writer, &view).await;
    assert_eq!(view.lease_reads(), 0);
    assert!(view.head_queries() >= 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_a_read_lease_writes_are_read_at_once_without_head_queries() {
    let Some((_db, writer, reader)) = replicas().await else {
        return;
    };
    let view = Projection::start(reader, Last::default())
        .await
        .expect("start");
    // Until the lease is first granted, reads ask the store.
    let granted = Instant::now();
    while view.lease_reads() == 0 && granted.elapsed() < Duration::from_secs(10) {
        drop(view.read_linearizable().await.expect("read"));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (leased_before, asked_before) = (view.lease_reads(), view.head_queries());
    writes_are_read_at_once(&*writer, &view).await;
    let leased = view.lease_reads() - leased_before;
    let asked = view.head_queries() - asked_before;
    assert!(
        leased >= 150 && asked <= 50,
        "{leased} of 200 reads under the lease, {asked} head queries"
    );
}

/// Renews `holder`'s lease until a renewal is refused (a revocation): a
/// holder alive but never applying.
fn renew_until_revoked(
    leases: Arc<dyn event_store::lease::ReadLeases>,
    holder: Uuid,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while leases.renew(holder, LEASE_TTL).await.expect("renew") {
            tokio::time::sleep(RENEW_EVERY).await;
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_that_never_answers_is_revoked_and_writes_go_on() {
    let Some((_db, writer, reader)) = replicas().await else {
        return;
    };
    let leases = reader.read_leases().expect("postgres keeps read leases");
    let holder = Uuid::new_v4();
    leases.grant(holder, LEASE_TTL).await.expect("grant");
    // Alive (renewing) but never applying: only a revocation lets writes by.
    let renewing = renew_until_revoked(leases.clone(), holder);
    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(10), tick(&*writer, 1))
        .await
        .expect("the write was held up for ever");
    let took = started.elapsed();
    assert!(
        took >= ACK_WAIT,
        "acknowledged after {took:?}, before the holder answered or was revoked"
    );
    tokio::time::timeout(Duration::from_secs(5), renewing)
        .await
        .expect("the holder could still renew its revoked lease")
        .expect("renewing task");
    // A fresh grant is the only way back; then it is waited for again.
    leases.grant(holder, LEASE_TTL).await.expect("grant");
    assert!(leases.renew(holder, LEASE_TTL).await.expect("renew"));
    leases.applied(holder, u64::MAX).await.expect("applied");
    tick(&*writer, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_given_up_or_ended_holds_no_write_up() {
    let Some((_db, writer, reader)) = replicas().await else {
        return;
    };
    let leases = reader.read_leases().expect("postgres keeps read leases");
    // A holder that died (never renews): writes wait for its lease to end.
    let dead = Uuid::new_v4();
    leases.grant(dead, LEASE_TTL).await.expect("grant");
    tokio::time::timeout(Duration::from_secs(10), tick(&*writer, 1))
        .await
        .expect("a dead holder held a write up for ever");
    // A projection that closes gives its lease up: later writes do not wait.
    let view = Projection::start(reader.clone(), Last::default())
        .await
        .expect("start");
    view.close().await;
    let started = Instant::now();
    tick(&*writer, 2).await;
    let took = started.elapsed();
    assert!(
        took < ACK_WAIT,
        "a given-up lease held a write up for {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_readers_share_head_queries() {
    let Some((_db, writer, reader)) = replicas().await else {
        return;
    };
    let reader: Arc<dyn EventStore> = Arc::new(NoLeases(reader));
    let view = Arc::new(
        Projection::start(reader, Last::default())
            .await
            .expect("start"),
    );
    const READERS: u64 = 500;
    for round in 1..=5 {
        tick(&*writer, round).await;
        let before = view.head_queries();
        let reads = (0..READERS).map(|_| {
            let view = view.clone();
            tokio::spawn(async move { view.read_linearizable().await.expect("read").0 })
        });
        for seen in futures_util::future::join_all(reads).await {
            assert_eq!(seen.expect("reader"), round);
        }
        let queries = view.head_queries() - before;
        assert!(
            (1..READERS / 10).contains(&queries),
            "{READERS} concurrent readers made {queries} head queries"
        );
    }
}

/// Security review 3, finding 2: a role that may only connect sends
/// `NOTIFY es_applied '<holder> <u64::MAX>'` for a holder that renews its
/// lease but never applies. A writer that believed it would answer at once
/// and never revoke the holder (which then serves stale reads); the
/// acknowledgement must come from the holder's row, so the write still
/// revokes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_acknowledgement_exempts_no_holder() {
    let Some(db) = TempDatabase::create("read_index").await else {
        return;
    };
    let writer = PostgresStore::connect(db.url()).await.expect("connect");
    let reader = PostgresStore::connect(db.url()).await.expect("connect");
    let outsider = db.outsider().await;
    let leases = reader.read_leases().expect("postgres keeps read leases");
    let holder = Uuid::new_v4();
    leases.grant(holder, LEASE_TTL).await.expect("grant");
    let renewing = renew_until_revoked(leases.clone(), holder);
    outsider
        .client
        .batch_execute(&format!("NOTIFY es_applied, '{holder} {}'", u64::MAX))
        .await
        .expect("any role that may connect may notify");
    // The writer's listener has heard it by now (on the old code).
    tokio::time::sleep(Duration::from_millis(300)).await;
    tokio::time::timeout(Duration::from_secs(10), tick(&writer, 1))
        .await
        .expect("the write was held up for ever");
    tokio::time::timeout(Duration::from_secs(5), renewing)
        .await
        .expect("the holder was not revoked: the forged acknowledgement was believed")
        .expect("renewing task");
}

/// Security review 3, finding 3: one forged `NOTIFY es_events,
/// '18446744073709551615'` must not put a caught-up subscription in a hot
/// loop of empty reads (it did: ~13,000 transactions a second per
/// replica). Counted as the database's committed transactions over 3 s
/// with one idle subscription: a few a second at rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_head_puts_no_subscription_in_a_loop() {
    let Some(db) = TempDatabase::create("read_index").await else {
        return;
    };
    let store = PostgresStore::connect(db.url()).await.expect("connect");
    tick(&store, 1).await;
    let mut feed = store.subscribe_all(1);
    let first = tokio::time::timeout(Duration::from_secs(5), feed.next())
        .await
        .expect("the first event");
    assert!(matches!(first, Some(Ok(_))), "{first:?}");
    let outsider = db.outsider().await;
    let committed = async || -> i64 {
        outsider
            .client
            .batch_execute("SELECT pg_stat_clear_snapshot()")
            .await
            .expect("clear");
        outsider
            .client
            .query_one(
                "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()",
                &[],
            )
            .await
            .expect("stats")
            .get(0)
    };
    let before = committed().await;
    outsider
        .client
        .batch_execute(&format!("NOTIFY es_events, '{}'", u64::MAX))
        .await
        .expect("any role that may connect may notify");
    // Polled by the subscription, it would fetch nothing meanwhile.
    let next = tokio::time::timeout(Duration::from_secs(3), feed.next()).await;
    assert!(next.is_err(), "an event out of nowhere: {next:?}");
    // Statistics reach the view within a second of a transaction's end.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let spent = committed().await - before;
    assert!(
        spent < 500,
        "{spent} transactions in 4.5 s after one forged notification"
    );
    // And the feed still follows real writes.
    tick(&store, 2).await;
    let second = tokio::time::timeout(Duration::from_secs(5), feed.next())
        .await
        .expect("the next real event");
    assert!(matches!(second, Some(Ok(_))), "{second:?}");
}
