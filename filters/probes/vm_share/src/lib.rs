//! `vm_share`: probe filter that shows which VM and which root context a stream runs in,
//! to tell VMs shared between plugins (same `vm_id` and module) from VMs of their own.
//!
//! Counters are globals of the module instance, so every root and stream context of one
//! VM sees the same ones, and a fresh VM starts them again from zero.
//!
//! - Root context: `on_configure` keeps the plugin configuration (as text) and counts the
//!   root contexts configured in this VM.
//! - Stream context: counts the streams created in this VM. `on_http_response_headers` adds
//!   `x-vm-share-<config>: roots=<roots> streams=<streams> root=<root context id>`, where
//!   `<config>` is its root's configuration, `<roots>` the roots configured in this VM and
//!   `<streams>` the number of this stream among those created in this VM.
//! - A request header `x-vm-share-trap` equal to the root's configuration makes
//!   `on_http_request_headers` panic (a trap), which kills the VM.

use std::cell::Cell;
use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};

thread_local! {
    /// Root contexts configured in this VM.
    static ROOTS: Cell<u32> = const { Cell::new(0) };
    /// Stream contexts created in this VM.
    static STREAMS: Cell<u32> = const { Cell::new(0) };
}

struct ShareRoot {
    id: u32,
    config: Rc<str>,
}

struct Share {
    root: u32,
    config: Rc<str>,
    number: u32,
}

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|id| -> Box<dyn RootContext> {
        Box::new(ShareRoot { id, config: Rc::from("") })
    });
}}

impl Context for ShareRoot {}

impl RootContext for ShareRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        let config = self.get_plugin_configuration().unwrap_or_default();
        self.config = Rc::from(String::from_utf8_lossy(&config).as_ref());
        ROOTS.with(|r| r.set(r.get() + 1));
        true
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        let number = STREAMS.with(|s| {
            s.set(s.get() + 1);
            s.get()
        });
        Some(Box::new(Share {
            root: self.id,
            config: self.config.clone(),
            number,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

impl Context for Share {}

impl HttpContext for Share {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        if self.get_http_request_header("x-vm-share-trap").as_deref() == Some(&*self.config) {
            panic!("vm_share: trap asked for root {}", self.config);
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _: usize, _: bool) -> Action {
        let roots = ROOTS.with(Cell::get);
        self.add_http_response_header(
            &format!("x-vm-share-{}", self.config),
            &format!("roots={roots} streams={} root={}", self.number, self.root),
        );
        Action::Continue
    }
}
