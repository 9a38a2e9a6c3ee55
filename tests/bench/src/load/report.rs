//! `load.md` and its charts: a table per worker count, wasmbridge against Envoy and against
//! plain Pingora, the issue's targets with the measured figure and whether each is met, and
//! every run.

use std::fmt::Write as _;

use crate::chart::{Bar, Chart, number, table};
use crate::load::run::Settings;
use crate::load::stats::{Key, Results};
use crate::load::{Case, Proxy};

/// How a benchmark was produced, for the page's first section.
#[derive(Debug, Clone, Default)]
pub struct Provenance {
    /// The command line, as run.
    pub command: String,
    /// UTC time of the start.
    pub date: String,
    pub cpu: String,
    pub cores: usize,
    pub kernel: String,
    pub wrk: String,
    /// Envoy's version line, or why Envoy did not take part.
    pub envoy: String,
    pub gateway: String,
    /// Lines to show under "Notes" (skipped proxies and the like).
    pub notes: Vec<String>,
}

/// The files a report consists of.
#[derive(Debug, Clone)]
pub struct Report {
    pub markdown: String,
    pub throughput_svg: String,
    pub latency_svg: String,
}

/// File names, relative to the output directory.
pub const MARKDOWN: &str = "load.md";
pub const THROUGHPUT_SVG: &str = "load-throughput.svg";
pub const LATENCY_SVG: &str = "load-latency.svg";

/// One of the issue's targets, as measured.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub target: String,
    pub workers: usize,
    pub measured: String,
    /// `None`: not measured (a case not run, or only runs with errors).
    pub met: Option<bool>,
}

fn percent(ratio: Option<f64>) -> String {
    ratio.map_or("—".into(), |r| format!("{} %", number(r * 100.0)))
}

fn signed(value: Option<f64>) -> String {
    match value {
        Some(v) if v >= 0.0 => format!("+{}", number(v)),
        Some(v) => number(v),
        None => "—".into(),
    }
}

fn opt(value: Option<f64>) -> String {
    value.map_or("—".into(), number)
}

fn mib(kib: f64) -> f64 {
    kib / 1024.0
}

/// The targets of issue 7, for one worker count.
pub fn verdicts(results: &Results, workers: usize) -> Vec<Verdict> {
    let key = |proxy, case| Key {
        proxy,
        case,
        workers,
    };
    let wb = |case| key(Proxy::Wasmbridge, case);
    let mut out = Vec::new();
    let mut push = |target: &str, measured: Option<(String, bool)>| {
        out.push(Verdict {
            target: target.to_string(),
            workers,
            measured: measured
                .as_ref()
                .map_or("not measured".into(), |(m, _)| m.clone()),
            met: measured.map(|(_, met)| met),
        });
    };
    push(
        "no-op plugin ≥ 97 % of no-plugin throughput",
        results
            .throughput_ratio(wb(Case::Noop))
            .map(|r| (percent(Some(r)), r >= 0.97)),
    );
    push(
        "add-header plugin ≥ 95 % of no-plugin throughput",
        results
            .throughput_ratio(wb(Case::AddHeader))
            .map(|r| (percent(Some(r)), r >= 0.95)),
    );
    push(
        "p99 added by one header plugin ≤ 5 µs (one connection, no queueing)",
        results
            .added_unloaded_p99_us(wb(Case::AddHeader))
            .map(|v| (format!("{} µs", signed(Some(v))), v <= 5.0)),
    );
    push(
        "p99 added by one header plugin at saturation (32 connections; queueing included)",
        results
            .added_p99_us(wb(Case::AddHeader))
            .map(|v| (format!("{} µs", signed(Some(v))), v <= 5.0)),
    );
    push(
        "wasm adds ≤ 2 µs CPU per request per header filter (add_header)",
        results
            .added_cpu_us(wb(Case::AddHeader))
            .map(|v| (format!("{} µs", signed(Some(v))), v <= 2.0)),
    );
    push(
        "wasm adds ≤ 2 µs CPU per request per header filter (chain3 ÷ 3)",
        results
            .added_cpu_us(wb(Case::Chain3))
            .map(|v| (format!("{} µs", signed(Some(v / 3.0))), v / 3.0 <= 2.0)),
    );
    push(
        "enabling wasm adds ≤ 4 MiB RSS (noop − none)",
        results
            .added_rss_mib(wb(Case::Noop))
            .map(|v| (format!("{} MiB", signed(Some(v))), v <= 4.0)),
    );
    push(
        "enabling wasm adds ≤ 4 MiB RSS, anonymous part only (noop − none)",
        results
            .added_anon_mib(wb(Case::Noop))
            .map(|v| (format!("{} MiB", signed(Some(v))), v <= 4.0)),
    );
    for case in Case::ALL.into_iter().filter(|c| !c.is_baseline()) {
        let k = wb(case);
        let ratio = results.paired(k, k.on(Proxy::Envoy), |a, b| {
            a.wrk.requests_per_sec / b.wrk.requests_per_sec
        });
        let p99 = results.median(k, |s| s.wrk.p99_us);
        let envoy_p99 = results.median(k.on(Proxy::Envoy), |s| s.wrk.p99_us);
        let measured = match (ratio, p99, envoy_p99) {
            (Some(r), Some(p), Some(e)) => Some((
                format!("{}× ; p99 {} µs vs {} µs", number(r), number(p), number(e)),
                r >= 1.6 && p < e,
            )),
            _ => None,
        };
        push(
            &format!("≥ 1.6× Envoy+V8 throughput with lower p99 ({case})"),
            measured,
        );
    }
    out
}

/// Builds the page and the charts.
pub fn report(settings: &Settings, results: &Results, provenance: &Provenance) -> Report {
    let mut md = String::new();
    let _ = writeln!(md, "# Load benchmark\n");
    let _ = writeln!(
        md,
        "Loopback: wrk → proxy → one fast upstream (hyper, one thread), all on this machine, \
         so load generator, proxy and upstream share its cores. Each proxy is started afresh \
         for every run, warmed up for {} s, then measured for {} s with `wrk -t1 -c{} \
         --latency`. Every (proxy, case, workers) combination runs once per round, in an order \
         rotated between rounds; figures are medians over the {} round(s). Ratios and \
         differences are taken against the same proxy's no-plugin run on the same path \
         (`none`, or `none64k` for `body64k`) with the same workers **in the same round**, then the median is taken. Runs with errors (non-2xx answers \
         or socket errors) are left out of every figure and listed below.\n",
        settings.warmup_s, settings.duration_s, settings.connections, settings.rounds
    );
    let _ = writeln!(md, "## How it was produced\n");
    let _ = writeln!(md, "```sh\n{}\n```\n", provenance.command);
    let info = [
        ("Date (UTC)", provenance.date.clone()),
        ("CPU", provenance.cpu.clone()),
        ("Cores", provenance.cores.to_string()),
        ("Kernel", provenance.kernel.clone()),
        ("wrk", provenance.wrk.clone()),
        ("Envoy", provenance.envoy.clone()),
        ("Gateway", provenance.gateway.clone()),
        (
            "Settings",
            format!(
                "duration {} s, warm-up {} s, {} connections, {} round(s), workers {}",
                settings.duration_s,
                settings.warmup_s,
                settings.connections,
                settings.rounds,
                settings
                    .workers
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ),
    ];
    let rows: Vec<Vec<String>> = info.into_iter().map(|(k, v)| vec![k.into(), v]).collect();
    md.push_str(&table(&["what", "value"], &rows));
    md.push('\n');
    for note in &provenance.notes {
        let _ = writeln!(md, "- {note}");
    }
    if !provenance.notes.is_empty() {
        md.push('\n');
    }
    let _ = writeln!(md, "Cases:\n");
    for case in &settings.cases {
        let _ = writeln!(
            md,
            "- `{case}` (`GET {}`): {}",
            case.path(),
            case.description()
        );
    }
    md.push('\n');
    let _ = writeln!(
        md,
        "Proxies: `wasmbridge` (the gateway, `server.threads` = workers), `envoy` (Envoy with \
         V8 on the bootstrap `wasmbridge envoy-config` makes of the same file, `--concurrency` \
         = workers), `pingora` (plain Pingora without wasm, `wasmbridge-plain-pingora`, \
         no-plugin cases only). CPU is the proxy process's user + system time across the measured \
         run divided by its requests; RSS is `VmRSS` after the run.\n"
    );

    for &workers in &settings.workers {
        let _ = writeln!(md, "## {workers} worker(s)\n");
        let mut rows = Vec::new();
        for &proxy in &settings.proxies {
            for &case in &settings.cases {
                if !proxy.runs(case) {
                    continue;
                }
                let key = Key {
                    proxy,
                    case,
                    workers,
                };
                let all = results.all(key).count();
                if all == 0 {
                    continue;
                }
                let ok = results.ok(key).count();
                let baseline = case.is_baseline();
                rows.push(vec![
                    proxy.to_string(),
                    case.to_string(),
                    opt(results.median(key, |s| s.wrk.requests_per_sec)),
                    if baseline {
                        "baseline".into()
                    } else {
                        percent(results.throughput_ratio(key))
                    },
                    opt(results.median(key, |s| s.wrk.p50_us)),
                    opt(results.median(key, |s| s.wrk.p99_us)),
                    if baseline {
                        "".into()
                    } else {
                        signed(results.added_p99_us(key))
                    },
                    opt(results.median(key, |s| s.latency.as_ref().map_or(f64::NAN, |l| l.p50_us))),
                    opt(results.median(key, |s| s.latency.as_ref().map_or(f64::NAN, |l| l.p99_us))),
                    opt(results.median(key, |s| s.cpu_us_per_request)),
                    if baseline {
                        "".into()
                    } else {
                        signed(results.added_cpu_us(key))
                    },
                    opt(results.median(key, |s| mib(s.rss_kib as f64))),
                    opt(results.median(key, |s| mib(s.hwm_kib as f64))),
                    opt(results.median(key, |s| mib(s.anon_kib as f64))),
                    format!("{ok}/{all}"),
                ]);
            }
        }
        md.push_str(&table(
            &[
                "proxy",
                "case",
                "req/s",
                "vs baseline",
                "p50 µs",
                "p99 µs",
                "added p99 µs",
                "1-conn p50 µs",
                "1-conn p99 µs",
                "CPU µs/req",
                "added CPU µs",
                "RSS MiB",
                "peak RSS MiB",
                "anon RSS MiB",
                "runs ok",
            ],
            &rows,
        ));
        md.push('\n');
    }

    if settings.proxies.contains(&Proxy::Wasmbridge) && settings.proxies.contains(&Proxy::Envoy) {
        let _ = writeln!(
            md,
            "## wasmbridge ÷ Envoy\n\nThroughput ratio per round (same case, same workers), \
             then the median.\n"
        );
        let mut rows = Vec::new();
        for &workers in &settings.workers {
            for &case in &settings.cases {
                let k = Key {
                    proxy: Proxy::Wasmbridge,
                    case,
                    workers,
                };
                let e = k.on(Proxy::Envoy);
                if results.all(k).count() == 0 || results.all(e).count() == 0 {
                    continue;
                }
                rows.push(vec![
                    case.to_string(),
                    workers.to_string(),
                    opt(results.median(k, |s| s.wrk.requests_per_sec)),
                    opt(results.median(e, |s| s.wrk.requests_per_sec)),
                    results
                        .paired(k, e, |a, b| a.wrk.requests_per_sec / b.wrk.requests_per_sec)
                        .map_or("—".into(), |r| format!("{}×", number(r))),
                    opt(results.median(k, |s| s.wrk.p99_us)),
                    opt(results.median(e, |s| s.wrk.p99_us)),
                    opt(results.median(k, |s| s.cpu_us_per_request)),
                    opt(results.median(e, |s| s.cpu_us_per_request)),
                ]);
            }
        }
        md.push_str(&table(
            &[
                "case",
                "workers",
                "wasmbridge req/s",
                "Envoy req/s",
                "wasmbridge ÷ Envoy",
                "wasmbridge p99 µs",
                "Envoy p99 µs",
                "wasmbridge CPU µs/req",
                "Envoy CPU µs/req",
            ],
            &rows,
        ));
        md.push('\n');
    }

    if settings.proxies.contains(&Proxy::Wasmbridge) && settings.proxies.contains(&Proxy::Pingora) {
        let _ = writeln!(
            md,
            "## wasmbridge with no plugin vs plain Pingora\n\nWhat the gateway costs before any \
             plugin runs (routing, the wasm layer's hooks with an empty chain): per round, then \
             the median.\n"
        );
        let mut rows = Vec::new();
        for &workers in &settings.workers {
            for &case in settings.cases.iter().filter(|c| c.is_baseline()) {
                let p = Key {
                    proxy: Proxy::Pingora,
                    case,
                    workers,
                };
                let w = p.on(Proxy::Wasmbridge);
                rows.push(vec![
                    case.to_string(),
                    workers.to_string(),
                    opt(results.median(p, |s| s.wrk.requests_per_sec)),
                    opt(results.median(w, |s| s.wrk.requests_per_sec)),
                    percent(
                        results
                            .paired(w, p, |a, b| a.wrk.requests_per_sec / b.wrk.requests_per_sec),
                    ),
                    signed(results.paired(w, p, |a, b| a.wrk.p99_us - b.wrk.p99_us)),
                    signed(
                        results.paired(w, p, |a, b| a.cpu_us_per_request - b.cpu_us_per_request),
                    ),
                    signed(results.paired(w, p, |a, b| mib(a.rss_kib as f64 - b.rss_kib as f64))),
                ]);
            }
        }
        md.push_str(&table(
            &[
                "case",
                "workers",
                "Pingora req/s",
                "wasmbridge req/s",
                "wasmbridge ÷ Pingora",
                "added p99 µs",
                "added CPU µs/req",
                "added RSS MiB",
            ],
            &rows,
        ));
        md.push('\n');
    }

    let _ = writeln!(md, "## Targets (issue 7)\n");
    let mut rows = Vec::new();
    for &workers in &settings.workers {
        for v in verdicts(results, workers) {
            rows.push(vec![
                v.target,
                v.workers.to_string(),
                v.measured,
                match v.met {
                    Some(true) => "met".into(),
                    Some(false) => "**not met**".into(),
                    None => "—".into(),
                },
            ]);
        }
    }
    md.push_str(&table(&["target", "workers", "measured", "met"], &rows));
    md.push('\n');

    let failed: Vec<_> = results.samples.iter().filter(|s| !s.ok()).collect();
    if !failed.is_empty() {
        let _ = writeln!(md, "## Runs with errors\n");
        for s in failed {
            let _ = writeln!(
                md,
                "- round {}, {} {} {}w: {} requests, {} non-2xx, {} socket errors",
                s.round + 1,
                s.proxy,
                s.case,
                s.workers,
                s.wrk.requests,
                s.wrk.non_2xx,
                s.wrk.socket_errors
            );
        }
        md.push('\n');
    }

    let _ = writeln!(md, "## Every run\n");
    let rows: Vec<Vec<String>> = results
        .samples
        .iter()
        .map(|s| {
            vec![
                (s.round + 1).to_string(),
                s.proxy.to_string(),
                s.case.to_string(),
                s.workers.to_string(),
                number(s.wrk.requests_per_sec),
                number(s.wrk.p50_us),
                number(s.wrk.p99_us),
                number(s.cpu_us_per_request),
                number(mib(s.rss_kib as f64)),
                s.wrk.errors().to_string(),
            ]
        })
        .collect();
    md.push_str(&table(
        &[
            "round",
            "proxy",
            "case",
            "workers",
            "req/s",
            "p50 µs",
            "p99 µs",
            "CPU µs/req",
            "RSS MiB",
            "errors",
        ],
        &rows,
    ));
    md.push('\n');
    let _ = writeln!(
        md,
        "Charts: [throughput]({THROUGHPUT_SVG}), [p99 latency]({LATENCY_SVG})."
    );

    let (throughput_svg, latency_svg) = charts(settings, results);
    Report {
        markdown: md,
        throughput_svg,
        latency_svg,
    }
}

fn charts(settings: &Settings, results: &Results) -> (String, String) {
    // Plain Pingora has no plugin cases, so no bar of the throughput chart.
    let with_plugins: Vec<Proxy> = settings
        .proxies
        .iter()
        .copied()
        .filter(|&p| p != Proxy::Pingora)
        .collect();
    let index =
        |proxies: &[Proxy], proxy: Proxy| proxies.iter().position(|&p| p == proxy).unwrap_or(0);
    let mut throughput = Chart {
        title: "Throughput with the plugin ÷ without (same proxy, workers, round; median)".into(),
        unit: "%".into(),
        series: with_plugins.iter().map(ToString::to_string).collect(),
        bars: Vec::new(),
        marker: Some((100.0, "no plugin".into())),
    };
    let mut latency = Chart {
        title: "p99 latency (median over rounds)".into(),
        unit: "µs".into(),
        series: settings.proxies.iter().map(ToString::to_string).collect(),
        bars: Vec::new(),
        marker: None,
    };
    for &workers in &settings.workers {
        for &case in &settings.cases {
            for &proxy in &settings.proxies {
                let key = Key {
                    proxy,
                    case,
                    workers,
                };
                let label = format!("{case}, {workers} worker(s) — {proxy}");
                if !case.is_baseline()
                    && let Some(r) = results.throughput_ratio(key)
                {
                    throughput.bars.push(Bar {
                        label: label.clone(),
                        value: r * 100.0,
                        series: index(&with_plugins, proxy),
                    });
                }
                if let Some(p99) = results.median(key, |s| s.wrk.p99_us) {
                    latency.bars.push(Bar {
                        label,
                        value: p99,
                        series: index(&settings.proxies, proxy),
                    });
                }
            }
        }
    }
    (throughput.svg(), latency.svg())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::stats::Sample;
    use crate::load::wrk::WrkResult;

    fn sample(proxy: Proxy, case: Case, rps: f64, p99: f64, cpu: f64, rss_mib: u64) -> Sample {
        Sample {
            proxy,
            case,
            workers: 1,
            round: 0,
            wrk: WrkResult {
                requests: rps as u64 * 10,
                requests_per_sec: rps,
                p50_us: p99 / 2.0,
                p99_us: p99,
                non_2xx: 0,
                socket_errors: 0,
            },
            cpu_us_per_request: cpu,
            rss_kib: rss_mib * 1024,
            hwm_kib: rss_mib * 1024,
            anon_kib: rss_mib * 1024 / 2,
            // One connection: a tenth of the loaded latency.
            latency: Some(WrkResult {
                requests: 100,
                requests_per_sec: 10.0,
                p50_us: p99 / 20.0,
                p99_us: p99 / 10.0,
                non_2xx: 0,
                socket_errors: 0,
            }),
        }
    }

    #[test]
    fn targets_are_judged_from_the_ratios() {
        use Case::*;
        use Proxy::*;
        let results = Results {
            samples: vec![
                sample(Wasmbridge, None, 1000.0, 100.0, 40.0, 20),
                sample(Wasmbridge, Noop, 980.0, 102.0, 40.5, 23),
                sample(Wasmbridge, AddHeader, 940.0, 104.0, 41.0, 23),
                sample(Envoy, None, 700.0, 200.0, 60.0, 50),
                sample(Envoy, AddHeader, 500.0, 300.0, 80.0, 60),
            ],
        };
        let v = verdicts(&results, 1);
        let find = |text: &str| v.iter().find(|v| v.target.contains(text)).unwrap();
        assert_eq!(find("no-op").met, Some(true));
        assert_eq!(find("no-op").measured, "98.0 %");
        assert_eq!(find("add-header plugin").met, Some(false));
        assert_eq!(find("p99 added").met, Some(true));
        assert_eq!(find("no queueing").measured, "+0.400 µs");
        assert_eq!(find("at saturation").measured, "+4.00 µs");
        assert_eq!(find("(add_header)").measured, "+1.00 µs");
        assert_eq!(find("(chain3").met, Option::None);
        assert_eq!(find("RSS").met, Some(true));
        let versus = find("Envoy+V8 throughput with lower p99 (add_header)");
        assert_eq!(versus.met, Some(true), "{versus:?}");
        assert!(versus.measured.starts_with("1.88×"), "{versus:?}");
    }

    #[test]
    fn the_page_has_a_row_per_case_and_both_charts() {
        use Case::*;
        use Proxy::*;
        let settings = Settings {
            proxies: vec![Wasmbridge, Envoy, Pingora],
            cases: vec![None, AddHeader],
            workers: vec![1],
            connections: 4,
            duration_s: 1,
            warmup_s: 1,
            latency_s: 1,
            rounds: 1,
        };
        let results = Results {
            samples: vec![
                sample(Wasmbridge, None, 1000.0, 100.0, 40.0, 20),
                sample(Wasmbridge, AddHeader, 940.0, 104.0, 41.0, 23),
                sample(Envoy, None, 700.0, 200.0, 60.0, 50),
                sample(Envoy, AddHeader, 500.0, 300.0, 80.0, 60),
                sample(Pingora, None, 1100.0, 90.0, 35.0, 8),
            ],
        };
        let r = report(&settings, &results, &Provenance::default());
        assert!(
            r.markdown
                .contains("| wasmbridge | add_header | 940 | 94.0 % |"),
            "{}",
            r.markdown
        );
        assert!(
            r.markdown.contains("| pingora | none | 1100 | baseline |"),
            "{}",
            r.markdown
        );
        assert!(
            r.markdown
                .contains("| none | 1 | 1100 | 1000 | 90.9 % | +10.0 |"),
            "{}",
            r.markdown
        );
        assert!(r.throughput_svg.contains("add_header, 1 worker(s) — envoy"));
        assert!(r.latency_svg.contains("none, 1 worker(s) — pingora"));
    }
}
