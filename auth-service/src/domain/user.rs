//! One user's stream: registration, tokens issued and revoked, throttled
//! logins noted.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use event_sourcing::decider::Decider;

use super::events::{AuthEvent, Issue, Rejection, StoredPersonal};
use super::values::UserId;
use crate::token::TokenDigest;

/// The event stream of one user, named by their id (no personal data in
/// stream names): `account-<id>`. Users registered before sealing have
/// streams named by their normalized username (`user-<name>`, a prefix no
/// new stream takes, so a numeric username never meets an id); the read
/// model remembers each user's stream.
pub fn user_stream(user: UserId) -> String {
    format!("account-{user}")
}

/// The stream whose versions allocate user ids (see `event_store::ids`).
pub const USER_IDS_STREAM: &str = "user-ids";

/// What may be asked of one user's stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserCommand {
    /// Create the user, with a first token.
    Register {
        /// A freshly allocated id.
        user_id: UserId,
        /// MAC of the normalized username.
        name: String,
        /// MAC of its skeleton.
        skeleton: String,
        /// The username, email and password hash, sealed (see
        /// `AuthEvent::UserRegistered`).
        sealed: String,
        /// The first token.
        issue: Issue,
    },
    /// Issue a token (the caller has checked the password).
    IssueToken(Issue),
    /// Revoke one token, if the user holds it (the caller has checked that
    /// it is live: its expiry may have been refreshed).
    RevokeToken {
        /// The token's digest.
        digest: TokenDigest,
        /// The token of the request.
        by: TokenDigest,
    },
    /// Change the password (the caller has checked the old one): the
    /// personal data sealed anew, and every token but `kept` revoked.
    ChangePassword {
        /// `Personal` with the new hash, sealed.
        sealed: String,
        /// The request's token, which must still be held.
        kept: TokenDigest,
    },
    /// Note a wrong password given for the user, from `client` (sealed).
    NoteFailed {
        /// `ClientInfo`, sealed.
        client: Option<String>,
    },
    /// Revoke every token of the user.
    RevokeAllTokens,
    /// Erase the user (the caller has checked the password).
    Erase,
    /// Note that a login was refused as throttled at `now` (nothing, if
    /// one was noted less than [`THROTTLE_NOTE_EVERY`] before).
    NoteThrottled {
        /// The time of the refusal.
        now: DateTime<Utc>,
        /// `ClientInfo` of the refused attempt, sealed.
        client: Option<String>,
    },
}

/// A command to one user, by their stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToUser {
    /// The user's stream ([`user_stream`], or an older user's `user-<name>`).
    pub stream: String,
    /// What is asked of them.
    pub command: UserCommand,
}

impl UserCommand {
    /// This command, to the user whose stream is `stream`.
    pub fn to(self, stream: impl Into<String>) -> ToUser {
        ToUser {
            stream: stream.into(),
            command: self,
        }
    }
}

/// The least time between two `LoginThrottled` events of one user: a flood
/// of refused logins writes one event a minute, not one per attempt.
pub const THROTTLE_NOTE_EVERY: chrono::TimeDelta = chrono::TimeDelta::minutes(1);

/// A registered user, as their stream tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// Its id.
    pub user_id: UserId,
    /// The username, email and password hash.
    pub personal: StoredPersonal,
    /// Tokens issued and not revoked (live or expired: the read model
    /// knows their refreshed expiries).
    tokens: HashSet<TokenDigest>,
    /// How many times the password changed.
    pub password_changes: u32,
    /// When a throttled login was last noted.
    throttled_at: Option<DateTime<Utc>>,
}

impl Account {
    fn new(user_id: UserId, personal: StoredPersonal) -> Self {
        Self {
            user_id,
            personal,
            tokens: HashSet::new(),
            password_changes: 0,
            throttled_at: None,
        }
    }
}

/// One user's stream: the decider of registration and tokens.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum User {
    /// Nobody has this username.
    #[default]
    Unregistered,
    /// The user exists.
    Registered(Account),
    /// The user was erased: nothing is asked of them any more.
    Erased,
}

impl User {
    /// The account, if registered.
    pub fn account(&self) -> Option<&Account> {
        match self {
            Self::Unregistered | Self::Erased => None,
            Self::Registered(a) => Some(a),
        }
    }
}

pub(super) fn issued(user_id: UserId, issue: &Issue) -> AuthEvent {
    AuthEvent::TokenIssued {
        user_id,
        digest: issue.grant.digest,
        expires_at: issue.grant.expires_at,
        client: issue.client.clone(),
        credentials: issue.credentials,
    }
}

impl Decider for User {
    type Command = ToUser;
    type Event = AuthEvent;
    type State = User;
    type Rejection = Rejection;

    fn stream(c: &ToUser) -> String {
        c.stream.clone()
    }

    /// Registering starts the user's stream: appending its first event
    /// expecting no stream claims the name.
    fn starts_stream(c: &ToUser) -> bool {
        matches!(c.command, UserCommand::Register { .. })
    }

    fn decide(c: &ToUser, state: &User) -> Result<Vec<AuthEvent>, Rejection> {
        match (&c.command, state) {
            (UserCommand::Register { .. }, User::Registered(_) | User::Erased) => {
                Err(Rejection::UsernameTaken)
            }
            (_, User::Erased) => Err(Rejection::InvalidToken),
            (UserCommand::Erase, User::Registered(a)) => {
                Ok(vec![AuthEvent::UserErased { user_id: a.user_id }])
            }
            (
                UserCommand::Register {
                    user_id,
                    name,
                    skeleton,
                    sealed,
                    issue,
                },
                User::Unregistered,
            ) => Ok(vec![
                AuthEvent::UserRegistered {
                    user_id: *user_id,
                    name: name.clone(),
                    skeleton: skeleton.clone(),
                    sealed: sealed.clone(),
                },
                issued(*user_id, issue),
            ]),
            (
                UserCommand::IssueToken(_)
                | UserCommand::NoteThrottled { .. }
                | UserCommand::NoteFailed { .. },
                User::Unregistered,
            ) => Err(Rejection::UnknownUser),
            (_, User::Unregistered) => Err(Rejection::InvalidToken),
            (UserCommand::IssueToken(issue), User::Registered(a)) => {
                Ok(vec![issued(a.user_id, issue)])
            }
            (UserCommand::RevokeToken { digest, by }, User::Registered(a)) => {
                if !a.tokens.contains(digest) {
                    return Err(Rejection::InvalidToken);
                }
                Ok(vec![AuthEvent::TokenRevoked {
                    user_id: a.user_id,
                    digest: *digest,
                    by: Some(*by),
                }])
            }
            (UserCommand::ChangePassword { sealed, kept }, User::Registered(a)) => {
                if !a.tokens.contains(kept) {
                    return Err(Rejection::InvalidToken);
                }
                Ok(vec![AuthEvent::PasswordChanged {
                    user_id: a.user_id,
                    sealed: sealed.clone(),
                    kept: Some(*kept),
                }])
            }
            (UserCommand::NoteFailed { client }, User::Registered(a)) => {
                Ok(vec![AuthEvent::LoginFailed {
                    user_id: a.user_id,
                    client: client.clone(),
                }])
            }
            (UserCommand::RevokeAllTokens, User::Registered(a)) => {
                Ok(vec![AuthEvent::AllTokensRevoked { user_id: a.user_id }])
            }
            (UserCommand::NoteThrottled { now, client }, User::Registered(a)) => {
                if a.throttled_at
                    .is_some_and(|at| *now - at < THROTTLE_NOTE_EVERY)
                {
                    return Ok(vec![]);
                }
                Ok(vec![AuthEvent::LoginThrottled {
                    user_id: a.user_id,
                    at: *now,
                    client: client.clone(),
                }])
            }
        }
    }

    /// Issuing a token, revoking every token and noting a failure only
    /// add to a registered user's stream: concurrent logins of one user
    /// must not conflict. (A token issued under a password changed
    /// meanwhile is dead on arrival: see `AuthEvent::TokenIssued`.)
    fn commutes(c: &ToUser) -> bool {
        matches!(
            c.command,
            UserCommand::IssueToken(_)
                | UserCommand::RevokeAllTokens
                | UserCommand::NoteFailed { .. }
        )
    }

    fn evolve(state: User, event: &AuthEvent) -> User {
        match (state, event) {
            (
                User::Unregistered,
                AuthEvent::UserRegistered {
                    user_id, sealed, ..
                },
            ) => User::Registered(Account::new(
                *user_id,
                StoredPersonal::Sealed(sealed.clone()),
            )),
            (User::Unregistered, AuthEvent::UserRegisteredInClear { user_id, personal }) => {
                User::Registered(Account::new(
                    *user_id,
                    StoredPersonal::Clear(personal.clone()),
                ))
            }
            (User::Registered(_), AuthEvent::UserErased { .. }) => User::Erased,
            (User::Registered(mut a), event) => {
                match event {
                    AuthEvent::TokenIssued {
                        digest,
                        credentials,
                        ..
                    } => {
                        if *credentials >= a.password_changes {
                            a.tokens.insert(*digest);
                        }
                    }
                    AuthEvent::TokenRevoked { digest, .. } => {
                        a.tokens.remove(digest);
                    }
                    AuthEvent::AllTokensRevoked { .. } => a.tokens.clear(),
                    AuthEvent::LoginThrottled { at, .. } => a.throttled_at = Some(*at),
                    AuthEvent::PasswordChanged { sealed, kept, .. } => {
                        a.personal = StoredPersonal::Sealed(sealed.clone());
                        a.password_changes += 1;
                        a.tokens.retain(|d| Some(d) == kept.as_ref());
                    }
                    AuthEvent::LoginFailed { .. }
                    | AuthEvent::TokenRefreshed { .. }
                    | AuthEvent::UserRegistered { .. }
                    | AuthEvent::UserRegisteredInClear { .. }
                    | AuthEvent::UserErased { .. }
                    | AuthEvent::UsernameClaimed { .. }
                    | AuthEvent::UsernameReleased { .. }
                    | AuthEvent::UsernameClaimedInClear { .. } => {}
                }
                User::Registered(a)
            }
            (state, _) => state,
        }
    }
}
