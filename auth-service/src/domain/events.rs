//! Every event of auth-service, and why its commands are refused.

use chrono::{DateTime, Utc};
use event_store::Event;
use serde::{Deserialize, Serialize};

use super::values::UserId;
use crate::token::TokenDigest;

/// Every event of the auth service. The variant names are the stored event
/// types: stable forever.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum AuthEvent {
    /// A user exists. First event of the user's stream.
    UserRegistered {
        /// Its id.
        user_id: UserId,
        /// As given at registration.
        username: String,
        /// As given at registration.
        email: String,
        /// argon2id PHC string.
        password_hash: String,
    },
    /// A token was issued. Only its SHA-256 digest is stored.
    TokenIssued {
        /// Its owner.
        user_id: UserId,
        /// The digest of the token.
        digest: TokenDigest,
        /// When it stops being valid.
        expires_at: DateTime<Utc>,
    },
    /// One token was revoked.
    TokenRevoked {
        /// Its owner.
        user_id: UserId,
        /// The digest of the token.
        digest: TokenDigest,
    },
    /// Every token the user held at that point was revoked.
    AllTokensRevoked {
        /// The user.
        user_id: UserId,
    },
    /// Logins of the user were being refused after failed attempts (noted
    /// at most once per [`THROTTLE_NOTE_EVERY`], for the user's activity).
    LoginThrottled {
        /// The user.
        user_id: UserId,
        /// When a refusal was noted.
        at: DateTime<Utc>,
    },
    /// A username skeleton is claimed by one username (normalized). First
    /// event of a claim stream.
    UsernameClaimed {
        /// The normalized username that holds the claim.
        username: String,
    },
}

impl Event for AuthEvent {}

/// A token handed out: its digest and its expiry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    /// The token's digest.
    pub digest: TokenDigest,
    /// When it stops being valid.
    pub expires_at: DateTime<Utc>,
}

/// Why a user command is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// The username is taken (case-insensitively).
    UsernameTaken,
    /// No user has this username.
    UnknownUser,
    /// The token is not a live token of this user.
    InvalidToken,
}
