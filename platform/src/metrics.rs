//! Request counts and latency histograms in the Prometheus text format,
//! labelled from fixed sets only (the caller's job: no label value may come
//! from what a client sends), rendered from a copy so that a scrape never
//! holds the lock every request takes.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::future::Future;
use std::sync::{Arc, Mutex, RwLock};

use metrics_text::{Histogram, header};

/// One series: a latency histogram, shared so that a scrape renders a copy
/// of the map's handles, never holding the lock that requests take.
type Series = Arc<Histogram>;

/// `<prefix>_requests_total` and `<prefix>_request_duration_seconds`, by
/// three labels.
pub struct Histograms {
    prefix: &'static str,
    labels: [&'static str; 3],
    series: Mutex<HashMap<[&'static str; 3], Series>>,
}

impl Histograms {
    /// Series named `<prefix>_…`, labelled `labels`.
    pub fn new(prefix: &'static str, labels: [&'static str; 3]) -> Self {
        Self {
            prefix,
            labels,
            series: Mutex::default(),
        }
    }

    /// Counts one request with these label values, answered in `seconds`.
    pub fn observe(&self, values: [&'static str; 3], seconds: f64) {
        let mut series = self.series.lock().unwrap_or_else(|p| p.into_inner());
        series.entry(values).or_insert_with(fresh).observe(seconds);
    }

    /// The text exposition of everything observed.
    pub fn render(&self) -> String {
        let series = sorted(&self.series);
        let [a, b, c] = self.labels;
        let label_text =
            |k: &[&str; 3]| format!("{a}=\"{}\",{b}=\"{}\",{c}=\"{}\"", k[0], k[1], k[2]);
        let p = self.prefix;
        let mut out = String::new();
        let total = format!("{p}_requests_total");
        header(&mut out, &total, "counter", "Requests answered.");
        for (k, s) in &series {
            let _ = writeln!(out, "{total}{{{}}} {}", label_text(k), s.count());
        }
        let duration = format!("{p}_request_duration_seconds");
        header(&mut out, &duration, "histogram", "Time to answer requests.");
        for (k, s) in &series {
            s.write(&mut out, &duration, &label_text(k));
        }
        out
    }
}

/// A copy of `series` (taken under the lock, rendered after it), by key.
fn sorted<K: Ord + Copy>(series: &Mutex<HashMap<K, Series>>) -> Vec<(K, Series)> {
    let series = series.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let mut sorted: Vec<_> = series.into_iter().collect();
    sorted.sort_unstable_by_key(|(k, _)| *k);
    sorted
}

fn fresh() -> Series {
    Arc::new(Histogram::seconds())
}

/// How long each stage of a piece of work takes: one histogram family,
/// `<name>`, labelled `stage` (from a fixed set, like every label here).
pub struct Stages {
    name: &'static str,
    help: &'static str,
    series: Mutex<HashMap<&'static str, Series>>,
}

impl Stages {
    /// The family `name` (ending in `_seconds`), described by `help`.
    pub fn new(name: &'static str, help: &'static str) -> Self {
        Self {
            name,
            help,
            series: Mutex::default(),
        }
    }

    /// Counts one pass through `stage`, which took `took`.
    pub fn observe(&self, stage: &'static str, took: std::time::Duration) {
        let mut series = self.series.lock().unwrap_or_else(|p| p.into_inner());
        series
            .entry(stage)
            .or_insert_with(fresh)
            .observe(took.as_secs_f64());
    }

    /// Runs `work`, counting the time it takes as a pass through `stage`.
    pub async fn time<T>(&self, stage: &'static str, work: impl Future<Output = T>) -> T {
        let started = std::time::Instant::now();
        let done = work.await;
        self.observe(stage, started.elapsed());
        done
    }

    /// The text exposition of everything observed.
    pub fn render(&self) -> String {
        let (name, help) = (self.name, self.help);
        let mut out = String::new();
        header(&mut out, name, "histogram", help);
        for (stage, s) in sorted(&self.series) {
            s.write(&mut out, name, &format!("stage=\"{stage}\""));
        }
        out
    }
}

/// `value` as a `&'static str`, stored once. Only for values from a small
/// fixed set (declared routes, status codes, implemented methods): every
/// distinct value is kept for the life of the process.
pub fn intern(value: &str) -> &'static str {
    static KNOWN: RwLock<Vec<&'static str>> = RwLock::new(Vec::new());
    let find = |known: &[&'static str]| known.iter().find(|k| **k == value).copied();
    if let Some(k) = find(&KNOWN.read().unwrap_or_else(|p| p.into_inner())) {
        return k;
    }
    let mut known = KNOWN.write().unwrap_or_else(|p| p.into_inner());
    find(&known).unwrap_or_else(|| {
        let k: &'static str = Box::leak(value.into());
        known.push(k);
        k
    })
}

/// Several expositions as one. The text format allows each family once, so
/// a family that several parts have (two services' `grpc_server_…` in one
/// process) gets its `# HELP`/`# TYPE` once and the samples of every part
/// together, in the order the families first appear.
pub fn merge<'a>(parts: impl IntoIterator<Item = &'a str>) -> String {
    type Family<'a> = (Vec<&'a str>, Vec<&'a str>);
    let mut order: Vec<&str> = Vec::new();
    let mut families: HashMap<&str, Family<'_>> = HashMap::new();
    for part in parts {
        let mut current = "";
        for line in part.lines().filter(|l| !l.trim().is_empty()) {
            let mut words = line.split_whitespace();
            let header = match (words.next(), words.next(), words.next()) {
                (Some("#"), Some(kind @ ("HELP" | "TYPE")), Some(name)) => Some((kind, name)),
                _ => None,
            };
            if let Some((_, name)) = header {
                current = name;
            }
            let family = families.entry(current).or_insert_with(|| {
                order.push(current);
                Family::default()
            });
            match header {
                Some((kind, name)) => {
                    let prefix = format!("# {kind} {name} ");
                    if !family.0.iter().any(|h| h.starts_with(&prefix)) {
                        family.0.push(line);
                    }
                }
                None => family.1.push(line),
            }
        }
    }
    let mut out = String::new();
    for name in order {
        let (headers, samples) = &families[name];
        for line in headers.iter().chain(samples) {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// What a `/metrics` scrape answers, made anew for each scrape.
pub type Render = std::sync::Arc<
    dyn Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = String> + Send>> + Send + Sync,
>;

/// A [`Render`] with nothing to add.
pub fn nothing_more() -> Render {
    std::sync::Arc::new(|| Box::pin(std::future::ready(String::new())))
}

/// Serves `GET /metrics` on `listener` (the Prometheus text `render` makes)
/// until the task running it is dropped or aborted.
pub async fn serve(listener: tokio::net::TcpListener, render: Render) {
    use axum::routing::get;
    let app = axum::Router::new().route(
        "/metrics",
        get(move || {
            let render = render.clone();
            async move {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    render().await,
                )
            }
        }),
    );
    // Within limits: idle and slow connections are closed, and past the
    // cap refused, so no scraper (or anyone else who reaches the port)
    // can use up the process's file descriptors.
    crate::http_server::serve(
        listener,
        app,
        crate::http_server::ConnectionLimits::MONITORING,
        std::future::pending(),
    )
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_cumulative_buckets() {
        let m = Histograms::new("http", ["method", "route", "status"]);
        m.observe(["GET", "/healthz", "200"], 0.0007);
        m.observe(["GET", "/healthz", "200"], 0.02);
        let text = m.render();
        assert!(
            text.contains(
                "http_requests_total{method=\"GET\",route=\"/healthz\",status=\"200\"} 2"
            )
        );
        assert!(text.contains("le=\"0.001\"} 1"));
        assert!(text.contains("le=\"0.025\"} 2"));
        assert!(text.contains("le=\"+Inf\"} 2"));
    }

    #[test]
    fn stages_are_one_family_labelled_by_stage() {
        let m = Stages::new("work_stage_seconds", "Time per stage.");
        m.observe("b", std::time::Duration::from_millis(3));
        m.observe("a", std::time::Duration::from_millis(30));
        let text = m.render();
        assert_eq!(
            text.matches("# TYPE work_stage_seconds histogram").count(),
            1
        );
        assert!(text.contains("work_stage_seconds_bucket{stage=\"b\",le=\"0.005\"} 1"));
        assert!(text.contains("work_stage_seconds_bucket{stage=\"a\",le=\"0.025\"} 0"));
        assert!(text.contains("work_stage_seconds_count{stage=\"a\"} 1"));
        assert!(text.find("stage=\"a\"") < text.find("stage=\"b\""));
    }

    #[test]
    fn merged_parts_name_each_family_once() {
        let a = "# HELP up Whether.\n# TYPE up gauge\nup{s=\"a\"} 1\n# TYPE lag gauge\nlag{s=\"a\"} 0\n";
        let b =
            "# HELP up Whether.\n# TYPE up gauge\nup{s=\"b\"} 1\n# TYPE other counter\nother 3\n";
        assert_eq!(
            merge([a, b]),
            "# HELP up Whether.\n# TYPE up gauge\nup{s=\"a\"} 1\nup{s=\"b\"} 1\n\
             # TYPE lag gauge\nlag{s=\"a\"} 0\n# TYPE other counter\nother 3\n"
        );
    }

    #[test]
    fn interned_values_are_stored_once() {
        let a = intern(&String::from("/x"));
        let b = intern(&String::from("/x"));
        assert!(std::ptr::eq(a, b));
    }
}
