//! One histogram for every latency and size the platform counts: the
//! store's appends and group commits, and the services' requests and
//! stages. Recording is a few atomic additions, never a lock; writing is
//! the Prometheus text format (0.0.4).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// Latency bucket bounds, in seconds: 0.5 ms to 5 s.
pub const LATENCY_SECONDS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// A histogram of fixed buckets. The sum is kept in whole `unit`s
/// (nanoseconds for seconds, say) so that it too is one atomic addition.
pub struct Histogram {
    bounds: &'static [f64],
    unit: f64,
    buckets: Box<[AtomicU64]>,
    count: AtomicU64,
    sum: AtomicU64,
}

impl Histogram {
    /// Buckets bounded by `bounds` (ascending), the sum counted in `unit`s.
    pub fn new(bounds: &'static [f64], unit: f64) -> Self {
        Self {
            bounds,
            unit,
            buckets: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum: AtomicU64::new(0),
        }
    }

    /// Latencies: [`LATENCY_SECONDS`], the sum kept in nanoseconds.
    pub fn seconds() -> Self {
        Self::new(&LATENCY_SECONDS, 1e-9)
    }

    /// Counts one `value`.
    pub fn observe(&self, value: f64) {
        if let Some(i) = self.bounds.iter().position(|&b| value <= b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        let units = (value / self.unit).round() as u64;
        self.sum.fetch_add(units, Ordering::Relaxed);
    }

    /// How many values were counted.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// The samples of family `name` for this series, labelled `labels`
    /// (`k="v",…`, not empty): cumulative buckets, `+Inf`, sum and count.
    pub fn write(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        for (bound, n) in self.bounds.iter().zip(&self.buckets) {
            cumulative += n.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{bound}\"}} {cumulative}");
        }
        let count = self.count();
        let sum = self.sum.load(Ordering::Relaxed) as f64 * self.unit;
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
        let _ = writeln!(out, "{name}_count{{{labels}}} {count}");
    }
}

/// The `# HELP` and `# TYPE` lines of family `name`, of `kind`
/// (`histogram`, `counter`, `gauge`).
pub fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative_and_the_sum_is_in_units() {
        static SIZES: [f64; 3] = [1.0, 4.0, 16.0];
        let h = Histogram::new(&SIZES, 1.0);
        for v in [1.0, 3.0, 4.0, 100.0] {
            h.observe(v);
        }
        let mut out = String::new();
        h.write(&mut out, "x", "a=\"b\"");
        assert_eq!(
            out,
            "x_bucket{a=\"b\",le=\"1\"} 1\nx_bucket{a=\"b\",le=\"4\"} 3\n\
             x_bucket{a=\"b\",le=\"16\"} 3\nx_bucket{a=\"b\",le=\"+Inf\"} 4\n\
             x_sum{a=\"b\"} 108\nx_count{a=\"b\"} 4\n"
        );
    }

    #[test]
    fn seconds_keep_their_sum_to_the_nanosecond() {
        let h = Histogram::seconds();
        h.observe(0.0007);
        h.observe(0.02);
        let mut out = String::new();
        h.write(&mut out, "t", "s=\"1\"");
        assert!(out.contains("t_bucket{s=\"1\",le=\"0.001\"} 1\n"), "{out}");
        assert!(out.contains("t_bucket{s=\"1\",le=\"0.025\"} 2\n"), "{out}");
        assert!(out.contains("t_sum{s=\"1\"} 0.0207"), "{out}");
        assert_eq!(h.count(), 2);
    }
}
