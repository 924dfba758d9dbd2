use std::time::Duration;

use auth_service::Config;
use auth_service::read_model::AuthView;
use event_sourcing::read_model::Projection;
use event_sourcing::read_model::snapshot::Snapshot;
use proto::auth::{AuthenticateManyRequest, ListTokensRequest};
use tonic::Code;

use crate::helpers::{Location, TestApp, assert_code};

crate::on_every_backend!(
    unknown_and_malformed_tokens_are_unauthenticated,
    logout_revokes_only_that_token_at_once,
    logout_all_revokes_every_token_of_the_user,
    tokens_expire_after_their_lifetime,
    authenticate_many_answers_each_token_in_order,
    authenticate_many_refreshes_what_is_due,
    tokens_and_revocations_survive_a_restart,
    a_snapshot_and_the_events_after_it_equal_a_full_replay,
    a_snapshot_the_service_did_not_write_is_refused,
);

async fn unknown_and_malformed_tokens_are_unauthenticated(loc: Location) {
    let app = TestApp::start(&loc).await;
    let valid_shape = "ab".repeat(32);
    for token in [
        "",
        "x",
        valid_shape.as_str(),
        &"zz".repeat(32),
        &"é".repeat(32),
        &"a".repeat(10_000),
    ] {
        let s = assert_code(app.authenticate(token).await, Code::Unauthenticated);
        assert_eq!(s.message(), "Invalid token.");
        assert_code(app.logout(token).await, Code::Unauthenticated);
        assert_code(app.logout_all(token).await, Code::Unauthenticated);
    }
}

async fn logout_revokes_only_that_token_at_once(loc: Location) {
    let app = TestApp::start(&loc).await;
    let first = app.user("hp1").await.token;
    let second = app.login("hp1", "password123").await.unwrap().token;
    app.logout(&first).await.unwrap();
    assert_code(app.authenticate(&first).await, Code::Unauthenticated);
    app.authenticate(&second).await.unwrap();
    // Logging out twice: the token is already invalid.
    assert_code(app.logout(&first).await, Code::Unauthenticated);
}

async fn logout_all_revokes_every_token_of_the_user(loc: Location) {
    let app = TestApp::start(&loc).await;
    let a = app.user("hp1").await.token;
    let b = app.login("hp1", "password123").await.unwrap().token;
    let other = app.user("other").await.token;
    app.logout_all(&b).await.unwrap();
    assert_code(app.authenticate(&a).await, Code::Unauthenticated);
    assert_code(app.authenticate(&b).await, Code::Unauthenticated);
    app.authenticate(&other).await.unwrap();
    // Tokens issued afterwards work.
    let fresh = app.login("hp1", "password123").await.unwrap().token;
    app.authenticate(&fresh).await.unwrap();
}

async fn tokens_expire_after_their_lifetime(loc: Location) {
    let app = TestApp::start_with(Config {
        auth_token_ttl_secs: 1,
        ..crate::helpers::config(&loc)
    })
    .await;
    let token = app.user("brief").await.token;
    app.authenticate(&token).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_code(app.authenticate(&token).await, Code::Unauthenticated);
    assert_code(app.logout(&token).await, Code::Unauthenticated);
}

async fn owners(app: &TestApp, tokens: &[&str]) -> Result<Vec<Option<i64>>, tonic::Status> {
    let request = AuthenticateManyRequest {
        tokens: tokens.iter().map(|t| (*t).to_owned()).collect(),
    };
    let answer = app.client.clone().authenticate_many(request).await?;
    let owners = answer.into_inner().owners;
    Ok(owners.iter().map(|o| o.live.then_some(o.user_id)).collect())
}

async fn authenticate_many_answers_each_token_in_order(loc: Location) {
    let app = TestApp::start(&loc).await;
    let a = app.user("many-a").await;
    let b = app.user("many-b").await;
    let (a_id, b_id) = (a.user.unwrap().id, b.user.unwrap().id);
    let revoked = app.login("many-a", "password123").await.unwrap().token;
    app.logout(&revoked).await.unwrap();
    let unknown = "ab".repeat(32);
    let asked = [
        b.token.as_str(),
        "malformed",
        a.token.as_str(),
        revoked.as_str(),
        b.token.as_str(),
        unknown.as_str(),
        "",
    ];
    let answer = owners(&app, &asked).await.unwrap();
    assert_eq!(
        answer,
        [Some(b_id), None, Some(a_id), None, Some(b_id), None, None]
    );
    assert_eq!(owners(&app, &[]).await.unwrap(), []);
    // At most 512 tokens in one call.
    let most = vec![a.token.as_str(); 512];
    assert_eq!(owners(&app, &most).await.unwrap(), vec![Some(a_id); 512]);
    let too_many = vec![a.token.as_str(); 513];
    assert_code(owners(&app, &too_many).await, Code::InvalidArgument);
}

async fn authenticate_many_refreshes_what_is_due(loc: Location) {
    let app = TestApp::start_with(Config {
        auth_token_auto_refresh: true,
        auth_token_min_refresh_secs: 1,
        ..crate::helpers::config(&loc)
    })
    .await;
    let token = app.user("refreshed-many").await.token;
    let expiry = || async {
        let request = ListTokensRequest {
            token: token.clone(),
            ..Default::default()
        };
        let listed = app.client.clone().list_tokens(request).await.unwrap();
        listed.into_inner().tokens[0].expiry.unwrap().seconds
    };
    let before = expiry().await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert!(owners(&app, &[&token]).await.unwrap()[0].is_some());
    let after = expiry().await;
    assert!(after >= before + 2, "{before} then {after}");
}

async fn tokens_and_revocations_survive_a_restart(loc: Location) {
    let app = TestApp::start(&loc).await;
    let kept = app.user("hp1").await;
    let revoked = app.login("hp1", "password123").await.unwrap().token;
    app.logout(&revoked).await.unwrap();
    app.stop().await;

    let app = TestApp::start(&loc).await;
    assert_eq!(
        app.authenticate(&kept.token).await.unwrap(),
        kept.user.clone().unwrap()
    );
    assert_code(app.authenticate(&revoked).await, Code::Unauthenticated);
    assert_code(
        app.register("HP1", "x@y.co", "password123").await,
        Code::AlreadyExists,
    );
    // Ids continue after the ones already handed out.
    let next = app.user("newcomer").await.user.unwrap().id;
    assert!(next > kept.user.unwrap().id);
}

async fn a_snapshot_and_the_events_after_it_equal_a_full_replay(loc: Location) {
    let dir = tempfile::tempdir().unwrap();
    let with_snapshots = Config {
        auth_snapshot: dir.path().join("auth.snapshot").display().to_string(),
        ..crate::helpers::config(&loc)
    };
    let app = TestApp::start_with(with_snapshots.clone()).await;
    let kept = app.user("hp1").await;
    let revoked = app.login("hp1", "password123").await.unwrap().token;
    app.logout(&revoked).await.unwrap();
    app.stop().await; // saves a snapshot
    // Events after it, through a replica that saves none.
    let app = TestApp::start_with(Config {
        auth_snapshot: "off".into(),
        ..crate::helpers::config(&loc)
    })
    .await;
    let later = app.user("later").await;
    app.logout_all(&kept.token).await.unwrap();
    app.stop().await;

    let store = event_store::open(loc.url()).await.unwrap();
    let resumed = Projection::start_with_snapshots(
        store.clone(),
        AuthView::default(),
        with_snapshots.snapshot_policy(),
    )
    .await
    .unwrap();
    assert!(resumed.started_from().is_some());
    assert!(resumed.applied_position() > resumed.started_from().unwrap());
    let (full, _) = event_sourcing::read_model::rebuild(&*store, AuthView::default())
        .await
        .unwrap();
    assert_eq!(resumed.read().to_bytes(), full.to_bytes(), "byte for byte");
    drop(resumed);
    // A service started from that snapshot answers as the events say.
    let app = TestApp::start_with(with_snapshots).await;
    assert_code(app.authenticate(&kept.token).await, Code::Unauthenticated);
    assert_code(app.authenticate(&revoked).await, Code::Unauthenticated);
    assert_eq!(
        app.authenticate(&later.token).await.unwrap(),
        later.user.unwrap()
    );
}

/// Security review 3, finding 4: whoever can write the snapshot file can
/// put in another read model, with a token of their own (here: the model
/// of another store, where they registered the same name and logged in),
/// under the real file's header, and its checksum recomputed. Without the
/// service's key the tag cannot be: the file is refused, the model is
/// replayed from the events, and their token is refused.
async fn a_snapshot_the_service_did_not_write_is_refused(loc: Location) {
    use event_sourcing::read_model::snapshot::{SnapshotKey, read_file, write_bytes};
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str| dir.path().join(name);
    let snapshots = |loc: &Location, name: &str| Config {
        auth_snapshot: file(name).display().to_string(),
        ..crate::helpers::config(loc)
    };
    let key_of = async |loc: &Location| {
        let store = event_store::open(loc.url()).await.unwrap();
        SnapshotKey::new(store.secret("snapshot-key:auth").await.unwrap())
    };
    // The attacker's own store and snapshot.
    let theirs = Location::sqlite();
    let app = TestApp::start_with(snapshots(&theirs, "theirs.snapshot")).await;
    app.user("victim").await;
    let forged = app.login("victim", "password123").await.unwrap().token;
    app.stop().await;
    let (_, payload) = read_file(
        &file("theirs.snapshot"),
        "auth",
        AuthView::VERSION,
        &key_of(&theirs).await,
    )
    .unwrap()
    .unwrap();
    // The real service's snapshot.
    let app = TestApp::start_with(snapshots(&loc, "auth.snapshot")).await;
    let victim = app.user("victim").await;
    app.stop().await;
    let (header, _) = read_file(
        &file("auth.snapshot"),
        "auth",
        AuthView::VERSION,
        &key_of(&loc).await,
    )
    .unwrap()
    .unwrap();
    write_bytes(
        &file("auth.snapshot"),
        &header,
        &SnapshotKey::new([7; 32]),
        &payload,
    )
    .unwrap();

    let app = TestApp::start_with(snapshots(&loc, "auth.snapshot")).await;
    assert_code(app.authenticate(&forged).await, Code::Unauthenticated);
    assert_eq!(
        app.authenticate(&victim.token).await.unwrap(),
        victim.user.unwrap()
    );
}

/// Snapshot files, and the SQLite files beside them, are their owner's
/// only (they hold password hashes, keys and token digests).
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_and_snapshot_files_are_the_owners_only() {
    use std::os::unix::fs::PermissionsExt;
    let loc = Location::sqlite();
    let dir = tempfile::tempdir().unwrap();
    let snapshot = dir.path().join("snapshots").join("auth.snapshot");
    let app = TestApp::start_with(Config {
        auth_snapshot: snapshot.display().to_string(),
        ..crate::helpers::config(&loc)
    })
    .await;
    app.user("private").await;
    app.stop().await;
    let db = std::path::PathBuf::from(loc.url().trim_start_matches("sqlite://"));
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&snapshot), 0o600, "{}", snapshot.display());
    assert_eq!(mode(snapshot.parent().unwrap()), 0o700);
    assert_eq!(mode(&db), 0o600, "{}", db.display());
}
