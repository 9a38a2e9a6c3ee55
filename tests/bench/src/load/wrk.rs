//! Running wrk and reading what it prints: requests per second, the latency percentiles
//! of `--latency`, and every kind of error it counts.

use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context as _, Result, bail};

/// What one wrk run measured.
#[derive(Debug, Clone, PartialEq)]
pub struct WrkResult {
    /// Requests completed in the run.
    pub requests: u64,
    /// `Requests/sec`.
    pub requests_per_sec: f64,
    /// Median latency, µs.
    pub p50_us: f64,
    /// 99th percentile latency, µs.
    pub p99_us: f64,
    /// Responses with a status of 400 or more (`Non-2xx or 3xx responses`).
    pub non_2xx: u64,
    /// Connect, read and write errors and timeouts (`Socket errors`).
    pub socket_errors: u64,
}

impl WrkResult {
    /// Non-2xx responses plus socket errors.
    pub fn errors(&self) -> u64 {
        self.non_2xx + self.socket_errors
    }
}

/// Runs `wrk -t1 -c<connections> -d<seconds>s --latency <url>` and parses its report.
pub fn run(wrk: &Path, url: &str, connections: usize, seconds: u64) -> Result<WrkResult> {
    let output = Command::new(wrk)
        .args([
            "-t1".to_string(),
            format!("-c{connections}"),
            format!("-d{seconds}s"),
            "--latency".to_string(),
            url.to_string(),
        ])
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {}", wrk.display()))?;
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!(
            "{} on {url} exited with {}:\n{text}{}",
            wrk.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    parse(&text).with_context(|| format!("reading wrk's report on {url}:\n{text}"))
}

/// Parses wrk's report (run with `--latency`).
pub fn parse(text: &str) -> Result<WrkResult> {
    let mut requests = None;
    let mut requests_per_sec = None;
    let mut p50_us = None;
    let mut p99_us = None;
    let mut non_2xx = 0;
    let mut socket_errors = 0;
    for line in text.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("Requests/sec:") {
            requests_per_sec = Some(rest.trim().parse::<f64>().context("Requests/sec")?);
        } else if let Some(rest) = line.strip_prefix("50%") {
            p50_us = Some(duration_us(rest.trim())?);
        } else if let Some(rest) = line.strip_prefix("99%") {
            p99_us = Some(duration_us(rest.trim())?);
        } else if let Some(rest) = line.strip_prefix("Non-2xx or 3xx responses:") {
            non_2xx = rest.trim().parse().context("Non-2xx or 3xx responses")?;
        } else if let Some(rest) = line.strip_prefix("Socket errors:") {
            // `connect 0, read 3, write 0, timeout 0`
            for part in rest.split(',') {
                let count = part.split_whitespace().nth(1).unwrap_or_default();
                socket_errors += count
                    .parse::<u64>()
                    .with_context(|| format!("Socket errors: `{}`", part.trim()))?;
            }
        } else if let Some((count, _)) = line.split_once(" requests in ") {
            requests = Some(count.trim().parse().context("requests in")?);
        }
    }
    let missing = |what: &str| anyhow::anyhow!("no `{what}` line (was wrk run with --latency?)");
    Ok(WrkResult {
        requests: requests.ok_or_else(|| missing("N requests in"))?,
        requests_per_sec: requests_per_sec.ok_or_else(|| missing("Requests/sec"))?,
        p50_us: p50_us.ok_or_else(|| missing("50%"))?,
        p99_us: p99_us.ok_or_else(|| missing("99%"))?,
        non_2xx,
        socket_errors,
    })
}

/// A wrk duration (`812.00us`, `1.51ms`, `2.03s`, `1.50m`) in µs.
fn duration_us(text: &str) -> Result<f64> {
    let split = text
        .find(|c: char| c.is_ascii_alphabetic())
        .with_context(|| format!("`{text}` has no unit"))?;
    let (value, unit) = text.split_at(split);
    let value: f64 = value
        .parse()
        .with_context(|| format!("`{text}` is not a duration"))?;
    let scale = match unit {
        "us" => 1.0,
        "ms" => 1e3,
        "s" => 1e6,
        "m" => 60e6,
        "h" => 3600e6,
        _ => bail!("`{text}`: unknown unit `{unit}`"),
    };
    Ok(value * scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// wrk 4.1.0 against a server answering 404 (two connections, one second).
    const WITH_NON_2XX: &str = "Running 1s test @ http://127.0.0.1:18777/nonexistent
  1 threads and 2 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     2.57ms    2.25ms  13.11ms   83.69%
    Req/Sec     0.88k   259.23     1.50k    80.00%
  Latency Distribution
     50%    1.51ms
     75%    3.90ms
     90%    5.71ms
     99%    9.09ms
  873 requests in 1.00s, 443.50KB read
  Non-2xx or 3xx responses: 873
Requests/sec:    872.14
Transfer/sec:    443.06KB
";

    /// wrk 4.1.0 through a proxy, with socket errors.
    const WITH_SOCKET_ERRORS: &str = "Running 10s test @ http://127.0.0.1:40123/
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.45ms  345.12us   1.02s    89.12%
    Req/Sec    22.11k     1.23k   24.01k    70.00%
  Latency Distribution
     50%  812.00us
     75%    1.55ms
     90%    1.80ms
     99%    1.02s
  220012 requests in 10.00s, 25.39MB read
  Socket errors: connect 0, read 3, write 1, timeout 2
Requests/sec:  22001.12
Transfer/sec:      2.54MB
";

    #[test]
    fn reads_rate_percentiles_and_non_2xx() {
        let r = parse(WITH_NON_2XX).unwrap();
        assert_eq!(r.requests, 873);
        assert_eq!(r.requests_per_sec, 872.14);
        assert!((r.p50_us - 1510.0).abs() < 1e-6, "{r:?}");
        assert!((r.p99_us - 9090.0).abs() < 1e-6, "{r:?}");
        assert_eq!((r.non_2xx, r.socket_errors, r.errors()), (873, 0, 873));
    }

    #[test]
    fn reads_microseconds_seconds_and_socket_errors() {
        let r = parse(WITH_SOCKET_ERRORS).unwrap();
        assert_eq!(r.requests, 220012);
        assert!((r.p50_us - 812.0).abs() < 1e-6, "{r:?}");
        assert!((r.p99_us - 1_020_000.0).abs() < 1e-6, "{r:?}");
        assert_eq!((r.non_2xx, r.socket_errors), (0, 6));
    }

    #[test]
    fn a_report_without_latency_distribution_is_an_error() {
        let text = WITH_NON_2XX
            .lines()
            .filter(|l| !l.trim_start().starts_with("99%"))
            .collect::<Vec<_>>()
            .join("\n");
        let e = parse(&text).unwrap_err().to_string();
        assert!(e.contains("99%"), "{e}");
    }

    #[test]
    fn durations_take_every_wrk_unit() {
        assert_eq!(duration_us("5.00us").unwrap(), 5.0);
        assert_eq!(duration_us("1.50m").unwrap(), 90e6);
        assert!(duration_us("3.00xs").is_err());
        assert!(duration_us("12").is_err());
    }
}
