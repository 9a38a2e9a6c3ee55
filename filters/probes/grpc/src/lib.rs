//! `grpc`: probe filter that makes a gRPC callout from an HTTP stream — a unary call or a
//! bidirectional stream — and reports what came back in request headers.
//!
//! # Configuration
//!
//! JSON; every key is optional and takes the default shown:
//!
//! ```json
//! {
//!   "cluster": "grpc",
//!   "service": "test.Echo",
//!   "method": "Unary",
//!   "mode": "unary",
//!   "timeout_ms": 5000,
//!   "finish": "end_stream"
//! }
//! ```
//!
//! `mode` is `unary` (`dispatch_grpc_call`, with `timeout_ms`) or `stream`
//! (`open_grpc_stream`, no timeout). `finish` says how a stream's sending side ends after
//! the echo of its last message: `end_stream` (the last message goes with `end_stream`),
//! `close` (`close_grpc_stream`, a half-close) or `cancel` (`cancel_grpc_stream`, a reset:
//! no callback follows, so the request resumes at once). An unknown key or invalid JSON makes
//! `on_configure` fail.
//!
//! # Behaviour
//!
//! `on_http_request_headers` starts the call with initial metadata `x-client: wasm` and
//! returns `Pause`; body and trailer callbacks pause too until the call ended. A unary call
//! sends the request header `x-message` (empty when absent). A stream sends the
//! comma-separated values of `x-message` one at a time, each after the previous one's
//! answer arrived.
//!
//! Each hostcall and callback logs one line at info level, `grpc <name> token=<t> ...`:
//!
//! ```text
//! grpc dispatch_grpc_call token=<t> message="<m>"
//! grpc open_grpc_stream token=<t>
//! grpc send_grpc_stream_message token=<t> message="<m>" end_stream=<bool>
//! grpc close_grpc_stream token=<t>
//! grpc cancel_grpc_stream token=<t>
//! grpc on_grpc_call_response token=<t> status=<code> size=<n>
//! grpc on_grpc_stream_initial_metadata token=<t> n=<n> [<name>="<value>" ...]
//! grpc on_grpc_stream_message token=<t> message="<m>"
//! grpc on_grpc_stream_trailing_metadata token=<t> n=<n> [<name>="<value>" ...]
//! grpc on_grpc_stream_close token=<t> status=<code>
//! grpc get_status code=<code> message="<m>"
//! ```
//!
//! (`get_status` is logged in `on_grpc_call_response` and `on_grpc_stream_close`.) When the
//! call ends the filter sets these request headers and resumes the request:
//!
//! | Header | Value |
//! |---|---|
//! | `x-grpc-end` | what ended the call: `on_grpc_call_response`, `on_grpc_stream_close` or `cancel_grpc_stream` |
//! | `x-grpc-status` | the status argument of the ending callback (absent after a cancel) |
//! | `x-grpc-status-code`, `x-grpc-message` | what `get_status` answered in that callback |
//! | `x-grpc-reply` | a unary call's reply (only with status 0) |
//! | `x-grpc-messages` | a stream's messages, joined with `,` |
//! | `x-grpc-initial-<name>`, `x-grpc-trailing-<name>` | each pair of a stream's initial and trailing metadata (pseudo-headers skipped) |
//!
//! Values are text, with bytes outside printable ASCII replaced by `?`. A gRPC hostcall
//! that fails gets a local 500 `grpc: <hostcall> failed: <status>` (and an open stream is
//! cancelled).
//!
//! As in Envoy, a unary call gets no metadata callbacks: the SDK (0.2.5) reports its one
//! `proxy_on_grpc_receive` or `proxy_on_grpc_close` as `on_grpc_call_response`. The SDK's
//! `Context` wrappers for `send`, `close`, `cancel` and `get_status` panic on an error
//! status, so the filter calls `proxy_wasm::hostcalls` for them;
//! `hostcalls::get_grpc_status` still panics on a status other than OK and on a message
//! that is not UTF-8.

use std::rc::Rc;
use std::time::Duration;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType, Status};
use serde::Deserialize;

/// The plugin configuration.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Config {
    cluster: String,
    service: String,
    method: String,
    mode: Mode,
    timeout_ms: u64,
    finish: Finish,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Mode {
    Unary,
    Stream,
}

/// How a stream's sending side ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Finish {
    EndStream,
    Close,
    Cancel,
}

/// A gRPC hostcall that returned an error status.
struct Failed(&'static str, Status);

struct GrpcRoot {
    config: Rc<Config>,
}

struct GrpcProbe {
    config: Rc<Config>,
    /// The call's token while it runs.
    token: Option<u32>,
    /// A stream's messages to send, and how many went.
    outgoing: Vec<String>,
    sent: usize,
    /// The sending side ended (end_stream or close).
    half_closed: bool,
    /// A stream's messages received.
    received: Vec<String>,
}

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> {
        Box::new(GrpcRoot { config: Rc::default() })
    });
}}

impl Default for Config {
    fn default() -> Self {
        Config {
            cluster: "grpc".to_owned(),
            service: "test.Echo".to_owned(),
            method: "Unary".to_owned(),
            mode: Mode::Unary,
            timeout_ms: 5000,
            finish: Finish::EndStream,
        }
    }
}

/// Text for a log line or a header value: printable ASCII, anything else as `?`.
fn text(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|&b| {
            if (0x20..0x7f).contains(&b) {
                b as char
            } else {
                '?'
            }
        })
        .collect()
}

/// Metadata pairs as `name="value"` words for a log line.
fn words(pairs: &[(String, Vec<u8>)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!(" {}=\"{}\"", text(k.as_bytes()), text(v)))
        .collect()
}

impl Context for GrpcRoot {}

impl RootContext for GrpcRoot {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let raw = self.get_plugin_configuration().unwrap_or_default();
        if raw.iter().all(u8::is_ascii_whitespace) {
            self.config = Rc::default();
            return true;
        }
        match serde_json::from_slice(&raw) {
            Ok(config) => {
                self.config = Rc::new(config);
                true
            }
            Err(err) => {
                log::error!("grpc: invalid plugin configuration: {err}");
                false
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(GrpcProbe {
            config: Rc::clone(&self.config),
            token: None,
            outgoing: Vec::new(),
            sent: 0,
            half_closed: false,
            received: Vec::new(),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

impl GrpcProbe {
    /// Starts the call the configuration describes.
    fn start(&mut self) -> Result<(), Failed> {
        let config = Rc::clone(&self.config);
        let message = self
            .get_http_request_header("x-message")
            .unwrap_or_default();
        let metadata = vec![("x-client", &b"wasm"[..])];
        match config.mode {
            Mode::Unary => {
                let token = hostcalls::dispatch_grpc_call(
                    &config.cluster,
                    &config.service,
                    &config.method,
                    metadata,
                    Some(message.as_bytes()),
                    Duration::from_millis(config.timeout_ms),
                )
                .map_err(|s| Failed("dispatch_grpc_call", s))?;
                log::info!(
                    "grpc dispatch_grpc_call token={token} message=\"{}\"",
                    text(message.as_bytes())
                );
                self.token = Some(token);
                Ok(())
            }
            Mode::Stream => {
                let token = hostcalls::open_grpc_stream(
                    &config.cluster,
                    &config.service,
                    &config.method,
                    metadata,
                )
                .map_err(|s| Failed("open_grpc_stream", s))?;
                log::info!("grpc open_grpc_stream token={token}");
                self.token = Some(token);
                self.outgoing = message
                    .split(',')
                    .map(|m| m.trim().to_owned())
                    .filter(|m| !m.is_empty())
                    .collect();
                self.advance(token)
            }
        }
    }

    /// Sends a stream's next message; after the last one's answer ends the sending side as
    /// configured.
    fn advance(&mut self, token: u32) -> Result<(), Failed> {
        if self.half_closed {
            return Ok(());
        }
        let finish = self.config.finish;
        if let Some(message) = self.outgoing.get(self.sent) {
            let end_stream = finish == Finish::EndStream && self.sent + 1 == self.outgoing.len();
            hostcalls::send_grpc_stream_message(token, Some(message.as_bytes()), end_stream)
                .map_err(|s| Failed("send_grpc_stream_message", s))?;
            log::info!(
                "grpc send_grpc_stream_message token={token} message=\"{}\" end_stream={end_stream}",
                text(message.as_bytes())
            );
            self.sent += 1;
            self.half_closed = end_stream;
            return Ok(());
        }
        self.half_closed = true;
        match finish {
            Finish::EndStream => {
                // Nothing was sent: half-close without a message.
                hostcalls::send_grpc_stream_message(token, None, true)
                    .map_err(|s| Failed("send_grpc_stream_message", s))?;
                log::info!("grpc send_grpc_stream_message token={token} end_stream=true");
            }
            Finish::Close => {
                hostcalls::close_grpc_stream(token).map_err(|s| Failed("close_grpc_stream", s))?;
                log::info!("grpc close_grpc_stream token={token}");
            }
            Finish::Cancel => {
                hostcalls::cancel_grpc_stream(token)
                    .map_err(|s| Failed("cancel_grpc_stream", s))?;
                log::info!("grpc cancel_grpc_stream token={token}");
                self.token = None;
                self.finish("cancel_grpc_stream", None);
            }
        }
        Ok(())
    }

    /// Writes the outcome into the request headers and resumes it. `status` is the ending
    /// callback's status argument.
    fn finish(&mut self, end: &str, status: Option<u32>) {
        self.token = None;
        self.set_http_request_header("x-grpc-end", Some(end));
        if let Some(status) = status {
            self.set_http_request_header("x-grpc-status", Some(&status.to_string()));
            let (code, message) = match hostcalls::get_grpc_status() {
                Ok((code, message)) => (code.to_string(), message.unwrap_or_default()),
                Err(status) => (format!("{status:?}"), String::new()),
            };
            log::info!(
                "grpc get_status code={code} message=\"{}\"",
                text(message.as_bytes())
            );
            self.set_http_request_header("x-grpc-status-code", Some(&code));
            self.set_http_request_header("x-grpc-message", Some(&text(message.as_bytes())));
        }
        if self.config.mode == Mode::Stream {
            self.set_http_request_header("x-grpc-messages", Some(&self.received.join(",")));
        }
        self.resume_http_request();
    }

    /// A local 500 naming the hostcall that failed; an open stream is cancelled.
    fn fail(&mut self, Failed(hostcall, status): Failed) {
        log::error!("grpc: {hostcall} failed: {status:?}");
        if let Some(token) = self.token.take()
            && self.config.mode == Mode::Stream
        {
            let _ = hostcalls::cancel_grpc_stream(token);
        }
        let body = format!("grpc: {hostcall} failed: {status:?}\n");
        if let Err(status) = hostcalls::send_http_response(
            500,
            vec![("content-type", "text/plain")],
            Some(body.as_bytes()),
        ) {
            log::error!("grpc: send_http_response failed: {status:?}");
        }
    }

    /// Records a stream's metadata as `x-grpc-<kind>-<name>` request headers.
    fn metadata(&mut self, callback: &str, kind: &str, map: MapType, token: u32, n: u32) {
        let pairs: Vec<(String, Vec<u8>)> = match hostcalls::get_map_bytes(map) {
            Ok(pairs) => pairs.into_iter().map(|(k, v)| (k, v.to_vec())).collect(),
            Err(status) => {
                self.fail(Failed("get_header_map_pairs", status));
                return;
            }
        };
        log::info!("grpc {callback} token={token} n={n}{}", words(&pairs));
        for (name, value) in pairs.iter().filter(|(k, _)| !k.starts_with(':')) {
            self.add_http_request_header(&format!("x-grpc-{kind}-{name}"), &text(value));
        }
    }

    /// The received buffer of the callback being delivered.
    fn received_buffer(&mut self, size: usize) -> Result<Vec<u8>, Failed> {
        hostcalls::get_buffer(BufferType::GrpcReceiveBuffer, 0, size)
            .map(|b| b.unwrap_or_default())
            .map_err(|s| Failed("get_buffer_bytes", s))
    }
}

impl Context for GrpcProbe {
    fn on_grpc_call_response(&mut self, token_id: u32, status_code: u32, response_size: usize) {
        log::info!(
            "grpc on_grpc_call_response token={token_id} status={status_code} size={response_size}"
        );
        if status_code == 0 {
            match self.received_buffer(response_size) {
                Ok(reply) => self.set_http_request_header("x-grpc-reply", Some(&text(&reply))),
                Err(failed) => {
                    self.fail(failed);
                    return;
                }
            }
        }
        self.finish("on_grpc_call_response", Some(status_code));
    }

    fn on_grpc_stream_initial_metadata(&mut self, token_id: u32, num_elements: u32) {
        self.metadata(
            "on_grpc_stream_initial_metadata",
            "initial",
            MapType::GrpcReceiveInitialMetadata,
            token_id,
            num_elements,
        );
    }

    fn on_grpc_stream_message(&mut self, token_id: u32, message_size: usize) {
        let message = match self.received_buffer(message_size) {
            Ok(message) => text(&message),
            Err(failed) => {
                self.fail(failed);
                return;
            }
        };
        log::info!("grpc on_grpc_stream_message token={token_id} message=\"{message}\"");
        self.received.push(message);
        if self.token == Some(token_id)
            && let Err(failed) = self.advance(token_id)
        {
            self.fail(failed);
        }
    }

    fn on_grpc_stream_trailing_metadata(&mut self, token_id: u32, num_elements: u32) {
        self.metadata(
            "on_grpc_stream_trailing_metadata",
            "trailing",
            MapType::GrpcReceiveTrailingMetadata,
            token_id,
            num_elements,
        );
    }

    fn on_grpc_stream_close(&mut self, token_id: u32, status_code: u32) {
        log::info!("grpc on_grpc_stream_close token={token_id} status={status_code}");
        if self.token == Some(token_id) {
            self.finish("on_grpc_stream_close", Some(status_code));
        }
    }
}

impl HttpContext for GrpcProbe {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if let Err(failed) = self.start() {
            self.fail(failed);
        }
        Action::Pause
    }

    // In Envoy a body or trailer callback that continues also releases paused headers.
    fn on_http_request_body(&mut self, _body_size: usize, _end_of_stream: bool) -> Action {
        if self.token.is_some() {
            Action::Pause
        } else {
            Action::Continue
        }
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        if self.token.is_some() {
            Action::Pause
        } else {
            Action::Continue
        }
    }
}
