//! Context semantics: the per-VM host state, the state of the callback being run, phases,
//! and deferred actions.
//!
//! A hostcall that changes the flow of a stream (`proxy_continue_stream`,
//! `proxy_close_stream`, `proxy_send_local_response`) only records an [`Action`] here. The
//! stream acts on it after the callback returns; the host never re-enters the guest from
//! inside a hostcall.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use wasmbridge_abi::{AbiVersion, StreamType};
use wasmtime::{Memory, TypedFunc};

use crate::headers::HeaderList;
use crate::plugin::FailurePolicy;

/// The plugin facts every hostcall may need; shared by all replicas of a plugin.
#[derive(Debug)]
pub(crate) struct PluginInfo {
    pub name: String,
    pub root_id: String,
    pub vm_id: String,
    pub configuration: Bytes,
    pub vm_configuration: Bytes,
    pub abi: AbiVersion,
    pub failure_policy: FailurePolicy,
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
    /// `proxy_on_log`: request and response maps are read-only.
    Log,
    /// `proxy_on_done` / `proxy_on_delete`.
    Done,
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

/// A deferred change of a stream's flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    Continue(StreamType),
    Close(StreamType),
    LocalReply(LocalReply),
    /// The VM the stream's context lived in failed.
    VmFailed,
}

/// Where another context (or, later, a timer or callout) leaves actions for a stream that
/// is waiting, and wakes it.
#[derive(Debug, Default)]
pub(crate) struct StreamSignal {
    pending: Mutex<Vec<Action>>,
    notify: tokio::sync::Notify,
}

impl StreamSignal {
    pub fn push(&self, action: Action) {
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

/// Facts about the connection and the exchange that properties expose.
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
    /// Name of the route the request matched.
    pub route_name: Option<String>,
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
        }
    }
}

/// The store data of one VM replica.
pub(crate) struct HostState {
    pub plugin: Arc<PluginInfo>,
    pub memory: Option<Memory>,
    pub allocator: Option<TypedFunc<i32, i32>>,
    pub root_context_id: u32,
    pub next_context_id: u32,
    /// Live stream contexts of this VM and where to signal them.
    pub streams: HashMap<u32, Arc<StreamSignal>>,
    pub call: CallState,
    /// Stub names already logged once.
    pub warned: HashSet<String>,
    /// An empty box swapped with the caller's stream data during a call, so moving the data
    /// into the store never allocates.
    pub spare: Option<Box<StreamData>>,
}

impl HostState {
    pub fn new(plugin: Arc<PluginInfo>) -> Self {
        HostState {
            plugin,
            memory: None,
            allocator: None,
            root_context_id: 0,
            next_context_id: 1,
            streams: HashMap::new(),
            call: CallState::idle(),
            warned: HashSet::new(),
            spare: Some(Box::default()),
        }
    }

    /// True when `id` names a context of this VM.
    pub fn knows_context(&self, id: u32) -> bool {
        id == self.root_context_id || self.streams.contains_key(&id)
    }

    /// The stream data, when the effective context is the stream being run.
    pub fn stream(&self) -> Option<&StreamData> {
        if self.call.effective_context_id == self.call.context_id {
            self.call.stream.as_deref()
        } else {
            None
        }
    }

    /// Mutable access to the stream data, as [`HostState::stream`].
    pub fn stream_mut(&mut self) -> Option<&mut StreamData> {
        if self.call.effective_context_id == self.call.context_id {
            self.call.stream.as_deref_mut()
        } else {
            None
        }
    }

    /// Records a deferred action for the effective context.
    pub fn defer(&mut self, action: Action) {
        let target = self.call.effective_context_id;
        self.call.actions.push((target, action));
    }
}
