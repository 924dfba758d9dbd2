//! Domain events: each aggregate's events are one enum, tagged by serde, and
//! the tag is the stored event type. Implementing [`Event`] is one line;
//! encoding (with the type name) and decoding come with it, so no service
//! spells an event type string or builds a [`NewEvent`] by hand.

use std::borrow::Cow;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{EventStoreError, Result};
use crate::model::{NewEvent, RecordedEvent};
use crate::upcast::{self, Upcast};

/// An enum of domain events with `#[serde(tag = "type")]`: the tag (the
/// variant's name unless renamed) is the stored event type. A stored type
/// never changes shape: a new shape is a new version (`<Name>.v<N>`, see
/// [`crate::upcast`]), and [`Event::upcasts`] carries old events to it.
pub trait Event: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// How older stored types become the current ones (none by default).
    fn upcasts() -> &'static [Upcast] {
        &[]
    }

    /// The event ready to append, with a fresh id; its type is its serde tag,
    /// its metadata the current trace context (see [`crate::trace`]).
    fn to_new_event(&self) -> Result<NewEvent> {
        let data = serde_json::value::to_raw_value(self)
            .map_err(|e| EventStoreError::InvalidEvent(e.to_string()))?;
        let event_type = type_tag(data.get())?.into_owned();
        Ok(NewEvent {
            id: Uuid::new_v4(),
            event_type,
            data,
            metadata: crate::trace::metadata(),
        })
    }

    /// Decodes a stored event of this enum, upcast to its current shape
    /// first if it is of an older version: the one decode every reader
    /// (deciders, read models, rebuilds, subscribers) goes through.
    fn from_recorded(recorded: &RecordedEvent) -> Result<Self> {
        let corrupt = |e: &dyn std::fmt::Display| EventStoreError::Corrupt {
            position: recorded.position,
            reason: format!("{} in {}: {e}", recorded.event_type, recorded.stream),
        };
        if !upcast::needed(Self::upcasts(), &recorded.event_type) {
            return recorded.decode().map_err(|e| corrupt(&e));
        }
        let (_, current) = Self::current(recorded).map_err(|e| corrupt(&e))?;
        serde_json::from_value(serde_json::Value::Object(current)).map_err(|e| corrupt(&e))
    }

    /// A stored event's type and JSON in the current shape (as they are,
    /// if no upcast applies): what a subscriber outside the service is sent.
    fn current(recorded: &RecordedEvent) -> std::result::Result<(String, upcast::Fields), String> {
        let data = serde_json::from_str(recorded.data.get()).map_err(|e| e.to_string())?;
        upcast::to_current(Self::upcasts(), &recorded.event_type, data)
    }
}

#[derive(Deserialize)]
struct Tag<'a> {
    #[serde(rename = "type", borrow)]
    event_type: Cow<'a, str>,
}

/// The `type` field of an encoded event.
fn type_tag(json: &str) -> Result<Cow<'_, str>> {
    let tag: Tag<'_> = serde_json::from_str(json).map_err(|e| {
        EventStoreError::InvalidEvent(format!("no `type` tag (use #[serde(tag = \"type\")]): {e}"))
    })?;
    Ok(tag.event_type)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    #[serde(tag = "type")]
    enum Sample {
        Opened {
            id: i64,
        },
        #[serde(rename = "Shut")]
        Closed,
    }
    impl Event for Sample {}

    #[test]
    fn the_serde_tag_is_the_event_type() {
        let e = Sample::Opened { id: 7 }.to_new_event().unwrap();
        assert_eq!(e.event_type, "Opened");
        assert_eq!(e.data.get(), r#"{"type":"Opened","id":7}"#);
        assert_eq!(Sample::Closed.to_new_event().unwrap().event_type, "Shut");
    }

    #[test]
    fn an_untagged_type_is_refused() {
        #[derive(Serialize, Deserialize)]
        struct Plain {
            id: i64,
        }
        impl Event for Plain {}
        assert!(matches!(
            Plain { id: 1 }.to_new_event(),
            Err(EventStoreError::InvalidEvent(_))
        ));
    }

    /// Version 2 of `Opened` keeps its id as text; version 1 (stored as
    /// `Opened`) kept a number.
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    #[serde(tag = "type")]
    enum Versioned {
        #[serde(rename = "Opened.v2")]
        Opened { id: String },
    }
    impl Event for Versioned {
        fn upcasts() -> &'static [Upcast] {
            &[Upcast {
                from: "Opened",
                to: "Opened.v2",
                apply: |mut m| {
                    let id = m.remove("id").and_then(|v| v.as_i64()).ok_or("no id")?;
                    m.insert("id".into(), id.to_string().into());
                    Ok(m)
                },
            }]
        }
    }

    fn stored(event_type: &str, data: &str) -> RecordedEvent {
        RecordedEvent {
            position: 1,
            stream: "s".into(),
            version: 0,
            event_type: event_type.into(),
            id: Uuid::nil(),
            data: serde_json::value::RawValue::from_string(data.into()).unwrap(),
            metadata: serde_json::value::RawValue::from_string("{}".into()).unwrap(),
            recorded_at: chrono::Utc::now(),
        }
    }

    #[test]
    fn a_stored_old_version_is_read_in_the_current_shape() {
        let old = stored("Opened", r#"{"type":"Opened","id":7}"#);
        let want = Versioned::Opened { id: "7".into() };
        assert_eq!(Versioned::from_recorded(&old).unwrap(), want);
        let (t, current) = Versioned::current(&old).unwrap();
        assert_eq!(t, "Opened.v2");
        assert_eq!(
            serde_json::Value::Object(current),
            serde_json::json!({"type": "Opened.v2", "id": "7"})
        );
        // New events are written as the new version, and read as they are.
        let new = want.to_new_event().unwrap();
        assert_eq!(new.event_type, "Opened.v2");
        let again = stored(&new.event_type, new.data.get());
        assert_eq!(Versioned::from_recorded(&again).unwrap(), want);
        // An old event the upcast cannot read is corrupt, named by position.
        let bad = stored("Opened", r#"{"type":"Opened"}"#);
        let err = Versioned::from_recorded(&bad).unwrap_err().to_string();
        assert!(err.contains("Opened -> Opened.v2: no id"), "{err}");
    }
}
