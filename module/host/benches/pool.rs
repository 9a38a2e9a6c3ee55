//! What the pool's isolation and limits cost, through the host's public API:
//!
//! - `instantiate/*`: one VM made ready and dropped, as a `per_stream` stream does
//!   (instantiate from the pooling allocator with copy-on-write memory, start-up code,
//!   root context, `proxy_on_vm_start`, `proxy_on_configure`), for a minimal module and
//!   for the Rust SDK `add_header` filter; and the same on the default (on-demand) engine
//!   for comparison. Goal: ≤ 10 µs median for the minimal module.
//! - `stream/*`: a whole stream (context create, request and response headers, `on_log`,
//!   `on_done`, `on_delete`) with `add_header`, `shared` vs `per_stream`: the price of
//!   isolation per request.
//! - `context/create_delete`: a stream context created and deleted on a warm replica, the
//!   fixed cost every request pays per plugin. Goal: ≤ 0.5 µs.
//! - `epoch/*`: a CPU-heavy callback (a loop of arithmetic, about a millisecond) with the
//!   CPU-deadline checks and without. Goal: ≤ 10 % overhead.
//! - `fuel/*`: the same callback, and one that sums the bytes of its memory (a loop whose
//!   speed is bound by the instructions it runs, as a parser's is, where the arithmetic
//!   loop is bound by the latency of its multiplications), on an engine that counts fuel
//!   (`limits.fuel`) and on the default engine, both with CPU deadlines: what fuel costs a
//!   plugin that sets it.
//!
//! `add_header` comes from `make filters`; without it those cases are skipped.
//!
//! ```sh
//! cargo bench -p wasmbridge-host --bench pool
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use wasmbridge_host::{
    EngineSettings, FilterChain, HeadersOutcome, Isolation, Limits, PerStreamPool, Plugin,
    PluginSpec, PoolOptions, Runtime, StreamData,
};

/// The least a Proxy-Wasm module can be: every callback a stream makes, doing nothing.
const MINIMAL: &str = r#"(module
  (memory (export "memory") 1)
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "_initialize"))
  (func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 1024))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_delete") (param i32)))"#;

/// `proxy_on_request_headers` runs a loop of integer arithmetic for `ITERATIONS` rounds.
const HEAVY: &str = r#"(module
  (memory (export "memory") 1)
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "_initialize"))
  (func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 1024))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (local $i i32) (local $x i32)
    (local.set $x (i32.const 1))
    (loop $again
      (local.set $x (i32.add (i32.mul (local.get $x) (i32.const 1103515245)) (i32.const 12345)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $again (i32.lt_u (local.get $i) (i32.const ITERATIONS))))
    (i32.and (local.get $x) (i32.const 0))))"#;

const ITERATIONS: u32 = 1_000_000;

/// `proxy_on_request_headers` sums the bytes of its first 64 KiB of memory `ROUNDS` times.
const SCAN: &str = r#"(module
  (memory (export "memory") 1)
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "_initialize"))
  (func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 1024))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (local $i i32) (local $sum i32) (local $round i32)
    (loop $rounds
      (local.set $i (i32.const 0))
      (loop $bytes
        (local.set $sum (i32.add (local.get $sum) (i32.load8_u (local.get $i))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br_if $bytes (i32.lt_u (local.get $i) (i32.const 65536))))
      (local.set $round (i32.add (local.get $round) (i32.const 1)))
      (br_if $rounds (i32.lt_u (local.get $round) (i32.const ROUNDS))))
    (i32.and (local.get $sum) (i32.const 0))))"#;

const ROUNDS: u32 = 16;

fn add_header() -> Option<Vec<u8>> {
    let dir =
        std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into());
    let path =
        PathBuf::from(dir).join("../../filters/target/wasm32-wasip1/release/add_header.wasm");
    match std::fs::read(&path) {
        Ok(bytes) => Some(bytes),
        Err(_) => {
            println!("{}: not built (make filters), skipped", path.display());
            None
        }
    }
}

fn load(runtime: &Runtime, name: &str, wasm: &[u8], isolation: Isolation) -> Arc<Plugin> {
    load_with(runtime, name, wasm, isolation, Limits::default())
}

/// [`load`] with `limits`, on the sibling of `runtime` that the isolation and limits need.
fn load_with(
    runtime: &Runtime,
    name: &str,
    wasm: &[u8],
    isolation: Isolation,
    limits: Limits,
) -> Arc<Plugin> {
    let spec = PluginSpec {
        name: name.to_string(),
        replicas: 1,
        configuration: Bytes::from_static(br#"{"headers": {"x-bench": "1"}}"#),
        pool: PoolOptions {
            isolation,
            ..PoolOptions::default()
        },
        limits,
        ..PluginSpec::default()
    };
    // A per_stream plugin gets the pooling engine `pooled` made (its capacity wins).
    let runtime = runtime
        .for_settings(EngineSettings::for_plugin(&spec, PerStreamPool::default()))
        .expect("engine");
    let module = runtime
        .compile(name, Path::new(name), wasm)
        .expect("compile");
    Plugin::load(&runtime, &module, spec, None).expect("load")
}

fn request() -> StreamData {
    let mut data = StreamData::default();
    data.request_headers
        .push(":method", Bytes::from_static(b"GET"));
    data.request_headers.push(":path", Bytes::from_static(b"/"));
    data.request_headers
        .push(":authority", Bytes::from_static(b"bench"));
    data
}

fn pooled(runtime: &Runtime) -> Runtime {
    runtime
        .per_stream(PerStreamPool {
            instances: 64,
            memory: 64 << 20,
        })
        .expect("pooling engine")
}

fn instantiate(c: &mut Criterion) {
    let runtime = Runtime::new().expect("engine");
    let per_stream = pooled(&runtime);
    let minimal = wat::parse_str(MINIMAL).expect("wat");
    let mut group = c.benchmark_group("instantiate");
    let mut cases = vec![("minimal", minimal)];
    if let Some(bytes) = add_header() {
        cases.push(("add_header", bytes));
    }
    for (name, wasm) in &cases {
        let plugin = load(&per_stream, name, wasm, Isolation::PerStream);
        group.bench_function(format!("per_stream/{name}"), |b| {
            b.iter(|| plugin.start_and_drop_vm().expect("start"))
        });
        let plugin = load(&runtime, name, wasm, Isolation::Shared);
        group.bench_function(format!("on_demand/{name}"), |b| {
            b.iter(|| plugin.start_and_drop_vm().expect("start"))
        });
    }
    group.finish();
}

/// One whole stream through a chain of `plugin`.
fn one_stream(chain: &FilterChain) {
    let mut stream = chain.start(request());
    assert_eq!(stream.on_request_headers(true), HeadersOutcome::Continue);
    stream
        .data_mut()
        .response_headers
        .push(":status", Bytes::from_static(b"200"));
    assert_eq!(stream.on_response_headers(true), HeadersOutcome::Continue);
    stream.finish();
}

/// A stream that ends after its request headers: the callback the CPU-heavy guests loop in.
fn headers_only(chain: &FilterChain) {
    let mut stream = chain.start(request());
    assert_eq!(stream.on_request_headers(true), HeadersOutcome::Continue);
    stream.finish();
}

fn streams(c: &mut Criterion) {
    let Some(wasm) = add_header() else { return };
    let runtime = Runtime::new().expect("engine");
    let per_stream = pooled(&runtime);
    let mut group = c.benchmark_group("stream");
    for (isolation, runtime) in [
        (Isolation::Shared, &runtime),
        (Isolation::PerStream, &per_stream),
    ] {
        let chain = FilterChain::new(vec![load(runtime, "add_header", &wasm, isolation)]);
        group.bench_function(format!("{}/add_header", isolation.as_str()), |b| {
            b.iter(|| one_stream(&chain))
        });
    }
    group.finish();
}

fn context(c: &mut Criterion) {
    let runtime = Runtime::new().expect("engine");
    let minimal = wat::parse_str(MINIMAL).expect("wat");
    let chain = FilterChain::new(vec![load(&runtime, "minimal", &minimal, Isolation::Shared)]);
    let mut group = c.benchmark_group("context");
    // The stream's data is made outside the measurement; `finish` creates the context (the
    // request never reached the plugin) and deletes it.
    group.bench_function("create_delete", |b| {
        b.iter_batched(
            || chain.start(StreamData::default()),
            |mut stream| {
                stream.finish();
                stream
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

fn epoch(c: &mut Criterion) {
    let heavy = wat::parse_str(HEAVY.replace("ITERATIONS", &ITERATIONS.to_string())).expect("wat");
    let mut group = c.benchmark_group("epoch");
    group.sample_size(30);
    group.measurement_time(Duration::from_secs(8));
    for (name, runtime) in [
        ("deadlines", Runtime::new().expect("engine")),
        (
            "no_deadlines",
            Runtime::without_cpu_deadlines().expect("engine"),
        ),
    ] {
        let chain = FilterChain::new(vec![load(&runtime, "heavy", &heavy, Isolation::Shared)]);
        group.bench_function(format!("cpu_heavy/{name}"), |b| {
            b.iter(|| headers_only(&chain))
        });
    }
    group.finish();
}

/// The CPU-heavy callbacks with fuel counted (a budget they never reach) and without.
fn fuel(c: &mut Criterion) {
    let heavy = wat::parse_str(HEAVY.replace("ITERATIONS", &ITERATIONS.to_string())).expect("wat");
    let scan = wat::parse_str(SCAN.replace("ROUNDS", &ROUNDS.to_string())).expect("wat");
    let runtime = Runtime::new().expect("engine");
    let mut group = c.benchmark_group("fuel");
    group.sample_size(30);
    group.measurement_time(Duration::from_secs(8));
    for (case, wasm) in [("cpu_heavy", &heavy), ("scan", &scan)] {
        for (name, fuel) in [("fuel", Some(u64::MAX / 2)), ("no_fuel", None)] {
            let limits = Limits {
                fuel,
                ..Limits::default()
            };
            let plugin = load_with(&runtime, case, wasm, Isolation::Shared, limits);
            let chain = FilterChain::new(vec![plugin]);
            group.bench_function(format!("{case}/{name}"), |b| {
                b.iter(|| headers_only(&chain))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, instantiate, streams, context, epoch, fuel);
criterion_main!(benches);
