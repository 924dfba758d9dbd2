//! Who is calling: the end user's token, checked with auth-service's
//! `Authenticate` on every call (so a revocation counts at once).

use std::sync::Arc;
use std::time::Duration;

use platform::TokenCheck;
use platform::grpc::GrpcChannel;
use proto::auth::AuthenticateRequest;
use proto::auth::auth_service_client::AuthServiceClient;
use tonic::Code;

use crate::domain::UserId;
use crate::error::{CatalogError, Result};

/// Deadline of one `Authenticate` call.
const AUTHENTICATE_TIMEOUT: Duration = Duration::from_secs(2);

/// Who checks tokens for the catalog: always auth-service's token index,
/// read linearizably, so a revocation counts on the very next call, on any
/// replica.
#[derive(Clone)]
pub enum Identity {
    /// Its `Authenticate` RPC, over one reused HTTP/2 connection (which
    /// multiplexes concurrent calls), or any other channel.
    Grpc(AuthServiceClient<GrpcChannel>),
    /// The same check, in this process (the all-in-one launcher): what
    /// `Authenticate` runs, without encoding a call.
    Local(Arc<dyn TokenCheck>),
}

impl Identity {
    /// A client for auth-service at `urls` (a comma-separated list of
    /// replicas, or a host name naming several); connects lazily, so the
    /// catalog can start before auth-service.
    pub fn connect_lazy(urls: &str) -> Result<Self, platform::replicas::BadUrl> {
        let channel = GrpcChannel::connect_lazy(urls, AUTHENTICATE_TIMEOUT)?;
        Ok(Self::over(channel))
    }

    /// A client over `channel` (a remote or an in-process one).
    pub fn over(channel: GrpcChannel) -> Self {
        Self::Grpc(AuthServiceClient::new(channel))
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
        let client = match self {
            Self::Local(check) => {
                return match check.user_id(token).await {
                    Ok(Some(id)) => Ok(UserId(id)),
                    Ok(None) => Err(CatalogError::InvalidToken),
                    Err(e) => Err(CatalogError::IdentityUnavailable(e.to_string())),
                };
            }
            Self::Grpc(client) => client,
        };
        let request = AuthenticateRequest {
            token: token.to_owned(),
        };
        // A replica that is gone answers UNAVAILABLE (or breaks the call):
        // asked once more, the next replica in rotation answers.
        let call = async {
            let traced = || platform::telemetry::traced(request.clone());
            match client.clone().authenticate(traced()).await {
                Err(s)
                    if matches!(
                        s.code(),
                        Code::Unavailable | Code::Cancelled | Code::Unknown
                    ) =>
                {
                    client.clone().authenticate(traced()).await
                }
                answer => answer,
            }
        };
        match tokio::time::timeout(AUTHENTICATE_TIMEOUT, call).await {
            Ok(Ok(user)) => Ok(UserId(user.into_inner().id)),
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
