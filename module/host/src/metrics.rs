//! Host metrics: how often each plugin callback ran, how long it took, and how often it
//! failed. Registered on a registry the embedding application owns.

use std::time::Duration;

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

/// Callback counters and durations per plugin and callback.
#[derive(Debug, Clone)]
pub struct HostMetrics {
    calls: IntCounterVec,
    failures: IntCounterVec,
    duration: HistogramVec,
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
        registry.register(Box::new(calls.clone()))?;
        registry.register(Box::new(failures.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        Ok(HostMetrics {
            calls,
            failures,
            duration,
        })
    }

    pub(crate) fn observe(&self, plugin: &str, callback: &str, took: Duration, failed: bool) {
        let labels = [plugin, callback];
        self.calls.with_label_values(&labels).inc();
        self.duration
            .with_label_values(&labels)
            .observe(took.as_secs_f64());
        if failed {
            self.failures.with_label_values(&labels).inc();
        }
    }
}
