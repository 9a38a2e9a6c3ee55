//! The tower adapter's clusters: a hyper-util client per cluster, used both to forward
//! proxied requests ([`crate::ProxyService`]) and for the plugins' callouts
//! ([`TowerUpstreams`], the host's [`Upstreams`]).
//!
//! `proxy_http_call` to a cluster name goes to the cluster's endpoints in turn, over
//! HTTP/1.1 or, when the cluster sets `http2`, h2c. Pseudo-headers become the request
//! line and `Host`; the body goes with its own length; request trailers go to HTTP/2
//! clusters. [`HttpCallRequest::timeout`] bounds the whole exchange (`Timeout`), the
//! cluster's `connect_timeout_ms` the connection (`ConnectFailure`), its `read_timeout_ms`
//! the wait for the response (`Timeout`); a broken exchange is `Reset`. gRPC callouts are
//! not implemented yet: the stream closes at once with 12 UNIMPLEMENTED.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::mpsc;
use wasmbridge_config::ClusterConfig;
use wasmbridge_host::{
    BoxFuture, GrpcChannel, GrpcInbound, GrpcRequest, HttpCallFailure, HttpCallRequest,
    HttpCallResponse, UnknownUpstream, Upstreams,
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
            .build(connector);
        Cluster {
            name: Arc::from(name),
            endpoints,
            next: AtomicUsize::new(0),
            read_timeout,
            http2,
            client,
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
        _request: GrpcRequest,
    ) -> Result<GrpcChannel, UnknownUpstream> {
        self.cluster(upstream)?;
        let (outbound, _ignored) = mpsc::unbounded_channel();
        let (tx, inbound) = mpsc::unbounded_channel();
        let task = Box::pin(async move {
            let _ = tx.send(GrpcInbound::Close {
                status: 12,
                message: "gRPC callouts are not implemented by the tower adapter".into(),
            });
        });
        Ok(GrpcChannel {
            outbound,
            inbound,
            task,
        })
    }
}
