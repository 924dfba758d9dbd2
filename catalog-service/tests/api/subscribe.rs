use std::time::Duration;

use proto::catalog::{SubscribeEventsRequest, SubscribeEventsResponse as CatalogEvent};
use tonic::{Code, Request};

use crate::helpers::{SERVICE_KEY, Stack, Stores};

crate::on_every_backend!(subscribe_events_replays_then_follows_live);

fn with_key(from: u64, key: Option<&str>) -> Request<SubscribeEventsRequest> {
    let mut r = Request::new(SubscribeEventsRequest {
        from_position: from,
    });
    if let Some(k) = key {
        r.metadata_mut().insert("x-service-key", k.parse().unwrap());
    }
    r
}

async fn next(events: &mut tonic::Streaming<CatalogEvent>) -> CatalogEvent {
    tokio::time::timeout(Duration::from_secs(10), events.message())
        .await
        .expect("an event within 10 s")
        .unwrap()
        .expect("stream open")
}

async fn subscribe_events_replays_then_follows_live(stores: Stores) {
    let stack = Stack::start(&stores).await;
    for key in [None, Some("wrong")] {
        let s = stack
            .client
            .clone()
            .subscribe_events(with_key(0, key))
            .await
            .unwrap_err();
        assert_eq!(s.code(), Code::PermissionDenied);
    }
    let (adder, _) = stack.user("adder").await;
    let (rater, _) = stack.user("rater").await;
    let m = stack.add_movie(&adder, "M", "D").await.unwrap();
    let r = stack.rate(&rater, m.id, 4).await.unwrap();

    let mut events = stack
        .client
        .clone()
        .subscribe_events(with_key(0, Some(SERVICE_KEY)))
        .await
        .unwrap()
        .into_inner();
    let first = next(&mut events).await;
    assert_eq!(first.event_type, "MovieAdded");
    let data: serde_json::Value = serde_json::from_str(&first.data_json).unwrap();
    assert_eq!(data["id"], m.id);
    let second = next(&mut events).await;
    assert_eq!(second.event_type, "MovieRated");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&second.data_json).unwrap()["id"],
        r.id
    );
    assert!(second.position > first.position);

    let live = stack.add_movie(&adder, "Live", "D").await.unwrap();
    let third = next(&mut events).await;
    assert_eq!(third.event_type, "MovieAdded");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&third.data_json).unwrap()["id"],
        live.id
    );
    assert!(third.position > second.position);
}
