//! Catch-up-then-live subscriptions, shared by every backend that can tell
//! when its head moves.

use std::collections::VecDeque;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::watch;

use crate::model::RecordedEvent;
use crate::store::{EventStore, EventStream};

/// How many events a subscription reads per query while catching up.
const BATCH: usize = 1024;

/// How often a caught-up subscription looks for new events even when it was
/// not woken (events written by another process that sent no notification).
pub const SUBSCRIPTION_POLL_INTERVAL: Duration = Duration::from_millis(500);

/// Follows `store`'s global feed from `from`: reads in batches until caught
/// up, then waits for `head` to pass the last position seen.
///
/// Correctness rests on the backend's guarantee that positions become visible
/// in increasing order, so reading `position >= next` never skips an event.
pub(crate) fn catch_up_then_live<S>(store: S, from: u64, head: watch::Receiver<u64>) -> EventStream
where
    S: EventStore + Clone,
{
    struct State<S> {
        /// Counted as open while the stream lives.
        _subscriber: Option<crate::stats::Subscriber>,
        store: S,
        next: u64,
        buffer: VecDeque<RecordedEvent>,
        head: watch::Receiver<u64>,
        failed: bool,
    }
    let state = State {
        _subscriber: store.stats().map(|s| s.subscriber()),
        store,
        next: from.max(1),
        buffer: VecDeque::new(),
        head,
        failed: false,
    };
    futures_util::stream::unfold(state, |mut st| async move {
        loop {
            if st.failed {
                return None;
            }
            if let Some(event) = st.buffer.pop_front() {
                return Some((Ok(event), st));
            }
            // Marked seen before the read: a head raised after it wakes the
            // wait below, whatever it says.
            st.head.borrow_and_update();
            match st.store.read_all(st.next, BATCH).await {
                Ok(batch) if batch.is_empty() => {
                    // Caught up: wait for the head to move (or the poll).
                    // Not for a head past `next`: a head said to be further
                    // than what can be read (a forged notification, on a
                    // backend that trusted one) would make this spin.
                    let _ =
                        tokio::time::timeout(SUBSCRIPTION_POLL_INTERVAL, st.head.changed()).await;
                    if st.head.has_changed().is_err() {
                        // The store is gone: its writer dropped the sender.
                        tokio::time::sleep(SUBSCRIPTION_POLL_INTERVAL).await;
                    }
                }
                Ok(batch) => {
                    st.next = batch.last().map_or(st.next, |e| e.position + 1);
                    st.buffer.extend(batch);
                }
                Err(e) => {
                    st.failed = true;
                    return Some((Err(e), st));
                }
            }
        }
    })
    .boxed()
}

/// Raises `head` to `position` if that is further than it stands.
pub(crate) fn advance(head: &watch::Sender<u64>, position: u64) {
    head.send_if_modified(|h| {
        if position > *h {
            *h = position;
            true
        } else {
            false
        }
    });
}
