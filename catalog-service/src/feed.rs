//! The catalog's events as consumers outside see them (`SubscribeEvents`
//! and the feed's consumer groups): each in its current schema; the id
//! allocations, which are bookkeeping, left out. Catalog events hold ids,
//! titles and ratings: no personal data.

use std::sync::Arc;

use event_sourcing::consumer_group::Opener;
use event_store::{Event as _, RecordedEvent, ids, upcast};
use platform::feed::{CloudEvent, envelope};

use crate::domain::CatalogEvent;

/// `event`'s type and JSON in its current schema.
pub fn current(event: &RecordedEvent) -> Result<(String, String), String> {
    if !upcast::needed(CatalogEvent::upcasts(), &event.event_type) {
        return Ok((event.event_type.clone(), event.data.get().to_owned()));
    }
    let (t, data) = CatalogEvent::current(event)?;
    Ok((t, serde_json::Value::Object(data).to_string()))
}

/// What the feed's consumers are sent of each stored event.
pub fn opener() -> Opener<CloudEvent> {
    Arc::new(|event| {
        if ids::is_allocation(event) {
            return None;
        }
        // Parsed once, upcast if it is of an older version; the type is the
        // envelope's, so the payload goes without its tag.
        let opened = CatalogEvent::current(event).and_then(|(current_type, mut fields)| {
            fields.remove("type");
            let data = serde_json::value::to_raw_value(&fields).map_err(|e| e.to_string())?;
            Ok(envelope(
                "catalog",
                event,
                &current_type,
                event.stream.clone(),
                data,
            ))
        });
        match opened {
            Ok(opened) => Some(opened),
            Err(why) => {
                tracing::error!(position = event.position, %why, "a stored event cannot be upcast; not sent to the feed");
                None
            }
        }
    })
}
