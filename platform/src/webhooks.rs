//! Webhooks: a service's events POSTed to the operator's endpoints, signed
//! as the Standard Webhooks specification says.
//!
//! - The endpoints are listed in a JSON file (`AUTH_WEBHOOKS`,
//!   `CATALOG_WEBHOOKS`): `[{"url": "https://…", "secret": "whsec_…",
//!   "types": ["…"], "allow_private": false}]`; `types` (as the feed's
//!   filter: full types or names) may be left out for every type.
//! - Each endpoint is a consumer group of its own ([`group_name`]:
//!   `webhook-<16 hex digits>`, from its URL and types), started at the end
//!   of the log when first seen. Every replica serves it: the group shares
//!   the streams among them, one event of a stream in flight at a time, so
//!   each endpoint gets each stream in order.
//! - A delivery is the event's CloudEvent (structured JSON,
//!   `application/cloudevents+json`) with `webhook-id` (the event's id,
//!   the same on every retry), `webhook-timestamp` and `webhook-signature`
//!   (`v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">` under the
//!   secret's bytes).
//! - Any 2xx answer is a success. Anything else, or no answer within the
//!   timeout, is retried after an exponential, jittered backoff: the n-th
//!   failure waits a uniformly random time between half and all of
//!   `base × 2^(n-1)`, at most [`MAX_BACKOFF`]. After [`DELIVERIES`]
//!   attempts (with the defaults, about 4 minutes) the event is parked and
//!   its stream goes on: `ListParked` and `ReplayParked` on the group
//!   replay it, after the later events of its stream.
//! - Targets on private, loopback, link-local or otherwise non-public
//!   addresses are refused unless the endpoint says `allow_private`: each
//!   name is resolved for each connection and only public addresses are
//!   kept; redirects are not followed; proxies from the environment are not
//!   used.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use base64::Engine as _;
use event_sourcing::consumer_group::{ConsumerGroups, Delivery, Join, Start};
use hmac::{KeyInit, Mac};
use serde::Deserialize;
use sha2_v11::Digest as _;

use crate::feed::CloudEvent;

/// Attempts of one event before it is parked.
pub const DELIVERIES: u32 = 8;

/// The longest wait between two attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// How webhook groups' names start (`Consume` refuses such names; the
/// other feed calls take them).
pub const GROUP_PREFIX: &str = "webhook-";

/// The most endpoints a file may list.
pub const MAX_ENDPOINTS: usize = 100;

/// The most deliveries in flight per endpoint and replica (different
/// streams; one per stream).
const IN_FLIGHT: u32 = 16;

/// Why the webhook file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// The file cannot be read.
    #[error("webhooks file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a valid list of endpoints.
    #[error("webhooks file {path}: {reason}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
}

/// One endpoint, as the file lists it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    /// Where events are POSTed (http or https).
    pub url: String,
    /// `whsec_` and the base64 of the signing key.
    pub secret: String,
    /// The types sent (empty: all).
    #[serde(default)]
    pub types: Vec<String>,
    /// Whether private and loopback addresses may be targets.
    #[serde(default)]
    pub allow_private: bool,
}

/// How deliveries are timed.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// The most a request may take, answer included.
    pub timeout: Duration,
    /// The first retry's longest wait (doubled for each next one).
    pub backoff: Duration,
}

/// A parsed endpoint, ready to send to.
struct Target {
    url: reqwest::Url,
    key: Vec<u8>,
    types: Vec<String>,
    allow_private: bool,
    group: String,
}

/// Reads and checks the endpoints listed in `path`.
pub fn load(path: &Path) -> Result<Vec<Endpoint>, WebhookError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| WebhookError::Read {
        path: name.clone(),
        source,
    })?;
    let invalid = |reason: String| WebhookError::Invalid {
        path: name.clone(),
        reason,
    };
    let endpoints: Vec<Endpoint> =
        serde_json::from_str(&text).map_err(|e| invalid(e.to_string()))?;
    if endpoints.len() > MAX_ENDPOINTS {
        return Err(invalid(format!("at most {MAX_ENDPOINTS} endpoints")));
    }
    for (i, e) in endpoints.iter().enumerate() {
        target(e).map_err(|reason| invalid(format!("endpoint {i}: {reason}")))?;
    }
    Ok(endpoints)
}

/// The group an endpoint's deliveries go through: the same for the same URL
/// and types on every replica.
pub fn group_name(url: &str, types: &[String]) -> String {
    let mut types = types.to_vec();
    types.sort();
    types.dedup();
    let mut hash = sha2_v11::Sha256::new();
    hash.update(url.as_bytes());
    for t in &types {
        hash.update([0]);
        hash.update(t.as_bytes());
    }
    format!("{GROUP_PREFIX}{}", hex::encode(&hash.finalize()[..8]))
}

fn target(e: &Endpoint) -> Result<Target, String> {
    let url = reqwest::Url::parse(&e.url).map_err(|err| format!("url: {err}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err("url: an http or https URL with a host".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("url: no user or password in it (sign with the secret)".into());
    }
    let key = e
        .secret
        .strip_prefix("whsec_")
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .filter(|k| !k.is_empty())
        .ok_or("secret: `whsec_` then base64 of the key")?;
    if e.types.iter().any(|t| t.is_empty() || t.len() > 200) || e.types.len() > 100 {
        return Err("types: at most 100, each of 1 to 200 characters".into());
    }
    Ok(Target {
        group: group_name(&e.url, &e.types),
        url,
        key,
        types: e.types.clone(),
        allow_private: e.allow_private,
    })
}

/// Where a URL goes, for logs: scheme, host and port, never its path or
/// query (which may hold a token of the receiver's).
fn origin(url: &reqwest::Url) -> String {
    url.origin().ascii_serialization()
}

/// Whether `ip` is a public unicast address.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b)) // shared (CGNAT)
                || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
                || (a == 198 && (18..20).contains(&b)) // benchmarking
                || a >= 240) // reserved
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00 // unique local
                || (first & 0xffc0) == 0xfe80 // link-local
                || (first == 0x2001 && v6.segments()[1] == 0x0db8) // documentation
                || (first == 0x0064 && v6.segments()[1] == 0xff9b)) // NAT64
        }
    }
}

/// Resolves names to public addresses only.
struct PublicOnly;

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| is_public(a.ip()))
                .collect();
            if found.is_empty() {
                return Err(format!("{host} has no public address (allow_private is off)").into());
            }
            let addrs: reqwest::dns::Addrs = Box::new(found.into_iter());
            Ok(addrs)
        })
    }
}

fn client(target: &Target, timing: Timing) -> reqwest::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder()
        .timeout(timing.timeout)
        .connect_timeout(timing.timeout)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .user_agent("movies-webhooks/1");
    if !target.allow_private {
        builder = builder.dns_resolver(Arc::new(PublicOnly));
    }
    builder.build()
}

/// The `webhook-signature` value for a body.
pub fn signature(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = hmac::Hmac::<sha2_v11::Sha256>::new_from_slice(key)
        .expect("HMAC takes a key of any length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let tag = mac.finalize().into_bytes();
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(tag)
    )
}

/// The wait after the `failed`-th failed attempt: a random time between
/// half and all of `base × 2^(failed-1)`, at most [`MAX_BACKOFF`].
pub fn backoff(base: Duration, failed: u32, random: f64) -> Duration {
    let doubled = base.saturating_mul(1u32 << failed.saturating_sub(1).min(20));
    doubled
        .min(MAX_BACKOFF)
        .mul_f64(0.5 + 0.5 * random.clamp(0.0, 1.0))
}

/// Counters of one endpoint.
#[derive(Debug, Default)]
pub struct Counters {
    /// Attempts answered 2xx.
    pub delivered: AtomicU64,
    /// Attempts that failed (an answer other than 2xx, a timeout, a
    /// refused address).
    pub failed: AtomicU64,
}

/// The running deliveries of a service's endpoints.
pub struct Webhooks {
    tasks: Vec<tokio::task::JoinHandle<()>>,
    counters: Vec<(String, Arc<Counters>)>,
}

impl Drop for Webhooks {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Webhooks {
    /// Starts delivering to `endpoints` through `groups`.
    pub fn start(
        groups: Arc<ConsumerGroups<CloudEvent>>,
        endpoints: &[Endpoint],
        timing: Timing,
    ) -> Result<Self, String> {
        let mut tasks = Vec::new();
        let mut counters = Vec::new();
        for e in endpoints {
            let target = Arc::new(target(e)?);
            let client = client(&target, timing).map_err(|e| e.to_string())?;
            let count = Arc::new(Counters::default());
            tracing::info!(endpoint = %target.group, origin = %origin(&target.url), "delivering webhooks");
            counters.push((target.group.clone(), count.clone()));
            tasks.push(tokio::spawn(serve(
                groups.clone(),
                target,
                client,
                timing,
                count,
            )));
        }
        Ok(Self { tasks, counters })
    }

    /// Starts delivering to the endpoints the file at `path` lists; nothing
    /// without a file.
    pub fn from_file(
        path: Option<&Path>,
        groups: Arc<ConsumerGroups<CloudEvent>>,
        timing: Timing,
    ) -> Result<Self, WebhookError> {
        let Some(path) = path else {
            return Ok(Self::none());
        };
        let endpoints = load(path)?;
        Self::start(groups, &endpoints, timing).map_err(|reason| WebhookError::Invalid {
            path: path.display().to_string(),
            reason,
        })
    }

    /// Nothing to deliver.
    pub fn none() -> Self {
        Self {
            tasks: Vec::new(),
            counters: Vec::new(),
        }
    }

    /// The series of every endpoint: `webhook_attempts_total` by
    /// `endpoint` (its group) and `outcome` (`delivered`, `failed`). Parked
    /// events and lag are the group's (`feed_parked_total`,
    /// `feed_lag_events`, labelled with the same name).
    pub fn metrics(&self, service: &'static str) -> impl Fn() -> String + Send + Sync + 'static {
        let counters = self.counters.clone();
        move || render(service, &counters)
    }
}

fn render(service: &str, counters: &[(String, Arc<Counters>)]) -> String {
    if counters.is_empty() {
        return String::new();
    }
    let mut out = String::new();
    metrics_text::header(
        &mut out,
        "webhook_attempts_total",
        "counter",
        "Webhook requests, by endpoint (its consumer group) and outcome.",
    );
    for (group, c) in counters {
        for (outcome, n) in [("delivered", &c.delivered), ("failed", &c.failed)] {
            out.push_str(&format!(
                "webhook_attempts_total{{service=\"{service}\",endpoint=\"{group}\",outcome=\"{outcome}\"}} {}\n",
                n.load(Ordering::Relaxed)
            ));
        }
    }
    out
}

/// One endpoint's member on this replica, joined again if it ends.
async fn serve(
    groups: Arc<ConsumerGroups<CloudEvent>>,
    target: Arc<Target>,
    client: reqwest::Client,
    timing: Timing,
    counters: Arc<Counters>,
) {
    // Long enough for an attempt, never shorter than what it waits for.
    let ack_timeout = timing.timeout * 2 + Duration::from_secs(5);
    loop {
        let join = Join {
            group: target.group.clone(),
            types: target.types.clone(),
            prefix: String::new(),
            start: Start::End,
            max_in_flight: IN_FLIGHT,
            ack_timeout: Some(ack_timeout),
            max_deliveries: Some(DELIVERIES),
        };
        let mut member = match groups.join(join).await {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(endpoint = %target.group, error = %e, "cannot join a webhook's group; trying again");
                tokio::time::sleep(Duration::from_secs(5)).await;
                continue;
            }
        };
        let answers = member.answers();
        while let Some(d) = member.next().await {
            let (target, client, counters, answers) = (
                target.clone(),
                client.clone(),
                counters.clone(),
                answers.clone(),
            );
            tokio::spawn(async move {
                let id = d.event_id;
                if attempt(&target, &client, &d).await {
                    counters.delivered.fetch_add(1, Ordering::Relaxed);
                    answers.ack(vec![id]);
                } else {
                    counters.failed.fetch_add(1, Ordering::Relaxed);
                    let wait = backoff(timing.backoff, d.delivery, random_unit());
                    answers.nack(vec![id], wait);
                }
            });
        }
    }
}

/// One POST of a delivery: whether the endpoint answered 2xx.
async fn attempt(target: &Target, client: &reqwest::Client, d: &Delivery<CloudEvent>) -> bool {
    if !target.allow_private
        && let Some(ip) = literal_ip(&target.url)
        && !is_public(ip)
    {
        tracing::warn!(endpoint = %target.group, "a webhook's address is not public and allow_private is off");
        return false;
    }
    let body = match serde_json::to_vec(&*d.message) {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(endpoint = %target.group, error = %e, "cannot encode an event");
            return false;
        }
    };
    let id = d.message.id.as_str();
    let timestamp = chrono::Utc::now().timestamp();
    let sent = client
        .post(target.url.clone())
        .header("content-type", "application/cloudevents+json")
        .header("webhook-id", id)
        .header("webhook-timestamp", timestamp.to_string())
        .header(
            "webhook-signature",
            signature(&target.key, id, timestamp, &body),
        )
        .body(body)
        .send()
        .await;
    match sent {
        Ok(answer) if answer.status().is_success() => true,
        Ok(answer) => {
            tracing::info!(endpoint = %target.group, status = answer.status().as_u16(), attempt = d.delivery, "a webhook was refused");
            false
        }
        Err(e) => {
            let why = if e.is_timeout() {
                "timeout"
            } else if e.is_connect() {
                "connect"
            } else {
                "request"
            };
            tracing::info!(endpoint = %target.group, why, attempt = d.delivery, "a webhook failed");
            false
        }
    }
}

/// The URL's host, if it is an address rather than a name.
fn literal_ip(url: &reqwest::Url) -> Option<IpAddr> {
    let host = url.host_str()?;
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()
}

/// A random number in [0, 1).
fn random_unit() -> f64 {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        return 0.5;
    }
    (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_follow_the_standard_webhooks_example() {
        // The specification's example (standard-webhooks.com, "Signature
        // scheme"): secret whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw, id
        // msg_p5jXN8AQM9LWM0D4loKWxJek, timestamp 1614265330, body
        // {"test": 2432232314}.
        let key = base64::engine::general_purpose::STANDARD
            .decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
            .unwrap();
        assert_eq!(
            signature(
                &key,
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1614265330,
                br#"{"test": 2432232314}"#
            ),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn backoff_doubles_with_jitter_and_a_cap() {
        let base = Duration::from_secs(1);
        assert_eq!(backoff(base, 1, 1.0), Duration::from_secs(1));
        assert_eq!(backoff(base, 1, 0.0), Duration::from_millis(500));
        assert_eq!(backoff(base, 4, 1.0), Duration::from_secs(8));
        assert_eq!(backoff(base, 30, 1.0), MAX_BACKOFF);
        let total: Duration = (1..DELIVERIES).map(|n| backoff(base, n, 1.0)).sum();
        assert!(total <= Duration::from_secs(130), "{total:?}");
    }

    #[test]
    fn only_public_addresses_are_public() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private}");
        }
        for public in ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111"] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
    }

    #[test]
    fn endpoints_are_checked() {
        let ok = Endpoint {
            url: "https://example.com/hook?x=1".into(),
            secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into(),
            types: vec![],
            allow_private: false,
        };
        assert!(target(&ok).is_ok());
        assert_eq!(origin(&target(&ok).unwrap().url), "https://example.com");
        for bad in [
            Endpoint {
                url: "ftp://example.com".into(),
                ..ok.clone()
            },
            Endpoint {
                url: "https://u:p@example.com".into(),
                ..ok.clone()
            },
            Endpoint {
                secret: "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into(),
                ..ok.clone()
            },
            Endpoint {
                secret: "whsec_".into(),
                ..ok.clone()
            },
            Endpoint {
                types: vec![String::new()],
                ..ok.clone()
            },
        ] {
            assert!(target(&bad).is_err(), "{bad:?}");
        }
        // The group follows the URL and the types, not their order.
        let a = group_name("https://a", &["X".into(), "Y".into()]);
        assert_eq!(a, group_name("https://a", &["Y".into(), "X".into()]));
        assert_ne!(a, group_name("https://a", &["X".into()]));
        assert_ne!(a, group_name("https://b", &["X".into(), "Y".into()]));
    }
}
