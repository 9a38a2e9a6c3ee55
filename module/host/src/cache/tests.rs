use wasmtime::Config;

use super::*;

const WAT: &str = r#"(module (func (export "answer") (result i32) (i32.const 42)))"#;

/// A fresh directory under the system temp dir for one test.
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "wasmbridge-cache-unit-{}-{name}",
        std::process::id()
    ));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// An engine configured like `Runtime::new`'s, changed by `tweak`.
fn engine(tweak: impl FnOnce(&mut Config)) -> Engine {
    let mut config = Config::new();
    config.cranelift_opt_level(wasmtime::OptLevel::Speed);
    tweak(&mut config);
    Engine::new(&config).expect("engine")
}

fn cache(dir: &Path, engine: &Engine) -> CompileCache {
    CompileCache::new(dir.to_path_buf(), engine, CompileCacheMetrics::new())
}

fn wasm() -> Vec<u8> {
    wat::parse_str(WAT).expect("wat")
}

fn name(entry: &Entry) -> String {
    entry
        .path
        .file_name()
        .and_then(|n| n.to_str())
        .expect("file name")
        .to_string()
}

/// Compiles the test module and writes its entry; returns the entry and the file's bytes.
fn written(dir: &Path, engine: &Engine) -> (Entry, Vec<u8>) {
    let cache = cache(dir, engine);
    let bytes = wasm();
    let entry = cache.entry(&bytes);
    let module = Module::new(engine, &bytes).expect("compile");
    cache.write(&entry, &module).expect("write");
    let file = fs::read(&entry.path).expect("read entry");
    (entry, file)
}

#[test]
fn the_key_follows_the_engine_settings() {
    let dir = Path::new("unused");
    let bytes = wasm();
    let key = |engine: &Engine| name(&cache(dir, engine).entry(&bytes));

    let base = key(&engine(|_| {}));
    assert_eq!(
        base,
        key(&engine(|_| {})),
        "two engines with the same settings share entries"
    );
    let module_hash = hex(&Sha256::digest(&bytes));
    assert!(base.starts_with(&format!("{module_hash}-")), "{base}");
    assert!(base.ends_with(".cwasm"), "{base}");

    let others = [
        key(&engine(|c| {
            c.epoch_interruption(true);
        })),
        key(&engine(|c| {
            c.consume_fuel(true);
        })),
        key(&engine(|c| {
            c.cranelift_opt_level(wasmtime::OptLevel::None);
        })),
        key(&engine(|c| {
            c.memory_guard_size(0);
        })),
    ];
    for (i, other) in others.iter().enumerate() {
        assert_ne!(&base, other, "setting {i} changes the key");
        assert!(other.starts_with(&format!("{module_hash}-")));
    }
    let other_module = name(&cache(dir, &engine(|_| {})).entry(b"\0asm\x01\0\0\0"));
    assert_ne!(base, other_module);
}

#[test]
fn an_entry_verifies_and_loads() {
    let dir = temp_dir("loads");
    let engine = engine(|_| {});
    let (entry, file) = written(&dir, &engine);
    assert_eq!(&file[..8], b"wbcwasm\0");
    let module = verify(&entry, &file)
        .and_then(|v| deserialize(&engine, v).map_err(|e| e.to_string()))
        .expect("load");
    assert!(module.get_export("answer").is_some());
    // Nothing but the entry is left behind.
    let names: Vec<_> = fs::read_dir(&dir)
        .expect("list")
        .map(|e| e.expect("dir entry").file_name())
        .collect();
    assert_eq!(
        names,
        [entry.path.file_name().expect("name").to_os_string()]
    );
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn every_damaged_field_is_caught_before_wasmtime_sees_it() {
    let dir = temp_dir("damaged");
    let engine = engine(|_| {});
    let (entry, file) = written(&dir, &engine);
    let flipped = |at: usize| {
        let mut f = file.clone();
        f[at] ^= 0x01;
        f
    };
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty", Vec::new(), "truncated: 0 bytes"),
        ("short header", file[..HEADER_LEN - 1].to_vec(), "truncated"),
        ("magic", flipped(0), "wrong magic"),
        ("version", flipped(8), "format version 0, expected 1"),
        ("header length", flipped(12), "header length 121"),
        ("module hash", flipped(20), "other module bytes"),
        ("engine", flipped(50), "other settings"),
        ("length", flipped(80), "the header announces"),
        ("checksum", flipped(100), "does not match its checksum"),
        (
            "payload",
            flipped(HEADER_LEN + 200),
            "does not match its checksum",
        ),
        (
            "last byte",
            flipped(file.len() - 1),
            "does not match its checksum",
        ),
        (
            "truncated payload",
            file[..file.len() - 10].to_vec(),
            "the file holds",
        ),
        (
            "trailing bytes",
            [file.as_slice(), b"x"].concat(),
            "the file holds",
        ),
    ];
    for (what, damaged, reason) in cases {
        match verify(&entry, &damaged) {
            Ok(_) => panic!("{what}: accepted"),
            Err(e) => assert!(e.contains(reason), "{what}: {e}"),
        }
    }
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn another_engines_entry_under_this_engines_name_is_corrupt() {
    let dir = temp_dir("foreign");
    let fuel = engine(|c| {
        c.consume_fuel(true);
    });
    let (_, file) = written(&dir, &fuel);
    let plain = engine(|_| {});
    let cache = cache(&dir, &plain);
    let entry = cache.entry(&wasm());
    fs::write(&entry.path, &file).expect("plant");
    match cache.lookup(&plain, "p", Path::new("p.wasm"), &wasm()) {
        Lookup::Compile { outcome, .. } => assert_eq!(outcome, "corrupt"),
        _ => panic!("another engine's entry was used"),
    }
    assert_eq!(cache.metrics().get("corrupt"), 1);
    let _ = fs::remove_dir_all(&dir);
}
