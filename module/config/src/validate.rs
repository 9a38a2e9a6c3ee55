//! The semantic pass: turns the file as written into a [`Config`], checking what the types
//! cannot (references, uniqueness, ranges) and reporting the first problem in file order
//! with its key path.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::ConfigError;
use crate::payload;
use crate::raw::{
    RawAdmin, RawCapabilities, RawCluster, RawConfig, RawDirectResponse, RawEnvironment,
    RawHeaderLimits, RawHeaderMatch, RawLimits, RawListener, RawMatch, RawNode, RawPlugin,
    RawProfile, RawRedact, RawRoute, RawRoutePlugin, RawServer, RawSize,
};
use crate::raw::{
    RawHashOn, RawHealthCheck, RawIsolation, RawPhase, RawPool, RawReload, RawSelection,
};
use crate::{
    AdminConfig, CalloutConfig, CapabilitiesConfig, ClusterConfig, Config, DirectResponse,
    EnvironmentConfig, FailurePolicy, HeaderMatch, HeaderRule, Isolation, LimitsConfig,
    LimitsProfile, ListenerConfig, NodeConfig, Pattern, Phase, PluginConfig, PoolConfig,
    RedactConfig, ReloadConfig, RouteAction, RouteConfig, RouteMatch, Selection, ServerConfig,
    StructValue,
};
use crate::{Digest, ModuleSource, OciReference};
use crate::{HashOn, HealthCheck, LbPolicy, ListenerTls, UpstreamTls};

const DEFAULT_GRACE_PERIOD_SECONDS: u64 = 1;
const DEFAULT_SHUTDOWN_TIMEOUT_SECONDS: u64 = 5;
/// The admin listener's address when `admin` gives none: loopback only.
const DEFAULT_ADMIN_ADDRESS: &str = "127.0.0.1:9901";
/// The most retries a cluster may ask for.
const MAX_RETRIES: u32 = 5;
const DEFAULT_UPGRADE_SOCK: &str = "/tmp/wasmbridge_upgrade.sock";
const DEFAULT_PER_STREAM_INSTANCES: u32 = 1000;
const DEFAULT_CONNECT_TIMEOUT_MS: u64 = 1000;
const DEFAULT_READ_TIMEOUT_MS: u64 = 30_000;

/// What every check needs: the source name for errors, the base directory for modules.
struct Validator<'a> {
    source: &'a Path,
    base_dir: &'a Path,
}

pub(crate) fn validate(
    raw: RawConfig,
    source: &Path,
    base_dir: &Path,
) -> Result<Config, ConfigError> {
    let v = Validator { source, base_dir };
    let server = v.server(raw.server)?;
    let node = v.node(raw.node.unwrap_or_default())?;
    let listeners = v.listeners(raw.listeners.unwrap_or_default())?;
    let admin = raw
        .admin
        .map(|admin| v.admin(admin, &listeners))
        .transpose()?;
    let clusters = v.clusters(raw.clusters.unwrap_or_default())?;
    let mut plugins = v.plugins(raw.plugins.unwrap_or_default(), &clusters)?;
    let (routes, overrides) = v.routes(raw.routes.unwrap_or_default(), &clusters, &plugins)?;
    plugins.extend(overrides);
    Ok(Config {
        source: source.to_path_buf(),
        server,
        node,
        listeners,
        admin,
        clusters,
        plugins,
        routes,
    })
}

impl Validator<'_> {
    fn error(&self, key_path: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError::invalid(self.source, key_path, message)
    }

    fn server(&self, raw: Option<RawServer>) -> Result<ServerConfig, ConfigError> {
        let raw = raw.unwrap_or(RawServer {
            threads: None,
            grace_period_seconds: None,
            shutdown_timeout_seconds: None,
            watch: None,
            upgrade_sock: None,
            compile_cache: None,
            per_stream_instances: None,
            module_cache: None,
            module_ca_file: None,
        });
        let (threads, grace, compile_cache, per_stream_instances, module_cache, module_ca_file) = (
            raw.threads,
            raw.grace_period_seconds,
            raw.compile_cache,
            raw.per_stream_instances,
            raw.module_cache,
            raw.module_ca_file,
        );
        if per_stream_instances == Some(0) {
            return Err(self.error("server.per_stream_instances", "must be at least 1"));
        }
        let threads = match threads {
            Some(0) => return Err(self.error("server.threads", "must be at least 1")),
            Some(threads) => threads,
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        };
        let compile_cache = match compile_cache {
            Some(dir) if dir.trim().is_empty() => {
                return Err(self.error(
                    "server.compile_cache",
                    "must not be empty (leave the key out, or set it to null, for no cache)",
                ));
            }
            Some(dir) => Some(self.resolve(&dir)),
            None => None,
        };
        let path = |key: &str, value: Option<String>| match value {
            Some(text) if text.trim().is_empty() => Err(self.error(
                format!("server.{key}"),
                "must not be empty (leave the key out for the default)",
            )),
            Some(text) => Ok(Some(self.resolve(&text))),
            None => Ok(None),
        };
        let module_cache = path("module_cache", module_cache)?;
        let module_ca_file = path("module_ca_file", module_ca_file)?;
        Ok(ServerConfig {
            module_cache,
            module_ca_file,
            threads,
            grace_period_seconds: grace.unwrap_or(DEFAULT_GRACE_PERIOD_SECONDS),
            shutdown_timeout_seconds: raw
                .shutdown_timeout_seconds
                .unwrap_or(DEFAULT_SHUTDOWN_TIMEOUT_SECONDS),
            watch: raw.watch.unwrap_or(true),
            upgrade_sock: match raw.upgrade_sock {
                Some(path) if path.trim().is_empty() => {
                    return Err(self.error("server.upgrade_sock", "must not be empty"));
                }
                Some(path) => self.resolve(&path),
                None => PathBuf::from(DEFAULT_UPGRADE_SOCK),
            },
            compile_cache,
            per_stream_instances: per_stream_instances.unwrap_or(DEFAULT_PER_STREAM_INSTANCES),
        })
    }

    fn listeners(&self, raw: Vec<RawListener>) -> Result<Vec<ListenerConfig>, ConfigError> {
        if raw.is_empty() {
            return Err(self.error("listeners", "at least one listener is required"));
        }
        let mut listeners: Vec<ListenerConfig> = Vec::with_capacity(raw.len());
        for (index, listener) in raw.into_iter().enumerate() {
            let key = format!("listeners[{index}].address");
            let address = self.socket_addr(&key, &listener.address)?;
            if let Some(other) = same_address(&listeners, address) {
                return Err(self.error(
                    key,
                    format!("`{address}` is already used by listeners[{other}]"),
                ));
            }
            let tls = match listener.tls {
                None => None,
                Some(tls) => {
                    let at = format!("listeners[{index}].tls");
                    let file = |key: &str, value: &str| {
                        if value.trim().is_empty() {
                            Err(self.error(format!("{at}.{key}"), "must name a PEM file"))
                        } else {
                            Ok(self.resolve(value))
                        }
                    };
                    Some(ListenerTls {
                        cert: file("cert", &tls.cert)?,
                        key: file("key", &tls.key)?,
                    })
                }
            };
            listeners.push(ListenerConfig {
                address,
                http2: listener.http2.unwrap_or(true),
                tls,
            });
        }
        Ok(listeners)
    }

    fn admin(
        &self,
        raw: RawAdmin,
        listeners: &[ListenerConfig],
    ) -> Result<AdminConfig, ConfigError> {
        let address = self.socket_addr(
            "admin.address",
            raw.address.as_deref().unwrap_or(DEFAULT_ADMIN_ADDRESS),
        )?;
        if let Some(other) = same_address(listeners, address) {
            return Err(self.error(
                "admin.address",
                format!("`{address}` is already used by listeners[{other}]"),
            ));
        }
        let token = match raw.token {
            Some(t)
                if t.trim().is_empty()
                    || t.chars().any(|c| c.is_whitespace() || c.is_control()) =>
            {
                return Err(self.error(
                    "admin.token",
                    "must be a non-empty token without spaces or control characters (leave the key out for no token)",
                ));
            }
            t => t,
        };
        Ok(AdminConfig { address, token })
    }

    fn socket_addr(&self, key: &str, text: &str) -> Result<SocketAddr, ConfigError> {
        text.trim()
            .parse()
            .map_err(|_| self.error(key, format!("invalid socket address `{text}`")))
    }

    fn clusters(&self, raw: Vec<RawCluster>) -> Result<Vec<ClusterConfig>, ConfigError> {
        let mut seen = HashMap::new();
        let mut clusters = Vec::with_capacity(raw.len());
        for (index, cluster) in raw.into_iter().enumerate() {
            let at = format!("clusters[{index}]");
            self.unique_name(&mut seen, &at, "cluster", &cluster.name)?;
            if cluster.endpoints.is_empty() {
                return Err(self.error(
                    format!("{at}.endpoints"),
                    "at least one endpoint is required",
                ));
            }
            for (i, endpoint) in cluster.endpoints.iter().enumerate() {
                if !is_endpoint(endpoint) {
                    return Err(self.error(
                        format!("{at}.endpoints[{i}]"),
                        format!(
                            "invalid endpoint `{endpoint}`: expected host:port with a port in \
                             1..=65535 (IPv6 in brackets)"
                        ),
                    ));
                }
            }
            let connect_timeout = self.millis(
                &at,
                "connect_timeout_ms",
                cluster.connect_timeout_ms,
                DEFAULT_CONNECT_TIMEOUT_MS,
            )?;
            let read_timeout = self.millis(
                &at,
                "read_timeout_ms",
                cluster.read_timeout_ms,
                DEFAULT_READ_TIMEOUT_MS,
            )?;
            let total_timeout = match cluster.total_timeout_ms {
                None => None,
                Some(ms) => Some(self.millis(&at, "total_timeout_ms", Some(ms), ms)?),
            };
            let retries = cluster.retries.unwrap_or(0);
            if retries > MAX_RETRIES {
                return Err(self.error(
                    format!("{at}.retries"),
                    format!("must be at most {MAX_RETRIES}"),
                ));
            }
            let lb_policy = self.lb_policy(&at, cluster.lb_policy.as_deref(), cluster.hash_on)?;
            let health_check = match cluster.health_check {
                None => None,
                Some(hc) => Some(self.health_check(&at, hc)?),
            };
            let tls = cluster.tls.map(|tls| UpstreamTls {
                sni: tls.sni.filter(|s| !s.is_empty()),
                verify: tls.verify.unwrap_or(true),
                ca: tls.ca.map(|ca| self.resolve(&ca)),
            });
            clusters.push(ClusterConfig {
                name: cluster.name,
                endpoints: cluster.endpoints,
                http2: cluster.http2.unwrap_or(false),
                connect_timeout,
                read_timeout,
                total_timeout,
                retries,
                lb_policy,
                health_check,
                tls,
            });
        }
        Ok(clusters)
    }

    fn lb_policy(
        &self,
        at: &str,
        policy: Option<&str>,
        hash_on: Option<RawHashOn>,
    ) -> Result<LbPolicy, ConfigError> {
        let policy = match policy.unwrap_or("round_robin") {
            "round_robin" => LbPolicy::RoundRobin,
            "random" => LbPolicy::Random,
            "consistent_hash" => {
                let on = match hash_on {
                    None => HashOn::SourceIp,
                    Some(RawHashOn {
                        header: Some(h),
                        source_ip: None,
                        path: None,
                    }) if !h.trim().is_empty() => HashOn::Header(h.trim().to_ascii_lowercase()),
                    Some(RawHashOn {
                        header: None,
                        source_ip: Some(true),
                        path: None,
                    }) => HashOn::SourceIp,
                    Some(RawHashOn {
                        header: None,
                        source_ip: None,
                        path: Some(true),
                    }) => HashOn::Path,
                    Some(_) => {
                        return Err(self.error(
                            format!("{at}.hash_on"),
                            "give exactly one of `header: NAME`, `source_ip: true`, `path: true`",
                        ));
                    }
                };
                return Ok(LbPolicy::ConsistentHash(on));
            }
            other => {
                return Err(self.error(
                    format!("{at}.lb_policy"),
                    format!(
                        "unknown policy `{other}`: expected round_robin, random or consistent_hash"
                    ),
                ));
            }
        };
        if hash_on.is_some() {
            return Err(self.error(
                format!("{at}.hash_on"),
                "only with `lb_policy: consistent_hash`",
            ));
        }
        Ok(policy)
    }

    fn health_check(&self, at: &str, raw: RawHealthCheck) -> Result<HealthCheck, ConfigError> {
        let at = format!("{at}.health_check");
        let path = raw.path.unwrap_or_else(|| "/healthz".to_string());
        if !path.starts_with('/') || path.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(self.error(
                format!("{at}.path"),
                format!("invalid path `{path}`: must start with `/` and hold no spaces"),
            ));
        }
        let threshold = |key: &str, value: Option<u32>| match value.unwrap_or(1) {
            0 => Err(self.error(format!("{at}.{key}"), "must be at least 1")),
            n => Ok(n),
        };
        Ok(HealthCheck {
            path,
            interval: self.millis(&at, "interval_ms", raw.interval_ms, 5000)?,
            timeout: self.millis(&at, "timeout_ms", raw.timeout_ms, 1000)?,
            healthy_threshold: threshold("healthy_threshold", raw.healthy_threshold)?,
            unhealthy_threshold: threshold("unhealthy_threshold", raw.unhealthy_threshold)?,
        })
    }

    fn millis(
        &self,
        at: &str,
        key: &str,
        value: Option<u64>,
        default: u64,
    ) -> Result<Duration, ConfigError> {
        match value.unwrap_or(default) {
            0 => Err(self.error(format!("{at}.{key}"), "must be at least 1")),
            ms => Ok(Duration::from_millis(ms)),
        }
    }

    fn plugins(
        &self,
        raw: Vec<RawPlugin>,
        clusters: &[ClusterConfig],
    ) -> Result<Vec<PluginConfig>, ConfigError> {
        let mut seen = HashMap::new();
        let mut plugins = Vec::with_capacity(raw.len());
        for (index, plugin) in raw.into_iter().enumerate() {
            let at = format!("plugins[{index}]");
            self.unique_name(&mut seen, &at, "plugin", &plugin.name)?;
            if plugin.module.trim().is_empty() {
                return Err(self.error(format!("{at}.module"), "must not be empty"));
            }
            let (module, source) = self.module_source(&at, &plugin.module, plugin.sha256)?;
            let configuration =
                self.payload(&at, "configuration", plugin.configuration.as_ref())?;
            let vm_configuration =
                self.payload(&at, "vm_configuration", plugin.vm_configuration.as_ref())?;
            let failure_policy: FailurePolicy =
                plugin.failure_policy.map(Into::into).unwrap_or_default();
            let isolation = match plugin.isolation {
                None | Some(RawIsolation::Shared) => Isolation::Shared,
                Some(RawIsolation::PerStream) => Isolation::PerStream,
            };
            let pool = self.pool(&at, isolation, plugin.pool)?;
            let reload = self.reload(&at, failure_policy, plugin.reload)?;
            let callouts = CalloutConfig {
                allow_host_port: plugin
                    .callouts
                    .and_then(|c| c.allow_host_port)
                    .unwrap_or(false),
            };
            let capabilities = self.capabilities(&at, plugin.capabilities, clusters, callouts)?;
            let redact = self.redact(&at, plugin.redact)?;
            let environment_variables = self.environment(&at, plugin.environment_variables)?;
            plugins.push(PluginConfig {
                name: plugin.name,
                root_id: plugin.root_id.unwrap_or_default(),
                vm_id: plugin.vm_id.unwrap_or_default(),
                module,
                source,
                configuration,
                vm_configuration,
                failure_policy,
                callouts,
                limits: self.limits(&at, plugin.limits)?,
                isolation,
                pool,
                reload,
                log_only: plugin.log_only.unwrap_or(false),
                capabilities,
                redact,
                environment_variables,
                phase: match plugin.phase {
                    None | Some(RawPhase::Unspecified) => Phase::Unspecified,
                    Some(RawPhase::Authn) => Phase::Authn,
                    Some(RawPhase::Authz) => Phase::Authz,
                    Some(RawPhase::Stats) => Phase::Stats,
                },
                priority: plugin.priority.unwrap_or(0),
                base: None,
                key_path: at,
            });
        }
        Ok(plugins)
    }

    fn pool(
        &self,
        at: &str,
        isolation: Isolation,
        raw: Option<RawPool>,
    ) -> Result<PoolConfig, ConfigError> {
        let Some(raw) = raw else {
            return Ok(PoolConfig::default());
        };
        let at = format!("{at}.pool");
        if isolation == Isolation::PerStream {
            return Err(self.error(
                at,
                "does not apply with `isolation: per_stream`, where every stream has a VM of its own",
            ));
        }
        if raw.replicas == Some(0) {
            return Err(self.error(format!("{at}.replicas"), "must be at least 1"));
        }
        let (mut recycle_streams, mut recycle_memory) = (None, None);
        if let Some(recycle) = raw.recycle {
            if recycle.streams == Some(0) {
                return Err(self.error(format!("{at}.recycle.streams"), "must be at least 1"));
            }
            recycle_streams = recycle.streams;
            recycle_memory = match recycle.memory {
                None => None,
                Some(RawSize::Bytes(n)) => Some(n),
                Some(RawSize::Text(text)) => Some(
                    parse_size(&text)
                        .map_err(|message| self.error(format!("{at}.recycle.memory"), message))?,
                ),
            };
        }
        Ok(PoolConfig {
            replicas: raw.replicas,
            selection: match raw.selection {
                None | Some(RawSelection::Thread) => Selection::Thread,
                Some(RawSelection::LeastLoaded) => Selection::LeastLoaded,
            },
            recycle_streams,
            recycle_memory,
        })
    }

    fn reload(
        &self,
        at: &str,
        policy: FailurePolicy,
        raw: Option<RawReload>,
    ) -> Result<ReloadConfig, ConfigError> {
        let Some(raw) = raw else {
            return Ok(ReloadConfig::default());
        };
        let at = format!("{at}.reload");
        if policy != FailurePolicy::FailReload {
            return Err(self.error(
                at,
                format!(
                    "applies only with `failure_policy: fail_reload` (this plugin has `{}`)",
                    policy.as_str()
                ),
            ));
        }
        let Some(backoff) = raw.backoff else {
            return Ok(ReloadConfig::default());
        };
        let duration = |key: &str, text: Option<String>| {
            text.map(|t| {
                parse_duration(&t)
                    .map_err(|message| self.error(format!("{at}.backoff.{key}"), message))
            })
            .transpose()
        };
        let base = duration("base_interval", backoff.base_interval)?
            .unwrap_or(ReloadConfig::default().base_interval);
        let max = duration("max_interval", backoff.max_interval)?.unwrap_or(base * 10);
        if max < base {
            return Err(self.error(
                format!("{at}.backoff.max_interval"),
                "must not be shorter than `base_interval`",
            ));
        }
        Ok(ReloadConfig {
            base_interval: base,
            max_interval: max,
        })
    }

    fn limits(&self, at: &str, raw: Option<RawLimits>) -> Result<LimitsConfig, ConfigError> {
        let Some(raw) = raw else {
            return Ok(LimitsConfig::default());
        };
        let at = format!("{at}.limits");
        let memory = match raw.memory {
            None => None,
            Some(RawSize::Bytes(n)) => Some(n),
            Some(RawSize::Text(text)) => Some(
                parse_size(&text).map_err(|message| self.error(format!("{at}.memory"), message))?,
            ),
        };
        let duration = |key: String, text: &str| {
            parse_duration(text).map_err(|message| self.error(key, message))
        };
        let cpu = match raw.cpu {
            None => None,
            Some(text) => Some(duration(format!("{at}.cpu"), &text)?),
        };
        let fuel = |key: String, raw: Option<u64>| match raw {
            Some(0) => Err(self.error(key, "must be at least 1")),
            other => Ok(other),
        };
        let stack = match raw.stack {
            None => None,
            Some(size) => {
                let key = format!("{at}.stack");
                let bytes = match size {
                    RawSize::Bytes(n) => n,
                    RawSize::Text(text) => {
                        parse_size(&text).map_err(|message| self.error(key.clone(), message))?
                    }
                };
                if !(crate::MIN_STACK_BYTES..=crate::MAX_STACK_BYTES).contains(&bytes) {
                    return Err(self.error(
                        key,
                        format!(
                            "must be from {}KiB to {}MiB, not {bytes} bytes (guest calls run on \
                             worker threads with 2 MiB native stacks, which the proxy's own \
                             frames share)",
                            crate::MIN_STACK_BYTES >> 10,
                            crate::MAX_STACK_BYTES >> 20
                        ),
                    ));
                }
                Some(bytes)
            }
        };
        let mut cpu_by_callback = Vec::new();
        let mut fuel_by_callback = Vec::new();
        for (name, limits) in raw.callbacks.unwrap_or_default() {
            let key = format!("{at}.callbacks.{name}");
            let known = wasmbridge_abi::called_callbacks()
                .any(|c| c.name.strip_prefix("proxy_") == Some(name.as_str()));
            if !known {
                return Err(self.error(
                    key,
                    "is not a callback the host calls (use a name such as `on_request_headers`)",
                ));
            }
            if let Some(text) = limits.cpu {
                cpu_by_callback.push((name.clone(), duration(format!("{key}.cpu"), &text)?));
            }
            if let Some(n) = fuel(format!("{key}.fuel"), limits.fuel)? {
                fuel_by_callback.push((name, n));
            }
        }
        let RawHeaderLimits {
            bytes: header_bytes,
            pairs: header_pairs,
        } = raw.headers.unwrap_or(RawHeaderLimits {
            bytes: None,
            pairs: None,
        });
        Ok(LimitsConfig {
            profile: match raw.profile {
                None | Some(RawProfile::Default) => LimitsProfile::Default,
                Some(RawProfile::Strict) => LimitsProfile::Strict,
            },
            memory,
            cpu,
            cpu_by_callback,
            fuel: fuel(format!("{at}.fuel"), raw.fuel)?,
            fuel_by_callback,
            stack,
            body: self.cap_size(format!("{at}.body"), raw.body)?,
            header_bytes: self.cap_size(format!("{at}.headers.bytes"), header_bytes)?,
            header_pairs: self.cap_count(format!("{at}.headers.pairs"), header_pairs)?,
            callouts: self.cap_count(format!("{at}.callouts"), raw.callouts)?,
            log_line: self.cap_size(format!("{at}.log_line"), raw.log_line)?,
        })
    }

    /// A size cap (`body`, `headers.bytes`, `log_line`): bytes or a size with a unit, above
    /// zero.
    fn cap_size(&self, key: String, raw: Option<RawSize>) -> Result<Option<u64>, ConfigError> {
        let bytes = match raw {
            None => return Ok(None),
            Some(RawSize::Bytes(n)) => n,
            Some(RawSize::Text(text)) => {
                parse_size(&text).map_err(|message| self.error(key.clone(), message))?
            }
        };
        if bytes == 0 {
            return Err(self.error(key, "must be above zero"));
        }
        Ok(Some(bytes))
    }

    /// A count cap (`headers.pairs`, `callouts`): a whole number from 1 to 2³²−1.
    fn cap_count(&self, key: String, raw: Option<u64>) -> Result<Option<u32>, ConfigError> {
        match raw {
            None => Ok(None),
            Some(0) => Err(self.error(key, "must be at least 1")),
            Some(n) => u32::try_from(n)
                .map(Some)
                .map_err(|_| self.error(key, format!("{n} is too large (at most {})", u32::MAX))),
        }
    }

    fn capabilities(
        &self,
        at: &str,
        raw: Option<RawCapabilities>,
        clusters: &[ClusterConfig],
        callouts: CalloutConfig,
    ) -> Result<CapabilitiesConfig, ConfigError> {
        let Some(raw) = raw else {
            return Ok(CapabilitiesConfig::default());
        };
        let at = format!("{at}.capabilities");
        let names = |key: &str, list: &[String]| {
            for (i, name) in list.iter().enumerate() {
                wasmbridge_abi::capability::expand(name)
                    .map_err(|e| self.error(format!("{at}.{key}[{i}]"), e.to_string()))?;
            }
            Ok::<(), ConfigError>(())
        };
        if let Some(allowed) = &raw.allowed {
            if allowed.is_empty() {
                return Err(self.error(
                    format!("{at}.allowed"),
                    "an empty list would deny every hostcall; leave `allowed` out to allow                      them all, or list what the plugin needs",
                ));
            }
            names("allowed", allowed)?;
        }
        let denied = raw.denied.unwrap_or_default();
        names("denied", &denied)?;
        if let Some(targets) = &raw.clusters {
            for (i, name) in targets.iter().enumerate() {
                let known = clusters.iter().any(|c| &c.name == name)
                    || (callouts.allow_host_port && is_endpoint(name));
                if !known {
                    let also = if callouts.allow_host_port {
                        " nor a `host:port` upstream"
                    } else {
                        " (a `host:port` upstream needs `callouts.allow_host_port: true`)"
                    };
                    return Err(self.error(
                        format!("{at}.clusters[{i}]"),
                        format!("`{name}` is not a cluster of this file{also}"),
                    ));
                }
            }
        }
        Ok(CapabilitiesConfig {
            allowed: raw.allowed,
            denied,
            clusters: raw.clusters,
        })
    }

    fn redact(&self, at: &str, raw: Option<RawRedact>) -> Result<RedactConfig, ConfigError> {
        let Some(raw) = raw else {
            return Ok(RedactConfig::default());
        };
        let at = format!("{at}.redact");
        let pseudo = [":authority", ":method", ":path", ":scheme"];
        let header = |key: String, name: &str| {
            let lower = name.to_ascii_lowercase();
            if is_header_name(&lower) || pseudo.contains(&lower.as_str()) {
                Ok(lower)
            } else {
                Err(self.error(
                    key,
                    format!(
                        "`{name}` is not a request header name (a token, or one of {})",
                        pseudo.join(", ")
                    ),
                ))
            }
        };
        let mut headers = Vec::new();
        for (i, name) in raw.headers.unwrap_or_default().iter().enumerate() {
            headers.push(header(format!("{at}.headers[{i}]"), name)?);
        }
        let properties = raw.properties.unwrap_or_default();
        for (i, path) in properties.iter().enumerate() {
            let key = format!("{at}.properties[{i}]");
            if path.is_empty() || path.split('.').any(str::is_empty) {
                return Err(self.error(
                    key,
                    format!("`{path}` is not a dotted property path such as `source.address`"),
                ));
            }
            if let Some(name) = path.strip_prefix("request.headers.") {
                header(key, name)?;
            }
        }
        Ok(RedactConfig {
            headers,
            properties,
        })
    }

    fn environment(
        &self,
        at: &str,
        raw: Option<RawEnvironment>,
    ) -> Result<EnvironmentConfig, ConfigError> {
        let Some(raw) = raw else {
            return Ok(EnvironmentConfig::default());
        };
        let at = format!("{at}.environment_variables");
        let mut seen: HashMap<String, String> = HashMap::new();
        let mut name = |key: String, name: &str| {
            if name.is_empty() || name.contains(['=', '\0']) {
                return Err(self.error(
                    key,
                    format!("`{name}` is not a variable name (it is empty or holds `=` or NUL)"),
                ));
            }
            if let Some(first) = seen.get(name) {
                return Err(self.error(
                    key,
                    format!("`{name}` is already given at {first}; every name must be unique"),
                ));
            }
            seen.insert(name.to_string(), key);
            Ok(())
        };
        let key_values = raw.key_values.unwrap_or_default().0;
        for (variable, value) in &key_values {
            let key = format!("{at}.key_values.{variable}");
            name(key.clone(), variable)?;
            if value.contains('\0') {
                return Err(self.error(key, "the value holds a NUL character"));
            }
        }
        let host_env_keys = raw.host_env_keys.unwrap_or_default();
        for (i, variable) in host_env_keys.iter().enumerate() {
            name(format!("{at}.host_env_keys[{i}]"), variable)?;
        }
        Ok(EnvironmentConfig {
            host_env_keys,
            key_values,
        })
    }

    fn payload(
        &self,
        at: &str,
        key: &str,
        value: Option<&serde_yaml::Value>,
    ) -> Result<Vec<u8>, ConfigError> {
        payload::encode(value).map_err(|err| {
            let mut key_path = format!("{at}.{key}");
            if !err.key_path.is_empty() {
                if !err.key_path.starts_with('[') {
                    key_path.push('.');
                }
                key_path.push_str(&err.key_path);
            }
            self.error(key_path, err.message)
        })
    }

    /// A plugin's `module` and `sha256`: a path, `file://`, `https://` (with a required
    /// digest; `http://` only for loopback hosts) or `oci://`. Nothing is fetched here.
    fn module_source(
        &self,
        at: &str,
        module: &str,
        sha256: Option<String>,
    ) -> Result<(PathBuf, ModuleSource), ConfigError> {
        let module_key = format!("{at}.module");
        let sha256_key = format!("{at}.sha256");
        let sha256 = sha256
            .map(|text| {
                text.trim().parse::<Digest>().map_err(|e| {
                    self.error(&sha256_key, format!("{e} (as `sha256sum` prints them)"))
                })
            })
            .transpose()?;
        let text = module.trim();
        let Some((scheme, rest)) = text.split_once("://") else {
            let path = self.resolve(text);
            return Ok((path.clone(), ModuleSource::File { path, sha256 }));
        };
        match scheme.to_ascii_lowercase().as_str() {
            "file" => {
                let path = Path::new(rest);
                if !path.is_absolute() {
                    return Err(self.error(
                        module_key,
                        format!(
                            "`{text}`: file:// takes an absolute path (file:///opt/filter.wasm); \
                             write a relative path without file://"
                        ),
                    ));
                }
                let path = path.to_path_buf();
                Ok((path.clone(), ModuleSource::File { path, sha256 }))
            }
            "https" | "http" => {
                wasmbridge_fetch::check_url(text, false)
                    .map_err(|why| self.error(&module_key, why))?;
                let Some(sha256) = sha256 else {
                    return Err(self.error(
                        sha256_key,
                        format!(
                            "is required for a module fetched over HTTP (`{text}`): the module's \
                             SHA-256 as 64 lowercase hex digits, as `sha256sum` prints it"
                        ),
                    ));
                };
                Ok((
                    PathBuf::from(text),
                    ModuleSource::Https {
                        url: text.to_string(),
                        sha256,
                    },
                ))
            }
            "oci" => {
                let reference = OciReference::parse(text)
                    .map_err(|e| self.error(&module_key, e.to_string()))?;
                Ok((PathBuf::from(text), ModuleSource::Oci { reference, sha256 }))
            }
            other => Err(self.error(
                module_key,
                format!(
                    "unsupported scheme `{other}://`: a module is a file path, file://, https:// \
                     (with `sha256`) or oci://"
                ),
            )),
        }
    }

    /// A path as written (a module, the compile cache), against the file's directory.
    fn resolve(&self, path: &str) -> PathBuf {
        let path = Path::new(path);
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.base_dir.join(path)
        }
    }

    /// The routes, and the plugins their configuration overrides make (after the file's
    /// plugins, in route order).
    fn routes(
        &self,
        raw: Vec<RawRoute>,
        clusters: &[ClusterConfig],
        plugins: &[PluginConfig],
    ) -> Result<(Vec<RouteConfig>, Vec<PluginConfig>), ConfigError> {
        if raw.is_empty() {
            return Err(self.error("routes", "at least one route is required"));
        }
        let mut seen = HashMap::new();
        let mut routes = Vec::with_capacity(raw.len());
        let mut overrides: Vec<PluginConfig> = Vec::new();
        for (index, mut route) in raw.into_iter().enumerate() {
            let at = format!("routes[{index}]");
            let name = route.name.unwrap_or_else(|| format!("route{index}"));
            self.unique_name(&mut seen, &at, "route", &name)?;
            let headers = self.header_matches(&at, route.matcher.headers.take())?;
            let hosts = self.hosts(&at, route.matcher.hosts.take())?;
            let matcher = self.matcher(&at, route.matcher)?;
            let action = match (route.cluster, route.direct_response) {
                (Some(_), Some(_)) => {
                    return Err(self.error(
                        at,
                        "has both `cluster` and `direct_response`; give exactly one",
                    ));
                }
                (None, None) => {
                    return Err(self.error(at, "needs `cluster` or `direct_response`"));
                }
                (Some(cluster), None) => {
                    if !clusters.iter().any(|c| c.name == cluster) {
                        return Err(self.error(
                            format!("{at}.cluster"),
                            format!("no cluster named `{cluster}`"),
                        ));
                    }
                    RouteAction::Cluster(cluster)
                }
                (None, Some(direct)) => {
                    RouteAction::DirectResponse(self.direct_response(&at, direct)?)
                }
            };
            // (phase, -priority, listed position) orders the chain; the name is the
            // plugin's, or its override's.
            let mut chain: Vec<(Phase, i64, usize, String)> = Vec::new();
            let entries = route.plugins.unwrap_or_default();
            let mut listed: Vec<String> = Vec::with_capacity(entries.len());
            for (i, entry) in entries.into_iter().enumerate() {
                let key = format!("{at}.plugins[{i}]");
                let (plugin_name, configuration) = match entry {
                    RawRoutePlugin::Name(name) => (name, None),
                    RawRoutePlugin::Override(o) => (o.name, Some(o.configuration)),
                };
                let Some(base) = plugins.iter().find(|p| p.name == plugin_name) else {
                    let key = if configuration.is_some() {
                        format!("{key}.name")
                    } else {
                        key
                    };
                    return Err(self.error(key, format!("no plugin named `{plugin_name}`")));
                };
                if let Some(first) = listed.iter().position(|n| n == &plugin_name) {
                    return Err(self.error(
                        key,
                        format!(
                            "plugin `{plugin_name}` is already listed at {at}.plugins[{first}]"
                        ),
                    ));
                }
                listed.push(plugin_name.clone());
                let instance = match configuration {
                    None => plugin_name,
                    Some(value) => {
                        let instance = format!("{plugin_name}@{name}");
                        if let Some(clash) = plugins.iter().find(|p| p.name == instance) {
                            return Err(self.error(
                                key,
                                format!(
                                    "the override would be named `{instance}`, which {} already \
                                     names; rename that plugin or this route",
                                    clash.key_path
                                ),
                            ));
                        }
                        let configuration = self.payload(&key, "configuration", Some(&value))?;
                        overrides.push(PluginConfig {
                            name: instance.clone(),
                            configuration,
                            base: Some(plugin_name),
                            key_path: key,
                            ..base.clone()
                        });
                        instance
                    }
                };
                chain.push((base.phase, -i64::from(base.priority), i, instance));
            }
            chain.sort();
            routes.push(RouteConfig {
                name,
                matcher,
                headers,
                hosts,
                action,
                plugins: chain.into_iter().map(|(.., name)| name).collect(),
                key_path: at,
            });
        }
        Ok((routes, overrides))
    }

    fn matcher(&self, at: &str, raw: RawMatch) -> Result<RouteMatch, ConfigError> {
        let key = format!("{at}.match");
        let given = [
            raw.prefix.map(|p| ("prefix", p)),
            raw.path.map(|p| ("path", p)),
            raw.regex.map(|p| ("regex", p)),
        ];
        let mut given = given.into_iter().flatten();
        let (kind, value) = match (given.next(), given.next()) {
            (Some(one), None) => one,
            (Some(_), Some(_)) => {
                return Err(self.error(
                    key,
                    "has more than one of `prefix`, `path`, `regex`; give exactly one",
                ));
            }
            (None, _) => return Err(self.error(key, "needs `prefix`, `path` or `regex`")),
        };
        if kind == "regex" {
            return Ok(RouteMatch::Regex(
                self.pattern(&format!("{key}.regex"), &value)?,
            ));
        }
        if !value.starts_with('/') {
            return Err(self.error(
                format!("{key}.{kind}"),
                format!("must start with `/`, got `{value}`"),
            ));
        }
        Ok(match kind {
            "prefix" => RouteMatch::Prefix(value),
            _ => RouteMatch::Path(value),
        })
    }

    /// A regular expression, compiled to match whole texts.
    fn pattern(&self, key: &str, source: &str) -> Result<Pattern, ConfigError> {
        Pattern::new(source).map_err(|e| {
            let message = match e {
                regex::Error::CompiledTooBig(limit) => format!(
                    "the regular expression compiles to more than {limit} bytes; simplify it"
                ),
                other => format!("invalid regular expression: {other}"),
            };
            self.error(key, message)
        })
    }

    /// `match.hosts`: host names, `*.suffix`, `prefix.*` or `*`, optionally with a port;
    /// lower-cased.
    fn hosts(&self, at: &str, raw: Option<Vec<String>>) -> Result<Vec<String>, ConfigError> {
        let raw = raw.unwrap_or_default();
        let mut hosts: Vec<String> = Vec::with_capacity(raw.len());
        for (i, host) in raw.into_iter().enumerate() {
            let key = format!("{at}.match.hosts[{i}]");
            let lower = host.to_ascii_lowercase();
            let stars = lower.matches('*').count();
            let wildcard_ok = stars == 0
                || lower == "*"
                || (stars == 1 && (lower.starts_with('*') || lower.ends_with('*')));
            let chars_ok = !lower.is_empty()
                && lower
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._*:[]".contains(&b));
            if !wildcard_ok || !chars_ok {
                return Err(self.error(
                    key,
                    format!(
                        "`{host}` is not a host pattern (a name such as `example.com`, \
                         `*.example.com`, `api.*` or `*`, optionally with `:port`)"
                    ),
                ));
            }
            if let Some(first) = hosts.iter().position(|h| h == &lower) {
                return Err(self.error(
                    key,
                    format!("`{host}` is already listed at {at}.match.hosts[{first}]"),
                ));
            }
            hosts.push(lower);
        }
        Ok(hosts)
    }

    fn header_matches(
        &self,
        at: &str,
        raw: Option<Vec<RawHeaderMatch>>,
    ) -> Result<Vec<HeaderMatch>, ConfigError> {
        let mut out = Vec::new();
        for (i, m) in raw.unwrap_or_default().into_iter().enumerate() {
            let key = format!("{at}.match.headers[{i}]");
            let mut name = m.name.to_ascii_lowercase();
            if name == "host" {
                name = ":authority".into();
            }
            let pseudo = [":authority", ":method", ":path", ":scheme"];
            if !is_header_name(&name) && !pseudo.contains(&name.as_str()) {
                return Err(self.error(
                    format!("{key}.name"),
                    format!(
                        "`{}` is not a header name (a token, or one of {})",
                        m.name,
                        pseudo.join(", ")
                    ),
                ));
            }
            let rules = [
                m.exact.map(HeaderRule::Exact),
                m.prefix.map(HeaderRule::Prefix),
                m.suffix.map(HeaderRule::Suffix),
                m.contains.map(HeaderRule::Contains),
                m.regex
                    .map(|r| {
                        self.pattern(&format!("{key}.regex"), &r)
                            .map(HeaderRule::Regex)
                    })
                    .transpose()?,
                m.present.map(HeaderRule::Present),
            ];
            let mut given = rules.into_iter().flatten();
            let rule = match (given.next(), given.next()) {
                (Some(rule), None) => rule,
                (None, _) => {
                    return Err(self.error(
                        key,
                        "needs one of `exact`, `prefix`, `suffix`, `contains`, `regex`, `present`",
                    ));
                }
                (Some(_), Some(_)) => {
                    return Err(self.error(
                        key,
                        "has more than one of `exact`, `prefix`, `suffix`, `contains`, `regex`, `present`; give exactly one",
                    ));
                }
            };
            out.push(HeaderMatch {
                name,
                rule,
                invert: m.invert.unwrap_or(false),
            });
        }
        Ok(out)
    }

    fn node(&self, raw: RawNode) -> Result<NodeConfig, ConfigError> {
        let metadata = match raw.metadata {
            Some(map) => self.struct_fields("node.metadata", map)?,
            None => Vec::new(),
        };
        Ok(NodeConfig {
            id: raw.id.unwrap_or_default(),
            cluster: raw.cluster.unwrap_or_default(),
            metadata,
        })
    }

    /// A YAML mapping as `google.protobuf.Struct` fields: string keys, any values.
    fn struct_fields(
        &self,
        at: &str,
        map: serde_yaml::Mapping,
    ) -> Result<Vec<(String, StructValue)>, ConfigError> {
        let mut fields = Vec::with_capacity(map.len());
        for (k, v) in map {
            let serde_yaml::Value::String(name) = k else {
                return Err(self.error(at, "keys must be strings"));
            };
            let value = self.struct_value(&format!("{at}.{name}"), v)?;
            fields.push((name, value));
        }
        Ok(fields)
    }

    fn struct_value(&self, at: &str, v: serde_yaml::Value) -> Result<StructValue, ConfigError> {
        use serde_yaml::Value as Y;
        Ok(match v {
            Y::Null => StructValue::Null,
            Y::Bool(b) => StructValue::Bool(b),
            Y::Number(n) => StructValue::Number(n.as_f64().unwrap_or(f64::NAN)),
            Y::String(s) => StructValue::String(s),
            Y::Sequence(items) => StructValue::List(
                items
                    .into_iter()
                    .enumerate()
                    .map(|(i, item)| self.struct_value(&format!("{at}[{i}]"), item))
                    .collect::<Result<_, _>>()?,
            ),
            Y::Mapping(map) => StructValue::Struct(self.struct_fields(at, map)?),
            Y::Tagged(_) => return Err(self.error(at, "YAML tags are not supported")),
        })
    }

    fn direct_response(
        &self,
        at: &str,
        raw: RawDirectResponse,
    ) -> Result<DirectResponse, ConfigError> {
        let at = format!("{at}.direct_response");
        let status = u16::try_from(raw.status)
            .ok()
            .filter(|status| (100..=599).contains(status))
            .ok_or_else(|| {
                self.error(
                    format!("{at}.status"),
                    format!("must be in 100..=599, got {}", raw.status),
                )
            })?;
        let headers = raw.headers.unwrap_or_default().0;
        for (name, value) in &headers {
            if !is_header_name(name) {
                return Err(self.error(
                    format!("{at}.headers"),
                    format!("`{name}` is not a valid header name"),
                ));
            }
            if !is_header_value(value) {
                return Err(self.error(
                    format!("{at}.headers.{name}"),
                    "header values must not contain control characters other than tab",
                ));
            }
        }
        Ok(DirectResponse {
            status,
            body: raw.body.unwrap_or_default().into_bytes(),
            headers,
        })
    }

    /// Checks that `name` is non-empty and not used earlier; records it.
    fn unique_name(
        &self,
        seen: &mut HashMap<String, String>,
        at: &str,
        what: &str,
        name: &str,
    ) -> Result<(), ConfigError> {
        let key = format!("{at}.name");
        if name.is_empty() {
            return Err(self.error(key, "must not be empty"));
        }
        if let Some(first) = seen.get(name) {
            return Err(self.error(
                key,
                format!("duplicate {what} name `{name}` (first used at {first})"),
            ));
        }
        seen.insert(name.to_owned(), at.to_owned());
        Ok(())
    }
}

/// The index of a listener already bound to `address`; port 0 never collides because the
/// OS picks a fresh port each time.
fn same_address(listeners: &[ListenerConfig], address: SocketAddr) -> Option<usize> {
    if address.port() == 0 {
        return None;
    }
    listeners.iter().position(|l| l.address == address)
}

/// `host:port`: an IP address, a bracketed IPv6 address or a DNS name, and a port in
/// 1..=65535.
fn is_endpoint(endpoint: &str) -> bool {
    let (host, port) = if let Some(rest) = endpoint.strip_prefix('[') {
        let Some((host, port)) = rest.split_once("]:") else {
            return false;
        };
        if host.parse::<std::net::Ipv6Addr>().is_err() {
            return false;
        }
        (None, port)
    } else {
        let Some((host, port)) = endpoint.rsplit_once(':') else {
            return false;
        };
        (Some(host), port)
    };
    let port_ok = !port.starts_with('+') && port.parse::<u16>().is_ok_and(|p| p != 0);
    // An unbracketed IPv6 address is ambiguous with the port, so the host must not hold `:`.
    port_ok
        && host.is_none_or(|host| {
            !host.contains(':') && (host.parse::<IpAddr>().is_ok() || is_hostname(host))
        })
}

/// Letters, digits, `-`, `_` and `.`, in non-empty labels of at most 63 characters.
fn is_hostname(host: &str) -> bool {
    let host = host.strip_suffix('.').unwrap_or(host);
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// An RFC 9110 token.
fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Visible characters, spaces and tabs (and UTF-8 beyond ASCII), no CR, LF or NUL.
fn is_header_value(value: &str) -> bool {
    value.chars().all(|c| c == '\t' || !c.is_control())
}

/// `16MiB`, `512KiB`, `1GiB`, `65536` or `65536B`: a size in bytes, above zero.
fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let scale: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        other => {
            return Err(format!(
                "`{text}`: unknown unit `{other}` (use B, KiB, MiB or GiB)"
            ));
        }
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("`{text}` is not a size such as `16MiB`"))?;
    match n.checked_mul(scale) {
        Some(0) => Err("must be above zero".to_string()),
        Some(bytes) => Ok(bytes),
        None => Err(format!("`{text}` is too large")),
    }
}

/// `1ms`, `500us`, `2s`: a duration with a unit, above zero.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("`{text}` is not a duration such as `5ms`"))?;
    let duration = match unit.trim() {
        "us" => Duration::from_micros(n),
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "" => return Err(format!("`{text}` needs a unit: us, ms or s")),
        other => {
            return Err(format!(
                "`{text}`: unknown unit `{other}` (use us, ms or s)"
            ));
        }
    };
    if duration.is_zero() {
        return Err("must be above zero".to_string());
    }
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        for good in [
            "127.0.0.1:9000",
            "backend:80",
            "backend.default.svc.cluster.local:8080",
            "my_host:1",
            "[::1]:9000",
            "example.com.:65535",
        ] {
            assert!(is_endpoint(good), "{good}");
        }
        for bad in [
            "",
            "127.0.0.1",
            "backend",
            "backend:",
            ":80",
            "backend:0",
            "backend:65536",
            "backend:+80",
            "backend:http",
            "::1:9000",
            "[::1]",
            "[nope]:80",
            "http://backend:80",
            "back end:80",
            "a..b:80",
        ] {
            assert!(!is_endpoint(bad), "{bad}");
        }
    }

    #[test]
    fn header_names_and_values() {
        assert!(is_header_name("content-type"));
        assert!(is_header_name("X-Custom_1"));
        assert!(!is_header_name(""));
        assert!(!is_header_name("bad header"));
        assert!(!is_header_name("bad:header"));
        assert!(is_header_value("text/plain; charset=utf-8"));
        assert!(is_header_value("a\tb é"));
        assert!(!is_header_value("a\r\nb"));
    }

    #[test]
    fn sizes_and_durations() {
        assert_eq!(super::parse_size("16MiB"), Ok(16 << 20));
        assert_eq!(super::parse_size("512KiB"), Ok(512 << 10));
        assert_eq!(super::parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(super::parse_size("4096"), Ok(4096));
        assert!(
            super::parse_size("16MB")
                .unwrap_err()
                .contains("unknown unit `MB`")
        );
        assert!(
            super::parse_size("0MiB")
                .unwrap_err()
                .contains("above zero")
        );
        assert!(super::parse_size("MiB").is_err());
        assert_eq!(super::parse_duration("1ms"), Ok(Duration::from_millis(1)));
        assert_eq!(
            super::parse_duration("250us"),
            Ok(Duration::from_micros(250))
        );
        assert_eq!(super::parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert!(
            super::parse_duration("5")
                .unwrap_err()
                .contains("needs a unit")
        );
        assert!(
            super::parse_duration("5m")
                .unwrap_err()
                .contains("unknown unit")
        );
        assert!(super::parse_duration("0ms").is_err());
    }
}
