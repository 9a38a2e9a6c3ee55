//! Configuration and context control: `proxy_get_configuration` (0.1.0) and
//! `proxy_set_effective_context`.

use wasmbridge_abi::Status;
use wasmtime::Caller;

use super::{HResult, Registrar, return_bytes, status};
use crate::context::{HostState, Phase};

pub(super) fn add_to_linker(reg: &mut Registrar<'_>) -> wasmtime::Result<()> {
    reg.env("proxy_get_configuration", get_configuration)?;
    reg.env("proxy_set_effective_context", set_effective_context)?;
    Ok(())
}

/// `proxy_get_configuration(ret_ptr_ptr, ret_size_ptr)` — 0.1.0. The plugin configuration
/// during `proxy_on_configure`, else the VM configuration. OK.
fn get_configuration(
    mut caller: Caller<'_, HostState>,
    ret_ptr: i32,
    ret_size: i32,
) -> wasmtime::Result<i32> {
    status(|| -> HResult {
        let state = caller.data();
        let config = if state.call.phase == Phase::Configure {
            state.plugin.configuration.clone()
        } else {
            state.plugin.vm_configuration.clone()
        };
        return_bytes(&mut caller, &config, ret_ptr, ret_size)
    })
}

/// `proxy_set_effective_context(context_id)` — all versions. Later hostcalls of this
/// callback act on that context. OK; BAD_ARGUMENT for an unknown id.
fn set_effective_context(mut caller: Caller<'_, HostState>, id: i32) -> wasmtime::Result<i32> {
    status(|| -> HResult {
        let state = caller.data_mut();
        let id = id as u32;
        if !state.knows_context(id) {
            return Err(Status::BadArgument.into());
        }
        state.call.effective_context_id = id;
        Ok(())
    })
}
