//! Guest metrics (reference §12.3): the counters, gauges and histograms filters define with
//! `proxy_define_metric`. One store per [`crate::Runtime`], shared by every plugin and VM
//! replica built from it and keyed by (type, name), as Envoy's stats are process-wide: every
//! replica of every plugin that defines the same name with the same type gets the same
//! metric, under the same id, and the values aggregate.
//!
//! An id is the metric's index in an append-only table shifted left by two, with the type in
//! the low two bits as in Envoy. Defining a new metric takes one mutex (filters define at
//! start-up, or once per name); increment, record and get find the metric by id with two
//! atomic loads and no lock, and update it with the atomics of prometheus' `IntCounter`,
//! `IntGauge` and `Histogram`.
//!
//! [`GuestMetrics`] exports the store as a prometheus collector; see its docs for the naming
//! scheme.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{Histogram, HistogramOpts, IntCounter, IntGauge, Opts};
use wasmbridge_abi::{MetricType, Status};

/// How many distinct (type, name) metrics one runtime holds; `proxy_define_metric` of one
/// more answers INTERNAL_FAILURE. A filter that puts request data in metric names would
/// otherwise grow the store without bound.
pub const MAX_GUEST_METRICS: usize = CHUNK * CHUNKS;

/// The prefix of every exported guest metric name (Envoy's `wasmcustom.` stat namespace).
const PREFIX: &str = "wasmcustom_";

/// Envoy's default histogram buckets, used for every guest histogram.
pub const GUEST_HISTOGRAM_BUCKETS: [f64; 19] = [
    0.5,
    1.0,
    5.0,
    10.0,
    25.0,
    50.0,
    100.0,
    250.0,
    500.0,
    1_000.0,
    2_500.0,
    5_000.0,
    10_000.0,
    30_000.0,
    60_000.0,
    300_000.0,
    600_000.0,
    1_800_000.0,
    3_600_000.0,
];

const CHUNK: usize = 256;
const CHUNKS: usize = 256;
const TYPE_BITS: u32 = 2;
const TYPE_MASK: u32 = (1 << TYPE_BITS) - 1;

/// The guest metrics of one runtime; cheap to clone (all clones share the store).
///
/// As a prometheus [`Collector`] it exports each metric under the name
/// `wasmcustom_<name>`, where every character of the guest's name outside `[a-zA-Z0-9_]`
/// becomes `_` (`requests.GET` → `wasmcustom_requests_GET`): counters as counters, gauges
/// as gauges, histograms as histograms with Envoy's default buckets
/// ([`GUEST_HISTOGRAM_BUCKETS`]). The help text quotes the guest's name. When two metrics
/// map to one exported name (two guest names that differ only in replaced characters, or
/// one name defined with two types), the one defined first is exported and the other is
/// left out, with a warning when it is defined; it still works for the guest.
/// The collector describes no metrics up front, so a registry holds at most one.
#[derive(Clone, Default)]
pub struct GuestMetrics {
    store: Arc<Store>,
}

#[derive(Default)]
struct Store {
    table: Table,
    /// How many slots of `table` are filled; slots below it are always set.
    len: AtomicUsize,
    names: Mutex<Names>,
}

/// An append-only table of `CHUNKS` lazily allocated chunks of `CHUNK` slots.
struct Table {
    chunks: Box<[OnceLock<Chunk>]>,
}

/// `CHUNK` slots, each set once.
type Chunk = Box<[OnceLock<Metric>]>;

#[derive(Default)]
struct Names {
    /// (type, guest name) → index.
    by_key: HashMap<(MetricType, Vec<u8>), usize>,
    /// Exported names already taken.
    exported: HashSet<String>,
}

struct Metric {
    value: Value,
    /// False when another metric took its exported name first.
    exported: bool,
}

enum Value {
    Counter(IntCounter),
    Gauge(IntGauge),
    Histogram(Histogram),
}

impl Default for Table {
    fn default() -> Self {
        Table {
            chunks: (0..CHUNKS).map(|_| OnceLock::new()).collect(),
        }
    }
}

impl Table {
    fn get(&self, index: usize) -> Option<&Metric> {
        self.chunks
            .get(index / CHUNK)?
            .get()?
            .get(index % CHUNK)?
            .get()
    }

    /// Fills slot `index`; the caller holds the names mutex, so the slot is empty.
    fn set(&self, index: usize, metric: Metric) {
        if let Some(chunk) = self.chunks.get(index / CHUNK) {
            let chunk = chunk.get_or_init(|| (0..CHUNK).map(|_| OnceLock::new()).collect());
            if let Some(slot) = chunk.get(index % CHUNK) {
                let _ = slot.set(metric);
            }
        }
    }
}

impl Value {
    fn metric_type(&self) -> MetricType {
        match self {
            Value::Counter(_) => MetricType::Counter,
            Value::Gauge(_) => MetricType::Gauge,
            Value::Histogram(_) => MetricType::Histogram,
        }
    }

    fn new(metric_type: MetricType, name: String, help: String) -> prometheus::Result<Value> {
        Ok(match metric_type {
            MetricType::Counter => Value::Counter(IntCounter::with_opts(Opts::new(name, help))?),
            MetricType::Gauge => Value::Gauge(IntGauge::with_opts(Opts::new(name, help))?),
            MetricType::Histogram => Value::Histogram(Histogram::with_opts(
                HistogramOpts::new(name, help).buckets(GUEST_HISTOGRAM_BUCKETS.to_vec()),
            )?),
        })
    }

    fn collect(&self) -> Vec<MetricFamily> {
        match self {
            Value::Counter(c) => c.collect(),
            Value::Gauge(g) => g.collect(),
            Value::Histogram(h) => h.collect(),
        }
    }
}

fn id_of(index: usize, metric_type: MetricType) -> u32 {
    ((index as u32) << TYPE_BITS) | metric_type.code()
}

/// The type an id claims (its low bits), `None` for the unused value 3.
fn claimed_type(id: u32) -> Option<MetricType> {
    MetricType::try_from(id & TYPE_MASK).ok()
}

impl GuestMetrics {
    /// An empty store.
    pub fn new() -> GuestMetrics {
        GuestMetrics::default()
    }

    /// The name guest metric `name` is exported under: `wasmcustom_`, then the name with
    /// every character outside `[a-zA-Z0-9_]` (and every byte that is not UTF-8) replaced
    /// by `_`.
    pub fn exported_name(name: &[u8]) -> String {
        let mut out = String::with_capacity(PREFIX.len() + name.len());
        out.push_str(PREFIX);
        out.extend(String::from_utf8_lossy(name).chars().map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        }));
        out
    }

    /// `proxy_define_metric`: the id of the metric (type, name), created on first use.
    /// INTERNAL_FAILURE once [`MAX_GUEST_METRICS`] exist. `plugin` names the caller in logs.
    pub(crate) fn define(
        &self,
        metric_type: MetricType,
        name: &[u8],
        plugin: &str,
    ) -> Result<u32, Status> {
        let store = &*self.store;
        let mut names = store.names.lock().unwrap_or_else(|e| e.into_inner());
        let key = (metric_type, name.to_vec());
        if let Some(&index) = names.by_key.get(&key) {
            return Ok(id_of(index, metric_type));
        }
        let index = names.by_key.len();
        if index >= MAX_GUEST_METRICS {
            tracing::warn!(
                plugin,
                "proxy_define_metric refused {:?}: this runtime already holds {MAX_GUEST_METRICS} metrics",
                String::from_utf8_lossy(name)
            );
            return Err(Status::InternalFailure);
        }
        let exported_name = GuestMetrics::exported_name(name);
        let exported = names.exported.insert(exported_name.clone());
        if !exported {
            tracing::warn!(
                plugin,
                "guest metric {:?} ({}) is not exported: another metric already has the name {exported_name}",
                String::from_utf8_lossy(name),
                metric_type.name()
            );
        }
        let help = format!(
            "Proxy-Wasm {} {:?}",
            metric_type.name().to_ascii_lowercase(),
            String::from_utf8_lossy(name)
        );
        let value = Value::new(metric_type, exported_name, help).map_err(|e| {
            tracing::warn!(plugin, "proxy_define_metric: {e}");
            Status::InternalFailure
        })?;
        store.table.set(index, Metric { value, exported });
        names.by_key.insert(key, index);
        store.len.store(index + 1, Ordering::Release);
        Ok(id_of(index, metric_type))
    }

    /// The metric `id` names, if it exists and has the type the id claims.
    fn lookup(&self, id: u32) -> Option<&Value> {
        let metric = self.store.table.get((id >> TYPE_BITS) as usize)?;
        (metric.value.metric_type().code() == id & TYPE_MASK).then_some(&metric.value)
    }

    /// `proxy_increment_metric`: a counter adds a positive delta (BAD_ARGUMENT otherwise), a
    /// gauge adds any delta (wrapping), an id claiming another type is BAD_ARGUMENT, as in
    /// Envoy, even when no such metric exists.
    pub(crate) fn increment(&self, id: u32, delta: i64) -> Result<(), Status> {
        match claimed_type(id) {
            Some(MetricType::Counter | MetricType::Gauge) => {}
            _ => return Err(Status::BadArgument),
        }
        match self.lookup(id).ok_or(Status::NotFound)? {
            Value::Counter(c) if delta > 0 => c.inc_by(delta as u64),
            Value::Counter(_) => return Err(Status::BadArgument),
            Value::Gauge(g) => g.add(delta),
            Value::Histogram(_) => return Err(Status::BadArgument),
        }
        Ok(())
    }

    /// `proxy_record_metric`: a counter adds `value`, a gauge is set to it, a histogram
    /// records it. NOT_FOUND for any id that names no metric.
    pub(crate) fn record(&self, id: u32, value: u64) -> Result<(), Status> {
        match self.lookup(id).ok_or(Status::NotFound)? {
            Value::Counter(c) => c.inc_by(value),
            // Stored as i64 bits: get returns the same u64; /metrics shows values above
            // i64::MAX as negative.
            Value::Gauge(g) => g.set(value as i64),
            Value::Histogram(h) => h.observe(value as f64),
        }
        Ok(())
    }

    /// `proxy_get_metric`: a counter's or gauge's value (a gauge below zero reads as the
    /// wrapped u64, as Envoy's does). An id claiming another type is BAD_ARGUMENT.
    pub(crate) fn get(&self, id: u32) -> Result<u64, Status> {
        match claimed_type(id) {
            Some(MetricType::Counter | MetricType::Gauge) => {}
            _ => return Err(Status::BadArgument),
        }
        match self.lookup(id).ok_or(Status::NotFound)? {
            Value::Counter(c) => Ok(c.get()),
            Value::Gauge(g) => Ok(g.get() as u64),
            Value::Histogram(_) => Err(Status::BadArgument),
        }
    }
}

impl Collector for GuestMetrics {
    /// None: guest metrics are defined while the process runs.
    fn desc(&self) -> Vec<&Desc> {
        Vec::new()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let len = self.store.len.load(Ordering::Acquire);
        (0..len)
            .filter_map(|index| self.store.table.get(index))
            .filter(|metric| metric.exported)
            .flat_map(|metric| metric.value.collect())
            .collect()
    }
}

impl fmt::Debug for GuestMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GuestMetrics")
            .field("len", &self.store.len.load(Ordering::Relaxed))
            .finish()
    }
}

#[cfg(test)]
mod tests;
