//! What the read-model tests share: a one-event stream of ticks.

use event_store::{Event, EventStore, ExpectedVersion};
use serde::{Deserialize, Serialize};

/// The only event of the `ticks` stream.
#[derive(Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum Counted {
    Ticked { n: u64 },
}

impl Event for Counted {}

/// Appends tick `n` to `store`.
pub async fn tick(store: &dyn EventStore, n: u64) {
    let event = Counted::Ticked { n }.to_new_event().expect("encode");
    store
        .append("ticks", ExpectedVersion::Any, vec![event])
        .await
        .expect("append");
}
