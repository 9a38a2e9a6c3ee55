//! What the cases exercise, read from the case data alone: the hostcalls each case calls,
//! the properties it reads or writes, and the callbacks its expectations show running.
//! The `coverage::catalogue` trial and the generated docs both count from here.

use std::collections::BTreeSet;

use serde_json::Value as Json;

use crate::Case;

/// The `proxy_*` hostcalls a case calls: by name in a hostcalls-probe step
/// (`call: get_header_map_value`) or imported by an inline WAT module.
pub fn hostcalls(case: &Case) -> BTreeSet<String> {
    let mut used = BTreeSet::new();
    for step in steps(case) {
        if let Some(call) = step.get("call").and_then(Json::as_str) {
            used.insert(format!("proxy_{call}"));
        }
    }
    for wat in case.plugins.iter().filter_map(|p| p.wat.as_deref()) {
        for piece in wat.split("\"proxy_").skip(1) {
            if let Some(name) = piece.split('"').next() {
                used.insert(format!("proxy_{name}"));
            }
        }
    }
    used
}

/// The catalogued properties a case reads or writes through a probe step (`call:
/// get_property` or `set_property` with a `path`), as catalogue paths: a step naming
/// `request.headers.x-id` counts for `request.headers`.
pub fn properties(case: &Case) -> BTreeSet<&'static str> {
    let mut used = BTreeSet::new();
    for step in steps(case) {
        let call = step.get("call").and_then(Json::as_str);
        if !matches!(call, Some("get_property" | "set_property")) {
            continue;
        }
        let segments: Vec<String> = match step.get("path") {
            Some(Json::String(dotted)) => dotted.split('.').map(str::to_string).collect(),
            Some(Json::Array(items)) => items
                .iter()
                .filter_map(|i| i.as_str().map(str::to_string))
                .collect(),
            _ => continue,
        };
        let segments: Vec<&[u8]> = segments.iter().map(|s| s.as_bytes()).collect();
        if let Some((spec, _)) = wasmbridge_abi::resolve(&segments) {
            used.insert(spec.path);
        }
    }
    used
}

/// The callbacks a case's expectations show running, as export names
/// (`proxy_on_request_headers`): each entry of `expect.callbacks`, and each expected log
/// line of a probe (`lifecycle on_log`, `lifecycle-root on_configure ...`,
/// `probe on_request_body get_buffer_bytes -> ...`).
pub fn callbacks(case: &Case) -> BTreeSet<String> {
    let mut shown = BTreeSet::new();
    for name in case.expect.callbacks.iter().flatten() {
        shown.insert(format!("proxy_{name}"));
    }
    for line in &case.expect.logs {
        let mut words = line.split(' ');
        let probe = words.next();
        if matches!(probe, Some("lifecycle" | "lifecycle-root" | "probe"))
            && let Some(callback) = words.next().filter(|w| w.starts_with("on_"))
        {
            shown.insert(format!("proxy_{callback}"));
        }
    }
    shown
}

/// The `proxy_*` hostcalls of the catalogue that no case calls.
pub fn uncalled_hostcalls(cases: &[Case]) -> Vec<&'static str> {
    let used: BTreeSet<String> = cases.iter().flat_map(hostcalls).collect();
    wasmbridge_abi::HOSTCALLS
        .iter()
        .map(|h| h.name)
        .filter(|n| n.starts_with("proxy_") && !used.contains(*n))
        .collect()
}

/// Every hostcalls-probe step of a case's plugins (objects with a `call`), from both the
/// plugin and the VM configuration.
fn steps(case: &Case) -> Vec<Json> {
    let mut out = Vec::new();
    for p in &case.plugins {
        for text in [p.configuration(), p.vm_configuration()] {
            if let Ok(json) = serde_json::from_str::<Json>(&text) {
                collect_steps(json, &mut out);
            }
        }
    }
    out
}

fn collect_steps(json: Json, out: &mut Vec<Json>) {
    match json {
        Json::Object(map) if map.contains_key("call") => out.push(Json::Object(map)),
        Json::Object(map) => map.into_values().for_each(|v| collect_steps(v, out)),
        Json::Array(items) => items.into_iter().for_each(|v| collect_steps(v, out)),
        _ => {}
    }
}
