//! Snapshots of a projection's model: where and how often they are saved,
//! saving one in the background, and loading one that checks out.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use event_store::{EventStore, Result, StoreUrl};
use tokio::sync::watch;
use uuid::Uuid;

use super::snapshot::{self, Encoder, Header, Rejected, Snapshot, SnapshotKey};

/// The position and id of the last event a projection applied (skipped
/// ones included): what a snapshot of it covers.
pub(crate) type Last = Arc<Mutex<(u64, Uuid)>>;

/// Held by the follower while it applies an event, and by a snapshot while
/// it encodes the model: a follower that must wait for a snapshot waits
/// here, not queued on the model's lock, where it would hold up every
/// reader behind it (a waiting writer blocks new readers).
pub(crate) type ApplyTurn = Arc<tokio::sync::Mutex<()>>;

/// Where a projection keeps its snapshot, and how often it saves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotPolicy {
    /// The snapshot file.
    pub path: PathBuf,
    /// Save once this many feed positions were applied since the last
    /// save (looked at every [`SAVE_CHECK_EVERY`]), and when the service
    /// stops.
    pub every: u64,
    /// The key snapshots are tagged under, if configured; else the store
    /// keeps one ([`EventStore::secret`]), and a store that cannot keep
    /// one (EventStoreDB) runs without snapshots.
    pub key: Option<SnapshotKey>,
}

impl SnapshotPolicy {
    /// The policy a service's setting names: `off`, none; `auto`, beside a
    /// SQLite store's file (`<file>.<model>.snapshot`) and none on other
    /// stores; anything else, that path.
    pub fn from_setting(setting: &str, store_url: &str, model: &str, every: u64) -> Option<Self> {
        let path = match setting {
            "off" | "" => return None,
            "auto" => match StoreUrl::parse(store_url).ok()? {
                StoreUrl::Sqlite(db) => {
                    let mut name = db.into_os_string();
                    name.push(format!(".{model}.snapshot"));
                    PathBuf::from(name)
                }
                _ => return None,
            },
            path => PathBuf::from(path),
        };
        Some(Self {
            path,
            every: every.max(1),
            key: None,
        })
    }

    /// This policy, with snapshots tagged under `key` if one is given.
    pub fn with_key(self, key: Option<SnapshotKey>) -> Self {
        Self {
            key: key.or(self.key),
            ..self
        }
    }

    /// The key snapshots are tagged under: the configured one, else the
    /// one `store` keeps for the model `name`. `None` (logged) when the
    /// store cannot keep one.
    pub(crate) async fn key(
        &self,
        store: &dyn EventStore,
        name: &str,
    ) -> Result<Option<SnapshotKey>> {
        if let Some(key) = &self.key {
            return Ok(Some(key.clone()));
        }
        match store.secret(&format!("snapshot-key:{name}")).await {
            Ok(bytes) => Ok(Some(SnapshotKey::new(bytes))),
            Err(event_store::EventStoreError::Unsupported(_)) => {
                tracing::warn!(
                    model = name,
                    "this store keeps no secrets, and no snapshot key is configured: running without snapshots"
                );
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }
}

/// How often the background saver looks whether a snapshot is due.
pub const SAVE_CHECK_EVERY: Duration = Duration::from_secs(5);

/// How long the saver waits after a failed save before it tries again.
const SAVE_RETRY_AFTER: Duration = Duration::from_secs(60);

/// What saving a snapshot did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Saved {
    /// The feed position it covers.
    pub position: u64,
    /// The payload's size.
    pub bytes: usize,
    /// How long new events waited to be applied: while the model was
    /// encoded into the file under its read lock, or only while it was
    /// frozen (see [`super::snapshot::Snapshot::freeze`]). Readers do not
    /// wait.
    pub locked: Duration,
}

/// Encodes a model under its read lock, unless it is still at the given
/// position; returns the position and id of its last event. It calls
/// `release` (the third argument) as soon as new events may be applied
/// again: once the model is frozen, or when it returns.
type EncodeFn =
    dyn Fn(u64, &mut Encoder<'_>, &mut dyn FnMut()) -> Option<(u64, Uuid)> + Send + Sync;

/// Saves one projection's snapshots, one save at a time.
pub(crate) struct Saver {
    pub(crate) path: PathBuf,
    pub(crate) name: &'static str,
    pub(crate) version: u32,
    pub(crate) key: SnapshotKey,
    pub(crate) encode: Box<EncodeFn>,
    pub(crate) applying: ApplyTurn,
    /// The position of the last snapshot saved (or started from).
    pub(crate) saved: AtomicU64,
    pub(crate) turn: tokio::sync::Mutex<()>,
}

impl Saver {
    /// Encodes the model straight into a new file (on a blocking thread:
    /// the lock is held all along), then flushes and renames it, unless
    /// nothing was applied since the last save.
    pub(crate) async fn save(self: &Arc<Self>) -> std::io::Result<Option<Saved>> {
        let _turn = self.turn.lock().await;
        let started = Instant::now();
        let saver = self.clone();
        let applying = self.applying.clone().lock_owned().await;
        let written = tokio::task::spawn_blocking(move || {
            let saved = saver.saved.load(Ordering::SeqCst);
            let mut locked = Duration::ZERO;
            let (path, key) = (&saver.path, &saver.key);
            let written = snapshot::write_file(path, saver.name, saver.version, key, |out| {
                let locking = Instant::now();
                let mut applying = Some(applying);
                let mut release = || {
                    if applying.take().is_some() {
                        locked = locking.elapsed();
                    }
                };
                let covered = (saver.encode)(saved, out, &mut release);
                release();
                covered
            })?;
            Ok::<_, std::io::Error>(written.map(|(header, bytes)| Saved {
                position: header.position,
                bytes: bytes as usize,
                locked,
            }))
        })
        .await
        .map_err(std::io::Error::other)??;
        let Some(Saved {
            position,
            bytes,
            locked,
        }) = written
        else {
            return Ok(None);
        };
        self.saved.store(position, Ordering::SeqCst);
        tracing::info!(
            model = self.name,
            position,
            bytes,
            locked_ms = locked.as_secs_f64() * 1e3,
            total_ms = started.elapsed().as_secs_f64() * 1e3,
            path = %self.path.display(),
            "read-model snapshot saved"
        );
        Ok(Some(Saved {
            position,
            bytes,
            locked,
        }))
    }
}

/// Saves a snapshot whenever `every` positions were applied since the last.
pub(crate) async fn save_when_due(saver: Arc<Saver>, applied: watch::Receiver<u64>, every: u64) {
    loop {
        tokio::time::sleep(SAVE_CHECK_EVERY).await;
        let since = applied
            .borrow()
            .saturating_sub(saver.saved.load(Ordering::SeqCst));
        if since < every {
            continue;
        }
        if let Err(e) = saver.save().await {
            tracing::warn!(
                model = saver.name,
                error = %e,
                path = %saver.path.display(),
                "could not save the read-model snapshot; trying again later"
            );
            tokio::time::sleep(SAVE_RETRY_AFTER).await;
        }
    }
}

/// The snapshot at `path`, if there is one and it checks out against
/// `store`; anything else is logged and `None` (replay everything).
pub(crate) async fn load_snapshot<M: Snapshot>(
    store: &dyn EventStore,
    path: &Path,
    key: &SnapshotKey,
) -> Result<Option<(Header, M)>> {
    let (file, key) = (path.to_owned(), key.clone());
    let read = tokio::task::spawn_blocking(move || snapshot::load::<M>(&file, &key))
        .await
        .unwrap_or_else(|e| Err(Rejected::Io(std::io::Error::other(e))));
    let rejected = match read {
        Ok(None) => {
            tracing::info!(model = M::NAME, path = %path.display(), "no read-model snapshot: replaying every event");
            return Ok(None);
        }
        Ok(Some((header, model))) => {
            let position = header.position;
            let there = position == 0
                || store
                    .read_all(position, 1)
                    .await?
                    .first()
                    .is_some_and(|e| e.position == position && e.id == header.event_id);
            if there {
                return Ok(Some((header, model)));
            }
            Rejected::OtherStore { position }
        }
        Err(rejected) => rejected,
    };
    tracing::warn!(
        model = M::NAME,
        path = %path.display(),
        reason = %rejected,
        "read-model snapshot ignored: replaying every event"
    );
    Ok(None)
}
