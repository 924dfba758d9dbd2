//! The in-memory read model of users and live tokens, folded from events.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use event_store::RecordedEvent;
use event_store::projection::ReadModel;

use crate::domain::{AuthEvent, USER_IDS_STREAM, normalize_username};
use crate::token::TokenDigest;

/// A registered user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    /// Positive, unique, increasing.
    pub id: i64,
    /// As registered.
    pub username: String,
    /// As registered.
    pub email: String,
    /// argon2id PHC string.
    pub password_hash: String,
}

#[derive(Debug, Clone, Copy)]
struct TokenRecord {
    user_id: i64,
    expires_at: DateTime<Utc>,
}

/// Users by id and by normalized username; tokens by digest.
#[derive(Debug, Default)]
pub struct Users {
    by_id: HashMap<i64, UserRecord>,
    by_name: HashMap<String, i64>,
    tokens: HashMap<TokenDigest, TokenRecord>,
    tokens_of: HashMap<i64, Vec<TokenDigest>>,
}

impl Users {
    /// The user registered under `username`, compared case-insensitively.
    pub fn by_username(&self, username: &str) -> Option<&UserRecord> {
        self.by_name
            .get(&normalize_username(username))
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

    fn apply_event(&mut self, event: AuthEvent, recorded_at: DateTime<Utc>) {
        match event {
            AuthEvent::UserRegistered {
                user_id,
                username,
                email,
                password_hash,
            } => {
                self.by_name.insert(normalize_username(&username), user_id);
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
                if let Some(digest) = decode_digest(&digest) {
                    self.tokens.insert(
                        digest,
                        TokenRecord {
                            user_id,
                            expires_at,
                        },
                    );
                    let held = self.tokens_of.entry(user_id).or_default();
                    // Forget this user's tokens expired by now (the event's
                    // time, so a rebuild does the same), so memory follows
                    // live tokens, not every login ever made.
                    let tokens = &mut self.tokens;
                    held.retain(|d| {
                        let live = tokens.get(d).is_some_and(|t| t.expires_at > recorded_at);
                        if !live {
                            tokens.remove(d);
                        }
                        live
                    });
                    held.push(digest);
                }
            }
            AuthEvent::TokenRevoked { user_id, digest } => {
                if let Some(digest) = decode_digest(&digest) {
                    self.tokens.remove(&digest);
                    if let Some(held) = self.tokens_of.get_mut(&user_id) {
                        held.retain(|d| *d != digest);
                    }
                }
            }
            AuthEvent::AllTokensRevoked { user_id } => {
                for digest in self.tokens_of.remove(&user_id).unwrap_or_default() {
                    self.tokens.remove(&digest);
                }
            }
        }
    }
}

fn decode_digest(hex_digest: &str) -> Option<TokenDigest> {
    let mut d = [0u8; 32];
    hex::decode_to_slice(hex_digest, &mut d).ok().map(|_| d)
}

impl ReadModel for Users {
    fn apply(&mut self, event: &RecordedEvent) {
        if event.stream == USER_IDS_STREAM {
            return;
        }
        match event.decode::<AuthEvent>() {
            Ok(e) => self.apply_event(e, event.recorded_at),
            Err(e) => tracing::warn!(
                position = event.position,
                event_type = %event.event_type,
                error = %e,
                "skipping an event the auth service cannot read"
            ),
        }
    }
}
