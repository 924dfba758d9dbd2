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

use std::sync::Arc;

use event_sourcing::read_model::Projection;
use platform::metrics::Stages;

use crate::domain::UserId;
use crate::error::CatalogError;
use crate::identity::Identity;
use crate::methods::{Access, access};
use crate::read_model::CatalogView;

/// The user a call is authenticated as: a request extension set by
/// [`Authenticated`] for every method but the open ones.
#[derive(Debug, Clone, Copy)]
pub struct Caller(pub UserId);

/// The catalog's gRPC service behind the authentication of its callers.
#[derive(Clone)]
pub struct Authenticated<S> {
    inner: S,
    identity: Identity,
    view: Arc<Projection<CatalogView>>,
    stages: Arc<Stages>,
}

impl<S> Authenticated<S> {
    /// `inner`, reached only by callers `identity` knows; reads of `view`
    /// get their read point while the caller is checked. The check's time
    /// is counted in `stages` as `authenticate`.
    pub fn new(
        inner: S,
        identity: Identity,
        view: Arc<Projection<CatalogView>>,
        stages: Arc<Stages>,
    ) -> Self {
        Self {
            inner,
            identity,
            view,
            stages,
        }
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
        let access = access(request.uri().path());
        if access == Access::Open {
            return Box::pin(inner.call(request));
        }
        let (identity, stages) = (self.identity.clone(), self.stages.clone());
        let view = (access == Access::Read).then(|| self.view.clone());
        Box::pin(async move {
            let authorization = match request.headers().get(header::AUTHORIZATION) {
                None => Ok(None),
                Some(value) => value.to_str().map(Some),
            };
            let user = stages.time("authenticate", async {
                match authorization {
                    Ok(authorization) => identity.user_id(authorization).await,
                    Err(_) => Err(CatalogError::InvalidToken),
                }
            });
            let point = async {
                match &view {
                    Some(view) => Some(view.read_point().await),
                    None => None,
                }
            };
            let (user, point) = tokio::join!(user, point);
            let user = match user {
                Ok(user) => user,
                Err(e) => return Ok(tonic::Status::from(e).into_http()),
            };
            request.extensions_mut().insert(Caller(user));
            match point {
                Some(Ok(point)) => {
                    request.extensions_mut().insert(point);
                }
                Some(Err(e)) => return Ok(tonic::Status::from(CatalogError::from(e)).into_http()),
                None => {}
            }
            inner.call(request).await
        })
    }
}
