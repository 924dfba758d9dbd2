//! Who is calling: the client's address, and a per-client limit on the
//! endpoints that cost a password hash (login, register).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{FromRequestParts, MatchedPath, State};
use axum::http::request::Parts;
use axum::http::{HeaderName, HeaderValue};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::AppState;
use crate::error::ApiError;

/// The address of the client: the connection's peer, or, when the peer is a
/// trusted proxy, the last address in `X-Forwarded-For` that is not one of
/// the trusted proxies. `None` for requests that did not come over a
/// connection (in-process tests).
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub Option<IpAddr>);

impl FromRequestParts<AppState> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let peer = crate::server::peer_of(parts).map(|a| a.ip());
        Ok(Self(peer.map(|peer| {
            client_of(peer, parts, &state.trusted_proxies)
        })))
    }
}

fn client_of(peer: IpAddr, parts: &Parts, trusted: &[IpAddr]) -> IpAddr {
    if !trusted.contains(&peer) {
        return peer;
    }
    // Each proxy appends the address it got the request from: read from the
    // right, past our own proxies; the first other address is the client's.
    let forwarded = parts
        .headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect::<Vec<_>>();
    forwarded
        .iter()
        .rev()
        .map(|a| a.parse::<IpAddr>())
        .take_while(Result::is_ok)
        .flatten()
        .find(|a| !trusted.contains(a))
        .unwrap_or(peer)
}

impl ClientAddr {
    /// `request`, telling the service this client's address.
    pub fn tag<T>(&self, mut request: tonic::Request<T>) -> tonic::Request<T> {
        if let Some(value) = self.0.and_then(|a| a.to_string().parse().ok()) {
            request
                .metadata_mut()
                .insert(platform::CLIENT_ADDRESS_KEY, value);
        }
        request
    }
}

/// The client as the services are told of it: its address, and the
/// `User-Agent` it sent (auth-service keeps it, sanitised, with the token
/// it issues and in the user's security log).
#[derive(Debug, Clone)]
pub struct Client {
    /// Its address.
    pub addr: ClientAddr,
    user_agent: Option<tonic::metadata::AsciiMetadataValue>,
}

/// The most of a `User-Agent` passed on, in bytes (auth-service keeps 256
/// characters of it).
const MAX_USER_AGENT_BYTES: usize = 512;

impl FromRequestParts<AppState> for Client {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let addr = ClientAddr::from_request_parts(parts, state).await?;
        let user_agent = parts
            .headers
            .get(axum::http::header::USER_AGENT)
            .map(|v| {
                // Metadata is visible ASCII: anything else shows as `?`.
                let bytes = &v.as_bytes()[..v.len().min(MAX_USER_AGENT_BYTES)];
                let visible = |b: &u8| b.is_ascii_graphic() || *b == b' ';
                bytes
                    .iter()
                    .map(|b| if visible(b) { *b as char } else { '?' })
                    .collect::<String>()
            })
            .and_then(|text| text.trim().parse().ok());
        Ok(Self { addr, user_agent })
    }
}

impl Client {
    /// `request`, telling the service this client's address and agent.
    pub fn tag<T>(&self, request: tonic::Request<T>) -> tonic::Request<T> {
        let mut request = self.addr.tag(request);
        if let Some(agent) = &self.user_agent {
            request
                .metadata_mut()
                .insert(platform::CLIENT_USER_AGENT_KEY, agent.clone());
        }
        request
    }
}

/// Past this many client keys, the idle full buckets are forgotten (and
/// then again each time the number of keys has doubled, so that a flood
/// from many addresses does not scan the map on every request).
const PRUNE_ABOVE: usize = 100_000;

/// The per-client limit on logins and registrations (the routes that cost
/// an argon2id hash). Two parts, each per client key (an IPv4 address, or
/// an IPv6 address's /64: one host is usually given a whole /64):
///
/// - **a token bucket**: `burst` requests at once, refilled at `per_second`.
///   A developer's test suite registering and logging in hundreds of users
///   in a few seconds fits in the burst; a sustained flood gets the refill
///   rate and a 429 for the rest.
/// - **turns**: at most `concurrency` of a client's admitted requests are
///   worked on at once; the others wait their turn here (first come, first
///   served). So one client, however parallel, holds at most `concurrency`
///   places in auth-service's hash queue (`AUTH_HASH_QUEUE`): it never sees
///   that queue's 503 itself, and cannot fill it for everyone else.
///   Waiting is bounded by the bucket (only admitted requests wait) and by
///   the request timeout.
#[derive(Debug)]
pub struct RateLimit {
    policy: Policy,
    buckets: Mutex<Buckets>,
}

#[derive(Debug)]
struct Buckets {
    by_client: HashMap<IpAddr, Bucket>,
    /// The size past which the next new client prunes.
    prune_above: usize,
}

/// The numbers of a [`RateLimit`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Policy {
    /// Requests a full bucket holds: the largest burst.
    pub burst: u32,
    /// Requests added to the bucket per minute: the sustained rate.
    pub per_minute: u32,
    /// Admitted requests of one client worked on at once.
    pub concurrency: u32,
}

impl Policy {
    fn per_second(&self) -> f64 {
        f64::from(self.per_minute.max(1)) / 60.0
    }

    fn burst(&self) -> f64 {
        f64::from(self.burst.max(1))
    }
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
    /// Whether the last request was refused (to log a run of refusals once).
    refusing: bool,
    turns: Arc<Semaphore>,
}

impl RateLimit {
    /// A limit with `policy`'s numbers (each at least 1).
    pub fn new(policy: Policy) -> Self {
        Self {
            policy,
            buckets: Mutex::new(Buckets {
                by_client: HashMap::new(),
                prune_above: PRUNE_ABOVE,
            }),
        }
    }

    /// Takes one request's token for `client`: whether it may go on, where
    /// the client stands (for the `RateLimit` fields), and the client's
    /// turns. Requests without an address are not limited.
    pub fn take(&self, client: ClientAddr) -> Option<Admission> {
        self.take_at(client, Instant::now())
    }

    fn take_at(&self, client: ClientAddr, now: Instant) -> Option<Admission> {
        let key = bucket_key(client.0?);
        let (rate, burst) = (self.policy.per_second(), self.policy.burst());
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let Buckets {
            by_client,
            prune_above,
        } = &mut *buckets;
        if by_client.len() > *prune_above && !by_client.contains_key(&key) {
            // A bucket that is full again and has nothing in flight is the
            // same as no bucket.
            by_client.retain(|_, b| {
                b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * rate < burst
                    || Arc::strong_count(&b.turns) > 1
            });
            *prune_above = PRUNE_ABOVE.max(2 * by_client.len());
        }
        let concurrency = self.policy.concurrency.max(1) as usize;
        let bucket = by_client.entry(key).or_insert_with(|| Bucket {
            tokens: burst,
            at: now,
            refusing: false,
            turns: Arc::new(Semaphore::new(concurrency)),
        });
        bucket.tokens = (bucket.tokens
            + now.saturating_duration_since(bucket.at).as_secs_f64() * rate)
            .min(burst);
        bucket.at = bucket.at.max(now);
        let allowed = bucket.tokens >= 1.0;
        if allowed {
            bucket.tokens -= 1.0;
        } else if !bucket.refusing {
            tracing::warn!(client = %key, "login/register rate limit reached");
        }
        bucket.refusing = !allowed;
        let secs = |t: f64| t.ceil().max(0.0) as u64;
        let tokens = bucket.tokens;
        Some(Admission {
            taken: Taken {
                allowed,
                remaining: tokens.floor() as u64,
                reset_secs: secs((burst - tokens) / rate),
                retry_after_secs: secs((1.0 - tokens) / rate).max(1),
                quota: burst as u64,
                window_secs: secs(burst / rate),
            },
            turns: bucket.turns.clone(),
        })
    }
}

/// The key a client's bucket is kept under: an IPv4 address as it is (an
/// IPv4-mapped IPv6 address as its IPv4 address), an IPv6 address's /64.
fn bucket_key(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V4(_) => addr,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
        },
    }
}

/// A request's turn at a [`RateLimit`]: the bucket's answer, and the
/// client's turns to wait for when admitted.
#[derive(Debug)]
pub struct Admission {
    /// The bucket's answer.
    pub taken: Taken,
    turns: Arc<Semaphore>,
}

impl Admission {
    /// Waits until fewer than the policy's `concurrency` of this client's
    /// requests are being worked on; the turn lasts while the permit lives.
    pub async fn turn(&self) -> OwnedSemaphorePermit {
        self.turns
            .clone()
            .acquire_owned()
            .await
            .expect("a client's turns are never closed")
    }
}

/// What the bucket said to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Taken {
    /// Whether it may go on.
    pub allowed: bool,
    /// Requests that may be sent now: the whole tokens left in the bucket.
    pub remaining: u64,
    /// Seconds until the bucket is full again (`remaining` = `quota`).
    pub reset_secs: u64,
    /// Seconds until the next request may go (when refused).
    pub retry_after_secs: u64,
    /// The bucket's size: this many requests...
    pub quota: u64,
    /// ...per this many seconds (the time the bucket takes to fill from
    /// empty). A client that never sends more than `quota` requests in any
    /// `window_secs` is never refused.
    pub window_secs: u64,
}

impl Taken {
    /// The IETF `RateLimit-Policy` and `RateLimit` fields
    /// (draft-ietf-httpapi-ratelimit-headers) for this turn.
    pub fn headers(&self) -> [(HeaderName, HeaderValue); 2] {
        let value = |s: String| HeaderValue::from_str(&s).expect("digits and quotes");
        [
            (
                HeaderName::from_static("ratelimit-policy"),
                value(format!("\"auth\";q={};w={}", self.quota, self.window_secs)),
            ),
            (
                HeaderName::from_static("ratelimit"),
                value(format!(
                    "\"auth\";r={};t={}",
                    self.remaining, self.reset_secs
                )),
            ),
        ]
    }
}

/// Middleware: on the routes whose policy says `limited` (logins and
/// registrations: the ones that cost a hash), requests past the client's
/// allowance are answered 429, the others wait for the client's turn; each
/// answer on those routes carries the `RateLimit` fields.
pub async fn limit(
    State(state): State<AppState>,
    client: ClientAddr,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let limited = request.extensions().get::<MatchedPath>().is_some_and(|p| {
        state
            .route_policies
            .get(request.method(), p.as_str())
            .limited
    });
    let Some(admission) = limited.then(|| state.auth_limit.take(client)).flatten() else {
        return next.run(request).await;
    };
    let taken = admission.taken;
    let mut response = if taken.allowed {
        let _turn = admission.turn().await;
        next.run(request).await
    } else {
        ApiError::Throttled(taken.retry_after_secs).into_response()
    };
    response.headers_mut().extend(taken.headers());
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(forwarded: &[&str]) -> Parts {
        let mut r = axum::http::Request::builder();
        for f in forwarded {
            r = r.header("x-forwarded-for", *f);
        }
        r.body(()).unwrap().into_parts().0
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        let client: IpAddr = "203.0.113.7".parse().unwrap();
        let spoofed = parts(&["1.2.3.4, 203.0.113.7"]);
        assert_eq!(client_of(client, &spoofed, &[]), client, "no proxy trusted");
        assert_eq!(
            client_of(client, &spoofed, &[proxy]),
            client,
            "peer not a proxy"
        );
        assert_eq!(
            client_of(proxy, &spoofed, &[proxy]),
            client,
            "rightmost untrusted"
        );
        assert_eq!(client_of(proxy, &parts(&[]), &[proxy]), proxy);
        assert_eq!(client_of(proxy, &parts(&["junk"]), &[proxy]), proxy);
    }

    fn addr(a: &str) -> ClientAddr {
        ClientAddr(Some(a.parse().unwrap()))
    }

    const POLICY: Policy = Policy {
        burst: 10,
        per_minute: 60,
        concurrency: 2,
    };

    #[test]
    fn each_address_has_its_own_bucket() {
        let limit = RateLimit::new(POLICY);
        let (a, b) = (addr("127.0.0.2"), addr("127.0.0.3"));
        let now = Instant::now();
        for i in 0..10 {
            let taken = limit.take_at(a, now).unwrap().taken;
            assert!(taken.allowed);
            assert_eq!(taken.remaining, 9 - i);
        }
        let refused = limit.take_at(a, now).unwrap().taken;
        assert!(!refused.allowed);
        assert_eq!(
            (refused.retry_after_secs, refused.quota, refused.window_secs),
            (1, 10, 10)
        );
        assert!(limit.take_at(b, now).unwrap().taken.allowed);
        assert!(limit.take(ClientAddr(None)).is_none());
    }

    /// Over any stretch of time, a bucket admits its burst plus its refill
    /// over that time, and the fields say so.
    #[test]
    fn a_flood_gets_the_burst_plus_the_refill() {
        let limit = RateLimit::new(POLICY); // 10 at once, then 1 a second
        let client = addr("192.0.2.1");
        let start = Instant::now();
        // 100 requests a second for 30 s.
        let admitted = (0..3_000)
            .filter(|i| {
                let at = start + std::time::Duration::from_millis(i * 10);
                limit.take_at(client, at).unwrap().taken.allowed
            })
            .count();
        assert_eq!(admitted, 10 + 29, "the burst, then one a second");
        // 0.99 left at 29.99 s; at 34.5 s, 5.5, less this one: 4 whole
        // requests may follow, and the bucket is full in 5.5 s.
        let later = start + std::time::Duration::from_millis(34_500);
        let taken = limit.take_at(client, later).unwrap().taken;
        assert!(taken.allowed);
        assert_eq!((taken.remaining, taken.reset_secs), (4, 6));
        let h = taken.headers();
        assert_eq!(h[0].1, "\"auth\";q=10;w=10");
        assert_eq!(h[1].1, "\"auth\";r=4;t=6");
    }

    #[test]
    fn an_ipv6_host_is_one_client_per_64() {
        let limit = RateLimit::new(POLICY);
        let now = Instant::now();
        for i in 0..10 {
            let a = addr(&format!("2001:db8:1:2::{i:x}"));
            assert!(limit.take_at(a, now).unwrap().taken.allowed);
        }
        assert!(
            !limit
                .take_at(addr("2001:db8:1:2:ffff::1"), now)
                .unwrap()
                .taken
                .allowed
        );
        assert!(
            limit
                .take_at(addr("2001:db8:1:3::1"), now)
                .unwrap()
                .taken
                .allowed
        );
        // An IPv4 address seen as IPv4-mapped IPv6 is the same client.
        for _ in 0..10 {
            assert!(
                limit
                    .take_at(addr("198.51.100.7"), now)
                    .unwrap()
                    .taken
                    .allowed
            );
        }
        let mapped = addr("::ffff:198.51.100.7");
        assert!(!limit.take_at(mapped, now).unwrap().taken.allowed);
    }

    /// Admitted requests of one client are worked on `concurrency` at a
    /// time, in arrival order; another client's are not held up.
    #[tokio::test]
    async fn a_client_waits_for_its_turn() {
        let limit = RateLimit::new(POLICY);
        let a = addr("192.0.2.1");
        let first = limit.take(a).unwrap();
        let second = limit.take(a).unwrap();
        let third = limit.take(a).unwrap();
        let (t1, _t2) = (first.turn().await, second.turn().await);
        let waiting = tokio::spawn(async move {
            let _turn = third.turn().await;
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "a third turn while two are held");
        let other = limit.take(addr("192.0.2.2")).unwrap();
        drop(other.turn().await);
        drop(t1);
        tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
            .await
            .expect("the third turn comes when one ends")
            .unwrap();
    }
}
