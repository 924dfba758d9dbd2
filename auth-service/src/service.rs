//! The gRPC edge of auth-service: requests parsed into domain values, one
//! command or query each, answers translated back. The rules are in
//! [`crate::domain`], the token index in [`crate::read_model`], the error
//! mapping in [`crate::error`].

use std::sync::Arc;

use chrono::{DateTime, Utc};
use event_sourcing::decider::{self, Loaded};
use event_sourcing::idempotency::{self, Idempotent, KeyedModel, Ran};
use event_sourcing::read_model::Projection;
use event_store::ids::IdSequence;
use event_store::{EventStore, EventStoreError};
use platform::CheckUnavailable;
use proto::auth::auth_service_server::AuthService;
use proto::auth::{
    Activity, ActivityKind, AuthenticateManyRequest, AuthenticateManyResponse, AuthenticateRequest,
    AuthenticateResponse, ChangePasswordRequest, ChangePasswordResponse, EraseAccountRequest,
    EraseAccountResponse, GetAccountRequest, GetAccountResponse, ListActivityRequest,
    ListActivityResponse, ListTokensRequest, ListTokensResponse, LoginRequest, LoginResponse,
    LogoutAllRequest, LogoutAllResponse, LogoutRequest, LogoutResponse, RegisterRequest,
    RegisterResponse, RevokeTokenRequest, RevokeTokenResponse, Session, TokenInfo, TokenOwner,
    User as UserMessage,
};
use tonic::{Request, Response, Status};

use crate::domain::{
    AuthEvent, ClaimUsername, Email, Grant, Issue, Password, Personal, RefreshPolicy,
    StoredPersonal, ToUser, USER_IDS_STREAM, User, UserCommand, UserId, Username, UsernameClaim,
    claim_stream, normalize_username, parse_login, parse_token_name, sealed_for, user_stream,
    username_skeleton,
};
use crate::error::{AuthError, Result};
use crate::keys::Keyring;
use crate::password::PasswordHasher;
use crate::read_model::{
    AccountActivity, ActivityEntry, AuthView, Profile, Registration, UserRecord,
};
use crate::seal;
use crate::seal::Pepper;
use crate::sessions::{Client, Sessions};
use crate::throttle::LoginThrottle;
use crate::token;
use event_sourcing::decider::Decider;

/// The most tokens one `AuthenticateMany` checks (its request stays far
/// below the 64 KiB a request may be).
pub const MAX_TOKENS_CHECKED: usize = 512;

/// How long what auth-service hands out lasts.
#[derive(Debug, Clone, Copy)]
pub struct Lifetimes {
    /// A token, from its issue.
    pub token: chrono::Duration,
    /// An idempotency key sent with a registration answers its retries
    /// this long after the registration (a day by default; Stripe keeps
    /// keys a day as well). After that the key is ignored, and the retry
    /// is refused as the name is taken.
    pub registration_key: chrono::Duration,
}

/// The `movies.auth.v1.AuthService` implementation.
pub struct AuthGrpc {
    store: Arc<dyn EventStore>,
    view: Arc<Projection<AuthView>>,
    hasher: PasswordHasher,
    throttle: LoginThrottle,
    lifetimes: Lifetimes,
    user_ids: IdSequence,
    /// Names in the log, the throttle and the logs as MACs under it.
    pepper: Pepper,
    /// Users' data keys: personal data sealed and opened with them.
    keyring: Arc<Keyring>,
    /// Client details, token ids, and every token check (with refresh).
    sessions: Arc<Sessions>,
}

impl AuthGrpc {
    /// Serves the users in `store`, whose events `view` follows.
    pub fn new(
        store: Arc<dyn EventStore>,
        view: Arc<Projection<AuthView>>,
        hasher: PasswordHasher,
        throttle: LoginThrottle,
        lifetimes: Lifetimes,
        (pepper, keyring): (Pepper, Arc<Keyring>),
        refresh: Option<RefreshPolicy>,
    ) -> Self {
        let sessions = Sessions::new(
            store.clone(),
            view.clone(),
            (pepper.clone(), keyring.clone()),
            refresh,
        );
        Self {
            store,
            view,
            hasher,
            throttle,
            lifetimes,
            user_ids: IdSequence::new(USER_IDS_STREAM, "User"),
            pepper,
            keyring,
            sessions: Arc::new(sessions),
        }
    }

    /// The token check of this service, for others in the process.
    pub(crate) fn token_check(&self) -> Tokens {
        Tokens(self.sessions.clone())
    }

    /// The username, email and password hash `stored` holds for `user`:
    /// opened with the user's key if sealed (`None`: the key is gone).
    async fn personal(&self, user: UserId, stored: &StoredPersonal) -> Result<Option<Personal>> {
        let sealed = match stored {
            StoredPersonal::Clear(personal) => return Ok(Some(personal.clone())),
            StoredPersonal::Sealed(sealed) => sealed,
        };
        let Some(key) = self.keyring.get(user).await? else {
            return Ok(None);
        };
        let json = seal::open(&key, &sealed_for(user), sealed).map_err(corrupt(user))?;
        Ok(Some(serde_json::from_slice(&json).map_err(corrupt(user))?))
    }

    /// A user as answers show them: id, username and email (opened with
    /// the user's key if sealed).
    async fn user_message(&self, record: &UserRecord) -> Result<UserMessage> {
        let (username, email) = match &record.profile {
            Profile::Clear { username, email } => (username.clone(), email.clone()),
            Profile::Sealed(sealed) => {
                let stored = StoredPersonal::Sealed(sealed.clone());
                let personal = self.personal(record.id, &stored).await?;
                let personal = personal.ok_or(AuthError::InvalidToken)?;
                (personal.username, personal.email)
            }
        };
        Ok(UserMessage {
            id: record.id.0,
            username,
            email,
        })
    }

    /// The MACs of a username: of its normalized form and of its skeleton.
    fn macs(&self, username: &str) -> (String, String) {
        (
            self.pepper.mac("name", &normalize_username(username)),
            self.pepper.mac("skeleton", &username_skeleton(username)),
        )
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
            .checked_add_signed(self.lifetimes.token)
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
    /// request (same key, username and email) is answered as a login with
    /// the password it carries: the user, and a new token. It is under the
    /// login throttle, a wrong password is a failed login, and every
    /// mismatch (email or password) answers [`AuthError::KeyReused`] after
    /// the same work, so that a key tells nothing to whoever learns it.
    /// Nothing derived from the password is kept for retries, and a key
    /// answers retries for [`Lifetimes::registration_key`] only (then the name is
    /// simply taken).
    async fn register(
        &self,
        r: RegisterRequest,
        key: Option<&str>,
        client: &Client,
    ) -> Result<Session> {
        let given = (r.username.clone(), r.password.clone());
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
        let (name, skeleton) = self.macs(username.as_str());
        let keyed =
            key.and_then(|k| self.registration_key(k, &normalized, &name, &username, &email));
        // What this call registered (its token's digest and its answer), and
        // whether a retry's login counted a failure already.
        let mine = std::sync::Mutex::new(None);
        let counted = std::sync::atomic::AtomicBool::new(false);
        let run = async {
            // A cheap refusal before the costly hash; the store decides.
            // Names registered before skeletons were claimed (or before
            // they were sealed) are found by the view.
            let taken = {
                let view = self.view.read();
                let skeletons = (username_skeleton(username.as_str()), skeleton.clone());
                view.confusable((&skeletons.0, &skeletons.1), (&normalized, &name))
                    || view.by_username(&normalized, &name).is_some()
            };
            if taken {
                return Err(AuthError::UsernameTaken);
            }
            let password_hash = self.hasher.hash(password).await?;
            let (token, grant) = self.new_token()?;
            let allocated = UserId(self.user_ids.next(&self.store).await?);
            // The skeleton first: of two confusable names registered at
            // once, only one gets the claim; of two registrations of one
            // name, both go on as the user it was claimed for, and only
            // one can create that user's stream.
            let claim = ClaimUsername {
                skeleton: skeleton.clone(),
                name: name.clone(),
                user_id: allocated,
                release: false,
            };
            decider::execute::<UsernameClaim>(&*self.store, &claim, None).await?;
            let user_id = self.claimed(&claim).await?;
            let key = self.keyring.create(user_id).await?;
            let personal = Personal {
                username: username.as_str().to_owned(),
                email: email.as_str().to_owned(),
                password_hash,
            };
            let json = serde_json::to_vec(&personal).map_err(corrupt(user_id))?;
            let sealed = seal::seal(&key, &sealed_for(user_id), &json).map_err(corrupt(user_id))?;
            let issue = Issue {
                grant,
                client: self.sessions.seal(user_id, &client.info(None)).await?,
                credentials: 0,
            };
            let user = UserMessage {
                id: user_id.0,
                username: personal.username,
                email: personal.email,
            };
            let command = UserCommand::Register {
                user_id,
                name,
                skeleton,
                sealed,
                issue,
            }
            .to(user_stream(user_id));
            let done = decider::execute::<User>(&*self.store, &command, keyed.as_ref()).await?;
            tracing::info!(%user_id, "user registered");
            let answer = session(user, token, grant);
            *mine.lock().expect("not poisoned") = Some((grant.digest, answer.clone()));
            Ok(Ran {
                position: done.position,
                created: Registration { user_id },
                answer,
            })
        };
        let retried = async |created: Registration| {
            // This call's own registration, if it is the one stored.
            let own = mine.lock().expect("not poisoned").take();
            if let Some((digest, answer)) = own {
                let stored = self.view.read().by_token(&digest, Utc::now()).map(|u| u.id);
                if stored == Some(created.user_id) {
                    return Ok(answer);
                }
            }
            let (username, password) = given.clone();
            let request = LoginRequest {
                username,
                password,
                name: String::new(),
            };
            let session = self.login(request, client).await;
            match session {
                Ok(s) if s.user.as_ref().map(|u| u.id) == Some(created.user_id.0) => Ok(s),
                Ok(_) | Err(AuthError::IncorrectCredentials) => {
                    counted.store(true, std::sync::atomic::Ordering::Relaxed);
                    Err(AuthError::KeyReused)
                }
                Err(e) => Err(e),
            }
        };
        match idempotency::once(&self.view, keyed.as_ref(), run, retried).await {
            Ok(outcome) => Ok(outcome.into_inner()),
            // Another email with the key: a failed login, as much work as
            // a wrong password.
            Err(AuthError::KeyReused)
                if keyed.is_some() && !counted.load(std::sync::atomic::Ordering::Relaxed) =>
            {
                let (_, password) = given.clone();
                let password =
                    Password::parse_new(password).map_err(|e| AuthError::Invalid(vec![e]))?;
                let attempt = self.reserve_attempt(&normalized, client).await?;
                self.hasher.verify(password, None).await?;
                attempt.failed().await?;
                Err(AuthError::KeyReused)
            }
            Err(e) => Err(e),
        }
    }

    /// The idempotency of a keyed registration: by the name's MAC, with a
    /// fingerprint of MACs (no personal data in the stamp). A key a release
    /// before sealing recorded (scope and fingerprint by the name itself)
    /// still answers its retries. `None` once the user the key registered
    /// is older than [`Lifetimes::registration_key`]: the key is then ignored.
    fn registration_key(
        &self,
        key: &str,
        normalized: &str,
        name: &str,
        username: &Username,
        email: &Email,
    ) -> Option<Idempotent> {
        let older = Idempotent::new(
            &format!("register:{normalized}"),
            key,
            &[username.as_str(), email.as_str()],
        );
        let (username, email) = (
            self.pepper.mac("fingerprint", username.as_str()),
            self.pepper.mac("fingerprint", email.as_str()),
        );
        let newer = Idempotent::new(&format!("register:{name}"), key, &[&username, &email]);
        let view = self.view.read();
        let recorded = |k: &Idempotent| {
            let user = view.keyed().get(k.event_id)?.created.user_id;
            Some(view.user(user).map(|u| u.joined))
        };
        let (keyed, joined) = match recorded(&older) {
            Some(joined) => (older, joined),
            None => {
                let joined = recorded(&newer).flatten();
                (newer, joined)
            }
        };
        match joined {
            Some(joined) if Utc::now() - joined > self.lifetimes.registration_key => None,
            _ => Some(keyed),
        }
    }

    /// The user a claim was made for (see `UsernameClaim::holder_for`), or
    /// [`AuthError::UsernameTaken`].
    async fn claimed(&self, claim: &ClaimUsername) -> Result<UserId> {
        let mut state = UsernameClaim::default();
        for recorded in self
            .store
            .read_stream(&claim_stream(&claim.skeleton), 0)
            .await?
        {
            let event = <AuthEvent as event_store::Event>::from_recorded(&recorded)?;
            state = <UsernameClaim as Decider>::evolve(state, &event);
        }
        state
            .holder_for(&claim.name)
            .ok_or(AuthError::UsernameTaken)
    }

    async fn login(&self, r: LoginRequest, client: &Client) -> Result<Session> {
        let ((username, password), name) = match (
            parse_login(&r.username, r.password),
            parse_token_name(&r.name),
        ) {
            (Ok(login), Ok(name)) => (login, name),
            (login, name) => {
                let mut errors = login.err().unwrap_or_default();
                errors.extend(name.err());
                return Err(AuthError::Invalid(errors));
            }
        };
        let key = normalize_username(&username);
        let attempt = self.reserve_attempt(&key, client).await?;
        let (token, grant) = self.new_token()?;
        let found = self.stream_of(&key).await?;
        let (loaded, personal) = match found {
            Some(stream) => {
                // What the token records is sealed once the user is known.
                let issue = Issue {
                    grant,
                    client: None,
                    credentials: 0,
                };
                let command = UserCommand::IssueToken(issue).to(stream);
                let loaded = decider::load::<User>(&*self.store, &command).await?;
                let personal = match loaded.state.account() {
                    Some(a) => self.personal(a.user_id, &a.personal).await?,
                    None => None,
                };
                (Some((command, loaded)), personal)
            }
            None => (None, None),
        };
        let hash = personal.as_ref().map(|p| p.password_hash.clone());
        if !self.hasher.verify(password, hash).await? {
            let address = &client.address;
            tracing::warn!(
                user = self.pseudonym(&key),
                client = address,
                "login failed"
            );
            attempt.failed().await?;
            if let Some((command, loaded)) = &loaded {
                if let Some(account) = loaded.state.account() {
                    self.note_failed(&command.stream, account.user_id, client)
                        .await;
                }
            }
            return Err(AuthError::IncorrectCredentials);
        }
        attempt.succeeded().await?;
        let (Some((command, loaded)), Some(personal)) = (loaded, personal) else {
            return Err(AuthError::IncorrectCredentials);
        };
        let account = loaded
            .state
            .account()
            .ok_or(AuthError::IncorrectCredentials)?;
        let user = UserMessage {
            id: account.user_id.0,
            username: personal.username,
            email: personal.email,
        };
        let issue = Issue {
            grant,
            client: self
                .sessions
                .seal(account.user_id, &client.info(name))
                .await?,
            credentials: account.password_changes,
        };
        let command = UserCommand::IssueToken(issue).to(command.stream);
        self.execute(&command, loaded).await?;
        tracing::info!(user_id = user.id, "token issued");
        Ok(session(user, token, grant))
    }

    /// A login attempt for the user `normalized` from `client`, counted
    /// before the password is checked (parallel guesses all count); a
    /// throttled one is logged and noted in the user's activity.
    async fn reserve_attempt(
        &self,
        normalized: &str,
        client: &Client,
    ) -> Result<crate::throttle::Attempt> {
        let reserved = self.throttle.reserve(normalized, &client.address).await;
        if let Err(AuthError::Throttled { retry_after_secs }) = &reserved {
            let user = self.pseudonym(normalized);
            let address = &client.address;
            tracing::warn!(user, client = address, retry_after_secs, "login throttled");
            self.note_throttled(normalized, client).await;
        }
        reserved
    }

    /// Records, for the user's security log, a wrong password given for
    /// them from `client`. A failure here is logged: the refusal stands.
    async fn note_failed(&self, stream: &str, user: UserId, client: &Client) {
        let noted = async {
            let sealed = self.sessions.seal(user, &client.info(None)).await?;
            let command = UserCommand::NoteFailed { client: sealed }.to(stream);
            decider::execute::<User>(&*self.store, &command, None).await?;
            Ok::<_, AuthError>(())
        };
        if let Err(e) = noted.await {
            tracing::warn!(error = %e, "could not note a failed login");
        }
    }

    /// Records, for the user's activity, that their login was refused as
    /// throttled (at most once a minute; nothing for an unknown username).
    /// A failure here is logged: the refusal stands either way.
    async fn note_throttled(&self, normalized: &str, client: &Client) {
        let noted = async {
            let Some(stream) = self.stream_of(normalized).await? else {
                return Ok(());
            };
            let now = Utc::now();
            let probe = UserCommand::NoteThrottled { now, client: None }.to(stream);
            let loaded = decider::load::<User>(&*self.store, &probe).await?;
            let Some(user) = loaded.state.account().map(|a| a.user_id) else {
                return Ok(());
            };
            let client = self.sessions.seal(user, &client.info(None)).await?;
            let command = UserCommand::NoteThrottled { now, client }.to(probe.stream);
            decider::execute_loaded::<User>(&*self.store, &command, loaded, None).await?;
            Ok::<_, AuthError>(())
        };
        if let Err(e) = noted.await {
            tracing::warn!(error = %e, "could not note a throttled login");
        }
    }

    /// The stream of the user registered as `normalized`, if any, read
    /// linearizably (a registration acknowledged anywhere counts).
    async fn stream_of(&self, normalized: &str) -> Result<Option<String>> {
        let name = self.pepper.mac("name", normalized);
        let view = self.view.read_linearizable().await?;
        Ok(view
            .by_username(normalized, &name)
            .map(|u| u.stream.clone()))
    }

    /// The account history of `token`'s user, newest first: the newest
    /// `newest` entries (all with `None`) and how many there are. Each
    /// entry's details (the client, the token) come from its event, read
    /// for this page only, and opened with the user's key.
    async fn activity(&self, token: &str, newest: Option<usize>) -> Result<(Vec<Activity>, usize)> {
        let digest = token::parse(token).ok_or(AuthError::InvalidToken)?;
        let user = self.sessions.check(&digest, |u| u.id).await?;
        let user = user.ok_or(AuthError::InvalidToken)?;
        let (facts, count) = self.view.read().activity(user, newest);
        let entries: Vec<_> = facts
            .iter()
            .filter_map(|f| Some((f.at_micros, ActivityEntry::of_fact(f.what)?)))
            .collect();
        let positions: Vec<u64> = entries.iter().map(|(_, e)| e.position).collect();
        let events = self.sessions.events_at(&positions).await?;
        let mut activities = Vec::with_capacity(entries.len());
        for (at_micros, entry) in entries {
            let kind = match entry.kind {
                AccountActivity::Registered => ActivityKind::Registered,
                AccountActivity::LoggedIn => ActivityKind::LoggedIn,
                AccountActivity::LoggedOut => ActivityKind::LoggedOut,
                AccountActivity::LoggedOutAll => ActivityKind::LoggedOutAll,
                AccountActivity::Throttled => ActivityKind::Throttled,
                AccountActivity::LoginFailed => ActivityKind::LoginFailed,
                AccountActivity::PasswordChanged => ActivityKind::PasswordChanged,
                AccountActivity::TokenRevoked => ActivityKind::TokenRevoked,
                AccountActivity::TokenRefreshed => ActivityKind::TokenRefreshed,
            };
            let (sealed, digest) = match events.get(&entry.position) {
                Some(AuthEvent::TokenIssued { client, digest, .. }) => {
                    (client.as_deref(), Some(digest))
                }
                Some(
                    AuthEvent::TokenRevoked { digest, .. }
                    | AuthEvent::TokenRefreshed { digest, .. },
                ) => (None, Some(digest)),
                Some(
                    AuthEvent::LoginFailed { client, .. }
                    | AuthEvent::LoginThrottled { client, .. },
                ) => (client.as_deref(), None),
                _ => (None, None),
            };
            let client = self.sessions.open(user, sealed).await?.unwrap_or_default();
            activities.push(Activity {
                time: Some(proto::timestamp_micros(at_micros)),
                kind: kind.into(),
                address: client.address,
                user_agent: client.user_agent.unwrap_or_default(),
                token_id: digest
                    .map(|d| self.sessions.token_id(d))
                    .unwrap_or_default(),
            });
        }
        Ok((activities, count))
    }

    /// The user a live token belongs to: an in-memory lookup, once the
    /// token index holds every change acknowledged anywhere before the call
    /// (a logout through another replica counts at once).
    async fn authenticate(&self, token: &str) -> Result<UserMessage> {
        let digest = token::parse(token).ok_or(AuthError::InvalidToken)?;
        self.user_of(&digest).await
    }

    /// Whose each of `tokens` is, by one linearizable read: the user's id
    /// of each live token, in order, `None` for the others (a malformed
    /// token included).
    async fn owners(&self, tokens: &[String]) -> Result<Vec<Option<i64>>> {
        if tokens.len() > MAX_TOKENS_CHECKED {
            return Err(AuthError::TooManyTokens {
                limit: MAX_TOKENS_CHECKED,
            });
        }
        let parsed: Vec<Option<token::TokenDigest>> =
            tokens.iter().map(|t| token::parse(t)).collect();
        let digests: Vec<token::TokenDigest> = parsed.iter().flatten().copied().collect();
        let mut found = self
            .sessions
            .check_all(&digests, |user| user.id.0)
            .await?
            .into_iter();
        Ok(parsed
            .iter()
            .map(|digest| digest.and_then(|_| found.next().flatten()))
            .collect())
    }

    async fn user_of(&self, digest: &token::TokenDigest) -> Result<UserMessage> {
        let user = self.sessions.check(digest, UserRecord::clone).await?;
        self.user_message(&user.ok_or(AuthError::InvalidToken)?)
            .await
    }

    /// The live tokens of `token`'s user, oldest first: the page from
    /// `offset` of at most `limit` (all with `None`), and how many there
    /// are. Where each was issued to comes from its `TokenIssued`.
    async fn tokens(
        &self,
        token: &str,
        offset: usize,
        limit: Option<usize>,
    ) -> Result<(Vec<TokenInfo>, usize)> {
        let digest = token::parse(token).ok_or(AuthError::InvalidToken)?;
        let user = self.sessions.check(&digest, |u| u.id).await?;
        let user = user.ok_or(AuthError::InvalidToken)?;
        let live = self.view.read().live_tokens(user, Utc::now());
        let count = live.len();
        let page: Vec<_> = live
            .into_iter()
            .skip(offset)
            .take(limit.unwrap_or(usize::MAX))
            .collect();
        let positions: Vec<u64> = page.iter().map(|t| t.record.issued_position).collect();
        let events = self.sessions.events_at(&positions).await?;
        let mut tokens = Vec::with_capacity(page.len());
        for t in page {
            let sealed = match events.get(&t.record.issued_position) {
                Some(AuthEvent::TokenIssued { client, .. }) => client.as_deref(),
                _ => None,
            };
            let client = self.sessions.open(user, sealed).await?.unwrap_or_default();
            tokens.push(TokenInfo {
                issued: Some(proto::timestamp_micros(
                    t.record.issued_at.timestamp_micros(),
                )),
                expiry: Some(proto::timestamp_micros(
                    t.record.expires_at.timestamp_micros(),
                )),
                current: t.digest == digest,
                id: self.sessions.token_id(&t.digest),
                name: client.name.unwrap_or_default(),
                address: client.address,
                user_agent: client.user_agent.unwrap_or_default(),
            });
        }
        Ok((tokens, count))
    }

    /// Revokes the live token of `token`'s user whose id is `id` (any of
    /// theirs, this one included: then it is a logout).
    async fn revoke_by_id(&self, token: &str, id: &str) -> Result<UserId> {
        let digest = token::parse(token).ok_or(AuthError::InvalidToken)?;
        let user = self.sessions.check(&digest, |u| (u.id, u.stream.clone()));
        let (user, stream) = user.await?.ok_or(AuthError::InvalidToken)?;
        let target = self
            .view
            .read()
            .live_tokens(user, Utc::now())
            .into_iter()
            .map(|t| t.digest)
            .find(|d| self.sessions.token_id(d) == id)
            .ok_or(AuthError::NoSuchToken)?;
        let command = UserCommand::RevokeToken {
            digest: target,
            by: digest,
        }
        .to(stream);
        let loaded = decider::load::<User>(&*self.store, &command).await?;
        match self.execute(&command, loaded).await {
            // Revoked meanwhile by another request.
            Err(AuthError::InvalidToken) if target != digest => Err(AuthError::NoSuchToken),
            done => done.map(|()| user),
        }
    }

    /// Changes the password of `token`'s user, who confirms with the old
    /// one (counted as a login from `client`): their personal data sealed
    /// anew with the new hash, every other token revoked, this one kept.
    async fn change_password(
        &self,
        token: &str,
        (old, new): (String, String),
        client: &Client,
    ) -> Result<UserId> {
        let digest = token::parse(token).ok_or(AuthError::InvalidToken)?;
        let user = self.sessions.check(&digest, UserRecord::clone).await?;
        let user = user.ok_or(AuthError::InvalidToken)?;
        // The fields first, as a serializer would: nothing counted yet.
        let renamed = |field| move |e: platform::FieldError| platform::FieldError { field, ..e };
        let checked = (
            Password::parse_given(old).map_err(renamed("old_password")),
            Password::parse_new(new).map_err(renamed("new_password")),
        );
        let (old, new) = match checked {
            (Ok(old), Ok(new)) => (old, new),
            (old, new) => {
                let errors = [old.err(), new.err()].into_iter().flatten().collect();
                return Err(AuthError::Invalid(errors));
            }
        };
        if matches!(user.profile, Profile::Clear { .. }) {
            return Err(AuthError::NotSealed);
        }
        let probe = UserCommand::ChangePassword {
            sealed: String::new(),
            kept: digest,
        }
        .to(user.stream.clone());
        let loaded = decider::load::<User>(&*self.store, &probe).await?;
        let account = loaded.state.account().ok_or(AuthError::InvalidToken)?;
        let personal = self.personal(user.id, &account.personal).await?;
        let personal = personal.ok_or(AuthError::InvalidToken)?;
        let normalized = normalize_username(&personal.username);
        let attempt = self.reserve_attempt(&normalized, client).await?;
        let hash = Some(personal.password_hash.clone());
        if !self.hasher.verify(old, hash).await? {
            let address = &client.address;
            let user_log = self.pseudonym(&normalized);
            tracing::warn!(
                user = user_log,
                client = address,
                "password change refused: wrong password"
            );
            attempt.failed().await?;
            self.note_failed(&user.stream, user.id, client).await;
            return Err(AuthError::IncorrectCredentials);
        }
        attempt.succeeded().await?;
        let key = self.keyring.get(user.id).await?;
        let key = key.ok_or(AuthError::InvalidToken)?;
        let personal = Personal {
            password_hash: self.hasher.hash(new).await?,
            ..personal
        };
        let json = serde_json::to_vec(&personal).map_err(corrupt(user.id))?;
        let sealed = seal::seal(&key, &sealed_for(user.id), &json).map_err(corrupt(user.id))?;
        let command = UserCommand::ChangePassword {
            sealed,
            kept: digest,
        }
        .to(user.stream);
        self.execute(&command, loaded).await?;
        tracing::info!(user_id = %user.id, "password changed");
        Ok(user.id)
    }

    /// Erases `token`'s user, who confirms with `password` (counted as a
    /// login from `client`). In order, each step safe to repeat: the
    /// `UserErased` event (their tokens refused from then on, on every
    /// replica, and the read models drop them); their key destroyed (a
    /// process dying before this is covered at the next start, see
    /// [`AuthGrpc::destroy_erased_keys`]); their name's claim released; the
    /// throttle's records of them deleted; this replica's snapshot
    /// rewritten (the others rewrite theirs as they apply the event).
    async fn erase(&self, token: &str, password: String, client: &Client) -> Result<UserId> {
        let digest = token::parse(token).ok_or(AuthError::InvalidToken)?;
        let user = self.sessions.check(&digest, UserRecord::clone).await?;
        let user = user.ok_or(AuthError::InvalidToken)?;
        if matches!(user.profile, Profile::Clear { .. }) {
            return Err(AuthError::NotSealed);
        }
        let command = UserCommand::Erase.to(user.stream.clone());
        let loaded = decider::load::<User>(&*self.store, &command).await?;
        let account = loaded.state.account().ok_or(AuthError::InvalidToken)?;
        let personal = self.personal(user.id, &account.personal).await?;
        let personal = personal.ok_or(AuthError::InvalidToken)?;
        let (normalized, password) =
            parse_login(&personal.username, password).map_err(AuthError::Invalid)?;
        let normalized = normalize_username(&normalized);
        let attempt = self.reserve_attempt(&normalized, client).await?;
        let hash = Some(personal.password_hash.clone());
        if !self.hasher.verify(password, hash).await? {
            tracing::warn!(
                user = self.pseudonym(&normalized),
                client = client.address,
                "erasure refused: wrong password"
            );
            attempt.failed().await?;
            self.note_failed(&user.stream, user.id, client).await;
            return Err(AuthError::IncorrectCredentials);
        }
        attempt.succeeded().await?;
        self.erase_loaded(user.id, &command, loaded, &personal)
            .await?;
        Ok(user.id)
    }

    /// The erasure's steps, once the user is loaded and confirmed.
    async fn erase_loaded(
        &self,
        user: UserId,
        command: &ToUser,
        loaded: Loaded<User>,
        personal: &Personal,
    ) -> Result<()> {
        self.execute(command, loaded).await?;
        self.keyring.destroy(user).await?;
        let (name, skeleton) = self.macs(&personal.username);
        let release = ClaimUsername {
            skeleton,
            name,
            user_id: user,
            release: true,
        };
        decider::execute::<UsernameClaim>(&*self.store, &release, None).await?;
        self.throttle
            .forget(&normalize_username(&personal.username))
            .await?;
        if let Err(e) = self.view.save_snapshot().await {
            tracing::error!(error = %e, "cannot rewrite the snapshot after an erasure");
        }
        tracing::info!(user_id = %user, "user erased");
        Ok(())
    }

    /// Erases again, with no password, every user of `users` this store
    /// still holds: the erasures a restored backup predates (see README,
    /// "Backups and erasures"). Returns the ids erased now; users the store
    /// does not hold, or holds erased, are skipped.
    pub async fn reapply_erasures(&self, users: &[UserId]) -> Result<Vec<UserId>> {
        let mut erased = Vec::new();
        for &id in users {
            let Some(user) = self.view.read_linearizable().await?.user(id).cloned() else {
                continue;
            };
            if matches!(user.profile, Profile::Clear { .. }) {
                return Err(AuthError::NotSealed);
            }
            let command = UserCommand::Erase.to(user.stream.clone());
            let loaded = decider::load::<User>(&*self.store, &command).await?;
            let Some(account) = loaded.state.account() else {
                continue;
            };
            let personal = self.personal(id, &account.personal).await?;
            let Some(personal) = personal else {
                // The key is gone already: only the event is missing.
                self.execute(&command, loaded).await?;
                erased.push(id);
                continue;
            };
            self.erase_loaded(id, &command, loaded, &personal).await?;
            erased.push(id);
        }
        Ok(erased)
    }

    /// Every user erased in this store, oldest first (ids only).
    pub fn erasures(&self) -> Vec<UserId> {
        self.view.read().erased().to_vec()
    }

    /// Destroys the keys of every user the view knows to be erased (a
    /// process may have died between an erasure's event and its key's
    /// destruction): at start, one statement.
    pub async fn destroy_erased_keys(&self) -> Result<()> {
        let erased = self.view.read().erased().to_vec();
        if !erased.is_empty() {
            self.keyring.destroy_all(&erased).await?;
        }
        Ok(())
    }

    /// Runs a command on the stream of `token`'s user.
    async fn revoke(
        &self,
        token: &str,
        command: impl FnOnce(token::TokenDigest) -> UserCommand,
    ) -> Result<UserId> {
        let digest = token::parse(token).ok_or(AuthError::InvalidToken)?;
        let user = self.sessions.check(&digest, |u| (u.id, u.stream.clone()));
        let (user_id, stream) = user.await?.ok_or(AuthError::InvalidToken)?;
        let command = command(digest).to(stream);
        let loaded = decider::load::<User>(&*self.store, &command).await?;
        self.execute(&command, loaded).await?;
        Ok(user_id)
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
    #[tracing::instrument(skip_all)]
    async fn register(
        &self,
        request: Request<RegisterRequest>,
    ) -> Result<Response<RegisterResponse>, Status> {
        let key = platform::idempotency_key(&request).map(str::to_owned);
        let client = Client::of(&request);
        Ok(Response::new(
            self.register(request.into_inner(), key.as_deref(), &client)
                .await?
                .into(),
        ))
    }

    #[tracing::instrument(skip_all)]
    async fn login(
        &self,
        request: Request<LoginRequest>,
    ) -> Result<Response<LoginResponse>, Status> {
        let client = Client::of(&request);
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

    async fn authenticate_many(
        &self,
        request: Request<AuthenticateManyRequest>,
    ) -> Result<Response<AuthenticateManyResponse>, Status> {
        let owners = self.owners(&request.get_ref().tokens).await?;
        let owners = owners
            .into_iter()
            .map(|id| TokenOwner {
                live: id.is_some(),
                user_id: id.unwrap_or_default(),
            })
            .collect();
        Ok(Response::new(AuthenticateManyResponse { owners }))
    }

    async fn logout(
        &self,
        request: Request<LogoutRequest>,
    ) -> Result<Response<LogoutResponse>, Status> {
        let user_id = self
            .revoke(&request.get_ref().token, |digest| {
                UserCommand::RevokeToken { digest, by: digest }
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
        let user = self.sessions.check(&digest, UserRecord::clone);
        let user = user.await.map_err(AuthError::from)?;
        let user = user.ok_or(AuthError::InvalidToken)?;
        Ok(Response::new(GetAccountResponse {
            user: Some(self.user_message(&user).await?),
            date_joined: Some(proto::timestamp_micros(user.joined.timestamp_micros())),
        }))
    }

    async fn list_tokens(
        &self,
        request: Request<ListTokensRequest>,
    ) -> Result<Response<ListTokensResponse>, Status> {
        let r = request.get_ref();
        let limit = (r.limit > 0).then_some(r.limit as usize);
        let (tokens, count) = self.tokens(&r.token, r.offset as usize, limit).await?;
        Ok(Response::new(ListTokensResponse {
            tokens,
            count: count as u64,
        }))
    }

    async fn revoke_token(
        &self,
        request: Request<RevokeTokenRequest>,
    ) -> Result<Response<RevokeTokenResponse>, Status> {
        let r = request.get_ref();
        let user_id = self.revoke_by_id(&r.token, &r.id).await?;
        tracing::info!(%user_id, "token revoked by id");
        Ok(Response::new(RevokeTokenResponse {}))
    }

    #[tracing::instrument(skip_all)]
    async fn change_password(
        &self,
        request: Request<ChangePasswordRequest>,
    ) -> Result<Response<ChangePasswordResponse>, Status> {
        let client = Client::of(&request);
        let r = request.into_inner();
        let passwords = (r.old_password, r.new_password);
        self.change_password(&r.token, passwords, &client).await?;
        Ok(Response::new(ChangePasswordResponse {}))
    }

    async fn erase_account(
        &self,
        request: Request<EraseAccountRequest>,
    ) -> Result<Response<EraseAccountResponse>, Status> {
        let client = Client::of(&request);
        let r = request.into_inner();
        self.erase(&r.token, r.password, &client).await?;
        Ok(Response::new(EraseAccountResponse {}))
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

/// A stored personal value of `user` that does not open or decode with
/// their key: the store or the key table was written by something else.
fn corrupt<E: std::fmt::Display>(user: UserId) -> impl Fn(E) -> AuthError {
    move |e| {
        AuthError::Store(EventStoreError::Corrupt {
            position: 0,
            reason: format!("the personal data of user {user}: {e}"),
        })
    }
}

/// auth-service's token check for other services in this process: the
/// answer of `Authenticate`, by the same read (and refresh), without
/// encoding a call.
pub struct Tokens(Arc<Sessions>);

#[tonic::async_trait]
impl platform::TokenCheck for Tokens {
    async fn user_id(&self, token: &str) -> std::result::Result<Option<i64>, CheckUnavailable> {
        let Some(digest) = token::parse(token) else {
            return Ok(None);
        };
        let user = self.0.check(&digest, |u| u.id.0).await;
        user.map_err(|e| CheckUnavailable(e.to_string()))
    }
}
