//! What wasm costs in memory, read from this process' resident set (`/proc/self/status`),
//! for the Rust SDK `add_header` filter:
//!
//! - `enable_wasm`: the engine, the module and one started VM (instantiated,
//!   `proxy_on_vm_start` and `proxy_on_configure` run): what turning wasm on costs a
//!   gateway with one plugin and one worker. Goal: ≤ 4 MiB. Measured twice:
//!   - `compiled`: the module compiled at start-up, as without `server.compile_cache`.
//!     Most of it is the compiler's own machine code, paged in from the binary while it
//!     runs (file-backed pages the kernel can reclaim, but resident all the same).
//!   - `cached`: the module loaded from the compile cache, as on every start but the first
//!     with `server.compile_cache`; the compiler never runs.
//!
//!   Each is given as `VmRSS` and as `RssAnon`, the anonymous part (heap, stacks, VM
//!   memory): what no other process shares and the kernel cannot drop.
//! - `idle_replica`: each further started VM that serves no stream: a second plugin with
//!   `REPLICAS` replicas, the growth divided by `REPLICAS` (an upper bound: the plugin's
//!   own fixed cost is in it too). Goal: ≤ 64 KiB.
//!
//! Not a timing benchmark: it prints the figures and, on a real run (`cargo bench`), writes
//! them to `<target>/wasmbridge-bench/memory.json` for `wasmbridge-bench-report`. Resident
//! memory is a reading of the whole process, so each figure is the median of `RUNS` runs,
//! each in a fresh child process. `add_header` comes from `make filters`; without it,
//! nothing is measured.
//!
//! ```sh
//! cargo bench -p wasmbridge-host --bench memory
//! ```

use std::path::{Path, PathBuf};
use std::process::Command;

use bytes::Bytes;
use wasmbridge_host::{CompiledModule, Plugin, PluginSpec, Runtime};

const REPLICAS: usize = 64;
const RUNS: usize = 5;
const CHILD: &str = "WASMBRIDGE_MEMORY_BENCH_CHILD";
const CACHE: &str = "WASMBRIDGE_MEMORY_BENCH_CACHE";

/// (VmRSS, RssAnon) in KiB.
fn resident() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let field = |name: &str| -> f64 {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} in /proc/self/status"))
    };
    (field("VmRSS:"), field("RssAnon:"))
}

fn filter() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../filters/target/wasm32-wasip1/release/add_header.wasm")
}

fn load(
    runtime: &Runtime,
    module: &CompiledModule,
    name: &str,
    replicas: usize,
) -> std::sync::Arc<Plugin> {
    let spec = PluginSpec {
        name: name.to_string(),
        replicas,
        vm_id: name.to_string(),
        configuration: Bytes::from_static(br#"{"headers": {"x-bench": "1"}}"#),
        ..PluginSpec::default()
    };
    Plugin::load(runtime, module, spec, None).expect("load")
}

/// One measurement, in this (fresh) process; prints `rss anon idle_replica` in KiB.
fn child(wasm: &[u8]) {
    let before = resident();
    let mut runtime = Runtime::new().expect("engine");
    if let Some(dir) = std::env::var_os(CACHE) {
        runtime = runtime.with_compile_cache(PathBuf::from(dir));
    }
    let module = runtime
        .compile("add_header", Path::new("add_header.wasm"), wasm)
        .expect("compile");
    let first = load(&runtime, &module, "first", 1);
    let one = resident();
    let many = load(&runtime, &module, "many", REPLICAS);
    let after = resident();
    println!(
        "{} {} {}",
        one.0 - before.0,
        one.1 - before.1,
        (after.0 - one.0) / REPLICAS as f64
    );
    drop((first, many));
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Runs `runs` children (with the compile cache at `cache`, when given) and returns the
/// medians of their three figures.
fn measure(exe: &Path, runs: usize, cache: Option<&Path>) -> [f64; 3] {
    let mut figures: [Vec<f64>; 3] = Default::default();
    for _ in 0..runs {
        let mut command = Command::new(exe);
        command.env(CHILD, "1");
        if let Some(dir) = cache {
            command.env(CACHE, dir);
        }
        let output = command.output().expect("child");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let text = String::from_utf8_lossy(&output.stdout);
        for (values, figure) in figures.iter_mut().zip(text.split_whitespace()) {
            values.push(figure.parse().expect("figure"));
        }
    }
    figures.map(median)
}

fn main() {
    let Ok(wasm) = std::fs::read(filter()) else {
        println!("{}: not built (make filters), skipped", filter().display());
        return;
    };
    if std::env::var_os(CHILD).is_some() {
        return child(&wasm);
    }
    // `cargo test --benches` runs this once to check it works; a real run is `--bench`.
    let runs = if std::env::args().any(|a| a == "--bench") {
        RUNS
    } else {
        1
    };
    let exe = std::env::current_exe().expect("current exe");
    let [rss, anon, idle] = measure(&exe, runs, None);
    let cache = std::env::temp_dir().join(format!("wasmbridge-memory-{}", std::process::id()));
    // The first child fills the cache; the measured ones hit it.
    measure(&exe, 1, Some(&cache));
    let [cached_rss, cached_anon, _] = measure(&exe, runs, Some(&cache));
    let _ = std::fs::remove_dir_all(&cache);
    println!(
        "memory/enable_wasm/compiled  {rss:.0} KiB resident, {anon:.0} KiB anonymous (goal ≤ 4096 KiB)"
    );
    println!(
        "memory/enable_wasm/cached    {cached_rss:.0} KiB resident, {cached_anon:.0} KiB anonymous (goal ≤ 4096 KiB)"
    );
    println!("memory/idle_replica          {idle:.1} KiB (goal ≤ 64 KiB)");
    // The bench binary is <target>/<profile>/deps/memory-<hash>. A test-mode run (a
    // debug build) leaves the figures of the last real run alone.
    if let Some(target) = exe.ancestors().nth(3).filter(|_| runs == RUNS) {
        let dir = target.join("wasmbridge-bench");
        std::fs::create_dir_all(&dir).expect("create the results directory");
        std::fs::write(
            dir.join("memory.json"),
            format!(
                "{{\"enable_wasm_kib\": {rss:.0}, \"enable_wasm_anon_kib\": {anon:.0}, \"cached_kib\": {cached_rss:.0}, \"cached_anon_kib\": {cached_anon:.0}, \"idle_replica_kib\": {idle:.1}, \"replicas\": {REPLICAS}, \"runs\": {runs}}}\n"
            ),
        )
        .expect("write memory.json");
    }
}
