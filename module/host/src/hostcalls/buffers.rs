//! Buffers: `proxy_get_buffer_bytes`, `proxy_set_buffer_bytes`, `proxy_get_buffer_status`.
//!
//! Bodies exist only in their body callback (the current chunk, or everything buffered
//! since the plugin paused); the VM configuration only in `proxy_on_vm_start`, the plugin
//! configuration only in `proxy_on_configure`. Anything else is NOT_FOUND, as in Envoy.
//!
//! A body may not be grown past `plugins[].limits.body` with `proxy_set_buffer_bytes`.

use bytes::{Bytes, BytesMut};
use wasmbridge_abi::{BufferType, Status};
use wasmtime::Caller;

use super::{HResult, Registrar, in_guest, memory, return_bytes, return_filled, status, write_u32};
use crate::context::{HostState, Phase};
use crate::limits::Cap;

pub(super) fn add_to_linker(reg: &mut Registrar<'_>) -> wasmtime::Result<()> {
    reg.env("proxy_get_buffer_bytes", get_buffer_bytes)?;
    reg.env("proxy_set_buffer_bytes", set_buffer_bytes)?;
    reg.env("proxy_get_buffer_status", get_buffer_status)?;
    Ok(())
}

/// A readable view of a buffer that exists now.
enum Readable {
    Body,
    Fixed(Bytes),
}

fn readable(state: &HostState, ty: BufferType) -> HResult<Readable> {
    let phase = state.call.phase;
    match ty {
        BufferType::HttpRequestBody if phase == Phase::RequestBody && state.stream().is_some() => {
            Ok(Readable::Body)
        }
        BufferType::HttpResponseBody
            if phase == Phase::ResponseBody && state.stream().is_some() =>
        {
            Ok(Readable::Body)
        }
        BufferType::VmConfiguration if phase == Phase::VmStart => {
            Ok(Readable::Fixed(state.plugin.vm_configuration.clone()))
        }
        BufferType::PluginConfiguration if phase == Phase::Configure => {
            Ok(Readable::Fixed(state.plugin.configuration.clone()))
        }
        BufferType::HttpCallResponseBody | BufferType::GrpcReceiveBuffer => {
            match &state.call.delivery {
                Some(d) if d.grpc == (ty == BufferType::GrpcReceiveBuffer) => {
                    Ok(Readable::Fixed(d.body.clone()))
                }
                _ => Err(Status::NotFound.into()),
            }
        }
        _ => Err(Status::NotFound.into()),
    }
}

/// The bytes `[start, start + max_size)` of `data`, clamped; computed in 64 bits so that
/// `max_size = 0xFFFFFFFF` never overflows.
fn clamp(data: &[u8], start: u32, max_size: u32) -> &[u8] {
    let len = data.len() as u64;
    let start = u64::from(start).min(len);
    let end = (start + u64::from(max_size)).min(len);
    &data[start as usize..end as usize]
}

/// `proxy_get_buffer_bytes(type, start, max_size, ret_ptr_ptr, ret_size_ptr)` — all
/// versions. OK (a start past the end gives empty data); NOT_FOUND when the buffer does
/// not exist in this callback; BAD_ARGUMENT for an unknown type.
fn get_buffer_bytes(
    mut caller: Caller<'_, HostState>,
    ty: i32,
    start: i32,
    max_size: i32,
    ret_ptr: i32,
    ret_size: i32,
) -> wasmtime::Result<i32> {
    status(|| -> HResult {
        let ty = BufferType::try_from(ty as u32)?;
        let bytes = match readable(caller.data(), ty)? {
            Readable::Body => {
                // Copied once, from the body straight into the guest's allocation.
                let body = &caller.data().stream().ok_or(Status::NotFound)?.body;
                let len = clamp(body, start as u32, max_size as u32).len();
                return return_filled(&mut caller, len, ret_ptr, ret_size, |state, out| {
                    let body = &state.stream().ok_or(Status::NotFound)?.body;
                    out.copy_from_slice(clamp(body, start as u32, max_size as u32));
                    Ok(())
                });
            }
            Readable::Fixed(config) => {
                config.slice_ref(clamp(&config, start as u32, max_size as u32))
            }
        };
        return_bytes(&mut caller, &bytes, ret_ptr, ret_size)
    })
}

/// Applies Envoy's edit modes (`Buffer::copyFrom`) to a body.
pub(crate) fn edit(body: &mut BytesMut, start: u32, size: u32, data: &[u8]) -> Result<(), Status> {
    let len = body.len() as u64;
    let (start, size) = (u64::from(start), u64::from(size));
    if start == 0 {
        if size == 0 {
            let mut out = BytesMut::with_capacity(data.len() + body.len());
            out.extend_from_slice(data);
            out.extend_from_slice(body);
            *body = out;
        } else if size < len {
            let mut out = BytesMut::with_capacity(data.len() + body.len() - size as usize);
            out.extend_from_slice(data);
            out.extend_from_slice(&body[size as usize..]);
            *body = out;
        } else {
            body.clear();
            body.extend_from_slice(data);
        }
        Ok(())
    } else if start >= len {
        body.extend_from_slice(data);
        Ok(())
    } else {
        Err(Status::BadArgument)
    }
}

/// The length of a body of `len` bytes after [`edit`] with these arguments; `None` for a
/// mid-buffer splice.
fn edited_len(len: usize, start: u32, size: u32, added: usize) -> Option<usize> {
    let size = size as usize;
    match start as usize {
        0 if size == 0 => Some(len + added),
        0 if size < len => Some(len - size + added),
        0 => Some(added),
        start if start >= len => Some(len + added),
        _ => None,
    }
}

/// `proxy_set_buffer_bytes(type, start, size, data_ptr, data_size)` — all versions. OK;
/// NOT_FOUND when the body does not exist in this callback; BAD_ARGUMENT for an unknown or
/// read-only type, a mid-buffer splice (Envoy supports prepend, replace-prefix,
/// replace-all and append only), or a change that would grow the body past
/// `limits.body` (the body is then unchanged; Envoy has no such check here, and the Rust
/// SDK traps on any status but OK).
fn set_buffer_bytes(
    mut caller: Caller<'_, HostState>,
    ty: i32,
    start: i32,
    size: i32,
    data_ptr: i32,
    data_size: i32,
) -> wasmtime::Result<i32> {
    status(|| -> HResult {
        let ty = BufferType::try_from(ty as u32)?;
        match readable(caller.data(), ty) {
            Ok(Readable::Body) => {}
            Ok(Readable::Fixed(_)) => return Err(Status::BadArgument.into()),
            Err(_)
                if matches!(
                    ty,
                    BufferType::HttpRequestBody | BufferType::HttpResponseBody
                ) =>
            {
                return Err(Status::NotFound.into());
            }
            Err(_) => return Err(Status::BadArgument.into()),
        }
        // The guest's bytes are copied once, straight into the body.
        let (mem, state) = memory(&caller)?.data_and_store_mut(&mut caller);
        let data = in_guest(mem, data_ptr, data_size)?;
        let cap = usize::try_from(state.plugin.limits.body_bytes).unwrap_or(usize::MAX);
        let len = state.stream().ok_or(Status::NotFound)?.body.len();
        if let Some(after) = edited_len(len, start as u32, size as u32, data.len())
            && after > cap
            && after > len
        {
            state.plugin.cap_reached(
                Cap::Body,
                state.call.effective_context_id,
                state.call.callback,
                format_args!(
                    "proxy_set_buffer_bytes on {ty} refused with BAD_ARGUMENT: the body would have grown from {len} to {after} bytes"
                ),
            );
            return Err(Status::BadArgument.into());
        }
        let stream = state.stream_mut().ok_or(Status::NotFound)?;
        edit(&mut stream.body, start as u32, size as u32, data)?;
        Ok(())
    })
}

/// `proxy_get_buffer_status(type, ret_size_ptr, ret_flags_ptr)` — all versions. OK with
/// the size and flags 0 (as Envoy); NOT_FOUND; BAD_ARGUMENT.
fn get_buffer_status(
    mut caller: Caller<'_, HostState>,
    ty: i32,
    ret_size: i32,
    ret_flags: i32,
) -> wasmtime::Result<i32> {
    status(|| -> HResult {
        let ty = BufferType::try_from(ty as u32)?;
        let size = match readable(caller.data(), ty)? {
            Readable::Body => caller.data().stream().map_or(0, |s| s.body.len()),
            Readable::Fixed(c) => c.len(),
        };
        write_u32(&mut caller, ret_size, size as u32)?;
        write_u32(&mut caller, ret_flags, 0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(s: &str) -> BytesMut {
        BytesMut::from(s)
    }

    #[test]
    fn edit_modes_follow_envoy() {
        let mut b = body("world");
        edit(&mut b, 0, 0, b"hello ").ok();
        assert_eq!(&b[..], b"hello world");
        edit(&mut b, 0, 5, b"HELLO").ok();
        assert_eq!(&b[..], b"HELLO world");
        edit(&mut b, 0, 11, b"all").ok();
        assert_eq!(&b[..], b"all");
        edit(&mut b, u32::MAX, 0, b"!").ok();
        assert_eq!(&b[..], b"all!");
        assert_eq!(edit(&mut b, 1, 1, b"x"), Err(Status::BadArgument));
    }

    #[test]
    fn edited_lengths_match_the_edits() {
        for (start, size, data) in [
            (0, 0, "hello "),
            (0, 2, "HE"),
            (0, 99, "all"),
            (u32::MAX, 0, "!"),
            (5, 1, "x"),
            (3, 0, "mid"),
        ] {
            let mut b = body("world");
            let predicted = edited_len(b.len(), start, size, data.len());
            let done = edit(&mut b, start, size, data.as_bytes())
                .ok()
                .map(|()| b.len());
            assert_eq!(predicted, done, "start {start} size {size}");
        }
    }

    #[test]
    fn clamp_never_overflows() {
        assert_eq!(clamp(b"abcdef", 2, u32::MAX), b"cdef");
        assert_eq!(clamp(b"abc", 9, 2), b"");
        assert_eq!(clamp(b"abc", 0, 2), b"ab");
    }
}
