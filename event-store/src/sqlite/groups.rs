//! Consumer groups' tables in the SQLite file (see [`crate::groups`]);
//! times are this host's clock, in milliseconds.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};
use uuid::Uuid;

use super::{BACKEND, SqliteStore, db_err, open_write_connection};
use crate::error::{EventStoreError, Result};
use crate::groups::{GroupInfo, GroupSpec, GroupState, Groups, Parked, spec_json, spec_of};

const TABLES: &str = "
    PRAGMA foreign_keys = ON;
    CREATE TABLE IF NOT EXISTS es_groups (
        name TEXT PRIMARY KEY,
        spec TEXT NOT NULL
    );
    CREATE TABLE IF NOT EXISTS es_group_partitions (
        name       TEXT    NOT NULL REFERENCES es_groups (name) ON DELETE CASCADE,
        part       INTEGER NOT NULL,
        position   INTEGER NOT NULL,
        owner      TEXT,
        expires_at INTEGER,
        PRIMARY KEY (name, part)
    );
    CREATE TABLE IF NOT EXISTS es_group_members (
        name       TEXT    NOT NULL REFERENCES es_groups (name) ON DELETE CASCADE,
        member     TEXT    NOT NULL,
        expires_at INTEGER NOT NULL,
        PRIMARY KEY (name, member)
    );
    CREATE TABLE IF NOT EXISTS es_group_parked (
        name       TEXT    NOT NULL REFERENCES es_groups (name) ON DELETE CASCADE,
        position   INTEGER NOT NULL,
        event_id   TEXT    NOT NULL,
        part       INTEGER NOT NULL,
        deliveries INTEGER NOT NULL,
        parked_at  INTEGER NOT NULL,
        replay     INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (name, position)
    );";

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

fn until(ttl: Duration) -> i64 {
    now_ms().saturating_add(ttl.as_millis().min(i64::MAX as u128) as i64)
}

fn parked_of(row: &rusqlite::Row<'_>) -> rusqlite::Result<Parked> {
    let id: String = row.get(1)?;
    Ok(Parked {
        position: row.get::<_, i64>(0)? as u64,
        event_id: Uuid::parse_str(&id).unwrap_or_default(),
        partition: row.get::<_, i64>(2)? as u32,
        deliveries: row.get::<_, i64>(3)? as u32,
        parked_at: DateTime::from_timestamp_millis(row.get(4)?).unwrap_or_default(),
        replay: row.get::<_, i64>(5)? != 0,
    })
}

const PARKED_COLUMNS: &str = "position, event_id, part, deliveries, parked_at, replay";

impl SqliteStore {
    /// Runs `f` in one transaction on the groups' connection, on the
    /// blocking pool.
    async fn with_groups<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&rusqlite::Transaction<'_>) -> rusqlite::Result<T> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let mut slot = inner.groups.lock().unwrap_or_else(|p| p.into_inner());
            if slot.is_none() {
                let conn: Connection = open_write_connection(&inner.path)?;
                conn.execute_batch(TABLES).map_err(db_err)?;
                *slot = Some(conn);
            }
            let conn = slot.as_mut().ok_or(EventStoreError::Closed)?;
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(db_err)?;
            let out = f(&tx).map_err(db_err)?;
            tx.commit().map_err(db_err)?;
            Ok(out)
        })
        .await
        .map_err(|e| EventStoreError::backend(BACKEND, e))?
    }
}

#[async_trait]
impl Groups for SqliteStore {
    async fn open_group(&self, name: &str, spec: &GroupSpec) -> Result<GroupSpec> {
        let (name, json, spec) = (name.to_owned(), spec_json(spec), spec.clone());
        let stored = self
            .with_groups(move |tx| {
                let made = tx.execute(
                    "INSERT OR IGNORE INTO es_groups (name, spec) VALUES (?1, ?2)",
                    params![name, json],
                )?;
                if made == 1 {
                    for part in 0..spec.partitions.max(1) {
                        tx.execute(
                            "INSERT INTO es_group_partitions (name, part, position) VALUES (?1, ?2, ?3)",
                            params![name, part, spec.start.min(i64::MAX as u64) as i64],
                        )?;
                    }
                }
                tx.query_row("SELECT spec FROM es_groups WHERE name = ?1", params![name], |r| {
                    r.get::<_, String>(0)
                })
            })
            .await?;
        spec_of(&stored)
    }

    async fn heartbeat(
        &self,
        name: &str,
        members: &[Uuid],
        ttl: Duration,
    ) -> Result<Option<Vec<Uuid>>> {
        let (name, members) = (name.to_owned(), members.to_vec());
        self.with_groups(move |tx| {
            let exists = tx
                .query_row(
                    "SELECT 1 FROM es_groups WHERE name = ?1",
                    params![name],
                    |_| Ok(()),
                )
                .optional()?;
            if exists.is_none() {
                return Ok(None);
            }
            let expires = until(ttl);
            for m in &members {
                tx.execute(
                    "INSERT INTO es_group_members (name, member, expires_at) VALUES (?1, ?2, ?3) \
                     ON CONFLICT (name, member) DO UPDATE SET expires_at = excluded.expires_at",
                    params![name, m.to_string(), expires],
                )?;
            }
            tx.execute(
                "DELETE FROM es_group_members WHERE name = ?1 AND expires_at < ?2",
                params![name, now_ms()],
            )?;
            let mut stmt =
                tx.prepare("SELECT member FROM es_group_members WHERE name = ?1 ORDER BY member")?;
            let rows = stmt.query_map(params![name], |r| r.get::<_, String>(0))?;
            let mut live = Vec::new();
            for row in rows {
                if let Ok(id) = Uuid::parse_str(&row?) {
                    live.push(id);
                }
            }
            live.sort();
            Ok(Some(live))
        })
        .await
    }

    async fn leave(&self, name: &str, member: Uuid) -> Result<()> {
        let name = name.to_owned();
        self.with_groups(move |tx| {
            tx.execute(
                "DELETE FROM es_group_members WHERE name = ?1 AND member = ?2",
                params![name, member.to_string()],
            )
            .map(|_| ())
        })
        .await
    }

    async fn claim(
        &self,
        name: &str,
        owner: Uuid,
        partitions: &[u32],
        ttl: Duration,
    ) -> Result<Vec<(u32, u64)>> {
        let (name, partitions) = (name.to_owned(), partitions.to_vec());
        self.with_groups(move |tx| {
            let (owner, now, expires) = (owner.to_string(), now_ms(), until(ttl));
            let mut taken = Vec::new();
            for part in partitions {
                let position: Option<i64> = tx
                    .query_row(
                        "UPDATE es_group_partitions SET owner = ?2, expires_at = ?4 \
                         WHERE name = ?1 AND part = ?3 \
                           AND (owner IS NULL OR owner = ?2 OR expires_at < ?5) \
                         RETURNING position",
                        params![name, owner, part, expires, now],
                        |r| r.get(0),
                    )
                    .optional()?;
                if let Some(p) = position {
                    taken.push((part, p as u64));
                }
            }
            Ok(taken)
        })
        .await
    }

    async fn keep(
        &self,
        name: &str,
        owner: Uuid,
        checkpoints: &[(u32, u64)],
        ttl: Duration,
    ) -> Result<Vec<u32>> {
        let (name, checkpoints) = (name.to_owned(), checkpoints.to_vec());
        self.with_groups(move |tx| {
            let (owner, expires) = (owner.to_string(), until(ttl));
            let mut kept = Vec::new();
            for (part, position) in checkpoints {
                let n = tx.execute(
                    "UPDATE es_group_partitions SET position = max(position, ?4), expires_at = ?5 \
                     WHERE name = ?1 AND owner = ?2 AND part = ?3",
                    params![
                        name,
                        owner,
                        part,
                        position.min(i64::MAX as u64) as i64,
                        expires
                    ],
                )?;
                if n == 1 {
                    kept.push(part);
                }
            }
            Ok(kept)
        })
        .await
    }

    async fn release(&self, name: &str, owner: Uuid, checkpoints: &[(u32, u64)]) -> Result<()> {
        let (name, checkpoints) = (name.to_owned(), checkpoints.to_vec());
        self.with_groups(move |tx| {
            let owner = owner.to_string();
            for (part, position) in checkpoints {
                tx.execute(
                    "UPDATE es_group_partitions \
                     SET position = max(position, ?4), owner = NULL, expires_at = NULL \
                     WHERE name = ?1 AND owner = ?2 AND part = ?3",
                    params![name, owner, part, position.min(i64::MAX as u64) as i64],
                )?;
            }
            Ok(())
        })
        .await
    }

    async fn park(&self, name: &str, parked: &Parked) -> Result<()> {
        let (name, p) = (name.to_owned(), parked.clone());
        self.with_groups(move |tx| {
            tx.execute(
                "INSERT INTO es_group_parked (name, position, event_id, part, deliveries, parked_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
                 ON CONFLICT (name, position) DO UPDATE \
                 SET deliveries = excluded.deliveries, parked_at = excluded.parked_at, replay = 0",
                params![
                    name,
                    p.position.min(i64::MAX as u64) as i64,
                    p.event_id.to_string(),
                    p.partition,
                    p.deliveries,
                    p.parked_at.timestamp_millis()
                ],
            )
            .map(|_| ())
        })
        .await
    }

    async fn unpark(&self, name: &str, position: u64) -> Result<()> {
        let name = name.to_owned();
        self.with_groups(move |tx| {
            tx.execute(
                "DELETE FROM es_group_parked WHERE name = ?1 AND position = ?2",
                params![name, position.min(i64::MAX as u64) as i64],
            )
            .map(|_| ())
        })
        .await
    }

    async fn parked(&self, name: &str, after: u64, limit: usize) -> Result<Vec<Parked>> {
        let name = name.to_owned();
        self.with_groups(move |tx| {
            let mut stmt = tx.prepare(&format!(
                "SELECT {PARKED_COLUMNS} FROM es_group_parked \
                 WHERE name = ?1 AND position > ?2 ORDER BY position LIMIT ?3"
            ))?;
            let rows = stmt.query_map(
                params![
                    name,
                    after.min(i64::MAX as u64) as i64,
                    limit.min(i64::MAX as usize) as i64
                ],
                parked_of,
            )?;
            rows.collect()
        })
        .await
    }

    async fn replay(&self, name: &str, positions: &[u64]) -> Result<u64> {
        let (name, positions) = (name.to_owned(), positions.to_vec());
        self.with_groups(move |tx| {
            if positions.is_empty() {
                return tx
                    .execute(
                        "UPDATE es_group_parked SET replay = 1 WHERE name = ?1",
                        params![name],
                    )
                    .map(|n| n as u64);
            }
            let mut marked = 0;
            for p in positions {
                marked += tx.execute(
                    "UPDATE es_group_parked SET replay = 1 WHERE name = ?1 AND position = ?2",
                    params![name, p.min(i64::MAX as u64) as i64],
                )? as u64;
            }
            Ok(marked)
        })
        .await
    }

    async fn take_replays(
        &self,
        name: &str,
        partitions: &[u32],
        limit: usize,
    ) -> Result<Vec<Parked>> {
        let (name, partitions) = (name.to_owned(), partitions.to_vec());
        self.with_groups(move |tx| {
            let mut taken = Vec::new();
            {
                let mut stmt = tx.prepare(&format!(
                    "SELECT {PARKED_COLUMNS} FROM es_group_parked \
                     WHERE name = ?1 AND replay != 0 ORDER BY position"
                ))?;
                for p in stmt.query_map(params![name], parked_of)? {
                    let p = p?;
                    if partitions.contains(&p.partition) && taken.len() < limit {
                        taken.push(p);
                    }
                }
            }
            for p in &taken {
                tx.execute(
                    "UPDATE es_group_parked SET replay = 0 WHERE name = ?1 AND position = ?2",
                    params![name, p.position as i64],
                )?;
            }
            Ok(taken)
        })
        .await
    }

    async fn list(&self) -> Result<Vec<GroupInfo>> {
        let rows = self
            .with_groups(|tx| {
                let now = now_ms();
                let mut stmt = tx.prepare(
                    "SELECT g.name, g.spec, \
                       (SELECT coalesce(min(position), 0) FROM es_group_partitions p WHERE p.name = g.name), \
                       (SELECT count(*) FROM es_group_members m WHERE m.name = g.name AND m.expires_at >= ?1), \
                       (SELECT count(*) FROM es_group_parked k WHERE k.name = g.name) \
                     FROM es_groups g ORDER BY g.name",
                )?;
                let rows = stmt.query_map(params![now], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, i64>(3)?,
                        r.get::<_, i64>(4)?,
                    ))
                })?;
                rows.collect::<rusqlite::Result<Vec<_>>>()
            })
            .await?;
        rows.into_iter()
            .map(|(name, spec, checkpoint, members, parked)| {
                Ok(GroupInfo {
                    name,
                    spec: spec_of(&spec)?,
                    checkpoint: checkpoint as u64,
                    members: members as u64,
                    parked: parked as u64,
                })
            })
            .collect()
    }

    async fn delete(&self, name: &str) -> Result<bool> {
        let name = name.to_owned();
        self.with_groups(move |tx| {
            tx.execute("DELETE FROM es_groups WHERE name = ?1", params![name])
                .map(|n| n == 1)
        })
        .await
    }

    async fn export(&self) -> Result<Vec<GroupState>> {
        let rows = self
            .with_groups(|tx| {
                let mut groups = Vec::new();
                let mut stmt = tx.prepare("SELECT name, spec FROM es_groups ORDER BY name")?;
                let names = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
                for g in names {
                    let (name, spec) = g?;
                    let mut parts = tx.prepare(
                        "SELECT part, position FROM es_group_partitions WHERE name = ?1 ORDER BY part",
                    )?;
                    let checkpoints = parts
                        .query_map(params![name], |r| {
                            Ok((r.get::<_, i64>(0)? as u32, r.get::<_, i64>(1)? as u64))
                        })?
                        .collect::<rusqlite::Result<Vec<_>>>()?;
                    let mut parked = tx.prepare(&format!(
                        "SELECT {PARKED_COLUMNS} FROM es_group_parked WHERE name = ?1 ORDER BY position"
                    ))?;
                    let parked = parked
                        .query_map(params![name], parked_of)?
                        .collect::<rusqlite::Result<Vec<_>>>()?;
                    groups.push((name, spec, checkpoints, parked));
                }
                Ok(groups)
            })
            .await?;
        rows.into_iter()
            .map(|(name, spec, checkpoints, parked)| {
                Ok(GroupState {
                    name,
                    spec: spec_of(&spec)?,
                    checkpoints,
                    parked,
                })
            })
            .collect()
    }

    async fn import(&self, state: &GroupState) -> Result<bool> {
        let state = state.clone();
        self.with_groups(move |tx| {
            let made = tx.execute(
                "INSERT OR IGNORE INTO es_groups (name, spec) VALUES (?1, ?2)",
                params![state.name, spec_json(&state.spec)],
            )?;
            if made == 0 {
                return Ok(false);
            }
            for (part, position) in &state.checkpoints {
                tx.execute(
                    "INSERT INTO es_group_partitions (name, part, position) VALUES (?1, ?2, ?3)",
                    params![
                        state.name,
                        part,
                        position.min(&(i64::MAX as u64)).to_owned() as i64
                    ],
                )?;
            }
            for p in &state.parked {
                tx.execute(
                    "INSERT INTO es_group_parked \
                     (name, position, event_id, part, deliveries, parked_at, replay) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    params![
                        state.name,
                        p.position.min(i64::MAX as u64) as i64,
                        p.event_id.to_string(),
                        p.partition,
                        p.deliveries,
                        p.parked_at.timestamp_millis(),
                        i64::from(p.replay)
                    ],
                )?;
            }
            Ok(true)
        })
        .await
    }
}
