//! What a catalog call can fail with, and the one place it becomes a
//! `tonic::Status`.

use event_sourcing::decider::CommandError;
use event_sourcing::idempotency::{KeyReused, KeyedError};
use event_sourcing::read_model::{NotApplied, StaleRead};
use event_store::EventStoreError;
use platform::FieldError;
use tonic::{Code, Status};

use crate::domain::Rejection;

/// What a catalog call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// One or more request fields are invalid.
    #[error("invalid request: {0:?}")]
    Invalid(Vec<FieldError>),
    /// No credentials were sent.
    #[error("no credentials")]
    NoCredentials,
    /// The token is unknown, revoked, expired or malformed.
    #[error("invalid token")]
    InvalidToken,
    /// The caller may not rate this movie (added it, or rated it already).
    #[error("rating refused")]
    CannotRate,
    /// No such movie.
    #[error("not found")]
    NotFound,
    /// The idempotency key was used before for another request.
    #[error("idempotency key reused for another request")]
    KeyReused,
    /// A rating-list cut that no answer of ours gave (bad tag length).
    #[error("invalid rating-list cut")]
    InvalidCut,
    /// A movie-list cursor that no answer of ours gave for this ordering.
    #[error("invalid cursor")]
    InvalidCursor,
    /// The user added as many movies and ratings as the write quota allows
    /// in its window.
    #[error("write quota used up for {retry_after_secs} s")]
    WriteQuota {
        /// Seconds until one more write is allowed.
        retry_after_secs: u64,
    },
    /// SubscribeEvents without the right service key.
    #[error("service key required")]
    ServiceKeyRequired,
    /// auth-service could not be asked.
    #[error("identity check unavailable: {0}")]
    IdentityUnavailable(String),
    /// The change committed but this instance has not applied it in time.
    #[error(transparent)]
    NotYetApplied(#[from] NotApplied),
    /// The event store failed.
    #[error(transparent)]
    Store(#[from] EventStoreError),
}

impl From<KeyReused> for CatalogError {
    fn from(_: KeyReused) -> Self {
        Self::KeyReused
    }
}

impl KeyedError for CatalogError {
    /// A rating refused as "rated already" may be the same request's first
    /// copy; a duplicate event id is one.
    fn may_be_replay(&self) -> bool {
        matches!(
            self,
            Self::CannotRate | Self::Store(EventStoreError::DuplicateEventId(_))
        )
    }

    fn not_indexed() -> Self {
        Self::Store(EventStoreError::Corrupt {
            position: 0,
            reason: "a keyed command's record is missing from the read model".into(),
        })
    }
}

impl From<StaleRead> for CatalogError {
    fn from(e: StaleRead) -> Self {
        match e {
            StaleRead::Store(e) => Self::Store(e),
            StaleRead::NotApplied(e) => Self::NotYetApplied(e),
        }
    }
}

/// `Result` with [`CatalogError`].
pub type Result<T, E = CatalogError> = std::result::Result<T, E>;

impl From<FieldError> for CatalogError {
    fn from(e: FieldError) -> Self {
        Self::Invalid(vec![e])
    }
}

impl From<Rejection> for CatalogError {
    fn from(r: Rejection) -> Self {
        match r {
            Rejection::UnknownMovie(id) => FieldError::new(
                "movie",
                format!("Invalid pk \"{id}\" - object does not exist."),
            )
            .into(),
            Rejection::CannotRate => Self::CannotRate,
            Rejection::MovieExists(id) => Self::Store(EventStoreError::Corrupt {
                position: 0,
                reason: format!("movie id {id} allocated twice"),
            }),
        }
    }
}

impl From<CommandError<Rejection>> for CatalogError {
    fn from(e: CommandError<Rejection>) -> Self {
        match e {
            CommandError::Rejected(r) => r.into(),
            CommandError::Store(e) => e.into(),
        }
    }
}

impl From<CatalogError> for Status {
    fn from(e: CatalogError) -> Self {
        match e {
            CatalogError::Invalid(errors) => {
                platform::field_errors(Code::InvalidArgument, "invalid request", &errors)
            }
            CatalogError::NoCredentials => {
                Status::unauthenticated("Authentication credentials were not provided.")
            }
            CatalogError::InvalidToken => Status::unauthenticated("Invalid token."),
            CatalogError::CannotRate => Status::permission_denied("You cant rate it "),
            CatalogError::NotFound => Status::not_found("Not found."),
            // DRF's CursorPagination: 404 "Invalid cursor".
            CatalogError::InvalidCursor => Status::not_found("Invalid cursor"),
            CatalogError::InvalidCut => Status::invalid_argument("cut: not one this service gave"),
            CatalogError::KeyReused => Status::failed_precondition(platform::KEY_REUSED),
            CatalogError::WriteQuota { retry_after_secs } => platform::throttled(retry_after_secs),
            CatalogError::ServiceKeyRequired => {
                Status::permission_denied("a valid x-service-key is required")
            }
            CatalogError::IdentityUnavailable(cause) => {
                tracing::warn!(%cause, "cannot check the caller's token");
                Status::unavailable("authentication service unavailable")
            }
            CatalogError::NotYetApplied(_) => {
                Status::unavailable("the change is stored but not yet visible; retry")
            }
            CatalogError::Store(e) => {
                tracing::error!(error = %e, "event store failure");
                Status::unavailable("storage unavailable")
            }
        }
    }
}
