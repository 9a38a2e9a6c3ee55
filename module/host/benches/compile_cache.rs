//! The compile cache: the time `Runtime::compile` takes for a real filter when it compiles
//! (no cache) and when it loads the module from a cache entry (read, checksum, wasmtime's
//! deserialize, the compatibility report). Both go through the same public call, so the
//! ratio is what a gateway start saves per module.
//!
//! The filters come from `make filters`; a filter that is not built is skipped.
//!
//! ```sh
//! cargo bench -p wasmbridge-host --bench compile_cache
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use wasmbridge_host::Runtime;

/// The filters measured: the smallest example and the biggest probe.
const FILTERS: [&str; 2] = ["add_header", "hostcalls"];

fn filter(name: &str) -> PathBuf {
    let dir =
        std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into());
    Path::new(&dir)
        .join("../../filters/target/wasm32-wasip1/release")
        .join(format!("{name}.wasm"))
}

fn compile_cache(c: &mut Criterion) {
    let cache = std::env::temp_dir().join(format!(
        "wasmbridge-bench-compile-cache-{}",
        std::process::id()
    ));
    let plain = Runtime::new().expect("engine");
    let cached = Runtime::new().expect("engine").with_compile_cache(&cache);
    let mut group = c.benchmark_group("compile_cache");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(5));
    for name in FILTERS {
        let path = filter(name);
        let Ok(bytes) = std::fs::read(&path) else {
            println!("{}: not built (make filters), skipped", path.display());
            continue;
        };
        group.bench_function(format!("{name}/compile"), |b| {
            b.iter(|| plain.compile(name, &path, &bytes).expect("compile"));
        });
        // The first call writes the entry; every measured one loads it.
        cached.compile(name, &path, &bytes).expect("compile");
        group.bench_function(format!("{name}/cache_hit"), |b| {
            b.iter(|| cached.compile(name, &path, &bytes).expect("load"));
        });
        println!("{name}: {} bytes of wasm", bytes.len());
    }
    group.finish();
    let _ = std::fs::remove_dir_all(&cache);
}

criterion_group!(benches, compile_cache);
criterion_main!(benches);
