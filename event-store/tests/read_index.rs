//! Linearizable reads on a shared store: two handles on one PostgreSQL
//! database stand for two replicas. A write acknowledged through one is
//! seen by the very next linearizable read through the other, and
//! concurrent readers share head queries.

use std::sync::Arc;

use event_store::postgres::PostgresStore;
use event_store::read_model::{Projection, ReadModel};
use event_store::testing::TempDatabase;
use event_store::{EventStore, RecordedEvent};

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

async fn replicas() -> Option<(TempDatabase, Arc<dyn EventStore>, Arc<dyn EventStore>)> {
    let db = TempDatabase::create("read_index").await?;
    let writer = PostgresStore::connect(db.url()).await.expect("connect");
    let reader = PostgresStore::connect(db.url()).await.expect("connect");
    Some((db, Arc::new(writer), Arc::new(reader)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_through_one_replica_is_read_at_once_through_the_other() {
    let Some((_db, writer, reader)) = replicas().await else {
        return;
    };
    let view = Projection::start(reader, Last::default())
        .await
        .expect("start");
    for n in 1..=200 {
        tick(&*writer, n).await;
        let seen = view.read_linearizable().await.expect("read").0;
        assert_eq!(seen, n, "round {n}: the other replica read a stale model");
        // A plain read may lag: that is what the linearizable one is for.
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_readers_share_head_queries() {
    let Some((_db, writer, reader)) = replicas().await else {
        return;
    };
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
