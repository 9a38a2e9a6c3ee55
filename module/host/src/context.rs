//! Context semantics: the per-VM host state, the state of the callback being run, phases,
//! and deferred actions.
//!
//! A hostcall that changes the flow of a stream (`proxy_continue_stream`,
//! `proxy_close_stream`, `proxy_send_local_response`) only records an [`Action`] here. The
//! stream acts on it after the callback returns; the host never re-enters the guest from
//! inside a hostcall.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::net::SocketAddr;
use std::sync::{Arc, Condvar, Mutex};

use bytes::{Bytes, BytesMut};
use wasmbridge_abi::{AbiVersion, StreamType};
use wasmtime::{Memory, TypedFunc};

use crate::headers::HeaderList;
use crate::plugin::FailurePolicy;

/// The plugin facts every hostcall may need; shared by all replicas of a plugin.
pub(crate) struct PluginInfo {
    pub name: String,
    pub root_id: String,
    pub vm_id: String,
    pub configuration: Bytes,
    pub vm_configuration: Bytes,
    pub abi: AbiVersion,
    pub failure_policy: FailurePolicy,
    /// Encoded values of the properties that do not depend on a stream (`xds.node...`),
    /// by dotted path.
    pub static_properties: HashMap<String, Vec<u8>>,
    /// The runtime's shared-data store.
    pub shared: Arc<crate::shared::SharedData>,
    /// The runtime's shared queues.
    pub queues: Arc<crate::root::Queues>,
    /// Where callouts go.
    pub upstreams: Arc<dyn crate::callout::Upstreams>,
    /// The proxy's foreign functions.
    pub foreign: crate::foreign::ForeignFunctions,
    /// The runtime's guest metrics.
    pub metrics: crate::GuestMetrics,
    /// The plugin's host metric handles (callouts are counted by the hostcalls).
    pub host_metrics: Option<crate::metrics::PluginMetrics>,
    /// Memory and CPU limits of each VM.
    pub limits: crate::Limits,
    /// Log-only mode: what the plugin would change is logged and counted, not applied.
    pub log_only: bool,
    /// Which caps of `limits` the plugin reached already (for logging once).
    pub cap_hits: crate::limits::CapHits,
    /// The stream failures the plugin caused (traps, deadlines, unusable VMs), for the
    /// admin API.
    pub failures: FailureLog,
    /// What the plugin may call and see, and its WASI environment.
    pub policy: crate::policy::Policy,
}

/// How often a plugin failed a stream, and the last reason.
#[derive(Default)]
pub(crate) struct FailureLog {
    count: std::sync::atomic::AtomicU64,
    last: std::sync::Mutex<Option<String>>,
}

impl FailureLog {
    /// Records one failure.
    pub fn record(&self, reason: &str) {
        self.count
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(reason.to_string());
    }

    /// The count so far and the last reason.
    pub fn snapshot(&self) -> (u64, Option<String>) {
        (
            self.count.load(std::sync::atomic::Ordering::Relaxed),
            self.last.lock().unwrap_or_else(|p| p.into_inner()).clone(),
        )
    }
}

impl std::fmt::Debug for PluginInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginInfo")
            .field("name", &self.name)
            .finish()
    }
}

impl PluginInfo {
    /// Counts a callout that ended (or was refused) in `wasmbridge_plugin_callouts_total`.
    pub(crate) fn count_callout(
        &self,
        cluster: &str,
        kind: crate::metrics::CalloutKind,
        outcome: &str,
    ) {
        if let Some(m) = &self.host_metrics {
            m.callout(cluster, kind, outcome);
        }
    }

    /// Counts a cap the plugin reached in `wasmbridge_plugin_limit_exceeded_total` and logs
    /// `what` happened: at warn the first time for this plugin and cap, then at debug.
    pub(crate) fn cap_reached(
        &self,
        cap: crate::limits::Cap,
        context_id: u32,
        callback: &str,
        what: std::fmt::Arguments<'_>,
    ) {
        if let Some(m) = &self.host_metrics {
            m.limit_exceeded(cap.label());
        }
        let (key, value) = (cap.key(), self.limits.cap(cap));
        if self.cap_hits.first(cap) {
            tracing::warn!(
                plugin = %self.name,
                root_id = %self.root_id,
                context_id,
                callback,
                limit = cap.label(),
                "{what} ({key} is {value}); later hits of this limit are logged at debug level and counted in wasmbridge_plugin_limit_exceeded_total"
            );
        } else {
            tracing::debug!(
                plugin = %self.name,
                root_id = %self.root_id,
                context_id,
                callback,
                limit = cap.label(),
                "{what} ({key} is {value})"
            );
        }
    }
}

/// What the host is doing with a VM right now; decides which maps and buffers exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Start-up code, allocator calls, context creation.
    Start,
    /// `proxy_on_vm_start`: the VM configuration is readable.
    VmStart,
    /// `proxy_on_configure`: the plugin configuration is readable.
    Configure,
    RequestHeaders,
    RequestBody,
    ResponseHeaders,
    ResponseBody,
    /// `proxy_on_request_trailers`: the request trailers are readable and writable.
    RequestTrailers,
    /// `proxy_on_response_trailers`: the response trailers are readable and writable.
    ResponseTrailers,
    /// `proxy_on_log`: request and response maps are read-only.
    Log,
    /// `proxy_on_done` / `proxy_on_delete`.
    Done,
    /// `proxy_on_tick` (root).
    Tick,
    /// `proxy_on_queue_ready` (root).
    QueueReady,
    /// `proxy_on_http_call_response` (root): the callout's maps and body are readable.
    HttpCallResponse,
    /// The four `proxy_on_grpc_*` callbacks (root): the message or metadata is readable.
    Grpc,
}

/// A local reply recorded by `proxy_send_local_response`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalReply {
    /// HTTP status.
    pub status: u16,
    /// Response-code details (Envoy's vocabulary, spaces replaced by `_`).
    pub details: String,
    /// Response body.
    pub body: Bytes,
    /// Headers given by the filter, names lower-cased; they override the defaults.
    pub headers: Vec<(Bytes, Bytes)>,
    /// gRPC status, or `None` for a plain HTTP reply.
    pub grpc_status: Option<u32>,
}

impl LocalReply {
    /// A route's direct response (details `direct_response`), header names lower-cased.
    pub fn direct_response(status: u16, body: Bytes, headers: &[(String, String)]) -> LocalReply {
        LocalReply {
            status,
            details: "direct_response".to_string(),
            body,
            headers: headers
                .iter()
                .map(|(k, v)| (Bytes::from(k.to_ascii_lowercase()), Bytes::from(v.clone())))
                .collect(),
            grpc_status: None,
        }
    }
}

/// A deferred change of a stream's flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    Continue(StreamType),
    Close(StreamType),
    LocalReply(LocalReply),
    /// The VM the stream's context lived in failed.
    VmFailed,
}

/// Where another context (a root callback of a callout, a queue or a timer) leaves
/// actions for a stream that is waiting, and wakes it. While the stream is paused its data
/// waits here too, so that such a callback can reach it through
/// `proxy_set_effective_context`.
#[derive(Debug, Default)]
pub(crate) struct StreamSignal {
    /// Set for a log-only plugin's context: actions are logged and counted, not kept.
    log_only: Option<Arc<PluginInfo>>,
    pending: Mutex<Vec<Action>>,
    notify: tokio::sync::Notify,
    parked: Mutex<Parking>,
    returned: Condvar,
}

/// Where a stream's data is.
#[derive(Debug, Default)]
enum Parking {
    /// With the stream.
    #[default]
    Home,
    /// Waiting here while the stream is paused in `phase`.
    Parked(Phase, Box<StreamData>),
    /// Lent to a callback of another context.
    Lent,
}

impl StreamSignal {
    /// Leaves the paused stream's data here.
    pub fn park(&self, phase: Phase, data: Box<StreamData>) {
        let mut parked = self.parked.lock().unwrap_or_else(|p| p.into_inner());
        *parked = Parking::Parked(phase, data);
    }

    /// Takes the stream's data back, waiting while a callback has it; `None` when it was
    /// not parked.
    pub fn unpark(&self) -> Option<Box<StreamData>> {
        let mut parked = self.parked.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            match std::mem::take(&mut *parked) {
                Parking::Home => return None,
                Parking::Parked(_, data) => return Some(data),
                Parking::Lent => {
                    *parked = Parking::Lent;
                    parked = self
                        .returned
                        .wait(parked)
                        .unwrap_or_else(|p| p.into_inner());
                }
            }
        }
    }

    /// Lends the parked data to a callback of another context.
    pub fn lend(&self) -> Option<(Phase, Box<StreamData>)> {
        let mut parked = self.parked.lock().unwrap_or_else(|p| p.into_inner());
        match std::mem::take(&mut *parked) {
            Parking::Parked(phase, data) => {
                *parked = Parking::Lent;
                Some((phase, data))
            }
            other => {
                *parked = other;
                None
            }
        }
    }

    /// Gives lent data back.
    pub fn give_back(&self, phase: Phase, data: Box<StreamData>) {
        let mut parked = self.parked.lock().unwrap_or_else(|p| p.into_inner());
        *parked = Parking::Parked(phase, data);
        self.returned.notify_all();
    }

    /// A signal for a log-only plugin's context, which logs and counts what arrives.
    pub fn log_only(plugin: Arc<PluginInfo>) -> Self {
        StreamSignal {
            log_only: Some(plugin),
            ..StreamSignal::default()
        }
    }

    pub fn push(&self, action: Action) {
        if let Some(plugin) = &self.log_only {
            crate::stream::LogOnly {
                plugin,
                callback: "a root callback",
            }
            .action(&action);
            return;
        }
        if let Ok(mut pending) = self.pending.lock() {
            pending.push(action);
        }
        self.notify.notify_one();
    }

    pub fn take(&self) -> Vec<Action> {
        self.pending
            .lock()
            .map(|mut p| std::mem::take(&mut *p))
            .unwrap_or_default()
    }

    pub async fn notified(&self) {
        self.notify.notified().await;
    }
}

/// Facts about the connection and the exchange that properties expose. The adapter fills
/// what its proxy knows; what stays `None` reads as NOT_FOUND, as in Envoy.
#[derive(Debug, Clone, Default)]
pub struct StreamInfo {
    /// Downstream peer address.
    pub source: Option<SocketAddr>,
    /// Address the downstream connected to.
    pub destination: Option<SocketAddr>,
    /// "HTTP/1.0", "HTTP/1.1", "HTTP/2".
    pub protocol: &'static str,
    /// The request id (`x-request-id`, or one the adapter made).
    pub request_id: Option<String>,
    /// The response status once known.
    pub response_code: Option<u16>,
    /// Why the response is what it is (`response.code_details`): `via_upstream`, a
    /// local reply's details, `direct_response`.
    pub response_details: Option<String>,
    /// Name of the route the request matched.
    pub route_name: Option<String>,
    /// The cluster the route forwards to (`xds.cluster_name`).
    pub cluster_name: Option<String>,
    /// An id unique to the downstream connection among the open ones (`connection.id`).
    pub connection_id: Option<u64>,
    /// When the request arrived (`request.time`).
    pub start_time: Option<std::time::SystemTime>,
    /// The same moment on the monotonic clock, for `request.duration`.
    pub started: Option<std::time::Instant>,
    /// How long the exchange took, set when the stream finishes (`request.duration`).
    pub duration: Option<std::time::Duration>,
    /// Request body bytes received from the downstream so far.
    pub request_body_bytes: u64,
    /// Response body bytes sent to the downstream so far.
    pub response_body_bytes: u64,
    /// The upstream exchange, once there is one.
    pub upstream: UpstreamInfo,
}

/// Facts about the upstream side (`upstream.*`).
#[derive(Debug, Clone, Default)]
pub struct UpstreamInfo {
    /// The upstream host the request went to.
    pub address: Option<SocketAddr>,
    /// The local address of the upstream connection.
    pub local_address: Option<SocketAddr>,
    /// How many times an upstream was picked for this request (1 + retries).
    pub attempts: u32,
    /// How many endpoints the cluster has.
    pub endpoints: Option<u32>,
    /// From picking the upstream to holding a connection to it.
    pub pool_ready: Option<std::time::Duration>,
    /// When the request started to go upstream (for `response.backend_latency`).
    pub request_sent: Option<std::time::Instant>,
    /// From sending the request upstream to the end of its response.
    pub backend_latency: Option<std::time::Duration>,
    /// Why connecting to the upstream failed, if it did.
    pub transport_failure_reason: Option<String>,
}

/// Everything a stream's plugins read and write: header maps, the body buffer of the
/// callback being run, stream facts and per-stream properties. One `StreamData` flows
/// through the whole plugin chain of a request.
#[derive(Debug, Default)]
pub struct StreamData {
    /// Request headers with pseudo-headers first.
    pub request_headers: HeaderList,
    /// Response headers with `:status` first.
    pub response_headers: HeaderList,
    /// Request trailers.
    pub request_trailers: HeaderList,
    /// Response trailers.
    pub response_trailers: HeaderList,
    /// Connection and exchange facts.
    pub info: StreamInfo,
    /// The body buffer of the body callback being run.
    pub(crate) body: BytesMut,
    /// Values stored with `proxy_set_property`, keyed by the raw path.
    pub(crate) properties: HashMap<Vec<u8>, Bytes>,
    /// A plugin called `clear_route_cache`.
    pub(crate) route_cache_cleared: bool,
    /// Objects stored with the `set_envoy_filter_state` foreign function, by path.
    pub(crate) filter_state: HashMap<Bytes, Bytes>,
}

impl StreamData {
    /// Whether the route must be chosen again: a plugin changed the request headers or
    /// called `clear_route_cache` since the last call (which this resets).
    pub fn take_reroute(&mut self) -> bool {
        std::mem::take(&mut self.route_cache_cleared) | self.request_headers.is_modified()
    }
}

/// The state of the one callback a VM is running.
#[derive(Debug)]
pub(crate) struct CallState {
    pub callback: &'static str,
    pub context_id: u32,
    pub effective_context_id: u32,
    pub phase: Phase,
    pub stream: Option<Box<StreamData>>,
    pub actions: Vec<(u32, Action)>,
    pub exit_code: Option<i32>,
    /// Another stream's data, lent while that stream is the effective context.
    pub borrowed: Option<Borrowed>,
    /// The callout result this root callback delivers.
    pub delivery: Option<Box<Delivery>>,
    /// What `proxy_get_status` answers in this callback.
    pub status: Option<(u32, Bytes)>,
}

/// A paused stream's data, lent to a callback of another context.
#[derive(Debug)]
pub(crate) struct Borrowed {
    pub id: u32,
    pub phase: Phase,
    pub data: Box<StreamData>,
    pub signal: Arc<StreamSignal>,
}

/// What a callout callback can read: for HTTP the response headers (map 6), body
/// (buffer 4) and trailers (map 7); for gRPC the initial metadata (map 4), the message
/// (buffer 5) and the trailing metadata (map 5).
#[derive(Debug, Default)]
pub(crate) struct Delivery {
    pub grpc: bool,
    pub headers: HeaderList,
    pub body: Bytes,
    pub trailers: HeaderList,
}

impl CallState {
    pub fn idle() -> Self {
        CallState {
            callback: "start",
            context_id: 0,
            effective_context_id: 0,
            phase: Phase::Start,
            stream: None,
            actions: Vec::new(),
            exit_code: None,
            borrowed: None,
            delivery: None,
            status: None,
        }
    }

    /// Returns lent stream data to its owner.
    pub fn give_back(&mut self) {
        if let Some(b) = self.borrowed.take() {
            b.signal.give_back(b.phase, b.data);
        }
    }
}

/// The store data of one VM replica.
/// One plugin whose root context lives in a VM: VMs shared by plugins with the same
/// `vm_id` and module hold one each.
pub(crate) struct Tenant {
    pub plugin: Arc<PluginInfo>,
    pub root: Arc<crate::root::RootLink>,
    pub root_context_id: u32,
}

pub(crate) struct HostState {
    /// The plugin whose context the current call runs in (its tenant's).
    pub plugin: Arc<PluginInfo>,
    pub memory: Option<Memory>,
    pub allocator: Option<std::sync::Arc<TypedFunc<i32, i32>>>,
    pub root_context_id: u32,
    pub next_context_id: u32,
    /// Live stream contexts of this VM and where to signal them.
    pub streams: HashMap<u32, Arc<StreamSignal>, BuildHasherDefault<ContextIdHasher>>,
    pub call: CallState,
    /// Stub names already logged once.
    pub warned: HashSet<String>,
    /// An empty box swapped with the caller's stream data during a call, so moving the data
    /// into the store never allocates.
    pub spare: Option<Box<StreamData>>,
    /// Ticks, callouts and queue notifications of the current tenant's root.
    pub root: Arc<crate::root::RootLink>,
    /// Every plugin with a root context in this VM; `plugin`, `root` and
    /// `root_context_id` are those of `tenants[tenant]`.
    pub tenants: Box<[Tenant]>,
    /// The current tenant.
    pub tenant: usize,
    /// Callouts in flight, by token.
    pub callouts: crate::root::InFlight,
    /// The next callout token (steps by 4; the low 2 bits give the kind, as in Envoy).
    pub next_token: u32,
    /// The VM's generation in its replica (callout results carry it).
    pub generation: u64,
    /// Caps the VM's linear memory.
    pub limiter: crate::limits::MemoryLimiter,
    /// Why the last guest call failed.
    pub failure: Option<crate::limits::FailureReason>,
    /// The CPU budget of the guest call under way.
    pub cpu: crate::limits::CpuWatch,
    /// True until the VM has started (its calls get the start-up CPU budget).
    pub starting: bool,
}

impl HostState {
    /// The state of a new VM for `tenants` (at least one: plugin and root link), the
    /// first current; root context ids are set when the roots are created.
    pub fn new(
        tenants: Vec<(Arc<PluginInfo>, Arc<crate::root::RootLink>)>,
        generation: u64,
    ) -> Self {
        let tenants: Box<[Tenant]> = tenants
            .into_iter()
            .map(|(plugin, root)| Tenant {
                plugin,
                root,
                root_context_id: 0,
            })
            .collect();
        let plugin = tenants[0].plugin.clone();
        let root = tenants[0].root.clone();
        HostState {
            tenants,
            tenant: 0,
            limiter: crate::limits::MemoryLimiter {
                max_bytes: usize::try_from(plugin.limits.memory_bytes).unwrap_or(usize::MAX),
                refused: false,
            },
            failure: None,
            cpu: crate::limits::CpuWatch::new(std::time::Duration::ZERO, std::time::Instant::now()),
            starting: true,
            root,
            callouts: Default::default(),
            next_token: 4,
            generation,
            plugin,
            memory: None,
            allocator: None,
            root_context_id: 0,
            next_context_id: 1,
            streams: HashMap::default(),
            call: CallState::idle(),
            warned: HashSet::new(),
            spare: Some(Box::default()),
        }
    }

    /// True when `id` names a context of this VM.
    pub fn knows_context(&self, id: u32) -> bool {
        id == self.root_context_id
            || self.streams.contains_key(&id)
            || self.tenants.iter().any(|t| t.root_context_id == id)
    }

    /// Makes tenant `t` the current one: the plugin, root link and root context the next
    /// call runs with. Free when it is already current (always, in a VM of one plugin).
    pub fn enter(&mut self, t: usize) {
        if self.tenant != t {
            let tenant = &self.tenants[t];
            self.plugin = tenant.plugin.clone();
            self.root = tenant.root.clone();
            self.root_context_id = tenant.root_context_id;
            self.tenant = t;
        }
    }

    /// The stream data of the effective context: the stream being run, or a paused
    /// stream another context made effective.
    pub fn stream(&self) -> Option<&StreamData> {
        let call = &self.call;
        if call.effective_context_id == call.context_id {
            call.stream.as_deref()
        } else {
            call.borrowed
                .as_ref()
                .filter(|b| b.id == call.effective_context_id)
                .map(|b| &*b.data)
        }
    }

    /// Mutable access to the stream data, as [`HostState::stream`].
    pub fn stream_mut(&mut self) -> Option<&mut StreamData> {
        let call = &mut self.call;
        if call.effective_context_id == call.context_id {
            call.stream.as_deref_mut()
        } else {
            let id = call.effective_context_id;
            call.borrowed
                .as_mut()
                .filter(|b| b.id == id)
                .map(|b| &mut *b.data)
        }
    }

    /// The phase the effective stream is in: the running callback's, or the one a lent
    /// stream paused in.
    pub fn stream_phase(&self) -> Phase {
        let call = &self.call;
        match &call.borrowed {
            Some(b) if call.effective_context_id != call.context_id => b.phase,
            _ => call.phase,
        }
    }

    /// Records a deferred action for the effective context.
    pub fn defer(&mut self, action: Action) {
        let target = self.call.effective_context_id;
        self.call.actions.push((target, action));
    }
}

/// The hasher of maps keyed by context id, which every stream inserts into and removes
/// from: the ids are the host's own sequential numbers, not attacker-chosen, so a
/// multiplicative hash spreads them well at a fraction of SipHash's cost.
#[derive(Default)]
pub struct ContextIdHasher(u64);

impl Hasher for ContextIdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u32(&mut self, id: u32) {
        self.0 = u64::from(id).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}
