//! The `env` imports that are not part of the Proxy-Wasm ABI but that toolchains add to
//! every module they build (reference §14.1): emscripten's `emscripten_notify_memory_growth`
//! and `pthread_equal` (C++ SDK), and AssemblyScript's default `abort`.
//!
//! An unsatisfied import fails instantiation, so a host that runs these filters must link
//! them even though they have nothing to do with proxying.

use wasmbridge_abi::LogLevel;
use wasmtime::Caller;

use super::Registrar;
use super::logging::emit;
use crate::context::HostState;

/// Longest text decoded from an AssemblyScript string, in UTF-16 code units; a longer
/// message is cut and marked with `…`, so a corrupt length cannot flood the log.
const MAX_ABORT_TEXT_UNITS: usize = 1024;

pub(super) fn add_to_linker(reg: &mut Registrar<'_>) -> wasmtime::Result<()> {
    reg.env(
        "emscripten_notify_memory_growth",
        emscripten_notify_memory_growth,
    )?;
    reg.env("pthread_equal", pthread_equal)?;
    reg.env("abort", abort)?;
    Ok(())
}

/// `emscripten_notify_memory_growth(memory_index)`: a no-op. Emscripten's allocator calls it
/// after `memory.grow`; the host looks guest memory up afresh on every access, so growth
/// needs no notice.
fn emscripten_notify_memory_growth(_: Caller<'_, HostState>, _memory_index: i32) {}

/// `pthread_equal(left, right)`: 1 when the two thread ids are equal, else 0.
fn pthread_equal(_: Caller<'_, HostState>, left: i32, right: i32) -> i32 {
    i32::from(left == right)
}

/// `abort(message, file_name, line, column)`: AssemblyScript's default abort, called on a
/// failed assertion or an unreachable path. Logs an error naming the plugin, the message and
/// the source position, then traps: the callback fails and the plugin's failure policy
/// applies to the stream. Envoy does not provide it (such a module fails to load there).
fn abort(
    caller: Caller<'_, HostState>,
    message: i32,
    file_name: i32,
    line: i32,
    column: i32,
) -> wasmtime::Result<()> {
    let memory = caller.data().memory.map(|m| m.data(&caller)).unwrap_or(&[]);
    let text = format!(
        "abort: {} at {}:{}:{}",
        as_string(memory, message as u32),
        as_string(memory, file_name as u32),
        line as u32,
        column as u32
    );
    emit(caller.data(), LogLevel::Error, &text);
    Err(wasmtime::Error::msg(text))
}

/// Decodes an AssemblyScript string at `ptr`: UTF-16LE code units whose byte length is the
/// `u32` just before them (the `rtSize` field of the object header). Pointer 0 is AS's
/// `null`. A pointer or length outside `memory` gives a placeholder, never a panic; invalid
/// UTF-16 becomes U+FFFD.
fn as_string(memory: &[u8], ptr: u32) -> String {
    if ptr == 0 {
        return "null".to_owned();
    }
    let unreadable = || format!("<unreadable string at {ptr:#x}>");
    let start = ptr as usize;
    let Some(size_at) = start.checked_sub(4) else {
        return unreadable();
    };
    let Some(size) = memory.get(size_at..start) else {
        return unreadable();
    };
    let byte_len = u32::from_le_bytes([size[0], size[1], size[2], size[3]]) as usize;
    if start
        .checked_add(byte_len)
        .is_none_or(|end| end > memory.len())
    {
        return unreadable();
    }
    let units = byte_len / 2;
    let shown = units.min(MAX_ABORT_TEXT_UNITS);
    let bytes = &memory[start..start + shown * 2];
    let mut text: String = char::decode_utf16(
        bytes
            .chunks_exact(2)
            .map(|pair| u16::from_le_bytes([pair[0], pair[1]])),
    )
    .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
    .collect();
    if shown < units {
        text.push('…');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Memory holding an AS string `text` at offset 16 (its size at 12).
    fn memory_with(text: &str, extra: usize) -> Vec<u8> {
        let units: Vec<u16> = text.encode_utf16().collect();
        let mut mem = vec![0u8; 16];
        mem[12..16].copy_from_slice(&((units.len() * 2) as u32).to_le_bytes());
        for u in units {
            mem.extend_from_slice(&u.to_le_bytes());
        }
        mem.resize(mem.len() + extra, 0);
        mem
    }

    #[test]
    fn strings_decode_from_utf16_with_their_size_before_them() {
        let mem = memory_with("boom é ☃ 𝄞", 8);
        assert_eq!(as_string(&mem, 16), "boom é ☃ 𝄞");
        assert_eq!(as_string(&mem, 0), "null");
    }

    #[test]
    fn bad_pointers_and_sizes_give_a_placeholder() {
        let mem = memory_with("abc", 0);
        // Size field before the start of memory, pointer past the end, size past the end.
        assert_eq!(as_string(&mem, 2), "<unreadable string at 0x2>");
        assert_eq!(
            as_string(&mem, u32::MAX),
            "<unreadable string at 0xffffffff>"
        );
        let mut bad = mem.clone();
        bad[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(as_string(&bad, 16), "<unreadable string at 0x10>");
    }

    #[test]
    fn odd_sizes_lone_surrogates_and_long_texts_are_tolerated() {
        let mut mem = memory_with("ab", 1);
        mem[12..16].copy_from_slice(&5u32.to_le_bytes());
        assert_eq!(as_string(&mem, 16), "ab", "a trailing odd byte is dropped");
        let mut lone = vec![0u8; 12];
        lone.extend_from_slice(&2u32.to_le_bytes());
        lone.extend_from_slice(&0xD800u16.to_le_bytes());
        assert_eq!(as_string(&lone, 16), "\u{FFFD}");
        let long = "x".repeat(MAX_ABORT_TEXT_UNITS + 10);
        let text = as_string(&memory_with(&long, 0), 16);
        assert_eq!(text.chars().count(), MAX_ABORT_TEXT_UNITS + 1);
        assert!(text.ends_with('…'), "{text}");
    }
}
