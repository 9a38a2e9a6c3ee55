//! Root services on driver threads: queue items reach the registered root, one
//! `proxy_on_queue_ready` per item, on another thread than the stream that enqueued them;
//! ticks fire on every replica; and the drivers end once the plugin is dropped.

mod common;

use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use prometheus::{Encoder, Registry, TextEncoder};
use wasmbridge_host::{FilterChain, HeadersOutcome, Plugin, PluginSpec, Runtime};

/// Each VM defines the counters `ticks` (id at 64) and `ready` (68), registers the queue
/// `q` (id at 72) and ticks every millisecond. `on_tick` and `on_queue_ready` count their
/// calls (the latter also takes one item); a request enqueues three items.
const GUEST: &str = r#"(module
  (import "env" "proxy_define_metric" (func $define (param i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_increment_metric" (func $inc (param i32 i64) (result i32)))
  (import "env" "proxy_register_shared_queue" (func $register (param i32 i32 i32) (result i32)))
  (import "env" "proxy_enqueue_shared_queue" (func $enqueue (param i32 i32 i32) (result i32)))
  (import "env" "proxy_dequeue_shared_queue" (func $dequeue (param i32 i32 i32) (result i32)))
  (import "env" "proxy_set_tick_period_milliseconds" (func $tick (param i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 128) "ticks")
  (data (i32.const 144) "ready")
  (data (i32.const 160) "q")
  (data (i32.const 176) "item")
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "_initialize"))
  (func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 4096))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32)
    (drop (call $define (i32.const 0) (i32.const 128) (i32.const 5) (i32.const 64)))
    (drop (call $define (i32.const 0) (i32.const 144) (i32.const 5) (i32.const 68)))
    (drop (call $register (i32.const 160) (i32.const 1) (i32.const 72)))
    (i32.eqz (call $tick (i32.const 1))))
  (func (export "proxy_on_tick") (param i32)
    (drop (call $inc (i32.load (i32.const 64)) (i64.const 1))))
  (func (export "proxy_on_queue_ready") (param i32 i32)
    (drop (call $dequeue (local.get 1) (i32.const 80) (i32.const 84)))
    (drop (call $inc (i32.load (i32.const 68)) (i64.const 1))))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (drop (call $enqueue (i32.load (i32.const 72)) (i32.const 176) (i32.const 4)))
    (drop (call $enqueue (i32.load (i32.const 72)) (i32.const 176) (i32.const 4)))
    (drop (call $enqueue (i32.load (i32.const 72)) (i32.const 176) (i32.const 4)))
    (i32.const 0)))"#;

/// The value of guest counter `name` on the runtime's collector.
fn counter(registry: &Registry, name: &str) -> u64 {
    let mut text = Vec::new();
    TextEncoder::new()
        .encode(&registry.gather(), &mut text)
        .expect("encode");
    let text = String::from_utf8(text).expect("utf-8");
    let prefix = format!("wasmcustom_{name} ");
    text.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .map_or(0, |v| v.parse().expect("a number"))
}

/// Polls `done` until it holds, for at most ten seconds.
fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "{what} did not happen in time");
        std::thread::yield_now();
    }
}

#[test]
fn queue_items_reach_the_owner_on_its_driver_and_drivers_end_with_the_plugin() {
    let runtime = Runtime::new().expect("engine");
    let registry = Registry::new();
    registry
        .register(Box::new(runtime.guest_metrics()))
        .expect("register");
    let module = runtime
        .compile(
            "roots",
            Path::new("roots.wasm"),
            &wat::parse_str(GUEST).expect("wat"),
        )
        .expect("compile");
    let spec = PluginSpec {
        name: "roots".into(),
        replicas: 2,
        ..PluginSpec::default()
    };
    let plugin = Plugin::load(&runtime, &module, spec, None).expect("load");

    // Each replica's driver on a thread of its own, as on a proxy's workers.
    let (ended, driver_ended) = mpsc::channel();
    for replica in 0..2 {
        let driver = plugin.root_driver(replica).expect("a driver per replica");
        assert!(plugin.root_driver(replica).is_none(), "only one driver");
        let ended = ended.clone();
        std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime")
                .block_on(driver);
            let _ = ended.send(replica);
        });
    }

    // A stream on this thread enqueues three items for the root that registered last.
    let chain = FilterChain::new(vec![plugin.clone()]);
    let mut stream = chain.start(common::request("GET"));
    assert_eq!(stream.on_request_headers(true), HeadersOutcome::Continue);
    stream.finish();
    drop(stream);

    eventually("three on_queue_ready", || counter(&registry, "ready") == 3);
    // Ticks of both replicas add up (1 ms each).
    eventually("ticks", || counter(&registry, "ticks") >= 10);

    drop(chain);
    drop(plugin);
    for _ in 0..2 {
        driver_ended
            .recv_timeout(Duration::from_secs(10))
            .expect("a driver ends once its plugin is dropped");
    }
    let ticks = counter(&registry, "ticks");
    assert_eq!(counter(&registry, "ready"), 3, "one callback per item");
    assert_eq!(
        counter(&registry, "ticks"),
        ticks,
        "no tick after the drivers ended"
    );
}
