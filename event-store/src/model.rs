use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Serialize, de::DeserializeOwned};
use serde_json::value::RawValue;
use uuid::Uuid;

/// What the caller believes the stream's version is before an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExpectedVersion {
    /// No check: append whatever the stream holds.
    Any,
    /// The stream must not exist yet (used for uniqueness: one winner).
    NoStream,
    /// The stream's last event must have exactly this version.
    Exact(u64),
}

impl fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Any => f.write_str("any"),
            Self::NoStream => f.write_str("no stream"),
            Self::Exact(v) => write!(f, "version {v}"),
        }
    }
}

/// Where a stream actually stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CurrentVersion {
    /// The stream has no events.
    NoStream,
    /// The version of the stream's last event.
    At(u64),
}

impl CurrentVersion {
    /// The version the stream's next event gets.
    pub fn next(self) -> u64 {
        match self {
            Self::NoStream => 0,
            Self::At(v) => v + 1,
        }
    }

    /// What to expect of the stream to append after exactly this version.
    pub fn expected(self) -> ExpectedVersion {
        match self {
            Self::NoStream => ExpectedVersion::NoStream,
            Self::At(v) => ExpectedVersion::Exact(v),
        }
    }

    /// Whether an append expecting `expected` may go ahead.
    pub fn satisfies(self, expected: ExpectedVersion) -> bool {
        match (expected, self) {
            (ExpectedVersion::Any, _) => true,
            (ExpectedVersion::NoStream, Self::NoStream) => true,
            (ExpectedVersion::Exact(e), Self::At(v)) => e == v,
            _ => false,
        }
    }

    pub(crate) fn from_last(last: Option<u64>) -> Self {
        last.map_or(Self::NoStream, Self::At)
    }
}

impl fmt::Display for CurrentVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoStream => f.write_str("no stream"),
            Self::At(v) => write!(f, "version {v}"),
        }
    }
}

/// An event to append. Its `id` makes retries idempotent: generate it once,
/// before the first attempt, and reuse it on every retry.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// Unique across the whole store.
    pub id: Uuid,
    /// A stable name such as `MovieRated`.
    pub event_type: String,
    /// The payload, stored byte for byte.
    pub data: Box<RawValue>,
    /// Free-form metadata (correlation ids...), stored byte for byte.
    pub metadata: Box<RawValue>,
}

impl NewEvent {
    /// An event with a fresh random id, `data` serialized to JSON and empty (`{}`) metadata.
    pub fn new(event_type: impl Into<String>, data: &impl Serialize) -> serde_json::Result<Self> {
        Ok(Self {
            id: Uuid::new_v4(),
            event_type: event_type.into(),
            data: serde_json::value::to_raw_value(data)?,
            metadata: empty_object(),
        })
    }
}

pub(crate) fn empty_object() -> Box<RawValue> {
    RawValue::from_string("{}".to_owned()).expect("`{}` is valid JSON")
}

/// An event as stored.
#[derive(Debug, Clone)]
pub struct RecordedEvent {
    /// Position in the global feed (starts at 1, strictly increasing in commit order).
    pub position: u64,
    /// The stream it belongs to.
    pub stream: String,
    /// Its version within the stream (starts at 0, contiguous).
    pub version: u64,
    /// The name it was appended with.
    pub event_type: String,
    /// The id it was appended with.
    pub id: Uuid,
    /// The payload, byte for byte as appended.
    pub data: Box<RawValue>,
    /// The metadata, byte for byte as appended.
    pub metadata: Box<RawValue>,
    /// When the store committed it.
    pub recorded_at: DateTime<Utc>,
}

impl RecordedEvent {
    /// Deserializes the payload.
    pub fn decode<T: DeserializeOwned>(&self) -> serde_json::Result<T> {
        serde_json::from_str(self.data.get())
    }
}

/// What a successful append did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendResult {
    /// The version of the stream's last event after the append.
    pub stream_version: u64,
    /// The global position of the last event appended.
    pub position: u64,
}
