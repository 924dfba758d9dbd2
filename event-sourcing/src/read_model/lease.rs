//! The holder's side of a read lease (the store's side, and how leases
//! work, are in [`event_store::lease`]): grants and renews the lease, and
//! tells writers each position the model has applied.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use event_store::lease::{LEASE_TTL, MARGIN, RENEW_EVERY, ReadLeases};
use event_store::{EventStore, Result};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use uuid::Uuid;

/// Whether a projection may answer linearizable reads from its model as
/// it is, and the tasks that keep it so.
pub(crate) struct Lease {
    holder: Uuid,
    leases: Arc<dyn ReadLeases>,
    /// Until when (nanoseconds after `base`) the lease may be trusted; 0
    /// when it may not.
    valid_until: Arc<AtomicU64>,
    base: Instant,
    reads: AtomicU64,
    /// Grants and renewals sent, and applied positions reported: what the
    /// lease costs the store.
    sent: Arc<Sent>,
    tasks: [JoinHandle<()>; 3],
}

/// What a holder has sent the store.
#[derive(Default)]
struct Sent {
    renewals: AtomicU64,
    reports: AtomicU64,
}

impl Drop for Lease {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Lease {
    /// Starts holding a lease for a model whose applied position `applied`
    /// follows `store`.
    pub fn start(
        leases: Arc<dyn ReadLeases>,
        store: Arc<dyn EventStore>,
        applied: watch::Receiver<u64>,
    ) -> Self {
        let holder = Uuid::new_v4();
        let base = Instant::now();
        let valid_until = Arc::new(AtomicU64::new(0));
        let sent = Arc::new(Sent::default());
        let keep = tokio::spawn(keep(
            Holding {
                holder,
                leases: leases.clone(),
                store,
                applied: applied.clone(),
                valid_until: valid_until.clone(),
                base,
                sent: sent.clone(),
            },
            RENEW_EVERY,
        ));
        let here = tokio::spawn(report_here(leases.clone(), holder, applied.clone()));
        let report = tokio::spawn(report(leases.clone(), holder, applied, sent.clone()));
        Self {
            holder,
            leases,
            valid_until,
            base,
            reads: AtomicU64::new(0),
            sent,
            tasks: [keep, report, here],
        }
    }

    /// Whether a read arriving now may be answered from the model as it is
    /// (counted when it may).
    pub fn covers_now(&self) -> bool {
        let until = self.valid_until.load(Ordering::Acquire);
        let valid = until > 0 && (self.base.elapsed().as_nanos() as u64) < until;
        if valid {
            self.reads.fetch_add(1, Ordering::Relaxed);
        }
        valid
    }

    /// Reads answered under the lease so far.
    pub fn reads(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }

    /// Grants and renewals sent so far, and applied positions reported.
    pub fn sent(&self) -> (u64, u64) {
        (
            self.sent.renewals.load(Ordering::Relaxed),
            self.sent.reports.load(Ordering::Relaxed),
        )
    }

    /// Stops holding the lease and gives it up, so that writers stop
    /// waiting for this holder at once.
    pub async fn release(&self) {
        for task in &self.tasks {
            task.abort();
        }
        self.valid_until.store(0, Ordering::Release);
        if let Err(e) = self.leases.release(self.holder).await {
            tracing::warn!(error = %e, "could not give up the read lease (it ends by itself)");
        }
    }

    /// Gives the lease up in the background, when a runtime is there.
    pub fn release_soon(&self) {
        let (leases, holder) = (self.leases.clone(), self.holder);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = leases.release(holder).await;
            });
        }
    }
}

/// What the renewing task works with.
struct Holding {
    holder: Uuid,
    leases: Arc<dyn ReadLeases>,
    store: Arc<dyn EventStore>,
    applied: watch::Receiver<u64>,
    valid_until: Arc<AtomicU64>,
    base: Instant,
    sent: Arc<Sent>,
}

impl Holding {
    /// Trusts the lease until `MARGIN` before `ttl` after `sent`.
    fn trust_from(&self, sent: Instant) {
        let until = (sent + LEASE_TTL - MARGIN).duration_since(self.base);
        self.valid_until
            .fetch_max(until.as_nanos() as u64, Ordering::AcqRel);
    }

    /// Waits until the model has applied the store's head as it is now,
    /// within the read timeout; whether it did.
    async fn catch_up(&self) -> Result<bool> {
        let head = self.store.head_position().await?;
        let mut applied = self.applied.clone();
        let caught_up =
            tokio::time::timeout(super::model::READ_TIMEOUT, applied.wait_for(|&p| p >= head))
                .await;
        Ok(matches!(caught_up, Ok(Ok(_))))
    }
}

/// Grants, then renews, the lease; after a lapse or a revocation, grants
/// it afresh and catches up before it is trusted again.
async fn keep(holding: Holding, every: Duration) {
    let mut held = false;
    loop {
        let started = Instant::now();
        let outcome = if held {
            holding.sent.renewals.fetch_add(1, Ordering::Relaxed);
            holding
                .leases
                .renew(holding.holder, LEASE_TTL)
                .await
                .map(|renewed| {
                    if renewed {
                        holding.trust_from(started);
                    } else {
                        tracing::info!(holder = %holding.holder, "read lease lapsed or revoked: granting a fresh one");
                        held = false;
                    }
                })
        } else {
            holding.grant_fresh().await.map(|granted| {
                if let Some(sent) = granted {
                    held = true;
                    holding.trust_from(sent);
                }
            })
        };
        if let Err(e) = outcome {
            tracing::warn!(error = %e, "cannot renew the read lease; reads ask the store meanwhile");
        }
        if held {
            tokio::time::sleep_until(started + every).await;
        } else {
            tokio::time::sleep(every / 3).await;
        }
    }
}

impl Holding {
    /// Grants a fresh lease, once the model is current: it first catches up
    /// with the head as it is (a model that cannot keep up asks for no
    /// lease that writers would wait for), then grants, then catches up
    /// with the head read after the grant. The time the grant was sent, once
    /// it may be trusted.
    async fn grant_fresh(&self) -> Result<Option<Instant>> {
        if !self.catch_up().await? {
            return Ok(None);
        }
        let sent = Instant::now();
        self.sent.renewals.fetch_add(1, Ordering::Relaxed);
        self.leases.grant(self.holder, LEASE_TTL).await?;
        Ok(self.catch_up().await?.then_some(sent))
    }
}

/// Tells this process's writers each position applied, as it is applied.
async fn report_here(leases: Arc<dyn ReadLeases>, holder: Uuid, mut applied: watch::Receiver<u64>) {
    loop {
        let position = *applied.borrow_and_update();
        leases.applied_here(holder, position);
        if applied.changed().await.is_err() {
            return;
        }
    }
}

/// Tells every writer each position applied, the latest one at a time.
async fn report(
    leases: Arc<dyn ReadLeases>,
    holder: Uuid,
    mut applied: watch::Receiver<u64>,
    sent: Arc<Sent>,
) {
    let mut told = 0;
    loop {
        let position = *applied.borrow_and_update();
        if position > told {
            sent.reports.fetch_add(1, Ordering::Relaxed);
            match leases.applied(holder, position).await {
                Ok(()) => told = position,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot report the applied position to writers");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            }
        }
        if applied.changed().await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;

    use async_trait::async_trait;

    use super::*;
    use event_store::{AppendResult, EventStream, ExpectedVersion, NewEvent, RecordedEvent};

    /// A store that only has a head, with leases whose renewal can be
    /// refused (a revocation).
    #[derive(Default)]
    struct Script {
        head: AtomicU64,
        refuse_renewal: AtomicBool,
        grants: AtomicU64,
    }

    #[async_trait]
    impl ReadLeases for Script {
        async fn grant(&self, _: Uuid, _: Duration) -> Result<()> {
            self.grants.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
        async fn renew(&self, _: Uuid, _: Duration) -> Result<bool> {
            Ok(!self.refuse_renewal.load(Ordering::SeqCst))
        }
        async fn applied(&self, _: Uuid, _: u64) -> Result<()> {
            Ok(())
        }
        async fn release(&self, _: Uuid) -> Result<()> {
            Ok(())
        }
    }

    #[async_trait]
    impl EventStore for Script {
        async fn append(
            &self,
            _: &str,
            _: ExpectedVersion,
            _: Vec<NewEvent>,
        ) -> Result<AppendResult> {
            unreachable!("the lease never appends")
        }
        async fn read_stream(&self, _: &str, _: u64) -> Result<Vec<RecordedEvent>> {
            unreachable!("the lease never reads streams")
        }
        async fn read_all(&self, _: u64, _: usize) -> Result<Vec<RecordedEvent>> {
            unreachable!("the lease never reads the feed")
        }
        async fn head_position(&self) -> Result<u64> {
            Ok(self.head.load(Ordering::SeqCst))
        }
        fn subscribe_all(&self, _: u64) -> EventStream {
            unreachable!("the lease never subscribes")
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_lease_is_granted_and_trusted_only_once_the_model_is_current() {
        let script = Arc::new(Script::default());
        script.head.store(5, Ordering::SeqCst);
        let (applied, applied_rx) = watch::channel(0);
        let lease = Lease::start(script.clone(), script.clone(), applied_rx);

        // Behind the head (5): no lease is asked for, none is trusted.
        tokio::time::sleep(LEASE_TTL * 2).await;
        assert_eq!(
            script.grants.load(Ordering::SeqCst),
            0,
            "granted while behind"
        );
        assert!(!lease.covers_now(), "trusted before catching up");
        applied.send_replace(5);
        tokio::time::sleep(RENEW_EVERY).await;
        assert_eq!(script.grants.load(Ordering::SeqCst), 1);
        assert!(lease.covers_now(), "not trusted once caught up");

        // Renewed: trusted on, without a new grant.
        tokio::time::sleep(LEASE_TTL * 3).await;
        assert!(lease.covers_now());
        assert_eq!(script.grants.load(Ordering::SeqCst), 1);

        // Revoked while writes went on to 9: the old lease runs out, and
        // no fresh one is asked for, or trusted, until 9 is applied.
        script.head.store(9, Ordering::SeqCst);
        script.refuse_renewal.store(true, Ordering::SeqCst);
        tokio::time::sleep(RENEW_EVERY + LEASE_TTL).await;
        script.refuse_renewal.store(false, Ordering::SeqCst);
        tokio::time::sleep(LEASE_TTL * 2).await;
        assert_eq!(script.grants.load(Ordering::SeqCst), 1);
        assert!(!lease.covers_now(), "trusted a lease while behind");
        applied.send_replace(9);
        tokio::time::sleep(RENEW_EVERY).await;
        assert_eq!(script.grants.load(Ordering::SeqCst), 2);
        assert!(lease.covers_now());
        assert_eq!(lease.reads(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_fresh_grant_waits_for_the_head_read_after_it() {
        // Writes land between the check before the first grant and it.
        struct Moving(Arc<Script>);
        #[async_trait]
        impl ReadLeases for Moving {
            async fn grant(&self, holder: Uuid, ttl: Duration) -> Result<()> {
                if self.0.grants.load(Ordering::SeqCst) == 0 {
                    self.0.head.fetch_add(3, Ordering::SeqCst);
                }
                self.0.grant(holder, ttl).await
            }
            async fn renew(&self, holder: Uuid, ttl: Duration) -> Result<bool> {
                self.0.renew(holder, ttl).await
            }
            async fn applied(&self, _: Uuid, _: u64) -> Result<()> {
                Ok(())
            }
            async fn release(&self, _: Uuid) -> Result<()> {
                Ok(())
            }
        }
        let script = Arc::new(Script::default());
        let moving = Arc::new(Moving(script.clone()));
        let (applied, applied_rx) = watch::channel(0);
        let lease = Lease::start(moving.clone(), script, applied_rx);
        tokio::time::sleep(RENEW_EVERY).await;
        assert!(moving.0.grants.load(Ordering::SeqCst) >= 1);
        assert!(
            !lease.covers_now(),
            "trusted without the writes made before the grant"
        );
        let head = moving.0.head.load(Ordering::SeqCst);
        applied.send_replace(head);
        tokio::time::sleep(RENEW_EVERY * 2).await;
        assert!(lease.covers_now());
    }

    #[tokio::test(start_paused = true)]
    async fn a_lease_not_renewed_is_not_trusted_past_its_margin() {
        let script = Arc::new(Script::default());
        let (_applied, applied_rx) = watch::channel(0);
        let lease = Lease::start(script.clone(), script.clone(), applied_rx);
        tokio::time::sleep(RENEW_EVERY).await;
        assert!(lease.covers_now());
        // The renewing task stops (as when the store is out of reach).
        lease.tasks[0].abort();
        let stopped = Instant::now();
        while lease.covers_now() && stopped.elapsed() <= LEASE_TTL {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert!(
            stopped.elapsed() <= LEASE_TTL - MARGIN,
            "trusted for {:?} after the last renewal",
            stopped.elapsed()
        );
    }
}
