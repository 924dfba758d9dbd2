//! Commands sent with an idempotency key (a client's retry of a request
//! whose answer it lost). The first event such a command records gets an
//! id derived from the key and its scope (the user, the kind of request):
//! event ids are unique in the store, so a second copy of the command can
//! never be stored, on any replica, whatever it decided. The event's
//! metadata keeps a fingerprint of the request, so that a retry can be told
//! from a different request that reuses the key. What the first command
//! created is found again through the event (read models index it by id).

use serde::Deserialize;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use event_store::RecordedEvent;

/// A command's idempotency: the id its first event takes, the fingerprint
/// of the request, and what else the service keeps to answer a retry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Idempotent {
    /// The id of the first event the command records.
    pub event_id: Uuid,
    /// SHA-256 (hex) of the request's fields.
    pub fingerprint: String,
    /// More to keep beside the fingerprint (never a secret in the clear).
    pub extra: serde_json::Map<String, serde_json::Value>,
}

fn digest(parts: &[&str]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        // Length-prefixed, so that ("ab", "c") and ("a", "bc") differ.
        h.update((p.len() as u64).to_be_bytes());
        h.update(p.as_bytes());
    }
    h.finalize().into()
}

impl Idempotent {
    /// The idempotency of a request with `key` in `scope` (e.g.
    /// `movie:<user id>`), whose meaningful fields are `request`.
    pub fn new(scope: &str, key: &str, request: &[&str]) -> Self {
        let d = digest(&["idempotency-key", scope, key]);
        let mut bytes = [0; 16];
        bytes.copy_from_slice(&d[..16]);
        Self {
            // A version 8 (custom) UUID, RFC 9562.
            event_id: uuid::Builder::from_custom_bytes(bytes).into_uuid(),
            fingerprint: hex_of(&digest(request)),
            extra: serde_json::Map::new(),
        }
    }

    /// The stamp a stored event was recorded with (`fingerprint` and the
    /// extra members), if a command with an idempotency key recorded it.
    pub fn stamp_of(
        recorded: &RecordedEvent,
    ) -> Option<serde_json::Map<String, serde_json::Value>> {
        #[derive(Deserialize)]
        struct Metadata {
            idempotency: Option<serde_json::Map<String, serde_json::Value>>,
        }
        if !recorded.metadata.get().contains("idempotency") {
            return None;
        }
        let meta: Metadata = serde_json::from_str(recorded.metadata.get()).ok()?;
        meta.idempotency
    }

    /// The fingerprint a stored event was recorded with, if it was recorded
    /// by a command with an idempotency key.
    pub fn fingerprint_of(recorded: &RecordedEvent) -> Option<String> {
        match Self::stamp_of(recorded)?.remove("fingerprint")? {
            serde_json::Value::String(f) => Some(f),
            _ => None,
        }
    }

    /// `metadata` (a JSON object) with this command's stamp added.
    pub(crate) fn stamp(
        &self,
        metadata: &serde_json::value::RawValue,
    ) -> Box<serde_json::value::RawValue> {
        let mut map: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(metadata.get()).unwrap_or_default();
        let mut stamp = self.extra.clone();
        stamp.insert("fingerprint".into(), self.fingerprint.clone().into());
        map.insert("idempotency".into(), stamp.into());
        serde_json::value::to_raw_value(&map).expect("a JSON map serializes")
    }
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_key_in_the_same_scope_names_the_same_event() {
        let a = Idempotent::new("movie:1", "k", &["T", "D"]);
        assert_eq!(a, Idempotent::new("movie:1", "k", &["T", "D"]));
        assert_eq!(a.event_id.get_version_num(), 8);
        assert_ne!(
            a.event_id,
            Idempotent::new("movie:2", "k", &["T", "D"]).event_id
        );
        assert_ne!(
            a.event_id,
            Idempotent::new("movie:1", "k2", &["T", "D"]).event_id
        );
        let other_body = Idempotent::new("movie:1", "k", &["TD", ""]);
        assert_eq!(a.event_id, other_body.event_id);
        assert_ne!(a.fingerprint, other_body.fingerprint);
    }

    #[test]
    fn the_stamp_is_read_back_beside_other_metadata() {
        let a = Idempotent::new("s", "k", &["x"]);
        let raw =
            serde_json::value::RawValue::from_string(r#"{"traceparent":"t"}"#.into()).unwrap();
        let stamped = a.stamp(&raw);
        let recorded = RecordedEvent {
            position: 1,
            stream: "s".into(),
            version: 0,
            event_type: "E".into(),
            id: a.event_id,
            data: serde_json::value::RawValue::from_string("{}".into()).unwrap(),
            metadata: stamped,
            recorded_at: chrono::Utc::now(),
        };
        assert_eq!(Idempotent::fingerprint_of(&recorded), Some(a.fingerprint));
        assert!(recorded.metadata.get().contains("\"traceparent\":\"t\""));
    }
}
