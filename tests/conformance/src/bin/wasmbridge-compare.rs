//! `wasmbridge-compare` (run as `wasmbridge compare`): runs the cases of scenario files
//! through several proxies and prints what differs. Exits 0 when every difference is one
//! the scenario expects, 1 when a proxy differs unexpectedly, 2 on bad input.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use wasmbridge_conformance::compare::{compare, render_json, render_text};
use wasmbridge_conformance::{Target, load_file, targets};

/// Runs Proxy-Wasm scenarios through several proxies and shows what differs.
#[derive(Parser)]
#[command(name = "wasmbridge compare", version, about)]
struct Cli {
    /// Scenario files in the conformance case format.
    #[arg(required = true)]
    scenarios: Vec<PathBuf>,
    /// The proxies to compare, the reference first.
    #[arg(long, value_delimiter = ',', default_value = "envoy,pingora,tower")]
    proxies: Vec<String>,
    /// Print JSON instead of tables.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let all = targets();
    let mut chosen: Vec<Arc<dyn Target + Send + Sync>> = Vec::new();
    for name in &cli.proxies {
        match all.iter().find(|t| t.name() == name) {
            Some(t) => chosen.push(t.clone()),
            None => {
                let known: Vec<&str> = all.iter().map(|t| t.name()).collect();
                eprintln!(
                    "error: --proxies: unknown proxy `{name}` (known: {})",
                    known.join(", ")
                );
                return ExitCode::from(2);
            }
        }
    }
    if chosen.len() < 2 {
        eprintln!("error: --proxies: name at least two proxies to compare");
        return ExitCode::from(2);
    }
    let mut reports = Vec::new();
    for file in &cli.scenarios {
        let label = file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let cases = match load_file(Path::new(file), &label) {
            Ok(cases) => cases,
            Err(e) => {
                eprintln!("error: {e:#}");
                return ExitCode::from(2);
            }
        };
        for case in &cases {
            let report = compare(case, &chosen);
            if !cli.json {
                print!("{}", render_text(&report));
            }
            reports.push(report);
        }
    }
    let unexpected = reports.iter().filter(|r| r.unexpected()).count();
    if cli.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&render_json(&reports)).unwrap_or_default()
        );
    } else {
        println!(
            "{} case(s), {} with an unexpected difference",
            reports.len(),
            unexpected
        );
    }
    if unexpected > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
