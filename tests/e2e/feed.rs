//! The feed (`movies.feed.v1`) through the whole stack: both services send
//! their events in the CloudEvents envelope to a consumer group, auth's
//! with ids only, and only to callers with the service's key.

use std::time::Duration;

use proto::feed::feed_service_client::FeedServiceClient;
use proto::feed::{
    Ack, ConsumeRequest, Delivery, Join, ListGroupsRequest, Start, consume_request,
    consume_response,
};
use sha2::Digest as _;
use tonic::transport::Channel;

use crate::helpers::{Stores, TestApp, config};

fn keyed<T>(message: T, key: &str) -> tonic::Request<T> {
    let mut r = tonic::Request::new(message);
    r.metadata_mut()
        .insert("x-service-key", key.parse().unwrap());
    r
}

/// A member of `group` on `client`; the deliveries it receives until it
/// has `want`, each acknowledged.
async fn consume(
    client: &mut FeedServiceClient<Channel>,
    key: &str,
    group: &str,
    want: usize,
) -> Vec<Delivery> {
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let join = ConsumeRequest {
        kind: Some(consume_request::Kind::Join(Join {
            group: group.into(),
            start: Start::Beginning.into(),
            ..Default::default()
        })),
    };
    tx.send(join).await.unwrap();
    let requests =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|m| (m, rx)) });
    let mut answers = client
        .consume(keyed(requests, key))
        .await
        .expect("joined")
        .into_inner();
    let mut got = Vec::new();
    while got.len() < want {
        let message = tokio::time::timeout(Duration::from_secs(20), answers.message())
            .await
            .expect("a delivery in time")
            .expect("the stream")
            .expect("not ended");
        match message.kind {
            Some(consume_response::Kind::Joined(j)) => assert!(!j.member.is_empty()),
            Some(consume_response::Kind::Delivery(d)) => {
                let id = d.event.as_ref().unwrap().id.clone();
                let ack = ConsumeRequest {
                    kind: Some(consume_request::Kind::Ack(Ack {
                        event_ids: vec![id],
                    })),
                };
                tx.send(ack).await.unwrap();
                got.push(d);
            }
            None => panic!("an empty answer"),
        }
    }
    got
}

fn join_kind(group: &str) -> consume_request::Kind {
    consume_request::Kind::Join(Join {
        group: group.into(),
        ..Default::default()
    })
}

async fn both(stores: Stores, wiring: movies::Wiring) {
    let stack = movies::Stack::build(&config(&stores), wiring)
        .await
        .expect("the stack starts");
    let (auth, catalog) = (stack.auth_addr(), stack.catalog_addr());
    let app = TestApp::serve(stack).await;
    let (token, user) = app.user("Zeldafeedwatcher").await;
    let login = app
        .post(
            "/api/auth/login",
            None,
            serde_json::json!({"username": "Zeldafeedwatcher", "password": "password123"}),
        )
        .await;
    let second = login.body["token"].as_str().unwrap().to_owned();
    let movie = app.movie(&token, "Feed Film").await;
    let (rater, _) = app.user("feedrater").await;
    let rated = app.rate(&rater, movie, 4).await;
    assert!(rated.status.is_success(), "{}", rated.text);

    // auth: a registration and two tokens, ids only.
    let mut client = FeedServiceClient::connect(format!("http://{auth}"))
        .await
        .unwrap();
    let refused = client
        .list_groups(tonic::Request::new(ListGroupsRequest {}))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);
    // The watcher's three events, and the rater's two (streams go in
    // parallel: in no order between them).
    let got = consume(&mut client, "e2e-auth-key", "watcher", 5).await;
    let mut events: Vec<_> = got.iter().map(|d| d.event.clone().unwrap()).collect();
    events.retain(|e| e.subject == format!("account-{user}"));
    let types: Vec<&str> = events.iter().map(|e| e.r#type.as_str()).collect();
    assert_eq!(
        types,
        [
            "movies.auth.UserRegistered.v1",
            "movies.auth.TokenIssued.v1",
            "movies.auth.TokenIssued.v1"
        ]
    );
    for e in &events {
        assert_eq!(e.spec_version, "1.0");
        assert_eq!(e.source, "urn:movies:auth");
        assert_eq!(e.subject, format!("account-{user}"));
        assert_eq!(e.data_content_type, "application/json");
        let data: serde_json::Value = serde_json::from_str(&e.data).unwrap();
        assert_eq!(data["user_id"], user);
        assert!(e.time.is_some());
    }
    let text = format!("{got:?}").to_lowercase();
    for secret in [token.as_str(), second.as_str()] {
        let digest = hex::encode(sha2::Sha256::digest(secret.as_bytes()));
        assert!(
            !text.contains(secret) && !text.contains(&digest),
            "a token or its digest"
        );
    }
    for personal in ["zeldafeedwatcher", "example.com", "argon2"] {
        assert!(!text.contains(personal), "{personal} in the feed");
    }
    // Calls that are refused, with the reason.
    for (first, why) in [
        (join_kind("webhook-mine"), "the webhooks'"),
        (join_kind("no spaces"), "a group name"),
        (
            consume_request::Kind::Ack(Ack { event_ids: vec![] }),
            "the first message",
        ),
    ] {
        let first = ConsumeRequest { kind: Some(first) };
        let refused = client
            .consume(keyed(futures_util::stream::iter([first]), "e2e-auth-key"))
            .await
            .unwrap_err();
        assert_eq!(refused.code(), tonic::Code::InvalidArgument);
        assert!(refused.message().contains(why), "{}", refused.message());
    }
    // A client that closes its side after the join (grpcurl at the end of
    // its input) still receives what it may hold unacknowledged.
    let join = ConsumeRequest {
        kind: Some(consume_request::Kind::Join(Join {
            group: "peek".into(),
            max_in_flight: 2,
            ..Default::default()
        })),
    };
    let mut answers = client
        .consume(keyed(futures_util::stream::iter([join]), "e2e-auth-key"))
        .await
        .unwrap()
        .into_inner();
    let mut delivered = 0;
    while delivered < 2 {
        let message = tokio::time::timeout(Duration::from_secs(20), answers.message())
            .await
            .expect("in time")
            .unwrap()
            .expect("still open");
        if let Some(consume_response::Kind::Delivery(_)) = message.kind {
            delivered += 1;
        }
    }
    // And no more than that: nothing was acknowledged.
    let more = tokio::time::timeout(Duration::from_millis(500), answers.message()).await;
    assert!(more.is_err(), "a delivery past max_in_flight: {more:?}");
    drop(answers);
    let groups = client
        .list_groups(keyed(ListGroupsRequest {}, "e2e-auth-key"))
        .await
        .unwrap()
        .into_inner()
        .groups;
    let names: Vec<&str> = groups.iter().map(|g| g.name.as_str()).collect();
    assert_eq!(names, ["peek", "watcher"]);

    // catalog: the movie and the rating, in their current schema.
    let mut client = FeedServiceClient::connect(format!("http://{catalog}"))
        .await
        .unwrap();
    let got = consume(&mut client, "e2e-service-key", "ratings", 2).await;
    let event = got
        .iter()
        .map(|d| d.event.clone().unwrap())
        .find(|e| e.subject != "movie-1")
        .expect("the rating");
    assert_eq!(event.source, "urn:movies:catalog");
    assert!(
        event.r#type.starts_with("movies.catalog."),
        "{}",
        event.r#type
    );
    let data: serde_json::Value = serde_json::from_str(&event.data).unwrap();
    assert_eq!(data["rating"], 4, "{data}");
    assert!(
        data.get("type").is_none(),
        "the tag is the envelope's: {data}"
    );
    assert!(
        got.iter()
            .any(|d| d.event.as_ref().unwrap().data.contains("Feed Film"))
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn both_services_send_cloud_events_to_groups_auths_with_ids_only() {
    both(Stores::sqlite().await, movies::Wiring::InProcess).await;
    if let Some(stores) = Stores::postgres("feed_both").await {
        both(stores, movies::Wiring::Grpc).await;
    }
}
