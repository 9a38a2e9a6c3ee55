//! Runs steps: one function per hostcall family, tried in turn by call name.
//!
//! Every `unsafe` block here calls an import with pointers to live locals, slices or
//! [`Returned`] slots of the size the ABI expects.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::time::Duration;

use proxy_wasm::hostcalls::dispatch_http_call;

use crate::abi::{self, Raw, Returned, bytes, slot};
use crate::config::{Arg, Callback, ContextName, MetricId, Step};
use crate::render::{self, pairs, quoted, serialize_pairs, status};

/// The callback running steps, and the ids it can name.
pub(crate) struct Site {
    pub(crate) callback: Callback,
    /// `end_of_stream`, for callbacks that have it.
    pub(crate) end_of_stream: Option<bool>,
    pub(crate) root_id: u32,
    pub(crate) self_id: u32,
}

/// What a named call did: its status, and its rendered value when it returned OK.
struct Done {
    status: i32,
    value: Option<String>,
}

/// A call family: `None` when `call` is not one of its calls.
type Family = fn(call: &str, step: &Step, site: &Site) -> Option<Done>;

const FAMILIES: [Family; 10] = [
    logging,
    context,
    properties,
    buffers,
    maps,
    streams,
    shared,
    metrics,
    callouts,
    environment,
];

thread_local! {
    /// Outcomes of `report` steps waiting for their stream's response headers, by context
    /// (a `BTreeMap`: a `HashMap` would seed itself with `random_get`, which a plugin may be
    /// denied).
    static REPORTS: RefCell<BTreeMap<u32, Vec<(String, String)>>> = RefCell::default();
}

/// Logs one probe line at INFO through the raw import; the status is ignored.
pub(crate) fn log(line: &str) {
    let (ptr, size) = bytes(line.as_bytes());
    // SAFETY: see the module docs.
    let _ = unsafe { abi::proxy_log(2, ptr, size) };
}

/// Runs the steps whose `when` and `nth` match, logging one line each.
pub(crate) fn run(site: &Site, steps: &[Step]) {
    let callback = site.callback.name();
    for step in steps.iter().filter(|s| s.runs(site.end_of_stream)) {
        let call = &step.call;
        let (form, outcome) = match &step.raw {
            Some(args) => (
                " raw",
                match abi::raw(call, args) {
                    Raw::Status(code) => status(code),
                    Raw::Arity(want) => format!("wrong argument count, want {want}"),
                    Raw::Unknown => "unknown call".to_owned(),
                },
            ),
            None => (
                "",
                match FAMILIES.iter().find_map(|family| family(call, step, site)) {
                    Some(Done {
                        status: code,
                        value: Some(value),
                    }) => format!("{} {value}", status(code)),
                    Some(Done { status: code, .. }) => status(code),
                    None => "unknown call".to_owned(),
                },
            ),
        };
        log(&format!("probe {callback} {call}{form} -> {outcome}"));
        if let Some(header) = &step.report
            && site.self_id != site.root_id
        {
            REPORTS.with(|r| {
                r.borrow_mut()
                    .entry(site.self_id)
                    .or_default()
                    .push((header.clone(), outcome));
            });
        }
    }
}

/// Adds the reports of stream `context` to its response headers, logging
/// `probe report <header> -> <Status>` for each.
pub(crate) fn flush_reports(context: u32) {
    let reports = REPORTS.with(|r| r.borrow_mut().remove(&context).unwrap_or_default());
    for (name, value) in reports {
        let (name_ptr, name_size) = bytes(name.as_bytes());
        let (value_ptr, value_size) = bytes(value.as_bytes());
        // SAFETY: see the module docs. Map 2 is the response headers.
        let code = unsafe {
            abi::proxy_add_header_map_value(2, name_ptr, name_size, value_ptr, value_size)
        };
        log(&format!("probe report {name} -> {}", status(code)));
    }
}

/// Forgets the reports of a stream that ended before its response headers.
pub(crate) fn drop_reports(context: u32) {
    REPORTS.with(|r| r.borrow_mut().remove(&context));
}

/// Reads a whole buffer (the configuration at start-up); `None` unless OK.
pub(crate) fn read_buffer(buffer_type: i32) -> Option<Vec<u8>> {
    let mut ret = Returned::default();
    // SAFETY: see the module docs.
    let code =
        unsafe { abi::proxy_get_buffer_bytes(buffer_type, 0, -1, ret.ptr_ptr(), ret.size_ptr()) };
    (code == 0).then(|| ret.take())
}

impl Done {
    /// A call without a value.
    fn status(status: i32) -> Option<Self> {
        Some(Self {
            status,
            value: None,
        })
    }

    /// A call with a value, rendered only on OK (so returned memory is taken only then).
    fn with(status: i32, value: impl FnOnce() -> String) -> Option<Self> {
        Some(Self {
            status,
            value: (status == 0).then(value),
        })
    }
}

/// A string argument as bytes; missing is empty.
fn text(arg: &Option<String>) -> &[u8] {
    arg.as_deref().unwrap_or_default().as_bytes()
}

/// An integer argument as the i32 the ABI takes (truncating, so `u32::MAX` is -1).
fn int(arg: Option<i64>, default: i64) -> i32 {
    arg.unwrap_or(default) as i32
}

/// A pairs argument as the SDK takes it; missing is empty.
fn str_pairs(pairs: &Option<Vec<(String, String)>>) -> Vec<(&str, &str)> {
    pairs
        .iter()
        .flatten()
        .map(|(key, value)| (key.as_str(), value.as_str()))
        .collect()
}

/// An enumerated argument's ABI value; missing is 0.
macro_rules! code {
    ($arg:expr) => {
        $arg.map_or(0, |arg| arg.code() as i32)
    };
}

/// `log`, `get_log_level`, `get_current_time_nanoseconds`, `set_tick_period_milliseconds`.
fn logging(call: &str, step: &Step, _: &Site) -> Option<Done> {
    // SAFETY (every block): see the module docs.
    match call {
        "log" => {
            let level = step.level.map_or(2, |level| level.code() as i32);
            let (ptr, size) = bytes(text(&step.message));
            Done::status(unsafe { abi::proxy_log(level, ptr, size) })
        }
        "get_log_level" => {
            let mut level = 0u32;
            let code = unsafe { abi::proxy_get_log_level(slot(&mut level)) };
            Done::with(code, || level.to_string())
        }
        "get_current_time_nanoseconds" => {
            let mut now = 0u64;
            let code = unsafe { abi::proxy_get_current_time_nanoseconds(slot(&mut now)) };
            Done::with(code, || if now == 0 { "0" } else { "nonzero" }.to_owned())
        }
        "set_tick_period_milliseconds" => {
            Done::status(unsafe { abi::proxy_set_tick_period_milliseconds(int(step.period, 0)) })
        }
        _ => None,
    }
}

/// `env_var`, `env_vars`: the WASI environment through the standard library (as a Rust
/// filter reads it), not a Proxy-Wasm hostcall. NotFound for an unset variable (and one
/// that is not UTF-8).
fn environment(call: &str, step: &Step, _: &Site) -> Option<Done> {
    match call {
        "env_var" => match std::env::var(step.name.as_deref().unwrap_or_default()) {
            Ok(value) => Done::with(0, || quoted(value.as_bytes())),
            Err(_) => Done::status(1),
        },
        "env_vars" => {
            let vars: Vec<(String, String)> = std::env::vars_os()
                .map(|(k, v)| {
                    (
                        k.to_string_lossy().into_owned(),
                        v.to_string_lossy().into_owned(),
                    )
                })
                .collect();
            Done::with(0, || pairs(&serialize_pairs(&vars)))
        }
        _ => None,
    }
}

/// `set_effective_context`, `done`, `get_status`, `call_foreign_function`.
fn context(call: &str, step: &Step, site: &Site) -> Option<Done> {
    // SAFETY (every block): see the module docs.
    match call {
        "set_effective_context" => {
            let id = match step.context {
                None | Some(Arg::Name(ContextName::Current)) => site.self_id as i32,
                Some(Arg::Name(ContextName::Root)) => site.root_id as i32,
                Some(Arg::Code(id)) => id as i32,
            };
            Done::status(unsafe { abi::proxy_set_effective_context(id) })
        }
        "done" => Done::status(unsafe { abi::proxy_done() }),
        "get_status" => {
            let mut code_slot = 0u32;
            let mut message = Returned::default();
            let code = unsafe {
                abi::proxy_get_status(slot(&mut code_slot), message.ptr_ptr(), message.size_ptr())
            };
            Done::with(code, || {
                format!("code={code_slot} message={}", quoted(&message.take()))
            })
        }
        "call_foreign_function" => {
            let (name_ptr, name_size) = bytes(text(&step.name));
            let (args_ptr, args_size) = bytes(text(&step.args));
            let mut ret = Returned::default();
            let code = unsafe {
                abi::proxy_call_foreign_function(
                    name_ptr,
                    name_size,
                    args_ptr,
                    args_size,
                    ret.ptr_ptr(),
                    ret.size_ptr(),
                )
            };
            Done::with(code, || quoted(&ret.take()))
        }
        _ => None,
    }
}

/// `get_property`, `set_property`.
fn properties(call: &str, step: &Step, _: &Site) -> Option<Done> {
    let path = step
        .path
        .as_ref()
        .map(|path| path.encode())
        .unwrap_or_default();
    let (path_ptr, path_size) = bytes(&path);
    // SAFETY (every block): see the module docs.
    match call {
        "get_property" => {
            let mut ret = Returned::default();
            let code = unsafe {
                abi::proxy_get_property(path_ptr, path_size, ret.ptr_ptr(), ret.size_ptr())
            };
            Done::with(code, || render::decoded(&ret.take(), step.decode))
        }
        "set_property" => {
            let value = step.value.as_ref().map(|v| v.bytes()).unwrap_or_default();
            let (value_ptr, value_size) = bytes(&value);
            Done::status(unsafe {
                abi::proxy_set_property(path_ptr, path_size, value_ptr, value_size)
            })
        }
        _ => None,
    }
}

/// `get_buffer_bytes`, `get_buffer_status`, `set_buffer_bytes`.
fn buffers(call: &str, step: &Step, _: &Site) -> Option<Done> {
    let buffer = code!(step.buffer);
    let start = int(step.start, 0);
    // SAFETY (every block): see the module docs.
    match call {
        "get_buffer_bytes" => {
            let mut ret = Returned::default();
            let max_size = int(step.max_size, i64::from(u32::MAX));
            let code = unsafe {
                abi::proxy_get_buffer_bytes(buffer, start, max_size, ret.ptr_ptr(), ret.size_ptr())
            };
            Done::with(code, || quoted(&ret.take()))
        }
        "get_buffer_status" => {
            let (mut size, mut flags) = (0u32, 0u32);
            let code =
                unsafe { abi::proxy_get_buffer_status(buffer, slot(&mut size), slot(&mut flags)) };
            Done::with(code, || format!("size={size} flags={flags}"))
        }
        "set_buffer_bytes" => {
            let value = step.value.as_ref().map(|v| v.bytes()).unwrap_or_default();
            let (ptr, len) = bytes(&value);
            let size = int(step.size, 0);
            Done::status(unsafe { abi::proxy_set_buffer_bytes(buffer, start, size, ptr, len) })
        }
        _ => None,
    }
}

/// `get_header_map_pairs`, `set_header_map_pairs`, `get_header_map_value`,
/// `add_header_map_value`, `replace_header_map_value`, `remove_header_map_value`,
/// `get_header_map_size`.
fn maps(call: &str, step: &Step, _: &Site) -> Option<Done> {
    let map = code!(step.map);
    let (key_ptr, key_size) = bytes(text(&step.key));
    let value = step.value.as_ref().map(|v| v.bytes()).unwrap_or_default();
    let (value_ptr, value_size) = bytes(&value);
    // SAFETY (every block): see the module docs.
    match call {
        "get_header_map_pairs" => {
            let mut ret = Returned::default();
            let code =
                unsafe { abi::proxy_get_header_map_pairs(map, ret.ptr_ptr(), ret.size_ptr()) };
            Done::with(code, || pairs(&ret.take()))
        }
        "set_header_map_pairs" => {
            let serialized = serialize_pairs(step.pairs.as_deref().unwrap_or_default());
            let (ptr, size) = bytes(&serialized);
            Done::status(unsafe { abi::proxy_set_header_map_pairs(map, ptr, size) })
        }
        "get_header_map_value" => {
            let mut ret = Returned::default();
            let code = unsafe {
                abi::proxy_get_header_map_value(
                    map,
                    key_ptr,
                    key_size,
                    ret.ptr_ptr(),
                    ret.size_ptr(),
                )
            };
            Done::with(code, || quoted(&ret.take()))
        }
        "add_header_map_value" => Done::status(unsafe {
            abi::proxy_add_header_map_value(map, key_ptr, key_size, value_ptr, value_size)
        }),
        "replace_header_map_value" => Done::status(unsafe {
            abi::proxy_replace_header_map_value(map, key_ptr, key_size, value_ptr, value_size)
        }),
        "remove_header_map_value" => {
            Done::status(unsafe { abi::proxy_remove_header_map_value(map, key_ptr, key_size) })
        }
        "get_header_map_size" => {
            let mut size = 0u32;
            let code = unsafe { abi::proxy_get_header_map_size(map, slot(&mut size)) };
            Done::with(code, || size.to_string())
        }
        _ => None,
    }
}

/// `send_local_response`, `continue_stream`, `close_stream`. (The ABI 0.1.0 imports are
/// not imported: Envoy links them only into 0.1.0 modules and refuses to load a 0.2.x one
/// that imports them; `cases/2.2-abi-0.1.0` calls them from a 0.1.0 module.)
fn streams(call: &str, step: &Step, _: &Site) -> Option<Done> {
    // SAFETY (every block): see the module docs.
    match call {
        "send_local_response" => {
            let headers = serialize_pairs(step.headers.as_deref().unwrap_or_default());
            let (details_ptr, details_size) = bytes(text(&step.details));
            let (body_ptr, body_size) = bytes(text(&step.body));
            let (headers_ptr, headers_size) = bytes(&headers);
            Done::status(unsafe {
                abi::proxy_send_local_response(
                    int(step.status, 200),
                    details_ptr,
                    details_size,
                    body_ptr,
                    body_size,
                    headers_ptr,
                    headers_size,
                    int(step.grpc_status, -1),
                )
            })
        }
        "continue_stream" => {
            Done::status(unsafe { abi::proxy_continue_stream(code!(step.stream)) })
        }
        "close_stream" => Done::status(unsafe { abi::proxy_close_stream(code!(step.stream)) }),
        _ => None,
    }
}

/// `get_shared_data`, `set_shared_data`, and the shared queue calls.
fn shared(call: &str, step: &Step, _: &Site) -> Option<Done> {
    let value = step.value.as_ref().map(|v| v.bytes()).unwrap_or_default();
    let (value_ptr, value_size) = bytes(&value);
    let (key_ptr, key_size) = bytes(text(&step.key));
    let (name_ptr, name_size) = bytes(text(&step.name));
    let queue_id = int(step.queue_id, 0);
    // SAFETY (every block): see the module docs.
    match call {
        "get_shared_data" => {
            let mut ret = Returned::default();
            let mut cas = 0u32;
            let code = unsafe {
                abi::proxy_get_shared_data(
                    key_ptr,
                    key_size,
                    ret.ptr_ptr(),
                    ret.size_ptr(),
                    slot(&mut cas),
                )
            };
            Done::with(code, || format!("{} cas={cas}", quoted(&ret.take())))
        }
        "set_shared_data" => Done::status(unsafe {
            abi::proxy_set_shared_data(key_ptr, key_size, value_ptr, value_size, int(step.cas, 0))
        }),
        "register_shared_queue" => {
            let mut id = 0u32;
            let code =
                unsafe { abi::proxy_register_shared_queue(name_ptr, name_size, slot(&mut id)) };
            Done::with(code, || id.to_string())
        }
        "resolve_shared_queue" => {
            let (vm_ptr, vm_size) = bytes(text(&step.vm_id));
            let mut id = 0u32;
            let code = unsafe {
                abi::proxy_resolve_shared_queue(vm_ptr, vm_size, name_ptr, name_size, slot(&mut id))
            };
            Done::with(code, || id.to_string())
        }
        "enqueue_shared_queue" => Done::status(unsafe {
            abi::proxy_enqueue_shared_queue(queue_id, value_ptr, value_size)
        }),
        "dequeue_shared_queue" => {
            let mut ret = Returned::default();
            let code =
                unsafe { abi::proxy_dequeue_shared_queue(queue_id, ret.ptr_ptr(), ret.size_ptr()) };
            Done::with(code, || quoted(&ret.take()))
        }
        _ => None,
    }
}

thread_local! {
    /// The id the last successful `define_metric` step of this VM returned.
    static LAST_METRIC_ID: Cell<Option<u32>> = const { Cell::new(None) };
}

/// A metric id argument: missing is 0; `"last"` is the last defined id, or -1 (0xFFFFFFFF)
/// when no `define_metric` step succeeded yet.
fn metric_id(id: Option<MetricId>) -> i32 {
    match id {
        None => 0,
        Some(MetricId::Number(n)) => n as i32,
        Some(MetricId::Last(_)) => LAST_METRIC_ID.with(Cell::get).map_or(-1, |id| id as i32),
    }
}

/// `define_metric`, `increment_metric`, `record_metric`, `get_metric`.
fn metrics(call: &str, step: &Step, _: &Site) -> Option<Done> {
    let id = metric_id(step.id);
    // SAFETY (every block): see the module docs.
    match call {
        "define_metric" => {
            let (name_ptr, name_size) = bytes(text(&step.name));
            let mut ret_id = 0u32;
            let code = unsafe {
                abi::proxy_define_metric(
                    code!(step.metric_type),
                    name_ptr,
                    name_size,
                    slot(&mut ret_id),
                )
            };
            if code == 0 {
                LAST_METRIC_ID.with(|last| last.set(Some(ret_id)));
            }
            Done::with(code, || ret_id.to_string())
        }
        "increment_metric" => {
            Done::status(unsafe { abi::proxy_increment_metric(id, step.delta.unwrap_or(1)) })
        }
        "record_metric" => {
            let value = step.value.as_ref().map_or(0, |v| v.int());
            Done::status(unsafe { abi::proxy_record_metric(id, value) })
        }
        "get_metric" => {
            let mut value = 0u64;
            let code = unsafe { abi::proxy_get_metric(id, slot(&mut value)) };
            Done::with(code, || value.to_string())
        }
        _ => None,
    }
}

/// `http_call` and the gRPC calls.
fn callouts(call: &str, step: &Step, _: &Site) -> Option<Done> {
    let (upstream_ptr, upstream_size) = bytes(text(&step.upstream));
    let (service_ptr, service_size) = bytes(text(&step.service));
    let (method_ptr, method_size) = bytes(text(&step.method));
    let metadata = serialize_pairs(step.metadata.as_deref().unwrap_or_default());
    let (metadata_ptr, metadata_size) = bytes(&metadata);
    let (message_ptr, message_size) = bytes(text(&step.message));
    let timeout = int(step.timeout, 1000);
    let token = int(step.token, 0);
    let mut ret_token = 0u32;
    // SAFETY (every block): see the module docs.
    match call {
        "http_call" if step.register.unwrap_or(true) => {
            // Through the SDK, so that its dispatcher knows the token and routes
            // on_http_call_response back to this context (it traps on unknown tokens).
            let body = text(&step.body);
            let result = dispatch_http_call(
                step.upstream.as_deref().unwrap_or_default(),
                str_pairs(&step.headers),
                (!body.is_empty()).then_some(body),
                str_pairs(&step.trailers),
                // The SDK passes `as_millis() as u32`: the same 32 bits as `timeout`.
                Duration::from_millis(u64::from(timeout as u32)),
            );
            match result {
                Ok(token) => Done::with(0, || format!("token={token}")),
                Err(code) => Done::status(code as i32),
            }
        }
        "http_call" => {
            let headers = serialize_pairs(step.headers.as_deref().unwrap_or_default());
            let trailers = serialize_pairs(step.trailers.as_deref().unwrap_or_default());
            let (headers_ptr, headers_size) = bytes(&headers);
            let (trailers_ptr, trailers_size) = bytes(&trailers);
            let (body_ptr, body_size) = bytes(text(&step.body));
            let code = unsafe {
                abi::proxy_http_call(
                    upstream_ptr,
                    upstream_size,
                    headers_ptr,
                    headers_size,
                    body_ptr,
                    body_size,
                    trailers_ptr,
                    trailers_size,
                    timeout,
                    slot(&mut ret_token),
                )
            };
            Done::with(code, || format!("token={ret_token}"))
        }
        "grpc_call" => {
            let code = unsafe {
                abi::proxy_grpc_call(
                    upstream_ptr,
                    upstream_size,
                    service_ptr,
                    service_size,
                    method_ptr,
                    method_size,
                    metadata_ptr,
                    metadata_size,
                    message_ptr,
                    message_size,
                    timeout,
                    slot(&mut ret_token),
                )
            };
            Done::with(code, || format!("token={ret_token}"))
        }
        "grpc_stream" => {
            let code = unsafe {
                abi::proxy_grpc_stream(
                    upstream_ptr,
                    upstream_size,
                    service_ptr,
                    service_size,
                    method_ptr,
                    method_size,
                    metadata_ptr,
                    metadata_size,
                    slot(&mut ret_token),
                )
            };
            Done::with(code, || format!("token={ret_token}"))
        }
        "grpc_send" => {
            let end_stream = i32::from(step.end_stream.unwrap_or(false));
            Done::status(unsafe {
                abi::proxy_grpc_send(token, message_ptr, message_size, end_stream)
            })
        }
        "grpc_cancel" => Done::status(unsafe { abi::proxy_grpc_cancel(token) }),
        "grpc_close" => Done::status(unsafe { abi::proxy_grpc_close(token) }),
        _ => None,
    }
}
