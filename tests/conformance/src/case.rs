//! The case format and the loader: files, `defaults` + `cases`, and `matrix` expansion.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use serde::Deserialize;
use serde_yaml::{Mapping, Value};

use crate::Outcome;

/// One case, ready to run.
#[derive(Debug, Clone)]
pub struct Case {
    /// `<section>/<file>` or `<section>/<file>/<name>`.
    pub id: String,
    /// The file it came from.
    pub file: PathBuf,
    /// The plugin chain, in request order.
    pub plugins: Vec<PluginCase>,
    /// The request.
    pub request: RequestSpec,
    /// The upstream's reply.
    pub upstream: ReplySpec,
    /// Routes tried before the default one (`case`, prefix `/`, to the upstream), in the
    /// gateway's `routes` syntax without `plugins` (every route runs the case's chain) and
    /// without `cluster` (a route without `direct_response` goes to the upstream).
    pub routes: Vec<serde_yaml::Value>,
    /// The gateway's `node` section, if the case sets one.
    pub node: Option<serde_yaml::Value>,
    /// What must be observed.
    pub expect: Expect,
    /// For a case expanded from a `matrix`, the cell it stands for.
    pub matrix: Option<MatrixCell>,
    /// Proxies whose results may differ from the reference's in `wasmbridge compare`, each
    /// with the reason.
    pub differences: std::collections::BTreeMap<String, String>,
}

/// One cell of a `matrix` file: a probe step run in one callback.
#[derive(Debug, Clone)]
pub struct MatrixCell {
    /// The row's `label`, e.g. `get_header_map_value/request_headers`.
    pub row: String,
    /// The step's hostcall without `proxy_`, e.g. `get_header_map_value`.
    pub call: String,
    /// The callback, e.g. `on_request_headers`.
    pub callback: String,
    /// The expected status, optionally followed by the rendered value (`Ok "here"`).
    pub status: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseSpec {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    description: Option<String>,
    #[serde(default)]
    plugins: Vec<PluginCase>,
    #[serde(default)]
    request: RequestSpec,
    #[serde(default)]
    upstream: ReplySpec,
    #[serde(default)]
    routes: Vec<serde_yaml::Value>,
    #[serde(default)]
    node: Option<serde_yaml::Value>,
    #[serde(default)]
    expect: Expect,
    #[serde(default)]
    differences: std::collections::BTreeMap<String, String>,
}

/// One plugin of a case.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginCase {
    /// Name (defaults to `p<index>`).
    #[serde(default)]
    pub name: Option<String>,
    /// `root_id` (default empty, as in Envoy).
    #[serde(default)]
    pub root_id: Option<String>,
    /// `vm_id` (default empty).
    #[serde(default)]
    pub vm_id: Option<String>,
    /// A compiled filter: the name of one of the repository's (see
    /// `wasmbridge_e2e::find_filter`), or a path to a `.wasm` file, relative to the case
    /// file (anything with a `/` or ending in `.wasm`).
    #[serde(default)]
    pub filter: Option<String>,
    /// An inline module in WebAssembly text.
    #[serde(default)]
    pub wat: Option<String>,
    /// Plugin configuration: a string is passed raw, anything else as JSON.
    #[serde(default)]
    pub configuration: Option<Value>,
    /// VM configuration, same rules.
    #[serde(default)]
    pub vm_configuration: Option<Value>,
    /// `fail_closed` (default), `fail_open`.
    #[serde(default)]
    pub failure_policy: Option<String>,
}

impl PluginCase {
    /// The plugin's name in the chain.
    pub fn name(&self, index: usize) -> String {
        self.name.clone().unwrap_or_else(|| format!("p{index}"))
    }

    /// The configuration bytes.
    pub fn configuration(&self) -> String {
        config_text(self.configuration.as_ref())
    }

    /// The VM configuration bytes.
    pub fn vm_configuration(&self) -> String {
        config_text(self.vm_configuration.as_ref())
    }

    /// The module bytes: the compiled filter, or the WAT compiled to binary.
    pub fn module_bytes(&self) -> Result<(PathBuf, Vec<u8>)> {
        match (&self.filter, &self.wat) {
            (Some(name), None) => {
                let path = if is_path(name) {
                    PathBuf::from(name)
                } else {
                    wasmbridge_e2e::find_filter(name)?
                };
                let bytes =
                    std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
                Ok((path, bytes))
            }
            (None, Some(text)) => {
                let bytes = wat::parse_str(text).map_err(|e| anyhow!("wat: {e}"))?;
                Ok((PathBuf::from("inline.wat"), bytes))
            }
            _ => bail!("a plugin needs exactly one of `filter` and `wat`"),
        }
    }
}

/// A `filter` that names a file rather than one of the repository's filters.
fn is_path(filter: &str) -> bool {
    filter.contains('/') || filter.ends_with(".wasm")
}

fn config_text(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => serde_json::to_string(other).unwrap_or_default(),
    }
}

/// Header lists: a mapping `{name: value}` or a list of `[name, value]` pairs.
#[derive(Debug, Clone, Default)]
pub struct Pairs(pub Vec<(String, String)>);

impl<'de> Deserialize<'de> for Pairs {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            Map(yaml_text::Ordered),
            List(Vec<(String, String)>),
        }
        Ok(match Form::deserialize(d)? {
            Form::Map(m) => Pairs(m.0),
            Form::List(l) => Pairs(l),
        })
    }
}

mod yaml_text {
    use serde::Deserialize;
    use serde_yaml::Value;

    /// A mapping whose order is kept, values rendered as strings.
    pub struct Ordered(pub Vec<(String, String)>);

    impl<'de> Deserialize<'de> for Ordered {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            let m = serde_yaml::Mapping::deserialize(d)?;
            let mut out = Vec::new();
            for (k, v) in m {
                let k = scalar(&k).ok_or_else(|| serde::de::Error::custom("header name"))?;
                let v = scalar(&v).ok_or_else(|| serde::de::Error::custom("header value"))?;
                out.push((k, v));
            }
            Ok(Ordered(out))
        }
    }

    pub fn scalar(v: &Value) -> Option<String> {
        match v {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }
}

/// Expected header values: one value or a list (every occurrence, in order).
#[derive(Debug, Clone)]
pub struct Values(pub Vec<String>);

impl Values {
    /// As string slices.
    pub fn as_slice(&self) -> Vec<&str> {
        self.0.iter().map(String::as_str).collect()
    }
}

fn expected_headers<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Vec<(String, Values)>, D::Error> {
    let m = Mapping::deserialize(d)?;
    let mut out = Vec::new();
    for (k, v) in m {
        let k = yaml_text::scalar(&k).ok_or_else(|| serde::de::Error::custom("header name"))?;
        let values = match &v {
            Value::Sequence(items) => items
                .iter()
                .map(|i| yaml_text::scalar(i).ok_or_else(|| serde::de::Error::custom("value")))
                .collect::<Result<Vec<_>, _>>()?,
            other => vec![
                yaml_text::scalar(other).ok_or_else(|| serde::de::Error::custom("header value"))?,
            ],
        };
        out.push((k, Values(values)));
    }
    Ok(out)
}

/// The request a case sends.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RequestSpec {
    /// Method.
    pub method: String,
    /// Path with query.
    pub path: String,
    /// Headers (`host` sets the authority; default `localhost`).
    pub headers: Pairs,
    /// The body in one piece.
    pub body: Option<String>,
    /// The body in chunks (sent with chunked framing on HTTP/1.1).
    pub chunks: Option<Vec<String>>,
    /// Trailers after the body (the pingora target then speaks HTTP/2 to the proxy).
    pub trailers: Pairs,
    /// Speak HTTP/2 (h2c) to the proxy.
    pub http2: bool,
}

impl Default for RequestSpec {
    fn default() -> Self {
        RequestSpec {
            method: "GET".into(),
            path: "/".into(),
            headers: Pairs::default(),
            body: None,
            chunks: None,
            trailers: Pairs::default(),
            http2: false,
        }
    }
}

impl RequestSpec {
    /// The body chunks (none for a bodyless request).
    pub fn body_chunks(&self) -> Vec<String> {
        match (&self.body, &self.chunks) {
            (_, Some(chunks)) => chunks.clone(),
            (Some(body), None) if !body.is_empty() => vec![body.clone()],
            _ => Vec::new(),
        }
    }
}

/// What the upstream answers.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReplySpec {
    /// Status.
    pub status: u16,
    /// Headers.
    pub headers: Pairs,
    /// Body.
    pub body: String,
    /// Trailers after the body. A case with trailers needs HTTP/2 end to end on a real
    /// proxy: the pingora target then uses an h2c cluster and an HTTP/2 client.
    pub trailers: Pairs,
}

impl Default for ReplySpec {
    fn default() -> Self {
        ReplySpec {
            status: 200,
            headers: Pairs(vec![("content-type".into(), "text/plain".into())]),
            body: "upstream body".into(),
            trailers: Pairs::default(),
        }
    }
}

/// What a case must observe. Everything is optional; what is not named is not checked.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Expect {
    /// `response` (default), `reset`, `stalled`.
    pub outcome: Option<Outcome>,
    /// Response status.
    pub status: Option<u16>,
    /// Response headers that must be present with exactly these values.
    #[serde(deserialize_with = "expected_headers")]
    pub headers: Vec<(String, Values)>,
    /// Response headers that must be absent.
    pub headers_absent: Vec<String>,
    /// Response body.
    pub body: Option<String>,
    /// Response trailers that must be present with exactly these values.
    #[serde(deserialize_with = "expected_headers")]
    pub trailers: Vec<(String, Values)>,
    /// Response trailers that must be absent.
    pub trailers_absent: Vec<String>,
    /// What the upstream received.
    pub upstream: Option<UpstreamExpect>,
    /// Guest log lines that must appear in this order (`*` matches any run of characters).
    pub logs: Vec<String>,
    /// Substrings no guest log line may contain.
    pub logs_absent: Vec<String>,
    /// Exact callback order reported by the `lifecycle` probe.
    pub callbacks: Option<Vec<String>>,
}

/// What the upstream must have received.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamExpect {
    /// Whether it was reached at all (default true).
    pub reached: Option<bool>,
    /// Method.
    pub method: Option<String>,
    /// Path with query.
    pub path: Option<String>,
    /// Headers present with exactly these values.
    #[serde(deserialize_with = "expected_headers")]
    pub headers: Vec<(String, Values)>,
    /// Headers absent.
    pub headers_absent: Vec<String>,
    /// Body.
    pub body: Option<String>,
    /// Request trailers present with exactly these values.
    #[serde(deserialize_with = "expected_headers")]
    pub trailers: Vec<(String, Values)>,
}

/// Loads every case under `dir` (sorted by path).
pub fn load_cases(dir: &Path) -> Result<Vec<Case>> {
    let mut files = Vec::new();
    collect(dir, &mut files)?;
    files.sort();
    let mut cases = Vec::new();
    for file in files {
        let rel = file
            .strip_prefix(dir)
            .unwrap_or(&file)
            .with_extension("")
            .to_string_lossy()
            .replace('\\', "/");
        cases.extend(load_file(&file, &rel)?);
    }
    let mut ids: Vec<&str> = cases.iter().map(|c| c.id.as_str()).collect();
    ids.sort_unstable();
    if let Some(w) = ids.windows(2).find(|w| w[0] == w[1]) {
        bail!("two cases are named {}", w[0]);
    }
    Ok(cases)
}

/// Loads the cases of one file; their ids start with `rel` (`<rel>/<name>`, or `rel` for
/// a one-case file without a name).
pub fn load_file(file: &Path, rel: &str) -> Result<Vec<Case>> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let value: Value =
        serde_yaml::from_str(&text).with_context(|| format!("{}: not YAML", file.display()))?;
    let mut cases = Vec::new();
    for (name, v, cell) in expand(value).with_context(|| format!("{}", file.display()))? {
        let v = normalize(v).with_context(|| format!("{}", file.display()))?;
        let spec: CaseSpec = serde_path_to_error::deserialize(v)
            .map_err(|e| anyhow!("{}: {}: {}", file.display(), e.path(), e.inner()))?;
        let id = match name.or_else(|| spec.name.clone()) {
            Some(n) => format!("{rel}/{n}"),
            None => rel.to_string(),
        };
        cases.push(into_case(id, file, spec, cell)?);
    }
    Ok(cases)
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            collect(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "yaml") {
            out.push(path);
        }
    }
    Ok(())
}

/// The keys of the one-plugin shorthand: a case may name its single plugin's keys at the
/// top level instead of under `plugins`.
const SHORTHAND: [&str; 7] = [
    "filter",
    "wat",
    "root_id",
    "vm_id",
    "configuration",
    "vm_configuration",
    "failure_policy",
];

/// Moves the shorthand keys of a case into a one-entry `plugins` list.
fn normalize(value: Value) -> Result<Value> {
    let Value::Mapping(mut map) = value else {
        bail!("a case is a mapping");
    };
    let mut plugin = Mapping::new();
    for key in SHORTHAND {
        if let Some(v) = map.remove(key) {
            plugin.insert(key.into(), v);
        }
    }
    if !plugin.is_empty() {
        if map.contains_key("plugins") {
            bail!("use either `plugins` or `filter`/`wat`, not both");
        }
        map.insert(
            "plugins".into(),
            Value::Sequence(vec![Value::Mapping(plugin)]),
        );
    }
    Ok(Value::Mapping(map))
}

fn into_case(id: String, file: &Path, spec: CaseSpec, cell: Option<MatrixCell>) -> Result<Case> {
    if spec.plugins.is_empty() {
        bail!("{id}: no plugin (`filter`, `wat` or `plugins`)");
    }
    // A filter given as a path is relative to the case file.
    let base = file.parent().unwrap_or(Path::new("."));
    let mut plugins = spec.plugins;
    for plugin in &mut plugins {
        if let Some(filter) = plugin.filter.as_mut().filter(|f| is_path(f)) {
            *filter = base.join(&*filter).display().to_string();
        }
    }
    Ok(Case {
        id,
        file: file.to_path_buf(),
        plugins,
        request: spec.request,
        upstream: spec.upstream,
        routes: spec.routes,
        node: spec.node,
        expect: spec.expect,
        matrix: cell,
        differences: spec.differences,
    })
}

/// One case of a file before it is parsed: its name (none for a one-case file), its YAML,
/// and the matrix cell it comes from.
type Expanded = (Option<String>, Value, Option<MatrixCell>);

/// Turns one file's YAML into (name, case, matrix cell) values.
fn expand(value: Value) -> Result<Vec<Expanded>> {
    let Value::Mapping(map) = value else {
        bail!("a case file is a mapping");
    };
    let defaults = map
        .get("defaults")
        .cloned()
        .unwrap_or(Value::Mapping(Mapping::new()));
    if let Some(matrix) = map.get("matrix") {
        return expand_matrix(&defaults, matrix);
    }
    if let Some(cases) = map.get("cases") {
        let Value::Sequence(cases) = cases else {
            bail!("`cases` is a list");
        };
        let mut out = Vec::new();
        for case in cases {
            // A case with its own chain does not inherit the default single plugin.
            let mut base = defaults.clone();
            if case.get("plugins").is_some()
                && let Value::Mapping(b) = &mut base
            {
                for key in SHORTHAND {
                    b.remove(key);
                }
            }
            let merged = merge(base, case.clone());
            let name = merged
                .get("name")
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| anyhow!("every entry of `cases` needs a `name`"))?;
            let mut merged = merged;
            if let Value::Mapping(m) = &mut merged {
                m.remove("name");
            }
            out.push((Some(name), merged, None));
        }
        return Ok(out);
    }
    Ok(vec![(None, Value::Mapping(map), None)])
}

/// A matrix: `defaults`, then `matrix.callbacks` (the callbacks to try) and `matrix.rows`,
/// each row a probe `step` (or `steps`), a `label`, and `expect`: callback → status (or a
/// full expected log line suffix after `-> `). Each (row, callback) is one case whose
/// hostcalls-probe configuration runs the step in that callback.
fn expand_matrix(defaults: &Value, matrix: &Value) -> Result<Vec<Expanded>> {
    let rows = matrix
        .get("rows")
        .and_then(Value::as_sequence)
        .ok_or_else(|| anyhow!("`matrix.rows` is a list"))?;
    let mut out = Vec::new();
    for row in rows {
        let label = row
            .get("label")
            .and_then(Value::as_str)
            .ok_or_else(|| anyhow!("every matrix row needs a `label`"))?;
        let step = row
            .get("step")
            .ok_or_else(|| anyhow!("{label}: no `step`"))?;
        let call = step
            .get("call")
            .and_then(Value::as_str)
            .ok_or_else(|| anyhow!("{label}: the step has no `call`"))?;
        let raw = step.get("raw").is_some();
        let expect = row
            .get("expect")
            .and_then(Value::as_mapping)
            .ok_or_else(|| anyhow!("{label}: `expect` maps callbacks to statuses"))?;
        for (callback, status) in expect {
            let callback = callback
                .as_str()
                .ok_or_else(|| anyhow!("{label}: callback names are strings"))?;
            let status =
                yaml_text::scalar(status).ok_or_else(|| anyhow!("{label}.{callback}: a status"))?;
            let mut config = row
                .get("configuration")
                .cloned()
                .unwrap_or(Value::Mapping(Mapping::new()));
            let steps_key = if callback == "on_vm_start" {
                "vm_configuration"
            } else {
                "configuration"
            };
            let mut steps = Mapping::new();
            steps.insert(
                Value::String(callback.into()),
                Value::Sequence(vec![step.clone()]),
            );
            let raw_tag = if raw { " raw" } else { "" };
            // A bare status matches the line with or without a value.
            let line = if status.contains(' ') {
                format!("probe {callback} {call}{raw_tag} -> {status}")
            } else {
                format!("probe {callback} {call}{raw_tag} -> {status}*")
            };
            let mut case = Mapping::new();
            if steps_key == "configuration" {
                config = merge(config, Value::Mapping(steps));
                case.insert("configuration".into(), config);
            } else {
                case.insert("vm_configuration".into(), Value::Mapping(steps));
                case.insert("configuration".into(), config);
            }
            let mut exp = Mapping::new();
            exp.insert("logs".into(), Value::Sequence(vec![Value::String(line)]));
            case.insert("expect".into(), Value::Mapping(exp));
            let merged = merge(defaults.clone(), Value::Mapping(case));
            let cell = MatrixCell {
                row: label.to_string(),
                call: call.to_string(),
                callback: callback.to_string(),
                status,
            };
            out.push((Some(format!("{label}/{callback}")), merged, Some(cell)));
        }
    }
    Ok(out)
}

/// Deep-merges `over` into `base` (mappings merge, everything else is replaced).
fn merge(base: Value, over: Value) -> Value {
    match (base, over) {
        (Value::Mapping(mut b), Value::Mapping(o)) => {
            for (k, v) in o {
                let merged = match b.remove(&k) {
                    Some(old) => merge(old, v),
                    None => v,
                };
                b.insert(k, merged);
            }
            Value::Mapping(b)
        }
        (_, over) => over,
    }
}

impl Case {
    /// True when the exchange carries trailers in either direction, which on a real proxy
    /// needs HTTP/2 (Pingora 0.9 passes trailers only between HTTP/2 peers).
    pub fn has_trailers(&self) -> bool {
        !self.upstream.trailers.0.is_empty() || !self.request.trailers.0.is_empty()
    }

    /// The gateway's `routes` for this case: its own routes, then `case` (prefix `/`) to
    /// the upstream cluster `upstream`; every route runs the plugins named `plugins`.
    pub fn gateway_routes(&self, plugins: &[String]) -> Result<Vec<Value>> {
        let default: Value = serde_yaml::from_str("{name: case, match: {prefix: /}}")?;
        let chain = Value::Sequence(plugins.iter().cloned().map(Value::String).collect());
        self.routes
            .iter()
            .chain(std::iter::once(&default))
            .map(|route| {
                let Value::Mapping(mut m) = route.clone() else {
                    bail!("{}: routes: each route must be a mapping", self.id);
                };
                if !m.contains_key("direct_response") {
                    m.insert("cluster".into(), "upstream".into());
                }
                m.insert("plugins".into(), chain.clone());
                Ok(Value::Mapping(m))
            })
            .collect()
    }

    /// The gateway configuration parts that decide routing and the node identity, parsed
    /// and validated as the gateway would, for targets that route by themselves.
    pub fn routing_config(&self) -> Result<wasmbridge_config::Config> {
        let mut config: Value = serde_yaml::from_str(
            "listeners: [{address: \"127.0.0.1:0\"}]\n\
             clusters: [{name: upstream, endpoints: [\"127.0.0.1:9\"]}]\n",
        )?;
        config["routes"] = Value::Sequence(self.gateway_routes(&[])?);
        if let Some(node) = &self.node {
            config["node"] = node.clone();
        }
        let text = serde_yaml::to_string(&config)?;
        wasmbridge_config::Config::from_yaml_str(&text, &self.file, Path::new("."))
            .map_err(|e| anyhow::anyhow!("{}: {e}", self.id))
    }
}
