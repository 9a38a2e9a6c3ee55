//! The file as written: serde structs that mirror the YAML keys one to one, reject unknown
//! keys, and leave every semantic check to `validate`.

use std::fmt;
use std::path::Path;

use serde::Deserialize;
use serde::de::{MapAccess, Visitor};

use crate::error::ConfigError;

#[derive(Debug, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with `listeners`, `routes` and optionally `server`, `node`, `admin`, `clusters`, `plugins`"
)]
pub(crate) struct RawConfig {
    pub server: Option<RawServer>,
    pub node: Option<RawNode>,
    pub listeners: Option<Vec<RawListener>>,
    pub admin: Option<RawAdmin>,
    pub clusters: Option<Vec<RawCluster>>,
    pub plugins: Option<Vec<RawPlugin>>,
    pub routes: Option<Vec<RawRoute>>,
}

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with optionally `threads`, `grace_period_seconds`, `shutdown_timeout_seconds`, `watch`, `upgrade_sock`, `compile_cache`, `per_stream_instances`, `module_cache`, `module_ca_file`"
)]
pub(crate) struct RawServer {
    pub threads: Option<usize>,
    pub grace_period_seconds: Option<u64>,
    pub shutdown_timeout_seconds: Option<u64>,
    pub watch: Option<bool>,
    pub upgrade_sock: Option<String>,
    pub compile_cache: Option<String>,
    pub per_stream_instances: Option<u32>,
    pub module_cache: Option<String>,
    pub module_ca_file: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with `address` and optionally `http2`, `tls`"
)]
pub(crate) struct RawListener {
    pub address: String,
    pub http2: Option<bool>,
    pub tls: Option<RawListenerTls>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping with `cert` and `key`")]
pub(crate) struct RawListenerTls {
    pub cert: String,
    pub key: String,
}

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with optionally `path`, `interval_ms`, `timeout_ms`, `healthy_threshold`, `unhealthy_threshold`"
)]
pub(crate) struct RawHealthCheck {
    pub path: Option<String>,
    pub interval_ms: Option<u64>,
    pub timeout_ms: Option<u64>,
    pub healthy_threshold: Option<u32>,
    pub unhealthy_threshold: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with optionally `sni`, `verify`, `ca`"
)]
pub(crate) struct RawUpstreamTls {
    pub sni: Option<String>,
    pub verify: Option<bool>,
    pub ca: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with one of `header`, `source_ip: true`, `path: true`"
)]
pub(crate) struct RawHashOn {
    pub header: Option<String>,
    pub source_ip: Option<bool>,
    pub path: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with optionally `address`, `token`"
)]
pub(crate) struct RawAdmin {
    pub address: Option<String>,
    pub token: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with `name`, `endpoints` and optionally `http2`, `tls`, `connect_timeout_ms`, `read_timeout_ms`, `total_timeout_ms`, `retries`, `lb_policy`, `hash_on`, `health_check`"
)]
pub(crate) struct RawCluster {
    pub name: String,
    pub endpoints: Vec<String>,
    pub http2: Option<bool>,
    pub tls: Option<RawUpstreamTls>,
    pub connect_timeout_ms: Option<u64>,
    pub read_timeout_ms: Option<u64>,
    pub total_timeout_ms: Option<u64>,
    pub retries: Option<u32>,
    pub lb_policy: Option<String>,
    pub hash_on: Option<RawHashOn>,
    pub health_check: Option<RawHealthCheck>,
}

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with `name`, `module` and optionally `sha256`, `root_id`, `vm_id`, `configuration`, `vm_configuration`, `failure_policy`, `callouts`, `limits`, `isolation`, `pool`, `reload`, `capabilities`, `redact`, `environment_variables`, `phase`, `priority`"
)]
pub(crate) struct RawPlugin {
    pub name: String,
    pub root_id: Option<String>,
    pub vm_id: Option<String>,
    pub module: String,
    pub configuration: Option<serde_yaml::Value>,
    pub vm_configuration: Option<serde_yaml::Value>,
    pub failure_policy: Option<RawFailurePolicy>,
    pub callouts: Option<RawCallouts>,
    pub limits: Option<RawLimits>,
    pub isolation: Option<RawIsolation>,
    pub pool: Option<RawPool>,
    pub reload: Option<RawReload>,
    pub log_only: Option<bool>,
    pub capabilities: Option<RawCapabilities>,
    pub redact: Option<RawRedact>,
    pub environment_variables: Option<RawEnvironment>,
    pub phase: Option<RawPhase>,
    pub priority: Option<i32>,
    pub sha256: Option<String>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(expecting = "`AUTHN`, `AUTHZ`, `STATS` or `UNSPECIFIED_PHASE`")]
pub(crate) enum RawPhase {
    #[serde(rename = "AUTHN")]
    Authn,
    #[serde(rename = "AUTHZ")]
    Authz,
    #[serde(rename = "STATS")]
    Stats,
    #[serde(rename = "UNSPECIFIED_PHASE")]
    Unspecified,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case", expecting = "`shared` or `per_stream`")]
pub(crate) enum RawIsolation {
    Shared,
    PerStream,
}

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with optionally `replicas`, `selection`, `recycle`"
)]
pub(crate) struct RawPool {
    pub replicas: Option<usize>,
    pub selection: Option<RawSelection>,
    pub recycle: Option<RawRecycle>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case", expecting = "`thread` or `least_loaded`")]
pub(crate) enum RawSelection {
    Thread,
    LeastLoaded,
}

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with optionally `streams`, `memory`"
)]
pub(crate) struct RawRecycle {
    pub streams: Option<u64>,
    pub memory: Option<RawSize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping with optionally `backoff`")]
pub(crate) struct RawReload {
    pub backoff: Option<RawBackoff>,
}

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with optionally `base_interval`, `max_interval`"
)]
pub(crate) struct RawBackoff {
    pub base_interval: Option<String>,
    pub max_interval: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with optionally `allowed`, `denied`, `clusters`"
)]
pub(crate) struct RawCapabilities {
    pub allowed: Option<Vec<String>>,
    pub denied: Option<Vec<String>>,
    pub clusters: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with optionally `headers`, `properties`"
)]
pub(crate) struct RawRedact {
    pub headers: Option<Vec<String>>,
    pub properties: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with optionally `host_env_keys`, `key_values`"
)]
pub(crate) struct RawEnvironment {
    pub host_env_keys: Option<Vec<String>>,
    pub key_values: Option<KeyValues>,
}

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with optionally `profile`, `memory`, `cpu`, `fuel`, `stack`, `callbacks`, `body`, `headers`, `callouts`, `log_line`"
)]
pub(crate) struct RawLimits {
    pub profile: Option<RawProfile>,
    pub memory: Option<RawSize>,
    pub cpu: Option<String>,
    pub fuel: Option<u64>,
    pub stack: Option<RawSize>,
    pub callbacks: Option<std::collections::BTreeMap<String, RawCallbackLimits>>,
    pub body: Option<RawSize>,
    pub headers: Option<RawHeaderLimits>,
    pub callouts: Option<u64>,
    pub log_line: Option<RawSize>,
}

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with optionally `bytes`, `pairs`"
)]
pub(crate) struct RawHeaderLimits {
    pub bytes: Option<RawSize>,
    pub pairs: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with optionally `cpu`, `fuel`"
)]
pub(crate) struct RawCallbackLimits {
    pub cpu: Option<String>,
    pub fuel: Option<u64>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
pub(crate) enum RawProfile {
    #[serde(rename = "default")]
    Default,
    #[serde(rename = "strict")]
    Strict,
}

/// A size: a number of bytes, or a string with a unit (`16MiB`).
#[derive(Debug, Deserialize)]
#[serde(untagged, expecting = "a number of bytes or a size such as `16MiB`")]
pub(crate) enum RawSize {
    Bytes(u64),
    Text(String),
}

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with optionally `allow_host_port`"
)]
pub(crate) struct RawCallouts {
    pub allow_host_port: Option<bool>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
pub(crate) enum RawFailurePolicy {
    #[serde(rename = "fail_closed")]
    Closed,
    #[serde(rename = "fail_open")]
    Open,
    #[serde(rename = "fail_reload")]
    Reload,
}

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with `match`, `cluster` or `direct_response`, and optionally `name`, `plugins`"
)]
pub(crate) struct RawRoute {
    pub name: Option<String>,
    #[serde(rename = "match")]
    pub matcher: RawMatch,
    pub cluster: Option<String>,
    pub direct_response: Option<RawDirectResponse>,
    pub plugins: Option<Vec<RawRoutePlugin>>,
}

/// A route's plugin: a name, or a name with the route's own plugin configuration.
#[derive(Debug, Deserialize)]
#[serde(
    untagged,
    expecting = "a plugin name, or a mapping with `name` and `configuration`"
)]
pub(crate) enum RawRoutePlugin {
    Name(String),
    Override(RawPluginOverride),
}

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with `name` and `configuration`"
)]
pub(crate) struct RawPluginOverride {
    pub name: String,
    pub configuration: serde_yaml::Value,
}

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with `prefix`, `path` or `regex`, and optionally `hosts`, `headers`"
)]
pub(crate) struct RawMatch {
    pub prefix: Option<String>,
    pub path: Option<String>,
    pub regex: Option<String>,
    pub hosts: Option<Vec<String>>,
    pub headers: Option<Vec<RawHeaderMatch>>,
}

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with `name`, one of `exact`, `prefix`, `suffix`, `contains`, `regex`, `present`, and optionally `invert`"
)]
pub(crate) struct RawHeaderMatch {
    pub name: String,
    pub exact: Option<String>,
    pub prefix: Option<String>,
    pub suffix: Option<String>,
    pub contains: Option<String>,
    pub regex: Option<String>,
    pub present: Option<bool>,
    pub invert: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with optionally `id`, `cluster`, `metadata`"
)]
pub(crate) struct RawNode {
    pub id: Option<String>,
    pub cluster: Option<String>,
    pub metadata: Option<serde_yaml::Mapping>,
}

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with `status` and optionally `body`, `headers`"
)]
pub(crate) struct RawDirectResponse {
    pub status: u64,
    pub body: Option<String>,
    pub headers: Option<HeaderList>,
}

/// A header mapping that keeps the order it was written in.
#[derive(Debug, Default)]
pub(crate) struct HeaderList(pub Vec<(String, String)>);

/// A mapping of names to string values that keeps the order it was written in (and
/// repeated names, which validation rejects).
#[derive(Debug, Default)]
pub(crate) struct KeyValues(pub Vec<(String, String)>);

/// Parses the text in two passes: a plain YAML parse first, so that a syntax error is
/// reported as such (the typed pass reads lazily and could trip over a bad key before it
/// reaches the bad syntax), then the typed pass, which tracks key paths.
pub(crate) fn parse(text: &str, source: &Path) -> Result<RawConfig, ConfigError> {
    let document: serde_yaml::Value =
        serde_yaml::from_str(text).map_err(|err| ConfigError::syntax(source, &err))?;
    if document.is_null() {
        // An empty file (or one of comments only) is an empty mapping; validation then
        // says what is missing.
        return Ok(RawConfig::default());
    }
    serde_path_to_error::deserialize(serde_yaml::Deserializer::from_str(text))
        .map_err(|err| ConfigError::schema(source, &err))
}

impl From<RawFailurePolicy> for crate::FailurePolicy {
    fn from(raw: RawFailurePolicy) -> Self {
        match raw {
            RawFailurePolicy::Closed => crate::FailurePolicy::FailClosed,
            RawFailurePolicy::Open => crate::FailurePolicy::FailOpen,
            RawFailurePolicy::Reload => crate::FailurePolicy::FailReload,
        }
    }
}

/// Reads a mapping of strings to strings in order; the text says what the mapping is.
struct PairsVisitor(&'static str);

impl<'de> Visitor<'de> for PairsVisitor {
    type Value = Vec<(String, String)>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut pairs = Vec::with_capacity(map.size_hint().unwrap_or(0));
        while let Some(entry) = map.next_entry::<String, String>()? {
            pairs.push(entry);
        }
        Ok(pairs)
    }
}

impl<'de> Deserialize<'de> for HeaderList {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_map(PairsVisitor("a mapping of header names to values"))
            .map(HeaderList)
    }
}

impl<'de> Deserialize<'de> for KeyValues {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_map(PairsVisitor("a mapping of variable names to string values"))
            .map(KeyValues)
    }
}
