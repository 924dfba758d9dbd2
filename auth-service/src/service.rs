//! The gRPC edge of auth-service: requests parsed into domain values, one
//! command or query each, answers translated back. The rules are in
//! [`crate::domain`], the token index in [`crate::read_model`], the error
//! mapping in [`crate::error`].

use std::sync::Arc;

use chrono::{DateTime, Utc};
use event_sourcing::decider::{self, Loaded};
use event_sourcing::idempotency::{self, Idempotent, Ran};
use event_sourcing::read_model::{Projection, StaleRead};
use event_store::ids::IdSequence;
use event_store::{EventStore, EventStoreError};
use platform::CheckUnavailable;
use proto::auth::auth_service_server::AuthService;
use proto::auth::{
    Activity, ActivityKind, AuthenticateRequest, AuthenticateResponse, GetAccountRequest,
    GetAccountResponse, ListActivityRequest, ListActivityResponse, LoginRequest, LoginResponse,
    LogoutAllRequest, LogoutAllResponse, LogoutRequest, LogoutResponse, RegisterRequest,
    RegisterResponse, Session, User as UserMessage,
};
use tonic::{Request, Response, Status};

use crate::domain::{
    ClaimUsername, Email, Grant, Password, ToUser, USER_IDS_STREAM, User, UserCommand, UserId,
    Username, UsernameClaim, normalize_username, parse_login, username_skeleton,
};
use crate::error::{AuthError, Result};
use crate::password::PasswordHasher;
use crate::read_model::{AccountActivity, AuthView, Registration};
use crate::seal::Pepper;
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
    /// For the pseudonyms in logs.
    pepper: Pepper,
}

impl AuthGrpc {
    /// Serves the users in `store`, whose events `view` follows.
    pub fn new(
        store: Arc<dyn EventStore>,
        view: Arc<Projection<AuthView>>,
        hasher: PasswordHasher,
        throttle: LoginThrottle,
        token_ttl: std::time::Duration,
        pepper: Pepper,
    ) -> Self {
        Self {
            store,
            view,
            hasher,
            throttle,
            token_ttl: chrono::Duration::from_std(token_ttl).unwrap_or(chrono::Duration::MAX),
            user_ids: IdSequence::new(USER_IDS_STREAM, "User"),
            pepper,
        }
    }

    /// How logs name a username: its MAC under the pepper (see README,
    /// "What the logs hold"), so that the attempts on one account can be
    /// followed without the log naming anyone.
    fn pseudonym(&self, normalized: &str) -> String {
        self.pepper.mac("log-user", normalized)
    }

    /// A new token, shown once, and the grant recorded for it.
    fn new_token(&self) -> Result<(String, Grant)> {
        let (token, digest) = token::generate().map_err(|e| AuthError::Hashing(e.to_string()))?;
        let expires_at = Utc::now()
            .checked_add_signed(self.token_ttl)
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        Ok((token, Grant { digest, expires_at }))
    }

    /// Runs `command` from `loaded` and waits until the token index shows
    /// its effect.
    async fn execute(&self, command: &ToUser, loaded: Loaded<User>) -> Result<()> {
        let done = decider::execute_loaded::<User>(&*self.store, command, loaded, None).await?;
        self.view.wait_for(done.position).await?;
        Ok(())
    }

    /// Registers a user. With an idempotency key, a retry of the same
    /// request answers what the first answered, token included: the token
    /// is kept sealed (XOR) under a key argon2 derives from the password
    /// with a salt of its own, so only the same password can unseal it, and
    /// the digest recorded with it tells a wrong password (another request)
    /// from the right one. The fingerprint covers username and email only:
    /// a fast hash of a password is never stored.
    async fn register(&self, r: RegisterRequest, key: Option<&str>) -> Result<Session> {
        let given_password = r.password.clone();
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
        let keyed = key.map(|k| {
            Idempotent::new(
                &format!("register:{normalized}"),
                k,
                &[username.as_str(), email.as_str()],
            )
        });
        let run = async {
            // A cheap refusal before the costly hash; the store decides.
            // Names registered before skeletons were claimed are found by
            // the view.
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
            let mut keyed = keyed.clone();
            if let Some(k) = &mut keyed {
                self.seal(k, &token, &grant, given_password.clone()).await?;
            }
            let user_id = UserId(self.user_ids.next(&self.store).await?);
            // The skeleton first: of two confusable names registered at
            // once, only one gets the claim.
            let claim = ClaimUsername {
                skeleton: username_skeleton(username.as_str()),
                username: normalized.clone(),
            };
            decider::execute::<UsernameClaim>(&*self.store, &claim, None).await?;
            let user = UserMessage {
                id: user_id.0,
                username: username.as_str().to_owned(),
                email: email.as_str().to_owned(),
            };
            let command = UserCommand::Register {
                user_id,
                username,
                email,
                password_hash,
                grant,
            }
            .to(normalized.clone());
            let done = decider::execute::<User>(&*self.store, &command, keyed.as_ref()).await?;
            tracing::info!(%user_id, "user registered");
            Ok(Ran {
                position: done.position,
                created: Registration {
                    user_id,
                    sealed: serde_json::Map::new(),
                },
                answer: session(user, token, grant),
            })
        };
        let stored = async |created| self.unseal(created, &given_password).await;
        Ok(idempotency::once(&self.view, keyed.as_ref(), run, stored)
            .await?
            .into_inner())
    }

    /// Seals `token` under a key derived from `password`, in `keyed`'s stamp.
    async fn seal(
        &self,
        keyed: &mut Idempotent,
        token: &str,
        grant: &Grant,
        password: String,
    ) -> Result<()> {
        let mut salt = [0u8; 16];
        getrandom::fill(&mut salt).map_err(|e| AuthError::Hashing(e.to_string()))?;
        let key = self.hasher.derive_key(password, salt).await?;
        let mut sealed = [0u8; 32];
        hex::decode_to_slice(token, &mut sealed).map_err(|e| AuthError::Hashing(e.to_string()))?;
        for (s, k) in sealed.iter_mut().zip(key) {
            *s ^= k;
        }
        let digest: String = grant.digest.into();
        keyed.extra.extend([
            ("sealed_token".to_owned(), hex::encode(sealed).into()),
            ("salt".to_owned(), hex::encode(salt).into()),
            ("digest".to_owned(), digest.into()),
            (
                "expires_at".to_owned(),
                grant.expires_at.to_rfc3339().into(),
            ),
        ]);
        Ok(())
    }

    /// The session a keyed registration answered, from what it stored:
    /// its first token, unsealed with `password` ([`AuthError::KeyReused`]
    /// for another password: another request).
    async fn unseal(&self, registration: Registration, password: &str) -> Result<Session> {
        let user = self.view.read().user(registration.user_id).cloned();
        let Some(user) = user else {
            return Err(AuthError::KeyReused);
        };
        let field = |name: &str| {
            registration
                .sealed
                .get(name)
                .and_then(|v| v.as_str())
                .unwrap_or_default()
        };
        let mut token = [0u8; 32];
        let mut salt = [0u8; 16];
        let expires_at =
            DateTime::parse_from_rfc3339(field("expires_at")).map(|t| t.with_timezone(&Utc));
        let (Ok(()), Ok(()), Ok(expires_at), Ok(digest)) = (
            hex::decode_to_slice(field("sealed_token"), &mut token),
            hex::decode_to_slice(field("salt"), &mut salt),
            expires_at,
            token::TokenDigest::try_from(field("digest").to_owned()),
        ) else {
            return Err(AuthError::Store(EventStoreError::Corrupt {
                position: 0,
                reason: format!("the sealed registration of user {} is unreadable", user.id),
            }));
        };
        let key = self.hasher.derive_key(password.to_owned(), salt).await?;
        for (t, k) in token.iter_mut().zip(key) {
            *t ^= k;
        }
        let token = hex::encode(token);
        // Another password unseals something else, whose digest differs.
        if token::parse(&token) != Some(digest) {
            return Err(AuthError::KeyReused);
        }
        let user = UserMessage {
            id: user.id.0,
            username: user.username,
            email: user.email,
        };
        Ok(session(user, token, Grant { digest, expires_at }))
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
                    let user = self.pseudonym(&key);
                    tracing::warn!(user, client, retry_after_secs, "login throttled");
                    self.note_throttled(&key).await;
                }
                return Err(e);
            }
        };
        let (token, grant) = self.new_token()?;
        let command = UserCommand::IssueToken(grant).to(key.as_str());
        let loaded = decider::load::<User>(&*self.store, &command).await?;
        let hash = loaded.state.account().map(|a| a.password_hash.clone());
        if !self.hasher.verify(password, hash).await? {
            tracing::warn!(user = self.pseudonym(&key), client, "login failed");
            attempt.failed().await?;
            return Err(AuthError::IncorrectCredentials);
        }
        attempt.succeeded().await?;
        let account = loaded
            .state
            .account()
            .ok_or(AuthError::IncorrectCredentials)?;
        let user = UserMessage {
            id: account.user_id.0,
            username: account.username.clone(),
            email: account.email.clone(),
        };
        self.execute(&command, loaded).await?;
        tracing::info!(user_id = user.id, "token issued");
        Ok(session(user, token, grant))
    }

    /// Records, for the user's activity, that their login was refused as
    /// throttled (at most once a minute; nothing for an unknown username).
    /// A failure here is logged: the refusal stands either way.
    async fn note_throttled(&self, normalized: &str) {
        let command = UserCommand::NoteThrottled { now: Utc::now() }.to(normalized);
        let noted = async {
            let loaded = decider::load::<User>(&*self.store, &command).await?;
            if loaded.state.account().is_none() {
                return Ok(());
            }
            decider::execute_loaded::<User>(&*self.store, &command, loaded, None).await?;
            Ok::<_, AuthError>(())
        };
        if let Err(e) = noted.await {
            tracing::warn!(error = %e, "could not note a throttled login");
        }
    }

    /// The account history of `token`'s user, newest first: the newest
    /// `newest` entries (all with `None`) and how many there are.
    async fn activity(&self, token: &str, newest: Option<usize>) -> Result<(Vec<Activity>, usize)> {
        let digest = token::parse(token).ok_or(AuthError::InvalidToken)?;
        let view = self.view.read_linearizable().await?;
        let user = view
            .by_token(&digest, Utc::now())
            .ok_or(AuthError::InvalidToken)?
            .id;
        let (facts, count) = view.activity(user, newest);
        let entries = facts
            .iter()
            .filter_map(|fact| {
                let kind = match AccountActivity::of_code(fact.what)? {
                    AccountActivity::Registered => ActivityKind::Registered,
                    AccountActivity::LoggedIn => ActivityKind::LoggedIn,
                    AccountActivity::LoggedOut => ActivityKind::LoggedOut,
                    AccountActivity::LoggedOutAll => ActivityKind::LoggedOutAll,
                    AccountActivity::Throttled => ActivityKind::Throttled,
                };
                Some(Activity {
                    time: Some(proto::timestamp_micros(fact.at_micros)),
                    kind: kind.into(),
                })
            })
            .collect();
        Ok((entries, count))
    }

    /// The user a live token belongs to: an in-memory lookup, once the
    /// token index holds every change acknowledged anywhere before the call
    /// (a logout through another replica counts at once).
    async fn authenticate(&self, token: &str) -> Result<UserMessage> {
        let digest = token::parse(token).ok_or(AuthError::InvalidToken)?;
        self.user_of(&digest).await
    }

    async fn user_of(&self, digest: &token::TokenDigest) -> Result<UserMessage> {
        let user = live_user(&self.view, digest, user_message);
        user.await?.ok_or(AuthError::InvalidToken)
    }

    /// Runs a command on the stream of `token`'s user.
    async fn revoke(
        &self,
        token: &str,
        command: impl FnOnce(token::TokenDigest) -> UserCommand,
    ) -> Result<UserId> {
        let digest = token::parse(token).ok_or(AuthError::InvalidToken)?;
        let user = self.user_of(&digest).await?;
        let command = command(digest).to(normalize_username(&user.username));
        let loaded = decider::load::<User>(&*self.store, &command).await?;
        self.execute(&command, loaded).await?;
        Ok(UserId(user.id))
    }
}

fn session(user: UserMessage, token: String, grant: Grant) -> Session {
    Session {
        user: Some(user),
        token,
        expiry: Some(proto::timestamp_micros(grant.expires_at.timestamp_micros())),
    }
}

#[tonic::async_trait]
impl AuthService for AuthGrpc {
    #[tracing::instrument(skip_all, fields(username = %request.get_ref().username))]
    async fn register(
        &self,
        request: Request<RegisterRequest>,
    ) -> Result<Response<RegisterResponse>, Status> {
        let key = platform::idempotency_key(&request).map(str::to_owned);
        Ok(Response::new(
            self.register(request.into_inner(), key.as_deref())
                .await?
                .into(),
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
        tracing::info!(%user_id, "token revoked");
        Ok(Response::new(LogoutResponse {}))
    }

    async fn list_activity(
        &self,
        request: Request<ListActivityRequest>,
    ) -> Result<Response<ListActivityResponse>, Status> {
        let r = request.get_ref();
        let newest = (r.newest > 0).then_some(r.newest as usize);
        let (activities, count) = self.activity(&r.token, newest).await?;
        Ok(Response::new(ListActivityResponse {
            activities,
            count: count as u64,
        }))
    }

    async fn get_account(
        &self,
        request: Request<GetAccountRequest>,
    ) -> Result<Response<GetAccountResponse>, Status> {
        let digest = token::parse(&request.get_ref().token).ok_or(AuthError::InvalidToken)?;
        let account = live_user(&self.view, &digest, |u| GetAccountResponse {
            user: Some(user_message(u)),
            date_joined: Some(proto::timestamp_micros(u.joined.timestamp_micros())),
        });
        let account = account.await.map_err(AuthError::from)?;
        Ok(Response::new(account.ok_or(AuthError::InvalidToken)?))
    }

    async fn logout_all(
        &self,
        request: Request<LogoutAllRequest>,
    ) -> Result<Response<LogoutAllResponse>, Status> {
        let user_id = self
            .revoke(&request.get_ref().token, |_| UserCommand::RevokeAllTokens)
            .await?;
        tracing::info!(%user_id, "all tokens revoked");
        Ok(Response::new(LogoutAllResponse {}))
    }
}

fn user_message(u: &crate::read_model::UserRecord) -> UserMessage {
    UserMessage {
        id: u.id.0,
        username: u.username.clone(),
        email: u.email.clone(),
    }
}

/// `read` of the user of a live token, read linearizably: what
/// `Authenticate` answers, and what [`Tokens`] lends to services in this
/// process.
async fn live_user<T>(
    view: &Projection<AuthView>,
    digest: &token::TokenDigest,
    read: impl FnOnce(&crate::read_model::UserRecord) -> T,
) -> std::result::Result<Option<T>, StaleRead> {
    let view = view.read_linearizable().await?;
    Ok(view.by_token(digest, Utc::now()).map(read))
}

/// auth-service's token check for other services in this process: the
/// answer of `Authenticate`, by the same read, without encoding a call.
pub struct Tokens(pub(crate) Arc<Projection<AuthView>>);

#[tonic::async_trait]
impl platform::TokenCheck for Tokens {
    async fn user_id(&self, token: &str) -> std::result::Result<Option<i64>, CheckUnavailable> {
        let Some(digest) = token::parse(token) else {
            return Ok(None);
        };
        let user = live_user(&self.0, &digest, |u| u.id.0).await;
        user.map_err(|e| CheckUnavailable(e.to_string()))
    }
}
