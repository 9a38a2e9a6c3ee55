//! `wasmbridge-tower` runs Proxy-Wasm filters — the `.wasm` plugins written for Envoy — in
//! any tower stack: hyper servers, axum apps, or the small reverse proxy [`Gateway`] built
//! from a `wasmbridge-config` YAML file (the `wasmbridge-tower` binary). It maps the
//! request and response of a [`tower_service::Service`] over `http::Request` and
//! `http::Response` onto the Proxy-Wasm ABI through `wasmbridge-host`: [`WasmLayer`] wraps
//! an inner service (an app handler, or a client that forwards upstream) in a
//! [`WasmService`], whose request and response bodies ([`WasmRequestBody`],
//! [`WasmResponseBody`]) run the body and trailer callbacks as the bytes flow, awaiting
//! the host wherever a plugin pauses — request and response trailers and asynchronous
//! pauses in response bodies included.
//!
//! Callouts (`proxy_http_call`) go to the configuration's clusters through a hyper-util
//! client ([`TowerUpstreams`]); the plugins' root services (ticks, callout answers, queue
//! notifications) run on the tokio runtime ([`start_root_drivers`]).
//!
//! ```no_run
//! use wasmbridge_config::Config;
//! use wasmbridge_tower::Gateway;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let config = Config::from_file("conf/gateway.yaml".as_ref())?;
//! Gateway::build(config)?.serve().await?;
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]

mod body;
mod convert;
mod gateway;
mod service;
mod state;
mod upstreams;

pub use body::{BoxError, StreamEnded, WasmRequestBody, WasmResponseBody};
pub use gateway::{
    Gateway, GatewayError, GatewayRequestBody, ProxyBody, ProxyService, Routes, serve_listener,
    start_root_drivers,
};
pub use service::{ConnectionInfo, ResponseFuture, RouteTarget, WasmLayer, WasmService};
pub use upstreams::{ClientBody, Cluster, Clusters, TowerUpstreams};
pub use wasmbridge_host::{ChainSelector, RouteSelection};
