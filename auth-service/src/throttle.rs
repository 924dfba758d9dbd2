//! Login throttling. An attempt is *reserved* before its password is
//! checked, under one lock, and counts against the limits while it runs, so
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
//! A guesser from one address can no longer lock the owner out for the whole
//! window: the owner's address has its own book, and the username ceiling
//! only slows every address down, with pauses that start short.
//!
//! Failures are forgotten `window` after the last one. The books live in this
//! process's memory: a restart starts clean, and each replica of
//! auth-service keeps its own (the README's Security section says so).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Past this many records in a book, records with nothing to remember are
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

/// Failed and running attempts of one key.
#[derive(Debug, Default, Clone)]
struct Record {
    failures: u32,
    running: u32,
    last_failure: Option<Instant>,
}

impl Record {
    /// How long an attempt must wait now, if it must, with `free` attempts
    /// allowed before pauses start.
    fn wait(&mut self, free: u32, limits: &Limits, now: Instant) -> Option<Duration> {
        if self
            .last_failure
            .is_some_and(|t| now.duration_since(t) >= limits.window)
        {
            self.failures = 0;
            self.last_failure = None;
        }
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
        let until = self.last_failure.map_or(now, |t| t + pause);
        (now < until).then(|| until - now)
    }

    fn forgettable(&self, window: Duration, now: Instant) -> bool {
        self.running == 0
            && self
                .last_failure
                .is_none_or(|t| now.duration_since(t) >= window)
    }
}

#[derive(Debug)]
struct Book<K>(HashMap<K, Record>);

impl<K: Hash + Eq + Clone> Book<K> {
    fn record(&mut self, key: &K, window: Duration, now: Instant) -> &mut Record {
        if self.0.len() > PRUNE_ABOVE && !self.0.contains_key(key) {
            self.0.retain(|_, r| !r.forgettable(window, now));
        }
        self.0.entry(key.clone()).or_default()
    }

    /// Ends a running attempt: a failure is recorded; a success clears the
    /// failures if `success_clears`.
    fn settle(&mut self, key: &K, failed: bool, success_clears: bool, now: Instant) {
        if let Some(r) = self.0.get_mut(key) {
            r.running = r.running.saturating_sub(1);
            if failed {
                r.failures = r.failures.saturating_add(1);
                r.last_failure = Some(now);
            } else if success_clears {
                r.failures = 0;
                r.last_failure = None;
            }
        }
    }
}

#[derive(Debug)]
struct Books {
    clients: Book<(String, String)>,
    users: Book<String>,
}

/// Failed-login bookkeeping by normalized username and client address.
#[derive(Debug)]
pub struct LoginThrottle {
    limits: Limits,
    books: Mutex<Books>,
}

/// A reserved login attempt: counted as running until settled. Dropped
/// without [`Attempt::succeeded`] (a wrong password, an error, a cancelled
/// request), it counts as a failure.
#[derive(Debug)]
#[must_use = "an attempt not settled counts as a failure"]
pub struct Attempt<'a> {
    throttle: &'a LoginThrottle,
    user: String,
    client: String,
    settled: bool,
}

impl Attempt<'_> {
    /// The password was right: the address's failures are cleared.
    pub fn succeeded(mut self) {
        self.settle(false, Instant::now());
    }

    #[cfg(test)]
    fn failed_at(mut self, now: Instant) {
        self.settle(true, now);
    }

    fn settle(&mut self, failed: bool, now: Instant) {
        if std::mem::replace(&mut self.settled, true) {
            return;
        }
        let mut books = self.throttle.lock();
        let key = (
            std::mem::take(&mut self.user),
            std::mem::take(&mut self.client),
        );
        books.clients.settle(&key, failed, true, now);
        books.users.settle(&key.0, failed, false, now);
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        self.settle(true, Instant::now());
    }
}

impl LoginThrottle {
    /// A throttle with these limits (each at least one free attempt).
    pub fn new(limits: Limits) -> Self {
        Self {
            limits: Limits {
                per_client: limits.per_client.max(1),
                per_user: limits.per_user.max(limits.per_client).max(1),
                ..limits
            },
            books: Mutex::new(Books {
                clients: Book(HashMap::new()),
                users: Book(HashMap::new()),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Books> {
        self.books.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reserves an attempt to log in as `user` from `client`, or says how
    /// long to wait (whole seconds, at least one).
    pub fn reserve(&self, user: &str, client: &str) -> Result<Attempt<'_>, u64> {
        self.reserve_at(user, client, Instant::now())
    }

    fn reserve_at(&self, user: &str, client: &str, now: Instant) -> Result<Attempt<'_>, u64> {
        let l = self.limits;
        let key = (user.to_owned(), client.to_owned());
        let mut books = self.lock();
        let by_client = books
            .clients
            .record(&key, l.window, now)
            .wait(l.per_client, &l, now);
        let by_user = books
            .users
            .record(&key.0, l.window, now)
            .wait(l.per_user, &l, now);
        if let Some(wait) = by_client.max(by_user) {
            return Err(wait.as_secs_f64().ceil().max(1.0) as u64);
        }
        books.clients.record(&key, l.window, now).running += 1;
        books.users.record(&key.0, l.window, now).running += 1;
        drop(books);
        Ok(Attempt {
            throttle: self,
            user: key.0,
            client: key.1,
            settled: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn throttle(per_client: u32, per_user: u32) -> LoginThrottle {
        LoginThrottle::new(Limits {
            per_client,
            per_user,
            base_pause: Duration::from_secs(1),
            window: Duration::from_secs(900),
        })
    }

    #[test]
    fn running_attempts_count_against_the_limit() {
        let t = throttle(3, 10);
        let running: Vec<_> = (0..3).map(|_| t.reserve("a", "ip").unwrap()).collect();
        assert!(t.reserve("a", "ip").is_err(), "a fourth while three run");
        assert!(
            t.reserve("a", "other-ip").is_ok(),
            "another address has its own book"
        );
        drop(running);
        assert!(t.reserve("a", "ip").is_err(), "three failures: now a pause");
    }

    #[test]
    fn pauses_double_after_the_free_attempts_and_stop_at_the_window() {
        let t = throttle(2, 100);
        let start = Instant::now();
        for _ in 0..2 {
            t.reserve_at("a", "ip", start).unwrap().failed_at(start);
        }
        let mut now = start;
        let mut pauses = vec![];
        for _ in 0..10 {
            let wait = t.reserve_at("a", "ip", now).unwrap_err();
            pauses.push(wait);
            now += Duration::from_secs(wait);
            t.reserve_at("a", "ip", now).unwrap().failed_at(now);
        }
        assert_eq!(pauses, [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]);
        assert_eq!(
            t.reserve_at("a", "ip", now).unwrap_err(),
            900,
            "the longest pause"
        );
        // A whole window without a failure: the failures are forgotten.
        now += Duration::from_secs(900);
        let free: Vec<_> = (0..2)
            .map(|_| t.reserve_at("a", "ip", now).unwrap())
            .collect();
        drop(free);
    }

    #[test]
    fn a_success_clears_the_address_but_not_the_username() {
        let t = throttle(2, 3);
        drop(t.reserve("a", "ip").unwrap());
        t.reserve("a", "ip").unwrap().succeeded();
        drop(t.reserve("a", "ip").unwrap());
        drop(
            t.reserve("a", "ip")
                .unwrap_or_else(|w| panic!("the address was cleared: {w}")),
        );
        assert!(
            t.reserve("a", "ip3").is_err(),
            "three failures: the username's ceiling"
        );
        assert!(t.reserve("b", "ip3").is_ok());
    }

    #[test]
    fn failures_are_forgotten_after_the_window() {
        let t = throttle(1, 1);
        let start = Instant::now();
        t.reserve_at("a", "ip", start).unwrap().failed_at(start);
        assert!(t.reserve_at("a", "ip", start).is_err());
        let later = start + Duration::from_secs(900);
        t.reserve_at("a", "ip", later).unwrap().failed_at(later);
    }
}
