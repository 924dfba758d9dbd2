//! The gRPC face of [`Auth`]: translation only, and the one place where
//! domain errors become `tonic::Status`.

use std::sync::Arc;

use proto::auth::auth_service_server::AuthService;
use proto::auth::{
    AuthenticateRequest, LoginRequest, LogoutAllRequest, LogoutAllResponse, LogoutRequest,
    LogoutResponse, RegisterRequest, Session, User,
};
use tonic::{Code, Request, Response, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::auth::{self, Auth};
use crate::domain::AuthError;

/// The `movies.auth.v1.AuthService` implementation.
pub struct AuthGrpc {
    auth: Arc<Auth>,
}

impl AuthGrpc {
    /// Serves `auth`.
    pub fn new(auth: Arc<Auth>) -> Self {
        Self { auth }
    }
}

#[tonic::async_trait]
impl AuthService for AuthGrpc {
    async fn register(
        &self,
        request: Request<RegisterRequest>,
    ) -> Result<Response<Session>, Status> {
        let r = request.into_inner();
        let session = self
            .auth
            .register(&r.username, &r.email, r.password)
            .await?;
        Ok(Response::new(session_message(session)))
    }

    async fn login(&self, request: Request<LoginRequest>) -> Result<Response<Session>, Status> {
        let r = request.into_inner();
        let session = self.auth.login(&r.username, r.password).await?;
        Ok(Response::new(session_message(session)))
    }

    async fn authenticate(
        &self,
        request: Request<AuthenticateRequest>,
    ) -> Result<Response<User>, Status> {
        let user = self.auth.authenticate(&request.get_ref().token)?;
        Ok(Response::new(user_message(user)))
    }

    async fn logout(
        &self,
        request: Request<LogoutRequest>,
    ) -> Result<Response<LogoutResponse>, Status> {
        self.auth.logout(&request.get_ref().token).await?;
        Ok(Response::new(LogoutResponse {}))
    }

    async fn logout_all(
        &self,
        request: Request<LogoutAllRequest>,
    ) -> Result<Response<LogoutAllResponse>, Status> {
        self.auth.logout_all(&request.get_ref().token).await?;
        Ok(Response::new(LogoutAllResponse {}))
    }
}

fn user_message(u: auth::User) -> User {
    User {
        id: u.id,
        username: u.username,
        email: u.email,
    }
}

fn session_message(s: auth::Session) -> Session {
    Session {
        user: Some(user_message(s.user)),
        token: s.token,
        expiry: Some(prost_types::Timestamp {
            seconds: s.expiry.timestamp(),
            nanos: s.expiry.timestamp_subsec_nanos() as i32,
        }),
    }
}

fn bad_request(code: Code, message: &str, violations: &[(&str, &str)]) -> Status {
    let mut details = ErrorDetails::new();
    for (field, description) in violations {
        details.add_bad_request_violation(*field, *description);
    }
    Status::with_error_details(code, message, details)
}

impl From<AuthError> for Status {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Invalid(errors) => {
                let v: Vec<(&str, &str)> = errors
                    .iter()
                    .map(|e| (e.field, e.message.as_str()))
                    .collect();
                bad_request(Code::InvalidArgument, "invalid request", &v)
            }
            AuthError::UsernameTaken => {
                let message = "A user with that username already exists.";
                bad_request(Code::AlreadyExists, message, &[("username", message)])
            }
            AuthError::IncorrectCredentials => bad_request(
                Code::InvalidArgument,
                "Incorrect Credentials",
                &[("non_field_errors", "Incorrect Credentials")],
            ),
            AuthError::Throttled { retry_after_secs } => Status::with_error_details(
                Code::ResourceExhausted,
                format!("Request was throttled. Expected available in {retry_after_secs} seconds."),
                ErrorDetails::with_retry_info(Some(std::time::Duration::from_secs(
                    retry_after_secs,
                ))),
            ),
            AuthError::InvalidToken => Status::unauthenticated("Invalid token."),
            AuthError::NotYetApplied => {
                Status::unavailable("the change is stored but not yet visible; retry")
            }
            AuthError::Store(e) => {
                tracing::error!(error = %e, "event store failure");
                Status::unavailable("storage unavailable")
            }
            AuthError::Hashing(e) => {
                tracing::error!(error = %e, "password hashing failure");
                Status::internal("internal error")
            }
        }
    }
}
