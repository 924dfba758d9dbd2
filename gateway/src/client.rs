//! Who is calling: the client's address, and a per-address limit on the
//! endpoints that cost a password hash (login, register).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

use axum::extract::{FromRequestParts, MatchedPath, State};
use axum::http::request::Parts;
use axum::http::{HeaderName, HeaderValue, Method};

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

/// Past this many addresses, the full buckets are forgotten.
const PRUNE_ABOVE: usize = 100_000;

/// A token bucket per client address.
#[derive(Debug)]
pub struct RateLimit {
    per_second: f64,
    burst: f64,
    buckets: Mutex<HashMap<IpAddr, (f64, Instant)>>,
}

impl RateLimit {
    /// `per_minute` requests per minute per address, in bursts of up to a
    /// sixth of it (at least one).
    pub fn per_minute(per_minute: u32) -> Self {
        let per_minute = f64::from(per_minute.max(1));
        Self {
            per_second: per_minute / 60.0,
            burst: (per_minute / 6.0).max(1.0),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one request's token for `client`: whether it may go on, and
    /// where the client stands (for the `RateLimit` fields). Requests
    /// without an address are not limited.
    pub fn take(&self, client: ClientAddr) -> Option<Taken> {
        let addr = client.0?;
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() > PRUNE_ABOVE && !buckets.contains_key(&addr) {
            let (rate, burst) = (self.per_second, self.burst);
            buckets.retain(|_, (tokens, at)| {
                *tokens + now.duration_since(*at).as_secs_f64() * rate < burst
            });
        }
        let (tokens, at) = buckets.entry(addr).or_insert((self.burst, now));
        *tokens =
            (*tokens + now.duration_since(*at).as_secs_f64() * self.per_second).min(self.burst);
        *at = now;
        let allowed = *tokens >= 1.0;
        if allowed {
            *tokens -= 1.0;
        } else {
            tracing::warn!(client = %addr, "login/register rate limit reached");
        }
        let secs = |t: f64| t.ceil().max(0.0) as u64;
        Some(Taken {
            allowed,
            remaining: tokens.floor() as u64,
            reset_secs: secs((self.burst - *tokens) / self.per_second),
            retry_after_secs: secs((1.0 - *tokens) / self.per_second).max(1),
            quota: self.burst as u64,
            window_secs: secs(self.burst / self.per_second),
        })
    }
}

/// One request's turn at a [`RateLimit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Taken {
    /// Whether it may go on.
    pub allowed: bool,
    /// Requests left now.
    pub remaining: u64,
    /// Seconds until the allowance is whole again.
    pub reset_secs: u64,
    /// Seconds until the next request may go (when refused).
    pub retry_after_secs: u64,
    /// The allowance: this many requests...
    pub quota: u64,
    /// ...per this many seconds.
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

/// The routes the per-address limit covers: the ones that cost a hash.
const LIMITED_ROUTES: [&str; 2] = ["/api/auth/login", "/api/auth/register"];

/// Middleware: logins and registrations past the client address's
/// allowance are answered 429; each answer on those routes carries the
/// `RateLimit` fields.
pub async fn limit(
    State(state): State<AppState>,
    client: ClientAddr,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let limited = request.method() == Method::POST
        && request
            .extensions()
            .get::<MatchedPath>()
            .is_some_and(|p| LIMITED_ROUTES.contains(&p.as_str()));
    let Some(taken) = limited.then(|| state.auth_limit.take(client)).flatten() else {
        return next.run(request).await;
    };
    let mut response = if taken.allowed {
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

    #[test]
    fn each_address_has_its_own_bucket() {
        let limit = RateLimit::per_minute(60); // bursts of 10
        let a = ClientAddr(Some("127.0.0.2".parse().unwrap()));
        let b = ClientAddr(Some("127.0.0.3".parse().unwrap()));
        for i in 0..10 {
            let taken = limit.take(a).unwrap();
            assert!(taken.allowed);
            assert_eq!(taken.remaining, 9 - i);
        }
        let refused = limit.take(a).unwrap();
        assert!(!refused.allowed);
        assert_eq!(
            (refused.retry_after_secs, refused.quota, refused.window_secs),
            (1, 10, 10)
        );
        assert!(limit.take(b).unwrap().allowed);
        assert!(limit.take(ClientAddr(None)).is_none());
    }
}
