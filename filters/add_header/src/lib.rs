//! `add_header`: adds fixed headers to requests and responses.
//!
//! The plugin configuration is a JSON object; every key is optional and an empty or absent
//! configuration adds nothing:
//!
//! ```json
//! {
//!   "request_headers":  {"x-from-gateway": "1"},
//!   "response_headers": {"x-served-by": "wasmbridge"},
//!   "headers":          {"x-hello": "wasmbridge"}
//! }
//! ```
//!
//! `request_headers` are added in `on_http_request_headers`; `headers` (an alias kept for the
//! docs example) and `response_headers` are both added in `on_http_response_headers`. Headers
//! are added, never replaced, in name order; every callback returns `Continue`. Invalid JSON
//! makes `on_configure` fail.

use std::collections::BTreeMap;
use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};
use serde::Deserialize;

/// The plugin configuration; header maps are name → value.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Config {
    headers: BTreeMap<String, String>,
    request_headers: BTreeMap<String, String>,
    response_headers: BTreeMap<String, String>,
}

/// Header lists resolved once per configuration and shared by every stream.
#[derive(Debug, Default)]
struct Headers {
    request: Vec<(String, String)>,
    response: Vec<(String, String)>,
}

struct AddHeaderRoot {
    headers: Rc<Headers>,
}

struct AddHeader {
    headers: Rc<Headers>,
}

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> {
        Box::new(AddHeaderRoot { headers: Rc::default() })
    });
}}

impl Context for AddHeaderRoot {}

impl RootContext for AddHeaderRoot {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let raw = self.get_plugin_configuration().unwrap_or_default();
        let config: Config = if raw.iter().all(u8::is_ascii_whitespace) {
            Config::default()
        } else {
            match serde_json::from_slice(&raw) {
                Ok(config) => config,
                Err(err) => {
                    log::error!("add_header: invalid plugin configuration: {err}");
                    return false;
                }
            }
        };
        let Config {
            headers,
            request_headers,
            response_headers,
        } = config;
        self.headers = Rc::new(Headers {
            request: request_headers.into_iter().collect(),
            response: headers.into_iter().chain(response_headers).collect(),
        });
        true
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(AddHeader {
            headers: Rc::clone(&self.headers),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

impl Context for AddHeader {}

impl HttpContext for AddHeader {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        for (name, value) in &self.headers.request {
            self.add_http_request_header(name, value);
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        for (name, value) in &self.headers.response {
            self.add_http_response_header(name, value);
        }
        Action::Continue
    }
}
