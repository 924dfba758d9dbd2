//! What an auth call can fail with, and the one place it becomes a
//! `tonic::Status`.

use event_sourcing::decider::CommandError;
use event_sourcing::idempotency::{KeyReused, KeyedError};
use event_sourcing::read_model::{NotApplied, StaleRead};
use event_store::EventStoreError;
use platform::FieldError;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::domain::Rejection;

/// What an auth call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// One or more request fields are invalid.
    #[error("invalid request: {0:?}")]
    Invalid(Vec<FieldError>),
    /// The username is taken (case-insensitively).
    #[error("username taken")]
    UsernameTaken,
    /// The idempotency key was used before for another request.
    #[error("idempotency key reused for another request")]
    KeyReused,
    /// Wrong username or password (deliberately the same error for both).
    #[error("incorrect credentials")]
    IncorrectCredentials,
    /// Too many failed logins for this username.
    #[error("login throttled for {retry_after_secs} s")]
    Throttled {
        /// Seconds until a login may be tried again.
        retry_after_secs: u64,
    },
    /// The token is unknown, revoked, expired or malformed.
    #[error("invalid token")]
    InvalidToken,
    /// More tokens in one `AuthenticateMany` than it checks.
    #[error("more than {limit} tokens in one check")]
    TooManyTokens {
        /// The most tokens one call checks.
        limit: usize,
    },
    /// No live token of the caller has this id.
    #[error("no such token")]
    NoSuchToken,
    /// The account was stored before personal data was sealed: it cannot
    /// be erased until the store is upgraded (see README).
    #[error(
        "this account was stored before personal data was sealed; the store must be upgraded before it can be erased"
    )]
    NotSealed,
    /// The change committed but this instance has not applied it in time.
    #[error(transparent)]
    NotYetApplied(#[from] NotApplied),
    /// The event store failed.
    #[error(transparent)]
    Store(#[from] EventStoreError),
    /// Every hashing thread is busy and the queue is full: try again shortly.
    #[error("password hashing is saturated")]
    Busy,
    /// The login throttle's books could not be read or written.
    #[error("login throttle: {0}")]
    Throttle(String),
    /// Hashing or the random number generator failed (not a client's fault).
    #[error("password hashing failed: {0}")]
    Hashing(String),
    /// The key table could not be read or written.
    #[error(transparent)]
    Keys(#[from] crate::keys::KeyError),
}

impl From<KeyReused> for AuthError {
    fn from(_: KeyReused) -> Self {
        Self::KeyReused
    }
}

impl KeyedError for AuthError {
    /// "Username taken" may be the same registration's first copy; a
    /// duplicate event id is one.
    fn may_be_replay(&self) -> bool {
        matches!(
            self,
            Self::UsernameTaken | Self::Store(EventStoreError::DuplicateEventId(_))
        )
    }

    fn not_indexed() -> Self {
        Self::Store(EventStoreError::Corrupt {
            position: 0,
            reason: "a keyed command's record is missing from the read model".into(),
        })
    }
}

impl From<StaleRead> for AuthError {
    fn from(e: StaleRead) -> Self {
        match e {
            StaleRead::Store(e) => Self::Store(e),
            StaleRead::NotApplied(e) => Self::NotYetApplied(e),
        }
    }
}

/// `Result` with [`AuthError`].
pub type Result<T, E = AuthError> = std::result::Result<T, E>;

impl From<Rejection> for AuthError {
    fn from(r: Rejection) -> Self {
        match r {
            Rejection::UsernameTaken => Self::UsernameTaken,
            Rejection::UnknownUser => Self::IncorrectCredentials,
            Rejection::InvalidToken => Self::InvalidToken,
        }
    }
}

impl From<CommandError<Rejection>> for AuthError {
    fn from(e: CommandError<Rejection>) -> Self {
        match e {
            CommandError::Rejected(r) => r.into(),
            CommandError::Store(e) => e.into(),
        }
    }
}

impl From<AuthError> for Status {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Invalid(errors) => {
                platform::field_errors(Code::InvalidArgument, "invalid request", &errors)
            }
            AuthError::UsernameTaken => {
                let message = "A user with that username already exists.";
                let taken = [FieldError::new("username", message)];
                platform::field_errors(Code::AlreadyExists, message, &taken)
            }
            AuthError::IncorrectCredentials => {
                let message = "Incorrect Credentials";
                let wrong = [FieldError::new("non_field_errors", message)];
                platform::field_errors(Code::InvalidArgument, message, &wrong)
            }
            AuthError::Throttled { retry_after_secs } => platform::throttled(retry_after_secs),
            AuthError::InvalidToken => Status::unauthenticated("Invalid token."),
            AuthError::NoSuchToken => Status::not_found("No such token."),
            AuthError::TooManyTokens { limit } => {
                Status::invalid_argument(format!("at most {limit} tokens in one check"))
            }
            AuthError::KeyReused => Status::failed_precondition(platform::KEY_REUSED),
            AuthError::NotYetApplied(_) => {
                Status::unavailable("the change is stored but not yet visible; retry")
            }
            AuthError::Store(e) => {
                tracing::error!(error = %e, "event store failure");
                Status::unavailable("storage unavailable")
            }
            AuthError::Busy => Status::with_error_details(
                Code::Unavailable,
                "too many logins and registrations at once; retry shortly",
                ErrorDetails::with_retry_info(Some(std::time::Duration::from_secs(1))),
            ),
            AuthError::Throttle(e) => {
                tracing::error!(error = %e, "login throttle failure");
                Status::unavailable("storage unavailable")
            }
            AuthError::Hashing(e) => {
                tracing::error!(error = %e, "password hashing failure");
                Status::internal("internal error")
            }
            AuthError::NotSealed => Status::failed_precondition(
                "this account was stored before personal data was sealed; \
                 the store must be upgraded before it can be erased",
            ),
            AuthError::Keys(e) => {
                tracing::error!(error = %e, "key table failure");
                Status::unavailable("storage unavailable")
            }
        }
    }
}
