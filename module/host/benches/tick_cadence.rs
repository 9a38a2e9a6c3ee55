//! Tick cadence: how closely `proxy_on_tick` follows the period a guest set with
//! `proxy_set_tick_period_milliseconds`, on a replica's root driver running on a thread of
//! its own (as on a proxy worker).
//!
//! Each iteration is one tick interval, measured between two `on_tick` callbacks (the guest
//! calls a foreign function that records the time), so criterion's time per iteration is
//! the mean interval: it should equal the period. After each period a summary line gives
//! the spread of the intervals seen (p50, p99, max) and whether the cadence is within the
//! tolerance below; like every benchmark it reports, it does not fail.
//!
//! ```sh
//! cargo bench -p wasmbridge-host --bench tick_cadence
//! ```

use std::path::Path;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use wasmbridge_host::{ForeignFunctions, Plugin, PluginSpec, Runtime};

/// Periods measured, in milliseconds.
const PERIODS_MS: [u64; 3] = [1, 10, 50];

/// The mean interval may differ from the period by this fraction...
const MEAN_TOLERANCE: f64 = 0.05;
/// ...and the 99th percentile may exceed it by this much (timer granularity and
/// scheduling on a busy machine).
const P99_SLACK: Duration = Duration::from_millis(2);

/// A guest that ticks every `period` ms and calls the foreign function `tick` on each tick.
fn guest(period: u64) -> String {
    format!(
        r#"(module
  (import "env" "proxy_set_tick_period_milliseconds" (func $tick (param i32) (result i32)))
  (import "env" "proxy_call_foreign_function"
    (func $foreign (param i32 i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 128) "tick")
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "_initialize"))
  (func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 4096))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32)
    (i32.eqz (call $tick (i32.const {period}))))
  (func (export "proxy_on_tick") (param i32)
    (drop (call $foreign (i32.const 128) (i32.const 4) (i32.const 0) (i32.const 0)
      (i32.const 64) (i32.const 68)))))"#
    )
}

/// A plugin ticking every `period` ms with its driver on a thread of its own; the times of
/// its ticks arrive on the receiver. The driver ends when the plugin is dropped.
fn ticking(runtime: &Runtime, period: u64) -> (Arc<Plugin>, Receiver<Instant>) {
    let (sender, ticks): (Sender<Instant>, _) = channel();
    let sender = Mutex::new(sender);
    let mut foreign = ForeignFunctions::new();
    foreign.register("tick", move |_args: &[u8]| {
        let _ = sender
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(Instant::now());
        Ok(Bytes::new())
    });
    let wasm = wat::parse_str(guest(period)).expect("the guest is valid WAT");
    let module = runtime
        .compile("ticker", Path::new("ticker.wasm"), &wasm)
        .expect("compile");
    let spec = PluginSpec {
        name: format!("ticker-{period}ms"),
        replicas: 1,
        foreign,
        ..PluginSpec::default()
    };
    let plugin = Plugin::load(runtime, &module, spec, None).expect("load");
    let driver = plugin.root_driver(0).expect("a driver");
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(driver);
    });
    (plugin, ticks)
}

/// The interval at quantile `q` of sorted `intervals`.
fn quantile(sorted: &[Duration], q: f64) -> Duration {
    let index = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[index]
}

fn tick_cadence(c: &mut Criterion) {
    let runtime = Runtime::new().expect("engine");
    let mut group = c.benchmark_group("tick_cadence");
    group.sample_size(10);
    for period in PERIODS_MS {
        let (plugin, ticks) = ticking(&runtime, period);
        let intervals = Mutex::new(Vec::new());
        group.warm_up_time(Duration::from_millis(period * 10));
        group.measurement_time(Duration::from_millis(period * 60));
        group.bench_function(format!("period_{period}ms"), |b| {
            b.iter_custom(|iters| {
                // Start on a fresh tick, not on one that waited in the channel.
                while ticks.try_recv().is_ok() {}
                let start = ticks.recv().expect("ticks");
                let mut last = start;
                let mut seen = intervals.lock().unwrap_or_else(|p| p.into_inner());
                for _ in 0..iters {
                    let now = ticks.recv().expect("ticks");
                    seen.push(now - last);
                    last = now;
                }
                last - start
            });
        });
        drop(plugin);

        let mut seen = intervals.into_inner().unwrap_or_else(|p| p.into_inner());
        seen.sort_unstable();
        let wanted = Duration::from_millis(period);
        let mean = seen.iter().sum::<Duration>() / seen.len().max(1) as u32;
        let (p50, p99, max) = (
            quantile(&seen, 0.5),
            quantile(&seen, 0.99),
            *seen.last().expect("at least one interval"),
        );
        let off = (mean.as_secs_f64() / wanted.as_secs_f64() - 1.0).abs();
        let verdict = if seen.len() < 20 {
            "too few intervals for a verdict (a test run)"
        } else if off <= MEAN_TOLERANCE && p99 <= wanted + P99_SLACK {
            "within tolerance"
        } else {
            "OUT OF TOLERANCE"
        };
        println!(
            "tick cadence {period} ms: {} intervals, mean {mean:.3?} ({:+.1} %), p50 {p50:.3?}, p99 {p99:.3?}, max {max:.3?}: {verdict} (mean ±{:.0} %, p99 ≤ period + {P99_SLACK:?})",
            seen.len(),
            (mean.as_secs_f64() / wanted.as_secs_f64() - 1.0) * 100.0,
            MEAN_TOLERANCE * 100.0,
        );
    }
    group.finish();
}

criterion_group!(benches, tick_cadence);
criterion_main!(benches);
