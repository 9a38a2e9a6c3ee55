//! Root-context services: each VM replica has a root driver, a task the embedding proxy
//! runs (on the replica's worker thread where it can), that fires `proxy_on_tick`, runs
//! callout transports and delivers their results, and delivers `proxy_on_queue_ready`.
//!
//! Hostcalls never call back into the guest: they post a [`RootEvent`] to the replica's
//! [`RootLink`], and the driver makes the callback later, taking the replica's VM for that
//! one call like a stream does. Every result carries the generation of the VM that asked,
//! so a VM replaced after a failure never sees its predecessor's tokens.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;

use wasmbridge_abi::Status;

use crate::callout::{BoxFuture, GrpcInbound, GrpcOutbound, HttpCallFailure, HttpCallResponse};
use crate::context::{Delivery, Phase};
use crate::metrics::PluginMetrics;
use crate::plugin::Plugin;
use crate::pool::Replica;
use crate::vm::Vm;

/// Something for a replica's root context to do.
pub(crate) enum RootEvent {
    /// The tick period changed (or the VM was replaced): re-arm the timer.
    TickChanged,
    /// Run a callout transport.
    Spawn(BoxFuture<()>),
    /// An item was added to a queue this replica's root registered.
    QueueReady { generation: u64, queue: u32 },
    /// An HTTP call finished.
    Http {
        generation: u64,
        token: u32,
        result: Result<HttpCallResponse, HttpCallFailure>,
    },
    /// A gRPC call or stream delivered something.
    Grpc {
        generation: u64,
        token: u32,
        event: GrpcInbound,
    },
}

/// How much root work is queued or running for a replica, and a wake-up for whoever
/// waits for it to settle.
#[derive(Default)]
pub(crate) struct Work {
    pending: AtomicUsize,
    settled: Notify,
}

impl Work {
    fn start(&self) {
        self.pending.fetch_add(1, Ordering::AcqRel);
    }

    fn finish(&self) {
        if self.pending.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.settled.notify_waiters();
        }
    }

    fn idle(&self) -> bool {
        self.pending.load(Ordering::Acquire) == 0
    }
}

/// Posts events to a replica's root driver, counting them as work in flight.
#[derive(Clone)]
pub(crate) struct RootSender {
    events: mpsc::UnboundedSender<RootEvent>,
    work: Arc<Work>,
}

impl RootSender {
    /// Posts an event; lost only when the replica is gone.
    pub fn send(&self, event: RootEvent) {
        self.work.start();
        if self.events.send(event).is_err() {
            self.work.finish();
        }
    }
}

/// A replica's end of its root driver: where hostcalls post events, and the tick period.
pub(crate) struct RootLink {
    sender: RootSender,
    tick: Mutex<Option<Duration>>,
}

impl RootLink {
    pub fn new() -> (Arc<RootLink>, mpsc::UnboundedReceiver<RootEvent>) {
        let (events, rx) = mpsc::unbounded_channel();
        (
            Arc::new(RootLink {
                sender: RootSender {
                    events,
                    work: Arc::default(),
                },
                tick: Mutex::new(None),
            }),
            rx,
        )
    }

    /// Posts an event; lost only when the replica is gone.
    pub fn post(&self, event: RootEvent) {
        self.sender.send(event);
    }

    /// A sender transports use to post their results.
    pub fn sender(&self) -> RootSender {
        self.sender.clone()
    }

    /// The work counter the driver settles.
    pub fn work(&self) -> Arc<Work> {
        self.sender.work.clone()
    }

    /// True when no event is queued, no transport runs and no tick is set.
    pub fn is_settled(&self) -> bool {
        self.sender.work.idle() && self.tick().is_none()
    }

    /// Completes once [`RootLink::is_settled`] holds.
    pub async fn settled(&self) {
        loop {
            let notified = self.sender.work.settled.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.is_settled() {
                return;
            }
            notified.await;
        }
    }

    /// Sets the tick period (`None` stops ticking) and re-arms the driver's timer.
    pub fn set_tick(&self, period: Option<Duration>) {
        *self.tick.lock().unwrap_or_else(|p| p.into_inner()) = period;
        self.post(RootEvent::TickChanged);
    }

    pub fn tick(&self) -> Option<Duration> {
        *self.tick.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A callout in flight, by token, in the VM that made it.
pub(crate) enum Outstanding {
    Http,
    Grpc {
        outbound: mpsc::UnboundedSender<GrpcOutbound>,
        /// A `proxy_grpc_call`: one `on_grpc_receive` on success, else `on_grpc_close`.
        unary: bool,
        /// A unary call's reply, delivered once the call ended with OK.
        held: Option<Bytes>,
    },
}

/// A VM's callouts in flight, by token, with the context that made each, and how many
/// each context has (what `limits.callouts` caps).
#[derive(Default)]
pub(crate) struct InFlight {
    by_token: HashMap<u32, (u32, Outstanding)>,
    by_context: HashMap<u32, u32>,
}

impl InFlight {
    /// Records a callout `context` made.
    pub fn insert(&mut self, token: u32, context: u32, callout: Outstanding) {
        if let Some((old, _)) = self.by_token.insert(token, (context, callout)) {
            self.forget(old);
        }
        *self.by_context.entry(context).or_default() += 1;
    }

    /// Forgets a callout that ended.
    pub fn remove(&mut self, token: &u32) -> Option<Outstanding> {
        let (context, callout) = self.by_token.remove(token)?;
        self.forget(context);
        Some(callout)
    }

    pub fn get(&self, token: &u32) -> Option<&Outstanding> {
        self.by_token.get(token).map(|(_, c)| c)
    }

    pub fn get_mut(&mut self, token: &u32) -> Option<&mut Outstanding> {
        self.by_token.get_mut(token).map(|(_, c)| c)
    }

    /// How many callouts `context` has in flight.
    pub fn of_context(&self, context: u32) -> u32 {
        self.by_context.get(&context).copied().unwrap_or(0)
    }

    fn forget(&mut self, context: u32) {
        if let Some(n) = self.by_context.get_mut(&context) {
            *n -= 1;
            if *n == 0 {
                self.by_context.remove(&context);
            }
        }
    }
}

/// How late a tick may be and still keep its place in the cadence.
const CATCH_UP: Duration = Duration::from_millis(5);

/// Runs the root services of `plugin`'s root context in a replica (tenant `tenant` of
/// its VM) until the plugin or the replica is dropped.
pub(crate) async fn drive(
    plugin: Weak<Plugin>,
    replica: Weak<Replica>,
    tenant: usize,
    mut events: mpsc::UnboundedReceiver<RootEvent>,
) {
    // Only the work counter is kept, so that dropping the replica closes the channel and
    // ends the driver.
    let Some(work) = replica.upgrade().map(|r| r.links[tenant].work()) else {
        return;
    };
    let mut next_tick: Option<Instant> = None;
    loop {
        let sleep = async {
            match next_tick {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            event = events.recv() => {
                let Some(event) = event else { return };
                let (Some(p), Some(r)) = (plugin.upgrade(), replica.upgrade()) else { return };
                match event {
                    RootEvent::TickChanged => {
                        next_tick = r.links[tenant].tick().map(|period| Instant::now() + period);
                        work.finish();
                    }
                    RootEvent::Spawn(task) => {
                        // The task counts as work until it ended (its result, posted
                        // before that, counts on its own).
                        let work = work.clone();
                        tokio::spawn(async move {
                            task.await;
                            work.finish();
                        });
                    }
                    other => {
                        p.deliver(&r, other);
                        work.finish();
                    }
                }
            }
            () = sleep => {
                let (Some(p), Some(r)) = (plugin.upgrade(), replica.upgrade()) else { return };
                let scheduled = next_tick.unwrap_or_else(Instant::now);
                p.tick(&r);
                // Keep the cadence: the next tick is one period after this one was due —
                // at once when that is already past by a little (tokio's timer rounds up
                // to whole milliseconds, so a short period always wakes late) — or one
                // period from now after a longer overrun, which is skipped rather than
                // made up with a burst of ticks.
                next_tick = r.links[tenant].tick().map(|period| {
                    let due = scheduled + period;
                    let now = Instant::now();
                    if now < due + period.max(CATCH_UP) { due } else { now + period }
                });
            }
        }
    }
}

/// Shared queues (reference §6.3): identity (vm_id, name), ids process-wide (per
/// [`crate::Runtime`]); the last root context to register a queue is told of each
/// enqueue.
#[derive(Default)]
pub(crate) struct Queues {
    inner: Mutex<QueuesInner>,
}

#[derive(Default)]
struct QueuesInner {
    by_name: HashMap<(String, Vec<u8>), u32>,
    queues: HashMap<u32, Queue>,
    last_id: u32,
}

#[derive(Default)]
struct Queue {
    items: VecDeque<Bytes>,
    owner: Option<QueueOwner>,
}

/// The root context a queue notifies.
pub(crate) struct QueueOwner {
    pub link: Weak<RootLink>,
    pub generation: u64,
}

/// The queue id does not exist.
pub(crate) struct NoSuchQueue;

impl Queues {
    fn lock(&self) -> std::sync::MutexGuard<'_, QueuesInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Creates or opens the queue (vm_id, name) and makes `owner` its receiver.
    pub fn register(&self, vm_id: &str, name: &[u8], owner: QueueOwner) -> u32 {
        let mut inner = self.lock();
        let key = (vm_id.to_string(), name.to_vec());
        let id = match inner.by_name.get(&key) {
            Some(&id) => id,
            None => {
                inner.last_id += 1;
                let id = inner.last_id;
                inner.by_name.insert(key, id);
                id
            }
        };
        inner.queues.entry(id).or_default().owner = Some(owner);
        id
    }

    /// The id of the queue (vm_id, name), if someone registered it.
    pub fn resolve(&self, vm_id: &str, name: &[u8]) -> Option<u32> {
        self.lock()
            .by_name
            .get(&(vm_id.to_string(), name.to_vec()))
            .copied()
    }

    /// Appends `value` and tells the owner (one notification per item).
    pub fn enqueue(&self, id: u32, value: Bytes) -> Result<(), NoSuchQueue> {
        let mut inner = self.lock();
        let queue = inner.queues.get_mut(&id).ok_or(NoSuchQueue)?;
        queue.items.push_back(value);
        if let Some(owner) = &queue.owner
            && let Some(link) = owner.link.upgrade()
        {
            link.post(RootEvent::QueueReady {
                generation: owner.generation,
                queue: id,
            });
        }
        Ok(())
    }

    /// Takes the oldest item; `Ok(None)` when the queue is empty.
    pub fn dequeue(&self, id: u32) -> Result<Option<Bytes>, NoSuchQueue> {
        let mut inner = self.lock();
        let queue = inner.queues.get_mut(&id).ok_or(NoSuchQueue)?;
        Ok(queue.items.pop_front())
    }
}

/// The depth of every shared queue of a runtime, read when the registry is scraped:
/// `wasmbridge_shared_queue_depth{vm_id, queue}` (the queue name as lossy UTF-8).
#[derive(Clone)]
pub struct QueueMetrics {
    queues: Arc<Queues>,
    depth: prometheus::IntGaugeVec,
}

impl QueueMetrics {
    pub(crate) fn new(queues: Arc<Queues>) -> QueueMetrics {
        let depth = prometheus::IntGaugeVec::new(
            prometheus::Opts::new(
                "wasmbridge_shared_queue_depth",
                "Items waiting in each shared queue, by vm_id and queue name.",
            ),
            &["vm_id", "queue"],
        )
        .expect("a valid metric name and labels");
        QueueMetrics { queues, depth }
    }
}

impl prometheus::core::Collector for QueueMetrics {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        prometheus::core::Collector::desc(&self.depth)
    }

    fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        let inner = self.queues.lock();
        self.depth.reset();
        for ((vm_id, name), id) in &inner.by_name {
            let items = inner.queues.get(id).map_or(0, |q| q.items.len());
            self.depth
                .with_label_values(&[vm_id.as_str(), &String::from_utf8_lossy(name)])
                .set(items as i64);
        }
        drop(inner);
        prometheus::core::Collector::collect(&self.depth)
    }
}

/// What Envoy's router answers when a callout times out.
const TIMEOUT_BODY: &str = "upstream request timeout";

fn synthesized(status: u16, body: String) -> HttpCallResponse {
    HttpCallResponse {
        headers: vec![
            (
                Bytes::from_static(b":status"),
                Bytes::from(status.to_string()),
            ),
            (
                Bytes::from_static(b"content-length"),
                Bytes::from(body.len().to_string()),
            ),
            (
                Bytes::from_static(b"content-type"),
                Bytes::from_static(b"text/plain"),
            ),
        ],
        body: Bytes::from(body),
        trailers: Vec::new(),
    }
}

/// Runs `proxy_on_http_call_response` for `token`, as Envoy delivers each outcome: the
/// response; a synthesized 504 for a timeout and 503 for a connection failure; nothing
/// (0/0/0, status BROKEN_CONNECTION "reset") for a reset. Returns the VM's failure.
pub(crate) fn http_response(
    vm: &mut Vm,
    token: u32,
    result: Result<HttpCallResponse, HttpCallFailure>,
    metrics: Option<&PluginMetrics>,
) -> Option<String> {
    let state = vm.store.data_mut();
    if !matches!(state.callouts.remove(&token), Some(Outstanding::Http)) {
        return None;
    }
    // Only a reset has a status of its own; a synthesized answer is an answer.
    let mut status = None;
    let response = match result {
        Ok(r) => Some(r),
        Err(HttpCallFailure::Timeout) => Some(synthesized(504, TIMEOUT_BODY.to_string())),
        Err(HttpCallFailure::ConnectFailure(reason)) => Some(synthesized(
            503,
            format!(
                "upstream connect error or disconnect/reset before headers. reset reason: remote connection failure, transport failure reason: {reason}"
            ),
        )),
        Err(HttpCallFailure::Reset(reason)) => {
            tracing::debug!(plugin = %state.plugin.name, token, "http call reset: {reason}");
            status = Some((
                Status::BrokenConnection.code(),
                Bytes::from_static(b"reset"),
            ));
            None
        }
    };
    let cb = vm.cb.clone();
    let f = cb.http_call_response.as_ref()?;
    let root = vm.store.data().root_context_id;
    let delivery = response.map(|r| Delivery {
        grpc: false,
        headers: r.headers.into_iter().collect(),
        body: r.body,
        trailers: r.trailers.into_iter().collect(),
    });
    let counts = delivery.as_ref().map_or((0, 0, 0), |d| {
        (d.headers.len(), d.body.len(), d.trailers.len())
    });
    let called = vm.call(
        "proxy_on_http_call_response",
        root,
        Phase::HttpCallResponse,
        None,
        metrics,
        |s| {
            let call = &mut s.data_mut().call;
            call.delivery = Some(Box::new(delivery.unwrap_or_default()));
            call.status = status;
            f.call(
                s,
                (
                    root as i32,
                    token as i32,
                    counts.0 as i32,
                    counts.1 as i32,
                    counts.2 as i32,
                ),
            )
        },
    );
    called
        .result
        .err()
        .map(|e| format!("proxy_on_http_call_response: {e:?}"))
}

/// Delivers one gRPC event for `token` with Envoy's rules: a unary call gets exactly one
/// `proxy_on_grpc_receive` once it ended with OK and otherwise one `proxy_on_grpc_close`;
/// a stream gets initial metadata, messages, trailing metadata and the close. Returns the
/// VM's failure.
pub(crate) fn grpc_event(
    vm: &mut Vm,
    token: u32,
    event: GrpcInbound,
    metrics: Option<&PluginMetrics>,
) -> Option<String> {
    let callouts = &mut vm.store.data_mut().callouts;
    let Some(Outstanding::Grpc { unary, held, .. }) = callouts.get_mut(&token) else {
        return None;
    };
    let mut delivery = Delivery {
        grpc: true,
        ..Delivery::default()
    };
    let callbacks = vm.cb.clone();
    let cb = &*callbacks;
    // (callback name, export, its count argument, the status proxy_get_status answers)
    let (name, f, arg, status) = match (*unary, event) {
        (true, GrpcInbound::Message(message)) => {
            *held = Some(message);
            return None;
        }
        (true, GrpcInbound::InitialMetadata(_) | GrpcInbound::TrailingMetadata(_)) => {
            return None;
        }
        (true, GrpcInbound::Close { status, message }) => {
            let reply = held.take();
            callouts.remove(&token);
            match reply {
                Some(reply) if status == 0 => {
                    let size = reply.len() as u32;
                    delivery.body = reply;
                    (
                        "proxy_on_grpc_receive",
                        cb.grpc_receive.as_ref(),
                        size,
                        None,
                    )
                }
                // OK without a message is no answer to a unary call.
                None if status == 0 => close(cb, 13, "the server sent no message".into()),
                _ => close(cb, status, message),
            }
        }
        (false, GrpcInbound::InitialMetadata(pairs)) => {
            delivery.headers = pairs.into_iter().collect();
            (
                "proxy_on_grpc_receive_initial_metadata",
                cb.grpc_receive_initial_metadata.as_ref(),
                delivery.headers.len() as u32,
                None,
            )
        }
        (false, GrpcInbound::Message(message)) => {
            let size = message.len() as u32;
            delivery.body = message;
            (
                "proxy_on_grpc_receive",
                cb.grpc_receive.as_ref(),
                size,
                None,
            )
        }
        (false, GrpcInbound::TrailingMetadata(pairs)) => {
            delivery.trailers = pairs.into_iter().collect();
            (
                "proxy_on_grpc_receive_trailing_metadata",
                cb.grpc_receive_trailing_metadata.as_ref(),
                delivery.trailers.len() as u32,
                None,
            )
        }
        (false, GrpcInbound::Close { status, message }) => {
            callouts.remove(&token);
            close(cb, status, message)
        }
    };
    let f = f?;
    let root = vm.store.data().root_context_id;
    let called = vm.call(name, root, Phase::Grpc, None, metrics, |s| {
        let call = &mut s.data_mut().call;
        call.delivery = Some(Box::new(delivery));
        call.status = status;
        f.call(s, (root as i32, token as i32, arg as i32))
    });
    called.result.err().map(|e| format!("{name}: {e:?}"))
}

type GrpcFn<'a> = Option<&'a wasmtime::TypedFunc<(i32, i32, i32), ()>>;

/// `proxy_on_grpc_close` with `status`, whose message `proxy_get_status` answers.
fn close(
    cb: &crate::vm::Callbacks,
    status: u32,
    message: String,
) -> (&'static str, GrpcFn<'_>, u32, Option<(u32, Bytes)>) {
    (
        "proxy_on_grpc_close",
        cb.grpc_close.as_ref(),
        status,
        Some((status, Bytes::from(message))),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_flight_counts_per_context_until_each_callout_ends() {
        let mut calls = InFlight::default();
        calls.insert(4, 2, Outstanding::Http);
        calls.insert(8, 2, Outstanding::Http);
        calls.insert(12, 3, Outstanding::Http);
        assert_eq!((calls.of_context(2), calls.of_context(3)), (2, 1));
        assert!(matches!(calls.remove(&4), Some(Outstanding::Http)));
        assert!(calls.remove(&4).is_none(), "a token ends once");
        assert_eq!(calls.of_context(2), 1);
        assert!(calls.get(&8).is_some() && calls.get(&4).is_none());
        calls.remove(&8);
        calls.remove(&12);
        assert_eq!((calls.of_context(2), calls.of_context(3)), (0, 0));
        assert!(
            calls.by_context.is_empty(),
            "no entry left for ended contexts"
        );
        // A token given again (after 2³⁰ calls) replaces the old entry and its count.
        calls.insert(16, 5, Outstanding::Http);
        calls.insert(16, 6, Outstanding::Http);
        assert_eq!((calls.of_context(5), calls.of_context(6)), (0, 1));
    }
}
