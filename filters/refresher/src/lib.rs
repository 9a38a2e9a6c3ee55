//! `refresher`: polls a configuration service on a timer and stamps requests with the answer.
//!
//! The plugin configuration is a JSON object; `cluster` is required, the other keys fall
//! back to the defaults shown:
//!
//! ```json
//! {
//!   "cluster": "config",
//!   "path": "/config",
//!   "period_ms": 1000,
//!   "timeout_ms": 1000,
//!   "header": "x-config-version"
//! }
//! ```
//!
//! `on_configure` sets the tick period to `period_ms`. On each tick the root context sends
//! `GET path` to `cluster`, unless its previous call is still in flight. A 2xx answer's body,
//! trimmed, is stored in shared data under `refresher/<plugin name>`, where the VM replicas
//! of every worker thread read it; a failed call, another status, or a body that is not a
//! valid header value is logged and leaves the stored value alone. Every replica polls on
//! its own ticks and the last answer written wins.
//!
//! In `on_http_request_headers` each request gets the stored value as request header
//! `header`, replacing what the client sent; until the first successful fetch the header is
//! removed. Invalid JSON, an empty `cluster` or `header`, or a zero `period_ms` or
//! `timeout_ms` makes `on_configure` fail.

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
    period_ms: u64,
    timeout_ms: u64,
    header: String,
}

/// The configuration with the shared-data key of this plugin.
#[derive(Debug, Default)]
struct Settings {
    config: Config,
    key: String,
}

struct RefresherRoot {
    settings: Rc<Settings>,
    /// The token of the call in flight, if any.
    in_flight: Option<u32>,
}

struct Refresher {
    settings: Rc<Settings>,
}

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> {
        Box::new(RefresherRoot { settings: Rc::default(), in_flight: None })
    });
}}

impl Default for Config {
    fn default() -> Self {
        Config {
            cluster: String::new(),
            path: "/config".to_owned(),
            period_ms: 1000,
            timeout_ms: 1000,
            header: "x-config-version".to_owned(),
        }
    }
}

/// Whether `value` can go into a header as it is: visible ASCII, spaces and tabs.
fn is_header_value(value: &str) -> bool {
    value
        .bytes()
        .all(|b| b == b'\t' || (b' '..=b'~').contains(&b))
}

impl RefresherRoot {
    /// Stores a fetched body when it is a usable header value.
    fn store(&self, body: &[u8]) {
        let settings = &self.settings;
        let Some(value) = std::str::from_utf8(body)
            .ok()
            .map(str::trim)
            .filter(|v| is_header_value(v))
        else {
            log::warn!(
                "refresher: the answer from cluster {} is not a header value; keeping the old one",
                settings.config.cluster
            );
            return;
        };
        if self.get_shared_data(&settings.key).0.as_deref() == Some(value.as_bytes()) {
            return;
        }
        match self.set_shared_data(&settings.key, Some(value.as_bytes()), None) {
            Ok(()) => log::info!("refresher: {} is now {value:?}", settings.config.header),
            Err(status) => log::warn!("refresher: cannot store {}: {status:?}", settings.key),
        }
    }
}

impl Context for RefresherRoot {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        if self.in_flight == Some(token_id) {
            self.in_flight = None;
        }
        let status = if num_headers == 0 {
            None
        } else {
            self.get_http_call_response_header(":status")
        };
        match status.as_deref().and_then(|s| s.parse::<u32>().ok()) {
            Some(200..=299) => {
                let body = self
                    .get_http_call_response_body(0, body_size)
                    .unwrap_or_default();
                self.store(&body);
            }
            other => log::warn!(
                "refresher: fetch from cluster {} failed ({}); keeping the old value",
                self.settings.config.cluster,
                other.map_or_else(|| "no answer".to_owned(), |s| format!("status {s}"))
            ),
        }
    }
}

impl RootContext for RefresherRoot {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let raw = self.get_plugin_configuration().unwrap_or_default();
        let config: Config = if raw.iter().all(u8::is_ascii_whitespace) {
            Config::default()
        } else {
            match serde_json::from_slice(&raw) {
                Ok(config) => config,
                Err(err) => {
                    log::error!("refresher: invalid plugin configuration: {err}");
                    return false;
                }
            }
        };
        if config.cluster.is_empty()
            || config.header.is_empty()
            || config.period_ms == 0
            || config.timeout_ms == 0
        {
            log::error!(
                "refresher: invalid plugin configuration: `cluster` and `header` must be set, `period_ms` and `timeout_ms` above 0"
            );
            return false;
        }
        let name = self
            .get_property(vec!["plugin_name"])
            .map(|name| String::from_utf8_lossy(&name).into_owned())
            .unwrap_or_default();
        self.set_tick_period(Duration::from_millis(config.period_ms));
        self.settings = Rc::new(Settings {
            config,
            key: format!("refresher/{name}"),
        });
        true
    }

    fn on_tick(&mut self) {
        if self.in_flight.is_some() {
            return;
        }
        let config = &self.settings.config;
        let headers = vec![
            (":method", "GET"),
            (":path", config.path.as_str()),
            (":authority", config.cluster.as_str()),
        ];
        let timeout = Duration::from_millis(config.timeout_ms);
        match self.dispatch_http_call(&config.cluster, headers, None, vec![], timeout) {
            Ok(token) => self.in_flight = Some(token),
            Err(status) => log::warn!(
                "refresher: cannot call cluster {}: {status:?}",
                config.cluster
            ),
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Refresher {
            settings: Rc::clone(&self.settings),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

impl Context for Refresher {}

impl HttpContext for Refresher {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let (value, _cas) = self.get_shared_data(&self.settings.key);
        let value = value.map(|v| String::from_utf8_lossy(&v).into_owned());
        self.set_http_request_header(&self.settings.config.header, value.as_deref());
        Action::Continue
    }
}
