//! Rewriting a store written before personal data was sealed into one
//! that holds none in the clear: the transform `movies copy --seal` runs
//! on auth's events (see README, "Personal data"). Sealing needs each
//! user's key, which no pure upcast has, so it happens on a copy, into
//! fresh stores, never in place.
//!
//! What it rewrites, keeping every event's id, position and version:
//! - `UserRegistered` (v1, v2) → `UserRegistered.v3`: the username, email
//!   and hash sealed under a key made for the user in the target's key
//!   table (before the batch holding it is written), the name and skeleton
//!   as MACs; its idempotency stamp is dropped (its fingerprint is a hash
//!   of the username and email; a keyed retry of a registration made before
//!   the upgrade registers anew);
//! - streams `user-<name>` → `account-<id>` (every event in them names its
//!   user);
//! - `UserRegistered.v3` (already sealed) stays, but its idempotency stamp
//!   keeps only its fingerprint: releases before the retry became a login
//!   kept the first token there, sealed under a key argon2id derived from
//!   the password (with its salt and digest): an offline verifier of the
//!   password that would outlive the user's erasure;
//! - `UsernameClaimed` (v1, in `username-<skeleton>`) →
//!   `UsernameClaimed.v2` in `username-<MAC of the skeleton>`, naming the
//!   user who registered under it. A claim whose registration never
//!   happened (a process died between the two) becomes a
//!   `UsernameReleased`: the name is free.
//!
//! It reads the source once first, to learn which user each name went to
//! (memory: one entry per user, about 60 bytes).

use std::collections::HashMap;

use event_store::copy::Transform;
use event_store::{Event, EventStore, RecordedEvent, ids};

use crate::domain::{
    AuthEvent, Personal, UserId, claim_stream, normalize_username, sealed_for, user_stream,
    username_skeleton,
};
use crate::keys::Keyring;
use crate::seal::{self, DataKey, Pepper};

/// The transform; see the module's documentation.
pub struct Sealing {
    keyring: Keyring,
    pepper: Pepper,
    /// Who each normalized username went to.
    names: HashMap<String, UserId>,
    /// The keys of the users registered in the batch being copied.
    keys: HashMap<UserId, DataKey>,
}

impl Sealing {
    /// Reads `source` for who each name went to; keys will be made in
    /// `keyring` (the target's key table) and names MACed under `pepper`
    /// (the target's).
    pub async fn new(
        source: &dyn EventStore,
        keyring: Keyring,
        pepper: Pepper,
    ) -> Result<Self, event_store::EventStoreError> {
        let mut names = HashMap::new();
        let mut next = 1;
        loop {
            let batch = source.read_all(next, 10_000).await?;
            let Some(last) = batch.last() else { break };
            next = last.position + 1;
            for recorded in &batch {
                if !recorded.event_type.starts_with("UserRegistered") {
                    continue;
                }
                if let Ok(AuthEvent::UserRegisteredInClear { user_id, personal }) =
                    AuthEvent::from_recorded(recorded)
                {
                    names.insert(normalize_username(&personal.username), user_id);
                }
            }
        }
        Ok(Self {
            keyring,
            pepper,
            names,
            keys: HashMap::new(),
        })
    }

    fn sealed(&self, user_id: UserId, personal: &Personal) -> Result<AuthEvent, String> {
        let key = self
            .keys
            .get(&user_id)
            .ok_or_else(|| format!("no key was made for user {user_id}"))?;
        let json = serde_json::to_vec(personal).map_err(|e| e.to_string())?;
        Ok(AuthEvent::UserRegistered {
            user_id,
            name: self
                .pepper
                .mac("name", &normalize_username(&personal.username)),
            skeleton: self
                .pepper
                .mac("skeleton", &username_skeleton(&personal.username)),
            sealed: seal::seal(key, &sealed_for(user_id), &json).map_err(|e| e.to_string())?,
        })
    }
}

/// `recorded` with its idempotency stamp, if any, reduced to the
/// fingerprint.
fn only_the_fingerprint(mut recorded: RecordedEvent) -> Result<RecordedEvent, String> {
    let mut metadata: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(recorded.metadata.get()).unwrap_or_default();
    let Some(serde_json::Value::Object(stamp)) = metadata.get_mut("idempotency") else {
        return Ok(recorded);
    };
    if stamp.keys().all(|k| k == "fingerprint") {
        return Ok(recorded);
    }
    stamp.retain(|k, _| k == "fingerprint");
    recorded.metadata = serde_json::value::to_raw_value(&metadata).map_err(|e| e.to_string())?;
    Ok(recorded)
}

/// The user an event of a user's stream names.
fn user_of(event: &AuthEvent) -> Option<UserId> {
    match event {
        AuthEvent::UserRegistered { user_id, .. }
        | AuthEvent::UserRegisteredInClear { user_id, .. }
        | AuthEvent::TokenIssued { user_id, .. }
        | AuthEvent::TokenRevoked { user_id, .. }
        | AuthEvent::AllTokensRevoked { user_id }
        | AuthEvent::LoginThrottled { user_id, .. }
        | AuthEvent::LoginFailed { user_id, .. }
        | AuthEvent::PasswordChanged { user_id, .. }
        | AuthEvent::UserErased { user_id } => Some(*user_id),
        // In the token's own stream, named by its digest.
        AuthEvent::TokenRefreshed { .. }
        | AuthEvent::UsernameClaimed { .. }
        | AuthEvent::UsernameReleased { .. }
        | AuthEvent::UsernameClaimedInClear { .. } => None,
    }
}

/// `event` as `recorded` with a new stream, type and payload.
fn rewritten(
    mut recorded: RecordedEvent,
    stream: String,
    event: &AuthEvent,
) -> Result<RecordedEvent, String> {
    let new = event.to_new_event().map_err(|e| e.to_string())?;
    recorded.stream = stream;
    recorded.event_type = new.event_type;
    recorded.data = new.data;
    Ok(recorded)
}

#[async_trait::async_trait]
impl Transform for Sealing {
    async fn prepare(&mut self, batch: &[RecordedEvent]) -> Result<(), String> {
        self.keys.clear();
        for recorded in batch {
            if !recorded.event_type.starts_with("UserRegistered") {
                continue;
            }
            if let Ok(AuthEvent::UserRegisteredInClear { user_id, .. }) =
                AuthEvent::from_recorded(recorded)
            {
                // A key made by an interrupted run is found, not replaced.
                let key = self
                    .keyring
                    .create(user_id)
                    .await
                    .map_err(|e| e.to_string())?;
                self.keys.insert(user_id, key);
            }
        }
        Ok(())
    }

    fn apply(&mut self, mut recorded: RecordedEvent) -> Result<RecordedEvent, String> {
        if ids::is_allocation(&recorded) {
            return Ok(recorded);
        }
        let event = AuthEvent::from_recorded(&recorded).map_err(|e| e.to_string())?;
        match &event {
            AuthEvent::UserRegisteredInClear { user_id, personal } => {
                let sealed = self.sealed(*user_id, personal)?;
                let mut out = rewritten(recorded, user_stream(*user_id), &sealed)?;
                // Its idempotency stamp fingerprints the username and email.
                let mut metadata: serde_json::Map<String, serde_json::Value> =
                    serde_json::from_str(out.metadata.get()).unwrap_or_default();
                if metadata.remove("idempotency").is_some() {
                    out.metadata =
                        serde_json::value::to_raw_value(&metadata).map_err(|e| e.to_string())?;
                }
                Ok(out)
            }
            AuthEvent::UserRegistered { .. } => only_the_fingerprint(recorded),
            AuthEvent::UsernameClaimedInClear { username } => {
                let skeleton = recorded
                    .stream
                    .strip_prefix("username-")
                    .ok_or_else(|| format!("a claim in stream {}", recorded.stream))?
                    .to_owned();
                let stream = claim_stream(&self.pepper.mac("skeleton", &skeleton));
                let event = match self.names.get(username) {
                    Some(user_id) => AuthEvent::UsernameClaimed {
                        name: self.pepper.mac("name", username),
                        user_id: *user_id,
                    },
                    None => AuthEvent::UsernameReleased { user_id: UserId(0) },
                };
                rewritten(recorded, stream, &event)
            }
            other => {
                // The payload as it is; only the stream is renamed.
                if let Some(user_id) = user_of(other) {
                    recorded.stream = user_stream(user_id);
                }
                Ok(recorded)
            }
        }
    }
}

/// Checks a sealed copy against its source: the same users, each sealed
/// profile opening (with `keyring`, the target's) to the source's username
/// and email, the same join times, live tokens and erasures. Returns how
/// many users were checked.
pub async fn verify_sealed(
    source: &crate::read_model::AuthView,
    target: &crate::read_model::AuthView,
    keyring: &Keyring,
) -> Result<usize, String> {
    use crate::read_model::Profile;
    if (source.user_count(), source.token_count(), source.erased())
        != (target.user_count(), target.token_count(), target.erased())
    {
        return Err("the users, tokens or erasures differ".into());
    }
    for user in source.users() {
        let copy = target
            .user(user.id)
            .ok_or_else(|| format!("user {} is missing", user.id))?;
        let (username, email) = match &user.profile {
            Profile::Clear { username, email } => (username.clone(), email.clone()),
            Profile::Sealed(_) => continue,
        };
        let Profile::Sealed(sealed) = &copy.profile else {
            return Err(format!("user {} is not sealed", user.id));
        };
        let key = keyring
            .get(user.id)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("user {} has no key", user.id))?;
        let json = seal::open(&key, &sealed_for(user.id), sealed).map_err(|e| e.to_string())?;
        let personal: Personal = serde_json::from_slice(&json).map_err(|e| e.to_string())?;
        if (personal.username, personal.email, copy.joined) != (username, email, user.joined) {
            return Err(format!("user {} opens to something else", user.id));
        }
    }
    Ok(source.user_count())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sealed registration keyed by a release before retries became
    /// logins keeps its fingerprint and nothing of the password.
    #[tokio::test]
    async fn a_sealed_registrations_stamp_keeps_only_its_fingerprint() {
        let dir = tempfile::tempdir().unwrap();
        let url = |name: &str| format!("sqlite://{}", dir.path().join(name).display());
        let source = event_store::open(&url("events.db")).await.unwrap();
        let keyring = Keyring::open(&url("events.db.keys"), None).await.unwrap();
        let pepper = Pepper::new(DataKey::from_bytes(&[5; 32]).unwrap());
        let mut sealing = Sealing::new(&*source, keyring, pepper).await.unwrap();
        let event = |metadata: &str| RecordedEvent {
            position: 3,
            stream: "account-7".into(),
            version: 0,
            event_type: "UserRegistered.v3".into(),
            id: uuid::Uuid::new_v4(),
            data: serde_json::value::to_raw_value(&serde_json::json!({
                "type": "UserRegistered.v3", "user_id": 7, "name": "n", "skeleton": "s",
                "sealed": "v1.x"
            }))
            .unwrap(),
            metadata: serde_json::value::RawValue::from_string(metadata.into()).unwrap(),
            recorded_at: chrono::Utc::now(),
        };
        let old = r#"{"traceparent":"t","idempotency":{"fingerprint":"f","sealed_token":"ab","salt":"cd","digest":"ef","expires_at":"2030-01-01T00:00:00Z"}}"#;
        let copied = sealing.apply(event(old)).unwrap();
        let metadata: serde_json::Value = serde_json::from_str(copied.metadata.get()).unwrap();
        assert_eq!(
            metadata,
            serde_json::json!({"traceparent": "t", "idempotency": {"fingerprint": "f"}})
        );
        assert_eq!(
            copied.data.get(),
            event(old).data.get(),
            "the payload as it was"
        );
        // A stamp of today, or none, goes through byte for byte.
        for kept in [r#"{"idempotency":{"fingerprint":"f"}}"#, "{}"] {
            assert_eq!(sealing.apply(event(kept)).unwrap().metadata.get(), kept);
        }
    }
}
