//! Metrics: `proxy_define_metric`, `proxy_increment_metric`, `proxy_record_metric` and
//! `proxy_get_metric` over the runtime's guest metrics (reference §12.3), shared by every
//! plugin and VM replica by (type, name) and exported on the admin `/metrics` as
//! `wasmcustom_<name>` (see [`crate::GuestMetrics`]).

use wasmbridge_abi::MetricType;
use wasmtime::Caller;

use super::{HResult, Registrar, read_bytes, status, write_u32, write_u64};
use crate::context::HostState;

pub(super) fn add_to_linker(reg: &mut Registrar<'_>) -> wasmtime::Result<()> {
    reg.env("proxy_define_metric", define_metric)?;
    reg.env("proxy_increment_metric", increment_metric)?;
    reg.env("proxy_record_metric", record_metric)?;
    reg.env("proxy_get_metric", get_metric)?;
    Ok(())
}

/// `proxy_define_metric(type, name_ptr, name_size, ret_metric_id_ptr)` — all versions, any
/// context. Types: COUNTER 0, GAUGE 1, HISTOGRAM 2. Returns the id of the metric (type,
/// name), creating it on first use; every replica and plugin of the process that defines
/// the same type and name gets the same id and shares the value. OK; BAD_ARGUMENT for a
/// type above 2; INVALID_MEMORY_ACCESS; INTERNAL_FAILURE once the runtime holds
/// [`crate::MAX_GUEST_METRICS`] metrics (Envoy has no limit). Unlike Envoy, which hands out
/// a new id on every call, the id is stable per (type, name).
fn define_metric(
    mut caller: Caller<'_, HostState>,
    metric_type: i32,
    name_ptr: i32,
    name_len: i32,
    ret_id: i32,
) -> wasmtime::Result<i32> {
    status(|| -> HResult {
        let name = read_bytes(&caller, name_ptr, name_len)?;
        let metric_type = MetricType::try_from(metric_type as u32)?;
        let info = &caller.data().plugin;
        let id = info.metrics.define(metric_type, &name, &info.name)?;
        write_u32(&mut caller, ret_id, id)
    })
}

/// `proxy_increment_metric(metric_id, delta: i64)` — all versions, any context. A counter
/// adds a delta above 0, a gauge adds any delta (it may go down). OK; NOT_FOUND for a
/// counter or gauge id that names no metric; BAD_ARGUMENT for a counter delta <= 0 and for
/// a histogram id, as in Envoy.
fn increment_metric(
    caller: Caller<'_, HostState>,
    metric_id: i32,
    delta: i64,
) -> wasmtime::Result<i32> {
    status(|| -> HResult {
        Ok(caller
            .data()
            .plugin
            .metrics
            .increment(metric_id as u32, delta)?)
    })
}

/// `proxy_record_metric(metric_id, value: i64 read as u64)` — all versions, any context. A
/// gauge is set to the value, a histogram records it as a sample, a counter adds it (as in
/// Envoy). OK; NOT_FOUND for an id that names no metric.
fn record_metric(
    caller: Caller<'_, HostState>,
    metric_id: i32,
    value: i64,
) -> wasmtime::Result<i32> {
    status(|| -> HResult {
        Ok(caller
            .data()
            .plugin
            .metrics
            .record(metric_id as u32, value as u64)?)
    })
}

/// `proxy_get_metric(metric_id, ret_value_ptr)` — all versions, any context. Writes a
/// counter's or gauge's value as a u64 (a gauge below zero wraps, as in Envoy). OK;
/// NOT_FOUND for a counter or gauge id that names no metric; BAD_ARGUMENT for a histogram
/// id; INVALID_MEMORY_ACCESS.
fn get_metric(
    mut caller: Caller<'_, HostState>,
    metric_id: i32,
    ret_value: i32,
) -> wasmtime::Result<i32> {
    status(|| -> HResult {
        let value = caller.data().plugin.metrics.get(metric_id as u32)?;
        write_u64(&mut caller, ret_value, value)
    })
}
