//! Who is calling: the end user's token, checked with auth-service's
//! `Authenticate` on every call (so a revocation counts at once).

use std::time::Duration;

use platform::grpc::GrpcChannel;
use proto::auth::AuthenticateRequest;
use proto::auth::auth_service_client::AuthServiceClient;
use tonic::Code;
use tonic::transport::Endpoint;

use crate::domain::UserId;
use crate::error::{CatalogError, Result};

/// Deadline of one `Authenticate` call.
const AUTHENTICATE_TIMEOUT: Duration = Duration::from_secs(2);

/// A client of auth-service's `Authenticate`: over one reused HTTP/2
/// connection (which multiplexes concurrent calls), or in-process.
#[derive(Clone)]
pub struct Identity {
    client: AuthServiceClient<GrpcChannel>,
}

impl Identity {
    /// A client for auth-service at `url`; connects lazily, so the catalog can
    /// start before auth-service.
    pub fn connect_lazy(url: &str) -> Result<Self, tonic::transport::Error> {
        let channel = Endpoint::from_shared(url.to_owned())?
            .connect_timeout(AUTHENTICATE_TIMEOUT)
            .tcp_nodelay(true)
            .connect_lazy();
        Ok(Self::over(GrpcChannel::Remote(channel)))
    }

    /// A client over `channel` (in one process: an in-process one).
    pub fn over(channel: GrpcChannel) -> Self {
        Self {
            client: AuthServiceClient::new(channel),
        }
    }

    /// The id of the user whose token an `authorization` value carries:
    /// [`CatalogError::NoCredentials`] without one,
    /// [`CatalogError::InvalidToken`] if it is malformed, unknown, revoked or
    /// expired, [`CatalogError::IdentityUnavailable`] if that cannot be known now.
    pub async fn user_id(&self, authorization: Option<&str>) -> Result<UserId> {
        let token = match platform::credentials(authorization) {
            platform::Credentials::Missing => return Err(CatalogError::NoCredentials),
            platform::Credentials::Malformed => return Err(CatalogError::InvalidToken),
            platform::Credentials::Token(token) => token,
        };
        let request = AuthenticateRequest {
            token: token.to_owned(),
        };
        let mut client = self.client.clone();
        let call = client.authenticate(request);
        match tokio::time::timeout(AUTHENTICATE_TIMEOUT, call).await {
            Ok(Ok(user)) => Ok(user.into_inner().id),
            Ok(Err(s)) if s.code() == Code::Unauthenticated => Err(CatalogError::InvalidToken),
            Ok(Err(s)) => Err(CatalogError::IdentityUnavailable(format!(
                "{:?}: {}",
                s.code(),
                s.message()
            ))),
            Err(_) => Err(CatalogError::IdentityUnavailable(
                "Authenticate timed out".into(),
            )),
        }
    }
}
