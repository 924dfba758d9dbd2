//! Every call but `SubscribeEvents` is authenticated before its message is
//! read: a caller without a live token is answered UNAUTHENTICATED from its
//! headers alone, so nobody without a token can make the service decode
//! (and hold) a request body.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tonic::body::Body;
use tonic::codegen::Service;
use tonic::codegen::http::{Request, Response, header};
use tonic::server::NamedService;

use crate::domain::UserId;
use crate::error::CatalogError;
use crate::identity::Identity;

/// The methods callers reach without a token (they have checks of their own).
const OPEN_METHODS: [&str; 1] = ["/movies.catalog.v1.CatalogService/SubscribeEvents"];

/// The user a call is authenticated as: a request extension set by
/// [`Authenticated`] for every method but the open ones.
#[derive(Debug, Clone, Copy)]
pub struct Caller(pub UserId);

/// The catalog's gRPC service behind the authentication of its callers.
#[derive(Clone)]
pub struct Authenticated<S> {
    inner: S,
    identity: Identity,
}

impl<S> Authenticated<S> {
    /// `inner`, reached only by callers `identity` knows.
    pub fn new(inner: S, identity: Identity) -> Self {
        Self { inner, identity }
    }
}

impl<S: NamedService> NamedService for Authenticated<S> {
    const NAME: &'static str = S::NAME;
}

type Answer = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

impl<S> Service<Request<Body>> for Authenticated<S>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Answer;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<Body>) -> Answer {
        // The clone is the one polled ready (tower's usual swap).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        if OPEN_METHODS.contains(&request.uri().path()) {
            return Box::pin(inner.call(request));
        }
        let identity = self.identity.clone();
        Box::pin(async move {
            let user = match request.headers().get(header::AUTHORIZATION) {
                None => identity.user_id(None).await,
                Some(value) => match value.to_str() {
                    Ok(value) => identity.user_id(Some(value)).await,
                    Err(_) => Err(CatalogError::InvalidToken),
                },
            };
            match user {
                Ok(user) => {
                    request.extensions_mut().insert(Caller(user));
                    inner.call(request).await
                }
                Err(e) => Ok(tonic::Status::from(e).into_http()),
            }
        })
    }
}
