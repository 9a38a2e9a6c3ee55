//! An axum app behind Proxy-Wasm filters: the `add_header` filter (built from
//! `filters/add_header`) runs around every route of the Router through `WasmLayer`.
//!
//! ```text
//! cd filters && CARGO_TARGET_DIR=target cargo build --release && cd ..
//! cargo run -p wasmbridge-tower --example axum_app
//! curl -i -d 'hi' http://127.0.0.1:3000/echo
//! ```
//!
//! The response carries `x-hello: wasmbridge` (added by the filter in
//! `on_http_response_headers`), and the handler saw `x-from-wasm: 1` (added in
//! `on_http_request_headers`).

use std::path::PathBuf;

use axum::Router;
use axum::routing::{get, post};
use bytes::Bytes;
use wasmbridge_host::{FilterChain, Plugin, PluginSpec, Runtime};
use wasmbridge_tower::{WasmLayer, start_root_drivers};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let module_path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../filters/target/wasm32-wasip1/release/add_header.wasm");
    let runtime = Runtime::new()?;
    let module = runtime.compile_file("add_header", &module_path)?;
    let spec = PluginSpec {
        name: "add_header".into(),
        configuration: Bytes::from_static(
            br#"{"request_headers": {"x-from-wasm": "1"}, "headers": {"x-hello": "wasmbridge"}}"#,
        ),
        replicas: 1,
        ..PluginSpec::default()
    };
    let plugin = Plugin::load(&runtime, &module, spec, None)?;
    // Ticks, callout answers and queue notifications run on this runtime.
    start_root_drivers(std::slice::from_ref(&plugin));

    let app = Router::new()
        .route("/", get(|| async { "hello from axum\n" }))
        .route(
            "/echo",
            post(|headers: http::HeaderMap, body: String| async move {
                let from_wasm = headers
                    .get("x-from-wasm")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-")
                    .to_string();
                format!("x-from-wasm: {from_wasm}\nbody: {body}\n")
            }),
        )
        .layer(WasmLayer::new(FilterChain::new(vec![plugin])));

    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!("listening on http://127.0.0.1:3000 (try: curl -i -d hi http://127.0.0.1:3000/echo)");
    axum::serve(listener, app).await?;
    Ok(())
}
