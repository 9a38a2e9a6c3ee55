//! Hostcall marshalling: one module per spec section, each with its own `add_to_linker`.
//!
//! Every hostcall validates its enums, lifts guest memory with bounds checks, delegates to
//! the context layer and writes results back through the guest allocator. A guest mistake
//! returns a status; only a trap inside the guest allocator propagates as a trap.
//!
//! Registration goes through [`Registrar`], which the catalogue in `wasmbridge-abi` checks:
//! every catalogue entry is linked exactly once, implemented ones by their module and
//! unimplemented ones by a stub that returns `UNIMPLEMENTED` and logs once.

mod buffers;
mod context;
mod headers;
mod logging;
mod metrics;
mod properties;
mod services;
mod shared;
pub(crate) use properties::static_properties;
mod stream;
mod toolchain;
mod wasi;

use wasmbridge_abi::{HOSTCALLS, Namespace, Status, Support, ValType};
use wasmtime::{Caller, Engine, FuncType, IntoFunc, Linker, Val};

use crate::context::HostState;

/// A hostcall's failure: a status for the guest, or a trap that must unwind.
pub(crate) enum Fault {
    Status(Status),
    Trap(wasmtime::Error),
}

impl From<Status> for Fault {
    fn from(s: Status) -> Self {
        Fault::Status(s)
    }
}

pub(crate) type HResult<T = ()> = Result<T, Fault>;

/// Turns a hostcall result into the i32 status the guest receives.
pub(crate) fn finish(result: HResult) -> wasmtime::Result<i32> {
    match result {
        Ok(()) => Ok(Status::Ok.code() as i32),
        Err(Fault::Status(s)) => Ok(s.code() as i32),
        Err(Fault::Trap(e)) => Err(e),
    }
}

/// Runs a hostcall body and turns its result into the guest's status.
pub(crate) fn status(body: impl FnOnce() -> HResult) -> wasmtime::Result<i32> {
    finish(body())
}

/// One registration the linker received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    /// Import module (`env`, `wasi_snapshot_preview1`, `wasi_unstable`).
    pub module: &'static str,
    /// Function name.
    pub name: &'static str,
    /// True when a generic "unimplemented" stub was linked.
    pub stub: bool,
}

/// Registers hostcalls and remembers what it registered.
pub(crate) struct Registrar<'l> {
    linker: &'l mut Linker<HostState>,
    pub registered: Vec<Registration>,
}

impl<'l> Registrar<'l> {
    pub fn new(linker: &'l mut Linker<HostState>) -> Self {
        Registrar {
            linker,
            registered: Vec::new(),
        }
    }

    /// Links an `env` hostcall.
    pub fn env<P, A>(
        &mut self,
        name: &'static str,
        func: impl IntoFunc<HostState, P, A>,
    ) -> wasmtime::Result<()> {
        self.linker.func_wrap("env", name, func)?;
        self.registered.push(Registration {
            module: "env",
            name,
            stub: false,
        });
        Ok(())
    }

    /// Links a WASI function under every WASI module name.
    pub fn wasi<P, A, F>(&mut self, name: &'static str, func: F) -> wasmtime::Result<()>
    where
        F: IntoFunc<HostState, P, A> + Clone,
    {
        for module in Namespace::Wasi.module_names() {
            self.linker.func_wrap(module, name, func.clone())?;
            self.registered.push(Registration {
                module,
                name,
                stub: false,
            });
        }
        Ok(())
    }

    fn stub(
        &mut self,
        engine: &Engine,
        module: &'static str,
        name: &'static str,
        params: &[ValType],
        results: &[ValType],
    ) -> wasmtime::Result<()> {
        let ty = func_type(engine, params, results);
        self.linker
            .func_new(module, name, ty, move |mut caller, _args, out| {
                unimplemented_called(&mut caller, module, name);
                if let Some(first) = out.first_mut() {
                    *first = Val::I32(Status::Unimplemented.code() as i32);
                }
                Ok(())
            })?;
        self.registered.push(Registration {
            module,
            name,
            stub: true,
        });
        Ok(())
    }
}

/// The wasmtime function type of a catalogue signature.
pub(crate) fn func_type(engine: &Engine, params: &[ValType], results: &[ValType]) -> FuncType {
    let map = |t: &ValType| match t {
        ValType::I32 => wasmtime::ValType::I32,
        ValType::I64 => wasmtime::ValType::I64,
    };
    FuncType::new(engine, params.iter().map(map), results.iter().map(map))
}

/// Logs the first call of an unimplemented or unknown import per VM.
pub(crate) fn unimplemented_called(caller: &mut Caller<'_, HostState>, module: &str, name: &str) {
    let key = format!("{module}.{name}");
    let state = caller.data_mut();
    if state.warned.insert(key.clone()) {
        tracing::warn!(
            plugin = %state.plugin.name,
            root_id = %state.plugin.root_id,
            callback = state.call.callback,
            "hostcall {key} is not implemented by wasmbridge; it returned UNIMPLEMENTED"
        );
    }
}

/// Links every hostcall of the catalogue: implemented sections first, then stubs for the
/// entries the catalogue marks unimplemented. Returns what was registered.
pub(crate) fn add_to_linker(
    engine: &Engine,
    linker: &mut Linker<HostState>,
) -> wasmtime::Result<Vec<Registration>> {
    let mut reg = Registrar::new(linker);
    logging::add_to_linker(&mut reg)?;
    context::add_to_linker(&mut reg)?;
    buffers::add_to_linker(&mut reg)?;
    headers::add_to_linker(&mut reg)?;
    properties::add_to_linker(&mut reg)?;
    shared::add_to_linker(&mut reg)?;
    services::add_to_linker(&mut reg)?;
    metrics::add_to_linker(&mut reg)?;
    stream::add_to_linker(&mut reg)?;
    wasi::add_to_linker(&mut reg)?;
    toolchain::add_to_linker(&mut reg)?;
    for spec in HOSTCALLS {
        if matches!(spec.support, Support::Unimplemented(_)) {
            for module in spec.namespace.module_names() {
                reg.stub(engine, module, spec.name, spec.params, spec.results)?;
            }
        }
    }
    Ok(reg.registered)
}

// ---- guest memory helpers -------------------------------------------------------------

pub(crate) fn memory(caller: &Caller<'_, HostState>) -> HResult<wasmtime::Memory> {
    caller
        .data()
        .memory
        .ok_or(Fault::Status(Status::InvalidMemoryAccess))
}

/// The `len` bytes at `ptr` in guest memory, borrowed: for a hostcall that only reads
/// them while it looks at the host's state (a header lookup), without a copy.
pub(crate) fn guest_bytes<'a>(
    caller: &'a Caller<'_, HostState>,
    ptr: i32,
    len: i32,
) -> HResult<&'a [u8]> {
    in_guest(memory(caller)?.data(caller), ptr, len)
}

/// The `len` bytes at `ptr` of guest memory `mem` (pointer and length are the guest's
/// unsigned 32-bit values); INVALID_MEMORY_ACCESS when they are not all inside it.
pub(crate) fn in_guest(mem: &[u8], ptr: i32, len: i32) -> HResult<&[u8]> {
    let start = ptr as u32 as usize;
    start
        .checked_add(len as u32 as usize)
        .and_then(|end| mem.get(start..end))
        .ok_or(Fault::Status(Status::InvalidMemoryAccess))
}

/// Copies `len` bytes at `ptr` out of guest memory.
pub(crate) fn read_bytes(caller: &Caller<'_, HostState>, ptr: i32, len: i32) -> HResult<Vec<u8>> {
    guest_bytes(caller, ptr, len).map(<[u8]>::to_vec)
}

/// Copies at most `max` of the `len` bytes at `ptr` out of guest memory; the whole range
/// must be valid all the same.
pub(crate) fn read_prefix(
    caller: &Caller<'_, HostState>,
    ptr: i32,
    len: i32,
    max: usize,
) -> HResult<Vec<u8>> {
    let whole = guest_bytes(caller, ptr, len)?;
    Ok(whole[..whole.len().min(max)].to_vec())
}

/// Writes `bytes` at `ptr` in guest memory.
pub(crate) fn write_at(caller: &mut Caller<'_, HostState>, ptr: u32, bytes: &[u8]) -> HResult {
    let mem = memory(caller)?;
    let start = ptr as usize;
    let end = start
        .checked_add(bytes.len())
        .ok_or(Status::InvalidMemoryAccess)?;
    let dst = mem
        .data_mut(caller)
        .get_mut(start..end)
        .ok_or(Status::InvalidMemoryAccess)?;
    dst.copy_from_slice(bytes);
    Ok(())
}

/// Writes a little-endian u32 out-parameter.
pub(crate) fn write_u32(caller: &mut Caller<'_, HostState>, ptr: i32, value: u32) -> HResult {
    write_at(caller, ptr as u32, &value.to_le_bytes())
}

/// Writes a little-endian u64 out-parameter.
pub(crate) fn write_u64(caller: &mut Caller<'_, HostState>, ptr: i32, value: u64) -> HResult {
    write_at(caller, ptr as u32, &value.to_le_bytes())
}

/// Returns bytes to the guest: allocates exactly `data.len()` with the guest allocator,
/// copies, and writes (pointer, size). Empty data is pointer 0 / size 0 with no allocation.
pub(crate) fn return_bytes(
    caller: &mut Caller<'_, HostState>,
    data: &[u8],
    ret_ptr: i32,
    ret_size: i32,
) -> HResult {
    return_filled(caller, data.len(), ret_ptr, ret_size, |_, out| {
        out.copy_from_slice(data);
        Ok(())
    })
}

/// Returns `len` bytes to the guest that `fill` writes straight into the region the guest
/// allocator gave, reading the host state beside it: no host-side buffer. `fill` gets
/// exactly `len` bytes. Zero `len` is pointer 0 / size 0 with no allocation.
pub(crate) fn return_filled(
    caller: &mut Caller<'_, HostState>,
    len: usize,
    ret_ptr: i32,
    ret_size: i32,
    fill: impl FnOnce(&HostState, &mut [u8]) -> HResult,
) -> HResult {
    if len == 0 {
        write_u32(caller, ret_ptr, 0)?;
        return write_u32(caller, ret_size, 0);
    }
    // An `Arc`: cloning a `TypedFunc` itself clones its registered type, which costs
    // more than the rest of a small hostcall.
    let allocator = caller
        .data()
        .allocator
        .clone()
        .ok_or(Status::InvalidMemoryAccess)?;
    let size = i32::try_from(len).map_err(|_| Status::InvalidMemoryAccess)?;
    let ptr = allocator.call(&mut *caller, size).map_err(Fault::Trap)?;
    if ptr == 0 {
        return Err(Status::InvalidMemoryAccess.into());
    }
    let (mem, state) = memory(caller)?.data_and_store_mut(&mut *caller);
    let region = |at: u32, len: usize| (at as usize)..(at as usize + len);
    let (ptr, ret_ptr, ret_size) = (ptr as u32, ret_ptr as u32, ret_size as u32);
    fill(
        state,
        mem.get_mut(region(ptr, len))
            .ok_or(Status::InvalidMemoryAccess)?,
    )?;
    for (at, value) in [(ret_ptr, ptr), (ret_size, len as u32)] {
        mem.get_mut(region(at, 4))
            .ok_or(Status::InvalidMemoryAccess)?
            .copy_from_slice(&value.to_le_bytes());
    }
    Ok(())
}

#[cfg(test)]
mod tests;
