//! The loopback load benchmark (`wasmbridge-load`): wrk against the wasmbridge gateway,
//! Envoy and plain Pingora in front of one fast upstream, with each plugin case, in
//! interleaved rounds, reported as medians and as ratios against the same proxy's
//! no-plugin run of the same round.
//!
//! - [`upstream`]: the upstream the tool starts itself;
//! - [`proxy`]: the proxies' configurations, processes, readiness and `/proc` figures;
//! - [`wrk`]: running wrk and reading its report;
//! - [`stats`]: medians and within-round ratios;
//! - [`run`]: the rounds;
//! - [`report`]: `load.md` and its two charts.

use std::fmt;

use anyhow::{Result, bail};

pub mod proxy;
pub mod report;
pub mod run;
pub mod stats;
pub mod upstream;
pub mod wrk;

/// A proxy under load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Proxy {
    /// The wasmbridge gateway (`wasmbridge run`).
    Wasmbridge,
    /// Envoy with V8, on the bootstrap `wasmbridge envoy-config` makes of the same file.
    Envoy,
    /// Plain Pingora with no wasm at all (`wasmbridge-plain-pingora`): only the cases
    /// without plugins (`none`, `none64k`).
    Pingora,
}

/// What runs in the proxy, and which upstream path wrk asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Case {
    /// No plugin: each proxy's baseline.
    None,
    /// No plugin, `GET /64k`: the baseline of [`Case::Body64k`].
    None64k,
    /// `filters/noop`: every callback continues.
    Noop,
    /// `filters/add_header` adding one response header.
    AddHeader,
    /// Three `add_header` plugins in a chain, one header each.
    Chain3,
    /// `filters/probes/body` buffering the 64 KiB response body and rewriting it (a
    /// prefix and a suffix).
    Body64k,
    /// `filters/ext_auth` calling the upstream's `/auth` before each request.
    Auth,
}

impl Proxy {
    pub const ALL: [Proxy; 3] = [Proxy::Wasmbridge, Proxy::Envoy, Proxy::Pingora];

    pub fn name(self) -> &'static str {
        match self {
            Proxy::Wasmbridge => "wasmbridge",
            Proxy::Envoy => "envoy",
            Proxy::Pingora => "pingora",
        }
    }

    /// Whether it runs `case` (plain Pingora only the cases without plugins).
    pub fn runs(self, case: Case) -> bool {
        self != Proxy::Pingora || case.is_baseline()
    }
}

impl Case {
    pub const ALL: [Case; 7] = [
        Case::None,
        Case::None64k,
        Case::Noop,
        Case::AddHeader,
        Case::Chain3,
        Case::Body64k,
        Case::Auth,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Case::None => "none",
            Case::None64k => "none64k",
            Case::Noop => "noop",
            Case::AddHeader => "add_header",
            Case::Chain3 => "chain3",
            Case::Body64k => "body64k",
            Case::Auth => "auth",
        }
    }

    /// The upstream path the case's requests ask for.
    pub fn path(self) -> &'static str {
        match self {
            Case::Body64k | Case::None64k => upstream::LARGE_PATH,
            _ => "/",
        }
    }

    /// One line for the report.
    pub fn description(self) -> &'static str {
        match self {
            Case::None => "no plugin (the baseline of every case but `body64k`)",
            Case::None64k => "no plugin, the 64 KiB body (the baseline of `body64k`)",
            Case::Noop => "`filters/noop`: a stream context whose callbacks all continue",
            Case::AddHeader => "`filters/add_header` adding one response header (`x-bench: 1`)",
            Case::Chain3 => "three `add_header` plugins, one response header each",
            Case::Body64k => {
                "`filters/probes/body` buffering the 64 KiB response body and adding a prefix and a suffix"
            }
            Case::Auth => {
                "`filters/ext_auth` calling the upstream's `/auth` (HTTP callout) and continuing on 200"
            }
        }
    }
}

impl Case {
    /// The no-plugin case a case is compared with: the same path without plugins.
    pub fn baseline(self) -> Case {
        match self {
            Case::Body64k | Case::None64k => Case::None64k,
            _ => Case::None,
        }
    }

    /// Whether it runs no plugin.
    pub fn is_baseline(self) -> bool {
        self.baseline() == self
    }
}

/// The cases with their baselines added (each before the first case that needs it), in
/// [`Case::ALL`] order.
pub fn with_baselines(cases: &[Case]) -> Vec<Case> {
    Case::ALL
        .into_iter()
        .filter(|c| cases.contains(c) || cases.iter().any(|x| x.baseline() == *c))
        .collect()
}

impl fmt::Display for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl fmt::Display for Case {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Parses a comma-separated list of names from `all`.
pub fn parse_list<T: Copy + fmt::Display>(text: &str, all: &[T]) -> Result<Vec<T>> {
    let mut out = Vec::new();
    for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let Some(item) = all.iter().find(|item| item.to_string() == name) else {
            let known: Vec<String> = all.iter().map(ToString::to_string).collect();
            bail!("unknown `{name}` (one of {})", known.join(", "));
        };
        if !out.iter().any(|o: &T| o.to_string() == name) {
            out.push(*item);
        }
    }
    if out.is_empty() {
        bail!("empty list");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_parse_by_name_and_unknown_names_are_errors() {
        assert_eq!(
            parse_list("none, add_header,none", &Case::ALL).unwrap(),
            vec![Case::None, Case::AddHeader]
        );
        let e = parse_list("envoy,nginx", &Proxy::ALL)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("`nginx`") && e.contains("wasmbridge, envoy, pingora"),
            "{e}"
        );
        assert!(parse_list("", &Proxy::ALL).is_err());
    }

    #[test]
    fn each_case_brings_its_baseline() {
        assert_eq!(
            with_baselines(&[Case::Body64k, Case::AddHeader]),
            vec![Case::None, Case::None64k, Case::AddHeader, Case::Body64k]
        );
        assert_eq!(with_baselines(&[Case::Noop]), vec![Case::None, Case::Noop]);
        assert!(Case::None64k.is_baseline() && !Case::Body64k.is_baseline());
    }
}
