use tonic::{Code, Request};

use proto::catalog::ListMoviesRequest;

use crate::helpers::{Stack, Stores, assert_code, authed, violations};

crate::on_every_backend!(
    added_movies_are_listed_and_detailed_at_once,
    movie_lists_paginate_by_id,
    a_list_request_with_the_current_tag_is_not_modified,
    invalid_movies_are_refused_naming_each_field,
    calls_without_or_with_a_bad_token_are_unauthenticated,
    a_revoked_token_is_refused_on_the_very_next_call,
    a_revoked_token_is_refused_through_an_auth_service_without_authenticate_many,
    concurrent_calls_are_each_checked_for_their_own_token,
    direct_calls_answer_as_grpc_does_until_the_server_stops,
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

async fn a_list_request_with_the_current_tag_is_not_modified(stores: Stores) {
    let mut stack = Stack::start(&stores).await;
    let (token, _) = stack.user("adder").await;
    let (rater, _) = stack.user("rater").await;
    let first = stack.add_movie(&token, "M1", "D").await.unwrap();
    let full = stack.list_movies(&token, None, 0).await.unwrap();
    assert!(!full.not_modified);
    assert_eq!(full.etag.len(), 32);
    let unless = |etag: &[u8], limit| ListMoviesRequest {
        limit,
        offset: 0,
        if_none_match: etag.to_vec(),
        ..ListMoviesRequest::default()
    };

    // Same list: no rows, the same tag and count.
    let same = stack
        .list_movies_with(&token, unless(&full.etag, None))
        .await
        .unwrap();
    assert!(same.not_modified);
    assert!(same.movies.is_empty());
    assert_eq!(
        (same.etag.as_slice(), same.count),
        (full.etag.as_slice(), 1)
    );
    // The tag names the whole list, so it serves every page of it.
    assert!(
        stack
            .list_movies_with(&token, unless(&full.etag, Some(1)))
            .await
            .unwrap()
            .not_modified
    );
    // A stale or foreign tag gets the rows.
    let other = stack
        .list_movies_with(&token, unless(b"not a tag", None))
        .await
        .unwrap();
    assert_eq!((other.not_modified, other.movies.len()), (false, 1));

    // A rating leaves the list as it was; a new movie changes its tag, and the
    // very next conditional read has it.
    stack.rate(&rater, first.id, 4).await.unwrap();
    let rated = stack
        .list_movies_with(&token, unless(&full.etag, None))
        .await
        .unwrap();
    assert!(rated.not_modified);
    let second = stack.add_movie(&token, "M2", "D").await.unwrap();
    let grown = stack
        .list_movies_with(&token, unless(&full.etag, None))
        .await
        .unwrap();
    assert!(!grown.not_modified);
    assert_ne!(grown.etag, full.etag);
    assert_eq!(grown.movies, [first, second]);

    // The tag is derived from the events alone: a catalog rebuilt from the
    // store (a restart, or another replica) gives the same one.
    stack.restart_catalog(&stores).await;
    let again = stack
        .list_movies_with(&token, unless(&grown.etag, None))
        .await
        .unwrap();
    assert!(again.not_modified);
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
    revoked_then_refused(&Stack::start(&stores).await).await;
}

async fn a_revoked_token_is_refused_through_an_auth_service_without_authenticate_many(
    stores: Stores,
) {
    let stack = Stack::start_with_old_auth(&stores).await;
    revoked_then_refused(&stack).await;
    let (_, refused) = stack.old_auth.as_ref().unwrap();
    assert!(refused.load(std::sync::atomic::Ordering::SeqCst) > 0);
}

/// Checks of many concurrent calls go to auth-service together: each is
/// answered for its own token, a revoked one refused.
async fn concurrent_calls_are_each_checked_for_their_own_token(stores: Stores) {
    let stack = Stack::start(&stores).await;
    let mut users = Vec::new();
    for i in 0..12 {
        users.push(stack.user(&format!("many{i}")).await.0);
    }
    for token in &users[..4] {
        let request = proto::auth::LogoutRequest {
            token: token.clone(),
        };
        stack.auth_client.clone().logout(request).await.unwrap();
    }
    let calls = (0..240).map(|i| {
        let (stack, user) = (&stack, i % users.len());
        let token = users[user].clone();
        async move { (user, stack.list_movies(&token, None, 0).await) }
    });
    for (user, answer) in futures_util::future::join_all(calls).await {
        if user < 4 {
            assert_code(answer, Code::Unauthenticated);
        } else {
            answer.unwrap();
        }
    }
}

/// The calls the launcher's gateway makes directly: the same answers as
/// over gRPC, the same refusals, and none once the server has stopped.
async fn direct_calls_answer_as_grpc_does_until_the_server_stops(stores: Stores) {
    use catalog_service_server::CatalogService as _;
    use proto::catalog::catalog_service_server;
    use proto::catalog::{AddMovieRequest, GetMovieRequest};

    let mut stack = Stack::start(&stores).await;
    let (token, user) = stack.user("direct").await;
    let local = stack.local.clone();
    let add = AddMovieRequest {
        title: "Direct".into(),
        director: "D".into(),
    };
    local.add_movie(authed(&token, add)).await.unwrap();
    let list = || authed(&token, ListMoviesRequest::default());
    let direct = local.list_movies(list()).await.unwrap().into_inner();
    assert_eq!(direct, stack.list_movies(&token, None, 0).await.unwrap());
    assert_eq!(direct.count, 1);
    let id = direct.movies[0].id;
    let detail = local
        .get_movie(authed(&token, GetMovieRequest { id }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(detail.added_by, user);
    assert_code(
        local
            .list_movies(Request::new(ListMoviesRequest::default()))
            .await,
        Code::Unauthenticated,
    );
    let bad = authed(&"ab".repeat(32), ListMoviesRequest::default());
    assert_code(local.list_movies(bad).await, Code::Unauthenticated);
    stack.stop_catalog().await;
    assert_code(local.list_movies(list()).await, Code::Unavailable);
}

async fn revoked_then_refused(stack: &Stack) {
    let (token, _) = stack.user("leaver").await;
    let other = stack
        .auth_client
        .clone()
        .login(proto::auth::LoginRequest {
            username: "leaver".into(),
            password: "password123".into(),
            ..Default::default()
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
