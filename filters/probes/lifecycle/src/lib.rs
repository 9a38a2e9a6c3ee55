//! `lifecycle`: probe filter that records the order of callbacks.
//!
//! The plugin configuration (and the VM configuration) is ignored. Every callback logs exactly
//! one line through `proxy_log` at INFO level (2) and returns `Continue` (or `true`); nothing
//! else is called. Tokens are separated by one space, with no trailing space; `<bool>` is
//! `true` or `false`.
//!
//! Root context:
//!
//! ```text
//! lifecycle-root on_context_create ctx=<id>      the SDK's set_root_context closure
//! lifecycle-root on_vm_start size=<vm configuration size>
//! lifecycle-root on_configure size=<plugin configuration size>
//! lifecycle-root on_done
//! lifecycle-root on_delete                       the root is dropped (proxy_on_delete)
//! ```
//!
//! Stream context (HTTP):
//!
//! ```text
//! lifecycle on_context_create ctx=<id>           RootContext::create_http_context
//! lifecycle on_request_headers n=<num_headers> eos=<bool>
//! lifecycle on_request_body size=<body_size> eos=<bool>
//! lifecycle on_request_trailers n=<num_trailers>
//! lifecycle on_response_headers n=<num_headers> eos=<bool>
//! lifecycle on_response_body size=<body_size> eos=<bool>
//! lifecycle on_response_trailers n=<num_trailers>
//! lifecycle on_log
//! lifecycle on_done
//! lifecycle on_delete                            the stream is dropped (proxy_on_delete)
//! ```

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};

struct LifecycleRoot;

struct Lifecycle;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Trace);
    proxy_wasm::set_root_context(|context_id| -> Box<dyn RootContext> {
        record(&format!("lifecycle-root on_context_create ctx={context_id}"));
        Box::new(LifecycleRoot)
    });
}}

/// Logs one probe line. The status is ignored: the probe records, it does not judge.
fn record(line: &str) {
    let _ = hostcalls::log(LogLevel::Info, line);
}

impl Context for LifecycleRoot {
    fn on_done(&mut self) -> bool {
        record("lifecycle-root on_done");
        true
    }
}

impl RootContext for LifecycleRoot {
    fn on_vm_start(&mut self, vm_configuration_size: usize) -> bool {
        record(&format!(
            "lifecycle-root on_vm_start size={vm_configuration_size}"
        ));
        true
    }

    fn on_configure(&mut self, plugin_configuration_size: usize) -> bool {
        record(&format!(
            "lifecycle-root on_configure size={plugin_configuration_size}"
        ));
        true
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        record(&format!("lifecycle on_context_create ctx={context_id}"));
        Some(Box::new(Lifecycle))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

impl Drop for LifecycleRoot {
    fn drop(&mut self) {
        record("lifecycle-root on_delete");
    }
}

impl Context for Lifecycle {
    fn on_done(&mut self) -> bool {
        record("lifecycle on_done");
        true
    }
}

impl HttpContext for Lifecycle {
    fn on_http_request_headers(&mut self, num_headers: usize, end_of_stream: bool) -> Action {
        record(&format!(
            "lifecycle on_request_headers n={num_headers} eos={end_of_stream}"
        ));
        Action::Continue
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        record(&format!(
            "lifecycle on_request_body size={body_size} eos={end_of_stream}"
        ));
        Action::Continue
    }

    fn on_http_request_trailers(&mut self, num_trailers: usize) -> Action {
        record(&format!("lifecycle on_request_trailers n={num_trailers}"));
        Action::Continue
    }

    fn on_http_response_headers(&mut self, num_headers: usize, end_of_stream: bool) -> Action {
        record(&format!(
            "lifecycle on_response_headers n={num_headers} eos={end_of_stream}"
        ));
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        record(&format!(
            "lifecycle on_response_body size={body_size} eos={end_of_stream}"
        ));
        Action::Continue
    }

    fn on_http_response_trailers(&mut self, num_trailers: usize) -> Action {
        record(&format!("lifecycle on_response_trailers n={num_trailers}"));
        Action::Continue
    }

    fn on_log(&mut self) {
        record("lifecycle on_log");
    }
}

impl Drop for Lifecycle {
    fn drop(&mut self) {
        record("lifecycle on_delete");
    }
}
