use platform::grpc::Served as _;
use std::time::Duration;

use auth_service::{Application, Config};
use event_store::testing::TempStore;
use proto::auth::auth_service_client::AuthServiceClient;
use proto::auth::{
    AuthenticateRequest, LoginRequest, LogoutAllRequest, LogoutRequest, RegisterRequest, Session,
    User,
};
use tonic::Status;
use tonic::transport::Channel;

pub use platform::testing::{Running, assert_code, violations};

/// Runs each named case once per backend: `sqlite::case` and `postgres::case`.
#[macro_export]
macro_rules! on_every_backend {
    ($($case:ident),* $(,)?) => {
        platform::cases_on!([$($case),*];
            sqlite => $crate::helpers::sqlite;
            postgres => $crate::helpers::Location::postgres;
        );
    };
}

/// A SQLite store for `case`.
pub async fn sqlite(_case: &str) -> Option<Location> {
    Some(Location::sqlite())
}

/// Where a test's event store lives; removed when dropped.
pub type Location = TempStore;

/// auth-service settings for a test on `loc`: any free port, defaults otherwise.
pub fn config(loc: &Location) -> Config {
    Config {
        auth_listen: "127.0.0.1:0".parse().unwrap(),
        auth_store_url: loc.url().to_owned(),
        auth_metrics_listen: platform::MaybeAddr::OFF,
        ..Config::default()
    }
}

/// A running auth-service and a client connected to it.
pub struct TestApp {
    pub client: AuthServiceClient<Channel>,
    pub channel: Channel,
    pub metrics_addr: Option<std::net::SocketAddr>,
    server: Running,
}

impl TestApp {
    pub async fn start(loc: &Location) -> Self {
        Self::start_with(config(loc)).await
    }

    pub async fn start_with(config: Config) -> Self {
        let app = Application::build(&config)
            .await
            .expect("auth-service starts");
        let addr = app.local_addr();
        let metrics_addr = app.metrics_addr();
        let server = Running::spawn(|stopped| async move {
            app.run_until_stopped(stopped).await.expect("server runs");
        });
        let channel = Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect_timeout(Duration::from_secs(5))
            .connect()
            .await
            .expect("connect");
        Self {
            client: AuthServiceClient::new(channel.clone()),
            channel,
            metrics_addr,
            server,
        }
    }

    /// Stops the server and waits until it has finished.
    pub async fn stop(self) {
        self.server.stop().await;
    }

    pub async fn register(
        &self,
        username: &str,
        email: &str,
        password: &str,
    ) -> Result<Session, Status> {
        self.client
            .clone()
            .register(RegisterRequest {
                username: username.into(),
                email: email.into(),
                password: password.into(),
            })
            .await
            .map(|r| r.into_inner().into())
    }

    /// Registers `username` with a valid e-mail and password, or panics.
    pub async fn user(&self, username: &str) -> Session {
        self.register(username, &format!("{username}@example.com"), "password123")
            .await
            .expect("registration succeeds")
    }

    pub async fn login(&self, username: &str, password: &str) -> Result<Session, Status> {
        self.client
            .clone()
            .login(LoginRequest {
                username: username.into(),
                password: password.into(),
                ..Default::default()
            })
            .await
            .map(|r| r.into_inner().into())
    }

    pub async fn authenticate(&self, token: &str) -> Result<User, Status> {
        self.client
            .clone()
            .authenticate(AuthenticateRequest {
                token: token.into(),
            })
            .await
            .map(|r| r.into_inner().into())
    }

    pub async fn logout(&self, token: &str) -> Result<(), Status> {
        self.client
            .clone()
            .logout(LogoutRequest {
                token: token.into(),
            })
            .await
            .map(|_| ())
    }

    pub async fn logout_all(&self, token: &str) -> Result<(), Status> {
        self.client
            .clone()
            .logout_all(LogoutAllRequest {
                token: token.into(),
            })
            .await
            .map(|_| ())
    }
}
