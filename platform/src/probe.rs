//! Health probes run by the binaries' `healthcheck` subcommands (container
//! health checks without extra tools in the image).

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TIMEOUT: Duration = Duration::from_secs(2);

/// The address to probe for a listen address: an unspecified IP (`0.0.0.0`)
/// is probed on loopback.
pub fn local(listen: SocketAddr) -> SocketAddr {
    if listen.ip().is_unspecified() {
        SocketAddr::from((Ipv4Addr::LOCALHOST, listen.port()))
    } else {
        listen
    }
}

/// Whether the gRPC server at `addr` answers `grpc.health.v1.Health/Check` as serving.
pub async fn grpc_serving(addr: SocketAddr) -> bool {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let check = async {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .ok()?
            .connect()
            .await
            .ok()?;
        let answer = HealthClient::new(channel)
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .ok()?;
        Some(answer.get_ref().status == ServingStatus::Serving as i32)
    };
    matches!(tokio::time::timeout(TIMEOUT, check).await, Ok(Some(true)))
}

/// Whether `GET path` on the HTTP server at `addr` answers 200.
pub async fn http_ok(addr: SocketAddr, path: &str) -> bool {
    let check = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).await.ok()?;
        Some(head.starts_with(b"HTTP/1.1 200"))
    };
    matches!(tokio::time::timeout(TIMEOUT, check).await, Ok(Some(true)))
}
