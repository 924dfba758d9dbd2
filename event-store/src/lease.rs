//! Read leases: linearizable reads that ask the store nothing, on a store
//! several processes write.
//!
//! Without a lease, a replica serves a linearizable read by asking the
//! store for its head and waiting until its read model has applied it (see
//! `event_sourcing::read_model`): one round trip per batch of reads. With a lease
//! the work moves to the writers, which are far fewer:
//!
//! - A read model (the *holder*) keeps a lease in the store, renewed every
//!   [`RENEW_EVERY`] for [`LEASE_TTL`], and tells writers each position it
//!   has applied.
//! - A write is acknowledged only once every lease live when it committed
//!   has applied it, or has ended. A holder that does not answer within
//!   [`ACK_WAIT`] has its lease revoked (it cannot be renewed), and the
//!   writer waits out what is left of it.
//! - So while a holder's lease is valid, every write acknowledged anywhere
//!   is already in its model: it answers reads at once.
//!
//! The holder counts its lease from the moment it *sent* the grant or
//! renewal, minus [`MARGIN`]; the store counts it from when it wrote it. So
//! the holder stops trusting its lease before any writer could consider it
//! over, as long as clocks run at about the same rate (the margin covers
//! 10% of drift; a wall-clock step on the database server beyond that is
//! not covered). A fresh grant (at start, or after the lease lapsed or was
//! revoked) is asked for only once the holder has caught up with the
//! store's head (a replica that cannot keep up holds no writer up), and
//! trusted only once it has applied the head read *after* the grant: a
//! write that committed before the grant may not have waited for it.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::watch;
use tokio::time::Instant;
use uuid::Uuid;

use crate::error::{EventStoreError, Result};

/// How long a grant or renewal lasts, counted by the store.
pub const LEASE_TTL: Duration = Duration::from_millis(1500);

/// How often a holder renews its lease.
pub const RENEW_EVERY: Duration = Duration::from_millis(300);

/// How much earlier than the store the holder stops trusting its lease.
pub const MARGIN: Duration = Duration::from_millis(150);

/// How long a writer waits for a live, unrevoked holder to say it applied
/// the write before it revokes the holder's lease.
pub const ACK_WAIT: Duration = Duration::from_millis(500);

/// The longest a writer holds back an acknowledgement (revocations that
/// keep failing: the database is out of reach). Past it the append reports
/// [`EventStoreError::Unconfirmed`]. A holder that is merely slow or gone
/// costs at most [`ACK_WAIT`] plus [`LEASE_TTL`] (2 s), and this stays
/// below the gateway's default call deadline (5 s), so its client hears
/// "unavailable" rather than a timeout.
pub const CONFIRM_LIMIT: Duration = Duration::from_secs(4);

/// The lease operations a backend offers (PostgreSQL).
#[async_trait]
pub trait ReadLeases: Send + Sync + 'static {
    /// Grants `holder` a fresh lease of `ttl` from now, clearing any
    /// revocation.
    async fn grant(&self, holder: Uuid, ttl: Duration) -> Result<()>;

    /// Extends `holder`'s lease to `ttl` from now if it is still live and
    /// not revoked; `false` if it is not (then only a fresh grant helps).
    async fn renew(&self, holder: Uuid, ttl: Duration) -> Result<bool>;

    /// Tells every writer that `holder` has applied each position up to
    /// `position`.
    async fn applied(&self, holder: Uuid, position: u64) -> Result<()>;

    /// Tells the writers of this very store handle the same at once,
    /// without a round trip (a replica's own writes then wait only for its
    /// own model, as they would without leases).
    fn applied_here(&self, _holder: Uuid, _position: u64) {}

    /// Gives the lease up (writers stop waiting for `holder`).
    async fn release(&self, holder: Uuid) -> Result<()>;
}

/// A lease that was live when a write committed, as the writer saw it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Live {
    pub holder: Uuid,
    /// How long the store said the lease had left.
    pub left: Duration,
    /// Revoked: it cannot be renewed, so `left` is final.
    pub revoked: bool,
}

/// The positions holders said they applied, as this process heard them.
pub(crate) struct Acks {
    heard: watch::Sender<HashMap<Uuid, u64>>,
}

impl Default for Acks {
    fn default() -> Self {
        Self {
            heard: watch::channel(HashMap::new()).0,
        }
    }
}

/// How many holders [`Acks`] remembers before it forgets those no live
/// lease names (each replica start is a new holder).
const REMEMBERED: usize = 256;

impl Acks {
    /// Notes that `holder` applied every position up to `position`.
    pub fn heard(&self, holder: Uuid, position: u64) {
        self.heard.send_modify(|heard| {
            let at = heard.entry(holder).or_default();
            *at = (*at).max(position);
        });
    }

    /// The position last heard from `holder`, if any.
    pub fn heard_from(&self, holder: Uuid) -> Option<u64> {
        self.heard.borrow().get(&holder).copied()
    }

    /// Forgets holders that no lease in `live` names, once there are many.
    pub fn forget_all_but(&self, live: &[Live]) {
        if self.heard.borrow().len() > REMEMBERED {
            self.heard
                .send_modify(|heard| heard.retain(|h, _| live.iter().any(|l| l.holder == *h)));
        }
    }

    /// Waits until every lease in `live` (seen `seen_at`) has applied
    /// `position` or has ended. A holder still silent after [`ACK_WAIT`]
    /// is revoked through `revoke` (which says how long its lease has
    /// left, `None` if it already ended), then waited out.
    pub async fn confirm<F, Fut>(
        &self,
        live: Vec<Live>,
        seen_at: Instant,
        position: u64,
        revoke: F,
    ) -> Result<()>
    where
        F: Fn(Uuid) -> Fut,
        Fut: std::future::Future<Output = Result<Option<Duration>>>,
    {
        struct Pending {
            holder: Uuid,
            /// When to stop waiting for its answer.
            until: Instant,
            /// Whether its lease ends by `until` (revoked), or it is to be
            /// revoked then.
            ends: bool,
        }
        let mut pending: Vec<Pending> = live
            .into_iter()
            .map(|l| Pending {
                holder: l.holder,
                until: if l.revoked {
                    seen_at + l.left
                } else {
                    seen_at + ACK_WAIT
                },
                ends: l.revoked,
            })
            .collect();
        let mut heard = self.heard.subscribe();
        let give_up = seen_at + CONFIRM_LIMIT;
        loop {
            let now = Instant::now();
            {
                let heard = heard.borrow_and_update();
                pending.retain(|p| {
                    let applied = heard.get(&p.holder).is_some_and(|&at| at >= position);
                    !(applied || (p.ends && now >= p.until))
                });
            }
            if pending.is_empty() {
                return Ok(());
            }
            if now >= give_up {
                tracing::error!(
                    position,
                    silent = pending.len(),
                    "a committed write could not be confirmed on every read replica"
                );
                return Err(EventStoreError::Unconfirmed { position });
            }
            for p in pending.iter_mut().filter(|p| !p.ends && now >= p.until) {
                match revoke(p.holder).await {
                    Ok(left) => {
                        tracing::warn!(
                            holder = %p.holder,
                            position,
                            left_ms = left.map_or(0.0, |l| l.as_secs_f64() * 1e3),
                            "a read replica did not apply a write in time: its lease is revoked"
                        );
                        p.until = Instant::now() + left.unwrap_or_default();
                        p.ends = true;
                    }
                    Err(e) => {
                        tracing::warn!(holder = %p.holder, error = %e, "cannot revoke a read lease; retrying");
                        p.until = Instant::now() + Duration::from_millis(100);
                    }
                }
            }
            let next = pending
                .iter()
                .map(|p| p.until)
                .min()
                .map_or(give_up, |u| u.min(give_up));
            // A closed channel cannot happen while `self` lives; time out then.
            let _ = tokio::time::timeout_at(next, heard.changed()).await;
        }
    }
}
