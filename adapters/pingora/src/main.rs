//! The `wasmbridge` command: run the gateway, check a configuration and its plugins, pull
//! and push modules.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
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
        /// Take the listening sockets over from the gateway running with the same
        /// `server.upgrade_sock` (graceful upgrade): start this one, then send SIGQUIT to
        /// the old one.
        #[arg(short = 'u', long = "upgrade")]
        upgrade: bool,
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
    /// Turn an Envoy bootstrap with `envoy.filters.http.wasm` filters, and Istio
    /// `WasmPlugin` resources (several YAML documents may follow each other), into a
    /// wasmbridge configuration: YAML on stdout (or `-o`), and on stderr every item that
    /// could not be translated, by its path in the input. Exits 0 when the result is a
    /// valid configuration, 2 otherwise. See docs/envoy.md.
    ImportEnvoy {
        /// The Envoy bootstrap or WasmPlugin file (YAML).
        file: PathBuf,
        /// Write the configuration to this file instead of stdout.
        #[arg(short = 'o', long = "output")]
        output: Option<PathBuf>,
    },
    /// Fetch a module into the module cache and print its digest and path:
    /// `wasmbridge pull https://HOST/f.wasm --sha256 HEX` or `wasmbridge pull
    /// oci://REGISTRY/REPOSITORY:TAG`. Exits 0 when fetched, 1 when not, 2 on bad arguments.
    Pull {
        /// An `https://` URL (`http://` for loopback hosts) or an `oci://` reference.
        source: String,
        /// The module's SHA-256 (64 lowercase hex digits); required for URLs.
        #[arg(long)]
        sha256: Option<String>,
        /// Also copy the module to this file.
        #[arg(short = 'o', long = "output")]
        output: Option<PathBuf>,
        /// The module cache (default: $XDG_CACHE_HOME/wasmbridge/modules or
        /// ~/.cache/wasmbridge/modules).
        #[arg(long)]
        cache_dir: Option<PathBuf>,
        /// A PEM file of CA certificates to trust beside the system's (default:
        /// $WASMBRIDGE_CA_FILE).
        #[arg(long)]
        ca_file: Option<PathBuf>,
        /// Speak cleartext HTTP to a registry that is not on loopback.
        #[arg(long)]
        insecure: bool,
    },
    /// Push a module to an OCI registry and print the manifest digest:
    /// `wasmbridge push filter.wasm oci://REGISTRY/REPOSITORY:TAG`. Exits 0 when pushed, 1
    /// when not, 2 on bad arguments.
    Push {
        /// The module file.
        file: PathBuf,
        /// Where to push it: `oci://registry[:port]/repository:tag`.
        reference: String,
        /// The image format: `wasm` (the Wasm OCI artifact of wasme and Istio's compat
        /// format) or `image` (Istio's standard image, a tar layer holding plugin.wasm).
        #[arg(long, value_enum, default_value_t = Format::Wasm)]
        format: Format,
        /// A PEM file of CA certificates to trust beside the system's (default:
        /// $WASMBRIDGE_CA_FILE).
        #[arg(long)]
        ca_file: Option<PathBuf>,
        /// Speak cleartext HTTP to a registry that is not on loopback.
        #[arg(long)]
        insecure: bool,
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

/// `wasmbridge push --format`.
#[derive(Clone, Copy, ValueEnum)]
enum Format {
    /// The Wasm OCI artifact (a layer of type application/vnd.module.wasm.content.layer.v1+wasm).
    Wasm,
    /// Istio's standard image: one gzipped tar layer holding plugin.wasm.
    Image,
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

fn run(config: Option<&Path>, upgrade: bool) -> ExitCode {
    // A file is read once and kept, so that the gateway can show and reload it.
    let gateway = match config {
        Some(path) => Gateway::from_file(path),
        None => load(None)
            .map_err(wasmbridge_pingora::GatewayError::from)
            .and_then(Gateway::build),
    };
    let gateway = match gateway {
        Ok(g) => g,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    match gateway.run_with(upgrade) {
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

fn import_envoy(file: &Path, output: Option<&Path>) -> ExitCode {
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {}: {e}", file.display());
            return ExitCode::from(2);
        }
    };
    let import = match wasmbridge_config::import_envoy(&text) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("error: {}: {e}", file.display());
            return ExitCode::from(2);
        }
    };
    for item in &import.untranslated {
        eprintln!("{}: not translated: {item}", file.display());
    }
    let yaml = format!(
        "# Imported from {} by `wasmbridge import-envoy`.\n{}",
        file.file_name().map_or_else(
            || file.display().to_string(),
            |n| n.to_string_lossy().into_owned()
        ),
        import.to_yaml()
    );
    // Module paths resolve against the output file's directory, as the gateway reads it.
    let (source, base_dir) = match output {
        Some(out) => (out, out.parent().unwrap_or(Path::new(""))),
        None => (Path::new("<stdout>"), Path::new("")),
    };
    let valid = Config::from_yaml_str(&yaml, source, base_dir);
    match output {
        Some(out) => {
            if let Err(e) = std::fs::write(out, &yaml) {
                eprintln!("error: {}: {e}", out.display());
                return ExitCode::from(2);
            }
        }
        None => print!("{yaml}"),
    }
    match valid {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: the imported configuration is not valid as it is: {e}");
            ExitCode::from(2)
        }
    }
}

fn fetch_options(
    cache_dir: Option<PathBuf>,
    ca_file: Option<PathBuf>,
    insecure: bool,
) -> wasmbridge_fetch::FetchOptions {
    let mut options = wasmbridge_fetch::FetchOptions::new(
        cache_dir.unwrap_or_else(wasmbridge_fetch::ModuleCache::default_dir),
    );
    if ca_file.is_some() {
        options.ca_file = ca_file;
    }
    options.insecure = insecure;
    options
}

fn fetcher(options: wasmbridge_fetch::FetchOptions) -> Result<wasmbridge_fetch::Fetcher, ExitCode> {
    wasmbridge_fetch::Fetcher::new(options).map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::from(2)
    })
}

fn pull(
    source: &str,
    sha256: Option<&str>,
    output: Option<&Path>,
    options: wasmbridge_fetch::FetchOptions,
) -> ExitCode {
    use wasmbridge_fetch::{Digest, OciReference};
    let sha256 = match sha256.map(str::parse::<Digest>).transpose() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: --sha256: {e}");
            return ExitCode::from(2);
        }
    };
    let fetched = if source.starts_with("oci://") {
        let reference = match OciReference::parse(source) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        };
        let fetcher = match fetcher(options) {
            Ok(f) => f,
            Err(code) => return code,
        };
        fetcher.fetch_oci(&reference, sha256.as_ref())
    } else if source.starts_with("https://") || source.starts_with("http://") {
        if let Err(why) = wasmbridge_fetch::check_url(source, options.insecure) {
            eprintln!("error: {why}");
            return ExitCode::from(2);
        }
        let Some(sha256) = sha256 else {
            eprintln!(
                "error: a module fetched over HTTP needs --sha256 (its SHA-256 as `sha256sum` \
                 prints it)"
            );
            return ExitCode::from(2);
        };
        let fetcher = match fetcher(options) {
            Ok(f) => f,
            Err(code) => return code,
        };
        fetcher.fetch_https(source, &sha256)
    } else {
        eprintln!("error: `{source}`: pull takes an https:// URL or an oci:// reference");
        return ExitCode::from(2);
    };
    let fetched = match fetched {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    if let Some(output) = output
        && let Err(e) = std::fs::write(output, &fetched.bytes)
    {
        eprintln!("error: cannot write {}: {e}", output.display());
        return ExitCode::from(1);
    }
    println!("digest: {}", fetched.digest);
    println!("path: {}", fetched.path.display());
    if let Some(output) = output {
        println!("copied to: {}", output.display());
    }
    ExitCode::SUCCESS
}

fn push(
    file: &Path,
    reference: &str,
    format: Format,
    options: wasmbridge_fetch::FetchOptions,
) -> ExitCode {
    let parsed = match wasmbridge_fetch::OciReference::parse(reference) {
        Ok(r) if reference.starts_with("oci://") => r,
        Ok(_) => {
            eprintln!("error: `{reference}`: push takes an oci:// reference");
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let module = match std::fs::read(file) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("error: cannot read {}: {e}", file.display());
            return ExitCode::from(2);
        }
    };
    let fetcher = match fetcher(options) {
        Ok(f) => f,
        Err(code) => return code,
    };
    let format = match format {
        Format::Wasm => wasmbridge_fetch::PushFormat::WasmArtifact,
        Format::Image => wasmbridge_fetch::PushFormat::Image,
    };
    match fetcher.push(&module, &parsed, format) {
        Ok(pushed) => {
            println!("pushed: {parsed}");
            println!("manifest: {}", pushed.manifest.oci());
            println!("module: {}", pushed.module.oci());
            println!(
                "by digest: oci://{}/{}@{}",
                parsed.registry,
                parsed.repository,
                pushed.manifest.oci()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run { config, upgrade } => {
            init_logging();
            run(config.as_deref(), upgrade)
        }
        Command::Check { file } => {
            init_logging();
            check(&file)
        }
        Command::EnvoyConfig { file } => {
            init_logging();
            envoy_config(&file)
        }
        Command::ImportEnvoy { file, output } => import_envoy(&file, output.as_deref()),
        Command::Pull {
            source,
            sha256,
            output,
            cache_dir,
            ca_file,
            insecure,
        } => {
            init_logging();
            pull(
                &source,
                sha256.as_deref(),
                output.as_deref(),
                fetch_options(cache_dir, ca_file, insecure),
            )
        }
        Command::Push {
            file,
            reference,
            format,
            ca_file,
            insecure,
        } => {
            init_logging();
            push(
                &file,
                &reference,
                format,
                fetch_options(None, ca_file, insecure),
            )
        }
        // The tool logs for itself.
        Command::Compare { args } => compare(&args),
    }
}
