//! Helpers shared by the host's integration tests.
// Each test binary uses a part of them.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tracing_subscriber::fmt::MakeWriter;
use wasmbridge_host::{LoadError, Plugin, PluginSpec, Runtime, StreamData};

/// Compiles module bytes (binary or text) and starts them as plugin `name` with
/// `replicas` VMs and an otherwise default spec.
pub fn load(name: &str, bytes: &[u8], replicas: usize) -> Result<Arc<Plugin>, LoadError> {
    load_spec(
        PluginSpec {
            name: name.into(),
            replicas,
            ..PluginSpec::default()
        },
        bytes,
    )
}

/// Compiles module bytes (binary or text) and starts them with `spec`.
pub fn load_spec(spec: PluginSpec, bytes: &[u8]) -> Result<Arc<Plugin>, LoadError> {
    let runtime = Runtime::new().expect("engine");
    let bytes = wat::parse_bytes(bytes).expect("wat");
    let path = format!("{}.wasm", spec.name);
    let compiled = runtime.compile(&spec.name, Path::new(&path), &bytes)?;
    Plugin::load(&runtime, &compiled, spec, None)
}

/// The bytes of `tests/fixtures/<name>`, found through `CARGO_MANIFEST_DIR` at run time.
pub fn fixture(name: &str) -> Vec<u8> {
    let dir = std::env::var_os("CARGO_MANIFEST_DIR").expect("run under cargo test");
    let path = PathBuf::from(dir).join("tests/fixtures").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Stream data for a request to `/` with `method`.
pub fn request(method: &str) -> StreamData {
    let mut data = StreamData::default();
    data.request_headers
        .push(":method", Bytes::from(method.to_string()));
    data.request_headers.push(":path", Bytes::from_static(b"/"));
    data
}

/// A writer that keeps every formatted log line.
#[derive(Clone, Default)]
pub struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("capture").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Capture {
        self.clone()
    }
}

impl Capture {
    /// Everything logged so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("capture")).into_owned()
    }
}

/// Runs `f` under a plain-text subscriber at `level` installed for this thread (hostcalls
/// run on the caller's thread) and returns its result with the formatted log.
pub fn logged<T>(level: tracing::Level, f: impl FnOnce() -> T) -> (T, String) {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(capture.clone())
        .with_ansi(false)
        .finish();
    let out = tracing::subscriber::with_default(subscriber, f);
    (out, capture.text())
}

/// The bytes of the compiled filter `name` (`make filters`), found through
/// `CARGO_MANIFEST_DIR` at run time.
pub fn built_filter(name: &str) -> Vec<u8> {
    let dir = std::env::var_os("CARGO_MANIFEST_DIR").expect("run under cargo test");
    let path = PathBuf::from(dir)
        .join("../../filters/target/wasm32-wasip1/release")
        .join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; build the filters first (`make filters`)",
            path.display()
        )
    })
}
