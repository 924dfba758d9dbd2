//! The auth service's commands and queries: rules in, events out.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use event_store::ids::IdSequence;
use event_store::projection::Projection;
use event_store::{EventStore, EventStoreError, ExpectedVersion};

use crate::domain::{
    AuthError, AuthEvent, Email, FieldError, MAX_USERNAME, Password, Result, USER_IDS_STREAM,
    Username, normalize_username, user_stream,
};
use crate::password::PasswordHasher;
use crate::state::{UserRecord, Users};
use crate::throttle::LoginThrottle;
use crate::token::{self, TokenDigest};

/// How long a command waits for its own events to reach the read model.
const APPLY_TIMEOUT: Duration = Duration::from_secs(5);

/// A user as shown to clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Positive, unique, increasing.
    pub id: i64,
    /// As registered.
    pub username: String,
    /// As registered.
    pub email: String,
}

impl From<&UserRecord> for User {
    fn from(u: &UserRecord) -> Self {
        Self {
            id: u.id,
            username: u.username.clone(),
            email: u.email.clone(),
        }
    }
}

/// A freshly issued token and its owner.
#[derive(Debug, Clone)]
pub struct Session {
    /// The owner.
    pub user: User,
    /// 64 hex characters, shown once.
    pub token: String,
    /// When the token stops being valid.
    pub expiry: DateTime<Utc>,
}

/// Users and tokens over an event store.
pub struct Auth {
    store: Arc<dyn EventStore>,
    users: Projection<Users>,
    hasher: PasswordHasher,
    throttle: LoginThrottle,
    token_ttl: chrono::Duration,
    user_ids: IdSequence,
}

impl Auth {
    /// Rebuilds the read model from `store` and returns once it is current.
    pub async fn start(
        store: Arc<dyn EventStore>,
        token_ttl: Duration,
        throttle: LoginThrottle,
    ) -> Result<Self> {
        let hasher = PasswordHasher::new()?;
        let users = Projection::start(store.clone(), Users::default()).await?;
        {
            let model = users.read();
            tracing::info!(
                users = model.user_count(),
                tokens = model.token_count(),
                "auth read model rebuilt"
            );
        }
        Ok(Self {
            store,
            users,
            hasher,
            throttle,
            token_ttl: chrono::Duration::from_std(token_ttl).unwrap_or(chrono::Duration::MAX),
            user_ids: IdSequence::new(USER_IDS_STREAM, "UserIdAllocated"),
        })
    }

    /// Creates a user and a first token.
    #[tracing::instrument(skip_all, fields(username = %username))]
    pub async fn register(&self, username: &str, email: &str, password: String) -> Result<Session> {
        let (username, email, password) = collect_fields(
            Username::parse(username),
            Email::parse(email),
            Password::parse_new(password),
        )?;
        let normalized = normalize_username(username.as_str());
        if self.users.read().by_username(&normalized).is_some() {
            return Err(AuthError::UsernameTaken);
        }
        let password_hash = self.hasher.hash(password).await?;
        let user_id = self.user_ids.next(&self.store).await?;
        let (token, digest, expiry) = self.new_token()?;
        let events = [
            AuthEvent::UserRegistered {
                user_id,
                username: username.as_str().to_owned(),
                email: email.as_str().to_owned(),
                password_hash,
            },
            token_issued(user_id, &digest, expiry),
        ];
        let appended = self
            .store
            .append(
                &user_stream(&normalized),
                ExpectedVersion::NoStream,
                events.iter().map(AuthEvent::to_new_event).collect(),
            )
            .await;
        let position = match appended {
            Ok(r) => r.position,
            Err(EventStoreError::WrongExpectedVersion { .. }) => {
                return Err(AuthError::UsernameTaken);
            }
            Err(e) => return Err(e.into()),
        };
        self.await_applied(position).await?;
        tracing::info!(user_id, "user registered");
        let user = User {
            id: user_id,
            username: username.as_str().to_owned(),
            email: email.as_str().to_owned(),
        };
        Ok(Session {
            user,
            token,
            expiry,
        })
    }

    /// Issues a new token for a correct username and password.
    #[tracing::instrument(skip_all, fields(username = %username))]
    pub async fn login(&self, username: &str, password: String) -> Result<Session> {
        let mut errors = Vec::new();
        if username.is_empty() {
            errors.push(field("username", "This field may not be blank."));
        } else if username.chars().count() > MAX_USERNAME {
            errors.push(field(
                "username",
                "Ensure this field has no more than 150 characters.",
            ));
        }
        let password = Password::parse_given(password)
            .map_err(|e| errors.push(e))
            .ok();
        let Some(password) = password.filter(|_| errors.is_empty()) else {
            return Err(AuthError::Invalid(errors));
        };
        let key = normalize_username(username);
        if let Err(retry_after_secs) = self.throttle.check(&key) {
            return Err(AuthError::Throttled { retry_after_secs });
        }
        let user = self.users.read().by_username(&key).cloned();
        let hash = user.as_ref().map(|u| u.password_hash.clone());
        if !self.hasher.verify(password, hash).await? {
            self.throttle.record_failure(&key);
            return Err(AuthError::IncorrectCredentials);
        }
        let user = user.ok_or(AuthError::IncorrectCredentials)?;
        self.throttle.reset(&key);
        let (token, digest, expiry) = self.new_token()?;
        self.append_for(&user, token_issued(user.id, &digest, expiry))
            .await?;
        tracing::info!(user_id = user.id, "token issued");
        Ok(Session {
            user: User::from(&user),
            token,
            expiry,
        })
    }

    /// The user a live token belongs to: an in-memory lookup.
    pub fn authenticate(&self, token: &str) -> Result<User> {
        let digest = token::parse(token).ok_or(AuthError::InvalidToken)?;
        self.user_of(&digest).map(|u| User::from(&u))
    }

    /// Revokes `token`; the next `authenticate` with it fails.
    pub async fn logout(&self, token: &str) -> Result<()> {
        let digest = token::parse(token).ok_or(AuthError::InvalidToken)?;
        let user = self.user_of(&digest)?;
        let event = AuthEvent::TokenRevoked {
            user_id: user.id,
            digest: hex::encode(digest),
        };
        self.append_for(&user, event).await?;
        tracing::info!(user_id = user.id, "token revoked");
        Ok(())
    }

    /// Revokes every token of `token`'s user.
    pub async fn logout_all(&self, token: &str) -> Result<()> {
        let digest = token::parse(token).ok_or(AuthError::InvalidToken)?;
        let user = self.user_of(&digest)?;
        self.append_for(&user, AuthEvent::AllTokensRevoked { user_id: user.id })
            .await?;
        tracing::info!(user_id = user.id, "all tokens revoked");
        Ok(())
    }

    fn user_of(&self, digest: &TokenDigest) -> Result<UserRecord> {
        self.users
            .read()
            .by_token(digest, Utc::now())
            .cloned()
            .ok_or(AuthError::InvalidToken)
    }

    fn new_token(&self) -> Result<(String, TokenDigest, DateTime<Utc>)> {
        let (token, digest) = token::generate().map_err(|e| AuthError::Hashing(e.to_string()))?;
        let expiry = Utc::now()
            .checked_add_signed(self.token_ttl)
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        Ok((token, digest, expiry))
    }

    /// Appends one event to `user`'s stream and waits until it is applied.
    async fn append_for(&self, user: &UserRecord, event: AuthEvent) -> Result<()> {
        let stream = user_stream(&normalize_username(&user.username));
        let appended = self
            .store
            .append(&stream, ExpectedVersion::Any, vec![event.to_new_event()])
            .await?;
        self.await_applied(appended.position).await
    }

    async fn await_applied(&self, position: u64) -> Result<()> {
        if self.users.wait_for(position, APPLY_TIMEOUT).await {
            Ok(())
        } else {
            tracing::error!(
                position,
                "read model did not apply a committed event in time"
            );
            Err(AuthError::NotYetApplied)
        }
    }
}

fn field(name: &'static str, message: &str) -> FieldError {
    FieldError {
        field: name,
        message: message.to_owned(),
    }
}

fn token_issued(user_id: i64, digest: &TokenDigest, expires_at: DateTime<Utc>) -> AuthEvent {
    AuthEvent::TokenIssued {
        user_id,
        digest: hex::encode(digest),
        expires_at,
    }
}

/// All three parsed, or every field error at once.
fn collect_fields<A, B, C>(
    a: Result<A, FieldError>,
    b: Result<B, FieldError>,
    c: Result<C, FieldError>,
) -> Result<(A, B, C)> {
    match (a, b, c) {
        (Ok(a), Ok(b), Ok(c)) => Ok((a, b, c)),
        (a, b, c) => Err(AuthError::Invalid(
            [a.err(), b.err(), c.err()].into_iter().flatten().collect(),
        )),
    }
}
