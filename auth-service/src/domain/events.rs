//! Every event of auth-service, and why its commands are refused.

use chrono::{DateTime, Utc};
use event_store::Event;
use event_store::upcast::{Fields, Upcast};
use serde::{Deserialize, Serialize};

use super::values::UserId;
use crate::token::TokenDigest;

/// Every event of the auth service. The serde tags are the stored event
/// types: a stored type never changes shape; a new shape is a new version
/// (`<Name>.v<N>`), and [`AuthEvent::upcasts`] carries the old ones to it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum AuthEvent {
    /// A user exists. First event of the user's stream (`account-<id>`).
    /// Version 3: no personal data in the clear. The username, email and
    /// password hash are sealed under the user's own key (see
    /// [`crate::seal`], [`crate::keys`]); the name and its skeleton are
    /// there as MACs under the pepper, for finding the user at login and
    /// for refusing look-alike names, never as text.
    #[serde(rename = "UserRegistered.v3")]
    UserRegistered {
        /// Its id.
        user_id: UserId,
        /// MAC of the normalized username (see [`crate::seal::Pepper`]).
        name: String,
        /// MAC of the username's skeleton.
        skeleton: String,
        /// [`Personal`] as JSON, sealed under the user's key and bound to
        /// its id (see [`sealed_for`]).
        sealed: String,
    },
    /// A user registered before personal data was sealed (version 2, and
    /// version 1 upcast to it), in a stream named by the username: read,
    /// never written any more. Sealing needs the user's key, which no
    /// pure upcast has: `movies copy` rewrites these (see README).
    #[serde(rename = "UserRegistered.v2")]
    UserRegisteredInClear {
        /// Its id.
        user_id: UserId,
        /// Who registered.
        personal: Personal,
    },
    /// A token was issued. Only its SHA-256 digest is stored. Version 2:
    /// where it was issued to, sealed, and which password it was issued
    /// under.
    #[serde(rename = "TokenIssued.v2")]
    TokenIssued {
        /// Its owner.
        user_id: UserId,
        /// The digest of the token.
        digest: TokenDigest,
        /// When it stops being valid (unless refreshed: see
        /// [`AuthEvent::TokenRefreshed`]).
        expires_at: DateTime<Utc>,
        /// [`ClientInfo`] as JSON, sealed under the user's key (see
        /// [`sealed_for`]); `None` for tokens issued before version 2.
        client: Option<String>,
        /// How many times the user's password had changed when the login
        /// checked it: a token issued under a password changed since (a
        /// login racing the change) is dead on arrival.
        credentials: u32,
    },
    /// One token was revoked. Version 2: by which token's request.
    #[serde(rename = "TokenRevoked.v2")]
    TokenRevoked {
        /// Its owner.
        user_id: UserId,
        /// The digest of the token.
        digest: TokenDigest,
        /// The token of the request that revoked it: itself for a logout,
        /// another of the user's for a session ended from the list;
        /// `None` before version 2.
        by: Option<TokenDigest>,
    },
    /// Every token the user held at that point was revoked.
    AllTokensRevoked {
        /// The user.
        user_id: UserId,
    },
    /// Logins of the user were being refused after failed attempts (noted
    /// at most once per [`THROTTLE_NOTE_EVERY`], for the user's activity).
    /// Version 2: where the refused attempt came from.
    #[serde(rename = "LoginThrottled.v2")]
    LoginThrottled {
        /// The user.
        user_id: UserId,
        /// When a refusal was noted.
        at: DateTime<Utc>,
        /// [`ClientInfo`] as JSON, sealed; `None` before version 2.
        client: Option<String>,
    },
    /// A wrong password was given for the user (a login, a password
    /// change or an erasure), for their security log. At most as many as
    /// the login throttle lets through.
    LoginFailed {
        /// The user.
        user_id: UserId,
        /// [`ClientInfo`] as JSON, sealed.
        client: Option<String>,
    },
    /// The user changed their password: their personal data is sealed
    /// again with the new hash, and every token but the one of the
    /// request is revoked.
    PasswordChanged {
        /// The user.
        user_id: UserId,
        /// [`Personal`] as JSON, with the new hash, sealed as in
        /// `UserRegistered`.
        sealed: String,
        /// The token that stays live (the request's).
        kept: Option<TokenDigest>,
    },
    /// A token's expiry moved (sliding expiry, knox's `AUTO_REFRESH`).
    /// Stored in the token's own stream ([`token_stream`]), so that the
    /// user's stream, which a login reads whole, does not grow with use.
    TokenRefreshed {
        /// Its owner.
        user_id: UserId,
        /// The digest of the token.
        digest: TokenDigest,
        /// Its new expiry.
        expires_at: DateTime<Utc>,
    },
    /// A username skeleton is claimed for one username by one user. First
    /// event of a claim stream, `username-<MAC of the skeleton>`. Version
    /// 2: the name as its MAC, and the user who holds it.
    #[serde(rename = "UsernameClaimed.v2")]
    UsernameClaimed {
        /// MAC of the normalized username that holds the claim.
        name: String,
        /// The user registering under it.
        user_id: UserId,
    },
    /// The user was erased: their key is destroyed, so whatever was sealed
    /// under it is noise; their tokens are refused and their name is free.
    /// Last event of the user's stream. Ids only.
    UserErased {
        /// The user.
        user_id: UserId,
    },
    /// The username a claim held is free again (its user was erased): the
    /// skeleton may be claimed anew in the same stream.
    UsernameReleased {
        /// The user the claim was made for.
        user_id: UserId,
    },
    /// A claim written before personal data was sealed (stream
    /// `username-<skeleton>`): read, never written any more.
    #[serde(rename = "UsernameClaimed")]
    UsernameClaimedInClear {
        /// The normalized username that holds the claim.
        username: String,
    },
}

/// What a user's sealed fields are bound to (the associated data): a
/// sealed value of one user never opens as another's.
pub fn sealed_for(user: UserId) -> Vec<u8> {
    format!("user:{user}").into_bytes()
}

/// What the sealed client details of a user's events are bound to: never
/// opened as their personal data, nor as another user's.
pub fn client_sealed_for(user: UserId) -> Vec<u8> {
    format!("user:{user}:client").into_bytes()
}

/// The personal data a registration holds, as one unit: what erasure
/// seals under the user's own key, so that destroying the key forgets it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Personal {
    /// As given at registration.
    pub username: String,
    /// As given at registration.
    pub email: String,
    /// argon2id PHC string.
    pub password_hash: String,
}

/// A user's personal data as their stream keeps it: sealed (every
/// registration since sealing), or in the clear (older ones).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoredPersonal {
    /// [`Personal`] sealed under the user's key (see [`sealed_for`]).
    Sealed(String),
    /// Written before sealing.
    Clear(Personal),
}

impl Event for AuthEvent {
    fn upcasts() -> &'static [Upcast] {
        &[
            Upcast {
                from: "UserRegistered",
                to: "UserRegistered.v2",
                apply: personal_in_one_object,
            },
            Upcast {
                from: "TokenIssued",
                to: "TokenIssued.v2",
                apply: issued_nowhere_known,
            },
            Upcast {
                from: "TokenRevoked",
                to: "TokenRevoked.v2",
                apply: revoked_by_unknown,
            },
            Upcast {
                from: "LoginThrottled",
                to: "LoginThrottled.v2",
                apply: throttled_from_unknown,
            },
        ]
    }
}

/// The stream of one token's refreshes, named by its digest (a digest is
/// in the user's events already; it reveals nothing of the token).
pub fn token_stream(digest: &TokenDigest) -> String {
    format!("token-{}", hex::encode(digest.bytes()))
}

/// Where a token was issued to, or a login attempted from: personal data,
/// sealed under the user's key in the events that carry it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientInfo {
    /// The client's address, as the gateway saw it.
    pub address: String,
    /// Its `User-Agent`, truncated and sanitised.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// The name given at login.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// Adds `fields` with their values, refusing an object that has one
/// already (it is not of the version it claims).
fn with_fields(mut stored: Fields, added: &[(&str, serde_json::Value)]) -> Result<Fields, String> {
    for (name, value) in added {
        if stored.insert((*name).to_owned(), value.clone()).is_some() {
            return Err(format!("{name} is there already"));
        }
    }
    Ok(stored)
}

/// `TokenIssued` → `.v2`: issued to an unknown client, before any
/// password change.
fn issued_nowhere_known(fields: Fields) -> Result<Fields, String> {
    with_fields(
        fields,
        &[
            ("client", serde_json::Value::Null),
            ("credentials", 0.into()),
        ],
    )
}

/// `TokenRevoked` → `.v2`: by an unknown request.
fn revoked_by_unknown(fields: Fields) -> Result<Fields, String> {
    with_fields(fields, &[("by", serde_json::Value::Null)])
}

/// `LoginThrottled` → `.v2`: from an unknown client.
fn throttled_from_unknown(fields: Fields) -> Result<Fields, String> {
    with_fields(fields, &[("client", serde_json::Value::Null)])
}

/// `UserRegistered` → `.v2`: `username`, `email` and `password_hash` move
/// into `personal`.
fn personal_in_one_object(mut fields: Fields) -> Result<Fields, String> {
    let mut personal = Fields::new();
    for name in ["username", "email", "password_hash"] {
        let value = fields.remove(name).ok_or(format!("no {name}"))?;
        if !value.is_string() {
            return Err(format!("{name} is not text"));
        }
        personal.insert(name.into(), value);
    }
    fields.insert("personal".into(), personal.into());
    Ok(fields)
}

/// A token handed out: its digest and its expiry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    /// The token's digest.
    pub digest: TokenDigest,
    /// When it stops being valid.
    pub expires_at: DateTime<Utc>,
}

/// A token handed out, as its `TokenIssued` records it: the grant, where
/// to (sealed), and under which password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    /// The token.
    pub grant: Grant,
    /// [`ClientInfo`] sealed under the user's key.
    pub client: Option<String>,
    /// How many password changes the login saw (see
    /// `AuthEvent::TokenIssued`).
    pub credentials: u32,
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
