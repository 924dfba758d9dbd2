//! The in-memory read model of users and live tokens, folded from every
//! user's events: what `Authenticate` answers from, with no store read.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use event_store::RecordedEvent;
use event_store::idempotency::Idempotent;
use event_store::read_model::{Projection, ReadModel};
use uuid::Uuid;

use crate::domain::{AuthEvent, UserId, normalize_username, username_skeleton};
use crate::token::TokenDigest;

/// A registered user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    /// Positive, unique, increasing.
    pub id: UserId,
    /// As registered.
    pub username: String,
    /// As registered.
    pub email: String,
    /// argon2id PHC string.
    pub password_hash: String,
}

#[derive(Debug, Clone, Copy)]
struct TokenRecord {
    user_id: UserId,
    expires_at: DateTime<Utc>,
}

/// A registration sent with an idempotency key, as its retry needs it: the
/// request's fingerprint, the user, and the first token sealed under a key
/// derived from the password (see the service's `register`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyedRegistration {
    /// SHA-256 of the request's username and email.
    pub fingerprint: String,
    /// The user registered.
    pub user_id: UserId,
    /// The extra members of the stamp: the sealed token, its salt, digest
    /// and expiry (read by the service, which sealed them).
    pub sealed: serde_json::Map<String, serde_json::Value>,
}

/// How often (in event time) every expired token is forgotten.
const SWEEP_EVERY: TimeDelta = TimeDelta::hours(1);

/// Users by id and by normalized username; tokens by digest.
#[derive(Debug, Default)]
pub struct AuthView {
    by_id: HashMap<UserId, UserRecord>,
    by_name: HashMap<String, UserId>,
    /// Users by the skeleton of their username (see `username_skeleton`),
    /// for the names registered before skeletons were claimed.
    by_skeleton: HashMap<String, UserId>,
    tokens: HashMap<TokenDigest, TokenRecord>,
    tokens_of: HashMap<UserId, Vec<TokenDigest>>,
    /// When the next sweep of expired tokens is due, in event time, so that
    /// a rebuild forgets exactly what the live model forgot.
    next_sweep: Option<DateTime<Utc>>,
    /// Registrations sent with an idempotency key, by the id of their
    /// `UserRegistered` event.
    keyed: HashMap<Uuid, KeyedRegistration>,
}

impl AuthView {
    /// The registration whose `UserRegistered` event is `event_id`, if one
    /// was sent with an idempotency key.
    pub fn keyed(&self, event_id: Uuid) -> Option<&KeyedRegistration> {
        self.keyed.get(&event_id)
    }

    /// A user by id.
    pub fn user(&self, id: UserId) -> Option<&UserRecord> {
        self.by_id.get(&id)
    }

    /// The user registered under `username`, compared case-insensitively.
    pub fn by_username(&self, username: &str) -> Option<&UserRecord> {
        self.by_name
            .get(&normalize_username(username))
            .and_then(|id| self.by_id.get(id))
    }

    /// The user whose username a reader could take for `username`.
    pub fn by_skeleton(&self, username: &str) -> Option<&UserRecord> {
        self.by_skeleton
            .get(&username_skeleton(username))
            .and_then(|id| self.by_id.get(id))
    }

    /// The user a live token belongs to, if the token is known, unrevoked and
    /// unexpired at `now`.
    pub fn by_token(&self, digest: &TokenDigest, now: DateTime<Utc>) -> Option<&UserRecord> {
        let t = self.tokens.get(digest)?;
        if t.expires_at <= now {
            return None;
        }
        self.by_id.get(&t.user_id)
    }

    /// How many users exist.
    pub fn user_count(&self) -> usize {
        self.by_id.len()
    }

    /// How many tokens are held (live, or expired since the last sweep).
    pub fn token_count(&self) -> usize {
        self.tokens.len()
    }

    /// Forgets every token expired by `now`, at most once per [`SWEEP_EVERY`]:
    /// memory then follows the tokens issued within one lifetime (plus an
    /// hour), not every login ever made.
    fn sweep_expired(&mut self, now: DateTime<Utc>) {
        if self.next_sweep.is_some_and(|due| now < due) {
            return;
        }
        self.next_sweep = Some(now + SWEEP_EVERY);
        let tokens = &mut self.tokens;
        self.tokens_of.retain(|_, held| {
            held.retain(|d| {
                let live = tokens.get(d).is_some_and(|t| t.expires_at > now);
                if !live {
                    tokens.remove(d);
                }
                live
            });
            !held.is_empty()
        });
    }
}

impl ReadModel for AuthView {
    type Event = AuthEvent;

    fn apply(&mut self, event: AuthEvent, recorded: &RecordedEvent) {
        if let AuthEvent::UserRegistered { user_id, .. } = &event
            && let Some(mut stamp) = Idempotent::stamp_of(recorded)
            && let Some(serde_json::Value::String(fingerprint)) = stamp.remove("fingerprint")
        {
            self.keyed.insert(
                recorded.id,
                KeyedRegistration {
                    fingerprint,
                    user_id: *user_id,
                    sealed: stamp,
                },
            );
        }
        self.apply_at(event, recorded.recorded_at);
    }
}

impl AuthView {
    fn apply_at(&mut self, event: AuthEvent, recorded_at: DateTime<Utc>) {
        self.sweep_expired(recorded_at);
        match event {
            AuthEvent::UserRegistered {
                user_id,
                username,
                email,
                password_hash,
            } => {
                self.by_name.insert(normalize_username(&username), user_id);
                self.by_skeleton
                    .entry(username_skeleton(&username))
                    .or_insert(user_id);
                self.by_id.insert(
                    user_id,
                    UserRecord {
                        id: user_id,
                        username,
                        email,
                        password_hash,
                    },
                );
            }
            AuthEvent::TokenIssued {
                user_id,
                digest,
                expires_at,
            } => {
                self.tokens.insert(
                    digest,
                    TokenRecord {
                        user_id,
                        expires_at,
                    },
                );
                self.tokens_of.entry(user_id).or_default().push(digest);
            }
            AuthEvent::TokenRevoked { user_id, digest } => {
                self.tokens.remove(&digest);
                if let Some(held) = self.tokens_of.get_mut(&user_id) {
                    held.retain(|d| *d != digest);
                }
            }
            AuthEvent::AllTokensRevoked { user_id } => {
                for digest in self.tokens_of.remove(&user_id).unwrap_or_default() {
                    self.tokens.remove(&digest);
                }
            }
            AuthEvent::UsernameClaimed { .. } | AuthEvent::LoginThrottled { .. } => {}
        }
    }
}

/// The token index behind `Authenticate`, shareable with other services in
/// this process.
#[derive(Clone)]
pub struct Tokens(pub Arc<Projection<AuthView>>);

impl Tokens {
    /// `read` of the user of a live token, now: an in-memory lookup, no
    /// store read.
    pub fn user_of<T>(
        &self,
        digest: &TokenDigest,
        read: impl FnOnce(&UserRecord) -> T,
    ) -> Option<T> {
        self.0.read().by_token(digest, Utc::now()).map(read)
    }
}

impl platform::TokenCheck for Tokens {
    fn user_id(&self, token: &str) -> Option<UserId> {
        self.user_of(&crate::token::parse(token)?, |u| u.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(byte: u8) -> TokenDigest {
        TokenDigest::try_from(hex::encode([byte; 32])).unwrap()
    }

    fn issue(users: &mut AuthView, user_id: UserId, byte: u8, at: DateTime<Utc>, ttl: TimeDelta) {
        let event = AuthEvent::TokenIssued {
            user_id,
            digest: digest(byte),
            expires_at: at + ttl,
        };
        users.apply_at(event, at);
    }

    #[test]
    fn expired_tokens_are_forgotten_by_the_hourly_sweep() {
        let t0 = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let mut users = AuthView::default();
        let minute = TimeDelta::minutes(1);
        // User 1 logs in once and never again; user 2 holds a long token.
        issue(&mut users, 1, 1, t0, minute);
        issue(&mut users, 2, 2, t0, TimeDelta::days(1));
        issue(&mut users, 2, 3, t0 + minute * 30, minute);
        assert_eq!(users.token_count(), 3, "no sweep within the hour");
        // The first event an hour later sweeps every expired token, whoever
        // it belonged to; live ones stay valid.
        issue(&mut users, 3, 4, t0 + SWEEP_EVERY, minute);
        assert_eq!(users.token_count(), 2);
        assert!(!users.tokens_of.contains_key(&1));
        assert_eq!(users.tokens.get(&digest(2)).map(|t| t.user_id), Some(2));
        assert!(users.tokens.contains_key(&digest(4)));
    }
}
