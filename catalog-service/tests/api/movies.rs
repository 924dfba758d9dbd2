use tonic::{Code, Request};

use crate::helpers::{Stack, Stores, assert_code, violations};

crate::on_every_backend!(
    added_movies_are_listed_and_detailed_at_once,
    movie_lists_paginate_by_id,
    invalid_movies_are_refused_naming_each_field,
    calls_without_or_with_a_bad_token_are_unauthenticated,
    a_revoked_token_is_refused_on_the_very_next_call,
    an_unknown_movie_is_not_found,
);

async fn added_movies_are_listed_and_detailed_at_once(stores: Stores) {
    let stack = Stack::start(&stores).await;
    let (token, user) = stack.user("adder").await;
    let m = stack
        .add_movie(&token, "  Transformer ", "XYZ")
        .await
        .unwrap();
    assert!(m.id > 0);
    assert_eq!(
        (m.title.as_str(), m.director.as_str()),
        ("Transformer", "XYZ")
    );
    // Read-your-writes: the very next read includes it.
    let list = stack.list_movies(&token, None, 0).await.unwrap();
    assert_eq!(list.movies, std::slice::from_ref(&m));
    assert_eq!(list.count, 1);
    let detail = stack.get_movie(&token, m.id).await.unwrap();
    assert_eq!(detail.added_by, user);
    assert_eq!(detail.rating_count, 0);
    assert_eq!(detail.rating_average, None);
}

async fn movie_lists_paginate_by_id(stores: Stores) {
    let stack = Stack::start(&stores).await;
    let (token, _) = stack.user("adder").await;
    let mut ids = vec![];
    for i in 0..7 {
        ids.push(
            stack
                .add_movie(&token, &format!("M{i}"), "D")
                .await
                .unwrap()
                .id,
        );
    }
    assert!(ids.windows(2).all(|w| w[0] < w[1]));
    let page = stack.list_movies(&token, Some(3), 2).await.unwrap();
    assert_eq!(page.count, 7);
    assert_eq!(
        page.movies.iter().map(|m| m.id).collect::<Vec<_>>(),
        ids[2..5]
    );
    let past = stack.list_movies(&token, Some(3), 10).await.unwrap();
    assert!(past.movies.is_empty());
    assert_eq!(
        stack
            .list_movies(&token, Some(0), 0)
            .await
            .unwrap()
            .movies
            .len(),
        0
    );
}

async fn invalid_movies_are_refused_naming_each_field(stores: Stores) {
    let stack = Stack::start(&stores).await;
    let (token, _) = stack.user("adder").await;
    let s = assert_code(
        stack.add_movie(&token, "", " ").await,
        Code::InvalidArgument,
    );
    let fields: Vec<String> = violations(&s).into_iter().map(|(f, _)| f).collect();
    assert_eq!(fields, ["title", "director"]);
    let s = assert_code(
        stack.add_movie(&token, &"t".repeat(201), "D").await,
        Code::InvalidArgument,
    );
    assert_eq!(
        violations(&s),
        [(
            "title".into(),
            "Ensure this field has no more than 200 characters.".into()
        )]
    );
    assert!(
        stack
            .list_movies(&token, None, 0)
            .await
            .unwrap()
            .movies
            .is_empty()
    );
}

async fn calls_without_or_with_a_bad_token_are_unauthenticated(stores: Stores) {
    let stack = Stack::start(&stores).await;
    let s = stack
        .client
        .clone()
        .list_movies(Request::new(Default::default()))
        .await
        .unwrap_err();
    assert_eq!(
        (s.code(), s.message()),
        (
            Code::Unauthenticated,
            "Authentication credentials were not provided."
        )
    );
    for bad in ["nope", &"ab".repeat(32), ""] {
        let s = assert_code(stack.list_movies(bad, None, 0).await, Code::Unauthenticated);
        assert_eq!(s.message(), "Invalid token.", "{bad:?}");
    }
}

async fn a_revoked_token_is_refused_on_the_very_next_call(stores: Stores) {
    let stack = Stack::start(&stores).await;
    let (token, _) = stack.user("leaver").await;
    let other = stack
        .auth_client
        .clone()
        .login(proto::auth::LoginRequest {
            username: "leaver".into(),
            password: "password123".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .token;
    stack.list_movies(&token, None, 0).await.unwrap();
    stack
        .auth_client
        .clone()
        .logout(proto::auth::LogoutRequest {
            token: token.clone(),
        })
        .await
        .unwrap();
    assert_code(
        stack.list_movies(&token, None, 0).await,
        Code::Unauthenticated,
    );
    stack.list_movies(&other, None, 0).await.unwrap();
}

async fn an_unknown_movie_is_not_found(stores: Stores) {
    let stack = Stack::start(&stores).await;
    let (token, _) = stack.user("u").await;
    let s = assert_code(stack.get_movie(&token, 99).await, Code::NotFound);
    assert_eq!(s.message(), "Not found.");
    assert_code(stack.get_movie(&token, -1).await, Code::NotFound);
}
