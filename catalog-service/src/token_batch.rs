//! Token checks from concurrent calls, sent to auth-service together.
//!
//! Every call the catalog serves checks its caller's token with
//! auth-service. One `Authenticate` per call costs a round trip, an HTTP/2
//! frame each way and a read on auth's side per call; under load that hop
//! was a third of a three-process GET. So checks go in batches
//! (`AuthenticateMany`), as etcd batches its ReadIndex:
//!
//! - A check joins the waiting list. If fewer than [`MAX_RUNNING`] batches
//!   are under way, it starts one, which takes the whole list (at most
//!   [`MAX_BATCH`]) and sends it; else it waits for a running batch to take
//!   it when that batch's call returns. An idle catalog sends each check at
//!   once, as before.
//! - Linearizable as a single call: a batch's call starts after every
//!   check in it was asked, and auth-service answers it with one
//!   linearizable read. So a token revoked (anywhere) before a check began
//!   is refused.
//! - A token asked by several calls of one batch is sent once.
//! - A batch's call is traced as a child of its first check's call;
//!   auth-service's metrics count batches (`AuthenticateMany`), and the
//!   catalog's `authenticate` stage still times each check.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;
use tracing::Instrument;

/// The most checks one call carries (auth-service takes up to 512).
pub const MAX_BATCH: usize = 256;

/// The most batches under way at once: with them all waiting for answers,
/// new checks gather for the next.
pub const MAX_RUNNING: usize = 4;

/// A token's user id if it is live, `None` if not; `Err` if auth-service
/// could not say (why, for the log).
pub type Answer = Result<Option<i64>, String>;

/// What sends a batch: the answers for `tokens`, one each, in order.
pub type SendBatch = Arc<
    dyn Fn(Vec<String>) -> Pin<Box<dyn Future<Output = Result<Vec<Option<i64>>, String>> + Send>>
        + Send
        + Sync,
>;

/// Checks gathered into batches (see the module's documentation).
pub struct Batches {
    send: SendBatch,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    waiting: Vec<Waiting>,
    running: usize,
}

/// A check not yet sent: its token, where its answer goes, and the span
/// of the call it is for.
struct Waiting {
    token: String,
    answer: oneshot::Sender<Answer>,
    span: tracing::Span,
}

impl Batches {
    /// Batches sent by `send`.
    pub fn new(send: SendBatch) -> Arc<Self> {
        Arc::new(Self {
            send,
            state: Mutex::default(),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whose `token` is, by a batch that starts after this call.
    pub async fn check(self: &Arc<Self>, token: &str) -> Answer {
        let (answer, answered) = oneshot::channel();
        let start = {
            let mut state = self.state();
            state.waiting.push(Waiting {
                token: token.to_owned(),
                answer,
                span: tracing::Span::current(),
            });
            let start = state.running < MAX_RUNNING;
            state.running += usize::from(start);
            start
        };
        if start {
            tokio::spawn(self.clone().run());
        }
        answered
            .await
            .unwrap_or_else(|_| Err("the token check was dropped".into()))
    }

    /// Sends batches until nobody waits.
    async fn run(self: Arc<Self>) {
        // Counts this task out if it ends early (a panic, a cancelled
        // runtime); disarmed when it ends by itself.
        struct Running<'a>(Option<&'a Batches>);
        impl Drop for Running<'_> {
            fn drop(&mut self) {
                if let Some(batches) = self.0 {
                    batches.state().running -= 1;
                }
            }
        }
        let mut running = Running(Some(&self));
        loop {
            let batch: Vec<_> = {
                let mut state = self.state();
                if state.waiting.is_empty() {
                    // Counted out under the same lock that saw nobody
                    // waiting: a check that comes after sees this task
                    // gone and starts its own.
                    state.running -= 1;
                    running.0 = None;
                    return;
                }
                let n = state.waiting.len().min(MAX_BATCH);
                state.waiting.drain(..n).collect()
            };
            let mut tokens = Vec::new();
            let mut seen: HashMap<&str, usize> = HashMap::new();
            let slots: Vec<usize> = batch
                .iter()
                .map(|waiting| {
                    *seen.entry(&waiting.token).or_insert_with(|| {
                        tokens.push(waiting.token.clone());
                        tokens.len() - 1
                    })
                })
                .collect();
            let asked = tokens.len();
            let span = batch[0].span.clone();
            let answers = match (self.send)(tokens).instrument(span).await {
                Ok(ids) if ids.len() == asked => Ok(ids),
                Ok(ids) => Err(format!(
                    "auth-service answered {} of {asked} tokens",
                    ids.len()
                )),
                Err(e) => Err(e),
            };
            for (waiting, slot) in batch.into_iter().zip(slots) {
                let answer = answers.as_ref().map(|ids| ids[slot]).map_err(Clone::clone);
                let _ = waiting.answer.send(answer);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::sync::Notify;

    /// A fake auth-service: every token `"u<n>"` is user n's, others are
    /// not live; each batch is recorded, and held until `release`.
    struct Fake {
        batches: Mutex<Vec<Vec<String>>>,
        release: Notify,
        hold: bool,
    }

    fn batches(hold: bool) -> (Arc<Fake>, Arc<Batches>) {
        let fake = Arc::new(Fake {
            batches: Mutex::default(),
            release: Notify::new(),
            hold,
        });
        let f = fake.clone();
        let send: SendBatch = Arc::new(move |tokens: Vec<String>| {
            let f = f.clone();
            Box::pin(async move {
                f.batches.lock().unwrap().push(tokens.clone());
                if f.hold {
                    f.release.notified().await;
                }
                if tokens.iter().any(|t| t == "fail") {
                    return Err("auth is down".to_owned());
                }
                Ok(tokens
                    .iter()
                    .map(|t| t.strip_prefix('u').and_then(|n| n.parse().ok()))
                    .collect())
            })
        });
        (fake, Batches::new(send))
    }

    async fn settle() {
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn an_idle_check_is_sent_at_once_and_answered() {
        let (fake, b) = batches(false);
        assert_eq!(b.check("u7").await, Ok(Some(7)));
        assert_eq!(b.check("nobody").await, Ok(None));
        assert_eq!(fake.batches.lock().unwrap().len(), 2);
        assert_eq!(b.state().running, 0);
    }

    fn spawn_check(b: &Arc<Batches>, token: String) -> tokio::task::JoinHandle<Answer> {
        let b = b.clone();
        tokio::spawn(async move { b.check(&token).await })
    }

    /// Releases held batches until `checks` are all answered.
    async fn answers(fake: &Fake, checks: Vec<tokio::task::JoinHandle<Answer>>) -> Vec<Answer> {
        let all = futures_util::future::join_all(checks);
        tokio::pin!(all);
        for _ in 0..1000 {
            fake.release.notify_waiters();
            if let Ok(done) = tokio::time::timeout(Duration::from_millis(5), &mut all).await {
                return done.into_iter().map(Result::unwrap).collect();
            }
        }
        panic!("checks not answered");
    }

    #[tokio::test]
    async fn checks_wait_for_a_batch_that_starts_after_them() {
        let (fake, b) = batches(true);
        // MAX_RUNNING batches sent, one check each, held by the fake.
        let mut first = Vec::new();
        for i in 0..MAX_RUNNING {
            first.push(spawn_check(&b, format!("u{i}")));
            settle().await;
        }
        assert_eq!(fake.batches.lock().unwrap().len(), MAX_RUNNING);
        // These come while all are under way: none joins a batch already
        // sent, and no new batch starts until one returns.
        let later: Vec<_> = ["u10", "u11", "u10", "x"]
            .into_iter()
            .map(|t| spawn_check(&b, t.to_owned()))
            .collect();
        settle().await;
        assert_eq!(fake.batches.lock().unwrap().len(), MAX_RUNNING);
        let first = answers(&fake, first).await;
        let expected: Vec<Answer> = (0..MAX_RUNNING)
            .map(|i| Ok(Some(i64::try_from(i).unwrap())))
            .collect();
        assert_eq!(first, expected);
        let later = answers(&fake, later).await;
        assert_eq!(later, [Ok(Some(10)), Ok(Some(11)), Ok(Some(10)), Ok(None)]);
        // One batch took them all, each token once.
        let sent = fake.batches.lock().unwrap().clone();
        assert_eq!(sent.len(), MAX_RUNNING + 1, "{sent:?}");
        assert_eq!(sent[MAX_RUNNING], ["u10", "u11", "x"]);
        settle().await;
        assert_eq!(b.state().running, 0);
    }

    #[tokio::test]
    async fn a_failed_batch_fails_each_of_its_checks_and_no_other() {
        let (_, b) = batches(false);
        assert_eq!(b.check("fail").await, Err("auth is down".to_owned()));
        assert_eq!(b.check("u1").await, Ok(Some(1)));
    }

    #[tokio::test]
    async fn a_short_answer_is_an_error_not_a_panic() {
        let send: SendBatch = Arc::new(|_| Box::pin(async { Ok(vec![]) }));
        let b = Batches::new(send);
        let answer = b.check("u1").await;
        assert_eq!(
            answer,
            Err("auth-service answered 0 of 1 tokens".to_owned())
        );
    }

    #[tokio::test]
    async fn a_batch_carries_at_most_max_batch_checks() {
        let (fake, b) = batches(true);
        let n = MAX_RUNNING + 2 * MAX_BATCH;
        let checks: Vec<_> = (0..n).map(|i| spawn_check(&b, format!("u{i}"))).collect();
        let got = answers(&fake, checks).await;
        let expected: Vec<Answer> = (0..n)
            .map(|i| Ok(Some(i64::try_from(i).unwrap())))
            .collect();
        assert_eq!(got, expected);
        let sent = fake.batches.lock().unwrap().clone();
        assert!(sent.iter().all(|b| b.len() <= MAX_BATCH), "{sent:?}");
        assert!(sent.len() < n / 2, "{} batches for {n} checks", sent.len());
        assert_eq!(sent.iter().map(Vec::len).sum::<usize>(), n);
    }
}
