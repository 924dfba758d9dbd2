//! Copying one store into another, engine to engine: every event with its
//! position, stream version, id, type, data, metadata and time, in order,
//! in batches through [`EventStore::import`], with flat memory.
//!
//! - **Resumable.** Each batch is one transaction on the target, so after a
//!   crash or a kill the target holds a prefix of the source. Running the
//!   copy again checks that it is one (its first and last events are the
//!   source's, by id, at the same positions) and goes on after it.
//! - **Refuses other data.** A target that is not empty and not such a
//!   prefix is left alone: [`CopyError::TargetHoldsOtherData`].
//! - **Transforms on the way.** Each event goes through a [`Transform`]
//!   before it is written: [`Upcasting`] rewrites old versions into the
//!   current shapes; a hand-written one renames streams or rewrites fields.
//!
//! The copy takes the source's head when it starts and copies up to it: a
//! source written meanwhile (stop the services first) is caught by the
//! caller's verification, and a second run copies the rest.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::error::EventStoreError;
use crate::model::RecordedEvent;
use crate::store::EventStore;
use crate::upcast::{self, Upcast};

/// How many events one batch (one read, one target transaction) holds.
pub const BATCH: usize = 5_000;

/// Batches read ahead of the one being written.
const READ_AHEAD: usize = 2;

/// A rewrite of each event on its way to the target.
///
/// It must keep the event's id and position (resuming matches them), and
/// keep each stream's versions contiguous (a renamed stream keeps its
/// versions; two streams cannot be merged). What the read models make of
/// the events should not change: the copy's caller verifies that.
#[async_trait::async_trait]
pub trait Transform: Send {
    /// Runs before the events of a batch are transformed (and before the
    /// batch is written): what needs I/O for them, such as keys stored
    /// before anything sealed under them is.
    async fn prepare(&mut self, batch: &[RecordedEvent]) -> Result<(), String> {
        let _ = batch;
        Ok(())
    }

    /// The event as the target should hold it, or why it cannot be copied.
    fn apply(&mut self, event: RecordedEvent) -> Result<RecordedEvent, String>;
}

/// Copies every event as it is.
#[derive(Debug, Default, Clone, Copy)]
pub struct AsIs;

#[async_trait::async_trait]
impl Transform for AsIs {
    fn apply(&mut self, event: RecordedEvent) -> Result<RecordedEvent, String> {
        Ok(event)
    }
}

/// Rewrites every event of an older version into its current type and
/// shape (by the service's [`crate::Event::upcasts`]): after such a copy,
/// no reader of the target runs an upcast.
#[derive(Debug, Clone, Copy)]
pub struct Upcasting(pub &'static [Upcast]);

#[async_trait::async_trait]
impl Transform for Upcasting {
    fn apply(&mut self, mut event: RecordedEvent) -> Result<RecordedEvent, String> {
        if !upcast::needed(self.0, &event.event_type) {
            return Ok(event);
        }
        let fields = serde_json::from_str(event.data.get()).map_err(|e| e.to_string())?;
        let (event_type, fields) = upcast::to_current(self.0, &event.event_type, fields)?;
        event.data = serde_json::value::to_raw_value(&fields).map_err(|e| e.to_string())?;
        event.event_type = event_type;
        Ok(event)
    }
}

/// Two transforms, one after the other.
#[async_trait::async_trait]
impl<A: Transform, B: Transform> Transform for (A, B) {
    async fn prepare(&mut self, batch: &[RecordedEvent]) -> Result<(), String> {
        self.0.prepare(batch).await?;
        self.1.prepare(batch).await
    }

    fn apply(&mut self, event: RecordedEvent) -> Result<RecordedEvent, String> {
        self.1.apply(self.0.apply(event)?)
    }
}

/// Where a copy stands, after each batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Events written by this run.
    pub copied: u64,
    /// The position of the last event written (the target's head).
    pub position: u64,
    /// Where the target stood when this run started.
    pub resumed_from: u64,
    /// The source's head when this run started: the copy ends there.
    pub until: u64,
    /// Since this run started.
    pub elapsed: Duration,
}

impl Progress {
    /// Events written per second by this run.
    pub fn rate(&self) -> f64 {
        self.copied as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// How much of the way (by position) is done, 0 to 1.
    pub fn done(&self) -> f64 {
        let (from, to) = (self.resumed_from, self.until);
        if to <= from {
            return 1.0;
        }
        (self.position.saturating_sub(from)) as f64 / (to - from) as f64
    }

    /// The time left at this run's pace (by position), if it can be told.
    pub fn eta(&self) -> Option<Duration> {
        let done = self.done();
        (done > 0.0).then(|| self.elapsed.mul_f64((1.0 - done) / done))
    }
}

/// Why a copy stopped.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// The target holds events that are not a prefix of the source's.
    #[error("the target store holds other data: {0}; copy into an empty store")]
    TargetHoldsOtherData(String),
    /// An event could not be transformed.
    #[error("cannot copy the event at position {position}: {reason}")]
    Transform {
        /// Its position in the source.
        position: u64,
        /// What the transform said.
        reason: String,
    },
    /// Either store failed.
    #[error(transparent)]
    Store(#[from] EventStoreError),
}

/// The event of `store` at exactly `position`, if any.
async fn at(store: &dyn EventStore, position: u64) -> Result<Option<RecordedEvent>, CopyError> {
    let found = store.read_all(position, 1).await?.pop();
    Ok(found.filter(|e| e.position == position))
}

/// The position a copy into `to` resumes after: 0 for an empty target, its
/// head if it holds a prefix of `from`; otherwise it holds other data.
pub async fn resume_point(from: &dyn EventStore, to: &dyn EventStore) -> Result<u64, CopyError> {
    let Some(first) = to.read_all(0, 1).await?.pop() else {
        return Ok(0);
    };
    let head = to.head_position().await?;
    for position in [first.position, head] {
        let (ours, theirs) = (at(from, position).await?, at(to, position).await?);
        match (ours, theirs) {
            (Some(a), Some(b)) if a.id == b.id => {}
            (None, _) => {
                return Err(CopyError::TargetHoldsOtherData(format!(
                    "it has an event at position {position}, where the source has none"
                )));
            }
            _ => {
                return Err(CopyError::TargetHoldsOtherData(format!(
                    "its event at position {position} is not the source's"
                )));
            }
        }
    }
    Ok(head)
}

/// Copies every event of `from` that `to` lacks, through `transform`, up to
/// the source's head at the start; `progress` hears of each batch written.
/// Returns the last progress (nothing copied if the target was complete).
pub async fn copy(
    from: Arc<dyn EventStore>,
    to: &dyn EventStore,
    transform: &mut dyn Transform,
    progress: &mut (dyn FnMut(&Progress) + Send),
) -> Result<Progress, CopyError> {
    let started = Instant::now();
    let resumed_from = resume_point(&*from, to).await?;
    let until = from.head_position().await?;
    let mut state = Progress {
        copied: 0,
        position: resumed_from,
        resumed_from,
        until,
        elapsed: Duration::ZERO,
    };
    let (tx, mut rx) = mpsc::channel(READ_AHEAD);
    let reader = tokio::spawn(read_ahead(from, resumed_from + 1, until, tx));
    while let Some(batch) = rx.recv().await {
        let batch = batch?;
        if let Err(reason) = transform.prepare(&batch).await {
            let position = batch.first().map_or(0, |e| e.position);
            return Err(CopyError::Transform { position, reason });
        }
        let mut out = Vec::with_capacity(batch.len());
        for event in batch {
            let position = event.position;
            out.push(
                transform
                    .apply(event)
                    .map_err(|reason| CopyError::Transform { position, reason })?,
            );
        }
        state.copied += out.len() as u64;
        state.position = to.import(out).await?;
        state.elapsed = started.elapsed();
        progress(&state);
    }
    reader.abort();
    state.elapsed = started.elapsed();
    Ok(state)
}

/// Reads `from` in batches from `start` up to `until` (inclusive) into `tx`.
async fn read_ahead(
    from: Arc<dyn EventStore>,
    mut start: u64,
    until: u64,
    tx: mpsc::Sender<Result<Vec<RecordedEvent>, EventStoreError>>,
) {
    while start <= until {
        let batch = match from.read_all(start, BATCH).await {
            Ok(mut batch) => {
                batch.retain(|e| e.position <= until);
                batch
            }
            Err(e) => {
                let _ = tx.send(Err(e)).await;
                return;
            }
        };
        let Some(last) = batch.last() else { return };
        start = last.position + 1;
        if tx.send(Ok(batch)).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use serde_json::json;
    use serde_json::value::RawValue;
    use uuid::Uuid;

    fn recorded(event_type: &str, data: serde_json::Value) -> RecordedEvent {
        RecordedEvent {
            position: 7,
            stream: "s".into(),
            version: 0,
            event_type: event_type.into(),
            id: Uuid::new_v4(),
            data: serde_json::value::to_raw_value(&data).unwrap(),
            metadata: RawValue::from_string("{}".into()).unwrap(),
            recorded_at: Utc::now(),
        }
    }

    const RENAME: &[Upcast] = &[Upcast {
        from: "Old",
        to: "Old.v2",
        apply: |mut m| {
            let v = m.remove("a").ok_or("no a")?;
            m.insert("b".into(), v);
            Ok(m)
        },
    }];

    #[test]
    fn upcasting_rewrites_an_old_event_and_keeps_where_it_is() {
        let old = recorded("Old", json!({"type": "Old", "a": 1}));
        let (id, position) = (old.id, old.position);
        let new = Upcasting(RENAME).apply(old).unwrap();
        assert_eq!(new.event_type, "Old.v2");
        assert_eq!(new.data.get(), r#"{"b":1,"type":"Old.v2"}"#);
        assert_eq!((new.id, new.position), (id, position));
    }

    #[test]
    fn upcasting_leaves_a_current_event_byte_for_byte() {
        let current = recorded("Other", json!({"type": "Other", "z": 1, "a": 2}));
        let bytes = current.data.get().to_owned();
        let out = Upcasting(RENAME).apply(current).unwrap();
        assert_eq!(out.data.get(), bytes);
    }

    #[test]
    fn an_event_the_upcast_cannot_read_is_an_error() {
        let broken = recorded("Old", json!({"type": "Old"}));
        assert!(Upcasting(RENAME).apply(broken).is_err());
    }

    #[test]
    fn progress_tells_the_share_done_and_the_time_left() {
        let p = Progress {
            copied: 50,
            position: 150,
            resumed_from: 100,
            until: 200,
            elapsed: Duration::from_secs(10),
        };
        assert_eq!(p.rate(), 5.0);
        assert_eq!(p.done(), 0.5);
        assert_eq!(p.eta(), Some(Duration::from_secs(10)));
    }
}
