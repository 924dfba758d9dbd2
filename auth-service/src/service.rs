//! The gRPC edge of auth-service: requests parsed into domain values, one
//! command or query each, answers translated back. The rules are in
//! [`crate::domain`], the token index in [`crate::read_model`], the error
//! mapping in [`crate::error`].

use std::sync::Arc;

use chrono::{DateTime, Utc};
use event_store::EventStore;
use event_store::decider::{self, Loaded};
use event_store::ids::IdSequence;
use event_store::read_model::Projection;
use proto::auth::auth_service_server::AuthService;
use proto::auth::{
    AuthenticateRequest, AuthenticateResponse, LoginRequest, LoginResponse, LogoutAllRequest,
    LogoutAllResponse, LogoutRequest, LogoutResponse, RegisterRequest, RegisterResponse, Session,
    User as UserMessage,
};
use tonic::{Request, Response, Status};

use crate::domain::{
    ClaimUsername, Email, Grant, Password, USER_IDS_STREAM, User, UserCommand, UserId, Username,
    UsernameClaim, claim_stream, normalize_username, parse_login, user_stream, username_skeleton,
};
use crate::error::{AuthError, Result};
use crate::password::PasswordHasher;
use crate::read_model::AuthView;
use crate::throttle::LoginThrottle;
use crate::token;

/// The `movies.auth.v1.AuthService` implementation.
pub struct AuthGrpc {
    store: Arc<dyn EventStore>,
    view: Arc<Projection<AuthView>>,
    hasher: PasswordHasher,
    throttle: LoginThrottle,
    token_ttl: chrono::Duration,
    user_ids: IdSequence,
}

impl AuthGrpc {
    /// Serves the users in `store`, whose events `view` follows.
    pub fn new(
        store: Arc<dyn EventStore>,
        view: Arc<Projection<AuthView>>,
        hasher: PasswordHasher,
        throttle: LoginThrottle,
        token_ttl: std::time::Duration,
    ) -> Self {
        Self {
            store,
            view,
            hasher,
            throttle,
            token_ttl: chrono::Duration::from_std(token_ttl).unwrap_or(chrono::Duration::MAX),
            user_ids: IdSequence::new(USER_IDS_STREAM, "User"),
        }
    }

    /// A new token, shown once, and the grant recorded for it.
    fn new_token(&self) -> Result<(String, Grant)> {
        let (token, digest) = token::generate().map_err(|e| AuthError::Hashing(e.to_string()))?;
        let expires_at = Utc::now()
            .checked_add_signed(self.token_ttl)
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        Ok((token, Grant { digest, expires_at }))
    }

    /// Runs `command` on `stream` from `loaded` and waits until the token
    /// index shows its effect.
    async fn execute(
        &self,
        stream: &str,
        loaded: Loaded<User>,
        command: &UserCommand,
    ) -> Result<()> {
        let done = decider::execute::<User>(&*self.store, stream, loaded, command).await?;
        self.view.wait_for(done.position).await?;
        Ok(())
    }

    async fn register(&self, r: RegisterRequest) -> Result<Session> {
        let (username, email, password) = match (
            Username::parse(&r.username),
            Email::parse(&r.email),
            Password::parse_new(r.password),
        ) {
            (Ok(u), Ok(e), Ok(p)) => (u, e, p),
            (u, e, p) => {
                return Err(AuthError::Invalid(
                    [u.err(), e.err(), p.err()].into_iter().flatten().collect(),
                ));
            }
        };
        let normalized = normalize_username(username.as_str());
        let stream = user_stream(&normalized);
        let skeleton = claim_stream(&username_skeleton(username.as_str()));
        // A cheap refusal before the costly hash; the store decides. Names
        // registered before skeletons were claimed are found by the view.
        let taken = {
            let view = self.view.read();
            let confusable = view
                .by_skeleton(username.as_str())
                .is_some_and(|u| normalize_username(&u.username) != normalized);
            confusable || view.by_username(username.as_str()).is_some()
        };
        if taken {
            return Err(AuthError::UsernameTaken);
        }
        let password_hash = self.hasher.hash(password).await?;
        let (token, grant) = self.new_token()?;
        let user_id = self.user_ids.next(&self.store).await?;
        let user = UserMessage {
            id: user_id,
            username: username.as_str().to_owned(),
            email: email.as_str().to_owned(),
        };
        let command = UserCommand::Register {
            user_id,
            username,
            email,
            password_hash,
            grant,
        };
        // The skeleton first: of two confusable names registered at once,
        // only one gets the claim.
        let claim = ClaimUsername {
            username: normalized,
        };
        decider::execute::<UsernameClaim>(&*self.store, &skeleton, Loaded::assume_new(), &claim)
            .await?;
        self.execute(&stream, Loaded::assume_new(), &command)
            .await?;
        tracing::info!(user_id, "user registered");
        Ok(session(user, token, grant))
    }

    async fn login(&self, r: LoginRequest, client: &str) -> Result<Session> {
        let (username, password) =
            parse_login(&r.username, r.password).map_err(AuthError::Invalid)?;
        let key = normalize_username(&username);
        // Counted before the password is checked: parallel guesses all count.
        let attempt = match self.throttle.reserve(&key, client).await {
            Ok(attempt) => attempt,
            Err(e) => {
                if let AuthError::Throttled { retry_after_secs } = e {
                    tracing::warn!(username = %key, client, retry_after_secs, "login throttled");
                }
                return Err(e);
            }
        };
        let stream = user_stream(&key);
        let loaded = decider::load::<User>(&*self.store, &stream).await?;
        let hash = loaded.state.account().map(|a| a.password_hash.clone());
        if !self.hasher.verify(password, hash).await? {
            tracing::warn!(username = %key, client, "login failed");
            attempt.failed().await?;
            return Err(AuthError::IncorrectCredentials);
        }
        attempt.succeeded().await?;
        let account = loaded
            .state
            .account()
            .ok_or(AuthError::IncorrectCredentials)?;
        let user = UserMessage {
            id: account.user_id,
            username: account.username.clone(),
            email: account.email.clone(),
        };
        let (token, grant) = self.new_token()?;
        self.execute(&stream, loaded, &UserCommand::IssueToken(grant))
            .await?;
        tracing::info!(user_id = user.id, "token issued");
        Ok(session(user, token, grant))
    }

    /// The user a live token belongs to: an in-memory lookup, once the
    /// token index holds every change acknowledged anywhere before the call
    /// (a logout through another replica counts at once).
    async fn authenticate(&self, token: &str) -> Result<UserMessage> {
        let digest = token::parse(token).ok_or(AuthError::InvalidToken)?;
        self.user_of(&digest).await
    }

    async fn user_of(&self, digest: &token::TokenDigest) -> Result<UserMessage> {
        let view = self.view.read_linearizable().await?;
        view.by_token(digest, Utc::now())
            .map(|u| UserMessage {
                id: u.id,
                username: u.username.clone(),
                email: u.email.clone(),
            })
            .ok_or(AuthError::InvalidToken)
    }

    /// Runs a command on the stream of `token`'s user.
    async fn revoke(
        &self,
        token: &str,
        command: impl FnOnce(token::TokenDigest) -> UserCommand,
    ) -> Result<UserId> {
        let digest = token::parse(token).ok_or(AuthError::InvalidToken)?;
        let user = self.user_of(&digest).await?;
        let stream = user_stream(&normalize_username(&user.username));
        let loaded = decider::load::<User>(&*self.store, &stream).await?;
        self.execute(&stream, loaded, &command(digest)).await?;
        Ok(user.id)
    }
}

fn session(user: UserMessage, token: String, grant: Grant) -> Session {
    Session {
        user: Some(user),
        token,
        expiry: Some(prost_types::Timestamp {
            seconds: grant.expires_at.timestamp(),
            nanos: grant.expires_at.timestamp_subsec_nanos() as i32,
        }),
    }
}

#[tonic::async_trait]
impl AuthService for AuthGrpc {
    #[tracing::instrument(skip_all, fields(username = %request.get_ref().username))]
    async fn register(
        &self,
        request: Request<RegisterRequest>,
    ) -> Result<Response<RegisterResponse>, Status> {
        Ok(Response::new(
            self.register(request.into_inner()).await?.into(),
        ))
    }

    #[tracing::instrument(skip_all, fields(username = %request.get_ref().username))]
    async fn login(
        &self,
        request: Request<LoginRequest>,
    ) -> Result<Response<LoginResponse>, Status> {
        let client = platform::client_address(&request);
        Ok(Response::new(
            self.login(request.into_inner(), &client).await?.into(),
        ))
    }

    async fn authenticate(
        &self,
        request: Request<AuthenticateRequest>,
    ) -> Result<Response<AuthenticateResponse>, Status> {
        Ok(Response::new(
            self.authenticate(&request.get_ref().token).await?.into(),
        ))
    }

    async fn logout(
        &self,
        request: Request<LogoutRequest>,
    ) -> Result<Response<LogoutResponse>, Status> {
        let user_id = self
            .revoke(&request.get_ref().token, |digest| {
                UserCommand::RevokeToken {
                    digest,
                    now: Utc::now(),
                }
            })
            .await?;
        tracing::info!(user_id, "token revoked");
        Ok(Response::new(LogoutResponse {}))
    }

    async fn logout_all(
        &self,
        request: Request<LogoutAllRequest>,
    ) -> Result<Response<LogoutAllResponse>, Status> {
        let user_id = self
            .revoke(&request.get_ref().token, |_| UserCommand::RevokeAllTokens)
            .await?;
        tracing::info!(user_id, "all tokens revoked");
        Ok(Response::new(LogoutAllResponse {}))
    }
}
