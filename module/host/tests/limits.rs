//! The caps of `plugins[].limits` in the host, one guest per cap: a header map that would
//! grow past `headers` is refused with BAD_ARGUMENT and stays as it was; a body a plugin
//! buffers past `body` gets 413 (request) or the 503 response (response), and
//! `proxy_set_buffer_bytes` may not grow a body past it; a context with `callouts` in
//! flight gets INTERNAL_FAILURE for one more; a log line past `log_line` is cut with a
//! marker. Each hit counts in `wasmbridge_plugin_limit_exceeded_total` and is logged at
//! warn once per plugin and limit.
//!
//! Guests report the statuses they got by replying with them as the body of a local reply
//! (one byte per call), or by appending them to the body they pass on.
//!
//! Fuel and the wasm stack size, with the `misbehave` probe (`make filters`): a callback
//! that runs out of its fuel, or nests deeper than its stack, poisons its replica like a
//! CPU deadline, counted by reason; the rebuilt replica serves the next stream; and a
//! plugin is loaded only by a runtime whose engine has its fuel and stack settings.

mod common;

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use common::{built_filter, logged, request};
use prometheus::{Encoder, Registry, TextEncoder};
use wasmbridge_host::{
    BodyOutcome, BoxFuture, Callouts, EngineSettings, FilterChain, GrpcChannel, GrpcRequest,
    HeadersOutcome, HostMetrics, HttpCallFailure, HttpCallRequest, HttpCallResponse, Limits,
    PerStreamPool, Plugin, PluginSpec, Runtime, StreamData, UnknownUpstream, Upstreams,
};

const OK: u8 = 0;
const BAD_ARGUMENT: u8 = 2;
const INTERNAL_FAILURE: u8 = 10;
const INVALID_MEMORY_ACCESS: u8 = 6;

/// The import and exports every guest here shares besides its own callbacks.
const COMMON: &str = r#"
  (import "env" "proxy_send_local_response"
    (func $reply (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "_initialize"))
  (func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 4096))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
"#;

/// A guest: `imports` then [`COMMON`] (imports come first in a module), then `body`.
fn guest(imports: &str, body: &str) -> String {
    format!("(module {imports} {COMMON} {body})")
}

/// `bytes` as a WAT string literal's contents.
fn wat_bytes(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("\\{b:02x}")).collect()
}

/// Loads `wat` as plugin `name` with `limits`, one replica, its metrics on `registry`, and
/// callouts through `callouts`.
fn load(
    name: &str,
    wat: &str,
    limits: Limits,
    registry: &Registry,
    callouts: Callouts,
) -> Arc<Plugin> {
    let runtime = Runtime::new().expect("engine");
    let bytes = wat::parse_str(wat).expect("wat");
    let module = runtime
        .compile(name, Path::new(&format!("{name}.wasm")), &bytes)
        .expect("compile");
    let spec = PluginSpec {
        name: name.into(),
        replicas: 1,
        limits,
        callouts,
        ..PluginSpec::default()
    };
    let metrics = HostMetrics::register(registry).expect("metrics");
    Plugin::load(&runtime, &module, spec, Some(metrics)).expect("load")
}

/// The value of `wasmbridge_plugin_limit_exceeded_total` for `plugin` and `limit` (0 when
/// absent).
fn exceeded(registry: &Registry, plugin: &str, limit: &str) -> u64 {
    let sample =
        format!(r#"wasmbridge_plugin_limit_exceeded_total{{limit="{limit}",plugin="{plugin}"}} "#);
    let text = exposition(registry);
    text.lines()
        .find_map(|l| l.strip_prefix(sample.as_str()))
        .map_or(0, |v| v.parse().expect("a number"))
}

fn exposition(registry: &Registry) -> String {
    let mut text = Vec::new();
    TextEncoder::new()
        .encode(&registry.gather(), &mut text)
        .expect("encode");
    String::from_utf8(text).expect("utf-8")
}

/// Lines of `log` at `level` about `limit`.
fn limit_lines<'a>(log: &'a str, level: &str, limit: &str) -> Vec<&'a str> {
    let field = format!("limit=\"{limit}\"");
    log.lines()
        .filter(|l| l.contains(level) && l.contains(&field))
        .collect()
}

// ---- header maps ----------------------------------------------------------------------

/// `proxy_on_request_headers` makes these calls on the request headers, one status byte
/// each at 512.., and replies with the eight bytes: 0 add `x-a: 1`; 1 add `x-b: 1`;
/// 2 replace `x-a` with 50 bytes; 3 set four pairs; 4 replace `x-a` with `2`; 5 add with
/// a key range outside memory.
fn header_guest() -> String {
    let four = wasmbridge_abi::serialize_pairs([
        (&b":method"[..], &b"GET"[..]),
        (b":path", b"/"),
        (b"x-a", b"1"),
        (b"x-b", b"1"),
    ]);
    let long = "v".repeat(50);
    guest(
        r#"
  (import "env" "proxy_add_header_map_value" (func $add (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_replace_header_map_value" (func $replace (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_set_header_map_pairs" (func $set (param i32 i32 i32) (result i32)))"#,
        &format!(
            r#"
  (data (i32.const 128) "x-a")
  (data (i32.const 136) "x-b")
  (data (i32.const 144) "1")
  (data (i32.const 148) "2")
  (data (i32.const 160) "{long}")
  (data (i32.const 256) "{four}")
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (i32.store8 (i32.const 512) (call $add (i32.const 0) (i32.const 128) (i32.const 3) (i32.const 144) (i32.const 1)))
    (i32.store8 (i32.const 513) (call $add (i32.const 0) (i32.const 136) (i32.const 3) (i32.const 144) (i32.const 1)))
    (i32.store8 (i32.const 514) (call $replace (i32.const 0) (i32.const 128) (i32.const 3) (i32.const 160) (i32.const 50)))
    (i32.store8 (i32.const 515) (call $set (i32.const 0) (i32.const 256) (i32.const {four_len})))
    (i32.store8 (i32.const 516) (call $replace (i32.const 0) (i32.const 128) (i32.const 3) (i32.const 148) (i32.const 1)))
    (i32.store8 (i32.const 517) (call $add (i32.const 0) (i32.const -16) (i32.const 64) (i32.const 144) (i32.const 1)))
    (drop (call $reply (i32.const 200) (i32.const 0) (i32.const 0)
                       (i32.const 512) (i32.const 8) (i32.const 0) (i32.const 0) (i32.const -1)))
    (i32.const 1))"#,
            four = wat_bytes(&four),
            four_len = four.len(),
        ),
    )
}

#[test]
fn header_map_changes_past_the_caps_are_refused_and_leave_the_map_unchanged() {
    let registry = Registry::new();
    // The request starts with `:method: GET` and `:path: /`: 2 entries, 16 bytes.
    let limits = Limits {
        header_pairs: 3,
        header_bytes: 64,
        ..Limits::default()
    };
    let plugin = load(
        "headers",
        &header_guest(),
        limits,
        &registry,
        Callouts::default(),
    );
    let chain = FilterChain::new(vec![plugin]);
    let run = || {
        let mut stream = chain.start(request("GET"));
        let HeadersOutcome::LocalReply(reply) = stream.on_request_headers(true) else {
            panic!("the guest replies with its statuses");
        };
        let pairs: Vec<(String, String)> = stream
            .data()
            .request_headers
            .iter()
            .map(|(k, v)| {
                (
                    String::from_utf8_lossy(k).into_owned(),
                    String::from_utf8_lossy(v).into_owned(),
                )
            })
            .collect();
        stream.finish();
        (reply.body, pairs)
    };
    let ((statuses, pairs), log) = logged(tracing::Level::DEBUG, run);
    assert_eq!(
        &statuses[..6],
        [
            OK,
            BAD_ARGUMENT,
            BAD_ARGUMENT,
            BAD_ARGUMENT,
            OK,
            INVALID_MEMORY_ACCESS
        ],
        "add within, add past the entries, replace past the bytes, set past the entries, \
         replace within, a bad pointer still checked first"
    );
    let expect = |v: &[(&str, &str)]| -> Vec<(String, String)> {
        v.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    assert_eq!(
        pairs,
        expect(&[(":method", "GET"), (":path", "/"), ("x-a", "2")]),
        "refused changes left no trace"
    );
    assert_eq!(exceeded(&registry, "headers", "header_pairs"), 2);
    assert_eq!(exceeded(&registry, "headers", "header_bytes"), 1);
    let warned = limit_lines(&log, "WARN", "header_pairs");
    assert_eq!(warned.len(), 1, "one warning for two hits:\n{log}");
    assert!(
        warned[0].contains("proxy_add_header_map_value on HTTP_REQUEST_HEADERS refused with BAD_ARGUMENT: the map would have had 4 entries")
            && warned[0].contains("plugins[].limits.headers.pairs is 3")
            && warned[0].contains("plugin=headers"),
        "{}",
        warned[0]
    );
    assert_eq!(
        limit_lines(&log, "DEBUG", "header_pairs").len(),
        1,
        "the second hit at debug:\n{log}"
    );
    assert!(
        limit_lines(&log, "WARN", "header_bytes")[0]
            .contains("the map would have had 69 bytes of names and values"),
        "{log}"
    );

    // Once per plugin: a second stream's hits are counted but not warned about again.
    let (_, log) = logged(tracing::Level::DEBUG, run);
    assert!(
        limit_lines(&log, "WARN", "header_pairs").is_empty(),
        "{log}"
    );
    assert_eq!(exceeded(&registry, "headers", "header_pairs"), 4);
}

// ---- bodies -----------------------------------------------------------------------------

/// Pauses every request and response body callback.
fn buffering_guest() -> String {
    guest(
        "",
        r#"
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) (i32.const 0))
  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32) (i32.const 0))
  (func (export "proxy_on_request_body") (param i32 i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_response_body") (param i32 i32 i32) (result i32) (i32.const 1))"#,
    )
}

/// `wasmbridge_plugin_callbacks_total` of `plugin` and `callback`.
fn callbacks(registry: &Registry, plugin: &str, callback: &str) -> String {
    let sample =
        format!(r#"wasmbridge_plugin_callbacks_total{{callback="{callback}",plugin="{plugin}"}} "#);
    exposition(registry)
        .lines()
        .find_map(|l| l.strip_prefix(sample.as_str()))
        .unwrap_or("0")
        .to_string()
}

/// The body plugin with a 10-byte `body` cap.
fn buffering(registry: &Registry) -> FilterChain {
    let limits = Limits {
        body_bytes: 10,
        ..Limits::default()
    };
    let plugin = load(
        "buffering",
        &buffering_guest(),
        limits,
        registry,
        Callouts::default(),
    );
    FilterChain::new(vec![plugin])
}

#[test]
fn a_request_body_buffered_past_the_cap_gets_413() {
    let registry = Registry::new();
    let chain = buffering(&registry);
    let too_large = wasmbridge_host::LocalReply {
        status: 413,
        details: "request_payload_too_large".into(),
        body: Bytes::from_static(b"Payload Too Large"),
        headers: Vec::new(),
        grpc_status: None,
    };

    // Chunk by chunk: the chunk that would take what the plugin buffers past 10 bytes
    // never reaches it; the stream gets Envoy's 413 through the response callbacks.
    let (_, log) = logged(tracing::Level::INFO, || {
        let mut stream = chain.start(request("POST"));
        assert_eq!(stream.on_request_headers(false), HeadersOutcome::Continue);
        assert_eq!(
            stream.on_request_body(Bytes::from_static(b"12345"), false),
            BodyOutcome::Held
        );
        match stream.on_request_body(Bytes::from_static(b"678901"), false) {
            BodyOutcome::LocalReply(reply) => {
                assert_eq!(reply, too_large);
                let response = stream.local_response(reply);
                assert_eq!(response.status, 413);
                assert_eq!(&response.body[..], b"Payload Too Large");
                assert_eq!(
                    response.headers.get(b"content-type").map(|v| &v[..]),
                    Some(&b"text/plain"[..])
                );
            }
            other => panic!("expected the 413, got {other:?}"),
        }
        assert_eq!(
            stream.data().info.response_details.as_deref(),
            Some("request_payload_too_large")
        );
        stream.finish();
    });
    assert_eq!(
        callbacks(&registry, "buffering", "proxy_on_request_body"),
        "1",
        "the second chunk was not handed to the plugin"
    );
    assert_eq!(exceeded(&registry, "buffering", "body"), 1);
    let warned = limit_lines(&log, "WARN", "body");
    assert_eq!(warned.len(), 1, "{log}");
    assert!(
        warned[0].contains(
            "the plugin buffered 11 bytes of the request body; the stream gets 413 request_payload_too_large (plugins[].limits.body is 10)"
        ),
        "{}",
        warned[0]
    );

    // One chunk past the cap that the plugin pauses on, at end of stream: 413 too.
    let mut stream = chain.start(request("POST"));
    assert_eq!(stream.on_request_headers(false), HeadersOutcome::Continue);
    assert_eq!(
        stream.on_request_body(Bytes::from_static(b"0123456789A"), true),
        BodyOutcome::LocalReply(too_large.clone())
    );
    stream.finish();
    assert_eq!(exceeded(&registry, "buffering", "body"), 2);

    // Exactly the cap is buffered as usual (and waits for the plugin to continue).
    let mut stream = chain.start(request("POST"));
    assert_eq!(stream.on_request_headers(false), HeadersOutcome::Continue);
    assert_eq!(
        stream.on_request_body(Bytes::from_static(b"01234"), false),
        BodyOutcome::Held
    );
    assert_eq!(
        stream.on_request_body(Bytes::from_static(b"56789"), true),
        BodyOutcome::Held
    );
    stream.finish();
    assert_eq!(exceeded(&registry, "buffering", "body"), 2);
}

#[test]
fn a_response_body_buffered_past_the_cap_gets_the_503() {
    let registry = Registry::new();
    let chain = buffering(&registry);
    let mut stream = chain.start(request("GET"));
    assert_eq!(stream.on_request_headers(true), HeadersOutcome::Continue);
    stream
        .data_mut()
        .response_headers
        .push(":status", Bytes::from_static(b"200"));
    assert_eq!(stream.on_response_headers(false), HeadersOutcome::Continue);
    assert_eq!(
        stream.on_response_body(Bytes::from_static(b"12345"), false),
        BodyOutcome::Held
    );
    let BodyOutcome::ResponseTooLarge(response) =
        stream.on_response_body(Bytes::from_static(b"678901"), false)
    else {
        panic!("expected the ready-made 503");
    };
    assert_eq!(response.status, 503);
    assert_eq!(&response.body[..], b"Service Unavailable");
    let header = |name: &[u8]| response.headers.get(name).map(|v| v.to_vec());
    assert_eq!(header(b":status"), Some(b"503".to_vec()));
    assert_eq!(header(b"content-length"), Some(b"19".to_vec()));
    let info = &stream.data().info;
    assert_eq!(info.response_code, Some(503));
    assert_eq!(
        info.response_details.as_deref(),
        Some("response_payload_too_large")
    );
    stream.finish();
    assert_eq!(
        callbacks(&registry, "buffering", "proxy_on_response_body"),
        "1"
    );
    assert_eq!(exceeded(&registry, "buffering", "body"), 1);
}

/// `proxy_on_request_body` prepends 20 bytes (over the cap), then, when that failed,
/// replaces the body with `abcdefgh` (8 bytes: within) and appends the two statuses.
fn growing_guest() -> String {
    guest(
        r#"
  (import "env" "proxy_set_buffer_bytes" (func $set (param i32 i32 i32 i32 i32) (result i32)))"#,
        r#"
  (data (i32.const 128) "01234567890123456789")
  (data (i32.const 160) "abcdefgh")
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) (i32.const 0))
  (func (export "proxy_on_request_body") (param i32 i32 i32) (result i32)
    (i32.store8 (i32.const 512) (call $set (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 128) (i32.const 20)))
    (i32.store8 (i32.const 513) (call $set (i32.const 0) (i32.const 0) (local.get 1) (i32.const 160) (i32.const 8)))
    (drop (call $set (i32.const 0) (i32.const -1) (i32.const 0) (i32.const 512) (i32.const 2)))
    (i32.const 0))"#,
    )
}

#[test]
fn set_buffer_bytes_may_not_grow_a_body_past_the_cap() {
    let registry = Registry::new();
    let limits = Limits {
        body_bytes: 10,
        ..Limits::default()
    };
    let plugin = load(
        "growing",
        &growing_guest(),
        limits,
        &registry,
        Callouts::default(),
    );
    let chain = FilterChain::new(vec![plugin]);
    let mut stream = chain.start(request("POST"));
    assert_eq!(stream.on_request_headers(false), HeadersOutcome::Continue);
    assert_eq!(
        stream.on_request_body(Bytes::from_static(b"body"), true),
        BodyOutcome::Forward(Bytes::from_static(b"abcdefgh\x02\x00")),
        "the prepend was refused (BAD_ARGUMENT) and left the body alone; the replacement \
         within the cap worked, and so did growing to exactly the cap"
    );
    stream.finish();
    assert_eq!(exceeded(&registry, "growing", "body"), 1);
}

// ---- callouts ---------------------------------------------------------------------------

/// Upstreams whose calls never end, so that every callout stays in flight.
struct Forever;

impl Upstreams for Forever {
    fn http_call(
        &self,
        _upstream: &str,
        _request: HttpCallRequest,
    ) -> Result<BoxFuture<Result<HttpCallResponse, HttpCallFailure>>, UnknownUpstream> {
        Ok(Box::pin(std::future::pending()))
    }

    fn grpc_stream(
        &self,
        _upstream: &str,
        _request: GrpcRequest,
    ) -> Result<GrpcChannel, UnknownUpstream> {
        let (outbound, _) = tokio::sync::mpsc::unbounded_channel();
        let (_, inbound) = tokio::sync::mpsc::unbounded_channel();
        Ok(GrpcChannel {
            outbound,
            inbound,
            task: Box::pin(std::future::pending()),
        })
    }
}

/// `proxy_on_configure` (the root context) makes three HTTP calls, statuses at 600..;
/// `proxy_on_request_headers` three HTTP calls and a gRPC stream, statuses at 512..; it
/// replies with both blocks (`[stream 4][configure 3]`, the configure statuses from the
/// VM's start-up).
fn callout_guest() -> String {
    let headers = wasmbridge_abi::serialize_pairs([
        (&b":method"[..], &b"GET"[..]),
        (b":path", b"/"),
        (b":authority", b"auth"),
    ]);
    let call = |at: u32| {
        format!(
            "(i32.store8 (i32.const {at}) (call $http (i32.const 128) (i32.const 4) (i32.const 256) (i32.const {len}) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 1000) (i32.const 700)))",
            len = headers.len()
        )
    };
    guest(
        r#"
  (import "env" "proxy_http_call" (func $http (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_grpc_stream" (func $grpc (param i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))"#,
        &format!(
            r#"
  (data (i32.const 128) "auth")
  (data (i32.const 144) "svc")
  (data (i32.const 160) "m")
  (data (i32.const 256) "{headers}")
  (func (export "proxy_on_configure") (param i32 i32) (result i32)
    {c0} {c1} {c2}
    (i32.const 1))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    {s0} {s1} {s2}
    (i32.store8 (i32.const 515) (call $grpc (i32.const 128) (i32.const 4) (i32.const 144) (i32.const 3) (i32.const 160) (i32.const 1) (i32.const 0) (i32.const 0) (i32.const 700)))
    (i32.store (i32.const 516) (i32.load (i32.const 600)))
    (drop (call $reply (i32.const 200) (i32.const 0) (i32.const 0)
                       (i32.const 512) (i32.const 7) (i32.const 0) (i32.const 0) (i32.const -1)))
    (i32.const 1))"#,
            headers = wat_bytes(&headers),
            c0 = call(600),
            c1 = call(601),
            c2 = call(602),
            s0 = call(512),
            s1 = call(513),
            s2 = call(514),
        ),
    )
}

#[test]
fn callouts_past_the_cap_of_a_context_get_internal_failure() {
    let registry = Registry::new();
    let limits = Limits {
        callouts: 2,
        ..Limits::default()
    };
    let (plugin, start_log) = logged(tracing::Level::INFO, || {
        load(
            "callouts",
            &callout_guest(),
            limits,
            &registry,
            Callouts::new(Forever),
        )
    });
    let chain = FilterChain::new(vec![plugin]);
    let statuses = || {
        let mut stream = chain.start(request("GET"));
        let HeadersOutcome::LocalReply(reply) = stream.on_request_headers(true) else {
            panic!("the guest replies with its statuses");
        };
        stream.finish();
        reply.body.to_vec()
    };
    let (first, log) = logged(tracing::Level::DEBUG, statuses);
    assert_eq!(
        first,
        [
            OK,
            OK,
            INTERNAL_FAILURE,
            INTERNAL_FAILURE,
            OK,
            OK,
            INTERNAL_FAILURE
        ],
        "a stream: two HTTP calls, then neither a third nor a gRPC stream; the root: two"
    );
    // The first stream's calls are still in flight in the same VM: the cap is per context.
    let second = statuses();
    assert_eq!(&second[..4], [OK, OK, INTERNAL_FAILURE, INTERNAL_FAILURE]);
    // Root 1 + first stream 2 + second stream 2.
    assert_eq!(exceeded(&registry, "callouts", "callouts"), 5);
    // Refused callouts count as such; the others never ended, so they are not counted yet.
    let text = exposition(&registry);
    let counted: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("wasmbridge_plugin_callouts_total{"))
        .collect();
    assert_eq!(
        counted,
        [
            r#"wasmbridge_plugin_callouts_total{cluster="(refused)",kind="grpc",outcome="limit_exceeded",plugin="callouts"} 2"#,
            r#"wasmbridge_plugin_callouts_total{cluster="(refused)",kind="http",outcome="limit_exceeded",plugin="callouts"} 3"#,
        ],
        "{text}"
    );
    // The root's refusal came first and was the one warned about; the streams' are debug.
    let warned = limit_lines(&start_log, "WARN", "callouts");
    assert_eq!(warned.len(), 1, "{start_log}");
    assert!(
        warned[0].contains(
            "proxy_http_call refused with INTERNAL_FAILURE: the context has 2 callouts in flight (plugins[].limits.callouts is 2)"
        ) && warned[0].contains("callback=\"proxy_on_configure\""),
        "{}",
        warned[0]
    );
    assert!(limit_lines(&log, "WARN", "callouts").is_empty(), "{log}");
    let debug = limit_lines(&log, "DEBUG", "callouts");
    assert_eq!(debug.len(), 2, "{log}");
    assert!(
        debug[1].contains("proxy_grpc_stream refused"),
        "{}",
        debug[1]
    );
}

// ---- log lines --------------------------------------------------------------------------

/// `proxy_on_request_headers` logs a 31-byte line with `é` across the 10-byte cap, then
/// a 10-byte one, then one whose range leaves memory; statuses at 512...
fn log_guest() -> String {
    guest(
        r#"
  (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))"#,
        r#"
  (data (i32.const 128) "012345678\c3\a9xxxxxxxxxxxxxxxxxxxx")
  (data (i32.const 192) "0123456789")
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (i32.store8 (i32.const 512) (call $log (i32.const 2) (i32.const 128) (i32.const 31)))
    (i32.store8 (i32.const 513) (call $log (i32.const 2) (i32.const 192) (i32.const 10)))
    (i32.store8 (i32.const 514) (call $log (i32.const 2) (i32.const 128) (i32.const 1000000)))
    (i32.store8 (i32.const 515) (call $log (i32.const 2) (i32.const 128) (i32.const 31)))
    (drop (call $reply (i32.const 200) (i32.const 0) (i32.const 0)
                       (i32.const 512) (i32.const 4) (i32.const 0) (i32.const 0) (i32.const -1)))
    (i32.const 1))"#,
    )
}

#[test]
fn log_lines_past_the_cap_are_cut_at_a_character_with_a_marker() {
    let registry = Registry::new();
    let limits = Limits {
        log_line_bytes: 10,
        ..Limits::default()
    };
    let plugin = load("logs", &log_guest(), limits, &registry, Callouts::default());
    let chain = FilterChain::new(vec![plugin]);
    let (statuses, log) = logged(tracing::Level::INFO, || {
        let mut stream = chain.start(request("GET"));
        let HeadersOutcome::LocalReply(reply) = stream.on_request_headers(true) else {
            panic!("the guest replies with its statuses");
        };
        stream.finish();
        reply.body.to_vec()
    });
    assert_eq!(statuses, [OK, OK, INVALID_MEMORY_ACCESS, OK]);
    let lines: Vec<&str> = log.lines().filter(|l| l.contains(" wasm: ")).collect();
    assert_eq!(lines.len(), 3, "{log}");
    // The cap falls inside `é` (bytes 9 and 10): the cut is before it.
    assert!(
        lines[0].contains("wasm: 012345678…[22 bytes cut] plugin=logs"),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].contains("wasm: 0123456789 plugin=logs"),
        "a line of exactly the cap is whole: {}",
        lines[1]
    );
    assert!(
        lines[2].contains("wasm: 012345678…[22 bytes cut] plugin=logs"),
        "{}",
        lines[2]
    );
    assert_eq!(exceeded(&registry, "logs", "log_line"), 2);
    let warned = limit_lines(&log, "WARN", "log_line");
    assert_eq!(warned.len(), 1, "{log}");
    assert!(
        warned[0].contains("a log line of 31 bytes was cut after 9 bytes"),
        "{}",
        warned[0]
    );
}

// ---- fuel and the wasm stack ----------------------------------------------------------

/// How deep `recurse-<depth>` goes in the tests below: with the `misbehave` probe's frames
/// (about 64 bytes each) it needs about 250 KiB of wasm stack, half the default 512 KiB
/// and four times 64 KiB; and about 140 000 units of fuel.
const DEPTH: u32 = 4000;

/// The `misbehave` probe as plugin `name` with `limits`, one replica, its metrics in
/// `metrics`, loaded by the runtime made for its settings.
fn misbehave(name: &str, limits: Limits, metrics: &HostMetrics) -> Arc<Plugin> {
    let spec = PluginSpec {
        name: name.into(),
        replicas: 1,
        limits,
        ..PluginSpec::default()
    };
    let runtime = Runtime::new()
        .expect("engine")
        .for_settings(EngineSettings::for_plugin(&spec, PerStreamPool::default()))
        .expect("the engine for the plugin's settings");
    let module = runtime
        .compile(
            name,
            Path::new("misbehave.wasm"),
            &built_filter("misbehave"),
        )
        .expect("compile");
    Plugin::load(&runtime, &module, spec, Some(metrics.clone())).unwrap_or_else(|e| panic!("{e}"))
}

/// A request with `x-misbehave: mode` (none for `None`).
fn asking(mode: Option<&str>) -> StreamData {
    let mut data = request("GET");
    if let Some(mode) = mode {
        data.request_headers
            .push("x-misbehave", Bytes::from(mode.to_string()));
    }
    data
}

/// Runs a stream with `x-misbehave: mode` through the request and response headers; the
/// request outcome and the response's `x-misbehave` header (when the request went on).
fn exchange(chain: &FilterChain, mode: Option<&str>) -> (HeadersOutcome, Option<String>) {
    let mut stream = chain.start(asking(mode));
    let outcome = stream.on_request_headers(true);
    let mut header = None;
    if outcome == HeadersOutcome::Continue {
        stream
            .data_mut()
            .response_headers
            .push(":status", Bytes::from_static(b"200"));
        assert_eq!(stream.on_response_headers(true), HeadersOutcome::Continue);
        header = stream
            .data()
            .response_headers
            .get(b"x-misbehave")
            .map(|v| String::from_utf8_lossy(v).into_owned());
    }
    stream.finish();
    (outcome, header)
}

/// The plugin failed the request: `fail_closed`'s 503.
fn failed_closed(outcome: &HeadersOutcome) -> bool {
    matches!(outcome, HeadersOutcome::LocalReply(r) if r.status == 503)
}

/// `wasmbridge_plugin_poisonings_total` of `plugin` for `reason` (0 when absent).
fn poisonings(registry: &Registry, plugin: &str, reason: &str) -> u64 {
    let sample =
        format!(r#"wasmbridge_plugin_poisonings_total{{plugin="{plugin}",reason="{reason}"}} "#);
    exposition(registry)
        .lines()
        .find_map(|l| l.strip_prefix(sample.as_str()))
        .map_or(0, |v| v.parse().expect("a number"))
}

#[test]
fn a_loop_is_stopped_when_its_fuel_runs_out_and_the_rebuilt_replica_serves() {
    let registry = Registry::new();
    let metrics = HostMetrics::register(&registry).expect("metrics");
    // A well-behaved request costs this probe about a thousand units, start-up included.
    let limits = Limits {
        fuel: Some(10_000),
        ..Limits::default()
    };
    let chain = FilterChain::new(vec![misbehave("fuelled", limits, &metrics)]);
    let ((outcome, _), log) = logged(tracing::Level::INFO, || exchange(&chain, Some("loop")));
    assert!(failed_closed(&outcome), "{outcome:?}\n{log}");
    assert!(
        log.contains("reason=\"fuel\"")
            && log.contains("a callback used up its fuel (10000 per call unless overridden; plugins[].limits.fuel)"),
        "{log}"
    );
    assert_eq!(poisonings(&registry, "fuelled", "fuel"), 1);
    assert_eq!(
        poisonings(&registry, "fuelled", "deadline"),
        0,
        "fuel, long before the 100 ms CPU deadline"
    );

    // The next stream gets a fresh VM, with fuel for each of its calls.
    for _ in 0..3 {
        assert_eq!(
            exchange(&chain, None),
            (HeadersOutcome::Continue, Some("ok".into()))
        );
    }
    assert_eq!(poisonings(&registry, "fuelled", "fuel"), 1);
}

#[test]
fn fuel_is_per_call_and_a_callback_may_have_its_own() {
    let registry = Registry::new();
    let metrics = HostMetrics::register(&registry).expect("metrics");
    let recurse = format!("recurse-{DEPTH}");
    // Enough for the recursion: it runs as it would without fuel.
    let ample = Limits {
        fuel: Some(1_000_000),
        ..Limits::default()
    };
    let chain = FilterChain::new(vec![misbehave("ample", ample, &metrics)]);
    for _ in 0..3 {
        assert_eq!(
            exchange(&chain, Some(&recurse)),
            (HeadersOutcome::Continue, Some(format!("recursed {DEPTH}"))),
            "each call gets the whole budget again"
        );
    }
    assert_eq!(poisonings(&registry, "ample", "fuel"), 0);

    // A budget for `proxy_on_request_headers` alone: the other calls are not counted, and
    // the recursion is stopped there.
    let tight = Limits {
        fuel_by_callback: vec![("proxy_on_request_headers".into(), 50_000)],
        ..Limits::default()
    };
    let chain = FilterChain::new(vec![misbehave("tight", tight, &metrics)]);
    let (outcome, _) = exchange(&chain, Some(&recurse));
    assert!(failed_closed(&outcome), "{outcome:?}");
    assert_eq!(poisonings(&registry, "tight", "fuel"), 1);
    assert_eq!(
        exchange(&chain, None),
        (HeadersOutcome::Continue, Some("ok".into()))
    );
}

#[test]
fn a_recursion_the_default_stack_holds_overflows_a_small_one() {
    let registry = Registry::new();
    let metrics = HostMetrics::register(&registry).expect("metrics");
    let recurse = format!("recurse-{DEPTH}");
    let default = FilterChain::new(vec![misbehave("default", Limits::default(), &metrics)]);
    assert_eq!(
        exchange(&default, Some(&recurse)),
        (HeadersOutcome::Continue, Some(format!("recursed {DEPTH}")))
    );

    let small = Limits {
        stack_bytes: 64 << 10,
        ..Limits::default()
    };
    let chain = FilterChain::new(vec![misbehave("small", small, &metrics)]);
    let ((outcome, _), log) = logged(tracing::Level::INFO, || exchange(&chain, Some(&recurse)));
    assert!(failed_closed(&outcome), "{outcome:?}\n{log}");
    assert!(
        log.contains("its wasm stack overflowed (65536 bytes; plugins[].limits.stack)"),
        "{log}"
    );
    assert_eq!(poisonings(&registry, "small", "stack_overflow"), 1);
    // A shallower call fits, on the replica rebuilt after the overflow.
    assert_eq!(
        exchange(&chain, Some("recurse-100")),
        (HeadersOutcome::Continue, Some("recursed 100".into()))
    );
    assert_eq!(
        exchange(&default, Some(&recurse)).0,
        HeadersOutcome::Continue,
        "the other plugin's stack is its own"
    );
}

#[test]
fn a_plugin_loads_only_on_the_engine_of_its_settings() {
    let bytes = built_filter("misbehave");
    let base = Runtime::new().expect("engine");
    let spec = |limits: Limits| PluginSpec {
        name: "probe".into(),
        replicas: 1,
        limits,
        ..PluginSpec::default()
    };
    let fuelled = Limits {
        fuel: Some(10_000),
        ..Limits::default()
    };
    let small = Limits {
        stack_bytes: 64 << 10,
        ..Limits::default()
    };
    let refused = |runtime: &Runtime, limits: Limits| {
        let module = runtime
            .compile("probe", Path::new("misbehave.wasm"), &bytes)
            .expect("compile");
        match Plugin::load(runtime, &module, spec(limits), None) {
            Ok(_) => panic!("loaded on an engine without its settings"),
            Err(e) => e.to_string(),
        }
    };
    // Start-up calls are fuelled too: a budget they cannot live with fails the load.
    let starving = Limits {
        fuel: Some(50),
        ..Limits::default()
    };
    let runtime = base
        .for_settings(EngineSettings::for_plugin(
            &spec(starving.clone()),
            PerStreamPool::default(),
        ))
        .expect("engine");
    let module = runtime
        .compile("probe", Path::new("misbehave.wasm"), &bytes)
        .expect("compile");
    let message = match Plugin::load(&runtime, &module, spec(starving), None) {
        Ok(_) => panic!("started on 50 units of fuel per call"),
        Err(e) => e.to_string(),
    };
    assert!(
        message.contains("failed: it used up its fuel (plugins[].limits.fuel, or callbacks.<name>.fuel for one callback): "),
        "{message}"
    );

    let message = refused(&base, fuelled.clone());
    assert!(
        message.starts_with("plugin `probe` (module misbehave.wasm): engine: plugins[].limits.fuel needs an engine that counts fuel: compile and load the module with runtime.for_settings(EngineSettings::for_plugin(..))"),
        "{message}"
    );
    let message = refused(&base, small.clone());
    assert!(
        message.contains("plugins[].limits.stack of 65536 bytes needs an engine with that wasm stack, not 524288 bytes"),
        "{message}"
    );
    let for_fuel = base
        .for_settings(EngineSettings::for_plugin(
            &spec(fuelled.clone()),
            PerStreamPool::default(),
        ))
        .expect("engine");
    assert!(for_fuel.settings().fuel);
    let message = refused(&for_fuel, Limits::default());
    assert!(
        message.contains(
            "a plugin without plugins[].limits.fuel needs an engine that does not count fuel"
        ),
        "{message}"
    );
    let per_stream = base.per_stream(PerStreamPool::default()).expect("engine");
    let message = refused(&per_stream, small.clone());
    assert!(
        message.contains("shared isolation needs an engine without the pooling allocator; plugins[].limits.stack of 65536"),
        "{message}"
    );

    // Siblings with the same settings share one engine: a module one compiled loads on the
    // other (wasmtime refuses a module of another engine).
    let again = base
        .for_settings(EngineSettings::for_plugin(
            &spec(fuelled.clone()),
            PerStreamPool::default(),
        ))
        .expect("engine");
    let module = for_fuel
        .compile("probe", Path::new("misbehave.wasm"), &bytes)
        .expect("compile");
    let plugin =
        Plugin::load(&again, &module, spec(fuelled), None).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        exchange(&FilterChain::new(vec![plugin]), None),
        (HeadersOutcome::Continue, Some("ok".into()))
    );

    // A stack outside what the worker threads can hold is not made.
    for stack_bytes in [Limits::MIN_STACK_BYTES - 1, Limits::MAX_STACK_BYTES + 1] {
        let settings = EngineSettings {
            stack_bytes,
            ..EngineSettings::default()
        };
        let error = match base.for_settings(settings) {
            Ok(_) => panic!("a stack of {stack_bytes} bytes"),
            Err(e) => e.to_string(),
        };
        assert!(
            error.contains(&format!(
                "a wasm stack of {stack_bytes} bytes is outside 32768..=1048576 bytes"
            )),
            "{error}"
        );
    }
}
