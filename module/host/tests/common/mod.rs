//! Helpers shared by the host's integration tests.
// Each test binary uses a part of them.
#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use wasmbridge_host::{LoadError, Plugin, PluginSpec, Runtime, StreamData};

/// Compiles module bytes (binary or text) and starts them as plugin `name` with
/// `replicas` VMs and an otherwise default spec.
pub fn load(name: &str, bytes: &[u8], replicas: usize) -> Result<Arc<Plugin>, LoadError> {
    let runtime = Runtime::new().expect("engine");
    let bytes = wat::parse_bytes(bytes).expect("wat");
    let compiled = runtime.compile(name, Path::new(&format!("{name}.wasm")), &bytes)?;
    let spec = PluginSpec {
        name: name.into(),
        replicas,
        ..PluginSpec::default()
    };
    Plugin::load(&runtime, &compiled, spec, None)
}

/// Stream data for a request to `/` with `method`.
pub fn request(method: &str) -> StreamData {
    let mut data = StreamData::default();
    data.request_headers
        .push(":method", Bytes::from(method.to_string()));
    data.request_headers.push(":path", Bytes::from_static(b"/"));
    data
}
