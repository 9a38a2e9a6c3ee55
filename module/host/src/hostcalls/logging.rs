//! Logging and time: `proxy_log`, `proxy_get_log_level`, `proxy_get_current_time_nanoseconds`.
//!
//! Guest log lines go to `tracing` under the target `wasm`, with the plugin name, root id
//! and context id as fields, so operators filter them like any other log.

use std::time::{SystemTime, UNIX_EPOCH};

use wasmbridge_abi::LogLevel;
use wasmtime::Caller;

use super::{HResult, Registrar, finish, read_bytes, status, write_u32, write_u64};
use crate::context::HostState;

pub(super) fn add_to_linker(reg: &mut Registrar<'_>) -> wasmtime::Result<()> {
    reg.env("proxy_log", log)?;
    reg.env("proxy_get_log_level", get_log_level)?;
    reg.env(
        "proxy_get_current_time_nanoseconds",
        get_current_time_nanoseconds,
    )?;
    Ok(())
}

/// Emits a guest log line at a Proxy-Wasm level.
pub(crate) fn emit(state: &HostState, level: LogLevel, message: &str) {
    let plugin = &state.plugin.name;
    let root_id = &state.plugin.root_id;
    let context_id = state.call.effective_context_id;
    match level {
        LogLevel::Trace => {
            tracing::trace!(target: "wasm", plugin = %plugin, root_id = %root_id, context_id, "{message}")
        }
        LogLevel::Debug => {
            tracing::debug!(target: "wasm", plugin = %plugin, root_id = %root_id, context_id, "{message}")
        }
        LogLevel::Info => {
            tracing::info!(target: "wasm", plugin = %plugin, root_id = %root_id, context_id, "{message}")
        }
        LogLevel::Warn => {
            tracing::warn!(target: "wasm", plugin = %plugin, root_id = %root_id, context_id, "{message}")
        }
        LogLevel::Error | LogLevel::Critical => {
            tracing::error!(target: "wasm", plugin = %plugin, root_id = %root_id, context_id, "{message}")
        }
    }
}

/// `proxy_log(level, message_ptr, message_size)` — all versions. OK; BAD_ARGUMENT for a
/// level above CRITICAL; INVALID_MEMORY_ACCESS for a bad message range.
fn log(caller: Caller<'_, HostState>, level: i32, ptr: i32, len: i32) -> wasmtime::Result<i32> {
    status(|| -> HResult {
        let level = LogLevel::try_from(level as u32)?;
        let message = read_bytes(&caller, ptr, len)?;
        emit(caller.data(), level, &String::from_utf8_lossy(&message));
        Ok(())
    })
}

/// The most verbose Proxy-Wasm level enabled for guest logs.
pub(crate) fn current_level() -> LogLevel {
    use tracing::Level;
    if tracing::enabled!(target: "wasm", Level::TRACE) {
        LogLevel::Trace
    } else if tracing::enabled!(target: "wasm", Level::DEBUG) {
        LogLevel::Debug
    } else if tracing::enabled!(target: "wasm", Level::INFO) {
        LogLevel::Info
    } else if tracing::enabled!(target: "wasm", Level::WARN) {
        LogLevel::Warn
    } else {
        // Never "off" (6): the SDKs do not know it. Errors are always logged.
        LogLevel::Error
    }
}

/// `proxy_get_log_level(ret_level_ptr)` — 0.2.1. OK.
fn get_log_level(mut caller: Caller<'_, HostState>, ret: i32) -> wasmtime::Result<i32> {
    finish(write_u32(&mut caller, ret, current_level().code()))
}

/// `proxy_get_current_time_nanoseconds(ret_u64_ptr)` — all versions. Wall clock. OK.
fn get_current_time_nanoseconds(
    mut caller: Caller<'_, HostState>,
    ret: i32,
) -> wasmtime::Result<i32> {
    finish(write_u64(&mut caller, ret, wall_clock_nanos()))
}

/// Nanoseconds since the Unix epoch by the wall clock (0 if the clock is before it).
pub(crate) fn wall_clock_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}
