//! The production backend: PostgreSQL through tokio-postgres and a pool.
//!
//! # Global order without holes
//!
//! With a plain `bigserial`, two concurrent transactions can take positions
//! 7 and 8 and commit 8 first; a subscriber that read 8 and moved its
//! checkpoint past it would never see 7. Here every append transaction first
//! takes one transaction-level advisory lock (`pg_advisory_xact_lock`), then
//! computes positions as `max(position) + 1`, inserts, and commits; the lock is
//! released only after the commit is visible. So position assignment and
//! commit are serialized: a transaction holding position `p` is visible before
//! any transaction can take a position above `p`, and readers ordering by
//! position never see a hole that later fills. The same lock makes the
//! expected-version check and the insert one atomic step (no read-then-write
//! race), with `UNIQUE (stream, version)` as a second line of defence. The
//! transactions run at READ COMMITTED, so each statement after the lock sees
//! every commit of the previous lock holder.
//!
//! # Throughput
//!
//! Serializing commits would cap throughput at one fsync per append, so one
//! writer task per process gathers every append waiting in its queue and
//! commits them together (group commit): one lock, one multi-row insert, one
//! fsync for many appends. Several processes may share a database; the lock
//! serializes them correctly.
//!
//! # Live subscriptions
//!
//! Each commit sends `NOTIFY es_events` with its last position; one listening
//! connection per store wakes the subscriptions (and a slow poll covers a lost
//! listener connection).
//!
//! # Read leases
//!
//! `es_read_leases` holds one row per read model holding a lease (see
//! [`crate::lease`]). The statement after each group's `COMMIT` (same round
//! trip, its own snapshot, so it sees every lease granted before the commit
//! was visible) lists the live ones; the group is answered once each has
//! written, in its own row's `applied`, that it applied the group, or its
//! lease has ended. Those updates are written without waiting for a flush
//! (`synchronous_commit = off`): they hold no data.
//!
//! # What a notification is trusted with
//!
//! Nothing but a wake-up. Any role that may connect to the database may
//! `NOTIFY` on any channel, so neither a head nor an acknowledgement is
//! taken from a payload: on any notification, the listener reads the head
//! (`max(position)`) and every live lease's `applied` (at most that head)
//! from the tables, which only the service's role writes. A forged
//! notification costs one such read, coalesced with the others pending.
//! (`NOTIFY es_applied` still carries `'<holder> <position>'`, for writers
//! of earlier releases during a rolling upgrade; it is not read.)

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use futures_util::StreamExt;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_postgres::types::ToSql;
use tokio_postgres::{AsyncMessage, NoTls, Row};
use uuid::Uuid;

use crate::append_rules::{Decision, StoredId, decide};
use crate::error::{EventStoreError, Result};
use crate::group::{AppendRequest, MAX_GROUP, Queue, committed, queue, submit};
use crate::lease::{Acks, Live, ReadLeases};
use crate::model::{AppendResult, CurrentVersion, ExpectedVersion, NewEvent, RecordedEvent};
use crate::redact_url;
use crate::stats::StoreStats;
use crate::store::{EventStore, EventStream};
use crate::subscription::{advance, catch_up_then_live};

mod groups;

const BACKEND: &str = "postgres";
/// The advisory lock serializing appends (any constant shared by all writers).
const APPEND_LOCK: i64 = 0x6d6f_7669_6573_0001;
/// The advisory lock serializing schema migrations.
const MIGRATION_LOCK: i64 = 0x6d6f_7669_6573_0002;
/// The notification channel carrying new head positions.
const CHANNEL: &str = "es_events";
/// The notification channel carrying lease holders' applied positions.
const APPLIED_CHANNEL: &str = "es_applied";
/// Pool size: enough for concurrent readers plus the writer.
const POOL_SIZE: usize = 16;

/// Schema migrations, applied in order, each exactly once.
const MIGRATIONS: &[&str] = &[
    "CREATE TABLE es_events (
        position    bigint      PRIMARY KEY,
        stream      text        NOT NULL,
        version     bigint      NOT NULL,
        event_type  text        NOT NULL,
        event_id    uuid        NOT NULL UNIQUE,
        data        text        NOT NULL,
        metadata    text        NOT NULL,
        recorded_at timestamptz NOT NULL,
        UNIQUE (stream, version)
    )",
    "CREATE TABLE es_read_leases (
        holder     uuid        PRIMARY KEY,
        expires_at timestamptz NOT NULL,
        revoked    boolean     NOT NULL DEFAULT false
    )",
    // Acknowledgements in the holder's row, not in notifications (which
    // any role that may connect can send).
    "ALTER TABLE es_read_leases ADD COLUMN applied bigint NOT NULL DEFAULT 0",
    // Secrets kept beside the events (`EventStore::secret`).
    "CREATE TABLE es_secrets (name text PRIMARY KEY, value bytea NOT NULL)",
    // Consumer groups (`crate::groups`).
    groups::TABLES,
];

fn db_err(e: impl std::error::Error + Send + Sync + 'static) -> EventStoreError {
    EventStoreError::backend(BACKEND, e)
}

/// An event store in a PostgreSQL database. Cheap to clone: clones share the
/// pool, the writer task and the listener.
#[derive(Clone)]
pub struct PostgresStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    writer: Queue,
    head: watch::Receiver<u64>,
    listener: JoinHandle<()>,
    /// Holders' applied positions, as this process heard them.
    acks: Arc<Acks>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

impl PostgresStore {
    /// Connects to `url` (a libpq-style `postgres://` URL), applies pending
    /// migrations and starts the writer and the listener.
    ///
    /// An unreachable server is an error here, after a 5 s connect timeout
    /// unless the URL sets `connect_timeout`.
    pub async fn connect(url: &str) -> Result<Self> {
        let mut config: tokio_postgres::Config =
            url.parse()
                .map_err(|e: tokio_postgres::Error| EventStoreError::InvalidUrl {
                    url: redact_url(url),
                    reason: e.to_string(),
                })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(5));
        }
        // Plan every execution for its actual parameters. After a few runs
        // Postgres may switch a prepared statement to a generic plan, and for
        // the group commit's array lookups that plan drifted as the table
        // grew (measured: 32-writer appends fell from ~20,000/s to ~6,000/s
        // over 25,000 events; with custom plans they stay level).
        let options = match config.get_options() {
            Some(o) => format!("{o} -c plan_cache_mode=force_custom_plan"),
            None => "-c plan_cache_mode=force_custom_plan".to_owned(),
        };
        config.options(&options);
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .build()
            .map_err(db_err)?;
        let mut client = pool.get().await.map_err(db_err)?;
        migrate(&mut client).await?;
        let head_position = query_head(&client).await?;
        drop(client);

        let (head_tx, head_rx) = watch::channel(head_position);
        let head_tx = Arc::new(head_tx);
        let (writer, rx) = queue();
        let acks = Arc::new(Acks::default());
        tokio::spawn(run_writer(
            pool.clone(),
            rx,
            (head_tx.clone(), acks.clone()),
            writer.stats.clone(),
        ));
        let (listening, listens) = oneshot::channel();
        let listener = tokio::spawn(run_listener(config, head_tx, acks.clone(), listening));
        // Writes wait for lease holders' notifications: listen before the
        // first write (a write that misses one revokes a lease, slowly).
        if tokio::time::timeout(Duration::from_secs(5), listens)
            .await
            .is_err()
        {
            tracing::warn!("postgres listener not listening yet; going on");
        }
        tracing::info!(url = %redact_url(url), head_position, "connected postgres event store");
        Ok(Self {
            inner: Arc::new(Inner {
                pool,
                writer,
                head: head_rx,
                listener,
                acks,
            }),
        })
    }

    async fn client(&self) -> Result<deadpool_postgres::Object> {
        self.inner.pool.get().await.map_err(db_err)
    }
}

async fn migrate(client: &mut deadpool_postgres::Object) -> Result<()> {
    let tx = client.transaction().await.map_err(db_err)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(db_err)?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS es_schema_version (version integer NOT NULL)")
        .await
        .map_err(db_err)?;
    let applied: i32 = tx
        .query_one(
            "SELECT coalesce(max(version), 0) FROM es_schema_version",
            &[],
        )
        .await
        .map_err(db_err)?
        .get(0);
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(applied.max(0) as usize) {
        tx.batch_execute(sql).await.map_err(db_err)?;
        tx.execute(
            "INSERT INTO es_schema_version (version) VALUES ($1)",
            &[&(i as i32 + 1)],
        )
        .await
        .map_err(db_err)?;
        tracing::info!(version = i + 1, "applied event store migration");
    }
    tx.commit().await.map_err(db_err)
}

/// The last committed position (positions become visible in order).
const HEAD_SQL: &str = "SELECT coalesce(max(position), 0) FROM es_events";

async fn query_head(client: &tokio_postgres::Client) -> Result<u64> {
    let head: i64 = client
        .query_one(HEAD_SQL, &[])
        .await
        .map_err(db_err)?
        .get(0);
    Ok(head as u64)
}

/// The writer task: group commits until every store handle is dropped. A
/// group is answered once every read lease live at its commit has applied
/// it (waited for on a task of its own, so the next group goes on).
async fn run_writer(
    pool: Pool,
    mut rx: mpsc::UnboundedReceiver<AppendRequest>,
    (head, acks): (Arc<watch::Sender<u64>>, Arc<Acks>),
    stats: Arc<StoreStats>,
) {
    let mut group = Vec::with_capacity(MAX_GROUP);
    while rx.recv_many(&mut group, MAX_GROUP).await > 0 {
        let (results, live) = match commit_group(&pool, &group).await {
            Ok(committed) => committed,
            Err(e) => (group.iter().map(|_| Err(e.clone())).collect(), None),
        };
        let replies = committed(&mut group, results, &head, &stats);
        match live {
            _ if replies.last == 0 => replies.send(None),
            Some((live, _)) if live.is_empty() => replies.send(None),
            live => {
                let (acks, pool) = (acks.clone(), pool.clone());
                tokio::spawn(async move {
                    let position = replies.last;
                    let live = match live {
                        Some(live) => Ok(live),
                        None => list_live(&pool).await,
                    };
                    let confirmed = match live {
                        Ok((live, seen_at)) => {
                            acks.forget_all_but(&live);
                            let revoke = |holder| revoke(pool.clone(), holder);
                            acks.confirm(live, seen_at, position, revoke).await
                        }
                        Err(e) => {
                            tracing::error!(error = %e, position, "cannot list the read leases after a commit");
                            Err(EventStoreError::Unconfirmed { position })
                        }
                    };
                    replies.send(confirmed.err());
                });
            }
        }
    }
    tracing::debug!("postgres writer stopped");
}

/// Lists the live read leases again, after the listing that follows a
/// commit failed (a few tries, a tenth of a second apart).
async fn list_live(pool: &Pool) -> Result<(Vec<Live>, Instant)> {
    let mut tries = 0;
    loop {
        let listed = async {
            let client = pool.get().await.map_err(db_err)?;
            client.query(LIVE_LEASES_SQL, &[]).await.map_err(db_err)
        };
        match listed.await {
            Ok(rows) => return Ok((live_leases(&rows), Instant::now())),
            Err(e) if tries >= 3 => return Err(e),
            Err(_) => tries += 1,
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The read leases live now, and how long each has left (the statement
/// that follows each group's `COMMIT`).
const LIVE_LEASES_SQL: &str = "SELECT holder, \
     extract(epoch FROM expires_at - clock_timestamp())::float8, revoked \
     FROM es_read_leases WHERE expires_at > clock_timestamp()";

fn live_leases(rows: &[Row]) -> Vec<Live> {
    rows.iter()
        .map(|r| Live {
            holder: r.get(0),
            left: Duration::from_secs_f64(r.get::<_, f64>(1).max(0.0)),
            revoked: r.get(2),
        })
        .collect()
}

/// Revokes `holder`'s lease; how long it has left, if it is live.
async fn revoke(pool: Pool, holder: Uuid) -> Result<Option<Duration>> {
    let client = pool.get().await.map_err(db_err)?;
    let row = client
        .query_opt(
            "UPDATE es_read_leases SET revoked = true \
             WHERE holder = $1 AND expires_at > clock_timestamp() \
             RETURNING extract(epoch FROM expires_at - clock_timestamp())::float8",
            &[&holder],
        )
        .await
        .map_err(db_err)?;
    Ok(row.map(|r| Duration::from_secs_f64(r.get::<_, f64>(0).max(0.0))))
}

/// Columns of the rows one group commit inserts.
#[derive(Default)]
struct Rows<'a> {
    positions: Vec<i64>,
    streams: Vec<&'a str>,
    versions: Vec<i64>,
    types: Vec<&'a str>,
    ids: Vec<Uuid>,
    data: Vec<&'a str>,
    metadata: Vec<&'a str>,
}

impl Rows<'_> {
    /// The columns as the insert's parameters `$1`…`$7`.
    fn columns(&self) -> [&(dyn ToSql + Sync); 7] {
        [
            &self.positions,
            &self.streams,
            &self.versions,
            &self.types,
            &self.ids,
            &self.data,
            &self.metadata,
        ]
    }
}

/// Commits every append of `group` that passes its checks in one transaction
/// under the append lock (see the module docs for why this keeps the global
/// order gap-free). A refused append writes nothing; the others still commit.
///
/// Two round trips: `BEGIN`, the lock and the reads are pipelined (the server
/// runs them in order, so the reads happen after the lock is held and, at
/// READ COMMITTED, see every earlier holder's commit); then the insert, the
/// notification, `COMMIT` and the live read leases (listed after the commit,
/// with when they were heard of).
async fn commit_group(pool: &Pool, group: &[AppendRequest]) -> Result<Committed> {
    let client = pool.get().await.map_err(db_err)?;
    let outcome = commit_group_on(&client, group).await;
    if outcome.is_err() && client.batch_execute("ROLLBACK").await.is_err() {
        // The connection is unusable: keep it out of the pool.
        drop(deadpool_postgres::Object::take(client));
    }
    outcome
}

/// What a group commit did: each append's result, and the read leases live
/// after it (none if the listing failed after a good commit).
type Committed = (Vec<Result<AppendResult>>, Option<(Vec<Live>, Instant)>);

async fn commit_group_on(
    client: &deadpool_postgres::Object,
    group: &[AppendRequest],
) -> Result<Committed> {
    let prepare = |sql: &'static str| client.prepare_cached(sql);
    let (begin, lock, versions_q, ids_q, head_q, insert, notify, commit, leases_q) = tokio::try_join!(
        prepare("BEGIN"),
        prepare("SELECT pg_advisory_xact_lock($1)"),
        // One index probe per stream (backwards on (stream, version)); a
        // `max(version) … GROUP BY stream` would read every event of them.
        prepare(
            "SELECT s.stream, (SELECT e.version FROM es_events e WHERE e.stream = s.stream \
             ORDER BY e.version DESC LIMIT 1) FROM unnest($1::text[]) AS s(stream)"
        ),
        // Likewise one index probe per id: with `event_id = ANY($1)` the
        // generic plan turned into a scan once the table grew (measured:
        // group commits 4x slower after 20k events).
        prepare(
            "SELECT e.event_id, e.stream, e.version, e.position FROM unnest($1::uuid[]) AS i(id) \
             CROSS JOIN LATERAL (SELECT * FROM es_events x WHERE x.event_id = i.id) e"
        ),
        prepare("SELECT coalesce(max(position), 0) FROM es_events"),
        prepare(
            "INSERT INTO es_events
                 (position, stream, version, event_type, event_id, data, metadata, recorded_at)
             SELECT p, s, v, t, i, d, m, now()
             FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::text[], $5::uuid[],
                         $6::text[], $7::text[]) AS u(p, s, v, t, i, d, m)"
        ),
        prepare("SELECT pg_notify($1, $2)"),
        prepare("COMMIT"),
        prepare(LIVE_LEASES_SQL),
    )
    .map_err(db_err)?;

    let streams: Vec<&str> = group.iter().map(|r| r.stream.as_str()).collect();
    let ids: Vec<Uuid> = group
        .iter()
        .flat_map(|r| r.events.iter().map(|e| e.id))
        .collect();
    let (lock_params, stream_params, id_params) =
        ([&APPEND_LOCK as _], [&streams as _], [&ids as _]);
    let (_, _, versions, stored, head) = tokio::try_join!(
        client.execute(&begin, &[]),
        client.execute(&lock, &lock_params),
        client.query(&versions_q, &stream_params),
        client.query(&ids_q, &id_params),
        client.query_one(&head_q, &[]),
    )
    .map_err(db_err)?;
    let mut versions: HashMap<String, CurrentVersion> = versions
        .iter()
        .map(|r| {
            let last: Option<i64> = r.get(1);
            (r.get(0), CurrentVersion::from_last(last.map(|v| v as u64)))
        })
        .collect();
    let mut stored: HashMap<Uuid, StoredId> = stored
        .iter()
        .map(|r| {
            let id: Uuid = r.get(0);
            let s = StoredId {
                stream: r.get(1),
                version: r.get::<_, i64>(2) as u64,
                position: r.get::<_, i64>(3) as u64,
            };
            (id, s)
        })
        .collect();
    let mut position = head.get::<_, i64>(0) as u64;

    let mut rows = Rows::default();
    let mut results = Vec::with_capacity(group.len());
    for request in group {
        let current = versions
            .get(&request.stream)
            .copied()
            .unwrap_or(CurrentVersion::NoStream);
        let found: Vec<Option<StoredId>> = request
            .events
            .iter()
            .map(|e| stored.get(&e.id).cloned())
            .collect();
        let first_version = match decide(
            &request.stream,
            request.expected,
            current,
            &request.events,
            &found,
        ) {
            Ok(Decision::Write { first_version }) => first_version,
            Ok(Decision::AlreadyDone(result)) => {
                results.push(Ok(result));
                continue;
            }
            Err(e) => {
                results.push(Err(e));
                continue;
            }
        };
        let mut version = first_version;
        for event in &request.events {
            position += 1;
            rows.positions.push(position as i64);
            rows.streams.push(&request.stream);
            rows.versions.push(version as i64);
            rows.types.push(&event.event_type);
            rows.ids.push(event.id);
            rows.data.push(event.data.get());
            rows.metadata.push(event.metadata.get());
            // A retry of this very append later in the same group is recognized.
            stored.insert(
                event.id,
                StoredId {
                    stream: request.stream.clone(),
                    version,
                    position,
                },
            );
            version += 1;
        }
        versions.insert(request.stream.clone(), CurrentVersion::At(version - 1));
        results.push(Ok(AppendResult {
            stream_version: version - 1,
            position,
        }));
    }

    // The lease listing runs after the COMMIT; if it fails, the commit
    // still stands and the leases are listed again (see `run_writer`).
    let live = if rows.positions.is_empty() {
        let (committed, live) =
            tokio::join!(client.execute(&commit, &[]), client.query(&leases_q, &[]));
        committed.map_err(db_err)?;
        live
    } else {
        // If the insert fails, the pipelined COMMIT only ends the aborted
        // transaction; the insert's error is what we report.
        let head = position.to_string();
        let insert_params = rows.columns();
        let notify_params: [&(dyn ToSql + Sync); 2] = [&CHANNEL, &head];
        let (committed, live) = tokio::join!(
            async {
                tokio::try_join!(
                    client.execute(&insert, &insert_params),
                    client.execute(&notify, &notify_params),
                    client.execute(&commit, &[]),
                )
            },
            client.query(&leases_q, &[]),
        );
        committed.map_err(db_err)?;
        live
    };
    let seen_at = Instant::now();
    Ok((results, live.ok().map(|rows| (live_leases(&rows), seen_at))))
}

/// Keeps one connection listening on [`CHANNEL`] and [`APPLIED_CHANNEL`]:
/// on every notification (only a wake-up; see the module's doc), and once
/// after each (re)connection, it reads the head and the live leases'
/// applied positions from the tables ([`refresh`]); reconnects after a
/// second if the connection drops.
async fn run_listener(
    config: tokio_postgres::Config,
    head: Arc<watch::Sender<u64>>,
    acks: Arc<Acks>,
    listening: oneshot::Sender<()>,
) {
    let mut listening = Some(listening);
    loop {
        match config.connect(NoTls).await {
            Ok((client, mut connection)) => {
                // Notifications pending while a refresh runs wake one more.
                let wake = Arc::new(tokio::sync::Notify::new());
                let (woken, known) = (wake.clone(), (head.clone(), acks.clone()));
                let mut driver = tokio::spawn(async move {
                    let mut messages =
                        futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
                    while let Some(Ok(message)) = messages.next().await {
                        if let AsyncMessage::Notification(n) = message
                            && !nothing_new(n.channel(), n.payload(), &known.0, &known.1)
                        {
                            woken.notify_one();
                        }
                    }
                });
                let listen = format!("LISTEN {CHANNEL}; LISTEN {APPLIED_CHANNEL}");
                match client.batch_execute(&listen).await {
                    Ok(()) => loop {
                        if let Err(e) = refresh(&client, &head, &acks).await {
                            tracing::warn!(error = %e, "cannot read the head and the leases");
                            break;
                        }
                        if let Some(listening) = listening.take() {
                            let _ = listening.send(());
                        }
                        tokio::select! {
                            _ = wake.notified() => {}
                            _ = &mut driver => break,
                        }
                    },
                    Err(e) => tracing::warn!(error = %e, "LISTEN failed"),
                }
                driver.abort();
                tracing::warn!("postgres listener connection lost; reconnecting");
            }
            Err(e) => tracing::warn!(error = %e, "postgres listener cannot connect; retrying"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Whether a notification claims nothing this process does not know: a
/// position at or below the head, or an acknowledgement at or below what
/// was heard from that holder (this process's own commits and its own
/// holders' acknowledgements, known before they are notified). Such a
/// claim is skipped; any other wakes the listener, which reads the truth
/// from the tables. A payload can thus save a query, never move a head or
/// an acknowledgement.
fn nothing_new(channel: &str, payload: &str, head: &watch::Sender<u64>, acks: &Acks) -> bool {
    if channel == APPLIED_CHANNEL {
        let Some((holder, position)) = payload
            .split_once(' ')
            .and_then(|(h, p)| Some((h.parse::<Uuid>().ok()?, p.parse::<u64>().ok()?)))
        else {
            return false;
        };
        acks.heard_from(holder).is_some_and(|at| at >= position)
    } else {
        payload.parse::<u64>().is_ok_and(|p| p <= *head.borrow())
    }
}

/// The head, and each live lease's applied position (never past the head),
/// as the tables hold them.
const REFRESH_SQL: &str = "SELECT h.head, l.holder, least(l.applied, h.head) \
     FROM (SELECT coalesce(max(position), 0) AS head FROM es_events) h \
     LEFT JOIN es_read_leases l ON l.expires_at > clock_timestamp()";

/// Raises `head` and notes every holder's applied position in `acks`, from
/// the tables.
async fn refresh(
    client: &tokio_postgres::Client,
    head: &watch::Sender<u64>,
    acks: &Acks,
) -> Result<()> {
    let rows = client.query(REFRESH_SQL, &[]).await.map_err(db_err)?;
    for row in &rows {
        if let (Some(holder), Some(applied)) =
            (row.get::<_, Option<Uuid>>(1), row.get::<_, Option<i64>>(2))
        {
            acks.heard(holder, applied.max(0) as u64);
        }
    }
    if let Some(row) = rows.first() {
        advance(head, row.get::<_, i64>(0).max(0) as u64);
    }
    Ok(())
}

#[async_trait]
impl ReadLeases for PostgresStore {
    async fn grant(&self, holder: Uuid, ttl: Duration) -> Result<()> {
        let client = self.client().await?;
        let ttl = ttl.as_secs_f64();
        let grant: [&(dyn ToSql + Sync); 2] = [&holder, &ttl];
        tokio::try_join!(
            client.execute(
                "INSERT INTO es_read_leases (holder, expires_at) \
                 VALUES ($1, clock_timestamp() + make_interval(secs => $2)) \
                 ON CONFLICT (holder) DO UPDATE \
                 SET expires_at = EXCLUDED.expires_at, revoked = false",
                &grant,
            ),
            // Leases of replicas long gone (killed, or never given up).
            client.execute(
                "DELETE FROM es_read_leases \
                 WHERE expires_at < clock_timestamp() - interval '1 hour'",
                &[],
            ),
        )
        .map_err(db_err)?;
        Ok(())
    }

    async fn renew(&self, holder: Uuid, ttl: Duration) -> Result<bool> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "UPDATE es_read_leases SET expires_at = clock_timestamp() + make_interval(secs => $2) \
                 WHERE holder = $1 AND NOT revoked AND expires_at > clock_timestamp()",
            )
            .await
            .map_err(db_err)?;
        let renewed = client
            .execute(&stmt, &[&holder, &ttl.as_secs_f64()])
            .await
            .map_err(db_err)?;
        Ok(renewed == 1)
    }

    fn applied_here(&self, holder: Uuid, position: u64) {
        self.inner.acks.heard(holder, position);
    }

    async fn applied(&self, holder: Uuid, position: u64) -> Result<()> {
        // Simple protocol, one round trip; the values are formatted by us.
        // The row is the acknowledgement; the notification wakes writers.
        let position = clamp(position);
        let client = self.client().await?;
        client
            .batch_execute(&format!(
                "BEGIN; SET LOCAL synchronous_commit TO off; \
                 UPDATE es_read_leases SET applied = greatest(applied, {position}) \
                 WHERE holder = '{holder}'; \
                 SELECT pg_notify('{APPLIED_CHANNEL}', '{holder} {position}'); COMMIT"
            ))
            .await
            .map_err(db_err)
    }

    async fn release(&self, holder: Uuid) -> Result<()> {
        let client = self.client().await?;
        client
            .execute("DELETE FROM es_read_leases WHERE holder = $1", &[&holder])
            .await
            .map_err(db_err)?;
        Ok(())
    }
}

const SELECT_EVENT: &str = "SELECT position, stream, version, event_type, event_id, data, \
     metadata, recorded_at FROM es_events";

fn row_to_event(row: &Row) -> Result<RecordedEvent> {
    crate::row::decode_row(
        row.get::<_, i64>(0) as u64,
        row.get(1),
        row.get::<_, i64>(2) as u64,
        row.get(3),
        row.get(4),
        row.get(5),
        row.get(6),
        Some(row.get::<_, DateTime<Utc>>(7)),
    )
}

fn clamp(n: u64) -> i64 {
    n.min(i64::MAX as u64) as i64
}

#[async_trait]
impl EventStore for PostgresStore {
    async fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult> {
        submit(&self.inner.writer, stream, expected, events).await
    }

    async fn import(&self, events: Vec<RecordedEvent>) -> Result<u64> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db_err)?;
        // Under the append lock: no append interleaves, and the head read
        // here is the last one.
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&APPEND_LOCK])
            .await
            .map_err(db_err)?;
        if !tx
            .query(LIVE_LEASES_SQL, &[])
            .await
            .map_err(db_err)?
            .is_empty()
        {
            return Err(EventStoreError::InUse);
        }
        let head: i64 = tx.query_one(HEAD_SQL, &[]).await.map_err(db_err)?.get(0);
        crate::append_rules::check_import(&events, head as u64)?;
        let Some(last) = events.last().map(|e| e.position) else {
            return Ok(head as u64);
        };
        let mut rows = Rows::default();
        let mut times = Vec::with_capacity(events.len());
        for e in &events {
            rows.positions.push(e.position as i64);
            rows.streams.push(&e.stream);
            rows.versions.push(e.version.min(i64::MAX as u64) as i64);
            rows.types.push(&e.event_type);
            rows.ids.push(e.id);
            rows.data.push(e.data.get());
            rows.metadata.push(e.metadata.get());
            times.push(e.recorded_at);
        }
        tx.execute(
            "INSERT INTO es_events
                 (position, stream, version, event_type, event_id, data, metadata, recorded_at)
             SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::text[],
                                  $5::uuid[], $6::text[], $7::text[], $8::timestamptz[])",
            &[rows.columns().as_slice(), &[&times]].concat(),
        )
        .await
        .map_err(db_err)?;
        tx.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &last.to_string()])
            .await
            .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(last)
    }

    async fn read_stream(&self, stream: &str, from_version: u64) -> Result<Vec<RecordedEvent>> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&format!(
                "{SELECT_EVENT} WHERE stream = $1 AND version >= $2 ORDER BY version"
            ))
            .await
            .map_err(db_err)?;
        let rows = client
            .query(&stmt, &[&stream, &clamp(from_version)])
            .await
            .map_err(db_err)?;
        rows.iter().map(row_to_event).collect()
    }

    async fn read_all(&self, from_position: u64, limit: usize) -> Result<Vec<RecordedEvent>> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&format!(
                "{SELECT_EVENT} WHERE position >= $1 ORDER BY position LIMIT $2"
            ))
            .await
            .map_err(db_err)?;
        let rows = client
            .query(&stmt, &[&clamp(from_position), &clamp(limit as u64)])
            .await
            .map_err(db_err)?;
        rows.iter().map(row_to_event).collect()
    }

    async fn read_positions(&self, positions: &[u64]) -> Result<Vec<RecordedEvent>> {
        let wanted: Vec<i64> = positions.iter().map(|p| clamp(*p)).collect();
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&format!(
                "{SELECT_EVENT} WHERE position = ANY($1) ORDER BY position"
            ))
            .await
            .map_err(db_err)?;
        let rows = client.query(&stmt, &[&wanted]).await.map_err(db_err)?;
        rows.iter().map(row_to_event).collect()
    }

    async fn secret(&self, name: &str) -> Result<[u8; 32]> {
        let fresh = crate::fresh_secret()?;
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO es_secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
                &[&name, &&fresh[..]],
            )
            .await
            .map_err(db_err)?;
        let value: Vec<u8> = client
            .query_one("SELECT value FROM es_secrets WHERE name = $1", &[&name])
            .await
            .map_err(db_err)?
            .get(0);
        crate::secret_of(&value)
    }

    async fn head_position(&self) -> Result<u64> {
        // Prepared once per connection: linearizable reads ask this often.
        let client = self.client().await?;
        let stmt = client.prepare_cached(HEAD_SQL).await.map_err(db_err)?;
        let head: i64 = client.query_one(&stmt, &[]).await.map_err(db_err)?.get(0);
        Ok(head as u64)
    }

    fn subscribe_all(&self, from_position: u64) -> EventStream {
        catch_up_then_live(self.clone(), from_position, self.inner.head.clone())
    }

    fn stats(&self) -> Option<Arc<StoreStats>> {
        Some(self.inner.writer.stats.clone())
    }

    fn read_leases(&self) -> Option<Arc<dyn ReadLeases>> {
        Some(Arc::new(self.clone()))
    }

    fn groups(&self) -> Option<Arc<dyn crate::groups::Groups>> {
        Some(Arc::new(self.clone()))
    }
}
