//! The wasmbridge gateway on tower and hyper: built from the same YAML [`Config`] as the
//! Pingora gateway — plugins, clusters, routes with plugin chains, listeners, admin —
//! as a [`WasmLayer`] over a [`ProxyService`] that forwards to the route's cluster.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response, request};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use prometheus::{Encoder, Registry, TextEncoder};
use tokio::net::TcpListener;
use tower_layer::Layer;
use tower_service::Service;
use wasmbridge_config::{Config, build};
use wasmbridge_host::{Callouts, ChainSelector, Plugin, RouteSelection};

use crate::body::{BoxError, WasmRequestBody};
use crate::service::{ConnectionInfo, ResponseFuture, RouteTarget, WasmLayer, WasmService};
use crate::upstreams::{ClientBody, Clusters, TowerUpstreams};

/// Why the gateway could not be built or run.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The wasm engine could not be created.
    #[error(transparent)]
    Engine(#[from] wasmbridge_host::EngineError),
    /// The plugins could not be built.
    #[error(transparent)]
    Build(#[from] build::BuildError),
    /// Metrics could not be registered.
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// The configuration asks for what the tower gateway does not do (TLS).
    #[error(
        "{file}: {key_path}: {what} is not supported by the tower gateway; use the Pingora gateway (`wasmbridge run`)"
    )]
    Unsupported {
        /// The config file.
        file: String,
        /// Where in it.
        key_path: String,
        /// What.
        what: &'static str,
    },
    /// A listener could not be bound.
    #[error("cannot listen on {address}: {source}")]
    Listen {
        /// The address.
        address: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// The routing table of a configuration, as a [`ChainSelector`]: the first route whose
/// match holds picks the chain, and the cluster (its name and endpoint count) or direct
/// response.
pub struct Routes(build::Routes<(Arc<str>, u32)>);

impl Routes {
    /// The routes of `config` over its loaded `plugins` (routes to unknown clusters are
    /// left out, as the gateway does).
    pub fn new(config: &Config, plugins: &[Arc<Plugin>]) -> Routes {
        Routes(build::Routes::new(config, plugins, |name| {
            config.cluster(name).map(|c| {
                (
                    Arc::from(name),
                    u32::try_from(c.endpoints.len()).unwrap_or(u32::MAX),
                )
            })
        }))
    }
}

impl ChainSelector for Routes {
    fn select(&self, req: &request::Parts) -> RouteSelection {
        self.0.select(req, |c| c.clone())
    }
}

/// Starts the root drivers of every replica of `plugins` on the current tokio runtime
/// (ticks, callout answers, queue notifications), and makes it the runtime of replicas made
/// later. Call it once, inside the runtime that serves the requests.
pub fn start_root_drivers(plugins: &[Arc<Plugin>]) {
    let handle = tokio::runtime::Handle::current();
    for plugin in plugins {
        plugin.set_root_runtime(handle.clone());
        for replica in 0..plugin.replica_count() {
            if let Some(driver) = plugin.root_driver(replica) {
                tokio::spawn(driver);
            }
        }
    }
}

/// Hop-by-hop headers a proxy does not forward.
const HOP_BY_HOP: [&str; 6] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "te",
];

fn strip_hop_by_hop(headers: &mut http::HeaderMap) {
    let te_trailers = headers
        .get(http::header::TE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"trailers"));
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
    if te_trailers {
        headers.insert(http::header::TE, http::HeaderValue::from_static("trailers"));
    }
}

/// The body [`ProxyService`] answers with.
pub type ProxyBody = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;

fn text(status: u16, body: &'static str) -> Response<ProxyBody> {
    let mut resp = Response::new(
        Full::new(Bytes::from_static(body.as_bytes()))
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *resp.status_mut() = http::StatusCode::from_u16(status).unwrap_or_default();
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain"),
    );
    resp.headers_mut().insert(
        http::header::CONTENT_LENGTH,
        http::HeaderValue::from(body.len()),
    );
    resp
}

/// The inner service of the gateway: forwards a request to the cluster of its
/// [`RouteTarget`] (hyper-util client, the cluster's endpoints in turn), or answers 404 when
/// no route matched; 503 when the upstream cannot be reached, 504 when it does not answer
/// within the cluster's read timeout.
#[derive(Clone)]
pub struct ProxyService {
    clusters: Clusters,
}

impl ProxyService {
    /// Forwards to `clusters`.
    pub fn new(clusters: Clusters) -> Self {
        ProxyService { clusters }
    }
}

impl<B> Service<Request<B>> for ProxyService
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<ProxyBody>;
    type Error = Infallible;
    type Future = ResponseFuture<Response<ProxyBody>, Infallible>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let clusters = self.clusters.clone();
        Box::pin(async move {
            let target = req.extensions().get::<RouteTarget>().cloned();
            let Some(target) = target else {
                return Ok(text(404, "no route\n"));
            };
            let Some(cluster) = target.cluster.and_then(|c| clusters.get(&c).cloned()) else {
                return Ok(text(500, "route has no cluster\n"));
            };
            let (mut parts, body) = req.into_parts();
            if !parts.headers.contains_key(http::header::HOST)
                && let Some(a) = parts.uri.authority()
                && let Ok(v) = http::HeaderValue::from_str(a.as_str())
            {
                parts.headers.insert(http::header::HOST, v);
            }
            strip_hop_by_hop(&mut parts.headers);
            let body: ClientBody = body.map_err(Into::into).boxed_unsync();
            let sent = tokio::time::timeout(
                cluster.read_timeout,
                cluster.send(Request::from_parts(parts, body)),
            )
            .await;
            match sent {
                Err(_) => Ok(text(504, "upstream request timeout")),
                Ok(Err(e)) if e.is_connect() => {
                    tracing::warn!(cluster = %cluster.name, "upstream connect error: {e:?}");
                    Ok(text(503, "upstream connect error"))
                }
                Ok(Err(e)) => {
                    tracing::warn!(cluster = %cluster.name, "upstream reset: {e:?}");
                    Ok(text(503, "upstream reset before response headers"))
                }
                Ok(Ok(resp)) => {
                    let (mut parts, body) = resp.into_parts();
                    strip_hop_by_hop(&mut parts.headers);
                    parts.headers.remove(http::header::TE);
                    Ok(Response::from_parts(
                        parts,
                        body.map_err(|e| -> BoxError { Box::new(e) }).boxed_unsync(),
                    ))
                }
            }
        })
    }
}

/// Refuses what the tower gateway cannot honour safely (TLS: it would serve or forward
/// cleartext), and warns about cluster settings it ignores (it forwards to the endpoints in
/// turn, without health checks, retries or a total timeout).
fn check_supported(config: &Config) -> Result<(), GatewayError> {
    let file = config.source.display().to_string();
    let refuse = |key_path: String, what| GatewayError::Unsupported {
        file: file.clone(),
        key_path,
        what,
    };
    for (i, listener) in config.listeners.iter().enumerate() {
        if listener.tls.is_some() {
            return Err(refuse(format!("listeners[{i}].tls"), "a TLS listener"));
        }
    }
    for (i, cluster) in config.clusters.iter().enumerate() {
        if cluster.tls.is_some() {
            return Err(refuse(format!("clusters[{i}].tls"), "TLS to the endpoints"));
        }
        let ignored = [
            (
                "lb_policy",
                cluster.lb_policy != wasmbridge_config::LbPolicy::RoundRobin,
            ),
            ("health_check", cluster.health_check.is_some()),
            ("retries", cluster.retries > 0),
            ("total_timeout_ms", cluster.total_timeout.is_some()),
        ];
        for (key, set) in ignored {
            if set {
                tracing::warn!(
                    "{file}: clusters[{i}].{key} is ignored by the tower gateway (it uses each endpoint in turn)"
                );
            }
        }
    }
    Ok(())
}

/// Everything built from a config, ready to serve.
pub struct Gateway {
    config: Config,
    plugins: Vec<Arc<Plugin>>,
    clusters: Clusters,
    layer: WasmLayer,
    registry: Registry,
}

impl Gateway {
    /// Compiles (or loads from `server.compile_cache`) and starts every plugin — plugins
    /// with the same module, `vm_id` and VM configuration share VMs; `server.threads`
    /// replicas each unless `pool.replicas` says otherwise; callouts to the clusters — and
    /// builds the routing table.
    pub fn build(config: Config) -> Result<Gateway, GatewayError> {
        check_supported(&config)?;
        // The same runtime and host metrics as the Pingora gateway (compile cache included).
        let (runtime, registry, host_metrics) = build::runtime(&config)?;
        let clusters = Clusters::from_config(&config.clusters);
        let plugins = build::load_plugins(
            &config,
            &runtime,
            Some(host_metrics),
            config.server.threads,
            |pc| {
                Callouts::new(TowerUpstreams::new(
                    clusters.clone(),
                    pc.callouts.allow_host_port,
                ))
            },
        )?;
        registry.register(Box::new(wasmbridge_host::PoolMetrics::new(&plugins)))?;
        let layer = WasmLayer::with_selector(Routes::new(&config, &plugins));
        Ok(Gateway {
            config,
            plugins,
            clusters,
            layer,
            registry,
        })
    }

    /// The loaded plugins in configuration order.
    pub fn plugins(&self) -> &[Arc<Plugin>] {
        &self.plugins
    }

    /// The layer that runs each route's plugins (use it around your own service).
    pub fn layer(&self) -> WasmLayer {
        self.layer.clone()
    }

    /// The clusters (their clients are shared with the callouts).
    pub fn clusters(&self) -> Clusters {
        self.clusters.clone()
    }

    /// The callout transports a plugin of this gateway uses.
    pub fn upstreams(&self, allow_host_port: bool) -> TowerUpstreams {
        TowerUpstreams::new(self.clusters.clone(), allow_host_port)
    }

    /// The whole reverse proxy as one tower service: the layer over a [`ProxyService`].
    pub fn service(&self) -> WasmService<ProxyService> {
        self.layer.layer(ProxyService::new(self.clusters.clone()))
    }

    /// The metrics registry (`/metrics` of the admin listener).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Starts the root drivers, binds every listener and the admin listener, and serves
    /// until the process ends.
    pub async fn serve(self) -> Result<(), GatewayError> {
        let mut listeners = Vec::new();
        for l in &self.config.listeners {
            let listener =
                TcpListener::bind(l.address)
                    .await
                    .map_err(|source| GatewayError::Listen {
                        address: l.address,
                        source,
                    })?;
            listeners.push(listener);
        }
        let admin =
            match &self.config.admin {
                Some(a) => Some(TcpListener::bind(a.address).await.map_err(|source| {
                    GatewayError::Listen {
                        address: a.address,
                        source,
                    }
                })?),
                None => None,
            };
        self.serve_on(listeners, admin).await;
        Ok(())
    }

    /// Serves on listeners bound already, in the order of the configuration's `listeners`
    /// (whose `http2` keys they take), and an admin listener, if any.
    pub async fn serve_on(self, listeners: Vec<TcpListener>, admin: Option<TcpListener>) {
        start_root_drivers(&self.plugins);
        tracing::info!(
            listeners = ?listeners.iter().filter_map(|l| l.local_addr().ok()).collect::<Vec<_>>(),
            admin = ?admin.as_ref().and_then(|a| a.local_addr().ok()),
            "wasmbridge-tower is serving"
        );
        let mut tasks = tokio::task::JoinSet::new();
        for (i, listener) in listeners.into_iter().enumerate() {
            let http2 = self.config.listeners.get(i).is_none_or(|l| l.http2);
            tasks.spawn(serve(listener, self.service(), http2));
        }
        if let Some(admin) = admin {
            tasks.spawn(serve_admin(admin, self.registry.clone()));
        }
        while tasks.join_next().await.is_some() {}
    }
}

/// Accepts connections on `listener` (HTTP/1.1 and h2c) and serves each with `service`,
/// telling it the connection's addresses ([`ConnectionInfo`]).
pub async fn serve_listener<S, RB>(listener: TcpListener, service: S)
where
    S: Service<Request<Incoming>, Response = Response<RB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    RB: http_body::Body<Data = Bytes> + Send + 'static,
    RB::Error: Into<BoxError>,
{
    serve(listener, service, true).await
}

/// [`serve_listener`], HTTP/1.1 only unless `http2` (the listener's `http2` key).
async fn serve<S, RB>(listener: TcpListener, service: S, http2: bool)
where
    S: Service<Request<Incoming>, Response = Response<RB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    RB: http_body::Body<Data = Bytes> + Send + 'static,
    RB::Error: Into<BoxError>,
{
    static CONNECTIONS: AtomicU64 = AtomicU64::new(1);
    loop {
        let (stream, remote) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!("accept: {e}");
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let local = stream.local_addr().unwrap_or(remote);
        let info = ConnectionInfo {
            remote,
            local,
            id: CONNECTIONS.fetch_add(1, Ordering::Relaxed),
        };
        let service = WithConnection {
            inner: service.clone(),
            info,
        };
        tokio::spawn(async move {
            let mut builder = auto::Builder::new(TokioExecutor::new());
            if !http2 {
                builder = builder.http1_only();
            }
            let conn =
                builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
            if let Err(e) = conn.await {
                tracing::debug!("connection: {e}");
            }
        });
    }
}

/// Sets [`ConnectionInfo`] on each request of a connection.
#[derive(Clone)]
struct WithConnection<S> {
    inner: S,
    info: ConnectionInfo,
}

impl<S, B> Service<Request<B>> for WithConnection<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> S::Future {
        req.extensions_mut().insert(self.info);
        self.inner.call(req)
    }
}

async fn serve_admin(listener: TcpListener, registry: Registry) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let registry = registry.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let registry = registry.clone();
                async move {
                    let resp = match req.uri().path() {
                        "/metrics" => {
                            let mut out = Vec::new();
                            let _ = TextEncoder::new().encode(&registry.gather(), &mut out);
                            Response::new(Full::new(Bytes::from(out)))
                        }
                        "/healthz" => Response::new(Full::new(Bytes::from_static(b"ok\n"))),
                        _ => {
                            let mut r =
                                Response::new(Full::new(Bytes::from_static(b"not found\n")));
                            *r.status_mut() = http::StatusCode::NOT_FOUND;
                            r
                        }
                    };
                    Ok::<_, Infallible>(resp)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// The request body the gateway's proxy service gets.
pub type GatewayRequestBody = WasmRequestBody<Incoming>;
