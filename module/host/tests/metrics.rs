//! The metric hostcalls called from a guest: marshalling (bad pointers, bad types), and one
//! store for every replica and plugin of a runtime, exported through the runtime's
//! prometheus collector.

mod common;

use std::path::Path;
use std::sync::Arc;

use prometheus::{Encoder, Registry, TextEncoder};
use wasmbridge_host::{FilterChain, HeadersOutcome, Plugin, PluginSpec, Runtime};

/// `on_vm_start` defines counter `vm_starts` and adds 1 (id kept at 64). Each request
/// writes statuses as bytes at 512.. and values as u64 at 528.., then replies with the
/// 32-byte block:
/// 0 define(type 3) · 1 define(name out of bounds) · 2 define(ret out of bounds) ·
/// 3 define(counter "requests.GET") · 4 increment it by 1 · 5 get(ret out of bounds) ·
/// 6 get it → 16.. · 7 get vm_starts → 24.. · 8 define(gauge "big") · 9 record -1 on it ·
/// 10 get it (u64::MAX) → 32..
const GUEST: &str = r#"(module
  (import "env" "proxy_define_metric" (func $define (param i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_increment_metric" (func $inc (param i32 i64) (result i32)))
  (import "env" "proxy_record_metric" (func $record (param i32 i64) (result i32)))
  (import "env" "proxy_get_metric" (func $get (param i32 i32) (result i32)))
  (import "env" "proxy_send_local_response"
    (func $reply (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 128) "vm_starts")
  (data (i32.const 144) "requests.GET")
  (data (i32.const 160) "big")
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "_initialize"))
  (func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 4096))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32)
    (if (call $define (i32.const 0) (i32.const 128) (i32.const 9) (i32.const 64))
      (then (return (i32.const 0))))
    (i32.eqz (call $inc (i32.load (i32.const 64)) (i64.const 1))))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (i32.store8 (i32.const 512) (call $define (i32.const 3) (i32.const 144) (i32.const 12) (i32.const 72)))
    (i32.store8 (i32.const 513) (call $define (i32.const 0) (i32.const 65530) (i32.const 100) (i32.const 72)))
    (i32.store8 (i32.const 514) (call $define (i32.const 0) (i32.const 144) (i32.const 12) (i32.const 65534)))
    (i32.store8 (i32.const 515) (call $define (i32.const 0) (i32.const 144) (i32.const 12) (i32.const 72)))
    (i32.store8 (i32.const 516) (call $inc (i32.load (i32.const 72)) (i64.const 1)))
    (i32.store8 (i32.const 517) (call $get (i32.load (i32.const 72)) (i32.const 65530)))
    (i32.store8 (i32.const 518) (call $get (i32.load (i32.const 72)) (i32.const 528)))
    (i32.store8 (i32.const 519) (call $get (i32.load (i32.const 64)) (i32.const 536)))
    (i32.store8 (i32.const 520) (call $define (i32.const 1) (i32.const 160) (i32.const 3) (i32.const 76)))
    (i32.store8 (i32.const 521) (call $record (i32.load (i32.const 76)) (i64.const -1)))
    (i32.store8 (i32.const 522) (call $get (i32.load (i32.const 76)) (i32.const 544)))
    (drop (call $reply (i32.const 200) (i32.const 0) (i32.const 0)
                       (i32.const 512) (i32.const 40) (i32.const 0) (i32.const 0) (i32.const -1)))
    (i32.const 1)))"#;

fn plugin(runtime: &Runtime, name: &str, vm_id: &str, replicas: usize) -> Arc<Plugin> {
    let bytes = wat::parse_str(GUEST).expect("wat");
    let module = runtime
        .compile(name, Path::new("metrics.wasm"), &bytes)
        .expect("compile");
    let spec = PluginSpec {
        name: name.into(),
        vm_id: vm_id.into(),
        replicas,
        ..PluginSpec::default()
    };
    Plugin::load(runtime, &module, spec, None).expect("load")
}

fn exchange(chain: &FilterChain) -> Vec<u8> {
    let mut stream = chain.start(common::request("GET"));
    let HeadersOutcome::LocalReply(reply) = stream.on_request_headers(true) else {
        panic!("the guest replies with its result block");
    };
    stream.finish();
    reply.body.to_vec()
}

fn u64_at(block: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(block[at..at + 8].try_into().expect("8 bytes"))
}

#[test]
fn hostcalls_check_memory_and_types_and_share_one_store() {
    let runtime = Runtime::new().expect("engine");
    // Three VMs in all (two replicas of one plugin, one of another with another vm_id),
    // each adding 1 to `vm_starts` when it starts.
    let a = plugin(&runtime, "a", "one", 2);
    let b = plugin(&runtime, "b", "two", 1);

    let block = exchange(&FilterChain::new(vec![a.clone()]));
    assert_eq!(block[0], 2, "type 3 is BAD_ARGUMENT");
    assert_eq!(block[1], 6, "a name out of bounds is INVALID_MEMORY_ACCESS");
    assert_eq!(
        block[2], 6,
        "a return slot out of bounds is INVALID_MEMORY_ACCESS"
    );
    assert_eq!(&block[3..5], [0, 0], "define and increment");
    assert_eq!(block[5], 6, "get into a slot out of bounds");
    assert_eq!(&block[6..11], [0, 0, 0, 0, 0]);
    assert_eq!(u64_at(&block, 16), 1, "requests.GET");
    assert_eq!(
        u64_at(&block, 24),
        3,
        "vm_starts counts every VM of the runtime"
    );
    assert_eq!(
        u64_at(&block, 32),
        u64::MAX,
        "record takes the i64 as a u64"
    );

    // The other plugin (another vm_id) increments the same counter.
    let block = exchange(&FilterChain::new(vec![b]));
    assert_eq!(u64_at(&block, 16), 2, "requests.GET across plugins");

    let registry = Registry::new();
    registry
        .register(Box::new(runtime.guest_metrics()))
        .expect("register");
    let mut text = Vec::new();
    TextEncoder::new()
        .encode(&registry.gather(), &mut text)
        .expect("encode");
    let text = String::from_utf8(text).expect("utf-8");
    assert!(text.contains("\nwasmcustom_vm_starts 3\n"), "{text}");
    assert!(text.contains("\nwasmcustom_requests_GET 2\n"), "{text}");
    assert!(text.contains("# TYPE wasmcustom_big gauge\n"), "{text}");

    // A runtime of its own starts from nothing.
    let other = Runtime::new().expect("engine");
    let block = exchange(&FilterChain::new(vec![plugin(&other, "c", "", 1)]));
    assert_eq!(u64_at(&block, 16), 1);
    assert_eq!(u64_at(&block, 24), 1);
}
