//! `body`: probe filter for buffering and rewriting bodies.
//!
//! The plugin configuration is a JSON object; every key is optional:
//!
//! ```json
//! {
//!   "request_prefix": "", "request_suffix": "",
//!   "response_prefix": "", "response_suffix": "",
//!   "response_replace": null
//! }
//! ```
//!
//! When a request prefix or suffix is set, `on_http_request_body` returns `Pause` until
//! `end_of_stream`, then replaces the whole buffered body with `prefix + body + suffix` and
//! continues. The response body works the same way, except that a string `response_replace`
//! replaces the whole response body instead. With nothing set, bodies pass through chunk by
//! chunk. A response rewrite removes `content-length` in `on_http_response_headers`, as a
//! filter that changes a body's length must in Envoy; the request's framing is left to the
//! host.
//!
//! Every response gets `x-body-request-calls: <n>` (request body callbacks seen) and
//! `x-body-request-bytes: <n>` (request body bytes seen by the end of the stream, before
//! rewriting). Invalid JSON makes `on_configure` fail.

use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};
use serde::Deserialize;

/// The plugin configuration.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Config {
    request_prefix: String,
    request_suffix: String,
    response_prefix: String,
    response_suffix: String,
    response_replace: Option<String>,
}

struct BodyRoot {
    config: Rc<Config>,
}

struct Body {
    config: Rc<Config>,
    request_calls: u32,
    request_bytes: usize,
}

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Debug);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> {
        Box::new(BodyRoot { config: Rc::default() })
    });
}}

impl Config {
    fn rewrites_request(&self) -> bool {
        !self.request_prefix.is_empty() || !self.request_suffix.is_empty()
    }

    fn rewrites_response(&self) -> bool {
        self.response_replace.is_some()
            || !self.response_prefix.is_empty()
            || !self.response_suffix.is_empty()
    }
}

/// `prefix + body + suffix`.
fn wrap(prefix: &str, body: &[u8], suffix: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(prefix.len() + body.len() + suffix.len());
    out.extend_from_slice(prefix.as_bytes());
    out.extend_from_slice(body);
    out.extend_from_slice(suffix.as_bytes());
    out
}

impl Context for BodyRoot {}

impl RootContext for BodyRoot {
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
                log::error!("body: invalid plugin configuration: {err}");
                false
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Body {
            config: Rc::clone(&self.config),
            request_calls: 0,
            request_bytes: 0,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

impl Context for Body {}

impl HttpContext for Body {
    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.request_calls += 1;
        let config = Rc::clone(&self.config);
        if !config.rewrites_request() {
            // Passing through, each callback sees only its own chunk.
            self.request_bytes += body_size;
            return Action::Continue;
        }
        // While paused, body_size is the whole buffered body so far.
        self.request_bytes = body_size;
        if !end_of_stream {
            return Action::Pause;
        }
        let body = self.get_http_request_body(0, body_size).unwrap_or_default();
        let new_body = wrap(&config.request_prefix, &body, &config.request_suffix);
        self.set_http_request_body(0, body_size, &new_body);
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if self.config.rewrites_response() {
            // The headers go out before the body is rewritten: as in Envoy, a filter that
            // changes a body's length removes its Content-Length (the body goes chunked).
            self.set_http_response_header("content-length", None);
        }
        self.add_http_response_header("x-body-request-calls", &self.request_calls.to_string());
        self.add_http_response_header("x-body-request-bytes", &self.request_bytes.to_string());
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let config = Rc::clone(&self.config);
        if !config.rewrites_response() {
            return Action::Continue;
        }
        if !end_of_stream {
            return Action::Pause;
        }
        let new_body = match &config.response_replace {
            Some(replacement) => replacement.as_bytes().to_vec(),
            None => {
                let body = self
                    .get_http_response_body(0, body_size)
                    .unwrap_or_default();
                wrap(&config.response_prefix, &body, &config.response_suffix)
            }
        };
        self.set_http_response_body(0, body_size, &new_body);
        Action::Continue
    }
}
