use std::time::{Duration, Instant};

use tonic::Code;
use tonic_types::StatusExt;

use crate::helpers::{Location, TestApp, assert_code, violations};

crate::on_every_backend!(
    login_issues_a_new_token_for_the_same_user,
    wrong_password_and_unknown_user_get_the_same_answer,
    login_input_over_the_limits_is_refused,
    five_failures_throttle_a_username_and_success_resets,
    parallel_guesses_are_counted_before_they_are_checked,
);

async fn login_issues_a_new_token_for_the_same_user(loc: Location) {
    let app = TestApp::start(&loc).await;
    let reg = app.user("hp1").await;
    let s = app.login("HP1", "password123").await.unwrap();
    assert_eq!(s.user, reg.user);
    assert_ne!(s.token, reg.token);
    assert_eq!(
        app.authenticate(&s.token).await.unwrap(),
        reg.user.clone().unwrap()
    );
    assert_eq!(
        app.authenticate(&reg.token).await.unwrap(),
        reg.user.unwrap()
    );
}

async fn wrong_password_and_unknown_user_get_the_same_answer(loc: Location) {
    let app = TestApp::start(&loc).await;
    app.user("known").await;
    let expected = [(
        "non_field_errors".to_owned(),
        "Incorrect Credentials".to_owned(),
    )];
    let t = Instant::now();
    let wrong = assert_code(
        app.login("known", "wrong-password").await,
        Code::InvalidArgument,
    );
    let known_time = t.elapsed();
    let t = Instant::now();
    let unknown = assert_code(
        app.login("nobody", "password123").await,
        Code::InvalidArgument,
    );
    let unknown_time = t.elapsed();
    assert_eq!(violations(&wrong), expected);
    assert_eq!(violations(&unknown), expected);
    assert_eq!(wrong.message(), unknown.message());
    // Both paths run one argon2 verification (not a timing assertion: a
    // floor that a skipped verification could not reach).
    assert!(known_time >= Duration::from_millis(5) && unknown_time >= Duration::from_millis(5));
}

async fn login_input_over_the_limits_is_refused(loc: Location) {
    let app = TestApp::start(&loc).await;
    let s = assert_code(app.login("", "").await, Code::InvalidArgument);
    assert_eq!(violations(&s).len(), 2);
    let s = assert_code(
        app.login("u", &"p".repeat(1025)).await,
        Code::InvalidArgument,
    );
    assert_eq!(violations(&s)[0].0, "password");
    let s = assert_code(
        app.login(&"u".repeat(151), "pw").await,
        Code::InvalidArgument,
    );
    assert_eq!(violations(&s)[0].0, "username");
}

async fn five_failures_throttle_a_username_and_success_resets(loc: Location) {
    let app = TestApp::start(&loc).await;
    app.user("victim").await;
    app.user("bystander").await;
    // Four failures, then a success: the record is cleared.
    for _ in 0..4 {
        assert_code(
            app.login("victim", "nope-nope").await,
            Code::InvalidArgument,
        );
    }
    app.login("victim", "password123").await.unwrap();
    for _ in 0..5 {
        assert_code(
            app.login("victim", "nope-nope").await,
            Code::InvalidArgument,
        );
    }
    // Now even the right password is refused, case-insensitively: the first
    // pause is a second, and it doubles with each further failure.
    for name in ["victim", "VICTIM"] {
        let s = assert_code(
            app.login(name, "password123").await,
            Code::ResourceExhausted,
        );
        let retry = s
            .get_details_retry_info()
            .and_then(|r| r.retry_delay)
            .unwrap();
        assert_eq!(retry, Duration::from_secs(1));
        assert!(
            s.message()
                .starts_with("Request was throttled. Expected available in ")
        );
    }
    // Other usernames are unaffected.
    app.login("bystander", "password123").await.unwrap();
}

async fn parallel_guesses_are_counted_before_they_are_checked(loc: Location) {
    let app = TestApp::start(&loc).await;
    app.user("target").await;
    // 60 wrong guesses at once: each is reserved before its password is
    // checked, so at most the 5 free attempts are checked at all. (Not the
    // right password among them: checked early, it would rightly clear the
    // failures and let later guesses through.)
    let checked = platform::testing::parallel_guesses(
        std::slice::from_ref(&app.client),
        "target",
        "password123",
        60,
        60,
    )
    .await;
    assert!(checked.len() <= 5, "{} checked: {checked:?}", checked.len());
    // The right password, past them, is refused.
    let s = app.login("target", "password123").await.unwrap_err();
    assert_eq!(s.code(), tonic::Code::ResourceExhausted, "{s:?}");
}
