//! Hostile hostcall arguments against a real wasmtime instance.
//!
//! One guest per ABI version, generated once from the catalogue: it imports every hostcall
//! of `wasmbridge_abi::HOSTCALLS` and dispatches to one of them with a `br_table`. The
//! harness has no way to call a guest export with its own arguments, so it sends the call
//! as a request header: `x-fuzz` carries a binary record, `proxy_on_request_headers` reads
//! it with `proxy_get_header_map_value` and copies it to a fixed address, and the callback
//! of the chosen phase makes the call. The guest then reports the result with `proxy_log`
//! as `fuzz-status:<nonce>:<index>:<result>` (hex), which a `tracing` subscriber captures.
//!
//! Oracle: no host panic (libFuzzer aborts on any), and every reported result is one the
//! hostcall may return: a `proxy_*`/`env` status in 0..=12, a WASI errno in 0..=76,
//! `pthread_equal` 0 or 1. A trap is fine (the stream fails closed with a 503).
//!
//! Input layout (missing bytes are zero):
//!
//! | Bytes | Meaning |
//! |---|---|
//! | 0 | ABI version: `% 3` → 0.1.0, 0.2.0, 0.2.1 |
//! | 1 | phase: `% 6` → request headers, request body, response headers, response body, log, done |
//! | 2..4 | hostcall: u16 LE `% HOSTCALLS.len()`, in catalogue order |
//! | 4..6 | u16 LE mask: bit j makes argument j a pointer into the payload |
//! | 6..10 | u32 LE returned by every header and body callback (the filter action) |
//! | 10..106 | 12 arguments, u64 LE each; an i32 parameter takes the low 32 bits |
//! | 106.. | payload, copied into guest memory at `PAYLOAD` (0x1070) |

#![no_main]

use std::fmt::{self, Write as _};
use std::ops::RangeInclusive;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use wasmbridge_abi::{
    AbiVersion, HOSTCALLS, HostcallSpec, Namespace, ValType, callback, callback_params,
};
use wasmbridge_host::{
    BodyOutcome, FilterChain, HeaderList, HeadersOutcome, HttpStream, LocalReply, Plugin,
    PluginSpec, Runtime, StreamData,
};

/// Guest memory layout, shared by the harness and the generated guest.
const RET_PTR: u32 = 0x10;
const RET_LEN: u32 = 0x14;
const KEY: u32 = 0x20;
const MESSAGE: u32 = 0x40;
const RECORD: u32 = 0x1000;
const MAX_ARGS: usize = 12;
/// nonce, phase, index, action (u32 each), then the arguments.
const RECORD_HEADER: u32 = 16 + 8 * MAX_ARGS as u32;
const ARGS: u32 = RECORD + 16;
const PAYLOAD: u32 = RECORD + RECORD_HEADER;
/// The record area ends where the guest heap begins.
const HEAP: u32 = 0x10000;
const RECORD_MAX: u32 = HEAP - RECORD;
const INPUT_HEADER: usize = 10 + 8 * MAX_ARGS;
const PHASES: u8 = 6;
const REPORT_PREFIX: &str = "fuzz-status:";

struct Harness {
    chains: Vec<FilterChain>,
    /// `WASMBRIDGE_FUZZ_TRACE` set: print each call and the reports seen.
    trace: bool,
}

static HARNESS: OnceLock<Harness> = OnceLock::new();
static REPORTS: Mutex<Vec<String>> = Mutex::new(Vec::new());
static NONCE: AtomicU32 = AtomicU32::new(0);

fuzz_target!(|data: &[u8]| {
    let harness = HARNESS.get_or_init(Harness::new);
    let mut input = data.to_vec();
    if input.len() < INPUT_HEADER {
        input.resize(INPUT_HEADER, 0);
    }
    let (head, payload) = input.split_at(INPUT_HEADER);
    let payload = &payload[..payload.len().min((RECORD_MAX - RECORD_HEADER) as usize)];
    let chain = &harness.chains[usize::from(head[0]) % harness.chains.len()];
    let phase = u32::from(head[1] % PHASES);
    let index = u16::from_le_bytes([head[2], head[3]]) as usize % HOSTCALLS.len();
    let relative = u16::from_le_bytes([head[4], head[5]]);
    let action = u32::from_le_bytes([head[6], head[7], head[8], head[9]]);
    let nonce = NONCE.fetch_add(1, Ordering::Relaxed).wrapping_add(1);

    let mut record = Vec::with_capacity(RECORD_HEADER as usize + payload.len());
    for word in [nonce, phase, index as u32, action] {
        record.extend_from_slice(&word.to_le_bytes());
    }
    for (j, arg) in head[10..].chunks_exact(8).enumerate() {
        let mut arg = u64::from_le_bytes(arg.try_into().expect("8 bytes"));
        if relative & (1 << j) != 0 {
            arg = u64::from(PAYLOAD + (arg as u32) % (payload.len() as u32 + 1));
        }
        record.extend_from_slice(&arg.to_le_bytes());
    }
    record.extend_from_slice(payload);

    let mut data = StreamData::default();
    data.request_headers
        .push(":method", Bytes::from_static(b"POST"));
    data.request_headers
        .push(":path", Bytes::from_static(b"/fuzz"));
    data.request_headers
        .push(":authority", Bytes::from_static(b"fuzz.test"));
    data.request_headers.push("x-fuzz", Bytes::from(record));
    REPORTS.lock().unwrap_or_else(|p| p.into_inner()).clear();
    let mut stream = chain.start(data);
    drive(&mut stream);
    stream.finish();
    drop(stream);

    let reports = std::mem::take(&mut *REPORTS.lock().unwrap_or_else(|p| p.into_inner()));
    let ours = format!("{REPORT_PREFIX}{nonce:08x}:");
    if harness.trace {
        let called = HOSTCALLS[index].name;
        eprintln!("phase {phase} {called}: {reports:?}");
    }
    for report in reports.iter().filter(|r| r.starts_with(&ours)) {
        check(report, index);
    }
});

/// What the adapter does after one phase.
enum Step {
    Go,
    Stop,
    Reply(LocalReply),
}

/// Runs the stream as an adapter would, without waiting: request headers and body, then a
/// response, or the local reply a plugin asked for.
fn drive(stream: &mut HttpStream) {
    macro_rules! step {
        ($step:expr) => {
            match $step {
                Step::Go => {}
                Step::Stop => return,
                Step::Reply(reply) => {
                    let _ = stream.local_response(reply);
                    return;
                }
            }
        };
    }
    step!(headers(stream.on_request_headers(false), stream));
    step!(body(
        stream.on_request_body(Bytes::from_static(b"request body"), true),
        stream
    ));
    let mut response = HeaderList::new();
    response.push(":status", Bytes::from_static(b"200"));
    response.push("content-type", Bytes::from_static(b"text/plain"));
    stream.data_mut().response_headers = response;
    step!(headers(stream.on_response_headers(false), stream));
    step!(body(
        stream.on_response_body(Bytes::from_static(b"response body"), true),
        stream
    ));
}

/// A paused stream is resumed once, without waiting: it goes on only if the plugin already
/// asked for that (e.g. `proxy_continue_stream` during the callback).
fn headers(outcome: HeadersOutcome, stream: &mut HttpStream) -> Step {
    let outcome = match outcome {
        HeadersOutcome::Paused => stream.resume_headers(),
        other => other,
    };
    match outcome {
        HeadersOutcome::Continue => Step::Go,
        HeadersOutcome::LocalReply(reply) => Step::Reply(reply),
        HeadersOutcome::Paused | HeadersOutcome::Reset => Step::Stop,
    }
}

/// A held body is sent on as Pingora's response body filter does.
fn body(outcome: BodyOutcome, stream: &mut HttpStream) -> Step {
    let outcome = match outcome {
        BodyOutcome::Held => stream.release_held_body(),
        other => other,
    };
    match outcome {
        BodyOutcome::Forward(_) => Step::Go,
        BodyOutcome::LocalReply(reply) => Step::Reply(reply),
        BodyOutcome::Held | BodyOutcome::Reset | BodyOutcome::ResponseTooLarge(_) => Step::Stop,
    }
}

/// The oracle on one `fuzz-status:<nonce>:<index>:<result>` report.
fn check(report: &str, index: usize) {
    let fields: Vec<&str> = report[REPORT_PREFIX.len()..].split(':').collect();
    let [_, reported, result] = fields[..] else {
        panic!("malformed report {report:?}");
    };
    let reported = usize::from_str_radix(reported, 16).expect("hex index");
    let result = u32::from_str_radix(result, 16).expect("hex result");
    assert_eq!(reported, index, "the guest called another hostcall");
    let spec = &HOSTCALLS[index];
    let allowed = allowed(spec);
    assert!(
        allowed.contains(&result),
        "{} returned {result} ({}), outside the documented {allowed:?}",
        spec.name,
        result as i32
    );
}

/// The results a hostcall may return: a Proxy-Wasm status, a WASI errno, or (for the few
/// `env` helpers) their own values. No result at all is reported as 0.
fn allowed(spec: &HostcallSpec) -> RangeInclusive<u32> {
    match (spec.namespace, spec.name, spec.results) {
        (_, _, []) => 0..=0,
        (Namespace::Wasi, _, _) => 0..=76,
        (Namespace::Env, "pthread_equal", _) => 0..=1,
        (Namespace::Env, _, _) => 0..=12,
    }
}

impl Harness {
    fn new() -> Harness {
        tracing::subscriber::set_global_default(Capture).expect("the only subscriber");
        let runtime = Runtime::new().expect("engine");
        let chains = AbiVersion::ALL
            .into_iter()
            .map(|abi| {
                let text = guest_wat(abi);
                let bytes = wat::parse_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
                let module = runtime
                    .compile("fuzz", Path::new("hostcalls.wat"), &bytes)
                    .expect("compile");
                let spec = PluginSpec {
                    name: format!("fuzz-{abi}"),
                    replicas: 1,
                    ..PluginSpec::default()
                };
                let plugin: Arc<Plugin> =
                    Plugin::load(&runtime, &module, spec, None).expect("load");
                FilterChain::new(vec![plugin])
            })
            .collect();
        let trace = std::env::var_os("WASMBRIDGE_FUZZ_TRACE").is_some();
        Harness { chains, trace }
    }
}

fn val(t: &ValType) -> &'static str {
    t.as_str()
}

fn signature(params: &[ValType], results: &[ValType]) -> String {
    let mut s = String::new();
    if !params.is_empty() {
        let p: Vec<_> = params.iter().map(val).collect();
        let _ = write!(s, " (param {})", p.join(" "));
    }
    if !results.is_empty() {
        let r: Vec<_> = results.iter().map(val).collect();
        let _ = write!(s, " (result {})", r.join(" "));
    }
    s
}

fn env_index(name: &str) -> usize {
    HOSTCALLS
        .iter()
        .position(|h| h.namespace == Namespace::Env && h.name == name)
        .unwrap_or_else(|| panic!("{name} is not catalogued"))
}

fn le32(bytes: &[u8]) -> u32 {
    let mut b = [0u8; 4];
    b[..bytes.len()].copy_from_slice(bytes);
    u32::from_le_bytes(b)
}

/// The guest for one ABI version: every catalogued hostcall imported as `$h<index>`, the
/// record loader, the `br_table` dispatcher and the callbacks.
fn guest_wat(abi: AbiVersion) -> String {
    let mut w = String::from("(module\n");
    for (k, h) in HOSTCALLS.iter().enumerate() {
        assert!(
            h.params.len() <= MAX_ARGS,
            "{} takes more than {MAX_ARGS}",
            h.name
        );
        let _ = writeln!(
            w,
            "  (import \"{}\" \"{}\" (func $h{k}{}))",
            h.namespace.module_names()[0],
            h.name,
            signature(h.params, h.results)
        );
    }
    let get_value = env_index("proxy_get_header_map_value");
    let log = env_index("proxy_log");
    let _ = write!(
        w,
        r#"
  (memory (export "memory") 2 256)
  (global $heap (mut i32) (i32.const {HEAP}))
  (global $phase (mut i32) (i32.const -1))
  (global $nonce (mut i32) (i32.const 0))
  (global $index (mut i32) (i32.const 0))
  (global $action (mut i32) (i32.const 0))
  (func (export "{marker}"))
  (func (export "_initialize"))

  ;; A bump allocator that grows memory; 0 when it cannot.
  (func (export "proxy_on_memory_allocate") (param $size i32) (result i32)
    (local $p i64) (local $end i64) (local $have i64)
    (local.set $p (i64.and (i64.add (i64.extend_i32_u (global.get $heap)) (i64.const 7))
                           (i64.const -8)))
    (local.set $end (i64.add (local.get $p) (i64.extend_i32_u (local.get $size))))
    (local.set $have (i64.shl (i64.extend_i32_u (memory.size)) (i64.const 16)))
    (if (i64.gt_u (local.get $end) (local.get $have))
      (then
        (if (i32.eq
              (memory.grow (i32.wrap_i64
                (i64.shr_u (i64.add (i64.sub (local.get $end) (local.get $have))
                                    (i64.const 65535))
                           (i64.const 16))))
              (i32.const -1))
          (then (return (i32.const 0))))))
    (global.set $heap (i32.wrap_i64 (local.get $end)))
    (i32.wrap_i64 (local.get $p)))

  ;; Reads the x-fuzz request header into the record area and clears the rest of memory,
  ;; so a call depends only on its own input.
  (func $load (local $len i32) (local $src i32)
    (global.set $heap (i32.const {HEAP}))
    (global.set $phase (i32.const -1))
    (i32.store (i32.const {KEY}) (i32.const {key_lo}))
    (i32.store16 (i32.const {key_hi_at}) (i32.const {key_hi}))
    (if (call $h{get_value} (i32.const 0) (i32.const {KEY}) (i32.const 6)
                            (i32.const {RET_PTR}) (i32.const {RET_LEN}))
      (then (return)))
    (local.set $src (i32.load (i32.const {RET_PTR})))
    (local.set $len (i32.load (i32.const {RET_LEN})))
    (if (i32.lt_u (local.get $len) (i32.const {RECORD_HEADER})) (then (return)))
    (if (i32.gt_u (local.get $len) (i32.const {RECORD_MAX}))
      (then (local.set $len (i32.const {RECORD_MAX}))))
    (memory.fill (i32.const {RECORD}) (i32.const 0) (i32.const {RECORD_MAX}))
    (memory.copy (i32.const {RECORD}) (local.get $src) (local.get $len))
    (memory.fill (i32.const 0) (i32.const 0) (i32.const {RECORD}))
    (memory.fill (i32.const {HEAP}) (i32.const 0)
                 (i32.sub (i32.shl (memory.size) (i32.const 16)) (i32.const {HEAP})))
    (global.set $nonce (i32.load (i32.const {RECORD})))
    (global.set $phase (i32.load (i32.const {phase_at})))
    (global.set $index (i32.load (i32.const {index_at})))
    (global.set $action (i32.load (i32.const {action_at}))))

  ;; Writes $v as 8 lower-case hex digits at $at.
  (func $hex (param $at i32) (param $v i32) (local $i i32) (local $n i32)
    (loop $next
      (local.set $n (i32.and
        (i32.shr_u (local.get $v) (i32.sub (i32.const 28) (i32.shl (local.get $i) (i32.const 2))))
        (i32.const 15)))
      (i32.store8 (i32.add (local.get $at) (local.get $i))
        (i32.add (local.get $n)
                 (select (i32.const 48) (i32.const 87) (i32.lt_u (local.get $n) (i32.const 10)))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $next (i32.lt_u (local.get $i) (i32.const 8)))))

  ;; Makes the call if this is the chosen phase, then reports its result.
  (func $fuzz (param $phase i32) (local $s i32)
    (if (i32.ne (global.get $phase) (local.get $phase)) (then (return)))
    (global.set $phase (i32.const -1))
    (local.set $s (call $dispatch (global.get $index)))
    (i32.store (i32.const {m0_at}) (i32.const {m0}))
    (i32.store (i32.const {m1_at}) (i32.const {m1}))
    (i32.store (i32.const {m2_at}) (i32.const {m2}))
    (call $hex (i32.const {hex0}) (global.get $nonce))
    (i32.store8 (i32.const {colon0}) (i32.const 58))
    (call $hex (i32.const {hex1}) (global.get $index))
    (i32.store8 (i32.const {colon1}) (i32.const 58))
    (call $hex (i32.const {hex2}) (local.get $s))
    (drop (call $h{log} (i32.const 2) (i32.const {MESSAGE}) (i32.const {message_len}))))
"#,
        marker = abi.marker(),
        key_lo = le32(b"x-fu"),
        key_hi_at = KEY + 4,
        key_hi = le32(b"zz"),
        phase_at = RECORD + 4,
        index_at = RECORD + 8,
        action_at = RECORD + 12,
        m0_at = MESSAGE,
        m0 = le32(b"fuzz"),
        m1_at = MESSAGE + 4,
        m1 = le32(b"-sta"),
        m2_at = MESSAGE + 8,
        m2 = le32(b"tus:"),
        hex0 = MESSAGE + 12,
        colon0 = MESSAGE + 20,
        hex1 = MESSAGE + 21,
        colon1 = MESSAGE + 29,
        hex2 = MESSAGE + 30,
        message_len = 38,
    );
    debug_assert_eq!(REPORT_PREFIX.len(), 12);

    // The dispatcher: block $c<k> ends just before the call to hostcall k.
    let n = HOSTCALLS.len();
    w.push_str("  (func $dispatch (param $i i32) (result i32)\n    (block $default\n");
    for k in (0..n).rev() {
        let _ = writeln!(w, "    (block $c{k}");
    }
    let labels: Vec<String> = (0..n).map(|k| format!("$c{k}")).collect();
    let _ = writeln!(
        w,
        "      (br_table {} $default (local.get $i))",
        labels.join(" ")
    );
    for (k, h) in HOSTCALLS.iter().enumerate() {
        let args: Vec<String> = h
            .params
            .iter()
            .enumerate()
            .map(|(j, t)| format!("({t}.load (i32.const {}))", ARGS + 8 * j as u32))
            .collect();
        let call = format!("(call $h{k} {})", args.join(" "));
        let call = match h.results {
            [] => format!("(block (result i32) {call} (i32.const 0))"),
            [ValType::I32, ..] => call,
            [ValType::I64, ..] => format!("(i32.wrap_i64 {call})"),
        };
        let _ = writeln!(w, "    ) (return {call}) ;; {}", h.name);
    }
    w.push_str("    ) (i32.const -1))\n");

    // The callbacks, with the signatures the host expects for this ABI version.
    let bodies: [(&str, &str); 10] = [
        ("proxy_on_context_create", ""),
        ("proxy_on_vm_start", "(i32.const 1)"),
        ("proxy_on_configure", "(i32.const 1)"),
        (
            "proxy_on_request_headers",
            "(call $load) (call $fuzz (i32.const 0)) (global.get $action)",
        ),
        (
            "proxy_on_request_body",
            "(call $fuzz (i32.const 1)) (global.get $action)",
        ),
        (
            "proxy_on_response_headers",
            "(call $fuzz (i32.const 2)) (global.get $action)",
        ),
        (
            "proxy_on_response_body",
            "(call $fuzz (i32.const 3)) (global.get $action)",
        ),
        ("proxy_on_log", "(call $fuzz (i32.const 4))"),
        ("proxy_on_done", "(call $fuzz (i32.const 5)) (i32.const 1)"),
        ("proxy_on_delete", ""),
    ];
    for (name, body) in bodies {
        let params = callback_params(name, abi).unwrap_or_else(|| panic!("{name} for {abi}"));
        let results = callback(name).expect("catalogued").results;
        let _ = writeln!(
            w,
            "  (func (export \"{name}\"){} {body})",
            signature(params, results)
        );
    }
    w.push(')');
    w
}

/// Captures the guest's reports (log lines under the `wasm` target).
struct Capture;

impl tracing::Subscriber for Capture {
    fn enabled(&self, metadata: &tracing::Metadata<'_>) -> bool {
        metadata.target() == "wasm"
    }

    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }

    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}

    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}

    fn event(&self, event: &tracing::Event<'_>) {
        struct Message(Option<String>);
        impl tracing::field::Visit for Message {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn fmt::Debug) {
                if field.name() == "message" {
                    self.0 = Some(format!("{value:?}"));
                }
            }
        }
        let mut message = Message(None);
        event.record(&mut message);
        if let Some(text) = message.0
            && text.starts_with(REPORT_PREFIX)
        {
            REPORTS.lock().unwrap_or_else(|p| p.into_inner()).push(text);
        }
    }

    fn enter(&self, _: &tracing::span::Id) {}

    fn exit(&self, _: &tracing::span::Id) {}
}
