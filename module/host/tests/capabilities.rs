//! A plugin's capabilities, redaction and environment, seen from a guest: the `hostcalls`
//! probe (a Rust SDK filter) makes the calls its configuration names and logs each status;
//! a WAT guest checks the raw statuses of a denied `proxy_*` hostcall and WASI function.
//! Refusals are counted in `wasmbridge_plugin_denied_total` and logged once per plugin and
//! capability.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use common::{built_filter, logged};
use prometheus::{Encoder, Registry, TextEncoder};
use wasmbridge_host::{
    BoxFuture, Callouts, Capabilities, EnvironmentVariables, FilterChain, GrpcChannel, GrpcRequest,
    HeadersOutcome, HostMetrics, HttpCallFailure, HttpCallRequest, HttpCallResponse, Plugin,
    PluginSpec, Redaction, Runtime, StreamData, UnknownUpstream, Upstreams,
};

/// A loaded plugin and the registry its host metrics are on.
struct Loaded {
    chain: FilterChain,
    registry: Registry,
}

/// Loads the `hostcalls` probe with plugin configuration `config` (JSON) into `spec`.
fn probe(mut spec: PluginSpec, config: &str) -> Loaded {
    spec.configuration = Bytes::from(config.to_string());
    spec.replicas = 1;
    load(spec, &built_filter("hostcalls"))
}

fn load(spec: PluginSpec, bytes: &[u8]) -> Loaded {
    let runtime = Runtime::new().expect("engine");
    let registry = Registry::new();
    let metrics = HostMetrics::register(&registry).expect("metrics");
    let bytes = wat::parse_bytes(bytes).expect("wat");
    let module = runtime
        .compile(&spec.name, Path::new("probe.wasm"), &bytes)
        .expect("compile");
    let plugin = Plugin::load(&runtime, &module, spec, Some(metrics)).expect("load");
    Loaded {
        chain: FilterChain::new(vec![plugin]),
        registry,
    }
}

fn spec(name: &str) -> PluginSpec {
    PluginSpec {
        name: name.into(),
        ..PluginSpec::default()
    }
}

/// A GET to `/` with `headers` after the pseudo-headers.
fn request(headers: &[(&str, &str)]) -> StreamData {
    let mut data = common::request("GET");
    data.request_headers.push(":authority", "example.com");
    for (name, value) in headers {
        data.request_headers
            .push(*name, Bytes::from(value.to_string()));
    }
    data.info.source = Some(SocketAddr::from(([192, 0, 2, 7], 40_000)));
    data
}

/// Runs one request through the request headers callback and a 200 response; returns the
/// stream's data afterwards and the log.
fn exchange(loaded: &Loaded, data: StreamData) -> (StreamData, String) {
    let ((request, response, data), log) = logged(tracing::Level::INFO, || {
        let mut stream = loaded.chain.start(data);
        let request = stream.on_request_headers(true);
        stream.data_mut().response_headers.push(":status", "200");
        let response = stream.on_response_headers(true);
        stream.finish();
        (request, response, std::mem::take(stream.data_mut()))
    });
    assert_eq!(request, HeadersOutcome::Continue, "{log}");
    assert_eq!(response, HeadersOutcome::Continue, "{log}");
    (data, log)
}

/// The `-> ...` outcome of each `probe on_request_headers <call>` line, in order.
fn outcomes(log: &str) -> Vec<String> {
    log.lines()
        .filter_map(|l| l.split_once("probe on_request_headers "))
        .filter_map(|(_, rest)| rest.split_once(" -> "))
        // The line's fields follow the message.
        .map(|(call, outcome)| {
            (
                call,
                outcome.rsplit_once(" plugin=").map_or(outcome, |o| o.0),
            )
        })
        .map(|(call, outcome)| format!("{call} -> {outcome}"))
        .collect()
}

/// `wasmbridge_plugin_denied_total{plugin, capability}`, or `None` when never counted.
fn denied(registry: &Registry, plugin: &str, capability: &str) -> Option<u64> {
    let mut text = Vec::new();
    TextEncoder::new()
        .encode(&registry.gather(), &mut text)
        .expect("encode");
    let text = String::from_utf8(text).expect("utf-8");
    let series = format!(
        "wasmbridge_plugin_denied_total{{capability=\"{capability}\",plugin=\"{plugin}\"}} "
    );
    text.lines()
        .find_map(|l| l.strip_prefix(series.as_str()))
        .map(|v| v.parse().expect("a number"))
}

#[test]
fn a_denied_family_answers_internal_failure_logs_once_and_counts() {
    let loaded = probe(
        PluginSpec {
            capabilities: Capabilities {
                denied: vec!["metrics".into()],
                ..Capabilities::default()
            },
            ..spec("nometrics")
        },
        r#"{"on_request_headers": [
            {"call": "define_metric", "type": "counter", "name": "hits"},
            {"call": "increment_metric", "id": 1},
            {"call": "get_header_map_value", "map": "request_headers", "key": ":method"}]}"#,
    );
    let (_, first) = exchange(&loaded, request(&[]));
    assert_eq!(
        outcomes(&first),
        [
            "define_metric -> InternalFailure",
            "increment_metric -> InternalFailure",
            "get_header_map_value -> Ok \"GET\"",
        ],
        "{first}"
    );
    let (_, second) = exchange(&loaded, request(&[]));
    assert_eq!(outcomes(&second)[0], "define_metric -> InternalFailure");
    let warning = "hostcall proxy_define_metric is not allowed by the plugin's capabilities";
    assert_eq!(first.matches(warning).count(), 1, "{first}");
    assert!(first.contains("WARN"), "{first}");
    assert!(
        first.contains("capability=\"proxy_define_metric\""),
        "{first}"
    );
    assert_eq!(second.matches(warning).count(), 0, "logged once:\n{second}");
    let r = &loaded.registry;
    assert_eq!(denied(r, "nometrics", "proxy_define_metric"), Some(2));
    assert_eq!(denied(r, "nometrics", "proxy_increment_metric"), Some(2));
    assert_eq!(denied(r, "nometrics", "proxy_get_header_map_value"), None);
}

#[test]
fn an_allowlist_keeps_only_what_it_names() {
    let loaded = probe(
        PluginSpec {
            capabilities: Capabilities {
                allowed: Some(vec![
                    "logging".into(),
                    "buffers_read".into(),
                    "headers_read".into(),
                    "proxy_get_property".into(),
                ]),
                denied: vec!["proxy_get_header_map_size".into()],
                ..Capabilities::default()
            },
            ..spec("allowlist")
        },
        r#"{"on_request_headers": [
            {"call": "get_header_map_value", "map": "request_headers", "key": ":path"},
            {"call": "get_property", "path": "request.method"},
            {"call": "get_header_map_size", "map": "request_headers"},
            {"call": "get_current_time_nanoseconds"},
            {"call": "set_property", "path": "x", "value": "1"},
            {"call": "send_local_response", "status": 403}]}"#,
    );
    let (_, log) = exchange(&loaded, request(&[]));
    assert_eq!(
        outcomes(&log),
        [
            "get_header_map_value -> Ok \"/\"",
            "get_property -> Ok \"GET\"",
            "get_header_map_size -> InternalFailure",
            "get_current_time_nanoseconds -> InternalFailure",
            "set_property -> InternalFailure",
            "send_local_response -> InternalFailure",
        ],
        "{log}"
    );
    assert_eq!(
        denied(&loaded.registry, "allowlist", "proxy_send_local_response"),
        Some(1)
    );
}

#[test]
fn without_headers_write_headers_are_read_only() {
    let loaded = probe(
        PluginSpec {
            capabilities: Capabilities {
                denied: vec!["headers_write".into()],
                ..Capabilities::default()
            },
            ..spec("readonly")
        },
        r#"{"on_request_headers": [
            {"call": "add_header_map_value", "map": "request_headers", "key": "x-a", "value": "1"},
            {"call": "replace_header_map_value", "map": "request_headers", "key": "accept", "value": "x"},
            {"call": "remove_header_map_value", "map": "request_headers", "key": "accept"},
            {"call": "set_header_map_pairs", "map": "request_headers", "pairs": [[":path", "/other"]]},
            {"call": "get_header_map_value", "map": "request_headers", "key": "accept"}]}"#,
    );
    let (data, log) = exchange(&loaded, request(&[("accept", "*/*")]));
    assert_eq!(
        outcomes(&log),
        [
            "add_header_map_value -> InternalFailure",
            "replace_header_map_value -> InternalFailure",
            "remove_header_map_value -> InternalFailure",
            "set_header_map_pairs -> InternalFailure",
            "get_header_map_value -> Ok \"*/*\"",
        ],
        "{log}"
    );
    let headers = &data.request_headers;
    assert_eq!(headers.get(b"accept").map(|v| &v[..]), Some(&b"*/*"[..]));
    assert_eq!(headers.get(b":path").map(|v| &v[..]), Some(&b"/"[..]));
    assert!(headers.get(b"x-a").is_none());
    assert!(!headers.is_modified(), "nothing changed");
}

/// Upstreams that know `auth` and `backend` and record every name asked for.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<String>>>);

impl Recorder {
    fn known(&self, upstream: &str) -> Result<(), UnknownUpstream> {
        self.0.lock().expect("names").push(upstream.to_string());
        match upstream {
            "auth" | "backend" => Ok(()),
            other => Err(UnknownUpstream(other.to_string())),
        }
    }
}

impl Upstreams for Recorder {
    fn http_call(
        &self,
        upstream: &str,
        _request: HttpCallRequest,
    ) -> Result<BoxFuture<Result<HttpCallResponse, HttpCallFailure>>, UnknownUpstream> {
        self.known(upstream)?;
        Ok(Box::pin(async { Ok(HttpCallResponse::default()) }))
    }

    fn grpc_stream(
        &self,
        upstream: &str,
        _request: GrpcRequest,
    ) -> Result<GrpcChannel, UnknownUpstream> {
        self.known(upstream)?;
        let (outbound, _) = tokio::sync::mpsc::unbounded_channel();
        let (_, inbound) = tokio::sync::mpsc::unbounded_channel();
        Ok(GrpcChannel {
            outbound,
            inbound,
            task: Box::pin(async {}),
        })
    }
}

#[test]
fn callouts_reach_only_the_listed_clusters() {
    let recorder = Recorder::default();
    let headers = r#"[[":method", "GET"], [":path", "/"], [":authority", "x"]]"#;
    let loaded = probe(
        PluginSpec {
            capabilities: Capabilities {
                clusters: Some(vec!["auth".into()]),
                ..Capabilities::default()
            },
            callouts: Callouts::new(recorder.clone()),
            ..spec("callouts")
        },
        &format!(
            r#"{{"on_request_headers": [
            {{"call": "http_call", "upstream": "auth", "headers": {headers}}},
            {{"call": "http_call", "upstream": "backend", "headers": {headers}}},
            {{"call": "http_call", "upstream": "nowhere", "headers": {headers}}},
            {{"call": "grpc_call", "upstream": "backend", "service": "s", "method": "m"}}]}}"#
        ),
    );
    let (_, log) = exchange(&loaded, request(&[]));
    let got = outcomes(&log);
    assert!(got[0].starts_with("http_call -> Ok token="), "{log}");
    assert_eq!(
        got[1..],
        [
            "http_call -> InternalFailure",
            // Not BAD_ARGUMENT: a refused name does not tell whether it exists.
            "http_call -> InternalFailure",
            "grpc_call -> InternalFailure",
        ],
        "{log}"
    );
    assert_eq!(
        *recorder.0.lock().expect("names"),
        ["auth"],
        "refused callouts never reach the proxy"
    );
    assert_eq!(denied(&loaded.registry, "callouts", "clusters"), Some(3));
    let mut text = Vec::new();
    TextEncoder::new()
        .encode(&loaded.registry.gather(), &mut text)
        .expect("encode");
    let text = String::from_utf8(text).expect("utf-8");
    for (kind, n) in [("grpc", 1), ("http", 2)] {
        let series = format!(
            r#"wasmbridge_plugin_callouts_total{{cluster="(refused)",kind="{kind}",outcome="denied",plugin="callouts"}} {n}"#
        );
        assert!(text.lines().any(|l| l == series), "{series}\n{text}");
    }
    let warning = "which capabilities.clusters does not list";
    assert_eq!(log.matches(warning).count(), 1, "{log}");
}

#[test]
fn redacted_headers_are_invisible_and_untouchable() {
    let loaded = probe(
        PluginSpec {
            redact: Redaction {
                headers: vec!["Authorization".into()],
                properties: vec!["request.headers.cookie".into()],
            },
            ..spec("redact")
        },
        r#"{"on_request_headers": [
            {"call": "get_header_map_value", "map": "request_headers", "key": "authorization"},
            {"call": "get_header_map_value", "map": "request_headers", "key": "AUTHORIZATION"},
            {"call": "get_header_map_value", "map": "request_headers", "key": "cookie"},
            {"call": "get_header_map_pairs", "map": "request_headers"},
            {"call": "get_header_map_size", "map": "request_headers"},
            {"call": "get_property", "path": ["request", "headers", "authorization"]},
            {"call": "get_property", "path": "request.headers", "decode": "map"},
            {"call": "get_property", "path": "request.headers_bytes", "decode": "u64"},
            {"call": "add_header_map_value", "map": "request_headers", "key": "authorization", "value": "x"},
            {"call": "replace_header_map_value", "map": "request_headers", "key": "Authorization", "value": "x"},
            {"call": "remove_header_map_value", "map": "request_headers", "key": "cookie"},
            {"call": "set_header_map_pairs", "map": "request_headers", "pairs": [["authorization", "x"]]},
            {"call": "set_header_map_pairs", "map": "request_headers", "pairs": [[":method", "GET"], [":path", "/"], [":authority", "example.com"], ["x-new", "1"]]},
            {"call": "get_header_map_pairs", "map": "request_headers"}]}"#,
    );
    let (data, log) = exchange(
        &loaded,
        request(&[
            ("authorization", "Bearer secret"),
            ("cookie", "session=1"),
            ("accept", "*/*"),
        ]),
    );
    let visible = "[:method=\"GET\", :path=\"/\", :authority=\"example.com\", accept=\"*/*\"]";
    // :method GET, :path /, :authority example.com, accept */*
    let size = (7 + 3) + (5 + 1) + (10 + 11) + (6 + 3);
    assert_eq!(
        outcomes(&log),
        [
            "get_header_map_value -> NotFound".to_string(),
            "get_header_map_value -> NotFound".to_string(),
            "get_header_map_value -> NotFound".to_string(),
            format!("get_header_map_pairs -> Ok {visible}"),
            format!("get_header_map_size -> Ok {size}"),
            "get_property -> NotFound".to_string(),
            format!("get_property -> Ok {visible}"),
            format!("get_property -> Ok {size}"),
            "add_header_map_value -> InternalFailure".to_string(),
            "replace_header_map_value -> InternalFailure".to_string(),
            "remove_header_map_value -> InternalFailure".to_string(),
            "set_header_map_pairs -> InternalFailure".to_string(),
            "set_header_map_pairs -> Ok".to_string(),
            "get_header_map_pairs -> Ok [:method=\"GET\", :path=\"/\", :authority=\"example.com\", x-new=\"1\"]".to_string(),
        ],
        "{log}"
    );
    assert!(
        !log.contains("secret"),
        "the value never reaches the plugin:\n{log}"
    );
    // The redacted headers are still there, unchanged, for the upstream.
    let headers = &data.request_headers;
    assert_eq!(
        headers.get(b"authorization").map(|v| &v[..]),
        Some(&b"Bearer secret"[..])
    );
    assert_eq!(
        headers.get(b"cookie").map(|v| &v[..]),
        Some(&b"session=1"[..])
    );
    assert_eq!(headers.get(b"x-new").map(|v| &v[..]), Some(&b"1"[..]));
    assert!(
        headers.get(b"accept").is_none(),
        "the visible ones were replaced"
    );
    assert_eq!(
        denied(&loaded.registry, "redact", "redact.headers"),
        Some(4)
    );
}

#[test]
fn redacted_properties_read_as_not_found() {
    let loaded = probe(
        PluginSpec {
            redact: Redaction {
                headers: vec![],
                properties: vec!["source.address".into(), "node".into(), "auth".into()],
            },
            ..spec("props")
        },
        r#"{"on_request_headers": [
            {"call": "get_property", "path": "source.address"},
            {"call": "get_property", "path": "source"},
            {"call": "get_property", "path": "source.port", "decode": "i64"},
            {"call": "get_property", "path": "xds.node.id"},
            {"call": "get_property", "path": "plugin_name"},
            {"call": "set_property", "path": "source.address", "value": "10.0.0.1"},
            {"call": "set_property", "path": "auth.user", "value": "mallory"},
            {"call": "set_property", "path": "seen", "value": "1"},
            {"call": "get_property", "path": "filter_state", "decode": "map"}]}"#,
    );
    let (_, log) = exchange(&loaded, request(&[]));
    assert_eq!(
        outcomes(&log),
        [
            "get_property -> NotFound",
            "get_property -> NotFound",
            "get_property -> Ok 40000",
            "get_property -> NotFound",
            "get_property -> Ok \"props\"",
            "set_property -> InternalFailure",
            "set_property -> InternalFailure",
            "set_property -> Ok",
            "get_property -> Ok [wasm.seen=\"1\"]",
        ],
        "{log}"
    );
    assert!(!log.contains("192.0.2.7"), "{log}");
    assert_eq!(
        denied(&loaded.registry, "props", "redact.properties"),
        Some(2)
    );
}

#[test]
fn environment_variables_reach_std_env() {
    // Cargo sets CARGO_MANIFEST_DIR for the test process; PATH is set too but not listed.
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("run under cargo test");
    let loaded = probe(
        PluginSpec {
            environment_variables: EnvironmentVariables {
                host_env_keys: vec![
                    "CARGO_MANIFEST_DIR".into(),
                    "WASMBRIDGE_SURELY_UNSET_VARIABLE".into(),
                ],
                key_values: vec![("GREETING".into(), "hello world".into())],
            },
            ..spec("env")
        },
        r#"{"on_request_headers": [
            {"call": "env_var", "name": "GREETING"},
            {"call": "env_var", "name": "PATH"},
            {"call": "env_vars"}]}"#,
    );
    let (_, log) = exchange(&loaded, request(&[]));
    assert_eq!(
        outcomes(&log),
        [
            "env_var -> Ok \"hello world\"".to_string(),
            "env_var -> NotFound".to_string(),
            format!("env_vars -> Ok [GREETING=\"hello world\", CARGO_MANIFEST_DIR=\"{manifest}\"]"),
        ],
        "{log}"
    );
}

#[test]
fn an_unset_host_variable_is_skipped_with_a_debug_line() {
    let (_, log) = logged(tracing::Level::DEBUG, || {
        probe(
            PluginSpec {
                environment_variables: EnvironmentVariables {
                    host_env_keys: vec!["WASMBRIDGE_SURELY_UNSET_VARIABLE".into()],
                    key_values: vec![],
                },
                ..spec("env")
            },
            "",
        )
    });
    assert!(
        log.contains("host environment variable is not set; the plugin does not get it")
            && log.contains("WASMBRIDGE_SURELY_UNSET_VARIABLE"),
        "{log}"
    );
}

#[test]
fn a_wrong_capability_or_environment_fails_the_load_naming_the_plugin() {
    let runtime = Runtime::new().expect("engine");
    let bytes = built_filter("hostcalls");
    let module = runtime
        .compile("bad", Path::new("probe.wasm"), &bytes)
        .expect("compile");
    let load = |spec: PluginSpec| {
        Plugin::load(&runtime, &module, spec, None)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    };
    let err = load(PluginSpec {
        capabilities: Capabilities {
            denied: vec!["htttp_calls".into()],
            ..Capabilities::default()
        },
        ..spec("bad")
    });
    assert!(
        err.starts_with(
            "plugin `bad` (module probe.wasm): capabilities: unknown capability `htttp_calls`"
        ),
        "{err}"
    );
    let err = load(PluginSpec {
        environment_variables: EnvironmentVariables {
            host_env_keys: vec!["A".into()],
            key_values: vec![("A".into(), "1".into())],
        },
        ..spec("bad")
    });
    assert!(err.contains("`A` is given twice"), "{err}");
}

/// A guest that calls a denied `proxy_log` and a denied `random_get` and replies with
/// their raw results: byte 0 the status, byte 1 the errno.
const RAW: &str = r#"(module
  (import "env" "proxy_send_local_response"
    (func $reply (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "random_get" (func $random (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 64) "hi")
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "_initialize"))
  (func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 4096))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (i32.store8 (i32.const 512) (call $log (i32.const 2) (i32.const 64) (i32.const 2)))
    (i32.store8 (i32.const 513) (call $random (i32.const 600) (i32.const 8)))
    (drop (call $reply (i32.const 200) (i32.const 0) (i32.const 0) (i32.const 512) (i32.const 2)
      (i32.const 0) (i32.const 0) (i32.const -1)))
    (i32.const 1)))"#;

#[test]
fn denied_calls_answer_as_cpp_host_stubs_do() {
    let loaded = load(
        PluginSpec {
            capabilities: Capabilities {
                denied: vec!["proxy_log".into(), "wasi_random".into()],
                ..Capabilities::default()
            },
            ..spec("raw")
        },
        RAW.as_bytes(),
    );
    let mut stream = loaded.chain.start(request(&[]));
    let HeadersOutcome::LocalReply(reply) = stream.on_request_headers(true) else {
        panic!("the guest replies with its results");
    };
    stream.finish();
    assert_eq!(reply.body[0], 10, "INTERNAL_FAILURE for a proxy_* hostcall");
    assert_eq!(reply.body[1], 76, "NOTCAPABLE for a WASI function");
    assert_eq!(denied(&loaded.registry, "raw", "proxy_log"), Some(1));
    assert_eq!(denied(&loaded.registry, "raw", "random_get"), Some(1));
}
