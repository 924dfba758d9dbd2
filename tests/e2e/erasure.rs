//! `POST /api/auth/me/erase`: a user erased for good, while what they gave
//! the catalog stays anonymous; and, on the one-command stack, every byte
//! under the stores searched for what was theirs.

use std::path::Path;

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{Stores, TestApp, post_keyed};

crate::on_every_backend!(an_erased_user_is_gone_and_their_name_is_free);

const NAME: &str = "Erin_Erasable";
const EMAIL: &str = "Erin.Erasable@Example.org";
const PASSWORD: &str = "erin-password-1";
const TITLE: &str = "A Title That Stays In The Clear";

/// Step 1: Erin registers, logs in twice, adds a movie (with an
/// idempotency key) and rates another's. Returns her tokens, her id and
/// the movie's.
async fn erin_uses_the_site(app: &TestApp) -> (Vec<String>, i64, i64) {
    let body = json!({"username": NAME, "email": EMAIL, "password": PASSWORD});
    let a = app.post("/api/auth/register", None, body).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    let id = a.body["user"]["id"].as_i64().unwrap();
    let mut tokens = vec![a.body["token"].as_str().unwrap().to_owned()];
    for _ in 0..2 {
        let login = json!({"username": NAME.to_lowercase(), "password": PASSWORD});
        let a = app.post("/api/auth/login", None, login).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.text);
        tokens.push(a.body["token"].as_str().unwrap().to_owned());
    }
    let movie = json!({"title": TITLE, "director": "Someone"});
    let (status, added) = post_keyed(
        app,
        "/api/auth/movies",
        Some(&tokens[0]),
        "erin-movie",
        movie,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{added}");
    let (other, _) = app.user("other_rater").await;
    let theirs = app.movie(&other, "Another's Movie").await;
    let rated = app.rate(&tokens[1], theirs, 4).await;
    assert_eq!(rated.status, StatusCode::CREATED, "{}", rated.text);
    let rated = app.rate(&other, added["id"].clone(), 2).await;
    assert_eq!(rated.status, StatusCode::CREATED, "{}", rated.text);
    (tokens, id, added["id"].as_i64().unwrap())
}

/// Steps 3 and 4: erased (a wrong password first, as a login's), then
/// nothing of hers answers, her name registers anew, and her movie and
/// ratings stay without her.
async fn erin_is_erased(app: &TestApp, tokens: &[String], id: i64, movie: i64) {
    let wrong = app
        .post(
            "/api/auth/me/erase",
            Some(&tokens[2]),
            json!({"password": "not-hers"}),
        )
        .await;
    assert_eq!(wrong.status, StatusCode::BAD_REQUEST, "{}", wrong.text);
    let blank = app
        .post("/api/auth/me/erase", Some(&tokens[2]), json!({}))
        .await;
    assert_eq!(blank.status, StatusCode::BAD_REQUEST, "{}", blank.text);
    let erased = app
        .post(
            "/api/auth/me/erase",
            Some(&tokens[2]),
            json!({"password": PASSWORD}),
        )
        .await;
    assert_eq!(erased.status, StatusCode::NO_CONTENT, "{}", erased.text);

    for token in tokens {
        let a = app.get("/api/auth/me", Some(token)).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.text);
        let a = app.get("/api/auth/movies", Some(token)).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.text);
    }
    let login = json!({"username": NAME, "password": PASSWORD});
    let a = app.post("/api/auth/login", None, login).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.text);

    // The name is free: a new user, with a new id.
    let body = json!({"username": NAME, "email": "someone.else@example.net", "password": "new-password-2"});
    let again = app.post("/api/auth/register", None, body).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.text);
    let new_id = again.body["user"]["id"].as_i64().unwrap();
    assert_ne!(new_id, id);
    let token = again.body["token"].as_str().unwrap();
    let me = app.get("/api/auth/me", Some(token)).await;
    assert_eq!(me.body["id"], new_id);
    assert_eq!(me.body["email"], "someone.else@example.net");

    // Her movie stays, her ratings count; nothing names her.
    let detail = app
        .get(&format!("/api/auth/movies/{movie}"), Some(token))
        .await;
    assert_eq!(detail.status, StatusCode::OK, "{}", detail.text);
    assert_eq!(detail.body["title"], TITLE);
    let all = app.get("/api/auth/rating", Some(token)).await;
    let text = all.text.to_lowercase();
    assert_eq!(
        all.body.as_array().map(Vec::len),
        Some(2),
        "both ratings stay, anonymous: {}",
        all.text
    );
    for personal in [NAME.to_lowercase(), EMAIL.to_lowercase()] {
        assert!(!text.contains(&personal), "{personal} in {}", all.text);
    }
}

/// Step 2: her export holds every item: profile, her three live tokens
/// (the calling one marked, no secret), her whole history, her movie and
/// her rating.
async fn erin_exports(app: &TestApp, tokens: &[String], id: i64, movie: i64) {
    let a = app.get("/api/auth/me/export", Some(&tokens[1])).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(a.headers["cache-control"], "no-store");
    let e = &a.body;
    assert_eq!(e["profile"]["id"], id);
    assert_eq!(e["profile"]["username"], NAME);
    assert_eq!(e["profile"]["email"], EMAIL);
    let live = e["tokens"].as_array().unwrap();
    assert_eq!(live.len(), 3, "{}", a.text);
    let current: Vec<bool> = live.iter().map(|t| t["current"] == true).collect();
    assert_eq!(
        current,
        [false, true, false],
        "oldest first, this call's marked"
    );
    for token in tokens {
        assert!(!a.text.contains(token.as_str()), "no token in the export");
    }
    let kinds: Vec<&str> = e["activity"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["kind"].as_str().unwrap())
        .collect();
    for kind in ["registered", "logged_in", "movie_added", "rated"] {
        assert!(kinds.contains(&kind), "{kind}: {kinds:?}");
    }
    assert_eq!(kinds.iter().filter(|k| **k == "logged_in").count(), 3);
    assert_eq!(e["movies"].as_array().unwrap().len(), 1);
    assert_eq!(e["movies"][0]["movie"]["id"], movie);
    assert_eq!(e["movies"][0]["movie"]["title"], TITLE);
    assert_eq!(e["ratings"].as_array().unwrap().len(), 1);
    assert_eq!(e["ratings"][0]["rating"], 4);
}

async fn an_erased_user_is_gone_and_their_name_is_free(app: TestApp) {
    let (tokens, id, movie) = erin_uses_the_site(&app).await;
    erin_exports(&app, &tokens, id, movie).await;
    erin_is_erased(&app, &tokens, id, movie).await;
    let after = app.get("/api/auth/me/export", Some(&tokens[0])).await;
    assert_eq!(after.status, StatusCode::UNAUTHORIZED, "{}", after.text);
}

/// The directories of the two SQLite stores (each with its snapshots and,
/// for auth, its key file).
fn store_dirs(stores: &Stores) -> Vec<std::path::PathBuf> {
    [stores.auth.url(), stores.catalog.url()]
        .iter()
        .map(|url| {
            let file = Path::new(url.trim_start_matches("sqlite://"));
            file.parent().unwrap().to_owned()
        })
        .collect()
}

/// Every file under `dir`, with its bytes. A file that is gone between
/// the listing and the read (SQLite's `-wal`, `-shm` or `-journal`,
/// removed when the last connection of a stopped stack closes) holds
/// nothing any more, and is skipped; any other error fails the test.
fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files(&path));
            continue;
        }
        match std::fs::read(&path) {
            Ok(bytes) => out.push((path.display().to_string(), bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => panic!("{}: {e}", path.display()),
        }
    }
    out
}

/// What would be Erin's in the clear: her name as given and lowercased,
/// her email in both cases, and any argon2 hash.
fn erins() -> Vec<String> {
    vec![
        NAME.to_string(),
        NAME.to_lowercase(),
        EMAIL.to_string(),
        EMAIL.to_lowercase(),
        "$argon2".to_string(),
    ]
}

/// Asserts that no file of `files` holds any of `needles`.
fn assert_absent(files: &[(String, Vec<u8>)], needles: Vec<String>) {
    for needle in needles {
        assert_eq!(
            hits(files, needle.as_bytes()),
            Vec::<String>::new(),
            "{needle}"
        );
    }
}

/// How many times `needle` occurs in `files`, and where.
fn hits(files: &[(String, Vec<u8>)], needle: &[u8]) -> Vec<String> {
    files
        .iter()
        .filter(|(_, bytes)| bytes.windows(needle.len()).any(|w| w == needle))
        .map(|(name, _)| name.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn after_an_erasure_no_byte_under_the_stores_holds_what_was_theirs() {
    let stores = Stores::sqlite().await;
    let app = TestApp::start(&stores, movies::Wiring::InProcess).await;
    let (tokens, id, movie) = erin_uses_the_site(&app).await;
    erin_is_erased(&app, &tokens, id, movie).await;
    // Stopped: the snapshots written at stop are searched too.
    app.stop().await;
    let dirs = store_dirs(&stores);
    let all: Vec<_> = dirs.iter().flat_map(|d| files(d)).collect();
    let names: Vec<&str> = all.iter().map(|(n, _)| n.as_str()).collect();
    assert!(names.iter().any(|n| n.ends_with(".snapshot")), "{names:?}");
    assert!(names.iter().any(|n| n.ends_with(".keys")), "{names:?}");
    // The search reads these files: the title Erin gave is there.
    assert!(
        !hits(&all, TITLE.as_bytes()).is_empty(),
        "the title is found: {names:?}"
    );
    assert_absent(&all, erins());
}

/// The same search in a `pg_dump` of both databases, after an erasure
/// through one process of each service on PostgreSQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn after_an_erasure_no_byte_of_a_pg_dump_holds_what_was_theirs() {
    let Some(stores) = Stores::postgres("erasure_dump").await else {
        return;
    };
    let app = TestApp::start(&stores, movies::Wiring::Grpc).await;
    let (tokens, id, movie) = erin_uses_the_site(&app).await;
    erin_is_erased(&app, &tokens, id, movie).await;
    app.stop().await;
    let mut dumps = Vec::new();
    for url in [stores.auth.url(), stores.catalog.url()] {
        dumps.push((url.to_owned(), crate::support::pg_dump(url)));
    }
    assert!(
        !hits(&dumps, TITLE.as_bytes()).is_empty(),
        "the title is found"
    );
    assert!(
        !hits(&dumps, b"auth_user_keys").is_empty(),
        "the key table is dumped"
    );
    assert_absent(&dumps, erins());
}

/// README, "Personal data", the upgrade: release 3c5e5a3's store (every
/// name, email and hash in the clear) sealed by `movies copy --seal` into
/// fresh stores. Those answer as the old one did, a user of the old
/// release is erased, and no byte under the new stores holds any old
/// user's name, email or hash.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_store_of_the_previous_release_sealed_by_a_copy_forgets_as_a_new_one() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/release-3c5e5a3");
    let expected = crate::releases::expected(&fixture);
    let (old, new) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    for file in std::fs::read_dir(fixture.join("data")).unwrap() {
        let file = file.unwrap();
        std::fs::copy(file.path(), old.path().join(file.file_name())).unwrap();
    }
    let url = |dir: &Path, db: &str| format!("sqlite://{}", dir.join(db).display());
    let source =
        crate::helpers::config_on(&url(old.path(), "auth.db"), &url(old.path(), "catalog.db"));
    let args = movies::copy::CopyArgs {
        to_auth_store_url: url(new.path(), "auth.db"),
        to_catalog_store_url: url(new.path(), "catalog.db"),
        to_auth_key_store_url: "auto".into(),
        upcast: false,
        seal: true,
        no_verify: false,
    };
    movies::copy::run(&source, &args)
        .await
        .expect("the sealing copy");

    let config = crate::helpers::config_on(&args.to_auth_store_url, &args.to_catalog_store_url);
    let stack = movies::Stack::build(&config, movies::Wiring::InProcess)
        .await
        .expect("the stack starts on the sealed copy");
    let app = TestApp::serve(stack).await;
    crate::releases::answers_as_recorded(&expected, &app, crate::releases::RegisterKeys::Forgotten)
        .await;

    // A user of the old release erases their account.
    let zoe = expected["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["username"] == "Zoë")
        .unwrap()
        .clone();
    let token = zoe["live"][0].as_str().unwrap();
    let erased = app
        .post(
            "/api/auth/me/erase",
            Some(token),
            json!({"password": zoe["password"]}),
        )
        .await;
    assert_eq!(erased.status, StatusCode::NO_CONTENT, "{}", erased.text);
    let login = json!({"username": "Zoë", "password": zoe["password"]});
    let a = app.post("/api/auth/login", None, login).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.text);
    app.stop().await;

    let all = files(new.path());
    assert!(
        !hits(&all, "Amélie".as_bytes()).is_empty(),
        "the search reads the files"
    );
    let mut needles: Vec<String> = vec!["$argon2".into()];
    for (i, user) in expected["users"].as_array().unwrap().iter().enumerate() {
        let name = user["username"].as_str().unwrap();
        needles.extend([
            name.to_owned(),
            name.to_lowercase(),
            format!("user{i}@example.com"),
        ]);
    }
    assert_absent(&all, needles);
}

/// Copies every file of `from` into `to` (made if needed), replacing what
/// `to` held.
fn replace_dir(from: &Path, to: &Path) {
    if to.exists() {
        std::fs::remove_dir_all(to).unwrap();
    }
    std::fs::create_dir_all(to).unwrap();
    for file in std::fs::read_dir(from).unwrap() {
        let file = file.unwrap();
        match std::fs::copy(file.path(), to.join(file.file_name())) {
            // A snapshot's temporary file, renamed meanwhile.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            copied => {
                copied.unwrap();
            }
        }
    }
}

/// README, "Backups and erasures": a backup taken before an erasure still
/// holds the user and their key; after restoring it, reapplying the
/// erasure list erases them again, and only them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn erasures_reapplied_after_a_restore_erase_again() {
    let stores = Stores::sqlite().await;
    let dirs = store_dirs(&stores);
    let app = TestApp::start(&stores, movies::Wiring::InProcess).await;
    let (anna, anna_id) = app.user("anna_backup").await;
    let (bert, _) = app.user("bert_backup").await;
    app.stop().await;
    let backup = tempfile::tempdir().unwrap();
    for (i, dir) in dirs.iter().enumerate() {
        replace_dir(dir, &backup.path().join(i.to_string()));
    }

    let app = TestApp::start(&stores, movies::Wiring::InProcess).await;
    let erased = app
        .post(
            "/api/auth/me/erase",
            Some(&anna),
            json!({"password": "password123"}),
        )
        .await;
    assert_eq!(erased.status, StatusCode::NO_CONTENT, "{}", erased.text);
    app.stop().await;
    let config = crate::helpers::config(&stores);
    // The list, kept outside the backups.
    let mut auth = config.auth.clone();
    auth.auth_metrics_listen = platform::MaybeAddr::OFF;
    let auth = auth_service::Application::build(&auth).await.unwrap();
    let listed = auth.erasures();
    auth.close().await;
    assert_eq!(listed, [auth_service::domain::UserId(anna_id)]);
    let list = backup.path().join("erased.txt");
    std::fs::write(&list, format!("# erased users\n{anna_id}\n")).unwrap();

    // The restore (into a place of its own, as onto a new machine) brings
    // Anna back, key and all.
    let restored = tempfile::tempdir().unwrap();
    for i in 0..2 {
        replace_dir(
            &backup.path().join(i.to_string()),
            &restored.path().join(i.to_string()),
        );
    }
    let url = |i: usize| {
        format!(
            "sqlite://{}",
            restored.path().join(format!("{i}/events.db")).display()
        )
    };
    let config = crate::helpers::config_on(&url(0), &url(1));
    let start = async || {
        let stack = movies::Stack::build(&config, movies::Wiring::InProcess)
            .await
            .unwrap();
        TestApp::serve(stack).await
    };
    let app = start().await;
    assert_eq!(
        app.get("/api/auth/me", Some(&anna)).await.status,
        StatusCode::OK
    );
    app.stop().await;

    movies::erasures::reapply(&config, &list).await.unwrap();
    let app = start().await;
    assert_eq!(
        app.get("/api/auth/me", Some(&anna)).await.status,
        StatusCode::UNAUTHORIZED
    );
    let login = json!({"username": "anna_backup", "password": "password123"});
    assert_eq!(
        app.post("/api/auth/login", None, login).await.status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        app.get("/api/auth/me", Some(&bert)).await.status,
        StatusCode::OK
    );
    app.stop().await;
    let keys = auth_service::keys::Keyring::open(&config.auth.key_store_url().unwrap(), None)
        .await
        .unwrap();
    let anna_key = keys
        .get(auth_service::domain::UserId(anna_id))
        .await
        .unwrap();
    assert!(anna_key.is_none(), "her key is destroyed again");
    // Reapplying twice changes nothing.
    movies::erasures::reapply(&config, &list).await.unwrap();
}
