//! `metrics`: counts requests per method, tracks the requests in flight and records each
//! response's body size, through the Proxy-Wasm metric hostcalls. Configuration ignored.
//!
//! | Metric (Envoy name) | Type | Value |
//! |---|---|---|
//! | `requests_total.method.<METHOD>` | counter | requests seen with that `:method` |
//! | `requests_in_flight` | gauge | requests whose headers arrived and whose `on_log` has not run |
//! | `response_body_bytes` | histogram | response body bytes of each request, recorded in `on_log` |
//!
//! Envoy shows them under its `wasmcustom.` stat namespace; wasmbridge's admin `/metrics`
//! as `wasmcustom_requests_total_method_GET`, `wasmcustom_requests_in_flight` and
//! `wasmcustom_response_body_bytes`. Every VM replica and every plugin using these names
//! shares the same metrics.
//!
//! Each response also gets `x-method-count: <n>`: the method's counter read with
//! `get_metric` right after this request incremented it.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use proxy_wasm::hostcalls::{define_metric, get_metric, increment_metric, record_metric};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MetricType};

/// Metric ids, defined once per VM; per-method counters as methods show up.
#[derive(Default)]
struct Ids {
    in_flight: u32,
    body_bytes: u32,
    per_method: RefCell<HashMap<String, u32>>,
}

struct MetricsRoot {
    ids: Rc<Ids>,
}

struct MetricsStream {
    ids: Rc<Ids>,
    /// The method's counter after this request's increment.
    method_count: Option<u64>,
    /// True once this request raised `requests_in_flight`.
    in_flight: bool,
    body_bytes: u64,
}

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> {
        Box::new(MetricsRoot { ids: Rc::default() })
    });
}}

impl Ids {
    /// The counter of `method`, defined on first use.
    fn method_counter(&self, method: &str) -> Result<u32, String> {
        if let Some(&id) = self.per_method.borrow().get(method) {
            return Ok(id);
        }
        let name = format!("requests_total.method.{method}");
        let id = define_metric(MetricType::Counter, &name).map_err(|s| format!("{s:?}"))?;
        self.per_method.borrow_mut().insert(method.to_string(), id);
        Ok(id)
    }
}

/// Logs a failed metric call; a filter keeps serving when its metrics do not work.
fn check(what: &str, result: Result<(), proxy_wasm::types::Status>) {
    if let Err(status) = result {
        log::warn!("metrics: {what} failed: {status:?}");
    }
}

impl Context for MetricsRoot {}

impl RootContext for MetricsRoot {
    fn on_vm_start(&mut self, _vm_configuration_size: usize) -> bool {
        let define = |kind, name| {
            define_metric(kind, name)
                .map_err(|status| log::error!("metrics: define {name} failed: {status:?}"))
        };
        let (Ok(in_flight), Ok(body_bytes)) = (
            define(MetricType::Gauge, "requests_in_flight"),
            define(MetricType::Histogram, "response_body_bytes"),
        ) else {
            return false;
        };
        self.ids = Rc::new(Ids {
            in_flight,
            body_bytes,
            per_method: RefCell::default(),
        });
        true
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(MetricsStream {
            ids: Rc::clone(&self.ids),
            method_count: None,
            in_flight: false,
            body_bytes: 0,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

impl Context for MetricsStream {}

impl HttpContext for MetricsStream {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let method = self.get_http_request_header(":method").unwrap_or_default();
        match self.ids.method_counter(&method) {
            Ok(id) => {
                check("increment", increment_metric(id, 1));
                self.method_count = get_metric(id).ok();
            }
            Err(status) => log::warn!("metrics: define counter for {method:?} failed: {status}"),
        }
        check("increment", increment_metric(self.ids.in_flight, 1));
        self.in_flight = true;
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if let Some(count) = self.method_count {
            self.add_http_response_header("x-method-count", &count.to_string());
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, _end_of_stream: bool) -> Action {
        // Each call sees the bytes that arrived since the last one: the filter never
        // buffers, so the buffer is passed on after every call.
        self.body_bytes += body_size as u64;
        Action::Continue
    }

    fn on_log(&mut self) {
        check(
            "record",
            record_metric(self.ids.body_bytes, self.body_bytes),
        );
        if self.in_flight {
            check("decrement", increment_metric(self.ids.in_flight, -1));
        }
    }
}
