//! Commands sent with an idempotency key (a client's retry of a request
//! whose answer it lost). The first event such a command records gets an
//! id derived from the key and its scope (the user, the kind of request):
//! event ids are unique in the store, so a second copy of the command can
//! never be stored, on any replica, whatever it decided. The event's
//! metadata keeps a fingerprint of the request, so that a retry can be told
//! from a different request that reuses the key. What the first command
//! created is found again through the event: every read model keeps one
//! [`KeyedIndex`], and [`once`] is the one path a keyed command takes.

use std::future::Future;

use serde::Deserialize;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use event_store::RecordedEvent;

use crate::read_model::cow::CowMap;
use crate::read_model::{NotApplied, Projection, ReadModel, StaleRead};

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

/// What keyed commands created, by the event id their key gave their first
/// event: the one index every read model keeps for [`once`]. `T` is what
/// the service needs to answer a retry (a movie's id, a registration).
/// Kept copy-on-write (see [`CowMap`]), so a clone is cheap.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyedIndex<T> {
    by_event: CowMap<Uuid, Keyed<T>>,
}

impl<T> Default for KeyedIndex<T> {
    fn default() -> Self {
        Self {
            by_event: CowMap::default(),
        }
    }
}

/// In event id order, so that a model's digest does not depend on the
/// order of a hash map.
impl<T: serde::Serialize> serde::Serialize for KeyedIndex<T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let sorted: std::collections::BTreeMap<_, _> = self.by_event.iter().collect();
        sorted.serialize(serializer)
    }
}

/// One keyed command's record: the request's fingerprint and what it made.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Keyed<T> {
    /// The fingerprint of the request that recorded it.
    pub fingerprint: String,
    /// What it created.
    pub created: T,
}

impl<T: Clone> KeyedIndex<T> {
    /// Indexes `recorded` if a keyed command recorded it; `created` says
    /// what it made, from its stamp (see [`Idempotent::stamp_of`]).
    /// Called by a read model's `apply` for every event.
    pub fn note(
        &mut self,
        recorded: &RecordedEvent,
        created: impl FnOnce(serde_json::Map<String, serde_json::Value>) -> T,
    ) {
        let Some(mut stamp) = Idempotent::stamp_of(recorded) else {
            return;
        };
        let Some(serde_json::Value::String(fingerprint)) = stamp.remove("fingerprint") else {
            return;
        };
        self.by_event.insert(
            recorded.id,
            Keyed {
                fingerprint,
                created: created(stamp),
            },
        );
    }

    /// What the command with `key` created, if one did: `None` if none is
    /// stored; [`KeyReused`] if one was, for another request.
    pub fn lookup(&self, key: &Idempotent) -> Result<Option<&T>, KeyReused> {
        match self.by_event.get(&key.event_id) {
            None => Ok(None),
            Some(k) if k.fingerprint == key.fingerprint => Ok(Some(&k.created)),
            Some(_) => Err(KeyReused),
        }
    }

    /// The record of the keyed command whose first event is `event_id`.
    pub fn get(&self, event_id: Uuid) -> Option<&Keyed<T>> {
        self.by_event.get(&event_id)
    }

    /// Adds a record (a snapshot being loaded).
    pub fn insert(&mut self, event_id: Uuid, keyed: Keyed<T>) {
        self.by_event.insert(event_id, keyed);
    }

    /// Keeps only the records whose creation `keep` accepts (an erased
    /// user's records go with them).
    pub fn retain(&mut self, mut keep: impl FnMut(&T) -> bool) {
        self.by_event.retain(|_, k| keep(&k.created));
    }

    /// How many keyed commands are indexed.
    pub fn len(&self) -> usize {
        self.by_event.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.by_event.is_empty()
    }

    /// Every record, in event id order (for a snapshot's canonical
    /// encoding).
    pub fn sorted(&self) -> Vec<(&Uuid, &Keyed<T>)> {
        let mut all: Vec<_> = self.by_event.iter().collect();
        all.sort_unstable_by_key(|(id, _)| **id);
        all
    }
}

/// The key was used before, with another request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the idempotency key was used for another request")]
pub struct KeyReused;

/// A read model that keeps a [`KeyedIndex`].
pub trait KeyedModel: ReadModel {
    /// What a keyed command created, as the index keeps it.
    type Created: Clone;

    /// The index.
    fn keyed(&self) -> &KeyedIndex<Self::Created>;
}

/// How a command ended: the answer, and who recorded what it answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome<A> {
    /// This call recorded it.
    Recorded(A),
    /// A call with the same key and request recorded it before (or at the
    /// same time, elsewhere): the answer is made from what that call
    /// created.
    Replayed(A),
}

impl<A> Outcome<A> {
    /// The answer, whoever recorded it.
    pub fn into_inner(self) -> A {
        match self {
            Self::Recorded(a) | Self::Replayed(a) => a,
        }
    }
}

/// What a command's run did: the position of its last event, what the
/// index keeps for it, and this call's own answer (used when no key was
/// sent, so that no read of the view is needed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ran<C, A> {
    /// The position of the last event it appended.
    pub position: u64,
    /// What a keyed copy's record holds ([`KeyedModel::Created`]).
    pub created: C,
    /// The answer, made from this call's own values.
    pub answer: A,
}

/// The errors of a service's keyed commands.
pub trait KeyedError: From<KeyReused> + From<StaleRead> + From<NotApplied> {
    /// Whether this refusal may mean that the same request got there first
    /// (its event, with the key's id, is stored): a duplicate event id, or
    /// a rule that the first copy's event now breaks ("username taken",
    /// "rated already").
    fn may_be_replay(&self) -> bool;

    /// A keyed command recorded, but its record is not in the index (a
    /// bug: the model does not index what the command recorded).
    fn not_indexed() -> Self;
}

/// The one path of a command that may carry an idempotency key.
///
/// `run` records the command (its first event stamped with `key`, see
/// [`crate::decider::execute`]). Without a key, its own answer is the
/// answer, once `view` has applied its events. With one, the answer is
/// what `answer` makes of what is *stored* for the key:
/// - a key already stored answers at once ([`Outcome::Replayed`]), and
///   `run` is never started (no id taken, no password hashed); the same
///   key for another request is [`KeyReused`];
/// - when `run` succeeds, a copy of the request that lost a race may have
///   "appended" the winner's events again (the store's idempotent retry),
///   with values of its own that were never stored: its own answer is not
///   used;
/// - when `run` is refused in a way the same request's first copy explains
///   ([`KeyedError::may_be_replay`]), that copy's record answers, once
///   `view` has caught up with the store.
pub async fn once<M, E, A, Fut>(
    view: &Projection<M>,
    key: Option<&Idempotent>,
    run: Fut,
    answer: impl AsyncFnOnce(M::Created) -> Result<A, E>,
) -> Result<Outcome<A>, E>
where
    M: KeyedModel,
    E: KeyedError,
    Fut: Future<Output = Result<Ran<M::Created, A>, E>>,
{
    let Some(key) = key else {
        let ran = run.await?;
        view.wait_for(ran.position).await?;
        return Ok(Outcome::Recorded(ran.answer));
    };
    let stored = |view: &M| view.keyed().lookup(key).map(|c| c.cloned());
    let already = stored(&*view.read_linearizable().await?)?;
    if let Some(created) = already {
        return answer(created).await.map(Outcome::Replayed);
    }
    match run.await {
        Ok(ran) => {
            view.wait_for(ran.position).await?;
            let created = stored(&view.read())?.ok_or_else(E::not_indexed)?;
            answer(created).await.map(Outcome::Recorded)
        }
        Err(e) if e.may_be_replay() => {
            // The other copy's event is committed, maybe not yet applied.
            view.catch_up().await?;
            let replayed = stored(&view.read())?;
            match replayed {
                Some(created) => answer(created).await.map(Outcome::Replayed),
                None => Err(e),
            }
        }
        Err(e) => Err(e),
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
