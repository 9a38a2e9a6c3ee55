//! Writes `micro.md`, `micro-hostcalls.svg` and `micro-lifecycle.svg` from the last
//! criterion run of the host's benchmarks (`cargo bench -p wasmbridge-host`) and the
//! memory figures of its `memory` bench.
//!
//! ```sh
//! wasmbridge-bench-report [--target DIR] [--out docs/benchmarks]
//! ```
//!
//! `--target` is cargo's target directory (default `$CARGO_TARGET_DIR`, else `target`).
//! A benchmark without results is listed as not run.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, Result, bail};
use wasmbridge_bench::chart::{self, Bar, Chart};
use wasmbridge_bench::criterion::{self, Estimate};

/// A goal a figure is held to.
#[derive(Clone, Copy)]
enum Goal {
    None,
    /// At most this many nanoseconds.
    AtMost(f64),
    /// At most this multiple of another benchmark's median.
    TimesOf(f64, &'static str),
}

struct Row {
    id: &'static str,
    what: &'static str,
    goal: Goal,
}

const HOSTCALLS: &[Row] = &[
    Row {
        id: "hostcall/get_header",
        what: "get one header of 20 (`proxy_get_header_map_value`)",
        goal: Goal::AtMost(100.0),
    },
    Row {
        id: "hostcall/add_header",
        what: "add a header (`proxy_add_header_map_value`)",
        goal: Goal::AtMost(100.0),
    },
    Row {
        id: "hostcall/get_pairs_20",
        what: "all pairs of a 20-header map (`proxy_get_header_map_pairs`)",
        goal: Goal::None,
    },
    Row {
        id: "hostcall/get_body_64k",
        what: "get a 64 KiB body (`proxy_get_buffer_bytes`)",
        goal: Goal::TimesOf(2.0, "hostcall/memcpy_64k"),
    },
    Row {
        id: "hostcall/set_body_64k",
        what: "set a 64 KiB body (`proxy_set_buffer_bytes`)",
        goal: Goal::TimesOf(2.0, "hostcall/memcpy_64k"),
    },
    Row {
        id: "hostcall/memcpy_64k",
        what: "plain copy of 64 KiB (the yardstick)",
        goal: Goal::None,
    },
    Row {
        id: "callback/round_trip",
        what: "one callback round trip (`proxy_on_request_body`, empty)",
        goal: Goal::None,
    },
];

const LIFECYCLE: &[Row] = &[
    Row {
        id: "context/create_delete",
        what: "stream context create + delete",
        goal: Goal::AtMost(500.0),
    },
    Row {
        id: "stream/shared/add_header",
        what: "a whole stream through `add_header` (shared VM)",
        goal: Goal::AtMost(2000.0),
    },
    Row {
        id: "stream/per_stream/add_header",
        what: "a whole stream through `add_header` (VM per stream)",
        goal: Goal::None,
    },
    Row {
        id: "instantiate/per_stream/minimal",
        what: "per-stream instantiation, minimal module",
        goal: Goal::AtMost(10_000.0),
    },
    Row {
        id: "instantiate/per_stream/add_header",
        what: "per-stream instantiation, `add_header`",
        goal: Goal::None,
    },
    Row {
        id: "instantiate/on_demand/minimal",
        what: "VM start + configure, minimal module",
        goal: Goal::None,
    },
    Row {
        id: "instantiate/on_demand/add_header",
        what: "VM start + configure, `add_header`",
        goal: Goal::None,
    },
];

/// Pairs whose ratio is a goal: (what, with, without, at most).
const OVERHEADS: &[(&str, &str, &str, f64)] = &[
    (
        "CPU deadlines (epoch checks) on a CPU-heavy callback",
        "epoch/cpu_heavy/deadlines",
        "epoch/cpu_heavy/no_deadlines",
        1.10,
    ),
    (
        "fuel on a CPU-heavy callback",
        "fuel/cpu_heavy/fuel",
        "fuel/cpu_heavy/no_fuel",
        f64::INFINITY,
    ),
    (
        "fuel on a byte-scanning callback",
        "fuel/scan/fuel",
        "fuel/scan/no_fuel",
        f64::INFINITY,
    ),
];

fn duration(ns: f64) -> String {
    if ns >= 1_000_000.0 {
        format!("{} ms", chart::number(ns / 1_000_000.0))
    } else if ns >= 1_000.0 {
        format!("{} µs", chart::number(ns / 1_000.0))
    } else {
        format!("{} ns", chart::number(ns))
    }
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "**not met**" }
}

fn rows(found: &BTreeMap<String, Estimate>, rows: &[Row]) -> Vec<Vec<String>> {
    rows.iter()
        .map(|row| {
            let Some(e) = found.get(row.id) else {
                return vec![
                    row.what.into(),
                    format!("`{}`", row.id),
                    "not run".into(),
                    String::new(),
                    String::new(),
                ];
            };
            let (goal, met) = match row.goal {
                Goal::None => (String::new(), String::new()),
                Goal::AtMost(ns) => (
                    format!("≤ {}", duration(ns)),
                    verdict(e.median <= ns).into(),
                ),
                Goal::TimesOf(times, of) => match found.get(of) {
                    Some(base) => (
                        format!(
                            "≤ {times}× `{of}` ({}×)",
                            chart::number(e.median / base.median)
                        ),
                        verdict(e.median <= times * base.median).into(),
                    ),
                    None => (format!("≤ {times}× `{of}`"), "not run".into()),
                },
            };
            vec![
                row.what.into(),
                format!("`{}`", row.id),
                format!(
                    "{} ({} – {})",
                    duration(e.median),
                    duration(e.median_low),
                    duration(e.median_high)
                ),
                goal,
                met,
            ]
        })
        .collect()
}

fn chart(
    found: &BTreeMap<String, Estimate>,
    rows: &[Row],
    title: &str,
    unit: &str,
    scale: f64,
) -> Chart {
    Chart {
        title: title.into(),
        unit: unit.into(),
        series: vec!["median".into()],
        bars: rows
            .iter()
            .filter_map(|row| {
                found.get(row.id).map(|e| Bar {
                    label: row.id.into(),
                    value: e.median / scale,
                    series: 0,
                })
            })
            .collect(),
        marker: None,
    }
}

fn memory(target: &std::path::Path) -> Result<Option<serde_json::Value>> {
    let path = target.join("wasmbridge-bench/memory.json");
    match std::fs::read(&path) {
        Ok(bytes) => Ok(Some(
            serde_json::from_slice(&bytes).with_context(|| path.display().to_string())?,
        )),
        Err(_) => Ok(None),
    }
}

fn report(target: &std::path::Path, out: &std::path::Path) -> Result<()> {
    let found = criterion::read_all(&target.join("criterion"))?;
    if found.is_empty() {
        bail!(
            "no criterion results under {} (run `cargo bench -p wasmbridge-host` first)",
            target.join("criterion").display()
        );
    }
    std::fs::create_dir_all(out).with_context(|| out.display().to_string())?;
    let headers = ["what", "benchmark", "median (95 % CI)", "goal", "verdict"];
    let mut md = String::new();
    md.push_str("# Micro-benchmarks\n\n");
    md.push_str("Written by `make bench` (`cargo bench -p wasmbridge-host`, then `wasmbridge-bench-report`): criterion's median of each benchmark, with its 95 % confidence interval, from the run of ");
    md.push_str(&wasmbridge_bench::environment::describe());
    md.push_str(". The sources say what each measures: `module/host/benches/hostcalls.rs`, `pool.rs` and `memory.rs`.\n\n");
    md.push_str("## Hostcalls\n\nEach figure is one call, made in a loop by a WAT guest on a warm shared VM; the request has 20 headers.\n\n");
    md.push_str(&chart::table(&headers, &rows(&found, HOSTCALLS)));
    md.push_str("\n![hostcalls](micro-hostcalls.svg)\n\n");
    md.push_str("## Streams and VMs\n\n");
    md.push_str(&chart::table(&headers, &rows(&found, LIFECYCLE)));
    md.push_str("\n![streams and VMs](micro-lifecycle.svg)\n\n");
    md.push_str("## Limits\n\nThe price of a limit: the same callback with it and without.\n\n");
    let overheads: Vec<Vec<String>> = OVERHEADS
        .iter()
        .map(
            |(what, with, without, most)| match (found.get(*with), found.get(*without)) {
                (Some(a), Some(b)) => {
                    let ratio = a.median / b.median;
                    vec![
                        (*what).into(),
                        format!("{} vs {}", duration(a.median), duration(b.median)),
                        format!("{:+.1} %", (ratio - 1.0) * 100.0),
                        if most.is_finite() {
                            format!("≤ {:+.0} %", (most - 1.0) * 100.0)
                        } else {
                            String::new()
                        },
                        if most.is_finite() {
                            verdict(ratio <= *most).into()
                        } else {
                            String::new()
                        },
                    ]
                }
                _ => vec![
                    (*what).into(),
                    "not run".into(),
                    String::new(),
                    String::new(),
                    String::new(),
                ],
            },
        )
        .collect();
    md.push_str(&chart::table(
        &["what", "with vs without", "cost", "goal", "verdict"],
        &overheads,
    ));
    md.push_str("\n## Memory\n\nResident memory a process gains by loading the Rust SDK `add_header` filter (`memory.rs`; median of fresh processes).\n\n");
    match memory(target)? {
        Some(m) => {
            let kib = |key: &str| m[key].as_f64().unwrap_or(f64::NAN);
            let mib = |value: f64| format!("{} MiB", chart::number(value / 1024.0));
            let idle = kib("idle_replica_kib");
            let mut rows = Vec::new();
            for (what, rss, anon) in [
                (
                    "enabling wasm, module compiled at start-up",
                    "enable_wasm_kib",
                    "enable_wasm_anon_kib",
                ),
                (
                    "enabling wasm, module from the compile cache",
                    "cached_kib",
                    "cached_anon_kib",
                ),
            ] {
                let (rss, anon) = (kib(rss), kib(anon));
                rows.push(vec![
                    format!("{what}: engine, module, one started VM"),
                    mib(rss),
                    mib(anon),
                    "≤ 4 MiB".into(),
                    verdict(rss <= 4096.0).into(),
                ]);
            }
            rows.push(vec![
                format!("each further idle VM (of {} started)", m["replicas"]),
                format!("{} KiB", chart::number(idle)),
                String::new(),
                "≤ 64 KiB".into(),
                verdict(idle <= 64.0).into(),
            ]);
            md.push_str(&chart::table(
                &["what", "resident", "of it anonymous", "goal", "verdict"],
                &rows,
            ));
            md.push_str("\nCompiling pages the compiler's own code (cranelift, in the gateway binary) into memory; those pages are file-backed and reclaimable, but resident. With `server.compile_cache` every start after the first loads the compiled module instead.\n");
        }
        None => md.push_str("Not run.\n"),
    }
    std::fs::write(out.join("micro.md"), md)?;
    std::fs::write(
        out.join("micro-hostcalls.svg"),
        chart(&found, HOSTCALLS, "Hostcalls: one call (median)", "ns", 1.0).svg(),
    )?;
    std::fs::write(
        out.join("micro-lifecycle.svg"),
        chart(&found, LIFECYCLE, "Streams and VMs (median)", "µs", 1000.0).svg(),
    )?;
    println!("wrote {}", out.join("micro.md").display());
    Ok(())
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let mut target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| "target".into());
    let mut out = PathBuf::from("docs/benchmarks");
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--target", Some(value)) => target = value.into(),
            ("--out", Some(value)) => out = value.into(),
            _ => {
                eprintln!("usage: wasmbridge-bench-report [--target DIR] [--out DIR]");
                return ExitCode::from(2);
            }
        }
    }
    match report(&target, &out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wasmbridge-bench-report: {e:#}");
            ExitCode::FAILURE
        }
    }
}
