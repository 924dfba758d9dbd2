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

/// Who may call, checked before a call's message is read: the caller's
/// token, and for a read, its read point asked meanwhile. Shared by the
/// gRPC layer ([`Authenticated`]) and the direct calls of one process
/// (`local::LocalCatalog`).
#[derive(Clone)]
pub struct Admission {
    identity: Identity,
    view: Arc<Projection<CatalogView>>,
    stages: Arc<Stages>,
}

impl Admission {
    /// Callers `identity` knows; reads of `view` get their read point while
    /// the caller is checked. The check's time is counted in `stages` as
    /// `authenticate`.
    pub fn new(
        identity: Identity,
        view: Arc<Projection<CatalogView>>,
        stages: Arc<Stages>,
    ) -> Self {
        Self {
            identity,
            view,
            stages,
        }
    }

    /// Admits a call reached as `access` with this `authorization` header:
    /// adds the [`Caller`] and, for a read, its read point to `extensions`;
    /// else the status to answer. An open call is let through as it is.
    pub async fn admit(
        &self,
        access: Access,
        authorization: Option<&header::HeaderValue>,
        extensions: &mut tonic::codegen::http::Extensions,
    ) -> Result<(), tonic::Status> {
        if access == Access::Open {
            return Ok(());
        }
        let authorization = match authorization {
            None => Ok(None),
            Some(value) => value.to_str().map(Some),
        };
        let user = self.stages.time("authenticate", async {
            match authorization {
                Ok(authorization) => self.identity.user_id(authorization).await,
                Err(_) => Err(CatalogError::InvalidToken),
            }
        });
        let point = async {
            match access {
                Access::Read => Some(self.view.read_point().await),
                _ => None,
            }
        };
        let (user, point) = tokio::join!(user, point);
        extensions.insert(Caller(user?));
        match point {
            Some(Ok(point)) => {
                extensions.insert(point);
            }
            Some(Err(e)) => return Err(CatalogError::from(e).into()),
            None => {}
        }
        Ok(())
    }
}

/// The catalog's gRPC service behind the authentication of its callers.
#[derive(Clone)]
pub struct Authenticated<S> {
    inner: S,
    admission: Admission,
}

impl<S> Authenticated<S> {
    /// `inner`, reached only by callers `admission` admits.
    pub fn new(inner: S, admission: Admission) -> Self {
        Self { inner, admission }
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
        let admission = self.admission.clone();
        Box::pin(async move {
            let (mut parts, body) = request.into_parts();
            let admitted = admission
                .admit(
                    access,
                    parts.headers.get(header::AUTHORIZATION),
                    &mut parts.extensions,
                )
                .await;
            request = Request::from_parts(parts, body);
            match admitted {
                Ok(()) => inner.call(request).await,
                Err(status) => Ok(status.into_http()),
            }
        })
    }
}
