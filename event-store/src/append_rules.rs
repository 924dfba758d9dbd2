//! The rules of an append, shared by every backend that checks them itself.

use std::collections::HashSet;

use crate::error::{EventStoreError, Result};
use crate::model::{AppendResult, CurrentVersion, ExpectedVersion, NewEvent, RecordedEvent};

/// Where an event id is already stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoredId {
    pub stream: String,
    pub version: u64,
    pub position: u64,
}

/// What an append must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Write the events with versions `first_version..`.
    Write { first_version: u64 },
    /// A retry of an append that already succeeded: answer this, write nothing.
    AlreadyDone(AppendResult),
}

/// Checks the arguments of an append before any I/O.
pub(crate) fn validate(stream: &str, events: &[NewEvent]) -> Result<()> {
    if stream.is_empty() {
        return Err(EventStoreError::InvalidAppend("the stream name is empty"));
    }
    if events.is_empty() {
        return Err(EventStoreError::InvalidAppend("no events to append"));
    }
    let mut seen = HashSet::with_capacity(events.len());
    if let Some(e) = events.iter().find(|e| !seen.insert(e.id)) {
        return Err(EventStoreError::DuplicateEventId(e.id));
    }
    Ok(())
}

/// Decides an append from the stream's current version and, for each event
/// in order, where its id is already stored (if anywhere).
pub(crate) fn decide(
    stream: &str,
    expected: ExpectedVersion,
    current: CurrentVersion,
    events: &[NewEvent],
    stored: &[Option<StoredId>],
) -> Result<Decision> {
    let wrong_version = || EventStoreError::WrongExpectedVersion {
        stream: stream.to_owned(),
        expected,
        actual: current,
    };
    if stored.iter().all(Option::is_none) {
        return if current.satisfies(expected) {
            Ok(Decision::Write {
                first_version: current.next(),
            })
        } else {
            Err(wrong_version())
        };
    }
    // Some ids exist: this is a retry only if all of them sit, in order,
    // contiguously in this stream.
    let first_dup = || {
        let i = stored.iter().position(Option::is_some).unwrap_or(0);
        EventStoreError::DuplicateEventId(events[i].id)
    };
    let Some(Some(first)) = stored.first() else {
        return Err(first_dup());
    };
    let is_retry = stored.iter().enumerate().all(|(i, s)| {
        s.as_ref()
            .is_some_and(|s| s.stream == stream && s.version == first.version + i as u64)
    });
    if !is_retry {
        return Err(first_dup());
    }
    let consistent = match expected {
        ExpectedVersion::Any => true,
        ExpectedVersion::NoStream => first.version == 0,
        ExpectedVersion::Exact(e) => e + 1 == first.version,
    };
    if !consistent {
        return Err(wrong_version());
    }
    let last = stored.last().and_then(Option::as_ref).unwrap_or(first);
    Ok(Decision::AlreadyDone(AppendResult {
        stream_version: last.version,
        position: last.position,
    }))
}

/// Checks that imported events follow `head` in strictly increasing
/// position order (see [`crate::EventStore::import`]).
pub(crate) fn check_import(events: &[RecordedEvent], head: u64) -> Result<()> {
    let mut last = head;
    for e in events {
        if e.position <= last || e.position > i64::MAX as u64 {
            return Err(EventStoreError::ImportOutOfOrder {
                position: e.position,
                head: last,
            });
        }
        last = e.position;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev() -> NewEvent {
        NewEvent::new("E", &serde_json::json!({})).unwrap()
    }

    fn at(stream: &str, version: u64) -> Option<StoredId> {
        Some(StoredId {
            stream: stream.into(),
            version,
            position: 10 + version,
        })
    }

    #[test]
    fn a_full_retry_in_place_is_already_done() {
        let events = [ev(), ev()];
        let d = decide(
            "s",
            ExpectedVersion::Exact(1),
            CurrentVersion::At(3),
            &events,
            &[at("s", 2), at("s", 3)],
        );
        assert_eq!(
            d.unwrap(),
            Decision::AlreadyDone(AppendResult {
                stream_version: 3,
                position: 13
            })
        );
    }

    #[test]
    fn a_partial_retry_is_a_duplicate() {
        let events = [ev(), ev()];
        let d = decide(
            "s",
            ExpectedVersion::Any,
            CurrentVersion::At(2),
            &events,
            &[at("s", 2), None],
        );
        assert!(matches!(d, Err(EventStoreError::DuplicateEventId(id)) if id == events[0].id));
    }

    #[test]
    fn ids_of_another_stream_are_duplicates() {
        let events = [ev()];
        let d = decide(
            "s",
            ExpectedVersion::Any,
            CurrentVersion::NoStream,
            &events,
            &[at("t", 0)],
        );
        assert!(matches!(d, Err(EventStoreError::DuplicateEventId(_))));
    }

    #[test]
    fn a_retry_at_another_expected_version_is_wrong_version() {
        let events = [ev()];
        let d = decide(
            "s",
            ExpectedVersion::NoStream,
            CurrentVersion::At(4),
            &events,
            &[at("s", 4)],
        );
        assert!(matches!(
            d,
            Err(EventStoreError::WrongExpectedVersion { .. })
        ));
    }

    #[test]
    fn duplicate_ids_within_one_append_are_refused() {
        let e = ev();
        assert!(matches!(
            validate("s", &[e.clone(), e]),
            Err(EventStoreError::DuplicateEventId(_))
        ));
        assert!(validate("", &[ev()]).is_err());
        assert!(validate("s", &[]).is_err());
    }
}
