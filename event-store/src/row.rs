//! A stored row read back as a [`RecordedEvent`], by the SQL backends.

use chrono::{DateTime, Utc};
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::error::{EventStoreError, Result};
use crate::model::RecordedEvent;

/// Builds a [`RecordedEvent`] from a stored row, checking that its JSON is
/// still JSON (the file or table may have been written by something else).
#[allow(clippy::too_many_arguments)]
pub(crate) fn decode_row(
    position: u64,
    stream: String,
    version: u64,
    event_type: String,
    id: Uuid,
    data: String,
    metadata: String,
    recorded_at: Option<DateTime<Utc>>,
) -> Result<RecordedEvent> {
    let corrupt = |reason: String| EventStoreError::Corrupt { position, reason };
    Ok(RecordedEvent {
        position,
        stream,
        version,
        event_type,
        id,
        data: RawValue::from_string(data).map_err(|e| corrupt(format!("data: {e}")))?,
        metadata: RawValue::from_string(metadata).map_err(|e| corrupt(format!("metadata: {e}")))?,
        recorded_at: recorded_at.ok_or_else(|| corrupt("recorded_at out of range".into()))?,
    })
}
