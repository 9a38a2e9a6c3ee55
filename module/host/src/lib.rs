//! `wasmbridge-host` is the engine of wasmbridge: a Proxy-Wasm host on wasmtime that runs
//! the `.wasm` filters written for Envoy. It sits between `wasmbridge-abi` (the spec as
//! data) and the proxy adapters (Pingora, tower), which turn their framework's request
//! phases into calls on an [`HttpStream`].
//!
//! Inside are three layers with one-way calls: hostcall marshalling (`hostcalls`), context
//! semantics (contexts, phases, deferred actions, the chain driver) and the engine glue
//! (runtime, VMs, plugins). No wasmtime type appears in this crate's public API.
//!
//! ```no_run
//! use std::path::Path;
//! use wasmbridge_host::{FilterChain, HeadersOutcome, PluginSpec, Runtime, StreamData};
//!
//! let runtime = Runtime::new()?;
//! let module = runtime.compile_file("add_header", Path::new("add_header.wasm"))?;
//! let spec = PluginSpec { name: "add_header".into(), replicas: 1, ..PluginSpec::default() };
//! let plugin = wasmbridge_host::Plugin::load(&runtime, &module, spec, None)?;
//! let chain = FilterChain::new(vec![plugin]);
//! let mut stream = chain.start(StreamData::default());
//! assert_eq!(stream.on_request_headers(true), HeadersOutcome::Continue);
//! stream.finish();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![warn(missing_docs)]
// Denied rather than forbidden: `cache` allows it for the one call that loads a verified
// compile cache entry.
#![deny(unsafe_code)]

mod cache;
mod callout;
mod context;
mod error;
mod foreign;
pub mod grpc;
mod guest_metrics;
mod headers;
mod hostcalls;
mod limits;
mod metrics;
mod plugin;
mod policy;
mod pool;
mod root;
mod route;
mod runtime;
mod shared;
mod stream;
mod vm;

pub use cache::CompileCacheMetrics;
pub use callout::{
    BoxFuture, Callouts, GrpcChannel, GrpcInbound, GrpcOutbound, GrpcRequest, HttpCallFailure,
    HttpCallRequest, HttpCallResponse, NoUpstreams, Pairs, UnknownUpstream, Upstreams,
};
pub use context::{LocalReply, StreamData, StreamInfo, UpstreamInfo};
pub use error::{LoadError, LoadErrorKind};
pub use foreign::{ForeignFunction, ForeignFunctions};
pub use guest_metrics::{GUEST_HISTOGRAM_BUCKETS, GuestMetrics, MAX_GUEST_METRICS};
pub use headers::{HeaderList, http_header, method_value, status_value};
pub use hostcalls::Registration;
pub use limits::{EPOCH_TICK, Limits};
pub use metrics::HostMetrics;
pub use plugin::{FailurePolicy, NodeInfo, Plugin, PluginLoad, PluginSpec};
pub use policy::{Capabilities, EnvironmentVariables, Redaction};
pub use pool::{Backoff, Isolation, PoolMetrics, PoolOptions, PoolState, ReplicaState, Selection};
pub use root::QueueMetrics;
pub use route::{ChainSelector, RouteSelection, request_header};
pub use runtime::{
    CompiledModule, EngineError, EngineSettings, EntryStyle, ModuleInfo, PerStreamPool, Runtime,
};
pub use stream::{
    BodyOutcome, FilterChain, HeadersOutcome, HttpStream, LocalResponse, TrailersOutcome, Waiter,
};
pub use wasmbridge_abi::{AbiVersion, Status};
