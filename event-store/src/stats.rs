//! What a store has done, for metrics: how long appends take (queued to
//! committed and answered), how many appends each group commit takes, and
//! how many feed subscriptions are open. Counters only: recording is a few
//! atomic additions, never a lock.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use metrics_text::{Histogram, header};

/// Group commit size bucket bounds, in appends.
const GROUP_BOUNDS: [f64; 9] = [1.0, 2.0, 4.0, 8.0, 16.0, 64.0, 256.0, 512.0, 1024.0];

/// One store's counters (shared by every handle to it).
pub struct StoreStats {
    appends: Histogram,
    groups: Histogram,
    subscribers: AtomicI64,
}

impl Default for StoreStats {
    fn default() -> Self {
        Self {
            appends: Histogram::seconds(),
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
        for (name, help, histogram) in [
            (
                "event_store_append_duration_seconds",
                "Time from queueing an append to its answer (commit included).",
                &self.appends,
            ),
            (
                "event_store_group_commit_appends",
                "Appends committed together in one transaction.",
                &self.groups,
            ),
        ] {
            header(&mut out, name, "histogram", help);
            histogram.write(&mut out, name, &labels);
        }
        let name = "event_store_feed_subscribers";
        header(
            &mut out,
            name,
            "gauge",
            "Open subscriptions to the global feed.",
        );
        let _ = writeln!(out, "{name}{{{labels}}} {}", self.subscribers());
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
