//! Running one HTTP stream through a chain of plugins, in Envoy's order.
//!
//! Request callbacks run in chain order, response callbacks in reverse. A PAUSE from a
//! header callback stops the chain there ("stop all": no body callbacks) until the stream
//! is resumed; a PAUSE from a body callback makes the host buffer that plugin's input and
//! call it again with everything buffered, up to the plugin's `limits.body` (past it, a
//! request gets Envoy's 413 and a response a 503). Trailers end a body that never had
//! `end_of_stream`: a plugin still buffering gets its trailer callback, and what it held
//! goes on, through the next plugins' body callbacks, once it continued from there.
//! Flow changes a callback recorded (local reply, continue, close) are applied after it
//! returns. Adapters drive a stream with the `on_*` methods and write back whatever the
//! plugins changed in [`StreamData`].

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use wasmbridge_abi::{BodyAction, HeadersAction, StreamType, TrailersAction};
use wasmtime::Store;

use crate::context::{Action, HostState, LocalReply, Phase, PluginInfo, StreamData, StreamSignal};
use crate::headers::HeaderList;
use crate::limits::Cap;
use crate::plugin::{FailurePolicy, Gone, Plugin};
use crate::pool::Pin;
use crate::vm::{Callbacks, HeadersFn};

/// A route's plugins, in the order the route lists them.
#[derive(Debug, Clone, Default)]
pub struct FilterChain {
    plugins: Vec<Arc<Plugin>>,
    /// Whether any plugin handles request / response bodies, derived once.
    body_callbacks: [bool; 2],
}

/// What the adapter does after a header callback round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeadersOutcome {
    /// Go on; write back changed headers.
    Continue,
    /// A plugin paused: await [`Waiter::wait`], then call [`HttpStream::resume_headers`].
    Paused,
    /// Reply with this instead of going on (build it with [`HttpStream::local_response`]).
    LocalReply(LocalReply),
    /// Reset the stream.
    Reset,
}

/// What the adapter does with a body chunk.
#[derive(Debug, PartialEq, Eq)]
pub enum BodyOutcome {
    /// Send these bytes on (possibly changed, possibly more than the chunk).
    Forward(Bytes),
    /// A plugin buffers: send nothing now. At end of stream, await the waiter and call
    /// [`HttpStream::resume_body`].
    Held,
    /// Reply with this instead.
    LocalReply(LocalReply),
    /// A plugin buffered more of the response body than its `limits.body`. Send this
    /// response instead (a 503 `response_payload_too_large`; Envoy sends 500) if the
    /// response headers have not gone out yet — like Envoy's, it does not pass the response
    /// callbacks again — or else abort the stream.
    ResponseTooLarge(LocalResponse),
    /// Reset the stream.
    Reset,
}

/// What the adapter does after a trailer callback round.
#[derive(Debug, PartialEq, Eq)]
pub enum TrailersOutcome {
    /// Go on: send these body bytes first (what plugins held back until the trailers came;
    /// often empty), then the trailers as [`StreamData`] holds them now.
    Continue(Bytes),
    /// A plugin paused: await [`Waiter::wait`], then call [`HttpStream::resume_trailers`].
    Paused,
    /// Reply with this instead (request trailers only: once the response has started, a
    /// local reply resets the stream, as in Envoy).
    LocalReply(LocalReply),
    /// Reset the stream.
    Reset,
}

/// A complete response made from a local reply after the response callbacks ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalResponse {
    /// Final status.
    pub status: u16,
    /// Final headers (`:status` first), including `content-length`.
    pub headers: HeaderList,
    /// Final body.
    pub body: Bytes,
}

/// Direction of a callback round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dir {
    Request,
    Response,
}

impl Dir {
    fn index(self) -> usize {
        match self {
            Dir::Request => 0,
            Dir::Response => 1,
        }
    }

    fn stream_type(self) -> StreamType {
        match self {
            Dir::Request => StreamType::HttpRequest,
            Dir::Response => StreamType::HttpResponse,
        }
    }
}

enum Slot {
    NotCreated,
    Active {
        /// The replica the context lives in, held until the stream ends.
        pin: Pin,
        generation: u64,
        context_id: u32,
    },
    /// Failed open: skipped for the rest of the stream.
    Skipped,
    /// Failed closed, or its VM died.
    Failed,
    Ended,
}

impl Slot {
    /// The replica, VM generation and context id of a live context.
    fn active(&self) -> Option<(&Pin, u64, u32)> {
        match self {
            Slot::Active {
                pin,
                generation,
                context_id,
            } => Some((pin, *generation, *context_id)),
            _ => None,
        }
    }
}

struct Member {
    plugin: Arc<Plugin>,
    slot: Slot,
    /// Input buffered while the plugin pauses a body, per direction.
    bufs: [BytesMut; 2],
}

/// Which callback a pause came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Headers,
    Body,
    Trailers,
}

#[derive(Debug, Clone, Copy)]
struct Paused {
    dir: Dir,
    stage: Stage,
    pos: usize,
    eos: bool,
}

/// What one plugin's body callback did with its input.
enum Step {
    /// Passed this on to the next plugin.
    Next(BytesMut),
    /// Buffers it (the stream is paused at this plugin).
    Held,
    /// Ends the round with this outcome.
    End(BodyOutcome),
}

/// How a plugin failure affects the stream.
enum Effect {
    Skip,
    Reply(LocalReply),
}

enum Invoked {
    Ran(i32, Vec<Action>),
    NotExported,
    Failed(String),
}

/// Lets an adapter wait, without borrowing the stream, until someone resumes it.
#[derive(Debug, Clone)]
pub struct Waiter(Arc<StreamSignal>);

impl Waiter {
    /// Completes when an action for the stream arrived (continue, local reply, close, or
    /// the failure of a VM it lives in).
    pub async fn wait(&self) {
        self.0.notified().await;
    }
}

/// One request's journey through a [`FilterChain`].
pub struct HttpStream {
    data: Box<StreamData>,
    members: Vec<Member>,
    signal: Arc<StreamSignal>,
    paused: Option<Paused>,
    /// Body bytes on their way to the plugins after the one paused in a trailer callback.
    trailer_carry: BytesMut,
    replied: bool,
    in_local_reply: bool,
    /// Making a direct response (not a plugin's reply): a plugin may still replace it.
    direct: bool,
    finished: bool,
    /// The data waits in the signal while paused (see [`StreamSignal::park`]).
    parked: bool,
}

impl FilterChain {
    /// A chain of `plugins` in request order.
    pub fn new(plugins: Vec<Arc<Plugin>>) -> Self {
        let body_callbacks = [
            plugins.iter().any(|p| p.handles_request_body()),
            plugins.iter().any(|p| p.handles_response_body()),
        ];
        FilterChain {
            plugins,
            body_callbacks,
        }
    }

    /// The plugins in request order.
    pub fn plugins(&self) -> &[Arc<Plugin>] {
        &self.plugins
    }

    /// True when the chain has no plugin.
    pub fn is_empty(&self) -> bool {
        self.plugins.is_empty()
    }

    /// True when a plugin of the chain may change request bodies.
    pub fn handles_request_body(&self) -> bool {
        self.body_callbacks[0]
    }

    /// True when a plugin of the chain may change response bodies.
    pub fn handles_response_body(&self) -> bool {
        self.body_callbacks[1]
    }

    /// Starts a stream with the adapter's view of the request.
    pub fn start(&self, data: StreamData) -> HttpStream {
        HttpStream {
            data: Box::new(data),
            members: self
                .plugins
                .iter()
                .map(|plugin| Member {
                    plugin: plugin.clone(),
                    slot: Slot::NotCreated,
                    bufs: [BytesMut::new(), BytesMut::new()],
                })
                .collect(),
            signal: Arc::default(),
            paused: None,
            trailer_carry: BytesMut::new(),
            replied: false,
            in_local_reply: false,
            direct: false,
            finished: false,
            parked: false,
        }
    }
}

fn wasm_failure_reply() -> LocalReply {
    LocalReply {
        status: 503,
        details: "wasm_fail_stream".to_string(),
        body: Bytes::new(),
        headers: Vec::new(),
        grpc_status: None,
    }
}

impl HttpStream {
    /// The stream's data (headers, facts) as the plugins left it. While a plugin pauses
    /// the stream the data waits with the plugins, where a callout's answer may change
    /// it; this takes it back first (waiting while such a callback runs).
    pub fn data(&mut self) -> &StreamData {
        self.unpark();
        &self.data
    }

    /// Mutable access, for adapters filling in facts (e.g. the response).
    pub fn data_mut(&mut self) -> &mut StreamData {
        self.unpark();
        &mut self.data
    }

    /// A handle to wait on while the stream is paused.
    pub fn waiter(&self) -> Waiter {
        Waiter(self.signal.clone())
    }

    /// True while a plugin pauses the stream.
    pub fn is_paused(&self) -> bool {
        self.paused.is_some()
    }

    /// The names of the stream's plugins that handle response bodies, in chain order (for
    /// an adapter's error messages).
    pub fn response_body_plugin_names(&self) -> Vec<String> {
        self.members
            .iter()
            .filter(|m| m.plugin.handles_response_body())
            .map(|m| m.plugin.name().to_string())
            .collect()
    }

    /// Runs `proxy_on_request_headers` through the chain. `end_of_stream` is true when the
    /// request has no body.
    pub fn on_request_headers(&mut self, end_of_stream: bool) -> HeadersOutcome {
        self.around(|s| s.run_headers(Dir::Request, 0, end_of_stream))
    }

    /// Runs `proxy_on_response_headers` through the chain in reverse order.
    pub fn on_response_headers(&mut self, end_of_stream: bool) -> HeadersOutcome {
        self.around(|s| {
            if let Some(code) = s.data.response_headers.status() {
                s.data.info.response_code = Some(code);
            }
            s.run_headers(Dir::Response, 0, end_of_stream)
        })
    }

    /// Runs `proxy_on_request_body` for one chunk.
    pub fn on_request_body(&mut self, chunk: Bytes, end_of_stream: bool) -> BodyOutcome {
        self.around(|s| {
            s.paused = None;
            s.run_body(Dir::Request, 0, BytesMut::from(chunk), end_of_stream)
        })
    }

    /// Runs `proxy_on_response_body` for one chunk, in reverse chain order.
    pub fn on_response_body(&mut self, chunk: Bytes, end_of_stream: bool) -> BodyOutcome {
        self.around(|s| {
            s.paused = None;
            s.run_body(Dir::Response, 0, BytesMut::from(chunk), end_of_stream)
        })
    }

    /// Runs `proxy_on_request_trailers` through the chain, after the last request body
    /// chunk (whose `end_of_stream` was false, since trailers followed).
    pub fn on_request_trailers(&mut self) -> TrailersOutcome {
        self.around(|s| {
            s.paused = None;
            s.run_trailers(Dir::Request, 0, BytesMut::new())
        })
    }

    /// Runs `proxy_on_response_trailers` through the chain in reverse order, after the last
    /// response body chunk (whose `end_of_stream` was false, since trailers followed). The
    /// trailers are [`StreamData::response_trailers`]; write them back from there.
    pub fn on_response_trailers(&mut self) -> TrailersOutcome {
        self.around(|s| {
            s.paused = None;
            s.run_trailers(Dir::Response, 0, BytesMut::new())
        })
    }

    /// After the waiter fired while paused in a trailer callback: applies the actions that
    /// arrived and, when resumed, runs the rest of the chain.
    pub fn resume_trailers(&mut self) -> TrailersOutcome {
        self.around(|s| {
            let Some(p) = s.paused.filter(|p| p.stage == Stage::Trailers) else {
                return TrailersOutcome::Continue(Bytes::new());
            };
            match s.take_signal(p) {
                Some(Ok(Effect::Skip)) => {
                    s.paused = None;
                    let i = p.pos_index(s.members.len());
                    let mut carry = std::mem::take(&mut s.trailer_carry);
                    carry.extend_from_slice(&std::mem::take(&mut s.members[i].bufs[p.dir.index()]));
                    s.run_trailers(p.dir, p.pos + 1, carry)
                }
                Some(Ok(Effect::Reply(r))) => s.trailers_reply(p.dir, r),
                Some(Err(())) => TrailersOutcome::Reset,
                None => TrailersOutcome::Paused,
            }
        })
    }

    /// After the waiter fired while paused in a header callback: applies the actions that
    /// arrived and, when resumed, runs the rest of the chain.
    pub fn resume_headers(&mut self) -> HeadersOutcome {
        self.around(|s| {
            let Some(p) = s.paused.filter(|p| p.stage == Stage::Headers) else {
                return HeadersOutcome::Continue;
            };
            match s.take_signal(p) {
                Some(Ok(Effect::Skip)) => {
                    s.paused = None;
                    s.run_headers(p.dir, p.pos + 1, p.eos)
                }
                Some(Ok(Effect::Reply(r))) => HeadersOutcome::LocalReply(r),
                Some(Err(())) => HeadersOutcome::Reset,
                None => HeadersOutcome::Paused,
            }
        })
    }

    /// After the waiter fired while a body callback paused at end of stream: applies the
    /// actions that arrived and, when resumed, sends the buffered body on.
    pub fn resume_body(&mut self) -> BodyOutcome {
        self.around(|s| {
            let Some(p) = s.paused.filter(|p| p.stage == Stage::Body) else {
                return BodyOutcome::Held;
            };
            match s.take_signal(p) {
                Some(Ok(Effect::Skip)) => s.release(p),
                Some(Ok(Effect::Reply(r))) => BodyOutcome::LocalReply(r),
                Some(Err(())) => BodyOutcome::Reset,
                None => BodyOutcome::Held,
            }
        })
    }

    /// Sends on a body a plugin still holds at end of stream without waiting, for
    /// adapters whose body phase cannot wait (Pingora's response body filter).
    pub fn release_held_body(&mut self) -> BodyOutcome {
        self.around(|s| {
            match s.paused.filter(|p| p.stage == Stage::Body) {
                Some(p) => {
                    tracing::warn!(
                        plugin = %s.members[p.pos_index(s.members.len())].plugin.name(),
                        "a plugin paused the response body at end of stream; this proxy cannot wait in that phase, so the buffered body is sent on"
                    );
                    s.release(p)
                }
                None => BodyOutcome::Forward(Bytes::new()),
            }
        })
    }

    fn release(&mut self, p: Paused) -> BodyOutcome {
        self.paused = None;
        let i = p.pos_index(self.members.len());
        let data = std::mem::take(&mut self.members[i].bufs[p.dir.index()]);
        self.run_body(p.dir, p.pos + 1, data, p.eos)
    }

    /// Applies pending signal actions for a paused stream: `Some(Ok(Skip))` resumes,
    /// `Some(Ok(Reply))` replies, `Some(Err)` resets, `None` keeps waiting.
    fn take_signal(&mut self, p: Paused) -> Option<Result<Effect, ()>> {
        let i = p.pos_index(self.members.len());
        let mut outcome = None;
        for action in self.signal.take() {
            match action {
                Action::LocalReply(r) if !self.replied => {
                    self.replied = true;
                    self.paused = None;
                    return Some(Ok(Effect::Reply(r)));
                }
                Action::Close(_) => return Some(Err(())),
                Action::Continue(t) if t == p.dir.stream_type() => outcome = Some(Ok(Effect::Skip)),
                Action::VmFailed if !self.alive(i) => {
                    return Some(Ok(
                        self.fail(i, "the VM failed while the stream was paused".into())
                    ));
                }
                _ => {}
            }
        }
        outcome
    }

    fn alive(&self, i: usize) -> bool {
        self.members[i]
            .slot
            .active()
            .is_some_and(|(pin, generation, _)| {
                self.members[i]
                    .plugin
                    .with_vm(pin.replica(), Some(generation), |_, _| ((), None))
                    .is_ok()
            })
    }

    /// Makes the complete response for a local reply: default headers, the filter's
    /// headers over them, then the response callbacks of every plugin that saw the request
    /// (in reverse order); a second local reply from them is ignored, as is a pause.
    pub fn local_response(&mut self, reply: LocalReply) -> LocalResponse {
        self.around(|s| s.respond(reply, false))
    }

    /// Makes the complete response for a route's direct response, which is not a plugin's
    /// reply: as [`HttpStream::local_response`], except that a plugin may still replace it
    /// with a local reply of its own from the response callbacks (as in Envoy, where the
    /// router's direct response passes the filters like an upstream response).
    pub fn direct_response(&mut self, reply: LocalReply) -> LocalResponse {
        self.around(|s| s.respond(reply, true))
    }

    fn respond(&mut self, reply: LocalReply, direct: bool) -> LocalResponse {
        self.replied = !direct;
        self.direct = direct;
        self.paused = None;
        self.in_local_reply = true;
        self.data.info.response_details = Some(reply.details.clone());
        let mut status = reply.status;
        let mut body = reply.body;
        let mut headers = HeaderList::new();
        let mut extra: Vec<(Bytes, Bytes)> = Vec::new();
        if let Some(grpc) = reply.grpc_status {
            status = 200;
            extra.push((
                Bytes::from_static(b"content-type"),
                Bytes::from_static(b"application/grpc"),
            ));
            extra.push((
                Bytes::from_static(b"grpc-status"),
                Bytes::from(grpc.to_string()),
            ));
            if !body.is_empty() {
                extra.push((Bytes::from_static(b"grpc-message"), body.clone()));
            }
            body = Bytes::new();
        } else if !body.is_empty() {
            extra.push((
                Bytes::from_static(b"content-type"),
                Bytes::from_static(b"text/plain"),
            ));
        }
        headers.push(":status", Bytes::from(status.to_string()));
        for (k, v) in extra {
            headers.push(&k, v);
        }
        for (k, v) in &reply.headers {
            if headers.get(k).is_some() && (&k[..] == b"content-type" || &k[..] == b"grpc-status") {
                headers.replace(k, v);
            } else {
                headers.add(k, v);
            }
        }
        headers.remove(b"content-length");
        headers.push("content-length", Bytes::from(body.len().to_string()));
        headers.mark_clean();
        self.data.response_headers = headers;
        self.data.info.response_code = Some(status);
        let headers_outcome = self.run_headers(Dir::Response, 0, body.is_empty());
        if let (true, HeadersOutcome::LocalReply(r)) = (self.direct, &headers_outcome) {
            return self.respond(r.clone(), false);
        }
        if !body.is_empty()
            && let BodyOutcome::Forward(b) =
                self.run_body(Dir::Response, 0, BytesMut::from(body.clone()), true)
        {
            body = b;
        }
        self.direct = false;
        self.in_local_reply = false;
        let headers = &mut self.data.response_headers;
        if let Some(s) = headers.status() {
            status = s;
        }
        headers.replace(b"content-length", body.len().to_string().as_bytes());
        self.data.info.response_code = Some(status);
        self.data.info.response_body_bytes = body.len() as u64;
        LocalResponse {
            status,
            headers: self.data.response_headers.clone(),
            body,
        }
    }

    /// Ends the stream: `proxy_on_log` for every plugin context, then `proxy_on_done` and
    /// `proxy_on_delete` for each (Envoy's HTTP order). A plugin the request never reached gets its
    /// context created just for this, as in Envoy. Runs once; `Drop` is the backstop.
    pub fn finish(&mut self) {
        self.unpark();
        if self.finished {
            return;
        }
        self.finished = true;
        let info = &mut self.data.info;
        if let (Some(started), None) = (info.started, info.duration) {
            info.duration = Some(started.elapsed());
        }
        // As Envoy: `proxy_on_log` for every plugin (the access-log pass), then
        // `proxy_on_done` and `proxy_on_delete` for each. With one plugin the two passes
        // are one visit to its VM.
        let single = self.members.len() == 1;
        for i in 0..self.members.len() {
            if matches!(self.members[i].slot, Slot::NotCreated) && self.ensure_context(i).is_err() {
                continue;
            }
            self.end_callbacks(i, if single { End::Both } else { End::Log });
        }
        for i in 0..self.members.len() {
            if !single {
                self.end_callbacks(i, End::DoneDelete);
            }
            if matches!(self.members[i].slot, Slot::Active { .. }) {
                self.members[i].slot = Slot::Ended;
            }
        }
        // Tests and operators wait for this line to know every end callback has run.
        tracing::debug!(plugins = self.members.len(), "stream finished");
    }

    // ---- internals -------------------------------------------------------------------

    /// Member `i`'s `proxy_on_log`, its `proxy_on_done` and `proxy_on_delete` (after which
    /// its context is forgotten), or all three, as `which` says. A failure poisons the VM,
    /// so the member's context is gone and later calls find nothing to run.
    fn end_callbacks(&mut self, i: usize, which: End) {
        let member = &self.members[i];
        let Some((pin, generation, context_id)) = member.slot.active() else {
            return;
        };
        let plugin = &member.plugin;
        let data = &mut self.data;
        let ctx = context_id as i32;
        let _ = plugin.with_vm(pin.replica(), Some(generation), |vm, _| {
            let metrics = plugin.metrics();
            let cb = vm.cb.clone();
            if which != End::DoneDelete {
                let failure = cb.log.as_ref().and_then(|f| {
                    end_call(
                        vm,
                        "proxy_on_log",
                        Phase::Log,
                        context_id,
                        data,
                        metrics,
                        |s| f.call(s, ctx),
                    )
                });
                if which == End::Log || failure.is_some() {
                    return ((), failure);
                }
            }
            let mut failure = cb.done.as_ref().and_then(|f| {
                end_call(
                    vm,
                    "proxy_on_done",
                    Phase::Done,
                    context_id,
                    data,
                    metrics,
                    |s| f.call(s, ctx).map(drop),
                )
            });
            if failure.is_none() {
                failure = cb.delete.as_ref().and_then(|f| {
                    end_call(
                        vm,
                        "proxy_on_delete",
                        Phase::Done,
                        context_id,
                        data,
                        metrics,
                        |s| f.call(s, ctx),
                    )
                });
            }
            vm.store.data_mut().streams.remove(&context_id);
            ((), failure)
        });
    }

    /// Runs a callback step with the data at home, and parks it again if a plugin paused.
    fn around<R>(&mut self, step: impl FnOnce(&mut Self) -> R) -> R {
        self.unpark();
        let outcome = step(self);
        self.park();
        outcome
    }

    /// Leaves the data with the plugins while a plugin pauses the stream, so that another
    /// of its contexts (a root answering a callout) can reach it.
    fn park(&mut self) {
        let Some(p) = self.paused else { return };
        if self.parked {
            return;
        }
        let phase = match (p.dir, p.stage) {
            (Dir::Request, Stage::Headers) => Phase::RequestHeaders,
            (Dir::Response, Stage::Headers) => Phase::ResponseHeaders,
            (Dir::Request, Stage::Body) => Phase::RequestBody,
            (Dir::Response, Stage::Body) => Phase::ResponseBody,
            (Dir::Request, Stage::Trailers) => Phase::RequestTrailers,
            (Dir::Response, Stage::Trailers) => Phase::ResponseTrailers,
        };
        self.signal.park(phase, std::mem::take(&mut self.data));
        self.parked = true;
    }

    /// Takes the data back (waiting while another context's callback uses it).
    fn unpark(&mut self) {
        if std::mem::take(&mut self.parked)
            && let Some(data) = self.signal.unpark()
        {
            self.data = data;
        }
    }

    fn ensure_context(&mut self, i: usize) -> Result<(), Effect> {
        if !matches!(self.members[i].slot, Slot::NotCreated) {
            return Ok(());
        }
        let plugin = self.members[i].plugin.clone();
        let pin = match plugin.checkout() {
            Ok(pin) => pin,
            Err(Gone::Unavailable(reason)) => return Err(self.fail(i, reason)),
            Err(Gone::Dead) => return Err(self.fail(i, "the VM is gone".into())),
        };
        // What a log-only plugin asks for later (from a callout's answer) is only logged.
        let signal = if plugin.log_only() {
            Arc::new(StreamSignal::log_only(plugin.info.clone()))
        } else {
            self.signal.clone()
        };
        let created = plugin.with_vm(pin.replica(), None, |vm, generation| {
            let state = vm.store.data_mut();
            let id = state.next_context_id;
            state.next_context_id += 1;
            let root = state.root_context_id;
            state.streams.insert(id, signal);
            let cb = vm.cb.clone();
            let result = match &cb.context_create {
                Some(f) => {
                    vm.call(
                        "proxy_on_context_create",
                        id,
                        Phase::Start,
                        None,
                        plugin.metrics(),
                        |s| f.call(s, (id as i32, root as i32)),
                    )
                    .result
                }
                None => Ok(()),
            };
            match result {
                Ok(()) => (Ok((generation, id)), None),
                Err(e) => {
                    let message = format!("proxy_on_context_create: {e:?}");
                    (Err(message.clone()), Some(message))
                }
            }
        });
        match created {
            Ok(Ok((generation, context_id))) => {
                self.members[i].slot = Slot::Active {
                    pin,
                    generation,
                    context_id,
                };
                Ok(())
            }
            Ok(Err(reason)) | Err(Gone::Unavailable(reason)) => Err(self.fail(i, reason)),
            Err(Gone::Dead) => Err(self.fail(i, "the VM is gone".into())),
        }
    }

    /// Applies the plugin's failure policy after a trap or an unusable VM.
    fn fail(&mut self, i: usize, reason: String) -> Effect {
        let plugin = self.members[i].plugin.clone();
        tracing::error!(plugin = %plugin.name(), policy = %plugin.failure_policy(), "plugin failed for this stream: {reason}");
        plugin.info.failures.record(&reason);
        match plugin.failure_policy() {
            FailurePolicy::FailOpen => {
                self.members[i].slot = Slot::Skipped;
                Effect::Skip
            }
            FailurePolicy::FailClosed | FailurePolicy::FailReload => {
                self.members[i].slot = Slot::Failed;
                if self.replied || self.in_local_reply {
                    Effect::Skip
                } else {
                    self.replied = true;
                    Effect::Reply(wasm_failure_reply())
                }
            }
        }
    }

    fn invoke<X>(
        &mut self,
        i: usize,
        callback: &'static str,
        phase: Phase,
        select: impl for<'a> FnOnce(&'a Callbacks) -> Option<&'a X>,
        run: impl FnOnce(&X, &mut Store<HostState>, i32) -> wasmtime::Result<i32>,
    ) -> Invoked {
        // Borrowed field by field: the member is read while the stream's data is lent to
        // the call.
        let member = &self.members[i];
        let Some((pin, generation, context_id)) = member.slot.active() else {
            return Invoked::NotExported;
        };
        let plugin = &member.plugin;
        // A log-only plugin works on the stream as it is, and its changes are undone.
        let before = plugin.log_only().then(|| Snapshot::take(&self.data));
        let data = &mut self.data;
        let r = plugin.with_vm(pin.replica(), Some(generation), |vm, _| {
            let cb = vm.cb.clone();
            let Some(x) = select(&cb) else {
                return (Invoked::NotExported, None);
            };
            let called = vm.call(
                callback,
                context_id,
                phase,
                Some(data),
                plugin.metrics(),
                |s| run(x, s, context_id as i32),
            );
            match called.result {
                Ok(raw) => (Invoked::Ran(raw, called.actions), None),
                Err(e) => {
                    let message = format!("{callback}: {e:?}");
                    (Invoked::Failed(message.clone()), Some(message))
                }
            }
        });
        let invoked = match r {
            Ok(invoked) => invoked,
            Err(Gone::Dead) => {
                Invoked::Failed(format!("{callback}: the VM of this stream failed earlier"))
            }
            Err(Gone::Unavailable(m)) => Invoked::Failed(m),
        };
        match (before, invoked) {
            (Some(before), Invoked::Ran(raw, actions)) => {
                let logger = LogOnly {
                    plugin: &plugin.info,
                    callback,
                };
                before.restore(&mut self.data, &logger);
                if raw != 0 {
                    logger.would("pause", format_args!("stop iteration (status {raw})"));
                }
                for action in actions {
                    logger.action(&action);
                }
                Invoked::Ran(0, Vec::new())
            }
            (Some(before), invoked) => {
                before.restore_quietly(&mut self.data);
                invoked
            }
            (None, invoked) => invoked,
        }
    }

    fn run_headers(&mut self, dir: Dir, start: usize, eos: bool) -> HeadersOutcome {
        let n = self.members.len();
        for pos in start..n {
            let i = index(dir, pos, n);
            if dir == Dir::Request
                && let Err(effect) = self.ensure_context(i)
            {
                match effect {
                    Effect::Skip => continue,
                    Effect::Reply(r) => return HeadersOutcome::LocalReply(r),
                }
            }
            let (phase, name, count) = match dir {
                Dir::Request => (
                    Phase::RequestHeaders,
                    "proxy_on_request_headers",
                    self.data.request_headers.len(),
                ),
                Dir::Response => (
                    Phase::ResponseHeaders,
                    "proxy_on_response_headers",
                    self.data.response_headers.len(),
                ),
            };
            let invoked = self.invoke(
                i,
                name,
                phase,
                |cb| match dir {
                    Dir::Request => cb.request_headers.as_ref(),
                    Dir::Response => cb.response_headers.as_ref(),
                },
                |f, s, ctx| match f {
                    HeadersFn::V1(f) => f.call(s, (ctx, count as i32)),
                    HeadersFn::V2(f) => f.call(s, (ctx, count as i32, i32::from(eos))),
                },
            );
            match invoked {
                Invoked::NotExported => {}
                Invoked::Failed(reason) => match self.fail(i, reason) {
                    Effect::Skip => {}
                    Effect::Reply(r) => return HeadersOutcome::LocalReply(r),
                },
                Invoked::Ran(raw, actions) => {
                    let mut go_on = HeadersAction::from_result(raw as u32, false).is_continue();
                    for action in actions {
                        match action {
                            Action::LocalReply(r)
                                if !self.replied && (!self.in_local_reply || self.direct) =>
                            {
                                self.replied = true;
                                return HeadersOutcome::LocalReply(r);
                            }
                            Action::Close(_) if !self.in_local_reply => {
                                return HeadersOutcome::Reset;
                            }
                            Action::Continue(t) if t == dir.stream_type() => go_on = true,
                            _ => {}
                        }
                    }
                    if !go_on && !self.in_local_reply {
                        self.paused = Some(Paused {
                            dir,
                            stage: Stage::Headers,
                            pos,
                            eos,
                        });
                        return HeadersOutcome::Paused;
                    }
                }
            }
        }
        HeadersOutcome::Continue
    }

    fn run_body(&mut self, dir: Dir, start: usize, mut data: BytesMut, eos: bool) -> BodyOutcome {
        for pos in start..self.members.len() {
            match self.body_at(dir, pos, data, eos) {
                Step::Next(out) => data = out,
                Step::Held => return BodyOutcome::Held,
                Step::End(outcome) => return outcome,
            }
        }
        BodyOutcome::Forward(data.freeze())
    }

    /// Runs the body callback of the plugin at chain position `pos` on `data` (added to
    /// what it buffers).
    fn body_at(&mut self, dir: Dir, pos: usize, data: BytesMut, eos: bool) -> Step {
        let n = self.members.len();
        let d = dir.index();
        let i = index(dir, pos, n);
        let handles = match dir {
            Dir::Request => self.members[i].plugin.handles_request_body(),
            Dir::Response => self.members[i].plugin.handles_response_body(),
        };
        if !handles || !matches!(self.members[i].slot, Slot::Active { .. }) {
            return Step::Next(data);
        }
        let cap = self.members[i].plugin.info.limits.body_bytes;
        let buf = &mut self.members[i].bufs[d];
        let held = buf.len() + data.len();
        if !buf.is_empty() && held as u64 > cap {
            // The plugin buffers and the next chunk would take it past its cap: it is not
            // called again with more than it may hold.
            return self.body_too_large(dir, i, held);
        }
        if buf.is_empty() {
            *buf = data;
        } else {
            buf.extend_from_slice(&data);
        }
        self.data.body = std::mem::take(buf);
        let size = self.data.body.len() as i32;
        let (phase, name) = match dir {
            Dir::Request => (Phase::RequestBody, "proxy_on_request_body"),
            Dir::Response => (Phase::ResponseBody, "proxy_on_response_body"),
        };
        let invoked = self.invoke(
            i,
            name,
            phase,
            |cb| match dir {
                Dir::Request => cb.request_body.as_ref(),
                Dir::Response => cb.response_body.as_ref(),
            },
            |f, s, ctx| f.call(s, (ctx, size, i32::from(eos))),
        );
        let body = std::mem::take(&mut self.data.body);
        match invoked {
            Invoked::NotExported => Step::Next(body),
            Invoked::Failed(reason) => match self.fail(i, reason) {
                Effect::Skip => Step::Next(body),
                Effect::Reply(r) => Step::End(BodyOutcome::LocalReply(r)),
            },
            Invoked::Ran(raw, actions) => {
                let mut go_on = BodyAction::from_result(raw as u32).is_continue();
                for action in actions {
                    match action {
                        Action::LocalReply(r) if !self.replied && !self.in_local_reply => {
                            self.replied = true;
                            return Step::End(BodyOutcome::LocalReply(r));
                        }
                        Action::Close(_) if !self.in_local_reply => {
                            return Step::End(BodyOutcome::Reset);
                        }
                        Action::Continue(t) if t == dir.stream_type() => go_on = true,
                        _ => {}
                    }
                }
                if go_on || self.in_local_reply {
                    Step::Next(body)
                } else if body.len() as u64 > cap {
                    self.body_too_large(dir, i, body.len())
                } else {
                    self.members[i].bufs[d] = body;
                    self.paused = Some(Paused {
                        dir,
                        stage: Stage::Body,
                        pos,
                        eos,
                    });
                    Step::Held
                }
            }
        }
    }

    /// The plugin at `i` would buffer `held` body bytes, past its `limits.body`: Envoy's
    /// answer to a filter buffer over its limit. A request gets the local reply 413
    /// `request_payload_too_large` (through the response callbacks, as Envoy's local
    /// replies); a response the ready-made 503 `response_payload_too_large` (Envoy: 500),
    /// which an adapter that sent the response headers already turns into an abort. What
    /// the plugin held is dropped.
    fn body_too_large(&mut self, dir: Dir, i: usize, held: usize) -> Step {
        self.members[i].bufs[dir.index()] = BytesMut::new();
        self.paused = None;
        let (callback, side, status, details) = match dir {
            Dir::Request => (
                "proxy_on_request_body",
                "request",
                413,
                "request_payload_too_large",
            ),
            Dir::Response => (
                "proxy_on_response_body",
                "response",
                503,
                "response_payload_too_large",
            ),
        };
        let context_id = match self.members[i].slot {
            Slot::Active { context_id, .. } => context_id,
            _ => 0,
        };
        self.members[i].plugin.info.cap_reached(
            Cap::Body,
            context_id,
            callback,
            format_args!(
                "the plugin buffered {held} bytes of the {side} body; the stream gets {status} {details}"
            ),
        );
        if self.replied {
            return Step::End(BodyOutcome::Reset);
        }
        self.replied = true;
        Step::End(match dir {
            Dir::Request => BodyOutcome::LocalReply(LocalReply {
                status,
                details: details.to_string(),
                body: Bytes::from_static(b"Payload Too Large"),
                headers: Vec::new(),
                grpc_status: None,
            }),
            Dir::Response => {
                let body = Bytes::from_static(b"Service Unavailable");
                let mut headers = HeaderList::new();
                headers.push(":status", Bytes::from(status.to_string()));
                headers.push("content-type", Bytes::from_static(b"text/plain"));
                headers.push("content-length", Bytes::from(body.len().to_string()));
                let info = &mut self.data.info;
                info.response_code = Some(status);
                info.response_details = Some(details.to_string());
                BodyOutcome::ResponseTooLarge(LocalResponse {
                    status,
                    headers,
                    body,
                })
            }
        })
    }

    /// The trailer round from chain position `start`. `carry` is body data released by the
    /// plugins before `start`: each later plugin first gets it in its body callback
    /// (`end_of_stream` false: trailers follow), then its trailer callback; whatever it
    /// buffered goes on once that callback continued (Envoy's order).
    fn run_trailers(&mut self, dir: Dir, start: usize, mut carry: BytesMut) -> TrailersOutcome {
        let n = self.members.len();
        let d = dir.index();
        for pos in start..n {
            let i = index(dir, pos, n);
            if !carry.is_empty() {
                match self.body_at(dir, pos, carry, false) {
                    Step::Next(out) => carry = out,
                    // Buffering on: the trailers come to this plugin next.
                    Step::Held => {
                        self.paused = None;
                        carry = BytesMut::new();
                    }
                    Step::End(BodyOutcome::LocalReply(r)) => return self.trailers_reply(dir, r),
                    Step::End(_) => return TrailersOutcome::Reset,
                }
            }
            let (phase, name, count) = match dir {
                Dir::Request => (
                    Phase::RequestTrailers,
                    "proxy_on_request_trailers",
                    self.data.request_trailers.len(),
                ),
                Dir::Response => (
                    Phase::ResponseTrailers,
                    "proxy_on_response_trailers",
                    self.data.response_trailers.len(),
                ),
            };
            let invoked = self.invoke(
                i,
                name,
                phase,
                |cb| match dir {
                    Dir::Request => cb.request_trailers.as_ref(),
                    Dir::Response => cb.response_trailers.as_ref(),
                },
                |f, s, ctx| f.call(s, (ctx, count as i32)),
            );
            match invoked {
                Invoked::NotExported => {}
                Invoked::Failed(reason) => match self.fail(i, reason) {
                    Effect::Skip => {}
                    Effect::Reply(r) => return self.trailers_reply(dir, r),
                },
                Invoked::Ran(raw, actions) => {
                    let mut go_on = TrailersAction::from_result(raw as u32).is_continue();
                    for action in actions {
                        match action {
                            Action::LocalReply(r) if !self.replied && !self.in_local_reply => {
                                self.replied = true;
                                return self.trailers_reply(dir, r);
                            }
                            Action::Close(_) => return TrailersOutcome::Reset,
                            Action::Continue(t) if t == dir.stream_type() => go_on = true,
                            _ => {}
                        }
                    }
                    if !go_on {
                        self.trailer_carry = carry;
                        self.paused = Some(Paused {
                            dir,
                            stage: Stage::Trailers,
                            pos,
                            eos: false,
                        });
                        return TrailersOutcome::Paused;
                    }
                }
            }
            // What this plugin held back goes on after the data it let through.
            let held = std::mem::take(&mut self.members[i].bufs[d]);
            carry.extend_from_slice(&held);
        }
        TrailersOutcome::Continue(carry.freeze())
    }

    /// A local reply decided in a trailer round: possible while the response has not
    /// started (request trailers); afterwards the stream can only be reset, as in Envoy.
    fn trailers_reply(&mut self, dir: Dir, reply: LocalReply) -> TrailersOutcome {
        match dir {
            Dir::Request => TrailersOutcome::LocalReply(reply),
            Dir::Response => {
                tracing::warn!(
                    "a plugin sent a local reply from a response trailer callback after the response headers were sent; the stream is reset"
                );
                TrailersOutcome::Reset
            }
        }
    }
}

/// What a log-only plugin could change: the stream's maps and the body buffer.
struct Snapshot {
    request_headers: HeaderList,
    response_headers: HeaderList,
    request_trailers: HeaderList,
    response_trailers: HeaderList,
    body: BytesMut,
    route_cache_cleared: bool,
}

impl Snapshot {
    fn take(data: &StreamData) -> Snapshot {
        Snapshot {
            request_headers: data.request_headers.clone(),
            response_headers: data.response_headers.clone(),
            request_trailers: data.request_trailers.clone(),
            response_trailers: data.response_trailers.clone(),
            body: data.body.clone(),
            route_cache_cleared: data.route_cache_cleared,
        }
    }

    /// Puts the stream back as it was, logging and counting what the plugin changed.
    fn restore(self, data: &mut StreamData, logger: &LogOnly<'_>) {
        let maps = [
            (
                "request_headers",
                &self.request_headers,
                &data.request_headers,
            ),
            (
                "response_headers",
                &self.response_headers,
                &data.response_headers,
            ),
            (
                "request_trailers",
                &self.request_trailers,
                &data.request_trailers,
            ),
            (
                "response_trailers",
                &self.response_trailers,
                &data.response_trailers,
            ),
        ];
        for (what, before, after) in maps {
            if !before.iter().eq(after.iter()) {
                logger.would(
                    what,
                    format_args!("change {what}: {}", header_diff(before, after)),
                );
            }
        }
        if self.body != data.body {
            logger.would(
                "body",
                format_args!(
                    "change the body ({} bytes into {} bytes)",
                    self.body.len(),
                    data.body.len()
                ),
            );
        }
        self.restore_quietly(data);
    }

    fn restore_quietly(self, data: &mut StreamData) {
        data.request_headers = self.request_headers;
        data.response_headers = self.response_headers;
        data.request_trailers = self.request_trailers;
        data.response_trailers = self.response_trailers;
        data.body = self.body;
        data.route_cache_cleared = self.route_cache_cleared;
    }
}

/// `+name: value`, `-name`, `~name: value` for what differs between two maps.
fn header_diff(before: &HeaderList, after: &HeaderList) -> String {
    let show = |b: &Bytes| String::from_utf8_lossy(b).into_owned();
    let mut parts = Vec::new();
    for (name, value) in after.iter() {
        match before.get(name) {
            None => parts.push(format!("+{}: {}", show(name), show(value))),
            Some(old) if old != value => parts.push(format!("~{}: {}", show(name), show(value))),
            Some(_) => {}
        }
    }
    for (name, _) in before.iter() {
        if after.get(name).is_none() {
            parts.push(format!("-{}", show(name)));
        }
    }
    if parts.is_empty() {
        "order or repeated values".to_string()
    } else {
        parts.join(", ")
    }
}

/// Logs and counts what a log-only plugin would have done.
pub(crate) struct LogOnly<'a> {
    pub plugin: &'a PluginInfo,
    pub callback: &'static str,
}

impl LogOnly<'_> {
    pub fn would(&self, what: &str, detail: std::fmt::Arguments<'_>) {
        tracing::warn!(plugin = %self.plugin.name, callback = self.callback, would = what, "log-only: the plugin would {detail}");
        if let Some(m) = &self.plugin.host_metrics {
            m.log_only(what);
        }
    }

    /// An action the plugin asked for (a continue is nothing to report).
    pub fn action(&self, action: &Action) {
        match action {
            Action::LocalReply(r) => self.would(
                "local_reply",
                format_args!(
                    "send a local reply {} ({}{})",
                    r.status,
                    r.details,
                    if r.body.is_empty() {
                        String::new()
                    } else {
                        format!(", body {:?}", String::from_utf8_lossy(&r.body))
                    }
                ),
            ),
            Action::Close(t) => self.would("close", format_args!("close the {t:?} stream")),
            Action::Continue(_) | Action::VmFailed => {}
        }
    }
}

/// Runs one end-of-stream callback; returns the failure text if it trapped.
fn end_call(
    vm: &mut crate::vm::Vm,
    name: &'static str,
    phase: Phase,
    context_id: u32,
    data: &mut Box<StreamData>,
    metrics: Option<&crate::metrics::PluginMetrics>,
    f: impl FnOnce(&mut Store<HostState>) -> wasmtime::Result<()>,
) -> Option<String> {
    vm.call(name, context_id, phase, Some(data), metrics, f)
        .result
        .err()
        .map(|e| format!("{name}: {e:?}"))
}

impl Paused {
    fn pos_index(&self, n: usize) -> usize {
        index(self.dir, self.pos, n)
    }
}

/// The member at chain position `pos` for a direction (response runs in reverse).
fn index(dir: Dir, pos: usize, n: usize) -> usize {
    match dir {
        Dir::Request => pos,
        Dir::Response => n - 1 - pos,
    }
}

/// Which end-of-stream callbacks [`HttpStream::end_callbacks`] runs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum End {
    /// `proxy_on_log`.
    Log,
    /// `proxy_on_done`, then `proxy_on_delete`.
    DoneDelete,
    /// All three, in that order (a chain of one plugin).
    Both,
}

impl Drop for HttpStream {
    fn drop(&mut self) {
        self.finish();
    }
}
