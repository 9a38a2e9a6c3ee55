//! What a plugin may do and see: its capabilities (the hostcalls it may call and the
//! clusters its callouts may reach), what is redacted from it (request headers and
//! properties it cannot read or change), and its WASI environment variables.
//!
//! A denied hostcall costs nothing per call: [`link_denied`] links the module's import of it
//! to a stub when the plugin is loaded, as proxy-wasm-cpp-host does for Envoy's
//! `capability_restriction_config`. Every refusal — a denied hostcall, a callout to a
//! cluster outside the list, a write to something redacted — answers INTERNAL_FAILURE (a
//! WASI function: errno `NOTCAPABLE`), is logged once per plugin and capability at warn, and
//! counts in `wasmbridge_plugin_denied_total{plugin, capability}` ([`refuse`]).
//!
//! Redaction filters on read: the header map is never copied to hide an entry.

use std::collections::{BTreeSet, HashSet};
use std::fmt;
use std::sync::Mutex;

use bytes::Bytes;
use wasmbridge_abi::{LEGACY_ALIASES, Namespace, Status, errno};
use wasmtime::{ExternType, Linker, Module, Val};

use crate::context::HostState;

/// The capability label of a callout refused by [`Capabilities::clusters`].
pub(crate) const CLUSTERS: &str = "clusters";
/// The capability label of a refused write to a redacted request header.
pub(crate) const REDACTED_HEADERS: &str = "redact.headers";
/// The capability label of a refused write to a redacted property.
pub(crate) const REDACTED_PROPERTIES: &str = "redact.properties";

/// What a plugin may call (`plugins[].capabilities`). Names are hostcall families
/// (`http_calls`, see [`wasmbridge_abi::capability::FAMILIES`]) or hostcall names
/// (`proxy_http_call`, `fd_write`), as Envoy's `allowed_capabilities`. The default allows
/// everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// When set, only these may be called (the toolchain helpers always may).
    pub allowed: Option<Vec<String>>,
    /// These may not be called, whatever `allowed` says.
    pub denied: Vec<String>,
    /// When set, the clusters (or `host:port` upstreams) HTTP and gRPC callouts may
    /// target; a callout to any other is refused.
    pub clusters: Option<Vec<String>>,
}

/// What a plugin cannot see (`plugins[].redact`). Empty by default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Redaction {
    /// Request header names (any case). The plugin reads them as absent, through the
    /// header hostcalls and the `request.*` properties, and cannot change them; they still
    /// reach the upstream.
    pub headers: Vec<String>,
    /// Dotted property paths (`source.address`). The plugin reads them, what contains them
    /// (`source`) and what is inside them as NOT_FOUND, and cannot set them. A path
    /// `request.headers.<name>` redacts that request header as [`Redaction::headers`] does.
    pub properties: Vec<String>,
}

/// A plugin's WASI environment variables (`plugins[].environment_variables`), Envoy's
/// `VmConfig.environment_variables`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnvironmentVariables {
    /// Names copied from the proxy's own environment when the plugin is loaded; a name
    /// that is not set there is left out.
    pub host_env_keys: Vec<String>,
    /// Names and values given in the configuration.
    pub key_values: Vec<(String, String)>,
}

/// A plugin's capabilities, redaction and environment, resolved when it is loaded.
#[derive(Default)]
pub(crate) struct Policy {
    denied: BTreeSet<&'static str>,
    clusters: Option<Vec<String>>,
    /// Lower-case names.
    headers: Vec<Bytes>,
    /// Canonical dotted paths.
    properties: Vec<Vec<u8>>,
    /// `NAME=VALUE\0` entries, in configuration order.
    environ: Vec<Vec<u8>>,
    /// Capabilities whose refusal was logged already.
    logged: Mutex<HashSet<&'static str>>,
}

impl fmt::Debug for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Policy")
            .field("denied", &self.denied)
            .field("clusters", &self.clusters)
            .field("headers", &self.headers)
            .field("environ", &self.environ.len())
            .finish_non_exhaustive()
    }
}

impl Policy {
    /// Resolves the plugin's settings; host environment variables are read now. The error
    /// says which setting is wrong.
    pub(crate) fn new(
        plugin: &str,
        capabilities: &Capabilities,
        redaction: &Redaction,
        environment: &EnvironmentVariables,
    ) -> Result<Policy, String> {
        let denied = wasmbridge_abi::capability::denied_hostcalls(
            capabilities.allowed.as_deref(),
            &capabilities.denied,
        )
        .map_err(|e| format!("capabilities: {e}"))?;
        let mut headers = Vec::new();
        let mut properties = Vec::new();
        for name in &redaction.headers {
            headers.push(header_name(name)?);
        }
        for path in &redaction.properties {
            if path.is_empty() || path.split('.').any(str::is_empty) {
                return Err(format!(
                    "redact.properties: `{path}` is not a dotted property path"
                ));
            }
            match path.strip_prefix("request.headers.") {
                Some(header) => headers.push(header_name(header)?),
                None => properties.push(canonical(path.as_bytes())),
            }
        }
        Ok(Policy {
            denied,
            clusters: capabilities.clusters.clone(),
            headers,
            properties,
            environ: environ(plugin, environment)?,
            logged: Mutex::default(),
        })
    }

    /// Whether a callout may target `cluster` (a cluster name or `host:port`).
    pub(crate) fn allows_cluster(&self, cluster: &str) -> bool {
        self.clusters
            .as_ref()
            .is_none_or(|list| list.iter().any(|c| c == cluster))
    }

    /// Whether request header `name` is redacted (case-insensitive).
    /// Whether any request header is redacted.
    pub(crate) fn redacts_headers(&self) -> bool {
        !self.headers.is_empty()
    }

    pub(crate) fn header_hidden(&self, name: &[u8]) -> bool {
        self.headers.iter().any(|h| h.eq_ignore_ascii_case(name))
    }

    /// Whether the property at `segments` is redacted: it is, contains or lies inside a
    /// redacted path (legacy aliases and `filter_state.wasm.<path>` count as the path they
    /// stand for).
    pub(crate) fn property_hidden(&self, segments: &[&[u8]]) -> bool {
        if self.properties.is_empty() {
            return false;
        }
        let path = canonical(&segments.join(&b"."[..]));
        self.properties.iter().any(|r| overlaps(&path, r))
    }

    /// The `NAME=VALUE\0` entries `environ_get` serves.
    pub(crate) fn environ(&self) -> &[Vec<u8>] {
        &self.environ
    }

    /// True the first time `capability` is refused for this plugin.
    fn first_refusal(&self, capability: &'static str) -> bool {
        self.logged
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(capability)
    }
}

/// A header name to redact, lower-cased; an empty one is an error.
fn header_name(name: &str) -> Result<Bytes, String> {
    if name.is_empty() {
        return Err("redact.headers: a header name is empty".to_string());
    }
    Ok(Bytes::from(name.to_ascii_lowercase()))
}

/// A dotted path in the form it is compared in: a legacy alias (`node`) as its `xds.*`
/// name, `connection_id` as `connection.id`, `filter_state.wasm.<path>` as `<path>` (the
/// value `proxy_set_property(<path>)` stored).
fn canonical(dotted: &[u8]) -> Vec<u8> {
    if let Some(rest) = dotted.strip_prefix(b"filter_state.wasm.") {
        return canonical(rest);
    }
    let (first, rest) = match dotted.iter().position(|&b| b == b'.') {
        Some(dot) => (&dotted[..dot], &dotted[dot..]),
        None => (dotted, &b""[..]),
    };
    let target = LEGACY_ALIASES
        .iter()
        .find(|(alias, _)| alias.as_bytes() == first)
        .map(|(_, target)| *target)
        .or((first == b"connection_id").then_some("connection.id"));
    match target {
        Some(target) => [target.as_bytes(), rest].concat(),
        None => dotted.to_vec(),
    }
}

/// Whether one path is the other or one of them lies inside the other.
fn overlaps(a: &[u8], b: &[u8]) -> bool {
    let inside = |inner: &[u8], outer: &[u8]| {
        inner.len() > outer.len() && inner.starts_with(outer) && inner[outer.len()] == b'.'
    };
    a == b || inside(a, b) || inside(b, a)
}

/// The environment entries: `key_values`, then the `host_env_keys` the proxy has. A name
/// given twice is an error, as in Envoy.
fn environ(plugin: &str, env: &EnvironmentVariables) -> Result<Vec<Vec<u8>>, String> {
    let mut seen = HashSet::new();
    let mut check = |name: &str| {
        if name.is_empty() || name.contains(['=', '\0']) {
            return Err(format!(
                "environment_variables: `{name}` is not a variable name (empty, or holds `=` or NUL)"
            ));
        }
        if !seen.insert(name.to_string()) {
            return Err(format!(
                "environment_variables: `{name}` is given twice; every name must be unique"
            ));
        }
        Ok(())
    };
    let entry = |name: &str, value: &[u8]| [name.as_bytes(), b"=", value, b"\0"].concat();
    let mut out = Vec::new();
    for (name, value) in &env.key_values {
        check(name)?;
        if value.contains('\0') {
            return Err(format!(
                "environment_variables.key_values.{name}: the value holds a NUL byte"
            ));
        }
        out.push(entry(name, value.as_bytes()));
    }
    for name in &env.host_env_keys {
        check(name)?;
        match std::env::var_os(name) {
            Some(value) => out.push(entry(name, &value.into_encoded_bytes())),
            None => tracing::debug!(
                plugin,
                variable = %name,
                "host environment variable is not set; the plugin does not get it"
            ),
        }
    }
    Ok(out)
}

/// Records a refusal: a warning the first time per plugin and capability, and one count in
/// `wasmbridge_plugin_denied_total{plugin, capability}`.
pub(crate) fn refuse(state: &HostState, capability: &'static str, what: fmt::Arguments<'_>) {
    let plugin = &state.plugin;
    if plugin.policy.first_refusal(capability) {
        tracing::warn!(
            plugin = %plugin.name,
            root_id = %plugin.root_id,
            callback = state.call.callback,
            capability,
            "{what}; refused (logged once per plugin and capability, counted in \
             wasmbridge_plugin_denied_total)"
        );
    }
    if let Some(m) = &plugin.host_metrics {
        m.denied(capability);
    }
}

/// Links each import of `module` that `policy` denies to a stub that refuses the call:
/// INTERNAL_FAILURE for a `proxy_*` hostcall, errno `NOTCAPABLE` (76) for a WASI function,
/// nothing for one without a result (`proc_exit`), as proxy-wasm-cpp-host's stubs do.
pub(crate) fn link_denied(
    linker: &mut Linker<HostState>,
    module: &Module,
    policy: &Policy,
) -> wasmtime::Result<()> {
    if policy.denied.is_empty() {
        return Ok(());
    }
    linker.allow_shadowing(true);
    for import in module.imports() {
        let Some(spec) = wasmbridge_abi::hostcall(import.module(), import.name()) else {
            continue;
        };
        let ExternType::Func(ty) = import.ty() else {
            continue;
        };
        if !policy.denied.contains(spec.name) {
            continue;
        }
        let (name, code) = match spec.namespace {
            Namespace::Env => (spec.name, Status::InternalFailure.code() as i32),
            Namespace::Wasi => (spec.name, errno::NOTCAPABLE),
        };
        linker.func_new(
            import.module(),
            import.name(),
            ty,
            move |caller, _args, out| {
                refuse(
                    caller.data(),
                    name,
                    format_args!("hostcall {name} is not allowed by the plugin's capabilities"),
                );
                if let Some(first) = out.first_mut() {
                    *first = Val::I32(code);
                }
                Ok(())
            },
        )?;
    }
    linker.allow_shadowing(false);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(redaction: Redaction) -> Policy {
        Policy::new(
            "t",
            &Capabilities::default(),
            &redaction,
            &EnvironmentVariables::default(),
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    fn hidden(p: &Policy, dotted: &str) -> bool {
        let segments: Vec<&[u8]> = dotted.split('.').map(str::as_bytes).collect();
        p.property_hidden(&segments)
    }

    #[test]
    fn redacted_properties_hide_their_prefixes_and_insides() {
        let p = policy(Redaction {
            headers: vec![],
            properties: vec!["source.address".into(), "node".into(), "auth.user".into()],
        });
        assert!(hidden(&p, "source.address"));
        assert!(hidden(&p, "source"), "a prefix would reveal it");
        assert!(!hidden(&p, "source.port"));
        assert!(!hidden(&p, "source.addressx"));
        assert!(
            hidden(&p, "xds.node.id"),
            "an alias redacts what it stands for"
        );
        assert!(hidden(&p, "node.metadata.x"));
        assert!(hidden(&p, "xds"));
        assert!(!hidden(&p, "xds.route_name"));
        assert!(hidden(&p, "filter_state.wasm.auth.user"));
        assert!(!hidden(&p, "request.path"));
    }

    #[test]
    fn request_header_paths_redact_the_header() {
        let p = policy(Redaction {
            headers: vec!["Cookie".into()],
            properties: vec!["request.headers.Authorization".into()],
        });
        assert!(p.header_hidden(b"authorization"));
        assert!(p.header_hidden(b"COOKIE"));
        assert!(!p.header_hidden(b"accept"));
        assert!(!hidden(&p, "request.headers"), "the map stays, filtered");
    }

    #[test]
    fn environment_follows_envoy() {
        let env = |host: &[&str], kv: &[(&str, &str)]| EnvironmentVariables {
            host_env_keys: host.iter().map(|s| s.to_string()).collect(),
            key_values: kv
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        let resolve = |e: &EnvironmentVariables| {
            Policy::new("t", &Capabilities::default(), &Redaction::default(), e).map(|p| p.environ)
        };
        // PATH is set under cargo; the unlikely name is not, and is left out.
        let entries = resolve(&env(
            &["PATH", "WASMBRIDGE_SURELY_UNSET_VARIABLE"],
            &[("A", "1")],
        ))
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0], b"A=1\0");
        assert!(entries[1].starts_with(b"PATH=") && entries[1].ends_with(b"\0"));
        let dup = resolve(&env(&["A"], &[("A", "1")])).unwrap_err();
        assert!(dup.contains("`A` is given twice"), "{dup}");
        let bad = resolve(&env(&[], &[("A=B", "1")])).unwrap_err();
        assert!(bad.contains("not a variable name"), "{bad}");
    }

    #[test]
    fn clusters_default_to_any() {
        let any = Policy::default();
        assert!(any.allows_cluster("anything"));
        let some = Policy::new(
            "t",
            &Capabilities {
                clusters: Some(vec!["auth".into()]),
                ..Capabilities::default()
            },
            &Redaction::default(),
            &EnvironmentVariables::default(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(some.allows_cluster("auth"));
        assert!(!some.allows_cluster("backend"));
    }
}
