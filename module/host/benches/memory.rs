//! What wasm costs in memory, read from this process' resident set (`VmRSS` in
//! `/proc/self/status`), for the Rust SDK `add_header` filter:
//!
//! - `enable_wasm`: the engine, the compiled module and one started VM (instantiated,
//!   `proxy_on_vm_start` and `proxy_on_configure` run) — what turning wasm on costs a
//!   gateway with one plugin and one worker. Goal: ≤ 4 MiB.
//! - `idle_replica`: each further started VM that serves no stream: a second plugin with
//!   `REPLICAS` replicas, the growth divided by `REPLICAS` (an upper bound: the plugin's
//!   own fixed cost is in it too). Goal: ≤ 64 KiB.
//!
//! Not a timing benchmark: it prints the figures and writes them to
//! `<target>/wasmbridge-bench/memory.json` for `wasmbridge-bench-report`. Resident memory
//! is a reading of the whole process, so each figure is the median of `RUNS` runs, each in
//! a fresh child process. `add_header` comes from `make filters`; without it, nothing is
//! measured.
//!
//! ```sh
//! cargo bench -p wasmbridge-host --bench memory
//! ```

use std::path::{Path, PathBuf};
use std::process::Command;

use bytes::Bytes;
use wasmbridge_host::{Plugin, PluginSpec, Runtime};

const REPLICAS: usize = 64;
const RUNS: usize = 5;
const CHILD: &str = "WASMBRIDGE_MEMORY_BENCH_CHILD";

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status")
}

fn filter() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../filters/target/wasm32-wasip1/release/add_header.wasm")
}

fn load(
    runtime: &Runtime,
    module: &wasmbridge_host::CompiledModule,
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

/// One measurement, in this (fresh) process: prints `enable_wasm idle_replica` in KiB.
fn child(wasm: &[u8]) {
    let before = rss_kib();
    let runtime = Runtime::new().expect("engine");
    let module = runtime
        .compile("add_header", Path::new("add_header.wasm"), wasm)
        .expect("compile");
    let first = load(&runtime, &module, "first", 1);
    let one = rss_kib();
    let many = load(&runtime, &module, "many", REPLICAS);
    let after = rss_kib();
    println!(
        "{} {}",
        one - before,
        (after - one) as f64 / REPLICAS as f64
    );
    drop((first, many));
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
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
    let mut enable = Vec::new();
    let mut idle = Vec::new();
    for _ in 0..runs {
        let output = Command::new(&exe).env(CHILD, "1").output().expect("child");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let text = String::from_utf8_lossy(&output.stdout);
        let mut figures = text
            .split_whitespace()
            .map(|f| f.parse::<f64>().expect("figure"));
        enable.push(figures.next().expect("enable_wasm"));
        idle.push(figures.next().expect("idle_replica"));
    }
    let (enable, idle) = (median(enable), median(idle));
    println!("memory/enable_wasm   {enable:.0} KiB (goal ≤ 4096 KiB)");
    println!("memory/idle_replica  {idle:.1} KiB (goal ≤ 64 KiB)");
    // The bench binary is <target>/<profile>/deps/memory-<hash>. A test-mode run (a
    // debug build) leaves the figures of the last real run alone.
    if let Some(target) = exe.ancestors().nth(3).filter(|_| runs == RUNS) {
        let dir = target.join("wasmbridge-bench");
        std::fs::create_dir_all(&dir).expect("create the results directory");
        std::fs::write(
            dir.join("memory.json"),
            format!(
                "{{\"enable_wasm_kib\": {enable:.0}, \"idle_replica_kib\": {idle:.1}, \"replicas\": {REPLICAS}, \"runs\": {runs}}}\n"
            ),
        )
        .expect("write memory.json");
    }
}
