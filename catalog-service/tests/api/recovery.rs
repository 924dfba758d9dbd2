use tonic::Code;

use crate::helpers::{Stack, Stores, assert_code};

crate::on_every_backend!(
    a_restart_keeps_everything,
    a_rebuild_from_scratch_equals_the_live_read_models,
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

async fn auth_service_down_is_unavailable_not_a_hang(stores: Stores) {
    let mut stack = Stack::start(&stores).await;
    let (token, _) = stack.user("u").await;
    stack.auth.take().unwrap().stop().await;
    let started = std::time::Instant::now();
    assert_code(stack.list_movies(&token, None, 0).await, Code::Unavailable);
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}
