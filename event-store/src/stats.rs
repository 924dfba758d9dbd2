//! What a store has done, for metrics: how long appends take (queued to
//! committed and answered), how many appends each group commit takes, and
//! how many feed subscriptions are open. Counters only: recording is a few
//! atomic additions, never a lock.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

/// Append latency bucket bounds, in seconds.
const LATENCY_BOUNDS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// Group commit size bucket bounds, in appends.
const GROUP_BOUNDS: [f64; 9] = [1.0, 2.0, 4.0, 8.0, 16.0, 64.0, 256.0, 512.0, 1024.0];

/// A histogram of fixed buckets; the sum is kept in `unit`s (nanoseconds,
/// or appends) so that it too is one atomic addition.
struct Histogram<const N: usize> {
    bounds: &'static [f64; N],
    unit: f64,
    buckets: [AtomicU64; N],
    count: AtomicU64,
    sum: AtomicU64,
}

impl<const N: usize> Histogram<N> {
    fn new(bounds: &'static [f64; N], unit: f64) -> Self {
        Self {
            bounds,
            unit,
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            count: AtomicU64::new(0),
            sum: AtomicU64::new(0),
        }
    }

    fn observe(&self, value: f64) {
        if let Some(i) = self.bounds.iter().position(|&b| value <= b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum
            .fetch_add((value / self.unit) as u64, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str, labels: &str) {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} histogram");
        let mut cumulative = 0;
        for (bound, n) in self.bounds.iter().zip(&self.buckets) {
            cumulative += n.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{bound}\"}} {cumulative}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let sum = self.sum.load(Ordering::Relaxed) as f64 * self.unit;
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
        let _ = writeln!(out, "{name}_count{{{labels}}} {count}");
    }
}

/// One store's counters (shared by every handle to it).
pub struct StoreStats {
    appends: Histogram<12>,
    groups: Histogram<9>,
    subscribers: AtomicI64,
}

impl Default for StoreStats {
    fn default() -> Self {
        Self {
            appends: Histogram::new(&LATENCY_BOUNDS, 1e-9),
            groups: Histogram::new(&GROUP_BOUNDS, 1.0),
            subscribers: AtomicI64::new(0),
        }
    }
}

/// Counts one open feed subscription while it lives.
pub(crate) struct Subscriber(Arc<StoreStats>);

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.0.subscribers.fetch_sub(1, Ordering::Relaxed);
    }
}

impl StoreStats {
    pub(crate) fn append_took(&self, took: Duration) {
        self.appends.observe(took.as_secs_f64());
    }

    pub(crate) fn group_committed(&self, appends: usize) {
        self.groups.observe(appends as f64);
    }

    pub(crate) fn subscriber(self: &Arc<Self>) -> Subscriber {
        self.subscribers.fetch_add(1, Ordering::Relaxed);
        Subscriber(self.clone())
    }

    /// Feed subscriptions open now (read models and outside consumers).
    pub fn subscribers(&self) -> i64 {
        self.subscribers.load(Ordering::Relaxed)
    }

    /// The Prometheus text of these counters, labelled `store="<store>"`:
    /// `event_store_append_duration_seconds`, `event_store_group_commit_appends`
    /// (histograms) and `event_store_feed_subscribers` (a gauge).
    pub fn render(&self, store: &str) -> String {
        let labels = format!("store=\"{store}\"");
        let mut out = String::new();
        self.appends.render(
            &mut out,
            "event_store_append_duration_seconds",
            "Time from queueing an append to its answer (commit included).",
            &labels,
        );
        self.groups.render(
            &mut out,
            "event_store_group_commit_appends",
            "Appends committed together in one transaction.",
            &labels,
        );
        let _ = writeln!(
            out,
            "# HELP event_store_feed_subscribers Open subscriptions to the global feed.\n\
             # TYPE event_store_feed_subscribers gauge\n\
             event_store_feed_subscribers{{{labels}}} {}",
            self.subscribers()
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_land_in_cumulative_buckets_and_subscribers_are_released() {
        let stats = Arc::new(StoreStats::default());
        stats.append_took(Duration::from_micros(700));
        stats.append_took(Duration::from_millis(20));
        stats.group_committed(3);
        let held = stats.subscriber();
        let text = stats.render("s");
        for line in [
            "event_store_append_duration_seconds_bucket{store=\"s\",le=\"0.001\"} 1",
            "event_store_append_duration_seconds_bucket{store=\"s\",le=\"0.025\"} 2",
            "event_store_append_duration_seconds_count{store=\"s\"} 2",
            "event_store_group_commit_appends_bucket{store=\"s\",le=\"2\"} 0",
            "event_store_group_commit_appends_bucket{store=\"s\",le=\"4\"} 1",
            "event_store_group_commit_appends_sum{store=\"s\"} 3",
            "event_store_feed_subscribers{store=\"s\"} 1",
        ] {
            assert!(text.contains(line), "{line} not in\n{text}");
        }
        drop(held);
        assert_eq!(stats.subscribers(), 0);
    }
}
