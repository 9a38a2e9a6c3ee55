//! `pause`: probe filter for pausing and resuming HTTP streams.
//!
//! The plugin configuration is ignored. The request header `x-pause` (or `x-release`) picks
//! what `on_http_request_headers` does:
//!
//! | request header    | action                                                                 | returns  |
//! |-------------------|------------------------------------------------------------------------|----------|
//! | `x-pause: self`   | `resume_http_request()` from inside the callback, adds request header `x-pause-result: resumed-self` | Pause |
//! | `x-pause: hold`   | remembers this context id in the root, adds request header `x-pause-result: resumed-by-other`; stays paused until a release | Pause |
//! | `x-release: 1`    | makes the held context the effective context and resumes it; the response gets `x-released: <id>`, `none` when nothing is held (or the held stream has ended), `failed` when a hostcall refuses | Continue |
//! | `x-pause: reply`  | `send_http_response(202, x-paused-reply: 1, "replied while paused\n")` | Pause |
//! | anything else     | nothing                                                                | Continue |
//!
//! Every response gets `x-pause-eos: true|false` (the `end_of_stream` flag of the request
//! headers callback, `unknown` if it did not run) and `x-pause-body-calls: <n>` (how many
//! `on_http_request_body` callbacks this stream saw).

use std::cell::Cell;
use std::rc::Rc;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};

/// Root state shared with every stream: the context id of the request held by `x-pause: hold`.
type Held = Rc<Cell<Option<u32>>>;

struct PauseRoot {
    held: Held,
}

struct Pause {
    context_id: u32,
    held: Held,
    request_eos: Option<bool>,
    request_body_calls: u32,
    /// Value of the `x-released` response header, set by an `x-release` request.
    released: Option<String>,
}

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Debug);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> {
        Box::new(PauseRoot { held: Held::default() })
    });
}}

impl Pause {
    /// Resumes the held stream, if any, and returns the `x-released` value. Leaves the
    /// effective context on the held stream: no further hostcall of this callback may
    /// target this stream.
    fn release_held(&self) -> String {
        let Some(id) = self.held.take() else {
            return "none".to_owned();
        };
        if let Err(status) = hostcalls::set_effective_context(id) {
            log::warn!(
                "pause[{}]: set_effective_context({id}) failed: {status:?}",
                self.context_id
            );
            return "failed".to_owned();
        }
        if let Err(status) = hostcalls::resume_http_request() {
            log::warn!(
                "pause[{}]: resume_http_request for {id} failed: {status:?}",
                self.context_id
            );
            return "failed".to_owned();
        }
        log::debug!("pause[{}]: released {id}", self.context_id);
        id.to_string()
    }
}

impl Context for PauseRoot {}

impl RootContext for PauseRoot {
    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Pause {
            context_id,
            held: Rc::clone(&self.held),
            request_eos: None,
            request_body_calls: 0,
            released: None,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

impl Context for Pause {
    fn on_done(&mut self) -> bool {
        // A held stream that ends (client gone) can no longer be released.
        if self.held.get() == Some(self.context_id) {
            self.held.set(None);
        }
        true
    }
}

impl HttpContext for Pause {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        self.request_eos = Some(end_of_stream);
        match self.get_http_request_header("x-pause").as_deref() {
            Some("self") => {
                // The host defers the resume until this callback has returned Pause.
                self.resume_http_request();
                self.add_http_request_header("x-pause-result", "resumed-self");
                return Action::Pause;
            }
            Some("hold") => {
                if let Some(previous) = self.held.replace(Some(self.context_id)) {
                    log::warn!(
                        "pause[{}]: replaces held {previous}, which stays paused",
                        self.context_id
                    );
                }
                self.add_http_request_header("x-pause-result", "resumed-by-other");
                return Action::Pause;
            }
            Some("reply") => {
                self.send_http_response(
                    202,
                    vec![("x-paused-reply", "1")],
                    Some(b"replied while paused\n"),
                );
                return Action::Pause;
            }
            _ => {}
        }
        if self.get_http_request_header("x-release").as_deref() == Some("1") {
            self.released = Some(self.release_held());
        }
        Action::Continue
    }

    fn on_http_request_body(&mut self, _body_size: usize, _end_of_stream: bool) -> Action {
        self.request_body_calls += 1;
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let eos = match self.request_eos {
            Some(true) => "true",
            Some(false) => "false",
            None => "unknown",
        };
        self.add_http_response_header("x-pause-eos", eos);
        self.add_http_response_header("x-pause-body-calls", &self.request_body_calls.to_string());
        if let Some(released) = &self.released {
            self.add_http_response_header("x-released", released);
        }
        Action::Continue
    }
}
