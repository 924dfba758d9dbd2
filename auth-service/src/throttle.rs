//! Login throttling. An attempt is *reserved* before its password is
//! checked, atomically, and counts against the limits while it runs, so
//! parallel guesses cannot all slip past one check.
//!
//! Two books are kept:
//! - per (username, client address): `per_client` failed or running
//!   attempts are free; past that, one attempt at a time, each after a pause
//!   that doubles from `base_pause` up to `window`. A success clears it.
//! - per username, from any address: the same with the looser `per_user`
//!   ceiling, so guesses spread over many addresses slow down too. A success
//!   does not clear it (it is the attackers' book as much as the owner's).
//!
//! A guesser from one address cannot lock the owner out for long: the
//! owner's address has its own book, and the username ceiling only slows
//! every address down, with pauses that start short. Failures are forgotten
//! `window` after the last one.
//!
//! Where the books live follows the event store: on PostgreSQL, in a table
//! beside the events, each reservation one transaction holding both rows,
//! so every replica of auth-service shares them; otherwise (SQLite: one
//! process) in memory. A reservation whose process died before settling it
//! counts as a failure once its lease is over.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};

use crate::error::{AuthError, Result};
use crate::seal::Pepper;

/// How long a reservation may run unsettled before it counts as a failure
/// (longer than any call may take).
const LEASE: TimeDelta = TimeDelta::seconds(60);

/// Past this many records in memory, records with nothing to remember are
/// dropped before a new one is added.
const PRUNE_ABOVE: usize = 100_000;

/// The limits of a [`LoginThrottle`].
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Free attempts per username and client address.
    pub per_client: u32,
    /// Free attempts per username, over every address.
    pub per_user: u32,
    /// The first pause once the free attempts are used; it doubles with each
    /// further failure.
    pub base_pause: Duration,
    /// The longest pause, and how long failures are remembered.
    pub window: Duration,
}

impl Limits {
    fn window(&self) -> TimeDelta {
        TimeDelta::from_std(self.window).unwrap_or(TimeDelta::MAX)
    }
}

/// Failed and running attempts of one key.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Record {
    failures: u32,
    running: u32,
    last_failure: Option<DateTime<Utc>>,
    lease_until: Option<DateTime<Utc>>,
}

impl Record {
    /// Brings the record to `now`: reservations past their lease (their
    /// process died) become failures; failures a window old are forgotten.
    fn catch_up(&mut self, limits: &Limits, now: DateTime<Utc>) {
        if let Some(lease) = self.lease_until.filter(|l| *l <= now && self.running > 0) {
            self.failures = self.failures.saturating_add(self.running);
            self.running = 0;
            self.last_failure = Some(lease);
        }
        if self
            .last_failure
            .is_some_and(|t| now - t >= limits.window())
        {
            self.failures = 0;
            self.last_failure = None;
        }
    }

    /// How long an attempt must wait now, if it must, with `free` attempts
    /// allowed before pauses start.
    fn wait(&self, free: u32, limits: &Limits, now: DateTime<Utc>) -> Option<Duration> {
        if self.failures + self.running < free {
            return None;
        }
        if self.running > 0 {
            // Past the free attempts, only one at a time.
            return Some(limits.base_pause);
        }
        let doublings = (self.failures - free).min(30);
        let pause = limits
            .base_pause
            .saturating_mul(1 << doublings)
            .min(limits.window);
        let pause = TimeDelta::from_std(pause).unwrap_or(TimeDelta::MAX);
        let until = self.last_failure.map_or(now, |t| t + pause);
        (now < until).then(|| (until - now).to_std().unwrap_or_default())
    }

    fn start(&mut self, now: DateTime<Utc>) {
        self.running += 1;
        self.lease_until = Some(now + LEASE);
    }

    /// Ends a running attempt: a failure is recorded; a success clears the
    /// failures if `success_clears`.
    fn settle(&mut self, failed: bool, success_clears: bool, now: DateTime<Utc>) {
        self.running = self.running.saturating_sub(1);
        if failed {
            self.failures = self.failures.saturating_add(1);
            self.last_failure = Some(now);
        } else if success_clears {
            self.failures = 0;
            self.last_failure = None;
        }
    }

    fn forgettable(&self, limits: &Limits, now: DateTime<Utc>) -> bool {
        self.running == 0 && self.last_failure.is_none_or(|t| now - t >= limits.window())
    }
}

/// The keys of the two books an attempt counts in, in lock order: MACs
/// of the username and the address under the pepper, never the name or
/// the address itself (`c:<user>:<client>`, `u:<user>`: a user's rows
/// share a prefix).
#[derive(Debug, Clone)]
struct Keys {
    client: String,
    user: String,
}

impl Keys {
    fn new(pepper: &Pepper, user: &str, client: &str) -> Self {
        let user = pepper.mac("throttle-user", user);
        let client = pepper.mac("throttle-client", client);
        Self {
            client: format!("c:{user}:{client}"),
            user: format!("u:{user}"),
        }
    }
}

/// The rule, on the two records: reserve an attempt, or say how long to wait.
fn reserve(
    client: &mut Record,
    user: &mut Record,
    limits: &Limits,
    now: DateTime<Utc>,
) -> Result<(), Duration> {
    client.catch_up(limits, now);
    user.catch_up(limits, now);
    let by_client = client.wait(limits.per_client, limits, now);
    let by_user = user.wait(limits.per_user, limits, now);
    if let Some(wait) = by_client.max(by_user) {
        return Err(wait);
    }
    client.start(now);
    user.start(now);
    Ok(())
}

/// The rule, on the two records: end an attempt.
fn settle(client: &mut Record, user: &mut Record, failed: bool, now: DateTime<Utc>) {
    client.settle(failed, true, now);
    user.settle(failed, false, now);
}

/// Where the records are kept.
#[async_trait]
trait Books: Send + Sync {
    /// Applies [`reserve`] to the records of `keys`, atomically.
    async fn reserve(
        &self,
        keys: &Keys,
        limits: &Limits,
        now: DateTime<Utc>,
    ) -> Result<Result<(), Duration>>;
    /// Applies [`settle`] to the records of `keys`, atomically.
    async fn settle(&self, keys: &Keys, failed: bool, now: DateTime<Utc>) -> Result<()>;
    /// Deletes every record of the user whose key is `user` (`u:<mac>`)
    /// and of their addresses (`c:<mac>:…`).
    async fn forget(&self, user: &str) -> Result<()>;
}

/// The books in this process's memory.
#[derive(Debug)]
struct MemoryBooks {
    limits: Limits,
    records: Mutex<HashMap<String, Record>>,
}

impl MemoryBooks {
    fn with_two<T>(
        &self,
        keys: &Keys,
        now: DateTime<Utc>,
        f: impl FnOnce(&mut Record, &mut Record) -> T,
    ) -> T {
        let mut records = self.records.lock().unwrap_or_else(|p| p.into_inner());
        if records.len() > PRUNE_ABOVE {
            records.retain(|_, r| !r.forgettable(&self.limits, now));
        }
        let mut client = records.remove(&keys.client).unwrap_or_default();
        let mut user = records.remove(&keys.user).unwrap_or_default();
        let answer = f(&mut client, &mut user);
        records.insert(keys.client.clone(), client);
        records.insert(keys.user.clone(), user);
        answer
    }
}

#[async_trait]
impl Books for MemoryBooks {
    async fn reserve(
        &self,
        keys: &Keys,
        limits: &Limits,
        now: DateTime<Utc>,
    ) -> Result<Result<(), Duration>> {
        Ok(self.with_two(keys, now, |c, u| reserve(c, u, limits, now)))
    }

    async fn settle(&self, keys: &Keys, failed: bool, now: DateTime<Utc>) -> Result<()> {
        self.with_two(keys, now, |c, u| settle(c, u, failed, now));
        Ok(())
    }

    async fn forget(&self, user: &str) -> Result<()> {
        let clients = format!("c{}:", &user[1..]);
        let mut records = self.records.lock().unwrap_or_else(|p| p.into_inner());
        records.retain(|key, _| key != user && !key.starts_with(&clients));
        Ok(())
    }
}

/// The books in a PostgreSQL table, shared by every replica.
struct PostgresBooks {
    pool: deadpool_postgres::Pool,
    sweeper: tokio::task::JoinHandle<()>,
}

impl Drop for PostgresBooks {
    fn drop(&mut self) {
        self.sweeper.abort();
    }
}

fn db_err(e: impl std::fmt::Display) -> AuthError {
    AuthError::Throttle(e.to_string())
}

const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS login_throttle (
    key text PRIMARY KEY,
    failures integer NOT NULL DEFAULT 0,
    running integer NOT NULL DEFAULT 0,
    last_failure timestamptz,
    lease_until timestamptz
)";

/// An arbitrary constant: serializes the table's creation between replicas.
const CREATE_LOCK: i64 = 0x6c6f_6769_6e5f_7468;

/// A pool on the database at `url`, with the throttle's table made there
/// if it is not yet.
async fn books_table(url: &str) -> Result<deadpool_postgres::Pool> {
    crate::pg::pool_with_schema(url, 8, CREATE_LOCK, CREATE_TABLE)
        .await
        .map_err(AuthError::Throttle)
}

impl PostgresBooks {
    async fn open(url: &str, limits: Limits) -> Result<Self> {
        let pool = books_table(url).await?;
        let sweeper = tokio::spawn(sweep(pool.clone(), limits));
        Ok(Self { pool, sweeper })
    }

    /// Locks the two records of `keys` (creating them), lets `f` change
    /// them, and writes them back, in one transaction.
    async fn with_two<T>(
        &self,
        keys: &Keys,
        f: impl FnOnce(&mut Record, &mut Record) -> T + Send,
    ) -> Result<T> {
        let mut client = self.pool.get().await.map_err(db_err)?;
        let tx = client.transaction().await.map_err(db_err)?;
        // Both rows in one order everywhere: no deadlock between replicas.
        let mut ordered = [keys.client.as_str(), keys.user.as_str()];
        ordered.sort_unstable();
        tx.execute(
            "INSERT INTO login_throttle (key) VALUES ($1), ($2) ON CONFLICT DO NOTHING",
            &[&ordered[0], &ordered[1]],
        )
        .await
        .map_err(db_err)?;
        let rows = tx
            .query(
                "SELECT key, failures, running, last_failure, lease_until FROM login_throttle \
                 WHERE key = $1 OR key = $2 ORDER BY key FOR UPDATE",
                &[&ordered[0], &ordered[1]],
            )
            .await
            .map_err(db_err)?;
        let mut found: HashMap<String, Record> = rows
            .iter()
            .map(|r| {
                let record = Record {
                    failures: u32::try_from(r.get::<_, i32>(1)).unwrap_or(0),
                    running: u32::try_from(r.get::<_, i32>(2)).unwrap_or(0),
                    last_failure: r.get(3),
                    lease_until: r.get(4),
                };
                (r.get::<_, String>(0), record)
            })
            .collect();
        let mut client_record = found.remove(&keys.client).unwrap_or_default();
        let mut user_record = found.remove(&keys.user).unwrap_or_default();
        let answer = f(&mut client_record, &mut user_record);
        for (key, r) in [(&keys.client, &client_record), (&keys.user, &user_record)] {
            let failures = i32::try_from(r.failures).unwrap_or(i32::MAX);
            let running = i32::try_from(r.running).unwrap_or(i32::MAX);
            tx.execute(
                "UPDATE login_throttle SET failures = $2, running = $3, last_failure = $4, \
                 lease_until = $5 WHERE key = $1",
                &[key, &failures, &running, &r.last_failure, &r.lease_until],
            )
            .await
            .map_err(db_err)?;
        }
        tx.commit().await.map_err(db_err)?;
        Ok(answer)
    }
}

/// Deletes, once a minute, the rows with nothing left to remember.
async fn sweep(pool: deadpool_postgres::Pool, limits: Limits) {
    let mut every = tokio::time::interval(Duration::from_secs(60));
    loop {
        every.tick().await;
        let forgotten = Utc::now() - limits.window();
        let deleted = async {
            let client = pool.get().await.map_err(db_err)?;
            client
                .execute(
                    "DELETE FROM login_throttle WHERE running = 0 \
                     AND (last_failure IS NULL OR last_failure <= $1)",
                    &[&forgotten],
                )
                .await
                .map_err(db_err)
        }
        .await;
        if let Err(e) = deleted {
            tracing::warn!(error = %e, "login throttle sweep failed");
        }
    }
}

#[async_trait]
impl Books for PostgresBooks {
    async fn reserve(
        &self,
        keys: &Keys,
        limits: &Limits,
        now: DateTime<Utc>,
    ) -> Result<Result<(), Duration>> {
        let limits = *limits;
        self.with_two(keys, move |c, u| reserve(c, u, &limits, now))
            .await
    }

    async fn settle(&self, keys: &Keys, failed: bool, now: DateTime<Utc>) -> Result<()> {
        self.with_two(keys, move |c, u| settle(c, u, failed, now))
            .await
    }

    async fn forget(&self, user: &str) -> Result<()> {
        // `u:<mac>` and `c:<mac>:<client mac>`: MACs are hex, so the
        // pattern has no LIKE wildcard in it.
        let clients = format!("c{}:%", &user[1..]);
        let client = self.pool.get().await.map_err(db_err)?;
        client
            .execute(
                "DELETE FROM login_throttle WHERE key = $1 OR key LIKE $2",
                &[&user, &clients],
            )
            .await
            .map_err(db_err)?;
        Ok(())
    }
}

fn is_postgres(store_url: &str) -> bool {
    store_url.starts_with("postgres://") || store_url.starts_with("postgresql://")
}

/// What [`copy_books`] did with the throttle's books.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BooksCopied {
    /// This many records were copied (from table to table).
    Records(u64),
    /// The source keeps its books in memory (SQLite): nothing is stored
    /// to copy; the target starts with empty books.
    NoneStored,
    /// The target keeps its books in memory (SQLite): the source's records
    /// cannot go with it, and it starts with empty books.
    NotKept,
}

/// Rows copied per statement by [`copy_books`].
const BOOKS_BATCH: i64 = 10_000;

/// Copies the throttle's books from beside the store at `from` to beside
/// the store at `to` (both PostgreSQL; otherwise see [`BooksCopied`]), a
/// batch at a time in key order. A record the target holds already is
/// overwritten, so running it again after a crash is harmless.
pub async fn copy_books(from: &str, to: &str) -> Result<BooksCopied> {
    if !is_postgres(from) {
        return Ok(BooksCopied::NoneStored);
    }
    if !is_postgres(to) {
        return Ok(BooksCopied::NotKept);
    }
    let (source, target) = (books_table(from).await?, books_table(to).await?);
    let (source, target) = (
        source.get().await.map_err(db_err)?,
        target.get().await.map_err(db_err)?,
    );
    let (mut after, mut copied) = (String::new(), 0);
    loop {
        let rows = source
            .query(
                "SELECT key, failures, running, last_failure, lease_until FROM login_throttle \
                 WHERE key > $1 ORDER BY key LIMIT $2",
                &[&after, &BOOKS_BATCH],
            )
            .await
            .map_err(db_err)?;
        let Some(last) = rows.last() else {
            return Ok(BooksCopied::Records(copied));
        };
        after = last.get(0);
        let column = |i| {
            rows.iter()
                .map(move |r| r.get::<_, Option<DateTime<Utc>>>(i))
        };
        let keys: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
        let failures: Vec<i32> = rows.iter().map(|r| r.get(1)).collect();
        let running: Vec<i32> = rows.iter().map(|r| r.get(2)).collect();
        let last_failure: Vec<_> = column(3).collect();
        let lease_until: Vec<_> = column(4).collect();
        target
            .execute(
                "INSERT INTO login_throttle (key, failures, running, last_failure, lease_until) \
                 SELECT * FROM unnest($1::text[], $2::int[], $3::int[], $4::timestamptz[], \
                 $5::timestamptz[]) ON CONFLICT (key) DO UPDATE SET failures = excluded.failures, \
                 running = excluded.running, last_failure = excluded.last_failure, \
                 lease_until = excluded.lease_until",
                &[&keys, &failures, &running, &last_failure, &lease_until],
            )
            .await
            .map_err(db_err)?;
        copied += rows.len() as u64;
    }
}

/// Failed-login bookkeeping by normalized username and client address
/// (each kept as its MAC under `pepper`).
#[derive(Clone)]
pub struct LoginThrottle {
    limits: Limits,
    pepper: Pepper,
    books: Arc<dyn Books>,
}

impl LoginThrottle {
    /// A throttle keeping its books in this process's memory.
    pub fn in_memory(limits: Limits, pepper: Pepper) -> Self {
        let limits = Self::sane(limits);
        Self {
            limits,
            pepper,
            books: Arc::new(MemoryBooks {
                limits,
                records: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// A throttle whose books follow the event store at `store_url`: in
    /// PostgreSQL for `postgres://` (shared by every replica), else in memory.
    pub async fn open(store_url: &str, limits: Limits, pepper: Pepper) -> Result<Self> {
        if !is_postgres(store_url) {
            return Ok(Self::in_memory(limits, pepper));
        }
        let limits = Self::sane(limits);
        Ok(Self {
            limits,
            pepper,
            books: Arc::new(PostgresBooks::open(store_url, limits).await?),
        })
    }

    /// Each limit at least one free attempt; the username's at least the address's.
    fn sane(limits: Limits) -> Limits {
        Limits {
            per_client: limits.per_client.max(1),
            per_user: limits.per_user.max(limits.per_client).max(1),
            ..limits
        }
    }

    /// Forgets every record of the username `user` (normalized), from
    /// every address: an erased account leaves nothing here.
    pub async fn forget(&self, user: &str) -> Result<()> {
        let keys = Keys::new(&self.pepper, user, "");
        self.books.forget(&keys.user).await
    }

    /// Reserves an attempt to log in as `user` from `client`, or answers
    /// [`AuthError::Throttled`] with how long to wait (whole seconds, at
    /// least one).
    pub async fn reserve(&self, user: &str, client: &str) -> Result<Attempt> {
        self.reserve_at(user, client, Utc::now()).await
    }

    async fn reserve_at(&self, user: &str, client: &str, now: DateTime<Utc>) -> Result<Attempt> {
        let keys = Keys::new(&self.pepper, user, client);
        match self.books.reserve(&keys, &self.limits, now).await? {
            Ok(()) => Ok(Attempt {
                books: Some(self.books.clone()),
                keys,
            }),
            Err(wait) => Err(AuthError::Throttled {
                retry_after_secs: wait.as_secs_f64().ceil().max(1.0) as u64,
            }),
        }
    }
}

/// A reserved login attempt, counted as running until settled. Dropped
/// unsettled (an error, a cancelled request), it is settled as a failure in
/// the background.
#[must_use = "an attempt not settled counts as a failure"]
pub struct Attempt {
    books: Option<Arc<dyn Books>>,
    keys: Keys,
}

impl Attempt {
    /// The password was right: the address's failures are cleared.
    pub async fn succeeded(self) -> Result<()> {
        self.settle(false, Utc::now()).await
    }

    /// The password was wrong.
    pub async fn failed(self) -> Result<()> {
        self.settle(true, Utc::now()).await
    }

    async fn settle(mut self, failed: bool, now: DateTime<Utc>) -> Result<()> {
        match self.books.take() {
            Some(books) => books.settle(&self.keys, failed, now).await,
            None => Ok(()),
        }
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        let Some(books) = self.books.take() else {
            return;
        };
        let keys = self.keys.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(e) = books.settle(&keys, true, Utc::now()).await {
                    tracing::warn!(error = %e, "an abandoned login attempt was not settled");
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pepper() -> Pepper {
        Pepper::new(crate::seal::DataKey::from_hex(&"5a".repeat(32)).unwrap())
    }

    fn throttle(per_client: u32, per_user: u32) -> LoginThrottle {
        let limits = Limits {
            per_client,
            per_user,
            base_pause: Duration::from_secs(1),
            window: Duration::from_secs(900),
        };
        LoginThrottle::in_memory(limits, pepper())
    }

    fn wait_of(answer: Result<Attempt>) -> u64 {
        match answer {
            Err(AuthError::Throttled { retry_after_secs }) => retry_after_secs,
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("not throttled"),
        }
    }

    async fn fail(t: &LoginThrottle, user: &str, client: &str, now: DateTime<Utc>) {
        let attempt = t.reserve_at(user, client, now).await.unwrap();
        attempt.settle(true, now).await.unwrap();
    }

    #[tokio::test]
    async fn copied_books_throttle_on_the_target_as_on_the_source() {
        use event_store::testing::TempDatabase;
        let Some(from) = TempDatabase::create("throttle_copy_from").await else {
            return;
        };
        let Some(to) = TempDatabase::create("throttle_copy_to").await else {
            return;
        };
        let limits = Limits {
            per_client: 2,
            per_user: 10,
            base_pause: Duration::from_secs(60),
            window: Duration::from_secs(900),
        };
        let source = LoginThrottle::open(from.url(), limits, pepper())
            .await
            .unwrap();
        for _ in 0..2 {
            source
                .reserve("ada", "ip")
                .await
                .unwrap()
                .failed()
                .await
                .unwrap();
        }
        assert!(source.reserve("ada", "ip").await.is_err());
        // The table holds MACs, never the name or the address.
        let pool = books_table(from.url()).await.unwrap();
        let keys: Vec<String> = pool
            .get()
            .await
            .unwrap()
            .query("SELECT key FROM login_throttle", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(keys.len(), 2);
        assert!(
            keys.iter().all(|k| !k.contains("ada") && !k.contains("ip")),
            "{keys:?}"
        );
        let copied = copy_books(from.url(), to.url()).await.unwrap();
        assert_eq!(
            copied,
            BooksCopied::Records(2),
            "the address's and the name's"
        );
        let target = LoginThrottle::open(to.url(), limits, pepper())
            .await
            .unwrap();
        assert!(wait_of(target.reserve("ada", "ip").await) > 0);
        assert!(target.reserve("bob", "ip").await.is_ok());
        // An erased user's records go, from every address.
        source
            .reserve("bob", "ip2")
            .await
            .unwrap()
            .failed()
            .await
            .unwrap();
        source.forget("ada").await.unwrap();
        let attempt = source
            .reserve("ada", "ip")
            .await
            .expect("ada's books are gone");
        attempt.succeeded().await.unwrap();
        let count = async || -> i64 {
            let client = pool.get().await.unwrap();
            let row = client.query_one("SELECT count(*) FROM login_throttle", &[]);
            row.await.unwrap().get(0)
        };
        assert_eq!(count().await, 4, "bob's two, and ada's new two");
        source.forget("ada").await.unwrap();
        assert_eq!(count().await, 2, "bob's two");
        // Run again (as after a crash): the same two, overwritten.
        assert_eq!(
            copy_books(from.url(), to.url()).await.unwrap(),
            BooksCopied::Records(2)
        );
        assert!(wait_of(target.reserve("ada", "ip").await) > 0);
        let sqlite = "sqlite://./data/auth.db";
        assert_eq!(
            copy_books(sqlite, to.url()).await.unwrap(),
            BooksCopied::NoneStored
        );
        assert_eq!(
            copy_books(from.url(), sqlite).await.unwrap(),
            BooksCopied::NotKept
        );
    }

    #[tokio::test]
    async fn running_attempts_count_against_the_limit() {
        let t = throttle(3, 10);
        let mut running = vec![];
        for _ in 0..3 {
            running.push(t.reserve("a", "ip").await.unwrap());
        }
        assert!(
            t.reserve("a", "ip").await.is_err(),
            "a fourth while three run"
        );
        assert!(t.reserve("a", "other-ip").await.is_ok(), "another address");
        for attempt in running {
            attempt.failed().await.unwrap();
        }
        assert!(
            t.reserve("a", "ip").await.is_err(),
            "three failures: a pause"
        );
    }

    #[tokio::test]
    async fn pauses_double_after_the_free_attempts_and_stop_at_the_window() {
        let t = throttle(2, 100);
        let start = Utc::now();
        for _ in 0..2 {
            fail(&t, "a", "ip", start).await;
        }
        let mut now = start;
        let mut pauses = vec![];
        for _ in 0..10 {
            let wait = wait_of(t.reserve_at("a", "ip", now).await);
            pauses.push(wait);
            now += TimeDelta::seconds(wait as i64);
            fail(&t, "a", "ip", now).await;
        }
        assert_eq!(pauses, [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]);
        assert_eq!(
            wait_of(t.reserve_at("a", "ip", now).await),
            900,
            "the longest"
        );
        // A whole window without a failure: the failures are forgotten.
        now += TimeDelta::seconds(900);
        for _ in 0..2 {
            fail(&t, "a", "ip", now).await;
        }
    }

    #[tokio::test]
    async fn a_success_clears_the_address_but_not_the_username() {
        let t = throttle(2, 3);
        t.reserve("a", "ip").await.unwrap().failed().await.unwrap();
        t.reserve("a", "ip")
            .await
            .unwrap()
            .succeeded()
            .await
            .unwrap();
        t.reserve("a", "ip").await.unwrap().failed().await.unwrap();
        let attempt = t.reserve("a", "ip").await.expect("the address was cleared");
        attempt.failed().await.unwrap();
        assert!(
            t.reserve("a", "ip3").await.is_err(),
            "the username's ceiling"
        );
        assert!(t.reserve("b", "ip3").await.is_ok());
    }

    #[tokio::test]
    async fn an_attempt_whose_process_died_counts_as_a_failure_after_its_lease() {
        let t = throttle(1, 10);
        let start = Utc::now();
        let attempt = t.reserve_at("a", "ip", start).await.unwrap();
        std::mem::forget(attempt); // the process died: never settled
        assert!(
            t.reserve_at("a", "ip", start).await.is_err(),
            "still running"
        );
        let after_lease = start + LEASE;
        // Counted as a failure at the end of its lease: a pause from then.
        assert_eq!(wait_of(t.reserve_at("a", "ip", after_lease).await), 1);
        assert!(
            t.reserve_at("a", "ip", after_lease + TimeDelta::seconds(1))
                .await
                .is_ok()
        );
    }

    #[tokio::test]
    async fn a_dropped_attempt_is_settled_as_a_failure() {
        let t = throttle(1, 10);
        drop(t.reserve("a", "ip").await.unwrap());
        tokio::task::yield_now().await;
        assert_eq!(wait_of(t.reserve("a", "ip").await), 1);
    }
}
