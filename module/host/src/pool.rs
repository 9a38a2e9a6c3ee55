//! A plugin's VM replicas: the pool they live in, how a stream picks one, recycling, and
//! the pool's metrics.
//!
//! A [`Replica`] is one VM slot with its root links (one per plugin whose root lives in
//! the VM). Streams hold the replica they were
//! pinned to by an `Arc` (a [`Pin`]), so a replica taken out of the pool — recycled, or
//! made for one stream in `per_stream` isolation — lives on until its last stream ended,
//! and is dropped with its VM afterwards. A replica's root driver only holds a weak
//! reference and ends with it.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError, Weak};
use std::time::{Duration, Instant};

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry};

use crate::plugin::Plugin;
use crate::root::{RootEvent, RootLink};
use crate::vm::Vm;

/// How a plugin's streams share VMs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Isolation {
    /// Streams share the replicas of a pool; root state persists (Envoy's model).
    #[default]
    Shared,
    /// Every stream gets a fresh VM of its own, started and configured for it and dropped
    /// after `proxy_on_delete` (wasmtime's pooling allocator, copy-on-write memory).
    PerStream,
}

impl Isolation {
    /// The name used in the configuration and in metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Isolation::Shared => "shared",
            Isolation::PerStream => "per_stream",
        }
    }
}

/// How a new stream picks a replica of the pool.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Selection {
    /// The replica of the worker thread the stream starts on (uncontended on a runtime
    /// with one thread per worker, like Envoy's VM per worker).
    #[default]
    Thread,
    /// The replica with the fewest live streams (for work-stealing runtimes, where a
    /// stream may move between threads).
    LeastLoaded,
}

/// Exponential back-off between rebuilds of a failed replica (`fail_reload`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The wait after a first failure.
    pub base: Duration,
    /// The longest wait.
    pub max: Duration,
}

impl Default for Backoff {
    /// Envoy's defaults: a 1 s base interval, at most ten times that.
    fn default() -> Self {
        Backoff {
            base: Duration::from_secs(1),
            max: Duration::from_secs(10),
        }
    }
}

impl Backoff {
    /// The wait after the `failures`-th failure in a row (1-based).
    pub fn after(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(30);
        self.base
            .checked_mul(1 << doublings)
            .unwrap_or(self.max)
            .min(self.max)
    }
}

/// How a plugin's VMs are pooled.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PoolOptions {
    /// `shared` or `per_stream`.
    pub isolation: Isolation,
    /// How a stream picks a replica (shared isolation).
    pub selection: Selection,
    /// Replace a replica after it served this many streams.
    pub recycle_streams: Option<u64>,
    /// Replace a replica whose linear memory grew to this many bytes.
    pub recycle_memory: Option<u64>,
    /// Back-off between rebuilds under `fail_reload`.
    pub backoff: Backoff,
}

/// One VM slot of a plugin, with its root context's link to a root driver.
pub(crate) struct Replica {
    /// The pool slot, or `None` for a `per_stream` VM.
    pub index: Option<usize>,
    pub slot: Mutex<Slot>,
    /// Each tenant's root link (one, unless plugins share the VM).
    pub links: Box<[Arc<RootLink>]>,
    /// Each tenant's root events, taken by that tenant's root driver.
    pub events: Mutex<Vec<Option<tokio::sync::mpsc::UnboundedReceiver<RootEvent>>>>,
    /// Streams pinned to the replica now.
    pub streams: AtomicUsize,
    /// Streams pinned to the replica since it was made.
    pub served: AtomicU64,
    /// The VM's linear memory after its last call, in bytes.
    pub memory: AtomicU64,
    /// Taken out of the pool: it only finishes the streams it has.
    pub retired: AtomicBool,
    /// Counts a `per_stream` VM among the plugin's live ones.
    pub live: Option<LiveGuard>,
}

/// Counts a `per_stream` VM in its plugin's live ones while it exists.
pub(crate) struct LiveGuard(Arc<PoolCounters>);

impl LiveGuard {
    pub fn new(counters: Arc<PoolCounters>) -> LiveGuard {
        counters.per_stream_live.fetch_add(1, Ordering::Relaxed);
        LiveGuard(counters)
    }
}

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.0.per_stream_live.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The VM of a replica and what its failures did.
pub(crate) struct Slot {
    pub vm: Option<Vm>,
    pub generation: u64,
    /// When the current VM was started.
    pub started: Instant,
    /// Failures in a row (reset when a VM outlived the longest back-off).
    pub failures: u32,
    /// Under `fail_reload`: no rebuild before this moment.
    pub retry_at: Option<Instant>,
}

impl Replica {
    pub fn new(
        index: Option<usize>,
        vm: Option<Vm>,
        links: Box<[Arc<RootLink>]>,
        events: Vec<Option<tokio::sync::mpsc::UnboundedReceiver<RootEvent>>>,
    ) -> Replica {
        Replica {
            index,
            slot: Mutex::new(Slot {
                vm,
                generation: 0,
                started: Instant::now(),
                failures: 0,
                retry_at: None,
            }),
            links,
            events: Mutex::new(events),
            streams: AtomicUsize::new(0),
            served: AtomicU64::new(0),
            memory: AtomicU64::new(0),
            retired: AtomicBool::new(false),
            live: None,
        }
    }

    /// The label this replica has in logs and metrics.
    pub fn label(&self) -> String {
        match self.index {
            Some(i) => i.to_string(),
            None => "per_stream".to_string(),
        }
    }

    /// Locks the VM slot, counting a wait when another thread holds it.
    pub fn lock(&self, waited: &AtomicU64) -> MutexGuard<'_, Slot> {
        match self.slot.try_lock() {
            Ok(guard) => guard,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            Err(TryLockError::WouldBlock) => {
                waited.fetch_add(1, Ordering::Relaxed);
                self.slot.lock().unwrap_or_else(|p| p.into_inner())
            }
        }
    }

    /// True when the slot has no VM and must not rebuild one yet (a busy slot is taken
    /// to be fine).
    pub fn backing_off(&self) -> bool {
        match self.slot.try_lock() {
            Ok(slot) => slot.vm.is_none() && slot.retry_at.is_some_and(|at| Instant::now() < at),
            Err(_) => false,
        }
    }
}

/// A stream's hold on its replica: counted in the replica's live streams until dropped.
pub(crate) struct Pin(Arc<Replica>);

impl Pin {
    pub fn new(replica: Arc<Replica>) -> Pin {
        replica.streams.fetch_add(1, Ordering::Relaxed);
        replica.served.fetch_add(1, Ordering::Relaxed);
        Pin(replica)
    }

    pub fn replica(&self) -> &Arc<Replica> {
        &self.0
    }
}

impl Drop for Pin {
    fn drop(&mut self) {
        self.0.streams.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Counters a plugin's pool keeps itself (read by [`PoolMetrics`] at each scrape).
#[derive(Default)]
pub(crate) struct PoolCounters {
    /// Checkouts that found the replica busy and waited for it.
    pub waited: AtomicU64,
    /// `per_stream` VMs alive now.
    pub per_stream_live: AtomicUsize,
}

/// The pool metrics every plugin records into: instantiation latency and recycles.
#[derive(Debug, Clone)]
pub(crate) struct PoolEvents {
    instantiation: HistogramVec,
    recycles: IntCounterVec,
}

impl PoolEvents {
    pub fn register(registry: &Registry) -> Result<PoolEvents, prometheus::Error> {
        let instantiation = HistogramVec::new(
            HistogramOpts::new(
                "wasmbridge_pool_instantiation_seconds",
                "Time to make a ready VM (instantiate, start-up code, root context, \
                 proxy_on_vm_start, proxy_on_configure), by plugin and isolation.",
            )
            .buckets(vec![
                0.000_005, 0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.005,
                0.01, 0.05, 0.1, 0.5,
            ]),
            &["plugin", "isolation"],
        )?;
        let recycles = IntCounterVec::new(
            Opts::new(
                "wasmbridge_pool_recycles_total",
                "Replicas replaced while healthy, by plugin and reason (streams, memory).",
            ),
            &["plugin", "reason"],
        )?;
        registry.register(Box::new(instantiation.clone()))?;
        registry.register(Box::new(recycles.clone()))?;
        Ok(PoolEvents {
            instantiation,
            recycles,
        })
    }

    pub fn instantiated(&self, plugin: &str, isolation: Isolation, took: Duration) {
        self.instantiation
            .with_label_values(&[plugin, isolation.as_str()])
            .observe(took.as_secs_f64());
    }

    pub fn recycled(&self, plugin: &str, reason: &str) {
        self.recycles.with_label_values(&[plugin, reason]).inc();
    }
}

/// The state of every plugin's pool, read when the registry is scraped:
///
/// - `wasmbridge_pool_replicas{plugin}`: replicas in the pool (live `per_stream` VMs);
/// - `wasmbridge_pool_busy{plugin}`: pool replicas running a callback now;
/// - `wasmbridge_pool_checkouts_waited_total{plugin}`: checkouts that waited for a busy
///   replica;
/// - `wasmbridge_pool_replica_streams{plugin, replica}`: streams pinned to each replica;
/// - `wasmbridge_pool_replica_memory_bytes{plugin, replica}`: each replica's linear memory.
///
/// Clones share the list of plugins they report on; [`PoolMetrics::track`] replaces it
/// (a gateway that reloads its configuration reports on the plugins it serves with).
#[derive(Clone)]
pub struct PoolMetrics {
    plugins: Arc<Mutex<Vec<Weak<Plugin>>>>,
    replicas: IntGaugeVec,
    busy: IntGaugeVec,
    waited: IntCounterVec,
    streams: IntGaugeVec,
    memory: IntGaugeVec,
}

impl PoolMetrics {
    /// The pool metrics of `plugins`; register them on a prometheus registry.
    pub fn new(plugins: &[Arc<Plugin>]) -> PoolMetrics {
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            IntGaugeVec::new(Opts::new(name, help), labels).expect("a valid metric name")
        };
        PoolMetrics {
            plugins: Arc::new(Mutex::new(plugins.iter().map(Arc::downgrade).collect())),
            replicas: gauge(
                "wasmbridge_pool_replicas",
                "VM replicas in each plugin's pool (live VMs under per_stream isolation).",
                &["plugin"],
            ),
            busy: gauge(
                "wasmbridge_pool_busy",
                "Pool replicas running a callback now, by plugin.",
                &["plugin"],
            ),
            waited: IntCounterVec::new(
                Opts::new(
                    "wasmbridge_pool_checkouts_waited_total",
                    "Checkouts of a replica that waited because another thread held it, by plugin.",
                ),
                &["plugin"],
            )
            .expect("a valid metric name"),
            streams: gauge(
                "wasmbridge_pool_replica_streams",
                "Streams pinned to each replica now, by plugin and replica.",
                &["plugin", "replica"],
            ),
            memory: gauge(
                "wasmbridge_pool_replica_memory_bytes",
                "Linear memory of each replica's VM after its last call, by plugin and replica.",
                &["plugin", "replica"],
            ),
        }
    }

    /// Reports on `plugins` from now on, instead of the plugins it was made with.
    pub fn track(&self, plugins: &[Arc<Plugin>]) {
        *self.plugins.lock().unwrap_or_else(|p| p.into_inner()) =
            plugins.iter().map(Arc::downgrade).collect();
    }

    fn gauges(&self) -> [&IntGaugeVec; 4] {
        [&self.replicas, &self.busy, &self.streams, &self.memory]
    }
}

impl Collector for PoolMetrics {
    fn desc(&self) -> Vec<&Desc> {
        let mut all: Vec<&Desc> = self.gauges().into_iter().flat_map(|g| g.desc()).collect();
        all.extend(self.waited.desc());
        all
    }

    fn collect(&self) -> Vec<MetricFamily> {
        for g in self.gauges() {
            g.reset();
        }
        self.waited.reset();
        let plugins: Vec<Arc<Plugin>> = self
            .plugins
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter_map(Weak::upgrade)
            .collect();
        for plugin in plugins {
            let name = plugin.name();
            let pool = plugin.pool_state();
            self.replicas
                .with_label_values(&[name])
                .set(pool.replicas as i64);
            self.busy.with_label_values(&[name]).set(pool.busy as i64);
            self.waited.with_label_values(&[name]).inc_by(pool.waited);
            for r in &pool.each {
                let labels = [name, r.label.as_str()];
                self.streams
                    .with_label_values(&labels)
                    .set(r.streams as i64);
                self.memory
                    .with_label_values(&labels)
                    .set(r.memory.min(i64::MAX as u64) as i64);
            }
        }
        let mut families: Vec<MetricFamily> = self
            .gauges()
            .into_iter()
            .flat_map(|g| g.collect())
            .collect();
        families.extend(self.waited.collect());
        families
    }
}

/// A snapshot of a plugin's pool.
#[derive(Debug, Clone, Default)]
pub struct PoolState {
    /// Replicas in the pool (live VMs under `per_stream`).
    pub replicas: usize,
    /// Pool replicas running a callback now.
    pub busy: usize,
    /// Checkouts that waited for a busy replica since the plugin was loaded.
    pub waited: u64,
    /// Each pool replica (retired ones still finishing streams are not listed).
    pub each: Vec<ReplicaState>,
}

/// A snapshot of one replica.
#[derive(Debug, Clone, Default)]
pub struct ReplicaState {
    /// Its pool slot.
    pub label: String,
    /// Streams pinned to it now.
    pub streams: usize,
    /// Streams it served since it was made.
    pub served: u64,
    /// Its VM's linear memory after its last call.
    pub memory: u64,
}

impl ReplicaState {
    pub(crate) fn of(r: &Replica) -> ReplicaState {
        ReplicaState {
            label: r.label(),
            streams: r.streams.load(Ordering::Relaxed),
            served: r.served.load(Ordering::Relaxed),
            memory: r.memory.load(Ordering::Relaxed),
        }
    }
}
