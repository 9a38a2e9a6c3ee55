//! Logging and time: `proxy_log`, `proxy_get_log_level`, `proxy_get_current_time_nanoseconds`.
//!
//! Guest log lines go to `tracing` under the target `wasm`, with the plugin name, root id
//! and context id as fields, so operators filter them like any other log. A line longer
//! than the plugin's `limits.log_line` is cut at a character boundary and ends with a
//! marker saying how many bytes were cut.

use std::time::{SystemTime, UNIX_EPOCH};

use wasmbridge_abi::LogLevel;
use wasmtime::Caller;

use super::{HResult, Registrar, finish, read_prefix, status, write_u32, write_u64};
use crate::context::HostState;
use crate::limits::Cap;

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

/// Emits a guest log line of `total` bytes, of which `raw` holds at least the first
/// `limits.log_line` + 1: whole when it fits the cap, else cut at the last UTF-8 character
/// boundary within the cap, with `…[<n> bytes cut]` after it (and the cut counted). Bytes
/// that are not UTF-8 are replaced, as before.
pub(crate) fn emit_line(state: &HostState, level: LogLevel, raw: &[u8], total: usize) {
    let cap = usize::try_from(state.plugin.limits.log_line_bytes).unwrap_or(usize::MAX);
    if total <= cap {
        emit(state, level, &String::from_utf8_lossy(raw));
        return;
    }
    let cut = char_floor(raw, cap.min(raw.len()));
    let kept = String::from_utf8_lossy(&raw[..cut]);
    emit(state, level, &format!("{kept}…[{} bytes cut]", total - cut));
    state.plugin.cap_reached(
        Cap::LogLine,
        state.call.effective_context_id,
        state.call.callback,
        format_args!("a log line of {total} bytes was cut after {cut} bytes"),
    );
}

/// The largest index at most `at` that does not split a UTF-8 character of `raw` (one
/// that begins a character, or `at` itself when nothing there continues one). Looks back
/// at most three bytes: a longer run of continuation bytes is not UTF-8 anyway.
fn char_floor(raw: &[u8], at: usize) -> usize {
    let floor = at.saturating_sub(3);
    let mut cut = at;
    while cut > floor && raw.get(cut).is_some_and(|b| b & 0xc0 == 0x80) {
        cut -= 1;
    }
    cut
}

/// `proxy_log(level, message_ptr, message_size)` — all versions. OK; BAD_ARGUMENT for a
/// level above CRITICAL; INVALID_MEMORY_ACCESS for a bad message range. A message longer
/// than `limits.log_line` is cut (see [`emit_line`]); only what is logged is copied out of
/// guest memory.
fn log(caller: Caller<'_, HostState>, level: i32, ptr: i32, len: i32) -> wasmtime::Result<i32> {
    status(|| -> HResult {
        let level = LogLevel::try_from(level as u32)?;
        let state = caller.data();
        let cap = usize::try_from(state.plugin.limits.log_line_bytes).unwrap_or(usize::MAX);
        let message = read_prefix(&caller, ptr, len, cap.saturating_add(1))?;
        emit_line(caller.data(), level, &message, len as u32 as usize);
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

#[cfg(test)]
mod tests {
    use super::char_floor;

    #[test]
    fn cuts_fall_on_character_boundaries() {
        let text = "aé€😀b".as_bytes(); // 1 + 2 + 3 + 4 + 1 bytes
        let cuts: Vec<usize> = (0..=text.len()).map(|at| char_floor(text, at)).collect();
        assert_eq!(cuts, [0, 1, 1, 3, 3, 3, 6, 6, 6, 6, 10, 11]);
        for cut in cuts {
            assert!(std::str::from_utf8(&text[..cut]).is_ok(), "{cut}");
        }
        // Not UTF-8: at most three bytes back.
        assert_eq!(char_floor(&[b'x', 0x80, 0x80, 0x80, 0x80, 0x80], 5), 2);
    }
}
