//! How every gRPC service of the platform is served: a bound listener (port 0
//! allowed), the service itself, and beside it the standard
//! `grpc.health.v1.Health` and server reflection, so stock tools work without
//! the .proto files.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;

use tonic::body::Body;
use tonic::codegen::Service;
use tonic::codegen::http::Request;
use tonic::server::NamedService;
use tonic::transport::server::TcpIncoming;

/// Why serving failed.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// Reflection could not be set up.
    #[error("reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// The server failed.
    #[error("grpc server: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// A bound gRPC listener (and, if asked for, an in-memory one beside it).
pub struct GrpcListener {
    incoming: TcpIncoming,
    local_addr: SocketAddr,
    in_memory: Option<in_memory::Incoming>,
}

impl GrpcListener {
    /// Binds `addr` (port 0 picks a free port).
    pub async fn bind(addr: SocketAddr) -> Result<Self, ServeError> {
        let bind = |source| ServeError::Bind { addr, source };
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(bind)?;
        let local_addr = listener.local_addr().map_err(bind)?;
        Ok(Self {
            incoming: TcpIncoming::from(listener).with_nodelay(Some(true)),
            local_addr,
            in_memory: None,
        })
    }

    /// A client channel to this server from inside the process, served
    /// beside the TCP listener (for callers in the same process).
    pub fn in_memory_channel(&mut self) -> tonic::transport::Channel {
        let (channel, incoming) = in_memory::channel();
        self.in_memory = Some(incoming);
        channel
    }

    /// Where it listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves `service` (reported serving to health checks) with reflection,
    /// until `shutdown` resolves; in-flight calls then finish.
    pub async fn serve<S>(
        self,
        service: S,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), ServeError>
    where
        S: Service<Request<Body>, Error = Infallible>
            + NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Response: axum::response::IntoResponse,
        S::Future: Send + 'static,
    {
        let (health, health_service) = tonic_health::server::health_reporter();
        health.set_serving::<S>().await;
        let reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
            .build_v1()?;
        tracing::info!(addr = %self.local_addr, service = S::NAME, "listening");
        let router = tonic::transport::Server::builder()
            .add_service(health_service)
            .add_service(reflection)
            .add_service(service);
        match self.in_memory {
            None => {
                router
                    .serve_with_incoming_shutdown(self.incoming, shutdown)
                    .await?
            }
            Some(in_memory) => {
                // One shutdown signal for both servers.
                let (stop, stopped) = tokio::sync::watch::channel(false);
                let wait = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
                    let _ = rx.wait_for(|s| *s).await;
                };
                let tcp = router
                    .clone()
                    .serve_with_incoming_shutdown(self.incoming, wait(stopped.clone()));
                let memory = router.serve_with_incoming_shutdown(in_memory, wait(stopped));
                let signal = async move {
                    shutdown.await;
                    let _ = stop.send(true);
                    Ok::<(), tonic::transport::Error>(())
                };
                tokio::try_join!(tcp, memory, signal)?;
            }
        }
        tracing::info!(service = S::NAME, "stopped");
        Ok(())
    }
}

/// A gRPC connection inside one process: the server end of each connection
/// a [`channel`] opens arrives through the receiver, to be served beside the
/// TCP listener. Same HTTP/2 and protobuf as over TCP, without the socket
/// system calls of a loopback hop.
pub mod in_memory {
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use tokio::io::DuplexStream;
    use tokio::sync::mpsc;
    use tonic::transport::{Channel, Endpoint};

    /// Bytes buffered each way per connection.
    const BUFFER: usize = 256 * 1024;

    /// Server ends of in-memory connections, as a stream for
    /// `serve_with_incoming`.
    pub struct Incoming(mpsc::Receiver<DuplexStream>);

    impl futures_core::Stream for Incoming {
        type Item = Result<DuplexStream, std::io::Error>;

        fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
            self.0.poll_recv(cx).map(|c| c.map(Ok))
        }
    }

    /// A lazily connecting client channel and the incoming connections its
    /// server must accept.
    pub fn channel() -> (Channel, Incoming) {
        let (tx, rx) = mpsc::channel(16);
        let connector = tower::service_fn(move |_: tonic::codegen::http::Uri| {
            let tx = tx.clone();
            async move {
                let (client, server) = tokio::io::duplex(BUFFER);
                tx.send(server)
                    .await
                    .map_err(|_| std::io::Error::other("the in-memory server is gone"))?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(client))
            }
        });
        let channel =
            Endpoint::from_static("http://in-memory.local").connect_with_connector_lazy(connector);
        (channel, Incoming(rx))
    }
}
