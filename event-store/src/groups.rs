//! What consumer groups keep in the store's database, shared by every
//! process on it: each group's settings, its partitions' checkpoints and
//! leases, its live members, and the events it parked.
//!
//! A group splits the streams into a fixed number of partitions by a
//! stable hash of the stream's name ([`partition_of`]). Each partition has a
//! checkpoint (every event of the partition below it is done) and at most
//! one owner at a time: the process that delivers its events, under a lease
//! it renews. So the events of one stream are delivered by one process, in
//! order, and the checkpoint moves only forward, written by the owner
//! (fenced: a write by a process whose lease was taken over is refused).
//! The dispatching itself lives in `event_sourcing::consumer_group`.
//!
//! The times of leases and memberships are the database's clock
//! (PostgreSQL), or this host's (SQLite, which one host reaches).

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::Result;

/// What a group was created with. Fixed for the group's life: a consumer
/// joining with another filter is refused (delete the group to change it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupSpec {
    /// Event types delivered (empty: all).
    pub types: Vec<String>,
    /// Only subjects starting with it (empty: all).
    pub prefix: String,
    /// The first position a new group delivers.
    pub start: u64,
    /// How many partitions the streams are split into.
    pub partitions: u32,
    /// How long a delivery may go unacknowledged before it is sent again.
    pub ack_timeout_ms: u64,
    /// Deliveries of one event before it is parked.
    pub max_deliveries: u32,
}

/// One parked event of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parked {
    /// Its global position.
    pub position: u64,
    /// Its id.
    pub event_id: Uuid,
    /// Its partition in the group.
    pub partition: u32,
    /// How many times it was delivered before it was parked.
    pub deliveries: u32,
    /// When it was parked.
    pub parked_at: DateTime<Utc>,
    /// Whether a replay of it was asked for and not yet taken.
    pub replay: bool,
}

/// A group, as the operator lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupInfo {
    /// Its name.
    pub name: String,
    /// Its settings.
    pub spec: GroupSpec,
    /// The lowest partition checkpoint: every event below it is done.
    pub checkpoint: u64,
    /// Members live now, on every process.
    pub members: u64,
    /// Events parked now.
    pub parked: u64,
}

/// A group as another store can take it (`movies copy`): its settings,
/// its partitions' checkpoints and its parked events; not its members nor
/// its leases, which belong to the processes of the old store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupState {
    /// Its name.
    pub name: String,
    /// Its settings.
    pub spec: GroupSpec,
    /// Each partition's checkpoint.
    pub checkpoints: Vec<(u32, u64)>,
    /// Its parked events.
    pub parked: Vec<Parked>,
}

/// Copies every consumer group of `from` into `to` (whose events are
/// `from`'s, at the same positions, so the checkpoints hold there too); a
/// group `to` already has is left as it is. Returns how many were copied;
/// 0 where either store keeps no groups.
pub async fn copy(from: &dyn crate::EventStore, to: &dyn crate::EventStore) -> Result<usize> {
    let (Some(from), Some(to)) = (from.groups(), to.groups()) else {
        return Ok(0);
    };
    let mut copied = 0;
    for state in from.export().await? {
        if to.import(&state).await? {
            copied += 1;
        }
    }
    Ok(copied)
}

/// The stable partition of `stream` among `partitions` (FNV-1a, 64 bits):
/// the same in every process and every release.
pub fn partition_of(stream: &str, partitions: u32) -> u32 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in stream.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    (hash % u64::from(partitions.max(1))) as u32
}

/// The group operations a backend offers (SQLite and PostgreSQL).
#[async_trait]
pub trait Groups: Send + Sync + 'static {
    /// Creates group `name` with `spec` unless it exists (its partitions'
    /// checkpoints at `spec.start`); returns the group's stored settings.
    async fn open_group(&self, name: &str, spec: &GroupSpec) -> Result<GroupSpec>;

    /// Keeps `members` of `name` live for `ttl` (adding those not yet
    /// there), forgets members whose time is over, and returns every live
    /// member of the group, on every process, sorted; `None` if the group
    /// was deleted.
    async fn heartbeat(
        &self,
        name: &str,
        members: &[Uuid],
        ttl: Duration,
    ) -> Result<Option<Vec<Uuid>>>;

    /// Removes `member` from `name` at once.
    async fn leave(&self, name: &str, member: Uuid) -> Result<()>;

    /// Takes, for `owner`, each of `partitions` that is free, whose lease is
    /// over, or that `owner` holds; returns those taken, with their
    /// checkpoints.
    async fn claim(
        &self,
        name: &str,
        owner: Uuid,
        partitions: &[u32],
        ttl: Duration,
    ) -> Result<Vec<(u32, u64)>>;

    /// Renews `owner`'s leases on `checkpoints`' partitions and raises their
    /// checkpoints (never lowers them); returns the partitions `owner`
    /// still holds. A partition left out was taken over: stop delivering it.
    async fn keep(
        &self,
        name: &str,
        owner: Uuid,
        checkpoints: &[(u32, u64)],
        ttl: Duration,
    ) -> Result<Vec<u32>>;

    /// Raises the checkpoints and gives the partitions up, if `owner` still
    /// holds them.
    async fn release(&self, name: &str, owner: Uuid, checkpoints: &[(u32, u64)]) -> Result<()>;

    /// Parks an event (or parks it again, after a replay that failed).
    async fn park(&self, name: &str, parked: &Parked) -> Result<()>;

    /// Forgets a parked event (its replay was acknowledged).
    async fn unpark(&self, name: &str, position: u64) -> Result<()>;

    /// At most `limit` parked events of `name`, oldest position first, from
    /// position `after` (exclusive).
    async fn parked(&self, name: &str, after: u64, limit: usize) -> Result<Vec<Parked>>;

    /// Asks for a replay of the parked events at `positions` (all of them
    /// if empty); returns how many were marked.
    async fn replay(&self, name: &str, positions: &[u64]) -> Result<u64>;

    /// The parked events of `partitions` whose replay was asked for, at
    /// most `limit`, each taken once (marked as no longer asked for).
    async fn take_replays(
        &self,
        name: &str,
        partitions: &[u32],
        limit: usize,
    ) -> Result<Vec<Parked>>;

    /// Every group.
    async fn list(&self) -> Result<Vec<GroupInfo>>;

    /// Deletes group `name` with its checkpoints and parked events; `false`
    /// if there was none.
    async fn delete(&self, name: &str) -> Result<bool>;

    /// Every group, as another store can take it.
    async fn export(&self) -> Result<Vec<GroupState>>;

    /// Writes a group exported from another store, unless one of its name
    /// exists here; whether it was written.
    async fn import(&self, state: &GroupState) -> Result<bool>;
}

pub(crate) fn spec_json(spec: &GroupSpec) -> String {
    serde_json::to_string(spec).unwrap_or_default()
}

pub(crate) fn spec_of(json: &str) -> Result<GroupSpec> {
    serde_json::from_str(json).map_err(|e| crate::EventStoreError::Corrupt {
        position: 0,
        reason: format!("a consumer group's settings: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_are_stable_and_spread() {
        // Pinned: a change would move streams between partitions across a
        // rolling upgrade, and break their order.
        assert_eq!(partition_of("movie-1", 32), partition_of("movie-1", 32));
        assert_eq!(partition_of("", 32), (0xcbf2_9ce4_8422_2325u64 % 32) as u32);
        assert_eq!(partition_of("anything", 1), 0);
        assert_eq!(partition_of("anything", 0), 0);
        let mut seen = [0u32; 8];
        for i in 0..800 {
            seen[partition_of(&format!("rating-{i}"), 8) as usize] += 1;
        }
        assert!(seen.iter().all(|&n| n > 50), "{seen:?}");
    }
}
