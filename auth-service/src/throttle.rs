//! Login throttling: after `max_failures` failed logins for one username
//! within `window`, logins for it are refused until the oldest failure
//! leaves the window. A successful login clears the record.
//!
//! Kept in memory per instance (failed logins are not events): a restart or
//! another replica starts with a clean slate.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How many usernames may have failures on record before old ones are pruned.
const PRUNE_ABOVE: usize = 100_000;

/// Failed-login bookkeeping by normalized username.
pub struct LoginThrottle {
    max_failures: u32,
    window: Duration,
    failures: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl LoginThrottle {
    /// A throttle refusing logins after `max_failures` failures within `window`.
    pub fn new(max_failures: u32, window: Duration) -> Self {
        Self {
            max_failures: max_failures.max(1),
            window,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// `Err(seconds to wait)` if logins for `user` are throttled now.
    pub fn check(&self, user: &str) -> Result<(), u64> {
        let now = Instant::now();
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let Some(times) = map.get_mut(user) else {
            return Ok(());
        };
        while times
            .front()
            .is_some_and(|t| now.duration_since(*t) >= self.window)
        {
            times.pop_front();
        }
        if times.len() < self.max_failures as usize {
            return Ok(());
        }
        let oldest = times[times.len() - self.max_failures as usize];
        let wait = self.window.saturating_sub(now.duration_since(oldest));
        Err(wait.as_secs_f64().ceil().max(1.0) as u64)
    }

    /// Records a failed login for `user`.
    pub fn record_failure(&self, user: &str) {
        let now = Instant::now();
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() > PRUNE_ABOVE {
            let window = self.window;
            map.retain(|_, t| t.back().is_some_and(|t| now.duration_since(*t) < window));
        }
        let times = map.entry(user.to_owned()).or_default();
        times.push_back(now);
        while times.len() > self.max_failures as usize {
            times.pop_front();
        }
    }

    /// Forgets the failures of `user` (after a successful login).
    pub fn reset(&self, user: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(user);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_after_max_failures_until_reset() {
        let t = LoginThrottle::new(3, Duration::from_secs(60));
        for _ in 0..3 {
            assert!(t.check("a").is_ok());
            t.record_failure("a");
        }
        let wait = t.check("a").unwrap_err();
        assert!((59..=60).contains(&wait), "{wait}");
        assert!(t.check("b").is_ok());
        t.reset("a");
        assert!(t.check("a").is_ok());
    }

    #[test]
    fn failures_leave_the_window() {
        let t = LoginThrottle::new(1, Duration::from_millis(50));
        t.record_failure("a");
        assert!(t.check("a").is_err());
        std::thread::sleep(Duration::from_millis(60));
        assert!(t.check("a").is_ok());
    }
}
