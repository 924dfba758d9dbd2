//! A user's sessions: who a token was issued to (sealed in its
//! `TokenIssued`), the opaque id the sessions list shows, and the sliding
//! expiry of auto-refresh, which every token check goes through.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use chrono::Utc;
use event_sourcing::read_model::{Projection, StaleRead};
use event_store::{Event, EventStore, EventStoreError, ExpectedVersion};
use tonic::Request;

use crate::domain::{
    AuthEvent, ClientInfo, MAX_USER_AGENT, RefreshPolicy, UserId, client_sealed_for, printable,
    token_stream,
};
use crate::error::{AuthError, Result};
use crate::keys::Keyring;
use crate::read_model::{AuthView, TokenRecord, UserRecord};
use crate::seal::{self, Pepper};
use crate::token::TokenDigest;

/// Who is calling, as the gateway passed it on: the address (what the
/// login throttle counts by) and the `User-Agent`, sanitised.
#[derive(Debug, Clone)]
pub struct Client {
    /// The end client's address (`unknown` for in-process calls).
    pub address: String,
    /// Its `User-Agent`, printable and at most [`MAX_USER_AGENT`]
    /// characters.
    pub user_agent: Option<String>,
}

impl Client {
    /// The client of `request`.
    pub fn of<T>(request: &Request<T>) -> Self {
        let user_agent = platform::client_user_agent(request)
            .map(|ua| printable(ua, MAX_USER_AGENT))
            .filter(|ua| !ua.is_empty());
        Self {
            address: platform::client_address(request),
            user_agent,
        }
    }

    /// What an event keeps of it (sealed), with a token's `name`.
    pub fn info(&self, name: Option<String>) -> ClientInfo {
        ClientInfo {
            address: self.address.clone(),
            user_agent: self.user_agent.clone(),
            name,
        }
    }
}

/// Sessions: client details sealed and opened, token ids, refreshes.
pub struct Sessions {
    store: Arc<dyn EventStore>,
    view: Arc<Projection<AuthView>>,
    keyring: Arc<Keyring>,
    pepper: Pepper,
    refresh: Option<RefreshPolicy>,
    /// Tokens whose refresh this process is writing: a burst of requests
    /// with one token writes one refresh.
    refreshing: Mutex<HashSet<TokenDigest>>,
}

/// The id a token is listed, revoked and sent to the feed by (see
/// [`Sessions::token_id`]).
pub fn token_id(pepper: &Pepper, digest: &TokenDigest) -> String {
    pepper.mac("token-id", &hex::encode(digest.bytes()))
}

impl Sessions {
    /// Sessions of the users of `view`.
    pub fn new(
        store: Arc<dyn EventStore>,
        view: Arc<Projection<AuthView>>,
        (pepper, keyring): (Pepper, Arc<Keyring>),
        refresh: Option<RefreshPolicy>,
    ) -> Self {
        Self {
            store,
            view,
            keyring,
            pepper,
            refresh,
            refreshing: Mutex::new(HashSet::new()),
        }
    }

    /// The id a token is listed and revoked by: a MAC of its digest under
    /// the pepper. Stable, and it tells nothing of the token (nor of its
    /// digest, which the log holds).
    pub fn token_id(&self, digest: &TokenDigest) -> String {
        token_id(&self.pepper, digest)
    }

    /// `info` sealed under `user`'s key, for an event (`None`: the user
    /// has no key, being stored before sealing).
    pub async fn seal(&self, user: UserId, info: &ClientInfo) -> Result<Option<String>> {
        let Some(key) = self.keyring.get(user).await? else {
            return Ok(None);
        };
        let json = serde_json::to_vec(info).map_err(|e| corrupt(user, e))?;
        let sealed = seal::seal(&key, &client_sealed_for(user), &json);
        Ok(Some(sealed.map_err(|e| corrupt(user, e))?))
    }

    /// Opens what [`Sessions::seal`] sealed for `user`; `None` once the
    /// key is gone, or if it does not open.
    pub async fn open(&self, user: UserId, sealed: Option<&str>) -> Result<Option<ClientInfo>> {
        let Some(sealed) = sealed else {
            return Ok(None);
        };
        let Some(key) = self.keyring.get(user).await? else {
            return Ok(None);
        };
        let opened = seal::open(&key, &client_sealed_for(user), sealed).ok();
        Ok(opened.and_then(|json| serde_json::from_slice(&json).ok()))
    }

    /// The events at `positions` (those the view points at), by position.
    pub async fn events_at(&self, positions: &[u64]) -> Result<HashMap<u64, AuthEvent>> {
        let mut events = HashMap::new();
        if positions.is_empty() {
            return Ok(events);
        }
        for recorded in self.store.read_positions(positions).await? {
            events.insert(recorded.position, AuthEvent::from_recorded(&recorded)?);
        }
        Ok(events)
    }

    /// `read` of the user of a live token, read linearizably (what
    /// `Authenticate` answers); with auto-refresh on, the token's expiry
    /// moves first if it is due (see [`RefreshPolicy`]).
    pub async fn check<T>(
        &self,
        digest: &TokenDigest,
        read: impl FnOnce(&UserRecord) -> T,
    ) -> std::result::Result<Option<T>, StaleRead> {
        let mut read = Some(read);
        let found = self
            .check_all(std::slice::from_ref(digest), |user| {
                read.take().map(|read| read(user))
            })
            .await?;
        Ok(found.into_iter().next().flatten().flatten())
    }

    /// [`Sessions::check`] of every digest of `digests` by one
    /// linearizable read (what `AuthenticateMany` answers): `read` of each
    /// live token's user, in order, `None` for the others. The refreshes
    /// that are due are written together, after the read.
    pub async fn check_all<T>(
        &self,
        digests: &[TokenDigest],
        mut read: impl FnMut(&UserRecord) -> T,
    ) -> std::result::Result<Vec<Option<T>>, StaleRead> {
        let now = Utc::now();
        let mut due = Vec::new();
        let found = {
            let view = self.view.read_linearizable().await?;
            digests
                .iter()
                .map(|digest| {
                    let (user, token) = view.live_token(digest, now)?;
                    let refreshed = self
                        .refresh
                        .and_then(|p| p.refreshed(token.issued_at, token.expires_at, now));
                    if let Some(expires_at) = refreshed {
                        due.push((digest, token, expires_at));
                    }
                    Some(read(user))
                })
                .collect()
        };
        let refreshes = due
            .into_iter()
            .map(|(digest, token, expires_at)| self.refresh(digest, token, expires_at));
        futures_util::future::join_all(refreshes).await;
        Ok(found)
    }

    /// Writes a token's refresh, once: in its own stream, expecting the
    /// refreshes the view has seen (a replica that wrote one meanwhile
    /// wins, and this one writes nothing). A failure is logged: the
    /// request it came with is served all the same.
    async fn refresh(
        &self,
        digest: &TokenDigest,
        token: TokenRecord,
        expires_at: chrono::DateTime<Utc>,
    ) {
        let mine = self.lock_refreshing().insert(*digest);
        if !mine {
            return;
        }
        let written = async {
            let event = AuthEvent::TokenRefreshed {
                user_id: token.user_id,
                digest: *digest,
                expires_at,
            };
            let expected = match token.refreshes {
                0 => ExpectedVersion::NoStream,
                n => ExpectedVersion::Exact(u64::from(n) - 1),
            };
            let appended = self
                .store
                .append(&token_stream(digest), expected, vec![event.to_new_event()?])
                .await;
            match appended {
                Ok(done) => Ok(self.view.wait_for(done.position).await?),
                Err(EventStoreError::WrongExpectedVersion { .. }) => Ok(()),
                Err(e) => Err(AuthError::from(e)),
            }
        }
        .await;
        self.lock_refreshing().remove(digest);
        if let Err(e) = written {
            tracing::warn!(error = %e, user_id = %token.user_id, "could not refresh a token");
        }
    }

    fn lock_refreshing(&self) -> std::sync::MutexGuard<'_, HashSet<TokenDigest>> {
        self.refreshing.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn corrupt(user: UserId, e: impl std::fmt::Display) -> AuthError {
    AuthError::Store(EventStoreError::Corrupt {
        position: 0,
        reason: format!("the client details of user {user}: {e}"),
    })
}
