//! auth's events as the feed's consumers see them: ids only.
//!
//! Each event is reduced to a public form of its own (`movies.auth.<Name>.v1`,
//! listed in the README): the user's id, tokens by their listed id (a MAC
//! of the digest under the pepper, as `GET /api/auth/tokens` shows them),
//! times. Never a username, an email, a password hash, a token digest or
//! anything sealed. A token's stream (`token-<digest>`) is named
//! `token-<id>`; a stream of an earlier release named by a username is
//! named `account-<user id>`. Username claims are bookkeeping of
//! uniqueness and are left out, as are events that cannot be read (logged).

use std::sync::Arc;

use event_sourcing::consumer_group::Opener;
use event_store::{Event as _, RecordedEvent, ids};
use platform::feed::{CloudEvent, envelope};
use serde_json::json;

use crate::domain::{AuthEvent, UserId};
use crate::seal::Pepper;
use crate::sessions::token_id;

/// What the feed's consumers are sent of each stored event.
pub fn opener(pepper: Pepper) -> Opener<CloudEvent> {
    Arc::new(move |event| {
        if ids::is_allocation(event) {
            return None;
        }
        let decoded = match AuthEvent::from_recorded(event) {
            Ok(e) => e,
            Err(e) => {
                tracing::error!(position = event.position, error = %e, "a stored event cannot be read; not sent to the feed");
                return None;
            }
        };
        let (name, user, data) = public(&decoded, &pepper)?;
        let subject = subject(event, user, &pepper, &decoded);
        let data = serde_json::value::to_raw_value(&data).ok()?;
        Some(envelope("auth", event, name, subject, data))
    })
}

/// The stream's name as consumers see it.
fn subject(event: &RecordedEvent, user: UserId, pepper: &Pepper, decoded: &AuthEvent) -> String {
    if event.stream.starts_with("account-") {
        return event.stream.clone();
    }
    if let AuthEvent::TokenRefreshed { digest, .. } = decoded {
        return format!("token-{}", token_id(pepper, digest));
    }
    format!("account-{user}")
}

/// An event's public name, its user, and its public data.
fn public(event: &AuthEvent, pepper: &Pepper) -> Option<(&'static str, UserId, serde_json::Value)> {
    let token = |digest| token_id(pepper, digest);
    Some(match event {
        AuthEvent::UserRegistered { user_id, .. }
        | AuthEvent::UserRegisteredInClear { user_id, .. } => {
            ("UserRegistered", *user_id, json!({ "user_id": user_id }))
        }
        AuthEvent::TokenIssued {
            user_id,
            digest,
            expires_at,
            ..
        } => (
            "TokenIssued",
            *user_id,
            json!({ "user_id": user_id, "token": token(digest), "expires_at": expires_at }),
        ),
        AuthEvent::TokenRevoked {
            user_id,
            digest,
            by,
        } => (
            "TokenRevoked",
            *user_id,
            json!({ "user_id": user_id, "token": token(digest), "by": by.as_ref().map(token) }),
        ),
        AuthEvent::AllTokensRevoked { user_id } => {
            ("AllTokensRevoked", *user_id, json!({ "user_id": user_id }))
        }
        AuthEvent::LoginThrottled { user_id, at, .. } => (
            "LoginThrottled",
            *user_id,
            json!({ "user_id": user_id, "at": at }),
        ),
        AuthEvent::LoginFailed { user_id, .. } => {
            ("LoginFailed", *user_id, json!({ "user_id": user_id }))
        }
        AuthEvent::PasswordChanged { user_id, kept, .. } => (
            "PasswordChanged",
            *user_id,
            json!({ "user_id": user_id, "kept": kept.as_ref().map(token) }),
        ),
        AuthEvent::TokenRefreshed {
            user_id,
            digest,
            expires_at,
        } => (
            "TokenRefreshed",
            *user_id,
            json!({ "user_id": user_id, "token": token(digest), "expires_at": expires_at }),
        ),
        AuthEvent::UserErased { user_id } => {
            ("UserErased", *user_id, json!({ "user_id": user_id }))
        }
        AuthEvent::UsernameClaimed { .. }
        | AuthEvent::UsernameReleased { .. }
        | AuthEvent::UsernameClaimedInClear { .. } => return None,
    })
}
