//! Integer ids handed out by the store itself: positive, unique, increasing
//! in allocation order, never reused, safe across processes.

use serde::Serialize;
use tokio::sync::Mutex;

use crate::{CurrentVersion, EventStore, EventStoreError, ExpectedVersion, NewEvent, Result};

/// A sequence of ids backed by one stream: id `n` is the event at version
/// `n - 1`, appended with `Exact` so that two allocators (in this or another
/// process) can never take the same id. An id whose use then fails is simply
/// skipped: ids may have gaps, never repeats.
pub struct IdSequence {
    stream: String,
    event_type: &'static str,
    /// The last version this process knows; allocation here is serialized,
    /// and a stale value only costs one refused append.
    last: Mutex<CurrentVersion>,
}

#[derive(Serialize)]
struct Allocated {
    id: i64,
}

impl IdSequence {
    /// A sequence in `stream`, recording each id as an `event_type` event.
    pub fn new(stream: impl Into<String>, event_type: &'static str) -> Self {
        Self {
            stream: stream.into(),
            event_type,
            last: Mutex::new(CurrentVersion::NoStream),
        }
    }

    /// The stream the sequence lives in (read models can skip it).
    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// Takes the next id.
    pub async fn next(&self, store: &dyn EventStore) -> Result<i64> {
        let mut last = self.last.lock().await;
        loop {
            let version = last.next();
            let id = version as i64 + 1;
            let expected = match *last {
                CurrentVersion::NoStream => ExpectedVersion::NoStream,
                CurrentVersion::At(v) => ExpectedVersion::Exact(v),
            };
            let event =
                NewEvent::new(self.event_type, &Allocated { id }).expect("an id always serializes");
            match store.append(&self.stream, expected, vec![event]).await {
                Ok(_) => {
                    *last = CurrentVersion::At(version);
                    return Ok(id);
                }
                // Another allocator went first: `actual` says where to try next.
                Err(EventStoreError::WrongExpectedVersion { actual, .. }) => *last = actual,
                Err(e) => return Err(e),
            }
        }
    }
}
