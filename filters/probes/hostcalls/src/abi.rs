//! The raw `env.proxy_*` imports, the `raw` step form, and helpers to pass guest memory.
//!
//! Every import is declared with its wasm signature: i32 everywhere (pointers and sizes are
//! 32-bit on wasm32), i64 for the metric delta and value. These are the same wasm types the
//! SDK declares, so the linker merges both declarations into one import.

/// Declares the imports and `raw`, which calls one of them by name with integer arguments.
macro_rules! imports {
    ($( fn $name:ident($($arg:ident: $ty:ty),* $(,)?); )*) => {
        #[link(wasm_import_module = "env")]
        unsafe extern "C" {
            $( pub(crate) fn $name($($arg: $ty),*) -> i32; )*
        }

        /// Calls the import `proxy_<call>` with `args`, each cast to its parameter type
        /// (i32 truncates, so values up to `u32::MAX` and negative values both work).
        #[allow(clippy::unnecessary_cast)]
        pub(crate) fn raw(call: &str, args: &[i64]) -> Raw {
            $(
                if stringify!($name).strip_prefix("proxy_") == Some(call) {
                    let [$($arg),*] = args else {
                        return Raw::Arity(<[&str]>::len(&[$(stringify!($arg)),*]));
                    };
                    // SAFETY: the host bounds-checks every pointer against guest memory;
                    // writes it makes through hostile pointers may clobber this guest's own
                    // memory, which a probe of hostile arguments accepts.
                    return Raw::Status(unsafe { $name($(*$arg as $ty),*) });
                }
            )*
            Raw::Unknown
        }
    };
}

/// What a `raw` step did.
pub(crate) enum Raw {
    /// The import returned this status.
    Status(i32),
    /// The import takes this many arguments, and the step gave another number.
    Arity(usize),
    /// No import has this name.
    Unknown,
}

imports! {
    fn proxy_log(level: i32, message_ptr: i32, message_size: i32);
    fn proxy_get_log_level(ret_level_ptr: i32);
    fn proxy_get_current_time_nanoseconds(ret_time_ptr: i32);
    fn proxy_set_tick_period_milliseconds(period: i32);
    fn proxy_get_property(path_ptr: i32, path_size: i32, ret_ptr_ptr: i32, ret_size_ptr: i32);
    fn proxy_set_property(path_ptr: i32, path_size: i32, value_ptr: i32, value_size: i32);
    fn proxy_get_buffer_bytes(
        buffer_type: i32, start: i32, max_size: i32, ret_ptr_ptr: i32, ret_size_ptr: i32,
    );
    fn proxy_get_buffer_status(buffer_type: i32, ret_size_ptr: i32, ret_flags_ptr: i32);
    fn proxy_set_buffer_bytes(
        buffer_type: i32, start: i32, size: i32, data_ptr: i32, data_size: i32,
    );
    fn proxy_get_header_map_pairs(map_type: i32, ret_ptr_ptr: i32, ret_size_ptr: i32);
    fn proxy_set_header_map_pairs(map_type: i32, map_ptr: i32, map_size: i32);
    fn proxy_get_header_map_value(
        map_type: i32, key_ptr: i32, key_size: i32, ret_ptr_ptr: i32, ret_size_ptr: i32,
    );
    fn proxy_add_header_map_value(
        map_type: i32, key_ptr: i32, key_size: i32, value_ptr: i32, value_size: i32,
    );
    fn proxy_replace_header_map_value(
        map_type: i32, key_ptr: i32, key_size: i32, value_ptr: i32, value_size: i32,
    );
    fn proxy_remove_header_map_value(map_type: i32, key_ptr: i32, key_size: i32);
    fn proxy_get_header_map_size(map_type: i32, ret_size_ptr: i32);
    fn proxy_send_local_response(
        status_code: i32, details_ptr: i32, details_size: i32, body_ptr: i32, body_size: i32,
        headers_ptr: i32, headers_size: i32, grpc_status: i32,
    );
    fn proxy_continue_stream(stream_type: i32);
    fn proxy_close_stream(stream_type: i32);
    fn proxy_get_status(ret_code_ptr: i32, ret_message_ptr_ptr: i32, ret_message_size_ptr: i32);
    fn proxy_done();
    fn proxy_set_effective_context(context_id: i32);
    fn proxy_call_foreign_function(
        name_ptr: i32, name_size: i32, args_ptr: i32, args_size: i32, ret_ptr_ptr: i32,
        ret_size_ptr: i32,
    );
    fn proxy_get_shared_data(
        key_ptr: i32, key_size: i32, ret_value_ptr_ptr: i32, ret_value_size_ptr: i32,
        ret_cas_ptr: i32,
    );
    fn proxy_set_shared_data(key_ptr: i32, key_size: i32, value_ptr: i32, value_size: i32, cas: i32);
    fn proxy_register_shared_queue(name_ptr: i32, name_size: i32, ret_id_ptr: i32);
    fn proxy_resolve_shared_queue(
        vm_id_ptr: i32, vm_id_size: i32, name_ptr: i32, name_size: i32, ret_id_ptr: i32,
    );
    fn proxy_enqueue_shared_queue(queue_id: i32, value_ptr: i32, value_size: i32);
    fn proxy_dequeue_shared_queue(queue_id: i32, ret_ptr_ptr: i32, ret_size_ptr: i32);
    fn proxy_define_metric(metric_type: i32, name_ptr: i32, name_size: i32, ret_id_ptr: i32);
    fn proxy_increment_metric(metric_id: i32, delta: i64);
    fn proxy_record_metric(metric_id: i32, value: i64);
    fn proxy_get_metric(metric_id: i32, ret_value_ptr: i32);
    fn proxy_http_call(
        upstream_ptr: i32, upstream_size: i32, headers_ptr: i32, headers_size: i32,
        body_ptr: i32, body_size: i32, trailers_ptr: i32, trailers_size: i32, timeout_ms: i32,
        ret_token_ptr: i32,
    );
    fn proxy_grpc_call(
        upstream_ptr: i32, upstream_size: i32, service_ptr: i32, service_size: i32,
        method_ptr: i32, method_size: i32, metadata_ptr: i32, metadata_size: i32,
        message_ptr: i32, message_size: i32, timeout_ms: i32, ret_token_ptr: i32,
    );
    fn proxy_grpc_stream(
        upstream_ptr: i32, upstream_size: i32, service_ptr: i32, service_size: i32,
        method_ptr: i32, method_size: i32, metadata_ptr: i32, metadata_size: i32,
        ret_token_ptr: i32,
    );
    fn proxy_grpc_send(token: i32, message_ptr: i32, message_size: i32, end_stream: i32);
    fn proxy_grpc_cancel(token: i32);
    fn proxy_grpc_close(token: i32);
}

/// A byte argument as the (pointer, size) pair the ABI takes.
pub(crate) fn bytes(data: &[u8]) -> (i32, i32) {
    (data.as_ptr() as usize as i32, data.len() as i32)
}

/// An out-parameter slot (u32 or u64) as the guest pointer the ABI takes.
pub(crate) fn slot<T>(slot: &mut T) -> i32 {
    slot as *mut T as usize as i32
}

/// Bytes the host returns through (ret_ptr_ptr, ret_size_ptr), allocated by the host with
/// this module's `proxy_on_memory_allocate`.
#[derive(Default)]
pub(crate) struct Returned {
    ptr: u32,
    size: u32,
}

impl Returned {
    /// The `ret_ptr_ptr` argument.
    pub(crate) fn ptr_ptr(&mut self) -> i32 {
        slot(&mut self.ptr)
    }

    /// The `ret_size_ptr` argument.
    pub(crate) fn size_ptr(&mut self) -> i32 {
        slot(&mut self.size)
    }

    /// Takes ownership of the returned bytes; a null pointer or zero size is empty.
    pub(crate) fn take(self) -> Vec<u8> {
        if self.ptr == 0 || self.size == 0 {
            return Vec::new();
        }
        let size = self.size as usize;
        // SAFETY: after an OK status the host has allocated `size` bytes with
        // `proxy_on_memory_allocate`, which hands out a `Box<[u8]>` of exactly that length.
        unsafe { Vec::from_raw_parts(self.ptr as usize as *mut u8, size, size) }
    }
}
