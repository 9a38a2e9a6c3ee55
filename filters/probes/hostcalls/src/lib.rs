//! `hostcalls`: probe filter that makes the hostcalls its configuration names, in the
//! callbacks it names, and logs the status and result of each.
//!
//! Hostcalls go through the raw `env.proxy_*` imports, not the SDK's wrappers, so that any
//! status the host returns is logged rather than trapping the VM (the SDK panics on statuses
//! it does not expect). The SDK is used only for callback dispatch and its allocator. The
//! one exception is `http_call` (see below).
//!
//! # Configuration
//!
//! The plugin configuration is JSON; every key is optional and an empty configuration runs
//! nothing:
//!
//! ```json
//! {
//!   "on_configure": [STEP],  "on_context_create": [STEP],
//!   "on_request_headers": [STEP], "on_request_body": [STEP], "on_request_trailers": [STEP],
//!   "on_response_headers": [STEP], "on_response_body": [STEP], "on_response_trailers": [STEP],
//!   "on_log": [STEP], "on_done": [STEP], "on_delete": [STEP],
//!   "on_tick": [STEP], "on_http_call_response": [STEP], "on_queue_ready": [STEP],
//!   "return": {"on_request_headers": "continue" | "pause" | "pause_until_eos", ...},
//!   "fail_on_configure": false
//! }
//! ```
//!
//! - An unknown key (anywhere, steps included) or unparsable JSON logs
//!   `probe config error: <serde message>` and `on_configure` returns false.
//! - `on_vm_start` steps come from the **VM configuration** (same shape, only `on_vm_start`
//!   is used; empty = no steps; an error is logged the same way and `on_vm_start` returns
//!   false). The plugin configuration may hold an `on_vm_start` key; it is ignored.
//! - `on_configure` steps run after the configuration is parsed; `fail_on_configure: true`
//!   then makes `on_configure` return false.
//! - `on_context_create` steps run in `create_http_context` (called by the SDK from
//!   `proxy_on_context_create`), `on_delete` steps when the stream is dropped
//!   (`proxy_on_delete`), `on_done` steps in `on_done` (which returns true).
//! - `on_tick`, `on_queue_ready` steps run in the root context. `on_http_call_response`
//!   steps run in whichever context made the `http_call` (the SDK routes the response
//!   there): the stream, or the root for calls made in root callbacks.
//! - `return` applies to the six header, body and trailer callbacks; `pause_until_eos`
//!   pauses unless `end_of_stream` is true (trailers end the stream: they continue).
//!   Default `continue`.
//!
//! # Steps
//!
//! ```json
//! {"call": "<hostcall without proxy_>", "when": "always" | "eos" | "not_eos", "nth": [int], "raw": [int], "report": "<header>", ...}
//! ```
//!
//! `report` (stream contexts only) adds a response header `<header>: <outcome>` when the
//! stream's `on_response_headers` has run its steps, `<outcome>` being what the step's log
//! line shows after `-> ` (`InternalFailure`, `Ok "GET"`); each added header logs
//! `probe report <header> -> <Status>`. Reports of a stream that ends before its response
//! headers (a local reply) are dropped.
//!
//! `when` (default `always`) filters on `end_of_stream`; in callbacks without the flag
//! `eos` never matches and `not_eos` always does. `nth` (a list of 1-based numbers; default:
//! every time) runs the step only on those occurrences, counted per VM each time its
//! callback reaches the step and `when` matches (e.g. `"nth": [1]` for a callout made
//! from its own answer's callback only once). With `raw`, the import is called with
//! exactly these integers (each cast to i32, or i64 for the metric delta/value; values up to
//! `u32::MAX` and negative ones both work) and no named argument is used; every import
//! below supports it. The named arguments (missing ones take the default shown, else 0 or
//! empty; enumerations take a name or any integer):
//!
//! | call | arguments | value on Ok |
//! |---|---|---|
//! | `log` | `level` (trace..critical, default info), `message` | |
//! | `get_log_level` | | the level number |
//! | `get_current_time_nanoseconds` | | `nonzero` or `0` |
//! | `set_tick_period_milliseconds` | `period` | |
//! | `get_property` | `path` (list of segments, or dotted string), `decode` | decoded value |
//! | `set_property` | `path`, `value` | |
//! | `get_buffer_bytes` | `buffer`, `start`, `max_size` (default 0xFFFFFFFF) | string |
//! | `get_buffer_status` | `buffer` | `size=<n> flags=<f>` |
//! | `set_buffer_bytes` | `buffer`, `start`, `size`, `value` | |
//! | `get_header_map_pairs` | `map` | pairs |
//! | `set_header_map_pairs` | `map`, `pairs` (`[[k, v], ...]`) | |
//! | `get_header_map_value` | `map`, `key` | string |
//! | `add_header_map_value`, `replace_header_map_value` | `map`, `key`, `value` | |
//! | `remove_header_map_value` | `map`, `key` | |
//! | `get_header_map_size` | `map` | number |
//! | `send_local_response` | `status` (200), `details`, `body`, `headers` (pairs), `grpc_status` (-1) | |
//! | `continue_stream`, `close_stream` | `stream` | |
//! | `get_status` | | `code=<n> message="<msg>"` |
//! | `done` | | |
//! | `set_effective_context` | `context` (int, `"root"`, `"self"`; default self) | |
//! | `call_foreign_function` | `name`, `args` | string |
//! | `get_shared_data` | `key` | `"<value>" cas=<n>` |
//! | `set_shared_data` | `key`, `value`, `cas` | |
//! | `register_shared_queue` | `name` | queue id |
//! | `resolve_shared_queue` | `vm_id`, `name` | queue id |
//! | `enqueue_shared_queue` | `queue_id`, `value` | |
//! | `dequeue_shared_queue` | `queue_id` | string |
//! | `define_metric` | `type` (counter, gauge, histogram), `name` | metric id |
//! | `increment_metric` | `id` (or `"last"`, below), `delta` (i64, default 1) | |
//! | `record_metric` | `id`, `value` (i64) | |
//! | `get_metric` | `id` | number |
//! | `http_call` | `upstream`, `headers`, `body`, `trailers` (pairs), `timeout` (ms, 1000), `register` (true) | `token=<n>` |
//! | `grpc_call` | `upstream`, `service`, `method`, `metadata` (pairs), `message`, `timeout` (1000) | `token=<n>` |
//! | `grpc_stream` | `upstream`, `service`, `method`, `metadata` | `token=<n>` |
//! | `grpc_send` | `token`, `message`, `end_stream` (bool) | |
//! | `grpc_cancel`, `grpc_close` | `token` | |
//! | `env_var` (not a hostcall: `std::env::var`) | `name` | string; `NotFound` when unset |
//! | `env_vars` (not a hostcall: `std::env::vars_os`) | | pairs |
//!
//! Names: map `request_headers` 0, `request_trailers` 1, `response_headers` 2,
//! `response_trailers` 3, `grpc_initial_metadata` 4, `grpc_trailing_metadata` 5,
//! `http_call_response_headers` 6, `http_call_response_trailers` 7; buffer `request_body` 0,
//! `response_body` 1, `downstream_data` 2, `upstream_data` 3, `http_call_response_body` 4,
//! `grpc_message` 5, `vm_configuration` 6, `plugin_configuration` 7,
//! `foreign_function_arguments` 8; stream `request` 0, `response` 1, `downstream` 2,
//! `upstream` 3. An unknown name is a configuration error. The `id` of the metric calls may
//! be `"last"`: the id the VM's last successful `define_metric` step returned (kept per VM
//! across callbacks and contexts), or -1 when none has. `decode` is `string` (default),
//! `u64`, `i64`, `f64` (8 bytes LE), `bool` (1 byte), `map` (serialized pairs), `hex`.
//!
//! `http_call` goes through the SDK's `dispatch_http_call` (same arguments, serialized the
//! same way), because the SDK's dispatcher traps on an `on_http_call_response` for a token
//! it did not register. That wrapper traps on statuses other than Ok, BadArgument and
//! InternalFailure (its panic message is logged at critical level first). With
//! `"register": false` the step calls the raw import instead and logs any status, but a
//! response to such a call, like one to a `raw` http_call, traps in the SDK. The SDK
//! registers a call made in `on_context_create` to the context that last ran a callback.
//!
//! # Log lines
//!
//! Every line goes through `proxy_log` at INFO (2); tokens are separated by one space, no
//! trailing space; `<bool>` is `true` or `false`. On entry to each callback:
//!
//! ```text
//! probe on_vm_start size=<n>
//! probe on_configure size=<n>
//! probe on_context_create ctx=<id>
//! probe on_request_headers n=<n> eos=<bool>      (on_response_headers alike)
//! probe on_request_body size=<n> eos=<bool>      (on_response_body alike)
//! probe on_request_trailers n=<n>                (on_response_trailers alike)
//! probe on_log                                   (on_done, on_delete alike)
//! probe on_tick
//! probe on_http_call_response token=<t> headers=<n> body=<n> trailers=<n>
//! probe on_queue_ready id=<n>
//! probe config error: <message>                  (after on_vm_start/on_configure's line)
//! ```
//!
//! Then one line per step that runs:
//!
//! ```text
//! probe <callback> <call> -> <Status>
//! probe <callback> <call> -> Ok <value>          (calls with a value)
//! probe <callback> <call> raw -> <Status>
//! probe <callback> <call> raw -> wrong argument count, want <n>
//! probe <callback> <call> -> unknown call        (also with raw: "<call> raw -> unknown call")
//! ```
//!
//! Statuses: `Ok NotFound BadArgument SerializationFailure ParseFailure BadExpression
//! InvalidMemoryAccess Empty CasMismatch ResultMismatch InternalFailure BrokenConnection
//! Unimplemented`, else `Status(<n>)`. Bytes render double-quoted with `\\ \" \n \r \t \0`
//! escaped and `\xNN` (lowercase) for any other byte outside 0x20..=0x7e; an Ok with no data
//! renders `""`. Pairs render `[key="value", key2="value2"]` (keys escaped, unquoted), `[]`
//! when empty, `undecodable "<bytes>"` when malformed; a property whose bytes do not fit its
//! `decode` renders `undecodable "<bytes>"` too.
//!
//! Example, plugin configuration
//! `{"on_request_headers": [{"call": "get_header_map_value", "map": "request_headers", "key": ":method"}]}`
//! logs `probe on_request_headers n=5 eos=true` then
//! `probe on_request_headers get_header_map_value -> Ok "GET"`.

// Calling the raw imports is this probe's purpose; the unsafe code is confined to `abi` and
// `calls`.
#![allow(unsafe_code)]

mod abi;
mod calls;
mod config;
mod render;

use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};

use crate::calls::{Site, drop_reports, flush_reports, log, read_buffer, run};
use crate::config::{Callback, Config, Return};

/// Buffer types of the configurations (reference §8).
const VM_CONFIGURATION: i32 = 6;
const PLUGIN_CONFIGURATION: i32 = 7;

struct ProbeRoot {
    id: u32,
    config: Rc<Config>,
}

struct Probe {
    id: u32,
    root_id: u32,
    config: Rc<Config>,
}

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Trace);
    proxy_wasm::set_root_context(|id| -> Box<dyn RootContext> {
        Box::new(ProbeRoot { id, config: Rc::default() })
    });
}}

/// Reads and parses a configuration buffer; logs the error line on failure.
fn load_config(buffer_type: i32) -> Option<Config> {
    let bytes = read_buffer(buffer_type).unwrap_or_default();
    Config::parse(&bytes)
        .map_err(|err| log(&format!("probe config error: {err}")))
        .ok()
}

impl ProbeRoot {
    fn run(&self, callback: Callback) {
        let site = Site {
            callback,
            end_of_stream: None,
            root_id: self.id,
            self_id: self.id,
        };
        run(&site, self.config.steps(callback));
    }
}

impl Context for ProbeRoot {
    fn on_http_call_response(&mut self, token: u32, headers: usize, body: usize, trailers: usize) {
        log(&format!(
            "probe on_http_call_response token={token} headers={headers} body={body} trailers={trailers}"
        ));
        self.run(Callback::HttpCallResponse);
    }
}

impl RootContext for ProbeRoot {
    fn on_vm_start(&mut self, vm_configuration_size: usize) -> bool {
        log(&format!("probe on_vm_start size={vm_configuration_size}"));
        let Some(vm_config) = load_config(VM_CONFIGURATION) else {
            return false;
        };
        let site = Site {
            callback: Callback::VmStart,
            end_of_stream: None,
            root_id: self.id,
            self_id: self.id,
        };
        run(&site, vm_config.steps(Callback::VmStart));
        true
    }

    fn on_configure(&mut self, plugin_configuration_size: usize) -> bool {
        log(&format!(
            "probe on_configure size={plugin_configuration_size}"
        ));
        let Some(config) = load_config(PLUGIN_CONFIGURATION) else {
            return false;
        };
        self.config = Rc::new(config);
        self.run(Callback::Configure);
        !self.config.fail_on_configure
    }

    fn on_tick(&mut self) {
        log("probe on_tick");
        self.run(Callback::Tick);
    }

    fn on_queue_ready(&mut self, queue_id: u32) {
        log(&format!("probe on_queue_ready id={queue_id}"));
        self.run(Callback::QueueReady);
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        let probe = Probe {
            id: context_id,
            root_id: self.id,
            config: Rc::clone(&self.config),
        };
        log(&format!("probe on_context_create ctx={context_id}"));
        probe.run(Callback::ContextCreate, None);
        Some(Box::new(probe))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

impl Probe {
    fn run(&self, callback: Callback, end_of_stream: Option<bool>) {
        let site = Site {
            callback,
            end_of_stream,
            root_id: self.root_id,
            self_id: self.id,
        };
        run(&site, self.config.steps(callback));
    }

    /// Logs the entry line (`probe <callback> <details>`), runs the steps and returns what
    /// `return` says.
    fn filter(
        &self,
        callback: Callback,
        details: &str,
        end_of_stream: Option<bool>,
        returns: Return,
    ) -> Action {
        log(&format!("probe {} {details}", callback.name()));
        self.run(callback, end_of_stream);
        if callback == Callback::ResponseHeaders {
            flush_reports(self.id);
        }
        if returns.pauses(end_of_stream) {
            Action::Pause
        } else {
            Action::Continue
        }
    }
}

impl Context for Probe {
    fn on_http_call_response(&mut self, token: u32, headers: usize, body: usize, trailers: usize) {
        log(&format!(
            "probe on_http_call_response token={token} headers={headers} body={body} trailers={trailers}"
        ));
        self.run(Callback::HttpCallResponse, None);
    }

    fn on_done(&mut self) -> bool {
        log("probe on_done");
        self.run(Callback::Done, None);
        true
    }
}

impl HttpContext for Probe {
    fn on_http_request_headers(&mut self, num_headers: usize, end_of_stream: bool) -> Action {
        self.filter(
            Callback::RequestHeaders,
            &format!("n={num_headers} eos={end_of_stream}"),
            Some(end_of_stream),
            self.config.returns.on_request_headers,
        )
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.filter(
            Callback::RequestBody,
            &format!("size={body_size} eos={end_of_stream}"),
            Some(end_of_stream),
            self.config.returns.on_request_body,
        )
    }

    fn on_http_request_trailers(&mut self, num_trailers: usize) -> Action {
        self.filter(
            Callback::RequestTrailers,
            &format!("n={num_trailers}"),
            None,
            self.config.returns.on_request_trailers,
        )
    }

    fn on_http_response_headers(&mut self, num_headers: usize, end_of_stream: bool) -> Action {
        self.filter(
            Callback::ResponseHeaders,
            &format!("n={num_headers} eos={end_of_stream}"),
            Some(end_of_stream),
            self.config.returns.on_response_headers,
        )
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.filter(
            Callback::ResponseBody,
            &format!("size={body_size} eos={end_of_stream}"),
            Some(end_of_stream),
            self.config.returns.on_response_body,
        )
    }

    fn on_http_response_trailers(&mut self, num_trailers: usize) -> Action {
        self.filter(
            Callback::ResponseTrailers,
            &format!("n={num_trailers}"),
            None,
            self.config.returns.on_response_trailers,
        )
    }

    fn on_log(&mut self) {
        log("probe on_log");
        self.run(Callback::Log, None);
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        log("probe on_delete");
        self.run(Callback::Delete, None);
        drop_reports(self.id);
    }
}
