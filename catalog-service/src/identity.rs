//! Who is calling: the end user's token, checked with auth-service on every
//! call (so a revocation counts at once), the checks of concurrent calls
//! sent together (see `token_batch`).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use platform::TokenCheck;
use platform::grpc::GrpcChannel;
use proto::auth::auth_service_client::AuthServiceClient;
use proto::auth::{AuthenticateManyRequest, AuthenticateRequest};
use tonic::Code;

use crate::domain::UserId;
use crate::error::{CatalogError, Result};
use crate::token_batch::{Batches, SendBatch};

/// Deadline of one `Authenticate` call.
const AUTHENTICATE_TIMEOUT: Duration = Duration::from_secs(2);

/// Who checks tokens for the catalog: always auth-service's token index,
/// read linearizably, so a revocation counts on the very next call, on any
/// replica.
#[derive(Clone)]
pub enum Identity {
    /// Its `AuthenticateMany` RPC, the checks of concurrent calls in
    /// batches, over one reused HTTP/2 connection (which multiplexes
    /// concurrent calls), or any other channel.
    Grpc(Arc<Batches>),
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
        let client = AuthServiceClient::new(channel);
        let send: SendBatch = Arc::new(move |tokens| Box::pin(owners(client.clone(), tokens)));
        Self::Grpc(Batches::new(send))
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
        let batches = match self {
            Self::Local(check) => {
                return match check.user_id(token).await {
                    Ok(Some(id)) => Ok(UserId(id)),
                    Ok(None) => Err(CatalogError::InvalidToken),
                    Err(e) => Err(CatalogError::IdentityUnavailable(e.to_string())),
                };
            }
            Self::Grpc(batches) => batches,
        };
        match tokio::time::timeout(AUTHENTICATE_TIMEOUT, batches.check(token)).await {
            Ok(Ok(Some(id))) => Ok(UserId(id)),
            Ok(Ok(None)) => Err(CatalogError::InvalidToken),
            Ok(Err(e)) => Err(CatalogError::IdentityUnavailable(e)),
            Err(_) => Err(CatalogError::IdentityUnavailable(
                "the token check timed out".into(),
            )),
        }
    }
}

/// A call that fails because its replica is not there: asked once more,
/// the next replica in rotation answers.
fn gone(status: &tonic::Status) -> bool {
    matches!(
        status.code(),
        Code::Unavailable | Code::Cancelled | Code::Unknown
    )
}

/// Sends `message` by `send` within a check's deadline; a replica that is
/// gone is asked once more (the next in rotation answers).
async fn within_deadline<M: Clone, R, F>(
    message: &M,
    send: impl Fn(tonic::Request<M>) -> F,
) -> std::result::Result<R, tonic::Status>
where
    F: Future<Output = std::result::Result<tonic::Response<R>, tonic::Status>>,
{
    let call = async {
        let traced = || platform::telemetry::traced(message.clone());
        match send(traced()).await {
            Err(s) if gone(&s) => send(traced()).await,
            answer => answer,
        }
    };
    match tokio::time::timeout(AUTHENTICATE_TIMEOUT, call).await {
        Ok(answer) => answer.map(tonic::Response::into_inner),
        Err(_) => Err(tonic::Status::deadline_exceeded("timed out")),
    }
}

/// Why a check failed, for the log.
fn reason(s: &tonic::Status) -> String {
    format!("{:?}: {}", s.code(), s.message())
}

/// Whose each of `tokens` is, by one `AuthenticateMany`: the user's id of
/// each live token, in order. An auth-service older than this catalog
/// (during a rolling upgrade) has no such method: each is then asked with
/// `Authenticate`, concurrently.
async fn owners(
    client: AuthServiceClient<GrpcChannel>,
    tokens: Vec<String>,
) -> std::result::Result<Vec<Option<i64>>, String> {
    let request = AuthenticateManyRequest { tokens };
    let send = |r| {
        let mut client = client.clone();
        async move { client.authenticate_many(r).await }
    };
    match within_deadline(&request, send).await {
        Ok(answer) => Ok(answer
            .owners
            .into_iter()
            .map(|o| o.live.then_some(o.user_id))
            .collect()),
        Err(s) if s.code() == Code::Unimplemented => {
            let each = request.tokens.iter().map(|t| owner(&client, t));
            join_all(each).await.into_iter().collect()
        }
        Err(s) => Err(reason(&s)),
    }
}

/// Whose `token` is, by one `Authenticate` (an auth-service without
/// `AuthenticateMany`).
async fn owner(
    client: &AuthServiceClient<GrpcChannel>,
    token: &str,
) -> std::result::Result<Option<i64>, String> {
    let request = AuthenticateRequest {
        token: token.to_owned(),
    };
    let send = |r| {
        let mut client = client.clone();
        async move { client.authenticate(r).await }
    };
    match within_deadline(&request, send).await {
        Ok(user) => Ok(Some(user.id)),
        Err(s) if s.code() == Code::Unauthenticated => Ok(None),
        Err(s) => Err(reason(&s)),
    }
}
