//! What one hostcall costs a filter, through the host's public API, on a warm `shared`
//! replica: a guest written in WAT calls the hostcall `K` times in a loop in one callback,
//! and the time of the callback is divided by `K`, so each figure is the time of one call
//! (with 1/`K` of a callback round trip in it). The request has 20 headers.
//!
//! - `hostcall/get_header`: `proxy_get_header_map_value` of one present header, the value
//!   copied into guest memory through `proxy_on_memory_allocate`. Goal: ≤ 100 ns.
//! - `hostcall/add_header`: `proxy_add_header_map_value`, on fresh streams (the map grows).
//! - `hostcall/get_pairs_20`: `proxy_get_header_map_pairs` of the 20-header map,
//!   serialized into guest memory.
//! - `hostcall/get_body_64k` and `set_body_64k`: `proxy_get_buffer_bytes` of a whole
//!   64 KiB request body chunk, and `proxy_set_buffer_bytes` replacing it; compared with
//!   `hostcall/memcpy_64k`, a plain copy of the same bytes. Goal: within 2×.
//! - `callback/round_trip`: `proxy_on_request_body` doing nothing, for an empty chunk: the
//!   fixed price of every callback (host bookkeeping, the call into wasm and back).
//!
//! ```sh
//! cargo bench -p wasmbridge-host --bench hostcalls
//! ```

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use wasmbridge_host::{
    BodyOutcome, FilterChain, HeadersOutcome, HttpStream, Plugin, PluginSpec, Runtime, StreamData,
};

/// A guest whose `proxy_on_request_headers` runs `HEADERS` and whose
/// `proxy_on_request_body` runs `BODY`, each a loop of `K` calls that traps on a status
/// other than OK. Guest memory: the key at 0, the value at 64, the return pointers at 128
/// and 132, allocations at 64 KiB (every allocation gets the same 64 KiB block).
const GUEST: &str = r#"(module
  (import "env" "proxy_get_header_map_value" (func $get (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_add_header_map_value" (func $add (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_header_map_pairs" (func $pairs (param i32 i32 i32) (result i32)))
  (import "env" "proxy_get_buffer_bytes" (func $get_body (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_set_buffer_bytes" (func $set_body (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 3)
  (data (i32.const 0) "x-bench-10")
  (data (i32.const 64) "a-value-of-some-length")
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "_initialize"))
  (func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 65536))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (local $i i32)
    (block $done (loop $again
      (br_if $done (i32.ge_u (local.get $i) (i32.const K)))
      (if HEADERS (then unreachable))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $again)))
    (i32.const 0))
  (func (export "proxy_on_request_body") (param i32 i32 i32) (result i32)
    (local $i i32)
    (block $done (loop $again
      (br_if $done (i32.ge_u (local.get $i) (i32.const K)))
      (if BODY (then unreachable))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $again)))
    (i32.const 0))
  (func (export "proxy_on_delete") (param i32)))"#;

const NOTHING: &str = "(i32.const 0)";
const GET_HEADER: &str =
    "(call $get (i32.const 0) (i32.const 0) (i32.const 10) (i32.const 128) (i32.const 132))";
const ADD_HEADER: &str =
    "(call $add (i32.const 0) (i32.const 0) (i32.const 10) (i32.const 64) (i32.const 22))";
const GET_PAIRS: &str = "(call $pairs (i32.const 0) (i32.const 128) (i32.const 132))";
const GET_BODY: &str = "(call $get_body (i32.const 0) (i32.const 0) (i32.const 65536) (i32.const 128) (i32.const 132))";
const SET_BODY: &str = "(call $set_body (i32.const 0) (i32.const 0) (i32.const 65536) (i32.const 65536) (i32.const 65536))";

const BODY: usize = 64 * 1024;

/// A plugin whose callbacks run `headers` and `body` `k` times each.
fn plugin(runtime: &Runtime, name: &str, headers: &str, body: &str, k: u32) -> Arc<Plugin> {
    let wat = GUEST
        .replace("HEADERS", headers)
        .replace("BODY", body)
        .replace("(i32.const K)", &format!("(i32.const {k})"));
    let wasm = wat::parse_str(&wat).expect("wat");
    let module = runtime
        .compile(name, Path::new(name), &wasm)
        .expect("compile");
    let spec = PluginSpec {
        name: name.to_string(),
        replicas: 1,
        ..PluginSpec::default()
    };
    Plugin::load(runtime, &module, spec, None).expect("load")
}

/// A GET with 20 headers: the four pseudo-headers and `x-bench-00` … `x-bench-15`.
fn request() -> StreamData {
    let mut data = StreamData::default();
    let headers = &mut data.request_headers;
    headers.push(":method", Bytes::from_static(b"GET"));
    headers.push(":scheme", Bytes::from_static(b"http"));
    headers.push(":path", Bytes::from_static(b"/bench/path?query=1"));
    headers.push(":authority", Bytes::from_static(b"bench.example"));
    for i in 0..16 {
        headers.push(
            format!("x-bench-{i:02}").as_str(),
            Bytes::from(format!("header-value-number-{i:02}")),
        );
    }
    data
}

/// A stream that has passed its request headers and waits for body chunks.
fn open(chain: &FilterChain) -> HttpStream {
    let mut stream = chain.start(request());
    assert_eq!(stream.on_request_headers(false), HeadersOutcome::Continue);
    stream
}

fn forward(outcome: BodyOutcome) -> Bytes {
    match outcome {
        BodyOutcome::Forward(bytes) => bytes,
        other => panic!("the body callback failed: {other:?}"),
    }
}

/// Measures a body callback that makes `k` calls, per call: `iters` calls in
/// `iters / k` callbacks (at least one) on one open stream, each given `chunk`.
fn per_call_in_body(chain: &FilterChain, chunk: &Bytes, k: u32, iters: u64) -> Duration {
    let mut stream = open(chain);
    let callbacks = iters.div_ceil(u64::from(k)).max(1);
    let started = Instant::now();
    for _ in 0..callbacks {
        black_box(forward(stream.on_request_body(chunk.clone(), false)));
    }
    let elapsed = started.elapsed();
    stream.finish();
    elapsed.mul_f64(iters as f64 / (callbacks * u64::from(k)) as f64)
}

/// Measures a request-headers callback that makes `k` calls, per call: `iters` calls in
/// `iters / k` callbacks (at least one), each on a fresh stream opened and finished
/// outside the measurement (the headers are readable in their own callback only, and adds
/// grow the map).
fn per_call_in_headers(chain: &FilterChain, k: u32, iters: u64) -> Duration {
    let streams = iters.div_ceil(u64::from(k)).max(1);
    let mut elapsed = Duration::ZERO;
    for _ in 0..streams {
        let mut stream = chain.start(request());
        let started = Instant::now();
        let outcome = stream.on_request_headers(true);
        elapsed += started.elapsed();
        assert_eq!(
            outcome,
            HeadersOutcome::Continue,
            "the headers callback failed"
        );
        stream.finish();
    }
    elapsed.mul_f64(iters as f64 / (streams * u64::from(k)) as f64)
}

fn hostcalls(c: &mut Criterion) {
    let runtime = Runtime::new().expect("engine");
    let mut group = c.benchmark_group("hostcall");

    for (name, op, k) in [
        ("get_header", GET_HEADER, 256),
        ("add_header", ADD_HEADER, 32),
        ("get_pairs_20", GET_PAIRS, 64),
    ] {
        let chain = FilterChain::new(vec![plugin(&runtime, name, op, NOTHING, k)]);
        // The guest traps on any status but OK: check once outside the measurement.
        per_call_in_headers(&chain, k, 1);
        group.bench_function(name, |b| {
            b.iter_custom(|iters| per_call_in_headers(&chain, k, iters))
        });
    }

    let body = Bytes::from(vec![b'x'; BODY]);
    for (name, op, k) in [
        ("get_body_64k", GET_BODY, 32),
        ("set_body_64k", SET_BODY, 32),
    ] {
        let chain = FilterChain::new(vec![plugin(&runtime, name, NOTHING, op, k)]);
        per_call_in_body(&chain, &body, k, 1);
        group.bench_function(name, |b| {
            b.iter_custom(|iters| per_call_in_body(&chain, &body, k, iters))
        });
    }

    let source = vec![b'x'; BODY];
    let mut target = vec![0_u8; BODY];
    group.bench_function("memcpy_64k", |b| {
        b.iter(|| {
            target.copy_from_slice(black_box(&source));
            black_box(&mut target);
        })
    });
    group.finish();

    let mut group = c.benchmark_group("callback");
    let chain = FilterChain::new(vec![plugin(&runtime, "round_trip", NOTHING, NOTHING, 0)]);
    group.bench_function("round_trip", |b| {
        b.iter_custom(|iters| {
            let mut stream = open(&chain);
            let empty = Bytes::new();
            let started = Instant::now();
            for _ in 0..iters {
                black_box(forward(stream.on_request_body(empty.clone(), false)));
            }
            let elapsed = started.elapsed();
            stream.finish();
            elapsed
        })
    });
    group.finish();
}

criterion_group!(benches, hostcalls);
criterion_main!(benches);
