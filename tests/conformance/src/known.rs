//! `known_failures.yaml`: the cases expected to fail, per target, with the reason.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use serde::Deserialize;

/// The pseudo-target of the suite-wide checks in `known_failures.yaml`.
pub const COVERAGE: &str = "coverage";
/// The `coverage` entry of the catalogue check (every `proxy_*` hostcall called by a case).
pub const CATALOGUE: &str = "catalogue";

/// Target (or `coverage`) → case id (or check name) → reason.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(transparent)]
pub struct KnownFailures(pub BTreeMap<String, BTreeMap<String, String>>);

impl KnownFailures {
    /// Reads `known_failures.yaml` from the suite directory.
    pub fn load(suite: &Path) -> Result<KnownFailures> {
        let path = suite.join("known_failures.yaml");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        serde_yaml::from_str(&text).with_context(|| format!("{}", path.display()))
    }

    /// Why `id` is expected to fail on `target`, if it is listed.
    pub fn reason(&self, target: &str, id: &str) -> Option<&str> {
        self.0.get(target)?.get(id).map(String::as_str)
    }

    /// The entries of one target, by case id.
    pub fn of(&self, target: &str) -> impl Iterator<Item = (&str, &str)> {
        self.0
            .get(target)
            .into_iter()
            .flatten()
            .map(|(id, reason)| (id.as_str(), reason.as_str()))
    }
}
