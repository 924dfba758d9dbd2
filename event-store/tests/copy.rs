//! `import` and `copy` between real stores: SQLite and PostgreSQL, each way.
//! PostgreSQL cases run on databases made for the test and dropped after
//! (without a server they say so and pass, unless MOVIES_REQUIRE_POSTGRES=1).

use std::sync::Arc;

use event_store::copy::{self, AsIs, CopyError, Transform};
use event_store::testing::TempStore;
use event_store::{EventStore, EventStoreError, ExpectedVersion, NewEvent, RecordedEvent, open};
use serde_json::json;
use serde_json::value::RawValue;

/// Enough events for three batches.
const EVENTS: u64 = copy::BATCH as u64 * 2 + 700;

async fn temp(kind: &str, test: &str) -> Option<TempStore> {
    match kind {
        "sqlite" => Some(TempStore::sqlite()),
        _ => TempStore::postgres(test).await,
    }
}

/// A source store with [`EVENTS`] events over many streams, with metadata.
async fn filled(store: &dyn EventStore) {
    let per_append = 100;
    for a in 0..EVENTS / per_append {
        let events = (0..per_append)
            .map(|i| {
                let n = a * per_append + i;
                let mut e = NewEvent::new("Counted", &json!({"type": "Counted", "n": n})).unwrap();
                e.metadata =
                    RawValue::from_string(format!(r#"{{"traceparent":"t-{n}"}}"#)).unwrap();
                e
            })
            .collect();
        store
            .append(&format!("stream-{}", a % 7), ExpectedVersion::Any, events)
            .await
            .unwrap();
    }
}

async fn everything(store: &dyn EventStore) -> Vec<RecordedEvent> {
    store.read_all(0, usize::MAX >> 1).await.unwrap()
}

/// Equal in every stored field, times to the microsecond.
fn assert_same(a: &[RecordedEvent], b: &[RecordedEvent]) {
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(b) {
        assert_eq!(
            (x.position, &x.stream, x.version, &x.event_type, x.id),
            (y.position, &y.stream, y.version, &y.event_type, y.id)
        );
        assert_eq!(
            (x.data.get(), x.metadata.get()),
            (y.data.get(), y.metadata.get())
        );
        assert_eq!(
            x.recorded_at.timestamp_micros(),
            y.recorded_at.timestamp_micros()
        );
    }
}

/// Fails at one position: a copy killed halfway.
struct DiesAt(u64);

#[async_trait::async_trait]
impl Transform for DiesAt {
    fn apply(&mut self, event: RecordedEvent) -> Result<RecordedEvent, String> {
        if event.position == self.0 {
            return Err("killed".into());
        }
        Ok(event)
    }
}

async fn stores(from: &str, to: &str, test: &str) -> Option<(TempStore, TempStore)> {
    let source = temp(from, &format!("{test}_from")).await?;
    let target = temp(to, &format!("{test}_to")).await?;
    Some((source, target))
}

async fn copies_everything_resumes_and_refuses(from: &str, to: &str, test: &str) {
    let Some((source, target)) = stores(from, to, test).await else {
        return;
    };
    let src: Arc<dyn EventStore> = open(source.url()).await.unwrap();
    let dst: Arc<dyn EventStore> = open(target.url()).await.unwrap();
    filled(&*src).await;
    let all = everything(&*src).await;

    // Killed in the second batch: the first stands, whole.
    let stopped = copy::copy(
        src.clone(),
        &*dst,
        &mut DiesAt(copy::BATCH as u64 + 3),
        &mut |_| {},
    )
    .await
    .unwrap_err();
    assert!(matches!(stopped, CopyError::Transform { .. }), "{stopped}");
    assert_eq!(dst.head_position().await.unwrap(), copy::BATCH as u64);

    // Run again: it goes on after the first batch, and ends at the head.
    let mut heard = Vec::new();
    let done = copy::copy(src.clone(), &*dst, &mut AsIs, &mut |p| heard.push(*p))
        .await
        .unwrap();
    assert_eq!(done.resumed_from, copy::BATCH as u64);
    assert_eq!(done.copied, EVENTS - copy::BATCH as u64);
    assert_eq!(heard.last().unwrap().position, EVENTS);
    assert_same(&all, &everything(&*dst).await);

    // A third run has nothing to do.
    let again = copy::copy(src.clone(), &*dst, &mut AsIs, &mut |_| {})
        .await
        .unwrap();
    assert_eq!(again.copied, 0);

    // The target goes on where the source stopped: versions, positions,
    // and a retry of an append the source made answers as it did there.
    let first = &all[0];
    let retried = NewEvent {
        id: first.id,
        event_type: first.event_type.clone(),
        data: first.data.clone(),
        metadata: first.metadata.clone(),
    };
    let stream_len = all.iter().filter(|e| e.stream == first.stream).count() as u64;
    let next = dst
        .append(
            &first.stream,
            ExpectedVersion::Exact(stream_len - 1),
            vec![NewEvent::new("Counted", &json!({"type": "Counted"})).unwrap()],
        )
        .await
        .unwrap();
    assert_eq!(
        (next.position, next.stream_version),
        (EVENTS + 1, stream_len)
    );
    let replay = dst
        .append(&first.stream, ExpectedVersion::NoStream, vec![retried])
        .await;
    assert!(
        matches!(replay, Ok(r) if r.position == first.position && r.stream_version == 0),
        "{replay:?}"
    );

    // Now the target holds an event the source has not: it is refused.
    let refused = copy::copy(src.clone(), &*dst, &mut AsIs, &mut |_| {})
        .await
        .unwrap_err();
    assert!(
        matches!(refused, CopyError::TargetHoldsOtherData(_)),
        "{refused}"
    );
}

async fn another_stores_data_is_refused_and_left_alone(to: &str, test: &str) {
    let Some((source, target)) = stores("sqlite", to, test).await else {
        return;
    };
    let src: Arc<dyn EventStore> = open(source.url()).await.unwrap();
    let dst: Arc<dyn EventStore> = open(target.url()).await.unwrap();
    filled(&*src).await;
    let own = NewEvent::new("Mine", &json!({"type": "Mine"})).unwrap();
    dst.append("other", ExpectedVersion::NoStream, vec![own])
        .await
        .unwrap();
    let refused = copy::copy(src, &*dst, &mut AsIs, &mut |_| {})
        .await
        .unwrap_err();
    assert!(
        matches!(refused, CopyError::TargetHoldsOtherData(_)),
        "{refused}"
    );
    assert_eq!(everything(&*dst).await.len(), 1);
}

async fn imports_below_the_head_are_refused(to: &str, test: &str) {
    let Some(target) = temp(to, test).await else {
        return;
    };
    let dst: Arc<dyn EventStore> = open(target.url()).await.unwrap();
    let e = NewEvent::new("One", &json!({"type": "One"})).unwrap();
    dst.append("s", ExpectedVersion::NoStream, vec![e])
        .await
        .unwrap();
    let mut stored = everything(&*dst).await.pop().unwrap();
    stored.id = uuid::Uuid::new_v4();
    stored.version = 1;
    let refused = dst.import(vec![stored.clone()]).await.unwrap_err();
    assert!(
        matches!(
            refused,
            EventStoreError::ImportOutOfOrder {
                position: 1,
                head: 1
            }
        ),
        "{refused}"
    );
    stored.position = 2;
    assert_eq!(dst.import(vec![stored]).await.unwrap(), 2);
    assert_eq!(dst.head_position().await.unwrap(), 2);
}

macro_rules! cases {
    ($($name:ident: $from:literal -> $to:literal;)*) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn copies_everything_resumes_and_refuses() {
                super::copies_everything_resumes_and_refuses($from, $to, stringify!($name)).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn another_stores_data_is_refused_and_left_alone() {
                super::another_stores_data_is_refused_and_left_alone(
                    $to, concat!(stringify!($name), "_other")).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn imports_below_the_head_are_refused() {
                super::imports_below_the_head_are_refused($to, concat!(stringify!($name), "_order")).await;
            }
        }
    )*};
}

cases! {
    sqlite_to_postgres: "sqlite" -> "postgres";
    postgres_to_sqlite: "postgres" -> "sqlite";
    postgres_to_postgres: "postgres" -> "postgres";
    sqlite_to_sqlite: "sqlite" -> "sqlite";
}
