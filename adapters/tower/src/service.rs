//! [`WasmLayer`] and [`WasmService`]: the tower middleware that runs each request through
//! the Proxy-Wasm plugins its [`ChainSelector`] picks, around an inner service (an app
//! handler, or a client that forwards to an upstream).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use http::{Request, Response, request};
use http_body::Body;
use hyper_util::client::legacy::connect::HttpInfo;
use tokio::sync::oneshot;
use tower_layer::Layer;
use tower_service::Service;
use wasmbridge_host::{
    ChainSelector, FilterChain, HeadersOutcome, LocalResponse, RouteSelection, StreamData,
    StreamInfo,
};

use crate::body::{BoxError, Early, WasmRequestBody, WasmResponseBody};
use crate::convert::{
    apply_request, apply_response, local_head, request_to_list, response_is_bodyless,
    response_to_list,
};
use crate::state::{OpenStreams, Shared};

/// The route a request took, as a request extension for the inner service (the reverse
/// proxy forwards to `cluster`). Absent when no route matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteTarget {
    /// The route name.
    pub route: Option<Arc<str>>,
    /// The cluster to forward to.
    pub cluster: Option<Arc<str>>,
}

/// The downstream connection of a request, as a request extension the server sets: the
/// plugins see it as `source.address`, `destination.address` and `connection.id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionInfo {
    /// The client's address.
    pub remote: SocketAddr,
    /// The server's (local) address.
    pub local: SocketAddr,
    /// An id of the connection, the same for every request on it.
    pub id: u64,
}

/// A tower [`Layer`] that wraps services in [`WasmService`].
#[derive(Clone)]
pub struct WasmLayer {
    selector: Arc<dyn ChainSelector>,
    open: OpenStreams,
}

impl WasmLayer {
    /// Runs `chain` for every request. The plugins' root drivers must run (see
    /// [`crate::start_root_drivers`]) for ticks and callouts.
    pub fn new(chain: FilterChain) -> Self {
        WasmLayer::with_selector(Arc::new(chain))
    }

    /// Runs the chain `selector` picks per request (e.g. [`crate::Routes`]).
    pub fn with_selector(selector: impl ChainSelector) -> Self {
        WasmLayer {
            selector: Arc::new(selector),
            open: OpenStreams::default(),
        }
    }

    /// Streams started and not yet finished (their `proxy_on_log` .. `proxy_on_delete`
    /// did not run yet).
    pub fn open_streams(&self) -> usize {
        self.open.get()
    }
}

impl std::fmt::Debug for WasmLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmLayer")
            .field("open_streams", &self.open.get())
            .finish()
    }
}

impl<S> Layer<S> for WasmLayer {
    type Service = WasmService<S>;

    fn layer(&self, inner: S) -> WasmService<S> {
        WasmService {
            inner,
            layer: self.clone(),
        }
    }
}

/// Runs Proxy-Wasm plugins around `S`, which gets a [`WasmRequestBody`] and whose response
/// body goes back to the client as a [`WasmResponseBody`].
///
/// The request: context creation and `proxy_on_request_headers` (a pause waits for the
/// plugin to continue), then the inner service is called while the body streams through
/// `proxy_on_request_body` and `proxy_on_request_trailers`. The response:
/// `proxy_on_response_headers` before the head goes out, then the body and trailer
/// callbacks as the body is written. Local replies are answered here. The stream ends —
/// `proxy_on_log`, `proxy_on_done`, `proxy_on_delete` — when the response body ends or is
/// dropped (the client went away), or when the request is dropped before a response.
#[derive(Clone)]
pub struct WasmService<S> {
    inner: S,
    layer: WasmLayer,
}

impl<S> WasmService<S> {
    /// Wraps `inner` with the layer's plugins.
    pub fn new(inner: S, layer: WasmLayer) -> Self {
        WasmService { inner, layer }
    }
}

/// A boxed service future.
pub type ResponseFuture<R, E> = Pin<Box<dyn Future<Output = Result<R, E>> + Send>>;

impl<S, B, RB> Service<Request<B>> for WasmService<S>
where
    S: Service<Request<WasmRequestBody<B>>, Response = Response<RB>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Send,
    B: Body<Data = Bytes> + Unpin + Send + 'static,
    B::Error: Into<BoxError>,
    RB: Body<Data = Bytes> + Unpin + Send + 'static,
    RB::Error: Into<BoxError>,
{
    type Response = Response<WasmResponseBody<RB>>;
    type Error = S::Error;
    type Future = ResponseFuture<Self::Response, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        // The clone is not ready; the one that was polled ready handles this request.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(run(inner, self.layer.clone(), req))
    }
}

/// Ends the stream if the request is dropped before its response took the stream over
/// (the client went away during a pause or while the inner service worked).
struct FinishOnDrop(Option<Shared>);

impl Drop for FinishOnDrop {
    fn drop(&mut self) {
        if let Some(shared) = self.0.take() {
            shared.finish(None);
        }
    }
}

fn local<RB>(
    resp: LocalResponse,
    head: bool,
    shared: Option<Shared>,
) -> Response<WasmResponseBody<RB>> {
    let parts = local_head(&resp);
    let body = if head { Bytes::new() } else { resp.body };
    Response::from_parts(parts, WasmResponseBody::full(body, shared, resp.status))
}

fn reset<RB>(shared: Option<Shared>) -> Response<WasmResponseBody<RB>> {
    let mut resp = Response::new(WasmResponseBody::reset(shared));
    *resp.status_mut() = http::StatusCode::BAD_GATEWAY;
    resp
}

fn stream_info(parts: &request::Parts, selection: &RouteSelection) -> StreamInfo {
    let protocol = match parts.version {
        http::Version::HTTP_2 => "HTTP/2",
        http::Version::HTTP_10 => "HTTP/1.0",
        _ => "HTTP/1.1",
    };
    let conn = parts.extensions.get::<ConnectionInfo>();
    let mut info = StreamInfo {
        source: conn.map(|c| c.remote),
        destination: conn.map(|c| c.local),
        connection_id: conn.map(|c| c.id),
        protocol,
        request_id: parts
            .headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        start_time: Some(SystemTime::now()),
        started: Some(Instant::now()),
        ..StreamInfo::default()
    };
    selection.record(&mut info);
    info
}

fn target(selection: &RouteSelection) -> RouteTarget {
    RouteTarget {
        route: selection.route.clone(),
        cluster: selection.cluster.clone(),
    }
}

async fn run<S, B, RB>(
    mut inner: S,
    layer: WasmLayer,
    req: Request<B>,
) -> Result<Response<WasmResponseBody<RB>>, S::Error>
where
    S: Service<Request<WasmRequestBody<B>>, Response = Response<RB>>,
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
    RB: Body<Data = Bytes> + Unpin,
    RB::Error: Into<BoxError>,
{
    let (mut parts, body) = req.into_parts();
    let head = parts.method == http::Method::HEAD;
    let selection = layer.selector.select(&parts);
    let Some(chain) = selection.chain.clone().filter(|c| !c.is_empty()) else {
        if let Some(direct) = selection.direct {
            let resp = FilterChain::default()
                .start(StreamData::default())
                .direct_response(direct);
            return Ok(local(resp, head, None));
        }
        if selection.route.is_some() {
            parts.extensions.insert(target(&selection));
        }
        let resp = inner
            .call(Request::from_parts(parts, WasmRequestBody::plain(body)))
            .await?;
        return Ok(resp.map(WasmResponseBody::plain));
    };
    let eos = body.is_end_stream();
    let mut data = StreamData::default();
    data.request_headers = request_to_list(&parts);
    data.info = stream_info(&parts, &selection);
    let shared = Shared::new(chain.start(data), &layer.open);
    let mut guard = FinishOnDrop(Some(shared.clone()));

    // Request headers; a pause waits until a plugin continues (or replies, or resets).
    let mut outcome = shared.lock().stream.on_request_headers(eos);
    while outcome == HeadersOutcome::Paused {
        shared.wait().await;
        outcome = shared.lock().stream.resume_headers();
    }
    let mut direct = selection.direct.clone();
    let mut route = selection.clone();
    match outcome {
        HeadersOutcome::Continue | HeadersOutcome::Paused => {
            let mut state = shared.lock();
            let reroute = state.stream.data_mut().take_reroute();
            if state.stream.data().request_headers.is_modified() {
                apply_request(&state.stream.data().request_headers, &mut parts);
                state.stream.data_mut().request_headers.mark_clean();
            }
            if reroute {
                // The route is chosen again from the headers as the plugins left them;
                // the running chain stays.
                route = layer.selector.select(&parts);
                route.record(&mut state.stream.data_mut().info);
                direct = route.direct.clone();
            }
            if let Some(direct) = direct {
                let resp = state.stream.direct_response(direct);
                drop(state);
                guard.0 = None;
                return Ok(local(resp, head, Some(shared)));
            }
        }
        HeadersOutcome::LocalReply(reply) => {
            let resp = shared.lock().stream.local_response(reply);
            guard.0 = None;
            return Ok(local(resp, head, Some(shared)));
        }
        HeadersOutcome::Reset => {
            guard.0 = None;
            return Ok(reset(Some(shared)));
        }
    }
    if route.route.is_some() {
        parts.extensions.insert(target(&route));
    }
    if chain.handles_request_body() && !eos {
        // A plugin may change the body: its length is unknown until the end.
        parts.headers.remove(http::header::CONTENT_LENGTH);
    }
    let (tx, mut rx) = oneshot::channel();
    let body = if eos {
        WasmRequestBody::plain(body)
    } else {
        WasmRequestBody::filtered(body, shared.clone(), chain.handles_request_body(), tx)
    };
    shared.lock().stream.data_mut().info.upstream.request_sent = Some(Instant::now());
    let call = inner.call(Request::from_parts(parts, body));
    tokio::pin!(call);
    let early = |early: Early, shared: Shared| match early {
        Early::Reply(resp) => local(resp, head, Some(shared)),
        Early::Reset => reset(Some(shared)),
    };
    let result = tokio::select! {
        result = &mut call => result,
        Ok(e) = &mut rx => {
            guard.0 = None;
            return Ok(early(e, shared));
        }
    };
    if let Ok(e) = rx.try_recv() {
        // The request body was cut off by a plugin while the inner service answered.
        guard.0 = None;
        return Ok(early(e, shared));
    }
    let resp = result?;

    // Response headers.
    let (mut rparts, rbody) = resp.into_parts();
    if let Some(conn) = rparts.extensions.get::<HttpInfo>() {
        // Forwarded by a hyper-util client (the gateway's ProxyService): the connection.
        let mut state = shared.lock();
        let up = &mut state.stream.data_mut().info.upstream;
        up.attempts += 1;
        up.address = Some(conn.remote_addr());
        up.local_address = Some(conn.local_addr());
        // hyper-util's pool does not report when the connection was ready; the time to
        // the response head bounds it.
        up.pool_ready = up.request_sent.map(|t| t.elapsed());
    }
    let eos = response_is_bodyless(&rparts, head) || rbody.is_end_stream();
    let mut outcome = {
        let mut state = shared.lock();
        let data = state.stream.data_mut();
        data.response_headers = response_to_list(&rparts);
        data.info.response_details = Some("via_upstream".to_string());
        state.stream.on_response_headers(eos)
    };
    while outcome == HeadersOutcome::Paused {
        shared.wait().await;
        outcome = shared.lock().stream.resume_headers();
    }
    guard.0 = None;
    match outcome {
        HeadersOutcome::Continue | HeadersOutcome::Paused => {
            let mut state = shared.lock();
            if state.stream.data().response_headers.is_modified() {
                apply_response(&state.stream.data().response_headers, &mut rparts);
                state.stream.data_mut().response_headers.mark_clean();
            }
            let body_plugins = chain.handles_response_body();
            if body_plugins && !eos {
                // The body may change size.
                rparts.headers.remove(http::header::CONTENT_LENGTH);
            }
            drop(state);
            let status = rparts.status.as_u16();
            Ok(Response::from_parts(
                rparts,
                WasmResponseBody::filtered(rbody, shared, body_plugins, status),
            ))
        }
        HeadersOutcome::LocalReply(reply) => {
            let resp = shared.lock().stream.local_response(reply);
            Ok(local(resp, head, Some(shared)))
        }
        HeadersOutcome::Reset => Ok(reset(Some(shared))),
    }
}
