//! VM pools: `per_stream` isolation (a fresh, configured VM per stream, and a trap that
//! reaches no other stream), recycling by streams and by memory without cutting the
//! streams a replica still serves, least-loaded selection, the `fail_reload` back-off and
//! the pool metrics.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus::{Encoder, Registry, TextEncoder};
use wasmbridge_host::{
    Backoff, FailurePolicy, FilterChain, HeadersOutcome, HostMetrics, Isolation, PerStreamPool,
    Plugin, PluginSpec, PoolMetrics, PoolOptions, Runtime, Selection,
};

/// Counts in guest metrics: `configured` (each `proxy_on_configure`), `seen` (a gauge: the
/// streams this VM has seen, set at each request) and `deleted` (each `proxy_on_delete`).
/// Every request grows the memory by one page; a request with method `TRAP` traps.
const GUEST: &str = r#"(module
  (import "env" "proxy_define_metric" (func $define (param i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_increment_metric" (func $inc (param i32 i64) (result i32)))
  (import "env" "proxy_record_metric" (func $record (param i32 i64) (result i32)))
  (import "env" "proxy_get_header_map_value"
    (func $get (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 128) "configured")
  (data (i32.const 144) "seen")
  (data (i32.const 160) "deleted")
  (data (i32.const 176) ":method")
  (global $seen (mut i32) (i32.const 0))
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "_initialize"))
  (func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 4096))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32)
    (drop (call $define (i32.const 0) (i32.const 128) (i32.const 10) (i32.const 64)))
    (drop (call $define (i32.const 1) (i32.const 144) (i32.const 4) (i32.const 68)))
    (drop (call $define (i32.const 0) (i32.const 160) (i32.const 7) (i32.const 72)))
    (drop (call $inc (i32.load (i32.const 64)) (i64.const 1)))
    (i32.const 1))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (drop (call $get (i32.const 0) (i32.const 176) (i32.const 7) (i32.const 80) (i32.const 84)))
    (if (i32.eq (i32.load8_u (i32.load (i32.const 80))) (i32.const 84))
      (then unreachable))
    (global.set $seen (i32.add (global.get $seen) (i32.const 1)))
    (drop (call $record (i32.load (i32.const 68)) (i64.extend_i32_u (global.get $seen))))
    (drop (memory.grow (i32.const 1)))
    (i32.const 0))
  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32) (i32.const 0))
  (func (export "proxy_on_delete") (param i32)
    (drop (call $inc (i32.load (i32.const 72)) (i64.const 1)))))"#;

struct Fixture {
    plugin: Arc<Plugin>,
    chain: FilterChain,
    registry: Registry,
}

impl Fixture {
    fn new(failure_policy: FailurePolicy, replicas: usize, pool: PoolOptions) -> Fixture {
        let mut runtime = Runtime::new().expect("engine");
        if pool.isolation == Isolation::PerStream {
            runtime = runtime
                .per_stream(PerStreamPool {
                    instances: 16,
                    memory: 16 << 20,
                })
                .expect("pooling engine");
        }
        let registry = Registry::new();
        registry
            .register(Box::new(runtime.guest_metrics()))
            .expect("register");
        let metrics = HostMetrics::register(&registry).expect("register");
        let module = runtime
            .compile(
                "pool",
                Path::new("pool.wasm"),
                &wat::parse_str(GUEST).expect("wat"),
            )
            .expect("compile");
        let spec = PluginSpec {
            name: "pool".into(),
            replicas,
            failure_policy,
            pool,
            ..PluginSpec::default()
        };
        let plugin = Plugin::load(&runtime, &module, spec, Some(metrics)).expect("load");
        registry
            .register(Box::new(PoolMetrics::new(std::slice::from_ref(&plugin))))
            .expect("register");
        Fixture {
            chain: FilterChain::new(vec![plugin.clone()]),
            plugin,
            registry,
        }
    }

    fn metrics(&self) -> String {
        let mut text = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut text)
            .expect("encode");
        String::from_utf8(text).expect("utf-8")
    }

    /// The value of the series `series` (name and labels as exported), 0 when absent.
    fn value(&self, series: &str) -> f64 {
        let prefix = format!("{series} ");
        self.metrics()
            .lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()).map(str::to_string))
            .map_or(0.0, |v| v.parse().expect("a number"))
    }

    fn guest(&self, name: &str) -> f64 {
        self.value(&format!("wasmcustom_{name}"))
    }
}

fn options(set: impl FnOnce(&mut PoolOptions)) -> PoolOptions {
    let mut options = PoolOptions::default();
    set(&mut options);
    options
}

#[test]
fn per_stream_gives_every_stream_a_fresh_configured_vm_dropped_at_its_end() {
    let f = Fixture::new(
        FailurePolicy::FailClosed,
        1,
        options(|o| o.isolation = Isolation::PerStream),
    );
    assert_eq!(f.plugin.replica_count(), 0);
    // Loading started (and dropped) one VM to check that the module starts.
    assert_eq!(f.guest("configured"), 1.0);
    assert_eq!(f.plugin.pool_state().replicas, 0);

    let mut a = f.chain.start(common::request("GET"));
    assert_eq!(a.on_request_headers(true), HeadersOutcome::Continue);
    let mut b = f.chain.start(common::request("GET"));
    assert_eq!(b.on_request_headers(true), HeadersOutcome::Continue);
    // Two live VMs, each configured for its stream, each having seen one stream.
    assert_eq!(f.plugin.pool_state().replicas, 2);
    assert_eq!(f.guest("configured"), 3.0);
    assert_eq!(f.guest("seen"), 1.0);
    a.finish();
    drop(a);
    assert_eq!(f.plugin.pool_state().replicas, 1, "a's VM is dropped");
    b.finish();
    drop(b);
    assert_eq!(f.plugin.pool_state().replicas, 0);
    assert_eq!(f.guest("deleted"), 2.0);

    for _ in 0..5 {
        let mut s = f.chain.start(common::request("GET"));
        assert_eq!(s.on_request_headers(true), HeadersOutcome::Continue);
        s.finish();
    }
    assert_eq!(
        f.guest("seen"),
        1.0,
        "no state carries over between streams"
    );
    assert_eq!(f.guest("configured"), 8.0);
    assert_eq!(
        f.value(
            r#"wasmbridge_pool_instantiation_seconds_count{isolation="per_stream",plugin="pool"}"#
        ),
        8.0
    );
}

/// With `shared` isolation a trap drops the replica and the other streams in it fail too
/// (as in Envoy); with `per_stream` the trapping stream is the only one affected.
#[test]
fn a_trap_reaches_other_streams_only_when_they_share_the_vm() {
    for isolation in [Isolation::Shared, Isolation::PerStream] {
        let f = Fixture::new(
            FailurePolicy::FailClosed,
            1,
            options(|o| o.isolation = isolation),
        );
        let mut bystander = f.chain.start(common::request("GET"));
        assert_eq!(bystander.on_request_headers(true), HeadersOutcome::Continue);

        let mut trapping = f.chain.start(common::request("TRAP"));
        match trapping.on_request_headers(true) {
            HeadersOutcome::LocalReply(reply) => assert_eq!(reply.status, 503),
            other => panic!("{isolation:?}: the trap gave {other:?}"),
        }
        trapping.finish();

        bystander
            .data_mut()
            .response_headers
            .push(":status", bytes::Bytes::from_static(b"200"));
        let after = bystander.on_response_headers(true);
        match isolation {
            Isolation::Shared => assert!(
                matches!(after, HeadersOutcome::LocalReply(ref r) if r.status == 503),
                "shared: the bystander's context died with the VM, got {after:?}"
            ),
            Isolation::PerStream => {
                assert_eq!(after, HeadersOutcome::Continue, "per_stream: untouched")
            }
        }
        bystander.finish();
        assert_eq!(
            f.value(r#"wasmbridge_plugin_poisonings_total{plugin="pool",reason="trap"}"#),
            1.0,
            "{isolation:?}"
        );
    }
}

#[test]
fn recycling_after_n_streams_keeps_the_streams_in_flight() {
    let f = Fixture::new(
        FailurePolicy::FailClosed,
        1,
        options(|o| o.recycle_streams = Some(2)),
    );
    let mut first = f.chain.start(common::request("GET"));
    assert_eq!(first.on_request_headers(false), HeadersOutcome::Continue);
    let mut second = f.chain.start(common::request("GET"));
    assert_eq!(second.on_request_headers(false), HeadersOutcome::Continue);
    assert_eq!(f.guest("seen"), 2.0);
    assert_eq!(f.plugin.pool_state().each[0].streams, 2);

    // The third stream finds the replica due and gets a fresh one.
    let mut third = f.chain.start(common::request("GET"));
    assert_eq!(third.on_request_headers(true), HeadersOutcome::Continue);
    assert_eq!(f.guest("seen"), 1.0, "a fresh VM");
    assert_eq!(f.guest("configured"), 2.0);
    assert_eq!(
        f.value(r#"wasmbridge_pool_recycles_total{plugin="pool",reason="streams"}"#),
        1.0
    );
    let state = f.plugin.pool_state();
    assert_eq!((state.replicas, state.each[0].streams), (1, 1));

    // The old VM still serves its two streams to their end.
    for s in [&mut first, &mut second] {
        s.data_mut()
            .response_headers
            .push(":status", bytes::Bytes::from_static(b"200"));
        assert_eq!(s.on_response_headers(true), HeadersOutcome::Continue);
        s.finish();
    }
    third.finish();
    assert_eq!(f.guest("deleted"), 3.0, "every stream ended in its own VM");
    assert_eq!(
        f.value(r#"wasmbridge_pool_recycles_total{plugin="pool",reason="streams"}"#),
        1.0
    );
}

#[test]
fn recycling_above_a_memory_high_water_mark() {
    // One page to start with, one more per request: three pages after two requests.
    let f = Fixture::new(
        FailurePolicy::FailClosed,
        1,
        options(|o| o.recycle_memory = Some(3 * 65536)),
    );
    for expected_seen in [1.0, 2.0, 1.0, 2.0] {
        let mut s = f.chain.start(common::request("GET"));
        assert_eq!(s.on_request_headers(true), HeadersOutcome::Continue);
        assert_eq!(f.guest("seen"), expected_seen);
        s.finish();
    }
    assert_eq!(
        f.value(r#"wasmbridge_pool_recycles_total{plugin="pool",reason="memory"}"#),
        1.0
    );
    assert_eq!(
        f.value(r#"wasmbridge_pool_replica_memory_bytes{plugin="pool",replica="0"}"#),
        3.0 * 65536.0
    );
}

#[test]
fn least_loaded_selection_spreads_streams_over_the_replicas() {
    let f = Fixture::new(
        FailurePolicy::FailClosed,
        3,
        options(|o| o.selection = Selection::LeastLoaded),
    );
    let mut streams = Vec::new();
    for _ in 0..6 {
        let mut s = f.chain.start(common::request("GET"));
        assert_eq!(s.on_request_headers(false), HeadersOutcome::Continue);
        streams.push(s);
    }
    let state = f.plugin.pool_state();
    assert_eq!(
        state.each.iter().map(|r| r.streams).collect::<Vec<_>>(),
        [2, 2, 2]
    );
    assert_eq!(
        f.value(r#"wasmbridge_pool_replica_streams{plugin="pool",replica="1"}"#),
        2.0
    );
    assert_eq!(f.value(r#"wasmbridge_pool_replicas{plugin="pool"}"#), 3.0);
    assert_eq!(f.value(r#"wasmbridge_pool_busy{plugin="pool"}"#), 0.0);
    drop(streams);
    assert!(f.plugin.pool_state().each.iter().all(|r| r.streams == 0));
}

/// Under `fail_reload` a failed replica is rebuilt after the base back-off, and after
/// twice that when the rebuilt VM fails again at once; streams meanwhile get the policy
/// without the module being called.
#[test]
fn fail_reload_rebuilds_with_an_exponential_back_off() {
    let base = Duration::from_millis(100);
    let f = Fixture::new(
        FailurePolicy::FailReload,
        1,
        options(|o| {
            o.backoff = Backoff {
                base,
                max: Duration::from_secs(5),
            }
        }),
    );
    let calls = || {
        f.value(r#"wasmbridge_plugin_callbacks_total{callback="proxy_on_request_headers",plugin="pool"}"#)
    };
    let run = |method: &str| {
        let mut s = f.chain.start(common::request(method));
        let outcome = s.on_request_headers(true);
        s.finish();
        outcome
    };
    let refused =
        |o: &HeadersOutcome| matches!(o, HeadersOutcome::LocalReply(r) if r.status == 503);

    // Taken before the trap, so the back-off measured from it is never short.
    let failed_at = Instant::now();
    assert!(refused(&run("TRAP")));
    assert_eq!(calls(), 1.0);
    // At once: the replica backs off; the module is not called.
    assert!(refused(&run("GET")));
    assert_eq!(calls(), 1.0, "no VM during the back-off");

    // Once the base interval passed, a fresh VM serves (and here traps again).
    // A bound on the wait, not a timing: the loop only ends early by failing.
    let give_up = Duration::from_secs(60);
    let mut failed_again = Instant::now();
    while calls() < 2.0 {
        assert!(failed_at.elapsed() < give_up, "never rebuilt");
        // The run that reaches the rebuilt VM traps after this moment.
        failed_again = Instant::now();
        assert!(refused(&run("TRAP")));
        std::thread::yield_now();
    }
    let rebuilt_after = failed_at.elapsed();
    assert!(rebuilt_after >= base, "rebuilt after {rebuilt_after:?}");
    while calls() < 3.0 {
        assert!(failed_again.elapsed() < give_up, "never rebuilt twice");
        assert!(refused(&run("GET")) || calls() == 3.0);
        std::thread::yield_now();
    }
    let second_wait = failed_again.elapsed();
    assert!(
        second_wait >= base * 2,
        "the second wait doubled: {second_wait:?}"
    );
    assert_eq!(run("GET"), HeadersOutcome::Continue);
    assert_eq!(
        f.value(r#"wasmbridge_plugin_poisonings_total{plugin="pool",reason="trap"}"#),
        2.0
    );
}

/// While a callback runs, its replica counts as busy; a second stream that needs the same
/// replica waits for it and is counted in `checkouts_waited`. The probe runs inside the
/// callback (a foreign function), so nothing depends on timing.
#[test]
fn a_replica_held_by_a_callback_is_busy_and_a_second_checkout_waits() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Mutex, OnceLock, Weak, mpsc};

    const HOLDER: &str = r#"(module
  (import "env" "proxy_call_foreign_function"
    (func $foreign (param i32 i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 128) "inside")
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "_initialize"))
  (func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 4096))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (drop (call $foreign (i32.const 128) (i32.const 6) (i32.const 0) (i32.const 0)
      (i32.const 64) (i32.const 68)))
    (i32.const 0)))"#;

    let me: Arc<OnceLock<Weak<Plugin>>> = Arc::default();
    let seen: Arc<Mutex<Vec<(usize, u64)>>> = Arc::default();
    let (done, other_done) = mpsc::channel();
    let done = Mutex::new(done);
    let started = AtomicBool::new(false);
    let mut foreign = wasmbridge_host::ForeignFunctions::new();
    {
        let (me, seen) = (me.clone(), seen.clone());
        foreign.register("inside", move |_| {
            let plugin = me.get().and_then(Weak::upgrade).expect("the plugin");
            let busy = plugin.pool_state().busy;
            if !started.swap(true, Ordering::SeqCst) {
                // A stream on another thread needs the only replica, which this callback holds.
                let other = plugin.clone();
                let done = done.lock().expect("sender").clone();
                std::thread::spawn(move || {
                    let chain = FilterChain::new(vec![other]);
                    let mut s = chain.start(common::request("GET"));
                    let outcome = s.on_request_headers(true);
                    s.finish();
                    let _ = done.send(outcome);
                });
                while plugin.pool_state().waited == 0 {
                    std::thread::yield_now();
                }
            }
            seen.lock()
                .expect("seen")
                .push((busy, plugin.pool_state().waited));
            Ok(bytes::Bytes::new())
        });
    }
    let runtime = Runtime::new().expect("engine");
    let module = runtime
        .compile(
            "holder",
            Path::new("holder.wasm"),
            &wat::parse_str(HOLDER).expect("wat"),
        )
        .expect("compile");
    let spec = PluginSpec {
        name: "holder".into(),
        replicas: 1,
        foreign,
        ..PluginSpec::default()
    };
    let plugin = Plugin::load(&runtime, &module, spec, None).expect("load");
    me.set(Arc::downgrade(&plugin)).expect("set once");

    let chain = FilterChain::new(vec![plugin.clone()]);
    let mut s = chain.start(common::request("GET"));
    assert_eq!(s.on_request_headers(true), HeadersOutcome::Continue);
    s.finish();
    let outcome = other_done
        .recv_timeout(Duration::from_secs(30))
        .expect("the waiting stream ran once the replica was free");
    assert_eq!(outcome, HeadersOutcome::Continue);

    let seen = seen.lock().expect("seen").clone();
    assert_eq!(seen.len(), 2, "one callback per stream");
    assert_eq!(
        seen[0],
        (1, 1),
        "busy while held; the other checkout waited"
    );
    assert_eq!(seen[1].0, 1, "busy again for the second stream's callback");
    let state = plugin.pool_state();
    assert_eq!(state.busy, 0, "nothing runs now");
    assert!(state.waited >= 1);
}
