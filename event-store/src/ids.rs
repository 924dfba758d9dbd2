//! Integer ids handed out by the store itself: positive, unique, increasing
//! in allocation order, never reused, safe across processes.

use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::error::{EventStoreError, Result};
use crate::model::{CurrentVersion, NewEvent, RecordedEvent};
use crate::store::EventStore;

/// Declares an id type: a newtype over the `i64` an [`IdSequence`] hands
/// out, stored as the bare number (`#[serde(transparent)]`), so events keep
/// their shape, and two kinds of id cannot be swapped for each other.
///
/// ```
/// event_store::id_type! {
///     /// A movie's id.
///     pub struct MovieId;
/// }
/// assert_eq!(MovieId(7).to_string(), "7");
/// ```
#[macro_export]
macro_rules! id_type {
    ($(#[$meta:meta])* $vis:vis struct $name:ident;) => {
        $(#[$meta])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default,
            serde::Serialize, serde::Deserialize,
        )]
        #[serde(transparent)]
        $vis struct $name(pub i64);

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                ::std::fmt::Display::fmt(&self.0, f)
            }
        }

        impl ::std::convert::From<i64> for $name {
            fn from(id: i64) -> Self {
                Self(id)
            }
        }

        impl ::std::convert::From<$name> for i64 {
            fn from(id: $name) -> i64 {
                id.0
            }
        }
    };
}

/// The end of every allocation event's type (`MovieIdAllocated`...).
const ALLOCATED: &str = "IdAllocated";

/// Whether `event` is an id allocation: bookkeeping, not a domain event, so
/// read models and event feeds pass over it.
pub fn is_allocation(event: &RecordedEvent) -> bool {
    event.event_type.ends_with(ALLOCATED)
}

/// A sequence of ids backed by one stream. Each event allocates a range
/// (`first..first + count`) and is appended with `Exact`, so two allocators
/// (in this or another process) can never take the same id. An id whose use
/// then fails is simply skipped: ids may have gaps, never repeats.
///
/// Each append also reserves [`RESERVE`] ids ahead, which the next callers
/// get at once, without a write: a steady stream of new ids costs one
/// durable write per [`RESERVE`] of them, not one in front of every
/// command. Ids reserved but never handed out (the process stopped) are
/// gaps. Several processes reserve ranges of their own, so their ids
/// interleave: an id tells no commit order across processes.
///
/// When the reserve is used up, callers are served in batches: whoever
/// holds the turn takes every request waiting and allocates them all (and
/// the next reserve) with one append.
pub struct IdSequence {
    inner: Arc<Inner>,
}

struct Inner {
    stream: String,
    event_type: String,
    /// Requests waiting for the next batch.
    waiting: Mutex<Vec<oneshot::Sender<Result<i64>>>>,
    /// Ids allocated ahead and not handed out yet (refilled under `turn`
    /// only, when empty).
    spare: Mutex<std::ops::Range<i64>>,
    /// Whose turn it is to allocate, and what this process last knew of the
    /// stream (a stale value costs one refused append and one read).
    turn: tokio::sync::Mutex<Known>,
}

#[derive(Clone, Copy)]
struct Known {
    version: CurrentVersion,
    last_id: i64,
}

/// How many ids each allocation reserves beyond the ones asked for.
pub const RESERVE: i64 = 64;

/// The payload of an allocation event.
#[derive(Serialize, Deserialize)]
struct Allocated {
    first: i64,
    count: i64,
}

impl IdSequence {
    /// A sequence of `kind` ids in `stream`, recording each allocation as a
    /// `{kind}IdAllocated` event.
    pub fn new(stream: impl Into<String>, kind: &str) -> Self {
        Self {
            inner: Arc::new(Inner {
                stream: stream.into(),
                event_type: format!("{kind}{ALLOCATED}"),
                waiting: Mutex::new(Vec::new()),
                spare: Mutex::new(0..0),
                turn: tokio::sync::Mutex::new(Known {
                    version: CurrentVersion::NoStream,
                    last_id: 0,
                }),
            }),
        }
    }

    /// Takes the next id.
    pub async fn next(&self, store: &Arc<dyn EventStore>) -> Result<i64> {
        if let Some(id) = self.inner.take_spare() {
            return Ok(id);
        }
        let (reply, answer) = oneshot::channel();
        self.inner
            .waiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(reply);
        // The batch runs in a task of its own: a caller that goes away (a
        // cancelled request) must not strand the others it was serving.
        let (inner, store) = (self.inner.clone(), store.clone());
        let batch = tokio::spawn(async move {
            let mut known = inner.turn.lock().await;
            let waiting =
                std::mem::take(&mut *inner.waiting.lock().unwrap_or_else(|p| p.into_inner()));
            // What the last turn reserved serves first, in order of asking.
            let mut batch = Vec::new();
            for reply in waiting {
                match inner.take_spare() {
                    Some(id) => drop(reply.send(Ok(id))),
                    None => batch.push(reply),
                }
            }
            if batch.is_empty() {
                return; // served by an earlier turn, or by the reserve
            }
            let asked = batch.len() as i64;
            match inner
                .allocate(&mut known, store.as_ref(), asked + RESERVE)
                .await
            {
                Ok(first) => {
                    for (i, reply) in batch.into_iter().enumerate() {
                        let _ = reply.send(Ok(first + i as i64));
                    }
                    *inner.spare.lock().unwrap_or_else(|p| p.into_inner()) =
                        first + asked..first + asked + RESERVE;
                }
                Err(e) => {
                    for reply in batch {
                        let _ = reply.send(Err(e.clone()));
                    }
                }
            }
        });
        batch
            .await
            .map_err(|e| EventStoreError::backend("ids", e))?;
        answer.await.map_err(|_| EventStoreError::Closed)?
    }
}

impl Inner {
    /// The next reserved id, if any is left.
    fn take_spare(&self) -> Option<i64> {
        let mut spare = self.spare.lock().unwrap_or_else(|p| p.into_inner());
        spare.next()
    }

    /// Appends one allocation of `count` ids; returns the first.
    async fn allocate(&self, known: &mut Known, store: &dyn EventStore, count: i64) -> Result<i64> {
        loop {
            let first = known.last_id + 1;
            let expected = known.version.expected();
            let event = NewEvent::new(&*self.event_type, &Allocated { first, count })
                .expect("an allocation always serializes");
            match store.append(&self.stream, expected, vec![event]).await {
                Ok(r) => {
                    *known = Known {
                        version: CurrentVersion::At(r.stream_version),
                        last_id: first + count - 1,
                    };
                    return Ok(first);
                }
                // Another allocator went first: learn where the stream stands.
                Err(EventStoreError::WrongExpectedVersion { actual, .. }) => {
                    *known = self.read_known(store, actual).await?;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn read_known(&self, store: &dyn EventStore, at: CurrentVersion) -> Result<Known> {
        let CurrentVersion::At(version) = at else {
            return Ok(Known {
                version: at,
                last_id: 0,
            });
        };
        let events = store.read_stream(&self.stream, version).await?;
        let last = events.last().ok_or_else(|| EventStoreError::Corrupt {
            position: 0,
            reason: format!("{} has no event at version {version}", self.stream),
        })?;
        let a: Allocated = last.decode().map_err(|e| EventStoreError::Corrupt {
            position: last.position,
            reason: e.to_string(),
        })?;
        Ok(Known {
            version: CurrentVersion::At(last.version),
            last_id: a.first + a.count - 1,
        })
    }
}
