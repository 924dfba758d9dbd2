//! Group-commit plumbing shared by the backends that write through one
//! writer: callers queue appends, the writer commits whatever is queued in
//! one transaction, then answers each caller.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot, watch};

use crate::append_rules::validate;
use crate::error::{EventStoreError, Result};
use crate::model::{AppendResult, ExpectedVersion, NewEvent};
use crate::stats::StoreStats;
use crate::subscription::advance;

/// The most appends one group commit takes.
pub(crate) const MAX_GROUP: usize = 1024;

/// One queued append.
pub(crate) struct AppendRequest {
    pub stream: String,
    pub expected: ExpectedVersion,
    pub events: Vec<NewEvent>,
    reply: oneshot::Sender<Result<AppendResult>>,
}

/// Where appends queue for the writer, and the store's counters.
pub(crate) struct Queue {
    sender: mpsc::UnboundedSender<AppendRequest>,
    pub stats: Arc<StoreStats>,
}

/// A new queue, and the end the writer takes appends from.
pub(crate) fn queue() -> (Queue, mpsc::UnboundedReceiver<AppendRequest>) {
    let (sender, receiver) = mpsc::unbounded_channel();
    let stats = Arc::default();
    (Queue { sender, stats }, receiver)
}

/// Checks an append, queues it, and waits for the writer's answer.
pub(crate) async fn submit(
    queue: &Queue,
    stream: &str,
    expected: ExpectedVersion,
    events: Vec<NewEvent>,
) -> Result<AppendResult> {
    validate(stream, &events)?;
    let queued = Instant::now();
    let (reply, answer) = oneshot::channel();
    queue
        .sender
        .send(AppendRequest {
            stream: stream.to_owned(),
            expected,
            events,
            reply,
        })
        .map_err(|_| EventStoreError::Closed)?;
    let answer = answer.await.map_err(|_| EventStoreError::Closed)?;
    queue.stats.append_took(queued.elapsed());
    answer
}

/// Answers every request of a finished group (emptying it), then raises
/// `head` to the last position committed, waking subscriptions.
pub(crate) fn answer(
    group: &mut Vec<AppendRequest>,
    results: Vec<Result<AppendResult>>,
    head: &watch::Sender<u64>,
    stats: &StoreStats,
) {
    committed(group, results, head, stats).send(None);
}

/// The answers of a committed group, to be sent once the commit may be
/// acknowledged.
pub(crate) struct Replies {
    replies: Vec<(oneshot::Sender<Result<AppendResult>>, Result<AppendResult>)>,
    /// The last position the group wrote (0 if none).
    pub last: u64,
}

impl Replies {
    /// Sends every answer; with `failed`, each successful append is
    /// answered with that error instead.
    pub fn send(self, failed: Option<EventStoreError>) {
        for (reply, result) in self.replies {
            let result = match (&failed, result) {
                (Some(e), Ok(_)) => Err(e.clone()),
                (_, result) => result,
            };
            // The caller may have gone away; the append stands regardless.
            let _ = reply.send(result);
        }
    }
}

/// Takes a finished group's answers (emptying it) and raises `head` to the
/// last position committed, waking subscriptions; the answers are sent
/// later, by [`Replies::send`].
pub(crate) fn committed(
    group: &mut Vec<AppendRequest>,
    results: Vec<Result<AppendResult>>,
    head: &watch::Sender<u64>,
    stats: &StoreStats,
) -> Replies {
    stats.group_committed(group.len());
    let mut last = 0;
    let replies = group
        .drain(..)
        .zip(results)
        .map(|(request, result)| {
            if let Ok(r) = &result {
                last = last.max(r.position);
            }
            (request.reply, result)
        })
        .collect();
    advance(head, last);
    Replies { replies, last }
}
