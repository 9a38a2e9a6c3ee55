//! `misbehave`: probe filter that traps in a chosen callback.
//!
//! The plugin configuration is ignored. The request header `x-misbehave` picks the failure:
//!
//! | `x-misbehave`           | effect                                                     |
//! |-------------------------|------------------------------------------------------------|
//! | `trap-request-headers`  | panics (trap) in `on_http_request_headers`                 |
//! | `trap-response-headers` | panics in `on_http_response_headers`                       |
//! | `trap-request-body`     | panics in `on_http_request_body`                           |
//! | `trap-response-body`    | panics in `on_http_response_body`                          |
//! | `abort`                 | executes `unreachable` in `on_http_request_headers`, no panic message |
//! | `loop`                  | spins forever in `on_http_request_headers` (a CPU deadline stops it) |
//! | `memory-bomb`           | allocates 1 MiB blocks in `on_http_request_headers` until an allocation fails, then aborts |
//! | `stack-overflow`        | recurses without end in `on_http_request_headers` |
//! | `recurse-<depth>`       | recurses `depth` calls deep in `on_http_request_headers`, then returns; the response gets `x-misbehave: recursed <depth>` (a stack size that is too small traps) |
//! | absent or other         | nothing; the response gets `x-misbehave: ok`               |
//!
//! Panics are logged at critical level through `proxy_log` by the SDK's panic hook, then the
//! module aborts (`panic = "abort"`), which the host sees as a trap.

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};

/// The failure this stream was asked for, read from the request headers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Mode {
    #[default]
    Behave,
    TrapRequestHeaders,
    TrapResponseHeaders,
    TrapRequestBody,
    TrapResponseBody,
    Abort,
    Loop,
    MemoryBomb,
    StackOverflow,
    Recurse(u64),
}

struct MisbehaveRoot;

struct Misbehave {
    mode: Mode,
}

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Debug);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(MisbehaveRoot) });
}}

impl Mode {
    fn parse(value: Option<&str>) -> Mode {
        match value {
            Some("trap-request-headers") => Mode::TrapRequestHeaders,
            Some("trap-response-headers") => Mode::TrapResponseHeaders,
            Some("trap-request-body") => Mode::TrapRequestBody,
            Some("trap-response-body") => Mode::TrapResponseBody,
            Some("abort") => Mode::Abort,
            Some("loop") => Mode::Loop,
            Some("memory-bomb") => Mode::MemoryBomb,
            Some("stack-overflow") => Mode::StackOverflow,
            Some(other) => match other.strip_prefix("recurse-").map(str::parse) {
                Some(Ok(depth)) => Mode::Recurse(depth),
                _ => Mode::Behave,
            },
            None => Mode::Behave,
        }
    }
}

impl Context for MisbehaveRoot {}

impl RootContext for MisbehaveRoot {
    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Misbehave { mode: Mode::Behave }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

impl Context for Misbehave {}

impl HttpContext for Misbehave {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        self.mode = Mode::parse(self.get_http_request_header("x-misbehave").as_deref());
        match self.mode {
            Mode::TrapRequestHeaders => panic!("misbehave: trap in request headers"),
            Mode::Abort => core::arch::wasm32::unreachable(),
            Mode::Loop => spin(),
            Mode::MemoryBomb => bomb(),
            Mode::StackOverflow => {
                let depth = recurse(std::hint::black_box(1));
                log::info!("misbehave: recursion ended at {depth}");
                Action::Continue
            }
            Mode::Recurse(depth) => {
                let sum = recurse_to(std::hint::black_box(depth));
                log::info!("misbehave: recursed {depth} calls deep (sum {sum})");
                Action::Continue
            }
            _ => Action::Continue,
        }
    }

    fn on_http_request_body(&mut self, _body_size: usize, _end_of_stream: bool) -> Action {
        if self.mode == Mode::TrapRequestBody {
            panic!("misbehave: trap in request body");
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        match self.mode {
            Mode::TrapResponseHeaders => panic!("misbehave: trap in response headers"),
            Mode::Behave => self.add_http_response_header("x-misbehave", "ok"),
            Mode::Recurse(depth) => {
                self.add_http_response_header("x-misbehave", &format!("recursed {depth}"))
            }
            _ => {}
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, _body_size: usize, _end_of_stream: bool) -> Action {
        if self.mode == Mode::TrapResponseBody {
            panic!("misbehave: trap in response body");
        }
        Action::Continue
    }
}

/// Never returns; the loop does observable work so that it is not optimised away.
fn spin() -> ! {
    let mut n: u64 = 0;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
    }
}

/// Keeps 1 MiB blocks (touched, so they are real) until the allocator fails, which aborts.
fn bomb() -> ! {
    let mut kept: Vec<Vec<u8>> = Vec::new();
    loop {
        kept.push(std::hint::black_box(vec![1u8; 1 << 20]));
    }
}

/// Recurses until the wasm stack overflows (small frames, so the engine's stack runs out
/// before the shadow stack in linear memory does).
fn recurse(depth: u64) -> u64 {
    if depth == u64::MAX {
        return 0;
    }
    recurse(std::hint::black_box(depth + 1)).wrapping_add(depth)
}

/// Recurses `depth` calls deep and returns. The result goes through `black_box` before it
/// is added to, so that the compiler cannot turn the recursion into a loop.
fn recurse_to(depth: u64) -> u64 {
    if depth == 0 {
        return 0;
    }
    std::hint::black_box(recurse_to(std::hint::black_box(depth - 1))).wrapping_add(depth)
}
