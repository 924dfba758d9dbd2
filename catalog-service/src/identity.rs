//! Who is calling: the end user's token, checked with auth-service.

use std::time::Duration;

use async_trait::async_trait;
use proto::auth::AuthenticateRequest;
use proto::auth::auth_service_client::AuthServiceClient;
use tonic::Code;
use tonic::transport::{Channel, Endpoint};

use crate::domain::{CatalogError, Result};

/// Deadline of one `Authenticate` call.
const AUTHENTICATE_TIMEOUT: Duration = Duration::from_secs(2);

/// Resolves a token to the id of its (currently valid) user.
#[async_trait]
pub trait Identity: Send + Sync + 'static {
    /// The user id behind `token`; [`CatalogError::InvalidToken`] if the token
    /// is unknown, revoked or expired, [`CatalogError::IdentityUnavailable`]
    /// if that cannot be known now.
    async fn user_id(&self, token: &str) -> Result<i64>;
}

/// Asks auth-service over one reused gRPC connection (HTTP/2 multiplexes
/// concurrent calls). Revocation is immediate: nothing is cached.
#[derive(Clone)]
pub struct GrpcIdentity {
    client: AuthServiceClient<Channel>,
}

impl GrpcIdentity {
    /// A client for auth-service at `url`; connects lazily, so the catalog can
    /// start before auth-service.
    pub fn new(url: &str) -> Result<Self, tonic::transport::Error> {
        let channel = Endpoint::from_shared(url.to_owned())?
            .connect_timeout(Duration::from_secs(2))
            .timeout(AUTHENTICATE_TIMEOUT)
            .tcp_nodelay(true)
            .connect_lazy();
        Ok(Self {
            client: AuthServiceClient::new(channel),
        })
    }
}

#[async_trait]
impl Identity for GrpcIdentity {
    async fn user_id(&self, token: &str) -> Result<i64> {
        let request = AuthenticateRequest {
            token: token.to_owned(),
        };
        match self.client.clone().authenticate(request).await {
            Ok(user) => Ok(user.into_inner().id),
            Err(s) if s.code() == Code::Unauthenticated => Err(CatalogError::InvalidToken),
            Err(s) => Err(CatalogError::IdentityUnavailable(format!(
                "{:?}: {}",
                s.code(),
                s.message()
            ))),
        }
    }
}

/// The token in an `authorization` metadata value (see [`platform::credentials`]).
pub fn token_of(authorization: Option<&str>) -> Result<&str> {
    match platform::credentials(authorization) {
        platform::Credentials::Missing => Err(CatalogError::NoCredentials),
        platform::Credentials::Malformed => Err(CatalogError::InvalidToken),
        platform::Credentials::Token(token) => Ok(token),
    }
}
