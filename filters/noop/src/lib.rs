//! `noop`: a filter whose stream context does nothing.
//!
//! It takes no configuration. Every HTTP callback is the Rust SDK's default, which
//! continues, so a request pays only for the plugin being there: a stream context created
//! and deleted, and one host↔guest crossing per callback. The load benchmark
//! (`wasmbridge-load`, case `noop`) measures that cost against no plugin at all.

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{ContextType, LogLevel};

struct NoopRoot;

struct Noop;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(NoopRoot) });
}}

impl Context for NoopRoot {}

impl RootContext for NoopRoot {
    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Noop))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

impl Context for Noop {}

impl HttpContext for Noop {}
