//! The proxies under load: the configuration of each case, the processes, their readiness
//! (a request through the proxy answered 2xx, with the case's plugin visibly at work), and
//! what `/proc` says about their CPU time and memory.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

use crate::load::upstream::{LARGE_BODY, Upstream};
use crate::load::{Case, Proxy};

/// The prefix and suffix `body64k`'s plugin wraps the response body in.
pub const BODY_PREFIX: &str = "<!-- wasmbridge-load prefix -->";
pub const BODY_SUFFIX: &str = "<!-- wasmbridge-load suffix -->";
/// How long a proxy may take from its start to its first good answer.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The programs a benchmark runs.
#[derive(Debug, Clone)]
pub struct Tools {
    /// The wasmbridge gateway binary (it also translates configurations for Envoy).
    pub gateway: PathBuf,
    /// `wasmbridge-plain-pingora`.
    pub plain_pingora: PathBuf,
    /// Envoy, when it takes part.
    pub envoy: Option<PathBuf>,
    pub wrk: PathBuf,
    /// Compiled filters by name (`noop`, `add_header`, `body`, `ext_auth`).
    pub filters: BTreeMap<&'static str, PathBuf>,
}

/// The filters a case loads.
pub fn filters_of(case: Case) -> &'static [&'static str] {
    match case {
        Case::None | Case::None64k => &[],
        Case::Noop => &["noop"],
        Case::AddHeader | Case::Chain3 => &["add_header"],
        Case::Body64k => &["body"],
        Case::Auth => &["ext_auth"],
    }
}

/// The wasmbridge configuration of a case: one listener, the upstream as cluster
/// `upstream` (and again as `auth` for the auth callout), one route with the case's
/// plugins. Envoy's bootstrap is translated from it.
pub fn gateway_yaml(
    case: Case,
    workers: usize,
    listen: SocketAddr,
    upstream: SocketAddr,
    filters: &BTreeMap<&'static str, PathBuf>,
) -> Result<String> {
    let module = |name: &str| -> Result<String> {
        let path = filters
            .get(name)
            .with_context(|| format!("filter `{name}` was not looked up"))?;
        // A JSON string is a YAML double-quoted string.
        Ok(serde_json::to_string(&path.display().to_string())?)
    };
    let mut plugins = Vec::new();
    match case {
        Case::None | Case::None64k => {}
        Case::Noop => plugins.push(("noop".to_string(), module("noop")?, String::new())),
        Case::AddHeader => plugins.push((
            "add_header".to_string(),
            module("add_header")?,
            r#"{headers: {x-bench: "1"}}"#.to_string(),
        )),
        Case::Chain3 => {
            for i in 1..=3 {
                plugins.push((
                    format!("add_header_{i}"),
                    module("add_header")?,
                    format!(r#"{{headers: {{x-bench-{i}: "1"}}}}"#),
                ));
            }
        }
        Case::Body64k => plugins.push((
            "body".to_string(),
            module("body")?,
            format!(r#"{{response_prefix: "{BODY_PREFIX}", response_suffix: "{BODY_SUFFIX}"}}"#),
        )),
        Case::Auth => plugins.push((
            "ext_auth".to_string(),
            module("ext_auth")?,
            r#"{cluster: auth, path: /auth}"#.to_string(),
        )),
    }
    let mut yaml = format!(
        "# wasmbridge-load, case `{case}`\nserver:\n  threads: {workers}\nlisteners:\n  - address: {listen}\nclusters:\n  - name: upstream\n    endpoints: [\"{upstream}\"]\n"
    );
    if case == Case::Auth {
        let _ = writeln!(yaml, "  - name: auth\n    endpoints: [\"{upstream}\"]");
    }
    if plugins.is_empty() {
        yaml.push_str("plugins: []\n");
    } else {
        yaml.push_str("plugins:\n");
        for (name, module, configuration) in &plugins {
            // The Rust SDK's filters pick no root context by id; the root id is the name.
            let root_id = filters_of(case).first().copied().unwrap_or_default();
            let _ = writeln!(
                yaml,
                "  - name: {name}\n    root_id: {root_id}\n    module: {module}"
            );
            if !configuration.is_empty() {
                let _ = writeln!(yaml, "    configuration: {configuration}");
            }
        }
    }
    let names: Vec<&str> = plugins.iter().map(|(name, _, _)| name.as_str()).collect();
    let _ = writeln!(
        yaml,
        "routes:\n  - name: bench\n    match: {{prefix: /}}\n    cluster: upstream\n    plugins: [{}]",
        names.join(", ")
    );
    Ok(yaml)
}

/// A proxy process serving one case; killed on drop.
pub struct Running {
    pub proxy: Proxy,
    pub case: Case,
    pub workers: usize,
    pub addr: SocketAddr,
    child: Child,
    log: PathBuf,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Running {
    /// Starts `proxy` for `case` with `workers` worker threads, with its files in `dir`, and
    /// waits until a request through it succeeds and shows the case's plugin at work.
    pub fn start(
        tools: &Tools,
        proxy: Proxy,
        case: Case,
        workers: usize,
        upstream: &Upstream,
        dir: &Path,
    ) -> Result<Running> {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        let addr: SocketAddr = ([127, 0, 0, 1], wasmbridge_e2e::free_port()).into();
        let log = dir.join(format!("{proxy}.log"));
        let stderr =
            std::fs::File::create(&log).with_context(|| format!("create {}", log.display()))?;
        let yaml_file = dir.join("wasmbridge.yaml");
        if proxy != Proxy::Pingora {
            let mut yaml = gateway_yaml(case, workers, addr, upstream.addr, &tools.filters)?;
            if proxy == Proxy::Wasmbridge {
                // Compiled modules are kept between the runs of one benchmark, as a
                // deployment keeps them between restarts: only the first start of each
                // module compiles (Envoy's translation has no such key).
                let cache = dir.parent().unwrap_or(dir).join("compile-cache");
                let threads = format!("  threads: {workers}\n");
                yaml = yaml.replacen(
                    &threads,
                    &format!(
                        "{threads}  compile_cache: {}\n",
                        serde_json::to_string(&cache.display().to_string())?
                    ),
                    1,
                );
            }
            std::fs::write(&yaml_file, yaml)
                .with_context(|| format!("write {}", yaml_file.display()))?;
        }
        let mut command = match proxy {
            Proxy::Wasmbridge => {
                let mut c = Command::new(&tools.gateway);
                c.args(["run", "-c"])
                    .arg(&yaml_file)
                    .env("RUST_LOG", "warn");
                c
            }
            Proxy::Envoy => {
                let envoy = tools.envoy.as_ref().context("Envoy is not installed")?;
                let bootstrap = dir.join("envoy.yaml");
                std::fs::write(&bootstrap, envoy_bootstrap(&tools.gateway, &yaml_file)?)
                    .with_context(|| format!("write {}", bootstrap.display()))?;
                let mut c = Command::new(envoy);
                c.arg("-c")
                    .arg(&bootstrap)
                    .args(["--concurrency", &workers.to_string()])
                    .args(["--use-dynamic-base-id", "--log-level", "warn"])
                    .args(["--drain-time-s", "0"]);
                c
            }
            Proxy::Pingora => {
                let mut c = Command::new(&tools.plain_pingora);
                c.args(["--listen", &addr.to_string()])
                    .args(["--upstream", &upstream.addr.to_string()])
                    .args(["--threads", &workers.to_string()])
                    .env("RUST_LOG", "warn");
                c
            }
        };
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .with_context(|| {
                format!("{proxy} ({case}): cannot start {:?}", command.get_program())
            })?;
        let mut running = Running {
            proxy,
            case,
            workers,
            addr,
            child,
            log,
        };
        running.wait_ready()?;
        Ok(running)
    }

    /// The process id (one process per proxy: Envoy's and Pingora's threads are inside).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The URL wrk loads for the case.
    pub fn url(&self) -> String {
        format!("http://{}{}", self.addr, self.case.path())
    }

    /// The last lines of the proxy's log.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(30)..].join("\n");
        format!("--- {} (last 30 lines) ---\n{tail}", self.log.display())
    }

    /// Whether the process is still running; an error with its log when it is not.
    pub fn check_alive(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!(
                "{} ({}, {} workers) exited with {status}\n{}",
                self.proxy,
                self.case,
                self.workers,
                self.log_tail()
            );
        }
        Ok(())
    }

    fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            self.check_alive().context("the proxy failed to start")?;
            let last = match get(self.addr, self.case.path()) {
                Ok((status, reply)) if (200..300).contains(&status) => {
                    return expect_plugin_at_work(self.case, &reply).with_context(|| {
                        format!(
                            "{} ({}, {} workers) answers, but not as the case's plugin would\n{}",
                            self.proxy,
                            self.case,
                            self.workers,
                            self.log_tail()
                        )
                    });
                }
                Ok((status, reply)) => format!(
                    "status {status}: {}",
                    reply.chars().take(500).collect::<String>()
                ),
                Err(e) => format!("{e:#}"),
            };
            if Instant::now() > deadline {
                bail!(
                    "{} ({}, {} workers) did not answer 2xx on {} within {:?}; last: {last}\n{}",
                    self.proxy,
                    self.case,
                    self.workers,
                    self.url(),
                    START_TIMEOUT,
                    self.log_tail()
                );
            }
            // Poll again shortly: a readiness check, not a wait for a result.
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Envoy's bootstrap for a wasmbridge file, by `wasmbridge envoy-config` (module paths
/// come out absolute). A setting it cannot translate is an error: the two proxies would
/// not run the same thing.
fn envoy_bootstrap(gateway: &Path, yaml_file: &Path) -> Result<String> {
    let out = Command::new(gateway)
        .arg("envoy-config")
        .arg(yaml_file)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {} envoy-config", gateway.display()))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() || !stderr.trim().is_empty() {
        bail!(
            "`{} envoy-config {}` ({}):\n{stderr}",
            gateway.display(),
            yaml_file.display(),
            out.status
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// One `GET path` on a new connection (`Connection: close`): the status and the whole
/// reply as text (headers lower-cased).
pub fn get(addr: SocketAddr, path: &str) -> Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| {
            format!(
                "not an HTTP reply: {}",
                head.chars().take(200).collect::<String>()
            )
        })?;
    Ok((
        status,
        format!("{}\r\n\r\n{body}", head.to_ascii_lowercase()),
    ))
}

/// Checks that a 2xx reply shows the case's plugin at work, so that a misconfigured plugin
/// is not measured as a fast one.
pub fn expect_plugin_at_work(case: Case, reply: &str) -> Result<()> {
    let (head, body) = reply.split_once("\r\n\r\n").unwrap_or((reply, ""));
    let header = |name: &str| head.lines().any(|l| l.trim() == format!("{name}: 1"));
    match case {
        Case::AddHeader if !header("x-bench") => bail!("no `x-bench: 1` in the reply:\n{head}"),
        Case::Chain3 => {
            for name in ["x-bench-1", "x-bench-2", "x-bench-3"] {
                if !header(name) {
                    bail!("no `{name}: 1` in the reply:\n{head}");
                }
            }
        }
        Case::Body64k => {
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map(|v| v.trim().parse::<usize>());
            if let Some(length) = length
                && length.as_ref().ok() != Some(&body.len())
            {
                bail!(
                    "the body is {} bytes, but the reply says `content-length: {length:?}`",
                    body.len()
                );
            }
            let (Some(start), Some(end)) = (body.find(BODY_PREFIX), body.rfind(BODY_SUFFIX)) else {
                bail!("the body lacks the plugin's prefix or suffix:\n{head}");
            };
            // Between them: the upstream's body, perhaps with chunk-size lines.
            if end - start < LARGE_BODY {
                bail!("the rewritten body is {} bytes, under 64 KiB", end - start);
            }
        }
        _ => {}
    }
    Ok(())
}

/// User plus system CPU time of a process, in clock ticks (`/proc/PID/stat`).
pub fn cpu_ticks(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).with_context(|| format!("read {path}"))?;
    parse_cpu_ticks(&text).with_context(|| format!("{path}: {text}"))
}

fn parse_cpu_ticks(stat: &str) -> Result<u64> {
    // The command name (field 2) is in parentheses and may hold spaces and parentheses:
    // fields are counted after the last `)`; the next one is field 3 (state).
    let (_, rest) = stat.rsplit_once(')').context("no `)`")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| -> Result<u64> {
        fields
            .get(n - 3)
            .and_then(|f| f.parse().ok())
            .with_context(|| format!("field {n}"))
    };
    Ok(field(14)? + field(15)?)
}

/// `VmRSS`, `VmHWM` and `RssAnon` of a process, KiB (`/proc/PID/status`).
pub fn memory_kib(pid: u32) -> Result<(u64, u64, u64)> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).with_context(|| format!("read {path}"))?;
    parse_memory_kib(&text).with_context(|| format!("{path}: no VmRSS or VmHWM"))
}

fn parse_memory_kib(status: &str) -> Option<(u64, u64, u64)> {
    let value = |key: &str| {
        status.lines().find_map(|line| {
            line.strip_prefix(key)?
                .trim()
                .strip_suffix("kB")?
                .trim()
                .parse()
                .ok()
        })
    };
    Some((value("VmRSS:")?, value("VmHWM:")?, value("RssAnon:")?))
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 when that fails, as on every Linux).
pub fn clock_ticks_per_sec() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8_lossy(&out.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_are_fields_14_and_15_after_the_command_name() {
        let stat = "4242 (envoy (main) x) S 1 4242 4242 0 -1 4194560 2279 0 0 0 1234 56 0 0 20 0 9 0 1000 2000000 3000 18446744073709551615";
        assert_eq!(parse_cpu_ticks(stat).unwrap(), 1290);
        assert!(parse_cpu_ticks("4242 (x) S 1").is_err());
    }

    #[test]
    fn memory_is_read_from_vmrss_and_vmhwm() {
        let status = "Name:\tenvoy\nVmPeak:\t  200000 kB\nVmHWM:\t   51234 kB\nVmRSS:\t   40960 kB\nRssAnon:\t   12000 kB\nRssFile:\t   28960 kB\nThreads:\t4\n";
        assert_eq!(parse_memory_kib(status), Some((40960, 51234, 12000)));
        assert_eq!(parse_memory_kib("Name:\tx\n"), None);
    }

    #[test]
    fn a_plugin_that_did_not_act_is_caught() {
        let ok = "http/1.1 200 ok\r\nx-bench: 1\r\n\r\nhello";
        assert!(expect_plugin_at_work(Case::AddHeader, ok).is_ok());
        assert!(expect_plugin_at_work(Case::Chain3, ok).is_err());
        let body = format!(
            "http/1.1 200 ok\r\n\r\n{BODY_PREFIX}{}{BODY_SUFFIX}",
            "x".repeat(LARGE_BODY)
        );
        assert!(expect_plugin_at_work(Case::Body64k, &body).is_ok());
        let short = format!("http/1.1 200 ok\r\n\r\n{BODY_PREFIX}xx{BODY_SUFFIX}");
        assert!(expect_plugin_at_work(Case::Body64k, &short).is_err());
        let stale_length = body.replace("\r\n\r\n", "\r\ncontent-length: 65536\r\n\r\n");
        assert!(expect_plugin_at_work(Case::Body64k, &stale_length).is_err());
    }

    #[test]
    fn the_configuration_chains_three_plugins_and_quotes_paths() {
        let filters = BTreeMap::from([("add_header", PathBuf::from("/f/add header.wasm"))]);
        let yaml = gateway_yaml(
            Case::Chain3,
            2,
            "127.0.0.1:1000".parse().unwrap(),
            "127.0.0.1:2000".parse().unwrap(),
            &filters,
        )
        .unwrap();
        assert!(yaml.contains("threads: 2"), "{yaml}");
        assert!(yaml.contains(r#"module: "/f/add header.wasm""#), "{yaml}");
        assert!(
            yaml.contains("plugins: [add_header_1, add_header_2, add_header_3]"),
            "{yaml}"
        );
        assert!(
            gateway_yaml(
                Case::Noop,
                1,
                "127.0.0.1:1000".parse().unwrap(),
                "127.0.0.1:2000".parse().unwrap(),
                &filters
            )
            .is_err()
        );
    }
}
