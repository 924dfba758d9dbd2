use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

use crate::helpers::{Location, TestApp};

#[tokio::test]
async fn health_and_reflection_answer_stock_tools() {
    let loc = Location::sqlite();
    let app = TestApp::start(&loc).await;
    let mut health = HealthClient::new(app.channel.clone());
    for service in ["", "movies.auth.v1.AuthService"] {
        let status = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .status;
        assert_eq!(status, ServingStatus::Serving as i32, "{service:?}");
    }

    let mut reflection = ServerReflectionClient::new(app.channel.clone());
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut answers = reflection
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let answer = answers.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = answer.message_response else {
        panic!("unexpected reflection answer");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(
        names.contains(&"movies.auth.v1.AuthService".to_owned()),
        "{names:?}"
    );

    // The older v1alpha protocol too (grpcio-reflection, Postman).
    use tonic_reflection::pb::v1alpha;
    let mut reflection =
        v1alpha::server_reflection_client::ServerReflectionClient::new(app.channel.clone());
    let request = v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            v1alpha::server_reflection_request::MessageRequest::ListServices(String::new()),
        ),
    };
    let answer = reflection
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner()
        .message()
        .await
        .unwrap()
        .unwrap();
    let Some(v1alpha::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        answer.message_response
    else {
        panic!("unexpected v1alpha reflection answer");
    };
    assert!(
        list.service
            .iter()
            .any(|s| s.name == "movies.auth.v1.AuthService")
    );
}

/// `GET /metrics` on the metrics listener: gRPC calls by method and code,
/// and the read model's lag behind the store.
#[tokio::test]
async fn metrics_show_calls_and_the_read_models_lag() {
    let (app, metrics_addr, _loc) = with_metrics_listener().await;
    app.user("counted").await;
    let text = raw_metrics(metrics_addr).await;
    assert!(text.starts_with("HTTP/1.0 200"), "{text}");
    assert!(
        text.contains(
            "grpc_server_requests_total{grpc_service=\"movies.auth.v1.AuthService\",grpc_method=\"Register\",grpc_code=\"OK\"} 1"
        ),
        "{text}"
    );
    assert!(
        text.contains("projection_lag_positions{model=\"auth\"} 0"),
        "{text}"
    );
    assert!(
        text.contains("store_head_position{model=\"auth\"}"),
        "{text}"
    );
}

/// Security review 3, finding 5: the metrics listener has the gateway's
/// kind of limits. Idle connections (as a slowloris holds them) are closed
/// after 5 s without a request, and past 32 at once a connection is
/// answered 503 and closed; then `/metrics` answers again. (Before, 200
/// idle connections were all still held after 40 s.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_listener_closes_idle_connections_and_caps_them() {
    use std::time::{Duration, Instant};
    use tokio::io::AsyncReadExt;

    let (_app, addr, _loc) = with_metrics_listener().await;
    let mut idle = Vec::new();
    for _ in 0..32 {
        idle.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    // Accepted in order: the next one is over the cap.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut over = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut refused = String::new();
    tokio::time::timeout(Duration::from_secs(3), over.read_to_string(&mut refused))
        .await
        .expect("the refusal comes at once")
        .unwrap();
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    let started = Instant::now();
    for (i, conn) in idle.iter_mut().enumerate() {
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(10), conn.read(&mut byte)).await;
        assert!(
            matches!(read, Ok(Ok(0)) | Ok(Err(_))),
            "idle connection {i} still held after {:?}",
            started.elapsed()
        );
    }
    let text = raw_metrics(addr).await;
    assert!(text.starts_with("HTTP/1.0 200"), "{text}");
}

/// auth-service on SQLite with its metrics listener on a free port: the
/// app, that address, and the store (kept while the app runs).
async fn with_metrics_listener() -> (TestApp, std::net::SocketAddr, Location) {
    let loc = Location::sqlite();
    let mut config = crate::helpers::config(&loc);
    config.auth_metrics_listen = platform::MaybeAddr(Some("127.0.0.1:0".parse().unwrap()));
    let app = TestApp::start_with(config).await;
    let addr = app.metrics_addr.expect("a metrics listener");
    (app, addr, loc)
}

/// `GET /metrics` over HTTP/1.0 on a connection of its own: the whole
/// answer, status line first.
async fn raw_metrics(addr: std::net::SocketAddr) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut raw = tokio::net::TcpStream::connect(addr).await.unwrap();
    raw.write_all(b"GET /metrics HTTP/1.0\r\n\r\n")
        .await
        .unwrap();
    let mut text = String::new();
    raw.read_to_string(&mut text).await.unwrap();
    text
}
