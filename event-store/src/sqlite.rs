//! The embedded backend: one SQLite file in WAL mode.
//!
//! - **Durability**: `synchronous=FULL`, so a commit is on disk when `append`
//!   returns.
//! - **Group commit**: one writer thread owns the write connection. It takes
//!   every append waiting in its queue and commits them in one transaction,
//!   each inside its own savepoint (so one failed append leaves the others
//!   intact), then answers each caller. Under load, one fsync serves many
//!   appends.
//! - **Never blocks the async executor**: writes go to the writer thread,
//!   reads run on `spawn_blocking` with a small pool of read-only connections.
//! - **Global order**: SQLite allows one writer at a time, even across
//!   processes, so positions (the rowid) become visible in increasing order.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::config::DbConfig;
use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};
use tokio::sync::{mpsc, watch};
use uuid::Uuid;

use crate::append_rules::{Decision, StoredId, decide};
use crate::error::{EventStoreError, Result};
use crate::group::{AppendRequest, MAX_GROUP, Queue, answer, queue, submit};
use crate::model::{AppendResult, CurrentVersion, ExpectedVersion, NewEvent, RecordedEvent};
use crate::stats::StoreStats;
use crate::store::{EventStore, EventStream};
use crate::subscription::{advance, catch_up_then_live};

mod groups;

const BACKEND: &str = "sqlite";
/// The most idle read connections kept open.
const MAX_IDLE_READERS: usize = 8;

fn db_err(e: rusqlite::Error) -> EventStoreError {
    EventStoreError::backend(BACKEND, e)
}

/// An event store in one SQLite file. Cheap to clone: clones share the file,
/// the writer thread and the read connections.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    writer: Queue,
    readers: Mutex<Vec<Connection>>,
    head: watch::Receiver<u64>,
    /// Raised by the writer thread and by imports.
    head_tx: Arc<watch::Sender<u64>>,
    /// The connection imports write through, once one has run.
    importer: Mutex<Option<Connection>>,
    /// The connection consumer groups' tables are written through, once
    /// one is used.
    groups: Mutex<Option<Connection>>,
}

impl SqliteStore {
    /// Opens (creating if needed, with its parent directories) the store at `path`.
    pub async fn open(path: impl Into<PathBuf>) -> Result<Self> {
        let path = path.into();
        let (conn, head_position) = {
            let path = path.clone();
            tokio::task::spawn_blocking(move || open_writer(&path))
                .await
                .map_err(|e| EventStoreError::backend(BACKEND, e))??
        };
        let (head_tx, head_rx) = watch::channel(head_position);
        let head_tx = Arc::new(head_tx);
        let (writer, rx) = queue();
        let stats = writer.stats.clone();
        let writer_head = head_tx.clone();
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || run_writer(conn, rx, &writer_head, &stats))
            .map_err(|e| EventStoreError::backend(BACKEND, e))?;
        tracing::info!(path = %path.display(), head_position, "opened sqlite event store");
        Ok(Self {
            inner: Arc::new(Inner {
                path,
                writer,
                readers: Mutex::new(Vec::new()),
                head: head_rx,
                head_tx,
                importer: Mutex::new(None),
                groups: Mutex::new(None),
            }),
        })
    }

    /// Runs `f` with a read connection on the blocking pool.
    async fn with_reader<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let pooled = inner
                .readers
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .pop();
            let conn = match pooled {
                Some(c) => c,
                None => open_reader(&inner.path)?,
            };
            let out = f(&conn);
            let mut idle = inner.readers.lock().unwrap_or_else(|p| p.into_inner());
            if idle.len() < MAX_IDLE_READERS {
                idle.push(conn);
            }
            out
        })
        .await
        .map_err(|e| EventStoreError::backend(BACKEND, e))?
    }
}

fn open_writer(path: &Path) -> Result<(Connection, u64)> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| EventStoreError::backend(BACKEND, e))?;
    }
    let conn = open_write_connection(path)?;
    let head = head_of(&conn)?;
    owner_only(path);
    Ok((conn, head))
}

/// Makes the SQLite database at `path`, its `-wal` and its `-shm` readable
/// and writable by their owner only (files of earlier releases were 0644:
/// anyone on the host could read password hashes). Logged, not fatal, if
/// it cannot (a file of another owner).
pub fn owner_only(path: &Path) {
    #[cfg(unix)]
    for suffix in ["", "-wal", "-shm"] {
        use std::os::unix::fs::PermissionsExt;
        let mut file = path.as_os_str().to_owned();
        file.push(suffix);
        let file = Path::new(&file);
        let Ok(meta) = std::fs::metadata(file) else {
            continue;
        };
        if meta.permissions().mode() & 0o077 != 0
            && let Err(e) = std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o600))
        {
            tracing::warn!(path = %file.display(), error = %e, "cannot make a store file the owner's only");
        }
    }
}

/// Opens a write connection to `path` (the schema made if needed) and
/// returns it with the head position.
fn open_write_connection(path: &Path) -> Result<Connection> {
    let conn = Connection::open(path).map_err(db_err)?;
    configure(&conn)?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = FULL;
         CREATE TABLE IF NOT EXISTS events (
             position    INTEGER PRIMARY KEY,
             stream      TEXT    NOT NULL,
             version     INTEGER NOT NULL,
             event_type  TEXT    NOT NULL,
             event_id    BLOB    NOT NULL UNIQUE,
             data        TEXT    NOT NULL,
             metadata    TEXT    NOT NULL,
             recorded_at INTEGER NOT NULL,
             UNIQUE (stream, version)
         );",
    )
    .map_err(db_err)?;
    Ok(conn)
}

fn head_of(conn: &Connection) -> Result<u64> {
    conn.query_row("SELECT coalesce(max(position), 0) FROM events", [], |r| {
        r.get::<_, i64>(0)
    })
    .map(|p| p as u64)
    .map_err(db_err)
}

/// Writes imported events in one transaction (see [`EventStore::import`]).
fn import_on(conn: &mut Connection, events: &[RecordedEvent]) -> Result<u64> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(db_err)?;
    let head = head_of(&tx)?;
    crate::append_rules::check_import(events, head)?;
    {
        let mut insert = tx
            .prepare_cached(
                "INSERT INTO events (position, stream, version, event_type, event_id, data, metadata, recorded_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )
            .map_err(db_err)?;
        for e in events {
            insert
                .execute(params![
                    e.position as i64,
                    e.stream,
                    e.version.min(i64::MAX as u64) as i64,
                    e.event_type,
                    e.id.as_bytes(),
                    e.data.get(),
                    e.metadata.get(),
                    e.recorded_at.timestamp_micros(),
                ])
                .map_err(db_err)?;
        }
    }
    tx.commit().map_err(db_err)?;
    Ok(events.last().map_or(head, |e| e.position))
}

fn open_reader(path: &Path) -> Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(db_err)?;
    configure(&conn)?;
    Ok(conn)
}

/// What every connection of the store is set to:
/// - a wait of up to 10 s for another's lock;
/// - the query planner's stability guarantee (QPSG). Without it, SQLite
///   re-prepares a statement whenever a value newly bound to it might
///   change its plan: the append's `max(version) ... WHERE stream = ?1`
///   was parsed and planned again on every append, and the reads' `LIMIT
///   ?2` on every read with another limit (a fifth of the writer thread's
///   time under POST load). Our statements have one good plan whatever
///   the values.
fn configure(conn: &Connection) -> Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .map_err(db_err)?;
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)
        .map_err(db_err)?;
    Ok(())
}

/// The writer thread: group commits until every store handle is dropped.
fn run_writer(
    mut conn: Connection,
    mut rx: mpsc::UnboundedReceiver<AppendRequest>,
    head: &watch::Sender<u64>,
    stats: &StoreStats,
) {
    let mut group = Vec::with_capacity(MAX_GROUP);
    while let Some(first) = rx.blocking_recv() {
        group.push(first);
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(next) => group.push(next),
                Err(_) => break,
            }
        }
        let results = commit_group(&mut conn, &group);
        answer(&mut group, results, head, stats);
    }
    tracing::debug!("sqlite writer stopped");
}

/// Commits every append of `group` that passes its checks in one transaction.
///
/// Each append runs inside its own savepoint, so a refused one (wrong
/// version, duplicate id) leaves the others of the group intact. If the
/// transaction itself fails, every append of the group fails with it.
fn commit_group(conn: &mut Connection, group: &[AppendRequest]) -> Vec<Result<AppendResult>> {
    let outcome = (|| {
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db_err)?;
        let now = Utc::now();
        let mut results = Vec::with_capacity(group.len());
        // Prepared once per connection, not parsed per append.
        let run = |sql: &str| tx.prepare_cached(sql).and_then(|mut s| s.execute([]));
        for request in group {
            run("SAVEPOINT append").map_err(db_err)?;
            let result = append_one(&tx, request, now);
            if result.is_err() {
                run("ROLLBACK TO append").map_err(db_err)?;
            }
            run("RELEASE append").map_err(db_err)?;
            results.push(result);
        }
        tx.commit().map_err(db_err)?;
        Ok(results)
    })();
    outcome.unwrap_or_else(|e: EventStoreError| group.iter().map(|_| Err(e.clone())).collect())
}

fn append_one(
    conn: &Connection,
    request: &AppendRequest,
    now: DateTime<Utc>,
) -> Result<AppendResult> {
    let AppendRequest {
        stream,
        expected,
        events,
        ..
    } = request;
    let last: Option<i64> = conn
        .prepare_cached(LAST_VERSION)
        .and_then(|mut s| s.query_row([stream], |r| r.get(0)))
        .map_err(db_err)?;
    let current = CurrentVersion::from_last(last.map(|v| v as u64));
    let mut lookup = conn
        .prepare_cached("SELECT stream, version, position FROM events WHERE event_id = ?1")
        .map_err(db_err)?;
    let stored = events
        .iter()
        .map(|e| {
            lookup
                .query_row([e.id.as_bytes()], |r| {
                    Ok(StoredId {
                        stream: r.get(0)?,
                        version: r.get::<_, i64>(1)? as u64,
                        position: r.get::<_, i64>(2)? as u64,
                    })
                })
                .optional()
        })
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(db_err)?;
    let first_version = match decide(stream, *expected, current, events, &stored)? {
        Decision::AlreadyDone(result) => return Ok(result),
        Decision::Write { first_version } => first_version,
    };
    let mut insert = conn
        .prepare_cached(
            "INSERT INTO events (stream, version, event_type, event_id, data, metadata, recorded_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )
        .map_err(db_err)?;
    let mut position = 0;
    for (i, e) in events.iter().enumerate() {
        insert
            .execute(params![
                stream,
                (first_version + i as u64) as i64,
                e.event_type,
                e.id.as_bytes(),
                e.data.get(),
                e.metadata.get(),
                now.timestamp_micros(),
            ])
            .map_err(db_err)?;
        position = conn.last_insert_rowid() as u64;
    }
    Ok(AppendResult {
        stream_version: first_version + events.len() as u64 - 1,
        position,
    })
}

/// A stream's last version (none if it has no event).
const LAST_VERSION: &str = "SELECT max(version) FROM events WHERE stream = ?1";

const SELECT_EVENT: &str = "SELECT position, stream, version, event_type, event_id, data, metadata, recorded_at FROM events";

fn row_to_event(row: &rusqlite::Row<'_>) -> rusqlite::Result<Result<RecordedEvent>> {
    let position = row.get::<_, i64>(0)? as u64;
    let stream: String = row.get(1)?;
    let version = row.get::<_, i64>(2)? as u64;
    let event_type: String = row.get(3)?;
    let id: [u8; 16] = row.get(4)?;
    let data: String = row.get(5)?;
    let metadata: String = row.get(6)?;
    let micros: i64 = row.get(7)?;
    let recorded_at = DateTime::from_timestamp_micros(micros);
    Ok(crate::row::decode_row(
        position,
        stream,
        version,
        event_type,
        Uuid::from_bytes(id),
        data,
        metadata,
        recorded_at,
    ))
}

fn query_events(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<RecordedEvent>> {
    let mut stmt = conn.prepare_cached(sql).map_err(db_err)?;
    let rows = stmt.query_map(params, row_to_event).map_err(db_err)?;
    rows.map(|r| r.map_err(db_err)?).collect()
}

#[async_trait]
impl EventStore for SqliteStore {
    async fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult> {
        submit(&self.inner.writer, stream, expected, events).await
    }

    async fn import(&self, events: Vec<RecordedEvent>) -> Result<u64> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let mut importer = inner.importer.lock().unwrap_or_else(|p| p.into_inner());
            let conn = match importer.as_mut() {
                Some(conn) => conn,
                None => importer.insert(open_write_connection(&inner.path)?),
            };
            let head = import_on(conn, &events)?;
            advance(&inner.head_tx, head);
            Ok(head)
        })
        .await
        .map_err(|e| EventStoreError::backend(BACKEND, e))?
    }

    async fn read_stream(&self, stream: &str, from_version: u64) -> Result<Vec<RecordedEvent>> {
        let stream = stream.to_owned();
        self.with_reader(move |conn| {
            query_events(
                conn,
                &format!("{SELECT_EVENT} WHERE stream = ?1 AND version >= ?2 ORDER BY version"),
                params![stream, from_version.min(i64::MAX as u64) as i64],
            )
        })
        .await
    }

    async fn read_all(&self, from_position: u64, limit: usize) -> Result<Vec<RecordedEvent>> {
        self.with_reader(move |conn| {
            query_events(
                conn,
                &format!("{SELECT_EVENT} WHERE position >= ?1 ORDER BY position LIMIT ?2"),
                params![
                    from_position.min(i64::MAX as u64) as i64,
                    limit.min(i64::MAX as usize) as i64
                ],
            )
        })
        .await
    }

    async fn read_positions(&self, positions: &[u64]) -> Result<Vec<RecordedEvent>> {
        let mut wanted: Vec<i64> = positions
            .iter()
            .map(|p| (*p).min(i64::MAX as u64) as i64)
            .collect();
        wanted.sort_unstable();
        wanted.dedup();
        self.with_reader(move |conn| {
            let mut found = Vec::with_capacity(wanted.len());
            // SQLite binds at most 32,766 parameters: a few hundred a query.
            for chunk in wanted.chunks(500) {
                let marks = vec!["?"; chunk.len()].join(",");
                let sql = format!("{SELECT_EVENT} WHERE position IN ({marks}) ORDER BY position");
                found.extend(query_events(
                    conn,
                    &sql,
                    rusqlite::params_from_iter(chunk.iter()),
                )?);
            }
            Ok(found)
        })
        .await
    }

    async fn secret(&self, name: &str) -> Result<[u8; 32]> {
        let (path, name) = (self.inner.path.clone(), name.to_owned());
        let fresh = crate::fresh_secret()?;
        tokio::task::spawn_blocking(move || {
            let conn = open_write_connection(&path)?;
            conn.execute_batch(
                "CREATE TABLE IF NOT EXISTS es_secrets (name TEXT PRIMARY KEY, value BLOB NOT NULL)",
            )
            .map_err(db_err)?;
            conn.execute(
                "INSERT OR IGNORE INTO es_secrets (name, value) VALUES (?1, ?2)",
                params![name, &fresh[..]],
            )
            .map_err(db_err)?;
            let value: Vec<u8> = conn
                .query_row("SELECT value FROM es_secrets WHERE name = ?1", params![name], |r| {
                    r.get(0)
                })
                .map_err(db_err)?;
            crate::secret_of(&value)
        })
        .await
        .map_err(|e| EventStoreError::backend(BACKEND, e))?
    }

    async fn head_position(&self) -> Result<u64> {
        self.with_reader(|conn| {
            conn.query_row("SELECT coalesce(max(position), 0) FROM events", [], |r| {
                r.get::<_, i64>(0)
            })
            .map(|p| p as u64)
            .map_err(db_err)
        })
        .await
    }

    /// One process owns an SQLite store: every write goes through it.
    fn shared(&self) -> bool {
        false
    }

    fn subscribe_all(&self, from_position: u64) -> EventStream {
        catch_up_then_live(self.clone(), from_position, self.inner.head.clone())
    }

    fn stats(&self) -> Option<Arc<StoreStats>> {
        Some(self.inner.writer.stats.clone())
    }

    fn groups(&self) -> Option<Arc<dyn crate::groups::Groups>> {
        Some(Arc::new(self.clone()))
    }
}

#[cfg(test)]
mod tests {
    use rusqlite::StatementStatus;

    use super::*;

    /// A statement is planned once per connection: binding another stream,
    /// or another limit, does not make SQLite prepare it again.
    #[test]
    fn new_values_do_not_prepare_a_statement_again() {
        let dir = tempfile::tempdir().expect("a directory");
        let path = dir.path().join("store.db");
        let writer = open_write_connection(&path).expect("opens");
        let reader = open_reader(&path).expect("opens");
        let read = format!("{SELECT_EVENT} WHERE position >= ?1 ORDER BY position LIMIT ?2");
        for n in 1..=20_i64 {
            let stream = format!("movie-{n}");
            let last: Option<i64> = writer
                .prepare_cached(LAST_VERSION)
                .and_then(|mut s| s.query_row([&stream], |r| r.get(0)))
                .expect("reads");
            assert_eq!(last, None);
            query_events(&reader, &read, params![n, n]).expect("reads");
        }
        for (conn, sql) in [(&writer, LAST_VERSION), (&reader, read.as_str())] {
            let statement = conn.prepare_cached(sql).expect("cached");
            assert_eq!(statement.get_status(StatementStatus::Run), 20);
            assert_eq!(statement.get_status(StatementStatus::RePrepare), 0, "{sql}");
        }
    }
}
