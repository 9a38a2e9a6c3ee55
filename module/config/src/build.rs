//! From a validated [`Config`] to running host objects: the plugins (compiled, loaded with
//! VM sharing as Envoy does, their limits and pool options from the file) and the routing
//! table ([`Routes`]). Every adapter builds its plugins and routes here, so the same file
//! means the same plugins and the same routing behind Pingora and behind tower.

use std::sync::Arc;

use bytes::Bytes;
use wasmbridge_host::{
    Backoff, Callouts, Capabilities, EngineSettings, EnvironmentVariables, FilterChain,
    ForeignFunctions, HostMetrics, Isolation, Limits, LoadError, LoadErrorKind, LocalReply,
    NodeInfo, PerStreamPool, Plugin, PluginLoad, PluginSpec, PoolOptions, Redaction,
    RouteSelection, Runtime, request_header,
};

use wasmbridge_fetch::{FetchOptions, Fetcher, ModuleCache};

use crate::{Config, DirectResponse, LimitsConfig, ModuleSource, PluginConfig};

/// Why the plugins of a configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The wasm engine (or the pooling engine of `per_stream` plugins) could not be made.
    #[error(transparent)]
    Engine(#[from] wasmbridge_host::EngineError),
    /// A plugin could not be loaded; the message names plugin, module and reason.
    #[error(transparent)]
    Plugin(#[from] LoadError),
    /// The host's metrics could not be registered.
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// A plugin's module could not be fetched (or read), or did not have its `sha256`.
    #[error(transparent)]
    Fetch(Box<ModuleFetchError>),
    /// Several plugins could not be loaded: every error, in file order, one per line.
    #[error("{} plugins could not be loaded:\n{}", .0.len(), .0.iter().map(|e| format!("  - {e}")).collect::<Vec<_>>().join("\n"))]
    Several(Vec<BuildError>),
}

impl BuildError {
    /// Every error this one holds (itself when it is not [`BuildError::Several`]).
    pub fn all(&self) -> Vec<&BuildError> {
        match self {
            BuildError::Several(errors) => errors.iter().flat_map(BuildError::all).collect(),
            other => vec![other],
        }
    }
}

/// A plugin's module could not be fetched (or read), or did not have its `sha256`.
/// Displays as `<file>: <key path> (plugin `<name>`): <source>: <what went wrong>`.
#[derive(Debug, thiserror::Error)]
#[error("{}: {key_path} (plugin `{plugin}`): {error}", file.display())]
pub struct ModuleFetchError {
    /// The configuration file.
    pub file: std::path::PathBuf,
    /// The plugin's name.
    pub plugin: String,
    /// `plugins[i].module`, or `plugins[i].sha256` for a digest mismatch.
    pub key_path: String,
    /// What went wrong, naming the source.
    #[source]
    pub error: wasmbridge_fetch::FetchError,
}

impl BuildError {
    /// Whether a plugin's module did not have the `sha256` its configuration gives.
    pub fn is_hash_mismatch(&self) -> bool {
        matches!(self, BuildError::Fetch(e) if e.error.is_hash_mismatch())
    }
}

/// The runtime a configuration's plugins run on (with `server.compile_cache` when set),
/// a registry with the host's metrics on it — plugin calls, guest-defined metrics, shared
/// queues, the compile cache — and the plugin metric handles to load plugins with.
pub fn runtime(
    config: &Config,
) -> Result<(Runtime, prometheus::Registry, HostMetrics), BuildError> {
    let mut runtime = Runtime::new()?;
    if let Some(dir) = &config.server.compile_cache {
        runtime = runtime.with_compile_cache(dir);
    }
    let registry = prometheus::Registry::new();
    let host_metrics = HostMetrics::register(&registry)?;
    registry.register(Box::new(runtime.guest_metrics()))?;
    registry.register(Box::new(runtime.queue_metrics()))?;
    registry.register(Box::new(runtime.compile_cache_metrics()))?;
    Ok((runtime, registry, host_metrics))
}

/// The node identity of the file's `node` section.
pub fn node_info(config: &Config) -> Arc<NodeInfo> {
    Arc::new(NodeInfo {
        id: config.node.id.clone(),
        cluster: config.node.cluster.clone(),
        metadata: config.node.metadata.clone(),
    })
}

/// Compiles and loads every plugin of `config` in file order, on `runtime` (or, for
/// `per_stream` plugins, a pooling engine made from it and sized for the largest memory
/// limit among them). Plugins with the same module, `vm_id` and VM configuration share
/// their VMs ([`Plugin::load_all`]). `callouts` gives each plugin its callout transports;
/// `replicas` is the pool size of a plugin that does not set `pool.replicas`.
pub fn load_plugins(
    config: &Config,
    runtime: &Runtime,
    metrics: Option<HostMetrics>,
    replicas: usize,
    callouts: impl Fn(&PluginConfig) -> Callouts,
) -> Result<Vec<Arc<Plugin>>, BuildError> {
    let node = node_info(config);
    // The pooling engines of per_stream plugins, sized for the largest memory limit among
    // them.
    let per_stream_pool = PerStreamPool {
        instances: config.server.per_stream_instances,
        memory: config
            .plugins
            .iter()
            .filter(|pc| pc.isolation == crate::Isolation::PerStream)
            .map(|pc| limits(&pc.limits).memory_bytes)
            .max()
            .unwrap_or(PerStreamPool::default().memory),
    };
    // One slot per plugin of the file, `None` for one that failed.
    let mut loads: Vec<Option<PluginLoad>> = Vec::with_capacity(config.plugins.len());
    let mut failed: Vec<BuildError> = Vec::new();
    let mut fetcher = None;
    for pc in &config.plugins {
        let spec = plugin_spec(pc, replicas, node.clone(), callouts(pc));
        // A route's configuration override runs its plugin's compiled module (and, with
        // the same vm_id and VM configuration, in its VMs: `Plugin::load_all`).
        let base = pc
            .base
            .as_deref()
            .and_then(|base| config.plugins.iter().position(|p| p.name == base))
            .and_then(|i| loads.get(i));
        match base {
            Some(Some(base)) => {
                let (runtime, module) = (base.runtime.clone(), base.module.clone());
                loads.push(Some(PluginLoad {
                    runtime,
                    module,
                    spec,
                }));
                continue;
            }
            // The plugin it overrides failed; that error says why.
            Some(None) => {
                loads.push(None);
                continue;
            }
            None => {}
        }
        // Every plugin is compiled even after one failed, so that all errors are reported.
        let load = (|| -> Result<PluginLoad, BuildError> {
            // The engine for the plugin's isolation, fuel and stack: the base one unless it
            // asks for one of them (made once, shared by the plugins that ask the same).
            let runtime = runtime
                .for_settings(EngineSettings::for_plugin(&spec, per_stream_pool))
                .map_err(|e| LoadError {
                    plugin: pc.name.clone(),
                    module: pc.module.clone(),
                    kind: LoadErrorKind::Engine(e.to_string()),
                })?;
            let module = match &pc.source {
                ModuleSource::File { path, sha256: None } => {
                    runtime.compile_file(&pc.name, path)?
                }
                source => {
                    let bytes = module_bytes(config, pc, source, &mut fetcher)?;
                    runtime.compile(&pc.name, &pc.module, &bytes)?
                }
            };
            Ok(PluginLoad {
                runtime,
                module,
                spec,
            })
        })();
        match load {
            Ok(load) => loads.push(Some(load)),
            Err(e) => {
                loads.push(None);
                failed.push(e);
            }
        }
    }
    match failed.len() {
        0 => {}
        1 => return Err(failed.remove(0)),
        _ => return Err(BuildError::Several(failed)),
    }
    let plugins = Plugin::load_all(loads.into_iter().flatten().collect(), metrics)?;
    for plugin in &plugins {
        for unknown in &plugin.module_info().unknown_imports {
            tracing::warn!(plugin = %plugin.name(), "module imports `{unknown}`, which wasmbridge does not know; calls return UNIMPLEMENTED");
        }
        if plugin.vm_tenants().len() > 1 {
            tracing::info!(plugin = %plugin.name(), shares_with = ?plugin.vm_tenants(), "the plugin's root context shares its VMs");
        }
    }
    Ok(plugins)
}

/// How a configuration's remote modules are fetched: into `server.module_cache` (or the
/// default cache), trusting `server.module_ca_file` (or `$WASMBRIDGE_CA_FILE`).
pub fn fetch_options(config: &Config) -> FetchOptions {
    let mut options = FetchOptions::new(
        config
            .server
            .module_cache
            .clone()
            .unwrap_or_else(ModuleCache::default_dir),
    );
    if let Some(ca) = &config.server.module_ca_file {
        options.ca_file = Some(ca.clone());
    }
    options
}

/// The module of a plugin whose source is not a plain local file: fetched (or taken from
/// the module cache) and checked against its digest, or a local file checked against its
/// `sha256`. The fetcher is made at the first remote module.
fn module_bytes(
    config: &Config,
    pc: &PluginConfig,
    source: &ModuleSource,
    fetcher: &mut Option<Fetcher>,
) -> Result<Vec<u8>, BuildError> {
    let fail = |error: wasmbridge_fetch::FetchError| {
        BuildError::Fetch(Box::new(ModuleFetchError {
            file: config.source.clone(),
            plugin: pc.name.clone(),
            key_path: format!(
                "{}.{}",
                pc.key_path,
                if error.is_hash_mismatch() {
                    "sha256"
                } else {
                    "module"
                }
            ),
            error,
        }))
    };
    let fetched = match source {
        ModuleSource::File { path, sha256 } => {
            return wasmbridge_fetch::read_file(path, sha256.as_ref()).map_err(fail);
        }
        ModuleSource::Https { url, sha256 } => {
            fetcher_for(config, fetcher).and_then(|f| f.fetch_https(url, sha256))
        }
        ModuleSource::Oci { reference, sha256 } => {
            fetcher_for(config, fetcher).and_then(|f| f.fetch_oci(reference, sha256.as_ref()))
        }
    }
    .map_err(fail)?;
    tracing::info!(
        plugin = %pc.name,
        source = %pc.module.display(),
        digest = %fetched.digest,
        cached = fetched.from_cache,
        path = %fetched.path.display(),
        "module fetched"
    );
    Ok(fetched.bytes)
}

/// The fetcher of a configuration, made at its first use.
fn fetcher_for<'f>(
    config: &Config,
    slot: &'f mut Option<Fetcher>,
) -> Result<&'f Fetcher, wasmbridge_fetch::FetchError> {
    match slot {
        Some(fetcher) => Ok(fetcher),
        None => Ok(slot.insert(Fetcher::new(fetch_options(config))?)),
    }
}

/// The host's spec for one plugin of the file.
pub fn plugin_spec(
    pc: &PluginConfig,
    replicas: usize,
    node: Arc<NodeInfo>,
    callouts: Callouts,
) -> PluginSpec {
    PluginSpec {
        name: pc.name.clone(),
        root_id: pc.root_id.clone(),
        vm_id: pc.vm_id.clone(),
        configuration: Bytes::from(pc.configuration.clone()),
        vm_configuration: Bytes::from(pc.vm_configuration.clone()),
        failure_policy: match pc.failure_policy {
            crate::FailurePolicy::FailClosed => wasmbridge_host::FailurePolicy::FailClosed,
            crate::FailurePolicy::FailOpen => wasmbridge_host::FailurePolicy::FailOpen,
            crate::FailurePolicy::FailReload => wasmbridge_host::FailurePolicy::FailReload,
        },
        replicas: pc.pool.replicas.unwrap_or(replicas),
        pool: pool_options(pc),
        log_only: pc.log_only,
        node,
        callouts,
        foreign: ForeignFunctions::default(),
        limits: limits(&pc.limits),
        capabilities: Capabilities {
            allowed: pc.capabilities.allowed.clone(),
            denied: pc.capabilities.denied.clone(),
            clusters: pc.capabilities.clusters.clone(),
        },
        redact: Redaction {
            headers: pc.redact.headers.clone(),
            properties: pc.redact.properties.clone(),
        },
        environment_variables: EnvironmentVariables {
            host_env_keys: pc.environment_variables.host_env_keys.clone(),
            key_values: pc.environment_variables.key_values.clone(),
        },
    }
}

/// The host's pool options for a plugin's `isolation`, `pool` and `reload`.
pub fn pool_options(pc: &PluginConfig) -> PoolOptions {
    PoolOptions {
        isolation: match pc.isolation {
            crate::Isolation::Shared => Isolation::Shared,
            crate::Isolation::PerStream => Isolation::PerStream,
        },
        selection: match pc.pool.selection {
            crate::Selection::Thread => wasmbridge_host::Selection::Thread,
            crate::Selection::LeastLoaded => wasmbridge_host::Selection::LeastLoaded,
        },
        recycle_streams: pc.pool.recycle_streams,
        recycle_memory: pc.pool.recycle_memory,
        backoff: Backoff {
            base: pc.reload.base_interval,
            max: pc.reload.max_interval,
        },
    }
}

/// A plugin's limits: its profile's values, with what the config sets over them.
pub fn limits(config: &LimitsConfig) -> Limits {
    let mut limits = match config.profile {
        crate::LimitsProfile::Default => Limits::default(),
        crate::LimitsProfile::Strict => Limits::strict(),
    };
    if let Some(bytes) = config.memory {
        limits.memory_bytes = bytes;
    }
    if let Some(cpu) = config.cpu {
        limits.cpu = cpu;
    }
    limits.cpu_by_callback = config
        .cpu_by_callback
        .iter()
        .map(|(name, cpu)| (format!("proxy_{name}"), *cpu))
        .collect();
    if let Some(bytes) = config.body {
        limits.body_bytes = bytes;
    }
    if let Some(bytes) = config.header_bytes {
        limits.header_bytes = bytes;
    }
    if let Some(pairs) = config.header_pairs {
        limits.header_pairs = pairs;
    }
    if let Some(callouts) = config.callouts {
        limits.callouts = callouts;
    }
    if let Some(bytes) = config.log_line {
        limits.log_line_bytes = bytes;
    }
    limits.fuel = config.fuel;
    limits.fuel_by_callback = config
        .fuel_by_callback
        .iter()
        .map(|(name, fuel)| (format!("proxy_{name}"), *fuel))
        .collect();
    if let Some(bytes) = config.stack {
        limits.stack_bytes = bytes;
    }
    limits
}

/// Where a route sends a request: a cluster (the adapter's handle `C`) or a direct
/// response.
#[derive(Debug, Clone)]
pub enum Destination<C> {
    /// Forward to this cluster.
    Cluster(C),
    /// Answer with this reply instead of forwarding.
    Direct(LocalReply),
}

/// One route of the table: its match, plugin chain and destination.
#[derive(Debug)]
pub struct Route<C> {
    /// The route's name (`xds.route_name`, the metrics label).
    pub name: Arc<str>,
    /// The route as configured (its match).
    pub config: crate::RouteConfig,
    /// Where it sends requests.
    pub destination: Destination<C>,
    /// Its plugins.
    pub chain: Arc<FilterChain>,
}

/// The routing table of a configuration: the first route whose match holds takes the
/// request. `C` is how the adapter holds a cluster; routes to clusters it does not have
/// are left out. Both adapters route through it.
#[derive(Debug)]
pub struct Routes<C> {
    routes: Vec<Route<C>>,
}

impl<C> Routes<C> {
    /// The routes of `config` over its loaded `plugins`; `cluster` gives the adapter's
    /// handle of a cluster by name.
    pub fn new(
        config: &Config,
        plugins: &[Arc<Plugin>],
        cluster: impl Fn(&str) -> Option<C>,
    ) -> Routes<C> {
        let mut routes = Vec::new();
        for rc in &config.routes {
            let chain = FilterChain::new(
                rc.plugins
                    .iter()
                    .filter_map(|name| plugins.iter().find(|p| p.name() == name).cloned())
                    .collect(),
            );
            let destination = match &rc.action {
                crate::RouteAction::Cluster(name) => match cluster(name) {
                    Some(c) => Destination::Cluster(c),
                    None => continue,
                },
                crate::RouteAction::DirectResponse(d) => Destination::Direct(direct_reply(d)),
            };
            routes.push(Route {
                name: Arc::from(rc.name.as_str()),
                config: rc.clone(),
                destination,
                chain: Arc::new(chain),
            });
        }
        Routes { routes }
    }

    /// The index of the route that takes the request, as its head is now: among the
    /// routes whose `hosts` match the request's host most specifically (as Envoy picks a
    /// virtual host; routes without `hosts` count as `*`), the first whose path and
    /// headers match.
    pub fn position(&self, req: &http::request::Parts) -> Option<usize> {
        let path = req.uri.path();
        let header = |name: &str| request_header(req, name);
        let authority = header(":authority");
        let host = authority
            .as_deref()
            .and_then(|h| std::str::from_utf8(h).ok());
        // One pass: each route's hosts are ranked once; a more specific rank starts the
        // search for the first matching route again.
        let mut best: Option<((u8, usize), Option<usize>)> = None;
        for (i, route) in self.routes.iter().enumerate() {
            let Some(rank) = route.config.host_rank(host) else {
                continue;
            };
            let (top, found) = best.get_or_insert((rank, None));
            if rank > *top {
                (*top, *found) = (rank, None);
            }
            if rank == *top
                && found.is_none()
                && route.config.matches_path_and_headers(path, &header)
            {
                *found = Some(i);
            }
        }
        best.and_then(|(_, found)| found)
    }

    /// The route at `index` (from [`Routes::position`]).
    pub fn get(&self, index: usize) -> Option<&Route<C>> {
        self.routes.get(index)
    }

    /// The first route that takes the request.
    pub fn find(&self, req: &http::request::Parts) -> Option<&Route<C>> {
        self.position(req).and_then(|i| self.get(i))
    }

    /// What runs for the request: its route's chain and destination; `about` gives a
    /// cluster's name and endpoint count.
    pub fn select(
        &self,
        req: &http::request::Parts,
        about: impl Fn(&C) -> (Arc<str>, u32),
    ) -> RouteSelection {
        let Some(route) = self.find(req) else {
            return RouteSelection::default();
        };
        let (direct, cluster) = match &route.destination {
            Destination::Direct(reply) => (Some(reply.clone()), None),
            Destination::Cluster(c) => (None, Some(about(c))),
        };
        RouteSelection {
            chain: Some(route.chain.clone()),
            direct,
            route: Some(route.name.clone()),
            endpoints: cluster.as_ref().map(|c| c.1),
            cluster: cluster.map(|c| c.0),
        }
    }
}

/// A route's `direct_response` as the host's reply.
pub fn direct_reply(d: &DirectResponse) -> LocalReply {
    LocalReply::direct_response(d.status, Bytes::from(d.body.clone()), &d.headers)
}

/// The gateway's answer when no route takes a request.
pub fn no_route_reply() -> LocalReply {
    LocalReply {
        status: 404,
        details: "route_not_found".into(),
        body: Bytes::from_static(b"no route\n"),
        headers: Vec::new(),
        grpc_status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_take_the_profile_then_what_the_config_sets() {
        let config = LimitsConfig {
            profile: crate::LimitsProfile::Strict,
            body: Some(1000),
            header_pairs: Some(7),
            log_line: Some(300),
            ..Default::default()
        };
        assert_eq!(
            limits(&config),
            Limits {
                body_bytes: 1000,
                header_pairs: 7,
                log_line_bytes: 300,
                ..Limits::strict()
            }
        );
        let config = LimitsConfig {
            header_bytes: Some(10),
            callouts: Some(3),
            fuel: Some(5000),
            fuel_by_callback: vec![("on_configure".into(), 90_000)],
            stack: Some(64 << 10),
            ..Default::default()
        };
        assert_eq!(
            limits(&config),
            Limits {
                header_bytes: 10,
                callouts: 3,
                fuel: Some(5000),
                fuel_by_callback: vec![("proxy_on_configure".into(), 90_000)],
                stack_bytes: 64 << 10,
                ..Limits::default()
            }
        );
    }

    #[test]
    fn the_config_takes_the_stack_sizes_the_host_takes() {
        assert_eq!(crate::MIN_STACK_BYTES, Limits::MIN_STACK_BYTES);
        assert_eq!(crate::MAX_STACK_BYTES, Limits::MAX_STACK_BYTES);
    }
}
