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

/// An enum of domain events with `#[serde(tag = "type")]`: the tag (the
/// variant's name unless renamed) is the stored event type, stable forever.
pub trait Event: Serialize + DeserializeOwned + Send + Sync + 'static {
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

    /// Decodes a stored event of this enum.
    fn from_recorded(recorded: &RecordedEvent) -> Result<Self> {
        recorded.decode().map_err(|e| EventStoreError::Corrupt {
            position: recorded.position,
            reason: format!("{} in {}: {e}", recorded.event_type, recorded.stream),
        })
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
}
