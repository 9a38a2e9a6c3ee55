//! The Proxy-Wasm conformance suite: cases as YAML data, run against every target.
//!
//! A case names the plugins (a compiled filter or inline WAT, with configurations), the
//! request, the upstream's reply, and what must be observed: the outcome, status, response
//! headers and body, what the upstream received, guest log lines and callback order. Each
//! case runs once per target; a target turns the case into an [`Observation`] and
//! [`check`] compares it with the expectations.
//!
//! Case files live under `cases/<spec-section>/<name>.yaml`. A file holds one case, or
//! `defaults` plus a list of `cases` (each merged over the defaults), or a `matrix` that
//! expands one hostcall step into one case per callback with the status expected there.
//! The format is documented in `tests/conformance/README.md`.
//!
//! The case data also generates two pages of the docs ([`docs`]): the support tables
//! (`docs/support.md`, with the cases that exercise each catalogue entry) and the results
//! per target (`docs/conformance.md`, from the cases and `known_failures.yaml`).

pub mod case;
pub mod compare;
pub mod coverage;
pub mod docs;
pub mod emulator;
pub mod envoy;
pub mod known;
pub mod pingora;
pub mod tower;
mod upstream;

use std::path::PathBuf;
use std::sync::Arc;

pub use case::{Case, MatrixCell, load_cases, load_file};
pub use known::KnownFailures;

/// How an exchange ended, as the client saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// A complete response.
    Response,
    /// The stream was reset or the connection closed without a response.
    Reset,
    /// Nothing came back: a plugin paused and nobody resumed it.
    Stalled,
}

/// What the upstream received.
#[derive(Debug, Clone, Default)]
pub struct Seen {
    /// Method.
    pub method: String,
    /// Path with query.
    pub path: String,
    /// Headers, lower-case names, in order (no pseudo-headers).
    pub headers: Vec<(String, String)>,
    /// Body bytes.
    pub body: Vec<u8>,
    /// Trailers, lower-case names, in order.
    pub trailers: Vec<(String, String)>,
}

/// What one target observed for one case.
#[derive(Debug, Clone)]
pub struct Observation {
    /// How it ended.
    pub outcome: Outcome,
    /// Response status (0 unless a response).
    pub status: u16,
    /// Response headers, lower-case names (no pseudo-headers).
    pub headers: Vec<(String, String)>,
    /// Response body.
    pub body: Vec<u8>,
    /// Response trailers, lower-case names, in order.
    pub trailers: Vec<(String, String)>,
    /// What the upstream received, if it was reached.
    pub upstream: Option<Seen>,
    /// Guest log messages, in order.
    pub logs: Vec<String>,
}

/// A conformance target: runs a case and reports what it saw.
pub trait Target {
    /// The target's name (`emulator`, `pingora`, `tower`, `envoy`).
    fn name(&self) -> &'static str;
    /// Runs the case. `Err` means the case could not be run at all (e.g. a filter that does
    /// not load where the case expects it to).
    fn run(&self, case: &Case) -> anyhow::Result<Observation>;
    /// Why the target cannot run here (a program it needs is not installed), if so: its
    /// trials are then replaced by one that prints `SKIPPED: <reason>` and passes.
    fn unavailable(&self) -> Option<String> {
        None
    }
}

/// Every target, in the order trials and the results page list them.
pub fn targets() -> Vec<Arc<dyn Target + Send + Sync>> {
    vec![
        Arc::new(emulator::Emulator),
        Arc::new(pingora::Pingora),
        Arc::new(tower::Tower),
        Arc::new(envoy::Envoy),
    ]
}

/// The target called `name` (`emulator`, `pingora`, ...), if there is one.
pub fn target(name: &str) -> Option<Arc<dyn Target + Send + Sync>> {
    targets().into_iter().find(|t| t.name() == name)
}

/// This suite's directory.
pub fn suite_dir() -> PathBuf {
    wasmbridge_e2e::repo_root().join("tests/conformance")
}

/// Compares an observation with a case's expectations; returns every mismatch.
pub fn check(case: &Case, seen: &Observation) -> Vec<String> {
    let want = &case.expect;
    let mut bad = Vec::new();
    let outcome = want.outcome.unwrap_or(Outcome::Response);
    if seen.outcome != outcome {
        bad.push(format!("outcome: want {outcome:?}, got {:?}", seen.outcome));
        return bad;
    }
    if let Some(status) = want.status
        && seen.status != status
    {
        bad.push(format!("status: want {status}, got {}", seen.status));
    }
    check_headers(
        "response header",
        &want.headers,
        &want.headers_absent,
        &seen.headers,
        &mut bad,
    );
    check_body("body", want.body.as_deref(), &seen.body, &mut bad);
    check_headers(
        "response trailer",
        &want.trailers,
        &want.trailers_absent,
        &seen.trailers,
        &mut bad,
    );
    if let Some(up) = &want.upstream {
        match (&seen.upstream, up.reached.unwrap_or(true)) {
            (None, true) => bad.push("upstream: want reached, was not".into()),
            (Some(_), false) => bad.push("upstream: want not reached, was".into()),
            (None, false) => {}
            (Some(s), true) => {
                if let Some(m) = &up.method
                    && &s.method != m
                {
                    bad.push(format!("upstream method: want {m}, got {}", s.method));
                }
                if let Some(p) = &up.path
                    && &s.path != p
                {
                    bad.push(format!("upstream path: want {p}, got {}", s.path));
                }
                check_headers(
                    "upstream header",
                    &up.headers,
                    &up.headers_absent,
                    &s.headers,
                    &mut bad,
                );
                check_body("upstream body", up.body.as_deref(), &s.body, &mut bad);
                check_headers("upstream trailer", &up.trailers, &[], &s.trailers, &mut bad);
            }
        }
    }
    // Expected log lines appear in this order (other lines may come between them).
    let mut at = 0;
    for line in &want.logs {
        match seen.logs[at..].iter().position(|l| log_matches(line, l)) {
            Some(i) => at += i + 1,
            None => {
                let anywhere = seen.logs.iter().any(|l| log_matches(line, l));
                bad.push(if anywhere {
                    format!("log line out of order: {line:?}")
                } else {
                    format!("log line missing: {line:?}")
                });
            }
        }
    }
    for line in &want.logs_absent {
        if let Some(l) = seen.logs.iter().find(|l| l.contains(line.as_str())) {
            bad.push(format!("log line must not appear: {l:?}"));
        }
    }
    if let Some(order) = &want.callbacks {
        let got: Vec<&str> = seen
            .logs
            .iter()
            .filter_map(|l| l.strip_prefix("lifecycle "))
            .map(|l| l.split(' ').next().unwrap_or(""))
            .collect();
        if got != order.iter().map(String::as_str).collect::<Vec<_>>() {
            bad.push(format!("callbacks: want {order:?}, got {got:?}"));
        }
    }
    if !bad.is_empty() {
        bad.push(format!("guest log:\n    {}", seen.logs.join("\n    ")));
    }
    bad
}

/// An expected line matches exactly, where each `*` stands for any run of characters.
fn log_matches(want: &str, got: &str) -> bool {
    let mut parts = want.split('*');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = got.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

fn check_body(what: &str, want: Option<&str>, got: &[u8], bad: &mut Vec<String>) {
    if let Some(want) = want
        && got != want.as_bytes()
    {
        bad.push(format!(
            "{what}: want {want:?}, got {:?}",
            String::from_utf8_lossy(got)
        ));
    }
}

fn check_headers(
    what: &str,
    want: &[(String, case::Values)],
    absent: &[String],
    got: &[(String, String)],
    bad: &mut Vec<String>,
) {
    for (name, values) in want {
        let have: Vec<&str> = got
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect();
        let expected = values.as_slice();
        if have != expected {
            bad.push(format!("{what} {name}: want {expected:?}, got {have:?}"));
        }
    }
    for name in absent {
        if got.iter().any(|(k, _)| k.eq_ignore_ascii_case(name)) {
            bad.push(format!("{what} {name}: want absent, present"));
        }
    }
}
