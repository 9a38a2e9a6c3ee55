//! Resource limits of a plugin's VMs: linear memory per VM, and the CPU time one callback
//! may use. The runtime's ticker advances the engine's epoch every [`EPOCH_TICK`]; a
//! callback still running at a tick reads its thread's CPU clock ([`CpuWatch`]) and is
//! stopped once it has used its budget, so time the thread spent descheduled on a busy
//! machine does not count.
//!
//! Two limits are settings of the engine rather than of a store: fuel (wasmtime counts
//! the instructions a call runs and stops it when its budget is spent; off by default) and
//! the wasm stack size. A plugin that sets either needs a runtime whose engine has them
//! (`Runtime::for_settings`).
//!
//! Beside them, caps on what a plugin makes the host hold for it ([`Cap`]): buffered body
//! bytes, header map sizes, callouts in flight per context and log line length. Reaching
//! one is not a failure of the VM: the hostcall or the stream gets a defined answer, and
//! the plugin's [`CapHits`] counts and logs it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use std::time::Instant;

/// How often the runtime's ticker advances the epoch: the resolution of CPU deadlines.
pub const EPOCH_TICK: Duration = Duration::from_millis(1);

/// The limits of one plugin's VMs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Linear memory per VM, in bytes: `memory.grow` beyond it returns -1, and a module
    /// whose initial memory is larger does not start.
    pub memory_bytes: u64,
    /// The time one callback may run before it is stopped (a trap: the replica is
    /// poisoned and the failure policy applies).
    pub cpu: Duration,
    /// The same for each call of start-up: the module's start code, the root context's
    /// creation, `proxy_on_vm_start` and `proxy_on_configure`.
    pub start_cpu: Duration,
    /// Per-callback overrides by full callback name (`proxy_on_request_headers`); they win
    /// over `cpu` and `start_cpu`.
    pub cpu_by_callback: Vec<(String, Duration)>,
    /// Body bytes the host holds for the plugin while it buffers (a PAUSE from a body
    /// callback), per direction: beyond it a request gets 413 and a response 503 (or is
    /// aborted once its headers went out), and `proxy_set_buffer_bytes` may not grow a
    /// body past it.
    pub body_bytes: u64,
    /// The summed length of names and values of one header map (Envoy's byte size) that
    /// the header-map hostcalls may not grow it past.
    pub header_bytes: u64,
    /// The entries of one header map (pseudo-headers included) that the header-map
    /// hostcalls may not grow it past.
    pub header_pairs: u32,
    /// Callouts (`proxy_http_call`, `proxy_grpc_call`, `proxy_grpc_stream`) one context may
    /// have in flight; one more is refused with INTERNAL_FAILURE.
    pub callouts: u32,
    /// The bytes of one guest log line (`proxy_log`, or a line on stdout/stderr) that are
    /// logged; the rest is cut and the cut is marked.
    pub log_line_bytes: u64,
    /// Fuel per call, start-up calls included: wasmtime's count of the wasm instructions a
    /// call may run (about one unit per instruction) before it traps, which poisons the
    /// replica like a CPU deadline. Unlike the CPU time it is deterministic: the same call
    /// stops at the same place on any machine. `None` (the default): not counted, and the
    /// plugin needs no engine of its own.
    pub fuel: Option<u64>,
    /// Per-callback fuel overrides by full callback name (`proxy_on_configure`); they win
    /// over `fuel`, and turn fuel on for the plugin even when `fuel` is `None` (the other
    /// calls are then not limited).
    pub fuel_by_callback: Vec<(String, u64)>,
    /// The wasm stack of a call, in bytes (wasmtime's `max_wasm_stack`): a call nesting
    /// deeper traps as a stack overflow. From [`Limits::MIN_STACK_BYTES`] to
    /// [`Limits::MAX_STACK_BYTES`]; a plugin with another size than
    /// [`Limits::DEFAULT_STACK_BYTES`] needs an engine of its own.
    pub stack_bytes: u64,
}

impl Default for Limits {
    /// Generous: 256 MiB per VM, 100 ms per callback, 1 s for start-up; Envoy's defaults
    /// for bodies (1 MiB) and header maps (60 KiB, 100 entries); 16 callouts in flight per
    /// context and 4 KiB per log line. They stop a runaway plugin without constraining a
    /// sane one.
    fn default() -> Self {
        Limits {
            memory_bytes: 256 << 20,
            cpu: Duration::from_millis(100),
            start_cpu: Duration::from_secs(1),
            cpu_by_callback: Vec::new(),
            body_bytes: 1 << 20,
            header_bytes: 60 << 10,
            header_pairs: 100,
            callouts: 16,
            log_line_bytes: 4 << 10,
            fuel: None,
            fuel_by_callback: Vec::new(),
            stack_bytes: Limits::DEFAULT_STACK_BYTES,
        }
    }
}

impl Limits {
    /// wasmtime's default wasm stack, 512 KiB.
    pub const DEFAULT_STACK_BYTES: u64 = 512 << 10;
    /// The smallest wasm stack a plugin may have, 32 KiB: below it the host's own frames
    /// (a hostcall that calls the guest's allocator counts against the limit) leave a
    /// filter hardly any room.
    pub const MIN_STACK_BYTES: u64 = 32 << 10;
    /// The largest wasm stack a plugin may have, 1 MiB: guest calls run on the worker
    /// threads, whose native stacks are 2 MiB (tokio's and Rust's default), and the proxy's
    /// and the hostcalls' frames need the rest. A wasm stack that outgrew its thread's
    /// stack would crash the process instead of trapping.
    pub const MAX_STACK_BYTES: u64 = 1 << 20;

    /// For untrusted plugins: 16 MiB per VM, 1 ms per callback, 100 ms for start-up,
    /// 64 KiB of buffered body, header maps of 32 KiB and 100 entries, 2 callouts in
    /// flight per context and 1 KiB per log line. No fuel and the default wasm stack, as in
    /// the default profile: the CPU deadline bounds a callback already, and both would
    /// need an engine of its own.
    pub fn strict() -> Self {
        Limits {
            memory_bytes: 16 << 20,
            cpu: Duration::from_millis(1),
            start_cpu: Duration::from_millis(100),
            cpu_by_callback: Vec::new(),
            body_bytes: 64 << 10,
            header_bytes: 32 << 10,
            header_pairs: 100,
            callouts: 2,
            log_line_bytes: 1 << 10,
            fuel: None,
            fuel_by_callback: Vec::new(),
            stack_bytes: Limits::DEFAULT_STACK_BYTES,
        }
    }

    /// The value of `cap`, as a number for messages.
    pub(crate) fn cap(&self, cap: Cap) -> u64 {
        match cap {
            Cap::Body => self.body_bytes,
            Cap::HeaderBytes => self.header_bytes,
            Cap::HeaderPairs => u64::from(self.header_pairs),
            Cap::Callouts => u64::from(self.callouts),
            Cap::LogLine => self.log_line_bytes,
        }
    }

    /// The CPU time one call of `callback` may use, during the VM's start-up or after.
    pub fn cpu_for(&self, callback: &str, starting: bool) -> Duration {
        match self.cpu_by_callback.iter().find(|(n, _)| n == callback) {
            Some((_, d)) => *d,
            None if starting => self.start_cpu,
            None => self.cpu,
        }
    }

    /// True when the plugin's calls are fuelled (`fuel` or a per-callback override set).
    pub fn uses_fuel(&self) -> bool {
        self.fuel.is_some() || !self.fuel_by_callback.is_empty()
    }

    /// The fuel one call of `callback` may use, start-up included (`None`: not limited).
    pub fn fuel_for(&self, callback: &str) -> Option<u64> {
        match self.fuel_by_callback.iter().find(|(n, _)| n == callback) {
            Some((_, fuel)) => Some(*fuel),
            None => self.fuel,
        }
    }
}

/// A cap on what a plugin makes the host hold; the `limit` label of
/// `wasmbridge_plugin_limit_exceeded_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cap {
    /// Buffered body bytes (`limits.body`).
    Body,
    /// A header map's byte size (`limits.headers.bytes`).
    HeaderBytes,
    /// A header map's entries (`limits.headers.pairs`).
    HeaderPairs,
    /// Callouts in flight per context (`limits.callouts`).
    Callouts,
    /// One log line (`limits.log_line`).
    LogLine,
}

impl Cap {
    const ALL: [Cap; 5] = [
        Cap::Body,
        Cap::HeaderBytes,
        Cap::HeaderPairs,
        Cap::Callouts,
        Cap::LogLine,
    ];

    /// The `limit` label.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Cap::Body => "body",
            Cap::HeaderBytes => "header_bytes",
            Cap::HeaderPairs => "header_pairs",
            Cap::Callouts => "callouts",
            Cap::LogLine => "log_line",
        }
    }

    /// The configuration key, for messages.
    pub(crate) fn key(self) -> &'static str {
        match self {
            Cap::Body => "plugins[].limits.body",
            Cap::HeaderBytes => "plugins[].limits.headers.bytes",
            Cap::HeaderPairs => "plugins[].limits.headers.pairs",
            Cap::Callouts => "plugins[].limits.callouts",
            Cap::LogLine => "plugins[].limits.log_line",
        }
    }

    fn index(self) -> usize {
        Cap::ALL.iter().position(|c| *c == self).unwrap_or(0)
    }
}

/// Which caps a plugin reached already, shared by its replicas: the first hit of each is
/// logged at warn, the others at debug, so that a plugin that keeps hitting one cannot
/// flood the log (the metric counts them all).
#[derive(Debug, Default)]
pub(crate) struct CapHits {
    warned: [AtomicBool; Cap::ALL.len()],
}

impl CapHits {
    /// True the first time `cap` is reached.
    pub(crate) fn first(&self, cap: Cap) -> bool {
        !self.warned[cap.index()].swap(true, Ordering::Relaxed)
    }
}

/// The CPU budget of the guest call under way, checked at each epoch tick it runs into.
/// The call's start costs nothing beyond an `Instant` (most calls end before the next
/// tick); the thread's CPU clock is read from the first tick on. CPU used before that
/// tick is taken as the wall time since the start, at most one tick (the guest notices a
/// tick at its next loop or call, so it cannot have run long past it unseen).
#[derive(Debug)]
pub(crate) struct CpuWatch {
    budget: Duration,
    started: Instant,
    /// (thread CPU time at the first tick, CPU used before it).
    first_tick: Option<(Duration, Duration)>,
}

impl CpuWatch {
    /// A budget for a call that starts at `started`.
    pub(crate) fn new(budget: Duration, started: Instant) -> CpuWatch {
        CpuWatch {
            budget,
            started,
            first_tick: None,
        }
    }

    /// At a tick: whether the call may go on.
    pub(crate) fn may_continue(&mut self) -> bool {
        let now = thread_cpu_time();
        let used = match self.first_tick {
            None => {
                let before = self.started.elapsed().min(EPOCH_TICK);
                self.first_tick = Some((now, before));
                before
            }
            Some((at_first, before)) => before + now.saturating_sub(at_first),
        };
        used < self.budget
    }
}

/// The CPU time the calling thread has used.
#[cfg(unix)]
fn thread_cpu_time() -> Duration {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID)
        .map(Duration::from)
        .unwrap_or_default()
}

/// Without a thread CPU clock, wall time stands in (a call then ends a tick late).
#[cfg(not(unix))]
fn thread_cpu_time() -> Duration {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed()
}

/// Caps a VM's linear memory and remembers a refused growth, so that the trap that
/// usually follows is reported as running out of memory.
#[derive(Debug)]
pub(crate) struct MemoryLimiter {
    pub max_bytes: usize,
    pub refused: bool,
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = desired <= self.max_bytes;
        if !allowed {
            self.refused = true;
        }
        Ok(allowed)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        _desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(true)
    }
}

/// Why a guest call failed, for logs and the poisoning metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FailureReason {
    /// The CPU deadline passed.
    Deadline,
    /// A memory growth was refused at the cap (and the guest then trapped).
    Memory,
    /// The wasm stack overflowed.
    StackOverflow,
    /// The call used up its fuel.
    Fuel,
    /// Any other trap (a panic, `unreachable`, a bad memory access, `proc_exit`).
    Trap,
}

impl FailureReason {
    pub(crate) fn of(error: &wasmtime::Error, memory_refused: bool) -> FailureReason {
        match error.downcast_ref::<wasmtime::Trap>() {
            Some(wasmtime::Trap::Interrupt) => FailureReason::Deadline,
            Some(wasmtime::Trap::StackOverflow) => FailureReason::StackOverflow,
            Some(wasmtime::Trap::OutOfFuel) => FailureReason::Fuel,
            _ if memory_refused => FailureReason::Memory,
            _ => FailureReason::Trap,
        }
    }

    /// Why the VM failed, in words, with the limit it reached.
    pub(crate) fn describe(self, limits: &Limits) -> String {
        match self {
            FailureReason::Deadline => format!(
                "a callback ran past its CPU deadline ({:?}, or {:?} for start-up; plugins[].limits.cpu)",
                limits.cpu, limits.start_cpu
            ),
            FailureReason::Memory => format!(
                "it trapped after its memory reached the cap of {} bytes (plugins[].limits.memory)",
                limits.memory_bytes
            ),
            FailureReason::StackOverflow => format!(
                "its wasm stack overflowed ({} bytes; plugins[].limits.stack)",
                limits.stack_bytes
            ),
            FailureReason::Fuel => match limits.fuel {
                Some(fuel) => format!(
                    "a callback used up its fuel ({fuel} per call unless overridden; plugins[].limits.fuel)"
                ),
                None => {
                    "a callback used up its fuel (plugins[].limits.callbacks.<name>.fuel)".into()
                }
            },
            FailureReason::Trap => "it trapped".into(),
        }
    }

    /// The `reason` label.
    pub(crate) fn label(self) -> &'static str {
        match self {
            FailureReason::Deadline => "deadline",
            FailureReason::Memory => "memory",
            FailureReason::StackOverflow => "stack_overflow",
            FailureReason::Fuel => "fuel",
            FailureReason::Trap => "trap",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_by_callback() {
        let mut limits = Limits::strict();
        let ms = Duration::from_millis;
        assert_eq!(limits.cpu_for("proxy_on_request_headers", false), ms(1));
        assert_eq!(limits.cpu_for("proxy_on_configure", true), ms(100));
        assert_eq!(limits.cpu_for("proxy_on_context_create", true), ms(100));
        assert_eq!(limits.cpu_for("proxy_on_context_create", false), ms(1));
        limits.cpu_by_callback.push(("proxy_on_log".into(), ms(7)));
        limits
            .cpu_by_callback
            .push(("proxy_on_configure".into(), ms(300)));
        assert_eq!(limits.cpu_for("proxy_on_log", false), ms(7));
        assert_eq!(limits.cpu_for("proxy_on_configure", true), ms(300));
        assert_eq!(limits.cpu_for("proxy_on_tick", false), ms(1));
    }

    #[test]
    fn fuel_by_callback() {
        let mut limits = Limits::default();
        assert!(!limits.uses_fuel());
        assert_eq!(limits.fuel_for("proxy_on_request_headers"), None);
        limits
            .fuel_by_callback
            .push(("proxy_on_configure".into(), 500));
        assert!(limits.uses_fuel(), "an override alone turns fuel on");
        assert_eq!(limits.fuel_for("proxy_on_configure"), Some(500));
        assert_eq!(limits.fuel_for("proxy_on_request_headers"), None);
        limits.fuel = Some(100);
        assert_eq!(limits.fuel_for("proxy_on_request_headers"), Some(100));
        assert_eq!(limits.fuel_for("_start"), Some(100), "start-up too");
        assert_eq!(limits.fuel_for("proxy_on_configure"), Some(500));
    }

    #[test]
    fn a_watch_counts_cpu_not_sleep() {
        let mut watch = CpuWatch::new(Duration::from_millis(20), Instant::now());
        assert!(watch.may_continue(), "nothing used yet");
        // Sleeping uses no CPU: the budget is still there afterwards.
        std::thread::sleep(Duration::from_millis(30));
        assert!(watch.may_continue(), "a sleep is not CPU time");
        // Spinning does (40 ms of this thread's CPU, however long that takes here).
        let spin = thread_cpu_time();
        while thread_cpu_time() < spin + Duration::from_millis(40) {
            std::hint::black_box(spin);
        }
        assert!(!watch.may_continue(), "40 ms of spinning is over 20 ms");
    }
}
