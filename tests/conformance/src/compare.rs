//! `wasmbridge compare`: the cases of a scenario run through several proxies, and what
//! each proxy observed set side by side.
//!
//! A scenario is a file in the conformance case format (`tests/conformance/README.md`);
//! its `expect` section may be left out, and `differences` names the proxies whose results
//! may differ from the reference's (the first proxy asked for), each with the reason.
//! Compared: the outcome, status, response headers, body and trailers, what the upstream
//! received, and the guest log lines (which include the callback order a probe logs).
//! Fields that legitimately vary between runs and proxies — dates, request ids, `server`,
//! hop-by-hop framing headers and the headers a proxy adds for the upstream — are left out.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use serde_json::{Value, json};

use crate::{Case, Observation, Target};

/// Headers no comparison looks at: they differ between runs or between proxies by design.
const IGNORED_HEADERS: [&str; 14] = [
    "date",
    "server",
    "x-request-id",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "via",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-envoy-upstream-service-time",
    "x-envoy-expected-rq-timeout-ms",
    "x-envoy-internal",
    "x-envoy-decorator-operation",
];

/// One field whose value is not the same on every proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// What is compared (`status`, `header x-foo`, `upstream body`, `log "..."`).
    pub field: String,
    /// Each proxy's value, in the order of the proxies; `None` when it has none.
    pub values: Vec<Option<String>>,
}

/// How one proxy's results stand against the reference's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// The proxy.
    pub proxy: String,
    /// The reason the scenario gives for a difference, when it expects one.
    pub expected: Option<String>,
    /// Whether anything differs from the reference.
    pub differs: bool,
}

/// The comparison of one case.
#[derive(Debug, Clone)]
pub struct CaseReport {
    /// The case id.
    pub id: String,
    /// The proxies, the reference first.
    pub proxies: Vec<String>,
    /// Every field that differs between any two proxies.
    pub rows: Vec<Row>,
    /// Each proxy after the reference.
    pub verdicts: Vec<Verdict>,
}

impl CaseReport {
    /// True when a proxy differs from the reference without the scenario expecting it.
    pub fn unexpected(&self) -> bool {
        self.verdicts
            .iter()
            .any(|v| v.differs && v.expected.is_none())
    }
}

/// Runs `case` through every target and compares what they saw.
pub fn compare(case: &Case, targets: &[Arc<dyn Target + Send + Sync>]) -> CaseReport {
    let facts: Vec<BTreeMap<String, String>> = targets
        .iter()
        .map(|t| match t.run(case) {
            Ok(seen) => facts_of(&seen),
            Err(e) => BTreeMap::from([("error".to_string(), format!("{e:#}"))]),
        })
        .collect();
    let proxies: Vec<String> = targets.iter().map(|t| t.name().to_string()).collect();
    report(case, proxies, &facts)
}

/// Compares the facts each proxy produced (in the order of `proxies`).
pub fn report(case: &Case, proxies: Vec<String>, facts: &[BTreeMap<String, String>]) -> CaseReport {
    let mut fields: Vec<&String> = Vec::new();
    for f in facts {
        for key in f.keys() {
            if !fields.contains(&key) {
                fields.push(key);
            }
        }
    }
    fields.sort_by_key(|f| field_rank(f));
    let mut rows = Vec::new();
    for field in fields {
        let values: Vec<Option<String>> = facts.iter().map(|f| f.get(field).cloned()).collect();
        if values.iter().any(|v| v != &values[0]) {
            rows.push(Row {
                field: field.clone(),
                values,
            });
        }
    }
    // Lines logged by some proxies and not others are rows already; the order only says
    // more when every line came everywhere.
    if rows.iter().any(|r| r.field.starts_with("log \"")) {
        rows.retain(|r| r.field != "log order");
    }
    let verdicts = proxies
        .iter()
        .enumerate()
        .skip(1)
        .map(|(i, proxy)| Verdict {
            proxy: proxy.clone(),
            expected: case.differences.get(proxy).cloned(),
            differs: rows.iter().any(|r| r.values[i] != r.values[0]),
        })
        .collect();
    CaseReport {
        id: case.id.clone(),
        proxies,
        rows,
        verdicts,
    }
}

/// Orders fields as a reader follows an exchange: the outcome, the upstream side, the
/// response, then the logs.
fn field_rank(field: &str) -> (u8, String) {
    let rank = match field.split(' ').next().unwrap_or_default() {
        "error" => 0,
        "outcome" => 1,
        "upstream" => 2,
        "status" => 3,
        "header" => 4,
        "body" => 5,
        "trailer" => 6,
        _ => 7,
    };
    (rank, field.to_string())
}

fn compared(name: &str) -> bool {
    !IGNORED_HEADERS.contains(&name)
}

/// Header lists as fields: each name once, its values joined in order.
fn header_facts(prefix: &str, headers: &[(String, String)], out: &mut BTreeMap<String, String>) {
    for (name, value) in headers.iter().filter(|(n, _)| compared(n)) {
        out.entry(format!("{prefix} {name}"))
            .and_modify(|v| {
                v.push_str(", ");
                v.push_str(value);
            })
            .or_insert_with(|| value.clone());
    }
}

/// What a comparison looks at in one observation, as named text values.
pub fn facts_of(seen: &Observation) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    out.insert("outcome".to_string(), format!("{:?}", seen.outcome));
    if seen.status != 0 {
        out.insert("status".to_string(), seen.status.to_string());
    }
    header_facts("header", &seen.headers, &mut out);
    out.insert("body".to_string(), show_bytes(&seen.body));
    header_facts("trailer", &seen.trailers, &mut out);
    match &seen.upstream {
        None => {
            out.insert("upstream".to_string(), "not reached".to_string());
        }
        Some(up) => {
            out.insert("upstream".to_string(), "reached".to_string());
            out.insert("upstream method".to_string(), up.method.clone());
            out.insert("upstream path".to_string(), up.path.clone());
            header_facts("upstream header", &up.headers, &mut out);
            out.insert("upstream body".to_string(), show_bytes(&up.body));
            header_facts("upstream trailer", &up.trailers, &mut out);
        }
    }
    // Each distinct log line with how often it came, and the order of them all: a missing
    // callback shows as its own line, not as every later line shifted.
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for line in &seen.logs {
        *counts.entry(line.as_str()).or_default() += 1;
    }
    for (line, n) in counts {
        out.insert(
            format!("log {line:?}"),
            if n == 1 {
                "logged".to_string()
            } else {
                format!("logged {n} times")
            },
        );
    }
    out.insert("log order".to_string(), seen.logs.join("\n"));
    out
}

fn show_bytes(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) => text.to_string(),
        Err(_) => format!("{} bytes, not UTF-8", bytes.len()),
    }
}

/// The widest a table cell is printed (the field column gets twice that).
const CELL: usize = 40;

fn cell(value: Option<&String>, width: usize) -> String {
    let text = match value {
        None => "(none)".to_string(),
        Some(v) if v.is_empty() => "(empty)".to_string(),
        Some(v) => v.replace('\n', " ⏎ "),
    };
    if text.chars().count() > width {
        let cut: String = text.chars().take(width - 1).collect();
        format!("{cut}…")
    } else {
        text
    }
}

/// The report as text: one line for a case that is the same everywhere, else a table of
/// the fields that differ and a line per proxy that differs.
pub fn render_text(report: &CaseReport) -> String {
    let mut out = String::new();
    if report.rows.is_empty() {
        let _ = writeln!(
            out,
            "{}: the same on {}",
            report.id,
            report.proxies.join(", ")
        );
        return out;
    }
    let _ = writeln!(out, "{}: differs", report.id);
    let mut table: Vec<Vec<String>> = vec![
        std::iter::once("field".to_string())
            .chain(report.proxies.iter().cloned())
            .collect(),
    ];
    for row in &report.rows {
        let mut line = vec![cell(Some(&row.field), 2 * CELL)];
        line.extend(row.values.iter().map(|v| cell(v.as_ref(), CELL)));
        table.push(line);
    }
    let widths: Vec<usize> = (0..table[0].len())
        .map(|c| {
            table
                .iter()
                .map(|r| r[c].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for (i, line) in table.iter().enumerate() {
        let cells: Vec<String> = line
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        let _ = writeln!(out, "  {}", cells.join(" | ").trim_end());
        if i == 0 {
            let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
            let _ = writeln!(out, "  {}", rule.join("-+-"));
        }
    }
    let reference = &report.proxies[0];
    for v in report.verdicts.iter().filter(|v| v.differs) {
        match &v.expected {
            Some(reason) => {
                let _ = writeln!(
                    out,
                    "  {} differs from {reference} as expected: {reason}",
                    v.proxy
                );
            }
            None => {
                let _ = writeln!(out, "  {} differs from {reference}: UNEXPECTED", v.proxy);
            }
        }
    }
    for v in report.verdicts.iter().filter(|v| !v.differs) {
        if let Some(reason) = &v.expected {
            let _ = writeln!(
                out,
                "  {} was expected to differ from {reference} ({reason}) but does not",
                v.proxy
            );
        }
    }
    out
}

/// The reports as JSON: `{"reference", "proxies", "unexpected", "cases": [...]}`.
pub fn render_json(reports: &[CaseReport]) -> Value {
    let cases: Vec<Value> = reports
        .iter()
        .map(|r| {
            let rows: Vec<Value> = r
                .rows
                .iter()
                .map(|row| {
                    let values: serde_json::Map<String, Value> = r
                        .proxies
                        .iter()
                        .zip(&row.values)
                        .map(|(p, v)| (p.clone(), json!(v)))
                        .collect();
                    json!({"field": row.field, "values": values})
                })
                .collect();
            let verdicts: Vec<Value> = r
                .verdicts
                .iter()
                .map(|v| json!({"proxy": v.proxy, "differs": v.differs, "expected": v.expected}))
                .collect();
            json!({
                "id": r.id,
                "same": r.rows.is_empty(),
                "unexpected": r.unexpected(),
                "differences": rows,
                "proxies": verdicts,
            })
        })
        .collect();
    json!({
        "reference": reports.first().map(|r| r.proxies[0].clone()),
        "proxies": reports.first().map(|r| r.proxies.clone()).unwrap_or_default(),
        "unexpected": reports.iter().filter(|r| r.unexpected()).count(),
        "cases": cases,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Outcome, Seen};

    fn observation(header: &str, logs: &[&str]) -> Observation {
        Observation {
            outcome: Outcome::Response,
            status: 200,
            headers: vec![("x-a".into(), header.into()), ("date".into(), "now".into())],
            body: b"ok".to_vec(),
            trailers: Vec::new(),
            upstream: Some(Seen::default()),
            logs: logs.iter().map(|l| l.to_string()).collect(),
        }
    }

    fn case(differences: &[(&str, &str)]) -> Case {
        // One file per call: the tests run at once.
        static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("wasmbridge-compare-{}-{call}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("scenario.yaml");
        std::fs::write(&file, "filter: add_header\n").expect("write");
        let mut c = crate::case::load_file(&file, "scenario")
            .expect("case")
            .remove(0);
        c.differences = differences
            .iter()
            .map(|(p, r)| (p.to_string(), r.to_string()))
            .collect();
        c
    }

    #[test]
    fn dates_are_ignored_and_a_changed_header_and_a_missing_log_line_are_rows() {
        let a = facts_of(&observation("1", &["one", "two"]));
        let mut other = observation("2", &["one"]);
        other.headers[1].1 = "later".into();
        let b = facts_of(&other);
        let r = report(&case(&[]), vec!["a".into(), "b".into()], &[a, b]);
        let fields: Vec<&str> = r.rows.iter().map(|r| r.field.as_str()).collect();
        assert_eq!(fields, ["header x-a", "log \"two\""]);
        assert_eq!(r.rows[1].values, [Some("logged".to_string()), None]);
        assert!(r.unexpected());
        assert!(render_text(&r).contains("b differs from a: UNEXPECTED"));
    }

    #[test]
    fn an_expected_difference_is_not_unexpected_and_shows_its_reason() {
        let a = facts_of(&observation("1", &[]));
        let b = facts_of(&observation("2", &[]));
        let r = report(
            &case(&[("b", "b adds its own value")]),
            vec!["a".into(), "b".into()],
            &[a.clone(), b],
        );
        assert!(!r.unexpected());
        assert!(render_text(&r).contains("as expected: b adds its own value"));
        let same = report(&case(&[]), vec!["a".into(), "c".into()], &[a.clone(), a]);
        assert!(same.rows.is_empty());
        assert_eq!(render_text(&same), "scenario: the same on a, c\n");
        assert_eq!(render_json(&[same])["unexpected"], 0);
    }
}
