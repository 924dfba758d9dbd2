use std::collections::HashSet;

use tokio::task::JoinSet;
use tonic::Code;

use crate::helpers::{Location, TestApp, assert_code, violations};

crate::on_every_backend!(
    registration_returns_the_user_and_a_working_token,
    a_taken_username_is_refused_case_insensitively,
    bad_input_is_invalid_argument_naming_each_field,
    twenty_concurrent_registrations_of_one_name_yield_one_user,
    user_ids_are_positive_unique_and_increasing,
    names_a_reader_could_confuse_are_taken,
    concurrent_confusable_names_yield_one_user,
    a_keyed_registration_keeps_nothing_of_its_password_or_token,
    a_registration_leaves_no_personal_data_in_the_log,
);

/// Every stream name, type, payload and metadata of the log, for users
/// registered (one with an idempotency key), logged in, failing a login and
/// logged out: no username (as given, normalized or skeleton), no email
/// and no password hash, in any case; yet the answers still carry them.
async fn a_registration_leaves_no_personal_data_in_the_log(loc: Location) {
    let app = TestApp::start(&loc).await;
    let mut request = tonic::Request::new(proto::auth::RegisterRequest {
        username: "Zoë_Unique".into(),
        email: "Zoe.Unique@Example.org".into(),
        password: "password123".into(),
    });
    request
        .metadata_mut()
        .insert("idempotency-key", "k-zoe".parse().unwrap());
    let session = app
        .client
        .clone()
        .register(request)
        .await
        .unwrap()
        .into_inner();
    let user = session.user.unwrap();
    assert_eq!(
        (user.username.as_str(), user.email.as_str()),
        ("Zoë_Unique", "Zoe.Unique@Example.org")
    );
    app.register("Ω_Other", "other@example.net", "password456")
        .await
        .unwrap();
    let again = app.login("zoë_unique", "password123").await.unwrap();
    assert_eq!(again.user.unwrap().username, "Zoë_Unique");
    // A named token, from a client the gateway describes: its address,
    // agent and name are personal data too.
    let mut named = tonic::Request::new(proto::auth::LoginRequest {
        username: "zoë_unique".into(),
        password: "password123".into(),
        name: "Zoës-Laptop".into(),
    });
    for (key, value) in [
        ("x-client-address", "198.51.100.77"),
        ("x-client-user-agent", "ZoeBrowser/7.7"),
    ] {
        named.metadata_mut().insert(key, value.parse().unwrap());
    }
    app.client.clone().login(named).await.unwrap();
    let mut wrong = tonic::Request::new(proto::auth::LoginRequest {
        username: "zoë_unique".into(),
        password: "wrong-password".into(),
        ..Default::default()
    });
    wrong
        .metadata_mut()
        .insert("x-client-user-agent", "ZoeBrowser/7.7".parse().unwrap());
    assert!(app.client.clone().login(wrong).await.is_err());
    app.logout(&again.token).await.unwrap();
    let me = app.authenticate(&session.token).await.unwrap();
    assert_eq!(me.email, "Zoe.Unique@Example.org");

    let store = event_store::open(loc.url()).await.unwrap();
    let events = store.read_all(1, 1000).await.unwrap();
    assert!(events.len() >= 6, "{}", events.len());
    let personal = [
        "zoë_unique",
        "zoe_unique",
        "zoe.unique@example.org",
        "ω_other",
        "other@example.net",
        "$argon2",
        "198.51.100.77",
        "zoebrowser",
        "zoës-laptop",
    ];
    for e in &events {
        let all = format!(
            "{} {} {} {}",
            e.stream,
            e.event_type,
            e.data.get(),
            e.metadata.get()
        )
        .to_lowercase();
        for p in personal {
            assert!(!all.contains(p), "{p:?} in the log: {all}");
        }
    }
}

async fn registration_returns_the_user_and_a_working_token(loc: Location) {
    let app = TestApp::start(&loc).await;
    let s = app
        .register("hp1", "rit@gmail.com", "s3cret-pass")
        .await
        .unwrap();
    let user = s.user.clone().unwrap();
    assert!(user.id > 0);
    assert_eq!(
        (user.username.as_str(), user.email.as_str()),
        ("hp1", "rit@gmail.com")
    );
    assert_eq!(s.token.len(), 64);
    assert!(s.token.chars().all(|c| c.is_ascii_hexdigit()));
    let expiry = s.expiry.unwrap().seconds;
    let in_ten_hours = chrono::Utc::now().timestamp() + 36_000;
    assert!((in_ten_hours - 5..=in_ten_hours + 5).contains(&expiry));
    assert_eq!(app.authenticate(&s.token).await.unwrap(), user);
}

/// Registering `name` is refused as DRF refuses a taken username.
async fn assert_taken(app: &TestApp, name: &str) {
    let s = assert_code(
        app.register(name, "a@b.co", "password123").await,
        Code::AlreadyExists,
    );
    assert_eq!(
        violations(&s),
        [(
            "username".into(),
            "A user with that username already exists.".into()
        )],
        "{name}"
    );
}

async fn a_taken_username_is_refused_case_insensitively(loc: Location) {
    let app = TestApp::start(&loc).await;
    app.user("Alice").await;
    for name in ["Alice", "alice", "ALICE"] {
        assert_taken(&app, name).await;
    }
}

async fn bad_input_is_invalid_argument_naming_each_field(loc: Location) {
    let app = TestApp::start(&loc).await;
    let s = assert_code(app.register("", "", "").await, Code::InvalidArgument);
    let fields: HashSet<String> = violations(&s).into_iter().map(|(f, _)| f).collect();
    assert_eq!(
        fields,
        HashSet::from(["username".into(), "email".into(), "password".into()])
    );

    let cases = [
        (
            "ok",
            "not-an-email",
            "password123",
            "email",
            "Enter a valid email address.",
        ),
        (
            "has space",
            "a@b.co",
            "password123",
            "username",
            "Enter a valid username. This value may contain only letters, numbers, and @/./+/-/_ characters.",
        ),
        (
            &"u".repeat(151),
            "a@b.co",
            "password123",
            "username",
            "Ensure this field has no more than 150 characters.",
        ),
        (
            "ok",
            "a@b.co",
            "short",
            "password",
            "Ensure this field has at least 8 characters.",
        ),
        (
            "ok",
            "a@b.co",
            &"p".repeat(1025),
            "password",
            "Ensure this field has no more than 1024 characters.",
        ),
    ];
    for (username, email, password, field, message) in cases {
        let s = assert_code(
            app.register(username, email, password).await,
            Code::InvalidArgument,
        );
        assert_eq!(
            violations(&s),
            [(field.to_owned(), message.to_owned())],
            "{field}"
        );
    }
    // Tens of KiB are refused by the field checks, not hashed; megabytes are
    // refused before they are even decoded; the server stays up.
    let s = assert_code(
        app.register("big", "a@b.co", &"p".repeat(60 * 1024)).await,
        Code::InvalidArgument,
    );
    assert_eq!(violations(&s)[0].0, "password");
    assert_code(
        app.register("big", "a@b.co", &"p".repeat(3 * 1024 * 1024))
            .await,
        Code::OutOfRange,
    );
    app.user("still-serving").await;
}

/// Registers the names `name_of(0..20)` at once: how many registrations
/// succeeded, and how many were refused as taken.
async fn race(app: &TestApp, name_of: impl Fn(usize) -> String) -> (usize, usize) {
    let mut tasks = JoinSet::new();
    for i in 0..20 {
        let mut client = app.client.clone();
        let request = proto::auth::RegisterRequest {
            username: name_of(i),
            email: "r@example.com".into(),
            password: "password123".into(),
        };
        tasks.spawn(async move { client.register(request).await });
    }
    let (mut won, mut taken) = (0, 0);
    while let Some(r) = tasks.join_next().await {
        match r.unwrap() {
            Ok(_) => won += 1,
            Err(s) if s.code() == Code::AlreadyExists => taken += 1,
            Err(s) => panic!("unexpected {s:?}"),
        }
    }
    (won, taken)
}

async fn twenty_concurrent_registrations_of_one_name_yield_one_user(loc: Location) {
    let app = TestApp::start(&loc).await;
    for round in 0..3 {
        // Mixed case: one name, case-insensitively.
        let outcome = race(&app, |i| {
            if i % 2 == 0 {
                format!("racer{round}")
            } else {
                format!("RACER{round}")
            }
        })
        .await;
        assert_eq!(outcome, (1, 19), "round {round}");
    }
}

async fn user_ids_are_positive_unique_and_increasing(loc: Location) {
    let app = TestApp::start(&loc).await;
    let mut last = 0;
    for i in 0..5 {
        let id = app.user(&format!("seq{i}")).await.user.unwrap().id;
        assert!(id > last, "{id} after {last}");
        last = id;
    }
    // Concurrent registrations of distinct names get distinct ids.
    let mut tasks = JoinSet::new();
    for i in 0..16 {
        let client = app.client.clone();
        tasks.spawn(async move {
            client
                .clone()
                .register(proto::auth::RegisterRequest {
                    username: format!("par{i}"),
                    email: "p@example.com".into(),
                    password: "password123".into(),
                })
                .await
                .unwrap()
                .into_inner()
                .user
                .unwrap()
                .id
        });
    }
    let ids: HashSet<i64> = tasks.join_all().await.into_iter().collect();
    assert_eq!(ids.len(), 16);
    assert!(ids.iter().all(|&id| id > last));
}

async fn names_a_reader_could_confuse_are_taken(loc: Location) {
    let app = TestApp::start(&loc).await;
    let admin = app.user("admin").await.user.unwrap();
    app.user("file").await;
    app.user("straße").await;
    // Cyrillic а, Ukrainian і, fullwidth, a ligature, full case folding.
    for name in [
        "\u{0430}dmin",
        "adm\u{0456}n",
        "ａｄｍｉｎ",
        "ADMIN",
        "ﬁle",
        "STRASSE",
    ] {
        assert_taken(&app, name).await;
    }
    // Django stores the NFKC form: a fullwidth name registers as ASCII.
    let s = app
        .register("ｂｏｂ", "b@b.co", "password123")
        .await
        .unwrap();
    assert_eq!(s.user.unwrap().username, "bob");
    assert_eq!(
        app.login("ａｄｍｉｎ", "password123")
            .await
            .unwrap()
            .user
            .unwrap(),
        admin,
        "a login is NFKC-normalised too"
    );
}

async fn concurrent_confusable_names_yield_one_user(loc: Location) {
    let app = TestApp::start(&loc).await;
    let names = [
        "paypal",
        "\u{0440}aypal",
        "payp\u{0430}l",
        "PAYPAL",
        "ｐａｙｐａｌ",
    ];
    let outcome = race(&app, |i| names[i % names.len()].to_owned()).await;
    assert_eq!(outcome, (1, 19));
}

/// A registration sent with an idempotency key keeps its fingerprint in the
/// store, and nothing else: not the token, sealed or not, nor anything
/// derived from the password (a retry is answered as a login).
async fn a_keyed_registration_keeps_nothing_of_its_password_or_token(loc: Location) {
    let app = TestApp::start(&loc).await;
    let mut request = tonic::Request::new(proto::auth::RegisterRequest {
        username: "sealed".into(),
        email: "s@example.com".into(),
        password: "password123".into(),
    });
    request
        .metadata_mut()
        .insert("idempotency-key", "k".parse().unwrap());
    let token = app
        .client
        .clone()
        .register(request)
        .await
        .unwrap()
        .into_inner()
        .token;
    let store = event_store::open(loc.url()).await.unwrap();
    let events = store.read_all(1, 1000).await.unwrap();
    let stamped: Vec<_> = events
        .iter()
        .filter_map(event_sourcing::idempotency::Idempotent::stamp_of)
        .collect();
    assert_eq!(stamped.len(), 1, "one stamped UserRegistered");
    let members: Vec<&String> = stamped[0].keys().collect();
    assert_eq!(members, ["fingerprint"], "{stamped:?}");
    for e in &events {
        for text in [e.data.get(), e.metadata.get()] {
            assert!(
                !text.contains(&token),
                "the token is stored in the clear: {text}"
            );
            assert!(!text.contains("password123"));
        }
    }
}
