//! The equivalent Envoy bootstrap of a [`Config`]: the same listeners, routes, clusters and
//! one `envoy.filters.http.wasm` filter per plugin, so that one file can be served by the
//! wasmbridge gateway and by Envoy (the reference implementation of Proxy-Wasm) and the
//! two compared. What Envoy has no equivalent for is listed as [`Untranslated`], by key
//! path; `docs/envoy.md` describes the mapping.
//!
//! The translation is a pure function of the validated configuration: it reads no file
//! and no environment. Module paths are used as the configuration holds them (resolved
//! against the file's directory), so Envoy must run where they resolve the same way.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use serde_yaml::{Mapping, Value};
use wasmbridge_abi::{capability, catalogue};

use crate::{
    ClusterConfig, Config, FailurePolicy, HashOn, HeaderMatch, HeaderRule, Isolation, LbPolicy,
    LimitsProfile, PluginConfig, ReloadConfig, RouteAction, RouteConfig, RouteMatch, Selection,
};

/// The Wasm runtime the bootstrap asks for (Envoy's default build has V8).
pub const ENVOY_WASM_RUNTIME: &str = "envoy.wasm.runtime.v8";

const HCM_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";
const WASM_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm";
const ROUTER_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router";
const DOWNSTREAM_TLS: &str =
    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext";
const UPSTREAM_TLS: &str =
    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext";
/// Debian's bundle of the system's trusted CAs, for upstream TLS verified without a `ca`.
const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";
const FILTER_CONFIG_TYPE: &str = "type.googleapis.com/envoy.config.route.v3.FilterConfig";
const STRING_TYPE: &str = "type.googleapis.com/google.protobuf.StringValue";
const HTTP_OPTIONS: &str = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions";

/// An Envoy bootstrap and what could not be carried over.
#[derive(Debug, Clone, PartialEq)]
pub struct EnvoyBootstrap {
    /// The bootstrap (`envoy -c`), as a YAML document.
    pub bootstrap: Value,
    /// The settings that have no Envoy equivalent: process settings, route orders, then
    /// plugins, routes.
    pub untranslated: Vec<Untranslated>,
}

/// A setting the bootstrap does not carry, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Untranslated {
    /// Where it sits in the file (`plugins[0].limits.memory`).
    pub key_path: String,
    /// Why Envoy does without it, or what comes closest.
    pub reason: String,
}

impl fmt::Display for Untranslated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key_path, self.reason)
    }
}

impl EnvoyBootstrap {
    /// The bootstrap as YAML text.
    pub fn to_yaml(&self) -> String {
        // A `Value` of strings, numbers, bools, sequences and mappings always serializes.
        serde_yaml::to_string(&self.bootstrap).unwrap_or_default()
    }
}

/// Translates a configuration into the equivalent Envoy bootstrap.
///
/// Every listener gets an HTTP connection manager (codec `AUTO`, so HTTP/1.1 and h2c,
/// unless the listener says `http2: false`) with the same routes, and a last route that
/// answers 404 as wasmbridge does when no route matches. Each plugin becomes one Wasm HTTP
/// filter named after it, disabled (`FilterConfig{disabled: true}`) on the routes that do
/// not list it; the filters are ordered so that every route sees its plugins in
/// its own order, and a route whose order contradicts another's is reported.
pub fn envoy_bootstrap(config: &Config) -> EnvoyBootstrap {
    let mut untranslated = Vec::new();
    let mut skip = |key_path: String, reason: &str| {
        untranslated.push(Untranslated {
            key_path,
            reason: reason.to_string(),
        })
    };

    let server = &config.server;
    if server.grace_period_seconds != 1 {
        skip(
            "server.grace_period_seconds".into(),
            "Envoy's drain time is a command-line flag (`--drain-time-s`)",
        );
    }
    if server.compile_cache.is_some() {
        skip(
            "server.compile_cache".into(),
            "Envoy compiles modules at every start (no compile cache)",
        );
    }
    if server.shutdown_timeout_seconds != 5 {
        skip(
            "server.shutdown_timeout_seconds".into(),
            "Envoy's shutdown wait is a command-line flag (`--parent-shutdown-time-s`)",
        );
    }
    if !server.watch {
        skip(
            "server.watch".into(),
            "Envoy does not watch its bootstrap file (it reloads through xDS or a hot restart)",
        );
    }
    if config.admin.as_ref().is_some_and(|a| a.token.is_some()) {
        skip(
            "admin.token".into(),
            "Envoy's admin interface has no authentication: keep it on loopback",
        );
    }
    if server.per_stream_instances != 1000 {
        skip(
            "server.per_stream_instances".into(),
            "Envoy has no per-stream VMs",
        );
    }

    let order = filter_order(config, &mut skip);
    let mut filters: Vec<Value> = order
        .iter()
        .filter_map(|&i| config.plugins.get(i))
        .map(|p| {
            if p.base.is_some() {
                // An override repeats its plugin's settings, which are reported there.
                wasm_filter(p, &mut |_, _| {})
            } else {
                wasm_filter(p, &mut skip)
            }
        })
        .collect();
    filters.push(map([
        ("name", "envoy.filters.http.router".into()),
        (
            "typed_config",
            map([
                ("@type", ROUTER_TYPE.into()),
                // wasmbridge adds no `x-envoy-*` headers to what it forwards or returns.
                ("suppress_envoy_headers", true.into()),
            ]),
        ),
    ]));

    let translated: Vec<Option<Value>> = config
        .routes
        .iter()
        .map(|r| route(r, config, &mut skip))
        .collect();
    // What no route takes gets wasmbridge's 404 without running any plugin (Envoy's own
    // would run every filter of the chain).
    let mut no_route = Mapping::new();
    no_route.insert("name".into(), "no_route".into());
    no_route.insert("match".into(), map([("prefix", "/".into())]));
    no_route.insert(
        "direct_response".into(),
        map([
            ("status", 404.into()),
            ("body", map([("inline_string", "no route\n".into())])),
        ]),
    );
    if let Some(off) = disabled_plugins(config, &[]) {
        no_route.insert("typed_per_filter_config".into(), off);
    }
    let no_route = Value::Mapping(no_route);
    // One virtual host per host pattern, holding the routes that list it, as wasmbridge
    // considers only the routes of the most specific pattern that matches; `all` (`*`)
    // holds the routes without hosts.
    let mut patterns: Vec<&str> = Vec::new();
    for r in &config.routes {
        for h in &r.hosts {
            if h != "*" && !patterns.contains(&h.as_str()) {
                patterns.push(h);
            }
        }
    }
    let vhost = |name: &str, takes: &dyn Fn(&RouteConfig) -> bool| {
        let mut routes: Vec<Value> = config
            .routes
            .iter()
            .zip(&translated)
            .filter(|(r, _)| takes(r))
            .filter_map(|(_, t)| t.clone())
            .collect();
        routes.push(no_route.clone());
        map([
            ("name", name.into()),
            ("domains", Value::Sequence(vec![name.into()])),
            ("routes", Value::Sequence(routes)),
        ])
    };
    let mut virtual_hosts: Vec<Value> = patterns
        .iter()
        .map(|p| vhost(p, &|r: &RouteConfig| r.hosts.iter().any(|h| h == p)))
        .collect();
    let mut all = vhost("*", &|r: &RouteConfig| {
        r.hosts.is_empty() || r.hosts.iter().any(|h| h == "*")
    });
    if let Value::Mapping(m) = &mut all {
        m.insert("name".into(), "all".into());
    }
    virtual_hosts.push(all);
    let route_config = map([
        ("name", "routes".into()),
        ("virtual_hosts", Value::Sequence(virtual_hosts)),
    ]);
    // wasmbridge ignores the request's port unless a pattern names one; Envoy does so
    // only when told to strip every port.
    let with_port = config
        .routes
        .iter()
        .find(|r| r.hosts.iter().any(|h| crate::host_has_port(h)));
    let strip_ports = !patterns.is_empty() && with_port.is_none();
    if let Some(r) = with_port {
        skip(
            format!("{}.match.hosts", r.key_path),
            "a pattern names a port: Envoy then compares hosts with their port, so patterns \
             without one do not match requests that carry a port (wasmbridge ignores it)",
        );
    }

    let listeners: Vec<Value> = config
        .listeners
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let mut hcm = map([
                ("@type", HCM_TYPE.into()),
                ("stat_prefix", format!("listener{i}").into()),
                ("codec_type", if l.http2 { "AUTO" } else { "HTTP1" }.into()),
                ("route_config", route_config.clone()),
                ("http_filters", Value::Sequence(filters.clone())),
            ]);
            if let (true, Value::Mapping(m)) = (strip_ports, &mut hcm) {
                m.insert("strip_any_host_port".into(), true.into());
            }
            let mut chain = Mapping::new();
            chain.insert(
                "filters".into(),
                Value::Sequence(vec![map([
                    (
                        "name",
                        "envoy.filters.network.http_connection_manager".into(),
                    ),
                    ("typed_config", hcm),
                ])]),
            );
            if let Some(tls) = &l.tls {
                let mut common = Mapping::new();
                common.insert(
                    "tls_certificates".into(),
                    Value::Sequence(vec![map([
                        (
                            "certificate_chain",
                            map([("filename", tls.cert.display().to_string().into())]),
                        ),
                        (
                            "private_key",
                            map([("filename", tls.key.display().to_string().into())]),
                        ),
                    ])]),
                );
                if l.http2 {
                    common.insert(
                        "alpn_protocols".into(),
                        Value::Sequence(vec!["h2".into(), "http/1.1".into()]),
                    );
                }
                chain.insert(
                    "transport_socket".into(),
                    map([
                        ("name", "envoy.transport_sockets.tls".into()),
                        (
                            "typed_config",
                            map([
                                ("@type", DOWNSTREAM_TLS.into()),
                                ("common_tls_context", Value::Mapping(common)),
                            ]),
                        ),
                    ]),
                );
            }
            map([
                ("name", format!("listener{i}").into()),
                (
                    "address",
                    socket_address(&l.address.ip().to_string(), l.address.port()),
                ),
                (
                    "filter_chains",
                    Value::Sequence(vec![Value::Mapping(chain)]),
                ),
            ])
        })
        .collect();

    let clusters: Vec<Value> = config.clusters.iter().map(cluster).collect();

    let mut bootstrap = Mapping::new();
    let node = &config.node;
    if !node.id.is_empty() || !node.cluster.is_empty() || !node.metadata.is_empty() {
        let mut n = Mapping::new();
        if !node.id.is_empty() {
            n.insert("id".into(), node.id.clone().into());
        }
        if !node.cluster.is_empty() {
            n.insert("cluster".into(), node.cluster.clone().into());
        }
        if !node.metadata.is_empty() {
            n.insert(
                "metadata".into(),
                struct_value(&wasmbridge_abi::StructValue::Struct(node.metadata.clone())),
            );
        }
        bootstrap.insert("node".into(), Value::Mapping(n));
    }
    bootstrap.insert(
        "static_resources".into(),
        map([
            ("listeners", Value::Sequence(listeners)),
            ("clusters", Value::Sequence(clusters)),
        ]),
    );
    if let Some(admin) = &config.admin {
        bootstrap.insert(
            "admin".into(),
            map([(
                "address",
                socket_address(&admin.address.ip().to_string(), admin.address.port()),
            )]),
        );
    }
    EnvoyBootstrap {
        bootstrap: Value::Mapping(bootstrap),
        untranslated,
    }
}

/// A mapping with keys in the given order.
fn map<const N: usize>(pairs: [(&str, Value); N]) -> Value {
    Value::Mapping(pairs.into_iter().map(|(k, v)| (k.into(), v)).collect())
}

fn socket_address(host: &str, port: u16) -> Value {
    map([(
        "socket_address",
        map([("address", host.into()), ("port_value", port.into())]),
    )])
}

/// A `google.protobuf.Duration` in its JSON form (`1.5s`).
fn duration(d: Duration) -> Value {
    format!("{}s", d.as_secs_f64()).into()
}

fn string_value(bytes: &[u8]) -> Value {
    map([
        ("@type", STRING_TYPE.into()),
        ("value", String::from_utf8_lossy(bytes).into_owned().into()),
    ])
}

fn struct_value(v: &wasmbridge_abi::StructValue) -> Value {
    use wasmbridge_abi::StructValue as S;
    match v {
        S::Null => Value::Null,
        S::Number(n) => (*n).into(),
        S::String(s) => s.clone().into(),
        S::Bool(b) => (*b).into(),
        S::Struct(fields) => Value::Mapping(
            fields
                .iter()
                .map(|(k, v)| (k.clone().into(), struct_value(v)))
                .collect(),
        ),
        S::List(items) => Value::Sequence(items.iter().map(struct_value).collect()),
    }
}

/// The filter chain order: plugin indexes such that each route's plugins come in the
/// route's order. Ties go to the first use (routes in file order), then to file order; a
/// route that contradicts the order built so far is reported once, and its conflicting
/// pairs keep the earlier order.
fn filter_order(config: &Config, skip: &mut impl FnMut(String, &str)) -> Vec<usize> {
    let index = |name: &str| config.plugins.iter().position(|p| p.name == name);
    // Edges a → b: a runs before b.
    let mut after: BTreeMap<usize, BTreeSet<usize>> = BTreeMap::new();
    let mut first_use: Vec<usize> = Vec::new();
    for route in &config.routes {
        let chain: Vec<usize> = route.plugins.iter().filter_map(|n| index(n)).collect();
        for &p in &chain {
            if !first_use.contains(&p) {
                first_use.push(p);
            }
        }
        let mut reported = false;
        for (k, &a) in chain.iter().enumerate() {
            for &b in &chain[k + 1..] {
                if reaches(&after, b, a) {
                    if std::mem::replace(&mut reported, true) {
                        continue;
                    }
                    skip(
                        format!("{}.plugins", route.key_path),
                        &format!(
                            "runs `{}` before `{}`, which another route runs the other way \
                             round; Envoy has one filter order per listener, which keeps the \
                             earlier route's",
                            config.plugins[a].name, config.plugins[b].name
                        ),
                    );
                } else {
                    after.entry(a).or_default().insert(b);
                }
            }
        }
    }
    for p in 0..config.plugins.len() {
        if !first_use.contains(&p) {
            first_use.push(p);
        }
    }
    // Kahn's algorithm, picking the ready plugin that was used first.
    let mut order = Vec::with_capacity(first_use.len());
    let mut left = first_use;
    while !left.is_empty() {
        let ready = left
            .iter()
            .position(|&p| {
                !left
                    .iter()
                    .any(|&q| q != p && after.get(&q).is_some_and(|s| s.contains(&p)))
            })
            .unwrap_or(0);
        order.push(left.remove(ready));
    }
    order
}

/// Whether `from` runs before `to` by the edges so far.
fn reaches(after: &BTreeMap<usize, BTreeSet<usize>>, from: usize, to: usize) -> bool {
    let mut stack = vec![from];
    let mut seen = BTreeSet::new();
    while let Some(p) = stack.pop() {
        if p == to {
            return true;
        }
        if seen.insert(p) {
            stack.extend(after.get(&p).into_iter().flatten().copied());
        }
    }
    false
}

fn wasm_filter(p: &PluginConfig, skip: &mut impl FnMut(String, &str)) -> Value {
    let key = &p.key_path;
    if p.source.is_remote() {
        skip(
            format!("{key}.module"),
            "Envoy fetches remote modules through a cluster of its own and cannot pull OCI \
             images; `wasmbridge pull` the module and point `module` at the file",
        );
    }
    let mut vm = Mapping::new();
    vm.insert("vm_id".into(), p.vm_id.clone().into());
    vm.insert("runtime".into(), ENVOY_WASM_RUNTIME.into());
    vm.insert(
        "code".into(),
        map([(
            "local",
            map([("filename", p.module.display().to_string().into())]),
        )]),
    );
    if !p.vm_configuration.is_empty() {
        vm.insert("configuration".into(), string_value(&p.vm_configuration));
    }
    let env = &p.environment_variables;
    if !env.host_env_keys.is_empty() || !env.key_values.is_empty() {
        let mut e = Mapping::new();
        if !env.host_env_keys.is_empty() {
            e.insert(
                "host_env_keys".into(),
                Value::Sequence(env.host_env_keys.iter().map(|k| k.clone().into()).collect()),
            );
        }
        if !env.key_values.is_empty() {
            e.insert(
                "key_values".into(),
                Value::Mapping(
                    env.key_values
                        .iter()
                        .map(|(k, v)| (k.clone().into(), v.clone().into()))
                        .collect(),
                ),
            );
        }
        vm.insert("environment_variables".into(), Value::Mapping(e));
    }

    let mut plugin = Mapping::new();
    plugin.insert("name".into(), p.name.clone().into());
    plugin.insert("root_id".into(), p.root_id.clone().into());
    plugin.insert("vm_config".into(), Value::Mapping(vm));
    if !p.configuration.is_empty() {
        plugin.insert("configuration".into(), string_value(&p.configuration));
    }
    let policy = match p.failure_policy {
        FailurePolicy::FailClosed => "FAIL_CLOSED",
        FailurePolicy::FailOpen => "FAIL_OPEN",
        FailurePolicy::FailReload => "FAIL_RELOAD",
    };
    plugin.insert("failure_policy".into(), policy.into());
    if p.failure_policy == FailurePolicy::FailReload {
        plugin.insert(
            "reload_config".into(),
            map([(
                "backoff",
                map([
                    ("base_interval", duration(p.reload.base_interval)),
                    ("max_interval", duration(p.reload.max_interval)),
                ]),
            )]),
        );
    } else if p.reload != ReloadConfig::default() {
        skip(
            format!("{key}.reload"),
            "only used under fail_reload (Envoy's reload_config likewise)",
        );
    }
    let caps = &p.capabilities;
    if caps.allowed.is_some() || !caps.denied.is_empty() {
        match capability::denied_hostcalls(caps.allowed.as_deref(), &caps.denied) {
            Ok(denied) => {
                // Envoy's list covers the guest's exports too (a callback left out is
                // never called) and the toolchain helpers; wasmbridge restricts hostcalls
                // only, so every callback and helper is allowed.
                let allowed: Mapping = capability::FAMILIES
                    .iter()
                    .flat_map(|f| f.hostcalls.iter().copied())
                    .filter(|h| !denied.contains(h))
                    .chain(
                        catalogue::HOSTCALLS
                            .iter()
                            .filter(|h| h.section == catalogue::sections::RUNTIME)
                            .map(|h| h.name),
                    )
                    .chain(catalogue::CALLBACKS.iter().map(|c| c.name))
                    .chain(["_initialize", "_start", "main", "malloc"])
                    .map(|h| (h.into(), Value::Mapping(Mapping::new())))
                    .collect();
                plugin.insert(
                    "capability_restriction_config".into(),
                    map([("allowed_capabilities", Value::Mapping(allowed))]),
                );
            }
            Err(e) => skip(format!("{key}.capabilities"), &e.to_string()),
        }
    }
    if caps.clusters.is_some() {
        skip(
            format!("{key}.capabilities.clusters"),
            "Envoy does not restrict which clusters a plugin's callouts target",
        );
    }
    if p.callouts.allow_host_port {
        skip(
            format!("{key}.callouts.allow_host_port"),
            "Envoy's callouts target clusters by name only",
        );
    }
    untranslated_limits(p, skip);
    if p.isolation == Isolation::PerStream {
        skip(
            format!("{key}.isolation"),
            "Envoy has no per-stream VMs: streams share the plugin's VM on each worker",
        );
    }
    let pool = &p.pool;
    if pool.replicas.is_some() {
        skip(
            format!("{key}.pool.replicas"),
            "Envoy runs one VM per worker thread (`--concurrency`)",
        );
    }
    if pool.selection != Selection::Thread {
        skip(
            format!("{key}.pool.selection"),
            "Envoy serves a stream with its worker thread's VM",
        );
    }
    if pool.recycle_streams.is_some() || pool.recycle_memory.is_some() {
        skip(
            format!("{key}.pool.recycle"),
            "Envoy never replaces a healthy VM",
        );
    }
    if p.log_only {
        skip(
            format!("{key}.log_only"),
            "Envoy applies every change a plugin makes (no log-only mode)",
        );
    }
    if !p.redact.headers.is_empty() || !p.redact.properties.is_empty() {
        skip(
            format!("{key}.redact"),
            "Envoy shows a plugin every header and property",
        );
    }

    map([
        ("name", p.name.clone().into()),
        (
            "typed_config",
            map([
                ("@type", WASM_TYPE.into()),
                ("config", Value::Mapping(plugin)),
            ]),
        ),
    ])
}

fn untranslated_limits(p: &PluginConfig, skip: &mut impl FnMut(String, &str)) {
    let key = &p.key_path;
    let l = &p.limits;
    let reason = "Envoy has no per-plugin resource limits";
    if l.profile != LimitsProfile::Default {
        skip(format!("{key}.limits.profile"), reason);
    }
    for (name, set) in [
        ("memory", l.memory.is_some()),
        ("cpu", l.cpu.is_some()),
        ("callbacks", !l.cpu_by_callback.is_empty()),
        ("body", l.body.is_some()),
        (
            "headers",
            l.header_bytes.is_some() || l.header_pairs.is_some(),
        ),
        ("callouts", l.callouts.is_some()),
        ("log_line", l.log_line.is_some()),
    ] {
        if set {
            skip(format!("{key}.limits.{name}"), reason);
        }
    }
}

fn route(r: &RouteConfig, config: &Config, skip: &mut impl FnMut(String, &str)) -> Option<Value> {
    let mut matcher = Mapping::new();
    match &r.matcher {
        RouteMatch::Prefix(p) => matcher.insert("prefix".into(), p.clone().into()),
        RouteMatch::Path(p) => matcher.insert("path".into(), p.clone().into()),
        RouteMatch::Regex(p) => matcher.insert("safe_regex".into(), safe_regex(p)),
    };
    if !r.headers.is_empty() {
        matcher.insert(
            "headers".into(),
            Value::Sequence(r.headers.iter().map(header_matcher).collect()),
        );
    }
    let mut out = Mapping::new();
    out.insert("name".into(), r.name.clone().into());
    out.insert("match".into(), Value::Mapping(matcher));
    match &r.action {
        RouteAction::Cluster(name) => {
            let mut action = Mapping::new();
            action.insert("cluster".into(), name.clone().into());
            let cluster = config.cluster(name);
            // Without `total_timeout_ms` an exchange has no deadline, only one per read.
            action.insert(
                "timeout".into(),
                cluster
                    .and_then(|c| c.total_timeout)
                    .map_or_else(|| "0s".into(), duration),
            );
            if let Some(c) = cluster {
                action.insert("idle_timeout".into(), duration(c.read_timeout));
                if c.retries > 0 {
                    action.insert(
                        "retry_policy".into(),
                        map([
                            ("retry_on", "connect-failure,refused-stream".into()),
                            ("num_retries", u64::from(c.retries).into()),
                        ]),
                    );
                }
                if let LbPolicy::ConsistentHash(on) = &c.lb_policy {
                    let policy = match on {
                        HashOn::Header(h) => {
                            map([("header", map([("header_name", h.clone().into())]))])
                        }
                        HashOn::Path => map([("header", map([("header_name", ":path".into())]))]),
                        HashOn::SourceIp => {
                            map([("connection_properties", map([("source_ip", true.into())]))])
                        }
                    };
                    action.insert("hash_policy".into(), Value::Sequence(vec![policy]));
                }
            }
            out.insert("route".into(), Value::Mapping(action));
        }
        RouteAction::DirectResponse(d) => {
            if d.status < 200 {
                skip(
                    format!("{}.direct_response.status", r.key_path),
                    "Envoy's direct responses have a status of 200 to 599: the route is left out",
                );
                return None;
            }
            let mut action = Mapping::new();
            action.insert("status".into(), u64::from(d.status).into());
            if !d.body.is_empty() {
                action.insert(
                    "body".into(),
                    map([(
                        "inline_string",
                        String::from_utf8_lossy(&d.body).into_owned().into(),
                    )]),
                );
            }
            out.insert("direct_response".into(), Value::Mapping(action));
            if !d.headers.is_empty() {
                out.insert(
                    "response_headers_to_add".into(),
                    Value::Sequence(
                        d.headers
                            .iter()
                            .map(|(k, v)| {
                                map([
                                    (
                                        "header",
                                        map([
                                            ("key", k.clone().into()),
                                            ("value", v.clone().into()),
                                        ]),
                                    ),
                                    ("append_action", "APPEND_IF_EXISTS_OR_ADD".into()),
                                ])
                            })
                            .collect(),
                    ),
                );
            }
        }
    }
    if let Some(off) = disabled_plugins(config, &r.plugins) {
        out.insert("typed_per_filter_config".into(), off);
    }
    Some(Value::Mapping(out))
}

/// The `typed_per_filter_config` that turns off every plugin a route does not list, if any.
fn disabled_plugins(config: &Config, listed: &[String]) -> Option<Value> {
    let off: Mapping = config
        .plugins
        .iter()
        .filter(|p| !listed.contains(&p.name))
        .map(|p| {
            (
                p.name.clone().into(),
                map([
                    ("@type", FILTER_CONFIG_TYPE.into()),
                    ("disabled", true.into()),
                ]),
            )
        })
        .collect();
    (!off.is_empty()).then_some(Value::Mapping(off))
}

fn header_matcher(h: &HeaderMatch) -> Value {
    // wasmbridge matches `host` as `:authority`, which is what Envoy calls it.
    let name = if h.name == "host" {
        ":authority"
    } else {
        &h.name
    };
    let mut m = Mapping::new();
    m.insert("name".into(), name.into());
    let mut invert = h.invert;
    let string = |kind: &str, s: &str| map([(kind, s.into())]);
    match &h.rule {
        HeaderRule::Exact(s) => {
            m.insert("string_match".into(), string("exact", s));
        }
        // Envoy wants a non-empty prefix, suffix or substring; an empty one means present.
        HeaderRule::Prefix(s) | HeaderRule::Suffix(s) | HeaderRule::Contains(s) if s.is_empty() => {
            m.insert("present_match".into(), true.into());
        }
        HeaderRule::Prefix(s) => {
            m.insert("string_match".into(), string("prefix", s));
        }
        HeaderRule::Suffix(s) => {
            m.insert("string_match".into(), string("suffix", s));
        }
        HeaderRule::Contains(s) => {
            m.insert("string_match".into(), string("contains", s));
        }
        HeaderRule::Regex(p) => {
            m.insert("string_match".into(), map([("safe_regex", safe_regex(p))]));
        }
        HeaderRule::Present(want) => {
            m.insert("present_match".into(), true.into());
            invert ^= !want;
        }
    }
    if invert {
        m.insert("invert_match".into(), true.into());
    }
    Value::Mapping(m)
}

/// Envoy's `RegexMatcher` (RE2, a full match like wasmbridge's).
fn safe_regex(p: &crate::Pattern) -> Value {
    map([("regex", p.as_str().into())])
}

fn cluster(c: &ClusterConfig) -> Value {
    let endpoints: Vec<(String, u16)> = c.endpoints.iter().filter_map(|e| host_port(e)).collect();
    let by_ip = endpoints
        .iter()
        .all(|(host, _)| host.parse::<std::net::IpAddr>().is_ok());
    let lb_endpoints: Vec<Value> = endpoints
        .iter()
        .map(|(host, port)| map([("endpoint", map([("address", socket_address(host, *port))]))]))
        .collect();
    let mut out = Mapping::new();
    out.insert("name".into(), c.name.clone().into());
    out.insert(
        "type".into(),
        if by_ip { "STATIC" } else { "STRICT_DNS" }.into(),
    );
    out.insert("connect_timeout".into(), duration(c.connect_timeout));
    out.insert(
        "lb_policy".into(),
        match c.lb_policy {
            LbPolicy::RoundRobin => "ROUND_ROBIN",
            LbPolicy::Random => "RANDOM",
            LbPolicy::ConsistentHash(_) => "RING_HASH",
        }
        .into(),
    );
    if let Some(hc) = &c.health_check {
        out.insert(
            "health_checks".into(),
            Value::Sequence(vec![map([
                ("timeout", duration(hc.timeout)),
                ("interval", duration(hc.interval)),
                (
                    "unhealthy_threshold",
                    u64::from(hc.unhealthy_threshold).into(),
                ),
                ("healthy_threshold", u64::from(hc.healthy_threshold).into()),
                ("http_health_check", map([("path", hc.path.clone().into())])),
            ])]),
        );
    }
    if let Some(tls) = &c.tls {
        let mut context = Mapping::new();
        if let Some(sni) = &tls.sni {
            context.insert("sni".into(), sni.clone().into());
        }
        if tls.verify {
            // Envoy verifies only against a CA it is given: the file's, or the system's.
            let ca = tls.ca.as_ref().map_or_else(
                || SYSTEM_CA_BUNDLE.to_string(),
                |ca| ca.display().to_string(),
            );
            let mut validation = Mapping::new();
            validation.insert("trusted_ca".into(), map([("filename", ca.into())]));
            if let Some(sni) = &tls.sni {
                validation.insert(
                    "match_typed_subject_alt_names".into(),
                    Value::Sequence(vec![map([
                        ("san_type", "DNS".into()),
                        ("matcher", map([("exact", sni.clone().into())])),
                    ])]),
                );
            }
            context.insert(
                "common_tls_context".into(),
                map([("validation_context", Value::Mapping(validation))]),
            );
        }
        let mut typed = Mapping::new();
        typed.insert("@type".into(), UPSTREAM_TLS.into());
        typed.extend(context);
        out.insert(
            "transport_socket".into(),
            map([
                ("name", "envoy.transport_sockets.tls".into()),
                ("typed_config", Value::Mapping(typed)),
            ]),
        );
    }
    out.insert(
        "load_assignment".into(),
        map([
            ("cluster_name", c.name.clone().into()),
            (
                "endpoints",
                Value::Sequence(vec![map([("lb_endpoints", Value::Sequence(lb_endpoints))])]),
            ),
        ]),
    );
    if c.http2 {
        out.insert(
            "typed_extension_protocol_options".into(),
            map([(
                HTTP_OPTIONS,
                map([
                    (
                        "@type",
                        format!("type.googleapis.com/{HTTP_OPTIONS}").into(),
                    ),
                    (
                        "explicit_http_config",
                        map([("http2_protocol_options", Value::Mapping(Mapping::new()))]),
                    ),
                ]),
            )]),
        );
    }
    Value::Mapping(out)
}

/// `host:port` or `[v6]:port` split; validation has checked the form.
fn host_port(endpoint: &str) -> Option<(String, u16)> {
    let (host, port) = endpoint.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Some((host.to_string(), port.parse().ok()?))
}
