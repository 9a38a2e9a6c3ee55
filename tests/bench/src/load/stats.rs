//! From runs to figures: medians over rounds, and ratios and differences taken within a
//! round (a case against the same proxy's no-plugin run with the same workers) before the
//! median, so that a machine that drifts between rounds moves both sides of a ratio.

use crate::load::wrk::WrkResult;
use crate::load::{Case, Proxy};

/// One measured run of one proxy, case and worker count.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub proxy: Proxy,
    pub case: Case,
    pub workers: usize,
    pub round: usize,
    pub wrk: WrkResult,
    /// The proxy's CPU time (user + system) across the measured run, per request, µs.
    pub cpu_us_per_request: f64,
    /// `VmRSS` after the run, KiB.
    pub rss_kib: u64,
    /// `VmHWM` (peak RSS since start, compilation included) after the run, KiB.
    pub hwm_kib: u64,
    /// `RssAnon` after the run (the anonymous part of `VmRSS`: heap, stacks, VM memory;
    /// not the binary's code pages), KiB.
    pub anon_kib: u64,
    /// The one-connection run after the measured one (no queueing), when there was one.
    pub latency: Option<WrkResult>,
}

impl Sample {
    /// A run counts only when every request succeeded.
    pub fn ok(&self) -> bool {
        self.wrk.errors() == 0 && self.wrk.requests > 0
    }

    pub fn key(&self) -> Key {
        Key {
            proxy: self.proxy,
            case: self.case,
            workers: self.workers,
        }
    }
}

/// What a figure is about: a proxy, a case, a worker count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    pub proxy: Proxy,
    pub case: Case,
    pub workers: usize,
}

/// Every run of a benchmark.
#[derive(Debug, Clone, Default)]
pub struct Results {
    pub samples: Vec<Sample>,
}

/// The median; `None` for no values. An even count takes the mean of the middle two.
pub fn median(values: impl IntoIterator<Item = f64>) -> Option<f64> {
    let mut values: Vec<f64> = values.into_iter().filter(|v| v.is_finite()).collect();
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    Some(if values.len().is_multiple_of(2) {
        (values[mid - 1] + values[mid]) / 2.0
    } else {
        values[mid]
    })
}

impl Results {
    /// The runs of `key` without errors.
    pub fn ok(&self, key: Key) -> impl Iterator<Item = &Sample> {
        self.samples
            .iter()
            .filter(move |s| s.key() == key && s.ok())
    }

    /// Every run of `key`, with or without errors.
    pub fn all(&self, key: Key) -> impl Iterator<Item = &Sample> {
        self.samples.iter().filter(move |s| s.key() == key)
    }

    /// The median over the error-free runs of `key` of a figure.
    pub fn median(&self, key: Key, figure: impl Fn(&Sample) -> f64) -> Option<f64> {
        median(self.ok(key).map(figure))
    }

    /// The median over rounds of `pair(a's run, b's run)`, taking rounds where both ran
    /// without errors.
    pub fn paired(&self, a: Key, b: Key, pair: impl Fn(&Sample, &Sample) -> f64) -> Option<f64> {
        median(self.ok(a).filter_map(|sa| {
            self.ok(b)
                .find(|sb| sb.round == sa.round)
                .map(|sb| pair(sa, sb))
        }))
    }

    /// The median over rounds of `key`'s throughput ÷ its no-plugin run's.
    pub fn throughput_ratio(&self, key: Key) -> Option<f64> {
        self.paired(key, key.baseline(), |a, b| {
            a.wrk.requests_per_sec / b.wrk.requests_per_sec
        })
    }

    /// The median over rounds of `figure` of `key`'s run − of its no-plugin run in the
    /// same round (a figure that is NaN for a run, e.g. a latency run that did not happen,
    /// leaves that round out).
    pub fn added(&self, key: Key, figure: impl Fn(&Sample) -> f64) -> Option<f64> {
        self.paired(key, key.baseline(), |a, b| figure(a) - figure(b))
    }

    /// [`Results::added`] p99, µs.
    pub fn added_p99_us(&self, key: Key) -> Option<f64> {
        self.added(key, |s| s.wrk.p99_us)
    }

    /// [`Results::added`] p99 of the one-connection latency runs, µs.
    pub fn added_unloaded_p99_us(&self, key: Key) -> Option<f64> {
        self.added(key, |s| s.latency.as_ref().map_or(f64::NAN, |l| l.p99_us))
    }

    /// [`Results::added`] CPU per request, µs.
    pub fn added_cpu_us(&self, key: Key) -> Option<f64> {
        self.added(key, |s| s.cpu_us_per_request)
    }

    /// [`Results::added`] anonymous RSS, MiB.
    pub fn added_anon_mib(&self, key: Key) -> Option<f64> {
        self.added(key, |s| s.anon_kib as f64 / 1024.0)
    }

    /// [`Results::added`] RSS, MiB.
    pub fn added_rss_mib(&self, key: Key) -> Option<f64> {
        self.added(key, |s| s.rss_kib as f64 / 1024.0)
    }
}

impl Key {
    /// The same proxy and workers with no plugin, on the same path.
    pub fn baseline(self) -> Key {
        Key {
            case: self.case.baseline(),
            ..self
        }
    }

    /// The same case and workers on another proxy.
    pub fn on(self, proxy: Proxy) -> Key {
        Key { proxy, ..self }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(proxy: Proxy, case: Case, round: usize, rps: f64, p99: f64, errors: u64) -> Sample {
        Sample {
            proxy,
            case,
            workers: 1,
            round,
            wrk: WrkResult {
                requests: (rps * 10.0) as u64,
                requests_per_sec: rps,
                p50_us: p99 / 2.0,
                p99_us: p99,
                non_2xx: errors,
                socket_errors: 0,
            },
            cpu_us_per_request: p99 / 10.0,
            rss_kib: (p99 * 1024.0) as u64,
            hwm_kib: 0,
            anon_kib: 0,
            latency: None,
        }
    }

    fn key(proxy: Proxy, case: Case) -> Key {
        Key {
            proxy,
            case,
            workers: 1,
        }
    }

    #[test]
    fn medians_of_odd_even_and_empty_lists() {
        assert_eq!(median([3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median([4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median([]), None);
        assert_eq!(median([f64::NAN, 5.0]), Some(5.0));
    }

    #[test]
    fn ratios_are_taken_within_a_round_then_the_median() {
        use Case::{AddHeader, None};
        use Proxy::Wasmbridge as W;
        let results = Results {
            samples: vec![
                // Round 0: a fast machine; round 1: slow; round 2: middling.
                sample(W, None, 0, 200.0, 100.0, 0),
                sample(W, AddHeader, 0, 190.0, 104.0, 0),
                sample(W, None, 1, 100.0, 200.0, 0),
                sample(W, AddHeader, 1, 90.0, 210.0, 0),
                sample(W, None, 2, 150.0, 150.0, 0),
                sample(W, AddHeader, 2, 120.0, 151.0, 0),
            ],
        };
        let k = key(W, AddHeader);
        // Per round: 0.95, 0.9, 0.8 → 0.9; the ratio of the medians would be 120/150 = 0.8.
        assert!((results.throughput_ratio(k).unwrap() - 0.9).abs() < 1e-9);
        // Added p99 per round: 4, 10, 1 → 4.
        assert_eq!(results.added_p99_us(k), Some(4.0));
        assert!((results.added_cpu_us(k).unwrap() - 0.4).abs() < 1e-9);
        assert!((results.added_rss_mib(k).unwrap() - 4.0).abs() < 1e-2);
        assert_eq!(results.median(k, |s| s.wrk.requests_per_sec), Some(120.0));
        assert_eq!(results.throughput_ratio(k.baseline()), Some(1.0));
    }

    #[test]
    fn runs_with_errors_are_left_out_and_their_round_too() {
        use Case::{AddHeader, None};
        use Proxy::{Envoy as E, Wasmbridge as W};
        let results = Results {
            samples: vec![
                sample(W, None, 0, 100.0, 10.0, 0),
                sample(W, AddHeader, 0, 10.0, 10.0, 7),
                sample(W, None, 1, 100.0, 10.0, 0),
                sample(W, AddHeader, 1, 96.0, 10.0, 0),
                sample(E, AddHeader, 0, 50.0, 10.0, 0),
                sample(E, AddHeader, 1, 40.0, 10.0, 0),
            ],
        };
        let k = key(W, AddHeader);
        assert_eq!(results.ok(k).count(), 1);
        assert_eq!(results.all(k).count(), 2);
        assert_eq!(results.throughput_ratio(k), Some(0.96));
        // wasmbridge ÷ Envoy: only round 1 has both without errors.
        let versus = results.paired(k, k.on(E), |a, b| {
            a.wrk.requests_per_sec / b.wrk.requests_per_sec
        });
        assert_eq!(versus, Some(2.4));
        assert_eq!(results.throughput_ratio(key(E, AddHeader)), Option::None);
    }
}
