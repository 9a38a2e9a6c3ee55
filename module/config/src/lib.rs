//! The wasmbridge YAML front end: it reads the one configuration file (listeners, admin,
//! clusters, plugins, routes), rejects unknown keys and inconsistent settings with an error
//! that names the file and the key path (`routes[0].plugins[1]`), and hands the adapters a
//! plain, validated [`Config`]. It sits between the user's file and the adapters
//! (`wasmbridge-pingora`, `wasmbridge-tower`). Parsing does not load modules, it only
//! resolves their paths against the file's directory; [`build`] then compiles and loads
//! the plugins a file describes, the same way for every adapter. The names follow Envoy's Wasm filter vocabulary
//! (`root_id`, `vm_id`, plugin configuration, VM configuration), see `DESIGN.md` §7.
//! [`envoy_bootstrap`] translates a [`Config`] into the equivalent Envoy bootstrap
//! (`wasmbridge envoy-config`, `docs/envoy.md`), and [`import_envoy`] goes the other way
//! (`wasmbridge import-envoy`), from an Envoy bootstrap or Istio `WasmPlugin`s.
//!
//! ```
//! use std::path::Path;
//! use wasmbridge_config::{Config, RouteAction};
//!
//! let yaml = r#"
//! listeners:
//!   - address: 127.0.0.1:8080
//! plugins:
//!   - name: add_header
//!     module: add_header.wasm
//!     configuration: {headers: {x-hello: wasmbridge}}
//! routes:
//!   - match: {prefix: /}
//!     direct_response: {status: 200, body: "hello\n"}
//!     plugins: [add_header]
//! "#;
//! let config = Config::from_yaml_str(yaml, Path::new("<inline>"), Path::new("/etc/gw"))?;
//! let plugin = config.plugin("add_header").ok_or("no plugin")?;
//! assert_eq!(plugin.module, Path::new("/etc/gw/add_header.wasm"));
//! assert_eq!(plugin.configuration, br#"{"headers":{"x-hello":"wasmbridge"}}"#);
//! assert!(matches!(config.routes[0].action, RouteAction::DirectResponse(_)));
//!
//! let err = Config::from_yaml_str("bogus: 1", Path::new("gw.yaml"), Path::new("."))
//!     .err()
//!     .ok_or("accepted")?;
//! assert_eq!(err.key_path(), "bogus");
//! assert!(err.to_string().starts_with("gw.yaml: bogus: unknown field `bogus`"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![warn(missing_docs)]
#![forbid(unsafe_code)]

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub mod build;
pub mod envoy;
mod error;
pub mod import;
mod payload;
mod raw;
mod validate;

pub use envoy::{EnvoyBootstrap, Untranslated, envoy_bootstrap};
pub use error::ConfigError;
pub use import::{EnvoyImport, ImportError, import_envoy};

pub use wasmbridge_abi::StructValue;
pub use wasmbridge_fetch::{Digest, OciReference};

/// The smallest `plugins[].limits.stack`, 32 KiB (the host's `Limits::MIN_STACK_BYTES`).
pub const MIN_STACK_BYTES: u64 = 32 << 10;
/// The largest `plugins[].limits.stack`, 1 MiB (the host's `Limits::MAX_STACK_BYTES`):
/// guest calls run on worker threads with 2 MiB native stacks.
pub const MAX_STACK_BYTES: u64 = 1 << 20;

/// A validated gateway configuration: what one YAML file describes.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The file the configuration came from, or whatever name the caller gave inline text
    /// (conventionally `<inline>`).
    pub source: PathBuf,
    /// Process-wide settings (`server`).
    pub server: ServerConfig,
    /// What the proxy says about itself (`node`), served as the `xds.node` property.
    pub node: NodeConfig,
    /// The HTTP listeners; never empty.
    pub listeners: Vec<ListenerConfig>,
    /// The admin listener (`/metrics`, `/healthz`), if configured.
    pub admin: Option<AdminConfig>,
    /// Upstream clusters, in file order; names are unique.
    pub clusters: Vec<ClusterConfig>,
    /// Proxy-Wasm plugins: the file's in file order, then one per route configuration
    /// override (`routes[i].plugins[j]` with a `configuration`, named `<plugin>@<route>`) in
    /// route order; names are unique.
    pub plugins: Vec<PluginConfig>,
    /// Routes, in file order (the first match wins); never empty.
    pub routes: Vec<RouteConfig>,
}

/// Process-wide settings (`server:`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Worker threads; at least 1. Defaults to the available parallelism.
    pub threads: usize,
    /// After a graceful shutdown (SIGQUIT, or SIGTERM) begins, how long the listeners keep
    /// accepting, in seconds (default 1): the time a new process of a graceful upgrade or a
    /// load balancer needs to take over. Pingora's `grace_period_seconds`.
    pub grace_period_seconds: u64,
    /// Then how long requests in flight may take to finish before the process exits, in
    /// seconds (default 5). Pingora's `graceful_shutdown_timeout_seconds`.
    pub shutdown_timeout_seconds: u64,
    /// Whether the gateway reloads when the config file or a local module file changes
    /// (default true). SIGHUP and the admin `POST /reload` reload either way.
    pub watch: bool,
    /// The Unix socket a graceful upgrade hands the listening sockets over on
    /// (`upgrade_sock`, resolved against the file's directory; default
    /// `/tmp/wasmbridge_upgrade.sock`): `wasmbridge run --upgrade` receives them there
    /// when the running gateway gets SIGQUIT.
    pub upgrade_sock: PathBuf,
    /// Where compiled modules are kept between runs (`compile_cache`, resolved against the
    /// file's directory); `None` (the default) compiles every module at each start.
    pub compile_cache: Option<PathBuf>,
    /// How many `per_stream` VMs may exist at once over all plugins
    /// (`per_stream_instances`, default 1000).
    pub per_stream_instances: u32,
    /// Where modules fetched from `https://` and `oci://` sources are kept
    /// (`module_cache`, resolved against the file's directory); `None` means the default,
    /// `$XDG_CACHE_HOME/wasmbridge/modules` or `~/.cache/wasmbridge/modules`.
    pub module_cache: Option<PathBuf>,
    /// A PEM file of CA certificates trusted for module sources beside the system's roots
    /// (`module_ca_file`, resolved against the file's directory); `None` means
    /// `$WASMBRIDGE_CA_FILE` when set.
    pub module_ca_file: Option<PathBuf>,
}

/// The proxy's identity (`node:`), in the shape of Envoy's bootstrap `node`: filters read
/// it as the `xds.node` property (and its legacy alias `node`), e.g. Istio's
/// `node.metadata.WORKLOAD_NAME`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NodeConfig {
    /// `node.id` (default empty).
    pub id: String,
    /// `node.cluster` (default empty).
    pub cluster: String,
    /// `node.metadata`: a mapping of names to any YAML values, in file order.
    pub metadata: Vec<(String, StructValue)>,
}

/// One HTTP listener (`listeners[i]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerConfig {
    /// The address to bind; port 0 asks the OS for an ephemeral port.
    pub address: SocketAddr,
    /// Accept HTTP/2 beside HTTP/1.1 (default true): with prior knowledge (h2c) on a
    /// cleartext listener, by ALPN on a TLS one.
    pub http2: bool,
    /// Serve TLS with this certificate (`tls`); cleartext when `None`.
    pub tls: Option<ListenerTls>,
}

/// A listener's certificate (`listeners[i].tls`): PEM files, read at start and again on
/// every reload (a renewed certificate needs no restart).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerTls {
    /// The certificate chain, leaf first (`cert`), resolved against the file's directory.
    pub cert: PathBuf,
    /// Its private key (`key`: PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// The admin listener (`admin:`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminConfig {
    /// The address to bind (default `127.0.0.1:9901`: loopback only).
    pub address: SocketAddr,
    /// When set, every admin request but `/healthz` and `/ready` must carry
    /// `Authorization: Bearer <token>`.
    pub token: Option<String>,
}

/// An upstream cluster (`clusters[i]`): a named set of endpoints that routes forward to and
/// that `proxy_http_call` targets by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// The cluster name; unique and non-empty.
    pub name: String,
    /// `host:port` endpoints (hostnames allowed, IPv6 in brackets); never empty.
    pub endpoints: Vec<String>,
    /// Talk cleartext HTTP/2 (h2c) to the endpoints instead of HTTP/1.1 (default false).
    pub http2: bool,
    /// Connection timeout (`connect_timeout_ms`, default 1000 ms).
    pub connect_timeout: Duration,
    /// Read timeout (`read_timeout_ms`, default 30000 ms).
    pub read_timeout: Duration,
    /// The longest an upstream exchange may take from the connection attempt to the
    /// response's last byte (`total_timeout_ms`); none by default.
    pub total_timeout: Option<Duration>,
    /// How many times a request that could not reach an endpoint (connection refused or
    /// timed out, before anything was sent) is tried again on the next one (`retries`,
    /// default 0, at most 5).
    pub retries: u32,
    /// How an endpoint is picked (`lb_policy`).
    pub lb_policy: LbPolicy,
    /// Active health checks (`health_check`); without them every endpoint is used.
    pub health_check: Option<HealthCheck>,
    /// TLS to the endpoints (`tls`); cleartext when `None`.
    pub tls: Option<UpstreamTls>,
}

/// How a cluster picks an endpoint for a request (`clusters[i].lb_policy`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum LbPolicy {
    /// Each endpoint in turn (`round_robin`, the default).
    #[default]
    RoundRobin,
    /// A random endpoint (`random`).
    Random,
    /// The same endpoint for the same key while the set of healthy endpoints stays the
    /// same (`consistent_hash`, Ketama hashing), the key given by `hash_on`.
    ConsistentHash(HashOn),
}

/// What a consistent hash is taken of (`clusters[i].hash_on`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashOn {
    /// The client's IP address (`source_ip: true`, the default).
    SourceIp,
    /// A request header's value (`header: NAME`), lower case; requests without it hash
    /// as the empty string.
    Header(String),
    /// The request path with its query (`path: true`).
    Path,
}

/// Active HTTP health checks of a cluster's endpoints (`clusters[i].health_check`): a
/// `GET path` to each endpoint every `interval`; a 2xx answer within `timeout` passes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    /// The path to ask (`path`, default `/healthz`).
    pub path: String,
    /// Between checks (`interval_ms`, default 5000).
    pub interval: Duration,
    /// For one check (`timeout_ms`, default 1000).
    pub timeout: Duration,
    /// Passes in a row that bring an endpoint back (`healthy_threshold`, default 1).
    pub healthy_threshold: u32,
    /// Failures in a row that take an endpoint out (`unhealthy_threshold`, default 1).
    pub unhealthy_threshold: u32,
}

/// TLS to a cluster's endpoints (`clusters[i].tls`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamTls {
    /// The server name sent and verified (`sni`; default: the endpoint's host).
    pub sni: Option<String>,
    /// Verify the endpoint's certificate (`verify`, default true).
    pub verify: bool,
    /// Trust these PEM certificates instead of the system's roots (`ca`).
    pub ca: Option<PathBuf>,
}

/// A Proxy-Wasm plugin (`plugins[i]`), in Envoy's `PluginConfig` vocabulary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginConfig {
    /// The plugin name (`plugin_name`); unique and non-empty.
    pub name: String,
    /// The root id (`plugin_root_id`) the SDKs pick their root context by; may be empty.
    pub root_id: String,
    /// The VM id (`plugin_vm_id`); plugins with the same `vm_id` and module share VMs.
    pub vm_id: String,
    /// The module file, resolved against the configuration file's directory (absolute if
    /// that file's path was). Whether it exists is checked when the host loads it. For a
    /// remote [`source`](Self::source) it is the URL or reference as written, which labels
    /// messages.
    pub module: PathBuf,
    /// Where the module comes from (`module` and `sha256`).
    pub source: ModuleSource,
    /// The plugin configuration passed to `proxy_on_configure`: a YAML string raw, a
    /// mapping or sequence as compact JSON, a number or bool as its JSON text, absent or
    /// null as empty bytes.
    pub configuration: Vec<u8>,
    /// The VM configuration passed to `proxy_on_vm_start`, encoded like `configuration`.
    pub vm_configuration: Vec<u8>,
    /// What happens to requests when the plugin fails.
    pub failure_policy: FailurePolicy,
    /// What the plugin's callouts (`proxy_http_call`, `proxy_grpc_*`) may target
    /// (`callouts`).
    pub callouts: CalloutConfig,
    /// The plugin's resource limits (`limits`).
    pub limits: LimitsConfig,
    /// How streams share VMs (`isolation`, default `shared`).
    pub isolation: Isolation,
    /// The pool of shared replicas (`pool`).
    pub pool: PoolConfig,
    /// The back-off between rebuilds under `fail_reload` (`reload.backoff`).
    pub reload: ReloadConfig,
    /// Log-only mode (`log_only`, default false): the plugin sees the traffic, and what it
    /// would change is logged and counted instead of applied.
    pub log_only: bool,
    /// What the plugin may call (`capabilities`).
    pub capabilities: CapabilitiesConfig,
    /// What is hidden from the plugin (`redact`).
    pub redact: RedactConfig,
    /// The plugin's WASI environment variables (`environment_variables`).
    pub environment_variables: EnvironmentConfig,
    /// Where the plugin runs in a route's chain (`phase`, Istio's `WasmPlugin.phase`).
    pub phase: Phase,
    /// The order within its phase (`priority`, default 0): higher runs first.
    pub priority: i32,
    /// For a route's configuration override (`routes[i].plugins[j]` with a
    /// `configuration`), the name of the plugin it overrides; `None` for the file's plugins.
    pub base: Option<String>,
    /// Where the plugin sits in the file (`plugins[2]`, or `routes[1].plugins[0]` for an
    /// override), for messages.
    pub key_path: String,
}

/// Where a plugin runs in a route's chain (`plugins[i].phase`), after Istio's
/// `WasmPlugin.phase`: a chain runs `AUTHN`, then `AUTHZ`, then `STATS` plugins, then those
/// without a phase (Istio inserts those "at the end of the filter chain, right before the
/// Router"); within a phase by descending `priority`, ties in the route's listed order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Phase {
    /// `AUTHN`: first (before Istio's authentication filters).
    Authn,
    /// `AUTHZ`: after `AUTHN` (before Istio's authorization filters).
    Authz,
    /// `STATS`: after `AUTHZ` (before Istio's stats filters).
    Stats,
    /// `UNSPECIFIED_PHASE`, or no `phase`: last.
    #[default]
    Unspecified,
}

/// Where a plugin's module comes from (`plugins[i].module`, `plugins[i].sha256`). Parsing
/// only reads what is written; remote modules are fetched (into the module cache) when the
/// plugins are built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModuleSource {
    /// A local file: a path (relative to the configuration file) or `file:///abs/path`.
    File {
        /// The file, resolved.
        path: PathBuf,
        /// When set, the file must have this digest.
        sha256: Option<Digest>,
    },
    /// An `https://` URL (`http://` only for loopback hosts); the digest is required.
    Https {
        /// The URL as written.
        url: String,
        /// The digest the module must have.
        sha256: Digest,
    },
    /// An image in an OCI registry: `oci://registry[:port]/repository[:tag][@sha256:hex]`,
    /// either the Wasm OCI artifact or Istio's image holding `plugin.wasm`.
    Oci {
        /// The reference.
        reference: OciReference,
        /// When set, the module (or the image manifest) must have this digest.
        sha256: Option<Digest>,
    },
}

impl ModuleSource {
    /// Whether the module is fetched over the network.
    pub fn is_remote(&self) -> bool {
        !matches!(self, ModuleSource::File { .. })
    }
}

/// A plugin's callout settings (`plugins[i].callouts`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct CalloutConfig {
    /// Besides cluster names, accept `host:port` / `ip:port` upstreams
    /// (`allow_host_port`, default false), as Kong's ngx_wasm_module does; a name that is
    /// a cluster always means the cluster.
    pub allow_host_port: bool,
}

/// What a plugin may call (`plugins[i].capabilities`): hostcall families (`http_calls`,
/// `headers_write`, ...; `wasmbridge_abi::capability::FAMILIES`) or hostcall names
/// (`proxy_http_call`, `fd_write`), as Envoy's `capability_restriction_config`. Every name is
/// known; the default allows everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CapabilitiesConfig {
    /// `allowed`: when set (never empty), only these may be called.
    pub allowed: Option<Vec<String>>,
    /// `denied`: these may not be called, whatever `allowed` says.
    pub denied: Vec<String>,
    /// `clusters`: when set, the only callout targets (cluster names, or `host:port` with
    /// `callouts.allow_host_port`); each names a cluster of the file.
    pub clusters: Option<Vec<String>>,
}

/// What is hidden from a plugin (`plugins[i].redact`); empty by default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RedactConfig {
    /// `headers`: request header names, lower-cased (pseudo-headers allowed).
    pub headers: Vec<String>,
    /// `properties`: dotted property paths (`source.address`, `request.headers.cookie`).
    pub properties: Vec<String>,
}

/// A plugin's WASI environment variables (`plugins[i].environment_variables`), as Envoy's
/// `VmConfig.environment_variables`. Every name appears once across both lists.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnvironmentConfig {
    /// `host_env_keys`: names copied from the gateway's environment when the plugin loads
    /// (skipped when unset there).
    pub host_env_keys: Vec<String>,
    /// `key_values`: names and values, in file order.
    pub key_values: Vec<(String, String)>,
}

/// A plugin's resource limits (`plugins[i].limits`) as written: what is not set comes
/// from the profile, whose values the host defines (`docs/limits.md`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LimitsConfig {
    /// `profile`: the values that apply where nothing is set.
    pub profile: LimitsProfile,
    /// `memory`: linear memory per VM, in bytes.
    pub memory: Option<u64>,
    /// `cpu`: the time one callback may run.
    pub cpu: Option<Duration>,
    /// `callbacks.<name>.cpu`: per-callback overrides, by callback name without the
    /// `proxy_` prefix (`on_request_headers`), in name order.
    pub cpu_by_callback: Vec<(String, Duration)>,
    /// `fuel`: the wasm instructions (wasmtime fuel units) one call may run; `None` means
    /// fuel is not counted.
    pub fuel: Option<u64>,
    /// `callbacks.<name>.fuel`: per-callback overrides, by callback name without the
    /// `proxy_` prefix, in name order.
    pub fuel_by_callback: Vec<(String, u64)>,
    /// `stack`: the wasm stack of one call, in bytes, from [`MIN_STACK_BYTES`] to
    /// [`MAX_STACK_BYTES`].
    pub stack: Option<u64>,
    /// `body`: body bytes the host buffers for the plugin, per direction.
    pub body: Option<u64>,
    /// `headers.bytes`: the summed length of names and values a plugin may grow one header
    /// map to.
    pub header_bytes: Option<u64>,
    /// `headers.pairs`: the entries a plugin may grow one header map to.
    pub header_pairs: Option<u32>,
    /// `callouts`: HTTP and gRPC callouts one context may have in flight.
    pub callouts: Option<u32>,
    /// `log_line`: the bytes of one guest log line that are logged.
    pub log_line: Option<u64>,
}

/// `plugins[i].isolation`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Isolation {
    /// Streams share the pool's replicas (Envoy's model).
    #[default]
    Shared,
    /// A fresh VM per stream.
    PerStream,
}

/// `plugins[i].pool`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PoolConfig {
    /// `replicas`: VMs in the pool; `None` means one per worker thread.
    pub replicas: Option<usize>,
    /// `selection`: how a stream picks a replica.
    pub selection: Selection,
    /// `recycle.streams`: replace a replica after this many streams.
    pub recycle_streams: Option<u64>,
    /// `recycle.memory`: replace a replica whose linear memory reached this many bytes.
    pub recycle_memory: Option<u64>,
}

/// `plugins[i].pool.selection`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Selection {
    /// The replica of the stream's worker thread.
    #[default]
    Thread,
    /// The replica with the fewest live streams.
    LeastLoaded,
}

/// `plugins[i].reload`: Envoy's `ReloadConfig`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReloadConfig {
    /// `backoff.base_interval` (default 1 s): the wait before rebuilding after a failure.
    pub base_interval: Duration,
    /// `backoff.max_interval` (default ten times the base): the longest wait.
    pub max_interval: Duration,
}

impl Default for ReloadConfig {
    fn default() -> Self {
        ReloadConfig {
            base_interval: Duration::from_secs(1),
            max_interval: Duration::from_secs(10),
        }
    }
}

/// `plugins[i].limits.profile`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LimitsProfile {
    /// Generous limits that stop runaway plugins without constraining ordinary ones.
    #[default]
    Default,
    /// Tight limits for untrusted plugins (1 ms per callback, 16 MiB per VM, 64 KiB of
    /// buffered body, 2 callouts in flight).
    Strict,
}

/// What a plugin's failure (a trap, a failed start) does to requests, as in Envoy's
/// `failure_policy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum FailurePolicy {
    /// Requests through the plugin fail with a local error reply (Envoy's default).
    #[default]
    FailClosed,
    /// Requests skip the failed plugin and continue.
    FailOpen,
    /// The plugin is reloaded with backoff; requests fail closed meanwhile.
    FailReload,
}

/// A route (`routes[i]`): which requests it takes, the plugins they pass through, and
/// where they go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteConfig {
    /// The route name; `route<index>` when not given. Unique.
    pub name: String,
    /// Which request paths the route takes.
    pub matcher: RouteMatch,
    /// Header conditions (`match.headers`) that must all hold as well.
    pub headers: Vec<HeaderMatch>,
    /// Where matched requests go.
    pub action: RouteAction,
    /// Host patterns (`match.hosts`), lower case; empty means any host. See
    /// [`host_matches`].
    pub hosts: Vec<String>,
    /// Plugin names, in filter chain order (the listed order sorted by phase and
    /// priority); each names a plugin in [`Config::plugins`] (a configuration override's
    /// own plugin for an entry with a `configuration`).
    pub plugins: Vec<String>,
    /// Where the route sits in the file (`routes[1]`), for messages.
    pub key_path: String,
}

/// A route's path matcher (`match:`), case-sensitive like Envoy's.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RouteMatch {
    /// The path starts with this string (`prefix`, a plain string prefix like Envoy's: `/api`
    /// also matches `/apis`). Starts with `/`.
    Prefix(String),
    /// The path equals this string (`path`). Starts with `/`.
    Path(String),
    /// The whole path matches this regular expression (`regex`, Envoy's `safe_regex`:
    /// RE2 syntax, a full match).
    Regex(Pattern),
}

/// A regular expression of the file (`match.regex`, `match.headers[i].regex`), compiled
/// when the file is read, that must match the whole text as Envoy's `safe_regex` does.
/// Compares and hashes by its source text.
#[derive(Debug, Clone)]
pub struct Pattern {
    source: String,
    regex: regex::Regex,
}

/// The largest compiled size of one regular expression (the `regex` crate's
/// `size_limit`): 1 MiB, a few thousand states, which no sensible route needs to exceed.
pub const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// One condition on a request header (`match.headers[i]`), after Envoy's `HeaderMatcher`.
/// The name is lower-cased; `:authority`, `:method`, `:scheme` and `:path` match the
/// pseudo-headers (`host` is taken as `:authority`). A header sent several times is
/// matched as its values joined with `,`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HeaderMatch {
    /// The header name, lower case.
    pub name: String,
    /// What the value must be.
    pub rule: HeaderRule,
    /// Negates the result (`invert: true`).
    pub invert: bool,
}

/// How a [`HeaderMatch`] tests the value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HeaderRule {
    /// The value equals this string (`exact`).
    Exact(String),
    /// The value starts with this string (`prefix`).
    Prefix(String),
    /// The value ends with this string (`suffix`).
    Suffix(String),
    /// The value contains this string (`contains`).
    Contains(String),
    /// The header is present (`present: true`) or absent (`present: false`).
    Present(bool),
    /// The whole value matches this regular expression (`regex`, Envoy's
    /// `safe_regex_match`).
    Regex(Pattern),
}

impl RouteConfig {
    /// Whether a request is taken by this route: `path` (the query is ignored) matches and
    /// every header condition holds. `header` gives a header's value by lower-case name
    /// (pseudo-headers included), repeated headers joined with `,`, or `None` when absent.
    pub fn matches<'r>(
        &self,
        path: &str,
        header: &dyn Fn(&str) -> Option<std::borrow::Cow<'r, [u8]>>,
    ) -> bool {
        (self.hosts.is_empty() || {
            let host = header(":authority");
            let host = host.as_deref().and_then(|h| std::str::from_utf8(h).ok());
            host.is_some_and(|host| self.hosts.iter().any(|p| host_matches(p, host)))
        }) && self.matches_path_and_headers(path, header)
    }

    /// [`RouteConfig::matches`] without the hosts: for a caller that ranked them already.
    pub(crate) fn matches_path_and_headers<'r>(
        &self,
        path: &str,
        header: &dyn Fn(&str) -> Option<std::borrow::Cow<'r, [u8]>>,
    ) -> bool {
        self.matcher.matches(path)
            && self
                .headers
                .iter()
                .all(|h| h.matches(header(&h.name).as_deref()))
    }
}

impl RouteConfig {
    /// How specifically the route's `hosts` match a request host ([`host_specificity`] of
    /// its most specific pattern that matches): `None` when none matches, and the rank of
    /// `*` for a route without `hosts`. A request is taken only by routes of the highest
    /// rank, as Envoy picks the virtual host before its routes.
    pub fn host_rank(&self, host: Option<&str>) -> Option<(u8, usize)> {
        if self.hosts.is_empty() {
            return Some(host_specificity("*"));
        }
        let host = host?;
        self.hosts
            .iter()
            .filter(|p| host_matches(p, host))
            .map(|p| host_specificity(p))
            .max()
    }
}

impl HeaderMatch {
    /// Whether the header, with this value (`None`: absent), meets the condition.
    pub fn matches(&self, value: Option<&[u8]>) -> bool {
        let hit = match (&self.rule, value) {
            (HeaderRule::Present(want), v) => v.is_some() == *want,
            (_, None) => false,
            (HeaderRule::Exact(s), Some(v)) => v == s.as_bytes(),
            (HeaderRule::Prefix(s), Some(v)) => v.starts_with(s.as_bytes()),
            (HeaderRule::Suffix(s), Some(v)) => v.ends_with(s.as_bytes()),
            (HeaderRule::Contains(s), Some(v)) => {
                s.is_empty() || v.windows(s.len()).any(|w| w == s.as_bytes())
            }
            (HeaderRule::Regex(p), Some(v)) => std::str::from_utf8(v).is_ok_and(|v| p.matches(v)),
        };
        hit != self.invert
    }
}

/// What a route does with a matched request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteAction {
    /// Forward to the named cluster (it exists in [`Config::clusters`]).
    Cluster(String),
    /// Answer locally without an upstream.
    DirectResponse(DirectResponse),
}

/// A local reply (`direct_response:`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectResponse {
    /// The status code, in `100..=599`.
    pub status: u16,
    /// The body (default empty).
    pub body: Vec<u8>,
    /// Extra response headers, in file order; names are valid header tokens and values
    /// hold no control characters other than tab.
    pub headers: Vec<(String, String)>,
}

impl Config {
    /// Reads and validates the configuration file at `path`; relative module paths resolve
    /// against the file's directory.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        Config::from_file_with_text(path).map(|(config, _)| config)
    }

    /// [`Config::from_file`], also giving the text that was read (what a gateway shows as
    /// its running configuration).
    pub fn from_file_with_text(path: &Path) -> Result<(Config, String), ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|err| ConfigError::io(path, &err))?;
        let base_dir = path.parent().unwrap_or(Path::new(""));
        Ok((Config::from_yaml_str(&text, path, base_dir)?, text))
    }

    /// Parses and validates YAML text; `source` is used in messages and `base_dir` resolves
    /// relative module paths.
    pub fn from_yaml_str(
        text: &str,
        source: &Path,
        base_dir: &Path,
    ) -> Result<Config, ConfigError> {
        let raw = raw::parse(text, source)?;
        validate::validate(raw, source, base_dir)
    }

    /// The plugin with this name, if any.
    pub fn plugin(&self, name: &str) -> Option<&PluginConfig> {
        self.plugins.iter().find(|plugin| plugin.name == name)
    }

    /// The cluster with this name, if any.
    pub fn cluster(&self, name: &str) -> Option<&ClusterConfig> {
        self.clusters.iter().find(|cluster| cluster.name == name)
    }
}

impl FailurePolicy {
    /// The name used in the file: `fail_closed`, `fail_open` or `fail_reload`.
    pub fn as_str(self) -> &'static str {
        match self {
            FailurePolicy::FailClosed => "fail_closed",
            FailurePolicy::FailOpen => "fail_open",
            FailurePolicy::FailReload => "fail_reload",
        }
    }
}

impl fmt::Display for FailurePolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl RouteMatch {
    /// Whether a request path matches. `path` is the request path without the query; a
    /// `?` and what follows are ignored should they be passed anyway.
    pub fn matches(&self, path: &str) -> bool {
        let path = path.split_once('?').map_or(path, |(path, _query)| path);
        match self {
            RouteMatch::Prefix(prefix) => path.starts_with(prefix.as_str()),
            RouteMatch::Path(exact) => path == exact,
            RouteMatch::Regex(pattern) => pattern.matches(path),
        }
    }
}

impl Pattern {
    /// Compiles `source` to match whole texts, within [`REGEX_SIZE_LIMIT`].
    pub fn new(source: &str) -> Result<Pattern, regex::Error> {
        let regex = regex::RegexBuilder::new(&format!("^(?:{source})$"))
            .size_limit(REGEX_SIZE_LIMIT)
            .build()?;
        Ok(Pattern {
            source: source.to_string(),
            regex,
        })
    }

    /// The expression as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether the whole of `text` matches.
    pub fn matches(&self, text: &str) -> bool {
        self.regex.is_match(text)
    }
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Eq for Pattern {}

impl std::hash::Hash for Pattern {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.source.hash(state);
    }
}

impl Phase {
    /// The name used in the file: `AUTHN`, `AUTHZ`, `STATS` or `UNSPECIFIED_PHASE`.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Authn => "AUTHN",
            Phase::Authz => "AUTHZ",
            Phase::Stats => "STATS",
            Phase::Unspecified => "UNSPECIFIED_PHASE",
        }
    }
}

/// Whether a request's host (`:authority` or `Host`, maybe with a port) matches a
/// `match.hosts` pattern, with Envoy's virtual-host domain rules: case-insensitive; the
/// port is ignored unless the pattern has one; `*.example.com` (suffix wildcard) and
/// `api.*` (prefix wildcard) need at least one character for the `*`; `*` alone matches
/// any host. `pattern` is lower case (as validation leaves it).
pub fn host_matches(pattern: &str, host: &str) -> bool {
    let host = if host_has_port(pattern) {
        host
    } else {
        strip_port(host)
    };
    let (host, pattern) = (host.as_bytes(), pattern.as_bytes());
    if pattern == b"*" {
        return true;
    }
    if let Some(suffix) = pattern.strip_prefix(b"*") {
        return host.len() > suffix.len()
            && host[host.len() - suffix.len()..].eq_ignore_ascii_case(suffix);
    }
    if let Some(prefix) = pattern.strip_suffix(b"*") {
        return host.len() > prefix.len() && host[..prefix.len()].eq_ignore_ascii_case(prefix);
    }
    host.eq_ignore_ascii_case(pattern)
}

/// How specific a host pattern is, as Envoy ranks virtual-host domains: an exact name
/// beats a suffix wildcard, which beats a prefix wildcard, which beats `*`; among
/// wildcards of one kind, the longer wins. Higher is more specific.
pub fn host_specificity(pattern: &str) -> (u8, usize) {
    if pattern == "*" {
        (0, 0)
    } else if pattern.starts_with('*') {
        (2, pattern.len())
    } else if pattern.ends_with('*') {
        (1, pattern.len())
    } else {
        (3, pattern.len())
    }
}

/// Whether a host pattern names a port (`example.com:8080`, `[::1]:80`).
pub(crate) fn host_has_port(pattern: &str) -> bool {
    match pattern.rsplit_once(':') {
        Some((host, port)) => {
            (!host.contains(':') || host.ends_with(']'))
                && !port.is_empty()
                && port.bytes().all(|b| b.is_ascii_digit())
        }
        None => false,
    }
}

/// A host without its `:port` (`[v6]:port` keeps the brackets).
fn strip_port(host: &str) -> &str {
    match host.rsplit_once(':') {
        Some((name, port))
            if port.bytes().all(|b| b.is_ascii_digit())
                && (!name.contains(':') || name.ends_with(']')) =>
        {
            name
        }
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_is_a_plain_string_prefix() {
        let m = RouteMatch::Prefix("/api".into());
        assert!(m.matches("/api"));
        assert!(m.matches("/api/v1"));
        assert!(m.matches("/apis"));
        assert!(m.matches("/api?x=1"));
        assert!(!m.matches("/ap"));
        assert!(!m.matches("/API"));
        assert!(!m.matches("/v1/api"));
        assert!(RouteMatch::Prefix("/".into()).matches("/anything"));
    }

    #[test]
    fn path_is_exact() {
        let m = RouteMatch::Path("/healthz".into());
        assert!(m.matches("/healthz"));
        assert!(m.matches("/healthz?verbose=1"));
        assert!(!m.matches("/healthz/"));
        assert!(!m.matches("/healthzz"));
        assert!(!m.matches("/"));
    }

    #[test]
    fn regex_is_a_full_match_of_the_path() {
        let m = RouteMatch::Regex(Pattern::new("/api/v[0-9]+/.*").expect("regex"));
        assert!(m.matches("/api/v1/users"));
        assert!(m.matches("/api/v12/?x=1"));
        assert!(!m.matches("/api/v1"));
        assert!(!m.matches("/x/api/v1/"));
        let m = RouteMatch::Regex(Pattern::new("/a|/b").expect("regex"));
        assert!(m.matches("/a") && m.matches("/b"));
        assert!(!m.matches("/ab"), "alternation is anchored as a whole");
    }

    #[test]
    fn hosts_follow_envoys_domain_rules() {
        assert!(host_matches("example.com", "example.com"));
        assert!(host_matches("example.com", "EXAMPLE.com:8080"));
        assert!(!host_matches("example.com", "www.example.com"));
        assert!(host_matches("*.example.com", "a.example.com"));
        assert!(host_matches("*.example.com", "a.b.example.com:1"));
        assert!(!host_matches("*.example.com", "example.com"));
        assert!(!host_matches("*.example.com", ".example.com"));
        assert!(host_matches("api.*", "api.example.org"));
        assert!(!host_matches("api.*", "api."));
        assert!(host_matches("*", "anything:9"));
        assert!(host_matches("example.com:8080", "example.com:8080"));
        assert!(!host_matches("example.com:8080", "example.com"));
        assert!(!host_matches("example.com:8080", "example.com:9090"));
        assert!(host_matches("[::1]", "[::1]:80"));
        let mut ranked = [
            "*",
            "api.*",
            "*.example.com",
            "a.example.com",
            "*.a.example.com",
        ];
        ranked.sort_by_key(|p| std::cmp::Reverse(host_specificity(p)));
        assert_eq!(
            ranked,
            [
                "a.example.com",
                "*.a.example.com",
                "*.example.com",
                "api.*",
                "*"
            ]
        );
    }

    #[test]
    fn failure_policy_names() {
        assert_eq!(FailurePolicy::default(), FailurePolicy::FailClosed);
        assert_eq!(FailurePolicy::FailClosed.to_string(), "fail_closed");
        assert_eq!(FailurePolicy::FailOpen.to_string(), "fail_open");
        assert_eq!(FailurePolicy::FailReload.to_string(), "fail_reload");
    }
}
