//! `deny`: answers with a local reply when a required request header is missing.
//!
//! The plugin configuration is a JSON object; every key is optional and falls back to the
//! default shown:
//!
//! ```json
//! {
//!   "header": "x-api-key",
//!   "status": 403,
//!   "body": "access denied\n",
//!   "response_headers": {"x-denied-by": "deny"}
//! }
//! ```
//!
//! In `on_http_request_headers`, a request without `header` gets `send_http_response(status,
//! response_headers + content-type: text/plain, body)` and the callback returns `Pause`; any
//! other request continues untouched. A `content-type` in `response_headers` replaces the
//! `text/plain` default. Invalid JSON or a status outside 200..=599 makes `on_configure` fail.

use std::collections::BTreeMap;
use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};
use serde::Deserialize;

/// The plugin configuration.
#[derive(Debug, Deserialize)]
#[serde(default)]
struct Config {
    header: String,
    status: u32,
    body: String,
    response_headers: BTreeMap<String, String>,
}

struct DenyRoot {
    config: Rc<Config>,
}

struct Deny {
    config: Rc<Config>,
}

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> {
        Box::new(DenyRoot { config: Rc::default() })
    });
}}

impl Default for Config {
    fn default() -> Self {
        Config {
            header: "x-api-key".to_owned(),
            status: 403,
            body: "access denied\n".to_owned(),
            response_headers: BTreeMap::from([("x-denied-by".to_owned(), "deny".to_owned())]),
        }
    }
}

impl Context for DenyRoot {}

impl RootContext for DenyRoot {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let raw = self.get_plugin_configuration().unwrap_or_default();
        let config: Config = if raw.iter().all(u8::is_ascii_whitespace) {
            Config::default()
        } else {
            match serde_json::from_slice(&raw) {
                Ok(config) => config,
                Err(err) => {
                    log::error!("deny: invalid plugin configuration: {err}");
                    return false;
                }
            }
        };
        // Below 200 a reply would not be final; above 599 it is not HTTP.
        if !(200..=599).contains(&config.status) {
            log::error!(
                "deny: invalid plugin configuration: status {} not in 200..=599",
                config.status
            );
            return false;
        }
        self.config = Rc::new(config);
        true
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Deny {
            config: Rc::clone(&self.config),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

impl Context for Deny {}

impl HttpContext for Deny {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let config = &self.config;
        if self.get_http_request_header(&config.header).is_some() {
            return Action::Continue;
        }
        let mut headers: Vec<(&str, &str)> = config
            .response_headers
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .collect();
        if !headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("content-type"))
        {
            headers.push(("content-type", "text/plain"));
        }
        log::info!(
            "deny: request without {}, replying {}",
            config.header,
            config.status
        );
        self.send_http_response(config.status, headers, Some(config.body.as_bytes()));
        Action::Pause
    }
}
