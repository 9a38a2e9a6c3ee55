//! `wasmbridge-testkit` drives a plugin chain's HTTP callbacks in-process, without sockets
//! or a proxy: load modules, build a request and an upstream reply, and see what the
//! plugins did — what the upstream received, what the client got, what they logged. It
//! sits on top of `wasmbridge-host` and is the conformance suite's `emulator` target.
//!
//! The emulator behaves like an ideal proxy with Envoy's semantics: request headers go
//! upstream once the request-header callbacks are done, bodies flow chunk by chunk, a
//! pause waits for the plugin to resume (a pause nobody can resume is reported as
//! [`End::Stalled`], where a real proxy would let the client time out), local replies run
//! the response callbacks, trailers (request and response) run the trailer callbacks after
//! a body whose last chunk had `end_of_stream` false, and the stream always ends with
//! `on_log`, `on_done`, `on_delete`.
//!
//! ```no_run
//! use wasmbridge_testkit::{Emulator, Request};
//!
//! let emu = Emulator::load("add_header.wasm", "add_header", r#"{"headers": {"x-a": "1"}}"#)?;
//! let exchange = emu.run(Request::get("/").header("host", "example.com"));
//! assert_eq!(exchange.response_header("x-a"), Some("1"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![warn(missing_docs)]
#![forbid(unsafe_code)]

mod logs;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use wasmbridge_host::{
    BodyOutcome, Callouts, EngineSettings, FailurePolicy, FilterChain, HeaderList, HeadersOutcome,
    HttpStream, Limits, LoadError, LocalReply, NodeInfo, PerStreamPool, Plugin, PluginLoad,
    PluginSpec, PoolOptions, Runtime, StreamData, TrailersOutcome,
};

pub use logs::{LogLine, capture_logs};

/// A request to run through the plugins.
#[derive(Debug, Clone, Default)]
pub struct Request {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    chunks: Vec<Bytes>,
    trailers: Vec<(String, String)>,
}

impl Request {
    /// A request with any method.
    pub fn new(method: &str, path: &str) -> Self {
        Request {
            method: method.into(),
            path: path.into(),
            ..Request::default()
        }
    }

    /// A GET for `path`.
    pub fn get(path: &str) -> Self {
        Request::new("GET", path)
    }

    /// A POST for `path` with a body.
    pub fn post(path: &str, body: impl Into<Bytes>) -> Self {
        Request::new("POST", path).body(body)
    }

    /// Adds a header (`host` becomes `:authority`).
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the body, sent as one chunk.
    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.chunks = vec![body.into()];
        self
    }

    /// Sets the body, sent in these chunks (empty chunks are skipped).
    pub fn chunks(mut self, chunks: Vec<Bytes>) -> Self {
        self.chunks = chunks.into_iter().filter(|c| !c.is_empty()).collect();
        self
    }

    /// Adds a request trailer, sent after the body.
    pub fn trailer(mut self, name: &str, value: &str) -> Self {
        self.trailers.push((name.into(), value.into()));
        self
    }
}

/// What the upstream answers.
#[derive(Debug, Clone)]
pub struct UpstreamReply {
    /// Status code.
    pub status: u16,
    /// Headers (without `:status`).
    pub headers: Vec<(String, String)>,
    /// The body, in chunks.
    pub chunks: Vec<Bytes>,
    /// Trailers after the body (none: the last chunk ends the response).
    pub trailers: Vec<(String, String)>,
}

impl Default for UpstreamReply {
    fn default() -> Self {
        UpstreamReply {
            status: 200,
            headers: vec![("content-type".into(), "text/plain".into())],
            chunks: vec![Bytes::from_static(b"upstream body")],
            trailers: Vec::new(),
        }
    }
}

/// What the upstream received.
#[derive(Debug, Clone)]
pub struct UpstreamRequest {
    /// Request headers, pseudo-headers included.
    pub headers: HeaderList,
    /// The body.
    pub body: Bytes,
    /// The request trailers (empty when the request had none).
    pub trailers: HeaderList,
}

/// How the exchange ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The client got a complete response.
    Response,
    /// The stream was reset (a plugin closed it, or a reply was impossible).
    Reset,
    /// A plugin paused and nothing could resume it; a real client would time out.
    Stalled,
}

/// What happened to a request.
#[derive(Debug)]
pub struct Exchange {
    /// The request-headers outcome.
    pub request_outcome: HeadersOutcome,
    /// The request headers after the request-header callbacks.
    pub request_headers: HeaderList,
    /// The request body the upstream received, if it was reached and the request had one.
    pub request_body: Option<Bytes>,
    /// What the upstream received, if the request reached it.
    pub upstream: Option<UpstreamRequest>,
    /// How the exchange ended.
    pub end: End,
    /// The response status (0 unless [`End::Response`]).
    pub status: u16,
    /// The response headers after the plugins ran (`:status` first).
    pub response_headers: HeaderList,
    /// The response body the client received.
    pub response_body: Bytes,
    /// The response trailers the client received (empty when there were none).
    pub response_trailers: HeaderList,
    /// The root services to wait on while the exchange runs.
    services: Option<Services>,
}

/// The emulator's root-services runtime and the chain's plugins.
#[derive(Debug, Clone)]
struct Services {
    runtime: Arc<tokio::runtime::Runtime>,
    plugins: Vec<Arc<Plugin>>,
}

impl Exchange {
    /// A response header as text.
    pub fn response_header(&self, name: &str) -> Option<&str> {
        self.response_headers
            .get(name.as_bytes())
            .and_then(|v| std::str::from_utf8(v).ok())
    }

    /// A response trailer as text.
    pub fn response_trailer(&self, name: &str) -> Option<&str> {
        self.response_trailers
            .get(name.as_bytes())
            .and_then(|v| std::str::from_utf8(v).ok())
    }

    /// A request header, as the upstream would receive it, as text.
    pub fn request_header(&self, name: &str) -> Option<&str> {
        self.request_headers
            .get(name.as_bytes())
            .and_then(|v| std::str::from_utf8(v).ok())
    }
}

/// One plugin of a chain to load.
#[derive(Debug, Clone)]
pub struct PluginSource {
    /// The plugin's name.
    pub name: String,
    /// Where the module comes from.
    pub module: Module,
    /// `root_id` (Envoy's default is empty).
    pub root_id: String,
    /// `vm_id`.
    pub vm_id: String,
    /// Plugin configuration.
    pub configuration: Bytes,
    /// VM configuration.
    pub vm_configuration: Bytes,
    /// Failure policy.
    pub failure_policy: FailurePolicy,
    /// Where the plugin's callouts go (none by default).
    pub callouts: Callouts,
    /// Isolation and pool settings (one shared replica by default).
    pub pool: PoolOptions,
    /// Log-only mode.
    pub log_only: bool,
    /// Memory, CPU, fuel and stack limits and caps (the default profile by default).
    pub limits: Limits,
}

/// A module file or module bytes (WebAssembly binary or text).
#[derive(Debug, Clone)]
pub enum Module {
    /// A `.wasm` file.
    File(PathBuf),
    /// Module bytes; `label` names it in messages.
    Bytes {
        /// Shown as the module path in errors.
        label: PathBuf,
        /// The binary module.
        bytes: Vec<u8>,
    },
}

impl PluginSource {
    /// A plugin from a module file with a plugin configuration; its root id is its name.
    pub fn file(name: &str, module: impl AsRef<Path>, configuration: &str) -> Self {
        PluginSource {
            name: name.into(),
            module: Module::File(module.as_ref().to_path_buf()),
            root_id: name.into(),
            vm_id: String::new(),
            configuration: Bytes::copy_from_slice(configuration.as_bytes()),
            vm_configuration: Bytes::new(),
            failure_policy: FailurePolicy::default(),
            callouts: Callouts::default(),
            pool: PoolOptions::default(),
            log_only: false,
            limits: Limits::default(),
        }
    }
}

/// How long a paused exchange waits for a root callback that may still resume it.
const PATIENCE: std::time::Duration = std::time::Duration::from_secs(30);

/// A plugin chain loaded in-process, with a runtime thread for the plugins' root
/// services (ticks, callouts, queues).
pub struct Emulator {
    chain: FilterChain,
    services: Arc<tokio::runtime::Runtime>,
}

impl Emulator {
    /// Compiles and starts `module` as plugin `name` (also its root id) with a plugin
    /// configuration.
    pub fn load(
        module: impl AsRef<Path>,
        name: &str,
        configuration: &str,
    ) -> Result<Emulator, LoadError> {
        Emulator::chain_of(vec![PluginSource::file(name, module, configuration)])
    }

    /// Compiles and starts each plugin (one VM replica each) and chains them in order.
    pub fn chain_of(sources: Vec<PluginSource>) -> Result<Emulator, LoadError> {
        Emulator::chain_with_node(sources, Arc::new(NodeInfo::default()))
    }

    /// As [`Emulator::chain_of`], for a proxy with this identity (`xds.node`).
    pub fn chain_with_node(
        sources: Vec<PluginSource>,
        node: Arc<NodeInfo>,
    ) -> Result<Emulator, LoadError> {
        let label = sources.first().map(|s| s.name.clone()).unwrap_or_default();
        let runtime = Runtime::new().map_err(|e| LoadError {
            plugin: label,
            module: PathBuf::new(),
            kind: wasmbridge_host::LoadErrorKind::Engine(e.to_string()),
        })?;
        let mut loads = Vec::with_capacity(sources.len());
        for source in sources {
            let module = source.module;
            let spec = PluginSpec {
                name: source.name,
                root_id: source.root_id,
                vm_id: source.vm_id,
                configuration: source.configuration,
                vm_configuration: source.vm_configuration,
                failure_policy: source.failure_policy,
                replicas: 1,
                node: node.clone(),
                callouts: source.callouts,
                foreign: Default::default(),
                limits: source.limits,
                pool: source.pool,
                log_only: source.log_only,
                // Capabilities, redaction and environment: the defaults.
                ..PluginSpec::default()
            };
            // The engine for the plugin's isolation, fuel and stack (the base one unless it
            // asks for one of them).
            let settings = EngineSettings::for_plugin(&spec, PerStreamPool::default());
            let runtime = runtime.for_settings(settings).map_err(|e| LoadError {
                plugin: spec.name.clone(),
                module: PathBuf::new(),
                kind: wasmbridge_host::LoadErrorKind::Engine(e.to_string()),
            })?;
            let compiled = match &module {
                Module::File(path) => runtime.compile_file(&spec.name, path)?,
                Module::Bytes { label, bytes } => runtime.compile(&spec.name, label, bytes)?,
            };
            loads.push(PluginLoad {
                runtime,
                module: compiled,
                spec,
            });
        }
        // Plugins with the same module and vm_id share their VM, as in the gateway.
        let plugins = Plugin::load_all(loads, None)?;
        // Root callbacks run on the runtime's thread: their logs go where the caller's do.
        let dispatch = tracing::dispatcher::get_default(Clone::clone);
        let services = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("emulator-root")
            .on_thread_start(move || {
                // Kept for the thread's whole life.
                std::mem::forget(tracing::dispatcher::set_default(&dispatch));
            })
            .enable_all()
            .build()
            .map_err(|e| LoadError {
                plugin: String::new(),
                module: PathBuf::new(),
                kind: wasmbridge_host::LoadErrorKind::Engine(format!(
                    "cannot start the root-services runtime: {e}"
                )),
            })?;
        for plugin in &plugins {
            // Replicas made later (per_stream VMs, recycled ones) run their roots here too.
            plugin.set_root_runtime(services.handle().clone());
            for replica in 0..plugin.replica_count() {
                if let Some(driver) = plugin.root_driver(replica) {
                    services.spawn(driver);
                }
            }
        }
        Ok(Emulator {
            chain: FilterChain::new(plugins),
            services: Arc::new(services),
        })
    }

    /// The loaded chain.
    pub fn chain(&self) -> &FilterChain {
        &self.chain
    }

    /// Runs `request` through the plugins against an upstream that answers 200 with the
    /// body `upstream body`.
    pub fn run(&self, request: Request) -> Exchange {
        self.exchange(request, UpstreamReply::default())
    }

    /// Runs `request` through the plugins; the upstream, if reached, answers `reply`.
    pub fn exchange(&self, request: Request, reply: UpstreamReply) -> Exchange {
        let routing = Routing {
            route: None,
            cluster: None,
            destination: Destination::Upstream(reply),
        };
        self.exchange_routed(request, &|_| routing.clone())
    }

    /// Runs `request` through the plugins with a router: `router` picks where the request
    /// goes from its headers, before the request-header callbacks and again after them
    /// when a plugin changed the request headers or cleared the route cache (the chain
    /// already running stays), as the Pingora gateway does.
    pub fn exchange_routed(
        &self,
        request: Request,
        router: &dyn Fn(&HeaderList) -> Routing,
    ) -> Exchange {
        let mut data = stream_data(&request);
        let routing = router(&data.request_headers);
        routing.record(&mut data.info);
        let mut stream = self.chain.start(data);
        let mut ex = Exchange {
            services: Some(Services {
                runtime: self.services.clone(),
                plugins: self.chain.plugins().to_vec(),
            }),
            request_outcome: HeadersOutcome::Continue,
            request_headers: HeaderList::new(),
            request_body: None,
            upstream: None,
            end: End::Response,
            status: 0,
            response_headers: HeaderList::new(),
            response_body: Bytes::new(),
            response_trailers: HeaderList::new(),
        };
        ex.drive(&mut stream, request, routing, router);
        stream.finish();
        ex.services = None;
        ex
    }
}

/// Where the emulated router sends a request.
#[derive(Debug, Clone)]
pub struct Routing {
    /// The route name (`xds.route_name`).
    pub route: Option<String>,
    /// The cluster name (`xds.cluster_name`), for an upstream destination.
    pub cluster: Option<String>,
    /// What answers.
    pub destination: Destination,
}

/// What answers a routed request.
#[derive(Debug, Clone)]
pub enum Destination {
    /// An upstream, with this reply.
    Upstream(UpstreamReply),
    /// A direct response, made after the request-header callbacks (its response runs the
    /// response callbacks like any local reply).
    Direct(LocalReply),
}

/// The address the emulator pretends its upstream has (`upstream.address`).
pub const UPSTREAM_ADDRESS: &str = "127.0.0.1:9000";
/// The local address the emulator pretends its upstream connection has
/// (`upstream.local_address`); the connection is ready at once
/// (`upstream.cx_pool_ready_duration` 0).
pub const UPSTREAM_LOCAL_ADDRESS: &str = "127.0.0.1:40001";

impl Routing {
    fn record(&self, info: &mut wasmbridge_host::StreamInfo) {
        info.route_name = self.route.clone();
        info.cluster_name = self.cluster.clone();
        info.upstream.endpoints = self.cluster.as_ref().map(|_| 1);
    }
}

/// The stream data a proxy would build for `request` on an HTTP/1.1 connection.
fn stream_data(request: &Request) -> StreamData {
    let mut data = StreamData::default();
    let h = &mut data.request_headers;
    h.push(":method", Bytes::from(request.method.clone()));
    h.push(":path", Bytes::from(request.path.clone()));
    let authority = request
        .headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("host"))
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| "localhost".into());
    h.push(":authority", Bytes::from(authority));
    h.push(":scheme", Bytes::from_static(b"http"));
    for (k, v) in request
        .headers
        .iter()
        .filter(|(k, _)| !k.eq_ignore_ascii_case("host"))
    {
        h.push(k.to_ascii_lowercase(), Bytes::from(v.clone()));
    }
    if !request.chunks.is_empty() && !has(h, "content-length") && !has(h, "transfer-encoding") {
        let len: usize = request.chunks.iter().map(Bytes::len).sum();
        h.push("content-length", Bytes::from(len.to_string()));
    }
    data.info.protocol = "HTTP/1.1";
    data.info.source = "127.0.0.1:40000".parse().ok();
    data.info.destination = "127.0.0.1:8080".parse().ok();
    data.info.connection_id = Some(1);
    data.info.start_time = Some(std::time::SystemTime::now());
    data.info.started = Some(std::time::Instant::now());
    data
}

/// A header list from pairs, names lower-cased.
fn list(pairs: &[(String, String)]) -> HeaderList {
    let mut out = HeaderList::new();
    for (k, v) in pairs {
        out.push(k.to_ascii_lowercase(), Bytes::from(v.clone()));
    }
    out
}

fn has(headers: &HeaderList, name: &str) -> bool {
    headers.get(name.as_bytes()).is_some()
}

impl Exchange {
    /// Runs the exchange's phases in order; a phase that ends the exchange (a local
    /// reply, a reset, a stall) stops it.
    fn drive(
        &mut self,
        stream: &mut HttpStream,
        request: Request,
        mut routing: Routing,
        router: &dyn Fn(&HeaderList) -> Routing,
    ) {
        // Request headers.
        let request_trailers = list(&request.trailers);
        let outcome =
            stream.on_request_headers(request.chunks.is_empty() && request_trailers.is_empty());
        self.request_outcome = outcome.clone();
        if !self.headers(stream, outcome) {
            return;
        }
        self.request_headers = stream.data().request_headers.clone();
        // Routing, again if the plugins changed what it depends on.
        if stream.data_mut().take_reroute() {
            routing = router(&stream.data().request_headers);
            routing.record(&mut stream.data_mut().info);
        }
        let reply = match routing.destination {
            Destination::Upstream(reply) => reply,
            Destination::Direct(direct) => {
                self.answered(stream.direct_response(direct));
                return;
            }
        };
        let up = &mut stream.data_mut().info.upstream;
        up.attempts = 1;
        up.address = UPSTREAM_ADDRESS.parse().ok();
        up.local_address = UPSTREAM_LOCAL_ADDRESS.parse().ok();
        up.pool_ready = Some(std::time::Duration::ZERO);
        up.request_sent = Some(std::time::Instant::now());
        // Request body, then trailers.
        let had_body = !request.chunks.is_empty();
        let ends = request_trailers.is_empty();
        let Some(mut body) = self.body(stream, request.chunks, true, ends) else {
            return;
        };
        let mut trailers = HeaderList::new();
        if !ends {
            stream.data_mut().request_trailers = request_trailers;
            let Some(held) = self.trailers(stream, true) else {
                return;
            };
            body = [body, held].concat().into();
            trailers = stream.data().request_trailers.clone();
        }
        if had_body {
            self.request_body = Some(body.clone());
        }
        self.upstream = Some(UpstreamRequest {
            headers: self.request_headers.clone(),
            body,
            trailers,
        });
        // Response headers.
        let mut headers = HeaderList::new();
        headers.push(":status", Bytes::from(reply.status.to_string()));
        for (k, v) in &reply.headers {
            headers.push(k.to_ascii_lowercase(), Bytes::from(v.clone()));
        }
        let len: usize = reply.chunks.iter().map(Bytes::len).sum();
        if !reply.chunks.is_empty() && !has(&headers, "content-length") {
            headers.push("content-length", Bytes::from(len.to_string()));
        }
        stream.data_mut().response_headers = headers;
        stream.data_mut().info.response_details = Some("via_upstream".into());
        let response_trailers = list(&reply.trailers);
        let ends = response_trailers.is_empty();
        let outcome = stream.on_response_headers(reply.chunks.is_empty() && ends);
        if !self.headers(stream, outcome) {
            return;
        }
        // Response body, then trailers.
        let Some(mut body) = self.body(stream, reply.chunks, false, ends) else {
            return;
        };
        if !ends {
            stream.data_mut().response_trailers = response_trailers;
            let Some(held) = self.trailers(stream, false) else {
                return;
            };
            body = [body, held].concat().into();
            self.response_trailers = stream.data().response_trailers.clone();
        }
        let mut headers = stream.data().response_headers.clone();
        if has(&headers, "content-length") {
            headers.replace(b"content-length", body.len().to_string().as_bytes());
        }
        self.status = headers.status().unwrap_or(reply.status);
        self.response_headers = headers;
        let info = &mut stream.data_mut().info;
        info.response_body_bytes = body.len() as u64;
        if let Some(sent) = info.upstream.request_sent {
            info.upstream.backend_latency = Some(sent.elapsed());
        }
        self.response_body = body;
    }

    /// Follows a header-callback outcome, waiting out a pause; false when the exchange
    /// ended here.
    fn headers(&mut self, stream: &mut HttpStream, mut outcome: HeadersOutcome) -> bool {
        loop {
            match outcome {
                HeadersOutcome::Continue => return true,
                HeadersOutcome::Paused => {
                    if !self.await_signal(stream) {
                        return false;
                    }
                    outcome = stream.resume_headers();
                }
                HeadersOutcome::LocalReply(reply) => {
                    self.local(stream, reply);
                    return false;
                }
                HeadersOutcome::Reset => {
                    self.end = End::Reset;
                    return false;
                }
            }
        }
    }

    /// Runs the trailer callbacks, waiting out a pause; returns the body bytes plugins
    /// held until then, or `None` when the exchange ended here.
    fn trailers(&mut self, stream: &mut HttpStream, request: bool) -> Option<Bytes> {
        let mut outcome = if request {
            stream.on_request_trailers()
        } else {
            stream.on_response_trailers()
        };
        loop {
            match outcome {
                TrailersOutcome::Continue(held) => return Some(held),
                TrailersOutcome::Paused => {
                    if !self.await_signal(stream) {
                        return None;
                    }
                    outcome = stream.resume_trailers();
                }
                TrailersOutcome::LocalReply(reply) => {
                    self.local(stream, reply);
                    return None;
                }
                TrailersOutcome::Reset => {
                    self.end = End::Reset;
                    return None;
                }
            }
        }
    }

    /// Sends chunks through the body callbacks and returns what is forwarded; `None`
    /// when the exchange ended here. `ends`: the last chunk ends the stream (no trailers
    /// follow).
    fn body(
        &mut self,
        stream: &mut HttpStream,
        chunks: Vec<Bytes>,
        request: bool,
        ends: bool,
    ) -> Option<Bytes> {
        let mut out = BytesMut::new();
        let n = chunks.len();
        for (i, chunk) in chunks.into_iter().enumerate() {
            let eos = ends && i + 1 == n;
            if request {
                stream.data_mut().info.request_body_bytes += chunk.len() as u64;
            }
            let mut outcome = if request {
                stream.on_request_body(chunk, eos)
            } else {
                stream.on_response_body(chunk, eos)
            };
            loop {
                match outcome {
                    BodyOutcome::Forward(b) => {
                        out.extend_from_slice(&b);
                        break;
                    }
                    BodyOutcome::Held if !eos => break,
                    BodyOutcome::Held => {
                        if !self.await_signal(stream) {
                            return None;
                        }
                        outcome = stream.resume_body();
                    }
                    BodyOutcome::LocalReply(reply) => {
                        if request {
                            self.local(stream, reply);
                        } else {
                            // The response has started: a reply is impossible, as in Envoy.
                            self.end = End::Reset;
                        }
                        return None;
                    }
                    // Envoy resets a response whose headers went out before a filter's
                    // buffer passed its limit.
                    BodyOutcome::Reset | BodyOutcome::ResponseTooLarge(_) => {
                        self.end = End::Reset;
                        return None;
                    }
                }
            }
        }
        Some(out.freeze())
    }

    /// Waits while the stream is paused until something signals it (its own callback, a
    /// root callback answering a callout, a tick, a queue) — true — or until the plugins'
    /// root services have nothing left that could: false, and the exchange is stalled.
    fn await_signal(&mut self, stream: &HttpStream) -> bool {
        let Some(services) = &self.services else {
            self.end = End::Stalled;
            return false;
        };
        let waiter = stream.waiter();
        let plugins = services.plugins.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        services.runtime.spawn(async move {
            let settled = async {
                for plugin in &plugins {
                    plugin.root_settled().await;
                }
            };
            // A root that ticks forever never settles: give up after a while.
            let signalled = tokio::time::timeout(PATIENCE, async {
                tokio::select! {
                    biased;
                    () = waiter.wait() => true,
                    () = settled => false,
                }
            })
            .await
            .unwrap_or(false);
            let _ = tx.send(signalled);
        });
        let signalled = rx.recv().unwrap_or(false);
        if !signalled {
            self.end = End::Stalled;
        }
        signalled
    }

    fn local(&mut self, stream: &mut HttpStream, reply: LocalReply) {
        self.answered(stream.local_response(reply));
    }

    fn answered(&mut self, resp: wasmbridge_host::LocalResponse) {
        self.end = End::Response;
        self.status = resp.status;
        self.response_headers = resp.headers;
        self.response_body = resp.body;
    }
}
