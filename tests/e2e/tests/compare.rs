//! `wasmbridge compare`: a scenario run through two proxies, with a deliberate difference
//! reported (and accepted once the scenario expects it), and a scenario that is the same
//! everywhere. Needs `wasmbridge-compare` beside `wasmbridge` (`make test` builds both).

use std::process::Output;

use wasmbridge_e2e::{scratch, wasmbridge};

/// Request trailers: the emulator runs `proxy_on_request_trailers` and passes them on;
/// Pingora 0.9 never surfaces request trailers, so the callback and the upstream's
/// trailers are missing there — a real difference between the two proxies.
const TRAILERS: &str = r#"
filter: hostcalls
request: {method: POST, body: abc, trailers: {x-req: one}}
configuration:
  on_request_trailers: [{call: get_header_map_value, map: request_trailers, key: x-req}]
"#;

fn compare(name: &str, scenario: &str, proxies: &str, extra: &[&str]) -> (Output, String) {
    let dir = scratch(name);
    let file = dir.join(format!("{name}.yaml"));
    std::fs::write(&file, scenario).expect("write the scenario");
    let file = file.display().to_string();
    let mut args = vec!["compare", file.as_str(), "--proxies", proxies];
    args.extend_from_slice(extra);
    let out = wasmbridge(&args);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out, text)
}

#[test]
fn a_difference_between_proxies_is_reported_and_fails_the_run() {
    let (out, text) = compare("trailers", TRAILERS, "emulator,pingora", &[]);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("trailers: differs"), "{text}");
    // The missing callback is a row of its own, present on the emulator only.
    let row = text
        .lines()
        .find(|l| l.contains(r#"log "probe on_request_trailers n=1""#))
        .unwrap_or_else(|| panic!("no row for the missing callback:\n{text}"));
    assert!(
        row.contains("logged") && row.contains("(none)"),
        "{row}\n{text}"
    );
    assert!(text.contains("upstream trailer x-req"), "{text}");
    assert!(
        text.contains("pingora differs from emulator: UNEXPECTED"),
        "{text}"
    );
    assert!(
        text.contains("1 case(s), 1 with an unexpected difference"),
        "{text}"
    );
}

#[test]
fn an_expected_difference_passes_with_its_reason() {
    let scenario = format!(
        "{TRAILERS}differences: {{pingora: Pingora 0.9 never surfaces request trailers}}\n"
    );
    let (out, text) = compare("trailers-expected", &scenario, "emulator,pingora", &[]);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains(
            "pingora differs from emulator as expected: Pingora 0.9 never surfaces request trailers"
        ),
        "{text}"
    );
}

#[test]
fn the_same_behaviour_is_reported_as_such_and_json_is_machine_readable() {
    let scenario = r#"
cases:
  - name: header
    filter: add_header
    configuration: {headers: {x-hello: compare}}
  - name: trailers
    filter: hostcalls
    request: {method: POST, body: abc, trailers: {x-req: one}}
"#;
    let (out, text) = compare("same", scenario, "emulator,pingora", &["--json"]);
    // The second case differs (trailers), so the run fails; the JSON says which.
    assert_eq!(out.status.code(), Some(1), "{text}");
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert_eq!(report["reference"], "emulator");
    assert_eq!(report["unexpected"], 1);
    let cases = report["cases"].as_array().expect("cases");
    assert_eq!(cases[0]["id"], "same/header");
    assert_eq!(cases[0]["same"], true, "{text}");
    assert_eq!(cases[1]["same"], false);
    assert!(
        cases[1]["differences"]
            .as_array()
            .expect("rows")
            .iter()
            .any(|r| r["field"] == "upstream trailer x-req"
                && r["values"]["emulator"] == "one"
                && r["values"]["pingora"].is_null()),
        "{text}"
    );
}

#[test]
fn an_unknown_proxy_is_named() {
    let (out, text) = compare("unknown", TRAILERS, "emulator,nginx", &[]);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains("unknown proxy `nginx`"), "{text}");
}

#[test]
fn a_real_envoy_is_the_reference_and_agrees_on_a_header_filter() {
    if wasmbridge_e2e::envoy_or_skip("a_real_envoy_is_the_reference_and_agrees_on_a_header_filter")
        .is_none()
    {
        return;
    }
    let scenario = "filter: add_header\nconfiguration: {headers: {x-hello: compare}}\n";
    let (out, text) = compare("envoy-header", scenario, "envoy,pingora,emulator", &[]);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("envoy-header: the same on envoy, pingora, emulator"),
        "{text}"
    );
    // Request trailers: Envoy and the emulator pass them on, Pingora 0.9 does not.
    let (out, text) = compare("envoy-trailers", TRAILERS, "envoy,pingora,emulator", &[]);
    assert_eq!(out.status.code(), Some(1), "{text}");
    let row = text
        .lines()
        .find(|l| l.contains("upstream trailer x-req"))
        .unwrap_or_else(|| panic!("no trailer row:\n{text}"));
    let cells: Vec<&str> = row.split('|').map(str::trim).collect();
    assert_eq!(cells[1..], ["one", "(none)", "one"], "{text}");
    assert!(
        text.contains("pingora differs from envoy: UNEXPECTED"),
        "{text}"
    );
}
