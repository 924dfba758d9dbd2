//! What the services' tests share (feature `testing`): a server run in a task
//! that stops when told, and assertions on gRPC statuses.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::{Code, Status};
use tonic_types::StatusExt;

/// A server task that stops when told, or when dropped.
pub struct Running {
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

/// Resolves when its [`Running`] is told to stop (or is dropped): the
/// shutdown future to hand the server.
pub struct StopSignal(oneshot::Receiver<()>);

impl Future for StopSignal {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.0).poll(cx).map(|_| ())
    }
}

impl Running {
    /// Spawns `run`, which serves until the [`StopSignal`] it gets resolves.
    pub fn spawn<F>(run: impl FnOnce(StopSignal) -> F) -> Self
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let (stop, stopped) = oneshot::channel();
        Self {
            stop: Some(stop),
            task: Some(tokio::spawn(run(StopSignal(stopped)))),
        }
    }

    /// Tells the server to stop and waits until it has (its panics resurface here).
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.expect("the server task ends cleanly");
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// The field violations of a status (`google.rpc.BadRequest`), as (field, message).
pub fn violations(status: &Status) -> Vec<(String, String)> {
    status
        .get_details_bad_request()
        .map(|b| {
            b.field_violations
                .into_iter()
                .map(|v| (v.field, v.description))
                .collect()
        })
        .unwrap_or_default()
}

/// The error status of `result`, which must have `code`.
pub fn assert_code<T: std::fmt::Debug>(result: Result<T, Status>, code: Code) -> Status {
    match result {
        Err(s) if s.code() == code => s,
        other => panic!("expected {code:?}, got {other:?}"),
    }
}

/// Sends `guesses` logins as `username` at once, the i-th through
/// `clients[i % clients.len()]`, each with a wrong password but the one at
/// `right_at`, which has `password`. Answers the attempts that were checked
/// (not refused as throttled), by index, with their outcome.
pub async fn parallel_guesses(
    clients: &[proto::auth::auth_service_client::AuthServiceClient<tonic::transport::Channel>],
    username: &str,
    password: &str,
    right_at: usize,
    guesses: usize,
) -> Vec<(usize, Result<(), Code>)> {
    let mut sent = tokio::task::JoinSet::new();
    for i in 0..guesses {
        let mut client = clients[i % clients.len()].clone();
        let request = proto::auth::LoginRequest {
            username: username.to_owned(),
            password: if i == right_at {
                password
            } else {
                "wrong-guess"
            }
            .to_owned(),
            ..Default::default()
        };
        sent.spawn(async move { (i, client.login(request).await) });
    }
    let mut checked = vec![];
    while let Some(answer) = sent.join_next().await {
        match answer.expect("a guess task ends") {
            (_, Err(s)) if s.code() == Code::ResourceExhausted => {}
            (i, answer) => checked.push((i, answer.map(|_| ()).map_err(|s| s.code()))),
        }
    }
    checked
}

/// Declares each test case once per fixture: a module per fixture, a
/// `#[tokio::test]` per case in it, each calling `super::<case>(fixture)`
/// with what `<maker>("<case>")` gives (an `async fn(&str) -> Option<_>`;
/// `None` skips the case, say without PostgreSQL). A fixture given a
/// `["reason"]` marks its tests `#[ignore = "reason"]`.
///
/// ```ignore
/// platform::cases_on!([logs_in, logs_out];
///     sqlite => crate::helpers::sqlite;
///     postgres => crate::helpers::postgres;
/// );
/// ```
#[macro_export]
macro_rules! cases_on {
    ($cases:tt; $($module:ident => $maker:path $([$why:literal])?;)+) => {
        $( $crate::cases_on!(@module $module ($maker) [$($why)?] $cases); )+
    };
    (@module $module:ident $maker:tt $why:tt [$($case:ident),* $(,)?]) => {
        mod $module {
            $( $crate::cases_on!(@case $maker $why $case); )*
        }
    };
    (@case ($maker:path) [$($why:literal)?] $case:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        $(#[ignore = $why])?
        async fn $case() {
            if let Some(fixture) = $maker(stringify!($case)).await {
                super::$case(fixture).await;
            }
        }
    };
}
