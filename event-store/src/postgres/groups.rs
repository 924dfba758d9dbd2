//! Consumer groups' tables in PostgreSQL (see [`crate::groups`]); lease
//! and membership times are the server's clock.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{PostgresStore, clamp, db_err};
use crate::error::Result;
use crate::groups::{GroupInfo, GroupSpec, GroupState, Groups, Parked, spec_json, spec_of};

/// The schema, one migration (see `MIGRATIONS`).
pub(super) const TABLES: &str = "
    CREATE TABLE es_groups (
        name       text        PRIMARY KEY,
        spec       text        NOT NULL,
        created_at timestamptz NOT NULL DEFAULT clock_timestamp()
    );
    CREATE TABLE es_group_partitions (
        name       text    NOT NULL REFERENCES es_groups (name) ON DELETE CASCADE,
        part       integer NOT NULL,
        position   bigint  NOT NULL,
        owner      uuid,
        expires_at timestamptz,
        PRIMARY KEY (name, part)
    );
    CREATE TABLE es_group_members (
        name       text        NOT NULL REFERENCES es_groups (name) ON DELETE CASCADE,
        member     uuid        NOT NULL,
        expires_at timestamptz NOT NULL,
        PRIMARY KEY (name, member)
    );
    CREATE TABLE es_group_parked (
        name       text        NOT NULL REFERENCES es_groups (name) ON DELETE CASCADE,
        position   bigint      NOT NULL,
        event_id   uuid        NOT NULL,
        part       integer     NOT NULL,
        deliveries integer     NOT NULL,
        parked_at  timestamptz NOT NULL,
        replay     boolean     NOT NULL DEFAULT false,
        PRIMARY KEY (name, position)
    )";

fn parts(partitions: &[u32]) -> Vec<i32> {
    partitions.iter().map(|&p| p as i32).collect()
}

fn split(checkpoints: &[(u32, u64)]) -> (Vec<i32>, Vec<i64>) {
    checkpoints
        .iter()
        .map(|&(p, c)| (p as i32, clamp(c)))
        .unzip()
}

fn parked_of(row: &tokio_postgres::Row) -> Parked {
    Parked {
        position: row.get::<_, i64>(0) as u64,
        event_id: row.get(1),
        partition: row.get::<_, i32>(2) as u32,
        deliveries: row.get::<_, i32>(3) as u32,
        parked_at: row.get::<_, DateTime<Utc>>(4),
        replay: row.get(5),
    }
}

const PARKED_COLUMNS: &str = "position, event_id, part, deliveries, parked_at, replay";

#[async_trait]
impl Groups for PostgresStore {
    async fn open_group(&self, name: &str, spec: &GroupSpec) -> Result<GroupSpec> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db_err)?;
        let made = tx
            .execute(
                "INSERT INTO es_groups (name, spec) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
                &[&name, &spec_json(spec)],
            )
            .await
            .map_err(db_err)?;
        if made == 1 {
            tx.execute(
                "INSERT INTO es_group_partitions (name, part, position) \
                 SELECT $1, p, $2 FROM generate_series(0, $3 - 1) AS p",
                &[&name, &clamp(spec.start), &(spec.partitions.max(1) as i32)],
            )
            .await
            .map_err(db_err)?;
        }
        let row = tx
            .query_one("SELECT spec FROM es_groups WHERE name = $1", &[&name])
            .await
            .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        spec_of(row.get(0))
    }

    async fn heartbeat(
        &self,
        name: &str,
        members: &[Uuid],
        ttl: Duration,
    ) -> Result<Option<Vec<Uuid>>> {
        let client = self.client().await?;
        let ttl = ttl.as_secs_f64();
        let exists = client
            .query_opt("SELECT 1 FROM es_groups WHERE name = $1", &[&name])
            .await
            .map_err(db_err)?;
        if exists.is_none() {
            return Ok(None);
        }
        // A deletion between the two statements fails the insert (its
        // foreign key): an error, and the next tick sees the group gone.
        client
            .execute(
                "INSERT INTO es_group_members (name, member, expires_at) \
                 SELECT $1, m, clock_timestamp() + make_interval(secs => $3) \
                 FROM unnest($2::uuid[]) AS m \
                 ON CONFLICT (name, member) DO UPDATE SET expires_at = EXCLUDED.expires_at",
                &[&name, &members, &ttl],
            )
            .await
            .map_err(db_err)?;
        client
            .execute(
                "DELETE FROM es_group_members WHERE name = $1 AND expires_at < clock_timestamp()",
                &[&name],
            )
            .await
            .map_err(db_err)?;
        let rows = client
            .query(
                "SELECT member FROM es_group_members WHERE name = $1 ORDER BY member",
                &[&name],
            )
            .await
            .map_err(db_err)?;
        Ok(Some(rows.iter().map(|r| r.get(0)).collect()))
    }

    async fn leave(&self, name: &str, member: Uuid) -> Result<()> {
        let client = self.client().await?;
        client
            .execute(
                "DELETE FROM es_group_members WHERE name = $1 AND member = $2",
                &[&name, &member],
            )
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn claim(
        &self,
        name: &str,
        owner: Uuid,
        partitions: &[u32],
        ttl: Duration,
    ) -> Result<Vec<(u32, u64)>> {
        let client = self.client().await?;
        let rows = client
            .query(
                "UPDATE es_group_partitions \
                 SET owner = $2, expires_at = clock_timestamp() + make_interval(secs => $4) \
                 WHERE name = $1 AND part = ANY($3) \
                   AND (owner IS NULL OR owner = $2 OR expires_at < clock_timestamp()) \
                 RETURNING part, position",
                &[&name, &owner, &parts(partitions), &ttl.as_secs_f64()],
            )
            .await
            .map_err(db_err)?;
        Ok(rows
            .iter()
            .map(|r| (r.get::<_, i32>(0) as u32, r.get::<_, i64>(1) as u64))
            .collect())
    }

    async fn keep(
        &self,
        name: &str,
        owner: Uuid,
        checkpoints: &[(u32, u64)],
        ttl: Duration,
    ) -> Result<Vec<u32>> {
        let client = self.client().await?;
        let (parts, positions) = split(checkpoints);
        let rows = client
            .query(
                "UPDATE es_group_partitions AS p \
                 SET position = greatest(p.position, c.position), \
                     expires_at = clock_timestamp() + make_interval(secs => $5) \
                 FROM unnest($3::int[], $4::bigint[]) AS c (part, position) \
                 WHERE p.name = $1 AND p.owner = $2 AND p.part = c.part \
                 RETURNING p.part",
                &[&name, &owner, &parts, &positions, &ttl.as_secs_f64()],
            )
            .await
            .map_err(db_err)?;
        Ok(rows.iter().map(|r| r.get::<_, i32>(0) as u32).collect())
    }

    async fn release(&self, name: &str, owner: Uuid, checkpoints: &[(u32, u64)]) -> Result<()> {
        let client = self.client().await?;
        let (parts, positions) = split(checkpoints);
        client
            .execute(
                "UPDATE es_group_partitions AS p \
                 SET position = greatest(p.position, c.position), owner = NULL, expires_at = NULL \
                 FROM unnest($3::int[], $4::bigint[]) AS c (part, position) \
                 WHERE p.name = $1 AND p.owner = $2 AND p.part = c.part",
                &[&name, &owner, &parts, &positions],
            )
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn park(&self, name: &str, parked: &Parked) -> Result<()> {
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO es_group_parked (name, position, event_id, part, deliveries, parked_at) \
                 VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (name, position) DO UPDATE \
                 SET deliveries = EXCLUDED.deliveries, parked_at = EXCLUDED.parked_at, replay = false",
                &[
                    &name,
                    &clamp(parked.position),
                    &parked.event_id,
                    &(parked.partition as i32),
                    &(parked.deliveries.min(i32::MAX as u32) as i32),
                    &parked.parked_at,
                ],
            )
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn unpark(&self, name: &str, position: u64) -> Result<()> {
        let client = self.client().await?;
        client
            .execute(
                "DELETE FROM es_group_parked WHERE name = $1 AND position = $2",
                &[&name, &clamp(position)],
            )
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn parked(&self, name: &str, after: u64, limit: usize) -> Result<Vec<Parked>> {
        let client = self.client().await?;
        let rows = client
            .query(
                &format!(
                    "SELECT {PARKED_COLUMNS} FROM es_group_parked \
                     WHERE name = $1 AND position > $2 ORDER BY position LIMIT $3"
                ),
                &[&name, &clamp(after), &(limit.min(i64::MAX as usize) as i64)],
            )
            .await
            .map_err(db_err)?;
        Ok(rows.iter().map(parked_of).collect())
    }

    async fn replay(&self, name: &str, positions: &[u64]) -> Result<u64> {
        let client = self.client().await?;
        let positions: Vec<i64> = positions.iter().map(|&p| clamp(p)).collect();
        let marked = client
            .execute(
                "UPDATE es_group_parked SET replay = true \
                 WHERE name = $1 AND (cardinality($2::bigint[]) = 0 OR position = ANY($2))",
                &[&name, &positions],
            )
            .await
            .map_err(db_err)?;
        Ok(marked)
    }

    async fn take_replays(
        &self,
        name: &str,
        partitions: &[u32],
        limit: usize,
    ) -> Result<Vec<Parked>> {
        let client = self.client().await?;
        let rows = client
            .query(
                &format!(
                    "UPDATE es_group_parked SET replay = false \
                     WHERE (name, position) IN ( \
                         SELECT name, position FROM es_group_parked \
                         WHERE name = $1 AND replay AND part = ANY($2) \
                         ORDER BY position LIMIT $3 FOR UPDATE SKIP LOCKED) \
                     RETURNING {PARKED_COLUMNS}"
                ),
                &[
                    &name,
                    &parts(partitions),
                    &(limit.min(i64::MAX as usize) as i64),
                ],
            )
            .await
            .map_err(db_err)?;
        let mut taken: Vec<Parked> = rows.iter().map(parked_of).collect();
        taken.sort_by_key(|p| p.position);
        Ok(taken)
    }

    async fn list(&self) -> Result<Vec<GroupInfo>> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT g.name, g.spec, \
                   (SELECT coalesce(min(position), 0) FROM es_group_partitions p WHERE p.name = g.name), \
                   (SELECT count(*) FROM es_group_members m \
                      WHERE m.name = g.name AND m.expires_at >= clock_timestamp()), \
                   (SELECT count(*) FROM es_group_parked k WHERE k.name = g.name) \
                 FROM es_groups g ORDER BY g.name",
                &[],
            )
            .await
            .map_err(db_err)?;
        rows.iter()
            .map(|r| {
                Ok(GroupInfo {
                    name: r.get(0),
                    spec: spec_of(r.get(1))?,
                    checkpoint: r.get::<_, i64>(2) as u64,
                    members: r.get::<_, i64>(3) as u64,
                    parked: r.get::<_, i64>(4) as u64,
                })
            })
            .collect()
    }

    async fn delete(&self, name: &str) -> Result<bool> {
        let client = self.client().await?;
        let deleted = client
            .execute("DELETE FROM es_groups WHERE name = $1", &[&name])
            .await
            .map_err(db_err)?;
        Ok(deleted == 1)
    }

    async fn export(&self) -> Result<Vec<GroupState>> {
        let client = self.client().await?;
        let groups = client
            .query("SELECT name, spec FROM es_groups ORDER BY name", &[])
            .await
            .map_err(db_err)?;
        let mut states = Vec::new();
        for g in groups {
            let name: String = g.get(0);
            let checkpoints = client
                .query(
                    "SELECT part, position FROM es_group_partitions WHERE name = $1 ORDER BY part",
                    &[&name],
                )
                .await
                .map_err(db_err)?
                .iter()
                .map(|r| (r.get::<_, i32>(0) as u32, r.get::<_, i64>(1) as u64))
                .collect();
            let parked = client
                .query(
                    &format!(
                        "SELECT {PARKED_COLUMNS} FROM es_group_parked WHERE name = $1 ORDER BY position"
                    ),
                    &[&name],
                )
                .await
                .map_err(db_err)?
                .iter()
                .map(parked_of)
                .collect();
            states.push(GroupState {
                spec: spec_of(g.get(1))?,
                name,
                checkpoints,
                parked,
            });
        }
        Ok(states)
    }

    async fn import(&self, state: &GroupState) -> Result<bool> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db_err)?;
        let made = tx
            .execute(
                "INSERT INTO es_groups (name, spec) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
                &[&state.name, &spec_json(&state.spec)],
            )
            .await
            .map_err(db_err)?;
        if made == 0 {
            return Ok(false);
        }
        let (parts, positions) = split(&state.checkpoints);
        tx.execute(
            "INSERT INTO es_group_partitions (name, part, position)              SELECT $1, c.part, c.position FROM unnest($2::int[], $3::bigint[]) AS c (part, position)",
            &[&state.name, &parts, &positions],
        )
        .await
        .map_err(db_err)?;
        for p in &state.parked {
            tx.execute(
                "INSERT INTO es_group_parked                  (name, position, event_id, part, deliveries, parked_at, replay)                  VALUES ($1, $2, $3, $4, $5, $6, $7)",
                &[
                    &state.name,
                    &clamp(p.position),
                    &p.event_id,
                    &(p.partition as i32),
                    &(p.deliveries.min(i32::MAX as u32) as i32),
                    &p.parked_at,
                    &p.replay,
                ],
            )
            .await
            .map_err(db_err)?;
        }
        tx.commit().await.map_err(db_err)?;
        Ok(true)
    }
}
