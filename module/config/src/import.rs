//! The inverse of [`crate::envoy`]: an Envoy bootstrap with `envoy.filters.http.wasm`
//! filters, and Istio `WasmPlugin` resources, as a wasmbridge configuration
//! (`wasmbridge import-envoy`, `docs/envoy.md`). What has no wasmbridge equivalent is
//! listed as [`Untranslated`], by its path in the input.
//!
//! The translation reads no file: module paths and URLs are written as the input has them.
//! Its result is YAML text for the user to keep and edit, so it is a [`Value`] in the
//! shape of the file rather than a validated [`crate::Config`]; [`EnvoyImport::to_yaml`]
//! gives the text, which `Config::from_yaml_str` then checks like any file.

use std::time::Duration;

use serde::Deserialize;
use serde_yaml::{Mapping, Value};

use crate::envoy::Untranslated;

/// The listener a file without one (a `WasmPlugin` alone) gets.
pub const DEFAULT_LISTENER: &str = "0.0.0.0:8080";
/// The placeholder cluster a file without routes gets, and its endpoint.
pub const PLACEHOLDER_CLUSTER: (&str, &str) = ("upstream", "127.0.0.1:8000");

const WASM_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm";
const HCM_NAME: &str = "envoy.filters.network.http_connection_manager";
const HCM_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";
const ROUTER_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router";
const FILTER_CONFIG_TYPE: &str = "type.googleapis.com/envoy.config.route.v3.FilterConfig";
const TYPED_STRUCTS: [&str; 2] = [
    "type.googleapis.com/udpa.type.v1.TypedStruct",
    "type.googleapis.com/xds.type.v3.TypedStruct",
];

/// A wasmbridge configuration made from Envoy (and Istio) configuration, and what could
/// not be carried over.
#[derive(Debug, Clone, PartialEq)]
pub struct EnvoyImport {
    /// The configuration, in the shape of the YAML file.
    pub config: Value,
    /// What the configuration does not carry, by path in the input (`documents[1].` first
    /// when the input holds several YAML documents), in input order.
    pub untranslated: Vec<Untranslated>,
}

/// Why a text could not be imported at all.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The text is not YAML.
    #[error("not YAML: {0}")]
    Syntax(#[from] serde_yaml::Error),
    /// No document is an Envoy bootstrap or an Istio `WasmPlugin`.
    #[error(
        "nothing to import: no document is an Envoy bootstrap (with `static_resources`) or an \
         Istio `WasmPlugin`"
    )]
    Nothing,
}

impl EnvoyImport {
    /// The configuration as YAML text.
    pub fn to_yaml(&self) -> String {
        // A `Value` of strings, numbers, bools, sequences and mappings always serializes.
        serde_yaml::to_string(&self.config).unwrap_or_default()
    }
}

/// Imports a YAML text of one or more documents (`---`): Envoy bootstraps and Istio
/// `WasmPlugin` resources (`extensions.istio.io`).
///
/// - Listeners' socket addresses become `listeners` (`codec_type: HTTP1` as `http2:
///   false`), `admin.address` becomes `admin`, `node` becomes `node`.
/// - Static clusters with their `load_assignment` endpoints become `clusters`
///   (`connect_timeout`, HTTP/2 protocol options).
/// - Each HTTP connection manager's Wasm filters become `plugins`, and every route of its
///   `route_config` lists them in filter order, less those its `typed_per_filter_config`
///   disables. A virtual host's `domains` become the routes' `match.hosts`.
/// - A `WasmPlugin` becomes a plugin on every route, placed by its `phase` and `priority`.
///   Without a bootstrap, the configuration gets the listener [`DEFAULT_LISTENER`] and one
///   route `/` to the placeholder cluster [`PLACEHOLDER_CLUSTER`], and says so.
pub fn import_envoy(text: &str) -> Result<EnvoyImport, ImportError> {
    let mut documents = Vec::new();
    for document in serde_yaml::Deserializer::from_str(text) {
        let value = Value::deserialize(document)?;
        if !value.is_null() {
            documents.push(value);
        }
    }
    let mut import = Importer::default();
    let many = documents.len() > 1;
    let mut found = false;
    let mut wasm_plugins = Vec::new();
    for (i, document) in documents.iter().enumerate() {
        let at = if many {
            format!("documents[{i}]")
        } else {
            String::new()
        };
        if document.get("kind").and_then(Value::as_str) == Some("WasmPlugin") {
            found = true;
            wasm_plugins.push((at, document));
        } else if document.get("static_resources").is_some() {
            found = true;
            import.bootstrap(&at, document);
        } else {
            let what = document
                .get("kind")
                .and_then(Value::as_str)
                .map_or("a document".to_string(), |k| format!("a `{k}` document"));
            import.skip(
                &at,
                &format!(
                    "{what} that is neither an Envoy bootstrap with `static_resources` nor an \
                     Istio `WasmPlugin`"
                ),
            );
        }
    }
    if !found {
        return Err(ImportError::Nothing);
    }
    for (at, document) in wasm_plugins {
        import.wasm_plugin(&at, document);
    }
    Ok(import.finish())
}

/// The configuration being built.
#[derive(Default)]
struct Importer {
    listeners: Vec<Value>,
    admin: Option<Value>,
    node: Option<Value>,
    clusters: Vec<(String, Mapping)>,
    plugins: Vec<(String, Mapping)>,
    routes: Vec<Mapping>,
    /// Plugins for every route (`WasmPlugin`s), after each route's own.
    everywhere: Vec<String>,
    /// The connection managers translated so far, to skip identical copies (one per
    /// listener, as `wasmbridge envoy-config` writes them).
    managers: Vec<Value>,
    untranslated: Vec<Untranslated>,
}

/// A route being imported: its mapping and the Envoy filter names it disables.
struct ImportedRoute {
    route: Mapping,
    disabled: Vec<String>,
    enabled: Vec<String>,
}

impl Importer {
    fn skip(&mut self, at: &str, reason: &str) {
        self.untranslated.push(Untranslated {
            key_path: if at.is_empty() {
                "(document)".to_string()
            } else {
                at.to_string()
            },
            reason: reason.to_string(),
        });
    }

    /// Reports every key of `value` not in `known`.
    fn unknown_keys(&mut self, at: &str, value: &Value, known: &[&str], reason: &str) {
        if let Some(map) = value.as_mapping() {
            for key in map.keys().filter_map(Value::as_str) {
                if !known.contains(&key) {
                    self.skip(&join(at, key), reason);
                }
            }
        }
    }

    fn bootstrap(&mut self, at: &str, b: &Value) {
        self.unknown_keys(
            at,
            b,
            &["static_resources", "admin", "node"],
            "no wasmbridge equivalent",
        );
        if let Some(node) = b.get("node") {
            let mut n = Mapping::new();
            for key in ["id", "cluster", "metadata"] {
                if let Some(v) = node.get(key) {
                    n.insert(key.into(), v.clone());
                }
            }
            self.unknown_keys(
                &join(at, "node"),
                node,
                &["id", "cluster", "metadata"],
                "wasmbridge's node has `id`, `cluster` and `metadata` only",
            );
            if !n.is_empty() {
                self.node = Some(Value::Mapping(n));
            }
        }
        if let Some(admin) = b.get("admin") {
            let path = join(at, "admin.address");
            match admin.get("address").and_then(socket_address) {
                Some(address) => {
                    self.admin = Some(map([("address", address.into())]));
                }
                None => self.skip(&path, "not a socket address with an IP and a port"),
            }
            self.unknown_keys(
                &join(at, "admin"),
                admin,
                &["address"],
                "wasmbridge's admin listener has only an address",
            );
        }
        let statics = &b["static_resources"];
        let sr = join(at, "static_resources");
        self.unknown_keys(
            &sr,
            statics,
            &["listeners", "clusters"],
            "no wasmbridge equivalent",
        );
        for (i, c) in seq(&statics["clusters"]).iter().enumerate() {
            self.cluster(&format!("{sr}.clusters[{i}]"), c);
        }
        for (i, l) in seq(&statics["listeners"]).iter().enumerate() {
            self.listener(&format!("{sr}.listeners[{i}]"), l);
        }
    }

    fn cluster(&mut self, at: &str, c: &Value) {
        let Some(name) = c.get("name").and_then(Value::as_str) else {
            self.skip(at, "a cluster without a name");
            return;
        };
        self.unknown_keys(
            at,
            c,
            &[
                "name",
                "type",
                "connect_timeout",
                "load_assignment",
                "typed_extension_protocol_options",
                "http2_protocol_options",
                "lb_policy",
                "health_checks",
            ],
            "no wasmbridge equivalent (clusters have endpoints, timeouts, `http2`, `tls`, a \
             load-balancing policy and a health check; TLS to endpoints is not imported)",
        );
        if let Some(kind) = c.get("type").and_then(Value::as_str)
            && !["STATIC", "STRICT_DNS", "LOGICAL_DNS"].contains(&kind)
        {
            self.skip(
                &format!("{at}.type"),
                &format!(
                    "`{kind}`: wasmbridge clusters have static endpoints; the cluster is left out"
                ),
            );
            return;
        }
        let lb_policy = match c.get("lb_policy").and_then(Value::as_str) {
            None | Some("ROUND_ROBIN") => None,
            Some("RANDOM") => Some("random"),
            Some("RING_HASH" | "MAGLEV") => Some("consistent_hash"),
            Some(policy) => {
                self.skip(
                    &format!("{at}.lb_policy"),
                    &format!(
                        "`{policy}`: wasmbridge balances round-robin, at random or by a \
                         consistent hash; left round-robin"
                    ),
                );
                None
            }
        };
        let mut endpoints = Vec::new();
        let la = &c["load_assignment"];
        for (i, group) in seq(&la["endpoints"]).iter().enumerate() {
            for (j, lb) in seq(&group["lb_endpoints"]).iter().enumerate() {
                let path = format!("{at}.load_assignment.endpoints[{i}].lb_endpoints[{j}]");
                match lb["endpoint"].get("address").and_then(socket_address) {
                    Some(endpoint) => endpoints.push(Value::from(endpoint)),
                    None => self.skip(&path, "not a socket address with a port"),
                }
            }
        }
        if endpoints.is_empty() {
            self.skip(
                at,
                &format!("cluster `{name}` has no static endpoint; it is left out"),
            );
            return;
        }
        let mut out = Mapping::new();
        out.insert("name".into(), name.into());
        out.insert("endpoints".into(), Value::Sequence(endpoints));
        if let Some(t) = c.get("connect_timeout") {
            match duration(t) {
                Some(d) => {
                    let ms = d.as_millis().max(1);
                    if ms != 1000 {
                        out.insert(
                            "connect_timeout_ms".into(),
                            u64::try_from(ms).unwrap_or(u64::MAX).into(),
                        );
                    }
                }
                None => self.skip(&format!("{at}.connect_timeout"), "not a duration"),
            }
        }
        let options = &c["typed_extension_protocol_options"];
        let h2 = c.get("http2_protocol_options").is_some()
            || options.as_mapping().is_some_and(|m| {
                m.values().any(|o| {
                    o["explicit_http_config"]
                        .get("http2_protocol_options")
                        .is_some()
                })
            });
        if h2 {
            out.insert("http2".into(), true.into());
        }
        if let Some(policy) = lb_policy {
            out.insert("lb_policy".into(), policy.into());
        }
        for (i, hc) in seq(&c["health_checks"]).iter().enumerate() {
            let path = format!("{at}.health_checks[{i}]");
            match health_check(hc) {
                Some(check) if i == 0 => {
                    out.insert("health_check".into(), check);
                }
                _ => self.skip(
                    &path,
                    "wasmbridge has one HTTP health check per cluster (`http_health_check` \
                     with a `path`, interval, timeout and thresholds)",
                ),
            }
        }
        self.clusters.push((name.to_string(), out));
    }

    fn listener(&mut self, at: &str, l: &Value) {
        self.unknown_keys(
            at,
            l,
            &["name", "address", "filter_chains"],
            "no wasmbridge equivalent",
        );
        let Some(address) = l.get("address").and_then(socket_address) else {
            self.skip(
                &format!("{at}.address"),
                "not a socket address with an IP and a port; the listener is left out",
            );
            return;
        };
        let mut http2 = true;
        let mut managers = 0;
        for (i, chain) in seq(&l["filter_chains"]).iter().enumerate() {
            let fc = format!("{at}.filter_chains[{i}]");
            self.unknown_keys(
                &fc,
                chain,
                &["filters"],
                "wasmbridge listeners take every connection in cleartext",
            );
            for (j, filter) in seq(&chain["filters"]).iter().enumerate() {
                let name = filter.get("name").and_then(Value::as_str).unwrap_or("");
                let path = format!("{fc}.filters[{j}]");
                let tc = &filter["typed_config"];
                if name != HCM_NAME && type_of(tc) != Some(HCM_TYPE) {
                    self.skip(
                        &format!("{path} ({name})"),
                        "not an HTTP connection manager",
                    );
                    continue;
                }
                managers += 1;
                if tc.get("codec_type").and_then(Value::as_str) == Some("HTTP1") {
                    http2 = false;
                }
                self.connection_manager(&format!("{path}.typed_config"), tc);
            }
        }
        if managers == 0 {
            self.skip(at, "no HTTP connection manager: the listener is left out");
            return;
        }
        let mut out = Mapping::new();
        out.insert("address".into(), address.into());
        if !http2 {
            out.insert("http2".into(), false.into());
        }
        self.listeners.push(Value::Mapping(out));
    }

    fn connection_manager(&mut self, at: &str, hcm: &Value) {
        // `envoy-config` writes one identical manager per listener.
        let mut same = hcm.clone();
        if let Value::Mapping(m) = &mut same {
            m.remove("stat_prefix");
            m.remove("codec_type");
        }
        if self.managers.contains(&same) {
            return;
        }
        let first = self.managers.is_empty();
        self.managers.push(same);
        if !first {
            self.skip(
                at,
                "another connection manager with other routes or filters: wasmbridge has one \
                 route table for every listener, so its routes are added after the others' and \
                 serve every listener",
            );
        }
        self.unknown_keys(
            at,
            hcm,
            &[
                "@type",
                "stat_prefix",
                "codec_type",
                "route_config",
                "http_filters",
                "strip_any_host_port",
                "strip_matching_host_port",
            ],
            "no wasmbridge equivalent",
        );
        if hcm.get("rds").is_some() {
            self.skip(
                &join(at, "rds"),
                "routes from RDS are not fetched: give them inline as `route_config`",
            );
        }
        // The Wasm filters, by Envoy filter name: (filter name, plugin name, on by default).
        let mut chain: Vec<(String, String, bool)> = Vec::new();
        for (i, f) in seq(&hcm["http_filters"]).iter().enumerate() {
            let name = f.get("name").and_then(Value::as_str).unwrap_or("");
            let path = format!("{at}.http_filters[{i}]");
            if f.get("config_discovery").is_some() {
                self.skip(
                    &format!("{path} ({name})"),
                    "a filter from the extension config discovery service is not fetched",
                );
                continue;
            }
            let tc = &f["typed_config"];
            let (config, tc_path) = match type_of(tc) {
                Some(WASM_TYPE) => (&tc["config"], format!("{path}.typed_config.config")),
                Some(t)
                    if TYPED_STRUCTS.contains(&t)
                        && tc.get("type_url").and_then(Value::as_str).is_some_and(|u| {
                            u.ends_with("envoy.extensions.filters.http.wasm.v3.Wasm")
                        }) =>
                {
                    (
                        &tc["value"]["config"],
                        format!("{path}.typed_config.value.config"),
                    )
                }
                Some(ROUTER_TYPE) => continue,
                _ if name == "envoy.filters.http.router" => continue,
                _ => {
                    self.skip(&format!("{path} ({name})"), "not a wasm filter");
                    continue;
                }
            };
            let on = f.get("disabled").and_then(Value::as_bool) != Some(true);
            if let Some(plugin) = self.wasm_filter(&tc_path, name, config) {
                chain.push((name.to_string(), plugin, on));
            }
        }
        let rc = &hcm["route_config"];
        let rcp = join(at, "route_config");
        self.unknown_keys(
            &rcp,
            rc,
            &["name", "virtual_hosts"],
            "no wasmbridge equivalent",
        );
        for (v, vhost) in seq(&rc["virtual_hosts"]).iter().enumerate() {
            let vp = format!("{rcp}.virtual_hosts[{v}]");
            self.unknown_keys(
                &vp,
                vhost,
                &["name", "domains", "routes"],
                "no wasmbridge equivalent for virtual-host settings",
            );
            let domains: Vec<String> = seq(&vhost["domains"])
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect();
            let hosts: Vec<Value> = if domains.iter().any(|d| d == "*") {
                Vec::new()
            } else {
                domains.into_iter().map(Value::from).collect()
            };
            let vhost_name = vhost.get("name").and_then(Value::as_str).unwrap_or("");
            for (r, route) in seq(&vhost["routes"]).iter().enumerate() {
                let rp = format!("{vp}.routes[{r}]");
                if is_no_route(route) {
                    continue;
                }
                let Some(mut imported) = self.route(&rp, route) else {
                    continue;
                };
                if !hosts.is_empty()
                    && let Some(Value::Mapping(m)) = imported.route.get_mut("match")
                {
                    // After the path, before the headers.
                    let headers = m.remove("headers");
                    m.insert("hosts".into(), Value::Sequence(hosts.clone()));
                    if let Some(headers) = headers {
                        m.insert("headers".into(), headers);
                    }
                }
                let plugins: Vec<Value> = chain
                    .iter()
                    .filter(|(filter, _, on)| {
                        if imported.disabled.contains(filter) {
                            false
                        } else {
                            *on || imported.enabled.contains(filter)
                        }
                    })
                    .map(|(_, plugin, _)| Value::from(plugin.as_str()))
                    .collect();
                for filter in imported.disabled.iter().chain(&imported.enabled) {
                    if !chain.iter().any(|(f, ..)| f == filter) {
                        self.skip(
                            &format!("{rp}.typed_per_filter_config.{filter}"),
                            "names no wasm filter of this connection manager",
                        );
                    }
                }
                if !plugins.is_empty() {
                    imported
                        .route
                        .insert("plugins".into(), Value::Sequence(plugins));
                }
                let name = self.route_name(&imported.route, vhost_name);
                let mut route = Mapping::new();
                route.insert("name".into(), name.into());
                imported.route.remove("name");
                route.extend(imported.route);
                self.routes.push(route);
            }
        }
    }

    /// A unique route name: the route's own, then with its virtual host's, then numbered.
    fn route_name(&self, route: &Mapping, vhost: &str) -> String {
        let taken = |n: &str| {
            self.routes
                .iter()
                .any(|r| r.get("name").and_then(Value::as_str) == Some(n))
        };
        let own = route
            .get("name")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| format!("route{}", self.routes.len()));
        if !taken(&own) {
            return own;
        }
        let with_vhost = format!("{own}-{vhost}");
        if !vhost.is_empty() && !taken(&with_vhost) {
            return with_vhost;
        }
        (2..)
            .map(|n| format!("{own}-{n}"))
            .find(|n| !taken(n))
            .unwrap_or(own)
    }

    /// One Envoy route; `None` when it cannot be carried over as it is (reported).
    fn route(&mut self, at: &str, r: &Value) -> Option<ImportedRoute> {
        self.unknown_keys(
            at,
            r,
            &[
                "name",
                "match",
                "route",
                "direct_response",
                "typed_per_filter_config",
                "response_headers_to_add",
            ],
            "no wasmbridge equivalent for this route setting",
        );
        let mut out = Mapping::new();
        if let Some(name) = r.get("name").and_then(Value::as_str) {
            out.insert("name".into(), name.into());
        }
        out.insert(
            "match".into(),
            self.route_match(&join(at, "match"), &r["match"])?,
        );
        if let Some(action) = r.get("route") {
            let ap = join(at, "route");
            let Some(cluster) = action.get("cluster").and_then(Value::as_str) else {
                self.skip(
                    &ap,
                    "only a single `cluster` is translated (not weighted clusters or \
                     cluster headers); the route is left out",
                );
                return None;
            };
            if !self.clusters.iter().any(|(n, _)| n == cluster) {
                self.skip(
                    &format!("{ap}.cluster"),
                    &format!("cluster `{cluster}` was not imported; the route is left out"),
                );
                return None;
            }
            for (key, value) in action.as_mapping().into_iter().flatten() {
                let key = key.as_str().unwrap_or("?");
                // wasmbridge keeps these per cluster.
                let on_cluster = match key {
                    "timeout" => duration(value)
                        .filter(|d| !d.is_zero())
                        .map(|d| ("total_timeout_ms", millis(d).into())),
                    "idle_timeout" => duration(value)
                        .filter(|d| *d != Duration::from_secs(30))
                        .map(|d| ("read_timeout_ms", millis(d).into())),
                    "retry_policy" => retries(value).map(|n| ("retries", n.into())),
                    "hash_policy" => hash_on(value).map(|on| ("hash_on", on)),
                    _ => None,
                };
                if let Some((setting, v)) = on_cluster {
                    self.cluster_setting(&format!("{ap}.{key}"), cluster, setting, v);
                    continue;
                }
                let plain = match key {
                    "cluster" => true,
                    "timeout" => duration(value) == Some(Duration::ZERO),
                    "idle_timeout" => duration(value).is_some(),
                    _ => false,
                };
                if !plain {
                    let why = if key.contains("timeout") {
                        "no wasmbridge equivalent: the cluster's `read_timeout_ms` bounds each \
                         read, nothing bounds a whole exchange"
                    } else {
                        "no wasmbridge equivalent: routes forward requests as they are"
                    };
                    self.skip(&format!("{ap}.{key}"), why);
                }
            }
            out.insert("cluster".into(), cluster.into());
            if r.get("response_headers_to_add").is_some() {
                self.skip(
                    &join(at, "response_headers_to_add"),
                    "wasmbridge adds headers only to direct responses (a plugin such as \
                     add_header does it for proxied ones)",
                );
            }
        } else if let Some(d) = r.get("direct_response") {
            let dp = join(at, "direct_response");
            let status = d.get("status").and_then(Value::as_u64).unwrap_or(200);
            let mut direct = Mapping::new();
            direct.insert("status".into(), status.into());
            if let Some(body) = d.get("body") {
                match body.get("inline_string").and_then(Value::as_str) {
                    Some(text) => {
                        direct.insert("body".into(), text.into());
                    }
                    None => self.skip(
                        &format!("{dp}.body"),
                        "only `inline_string` bodies are translated; the body is left empty",
                    ),
                }
            }
            let mut headers = Mapping::new();
            for (i, h) in seq(&r["response_headers_to_add"]).iter().enumerate() {
                let header = &h["header"];
                match (
                    header.get("key").and_then(Value::as_str),
                    header.get("value").and_then(Value::as_str),
                ) {
                    (Some(k), Some(v)) => {
                        headers.insert(k.into(), v.into());
                    }
                    _ => self.skip(
                        &format!("{at}.response_headers_to_add[{i}]"),
                        "not a header with a key and a value",
                    ),
                }
            }
            if !headers.is_empty() {
                direct.insert("headers".into(), Value::Mapping(headers));
            }
            out.insert("direct_response".into(), Value::Mapping(direct));
        } else {
            self.skip(
                at,
                "only `route.cluster` and `direct_response` actions are translated (not \
                 redirects); the route is left out",
            );
            return None;
        }
        let mut disabled = Vec::new();
        let mut enabled = Vec::new();
        if let Some(per_filter) = r.get("typed_per_filter_config").and_then(Value::as_mapping) {
            for (name, config) in per_filter {
                let name = name.as_str().unwrap_or("?").to_string();
                let path = format!("{at}.typed_per_filter_config.{name}");
                if type_of(config) != Some(FILTER_CONFIG_TYPE) || config.get("config").is_some() {
                    self.skip(
                        &path,
                        "only `FilterConfig` turning a filter on or off on a route is \
                         translated; Envoy's Wasm filter has no other per-route configuration",
                    );
                    continue;
                }
                if config.get("disabled").and_then(Value::as_bool) == Some(true) {
                    disabled.push(name);
                } else {
                    enabled.push(name);
                }
            }
        }
        Some(ImportedRoute {
            route: out,
            disabled,
            enabled,
        })
    }

    /// Sets what a route says about its cluster (`total_timeout_ms`, `read_timeout_ms`,
    /// `retries`, `hash_on`) on the cluster, unless another route said otherwise.
    fn cluster_setting(&mut self, at: &str, cluster: &str, key: &str, value: Value) {
        let Some((_, c)) = self.clusters.iter_mut().find(|(n, _)| n == cluster) else {
            return;
        };
        if key == "hash_on" && c.get("lb_policy").and_then(Value::as_str) != Some("consistent_hash")
        {
            self.skip(at, "used only with a RING_HASH or MAGLEV cluster");
            return;
        }
        match c.get(key) {
            Some(v) if *v != value => {
                let why = format!(
                    "another route to `{cluster}` sets its `{key}` otherwise; wasmbridge keeps \
                     one per cluster, the first"
                );
                self.skip(at, &why);
            }
            _ => {
                c.insert(key.into(), value);
            }
        }
    }

    fn route_match(&mut self, at: &str, m: &Value) -> Option<Value> {
        let mut out = Mapping::new();
        let mut ok = true;
        for (key, value) in m.as_mapping().into_iter().flatten() {
            let key = key.as_str().unwrap_or("?");
            match (key, value) {
                ("prefix" | "path", Value::String(s)) => {
                    // Envoy's empty prefix matches every path, as `/` does.
                    let s = if s.is_empty() { "/" } else { s.as_str() };
                    out.insert(key.into(), s.into());
                }
                ("safe_regex", v) => match v.get("regex").and_then(Value::as_str) {
                    Some(regex) => {
                        out.insert("regex".into(), regex.into());
                    }
                    None => ok = false,
                },
                ("case_sensitive", Value::Bool(true)) => {}
                ("headers", Value::Sequence(list)) => {
                    let mut headers = Vec::new();
                    for (i, h) in list.iter().enumerate() {
                        match header_matcher(h) {
                            Ok(h) => headers.push(h),
                            Err(why) => {
                                self.skip(&format!("{at}.headers[{i}]"), &why);
                                ok = false;
                            }
                        }
                    }
                    out.insert("headers".into(), Value::Sequence(headers));
                }
                _ => {
                    self.skip(
                        &join(at, key),
                        "no wasmbridge equivalent for this route condition",
                    );
                    ok = false;
                }
            }
        }
        if !["prefix", "path", "regex"]
            .iter()
            .any(|k| out.contains_key(*k))
        {
            ok = false;
        }
        if !ok {
            self.skip(
                at,
                "the route's match cannot be carried over exactly; the route is left out \
                 rather than matching more than it should",
            );
            return None;
        }
        Some(Value::Mapping(out))
    }

    /// A Wasm filter's `config` as a plugin; returns the plugin's name.
    fn wasm_filter(&mut self, at: &str, filter: &str, c: &Value) -> Option<String> {
        self.unknown_keys(
            at,
            c,
            &[
                "name",
                "root_id",
                "vm_config",
                "configuration",
                "fail_open",
                "failure_policy",
                "reload_config",
            ],
            "no wasmbridge equivalent",
        );
        let mut p = Mapping::new();
        let name = c
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .unwrap_or(filter);
        let name = self.plugin_name(name);
        p.insert("name".into(), name.clone().into());
        if let Some(root) = c.get("root_id").and_then(Value::as_str)
            && !root.is_empty()
        {
            p.insert("root_id".into(), root.into());
        }
        let vm = &c["vm_config"];
        let vp = join(at, "vm_config");
        self.unknown_keys(
            &vp,
            vm,
            &[
                "vm_id",
                "runtime",
                "code",
                "configuration",
                "environment_variables",
            ],
            "no wasmbridge equivalent",
        );
        if let Some(id) = vm.get("vm_id").and_then(Value::as_str)
            && !id.is_empty()
        {
            p.insert("vm_id".into(), id.into());
        }
        let code = &vm["code"];
        if let Some(file) = code["local"].get("filename").and_then(Value::as_str) {
            p.insert("module".into(), file.into());
        } else if let Some(uri) = code["remote"]["http_uri"]
            .get("uri")
            .and_then(Value::as_str)
        {
            p.insert("module".into(), uri.into());
            match code["remote"].get("sha256").and_then(Value::as_str) {
                Some(sum) => {
                    p.insert("sha256".into(), sum.into());
                }
                None => self.skip(
                    &format!("{vp}.code.remote"),
                    "remote code without a `sha256`: wasmbridge needs one to fetch a module",
                ),
            }
            if code["remote"].get("retry_policy").is_some() {
                self.skip(
                    &format!("{vp}.code.remote.retry_policy"),
                    "wasmbridge fetches a module at start-up with its own retries",
                );
            }
        } else {
            self.skip(
                &format!("{vp}.code"),
                "only `local.filename` and `remote.http_uri` code is translated (not inline \
                 bytes); the plugin is left out",
            );
            return None;
        }
        if let Some(conf) = vm.get("configuration") {
            match self.any_payload(&format!("{vp}.configuration"), conf) {
                Some(v) => {
                    p.insert("vm_configuration".into(), v);
                }
                None => return None,
            }
        }
        if let Some(conf) = c.get("configuration") {
            match self.any_payload(&join(at, "configuration"), conf) {
                Some(v) => {
                    p.insert("configuration".into(), v);
                }
                None => return None,
            }
        }
        let policy = match c.get("failure_policy").and_then(Value::as_str) {
            Some("FAIL_OPEN") => Some("fail_open"),
            Some("FAIL_RELOAD") => Some("fail_reload"),
            Some("FAIL_CLOSED") | Some("UNSPECIFIED") | None => {
                (c.get("fail_open").and_then(Value::as_bool) == Some(true)).then_some("fail_open")
            }
            Some(other) => {
                self.skip(
                    &join(at, "failure_policy"),
                    &format!("unknown policy `{other}`; failing closed"),
                );
                None
            }
        };
        if let Some(policy) = policy {
            p.insert("failure_policy".into(), policy.into());
        }
        if let Some(backoff) = c["reload_config"].get("backoff") {
            if policy == Some("fail_reload") {
                let mut b = Mapping::new();
                for key in ["base_interval", "max_interval"] {
                    if let Some(d) = backoff.get(key).and_then(duration) {
                        b.insert(key.into(), format!("{}ms", d.as_millis().max(1)).into());
                    }
                }
                p.insert("reload".into(), map([("backoff", Value::Mapping(b))]));
            } else {
                self.skip(&join(at, "reload_config"), "used only under `FAIL_RELOAD`");
            }
        }
        let env = &vm["environment_variables"];
        if env.is_mapping() {
            let mut e = Mapping::new();
            if let Some(keys) = env.get("host_env_keys") {
                e.insert("host_env_keys".into(), keys.clone());
            }
            if let Some(kv) = env.get("key_values") {
                e.insert("key_values".into(), kv.clone());
            }
            p.insert("environment_variables".into(), Value::Mapping(e));
        }
        self.plugins.push((name.clone(), p));
        Some(name)
    }

    /// A unique plugin name.
    fn plugin_name(&self, wanted: &str) -> String {
        let taken = |n: &str| self.plugins.iter().any(|(p, _)| p == n);
        if !taken(wanted) {
            return wanted.to_string();
        }
        (2..)
            .map(|n| format!("{wanted}-{n}"))
            .find(|n| !taken(n))
            .unwrap_or_else(|| wanted.to_string())
    }

    /// A `google.protobuf.Any` configuration as the YAML value wasmbridge passes on the
    /// same way: a StringValue's text, a BytesValue's bytes (when they are text).
    fn any_payload(&mut self, at: &str, any: &Value) -> Option<Value> {
        let value = &any["value"];
        match type_of(any) {
            Some("type.googleapis.com/google.protobuf.StringValue") => {
                Some(value.as_str().unwrap_or("").into())
            }
            Some("type.googleapis.com/google.protobuf.BytesValue") => {
                match value
                    .as_str()
                    .and_then(base64_decode)
                    .map(String::from_utf8)
                {
                    Some(Ok(text)) => Some(text.into()),
                    _ => {
                        self.skip(
                            at,
                            "a BytesValue that is not base64 of UTF-8 text: wasmbridge's \
                             configurations are YAML text; the plugin is left out",
                        );
                        None
                    }
                }
            }
            Some("type.googleapis.com/google.protobuf.Struct") => {
                self.skip(
                    at,
                    "a Struct: Envoy passes the protobuf encoding of such a value, wasmbridge \
                     passes the mapping as JSON (what Istio's pluginConfig passes)",
                );
                Some(value.clone())
            }
            _ => {
                self.skip(
                    at,
                    "only StringValue, BytesValue and Struct configurations are translated; \
                     the plugin is left out",
                );
                None
            }
        }
    }

    fn wasm_plugin(&mut self, at: &str, w: &Value) {
        self.unknown_keys(
            at,
            w,
            &["apiVersion", "kind", "metadata", "spec"],
            "no wasmbridge equivalent",
        );
        if let Some(version) = w.get("apiVersion").and_then(Value::as_str)
            && !version.starts_with("extensions.istio.io/")
        {
            self.skip(
                &join(at, "apiVersion"),
                &format!("`{version}` is not Istio's extensions API; read as if it were"),
            );
        }
        let spec = &w["spec"];
        let sp = join(at, "spec");
        let metadata_name = w["metadata"].get("name").and_then(Value::as_str);
        let name = self.plugin_name(metadata_name.unwrap_or("wasmplugin"));
        for (key, value) in spec.as_mapping().into_iter().flatten() {
            let key = key.as_str().unwrap_or("?");
            let why = match key {
                "url" | "sha256" | "pluginName" | "pluginConfig" | "phase" | "priority"
                | "failStrategy" | "vmConfig" => continue,
                "type" if value.as_str() == Some("HTTP") => continue,
                "type" => {
                    self.skip(
                        &format!("{sp}.type"),
                        "a network (L4) plugin: wasmbridge runs HTTP plugins only; left out",
                    );
                    return;
                }
                "imagePullPolicy" => {
                    "wasmbridge fetches a module once at start-up and keeps it \
                                      by its sha256"
                }
                "imagePullSecret" => {
                    "registry credentials are not read from Kubernetes \
                                      secrets"
                }
                "selector" | "targetRef" | "targetRefs" => {
                    "no workloads to select: the plugin runs on every route of this gateway"
                }
                "match" => {
                    "traffic selectors (mode, ports) do not apply: the plugin runs on \
                            every route; list it on some routes only by editing `routes`"
                }
                "verificationKey" => "no signature verification; the sha256 pins the module",
                _ => "no wasmbridge equivalent",
            };
            self.skip(&format!("{sp}.{key}"), why);
        }
        let Some(url) = spec.get("url").and_then(Value::as_str) else {
            self.skip(&format!("{sp}.url"), "missing: the plugin is left out");
            return;
        };
        let module = if let Some(path) = url.strip_prefix("file://") {
            path.to_string()
        } else if url.contains("://") {
            url.to_string()
        } else {
            // Istio's default scheme.
            format!("oci://{url}")
        };
        let mut p = Mapping::new();
        p.insert("name".into(), name.clone().into());
        if let Some(root) = spec.get("pluginName").and_then(Value::as_str) {
            p.insert("root_id".into(), root.into());
        }
        p.insert("module".into(), module.into());
        if let Some(sum) = spec.get("sha256").and_then(Value::as_str) {
            p.insert("sha256".into(), sum.into());
        }
        if let Some(config) = spec.get("pluginConfig") {
            p.insert("configuration".into(), config.clone());
        }
        match spec.get("failStrategy").and_then(Value::as_str) {
            Some("FAIL_OPEN") => {
                p.insert("failure_policy".into(), "fail_open".into());
            }
            Some("FAIL_RELOAD") => {
                p.insert("failure_policy".into(), "fail_reload".into());
            }
            Some("FAIL_CLOSE") | None => {}
            Some(other) => self.skip(
                &format!("{sp}.failStrategy"),
                &format!("unknown strategy `{other}`; failing closed"),
            ),
        }
        if let Some(phase) = spec.get("phase").and_then(Value::as_str) {
            if ["AUTHN", "AUTHZ", "STATS", "UNSPECIFIED_PHASE"].contains(&phase) {
                if phase != "UNSPECIFIED_PHASE" {
                    p.insert("phase".into(), phase.into());
                }
            } else {
                self.skip(&format!("{sp}.phase"), &format!("unknown phase `{phase}`"));
            }
        }
        if let Some(priority) = spec.get("priority") {
            match priority.as_i64().and_then(|n| i32::try_from(n).ok()) {
                Some(n) => {
                    p.insert("priority".into(), n.into());
                }
                None => self.skip(&format!("{sp}.priority"), "not a 32-bit integer"),
            }
        }
        let vm = &spec["vmConfig"];
        let mut host_keys = Vec::new();
        let mut values = Mapping::new();
        for (i, env) in seq(&vm["env"]).iter().enumerate() {
            let Some(var) = env.get("name").and_then(Value::as_str) else {
                continue;
            };
            match env.get("valueFrom").and_then(Value::as_str) {
                Some("HOST") => host_keys.push(Value::from(var)),
                Some("INLINE") | None => {
                    let value = env.get("value").and_then(Value::as_str).unwrap_or("");
                    values.insert(var.into(), value.into());
                }
                Some(other) => self.skip(
                    &format!("{sp}.vmConfig.env[{i}].valueFrom"),
                    &format!("unknown source `{other}`"),
                ),
            }
        }
        self.unknown_keys(
            &format!("{sp}.vmConfig"),
            vm,
            &["env"],
            "no wasmbridge equivalent",
        );
        if !host_keys.is_empty() || !values.is_empty() {
            let mut e = Mapping::new();
            if !host_keys.is_empty() {
                e.insert("host_env_keys".into(), Value::Sequence(host_keys));
            }
            if !values.is_empty() {
                e.insert("key_values".into(), Value::Mapping(values));
            }
            p.insert("environment_variables".into(), Value::Mapping(e));
        }
        self.plugins.push((name.clone(), p));
        self.everywhere.push(name);
    }

    fn finish(mut self) -> EnvoyImport {
        if self.listeners.is_empty() {
            self.listeners
                .push(map([("address", DEFAULT_LISTENER.into())]));
            self.skip(
                "listeners",
                &format!("no listener was imported: added {DEFAULT_LISTENER}"),
            );
        }
        if self.routes.is_empty() {
            let (cluster, endpoint) = PLACEHOLDER_CLUSTER;
            if !self.clusters.iter().any(|(n, _)| n == cluster) {
                let mut c = Mapping::new();
                c.insert("name".into(), cluster.into());
                c.insert("endpoints".into(), Value::Sequence(vec![endpoint.into()]));
                self.clusters.push((cluster.to_string(), c));
            }
            let mut r = Mapping::new();
            r.insert("name".into(), "all".into());
            r.insert("match".into(), map([("prefix", "/".into())]));
            r.insert("cluster".into(), cluster.into());
            self.routes.push(r);
            self.skip(
                "routes",
                &format!(
                    "no route was imported: added `/` to the placeholder cluster `{cluster}` \
                     ({endpoint}); point it at your upstream"
                ),
            );
        }
        if !self.everywhere.is_empty() {
            for route in &mut self.routes {
                let list = route
                    .entry("plugins".into())
                    .or_insert_with(|| Value::Sequence(Vec::new()));
                if let Value::Sequence(list) = list {
                    list.extend(self.everywhere.iter().map(|n| Value::from(n.as_str())));
                }
            }
        }
        let mut config = Mapping::new();
        if let Some(node) = self.node {
            config.insert("node".into(), node);
        }
        config.insert("listeners".into(), Value::Sequence(self.listeners));
        if let Some(admin) = self.admin {
            config.insert("admin".into(), admin);
        }
        if !self.clusters.is_empty() {
            config.insert(
                "clusters".into(),
                Value::Sequence(
                    self.clusters
                        .into_iter()
                        .map(|(_, c)| Value::Mapping(c))
                        .collect(),
                ),
            );
        }
        if !self.plugins.is_empty() {
            config.insert(
                "plugins".into(),
                Value::Sequence(
                    self.plugins
                        .into_iter()
                        .map(|(_, p)| Value::Mapping(p))
                        .collect(),
                ),
            );
        }
        config.insert(
            "routes".into(),
            Value::Sequence(self.routes.into_iter().map(Value::Mapping).collect()),
        );
        EnvoyImport {
            config: Value::Mapping(config),
            untranslated: self.untranslated,
        }
    }
}

/// A header matcher (`HeaderMatcher`) as wasmbridge's `match.headers[i]`.
fn header_matcher(h: &Value) -> Result<Value, String> {
    let name = h
        .get("name")
        .and_then(Value::as_str)
        .ok_or("a header matcher without a name")?;
    let mut out = Mapping::new();
    out.insert("name".into(), name.into());
    let mut invert = false;
    let mut rule: Option<(&str, Value)> = None;
    for (key, value) in h.as_mapping().into_iter().flatten() {
        let key = key.as_str().unwrap_or("?");
        match key {
            "name" => {}
            "invert_match" => invert = value.as_bool() == Some(true),
            "present_match" => rule = Some(("present", value.clone())),
            "exact_match" => rule = Some(("exact", value.clone())),
            "prefix_match" => rule = Some(("prefix", value.clone())),
            "suffix_match" => rule = Some(("suffix", value.clone())),
            "contains_match" => rule = Some(("contains", value.clone())),
            "safe_regex_match" => rule = Some(("regex", value["regex"].clone())),
            "string_match" => {
                let sm = value
                    .as_mapping()
                    .ok_or("`string_match` is not a mapping")?;
                for (k, v) in sm {
                    match k.as_str().unwrap_or("?") {
                        "exact" => rule = Some(("exact", v.clone())),
                        "prefix" => rule = Some(("prefix", v.clone())),
                        "suffix" => rule = Some(("suffix", v.clone())),
                        "contains" => rule = Some(("contains", v.clone())),
                        "safe_regex" => rule = Some(("regex", v["regex"].clone())),
                        "ignore_case" if v.as_bool() != Some(true) => {}
                        other => {
                            return Err(format!(
                                "`string_match.{other}` has no wasmbridge equivalent (matching \
                                 is case-sensitive)"
                            ));
                        }
                    }
                }
            }
            other => return Err(format!("`{other}` has no wasmbridge equivalent")),
        }
    }
    let (kind, value) = rule.ok_or("a header matcher without a rule")?;
    if value.is_null() {
        return Err(format!("`{kind}` without a value"));
    }
    // `present_match` with `invert_match` is wasmbridge's `present: false`.
    if let ("present", Some(present)) = (kind, value.as_bool())
        && invert
    {
        out.insert("present".into(), (!present).into());
        return Ok(Value::Mapping(out));
    }
    out.insert(kind.into(), value);
    if invert {
        out.insert("invert".into(), true.into());
    }
    Ok(Value::Mapping(out))
}

/// The route `wasmbridge envoy-config` appends to every virtual host for what no route
/// takes; the gateway answers so by itself.
fn is_no_route(r: &Value) -> bool {
    r.get("name").and_then(Value::as_str) == Some("no_route")
        && r["direct_response"].get("status").and_then(Value::as_u64) == Some(404)
        && r["direct_response"]["body"]
            .get("inline_string")
            .and_then(Value::as_str)
            == Some("no route\n")
}

/// `{socket_address: {address, port_value}}` as `ip:port` (IPv6 in brackets); host names
/// are kept (clusters take them).
fn socket_address(v: &Value) -> Option<String> {
    let sa = v.get("socket_address")?;
    let host = sa.get("address")?.as_str()?;
    let port = sa.get("port_value").and_then(|p| {
        p.as_u64()
            .or_else(|| p.as_str().and_then(|s| s.parse().ok()))
    })?;
    if host.contains(':') {
        Some(format!("[{host}]:{port}"))
    } else {
        Some(format!("{host}:{port}"))
    }
}

/// A `google.protobuf.Duration`: `1.5s`, or `{seconds, nanos}`.
fn duration(v: &Value) -> Option<Duration> {
    if let Some(text) = v.as_str() {
        let secs: f64 = text.strip_suffix('s')?.parse().ok()?;
        return Duration::try_from_secs_f64(secs).ok();
    }
    let seconds = v.get("seconds").and_then(Value::as_u64).unwrap_or(0);
    let nanos = v.get("nanos").and_then(Value::as_u64).unwrap_or(0);
    Some(Duration::from_secs(seconds) + Duration::from_nanos(nanos))
}

/// A duration in whole milliseconds, at least 1.
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis().max(1)).unwrap_or(u64::MAX)
}

/// A retry policy's retries, when it retries what wasmbridge retries (failed connections).
fn retries(policy: &Value) -> Option<u64> {
    let on = policy.get("retry_on").and_then(Value::as_str)?;
    if !on.split(',').any(|c| c.trim() == "connect-failure") {
        return None;
    }
    policy
        .get("num_retries")
        .and_then(Value::as_u64)
        .or(Some(1))
}

/// The first hash policy as `hash_on`: a header (`:path` as `path: true`) or the client IP.
fn hash_on(policies: &Value) -> Option<Value> {
    let first = seq(policies).first()?;
    if let Some(name) = first["header"].get("header_name").and_then(Value::as_str) {
        return Some(if name == ":path" {
            map([("path", true.into())])
        } else {
            map([("header", name.into())])
        });
    }
    (first["connection_properties"]
        .get("source_ip")
        .and_then(Value::as_bool)
        == Some(true))
    .then(|| map([("source_ip", true.into())]))
}

/// An HTTP health check as `health_check`.
fn health_check(hc: &Value) -> Option<Value> {
    let path = hc["http_health_check"]
        .get("path")
        .and_then(Value::as_str)?;
    let mut out = Mapping::new();
    out.insert("path".into(), path.into());
    for (envoy, ours) in [("interval", "interval_ms"), ("timeout", "timeout_ms")] {
        if let Some(d) = hc.get(envoy).and_then(duration) {
            out.insert(ours.into(), millis(d).into());
        }
    }
    for key in ["healthy_threshold", "unhealthy_threshold"] {
        if let Some(n) = hc.get(key).and_then(Value::as_u64) {
            out.insert(key.into(), n.into());
        }
    }
    Some(Value::Mapping(out))
}

fn type_of(v: &Value) -> Option<&str> {
    v.get("@type").and_then(Value::as_str)
}

fn seq(v: &Value) -> &[Value] {
    v.as_sequence().map_or(&[], Vec::as_slice)
}

fn join(at: &str, key: &str) -> String {
    if at.is_empty() {
        key.to_string()
    } else {
        format!("{at}.{key}")
    }
}

/// A mapping with keys in the given order.
fn map<const N: usize>(pairs: [(&str, Value); N]) -> Value {
    Value::Mapping(pairs.into_iter().map(|(k, v)| (k.into(), v)).collect())
}

/// Standard base64 (padding optional), as protobuf's JSON form writes bytes.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes().filter(|c| !c.is_ascii_whitespace()) {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            b'=' => break,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_and_durations() {
        assert_eq!(base64_decode("aGVsbG8="), Some(b"hello".to_vec()));
        assert_eq!(base64_decode("aGk"), Some(b"hi".to_vec()));
        assert_eq!(base64_decode("a?"), None);
        assert_eq!(
            duration(&Value::from("0.25s")),
            Some(Duration::from_millis(250))
        );
        assert_eq!(
            duration(&serde_yaml::from_str("{seconds: 2, nanos: 5}").expect("yaml")),
            Some(Duration::new(2, 5))
        );
        assert_eq!(duration(&Value::from("5m")), None);
    }

    #[test]
    fn header_matchers() {
        let m = |yaml: &str| header_matcher(&serde_yaml::from_str(yaml).expect("yaml"));
        assert_eq!(
            m("{name: x, string_match: {safe_regex: {regex: 'a+'}}, invert_match: true}"),
            Ok(serde_yaml::from_str("{name: x, regex: 'a+', invert: true}").expect("yaml"))
        );
        assert_eq!(
            m("{name: x, present_match: true}"),
            Ok(serde_yaml::from_str("{name: x, present: true}").expect("yaml"))
        );
        assert_eq!(
            m("{name: x, present_match: true, invert_match: true}"),
            Ok(serde_yaml::from_str("{name: x, present: false}").expect("yaml"))
        );
        assert!(
            m("{name: x, string_match: {exact: a, ignore_case: true}}")
                .is_err_and(|e| e.contains("ignore_case"))
        );
        assert!(m("{name: x, range_match: {start: 1, end: 2}}").is_err());
    }
}
