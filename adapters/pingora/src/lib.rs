//! `wasmbridge-pingora` runs Proxy-Wasm filters inside Pingora. [`WasmFilters`] is a
//! `ProxyHttp` decorator that maps Pingora's phases onto the Proxy-Wasm ABI (through
//! `wasmbridge-host`) around any inner proxy; [`Gateway`] builds a complete server — routes,
//! clusters, plugins, admin — from a `wasmbridge-config` YAML file, and the `wasmbridge`
//! binary runs it.
//!
//! Callouts (`proxy_http_call`, `proxy_grpc_call`, `proxy_grpc_stream`) go through
//! [`GatewayUpstreams`], the host's `Upstreams` over Pingora's HTTP connector and the
//! gateway's clusters ([`Gateway::upstreams`]); the [`upstreams`] module documents how
//! names, HTTP calls and gRPC streams map onto Pingora.
//!
//! ```no_run
//! use wasmbridge_config::Config;
//! use wasmbridge_pingora::Gateway;
//!
//! let config = Config::from_file("conf/gateway.yaml".as_ref())?;
//! Gateway::build(config)?.run()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]

mod admin;
pub mod balance;
mod convert;
mod drivers;
mod gateway;
pub mod limits;
mod proxy;
mod reload;
mod tls;
pub mod upstreams;

pub use drivers::{WithRootDrivers, start_root_drivers};
pub use gateway::{Gateway, GatewayError, Router};
pub use proxy::{RequestObserver, WasmCtx, WasmFilters};
pub use reload::{GatewayProxy, Pinned, ReloadStatus, Reloaded, Reloader};
pub use upstreams::{GatewayUpstreams, UpstreamCluster};
pub use wasmbridge_host::{ChainSelector, RouteSelection};

/// The embedded default configuration (`conf/gateway.yaml`).
pub const DEFAULT_CONFIG: &str = include_str!("../../../conf/gateway.yaml");
