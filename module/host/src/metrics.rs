//! Host metrics: how often each plugin callback ran, how long it took, and how often it
//! failed; how plugins' callouts ended; how often plugins reached a cap. Registered on a registry the embedding application
//! owns.

use std::time::Duration;

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry,
};

/// Callback counters and durations per plugin and callback.
#[derive(Debug, Clone)]
pub struct HostMetrics {
    calls: IntCounterVec,
    failures: IntCounterVec,
    duration: HistogramVec,
    callouts: IntCounterVec,
    poisonings: IntCounterVec,
    limit_exceeded: IntCounterVec,
    pool: crate::pool::PoolEvents,
    log_only: IntCounterVec,
    denied: IntCounterVec,
}

impl HostMetrics {
    /// Creates the metrics and registers them on `registry`.
    pub fn register(registry: &Registry) -> Result<HostMetrics, prometheus::Error> {
        let calls = IntCounterVec::new(
            Opts::new(
                "wasmbridge_plugin_callbacks_total",
                "Plugin callbacks run, by plugin and callback.",
            ),
            &["plugin", "callback"],
        )?;
        let failures = IntCounterVec::new(
            Opts::new(
                "wasmbridge_plugin_callback_failures_total",
                "Plugin callbacks that trapped, by plugin and callback.",
            ),
            &["plugin", "callback"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "wasmbridge_plugin_callback_duration_seconds",
                "Time spent in plugin callbacks, by plugin and callback.",
            )
            .buckets(vec![
                0.000_001, 0.000_005, 0.000_01, 0.000_05, 0.000_1, 0.000_5, 0.001, 0.005, 0.01,
                0.05, 0.1,
            ]),
            &["plugin", "callback"],
        )?;
        let callouts = IntCounterVec::new(
            Opts::new(
                "wasmbridge_plugin_callouts_total",
                "Plugins' HTTP and gRPC callouts, by plugin, cluster, kind and how they ended.",
            ),
            &["plugin", "cluster", "kind", "outcome"],
        )?;
        registry.register(Box::new(calls.clone()))?;
        registry.register(Box::new(failures.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        let poisonings = IntCounterVec::new(
            Opts::new(
                "wasmbridge_plugin_poisonings_total",
                "VM replicas dropped after a failure, by plugin and reason (deadline, memory, fuel, stack_overflow, trap).",
            ),
            &["plugin", "reason"],
        )?;
        registry.register(Box::new(callouts.clone()))?;
        registry.register(Box::new(poisonings.clone()))?;
        let limit_exceeded = IntCounterVec::new(
            Opts::new(
                "wasmbridge_plugin_limit_exceeded_total",
                "Times a plugin reached a cap of plugins[].limits, by plugin and limit (body, header_bytes, header_pairs, callouts, log_line).",
            ),
            &["plugin", "limit"],
        )?;
        registry.register(Box::new(limit_exceeded.clone()))?;
        let pool = crate::pool::PoolEvents::register(registry)?;
        let log_only = IntCounterVec::new(
            Opts::new(
                "wasmbridge_plugin_log_only_total",
                "What log-only plugins would have done and did not, by plugin and action.",
            ),
            &["plugin", "action"],
        )?;
        registry.register(Box::new(log_only.clone()))?;
        let denied = IntCounterVec::new(
            Opts::new(
                "wasmbridge_plugin_denied_total",
                "Calls refused by a plugin's capabilities or redaction, by plugin and capability (a hostcall name, clusters, redact.headers, redact.properties).",
            ),
            &["plugin", "capability"],
        )?;
        registry.register(Box::new(denied.clone()))?;
        Ok(HostMetrics {
            pool,
            log_only,
            calls,
            failures,
            duration,
            callouts,
            poisonings,
            limit_exceeded,
            denied,
        })
    }

    /// The handles of one plugin, resolved now so that a callback records its metrics
    /// without hashing labels or taking the metric families' locks.
    pub(crate) fn for_plugin(&self, plugin: &str) -> PluginMetrics {
        PluginMetrics {
            callbacks: wasmbridge_abi::called_callbacks()
                .map(|c| self.handles(plugin, c.name))
                .collect(),
            plugin: plugin.to_string(),
            host: self.clone(),
        }
    }

    fn handles(&self, plugin: &str, callback: &'static str) -> CallbackMetrics {
        let labels = [plugin, callback];
        CallbackMetrics {
            callback,
            calls: self.calls.with_label_values(&labels),
            failures: self.failures.with_label_values(&labels),
            duration: self.duration.with_label_values(&labels),
        }
    }
}

/// One plugin's metric handles.
#[derive(Debug, Clone)]
pub(crate) struct PluginMetrics {
    callbacks: Vec<CallbackMetrics>,
    plugin: String,
    host: HostMetrics,
}

#[derive(Debug, Clone)]
struct CallbackMetrics {
    callback: &'static str,
    calls: IntCounter,
    failures: IntCounter,
    duration: Histogram,
}

impl CallbackMetrics {
    fn record(&self, took: Duration, failed: bool) {
        self.calls.inc();
        self.duration.observe(took.as_secs_f64());
        if failed {
            self.failures.inc();
        }
    }
}

impl PluginMetrics {
    /// Records how long making a ready VM took.
    pub(crate) fn instantiated(&self, isolation: crate::Isolation, took: Duration) {
        self.host.pool.instantiated(&self.plugin, isolation, took);
    }

    /// Counts what a log-only plugin would have done (`request_headers`, `local_reply`, ...).
    pub(crate) fn log_only(&self, action: &str) {
        self.host
            .log_only
            .with_label_values(&[self.plugin.as_str(), action])
            .inc();
    }

    /// Counts a healthy replica replaced for `reason` (`streams`, `memory`).
    pub(crate) fn recycled(&self, reason: &str) {
        self.host.pool.recycled(&self.plugin, reason);
    }

    /// Counts a replica dropped after a failure of `reason`.
    pub(crate) fn poisoned(&self, reason: &str) {
        self.host
            .poisonings
            .with_label_values(&[self.plugin.as_str(), reason])
            .inc();
    }

    /// Counts one time the plugin reached the cap labelled `limit`.
    pub(crate) fn limit_exceeded(&self, limit: &str) {
        self.host
            .limit_exceeded
            .with_label_values(&[self.plugin.as_str(), limit])
            .inc();
    }

    /// Counts one call refused by the plugin's capabilities or redaction.
    pub(crate) fn denied(&self, capability: &str) {
        self.host
            .denied
            .with_label_values(&[self.plugin.as_str(), capability])
            .inc();
    }

    /// Counts one callout that ended (or was refused) with `outcome`.
    pub(crate) fn callout(&self, cluster: &str, kind: CalloutKind, outcome: &str) {
        let kind = match kind {
            CalloutKind::Http => "http",
            CalloutKind::Grpc => "grpc",
        };
        self.host
            .callouts
            .with_label_values(&[self.plugin.as_str(), cluster, kind, outcome])
            .inc();
    }

    pub(crate) fn observe(&self, callback: &'static str, took: Duration, failed: bool) {
        match self.callbacks.iter().find(|c| c.callback == callback) {
            Some(c) => c.record(took, failed),
            None => self
                .host
                .handles(&self.plugin, callback)
                .record(took, failed),
        }
    }
}

/// The `kind` label of `wasmbridge_plugin_callouts_total`.
#[derive(Debug, Clone, Copy)]
pub(crate) enum CalloutKind {
    Http,
    Grpc,
}

/// The `outcome` label of a gRPC callout that closed with `status`: the code's name in
/// lower case (`ok`, `unavailable`, ...), `other` beyond the 17 codes.
pub(crate) fn grpc_outcome(status: u32) -> &'static str {
    const NAMES: [&str; 17] = [
        "ok",
        "cancelled",
        "unknown",
        "invalid_argument",
        "deadline_exceeded",
        "not_found",
        "already_exists",
        "permission_denied",
        "resource_exhausted",
        "failed_precondition",
        "aborted",
        "out_of_range",
        "unimplemented",
        "internal",
        "unavailable",
        "data_loss",
        "unauthenticated",
    ];
    NAMES.get(status as usize).copied().unwrap_or("other")
}
