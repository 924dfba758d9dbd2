use catalog_service::CatalogView;
use event_sourcing::read_model::snapshot::{self, Header, Snapshot};
use event_sourcing::read_model::{Projection, SnapshotPolicy};
use tonic::Code;

use crate::helpers::{Stack, Stores, assert_code};

crate::on_every_backend!(
    a_restart_keeps_everything,
    a_rebuild_from_scratch_equals_the_live_read_models,
    a_snapshot_and_the_events_after_it_equal_a_full_replay,
    an_outdated_or_damaged_snapshot_is_ignored,
    a_snapshot_of_another_database_is_ignored,
    auth_service_down_is_unavailable_not_a_hang,
);

async fn populate(stack: &Stack) -> String {
    let (adder, _) = stack.user("adder").await;
    let (a, _) = stack.user("a").await;
    let (b, _) = stack.user("b").await;
    for i in 0..5 {
        let m = stack
            .add_movie(&adder, &format!("M{i}"), "D")
            .await
            .unwrap()
            .id;
        stack.rate(&a, m, i % 5 + 1).await.unwrap();
        if i % 2 == 0 {
            stack.rate(&b, m, 5).await.unwrap();
        }
    }
    adder
}

async fn a_restart_keeps_everything(stores: Stores) {
    let mut stack = Stack::start(&stores).await;
    let token = populate(&stack).await;
    let movies = stack.list_movies(&token, None, 0).await.unwrap();
    let ratings = stack.list_ratings(&token, None, None, 0).await.unwrap();
    let detail = stack.get_movie(&token, movies.movies[0].id).await.unwrap();
    stack.restart_catalog(&stores).await;
    assert_eq!(stack.list_movies(&token, None, 0).await.unwrap(), movies);
    assert_eq!(
        stack.list_ratings(&token, None, None, 0).await.unwrap(),
        ratings
    );
    assert_eq!(stack.get_movie(&token, detail.id).await.unwrap(), detail);
    // Ids continue, never reused.
    let next = stack.add_movie(&token, "After", "D").await.unwrap().id;
    assert!(movies.movies.iter().all(|m| m.id < next));
}

async fn a_rebuild_from_scratch_equals_the_live_read_models(stores: Stores) {
    let stack = Stack::start(&stores).await;
    populate(&stack).await;
    let live = stack.view.read().snapshot();
    let store = event_store::open(stores.catalog.url()).await.unwrap();
    let (rebuilt, _) = catalog_service::rebuild(&*store).await.unwrap();
    assert_eq!(rebuilt.snapshot(), live);
    assert!(live.contains("\"title\":\"M4\""));
}

async fn a_snapshot_and_the_events_after_it_equal_a_full_replay(stores: Stores) {
    let stack = Stack::start(&stores).await;
    let token = populate(&stack).await;
    let saved = stack.view.save_snapshot().await.unwrap().expect("saved");
    assert_eq!(saved.position, stack.view.applied_position());
    // Events after the snapshot: a movie, ratings, a movie rated in both.
    let later = stack.add_movie(&token, "Later", "D").await.unwrap().id;
    let (rater, _) = stack.user("after").await;
    stack.rate(&rater, later, 2).await.unwrap();
    stack.rate(&rater, later - 1, 4).await.unwrap();

    let store = event_store::open(stores.catalog.url()).await.unwrap();
    let policy = SnapshotPolicy {
        path: stores.catalog_snapshot(),
        every: u64::MAX,
        key: None,
    };
    let resumed =
        Projection::start_with_snapshots(store.clone(), CatalogView::default(), Some(policy))
            .await
            .unwrap();
    assert_eq!(resumed.started_from(), Some(saved.position));
    assert!(
        resumed.applied_position() > saved.position,
        "a tail replayed"
    );
    let (full, _) = catalog_service::rebuild(&*store).await.unwrap();
    assert_eq!(resumed.read().to_bytes(), full.to_bytes(), "byte for byte");
    assert_eq!(resumed.read().snapshot(), full.snapshot());
    assert_eq!(resumed.read().to_bytes(), stack.view.read().to_bytes());
    assert!(full.snapshot().contains("\"title\":\"Later\""));
}

async fn an_outdated_or_damaged_snapshot_is_ignored(stores: Stores) {
    let mut stack = Stack::start(&stores).await;
    let token = populate(&stack).await;
    let movies = stack.list_movies(&token, None, 0).await.unwrap();
    let ratings = stack.list_ratings(&token, None, None, 0).await.unwrap();
    let expected = stack.view.read().to_bytes();
    let path = stores.catalog_snapshot();
    stack.restart_catalog(&stores).await;
    assert!(
        stack.view.started_from().is_some(),
        "a stop saves a snapshot"
    );
    let store = event_store::open(stores.catalog.url()).await.unwrap();
    let key = snapshot::SnapshotKey::new(store.secret("snapshot-key:catalog").await.unwrap());
    drop(store);
    let (header, payload) = snapshot::read_file(&path, "catalog", CatalogView::VERSION, &key)
        .unwrap()
        .unwrap();

    let older = Header {
        version: CatalogView::VERSION - 1,
        ..header
    };
    let whole = std::fs::read(&path).unwrap();
    let mut flipped = whole.clone();
    *flipped.last_mut().unwrap() ^= 0x40; // still decodes: only the checksum tells
    for what in [
        "an older projection version",
        "a truncated file",
        "a flipped bit",
        "not a snapshot",
    ] {
        stack.stop_catalog().await;
        match what {
            "an older projection version" => {
                snapshot::write_bytes(&path, &older, &key, &payload).unwrap()
            }
            "a truncated file" => std::fs::write(&path, &whole[..whole.len() / 2]).unwrap(),
            "a flipped bit" => std::fs::write(&path, &flipped).unwrap(),
            _ => std::fs::write(&path, b"{}").unwrap(),
        }
        stack.start_catalog(&stores).await;
        assert_eq!(stack.view.started_from(), None, "{what}: ignored");
        assert_eq!(stack.view.read().to_bytes(), expected, "{what}: replayed");
        assert_eq!(stack.list_movies(&token, None, 0).await.unwrap(), movies);
        assert_eq!(
            stack.list_ratings(&token, None, None, 0).await.unwrap(),
            ratings
        );
    }
    // The stop after a full replay saves a good snapshot again.
    stack.restart_catalog(&stores).await;
    assert!(stack.view.started_from().is_some());
    assert_eq!(stack.view.read().to_bytes(), expected);
}

async fn a_snapshot_of_another_database_is_ignored(stores: Stores) {
    let mut stack = Stack::start(&stores).await;
    populate(&stack).await;
    stack.stop_catalog().await;
    let other = match stores.catalog.url().starts_with("sqlite") {
        true => Stores::sqlite("another_database").await.unwrap(),
        false => Stores::postgres("another_database").await.unwrap(),
    };
    std::fs::copy(stores.catalog_snapshot(), other.catalog_snapshot()).unwrap();
    let fresh = Stack::start(&other).await;
    assert_eq!(fresh.view.started_from(), None);
    let (token, _) = fresh.user("u").await;
    let movies = fresh.list_movies(&token, None, 0).await.unwrap();
    assert_eq!(movies.count, 0, "nothing of the other database");
}

async fn auth_service_down_is_unavailable_not_a_hang(stores: Stores) {
    let mut stack = Stack::start(&stores).await;
    let (token, _) = stack.user("u").await;
    stack.auth.take().unwrap().stop().await;
    let started = std::time::Instant::now();
    assert_code(stack.list_movies(&token, None, 0).await, Code::Unavailable);
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}
