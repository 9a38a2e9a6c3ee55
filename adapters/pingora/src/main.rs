//! The `wasmbridge` command: run the gateway, or check a configuration and its plugins.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use wasmbridge_config::Config;
use wasmbridge_pingora::{DEFAULT_CONFIG, Gateway};

/// Runs Proxy-Wasm filters built for Envoy inside a Pingora gateway.
#[derive(Parser)]
#[command(name = "wasmbridge", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve with a configuration file (default: the embedded conf/gateway.yaml, with module
    /// paths relative to ./conf).
    Run {
        /// The YAML configuration file.
        #[arg(short = 'c', long = "config")]
        config: Option<PathBuf>,
    },
    /// Validate a configuration, compile and start every plugin, and report each plugin's
    /// ABI version, entry style and imports. Exits 0 when everything loads, 2 otherwise.
    Check {
        /// The YAML configuration file.
        file: PathBuf,
    },
    /// Print the equivalent Envoy bootstrap (YAML) on stdout, and on stderr every setting
    /// Envoy has no equivalent for. Module paths come out absolute. See docs/envoy.md.
    EnvoyConfig {
        /// The YAML configuration file.
        file: PathBuf,
    },
    /// Run scenario files (the conformance case format) through several proxies and show
    /// what differs: `wasmbridge compare SCENARIO.yaml [--proxies pingora,tower,envoy]
    /// [--json]`. Runs the `wasmbridge-compare` tool installed beside this binary.
    #[command(disable_help_flag = true)]
    Compare {
        /// Passed to `wasmbridge-compare` (`--help` shows them).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Which worker thread (and so which VM replica) logged a line.
        .with_thread_ids(true)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

fn load(config: Option<&Path>) -> Result<Config, wasmbridge_config::ConfigError> {
    match config {
        Some(path) => Config::from_file(path),
        None => Config::from_yaml_str(
            DEFAULT_CONFIG,
            Path::new("<embedded conf/gateway.yaml>"),
            Path::new("conf"),
        ),
    }
}

fn run(config: Option<&Path>) -> ExitCode {
    let config = match load(config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let gateway = match Gateway::build(config) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    match gateway.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "none".to_string()
    } else {
        items.join(", ")
    }
}

fn check(file: &Path) -> ExitCode {
    let config = match Config::from_file(file) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let summary = format!(
        "{}: configuration is valid ({} listener(s), {} route(s), {} cluster(s), {} plugin(s))",
        file.display(),
        config.listeners.len(),
        config.routes.len(),
        config.clusters.len(),
        config.plugins.len()
    );
    let mut config = config;
    config.server.threads = 1;
    match Gateway::build(config) {
        Ok(gateway) => {
            println!("{summary}");
            for plugin in gateway.plugins() {
                let info = plugin.module_info();
                println!(
                    "plugin {}: module {}\n  abi: {}\n  entry: {}\n  allocator: {}\n  callbacks: {}\n  unknown imports: {}\n  unimplemented imports: {}",
                    plugin.name(),
                    plugin.module_path().display(),
                    info.abi,
                    info.entry,
                    info.allocator,
                    list(&info.callbacks),
                    list(&info.unknown_imports),
                    list(&info.unimplemented_imports),
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

/// Runs `wasmbridge-compare` from beside this binary (the comparison runs every proxy, so
/// it lives in a tool of its own rather than in the gateway) and passes on its exit code.
fn compare(args: &[std::ffi::OsString]) -> ExitCode {
    let tool = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join("wasmbridge-compare")));
    let Some(tool) = tool.filter(|t| t.exists()) else {
        eprintln!(
            "error: `wasmbridge compare` needs the wasmbridge-compare tool beside this binary; \
             build it with `cargo build -p wasmbridge-conformance --bin wasmbridge-compare` \
             (`make build` does)"
        );
        return ExitCode::from(2);
    };
    match std::process::Command::new(&tool).args(args).status() {
        Ok(status) => ExitCode::from(status.code().map_or(2, |c| c.clamp(0, 255) as u8)),
        Err(e) => {
            eprintln!("error: cannot run {}: {e}", tool.display());
            ExitCode::from(2)
        }
    }
}

fn envoy_config(file: &Path) -> ExitCode {
    let mut config = match Config::from_file(file) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    // Envoy resolves a relative filename against its own working directory.
    for plugin in &mut config.plugins {
        if plugin.source.is_remote() {
            continue;
        }
        if let Ok(path) = std::path::absolute(&plugin.module) {
            plugin.module = path;
        }
    }
    let envoy = wasmbridge_config::envoy_bootstrap(&config);
    print!("{}", envoy.to_yaml());
    for item in &envoy.untranslated {
        eprintln!("{}: not translated: {item}", file.display());
    }
    ExitCode::SUCCESS
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run { config } => {
            init_logging();
            run(config.as_deref())
        }
        Command::Check { file } => {
            init_logging();
            check(&file)
        }
        Command::EnvoyConfig { file } => {
            init_logging();
            envoy_config(&file)
        }
        // The tool logs for itself.
        Command::Compare { args } => compare(&args),
    }
}
