//! The rounds: every (proxy, case, workers) combination once per round, in an order rotated
//! from round to round, each on a freshly started proxy: start, warm up, measure.

use std::path::Path;

use anyhow::{Context as _, Result};

use crate::load::proxy::{self, Running, Tools};
use crate::load::stats::{Key, Results, Sample};
use crate::load::upstream::Upstream;
use crate::load::{Case, Proxy, wrk};

/// What to run, and how long.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub proxies: Vec<Proxy>,
    pub cases: Vec<Case>,
    pub workers: Vec<usize>,
    /// wrk's `-c`.
    pub connections: usize,
    /// Seconds of each measured run.
    pub duration_s: u64,
    /// Seconds of load before each measured run, not measured.
    pub warmup_s: u64,
    /// Seconds of the one-connection latency run after each measured run (0: none).
    pub latency_s: u64,
    pub rounds: usize,
}

impl Settings {
    /// Every combination a round runs, in the unrotated order: by workers, then case, then
    /// proxy (plain Pingora only without plugins).
    pub fn combinations(&self) -> Vec<Key> {
        let mut out = Vec::new();
        for &workers in &self.workers {
            for &case in &self.cases {
                for &proxy in &self.proxies {
                    if proxy.runs(case) {
                        out.push(Key {
                            proxy,
                            case,
                            workers,
                        });
                    }
                }
            }
        }
        out
    }

    /// The combinations of round `round`: rotated by `round / rounds` of their number, so
    /// that each round starts elsewhere and no combination always runs first or last.
    pub fn round_order(&self, round: usize) -> Vec<Key> {
        let mut keys = self.combinations();
        if !keys.is_empty() {
            let shift = round * keys.len() / self.rounds.max(1);
            let len = keys.len();
            keys.rotate_left(shift % len);
        }
        keys
    }
}

/// Runs every round, adding each run to `results` as it ends (so that what ran before an
/// error can still be reported); `progress` gets a line per run.
pub fn run(
    settings: &Settings,
    tools: &Tools,
    upstream: &Upstream,
    scratch: &Path,
    results: &mut Results,
    mut progress: impl FnMut(&str),
) -> Result<()> {
    let ticks_per_sec = proxy::clock_ticks_per_sec();
    for round in 0..settings.rounds {
        let order = settings.round_order(round);
        for (i, key) in order.iter().enumerate() {
            let dir = scratch.join(format!(
                "round{round}-{}-{}-{}w",
                key.proxy, key.case, key.workers
            ));
            let mut sample = measure(
                settings,
                tools,
                upstream,
                *key,
                &dir,
                ticks_per_sec,
                &mut progress,
            )
            .with_context(|| {
                format!(
                    "round {}, {} with case {} and {} workers",
                    round + 1,
                    key.proxy,
                    key.case,
                    key.workers
                )
            })?;
            sample.round = round;
            progress(&format!(
                "round {}/{} [{:>2}/{}] {:<10} {:<10} {}w: {:>8.0} req/s  p50 {:>7.0} µs  p99 {:>7.0} µs  cpu {:>6.1} µs/req  rss {:>6.1} MiB{}",
                round + 1,
                settings.rounds,
                i + 1,
                order.len(),
                key.proxy.name(),
                key.case.name(),
                key.workers,
                sample.wrk.requests_per_sec,
                sample.wrk.p50_us,
                sample.wrk.p99_us,
                sample.cpu_us_per_request,
                sample.rss_kib as f64 / 1024.0,
                if sample.ok() {
                    String::new()
                } else {
                    format!(
                        "  ERRORS: {} non-2xx, {} socket",
                        sample.wrk.non_2xx, sample.wrk.socket_errors
                    )
                }
            ));
            results.samples.push(sample);
        }
    }
    Ok(())
}

fn measure(
    settings: &Settings,
    tools: &Tools,
    upstream: &Upstream,
    key: Key,
    dir: &Path,
    ticks_per_sec: f64,
    progress: &mut impl FnMut(&str),
) -> Result<Sample> {
    // A second start on another port, when the first fails (another process may have
    // taken the port between its choice and the proxy's bind); the first error is shown.
    let mut running = match Running::start(tools, key.proxy, key.case, key.workers, upstream, dir) {
        Ok(running) => running,
        Err(e) => {
            progress(&format!(
                "{} ({}, {} workers) failed to start, trying once more: {e:#}",
                key.proxy, key.case, key.workers
            ));
            let again = dir.with_extension("retry");
            Running::start(tools, key.proxy, key.case, key.workers, upstream, &again)?
        }
    };
    let url = running.url();
    if settings.warmup_s > 0 {
        wrk::run(&tools.wrk, &url, settings.connections, settings.warmup_s).context("warm-up")?;
    }
    running.check_alive()?;
    let pid = running.pid();
    let before = proxy::cpu_ticks(pid)?;
    let result = wrk::run(&tools.wrk, &url, settings.connections, settings.duration_s)?;
    let after = proxy::cpu_ticks(pid)?;
    running
        .check_alive()
        .context("the proxy died during the run")?;
    let (rss_kib, hwm_kib, anon_kib) = proxy::memory_kib(pid)?;
    let latency = if settings.latency_s > 0 {
        let run = wrk::run(&tools.wrk, &url, 1, settings.latency_s).context("latency run")?;
        running
            .check_alive()
            .context("the proxy died during the latency run")?;
        Some(run)
    } else {
        None
    };
    let cpu_us = after.saturating_sub(before) as f64 / ticks_per_sec * 1e6;
    let cpu_us_per_request = if result.requests > 0 {
        cpu_us / result.requests as f64
    } else {
        f64::NAN
    };
    Ok(Sample {
        proxy: key.proxy,
        case: key.case,
        workers: key.workers,
        // Set by the caller.
        round: 0,
        wrk: result,
        cpu_us_per_request,
        rss_kib,
        hwm_kib,
        anon_kib,
        latency,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(rounds: usize) -> Settings {
        Settings {
            proxies: Proxy::ALL.to_vec(),
            cases: vec![Case::None, Case::AddHeader],
            workers: vec![1, 2],
            connections: 4,
            duration_s: 1,
            warmup_s: 0,
            latency_s: 0,
            rounds,
        }
    }

    #[test]
    fn plain_pingora_runs_only_without_plugins() {
        let keys = settings(1).combinations();
        // (3 proxies × none + 2 × add_header) × 2 worker counts.
        assert_eq!(keys.len(), 10);
        assert!(
            keys.iter()
                .all(|k| k.proxy != Proxy::Pingora || k.case == Case::None)
        );
        let with_64k = Settings {
            cases: vec![Case::None64k, Case::Body64k],
            workers: vec![1],
            ..settings(1)
        };
        let pingora: Vec<Case> = with_64k
            .combinations()
            .into_iter()
            .filter(|k| k.proxy == Proxy::Pingora)
            .map(|k| k.case)
            .collect();
        assert_eq!(pingora, vec![Case::None64k]);
    }

    #[test]
    fn rounds_rotate_the_order_and_keep_every_combination() {
        let s = settings(3);
        let first = s.round_order(0);
        let second = s.round_order(1);
        let third = s.round_order(2);
        assert_eq!(first, s.combinations());
        assert_eq!(second[0], first[3]);
        assert_eq!(third[0], first[6]);
        for order in [&second, &third] {
            let mut sorted = order.clone();
            sorted.sort();
            let mut all = first.clone();
            all.sort();
            assert_eq!(sorted, all);
        }
    }
}
