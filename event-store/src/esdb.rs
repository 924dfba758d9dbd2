//! The EventStoreDB backend (feature `eventstoredb`), on the `eventstore`
//! gRPC client.
//!
//! - Expected versions map one to one onto the server's expected revisions;
//!   the server checks them, and deduplicates retried event ids itself.
//! - Global positions are the events' *prepare* positions in `$all`: unique
//!   per event and increasing in commit order (commit positions are shared by
//!   the events of one append, so they cannot serve).
//! - System events (`$`-prefixed streams and types) are not part of the feed.
//! - `subscribe_all` reads `$all` until caught up, then follows the server's
//!   catch-up subscription to `$all` from the last position seen.
//!
//! Its conformance tests run only where `EVENTSTORE_URL` names a server.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use eventstore::{
    AppendToStreamOptions, Client, ClientSettings, EventData, ExpectedRevision, Position,
    ReadAllOptions, ReadStreamOptions, StreamPosition, SubscribeToAllOptions, SubscriptionFilter,
};
use futures_util::StreamExt;
use serde_json::value::RawValue;

use crate::append_rules::validate;
use crate::error::{EventStoreError, Result};
use crate::model::{AppendResult, CurrentVersion, ExpectedVersion, NewEvent, RecordedEvent};
use crate::redact_url;
use crate::store::{EventStore, EventStream};

const BACKEND: &str = "eventstoredb";

fn db_err(e: eventstore::Error) -> EventStoreError {
    EventStoreError::backend(BACKEND, e)
}

/// How many server positions are remembered for seeking (older ones fall
/// back to reading from the start, which is correct, only slower).
const KNOWN_POSITIONS: usize = 100_000;

/// An event store on an EventStoreDB server. Cheap to clone.
#[derive(Clone)]
pub struct EsdbStore {
    client: Arc<Client>,
    known: Arc<Mutex<BTreeMap<u64, Position>>>,
}

impl EsdbStore {
    /// Connects to `url` (`esdb://host:2113?tls=false`) and checks that the
    /// server answers.
    pub async fn connect(url: &str) -> Result<Self> {
        let settings: ClientSettings = url.parse().map_err(|e| EventStoreError::InvalidUrl {
            url: redact_url(url),
            reason: format!("{e}"),
        })?;
        let client = Client::new(settings).map_err(db_err)?;
        let store = Self {
            client: Arc::new(client),
            known: Arc::default(),
        };
        store.head_position().await?;
        tracing::info!(url = %redact_url(url), "connected eventstoredb event store");
        Ok(store)
    }

    /// Reads `$all` forwards from `from` (inclusive): at most `limit` user
    /// events, and the server position of the last record read.
    ///
    /// The server only seeks to real record positions, so reading starts at
    /// the nearest position this store has seen at or before `from` (or at
    /// the start) and skips what lies before `from`.
    async fn read_forwards(
        &self,
        from: u64,
        limit: usize,
    ) -> Result<(Vec<RecordedEvent>, Option<Position>)> {
        const PAGE: usize = 512;
        let mut cursor = self.seek(from);
        let mut out = Vec::new();
        let mut last = None;
        loop {
            let options = ReadAllOptions::default()
                .forwards()
                .position(cursor)
                .max_count(PAGE);
            let mut stream = self.client.read_all(&options).await.map_err(db_err)?;
            let mut read = 0;
            while let Some(event) = stream.next().await.map_err(db_err)? {
                let e = event.get_original_event();
                read += 1;
                if last == Some(e.position) {
                    continue; // the record the page started at, already taken
                }
                last = Some(e.position);
                self.remember(e.position);
                if e.position.prepare < from || is_system(e) {
                    continue;
                }
                out.push(convert(e)?);
                if out.len() == limit {
                    return Ok((out, last));
                }
            }
            match last {
                Some(p) if read == PAGE => cursor = StreamPosition::Position(p),
                _ => return Ok((out, last)),
            }
        }
    }

    fn seek(&self, from: u64) -> StreamPosition<Position> {
        let known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        match known.range(..=from).next_back() {
            Some((_, p)) if from > 0 => StreamPosition::Position(*p),
            _ => StreamPosition::Start,
        }
    }

    fn remember(&self, p: Position) {
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        known.insert(p.prepare, p);
        if known.len() > KNOWN_POSITIONS {
            known.pop_first();
        }
    }
}

fn is_system(e: &eventstore::RecordedEvent) -> bool {
    e.stream_id.starts_with('$') || e.event_type.starts_with('$')
}

fn raw(bytes: &[u8], position: u64, what: &str) -> Result<Box<RawValue>> {
    let text = if bytes.is_empty() {
        "{}"
    } else {
        std::str::from_utf8(bytes).unwrap_or("")
    };
    RawValue::from_string(text.to_owned()).map_err(|e| EventStoreError::Corrupt {
        position,
        reason: format!("{what}: {e}"),
    })
}

fn convert(e: &eventstore::RecordedEvent) -> Result<RecordedEvent> {
    let position = e.position.prepare;
    Ok(RecordedEvent {
        position,
        stream: e.stream_id.clone(),
        version: e.revision,
        event_type: e.event_type.clone(),
        id: e.id,
        data: raw(&e.data, position, "data")?,
        metadata: raw(&e.custom_metadata, position, "metadata")?,
        recorded_at: e.created,
    })
}

fn event_data(e: &NewEvent) -> Result<EventData> {
    let invalid = |_| EventStoreError::InvalidAppend("event JSON could not be encoded");
    EventData::json(&e.event_type, &e.data)
        .map_err(invalid)?
        .id(e.id)
        .metadata_as_json(&e.metadata)
        .map_err(invalid)
}

#[async_trait]
impl EventStore for EsdbStore {
    async fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult> {
        validate(stream, &events)?;
        let revision = match expected {
            ExpectedVersion::Any => ExpectedRevision::Any,
            ExpectedVersion::NoStream => ExpectedRevision::NoStream,
            ExpectedVersion::Exact(v) => ExpectedRevision::Exact(v),
        };
        let data = events.iter().map(event_data).collect::<Result<Vec<_>>>()?;
        let options = AppendToStreamOptions::default().expected_revision(revision);
        let written = match self.client.append_to_stream(stream, &options, data).await {
            Ok(w) => w,
            Err(eventstore::Error::WrongExpectedVersion { current, .. }) => {
                return Err(EventStoreError::WrongExpectedVersion {
                    stream: stream.to_owned(),
                    expected,
                    actual: match current {
                        eventstore::CurrentRevision::Current(v) => CurrentVersion::At(v),
                        eventstore::CurrentRevision::NoStream => CurrentVersion::NoStream,
                    },
                });
            }
            Err(e) => return Err(db_err(e)),
        };
        let stream_version = written.next_expected_version;
        // The position of the append's last event, for read-your-writes.
        let last = self
            .read_stream(stream, stream_version)
            .await?
            .first()
            .map_or(written.position.prepare, |e| e.position);
        Ok(AppendResult {
            stream_version,
            position: last,
        })
    }

    async fn read_stream(&self, stream: &str, from_version: u64) -> Result<Vec<RecordedEvent>> {
        let options = ReadStreamOptions::default()
            .forwards()
            .position(StreamPosition::Position(from_version))
            .max_count(usize::MAX);
        let mut events = match self.client.read_stream(stream, &options).await {
            Ok(s) => s,
            Err(eventstore::Error::ResourceNotFound) => return Ok(vec![]),
            Err(e) => return Err(db_err(e)),
        };
        let mut out = Vec::new();
        loop {
            match events.next().await {
                Ok(Some(e)) => out.push(convert(e.get_original_event())?),
                Ok(None) => return Ok(out),
                Err(eventstore::Error::ResourceNotFound) => return Ok(out),
                Err(e) => return Err(db_err(e)),
            }
        }
    }

    async fn read_all(&self, from_position: u64, limit: usize) -> Result<Vec<RecordedEvent>> {
        if limit == 0 {
            return Ok(vec![]);
        }
        Ok(self.read_forwards(from_position, limit).await?.0)
    }

    async fn head_position(&self) -> Result<u64> {
        let options = ReadAllOptions::default()
            .backwards()
            .position(StreamPosition::End)
            .max_count(256);
        let mut stream = self.client.read_all(&options).await.map_err(db_err)?;
        while let Some(event) = stream.next().await.map_err(db_err)? {
            let e = event.get_original_event();
            if !is_system(e) {
                return Ok(e.position.prepare);
            }
        }
        Ok(0)
    }

    fn subscribe_all(&self, from_position: u64) -> EventStream {
        let store = self.clone();
        let catch_up = futures_util::stream::once(async move {
            let (mut seen, mut next, mut last) = (Vec::new(), from_position, None);
            loop {
                let (batch, at) = store.read_forwards(next, 1024).await?;
                last = at.or(last);
                let Some(e) = batch.last() else { break };
                next = e.position + 1;
                seen.extend(batch);
            }
            Ok::<_, EventStoreError>((store, seen, next, last))
        });
        catch_up
            .flat_map(|caught_up| match caught_up {
                Err(e) => futures_util::stream::iter(vec![Err(e)]).boxed(),
                Ok((store, seen, next, last)) => {
                    futures_util::stream::iter(seen.into_iter().map(Ok))
                        .chain(live(store, next, last))
                        .boxed()
                }
            })
            .boxed()
    }
}

/// The server's catch-up subscription to `$all`, after the record at `last`
/// (from the start if none), yielding user events from position `next` on.
fn live(store: EsdbStore, next: u64, last: Option<Position>) -> EventStream {
    let position = last.map_or(StreamPosition::Start, StreamPosition::Position);
    let options = SubscribeToAllOptions::default()
        .position(position)
        .filter(SubscriptionFilter::on_event_type().exclude_system_events());
    futures_util::stream::unfold(
        (store, options, None, false),
        move |(store, options, sub, failed)| async move {
            if failed {
                return None;
            }
            let mut sub = match sub {
                Some(s) => s,
                None => store.client.subscribe_to_all(&options).await,
            };
            loop {
                match sub.next().await {
                    Ok(event) => {
                        let e = event.get_original_event();
                        if e.position.prepare < next || is_system(e) {
                            continue;
                        }
                        store.remember(e.position);
                        return Some((convert(e), (store, options, Some(sub), false)));
                    }
                    Err(e) => return Some((Err(db_err(e)), (store, options, None, true))),
                }
            }
        },
    )
    .boxed()
}
