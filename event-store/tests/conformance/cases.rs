use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use event_store::{
    AppendResult, CurrentVersion, EventStoreError, ExpectedVersion, NewEvent, RecordedEvent,
};
use futures_util::StreamExt;
use serde_json::json;
use serde_json::value::RawValue;
use tokio::task::JoinSet;
use uuid::Uuid;

use crate::harness::Harness;

fn event(n: u64) -> NewEvent {
    NewEvent::new("Counted", &json!({ "n": n })).unwrap()
}

fn raw(s: &str) -> Box<RawValue> {
    RawValue::from_string(s.to_owned()).unwrap()
}

fn assert_wrong_version<T: std::fmt::Debug>(
    result: event_store::Result<T>,
    expected: ExpectedVersion,
    actual: CurrentVersion,
) {
    match result {
        Err(EventStoreError::WrongExpectedVersion {
            expected: e,
            actual: a,
            ..
        }) => {
            assert_eq!((e, a), (expected, actual));
        }
        other => panic!("expected WrongExpectedVersion, got {other:?}"),
    }
}

pub async fn expected_version_semantics(h: &Harness) {
    let s = &h.store;
    let r = s
        .append(&h.s("a"), ExpectedVersion::NoStream, vec![event(0)])
        .await
        .unwrap();
    assert_eq!(r.stream_version, 0);
    assert_wrong_version(
        s.append(&h.s("a"), ExpectedVersion::NoStream, vec![event(1)])
            .await,
        ExpectedVersion::NoStream,
        CurrentVersion::At(0),
    );
    assert_eq!(
        s.append(&h.s("a"), ExpectedVersion::Exact(0), vec![event(1)])
            .await
            .unwrap()
            .stream_version,
        1
    );
    assert_wrong_version(
        s.append(&h.s("a"), ExpectedVersion::Exact(0), vec![event(2)])
            .await,
        ExpectedVersion::Exact(0),
        CurrentVersion::At(1),
    );
    assert_wrong_version(
        s.append(&h.s("a"), ExpectedVersion::Exact(7), vec![event(2)])
            .await,
        ExpectedVersion::Exact(7),
        CurrentVersion::At(1),
    );
    assert_wrong_version(
        s.append(&h.s("new"), ExpectedVersion::Exact(0), vec![event(0)])
            .await,
        ExpectedVersion::Exact(0),
        CurrentVersion::NoStream,
    );
    assert_eq!(
        s.append(&h.s("a"), ExpectedVersion::Any, vec![event(2)])
            .await
            .unwrap()
            .stream_version,
        2
    );
    assert_eq!(
        s.append(&h.s("b"), ExpectedVersion::Any, vec![event(0)])
            .await
            .unwrap()
            .stream_version,
        0
    );
    // Refused appends wrote nothing.
    let a = s.read_stream(&h.s("a"), 0).await.unwrap();
    assert_eq!(a.iter().map(|e| e.version).collect::<Vec<_>>(), [0, 1, 2]);
    assert!(s.read_stream(&h.s("new"), 0).await.unwrap().is_empty());
    assert_eq!(s.read_stream(&h.s("a"), 2).await.unwrap().len(), 1);
    assert!(matches!(
        s.append(&h.s("a"), ExpectedVersion::Any, vec![]).await,
        Err(EventStoreError::InvalidAppend(_))
    ));
}

pub async fn multi_event_append_is_atomic_and_contiguous(h: &Harness) {
    let s = &h.store;
    let r = s
        .append(
            &h.s("m"),
            ExpectedVersion::NoStream,
            (0..5).map(event).collect(),
        )
        .await
        .unwrap();
    assert_eq!(r.stream_version, 4);
    let events = s.read_stream(&h.s("m"), 0).await.unwrap();
    assert_eq!(
        events.iter().map(|e| e.version).collect::<Vec<_>>(),
        [0, 1, 2, 3, 4]
    );
    let positions: Vec<u64> = events.iter().map(|e| e.position).collect();
    assert!(positions.windows(2).all(|w| w[1] > w[0]), "{positions:?}");
    assert_eq!(r.position, positions[4]);

    // An append whose last event collides with a stored id fails whole.
    let taken = events[0].id;
    let mut batch: Vec<NewEvent> = (0..3).map(event).collect();
    batch[2].id = taken;
    assert!(matches!(
        s.append(&h.s("other"), ExpectedVersion::Any, batch).await,
        Err(EventStoreError::DuplicateEventId(id)) if id == taken
    ));
    assert!(s.read_stream(&h.s("other"), 0).await.unwrap().is_empty());
    assert_eq!(s.head_position().await.unwrap(), r.position);
}

pub async fn racing_no_stream_appends_have_exactly_one_winner(h: &Harness) {
    for round in 0..5 {
        let stream = h.s(&format!("race-{round}"));
        let mut tasks = JoinSet::new();
        for i in 0..16 {
            let s = h.store.clone();
            let stream = stream.clone();
            tasks.spawn(async move {
                s.append(&stream, ExpectedVersion::NoStream, vec![event(i)])
                    .await
            });
        }
        let (mut won, mut lost) = (0, 0);
        while let Some(r) = tasks.join_next().await {
            match r.unwrap() {
                Ok(_) => won += 1,
                Err(EventStoreError::WrongExpectedVersion { actual, .. }) => {
                    assert_eq!(actual, CurrentVersion::At(0));
                    lost += 1;
                }
                Err(e) => panic!("unexpected error {e}"),
            }
        }
        assert_eq!((won, lost), (1, 15), "round {round}");
        assert_eq!(h.store.read_stream(&stream, 0).await.unwrap().len(), 1);
    }
}

pub async fn concurrent_writers_are_seen_once_in_order_by_a_live_subscriber(h: &Harness) {
    const WRITERS: u64 = 8;
    const EACH: u64 = 500;
    let total = (WRITERS * EACH) as usize;
    let mut subscription = h.store.subscribe_all(h.origin);
    let reader = tokio::spawn(async move {
        let mut seen = Vec::with_capacity(total);
        while seen.len() < total {
            let next = tokio::time::timeout(Duration::from_secs(60), subscription.next())
                .await
                .expect("subscriber stalled")
                .expect("subscription ended")
                .expect("subscription failed");
            seen.push(next);
        }
        seen
    });
    let mut writers = JoinSet::new();
    for w in 0..WRITERS {
        let s = h.store.clone();
        let stream = h.s(&format!("writer-{w}"));
        writers.spawn(async move {
            for i in 0..EACH {
                let expected = if i == 0 {
                    ExpectedVersion::NoStream
                } else {
                    ExpectedVersion::Exact(i - 1)
                };
                s.append(&stream, expected, vec![event(i)]).await.unwrap();
            }
        });
    }
    while let Some(r) = writers.join_next().await {
        r.unwrap();
    }
    let seen = reader.await.unwrap();
    assert!(
        seen.windows(2).all(|w| w[0].position < w[1].position),
        "positions not increasing"
    );
    let ids: HashSet<Uuid> = seen.iter().map(|e| e.id).collect();
    assert_eq!(ids.len(), total, "an event was seen twice");
    for w in 0..WRITERS {
        let versions: Vec<u64> = seen
            .iter()
            .filter(|e| e.stream == h.s(&format!("writer-{w}")))
            .map(|e| e.version)
            .collect();
        assert_eq!(versions, (0..EACH).collect::<Vec<_>>());
    }
    let all = read_everything(h).await;
    assert_eq!(key(&all), key(&seen));
}

async fn read_everything(h: &Harness) -> Vec<RecordedEvent> {
    let mut all = Vec::new();
    loop {
        let from = all
            .last()
            .map_or(h.origin, |e: &RecordedEvent| e.position + 1);
        let batch = h.store.read_all(from, 700).await.unwrap();
        if batch.is_empty() {
            return all;
        }
        all.extend(batch);
    }
}

fn key(events: &[RecordedEvent]) -> Vec<(u64, Uuid)> {
    events.iter().map(|e| (e.position, e.id)).collect()
}

pub async fn reopening_keeps_everything(h: &Harness) {
    let first = h
        .store
        .append(
            &h.s("kept"),
            ExpectedVersion::NoStream,
            vec![event(1), event(2)],
        )
        .await
        .unwrap();
    let before = read_everything(h).await;
    let again = h.reopen().await;
    let after = again.read_all(h.origin, 100).await.unwrap();
    assert_eq!(key(&after), key(&before));
    assert_eq!(again.head_position().await.unwrap(), first.position);
    assert_eq!(after[1].data.get(), before[1].data.get());
    assert_eq!(after[1].recorded_at, before[1].recorded_at);
    // The reopened store continues the stream and the global order.
    let next = again
        .append(&h.s("kept"), ExpectedVersion::Exact(1), vec![event(3)])
        .await
        .unwrap();
    assert_eq!(next.stream_version, 2);
    assert!(next.position > first.position);
}

pub async fn retrying_the_same_event_ids_is_idempotent(h: &Harness) {
    let s = &h.store;
    let batch = vec![event(1), event(2)];
    let first = s
        .append(&h.s("retry"), ExpectedVersion::NoStream, batch.clone())
        .await
        .unwrap();
    // A client retry after a lost answer: same ids, same expected version.
    let again = s
        .append(&h.s("retry"), ExpectedVersion::NoStream, batch.clone())
        .await
        .unwrap();
    assert_eq!(again, first);
    // Still recognized after the stream moved on.
    s.append(&h.s("retry"), ExpectedVersion::Exact(1), vec![event(3)])
        .await
        .unwrap();
    assert_eq!(
        s.append(&h.s("retry"), ExpectedVersion::NoStream, batch.clone())
            .await
            .unwrap(),
        first
    );
    assert_eq!(
        s.append(&h.s("retry"), ExpectedVersion::Any, batch.clone())
            .await
            .unwrap(),
        first
    );
    assert_eq!(s.read_stream(&h.s("retry"), 0).await.unwrap().len(), 3);
    // Concurrent retries of one append: all succeed with the same answer.
    let fresh = vec![event(4)];
    let mut tasks = JoinSet::new();
    for _ in 0..8 {
        let (s, fresh, stream) = (s.clone(), fresh.clone(), h.s("retry"));
        tasks.spawn(async move { s.append(&stream, ExpectedVersion::Exact(2), fresh).await });
    }
    let mut answers: Vec<AppendResult> = Vec::new();
    while let Some(r) = tasks.join_next().await {
        answers.push(r.unwrap().unwrap());
    }
    assert!(
        answers
            .iter()
            .all(|a| *a == answers[0] && a.stream_version == 3)
    );
    assert_eq!(s.read_stream(&h.s("retry"), 0).await.unwrap().len(), 4);
    // The same ids somewhere else are not a retry.
    assert!(matches!(
        s.append(&h.s("elsewhere"), ExpectedVersion::Any, batch.clone())
            .await,
        Err(EventStoreError::DuplicateEventId(_))
    ));
    // Only part of an earlier append: not a retry either, and nothing is written.
    assert!(matches!(
        s.append(
            &h.s("retry"),
            ExpectedVersion::Any,
            vec![batch[1].clone(), event(9)]
        )
        .await,
        Err(EventStoreError::DuplicateEventId(_))
    ));
    assert_eq!(s.read_stream(&h.s("retry"), 0).await.unwrap().len(), 4);
    assert!(
        s.read_stream(&h.s("elsewhere"), 0)
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn json_round_trips_byte_for_byte(h: &Harness) {
    let large = format!("{{\"blob\": \"{}\"}}", "é✓x".repeat(1024 * 1024 / 6));
    assert!(large.len() >= 1024 * 1024 - 16);
    let payloads = [
        r#"{"title":"Amélie — 天使 🎬","escaped":"\u0000\n\"q\""}"#.to_owned(),
        "{}".to_owned(),
        "[]".to_owned(),
        r#""""#.to_owned(),
        "{ \"spaced\" :  [1, 2.50, -0e0] }".to_owned(),
        large,
    ];
    for (i, p) in payloads.iter().enumerate() {
        let e = NewEvent {
            id: Uuid::new_v4(),
            event_type: "Jsön ✓".into(),
            data: raw(p),
            metadata: raw(r#"{"corr":"ü"}"#),
        };
        s_append(h, &h.s(&format!("json-{i}")), e).await;
        let back = h
            .store
            .read_stream(&h.s(&format!("json-{i}")), 0)
            .await
            .unwrap();
        assert_eq!(back[0].data.get(), p.as_str(), "payload {i}");
        assert_eq!(back[0].metadata.get(), r#"{"corr":"ü"}"#);
        assert_eq!(back[0].event_type, "Jsön ✓");
    }
}

async fn s_append(h: &Harness, stream: &str, e: NewEvent) {
    h.store
        .append(stream, ExpectedVersion::NoStream, vec![e])
        .await
        .unwrap();
}

pub async fn stream_names_with_spaces_slashes_and_unicode_work(h: &Harness) {
    let names = [
        "movie 1/user 2",
        "a/b/c",
        "émoji-🎬",
        "quote'\"; DROP TABLE x",
        "%_*",
    ];
    for n in names {
        s_append(h, &h.s(n), event(1)).await;
    }
    for n in names {
        let events = h.store.read_stream(&h.s(n), 0).await.unwrap();
        assert_eq!(events.len(), 1, "{n}");
        assert_eq!(events[0].stream, h.s(n));
    }
    // LIKE-style wildcards are not patterns.
    assert!(h.store.read_stream(&h.s("%"), 0).await.unwrap().is_empty());
}

pub async fn read_all_honours_from_and_limit(h: &Harness) {
    assert!(h.store.read_all(h.origin, 10).await.unwrap().is_empty());
    assert_eq!(h.store.head_position().await.unwrap(), h.origin - 1);
    let r = h
        .store
        .append(
            &h.s("r"),
            ExpectedVersion::NoStream,
            (0..10).map(event).collect(),
        )
        .await
        .unwrap();
    let all = h.store.read_all(h.origin, 100).await.unwrap();
    assert_eq!(all.len(), 10);
    let from = all[3].position;
    let some = h.store.read_all(from, 4).await.unwrap();
    assert_eq!(key(&some), key(&all[3..7]));
    assert!(
        h.store
            .read_all(r.position + 1, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(h.store.read_all(u64::MAX, 10).await.unwrap().is_empty());
    assert!(h.store.read_all(h.origin, 0).await.unwrap().is_empty());
    assert_eq!(h.store.head_position().await.unwrap(), r.position);
    assert_eq!(
        all[4].decode::<serde_json::Value>().unwrap(),
        json!({"n": 4})
    );
}

/// Scattered positions read in one call: in position order, each once,
/// and the ones that hold nothing left out.
pub async fn read_positions_finds_exactly_the_events_asked_for(h: &Harness) {
    assert!(h.store.read_positions(&[]).await.unwrap().is_empty());
    let r = h
        .store
        .append(
            &h.s("p"),
            ExpectedVersion::NoStream,
            (0..6).map(event).collect(),
        )
        .await
        .unwrap();
    let all = h.store.read_all(h.origin, 100).await.unwrap();
    let wanted = [
        all[4].position,
        all[1].position,
        all[4].position,
        r.position + 50,
    ];
    let found = h.store.read_positions(&wanted).await.unwrap();
    assert_eq!(key(&found), key(&[all[1].clone(), all[4].clone()]));
    assert_eq!(
        found[1].decode::<serde_json::Value>().unwrap(),
        json!({"n": 4})
    );
}

pub async fn a_subscription_from_the_middle_catches_up_then_goes_live(h: &Harness) {
    let first = h
        .store
        .append(
            &h.s("sub"),
            ExpectedVersion::NoStream,
            (0..4).map(event).collect(),
        )
        .await
        .unwrap();
    let stored = h.store.read_stream(&h.s("sub"), 0).await.unwrap();
    let from = stored[2].position; // the last two events
    let mut sub = h.store.subscribe_all(from);
    assert_eq!(next(&mut sub).await.position, from);
    assert_eq!(next(&mut sub).await.position, first.position);
    // Nothing more until something is written; then it arrives live.
    let (writer, stream) = (h.store.clone(), h.s("sub"));
    let later = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        writer
            .append(&stream, ExpectedVersion::Exact(3), vec![event(4)])
            .await
            .unwrap()
    });
    let live = next(&mut sub).await;
    let written = later.await.unwrap();
    assert_eq!(live.position, written.position);
    assert_eq!(live.version, 4);
}

async fn next(sub: &mut event_store::EventStream) -> RecordedEvent {
    tokio::time::timeout(Duration::from_secs(10), sub.next())
        .await
        .expect("no event within 10 s")
        .expect("subscription ended")
        .expect("subscription failed")
}

pub async fn id_sequences_never_repeat_across_allocators(h: &Harness) {
    use event_store::ids::IdSequence;
    let stream = h.s("ids");
    // Two allocators on one stream: two processes, as far as the store knows.
    let (a, b) = (
        Arc::new(IdSequence::new(stream.clone(), "IdAllocated")),
        Arc::new(IdSequence::new(stream.clone(), "IdAllocated")),
    );
    let mut tasks = JoinSet::new();
    for i in 0..200 {
        let (seq, store) = (
            if i % 2 == 0 { a.clone() } else { b.clone() },
            h.store.clone(),
        );
        tasks.spawn(async move { seq.next(&store).await.unwrap() });
    }
    let ids: Vec<i64> = tasks.join_all().await;
    let distinct: HashSet<i64> = ids.iter().copied().collect();
    assert_eq!(distinct.len(), 200, "an id was handed out twice");
    assert!(ids.iter().all(|&id| id > 0));
    // A fresh allocator (a restart) continues after every id handed out.
    let max = *ids.iter().max().unwrap();
    let c = IdSequence::new(stream.clone(), "IdAllocated");
    let next = c.next(&h.store).await.unwrap();
    assert!(next > max, "{next} after {max}");
    // Sequential calls increase, and most are served from the reserve:
    // one append per RESERVE ids, not one per id.
    let appended = h.store.read_stream(&stream, 0).await.unwrap().len();
    let mut last = next;
    for _ in 0..3 * event_store::ids::RESERVE {
        let id = c.next(&h.store).await.unwrap();
        assert!(id > last, "{id} after {last}");
        last = id;
    }
    let appends = h.store.read_stream(&stream, 0).await.unwrap().len() - appended;
    assert!(
        appends <= 3,
        "{appends} allocations for {} ids",
        3 * event_store::ids::RESERVE
    );
}
