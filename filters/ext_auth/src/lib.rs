//! `ext_auth`: external authorization over an HTTP callout.
//!
//! The plugin configuration is a JSON object; `cluster` is required, the other keys fall
//! back to the defaults shown:
//!
//! ```json
//! {
//!   "cluster": "auth",
//!   "path": "/check",
//!   "timeout_ms": 1000,
//!   "forward_headers": ["authorization", "x-user"],
//!   "allowed_headers": ["x-auth-user"]
//! }
//! ```
//!
//! (`forward_headers` and `allowed_headers` default to empty lists.)
//!
//! In `on_http_request_headers` the filter sends `GET path` to `cluster` (`:authority` is the
//! cluster name) with the request's `forward_headers` that are present, plus
//! `x-original-method` and `x-original-uri` naming the request being checked, and pauses the
//! request; its body and trailers wait too. The authorization service's answer decides:
//!
//! - 2xx: each of `allowed_headers` is set on the request to the answer's value, or removed
//!   when the answer lacks it (so a client cannot supply it itself), and the request resumes;
//! - 503, 504 or no answer at all (a connection failure, the timeout, a reset): a local 503
//!   `auth service unavailable` — the filter fails closed. The host reports a refused
//!   connection as a synthesized 503 and a timeout as a synthesized 504, as Envoy does, so
//!   the service's own 503 and 504 read the same way;
//! - any other status: a local reply with that status (403 when it is not a 3xx, 4xx or 5xx)
//!   and the answer's body, `content-type` and `www-authenticate`.
//!
//! When the call cannot even be dispatched (no such cluster) the filter logs an error and
//! replies 500. Invalid JSON, an empty `cluster` or a zero `timeout_ms` makes `on_configure`
//! fail.

use std::rc::Rc;
use std::time::Duration;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};
use serde::Deserialize;

/// The plugin configuration.
#[derive(Debug, Deserialize)]
#[serde(default)]
struct Config {
    cluster: String,
    path: String,
    timeout_ms: u64,
    forward_headers: Vec<String>,
    allowed_headers: Vec<String>,
}

/// Headers of the authorization service's answer that a denial passes on to the client.
const DENIAL_HEADERS: [&str; 2] = ["content-type", "www-authenticate"];

struct ExtAuthRoot {
    config: Rc<Config>,
}

struct ExtAuth {
    config: Rc<Config>,
    /// True from the dispatch until the answer: body and trailers wait for the verdict.
    checking: bool,
}

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> {
        Box::new(ExtAuthRoot { config: Rc::default() })
    });
}}

impl Default for Config {
    fn default() -> Self {
        Config {
            cluster: String::new(),
            path: "/check".to_owned(),
            timeout_ms: 1000,
            forward_headers: Vec::new(),
            allowed_headers: Vec::new(),
        }
    }
}

impl Context for ExtAuthRoot {}

impl RootContext for ExtAuthRoot {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let raw = self.get_plugin_configuration().unwrap_or_default();
        let mut config: Config = if raw.iter().all(u8::is_ascii_whitespace) {
            Config::default()
        } else {
            match serde_json::from_slice(&raw) {
                Ok(config) => config,
                Err(err) => {
                    log::error!("ext_auth: invalid plugin configuration: {err}");
                    return false;
                }
            }
        };
        if config.cluster.is_empty() || config.timeout_ms == 0 {
            log::error!(
                "ext_auth: invalid plugin configuration: `cluster` must be set and `timeout_ms` above 0"
            );
            return false;
        }
        // Header maps are matched in lower case on both sides.
        for name in config
            .forward_headers
            .iter_mut()
            .chain(config.allowed_headers.iter_mut())
        {
            name.make_ascii_lowercase();
        }
        self.config = Rc::new(config);
        true
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(ExtAuth {
            config: Rc::clone(&self.config),
            checking: false,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

impl ExtAuth {
    /// The request is allowed: copy the granted headers onto it and let it go on.
    fn allow(&self) {
        for name in &self.config.allowed_headers {
            let value = self.get_http_call_response_header(name);
            self.set_http_request_header(name, value.as_deref());
        }
        self.resume_http_request();
    }

    /// The request is denied: pass the service's status, body and a few headers on.
    fn deny(&self, status: u32, body_size: usize) {
        let status = if (300..=599).contains(&status) {
            status
        } else {
            403
        };
        let body = self
            .get_http_call_response_body(0, body_size)
            .unwrap_or_default();
        let kept: Vec<(&str, String)> = DENIAL_HEADERS
            .iter()
            .filter_map(|name| Some((*name, self.get_http_call_response_header(name)?)))
            .collect();
        log::info!("ext_auth: request denied by the authorization service ({status})");
        self.send_http_response(
            status,
            kept.iter().map(|(k, v)| (*k, v.as_str())).collect(),
            Some(&body),
        );
    }
}

impl Context for ExtAuth {
    fn on_http_call_response(
        &mut self,
        _token_id: u32,
        num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        self.checking = false;
        let status = if num_headers == 0 {
            None
        } else {
            self.get_http_call_response_header(":status")
                .and_then(|s| s.parse::<u32>().ok())
        };
        match status {
            Some(200..=299) => self.allow(),
            None | Some(503 | 504) => {
                log::warn!(
                    "ext_auth: authorization service on cluster {} unavailable ({}), failing closed",
                    self.config.cluster,
                    status.map_or_else(|| "no answer".to_owned(), |s| s.to_string())
                );
                self.send_http_response(
                    503,
                    vec![("content-type", "text/plain")],
                    Some(b"auth service unavailable\n"),
                );
            }
            Some(status) => self.deny(status, body_size),
        }
    }
}

impl HttpContext for ExtAuth {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let config = Rc::clone(&self.config);
        let mut headers: Vec<(&str, String)> = vec![
            (":method", "GET".to_owned()),
            (":path", config.path.clone()),
            (":authority", config.cluster.clone()),
        ];
        for (name, pseudo) in [
            ("x-original-method", ":method"),
            ("x-original-uri", ":path"),
        ] {
            if let Some(value) = self.get_http_request_header(pseudo) {
                headers.push((name, value));
            }
        }
        for name in &config.forward_headers {
            if let Some(value) = self.get_http_request_header(name) {
                headers.push((name, value));
            }
        }
        let headers = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let timeout = Duration::from_millis(config.timeout_ms);
        match self.dispatch_http_call(&config.cluster, headers, None, vec![], timeout) {
            Ok(_token) => self.checking = true,
            Err(status) => {
                log::error!(
                    "ext_auth: cannot call the authorization service on cluster {}: {status:?}",
                    config.cluster
                );
                self.send_http_response(
                    500,
                    vec![("content-type", "text/plain")],
                    Some(b"authorization check failed\n"),
                );
            }
        }
        Action::Pause
    }

    // In Envoy a body or trailer callback that continues also releases paused headers.
    fn on_http_request_body(&mut self, _body_size: usize, _end_of_stream: bool) -> Action {
        if self.checking {
            Action::Pause
        } else {
            Action::Continue
        }
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        if self.checking {
            Action::Pause
        } else {
            Action::Continue
        }
    }
}
