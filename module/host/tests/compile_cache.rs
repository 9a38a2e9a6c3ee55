//! The compile cache through the public API, on real files: a second runtime on the same
//! directory (a restart) loads what the first compiled, a damaged entry is reported,
//! compiled again and replaced, and a directory that cannot be written or must not be
//! trusted never makes a load fail.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use common::{fixture, logged, request};
use wasmbridge_host::{
    EngineSettings, FilterChain, HeadersOutcome, Limits, Plugin, PluginSpec, Runtime,
};

/// A fresh directory for one test under the system temp dir, removed when the test ends;
/// the cache directory is `cache` inside it, which the runtime creates itself.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!(
            "wasmbridge-compile-cache-{}-{name}",
            std::process::id()
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("scratch dir");
        Scratch(dir)
    }

    fn cache(&self) -> PathBuf {
        self.0.join("cache")
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// The TinyGo-shaped fixture: its request-header callback replies with a block that holds
/// the value of request header `x-tinygo`.
fn module_bytes() -> Vec<u8> {
    wat::parse_bytes(&fixture("tinygo_wasi.wat"))
        .expect("wat")
        .into_owned()
}

/// A new runtime (as after a restart) with its cache in `dir`.
fn runtime(dir: &Path) -> Runtime {
    Runtime::new().expect("engine").with_compile_cache(dir)
}

/// Compiles (or loads) the fixture on `runtime` under a log capture; returns the plugin
/// and the log.
fn load(runtime: &Runtime) -> (Arc<Plugin>, String) {
    let bytes = module_bytes();
    logged(tracing::Level::DEBUG, || {
        let module = runtime
            .compile("tinygo", Path::new("tinygo.wasm"), &bytes)
            .unwrap_or_else(|e| panic!("{e}"));
        let spec = PluginSpec {
            name: "tinygo".into(),
            replicas: 1,
            ..PluginSpec::default()
        };
        Plugin::load(runtime, &module, spec, None).unwrap_or_else(|e| panic!("{e}"))
    })
}

/// Runs one request through the plugin and checks the callback saw its header.
fn serves(plugin: Arc<Plugin>) {
    let chain = FilterChain::new(vec![plugin]);
    let mut data = request("GET");
    data.request_headers
        .push("x-tinygo", Bytes::from_static(b"tiny"));
    let mut stream = chain.start(data);
    let outcome = stream.on_request_headers(true);
    stream.finish();
    match outcome {
        HeadersOutcome::LocalReply(reply) if reply.status == 200 => {
            assert_eq!(&reply.body[24..28], b"tiny", "the callback read the header");
        }
        other => panic!("expected the fixture's reply, got {other:?}"),
    }
}

/// The cache's entries (files ending in `.cwasm`), and fails if anything else is there
/// (a temporary file left behind).
fn entries(cache: &Path) -> Vec<PathBuf> {
    let mut all: Vec<PathBuf> = fs::read_dir(cache)
        .expect("cache dir")
        .map(|e| e.expect("dir entry").path())
        .collect();
    all.sort();
    for path in &all {
        assert_eq!(
            path.extension().and_then(|e| e.to_str()),
            Some("cwasm"),
            "only entries in the cache: {all:?}"
        );
    }
    all
}

fn counts(runtime: &Runtime) -> [u64; 4] {
    let m = runtime.compile_cache_metrics();
    ["hit", "miss", "corrupt", "write_error"].map(|o| m.get(o))
}

#[test]
fn a_restart_loads_the_module_from_the_cache() {
    let scratch = Scratch::new("restart");
    let cache = scratch.cache();

    let first = runtime(&cache);
    let (plugin, log) = load(&first);
    assert!(log.contains("module compiled"), "{log}");
    assert!(log.contains("cache=\"miss\""), "{log}");
    assert!(log.contains("took_ms="), "{log}");
    assert_eq!(counts(&first), [0, 1, 0, 0]);
    serves(plugin);
    let written = entries(&cache);
    assert_eq!(written.len(), 1);
    let name = written[0]
        .file_name()
        .and_then(|n| n.to_str())
        .expect("name");
    assert!(
        name.len() > 128,
        "module hash and engine fingerprint: {name}"
    );

    let second = runtime(&cache);
    let (plugin, log) = load(&second);
    assert!(
        log.contains("module loaded from the compile cache"),
        "{log}"
    );
    assert!(
        log.contains("plugin=\"tinygo\"") || log.contains("plugin=tinygo"),
        "{log}"
    );
    assert!(log.contains(&written[0].display().to_string()), "{log}");
    assert!(!log.contains("module compiled"), "{log}");
    assert_eq!(counts(&second), [1, 0, 0, 0]);
    serves(plugin);
    assert_eq!(entries(&cache), written, "a hit writes nothing");

    // The same runtime loads its own entries too.
    let (_, log) = load(&second);
    assert!(
        log.contains("module loaded from the compile cache"),
        "{log}"
    );
    assert_eq!(counts(&second), [2, 0, 0, 0]);
}

#[test]
fn an_engine_that_counts_fuel_keeps_entries_of_its_own() {
    let scratch = Scratch::new("engines");
    let cache = scratch.cache();
    let base = runtime(&cache);
    let (plugin, _) = load(&base);
    serves(plugin);
    let written = entries(&cache);
    assert_eq!(written.len(), 1);

    // Fuel changes the compiled code: another key, a miss, a second entry.
    let fuelled = base
        .for_settings(EngineSettings {
            fuel: true,
            ..EngineSettings::default()
        })
        .expect("engine");
    let bytes = module_bytes();
    let (plugin, log) = logged(tracing::Level::DEBUG, || {
        let module = fuelled
            .compile("tinygo", Path::new("tinygo.wasm"), &bytes)
            .unwrap_or_else(|e| panic!("{e}"));
        let spec = PluginSpec {
            name: "tinygo".into(),
            replicas: 1,
            limits: Limits {
                fuel: Some(1_000_000),
                ..Limits::default()
            },
            ..PluginSpec::default()
        };
        Plugin::load(&fuelled, &module, spec, None).unwrap_or_else(|e| panic!("{e}"))
    });
    assert!(log.contains("cache=\"miss\""), "{log}");
    serves(plugin);
    let both = entries(&cache);
    assert_eq!(both.len(), 2, "{both:?}");
    assert!(both.contains(&written[0]));

    // The stack size is checked as the code runs, not compiled in: an engine with another
    // one shares the first engine's entry.
    let small = base
        .for_settings(EngineSettings {
            stack_bytes: 64 << 10,
            ..EngineSettings::default()
        })
        .expect("engine");
    let (_, log) = logged(tracing::Level::DEBUG, || {
        small
            .compile("tinygo", Path::new("tinygo.wasm"), &bytes)
            .unwrap_or_else(|e| panic!("{e}"))
    });
    assert!(
        log.contains("module loaded from the compile cache"),
        "{log}"
    );
    assert_eq!(entries(&cache), both);
    // The counts are the runtime's, over its engines.
    assert_eq!(counts(&base), [1, 2, 0, 0]);
}

/// Damages the one entry with `damage`, then checks that the next start warns naming the
/// file, compiles, serves and rewrites a valid entry that the start after it loads.
fn recovers_from(name: &str, damage: impl FnOnce(&mut Vec<u8>)) {
    let scratch = Scratch::new(name);
    let cache = scratch.cache();
    let (plugin, _) = load(&runtime(&cache));
    serves(plugin);
    let entry = entries(&cache).remove(0);
    let good = fs::read(&entry).expect("entry");
    let mut bad = good.clone();
    damage(&mut bad);
    assert_ne!(bad, good);
    fs::write(&entry, &bad).expect("damage the entry");

    let next = runtime(&cache);
    let (plugin, log) = load(&next);
    let warning = log
        .lines()
        .find(|l| l.contains("WARN"))
        .unwrap_or_else(|| panic!("{name}: no warning:\n{log}"));
    assert!(warning.contains("is corrupt"), "{warning}");
    assert!(
        warning.contains(&entry.display().to_string()),
        "the warning names the file: {warning}"
    );
    assert!(log.contains("module compiled"), "{log}");
    assert!(log.contains("cache=\"corrupt\""), "{log}");
    assert_eq!(counts(&next), [0, 0, 1, 0]);
    serves(plugin);
    assert_eq!(
        entries(&cache),
        std::slice::from_ref(&entry),
        "replaced in place"
    );
    assert_eq!(fs::read(&entry).expect("entry"), good, "rewritten whole");

    let after = runtime(&cache);
    let (plugin, log) = load(&after);
    assert!(
        log.contains("module loaded from the compile cache"),
        "{log}"
    );
    assert!(!log.contains("WARN"), "{log}");
    assert_eq!(counts(&after), [1, 0, 0, 0]);
    serves(plugin);
}

#[test]
fn a_flipped_byte_in_the_compiled_code_is_replaced() {
    recovers_from("flipped", |file| {
        let at = file.len() / 2;
        file[at] ^= 0x40;
    });
}

#[test]
fn a_flipped_byte_in_the_header_is_replaced() {
    recovers_from("header", |file| file[3] ^= 0x01);
}

#[test]
fn a_truncated_entry_is_replaced() {
    recovers_from("truncated", |file| file.truncate(file.len() / 3));
}

#[test]
fn an_empty_entry_is_replaced() {
    recovers_from("empty", Vec::clear);
}

#[test]
fn another_file_under_the_entrys_name_is_replaced() {
    recovers_from("foreign", |file| {
        *file = module_bytes();
    });
}

#[test]
fn a_cache_that_cannot_be_written_still_compiles() {
    // A file where the directory should be: creating the directory and writing into it
    // fail for every user, root included.
    let scratch = Scratch::new("unwritable");
    let cache = scratch.cache();
    fs::write(&cache, b"not a directory").expect("file");
    let runtime = runtime(&cache);
    let (plugin, log) = load(&runtime);
    serves(plugin);
    assert!(log.contains("module compiled"), "{log}");
    let warning = log
        .lines()
        .find(|l| l.contains("WARN"))
        .unwrap_or_else(|| panic!("no warning:\n{log}"));
    assert!(
        warning.contains("cannot write the compile cache entry"),
        "{warning}"
    );
    assert_eq!(counts(&runtime), [0, 1, 0, 1]);
    assert_eq!(fs::read(&cache).expect("file"), b"not a directory");

    // Every later start compiles again, and still loads.
    let (plugin, _) = load(&runtime);
    serves(plugin);
    assert_eq!(counts(&runtime), [0, 2, 0, 2]);
}

#[cfg(unix)]
#[test]
fn a_directory_every_user_may_write_to_is_not_used() {
    use std::os::unix::fs::PermissionsExt;

    let scratch = Scratch::new("shared");
    let cache = scratch.cache();
    let (plugin, _) = load(&runtime(&cache));
    serves(plugin);
    let written = entries(&cache);
    fs::set_permissions(&cache, fs::Permissions::from_mode(0o777)).expect("chmod");

    let next = runtime(&cache);
    let (plugin, log) = load(&next);
    serves(plugin);
    assert!(log.contains("every user may write to it"), "{log}");
    assert!(log.contains("cache=\"not used\""), "{log}");
    assert_eq!(counts(&next), [0, 0, 0, 0]);
    assert_eq!(entries(&cache), written, "nothing written there either");
}

#[test]
fn without_a_cache_modules_compile_and_no_counts_are_exported() {
    let runtime = Runtime::new().expect("engine");
    let (plugin, log) = load(&runtime);
    serves(plugin);
    assert!(log.contains("module compiled"), "{log}");
    assert!(log.contains("cache=\"off\""), "{log}");
    let registry = prometheus::Registry::new();
    registry
        .register(Box::new(runtime.compile_cache_metrics()))
        .expect("register");
    assert!(registry.gather().is_empty());

    let scratch = Scratch::new("metrics");
    let cached = scratch.cache();
    let runtime = runtime.with_compile_cache(&cached);
    let registry = prometheus::Registry::new();
    registry
        .register(Box::new(runtime.compile_cache_metrics()))
        .expect("register");
    let families = registry.gather();
    assert_eq!(families.len(), 1);
    assert_eq!(families[0].name(), "wasmbridge_compile_cache_total");
    assert_eq!(
        families[0].get_metric().len(),
        4,
        "every outcome from the start"
    );
}
