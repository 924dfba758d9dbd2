//! What both services offer those who build on their events: consumer
//! groups over gRPC (`movies.feed.v1.FeedService`, see
//! [`event_sourcing::consumer_group`]), each event in a CloudEvents 1.0
//! envelope ([`CloudEvent`]).
//!
//! A service gives an [`Opener`]: how its stored events look from outside
//! (their current schema, ids and never personal data, internal
//! bookkeeping left out). The rest is here, once.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use event_sourcing::consumer_group::{
    ConsumerGroups, GroupError, Join, Member, Opened, Settings, Start as GroupStart,
};
use event_store::RecordedEvent;
use event_store::groups::GroupInfo;
use futures_util::stream::BoxStream;
use proto::feed::feed_service_server::{FeedService, FeedServiceServer};
use proto::feed::{self as pb, ConsumeRequest, ConsumeResponse, consume_request, consume_response};
use serde::Serialize;
use serde_json::value::RawValue;
use tonic::{Request, Response, Status, Streaming};
use uuid::Uuid;

/// The CloudEvents version of every envelope.
pub const SPEC_VERSION: &str = "1.0";

/// The most members one process serves, over every group.
pub const MAX_MEMBERS: usize = 1_000;

/// The most ids one acknowledgement carries.
pub const MAX_IDS: usize = 1_000;

/// The default of `*_FEED_LEASE_MS`.
pub const DEFAULT_LEASE_MS: u64 = 10_000;

/// A service's group settings from its `*_FEED_LEASE_MS` (at least 100
/// ms); the rest are the defaults: new groups get 32 partitions, an ack
/// timeout of 30 s and 5 deliveries, unless their first member says.
pub fn settings(lease_ms: u64) -> Settings {
    Settings {
        lease: Duration::from_millis(lease_ms.max(100)),
        ..Settings::default()
    }
}

/// How long a new `Consume` call has to send its `join`.
const JOIN_WAIT: Duration = Duration::from_secs(10);

/// Who may call the feed (and `SubscribeEvents`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// Callers sending this key in `x-service-key`.
    Key(String),
    /// Anyone (the all-in-one mode on loopback).
    Open,
    /// No one: no key is configured.
    Closed,
}

impl Access {
    /// From a service's settings: its key, else open if it says so, else
    /// closed.
    pub fn from_config(key: Option<&str>, open: bool) -> Self {
        match (key, open) {
            (Some(key), _) if !key.is_empty() => Self::Key(key.to_owned()),
            (_, true) => Self::Open,
            _ => Self::Closed,
        }
    }

    /// Whether `metadata` gets in.
    pub fn admits(&self, metadata: &tonic::metadata::MetadataMap) -> bool {
        let given = metadata.get("x-service-key").map(|v| v.as_bytes());
        match (self, given) {
            (Self::Open, _) => true,
            (Self::Key(key), Some(given)) => constant_time_eq(key.as_bytes(), given),
            _ => false,
        }
    }

    fn check(&self, metadata: &tonic::metadata::MetadataMap) -> Result<(), Status> {
        if self.admits(metadata) {
            Ok(())
        } else {
            Err(Status::permission_denied(
                "the feed needs the service key in `x-service-key`",
            ))
        }
    }
}

/// Compares without leaking where the first difference is.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// An event in the CloudEvents 1.0 envelope; serialized, it is the
/// structured JSON form (`application/cloudevents+json`).
#[derive(Debug, Clone, Serialize)]
pub struct CloudEvent {
    /// "1.0".
    pub specversion: &'static str,
    /// The event's id.
    pub id: String,
    /// `urn:movies:<service>`.
    pub source: String,
    /// `movies.<service>.<Name>.v<N>`.
    #[serde(rename = "type")]
    pub event_type: String,
    /// The stream.
    pub subject: String,
    /// When it was recorded (RFC 3339, UTC).
    pub time: String,
    /// "application/json".
    pub datacontenttype: &'static str,
    /// The payload.
    pub data: Box<RawValue>,
    /// The trace context of the request that caused it, if traced.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    /// When it was recorded, in microseconds (not serialized).
    #[serde(skip)]
    pub time_micros: i64,
}

impl CloudEvent {
    /// The protobuf form.
    pub fn to_proto(&self) -> pb::CloudEvent {
        pb::CloudEvent {
            id: self.id.clone(),
            source: self.source.clone(),
            spec_version: self.specversion.to_owned(),
            r#type: self.event_type.clone(),
            subject: self.subject.clone(),
            time: Some(proto::timestamp_micros(self.time_micros)),
            data_content_type: self.datacontenttype.to_owned(),
            data: self.data.get().to_owned(),
            traceparent: self.traceparent.clone().unwrap_or_default(),
        }
    }
}

/// A stored type as the envelope names it: `Name.vN` stays, a type
/// without a version is version 1. Returns the bare name and the version.
pub fn versioned(stored_type: &str) -> (&str, u32) {
    if let Some((name, v)) = stored_type.rsplit_once(".v")
        && let Ok(v) = v.parse::<u32>()
    {
        return (name, v);
    }
    (stored_type, 1)
}

/// The envelope of `event` from `service` (`auth`, `catalog`): its type in
/// the current schema `current_type`, its `subject` and its `data`.
pub fn envelope(
    service: &str,
    event: &RecordedEvent,
    current_type: &str,
    subject: String,
    data: Box<RawValue>,
) -> Opened<CloudEvent> {
    let (name, version) = versioned(current_type);
    let event_type = format!("movies.{service}.{name}.v{version}");
    let cloud = CloudEvent {
        specversion: SPEC_VERSION,
        id: event.id.to_string(),
        source: format!("urn:movies:{service}"),
        event_type: event_type.clone(),
        subject: subject.clone(),
        time: event
            .recorded_at
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        datacontenttype: "application/json",
        data,
        traceparent: event_store::trace::traceparent(event),
        time_micros: event.recorded_at.timestamp_micros(),
    };
    Opened {
        event_type,
        name: name.to_owned(),
        subject,
        message: cloud,
    }
}

/// `movies.feed.v1.FeedService` over a service's groups.
pub struct FeedGrpc {
    groups: Arc<ConsumerGroups<CloudEvent>>,
    access: Access,
    members: Arc<AtomicUsize>,
}

impl FeedGrpc {
    /// The feed of `groups`, for callers `access` lets in.
    pub fn new(groups: Arc<ConsumerGroups<CloudEvent>>, access: Access) -> Self {
        Self {
            groups,
            access,
            members: Arc::default(),
        }
    }

    /// The tonic server, with the platform's request size limit.
    pub fn server(self) -> FeedServiceServer<Self> {
        FeedServiceServer::new(self).max_decoding_message_size(crate::grpc::MAX_REQUEST_BYTES)
    }
}

fn status(e: GroupError) -> Status {
    match e {
        GroupError::Conflict(_) => Status::failed_precondition(e.to_string()),
        GroupError::Invalid(_) => Status::invalid_argument(e.to_string()),
        GroupError::Unsupported => Status::unimplemented(e.to_string()),
        GroupError::Store(e) => {
            tracing::warn!(error = %e, "a feed call failed in the store");
            Status::unavailable("the event store failed; try again")
        }
    }
}

fn join_of(join: pb::Join) -> Result<Join, Status> {
    let start = match join.start() {
        pb::Start::Unspecified | pb::Start::Beginning => GroupStart::Beginning,
        pb::Start::End => GroupStart::End,
        pb::Start::Position => GroupStart::Position(join.position),
    };
    Ok(Join {
        group: join.group,
        types: join.types,
        prefix: join.subject_prefix,
        start,
        max_in_flight: join.max_in_flight,
        ack_timeout: (join.ack_timeout_ms > 0)
            .then(|| Duration::from_millis(u64::from(join.ack_timeout_ms))),
        max_deliveries: (join.max_deliveries > 0).then_some(join.max_deliveries),
    })
}

fn ids_of(ids: &[String]) -> Result<Vec<Uuid>, Status> {
    if ids.len() > MAX_IDS {
        return Err(Status::invalid_argument(format!(
            "at most {MAX_IDS} ids at once"
        )));
    }
    ids.iter()
        .map(|id| {
            Uuid::parse_str(id).map_err(|_| Status::invalid_argument("an event id is a UUID"))
        })
        .collect()
}

fn group_message(g: &GroupInfo) -> pb::Group {
    pb::Group {
        name: g.name.clone(),
        types: g.spec.types.clone(),
        subject_prefix: g.spec.prefix.clone(),
        start: g.spec.start,
        partitions: g.spec.partitions,
        ack_timeout_ms: g.spec.ack_timeout_ms.min(u64::from(u32::MAX)) as u32,
        max_deliveries: g.spec.max_deliveries,
        checkpoint: g.checkpoint,
        members: g.members,
        parked: g.parked,
    }
}

/// Counts a member for as long as it lives.
struct Counted(Arc<AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Relays a member's deliveries to its call, and its answers back, until
/// either side ends.
async fn relay(
    mut member: Member<CloudEvent>,
    mut inbound: Streaming<ConsumeRequest>,
    out: tokio::sync::mpsc::Sender<Result<ConsumeResponse, Status>>,
    _counted: Counted,
) {
    // A client that half-closes its side (grpcurl at the end of its input)
    // still receives, up to what it may hold unacknowledged.
    let mut open = true;
    loop {
        tokio::select! {
            delivery = member.next() => {
                let Some(d) = delivery else {
                    let _ = out.send(Err(Status::aborted("the group was deleted"))).await;
                    return;
                };
                let message = ConsumeResponse {
                    kind: Some(consume_response::Kind::Delivery(pb::Delivery {
                        event: Some(d.message.to_proto()),
                        position: d.position,
                        delivery: d.delivery,
                    })),
                };
                if out.send(Ok(message)).await.is_err() {
                    return;
                }
            }
            // The call is gone (the client went away): leave at once.
            _ = out.closed() => return,
            request = inbound.message(), if open => {
                let answer = match request {
                    Ok(Some(ConsumeRequest { kind: Some(consume_request::Kind::Ack(ack)) })) => {
                        ids_of(&ack.event_ids).map(|ids| member.ack(ids))
                    }
                    Ok(Some(ConsumeRequest { kind: Some(consume_request::Kind::Nack(nack)) })) => {
                        let delay = Duration::from_millis(u64::from(nack.delay_ms).min(3_600_000));
                        ids_of(&nack.event_ids).map(|ids| member.nack(ids, delay))
                    }
                    Ok(Some(_)) => Err(Status::invalid_argument("after `join`, only `ack` and `nack`")),
                    Ok(None) => {
                        open = false;
                        continue;
                    }
                    Err(_) => return,
                };
                if let Err(status) = answer {
                    let _ = out.send(Err(status)).await;
                    return;
                }
            }
        }
    }
}

#[tonic::async_trait]
impl FeedService for FeedGrpc {
    type ConsumeStream = BoxStream<'static, Result<ConsumeResponse, Status>>;

    async fn consume(
        &self,
        request: Request<Streaming<ConsumeRequest>>,
    ) -> Result<Response<Self::ConsumeStream>, Status> {
        self.access.check(request.metadata())?;
        let mut inbound = request.into_inner();
        let first = tokio::time::timeout(JOIN_WAIT, inbound.message())
            .await
            .map_err(|_| Status::deadline_exceeded("no `join` in time"))??;
        let Some(ConsumeRequest {
            kind: Some(consume_request::Kind::Join(join)),
        }) = first
        else {
            return Err(Status::invalid_argument("the first message is a `join`"));
        };
        if join.group.starts_with(crate::webhooks::GROUP_PREFIX) {
            return Err(Status::invalid_argument(format!(
                "group names starting `{}` are the webhooks'",
                crate::webhooks::GROUP_PREFIX
            )));
        }
        if self.members.fetch_add(1, Ordering::Relaxed) >= MAX_MEMBERS {
            self.members.fetch_sub(1, Ordering::Relaxed);
            return Err(Status::resource_exhausted(format!(
                "at most {MAX_MEMBERS} members per process"
            )));
        }
        let counted = Counted(self.members.clone());
        let member = self.groups.join(join_of(join)?).await.map_err(status)?;
        let group = self
            .groups
            .list()
            .await
            .map_err(status)?
            .into_iter()
            .find(|g| g.name == member.group)
            .map(|g| group_message(&g));
        tracing::info!(group = %member.group, member = %member.id, "a consumer joined");
        let (out, answers) = tokio::sync::mpsc::channel(64);
        let joined = ConsumeResponse {
            kind: Some(consume_response::Kind::Joined(pb::Joined {
                member: member.id.to_string(),
                group,
            })),
        };
        let _ = out.send(Ok(joined)).await;
        tokio::spawn(relay(member, inbound, out, counted));
        let stream = futures_util::stream::unfold(answers, |mut answers| async move {
            answers.recv().await.map(|m| (m, answers))
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn list_groups(
        &self,
        request: Request<pb::ListGroupsRequest>,
    ) -> Result<Response<pb::ListGroupsResponse>, Status> {
        self.access.check(request.metadata())?;
        let groups = self.groups.list().await.map_err(status)?;
        Ok(Response::new(pb::ListGroupsResponse {
            groups: groups.iter().map(group_message).collect(),
        }))
    }

    async fn list_parked(
        &self,
        request: Request<pb::ListParkedRequest>,
    ) -> Result<Response<pb::ListParkedResponse>, Status> {
        self.access.check(request.metadata())?;
        let r = request.into_inner();
        let limit = match r.limit {
            0 => 100,
            n => (n as usize).min(1000),
        };
        let parked = self
            .groups
            .parked(&r.group, r.after, limit)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::ListParkedResponse {
            events: parked
                .into_iter()
                .map(|p| pb::ParkedEvent {
                    position: p.position,
                    event_id: p.event_id.to_string(),
                    deliveries: p.deliveries,
                    parked_at: Some(proto::timestamp_micros(p.parked_at.timestamp_micros())),
                    replay: p.replay,
                })
                .collect(),
        }))
    }

    async fn replay_parked(
        &self,
        request: Request<pb::ReplayParkedRequest>,
    ) -> Result<Response<pb::ReplayParkedResponse>, Status> {
        self.access.check(request.metadata())?;
        let r = request.into_inner();
        if r.positions.len() > MAX_IDS {
            return Err(Status::invalid_argument(format!(
                "at most {MAX_IDS} positions at once"
            )));
        }
        let marked = self
            .groups
            .replay(&r.group, &r.positions)
            .await
            .map_err(status)?;
        tracing::info!(group = %r.group, marked, "parked events to be replayed");
        Ok(Response::new(pb::ReplayParkedResponse { marked }))
    }

    async fn delete_group(
        &self,
        request: Request<pb::DeleteGroupRequest>,
    ) -> Result<Response<pb::DeleteGroupResponse>, Status> {
        self.access.check(request.metadata())?;
        let group = request.into_inner().group;
        let deleted = self.groups.delete(&group).await.map_err(status)?;
        tracing::info!(%group, deleted, "a consumer group was deleted");
        Ok(Response::new(pb::DeleteGroupResponse { deleted }))
    }
}

/// The feed's series, for a service's `GET /metrics`: per group, what
/// this process delivered, redelivered, had acknowledged and parked, its
/// members here, and its lag (the head's position minus the lowest
/// checkpoint of the partitions held here).
pub fn metrics(
    service: &'static str,
    groups: Arc<ConsumerGroups<CloudEvent>>,
) -> crate::metrics::Render {
    Arc::new(move || {
        let groups = groups.clone();
        Box::pin(async move {
            let counters = groups.counters();
            if counters.is_empty() {
                return String::new();
            }
            let head = groups.head().await.unwrap_or(0);
            let mut out = String::new();
            let series: [(&str, &str, &str); 6] = [
                (
                    "feed_delivered_total",
                    "counter",
                    "First deliveries of events to consumer-group members.",
                ),
                (
                    "feed_redelivered_total",
                    "counter",
                    "Deliveries after the first (ack timeouts, refusals, members gone).",
                ),
                ("feed_acked_total", "counter", "Events acknowledged."),
                (
                    "feed_parked_total",
                    "counter",
                    "Events parked after their last delivery.",
                ),
                ("feed_members", "gauge", "Members served by this process."),
                (
                    "feed_lag_events",
                    "gauge",
                    "The head's position minus the lowest checkpoint of the partitions held here (0 when none).",
                ),
            ];
            for (i, (name, kind, help)) in series.iter().enumerate() {
                metrics_text::header(&mut out, name, kind, help);
                for (group, c) in &counters {
                    let value = match i {
                        0 => c.delivered.load(Ordering::Relaxed),
                        1 => c.redelivered.load(Ordering::Relaxed),
                        2 => c.acked.load(Ordering::Relaxed),
                        3 => c.parked.load(Ordering::Relaxed),
                        4 => c.members.load(Ordering::Relaxed),
                        _ => match c.checkpoint.load(Ordering::Relaxed) {
                            0 => 0,
                            low => (head + 1).saturating_sub(low),
                        },
                    };
                    out.push_str(&format!(
                        "{name}{{service=\"{service}\",group=\"{group}\"}} {value}\n"
                    ));
                }
            }
            out
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_types_get_a_version() {
        assert_eq!(versioned("MovieRated"), ("MovieRated", 1));
        assert_eq!(versioned("TokenIssued.v2"), ("TokenIssued", 2));
        assert_eq!(versioned("Odd.vx"), ("Odd.vx", 1));
    }

    #[test]
    fn keys_are_compared_whole() {
        let mut md = tonic::metadata::MetadataMap::new();
        let access = Access::from_config(Some("secret"), true);
        assert!(!access.admits(&md));
        md.insert("x-service-key", "secre".parse().unwrap());
        assert!(!access.admits(&md));
        md.insert("x-service-key", "secret".parse().unwrap());
        assert!(access.admits(&md));
        assert!(Access::from_config(None, true).admits(&tonic::metadata::MetadataMap::new()));
        assert_eq!(Access::from_config(Some(""), false), Access::Closed);
        assert!(!Access::Closed.admits(&md));
    }
}
