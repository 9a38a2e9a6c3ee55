//! The contract between the host and the proxy for callouts: plugins name an upstream
//! (a cluster of the proxy's configuration, as in Envoy), the proxy's [`Upstreams`] turns
//! that into a transport, and the host runs the returned futures on the replica's root
//! driver and delivers the results to the root context.
//!
//! The host validates what the ABI defines (required pseudo-headers, timeouts, tokens) and
//! maps results to Envoy's callbacks; an [`Upstreams`] implementation only moves bytes.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;

/// A boxed future the host polls on a replica's root driver.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Header or metadata pairs, names as the plugin or the peer gave them.
pub type Pairs = Vec<(Bytes, Bytes)>;

/// An HTTP request a plugin sends with `proxy_http_call`.
#[derive(Debug, Clone, Default)]
pub struct HttpCallRequest {
    /// Headers in the plugin's order; `:method`, `:path` and `:authority` are present
    /// (the host checked), `:scheme` may be.
    pub headers: Pairs,
    /// The request body (empty for none).
    pub body: Bytes,
    /// Request trailers (empty for none).
    pub trailers: Pairs,
    /// The whole exchange must finish within this time; `None` waits forever.
    pub timeout: Option<Duration>,
}

/// The answer to an [`HttpCallRequest`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HttpCallResponse {
    /// Response headers with `:status` first.
    pub headers: Pairs,
    /// The whole response body.
    pub body: Bytes,
    /// Response trailers (empty for none).
    pub trailers: Pairs,
}

/// Why an HTTP call produced no response. The host turns these into what Envoy delivers:
/// a synthesized 504 for a timeout, a synthesized 503 for a connection failure, and an
/// empty response with status (BROKEN_CONNECTION, "reset") for a reset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpCallFailure {
    /// The timeout elapsed before the response was complete.
    Timeout,
    /// No connection could be made (refused, unreachable, TLS); the text says why.
    ConnectFailure(String),
    /// The connection or stream broke after the request was sent; the text says why.
    Reset(String),
}

/// A gRPC call or stream a plugin opens with `proxy_grpc_call` / `proxy_grpc_stream`.
#[derive(Debug, Clone, Default)]
pub struct GrpcRequest {
    /// The fully qualified service name (`package.Service`).
    pub service: String,
    /// The method name.
    pub method: String,
    /// Initial metadata (request headers besides the gRPC ones).
    pub initial_metadata: Pairs,
    /// Deadline for the whole call (`grpc-timeout` is sent); `None` for none.
    pub timeout: Option<Duration>,
}

/// What the host sends on an open gRPC stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GrpcOutbound {
    /// One message (unframed: the transport adds the 5-byte gRPC frame); `end_stream`
    /// half-closes after it.
    Message {
        /// The serialized message.
        data: Bytes,
        /// Half-close after this message.
        end_stream: bool,
    },
    /// Half-close the request side.
    Close,
    /// Reset the stream; nothing more is delivered.
    Cancel,
}

/// What a gRPC stream delivers to the host, in this order: initial metadata once, any
/// number of messages, trailing metadata once, then `Close` last (always sent, also for
/// failures).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GrpcInbound {
    /// The response headers (without `:status` and `content-type`).
    InitialMetadata(Pairs),
    /// One message, unframed.
    Message(Bytes),
    /// The trailers (without `grpc-status` and `grpc-message`).
    TrailingMetadata(Pairs),
    /// The call ended: the gRPC status (0 = OK; 14 UNAVAILABLE for a connection failure,
    /// 4 DEADLINE_EXCEEDED for the timeout, 1 CANCELLED after a cancel) and its message.
    Close {
        /// gRPC status code.
        status: u32,
        /// `grpc-message`, or the transport's reason.
        message: String,
    },
}

/// The host's end of an open gRPC stream, and the transport task that serves it. The host
/// runs `task` on the replica's root driver; it ends after sending `Close`.
pub struct GrpcChannel {
    /// Messages, half-close and cancel from the plugin.
    pub outbound: mpsc::UnboundedSender<GrpcOutbound>,
    /// Events from the server.
    pub inbound: mpsc::UnboundedReceiver<GrpcInbound>,
    /// The transport; runs until the call ends.
    pub task: BoxFuture<()>,
}

/// The upstream is not one the proxy knows (Envoy: no such cluster).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown upstream `{0}`")]
pub struct UnknownUpstream(pub String);

/// The proxy's callout transports, one implementation per adapter. Methods are called
/// from inside a guest call (no runtime may be current); they only check the upstream and
/// build futures, which the host runs later on the replica's root driver.
pub trait Upstreams: Send + Sync + 'static {
    /// Starts an HTTP call to `upstream` (a cluster name, or what the plugin's options
    /// allow).
    fn http_call(
        &self,
        upstream: &str,
        request: HttpCallRequest,
    ) -> Result<BoxFuture<Result<HttpCallResponse, HttpCallFailure>>, UnknownUpstream>;

    /// Opens a gRPC stream to `upstream` over HTTP/2. A unary call is a stream with one
    /// message and `end_stream`.
    fn grpc_stream(
        &self,
        upstream: &str,
        request: GrpcRequest,
    ) -> Result<GrpcChannel, UnknownUpstream>;
}

/// The upstreams of a host with no proxy configuration: every name is unknown.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoUpstreams;

impl Upstreams for NoUpstreams {
    fn http_call(
        &self,
        upstream: &str,
        _request: HttpCallRequest,
    ) -> Result<BoxFuture<Result<HttpCallResponse, HttpCallFailure>>, UnknownUpstream> {
        Err(UnknownUpstream(upstream.to_string()))
    }

    fn grpc_stream(
        &self,
        upstream: &str,
        _request: GrpcRequest,
    ) -> Result<GrpcChannel, UnknownUpstream> {
        Err(UnknownUpstream(upstream.to_string()))
    }
}

/// The upstreams a plugin's callouts go to; by default none (every name is unknown).
#[derive(Clone)]
pub struct Callouts(pub(crate) std::sync::Arc<dyn Upstreams>);

impl Callouts {
    /// Callouts through `upstreams`.
    pub fn new(upstreams: impl Upstreams) -> Self {
        Callouts(std::sync::Arc::new(upstreams))
    }
}

impl Default for Callouts {
    fn default() -> Self {
        Callouts::new(NoUpstreams)
    }
}

impl std::fmt::Debug for Callouts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Callouts")
    }
}
