//! The wasmbridge gateway: a Pingora server built from one YAML [`Config`] — listeners,
//! routes with plugin chains, clusters, and the admin listener.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use pingora::prelude::*;
use pingora::server::configuration::ServerConf;
use prometheus::{IntCounterVec, Opts, Registry};
use wasmbridge_config::build::{self, Destination};
use wasmbridge_config::{Config, HashOn, LbPolicy};
use wasmbridge_host::{
    Callouts, ChainSelector, Plugin, PoolMetrics, RouteSelection, request_header,
};

use crate::admin::admin_service;
use crate::balance::Endpoints;
use crate::drivers::WithRootDrivers;
use crate::proxy::{RequestObserver, WasmFilters};
use crate::reload::{Reloader, reload_on_change, reload_on_sighup};
use crate::tls::ReloadableCertificate;
use crate::upstreams::{GatewayUpstreams, UpstreamCluster};

/// Why the gateway could not be built.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The wasm engine could not be created.
    #[error(transparent)]
    Engine(#[from] wasmbridge_host::EngineError),
    /// A plugin could not be loaded; the message names plugin, module and reason.
    #[error(transparent)]
    Plugin(#[from] wasmbridge_host::LoadError),
    /// A cluster endpoint could not be resolved.
    #[error("{file}: clusters `{cluster}`: {message}")]
    Cluster {
        /// The config file.
        file: String,
        /// The cluster name.
        cluster: String,
        /// What went wrong.
        message: String,
    },
    /// The pooling engine of `per_stream` plugins could not be made.
    #[error(transparent)]
    Build(#[from] build::BuildError),
    /// Metrics could not be registered.
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// A TLS listener's certificate or key could not be loaded.
    #[error("{file}: listeners[{listener}].tls: {message}")]
    Tls {
        /// The config file.
        file: String,
        /// The listener's index.
        listener: usize,
        /// What went wrong.
        message: String,
    },
    /// The configuration file could not be read or is invalid.
    #[error(transparent)]
    Config(#[from] wasmbridge_config::ConfigError),
}

struct Cluster {
    name: Arc<str>,
    endpoints: u32,
    reach: Endpoints,
}

/// The gateway's routing table: routes to its clusters.
type Routes = build::Routes<Arc<Cluster>>;

struct RouteSelector(Arc<Routes>);

impl ChainSelector for RouteSelector {
    fn select(&self, req: &http::request::Parts) -> RouteSelection {
        self.0.select(req, |c| (c.name.clone(), c.endpoints))
    }
}

struct RequestMetrics(IntCounterVec);

impl RequestObserver for RequestMetrics {
    fn observe(&self, route: Option<&str>, status: u16) {
        let status = status.to_string();
        self.0
            .with_label_values(&[route.unwrap_or(""), status.as_str()])
            .inc();
    }
}

/// The inner proxy: routes by the request as the plugins left it to a cluster, or answers
/// 404; picks the endpoint by the cluster's policy, tries the next one when a connection
/// fails (up to the cluster's `retries`) and cuts an exchange that outlasts its
/// `total_timeout_ms`.
pub struct Router {
    routes: Arc<Routes>,
}

/// Per-request state of [`Router`].
#[derive(Default)]
pub struct RouterCtx {
    /// The index of the route `request_filter` chose.
    route: Option<usize>,
    /// The endpoint of the current connection attempt.
    endpoint: Option<SocketAddr>,
    /// Endpoints a connection attempt failed on.
    failed: Vec<SocketAddr>,
    /// Connection attempts so far.
    attempts: u32,
    /// When the first attempt began.
    started: Option<std::time::Instant>,
}

impl Router {
    fn cluster(&self, ctx: &RouterCtx) -> Option<&Arc<Cluster>> {
        match &self.routes.get(ctx.route?)?.destination {
            Destination::Cluster(cluster) => Some(cluster),
            _ => None,
        }
    }

    /// Fails the exchange when it took longer than the cluster's `total_timeout_ms`.
    fn within_total(&self, ctx: &RouterCtx) -> Result<()> {
        let total = self.cluster(ctx).and_then(|c| c.reach.config.total_timeout);
        if let (Some(total), Some(started)) = (total, ctx.started)
            && started.elapsed() > total
        {
            return Err(pingora::Error::explain(
                ErrorType::HTTPStatus(504),
                format!(
                    "the upstream exchange took longer than the cluster's total_timeout_ms ({} ms)",
                    total.as_millis()
                ),
            ));
        }
        Ok(())
    }
}

/// What a consistent hash of `on` hashes for this request: a header as route matching
/// reads it (repeated values joined), the path with its query, or the client's IP.
fn hash_key(session: &Session, on: &HashOn) -> Vec<u8> {
    let req = session.req_header();
    let header = |name: &str| request_header(req, name).map(|v| v.into_owned());
    match on {
        HashOn::SourceIp => session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip().to_string().into_bytes()),
        HashOn::Header(name) => header(name),
        HashOn::Path => header(":path"),
    }
    .unwrap_or_default()
}

#[async_trait]
impl ProxyHttp for Router {
    type CTX = RouterCtx;

    fn new_ctx(&self) -> Self::CTX {
        RouterCtx::default()
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Self::CTX) -> Result<bool> {
        ctx.route = self.routes.position(session.req_header());
        if ctx.route.is_some() {
            return Ok(false);
        }
        let body = Bytes::from_static(b"no route\n");
        let mut resp = pingora::http::ResponseHeader::build(404, Some(2))?;
        resp.insert_header("content-type", "text/plain")?;
        resp.insert_header("content-length", body.len().to_string())?;
        session.write_response_header(Box::new(resp), false).await?;
        session.write_response_body(Some(body), true).await?;
        Ok(true)
    }

    async fn upstream_peer(
        &self,
        session: &mut Session,
        ctx: &mut Self::CTX,
    ) -> Result<Box<HttpPeer>> {
        let route = ctx
            .route
            .and_then(|i| self.routes.get(i))
            .ok_or_else(|| pingora::Error::explain(ErrorType::HTTPStatus(404), "no route"))?;
        let Destination::Cluster(cluster) = &route.destination else {
            return Err(pingora::Error::explain(
                ErrorType::HTTPStatus(500),
                "route has no cluster",
            ));
        };
        let key = match &cluster.reach.config.lb_policy {
            LbPolicy::ConsistentHash(on) => hash_key(session, on),
            _ => Vec::new(),
        };
        let balancer = &cluster.reach.balancer;
        // A retry goes to an endpoint that has not failed yet, when there is one.
        let addr = balancer
            .select(&key, |a| ctx.failed.contains(a))
            .or_else(|| balancer.select(&key, |_| false))
            .ok_or_else(|| {
                pingora::Error::explain(
                    ErrorType::HTTPStatus(503),
                    format!("no healthy endpoint in cluster `{}`", cluster.name),
                )
            })?;
        ctx.endpoint = Some(addr);
        ctx.attempts += 1;
        ctx.started.get_or_insert_with(std::time::Instant::now);
        Ok(Box::new(cluster.reach.peer(addr)))
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut Self::CTX,
        mut e: Box<pingora::Error>,
    ) -> Box<pingora::Error> {
        if let Some(addr) = ctx.endpoint.take() {
            ctx.failed.push(addr);
        }
        let retries = self.cluster(ctx).map_or(0, |c| c.reach.config.retries);
        // Nothing was sent yet, so any method may go to the next endpoint.
        e.set_retry(ctx.attempts <= retries);
        e
    }

    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        _upstream_response: &mut pingora::http::ResponseHeader,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        self.within_total(ctx)
    }

    fn upstream_response_body_filter(
        &self,
        _session: &mut Session,
        _body: &mut Option<Bytes>,
        _end_of_stream: bool,
        ctx: &mut Self::CTX,
    ) -> Result<Option<std::time::Duration>> {
        self.within_total(ctx)?;
        Ok(None)
    }
}

/// The proxy of one generation: its plugins around its router.
pub(crate) type GenerationProxy = WasmFilters<Router>;

/// What every generation shares: the wasm runtime (engines, compile cache, shared data
/// and queues), the metrics registry and the metric handles.
pub(crate) struct Shared {
    runtime: wasmbridge_host::Runtime,
    pub(crate) registry: Registry,
    host_metrics: wasmbridge_host::HostMetrics,
    pub(crate) pool_metrics: PoolMetrics,
    observer: Arc<dyn RequestObserver>,
    /// Where health checks run: one thread, started with the first cluster that has them.
    background: std::sync::OnceLock<Background>,
    /// The TLS listeners' certificates, by listener index; reloads read the files again.
    pub(crate) certificates: Vec<(usize, Arc<ReloadableCertificate>)>,
}

/// A tokio runtime that may be dropped anywhere (also from inside another runtime).
struct Background(Option<tokio::runtime::Runtime>);

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

impl Shared {
    /// The runtime health checks run on, started on first use.
    fn background(&self) -> Option<&tokio::runtime::Handle> {
        let background = self.background.get_or_init(|| {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("wasmbridge-health")
                .enable_all()
                .build();
            match rt {
                Ok(rt) => Background(Some(rt)),
                Err(e) => {
                    tracing::error!(
                        "cannot start the health-check thread, health checks are off: {e}"
                    );
                    Background(None)
                }
            }
        });
        background.0.as_ref().map(tokio::runtime::Runtime::handle)
    }
}

/// The routes, clusters and plugins built from one reading of the config file.
pub(crate) struct Generation {
    /// 1 for the configuration the gateway started with, then one more per reload.
    pub(crate) id: u64,
    pub(crate) config: Config,
    /// The file's text, when it was read from a file (`/config`).
    pub(crate) text: Option<String>,
    pub(crate) loaded_at: std::time::SystemTime,
    pub(crate) proxy: GenerationProxy,
    pub(crate) plugins: Vec<Arc<Plugin>>,
    upstreams: GatewayUpstreams,
}

impl Generation {
    /// Resolves the clusters, compiles (or loads from `server.compile_cache`) and starts
    /// every plugin (one VM replica per worker thread; its callouts go to the clusters) and
    /// builds the routing table.
    pub(crate) fn build(
        shared: &Shared,
        config: Config,
        text: Option<String>,
        id: u64,
    ) -> Result<Generation, GatewayError> {
        let mut clusters: HashMap<String, Arc<Cluster>> = HashMap::new();
        for cc in &config.clusters {
            let reach = Endpoints::new(cc).map_err(|message| GatewayError::Cluster {
                file: config.source.display().to_string(),
                cluster: cc.name.clone(),
                message,
            })?;
            if let Some(hc) = &cc.health_check
                && let Some(background) = shared.background()
            {
                reach.balancer.check_every(hc.interval, background);
            }
            clusters.insert(
                cc.name.clone(),
                Arc::new(Cluster {
                    name: Arc::from(cc.name.as_str()),
                    endpoints: u32::try_from(cc.endpoints.len()).unwrap_or(u32::MAX),
                    reach,
                }),
            );
        }
        let upstreams = GatewayUpstreams::new(clusters.values().map(|c| UpstreamCluster {
            name: c.name.to_string(),
            endpoints: c.reach.clone(),
        }));
        // Plugins with the same module, vm_id and VM configuration share their VMs.
        let plugins = build::load_plugins(
            &config,
            &shared.runtime,
            Some(shared.host_metrics.clone()),
            config.server.threads,
            |pc| Callouts::new(upstreams.allowing_addresses(pc.callouts.allow_host_port)),
        )?;
        let routes = Arc::new(Routes::new(&config, &plugins, |name| {
            clusters.get(name).cloned()
        }));
        let proxy = WasmFilters::new(
            Router {
                routes: routes.clone(),
            },
            Arc::new(RouteSelector(routes)),
        )
        .with_observer(shared.observer.clone());
        Ok(Generation {
            id,
            config,
            text,
            loaded_at: std::time::SystemTime::now(),
            proxy,
            plugins,
            upstreams,
        })
    }
}

impl Drop for Generation {
    fn drop(&mut self) {
        tracing::debug!(
            generation = self.id,
            "configuration generation dropped: its last request ended"
        );
    }
}

/// Everything built from a config, ready to serve, and able to reload it.
pub struct Gateway {
    reloader: Arc<Reloader>,
}

impl Gateway {
    /// Resolves the clusters, compiles (or loads from `server.compile_cache`) and starts
    /// every plugin (one VM replica per worker thread; its callouts go to the clusters) and
    /// builds the routing table.
    pub fn build(config: Config) -> Result<Gateway, GatewayError> {
        Self::build_from(config, None)
    }

    /// Reads, validates and builds the config file at `path`; the gateway can reload it.
    pub fn from_file(path: &Path) -> Result<Gateway, GatewayError> {
        let (config, text) = Config::from_file_with_text(path)?;
        Self::build_from(config, Some(text))
    }

    fn build_from(config: Config, text: Option<String>) -> Result<Gateway, GatewayError> {
        let (runtime, registry, host_metrics) = build::runtime(&config)?;
        let requests = IntCounterVec::new(
            Opts::new(
                "wasmbridge_http_requests_total",
                "Requests served, by route and status.",
            ),
            &["route", "status"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        let pool_metrics = PoolMetrics::new(&[]);
        registry.register(Box::new(pool_metrics.clone()))?;
        let mut certificates = Vec::new();
        for (i, listener) in config.listeners.iter().enumerate() {
            if let Some(tls) = &listener.tls {
                let cert =
                    ReloadableCertificate::load(tls).map_err(|message| GatewayError::Tls {
                        file: config.source.display().to_string(),
                        listener: i,
                        message,
                    })?;
                certificates.push((i, Arc::new(cert)));
            }
        }
        let shared = Arc::new(Shared {
            runtime,
            registry,
            host_metrics,
            pool_metrics,
            observer: Arc::new(RequestMetrics(requests)),
            background: std::sync::OnceLock::new(),
            certificates,
        });
        let first = Generation::build(&shared, config, text, 1)?;
        shared.pool_metrics.track(&first.plugins);
        let reloader = Reloader::new(shared, first)?;
        Ok(Gateway {
            reloader: Arc::new(reloader),
        })
    }

    /// The loaded plugins of the current configuration, in configuration order.
    pub fn plugins(&self) -> Vec<Arc<Plugin>> {
        self.reloader.current().plugins.clone()
    }

    /// The callout transports over the current configuration's clusters (sharing their
    /// load balancers), refusing `host:port` upstreams; a plugin with
    /// `callouts.allow_host_port` gets `upstreams().allowing_addresses(true)`.
    pub fn upstreams(&self) -> GatewayUpstreams {
        self.reloader.current().upstreams.clone()
    }

    /// The admin listener address, if configured.
    pub fn admin_address(&self) -> Option<SocketAddr> {
        self.reloader
            .current()
            .config
            .admin
            .as_ref()
            .map(|a| a.address)
    }

    /// What reloads this gateway's configuration (SIGHUP, file changes and the admin API
    /// use it once the gateway runs).
    pub fn reloader(&self) -> Arc<Reloader> {
        self.reloader.clone()
    }

    /// Builds the Pingora server and serves until the process is stopped. With `upgrade`,
    /// takes the listening sockets over from a running gateway (Pingora's graceful
    /// upgrade: start this process, then send SIGQUIT to the old one).
    pub fn run(self) -> Result<(), GatewayError> {
        self.run_with(false)
    }

    /// [`Gateway::run`], taking the listening sockets over from the running gateway
    /// whose `server.upgrade_sock` is the same when `upgrade` is true.
    pub fn run_with(self, upgrade: bool) -> Result<(), GatewayError> {
        let current = self.reloader.current();
        let config = &current.config;
        let conf = ServerConf {
            threads: config.server.threads,
            work_stealing: false,
            grace_period_seconds: Some(config.server.grace_period_seconds),
            graceful_shutdown_timeout_seconds: Some(config.server.shutdown_timeout_seconds),
            upgrade_sock: config.server.upgrade_sock.display().to_string(),
            ..ServerConf::default()
        };
        let opt = pingora::server::configuration::Opt {
            upgrade,
            ..Default::default()
        };
        let mut server = Server::new_with_opt_and_conf(Some(opt), conf);
        server.bootstrap();
        let conf = server.configuration.clone();
        let mut services: Vec<Box<dyn pingora::services::ServiceWithDependents>> = Vec::new();
        for (i, listener) in config.listeners.iter().enumerate() {
            let mut options = pingora::apps::HttpServerOptions::default();
            options.h2c = listener.http2 && listener.tls.is_none();
            let mut service =
                pingora::proxy::ProxyServiceBuilder::new(&conf, self.reloader.proxy())
                    .name(format!("wasmbridge-listener-{i}"))
                    .server_options(options)
                    .build();
            match self.reloader.certificate(i) {
                Some(certificate) => {
                    let mut tls = pingora::listeners::tls::TlsSettings::intermediate("", "")
                        .map_err(|e| GatewayError::Tls {
                            file: config.source.display().to_string(),
                            listener: i,
                            message: e.to_string(),
                        })?;
                    tls.set_cert_resolver(certificate);
                    if listener.http2 {
                        tls.enable_h2();
                    }
                    service.add_tls_with_settings(&listener.address.to_string(), None, tls);
                }
                None => service.add_tcp(&listener.address.to_string()),
            }
            if i == 0 {
                // The first listener's worker threads run the plugins' root services, of
                // the first generation and of every reloaded one.
                services.push(Box::new(
                    WithRootDrivers::following(
                        service,
                        self.reloader.driver_sets(),
                        config.server.threads,
                    )
                    .with_started_flag(self.reloader.ready.clone()),
                ));
            } else {
                services.push(Box::new(service));
            }
        }
        if let Some(admin) = &config.admin {
            services.push(Box::new(admin_service(
                admin.clone(),
                self.reloader.clone(),
            )));
        }
        server.add_services(services);
        if let Err(e) = reload_on_sighup(self.reloader.clone()) {
            tracing::warn!("cannot reload on SIGHUP: {e}");
        }
        if config.server.watch
            && config.source.is_file()
            && let Err(e) = reload_on_change(self.reloader.clone())
        {
            tracing::warn!("cannot watch the configuration and module files: {e}");
        }
        tracing::info!(
            listeners = ?config.listeners.iter().map(|l| l.address).collect::<Vec<_>>(),
            admin = ?config.admin.as_ref().map(|a| a.address),
            "wasmbridge is serving"
        );
        drop(current);
        server.run_forever()
    }
}
