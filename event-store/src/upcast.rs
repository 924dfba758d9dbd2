//! Event types change through versions, never in place. A stored event
//! keeps the type it was written with; a new shape gets a new type name,
//! `<Name>.v<N>` (the first version is the bare `<Name>`), and an
//! [`Upcast`] says how the previous version's JSON becomes the next one's.
//! Every reader decodes through [`crate::Event::from_recorded`], which runs
//! the chain first, so no rule, projection or subscriber ever sees an old
//! shape. Upcasts are pure functions of one event's JSON: tested without a
//! store (given the stored JSON, then the current JSON).

use serde_json::{Map, Value};

/// A stored event's JSON object (its fields, `type` among them).
pub type Fields = Map<String, Value>;

/// One step of an event type's history: what a stored event of type
/// `from` becomes, as an event of type `to` (its next version).
#[derive(Debug, Clone, Copy)]
pub struct Upcast {
    /// The stored type it reads (`MovieRated`, `MovieRated.v2`, …).
    pub from: &'static str,
    /// The type it makes (the next version).
    pub to: &'static str,
    /// The change of the JSON object's fields (the `type` tag is set for
    /// it): an `Err` says why this stored event cannot be read as `to`.
    pub apply: fn(Fields) -> Result<Fields, String>,
}

/// Whether an event stored as `event_type` needs upcasting by `upcasts`.
pub fn needed(upcasts: &[Upcast], event_type: &str) -> bool {
    upcasts.iter().any(|u| u.from == event_type)
}

/// The current shape of an event stored as `event_type` with `data`: each
/// upcast whose `from` is the type so far runs in turn, and the result's
/// `type` tag names the last version reached. An event that needs none
/// comes back as it was.
pub fn to_current(
    upcasts: &[Upcast],
    event_type: &str,
    mut data: Fields,
) -> Result<(String, Fields), String> {
    let mut event_type = event_type.to_owned();
    // Each step moves to a newer version; a cycle would be a bug in the
    // list, so the chain is bounded by its length.
    for _ in 0..=upcasts.len() {
        let Some(step) = upcasts.iter().find(|u| u.from == event_type) else {
            return Ok((event_type, data));
        };
        data = (step.apply)(data).map_err(|why| format!("{} -> {}: {why}", step.from, step.to))?;
        data.insert("type".into(), Value::String(step.to.into()));
        event_type = step.to.into();
    }
    Err(format!("the upcasts of {event_type} go round in a circle"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    /// v1 held a `name`; v2 splits it; v3 renames `first` to `given`.
    const HISTORY: &[Upcast] = &[
        Upcast {
            from: "Named",
            to: "Named.v2",
            apply: |mut m| {
                let name = m.remove("name").ok_or("no name")?;
                let name = name.as_str().ok_or("name is not text")?.to_owned();
                let (first, last) = name.split_once(' ').unwrap_or((&name, ""));
                m.insert("first".into(), first.into());
                m.insert("last".into(), last.into());
                Ok(m)
            },
        },
        Upcast {
            from: "Named.v2",
            to: "Named.v3",
            apply: |mut m| {
                let first = m.remove("first").ok_or("no first")?;
                m.insert("given".into(), first);
                Ok(m)
            },
        },
    ];

    #[test]
    fn an_old_event_is_carried_through_every_later_version() {
        let stored = object(json!({"type": "Named", "id": 1, "name": "Ada Lovelace"}));
        let (t, now) = to_current(HISTORY, "Named", stored).unwrap();
        assert_eq!(t, "Named.v3");
        assert_eq!(
            Value::Object(now),
            json!({"type": "Named.v3", "id": 1, "given": "Ada", "last": "Lovelace"})
        );
    }

    #[test]
    fn a_middle_version_starts_where_it_is() {
        let stored =
            object(json!({"type": "Named.v2", "id": 2, "first": "Grace", "last": "Hopper"}));
        let (t, now) = to_current(HISTORY, "Named.v2", stored).unwrap();
        assert_eq!(t, "Named.v3");
        assert_eq!(now["given"], "Grace");
        assert!(needed(HISTORY, "Named.v2") && !needed(HISTORY, "Named.v3"));
    }

    #[test]
    fn a_current_event_is_left_as_it_is() {
        let stored = object(json!({"type": "Other", "x": 1}));
        let (t, now) = to_current(HISTORY, "Other", stored.clone()).unwrap();
        assert_eq!((t.as_str(), now), ("Other", stored));
    }

    #[test]
    fn an_event_an_upcast_cannot_read_is_an_error_that_names_the_step() {
        let stored = object(json!({"type": "Named", "id": 3}));
        let why = to_current(HISTORY, "Named", stored).unwrap_err();
        assert_eq!(why, "Named -> Named.v2: no name");
    }

    #[test]
    fn a_circle_is_refused_not_followed_forever() {
        const CIRCLE: &[Upcast] = &[
            Upcast {
                from: "A",
                to: "B",
                apply: Ok,
            },
            Upcast {
                from: "B",
                to: "A",
                apply: Ok,
            },
        ];
        assert!(to_current(CIRCLE, "A", Map::new()).is_err());
    }
}
