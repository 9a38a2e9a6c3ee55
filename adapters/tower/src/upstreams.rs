//! The tower adapter's clusters: a hyper-util client per cluster, used both to forward
//! proxied requests ([`crate::ProxyService`]) and for the plugins' callouts
//! ([`TowerUpstreams`], the host's [`Upstreams`]).
//!
//! `proxy_http_call` to a cluster name goes to the cluster's endpoints in turn, over
//! HTTP/1.1 or, when the cluster sets `http2`, h2c. Pseudo-headers become the request
//! line and `Host`; the body goes with its own length; request trailers go to HTTP/2
//! clusters. [`HttpCallRequest::timeout`] bounds the whole exchange (`Timeout`), the
//! cluster's `connect_timeout_ms` the connection (`ConnectFailure`), its `read_timeout_ms`
//! the wait for the response (`Timeout`); a broken exchange is `Reset`.
//!
//! gRPC streams use h2c with prior knowledge whatever the cluster's `http2` says, with
//! Envoy's mapping of the answer to events (as the Pingora adapter's, through the host's
//! [`grpc`] helpers); `:authority` is the endpoint address (Pingora sends the cluster name).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body::{Body as _, Frame};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::mpsc;
use wasmbridge_config::ClusterConfig;
use wasmbridge_host::grpc;
use wasmbridge_host::{
    BoxFuture, GrpcChannel, GrpcInbound, GrpcOutbound, GrpcRequest, HttpCallFailure,
    HttpCallRequest, HttpCallResponse, UnknownUpstream, Upstreams,
};

use crate::body::BoxError;

/// The request body the cluster clients send.
pub type ClientBody = UnsyncBoxBody<Bytes, BoxError>;

/// Defaults for `host:port` callout upstreams (the cluster defaults).
const ADDRESS_CONNECT_TIMEOUT: Duration = Duration::from_millis(1000);
const ADDRESS_READ_TIMEOUT: Duration = Duration::from_millis(30_000);

/// One cluster: its endpoints (taken in turn) and a pooled client.
pub struct Cluster {
    /// The cluster name.
    pub name: Arc<str>,
    endpoints: Vec<String>,
    next: AtomicUsize,
    /// The cluster's read timeout: how long to wait for a response head.
    pub read_timeout: Duration,
    http2: bool,
    client: Client<HttpConnector, ClientBody>,
    /// h2c with prior knowledge, for gRPC whatever `http2` says.
    grpc: Client<HttpConnector, ClientBody>,
}

impl Cluster {
    /// A cluster with a fresh connection pool.
    pub fn new(
        name: &str,
        endpoints: Vec<String>,
        http2: bool,
        connect_timeout: Duration,
        read_timeout: Duration,
    ) -> Cluster {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(connect_timeout));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .http2_only(http2)
            .build(connector.clone());
        let grpc = Client::builder(TokioExecutor::new())
            .http2_only(true)
            .build(connector);
        Cluster {
            name: Arc::from(name),
            endpoints,
            next: AtomicUsize::new(0),
            read_timeout,
            http2,
            client,
            grpc,
        }
    }

    /// A cluster from its configuration.
    pub fn from_config(cc: &ClusterConfig) -> Cluster {
        Cluster::new(
            &cc.name,
            cc.endpoints.clone(),
            cc.http2,
            cc.connect_timeout,
            cc.read_timeout,
        )
    }

    /// How many endpoints the cluster has.
    pub fn endpoint_count(&self) -> usize {
        self.endpoints.len()
    }

    /// The next endpoint (round robin).
    pub fn pick(&self) -> &str {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        &self.endpoints[i % self.endpoints.len().max(1)]
    }

    /// Sends a request whose URI is rewritten to `http://{endpoint}{path}`.
    pub fn send(
        &self,
        mut req: http::Request<ClientBody>,
    ) -> hyper_util::client::legacy::ResponseFuture {
        let endpoint = self.pick().to_string();
        let pq = req
            .uri()
            .path_and_query()
            .map_or("/".to_string(), |p| p.as_str().to_string());
        match http::Uri::builder()
            .scheme("http")
            .authority(endpoint.as_str())
            .path_and_query(pq)
            .build()
        {
            Ok(uri) => *req.uri_mut() = uri,
            Err(e) => tracing::warn!(cluster = %self.name, "bad endpoint `{endpoint}`: {e}"),
        }
        *req.version_mut() = if self.http2 {
            http::Version::HTTP_2
        } else {
            http::Version::HTTP_11
        };
        self.client.request(req)
    }

    /// Opens a gRPC call (h2c) to the next endpoint: `POST /{service}/{method}`.
    fn grpc_send(
        &self,
        request: &GrpcRequest,
        body: ClientBody,
    ) -> Result<hyper_util::client::legacy::ResponseFuture, String> {
        let endpoint = self.pick();
        let uri = http::Uri::builder()
            .scheme("http")
            .authority(endpoint)
            .path_and_query(format!("/{}/{}", request.service, request.method))
            .build()
            .map_err(|e| format!("invalid gRPC target: {e}"))?;
        let mut b = http::Request::post(uri)
            .version(http::Version::HTTP_2)
            .header(http::header::CONTENT_TYPE, "application/grpc")
            .header(http::header::TE, "trailers");
        if let Some(t) = request.timeout {
            b = b.header("grpc-timeout", grpc::timeout_header(t));
        }
        for (name, value) in &request.initial_metadata {
            if name.starts_with(b":") {
                continue;
            }
            let name = http::HeaderName::from_bytes(name).map_err(|_| {
                format!(
                    "invalid initial metadata name `{}`",
                    String::from_utf8_lossy(name)
                )
            })?;
            if grpc::RESERVED_METADATA.contains(&name.as_str()) {
                continue;
            }
            let value = http::HeaderValue::from_maybe_shared(value.clone())
                .map_err(|_| format!("invalid initial metadata value for `{name}`"))?;
            b = b.header(name, value);
        }
        let req = b.body(body).map_err(|e| e.to_string())?;
        Ok(self.grpc.request(req))
    }
}

/// The clusters of a configuration, by name.
#[derive(Clone, Default)]
pub struct Clusters(pub(crate) Arc<HashMap<String, Arc<Cluster>>>);

impl Clusters {
    /// Every cluster of the configuration.
    pub fn from_config(clusters: &[ClusterConfig]) -> Clusters {
        Clusters(Arc::new(
            clusters
                .iter()
                .map(|cc| (cc.name.clone(), Arc::new(Cluster::from_config(cc))))
                .collect(),
        ))
    }

    /// The cluster named `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<Cluster>> {
        self.0.get(name)
    }
}

/// The host's callout transports over the configuration's clusters (and, when allowed,
/// `host:port` addresses).
#[derive(Clone)]
pub struct TowerUpstreams {
    clusters: Clusters,
    allow_host_port: bool,
}

impl TowerUpstreams {
    /// Callouts to `clusters`; `allow_host_port` also accepts `host:port` names.
    pub fn new(clusters: Clusters, allow_host_port: bool) -> Self {
        TowerUpstreams {
            clusters,
            allow_host_port,
        }
    }

    fn cluster(&self, upstream: &str) -> Result<Arc<Cluster>, UnknownUpstream> {
        if let Some(c) = self.clusters.get(upstream) {
            return Ok(c.clone());
        }
        let is_address = upstream
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
        if self.allow_host_port && is_address {
            return Ok(Arc::new(Cluster::new(
                upstream,
                vec![upstream.to_string()],
                false,
                ADDRESS_CONNECT_TIMEOUT,
                ADDRESS_READ_TIMEOUT,
            )));
        }
        Err(UnknownUpstream(upstream.to_string()))
    }
}

fn build_call(request: &HttpCallRequest) -> Result<http::Request<ClientBody>, String> {
    let mut b = http::Request::builder();
    let mut path = "/".to_string();
    for (k, v) in &request.headers {
        let value = String::from_utf8_lossy(v);
        match &k[..] {
            b":method" => b = b.method(value.as_ref()),
            b":path" => path = value.into_owned(),
            b":authority" => b = b.header(http::header::HOST, v.as_ref()),
            b":scheme" => {}
            b"content-length" | b"transfer-encoding" => {}
            _ => b = b.header(k.as_ref(), v.as_ref()),
        }
    }
    let body: ClientBody = if request.trailers.is_empty() {
        Full::new(request.body.clone())
            .map_err(|never| match never {})
            .boxed_unsync()
    } else {
        let mut trailers = http::HeaderMap::new();
        for (k, v) in &request.trailers {
            if let Some((n, v)) = wasmbridge_host::http_header(k, v) {
                trailers.append(n, v);
            }
        }
        Full::new(request.body.clone())
            .map_err(|never| match never {})
            .with_trailers(async move { Some(Ok(trailers)) })
            .boxed_unsync()
    };
    b.uri(path).body(body).map_err(|e| e.to_string())
}

async fn http_call(
    cluster: Arc<Cluster>,
    request: HttpCallRequest,
) -> Result<HttpCallResponse, HttpCallFailure> {
    let req = build_call(&request).map_err(HttpCallFailure::Reset)?;
    let exchange = async {
        let resp = tokio::time::timeout(cluster.read_timeout, cluster.send(req))
            .await
            .map_err(|_| HttpCallFailure::Timeout)?
            .map_err(|e| {
                if e.is_connect() {
                    HttpCallFailure::ConnectFailure(format!("{e:?}"))
                } else {
                    HttpCallFailure::Reset(e.to_string())
                }
            })?;
        let (parts, body) = resp.into_parts();
        let collected = body
            .collect()
            .await
            .map_err(|e| HttpCallFailure::Reset(e.to_string()))?;
        let mut headers = vec![(
            Bytes::from_static(b":status"),
            Bytes::from(parts.status.as_u16().to_string()),
        )];
        for (k, v) in &parts.headers {
            headers.push((
                Bytes::copy_from_slice(k.as_str().as_bytes()),
                Bytes::copy_from_slice(v.as_bytes()),
            ));
        }
        let trailers = collected
            .trailers()
            .map(|t| {
                t.iter()
                    .map(|(k, v)| {
                        (
                            Bytes::copy_from_slice(k.as_str().as_bytes()),
                            Bytes::copy_from_slice(v.as_bytes()),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(HttpCallResponse {
            headers,
            body: collected.to_bytes(),
            trailers,
        })
    };
    match request.timeout {
        Some(t) => tokio::time::timeout(t, exchange)
            .await
            .unwrap_or(Err(HttpCallFailure::Timeout)),
        None => exchange.await,
    }
}

impl Upstreams for TowerUpstreams {
    fn http_call(
        &self,
        upstream: &str,
        request: HttpCallRequest,
    ) -> Result<BoxFuture<Result<HttpCallResponse, HttpCallFailure>>, UnknownUpstream> {
        let cluster = self.cluster(upstream)?;
        Ok(Box::pin(http_call(cluster, request)))
    }

    fn grpc_stream(
        &self,
        upstream: &str,
        request: GrpcRequest,
    ) -> Result<GrpcChannel, UnknownUpstream> {
        let cluster = self.cluster(upstream)?;
        let (outbound, outbound_rx) = mpsc::unbounded_channel();
        let (inbound_tx, inbound) = mpsc::unbounded_channel();
        let task = Box::pin(grpc_run(cluster, request, outbound_rx, inbound_tx));
        Ok(GrpcChannel {
            outbound,
            inbound,
            task,
        })
    }
}

/// How a gRPC exchange ended.
enum GrpcEnd {
    Closed(u32, String),
    Cancelled,
}

/// A request body fed from a channel (the plugin's framed messages).
struct ChannelBody(mpsc::UnboundedReceiver<Result<Frame<Bytes>, BoxError>>);

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.0.poll_recv(cx)
    }
}

/// The whole life of one gRPC stream: its events go to `inbound`, `Close` last.
async fn grpc_run(
    cluster: Arc<Cluster>,
    request: GrpcRequest,
    mut outbound: mpsc::UnboundedReceiver<GrpcOutbound>,
    inbound: mpsc::UnboundedSender<GrpcInbound>,
) {
    let call = grpc_exchange(&cluster, &request, &mut outbound, &inbound);
    let end = match request.timeout {
        Some(limit) => tokio::time::timeout(limit, call).await.unwrap_or_else(|_| {
            GrpcEnd::Closed(grpc::DEADLINE_EXCEEDED, "deadline exceeded".to_string())
        }),
        None => call.await,
    };
    let (status, message) = match end {
        GrpcEnd::Closed(status, message) => (status, message),
        GrpcEnd::Cancelled => (grpc::CANCELLED, "cancelled".to_string()),
    };
    let _ = inbound.send(GrpcInbound::Close { status, message });
}

async fn grpc_exchange(
    cluster: &Cluster,
    request: &GrpcRequest,
    outbound: &mut mpsc::UnboundedReceiver<GrpcOutbound>,
    inbound: &mpsc::UnboundedSender<GrpcInbound>,
) -> GrpcEnd {
    let (body_tx, body_rx) = mpsc::unbounded_channel();
    let response = match cluster.grpc_send(request, ChannelBody(body_rx).boxed_unsync()) {
        Ok(response) => response,
        Err(reason) => return GrpcEnd::Closed(grpc::INTERNAL, reason),
    };
    let writer = grpc_write(body_tx, outbound);
    let reader = grpc_read(response, inbound);
    tokio::pin!(writer, reader);
    let mut writing = true;
    loop {
        tokio::select! {
            cancelled = &mut writer, if writing => {
                if cancelled {
                    return GrpcEnd::Cancelled;
                }
                writing = false;
            }
            (status, message) = &mut reader => return GrpcEnd::Closed(status, message),
            () = inbound.closed() => return GrpcEnd::Cancelled,
        }
    }
}

/// Sends the plugin's messages (framed) and the half-close; true when the plugin
/// cancelled (or dropped its sender before half-closing): the stream is reset.
async fn grpc_write(
    body: mpsc::UnboundedSender<Result<Frame<Bytes>, BoxError>>,
    outbound: &mut mpsc::UnboundedReceiver<GrpcOutbound>,
) -> bool {
    let mut body = Some(body);
    loop {
        match outbound.recv().await {
            Some(GrpcOutbound::Cancel) | None if body.is_some() => {
                if let Some(tx) = body.take() {
                    let _ = tx.send(Err("cancelled".into()));
                }
                return true;
            }
            None => return false,
            Some(_) if body.is_none() => {
                tracing::debug!("gRPC message after the half-close ignored");
            }
            Some(GrpcOutbound::Close) => body = None,
            Some(GrpcOutbound::Message { data, end_stream }) => {
                if let Some(tx) = &body {
                    let _ = tx.send(Ok(Frame::data(grpc::frame(&data))));
                }
                if end_stream {
                    body = None;
                }
            }
            Some(GrpcOutbound::Cancel) => return true,
        }
    }
}

/// Reads the response and reports it to `inbound`; returns the call's status.
async fn grpc_read(
    response: hyper_util::client::legacy::ResponseFuture,
    inbound: &mpsc::UnboundedSender<GrpcInbound>,
) -> (u32, String) {
    let deliver = |event| {
        let _ = inbound.send(event);
    };
    let response = match response.await {
        Ok(response) => response,
        Err(e) => return (grpc::UNAVAILABLE, format!("{e:?}")),
    };
    let (parts, mut body) = response.into_parts();
    if body.is_end_stream() {
        // Trailers-only: no initial metadata; the headers are the trailers.
        deliver(GrpcInbound::InitialMetadata(Vec::new()));
        if parts.status != http::StatusCode::OK && !parts.headers.contains_key("grpc-status") {
            return grpc::http_status_error(parts.status);
        }
        deliver(GrpcInbound::TrailingMetadata(grpc::pairs(
            &parts.headers,
            &["content-type", "grpc-status", "grpc-message"],
        )));
        return grpc::status_of(&parts.headers);
    }
    deliver(GrpcInbound::InitialMetadata(grpc::pairs(
        &parts.headers,
        &["content-type"],
    )));
    if parts.status != http::StatusCode::OK {
        return grpc::http_status_error(parts.status);
    }
    let mut buffer = BytesMut::new();
    loop {
        let frame = match body.frame().await {
            None => break,
            Some(Err(e)) => return (grpc::INTERNAL, e.to_string()),
            Some(Ok(frame)) => frame,
        };
        match frame.into_data() {
            Ok(data) => {
                buffer.extend_from_slice(&data);
                loop {
                    match grpc::next_message(&mut buffer) {
                        Ok(Some(message)) => deliver(GrpcInbound::Message(message)),
                        Ok(None) => break,
                        Err(reason) => return (grpc::INTERNAL, reason),
                    }
                }
            }
            Err(frame) => {
                if let Ok(trailers) = frame.into_trailers() {
                    if !buffer.is_empty() {
                        return (
                            grpc::INTERNAL,
                            format!("the stream ended inside a message ({} bytes)", buffer.len()),
                        );
                    }
                    deliver(GrpcInbound::TrailingMetadata(grpc::pairs(
                        &trailers,
                        &["grpc-status", "grpc-message"],
                    )));
                    return grpc::status_of(&trailers);
                }
            }
        }
    }
    if !buffer.is_empty() {
        return (
            grpc::INTERNAL,
            format!("the stream ended inside a message ({} bytes)", buffer.len()),
        );
    }
    (grpc::UNKNOWN, "the stream ended without trailers".into())
}
