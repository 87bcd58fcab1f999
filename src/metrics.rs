//! Metrics of one app: counters, gauges and histograms, rendered in the
//! Prometheus text exposition format (version 0.0.4).
//!
//! Every app owns its own [`Registry`] rather than sharing a process-wide
//! recorder: a test or `tessera up` runs many apps in one process, and each
//! must answer `/metrics` with its own numbers. Every series carries the
//! registry's `role` and `app` labels (the app id is known only once the app
//! has joined, so it can be set later). Handles are cheap clones of atomics:
//! the hot paths add to them without locks; only registering and rendering
//! take the registry's lock.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// A count that only goes up.
#[derive(Clone, Debug, Default)]
pub struct Counter(Arc<AtomicU64>);

impl Counter {
    /// Adds one.
    pub fn inc(&self) {
        self.add(1);
    }

    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// Raises the count to `total` (for totals a sans-IO core keeps itself);
    /// never lowers it.
    pub fn advance_to(&self, total: u64) {
        self.0.fetch_max(total, Ordering::Relaxed);
    }

    /// The count.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down.
#[derive(Clone, Debug, Default)]
pub struct Gauge(Arc<AtomicU64>);

impl Gauge {
    /// Sets the value.
    pub fn set(&self, v: f64) {
        self.0.store(v.to_bits(), Ordering::Relaxed);
    }

    /// Adds `d` (negative to lower).
    pub fn add(&self, d: f64) {
        let _ = self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                Some((f64::from_bits(bits) + d).to_bits())
            });
    }

    /// The value.
    pub fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }
}

/// Upper bounds, in seconds, of the buckets of a duration histogram: 100 µs
/// to 10 s.
pub const SECONDS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    10.0,
];

#[derive(Debug)]
struct HistogramCore {
    bounds: &'static [f64],
    /// Per bucket (not cumulative); the last is `+Inf`.
    buckets: Vec<AtomicU64>,
    /// The sum of observations in nanoseconds-of-a-unit (1e-9 of the
    /// observed unit), so it can be an integer atomic.
    sum_nanos: AtomicU64,
    count: AtomicU64,
}

/// A distribution of observations in fixed buckets.
#[derive(Clone, Debug)]
pub struct Histogram(Arc<HistogramCore>);

impl Histogram {
    /// A histogram with these bucket upper bounds (ascending).
    pub fn new(bounds: &'static [f64]) -> Histogram {
        Histogram(Arc::new(HistogramCore {
            bounds,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_nanos: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }))
    }

    /// Records one observation. Negative and non-finite values count as 0.
    pub fn observe(&self, v: f64) {
        let v = if v.is_finite() { v.max(0.0) } else { 0.0 };
        let i = self.0.bounds.partition_point(|&b| b < v);
        if let Some(b) = self.0.buckets.get(i) {
            b.fetch_add(1, Ordering::Relaxed);
        }
        self.0
            .sum_nanos
            .fetch_add((v * 1e9).min(u64::MAX as f64) as u64, Ordering::Relaxed);
        self.0.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Records a duration in seconds.
    pub fn observe_duration(&self, d: std::time::Duration) {
        self.observe(d.as_secs_f64());
    }

    /// How many observations.
    pub fn count(&self) -> u64 {
        self.0.count.load(Ordering::Relaxed)
    }
}

#[derive(Clone, Debug)]
enum Handle {
    Counter(Counter),
    Gauge(Gauge),
    Histogram(Histogram),
}

impl Handle {
    fn kind(&self) -> &'static str {
        match self {
            Handle::Counter(_) => "counter",
            Handle::Gauge(_) => "gauge",
            Handle::Histogram(_) => "histogram",
        }
    }
}

/// Label pairs of one series, in the order given.
type Labels = Vec<(String, String)>;

#[derive(Debug)]
struct Family {
    help: String,
    series: Vec<(Labels, Handle)>,
}

#[derive(Debug, Default)]
struct Inner {
    constant: Labels,
    families: BTreeMap<String, Family>,
}

/// The metrics of one app.
#[derive(Clone, Debug, Default)]
pub struct Registry(Arc<Mutex<Inner>>);

impl Registry {
    /// A registry whose series all carry `role="{role}"`.
    pub fn new(role: &str) -> Registry {
        let r = Registry::default();
        r.set_label("role", role);
        r
    }

    /// Sets (or replaces) a label every series carries, such as `app` once
    /// the app has its id.
    pub fn set_label(&self, name: &str, value: &str) {
        let mut inner = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        match inner.constant.iter_mut().find(|(n, _)| n == name) {
            Some(pair) => pair.1 = value.to_string(),
            None => inner.constant.push((name.to_string(), value.to_string())),
        }
    }

    fn register(&self, name: &str, help: &str, labels: &[(&str, &str)], new: Handle) -> Handle {
        let labels: Labels = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut inner = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let family = inner
            .families
            .entry(name.to_string())
            .or_insert_with(|| Family {
                help: help.to_string(),
                series: Vec::new(),
            });
        if let Some((_, h)) = family
            .series
            .iter()
            .find(|(l, h)| *l == labels && h.kind() == new.kind())
        {
            return h.clone();
        }
        family.series.push((labels, new.clone()));
        new
    }

    /// The counter `name` with these labels, registered on first use.
    pub fn counter(&self, name: &str, help: &str, labels: &[(&str, &str)]) -> Counter {
        match self.register(name, help, labels, Handle::Counter(Counter::default())) {
            Handle::Counter(c) => c,
            _ => Counter::default(),
        }
    }

    /// The gauge `name` with these labels, registered on first use.
    pub fn gauge(&self, name: &str, help: &str, labels: &[(&str, &str)]) -> Gauge {
        match self.register(name, help, labels, Handle::Gauge(Gauge::default())) {
            Handle::Gauge(g) => g,
            _ => Gauge::default(),
        }
    }

    /// The histogram `name` with these labels and buckets, registered on
    /// first use.
    pub fn histogram(
        &self,
        name: &str,
        help: &str,
        labels: &[(&str, &str)],
        bounds: &'static [f64],
    ) -> Histogram {
        match self.register(
            name,
            help,
            labels,
            Handle::Histogram(Histogram::new(bounds)),
        ) {
            Handle::Histogram(h) => h,
            _ => Histogram::new(bounds),
        }
    }

    /// Every series in the Prometheus text format.
    pub fn render(&self) -> String {
        let inner = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let mut out = String::new();
        for (name, family) in &inner.families {
            let Some((_, first)) = family.series.first() else {
                continue;
            };
            let _ = writeln!(out, "# HELP {name} {}", escape_help(&family.help));
            let _ = writeln!(out, "# TYPE {name} {}", first.kind());
            for (labels, handle) in &family.series {
                let base: Vec<(&str, &str)> = inner
                    .constant
                    .iter()
                    .chain(labels)
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                match handle {
                    Handle::Counter(c) => line(&mut out, name, "", &base, None, c.get() as f64),
                    Handle::Gauge(g) => line(&mut out, name, "", &base, None, g.get()),
                    Handle::Histogram(h) => {
                        let mut cumulative = 0;
                        for (i, b) in h.0.buckets.iter().enumerate() {
                            cumulative += b.load(Ordering::Relaxed);
                            let le =
                                h.0.bounds
                                    .get(i)
                                    .map_or("+Inf".to_string(), |b| b.to_string());
                            line(
                                &mut out,
                                name,
                                "_bucket",
                                &base,
                                Some(&le),
                                cumulative as f64,
                            );
                        }
                        let sum = h.0.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
                        line(&mut out, name, "_sum", &base, None, sum);
                        // The +Inf bucket's total, read once, so the two
                        // agree while observations keep arriving.
                        line(&mut out, name, "_count", &base, None, cumulative as f64);
                    }
                }
            }
        }
        out
    }
}

fn line(
    out: &mut String,
    name: &str,
    suffix: &str,
    labels: &[(&str, &str)],
    le: Option<&str>,
    v: f64,
) {
    let _ = write!(out, "{name}{suffix}");
    let le = le.map(|le| ("le", le));
    let all: Vec<(&str, &str)> = labels.iter().copied().chain(le).collect();
    if !all.is_empty() {
        out.push('{');
        for (i, (k, v)) in all.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "{k}=\"{}\"", escape_value(v));
        }
        out.push('}');
    }
    if v.is_nan() {
        out.push_str(" NaN\n");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { " +Inf\n" } else { " -Inf\n" });
    } else {
        let _ = writeln!(out, " {v}");
    }
}

fn escape_help(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\n', "\\n")
}

fn escape_value(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The traffic counters of one kind of link (`app`, `client`, `login`):
/// bytes and messages each way.
#[derive(Clone, Debug, Default)]
pub struct LinkMeter {
    /// Bytes received.
    pub bytes_in: Counter,
    /// Bytes sent.
    pub bytes_out: Counter,
    /// Messages received.
    pub msgs_in: Counter,
    /// Messages sent.
    pub msgs_out: Counter,
}

impl LinkMeter {
    /// The meter of link kind `link` in `registry`.
    pub fn new(registry: &Registry, link: &str) -> LinkMeter {
        let c = |name: &str, help: &str, dir: &str| {
            registry.counter(name, help, &[("link", link), ("direction", dir)])
        };
        LinkMeter {
            bytes_in: c(
                "tessera_link_bytes_total",
                "Bytes carried, by link kind and direction.",
                "in",
            ),
            bytes_out: c(
                "tessera_link_bytes_total",
                "Bytes carried, by link kind and direction.",
                "out",
            ),
            msgs_in: c(
                "tessera_link_messages_total",
                "Messages carried, by link kind and direction.",
                "in",
            ),
            msgs_out: c(
                "tessera_link_messages_total",
                "Messages carried, by link kind and direction.",
                "out",
            ),
        }
    }

    /// Counts one message received of `bytes` bytes.
    pub fn received(&self, bytes: usize) {
        self.msgs_in.inc();
        self.bytes_in.add(bytes as u64);
    }

    /// Counts one message sent of `bytes` bytes.
    pub fn sent(&self, bytes: usize) {
        self.msgs_out.inc();
        self.bytes_out.add(bytes as u64);
    }
}

/// What the sessions of an app's links did ([`crate::link::LinkStats`]):
/// connections that dropped while their session lived on, messages sent
/// again on the next connection, and messages dropped because a peer's
/// backlog was full.
#[derive(Clone, Debug)]
pub struct SessionMeter {
    /// Connections that dropped while the session lived on.
    pub dropped: Counter,
    /// Messages sent again on a new connection.
    pub resent: Counter,
    /// Messages dropped because a peer's backlog was full.
    pub overflowed: Counter,
    /// Connections closed because the peer's certificate was not the one
    /// listed for the app it claimed.
    pub impostors: Counter,
    /// Messages dropped because their sender's role may not send them.
    pub refused: Counter,
    /// Client datagrams not sent to a baseapp for want of a connection.
    pub datagrams_dropped: Counter,
}

impl SessionMeter {
    /// The meter in `registry`.
    pub fn new(registry: &Registry) -> SessionMeter {
        SessionMeter {
            dropped: registry.counter(
                "tessera_link_drops_total",
                "App-link connections that dropped while their session lived on.",
                &[],
            ),
            resent: registry.counter(
                "tessera_link_resent_total",
                "App-link messages sent again on a new connection.",
                &[],
            ),
            overflowed: registry.counter(
                "tessera_link_overflows_total",
                "App-link messages dropped because a peer's backlog was full.",
                &[],
            ),
            impostors: registry.counter(
                "tessera_link_impostors_total",
                "App-link connections closed because the peer's certificate is not the one the manager listed for the app it claimed.",
                &[],
            ),
            refused: registry.counter(
                "tessera_link_refused_total",
                "App-link messages dropped because an app of the sender's role may not send them.",
                &[],
            ),
            datagrams_dropped: registry.counter(
                "tessera_link_datagrams_dropped_total",
                "Client datagrams (positions) a cellapp did not send to a baseapp for want of a connection.",
                &[],
            ),
        }
    }

    /// Copies a link table's counts.
    pub fn observe(&self, stats: &crate::link::LinkStats) {
        self.dropped.advance_to(stats.dropped);
        self.resent.advance_to(stats.resent);
        self.overflowed.advance_to(stats.overflowed);
        self.impostors.advance_to(stats.impostors);
        self.refused.advance_to(stats.refused);
        self.datagrams_dropped.advance_to(stats.lossy_dropped);
    }
}

/// How long each tick of an app's loop took, and how many overran their
/// period.
#[derive(Clone, Debug)]
pub struct TickMeter {
    /// Tick durations, in seconds.
    pub seconds: Histogram,
    /// Ticks that took longer than the period.
    pub overruns: Counter,
}

impl TickMeter {
    /// The tick meter of `registry`.
    pub fn new(registry: &Registry) -> TickMeter {
        TickMeter {
            seconds: registry.histogram(
                "tessera_tick_seconds",
                "Time one tick of the app's loop took.",
                &[],
                SECONDS,
            ),
            overruns: registry.counter(
                "tessera_tick_overruns_total",
                "Ticks that took longer than the tick period.",
                &[],
            ),
        }
    }

    /// Records one tick that took `took` of a `period`.
    pub fn record(&self, took: std::time::Duration, period: std::time::Duration) {
        self.seconds.observe_duration(took);
        if took > period {
            self.overruns.inc();
        }
    }
}

/// Database writes (each a transaction) and how long they took.
#[derive(Clone, Debug)]
pub struct DbMeter {
    /// Writes committed.
    pub writes: Counter,
    /// Writes that failed.
    pub failures: Counter,
    /// Time per write, in seconds.
    pub seconds: Histogram,
}

impl DbMeter {
    /// The database meter of `registry`.
    pub fn new(registry: &Registry) -> DbMeter {
        DbMeter {
            writes: registry.counter("tessera_db_writes_total", "Database writes committed.", &[]),
            failures: registry.counter(
                "tessera_db_write_failures_total",
                "Database writes that failed.",
                &[],
            ),
            seconds: registry.histogram(
                "tessera_db_write_seconds",
                "Time one database write (a transaction) took.",
                &[],
                SECONDS,
            ),
        }
    }

    /// Records one write that took `took` and succeeded or not.
    pub fn record(&self, took: std::time::Duration, ok: bool) {
        self.seconds.observe_duration(took);
        if ok {
            self.writes.inc();
        } else {
            self.failures.inc();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_kind_with_the_constant_labels() {
        let r = Registry::new("cellapp");
        r.set_label("app", "3");
        let c = r.counter("tessera_x_total", "Xs.", &[("link", "app")]);
        c.add(2);
        c.advance_to(5);
        c.advance_to(1);
        r.counter("tessera_x_total", "Xs.", &[("link", "app")])
            .inc();
        let g = r.gauge("tessera_reals", "Reals.\nSecond line.", &[]);
        g.set(7.0);
        g.add(-2.0);
        let h = r.histogram("tessera_tick_seconds", "Tick.", &[], &[0.01, 0.1]);
        h.observe(0.005);
        h.observe(0.05);
        h.observe(3.0);
        h.observe(f64::NAN);
        let text = r.render();
        let expect = "\
# HELP tessera_reals Reals.\\nSecond line.
# TYPE tessera_reals gauge
tessera_reals{role=\"cellapp\",app=\"3\"} 5
# HELP tessera_tick_seconds Tick.
# TYPE tessera_tick_seconds histogram
tessera_tick_seconds_bucket{role=\"cellapp\",app=\"3\",le=\"0.01\"} 2
tessera_tick_seconds_bucket{role=\"cellapp\",app=\"3\",le=\"0.1\"} 3
tessera_tick_seconds_bucket{role=\"cellapp\",app=\"3\",le=\"+Inf\"} 4
tessera_tick_seconds_sum{role=\"cellapp\",app=\"3\"} 3.055
tessera_tick_seconds_count{role=\"cellapp\",app=\"3\"} 4
# HELP tessera_x_total Xs.
# TYPE tessera_x_total counter
tessera_x_total{role=\"cellapp\",app=\"3\",link=\"app\"} 6
";
        assert_eq!(text, expect);
    }

    #[test]
    fn label_values_are_escaped() {
        let r = Registry::default();
        r.gauge("g", "h", &[("path", "a\"b\\c\nd")]).set(1.0);
        assert!(r.render().contains("g{path=\"a\\\"b\\\\c\\nd\"} 1\n"));
        r.gauge("inf", "h", &[]).set(f64::INFINITY);
        assert!(r.render().contains("inf +Inf\n"));
    }
}
