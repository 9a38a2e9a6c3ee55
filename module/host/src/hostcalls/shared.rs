//! Shared data: `proxy_get_shared_data` and `proxy_set_shared_data` over the runtime's
//! store, partitioned by the plugin's `vm_id` (reference §12.1).

use bytes::Bytes;
use wasmbridge_abi::Status;
use wasmtime::Caller;

use super::{HResult, Registrar, read_bytes, return_bytes, status, write_u32};
use crate::context::HostState;

pub(super) fn add_to_linker(reg: &mut Registrar<'_>) -> wasmtime::Result<()> {
    reg.env("proxy_get_shared_data", get_shared_data)?;
    reg.env("proxy_set_shared_data", set_shared_data)?;
    Ok(())
}

/// `proxy_get_shared_data(key_ptr, key_size, ret_value_ptr_ptr, ret_value_size_ptr,
/// ret_cas_ptr)` — all versions, any context. OK with the value and its CAS; NOT_FOUND
/// for a key never set.
fn get_shared_data(
    mut caller: Caller<'_, HostState>,
    key_ptr: i32,
    key_len: i32,
    ret_ptr: i32,
    ret_size: i32,
    ret_cas: i32,
) -> wasmtime::Result<i32> {
    status(|| -> HResult {
        let key = read_bytes(&caller, key_ptr, key_len)?;
        let info = caller.data().plugin.clone();
        let (value, cas) = info.shared.get(&info.vm_id, &key).ok_or(Status::NotFound)?;
        return_bytes(&mut caller, &value, ret_ptr, ret_size)?;
        write_u32(&mut caller, ret_cas, cas)
    })
}

/// `proxy_set_shared_data(key_ptr, key_size, value_ptr, value_size, cas)` — all versions,
/// any context. CAS 0 writes unconditionally, as does any CAS for a missing key; otherwise
/// the CAS must be the stored one. OK; CAS_MISMATCH; BAD_ARGUMENT for a key over 4 KiB or
/// a value over 1 MiB (logged with the plugin's name).
fn set_shared_data(
    caller: Caller<'_, HostState>,
    key_ptr: i32,
    key_len: i32,
    value_ptr: i32,
    value_len: i32,
    cas: i32,
) -> wasmtime::Result<i32> {
    status(|| -> HResult {
        let key = read_bytes(&caller, key_ptr, key_len)?;
        let value = read_bytes(&caller, value_ptr, value_len)?;
        let info = &caller.data().plugin;
        let (key_len, value_len) = (key.len(), value.len());
        match info
            .shared
            .set(&info.vm_id, &key, Bytes::from(value), cas as u32)
        {
            Ok(_) => Ok(()),
            Err(err) => {
                if err.status() == Status::BadArgument {
                    tracing::warn!(
                        plugin = %info.name,
                        "proxy_set_shared_data refused: key of {key_len} bytes (limit {}), value of {value_len} bytes (limit {})",
                        crate::shared::MAX_SHARED_KEY_BYTES,
                        crate::shared::MAX_SHARED_VALUE_BYTES
                    );
                }
                Err(err.status().into())
            }
        }
    })
}
