//! WASI preview1, linked under both `wasi_snapshot_preview1` and `wasi_unstable` (old
//! emscripten and AssemblyScript modules use the latter). Every function has the same wasm
//! signature under both names; where the two snapshots differ (`fd_seek`'s `whence`
//! numbering, the `filestat` and `subscription_clock` layouts) the host reads or writes none
//! of the differing fields, so one implementation serves both.
//!
//! A filter gets what SDK start-up code needs and nothing more: stdout and stderr go to the
//! log, clocks and randomness work, the environment holds exactly the variables of the
//! plugin's `environment_variables` (Envoy's `VmConfig.environment_variables`), and there
//! are no arguments, files or sockets. Every other function answers with the errno Envoy's host gives, so start-up
//! code takes its "not available" paths instead of trapping.

use std::sync::OnceLock;
use std::time::Instant;

use wasmbridge_abi::LogLevel;
use wasmbridge_abi::errno::{
    BADF as EBADF, FAULT as EFAULT, INVAL as EINVAL, NOENT as ENOENT, NOSYS as ENOSYS,
    NOTDIR as ENOTDIR, NOTSUP as ENOTSUP, SUCCESS,
};
use wasmtime::Caller;

use super::logging::{emit, emit_line, wall_clock_nanos};
use super::{Registrar, read_bytes, write_at, write_u32, write_u64};
use crate::context::HostState;

/// Largest `random_get` request served in one call.
const MAX_RANDOM: i32 = 64 * 1024;

macro_rules! fixed {
    ($reg:expr, $name:literal, $errno:expr, ($($t:ty),*)) => {
        $reg.wasi($name, |_: Caller<'_, HostState>, $(_: $t),*| -> i32 { $errno })?
    };
}

pub(super) fn add_to_linker(reg: &mut Registrar<'_>) -> wasmtime::Result<()> {
    reg.wasi("fd_write", fd_write)?;
    reg.wasi("fd_fdstat_get", fd_fdstat_get)?;
    reg.wasi("environ_sizes_get", environ_sizes_get)?;
    reg.wasi("environ_get", environ_get)?;
    reg.wasi("args_sizes_get", zero_sizes)?;
    reg.wasi("clock_time_get", clock_time_get)?;
    reg.wasi("clock_res_get", clock_res_get)?;
    reg.wasi("random_get", random_get)?;
    reg.wasi("proc_exit", proc_exit)?;
    reg.wasi("poll_oneoff", poll_oneoff)?;
    reg.wasi("fd_seek", fd_seek)?;
    reg.wasi("fd_close", fd_close)?;
    fixed!(reg, "args_get", SUCCESS, (i32, i32));
    fixed!(reg, "sched_yield", SUCCESS, ());
    fixed!(reg, "fd_read", ENOSYS, (i32, i32, i32, i32));
    fixed!(reg, "fd_fdstat_set_flags", ENOSYS, (i32, i32));
    fixed!(reg, "fd_prestat_get", EBADF, (i32, i32));
    fixed!(reg, "fd_prestat_dir_name", ENOSYS, (i32, i32, i32));
    fixed!(
        reg,
        "path_open",
        ENOENT,
        (i32, i32, i32, i32, i32, i64, i64, i32, i32)
    );
    fixed!(reg, "fd_filestat_get", EBADF, (i32, i32));
    fixed!(reg, "path_filestat_get", ENOTSUP, (i32, i32, i32, i32, i32));
    fixed!(reg, "fd_pread", ENOSYS, (i32, i32, i32, i64, i32));
    fixed!(reg, "fd_pwrite", SUCCESS, (i32, i32, i32, i64, i32));
    fixed!(reg, "fd_readdir", ENOTDIR, (i32, i32, i32, i64, i32));
    fixed!(reg, "fd_renumber", ENOTSUP, (i32, i32));
    fixed!(reg, "fd_advise", SUCCESS, (i32, i64, i64, i32));
    fixed!(reg, "fd_allocate", SUCCESS, (i32, i64, i64));
    fixed!(reg, "fd_datasync", SUCCESS, (i32));
    fixed!(reg, "fd_sync", SUCCESS, (i32));
    fixed!(reg, "fd_tell", SUCCESS, (i32, i32));
    fixed!(reg, "fd_filestat_set_size", SUCCESS, (i32, i64));
    fixed!(reg, "fd_filestat_set_times", SUCCESS, (i32, i64, i64, i32));
    fixed!(reg, "fd_fdstat_set_rights", SUCCESS, (i32, i64, i64));
    fixed!(reg, "path_create_directory", ENOTSUP, (i32, i32, i32));
    fixed!(reg, "path_remove_directory", ENOTSUP, (i32, i32, i32));
    fixed!(reg, "path_unlink_file", ENOTSUP, (i32, i32, i32));
    fixed!(reg, "path_rename", ENOTSUP, (i32, i32, i32, i32, i32, i32));
    fixed!(reg, "path_symlink", ENOTSUP, (i32, i32, i32, i32, i32));
    fixed!(
        reg,
        "path_readlink",
        ENOTSUP,
        (i32, i32, i32, i32, i32, i32)
    );
    fixed!(
        reg,
        "path_link",
        ENOTSUP,
        (i32, i32, i32, i32, i32, i32, i32)
    );
    fixed!(
        reg,
        "path_filestat_set_times",
        ENOTSUP,
        (i32, i32, i32, i32, i64, i64, i32)
    );
    fixed!(reg, "sock_accept", ENOTSUP, (i32, i32, i32));
    fixed!(reg, "sock_recv", ENOTSUP, (i32, i32, i32, i32, i32, i32));
    fixed!(reg, "sock_send", ENOTSUP, (i32, i32, i32, i32, i32));
    fixed!(reg, "sock_shutdown", ENOTSUP, (i32, i32));
    fixed!(reg, "proc_raise", ENOTSUP, (i32));
    Ok(())
}

fn errno_with(body: impl FnOnce() -> Result<(), super::Fault>) -> wasmtime::Result<i32> {
    errno(body())
}

fn errno(result: Result<(), super::Fault>) -> wasmtime::Result<i32> {
    match result {
        Ok(()) => Ok(SUCCESS),
        Err(super::Fault::Trap(e)) => Err(e),
        Err(super::Fault::Status(_)) => Ok(EFAULT),
    }
}

/// `fd_write`: fd 1 goes to the info log, fd 2 to the error log (one trailing newline
/// stripped, cut at `limits.log_line` as `proxy_log` is); any other fd is EBADF.
fn fd_write(
    mut caller: Caller<'_, HostState>,
    fd: i32,
    iovs: i32,
    iovs_len: i32,
    nwritten: i32,
) -> wasmtime::Result<i32> {
    let level = match fd {
        1 => LogLevel::Info,
        2 => LogLevel::Error,
        _ => return Ok(EBADF),
    };
    errno_with(|| {
        let table = read_bytes(&caller, iovs, iovs_len.saturating_mul(8))?;
        let mut text = Vec::new();
        for iov in table.chunks_exact(8) {
            let ptr = u32::from_le_bytes([iov[0], iov[1], iov[2], iov[3]]);
            let len = u32::from_le_bytes([iov[4], iov[5], iov[6], iov[7]]);
            text.extend(read_bytes(&caller, ptr as i32, len as i32)?);
        }
        let total = text.len() as u32;
        let line = text.strip_suffix(b"\n").unwrap_or(&text);
        if !line.is_empty() {
            emit_line(caller.data(), level, line, line.len());
        }
        write_u32(&mut caller, nwritten, total)
    })
}

/// `fd_fdstat_get`: stdout and stderr are writable character devices; others EBADF.
fn fd_fdstat_get(mut caller: Caller<'_, HostState>, fd: i32, buf: i32) -> wasmtime::Result<i32> {
    if fd != 1 && fd != 2 {
        return Ok(EBADF);
    }
    let mut stat = [0u8; 24];
    stat[0] = 2; // filetype: character device
    const RIGHT_FD_WRITE: u64 = 1 << 6;
    stat[8..16].copy_from_slice(&RIGHT_FD_WRITE.to_le_bytes());
    errno(write_at(&mut caller, buf as u32, &stat))
}

/// `environ_sizes_get(ret_count, ret_buf_size)`: the number of the plugin's environment
/// variables and the bytes `NAME=VALUE\0` of all of them take.
fn environ_sizes_get(
    mut caller: Caller<'_, HostState>,
    count: i32,
    size: i32,
) -> wasmtime::Result<i32> {
    let environ = caller.data().plugin.policy.environ();
    let n = environ.len() as u32;
    let bytes = environ.iter().map(|e| e.len() as u32).sum();
    errno(write_u32(&mut caller, count, n).and_then(|()| write_u32(&mut caller, size, bytes)))
}

/// `environ_get(environ, environ_buf)`: writes each `NAME=VALUE\0` into `environ_buf`, one
/// after the other, and its address into the `environ` array; EFAULT when either does not
/// fit in guest memory.
fn environ_get(
    mut caller: Caller<'_, HostState>,
    pointers: i32,
    buf: i32,
) -> wasmtime::Result<i32> {
    let plugin = caller.data().plugin.clone();
    errno_with(|| {
        let mut at = buf as u32;
        for (i, entry) in plugin.policy.environ().iter().enumerate() {
            let slot = (pointers as u32)
                .checked_add(4 * i as u32)
                .ok_or(wasmbridge_abi::Status::InvalidMemoryAccess)?;
            write_u32(&mut caller, slot as i32, at)?;
            write_at(&mut caller, at, entry)?;
            at = at
                .checked_add(entry.len() as u32)
                .ok_or(wasmbridge_abi::Status::InvalidMemoryAccess)?;
        }
        Ok(())
    })
}

/// `args_sizes_get`: no arguments.
fn zero_sizes(mut caller: Caller<'_, HostState>, count: i32, size: i32) -> wasmtime::Result<i32> {
    errno(write_u32(&mut caller, count, 0).and_then(|()| write_u32(&mut caller, size, 0)))
}

fn process_start() -> Instant {
    static START: OnceLock<Instant> = OnceLock::new();
    *START.get_or_init(Instant::now)
}

/// `clock_time_get`: realtime (0) and monotonic (1) in nanoseconds; others ENOTSUP.
fn clock_time_get(
    mut caller: Caller<'_, HostState>,
    id: i32,
    _precision: i64,
    out: i32,
) -> wasmtime::Result<i32> {
    let now = match id {
        0 => wall_clock_nanos(),
        1 => process_start().elapsed().as_nanos() as u64,
        _ => return Ok(ENOTSUP),
    };
    errno(write_u64(&mut caller, out, now))
}

/// `clock_res_get`: one nanosecond for realtime and monotonic.
fn clock_res_get(mut caller: Caller<'_, HostState>, id: i32, out: i32) -> wasmtime::Result<i32> {
    if id != 0 && id != 1 {
        return Ok(ENOTSUP);
    }
    errno(write_u64(&mut caller, out, 1))
}

/// `random_get`: up to 64 KiB per call from the operating system; more is EINVAL.
fn random_get(mut caller: Caller<'_, HostState>, buf: i32, len: i32) -> wasmtime::Result<i32> {
    if !(0..=MAX_RANDOM).contains(&len) {
        return Ok(EINVAL);
    }
    let mut bytes = vec![0u8; len as usize];
    if getrandom::fill(&mut bytes).is_err() {
        return Ok(ENOSYS);
    }
    errno(write_at(&mut caller, buf as u32, &bytes))
}

/// `proc_exit`: ends the VM. A live filter must never exit; the trap fails the VM and the
/// failure policy applies.
fn proc_exit(mut caller: Caller<'_, HostState>, code: i32) -> wasmtime::Result<()> {
    caller.data_mut().call.exit_code = Some(code);
    Err(wasmtime::Error::msg(format!("proc_exit({code}) called")))
}

/// `poll_oneoff`: no event is ever ready; success (Go needs success).
fn poll_oneoff(
    mut caller: Caller<'_, HostState>,
    _in: i32,
    _out: i32,
    _n: i32,
    nevents: i32,
) -> wasmtime::Result<i32> {
    errno(write_u32(&mut caller, nevents, 0))
}

/// `fd_seek`: there are no files; logs and succeeds as Envoy does.
fn fd_seek(caller: Caller<'_, HostState>, fd: i32, _offset: i64, _whence: i32, _out: i32) -> i32 {
    emit(
        caller.data(),
        LogLevel::Error,
        &format!("fd_seek({fd}) is not supported"),
    );
    SUCCESS
}

/// `fd_close`: there are no files; logs and succeeds as Envoy does.
fn fd_close(caller: Caller<'_, HostState>, fd: i32) -> i32 {
    if fd > 2 {
        emit(
            caller.data(),
            LogLevel::Error,
            &format!("fd_close({fd}) is not supported"),
        );
    }
    SUCCESS
}
