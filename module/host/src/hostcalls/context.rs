//! Configuration and context control: `proxy_get_configuration` (0.1.0),
//! `proxy_set_effective_context` and `proxy_done`.

use wasmbridge_abi::Status;
use wasmtime::Caller;

use super::{HResult, Registrar, return_bytes, status};
use crate::context::{Borrowed, HostState, Phase};

pub(super) fn add_to_linker(reg: &mut Registrar<'_>) -> wasmtime::Result<()> {
    reg.env("proxy_get_configuration", get_configuration)?;
    reg.env("proxy_set_effective_context", set_effective_context)?;
    reg.env("proxy_done", done)?;
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
/// callback act on that context; a paused stream's maps are reachable this way (a callout
/// response resuming the request it held). OK; BAD_ARGUMENT for an unknown id.
fn set_effective_context(mut caller: Caller<'_, HostState>, id: i32) -> wasmtime::Result<i32> {
    status(|| -> HResult {
        let state = caller.data_mut();
        let id = id as u32;
        if !state.knows_context(id) {
            return Err(Status::BadArgument.into());
        }
        let call = &mut state.call;
        call.effective_context_id = id;
        let lent = call.borrowed.as_ref().map(|b| b.id);
        if id != call.context_id && lent != Some(id) {
            call.give_back();
            if let Some(signal) = state.streams.get(&id)
                && let Some((phase, data)) = signal.lend()
            {
                state.call.borrowed = Some(Borrowed {
                    id,
                    phase,
                    data,
                    signal: signal.clone(),
                });
            }
        }
        Ok(())
    })
}

/// `proxy_done()` — all versions. Completes a root context's shutdown that its
/// `proxy_on_done` deferred. The host does not shut roots down through `proxy_on_done`
/// yet, so no shutdown is ever pending: NOT_FOUND, as Envoy answers when nothing is.
fn done(_caller: Caller<'_, HostState>) -> i32 {
    Status::NotFound as i32
}
