//! The loopback load benchmark: wrk against the wasmbridge gateway, Envoy (V8) and plain
//! Pingora in front of one upstream this tool starts, for each plugin case and worker
//! count, in interleaved rounds. Writes `load.md`, `load-throughput.svg` and
//! `load-latency.svg` into `--out`. See `wasmbridge_bench::load`.
//!
//! ```sh
//! cargo build --release --workspace --bins && make filters
//! target/release/wasmbridge-load                     # full run: 3 rounds of 10 s runs
//! target/release/wasmbridge-load --rounds 1 --duration 3 --workers 1 --out target/load
//! target/release/wasmbridge-load --smoke --out target/load
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use anyhow::{Context as _, Result, bail};
use clap::Parser;
use wasmbridge_bench::environment;
use wasmbridge_bench::load::proxy::{Tools, filters_of};
use wasmbridge_bench::load::report::{self, Provenance};
use wasmbridge_bench::load::run::{self, Settings};
use wasmbridge_bench::load::stats::Results;
use wasmbridge_bench::load::upstream::Upstream;
use wasmbridge_bench::load::{Case, Proxy, parse_list};

/// Loopback load benchmark: wasmbridge vs Envoy vs plain Pingora.
#[derive(Debug, Parser)]
#[command(name = "wasmbridge-load")]
struct Args {
    /// Where load.md and the two SVG charts go.
    #[arg(long, default_value = "docs/benchmarks")]
    out: PathBuf,
    /// The wasmbridge gateway binary [default: $CARGO_TARGET_DIR or target, /release/wasmbridge].
    #[arg(long)]
    gateway: Option<PathBuf>,
    /// The plain Pingora baseline [default: wasmbridge-plain-pingora beside this program].
    #[arg(long)]
    plain_pingora: Option<PathBuf>,
    /// Envoy [default: $ENVOY_BIN, else the one `make envoy` installs in .venv].
    #[arg(long)]
    envoy: Option<PathBuf>,
    /// wrk.
    #[arg(long, default_value = "wrk")]
    wrk: PathBuf,
    /// Worker counts, comma-separated (Envoy's --concurrency, the gateway's server.threads).
    #[arg(long, default_value = "1,2")]
    workers: String,
    /// Proxies, comma-separated: wasmbridge, envoy, pingora [default: all; envoy is
    /// skipped with a note when it is not installed].
    #[arg(long)]
    proxies: Option<String>,
    /// Cases, comma-separated: none, none64k, noop, add_header, chain3, body64k, auth
    /// [default: all]; each brings its no-plugin baseline (none, or none64k for body64k).
    #[arg(long)]
    cases: Option<String>,
    /// wrk connections.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Seconds of each measured run.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Seconds of load before each measured run.
    #[arg(long, default_value_t = 2)]
    warmup: u64,
    /// Seconds of the latency run after each measured run: one connection, one request
    /// at a time, so its percentiles are the time a request takes rather than the time it
    /// queues (0: none).
    #[arg(long, default_value_t = 4)]
    latency_duration: u64,
    /// Rounds (every combination once per round).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// A tiny run for tests: 1 round of 1 s, 1 s warm-up, 1 worker, cases none and
    /// add_header, 4 connections (other selections still apply to proxies).
    #[arg(long)]
    smoke: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wasmbridge-load: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<()> {
    let command = std::env::args()
        .map(|a| if a.contains(' ') { format!("'{a}'") } else { a })
        .collect::<Vec<_>>()
        .join(" ");
    let date = output_line(Command::new("date").args(["-u", "+%Y-%m-%d %H:%M:%S"]));
    let mut settings = Settings {
        proxies: Proxy::ALL.to_vec(),
        cases: Case::ALL.to_vec(),
        workers: parse_workers(&args.workers)?,
        connections: args.connections,
        duration_s: args.duration,
        warmup_s: args.warmup,
        latency_s: args.latency_duration,
        rounds: args.rounds,
    };
    if args.smoke {
        settings.rounds = 1;
        settings.duration_s = 1;
        settings.warmup_s = 1;
        settings.latency_s = 1;
        settings.workers = vec![1];
        settings.cases = vec![Case::None, Case::AddHeader];
        settings.connections = 4;
    }
    if let Some(cases) = &args.cases {
        settings.cases = parse_list(cases, &Case::ALL).context("--cases")?;
    }
    settings.cases = wasmbridge_bench::load::with_baselines(&settings.cases);
    if settings.rounds == 0 || settings.duration_s == 0 || settings.connections == 0 {
        bail!("--rounds, --duration and --connections must be at least 1");
    }
    let mut notes = Vec::new();

    let envoy_requested = args
        .proxies
        .as_deref()
        .map(|p| parse_list(p, &Proxy::ALL))
        .transpose()
        .context("--proxies")?;
    let envoy_bin = match (&args.envoy, &envoy_requested) {
        (Some(bin), _) => Ok(bin.clone()),
        _ => wasmbridge_e2e::envoy_binary()?,
    };
    settings.proxies = match envoy_requested {
        Some(proxies) => {
            if let (true, Err(reason)) = (proxies.contains(&Proxy::Envoy), &envoy_bin) {
                bail!("--proxies names envoy, but {reason}");
            }
            proxies
        }
        None => {
            let mut all = Proxy::ALL.to_vec();
            if let Err(reason) = &envoy_bin {
                eprintln!("SKIPPED: envoy: {reason}");
                notes.push(format!("Envoy did not take part: {reason}"));
                all.retain(|&p| p != Proxy::Envoy);
            }
            all
        }
    };
    let uses = |proxy| settings.proxies.contains(&proxy);

    let gateway = args.gateway.clone().unwrap_or_else(|| {
        let target = std::env::var_os("CARGO_TARGET_DIR").unwrap_or_else(|| "target".into());
        Path::new(&target).join("release/wasmbridge")
    });
    if (uses(Proxy::Wasmbridge) || uses(Proxy::Envoy)) && !gateway.is_file() {
        bail!(
            "the gateway {} is missing: build it (`cargo build --release -p wasmbridge-pingora`) or pass --gateway",
            gateway.display()
        );
    }
    let plain_pingora = match &args.plain_pingora {
        Some(path) => path.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("this program's directory")?
            .join("wasmbridge-plain-pingora"),
    };
    if uses(Proxy::Pingora) && !plain_pingora.is_file() {
        bail!(
            "{} is missing: build it (`cargo build --release -p wasmbridge-bench`) or pass --plain-pingora",
            plain_pingora.display()
        );
    }
    let mut filters = BTreeMap::new();
    if uses(Proxy::Wasmbridge) || uses(Proxy::Envoy) {
        for &case in &settings.cases {
            for &name in filters_of(case) {
                let path = wasmbridge_e2e::find_filter(name)?;
                filters.insert(name, std::path::absolute(&path).unwrap_or(path));
            }
        }
    }
    let tools = Tools {
        gateway: gateway.clone(),
        plain_pingora,
        envoy: envoy_bin.ok().filter(|_| uses(Proxy::Envoy)),
        wrk: args.wrk.clone(),
        filters,
    };
    let wrk_version = output_line(Command::new(&tools.wrk).arg("-v"));
    if wrk_version.is_empty() {
        bail!("cannot run {} (install wrk)", tools.wrk.display());
    }
    let provenance = Provenance {
        command,
        date,
        cpu: environment::cpu_model(),
        cores: std::thread::available_parallelism().map_or(0, usize::from),
        kernel: environment::kernel(),
        wrk: wrk_version,
        envoy: match &tools.envoy {
            Some(bin) => {
                let line = output_line(Command::new(bin).arg("--version"));
                // `<path>  version: <sha>/1.40.0/Clean/RELEASE/BoringSSL`
                line.split_once("version: ")
                    .map_or(line.clone(), |(_, v)| v.to_string())
            }
            None => "not run".into(),
        },
        gateway: format!("{} (commit {})", gateway.display(), environment::commit()),
        notes,
    };

    let upstream = Upstream::start()?;
    let scratch = std::env::temp_dir().join(format!("wasmbridge-load-{}", std::process::id()));
    eprintln!(
        "wasmbridge-load: {} run(s) per round, {} round(s); upstream on {}; logs in {}",
        settings.combinations().len(),
        settings.rounds,
        upstream.addr,
        scratch.display()
    );
    let mut results = Results::default();
    let outcome = run::run(
        &settings,
        &tools,
        &upstream,
        &scratch,
        &mut results,
        |line| eprintln!("{line}"),
    );
    let mut provenance = provenance;
    match &outcome {
        // Kept when a run failed (the error names the proxy's log in it).
        Ok(()) => {
            let _ = std::fs::remove_dir_all(&scratch);
        }
        Err(_) if results.samples.is_empty() => return outcome,
        Err(e) => provenance.notes.push(format!(
            "**The benchmark stopped early**, after {} run(s): {}",
            results.samples.len(),
            format!("{e:#}").lines().next().unwrap_or_default()
        )),
    }

    let report = report::report(&settings, &results, &provenance);
    std::fs::create_dir_all(&args.out).with_context(|| format!("create {}", args.out.display()))?;
    for (name, text) in [
        (report::MARKDOWN, &report.markdown),
        (report::THROUGHPUT_SVG, &report.throughput_svg),
        (report::LATENCY_SVG, &report.latency_svg),
    ] {
        let path = args.out.join(name);
        std::fs::write(&path, text).with_context(|| format!("write {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    outcome
}

fn parse_workers(text: &str) -> Result<Vec<usize>> {
    let mut out = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let n: usize = part
            .parse()
            .with_context(|| format!("--workers: `{part}` is not a number"))?;
        if n == 0 {
            bail!("--workers: 0 workers");
        }
        if !out.contains(&n) {
            out.push(n);
        }
    }
    if out.is_empty() {
        bail!("--workers: empty list");
    }
    Ok(out)
}

/// The first non-empty line a command prints (stdout, else stderr; wrk prints its version
/// in its usage text, with a failing status); empty when it cannot run.
fn output_line(command: &mut Command) -> String {
    let Ok(out) = command.stdin(Stdio::null()).output() else {
        return String::new();
    };
    [out.stdout, out.stderr]
        .iter()
        .flat_map(|bytes| {
            String::from_utf8_lossy(bytes)
                .lines()
                .map(|l| l.trim().to_string())
                .collect::<Vec<_>>()
        })
        .find(|l| !l.is_empty())
        .unwrap_or_default()
}
