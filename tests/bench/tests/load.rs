//! `wasmbridge-load --smoke` end to end: the debug gateway, plain Pingora and (when
//! installed) Envoy under a second of load each; the page has a row with a non-zero rate for
//! every proxy and case, and both charts are written. Skipped, with the reason printed,
//! when wrk is not installed.

use std::process::Command;

use wasmbridge_e2e::{binary, envoy_or_skip, scratch};

#[test]
fn smoke_run_writes_a_row_per_proxy_and_case_and_both_charts() {
    // wrk prints its version with its usage text and a failing status: only spawning counts.
    if let Err(e) = Command::new("wrk").arg("-v").output() {
        eprintln!("SKIPPED: smoke_run: wrk cannot run ({e}): install wrk");
        return;
    }
    let out = scratch("load-smoke");
    let mut command = Command::new(env!("CARGO_BIN_EXE_wasmbridge-load"));
    command
        .arg("--smoke")
        .arg("--gateway")
        .arg(binary())
        .arg("--plain-pingora")
        .arg(env!("CARGO_BIN_EXE_wasmbridge-plain-pingora"))
        .arg("--out")
        .arg(&out);
    let mut expected = vec![
        ("wasmbridge", "none"),
        ("wasmbridge", "add_header"),
        ("pingora", "none"),
    ];
    match envoy_or_skip("smoke_run (the envoy proxy)") {
        Some(envoy) => {
            command.arg("--envoy").arg(envoy);
            command.args(["--proxies", "wasmbridge,envoy,pingora"]);
            expected.extend([("envoy", "none"), ("envoy", "add_header")]);
        }
        None => {
            command.args(["--proxies", "wasmbridge,pingora"]);
        }
    }
    let output = command.output().expect("run wasmbridge-load");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "wasmbridge-load failed:\n{stderr}");

    let md = std::fs::read_to_string(out.join("load.md")).expect("load.md");
    for (proxy, case) in expected {
        let rate = md
            .lines()
            .find_map(|line| {
                let cells: Vec<&str> = line.split('|').map(str::trim).collect();
                // `| proxy | case | req/s | ...`: cells[0] is the empty text before the first `|`.
                (cells.len() > 3 && cells[1] == proxy && cells[2] == case).then(|| cells[3])
            })
            .unwrap_or_else(|| panic!("no row for {proxy} {case} in load.md:\n{md}"));
        let rate: f64 = rate
            .parse()
            .unwrap_or_else(|_| panic!("{proxy} {case}: req/s `{rate}`:\n{md}"));
        assert!(rate > 0.0, "{proxy} {case}: 0 req/s:\n{md}");
    }
    for svg in ["load-throughput.svg", "load-latency.svg"] {
        let text = std::fs::read_to_string(out.join(svg)).expect(svg);
        assert!(text.starts_with("<svg"), "{svg}: {text}");
    }
    let _ = std::fs::remove_dir_all(&out);
}
